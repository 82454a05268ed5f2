//! DeleteTopics: forwarded to the controller, which stops and deletes every replica and
//! removes the topic from every broker's metadata before answering. v6 names topics by id.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    ApiKey, DeleteTopicsRequest, DeleteTopicsResponse, RequestHeader, TopicName,
};

use super::{str_bytes, ApiContext, KafkaApi, Reply};
use crate::actors::controller::messages;
use crate::actors::controller::messages::TopicRef;

pub struct DeleteTopics;

impl KafkaApi for DeleteTopics {
    const KEY: ApiKey = ApiKey::DeleteTopics;
    const MAX_VERSION: i16 = 6;
    type Request = DeleteTopicsRequest;
    type Response = DeleteTopicsResponse;

    fn handle(
        ctx: &Arc<ApiContext>,
        header: &RequestHeader,
        request: DeleteTopicsRequest,
    ) -> BoxFuture<'static, Reply<DeleteTopicsResponse>> {
        let version = header.request_api_version;
        let topics: Vec<TopicRef> = if version >= 6 {
            request
                .topics
                .into_iter()
                .map(|t| match t.name {
                    Some(name) => TopicRef::Name(name.0.to_string()),
                    None => TopicRef::Id(t.topic_id),
                })
                .collect()
        } else {
            request
                .topic_names
                .into_iter()
                .map(|n| TopicRef::Name(n.0.to_string()))
                .collect()
        };
        let requested = topics.clone();
        let send = ctx
            .controller
            .delete_topics
            .send(messages::DeleteTopics { topics });
        async move {
            let outcomes = match send.await {
                Ok(outcomes) => outcomes,
                Err(e) => {
                    tracing::warn!(error = %e, "the controller did not answer DeleteTopics");
                    requested
                        .into_iter()
                        .map(|t| messages::DeleteTopicOutcome {
                            name: match &t {
                                TopicRef::Name(n) => Some(n.clone()),
                                TopicRef::Id(_) => None,
                            },
                            topic_id: match t {
                                TopicRef::Id(id) => id,
                                TopicRef::Name(_) => uuid::Uuid::nil(),
                            },
                            error: Some(crate::protocol::error::ApiError::new(
                                ResponseError::NotController,
                            )),
                        })
                        .collect()
                }
            };
            let responses = outcomes
                .into_iter()
                .map(|o| {
                    let mut r = DeletableTopicResult::default()
                        .with_name(o.name.map(|n| TopicName(str_bytes(n))))
                        .with_error_code(o.error.as_ref().map_or(0, |e| e.code));
                    if version >= 5 {
                        r = r.with_error_message(o.error.and_then(|e| e.message).map(str_bytes));
                    }
                    if version >= 6 {
                        r = r.with_topic_id(o.topic_id);
                    }
                    r
                })
                .collect();
            Reply::Respond(DeleteTopicsResponse::default().with_responses(responses))
        }
        .boxed()
    }

    fn error_response(_version: i16, _code: i16) -> DeleteTopicsResponse {
        DeleteTopicsResponse::default()
    }
}
