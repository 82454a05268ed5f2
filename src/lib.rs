//! weir: a Kafka-compatible distributed log broker, built as an actix actor system.
//!
//! The path from a client's bytes to the disk reads top to bottom:
//! [`protocol`] (connection, one file per Kafka API) → [`actors`] (broker, partition replica,
//! controller, group coordinator, coordination service) → [`storage`] (partition log,
//! segments, indexes, checkpoints).

pub mod actors;
pub mod broker_node;
pub mod chaos;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod metrics;
pub mod observe;
#[cfg(feature = "perf")]
pub mod perf;
pub mod protocol;
pub mod storage;
pub mod trace;
pub mod transport;
pub mod ui;
pub mod znodes;
