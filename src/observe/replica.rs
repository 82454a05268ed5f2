//! Replica state, observed: each time a replica publishes its progress, the role, leader
//! epoch, ISR and high-water mark are compared with what was last seen for it; a change is a
//! trace event (a note over the replica's broker) and, on a leader whose ISR moved within one
//! leader epoch, an ISR shrink or expansion for the metrics (Kafka's `IsrShrinksPerSec`,
//! `IsrExpandsPerSec`). A change of the log end offset alone is not an event: it moves on
//! every append, and the high-water mark that follows it is the state readers care about.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::actors::replica::{PartitionProgress, Role};
use crate::storage::TopicPartition;
use crate::trace::event::{actor, Category, Event};
use crate::trace::{self};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    /// `Some(None)` leader, `Some(Some(l))` follower of `l`, `None` offline.
    role: Option<Option<i32>>,
    leader_epoch: i32,
    isr: Vec<i32>,
    hwm: i64,
}

/// Last seen state by (broker, partition). A std Mutex: held for one map access.
static SEEN: Mutex<Option<HashMap<(i32, TopicPartition), Seen>>> = Mutex::new(None);

/// Called by a replica each time it recomputes its progress.
#[inline]
pub fn progress(broker: i32, tp: &TopicPartition, role: &Role, next: &PartitionProgress) {
    if super::enabled() {
        observe(broker, tp, role, next);
    }
}

fn observe(broker: i32, tp: &TopicPartition, role: &Role, next: &PartitionProgress) {
    let seen = Seen {
        role: match role {
            Role::Offline => None,
            Role::Leader(_) => Some(None),
            Role::Follower { leader } => Some(Some(*leader)),
        },
        leader_epoch: next.leader_epoch,
        isr: match role {
            Role::Leader(l) => l.isr.clone(),
            _ => Vec::new(),
        },
        hwm: next.high_watermark,
    };
    let previous = {
        let mut guard = SEEN.lock().unwrap_or_else(|p| p.into_inner());
        let map = guard.get_or_insert_with(HashMap::new);
        let key = (broker, tp.clone());
        if map.get(&key) == Some(&seen) {
            return;
        }
        map.insert(key, seen.clone())
    };
    // Kafka counts ISR changes a leader makes within its epoch.
    if let Some(before) = &previous {
        if seen.role == Some(None)
            && before.role == Some(None)
            && before.leader_epoch == seen.leader_epoch
            && before.isr != seen.isr
        {
            crate::metrics::isr_changed(broker, seen.isr.len() < before.isr.len());
        }
    }
    if !trace::enabled() {
        return;
    }
    let kind = match (&previous, seen.role) {
        // A replica opened before it has a role: nothing to tell yet.
        (None, None) => return,
        (_, None) => "ReplicaOffline",
        // First sight: the role may be new or older than the trace.
        (None, _) => "ReplicaState",
        (Some(b), r) if b.role == r && b.leader_epoch == seen.leader_epoch => {
            if b.isr != seen.isr {
                "IsrChange"
            } else {
                "HighWatermark"
            }
        }
        (_, Some(None)) => "BecomeLeader",
        (_, Some(Some(_))) => "BecomeFollower",
    };
    let mut e = Event::note(Category::Replica, actor::broker(broker), kind)
        .with_partitions([(tp.topic.as_str(), tp.partition)]);
    e.leader = match seen.role {
        Some(None) => Some(broker),
        Some(Some(l)) => Some(l),
        None => None,
    };
    e.leader_epoch = Some(seen.leader_epoch);
    if seen.role == Some(None) {
        e.isr = Some(seen.isr.clone());
    }
    e.hwm = Some(seen.hwm);
    e.leo = Some(next.log_end_offset);
    trace::emit(e);
}

/// Forgets what was seen (a new trace or metrics run starts from scratch).
pub fn reset() {
    SEEN.lock().unwrap_or_else(|p| p.into_inner()).take();
}
