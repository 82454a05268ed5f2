//! Requests brokers send the controller: the admin requests their connections forward
//! (CreateTopics, DeleteTopics, CreatePartitions, topic config changes), a leader's ISR
//! proposal, a broker's controlled shutdown, and a leader election request.

use std::collections::BTreeMap;

use actix::{Message, Recipient};
use uuid::Uuid;

use crate::protocol::error::ApiError;
use crate::storage::TopicPartition;

/// One partition of an AlterPartition request (KIP-497): the leader proposes a new ISR at the
/// leader and partition epochs it knows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AlterPartitionItem {
    pub topic: String,
    pub partition: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<i32>,
}

/// The state the controller recorded for an accepted proposal.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartitionLeadership {
    pub leader: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
    pub partition_epoch: i32,
}

/// Leader → controller: ISR changes for partitions it leads.
#[derive(Debug, Clone, Message, serde::Serialize, serde::Deserialize)]
#[rtype(result = "AlterPartitionResult")]
pub struct AlterPartition {
    pub broker_id: i32,
    /// The sender's broker epoch: a request from a previous life of the broker is refused
    /// (STALE_BROKER_EPOCH).
    pub broker_epoch: i64,
    pub partitions: Vec<AlterPartitionItem>,
}

pub type AlterPartitionResult =
    Result<Vec<(TopicPartition, Result<PartitionLeadership, ApiError>)>, ApiError>;

/// Broker → controller: move leadership off me before I stop. The answer lists the
/// partitions it still leads; the broker retries until none remain (or gives up).
#[derive(Debug, Clone, Message, serde::Serialize, serde::Deserialize)]
#[rtype(result = "ControlledShutdownResult")]
pub struct ControlledShutdown {
    pub broker_id: i32,
    pub broker_epoch: i64,
}

pub type ControlledShutdownResult = Result<Vec<TopicPartition>, ApiError>;

/// ElectLeaders (KIP-460): preferred or unclean election for the listed partitions, or for
/// every partition when `partitions` is `None`.
#[derive(Debug, Clone, Message, serde::Serialize, serde::Deserialize)]
#[rtype(result = "ElectLeadersResult")]
pub struct ElectLeaders {
    pub partitions: Option<Vec<TopicPartition>>,
    pub election: ElectionType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ElectionType {
    Preferred,
    Unclean,
}

impl ElectionType {
    pub fn from_wire(t: i8) -> Option<Self> {
        match t {
            0 => Some(Self::Preferred),
            1 => Some(Self::Unclean),
            _ => None,
        }
    }
}

pub type ElectLeadersResult = Result<Vec<(TopicPartition, Result<(), ApiError>)>, ApiError>;

/// One topic of a CreateTopics request (-1 for `num_partitions`/`replication_factor` means
/// the cluster default).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NewTopic {
    pub name: String,
    pub num_partitions: i32,
    pub replication_factor: i16,
    /// Explicit assignment: partition → replicas.
    pub assignments: Vec<(i32, Vec<i32>)>,
    pub configs: Vec<(String, Option<String>)>,
}

impl NewTopic {
    /// A topic with the cluster's defaults (Metadata's auto-creation).
    pub fn with_defaults(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            num_partitions: -1,
            replication_factor: -1,
            assignments: vec![],
            configs: vec![],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CreatedTopic {
    pub topic_id: Uuid,
    pub num_partitions: i32,
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CreateTopicOutcome {
    pub name: String,
    pub result: Result<CreatedTopic, ApiError>,
}

/// CreateTopics (also Metadata's auto-creation).
#[derive(Debug, Clone, Message, serde::Serialize, serde::Deserialize)]
#[rtype(result = "Vec<CreateTopicOutcome>")]
pub struct CreateTopics {
    pub topics: Vec<NewTopic>,
    pub validate_only: bool,
    /// The request's `timeout_ms`: past it, a topic created but not yet known to every
    /// broker is answered REQUEST_TIMED_OUT. 0 (internal creators) waits as long as the
    /// forwarding allows and answers success.
    #[serde(default)]
    pub timeout_ms: i32,
}

/// A topic named by name or (DeleteTopics v6) by id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TopicRef {
    Name(String),
    Id(Uuid),
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeleteTopicOutcome {
    pub name: Option<String>,
    pub topic_id: Uuid,
    pub error: Option<ApiError>,
}

#[derive(Debug, Clone, Message, serde::Serialize, serde::Deserialize)]
#[rtype(result = "Vec<DeleteTopicOutcome>")]
pub struct DeleteTopics {
    pub topics: Vec<TopicRef>,
}

/// One topic of a CreatePartitions request: grow to `count` partitions.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NewPartitions {
    pub name: String,
    pub count: i32,
    /// Replicas of each new partition, in partition order.
    pub assignments: Option<Vec<Vec<i32>>>,
}

#[derive(Debug, Clone, Message, serde::Serialize, serde::Deserialize)]
#[rtype(result = "Vec<(String, Result<(), ApiError>)>")]
pub struct CreatePartitions {
    pub topics: Vec<NewPartitions>,
    pub validate_only: bool,
    /// As [`CreateTopics::timeout_ms`].
    #[serde(default)]
    pub timeout_ms: i32,
}

/// IncrementalAlterConfigs' operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AlterConfigOp {
    Set,
    Delete,
    Append,
    Subtract,
}

impl AlterConfigOp {
    pub fn from_wire(op: i8) -> Option<Self> {
        match op {
            0 => Some(Self::Set),
            1 => Some(Self::Delete),
            2 => Some(Self::Append),
            3 => Some(Self::Subtract),
            _ => None,
        }
    }
}

/// How a topic's overrides change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ConfigChange {
    /// AlterConfigs: the given overrides replace all existing ones.
    Replace(Vec<(String, Option<String>)>),
    /// IncrementalAlterConfigs.
    Incremental(Vec<(String, AlterConfigOp, Option<String>)>),
}

/// What a config change is for: Kafka's config entities, stored at `/config/topics/<t>`,
/// `/config/brokers/<id>` and `/config/brokers/<default>` (the cluster-wide broker default,
/// the BROKER resource named `""`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ConfigEntity {
    Topic(String),
    Broker(i32),
    BrokerDefault,
}

impl ConfigEntity {
    /// The entity's path under `/config`, as config change notifications name it.
    pub fn entity_path(&self) -> String {
        match self {
            ConfigEntity::Topic(t) => format!("topics/{t}"),
            ConfigEntity::Broker(id) => format!("brokers/{id}"),
            ConfigEntity::BrokerDefault => "brokers/<default>".to_string(),
        }
    }

    /// The entity a notification's `entity_path` names; `None` for other entity types
    /// (clients, users: quotas, which weir does not keep).
    pub fn from_entity_path(path: &str) -> Option<Self> {
        if let Some(topic) = path.strip_prefix("topics/") {
            return Some(ConfigEntity::Topic(topic.to_string()));
        }
        match path.strip_prefix("brokers/")? {
            "<default>" => Some(ConfigEntity::BrokerDefault),
            id => id.parse().ok().map(ConfigEntity::Broker),
        }
    }
}

impl std::fmt::Display for ConfigEntity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.entity_path())
    }
}

/// AlterConfigs and IncrementalAlterConfigs, validated and recorded by the controller, which
/// then tells every broker ([`crate::actors::broker::TopicConfigChanged`],
/// [`crate::actors::broker::BrokerConfigChanged`]).
#[derive(Debug, Clone, Message, serde::Serialize, serde::Deserialize)]
#[rtype(result = "Vec<(ConfigEntity, Result<(), ApiError>)>")]
pub struct AlterEntityConfigs {
    pub changes: Vec<(ConfigEntity, ConfigChange)>,
    pub validate_only: bool,
}

/// The recipients a broker's connections forward admin requests to: the elected controller,
/// through this broker's controller actor (which forwards when another broker is controller).
#[derive(Debug, Clone)]
pub struct ControllerLink {
    pub controller_id: i32,
    pub create_topics: Recipient<CreateTopics>,
    pub delete_topics: Recipient<DeleteTopics>,
    pub create_partitions: Recipient<CreatePartitions>,
    pub alter_configs: Recipient<AlterEntityConfigs>,
    /// ElectLeaders (preferred or unclean).
    pub elect_leaders: Recipient<ElectLeaders>,
    /// InitProducerId's id source (one block at a time from the cluster-wide allocator).
    pub producer_ids: super::producer_ids::ProducerIdManager,
}
