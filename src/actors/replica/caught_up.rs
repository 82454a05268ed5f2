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

use std::sync::Mutex;
use std::time::Instant;

use uuid::Uuid;

use crate::actors::replication::{FetchPartition, FetchedPartition};

/// Shared by a replica actor (writer) and the leader's fetch path (reader).
#[derive(Debug)]
pub struct CaughtUpFollowers {
    topic_id: Uuid,
    state: Mutex<Published>,
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
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Published> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The actor publishes its state: `leader` while it leads, and per follower the last
    /// fetched epoch of its caught-up fetch, or `None` when its next fetch must reach the
    /// actor. Times not yet folded in are kept.
    pub fn publish(
        &self,
        leader: Option<LeaderView>,
        followers: impl IntoIterator<Item = (i32, Option<i32>)>,
    ) {
        let mut state = self.lock();
        state.leader = leader;
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

    /// Nothing is answered here any more (the replica stopped or went offline).
    pub fn clear(&self) {
        let mut state = self.lock();
        state.leader = None;
        state.followers.clear();
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
