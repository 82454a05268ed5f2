//! A broker's receiving end of the inter-broker seam: controller requests go to the broker
//! actor, requests meant for the controller (ISR proposals, controlled shutdown, forwarded
//! admin requests, elections) go to this broker's controller actor, which answers
//! NOT_CONTROLLER unless it is the elected one.

use actix::prelude::*;
use futures::future::BoxFuture;

use super::actor::Controller;
use crate::actors::broker::{Broker, LocalReplicas};
use crate::actors::replication::leader::serve_replica_fetch;
use crate::transport::peer::{PeerHandler, PeerRequest, PeerResponse, TransportError};

pub struct BrokerEndpoint {
    pub broker_id: i32,
    pub broker: Addr<Broker>,
    pub controller: Addr<Controller>,
    /// Follower fetches go straight to the partition replicas, not through the broker actor.
    pub replicas: LocalReplicas,
}

/// Sends to an actor and maps a stopped actor to a closed endpoint.
async fn ask<A, M>(addr: Addr<A>, msg: M, me: i32) -> Result<M::Result, TransportError>
where
    A: Actor + Handler<M>,
    A::Context: actix::dev::ToEnvelope<A, M>,
    M: Message + Send + 'static,
    M::Result: Send,
{
    addr.send(msg).await.map_err(|_| TransportError::Closed(me))
}

impl PeerHandler for BrokerEndpoint {
    fn handle(
        &self,
        _from: i32,
        request: PeerRequest,
    ) -> BoxFuture<'static, Result<PeerResponse, TransportError>> {
        let (broker, controller, me) =
            (self.broker.clone(), self.controller.clone(), self.broker_id);
        let replicas = self.replicas.clone();
        Box::pin(async move {
            Ok(match request {
                PeerRequest::LeaderAndIsr(m) => {
                    PeerResponse::LeaderAndIsr(ask(broker, m, me).await?)
                }
                PeerRequest::UpdateMetadata(m) => {
                    PeerResponse::UpdateMetadata(ask(broker, m, me).await?)
                }
                PeerRequest::StopReplica(m) => PeerResponse::StopReplica(ask(broker, m, me).await?),
                PeerRequest::TopicConfigChanged(m) => {
                    PeerResponse::TopicConfigChanged(ask(broker, m, me).await?)
                }
                PeerRequest::BrokerConfigChanged(m) => {
                    PeerResponse::BrokerConfigChanged(ask(broker, m, me).await?)
                }
                PeerRequest::AlterPartition(m) => {
                    PeerResponse::AlterPartition(ask(controller, m, me).await?)
                }
                PeerRequest::ControlledShutdown(m) => {
                    PeerResponse::ControlledShutdown(ask(controller, m, me).await?)
                }
                PeerRequest::CreateTopics(m) => {
                    PeerResponse::CreateTopics(ask(controller, m, me).await?)
                }
                PeerRequest::DeleteTopics(m) => {
                    PeerResponse::DeleteTopics(ask(controller, m, me).await?)
                }
                PeerRequest::CreatePartitions(m) => {
                    PeerResponse::CreatePartitions(ask(controller, m, me).await?)
                }
                PeerRequest::AlterConfigs(m) => {
                    PeerResponse::AlterConfigs(ask(controller, m, me).await?)
                }
                PeerRequest::ElectLeaders(m) => {
                    PeerResponse::ElectLeaders(ask(controller, m, me).await?)
                }
                PeerRequest::ReplicaFetch(m) => {
                    PeerResponse::ReplicaFetch(serve_replica_fetch(replicas, m).await)
                }
            })
        })
    }
}
