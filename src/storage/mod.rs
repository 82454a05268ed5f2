//! The partition log on disk, laid out as Kafka lays it out: record batches in segments named
//! by their 20-digit base offset, sparse offset and time indexes, and checkpoint files.
//!
//! Reading order: [`batch`] (RecordBatch v2 and client validation) → [`segment`] (one `.log`
//! with its [`offset_index`] and [`time_index`]) → [`log`] (a partition replica's log,
//! Kafka's UnifiedLog) → [`log_manager`] (a broker's log dirs). [`leader_epoch`] and
//! [`checkpoint`] hold the small text files beside them. [`cleaner`] compacts
//! `cleanup.policy=compact` logs (Kafka's LogCleaner); its actor is `actors::log_cleaner`.
//! `open_handles` bounds what segments keep open in the process (`.log` descriptors, index
//! mappings).

pub mod batch;
pub mod checkpoint;
pub mod cleaner;
mod file_records;
mod index_file;
pub mod leader_epoch;
pub mod log;
pub mod log_manager;
pub mod offset_index;
pub(crate) mod open_handles;
pub mod segment;
pub mod time_index;

pub use batch::{validate_client_batches, BatchError, BatchHeader, ValidatedBatches};
pub use checkpoint::OffsetCheckpointFile;
pub use leader_epoch::LeaderEpochFileCache;
pub use log::{
    FetchDataInfo, FlushJob, LogAppendInfo, LogLoadParams, PartitionLog, StorageError,
    TopicPartition,
};
pub use log_manager::LogManager;
pub mod producer_state;
