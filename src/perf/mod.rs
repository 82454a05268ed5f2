//! `weir perf`: a load tool that drives any Kafka cluster through a real client (librdkafka,
//! through the `rdkafka` crate) and reports what a user would measure: records/s, MB/s and
//! per-record latency percentiles.
//!
//! - `produce`: sends `--records` records of `--record-size` bytes; latency is send → delivery
//!   report (the broker's acknowledgement at the chosen `--acks`).
//! - `consume`: reads `--records` records from the start of the topic (producing the missing
//!   ones first, unmeasured); no latency (the records were written earlier; `e2e` measures it).
//! - `e2e`: produces and consumes at once; latency is send → consumed, carried in the first
//!   8 bytes of each record.
//!
//! `--set test.mock.num.brokers=N` runs against librdkafka's own in-process mock cluster
//! instead of `--bootstrap`: the same client against a broker that costs next to nothing, so
//! its figure is the client's ceiling on this machine and a broker's figures can be read as
//! ratios to it. Every other `--set` is a librdkafka property for every client of the run.
//!
//! Output: a progress bar and a human summary on stderr, then one JSON line on stdout:
//! `records_per_s`, `mb_per_s` (10^6 bytes of record values per second), `latency_ms`
//! {`p50`,`p99`,`p999`,`max`} (null for `consume`) and `errors`, with the run's parameters.
//!
//! Built only with the `perf` cargo feature (librdkafka is a C build).

pub mod histogram;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::{Offset, TopicPartitionList};

use histogram::Histogram;

/// The librdkafka property that, given to `weir perf`, selects the mock cluster.
const MOCK_BROKERS: &str = "test.mock.num.brokers";

#[derive(Debug, Args, Clone)]
pub struct PerfArgs {
    #[command(subcommand)]
    pub mode: Mode,
}

#[derive(Debug, Subcommand, Clone)]
pub enum Mode {
    /// Produce records; latency is send → delivery report.
    Produce(LoadArgs),
    /// Consume records from the start of the topic (producing them first if missing).
    Consume(LoadArgs),
    /// Produce and consume at once; latency is send → consumed.
    E2e(LoadArgs),
}

#[derive(Debug, Args, Clone)]
pub struct LoadArgs {
    /// Brokers to bootstrap from (ignored with `--set test.mock.num.brokers=N`).
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    #[arg(long, default_value = "weir-perf")]
    pub topic: String,
    /// Records to produce or consume.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: u64,
    /// Bytes of each record's value (no key).
    #[arg(long, default_value_t = 100)]
    pub record_size: usize,
    /// 0, 1 or all.
    #[arg(long, default_value = "all")]
    pub acks: String,
    /// Partitions of the topic when this run creates it.
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,
    /// Replication factor when this run creates the topic; -1 is the broker's default.
    #[arg(long, default_value_t = -1)]
    pub replication_factor: i32,
    /// Records per second to send at (latency at a fixed load); unlimited by default.
    #[arg(long)]
    pub rate: Option<f64>,
    /// A librdkafka property for every client of the run, `key=value`; repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Give up when no record has moved for this long.
    #[arg(long, default_value_t = 60)]
    pub idle_timeout_s: u64,
    /// No progress bar (it is hidden anyway when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

/// What one measured phase produced.
#[derive(Debug, Default)]
struct Measured {
    records: u64,
    errors: u64,
    elapsed: Duration,
    latency: Option<Histogram>,
}

/// Where the clients connect, with the mock cluster kept alive for the run when there is one.
struct Target {
    clients: Clients,
    /// librdkafka's mock cluster; dropped (stopped) at the end of the run.
    mock: Option<MockCluster<'static, rdkafka::producer::DefaultProducerContext>>,
}

/// How every client of the run is configured (shared with the e2e consumer's thread).
#[derive(Debug, Clone)]
struct Clients {
    bootstrap: String,
    /// The client properties from `--set`, without the mock selector.
    properties: Vec<(String, String)>,
}

impl Clients {
    fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        config
    }
}

pub fn run(args: PerfArgs) -> anyhow::Result<()> {
    let (mode, load) = match &args.mode {
        Mode::Produce(a) => ("produce", a),
        Mode::Consume(a) => ("consume", a),
        Mode::E2e(a) => ("e2e", a),
    };
    if load.records == 0 {
        bail!("--records must be at least 1");
    }
    if mode == "e2e" && load.record_size < 8 {
        bail!("e2e needs --record-size of at least 8 (the send time travels in the record)");
    }
    let acks = match load.acks.as_str() {
        "0" | "1" | "all" | "-1" => load.acks.clone(),
        other => bail!("--acks must be 0, 1 or all, not {other}"),
    };
    let target = connect(load)?;
    prepare_topic(&target, load)?;
    let measured = match &args.mode {
        Mode::Produce(_) => produce(&target.clients, load, &acks, None, "produce", None)?,
        Mode::Consume(_) => {
            prefill(&target.clients, load, &acks)?;
            consume(&target.clients, load, None)?
        }
        Mode::E2e(_) => e2e(&target.clients, load, &acks)?,
    };
    report(mode, load, &acks, &target, &measured);
    if measured.records < load.records {
        bail!(
            "{} of {} records done ({} errors)",
            measured.records,
            load.records,
            measured.errors
        );
    }
    Ok(())
}

fn connect(load: &LoadArgs) -> anyhow::Result<Target> {
    let mut properties = Vec::new();
    let mut mock_brokers = None;
    for set in &load.sets {
        let (k, v) = set
            .split_once('=')
            .with_context(|| format!("--set {set}: expected key=value"))?;
        let (k, v) = (k.trim().to_string(), v.trim().to_string());
        if k == MOCK_BROKERS {
            mock_brokers = Some(
                v.parse::<i32>()
                    .with_context(|| format!("{MOCK_BROKERS}={v}: not a number"))?,
            );
        } else {
            properties.push((k, v));
        }
    }
    match mock_brokers {
        Some(n) => {
            let mock = MockCluster::new(n).context("starting librdkafka's mock cluster")?;
            Ok(Target {
                clients: Clients {
                    bootstrap: mock.bootstrap_servers(),
                    properties,
                },
                mock: Some(mock),
            })
        }
        None => Ok(Target {
            clients: Clients {
                bootstrap: load.bootstrap.clone(),
                properties,
            },
            mock: None,
        }),
    }
}

/// Creates the topic (ignoring one that exists) and waits until every partition has a leader.
fn prepare_topic(target: &Target, load: &LoadArgs) -> anyhow::Result<()> {
    let clients = &target.clients;
    if let Some(mock) = &target.mock {
        let rf = if load.replication_factor > 0 {
            load.replication_factor
        } else {
            1
        };
        mock.create_topic(&load.topic, load.partitions, rf)
            .context("creating the topic on the mock cluster")?;
    } else {
        let admin: AdminClient<DefaultClientContext> = clients
            .config()
            .create()
            .context("creating an admin client")?;
        let replication = TopicReplication::Fixed(load.replication_factor);
        let results = futures::executor::block_on(admin.create_topics(
            &[NewTopic::new(&load.topic, load.partitions, replication)],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        ))
        .context("CreateTopics")?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => bail!("creating {topic}: {code}"),
            }
        }
    }
    let consumer: BaseConsumer = clients.config().create().context("creating a client")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = consumer
            .fetch_metadata(Some(&load.topic), Duration::from_secs(5))
            .ok()
            .and_then(|m| {
                let t = m.topics().iter().find(|t| t.name() == load.topic)?;
                let ok = t.error().is_none()
                    && !t.partitions().is_empty()
                    && t.partitions().iter().all(|p| p.leader() >= 0);
                ok.then_some(())
            });
        if ready.is_some() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "topic {} has no leader for every partition after 30 s",
                load.topic
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Counts delivery reports; the opaque of each record is its send time in µs since `start`.
struct DeliveryCounter {
    start: Instant,
    delivered: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// Only the polling thread (the sender's) records here; the lock is never contended.
    latency: Mutex<Histogram>,
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_us: usize) {
        match result {
            Ok(_) => {
                let now_us = self.start.elapsed().as_micros() as u64;
                self.delivered.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut h) = self.latency.lock() {
                    h.record(now_us.saturating_sub(sent_us as u64));
                }
            }
            Err((e, _)) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = self.first_error.lock() {
                    first.get_or_insert_with(|| e.to_string());
                }
            }
        }
    }
}

fn progress_bar(load: &LoadArgs, len: u64, label: &str) -> ProgressBar {
    if load.no_progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr_with_hz(5));
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix:>8} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} {per_sec:>14} eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar.set_prefix(label.to_string());
    bar
}

/// Produces `load.records` records (or `count` when given) and waits for every report. With
/// `stamp`, each record's first 8 bytes carry its send time in µs since that instant (for
/// the e2e consumer).
fn produce(
    clients: &Clients,
    load: &LoadArgs,
    acks: &str,
    count: Option<u64>,
    label: &str,
    stamp: Option<Instant>,
) -> anyhow::Result<Measured> {
    let records = count.unwrap_or(load.records);
    let context = DeliveryCounter {
        start: stamp.unwrap_or_else(Instant::now),
        delivered: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        first_error: Mutex::new(None),
        latency: Mutex::new(Histogram::default()),
    };
    let mut config = clients.config();
    config.set("acks", acks);
    let producer: BaseProducer<DeliveryCounter> = config
        .create_with_context(context)
        .context("creating the producer")?;
    let mut payload = vec![b'w'; load.record_size];
    let bar = progress_bar(load, records, label);
    let pacer = load.rate.map(|r| Pacer::new(r, producer.context().start));
    let started = producer.context().start.elapsed();
    let mut send_errors = 0u64;
    for i in 0..records {
        if let Some(pacer) = &pacer {
            pacer.wait_for(i, || producer.poll(Duration::ZERO));
        }
        let sent_us = producer.context().start.elapsed().as_micros() as usize;
        if stamp.is_some() {
            payload[..8].copy_from_slice(&(sent_us as u64).to_le_bytes());
        }
        let mut record: BaseRecord<'_, (), [u8], usize> =
            BaseRecord::with_opaque_to(&load.topic, sent_us).payload(&payload[..]);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(1));
                }
                Err((e, _)) => {
                    send_errors += 1;
                    if send_errors == 1 {
                        tracing::warn!(error = %e, "send failed");
                    }
                    break;
                }
            }
        }
        if i.is_multiple_of(1024) {
            producer.poll(Duration::ZERO);
            bar.set_position(producer.context().delivered.load(Ordering::Relaxed));
        }
    }
    // Wait for every report, giving up after the idle timeout without progress.
    let idle = Duration::from_secs(load.idle_timeout_s);
    let mut last = (0, Instant::now());
    loop {
        let c = producer.context();
        let done = c.delivered.load(Ordering::Relaxed) + c.errors.load(Ordering::Relaxed);
        bar.set_position(c.delivered.load(Ordering::Relaxed));
        if done + send_errors >= records {
            break;
        }
        if done != last.0 {
            last = (done, Instant::now());
        } else if last.1.elapsed() > idle {
            tracing::warn!(done, records, "no delivery report for {idle:?}; giving up");
            break;
        }
        producer.poll(Duration::from_millis(50));
    }
    let c = producer.context();
    let elapsed = c.start.elapsed() - started;
    bar.finish_and_clear();
    if let Ok(Some(e)) = c.first_error.lock().map(|f| f.clone()) {
        tracing::warn!(error = %e, errors = c.errors.load(Ordering::Relaxed), "delivery failed");
    }
    let delivered = c.delivered.load(Ordering::Relaxed);
    let latency = c.latency.lock().map(|h| h.clone()).unwrap_or_default();
    Ok(Measured {
        records: delivered,
        errors: records - delivered,
        elapsed,
        latency: Some(latency),
    })
}

/// Keeps a sender at a fixed rate: record `i` is due at `start + i / rate`.
struct Pacer {
    rate: f64,
    start: Instant,
}

impl Pacer {
    fn new(rate: f64, start: Instant) -> Self {
        Pacer {
            rate: rate.max(1.0),
            start,
        }
    }

    fn wait_for(&self, i: u64, mut idle: impl FnMut()) {
        let due = self.start + Duration::from_secs_f64(i as f64 / self.rate);
        loop {
            let now = Instant::now();
            if now >= due {
                return;
            }
            idle();
            let left = due - now;
            if left > Duration::from_micros(200) {
                std::thread::sleep(left.min(Duration::from_millis(1)));
            }
        }
    }
}

/// Makes sure the topic holds at least `load.records` records, producing the missing ones.
fn prefill(clients: &Clients, load: &LoadArgs, acks: &str) -> anyhow::Result<()> {
    let held: i64 = watermarks(clients, load)?
        .iter()
        .map(|(_, low, high)| high - low)
        .sum();
    let missing = (load.records as i64 - held).max(0) as u64;
    if missing > 0 {
        eprintln!("prefill: producing {missing} records to {}", load.topic);
        let done = produce(clients, load, acks, Some(missing), "prefill", None)?;
        if done.records < missing {
            bail!("prefill delivered {} of {missing} records", done.records);
        }
        let held: i64 = watermarks(clients, load)?
            .iter()
            .map(|(_, low, high)| high - low)
            .sum();
        if held < load.records as i64 {
            bail!(
                "{} holds only {held} records after the prefill (retention? librdkafka's mock \
                 cluster keeps 5 MiB per partition): use fewer --records or more --partitions",
                load.topic
            );
        }
    }
    Ok(())
}

/// `(partition, low, high)` watermarks of every partition of the topic.
fn watermarks(clients: &Clients, load: &LoadArgs) -> anyhow::Result<Vec<(i32, i64, i64)>> {
    let consumer: BaseConsumer = clients.config().create().context("creating a client")?;
    let metadata = consumer
        .fetch_metadata(Some(&load.topic), Duration::from_secs(10))
        .context("metadata")?;
    let topic = metadata
        .topics()
        .iter()
        .find(|t| t.name() == load.topic)
        .context("the topic is not in the metadata")?;
    topic
        .partitions()
        .iter()
        .map(|p| {
            let (low, high) = consumer
                .fetch_watermarks(&load.topic, p.id(), Duration::from_secs(10))
                .with_context(|| format!("watermarks of {}-{}", load.topic, p.id()))?;
            Ok((p.id(), low, high))
        })
        .collect()
}

/// Consumes `load.records` records from the given start offsets (the beginning when `None`);
/// with `latency`, each record's first 8 bytes are its send time in µs since `latency.0`.
fn consume(
    clients: &Clients,
    load: &LoadArgs,
    from: Option<(Vec<(i32, i64)>, Instant)>,
) -> anyhow::Result<Measured> {
    let mut config = clients.config();
    // librdkafka's consumer needs a group id even for manual assignment; nothing is committed.
    config
        .set("group.id", format!("weir-perf-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest");
    let consumer: BaseConsumer = config.create().context("creating the consumer")?;
    let (starts, sent_clock) = match from {
        Some((starts, clock)) => (starts, Some(clock)),
        None => (
            watermarks(clients, load)?
                .into_iter()
                .map(|(p, low, _)| (p, low))
                .collect(),
            None,
        ),
    };
    let mut assignment = TopicPartitionList::new();
    for (partition, offset) in &starts {
        assignment
            .add_partition_offset(&load.topic, *partition, Offset::Offset(*offset))
            .context("assignment")?;
    }
    consumer.assign(&assignment).context("assign")?;
    let bar = progress_bar(load, load.records, "consume");
    let mut latency = sent_clock.map(|_| Histogram::default());
    let started = Instant::now();
    let idle = Duration::from_secs(load.idle_timeout_s);
    let mut last_progress = Instant::now();
    let mut count = 0u64;
    let mut errors = 0u64;
    let queue = BatchQueue::of(&consumer).context("the consumer queue")?;
    let mut first_error = None;
    while count < load.records {
        let want = (load.records - count).min(BATCH as u64) as usize;
        let got = queue.consume(want, Duration::from_millis(100), |message| match message {
            Ok(payload) => {
                count += 1;
                if let (Some(h), Some(clock)) = (&mut latency, sent_clock) {
                    if let Some(sent) = payload.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
                        let now_us = clock.elapsed().as_micros() as u64;
                        h.record(now_us.saturating_sub(u64::from_le_bytes(sent)));
                    }
                }
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
        });
        if got > 0 {
            last_progress = Instant::now();
            bar.set_position(count);
        } else if last_progress.elapsed() > idle {
            tracing::warn!(count, "no record for {idle:?}; giving up");
            break;
        }
    }
    if let Some(e) = first_error {
        tracing::warn!(error = %e, errors, "consume errors");
    }
    bar.finish_and_clear();
    Ok(Measured {
        records: count,
        errors: errors + (load.records - count),
        elapsed: started.elapsed(),
        latency,
    })
}

/// Messages taken from librdkafka per call.
const BATCH: usize = 4096;

/// The consumer's queue, read a batch of messages per call with librdkafka's
/// `rd_kafka_consume_batch_queue` (what confluent-kafka's `consume(num_messages)` does): the
/// rdkafka crate's `poll` hands out one message per call with an allocation each, which makes
/// the polling thread, not the broker, the limit of a consume run.
///
/// Only for manually assigned consumers: a group consumer's rebalance events would arrive on
/// this queue too.
struct BatchQueue<'a> {
    queue: *mut rdkafka::bindings::rd_kafka_queue_t,
    /// The consumer owning the queue outlives it.
    _consumer: std::marker::PhantomData<&'a BaseConsumer>,
}

impl<'a> BatchQueue<'a> {
    fn of(consumer: &'a BaseConsumer) -> Option<BatchQueue<'a>> {
        // SAFETY: the client pointer is valid while `consumer` lives, which the lifetime
        // ties this queue to; the returned queue reference is released in `drop`.
        let queue = unsafe {
            rdkafka::bindings::rd_kafka_queue_get_consumer(consumer.client().native_ptr())
        };
        (!queue.is_null()).then_some(BatchQueue {
            queue,
            _consumer: std::marker::PhantomData,
        })
    }

    /// Takes up to `max` messages, waiting up to `timeout` for the first; gives each one's
    /// payload (or error) to `each`; returns how many there were.
    fn consume(
        &self,
        max: usize,
        timeout: Duration,
        mut each: impl FnMut(Result<&[u8], String>),
    ) -> usize {
        let mut messages: [*mut rdkafka::bindings::rd_kafka_message_t; BATCH] =
            [std::ptr::null_mut(); BATCH];
        let max = max.min(BATCH);
        // SAFETY: the array has room for `max` pointers; librdkafka fills the first `n`.
        let n = unsafe {
            rdkafka::bindings::rd_kafka_consume_batch_queue(
                self.queue,
                timeout.as_millis().min(i32::MAX as u128) as i32,
                messages.as_mut_ptr(),
                max,
            )
        };
        let n = n.max(0) as usize;
        for &m in &messages[..n] {
            // SAFETY: each of the first `n` entries is a message librdkafka handed over; it is
            // read here and destroyed once, after its payload was used.
            unsafe {
                let message = &*m;
                if message.err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
                {
                    let payload = if message.payload.is_null() {
                        &[][..]
                    } else {
                        std::slice::from_raw_parts(message.payload as *const u8, message.len)
                    };
                    each(Ok(payload));
                } else {
                    each(Err(
                        rdkafka::error::RDKafkaErrorCode::from(message.err).to_string()
                    ));
                }
                rdkafka::bindings::rd_kafka_message_destroy(m);
            }
        }
        n
    }
}

impl Drop for BatchQueue<'_> {
    fn drop(&mut self) {
        // SAFETY: releases the reference `rd_kafka_queue_get_consumer` returned.
        unsafe { rdkafka::bindings::rd_kafka_queue_destroy(self.queue) }
    }
}

/// Produces and consumes at once: the consumer starts at the current end of every partition,
/// the producer stamps each record with its send time.
fn e2e(clients: &Clients, load: &LoadArgs, acks: &str) -> anyhow::Result<Measured> {
    let starts: Vec<(i32, i64)> = watermarks(clients, load)?
        .into_iter()
        .map(|(p, _, high)| (p, high))
        .collect();
    let clock = Instant::now();
    let (consumed, produced) = std::thread::scope(|scope| {
        let consumer = scope.spawn(|| {
            let quiet = LoadArgs {
                no_progress: true,
                ..load.clone()
            };
            consume(clients, &quiet, Some((starts, clock)))
        });
        let produced = produce(clients, load, acks, None, "e2e", Some(clock));
        let consumed = consumer
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the consumer thread panicked")));
        (consumed, produced)
    });
    let consumed = consumed?;
    let produced = produced?;
    Ok(Measured {
        records: consumed.records,
        errors: consumed.errors + produced.errors,
        elapsed: consumed.elapsed,
        latency: consumed.latency,
    })
}

fn report(mode: &str, load: &LoadArgs, acks: &str, target: &Target, m: &Measured) {
    let secs = m.elapsed.as_secs_f64().max(1e-9);
    let records_per_s = m.records as f64 / secs;
    let mb_per_s = records_per_s * load.record_size as f64 / 1e6;
    let ms = |us: u64| (us as f64 / 1000.0 * 1000.0).round() / 1000.0;
    let latency = m.latency.as_ref().filter(|h| !h.is_empty()).map(|h| {
        serde_json::json!({
            "p50": ms(h.quantile(0.50)),
            "p99": ms(h.quantile(0.99)),
            "p999": ms(h.quantile(0.999)),
            "max": ms(h.max()),
        })
    });
    let target_name = if target.mock.is_some() {
        "mock".to_string()
    } else {
        target.clients.bootstrap.clone()
    };
    eprintln!(
        "{mode} {} records of {} B against {target_name} (acks={acks}) in {secs:.2} s: {records_per_s:.0} records/s, {mb_per_s:.1} MB/s, {} errors",
        m.records, load.record_size, m.errors
    );
    if let Some(l) = &latency {
        eprintln!(
            "latency ms: p50 {} p99 {} p99.9 {} max {}",
            l["p50"], l["p99"], l["p999"], l["max"]
        );
    }
    let line = serde_json::json!({
        "mode": mode,
        "target": target_name,
        "topic": load.topic,
        "records": m.records,
        "record_size": load.record_size,
        "acks": acks,
        "partitions": load.partitions,
        "rate": load.rate,
        "elapsed_s": (secs * 1000.0).round() / 1000.0,
        "records_per_s": records_per_s.round(),
        "mb_per_s": (mb_per_s * 100.0).round() / 100.0,
        "latency_ms": latency,
        "errors": m.errors,
    });
    println!("{line}");
}
