//! The log cleaner (Kafka's `LogCleaner` with its `LogCleanerManager`): the actor that keeps
//! `cleanup.policy=compact` logs compacted, off the request path.
//!
//! Every `log.cleaner.backoff.ms` it asks each hosted replica how dirty its log is
//! ([`DescribeCleanable`]) and starts a clean of the filthiest logs that qualify (Kafka's
//! `grabFilthiestCompactedLog`: dirty ratio above `min.cleanable.dirty.ratio`, or
//! `max.compaction.lag.ms` passed), at most `log.cleaner.threads` at once and one per log.
//! After a clean that swapped something it looks again at once, as Kafka's cleaner threads
//! loop, so a log too large for one pass is cleaned pass after pass.
//!
//! A clean is two messages to the log's owner around one blocking task:
//!
//! 1. [`PrepareClean`]: the owner hands out a [`CleanTask`] (duplicated descriptors of the
//!    closed segments, their generations, the active producers' last offsets). Cheap.
//! 2. [`storage::cleaner::clean`](clean) on a blocking thread, with one of this actor's
//!    offset maps (`log.cleaner.dedupe.buffer.size` / `log.cleaner.threads` each, kept
//!    between cleans). The owner keeps appending and serving reads meanwhile.
//! 3. [`SwapCleanedSegments`]: the owner checks the segments are still the ones read and
//!    swaps the cleaned ones in (renames only); the replaced files are removed and the
//!    cleaner checkpoint written on a blocking thread.
//!
//! A clean that fails on the log's files tells the owner ([`CleanFailed`]): an I/O error takes
//! its log dir offline, as any other on the log does.
//!
//! The owners are the partition replicas: their handlers for these messages live here, next
//! to the messages, and reduce to [`describe`], [`prepare`] and [`swap`], which anything that
//! owns a [`PartitionLog`] can call (the actor tests' stand-in owner does).
//!
//! Departure from Kafka: a log is also cleaned when the earliest tombstone delete horizon its
//! last clean left passes, even when it is not dirty enough, so tombstones go about
//! `delete.retention.ms` after the clean that reached them rather than at the next clean the
//! dirty ratio allows (on a quiet topic, never). The horizons are kept in memory; after a
//! restart such a log waits for the dirty ratio, as in Kafka.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::actors::broker::LocalReplicas;
use crate::actors::replica::Replica;
use crate::config::BrokerConfig;
use crate::storage::cleaner::swap::SwapOutcome;
use crate::storage::cleaner::{
    clean, discard_cleaned, CleanError, CleanTask, CleanedLog, CleanerIo, CleanerStats, LogToClean,
    OffsetMap,
};
use crate::storage::{PartitionLog, StorageError, TopicPartition};

/// The cleaner's settings, from the broker's `log.cleaner.*` keys.
#[derive(Debug, Clone)]
pub struct LogCleanerConfig {
    /// `log.cleaner.threads`: cleans at once.
    pub threads: usize,
    /// Each clean's offset map budget: `log.cleaner.dedupe.buffer.size` / threads.
    pub map_bytes: usize,
    /// `log.cleaner.io.buffer.load.factor`: how full an offset map may get.
    pub load_factor: f64,
    /// Read-ahead and write buffer of a clean, and its I/O rate limit.
    pub io: CleanerIo,
    /// `log.cleaner.backoff.ms`: the pause when no log needs cleaning.
    pub backoff: Duration,
}

impl LogCleanerConfig {
    /// `None` when `log.cleaner.enable` is false or `log.cleaner.threads` is 0.
    pub fn from_broker(config: &BrokerConfig) -> Option<Self> {
        let threads = config.log_cleaner_threads.max(0) as usize;
        if !config.log_cleaner_enable || threads == 0 {
            return None;
        }
        // Kafka splits the I/O buffer over the threads, half to read and half to write, and
        // the rate limit likewise.
        let io_buffer = (config.log_cleaner_io_buffer_size.max(0) as usize / threads / 2).max(4096);
        Some(LogCleanerConfig {
            threads,
            map_bytes: (config.log_cleaner_dedupe_buffer_size.max(0) as usize) / threads,
            load_factor: config.log_cleaner_io_buffer_load_factor,
            io: CleanerIo {
                io_buffer_bytes: io_buffer,
                max_io_bytes_per_second: config.log_cleaner_io_max_bytes_per_second
                    / threads as f64,
            },
            backoff: Duration::from_millis(config.log_cleaner_backoff_ms.max(0) as u64),
        })
    }
}

// ---------------------------------------------------------------------------------------
// Messages to a log's owner, and what an owner does with them.

/// How dirty is your log? `None` when it is not compacted (or gone).
#[derive(Debug, Message)]
#[rtype(result = "Option<LogToClean>")]
pub struct DescribeCleanable {
    pub now_ms: i64,
}

/// Hand out what a clean of your log needs; `None` when there is nothing to clean.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<CleanTask>, StorageError>")]
pub struct PrepareClean {
    pub now_ms: i64,
}

/// Swap this clean's segments in (or discard them if the log changed meanwhile).
#[derive(Debug, Message)]
#[rtype(result = "Result<SwapReport, StorageError>")]
pub struct SwapCleanedSegments(pub CleanedLog);

/// The clean itself (on the cleaner's thread) failed on the log's files: an I/O error there
/// is the log dir's failure (Kafka's cleaner reports it to the `LogDirFailureChannel`).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct CleanFailed(pub StorageError);

/// What the owner did with a clean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwapReport {
    Swapped {
        segments: usize,
        bytes_before: u64,
        bytes_after: u64,
    },
    Discarded(String),
}

/// [`DescribeCleanable`] for any owner of `log`.
pub fn describe(log: &PartitionLog, now_ms: i64) -> Option<LogToClean> {
    match log.log_to_clean(now_ms) {
        Ok(info) => info,
        Err(e) => {
            tracing::warn!(partition = %log.topic_partition(), error = %e, "cannot tell how dirty the log is");
            None
        }
    }
}

/// [`PrepareClean`] for any owner of `log`.
pub fn prepare(
    log: &PartitionLog,
    active_producers: HashMap<i64, i64>,
    now_ms: i64,
) -> Result<Option<CleanTask>, StorageError> {
    log.prepare_clean(now_ms, active_producers)
}

/// [`SwapCleanedSegments`] for any owner of `log`; must run inside a Tokio runtime: the
/// replaced segments' files are removed and the cleaner checkpoint is written on a blocking
/// thread.
pub fn swap(log: &mut PartitionLog, cleaned: &CleanedLog) -> Result<SwapReport, StorageError> {
    match log.replace_cleaned_segments(cleaned)? {
        SwapOutcome::Swapped {
            segments,
            bytes_before,
            bytes_after,
            deleted,
        } => {
            let checkpoints = log.cleaner_checkpoints().clone();
            let tp = log.topic_partition().clone();
            tokio::task::spawn_blocking(move || {
                if let Err(e) = deleted.delete() {
                    tracing::warn!(partition = %tp, error = %e, "cannot remove replaced segments");
                }
                if let Err(e) = checkpoints.write() {
                    tracing::warn!(partition = %tp, error = %e, "cannot write the cleaner checkpoint");
                }
            });
            Ok(SwapReport::Swapped {
                segments,
                bytes_before,
                bytes_after,
            })
        }
        SwapOutcome::Discarded(why) => Ok(SwapReport::Discarded(why)),
        SwapOutcome::Interrupted => Err(StorageError::Corrupt(format!(
            "{}: the swap was interrupted",
            log.topic_partition()
        ))),
    }
}

impl Handler<DescribeCleanable> for Replica {
    type Result = Option<LogToClean>;

    fn handle(&mut self, msg: DescribeCleanable, _: &mut Self::Context) -> Self::Result {
        let (log, _) = self.log_for_cleaner()?;
        describe(log, msg.now_ms)
    }
}

impl Handler<PrepareClean> for Replica {
    type Result = Result<Option<CleanTask>, StorageError>;

    fn handle(&mut self, msg: PrepareClean, _: &mut Self::Context) -> Self::Result {
        let Some((log, producers)) = self.log_for_cleaner() else {
            return Ok(None);
        };
        let prepared = prepare(log, producers.last_offsets(), msg.now_ms);
        // An I/O error on the log is its dir's failure, for the cleaner as for any owner.
        if let Err(e) = &prepared {
            self.log_dir_failure(e);
        }
        prepared
    }
}

impl Handler<CleanFailed> for Replica {
    type Result = ();

    fn handle(&mut self, msg: CleanFailed, _: &mut Self::Context) {
        // A file gone meanwhile is the log being deleted under the clean, not the disk.
        let gone = matches!(&msg.0, StorageError::Io { source, .. }
            if source.kind() == std::io::ErrorKind::NotFound);
        if !gone {
            self.log_dir_failure(&msg.0);
        }
    }
}

impl Handler<SwapCleanedSegments> for Replica {
    type Result = Result<SwapReport, StorageError>;

    fn handle(&mut self, msg: SwapCleanedSegments, _: &mut Self::Context) -> Self::Result {
        match self.log_for_cleaner() {
            Some((log, _)) => {
                let swapped = swap(log, &msg.0);
                if let Err(e) = &swapped {
                    self.log_dir_failure(e);
                }
                swapped
            }
            None => {
                discard_cleaned(&msg.0.dir, &msg.0.groups);
                Ok(SwapReport::Discarded("the replica is stopping".into()))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The cleaner's view of the broker.

/// The three messages a log's owner answers, however it is implemented.
#[derive(Clone)]
pub struct CleanerPeer {
    pub describe: Recipient<DescribeCleanable>,
    pub prepare: Recipient<PrepareClean>,
    pub swap: Recipient<SwapCleanedSegments>,
    pub failed: Recipient<CleanFailed>,
}

impl CleanerPeer {
    pub fn of<A>(addr: Addr<A>) -> Self
    where
        A: Actor<Context = Context<A>>
            + Handler<DescribeCleanable>
            + Handler<PrepareClean>
            + Handler<SwapCleanedSegments>
            + Handler<CleanFailed>,
    {
        CleanerPeer {
            describe: addr.clone().recipient(),
            prepare: addr.clone().recipient(),
            swap: addr.clone().recipient(),
            failed: addr.recipient(),
        }
    }
}

/// The logs a cleaner looks after: the broker's replicas, or a test's stand-ins.
pub trait CleanerTargets: Send + 'static {
    fn targets(&self) -> Vec<(TopicPartition, CleanerPeer)>;
}

impl CleanerTargets for LocalReplicas {
    fn targets(&self) -> Vec<(TopicPartition, CleanerPeer)> {
        self.all()
            .into_iter()
            .filter(|(_, handle)| !handle.progress().stopped)
            .map(|(tp, handle)| (tp, CleanerPeer::of(handle.addr)))
            .collect()
    }
}

impl<F> CleanerTargets for F
where
    F: Fn() -> Vec<(TopicPartition, CleanerPeer)> + Send + 'static,
{
    fn targets(&self) -> Vec<(TopicPartition, CleanerPeer)> {
        self()
    }
}

// ---------------------------------------------------------------------------------------
// The actor.

/// Runs on the cleaning thread after a clean wrote its segments and before the swap is
/// asked for: the seam tests use to change a log while a clean is in flight.
pub type BeforeSwapHook = Arc<dyn Fn(&TopicPartition) + Send + Sync>;

/// Totals since the cleaner started (what Kafka's cleaner metrics count).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CleanerTotals {
    /// Times the cleaner looked over its logs.
    pub passes: u64,
    /// Cleans swapped in, discarded by the owner (the log changed), and failed.
    pub cleans: u64,
    pub discarded: u64,
    pub failed: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Each log's last clean that was swapped in.
    pub last: HashMap<TopicPartition, CleanerStats>,
    /// Logs holding tombstones whose horizon will bring the cleaner back.
    pub tombstone_logs: usize,
}

pub struct LogCleaner {
    config: LogCleanerConfig,
    targets: Box<dyn CleanerTargets>,
    /// One clean per log at a time.
    in_progress: HashSet<TopicPartition>,
    /// Offset maps between cleans: a map's memory is allocated once per cleaning thread, as
    /// Kafka's are, and grows only as far as a clean needs.
    idle_maps: Vec<OffsetMap>,
    /// Per log, when the earliest tombstone its last clean kept may go (see the module doc).
    tombstone_deadlines: HashMap<TopicPartition, i64>,
    /// Logs whose last clean failed rest until then (Kafka marks them uncleanable).
    retry_after: HashMap<TopicPartition, Instant>,
    /// Set when the cleaner stops: running cleans give up and remove their files.
    abort: Arc<AtomicBool>,
    totals: CleanerTotals,
    /// A look over the logs is in flight.
    scanning: bool,
    /// The next look, when no clean is running to trigger one.
    next_pass: Option<SpawnHandle>,
    before_swap: Option<BeforeSwapHook>,
}

impl LogCleaner {
    pub fn new(config: LogCleanerConfig, targets: impl CleanerTargets) -> Self {
        LogCleaner {
            config,
            targets: Box::new(targets),
            in_progress: HashSet::new(),
            idle_maps: Vec::new(),
            tombstone_deadlines: HashMap::new(),
            retry_after: HashMap::new(),
            abort: Arc::new(AtomicBool::new(false)),
            totals: CleanerTotals::default(),
            scanning: false,
            next_pass: None,
            before_swap: None,
        }
    }

    /// See [`BeforeSwapHook`].
    pub fn with_before_swap(mut self, hook: BeforeSwapHook) -> Self {
        self.before_swap = Some(hook);
        self
    }

    /// The cleaner of a broker's replicas, per its config (`None` when cleaning is off). It
    /// stops when `stop` turns true or its sender goes away: with the broker's listener.
    pub fn start_for_broker(
        config: &BrokerConfig,
        replicas: LocalReplicas,
        stop: impl std::future::Future<Output = ()> + 'static,
    ) -> Option<Addr<LogCleaner>> {
        let config = LogCleanerConfig::from_broker(config)?;
        Some(Self::new(config, replicas).start_until(stop))
    }

    /// Starts the actor; it stops when `stop` completes.
    pub fn start_until(
        self,
        stop: impl std::future::Future<Output = ()> + 'static,
    ) -> Addr<LogCleaner> {
        LogCleaner::create(move |ctx| {
            ctx.spawn(
                stop.into_actor(&self)
                    .map(|_, _, ctx: &mut Context<Self>| ctx.stop()),
            );
            self
        })
    }

    fn schedule(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.next_pass.take() {
            ctx.cancel_future(handle);
        }
        // Only horizons still ahead bring the next look forward: one that passed without a
        // clean (a failed clean, a log gone) waits for the backoff like any other log.
        let now = now_ms();
        let mut delay = self.config.backoff;
        if let Some(deadline) = self
            .tombstone_deadlines
            .values()
            .filter(|d| **d > now)
            .min()
        {
            delay = delay.min(Duration::from_millis((deadline - now) as u64));
        }
        self.next_pass = Some(ctx.run_later(delay, |act, ctx| {
            act.next_pass = None;
            act.pass(ctx);
        }));
    }

    /// Looks over the logs and starts the cleans there is room for.
    fn pass(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.next_pass.take() {
            ctx.cancel_future(handle);
        }
        if self.scanning || self.in_progress.len() >= self.config.threads {
            // A running clean looks again when it ends.
            return;
        }
        self.scanning = true;
        let now = now_ms();
        let asks: Vec<_> = self
            .targets
            .targets()
            .into_iter()
            .filter(|(tp, _)| !self.in_progress.contains(tp))
            .map(|(_, peer)| async move {
                let info = peer.describe.send(DescribeCleanable { now_ms: now }).await;
                (peer, info.ok().flatten())
            })
            .collect();
        ctx.spawn(futures::future::join_all(asks).into_actor(self).map(
            move |answers, act, ctx| {
                act.scanning = false;
                act.totals.passes += 1;
                let logs: Vec<(LogToClean, CleanerPeer)> = answers
                    .into_iter()
                    .filter_map(|(peer, info)| Some((info?, peer)))
                    .collect();
                // Forget the horizons of logs that are gone or no longer compacted.
                let compacted: HashSet<&TopicPartition> = logs.iter().map(|(i, _)| &i.tp).collect();
                act.tombstone_deadlines
                    .retain(|tp, _| compacted.contains(tp) || act.in_progress.contains(tp));
                let mut candidates: Vec<(LogToClean, CleanerPeer)> = logs
                    .into_iter()
                    .filter(|(info, _)| act.wants(info, now))
                    .collect();
                // The filthiest first; a log past max.compaction.lag.ms before any other.
                candidates.sort_by(|(a, _), (b, _)| {
                    b.need_compaction_now
                        .cmp(&a.need_compaction_now)
                        .then(b.cleanable_ratio().total_cmp(&a.cleanable_ratio()))
                });
                for (info, peer) in candidates {
                    if act.in_progress.len() >= act.config.threads {
                        break;
                    }
                    act.start_clean(info.tp, peer, ctx);
                }
                if act.in_progress.is_empty() {
                    act.schedule(ctx);
                }
            },
        ));
    }

    /// Whether `info` calls for a clean now.
    fn wants(&self, info: &LogToClean, now: i64) -> bool {
        if self.in_progress.contains(&info.tp) {
            return false;
        }
        if self
            .retry_after
            .get(&info.tp)
            .is_some_and(|t| *t > Instant::now())
        {
            return false;
        }
        let tombstones_due = self
            .tombstone_deadlines
            .get(&info.tp)
            .is_some_and(|deadline| *deadline <= now);
        info.should_clean() || (tombstones_due && info.total_bytes() > 0)
    }

    fn start_clean(&mut self, tp: TopicPartition, peer: CleanerPeer, ctx: &mut Context<Self>) {
        self.in_progress.insert(tp.clone());
        let map = self
            .idle_maps
            .pop()
            .unwrap_or_else(|| OffsetMap::new(self.config.map_bytes, self.config.load_factor));
        let io = self.config.io.clone();
        let abort = self.abort.clone();
        let hook = self.before_swap.clone();
        let work = run_clean(peer, map, io, abort, hook);
        ctx.spawn(work.into_actor(self).map(move |(map, end), act, ctx| {
            act.idle_maps.extend(map);
            act.in_progress.remove(&tp);
            let progressed = act.record(&tp, end);
            if progressed {
                act.pass(ctx);
            } else if act.in_progress.is_empty() && !act.scanning {
                act.schedule(ctx);
            }
        }));
    }

    /// Books a finished clean; returns whether it made progress (mapped dirty records or
    /// swapped segments in), which is when the cleaner looks again at once.
    fn record(&mut self, tp: &TopicPartition, end: CleanEnd) -> bool {
        match end {
            CleanEnd::Nothing => false,
            CleanEnd::Swapped(cleaned, report) => {
                self.retry_after.remove(tp);
                self.totals.cleans += 1;
                self.totals.bytes_read += cleaned.stats.bytes_read + cleaned.stats.map_bytes_read;
                self.totals.bytes_written += cleaned.stats.bytes_written;
                self.totals.last.insert(tp.clone(), cleaned.stats.clone());
                match cleaned.earliest_tombstone_horizon {
                    Some(h) => self.tombstone_deadlines.insert(tp.clone(), h),
                    None => self.tombstone_deadlines.remove(tp),
                };
                let mut swapped = 0;
                if let SwapReport::Swapped {
                    segments,
                    bytes_before,
                    bytes_after,
                } = report
                {
                    swapped = segments;
                    tracing::info!(
                        partition = %tp,
                        segments,
                        bytes_before,
                        bytes_after,
                        "swapped in cleaned segments"
                    );
                }
                swapped > 0 || cleaned.stats.map_records_read > 0
            }
            CleanEnd::Discarded(why) => {
                tracing::info!(partition = %tp, reason = %why, "clean discarded");
                self.totals.discarded += 1;
                false
            }
            CleanEnd::Failed(why) => {
                tracing::warn!(partition = %tp, error = %why, "cleaning failed; the log rests");
                self.totals.failed += 1;
                self.retry_after.insert(
                    tp.clone(),
                    Instant::now() + self.config.backoff.max(Duration::from_secs(1)),
                );
                false
            }
        }
    }
}

/// How one clean ended.
enum CleanEnd {
    /// Nothing to clean, or the cleaner is stopping.
    Nothing,
    Swapped(Box<CleanedLog>, SwapReport),
    Discarded(String),
    Failed(String),
}

/// One clean, start to end: prepare on the owner, clean on a blocking thread, swap on the
/// owner. Gives the offset map back (unless the cleaning thread died with it).
async fn run_clean(
    peer: CleanerPeer,
    map: OffsetMap,
    io: CleanerIo,
    abort: Arc<AtomicBool>,
    hook: Option<BeforeSwapHook>,
) -> (Option<OffsetMap>, CleanEnd) {
    let task = match peer.prepare.send(PrepareClean { now_ms: now_ms() }).await {
        Ok(Ok(Some(task))) => task,
        Ok(Ok(None)) | Err(_) => return (Some(map), CleanEnd::Nothing),
        Ok(Err(e)) => return (Some(map), CleanEnd::Failed(e.to_string())),
    };
    let cleaning = tokio::task::spawn_blocking(move || {
        let mut map = map;
        let result = clean(&task, &mut map, &io, &abort);
        if let (Ok(cleaned), Some(hook)) = (&result, &hook) {
            hook(&cleaned.tp);
        }
        (map, result)
    });
    let (map, result) = match cleaning.await {
        Ok((map, result)) => (Some(map), result),
        Err(e) => return (None, CleanEnd::Failed(format!("cleaning thread: {e}"))),
    };
    let cleaned = match result {
        Ok(cleaned) => cleaned,
        Err(CleanError::Aborted) => return (map, CleanEnd::Nothing),
        Err(CleanError::Storage(e)) => {
            let why = e.to_string();
            peer.failed.do_send(CleanFailed(e));
            return (map, CleanEnd::Failed(why));
        }
    };
    let (dir, groups) = (cleaned.dir.clone(), cleaned.groups.clone());
    match peer.swap.send(SwapCleanedSegments(cleaned.clone())).await {
        Ok(Ok(SwapReport::Discarded(why))) => (map, CleanEnd::Discarded(why)),
        Ok(Ok(report)) => (map, CleanEnd::Swapped(Box::new(cleaned), report)),
        Ok(Err(e)) => (map, CleanEnd::Failed(e.to_string())),
        Err(_) => {
            // The owner is gone: nobody will swap these files in.
            discard_cleaned(&dir, &groups);
            (map, CleanEnd::Nothing)
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Actor for LogCleaner {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.pass(ctx);
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        self.abort.store(true, Ordering::Relaxed);
        Running::Stop
    }
}

/// Look over the logs now instead of at the next backoff.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct CleanNow;

impl Handler<CleanNow> for LogCleaner {
    type Result = ();

    fn handle(&mut self, _: CleanNow, ctx: &mut Self::Context) {
        self.pass(ctx);
    }
}

/// The cleaner's totals.
#[derive(Debug, Message)]
#[rtype(result = "CleanerTotals")]
pub struct GetCleanerTotals;

impl Handler<GetCleanerTotals> for LogCleaner {
    type Result = MessageResult<GetCleanerTotals>;

    fn handle(&mut self, _: GetCleanerTotals, _: &mut Self::Context) -> Self::Result {
        MessageResult(CleanerTotals {
            tombstone_logs: self.tombstone_deadlines.len(),
            ..self.totals.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::replica::{
        AppendRecords, ApplyLeaderAndIsr, FetchIsolation, LeaderAndIsrState, ReadRecords,
    };
    use crate::config::TopicConfig;
    use crate::storage::cleaner::tests::{
        append, compact_config, fill, latest_per_key, open, read_all, Seen,
    };
    use crate::storage::validate_client_batches;
    use kafka_protocol::records::{Compression, RecordBatchDecoder};
    use std::sync::mpsc;
    use std::sync::Mutex;

    /// A stand-in owner of one log: answers the cleaner's three messages as a replica does,
    /// and lets the test change and read the log.
    struct Owner {
        log: PartitionLog,
    }

    impl Actor for Owner {
        type Context = Context<Self>;
    }

    impl Handler<DescribeCleanable> for Owner {
        type Result = Option<LogToClean>;
        fn handle(&mut self, msg: DescribeCleanable, _: &mut Context<Self>) -> Self::Result {
            describe(&self.log, msg.now_ms)
        }
    }

    impl Handler<PrepareClean> for Owner {
        type Result = Result<Option<CleanTask>, StorageError>;
        fn handle(&mut self, msg: PrepareClean, _: &mut Context<Self>) -> Self::Result {
            prepare(&self.log, HashMap::new(), msg.now_ms)
        }
    }

    impl Handler<CleanFailed> for Owner {
        type Result = ();
        fn handle(&mut self, _: CleanFailed, _: &mut Context<Self>) {}
    }

    impl Handler<SwapCleanedSegments> for Owner {
        type Result = Result<SwapReport, StorageError>;
        fn handle(&mut self, msg: SwapCleanedSegments, _: &mut Context<Self>) -> Self::Result {
            swap(&mut self.log, &msg.0)
        }
    }

    /// Runs a closure on the owner's log.
    #[derive(Message)]
    #[rtype(result = "Vec<Seen>")]
    struct WithLog(Box<dyn FnOnce(&mut PartitionLog) + Send>);

    impl Handler<WithLog> for Owner {
        type Result = MessageResult<WithLog>;
        fn handle(&mut self, msg: WithLog, _: &mut Context<Self>) -> Self::Result {
            (msg.0)(&mut self.log);
            MessageResult(read_all(&self.log))
        }
    }

    fn cleaner_config() -> LogCleanerConfig {
        LogCleanerConfig {
            threads: 1,
            map_bytes: 1 << 20,
            load_factor: 0.9,
            io: CleanerIo {
                io_buffer_bytes: 4096,
                max_io_bytes_per_second: f64::MAX,
            },
            // Long: passes come from start-up, CleanNow, cleans and tombstone deadlines.
            backoff: Duration::from_secs(3600),
        }
    }

    fn tp(name: &str) -> TopicPartition {
        TopicPartition::new(name, 0)
    }

    /// A log of `config` with 40 batches of 5 records over 4 keys and a rolled tail.
    fn dirty_log(dir: &std::path::Path, config: &TopicConfig) -> PartitionLog {
        let mut log = open(dir, config);
        fill(&mut log, 40, 5, 4);
        log
    }

    fn targets(
        list: Vec<(TopicPartition, CleanerPeer)>,
    ) -> impl Fn() -> Vec<(TopicPartition, CleanerPeer)> + Send + 'static {
        move || list.clone()
    }

    async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(v) = check().await {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn totals(cleaner: &Addr<LogCleaner>) -> CleanerTotals {
        cleaner.send(GetCleanerTotals).await.unwrap()
    }

    async fn read_of(owner: &Addr<Owner>) -> Vec<Seen> {
        owner.send(WithLog(Box::new(|_| {}))).await.unwrap()
    }

    #[actix::test]
    async fn a_dirty_compacted_log_is_cleaned_and_other_policies_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let compacted = dirty_log(&dir.path().join("a"), &compact_config());
        let plain_config = TopicConfig {
            cleanup_policy: vec!["delete".into()],
            ..compact_config()
        };
        let plain = dirty_log(&dir.path().join("b"), &plain_config);
        let active = *compacted.segment_base_offsets().last().unwrap();
        let before = read_all(&compacted);
        let plain_before = read_all(&plain);
        let a = Owner { log: compacted }.start();
        let b = Owner { log: plain }.start();
        let cleaner = LogCleaner::new(
            cleaner_config(),
            targets(vec![
                (tp("a"), CleanerPeer::of(a.clone())),
                (tp("b"), CleanerPeer::of(b.clone())),
            ]),
        )
        .start();
        let t = eventually("a clean", || {
            let cleaner = cleaner.clone();
            async move { Some(totals(&cleaner).await).filter(|t| t.cleans >= 1) }
        })
        .await;
        assert_eq!(t.last.len(), 1, "one log cleaned");
        let below: Vec<Seen> = before.iter().filter(|r| r.0 < active).cloned().collect();
        let mut expected = latest_per_key(&below);
        expected.extend(before.iter().filter(|r| r.0 >= active).cloned());
        assert_eq!(read_of(&a).await, expected);
        assert_eq!(read_of(&b).await, plain_before);
        // Clean now: the next look finds nothing to do.
        cleaner.send(CleanNow).await.unwrap();
        let passes = t.passes;
        let t = eventually("another pass", || {
            let cleaner = cleaner.clone();
            async move { Some(totals(&cleaner).await).filter(|t| t.passes > passes) }
        })
        .await;
        assert_eq!(t.cleans, 1);
    }

    /// A hook that parks the cleaning thread until the test lets it go.
    fn pause() -> (BeforeSwapHook, mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (paused_tx, paused_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let go_rx = Mutex::new(go_rx);
        let hook: BeforeSwapHook = Arc::new(move |_| {
            let _ = paused_tx.send(());
            let _ = go_rx.lock().unwrap().recv_timeout(Duration::from_secs(30));
        });
        (hook, paused_rx, go_tx)
    }

    async fn wait_paused(paused: &mpsc::Receiver<()>) {
        eventually("the clean to reach its swap", || {
            let got = paused.try_recv().ok();
            async move { got }
        })
        .await;
    }

    #[actix::test]
    async fn a_log_truncated_while_its_clean_runs_is_not_swapped() {
        let dir = tempfile::tempdir().unwrap();
        let log = dirty_log(dir.path(), &compact_config());
        let cut = log.segment_base_offsets()[1] + 2;
        let owner = Owner { log }.start();
        let (hook, paused, go) = pause();
        let cleaner = LogCleaner::new(
            cleaner_config(),
            targets(vec![(tp("t"), CleanerPeer::of(owner.clone()))]),
        )
        .with_before_swap(hook)
        .start();
        wait_paused(&paused).await;
        let truncated = owner
            .send(WithLog(Box::new(move |log| log.truncate_to(cut).unwrap())))
            .await
            .unwrap();
        go.send(()).unwrap();
        eventually("the discard", || {
            let cleaner = cleaner.clone();
            async move { Some(totals(&cleaner).await).filter(|t| t.discarded >= 1) }
        })
        .await;
        assert_eq!(read_of(&owner).await, truncated);
        let names: Vec<String> = std::fs::read_dir(dir.path().join("t-0"))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.contains(".cleaned") || n.contains(".swap"))
            .collect();
        assert!(names.is_empty(), "{names:?}");
    }

    fn leader() -> LeaderAndIsrState {
        LeaderAndIsrState {
            leader: 1,
            leader_epoch: 0,
            isr: vec![1],
            replicas: vec![1],
            partition_epoch: 0,
            is_new: true,
        }
    }

    fn keyed(keys: &[&str]) -> crate::storage::ValidatedBatches {
        let records: Vec<(Option<&str>, Option<&str>)> =
            keys.iter().map(|k| (Some(*k), Some("v"))).collect();
        let batch =
            crate::storage::batch::tests::records_batch(&records, 1_000, None, Compression::None);
        validate_client_batches(batch, 1 << 20, true).unwrap()
    }

    async fn read_replica(replica: &Addr<Replica>) -> Vec<(i64, String)> {
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let read = replica
                .send(ReadRecords {
                    fetch_offset: offset,
                    max_bytes: 1 << 20,
                    min_one: true,
                    isolation: FetchIsolation::HighWatermark,
                    current_leader_epoch: None,
                })
                .await
                .unwrap();
            assert!(read.error.is_none(), "{:?}", read.error);
            if read.records.is_empty() {
                return out;
            }
            let mut buf = read.records.clone();
            for set in RecordBatchDecoder::decode_all(&mut buf).unwrap() {
                for r in set.records {
                    out.push((
                        r.offset,
                        String::from_utf8(r.key.unwrap().to_vec()).unwrap(),
                    ));
                }
            }
            let mut pos = 0;
            while pos < read.records.len() {
                let h = crate::storage::BatchHeader::parse(&read.records[pos..]).unwrap();
                offset = h.next_offset();
                pos += h.total_size();
            }
        }
    }

    #[actix::test]
    async fn a_replica_keeps_appending_and_serving_reads_while_its_log_is_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let config = compact_config();
        let log = open(dir.path(), &config);
        let handle = Replica::new(
            tp("t"),
            uuid::Uuid::new_v4(),
            1,
            log,
            config,
            Duration::from_secs(3600),
        )
        .start_here();
        let replica = handle.addr.clone();
        replica
            .send(ApplyLeaderAndIsr(leader()))
            .await
            .unwrap()
            .unwrap();
        for _ in 0..40 {
            replica
                .send(AppendRecords {
                    batches: keyed(&["a", "b", "c", "a", "b"]),
                    required_acks: 1,
                })
                .await
                .unwrap()
                .unwrap();
        }
        let (hook, paused, go) = pause();
        let cleaner = LogCleaner::new(
            cleaner_config(),
            targets(vec![(tp("t"), CleanerPeer::of(replica.clone()))]),
        )
        .with_before_swap(hook)
        .start();
        wait_paused(&paused).await;
        // The clean holds its cleaned segments, waiting to swap: the replica still serves.
        let appended = replica
            .send(AppendRecords {
                batches: keyed(&["d"]),
                required_acks: 1,
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(appended.base_offset, 200);
        assert_eq!(read_replica(&replica).await.len(), 201);
        go.send(()).unwrap();
        eventually("the swap", || {
            let cleaner = cleaner.clone();
            async move { Some(totals(&cleaner).await).filter(|t| t.cleans >= 1) }
        })
        .await;
        let after = read_replica(&replica).await;
        assert!(after.len() < 201, "{}", after.len());
        assert_eq!(after.last(), Some(&(200, "d".to_string())));
        // Per key, only the latest record below the active segment is left.
        let mut seen = std::collections::BTreeMap::new();
        for (offset, key) in &after {
            seen.entry(key.clone())
                .or_insert_with(Vec::new)
                .push(*offset);
        }
        assert!(seen
            .values()
            .all(|offsets| offsets.windows(2).all(|w| w[0] < w[1])));
    }

    #[actix::test]
    async fn tombstones_go_when_their_horizon_passes_without_new_writes() {
        let dir = tempfile::tempdir().unwrap();
        let config = TopicConfig {
            delete_retention_ms: 300,
            ..compact_config()
        };
        let mut log = open(dir.path(), &config);
        fill(&mut log, 20, 5, 5);
        append(
            &mut log,
            &[("k1".into(), None), ("k2".into(), None)],
            Compression::None,
        );
        log.maybe_roll(i64::MAX).unwrap();
        append(
            &mut log,
            &[("tail".into(), Some("x".into()))],
            Compression::None,
        );
        let owner = Owner { log }.start();
        let cleaner = LogCleaner::new(
            cleaner_config(),
            targets(vec![(tp("t"), CleanerPeer::of(owner.clone()))]),
        )
        .start();
        eventually("the first clean", || {
            let cleaner = cleaner.clone();
            async move { Some(totals(&cleaner).await).filter(|t| t.cleans >= 1) }
        })
        .await;
        // The backoff is an hour: only the horizon brings the cleaner back.
        let records = eventually("the tombstones to go", || {
            let owner = owner.clone();
            async move {
                let records = read_of(&owner).await;
                (!records.iter().any(|(_, k, _)| k == "k1" || k == "k2")).then_some(records)
            }
        })
        .await;
        assert!(records.iter().any(|(_, k, _)| k == "k0"));
        assert!(totals(&cleaner).await.cleans >= 2);
    }

    #[actix::test]
    async fn a_log_that_goes_away_takes_its_tombstone_horizon_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let config = TopicConfig {
            delete_retention_ms: 3_600_000,
            ..compact_config()
        };
        let mut log = open(dir.path(), &config);
        fill(&mut log, 20, 5, 5);
        append(&mut log, &[("k1".into(), None)], Compression::None);
        log.maybe_roll(i64::MAX).unwrap();
        let owner = Owner { log }.start();
        let listed = Arc::new(Mutex::new(vec![(tp("t"), CleanerPeer::of(owner.clone()))]));
        let targets = {
            let listed = listed.clone();
            move || listed.lock().unwrap().clone()
        };
        let cleaner = LogCleaner::new(cleaner_config(), targets).start();
        let t = eventually("a clean that keeps a tombstone", || {
            let cleaner = cleaner.clone();
            async move {
                Some(totals(&cleaner).await).filter(|t| t.cleans >= 1 && t.tombstone_logs == 1)
            }
        })
        .await;
        listed.lock().unwrap().clear();
        cleaner.send(CleanNow).await.unwrap();
        eventually("the horizon to be forgotten", || {
            let cleaner = cleaner.clone();
            let passes = t.passes;
            async move {
                Some(totals(&cleaner).await).filter(|t| t.passes > passes && t.tombstone_logs == 0)
            }
        })
        .await;
    }

    #[actix::test]
    async fn the_cleaner_stops_with_its_stop_signal() {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut stopped = stopped;
        let cleaner =
            LogCleaner::new(cleaner_config(), targets(Vec::new())).start_until(async move {
                let _ = stopped.wait_for(|s| *s).await;
            });
        assert!(cleaner.connected());
        stop.send(true).unwrap();
        eventually("the cleaner to stop", || {
            let gone = !cleaner.connected();
            async move { gone.then_some(()) }
        })
        .await;
    }

    #[test]
    fn the_broker_config_sets_the_cleaner_up_as_kafka_does() {
        let broker = BrokerConfig::default();
        let c = LogCleanerConfig::from_broker(&broker).unwrap();
        assert_eq!(c.threads, 1);
        assert_eq!(c.map_bytes, 128 << 20);
        assert_eq!(c.io.io_buffer_bytes, 256 << 10);
        assert_eq!(c.backoff, Duration::from_secs(15));
        let off = BrokerConfig {
            log_cleaner_enable: false,
            ..BrokerConfig::default()
        };
        assert!(LogCleanerConfig::from_broker(&off).is_none());
        let two = BrokerConfig {
            log_cleaner_threads: 2,
            ..BrokerConfig::default()
        };
        assert_eq!(
            LogCleanerConfig::from_broker(&two).unwrap().map_bytes,
            64 << 20
        );
    }
}
