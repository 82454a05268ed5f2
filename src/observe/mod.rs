//! Where the running system is observed: one hook per place the seed's flows pass through,
//! each feeding the message trace ([`crate::trace`]) and, where operators watch it, the
//! metrics ([`crate::metrics`]).
//!
//! | hook | observes | called from |
//! |---|---|---|
//! | [`seam::TracingTransport`] | every inter-broker request and answer | wraps the broker's `PeerTransport` |
//! | [`coord`] | coordination requests, watch events, session states | `CoordinationClient::call`, the controller's session stream |
//! | [`controller`] | elections, broker changes, placements, leader and ISR decisions | the controller actor |
//! | [`client`] | Kafka client requests by API and partition; request rates, latencies, bytes | the front end's dispatch |
//! | [`replica`] | role, leader epoch, ISR, high-water mark; ISR shrinks and expansions | the replica's progress update |
//! | [`fault`] | injected faults | `Cluster::inject` |
//!
//! Each hook is an `#[inline]` function whose first act is one relaxed atomic load
//! ([`enabled`]); everything else happens out of line, only while a trace or the metrics run.

pub mod client;
pub mod controller;
pub mod coord;
pub mod fault;
pub mod replica;
pub mod seam;

/// Whether anything observes: a trace records or a metrics endpoint serves.
#[inline(always)]
pub fn enabled() -> bool {
    crate::trace::enabled() || crate::metrics::enabled()
}
