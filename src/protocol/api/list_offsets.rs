//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), earliest local (-4) or the
//! first offset at or after a timestamp, answered by each partition's leader replica.
//! Consumers see offsets below the high-water mark (the last stable offset for
//! `read_committed`, the same thing without transactions).

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{
    ApiKey, ListOffsetsRequest, ListOffsetsResponse, RequestHeader, TopicName,
};

use super::{str_bytes, ApiContext, KafkaApi, Reply};
use crate::actors::replica::{self, FetchIsolation, OffsetAndTimestamp};
use crate::protocol::error::ApiError;

pub struct ListOffsets;

impl KafkaApi for ListOffsets {
    const KEY: ApiKey = ApiKey::ListOffsets;
    const MAX_VERSION: i16 = 8;
    type Request = ListOffsetsRequest;
    type Response = ListOffsetsResponse;

    fn handle(
        ctx: &Arc<ApiContext>,
        header: &RequestHeader,
        request: ListOffsetsRequest,
    ) -> BoxFuture<'static, Reply<ListOffsetsResponse>> {
        let version = header.request_api_version;
        let isolation = if request.replica_id.0 >= 0 || request.replica_id.0 == -2 {
            FetchIsolation::LogEnd
        } else if version >= 2 && request.isolation_level == 1 {
            FetchIsolation::TxnCommitted
        } else {
            FetchIsolation::HighWatermark
        };
        let snapshot = ctx.metadata.snapshot();
        let topics: Vec<_> = request
            .topics
            .into_iter()
            .map(|topic| {
                let name = topic.name.0.to_string();
                let partitions: Vec<_> = topic
                    .partitions
                    .into_iter()
                    .map(|p| {
                        let request = if snapshot.partition(&name, p.partition_index).is_none() {
                            Err(ApiError::new(ResponseError::UnknownTopicOrPartition))
                        } else {
                            ctx.replicas
                                .get(&name, p.partition_index)
                                .ok_or_else(|| ApiError::new(ResponseError::NotLeaderOrFollower))
                                .map(|handle| {
                                    handle.addr.send(replica::ListOffsets {
                                        timestamp: p.timestamp,
                                        isolation,
                                        current_leader_epoch: (version >= 4
                                            && p.current_leader_epoch >= 0)
                                            .then_some(p.current_leader_epoch),
                                    })
                                })
                        };
                        (p.partition_index, request)
                    })
                    .collect();
                (name, partitions)
            })
            .collect();
        async move {
            let mut responses = Vec::new();
            for (name, partitions) in topics {
                let mut answers = Vec::new();
                for (index, request) in partitions {
                    let result: Result<OffsetAndTimestamp, ApiError> = match request {
                        Err(e) => Err(e),
                        Ok(request) => request.await.unwrap_or_else(|_| {
                            Err(ApiError::new(ResponseError::NotLeaderOrFollower))
                        }),
                    };
                    let mut p = ListOffsetsPartitionResponse::default().with_partition_index(index);
                    match result {
                        Ok(found) => {
                            p = p.with_offset(found.offset).with_timestamp(found.timestamp);
                            if version >= 4 {
                                p = p.with_leader_epoch(if found.offset >= 0 {
                                    found.leader_epoch
                                } else {
                                    -1
                                });
                            }
                        }
                        Err(e) => {
                            p = p.with_error_code(e.code).with_offset(-1).with_timestamp(-1);
                        }
                    }
                    answers.push(p);
                }
                responses.push(
                    ListOffsetsTopicResponse::default()
                        .with_name(TopicName(str_bytes(name)))
                        .with_partitions(answers),
                );
            }
            Reply::Respond(ListOffsetsResponse::default().with_topics(responses))
        }
        .boxed()
    }

    fn error_response(_version: i16, _code: i16) -> ListOffsetsResponse {
        ListOffsetsResponse::default()
    }
}
