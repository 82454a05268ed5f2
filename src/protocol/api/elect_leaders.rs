//! ElectLeaders (KIP-460, `kafka-leader-election.sh`, AdminClient `electLeaders`): asks the
//! controller to move each listed partition's leadership to its preferred replica (the first
//! of its assignment, once it is in the ISR) or, when `election_type` is unclean, to any live
//! replica if the ISR has none. A broker that is not the controller forwards the request.
//! v0 has no election type (preferred); a null partition list means every partition.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{
    ApiKey, ElectLeadersRequest, ElectLeadersResponse, RequestHeader, TopicName,
};

use super::{str_bytes, ApiContext, KafkaApi, Reply};
use crate::actors::controller::messages::{ElectLeaders as Elect, ElectionType};
use crate::storage::TopicPartition;

pub struct ElectLeaders;

impl KafkaApi for ElectLeaders {
    const KEY: ApiKey = ApiKey::ElectLeaders;
    const MAX_VERSION: i16 = 2;
    type Request = ElectLeadersRequest;
    type Response = ElectLeadersResponse;

    fn handle(
        ctx: &Arc<ApiContext>,
        header: &RequestHeader,
        request: ElectLeadersRequest,
    ) -> BoxFuture<'static, Reply<ElectLeadersResponse>> {
        let version = header.request_api_version;
        let election = if version == 0 {
            Some(ElectionType::Preferred)
        } else {
            ElectionType::from_wire(request.election_type)
        };
        let partitions: Option<Vec<TopicPartition>> = request.topic_partitions.map(|topics| {
            topics
                .into_iter()
                .flat_map(|t| {
                    let topic = t.topic.0.to_string();
                    t.partitions
                        .into_iter()
                        .map(move |p| TopicPartition::new(topic.clone(), p))
                })
                .collect()
        });
        let Some(election) = election else {
            let response = ElectLeadersResponse::default()
                .with_error_code(ResponseError::InvalidRequest.code());
            return futures::future::ready(Reply::Respond(response)).boxed();
        };
        let send = ctx.controller.elect_leaders.send(Elect {
            partitions,
            election,
        });
        async move {
            let answer = send.await.unwrap_or_else(|_| {
                Err(crate::protocol::error::ApiError::new(
                    ResponseError::NotController,
                ))
            });
            let mut response = ElectLeadersResponse::default();
            match answer {
                Err(e) => {
                    // v0 has no top-level error: it goes on every partition asked about,
                    // which a v0 client always names.
                    response = response.with_error_code(e.code);
                }
                Ok(results) => {
                    let mut by_topic: Vec<ReplicaElectionResult> = Vec::new();
                    for (tp, result) in results {
                        let partition = PartitionResult::default()
                            .with_partition_id(tp.partition)
                            .with_error_code(result.as_ref().err().map_or(0, |e| e.code))
                            .with_error_message(
                                result.err().map(|e| str_bytes(e.message_or_default())),
                            );
                        match by_topic.iter_mut().find(|t| t.topic.0.as_str() == tp.topic) {
                            Some(t) => t.partition_result.push(partition),
                            None => by_topic.push(
                                ReplicaElectionResult::default()
                                    .with_topic(TopicName(str_bytes(tp.topic)))
                                    .with_partition_result(vec![partition]),
                            ),
                        }
                    }
                    response = response.with_replica_election_results(by_topic);
                }
            }
            Reply::Respond(response)
        }
        .boxed()
    }

    fn error_response(_version: i16, code: i16) -> ElectLeadersResponse {
        ElectLeadersResponse::default().with_error_code(code)
    }
}
