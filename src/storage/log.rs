//! Kafka's `UnifiedLog` for one partition replica: the segments of `<log.dir>/<topic>-<p>/`,
//! the offsets that bound them (log start, log end, recovery point, high-water mark), leader
//! and follower appends, reads, truncation, DeleteRecords, retention, flushing, recovery
//! when the log is opened after an unclean shutdown, and the owner's side of compaction (how
//! dirty the log is, what a clean reads, the swap of cleaned segments; see `cleaner`).
//!
//! Offsets are assigned here and only here: the next offset is the log end offset, so an
//! offset is never reused. A batch is appended whole or not at all. Appends only write to the
//! page cache; fsync happens when `flush.messages` says so, when the owner runs a
//! [`FlushJob`] (Kafka flushes after every roll and every `flush.ms`), or on close.
//!
//! Recovery, as Kafka's `LogLoader` does it: without a clean-shutdown marker, every segment
//! holding offsets at or past the recovery point is re-read; the first bad or torn batch and
//! everything after it (later segments too) is removed and the indexes are rebuilt. Segments
//! below the recovery point are trusted unless an index is missing or not whole entries, in
//! which case it is rebuilt too. Indexes are not read at open (they are mapped on first use,
//! see `index_file`): a closed segment's entries are sanity-checked then and ignored if
//! broken; the active segment's are checked at load.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, IoSlice};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kafka_protocol::records::TimestampType;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::batch::{self, BatchError, BatchHeader, ValidatedBatches};
use super::checkpoint::sync_dir;
use super::cleaner::checkpoint::CleanerCheckpoints;
use super::cleaner::swap::{self, DeletedSegments, SwapOutcome};
use super::cleaner::{
    self, CleanTask, CleanedLog, LogToClean, SourceSegment, CLEANED_SUFFIX, DELETED_SUFFIX,
    SWAP_SUFFIX,
};
use super::leader_epoch::LeaderEpochFileCache;
use super::segment::{LogSegment, SegmentConfig, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX};
use crate::config::TopicConfig;

/// A partition of a topic. Displays as Kafka names partition directories: `topic-3`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    /// Parses a partition directory name (`topic-3`; topics may contain `-`).
    pub fn from_dir_name(name: &str) -> Option<Self> {
        let (topic, partition) = name.rsplit_once('-')?;
        let partition: i32 = partition.parse().ok()?;
        if topic.is_empty() || partition < 0 {
            return None;
        }
        Some(TopicPartition::new(topic, partition))
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// What an append did (Kafka's `LogAppendInfo`, the fields a produce response needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogAppendInfo {
    /// Offset of the first record appended; -1 when nothing was appended.
    pub first_offset: i64,
    /// Offset of the last record appended; -1 when nothing was appended.
    pub last_offset: i64,
    /// Largest batch max timestamp appended (the append time under LogAppendTime).
    pub max_timestamp: i64,
    /// The append time when the topic uses LogAppendTime, else -1.
    pub log_append_time: i64,
    pub log_start_offset: i64,
    /// Bytes written.
    pub bytes: usize,
}

/// Stored batches for a fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchDataInfo {
    /// Whole stored batches, byte for byte as stored.
    pub records: Bytes,
    /// Base offset of the first batch in `records`; `None` when empty.
    pub first_offset: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("offset {offset} is outside the log's range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        log_end: i64,
    },
    /// Data on disk is not what the log wrote (found outside recovery).
    #[error("corrupt log data: {0}")]
    Corrupt(String),
    /// An append whose offsets do not follow the log (a replication bug, not client input).
    #[error("invalid append: {0}")]
    InvalidAppend(String),
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// DeleteRecords above the high-water mark.
    #[error(
        "cannot move the log start offset to {offset}: the high-water mark is {high_watermark}"
    )]
    BeyondHighWatermark { offset: i64, high_watermark: i64 },
    /// A log dir that cannot be used: locked by another broker, meta.properties disagreeing
    /// with the configuration, a partition in two dirs.
    #[error("{0}")]
    LogDir(String),
}

impl StorageError {
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        StorageError::Io {
            context: context.into(),
            source,
        }
    }

    /// Kafka's error code for a client or replica that hit this error.
    pub fn kafka_code(&self) -> i16 {
        match self {
            StorageError::Io { .. } | StorageError::Corrupt(_) | StorageError::LogDir(_) => 56,
            StorageError::OffsetOutOfRange { .. } | StorageError::BeyondHighWatermark { .. } => 1,
            StorageError::InvalidAppend(_) => -1,
            StorageError::Batch(e) => e.kafka_code(),
        }
    }
}

/// How to open a log: the offsets the log dir's checkpoints hold for it.
#[derive(Debug, Clone, Copy)]
pub struct LogLoadParams {
    /// `recovery-point-offset-checkpoint`: offsets below it were flushed before.
    pub recovery_point: i64,
    /// `log-start-offset-checkpoint` (DeleteRecords moves it inside a segment); -1 if unknown.
    pub log_start_offset: i64,
    /// `replication-offset-checkpoint`; -1 if unknown.
    pub high_watermark: i64,
    /// The log dir had a clean-shutdown marker: nothing needs recovery.
    pub clean_shutdown: bool,
}

/// fsyncs to run off the actor thread; hand the result to [`PartitionLog::flush_completed`].
pub struct FlushJob {
    /// Duplicated handles of the `.log` files holding unflushed batches.
    files: Vec<File>,
    /// The partition directory, when segments were created or removed since the last flush.
    dir: Option<PathBuf>,
    /// Log end offset when the job was made: the recovery point once it has run.
    upto: i64,
}

impl FlushJob {
    pub fn upto(&self) -> i64 {
        self.upto
    }

    /// The blocking part: fsync of each file and of the directory.
    pub fn run(&self) -> Result<(), StorageError> {
        for f in &self.files {
            f.sync_data()
                .map_err(|e| StorageError::io("fsync segment", e))?;
        }
        if let Some(dir) = &self.dir {
            sync_dir(dir).map_err(|e| StorageError::io(format!("fsync {}", dir.display()), e))?;
        }
        Ok(())
    }
}

pub struct PartitionLog {
    /// `<log.dir>/<topic>-<partition>`.
    dir: PathBuf,
    tp: TopicPartition,
    config: TopicConfig,
    /// Segments by base offset; the last one is active. A BTreeMap because reads find the
    /// segment holding an offset by floor lookup.
    segments: BTreeMap<i64, LogSegment>,
    /// First offset a consumer may read; moved by retention and DeleteRecords.
    log_start_offset: i64,
    /// Next offset to assign.
    log_end_offset: i64,
    /// Offsets below it are on disk (fsynced); recovery starts here after a crash.
    recovery_point: i64,
    /// Set by the partition replica; retention and DeleteRecords never go past it (Kafka's
    /// UnifiedLog holds it for the same reason).
    high_watermark: i64,
    leader_epoch_cache: LeaderEpochFileCache,
    /// Wall-clock time of the last flush, for `flush.ms`.
    last_flush_ms: i64,
    /// A segment rolled since the last flush (Kafka flushes on roll).
    rolled_since_flush: bool,
    /// Segment files were created or deleted since the last flush: the directory needs an
    /// fsync too.
    dir_dirty: bool,
    /// The log dir's `cleaner-offset-checkpoint` (in memory until the log manager attaches
    /// the dir's file): where the log's dirty part starts. Truncation lowers it.
    cleaner_checkpoints: CleanerCheckpoints,
}

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn segment_config(config: &TopicConfig) -> SegmentConfig {
    SegmentConfig {
        index_interval_bytes: config.index_interval_bytes.max(0) as u64,
        max_index_bytes: (config.segment_index_bytes.max(0) as usize)
            .max(4 * super::time_index::TimeIndex::ENTRY_SIZE),
    }
}

/// Base offsets of the `.log` files in `dir`, removing index files that have no `.log`
/// (left by a crash during a roll or a deletion) and our own temp files.
fn list_segments(dir: &Path) -> Result<Vec<i64>, StorageError> {
    let mut logs = Vec::new();
    let mut indexes = Vec::new();
    let entries =
        fs::read_dir(dir).map_err(|e| StorageError::io(format!("list {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io(format!("list {}", dir.display()), e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name == format!("{}.tmp", LeaderEpochFileCache::FILE_NAME) {
            let _ = fs::remove_file(entry.path());
            continue;
        }
        let Some((stem, ext)) = name.split_once('.') else {
            continue;
        };
        let Ok(base) = stem.parse::<i64>() else {
            continue;
        };
        if !stem.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        match ext {
            LOG_SUFFIX => logs.push(base),
            INDEX_SUFFIX | TIME_INDEX_SUFFIX => indexes.push((base, entry.path())),
            _ => {}
        }
    }
    for (base, path) in indexes {
        if !logs.contains(&base) {
            warn!("removing orphaned index file {}", path.display());
            let _ = fs::remove_file(&path);
        }
    }
    logs.sort_unstable();
    Ok(logs)
}

impl PartitionLog {
    /// Opens (creating if absent) `dir` = `<log.dir>/<topic>-<partition>`; without a clean
    /// shutdown, recovers every segment past `recovery_point`.
    pub fn open(
        dir: &Path,
        tp: TopicPartition,
        config: &TopicConfig,
        recovery_point: i64,
        clean_shutdown: bool,
    ) -> Result<PartitionLog, StorageError> {
        Self::load(
            dir,
            tp,
            config,
            LogLoadParams {
                recovery_point,
                log_start_offset: -1,
                high_watermark: -1,
                clean_shutdown,
            },
        )
    }

    /// [`PartitionLog::open`] with every checkpointed offset (what the log manager uses).
    pub fn load(
        dir: &Path,
        tp: TopicPartition,
        config: &TopicConfig,
        params: LogLoadParams,
    ) -> Result<PartitionLog, StorageError> {
        fs::create_dir_all(dir)
            .map_err(|e| StorageError::io(format!("create {}", dir.display()), e))?;
        let now = now_ms();
        let seg_config = segment_config(config);
        // A crash in the middle of a cleaner's swap left old or new segments under temporary
        // names: settle on one before listing.
        swap::recover_interrupted_swaps(dir)?;
        let bases = list_segments(dir)?;

        let mut segments = BTreeMap::new();
        let mut index_broken = Vec::new();
        for &base in &bases {
            let (segment, indexes_ok) = LogSegment::open(dir, base, seg_config, now)?;
            if !indexes_ok {
                index_broken.push(base);
            }
            segments.insert(base, segment);
        }

        let recovery_point = params.recovery_point.max(0);
        // Recovery starts with the segment holding the recovery point.
        let recover_from = if params.clean_shutdown {
            i64::MAX
        } else {
            segments
                .range(..=recovery_point)
                .next_back()
                .map_or(i64::MIN, |(b, _)| *b)
        };
        // Indexes are not read at open (recovery rebuilds those past the recovery point and a
        // closed segment's are checked on first use), except the active segment's: it is about
        // to be appended to, and a broken index is better rebuilt now than ignored.
        if let Some((&base, active)) = segments.iter().next_back() {
            if base < recover_from && !index_broken.contains(&base) {
                if let Err(why) = active.sanity_check_indexes() {
                    warn!("{why}; rebuilding it from {}", active.log_path().display());
                    index_broken.push(base);
                }
            }
        }
        let mut truncated_at: Option<i64> = None;
        for (i, &base) in bases.iter().enumerate() {
            let must = base >= recover_from;
            if !must && !index_broken.contains(&base) {
                continue;
            }
            let next_base = bases.get(i + 1).copied();
            let Some(segment) = segments.get_mut(&base) else {
                continue;
            };
            let outcome = segment.recover(next_base)?;
            if must && outcome.truncated_bytes > 0 {
                truncated_at = Some(base);
                break;
            }
        }
        if let Some(base) = truncated_at {
            let later: Vec<i64> = segments.range(base + 1..).map(|(b, _)| *b).collect();
            for b in later {
                if let Some(seg) = segments.remove(&b) {
                    warn!(
                        "{tp}: deleting segment {} after the corruption in segment {base}",
                        seg.log_path().display()
                    );
                    seg.delete()?;
                }
            }
        }

        if segments.is_empty() {
            let base = params.log_start_offset.max(0);
            segments.insert(base, LogSegment::create(dir, base, seg_config, now)?);
        }

        let mut log = PartitionLog {
            dir: dir.to_path_buf(),
            tp,
            config: config.clone(),
            segments,
            log_start_offset: 0,
            log_end_offset: 0,
            recovery_point,
            high_watermark: 0,
            leader_epoch_cache: LeaderEpochFileCache::empty(dir),
            last_flush_ms: now,
            rolled_since_flush: false,
            dir_dirty: true,
            cleaner_checkpoints: CleanerCheckpoints::in_memory(),
        };
        log.load_active_segment(params.clean_shutdown)?;
        let first_base = log.first_segment_base();
        log.log_start_offset = params.log_start_offset.max(first_base);
        if log.log_start_offset > log.log_end_offset {
            // DeleteRecords moved the start past what survived recovery.
            let start = log.log_start_offset;
            log.truncate_fully_and_start_at(start)?;
        }
        log.recovery_point = if params.clean_shutdown {
            log.log_end_offset
        } else {
            recovery_point.min(log.log_end_offset)
        };
        log.high_watermark = params
            .high_watermark
            .clamp(log.log_start_offset, log.log_end_offset);
        log.load_leader_epochs()?;
        Ok(log)
    }

    /// Makes the last segment the active one and finds the log end offset. After a clean
    /// shutdown its time index is trusted for the max timestamp; otherwise the batches after
    /// its last entry are scanned.
    fn load_active_segment(&mut self, clean_shutdown: bool) -> Result<(), StorageError> {
        let Some((_, active)) = self.segments.iter_mut().next_back() else {
            return Err(StorageError::Corrupt(format!("{}: no segment", self.tp)));
        };
        active.make_active()?;
        let next = match active
            .load_timestamps(!clean_shutdown)
            .and_then(|_| active.read_next_offset())
        {
            Ok(next) => next,
            Err(StorageError::Corrupt(why)) => {
                // A tail the clean shutdown did not vouch for after all: recover it.
                warn!("{}: {why}; recovering the active segment", self.tp);
                active.recover(None)?;
                active.make_active()?;
                active.read_next_offset()?
            }
            Err(e) => return Err(e),
        };
        self.log_end_offset = next.unwrap_or(active.base_offset());
        Ok(())
    }

    /// Loads `leader-epoch-checkpoint`, rebuilding it from the batches' leader epochs when it
    /// is corrupt or missing while the log holds data, then trims it to the log's range.
    fn load_leader_epochs(&mut self) -> Result<(), StorageError> {
        let path = self.dir.join(LeaderEpochFileCache::FILE_NAME);
        let loaded = match LeaderEpochFileCache::load(&self.dir) {
            Ok(cache) if path.exists() || self.log_end_offset == self.log_start_offset => {
                Some(cache)
            }
            Ok(_) => None,
            Err(e) => {
                warn!(
                    "{}: {e}; rebuilding the leader epoch cache from the log",
                    self.tp
                );
                None
            }
        };
        self.leader_epoch_cache = match loaded {
            Some(cache) => cache,
            None => {
                let mut cache = LeaderEpochFileCache::empty(&self.dir);
                for segment in self.segments.values() {
                    let mut result = Ok(());
                    segment.scan_headers(|h| {
                        if result.is_ok() {
                            result = cache.assign(h.partition_leader_epoch, h.base_offset);
                        }
                    })?;
                    result?;
                }
                cache.flush()?;
                cache
            }
        };
        self.leader_epoch_cache
            .truncate_from_end(self.log_end_offset)?;
        self.leader_epoch_cache
            .truncate_from_start(self.log_start_offset)?;
        Ok(())
    }

    fn first_segment_base(&self) -> i64 {
        self.segments.keys().next().copied().unwrap_or(0)
    }

    fn active(&mut self) -> Result<&mut LogSegment, StorageError> {
        let tp = &self.tp;
        self.segments
            .values_mut()
            .next_back()
            .ok_or_else(|| StorageError::Corrupt(format!("{tp}: no active segment")))
    }

    pub fn topic_partition(&self) -> &TopicPartition {
        &self.tp
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &TopicConfig {
        &self.config
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    pub fn log_end_offset(&self) -> i64 {
        self.log_end_offset
    }

    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// The partition replica reports its high-water mark here (clamped to the log's range);
    /// retention and DeleteRecords stay below it.
    pub fn update_high_watermark(&mut self, hwm: i64) {
        self.high_watermark = hwm.clamp(self.log_start_offset, self.log_end_offset);
    }

    pub fn size_in_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.size()).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.segments.keys().copied().collect()
    }

    /// The epoch of the leader that wrote `offset`, if the log knows it.
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        self.leader_epoch_cache.epoch_for_offset(offset)
    }

    /// The epoch of the newest batch's leader, if the log knows any.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.leader_epoch_cache.latest_epoch()
    }

    pub fn leader_epoch_cache(&mut self) -> &mut LeaderEpochFileCache {
        &mut self.leader_epoch_cache
    }

    /// OffsetsForLeaderEpoch: `(epoch, end offset)` for `requested_epoch` (Kafka's
    /// `endOffsetForEpoch`).
    pub fn end_offset_for_epoch(&self, requested_epoch: i32) -> (i32, i64) {
        self.leader_epoch_cache
            .end_offset_for(requested_epoch, self.log_end_offset)
    }

    /// Leader append: sets baseOffset = log end offset and partitionLeaderEpoch on each batch
    /// in place (outside the CRC), the LogAppendTime if the topic says so (CRC recomputed),
    /// and appends the batches whole.
    pub fn append_as_leader(
        &mut self,
        batches: ValidatedBatches,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<LogAppendInfo, StorageError> {
        let ValidatedBatches {
            bytes, mut headers, ..
        } = batches;
        if headers.is_empty() {
            return Ok(self.empty_append_info());
        }
        let declared: usize = headers.iter().map(|h| h.total_size()).sum();
        if declared != bytes.len() || headers.iter().any(|h| h.total_size() < BatchHeader::SIZE) {
            return Err(StorageError::InvalidAppend(format!(
                "{} bytes of batches but headers describe {declared}",
                bytes.len()
            )));
        }
        let segment_bytes = self.config.segment_bytes.max(0) as usize;
        if bytes.len() > segment_bytes {
            return Err(BatchError::MessageTooLarge {
                size: bytes.len(),
                max: segment_bytes,
            }
            .into());
        }
        if let Some(accepted) = self.config.accepted_timestamps(now_ms) {
            // Kafka checks every record; a batch's base and max timestamps bound its records'
            // (a client writes deltas from the base), so one check per batch does.
            for h in &headers {
                for ts in [h.base_timestamp, h.max_timestamp] {
                    if ts != -1 && !accepted.contains(&ts) {
                        return Err(BatchError::InvalidTimestamp(format!(
                            "timestamp {ts} of the batch at offset {} is out of range: it \
                             should be within [{}, {}] (message.timestamp.before.max.ms / \
                             after.max.ms)",
                            self.log_end_offset,
                            accepted.start(),
                            accepted.end()
                        ))
                        .into());
                    }
                }
            }
        }
        let log_append_time = self.config.message_timestamp_type == "LogAppendTime";
        let first_offset = self.log_end_offset;
        let mut offset = first_offset;
        let mut position = 0;
        let mut max_timestamp = -1;
        // The stored headers, then one (header, records) pair of slices per batch: the
        // client's record bytes are written from the request as they are.
        let mut stored = Vec::with_capacity(headers.len());
        for h in headers.iter_mut() {
            h.base_offset = offset;
            h.partition_leader_epoch = leader_epoch;
            let records = &bytes[position + BatchHeader::SIZE..position + h.total_size()];
            if log_append_time {
                *h = h.with_max_timestamp(TimestampType::LogAppend, now_ms, records);
            }
            stored.push(h.encode());
            max_timestamp = max_timestamp.max(h.max_timestamp);
            offset = h.next_offset();
            position += h.total_size();
        }
        let mut parts = Vec::with_capacity(2 * headers.len());
        let mut position = 0;
        for (h, header) in headers.iter().zip(&stored) {
            parts.push(IoSlice::new(header));
            parts.push(IoSlice::new(
                &bytes[position + BatchHeader::SIZE..position + h.total_size()],
            ));
            position += h.total_size();
        }
        self.append_batches(&parts, 2, &headers, now_ms)?;
        Ok(LogAppendInfo {
            first_offset,
            last_offset: offset - 1,
            max_timestamp,
            log_append_time: if log_append_time { now_ms } else { -1 },
            log_start_offset: self.log_start_offset,
            bytes: bytes.len(),
        })
    }

    /// Follower append: batches as the leader stored them. Each must pass its CRC and start
    /// above the previous one, the first at or above the log end offset (compacted logs have
    /// gaps). A trailing partial batch is dropped, as Kafka does.
    pub fn append_as_follower(&mut self, records: Bytes) -> Result<LogAppendInfo, StorageError> {
        let mut headers = Vec::new();
        let mut position = 0;
        let mut last = self.log_end_offset - 1;
        let mut max_timestamp = -1;
        while records.len() - position >= BatchHeader::SIZE {
            let h = BatchHeader::parse(&records[position..])?;
            if position + h.total_size() > records.len() {
                break;
            }
            batch::verify_crc(&records[position..position + h.total_size()], &h)?;
            if h.last_offset_delta < 0 || h.base_offset <= last {
                return Err(StorageError::InvalidAppend(format!(
                    "{}: batch [{}, {}] does not follow offset {last}",
                    self.tp,
                    h.base_offset,
                    h.last_offset()
                )));
            }
            last = h.last_offset();
            max_timestamp = max_timestamp.max(h.max_timestamp);
            position += h.total_size();
            headers.push(h);
        }
        let Some(first) = headers.first() else {
            return Ok(self.empty_append_info());
        };
        let first_offset = first.base_offset;
        let mut parts = Vec::with_capacity(headers.len());
        let mut start = 0;
        for h in &headers {
            parts.push(IoSlice::new(&records[start..start + h.total_size()]));
            start += h.total_size();
        }
        self.append_batches(&parts, 1, &headers, now_ms())?;
        Ok(LogAppendInfo {
            first_offset,
            last_offset: last,
            max_timestamp,
            log_append_time: -1,
            log_start_offset: self.log_start_offset,
            bytes: position,
        })
    }

    fn empty_append_info(&self) -> LogAppendInfo {
        LogAppendInfo {
            first_offset: -1,
            last_offset: -1,
            max_timestamp: -1,
            log_append_time: -1,
            log_start_offset: self.log_start_offset,
            bytes: 0,
        }
    }

    /// Writes batches with assigned offsets, rolling where a segment fills up, then records
    /// their leader epochs and moves the log end offset.
    /// `parts` holds each batch's bytes as `per_batch` consecutive slices.
    fn append_batches(
        &mut self,
        parts: &[IoSlice<'_>],
        per_batch: usize,
        headers: &[BatchHeader],
        now_ms: i64,
    ) -> Result<(), StorageError> {
        debug_assert_eq!(parts.len(), per_batch * headers.len());
        let segment_bytes = self.config.segment_bytes.max(0) as u64;
        let mut i = 0;
        while i < headers.len() {
            self.maybe_roll_for(&headers[i], now_ms)?;
            let active = self.active()?;
            let base = active.base_offset();
            // Take the batches that still fit this segment (at least one).
            let mut j = i;
            let mut len = 0usize;
            while j < headers.len() {
                let h = &headers[j];
                let fits = active.size() + (len + h.total_size()) as u64 <= segment_bytes
                    && h.last_offset() - base <= i32::MAX as i64;
                if j > i && !fits {
                    break;
                }
                len += h.total_size();
                j += 1;
            }
            active.append_vectored(&parts[i * per_batch..j * per_batch], &headers[i..j])?;
            self.log_end_offset = headers[j - 1].next_offset();
            for h in &headers[i..j] {
                self.leader_epoch_cache
                    .assign(h.partition_leader_epoch, h.base_offset)?;
            }
            i = j;
        }
        if self.log_end_offset - self.recovery_point >= self.config.flush_messages {
            self.flush()?;
        }
        Ok(())
    }

    /// Kafka's `maybeRoll` before appending `next`: the active segment is full, too old,
    /// has full indexes, or cannot index `next`'s offsets relative to its base.
    fn maybe_roll_for(&mut self, next: &BatchHeader, now_ms: i64) -> Result<(), StorageError> {
        let segment_bytes = self.config.segment_bytes.max(0) as u64;
        let segment_ms = self.config.segment_ms;
        let log_end = self.log_end_offset;
        let active = self.active()?;
        let size = active.size();
        let too_big_or_old = size > 0
            && (size + next.total_size() as u64 > segment_bytes
                || active.time_waited_for_roll(now_ms, next.max_timestamp) > segment_ms);
        let roll = too_big_or_old
            || active.indexes_full()
            || next.last_offset() - active.base_offset() > i32::MAX as i64;
        if roll {
            self.roll(next.base_offset.max(log_end), now_ms)?;
        }
        Ok(())
    }

    /// `segment.ms`: rolls the active segment once it is older than the topic allows.
    pub fn maybe_roll(&mut self, now_ms: i64) -> Result<(), StorageError> {
        let segment_ms = self.config.segment_ms;
        let log_end = self.log_end_offset;
        let active = self.active()?;
        if active.size() > 0 && active.time_waited_for_roll(now_ms, now_ms) > segment_ms {
            self.roll(log_end, now_ms)?;
        }
        Ok(())
    }

    /// Closes the active segment (final time index entry, trimmed indexes) and starts a new
    /// one at `new_base`. A crash between the two steps leaves a closed segment and no new
    /// one, or a new empty one: both load correctly.
    fn roll(&mut self, new_base: i64, now_ms: i64) -> Result<(), StorageError> {
        let seg_config = segment_config(&self.config);
        let active = self.active()?;
        if active.base_offset() >= new_base && active.size() == 0 {
            return Ok(());
        }
        active.close_indexes()?;
        let segment = LogSegment::create(&self.dir, new_base, seg_config, now_ms)?;
        self.segments.insert(new_base, segment);
        self.rolled_since_flush = true;
        self.dir_dirty = true;
        info!("{}: rolled a new segment at offset {new_base}", self.tp);
        Ok(())
    }

    /// Whole batches starting with the one containing `start_offset`, up to `max_bytes`,
    /// never a batch whose last offset is >= `max_offset_exclusive` (the high-water mark gates
    /// consumers); at least one batch if `min_one` even when it exceeds `max_bytes` (KIP-74).
    /// Reads stay within one segment, as Kafka's do.
    pub fn read(
        &self,
        start_offset: i64,
        max_bytes: usize,
        max_offset_exclusive: i64,
        min_one: bool,
    ) -> Result<FetchDataInfo, StorageError> {
        if start_offset < self.log_start_offset || start_offset > self.log_end_offset {
            return Err(StorageError::OffsetOutOfRange {
                offset: start_offset,
                log_start: self.log_start_offset,
                log_end: self.log_end_offset,
            });
        }
        let empty = FetchDataInfo {
            records: Bytes::new(),
            first_offset: None,
        };
        if start_offset == self.log_end_offset || start_offset >= max_offset_exclusive {
            return Ok(empty);
        }
        let floor = self
            .segments
            .range(..=start_offset)
            .next_back()
            .map_or(i64::MIN, |(b, _)| *b);
        for segment in self.segments.range(floor..).map(|(_, s)| s) {
            if let Some((records, first_offset)) =
                segment.read(start_offset, max_bytes, max_offset_exclusive, min_one)?
            {
                return Ok(FetchDataInfo {
                    records,
                    first_offset,
                });
            }
        }
        Ok(empty)
    }

    /// ListOffsets by time: the first offset at or after the log start whose record timestamp
    /// is >= `ts`, with that timestamp; `None` when no record is that late.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, StorageError> {
        for segment in self.segments.values() {
            if segment.largest_timestamp() < ts {
                continue;
            }
            if let Some(found) = segment.find_offset_by_timestamp(ts, self.log_start_offset)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// ListOffsets MAX_TIMESTAMP (-3): the largest record timestamp and the offset of the
    /// first record carrying it; `(-1, -1)` when the log holds no timestamp.
    pub fn max_timestamp_and_offset(&self) -> (i64, i64) {
        let mut best: Option<&LogSegment> = None;
        for segment in self.segments.values() {
            let ts = segment.max_timestamp_so_far().timestamp;
            if ts >= 0 && best.is_none_or(|b| ts > b.max_timestamp_so_far().timestamp) {
                best = Some(segment);
            }
        }
        let Some(segment) = best else {
            return (-1, -1);
        };
        let max = segment.max_timestamp_so_far();
        // The index knows the batch; the record inside it needs a look at the records.
        let exact = segment
            .translate_offset(max.offset)
            .and_then(|found| match found {
                Some((position, h)) => {
                    segment.find_record(position, &h, |_, ts| ts == max.timestamp)
                }
                None => Ok(None),
            })
            .map(|found| found.map(|(offset, _)| offset));
        match exact {
            Ok(Some(offset)) => (max.timestamp, offset),
            Ok(None) => (max.timestamp, max.offset),
            Err(e) => {
                warn!(
                    "{}: {e}; answering MAX_TIMESTAMP with the batch's last offset",
                    self.tp
                );
                (max.timestamp, max.offset)
            }
        }
    }

    /// Follower truncation: removes every offset >= `offset` (the batch holding `offset` goes
    /// whole). At or past the log end no record goes, but epochs that start at the log end
    /// do (Kafka's `UnifiedLog.truncateTo`): such an epoch holds no batch here, only the
    /// entry this broker assigned when it became leader and lost the leadership before
    /// appending anything. Left in place it stays the follower's `last_fetched_epoch`, which
    /// the new leader never saw, so every fetch would answer "diverging" and the follower
    /// would never catch up.
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), StorageError> {
        if offset < 0 {
            return Err(StorageError::InvalidAppend(format!(
                "{}: cannot truncate to negative offset {offset}",
                self.tp
            )));
        }
        if offset >= self.log_end_offset {
            return self
                .leader_epoch_cache
                .truncate_from_end(self.log_end_offset);
        }
        if offset < self.first_segment_base() {
            return self.truncate_fully_and_start_at(offset);
        }
        // Before the data goes: offsets from here on will be dirty again.
        self.cleaner_checkpoints.truncate(&self.tp, offset)?;
        info!("{}: truncating to offset {offset}", self.tp);
        let later: Vec<i64> = self.segments.range(offset + 1..).map(|(b, _)| *b).collect();
        for base in later {
            if let Some(seg) = self.segments.remove(&base) {
                seg.delete()?;
                self.dir_dirty = true;
            }
        }
        let now = now_ms();
        let active = self.active()?;
        active.truncate_to(offset, now)?;
        let base = active.base_offset();
        self.log_end_offset = active.read_next_offset()?.unwrap_or(base);
        self.leader_epoch_cache
            .truncate_from_end(self.log_end_offset)?;
        self.log_start_offset = self.log_start_offset.min(self.log_end_offset);
        self.recovery_point = self.recovery_point.min(self.log_end_offset);
        self.high_watermark = self.high_watermark.min(self.log_end_offset);
        Ok(())
    }

    /// Empties the log and restarts it at `offset` (a follower far behind the leader's log
    /// start, or a log whose start moved past its end).
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<(), StorageError> {
        info!(
            "{}: emptying the log and restarting it at offset {offset}",
            self.tp
        );
        let offset = offset.max(0);
        self.cleaner_checkpoints.remove(&self.tp)?;
        for (_, seg) in std::mem::take(&mut self.segments) {
            seg.delete()?;
        }
        let seg = LogSegment::create(&self.dir, offset, segment_config(&self.config), now_ms())?;
        self.segments.insert(offset, seg);
        self.dir_dirty = true;
        self.log_start_offset = offset;
        self.log_end_offset = offset;
        self.recovery_point = offset;
        self.high_watermark = offset;
        self.leader_epoch_cache.clear()?;
        Ok(())
    }

    /// DeleteRecords: moves the log start offset up to `offset` (not past the high-water mark)
    /// and deletes the segments wholly below it. Returns the new log start offset.
    pub fn delete_records_before(&mut self, offset: i64) -> Result<i64, StorageError> {
        if offset > self.high_watermark {
            return Err(StorageError::BeyondHighWatermark {
                offset,
                high_watermark: self.high_watermark,
            });
        }
        if offset > self.log_start_offset {
            info!("{}: log start offset moves to {offset}", self.tp);
            self.log_start_offset = offset;
            self.leader_epoch_cache.truncate_from_start(offset)?;
            let start = self.log_start_offset;
            self.delete_old_segments(|_, next| next.is_some_and(|n| n <= start))?;
        }
        Ok(self.log_start_offset)
    }

    /// Kafka's retention: `retention.ms` and `retention.bytes` (when the cleanup policy
    /// includes delete), then segments wholly below the log start offset. Whole segments go,
    /// oldest first, never one holding offsets at or above the high-water mark; when every
    /// segment must go, a new empty active segment is rolled first. Returns segments deleted.
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<usize, StorageError> {
        let mut deleted = 0;
        if self.config.delete() {
            let retention_ms = self.config.retention_ms;
            if retention_ms >= 0 {
                deleted += self.delete_old_segments(|seg, _| {
                    now_ms.saturating_sub(seg.largest_timestamp()) > retention_ms
                })?;
            }
            let retention_bytes = self.config.retention_bytes;
            if retention_bytes >= 0 {
                let mut excess = self.size_in_bytes() as i64 - retention_bytes;
                deleted += self.delete_old_segments(|seg, _| {
                    if excess - seg.size() as i64 >= 0 {
                        excess -= seg.size() as i64;
                        true
                    } else {
                        false
                    }
                })?;
            }
        }
        let start = self.log_start_offset;
        deleted += self.delete_old_segments(|_, next| next.is_some_and(|n| n <= start))?;
        Ok(deleted)
    }

    /// Deletes the oldest segments while `predicate(segment, next segment's base)` holds and
    /// the segment lies wholly below the high-water mark.
    fn delete_old_segments(
        &mut self,
        mut predicate: impl FnMut(&LogSegment, Option<i64>) -> bool,
    ) -> Result<usize, StorageError> {
        let bases: Vec<i64> = self.segments.keys().copied().collect();
        let mut deletable = Vec::new();
        for (i, &base) in bases.iter().enumerate() {
            let Some(segment) = self.segments.get(&base) else {
                break;
            };
            let next = bases.get(i + 1).copied();
            let upper = next.unwrap_or(self.log_end_offset);
            let last_and_empty = next.is_none() && segment.size() == 0;
            if self.high_watermark >= upper && !last_and_empty && predicate(segment, next) {
                deletable.push(base);
            } else {
                break;
            }
        }
        if deletable.is_empty() {
            return Ok(0);
        }
        if deletable.len() == self.segments.len() {
            let log_end = self.log_end_offset;
            self.roll(log_end, now_ms())?;
        }
        for base in &deletable {
            if let Some(seg) = self.segments.remove(base) {
                info!("{}: deleting segment {}", self.tp, seg.log_path().display());
                seg.delete()?;
            }
        }
        self.dir_dirty = true;
        self.log_start_offset = self.log_start_offset.max(self.first_segment_base());
        self.leader_epoch_cache
            .truncate_from_start(self.log_start_offset)?;
        Ok(deletable.len())
    }

    /// The log dir's cleaner checkpoint this log reads and updates.
    pub fn cleaner_checkpoints(&self) -> &CleanerCheckpoints {
        &self.cleaner_checkpoints
    }

    /// Hands the log its dir's `cleaner-offset-checkpoint` (the log manager does, after
    /// opening it). An entry past the log end (recovery cut the log below it) is dropped:
    /// the whole log counts as dirty again, as Kafka resets it.
    pub fn attach_cleaner_checkpoints(
        &mut self,
        checkpoints: CleanerCheckpoints,
    ) -> Result<(), StorageError> {
        if let Some(offset) = checkpoints.get(&self.tp) {
            if offset > self.log_end_offset {
                warn!(
                    "{}: cleaner checkpoint {offset} is past the log end {}; cleaning from the start",
                    self.tp, self.log_end_offset
                );
                checkpoints.remove(&self.tp)?;
            }
        }
        self.cleaner_checkpoints = checkpoints;
        Ok(())
    }

    /// Kafka's `cleanableOffsets` and `LogToClean` for a compacted log: where the dirty part
    /// starts and ends and how many bytes lie on each side. `None` for a log that is not
    /// compacted or has no closed segment below the high-water mark.
    ///
    /// The first uncleanable offset is the smallest of the high-water mark (Kafka's last
    /// stable offset), the active segment's base and, with `min.compaction.lag.ms`, the base
    /// of the first dirty segment holding a record younger than that; it is then rounded down
    /// to the base of the segment holding it, so only whole closed segments are cleaned.
    pub fn log_to_clean(&self, now_ms: i64) -> Result<Option<LogToClean>, StorageError> {
        if !self.config.compact() {
            return Ok(None);
        }
        let active_base = self.segments.keys().next_back().copied().unwrap_or(0);
        let first_dirty = match self.cleaner_checkpoints.get(&self.tp) {
            Some(offset) if offset >= self.log_start_offset && offset <= self.log_end_offset => {
                offset
            }
            _ => self.log_start_offset,
        };
        let mut uncleanable = self.high_watermark.min(active_base);
        let min_lag = self.config.min_compaction_lag_ms;
        let dirty_from = self
            .segments
            .range(..=first_dirty)
            .next_back()
            .map_or(first_dirty, |(b, _)| *b);
        if min_lag > 0 {
            let horizon = now_ms.saturating_sub(min_lag);
            if let Some((base, _)) = self
                .segments
                .range(dirty_from..active_base)
                .find(|(_, s)| s.largest_timestamp() > horizon)
            {
                uncleanable = uncleanable.min(*base);
            }
        }
        let first_uncleanable = self
            .segments
            .range(..=uncleanable)
            .next_back()
            .map_or(active_base, |(b, _)| *b);
        let clean_bytes = self
            .segments
            .range(..first_dirty)
            .map(|(_, s)| s.size())
            .sum();
        let cleanable_from = self
            .segments
            .range(..=first_dirty.min(first_uncleanable))
            .next_back()
            .map_or(first_dirty, |(b, _)| *b);
        // A dirty part starting at or past the uncleanable offset (the high-water mark went
        // down, on a new leader) has nothing a clean could map.
        let cleanable_bytes = if first_dirty >= first_uncleanable {
            0
        } else {
            self.segments
                .range(cleanable_from..first_uncleanable)
                .map(|(_, s)| s.size())
                .sum()
        };
        let need_compaction_now = self.max_compaction_delay(dirty_from, active_base, now_ms)? > 0;
        Ok(Some(LogToClean {
            tp: self.tp.clone(),
            first_dirty_offset: first_dirty,
            first_uncleanable_offset: first_uncleanable,
            clean_bytes,
            cleanable_bytes,
            min_cleanable_ratio: self.config.min_cleanable_dirty_ratio,
            need_compaction_now,
        }))
    }

    /// Kafka's `maxCompactionDelay`: how long past `max.compaction.lag.ms` the oldest dirty
    /// closed segment's first batch is (0 when none is).
    fn max_compaction_delay(
        &self,
        dirty_from: i64,
        active_base: i64,
        now_ms: i64,
    ) -> Result<i64, StorageError> {
        let max_lag = self.config.max_compaction_lag_ms.max(0);
        if max_lag == i64::MAX {
            return Ok(0);
        }
        let clean_until = now_ms.saturating_sub(max_lag);
        let mut earliest = i64::MAX;
        for (_, segment) in self.segments.range(dirty_from..active_base) {
            if let Some(ts) = segment.first_batch_timestamp()? {
                if ts > 0 {
                    earliest = earliest.min(ts);
                }
            }
        }
        Ok(if earliest < clean_until {
            clean_until - earliest
        } else {
            0
        })
    }

    /// What a clean of this log needs, off this thread: the closed segments below the first
    /// uncleanable offset, each with a duplicated descriptor and its generation.
    /// `active_producers` maps each active idempotent producer to the last offset it wrote.
    pub fn prepare_clean(
        &self,
        now_ms: i64,
        active_producers: HashMap<i64, i64>,
    ) -> Result<Option<CleanTask>, StorageError> {
        let Some(info) = self.log_to_clean(now_ms)? else {
            return Ok(None);
        };
        let bases: Vec<i64> = self
            .segments
            .range(..info.first_uncleanable_offset)
            .map(|(b, _)| *b)
            .collect();
        if bases.is_empty() {
            return Ok(None);
        }
        let mut segments = Vec::with_capacity(bases.len());
        for (i, base) in bases.iter().enumerate() {
            let Some(segment) = self.segments.get(base) else {
                continue;
            };
            let next_base = bases
                .get(i + 1)
                .copied()
                .unwrap_or(info.first_uncleanable_offset);
            let dirty_position =
                if *base <= info.first_dirty_offset && info.first_dirty_offset < next_base {
                    segment
                        .translate_offset(info.first_dirty_offset)?
                        .map_or(segment.size(), |(position, _)| position)
                } else {
                    0
                };
            segments.push(SourceSegment {
                base_offset: *base,
                next_base,
                size: segment.size(),
                generation: segment.generation(),
                file: segment.try_clone_log_file()?,
                index_bytes: segment.index_sizes(),
                dirty_position,
                last_modified: segment.last_modified(),
            });
        }
        Ok(Some(CleanTask {
            tp: self.tp.clone(),
            dir: self.dir.clone(),
            first_dirty_offset: info.first_dirty_offset,
            first_uncleanable_offset: info.first_uncleanable_offset,
            segments,
            segment_config: segment_config(&self.config),
            segment_bytes: self.config.segment_bytes.max(0) as u64,
            max_index_bytes: segment_config(&self.config).max_index_bytes,
            delete_retention_ms: self.config.delete_retention_ms,
            active_producers,
            now_ms,
        }))
    }

    /// Swaps a clean's segments in, the short step on the log's owner (Kafka's
    /// `replaceSegments`), and moves the cleaner checkpoint to the clean's end offset.
    ///
    /// Nothing is swapped, and the cleaned files are removed, when the log changed under the
    /// clean: a segment it read has another generation now, or is gone without retention
    /// having deleted it (it is not below the first segment), or a cleaned segment would
    /// replace some but not all of the segments it covers. Segments retention deleted whole
    /// are simply not swapped back.
    pub fn replace_cleaned_segments(
        &mut self,
        cleaned: &CleanedLog,
    ) -> Result<SwapOutcome, StorageError> {
        self.replace_cleaned_segments_with(cleaned, &mut || true)
    }

    /// [`PartitionLog::replace_cleaned_segments`] asking `proceed` before every file rename;
    /// `false` stops there as a crash would ([`SwapOutcome::Interrupted`]). The crash tests'
    /// seam.
    pub fn replace_cleaned_segments_with(
        &mut self,
        cleaned: &CleanedLog,
        proceed: &mut dyn FnMut() -> bool,
    ) -> Result<SwapOutcome, StorageError> {
        let discard = |why: String| {
            cleaner::discard_cleaned(&self.dir, &cleaned.groups);
            info!("{}: discarding a clean: {why}", self.tp);
            Ok(SwapOutcome::Discarded(why))
        };
        if cleaned.dir != self.dir {
            return discard(format!("it was made for {}", cleaned.dir.display()));
        }
        let first_base = self.first_segment_base();
        let active_base = self.segments.keys().next_back().copied().unwrap_or(0);
        for &(base, generation) in &cleaned.read_segments {
            match self.segments.get(&base) {
                Some(s) if s.generation() == generation && base != active_base => {}
                None if base < first_base => {}
                _ => return discard(format!("segment {base} changed while it was cleaned")),
            }
        }
        let mut groups = Vec::new();
        for group in &cleaned.groups {
            let present = group
                .replaces
                .iter()
                .filter(|(b, _)| self.segments.contains_key(b))
                .count();
            if present == 0 {
                continue;
            }
            if present != group.replaces.len() {
                return discard(format!(
                    "retention deleted part of the segments cleaned into {}",
                    group.base_offset
                ));
            }
            groups.push(group);
        }
        let seg_config = segment_config(&self.config);
        let now = now_ms();
        let mut opened = Vec::with_capacity(groups.len());
        for group in &groups {
            let path = super::segment::segment_file_with(
                &self.dir,
                group.base_offset,
                LOG_SUFFIX,
                CLEANED_SUFFIX,
            );
            let ours = fs::metadata(&path)
                .map(|m| {
                    use std::os::unix::fs::MetadataExt;
                    (m.dev(), m.ino()) == group.file_id
                })
                .unwrap_or(false);
            if !ours {
                return discard(format!(
                    "{} is not the file the clean wrote",
                    path.display()
                ));
            }
            let (mut segment, indexes_ok) = match LogSegment::open_with_suffix(
                &self.dir,
                group.base_offset,
                seg_config,
                now,
                CLEANED_SUFFIX,
            ) {
                Ok(opened) => opened,
                Err(e) => return discard(format!("cannot open the cleaned segment: {e}")),
            };
            if !indexes_ok {
                let next = self
                    .segments
                    .range(group.replaces.last().map_or(group.base_offset, |r| r.0) + 1..)
                    .next()
                    .map(|(b, _)| *b);
                segment.recover(next)?;
            }
            opened.push((*group, segment));
        }

        let bytes_before = self.size_in_bytes();
        let mut deleted = Vec::new();
        let mut swapped = 0;
        for (group, mut segment) in opened {
            let base = group.base_offset;
            match segment.rename_files(&self.dir, CLEANED_SUFFIX, SWAP_SUFFIX, proceed) {
                Ok(true) => {}
                Ok(false) => return Ok(SwapOutcome::Interrupted),
                Err(e) => {
                    // Before the commit point: the old segments stand; drop the new files.
                    drop(segment);
                    for extra in [CLEANED_SUFFIX, SWAP_SUFFIX] {
                        for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
                            let _ = fs::remove_file(super::segment::segment_file_with(
                                &self.dir, base, suffix, extra,
                            ));
                        }
                    }
                    return Err(e);
                }
            }
            // Committed: from here a crash completes the swap on the next open.
            let mut olds: Vec<LogSegment> = group
                .replaces
                .iter()
                .filter_map(|(b, _)| self.segments.remove(b))
                .collect();
            let mut result = Ok(true);
            for old in olds.iter_mut() {
                result = old.rename_files(&self.dir, "", DELETED_SUFFIX, proceed);
                if !matches!(result, Ok(true)) {
                    break;
                }
            }
            if matches!(result, Ok(true)) {
                result = segment.rename_files(&self.dir, SWAP_SUFFIX, "", proceed);
            }
            match result {
                Ok(true) => {}
                Ok(false) => return Ok(SwapOutcome::Interrupted),
                Err(e) => {
                    // The files now say "new segment" to the next open; until then the old
                    // segments' descriptors still serve the same records.
                    for old in olds {
                        self.segments.insert(old.base_offset(), old);
                    }
                    self.dir_dirty = true;
                    return Err(StorageError::Corrupt(format!(
                        "{}: swapping in cleaned segment {base} failed after its commit point \
                         ({e}); the next open completes it",
                        self.tp
                    )));
                }
            }
            self.segments.insert(base, segment);
            deleted.extend(olds);
            swapped += 1;
            self.dir_dirty = true;
        }
        self.cleaner_checkpoints
            .advance(&self.tp, cleaned.end_offset);
        Ok(SwapOutcome::Swapped {
            segments: swapped,
            bytes_before,
            bytes_after: self.size_in_bytes(),
            deleted: DeletedSegments(deleted),
        })
    }

    pub fn update_config(&mut self, config: &TopicConfig) {
        self.config = config.clone();
        let seg_config = segment_config(config);
        for segment in self.segments.values_mut() {
            segment.set_config(seg_config);
        }
    }

    /// Whether a flush is due: a segment rolled, or `flush.ms` passed, with data unflushed.
    pub fn needs_flush(&self, now_ms: i64) -> bool {
        self.log_end_offset > self.recovery_point
            && (self.rolled_since_flush
                || now_ms.saturating_sub(self.last_flush_ms) >= self.config.flush_ms)
    }

    /// The fsyncs a flush needs, to run off the actor thread ([`FlushJob::run`]), then
    /// [`PartitionLog::flush_completed`].
    pub fn flush_job(&self) -> Result<FlushJob, StorageError> {
        let floor = self
            .segments
            .range(..=self.recovery_point)
            .next_back()
            .map_or(i64::MIN, |(b, _)| *b);
        let files = self
            .segments
            .range(floor..)
            .map(|(_, s)| s.try_clone_log_file())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(FlushJob {
            files,
            dir: self.dir_dirty.then(|| self.dir.clone()),
            upto: self.log_end_offset,
        })
    }

    /// A [`FlushJob`] ran: offsets below its `upto` are on disk.
    pub fn flush_completed(&mut self, job: &FlushJob, now_ms: i64) -> Result<(), StorageError> {
        self.leader_epoch_cache.flush()?;
        if job.upto > self.recovery_point {
            self.recovery_point = job.upto.min(self.log_end_offset);
        }
        if job.dir.is_some() {
            self.dir_dirty = false;
        }
        self.rolled_since_flush = false;
        self.last_flush_ms = now_ms;
        Ok(())
    }

    /// fsync of every segment holding unflushed data, the directory and the leader epoch
    /// checkpoint; the recovery point becomes the log end offset. Blocking: callers run it
    /// off the actor thread (or use [`PartitionLog::flush_job`]).
    pub fn flush(&mut self) -> Result<(), StorageError> {
        let floor = self
            .segments
            .range(..=self.recovery_point)
            .next_back()
            .map_or(i64::MIN, |(b, _)| *b);
        for segment in self.segments.range(floor..).map(|(_, s)| s) {
            segment.flush()?;
        }
        if self.dir_dirty {
            sync_dir(&self.dir)
                .map_err(|e| StorageError::io(format!("fsync {}", self.dir.display()), e))?;
            self.dir_dirty = false;
        }
        self.leader_epoch_cache.flush()?;
        self.recovery_point = self.log_end_offset;
        self.rolled_since_flush = false;
        self.last_flush_ms = now_ms();
        Ok(())
    }

    /// Clean close: flush, then trim the active segment's indexes so the next open trusts
    /// them without a scan.
    pub fn close(mut self) -> Result<(), StorageError> {
        self.flush()?;
        self.active()?.close_indexes()?;
        Ok(())
    }

    /// Removes the partition directory (renamed aside first, so a crash mid-delete leaves a
    /// `-delete` directory the log manager finishes removing, not a half-empty log).
    pub fn delete(self) -> Result<(), StorageError> {
        let dir = self.dir.clone();
        self.cleaner_checkpoints.remove(&self.tp)?;
        drop(self);
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("log");
        let aside = dir.with_file_name(format!("{name}.{}-delete", uuid::Uuid::new_v4().simple()));
        let target = match fs::rename(&dir, &aside) {
            Ok(()) => aside,
            Err(_) => dir,
        };
        fs::remove_dir_all(&target)
            .map_err(|e| StorageError::io(format!("delete {}", target.display()), e))
    }
}

impl fmt::Debug for PartitionLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionLog")
            .field("tp", &self.tp)
            .field("dir", &self.dir)
            .field("log_start_offset", &self.log_start_offset)
            .field("log_end_offset", &self.log_end_offset)
            .field("recovery_point", &self.recovery_point)
            .field("high_watermark", &self.high_watermark)
            .field("segments", &self.segments.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::batch::tests::client_batch;
    use crate::storage::batch::validate_client_batches;
    use kafka_protocol::records::Compression;

    fn small_config() -> TopicConfig {
        TopicConfig {
            segment_bytes: 1024,
            index_interval_bytes: 128,
            segment_index_bytes: 1024,
            ..TopicConfig::default()
        }
    }

    fn produce(log: &mut PartitionLog, records: usize, ts: i64) -> LogAppendInfo {
        let v = validate_client_batches(
            client_batch(records, ts, Compression::None, false),
            1 << 20,
            false,
        )
        .unwrap();
        log.append_as_leader(v, 0, ts).unwrap()
    }

    #[test]
    fn create_time_records_outside_the_topics_timestamp_bounds_are_refused_and_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let config = TopicConfig::default()
            .with_overrides([
                ("message.timestamp.before.max.ms", "3600000"),
                ("message.timestamp.after.max.ms", "60000"),
            ])
            .unwrap();
        let mut log = PartitionLog::open(
            &dir.path().join("t-0"),
            TopicPartition::new("t", 0),
            &config,
            0,
            false,
        )
        .unwrap();
        let now = 1_700_000_000_000;
        let append = |log: &mut PartitionLog, ts: i64| {
            let v = validate_client_batches(
                client_batch(2, ts, Compression::None, false),
                1 << 20,
                false,
            )
            .unwrap();
            log.append_as_leader(v, 0, now)
        };
        for too_far in [now - 2 * 3_600_000, now + 120_000] {
            let err = append(&mut log, too_far).unwrap_err();
            assert_eq!(err.kafka_code(), 32, "INVALID_TIMESTAMP: {err}");
            assert_eq!(log.log_end_offset(), 0, "nothing stored");
        }
        append(&mut log, now - 1_000).unwrap();
        append(&mut log, now + 30_000).unwrap();
        assert_eq!(log.log_end_offset(), 4);
        // The older key bounds both sides.
        let config = TopicConfig::default()
            .with_overrides([("message.timestamp.difference.max.ms", "1000")])
            .unwrap();
        assert_eq!(
            config.accepted_timestamps(now),
            Some(now - 1000..=now + 1000)
        );
        let log_append = TopicConfig::default()
            .with_overrides([("message.timestamp.type", "LogAppendTime")])
            .unwrap();
        assert_eq!(log_append.accepted_timestamps(now), None);
        assert!(TopicConfig::default()
            .with_overrides([("remote.storage.enable", "true")])
            .is_err());
    }

    #[test]
    fn a_log_can_move_to_its_actors_thread() {
        fn assert_send<T: Send + 'static>() {}
        assert_send::<PartitionLog>();
        assert_send::<FlushJob>();
        assert_send::<StorageError>();
    }

    #[test]
    fn topic_partition_names_its_directory_like_kafka() {
        let tp = TopicPartition::new("my-topic", 3);
        assert_eq!(tp.to_string(), "my-topic-3");
        assert_eq!(TopicPartition::from_dir_name("my-topic-3"), Some(tp));
        assert_eq!(TopicPartition::from_dir_name("nodash"), None);
        assert_eq!(TopicPartition::from_dir_name("t-x"), None);
        assert_eq!(TopicPartition::from_dir_name("-1"), None);
    }

    #[test]
    fn leader_assigns_contiguous_offsets_from_the_log_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(
            &dir.path().join("t-0"),
            TopicPartition::new("t", 0),
            &TopicConfig::default(),
            0,
            false,
        )
        .unwrap();
        let a = produce(&mut log, 3, 100);
        let b = produce(&mut log, 2, 200);
        assert_eq!((a.first_offset, a.last_offset), (0, 2));
        assert_eq!((b.first_offset, b.last_offset), (3, 4));
        assert_eq!(log.log_end_offset(), 5);
        let read = log.read(3, 1 << 20, i64::MAX, true).unwrap();
        let h = BatchHeader::parse(&read.records).unwrap();
        assert_eq!((h.base_offset, h.partition_leader_epoch), (3, 0));
        batch::verify_crc(&read.records, &h).unwrap();
    }

    #[test]
    fn segments_roll_at_segment_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(
            &dir.path().join("t-0"),
            TopicPartition::new("t", 0),
            &small_config(),
            0,
            false,
        )
        .unwrap();
        for i in 0..20 {
            produce(&mut log, 5, 1000 + i);
        }
        assert!(log.segment_count() > 2, "{}", log.segment_count());
        for (i, base) in log.segment_base_offsets().iter().enumerate() {
            let name = format!("{base:020}.log");
            let len = fs::metadata(log.dir().join(&name)).unwrap().len();
            assert!(len <= 1024, "{name} has {len} bytes");
            if i > 0 {
                assert!(len > 0);
            }
        }
        for offset in 0..log.log_end_offset() {
            let r = log.read(offset, 1, i64::MAX, true).unwrap();
            let h = BatchHeader::parse(&r.records).unwrap();
            assert!(h.base_offset <= offset && offset <= h.last_offset());
        }
    }

    #[test]
    fn log_append_time_topics_stamp_the_append_time() {
        let dir = tempfile::tempdir().unwrap();
        let config = TopicConfig {
            message_timestamp_type: "LogAppendTime".into(),
            ..TopicConfig::default()
        };
        let mut log = PartitionLog::open(
            &dir.path().join("t-0"),
            TopicPartition::new("t", 0),
            &config,
            0,
            false,
        )
        .unwrap();
        let v =
            validate_client_batches(client_batch(2, 5, Compression::Gzip, false), 1 << 20, false)
                .unwrap();
        let info = log.append_as_leader(v, 1, 77_000).unwrap();
        assert_eq!(info.log_append_time, 77_000);
        let r = log.read(0, 1 << 20, i64::MAX, true).unwrap();
        let h = BatchHeader::parse(&r.records).unwrap();
        assert_eq!(h.timestamp_type(), TimestampType::LogAppend);
        assert_eq!(h.max_timestamp, 77_000);
        batch::verify_crc(&r.records, &h).unwrap();
    }

    #[test]
    fn reads_outside_the_log_are_out_of_range() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(
            &dir.path().join("t-0"),
            TopicPartition::new("t", 0),
            &TopicConfig::default(),
            0,
            false,
        )
        .unwrap();
        produce(&mut log, 3, 0);
        let err = log.read(4, 100, i64::MAX, true).unwrap_err();
        assert_eq!(err.kafka_code(), 1);
        assert!(log.read(3, 100, i64::MAX, true).unwrap().records.is_empty());
        assert!(
            log.read(0, 100, 0, true).unwrap().records.is_empty(),
            "gated by the HWM"
        );
    }
}
