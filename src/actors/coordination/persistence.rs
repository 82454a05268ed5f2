//! Durability of the embedded service, ZooKeeper's FileTxnLog + FileSnap: every committed
//! transaction is appended to a log file, and every `snapshot_every` transactions the whole
//! database is written to a snapshot, after which older files are removed.
//!
//! Files in the data dir (names carry 20-digit zxids so they sort as numbers):
//! - `log.<first zxid>`: `WEIRLOG1`, then records `[u32 len][u32 crc32][rmp-serde TxnRecord]`.
//!   A log is rolled at each snapshot, so `log.<S+1>` holds the txns after snapshot `S`.
//! - `snapshot.<zxid>`: `WEIRSNP1 [u32 crc32][u64 len][rmp-serde Snapshot]`, written to a
//!   `.tmp` file, fsynced and renamed, so a snapshot file is whole or absent.
//!
//! Loading takes the newest snapshot whose checksum holds and replays the log records after
//! it. A torn or corrupt record (a crash mid-append) ends the log: the file is truncated there
//! and later log files are removed, since nothing after it can be applied. A zxid gap between
//! records (lost files, not a crash) stops startup with an error rather than destroy data.
//!
//! Writing happens on a dedicated thread ([`LogWriter`]) so fsync never blocks the tree actor.
//! It commits in groups: it drains every record queued while the previous fsync ran, writes
//! them, fsyncs once and reports the highest durable zxid. Measured on this project's machine
//! (2 cores, virtio disk; release build, one in-process client): fdatasync costs ~0.2 ms, a
//! lone client's sequential create takes ~0.21 ms with fsync (~0.07 ms without), and 2000
//! concurrent set_data calls complete in ~12 ms with fsync (~10 ms without): concurrent
//! writers share fsyncs, so group commit makes durability nearly free under load.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use anyhow::{bail, Context};

use super::data_tree::{Database, Snapshot, TxnRecord};

const LOG_MAGIC: &[u8; 8] = b"WEIRLOG1";
const SNAPSHOT_MAGIC: &[u8; 8] = b"WEIRSNP1";
/// A record longer than this is corruption, not data (a multi of a few 1 MiB nodes fits).
const MAX_RECORD_LEN: u32 = 64 * 1024 * 1024;

fn log_name(first_zxid: i64) -> String {
    format!("log.{first_zxid:020}")
}

fn snapshot_name(zxid: i64) -> String {
    format!("snapshot.{zxid:020}")
}

/// Files named `<prefix>.<zxid>` in `dir`, sorted by zxid.
fn list(dir: &Path, prefix: &str) -> anyhow::Result<Vec<(i64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(prefix).and_then(|r| r.strip_prefix('.')) else {
            continue;
        };
        if let Ok(zxid) = rest.parse::<i64>() {
            found.push((zxid, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn encode_record(record: &TxnRecord) -> anyhow::Result<Vec<u8>> {
    let payload = rmp_serde::to_vec(record).context("encoding a txn record")?;
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_be_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Writes a snapshot atomically: temp file, fsync, rename, fsync of the directory.
pub fn write_snapshot(dir: &Path, snapshot: &Snapshot) -> anyhow::Result<PathBuf> {
    let payload = rmp_serde::to_vec(snapshot).context("encoding a snapshot")?;
    let path = dir.join(snapshot_name(snapshot.last_zxid));
    let tmp = path.with_extension("tmp");
    {
        let mut file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        file.write_all(SNAPSHOT_MAGIC)?;
        file.write_all(&crc32fast::hash(&payload).to_be_bytes())?;
        file.write_all(&(payload.len() as u64).to_be_bytes())?;
        file.write_all(&payload)?;
        file.sync_all()
            .with_context(|| format!("fsync {}", tmp.display()))?;
    }
    fs::rename(&tmp, &path).with_context(|| format!("renaming {}", tmp.display()))?;
    sync_dir(dir)?;
    Ok(path)
}

fn read_snapshot(path: &Path) -> anyhow::Result<Snapshot> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() < 20 || &bytes[..8] != SNAPSHOT_MAGIC {
        bail!("{}: not a weir snapshot", path.display());
    }
    let crc = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[12..20]);
    let len = u64::from_be_bytes(len);
    let payload = &bytes[20..];
    if payload.len() as u64 != len || crc32fast::hash(payload) != crc {
        bail!("{}: snapshot checksum or length mismatch", path.display());
    }
    rmp_serde::from_slice(payload).with_context(|| format!("decoding {}", path.display()))
}

/// Reads the records of one log file. Returns them with the byte offset where the valid part
/// ends and whether the file ended cleanly there.
fn read_log(path: &Path) -> anyhow::Result<(Vec<TxnRecord>, u64, bool)> {
    let mut bytes = Vec::new();
    File::open(path)
        .with_context(|| format!("opening {}", path.display()))?
        .read_to_end(&mut bytes)?;
    if bytes.len() < LOG_MAGIC.len() || &bytes[..8] != LOG_MAGIC {
        // A log torn before its header was complete holds nothing.
        return Ok((Vec::new(), 0, bytes.is_empty()));
    }
    let mut records = Vec::new();
    let mut pos = LOG_MAGIC.len();
    loop {
        if pos == bytes.len() {
            return Ok((records, pos as u64, true));
        }
        if bytes.len() - pos < 8 {
            return Ok((records, pos as u64, false));
        }
        let len = u32::from_be_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]]);
        let crc = u32::from_be_bytes([
            bytes[pos + 4],
            bytes[pos + 5],
            bytes[pos + 6],
            bytes[pos + 7],
        ]);
        let start = pos + 8;
        if len > MAX_RECORD_LEN || bytes.len() - start < len as usize {
            return Ok((records, pos as u64, false));
        }
        let payload = &bytes[start..start + len as usize];
        if crc32fast::hash(payload) != crc {
            return Ok((records, pos as u64, false));
        }
        match rmp_serde::from_slice::<TxnRecord>(payload) {
            Ok(record) => records.push(record),
            Err(_) => return Ok((records, pos as u64, false)),
        }
        pos = start + len as usize;
    }
}

/// An exclusive `flock` on `<data dir>/LOCK`: two services on one data dir would interleave
/// their logs. Released when dropped (with the log writer, or the process).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

fn lock_dir(dir: &Path) -> anyhow::Result<DirLock> {
    use std::os::fd::AsRawFd;
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: flock only reads the descriptor, which `file` keeps open.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if locked != 0 {
        bail!(
            "{} is in use by another coordination service",
            dir.display()
        );
    }
    Ok(DirLock { _file: file })
}

/// The database recovered from a data dir, and the log file to append to.
pub struct Recovered {
    /// Held for as long as the data dir is in use: move it into the [`LogWriter`].
    pub lock: DirLock,
    pub db: Database,
    /// The log that new records go to (created with its header if it did not exist).
    pub log_path: PathBuf,
    /// Records replayed from logs (the rest came from the snapshot).
    pub replayed: usize,
}

/// Loads the newest valid snapshot plus the log after it, truncating a torn tail.
pub fn recover(dir: &Path) -> anyhow::Result<Recovered> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let lock = lock_dir(dir)?;
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "tmp") {
            let _ = fs::remove_file(&path);
        }
    }
    let mut db = None;
    for (_, path) in list(dir, "snapshot")?.into_iter().rev() {
        match read_snapshot(&path) {
            Ok(snapshot) => {
                db = Some(Database::from_snapshot(snapshot));
                break;
            }
            Err(e) => tracing::warn!("skipping snapshot: {e:#}"),
        }
    }
    let mut db = db.unwrap_or_default();
    let logs = list(dir, "log")?;
    let mut replayed = 0;
    let mut append_to: Option<PathBuf> = None;
    for (i, (_, path)) in logs.iter().enumerate() {
        let (records, valid_len, clean) = read_log(path)?;
        for record in &records {
            if record.zxid <= db.last_zxid() {
                continue;
            }
            if record.zxid != db.last_zxid() + 1 {
                // Not a torn tail but a hole (lost files): repairing would destroy data.
                bail!(
                    "{}: zxid {} follows {}: the log has a hole, refusing to start",
                    path.display(),
                    record.zxid,
                    db.last_zxid()
                );
            }
            db.apply(record);
            replayed += 1;
        }
        append_to = Some(path.clone());
        if !clean {
            tracing::warn!(
                "{}: torn or corrupt record at byte {valid_len}: truncating",
                path.display()
            );
            let file = OpenOptions::new().write(true).open(path)?;
            file.set_len(if valid_len < LOG_MAGIC.len() as u64 {
                0
            } else {
                valid_len
            })?;
            file.sync_all()?;
            // Nothing after a torn record can be applied.
            for (_, later) in &logs[i + 1..] {
                tracing::warn!("removing {} after a torn log", later.display());
                fs::remove_file(later)?;
            }
            break;
        }
    }
    let log_path = match append_to {
        Some(path) => path,
        None => {
            let path = dir.join(log_name(db.last_zxid() + 1));
            let mut file = File::create(&path)?;
            file.write_all(LOG_MAGIC)?;
            file.sync_all()?;
            sync_dir(dir)?;
            path
        }
    };
    // An empty (header-less) log left by a crash right after creation gets its header.
    if fs::metadata(&log_path)?.len() == 0 {
        let mut file = OpenOptions::new().append(true).open(&log_path)?;
        file.write_all(LOG_MAGIC)?;
        file.sync_all()?;
    }
    Ok(Recovered {
        lock,
        db,
        log_path,
        replayed,
    })
}

/// Removes snapshots beyond the newest two, and the logs only an older snapshot needs.
fn clean_up(dir: &Path) -> anyhow::Result<()> {
    let snapshots = list(dir, "snapshot")?;
    if snapshots.len() < 2 {
        return Ok(());
    }
    let keep_from = snapshots[snapshots.len() - 2].0;
    for (zxid, path) in &snapshots {
        if *zxid < keep_from {
            fs::remove_file(path)?;
        }
    }
    for (first, path) in list(dir, "log")? {
        if first <= keep_from {
            fs::remove_file(path)?;
        }
    }
    Ok(())
}

/// What the writer thread reports back.
#[derive(Debug)]
pub enum LogEvent {
    /// Every record up to this zxid is on disk.
    Durable(i64),
    /// Writing failed; nothing more will be made durable.
    Failed(String),
}

enum LogCommand {
    Append(TxnRecord),
    Snapshot(Box<Snapshot>),
}

/// Handle of the log writer thread. Dropping it (or [`LogWriter::close`]) finishes the queued
/// work and stops the thread.
pub struct LogWriter {
    commands: Option<mpsc::Sender<LogCommand>>,
    thread: Option<JoinHandle<()>>,
}

/// Knobs of the writer.
#[derive(Clone, Debug)]
pub struct LogOptions {
    /// fsync after each group of records (ZooKeeper's `forceSync=yes`).
    pub fsync: bool,
}

impl LogWriter {
    /// Starts the writer appending to `log_path` in `dir`, holding the dir's `lock` until it
    /// stops; `report` runs on the writer thread.
    pub fn start(
        dir: PathBuf,
        log_path: PathBuf,
        lock: DirLock,
        options: LogOptions,
        report: impl Fn(LogEvent) + Send + 'static,
    ) -> anyhow::Result<LogWriter> {
        let file = OpenOptions::new()
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("coordination-log".into())
            .spawn(move || {
                let _lock = lock;
                let mut state = WriterState {
                    dir,
                    log: BufWriter::new(file),
                    options,
                };
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while let Ok(more) = rx.try_recv() {
                        batch.push(more);
                    }
                    match state.write_batch(batch) {
                        Ok(Some(zxid)) => report(LogEvent::Durable(zxid)),
                        Ok(None) => {}
                        Err(e) => {
                            tracing::error!("coordination log write failed: {e:#}");
                            report(LogEvent::Failed(format!("{e:#}")));
                            return;
                        }
                    }
                }
            })
            .context("spawning the coordination log thread")?;
        Ok(LogWriter {
            commands: Some(tx),
            thread: Some(thread),
        })
    }

    pub fn append(&self, record: TxnRecord) {
        if let Some(tx) = &self.commands {
            let _ = tx.send(LogCommand::Append(record));
        }
    }

    pub fn snapshot(&self, snapshot: Snapshot) {
        if let Some(tx) = &self.commands {
            let _ = tx.send(LogCommand::Snapshot(Box::new(snapshot)));
        }
    }

    /// Finishes queued work and joins the thread (blocking: call off the actor thread).
    pub fn close(mut self) {
        self.commands.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.commands.take();
    }
}

struct WriterState {
    dir: PathBuf,
    log: BufWriter<File>,
    options: LogOptions,
}

impl WriterState {
    /// Writes a group, fsyncs once, and returns the highest zxid it made durable.
    fn write_batch(&mut self, batch: Vec<LogCommand>) -> anyhow::Result<Option<i64>> {
        let mut durable = None;
        for command in batch {
            match command {
                LogCommand::Append(record) => {
                    self.log.write_all(&encode_record(&record)?)?;
                    durable = Some(record.zxid);
                }
                LogCommand::Snapshot(snapshot) => {
                    self.sync()?;
                    write_snapshot(&self.dir, &snapshot)?;
                    let path = self.dir.join(log_name(snapshot.last_zxid + 1));
                    let mut file = File::create(&path)
                        .with_context(|| format!("creating {}", path.display()))?;
                    file.write_all(LOG_MAGIC)?;
                    file.sync_all()?;
                    sync_dir(&self.dir)?;
                    self.log = BufWriter::new(file);
                    clean_up(&self.dir)?;
                }
            }
        }
        self.sync()?;
        Ok(durable)
    }

    fn sync(&mut self) -> anyhow::Result<()> {
        self.log.flush()?;
        if self.options.fsync {
            self.log.get_ref().sync_data()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::coordination::data_tree::Txn;
    use crate::actors::coordination::types::{CreateMode, Op};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    /// The next record for `db`: a create named after its zxid.
    fn record(db: &Database) -> TxnRecord {
        let zxid = db.last_zxid() + 1;
        let txns = db
            .prepare(
                0,
                &[Op::Create {
                    path: format!("/n{zxid}"),
                    data: vec![zxid as u8],
                    mode: CreateMode::Persistent,
                }],
            )
            .unwrap();
        TxnRecord {
            zxid,
            time_ms: 0,
            txn: Txn::Multi(txns),
        }
    }

    /// Writes `n` records through a writer (snapshotting every `every`) and waits for them.
    fn write(dir: &Path, n: usize, every: usize) -> Database {
        let recovered = recover(dir).unwrap();
        let mut db = recovered.db;
        let durable = Arc::new(Mutex::new(0));
        let seen = durable.clone();
        let writer = LogWriter::start(
            dir.to_path_buf(),
            recovered.log_path,
            recovered.lock,
            LogOptions { fsync: false },
            move |e| {
                if let LogEvent::Durable(z) = e {
                    *seen.lock().unwrap() = z;
                }
            },
        )
        .unwrap();
        for _ in 0..n {
            let r = record(&db);
            db.apply(&r);
            writer.append(r);
            if every > 0 && db.last_zxid() % every as i64 == 0 {
                writer.snapshot(db.to_snapshot());
            }
        }
        writer.close();
        assert_eq!(*durable.lock().unwrap(), db.last_zxid());
        db
    }

    #[test]
    fn a_data_dir_serves_one_service_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let first = recover(dir.path()).unwrap();
        let second = recover(dir.path());
        assert!(second.is_err(), "a second service got the same data dir");
        drop(first);
        assert!(recover(dir.path()).is_ok());
    }

    #[test]
    fn recovery_replays_snapshot_plus_log() {
        let dir = tempfile::tempdir().unwrap();
        let db = write(dir.path(), 25, 10);
        let recovered = recover(dir.path()).unwrap();
        assert_eq!(recovered.db.to_snapshot(), db.to_snapshot());
        assert_eq!(recovered.replayed, 5);
        // Two snapshots kept; the logs before the older one are gone.
        assert_eq!(list(dir.path(), "snapshot").unwrap().len(), 2);
        let logs: Vec<i64> = list(dir.path(), "log")
            .unwrap()
            .into_iter()
            .map(|l| l.0)
            .collect();
        assert_eq!(logs, vec![11, 21]);
    }

    #[test]
    fn torn_log_tail_is_truncated_and_appending_continues() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 5, 0);
        let (_, log) = list(dir.path(), "log").unwrap().pop().unwrap();
        let full = fs::metadata(&log).unwrap().len();
        // A crash mid-append: the last record loses its final bytes.
        OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(full - 3)
            .unwrap();
        let recovered = recover(dir.path()).unwrap();
        assert_eq!(recovered.db.last_zxid(), 4);
        assert!(fs::metadata(&log).unwrap().len() < full - 3);
        drop(recovered);
        let db = write(dir.path(), 3, 0);
        assert_eq!(db.last_zxid(), 7);
        assert_eq!(
            recover(dir.path()).unwrap().db.to_snapshot(),
            db.to_snapshot()
        );
    }

    #[test]
    fn corrupt_record_ends_replay_at_the_last_good_one() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 6, 0);
        let (_, log) = list(dir.path(), "log").unwrap().pop().unwrap();
        let mut bytes = fs::read(&log).unwrap();
        let len = bytes.len();
        bytes[len - 2] ^= 0xff;
        fs::write(&log, bytes).unwrap();
        assert_eq!(recover(dir.path()).unwrap().db.last_zxid(), 5);
    }

    #[test]
    fn corrupt_newest_snapshot_falls_back_to_the_previous_one() {
        let dir = tempfile::tempdir().unwrap();
        let db = write(dir.path(), 20, 10);
        let (_, newest) = list(dir.path(), "snapshot").unwrap().pop().unwrap();
        let mut bytes = fs::read(&newest).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&newest, bytes).unwrap();
        let recovered = recover(dir.path()).unwrap();
        assert_eq!(recovered.db.to_snapshot(), db.to_snapshot());
        assert_eq!(recovered.replayed, 10);
    }

    /// Group commit: records queued while an fsync runs share the next one. Prints the cost
    /// of one fsync'ed append on this machine (the figure quoted in the module docs).
    #[test]
    fn group_commit_makes_every_queued_record_durable() {
        let dir = tempfile::tempdir().unwrap();
        let recovered = recover(dir.path()).unwrap();
        let mut db = recovered.db;
        let (tx, rx) = mpsc::channel();
        let writer = LogWriter::start(
            dir.path().to_path_buf(),
            recovered.log_path,
            recovered.lock,
            LogOptions { fsync: true },
            move |e| {
                let _ = tx.send(e);
            },
        )
        .unwrap();
        let started = Instant::now();
        for _ in 0..200 {
            let r = record(&db);
            db.apply(&r);
            writer.append(r);
        }
        let mut groups = 0;
        loop {
            match rx.recv_timeout(Duration::from_secs(10)).unwrap() {
                LogEvent::Durable(z) => {
                    groups += 1;
                    if z == db.last_zxid() {
                        break;
                    }
                }
                LogEvent::Failed(e) => panic!("{e}"),
            }
        }
        eprintln!(
            "200 records durable in {:?} over {groups} fsync groups",
            started.elapsed()
        );
        writer.close();
        assert_eq!(recover(dir.path()).unwrap().db.last_zxid(), 200);
    }
}
