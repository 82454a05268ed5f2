//! The seam every message between brokers passes through: controller requests, replica
//! fetches, ISR proposals. In one process it delivers through actix addresses; across
//! processes it frames the same typed messages over TCP. Faults for tests and the fault
//! console act here ([`faults`]), invisible to the code that sends.
//!
//! - [`peer`]: the typed requests and responses, the [`peer::Peers`] handle senders hold,
//!   and [`peer::LocalTransport`] (one process);
//! - [`wire`]: the inter-broker protocol on TCP (the `WEIR` magic, the Hello handshake with
//!   the sender's broker id and epoch, request and response frames), over [`framing`]'s
//!   versioned rmp-serde frames (which the coordination wire uses too);
//! - [`tcp`]: the dialing side ([`tcp::TcpTransport`]: a connection per peer, reconnects with
//!   backoff and jitter, bounded in-flight requests, timeouts);
//! - [`server`]: the listening side ([`server::PeerServer`]: admits registered peers at their
//!   current broker epoch, serves requests concurrently, closes a connection on bad input).

pub mod faults;
pub mod framing;
pub mod peer;
pub mod server;
pub mod tcp;
pub mod wire;

pub use faults::{LinkFailure, LinkFaults, LinkVerdict, Node};
