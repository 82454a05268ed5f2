//! A leader's answer to a caught-up follower without an actor message (Kafka's leader serves
//! a follower's fetch in one loop over its partitions, with no hop per partition).
//!
//! An idle follower asks every `replica.fetch.wait.max.ms` for what follows its log end,
//! which is the leader's log end: nothing. The replica actor publishes here, whenever its
//! state changes, which followers its own bookkeeping already shows caught up — in the
//! recorded ISR with no ISR change pending, last fetch at the current log end in this leader
//! epoch (so that fetch passed the divergence check) — and with which last fetched epoch. A
//! fetch that repeats exactly that (same offset, leader epoch, last fetched epoch, topic id)
//! is answered here: no records, the current high-water mark, log start and log end. Its
//! arrival time is kept for the actor, which folds it into the follower's catch-up time
//! before it judges lag (ISR shrink), records a fetch or adopts an ISR, so a follower served
//! only here never looks lagging. Everything else — a new offset, epoch or divergence, a
//! follower outside the ISR, an ISR change in flight, a replica that stopped — goes to the
//! actor as before: only it changes state.
//!
//! Why a repeat may skip the actor: serving it would record the same offset at the same
//! leader log end (only the times move), expand no ISR (the follower is a member), move no
//! high-water mark (no offset moved) and read nothing (the offset is the log end).

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use tokio::sync::Notify;

use uuid::Uuid;

use crate::actors::replication::{FetchPartition, FetchedPartition};

/// Shared by a replica actor (writer) and the leader's fetch path (reader).
#[derive(Debug)]
pub struct CaughtUpFollowers {
    topic_id: Uuid,
    state: Mutex<Published>,
    /// The hosting broker's signal for followers' long-poll fetches: notified after the
    /// log end grows, the leader epoch changes, or the replica stops leading.
    appended: OnceLock<Arc<Notify>>,
}

/// The leader's state a repeated fetch is answered from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderView {
    pub leader_epoch: i32,
    pub log_end_offset: i64,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

/// A follower the actor found caught up, and since when it was answered here.
#[derive(Debug, Clone, Copy)]
struct Follower {
    id: i32,
    /// The last fetched epoch of its caught-up fetch; `None` while it is not eligible.
    caught_up_epoch: Option<i32>,
    /// The latest fetch answered here that the actor has not folded in yet.
    answered_at: Option<Instant>,
}

#[derive(Debug, Default)]
struct Published {
    /// `None` unless the replica leads.
    leader: Option<LeaderView>,
    followers: Vec<Follower>,
}

impl CaughtUpFollowers {
    pub fn new(topic_id: Uuid) -> Self {
        Self {
            topic_id,
            state: Mutex::new(Published::default()),
            appended: OnceLock::new(),
        }
    }

    /// Where to signal what wakes a follower's long-poll fetch (the broker's replica table).
    pub fn signal_appends_to(&self, appended: Arc<Notify>) {
        let _ = self.appended.set(appended);
    }

    fn signal(&self) {
        if let Some(appended) = self.appended.get() {
            appended.notify_waiters();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Published> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The actor publishes its state, after its progress watch: `leader` while it leads,
    /// and per follower the last fetched epoch of its caught-up fetch, or `None` when its
    /// next fetch must reach the actor. Times not yet folded in are kept.
    pub fn publish(
        &self,
        leader: Option<LeaderView>,
        followers: impl IntoIterator<Item = (i32, Option<i32>)>,
    ) {
        let mut state = self.lock();
        let wakes_fetches = match (state.leader, leader) {
            (Some(old), Some(new)) => {
                new.log_end_offset > old.log_end_offset || new.leader_epoch != old.leader_epoch
            }
            (None, None) => false,
            _ => true,
        };
        state.leader = leader;
        if wakes_fetches {
            self.signal();
        }
        // A follower left out is no longer answered here; its time not yet folded in stays
        // (it is still true).
        for f in &mut state.followers {
            f.caught_up_epoch = None;
        }
        if leader.is_none() {
            return;
        }
        for (id, caught_up_epoch) in followers {
            match state.followers.iter_mut().find(|f| f.id == id) {
                Some(f) => f.caught_up_epoch = caught_up_epoch,
                None => state.followers.push(Follower {
                    id,
                    caught_up_epoch,
                    answered_at: None,
                }),
            }
        }
    }

    /// Nothing is answered here any more (the replica stopped or went offline); called
    /// after the progress watch says so.
    pub fn clear(&self) {
        let mut state = self.lock();
        state.leader = None;
        state.followers.clear();
        self.signal();
    }

    /// The fetches answered here since the last call, per follower: the latest arrival.
    pub fn drain_answered(&self, mut f: impl FnMut(i32, Instant)) {
        let mut state = self.lock();
        for follower in &mut state.followers {
            if let Some(at) = follower.answered_at.take() {
                f(follower.id, at);
            }
        }
    }

    /// Answers `fetch` from `replica_id` if it repeats a caught-up fetch the actor already
    /// served and nothing changed since; `None` sends it to the actor. `now` is taken before
    /// the check: the log end only grows within a leader epoch, so the follower held it then.
    pub fn answer(
        &self,
        replica_id: i32,
        fetch: &FetchPartition,
        now: Instant,
    ) -> Option<FetchedPartition> {
        if !fetch.topic_id.is_nil() && fetch.topic_id != self.topic_id {
            return None;
        }
        let mut state = self.lock();
        let leader = state.leader?;
        if leader.leader_epoch != fetch.current_leader_epoch
            || leader.log_end_offset != fetch.fetch_offset
        {
            return None;
        }
        let follower = state.followers.iter_mut().find(|f| f.id == replica_id)?;
        if follower.caught_up_epoch != Some(fetch.last_fetched_epoch) {
            return None;
        }
        follower.answered_at = Some(follower.answered_at.map_or(now, |t| t.max(now)));
        Some(FetchedPartition {
            tp: fetch.tp.clone(),
            error: None,
            high_watermark: leader.high_watermark,
            log_start_offset: leader.log_start_offset,
            log_end_offset: leader.log_end_offset,
            diverging_epoch: None,
            records: bytes::Bytes::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::storage::TopicPartition;

    const TOPIC_ID: Uuid = Uuid::from_u128(7);

    fn view(log_end_offset: i64) -> LeaderView {
        LeaderView {
            leader_epoch: 3,
            log_end_offset,
            high_watermark: log_end_offset - 1,
            log_start_offset: 1,
        }
    }

    fn fetch(fetch_offset: i64, last_fetched_epoch: i32) -> FetchPartition {
        FetchPartition {
            tp: TopicPartition::new("t", 0),
            topic_id: TOPIC_ID,
            fetch_offset,
            current_leader_epoch: 3,
            last_fetched_epoch,
            log_start_offset: 0,
            max_bytes: 1 << 20,
        }
    }

    #[test]
    fn only_an_exact_repeat_of_a_published_caught_up_fetch_is_answered() {
        let caught_up = CaughtUpFollowers::new(TOPIC_ID);
        let now = Instant::now();
        assert!(
            caught_up.answer(2, &fetch(10, 3), now).is_none(),
            "nothing published"
        );
        caught_up.publish(Some(view(10)), [(2, Some(3)), (3, None)]);
        let answer = caught_up.answer(2, &fetch(10, 3), now).expect("a repeat");
        assert_eq!(
            (
                answer.high_watermark,
                answer.log_start_offset,
                answer.log_end_offset
            ),
            (9, 1, 10)
        );
        assert!(answer.records.is_empty() && answer.error.is_none());
        assert!(caught_up.answer(2, &fetch(9, 3), now).is_none(), "behind");
        assert!(
            caught_up.answer(2, &fetch(10, 2), now).is_none(),
            "other epoch"
        );
        let mut fenced = fetch(10, 3);
        fenced.current_leader_epoch = 2;
        assert!(
            caught_up.answer(2, &fenced, now).is_none(),
            "old leader epoch"
        );
        let mut recreated = fetch(10, 3);
        recreated.topic_id = Uuid::from_u128(8);
        assert!(
            caught_up.answer(2, &recreated, now).is_none(),
            "other topic id"
        );
        assert!(
            caught_up.answer(3, &fetch(10, 3), now).is_none(),
            "not eligible"
        );
        assert!(caught_up.answer(4, &fetch(10, 3), now).is_none(), "unknown");
        // The log end moved: the actor publishes again without the follower.
        caught_up.publish(Some(view(11)), [(2, None)]);
        assert!(caught_up.answer(2, &fetch(10, 3), now).is_none());
        caught_up.publish(Some(view(11)), [(2, Some(3))]);
        assert!(caught_up.answer(2, &fetch(11, 3), now).is_some());
        caught_up.publish(None, [(2, Some(3))]);
        assert!(
            caught_up.answer(2, &fetch(11, 3), now).is_none(),
            "not leading"
        );
        caught_up.publish(Some(view(11)), [(2, Some(3))]);
        caught_up.clear();
        assert!(caught_up.answer(2, &fetch(11, 3), now).is_none(), "stopped");
    }

    #[test]
    fn the_latest_answer_time_per_follower_is_handed_to_the_actor_once() {
        let caught_up = CaughtUpFollowers::new(TOPIC_ID);
        caught_up.publish(Some(view(10)), [(2, Some(3)), (3, Some(3))]);
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(5);
        caught_up.answer(2, &fetch(10, 3), t1).unwrap();
        caught_up.answer(2, &fetch(10, 3), t0).unwrap();
        let mut drained = Vec::new();
        caught_up.drain_answered(|id, at| drained.push((id, at)));
        assert_eq!(drained, vec![(2, t1)]);
        // Republishing keeps a time not yet drained.
        caught_up.answer(3, &fetch(10, 3), t0).unwrap();
        caught_up.publish(Some(view(11)), [(2, None), (3, None)]);
        drained.clear();
        caught_up.drain_answered(|id, at| drained.push((id, at)));
        assert_eq!(drained, vec![(3, t0)]);
        drained.clear();
        caught_up.drain_answered(|id, at| drained.push((id, at)));
        assert!(drained.is_empty());
    }
}
