//! Kafka's `LogSegment`: one `.log` of whole batches plus its `.index` and `.timeindex`, all
//! named by the segment's base offset in 20 digits (`00000000000000000000.log`). The last
//! segment of a log is active (appended to, indexes preallocated); the others are closed and
//! immutable (indexes trimmed).
//!
//! Recovery ([`LogSegment::recover`]) re-reads the `.log` from the start, checks every batch
//! (sane lengths, CRC-32C, increasing offsets), cuts the file at the first bad or torn batch and
//! rebuilds both indexes from what is left.

use std::cell::Cell;
use std::collections::VecDeque;
use std::io;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tracing::warn;

use super::batch::{self, BatchHeader};
use super::file_records::{FileRecords, ScanError};
use super::log::StorageError;
use super::offset_index::OffsetIndex;
use super::time_index::{TimeIndex, TimestampOffset};

/// Read-ahead for index-guided scans: an index entry is at most ~`index.interval.bytes` away.
const SCAN_CHUNK: usize = 8 * 1024;
/// Read-ahead for recovery, which reads every byte once.
const RECOVERY_CHUNK: usize = 4 * 1024 * 1024;

/// Kafka's "no timestamp yet" value for a segment's max timestamp.
const UNKNOWN_TIMESTAMP: TimestampOffset = TimestampOffset {
    timestamp: -1,
    offset: -1,
};

pub const LOG_SUFFIX: &str = "log";
pub const INDEX_SUFFIX: &str = "index";
pub const TIME_INDEX_SUFFIX: &str = "timeindex";

/// `<dir>/<base offset, 20 digits>.<suffix>`.
pub fn segment_file(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{suffix}"))
}

/// `<dir>/<base offset, 20 digits>.<suffix><extra>`: a segment file in a cleaner state
/// (`extra` = `.cleaned`, `.swap` or `.deleted`, as Kafka names them).
pub fn segment_file_with(dir: &Path, base_offset: i64, suffix: &str, extra: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{suffix}{extra}"))
}

/// Source of [`LogSegment::generation`]: process-wide, so no two segment incarnations share
/// one, even across logs.
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

fn next_generation() -> u64 {
    NEXT_GENERATION.fetch_add(1, Ordering::Relaxed)
}

/// The index settings a segment needs (from the topic config).
#[derive(Debug, Clone, Copy)]
pub struct SegmentConfig {
    /// `index.interval.bytes`: bytes of batches between offset index entries.
    pub index_interval_bytes: u64,
    /// `segment.index.bytes`: preallocated size of an active segment's indexes.
    pub max_index_bytes: usize,
}

/// What recovery found in one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryOutcome {
    /// Bytes cut off the end of the `.log` (0 when every batch was good).
    pub truncated_bytes: u64,
    /// Offset after the last good batch, `None` when no batch is left.
    pub next_offset: Option<i64>,
}

pub struct LogSegment {
    /// First offset this segment may hold; its file names.
    base_offset: i64,
    log: FileRecords,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    config: SegmentConfig,
    /// Bytes appended since the last offset index entry (Kafka's `bytesSinceLastIndexEntry`).
    bytes_since_last_index_entry: u64,
    /// Largest batch max timestamp and that batch's last offset: retention by time, the
    /// time index, ListOffsets MAX_TIMESTAMP.
    max_timestamp_so_far: Cell<TimestampOffset>,
    /// The segment was opened from disk and [`LogSegment::max_timestamp_so_far`] has not been
    /// asked yet: it is the time index's last entry (a closed segment's final entry), read on
    /// first need so that opening a segment does not map its time index (Kafka's lazy
    /// `maxTimestampAndOffsetSoFar`).
    max_timestamp_unread: Cell<bool>,
    /// Max timestamp of the first batch: `segment.ms` measures a segment's age from it
    /// (Kafka's `rollingBasedTimestamp`). `None` while empty.
    rolling_base_timestamp: Option<i64>,
    /// Wall-clock creation time, the age of a segment whose batches carry no timestamps.
    created_ms: i64,
    /// Identifies this incarnation of the segment's content: new on create and open, renewed
    /// when the segment is truncated or recovered. The log cleaner reads closed segments off
    /// the owning actor and swaps its result in only if every segment it read still has the
    /// generation it saw (a base offset alone does not say the bytes are the same).
    generation: u64,
    /// The last batches appended, with their positions, newest last: where a follower's
    /// next fetch (or a consumer's) starts, found without an index lookup and a scan of the
    /// file (a read syscall per fetch). Only batches appended to this incarnation; emptied
    /// when the content changes under it (truncation, recovery).
    recent: VecDeque<(u64, BatchHeader)>,
}

/// How many appended batches [`LogSegment::recent`] remembers: a fetch lags the log end by
/// at most a few batches when it is served from here.
const RECENT_BATCHES: usize = 16;

impl std::fmt::Debug for LogSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSegment")
            .field("base_offset", &self.base_offset)
            .field("size", &self.log.size())
            .field("log", &self.log.path())
            .field("generation", &self.generation)
            .finish()
    }
}

/// The index-building state of a segment, borrowed apart from its `.log` so recovery can
/// index while it scans.
struct Indexer<'a> {
    offset_index: &'a mut OffsetIndex,
    time_index: &'a mut TimeIndex,
    bytes_since_last_index_entry: &'a mut u64,
    max_timestamp_so_far: &'a Cell<TimestampOffset>,
    index_interval_bytes: u64,
}

impl Indexer<'_> {
    /// Kafka's per-batch indexing: an entry for the batch at `position` once more than
    /// `index.interval.bytes` were appended since the last entry.
    fn index(&mut self, h: &BatchHeader, position: u64) {
        if h.max_timestamp > self.max_timestamp_so_far.get().timestamp {
            self.max_timestamp_so_far.set(TimestampOffset {
                timestamp: h.max_timestamp,
                offset: h.last_offset(),
            });
        }
        let max = self.max_timestamp_so_far.get();
        if *self.bytes_since_last_index_entry > self.index_interval_bytes {
            self.offset_index.append(h.last_offset(), position as u32);
            self.time_index
                .maybe_append(max.timestamp, max.offset, false);
            *self.bytes_since_last_index_entry = 0;
        }
        *self.bytes_since_last_index_entry += h.total_size() as u64;
    }
}

fn io_err(context: impl FnOnce() -> String) -> impl FnOnce(io::Error) -> StorageError {
    move |e| StorageError::io(context(), e)
}

impl LogSegment {
    /// Creates an empty segment (files emptied if they exist) with preallocated indexes.
    pub fn create(
        dir: &Path,
        base_offset: i64,
        config: SegmentConfig,
        now_ms: i64,
    ) -> Result<Self, StorageError> {
        Self::create_with_suffix(dir, base_offset, config, now_ms, "")
    }

    /// [`LogSegment::create`] with `extra` after each file name (`.cleaned`: the log cleaner
    /// writes a replacement segment beside the one it replaces). Such a segment must not be
    /// renamed while open: its indexes reopen their file by path to resize.
    pub fn create_with_suffix(
        dir: &Path,
        base_offset: i64,
        config: SegmentConfig,
        now_ms: i64,
        extra: &str,
    ) -> Result<Self, StorageError> {
        let log_path = segment_file_with(dir, base_offset, LOG_SUFFIX, extra);
        let offset_index = {
            let p = segment_file_with(dir, base_offset, INDEX_SUFFIX, extra);
            OffsetIndex::create(&p, base_offset, config.max_index_bytes)
                .map_err(io_err(|| format!("create {}", p.display())))?
        };
        let time_index = {
            let p = segment_file_with(dir, base_offset, TIME_INDEX_SUFFIX, extra);
            TimeIndex::create(&p, base_offset, config.max_index_bytes)
                .map_err(io_err(|| format!("create {}", p.display())))?
        };
        let log = FileRecords::create(&log_path)
            .map_err(io_err(|| format!("create {}", log_path.display())))?;
        Ok(LogSegment {
            base_offset,
            log,
            offset_index,
            time_index,
            config,
            bytes_since_last_index_entry: 0,
            max_timestamp_so_far: Cell::new(UNKNOWN_TIMESTAMP),
            max_timestamp_unread: Cell::new(false),
            rolling_base_timestamp: None,
            created_ms: now_ms,
            generation: next_generation(),
            recent: VecDeque::new(),
        })
    }

    /// Opens an existing segment without mapping its indexes (Kafka's `LazyIndex`). Returns
    /// whether its indexes look trustworthy; when they are missing or not whole entries they
    /// are replaced by empty ones and the caller must [`recover`](Self::recover) the segment,
    /// which rebuilds them. Their entries are sanity-checked on first use (see
    /// [`LogSegment::sanity_check_indexes`]).
    pub fn open(
        dir: &Path,
        base_offset: i64,
        config: SegmentConfig,
        now_ms: i64,
    ) -> Result<(Self, bool), StorageError> {
        Self::open_with_suffix(dir, base_offset, config, now_ms, "")
    }

    /// [`LogSegment::open`] of files named with `extra` after them (a `.cleaned` segment).
    pub fn open_with_suffix(
        dir: &Path,
        base_offset: i64,
        config: SegmentConfig,
        now_ms: i64,
        extra: &str,
    ) -> Result<(Self, bool), StorageError> {
        let log_path = segment_file_with(dir, base_offset, LOG_SUFFIX, extra);
        let log = FileRecords::open(&log_path)
            .map_err(io_err(|| format!("open {}", log_path.display())))?;
        let log_size = log.size();
        let index_path = segment_file_with(dir, base_offset, INDEX_SUFFIX, extra);
        let time_path = segment_file_with(dir, base_offset, TIME_INDEX_SUFFIX, extra);

        // Only the sizes are checked here, which needs no mapping: the entries are checked
        // on first use, or by recovery, which rebuilds them anyway.
        let offset_index = match OffsetIndex::open(&index_path, base_offset, log_size) {
            Ok(idx) => match idx.check_size() {
                Ok(()) => Some(idx),
                Err(why) => {
                    warn!("{why}; rebuilding it from {}", log_path.display());
                    None
                }
            },
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound {
                    warn!("cannot open {}: {e}; rebuilding it", index_path.display());
                } else if log_size > 0 {
                    warn!("{} is missing; rebuilding it", index_path.display());
                }
                None
            }
        };
        let time_index = match TimeIndex::open(&time_path, base_offset) {
            Ok(idx) => match idx.check_size() {
                Ok(()) => Some(idx),
                Err(why) => {
                    warn!("{why}; rebuilding it from {}", log_path.display());
                    None
                }
            },
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound {
                    warn!("cannot open {}: {e}; rebuilding it", time_path.display());
                } else if log_size > 0 {
                    warn!("{} is missing; rebuilding it", time_path.display());
                }
                None
            }
        };
        let indexes_ok = offset_index.is_some() && time_index.is_some();
        let offset_index = match offset_index {
            Some(i) => i,
            None => OffsetIndex::create(&index_path, base_offset, config.max_index_bytes)
                .map_err(io_err(|| format!("create {}", index_path.display())))?,
        };
        let time_index = match time_index {
            Some(i) => i,
            None => TimeIndex::create(&time_path, base_offset, config.max_index_bytes)
                .map_err(io_err(|| format!("create {}", time_path.display())))?,
        };
        Ok((
            LogSegment {
                base_offset,
                log,
                offset_index,
                time_index,
                config,
                bytes_since_last_index_entry: 0,
                max_timestamp_so_far: Cell::new(UNKNOWN_TIMESTAMP),
                max_timestamp_unread: Cell::new(true),
                rolling_base_timestamp: None,
                created_ms: now_ms,
                generation: next_generation(),
                recent: VecDeque::new(),
            },
            // An empty log needs no index: fresh empty ones are correct.
            indexes_ok || log_size == 0,
        ))
    }

    /// The full sanity check of both indexes' entries, mapping them (the log does it for the
    /// active segment at load, which is about to be used anyway).
    pub fn sanity_check_indexes(&self) -> Result<(), String> {
        self.offset_index.sanity_check(self.log.size())?;
        self.time_index.sanity_check()
    }

    /// Whether the offset and time index are mapped now.
    pub fn indexes_mapped(&self) -> (bool, bool) {
        (self.offset_index.is_mapped(), self.time_index.is_mapped())
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// See the field: equal generations mean the same bytes.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Bytes the two indexes' entries take (a closed segment's index file sizes), which the
    /// log cleaner's grouping keeps within `segment.index.bytes`.
    pub fn index_sizes(&self) -> (usize, usize) {
        (
            self.offset_index.entries() * OffsetIndex::ENTRY_SIZE,
            self.time_index.entries() * TimeIndex::ENTRY_SIZE,
        )
    }

    /// The `.log`'s modification time (the cleaner carries it over to a cleaned segment, as
    /// Kafka does, so retention by time still sees the data's age).
    pub fn last_modified(&self) -> Option<SystemTime> {
        std::fs::metadata(self.log.path())
            .and_then(|m| m.modified())
            .ok()
    }

    /// Max timestamp of the first batch (Kafka's `getFirstBatchTimestamp`, which
    /// `max.compaction.lag.ms` measures a dirty segment's age by); `None` when empty.
    pub fn first_batch_timestamp(&self) -> Result<Option<i64>, StorageError> {
        if let Some(ts) = self.rolling_base_timestamp {
            return Ok(Some(ts));
        }
        match self.log.scanner(0, BatchHeader::SIZE).next_header() {
            Ok(Some((_, h))) => Ok(Some(h.max_timestamp)),
            Ok(None) => Ok(None),
            Err(e) => Err(self.scan_error(e)),
        }
    }

    /// Bytes of batches in the `.log`.
    pub fn size(&self) -> u64 {
        self.log.size()
    }

    pub fn log_path(&self) -> &Path {
        self.log.path()
    }

    pub fn set_config(&mut self, config: SegmentConfig) {
        self.config = config;
    }

    /// Either index has no room for another entry: the log must roll.
    pub fn indexes_full(&self) -> bool {
        self.offset_index.is_full() || self.time_index.is_full()
    }

    pub fn max_timestamp_so_far(&self) -> TimestampOffset {
        if self.max_timestamp_unread.replace(false) {
            self.max_timestamp_so_far
                .set(self.time_index.last_entry().unwrap_or(UNKNOWN_TIMESTAMP));
        }
        self.max_timestamp_so_far.get()
    }

    /// Kafka's `largestTimestamp`: the max batch timestamp, or the file's modification time
    /// when no batch carries one (retention by time uses it).
    pub fn largest_timestamp(&self) -> i64 {
        let max = self.max_timestamp_so_far();
        if max.timestamp >= 0 {
            return max.timestamp;
        }
        std::fs::metadata(self.log.path())
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as i64)
    }

    /// How long this segment has been open for `segment.ms` (Kafka's `timeWaitedForRoll`):
    /// from its first batch's timestamp when it has one, else from its creation.
    pub fn time_waited_for_roll(&self, now_ms: i64, message_timestamp: i64) -> i64 {
        match self.rolling_base_timestamp {
            Some(ts) if ts >= 0 => message_timestamp.saturating_sub(ts),
            _ => now_ms.saturating_sub(self.created_ms),
        }
    }

    /// Appends whole batches (`headers` describe `bytes`, in order) and indexes them.
    pub fn append(&mut self, bytes: &[u8], headers: &[BatchHeader]) -> Result<(), StorageError> {
        self.append_vectored(&[io::IoSlice::new(bytes)], headers)
    }

    /// [`LogSegment::append`] of batches given as consecutive slices (a leader writes each
    /// batch as its new header and the client's records, without joining them first).
    pub fn append_vectored(
        &mut self,
        parts: &[io::IoSlice<'_>],
        headers: &[BatchHeader],
    ) -> Result<(), StorageError> {
        self.max_timestamp_so_far();
        let mut position = self.log.size();
        if let Err(e) = self.log.append_vectored(parts) {
            // What reached the file is unknown.
            self.recent.clear();
            return Err(io_err(|| {
                format!("append to {}", self.log.path().display())
            })(e));
        }
        for h in headers {
            self.index_batch(h, position);
            if self.recent.len() == RECENT_BATCHES {
                self.recent.pop_front();
            }
            self.recent.push_back((position, *h));
            position += h.total_size() as u64;
        }
        if self.rolling_base_timestamp.is_none() {
            self.rolling_base_timestamp = headers.first().map(|h| h.max_timestamp);
        }
        Ok(())
    }

    fn index_batch(&mut self, h: &BatchHeader, position: u64) {
        Indexer {
            offset_index: &mut self.offset_index,
            time_index: &mut self.time_index,
            bytes_since_last_index_entry: &mut self.bytes_since_last_index_entry,
            max_timestamp_so_far: &self.max_timestamp_so_far,
            index_interval_bytes: self.config.index_interval_bytes,
        }
        .index(h, position);
    }

    /// Position and header of the first batch whose last offset is >= `offset`, found through
    /// the offset index and a short scan; `None` when this segment ends before `offset`.
    pub fn translate_offset(
        &self,
        offset: i64,
    ) -> Result<Option<(u64, BatchHeader)>, StorageError> {
        // Batches are ordered and do not overlap: the one holding `offset` is the first whose
        // last offset reaches it; past the last batch appended there is none.
        if let Some((_, newest)) = self.recent.back() {
            if offset > newest.last_offset() {
                return Ok(None);
            }
            if let Some(found) = self
                .recent
                .iter()
                .find(|(_, h)| h.base_offset <= offset && offset <= h.last_offset())
            {
                return Ok(Some(*found));
            }
        }
        let start = self.offset_index.lookup(offset).position as u64;
        let mut scanner = self.log.scanner(start, SCAN_CHUNK);
        loop {
            match scanner.next_header() {
                Ok(Some((pos, h))) if h.last_offset() >= offset => return Ok(Some((pos, h))),
                Ok(Some(_)) => continue,
                Ok(None) => return Ok(None),
                Err(e) => return Err(self.scan_error(e)),
            }
        }
    }

    fn scan_error(&self, e: ScanError) -> StorageError {
        let path = self.log.path().display();
        match e {
            ScanError::Io(e) => StorageError::io(format!("read {path}"), e),
            ScanError::Torn(pos) => {
                StorageError::Corrupt(format!("{path}: batch at byte {pos} runs past the end"))
            }
            ScanError::Corrupt(pos, why) => {
                StorageError::Corrupt(format!("{path}: bad batch at byte {pos}: {why}"))
            }
        }
    }

    /// Whole batches from the one holding `start_offset`, at most `max_bytes` of them (but
    /// the first one regardless when `min_one`), none whose last offset reaches
    /// `max_offset_exclusive`. `None` when this segment ends before `start_offset`.
    pub fn read(
        &self,
        start_offset: i64,
        max_bytes: usize,
        max_offset_exclusive: i64,
        min_one: bool,
    ) -> Result<Option<(Bytes, Option<i64>)>, StorageError> {
        let Some((position, first)) = self.translate_offset(start_offset)? else {
            return Ok(None);
        };
        if first.last_offset() >= max_offset_exclusive {
            return Ok(Some((Bytes::new(), None)));
        }
        let first_size = first.total_size();
        let want = if min_one {
            max_bytes.max(first_size)
        } else {
            max_bytes
        };
        let len = (want as u64).min(self.log.size() - position) as usize;
        if len < first_size {
            return Ok(Some((Bytes::new(), None)));
        }
        let buf = self
            .log
            .read_at(position, len)
            .map_err(io_err(|| format!("read {}", self.log.path().display())))?;
        // Keep whole batches below the bound; the first is known to qualify.
        let mut end = first_size;
        while end + BatchHeader::SIZE <= buf.len() {
            let h = BatchHeader::parse(&buf[end..]).map_err(|e| {
                StorageError::Corrupt(format!(
                    "{}: bad batch at byte {}: {e}",
                    self.log.path().display(),
                    position + end as u64
                ))
            })?;
            if end + h.total_size() > buf.len() || h.last_offset() >= max_offset_exclusive {
                break;
            }
            end += h.total_size();
        }
        Ok(Some((buf.slice(..end), Some(first.base_offset))))
    }

    /// ListOffsets by time within this segment: the first record at or after `timestamp` with
    /// offset >= `starting_offset`, as `(offset, timestamp)`.
    pub fn find_offset_by_timestamp(
        &self,
        timestamp: i64,
        starting_offset: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        let entry = self.time_index.lookup(timestamp);
        let start = self
            .offset_index
            .lookup(entry.offset.max(starting_offset))
            .position as u64;
        let mut scanner = self.log.scanner(start, SCAN_CHUNK);
        loop {
            let (pos, h) = match scanner.next_header() {
                Ok(Some(x)) => x,
                Ok(None) => return Ok(None),
                Err(e) => return Err(self.scan_error(e)),
            };
            if h.max_timestamp < timestamp || h.last_offset() < starting_offset {
                continue;
            }
            let found = self.find_record(pos, &h, |offset, ts| {
                ts >= timestamp && offset >= starting_offset
            })?;
            if found.is_some() {
                return Ok(found);
            }
        }
    }

    /// `(offset, timestamp)` of the first record of the batch at `position` that `wanted`
    /// accepts. The records are read as they decompress, never all at once.
    pub fn find_record(
        &self,
        position: u64,
        header: &BatchHeader,
        mut wanted: impl FnMut(i64, i64) -> bool,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        let bytes = self
            .log
            .read_at(position, header.total_size())
            .map_err(io_err(|| format!("read {}", self.log.path().display())))?;
        let mut found = None;
        batch::visit_record_offsets_and_timestamps(&bytes, header, |offset, ts| {
            if wanted(offset, ts) {
                found = Some((offset, ts));
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .map_err(|e| {
            StorageError::Corrupt(format!(
                "{}: batch at byte {position}: {e}",
                self.log.path().display()
            ))
        })?;
        Ok(found)
    }

    /// Calls `f` with every batch header, oldest first.
    pub fn scan_headers(&self, mut f: impl FnMut(&BatchHeader)) -> Result<(), StorageError> {
        let mut scanner = self.log.scanner(0, RECOVERY_CHUNK);
        loop {
            match scanner.next_header() {
                Ok(Some((_, h))) => f(&h),
                Ok(None) => return Ok(()),
                Err(e) => return Err(self.scan_error(e)),
            }
        }
    }

    /// Offset after the last batch, scanning from the last offset index entry (Kafka's
    /// `readNextOffset`); `None` when the segment is empty.
    pub fn read_next_offset(&self) -> Result<Option<i64>, StorageError> {
        let start = self.offset_index.lookup(i64::MAX).position as u64;
        let mut scanner = self.log.scanner(start, SCAN_CHUNK);
        let mut next = None;
        loop {
            match scanner.next_header() {
                Ok(Some((_, h))) => next = Some(h.next_offset()),
                Ok(None) => return Ok(next),
                Err(e) => return Err(self.scan_error(e)),
            }
        }
    }

    /// Loads what an open of an existing active segment does not get from its indexes: the
    /// first batch's timestamp and, when `scan`, the max timestamp of batches after the last
    /// time index entry (Kafka's `readLargestTimestamp`). Without `scan` the last entry is
    /// taken as the max: a clean close wrote the max as the final entry.
    pub fn load_timestamps(&mut self, scan: bool) -> Result<(), StorageError> {
        let last = self.time_index.last_entry().unwrap_or(UNKNOWN_TIMESTAMP);
        let start = match self.time_index.last_entry() {
            Some(e) => self.offset_index.lookup(e.offset).position as u64,
            None => 0,
        };
        let mut best = last;
        let mut scanner = self
            .log
            .scanner(if scan { start } else { self.log.size() }, SCAN_CHUNK);
        loop {
            match scanner.next_header() {
                Ok(Some((_, h))) => {
                    if h.max_timestamp > best.timestamp {
                        best = TimestampOffset {
                            timestamp: h.max_timestamp,
                            offset: h.last_offset(),
                        };
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(self.scan_error(e)),
            }
        }
        self.max_timestamp_so_far.set(best);
        self.max_timestamp_unread.set(false);
        self.rolling_base_timestamp = None;
        if self.log.size() > 0 {
            if let Ok(Some((_, h))) = self.log.scanner(0, BatchHeader::SIZE).next_header() {
                self.rolling_base_timestamp = Some(h.max_timestamp);
            }
        }
        Ok(())
    }

    /// Checks every batch from the start: sane header, offsets strictly increasing from the
    /// base offset and below `next_segment_base`, relative offsets that fit the index, valid
    /// CRC-32C. Cuts the `.log` at the first failure and rebuilds both indexes.
    pub fn recover(
        &mut self,
        next_segment_base: Option<i64>,
    ) -> Result<RecoveryOutcome, StorageError> {
        let max_index = self.config.max_index_bytes;
        self.offset_index.reset();
        self.time_index.reset();
        self.offset_index.resize(max_index).map_err(io_err(|| {
            format!("resize index of {}", self.log.path().display())
        }))?;
        self.time_index.resize(max_index).map_err(io_err(|| {
            format!("resize time index of {}", self.log.path().display())
        }))?;
        self.max_timestamp_so_far.set(UNKNOWN_TIMESTAMP);
        self.max_timestamp_unread.set(false);
        self.bytes_since_last_index_entry = 0;
        self.rolling_base_timestamp = None;
        self.generation = next_generation();
        self.recent.clear();

        let size = self.log.size();
        let base_offset = self.base_offset;
        let mut valid = 0u64;
        let mut last_offset = base_offset - 1;
        let mut first: Option<BatchHeader> = None;
        let mut last: Option<BatchHeader> = None;
        let mut problem: Option<String> = None;
        {
            let mut indexer = Indexer {
                offset_index: &mut self.offset_index,
                time_index: &mut self.time_index,
                bytes_since_last_index_entry: &mut self.bytes_since_last_index_entry,
                max_timestamp_so_far: &self.max_timestamp_so_far,
                index_interval_bytes: self.config.index_interval_bytes,
            };
            let mut scanner = self.log.scanner(0, RECOVERY_CHUNK);
            loop {
                match scanner.next_batch() {
                    Ok(None) => break,
                    Ok(Some((pos, h, bytes))) => {
                        let bad = if h.base_offset <= last_offset {
                            Some(format!(
                                "base offset {} does not follow offset {last_offset}",
                                h.base_offset
                            ))
                        } else if h.last_offset_delta < 0 {
                            Some(format!(
                                "negative last offset delta {}",
                                h.last_offset_delta
                            ))
                        } else if h.last_offset() - base_offset > i32::MAX as i64 {
                            Some(format!("offset {} too far from the base", h.last_offset()))
                        } else if next_segment_base.is_some_and(|next| h.last_offset() >= next) {
                            Some(format!(
                                "offset {} belongs to the next segment",
                                h.last_offset()
                            ))
                        } else if let Err(e) = batch::verify_crc(bytes, &h) {
                            Some(e.to_string())
                        } else {
                            None
                        };
                        if let Some(why) = bad {
                            problem = Some(format!("batch at byte {pos}: {why}"));
                            break;
                        }
                        last_offset = h.last_offset();
                        valid = pos + h.total_size() as u64;
                        indexer.index(&h, pos);
                        first.get_or_insert(h);
                        last = Some(h);
                    }
                    Err(ScanError::Io(e)) => {
                        return Err(StorageError::io(
                            format!("read {}", self.log.path().display()),
                            e,
                        ));
                    }
                    Err(ScanError::Torn(pos)) => {
                        problem = Some(format!("torn batch at byte {pos}"));
                        break;
                    }
                    Err(ScanError::Corrupt(pos, why)) => {
                        problem = Some(format!("bad batch at byte {pos}: {why}"));
                        break;
                    }
                }
            }
        }
        self.rolling_base_timestamp = first.map(|h| h.max_timestamp);
        let truncated = size - valid;
        if truncated > 0 {
            warn!(
                "{}: {}; truncating {truncated} bytes at byte {valid}",
                self.log.path().display(),
                problem.as_deref().unwrap_or("trailing bytes")
            );
            self.log
                .truncate_to(valid)
                .map_err(io_err(|| format!("truncate {}", self.log.path().display())))?;
        }
        self.close_indexes()?;
        Ok(RecoveryOutcome {
            truncated_bytes: truncated,
            next_offset: last.map(|h| h.next_offset()),
        })
    }

    /// Removes every batch from the one holding `offset` on; returns the bytes removed.
    /// The segment becomes the active one, so its indexes are preallocated again.
    pub fn truncate_to(&mut self, offset: i64, now_ms: i64) -> Result<u64, StorageError> {
        self.generation = next_generation();
        let mapping = self.translate_offset(offset)?;
        self.recent.clear();
        self.offset_index.truncate_to(offset);
        self.time_index.truncate_to(offset);
        self.make_active()?;
        let removed = match mapping {
            Some((position, _)) => {
                let removed = self.log.size() - position;
                self.log
                    .truncate_to(position)
                    .map_err(io_err(|| format!("truncate {}", self.log.path().display())))?;
                removed
            }
            None => 0,
        };
        self.bytes_since_last_index_entry = 0;
        if self.log.size() == 0 {
            self.created_ms = now_ms;
        }
        self.load_timestamps(true)?;
        Ok(removed)
    }

    /// Preallocates the indexes for appends (the segment is, or again is, the active one).
    pub fn make_active(&mut self) -> Result<(), StorageError> {
        let max = self.config.max_index_bytes;
        self.offset_index.resize(max).map_err(io_err(|| {
            format!("resize index of {}", self.log.path().display())
        }))?;
        self.time_index.resize(max).map_err(io_err(|| {
            format!("resize time index of {}", self.log.path().display())
        }))
    }

    /// The segment stops being active (a roll, or close): the time index gets its final entry
    /// and both indexes are trimmed to their entries (Kafka's `onBecomeInactiveSegment`).
    pub fn close_indexes(&mut self) -> Result<(), StorageError> {
        let max = self.max_timestamp_so_far();
        if max != UNKNOWN_TIMESTAMP {
            self.time_index
                .maybe_append(max.timestamp, max.offset, true);
        }
        self.offset_index.trim().map_err(io_err(|| {
            format!("trim index of {}", self.log.path().display())
        }))?;
        self.time_index.trim().map_err(io_err(|| {
            format!("trim time index of {}", self.log.path().display())
        }))?;
        self.log
            .trim()
            .map_err(io_err(|| format!("trim {}", self.log.path().display())))
    }

    /// fsync of the `.log` and msync of both indexes.
    pub fn flush(&self) -> Result<(), StorageError> {
        self.log
            .flush()
            .map_err(io_err(|| format!("fsync {}", self.log.path().display())))?;
        self.offset_index.flush().map_err(io_err(|| {
            format!("msync index of {}", self.log.path().display())
        }))?;
        self.time_index.flush().map_err(io_err(|| {
            format!("msync time index of {}", self.log.path().display())
        }))
    }

    /// A second handle on the `.log`, so a flush can run on another thread.
    pub fn try_clone_log_file(&self) -> Result<std::fs::File, StorageError> {
        self.log
            .file()
            .and_then(|f| f.try_clone())
            .map_err(io_err(|| format!("dup {}", self.log.path().display())))
    }

    /// Renames the segment's three files from `<name><from>` to `<name><to>` (`from`/`to`:
    /// `""`, `.cleaned`, `.swap`, `.deleted`), keeping descriptors and mappings open. The
    /// indexes go first and the `.log` last, so the `.log`'s name says how far the rename got.
    /// `proceed` is asked before every rename; `false` stops the sequence there, leaving the
    /// files as they are, as a crash would (the seam the swap's crash tests use). Returns
    /// whether every rename was done.
    pub fn rename_files(
        &mut self,
        dir: &Path,
        from: &str,
        to: &str,
        proceed: &mut dyn FnMut() -> bool,
    ) -> Result<bool, StorageError> {
        let base = self.base_offset;
        let path = |suffix: &str, extra: &str| segment_file_with(dir, base, suffix, extra);
        let err = |suffix: &str| {
            let from = path(suffix, from);
            let to = path(suffix, to);
            move |e: io::Error| {
                StorageError::io(format!("rename {} to {}", from.display(), to.display()), e)
            }
        };
        if !proceed() {
            return Ok(false);
        }
        self.offset_index
            .rename_to(&path(INDEX_SUFFIX, to))
            .map_err(err(INDEX_SUFFIX))?;
        if !proceed() {
            return Ok(false);
        }
        self.time_index
            .rename_to(&path(TIME_INDEX_SUFFIX, to))
            .map_err(err(TIME_INDEX_SUFFIX))?;
        if !proceed() {
            return Ok(false);
        }
        self.log
            .rename_to(&path(LOG_SUFFIX, to))
            .map_err(err(LOG_SUFFIX))?;
        Ok(true)
    }

    /// Removes the segment's three files.
    pub fn delete(self) -> Result<(), StorageError> {
        let path = self.log.path().to_path_buf();
        self.offset_index
            .delete()
            .map_err(io_err(|| format!("delete index of {}", path.display())))?;
        self.time_index.delete().map_err(io_err(|| {
            format!("delete time index of {}", path.display())
        }))?;
        self.log
            .delete()
            .map_err(io_err(|| format!("delete {}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::batch::tests::client_batch;
    use bytes::BytesMut;
    use kafka_protocol::records::Compression;

    const CONFIG: SegmentConfig = SegmentConfig {
        index_interval_bytes: 100,
        max_index_bytes: 4096,
    };

    /// Appends `n` batches of 3 records each with offsets from `segment base + 3i`.
    fn fill(seg: &mut LogSegment, n: usize) -> Vec<Bytes> {
        let mut out = Vec::new();
        for i in 0..n {
            let b = client_batch(3, 1_000 + 10 * i as i64, Compression::None, false);
            let mut b = BytesMut::from(&b[..]);
            batch::set_base_offset(&mut b, seg.base_offset() + 3 * i as i64);
            let h = BatchHeader::parse(&b).unwrap();
            seg.append(&b, &[h]).unwrap();
            out.push(b.freeze());
        }
        out
    }

    #[test]
    fn recently_appended_batches_translate_as_the_index_and_scan_do() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = LogSegment::create(dir.path(), 0, CONFIG, 0).unwrap();
        // More batches than are remembered: the oldest go through the index.
        fill(&mut seg, RECENT_BATCHES + 4);
        let end = 3 * (RECENT_BATCHES as i64 + 4);
        let recent: Vec<_> = (0..end + 2)
            .map(|o| seg.translate_offset(o).unwrap())
            .collect();
        seg.close_indexes().unwrap();
        drop(seg);
        let (mut seg, _) = LogSegment::open(dir.path(), 0, CONFIG, 0).unwrap();
        assert!(seg.recent.is_empty());
        let scanned: Vec<_> = (0..end + 2)
            .map(|o| seg.translate_offset(o).unwrap())
            .collect();
        assert_eq!(recent, scanned);
        assert_eq!(recent[end as usize], None);
        // After a truncation the remembered batches are gone, and so are the cut ones.
        seg.make_active().unwrap();
        let b = client_batch(3, 2_000, Compression::None, false);
        let mut b = BytesMut::from(&b[..]);
        batch::set_base_offset(&mut b, end);
        seg.append(&b, &[BatchHeader::parse(&b).unwrap()]).unwrap();
        assert_eq!(seg.recent.len(), 1);
        seg.truncate_to(3, 0).unwrap();
        assert!(seg.recent.is_empty());
        assert_eq!(seg.translate_offset(3).unwrap(), None);
        assert_eq!(seg.translate_offset(1).unwrap().unwrap().1.base_offset, 0);
    }

    #[test]
    fn files_are_named_by_twenty_digit_base_offset() {
        let dir = tempfile::tempdir().unwrap();
        let _seg = LogSegment::create(dir.path(), 1234, CONFIG, 0).unwrap();
        for name in [
            "00000000000000001234.log",
            "00000000000000001234.index",
            "00000000000000001234.timeindex",
        ] {
            assert!(dir.path().join(name).exists(), "{name}");
        }
    }

    #[test]
    fn read_returns_whole_batches_from_the_one_holding_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = LogSegment::create(dir.path(), 0, CONFIG, 0).unwrap();
        let batches = fill(&mut seg, 10);
        let (bytes, first) = seg.read(4, 1 << 20, i64::MAX, false).unwrap().unwrap();
        assert_eq!(first, Some(3));
        let expected: Vec<u8> = batches[1..].concat();
        assert_eq!(&bytes[..], &expected[..]);
        assert!(seg.read(30, 100, i64::MAX, true).unwrap().is_none());
    }

    #[test]
    fn read_stops_at_the_upper_bound_and_max_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = LogSegment::create(dir.path(), 0, CONFIG, 0).unwrap();
        let batches = fill(&mut seg, 5);
        let one = batches[0].len();
        let (bytes, _) = seg.read(0, 1 << 20, 6, false).unwrap().unwrap();
        assert_eq!(bytes.len(), 2 * one, "offsets 6.. are gated");
        let (bytes, _) = seg.read(0, 2 * one + 5, i64::MAX, false).unwrap().unwrap();
        assert_eq!(bytes.len(), 2 * one, "no partial batch");
        let (bytes, _) = seg.read(0, 1, i64::MAX, false).unwrap().unwrap();
        assert!(bytes.is_empty());
        let (bytes, _) = seg.read(0, 1, i64::MAX, true).unwrap().unwrap();
        assert_eq!(bytes.len(), one, "KIP-74: at least one batch");
    }

    #[test]
    fn sparse_index_gets_an_entry_per_interval() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = LogSegment::create(dir.path(), 0, CONFIG, 0).unwrap();
        fill(&mut seg, 10);
        assert!(
            seg.offset_index.entries() >= 3,
            "{}",
            seg.offset_index.entries()
        );
        for i in 0..seg.offset_index.entries() {
            let e = seg.offset_index.entry(i);
            let (pos, h) = seg.translate_offset(e.offset).unwrap().unwrap();
            assert_eq!(pos, e.position as u64);
            assert_eq!(h.last_offset(), e.offset);
        }
    }

    #[test]
    fn recover_rebuilds_identical_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = LogSegment::create(dir.path(), 0, CONFIG, 0).unwrap();
        fill(&mut seg, 20);
        seg.close_indexes().unwrap();
        let before: Vec<_> = (0..seg.offset_index.entries())
            .map(|i| seg.offset_index.entry(i))
            .collect();
        let out = seg.recover(None).unwrap();
        assert_eq!(
            out,
            RecoveryOutcome {
                truncated_bytes: 0,
                next_offset: Some(60)
            }
        );
        let after: Vec<_> = (0..seg.offset_index.entries())
            .map(|i| seg.offset_index.entry(i))
            .collect();
        assert_eq!(before, after);
    }

    #[test]
    fn find_offset_by_timestamp_returns_the_first_record_at_or_after() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = LogSegment::create(dir.path(), 0, CONFIG, 0).unwrap();
        fill(&mut seg, 10); // batch i: offsets 3i.., timestamps 1000+10i, +1, +2
        assert_eq!(seg.find_offset_by_timestamp(0, 0).unwrap(), Some((0, 1000)));
        assert_eq!(
            seg.find_offset_by_timestamp(1041, 0).unwrap(),
            Some((13, 1041))
        );
        assert_eq!(
            seg.find_offset_by_timestamp(1043, 0).unwrap(),
            Some((15, 1050))
        );
        assert_eq!(seg.find_offset_by_timestamp(5000, 0).unwrap(), None);
        assert_eq!(seg.find_offset_by_timestamp(0, 7).unwrap(), Some((7, 1021)));
    }

    #[test]
    fn truncate_removes_the_batch_holding_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = LogSegment::create(dir.path(), 0, CONFIG, 0).unwrap();
        let batches = fill(&mut seg, 10);
        let removed = seg.truncate_to(9, 0).unwrap();
        assert_eq!(removed as usize, batches[3..].concat().len());
        assert_eq!(seg.read_next_offset().unwrap(), Some(9));
        assert_eq!(seg.max_timestamp_so_far().timestamp, 1022);
    }

    #[test]
    fn an_opened_segment_maps_each_index_only_when_first_used() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = LogSegment::create(dir.path(), 0, CONFIG, 0).unwrap();
        let batches = fill(&mut seg, 10);
        seg.close_indexes().unwrap();
        assert_eq!(seg.indexes_mapped(), (false, false), "a trim unmaps");
        drop(seg);
        let (seg, indexes_ok) = LogSegment::open(dir.path(), 0, CONFIG, 0).unwrap();
        assert!(indexes_ok);
        assert_eq!(seg.indexes_mapped(), (false, false), "open maps nothing");
        let (bytes, _) = seg.read(4, 1 << 20, i64::MAX, false).unwrap().unwrap();
        assert_eq!(&bytes[..], &batches[1..].concat()[..]);
        assert_eq!(
            seg.indexes_mapped(),
            (true, false),
            "a read maps the offset index"
        );
        assert_eq!(seg.max_timestamp_so_far().timestamp, 1_092);
        assert_eq!(seg.indexes_mapped(), (true, true));
    }

    #[test]
    fn an_index_found_out_of_order_on_first_use_is_ignored_and_reads_scan_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = LogSegment::create(dir.path(), 0, CONFIG, 0).unwrap();
        let batches = fill(&mut seg, 10);
        seg.close_indexes().unwrap();
        drop(seg);
        // Whole entries, so the open's size check passes, but in reverse order.
        let path = segment_file(dir.path(), 0, INDEX_SUFFIX);
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() >= 16, "at least two entries");
        let reversed: Vec<u8> = bytes.chunks(8).rev().flatten().copied().collect();
        std::fs::write(&path, reversed).unwrap();
        let (seg, indexes_ok) = LogSegment::open(dir.path(), 0, CONFIG, 0).unwrap();
        assert!(indexes_ok, "not read at open");
        for (i, batch) in batches.iter().enumerate() {
            let (bytes, first) = seg
                .read(3 * i as i64 + 1, batch.len(), i64::MAX, true)
                .unwrap()
                .unwrap();
            assert_eq!((&bytes[..], first), (&batch[..], Some(3 * i as i64)));
        }
        assert_eq!(seg.offset_index.entries(), 0, "ignored");
        assert!(seg.sanity_check_indexes().is_ok());
    }
}
