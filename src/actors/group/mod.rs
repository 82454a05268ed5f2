//! Consumer groups (the classic rebalance protocol) and committed offsets.
//!
//! A [`coordinator::GroupCoordinator`] actor runs for every `__consumer_offsets` partition this
//! broker leads and owns the groups that hash to it ([`partitioner::partition_for`], Kafka's
//! `abs(groupId.hashCode) % offsets.topic.num.partitions`). Group state and committed offsets
//! are records in that partition ([`offsets_records`], Kafka's own schemas), written through
//! the [`store::GroupStore`] seam with acks=all and replayed when a broker takes the
//! partition over. [`api`] has one function per Kafka API for the protocol front end and the
//! [`api::GroupRouter`] that finds the coordinator of a group.
//!
//! The module mirrors Kafka's `GroupCoordinator` / `GroupMetadata` / `GroupMetadataManager`
//! (Kafka 3.x, the last release whose classic coordinator these clients were written
//! against): same states, transitions, error codes and record formats.

pub mod api;
pub mod coordinator;
pub mod directory;
pub mod metadata;
pub mod offsets_records;
pub mod partitioner;
pub mod replica_store;
pub mod store;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::BrokerConfig;

pub use api::{ClientInfo, CoordinatorDirectory, GroupRouter, OffsetsTopicLeader};
pub use coordinator::GroupCoordinator;
pub use offsets_records::GROUP_METADATA_TOPIC_NAME;
pub use partitioner::partition_for;
pub use store::{GroupStore, InMemoryGroupStore, OffsetsRecord};

/// The broker settings a group coordinator obeys (Kafka's `GroupConfig` + `OffsetConfig`).
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `offsets.topic.num.partitions`: fixes the group → partition mapping.
    pub offsets_topic_num_partitions: i32,
    /// `group.min.session.timeout.ms` / `group.max.session.timeout.ms`: a JoinGroup outside
    /// this range gets INVALID_SESSION_TIMEOUT.
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    /// `group.max.size`.
    pub max_size: i32,
    /// `group.initial.rebalance.delay.ms`: an empty group's first rebalance waits this long
    /// for more members.
    pub initial_rebalance_delay_ms: i32,
    /// `offsets.retention.minutes`.
    pub offsets_retention: Duration,
    /// `offsets.retention.check.interval.ms`: period of the expiry sweep.
    pub offsets_retention_check_interval: Duration,
    /// `offset.metadata.max.bytes` (Kafka's default 4096): longer commit metadata gets
    /// OFFSET_METADATA_TOO_LARGE.
    pub offset_metadata_max_bytes: usize,
    /// `offsets.commit.timeout.ms`: an append not durable by then fails with
    /// REQUEST_TIMED_OUT.
    pub offset_commit_timeout: Duration,
    /// Kafka's `NewMemberJoinTimeoutMs` (5 minutes, not configurable there): a new member
    /// parked in JoinGroup is dropped after this, since it cannot heartbeat yet.
    pub new_member_join_timeout: Duration,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            offsets_topic_num_partitions: 50,
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            max_size: i32::MAX,
            initial_rebalance_delay_ms: 3_000,
            offsets_retention: Duration::from_secs(10_080 * 60),
            offsets_retention_check_interval: Duration::from_millis(600_000),
            offset_metadata_max_bytes: 4096,
            offset_commit_timeout: Duration::from_millis(5_000),
            new_member_join_timeout: Duration::from_secs(300),
        }
    }
}

impl GroupConfig {
    /// Takes the group and offsets settings from a broker's configuration.
    pub fn from_broker(config: &BrokerConfig) -> Self {
        let non_negative_ms = |ms: i64| Duration::from_millis(ms.max(0) as u64);
        GroupConfig {
            offsets_topic_num_partitions: config.offsets_topic_num_partitions.max(1),
            min_session_timeout_ms: config.group_min_session_timeout_ms,
            max_session_timeout_ms: config.group_max_session_timeout_ms,
            max_size: config.group_max_size,
            initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms.max(0),
            offsets_retention: non_negative_ms(
                i64::from(config.offsets_retention_minutes) * 60_000,
            ),
            offsets_retention_check_interval: non_negative_ms(
                config.offsets_retention_check_interval_ms,
            )
            .max(Duration::from_millis(1)),
            offset_commit_timeout: non_negative_ms(i64::from(config.offsets_commit_timeout_ms)),
            ..GroupConfig::default()
        }
    }
}

/// Wall-clock milliseconds since the Unix epoch, as Kafka's records store them.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_config_takes_kafka_defaults_from_broker_config() {
        let c = GroupConfig::from_broker(&BrokerConfig::default());
        assert_eq!(c.offsets_topic_num_partitions, 50);
        assert_eq!(c.min_session_timeout_ms, 6_000);
        assert_eq!(c.max_session_timeout_ms, 1_800_000);
        assert_eq!(c.initial_rebalance_delay_ms, 3_000);
        assert_eq!(c.offsets_retention, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(c.offset_commit_timeout, Duration::from_secs(5));
    }
}
