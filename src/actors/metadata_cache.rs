//! The broker's metadata cache (Kafka's `MetadataCache`): the live brokers with their
//! endpoints, every topic with its id and partitions (leader, leader epoch, replicas, ISR,
//! offline replicas), the controller id and the cluster id, and each topic's configuration.
//!
//! Only the controller fills it, through the broker actor's `UpdateMetadata` (and
//! `TopicConfigChanged`) messages. Connections read it on every Metadata, Produce and Fetch
//! request, so readers get an immutable [`MetadataSnapshot`] behind an `Arc`: a read is one
//! short read-lock and a reference-count increment, and the broker swaps in a new snapshot
//! when an update arrives (updates are rare, reads are constant).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use uuid::Uuid;

use crate::config::dynamic::DynamicBrokerConfigs;
use crate::config::TopicConfig;

/// Kafka's "no leader" marker in partition state.
pub const NO_LEADER: i32 = -1;
/// Kafka's `LeaderDuringDelete`: an UpdateMetadata partition state with this leader removes
/// the partition from the cache (the topic is being deleted).
pub const LEADER_DURING_DELETE: i32 = -2;

/// Topics Kafka treats as internal (Metadata reports `is_internal`).
pub const INTERNAL_TOPICS: &[&str] = &["__consumer_offsets", "__transaction_state"];

/// One broker: where clients connect (`host`/`port`, the endpoint Metadata reports) and,
/// as in Kafka's UpdateMetadata, every listener it registered, so that brokers find each
/// other's inter-broker listener through the controller's metadata.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BrokerEndpoint {
    pub id: i32,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
    /// Every advertised listener, by name (empty when only the client endpoint is known).
    pub listeners: Vec<ListenerEndpoint>,
}

/// One named listener of a broker (Kafka's UpdateMetadataEndpoint).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ListenerEndpoint {
    pub listener: String,
    pub host: String,
    pub port: u16,
}

impl BrokerEndpoint {
    /// The `host:port` of the listener called `name`, if the broker registered one.
    pub fn listener(&self, name: &str) -> Option<String> {
        self.listeners
            .iter()
            .find(|l| l.listener == name)
            .map(|l| host_port(&l.host, l.port))
    }
}

/// `host:port`, bracketing an IPv6 host.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// One partition's leadership as the controller last decided it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartitionMetadata {
    pub partition: i32,
    /// Broker id of the leader; [`NO_LEADER`] while the partition is offline.
    pub leader: i32,
    /// Bumped by the controller on every leader change; clients fence stale leaders with it.
    pub leader_epoch: i32,
    /// Assigned replicas in preference order (the first is the preferred leader).
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// Assigned replicas whose broker is alive but cannot serve the partition.
    pub offline_replicas: Vec<i32>,
    /// Kafka's partition epoch (the ZooKeeper era's `zkVersion` of the partition state).
    pub partition_epoch: i32,
}

/// One topic: its id and partitions.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicMetadata {
    pub name: String,
    /// KIP-516 topic id; Fetch v13+ and Metadata v10+ name topics by it.
    pub id: Uuid,
    pub is_internal: bool,
    /// Indexed by partition number (partitions of a topic are always 0..n).
    pub partitions: BTreeMap<i32, PartitionMetadata>,
}

/// A topic's configuration: the overrides the controller recorded and the effective config
/// (overrides on top of this broker's defaults) that produce validation and replicas use.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfigState {
    pub overrides: BTreeMap<String, String>,
    pub effective: TopicConfig,
}

/// An immutable view of the cluster at one instant.
#[derive(Debug, Clone, Default)]
pub struct MetadataSnapshot {
    pub cluster_id: Option<String>,
    /// -1 until a controller has sent its first UpdateMetadata.
    pub controller_id: i32,
    /// The epoch of the controller whose update produced this snapshot; older ones are ignored.
    pub controller_epoch: i32,
    pub brokers: BTreeMap<i32, BrokerEndpoint>,
    pub topics: HashMap<String, Arc<TopicMetadata>>,
    /// Fetch v13+ and DeleteTopics v6 name topics by id.
    pub topic_names_by_id: HashMap<Uuid, String>,
    /// Per topic; a topic without an entry uses the broker's defaults.
    pub topic_configs: HashMap<String, Arc<TopicConfigState>>,
    /// Dynamic broker configs (KIP-226) in force here: the cluster default and this broker's.
    pub dynamic_broker_configs: Arc<DynamicBrokerConfigs>,
    /// The topic-level defaults with them applied; `None` while there are none (the
    /// broker's static defaults apply).
    pub topic_defaults: Option<Arc<TopicConfig>>,
}

impl MetadataSnapshot {
    pub fn empty() -> Self {
        Self {
            controller_id: -1,
            controller_epoch: -1,
            ..Self::default()
        }
    }

    /// True once a controller has told this broker about the cluster.
    pub fn is_initialized(&self) -> bool {
        self.controller_id >= 0 && !self.brokers.is_empty()
    }

    pub fn topic(&self, name: &str) -> Option<&Arc<TopicMetadata>> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<&Arc<TopicMetadata>> {
        self.topic_names_by_id
            .get(id)
            .and_then(|name| self.topics.get(name))
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionMetadata> {
        self.topics
            .get(topic)
            .and_then(|t| t.partitions.get(&partition))
    }

    /// The effective config of `topic`, or `None` when it has no overrides recorded (callers
    /// then use the broker defaults).
    pub fn topic_config(&self, topic: &str) -> Option<&Arc<TopicConfigState>> {
        self.topic_configs.get(topic)
    }
}

/// The shared handle: the broker actor writes, connections read.
#[derive(Debug, Clone)]
pub struct MetadataCache {
    /// A std `RwLock` because no `.await` is ever held across it and the critical section is a
    /// pointer copy; the inner `Arc` lets readers keep a snapshot as long as they like.
    current: Arc<RwLock<Arc<MetadataSnapshot>>>,
}

impl Default for MetadataCache {
    fn default() -> Self {
        Self::new()
    }
}

impl MetadataCache {
    pub fn new() -> Self {
        Self {
            current: Arc::new(RwLock::new(Arc::new(MetadataSnapshot::empty()))),
        }
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<MetadataSnapshot> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            // A writer panicked mid-swap; the pointer itself is always whole.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Installs a new snapshot (the broker actor only).
    pub fn replace(&self, snapshot: MetadataSnapshot) {
        let snapshot = Arc::new(snapshot);
        match self.current.write() {
            Ok(mut guard) => *guard = snapshot,
            Err(poisoned) => *poisoned.into_inner() = snapshot,
        }
    }
}

/// Why a topic name is refused (Kafka's `Topic.validate`): INVALID_TOPIC_EXCEPTION.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTopicName {
    #[error("topic name is empty")]
    Empty,
    #[error("topic name cannot be \".\" or \"..\"")]
    Dots,
    #[error("topic name {name:?} is longer than the maximum of 249 characters")]
    TooLong { name: String },
    #[error(
        "topic name {name:?} is illegal: it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
    )]
    IllegalCharacter { name: String },
}

/// Kafka's longest legal topic name.
pub const MAX_TOPIC_NAME_LENGTH: usize = 249;

/// Kafka's topic name rules.
pub fn validate_topic_name(name: &str) -> Result<(), InvalidTopicName> {
    if name.is_empty() {
        return Err(InvalidTopicName::Empty);
    }
    if name == "." || name == ".." {
        return Err(InvalidTopicName::Dots);
    }
    if name.len() > MAX_TOPIC_NAME_LENGTH {
        return Err(InvalidTopicName::TooLong {
            name: name.to_string(),
        });
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(InvalidTopicName::IllegalCharacter {
            name: name.to_string(),
        });
    }
    Ok(())
}

/// Kafka refuses a new topic whose name differs from an existing one only by '.' versus '_'
/// (their metric names would collide).
pub fn collides_with(a: &str, b: &str) -> bool {
    a != b && a.replace('.', "_") == b.replace('.', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafkas_rules() {
        assert!(validate_topic_name("orders.v1_x-2").is_ok());
        assert_eq!(validate_topic_name(""), Err(InvalidTopicName::Empty));
        assert_eq!(validate_topic_name(".."), Err(InvalidTopicName::Dots));
        assert!(matches!(
            validate_topic_name("bad name"),
            Err(InvalidTopicName::IllegalCharacter { .. })
        ));
        assert!(matches!(
            validate_topic_name(&"x".repeat(250)),
            Err(InvalidTopicName::TooLong { .. })
        ));
        assert!(validate_topic_name(&"x".repeat(249)).is_ok());
    }

    #[test]
    fn dots_and_underscores_collide() {
        assert!(collides_with("a.b", "a_b"));
        assert!(!collides_with("a.b", "a.b"));
        assert!(!collides_with("a.b", "a-b"));
    }

    #[test]
    fn readers_keep_their_snapshot_across_a_replace() {
        let cache = MetadataCache::new();
        let before = cache.snapshot();
        assert!(!before.is_initialized());
        let mut next = MetadataSnapshot::empty();
        next.controller_id = 1;
        next.brokers.insert(
            1,
            BrokerEndpoint {
                id: 1,
                host: "127.0.0.1".into(),
                port: 1,
                rack: None,
                listeners: vec![],
            },
        );
        cache.replace(next);
        assert!(!before.is_initialized());
        assert!(cache.snapshot().is_initialized());
    }
}
