//! Kafka's `cleaner-offset-checkpoint`: per log dir, how far each compacted log has been
//! cleaned (`topic partition offset` lines, the offset checkpoint format). Offsets below a
//! log's entry are clean: every key there appears at most once. The next clean maps keys from
//! that offset (its "first dirty offset") on.
//!
//! One [`CleanerCheckpoints`] per log dir, shared by the log manager (which opens it), every
//! log of the dir (truncation and deletion edit it) and the log cleaner (which advances it,
//! through the swap that runs on the log's owner). A truncation below a log's entry must lower
//! the entry before new data lands there, or keys written after the truncation would count as
//! clean and never be compared with the older records they supersede; so truncation and
//! deletion write the file at once (Kafka's `maybeTruncateCheckpoint`), while a clean's
//! advance may be written later (losing it costs only a repeated clean).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tracing::warn;

use crate::storage::checkpoint::OffsetCheckpointFile;
use crate::storage::log::{StorageError, TopicPartition};

pub const CLEANER_OFFSET_CHECKPOINT: &str = "cleaner-offset-checkpoint";

/// A log dir's cleaner checkpoint, or an in-memory one for a log opened without a log
/// manager (tests, tools).
#[derive(Clone)]
pub struct CleanerCheckpoints {
    /// A std `Mutex`: never held across an `.await`. Held during a file write too, so writes
    /// from several threads go out one at a time and the last one carries the newest map.
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    /// `<log dir>/cleaner-offset-checkpoint`; `None` keeps the offsets in memory only.
    path: Option<PathBuf>,
    offsets: HashMap<TopicPartition, i64>,
}

impl std::fmt::Debug for CleanerCheckpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("CleanerCheckpoints")
            .field("path", &inner.path)
            .field("entries", &inner.offsets.len())
            .finish()
    }
}

impl CleanerCheckpoints {
    pub fn in_memory() -> Self {
        Self::new(None, HashMap::new())
    }

    /// Reads `<log_dir>/cleaner-offset-checkpoint`; a corrupt file is forgotten with a
    /// warning (the logs are then cleaned from their start, which is safe).
    pub fn open(log_dir: &Path) -> Self {
        let path = log_dir.join(CLEANER_OFFSET_CHECKPOINT);
        let offsets = match OffsetCheckpointFile::read(&path) {
            Ok(map) => map,
            Err(e) => {
                warn!("{e}; ignoring {}", path.display());
                HashMap::new()
            }
        };
        Self::new(Some(path), offsets)
    }

    fn new(path: Option<PathBuf>, offsets: HashMap<TopicPartition, i64>) -> Self {
        CleanerCheckpoints {
            inner: Arc::new(Mutex::new(Inner { path, offsets })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, tp: &TopicPartition) -> Option<i64> {
        self.lock().offsets.get(tp).copied()
    }

    /// A clean reached `offset`; call [`CleanerCheckpoints::write`] to persist it.
    pub fn advance(&self, tp: &TopicPartition, offset: i64) {
        self.lock().offsets.insert(tp.clone(), offset);
    }

    /// The log was truncated to `offset`: an entry above it comes down, durably, before the
    /// truncated log takes new data.
    pub fn truncate(&self, tp: &TopicPartition, offset: i64) -> Result<(), StorageError> {
        let mut inner = self.lock();
        match inner.offsets.get(tp) {
            Some(&current) if current > offset => {
                inner.offsets.insert(tp.clone(), offset);
                Self::write_locked(&inner)
            }
            _ => Ok(()),
        }
    }

    /// Forgets a log (deleted, or its entry no longer fits it); durably.
    pub fn remove(&self, tp: &TopicPartition) -> Result<(), StorageError> {
        let mut inner = self.lock();
        if inner.offsets.remove(tp).is_some() {
            Self::write_locked(&inner)
        } else {
            Ok(())
        }
    }

    /// Writes the current entries (atomically and durably). Blocking: callers on an actor
    /// thread run it on a blocking thread.
    pub fn write(&self) -> Result<(), StorageError> {
        Self::write_locked(&self.lock())
    }

    fn write_locked(inner: &Inner) -> Result<(), StorageError> {
        match &inner.path {
            Some(path) => OffsetCheckpointFile::write(path, &inner.offsets),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_in_kafkas_format() {
        let dir = tempfile::tempdir().unwrap();
        let cp = CleanerCheckpoints::open(dir.path());
        let tp = TopicPartition::new("__consumer_offsets", 7);
        cp.advance(&tp, 1234);
        cp.write().unwrap();
        let text = std::fs::read_to_string(dir.path().join(CLEANER_OFFSET_CHECKPOINT)).unwrap();
        assert_eq!(text, "0\n1\n__consumer_offsets 7 1234\n");
        assert_eq!(CleanerCheckpoints::open(dir.path()).get(&tp), Some(1234));
    }

    #[test]
    fn truncation_lowers_an_entry_durably_and_never_raises_one() {
        let dir = tempfile::tempdir().unwrap();
        let cp = CleanerCheckpoints::open(dir.path());
        let tp = TopicPartition::new("t", 0);
        cp.advance(&tp, 100);
        cp.truncate(&tp, 40).unwrap();
        assert_eq!(CleanerCheckpoints::open(dir.path()).get(&tp), Some(40));
        cp.truncate(&tp, 90).unwrap();
        assert_eq!(cp.get(&tp), Some(40));
    }

    #[test]
    fn removal_forgets_the_log_durably() {
        let dir = tempfile::tempdir().unwrap();
        let cp = CleanerCheckpoints::open(dir.path());
        let tp = TopicPartition::new("t", 0);
        cp.advance(&tp, 5);
        cp.write().unwrap();
        cp.remove(&tp).unwrap();
        assert_eq!(CleanerCheckpoints::open(dir.path()).get(&tp), None);
    }

    #[test]
    fn a_corrupt_checkpoint_is_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CLEANER_OFFSET_CHECKPOINT), "garbage").unwrap();
        let cp = CleanerCheckpoints::open(dir.path());
        assert_eq!(cp.get(&TopicPartition::new("t", 0)), None);
    }
}
