//! DeleteRecords: each partition's leader replica moves its log start offset up to the
//! requested offset (-1: the high-water mark) and answers with the new low watermark.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{
    ApiKey, DeleteRecordsRequest, DeleteRecordsResponse, RequestHeader, TopicName,
};

use super::{str_bytes, ApiContext, KafkaApi, Reply};
use crate::actors::replica::DeleteRecordsBefore;
use crate::protocol::error::ApiError;

pub struct DeleteRecords;

impl KafkaApi for DeleteRecords {
    const KEY: ApiKey = ApiKey::DeleteRecords;
    const MAX_VERSION: i16 = 2;
    type Request = DeleteRecordsRequest;
    type Response = DeleteRecordsResponse;

    fn handle(
        ctx: &Arc<ApiContext>,
        _header: &RequestHeader,
        request: DeleteRecordsRequest,
    ) -> BoxFuture<'static, Reply<DeleteRecordsResponse>> {
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
                                .map(|h| h.addr.send(DeleteRecordsBefore { offset: p.offset }))
                        };
                        (p.partition_index, request)
                    })
                    .collect();
                (name, partitions)
            })
            .collect();
        async move {
            let mut results = Vec::new();
            for (name, partitions) in topics {
                let mut answers = Vec::new();
                for (index, request) in partitions {
                    let result = match request {
                        Err(e) => Err(e),
                        Ok(request) => request.await.unwrap_or_else(|_| {
                            Err(ApiError::new(ResponseError::NotLeaderOrFollower))
                        }),
                    };
                    let p = DeleteRecordsPartitionResult::default().with_partition_index(index);
                    answers.push(match result {
                        Ok(low_watermark) => p.with_low_watermark(low_watermark),
                        Err(e) => p.with_error_code(e.code).with_low_watermark(-1),
                    });
                }
                results.push(
                    DeleteRecordsTopicResult::default()
                        .with_name(TopicName(str_bytes(name)))
                        .with_partitions(answers),
                );
            }
            Reply::Respond(DeleteRecordsResponse::default().with_topics(results))
        }
        .boxed()
    }

    fn error_response(_version: i16, _code: i16) -> DeleteRecordsResponse {
        DeleteRecordsResponse::default()
    }
}
