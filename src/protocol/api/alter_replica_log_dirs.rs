//! AlterReplicaLogDirs: move this broker's replicas to other log dirs, answered per partition
//! with the codes Kafka's `ReplicaManager.alterReplicaLogDirs` gives:
//!
//! - the destination is not one of this broker's `log.dirs`: LOG_DIR_NOT_FOUND;
//! - the destination dir is offline: KAFKA_STORAGE_ERROR;
//! - the partition has no replica here: REPLICA_NOT_AVAILABLE (Kafka keeps that code for this
//!   API where others say NOT_LEADER_OR_FOLLOWER), or KAFKA_STORAGE_ERROR while a dir is
//!   offline, since the replica may be in it;
//! - the replica is already in the destination: NONE, nothing to do (what tools and admin
//!   clients send when they only pin a replica's dir).
//!
//! weir does not move a live replica between dirs (Kafka copies it through a "future" log
//! and swaps it in): such a request is answered KAFKA_STORAGE_ERROR, Kafka's answer when it
//! cannot create the future log, and logged. A partition placed on a broker later is put in
//! its least-loaded dir as before; the destination is not remembered. v0, which the
//! `kafka-protocol` crate cannot decode, is answered by `legacy` (UNSUPPORTED_VERSION).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_replica_log_dirs_response::{
    AlterReplicaLogDirPartitionResult, AlterReplicaLogDirTopicResult,
};
use kafka_protocol::messages::{
    AlterReplicaLogDirsRequest, AlterReplicaLogDirsResponse, ApiKey, RequestHeader,
};

use super::{ApiContext, KafkaApi, Reply};
use crate::actors::broker::{self, LogDirDescription};

pub struct AlterReplicaLogDirs;

/// A path as the broker compares dirs: canonical where it exists, as given otherwise.
fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The error code for moving `topic`-`partition` to `destination`, given this broker's dirs
/// with the replicas each holds.
pub fn alter_error(
    dirs: &[LogDirDescription],
    destination: &str,
    topic: &str,
    partition: i32,
) -> i16 {
    let wanted = canonical(Path::new(destination));
    let Some(target) = dirs
        .iter()
        .find(|d| d.dir.as_os_str() == destination || canonical(&d.dir) == wanted)
    else {
        return ResponseError::LogDirNotFound.code();
    };
    if target.offline {
        return ResponseError::KafkaStorageError.code();
    }
    let holds = |d: &LogDirDescription| {
        d.partitions
            .iter()
            .any(|p| p.tp.topic == topic && p.tp.partition == partition)
    };
    match dirs.iter().find(|d| holds(d)) {
        Some(current) if std::ptr::eq(current, target) => 0,
        Some(current) => {
            tracing::warn!(
                topic,
                partition,
                from = %current.dir.display(),
                to = destination,
                "AlterReplicaLogDirs: weir does not move a replica between log dirs"
            );
            ResponseError::KafkaStorageError.code()
        }
        None if dirs.iter().any(|d| d.offline) => ResponseError::KafkaStorageError.code(),
        None => ResponseError::ReplicaNotAvailable.code(),
    }
}

impl KafkaApi for AlterReplicaLogDirs {
    const KEY: ApiKey = ApiKey::AlterReplicaLogDirs;
    const MAX_VERSION: i16 = 2;
    type Request = AlterReplicaLogDirsRequest;
    type Response = AlterReplicaLogDirsResponse;

    fn handle(
        ctx: &Arc<ApiContext>,
        _header: &RequestHeader,
        request: AlterReplicaLogDirsRequest,
    ) -> BoxFuture<'static, Reply<AlterReplicaLogDirsResponse>> {
        let wanted: Vec<(String, Vec<i32>)> = request
            .dirs
            .iter()
            .flat_map(|d| d.topics.iter())
            .map(|t| (t.name.0.to_string(), t.partitions.clone()))
            .collect();
        let send = ctx.broker.send(broker::DescribeLogDirs {
            topics: Some(wanted),
        });
        async move {
            let dirs = send.await.ok();
            let mut results: Vec<AlterReplicaLogDirTopicResult> = Vec::new();
            for dir in &request.dirs {
                let destination = dir.path.to_string();
                for topic in &dir.topics {
                    let name = topic.name.0.to_string();
                    let partitions = topic.partitions.iter().map(|&p| {
                        let code = match &dirs {
                            Some(dirs) => alter_error(dirs, &destination, &name, p),
                            None => ResponseError::KafkaStorageError.code(),
                        };
                        AlterReplicaLogDirPartitionResult::default()
                            .with_partition_index(p)
                            .with_error_code(code)
                    });
                    match results.iter_mut().find(|r| r.topic_name == topic.name) {
                        Some(result) => result.partitions.extend(partitions),
                        None => results.push(
                            AlterReplicaLogDirTopicResult::default()
                                .with_topic_name(topic.name.clone())
                                .with_partitions(partitions.collect()),
                        ),
                    }
                }
            }
            Reply::Respond(AlterReplicaLogDirsResponse::default().with_results(results))
        }
        .boxed()
    }

    fn error_response(_version: i16, _code: i16) -> AlterReplicaLogDirsResponse {
        // The response has no top-level error code: an empty result list.
        AlterReplicaLogDirsResponse::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::replica::ReplicaDescription;
    use crate::storage::TopicPartition;

    fn replica(topic: &str, partition: i32, dir: &str) -> ReplicaDescription {
        ReplicaDescription {
            tp: TopicPartition::new(topic, partition),
            topic_id: uuid::Uuid::nil(),
            size_in_bytes: 0,
            log_start_offset: 0,
            log_end_offset: 0,
            high_watermark: 0,
            leader_epoch: 0,
            is_leader: true,
            dir: PathBuf::from(format!("{dir}/{topic}-{partition}")),
        }
    }

    fn dir(path: &str, offline: bool, partitions: Vec<ReplicaDescription>) -> LogDirDescription {
        LogDirDescription {
            dir: PathBuf::from(path),
            offline,
            partitions,
            total_bytes: -1,
            usable_bytes: -1,
        }
    }

    #[test]
    fn moving_a_replica_to_its_own_dir_is_a_no_op_answered_none() {
        let dirs = vec![
            dir(
                "/nonexistent/a",
                false,
                vec![replica("t", 0, "/nonexistent/a")],
            ),
            dir("/nonexistent/b", false, vec![]),
        ];
        assert_eq!(alter_error(&dirs, "/nonexistent/a", "t", 0), 0);
    }

    #[test]
    fn alter_replica_log_dirs_answers_kafkas_codes() {
        let dirs = vec![
            dir(
                "/nonexistent/a",
                false,
                vec![replica("t", 0, "/nonexistent/a")],
            ),
            dir("/nonexistent/b", false, vec![]),
        ];
        let code = |e: ResponseError| e.code();
        assert_eq!(
            alter_error(&dirs, "/nonexistent/elsewhere", "t", 0),
            code(ResponseError::LogDirNotFound)
        );
        assert_eq!(
            alter_error(&dirs, "/nonexistent/a", "t", 7),
            code(ResponseError::ReplicaNotAvailable)
        );
        // A real move between dirs is refused.
        assert_eq!(
            alter_error(&dirs, "/nonexistent/b", "t", 0),
            code(ResponseError::KafkaStorageError)
        );
        let offline = vec![
            dir("/nonexistent/a", false, vec![]),
            dir("/nonexistent/b", true, vec![]),
        ];
        assert_eq!(
            alter_error(&offline, "/nonexistent/b", "t", 0),
            code(ResponseError::KafkaStorageError)
        );
        assert_eq!(
            alter_error(&offline, "/nonexistent/a", "t", 0),
            code(ResponseError::KafkaStorageError)
        );
    }
}
