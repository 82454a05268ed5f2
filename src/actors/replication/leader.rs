//! The leader side of replication: a follower's [`ReplicaFetch`] for every partition it
//! follows from this broker (Kafka's `ReplicaManager.fetchMessages` for a replica).
//!
//! Each partition is read by its replica actor ([`FollowerFetch`]), which also records the
//! follower's offset: that is what moves the high-water mark and completes `acks=all`
//! produces. A fetch that finds nothing new is held (Kafka's `DelayedFetch`) until one of its
//! partitions' log end offsets moves, its leadership changes, or `max_wait_ms` passes, and is
//! then read once more, so a follower's next request arrives right after new data does. Only
//! the first read records the follower's progress, as Kafka's does: a request parked before
//! the follower stalled says nothing about the follower afterwards.
//!
//! A fetch of many partitions waits on one signal per broker ([`LocalReplicas::appended`]),
//! not on each partition's progress watch. A caught-up follower repeating its last fetch (the
//! idle case: thousands of partitions every `replica.fetch.wait.max.ms`) is answered without
//! any message, from what the replica actor published
//! ([`crate::actors::replica::CaughtUpFollowers`]); the actor still learns when, so its ISR
//! never drops a follower that keeps fetching.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use tokio::time::Instant;

use super::{FetchedPartition, ReplicaFetch, ReplicaFetchResponse};
use crate::actors::broker::LocalReplicas;
use crate::actors::delayed::{wait_for_fetchable, FetchWatch};
use crate::actors::replica::{FetchIsolation, FollowerFetch};
use crate::protocol::error::ApiError;

/// Answers a follower's fetch.
pub async fn serve_replica_fetch(
    replicas: LocalReplicas,
    request: ReplicaFetch,
) -> ReplicaFetchResponse {
    let deadline = Instant::now() + Duration::from_millis(u64::from(request.max_wait_ms));
    let first = read_all(&replicas, &request, true).await;
    if is_enough(&first, request.min_bytes) || request.max_wait_ms == 0 {
        return first;
    }
    let woken = if request.partitions.len() > WATCHED_PARTITIONS_MAX {
        wait_for_appends(&replicas, &request, &first, deadline).await
    } else {
        wait_for_partitions(&replicas, &request, &first, deadline).await
    };
    if !woken {
        // Nothing new: the first answer still stands (its high-water marks may be a little
        // old; the follower's next fetch brings newer ones).
        return first;
    }
    read_all(&replicas, &request, false).await
}

/// Up to this many partitions a parked fetch waits on each partition's progress watch, woken
/// only by its own partitions; beyond, registering thousands of watches per round costs
/// more than looking at every partition when the broker's signal fires (which any leader
/// append on the broker does: the price of this wait is a look per append elsewhere).
const WATCHED_PARTITIONS_MAX: usize = 64;

/// [`wait_for_appends`] on each partition's watch (few partitions).
async fn wait_for_partitions(
    replicas: &LocalReplicas,
    request: &ReplicaFetch,
    first: &ReplicaFetchResponse,
    deadline: Instant,
) -> bool {
    let mut watches: Vec<FetchWatch> = Vec::with_capacity(request.partitions.len());
    let mut answers = request.partitions.iter().zip(&first.partitions);
    replicas.for_each(request.partitions.iter().map(|p| &p.tp), |_, handle| {
        let (Some((p, answer)), Some(handle)) = (answers.next(), handle) else {
            return;
        };
        watches.push(FetchWatch {
            // Not woken by the high-water mark moves that follow each append.
            progress: handle.log_end.clone(),
            isolation: FetchIsolation::LogEnd,
            seen_end: answer.log_end_offset.max(p.fetch_offset),
            leader_epoch: p.current_leader_epoch,
        });
    });
    wait_for_fetchable(&mut watches, deadline).await
}

/// Kafka's `DelayedFetch` for a follower: returns `true` once one of the fetch's partitions
/// has something new since `first` (its log end grew, its leader epoch changed, it stopped
/// or is gone), `false` when the deadline passes first.
///
/// It waits on the broker's one [`LocalReplicas::appended`] signal and looks at its
/// partitions' progress only when that fires: an idle follower's fetch of thousands of
/// partitions costs no registration per partition (waiting on each partition's watch did).
pub(crate) async fn wait_for_appends(
    replicas: &LocalReplicas,
    request: &ReplicaFetch,
    first: &ReplicaFetchResponse,
    deadline: Instant,
) -> bool {
    crate::protocol::request_queue::parked();
    loop {
        let appended = replicas.appended().notified();
        tokio::pin!(appended);
        // Registered before looking, so a signal between the look and the wait is not lost.
        appended.as_mut().enable();
        if has_news(replicas, request, first) {
            return true;
        }
        if tokio::time::timeout_at(deadline, appended).await.is_err() {
            return false;
        }
    }
}

/// Whether any partition of the fetch moved since its first read.
fn has_news(
    replicas: &LocalReplicas,
    request: &ReplicaFetch,
    first: &ReplicaFetchResponse,
) -> bool {
    let mut news = false;
    let mut answers = request.partitions.iter().zip(&first.partitions);
    replicas.for_each(request.partitions.iter().map(|p| &p.tp), |_, handle| {
        let Some((p, answer)) = answers.next() else {
            return;
        };
        news = news
            || handle.is_none_or(|h| {
                let progress = h.progress();
                progress.stopped
                    || progress.leader_epoch != p.current_leader_epoch
                    || progress.log_end_offset > answer.log_end_offset.max(p.fetch_offset)
            });
    });
    news
}

/// One read of every partition; the response stays within the request's `max_bytes` except
/// for the first partition with data (KIP-74: a follower must always be able to make
/// progress, even past one oversized batch).
///
/// On the first read (`record_progress`), a caught-up follower repeating its last fetch is
/// answered from the replica's [`crate::actors::replica::CaughtUpFollowers`] with no message;
/// every other partition is read by its replica actor, concurrently.
async fn read_all(
    replicas: &LocalReplicas,
    request: &ReplicaFetch,
    record_progress: bool,
) -> ReplicaFetchResponse {
    let now = std::time::Instant::now();
    let replica_id = request.replica_id;
    let mut answered: Vec<Option<FetchedPartition>> = Vec::with_capacity(request.partitions.len());
    let mut to_actors = Vec::new();
    let mut partitions = request.partitions.iter();
    replicas.for_each(request.partitions.iter().map(|p| &p.tp), |tp, handle| {
        let Some(p) = partitions.next() else {
            return;
        };
        let Some(handle) = handle else {
            answered.push(Some(FetchedPartition::failed(
                tp.clone(),
                ApiError::with_message(
                    ResponseError::NotLeaderOrFollower,
                    format!("this broker hosts no replica of {tp}"),
                ),
            )));
            return;
        };
        let repeat = record_progress
            .then(|| handle.caught_up.answer(replica_id, p, now))
            .flatten();
        if repeat.is_none() {
            to_actors.push((answered.len(), handle.addr.clone(), p.clone()));
        }
        answered.push(repeat);
    });
    let reads = to_actors
        .into_iter()
        .map(|(index, addr, partition)| async move {
            let tp = partition.tp.clone();
            let answer = addr
                .send(FollowerFetch {
                    replica_id,
                    partition,
                    record_progress,
                })
                .await
                .unwrap_or_else(|_| {
                    FetchedPartition::failed(
                        tp.clone(),
                        ApiError::with_message(
                            ResponseError::NotLeaderOrFollower,
                            format!("the replica of {tp} stopped"),
                        ),
                    )
                });
            (index, answer)
        });
    for (index, answer) in futures::future::join_all(reads).await {
        answered[index] = Some(answer);
    }
    let mut partitions: Vec<FetchedPartition> = answered.into_iter().flatten().collect();
    let mut budget = request.max_bytes as usize;
    let mut any = false;
    for p in &mut partitions {
        let len = p.records.len();
        if len == 0 {
            continue;
        }
        if any && len > budget {
            // Read again next time; the follower's offset for it did not move.
            p.records = Bytes::new();
            continue;
        }
        budget = budget.saturating_sub(len);
        any = true;
    }
    ReplicaFetchResponse { partitions }
}

/// Enough to answer now: data, an error or a truncation to act on.
fn is_enough(response: &ReplicaFetchResponse, min_bytes: u32) -> bool {
    let bytes: usize = response.partitions.iter().map(|p| p.records.len()).sum();
    bytes >= min_bytes.max(1) as usize
        || response
            .partitions
            .iter()
            .any(|p| p.error.is_some() || p.diverging_epoch.is_some())
}
