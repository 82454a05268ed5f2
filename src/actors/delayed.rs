//! Delayed operations (Kafka's `DelayedProduce` and `DelayedFetch` in their purgatories): a
//! request that cannot be answered yet waits on the partitions it spans and completes when
//! their high-water marks (or log ends) move far enough, when leadership changes under it, or
//! when its deadline passes.
//!
//! A delayed produce waits in its partition's [`ProducePurgatory`], as in Kafka: waiters are
//! ordered by the offset the high-water mark must reach, and each progress the replica
//! publishes completes exactly those it satisfies (all of them when leadership changes or
//! the replica stops). Nothing else is woken: with `linger.ms=0` at 100 k records/s a
//! partition holds hundreds of produces waiting at once, and waking each of them on every
//! append and every follower fetch (which waiting on the progress `watch` did) cost more
//! CPU than serving the requests (see benches/README.md, "Broker CPU per acks=all request").
//!
//! A long-poll fetch waits on the `watch` channel each replica publishes its
//! [`PartitionProgress`] on, and one deadline timer: a fetch waits on few partitions and
//! wants every log end move. Both live on the request's task (nothing to clean up: they end
//! by their deadline at the latest). Waiting here gives the request's place in the broker's
//! request queue back.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::select_all;
use futures::StreamExt;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::actors::replica::{FetchIsolation, PartitionProgress};

/// One partition of an `acks=all` produce: done when the high-water mark reaches
/// `required_offset` (the appended batch's last offset + 1) in the same leader epoch.
#[derive(Debug, Clone)]
pub struct ProduceWait {
    pub purgatory: Arc<ProducePurgatory>,
    pub required_offset: i64,
    pub leader_epoch: i32,
    /// The topic's `min.insync.replicas`: records that reach the high-water mark with a
    /// smaller ISR are reported NOT_ENOUGH_REPLICAS_AFTER_APPEND (Kafka's
    /// `checkEnoughReplicasReachOffset`).
    pub min_insync_replicas: i32,
}

/// How one partition of a delayed produce ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProduceWaitOutcome {
    /// Every ISR member has the records.
    Replicated,
    /// The records are committed, but by an ISR smaller than `min.insync.replicas`.
    NotEnoughReplicasAfterAppend,
    /// The replica lost leadership or stopped before the records were replicated.
    NotLeader,
    /// The request's timeout passed first (REQUEST_TIMED_OUT).
    TimedOut,
}

/// One partition's delayed produces (Kafka's produce purgatory, keyed by partition), shared
/// by the replica actor, which publishes its progress here after its `watch`, and the
/// requests waiting for the high-water mark.
///
/// Example: waiters needing offsets 5, 8 and 9 (each a batch's last offset + 1); the leader
/// publishes high-water mark 8: the first two complete, 9 keeps waiting, nobody else is
/// woken.
#[derive(Debug)]
pub struct ProducePurgatory {
    state: Mutex<PurgatoryState>,
}

#[derive(Debug)]
struct PurgatoryState {
    /// The replica's last published progress (`None` once it closed: every wait fails).
    progress: Option<PartitionProgress>,
    /// Keyed by (the offset the high-water mark must reach, a registration number): the
    /// satisfied waiters are a prefix, split off in one step; offsets tie across batches
    /// only for retried duplicates, the number keeps them apart.
    waiting: BTreeMap<(i64, u64), Waiter>,
    next_id: u64,
    /// Timed-out waiters stay until the high-water mark passes them; their closed senders
    /// are swept when the map reaches this size (doubling, so sweeping is amortized O(1)).
    sweep_at: usize,
}

#[derive(Debug)]
struct Waiter {
    leader_epoch: i32,
    min_isr: usize,
    done: oneshot::Sender<ProduceWaitOutcome>,
}

const SWEEP_AT_LEAST: usize = 1024;

/// The outcome for a waiter `progress` ends, `None` while it must keep waiting (the rule
/// of Kafka's `DelayedProduce.tryComplete`).
fn outcome_of(
    progress: Option<&PartitionProgress>,
    required: i64,
    epoch: i32,
    min_isr: usize,
) -> Option<ProduceWaitOutcome> {
    let Some(p) = progress else {
        return Some(ProduceWaitOutcome::NotLeader);
    };
    if p.stopped || !p.is_leader || p.leader_epoch != epoch {
        Some(ProduceWaitOutcome::NotLeader)
    } else if p.high_watermark >= required {
        Some(if p.isr_size >= min_isr {
            ProduceWaitOutcome::Replicated
        } else {
            ProduceWaitOutcome::NotEnoughReplicasAfterAppend
        })
    } else {
        None
    }
}

impl ProducePurgatory {
    /// A purgatory whose partition is at `progress`.
    pub fn new(progress: PartitionProgress) -> Self {
        Self {
            state: Mutex::new(PurgatoryState {
                progress: Some(progress),
                waiting: BTreeMap::new(),
                next_id: 0,
                sweep_at: SWEEP_AT_LEAST,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PurgatoryState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The replica published `progress`: completes the waiters it satisfies or fails.
    pub fn publish(&self, progress: PartitionProgress) {
        let done = {
            let mut state = self.lock();
            let old = state.progress.replace(progress);
            let moved = old.is_none_or(|o| {
                o.high_watermark != progress.high_watermark
                    || o.leader_epoch != progress.leader_epoch
                    || o.is_leader != progress.is_leader
                    || o.stopped != progress.stopped
            });
            if !moved || state.waiting.is_empty() {
                return;
            }
            if progress.stopped || !progress.is_leader {
                std::mem::take(&mut state.waiting)
            } else {
                // Waiters of another epoch first (rare: leadership changed), then the
                // satisfied prefix.
                let mut done = BTreeMap::new();
                if state
                    .waiting
                    .values()
                    .any(|w| w.leader_epoch != progress.leader_epoch)
                {
                    let (other, same): (BTreeMap<_, _>, BTreeMap<_, _>) =
                        std::mem::take(&mut state.waiting)
                            .into_iter()
                            .partition(|(_, w)| w.leader_epoch != progress.leader_epoch);
                    state.waiting = same;
                    done = other;
                }
                let rest = state
                    .waiting
                    .split_off(&(progress.high_watermark.saturating_add(1), 0));
                done.extend(std::mem::replace(&mut state.waiting, rest));
                done
            }
        };
        // Woken outside the lock.
        for ((required, _), w) in done {
            let outcome = outcome_of(Some(&progress), required, w.leader_epoch, w.min_isr)
                .unwrap_or(ProduceWaitOutcome::NotLeader);
            let _ = w.done.send(outcome);
        }
    }

    /// The replica is gone: every waiter fails, and so does every later wait.
    pub fn close(&self) {
        let waiting = {
            let mut state = self.lock();
            state.progress = None;
            std::mem::take(&mut state.waiting)
        };
        for (_, w) in waiting {
            let _ = w.done.send(ProduceWaitOutcome::NotLeader);
        }
    }

    /// Registers a wait, or answers at once when the published progress already ends it.
    fn register(
        &self,
        required: i64,
        leader_epoch: i32,
        min_isr: usize,
    ) -> Result<ProduceWaitOutcome, oneshot::Receiver<ProduceWaitOutcome>> {
        let mut state = self.lock();
        if let Some(outcome) = outcome_of(state.progress.as_ref(), required, leader_epoch, min_isr)
        {
            return Ok(outcome);
        }
        if state.waiting.len() >= state.sweep_at {
            state.waiting.retain(|_, w| !w.done.is_closed());
            state.sweep_at = (state.waiting.len() * 2).max(SWEEP_AT_LEAST);
        }
        let (done, rx) = oneshot::channel();
        let id = state.next_id;
        state.next_id += 1;
        state.waiting.insert(
            (required, id),
            Waiter {
                leader_epoch,
                min_isr,
                done,
            },
        );
        Err(rx)
    }

    /// Waiters registered now (tests and diagnostics).
    pub fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }
}

/// Kafka's `DelayedProduce`: waits for every partition concurrently, up to `timeout`.
pub async fn delayed_produce(
    waits: Vec<ProduceWait>,
    timeout: Duration,
) -> Vec<ProduceWaitOutcome> {
    // Parked: the request no longer counts against the broker's request queue.
    crate::protocol::request_queue::parked();
    let deadline = Instant::now() + timeout;
    let mut outcomes = Vec::with_capacity(waits.len());
    let mut pending = Vec::new();
    for wait in waits {
        let min_isr = wait.min_insync_replicas.max(1) as usize;
        match wait
            .purgatory
            .register(wait.required_offset, wait.leader_epoch, min_isr)
        {
            Ok(outcome) => outcomes.push(outcome),
            Err(rx) => {
                pending.push((outcomes.len(), rx));
                // Filled in below.
                outcomes.push(ProduceWaitOutcome::TimedOut);
            }
        }
    }
    if pending.is_empty() {
        return outcomes;
    }
    // One timer for the whole request; a partition not answered by then timed out.
    let sleep = tokio::time::sleep_until(deadline);
    tokio::pin!(sleep);
    let mut waiting = futures::stream::FuturesUnordered::new();
    for (index, rx) in pending {
        waiting.push(async move { (index, rx.await) });
    }
    loop {
        tokio::select! {
            next = waiting.next() => match next {
                // A dropped sender: the purgatory went away with its replica.
                Some((index, answer)) => {
                    outcomes[index] = answer.unwrap_or(ProduceWaitOutcome::NotLeader);
                }
                None => break,
            },
            _ = &mut sleep => break,
        }
    }
    outcomes
}

/// One partition of a long-poll fetch: wakes the fetch when the offsets it may read grow past
/// what the last read saw (`seen_end`), or when the partition's leadership changes.
#[derive(Debug, Clone)]
pub struct FetchWatch {
    pub progress: watch::Receiver<PartitionProgress>,
    pub isolation: FetchIsolation,
    /// The readable end (high-water mark, or log end for followers) the last read observed.
    pub seen_end: i64,
    pub leader_epoch: i32,
}

impl FetchWatch {
    fn readable_end(&self, p: &PartitionProgress) -> i64 {
        match self.isolation {
            FetchIsolation::LogEnd => p.log_end_offset,
            FetchIsolation::HighWatermark | FetchIsolation::TxnCommitted => p.high_watermark,
        }
    }

    fn is_woken_by(&self, p: &PartitionProgress) -> bool {
        p.stopped
            || p.leader_epoch != self.leader_epoch
            || (self.isolation != FetchIsolation::LogEnd && !p.is_leader)
            || self.readable_end(p) > self.seen_end
    }
}

/// Kafka's `DelayedFetch` wait: returns `true` when one of the partitions has something new
/// (the caller reads again), `false` when the deadline passed first.
pub async fn wait_for_fetchable(watches: &mut [FetchWatch], deadline: Instant) -> bool {
    crate::protocol::request_queue::parked();
    if watches.is_empty() {
        tokio::time::sleep_until(deadline).await;
        return false;
    }
    let waiting = watches.iter_mut().map(|w| {
        let probe = w.clone();
        Box::pin(async move {
            // An error means the replica is gone: that is news for the fetch too.
            let _ = w.progress.wait_for(|p| probe.is_woken_by(p)).await;
        })
    });
    tokio::time::timeout_at(deadline, select_all(waiting))
        .await
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(high_watermark: i64) -> PartitionProgress {
        PartitionProgress::sole_leader_at(high_watermark)
    }

    fn purgatory_at(high_watermark: i64) -> Arc<ProducePurgatory> {
        Arc::new(ProducePurgatory::new(progress(high_watermark)))
    }

    fn wait(purgatory: &Arc<ProducePurgatory>, required_offset: i64) -> ProduceWait {
        ProduceWait {
            purgatory: purgatory.clone(),
            required_offset,
            leader_epoch: 0,
            min_insync_replicas: 1,
        }
    }

    #[tokio::test]
    async fn delayed_produce_completes_when_the_high_watermark_passes_the_last_offset() {
        let purgatory = purgatory_at(5);
        let task = tokio::spawn(delayed_produce(
            vec![wait(&purgatory, 8)],
            Duration::from_secs(30),
        ));
        while purgatory.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        purgatory.publish(progress(7));
        assert_eq!(purgatory.waiting(), 1);
        purgatory.publish(progress(8));
        assert_eq!(task.await.unwrap(), vec![ProduceWaitOutcome::Replicated]);
    }

    #[tokio::test]
    async fn a_high_watermark_move_completes_only_the_waiters_it_covers() {
        let purgatory = purgatory_at(0);
        let mut tasks = Vec::new();
        for required in [5, 8, 9] {
            tasks.push(tokio::spawn(delayed_produce(
                vec![wait(&purgatory, required)],
                Duration::from_secs(30),
            )));
        }
        while purgatory.waiting() < 3 {
            tokio::task::yield_now().await;
        }
        purgatory.publish(progress(8));
        assert_eq!(purgatory.waiting(), 1);
        let last = tasks.pop().unwrap();
        for task in tasks {
            assert_eq!(task.await.unwrap(), vec![ProduceWaitOutcome::Replicated]);
        }
        assert!(!last.is_finished());
        purgatory.publish(progress(9));
        assert_eq!(last.await.unwrap(), vec![ProduceWaitOutcome::Replicated]);
    }

    #[tokio::test]
    async fn delayed_produce_reports_an_isr_below_min_insync_replicas() {
        let purgatory = purgatory_at(0);
        let mut w = wait(&purgatory, 3);
        w.min_insync_replicas = 2;
        let task = tokio::spawn(delayed_produce(vec![w], Duration::from_secs(30)));
        while purgatory.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        // progress() has an ISR of one.
        purgatory.publish(progress(3));
        assert_eq!(
            task.await.unwrap(),
            vec![ProduceWaitOutcome::NotEnoughReplicasAfterAppend]
        );
    }

    #[tokio::test]
    async fn delayed_produce_fails_when_leadership_moves() {
        let purgatory = purgatory_at(5);
        let task = tokio::spawn(delayed_produce(
            vec![wait(&purgatory, 8)],
            Duration::from_secs(30),
        ));
        while purgatory.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        let mut moved = progress(5);
        moved.leader_epoch = 1;
        moved.is_leader = false;
        purgatory.publish(moved);
        assert_eq!(task.await.unwrap(), vec![ProduceWaitOutcome::NotLeader]);
    }

    #[tokio::test]
    async fn delayed_produce_fails_when_the_replica_goes_away() {
        let purgatory = purgatory_at(5);
        let task = tokio::spawn(delayed_produce(
            vec![wait(&purgatory, 8)],
            Duration::from_secs(30),
        ));
        while purgatory.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        purgatory.close();
        assert_eq!(task.await.unwrap(), vec![ProduceWaitOutcome::NotLeader]);
        // A wait registered after the close fails at once.
        let late = delayed_produce(vec![wait(&purgatory, 6)], Duration::from_secs(30)).await;
        assert_eq!(late, vec![ProduceWaitOutcome::NotLeader]);
    }

    #[tokio::test]
    async fn delayed_produce_times_out() {
        let purgatory = purgatory_at(5);
        let outcome = delayed_produce(vec![wait(&purgatory, 8)], Duration::from_millis(100)).await;
        assert_eq!(outcome, vec![ProduceWaitOutcome::TimedOut]);
    }

    #[tokio::test]
    async fn a_multi_partition_produce_times_out_only_where_not_replicated() {
        let done = purgatory_at(9);
        let stuck = purgatory_at(5);
        let outcome = delayed_produce(
            vec![wait(&done, 8), wait(&stuck, 8)],
            Duration::from_millis(100),
        )
        .await;
        assert_eq!(
            outcome,
            vec![ProduceWaitOutcome::Replicated, ProduceWaitOutcome::TimedOut]
        );
    }

    #[tokio::test]
    async fn a_long_poll_wakes_when_any_partition_grows() {
        let (_tx_a, rx_a) = watch::channel(progress(3));
        let (tx_b, rx_b) = watch::channel(progress(4));
        let mut watches = vec![
            FetchWatch {
                progress: rx_a,
                isolation: FetchIsolation::HighWatermark,
                seen_end: 3,
                leader_epoch: 0,
            },
            FetchWatch {
                progress: rx_b,
                isolation: FetchIsolation::HighWatermark,
                seen_end: 4,
                leader_epoch: 0,
            },
        ];
        let deadline = Instant::now() + Duration::from_secs(30);
        let waiter = tokio::spawn(async move { wait_for_fetchable(&mut watches, deadline).await });
        tx_b.send_replace(progress(5));
        assert!(waiter.await.unwrap());
    }

    #[tokio::test]
    async fn a_long_poll_with_nothing_new_returns_at_its_deadline() {
        let (_tx, rx) = watch::channel(progress(3));
        let mut watches = vec![FetchWatch {
            progress: rx,
            isolation: FetchIsolation::HighWatermark,
            seen_end: 3,
            leader_epoch: 0,
        }];
        let start = Instant::now();
        let woke = wait_for_fetchable(&mut watches, start + Duration::from_millis(100)).await;
        assert!(!woke);
        assert!(Instant::now() >= start + Duration::from_millis(100));
    }
}
