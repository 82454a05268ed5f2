//! The Kafka wire protocol front end: [`listener`] accepts client connections,
//! [`connection_quotas`] bounds how many connections it holds,
//! [`connection`] frames and pipelines their requests, and [`api`] holds one module per Kafka
//! API (decode → ask the owning actor → encode) with the dispatch and version tables.
//! [`error`] is the Kafka error as actors report it to the front end. The inter-node
//! transport of typed messages joins this module with [control-plane].

pub mod api;
pub mod connection;
pub mod connection_quotas;
pub mod error;
pub mod listener;
pub mod request_queue;
