//! Integration tests: coordination. One conformance suite runs against every backend (the
//! embedded service, `weir coordinator` in process and as a binary, and a real ZooKeeper 3.8
//! that the tests start); what bad input on the coordinator's port does; and `weir cluster`'s
//! brokers on an external service.

mod bad_input;
mod cluster;
mod conformance;
pub mod harness;
