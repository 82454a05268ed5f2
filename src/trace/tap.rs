//! A live tap on the trace hooks: the browser console ([`crate::ui`]) watches the messages as
//! they happen, without a recording to a file. While a tap is open every hook builds its
//! event (as it does for a recording) and the tap gets a copy, stamped with its own `seq` and
//! `t_us` (time since the tap opened), whatever a recording's filter keeps.
//!
//! The tap is a bounded broadcast: a subscriber that falls behind loses the oldest events
//! (it learns how many), so a burst of produce traffic costs the emitters one clone and one
//! channel push each, never a wait.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use tokio::sync::broadcast;

use super::Event;

/// Events a subscriber may fall behind by before it loses the oldest.
pub const CAPACITY: usize = 4096;

struct Tap {
    start: Instant,
    seq: AtomicU64,
    sender: broadcast::Sender<Arc<Event>>,
}

static TAP: RwLock<Option<Tap>> = RwLock::new(None);

/// A subscription to the tap; the hooks turn off again when the last one is dropped (unless
/// a recording runs).
pub struct Subscription {
    receiver: Option<broadcast::Receiver<Arc<Event>>>,
}

impl Subscription {
    /// The next event; `Err(Lagged(n))` says `n` were lost to falling behind.
    pub async fn recv(&mut self) -> Result<Arc<Event>, broadcast::error::RecvError> {
        match self.receiver.as_mut() {
            Some(r) => r.recv().await,
            None => Err(broadcast::error::RecvError::Closed),
        }
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Result<Arc<Event>, broadcast::error::TryRecvError> {
        match self.receiver.as_mut() {
            Some(r) => r.try_recv(),
            None => Err(broadcast::error::TryRecvError::Closed),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut tap = TAP.write().unwrap_or_else(|p| p.into_inner());
        drop(self.receiver.take());
        if let Some(t) = tap.as_ref() {
            if t.sender.receiver_count() == 0 {
                super::set_tapped(false);
                *tap = None;
            }
        }
    }
}

/// Opens the process's tap (the first subscriber opens it, later ones share it) and
/// subscribes to it. While any subscription lives the trace hooks are on
/// ([`super::enabled`]).
pub fn subscribe() -> Subscription {
    let mut tap = TAP.write().unwrap_or_else(|p| p.into_inner());
    let tap = tap.get_or_insert_with(|| Tap {
        start: Instant::now(),
        seq: AtomicU64::new(0),
        sender: broadcast::channel(CAPACITY).0,
    });
    super::set_tapped(true);
    Subscription {
        receiver: Some(tap.sender.subscribe()),
    }
}

/// Hands `event` to the tap's subscribers, if any.
pub(super) fn publish(event: &Event) {
    let guard = TAP.read().unwrap_or_else(|p| p.into_inner());
    let Some(tap) = guard.as_ref() else {
        return;
    };
    let mut copy = event.clone();
    copy.seq = tap.seq.fetch_add(1, Ordering::Relaxed);
    copy.t_us = tap.start.elapsed().as_micros() as u64;
    let _ = tap.sender.send(Arc::new(copy));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{emit, enabled, Category};

    #[test]
    fn a_subscriber_sees_emitted_events_without_a_recording_and_the_hooks_stop_after_it() {
        let _serial = crate::trace::TEST_RECORDING
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        assert!(!enabled());
        let mut events = subscribe();
        assert!(enabled());
        emit(Event::new(Category::Seam, "b1", "b2", "LeaderAndIsr"));
        let mut seen = Vec::new();
        while let Ok(e) = events.try_recv() {
            seen.push(e.kind.clone());
        }
        assert!(seen.iter().any(|k| k == "LeaderAndIsr"), "saw {seen:?}");
        drop(events);
        assert!(!enabled());
    }
}
