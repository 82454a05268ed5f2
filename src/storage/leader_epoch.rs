//! Kafka's `LeaderEpochFileCache`: for one partition replica, the offset at which each leader
//! epoch began, persisted in the partition's `leader-epoch-checkpoint` (`epoch startOffset`
//! lines). Followers use it to truncate by epoch (KIP-101, OffsetsForLeaderEpoch) instead of
//! by high-water mark.
//!
//! Every change rewrites the checkpoint atomically (temp file + rename); the fsync is left to
//! [`LeaderEpochFileCache::flush`], which the log calls when it flushes, so the append path
//! that assigns a new epoch does no fsync (Kafka 3.7+ does the same).

use std::path::{Path, PathBuf};

use super::checkpoint::{read_entries, render, write_atomically};
use super::log::StorageError;

/// Kafka's "no epoch" marker.
pub const UNDEFINED_EPOCH: i32 = -1;
/// Kafka's "no offset" answer to OffsetsForLeaderEpoch.
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;

/// The first offset written in one leader epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

pub struct LeaderEpochFileCache {
    /// `<partition dir>/leader-epoch-checkpoint`.
    path: PathBuf,
    /// Entries with strictly increasing epochs and start offsets. A Vec, not a map: a
    /// partition sees few epochs and every query wants the order.
    epochs: Vec<EpochEntry>,
    /// Written since the last fsync; `flush` syncs only then.
    unsynced: bool,
}

impl LeaderEpochFileCache {
    pub const FILE_NAME: &'static str = "leader-epoch-checkpoint";
    const VERSION: i32 = 0;

    /// Loads the partition's checkpoint; a missing file is an empty cache. A malformed file is
    /// an error: the log then rebuilds the cache from its batches' leader epochs.
    pub fn load(partition_dir: &Path) -> Result<Self, StorageError> {
        let path = partition_dir.join(Self::FILE_NAME);
        let entries = read_entries(&path, Self::VERSION)?.unwrap_or_default();
        let mut epochs = Vec::with_capacity(entries.len());
        for line in entries {
            let mut parts = line.split_whitespace();
            let entry = match (parts.next(), parts.next(), parts.next()) {
                (Some(e), Some(o), None) => {
                    e.parse::<i32>()
                        .ok()
                        .zip(o.parse::<i64>().ok())
                        .map(|(epoch, start_offset)| EpochEntry {
                            epoch,
                            start_offset,
                        })
                }
                _ => None,
            };
            let entry = entry.ok_or_else(|| {
                StorageError::Corrupt(format!("{}: malformed line {line:?}", path.display()))
            })?;
            if let Some(last) = epochs.last() {
                let last: &EpochEntry = last;
                if entry.epoch <= last.epoch || entry.start_offset < last.start_offset {
                    return Err(StorageError::Corrupt(format!(
                        "{}: entries out of order at {line:?}",
                        path.display()
                    )));
                }
            }
            epochs.push(entry);
        }
        Ok(LeaderEpochFileCache {
            path,
            epochs,
            unsynced: false,
        })
    }

    /// An empty cache that will write to `partition_dir` (used when the checkpoint is corrupt
    /// and is rebuilt from the log).
    pub(crate) fn empty(partition_dir: &Path) -> Self {
        LeaderEpochFileCache {
            path: partition_dir.join(Self::FILE_NAME),
            epochs: Vec::new(),
            unsynced: true,
        }
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.epochs
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.last().map(|e| e.epoch)
    }

    pub fn latest_entry(&self) -> Option<EpochEntry> {
        self.epochs.last().copied()
    }

    pub fn earliest_entry(&self) -> Option<EpochEntry> {
        self.epochs.first().copied()
    }

    /// Records that `epoch` began at `start_offset` (Kafka's `assign`): ignored unless it is a
    /// new epoch or moves the latest epoch's start back; entries it contradicts (epoch or
    /// start offset at or above it) are dropped first.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> Result<(), StorageError> {
        if epoch < 0 || start_offset < 0 {
            return Ok(());
        }
        if let Some(last) = self.epochs.last() {
            if last.epoch == epoch && start_offset >= last.start_offset {
                return Ok(());
            }
        }
        while let Some(last) = self.epochs.last() {
            if last.epoch >= epoch || last.start_offset >= start_offset {
                self.epochs.pop();
            } else {
                break;
            }
        }
        self.epochs.push(EpochEntry {
            epoch,
            start_offset,
        });
        self.write()
    }

    /// Kafka's `endOffsetFor`: the epoch the leader has for `requested_epoch` and the offset
    /// where it ended: the start of the next higher epoch, or `log_end_offset` for the latest.
    /// `(-1, -1)` when the requested epoch is undefined or above every known epoch.
    pub fn end_offset_for(&self, requested_epoch: i32, log_end_offset: i64) -> (i32, i64) {
        let undefined = (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        if requested_epoch == UNDEFINED_EPOCH {
            return undefined;
        }
        if self.latest_epoch() == Some(requested_epoch) {
            return (requested_epoch, log_end_offset);
        }
        let Some(higher) = self.epochs.iter().find(|e| e.epoch > requested_epoch) else {
            return undefined;
        };
        match self
            .epochs
            .iter()
            .rev()
            .find(|e| e.epoch <= requested_epoch)
        {
            Some(floor) => (floor.epoch, higher.start_offset),
            // Below every known epoch: that epoch ended where the first known one began.
            None => (requested_epoch, higher.start_offset),
        }
    }

    /// The epoch of the leader that wrote `offset`, if known.
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        self.epochs
            .iter()
            .rev()
            .find(|e| e.start_offset <= offset)
            .map(|e| e.epoch)
    }

    /// Drops epochs that start at or after `end_offset` (the log was truncated there).
    pub fn truncate_from_end(&mut self, end_offset: i64) -> Result<(), StorageError> {
        if end_offset < 0 {
            return Ok(());
        }
        let before = self.epochs.len();
        self.epochs.retain(|e| e.start_offset < end_offset);
        if self.epochs.len() != before {
            self.write()?;
        }
        Ok(())
    }

    /// The log now starts at `start_offset`: epochs that started before it are dropped, except
    /// the last of them, which now starts at `start_offset` (Kafka's `truncateFromStart`).
    pub fn truncate_from_start(&mut self, start_offset: i64) -> Result<(), StorageError> {
        let removed = self
            .epochs
            .iter()
            .take_while(|e| e.start_offset <= start_offset)
            .count();
        if removed == 0 {
            return Ok(());
        }
        let last_removed = self.epochs[removed - 1];
        if removed == 1 && last_removed.start_offset == start_offset {
            return Ok(());
        }
        self.epochs.drain(..removed);
        self.epochs.insert(
            0,
            EpochEntry {
                epoch: last_removed.epoch,
                start_offset,
            },
        );
        self.write()
    }

    /// Forgets every epoch (the log was emptied).
    pub fn clear(&mut self) -> Result<(), StorageError> {
        self.epochs.clear();
        self.write()
    }

    /// fsyncs the checkpoint if it changed since the last flush.
    pub fn flush(&mut self) -> Result<(), StorageError> {
        if !self.unsynced {
            return Ok(());
        }
        self.write_file(true)?;
        self.unsynced = false;
        Ok(())
    }

    fn write(&mut self) -> Result<(), StorageError> {
        self.write_file(false)?;
        self.unsynced = true;
        Ok(())
    }

    fn write_file(&self, durable: bool) -> Result<(), StorageError> {
        let lines: Vec<String> = self
            .epochs
            .iter()
            .map(|e| format!("{} {}", e.epoch, e.start_offset))
            .collect();
        write_atomically(
            &self.path,
            render(Self::VERSION, &lines).as_bytes(),
            durable,
        )
        .map_err(|e| StorageError::io(format!("write {}", self.path.display()), e))
    }

    /// The checkpoint file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> (tempfile::TempDir, LeaderEpochFileCache) {
        let dir = tempfile::tempdir().unwrap();
        let c = LeaderEpochFileCache::load(dir.path()).unwrap();
        (dir, c)
    }

    fn pairs(c: &LeaderEpochFileCache) -> Vec<(i32, i64)> {
        c.entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }

    #[test]
    fn assign_keeps_epochs_and_offsets_increasing() {
        let (_d, mut c) = cache();
        c.assign(0, 0).unwrap();
        c.assign(0, 5).unwrap(); // same epoch, later offset: no change
        c.assign(1, 10).unwrap();
        c.assign(3, 20).unwrap();
        assert_eq!(pairs(&c), vec![(0, 0), (1, 10), (3, 20)]);
        // A new epoch starting before existing entries drops the ones it contradicts.
        c.assign(4, 15).unwrap();
        assert_eq!(pairs(&c), vec![(0, 0), (1, 10), (4, 15)]);
    }

    #[test]
    fn checkpoint_is_written_in_kafkas_format_and_reloads() {
        let (dir, mut c) = cache();
        c.assign(2, 0).unwrap();
        c.assign(5, 100).unwrap();
        c.flush().unwrap();
        let text = std::fs::read_to_string(dir.path().join("leader-epoch-checkpoint")).unwrap();
        assert_eq!(text, "0\n2\n2 0\n5 100\n");
        let reloaded = LeaderEpochFileCache::load(dir.path()).unwrap();
        assert_eq!(pairs(&reloaded), vec![(2, 0), (5, 100)]);
    }

    #[test]
    fn end_offset_for_follows_kafka() {
        let (_d, mut c) = cache();
        c.assign(1, 0).unwrap();
        c.assign(3, 50).unwrap();
        c.assign(5, 80).unwrap();
        assert_eq!(
            c.end_offset_for(5, 120),
            (5, 120),
            "latest epoch ends at the LEO"
        );
        assert_eq!(c.end_offset_for(3, 120), (3, 80));
        assert_eq!(
            c.end_offset_for(4, 120),
            (3, 80),
            "unknown epoch maps to its floor"
        );
        assert_eq!(c.end_offset_for(0, 120), (0, 0), "below every epoch");
        assert_eq!(c.end_offset_for(6, 120), (-1, -1), "above every epoch");
        assert_eq!(c.end_offset_for(-1, 120), (-1, -1));
    }

    #[test]
    fn truncate_from_end_drops_epochs_starting_at_or_after() {
        let (_d, mut c) = cache();
        c.assign(1, 0).unwrap();
        c.assign(2, 10).unwrap();
        c.assign(3, 20).unwrap();
        c.truncate_from_end(10).unwrap();
        assert_eq!(pairs(&c), vec![(1, 0)]);
    }

    #[test]
    fn truncate_from_start_moves_the_first_epoch_up() {
        let (_d, mut c) = cache();
        c.assign(1, 0).unwrap();
        c.assign(2, 10).unwrap();
        c.assign(3, 20).unwrap();
        c.truncate_from_start(15).unwrap();
        assert_eq!(pairs(&c), vec![(2, 15), (3, 20)]);
        c.truncate_from_start(20).unwrap();
        assert_eq!(pairs(&c), vec![(3, 20)]);
    }

    #[test]
    fn malformed_checkpoint_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("leader-epoch-checkpoint"), "0\n2\n1 0\n").unwrap();
        assert!(LeaderEpochFileCache::load(dir.path()).is_err());
        std::fs::write(
            dir.path().join("leader-epoch-checkpoint"),
            "0\n2\n3 0\n1 5\n",
        )
        .unwrap();
        assert!(LeaderEpochFileCache::load(dir.path()).is_err());
    }
}
