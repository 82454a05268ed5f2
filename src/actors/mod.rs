//! Every broker, partition replica, controller, coordination session and group coordinator is
//! an actix actor; each module here owns one actor kind and declares its messages beside it.
pub mod alter_partition;
pub mod broker;
pub mod controller;
pub mod coordination;
pub mod delayed;
pub mod group;
pub mod log_cleaner;
pub mod metadata_cache;
pub mod replica;
pub mod replication;
