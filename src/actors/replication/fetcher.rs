//! The follower side of replication (Kafka's `ReplicaFetcherThread` and
//! `ReplicaFetcherManager`).
//!
//! One [`ReplicaFetcher`] actor per leader broker pulls, in one [`ReplicaFetch`] at a time,
//! every partition this broker follows from that leader. An answer with no records whose
//! high-water mark and log start the local replica already has (an idle partition) changes
//! nothing and is dropped here. For each other partition of the answer it tells the local
//! replica actor what to do: append the leader's batches verbatim
//! ([`AppendAsFollower`]), truncate where the logs diverged ([`TruncateToDivergence`]), or
//! move to the leader's log range ([`ResetToLeaderRange`]); the replica answers with its new
//! log end offset and last epoch, which the next fetch carries. Partition errors that say the
//! leader does not know the partition or epoch (yet) hold that partition back for 10 ms,
//! doubling up to `replica.fetch.backoff.ms` while they repeat: most often the leader's broker
//! is a moment behind in applying the same LeaderAndIsr, and a new topic's first acks=all
//! records would otherwise wait the whole backoff (a second). The request sent meanwhile is not
//! parked past the moment such a partition is due. Other partition errors hold it back the
//! whole backoff; a failed request (the leader unreachable) holds them all back.
//!
//! A partition added while a request waits on the leader would wait with it: an idle
//! leader parks that request for up to `replica.fetch.wait.max.ms`, and a new topic's first
//! acks=all records would wait that long for their followers. So the waiting request is
//! abandoned (its answer, when it comes, is dropped: the next request asks for the same
//! offsets) and a new one, holding the added partitions too, goes out at once. At most one
//! abandoned request is outstanding, so a burst of LeaderAndIsrs costs one extra request.
//!
//! [`FetcherManager`] (owned by the broker actor) keeps which fetcher each followed
//! partition belongs to and starts fetchers on demand.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use kafka_protocol::error::ResponseError;
use uuid::Uuid;

use super::{FetchPartition, FetchedPartition, ReplicaFetch, ReplicaFetchResponse};
use crate::actors::replica::{
    AppendAsFollower, FollowerPosition, PartitionProgress, ReplicaHandle, ResetToLeaderRange,
    TruncateToDivergence,
};
use crate::config::BrokerConfig;
use crate::protocol::error::ApiError;
use crate::storage::TopicPartition;
use crate::transport::peer::{Peers, TransportError};

/// The fetch settings, Kafka's `replica.fetch.*` keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetcherSettings {
    pub max_wait: Duration,
    pub min_bytes: u32,
    pub partition_max_bytes: u32,
    pub response_max_bytes: u32,
    pub backoff: Duration,
}

impl FetcherSettings {
    pub fn from_config(config: &BrokerConfig) -> Self {
        Self {
            max_wait: Duration::from_millis(config.replica_fetch_wait_max_ms.max(0) as u64),
            min_bytes: config.replica_fetch_min_bytes.max(1) as u32,
            partition_max_bytes: config.replica_fetch_max_bytes.max(1) as u32,
            response_max_bytes: config.replica_fetch_response_max_bytes.max(1) as u32,
            backoff: Duration::from_millis(config.replica_fetch_backoff_ms.max(1) as u64),
        }
    }
}

/// A partition to follow, as a LeaderAndIsr left it.
#[derive(Debug, Clone)]
pub struct FollowedPartition {
    pub tp: TopicPartition,
    pub topic_id: Uuid,
    pub replica: ReplicaHandle,
    pub leader_epoch: i32,
    pub position: FollowerPosition,
}

/// The fetch state of one followed partition.
#[derive(Debug, Clone)]
struct PartitionFetchState {
    topic_id: Uuid,
    replica: ReplicaHandle,
    leader_epoch: i32,
    position: FollowerPosition,
    /// Held back (after an error) until this instant.
    delayed_until: Option<tokio::time::Instant>,
    /// Errors in a row that said the leader does not know the partition yet.
    not_ready_in_a_row: u32,
    /// Part of the fetch in flight: its answer applies to this state (a partition re-added
    /// meanwhile, in a new epoch, ignores the old answer).
    awaiting_answer: bool,
}

pub struct ReplicaFetcher {
    broker_id: i32,
    leader: i32,
    broker_epoch: Arc<AtomicI64>,
    peers: Peers,
    settings: FetcherSettings,
    partitions: BTreeMap<TopicPartition, PartitionFetchState>,
    /// One request at a time: the next carries the offsets the last one moved to.
    in_flight: bool,
    /// The request in flight is on its way to or parked at the leader (not being applied).
    waiting_on_leader: bool,
    /// Numbers requests; an answer to any but the latest is one abandoned.
    generation: u64,
    /// An abandoned request has not answered yet.
    abandoned_outstanding: bool,
    /// A wake-up is scheduled for the earliest delayed partition.
    wake_scheduled: bool,
}

impl ReplicaFetcher {
    pub fn new(
        broker_id: i32,
        leader: i32,
        broker_epoch: Arc<AtomicI64>,
        peers: Peers,
        settings: FetcherSettings,
    ) -> Self {
        Self {
            broker_id,
            leader,
            broker_epoch,
            peers,
            settings,
            partitions: BTreeMap::new(),
            in_flight: false,
            waiting_on_leader: false,
            generation: 0,
            abandoned_outstanding: false,
            wake_scheduled: false,
        }
    }

    /// Gives up on the request waiting at the leader, if there is one and no other is
    /// already abandoned, and sends a new one; true if it did.
    fn refetch_now(&mut self, ctx: &mut Context<Self>) -> bool {
        if !self.waiting_on_leader || self.abandoned_outstanding {
            return false;
        }
        self.abandoned_outstanding = true;
        self.waiting_on_leader = false;
        self.in_flight = false;
        for state in self.partitions.values_mut() {
            state.awaiting_answer = false;
        }
        self.fetch(ctx);
        true
    }

    /// Sends the next fetch if none is in flight and some partition is ready; otherwise makes
    /// sure a wake-up comes when the first held-back partition is due.
    fn fetch(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight {
            return;
        }
        let now = tokio::time::Instant::now();
        let partition_max_bytes = self.settings.partition_max_bytes;
        let ready: Vec<FetchPartition> = self
            .partitions
            .iter_mut()
            .filter(|(_, s)| s.delayed_until.is_none_or(|t| t <= now))
            .map(|(tp, s)| {
                s.awaiting_answer = true;
                FetchPartition {
                    tp: tp.clone(),
                    topic_id: s.topic_id,
                    fetch_offset: s.position.log_end_offset,
                    current_leader_epoch: s.leader_epoch,
                    last_fetched_epoch: s.position.last_epoch,
                    log_start_offset: s.replica.progress().log_start_offset,
                    max_bytes: partition_max_bytes,
                }
            })
            .collect();
        if ready.is_empty() {
            self.schedule_wake(ctx);
            return;
        }
        // A partition held back briefly rides the next request: the leader must not park this
        // one past the moment it is due.
        let max_wait = match self.earliest_delayed() {
            Some(due) => self
                .settings
                .max_wait
                .min(due.saturating_duration_since(now)),
            None => self.settings.max_wait,
        };
        let request = ReplicaFetch {
            replica_id: self.broker_id,
            broker_epoch: self.broker_epoch.load(Ordering::SeqCst),
            max_wait_ms: max_wait.as_millis() as u32,
            min_bytes: self.settings.min_bytes,
            max_bytes: self.settings.response_max_bytes,
            partitions: ready,
        };
        self.in_flight = true;
        self.waiting_on_leader = true;
        self.generation += 1;
        let generation = self.generation;
        let peers = self.peers.clone();
        let leader = self.leader;
        let work = async move { peers.replica_fetch(leader, request).await };
        ctx.spawn(work.into_actor(self).map(move |outcome, act, ctx| {
            if generation != act.generation {
                // Abandoned for a newer request, which asked for the same offsets or later.
                act.abandoned_outstanding = false;
                return;
            }
            act.waiting_on_leader = false;
            act.answered(outcome, ctx);
        }));
    }

    fn answered(
        &mut self,
        outcome: Result<ReplicaFetchResponse, TransportError>,
        ctx: &mut Context<Self>,
    ) {
        match outcome {
            Ok(response) => self.apply_response(response.partitions, ctx),
            Err(e) => {
                tracing::debug!(follower = self.broker_id, leader = self.leader, error = %e, "replica fetch failed; backing off");
                let until = tokio::time::Instant::now() + self.settings.backoff;
                for state in self.partitions.values_mut() {
                    state.delayed_until = Some(until);
                    state.awaiting_answer = false;
                }
                self.in_flight = false;
                self.fetch(ctx);
            }
        }
    }

    /// Hands each partition's answer to its local replica, then fetches again. An answer
    /// that changes nothing here (the idle case) is dropped without a message.
    fn apply_response(&mut self, answers: Vec<FetchedPartition>, ctx: &mut Context<Self>) {
        let mut to_apply = Vec::new();
        // Answers come in request order, which is this map's: walk both together rather than
        // look thousands of names up; any answer out of that order is looked up after.
        let mut out_of_order = Vec::new();
        let mut states = self.partitions.iter_mut();
        let mut current = states.next();
        for answer in answers {
            while current.as_ref().is_some_and(|(tp, _)| **tp < answer.tp) {
                current = states.next();
            }
            match current.take() {
                Some((tp, state)) if *tp == answer.tp => {
                    triage(state, answer, &mut to_apply);
                    current = states.next();
                }
                other => {
                    current = other;
                    out_of_order.push(answer);
                }
            }
        }
        for answer in out_of_order {
            // Absent: removed meanwhile (a LeaderAndIsr moved it elsewhere).
            if let Some(state) = self.partitions.get_mut(&answer.tp) {
                triage(state, answer, &mut to_apply);
            }
        }
        if to_apply.is_empty() {
            self.in_flight = false;
            self.fetch(ctx);
            return;
        }
        let applied = to_apply
            .into_iter()
            .map(|(epoch, replica, answer)| async move {
                let tp = answer.tp.clone();
                (tp, epoch, apply(&replica, epoch, answer).await)
            });
        let applied = futures::future::join_all(applied);
        ctx.spawn(applied.into_actor(self).map(|applied, act, ctx| {
            for (tp, epoch, result) in applied {
                act.after_apply(tp, epoch, result);
            }
            act.in_flight = false;
            act.fetch(ctx);
        }));
    }

    fn schedule_wake(&mut self, ctx: &mut Context<Self>) {
        if self.wake_scheduled {
            return;
        }
        let Some(earliest) = self.earliest_delayed() else {
            return;
        };
        self.wake_scheduled = true;
        let wait = earliest.saturating_duration_since(tokio::time::Instant::now());
        ctx.run_later(wait, |act, ctx| {
            act.wake_scheduled = false;
            act.fetch(ctx);
        });
    }

    fn earliest_delayed(&self) -> Option<tokio::time::Instant> {
        let now = tokio::time::Instant::now();
        self.partitions
            .values()
            .filter_map(|s| s.delayed_until)
            .filter(|t| *t > now)
            .min()
    }

    fn after_apply(&mut self, tp: TopicPartition, epoch: i32, result: Applied) {
        let backoff = self.settings.backoff;
        let Some(state) = self.partitions.get_mut(&tp) else {
            // Removed meanwhile (a LeaderAndIsr moved it elsewhere).
            return;
        };
        if state.leader_epoch != epoch {
            // Re-added in a newer epoch meanwhile: its fresh position stands.
            return;
        }
        match result {
            Applied::Moved(position) => {
                state.position = position;
                state.delayed_until = None;
                state.not_ready_in_a_row = 0;
            }
            Applied::Failed(e) => {
                let retriable = [
                    ResponseError::NotLeaderOrFollower.code(),
                    ResponseError::FencedLeaderEpoch.code(),
                    ResponseError::UnknownLeaderEpoch.code(),
                    ResponseError::UnknownTopicOrPartition.code(),
                    ResponseError::UnknownTopicId.code(),
                ];
                let delay = if retriable.contains(&e.code) {
                    tracing::debug!(partition = %tp, leader = self.leader, error = %e, "fetch refused; waiting for the controller");
                    // Most often the leader's broker has not applied the same LeaderAndIsr
                    // yet (a new topic): a few milliseconds, not the whole backoff.
                    let delay = not_ready_retry(state.not_ready_in_a_row, backoff);
                    state.not_ready_in_a_row = state.not_ready_in_a_row.saturating_add(1);
                    delay
                } else {
                    tracing::warn!(partition = %tp, leader = self.leader, error = %e, "replicating failed; retrying after backoff");
                    backoff
                };
                state.delayed_until = Some(tokio::time::Instant::now() + delay);
            }
        }
    }
}

/// The wait before fetching a partition again after the leader said, for the `n`th time in
/// a row, that it does not know it (yet): 10 ms, doubling up to `replica.fetch.backoff.ms`.
fn not_ready_retry(n: u32, backoff: Duration) -> Duration {
    Duration::from_millis(10u64 << n.min(16)).min(backoff)
}

/// What to do with one partition's answer: nothing (a partition re-added meanwhile keeps its
/// fresh position; an answer that changes nothing is dropped), or apply it to the replica.
fn triage(
    state: &mut PartitionFetchState,
    answer: FetchedPartition,
    to_apply: &mut Vec<(i32, ReplicaHandle, FetchedPartition)>,
) {
    if !std::mem::take(&mut state.awaiting_answer) {
        return;
    }
    if changes_nothing(&answer, &state.replica.progress(), state.leader_epoch) {
        state.delayed_until = None;
        return;
    }
    to_apply.push((state.leader_epoch, state.replica.clone(), answer));
}

/// An answer that would change nothing in the local replica: no records, no error or
/// divergence, and a high-water mark and log start it already has. [`AppendAsFollower`]
/// would publish the same progress and return the same position.
fn changes_nothing(
    answer: &FetchedPartition,
    local: &PartitionProgress,
    leader_epoch: i32,
) -> bool {
    answer.records.is_empty()
        && answer.error.is_none()
        && answer.diverging_epoch.is_none()
        && !local.stopped
        && !local.is_leader
        && local.leader_epoch == leader_epoch
        && answer.high_watermark.min(local.log_end_offset) <= local.high_watermark
        && answer.log_start_offset.min(local.high_watermark) <= local.log_start_offset
}

/// What the local replica made of one partition's answer.
enum Applied {
    Moved(FollowerPosition),
    Failed(ApiError),
}

async fn apply(replica: &ReplicaHandle, leader_epoch: i32, answer: FetchedPartition) -> Applied {
    let stopped = || {
        ApiError::with_message(
            ResponseError::NotLeaderOrFollower,
            "the local replica stopped",
        )
    };
    let outcome = if let Some(diverging) = answer.diverging_epoch {
        replica
            .addr
            .send(TruncateToDivergence {
                leader_epoch,
                diverging,
            })
            .await
    } else if let Some(error) = answer.error {
        if error.code == ResponseError::OffsetOutOfRange.code() && answer.log_end_offset >= 0 {
            replica
                .addr
                .send(ResetToLeaderRange {
                    leader_epoch,
                    leader_log_start_offset: answer.log_start_offset,
                    leader_log_end_offset: answer.log_end_offset,
                })
                .await
        } else {
            return Applied::Failed(error);
        }
    } else {
        replica
            .addr
            .send(AppendAsFollower {
                leader_epoch,
                records: answer.records,
                leader_high_watermark: answer.high_watermark,
                leader_log_start_offset: answer.log_start_offset,
            })
            .await
    };
    match outcome {
        Ok(Ok(position)) => Applied::Moved(position),
        Ok(Err(e)) => Applied::Failed(e),
        Err(_) => Applied::Failed(stopped()),
    }
}

impl Actor for ReplicaFetcher {
    type Context = Context<Self>;
}

/// Start (or restart, in a new epoch) following these partitions from this fetcher's leader.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct AddPartitions(pub Vec<FollowedPartition>);

impl Handler<AddPartitions> for ReplicaFetcher {
    type Result = ();

    fn handle(&mut self, msg: AddPartitions, ctx: &mut Self::Context) {
        let mut added = false;
        for p in msg.0 {
            if let Some(state) = self.partitions.get_mut(&p.tp) {
                if state.leader_epoch == p.leader_epoch && state.replica.addr == p.replica.addr {
                    // The same leadership again (a LeaderAndIsr that changed only the ISR):
                    // this fetcher's position is the newer one. The replica reported its
                    // position when it applied the LeaderAndIsr; an answer applied since
                    // moved it on, and fetching from the reported one would find the log
                    // already holding those offsets.
                    state.topic_id = p.topic_id;
                    continue;
                }
            }
            self.partitions.insert(
                p.tp,
                PartitionFetchState {
                    topic_id: p.topic_id,
                    replica: p.replica,
                    leader_epoch: p.leader_epoch,
                    position: p.position,
                    delayed_until: None,
                    not_ready_in_a_row: 0,
                    awaiting_answer: false,
                },
            );
            added = true;
        }
        if !(added && self.refetch_now(ctx)) {
            self.fetch(ctx);
        }
    }
}

/// Stop following these partitions (they now lead, follow another broker, or stopped).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct RemovePartitions(pub Vec<TopicPartition>);

impl Handler<RemovePartitions> for ReplicaFetcher {
    type Result = ();

    fn handle(&mut self, msg: RemovePartitions, _: &mut Self::Context) {
        for tp in msg.0 {
            self.partitions.remove(&tp);
        }
    }
}

/// Which partitions a fetcher follows (tests, status).
#[derive(Debug, Message)]
#[rtype(result = "Vec<(TopicPartition, i64)>")]
pub struct FollowedOffsets;

impl Handler<FollowedOffsets> for ReplicaFetcher {
    type Result = MessageResult<FollowedOffsets>;

    fn handle(&mut self, _: FollowedOffsets, _: &mut Self::Context) -> Self::Result {
        MessageResult(
            self.partitions
                .iter()
                .map(|(tp, s)| (tp.clone(), s.position.log_end_offset))
                .collect(),
        )
    }
}

/// Kafka's `ReplicaFetcherManager`: one fetcher per leader broker, and which one each
/// followed partition belongs to. Owned by the broker actor, which calls it on every
/// LeaderAndIsr and StopReplica.
pub struct FetcherManager {
    broker_id: i32,
    broker_epoch: Arc<AtomicI64>,
    peers: Peers,
    settings: FetcherSettings,
    /// Threads the fetchers run on (round-robin); empty means the current one.
    arbiters: Vec<ArbiterHandle>,
    fetchers: HashMap<i32, Addr<ReplicaFetcher>>,
    leader_of: HashMap<TopicPartition, i32>,
}

impl FetcherManager {
    pub fn new(
        broker_id: i32,
        broker_epoch: Arc<AtomicI64>,
        peers: Peers,
        settings: FetcherSettings,
        arbiters: Vec<ArbiterHandle>,
    ) -> Self {
        Self {
            broker_id,
            broker_epoch,
            peers,
            settings,
            arbiters,
            fetchers: HashMap::new(),
            leader_of: HashMap::new(),
        }
    }

    fn fetcher(&mut self, leader: i32) -> Addr<ReplicaFetcher> {
        if let Some(addr) = self.fetchers.get(&leader).filter(|a| a.connected()) {
            return addr.clone();
        }
        let fetcher = ReplicaFetcher::new(
            self.broker_id,
            leader,
            self.broker_epoch.clone(),
            self.peers.clone(),
            self.settings,
        );
        let addr = if self.arbiters.is_empty() {
            fetcher.start()
        } else {
            let arbiter = &self.arbiters[(leader.unsigned_abs() as usize) % self.arbiters.len()];
            ReplicaFetcher::start_in_arbiter(arbiter, |_| fetcher)
        };
        self.fetchers.insert(leader, addr.clone());
        addr
    }

    /// Follows `partitions` from `leader` (moving them off any other fetcher).
    pub fn follow(&mut self, leader: i32, partitions: Vec<FollowedPartition>) {
        if partitions.is_empty() {
            return;
        }
        let moved: Vec<TopicPartition> = partitions
            .iter()
            .filter(|p| self.leader_of.get(&p.tp) != Some(&leader))
            .map(|p| p.tp.clone())
            .collect();
        self.stop_following(&moved);
        for p in &partitions {
            self.leader_of.insert(p.tp.clone(), leader);
        }
        self.fetcher(leader).do_send(AddPartitions(partitions));
    }

    /// Stops following `partitions`, wherever they were followed from.
    pub fn stop_following(&mut self, partitions: &[TopicPartition]) {
        let mut per_leader: HashMap<i32, Vec<TopicPartition>> = HashMap::new();
        for tp in partitions {
            if let Some(leader) = self.leader_of.remove(tp) {
                per_leader.entry(leader).or_default().push(tp.clone());
            }
        }
        for (leader, tps) in per_leader {
            if let Some(fetcher) = self.fetchers.get(&leader) {
                fetcher.do_send(RemovePartitions(tps));
            }
        }
    }

    /// The fetcher following `tp`, if any (tests, status).
    pub fn fetcher_of(&self, tp: &TopicPartition) -> Option<(i32, Addr<ReplicaFetcher>)> {
        let leader = *self.leader_of.get(tp)?;
        Some((leader, self.fetchers.get(&leader)?.clone()))
    }

    /// Stops every fetcher (broker shutdown).
    pub fn shutdown(&mut self) {
        self.leader_of.clear();
        for (_, fetcher) in self.fetchers.drain() {
            fetcher.do_send(StopFetcher);
        }
    }
}

/// Stops a fetcher.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopFetcher;

impl Handler<StopFetcher> for ReplicaFetcher {
    type Result = ();

    fn handle(&mut self, _: StopFetcher, ctx: &mut Self::Context) {
        self.partitions.clear();
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use futures::future::BoxFuture;

    use super::*;
    use crate::actors::broker::LocalReplicas;
    use crate::actors::replica::{
        AppendRecords, ApplyLeaderAndIsr, FetchIsolation, LeaderAndIsrState, ReadRecords, Replica,
    };
    use crate::actors::replication::leader::serve_replica_fetch;
    use crate::config::TopicConfig;
    use crate::storage::{validate_client_batches, PartitionLog};
    use crate::transport::peer::{
        LocalTransport, PeerHandler, PeerRequest, PeerResponse, TransportError,
    };
    use crate::transport::LinkFaults;

    /// A leader broker's receiving end that only serves follower fetches, from real replicas.
    struct LeaderEndpoint(LocalReplicas);

    impl PeerHandler for LeaderEndpoint {
        fn handle(
            &self,
            _from: i32,
            request: PeerRequest,
        ) -> BoxFuture<'static, Result<PeerResponse, TransportError>> {
            let replicas = self.0.clone();
            Box::pin(async move {
                match request {
                    PeerRequest::ReplicaFetch(r) => Ok(PeerResponse::ReplicaFetch(
                        serve_replica_fetch(replicas, r).await,
                    )),
                    other => panic!("unexpected {}", other.kind()),
                }
            })
        }
    }

    fn tp() -> TopicPartition {
        TopicPartition::new("t", 0)
    }

    fn replica(dir: &std::path::Path, broker: i32) -> ReplicaHandle {
        replica_of(dir, broker, tp())
    }

    fn replica_of(dir: &std::path::Path, broker: i32, tp: TopicPartition) -> ReplicaHandle {
        let dir = dir.join(format!("broker-{broker}")).join(tp.to_string());
        let log = PartitionLog::open(&dir, tp.clone(), &TopicConfig::default(), 0, true).unwrap();
        Replica::new(
            tp,
            Uuid::nil(),
            broker,
            log,
            TopicConfig::default(),
            Duration::from_secs(300),
        )
        .start_here()
    }

    #[actix::test]
    async fn a_partition_added_while_the_request_is_parked_is_fetched_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let leader = replica(dir.path(), 1);
        let follower = replica(dir.path(), 2);
        lead_or_follow(&leader, 1, 0).await;
        let position = lead_or_follow(&follower, 1, 0).await;
        let new_tp = TopicPartition::new("new", 0);
        let new_leader = replica_of(dir.path(), 1, new_tp.clone());
        let new_follower = replica_of(dir.path(), 2, new_tp.clone());
        lead_or_follow(&new_leader, 1, 0).await;
        append(&new_leader, 3).await;
        let new_position = lead_or_follow(&new_follower, 1, 0).await;

        let transport = LocalTransport::new(LinkFaults::new());
        let leader_replicas = LocalReplicas::default();
        leader_replicas.insert(&tp(), leader.clone());
        leader_replicas.insert(&new_tp, new_leader.clone());
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        transport.register(
            1,
            Arc::new(FlakyLeader {
                inner: LeaderEndpoint(leader_replicas),
                calls: calls.clone(),
                failures: 0,
            }),
        );
        let peers = Peers::new(2, transport.clone(), Duration::from_secs(120));
        let parked = FetcherSettings {
            max_wait: Duration::from_secs(60),
            ..settings()
        };
        let mut fetchers =
            FetcherManager::new(2, Arc::new(AtomicI64::new(1)), peers, parked, vec![]);
        fetchers.follow(1, vec![followed(&follower, 0, position)]);
        // `t-0` is empty: the leader parks the first request for a minute.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while calls.load(Ordering::SeqCst) < 1 {
            assert!(tokio::time::Instant::now() < deadline, "the fetcher parks");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }

        fetchers.follow(
            1,
            vec![FollowedPartition {
                tp: new_tp,
                topic_id: Uuid::nil(),
                replica: new_follower.clone(),
                leader_epoch: 0,
                position: new_position,
            }],
        );
        let mut progress = new_follower.progress.clone();
        tokio::time::timeout(
            Duration::from_secs(10),
            progress.wait_for(|p| p.log_end_offset == 3),
        )
        .await
        .expect("the added partition is fetched without waiting out the parked request")
        .unwrap();
        // The first partition is still followed by the new request: its records come too.
        append(&leader, 2).await;
        let mut first = follower.progress.clone();
        tokio::time::timeout(
            Duration::from_secs(10),
            first.wait_for(|p| p.log_end_offset == 2),
        )
        .await
        .expect("the partition followed before keeps up")
        .unwrap();
        fetchers.shutdown();
    }

    #[actix::test]
    async fn a_partition_the_leader_does_not_host_yet_is_retried_within_milliseconds() {
        // A new topic: the follower applied its LeaderAndIsr before the leader's broker did.
        let dir = tempfile::tempdir().unwrap();
        let leader = replica(dir.path(), 1);
        let follower = replica(dir.path(), 2);
        lead_or_follow(&leader, 1, 0).await;
        let position = lead_or_follow(&follower, 1, 0).await;
        let new_tp = TopicPartition::new("new", 0);
        let new_leader = replica_of(dir.path(), 1, new_tp.clone());
        let new_follower = replica_of(dir.path(), 2, new_tp.clone());
        let new_position = lead_or_follow(&new_follower, 1, 0).await;

        let transport = LocalTransport::new(LinkFaults::new());
        let leader_replicas = LocalReplicas::default();
        leader_replicas.insert(&tp(), leader.clone());
        transport.register(1, Arc::new(LeaderEndpoint(leader_replicas.clone())));
        let peers = Peers::new(2, transport.clone(), Duration::from_secs(120));
        // Kafka's backoff after a partition error is a second; a minute here, so that only
        // the quick retry can pass, and a minute's long poll for the idle `t-0`.
        let slow = FetcherSettings {
            max_wait: Duration::from_secs(60),
            backoff: Duration::from_secs(60),
            ..settings()
        };
        let mut fetchers = FetcherManager::new(2, Arc::new(AtomicI64::new(1)), peers, slow, vec![]);
        fetchers.follow(
            1,
            vec![
                followed(&follower, 0, position),
                FollowedPartition {
                    tp: new_tp.clone(),
                    topic_id: Uuid::nil(),
                    replica: new_follower.clone(),
                    leader_epoch: 0,
                    position: new_position,
                },
            ],
        );
        // The leader's broker takes its LeaderAndIsr a moment later.
        tokio::time::sleep(Duration::from_millis(100)).await;
        lead_or_follow(&new_leader, 1, 0).await;
        append(&new_leader, 3).await;
        leader_replicas.insert(&new_tp, new_leader.clone());
        let mut progress = new_follower.progress.clone();
        tokio::time::timeout(
            Duration::from_secs(10),
            progress.wait_for(|p| p.log_end_offset == 3),
        )
        .await
        .expect("the partition is fetched again soon after the leader has it")
        .unwrap();
        fetchers.shutdown();
    }

    #[test]
    fn a_not_ready_partition_is_retried_after_10_ms_doubling_up_to_the_backoff() {
        let backoff = Duration::from_secs(1);
        let waits: Vec<u64> = (0..8)
            .map(|n| not_ready_retry(n, backoff).as_millis() as u64)
            .collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000]);
        assert_eq!(not_ready_retry(u32::MAX, backoff), backoff);
    }

    async fn lead_or_follow(handle: &ReplicaHandle, leader: i32, epoch: i32) -> FollowerPosition {
        let change = handle
            .addr
            .send(ApplyLeaderAndIsr(LeaderAndIsrState {
                leader,
                leader_epoch: epoch,
                isr: vec![1, 2],
                replicas: vec![1, 2],
                partition_epoch: epoch,
                is_new: false,
            }))
            .await
            .unwrap()
            .unwrap();
        FollowerPosition {
            log_end_offset: change.log_end_offset,
            last_epoch: change.last_epoch,
        }
    }

    async fn append(handle: &ReplicaHandle, records: usize) {
        for i in 0..records {
            let batch = crate::storage::batch::tests::client_batch(
                1,
                1_000 + i as i64,
                kafka_protocol::records::Compression::None,
                true,
            );
            handle
                .addr
                .send(AppendRecords {
                    batches: validate_client_batches(batch, 1 << 20, false).unwrap(),
                    required_acks: 1,
                })
                .await
                .unwrap()
                .unwrap();
        }
    }

    async fn log_bytes(handle: &ReplicaHandle) -> bytes::Bytes {
        handle
            .addr
            .send(ReadRecords {
                fetch_offset: 0,
                max_bytes: 1 << 20,
                min_one: true,
                isolation: FetchIsolation::LogEnd,
                current_leader_epoch: None,
            })
            .await
            .unwrap()
            .records
    }

    fn followed(
        follower: &ReplicaHandle,
        leader_epoch: i32,
        position: FollowerPosition,
    ) -> FollowedPartition {
        FollowedPartition {
            tp: tp(),
            topic_id: Uuid::nil(),
            replica: follower.clone(),
            leader_epoch,
            position,
        }
    }

    /// Broker 2's fetchers, following `t-0` into `follower` from `leader` on broker 1.
    fn follow_from(
        leader: &ReplicaHandle,
        follower: &ReplicaHandle,
        leader_epoch: i32,
        position: FollowerPosition,
    ) -> FetcherManager {
        let transport = LocalTransport::new(LinkFaults::new());
        let leader_replicas = LocalReplicas::default();
        leader_replicas.insert(&tp(), leader.clone());
        transport.register(1, Arc::new(LeaderEndpoint(leader_replicas)));
        let peers = Peers::new(2, transport.clone(), Duration::from_secs(5));
        let mut fetchers =
            FetcherManager::new(2, Arc::new(AtomicI64::new(1)), peers, settings(), vec![]);
        fetchers.follow(1, vec![followed(follower, leader_epoch, position)]);
        fetchers
    }

    fn settings() -> FetcherSettings {
        FetcherSettings {
            max_wait: Duration::from_millis(100),
            min_bytes: 1,
            partition_max_bytes: 1 << 20,
            response_max_bytes: 10 << 20,
            backoff: Duration::from_millis(50),
        }
    }

    #[actix::test]
    async fn a_fetcher_truncates_a_divergent_tail_then_copies_the_leaders_log_and_keeps_up() {
        let dir = tempfile::tempdir().unwrap();
        let leader = replica(dir.path(), 1);
        let follower = replica(dir.path(), 2);
        // The follower once led epoch 0 and wrote 3 records nobody else has.
        lead_or_follow(&follower, 2, 0).await;
        append(&follower, 3).await;
        // Broker 1 leads epoch 1 with its own 5 records.
        lead_or_follow(&leader, 1, 1).await;
        append(&leader, 5).await;
        let position = lead_or_follow(&follower, 1, 1).await;

        let mut fetchers = follow_from(&leader, &follower, 1, position);
        let mut progress = follower.progress.clone();
        tokio::time::timeout(
            Duration::from_secs(10),
            progress.wait_for(|p| p.log_end_offset == 5),
        )
        .await
        .expect("the follower catches up")
        .unwrap();
        assert_eq!(log_bytes(&leader).await, log_bytes(&follower).await);

        // New records reach the follower through the long poll, and the leader's
        // high-water mark follows the follower's next fetch.
        append(&leader, 2).await;
        tokio::time::timeout(
            Duration::from_secs(10),
            progress.wait_for(|p| p.log_end_offset == 7),
        )
        .await
        .expect("the follower keeps up")
        .unwrap();
        let mut leader_progress = leader.progress.clone();
        tokio::time::timeout(
            Duration::from_secs(10),
            leader_progress.wait_for(|p| p.high_watermark == 7),
        )
        .await
        .expect("the leader's high-water mark reaches 7")
        .unwrap();
        fetchers.shutdown();
    }

    #[actix::test]
    async fn an_answer_without_records_still_carries_the_leaders_high_watermark_and_log_start() {
        let dir = tempfile::tempdir().unwrap();
        let leader = replica(dir.path(), 1);
        let follower = replica(dir.path(), 2);
        lead_or_follow(&leader, 1, 0).await;
        append(&leader, 5).await;
        let position = lead_or_follow(&follower, 1, 0).await;
        let mut fetchers = follow_from(&leader, &follower, 0, position);
        // The records come with the leader's high-water mark 0; it reaches 5 only when the
        // follower's next fetch, at the log end, is answered with no records.
        let mut progress = follower.progress.clone();
        tokio::time::timeout(
            Duration::from_secs(10),
            progress.wait_for(|p| p.log_end_offset == 5 && p.high_watermark == 5),
        )
        .await
        .expect("the follower learns the high-water mark from an empty answer")
        .unwrap();
        // Idle now; the leader's log start moves (DeleteRecords): an empty answer brings it.
        let start = leader
            .addr
            .send(crate::actors::replica::DeleteRecordsBefore { offset: 2 })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(start, 2);
        tokio::time::timeout(
            Duration::from_secs(10),
            progress.wait_for(|p| p.log_start_offset == 2),
        )
        .await
        .expect("the follower's log start follows the leader's")
        .unwrap();
        append(&leader, 2).await;
        tokio::time::timeout(
            Duration::from_secs(10),
            progress.wait_for(|p| p.log_end_offset == 7 && p.high_watermark == 7),
        )
        .await
        .expect("the follower keeps up")
        .unwrap();
        fetchers.shutdown();
    }

    #[actix::test]
    async fn a_partition_followed_again_in_the_same_leader_epoch_keeps_the_fetchers_newer_position()
    {
        // A LeaderAndIsr that only changes the ISR re-adds the partition with the position the
        // replica had when it applied it; the fetcher may have appended past it since.
        let dir = tempfile::tempdir().unwrap();
        let leader = replica(dir.path(), 1);
        let follower = replica(dir.path(), 2);
        lead_or_follow(&leader, 1, 0).await;
        append(&leader, 3).await;
        let stale = lead_or_follow(&follower, 1, 0).await;
        let mut fetchers = follow_from(&leader, &follower, 0, stale);
        let mut progress = follower.progress.clone();
        tokio::time::timeout(
            Duration::from_secs(10),
            progress.wait_for(|p| p.log_end_offset == 3),
        )
        .await
        .expect("the follower catches up")
        .unwrap();
        fetchers.follow(1, vec![followed(&follower, 0, stale)]);
        append(&leader, 2).await;
        tokio::time::timeout(
            Duration::from_secs(10),
            progress.wait_for(|p| p.log_end_offset == 5),
        )
        .await
        .expect("the follower keeps up from where it was, not from the stale position")
        .unwrap();
        fetchers.shutdown();
    }

    #[actix::test]
    async fn a_parked_fetch_waiting_on_the_brokers_signal_wakes_on_an_append_and_not_before() {
        use crate::actors::replication::leader::wait_for_appends;

        let dir = tempfile::tempdir().unwrap();
        let leader = replica(dir.path(), 1);
        lead_or_follow(&leader, 1, 0).await;
        append(&leader, 2).await;
        let replicas = LocalReplicas::default();
        replicas.insert(&tp(), leader.clone());
        let request = ReplicaFetch {
            replica_id: 2,
            broker_epoch: 1,
            max_wait_ms: 500,
            min_bytes: 1,
            max_bytes: 1 << 20,
            partitions: vec![FetchPartition {
                tp: tp(),
                topic_id: Uuid::nil(),
                fetch_offset: 2,
                current_leader_epoch: 0,
                last_fetched_epoch: 0,
                log_start_offset: 0,
                max_bytes: 1 << 20,
            }],
        };
        let first = ReplicaFetchResponse {
            partitions: vec![FetchedPartition {
                tp: tp(),
                error: None,
                high_watermark: 2,
                log_start_offset: 0,
                log_end_offset: 2,
                diverging_epoch: None,
                records: bytes::Bytes::new(),
            }],
        };
        let soon = tokio::time::Instant::now() + Duration::from_millis(100);
        assert!(
            !wait_for_appends(&replicas, &request, &first, soon).await,
            "nothing new: the deadline ends the wait"
        );
        let waiting = tokio::task::spawn_local(async move {
            let later = tokio::time::Instant::now() + Duration::from_secs(60);
            wait_for_appends(&replicas, &request, &first, later).await
        });
        append(&leader, 1).await;
        let woken = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("the append wakes the fetch, long before its deadline")
            .unwrap();
        assert!(woken);
    }

    /// Fails its first `failures` requests as an unreachable broker would, then serves.
    struct FlakyLeader {
        inner: LeaderEndpoint,
        calls: Arc<std::sync::atomic::AtomicUsize>,
        failures: usize,
    }

    impl PeerHandler for FlakyLeader {
        fn handle(
            &self,
            from: i32,
            request: PeerRequest,
        ) -> BoxFuture<'static, Result<PeerResponse, TransportError>> {
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            if call < self.failures {
                return Box::pin(async {
                    Err(TransportError::Io {
                        to: 1,
                        detail: "connection refused".into(),
                    })
                });
            }
            self.inner.handle(from, request)
        }
    }

    #[actix::test]
    async fn a_fetcher_retries_an_unreachable_leader_after_its_backoff() {
        let dir = tempfile::tempdir().unwrap();
        let leader = replica(dir.path(), 1);
        let follower = replica(dir.path(), 2);
        lead_or_follow(&leader, 1, 0).await;
        append(&leader, 2).await;
        let position = lead_or_follow(&follower, 1, 0).await;
        let transport = LocalTransport::new(LinkFaults::new());
        let leader_replicas = LocalReplicas::default();
        leader_replicas.insert(&tp(), leader.clone());
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        transport.register(
            1,
            Arc::new(FlakyLeader {
                inner: LeaderEndpoint(leader_replicas),
                calls: calls.clone(),
                failures: 2,
            }),
        );
        let peers = Peers::new(2, transport.clone(), Duration::from_secs(5));
        let mut fetchers =
            FetcherManager::new(2, Arc::new(AtomicI64::new(1)), peers, settings(), vec![]);
        let started = tokio::time::Instant::now();
        fetchers.follow(
            1,
            vec![FollowedPartition {
                tp: tp(),
                topic_id: Uuid::nil(),
                replica: follower.clone(),
                leader_epoch: 0,
                position,
            }],
        );
        let mut progress = follower.progress.clone();
        tokio::time::timeout(
            Duration::from_secs(10),
            progress.wait_for(|p| p.log_end_offset == 2),
        )
        .await
        .expect("the follower catches up once the leader answers")
        .unwrap();
        // Two failures, the fetch that succeeded, maybe the next (long-polling) one.
        assert!(calls.load(Ordering::SeqCst) >= 3);
        // Each failure held the partition back for the backoff (50 ms).
        assert!(started.elapsed() >= Duration::from_millis(100));
        fetchers.shutdown();
    }
}
