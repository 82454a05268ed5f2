//! The crash-safe swap of cleaned segments, as Kafka's `replaceSegments` and `LogLoader` do
//! it. For one cleaned segment with base `b` replacing segments `b = s1 < s2 < ... < sn`:
//!
//! ```text
//! 1. b.index.cleaned → b.index.swap, b.timeindex.cleaned → b.timeindex.swap,
//!    b.log.cleaned → b.log.swap                       ← the commit point
//! 2. each si.{index,timeindex,log} → si.*.deleted
//! 3. b.index.swap → b.index, b.timeindex.swap → b.timeindex, b.log.swap → b.log
//! 4. the .deleted files are removed (off the log's owner)
//! ```
//!
//! The `.cleaned` files were fsynced before step 1, so a `b.log.swap` on disk is always a
//! whole cleaned segment. [`recover_interrupted_swaps`] runs when a log is opened, before its
//! segments are listed, and turns any crash point into either the old segments or the new
//! one, never a mix and never a gap:
//!
//! - `.deleted` and `.cleaned` files are removed (a crash before the commit point leaves the
//!   old segments whole; after it, the replaced files are no longer needed);
//! - for every `b.log.swap`, the offsets it covers are `[b, next offset after its last
//!   batch)`; every plain segment file with a base in that range is a replaced segment not yet
//!   renamed away, and goes; then `b.log.swap` becomes `b.log`. Its indexes are rebuilt from
//!   it (the `.swap` indexes are dropped rather than trusted);
//! - any other `.swap` file (indexes renamed before a crash stopped step 1) is removed.
//!
//! The range rule is exact because a clean keeps the last batch of every cleaned segment,
//! emptied to a header if need be: the cleaned segment's offsets end where the
//! last replaced segment's did, and the next segment starts at or after that.

use std::fs;
use std::path::Path;

use tracing::{info, warn};

use super::{CLEANED_SUFFIX, DELETED_SUFFIX, SWAP_SUFFIX};
use crate::storage::checkpoint::sync_dir;
use crate::storage::file_records::scan_file;
use crate::storage::log::StorageError;
use crate::storage::segment::{
    segment_file, segment_file_with, LogSegment, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX,
};

/// How a swap ended.
#[derive(Debug)]
pub enum SwapOutcome {
    /// The cleaned segments are in the log; the replaced ones wait in [`DeletedSegments`]
    /// for their files to be removed.
    Swapped {
        /// Cleaned segments swapped in.
        segments: usize,
        /// Bytes of the log before and after.
        bytes_before: u64,
        bytes_after: u64,
        deleted: DeletedSegments,
    },
    /// The log changed under the clean (retention, DeleteRecords, truncation) or its files
    /// are not the clean's any more: nothing was swapped and the cleaned files were removed.
    Discarded(String),
    /// The fault-injection seam stopped the swap midway (tests of crash recovery): the files
    /// are left exactly as a crash at that point would leave them, and the log in memory is
    /// no longer consistent with them; drop it and open the log again.
    Interrupted,
}

/// Replaced segments, renamed to `.deleted`, whose files are still to be removed. Removing
/// them is blocking work for a blocking thread; a crash first leaves `.deleted` files that the
/// next open removes.
#[derive(Debug, Default)]
pub struct DeletedSegments(pub(crate) Vec<LogSegment>);

impl DeletedSegments {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Removes the files.
    pub fn delete(self) -> Result<(), StorageError> {
        for segment in self.0 {
            segment.delete()?;
        }
        Ok(())
    }
}

/// A segment file name: `(base offset, suffix, extra)` for `<20 digits>.<suffix><extra>`.
fn parse_name(name: &str) -> Option<(i64, &str, &str)> {
    let (stem, rest) = name.split_once('.')?;
    if stem.is_empty() || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let base = stem.parse::<i64>().ok()?;
    for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
        if let Some(extra) = rest.strip_prefix(suffix) {
            if extra.is_empty() || extra.starts_with('.') {
                return Some((base, suffix, extra));
            }
        }
    }
    None
}

/// Completes or undoes whatever swap a crash interrupted in the partition directory `dir`
/// (see the module doc). Returns how many swaps it completed.
pub fn recover_interrupted_swaps(dir: &Path) -> Result<usize, StorageError> {
    let list = || -> Result<Vec<(i64, String, String)>, StorageError> {
        let mut files = Vec::new();
        let entries = fs::read_dir(dir)
            .map_err(|e| StorageError::io(format!("list {}", dir.display()), e))?;
        for entry in entries {
            let entry =
                entry.map_err(|e| StorageError::io(format!("list {}", dir.display()), e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some((base, suffix, extra)) = parse_name(name) {
                files.push((base, suffix.to_string(), extra.to_string()));
            }
        }
        files.sort();
        Ok(files)
    };
    let remove = |path: &Path| -> Result<(), StorageError> {
        match fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(StorageError::io(format!("remove {}", path.display()), e))
            }
            _ => Ok(()),
        }
    };
    let mut changed = false;
    for (base, suffix, extra) in list()? {
        if extra == DELETED_SUFFIX || extra == CLEANED_SUFFIX {
            remove(&segment_file_with(dir, base, &suffix, &extra))?;
            changed = true;
        }
    }
    let files = list()?;
    let swaps: Vec<i64> = files
        .iter()
        .filter(|(_, suffix, extra)| suffix == LOG_SUFFIX && extra == SWAP_SUFFIX)
        .map(|(base, _, _)| *base)
        .collect();
    for &base in &swaps {
        let swap_log = segment_file_with(dir, base, LOG_SUFFIX, SWAP_SUFFIX);
        let next = next_offset_of(&swap_log)?.unwrap_or(base);
        for (other, suffix, extra) in &files {
            if extra.is_empty() && *other >= base && *other < next.max(base + 1) {
                remove(&segment_file(dir, *other, suffix))?;
            }
        }
        remove(&segment_file_with(dir, base, INDEX_SUFFIX, SWAP_SUFFIX))?;
        remove(&segment_file_with(
            dir,
            base,
            TIME_INDEX_SUFFIX,
            SWAP_SUFFIX,
        ))?;
        let target = segment_file(dir, base, LOG_SUFFIX);
        fs::rename(&swap_log, &target).map_err(|e| {
            StorageError::io(
                format!("rename {} to {}", swap_log.display(), target.display()),
                e,
            )
        })?;
        info!(
            "{}: completed an interrupted swap of cleaned segment {base} (offsets below {next})",
            dir.display()
        );
        changed = true;
    }
    for (base, suffix, extra) in list()? {
        if extra == SWAP_SUFFIX {
            warn!(
                "{}: removing {suffix}{extra} of segment {base} left by an interrupted swap",
                dir.display()
            );
            remove(&segment_file_with(dir, base, &suffix, &extra))?;
            changed = true;
        }
    }
    if changed {
        sync_dir(dir).map_err(|e| StorageError::io(format!("fsync {}", dir.display()), e))?;
    }
    Ok(swaps.len())
}

/// The offset after the last whole batch of a `.log` (scanning headers); `None` if it holds
/// none. A torn tail ends the scan: recovery of the segment deals with it.
fn next_offset_of(path: &Path) -> Result<Option<i64>, StorageError> {
    let file = fs::File::open(path)
        .map_err(|e| StorageError::io(format!("open {}", path.display()), e))?;
    let size = file
        .metadata()
        .map_err(|e| StorageError::io(format!("stat {}", path.display()), e))?
        .len();
    let mut scanner = scan_file(&file, 0, size, 1 << 20);
    let mut next = None;
    while let Ok(Some((_, h))) = scanner.next_header() {
        next = Some(h.next_offset());
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_file_names_parse_with_their_state_suffix() {
        assert_eq!(
            parse_name("00000000000000000042.log.swap"),
            Some((42, "log", ".swap"))
        );
        assert_eq!(
            parse_name("00000000000000000000.timeindex.cleaned"),
            Some((0, "timeindex", ".cleaned"))
        );
        assert_eq!(
            parse_name("00000000000000000007.index"),
            Some((7, "index", ""))
        );
        assert_eq!(parse_name("00000000000000000007.snapshot"), None);
        assert_eq!(parse_name("leader-epoch-checkpoint"), None);
        assert_eq!(parse_name("00000000000000000007.logx"), None);
    }
}
