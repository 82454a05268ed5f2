//! OffsetForLeaderEpoch (KIP-101, KIP-320): for each partition, the largest leader epoch at
//! or below the one asked that the leader knows, and the offset where that epoch ended.
//! Consumers call it after a leader change to detect log truncation (librdkafka and the Java
//! client do); weir's own followers get the same answer inside their fetches instead (see
//! [`crate::actors::replication`]). Answered by the partition's leader replica;
//! `current_leader_epoch` fences a client with stale metadata.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    ApiKey, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, RequestHeader,
};

use super::{ApiContext, KafkaApi, Reply};
use crate::actors::replica::EndOffsetForEpoch;
use crate::protocol::error::ApiError;

pub struct OffsetForLeaderEpoch;

impl KafkaApi for OffsetForLeaderEpoch {
    const KEY: ApiKey = ApiKey::OffsetForLeaderEpoch;
    const MAX_VERSION: i16 = 4;
    type Request = OffsetForLeaderEpochRequest;
    type Response = OffsetForLeaderEpochResponse;

    fn handle(
        ctx: &Arc<ApiContext>,
        _header: &RequestHeader,
        request: OffsetForLeaderEpochRequest,
    ) -> BoxFuture<'static, Reply<OffsetForLeaderEpochResponse>> {
        let snapshot = ctx.metadata.snapshot();
        let topics: Vec<_> = request
            .topics
            .into_iter()
            .map(|topic| {
                let name = topic.topic.clone();
                let partitions: Vec<_> = topic
                    .partitions
                    .into_iter()
                    .map(|p| {
                        let request = if snapshot.partition(&name.0, p.partition).is_none() {
                            Err(ApiError::new(ResponseError::UnknownTopicOrPartition))
                        } else {
                            ctx.replicas
                                .get(&name.0, p.partition)
                                .ok_or_else(|| ApiError::new(ResponseError::NotLeaderOrFollower))
                                .map(|handle| {
                                    handle.addr.send(EndOffsetForEpoch {
                                        current_leader_epoch: (p.current_leader_epoch >= 0)
                                            .then_some(p.current_leader_epoch),
                                        leader_epoch: p.leader_epoch,
                                    })
                                })
                        };
                        (p.partition, request)
                    })
                    .collect();
                (name, partitions)
            })
            .collect();
        async move {
            let mut results = Vec::new();
            for (name, partitions) in topics {
                let mut answers = Vec::new();
                for (partition, request) in partitions {
                    let result = match request {
                        Err(e) => Err(e),
                        Ok(request) => request.await.unwrap_or_else(|_| {
                            Err(ApiError::new(ResponseError::NotLeaderOrFollower))
                        }),
                    };
                    let answer = EpochEndOffset::default().with_partition(partition);
                    answers.push(match result {
                        Ok(end) => answer
                            .with_leader_epoch(end.epoch)
                            .with_end_offset(end.end_offset),
                        Err(e) => answer
                            .with_error_code(e.code)
                            .with_leader_epoch(-1)
                            .with_end_offset(-1),
                    });
                }
                results.push(
                    OffsetForLeaderTopicResult::default()
                        .with_topic(name)
                        .with_partitions(answers),
                );
            }
            Reply::Respond(OffsetForLeaderEpochResponse::default().with_topics(results))
        }
        .boxed()
    }

    fn error_response(_version: i16, _code: i16) -> OffsetForLeaderEpochResponse {
        OffsetForLeaderEpochResponse::default()
    }
}
