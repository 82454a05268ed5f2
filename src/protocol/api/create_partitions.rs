//! CreatePartitions: forwarded to the controller, which adds the partitions (placed
//! round-robin unless the request assigns them) and tells every broker.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{
    ApiKey, CreatePartitionsRequest, CreatePartitionsResponse, RequestHeader, TopicName,
};

use super::{str_bytes, ApiContext, KafkaApi, Reply};
use crate::actors::controller::messages;
use crate::actors::controller::messages::NewPartitions;

pub struct CreatePartitions;

impl KafkaApi for CreatePartitions {
    const KEY: ApiKey = ApiKey::CreatePartitions;
    const MAX_VERSION: i16 = 3;
    type Request = CreatePartitionsRequest;
    type Response = CreatePartitionsResponse;

    fn handle(
        ctx: &Arc<ApiContext>,
        _header: &RequestHeader,
        request: CreatePartitionsRequest,
    ) -> BoxFuture<'static, Reply<CreatePartitionsResponse>> {
        let topics: Vec<NewPartitions> = request
            .topics
            .into_iter()
            .map(|t| NewPartitions {
                name: t.name.0.to_string(),
                count: t.count,
                // An empty list reads as "no assignment" (null), as clients mean it.
                assignments: t.assignments.filter(|a| !a.is_empty()).map(|lists| {
                    lists
                        .into_iter()
                        .map(|a| a.broker_ids.into_iter().map(|b| b.0).collect())
                        .collect()
                }),
            })
            .collect();
        let names: Vec<String> = topics.iter().map(|t| t.name.clone()).collect();
        let send = ctx
            .controller
            .create_partitions
            .send(messages::CreatePartitions {
                topics,
                validate_only: request.validate_only,
                timeout_ms: request.timeout_ms,
            });
        async move {
            let outcomes = match send.await {
                Ok(outcomes) => outcomes,
                Err(_) => names
                    .into_iter()
                    .map(|n| {
                        (
                            n,
                            Err(crate::protocol::error::ApiError::new(
                                ResponseError::NotController,
                            )),
                        )
                    })
                    .collect(),
            };
            let results = outcomes
                .into_iter()
                .map(|(name, result)| {
                    let r = CreatePartitionsTopicResult::default()
                        .with_name(TopicName(str_bytes(name)));
                    match result {
                        Ok(()) => r.with_error_message(None),
                        Err(e) => r
                            .with_error_code(e.code)
                            .with_error_message(e.message.map(str_bytes)),
                    }
                })
                .collect();
            Reply::Respond(CreatePartitionsResponse::default().with_results(results))
        }
        .boxed()
    }

    fn error_response(_version: i16, _code: i16) -> CreatePartitionsResponse {
        CreatePartitionsResponse::default()
    }
}
