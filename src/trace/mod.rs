//! Message-trace logging: every typed message across the inter-broker seam, coordination
//! requests and watch events, controller decisions, client requests and replica state changes
//! can be recorded as [`Event`]s, written as JSON lines (schema in [`event`]) and drawn as a
//! sequence diagram ([`render`]). The hooks that observe the running system live in
//! [`crate::observe`]; this module owns the recorder they feed.
//!
//! # Cost
//! Off by default, and then free in practice: every hook is `if trace::enabled() { ... }`,
//! one relaxed atomic load, and builds its event only inside the branch (`benches/trace.rs`
//! measures a produce append with the hooks off and on).
//!
//! # Bounds
//! On, the recorder is bounded in rate and memory: a token bucket admits at most
//! `rate_per_sec` events a second (bursts up to one second's worth), and admitted events wait
//! in a bounded channel for one writer thread, which serializes them to the file. An event
//! refused by either is counted; the count is written as a `meta` `TraceDropped` event (at most
//! once a second while it grows, and at the end), so a reader knows what is missing. The
//! [`filter`] is applied before the rate cap, so what the filter drops costs no budget.
//!
//! One recording runs at a time in a process ([`start`] refuses a second one): the hooks are
//! process-wide, like a `tracing` subscriber.

pub mod command;
pub mod event;
pub mod filter;
pub mod render;
pub mod tap;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;

pub use event::{Category, Event};
pub use filter::Filter;

/// Whether a recording runs or a [`tap`] is open: the one check every hook makes.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether a recording runs.
static RECORDING: AtomicBool = AtomicBool::new(false);

/// Whether a [`tap`] is open.
static TAPPED: AtomicBool = AtomicBool::new(false);

fn set_recording(on: bool) {
    RECORDING.store(on, Ordering::Relaxed);
    ENABLED.store(on || TAPPED.load(Ordering::Relaxed), Ordering::Relaxed);
}

fn set_tapped(on: bool) {
    TAPPED.store(on, Ordering::Relaxed);
    ENABLED.store(on || RECORDING.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// The running recording. A std `RwLock`: emitters only read it (and never across an await);
/// it is written when a recording starts and stops.
static ACTIVE: RwLock<Option<Arc<Shared>>> = RwLock::new(None);

/// Causal ids, unique in the process (a response names its request's).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Whether events are being recorded or tapped. Hooks call this before building anything.
#[inline(always)]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// A fresh causal id for a request event.
pub fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Hands `event` to an open [`tap`], and records it if a recording runs and its filter and
/// rate cap admit it. Stamps `seq` and `t_us`.
pub fn emit(mut event: Event) {
    if TAPPED.load(Ordering::Relaxed) {
        tap::publish(&event);
    }
    let guard = ACTIVE.read().unwrap_or_else(|p| p.into_inner());
    let Some(shared) = guard.as_ref() else {
        return;
    };
    if !shared.filter.keeps(&event) {
        return;
    }
    if !shared.take_token() {
        shared.dropped.fetch_add(1, Ordering::Relaxed);
        return;
    }
    event.seq = shared.seq.fetch_add(1, Ordering::Relaxed);
    event.t_us = shared.start.elapsed().as_micros() as u64;
    match shared.sender.try_send(Message::Event(Box::new(event))) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
            shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// How a recording runs.
#[derive(Debug, Clone)]
pub struct TraceConfig {
    /// The JSON-lines file (created or truncated).
    pub path: PathBuf,
    pub filter: Filter,
    /// The rate cap: events admitted per second (bursts up to one second's worth).
    pub rate_per_sec: u32,
    /// Events waiting for the writer at most; beyond, they are dropped and counted.
    pub capacity: usize,
}

impl TraceConfig {
    /// Default rate cap: enough for every control-plane message of a busy demo, while a
    /// saturating produce load cannot turn the trace into the bottleneck.
    pub const DEFAULT_RATE_PER_SEC: u32 = 20_000;
    pub const DEFAULT_CAPACITY: usize = 65_536;

    pub fn new(path: impl Into<PathBuf>) -> Self {
        TraceConfig {
            path: path.into(),
            filter: Filter::default(),
            rate_per_sec: Self::DEFAULT_RATE_PER_SEC,
            capacity: Self::DEFAULT_CAPACITY,
        }
    }

    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    pub fn rate_per_sec(mut self, rate: u32) -> Self {
        self.rate_per_sec = rate.max(1);
        self
    }
}

enum Message {
    Event(Box<Event>),
    Stop,
}

/// What emitters and the writer share.
struct Shared {
    start: Instant,
    filter: Filter,
    seq: AtomicU64,
    /// The token bucket: emitters take one token per event; the writer refills it. It may go
    /// below zero under a burst (each refused emitter took one); the refill starts from zero.
    tokens: AtomicI64,
    /// Refused by the rate cap or a full channel.
    dropped: AtomicU64,
    sender: SyncSender<Message>,
}

impl Shared {
    fn take_token(&self) -> bool {
        self.tokens.fetch_sub(1, Ordering::Relaxed) > 0
    }

    fn refill(&self, add: i64, burst: i64) {
        let _ = self
            .tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some((t.max(0) + add).min(burst))
            });
    }

    fn meta(&self, kind: &str) -> Event {
        let mut e = Event::note(Category::Meta, "trace", kind);
        e.seq = self.seq.fetch_add(1, Ordering::Relaxed);
        e.t_us = self.start.elapsed().as_micros() as u64;
        e
    }
}

/// What a finished recording wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceSummary {
    /// Events written (meta events included).
    pub written: u64,
    /// Events refused by the rate cap or a full queue.
    pub dropped: u64,
}

/// A running recording; [`Recording::finish`] (or dropping it) stops it and flushes the file.
pub struct Recording {
    shared: Arc<Shared>,
    writer: Option<std::thread::JoinHandle<std::io::Result<u64>>>,
    path: PathBuf,
}

/// Starts recording to `config.path`. Fails if the file cannot be created or a recording
/// already runs in this process.
pub fn start(config: TraceConfig) -> anyhow::Result<Recording> {
    let mut active = ACTIVE.write().unwrap_or_else(|p| p.into_inner());
    anyhow::ensure!(
        active.is_none(),
        "a trace is already recording in this process"
    );
    if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the trace's directory {}", dir.display()))?;
    }
    let file = std::fs::File::create(&config.path)
        .with_context(|| format!("creating the trace file {}", config.path.display()))?;
    let (sender, receiver) = mpsc::sync_channel(config.capacity.max(16));
    let rate = i64::from(config.rate_per_sec.max(1));
    let shared = Arc::new(Shared {
        start: Instant::now(),
        filter: config.filter.clone(),
        seq: AtomicU64::new(0),
        tokens: AtomicI64::new(rate),
        dropped: AtomicU64::new(0),
        sender,
    });
    let mut started = shared.meta("TraceStarted");
    let unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    started.detail = Some(format!(
        "weir {}; started at unix ms {unix_ms}; rate cap {rate}/s; filter `{}`",
        env!("CARGO_PKG_VERSION"),
        config.filter.source()
    ));
    let writer_shared = shared.clone();
    let writer = std::thread::Builder::new()
        .name("weir-trace-writer".into())
        .spawn(move || write_loop(writer_shared, receiver, file, started, rate))
        .context("starting the trace writer thread")?;
    *active = Some(shared.clone());
    set_recording(true);
    tracing::info!(path = %config.path.display(), rate, "message trace recording");
    Ok(Recording {
        shared,
        writer: Some(writer),
        path: config.path,
    })
}

/// The writer thread: serializes events, refills the token bucket, reports drops.
fn write_loop(
    shared: Arc<Shared>,
    receiver: mpsc::Receiver<Message>,
    file: std::fs::File,
    started: Event,
    rate: i64,
) -> std::io::Result<u64> {
    let mut out = Sink {
        out: std::io::BufWriter::with_capacity(1 << 16, file),
        written: 0,
    };
    out.write(&started)?;
    let mut last_refill = Instant::now();
    // Fractions of a token carried between refills, so low rates are honoured exactly.
    let mut carry = 0.0f64;
    let mut reported_dropped = 0u64;
    let mut last_report = Instant::now();
    loop {
        let message = receiver.recv_timeout(Duration::from_millis(10));
        let now = Instant::now();
        carry += now.duration_since(last_refill).as_secs_f64() * rate as f64;
        last_refill = now;
        if carry >= 1.0 {
            let add = carry.floor();
            carry -= add;
            shared.refill(add as i64, rate);
        }
        let dropped = shared.dropped.load(Ordering::Relaxed);
        if dropped > reported_dropped && now.duration_since(last_report) >= Duration::from_secs(1) {
            let mut e = shared.meta("TraceDropped");
            e.count = Some(dropped);
            out.write(&e)?;
            reported_dropped = dropped;
            last_report = now;
        }
        match message {
            Ok(Message::Event(e)) => out.write(&e)?,
            Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => out.out.flush()?,
        }
    }
    // Whatever was queued before the stop.
    while let Ok(Message::Event(e)) = receiver.try_recv() {
        out.write(&e)?;
    }
    let dropped = shared.dropped.load(Ordering::Relaxed);
    if dropped > 0 {
        let mut e = shared.meta("TraceDropped");
        e.count = Some(dropped);
        out.write(&e)?;
    }
    let mut ended = shared.meta("TraceEnded");
    ended.count = Some(out.written + 1);
    out.write(&ended)?;
    out.out.flush()?;
    Ok(out.written)
}

/// The trace file, counting the lines it got.
struct Sink {
    out: std::io::BufWriter<std::fs::File>,
    written: u64,
}

impl Sink {
    fn write(&mut self, e: &Event) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, e).map_err(std::io::Error::other)?;
        self.out.write_all(b"\n")?;
        self.written += 1;
        Ok(())
    }
}

impl Recording {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Events refused so far by the rate cap or a full queue.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Stops recording, writes what was queued and the closing `meta` events, and flushes.
    pub fn finish(mut self) -> anyhow::Result<TraceSummary> {
        self.stop()
    }

    fn stop(&mut self) -> anyhow::Result<TraceSummary> {
        let Some(writer) = self.writer.take() else {
            return Ok(TraceSummary {
                written: 0,
                dropped: self.dropped(),
            });
        };
        set_recording(false);
        ACTIVE.write().unwrap_or_else(|p| p.into_inner()).take();
        // Queued behind every admitted event; blocks only while the queue is full.
        let _ = self.shared.sender.send(Message::Stop);
        let written = writer
            .join()
            .map_err(|_| anyhow::anyhow!("the trace writer panicked"))?
            .with_context(|| format!("writing the trace {}", self.path.display()))?;
        Ok(TraceSummary {
            written,
            dropped: self.dropped(),
        })
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!(error = %e, "the message trace ended badly");
        }
    }
}

/// Reads a trace file back, in `seq` order. Lines that are not events are skipped (a trace
/// cut short by a crash may end in half a line).
pub fn read_file(path: &Path) -> anyhow::Result<Vec<Event>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the trace {}", path.display()))?;
    let mut events: Vec<Event> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    events.sort_by_key(|e| e.seq);
    Ok(events)
}

/// Serializes tests that start recordings (one recording per process at a time).
#[cfg(test)]
pub(crate) static TEST_RECORDING: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[cfg(test)]
mod tests {
    use super::*;

    fn lock() -> std::sync::MutexGuard<'static, ()> {
        TEST_RECORDING.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[test]
    fn events_are_written_as_json_lines_between_start_and_end_markers() {
        let _serial = lock();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        assert!(!enabled());
        let recording = start(TraceConfig::new(&path)).unwrap();
        assert!(enabled());
        for i in 0..10 {
            let mut e = Event::new(Category::Seam, "b1", "b2", "LeaderAndIsr");
            e.id = Some(i);
            emit(e);
        }
        let summary = recording.finish().unwrap();
        assert!(!enabled());
        assert_eq!(summary.dropped, 0);
        let events = read_file(&path).unwrap();
        assert_eq!(summary.written as usize, events.len());
        assert_eq!(events.first().unwrap().kind, "TraceStarted");
        assert_eq!(events.last().unwrap().kind, "TraceEnded");
        let ids: Vec<u64> = events.iter().filter_map(|e| e.id).collect();
        assert_eq!(ids, (0..10).collect::<Vec<_>>());
        assert!(events.windows(2).all(|w| w[0].t_us <= w[1].t_us));
    }

    #[test]
    fn the_rate_cap_drops_and_counts_what_exceeds_it() {
        let _serial = lock();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        let recording = start(TraceConfig::new(&path).rate_per_sec(100)).unwrap();
        for _ in 0..1000 {
            emit(Event::new(Category::Client, "client", "b1", "Fetch"));
        }
        let summary = recording.finish().unwrap();
        // One second's burst is admitted (plus what refilled meanwhile), the rest counted.
        assert!(
            (800..=900).contains(&summary.dropped),
            "dropped {}",
            summary.dropped
        );
        let events = read_file(&path).unwrap();
        let fetches = events.iter().filter(|e| e.kind == "Fetch").count() as u64;
        assert_eq!(fetches + summary.dropped, 1000);
        let reported = events
            .iter()
            .rfind(|e| e.kind == "TraceDropped")
            .and_then(|e| e.count);
        assert_eq!(reported, Some(summary.dropped));
    }

    #[test]
    fn the_filter_decides_before_the_rate_cap() {
        let _serial = lock();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        let filter = Filter::parse("kind!=Fetch").unwrap();
        let recording = start(TraceConfig::new(&path).filter(filter).rate_per_sec(10)).unwrap();
        for _ in 0..1000 {
            emit(Event::new(Category::Client, "client", "b1", "Fetch"));
        }
        emit(Event::new(Category::Seam, "b1", "b2", "LeaderAndIsr"));
        let summary = recording.finish().unwrap();
        assert_eq!(summary.dropped, 0);
        let kinds: Vec<String> = read_file(&path)
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, ["TraceStarted", "LeaderAndIsr", "TraceEnded"]);
    }

    #[test]
    fn a_second_recording_is_refused_while_one_runs() {
        let _serial = lock();
        let dir = tempfile::tempdir().unwrap();
        let first = start(TraceConfig::new(dir.path().join("a.jsonl"))).unwrap();
        let second = start(TraceConfig::new(dir.path().join("b.jsonl")));
        assert!(second.is_err());
        drop(first);
        assert!(!enabled());
        start(TraceConfig::new(dir.path().join("c.jsonl")))
            .unwrap()
            .finish()
            .unwrap();
    }
}
