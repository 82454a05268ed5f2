//! The broker's AlterPartition manager (Kafka's `AlterPartitionManager`): partition leaders
//! hand it their ISR proposals ([`ProposeIsr`]); it batches the proposals that arrive
//! together into one AlterPartition request to the controller (found in the metadata cache),
//! and answers each leader with what the controller recorded for its partition. When the
//! metadata names a new controller, a request still waiting on the old one is abandoned and
//! its proposals go to the new one (Kafka's controller channel re-resolves the controller the
//! same way), so an ISR change does not wait out a dead controller's socket timeout.
//!
//! The leader proposes, the controller decides and records (kafka-notes: "the leader
//! proposes them, the controller decides"): a leader never changes its ISR on its own.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

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

/// How often the manager compares the controller it is waiting on with the metadata's.
const CONTROLLER_CHECK: Duration = Duration::from_millis(100);

/// The request on its way to a controller.
struct InFlight {
    controller: i32,
    handle: SpawnHandle,
    /// The proposals it carries, with their waiters: put back in the queue if the request is
    /// abandoned for a new controller.
    batch: BTreeMap<TopicPartition, (ProposeIsr, Waiter)>,
}

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
    in_flight: Option<InFlight>,
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
            in_flight: None,
        }
    }

    /// Queues `proposal`; an older one for the same partition is answered as superseded.
    fn enqueue(&mut self, proposal: ProposeIsr, waiter: Waiter) {
        if let Some((_, older)) = self.queued.insert(proposal.tp.clone(), (proposal, waiter)) {
            let _ = older.send(Err(ApiError::with_message(
                ResponseError::OperationNotAttempted,
                "superseded by a newer proposal",
            )));
        }
    }

    /// Puts proposals that were sent back in the queue, behind nothing: a proposal queued
    /// meanwhile for the same partition is newer and wins.
    fn requeue(&mut self, batch: BTreeMap<TopicPartition, (ProposeIsr, Waiter)>) {
        for (tp, (proposal, waiter)) in batch {
            match self.queued.entry(tp) {
                Entry::Vacant(slot) => {
                    slot.insert((proposal, waiter));
                }
                Entry::Occupied(_) => {
                    let _ = waiter.send(Err(ApiError::with_message(
                        ResponseError::OperationNotAttempted,
                        "superseded by a newer proposal",
                    )));
                }
            }
        }
    }

    /// Kafka's `BrokerToControllerRequestThread` re-resolves the controller: a request
    /// waiting on a controller the metadata no longer names (dead, cut off, paused, or busy
    /// until `controller.socket.timeout.ms`) is abandoned and its proposals go to the new
    /// one at once, instead of after the old one's timeout.
    fn check_controller(&mut self, ctx: &mut Context<Self>) {
        let Some(in_flight) = &self.in_flight else {
            return;
        };
        let current = self.metadata.snapshot().controller_id;
        if current < 0 || current == in_flight.controller {
            return;
        }
        let Some(in_flight) = self.in_flight.take() else {
            return;
        };
        ctx.cancel_future(in_flight.handle);
        let batch = in_flight.batch;
        tracing::info!(
            old = in_flight.controller,
            new = current,
            partitions = batch.len(),
            "the controller changed: resending the ISR proposals to the new one"
        );
        self.requeue(batch);
        self.send_queued(ctx);
    }

    fn send_queued(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight.is_some() || self.queued.is_empty() {
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
        let peers = self.peers.clone();
        let send = async move { peers.alter_partition(controller, request).await };
        let handle = ctx.spawn(send.into_actor(self).map(move |answer, act, ctx| {
            // An abandoned request never gets here: its future was cancelled.
            let Some(InFlight { batch, .. }) = act.in_flight.take() else {
                return;
            };
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
            // The one asked is not (or no longer) the controller and the metadata names
            // another: ask that one (Kafka retries on NOT_CONTROLLER and on disconnects).
            let now = act.metadata.snapshot().controller_id;
            if whole_error.is_some() && now >= 0 && now != controller {
                tracing::info!(
                    old = controller,
                    new = now,
                    "resending the ISR proposals to the new controller"
                );
                act.requeue(batch);
                act.send_queued(ctx);
                return;
            }
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
        self.in_flight = Some(InFlight {
            controller,
            handle,
            batch,
        });
    }
}

impl Actor for AlterPartitionManager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(CONTROLLER_CHECK, |act, ctx| act.check_controller(ctx));
    }
}

impl Handler<ProposeIsr> for AlterPartitionManager {
    type Result = ResponseFuture<Result<PartitionLeadership, ApiError>>;

    fn handle(&mut self, msg: ProposeIsr, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.enqueue(msg, tx);
        // Proposals made in the same turn of the event loop go out together.
        if self.in_flight.is_none() {
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Instant;

    use futures::future::BoxFuture;

    use super::*;
    use crate::actors::metadata_cache::MetadataSnapshot;
    use crate::transport::peer::TransportError;
    use crate::transport::peer::{LocalTransport, PeerHandler, PeerRequest, PeerResponse};
    use crate::transport::LinkFaults;

    /// How a fake controller treats an AlterPartition.
    enum Behaviour {
        /// Never answers: a controller that died, paused or hangs while holding the request.
        Silent,
        /// Answers NOT_CONTROLLER after the metadata already names broker `.0` (it lost the
        /// election and the new controller's UpdateMetadata arrived first).
        Resigned(MetadataCache, i32),
        /// Records the proposal as asked, one partition epoch later.
        Accepts,
    }

    /// A broker's controller endpoint, replaced by a test double that records what it got.
    struct FakeController {
        behaviour: Behaviour,
        seen: Mutex<Vec<AlterPartition>>,
    }

    impl FakeController {
        fn new(behaviour: Behaviour) -> Arc<Self> {
            Arc::new(FakeController {
                behaviour,
                seen: Mutex::new(Vec::new()),
            })
        }

        fn seen(&self) -> usize {
            self.seen.lock().unwrap_or_else(|p| p.into_inner()).len()
        }
    }

    impl PeerHandler for FakeController {
        fn handle(
            &self,
            _from: i32,
            request: PeerRequest,
        ) -> BoxFuture<'static, Result<PeerResponse, TransportError>> {
            let PeerRequest::AlterPartition(m) = request else {
                return Box::pin(async { Err(TransportError::Closed(0)) });
            };
            self.seen
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(m.clone());
            match &self.behaviour {
                Behaviour::Silent => Box::pin(futures::future::pending()),
                Behaviour::Resigned(metadata, new) => {
                    metadata.replace(with_controller(*new));
                    Box::pin(async {
                        Ok(PeerResponse::AlterPartition(Err(ApiError::new(
                            ResponseError::NotController,
                        ))))
                    })
                }
                Behaviour::Accepts => {
                    let answer = m
                        .partitions
                        .iter()
                        .map(|p| {
                            (
                                TopicPartition::new(p.topic.clone(), p.partition),
                                Ok(PartitionLeadership {
                                    leader: m.broker_id,
                                    leader_epoch: p.leader_epoch,
                                    isr: p.new_isr.clone(),
                                    partition_epoch: p.partition_epoch + 1,
                                }),
                            )
                        })
                        .collect();
                    Box::pin(async move { Ok(PeerResponse::AlterPartition(Ok(answer))) })
                }
            }
        }
    }

    fn with_controller(id: i32) -> MetadataSnapshot {
        MetadataSnapshot {
            controller_id: id,
            ..MetadataSnapshot::empty()
        }
    }

    /// The leader's broker (3) with its manager; brokers 1 and 2 are the given controllers.
    /// Requests time out after 30 s, as `controller.socket.timeout.ms` does.
    fn manager(
        metadata: &MetadataCache,
        controllers: &[(i32, Arc<FakeController>)],
    ) -> Addr<AlterPartitionManager> {
        let transport = LocalTransport::new(LinkFaults::new());
        for (id, c) in controllers {
            transport.register(*id, c.clone());
        }
        let peers = Peers::new(3, transport, Duration::from_secs(30));
        AlterPartitionManager::new(3, Arc::new(AtomicI64::new(7)), metadata.clone(), peers).start()
    }

    fn proposal() -> ProposeIsr {
        ProposeIsr {
            tp: TopicPartition::new("t", 0),
            leader_epoch: 4,
            partition_epoch: 9,
            new_isr: vec![3, 1],
        }
    }

    async fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
        let until = Instant::now() + Duration::from_secs(5);
        while !ok() {
            assert!(Instant::now() < until, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[actix::test]
    async fn isr_proposal_goes_to_new_controller_when_old_one_is_unreachable() {
        let metadata = MetadataCache::new();
        metadata.replace(with_controller(1));
        let old = FakeController::new(Behaviour::Silent);
        let new = FakeController::new(Behaviour::Accepts);
        let manager = manager(&metadata, &[(1, old.clone()), (2, new.clone())]);

        let answer = manager.send(proposal());
        let asked = Instant::now();
        let waiting = tokio::spawn(answer);
        wait_until("the old controller holds the request", || old.seen() == 1).await;
        metadata.replace(with_controller(2));

        let recorded = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("answered long before the old controller's 30 s timeout")
            .expect("the waiting task")
            .expect("the manager answers")
            .expect("the new controller accepted");
        assert_eq!(
            (recorded.isr, recorded.partition_epoch),
            (vec![3, 1], 10),
            "what the new controller recorded"
        );
        assert_eq!(new.seen(), 1);
        assert!(asked.elapsed() < Duration::from_secs(5));
    }

    #[actix::test]
    async fn isr_proposal_refused_as_not_controller_is_resent_to_the_controller_the_metadata_names()
    {
        let metadata = MetadataCache::new();
        metadata.replace(with_controller(1));
        let old = FakeController::new(Behaviour::Resigned(metadata.clone(), 2));
        let new = FakeController::new(Behaviour::Accepts);
        let manager = manager(&metadata, &[(1, old.clone()), (2, new.clone())]);

        let recorded = tokio::time::timeout(Duration::from_secs(5), manager.send(proposal()))
            .await
            .expect("answered")
            .expect("the manager answers")
            .expect("the new controller accepted");
        assert_eq!(recorded.partition_epoch, 10);
        assert_eq!((old.seen(), new.seen()), (1, 1));
    }

    #[actix::test]
    async fn a_proposal_newer_than_the_abandoned_request_wins_at_the_new_controller() {
        let metadata = MetadataCache::new();
        metadata.replace(with_controller(1));
        let old = FakeController::new(Behaviour::Silent);
        let new = FakeController::new(Behaviour::Accepts);
        let manager = manager(&metadata, &[(1, old.clone()), (2, new.clone())]);

        let first = tokio::spawn(manager.send(proposal()));
        wait_until("the old controller holds the request", || old.seen() == 1).await;
        // `send` puts the message in the manager's mailbox at once, and the manager reads its
        // mailbox before its timers: the newer proposal is queued before the change is seen.
        let second = manager.send(ProposeIsr {
            new_isr: vec![3],
            ..proposal()
        });
        metadata.replace(with_controller(2));

        let first = first.await.expect("task").expect("answered");
        let second = second.await.expect("answered");
        assert_eq!(
            first.map_err(|e| e.code),
            Err(ResponseError::OperationNotAttempted.code())
        );
        assert_eq!(second.expect("accepted").isr, vec![3]);
        let sent = new.seen.lock().unwrap_or_else(|p| p.into_inner());
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].partitions.len(), 1);
        assert_eq!(sent[0].partitions[0].new_isr, vec![3]);
    }
}
