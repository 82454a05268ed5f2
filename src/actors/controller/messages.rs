//! Requests brokers send the controller (besides the admin requests it takes over from the
//! interim controller): a leader's ISR proposal, a broker's controlled shutdown, and a
//! leader election request.

use actix::Message;

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
