//! Kafka's checkpoint text files: a version line, an entry-count line, then one entry per line.
//! Offset checkpoints (`recovery-point-offset-checkpoint`, `replication-offset-checkpoint`,
//! `log-start-offset-checkpoint`) hold `topic partition offset` entries; the per-partition
//! `leader-epoch-checkpoint` holds `epoch startOffset` entries (see `leader_epoch`).
//!
//! Writes are atomic: a temp file beside the target, fsync, rename over the target, fsync of
//! the directory, so a crash leaves either the old file or the new one, never a mix.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::log::{StorageError, TopicPartition};

/// Writes `contents` to `path` through a temp file and a rename. `durable` adds the fsyncs of
/// the file and its directory; without them the swap is still atomic against a process crash
/// (the page cache survives it), just not against power loss.
pub fn write_atomically(path: &Path, contents: &[u8], durable: bool) -> io::Result<()> {
    let tmp = temp_path(path);
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(contents)?;
        if durable {
            f.sync_all()?;
        }
    }
    fs::rename(&tmp, path)?;
    if durable {
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
    }
    Ok(())
}

/// fsync of a directory, so renames and new files in it survive power loss.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Renders a checkpoint: version, count, entries.
pub(crate) fn render(version: i32, entries: &[String]) -> String {
    let mut out = format!("{version}\n{}\n", entries.len());
    for e in entries {
        out.push_str(e);
        out.push('\n');
    }
    out
}

/// Parses a checkpoint into its entry lines, checking the version and the count as Kafka's
/// `CheckpointFile` reader does. `Ok(None)` when the file does not exist.
pub(crate) fn read_entries(path: &Path, version: i32) -> Result<Option<Vec<String>>, StorageError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io(format!("read {}", path.display()), e)),
    };
    let malformed =
        |why: String| StorageError::Corrupt(format!("checkpoint {}: {why}", path.display()));
    let mut lines = text.lines();
    let found_version = lines
        .next()
        .ok_or_else(|| malformed("empty file".into()))?
        .trim();
    if found_version != version.to_string() {
        return Err(malformed(format!(
            "version {found_version:?}, expected {version}"
        )));
    }
    let count: usize = lines
        .next()
        .ok_or_else(|| malformed("no entry count".into()))?
        .trim()
        .parse()
        .map_err(|e| malformed(format!("bad entry count: {e}")))?;
    let entries: Vec<String> = lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
        .collect();
    if entries.len() != count {
        return Err(malformed(format!(
            "expected {count} entries, found {}",
            entries.len()
        )));
    }
    Ok(Some(entries))
}

/// The per-log-dir offset checkpoints (`topic partition offset` lines).
pub struct OffsetCheckpointFile;

impl OffsetCheckpointFile {
    pub const VERSION: i32 = 0;

    /// The checkpointed offsets; empty when the file does not exist.
    pub fn read(path: &Path) -> Result<HashMap<TopicPartition, i64>, StorageError> {
        let Some(entries) = read_entries(path, Self::VERSION)? else {
            return Ok(HashMap::new());
        };
        let mut map = HashMap::with_capacity(entries.len());
        for line in entries {
            let mut parts = line.split_whitespace();
            let parsed = match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(topic), Some(partition), Some(offset), None) => partition
                    .parse::<i32>()
                    .ok()
                    .zip(offset.parse::<i64>().ok())
                    .map(|(p, o)| (TopicPartition::new(topic, p), o)),
                _ => None,
            };
            let (tp, offset) = parsed.ok_or_else(|| {
                StorageError::Corrupt(format!(
                    "checkpoint {}: malformed line {line:?}",
                    path.display()
                ))
            })?;
            map.insert(tp, offset);
        }
        Ok(map)
    }

    /// Replaces the file atomically and durably. Entries are sorted so the file is stable.
    pub fn write(path: &Path, map: &HashMap<TopicPartition, i64>) -> Result<(), StorageError> {
        let mut entries: Vec<_> = map.iter().collect();
        entries.sort();
        let lines: Vec<String> = entries
            .into_iter()
            .map(|(tp, offset)| format!("{} {} {offset}", tp.topic, tp.partition))
            .collect();
        write_atomically(path, render(Self::VERSION, &lines).as_bytes(), true)
            .map_err(|e| StorageError::io(format!("write {}", path.display()), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_checkpoint_round_trips_in_kafkas_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recovery-point-offset-checkpoint");
        let mut map = HashMap::new();
        map.insert(TopicPartition::new("orders", 0), 42);
        map.insert(TopicPartition::new("orders", 1), 7);
        OffsetCheckpointFile::write(&path, &map).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "0\n2\norders 0 42\norders 1 7\n"
        );
        assert_eq!(OffsetCheckpointFile::read(&path).unwrap(), map);
        assert!(!temp_path(&path).exists());
    }

    #[test]
    fn missing_checkpoint_reads_empty() {
        let dir = tempfile::tempdir().unwrap();
        let map = OffsetCheckpointFile::read(&dir.path().join("nope")).unwrap();
        assert!(map.is_empty());
    }

    #[test]
    fn malformed_checkpoints_are_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp");
        for text in [
            "1\n0\n",
            "0\n2\nt 0 1\n",
            "0\n1\nt x 1\n",
            "0\n1\nt 0\n",
            "",
            "0\nx\n",
        ] {
            fs::write(&path, text).unwrap();
            assert!(
                matches!(
                    OffsetCheckpointFile::read(&path),
                    Err(StorageError::Corrupt(_))
                ),
                "{text:?}"
            );
        }
    }

    #[test]
    fn kafka_written_checkpoint_parses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replication-offset-checkpoint");
        fs::write(&path, "0\n2\n__consumer_offsets 12 0\nmy-topic 3 1500\n").unwrap();
        let map = OffsetCheckpointFile::read(&path).unwrap();
        assert_eq!(map[&TopicPartition::new("my-topic", 3)], 1500);
        assert_eq!(map[&TopicPartition::new("__consumer_offsets", 12)], 0);
    }
}
