//! Case 3, Step 3.2: a broker that receives an admin request forwards it to the controller.
//! [`ControllerForwarder`] is the broker-side actor the front end's [`ControllerLink`] points at;
//! it finds the controller in the broker's metadata cache and sends the request through the
//! inter-broker seam, retrying across a controller failover until the request's deadline.

use std::future::Future;
use std::time::Duration;

use actix::prelude::*;
use kafka_protocol::error::ResponseError;

use crate::actors::controller::messages::{
    AlterEntityConfigs, ConfigEntity, ControllerLink, CreatePartitions, CreateTopicOutcome,
    CreateTopics, DeleteTopicOutcome, DeleteTopics,
};
use crate::actors::controller::messages::{ElectLeaders, ElectLeadersResult};
use crate::actors::controller::producer_ids::ProducerIdManager;
use crate::actors::metadata_cache::MetadataCache;
use crate::protocol::error::ApiError;
use crate::transport::peer::{Peers, TransportError};

/// How long a forwarded request keeps looking for a controller.
const FORWARD_DEADLINE: Duration = Duration::from_secs(15);
const RETRY_EVERY: Duration = Duration::from_millis(100);

pub struct ControllerForwarder {
    /// Where the current controller id is read from (the controller's own UpdateMetadata).
    metadata: MetadataCache,
    peers: Peers,
}

impl ControllerForwarder {
    pub fn new(metadata: MetadataCache, peers: Peers) -> Self {
        Self { metadata, peers }
    }

    /// A [`ControllerLink`] whose admin requests go through a forwarder and whose producer
    /// ids come from `producer_ids`.
    pub fn link(
        addr: &Addr<ControllerForwarder>,
        producer_ids: ProducerIdManager,
    ) -> ControllerLink {
        ControllerLink {
            controller_id: -1,
            create_topics: addr.clone().recipient(),
            delete_topics: addr.clone().recipient(),
            create_partitions: addr.clone().recipient(),
            alter_configs: addr.clone().recipient(),
            elect_leaders: addr.clone().recipient(),
            producer_ids,
        }
    }
}

impl Actor for ControllerForwarder {
    type Context = Context<Self>;
}

fn not_controller() -> ApiError {
    ApiError::with_message(
        ResponseError::NotController,
        "no controller is reachable right now",
    )
}

/// Sends `make()` to the current controller until it answers with something other than
/// "not the controller", or the deadline passes.
async fn forward<T, F, Fut>(
    metadata: MetadataCache,
    mut send: F,
    is_not_controller: fn(&T) -> bool,
) -> Option<T>
where
    F: FnMut(i32) -> Fut,
    Fut: Future<Output = Result<T, TransportError>>,
{
    let deadline = tokio::time::Instant::now() + FORWARD_DEADLINE;
    loop {
        let controller = metadata.snapshot().controller_id;
        if controller >= 0 {
            match send(controller).await {
                Ok(answer) if !is_not_controller(&answer) => return Some(answer),
                Ok(_) => tracing::debug!(
                    controller,
                    "controller moved; retrying the forwarded request"
                ),
                Err(e) => {
                    tracing::debug!(controller, error = %e, "forwarding to the controller failed; retrying")
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
}

fn code_is_not_controller(e: &ApiError) -> bool {
    e.code == ResponseError::NotController.code()
}

impl Handler<CreateTopics> for ControllerForwarder {
    type Result = ResponseFuture<Vec<CreateTopicOutcome>>;

    fn handle(&mut self, msg: CreateTopics, _: &mut Self::Context) -> Self::Result {
        let (metadata, peers) = (self.metadata.clone(), self.peers.clone());
        let names: Vec<String> = msg.topics.iter().map(|t| t.name.clone()).collect();
        Box::pin(async move {
            let answer = forward(
                metadata,
                |to| peers.create_topics(to, msg.clone()),
                |outcomes: &Vec<CreateTopicOutcome>| {
                    outcomes
                        .iter()
                        .any(|o| o.result.as_ref().err().is_some_and(code_is_not_controller))
                },
            )
            .await;
            answer.unwrap_or_else(|| {
                names
                    .into_iter()
                    .map(|name| CreateTopicOutcome {
                        name,
                        result: Err(not_controller()),
                    })
                    .collect()
            })
        })
    }
}

impl Handler<DeleteTopics> for ControllerForwarder {
    type Result = ResponseFuture<Vec<DeleteTopicOutcome>>;

    fn handle(&mut self, msg: DeleteTopics, _: &mut Self::Context) -> Self::Result {
        let (metadata, peers) = (self.metadata.clone(), self.peers.clone());
        let count = msg.topics.len();
        let refs = msg.topics.clone();
        Box::pin(async move {
            let answer = forward(
                metadata,
                |to| peers.delete_topics(to, msg.clone()),
                |outcomes: &Vec<DeleteTopicOutcome>| {
                    outcomes
                        .iter()
                        .any(|o| o.error.as_ref().is_some_and(code_is_not_controller))
                },
            )
            .await;
            answer.unwrap_or_else(|| {
                refs.into_iter()
                    .take(count)
                    .map(|r| DeleteTopicOutcome {
                        name: match r {
                            crate::actors::controller::messages::TopicRef::Name(n) => Some(n),
                            crate::actors::controller::messages::TopicRef::Id(_) => None,
                        },
                        topic_id: uuid::Uuid::nil(),
                        error: Some(not_controller()),
                    })
                    .collect()
            })
        })
    }
}

type PerTopic = Vec<(String, Result<(), ApiError>)>;

/// Whether any of a per-topic (or per-entity) answer says "not the controller".
fn any_not_controller<K>(outcomes: &[(K, Result<(), ApiError>)]) -> bool {
    outcomes
        .iter()
        .any(|(_, r)| r.as_ref().err().is_some_and(code_is_not_controller))
}

fn per_topic_not_controller(outcomes: &PerTopic) -> bool {
    any_not_controller(outcomes)
}

type PerEntity = Vec<(ConfigEntity, Result<(), ApiError>)>;

fn per_entity_not_controller(outcomes: &PerEntity) -> bool {
    any_not_controller(outcomes)
}

impl Handler<CreatePartitions> for ControllerForwarder {
    type Result = ResponseFuture<PerTopic>;

    fn handle(&mut self, msg: CreatePartitions, _: &mut Self::Context) -> Self::Result {
        let (metadata, peers) = (self.metadata.clone(), self.peers.clone());
        let names: Vec<String> = msg.topics.iter().map(|t| t.name.clone()).collect();
        Box::pin(async move {
            forward(
                metadata,
                |to| peers.create_partitions(to, msg.clone()),
                per_topic_not_controller,
            )
            .await
            .unwrap_or_else(|| {
                names
                    .into_iter()
                    .map(|n| (n, Err(not_controller())))
                    .collect()
            })
        })
    }
}

impl Handler<AlterEntityConfigs> for ControllerForwarder {
    type Result = ResponseFuture<PerEntity>;

    fn handle(&mut self, msg: AlterEntityConfigs, _: &mut Self::Context) -> Self::Result {
        let (metadata, peers) = (self.metadata.clone(), self.peers.clone());
        let names: Vec<ConfigEntity> = msg.changes.iter().map(|(e, _)| e.clone()).collect();
        Box::pin(async move {
            forward(
                metadata,
                |to| peers.alter_configs(to, msg.clone()),
                per_entity_not_controller,
            )
            .await
            .unwrap_or_else(|| {
                names
                    .into_iter()
                    .map(|n| (n, Err(not_controller())))
                    .collect()
            })
        })
    }
}

impl Handler<ElectLeaders> for ControllerForwarder {
    type Result = ResponseFuture<ElectLeadersResult>;

    fn handle(&mut self, msg: ElectLeaders, _: &mut Self::Context) -> Self::Result {
        let (metadata, peers) = (self.metadata.clone(), self.peers.clone());
        Box::pin(async move {
            forward(
                metadata,
                |to| peers.elect_leaders(to, msg.clone()),
                |answer: &ElectLeadersResult| {
                    answer.as_ref().err().is_some_and(code_is_not_controller)
                },
            )
            .await
            .unwrap_or_else(|| Err(not_controller()))
        })
    }
}
