//! The partition log on disk, laid out as Kafka lays it out: record batches in segments named
//! by their 20-digit base offset, sparse offset and time indexes, and checkpoint files.
pub mod producer_state;
