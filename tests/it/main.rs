//! weir's integration tests: one binary (each test binary relinks everything), one module per
//! area. Tests use free ports and temp dirs, never 9092-9094 or 2181, and wait on conditions
//! with deadlines instead of sleeping.

mod support;

mod chaos;
mod control_plane;
mod coordination;
mod demos;
mod full_disk;
mod hardening;
mod kafka_clients;
mod loop_disk;
mod multinode;
mod observability;
mod perf;
mod replication;
mod slow_disk;
mod storage;
mod ui;
