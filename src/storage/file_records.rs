//! Kafka's `FileRecords`: one segment's `.log` file, a plain sequence of whole RecordBatch v2
//! byte strings. Appends are positioned writes into the page cache; reads are positioned reads
//! (`pread`). The file is never memory-mapped: a truncation under a live mapping would be a
//! SIGBUS that kills the process.
//!
//! The descriptor is not held here but in the process-wide [`LOG_FILES`] cache, which closes
//! the least recently used `.log`s beyond its bound (unlike Kafka, which keeps every segment
//! open): each operation takes the descriptor from the cache, reopening the file by path when
//! it was closed. Positioned I/O makes a reopened descriptor as good as the old one (there is
//! no file cursor to restore), and the size of whole batches is kept here, so an append after
//! a reopen lands exactly where the last one ended.
//!
//! [`BatchScanner`] walks the batches from a position, reading the file in chunks so that a
//! scan costs a few large reads rather than one small read per batch.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::batch::{BatchError, BatchHeader};
use super::open_handles::{next_id, LOG_FILES};

/// A file position as the positioned I/O calls take it.
fn file_offset(position: u64) -> io::Result<libc::off_t> {
    libc::off_t::try_from(position)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))
}

/// Bytes a `pread`/`pwritev` moved, `None` when a signal interrupted it (try again).
fn transferred(n: isize) -> io::Result<Option<usize>> {
    if n >= 0 {
        return Ok(Some(n as usize));
    }
    let e = io::Error::last_os_error();
    if e.kind() == io::ErrorKind::Interrupted {
        Ok(None)
    } else {
        Err(e)
    }
}

/// Slices per `pwritev` call (Linux's `IOV_MAX`).
const IOV_MAX: usize = 1024;

pub(crate) struct FileRecords {
    /// The `.log` path: reopened by it after the cache closed the descriptor.
    path: PathBuf,
    /// This file's key in [`LOG_FILES`], which holds the descriptor (read-write; appends and
    /// reads use positioned I/O on it, so there is no shared file cursor to keep in step).
    id: u64,
    /// Bytes of whole batches. Appends write here and reads never look past it, so a reader
    /// cannot see a half-written batch and bytes past it (a failed write) are ignored.
    size: u64,
}

impl FileRecords {
    /// Opens an existing `.log`; every byte in it counts until recovery says otherwise. No
    /// descriptor is opened until the first read or write.
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        let size = std::fs::metadata(path)?.len();
        Ok(FileRecords {
            path: path.to_path_buf(),
            id: next_id(),
            size,
        })
    }

    /// Creates an empty `.log` (emptying a leftover file of the same name).
    pub(crate) fn create(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        let id = next_id();
        LOG_FILES.insert(id, file);
        Ok(FileRecords {
            path: path.to_path_buf(),
            id,
            size: 0,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// The descriptor, from the cache or reopened.
    pub(crate) fn file(&self) -> io::Result<Arc<File>> {
        LOG_FILES.get(self.id, || {
            OpenOptions::new().read(true).write(true).open(&self.path)
        })
    }

    /// Whether the descriptor is open now (tests).
    #[cfg(test)]
    pub(crate) fn is_open(&self) -> bool {
        LOG_FILES.contains(self.id)
    }

    /// Closes the descriptor as the cache does when it evicts it (tests).
    #[cfg(test)]
    pub(crate) fn evict(&self) {
        LOG_FILES.remove(self.id);
    }

    /// Appends whole batches at the end. On a failed write the size stays put, so the next
    /// append overwrites whatever part of this one reached the file.
    #[cfg(test)]
    pub(crate) fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.append_vectored(&[io::IoSlice::new(bytes)])
    }

    /// Appends the concatenation of `parts` with positioned vectored writes (`pwritev`), so a
    /// batch made of a re-encoded header and the client's records needs no joining copy.
    pub(crate) fn append_vectored(&mut self, parts: &[io::IoSlice<'_>]) -> io::Result<()> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let file = self.file()?;
        let mut written = 0usize;
        // The first part not completely written, and how much of it is.
        let (mut index, mut skip) = (0usize, 0usize);
        while written < total {
            while index < parts.len() && skip >= parts[index].len() {
                skip -= parts[index].len();
                index += 1;
            }
            let mut iov: Vec<libc::iovec> = parts[index..]
                .iter()
                .take(IOV_MAX)
                .map(|p| libc::iovec {
                    iov_base: p.as_ptr() as *mut libc::c_void,
                    iov_len: p.len(),
                })
                .collect();
            iov[0].iov_base = iov[0].iov_base.wrapping_add(skip);
            iov[0].iov_len -= skip;
            let offset = file_offset(self.size + written as u64)?;
            // SAFETY: every iovec points into a live slice of `parts` (the first advanced by
            // `skip` < its length), which outlive the call; pwritev only reads them.
            let n = unsafe {
                libc::pwritev(
                    file.as_raw_fd(),
                    iov.as_ptr(),
                    iov.len() as libc::c_int,
                    offset,
                )
            };
            let Some(n) = transferred(n)? else { continue };
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "pwritev wrote nothing",
                ));
            }
            written += n;
            skip += n;
        }
        self.size += total as u64;
        Ok(())
    }

    /// `len` bytes from `position` (within the size) into a fresh buffer. `pread` fills the
    /// buffer's spare capacity directly: zeroing it first would cost a second pass over the
    /// memory and keep fetches well below page-cache speed.
    pub(crate) fn read_at(&self, position: u64, len: usize) -> io::Result<Bytes> {
        let mut buf = BytesMut::with_capacity(len);
        let file = self.file()?;
        let mut done = 0usize;
        while done < len {
            let spare = buf.spare_capacity_mut();
            let offset = file_offset(position + done as u64)?;
            // SAFETY: the destination is the buffer's own spare capacity, at least
            // `len - done` bytes long after the `done` bytes already read; pread writes at
            // most that many bytes and reports how many.
            let n = unsafe {
                libc::pread(
                    file.as_raw_fd(),
                    spare.as_mut_ptr().cast::<libc::c_void>(),
                    len - done,
                    offset,
                )
            };
            let Some(n) = transferred(n)? else { continue };
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "{} ends before byte {}",
                        self.path.display(),
                        position + len as u64
                    ),
                ));
            }
            // SAFETY: pread initialized the next `n` bytes of spare capacity.
            unsafe { buf.set_len(done + n) };
            done += n;
        }
        Ok(buf.freeze())
    }

    /// Cuts the file at `size` (a batch boundary).
    pub(crate) fn truncate_to(&mut self, size: u64) -> io::Result<()> {
        let file = self.file()?;
        if size < self.size || file.metadata()?.len() > size {
            file.set_len(size)?;
        }
        self.size = self.size.min(size);
        Ok(())
    }

    /// Drops bytes past the size left by a failed append.
    pub(crate) fn trim(&mut self) -> io::Result<()> {
        if std::fs::metadata(&self.path)?.len() > self.size {
            self.file()?.set_len(self.size)?;
        }
        Ok(())
    }

    /// fsync. Any descriptor of the file will do: the writes of a descriptor the cache closed
    /// meanwhile are in the same page cache.
    pub(crate) fn flush(&self) -> io::Result<()> {
        self.file()?.sync_data()
    }

    /// A scan of `[from, size)`; a descriptor that cannot be reopened is the scan's first
    /// error.
    pub(crate) fn scanner(&self, from: u64, chunk: usize) -> BatchScanner<'static> {
        let file = match self.file() {
            Ok(f) => ScanFile::Shared(f),
            Err(e) => ScanFile::Failed(Some(e)),
        };
        BatchScanner::new(file, from, self.size, chunk)
    }

    /// Renames the file; an open descriptor keeps working and a reopen uses the new name.
    pub(crate) fn rename_to(&mut self, to: &Path) -> io::Result<()> {
        std::fs::rename(&self.path, to)?;
        self.path = to.to_path_buf();
        Ok(())
    }

    pub(crate) fn delete(self) -> io::Result<()> {
        LOG_FILES.remove(self.id);
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

impl Drop for FileRecords {
    fn drop(&mut self) {
        LOG_FILES.remove(self.id);
    }
}

/// A scan of `[from, end)` of any `.log` handle (the log cleaner reads closed segments
/// through duplicated descriptors, off the actor that owns them).
pub(crate) fn scan_file(file: &File, from: u64, end: u64, chunk: usize) -> BatchScanner<'_> {
    BatchScanner::new(ScanFile::Borrowed(file), from, end, chunk)
}

/// The descriptor a scan reads.
enum ScanFile<'a> {
    Borrowed(&'a File),
    /// A segment's, from the descriptor cache.
    Shared(Arc<File>),
    /// The segment's file could not be reopened: reported by the first read.
    Failed(Option<io::Error>),
}

/// One whole batch found by a scan: its position, header and bytes.
pub(crate) type ScannedBatch<'a> = (u64, BatchHeader, &'a [u8]);

/// Why a scan stopped before the end of the data.
#[derive(Debug)]
pub(crate) enum ScanError {
    Io(io::Error),
    /// The batch at this position runs past the end of the file (a torn write).
    Torn(u64),
    /// The bytes at this position are not a sane batch header.
    Corrupt(u64, BatchError),
}

/// Walks batches forward from a position.
pub(crate) struct BatchScanner<'a> {
    file: ScanFile<'a>,
    /// Position of the next batch.
    pos: u64,
    /// Scan limit: the file size when the scan began.
    end: u64,
    /// Bytes read ahead, reused between reads.
    buf: Vec<u8>,
    /// File position of `buf[0]`.
    buf_start: u64,
    /// How much to read at once.
    chunk: usize,
}

impl<'a> BatchScanner<'a> {
    fn new(file: ScanFile<'a>, from: u64, end: u64, chunk: usize) -> Self {
        BatchScanner {
            file,
            pos: from,
            end,
            buf: Vec::new(),
            buf_start: 0,
            chunk,
        }
    }

    /// Makes `[pos, pos + len)` available in `buf`; returns its start index in `buf`.
    fn fill(&mut self, pos: u64, len: usize) -> Result<usize, ScanError> {
        let buf_end = self.buf_start + self.buf.len() as u64;
        if pos >= self.buf_start && pos + len as u64 <= buf_end {
            return Ok((pos - self.buf_start) as usize);
        }
        let want = (len.max(self.chunk) as u64).min(self.end - pos) as usize;
        self.buf.resize(want, 0);
        let file = match &mut self.file {
            ScanFile::Borrowed(f) => *f,
            ScanFile::Shared(f) => &**f,
            ScanFile::Failed(e) => {
                return Err(ScanError::Io(e.take().unwrap_or_else(|| {
                    io::Error::other("the file could not be opened")
                })))
            }
        };
        file.read_exact_at(&mut self.buf, pos)
            .map_err(ScanError::Io)?;
        self.buf_start = pos;
        Ok(0)
    }

    /// The header of the next batch and its position, checking only that the header is sane
    /// and the batch fits in the file.
    pub(crate) fn next_header(&mut self) -> Result<Option<(u64, BatchHeader)>, ScanError> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let pos = self.pos;
        let remaining = self.end - pos;
        if remaining < BatchHeader::SIZE as u64 {
            return Err(ScanError::Torn(pos));
        }
        let at = self.fill(pos, BatchHeader::SIZE)?;
        let header = BatchHeader::parse(&self.buf[at..at + BatchHeader::SIZE])
            .map_err(|e| ScanError::Corrupt(pos, e))?;
        if header.total_size() as u64 > remaining {
            return Err(ScanError::Torn(pos));
        }
        self.pos = pos + header.total_size() as u64;
        Ok(Some((pos, header)))
    }

    /// The next whole batch: position, header and bytes.
    pub(crate) fn next_batch(&mut self) -> Result<Option<ScannedBatch<'_>>, ScanError> {
        let Some((pos, header)) = self.next_header()? else {
            return Ok(None);
        };
        let at = self.fill(pos, header.total_size())?;
        Ok(Some((pos, header, &self.buf[at..at + header.total_size()])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::batch::tests::client_batch;
    use kafka_protocol::records::Compression;

    #[test]
    fn read_at_returns_exact_bytes_and_refuses_reading_past_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = FileRecords::create(&dir.path().join("0.log")).unwrap();
        f.append(b"hello world").unwrap();
        assert_eq!(&f.read_at(6, 5).unwrap()[..], b"world");
        let err = f.read_at(6, 6).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn vectored_append_writes_the_parts_in_order_beyond_one_pwritev() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = FileRecords::create(&dir.path().join("0.log")).unwrap();
        f.append(b"head:").unwrap();
        // More parts than one pwritev call takes, empty ones among them.
        let chunks: Vec<Vec<u8>> = (0..3000u32)
            .map(|i| {
                i.to_string()
                    .into_bytes()
                    .into_iter()
                    .take(i as usize % 4)
                    .collect()
            })
            .collect();
        let parts: Vec<io::IoSlice<'_>> = chunks.iter().map(|c| io::IoSlice::new(c)).collect();
        f.append_vectored(&parts).unwrap();
        let expected: Vec<u8> = b"head:"
            .iter()
            .chain(chunks.iter().flatten())
            .copied()
            .collect();
        assert_eq!(f.size(), expected.len() as u64);
        assert_eq!(std::fs::read(f.path()).unwrap(), expected);
    }

    #[test]
    fn scanner_walks_whole_batches_and_reports_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = FileRecords::create(&dir.path().join("0.log")).unwrap();
        let batch = client_batch(3, 0, Compression::None, false);
        for _ in 0..3 {
            f.append(&batch).unwrap();
        }
        f.append(&batch[..batch.len() - 1]).unwrap();
        // A small chunk forces refills in the middle of batches.
        let mut scanner = f.scanner(0, 7);
        for i in 0..3u64 {
            let (pos, h, bytes) = scanner.next_batch().unwrap().unwrap();
            assert_eq!(pos, i * batch.len() as u64);
            assert_eq!(h.total_size(), batch.len());
            assert_eq!(bytes, &batch[..]);
        }
        match scanner.next_batch() {
            Err(ScanError::Torn(pos)) => assert_eq!(pos, 3 * batch.len() as u64),
            other => panic!("expected a torn batch, got {other:?}"),
        }
    }

    #[test]
    fn scanner_reports_garbage_as_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = FileRecords::create(&dir.path().join("0.log")).unwrap();
        f.append(&[0xab; 100]).unwrap();
        assert!(matches!(
            f.scanner(0, 4096).next_header(),
            Err(ScanError::Corrupt(0, _))
        ));
    }

    #[test]
    fn failed_append_leaves_the_size_so_the_next_append_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = FileRecords::create(&dir.path().join("0.log")).unwrap();
        f.append(b"abc").unwrap();
        // Bytes past the size, as a failed write leaves them.
        f.file().unwrap().write_all_at(b"zzzz", 3).unwrap();
        f.append(b"de").unwrap();
        f.trim().unwrap();
        assert_eq!(std::fs::read(f.path()).unwrap(), b"abcde");
    }

    #[test]
    fn an_opened_log_holds_no_descriptor_until_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, b"stored").unwrap();
        let f = FileRecords::open(&path).unwrap();
        assert_eq!(f.size(), 6);
        assert!(!f.is_open());
        assert_eq!(&f.read_at(0, 6).unwrap()[..], b"stored");
        assert!(f.is_open());
        let id = f.id;
        drop(f);
        assert!(
            !LOG_FILES.contains(id),
            "a dropped log closes its descriptor"
        );
    }

    #[test]
    fn a_read_of_an_evicted_log_reopens_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = FileRecords::create(&dir.path().join("0.log")).unwrap();
        f.append(b"hello world").unwrap();
        f.evict();
        assert!(!f.is_open());
        assert_eq!(&f.read_at(6, 5).unwrap()[..], b"world");
        assert!(f.is_open());
        // Renamed while closed: the reopen follows the new name.
        f.evict();
        f.rename_to(&dir.path().join("0.log.deleted")).unwrap();
        let batch = client_batch(2, 0, Compression::None, false);
        f.append(&batch).unwrap();
        let mut scanner = f.scanner(11, 4096);
        assert_eq!(scanner.next_batch().unwrap().unwrap().2, &batch[..]);
    }

    #[test]
    fn the_active_log_evicted_between_appends_loses_no_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut f = FileRecords::create(&path).unwrap();
        let mut expected = Vec::new();
        for i in 0..50u8 {
            let part = vec![i; 1 + i as usize];
            f.append(&part).unwrap();
            expected.extend_from_slice(&part);
            if i % 3 == 0 {
                f.evict();
            }
            if i % 7 == 0 {
                // fsync through a reopened descriptor covers writes made through a closed one.
                f.flush().unwrap();
            }
        }
        f.evict();
        f.append(b"tail").unwrap();
        expected.extend_from_slice(b"tail");
        assert_eq!(f.size(), expected.len() as u64);
        assert_eq!(std::fs::read(&path).unwrap(), expected);
        assert_eq!(&f.read_at(0, expected.len()).unwrap()[..], &expected[..]);
    }

    #[test]
    fn logs_read_and_written_on_many_threads_while_descriptors_are_evicted() {
        let dir = tempfile::tempdir().unwrap();
        let logs: Vec<FileRecords> = (0..8)
            .map(|i| FileRecords::create(&dir.path().join(format!("{i}.log"))).unwrap())
            .collect();
        let ids: Vec<u64> = logs.iter().map(|f| f.id).collect();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            // Evicts every descriptor over and over, as a full cache would.
            s.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for id in &ids {
                        LOG_FILES.remove(*id);
                    }
                    std::thread::yield_now();
                }
            });
            let writers: Vec<_> = logs
                .into_iter()
                .enumerate()
                .map(|(n, mut f)| {
                    s.spawn(move || {
                        let mut expected = Vec::new();
                        for i in 0..200u32 {
                            let part = format!("{n}:{i};").into_bytes();
                            f.append(&part).unwrap();
                            expected.extend_from_slice(&part);
                            let at = expected.len() - part.len();
                            assert_eq!(&f.read_at(at as u64, part.len()).unwrap()[..], &part[..]);
                        }
                        assert_eq!(&f.read_at(0, expected.len()).unwrap()[..], &expected[..]);
                        assert_eq!(std::fs::read(f.path()).unwrap(), expected);
                    })
                })
                .collect();
            for w in writers {
                w.join().unwrap();
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
    }
}
