//! `weir chaos [--brokers 3..5] [--rounds N] [--seed S]`: randomized fault schedules on an
//! in-process cluster, with a checker proving nothing acknowledged is lost.
//!
//! One cluster runs the whole time. Each round creates its own topic (RF 3, the cluster's
//! `min.insync.replicas=2`), starts the [`workload`] (idempotent producers with acks=all and a
//! consumer committing group offsets), plays the round's episodes from the seeded
//! [`schedule`] (inject, hold, heal everything), then stops the workload, waits for every
//! partition to have a leader (timed against a bound) and a full, caught-up ISR, reads every
//! replica's log through its replica actor, reads the committed offsets back, and hands it
//! all to the [`checker`].
//!
//! Output: a line per round on stdout, then one JSON line (`rounds`, `faults`, `acked`,
//! `lost`, `duplicated`, `divergent`, `seed`); the exit status is 0 only if every invariant
//! held in every round. Each round records a message trace; a failing round prints its seed,
//! its violations and the end of the trace of the partition that failed, and keeps the file.
//! The seed fixes the schedule, not the threads' timing: a failure is confirmed by rerunning
//! its seed.

pub mod checker;
pub mod schedule;
pub mod workload;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use kafka_protocol::records::RecordBatchDecoder;

use crate::actors::replica::{FetchIsolation, ReadRecords};
use crate::cluster::faults::Fault;
use crate::cluster::status::ClusterStatus;
use crate::cluster::{BrokerState, Cluster};
use crate::storage::batch::BatchHeader;
use crate::transport::faults::Node;
use checker::{History, PartitionHistory, ReplicaLog, StoredBatch, Verdict};
use schedule::{Action, RoundPlan, Shape, Target};

/// Broker settings for chaos: sessions short enough that a crashed broker is noticed (and can
/// register again) within seconds, an ISR that drops a stalled follower within 1.5 s so
/// acks=all makes progress, and a small offsets topic.
pub const CHAOS_SETTINGS: &[(&str, &str)] = &[
    ("zookeeper.session.timeout.ms", "2000"),
    ("replica.lag.time.max.ms", "1500"),
    ("replica.fetch.backoff.ms", "100"),
    ("replica.fetch.wait.max.ms", "200"),
    ("offsets.topic.num.partitions", "3"),
    ("group.initial.rebalance.delay.ms", "0"),
    ("unclean.leader.election.enable", "false"),
];

/// How a run goes.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    pub brokers: u16,
    pub rounds: u32,
    pub seed: u64,
    /// Partitions of each round's topic.
    pub partitions: i32,
    pub shape: Shape,
    /// Every partition must have a leader this soon after the last heal.
    pub leader_bound: Duration,
    /// Waiting for a full, caught-up ISR, and for stuck requests to finish, at most this.
    pub settle: Duration,
    /// Where the cluster and the traces live (a fresh temp dir by default).
    pub data_dir: Option<PathBuf>,
    /// Record a message trace per round (kept only for failing rounds).
    pub trace: bool,
}

impl ChaosConfig {
    pub fn new(brokers: u16, rounds: u32, seed: u64) -> Self {
        ChaosConfig {
            brokers,
            rounds,
            seed,
            partitions: 3,
            shape: Shape::default(),
            leader_bound: Duration::from_secs(15),
            settle: Duration::from_secs(30),
            data_dir: None,
            trace: true,
        }
    }
}

/// One round's outcome.
#[derive(Debug, Clone)]
pub struct RoundReport {
    pub round: u32,
    /// The faults injected, as resolved (`crash leader(p0)=2`).
    pub faults: Vec<String>,
    pub verdict: Verdict,
    /// Producers that had to start over after a fatal answer (not a violation by itself).
    pub resets: Vec<String>,
    pub elapsed: Duration,
    /// The kept trace of a failing round.
    pub trace: Option<PathBuf>,
    /// The end of the trace around the failure.
    pub trace_tail: Option<String>,
}

/// The run's totals: the final JSON line.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Summary {
    pub rounds: u32,
    pub faults: u64,
    pub acked: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub divergent: u64,
    pub seed: u64,
    #[serde(skip)]
    pub failed_rounds: Vec<u32>,
}

impl Summary {
    pub fn ok(&self) -> bool {
        self.failed_rounds.is_empty()
    }
}

/// Runs `config.rounds` rounds inside the running actix System, calling `on_round` after each.
pub async fn run(
    config: &ChaosConfig,
    mut on_round: impl FnMut(&RoundReport),
) -> anyhow::Result<Summary> {
    anyhow::ensure!(
        (3..=5).contains(&config.brokers),
        "--brokers must be 3 to 5, not {}",
        config.brokers
    );
    let dir = config.data_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("weir-chaos-{}-{}", std::process::id(), config.seed))
    });
    let mut builder = Cluster::builder()
        .brokers(config.brokers)
        .base_port(0)
        .data_dir(dir.join("cluster"))
        .worker_threads(2);
    for (k, v) in CHAOS_SETTINGS {
        builder = builder.set(*k, *v);
    }
    let mut cluster = builder
        .start()
        .await
        .context("starting the chaos cluster")?;
    let mut summary = Summary {
        seed: config.seed,
        ..Summary::default()
    };
    for round in 1..=config.rounds {
        let plan = schedule::plan(
            config.seed,
            round,
            config.brokers,
            config.partitions,
            config.shape,
        );
        let report = run_round(&mut cluster, config, &plan, &dir).await;
        summary.rounds += 1;
        summary.faults += report.faults.len() as u64;
        summary.acked += report.verdict.acked;
        summary.lost += report.verdict.lost;
        summary.duplicated += report.verdict.duplicated;
        summary.divergent += report.verdict.divergent;
        if !report.verdict.ok() {
            summary.failed_rounds.push(round);
        }
        on_round(&report);
    }
    if let Err(e) = cluster.shutdown().await {
        tracing::warn!(error = %e, "the chaos cluster shut down uncleanly");
    }
    if summary.ok() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(summary)
}

async fn run_round(
    cluster: &mut Cluster,
    config: &ChaosConfig,
    plan: &RoundPlan,
    dir: &std::path::Path,
) -> RoundReport {
    let started = Instant::now();
    let trace_path = dir.join(format!("round-{}.jsonl", plan.round));
    let recording = if config.trace {
        crate::trace::start(crate::trace::TraceConfig::new(&trace_path))
            .map_err(|e| tracing::warn!(error = %e, "no trace for this round"))
            .ok()
    } else {
        None
    };
    let mut faults = Vec::new();
    let mut resets = Vec::new();
    let verdict = match play(cluster, config, plan, &mut faults, &mut resets).await {
        Ok(history) => checker::check(&history, config.leader_bound),
        Err(e) => Verdict {
            violations: vec![format!("the round could not be checked: {e:#}")],
            ..Verdict::default()
        },
    };
    let mut report = RoundReport {
        round: plan.round,
        faults,
        verdict,
        resets,
        elapsed: started.elapsed(),
        trace: None,
        trace_tail: None,
    };
    if let Some(recording) = recording {
        if let Err(e) = recording.finish() {
            tracing::warn!(error = %e, "finishing the round's trace");
        }
        if report.verdict.ok() {
            let _ = std::fs::remove_file(&trace_path);
        } else {
            report.trace_tail = trace_tail(&trace_path, plan.round, &report.verdict);
            report.trace = Some(trace_path);
        }
    }
    report
}

/// The last lines of the failing partition's trace (the round's topic if none is named).
fn trace_tail(path: &std::path::Path, round: u32, verdict: &Verdict) -> Option<String> {
    let events = crate::trace::read_file(path).ok()?;
    let partition = verdict
        .violations
        .first()
        .and_then(|v| v.strip_prefix('p')?.split(':').next()?.parse::<i32>().ok());
    let view = crate::trace::render::View {
        topic: Some(topic_of(round)),
        partition,
        fold: true,
        ..Default::default()
    };
    let text = crate::trace::render::render(&events, &view, crate::trace::render::Format::Text);
    let lines: Vec<&str> = text.lines().collect();
    Some(lines[lines.len().saturating_sub(40)..].join("\n"))
}

fn topic_of(round: u32) -> String {
    format!("chaos-{round}")
}

/// The broker ids of the cluster, in order.
fn broker_ids(cluster: &Cluster) -> Vec<i32> {
    cluster.brokers().iter().map(|b| b.id).collect()
}

fn resolve(cluster: &Cluster, topic: &str, t: Target) -> Option<i32> {
    let status = cluster.status();
    let id = match t {
        Target::Broker(id) => id,
        Target::Controller => status.controller,
        Target::LeaderOf(p) => {
            status
                .partitions
                .iter()
                .find(|x| x.topic == topic && x.partition == p)?
                .leader
        }
    };
    (id >= 1).then_some(id)
}

/// The broker `offset` places after `id`, cyclically.
fn next_broker(ids: &[i32], id: i32, offset: i32) -> i32 {
    let i = ids.iter().position(|x| *x == id).unwrap_or(0) as i32;
    ids[((i + offset).rem_euclid(ids.len() as i32)) as usize]
}

/// The concrete fault of `action` against the running cluster, and how it reads.
fn concrete(cluster: &Cluster, topic: &str, action: &Action) -> Option<(Fault, String)> {
    let ids = broker_ids(cluster);
    let who = |t: Target| resolve(cluster, topic, t);
    let named = |t: Target, id: i32| match t {
        Target::Broker(_) => id.to_string(),
        _ => format!("{t}={id}"),
    };
    let fault = match *action {
        Action::Crash(t) => {
            let id = who(t)?;
            (Fault::Crash(id), format!("crash {}", named(t, id)))
        }
        Action::Pause(t) => {
            let id = who(t)?;
            (Fault::Pause(id), format!("pause {}", named(t, id)))
        }
        Action::ExpireSession(t) => {
            let id = who(t)?;
            (
                Fault::ExpireSession(id),
                format!("expire-session {}", named(t, id)),
            )
        }
        Action::CutCoordination(t) => {
            let id = who(t)?;
            (
                Fault::Cut {
                    from: Node::Broker(id),
                    to: Node::Coordination,
                    both: true,
                },
                format!("cut {} coord", named(t, id)),
            )
        }
        Action::Cut { from, offset, both } => {
            let a = who(from)?;
            let b = next_broker(&ids, a, offset);
            let text = if both {
                format!("cut {} {b}", named(from, a))
            } else {
                format!("cut {}>{b}", named(from, a))
            };
            (
                Fault::Cut {
                    from: Node::Broker(a),
                    to: Node::Broker(b),
                    both,
                },
                text,
            )
        }
        Action::Delay { from, offset, ms } => {
            let a = who(from)?;
            let b = next_broker(&ids, a, offset);
            (
                Fault::Delay {
                    from: Node::Broker(a),
                    to: Node::Broker(b),
                    delay: Duration::from_millis(ms),
                },
                format!("delay {}>{b} {ms}ms", named(from, a)),
            )
        }
        Action::Drop {
            from,
            offset,
            percent,
        } => {
            let a = who(from)?;
            let b = next_broker(&ids, a, offset);
            (
                Fault::Drop {
                    from: Node::Broker(a),
                    to: Node::Broker(b),
                    percent: f64::from(percent),
                },
                format!("drop {}>{b} {percent}%", named(from, a)),
            )
        }
    };
    Some(fault)
}

/// Heals every link, then resumes every paused broker and restarts every crashed one. Links
/// first: a broker restarted behind a cut or delayed link may legitimately wait for the
/// controller's metadata longer than the restart waits.
async fn heal_all(cluster: &mut Cluster) -> anyhow::Result<()> {
    cluster
        .inject(Fault::Heal(None))
        .await
        .map_err(|e| anyhow::anyhow!("healing the links: {e}"))?;
    let states: Vec<(i32, BrokerState)> =
        cluster.brokers().iter().map(|b| (b.id, b.state)).collect();
    for (id, state) in states {
        let fault = match state {
            BrokerState::Paused => Fault::Resume(id),
            BrokerState::Down => Fault::Restart(id),
            BrokerState::Up => continue,
        };
        cluster
            .inject(fault)
            .await
            .map_err(|e| anyhow::anyhow!("healing broker {id}: {e}"))?;
    }
    Ok(())
}

fn addresses(cluster: &Cluster) -> BTreeMap<i32, SocketAddr> {
    cluster.brokers().iter().map(|b| (b.id, b.addr)).collect()
}

/// Waits until `ok` holds for the cluster's status; false after `deadline`.
async fn wait_status(
    cluster: &Cluster,
    deadline: Duration,
    mut ok: impl FnMut(&Cluster, &ClusterStatus) -> bool,
) -> bool {
    let until = Instant::now() + deadline;
    loop {
        if ok(cluster, &cluster.status()) {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every partition of every topic has a leader.
fn all_led(status: &ClusterStatus) -> bool {
    !status.partitions.is_empty() && status.partitions.iter().all(|p| p.leader >= 0)
}

/// Every partition has a full ISR, and every replica of `topic` holds exactly what its
/// leader holds, all of it below the high-water mark.
fn settled(cluster: &Cluster, status: &ClusterStatus, topic: &str) -> bool {
    all_led(status)
        && status.partitions.iter().all(|p| {
            if p.isr.len() != p.replicas.len() {
                return false;
            }
            if p.topic != topic {
                return true;
            }
            p.high_watermark >= 0
                && p.high_watermark == p.log_end_offset
                && p.replicas.iter().all(|r| {
                    cluster
                        .broker(*r)
                        .filter(|b| b.state == BrokerState::Up)
                        .and_then(|b| b.shared.replicas.get(&p.topic, p.partition))
                        .is_some_and(|h| h.progress().log_end_offset == p.log_end_offset)
                })
        })
}

/// The partitions [`settled`] waits for, described: leader, ISR, replicas' log ends.
fn unsettled(cluster: &Cluster, status: &ClusterStatus, topic: &str) -> Vec<String> {
    status
        .partitions
        .iter()
        .filter_map(|p| {
            let ends: Vec<String> = p
                .replicas
                .iter()
                .map(|r| {
                    let end = cluster
                        .broker(*r)
                        .filter(|b| b.state == BrokerState::Up)
                        .and_then(|b| b.shared.replicas.get(&p.topic, p.partition))
                        .map(|h| h.progress().log_end_offset);
                    format!("{r}:{}", end.map_or("-".into(), |e| e.to_string()))
                })
                .collect();
            let lagging = p.topic == topic
                && (p.high_watermark != p.log_end_offset
                    || ends
                        .iter()
                        .any(|e| !e.ends_with(&format!(":{}", p.log_end_offset))));
            (p.leader < 0 || p.isr.len() != p.replicas.len() || lagging).then(|| {
                format!(
                    "{}-{} leader {} epoch {} ISR {:?} HWM {} LEO {} replica ends [{}]",
                    p.topic,
                    p.partition,
                    p.leader,
                    p.leader_epoch,
                    p.isr,
                    p.high_watermark,
                    p.log_end_offset,
                    ends.join(" ")
                )
            })
        })
        .collect()
}

/// One round: the topic, the workload under the plan's faults, then the history.
async fn play(
    cluster: &mut Cluster,
    config: &ChaosConfig,
    plan: &RoundPlan,
    faults: &mut Vec<String>,
    resets: &mut Vec<String>,
) -> anyhow::Result<History> {
    let topic = topic_of(plan.round);
    let group = format!("chaos-group-{}", plan.round);
    let brokers = addresses(cluster);
    create_topic(&brokers, &topic, config.partitions).await?;
    anyhow::ensure!(
        wait_status(cluster, config.settle, |_, s| {
            let mine: Vec<_> = s.partitions.iter().filter(|p| p.topic == topic).collect();
            mine.len() == config.partitions as usize
                && mine
                    .iter()
                    .all(|p| p.leader >= 0 && p.isr.len() == p.replicas.len())
        })
        .await,
        "{topic} got no leaders and full ISRs within {:?}",
        config.settle
    );

    let workload =
        workload::Workload::start(&brokers, plan.round, &topic, config.partitions, &group);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for episode in &plan.episodes {
        for action in &episode.actions {
            let Some((fault, text)) = concrete(cluster, &topic, action) else {
                tracing::info!(%action, "no broker to hit; skipped");
                continue;
            };
            match cluster.inject(fault).await {
                Ok(()) => faults.push(text),
                // A combination may name a broker the other fault already took down.
                Err(e) => tracing::info!(%text, error = %e, "fault not applicable; skipped"),
            }
        }
        tokio::time::sleep(Duration::from_millis(episode.hold_ms)).await;
        heal_all(cluster).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let healed = Instant::now();
    let leaders_after_heal = wait_status(cluster, config.leader_bound * 2, |_, s| all_led(s))
        .await
        .then(|| healed.elapsed());
    // A little traffic on the healed cluster, then the stragglers get their retries.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (producers, consumer) = workload.finish(config.settle).await;
    let is_settled = wait_status(cluster, config.settle, |c, s| settled(c, s, &topic)).await;

    let committed =
        workload::committed(&brokers, &group, &topic, config.partitions, config.settle).await?;
    let status = cluster.status();
    let mut history = History {
        leaders_after_heal,
        unsettled: if is_settled {
            Vec::new()
        } else {
            unsettled(cluster, &status, &topic)
        },
        ..History::default()
    };
    for p in status.partitions.iter().filter(|p| p.topic == topic) {
        let mut replicas = Vec::new();
        for r in &p.replicas {
            replicas.push(read_replica(cluster, &topic, p.partition, *r).await?);
        }
        let log = replicas
            .iter()
            .find(|r| r.broker == p.leader)
            .map(|r| records_below(r, p.high_watermark))
            .transpose()?
            .unwrap_or_default();
        let produced = producers.get(&p.partition).cloned().unwrap_or_default();
        resets.extend(produced.resets.iter().cloned());
        let acked: std::collections::HashSet<&String> = produced.acked.iter().collect();
        history.partitions.insert(
            p.partition,
            PartitionHistory {
                unacked: produced
                    .sent
                    .iter()
                    .filter(|v| !acked.contains(v))
                    .cloned()
                    .collect(),
                acked: produced.acked.clone(),
                reads: consumer
                    .reads
                    .get(&p.partition)
                    .cloned()
                    .unwrap_or_default(),
                log,
                replicas,
                leader: p.leader,
                high_watermark: p.high_watermark,
                acked_commit: consumer.acked_commits.get(&p.partition).copied(),
                committed_after: committed.get(&p.partition).copied().unwrap_or(-1),
            },
        );
    }
    Ok(history)
}

async fn create_topic(
    brokers: &BTreeMap<i32, SocketAddr>,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<()> {
    let mut last = String::new();
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        for addr in brokers.values() {
            let Ok(Ok(c)) = tokio::time::timeout(
                Duration::from_secs(2),
                crate::demo::client::Client::connect(*addr, "chaos-admin"),
            )
            .await
            else {
                continue;
            };
            let mut c = c.with_deadline(Duration::from_secs(10));
            match c.create_topic(topic, partitions, 3, None).await {
                // TOPIC_ALREADY_EXISTS: an earlier attempt got through.
                Ok(0) | Ok(36) => return Ok(()),
                Ok(code) => last = crate::trace::event::kafka_error_name(code).to_string(),
                Err(e) => last = format!("{e:#}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("creating {topic}: {last}")
}

/// Every stored batch of broker `broker`'s replica of the partition, read through its replica
/// actor up to its log end.
async fn read_replica(
    cluster: &Cluster,
    topic: &str,
    partition: i32,
    broker: i32,
) -> anyhow::Result<ReplicaLog> {
    let handle = cluster
        .broker(broker)
        .filter(|b| b.state == BrokerState::Up)
        .and_then(|b| b.shared.replicas.get(topic, partition))
        .with_context(|| {
            format!("broker {broker} has no running replica of {topic}-{partition}")
        })?;
    let mut batches = Vec::new();
    let mut offset = 0i64;
    let mut log_start;
    loop {
        let read = handle
            .addr
            .send(ReadRecords {
                fetch_offset: offset,
                max_bytes: 1 << 20,
                min_one: true,
                isolation: FetchIsolation::LogEnd,
                current_leader_epoch: None,
            })
            .await
            .with_context(|| format!("reading broker {broker}'s {topic}-{partition}"))?;
        if let Some(e) = read.error {
            anyhow::bail!("reading broker {broker}'s {topic}-{partition} at {offset}: {e:?}");
        }
        log_start = read.log_start_offset;
        if offset < log_start {
            offset = log_start;
            continue;
        }
        let bytes = read.records;
        let mut position = 0;
        let before = offset;
        while bytes.len() - position >= BatchHeader::SIZE {
            let h = BatchHeader::parse(&bytes[position..])
                .map_err(|e| anyhow::anyhow!("broker {broker}'s {topic}-{partition}: {e:?}"))?;
            let size = h.total_size();
            if size < BatchHeader::SIZE || position + size > bytes.len() {
                break;
            }
            batches.push(StoredBatch {
                base_offset: h.base_offset,
                last_offset: h.next_offset() - 1,
                bytes: bytes.slice(position..position + size),
            });
            offset = h.next_offset();
            position += size;
        }
        if offset >= read.log_end_offset || offset == before {
            break;
        }
    }
    Ok(ReplicaLog {
        broker,
        log_start_offset: log_start,
        batches,
    })
}

/// (offset, value) of every record of `r` below `high_watermark`.
fn records_below(r: &ReplicaLog, high_watermark: i64) -> anyhow::Result<Vec<(i64, String)>> {
    let mut out = Vec::new();
    for b in r.batches.iter().filter(|b| b.base_offset < high_watermark) {
        let mut bytes = b.bytes.clone();
        for set in RecordBatchDecoder::decode_all(&mut bytes).map_err(|e| {
            anyhow::anyhow!(
                "decoding broker {}'s batch at {}: {e}",
                r.broker,
                b.base_offset
            )
        })? {
            for rec in set.records {
                if rec.offset < high_watermark && rec.offset >= r.log_start_offset {
                    let value = rec.value.unwrap_or_default();
                    out.push((rec.offset, String::from_utf8_lossy(&value).into_owned()));
                }
            }
        }
    }
    Ok(out)
}

/// `weir chaos` arguments.
#[derive(Debug, clap::Args, Clone)]
pub struct ChaosArgs {
    /// Brokers in the cluster (3 to 5).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(3..=5))]
    pub brokers: u16,
    /// Rounds to run.
    #[arg(long, default_value_t = 10)]
    pub rounds: u32,
    /// The seed of the fault schedule (random when not given; printed either way).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where the cluster's data and failing rounds' traces go (a temp dir by default; kept
    /// when a round fails).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// Prints one line per round: `round N ok|FAILED ...`.
pub fn round_line(r: &RoundReport) -> String {
    let v = &r.verdict;
    format!(
        "round {} {} in {:.1}s: faults [{}] acked {} lost {} duplicated {} divergent {} reordered {} vanished-reads {} rolled-back-commits {}{}",
        r.round,
        if v.ok() { "ok" } else { "FAILED" },
        r.elapsed.as_secs_f64(),
        r.faults.join(", "),
        v.acked,
        v.lost,
        v.duplicated,
        v.divergent,
        v.reordered,
        v.vanished_reads,
        v.rolled_back_commits,
        if r.resets.is_empty() {
            String::new()
        } else {
            format!(" producer-resets {}", r.resets.len())
        }
    )
}

/// `weir chaos`: runs the rounds, prints a line per round and the JSON summary; fails unless
/// every invariant held.
pub fn main(args: ChaosArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let seed = args.seed.unwrap_or_else(rand::random);
    let mut config = ChaosConfig::new(args.brokers, args.rounds, seed);
    config.data_dir = args.data_dir;
    let summary = actix_rt::System::new().block_on(async move {
        run(&config, |r| {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", round_line(r));
            if !r.verdict.ok() {
                let _ = writeln!(out, "  seed {seed} round {} failed:", r.round);
                for v in &r.verdict.violations {
                    let _ = writeln!(out, "  - {v}");
                }
                for reset in &r.resets {
                    let _ = writeln!(out, "  producer reset: {reset}");
                }
                if let Some(path) = &r.trace {
                    let _ = writeln!(out, "  trace: {}", path.display());
                }
                if let Some(tail) = &r.trace_tail {
                    for line in tail.lines() {
                        let _ = writeln!(out, "  | {line}");
                    }
                }
            }
            let _ = out.flush();
        })
        .await
    })?;
    println!("{}", serde_json::to_string(&summary)?);
    anyhow::ensure!(
        summary.ok(),
        "seed {seed}: rounds {:?} broke an invariant",
        summary.failed_rounds
    );
    Ok(())
}
