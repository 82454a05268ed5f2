//! The broker's AlterPartition manager (Kafka's `AlterPartitionManager`): partition leaders
//! hand it their ISR proposals ([`ProposeIsr`]); it batches the proposals that arrive
//! together into one AlterPartition request to the controller (found in the metadata cache),
//! and answers each leader with what the controller recorded for its partition.
//!
//! The leader proposes, the controller decides and records (kafka-notes: "the leader
//! proposes them, the controller decides"): a leader never changes its ISR on its own.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use kafka_protocol::error::ResponseError;
use tokio::sync::oneshot;

use crate::actors::controller::messages::{
    AlterPartition, AlterPartitionItem, PartitionLeadership,
};
use crate::actors::metadata_cache::MetadataCache;
use crate::protocol::error::ApiError;
use crate::storage::TopicPartition;
use crate::transport::peer::Peers;

/// A leader's proposal for one partition.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<PartitionLeadership, ApiError>")]
pub struct ProposeIsr {
    pub tp: TopicPartition,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<i32>,
}

type Waiter = oneshot::Sender<Result<PartitionLeadership, ApiError>>;

pub struct AlterPartitionManager {
    broker_id: i32,
    /// This broker's registration epoch: the controller refuses proposals from a previous
    /// life of the broker.
    broker_epoch: Arc<AtomicI64>,
    /// Where the controller's id is read.
    metadata: MetadataCache,
    peers: Peers,
    /// Proposals waiting for the next send, one per partition (a newer one replaces an
    /// older, whose leader is told it was superseded).
    queued: BTreeMap<TopicPartition, (ProposeIsr, Waiter)>,
    /// One request in flight at a time, as Kafka's manager does: proposals arriving
    /// meanwhile go out together in the next.
    in_flight: bool,
}

impl AlterPartitionManager {
    pub fn new(
        broker_id: i32,
        broker_epoch: Arc<AtomicI64>,
        metadata: MetadataCache,
        peers: Peers,
    ) -> Self {
        Self {
            broker_id,
            broker_epoch,
            metadata,
            peers,
            queued: BTreeMap::new(),
            in_flight: false,
        }
    }

    fn send_queued(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight || self.queued.is_empty() {
            return;
        }
        let controller = self.metadata.snapshot().controller_id;
        let batch = std::mem::take(&mut self.queued);
        if controller < 0 {
            for (_, (_, waiter)) in batch {
                let _ = waiter.send(Err(ApiError::with_message(
                    ResponseError::NotController,
                    "no controller is known",
                )));
            }
            return;
        }
        let request = AlterPartition {
            broker_id: self.broker_id,
            broker_epoch: self.broker_epoch.load(Ordering::SeqCst),
            partitions: batch
                .values()
                .map(|(p, _)| AlterPartitionItem {
                    topic: p.tp.topic.clone(),
                    partition: p.tp.partition,
                    leader_epoch: p.leader_epoch,
                    partition_epoch: p.partition_epoch,
                    new_isr: p.new_isr.clone(),
                })
                .collect(),
        };
        self.in_flight = true;
        let peers = self.peers.clone();
        let send = async move { peers.alter_partition(controller, request).await };
        ctx.spawn(send.into_actor(self).map(move |answer, act, ctx| {
            act.in_flight = false;
            let mut results: BTreeMap<TopicPartition, Result<PartitionLeadership, ApiError>> =
                BTreeMap::new();
            let whole_error = match answer {
                Ok(Ok(per_partition)) => {
                    results.extend(per_partition);
                    None
                }
                Ok(Err(e)) => Some(e),
                Err(e) => Some(ApiError::with_message(
                    ResponseError::RequestTimedOut,
                    format!("AlterPartition to controller {controller}: {e}"),
                )),
            };
            for (tp, (_, waiter)) in batch {
                let outcome = match (&whole_error, results.remove(&tp)) {
                    (Some(e), _) => Err(e.clone()),
                    (None, Some(r)) => r,
                    (None, None) => Err(ApiError::with_message(
                        ResponseError::UnknownServerError,
                        format!("the controller did not answer for {tp}"),
                    )),
                };
                let _ = waiter.send(outcome);
            }
            act.send_queued(ctx);
        }));
    }
}

impl Actor for AlterPartitionManager {
    type Context = Context<Self>;
}

impl Handler<ProposeIsr> for AlterPartitionManager {
    type Result = ResponseFuture<Result<PartitionLeadership, ApiError>>;

    fn handle(&mut self, msg: ProposeIsr, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        if let Some((_, older)) = self.queued.insert(msg.tp.clone(), (msg, tx)) {
            let _ = older.send(Err(ApiError::with_message(
                ResponseError::OperationNotAttempted,
                "superseded by a newer proposal",
            )));
        }
        // Proposals made in the same turn of the event loop go out together.
        if !self.in_flight {
            ctx.run_later(std::time::Duration::ZERO, |act, ctx| act.send_queued(ctx));
        }
        Box::pin(async move {
            rx.await.unwrap_or_else(|_| {
                Err(ApiError::with_message(
                    ResponseError::UnknownServerError,
                    "the AlterPartition manager stopped",
                ))
            })
        })
    }
}
