//! Idempotent producers' state for one partition replica: Kafka's `ProducerStateManager`.
//!
//! For each producer id it keeps the epoch and the sequence ranges of the last five batches,
//! which is what lets a leader recognise a retried batch (and answer with the offset it was
//! first stored at), refuse a gap (OUT_OF_ORDER_SEQUENCE_NUMBER) and fence an old epoch
//! (INVALID_PRODUCER_EPOCH). Followers and recovery rebuild the same state from the batches
//! they append, so a new leader deduplicates as the old one did.
//!
//! Snapshots use Kafka's `<offset>.snapshot` format (version 1, CRC-32C over the entries),
//! written at segment rolls and clean shutdown; on open the newest snapshot at or below the
//! log end is loaded and the log after it replayed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Kafka keeps this many batches per producer for duplicate detection.
pub const BATCHES_TO_RETAIN: usize = 5;
const NO_PRODUCER_EPOCH: i16 = -1;
const NO_SEQUENCE: i32 = -1;
const SNAPSHOT_SUFFIX: &str = ".snapshot";
const SNAPSHOT_VERSION: i16 = 1;
/// Bytes of one snapshot entry: pid, epoch, last seq, last offset, offset delta, timestamp,
/// coordinator epoch, current txn first offset.
const SNAPSHOT_ENTRY_SIZE: usize = 8 + 2 + 4 + 8 + 4 + 8 + 4 + 8;

/// The producer fields of one batch, whatever it came from (a client, a leader, the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    /// `base_sequence + last_offset_delta`, wrapping at i32::MAX as Kafka's sequences do.
    pub last_sequence: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
}

impl ProducerBatch {
    /// Sequence arithmetic wraps: a producer's sequence after i32::MAX is 0.
    pub fn last_sequence_of(base_sequence: i32, last_offset_delta: i32) -> i32 {
        let last = base_sequence as i64 + last_offset_delta as i64;
        if last > i32::MAX as i64 {
            (last - i32::MAX as i64 - 1) as i32
        } else {
            last as i32
        }
    }
}

/// Why a producer's batch is refused; each is the Kafka error the client expects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProducerStateError {
    /// INVALID_PRODUCER_EPOCH (47): a zombie producer from an older epoch.
    #[error("producer {producer_id}'s epoch {epoch} is older than the current epoch {current}")]
    InvalidProducerEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    /// OUT_OF_ORDER_SEQUENCE_NUMBER (45): a gap, or a new epoch not starting at 0.
    #[error("out of order sequence for producer {producer_id} at epoch {epoch}: got {got}, expected {expected}")]
    OutOfOrderSequence {
        producer_id: i64,
        epoch: i16,
        got: i32,
        expected: i32,
    },
}

impl ProducerStateError {
    pub fn kafka_code(&self) -> i16 {
        match self {
            Self::InvalidProducerEpoch { .. } => 47,
            Self::OutOfOrderSequence { .. } => 45,
        }
    }
}

/// A retried batch that is already in the log: where it was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DuplicateBatch {
    pub first_offset: i64,
    pub last_offset: i64,
    pub timestamp: i64,
}

/// Metadata of one appended batch, enough to recognise a retry of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchMetadata {
    first_seq: i32,
    last_seq: i32,
    first_offset: i64,
    last_offset: i64,
    timestamp: i64,
}

/// One producer's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerStateEntry {
    pub epoch: i16,
    /// Newest last; at most [`BATCHES_TO_RETAIN`].
    batches: VecDeque<BatchMetadata>,
    /// Wall-clock ms of the last append, for `producer.id.expiration.ms`.
    pub last_timestamp: i64,
}

impl ProducerStateEntry {
    pub fn last_sequence(&self) -> i32 {
        self.batches
            .back()
            .map(|b| b.last_seq)
            .unwrap_or(NO_SEQUENCE)
    }

    pub fn last_offset(&self) -> i64 {
        self.batches.back().map(|b| b.last_offset).unwrap_or(-1)
    }
}

/// The state of every producer that has written to this partition.
#[derive(Debug, Default, Clone)]
pub struct ProducerStateManager {
    producers: HashMap<i64, ProducerStateEntry>,
    /// The log end offset this state reflects: snapshots are named after it.
    map_end_offset: i64,
}

fn in_sequence(last: i32, next: i32) -> bool {
    next as i64 == last as i64 + 1 || (next == 0 && last == i32::MAX)
}

impl ProducerStateManager {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn entry(&self, producer_id: i64) -> Option<&ProducerStateEntry> {
        self.producers.get(&producer_id)
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Every producer's last offset written (Kafka's `lastRecordsOfActiveProducers`, without
    /// transactions): the log cleaner keeps the batch ending there.
    pub fn last_offsets(&self) -> HashMap<i64, i64> {
        self.producers
            .iter()
            .filter_map(|(id, entry)| {
                let last = entry.last_offset();
                (last >= 0).then_some((*id, last))
            })
            .collect()
    }

    pub fn map_end_offset(&self) -> i64 {
        self.map_end_offset
    }

    /// A leader's check before appending a client's batch: `Ok(Some(_))` for a retry of a
    /// batch already stored (answer with its offsets, append nothing), `Ok(None)` to append.
    pub fn check(
        &self,
        batch: &ProducerBatch,
    ) -> Result<Option<DuplicateBatch>, ProducerStateError> {
        let Some(entry) = self.producers.get(&batch.producer_id) else {
            // No state (new producer, or its records were deleted by retention): any sequence
            // is accepted, as Kafka does since KIP-360.
            return Ok(None);
        };
        if batch.producer_epoch < entry.epoch {
            return Err(ProducerStateError::InvalidProducerEpoch {
                producer_id: batch.producer_id,
                epoch: batch.producer_epoch,
                current: entry.epoch,
            });
        }
        if batch.producer_epoch == entry.epoch {
            if let Some(dup) = entry
                .batches
                .iter()
                .find(|b| b.first_seq == batch.base_sequence && b.last_seq == batch.last_sequence)
            {
                return Ok(Some(DuplicateBatch {
                    first_offset: dup.first_offset,
                    last_offset: dup.last_offset,
                    timestamp: dup.timestamp,
                }));
            }
            let last = entry.last_sequence();
            if entry.epoch != NO_PRODUCER_EPOCH
                && last != NO_SEQUENCE
                && !in_sequence(last, batch.base_sequence)
            {
                return Err(ProducerStateError::OutOfOrderSequence {
                    producer_id: batch.producer_id,
                    epoch: batch.producer_epoch,
                    got: batch.base_sequence,
                    expected: last.wrapping_add(1).max(0),
                });
            }
        } else if batch.base_sequence != 0 {
            // A bumped epoch (KIP-360) starts its sequences again at 0.
            return Err(ProducerStateError::OutOfOrderSequence {
                producer_id: batch.producer_id,
                epoch: batch.producer_epoch,
                got: batch.base_sequence,
                expected: 0,
            });
        }
        Ok(None)
    }

    /// Records an appended batch (leader after append, follower append, recovery replay).
    /// Never refuses: the log is the truth, so state follows it.
    pub fn update(&mut self, batch: &ProducerBatch) {
        if batch.producer_id >= 0 {
            let entry =
                self.producers
                    .entry(batch.producer_id)
                    .or_insert_with(|| ProducerStateEntry {
                        epoch: batch.producer_epoch,
                        batches: VecDeque::with_capacity(BATCHES_TO_RETAIN),
                        last_timestamp: batch.max_timestamp,
                    });
            if batch.producer_epoch != entry.epoch {
                entry.epoch = batch.producer_epoch;
                entry.batches.clear();
            }
            if entry.batches.len() == BATCHES_TO_RETAIN {
                entry.batches.pop_front();
            }
            entry.batches.push_back(BatchMetadata {
                first_seq: batch.base_sequence,
                last_seq: batch.last_sequence,
                first_offset: batch.first_offset,
                last_offset: batch.last_offset,
                timestamp: batch.max_timestamp,
            });
            entry.last_timestamp = entry.last_timestamp.max(batch.max_timestamp);
        }
        self.map_end_offset = self.map_end_offset.max(batch.last_offset + 1);
    }

    /// Notes that the log now ends at `offset` without producer batches in between
    /// (e.g. batches without a producer id).
    pub fn advance_to(&mut self, offset: i64) {
        self.map_end_offset = self.map_end_offset.max(offset);
    }

    /// Drops producers idle for longer than `expiration_ms` (`producer.id.expiration.ms`).
    pub fn remove_expired(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, e| now_ms.saturating_sub(e.last_timestamp) < expiration_ms);
        before - self.producers.len()
    }

    /// After the log is truncated to `offset`: batches at or past it are gone, so are their
    /// entries (the caller rebuilds from the newest snapshot below `offset` plus the log).
    pub fn truncate_and_reload(
        &mut self,
        dir: &Path,
        log_start: i64,
        offset: i64,
    ) -> std::io::Result<()> {
        delete_snapshots_from(dir, offset + 1)?;
        delete_snapshots_below(dir, log_start)?;
        self.producers.clear();
        self.map_end_offset = log_start;
        if let Some((snap_offset, path)) = latest_snapshot_at_or_below(dir, offset)? {
            match read_snapshot(&path) {
                Ok(producers) => {
                    self.producers = producers;
                    self.map_end_offset = snap_offset;
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring corrupt producer snapshot");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        Ok(())
    }

    /// Writes `<map_end_offset>.snapshot` in `dir` (temp file, fsync, rename).
    pub fn take_snapshot(&self, dir: &Path) -> std::io::Result<PathBuf> {
        let path = snapshot_path(dir, self.map_end_offset);
        let tmp = path.with_extension("snapshot.tmp");
        let bytes = encode_snapshot(&self.producers);
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }
}

pub fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}{SNAPSHOT_SUFFIX}"))
}

/// Snapshot files in `dir`, by offset.
pub fn list_snapshots(dir: &Path) -> std::io::Result<BTreeMap<i64, PathBuf>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(SNAPSHOT_SUFFIX) {
            if let Ok(offset) = stem.parse::<i64>() {
                out.insert(offset, entry.path());
            }
        }
    }
    Ok(out)
}

fn latest_snapshot_at_or_below(dir: &Path, offset: i64) -> std::io::Result<Option<(i64, PathBuf)>> {
    Ok(list_snapshots(dir)?
        .range(..=offset)
        .next_back()
        .map(|(o, p)| (*o, p.clone())))
}

fn delete_snapshots_from(dir: &Path, offset: i64) -> std::io::Result<()> {
    for (_, path) in list_snapshots(dir)?.range(offset..) {
        std::fs::remove_file(path)?;
    }
    Ok(())
}

/// Snapshots below the log start offset describe deleted data.
pub fn delete_snapshots_below(dir: &Path, offset: i64) -> std::io::Result<()> {
    for (_, path) in list_snapshots(dir)?.range(..offset) {
        std::fs::remove_file(path)?;
    }
    Ok(())
}

fn encode_snapshot(producers: &HashMap<i64, ProducerStateEntry>) -> Vec<u8> {
    let mut entries: Vec<_> = producers
        .iter()
        .filter(|(_, e)| !e.batches.is_empty())
        .collect();
    entries.sort_by_key(|(pid, _)| **pid);
    let mut body = Vec::with_capacity(4 + entries.len() * SNAPSHOT_ENTRY_SIZE);
    body.extend_from_slice(&(entries.len() as i32).to_be_bytes());
    for (pid, e) in entries {
        let last = e.batches.back().expect("non-empty");
        body.extend_from_slice(&pid.to_be_bytes());
        body.extend_from_slice(&e.epoch.to_be_bytes());
        body.extend_from_slice(&last.last_seq.to_be_bytes());
        body.extend_from_slice(&last.last_offset.to_be_bytes());
        body.extend_from_slice(&((last.last_offset - last.first_offset) as i32).to_be_bytes());
        body.extend_from_slice(&e.last_timestamp.to_be_bytes());
        body.extend_from_slice(&(-1i32).to_be_bytes()); // coordinator epoch: no transactions
        body.extend_from_slice(&(-1i64).to_be_bytes()); // current txn first offset: none
    }
    let mut out = Vec::with_capacity(6 + body.len());
    out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Reads a snapshot; a short, corrupt or wrong-version file is an error (the caller deletes
/// it and rebuilds from the log).
pub fn read_snapshot(path: &Path) -> std::io::Result<HashMap<i64, ProducerStateEntry>> {
    let bytes = std::fs::read(path)?;
    decode_snapshot(&bytes).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}

fn decode_snapshot(bytes: &[u8]) -> Result<HashMap<i64, ProducerStateEntry>, String> {
    if bytes.len() < 10 {
        return Err("snapshot too short".into());
    }
    let version = i16::from_be_bytes([bytes[0], bytes[1]]);
    if version != SNAPSHOT_VERSION {
        return Err(format!("unknown snapshot version {version}"));
    }
    let crc = u32::from_be_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]);
    let body = &bytes[6..];
    if crc32c::crc32c(body) != crc {
        return Err("snapshot checksum mismatch".into());
    }
    let count = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    if count < 0 || body.len() != 4 + count as usize * SNAPSHOT_ENTRY_SIZE {
        return Err("snapshot length does not match its entry count".into());
    }
    let mut out = HashMap::with_capacity(count as usize);
    for chunk in body[4..].chunks_exact(SNAPSHOT_ENTRY_SIZE) {
        let i64_at = |o: usize| i64::from_be_bytes(chunk[o..o + 8].try_into().expect("8 bytes"));
        let i32_at = |o: usize| i32::from_be_bytes(chunk[o..o + 4].try_into().expect("4 bytes"));
        let pid = i64_at(0);
        let epoch = i16::from_be_bytes([chunk[8], chunk[9]]);
        let last_seq = i32_at(10);
        let last_offset = i64_at(14);
        let offset_delta = i32_at(22);
        let timestamp = i64_at(26);
        let first_seq = if last_seq >= offset_delta {
            last_seq - offset_delta
        } else {
            0
        };
        out.insert(
            pid,
            ProducerStateEntry {
                epoch,
                batches: VecDeque::from([BatchMetadata {
                    first_seq,
                    last_seq,
                    first_offset: last_offset - offset_delta as i64,
                    last_offset,
                    timestamp,
                }]),
                last_timestamp: timestamp,
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(pid: i64, epoch: i16, seq: i32, count: i32, offset: i64) -> ProducerBatch {
        ProducerBatch {
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            last_sequence: ProducerBatch::last_sequence_of(seq, count - 1),
            first_offset: offset,
            last_offset: offset + count as i64 - 1,
            max_timestamp: 1_000 + offset,
        }
    }

    #[test]
    fn a_retried_batch_gets_its_original_offsets_back() {
        let mut s = ProducerStateManager::new();
        s.update(&batch(7, 0, 0, 10, 100));
        s.update(&batch(7, 0, 10, 10, 110));
        let retry = batch(7, 0, 0, 10, 999);
        let dup = s.check(&retry).unwrap().expect("duplicate");
        assert_eq!((dup.first_offset, dup.last_offset), (100, 109));
        assert_eq!(s.check(&batch(7, 0, 20, 5, 120)).unwrap(), None);
    }

    #[test]
    fn only_the_last_five_batches_are_recognised() {
        let mut s = ProducerStateManager::new();
        for i in 0..6 {
            s.update(&batch(1, 0, i * 2, 2, i as i64 * 2));
        }
        // The first batch (seq 0-1) fell out of the window: a retry of it is now a gap.
        assert!(matches!(
            s.check(&batch(1, 0, 0, 2, 50)),
            Err(ProducerStateError::OutOfOrderSequence { .. })
        ));
        assert!(s.check(&batch(1, 0, 2, 2, 50)).unwrap().is_some());
    }

    #[test]
    fn a_sequence_gap_is_out_of_order() {
        let mut s = ProducerStateManager::new();
        s.update(&batch(1, 0, 0, 5, 0));
        let err = s.check(&batch(1, 0, 7, 1, 5)).unwrap_err();
        assert_eq!(
            err,
            ProducerStateError::OutOfOrderSequence {
                producer_id: 1,
                epoch: 0,
                got: 7,
                expected: 5
            }
        );
        assert_eq!(err.kafka_code(), 45);
    }

    #[test]
    fn an_older_epoch_is_fenced() {
        let mut s = ProducerStateManager::new();
        s.update(&batch(1, 3, 0, 1, 0));
        let err = s.check(&batch(1, 2, 1, 1, 1)).unwrap_err();
        assert_eq!(err.kafka_code(), 47);
    }

    #[test]
    fn a_bumped_epoch_restarts_sequences_at_zero() {
        let mut s = ProducerStateManager::new();
        s.update(&batch(1, 0, 0, 3, 0));
        assert!(s.check(&batch(1, 1, 3, 1, 3)).is_err());
        assert_eq!(s.check(&batch(1, 1, 0, 1, 3)).unwrap(), None);
        s.update(&batch(1, 1, 0, 1, 3));
        assert_eq!(s.entry(1).unwrap().epoch, 1);
        assert_eq!(s.entry(1).unwrap().last_sequence(), 0);
    }

    #[test]
    fn an_unknown_producer_may_start_at_any_sequence() {
        let s = ProducerStateManager::new();
        assert_eq!(s.check(&batch(9, 0, 42, 1, 0)).unwrap(), None);
    }

    #[test]
    fn sequences_wrap_after_i32_max() {
        assert_eq!(ProducerBatch::last_sequence_of(i32::MAX - 1, 2), 0);
        let mut s = ProducerStateManager::new();
        s.update(&ProducerBatch {
            producer_id: 1,
            producer_epoch: 0,
            base_sequence: i32::MAX - 1,
            last_sequence: i32::MAX,
            first_offset: 0,
            last_offset: 1,
            max_timestamp: 0,
        });
        assert_eq!(s.check(&batch(1, 0, 0, 1, 2)).unwrap(), None);
    }

    #[test]
    fn snapshot_round_trips_and_detects_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ProducerStateManager::new();
        s.update(&batch(1, 0, 0, 10, 0));
        s.update(&batch(2, 4, 5, 3, 10));
        let path = s.take_snapshot(dir.path()).unwrap();
        assert!(path.ends_with("00000000000000000013.snapshot"));
        let loaded = read_snapshot(&path).unwrap();
        assert_eq!(loaded[&2].epoch, 4);
        assert_eq!(loaded[&2].last_sequence(), 7);
        assert_eq!(loaded[&2].last_offset(), 12);

        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert!(read_snapshot(&path).is_err());
    }

    #[test]
    fn a_reloaded_snapshot_still_recognises_the_last_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ProducerStateManager::new();
        s.update(&batch(1, 0, 0, 10, 0));
        s.take_snapshot(dir.path()).unwrap();
        let mut reloaded = ProducerStateManager::new();
        reloaded.truncate_and_reload(dir.path(), 0, 10).unwrap();
        assert_eq!(reloaded.map_end_offset(), 10);
        let dup = reloaded
            .check(&batch(1, 0, 0, 10, 55))
            .unwrap()
            .expect("duplicate");
        assert_eq!(dup.first_offset, 0);
        assert_eq!(reloaded.check(&batch(1, 0, 10, 1, 10)).unwrap(), None);
    }

    #[test]
    fn truncation_drops_snapshots_past_the_new_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ProducerStateManager::new();
        s.update(&batch(1, 0, 0, 5, 0));
        s.take_snapshot(dir.path()).unwrap();
        s.update(&batch(1, 0, 5, 5, 5));
        s.take_snapshot(dir.path()).unwrap();
        s.truncate_and_reload(dir.path(), 0, 7).unwrap();
        assert_eq!(
            list_snapshots(dir.path())
                .unwrap()
                .keys()
                .copied()
                .collect::<Vec<_>>(),
            vec![5]
        );
        assert_eq!(s.entry(1).unwrap().last_sequence(), 4);
    }

    #[test]
    fn idle_producers_expire() {
        let mut s = ProducerStateManager::new();
        s.update(&batch(1, 0, 0, 1, 0)); // timestamp 1000
        s.update(&batch(2, 0, 0, 1, 5000)); // timestamp 6000
        assert_eq!(s.remove_expired(7000, 2000), 1);
        assert!(s.entry(1).is_none() && s.entry(2).is_some());
    }
}
