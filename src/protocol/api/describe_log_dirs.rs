//! DescribeLogDirs: this broker's log dirs with the partitions each holds and their sizes,
//! gathered by the broker actor from its replicas; an offline dir is answered with
//! KAFKA_STORAGE_ERROR and no partitions, as Kafka does.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{
    ApiKey, DescribeLogDirsRequest, DescribeLogDirsResponse, RequestHeader, TopicName,
};

use super::{str_bytes, ApiContext, KafkaApi, Reply};
use crate::actors::broker;

pub struct DescribeLogDirs;

impl KafkaApi for DescribeLogDirs {
    const KEY: ApiKey = ApiKey::DescribeLogDirs;
    const MAX_VERSION: i16 = 4;
    type Request = DescribeLogDirsRequest;
    type Response = DescribeLogDirsResponse;

    fn handle(
        ctx: &Arc<ApiContext>,
        header: &RequestHeader,
        request: DescribeLogDirsRequest,
    ) -> BoxFuture<'static, Reply<DescribeLogDirsResponse>> {
        let version = header.request_api_version;
        let topics = request.topics.map(|topics| {
            topics
                .into_iter()
                .map(|t| (t.topic.0.to_string(), t.partitions))
                .collect()
        });
        let send = ctx.broker.send(broker::DescribeLogDirs { topics });
        async move {
            let dirs = match send.await {
                Ok(dirs) => dirs,
                Err(_) => {
                    return Reply::Respond(
                        DescribeLogDirsResponse::default()
                            .with_error_code(ResponseError::KafkaStorageError.code()),
                    )
                }
            };
            let results = dirs
                .into_iter()
                .map(|dir| {
                    let mut by_topic: BTreeMap<String, Vec<DescribeLogDirsPartition>> =
                        BTreeMap::new();
                    for p in dir.partitions {
                        by_topic.entry(p.tp.topic.clone()).or_default().push(
                            DescribeLogDirsPartition::default()
                                .with_partition_index(p.tp.partition)
                                .with_partition_size(p.size_in_bytes as i64)
                                .with_offset_lag(0)
                                .with_is_future_key(false),
                        );
                    }
                    let mut result = DescribeLogDirsResult::default()
                        .with_error_code(if dir.offline {
                            ResponseError::KafkaStorageError.code()
                        } else {
                            0
                        })
                        .with_log_dir(str_bytes(dir.dir.display().to_string()))
                        .with_topics(
                            by_topic
                                .into_iter()
                                .map(|(name, partitions)| {
                                    DescribeLogDirsTopic::default()
                                        .with_name(TopicName(str_bytes(name)))
                                        .with_partitions(partitions)
                                })
                                .collect(),
                        );
                    if version >= 4 {
                        result = result
                            .with_total_bytes(dir.total_bytes)
                            .with_usable_bytes(dir.usable_bytes);
                    }
                    result
                })
                .collect();
            Reply::Respond(DescribeLogDirsResponse::default().with_results(results))
        }
        .boxed()
    }

    fn error_response(_version: i16, code: i16) -> DescribeLogDirsResponse {
        DescribeLogDirsResponse::default().with_error_code(code)
    }
}
