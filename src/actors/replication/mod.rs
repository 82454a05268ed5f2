//! Follower replication (the seed's Steps 14–16), split by role as Kafka's fetcher protocol
//! is: a follower broker pulls, a leader broker serves.
//!
//! - [`fetcher`]: the follower side. One [`fetcher::ReplicaFetcher`] actor per (this broker,
//!   leader broker) pulls every partition this broker follows from that leader in one
//!   request, appends the leader's bytes verbatim, and truncates where its log diverged from
//!   the leader's (KIP-101/KIP-279 through the diverging epoch of the fetch response).
//! - [`leader`]: the leader side. Answers a [`ReplicaFetch`] from the partitions' replica
//!   actors, long-polling until there is data or `replica.fetch.wait.max.ms` passes.
//!
//! What a fetch does to the leader's state (the follower's log end offset, the ISR, the
//! high-water mark) is the partition replica's business: see [`crate::actors::replica`].
//!
//! These types cross the inter-broker seam, in one process or framed over TCP, so they are
//! plain serializable data: error codes, not trait objects.

pub mod fetcher;
pub mod leader;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::protocol::error::ApiError;
use crate::storage::TopicPartition;

/// Follower → leader: fetch every listed partition from its offset (Kafka's Fetch with
/// `replica_id` set; weir sends it as a typed message over the seam).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaFetch {
    /// The follower's broker id.
    pub replica_id: i32,
    /// The follower's broker epoch (the czxid of its `/brokers/ids` registration), so that
    /// a fetch from a previous life of the broker is told apart.
    pub broker_epoch: i64,
    /// `replica.fetch.wait.max.ms`: how long the leader may hold the request for data.
    pub max_wait_ms: u32,
    /// `replica.fetch.min.bytes`.
    pub min_bytes: u32,
    /// `replica.fetch.response.max.bytes`.
    pub max_bytes: u32,
    pub partitions: Vec<FetchPartition>,
}

/// One partition of a [`ReplicaFetch`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FetchPartition {
    pub tp: TopicPartition,
    /// A recreated topic has a new id: the old one's fetches are refused.
    pub topic_id: Uuid,
    /// The follower's log end offset: everything below it the follower holds.
    pub fetch_offset: i64,
    /// The leader epoch the follower was told in its LeaderAndIsr (KIP-320 fencing).
    pub current_leader_epoch: i32,
    /// The epoch of the follower's last batch (-1 when its log is empty): the leader checks
    /// that its own log agrees up to `fetch_offset` in that epoch (KIP-595's divergence
    /// check), else answers with a [`DivergingEpoch`].
    pub last_fetched_epoch: i32,
    /// The follower's log start offset.
    pub log_start_offset: i64,
    /// `replica.fetch.max.bytes`.
    pub max_bytes: u32,
}

/// The leader's answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReplicaFetchResponse {
    pub partitions: Vec<FetchedPartition>,
}

/// Where the follower's log stops agreeing with the leader's: the largest epoch the leader
/// has at or below the follower's last fetched epoch, and the offset where the leader's
/// log left that epoch. `(-1, -1)` when the leader knows no such epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DivergingEpoch {
    pub epoch: i32,
    pub end_offset: i64,
}

/// One partition of a [`ReplicaFetchResponse`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FetchedPartition {
    pub tp: TopicPartition,
    pub error: Option<ApiError>,
    /// The leader's high-water mark after this fetch counted the follower's offset.
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    /// Set instead of records when the follower must truncate first.
    pub diverging_epoch: Option<DivergingEpoch>,
    /// Whole stored batches, exactly as the leader stored them.
    pub records: Bytes,
}

impl FetchedPartition {
    pub fn failed(tp: TopicPartition, error: ApiError) -> Self {
        Self {
            tp,
            error: Some(error),
            high_watermark: -1,
            log_start_offset: -1,
            log_end_offset: -1,
            diverging_epoch: None,
            records: Bytes::new(),
        }
    }
}
