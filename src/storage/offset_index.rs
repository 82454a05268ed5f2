//! Kafka's `OffsetIndex`: the sparse map from offset to byte position in one segment's `.log`.
//! Entries are 8 bytes, big-endian `(offset - base_offset) as u32, position as u32`; one is
//! added every `index.interval.bytes` of appended batches, keyed by the last offset of the
//! batch that starts at `position`. A lookup gives the position to start a short scan from.

use std::io;
use std::path::Path;

use tracing::warn;

use super::index_file::{IndexFile, IndexView};

/// An offset and the byte position of the batch that ends with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetPosition {
    pub offset: i64,
    pub position: u32,
}

pub struct OffsetIndex {
    /// The segment's base offset: entries store offsets relative to it.
    base_offset: i64,
    file: IndexFile,
    /// The `.log` size when the index was opened: the bound the first-use sanity check
    /// holds positions to.
    log_size_at_open: u64,
}

impl OffsetIndex {
    pub const ENTRY_SIZE: usize = 8;

    /// A new, empty index preallocated to `max_index_bytes`.
    pub fn create(path: &Path, base_offset: i64, max_index_bytes: usize) -> io::Result<Self> {
        Ok(OffsetIndex {
            base_offset,
            file: IndexFile::create(path, Self::ENTRY_SIZE, max_index_bytes)?,
            log_size_at_open: 0,
        })
    }

    /// Opens an existing index of a `.log` of `log_size` bytes, without mapping it. Its size
    /// is checked by [`OffsetIndex::check_size`]; its entries are sanity-checked on first use
    /// (a broken one is then ignored) or by [`OffsetIndex::sanity_check`].
    pub fn open(path: &Path, base_offset: i64, log_size: u64) -> io::Result<Self> {
        Ok(OffsetIndex {
            base_offset,
            file: IndexFile::open(path, Self::ENTRY_SIZE)?,
            log_size_at_open: log_size,
        })
    }

    pub fn entries(&self) -> usize {
        self.file.entries()
    }

    pub fn is_full(&self) -> bool {
        self.file.is_full()
    }

    /// Whether the file is mapped now.
    pub fn is_mapped(&self) -> bool {
        self.file.is_mapped()
    }

    fn decode(&self, e: &[u8]) -> OffsetPosition {
        OffsetPosition {
            offset: self.base_offset + u32::from_be_bytes([e[0], e[1], e[2], e[3]]) as i64,
            position: u32::from_be_bytes([e[4], e[5], e[6], e[7]]),
        }
    }

    fn key(&self) -> impl Fn(&[u8]) -> i64 + '_ {
        |e| self.base_offset + u32::from_be_bytes([e[0], e[1], e[2], e[3]]) as i64
    }

    /// The entries mapped, sanity-checked on the first use of an opened index (Kafka's
    /// `LazyIndex` maps on first use; the check is weir's, so that a broken index below the
    /// recovery point is ignored rather than trusted).
    fn view(&self) -> IndexView {
        let view = self.file.view();
        if self.file.take_unchecked() {
            if let Err(why) = self.check_entries(&view, self.log_size_at_open) {
                warn!(
                    "{why}; ignoring the index (reads scan the log) until the segment is recovered"
                );
                self.file.forget_entries();
                return IndexView::empty(Self::ENTRY_SIZE);
            }
        }
        view
    }

    /// Entry `n` (< entries).
    #[cfg(test)]
    pub(crate) fn entry(&self, n: usize) -> OffsetPosition {
        self.decode(self.view().entry(n))
    }

    /// The last indexed offset, or the base offset when empty.
    pub fn last_offset(&self) -> i64 {
        let view = self.view();
        match view.entries() {
            0 => self.base_offset,
            n => self.decode(view.entry(n - 1)).offset,
        }
    }

    /// The size is whole entries: the check an open makes without mapping the file.
    pub fn check_size(&self) -> Result<(), String> {
        self.file.check_size("offset index")
    }

    /// Kafka's sanity check, made stricter: whole entries only, offsets above the base offset
    /// and strictly increasing, positions strictly increasing and inside the `.log`. A
    /// preallocated index left untrimmed by a crash fails it (its zero tail does not increase).
    /// Maps the file.
    pub fn sanity_check(&self, log_size: u64) -> Result<(), String> {
        self.check_size()?;
        self.file.take_unchecked();
        self.check_entries(&self.file.view(), log_size)
    }

    fn check_entries(&self, view: &IndexView, log_size: u64) -> Result<(), String> {
        let mut prev: Option<OffsetPosition> = None;
        for n in 0..view.entries() {
            let e = self.decode(view.entry(n));
            let ok = match prev {
                None => e.offset > self.base_offset,
                Some(p) => e.offset > p.offset && e.position > p.position,
            };
            if !ok || e.position as u64 >= log_size {
                return Err(format!(
                    "offset index {} entry {n} ({}, {}) is out of order or past the log end {log_size}",
                    self.file.path().display(),
                    e.offset,
                    e.position
                ));
            }
            prev = Some(e);
        }
        Ok(())
    }

    /// The entry with the largest offset <= `target`, or `(base_offset, 0)` when there is none.
    pub fn lookup(&self, target: i64) -> OffsetPosition {
        let view = self.view();
        match view.largest_lower_bound(target, self.key()) {
            Some(n) => self.decode(view.entry(n)),
            None => OffsetPosition {
                offset: self.base_offset,
                position: 0,
            },
        }
    }

    /// Adds an entry; offsets and positions must increase and the offset must be relative to
    /// the base within u32. Returns false (nothing added) when the index is full or the
    /// entry would break the order; the index stays sparse and correct either way.
    pub fn append(&mut self, offset: i64, position: u32) -> bool {
        let relative = offset - self.base_offset;
        if relative <= 0 || relative > u32::MAX as i64 {
            return false;
        }
        let last = {
            let view = self.view();
            match view.entries() {
                0 => None,
                n => Some(self.decode(view.entry(n - 1))),
            }
        };
        if let Some(last) = last {
            if offset <= last.offset || position <= last.position {
                return false;
            }
        }
        let mut e = [0u8; Self::ENTRY_SIZE];
        e[..4].copy_from_slice(&(relative as u32).to_be_bytes());
        e[4..].copy_from_slice(&position.to_be_bytes());
        self.file.push(&e)
    }

    /// Removes every entry with offset >= `offset`.
    pub fn truncate_to(&mut self, offset: i64) {
        let keep = {
            let view = self.view();
            match view.largest_lower_bound(offset - 1, self.key()) {
                Some(n) => n + 1,
                None => 0,
            }
        };
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

    fn index(dir: &Path) -> OffsetIndex {
        OffsetIndex::create(&dir.join("00000000000000000100.index"), 100, 1024).unwrap()
    }

    #[test]
    fn lookup_returns_the_floor_entry_or_the_segment_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = index(dir.path());
        assert!(idx.append(109, 4000));
        assert!(idx.append(119, 8000));
        assert_eq!(idx.lookup(50).position, 0);
        assert_eq!(
            idx.lookup(108),
            OffsetPosition {
                offset: 100,
                position: 0
            }
        );
        assert_eq!(
            idx.lookup(109),
            OffsetPosition {
                offset: 109,
                position: 4000
            }
        );
        assert_eq!(idx.lookup(118).position, 4000);
        assert_eq!(idx.lookup(500).position, 8000);
    }

    #[test]
    fn entries_must_increase() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = index(dir.path());
        assert!(!idx.append(100, 10), "relative offset 0 is never indexed");
        assert!(idx.append(110, 10));
        assert!(!idx.append(110, 20));
        assert!(!idx.append(120, 10));
        assert_eq!(idx.entries(), 1);
    }

    #[test]
    fn truncate_removes_entries_at_or_after_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = index(dir.path());
        idx.append(109, 4000);
        idx.append(119, 8000);
        idx.append(129, 12000);
        idx.truncate_to(119);
        assert_eq!(idx.entries(), 1);
        assert_eq!(idx.last_offset(), 109);
        idx.truncate_to(0);
        assert_eq!(idx.entries(), 0);
    }

    #[test]
    fn sanity_check_rejects_an_untrimmed_or_garbage_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000100.index");
        let mut idx = OffsetIndex::create(&path, 100, 64).unwrap();
        idx.append(109, 4000);
        drop(idx);
        // Untrimmed: the zero tail counts as entries on reopen.
        let idx = OffsetIndex::open(&path, 100, 1 << 20).unwrap();
        assert!(idx.sanity_check(1 << 20).is_err());
        drop(idx);
        std::fs::write(&path, b"garbage").unwrap();
        let idx = OffsetIndex::open(&path, 100, 1 << 20).unwrap();
        assert!(idx.check_size().is_err());
        assert!(idx.sanity_check(1 << 20).is_err());
    }

    #[test]
    fn sanity_check_rejects_positions_past_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = index(dir.path());
        idx.append(109, 4000);
        idx.trim().unwrap();
        assert!(idx.sanity_check(4001).is_ok());
        assert!(idx.sanity_check(4000).is_err());
    }
}
