//! Process-wide bounds on what segments keep open: `.log` descriptors and index mappings.
//!
//! A partition replica has at least one segment, and every segment has a `.log` and two
//! indexes. Held open for the segment's life, 10 000 partitions at replication factor 3 in one
//! process would need 30 000 descriptors (more than a common hard limit of 20 000) and 60 000
//! memory maps (next to Linux's default `vm.max_map_count` of 65 530). So a segment owns ids,
//! not handles: it asks [`LOG_FILES`] or [`INDEX_MAPS`] for the handle each time it does I/O,
//! the cache opens (or maps) the file by path on a miss and closes the least recently used
//! handles beyond its capacity. Kafka keeps every `.log` open and maps indexes lazily
//! (`LazyIndex`) but never unmaps them; here both are bounded.
//!
//! Handles are `Arc`s: a handle evicted while its owner is in the middle of a read or write
//! stays open until that operation drops it, so eviction never pulls a descriptor or a mapping
//! out from under anyone. The bound is thus soft by the operations in flight (at most one per
//! thread). Closing a `.log` descriptor loses nothing: writes are in the page cache, and an
//! fsync through any later descriptor of the file flushes them.
//!
//! Capacities: `.log` descriptors default to half the soft `RLIMIT_NOFILE` (the rest is for
//! sockets, checkpoints and the descriptors flushes and the cleaner duplicate), index maps to
//! half of `vm.max_map_count`; `log.max.open.files` and `log.max.index.maps` (weir's own
//! broker keys) lower them.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use memmap2::MmapRaw;

/// Open `.log` files of every segment in the process.
pub(crate) static LOG_FILES: LazyLock<HandleCache<File>> =
    LazyLock::new(|| HandleCache::new(default_log_file_capacity()));

/// Mapped index files of every segment in the process.
pub(crate) static INDEX_MAPS: LazyLock<HandleCache<MmapRaw>> =
    LazyLock::new(|| HandleCache::new(default_index_map_capacity()));

/// Fewest handles a cache keeps, whatever the limits say: enough for a roll (old and new
/// segment) of a handful of partitions at once.
const MIN_CAPACITY: usize = 16;

/// A fresh id for one segment file's handle, unique in the process.
pub(crate) fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Half the soft open-file limit (the process raises it to the hard limit at start).
fn default_log_file_capacity() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed to it.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
    } else {
        1024
    };
    (soft / 2).max(MIN_CAPACITY)
}

/// Half of `vm.max_map_count` (Linux's default 65 530): the rest is for the allocator,
/// thread stacks and libraries.
fn default_index_map_capacity() -> usize {
    let max = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(65_530);
    (max / 2).max(MIN_CAPACITY)
}

/// Lowers the caches' capacities to a broker's `log.max.open.files` and `log.max.index.maps`
/// (0 keeps the default). Brokers sharing a process share the caches, so the smallest
/// setting wins.
pub(crate) fn limit(max_open_files: usize, max_index_maps: usize) {
    if max_open_files > 0 {
        LOG_FILES.lower_capacity(max_open_files);
    }
    if max_index_maps > 0 {
        INDEX_MAPS.lower_capacity(max_index_maps);
    }
    tracing::debug!(
        log_files = LOG_FILES.capacity(),
        index_maps = INDEX_MAPS.capacity(),
        "bounds on open segment files"
    );
}

/// The process is out of descriptors or memory mappings.
fn is_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOMEM)
    )
}

/// A least-recently-used set of shared handles keyed by id.
pub(crate) struct HandleCache<T> {
    capacity: AtomicUsize,
    inner: Mutex<Inner<T>>,
}

struct Inner<T> {
    entries: HashMap<u64, Slot<T>>,
    /// Last use → id, oldest first.
    by_use: BTreeMap<u64, u64>,
    /// Advances on every use.
    clock: u64,
}

struct Slot<T> {
    handle: Arc<T>,
    last_use: u64,
}

impl<T> Inner<T> {
    fn touch(&mut self, id: u64) -> Option<Arc<T>> {
        self.clock += 1;
        let clock = self.clock;
        let slot = self.entries.get_mut(&id)?;
        self.by_use.remove(&slot.last_use);
        slot.last_use = clock;
        self.by_use.insert(clock, id);
        Some(slot.handle.clone())
    }
}

impl<T> HandleCache<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        HandleCache {
            capacity: AtomicUsize::new(capacity.max(1)),
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                by_use: BTreeMap::new(),
                clock: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        // The map stays consistent across a panic elsewhere: every update is done under the
        // lock without calling out.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The handle for `id`, opened with `open` when it is not cached. Opening happens outside
    /// the lock; evicted handles are closed outside it too. When the process is out of
    /// descriptors or mappings (`EMFILE`, `ENFILE`, `ENOMEM`: sockets or other caches took
    /// them), half of this cache is closed and the open tried once more, so that a read or an
    /// append fails (which takes a log dir offline) only when closing handles did not help.
    pub(crate) fn get(
        &self,
        id: u64,
        mut open: impl FnMut() -> io::Result<T>,
    ) -> io::Result<Arc<T>> {
        if let Some(handle) = self.lock().touch(id) {
            return Ok(handle);
        }
        let handle = match open() {
            Err(e) if is_exhaustion(&e) => {
                let shed = self.shed_half();
                tracing::warn!(error = %e, closed = shed, "out of descriptors or mappings; closed the least recently used half of a segment file cache");
                open()?
            }
            other => other?,
        };
        Ok(self.insert(id, handle))
    }

    /// Closes the least recently used half of the handles; returns how many.
    fn shed_half(&self) -> usize {
        let evicted: Vec<Arc<T>> = {
            let mut inner = self.lock();
            let n = inner.entries.len().div_ceil(2);
            let mut out = Vec::with_capacity(n);
            while out.len() < n {
                let Some((_, oldest)) = inner.by_use.pop_first() else {
                    break;
                };
                if let Some(slot) = inner.entries.remove(&oldest) {
                    out.push(slot.handle);
                }
            }
            out
        };
        evicted.len()
    }

    /// The handle for `id` if it is cached (no open on a miss).
    pub(crate) fn peek(&self, id: u64) -> Option<Arc<T>> {
        self.lock().touch(id)
    }

    /// Caches `handle` as `id`'s (replacing any), evicting the least recently used beyond
    /// the capacity.
    pub(crate) fn insert(&self, id: u64, handle: T) -> Arc<T> {
        let handle = Arc::new(handle);
        let capacity = self.capacity.load(Ordering::Relaxed);
        let mut evicted = Vec::new();
        {
            let mut inner = self.lock();
            inner.clock += 1;
            let clock = inner.clock;
            let slot = Slot {
                handle: handle.clone(),
                last_use: clock,
            };
            if let Some(old) = inner.entries.insert(id, slot) {
                inner.by_use.remove(&old.last_use);
                evicted.push(old.handle);
            }
            inner.by_use.insert(clock, id);
            while inner.entries.len() > capacity {
                let Some((_, oldest)) = inner.by_use.pop_first() else {
                    break;
                };
                if let Some(slot) = inner.entries.remove(&oldest) {
                    evicted.push(slot.handle);
                }
            }
        }
        drop(evicted);
        handle
    }

    /// Forgets `id`'s handle (closed once no operation holds it).
    pub(crate) fn remove(&self, id: u64) {
        let removed = {
            let mut inner = self.lock();
            let slot = inner.entries.remove(&id);
            if let Some(slot) = &slot {
                inner.by_use.remove(&slot.last_use);
            }
            slot
        };
        drop(removed);
    }

    pub(crate) fn contains(&self, id: u64) -> bool {
        self.lock().entries.contains_key(&id)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Relaxed)
    }

    fn lower_capacity(&self, max: usize) {
        self.capacity.fetch_min(max.max(1), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_handle_is_evicted_beyond_the_capacity() {
        let cache = HandleCache::new(2);
        let opens = std::cell::Cell::new(0);
        let get = |id: u64| {
            *cache
                .get(id, || {
                    opens.set(opens.get() + 1);
                    Ok(id * 10)
                })
                .unwrap()
        };
        assert_eq!(get(1), 10);
        assert_eq!(get(2), 20);
        assert_eq!(get(1), 10, "cached");
        assert_eq!(opens.get(), 2);
        assert_eq!(get(3), 30);
        assert_eq!(cache.len(), 2);
        assert!(cache.contains(1), "used more recently than 2");
        assert!(!cache.contains(2), "the least recently used goes");
        assert_eq!(get(2), 20, "reopened on the next use");
        assert_eq!(opens.get(), 4);
    }

    #[test]
    fn an_evicted_handle_stays_usable_by_whoever_holds_it() {
        let cache = HandleCache::new(1);
        let held = cache.get(1, || Ok(String::from("one"))).unwrap();
        cache.get(2, || Ok(String::from("two"))).unwrap();
        assert!(!cache.contains(1));
        assert_eq!(held.as_str(), "one");
        cache.remove(2);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn running_out_of_descriptors_closes_half_the_cache_and_retries_once() {
        let cache = HandleCache::new(10);
        for id in 0..4 {
            cache.get(id, || Ok(id)).unwrap();
        }
        let mut attempts = 0;
        let got = cache.get(9, || {
            attempts += 1;
            if attempts == 1 {
                Err(io::Error::from_raw_os_error(libc::EMFILE))
            } else {
                Ok(9)
            }
        });
        assert_eq!(*got.unwrap(), 9);
        assert_eq!(attempts, 2);
        assert!(
            !cache.contains(0) && !cache.contains(1),
            "the older half closed"
        );
        assert!(cache.contains(2) && cache.contains(3) && cache.contains(9));
    }

    #[test]
    fn a_failed_open_caches_nothing() {
        let cache: HandleCache<u8> = HandleCache::new(4);
        let err = cache
            .get(1, || Err(io::Error::from_raw_os_error(libc::EMFILE)))
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EMFILE));
        assert!(!cache.contains(1));
        assert_eq!(*cache.get(1, || Ok(7)).unwrap(), 7);
    }
}
