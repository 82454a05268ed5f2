//! One partition replica (Kafka's `Partition`): an actor owning the replica's
//! [`PartitionLog`], its role (leader or follower, with the leader epoch the controller gave
//! it), the high-water mark and the log start offset.
//!
//! Connections send it one message per request and partition (never per record): appends of
//! already validated batches, reads, offset lookups, record deletion. Every change of the
//! high-water mark, log end or log start offset is published on a `watch` channel
//! ([`PartitionProgress`]) so that delayed operations (an `acks=all` produce, a long-poll
//! fetch) and the broker's checkpointing wake exactly when something moved, without polling.
//!
//! As a leader it is Kafka's `Partition` on the leader side of replication: every follower
//! fetch ([`FollowerFetch`]) tells it that follower's log end offset, from which it keeps
//! each follower's last caught-up time, shrinks the ISR of followers that lag more than
//! `replica.lag.time.max.ms`, expands it with followers that caught up (proposing both to the
//! controller through AlterPartition, see [`crate::actors::alter_partition`]), and advances
//! the high-water mark. The high-water mark is computed in one place,
//! [`high_watermark_candidate`]: the smallest log end offset over the ISR. As a follower it
//! appends the leader's batches verbatim ([`AppendAsFollower`]), takes the leader's
//! high-water mark capped at its own log end, and truncates where its log diverged from the
//! leader's ([`TruncateToDivergence`]). What it publishes in [`CaughtUpFollowers`] lets the
//! leader's fetch path answer a caught-up follower's repeated fetch without a message (the
//! idle case at thousands of partitions).
//!
//! It also owns the partition's producer state (idempotence, Kafka's ProducerStateManager):
//! a leader append checks each batch with a producer id against it (a retried batch is
//! answered with its original offsets and not appended again), every append updates it, and
//! it is rebuilt on open from the newest `<offset>.snapshot` plus the log after it.
//! Snapshots are taken when a segment rolls and at clean shutdown.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use kafka_protocol::error::ResponseError;
use tokio::sync::watch;
use uuid::Uuid;

mod caught_up;
mod replication;

pub use caught_up::{CaughtUpFollowers, LeaderView};
pub use replication::{
    high_watermark_candidate, AppendAsFollower, EndOffsetForEpoch, FollowerFetch, FollowerPosition,
    LeaderState, RemoteReplicaState, ResetToLeaderRange, TruncateToDivergence,
};

use crate::actors::alter_partition::ProposeIsr;
use crate::actors::delayed::ProducePurgatory;
use crate::config::TopicConfig;
use crate::protocol::error::ApiError;
use crate::storage::producer_state::{self, ProducerBatch, ProducerStateManager};
use crate::storage::{BatchHeader, PartitionLog, StorageError, TopicPartition, ValidatedBatches};

/// Kafka's default `producer.id.expiration.ms` (one day).
pub const DEFAULT_PRODUCER_ID_EXPIRATION_MS: i64 = 86_400_000;

/// ListOffsets' special timestamps (Kafka's `ListOffsetsRequest`).
pub const LATEST_TIMESTAMP: i64 = -1;
pub const EARLIEST_TIMESTAMP: i64 = -2;
pub const MAX_TIMESTAMP: i64 = -3;
pub const EARLIEST_LOCAL_TIMESTAMP: i64 = -4;

/// How long a leader waits before proposing again an ISR change the controller refused.
const ISR_RETRY_BACKOFF: Duration = Duration::from_millis(500);

/// Mailbox capacity: large, because a connection's `send` must enqueue at once (a full mailbox
/// would defer the enqueue and could reorder two pipelined produce requests of one
/// connection). Memory stays bounded by each connection's limit on requests in flight.
const MAILBOX_CAPACITY: usize = 1 << 20;

/// What the rest of the broker can observe about a replica without asking it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionProgress {
    /// Exclusive: consumers read offsets below it.
    pub high_watermark: i64,
    pub log_end_offset: i64,
    pub log_start_offset: i64,
    /// The offset below which the log is known flushed (recovery-point checkpoint).
    pub recovery_point: i64,
    pub leader_epoch: i32,
    pub is_leader: bool,
    /// The size of the recorded ISR (leaders; 0 otherwise): an `acks=all` produce whose
    /// records reach the high-water mark after the ISR shrank below `min.insync.replicas`
    /// is answered NOT_ENOUGH_REPLICAS_AFTER_APPEND.
    pub isr_size: usize,
    /// Set once the replica has stopped (deleted, moved, broker shutting down): waiters give up.
    pub stopped: bool,
}

/// The role the controller's last LeaderAndIsr gave this replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Opened but not yet told its role: serves nothing.
    Offline,
    Leader(LeaderState),
    Follower {
        /// -1 while the partition has no leader.
        leader: i32,
    },
}

/// What a LeaderAndIsr did to the replica: the broker uses it to start or stop fetching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleChange {
    /// `None` when the replica leads.
    pub follows: Option<i32>,
    pub leader_epoch: i32,
    pub log_end_offset: i64,
    /// The epoch of the last batch in the log (-1 if none): a fetcher's `last_fetched_epoch`.
    pub last_epoch: i32,
    /// False when the request repeated what the replica already knew.
    pub changed: bool,
}

/// The partition state of a LeaderAndIsr request, as this replica applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderAndIsrState {
    pub leader: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
    pub replicas: Vec<i32>,
    pub partition_epoch: i32,
    pub is_new: bool,
}

impl PartitionProgress {
    /// A sole leader at leader epoch 0 holding offsets `[0, high_watermark)`, all committed
    /// (for tests and benches of what waits on progress).
    pub fn sole_leader_at(high_watermark: i64) -> Self {
        Self {
            high_watermark,
            log_end_offset: high_watermark,
            log_start_offset: 0,
            recovery_point: 0,
            leader_epoch: 0,
            is_leader: true,
            isr_size: 1,
            stopped: false,
        }
    }
}

/// Which offsets a read may return (Kafka's `FetchIsolation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchIsolation {
    /// Followers read up to the log end offset.
    LogEnd,
    /// Consumers with `read_uncommitted` read below the high-water mark.
    HighWatermark,
    /// `read_committed` reads below the last stable offset; without transactions it equals
    /// the high-water mark.
    TxnCommitted,
}

pub struct Replica {
    tp: TopicPartition,
    /// Reported in Fetch v13+ responses and used to reject requests for a recreated topic.
    topic_id: Uuid,
    /// This broker, to know whether a LeaderAndIsr makes us leader.
    broker_id: i32,
    /// `None` only after StopReplica handed the log back for closing or deletion.
    log: Option<PartitionLog>,
    role: Role,
    leader_epoch: i32,
    partition_epoch: i32,
    replicas: Vec<i32>,
    high_watermark: i64,
    config: TopicConfig,
    /// How often retention and time-based rolling are checked (`log.retention.check.interval.ms`).
    retention_check_interval: Duration,
    progress: watch::Sender<PartitionProgress>,
    /// Which followers' repeated fetches the leader's fetch path may answer without a
    /// message to this actor (see [`caught_up`]).
    caught_up: Arc<CaughtUpFollowers>,
    /// One flush at a time: its fsyncs run on a blocking thread.
    flush_in_flight: bool,
    /// Per producer id: epoch and the last batches' sequences, to drop retried batches and
    /// refuse gaps and zombies.
    producer_state: ProducerStateManager,
    /// `producer.id.expiration.ms`: producers idle this long are forgotten at retention time.
    producer_id_expiration_ms: i64,
    /// `replica.lag.time.max.ms`: a follower that has not caught up for this long leaves
    /// the ISR.
    lag_time_max: Duration,
    /// Where ISR changes are proposed to the controller (AlterPartition). `None` in tests
    /// that run a replica without a controller: its ISR then never changes by itself.
    isr_proposer: Option<Recipient<ProposeIsr>>,
    /// Set by [`Halt`]: the replica stops as in a crash.
    halted: bool,
    /// Set once an I/O error hit this replica's log dir (or the broker marked the dir
    /// offline after another replica's error): Kafka's offline replica. It serves nothing
    /// and answers KAFKA_STORAGE_ERROR until the broker restarts; its files are left as they
    /// are for the next start's recovery.
    log_dir_offline: bool,
    /// Where an I/O error is reported (Kafka's `LogDirFailureChannel`): the broker takes the
    /// whole dir offline. `None` in tests that run a replica alone.
    log_dir_failures: Option<Recipient<LogDirFailed>>,
    /// This partition's `acks=all` produces waiting for the high-water mark: every progress
    /// published on the watch is published here too, and completes the waiters it covers
    /// (see [`ProducePurgatory`]). Closed when the actor goes away.
    purgatory: PurgatoryOwner,
    /// The progress again, sent only when what a follower's long-poll fetch waits for
    /// changes (log end, leader epoch, leadership, stop): a high-water mark move, one per
    /// `acks=all` produce, would wake every parked follower fetch only for it to find
    /// nothing to read and park again (Kafka's follower `DelayedFetch` ignores it too).
    log_end: watch::Sender<PartitionProgress>,
}

/// Closes the purgatory when the replica is dropped, however it stopped: no produce waits
/// on a replica that is gone.
#[derive(Debug)]
struct PurgatoryOwner(Arc<ProducePurgatory>);

impl Drop for PurgatoryOwner {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl Replica {
    /// A replica for an opened log; it serves nothing until a LeaderAndIsr gives it a role.
    /// Its high-water mark starts at the one the log loaded from the replication-offset
    /// checkpoint.
    pub fn new(
        tp: TopicPartition,
        topic_id: Uuid,
        broker_id: i32,
        log: PartitionLog,
        config: TopicConfig,
        retention_check_interval: Duration,
    ) -> Self {
        let log_start = log.log_start_offset();
        let log_end = log.log_end_offset();
        let high_watermark = log.high_watermark().clamp(log_start, log_end);
        let producer_state = load_producer_state(&log);
        let initial = PartitionProgress {
            high_watermark,
            log_end_offset: log_end,
            log_start_offset: log_start,
            recovery_point: log.recovery_point(),
            leader_epoch: -1,
            is_leader: false,
            isr_size: 0,
            stopped: false,
        };
        let (progress, _) = watch::channel(initial);
        let (log_end, _) = watch::channel(initial);
        Self {
            tp,
            topic_id,
            broker_id,
            log: Some(log),
            role: Role::Offline,
            leader_epoch: -1,
            partition_epoch: -1,
            replicas: Vec::new(),
            high_watermark,
            config,
            retention_check_interval,
            progress,
            caught_up: Arc::new(CaughtUpFollowers::new(topic_id)),
            flush_in_flight: false,
            producer_state,
            producer_id_expiration_ms: DEFAULT_PRODUCER_ID_EXPIRATION_MS,
            lag_time_max: Duration::from_millis(30_000),
            isr_proposer: None,
            halted: false,
            log_dir_offline: false,
            log_dir_failures: None,
            purgatory: PurgatoryOwner(Arc::new(ProducePurgatory::new(initial))),
            log_end,
        }
    }

    /// Passes a progress just published on the watch to what waits on it elsewhere: the
    /// produce purgatory and, when a follower's fetch could read more or must give up, the
    /// log-end watch.
    fn published(&self, p: PartitionProgress) {
        self.purgatory.0.publish(p);
        self.log_end.send_if_modified(|current| {
            let wakes_fetches = current.log_end_offset != p.log_end_offset
                || current.leader_epoch != p.leader_epoch
                || current.is_leader != p.is_leader
                || current.stopped != p.stopped;
            // The other fields ride along, so a reader sees a recent progress.
            *current = p;
            wakes_fetches
        });
    }

    /// Reports I/O errors on the log to `failures` (the broker).
    pub fn with_log_dir_failures(mut self, failures: Recipient<LogDirFailed>) -> Self {
        self.log_dir_failures = Some(failures);
        self
    }

    /// The error for a failed log operation. An I/O error takes the replica offline and
    /// reports its log dir as failed: a full disk or a failing device is the dir's fault,
    /// not this request's, and a log whose last write may be torn must not be written again.
    pub(crate) fn storage_failure(&mut self, e: StorageError) -> ApiError {
        self.log_dir_failure(&e);
        storage_error(&self.tp, e)
    }

    /// [`Self::storage_failure`] for callers that pass the error on as it is.
    pub(crate) fn log_dir_failure(&mut self, e: &StorageError) {
        if matches!(e, StorageError::Io { .. }) && !self.log_dir_offline {
            tracing::error!(partition = %self.tp, error = %e, "I/O error on the log: its log dir goes offline");
            self.go_offline();
            if let (Some(failures), Some(log)) = (&self.log_dir_failures, &self.log) {
                failures.do_send(LogDirFailed {
                    log_dir: log.dir().parent().unwrap_or(log.dir()).to_path_buf(),
                    reason: format!("{}: {e}", self.tp),
                });
            }
        }
    }

    /// Serves nothing from now on; waiters on its progress give up.
    fn go_offline(&mut self) {
        self.log_dir_offline = true;
        self.role = Role::Offline;
        let mut last = *self.progress.borrow();
        last.is_leader = false;
        last.stopped = true;
        self.progress.send_replace(last);
        self.published(last);
        self.caught_up.clear();
    }

    fn offline_error(&self) -> ApiError {
        ApiError::with_message(
            ResponseError::KafkaStorageError,
            format!(
                "{}: its log dir on broker {} is offline",
                self.tp, self.broker_id
            ),
        )
    }

    /// Sets `replica.lag.time.max.ms` and where ISR changes are proposed.
    pub fn with_replication(
        mut self,
        lag_time_max: Duration,
        isr_proposer: Option<Recipient<ProposeIsr>>,
    ) -> Self {
        self.lag_time_max = lag_time_max;
        self.isr_proposer = isr_proposer;
        self
    }

    /// Sets `producer.id.expiration.ms` (the broker's config).
    pub fn with_producer_id_expiration_ms(mut self, ms: i64) -> Self {
        self.producer_id_expiration_ms = ms;
        self
    }

    /// Writes a producer state snapshot on a blocking thread (it fsyncs).
    fn snapshot_producer_state_in_background(&self, ctx: &mut Context<Self>) {
        let Some(log) = self.log.as_ref() else {
            return;
        };
        let dir = log.dir().to_path_buf();
        let state = self.producer_state.clone();
        let tp = self.tp.clone();
        ctx.spawn(
            async move { tokio::task::spawn_blocking(move || state.take_snapshot(&dir)).await }
                .into_actor(self)
                .map(move |result, act, _| match result {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(partition = %tp, error = %e, "producer state snapshot failed");
                        // A file gone meanwhile is a race with truncation or deletion, not
                        // the disk failing.
                        if e.kind() != std::io::ErrorKind::NotFound {
                            act.storage_failure(StorageError::io("producer state snapshot", e));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(partition = %tp, error = %e, "producer state snapshot task failed")
                    }
                }),
        );
    }

    /// Snapshot at shutdown, on this thread: the actor is going away.
    fn snapshot_producer_state_now(&self) {
        if let Some(log) = self.log.as_ref() {
            if let Err(e) = self.producer_state.take_snapshot(log.dir()) {
                tracing::warn!(partition = %self.tp, error = %e, "producer state snapshot failed");
            }
        }
    }

    /// Truncates the log to `offset` and rebuilds the producer state for what remains.
    fn truncate_log_to(&mut self, offset: i64) -> Result<(), ApiError> {
        let truncated = self.log_mut()?.truncate_to(offset);
        truncated.map_err(|e| self.storage_failure(e))?;
        self.producer_state = load_producer_state(self.log()?);
        self.high_watermark = self.high_watermark.min(offset);
        self.update_progress();
        Ok(())
    }

    /// Starts the replica on `arbiter` and returns its handle.
    pub fn start_on(self, arbiter: &ArbiterHandle) -> ReplicaHandle {
        let progress = self.progress.subscribe();
        let caught_up = self.caught_up.clone();
        let purgatory = self.purgatory.0.clone();
        let log_end = self.log_end.subscribe();
        let addr = Replica::start_in_arbiter(arbiter, move |ctx| {
            ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
            self
        });
        ReplicaHandle {
            addr,
            progress,
            caught_up,
            purgatory,
            log_end,
        }
    }

    /// Starts the replica on the current arbiter (tests).
    pub fn start_here(self) -> ReplicaHandle {
        let progress = self.progress.subscribe();
        let caught_up = self.caught_up.clone();
        let purgatory = self.purgatory.0.clone();
        let log_end = self.log_end.subscribe();
        let addr = Replica::create(move |ctx| {
            ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
            self
        });
        ReplicaHandle {
            addr,
            progress,
            caught_up,
            purgatory,
            log_end,
        }
    }

    /// The log and the producer state, for the log cleaner's handlers (`actors::log_cleaner`);
    /// `None` once the log was handed back.
    pub(crate) fn log_for_cleaner(&mut self) -> Option<(&mut PartitionLog, &ProducerStateManager)> {
        Some((self.log.as_mut()?, &self.producer_state))
    }

    fn log(&self) -> Result<&PartitionLog, ApiError> {
        if self.log_dir_offline {
            return Err(self.offline_error());
        }
        self.log.as_ref().ok_or_else(|| {
            ApiError::with_message(
                ResponseError::NotLeaderOrFollower,
                format!("{} is stopping", self.tp),
            )
        })
    }

    fn log_mut(&mut self) -> Result<&mut PartitionLog, ApiError> {
        if self.log_dir_offline {
            return Err(self.offline_error());
        }
        let tp = &self.tp;
        self.log.as_mut().ok_or_else(|| {
            ApiError::with_message(
                ResponseError::NotLeaderOrFollower,
                format!("{tp} is stopping"),
            )
        })
    }

    fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader(_))
    }

    fn require_leader(&self) -> Result<(), ApiError> {
        if self.log_dir_offline {
            Err(self.offline_error())
        } else if self.is_leader() {
            Ok(())
        } else {
            Err(ApiError::with_message(
                ResponseError::NotLeaderOrFollower,
                format!("broker {} is not the leader of {}", self.broker_id, self.tp),
            ))
        }
    }

    /// KIP-320: a client that names a leader epoch must name ours.
    fn check_leader_epoch(&self, requested: Option<i32>) -> Result<(), ApiError> {
        match requested {
            Some(epoch) if epoch >= 0 && epoch < self.leader_epoch => {
                Err(ApiError::new(ResponseError::FencedLeaderEpoch))
            }
            Some(epoch) if epoch >= 0 && epoch > self.leader_epoch => {
                Err(ApiError::new(ResponseError::UnknownLeaderEpoch))
            }
            _ => Ok(()),
        }
    }

    /// Recomputes the high-water mark (leaders only; it never moves backwards) and publishes
    /// the replica's progress.
    fn update_progress(&mut self) {
        let is_leader = self.is_leader();
        let Some(log) = self.log.as_mut() else {
            return;
        };
        let log_start = log.log_start_offset();
        let log_end = log.log_end_offset();
        let mut isr_size = 0;
        if let Role::Leader(leader) = &self.role {
            let candidate = high_watermark_candidate(
                self.broker_id,
                log_end,
                &leader.maximal_isr(),
                &leader.remote,
                log_start,
            );
            if candidate > self.high_watermark {
                self.high_watermark = candidate;
            }
            isr_size = leader.isr.len();
        }
        // DeleteRecords and retention can move the log start past the high-water mark; a
        // follower never exposes more than it holds.
        self.high_watermark = self.high_watermark.clamp(log_start, log_end);
        // The log keeps retention and DeleteRecords below the high-water mark.
        log.update_high_watermark(self.high_watermark);
        let next = PartitionProgress {
            high_watermark: self.high_watermark,
            log_end_offset: log_end,
            log_start_offset: log_start,
            recovery_point: log.recovery_point(),
            leader_epoch: self.leader_epoch,
            is_leader,
            isr_size,
            stopped: false,
        };
        crate::observe::replica::progress(
            self.broker_id,
            &self.tp,
            &self.role,
            &self.progress,
            &next,
        );
        self.progress.send_if_modified(|current| {
            if *current == next {
                false
            } else {
                *current = next;
                true
            }
        });
        self.published(next);
        // After the watch: a long-poll fetch woken by it reads the new progress.
        self.publish_caught_up(&next);
    }

    /// Starts a flush when the log asks for one (a segment rolled, or `flush.ms` passed): the
    /// fsyncs run on a blocking thread and the recovery point moves when they are done.
    fn maybe_flush(&mut self, ctx: &mut Context<Self>) {
        if self.flush_in_flight {
            return;
        }
        let Some(log) = self.log.as_ref() else {
            return;
        };
        if !log.needs_flush(now_ms()) {
            return;
        }
        let job = match log.flush_job() {
            Ok(job) => job,
            Err(e) => {
                tracing::warn!(partition = %self.tp, error = %e, "cannot prepare a flush");
                self.storage_failure(e);
                return;
            }
        };
        self.flush_in_flight = true;
        let flush = async move {
            let result = tokio::task::spawn_blocking(move || job.run().map(|()| job)).await;
            match result {
                Ok(result) => result,
                Err(e) => Err(StorageError::Corrupt(format!("flush task failed: {e}"))),
            }
        };
        ctx.spawn(flush.into_actor(self).map(|result, act, _| {
            act.flush_in_flight = false;
            match result {
                Ok(job) => {
                    let completed = act
                        .log
                        .as_mut()
                        .map(|log| log.flush_completed(&job, now_ms()));
                    if let Some(Err(e)) = completed {
                        tracing::warn!(partition = %act.tp, error = %e, "flush bookkeeping failed");
                        act.storage_failure(e);
                    }
                    act.update_progress();
                }
                // Kafka's rule: a failed fsync may have lost what the page cache held, and the
                // log must not be written or served again until a restart recovers it.
                Err(e) => {
                    tracing::warn!(partition = %act.tp, error = %e, "flush failed");
                    act.storage_failure(e);
                }
            }
        }));
    }

    fn apply_leader_and_isr(&mut self, state: LeaderAndIsrState) -> Result<RoleChange, ApiError> {
        if self.log_dir_offline {
            return Err(self.offline_error());
        }
        if state.leader_epoch < self.leader_epoch {
            return Err(ApiError::with_message(
                ResponseError::FencedLeaderEpoch,
                format!(
                    "{}: leader epoch {} is older than the current {}",
                    self.tp, state.leader_epoch, self.leader_epoch
                ),
            ));
        }
        let same_epoch = state.leader_epoch == self.leader_epoch;
        if same_epoch && state.partition_epoch <= self.partition_epoch {
            // A resend of what we already applied.
            return self.role_change(false);
        }
        let log_end = self.log()?.log_end_offset();
        let now = Instant::now();
        if state.leader == self.broker_id {
            let previous = std::mem::replace(&mut self.role, Role::Offline);
            let mut leader = match previous {
                // Same leadership, newer partition epoch: an ISR change the controller
                // recorded (ours, or its own after a broker died).
                Role::Leader(leader) if same_epoch => leader,
                _ => {
                    let assigned = self
                        .log_mut()?
                        .leader_epoch_cache()
                        .assign(state.leader_epoch, log_end);
                    assigned.map_err(|e| self.storage_failure(e))?;
                    LeaderState {
                        isr: Vec::new(),
                        pending_isr: None,
                        remote: BTreeMap::new(),
                        epoch_start_offset: log_end,
                        retry_after: None,
                    }
                }
            };
            leader.isr = state.isr;
            leader.pending_isr = None;
            // Forget replicas that were reassigned away; meet new ones.
            leader.remote.retain(|id, _| state.replicas.contains(id));
            for id in &state.replicas {
                if *id != self.broker_id {
                    let in_isr = leader.isr.contains(id);
                    leader.remote.entry(*id).or_insert_with(|| {
                        RemoteReplicaState::unknown(now, in_isr, self.lag_time_max)
                    });
                }
            }
            self.role = Role::Leader(leader);
        } else {
            if !same_epoch {
                tracing::debug!(partition = %self.tp, leader = state.leader, epoch = state.leader_epoch, "becoming follower");
            }
            self.role = Role::Follower {
                leader: state.leader,
            };
        }
        self.leader_epoch = state.leader_epoch;
        self.partition_epoch = state.partition_epoch;
        self.replicas = state.replicas;
        self.update_progress();
        self.role_change(true)
    }

    fn role_change(&self, changed: bool) -> Result<RoleChange, ApiError> {
        let log = self.log()?;
        Ok(RoleChange {
            follows: match &self.role {
                Role::Follower { leader } => Some(*leader),
                _ => None,
            },
            leader_epoch: self.leader_epoch,
            log_end_offset: log.log_end_offset(),
            last_epoch: last_epoch_of(log),
            changed,
        })
    }

    fn run_retention(&mut self, ctx: &mut Context<Self>) {
        let now = now_ms();
        let tp = self.tp.clone();
        let Some(log) = self.log.as_mut() else {
            return;
        };
        let mut failures = Vec::new();
        if let Err(e) = log.maybe_roll(now) {
            tracing::warn!(partition = %tp, error = %e, "time-based segment roll failed");
            failures.push(e);
        }
        match log.apply_retention(now) {
            Ok(0) => {}
            Ok(deleted) => {
                tracing::info!(partition = %tp, deleted, "retention deleted segments");
                // Snapshots below the new log start describe records that are gone.
                if let Err(e) =
                    producer_state::delete_snapshots_below(log.dir(), log.log_start_offset())
                {
                    tracing::warn!(partition = %tp, error = %e, "cannot delete old producer snapshots");
                    if e.kind() != std::io::ErrorKind::NotFound {
                        failures.push(StorageError::io("deleting producer snapshots", e));
                    }
                }
            }
            Err(e) => {
                tracing::warn!(partition = %tp, error = %e, "retention failed");
                failures.push(e);
            }
        }
        for e in failures {
            self.storage_failure(e);
        }
        let removed = self
            .producer_state
            .remove_expired(now, self.producer_id_expiration_ms);
        if removed > 0 {
            tracing::debug!(partition = %tp, removed, "expired idle producers");
        }
        self.update_progress();
        self.maybe_flush(ctx);
    }
}

impl Actor for Replica {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.retention_check_interval, |act, ctx| {
            act.run_retention(ctx)
        });
        // Kafka's isr-expiration task: every half of `replica.lag.time.max.ms`, so a
        // follower leaves the ISR at most 1.5 times that after it stopped catching up.
        let check = (self.lag_time_max / 2).max(Duration::from_millis(10));
        ctx.run_interval(check, |act, ctx| act.maybe_shrink_isr(ctx));
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        if self.halted {
            // A crash: files are left exactly as they are (no snapshot, no trimmed indexes,
            // no flush); the next open recovers them.
            drop(self.log.take());
            self.progress.send_modify(|p| p.stopped = true);
            self.published(*self.progress.borrow());
            self.caught_up.clear();
            return;
        }
        // Dropped without StopReplica (system shutdown): close the log so indexes are trimmed.
        self.snapshot_producer_state_now();
        if let Some(log) = self.log.take() {
            if let Err(e) = log.close() {
                tracing::warn!(partition = %self.tp, error = %e, "closing the log failed");
            }
        }
        self.progress.send_modify(|p| p.stopped = true);
        self.published(*self.progress.borrow());
        self.caught_up.clear();
    }
}

/// The address of a running replica plus its progress channel: what the broker hands to
/// connections so they can send requests and wait for progress without asking anyone.
#[derive(Debug, Clone)]
pub struct ReplicaHandle {
    pub addr: Addr<Replica>,
    pub progress: watch::Receiver<PartitionProgress>,
    /// Answers a caught-up follower's repeated fetch without a message to the actor.
    pub caught_up: Arc<CaughtUpFollowers>,
    /// Where an `acks=all` produce waits for the high-water mark.
    pub purgatory: Arc<ProducePurgatory>,
    /// The progress, changed only when the log end, the leader epoch or the leadership
    /// changes, or the replica stops: what a follower's long-poll fetch waits on.
    pub log_end: watch::Receiver<PartitionProgress>,
}

impl ReplicaHandle {
    pub fn progress(&self) -> PartitionProgress {
        *self.progress.borrow()
    }
}

/// The epoch of the log's last batch, -1 if it knows none.
fn last_epoch_of(log: &PartitionLog) -> i32 {
    log.latest_epoch().unwrap_or(-1)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A batch header as the producer state sees it, once the batch has its offsets.
fn producer_batch(h: &BatchHeader, first_offset: i64) -> ProducerBatch {
    ProducerBatch {
        producer_id: h.producer_id,
        producer_epoch: h.producer_epoch,
        base_sequence: h.base_sequence,
        last_sequence: ProducerBatch::last_sequence_of(h.base_sequence, h.last_offset_delta),
        first_offset,
        last_offset: first_offset + h.last_offset_delta as i64,
        max_timestamp: h.max_timestamp,
    }
}

/// Rebuilds the producer state of `log`: the newest snapshot at or below the log end, then
/// every batch after it (headers only). A log that cannot be read past some point keeps the
/// state up to there, which only weakens duplicate detection, never refuses an append.
fn load_producer_state(log: &PartitionLog) -> ProducerStateManager {
    let mut state = ProducerStateManager::new();
    let log_start = log.log_start_offset();
    let log_end = log.log_end_offset();
    let tp = log.topic_partition();
    if let Err(e) = state.truncate_and_reload(log.dir(), log_start, log_end) {
        tracing::warn!(partition = %tp, error = %e, "cannot read producer snapshots; replaying the whole log");
        state = ProducerStateManager::new();
    }
    let mut offset = state.map_end_offset().max(log_start);
    while offset < log_end {
        let read = match log.read(offset, 1 << 20, log_end, true) {
            Ok(read) => read,
            Err(e) => {
                tracing::warn!(partition = %tp, offset, error = %e, "producer state replay stopped");
                break;
            }
        };
        let records = read.records;
        let mut position = 0;
        let mut next = offset;
        while records.len() - position >= BatchHeader::SIZE {
            let Ok(h) = BatchHeader::parse(&records[position..]) else {
                break;
            };
            if h.total_size() < BatchHeader::SIZE || position + h.total_size() > records.len() {
                break;
            }
            if h.has_producer_id() {
                state.update(&producer_batch(&h, h.base_offset));
            }
            next = h.next_offset();
            position += h.total_size();
        }
        if next <= offset {
            break;
        }
        state.advance_to(next);
        offset = next;
    }
    state.advance_to(log_end);
    state
}

fn storage_error(tp: &TopicPartition, e: StorageError) -> ApiError {
    let code = e.kafka_code();
    ApiError::from_code(code, Some(format!("{tp}: {e}")))
}

// ---------------------------------------------------------------------------------------
// Messages

/// Apply the controller's decision for this partition (sent by the broker on LeaderAndIsr).
#[derive(Debug, Message)]
#[rtype(result = "Result<RoleChange, ApiError>")]
pub struct ApplyLeaderAndIsr(pub LeaderAndIsrState);

impl Handler<ApplyLeaderAndIsr> for Replica {
    type Result = Result<RoleChange, ApiError>;

    fn handle(&mut self, msg: ApplyLeaderAndIsr, _: &mut Self::Context) -> Self::Result {
        self.apply_leader_and_isr(msg.0)
    }
}

/// A replica's log dir failed (an I/O error on its log): sent to the broker, which takes the
/// whole dir offline.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct LogDirFailed {
    pub log_dir: PathBuf,
    pub reason: String,
}

/// The broker took `log_dir` offline: a replica whose log lives there stops serving.
/// Answers whether it did.
#[derive(Debug, Clone, Message)]
#[rtype(result = "bool")]
pub struct LogDirOffline {
    pub log_dir: PathBuf,
}

impl Handler<LogDirOffline> for Replica {
    type Result = bool;

    fn handle(&mut self, msg: LogDirOffline, _: &mut Self::Context) -> bool {
        let here = self
            .log
            .as_ref()
            .is_some_and(|log| log.dir().parent() == Some(msg.log_dir.as_path()));
        if here && !self.log_dir_offline {
            tracing::warn!(partition = %self.tp, log_dir = %msg.log_dir.display(), "log dir offline: the replica stops serving");
            self.go_offline();
        }
        here
    }
}

/// A leader append of batches the connection already validated.
#[derive(Debug, Message)]
#[rtype(result = "Result<AppendOutcome, ApiError>")]
pub struct AppendRecords {
    pub batches: ValidatedBatches,
    /// 0, 1 or -1; -1 refuses the append when the ISR is below `min.insync.replicas`.
    pub required_acks: i16,
}

/// Where an append landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendOutcome {
    pub base_offset: i64,
    pub last_offset: i64,
    /// -1 unless the topic uses LogAppendTime.
    pub log_append_time: i64,
    pub log_start_offset: i64,
    /// The leader epoch the append was made in: an `acks=all` wait fails if it changes.
    pub leader_epoch: i32,
    /// The topic's `min.insync.replicas` at the time of the append.
    pub min_insync_replicas: i32,
}

impl Handler<AppendRecords> for Replica {
    type Result = Result<AppendOutcome, ApiError>;

    fn handle(&mut self, msg: AppendRecords, ctx: &mut Self::Context) -> Self::Result {
        self.require_leader()?;
        if msg.required_acks == -1 {
            if let Role::Leader(LeaderState { isr, .. }) = &self.role {
                if (isr.len() as i32) < self.config.min_insync_replicas {
                    return Err(ApiError::with_message(
                        ResponseError::NotEnoughReplicas,
                        format!(
                            "{}: the ISR has {} members, min.insync.replicas is {}",
                            self.tp,
                            isr.len(),
                            self.config.min_insync_replicas
                        ),
                    ));
                }
            }
        }
        let epoch = self.leader_epoch;
        let tp = self.tp.clone();
        let headers: Vec<BatchHeader> = msg.batches.headers.clone();
        // Idempotence: a retried batch is answered with where it was stored, without error
        // (Kafka answers a duplicate like the original append); gaps and zombies are refused.
        // Produce v3+ carries one batch per partition, so a duplicate is the whole request.
        for h in headers.iter().filter(|h| h.has_producer_id()) {
            match self.producer_state.check(&producer_batch(h, -1)) {
                Ok(None) => {}
                Ok(Some(dup)) => {
                    tracing::debug!(partition = %tp, producer_id = h.producer_id, sequence = h.base_sequence, "duplicate batch");
                    return Ok(AppendOutcome {
                        base_offset: dup.first_offset,
                        last_offset: dup.last_offset,
                        log_append_time: -1,
                        log_start_offset: self.log()?.log_start_offset(),
                        leader_epoch: epoch,
                        min_insync_replicas: self.config.min_insync_replicas,
                    });
                }
                Err(e) => {
                    return Err(ApiError::from_code(
                        e.kafka_code(),
                        Some(format!("{tp}: {e}")),
                    ))
                }
            }
        }
        let segments_before = self.log()?.segment_count();
        let appended = self
            .log_mut()?
            .append_as_leader(msg.batches, epoch, now_ms());
        let info = appended.map_err(|e| self.storage_failure(e))?;
        let rolled = self.log()?.segment_count() > segments_before;
        let mut offset = info.first_offset;
        for h in &headers {
            if h.has_producer_id() {
                self.producer_state.update(&producer_batch(h, offset));
            }
            offset += h.last_offset_delta as i64 + 1;
        }
        self.producer_state.advance_to(info.last_offset + 1);
        if rolled {
            self.snapshot_producer_state_in_background(ctx);
        }
        self.update_progress();
        self.maybe_flush(ctx);
        Ok(AppendOutcome {
            base_offset: info.first_offset,
            last_offset: info.last_offset,
            log_append_time: info.log_append_time,
            log_start_offset: info.log_start_offset,
            leader_epoch: epoch,
            min_insync_replicas: self.config.min_insync_replicas,
        })
    }
}

/// A read for one partition of a Fetch request.
#[derive(Debug, Message)]
#[rtype(result = "PartitionRead")]
pub struct ReadRecords {
    pub fetch_offset: i64,
    pub max_bytes: usize,
    /// KIP-74: return the first batch even when it exceeds `max_bytes`.
    pub min_one: bool,
    pub isolation: FetchIsolation,
    pub current_leader_epoch: Option<i32>,
}

/// The answer for one partition of a Fetch.
#[derive(Debug, Clone)]
pub struct PartitionRead {
    pub error: Option<ApiError>,
    /// Whole stored batches, as stored.
    pub records: bytes::Bytes,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub leader_epoch: i32,
}

impl Handler<ReadRecords> for Replica {
    type Result = MessageResult<ReadRecords>;

    fn handle(&mut self, msg: ReadRecords, _: &mut Self::Context) -> Self::Result {
        let mut read = PartitionRead {
            error: None,
            records: bytes::Bytes::new(),
            high_watermark: self.high_watermark,
            last_stable_offset: self.high_watermark,
            log_start_offset: -1,
            log_end_offset: -1,
            leader_epoch: self.leader_epoch,
        };
        let result = (|| {
            self.check_leader_epoch(msg.current_leader_epoch)?;
            if msg.isolation != FetchIsolation::LogEnd {
                self.require_leader()?;
            }
            let log = self.log()?;
            read.log_start_offset = log.log_start_offset();
            read.log_end_offset = log.log_end_offset();
            let limit = match msg.isolation {
                FetchIsolation::LogEnd => log.log_end_offset(),
                FetchIsolation::HighWatermark | FetchIsolation::TxnCommitted => self.high_watermark,
            };
            Ok(log.read(msg.fetch_offset, msg.max_bytes, limit, msg.min_one))
        })();
        match result {
            Ok(Ok(data)) => read.records = data.records,
            Ok(Err(e)) => read.error = Some(self.storage_failure(e)),
            Err(e) => read.error = Some(e),
        }
        MessageResult(read)
    }
}

/// ListOffsets for one partition.
#[derive(Debug, Message)]
#[rtype(result = "Result<OffsetAndTimestamp, ApiError>")]
pub struct ListOffsets {
    /// An offset spec: [`LATEST_TIMESTAMP`], [`EARLIEST_TIMESTAMP`], [`MAX_TIMESTAMP`],
    /// [`EARLIEST_LOCAL_TIMESTAMP`], or a timestamp in ms.
    pub timestamp: i64,
    pub isolation: FetchIsolation,
    pub current_leader_epoch: Option<i32>,
}

/// A ListOffsets answer; `offset` -1 when no record has a timestamp at or after the one asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetAndTimestamp {
    pub offset: i64,
    pub timestamp: i64,
    pub leader_epoch: i32,
}

impl Handler<ListOffsets> for Replica {
    type Result = Result<OffsetAndTimestamp, ApiError>;

    fn handle(&mut self, msg: ListOffsets, _: &mut Self::Context) -> Self::Result {
        self.check_leader_epoch(msg.current_leader_epoch)?;
        if msg.isolation != FetchIsolation::LogEnd {
            self.require_leader()?;
        }
        let log = self.log()?;
        let epoch = self.leader_epoch;
        let visible_end = match msg.isolation {
            FetchIsolation::LogEnd => log.log_end_offset(),
            _ => self.high_watermark,
        };
        // Kafka answers with the epoch of the leader that wrote the offset found (KIP-320:
        // a client validates its position against it after a leader change); the log end
        // gets the current epoch.
        let found = |offset: i64, timestamp: i64| OffsetAndTimestamp {
            offset,
            timestamp,
            leader_epoch: log.epoch_for_offset(offset).unwrap_or(-1),
        };
        match msg.timestamp {
            EARLIEST_TIMESTAMP | EARLIEST_LOCAL_TIMESTAMP => Ok(found(log.log_start_offset(), -1)),
            LATEST_TIMESTAMP => Ok(OffsetAndTimestamp {
                offset: visible_end,
                timestamp: -1,
                leader_epoch: epoch,
            }),
            MAX_TIMESTAMP => {
                let (timestamp, offset) = log.max_timestamp_and_offset();
                if offset < 0 || offset >= visible_end {
                    Ok(found(-1, -1))
                } else {
                    Ok(found(offset, timestamp))
                }
            }
            timestamp => match log.offset_for_timestamp(timestamp) {
                Ok(Some((offset, ts))) if offset < visible_end => Ok(found(offset, ts)),
                Ok(_) => Ok(found(-1, -1)),
                Err(e) => Err(self.storage_failure(e)),
            },
        }
    }
}

/// DeleteRecords for one partition: moves the log start offset up to `offset` (-1: the
/// high-water mark).
#[derive(Debug, Message)]
#[rtype(result = "Result<i64, ApiError>")]
pub struct DeleteRecordsBefore {
    pub offset: i64,
}

impl Handler<DeleteRecordsBefore> for Replica {
    type Result = Result<i64, ApiError>;

    fn handle(&mut self, msg: DeleteRecordsBefore, _: &mut Self::Context) -> Self::Result {
        self.require_leader()?;
        let offset = if msg.offset == -1 {
            self.high_watermark
        } else {
            msg.offset
        };
        let log_start = self.log()?.log_start_offset();
        if offset < 0 || offset > self.high_watermark {
            return Err(ApiError::with_message(
                ResponseError::OffsetOutOfRange,
                format!(
                    "{}: cannot delete records before {offset}: the log starts at {log_start} and its high-water mark is {}",
                    self.tp, self.high_watermark
                ),
            ));
        }
        let new_start = if offset > log_start {
            let deleted = self.log_mut()?.delete_records_before(offset);
            deleted.map_err(|e| self.storage_failure(e))?
        } else {
            log_start
        };
        self.update_progress();
        Ok(new_start)
    }
}

/// A topic configuration change (AlterConfigs, IncrementalAlterConfigs).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct UpdateTopicConfig(pub TopicConfig);

impl Handler<UpdateTopicConfig> for Replica {
    type Result = ();

    fn handle(&mut self, msg: UpdateTopicConfig, _: &mut Self::Context) {
        if let Some(log) = self.log.as_mut() {
            log.update_config(&msg.0);
        }
        self.config = msg.0;
    }
}

/// What DescribeLogDirs and the broker's bookkeeping need to know about a replica.
#[derive(Debug, Message)]
#[rtype(result = "Option<ReplicaDescription>")]
pub struct DescribeReplica;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaDescription {
    pub tp: TopicPartition,
    pub topic_id: Uuid,
    pub size_in_bytes: u64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub high_watermark: i64,
    pub leader_epoch: i32,
    pub is_leader: bool,
    pub dir: PathBuf,
}

impl Handler<DescribeReplica> for Replica {
    type Result = Option<ReplicaDescription>;

    fn handle(&mut self, _: DescribeReplica, _: &mut Self::Context) -> Self::Result {
        let log = self.log.as_ref()?;
        Some(ReplicaDescription {
            tp: self.tp.clone(),
            topic_id: self.topic_id,
            size_in_bytes: log.size_in_bytes(),
            log_start_offset: log.log_start_offset(),
            log_end_offset: log.log_end_offset(),
            high_watermark: self.high_watermark,
            leader_epoch: self.leader_epoch,
            is_leader: self.is_leader(),
            dir: log.dir().to_path_buf(),
        })
    }
}

/// Truncate the log to an offset (a follower after OffsetsForLeaderEpoch, [replication]);
/// the producer state is rebuilt for what remains.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), ApiError>")]
pub struct TruncateLogTo(pub i64);

impl Handler<TruncateLogTo> for Replica {
    type Result = Result<(), ApiError>;

    fn handle(&mut self, msg: TruncateLogTo, _: &mut Self::Context) -> Self::Result {
        self.truncate_log_to(msg.0)
    }
}

/// Stop as a crashed process would: nothing is flushed, snapshotted or trimmed (fault
/// injection of the in-process cluster; the files are recovered at the next open).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Halt;

impl Handler<Halt> for Replica {
    type Result = ();

    fn handle(&mut self, _: Halt, ctx: &mut Self::Context) {
        self.halted = true;
        self.role = Role::Offline;
        self.caught_up.clear();
        ctx.stop();
    }
}

/// StopReplica: stop serving and hand the log back to the broker, which closes or deletes it
/// through its log manager. Answers with the final progress, for the broker's checkpoints.
#[derive(Debug, Message)]
#[rtype(result = "StoppedReplica")]
pub struct StopReplica;

/// What a stopped replica returns.
pub struct StoppedReplica {
    pub progress: PartitionProgress,
    /// `None` if the replica had already given its log up.
    pub log: Option<PartitionLog>,
}

impl std::fmt::Debug for StoppedReplica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoppedReplica")
            .field("progress", &self.progress)
            .field("has_log", &self.log.is_some())
            .finish()
    }
}

impl Handler<StopReplica> for Replica {
    type Result = MessageResult<StopReplica>;

    fn handle(&mut self, _: StopReplica, ctx: &mut Self::Context) -> Self::Result {
        self.snapshot_producer_state_now();
        self.update_progress();
        let mut last = *self.progress.borrow();
        last.stopped = true;
        self.role = Role::Offline;
        self.progress.send_replace(last);
        self.published(last);
        self.caught_up.clear();
        ctx.stop();
        MessageResult(StoppedReplica {
            progress: last,
            log: self.log.take(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::validate_client_batches;
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    pub(super) fn batch(keys: &[&str], timestamp: i64) -> Bytes {
        let records: Vec<Record> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // The encoder splits batches where offset − sequence changes.
                sequence: i as i32 - 1,
                timestamp: timestamp + i as i64,
                key: Some(Bytes::copy_from_slice(k.as_bytes())),
                value: Some(Bytes::from_static(b"value")),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .expect("encode batch");
        buf.freeze()
    }

    pub(super) fn open_log(dir: &std::path::Path, tp: &TopicPartition) -> PartitionLog {
        let config = TopicConfig::default();
        PartitionLog::open(
            &dir.join(format!("{}-{}", tp.topic, tp.partition)),
            tp.clone(),
            &config,
            0,
            true,
        )
        .expect("open log")
    }

    fn leader_state(epoch: i32) -> LeaderAndIsrState {
        LeaderAndIsrState {
            leader: 1,
            leader_epoch: epoch,
            isr: vec![1],
            replicas: vec![1],
            partition_epoch: epoch,
            is_new: true,
        }
    }

    fn start_replica(dir: &std::path::Path) -> ReplicaHandle {
        let tp = TopicPartition {
            topic: "t".into(),
            partition: 0,
        };
        let log = open_log(dir, &tp);
        Replica::new(
            tp,
            Uuid::new_v4(),
            1,
            log,
            TopicConfig::default(),
            Duration::from_secs(300),
        )
        .start_here()
    }

    pub(super) async fn append(
        handle: &ReplicaHandle,
        keys: &[&str],
    ) -> Result<AppendOutcome, ApiError> {
        let batches =
            validate_client_batches(batch(keys, 1_000), 1 << 20, false).expect("valid batch");
        handle
            .addr
            .send(AppendRecords {
                batches,
                required_acks: 1,
            })
            .await
            .expect("replica alive")
    }

    /// One idempotent batch of `count` records: sequences `base_sequence..`.
    fn idempotent_batch(producer_id: i64, epoch: i16, base_sequence: i32, count: usize) -> Bytes {
        let records: Vec<Record> = (0..count)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id,
                producer_epoch: epoch,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: base_sequence + i as i32,
                timestamp: now_ms(),
                key: None,
                value: Some(Bytes::from(format!("v{}", base_sequence + i as i32))),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .expect("encode batch");
        buf.freeze()
    }

    async fn produce(
        handle: &ReplicaHandle,
        producer_id: i64,
        epoch: i16,
        base_sequence: i32,
        count: usize,
    ) -> Result<AppendOutcome, ApiError> {
        let batches = validate_client_batches(
            idempotent_batch(producer_id, epoch, base_sequence, count),
            1 << 20,
            false,
        )
        .expect("valid batch");
        handle
            .addr
            .send(AppendRecords {
                batches,
                required_acks: -1,
            })
            .await
            .expect("replica alive")
    }

    async fn start_leader(dir: &std::path::Path) -> ReplicaHandle {
        let replica = start_replica(dir);
        replica
            .addr
            .send(ApplyLeaderAndIsr(leader_state(0)))
            .await
            .unwrap()
            .unwrap();
        replica
    }

    /// Stops the replica (which snapshots its producer state) and closes its log.
    async fn stop(replica: ReplicaHandle) {
        let stopped = replica.addr.send(StopReplica).await.unwrap();
        stopped.log.expect("log handed back").close().unwrap();
    }

    fn partition_dir(dir: &std::path::Path) -> PathBuf {
        dir.join("t-0")
    }

    #[actix::test]
    async fn a_retried_batch_gets_its_original_offsets_and_is_not_appended_again() {
        let dir = tempfile::tempdir().unwrap();
        let replica = start_leader(dir.path()).await;
        let first = produce(&replica, 7, 0, 0, 3).await.unwrap();
        let second = produce(&replica, 7, 0, 3, 2).await.unwrap();
        assert_eq!((second.base_offset, second.last_offset), (3, 4));
        let retried = produce(&replica, 7, 0, 0, 3).await.unwrap();
        assert_eq!((retried.base_offset, retried.last_offset), (0, 2));
        assert_eq!(retried.base_offset, first.base_offset);
        let retried = produce(&replica, 7, 0, 3, 2).await.unwrap();
        assert_eq!(retried.base_offset, 3);
        assert_eq!(replica.progress().log_end_offset, 5);
    }

    #[actix::test]
    async fn a_sequence_gap_is_refused_as_out_of_order() {
        let dir = tempfile::tempdir().unwrap();
        let replica = start_leader(dir.path()).await;
        produce(&replica, 7, 0, 0, 2).await.unwrap();
        let gap = produce(&replica, 7, 0, 5, 1).await.unwrap_err();
        assert_eq!(gap.code, ResponseError::OutOfOrderSequenceNumber.code());
        assert_eq!(replica.progress().log_end_offset, 2);
        // The next sequence in order is still accepted.
        let next = produce(&replica, 7, 0, 2, 1).await.unwrap();
        assert_eq!(next.base_offset, 2);
    }

    #[actix::test]
    async fn an_older_producer_epoch_is_fenced() {
        let dir = tempfile::tempdir().unwrap();
        let replica = start_leader(dir.path()).await;
        produce(&replica, 7, 3, 0, 1).await.unwrap();
        let zombie = produce(&replica, 7, 2, 1, 1).await.unwrap_err();
        assert_eq!(zombie.code, ResponseError::InvalidProducerEpoch.code());
        assert_eq!(replica.progress().log_end_offset, 1);
    }

    #[actix::test]
    async fn a_bumped_epoch_must_restart_its_sequences_at_zero() {
        let dir = tempfile::tempdir().unwrap();
        let replica = start_leader(dir.path()).await;
        produce(&replica, 7, 0, 0, 4).await.unwrap();
        let not_zero = produce(&replica, 7, 1, 4, 1).await.unwrap_err();
        assert_eq!(
            not_zero.code,
            ResponseError::OutOfOrderSequenceNumber.code()
        );
        let bumped = produce(&replica, 7, 1, 0, 1).await.unwrap();
        assert_eq!(bumped.base_offset, 4);
        let old = produce(&replica, 7, 0, 4, 1).await.unwrap_err();
        assert_eq!(old.code, ResponseError::InvalidProducerEpoch.code());
    }

    #[actix::test]
    async fn producers_are_independent() {
        let dir = tempfile::tempdir().unwrap();
        let replica = start_leader(dir.path()).await;
        produce(&replica, 7, 0, 0, 2).await.unwrap();
        let other = produce(&replica, 8, 0, 0, 2).await.unwrap();
        assert_eq!(other.base_offset, 2);
        let plain = append(&replica, &["x"]).await.unwrap();
        assert_eq!(plain.base_offset, 4);
    }

    #[actix::test]
    async fn producer_state_survives_a_clean_restart_through_its_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let replica = start_leader(dir.path()).await;
        produce(&replica, 7, 0, 0, 2).await.unwrap();
        produce(&replica, 7, 0, 2, 2).await.unwrap();
        stop(replica).await;
        let snapshots = producer_state::list_snapshots(&partition_dir(dir.path())).unwrap();
        assert_eq!(snapshots.keys().copied().collect::<Vec<_>>(), vec![4]);

        let replica = start_leader(dir.path()).await;
        let retried = produce(&replica, 7, 0, 2, 2).await.unwrap();
        assert_eq!((retried.base_offset, retried.last_offset), (2, 3));
        let gap = produce(&replica, 7, 0, 9, 1).await.unwrap_err();
        assert_eq!(gap.code, ResponseError::OutOfOrderSequenceNumber.code());
        assert_eq!(produce(&replica, 7, 0, 4, 1).await.unwrap().base_offset, 4);
    }

    #[actix::test]
    async fn producer_state_is_rebuilt_from_an_older_snapshot_plus_the_log_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let replica = start_leader(dir.path()).await;
        produce(&replica, 7, 0, 0, 2).await.unwrap();
        stop(replica).await;
        let replica = start_leader(dir.path()).await;
        produce(&replica, 7, 0, 2, 2).await.unwrap();
        produce(&replica, 8, 0, 0, 1).await.unwrap();
        stop(replica).await;
        // Keep only the snapshot at 2, as after a crash: offsets 2..5 must come from the log.
        let pdir = partition_dir(dir.path());
        for (offset, path) in producer_state::list_snapshots(&pdir).unwrap() {
            if offset != 2 {
                std::fs::remove_file(path).unwrap();
            }
        }

        let replica = start_leader(dir.path()).await;
        let retried = produce(&replica, 7, 0, 2, 2).await.unwrap();
        assert_eq!(retried.base_offset, 2);
        let retried = produce(&replica, 8, 0, 0, 1).await.unwrap();
        assert_eq!(retried.base_offset, 4);
        assert_eq!(replica.progress().log_end_offset, 5);
    }

    #[actix::test]
    async fn producer_state_is_rebuilt_from_the_log_alone_without_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let replica = start_leader(dir.path()).await;
        produce(&replica, 7, 0, 0, 3).await.unwrap();
        append(&replica, &["plain"]).await.unwrap();
        produce(&replica, 7, 0, 3, 1).await.unwrap();
        stop(replica).await;
        let pdir = partition_dir(dir.path());
        for path in producer_state::list_snapshots(&pdir).unwrap().into_values() {
            std::fs::remove_file(path).unwrap();
        }

        let replica = start_leader(dir.path()).await;
        let retried = produce(&replica, 7, 0, 3, 1).await.unwrap();
        assert_eq!(retried.base_offset, 4);
        let gap = produce(&replica, 7, 0, 5, 1).await.unwrap_err();
        assert_eq!(gap.code, ResponseError::OutOfOrderSequenceNumber.code());
    }

    #[actix::test]
    async fn a_segment_roll_snapshots_the_producer_state() {
        let dir = tempfile::tempdir().unwrap();
        let tp = TopicPartition {
            topic: "t".into(),
            partition: 0,
        };
        let config = TopicConfig {
            segment_bytes: 300,
            ..TopicConfig::default()
        };
        let log = PartitionLog::open(&partition_dir(dir.path()), tp.clone(), &config, 0, true)
            .expect("open log");
        let replica =
            Replica::new(tp, Uuid::new_v4(), 1, log, config, Duration::from_secs(300)).start_here();
        replica
            .addr
            .send(ApplyLeaderAndIsr(leader_state(0)))
            .await
            .unwrap()
            .unwrap();
        for sequence in 0..6 {
            produce(&replica, 7, 0, sequence * 2, 2).await.unwrap();
        }
        let pdir = partition_dir(dir.path());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let snapshots = producer_state::list_snapshots(&pdir).unwrap();
            if !snapshots.is_empty() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no producer snapshot after segment rolls"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[actix::test]
    async fn truncation_forgets_the_batches_it_removes() {
        let dir = tempfile::tempdir().unwrap();
        let replica = start_leader(dir.path()).await;
        produce(&replica, 7, 0, 0, 2).await.unwrap();
        produce(&replica, 7, 0, 2, 2).await.unwrap();
        replica.addr.send(TruncateLogTo(2)).await.unwrap().unwrap();
        assert_eq!(replica.progress().log_end_offset, 2);
        // The removed batch is no longer a duplicate: it is appended again.
        let again = produce(&replica, 7, 0, 2, 2).await.unwrap();
        assert_eq!((again.base_offset, again.last_offset), (2, 3));
        assert_eq!(replica.progress().log_end_offset, 4);
    }

    #[actix::test]
    async fn an_offline_replica_refuses_appends_with_not_leader() {
        let dir = tempfile::tempdir().unwrap();
        let replica = start_replica(dir.path());
        let err = append(&replica, &["a"]).await.unwrap_err();
        assert_eq!(err.code, ResponseError::NotLeaderOrFollower.code());
    }

    #[actix::test]
    async fn a_replica_whose_log_dir_goes_offline_answers_kafka_storage_error_from_then_on() {
        let dir = tempfile::tempdir().unwrap();
        let replica = start_replica(dir.path());
        replica
            .addr
            .send(ApplyLeaderAndIsr(leader_state(0)))
            .await
            .unwrap()
            .unwrap();
        append(&replica, &["a"]).await.unwrap();
        let elsewhere = LogDirOffline {
            log_dir: dir.path().join("another-dir"),
        };
        assert!(!replica.addr.send(elsewhere).await.unwrap());
        append(&replica, &["b"]).await.unwrap();
        let here = LogDirOffline {
            log_dir: dir.path().to_path_buf(),
        };
        assert!(replica.addr.send(here).await.unwrap());
        let storage_error = ResponseError::KafkaStorageError.code();
        assert_eq!(
            append(&replica, &["c"]).await.unwrap_err().code,
            storage_error
        );
        let again = replica
            .addr
            .send(ApplyLeaderAndIsr(leader_state(1)))
            .await
            .unwrap();
        assert_eq!(
            again.unwrap_err().code,
            storage_error,
            "it takes no new role"
        );
        let read = replica
            .addr
            .send(ReadRecords {
                fetch_offset: 0,
                max_bytes: 1 << 20,
                min_one: true,
                isolation: FetchIsolation::LogEnd,
                current_leader_epoch: None,
            })
            .await
            .unwrap();
        assert_eq!(read.error.map(|e| e.code), Some(storage_error));
        let progress = replica.progress();
        assert!(progress.stopped && !progress.is_leader, "waiters give up");
    }

    #[actix::test]
    async fn leader_appends_assign_offsets_and_move_the_high_watermark() {
        let dir = tempfile::tempdir().unwrap();
        let replica = start_replica(dir.path());
        replica
            .addr
            .send(ApplyLeaderAndIsr(leader_state(0)))
            .await
            .unwrap()
            .unwrap();
        let first = append(&replica, &["a", "b", "c"]).await.unwrap();
        assert_eq!((first.base_offset, first.last_offset), (0, 2));
        let second = append(&replica, &["d"]).await.unwrap();
        assert_eq!((second.base_offset, second.last_offset), (3, 3));
        let progress = replica.progress();
        assert_eq!(progress.high_watermark, 4);
        assert_eq!(progress.log_end_offset, 4);
        assert!(progress.is_leader);
    }

    #[actix::test]
    async fn reads_return_stored_batches_below_the_high_watermark() {
        let dir = tempfile::tempdir().unwrap();
        let replica = start_replica(dir.path());
        replica
            .addr
            .send(ApplyLeaderAndIsr(leader_state(0)))
            .await
            .unwrap()
            .unwrap();
        let sent = batch(&["a", "b"], 5);
        append(&replica, &["a", "b"]).await.unwrap();
        let read = replica
            .addr
            .send(ReadRecords {
                fetch_offset: 0,
                max_bytes: 1 << 20,
                min_one: true,
                isolation: FetchIsolation::HighWatermark,
                current_leader_epoch: Some(0),
            })
            .await
            .unwrap();
        assert!(read.error.is_none(), "{:?}", read.error);
        assert_eq!(read.high_watermark, 2);
        assert_eq!(read.last_stable_offset, 2);
        // Same length as sent: stored as sent, only the offset/epoch header fields differ.
        assert_eq!(read.records.len(), sent.len());
    }

    #[actix::test]
    async fn reads_outside_the_log_are_offset_out_of_range() {
        let dir = tempfile::tempdir().unwrap();
        let replica = start_replica(dir.path());
        replica
            .addr
            .send(ApplyLeaderAndIsr(leader_state(0)))
            .await
            .unwrap()
            .unwrap();
        append(&replica, &["a"]).await.unwrap();
        let read = replica
            .addr
            .send(ReadRecords {
                fetch_offset: 5,
                max_bytes: 1024,
                min_one: true,
                isolation: FetchIsolation::HighWatermark,
                current_leader_epoch: None,
            })
            .await
            .unwrap();
        assert_eq!(
            read.error.map(|e| e.code),
            Some(ResponseError::OffsetOutOfRange.code())
        );
    }

    #[actix::test]
    async fn a_stale_leader_epoch_is_fenced() {
        let dir = tempfile::tempdir().unwrap();
        let replica = start_replica(dir.path());
        replica
            .addr
            .send(ApplyLeaderAndIsr(leader_state(3)))
            .await
            .unwrap()
            .unwrap();
        let read = replica
            .addr
            .send(ReadRecords {
                fetch_offset: 0,
                max_bytes: 1024,
                min_one: true,
                isolation: FetchIsolation::HighWatermark,
                current_leader_epoch: Some(2),
            })
            .await
            .unwrap();
        assert_eq!(
            read.error.map(|e| e.code),
            Some(ResponseError::FencedLeaderEpoch.code())
        );
        let stale = replica
            .addr
            .send(ApplyLeaderAndIsr(leader_state(2)))
            .await
            .unwrap();
        assert_eq!(
            stale.unwrap_err().code,
            ResponseError::FencedLeaderEpoch.code()
        );
    }

    #[actix::test]
    async fn list_offsets_answers_earliest_latest_and_by_time() {
        let dir = tempfile::tempdir().unwrap();
        let replica = start_replica(dir.path());
        replica
            .addr
            .send(ApplyLeaderAndIsr(leader_state(0)))
            .await
            .unwrap()
            .unwrap();
        // Timestamps 1000, 1001, 1002.
        append(&replica, &["a", "b", "c"]).await.unwrap();
        let ask = |timestamp| ListOffsets {
            timestamp,
            isolation: FetchIsolation::HighWatermark,
            current_leader_epoch: None,
        };
        let earliest = replica.addr.send(ask(EARLIEST_TIMESTAMP)).await.unwrap();
        assert_eq!(earliest.unwrap().offset, 0);
        let latest = replica.addr.send(ask(LATEST_TIMESTAMP)).await.unwrap();
        assert_eq!(latest.unwrap().offset, 3);
        let by_time = replica.addr.send(ask(1_001)).await.unwrap().unwrap();
        assert_eq!((by_time.offset, by_time.timestamp), (1, 1_001));
        let after_all = replica.addr.send(ask(5_000)).await.unwrap().unwrap();
        assert_eq!(after_all.offset, -1);
    }

    #[actix::test]
    async fn list_offsets_names_the_epoch_of_the_leader_that_wrote_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let replica = start_replica(dir.path());
        replica
            .addr
            .send(ApplyLeaderAndIsr(leader_state(0)))
            .await
            .unwrap()
            .unwrap();
        append(&replica, &["a", "b"]).await.unwrap(); // epoch 0: offsets 0–1
        replica
            .addr
            .send(ApplyLeaderAndIsr(leader_state(3)))
            .await
            .unwrap()
            .unwrap();
        append(&replica, &["c"]).await.unwrap(); // epoch 3: offset 2, timestamp 1000
        let ask = |timestamp| ListOffsets {
            timestamp,
            isolation: FetchIsolation::HighWatermark,
            current_leader_epoch: None,
        };
        let earliest = replica.addr.send(ask(EARLIEST_TIMESTAMP)).await.unwrap();
        assert_eq!(earliest.unwrap().leader_epoch, 0);
        let latest = replica.addr.send(ask(LATEST_TIMESTAMP)).await.unwrap();
        assert_eq!(latest.unwrap().leader_epoch, 3);
        let by_time = replica.addr.send(ask(1_001)).await.unwrap().unwrap();
        assert_eq!((by_time.offset, by_time.leader_epoch), (1, 0));
    }

    #[actix::test]
    async fn delete_records_moves_the_log_start_and_refuses_beyond_the_high_watermark() {
        let dir = tempfile::tempdir().unwrap();
        let replica = start_replica(dir.path());
        replica
            .addr
            .send(ApplyLeaderAndIsr(leader_state(0)))
            .await
            .unwrap()
            .unwrap();
        append(&replica, &["a", "b"]).await.unwrap();
        append(&replica, &["c"]).await.unwrap();
        let err = replica
            .addr
            .send(DeleteRecordsBefore { offset: 10 })
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(err.code, ResponseError::OffsetOutOfRange.code());
        let start = replica
            .addr
            .send(DeleteRecordsBefore { offset: 2 })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(start, 2);
        assert_eq!(replica.progress().log_start_offset, 2);
    }

    #[actix::test]
    async fn acks_all_is_refused_when_the_isr_is_below_min_insync_replicas() {
        let dir = tempfile::tempdir().unwrap();
        let replica = start_replica(dir.path());
        replica
            .addr
            .send(ApplyLeaderAndIsr(leader_state(0)))
            .await
            .unwrap()
            .unwrap();
        let config = TopicConfig {
            min_insync_replicas: 2,
            ..TopicConfig::default()
        };
        replica.addr.send(UpdateTopicConfig(config)).await.unwrap();
        let batches = validate_client_batches(batch(&["a"], 1), 1 << 20, false).unwrap();
        let err = replica
            .addr
            .send(AppendRecords {
                batches,
                required_acks: -1,
            })
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(err.code, ResponseError::NotEnoughReplicas.code());
    }

    #[actix::test]
    async fn stop_replica_hands_the_log_back_and_wakes_waiters() {
        let dir = tempfile::tempdir().unwrap();
        let replica = start_replica(dir.path());
        let mut progress = replica.progress.clone();
        let stopped = replica.addr.send(StopReplica).await.unwrap();
        assert!(stopped.progress.stopped);
        let log = stopped.log.expect("the log comes back");
        log.delete().unwrap();
        assert!(!dir.path().join("t-0").exists());
        progress.wait_for(|p| p.stopped).await.unwrap();
        // The actor is gone: further requests fail to deliver.
        assert!(replica.addr.send(DescribeReplica).await.is_err());
    }

    fn remote_at(log_end_offset: i64) -> RemoteReplicaState {
        let now = Instant::now();
        RemoteReplicaState {
            log_end_offset,
            last_fetched_epoch: None,
            last_caught_up: now,
            last_fetch: now,
            last_fetch_leader_log_end: log_end_offset,
        }
    }

    #[test]
    fn the_high_watermark_is_the_smallest_log_end_offset_over_the_isr() {
        let remote: BTreeMap<i32, RemoteReplicaState> =
            [(2, remote_at(7)), (3, remote_at(6))].into_iter().collect();
        assert_eq!(high_watermark_candidate(1, 9, &[1, 2, 3], &remote, 0), 6);
        assert_eq!(high_watermark_candidate(1, 9, &[1, 2], &remote, 0), 7);
        assert_eq!(high_watermark_candidate(1, 5, &[1], &remote, 0), 5);
        // The seed's example: leader 0–4, follower 0–3.
        let seed: BTreeMap<i32, RemoteReplicaState> = [(2, remote_at(4))].into_iter().collect();
        assert_eq!(high_watermark_candidate(1, 5, &[1, 2], &seed, 0), 4);
    }
}
