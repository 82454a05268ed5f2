//! The memory-mapped file under both of Kafka's segment indexes (Kafka's `AbstractIndex` and
//! `LazyIndex`): fixed-size big-endian entries, preallocated while the segment is active and
//! trimmed to the entries it holds when the segment closes.
//!
//! The file is mapped lazily: not when the segment is created or opened, only when an entry
//! is read or written, and the mapping lives in the process-wide [`INDEX_MAPS`] cache, which
//! unmaps the least recently used indexes beyond its capacity (a later use maps the file
//! again). A resize or trim drops the mapping, so a closed segment's index stays unmapped
//! until it is next looked up. What the index knows without its mapping (length, entries in
//! use) is kept here.
//!
//! Only index files are mapped, never a `.log`. A mapping is always dropped before its file is
//! shrunk, so no page of a live mapping ever lies past the end of its file (that would be a
//! SIGBUS on the next access). The preallocated length is sparse, so the first entry written
//! into each page gets the page's blocks first (`fallocate`): on a full disk that entry is
//! skipped (an index is sparse anyway) instead of the write into the mapping raising SIGBUS
//! and killing the process.

use std::cell::Cell;
use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::MmapRaw;

use super::open_handles::{next_id, INDEX_MAPS};

pub(crate) struct IndexFile {
    /// Where the index lives; reopened by path to map and resize, so no descriptor is held.
    path: PathBuf,
    /// 8 for the offset index, 12 for the time index.
    entry_size: usize,
    /// This file's key in [`INDEX_MAPS`].
    id: u64,
    /// File length in bytes.
    len: usize,
    /// Entries in use; the file may be longer (preallocation). A cell because an index found
    /// broken on its first (lazy) mapping forgets its entries behind a shared reference.
    entries: Cell<usize>,
    /// Opened from disk and trusted without reading (a closed segment below the recovery
    /// point, as Kafka trusts it): the owner sanity-checks the entries on first use.
    unchecked: Cell<bool>,
}

/// The entries of an index as mapped for one operation.
pub(crate) struct IndexView {
    map: Option<Arc<MmapRaw>>,
    entry_size: usize,
    entries: usize,
}

/// The unit the file system allocates a mapping's blocks in.
const PAGE: usize = 4096;

fn round_down(n: usize, multiple: usize) -> usize {
    n / multiple * multiple
}

fn map(path: &Path) -> io::Result<MmapRaw> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let map = MmapRaw::map_raw(&file)?;
    // No readahead: lookups are binary searches and appends touch one page at a time, while
    // the kernel's default read around a fault zero-fills up to hundreds of KiB of the
    // preallocated, sparse file. Measured at 10 000 partitions × RF 3 under produce load:
    // 25 % of the process's CPU in that zeroing (`filemap_fault` → `page_cache_ra_order`).
    // Advice is only a hint: a kernel that refuses it maps as before.
    let _ = map.advise(memmap2::Advice::Random);
    Ok(map)
}

impl IndexView {
    pub(crate) fn empty(entry_size: usize) -> Self {
        IndexView {
            map: None,
            entry_size,
            entries: 0,
        }
    }

    pub(crate) fn entries(&self) -> usize {
        self.entries
    }

    /// The bytes of entry `n` (< entries).
    pub(crate) fn entry(&self, n: usize) -> &[u8] {
        let at = n * self.entry_size;
        match &self.map {
            Some(m) if n < self.entries => {
                // SAFETY: the view only counts entries inside the mapping (checked when it
                // was made), the mapping lives as long as `self` holds the Arc, and its only
                // writer is the owning `IndexFile` through `&mut self`, which cannot run while
                // this shared borrow of its view is alive on the owner's thread.
                unsafe { std::slice::from_raw_parts(m.as_ptr().add(at), self.entry_size) }
            }
            _ => &[],
        }
    }

    /// Largest entry index whose key is <= `target`, by binary search over entries sorted by
    /// `key`; `None` when every key is greater or there are no entries.
    pub(crate) fn largest_lower_bound(
        &self,
        target: i64,
        key: impl Fn(&[u8]) -> i64,
    ) -> Option<usize> {
        if self.entries == 0 || key(self.entry(0)) > target {
            return None;
        }
        let (mut lo, mut hi) = (0usize, self.entries - 1);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if key(self.entry(mid)) <= target {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        Some(lo)
    }
}

impl IndexFile {
    /// Creates (or empties) the file and preallocates `max_bytes` rounded down to whole
    /// entries. Nothing is mapped until the first entry is written.
    pub(crate) fn create(path: &Path, entry_size: usize, max_bytes: usize) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        let len = round_down(max_bytes.max(entry_size), entry_size);
        file.set_len(len as u64)?;
        Ok(IndexFile {
            path: path.to_path_buf(),
            entry_size,
            id: next_id(),
            len,
            entries: Cell::new(0),
            unchecked: Cell::new(false),
        })
    }

    /// Opens an existing file without mapping it; every whole entry in it counts as used
    /// (Kafka's rule: a closed segment's index was trimmed, so its length is its entry count).
    /// The entries are not read here; [`IndexFile::take_unchecked`] tells the owner to
    /// sanity-check them on first use.
    pub(crate) fn open(path: &Path, entry_size: usize) -> io::Result<Self> {
        let len = std::fs::metadata(path)?.len();
        let len = usize::try_from(len).map_err(|_| io::Error::other("index too large"))?;
        Ok(IndexFile {
            path: path.to_path_buf(),
            entry_size,
            id: next_id(),
            len,
            entries: Cell::new(len / entry_size),
            unchecked: Cell::new(true),
        })
    }

    /// The length is whole entries (the check that needs no mapping).
    pub(crate) fn check_size(&self, what: &str) -> Result<(), String> {
        if self.len.is_multiple_of(self.entry_size) {
            Ok(())
        } else {
            Err(format!(
                "{what} {} has size {}, not a multiple of {}",
                self.path.display(),
                self.len,
                self.entry_size
            ))
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn entries(&self) -> usize {
        self.entries.get()
    }

    pub(crate) fn max_entries(&self) -> usize {
        self.len / self.entry_size
    }

    /// File length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_full(&self) -> bool {
        self.entries() >= self.max_entries()
    }

    /// Whether the mapping is in the cache now (tests and the scale probe).
    pub(crate) fn is_mapped(&self) -> bool {
        INDEX_MAPS.contains(self.id)
    }

    /// True once, on the first call after [`IndexFile::open`]: the owner should sanity-check
    /// the entries now.
    pub(crate) fn take_unchecked(&self) -> bool {
        self.unchecked.replace(false)
    }

    /// Forgets every entry (an index found broken: lookups fall back to scanning the log
    /// until the segment is recovered or truncated, which rebuilds it).
    pub(crate) fn forget_entries(&self) {
        self.entries.set(0);
    }

    fn mapping(&self) -> io::Result<Arc<MmapRaw>> {
        let map = INDEX_MAPS.get(self.id, || map(&self.path))?;
        if map.len() < self.entries() * self.entry_size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is {} bytes, shorter than its {} entries",
                    self.path.display(),
                    map.len(),
                    self.entries()
                ),
            ));
        }
        Ok(map)
    }

    /// The entries, mapped for one operation. When the file cannot be mapped, the view is
    /// empty: an index is only a shortcut, and readers then scan the `.log` from its start.
    pub(crate) fn view(&self) -> IndexView {
        if self.entries() == 0 {
            return IndexView::empty(self.entry_size);
        }
        match self.mapping() {
            Ok(map) => IndexView {
                map: Some(map),
                entry_size: self.entry_size,
                entries: self.entries(),
            },
            Err(e) => {
                tracing::warn!(index = %self.path.display(), error = %e, "cannot map the index; scanning the log instead");
                IndexView::empty(self.entry_size)
            }
        }
    }

    /// Gives the pages under `[at, at + len)` their blocks; false when the file system is full
    /// (other failures, such as a file system without `fallocate`, leave it to the mapping).
    fn reserve(&self, at: usize, len: usize) -> bool {
        use std::os::unix::io::AsRawFd;
        let start = round_down(at, PAGE);
        let end = (at + len)
            .div_ceil(PAGE)
            .saturating_mul(PAGE)
            .min(self.len());
        let Ok(file) = OpenOptions::new().write(true).open(&self.path) else {
            return true;
        };
        // SAFETY: a valid descriptor; mode 0 allocates within the file's length only.
        let rc = unsafe {
            libc::fallocate(
                file.as_raw_fd(),
                0,
                start as libc::off_t,
                (end - start) as libc::off_t,
            )
        };
        if rc == 0 {
            return true;
        }
        let e = io::Error::last_os_error();
        if matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)) {
            tracing::warn!(index = %self.path.display(), error = %e, "no space for an index entry; skipping it");
            return false;
        }
        true
    }

    /// Appends one entry; false when the preallocated space is used up, the disk is full or
    /// the file cannot be mapped (the index stays sparse and correct).
    pub(crate) fn push(&mut self, bytes: &[u8]) -> bool {
        debug_assert_eq!(bytes.len(), self.entry_size);
        if self.is_full() {
            return false;
        }
        let at = self.entries() * self.entry_size;
        let last = at + self.entry_size - 1;
        if (at.is_multiple_of(PAGE) || at / PAGE != last / PAGE)
            && !self.reserve(at, self.entry_size)
        {
            return false;
        }
        let map = match self.mapping() {
            Ok(m) if m.len() >= at + self.entry_size => m,
            Ok(_) => return false,
            Err(e) => {
                tracing::warn!(index = %self.path.display(), error = %e, "cannot map the index; skipping an entry");
                return false;
            }
        };
        // SAFETY: `[at, at + entry_size)` lies inside the mapping (checked above), which the
        // Arc keeps alive; this `&mut self` is the file's only writer and no view of it is
        // alive (views borrow the owner).
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                map.as_mut_ptr().add(at),
                self.entry_size,
            );
        }
        self.entries.set(self.entries() + 1);
        true
    }

    /// Forgets entries from `n` on (the bytes stay until overwritten or trimmed).
    pub(crate) fn truncate_entries(&mut self, n: usize) {
        self.entries.set(self.entries().min(n));
    }

    /// Changes the file length to `bytes` (rounded down to whole entries, never below the
    /// entries in use), unmapping it first: used to preallocate an active index and to trim
    /// a closed one. The next use maps the new length.
    pub(crate) fn resize(&mut self, bytes: usize) -> io::Result<()> {
        let new_len = round_down(bytes, self.entry_size).max(self.entries() * self.entry_size);
        if new_len == self.len() {
            return Ok(());
        }
        if let Some(m) = INDEX_MAPS.peek(self.id) {
            m.flush_async()?;
        }
        INDEX_MAPS.remove(self.id);
        let resized = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .and_then(|file| file.set_len(new_len as u64));
        match resized {
            Ok(()) => {
                self.len = new_len;
                Ok(())
            }
            Err(e) => {
                // The length is unknown now: hold nothing, so lookups fall back to scanning
                // the log and the segment's next open rebuilds the file.
                self.entries.set(0);
                self.len = 0;
                Err(e)
            }
        }
    }

    /// Shrinks the file to the entries in use (Kafka's `trimToValidSize`).
    pub(crate) fn trim(&mut self) -> io::Result<()> {
        self.resize(self.entries() * self.entry_size)
    }

    /// Writes dirty pages back: msync of the mapping, or fsync of the file when it was
    /// unmapped meanwhile (its pages written through the mapping are still in the page cache).
    pub(crate) fn flush(&self) -> io::Result<()> {
        match INDEX_MAPS.peek(self.id) {
            Some(m) => m.flush(),
            None if self.entries() == 0 => Ok(()),
            None => OpenOptions::new()
                .read(true)
                .open(&self.path)
                .and_then(|f| f.sync_data()),
        }
    }

    /// Renames the file (a mapping survives a rename); later maps and resizes open the new
    /// name.
    pub(crate) fn rename_to(&mut self, to: &Path) -> io::Result<()> {
        std::fs::rename(&self.path, to)?;
        self.path = to.to_path_buf();
        Ok(())
    }

    /// Unmaps and removes the file.
    pub(crate) fn delete(self) -> io::Result<()> {
        INDEX_MAPS.remove(self.id);
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

impl Drop for IndexFile {
    fn drop(&mut self) {
        INDEX_MAPS.remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_on_a_full_disk_is_skipped_instead_of_faulting_the_mapping() {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(dir.path())
            .output();
        match mounted {
            Ok(out) if out.status.success() => {}
            other => {
                eprintln!("SKIPPED an_entry_on_a_full_disk...: cannot mount a tmpfs (needs root): {other:?}");
                return;
            }
        }
        let path = dir.path().join("x.index");
        let mut f = IndexFile::create(&path, 12, 1 << 20).unwrap();
        assert!(f.push(&[1; 12]), "the first page gets its blocks");
        // Fill the file system.
        let mut filler = std::fs::File::create(dir.path().join("filler")).unwrap();
        while std::io::Write::write(&mut filler, &[0u8; 4096]).is_ok_and(|n| n > 0) {}
        // Entries on the first page still go in; the first one of the next page is skipped.
        while (f.entries() + 1) * 12 <= PAGE {
            assert!(f.push(&[2; 12]));
        }
        let before = f.entries();
        assert!(
            !f.push(&[3; 12]),
            "a straddling entry needs a page the disk cannot give"
        );
        assert_eq!(f.entries(), before);
        drop(filler);
        std::fs::remove_file(dir.path().join("filler")).unwrap();
        assert!(f.push(&[3; 12]), "space returned");
        drop(f);
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(dir.path())
            .status();
    }

    #[test]
    fn create_preallocates_and_trim_shrinks_to_used_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.index");
        let mut f = IndexFile::create(&path, 8, 100).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 96);
        assert_eq!(f.max_entries(), 12);
        assert!(f.push(&[1; 8]));
        assert!(f.push(&[2; 8]));
        f.trim().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 16);
        drop(f);
        let f = IndexFile::open(&path, 8).unwrap();
        assert_eq!(f.entries(), 2);
        assert_eq!(f.view().entry(1), &[2; 8]);
    }

    #[test]
    fn an_index_unmapped_between_writes_keeps_every_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.index");
        let mut f = IndexFile::create(&path, 8, 8 * 1024).unwrap();
        assert!(!f.is_mapped(), "create maps nothing");
        for i in 0..1000u64 {
            assert!(f.push(&i.to_be_bytes()));
            if i % 7 == 0 {
                // As the cache does when it evicts the mapping.
                INDEX_MAPS.remove(f.id);
            }
        }
        INDEX_MAPS.remove(f.id);
        f.flush().unwrap();
        let view = f.view();
        assert_eq!(view.entries(), 1000);
        for i in 0..1000usize {
            assert_eq!(view.entry(i), &(i as u64).to_be_bytes());
        }
        drop(view);
        f.trim().unwrap();
        assert!(!f.is_mapped(), "a trim unmaps");
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(on_disk.len(), 8000);
        assert_eq!(&on_disk[8 * 999..], &999u64.to_be_bytes());
    }

    #[test]
    fn push_stops_when_full() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = IndexFile::create(&dir.path().join("x.index"), 8, 16).unwrap();
        assert!(f.push(&[1; 8]));
        assert!(f.push(&[2; 8]));
        assert!(!f.push(&[3; 8]));
        assert!(f.is_full());
    }

    #[test]
    fn largest_lower_bound_finds_the_floor_entry() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = IndexFile::create(&dir.path().join("x.index"), 8, 800).unwrap();
        for k in [10i64, 20, 30, 40] {
            f.push(&k.to_be_bytes());
        }
        let key = |e: &[u8]| i64::from_be_bytes(e.try_into().unwrap());
        assert_eq!(f.view().largest_lower_bound(5, key), None);
        assert_eq!(f.view().largest_lower_bound(10, key), Some(0));
        assert_eq!(f.view().largest_lower_bound(29, key), Some(1));
        assert_eq!(f.view().largest_lower_bound(30, key), Some(2));
        assert_eq!(f.view().largest_lower_bound(1000, key), Some(3));
    }

    #[test]
    fn zero_length_index_opens_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.index");
        std::fs::write(&path, b"").unwrap();
        let mut f = IndexFile::open(&path, 8).unwrap();
        assert_eq!(f.entries(), 0);
        f.resize(64).unwrap();
        assert!(f.push(&[9; 8]));
    }
}
