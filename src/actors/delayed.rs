//! Delayed operations (Kafka's `DelayedProduce` and `DelayedFetch` in their purgatories): a
//! request that cannot be answered yet waits on the partitions it spans and completes when
//! their high-water marks (or log ends) move far enough, when leadership changes under it, or
//! when its deadline passes.
//!
//! Kafka parks these in a purgatory keyed by partition and has the replica check the keys it
//! touched after every append. Here every replica publishes its [`PartitionProgress`] on a
//! `watch` channel, so a delayed operation is a future that waits on those channels and one
//! deadline timer: it wakes exactly when a partition it waits on changes, never by polling,
//! and it lives on the request's task (nothing to clean up: it ends by its deadline at the
//! latest). Waiting here gives the request's place in the broker's request queue back.

use std::time::Duration;

use futures::future::select_all;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::actors::replica::{FetchIsolation, PartitionProgress};

/// One partition of an `acks=all` produce: done when the high-water mark reaches
/// `required_offset` (the appended batch's last offset + 1) in the same leader epoch.
#[derive(Debug, Clone)]
pub struct ProduceWait {
    pub progress: watch::Receiver<PartitionProgress>,
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

/// Kafka's `DelayedProduce`: waits for every partition concurrently, up to `timeout`.
pub async fn delayed_produce(
    waits: Vec<ProduceWait>,
    timeout: Duration,
) -> Vec<ProduceWaitOutcome> {
    // Parked: the request no longer counts against the broker's request queue.
    crate::protocol::request_queue::parked();
    let deadline = Instant::now() + timeout;
    futures::future::join_all(waits.into_iter().map(|mut wait| async move {
        let required = wait.required_offset;
        let epoch = wait.leader_epoch;
        let min_isr = wait.min_insync_replicas.max(1) as usize;
        let ended = tokio::time::timeout_at(
            deadline,
            wait.progress.wait_for(|p| {
                p.stopped || !p.is_leader || p.leader_epoch != epoch || p.high_watermark >= required
            }),
        )
        .await;
        match ended {
            Err(_) => ProduceWaitOutcome::TimedOut,
            // The sender is gone: the replica stopped.
            Ok(Err(_)) => ProduceWaitOutcome::NotLeader,
            Ok(Ok(p)) => {
                if !p.stopped
                    && p.is_leader
                    && p.leader_epoch == epoch
                    && p.high_watermark >= required
                {
                    if p.isr_size >= min_isr {
                        ProduceWaitOutcome::Replicated
                    } else {
                        ProduceWaitOutcome::NotEnoughReplicasAfterAppend
                    }
                } else {
                    ProduceWaitOutcome::NotLeader
                }
            }
        }
    }))
    .await
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

    #[tokio::test]
    async fn delayed_produce_completes_when_the_high_watermark_passes_the_last_offset() {
        let (tx, rx) = watch::channel(progress(5));
        let wait = ProduceWait {
            progress: rx,
            required_offset: 8,
            leader_epoch: 0,
            min_insync_replicas: 1,
        };
        let task = tokio::spawn(delayed_produce(vec![wait], Duration::from_secs(30)));
        tx.send_replace(progress(7));
        tx.send_replace(progress(8));
        assert_eq!(task.await.unwrap(), vec![ProduceWaitOutcome::Replicated]);
    }

    #[tokio::test]
    async fn delayed_produce_fails_when_leadership_moves() {
        let (tx, rx) = watch::channel(progress(5));
        let wait = ProduceWait {
            progress: rx,
            required_offset: 8,
            leader_epoch: 0,
            min_insync_replicas: 1,
        };
        let task = tokio::spawn(delayed_produce(vec![wait], Duration::from_secs(30)));
        let mut moved = progress(5);
        moved.leader_epoch = 1;
        moved.is_leader = false;
        tx.send_replace(moved);
        assert_eq!(task.await.unwrap(), vec![ProduceWaitOutcome::NotLeader]);
    }

    #[tokio::test]
    async fn delayed_produce_times_out() {
        let (_tx, rx) = watch::channel(progress(5));
        let wait = ProduceWait {
            progress: rx,
            required_offset: 8,
            leader_epoch: 0,
            min_insync_replicas: 1,
        };
        let outcome = delayed_produce(vec![wait], Duration::from_millis(100)).await;
        assert_eq!(outcome, vec![ProduceWaitOutcome::TimedOut]);
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
