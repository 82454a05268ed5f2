//! Faults a running in-process cluster takes: the same list whether a test calls
//! [`Cluster::inject`] or a person types a command on `weir cluster`'s stdin.
//!
//! | command | fault |
//! |---|---|
//! | `crash N` | broker N stops as if killed: clients and peers lose it, its session is abandoned |
//! | `restart N` | broker N starts again on its files (recovering them) |
//! | `pause N` / `resume N` | broker N freezes: requests, peer messages, heartbeats wait |
//! | `cut A B` / `cut A>B` | the link between brokers A and B, both ways / one way |
//! | `cut A coord` | the link between broker A and the coordination service |
//! | `delay A B MS` | messages A → B arrive MS milliseconds late |
//! | `drop A B PERCENT` | that share of messages A → B is lost |
//! | `heal [A B]` | heal the link A–B (both ways), or every link |
//! | `expire-session N` | the coordination service expires broker N's session now |

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use super::{BrokerState, Cluster, RunningBroker};
use crate::actors::controller::actor::SessionFault;
use crate::broker_node::BrokerNode;
use crate::config::BrokerConfig;
use crate::transport::faults::Node;

/// One fault.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    Crash(i32),
    Restart(i32),
    Pause(i32),
    Resume(i32),
    /// Cut `from → to`; both directions when `both`.
    Cut {
        from: Node,
        to: Node,
        both: bool,
    },
    Delay {
        from: Node,
        to: Node,
        delay: Duration,
    },
    Drop {
        from: Node,
        to: Node,
        percent: f64,
    },
    /// Heal one link (both directions), or all of them.
    Heal(Option<(Node, Node)>),
    ExpireSession(i32),
}

impl FromStr for Fault {
    type Err = String;

    fn from_str(line: &str) -> Result<Self, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let broker = |w: Option<&&str>| -> Result<i32, String> {
            let w = w.ok_or("missing broker id")?;
            w.parse().map_err(|_| format!("`{w}` is not a broker id"))
        };
        let node = |w: &str| -> Result<Node, String> {
            if w == "coord" {
                Ok(Node::Coordination)
            } else {
                w.parse()
                    .map(Node::Broker)
                    .map_err(|_| format!("`{w}` is neither a broker id nor `coord`"))
            }
        };
        let link = |words: &[&str]| -> Result<(Node, Node, bool), String> {
            match words {
                [one] if one.contains('>') => {
                    let (a, b) = one.split_once('>').unwrap_or_default();
                    Ok((node(a)?, node(b)?, false))
                }
                [a, b, ..] => Ok((node(a)?, node(b)?, true)),
                _ => Err("expected two ends: `A B` or `A>B`".into()),
            }
        };
        match words.first().copied() {
            Some("crash") => Ok(Fault::Crash(broker(words.get(1))?)),
            Some("restart") => Ok(Fault::Restart(broker(words.get(1))?)),
            Some("pause") => Ok(Fault::Pause(broker(words.get(1))?)),
            Some("resume") => Ok(Fault::Resume(broker(words.get(1))?)),
            Some("expire-session") => Ok(Fault::ExpireSession(broker(words.get(1))?)),
            Some("cut") => {
                let (from, to, both) = link(&words[1..])?;
                Ok(Fault::Cut { from, to, both })
            }
            Some("delay") => {
                let (from, to, _) = link(&words[1..3.min(words.len())])?;
                let ms: u64 = words
                    .get(3)
                    .ok_or("missing milliseconds")?
                    .parse()
                    .map_err(|_| "milliseconds must be a whole number")?;
                Ok(Fault::Delay {
                    from,
                    to,
                    delay: Duration::from_millis(ms),
                })
            }
            Some("drop") => {
                let (from, to, _) = link(&words[1..3.min(words.len())])?;
                let percent: f64 = words
                    .get(3)
                    .ok_or("missing percent")?
                    .parse()
                    .map_err(|_| "percent must be a number")?;
                if !(0.0..=100.0).contains(&percent) {
                    return Err("percent must be between 0 and 100".into());
                }
                Ok(Fault::Drop { from, to, percent })
            }
            Some("heal") if words.len() == 1 => Ok(Fault::Heal(None)),
            Some("heal") => {
                let (a, b, _) = link(&words[1..])?;
                Ok(Fault::Heal(Some((a, b))))
            }
            Some(other) => Err(format!("unknown command `{other}`")),
            None => Err("empty command".into()),
        }
    }
}

impl RunningBroker {
    pub(super) fn new(node: BrokerNode, config: BrokerConfig) -> Self {
        Self {
            id: node.id,
            addr: node.addr,
            broker: node.broker.clone(),
            shared: node.shared.clone(),
            groups: node.groups.clone(),
            node: Arc::new(node),
            state: BrokerState::Up,
            config,
        }
    }
}

impl Cluster {
    fn running(&self, id: i32) -> Result<&RunningBroker, String> {
        let broker = self
            .broker(id)
            .ok_or_else(|| format!("there is no broker {id}"))?;
        if broker.state == BrokerState::Down {
            return Err(format!("broker {id} is down"));
        }
        Ok(broker)
    }

    fn set_state(&mut self, id: i32, state: BrokerState) {
        if let Some(b) = self.brokers.iter_mut().find(|b| b.id == id) {
            b.state = state;
        }
    }

    /// Applies one fault ([`Cluster::inject`] records it in the trace, then calls this).
    pub(crate) async fn apply_fault(&mut self, fault: Fault) -> Result<(), String> {
        tracing::info!(?fault, "injecting fault");
        let faults = self.transport.faults().clone();
        let link_check = |from: Node, to: Node| -> Result<(), String> {
            for n in [from, to] {
                if let Node::Broker(id) = n {
                    self.broker(id)
                        .ok_or_else(|| format!("there is no broker {id}"))?;
                }
            }
            if from == to {
                return Err("a link needs two different ends".into());
            }
            Ok(())
        };
        match fault {
            Fault::Crash(id) => {
                let node = self.running(id)?.node.clone();
                node.crash().await;
                // A killed process is no longer stopped: the broker that restarts on its
                // files must not inherit the pause (its peer messages would wait forever).
                faults.resume(Node::Broker(id));
                self.set_state(id, BrokerState::Down);
            }
            Fault::Restart(id) => self.restart(id).await?,
            Fault::Pause(id) => {
                let broker = self.running(id)?;
                if broker.state == BrokerState::Paused {
                    return Err(format!("broker {id} is already paused"));
                }
                broker.node.clone().pause().await?;
                self.set_state(id, BrokerState::Paused);
            }
            Fault::Resume(id) => {
                let broker = self.running(id)?;
                if broker.state != BrokerState::Paused {
                    return Err(format!("broker {id} is not paused"));
                }
                broker.node.clone().resume().await?;
                self.set_state(id, BrokerState::Up);
            }
            Fault::Cut { from, to, both } => {
                link_check(from, to)?;
                match (from, to) {
                    (Node::Broker(id), Node::Coordination)
                    | (Node::Coordination, Node::Broker(id)) => {
                        // The coordination link is one session: cutting either way cuts it.
                        self.running(id)?
                            .node
                            .clone()
                            .session_fault(SessionFault::Cut)
                            .await?;
                    }
                    _ if both => faults.cut_both(from, to),
                    _ => faults.cut(from, to),
                }
            }
            Fault::Delay { from, to, delay } => {
                link_check(from, to)?;
                faults.delay(from, to, delay);
            }
            Fault::Drop { from, to, percent } => {
                link_check(from, to)?;
                faults.drop_percent(from, to, percent);
            }
            Fault::Heal(Some((a, b))) => {
                link_check(a, b)?;
                match (a, b) {
                    (Node::Broker(id), Node::Coordination)
                    | (Node::Coordination, Node::Broker(id)) => {
                        self.running(id)?
                            .node
                            .clone()
                            .session_fault(SessionFault::Heal)
                            .await?;
                    }
                    _ => faults.heal(a, b),
                }
            }
            Fault::Heal(None) => {
                faults.heal_all();
                let up: Vec<Arc<BrokerNode>> = self
                    .brokers
                    .iter()
                    .filter(|b| b.state == BrokerState::Up)
                    .map(|b| b.node.clone())
                    .collect();
                for node in up {
                    let _ = node.session_fault(SessionFault::Heal).await;
                }
            }
            Fault::ExpireSession(id) => {
                let service = self
                    .embedded
                    .clone()
                    .ok_or("only the embedded coordination service can expire sessions")?;
                let session = self
                    .running(id)?
                    .node
                    .session_id()
                    .await
                    .ok_or_else(|| format!("broker {id} has no session"))?;
                if !service.expire_session(session).await {
                    return Err(format!(
                        "session {session:#x} of broker {id} was already gone"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Crashes broker `id` (see [`BrokerNode::crash`]).
    pub async fn crash(&mut self, id: i32) -> Result<(), String> {
        self.inject(Fault::Crash(id)).await
    }

    /// Starts a crashed broker again on its files, at its old address; returns once it
    /// serves clients (after the controller sent it the cluster's metadata). Its previous
    /// registration must expire first, as in Kafka, which takes up to the session timeout.
    pub async fn restart(&mut self, id: i32) -> Result<(), String> {
        let broker = self
            .broker(id)
            .ok_or_else(|| format!("there is no broker {id}"))?;
        if broker.state != BrokerState::Down {
            return Err(format!("broker {id} is running; crash it first"));
        }
        let (addr, config) = (broker.addr, broker.config.clone());
        let socket = std::net::TcpListener::bind(addr)
            .map_err(|e| format!("broker {id}: binding {addr}: {e}"))?;
        let node = BrokerNode::start(config.clone(), socket, &self.env)
            .await
            .map_err(|e| format!("broker {id}: {e:#}"))?;
        let restarted = RunningBroker::new(node, config);
        if let Some(b) = self.brokers.iter_mut().find(|b| b.id == id) {
            *b = restarted;
        }
        Ok(())
    }

    /// Pauses broker `id` (see [`BrokerNode::pause`]).
    pub async fn pause(&mut self, id: i32) -> Result<(), String> {
        self.inject(Fault::Pause(id)).await
    }

    pub async fn resume(&mut self, id: i32) -> Result<(), String> {
        self.inject(Fault::Resume(id)).await
    }

    /// Expires broker `id`'s coordination session now.
    pub async fn expire_session(&mut self, id: i32) -> Result<(), String> {
        self.inject(Fault::ExpireSession(id)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_commands_parse_into_faults() {
        let parse = |s: &str| s.parse::<Fault>();
        assert_eq!(parse("crash 2"), Ok(Fault::Crash(2)));
        assert_eq!(parse("restart 2"), Ok(Fault::Restart(2)));
        assert_eq!(parse("pause 1"), Ok(Fault::Pause(1)));
        assert_eq!(parse("resume 1"), Ok(Fault::Resume(1)));
        assert_eq!(parse("expire-session 3"), Ok(Fault::ExpireSession(3)));
        assert_eq!(
            parse("cut 1 2"),
            Ok(Fault::Cut {
                from: Node::Broker(1),
                to: Node::Broker(2),
                both: true
            })
        );
        assert_eq!(
            parse("cut 1>2"),
            Ok(Fault::Cut {
                from: Node::Broker(1),
                to: Node::Broker(2),
                both: false
            })
        );
        assert_eq!(
            parse("cut 3 coord"),
            Ok(Fault::Cut {
                from: Node::Broker(3),
                to: Node::Coordination,
                both: true
            })
        );
        assert_eq!(
            parse("delay 1 2 250"),
            Ok(Fault::Delay {
                from: Node::Broker(1),
                to: Node::Broker(2),
                delay: Duration::from_millis(250)
            })
        );
        assert_eq!(
            parse("drop 2 3 12.5"),
            Ok(Fault::Drop {
                from: Node::Broker(2),
                to: Node::Broker(3),
                percent: 12.5
            })
        );
        assert_eq!(parse("heal"), Ok(Fault::Heal(None)));
        assert_eq!(
            parse("heal 1 2"),
            Ok(Fault::Heal(Some((Node::Broker(1), Node::Broker(2)))))
        );
    }

    #[test]
    fn bad_console_commands_say_why() {
        for (line, why) in [
            ("", "empty command"),
            ("explode 1", "unknown command `explode`"),
            ("crash", "missing broker id"),
            ("crash x", "`x` is not a broker id"),
            ("cut 1", "expected two ends"),
            ("cut 1 moon", "`moon` is neither a broker id nor `coord`"),
            ("drop 1 2 150", "percent must be between 0 and 100"),
            ("delay 1 2", "missing milliseconds"),
        ] {
            let err = line.parse::<Fault>().unwrap_err();
            assert!(err.contains(why), "{line:?}: {err}");
        }
    }
}
