//! Typed requests between brokers and the one way they travel.
//!
//! Every inter-broker exchange is a [`PeerRequest`] answered by a [`PeerResponse`]: the
//! controller's LeaderAndIsr / UpdateMetadata / StopReplica / config pushes, a leader's ISR
//! proposal (AlterPartition), a broker's controlled shutdown, admin requests forwarded to the
//! controller, and follower fetches. Senders hold a [`Peers`] handle and call a typed method
//! (`peers.leader_and_isr(to, msg)`); receivers register a [`PeerHandler`]. Between them sits a
//! [`PeerTransport`]: [`LocalTransport`] in one process (through the link faults of the
//! in-process cluster), [`super::tcp::TcpTransport`] across processes (the same messages,
//! serialized: every payload type derives serde).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;

use super::faults::{LinkFailure, LinkFaults, Node};

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum TransportError {
    #[error("broker {0} is unknown to the transport")]
    UnknownBroker(i32),
    #[error("link to broker {to} failed: {failure}")]
    Link { to: i32, failure: LinkFailure },
    #[error("request to broker {to} timed out after {after:?}")]
    Timeout { to: i32, after: Duration },
    #[error("broker {0} stopped answering (its endpoint shut down)")]
    Closed(i32),
    #[error("broker {to} answered a different request kind: {detail}")]
    Mismatch { to: i32, detail: String },
    #[error("transport error talking to broker {to}: {detail}")]
    Io { to: i32, detail: String },
    #[error("broker {to} refused the request: {reason}")]
    Refused { to: i32, reason: String },
}

/// Declares the request and response enums and one typed call per request kind.
macro_rules! peer_calls {
    ($( $(#[doc = $doc:literal])* $method:ident : $variant:ident ( $req:ty ) -> $resp:ty ; )*) => {
        /// Every request one broker can send another.
        #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
        pub enum PeerRequest { $( $(#[doc = $doc])* $variant($req), )* }

        /// The answer to each [`PeerRequest`] kind, same variant name.
        #[derive(Debug, serde::Serialize, serde::Deserialize)]
        pub enum PeerResponse { $( $variant($resp), )* }

        impl PeerRequest {
            pub fn kind(&self) -> &'static str {
                match self { $( PeerRequest::$variant(_) => stringify!($variant), )* }
            }
        }

        impl Peers {
            $(
                $(#[doc = $doc])*
                pub async fn $method(&self, to: i32, request: $req) -> Result<$resp, TransportError> {
                    match self.call(to, PeerRequest::$variant(request)).await? {
                        PeerResponse::$variant(r) => Ok(r),
                        #[allow(unreachable_patterns)]
                        other => Err(TransportError::Mismatch { to, detail: format!("{other:?}") }),
                    }
                }
            )*
        }
    };
}

use crate::actors::broker::{
    BrokerConfigChanged, LeaderAndIsr, StopReplica, TopicConfigChanged, UpdateMetadata,
};
use crate::actors::controller::messages::{
    AlterEntityConfigs, ConfigEntity, CreatePartitions, CreateTopicOutcome, CreateTopics,
    DeleteTopicOutcome, DeleteTopics,
};
use crate::actors::controller::messages::{
    AlterPartition, AlterPartitionResult, ControlledShutdown, ControlledShutdownResult,
    ElectLeaders, ElectLeadersResult,
};
use crate::actors::replication::{ReplicaFetch, ReplicaFetchResponse};
use crate::protocol::error::ApiError;
use crate::storage::TopicPartition;

impl PeerRequest {
    /// The broker the request says it comes from, for the kinds that name their sender: a
    /// receiver across processes checks it against the connection's admitted identity.
    pub fn claimed_sender(&self) -> Option<i32> {
        match self {
            PeerRequest::LeaderAndIsr(m) => Some(m.controller_id),
            PeerRequest::UpdateMetadata(m) => Some(m.controller_id),
            PeerRequest::StopReplica(m) => Some(m.controller_id),
            PeerRequest::AlterPartition(m) => Some(m.broker_id),
            PeerRequest::ControlledShutdown(m) => Some(m.broker_id),
            PeerRequest::ReplicaFetch(m) => Some(m.replica_id),
            _ => None,
        }
    }
}

/// Per-partition outcomes of LeaderAndIsr and StopReplica.
pub type PartitionResults = Result<Vec<(TopicPartition, Option<ApiError>)>, ApiError>;

peer_calls! {
    /// Controller → replicas: leadership decisions.
    leader_and_isr: LeaderAndIsr(LeaderAndIsr) -> PartitionResults;
    /// Controller → every broker: the metadata clients are served from.
    update_metadata: UpdateMetadata(UpdateMetadata) -> Result<(), ApiError>;
    /// Controller → replicas: stop (and maybe delete) partitions.
    stop_replica: StopReplica(StopReplica) -> PartitionResults;
    /// Controller → replicas: a topic's configuration changed.
    topic_config_changed: TopicConfigChanged(TopicConfigChanged) -> Result<(), ApiError>;
    /// Controller → every broker: dynamic broker configs (one broker's or the default) changed.
    broker_config_changed: BrokerConfigChanged(BrokerConfigChanged) -> Result<(), ApiError>;
    /// Leader → controller: an ISR change proposal.
    alter_partition: AlterPartition(AlterPartition) -> AlterPartitionResult;
    /// Broker → controller: move my leaderships away, I am stopping.
    controlled_shutdown: ControlledShutdown(ControlledShutdown) -> ControlledShutdownResult;
    /// Admin requests forwarded to the controller.
    create_topics: CreateTopics(CreateTopics) -> Vec<CreateTopicOutcome>;
    delete_topics: DeleteTopics(DeleteTopics) -> Vec<DeleteTopicOutcome>;
    create_partitions: CreatePartitions(CreatePartitions) -> Vec<(String, Result<(), ApiError>)>;
    alter_configs: AlterConfigs(AlterEntityConfigs) -> Vec<(ConfigEntity, Result<(), ApiError>)>;
    elect_leaders: ElectLeaders(ElectLeaders) -> ElectLeadersResult;
    /// Follower → leader: replicate every partition the follower follows from the leader.
    replica_fetch: ReplicaFetch(ReplicaFetch) -> ReplicaFetchResponse;
}

/// What a broker registers to receive peer requests.
pub trait PeerHandler: Send + Sync + 'static {
    fn handle(
        &self,
        from: i32,
        request: PeerRequest,
    ) -> BoxFuture<'static, Result<PeerResponse, TransportError>>;
}

/// How requests reach another broker.
pub trait PeerTransport: Send + Sync + 'static {
    fn send(
        &self,
        from: i32,
        to: i32,
        request: PeerRequest,
    ) -> BoxFuture<'static, Result<PeerResponse, TransportError>>;
}

/// A broker's handle for talking to the others.
#[derive(Clone)]
pub struct Peers {
    /// Who is sending: receivers see it, faults act on the (from, to) link.
    pub from: i32,
    transport: Arc<dyn PeerTransport>,
    /// Every request gives up after this long (Kafka's `controller.socket.timeout.ms` /
    /// `request.timeout.ms`).
    timeout: Duration,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers").field("from", &self.from).finish()
    }
}

impl Peers {
    pub fn new(from: i32, transport: Arc<dyn PeerTransport>, timeout: Duration) -> Self {
        Self {
            from,
            transport,
            timeout,
        }
    }

    pub async fn call(
        &self,
        to: i32,
        request: PeerRequest,
    ) -> Result<PeerResponse, TransportError> {
        let kind = request.kind();
        match tokio::time::timeout(self.timeout, self.transport.send(self.from, to, request)).await
        {
            Ok(result) => result,
            Err(_) => {
                tracing::debug!(from = self.from, to, kind, "peer request timed out");
                Err(TransportError::Timeout {
                    to,
                    after: self.timeout,
                })
            }
        }
    }
}

/// In-process delivery: a registry of every broker's handler, with the cluster's link faults
/// applied to each request and each response.
#[derive(Default)]
pub struct LocalTransport {
    handlers: RwLock<HashMap<i32, Arc<dyn PeerHandler>>>,
    faults: LinkFaults,
}

impl LocalTransport {
    pub fn new(faults: LinkFaults) -> Arc<Self> {
        Arc::new(Self {
            handlers: RwLock::new(HashMap::new()),
            faults,
        })
    }

    pub fn faults(&self) -> &LinkFaults {
        &self.faults
    }

    /// Registers (or replaces, after a restart) a broker's handler.
    pub fn register(&self, broker: i32, handler: Arc<dyn PeerHandler>) {
        self.handlers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(broker, handler);
    }

    /// A crashed broker answers nothing.
    pub fn unregister(&self, broker: i32) {
        self.handlers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&broker);
    }

    fn handler(&self, broker: i32) -> Option<Arc<dyn PeerHandler>> {
        self.handlers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&broker)
            .cloned()
    }
}

impl PeerTransport for LocalTransport {
    fn send(
        &self,
        from: i32,
        to: i32,
        request: PeerRequest,
    ) -> BoxFuture<'static, Result<PeerResponse, TransportError>> {
        let faults = self.faults.clone();
        let handler = self.handler(to);
        Box::pin(async move {
            let link = |failure| TransportError::Link { to, failure };
            faults
                .pass(Node::Broker(from), Node::Broker(to))
                .await
                .map_err(link)?;
            let handler = handler.ok_or(TransportError::UnknownBroker(to))?;
            let response = handler.handle(from, request).await?;
            faults
                .pass(Node::Broker(to), Node::Broker(from))
                .await
                .map_err(link)?;
            Ok(response)
        })
    }
}
