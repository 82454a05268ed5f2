//! The controller: the one elected broker-side decision maker (the seed's Step 10, Cases 1–4).
//! It places replicas, elects leaders from the ISR, bumps leader epochs, records every decision
//! in the coordination service with fenced (versioned) writes, and pushes LeaderAndIsr and
//! UpdateMetadata to brokers.

pub mod actor;
pub mod channel;
pub mod context;
pub mod election;
pub mod endpoint;
pub mod forwarding;
pub mod messages;
pub mod placement;
pub mod producer_ids;
pub mod zk_client;

pub use actor::{Controller, ControllerDeps, ControllerStatus, GetStatus};
