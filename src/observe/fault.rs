//! Faults, observed: [`Cluster::inject`] records each fault (crash, cut, pause, …) as an event
//! from the fault console to the broker it strikes before applying it, and a refused one with
//! the reason; the faults themselves are applied by [`Cluster::apply_fault`].

use crate::cluster::faults::Fault;
use crate::cluster::Cluster;
use crate::trace::event::{actor, Category, Event};
use crate::trace::{self};
use crate::transport::faults::Node;

fn node(n: &Node) -> String {
    match n {
        Node::Broker(id) => actor::broker(*id),
        Node::Coordination => actor::COORD.to_string(),
    }
}

/// The console command a fault is typed as, and the actor it strikes.
pub fn command(fault: &Fault) -> (String, String, &'static str) {
    match fault {
        Fault::Crash(id) => (format!("crash {id}"), actor::broker(*id), "crash"),
        Fault::Restart(id) => (format!("restart {id}"), actor::broker(*id), "restart"),
        Fault::Pause(id) => (format!("pause {id}"), actor::broker(*id), "pause"),
        Fault::Resume(id) => (format!("resume {id}"), actor::broker(*id), "resume"),
        Fault::ExpireSession(id) => (
            format!("expire-session {id}"),
            actor::broker(*id),
            "expire-session",
        ),
        Fault::Cut { from, to, both } => (
            if *both {
                format!("cut {from} {to}")
            } else {
                format!("cut {from}>{to}")
            },
            node(from),
            "cut",
        ),
        Fault::Delay { from, to, delay } => (
            format!("delay {from} {to} {}", delay.as_millis()),
            node(from),
            "delay",
        ),
        Fault::Drop { from, to, percent } => {
            (format!("drop {from} {to} {percent}"), node(from), "drop")
        }
        Fault::Heal(Some((a, b))) => (format!("heal {a} {b}"), node(a), "heal"),
        Fault::Heal(None) => ("heal all links".into(), actor::CONSOLE.to_string(), "heal"),
    }
}

impl Cluster {
    /// Injects one fault; the error says why it could not be. Recorded in the trace.
    pub async fn inject(&mut self, fault: Fault) -> Result<(), String> {
        let traced = trace::enabled().then(|| {
            let (text, target, kind) = command(&fault);
            let id = trace::next_id();
            // The label reads as the command: the kind, then its arguments.
            let arguments = text.strip_prefix(kind).unwrap_or_default().trim();
            let mut e = Event::new(Category::Fault, actor::CONSOLE, target.clone(), kind)
                .with_detail(arguments);
            e.id = Some(id);
            trace::emit(e);
            (id, target, kind)
        });
        let result = self.apply_fault(fault).await;
        if let (Some((id, target, kind)), Err(why)) = (traced, &result) {
            let mut e = Event::new(Category::Fault, target, actor::CONSOLE, kind);
            e.reply_to = Some(id);
            e.error = Some("REFUSED".into());
            e.detail = Some(why.clone());
            trace::emit(e);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn faults_are_named_as_the_console_types_them() {
        for line in [
            "crash 2",
            "restart 2",
            "pause 1",
            "resume 1",
            "expire-session 3",
            "cut 1 2",
            "cut 1>2",
            "cut 3 coord",
            "delay 1 2 250",
            "drop 2 3 12.5",
            "heal 1 2",
        ] {
            let fault: Fault = line.parse().unwrap();
            assert_eq!(command(&fault).0, line);
        }
        assert_eq!(command(&Fault::Heal(None)).0, "heal all links");
        let (_, target, kind) = command(&Fault::Delay {
            from: Node::Broker(1),
            to: Node::Broker(2),
            delay: Duration::from_millis(5),
        });
        assert_eq!((target.as_str(), kind), ("b1", "delay"));
    }
}
