//! The seam every message between brokers passes through: controller requests, replica
//! fetches, ISR proposals. In one process it delivers through actix addresses; across
//! processes it frames the same typed messages over TCP. Faults for tests and the fault
//! console act here ([`faults`]), invisible to the code that sends.

pub mod faults;
pub mod framing;
pub mod peer;
pub mod server;
pub mod tcp;
pub mod wire;

pub use faults::{LinkFailure, LinkFaults, LinkVerdict, Node};
