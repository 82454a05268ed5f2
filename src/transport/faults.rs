//! The network faults an in-process cluster can inject on its links: a link between two
//! brokers (or a broker and the coordination service) can be cut in one direction or both,
//! delayed, or made to drop a fraction of messages; a paused broker's links hold every message
//! until it resumes. The transport asks [`LinkFaults::verdict`] once per message, so faults act
//! exactly where a real network would: on the wire, invisible to the sender's code.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// One end of a link: a broker, or the coordination service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Node {
    Broker(i32),
    Coordination,
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Node::Broker(id) => write!(f, "{id}"),
            Node::Coordination => write!(f, "coord"),
        }
    }
}

/// What happens to one message on a directed link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkVerdict {
    Deliver,
    /// Deliver after this long.
    Delay(Duration),
    /// Lost on the wire: the sender sees a timeout.
    Drop,
    /// The link is cut: the sender sees the peer as unreachable.
    Cut,
    /// An end is paused: hold the message until it resumes.
    Hold,
}

/// The fault settings of one directed link.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct LinkFault {
    cut: bool,
    delay: Option<Duration>,
    /// Fraction in [0, 1] of messages dropped.
    drop: f64,
}

#[derive(Debug, Default)]
struct State {
    links: BTreeMap<(Node, Node), LinkFault>,
    paused: BTreeSet<Node>,
}

/// Shared, cheap to clone; every transport of one cluster holds the same instance.
#[derive(Debug, Clone, Default)]
pub struct LinkFaults {
    /// A std Mutex: held for a map lookup, never across an await.
    state: Arc<Mutex<State>>,
    /// Wakes messages held for a paused node when it resumes.
    resumed: Arc<tokio::sync::Notify>,
}

impl LinkFaults {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// Cuts `from → to` (one direction).
    pub fn cut(&self, from: Node, to: Node) {
        self.with(|s| s.links.entry((from, to)).or_default().cut = true);
    }

    /// Cuts both directions.
    pub fn cut_both(&self, a: Node, b: Node) {
        self.cut(a, b);
        self.cut(b, a);
    }

    pub fn delay(&self, from: Node, to: Node, delay: Duration) {
        self.with(|s| s.links.entry((from, to)).or_default().delay = Some(delay));
    }

    /// Drops `percent` (0–100) of the messages on `from → to`.
    pub fn drop_percent(&self, from: Node, to: Node, percent: f64) {
        self.with(|s| {
            s.links.entry((from, to)).or_default().drop = (percent / 100.0).clamp(0.0, 1.0)
        });
    }

    /// Heals both directions between `a` and `b`.
    pub fn heal(&self, a: Node, b: Node) {
        self.with(|s| {
            s.links.remove(&(a, b));
            s.links.remove(&(b, a));
        });
    }

    /// Heals every link (pauses stay: resume them explicitly).
    pub fn heal_all(&self) {
        self.with(|s| s.links.clear());
    }

    pub fn pause(&self, node: Node) {
        self.with(|s| s.paused.insert(node));
    }

    pub fn resume(&self, node: Node) {
        self.with(|s| s.paused.remove(&node));
        self.resumed.notify_waiters();
    }

    pub fn is_paused(&self, node: Node) -> bool {
        self.with(|s| s.paused.contains(&node))
    }

    /// The fate of one message on `from → to`.
    pub fn verdict(&self, from: Node, to: Node) -> LinkVerdict {
        self.with(|s| {
            if s.paused.contains(&from) || s.paused.contains(&to) {
                return LinkVerdict::Hold;
            }
            let Some(fault) = s.links.get(&(from, to)) else {
                return LinkVerdict::Deliver;
            };
            if fault.cut {
                LinkVerdict::Cut
            } else if fault.drop > 0.0 && rand::thread_rng().gen_bool(fault.drop) {
                LinkVerdict::Drop
            } else if let Some(d) = fault.delay {
                LinkVerdict::Delay(d)
            } else {
                LinkVerdict::Deliver
            }
        })
    }

    /// Waits until neither end is paused (returns at once if neither is).
    pub async fn wait_unpaused(&self, from: Node, to: Node) {
        loop {
            let notified = self.resumed.notified();
            if !self.is_paused(from) && !self.is_paused(to) {
                return;
            }
            notified.await;
        }
    }

    /// Applies the verdict for one message: `Ok(())` once it may be delivered, `Err` with
    /// what the sender observes when it is lost.
    pub async fn pass(&self, from: Node, to: Node) -> Result<(), LinkFailure> {
        loop {
            match self.verdict(from, to) {
                LinkVerdict::Deliver => return Ok(()),
                LinkVerdict::Delay(d) => {
                    tokio::time::sleep(d).await;
                    return Ok(());
                }
                LinkVerdict::Drop => return Err(LinkFailure::Dropped),
                LinkVerdict::Cut => return Err(LinkFailure::Cut),
                LinkVerdict::Hold => self.wait_unpaused(from, to).await,
            }
        }
    }

    /// Human-readable summary for `status`.
    pub fn describe(&self) -> Vec<String> {
        self.with(|s| {
            let mut out: Vec<String> = s
                .links
                .iter()
                .map(|((a, b), f)| {
                    let mut parts = Vec::new();
                    if f.cut {
                        parts.push("cut".to_string());
                    }
                    if let Some(d) = f.delay {
                        parts.push(format!("delay {}ms", d.as_millis()));
                    }
                    if f.drop > 0.0 {
                        parts.push(format!("drop {}%", (f.drop * 100.0).round()));
                    }
                    format!("{a}>{b}: {}", parts.join(", "))
                })
                .collect();
            out.extend(s.paused.iter().map(|n| format!("{n}: paused")));
            out
        })
    }
}

/// How a lost message looks to its sender.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize,
)]
pub enum LinkFailure {
    #[error("the link is cut")]
    Cut,
    #[error("the message was dropped")]
    Dropped,
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Node = Node::Broker(1);
    const B: Node = Node::Broker(2);

    #[test]
    fn a_one_way_cut_leaves_the_other_direction_working() {
        let f = LinkFaults::new();
        f.cut(A, B);
        assert_eq!(f.verdict(A, B), LinkVerdict::Cut);
        assert_eq!(f.verdict(B, A), LinkVerdict::Deliver);
        f.heal(A, B);
        assert_eq!(f.verdict(A, B), LinkVerdict::Deliver);
    }

    #[test]
    fn drop_percent_drops_about_that_fraction() {
        let f = LinkFaults::new();
        f.drop_percent(A, B, 50.0);
        let dropped = (0..2000)
            .filter(|_| f.verdict(A, B) == LinkVerdict::Drop)
            .count();
        assert!((800..1200).contains(&dropped), "{dropped}");
        f.drop_percent(A, B, 100.0);
        assert_eq!(f.verdict(A, B), LinkVerdict::Drop);
    }

    #[test]
    fn heal_all_clears_links_but_not_pauses() {
        let f = LinkFaults::new();
        f.cut_both(A, Node::Coordination);
        f.pause(B);
        f.heal_all();
        assert_eq!(f.verdict(A, Node::Coordination), LinkVerdict::Deliver);
        assert_eq!(f.verdict(A, B), LinkVerdict::Hold);
        assert_eq!(f.describe(), vec!["2: paused".to_string()]);
    }

    #[tokio::test]
    async fn a_paused_nodes_messages_are_held_until_it_resumes() {
        let f = LinkFaults::new();
        f.pause(B);
        let held = tokio::spawn({
            let f = f.clone();
            async move { f.pass(A, B).await }
        });
        tokio::task::yield_now().await;
        assert!(!held.is_finished());
        f.resume(B);
        let outcome = tokio::time::timeout(Duration::from_secs(5), held)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(outcome, Ok(()));
    }

    #[tokio::test]
    async fn a_cut_link_fails_fast() {
        let f = LinkFaults::new();
        f.cut(A, B);
        assert_eq!(f.pass(A, B).await, Err(LinkFailure::Cut));
    }
}
