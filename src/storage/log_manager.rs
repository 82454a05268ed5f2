//! Kafka's `LogManager`: the log dirs of one broker. It locks each dir, keeps its
//! `meta.properties` (broker id, cluster id) consistent with the configuration, reads and
//! writes the per-dir checkpoints (`recovery-point-offset-checkpoint`,
//! `replication-offset-checkpoint`, `log-start-offset-checkpoint`), honours and consumes the
//! `.kafka_cleanshutdown` marker, opens every partition directory it finds and places new
//! partitions in the dir holding the fewest. It opens each dir's `cleaner-offset-checkpoint`
//! and hands it to the dir's logs, which the log cleaner reaches it through.
//!
//! The broker owns the LogManager; each opened [`PartitionLog`] is handed to the partition
//! replica actor that owns it from then on.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::checkpoint::{sync_dir, write_atomically, OffsetCheckpointFile};
use super::cleaner::checkpoint::CleanerCheckpoints;
use super::log::{LogLoadParams, PartitionLog, StorageError, TopicPartition};
use crate::config::TopicConfig;

pub const META_PROPERTIES: &str = "meta.properties";
pub const CLEAN_SHUTDOWN_FILE: &str = ".kafka_cleanshutdown";
pub const LOCK_FILE: &str = ".lock";
pub const RECOVERY_POINT_CHECKPOINT: &str = "recovery-point-offset-checkpoint";
pub const REPLICATION_OFFSET_CHECKPOINT: &str = "replication-offset-checkpoint";
pub const LOG_START_OFFSET_CHECKPOINT: &str = "log-start-offset-checkpoint";

/// What `meta.properties` records about the broker that owns a log dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerMetadata {
    pub broker_id: i32,
    pub cluster_id: Option<String>,
}

impl BrokerMetadata {
    /// Kafka's ZooKeeper-mode format (version 0).
    fn render(&self) -> String {
        let mut out = String::from("#\n#Written by weir\nversion=0\n");
        out.push_str(&format!("broker.id={}\n", self.broker_id));
        if let Some(cluster) = &self.cluster_id {
            out.push_str(&format!("cluster.id={cluster}\n"));
        }
        out
    }

    /// Reads a dir's `meta.properties`; `None` when absent. Accepts version 0 (`broker.id`)
    /// and version 1 (`node.id`, KRaft).
    pub fn read(dir: &Path) -> Result<Option<Self>, StorageError> {
        let path = dir.join(META_PROPERTIES);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io(format!("read {}", path.display()), e)),
        };
        let bad = |why: String| StorageError::LogDir(format!("{}: {why}", path.display()));
        let props = crate::config::properties::parse(&text).map_err(|e| bad(e.to_string()))?;
        let version = props.get("version").map(String::as_str).unwrap_or("");
        let id_key = match version {
            "0" => "broker.id",
            "1" => "node.id",
            other => return Err(bad(format!("unsupported version {other:?}"))),
        };
        let broker_id = props
            .get(id_key)
            .and_then(|v| v.trim().parse::<i32>().ok())
            .ok_or_else(|| bad(format!("no valid {id_key}")))?;
        Ok(Some(BrokerMetadata {
            broker_id,
            cluster_id: props.get("cluster.id").cloned().filter(|c| !c.is_empty()),
        }))
    }
}

/// One log dir, locked for this broker's lifetime.
#[derive(Debug)]
struct LogDir {
    path: PathBuf,
    /// Holds the `flock` on `.lock`: two brokers (even in one process) cannot share a dir.
    _lock: File,
    /// The dir's `cleaner-offset-checkpoint`, shared with every log in it (truncation and
    /// deletion edit it) and through them with the log cleaner.
    cleaner_checkpoints: CleanerCheckpoints,
    /// Set when an I/O error hit the dir (a full disk, a failed device): Kafka's offline
    /// log dir. No log is created there, no checkpoint or clean-shutdown marker written (the
    /// next start must recover its logs), until the broker restarts.
    offline: bool,
}

#[derive(Debug)]
pub struct LogManager {
    dirs: Vec<LogDir>,
    broker_id: i32,
    cluster_id: Option<String>,
    /// Index into `dirs` of each partition's dir: checkpoints are per dir, and placement
    /// counts partitions per dir.
    placement: HashMap<TopicPartition, usize>,
}

fn lock_dir(dir: &Path) -> Result<File, StorageError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StorageError::io(format!("open {}", path.display()), e))?;
    // SAFETY: flock on a descriptor we own; no memory is passed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(StorageError::LogDir(format!(
            "log dir {} is in use by another broker ({})",
            dir.display(),
            std::io::Error::last_os_error()
        )));
    }
    Ok(file)
}

/// Checkpointed offsets of one dir; a corrupt checkpoint is forgotten with a warning (Kafka
/// resets it too: a recovery point of 0 means a full recovery, which is safe).
fn read_checkpoint(dir: &Path, name: &str) -> HashMap<TopicPartition, i64> {
    match OffsetCheckpointFile::read(&dir.join(name)) {
        Ok(map) => map,
        Err(e) => {
            warn!("{e}; ignoring {name} in {}", dir.display());
            HashMap::new()
        }
    }
}

impl LogManager {
    /// Marks the log dir `dir` offline; false when it was already (or is not one of ours).
    pub fn mark_offline(&mut self, dir: &Path) -> bool {
        match self.dirs.iter_mut().find(|d| d.path == dir) {
            Some(d) if !d.offline => {
                d.offline = true;
                true
            }
            _ => false,
        }
    }

    /// The log dirs marked offline.
    pub fn offline_dirs(&self) -> Vec<PathBuf> {
        self.dirs
            .iter()
            .filter(|d| d.offline)
            .map(|d| d.path.clone())
            .collect()
    }

    /// The broker metadata stored in the first of `dirs` holding a `meta.properties` (the
    /// broker reads it before deciding or generating its id).
    pub fn read_broker_metadata(dirs: &[PathBuf]) -> Result<Option<BrokerMetadata>, StorageError> {
        for dir in dirs {
            if let Some(meta) = BrokerMetadata::read(dir)? {
                return Ok(Some(meta));
            }
        }
        Ok(None)
    }

    /// Opens every log dir (creating it), checks or writes `meta.properties`, reads the
    /// checkpoints and the clean-shutdown marker, opens every partition dir it finds (with
    /// `defaults`; the broker applies topic overrides with `update_config`), then removes the
    /// marker so a crash from here on is detected.
    pub fn open(
        dirs: &[PathBuf],
        broker_id: i32,
        cluster_id: Option<&str>,
        defaults: &TopicConfig,
    ) -> Result<(LogManager, Vec<PartitionLog>), StorageError> {
        if dirs.is_empty() {
            return Err(StorageError::LogDir("no log dir configured".into()));
        }
        let mut manager = LogManager {
            dirs: Vec::new(),
            broker_id,
            cluster_id: cluster_id.map(str::to_string),
            placement: HashMap::new(),
        };
        for dir in dirs {
            fs::create_dir_all(dir)
                .map_err(|e| StorageError::io(format!("create {}", dir.display()), e))?;
            let lock = lock_dir(dir)?;
            manager.check_meta_properties(dir)?;
            manager.dirs.push(LogDir {
                path: dir.clone(),
                _lock: lock,
                cleaner_checkpoints: CleanerCheckpoints::open(dir),
                offline: false,
            });
        }

        let mut logs = Vec::new();
        for index in 0..manager.dirs.len() {
            let dir = manager.dirs[index].path.clone();
            let marker = dir.join(CLEAN_SHUTDOWN_FILE);
            let clean_shutdown = marker.exists();
            let recovery = read_checkpoint(&dir, RECOVERY_POINT_CHECKPOINT);
            let replication = read_checkpoint(&dir, REPLICATION_OFFSET_CHECKPOINT);
            let log_start = read_checkpoint(&dir, LOG_START_OFFSET_CHECKPOINT);
            let entries = fs::read_dir(&dir)
                .map_err(|e| StorageError::io(format!("list {}", dir.display()), e))?;
            let mut partition_dirs = Vec::new();
            for entry in entries {
                let entry =
                    entry.map_err(|e| StorageError::io(format!("list {}", dir.display()), e))?;
                let path = entry.path();
                if !path.is_dir() {
                    continue;
                }
                let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                if name.ends_with("-delete") {
                    info!("finishing the deletion of {}", path.display());
                    fs::remove_dir_all(&path)
                        .map_err(|e| StorageError::io(format!("delete {}", path.display()), e))?;
                    continue;
                }
                match TopicPartition::from_dir_name(&name) {
                    Some(tp) => partition_dirs.push((tp, path)),
                    None => warn!("ignoring {}: not a partition directory", path.display()),
                }
            }
            partition_dirs.sort();
            for (tp, path) in partition_dirs {
                if manager.placement.contains_key(&tp) {
                    return Err(StorageError::LogDir(format!(
                        "partition {tp} has directories in two log dirs"
                    )));
                }
                let params = LogLoadParams {
                    recovery_point: recovery.get(&tp).copied().unwrap_or(0),
                    log_start_offset: log_start.get(&tp).copied().unwrap_or(-1),
                    high_watermark: replication.get(&tp).copied().unwrap_or(-1),
                    clean_shutdown,
                };
                let mut log = PartitionLog::load(&path, tp.clone(), defaults, params)?;
                log.attach_cleaner_checkpoints(manager.dirs[index].cleaner_checkpoints.clone())?;
                manager.placement.insert(tp, index);
                logs.push(log);
            }
            if clean_shutdown {
                fs::remove_file(&marker)
                    .map_err(|e| StorageError::io(format!("remove {}", marker.display()), e))?;
                sync_dir(&dir)
                    .map_err(|e| StorageError::io(format!("fsync {}", dir.display()), e))?;
            }
            info!(
                "log dir {} loaded ({} partitions, {} shutdown)",
                dir.display(),
                manager.partitions_in(index),
                if clean_shutdown { "clean" } else { "unclean" }
            );
        }
        Ok((manager, logs))
    }

    /// Fails on a `meta.properties` naming another broker or cluster; writes it when absent or
    /// when it lacks a cluster id this broker now knows.
    fn check_meta_properties(&self, dir: &Path) -> Result<(), StorageError> {
        let stored = BrokerMetadata::read(dir)?;
        if let Some(stored) = &stored {
            if self.broker_id >= 0 && stored.broker_id != self.broker_id {
                return Err(StorageError::LogDir(format!(
                    "configured broker.id {} does not match broker.id {} stored in {}",
                    self.broker_id,
                    stored.broker_id,
                    dir.join(META_PROPERTIES).display()
                )));
            }
            if let (Some(stored_cluster), Some(cluster)) = (&stored.cluster_id, &self.cluster_id) {
                if stored_cluster != cluster {
                    return Err(StorageError::LogDir(format!(
                        "cluster id {cluster} does not match cluster.id {stored_cluster} stored in {}",
                        dir.join(META_PROPERTIES).display()
                    )));
                }
            }
        }
        let needs_write = match &stored {
            None => self.broker_id >= 0,
            Some(stored) => stored.cluster_id.is_none() && self.cluster_id.is_some(),
        };
        if needs_write {
            let meta = BrokerMetadata {
                broker_id: stored.as_ref().map_or(self.broker_id, |s| s.broker_id),
                cluster_id: self.cluster_id.clone(),
            };
            let path = dir.join(META_PROPERTIES);
            write_atomically(&path, meta.render().as_bytes(), true)
                .map_err(|e| StorageError::io(format!("write {}", path.display()), e))?;
        }
        Ok(())
    }

    pub fn broker_id(&self) -> i32 {
        self.broker_id
    }

    pub fn cluster_id(&self) -> Option<&str> {
        self.cluster_id.as_deref()
    }

    pub fn log_dirs(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.path.clone()).collect()
    }

    /// The log dir holding `tp`, if this broker has it.
    pub fn log_dir_of(&self, tp: &TopicPartition) -> Option<&Path> {
        self.placement.get(tp).map(|&i| self.dirs[i].path.as_path())
    }

    fn partitions_in(&self, index: usize) -> usize {
        self.placement.values().filter(|&&i| i == index).count()
    }

    /// New partition: a log in the dir holding the fewest partitions (the first on ties).
    /// The online dir holding the fewest logs: where [`Self::create_log`] puts the next one
    /// (an I/O error creating it is that dir's failure).
    pub fn dir_for_new_log(&self) -> Option<&Path> {
        self.dir_index_for_new_log()
            .map(|i| self.dirs[i].path.as_path())
    }

    fn dir_index_for_new_log(&self) -> Option<usize> {
        (0..self.dirs.len())
            .filter(|&i| !self.dirs[i].offline)
            .min_by_key(|&i| self.partitions_in(i))
    }

    pub fn create_log(
        &mut self,
        tp: &TopicPartition,
        config: &TopicConfig,
    ) -> Result<PartitionLog, StorageError> {
        if self.placement.contains_key(tp) {
            return Err(StorageError::LogDir(format!(
                "a log for {tp} already exists"
            )));
        }
        let index = self
            .dir_index_for_new_log()
            .ok_or_else(|| StorageError::LogDir("every log dir is offline".into()))?;
        let path = self.dirs[index].path.join(tp.to_string());
        let params = LogLoadParams {
            recovery_point: 0,
            log_start_offset: -1,
            high_watermark: -1,
            clean_shutdown: false,
        };
        let mut log = PartitionLog::load(&path, tp.clone(), config, params)?;
        log.attach_cleaner_checkpoints(self.dirs[index].cleaner_checkpoints.clone())?;
        sync_dir(&self.dirs[index].path).map_err(|e| {
            StorageError::io(format!("fsync {}", self.dirs[index].path.display()), e)
        })?;
        self.placement.insert(tp.clone(), index);
        Ok(log)
    }

    /// Deletes a partition's log and forgets it.
    pub fn delete_log(&mut self, log: PartitionLog) -> Result<(), StorageError> {
        self.placement.remove(log.topic_partition());
        log.delete()
    }

    /// Writes the three offset checkpoints of every log dir, each with the partitions that
    /// live there (partitions this manager does not know are ignored).
    pub fn write_checkpoints(
        &self,
        recovery: &HashMap<TopicPartition, i64>,
        hwm: &HashMap<TopicPartition, i64>,
        log_start: &HashMap<TopicPartition, i64>,
    ) -> Result<(), StorageError> {
        match self
            .write_checkpoints_per_dir(recovery, hwm, log_start)
            .into_iter()
            .next()
        {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }

    /// [`LogManager::write_checkpoints`], going on past a failing dir: returns each online dir
    /// whose checkpoints could not be written, with why (Kafka takes such a dir offline).
    pub fn write_checkpoints_per_dir(
        &self,
        recovery: &HashMap<TopicPartition, i64>,
        hwm: &HashMap<TopicPartition, i64>,
        log_start: &HashMap<TopicPartition, i64>,
    ) -> Vec<(PathBuf, StorageError)> {
        let mut failed = Vec::new();
        for (index, dir) in self.dirs.iter().enumerate().filter(|(_, d)| !d.offline) {
            let here = |map: &HashMap<TopicPartition, i64>| -> HashMap<TopicPartition, i64> {
                map.iter()
                    .filter(|(tp, _)| self.placement.get(*tp) == Some(&index))
                    .map(|(tp, o)| (tp.clone(), *o))
                    .collect()
            };
            let written = [
                (RECOVERY_POINT_CHECKPOINT, recovery),
                (REPLICATION_OFFSET_CHECKPOINT, hwm),
                (LOG_START_OFFSET_CHECKPOINT, log_start),
            ]
            .into_iter()
            .try_for_each(|(name, map)| {
                OffsetCheckpointFile::write(&dir.path.join(name), &here(map))
            });
            if let Err(e) = written {
                failed.push((dir.path.clone(), e));
            }
        }
        failed
    }

    /// Leaves the clean-shutdown marker in every dir. Call after every log was closed and the
    /// checkpoints written: the next start then trusts the logs without recovery.
    pub fn mark_clean_shutdown(&self) -> Result<(), StorageError> {
        for dir in self.dirs.iter().filter(|d| !d.offline) {
            let marker = dir.path.join(CLEAN_SHUTDOWN_FILE);
            write_atomically(&marker, b"", true)
                .map_err(|e| StorageError::io(format!("write {}", marker.display()), e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_properties_are_written_in_kafkas_format() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = vec![dir.path().to_path_buf()];
        let (_m, logs) = LogManager::open(&dirs, 3, Some("abc"), &TopicConfig::default()).unwrap();
        assert!(logs.is_empty());
        let text = fs::read_to_string(dir.path().join(META_PROPERTIES)).unwrap();
        assert!(text.contains("version=0\n"), "{text}");
        assert!(text.contains("broker.id=3\n"), "{text}");
        assert!(text.contains("cluster.id=abc\n"), "{text}");
        assert_eq!(
            LogManager::read_broker_metadata(&dirs).unwrap(),
            Some(BrokerMetadata {
                broker_id: 3,
                cluster_id: Some("abc".into())
            })
        );
    }

    #[test]
    fn another_brokers_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = vec![dir.path().to_path_buf()];
        drop(LogManager::open(&dirs, 1, Some("c1"), &TopicConfig::default()).unwrap());
        let err = LogManager::open(&dirs, 2, Some("c1"), &TopicConfig::default()).unwrap_err();
        assert!(err.to_string().contains("broker.id"), "{err}");
        let err = LogManager::open(&dirs, 1, Some("c2"), &TopicConfig::default()).unwrap_err();
        assert!(err.to_string().contains("cluster"), "{err}");
    }

    #[test]
    fn a_locked_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = vec![dir.path().to_path_buf()];
        let _held = LogManager::open(&dirs, 1, None, &TopicConfig::default()).unwrap();
        let err = LogManager::open(&dirs, 1, None, &TopicConfig::default()).unwrap_err();
        assert!(err.to_string().contains("in use"), "{err}");
    }

    #[test]
    fn an_offline_dir_gets_no_new_log_no_checkpoint_and_no_clean_shutdown_marker() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let dirs = vec![a.path().to_path_buf(), b.path().to_path_buf()];
        let (mut m, _) = LogManager::open(&dirs, 1, None, &TopicConfig::default()).unwrap();
        assert!(m.mark_offline(a.path()));
        assert!(!m.mark_offline(a.path()), "already offline");
        assert_eq!(m.offline_dirs(), vec![a.path().to_path_buf()]);
        for p in 0..3 {
            let tp = TopicPartition::new("t", p);
            m.create_log(&tp, &TopicConfig::default()).unwrap();
            assert_eq!(m.log_dir_of(&tp), Some(b.path()));
        }
        m.write_checkpoints(&HashMap::new(), &HashMap::new(), &HashMap::new())
            .unwrap();
        m.mark_clean_shutdown().unwrap();
        assert!(!a.path().join(CLEAN_SHUTDOWN_FILE).exists());
        assert!(!a.path().join(RECOVERY_POINT_CHECKPOINT).exists());
        assert!(b.path().join(CLEAN_SHUTDOWN_FILE).exists());
        assert!(m.mark_offline(b.path()));
        let err = m
            .create_log(&TopicPartition::new("t", 9), &TopicConfig::default())
            .unwrap_err();
        assert!(err.to_string().contains("offline"), "{err}");
    }

    #[test]
    fn a_dir_whose_checkpoints_cannot_be_written_is_reported_and_the_others_are_written() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let dirs = vec![a.path().to_path_buf(), b.path().to_path_buf()];
        let (m, _) = LogManager::open(&dirs, 1, None, &TopicConfig::default()).unwrap();
        // A directory where the checkpoint file must go: the write fails with an I/O error.
        fs::create_dir(a.path().join(RECOVERY_POINT_CHECKPOINT)).unwrap();
        let empty = HashMap::new();
        let failed = m.write_checkpoints_per_dir(&empty, &empty, &empty);
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert_eq!(failed[0].0, a.path());
        assert!(
            matches!(failed[0].1, StorageError::Io { .. }),
            "{:?}",
            failed[0].1
        );
        assert!(b.path().join(RECOVERY_POINT_CHECKPOINT).is_file());
        assert!(m.write_checkpoints(&empty, &empty, &empty).is_err());
    }

    #[test]
    fn new_partitions_go_to_the_dir_with_fewest() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let dirs = vec![a.path().to_path_buf(), b.path().to_path_buf()];
        let (mut m, _) = LogManager::open(&dirs, 1, None, &TopicConfig::default()).unwrap();
        let config = TopicConfig::default();
        let mut placed = Vec::new();
        for p in 0..4 {
            let tp = TopicPartition::new("t", p);
            let log = m.create_log(&tp, &config).unwrap();
            placed.push(log.dir().parent().unwrap().to_path_buf());
        }
        assert_eq!(placed[0], a.path());
        assert_eq!(placed[1], b.path());
        assert_eq!(placed[2], a.path());
        assert_eq!(placed[3], b.path());
        assert!(m.create_log(&TopicPartition::new("t", 0), &config).is_err());
    }
}
