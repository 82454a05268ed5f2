//! Kafka's `ConnectionQuotas`: how many connections a broker holds at once, in all and per
//! client IP. A listener asks for a [`ConnectionSlot`] as it accepts; a connection over a
//! limit is closed at once (before a byte is read from it), and the others are untouched.
//! The slot is given back when the connection's task ends, whatever ended it.
//!
//! - `max.connections` (default `i32::MAX`): every connection of the broker. As in Kafka,
//!   the inter-broker listener counts towards it but is never refused by it, so a flood of
//!   clients cannot cut a broker off its peers.
//! - `max.connections.per.ip` (default `i32::MAX`) with `max.connections.per.ip.overrides`
//!   (`host:count,...`, by IP address): every listener.
//!
//! `weir coordinator` uses the same quotas with ZooKeeper's `maxClientCnxns` (per IP).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The limits, and the connections counted against them.
#[derive(Debug)]
pub struct ConnectionQuotas {
    max_connections: usize,
    max_per_ip: usize,
    /// `max.connections.per.ip.overrides`: per-address exceptions to `max_per_ip`.
    per_ip_overrides: HashMap<IpAddr, usize>,
    /// The total and per-address counts. A std `Mutex`: held for a counter update only,
    /// never across an `.await`.
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Which listener a connection arrived on: the inter-broker one is exempt from
/// `max.connections`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    Client,
    InterBroker,
}

/// One admitted connection's place in the counts; dropping it gives the place back.
#[derive(Debug)]
pub struct ConnectionSlot {
    quotas: Arc<ConnectionQuotas>,
    ip: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut counts = self.quotas.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.per_ip.remove(&self.ip);
            }
        }
    }
}

impl ConnectionQuotas {
    pub fn new(
        max_connections: usize,
        max_per_ip: usize,
        per_ip_overrides: HashMap<IpAddr, usize>,
    ) -> Arc<Self> {
        Arc::new(Self {
            max_connections,
            max_per_ip,
            per_ip_overrides,
            counts: Mutex::new(Counts::default()),
        })
    }

    /// No limits (tests, listeners that count nothing).
    pub fn unlimited() -> Arc<Self> {
        Self::new(usize::MAX, usize::MAX, HashMap::new())
    }

    /// From `max.connections`, `max.connections.per.ip` and its overrides (validated when the
    /// config loaded; an override that does not parse here is ignored).
    pub fn from_config(config: &crate::config::BrokerConfig) -> Arc<Self> {
        let overrides = parse_overrides(&config.max_connections_per_ip_overrides)
            .unwrap_or_default()
            .into_iter()
            .collect();
        Self::new(
            config.max_connections.max(0) as usize,
            config.max_connections_per_ip.max(0) as usize,
            overrides,
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a connection from `ip`, or why it must be closed.
    pub fn try_acquire(
        self: &Arc<Self>,
        ip: IpAddr,
        listener: ListenerKind,
    ) -> Result<ConnectionSlot, String> {
        let mut counts = self.lock();
        if listener == ListenerKind::Client && counts.total >= self.max_connections {
            return Err(format!(
                "the broker holds {} connections (max.connections={})",
                counts.total, self.max_connections
            ));
        }
        let limit = self
            .per_ip_overrides
            .get(&ip)
            .copied()
            .unwrap_or(self.max_per_ip);
        let from_ip = counts.per_ip.get(&ip).copied().unwrap_or(0);
        if from_ip >= limit {
            return Err(format!(
                "{ip} holds {from_ip} connections (max.connections.per.ip={limit})"
            ));
        }
        counts.total += 1;
        *counts.per_ip.entry(ip).or_default() += 1;
        Ok(ConnectionSlot {
            quotas: self.clone(),
            ip,
        })
    }

    /// Connections held now.
    pub fn total(&self) -> usize {
        self.lock().total
    }
}

/// `max.connections.per.ip.overrides`: `host:count` pairs (Kafka allows host names; weir
/// takes IP addresses, the form a listener sees).
pub fn parse_overrides(entries: &[String]) -> Result<Vec<(IpAddr, usize)>, String> {
    entries
        .iter()
        .map(|entry| {
            let (host, count) = entry
                .rsplit_once(':')
                .ok_or_else(|| format!("{entry:?} is not host:count"))?;
            let host = host.trim().trim_start_matches('[').trim_end_matches(']');
            let ip: IpAddr = host
                .parse()
                .map_err(|_| format!("{host:?} is not an IP address"))?;
            let count: usize = count
                .trim()
                .parse()
                .map_err(|_| format!("{count:?} is not a connection count"))?;
            Ok((ip, count))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn per_ip_limit_refuses_only_that_address_and_a_closed_connection_frees_its_slot() {
        let q = ConnectionQuotas::new(usize::MAX, 2, HashMap::new());
        let a1 = q.try_acquire(A, ListenerKind::Client).unwrap();
        let _a2 = q.try_acquire(A, ListenerKind::Client).unwrap();
        let refused = q.try_acquire(A, ListenerKind::Client).unwrap_err();
        assert!(refused.contains("max.connections.per.ip=2"), "{refused}");
        let _b = q.try_acquire(B, ListenerKind::Client).unwrap();
        drop(a1);
        q.try_acquire(A, ListenerKind::Client).unwrap();
    }

    #[test]
    fn max_connections_counts_every_listener_but_never_refuses_the_inter_broker_one() {
        let q = ConnectionQuotas::new(2, usize::MAX, HashMap::new());
        let _a = q.try_acquire(A, ListenerKind::InterBroker).unwrap();
        let _b = q.try_acquire(B, ListenerKind::Client).unwrap();
        let refused = q.try_acquire(B, ListenerKind::Client).unwrap_err();
        assert!(refused.contains("max.connections=2"), "{refused}");
        let _peer = q.try_acquire(A, ListenerKind::InterBroker).unwrap();
        assert_eq!(q.total(), 3);
    }

    #[test]
    fn an_override_raises_or_lowers_one_address_limit() {
        let overrides = parse_overrides(&["10.0.0.1:0".into(), "10.0.0.2 : 3".into()]).unwrap();
        let q = ConnectionQuotas::new(usize::MAX, 1, overrides.into_iter().collect());
        assert!(q.try_acquire(A, ListenerKind::Client).is_err());
        let held: Vec<_> = (0..3)
            .map(|_| q.try_acquire(B, ListenerKind::Client).unwrap())
            .collect();
        assert!(q.try_acquire(B, ListenerKind::Client).is_err());
        drop(held);
        assert_eq!(q.total(), 0);
    }

    #[test]
    fn malformed_overrides_are_refused_with_the_entry() {
        let e = parse_overrides(&["localhost".into()]).unwrap_err();
        assert!(e.contains("localhost"), "{e}");
        let e = parse_overrides(&["10.0.0.1:many".into()]).unwrap_err();
        assert!(e.contains("many"), "{e}");
    }
}
