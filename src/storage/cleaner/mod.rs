//! Log compaction (Kafka's `LogCleaner`): for `cleanup.policy=compact` logs, keep the latest
//! record of every key.
//!
//! A clean has three parts, split by who may do them:
//!
//! 1. On the log's owner (the replica actor), cheap: [`PartitionLog::log_to_clean`] says how
//!    dirty the log is, and [`PartitionLog::prepare_clean`] hands out a [`CleanTask`]: the
//!    closed segments below the first uncleanable offset, each as a duplicated descriptor of
//!    its `.log` with the generation it had. Closed segments are immutable, so the heavy part
//!    can read them on another thread while the owner keeps appending and serving reads.
//! 2. Anywhere (a blocking thread), heavy: [`clean`] builds the [`OffsetMap`] over the dirty
//!    part (`[first dirty offset, first uncleanable offset)`, up to the map's budget: a log
//!    too large for it is cleaned in passes), then rewrites every segment below the mapped
//!    range's end into `<base>.log.cleaned` files (grouping small segments into one, as
//!    Kafka's `groupSegmentsBySize` does), keeping what [`filter`] keeps, with fresh indexes.
//! 3. On the owner again, short: [`PartitionLog::replace_cleaned_segments`] checks that every
//!    segment the clean read still has the generation it read (retention, DeleteRecords or a
//!    truncation may have changed the log meanwhile; then the clean is discarded) and swaps
//!    the cleaned segments in with [`swap`]'s crash-safe renames. The cleaner checkpoint
//!    ([`checkpoint`]) moves to the end of the mapped range.
//!
//! Offsets never change: batches keep their base offset and last offset delta, and a segment
//! is replaced by one with the same base offset. The active segment is never cleaned, nor
//! anything at or above the high-water mark.

pub mod checkpoint;
pub(crate) mod filter;
pub mod offset_map;
pub mod swap;

use std::collections::HashMap;
use std::fs::File;
use std::ops::ControlFlow;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tracing::{debug, info};

use self::filter::{filter_batch, write_empty_header, FilterContext};
pub use self::offset_map::OffsetMap;
use super::batch::{self, BatchHeader};
use super::file_records::{scan_file, ScanError};
use super::log::{StorageError, TopicPartition};
use super::segment::{
    segment_file_with, LogSegment, SegmentConfig, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX,
};

/// Suffix of a cleaned segment's files before the swap (Kafka's `CleanedFileSuffix`).
pub const CLEANED_SUFFIX: &str = ".cleaned";
/// Suffix of a cleaned segment's files during the swap (Kafka's `SwapFileSuffix`).
pub const SWAP_SUFFIX: &str = ".swap";
/// Suffix of replaced segments' files until they are removed (Kafka's `DeletedFileSuffix`).
pub const DELETED_SUFFIX: &str = ".deleted";

/// How dirty a compacted log is (Kafka's `LogToClean`), computed by its owner.
#[derive(Debug, Clone, PartialEq)]
pub struct LogToClean {
    pub tp: TopicPartition,
    /// Where the dirty part starts: the cleaner checkpoint, kept within the log.
    pub first_dirty_offset: i64,
    /// The base of the first segment a clean may not touch (the active one, the one holding
    /// the high-water mark, or the first one younger than `min.compaction.lag.ms`).
    pub first_uncleanable_offset: i64,
    /// Bytes of segments below the first dirty offset.
    pub clean_bytes: u64,
    /// Bytes of segments from the first dirty offset to the first uncleanable one.
    pub cleanable_bytes: u64,
    /// `min.cleanable.dirty.ratio`.
    pub min_cleanable_ratio: f64,
    /// `max.compaction.lag.ms` has passed for some dirty record: clean even below the ratio.
    pub need_compaction_now: bool,
}

impl LogToClean {
    pub fn total_bytes(&self) -> u64 {
        self.clean_bytes + self.cleanable_bytes
    }

    /// Kafka's `cleanableRatio`: dirty bytes over all bytes below the first uncleanable
    /// offset.
    pub fn cleanable_ratio(&self) -> f64 {
        match self.total_bytes() {
            0 => 0.0,
            total => self.cleanable_bytes as f64 / total as f64,
        }
    }

    /// Kafka's test in `grabFilthiestCompactedLog`.
    pub fn should_clean(&self) -> bool {
        (self.need_compaction_now && self.cleanable_bytes > 0)
            || (self.total_bytes() > 0 && self.cleanable_ratio() > self.min_cleanable_ratio)
    }
}

/// One closed segment as a clean reads it.
#[derive(Debug)]
pub struct SourceSegment {
    pub base_offset: i64,
    /// The next segment's base offset: this one's offsets are below it.
    pub next_base: i64,
    /// Bytes of batches in the `.log` when the clean was prepared (it is closed: it does not
    /// grow).
    pub size: u64,
    /// [`LogSegment::generation`] when prepared: the swap checks it again.
    pub generation: u64,
    /// A duplicated descriptor of the `.log`: reads keep working if the file is renamed or
    /// deleted meanwhile (the swap then notices the changed generation).
    pub file: File,
    /// Bytes of the offset and time index entries, for grouping.
    pub index_bytes: (usize, usize),
    /// Byte position of the batch holding the first dirty offset, when this segment holds
    /// it (an index lookup done by the owner); 0 otherwise.
    pub dirty_position: u64,
    /// The `.log`'s modification time, which the cleaned segment inherits.
    pub last_modified: Option<SystemTime>,
}

/// Everything a clean needs, handed out by the log's owner.
#[derive(Debug)]
pub struct CleanTask {
    pub tp: TopicPartition,
    pub dir: PathBuf,
    pub first_dirty_offset: i64,
    pub first_uncleanable_offset: i64,
    /// Every segment below the first uncleanable offset, oldest first.
    pub segments: Vec<SourceSegment>,
    pub segment_config: SegmentConfig,
    /// `segment.bytes`: a group of segments cleaned into one stays within it.
    pub segment_bytes: u64,
    /// `segment.index.bytes`: and so do its indexes.
    pub max_index_bytes: usize,
    /// `delete.retention.ms`.
    pub delete_retention_ms: i64,
    /// Active idempotent producers and the last offset each wrote: the batch ending there
    /// stays, even emptied, to keep the producer's last sequence.
    pub active_producers: HashMap<i64, i64>,
    /// When the clean was prepared: tombstone horizons are set and compared against it.
    pub now_ms: i64,
}

/// The cleaner's resources for one clean.
#[derive(Debug, Clone)]
pub struct CleanerIo {
    /// Read-ahead when scanning a segment and the size at which output is written out.
    pub io_buffer_bytes: usize,
    /// `log.cleaner.io.max.bytes.per.second`: reads and writes together stay below it.
    pub max_io_bytes_per_second: f64,
}

/// One cleaned segment ready to be swapped in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanedGroup {
    /// Base offset of the cleaned segment: the first replaced segment's.
    pub base_offset: i64,
    /// `(base offset, generation)` of every segment it replaces, oldest first.
    pub replaces: Vec<(i64, u64)>,
    /// `(device, inode)` of the `.log.cleaned` file, so the swap renames the file this clean
    /// wrote and nothing else that may have taken its name.
    pub file_id: (u64, u64),
    /// Bytes of the cleaned `.log`.
    pub size: u64,
}

/// What a clean produced.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanedLog {
    pub tp: TopicPartition,
    pub dir: PathBuf,
    pub groups: Vec<CleanedGroup>,
    /// `(base offset, generation)` of every segment the clean read: all must be unchanged
    /// (or gone below the log's start) for its result to hold.
    pub read_segments: Vec<(i64, u64)>,
    /// The next clean's first dirty offset: one past the last offset the map covered.
    pub end_offset: i64,
    /// The earliest delete horizon of a tombstone the cleaned segments hold: cleaning the
    /// log again from then removes it.
    pub earliest_tombstone_horizon: Option<i64>,
    pub stats: CleanerStats,
}

/// Kafka's `CleanerStats`, the figures a clean reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CleanerStats {
    /// Bytes and records read to build the offset map.
    pub map_bytes_read: u64,
    pub map_records_read: u64,
    /// Keys in the map and the share of its budget they used.
    pub map_keys: usize,
    pub map_utilization: f64,
    /// Bytes and records read from the segments being rewritten.
    pub bytes_read: u64,
    pub records_read: u64,
    /// Bytes and records written to cleaned segments.
    pub bytes_written: u64,
    pub records_written: u64,
    pub map_time: Duration,
    pub elapsed: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum CleanError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The cleaner is stopping (Kafka's `LogCleaningAbortedException`).
    #[error("cleaning aborted")]
    Aborted,
}

/// Runs a clean (the heavy part, blocking): builds `map` over the dirty part of `task` and
/// writes the cleaned segments. On error or abort the `.cleaned` files written so far are
/// removed.
pub fn clean(
    task: &CleanTask,
    map: &mut OffsetMap,
    io: &CleanerIo,
    abort: &AtomicBool,
) -> Result<CleanedLog, CleanError> {
    let started = Instant::now();
    let mut reader = Reader {
        task,
        io,
        abort,
        throttle: Throttle::new(io.max_io_bytes_per_second),
    };
    let mut stats = CleanerStats::default();
    build_offset_map(&mut reader, map, &mut stats)?;
    stats.map_time = started.elapsed();
    stats.map_keys = map.len();
    stats.map_utilization = map.len() as f64 / map.capacity().max(1) as f64;
    let end_offset = map.latest_offset().saturating_add(1);
    debug!(
        partition = %task.tp,
        first_dirty = task.first_dirty_offset,
        end_offset,
        keys = map.len(),
        "offset map built"
    );

    let to_clean: Vec<&SourceSegment> = task
        .segments
        .iter()
        .filter(|s| s.base_offset < end_offset)
        .collect();
    let ctx = FilterContext {
        map,
        now_ms: task.now_ms,
        delete_retention_ms: task.delete_retention_ms,
        active_producers: &task.active_producers,
    };
    let mut cleaned = Vec::new();
    let mut horizon: Option<i64> = None;
    let mut next = 0;
    while next < to_clean.len() {
        match clean_group(&mut reader, &to_clean[next..], &ctx, &mut stats) {
            Ok((taken, group, h)) => {
                next += taken;
                // Unswapped groups count too: their tombstones are still there.
                horizon = match (horizon, h) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                cleaned.extend(group);
            }
            Err(e) => {
                discard_cleaned(&task.dir, &cleaned);
                return Err(e);
            }
        }
    }
    stats.elapsed = started.elapsed();
    info!(
        partition = %task.tp,
        segments = to_clean.len(),
        cleaned_segments = cleaned.len(),
        read = stats.bytes_read,
        written = stats.bytes_written,
        records_read = stats.records_read,
        records_kept = stats.records_written,
        elapsed_ms = stats.elapsed.as_millis() as u64,
        "cleaned log up to offset {end_offset}"
    );
    Ok(CleanedLog {
        tp: task.tp.clone(),
        dir: task.dir.clone(),
        groups: cleaned,
        read_segments: to_clean
            .iter()
            .map(|s| (s.base_offset, s.generation))
            .collect(),
        end_offset,
        earliest_tombstone_horizon: horizon,
        stats,
    })
}

/// Kafka's `buildOffsetMap`: key → latest offset for the records from the first dirty offset
/// to the first uncleanable one, stopping where the map fills up.
fn build_offset_map(
    reader: &mut Reader<'_>,
    map: &mut OffsetMap,
    stats: &mut CleanerStats,
) -> Result<(), CleanError> {
    map.clear();
    let task = reader.task;
    let start = task.first_dirty_offset;
    let end = task.first_uncleanable_offset;
    // An empty dirty part maps nothing and covers up to where it starts: the clean then
    // rewrites the clean part only (to drop tombstones whose horizon passed).
    map.update_latest_offset(start - 1);
    let dirty = task
        .segments
        .iter()
        .filter(|s| s.next_base > start && s.base_offset < end);
    for segment in dirty {
        let from = if segment.base_offset <= start {
            segment.dirty_position
        } else {
            0
        };
        let completed = reader.for_each_batch(segment, from, |pos, h, bytes| {
            stats.map_bytes_read += h.total_size() as u64;
            if h.last_offset() < start || h.is_control() {
                return Ok(true);
            }
            let full = map_batch(map, bytes, h, start, stats)
                .map_err(|e| corrupt(task, segment, pos, e))?;
            if !full {
                map.update_latest_offset(h.last_offset());
            }
            Ok(!full)
        })?;
        if !completed {
            debug!(partition = %task.tp, segment = segment.base_offset, "offset map full; cleaning in passes");
            return Ok(());
        }
        // Offsets past the last batch up to the next segment are gaps: covered as well.
        map.update_latest_offset(segment.next_base - 1);
    }
    Ok(())
}

/// Puts the keyed records of one batch at or above `start` into the map; true when the map
/// filled up before the batch's end.
fn map_batch(
    map: &mut OffsetMap,
    bytes: &[u8],
    h: &BatchHeader,
    start: i64,
    stats: &mut CleanerStats,
) -> Result<bool, batch::BatchError> {
    batch::verify_crc(bytes, h)?;
    let payload = filter::records_section(bytes, h)?;
    let mut full = false;
    batch::walk_records(
        &mut batch::SliceSource::new(&payload),
        h.records_count,
        |r| {
            stats.map_records_read += 1;
            let offset = h.base_offset.saturating_add(r.offset_delta as i64);
            if let Some(key) = r.key {
                if offset >= start && !map.put(&payload[key], offset) {
                    full = true;
                    return Ok(ControlFlow::Break(()));
                }
            }
            Ok(ControlFlow::Continue(()))
        },
    )?;
    Ok(full)
}

/// Cleans the segments from `segments[0]` on into one `<base>.log.cleaned` (plus indexes),
/// taking each next segment while the cleaned segment stays within `segment.bytes` with it,
/// its indexes within `segment.index.bytes`, and its offsets within a 32-bit delta of its
/// base. Kafka's `groupSegmentsBySize` sums the sources' sizes; summing what was written so
/// far instead lets a run of mostly superseded segments become one segment at once, rather
/// than a run of near-empty ones that later cleans merge (consumers fetch one segment at a
/// time, so a long run of them costs a consumer one round trip each).
///
/// Returns how many segments the group took, the cleaned segment (`None` when there is
/// nothing to swap: the group holds no batch, or it is one segment that came out unchanged)
/// and the earliest delete horizon of the tombstones the group holds.
fn clean_group(
    reader: &mut Reader<'_>,
    segments: &[&SourceSegment],
    ctx: &FilterContext<'_>,
    stats: &mut CleanerStats,
) -> Result<(usize, Option<CleanedGroup>, Option<i64>), CleanError> {
    let task = reader.task;
    let base = segments[0].base_offset;
    let mut cleaned = LogSegment::create_with_suffix(
        &task.dir,
        base,
        task.segment_config,
        task.now_ms,
        CLEANED_SUFFIX,
    )?;
    let written = write_group(reader, segments, &mut cleaned, ctx, stats).and_then(|w| {
        cleaned.close_indexes()?;
        cleaned.flush()?;
        Ok(w)
    });
    let size = cleaned.size();
    drop(cleaned);
    let remove = || remove_cleaned_files(&task.dir, base);
    let group = match written {
        Ok(group) => group,
        Err(e) => {
            remove();
            return Err(e);
        }
    };
    let taken = group.taken;
    if !group.any_batch || (group.unchanged && taken == 1) {
        remove();
        return Ok((taken, None, group.horizon));
    }
    let path = segment_file_with(&task.dir, base, LOG_SUFFIX, CLEANED_SUFFIX);
    let identify = || -> std::io::Result<(u64, u64)> {
        let file = File::options().write(true).open(&path)?;
        // The cleaned segment keeps the age of the data it holds (Kafka sets lastModified).
        if let Some(modified) = segments[taken - 1].last_modified {
            file.set_modified(modified)?;
        }
        let meta = file.metadata()?;
        Ok((meta.dev(), meta.ino()))
    };
    let file_id = match identify() {
        Ok(id) => id,
        Err(e) => {
            remove();
            return Err(StorageError::io(format!("stat {}", path.display()), e).into());
        }
    };
    let cleaned = CleanedGroup {
        base_offset: base,
        replaces: segments[..taken]
            .iter()
            .map(|s| (s.base_offset, s.generation))
            .collect(),
        file_id,
        size,
    };
    Ok((taken, Some(cleaned), group.horizon))
}

/// What [`write_group`] wrote.
struct WrittenGroup {
    /// Source segments taken into the group.
    taken: usize,
    /// The sources held at least one batch.
    any_batch: bool,
    /// Every batch went out verbatim.
    unchanged: bool,
    /// The earliest tombstone horizon written.
    horizon: Option<i64>,
}

/// Filters the batches of `segments[0]` and of as many following segments as fit (see
/// [`clean_group`]) into `cleaned`, ending with the group's last batch, emptied to a header
/// when the filter dropped it.
fn write_group(
    reader: &mut Reader<'_>,
    segments: &[&SourceSegment],
    cleaned: &mut LogSegment,
    ctx: &FilterContext<'_>,
    stats: &mut CleanerStats,
) -> Result<WrittenGroup, CleanError> {
    let task = reader.task;
    let io_buffer_bytes = reader.io.io_buffer_bytes;
    let base = segments[0].base_offset;
    let mut out: Vec<u8> = Vec::with_capacity(io_buffer_bytes);
    let mut headers: Vec<BatchHeader> = Vec::new();
    let mut group = WrittenGroup {
        taken: 0,
        any_batch: false,
        unchanged: true,
        horizon: None,
    };
    // The group's last batch so far, when the filter dropped it.
    let mut last_dropped: Option<BatchHeader> = None;
    for (i, segment) in segments.iter().enumerate() {
        if i > 0 {
            let written =
                cleaned.size() as usize + out.len() + last_dropped.map_or(0, |_| BatchHeader::SIZE);
            let (index, time_index) = cleaned.index_sizes();
            let last_offset = segments
                .get(i + 1)
                .map_or(task.first_uncleanable_offset, |s| s.base_offset)
                - 1;
            let fits = written as u64 + segment.size <= task.segment_bytes
                && index + segment.index_bytes.0 <= task.max_index_bytes
                && time_index + segment.index_bytes.1 <= task.max_index_bytes
                && (segment.size == 0 || last_offset - base <= i32::MAX as i64);
            if !fits {
                break;
            }
        }
        group.taken += 1;
        let written_before = stats.bytes_written;
        reader.for_each_batch(segment, 0, |pos, h, bytes| {
            group.any_batch = true;
            stats.bytes_read += h.total_size() as u64;
            let before = out.len();
            let filtered = filter_batch(bytes, h, ctx, &mut out, &mut headers)
                .map_err(|e| corrupt(task, segment, pos, e))?;
            last_dropped = (!filtered.written).then_some(*h);
            group.unchanged &= filtered.verbatim;
            stats.records_read += filtered.records_read as u64;
            stats.records_written += filtered.records_kept as u64;
            stats.bytes_written += (out.len() - before) as u64;
            if let Some(h) = filtered.tombstone_horizon {
                group.horizon = Some(group.horizon.map_or(h, |x| x.min(h)));
            }
            if out.len() >= io_buffer_bytes {
                cleaned.append(&out, &headers)?;
                out.clear();
                headers.clear();
            }
            Ok(true)
        })?;
        reader
            .throttle
            .consume((stats.bytes_written - written_before) as usize);
    }
    if let Some(h) = last_dropped {
        headers.push(write_empty_header(&mut out, &h));
        stats.bytes_written += BatchHeader::SIZE as u64;
    }
    if !out.is_empty() {
        cleaned.append(&out, &headers)?;
    }
    Ok(group)
}

/// Reads a clean's source segments: chunked scans, the abort flag, the I/O throttle.
struct Reader<'a> {
    task: &'a CleanTask,
    io: &'a CleanerIo,
    abort: &'a AtomicBool,
    throttle: Throttle,
}

impl Reader<'_> {
    /// Calls `f(position, header, bytes)` for every batch of `segment` from byte `from`, until
    /// it returns false; returns whether every batch was seen.
    fn for_each_batch(
        &mut self,
        segment: &SourceSegment,
        from: u64,
        mut f: impl FnMut(u64, &BatchHeader, &[u8]) -> Result<bool, CleanError>,
    ) -> Result<bool, CleanError> {
        let mut scanner = scan_file(&segment.file, from, segment.size, self.io.io_buffer_bytes);
        loop {
            check_abort(self.abort)?;
            let (pos, h, bytes) = match scanner.next_batch() {
                Ok(Some(found)) => found,
                Ok(None) => return Ok(true),
                Err(e) => return Err(scan_error(self.task, segment, e).into()),
            };
            self.throttle.consume(h.total_size());
            if !f(pos, &h, bytes)? {
                return Ok(false);
            }
        }
    }
}

fn corrupt(
    task: &CleanTask,
    segment: &SourceSegment,
    pos: u64,
    e: batch::BatchError,
) -> CleanError {
    StorageError::Corrupt(format!(
        "{}: segment {} batch at byte {pos}: {e}",
        task.tp, segment.base_offset
    ))
    .into()
}

fn check_abort(abort: &AtomicBool) -> Result<(), CleanError> {
    if abort.load(Ordering::Relaxed) {
        Err(CleanError::Aborted)
    } else {
        Ok(())
    }
}

fn scan_error(task: &CleanTask, segment: &SourceSegment, e: ScanError) -> StorageError {
    let what = format!("{}: segment {}", task.tp, segment.base_offset);
    match e {
        ScanError::Io(e) => StorageError::io(format!("read {what}"), e),
        ScanError::Torn(pos) => StorageError::Corrupt(format!("{what}: torn batch at byte {pos}")),
        ScanError::Corrupt(pos, why) => {
            StorageError::Corrupt(format!("{what}: bad batch at byte {pos}: {why}"))
        }
    }
}

/// Removes a cleaned segment's three files (a clean that failed or will not be swapped).
fn remove_cleaned_files(dir: &Path, base: i64) {
    for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
        let _ = std::fs::remove_file(segment_file_with(dir, base, suffix, CLEANED_SUFFIX));
    }
}

/// Removes the files of cleaned groups that will not be swapped in, each only while its
/// `.log.cleaned` is still the file the clean wrote (the name may have been reused since).
pub fn discard_cleaned(dir: &Path, groups: &[CleanedGroup]) {
    for g in groups {
        let path = segment_file_with(dir, g.base_offset, LOG_SUFFIX, CLEANED_SUFFIX);
        let ours = std::fs::metadata(&path)
            .map(|m| (m.dev(), m.ino()) == g.file_id)
            .unwrap_or(false);
        if ours {
            remove_cleaned_files(dir, g.base_offset);
        }
    }
}

/// Kafka's `Throttler`: sleeps the cleaning thread so its I/O stays below a rate.
struct Throttle {
    bytes_per_second: f64,
    window_start: Instant,
    bytes: f64,
}

impl Throttle {
    /// How often the rate is checked.
    const CHECK_INTERVAL: Duration = Duration::from_millis(100);

    fn new(bytes_per_second: f64) -> Self {
        Throttle {
            bytes_per_second,
            window_start: Instant::now(),
            bytes: 0.0,
        }
    }

    fn consume(&mut self, bytes: usize) {
        if !(self.bytes_per_second.is_finite() && self.bytes_per_second > 0.0)
            || self.bytes_per_second >= f64::MAX
        {
            return;
        }
        self.bytes += bytes as f64;
        let elapsed = self.window_start.elapsed();
        if elapsed < Self::CHECK_INTERVAL {
            return;
        }
        let allowed = Duration::from_secs_f64(self.bytes / self.bytes_per_second);
        if allowed > elapsed {
            std::thread::sleep(allowed - elapsed);
        }
        self.window_start = Instant::now();
        self.bytes = 0.0;
    }
}

#[cfg(test)]
mod model;
#[cfg(test)]
pub(crate) mod tests;
