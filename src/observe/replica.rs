//! Replica state, observed: each time a replica publishes its progress, the new progress is
//! compared with the one it replaces; a change of role or leader epoch (a LeaderAndIsr made
//! it leader or follower), of the ISR size (a leader's ISR shrank or expanded) or of the
//! high-water mark is a trace event (a note over the replica's broker), and an ISR change is
//! counted for the metrics (Kafka's `IsrShrinksPerSec`, `IsrExpandsPerSec`). A change of the
//! log end offset alone is not an event: it moves on every append, and the high-water mark
//! that follows it is the state readers care about.

use tokio::sync::watch;

use crate::actors::replica::{PartitionProgress, Role};
use crate::storage::TopicPartition;
use crate::trace::event::{actor, Category, Event};
use crate::trace::{self};

/// Called by a replica each time it recomputes its progress, before publishing `next` on
/// `published` (which still holds the previous progress).
#[inline]
pub fn progress(
    broker: i32,
    tp: &TopicPartition,
    role: &Role,
    published: &watch::Sender<PartitionProgress>,
    next: &PartitionProgress,
) {
    if super::enabled() {
        let previous = *published.borrow();
        observe(broker, tp, role, &previous, next);
    }
}

fn observe(
    broker: i32,
    tp: &TopicPartition,
    role: &Role,
    previous: &PartitionProgress,
    next: &PartitionProgress,
) {
    let role_changed =
        previous.leader_epoch != next.leader_epoch || previous.is_leader != next.is_leader;
    // Kafka counts the ISR changes a leader makes within its epoch.
    let isr_changed = !role_changed && next.is_leader && previous.isr_size != next.isr_size;
    if isr_changed {
        crate::metrics::isr_changed(broker, next.isr_size < previous.isr_size);
    }
    let hwm_changed = previous.high_watermark != next.high_watermark;
    if !trace::enabled() || !(role_changed || isr_changed || hwm_changed) {
        return;
    }
    let kind = match role {
        // Opened, not yet told its role: nothing to tell.
        Role::Offline if previous.leader_epoch < 0 => return,
        Role::Offline => "ReplicaOffline",
        Role::Leader(_) if role_changed => "BecomeLeader",
        Role::Follower { .. } if role_changed => "BecomeFollower",
        _ if isr_changed => "IsrChange",
        _ => "HighWatermark",
    };
    let mut e = Event::note(Category::Replica, actor::broker(broker), kind)
        .with_partitions([(tp.topic.as_str(), tp.partition)]);
    match role {
        Role::Leader(l) => {
            e.leader = Some(broker);
            e.isr = Some(l.isr.clone());
        }
        Role::Follower { leader } => e.leader = Some(*leader),
        Role::Offline => {}
    }
    e.leader_epoch = Some(next.leader_epoch);
    e.hwm = Some(next.high_watermark);
    e.leo = Some(next.log_end_offset);
    trace::emit(e);
}
