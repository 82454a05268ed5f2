//! Kafka's `TimeIndex`: the sparse map from max timestamp so far to offset in one segment.
//! Entries are 12 bytes, big-endian `timestamp i64, (offset - base_offset) as u32`; timestamps
//! strictly increase, so a lookup finds the last entry not after a target time and ListOffsets
//! scans forward from the offset it names. One entry is always kept free for the final entry
//! a segment writes when it closes (Kafka's `isFull`).

use std::io;
use std::path::Path;

use tracing::warn;

use super::index_file::{IndexFile, IndexView};

/// A timestamp and the offset of the batch that carried it (Kafka's `TimestampOffset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    pub timestamp: i64,
    pub offset: i64,
}

pub struct TimeIndex {
    /// The segment's base offset: entries store offsets relative to it.
    base_offset: i64,
    file: IndexFile,
}

impl TimeIndex {
    pub const ENTRY_SIZE: usize = 12;

    pub fn create(path: &Path, base_offset: i64, max_index_bytes: usize) -> io::Result<Self> {
        Ok(TimeIndex {
            base_offset,
            file: IndexFile::create(path, Self::ENTRY_SIZE, max_index_bytes)?,
        })
    }

    /// Opens an existing index without mapping it; its entries are sanity-checked on first
    /// use (a broken one is then ignored) or by [`TimeIndex::sanity_check`].
    pub fn open(path: &Path, base_offset: i64) -> io::Result<Self> {
        Ok(TimeIndex {
            base_offset,
            file: IndexFile::open(path, Self::ENTRY_SIZE)?,
        })
    }

    pub fn entries(&self) -> usize {
        self.file.entries()
    }

    /// Whether the file is mapped now.
    pub fn is_mapped(&self) -> bool {
        self.file.is_mapped()
    }

    /// Full one entry early, keeping room for the entry written on close.
    pub fn is_full(&self) -> bool {
        self.file.entries() + 1 >= self.file.max_entries()
    }

    fn decode(&self, e: &[u8]) -> TimestampOffset {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&e[..8]);
        TimestampOffset {
            timestamp: i64::from_be_bytes(ts),
            offset: self.base_offset + u32::from_be_bytes([e[8], e[9], e[10], e[11]]) as i64,
        }
    }

    /// The entries mapped, sanity-checked on the first use of an opened index (see
    /// `OffsetIndex::view`).
    fn view(&self) -> IndexView {
        let view = self.file.view();
        if self.file.take_unchecked() {
            if let Err(why) = self.check_entries(&view) {
                warn!("{why}; ignoring the index until the segment is recovered");
                self.file.forget_entries();
                return IndexView::empty(Self::ENTRY_SIZE);
            }
        }
        view
    }

    pub fn last_entry(&self) -> Option<TimestampOffset> {
        let view = self.view();
        match view.entries() {
            0 => None,
            n => Some(self.decode(view.entry(n - 1))),
        }
    }

    /// The size is whole entries: the check an open makes without mapping the file.
    pub fn check_size(&self) -> Result<(), String> {
        self.file.check_size("time index")
    }

    /// Whole entries only; timestamps strictly and offsets weakly increasing, offsets at or
    /// above the base. Maps the file.
    pub fn sanity_check(&self) -> Result<(), String> {
        self.check_size()?;
        self.file.take_unchecked();
        self.check_entries(&self.file.view())
    }

    fn check_entries(&self, view: &IndexView) -> Result<(), String> {
        let mut prev: Option<TimestampOffset> = None;
        for n in 0..view.entries() {
            let e = self.decode(view.entry(n));
            let ok = match prev {
                None => true,
                Some(p) => e.timestamp > p.timestamp && e.offset >= p.offset,
            };
            if !ok {
                return Err(format!(
                    "time index {} entry {n} ({}, {}) is out of order",
                    self.file.path().display(),
                    e.timestamp,
                    e.offset
                ));
            }
            prev = Some(e);
        }
        Ok(())
    }

    /// Appends `(timestamp, offset)` if the timestamp is above the last entry's (Kafka's
    /// `maybeAppend`); `skip_full_check` uses the slot kept for a closing segment.
    pub fn maybe_append(&mut self, timestamp: i64, offset: i64, skip_full_check: bool) -> bool {
        let relative = offset - self.base_offset;
        if !(0..=u32::MAX as i64).contains(&relative) {
            return false;
        }
        if let Some(last) = self.last_entry() {
            if timestamp <= last.timestamp || offset < last.offset {
                return false;
            }
        }
        if !skip_full_check && self.is_full() {
            return false;
        }
        let mut e = [0u8; Self::ENTRY_SIZE];
        e[..8].copy_from_slice(&timestamp.to_be_bytes());
        e[8..].copy_from_slice(&(relative as u32).to_be_bytes());
        self.file.push(&e)
    }

    /// The last entry with timestamp <= `target`, or `(-1, base_offset)` when there is none.
    pub fn lookup(&self, target: i64) -> TimestampOffset {
        let view = self.view();
        match view.largest_lower_bound(target, |e| {
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&e[..8]);
            i64::from_be_bytes(ts)
        }) {
            Some(n) => self.decode(view.entry(n)),
            None => TimestampOffset {
                timestamp: -1,
                offset: self.base_offset,
            },
        }
    }

    /// Removes every entry with offset >= `offset`. Offsets only weakly increase, so this is
    /// a scan from the end rather than a search.
    pub fn truncate_to(&mut self, offset: i64) {
        let mut keep = self.entries();
        {
            let view = self.view();
            keep = keep.min(view.entries());
            while keep > 0 && self.decode(view.entry(keep - 1)).offset >= offset {
                keep -= 1;
            }
        }
        self.file.truncate_entries(keep);
    }

    pub fn reset(&mut self) {
        self.file.take_unchecked();
        self.file.truncate_entries(0);
    }

    pub fn resize(&mut self, max_index_bytes: usize) -> io::Result<()> {
        self.file.resize(max_index_bytes)
    }

    pub fn trim(&mut self) -> io::Result<()> {
        self.file.trim()
    }

    pub fn flush(&self) -> io::Result<()> {
        self.file.flush()
    }

    pub fn delete(self) -> io::Result<()> {
        self.file.delete()
    }

    /// Renames the file, keeping the mapping.
    pub fn rename_to(&mut self, to: &Path) -> io::Result<()> {
        self.file.rename_to(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(dir: &Path, max: usize) -> TimeIndex {
        TimeIndex::create(&dir.join("00000000000000000050.timeindex"), 50, max).unwrap()
    }

    #[test]
    fn only_increasing_timestamps_are_indexed() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = index(dir.path(), 1200);
        assert!(idx.maybe_append(1000, 59, false));
        assert!(!idx.maybe_append(1000, 69, false));
        assert!(!idx.maybe_append(900, 79, false));
        assert!(idx.maybe_append(1100, 89, false));
        assert_eq!(idx.entries(), 2);
    }

    #[test]
    fn lookup_finds_the_last_entry_not_after_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = index(dir.path(), 1200);
        idx.maybe_append(1000, 59, false);
        idx.maybe_append(2000, 69, false);
        assert_eq!(
            idx.lookup(999),
            TimestampOffset {
                timestamp: -1,
                offset: 50
            }
        );
        assert_eq!(
            idx.lookup(1500),
            TimestampOffset {
                timestamp: 1000,
                offset: 59
            }
        );
        assert_eq!(idx.lookup(2000).offset, 69);
    }

    #[test]
    fn one_slot_is_kept_for_the_closing_entry() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = index(dir.path(), 36);
        assert!(idx.maybe_append(1, 51, false));
        assert!(idx.maybe_append(2, 52, false));
        assert!(idx.is_full());
        assert!(!idx.maybe_append(3, 53, false));
        assert!(idx.maybe_append(3, 53, true));
    }

    #[test]
    fn truncate_drops_entries_at_or_after_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = index(dir.path(), 1200);
        idx.maybe_append(10, 59, false);
        idx.maybe_append(20, 69, false);
        idx.truncate_to(69);
        assert_eq!(
            idx.last_entry(),
            Some(TimestampOffset {
                timestamp: 10,
                offset: 59
            })
        );
    }

    #[test]
    fn sanity_check_rejects_decreasing_timestamps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000050.timeindex");
        let mut idx = TimeIndex::create(&path, 50, 48).unwrap();
        idx.maybe_append(10, 59, false);
        drop(idx);
        // Untrimmed: zero entries follow a positive timestamp.
        let idx = TimeIndex::open(&path, 50).unwrap();
        assert!(idx.sanity_check().is_err());
    }
}
