//! The replication side of a partition replica (Kafka's `Partition` as leader and as
//! follower).
//!
//! As a leader it serves follower fetches ([`FollowerFetch`]): each tells it that follower's
//! log end offset, from which it keeps the follower's last caught-up time, expands the ISR
//! with followers that caught up, shrinks it of followers that have not caught up within
//! `replica.lag.time.max.ms` (proposing both to the controller through AlterPartition, see
//! [`crate::actors::alter_partition`]; the controller decides and records), and advances the
//! high-water mark by Kafka's rule, [`high_watermark_candidate`].
//!
//! As a follower it appends the leader's batches verbatim ([`AppendAsFollower`]), takes the
//! leader's high-water mark capped at its own log end, and truncates where its log diverged
//! from the leader's ([`TruncateToDivergence`], KIP-101/KIP-279), or jumps to the leader's
//! log range ([`ResetToLeaderRange`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use actix::prelude::*;
use kafka_protocol::error::ResponseError;

use super::{last_epoch_of, load_producer_state, producer_batch, Replica, Role, ISR_RETRY_BACKOFF};
use crate::actors::alter_partition::ProposeIsr;
use crate::actors::controller::messages::PartitionLeadership;
use crate::actors::replication::{DivergingEpoch, FetchPartition, FetchedPartition};
use crate::protocol::error::ApiError;
use crate::storage::{BatchHeader, PartitionLog};

/// Kafka's rule, in one place: the high-water mark is the smallest log end offset over the
/// ISR. ISR log end offsets 6, 7 and 9 give a high-water mark of 6: offsets 0–5 are on every
/// ISR member and visible to consumers; offset 6 is not yet. The seed's example, leader
/// holding offsets 0–4 (log end offset 5) and an ISR follower holding 0–3 (log end offset 4),
/// gives 4. With the leader alone in the ISR it is the leader's log end offset.
/// An ISR member the leader has not heard from yet counts as its log start (it holds nothing
/// beyond it that the leader knows of).
pub fn high_watermark_candidate(
    leader_id: i32,
    leader_log_end_offset: i64,
    isr: &[i32],
    remote: &BTreeMap<i32, RemoteReplicaState>,
    log_start_offset: i64,
) -> i64 {
    isr.iter()
        .map(|id| {
            if *id == leader_id {
                leader_log_end_offset
            } else {
                remote
                    .get(id)
                    .map(|r| r.log_end_offset.max(log_start_offset))
                    .unwrap_or(log_start_offset)
            }
        })
        .min()
        .unwrap_or(leader_log_end_offset)
}

/// The leader's view of one follower, updated by each of its fetches (Kafka's
/// `ReplicaState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteReplicaState {
    /// The follower's last fetch offset: it holds everything below.
    pub log_end_offset: i64,
    /// The last fetched epoch of that fetch, which passed the divergence check (`None`
    /// before the first): a repeat of a caught-up fetch is answered without this actor
    /// ([`super::CaughtUpFollowers`]).
    pub last_fetched_epoch: Option<i32>,
    /// When the follower was last known to hold everything the leader had: the ISR drops it
    /// once this is older than `replica.lag.time.max.ms`.
    pub last_caught_up: Instant,
    /// When its previous fetch arrived, and the leader's log end offset then: a fetch that
    /// reaches that offset proves the follower was caught up at that earlier time (Kafka's
    /// rule, so a follower that keeps up with a steady stream is never called lagging).
    pub last_fetch: Instant,
    pub last_fetch_leader_log_end: i64,
}

impl RemoteReplicaState {
    /// A follower the leader has not heard from in this leadership. An ISR member gets the
    /// benefit of the doubt (caught up now) so that a new leader does not shrink its ISR
    /// before the followers had a chance to fetch.
    pub(super) fn unknown(now: Instant, in_isr: bool, lag_time_max: Duration) -> Self {
        let last_caught_up = if in_isr {
            now
        } else {
            now.checked_sub(lag_time_max * 2).unwrap_or(now)
        };
        Self {
            log_end_offset: -1,
            last_fetched_epoch: None,
            last_caught_up,
            last_fetch: now,
            last_fetch_leader_log_end: -1,
        }
    }

    /// Kafka's `updateFetchState`.
    fn record_fetch(
        &mut self,
        fetch_offset: i64,
        last_fetched_epoch: i32,
        leader_log_end: i64,
        now: Instant,
    ) {
        if fetch_offset >= leader_log_end {
            self.last_caught_up = self.last_caught_up.max(now);
        } else if fetch_offset >= self.last_fetch_leader_log_end {
            self.last_caught_up = self.last_caught_up.max(self.last_fetch);
        }
        self.log_end_offset = fetch_offset;
        self.last_fetched_epoch = Some(last_fetched_epoch);
        self.last_fetch_leader_log_end = leader_log_end;
        self.last_fetch = self.last_fetch.max(now);
    }

    /// A repeat of its caught-up fetch was answered without the actor at `at`: what
    /// [`Self::record_fetch`] would have recorded then (same offset, same leader log end).
    fn record_answered_repeat(&mut self, at: Instant) {
        self.last_caught_up = self.last_caught_up.max(at);
        self.last_fetch = self.last_fetch.max(at);
    }

    /// Its next fetch repeating its last may be answered without the actor: it is
    /// recorded at the leader's log end, as of a fetch made at that log end.
    fn is_caught_up_at(&self, leader_log_end: i64) -> bool {
        self.log_end_offset == leader_log_end && self.last_fetch_leader_log_end == leader_log_end
    }

    fn is_caught_up(&self, leader_log_end: i64, now: Instant, lag_time_max: Duration) -> bool {
        self.log_end_offset >= leader_log_end
            || now.saturating_duration_since(self.last_caught_up) <= lag_time_max
    }
}

/// A leader's replication state (Kafka's `PartitionState` plus the remote replicas).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderState {
    /// The ISR the controller recorded: what `min.insync.replicas` is checked against.
    pub isr: Vec<i32>,
    /// An ISR change proposed to the controller and not yet answered. While it is in flight
    /// the high-water mark waits for the union of both ISRs (Kafka's "maximal ISR"), so a
    /// record is never called committed by an ISR that was not recorded.
    pub pending_isr: Option<Vec<i32>>,
    /// Followers' progress, keyed by broker id.
    pub remote: BTreeMap<i32, RemoteReplicaState>,
    /// The log end offset when this leader epoch began: a follower joins the ISR only once
    /// it holds everything up to here (it then agrees with this leader's log).
    pub epoch_start_offset: i64,
    /// After the controller refused a proposal, none is made before this instant.
    pub retry_after: Option<Instant>,
}

impl LeaderState {
    fn may_propose(&self, now: Instant) -> bool {
        self.pending_isr.is_none() && self.retry_after.is_none_or(|t| now >= t)
    }
}

impl LeaderState {
    /// The committed ISR plus a pending expansion.
    pub fn maximal_isr(&self) -> Vec<i32> {
        let mut isr = self.isr.clone();
        if let Some(pending) = &self.pending_isr {
            for id in pending {
                if !isr.contains(id) {
                    isr.push(*id);
                }
            }
        }
        isr
    }
}

impl Replica {
    /// Publishes which followers' repeated fetches may be answered without this actor
    /// ([`super::CaughtUpFollowers`]): ISR members caught up at the log end, while no ISR
    /// change is in flight. Called with every published progress.
    pub(super) fn publish_caught_up(&self, progress: &super::PartitionProgress) {
        let Role::Leader(leader) = &self.role else {
            self.caught_up.publish(None, std::iter::empty());
            return;
        };
        let view = super::LeaderView {
            leader_epoch: self.leader_epoch,
            log_end_offset: progress.log_end_offset,
            high_watermark: progress.high_watermark,
            log_start_offset: progress.log_start_offset,
        };
        let settled = leader.pending_isr.is_none();
        self.caught_up.publish(
            Some(view),
            leader.remote.iter().map(|(id, remote)| {
                let eligible = settled
                    && leader.isr.contains(id)
                    && self.replicas.contains(id)
                    && remote.is_caught_up_at(progress.log_end_offset);
                (*id, remote.last_fetched_epoch.filter(|_| eligible))
            }),
        );
    }

    /// Folds the fetches answered without this actor into the followers' state, before
    /// anything judges or records their progress.
    fn fold_caught_up_answers(&mut self) {
        let Role::Leader(leader) = &mut self.role else {
            self.caught_up.drain_answered(|_, _| {});
            return;
        };
        self.caught_up.drain_answered(|id, at| {
            if let Some(remote) = leader.remote.get_mut(&id) {
                remote.record_answered_repeat(at);
            }
        });
    }

    /// Proposes `new_isr` to the controller unless a proposal is already in flight; the
    /// answer comes back as [`IsrProposalAnswered`].
    fn propose_isr(&mut self, new_isr: Vec<i32>, ctx: &mut Context<Self>) {
        let Some(proposer) = self.isr_proposer.clone() else {
            return;
        };
        let Role::Leader(leader) = &mut self.role else {
            return;
        };
        if !leader.may_propose(Instant::now()) || leader.isr == new_isr {
            return;
        }
        tracing::info!(partition = %self.tp, isr = ?leader.isr, proposed = ?new_isr, "proposing an ISR change");
        leader.pending_isr = Some(new_isr.clone());
        let request = proposer.send(ProposeIsr {
            tp: self.tp.clone(),
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
            new_isr,
        });
        let leader_epoch = self.leader_epoch;
        ctx.spawn(request.into_actor(self).map(move |answer, act, ctx| {
            let answer = answer.unwrap_or_else(|_| {
                Err(ApiError::with_message(
                    ResponseError::RequestTimedOut,
                    "the ISR proposer stopped",
                ))
            });
            act.isr_proposal_answered(leader_epoch, answer);
            let _ = ctx;
        }));
        // The pending expansion counts for the high-water mark at once.
        self.update_progress();
    }

    /// Kafka's `handleAlterPartitionUpdate`: adopt what the controller recorded, or forget
    /// the proposal (the next fetch or lag check proposes again if still needed).
    fn isr_proposal_answered(
        &mut self,
        leader_epoch: i32,
        answer: Result<PartitionLeadership, ApiError>,
    ) {
        if leader_epoch != self.leader_epoch {
            return;
        }
        self.fold_caught_up_answers();
        let tp = self.tp.clone();
        let Role::Leader(leader) = &mut self.role else {
            return;
        };
        leader.pending_isr = None;
        match answer {
            Ok(recorded) if recorded.leader_epoch == self.leader_epoch => {
                if recorded.partition_epoch > self.partition_epoch {
                    tracing::info!(partition = %tp, isr = ?recorded.isr, "ISR changed");
                    for id in &recorded.isr {
                        if let Some(remote) = leader.remote.get_mut(id) {
                            // A member just added must not be judged by an old catch-up time.
                            remote.last_caught_up = remote.last_caught_up.max(remote.last_fetch);
                        }
                    }
                    leader.isr = recorded.isr;
                    self.partition_epoch = recorded.partition_epoch;
                }
            }
            Ok(recorded) => {
                tracing::debug!(partition = %tp, epoch = recorded.leader_epoch, "ISR answer for another leader epoch");
            }
            Err(e) => {
                // Retried by the next lag check or fetch, not at once: a refused expansion
                // (say, of a broker the controller considers dead) must not become a
                // proposal per fetch.
                tracing::info!(partition = %tp, error = %e, "ISR change refused");
                leader.retry_after = Some(Instant::now() + ISR_RETRY_BACKOFF);
            }
        }
        self.update_progress();
    }

    /// Kafka's `maybeShrinkIsr`: followers that have not caught up within
    /// `replica.lag.time.max.ms` leave the ISR.
    pub(super) fn maybe_shrink_isr(&mut self, ctx: &mut Context<Self>) {
        self.fold_caught_up_answers();
        let Some(log_end) = self.log.as_ref().map(PartitionLog::log_end_offset) else {
            return;
        };
        let Role::Leader(leader) = &self.role else {
            return;
        };
        let now = Instant::now();
        if !leader.may_propose(now) {
            return;
        }
        let lagging: Vec<i32> = leader
            .isr
            .iter()
            .copied()
            .filter(|id| *id != self.broker_id)
            .filter(|id| {
                leader
                    .remote
                    .get(id)
                    .is_some_and(|r| !r.is_caught_up(log_end, now, self.lag_time_max))
            })
            .collect();
        if lagging.is_empty() {
            return;
        }
        tracing::info!(partition = %self.tp, lagging = ?lagging, lag_time_max = ?self.lag_time_max, "followers fell out of sync");
        let new_isr: Vec<i32> = leader
            .isr
            .iter()
            .copied()
            .filter(|id| !lagging.contains(id))
            .collect();
        self.propose_isr(new_isr, ctx);
    }

    /// Kafka's `maybeExpandIsr`: a follower outside the ISR joins once it holds everything
    /// up to the high-water mark and this leader epoch's start.
    fn maybe_expand_isr(&mut self, follower: i32, ctx: &mut Context<Self>) {
        let Role::Leader(leader) = &self.role else {
            return;
        };
        if !leader.may_propose(Instant::now()) || leader.isr.contains(&follower) {
            return;
        }
        let Some(remote) = leader.remote.get(&follower) else {
            return;
        };
        if remote.log_end_offset >= self.high_watermark
            && remote.log_end_offset >= leader.epoch_start_offset
        {
            let mut new_isr = leader.isr.clone();
            new_isr.push(follower);
            self.propose_isr(new_isr, ctx);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Replication: the leader's side of a follower fetch, the follower's appends and truncation.

/// One partition of a follower's fetch, served by the leader (Kafka's `Partition.fetchRecords`
/// for a replica): records the follower's progress, maybe expands the ISR, advances the
/// high-water mark, and reads from the follower's offset up to the log end.
#[derive(Debug, Message)]
#[rtype(result = "FetchedPartition")]
pub struct FollowerFetch {
    pub replica_id: i32,
    pub partition: FetchPartition,
    /// True for the read made when the request arrives, false for the re-read of a fetch
    /// that waited for data (Kafka's `DelayedFetch`): the follower's progress is what it
    /// reported when it asked, so a fetch parked before the follower stalled must not count
    /// as a sign of life later (it would pull a stalled follower back into the ISR).
    pub record_progress: bool,
}

impl Handler<FollowerFetch> for Replica {
    type Result = MessageResult<FollowerFetch>;

    fn handle(&mut self, msg: FollowerFetch, ctx: &mut Self::Context) -> Self::Result {
        let tp = msg.partition.tp.clone();
        MessageResult(
            self.serve_follower_fetch(msg.replica_id, &msg.partition, msg.record_progress, ctx)
                .unwrap_or_else(|e| FetchedPartition::failed(tp, e)),
        )
    }
}

impl Replica {
    fn serve_follower_fetch(
        &mut self,
        replica_id: i32,
        p: &FetchPartition,
        record_progress: bool,
        ctx: &mut Context<Self>,
    ) -> Result<FetchedPartition, ApiError> {
        self.require_leader()?;
        if !p.topic_id.is_nil() && p.topic_id != self.topic_id {
            return Err(ApiError::with_message(
                ResponseError::UnknownTopicId,
                format!("{}: the topic was recreated", self.tp),
            ));
        }
        self.check_leader_epoch(Some(p.current_leader_epoch))?;
        if !self.replicas.contains(&replica_id) {
            return Err(ApiError::with_message(
                ResponseError::NotLeaderOrFollower,
                format!("broker {replica_id} is not a replica of {}", self.tp),
            ));
        }
        let log = self.log()?;
        let (log_start, log_end) = (log.log_start_offset(), log.log_end_offset());
        let mut answer = FetchedPartition {
            tp: p.tp.clone(),
            error: None,
            high_watermark: self.high_watermark,
            log_start_offset: log_start,
            log_end_offset: log_end,
            diverging_epoch: None,
            records: bytes::Bytes::new(),
        };
        // KIP-595's check: does our log agree with the follower's up to its fetch offset in
        // the epoch of its last batch? If not, it must truncate before it may append.
        if p.last_fetched_epoch >= 0 {
            let (epoch, end_offset) = log.end_offset_for_epoch(p.last_fetched_epoch);
            if epoch < p.last_fetched_epoch || end_offset < p.fetch_offset {
                answer.diverging_epoch = Some(DivergingEpoch { epoch, end_offset });
                return Ok(answer);
            }
        }
        if p.fetch_offset < log_start || p.fetch_offset > log_end {
            answer.error = Some(ApiError::with_message(
                ResponseError::OffsetOutOfRange,
                format!(
                    "{}: follower {replica_id} fetches offset {} outside [{log_start}, {log_end}]",
                    self.tp, p.fetch_offset
                ),
            ));
            return Ok(answer);
        }
        if record_progress {
            self.fold_caught_up_answers();
            if let Role::Leader(leader) = &mut self.role {
                if let Some(remote) = leader.remote.get_mut(&replica_id) {
                    remote.record_fetch(
                        p.fetch_offset,
                        p.last_fetched_epoch,
                        log_end,
                        Instant::now(),
                    );
                }
            }
            self.maybe_expand_isr(replica_id, ctx);
            self.update_progress();
        }
        answer.high_watermark = self.high_watermark;
        let read = self
            .log()?
            .read(p.fetch_offset, p.max_bytes as usize, log_end, true);
        let read = read.map_err(|e| self.storage_failure(e))?;
        answer.records = read.records;
        Ok(answer)
    }

    /// The follower's own state after an append or a truncation.
    fn follower_position(&self) -> Result<FollowerPosition, ApiError> {
        let log = self.log()?;
        Ok(FollowerPosition {
            log_end_offset: log.log_end_offset(),
            last_epoch: last_epoch_of(log),
        })
    }

    fn require_follower_of_epoch(&self, leader_epoch: i32) -> Result<(), ApiError> {
        match self.role {
            Role::Follower { .. } if self.leader_epoch == leader_epoch => Ok(()),
            _ => Err(ApiError::with_message(
                ResponseError::NotLeaderOrFollower,
                format!(
                    "{} is no longer a follower in leader epoch {leader_epoch}",
                    self.tp
                ),
            )),
        }
    }
}

/// Where a follower's log ends, for its next fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerPosition {
    pub log_end_offset: i64,
    /// `last_fetched_epoch` of the next fetch.
    pub last_epoch: i32,
}

/// A follower's append of what the leader sent: stored verbatim (followers never assign
/// offsets), the producer state rebuilt from the batches so a future leader deduplicates as
/// this one did, the high-water mark taken from the leader (never above our log end).
#[derive(Debug, Message)]
#[rtype(result = "Result<FollowerPosition, ApiError>")]
pub struct AppendAsFollower {
    /// The epoch the fetch was made in: an append from a fetch that a newer LeaderAndIsr
    /// overtook is refused.
    pub leader_epoch: i32,
    pub records: bytes::Bytes,
    pub leader_high_watermark: i64,
    pub leader_log_start_offset: i64,
}

impl Handler<AppendAsFollower> for Replica {
    type Result = Result<FollowerPosition, ApiError>;

    fn handle(&mut self, msg: AppendAsFollower, ctx: &mut Self::Context) -> Self::Result {
        self.require_follower_of_epoch(msg.leader_epoch)?;
        if !msg.records.is_empty() {
            let segments_before = self.log()?.segment_count();
            let records = msg.records.clone();
            let appended = self.log_mut()?.append_as_follower(msg.records);
            let info = appended.map_err(|e| self.storage_failure(e))?;
            if info.bytes > 0 {
                let mut position = 0;
                while position + BatchHeader::SIZE <= info.bytes {
                    let Ok(h) = BatchHeader::parse(&records[position..]) else {
                        break;
                    };
                    if h.has_producer_id() {
                        self.producer_state
                            .update(&producer_batch(&h, h.base_offset));
                    }
                    position += h.total_size();
                }
                self.producer_state.advance_to(info.last_offset + 1);
            }
            if self.log()?.segment_count() > segments_before {
                self.snapshot_producer_state_in_background(ctx);
            }
        }
        let log_end = self.log()?.log_end_offset();
        let high_watermark = msg.leader_high_watermark.min(log_end);
        if high_watermark > self.high_watermark {
            self.high_watermark = high_watermark;
        }
        // The log start follows the leader's (retention, DeleteRecords), within what is
        // committed here.
        let new_start = msg.leader_log_start_offset.min(self.high_watermark);
        if new_start > self.log()?.log_start_offset() {
            let high_watermark = self.high_watermark;
            self.log_mut()?.update_high_watermark(high_watermark);
            let deleted = self.log_mut()?.delete_records_before(new_start);
            deleted.map_err(|e| self.storage_failure(e))?;
        }
        self.update_progress();
        self.maybe_flush(ctx);
        self.follower_position()
    }
}

/// The leader said our log diverged from its own (a [`DivergingEpoch`] in its fetch answer):
/// truncate as Kafka's `AbstractFetcherThread` does (KIP-101, KIP-279), then fetch again from
/// the new log end; the next fetch checks again, so a follower several epochs behind
/// converges in a few rounds.
#[derive(Debug, Message)]
#[rtype(result = "Result<FollowerPosition, ApiError>")]
pub struct TruncateToDivergence {
    pub leader_epoch: i32,
    pub diverging: DivergingEpoch,
}

impl Handler<TruncateToDivergence> for Replica {
    type Result = Result<FollowerPosition, ApiError>;

    fn handle(&mut self, msg: TruncateToDivergence, _: &mut Self::Context) -> Self::Result {
        self.require_follower_of_epoch(msg.leader_epoch)?;
        let log = self.log()?;
        let log_end = log.log_end_offset();
        let DivergingEpoch { epoch, end_offset } = msg.diverging;
        let target = if end_offset < 0 {
            // The leader knows no epoch at or below ours: keep only what was committed.
            self.high_watermark
        } else if epoch < 0 {
            end_offset.min(log_end)
        } else {
            let (own_epoch, own_end) = log.end_offset_for_epoch(epoch);
            if own_epoch < 0 || own_end < 0 {
                // We know no epochs that far back: trust the leader's end.
                end_offset.min(log_end)
            } else if own_epoch != epoch {
                // We never saw the leader's epoch: cut back to where our own smaller epoch
                // ended; the next fetch compares again from there.
                own_end.min(log_end)
            } else {
                end_offset.min(own_end).min(log_end)
            }
        };
        if target < log_end {
            tracing::info!(partition = %self.tp, from = log_end, to = target, leader_epoch = epoch, leader_end_offset = end_offset, "truncating to where the leader's log diverges");
            self.truncate_log_to(target)?;
        } else {
            // No record goes, but an epoch we assigned at our log end as a leader that never
            // appended must (see `PartitionLog::truncate_to`), or the next fetch diverges again.
            let truncated = self.log_mut()?.truncate_to(target);
            truncated.map_err(|e| self.storage_failure(e))?;
        }
        self.follower_position()
    }
}

/// The leader answered OFFSET_OUT_OF_RANGE to our fetch: its log ends below ours (only
/// after an unclean election) or starts above it (retention on the leader outran us).
#[derive(Debug, Message)]
#[rtype(result = "Result<FollowerPosition, ApiError>")]
pub struct ResetToLeaderRange {
    pub leader_epoch: i32,
    pub leader_log_start_offset: i64,
    pub leader_log_end_offset: i64,
}

impl Handler<ResetToLeaderRange> for Replica {
    type Result = Result<FollowerPosition, ApiError>;

    fn handle(&mut self, msg: ResetToLeaderRange, _: &mut Self::Context) -> Self::Result {
        self.require_follower_of_epoch(msg.leader_epoch)?;
        let log_end = self.log()?.log_end_offset();
        if msg.leader_log_end_offset >= 0 && msg.leader_log_end_offset < log_end {
            tracing::warn!(partition = %self.tp, from = log_end, to = msg.leader_log_end_offset, "the leader's log ends below ours: truncating");
            self.truncate_log_to(msg.leader_log_end_offset)?;
        } else if msg.leader_log_start_offset > log_end {
            tracing::info!(partition = %self.tp, start = msg.leader_log_start_offset, "the leader's log starts past ours: starting over there");
            let restarted = self
                .log_mut()?
                .truncate_fully_and_start_at(msg.leader_log_start_offset);
            restarted.map_err(|e| self.storage_failure(e))?;
            self.producer_state = load_producer_state(self.log()?);
            self.high_watermark = msg.leader_log_start_offset;
            self.update_progress();
        }
        self.follower_position()
    }
}

/// OffsetsForLeaderEpoch for one partition (KIP-320: clients check for log truncation after
/// a leader change): the largest epoch at or below `leader_epoch` this leader knows and the
/// offset where it ended.
#[derive(Debug, Message)]
#[rtype(result = "Result<DivergingEpoch, ApiError>")]
pub struct EndOffsetForEpoch {
    pub current_leader_epoch: Option<i32>,
    pub leader_epoch: i32,
}

impl Handler<EndOffsetForEpoch> for Replica {
    type Result = Result<DivergingEpoch, ApiError>;

    fn handle(&mut self, msg: EndOffsetForEpoch, _: &mut Self::Context) -> Self::Result {
        self.check_leader_epoch(msg.current_leader_epoch)?;
        self.require_leader()?;
        let (epoch, end_offset) = self.log()?.end_offset_for_epoch(msg.leader_epoch);
        Ok(DivergingEpoch { epoch, end_offset })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use uuid::Uuid;

    use super::*;
    use crate::actors::delayed::{delayed_produce, ProduceWait, ProduceWaitOutcome};
    use crate::actors::replica::tests::{append, open_log};
    use crate::actors::replica::{
        ApplyLeaderAndIsr, FetchIsolation, LeaderAndIsrState, ReadRecords, ReplicaHandle,
    };
    use crate::config::TopicConfig;
    use crate::storage::TopicPartition;

    const DEADLINE: Duration = Duration::from_secs(10);

    /// Stands in for the broker's AlterPartition manager and the controller behind it:
    /// records every proposal and, when accepting, records it as the controller would
    /// (same leader epoch, partition epoch + 1).
    struct FakeController {
        proposals: Arc<Mutex<Vec<ProposeIsr>>>,
        accept: bool,
    }

    impl Actor for FakeController {
        type Context = Context<Self>;
    }

    impl Handler<ProposeIsr> for FakeController {
        type Result = Result<PartitionLeadership, ApiError>;

        fn handle(&mut self, msg: ProposeIsr, _: &mut Self::Context) -> Self::Result {
            self.proposals.lock().unwrap().push(msg.clone());
            if !self.accept {
                return Err(ApiError::new(ResponseError::IneligibleReplica));
            }
            Ok(PartitionLeadership {
                leader: 1,
                leader_epoch: msg.leader_epoch,
                isr: msg.new_isr,
                partition_epoch: msg.partition_epoch + 1,
            })
        }
    }

    fn tp() -> TopicPartition {
        TopicPartition::new("t", 0)
    }

    /// A replica of `t-0` on broker `id` in `dir`, proposing ISR changes to `controller`.
    fn start(
        dir: &std::path::Path,
        id: i32,
        lag: Duration,
        controller: Option<Recipient<ProposeIsr>>,
    ) -> ReplicaHandle {
        let dir = dir.join(format!("broker-{id}"));
        Replica::new(
            tp(),
            Uuid::nil(),
            id,
            open_log(&dir, &tp()),
            TopicConfig::default(),
            Duration::from_secs(300),
        )
        .with_replication(lag, controller)
        .start_here()
    }

    fn fake_controller(accept: bool) -> (Recipient<ProposeIsr>, Arc<Mutex<Vec<ProposeIsr>>>) {
        let proposals = Arc::new(Mutex::new(Vec::new()));
        let addr = FakeController {
            proposals: proposals.clone(),
            accept,
        }
        .start();
        (addr.recipient(), proposals)
    }

    async fn become_(handle: &ReplicaHandle, leader: i32, epoch: i32, isr: &[i32]) {
        handle
            .addr
            .send(ApplyLeaderAndIsr(LeaderAndIsrState {
                leader,
                leader_epoch: epoch,
                isr: isr.to_vec(),
                replicas: vec![1, 2, 3],
                partition_epoch: epoch,
                is_new: false,
            }))
            .await
            .unwrap()
            .unwrap();
    }

    async fn fetch(
        leader: &ReplicaHandle,
        follower: i32,
        fetch_offset: i64,
        last_fetched_epoch: i32,
        current_leader_epoch: i32,
    ) -> FetchedPartition {
        leader
            .addr
            .send(FollowerFetch {
                record_progress: true,
                replica_id: follower,
                partition: FetchPartition {
                    tp: tp(),
                    topic_id: Uuid::nil(),
                    fetch_offset,
                    current_leader_epoch,
                    last_fetched_epoch,
                    log_start_offset: 0,
                    max_bytes: 1 << 20,
                },
            })
            .await
            .unwrap()
    }

    /// Offsets of the records a consumer may read from `from`.
    async fn visible_offsets(handle: &ReplicaHandle, from: i64) -> Vec<i64> {
        let read = handle
            .addr
            .send(ReadRecords {
                fetch_offset: from,
                max_bytes: 1 << 20,
                min_one: true,
                isolation: FetchIsolation::HighWatermark,
                current_leader_epoch: None,
            })
            .await
            .unwrap();
        assert!(read.error.is_none(), "{:?}", read.error);
        record_offsets(&read.records)
    }

    fn record_offsets(records: &[u8]) -> Vec<i64> {
        let mut out = Vec::new();
        let mut position = 0;
        while position + BatchHeader::SIZE <= records.len() {
            let h = BatchHeader::parse(&records[position..]).unwrap();
            out.extend(h.base_offset..=h.last_offset());
            position += h.total_size();
        }
        out
    }

    async fn append_n(handle: &ReplicaHandle, n: usize) {
        for i in 0..n {
            append(handle, &[&format!("k{i}")]).await.unwrap();
        }
    }

    async fn wait_until(
        handle: &ReplicaHandle,
        what: &str,
        f: impl Fn(&PartitionProgressView) -> bool,
    ) {
        let mut progress = handle.progress.clone();
        tokio::time::timeout(
            DEADLINE,
            progress.wait_for(|p| f(&PartitionProgressView::from(*p))),
        )
        .await
        .unwrap_or_else(|_| panic!("timed out waiting until {what}"))
        .unwrap();
    }

    /// The fields tests wait on.
    struct PartitionProgressView {
        high_watermark: i64,
        isr_size: usize,
    }

    impl From<crate::actors::replica::PartitionProgress> for PartitionProgressView {
        fn from(p: crate::actors::replica::PartitionProgress) -> Self {
            Self {
                high_watermark: p.high_watermark,
                isr_size: p.isr_size,
            }
        }
    }

    #[actix::test]
    async fn the_seeds_step_15_example_keeps_offset_4_invisible_until_the_follower_has_it() {
        let dir = tempfile::tempdir().unwrap();
        let leader = start(dir.path(), 1, Duration::from_secs(30), None);
        become_(&leader, 1, 0, &[1, 2]).await;
        append_n(&leader, 5).await; // offsets 0–4: leader LEO 5
                                    // The follower has not fetched yet: nothing is committed.
        assert_eq!(leader.progress().high_watermark, 0);
        assert!(visible_offsets(&leader, 0).await.is_empty());

        // Follower holds 0–3 (LEO 4): high-water mark 4, offset 4 not yet visible.
        let answer = fetch(&leader, 2, 4, 0, 0).await;
        assert_eq!(answer.high_watermark, 4);
        assert_eq!(
            record_offsets(&answer.records),
            vec![4],
            "the follower gets offset 4"
        );
        assert_eq!(visible_offsets(&leader, 0).await, vec![0, 1, 2, 3]);

        // It caught up: offset 4 becomes visible.
        assert_eq!(fetch(&leader, 2, 5, 0, 0).await.high_watermark, 5);
        assert_eq!(visible_offsets(&leader, 0).await, vec![0, 1, 2, 3, 4]);
    }

    #[actix::test]
    async fn acks_all_waits_for_every_isr_member() {
        let dir = tempfile::tempdir().unwrap();
        let leader = start(dir.path(), 1, Duration::from_secs(30), None);
        become_(&leader, 1, 0, &[1, 2, 3]).await;
        let outcome = append(&leader, &["a", "b"]).await.unwrap();
        let wait = tokio::spawn(delayed_produce(
            vec![ProduceWait {
                purgatory: leader.purgatory.clone(),
                required_offset: outcome.last_offset + 1,
                leader_epoch: outcome.leader_epoch,
                min_insync_replicas: 2,
            }],
            DEADLINE,
        ));
        fetch(&leader, 2, 2, 0, 0).await;
        // One of two followers has the records: not committed yet.
        assert_eq!(leader.progress().high_watermark, 0);
        assert!(!wait.is_finished());
        fetch(&leader, 3, 2, 0, 0).await;
        assert_eq!(wait.await.unwrap(), vec![ProduceWaitOutcome::Replicated]);
    }

    #[actix::test]
    async fn a_follower_that_stops_fetching_leaves_the_isr_after_the_lag_time() {
        let dir = tempfile::tempdir().unwrap();
        let (controller, proposals) = fake_controller(true);
        let leader = start(dir.path(), 1, Duration::from_millis(200), Some(controller));
        become_(&leader, 1, 0, &[1, 2, 3]).await;
        append_n(&leader, 3).await;
        // Follower 3 keeps up; follower 2 is silent.
        let keep_up = {
            let leader = leader.clone();
            tokio::spawn(async move {
                loop {
                    let end = leader.progress().log_end_offset;
                    fetch(&leader, 3, end, 0, 0).await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        wait_until(&leader, "the ISR shrinks to 2", |p| p.isr_size == 2).await;
        keep_up.abort();
        let proposals = proposals.lock().unwrap().clone();
        assert_eq!(proposals[0].new_isr, vec![1, 3]);
        assert_eq!(proposals[0].partition_epoch, 0);
        // With the lagging follower out, what follower 3 holds is committed.
        wait_until(&leader, "the high-water mark reaches 3", |p| {
            p.high_watermark == 3
        })
        .await;
    }

    /// Runs the leader's lag check now (it also runs every half `replica.lag.time.max.ms`).
    #[derive(Debug, Message)]
    #[rtype(result = "()")]
    struct CheckIsrLag;

    impl Handler<CheckIsrLag> for Replica {
        type Result = ();

        fn handle(&mut self, _: CheckIsrLag, ctx: &mut Self::Context) {
            self.maybe_shrink_isr(ctx);
        }
    }

    /// A follower's fetch as the leader's fetch path first tries it: answered without the
    /// actor, or `None`.
    fn repeat(
        leader: &ReplicaHandle,
        follower: i32,
        fetch_offset: i64,
        last_fetched_epoch: i32,
        current_leader_epoch: i32,
    ) -> Option<FetchedPartition> {
        let fetch = FetchPartition {
            tp: tp(),
            topic_id: Uuid::nil(),
            fetch_offset,
            current_leader_epoch,
            last_fetched_epoch,
            log_start_offset: 0,
            max_bytes: 1 << 20,
        };
        leader.caught_up.answer(follower, &fetch, Instant::now())
    }

    #[actix::test]
    async fn a_caught_up_follower_answered_without_the_actor_stays_in_the_isr_past_the_lag_time() {
        let dir = tempfile::tempdir().unwrap();
        let (controller, proposals) = fake_controller(true);
        let lag = Duration::from_millis(500);
        let leader = start(dir.path(), 1, lag, Some(controller));
        become_(&leader, 1, 0, &[1, 2]).await;
        append_n(&leader, 3).await;
        assert!(
            repeat(&leader, 2, 3, 0, 0).is_none(),
            "its first fetch at the log end goes to the actor"
        );
        fetch(&leader, 2, 3, 0, 0).await;
        // Its repeats are answered without the actor, for three lag times (the follower's
        // long-poll cadence, shortened).
        let since = Instant::now();
        while since.elapsed() < lag * 3 {
            let answer = repeat(&leader, 2, 3, 0, 0).expect("answered without the actor");
            assert_eq!((answer.high_watermark, answer.log_end_offset), (3, 3));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // New records: the follower is behind until its next fetch, but it fetched a moment
        // ago, so it is not lagging (its only fetch the actor saw is three lag times old).
        append_n(&leader, 1).await;
        assert!(repeat(&leader, 2, 3, 0, 0).is_none(), "behind the log end");
        leader.addr.send(CheckIsrLag).await.unwrap();
        assert!(
            proposals.lock().unwrap().is_empty(),
            "a follower answered without the actor was judged lagging"
        );
        assert_eq!(
            record_offsets(&fetch(&leader, 2, 3, 0, 0).await.records),
            [3]
        );
        fetch(&leader, 2, 4, 0, 0).await;
        assert_eq!(leader.progress().high_watermark, 4);
        assert!(repeat(&leader, 2, 4, 0, 0).is_some());
        // A follower that stops fetching still leaves the ISR.
        append_n(&leader, 1).await;
        wait_until(&leader, "the silent follower leaves the ISR", |p| {
            p.isr_size == 1
        })
        .await;
        assert_eq!(proposals.lock().unwrap()[0].new_isr, vec![1]);
    }

    #[actix::test]
    async fn a_follower_outside_the_isr_or_of_an_old_leader_epoch_is_answered_by_the_actor() {
        let dir = tempfile::tempdir().unwrap();
        let (controller, proposals) = fake_controller(false);
        let leader = start(dir.path(), 1, Duration::from_secs(30), Some(controller));
        become_(&leader, 1, 0, &[1]).await;
        append_n(&leader, 2).await;
        // Caught up but refused into the ISR: every fetch reaches the actor, which proposes.
        fetch(&leader, 2, 2, 0, 0).await;
        assert_eq!(proposals.lock().unwrap().len(), 1);
        assert!(repeat(&leader, 2, 2, 0, 0).is_none());
        // An ISR member in a new leader epoch: its first fetch goes to the actor.
        become_(&leader, 1, 1, &[1, 2]).await;
        assert!(repeat(&leader, 2, 2, 0, 1).is_none());
        fetch(&leader, 2, 2, 0, 1).await;
        assert!(repeat(&leader, 2, 2, 0, 1).is_some());
        assert!(repeat(&leader, 2, 2, 0, 0).is_none(), "a fenced epoch");
        // Leadership moves on: nothing is answered without the actor.
        become_(&leader, 1, 2, &[1, 2]).await;
        assert!(repeat(&leader, 2, 2, 0, 2).is_none());
        become_(&leader, 3, 3, &[2, 3]).await;
        assert!(repeat(&leader, 2, 2, 0, 3).is_none());
    }

    #[actix::test]
    async fn a_follower_that_catches_up_is_proposed_back_into_the_isr() {
        let dir = tempfile::tempdir().unwrap();
        let (controller, proposals) = fake_controller(true);
        let leader = start(dir.path(), 1, Duration::from_secs(30), Some(controller));
        become_(&leader, 1, 0, &[1]).await;
        append_n(&leader, 4).await;
        // Behind: no proposal.
        fetch(&leader, 2, 2, 0, 0).await;
        assert!(proposals.lock().unwrap().is_empty());
        fetch(&leader, 2, 4, 0, 0).await;
        wait_until(&leader, "follower 2 joins the ISR", |p| p.isr_size == 2).await;
        assert_eq!(proposals.lock().unwrap()[0].new_isr, vec![1, 2]);
    }

    #[actix::test]
    async fn a_refused_isr_change_is_not_proposed_again_on_every_fetch() {
        let dir = tempfile::tempdir().unwrap();
        let (controller, proposals) = fake_controller(false);
        let leader = start(dir.path(), 1, Duration::from_secs(30), Some(controller));
        become_(&leader, 1, 0, &[1]).await;
        append_n(&leader, 1).await;
        for _ in 0..20 {
            fetch(&leader, 2, 1, 0, 0).await;
        }
        // The refusal's backoff (500 ms) outlasts these fetches.
        assert_eq!(proposals.lock().unwrap().len(), 1);
        assert_eq!(leader.progress().isr_size, 1);
    }

    #[actix::test]
    async fn a_fetch_with_a_stale_or_future_leader_epoch_is_fenced() {
        let dir = tempfile::tempdir().unwrap();
        let leader = start(dir.path(), 1, Duration::from_secs(30), None);
        become_(&leader, 1, 3, &[1, 2]).await;
        let stale = fetch(&leader, 2, 0, -1, 2).await;
        assert_eq!(
            stale.error.unwrap().code,
            ResponseError::FencedLeaderEpoch.code()
        );
        let future = fetch(&leader, 2, 0, -1, 4).await;
        assert_eq!(
            future.error.unwrap().code,
            ResponseError::UnknownLeaderEpoch.code()
        );
    }

    /// A leader whose log holds epoch 0 at offsets 0–2 and epoch 2 at offsets 3–4.
    async fn leader_with_two_epochs(dir: &std::path::Path) -> ReplicaHandle {
        let leader = start(dir, 1, Duration::from_secs(30), None);
        become_(&leader, 1, 0, &[1]).await;
        append_n(&leader, 3).await;
        become_(&leader, 1, 2, &[1]).await;
        append_n(&leader, 2).await;
        leader
    }

    #[actix::test]
    async fn the_leader_answers_a_diverging_epoch_where_the_followers_epoch_ended() {
        let dir = tempfile::tempdir().unwrap();
        let leader = leader_with_two_epochs(dir.path()).await;
        // The follower's last batch is from epoch 1, which this leader never had: its log
        // agrees with the leader's only up to where epoch 0 ended, offset 3.
        let answer = fetch(&leader, 2, 4, 1, 2).await;
        assert_eq!(
            answer.diverging_epoch,
            Some(DivergingEpoch {
                epoch: 0,
                end_offset: 3
            })
        );
        assert!(answer.records.is_empty());
        // A follower that stopped inside epoch 0 agrees: it gets records.
        let answer = fetch(&leader, 2, 3, 0, 2).await;
        assert_eq!(answer.diverging_epoch, None);
        assert_eq!(record_offsets(&answer.records), vec![3, 4]);
    }

    /// Copies the leader's log from `from` into a follower, verbatim.
    async fn replicate(leader: &ReplicaHandle, follower: &ReplicaHandle, epoch: i32, from: i64) {
        let answer = fetch(leader, 2, from, -1, leader.progress().leader_epoch).await;
        assert!(answer.error.is_none(), "{:?}", answer.error);
        follower
            .addr
            .send(AppendAsFollower {
                leader_epoch: epoch,
                records: answer.records,
                leader_high_watermark: answer.high_watermark,
                leader_log_start_offset: answer.log_start_offset,
            })
            .await
            .unwrap()
            .unwrap();
    }

    #[actix::test]
    async fn a_follower_stores_the_leaders_bytes_and_caps_the_high_watermark_at_its_log_end() {
        let dir = tempfile::tempdir().unwrap();
        let leader = leader_with_two_epochs(dir.path()).await;
        let follower = start(dir.path(), 2, Duration::from_secs(30), None);
        become_(&follower, 1, 2, &[1, 2]).await;
        // A leader high-water mark past what the follower holds is capped at its log end.
        let position = follower
            .addr
            .send(AppendAsFollower {
                leader_epoch: 2,
                records: bytes::Bytes::new(),
                leader_high_watermark: 5,
                leader_log_start_offset: 0,
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!((position.log_end_offset, position.last_epoch), (0, -1));
        assert_eq!(follower.progress().high_watermark, 0);

        replicate(&leader, &follower, 2, 0).await;
        let p = follower.progress();
        assert_eq!((p.log_end_offset, p.high_watermark), (5, 5));
        let read = |h: &ReplicaHandle| {
            let h = h.clone();
            async move {
                h.addr
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
        };
        assert_eq!(read(&leader).await, read(&follower).await, "byte-identical");
        // The follower's epochs came from the batches themselves.
        let end = follower
            .addr
            .send(EndOffsetForEpoch {
                current_leader_epoch: None,
                leader_epoch: 0,
            })
            .await
            .unwrap();
        assert_eq!(
            end.unwrap_err().code,
            ResponseError::NotLeaderOrFollower.code(),
            "followers do not answer clients"
        );
        let answer = fetch(&leader, 2, 5, 2, 2).await;
        assert_eq!(
            answer.diverging_epoch, None,
            "the follower's last epoch matches"
        );
    }

    #[actix::test]
    async fn an_append_from_a_fetch_a_newer_leader_epoch_overtook_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let leader = leader_with_two_epochs(dir.path()).await;
        let follower = start(dir.path(), 2, Duration::from_secs(30), None);
        become_(&follower, 1, 3, &[1, 2]).await;
        let answer = fetch(&leader, 2, 0, -1, 2).await;
        let refused = follower
            .addr
            .send(AppendAsFollower {
                leader_epoch: 2,
                records: answer.records,
                leader_high_watermark: answer.high_watermark,
                leader_log_start_offset: 0,
            })
            .await
            .unwrap();
        assert_eq!(
            refused.unwrap_err().code,
            ResponseError::NotLeaderOrFollower.code()
        );
        assert_eq!(follower.progress().log_end_offset, 0);
    }

    #[actix::test]
    async fn follower_truncates_to_leader_epoch_end_offset() {
        let dir = tempfile::tempdir().unwrap();
        // An old leader (broker 2 here) wrote epoch 0 at 0–2 and, unreplicated, epoch 1 at
        // 3–5; the new leader (broker 1) only has epoch 0 at 0–2 and its own epoch 2 after.
        let old = start(dir.path(), 2, Duration::from_secs(30), None);
        become_(&old, 2, 0, &[2]).await;
        append_n(&old, 3).await;
        become_(&old, 2, 1, &[2]).await;
        append_n(&old, 3).await;
        let leader = start(dir.path(), 1, Duration::from_secs(30), None);
        become_(&leader, 1, 0, &[1]).await;
        let from_old = old
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
        // The new leader followed the old one for epoch 0 only.
        let epoch0: Vec<u8> = {
            let mut end = 0;
            let mut position = 0;
            while position < from_old.records.len() {
                let h = BatchHeader::parse(&from_old.records[position..]).unwrap();
                if h.partition_leader_epoch != 0 {
                    break;
                }
                position += h.total_size();
                end = position;
            }
            from_old.records[..end].to_vec()
        };
        become_(&leader, 2, 1, &[1, 2]).await;
        leader
            .addr
            .send(AppendAsFollower {
                leader_epoch: 1,
                records: epoch0.into(),
                leader_high_watermark: 3,
                leader_log_start_offset: 0,
            })
            .await
            .unwrap()
            .unwrap();
        become_(&leader, 1, 2, &[1]).await;
        append_n(&leader, 2).await; // epoch 2 at 3–4

        // The old leader comes back as a follower: its last epoch (1) is unknown to the new
        // leader, whose largest epoch below it (0) ended at 3.
        become_(&old, 1, 2, &[1]).await;
        let old_end = old.progress().log_end_offset;
        assert_eq!(old_end, 6);
        let answer = fetch(&leader, 2, old_end, 1, 2).await;
        let diverging = answer.diverging_epoch.expect("diverging epoch");
        let position = old
            .addr
            .send(TruncateToDivergence {
                leader_epoch: 2,
                diverging,
            })
            .await
            .unwrap()
            .unwrap();
        // Not to its high-water mark: to where epoch 0 ended on the leader (KIP-101).
        assert_eq!(position.log_end_offset, 3);
        assert_eq!(position.last_epoch, 0);
        // From there it agrees with the leader and copies its epoch 2.
        replicate(&leader, &old, 2, 3).await;
        assert_eq!(old.progress().log_end_offset, 5);
        let a = fetch(&leader, 2, 0, -1, 2).await.records;
        let b = old
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
            .records;
        assert_eq!(a, b, "the logs no longer diverge");
    }

    #[actix::test]
    async fn a_former_leader_that_appended_nothing_in_its_epoch_drops_that_epoch_and_catches_up() {
        // Found by `weir chaos`: broker 2 led epoch 0 (two records), became leader again in
        // epoch 1 (assigning it at its log end) but appended nothing before broker 1 took
        // over in epoch 2. Broker 1 never saw epoch 1, so it answers broker 2's fetch with a
        // divergence at the end of epoch 0 — exactly broker 2's log end. Nothing is cut, but
        // the empty epoch 1 must go, or every later fetch diverges the same way and broker 2
        // never rejoins the ISR.
        let dir = tempfile::tempdir().unwrap();
        let old = start(dir.path(), 2, Duration::from_secs(30), None);
        become_(&old, 2, 0, &[2]).await;
        append_n(&old, 2).await;
        become_(&old, 2, 1, &[2]).await;
        become_(&old, 1, 2, &[1]).await;
        let position = old
            .addr
            .send(TruncateToDivergence {
                leader_epoch: 2,
                diverging: DivergingEpoch {
                    epoch: 0,
                    end_offset: 2,
                },
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(position.log_end_offset, 2, "no record is cut");
        assert_eq!(
            position.last_epoch, 0,
            "the empty epoch 1 is gone, so the next fetch agrees with the leader"
        );
    }

    #[actix::test]
    async fn a_follower_that_never_saw_the_leaders_epoch_truncates_to_its_own_smaller_epoch() {
        // KIP-279: the leader's answer names epoch 0, but the follower's epoch 0 ended
        // earlier (at 2) than the leader's (at 3): it cuts back to 2.
        let dir = tempfile::tempdir().unwrap();
        let old = start(dir.path(), 2, Duration::from_secs(30), None);
        become_(&old, 2, 0, &[2]).await;
        append_n(&old, 2).await;
        become_(&old, 2, 1, &[2]).await;
        append_n(&old, 3).await;
        become_(&old, 1, 5, &[1]).await;
        let position = old
            .addr
            .send(TruncateToDivergence {
                leader_epoch: 5,
                diverging: DivergingEpoch {
                    epoch: 0,
                    end_offset: 3,
                },
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(position.log_end_offset, 2);
        assert_eq!(position.last_epoch, 0);
    }
}
