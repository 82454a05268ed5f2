//! `weir chaos [--brokers 3..5] [--rounds N] [--seed S]`: randomized fault schedules on an
//! in-process cluster, with a checker proving nothing acknowledged is lost.
//!
//! One cluster runs the whole time. Each round creates its own topic (RF 3, the cluster's
//! `min.insync.replicas=2`), starts the [`workload`] (idempotent producers with acks=all and a
//! consumer committing group offsets), plays the round's episodes from the seeded
//! [`schedule`] (inject, hold, heal everything), then stops the workload, waits for every
//! partition to have a leader (timed against a bound) and a full, caught-up ISR, reads every
//! replica's log through its replica actor, reads the committed offsets back, and hands it
//! all to the [`checker`]. A round needs of its cluster only a [`Rig`]: with `--processes` the
//! same rounds run over a `weir coordinator` and `weir broker` processes ([`processes`]).
//!
//! Output: a line per round on stdout, then one JSON line (`rounds`, `faults`, `acked`,
//! `lost`, `duplicated`, `divergent`, `seed`); the exit status is 0 only if every invariant
//! held in every round. Each round records a message trace; a failing round prints its seed,
//! its violations and the end of the trace of the partition that failed, and keeps the file.
//! The seed fixes the schedule, not the threads' timing: a failure is confirmed by rerunning
//! its seed.

pub mod checker;
pub mod processes;
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
use crate::cluster::{BrokerState, Cluster};
use crate::storage::batch::BatchHeader;
use crate::transport::faults::Node;
use checker::{History, PartitionHistory, ReplicaLog, StoredBatch, Verdict};
use schedule::{Action, FaultSet, RoundPlan, Shape, Target};

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
    /// Which faults the schedule draws from.
    pub faults: FaultSet,
    /// The `weir` executable [`processes::run`] starts (this one by default).
    pub weir_binary: Option<PathBuf>,
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
            faults: FaultSet::All,
            weir_binary: None,
        }
    }
}

/// One partition as a round sees it.
#[derive(Debug, Clone)]
pub struct PartitionView {
    pub topic: String,
    pub partition: i32,
    /// -1 while offline.
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// The leader's; -1 when unknown.
    pub high_watermark: i64,
    pub log_end_offset: i64,
}

/// What a round needs of the cluster it runs on: the in-process [`Cluster`], or
/// [`processes::ProcessCluster`] (a `weir coordinator` and `weir broker` processes).
#[allow(async_fn_in_trait)]
pub trait Rig {
    /// Every broker's client address.
    fn addresses(&self) -> BTreeMap<i32, SocketAddr>;
    /// Injects `action` against `topic`'s round; how the fault reads, or `None` when it did
    /// not apply (no broker to hit, or the broker is already down).
    async fn inject(&mut self, topic: &str, action: &Action) -> Option<String>;
    /// Heals every fault: links, paused and crashed brokers.
    async fn heal(&mut self) -> anyhow::Result<()>;
    /// Every partition of every topic (offsets filled in for `topic`'s at least).
    async fn partitions(&self, topic: &str) -> Vec<PartitionView>;
    /// Broker `broker`'s log end of the partition; `None` when it is not running one.
    async fn log_end(&self, topic: &str, partition: i32, broker: i32) -> Option<i64>;
    /// Every stored batch of broker `broker`'s replica of the partition.
    async fn read_replica(
        &self,
        topic: &str,
        partition: i32,
        broker: i32,
    ) -> anyhow::Result<ReplicaLog>;
}

impl Rig for Cluster {
    fn addresses(&self) -> BTreeMap<i32, SocketAddr> {
        self.brokers().iter().map(|b| (b.id, b.addr)).collect()
    }

    async fn inject(&mut self, topic: &str, action: &Action) -> Option<String> {
        let Some((fault, text)) = concrete(self, topic, action) else {
            tracing::info!(%action, "no broker to hit; skipped");
            return None;
        };
        match Cluster::inject(self, fault).await {
            Ok(()) => Some(text),
            // A combination may name a broker the other fault already took down.
            Err(e) => {
                tracing::info!(%text, error = %e, "fault not applicable; skipped");
                None
            }
        }
    }

    async fn heal(&mut self) -> anyhow::Result<()> {
        heal_all(self).await
    }

    async fn partitions(&self, _topic: &str) -> Vec<PartitionView> {
        self.status()
            .partitions
            .into_iter()
            .map(|p| PartitionView {
                topic: p.topic,
                partition: p.partition,
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                replicas: p.replicas,
                isr: p.isr,
                high_watermark: p.high_watermark,
                log_end_offset: p.log_end_offset,
            })
            .collect()
    }

    async fn log_end(&self, topic: &str, partition: i32, broker: i32) -> Option<i64> {
        self.broker(broker)
            .filter(|b| b.state == BrokerState::Up)
            .and_then(|b| b.shared.replicas.get(topic, partition))
            .map(|h| h.progress().log_end_offset)
    }

    async fn read_replica(
        &self,
        topic: &str,
        partition: i32,
        broker: i32,
    ) -> anyhow::Result<ReplicaLog> {
        read_replica(self, topic, partition, broker).await
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
    let dir = run_dir(config);
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
    let summary = run_rounds(&mut cluster, config, &dir, &mut on_round).await;
    if let Err(e) = cluster.shutdown().await {
        tracing::warn!(error = %e, "the chaos cluster shut down uncleanly");
    }
    if summary.ok() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(summary)
}

/// The run's data dir: `config.data_dir`, or a fresh one under the temp dir.
fn run_dir(config: &ChaosConfig) -> PathBuf {
    config.data_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("weir-chaos-{}-{}", std::process::id(), config.seed))
    })
}

/// Plays `config.rounds` rounds on `rig`, calling `on_round` after each.
async fn run_rounds<R: Rig>(
    rig: &mut R,
    config: &ChaosConfig,
    dir: &std::path::Path,
    on_round: &mut impl FnMut(&RoundReport),
) -> Summary {
    let mut summary = Summary {
        seed: config.seed,
        ..Summary::default()
    };
    for round in 1..=config.rounds {
        let plan = schedule::plan_with(
            config.seed,
            round,
            config.brokers,
            config.partitions,
            config.shape,
            config.faults,
        );
        let report = run_round(rig, config, &plan, dir).await;
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
    summary
}

async fn run_round<R: Rig>(
    rig: &mut R,
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
    let verdict = match play(rig, config, plan, &mut faults, &mut resets).await {
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

/// Waits until every partition of every topic has a leader; false after `deadline`.
async fn wait_led<R: Rig>(rig: &R, topic: &str, deadline: Duration) -> bool {
    let until = Instant::now() + deadline;
    loop {
        if all_led(&rig.partitions(topic).await) {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every partition of every topic has a leader.
fn all_led(partitions: &[PartitionView]) -> bool {
    !partitions.is_empty() && partitions.iter().all(|p| p.leader >= 0)
}

/// Each replica's log end of `p`, `None` for one not running.
async fn replica_ends<R: Rig>(rig: &R, p: &PartitionView) -> Vec<(i32, Option<i64>)> {
    let mut ends = Vec::new();
    for r in &p.replicas {
        ends.push((*r, rig.log_end(&p.topic, p.partition, *r).await));
    }
    ends
}

/// The partitions not settled yet, described (leader, ISR, replicas' log ends): settled
/// means a full ISR, and for `topic`'s every replica holding exactly what its leader holds,
/// all of it below the high-water mark.
async fn unsettled<R: Rig>(rig: &R, partitions: &[PartitionView], topic: &str) -> Vec<String> {
    let mut out = Vec::new();
    for p in partitions {
        let ends = if p.topic == topic {
            replica_ends(rig, p).await
        } else {
            Vec::new()
        };
        let lagging = p.topic == topic
            && (p.high_watermark < 0
                || p.high_watermark != p.log_end_offset
                || ends.iter().any(|(_, e)| *e != Some(p.log_end_offset)));
        if p.leader < 0 || p.isr.len() != p.replicas.len() || lagging {
            let ends: Vec<String> = ends
                .iter()
                .map(|(r, e)| format!("{r}:{}", e.map_or("-".into(), |e| e.to_string())))
                .collect();
            out.push(format!(
                "{}-{} leader {} epoch {} ISR {:?} HWM {} LEO {} replica ends [{}]",
                p.topic,
                p.partition,
                p.leader,
                p.leader_epoch,
                p.isr,
                p.high_watermark,
                p.log_end_offset,
                ends.join(" ")
            ));
        }
    }
    out
}

/// Waits until [`unsettled`] finds nothing; what it still finds after `deadline`.
async fn wait_settled<R: Rig>(rig: &R, topic: &str, deadline: Duration) -> Vec<String> {
    let until = Instant::now() + deadline;
    loop {
        let partitions = rig.partitions(topic).await;
        let left = if all_led(&partitions) {
            unsettled(rig, &partitions, topic).await
        } else {
            vec!["not every partition has a leader".to_string()]
        };
        if left.is_empty() || Instant::now() >= until {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One round: the topic, the workload under the plan's faults, then the history.
async fn play<R: Rig>(
    rig: &mut R,
    config: &ChaosConfig,
    plan: &RoundPlan,
    faults: &mut Vec<String>,
    resets: &mut Vec<String>,
) -> anyhow::Result<History> {
    let topic = topic_of(plan.round);
    let group = format!("chaos-group-{}", plan.round);
    let brokers = rig.addresses();
    create_topic(&brokers, &topic, config.partitions).await?;
    let until = Instant::now() + config.settle;
    loop {
        let parts = rig.partitions(&topic).await;
        let mine: Vec<_> = parts.iter().filter(|p| p.topic == topic).collect();
        if mine.len() == config.partitions as usize
            && mine
                .iter()
                .all(|p| p.leader >= 0 && p.isr.len() == p.replicas.len())
        {
            break;
        }
        anyhow::ensure!(
            Instant::now() < until,
            "{topic} got no leaders and full ISRs within {:?}",
            config.settle
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let workload =
        workload::Workload::start(&brokers, plan.round, &topic, config.partitions, &group);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for episode in &plan.episodes {
        for action in &episode.actions {
            if let Some(text) = rig.inject(&topic, action).await {
                faults.push(text);
            }
        }
        tokio::time::sleep(Duration::from_millis(episode.hold_ms)).await;
        rig.heal().await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let healed = Instant::now();
    let leaders_after_heal = wait_led(rig, &topic, config.leader_bound * 2)
        .await
        .then(|| healed.elapsed());
    // A little traffic on the healed cluster, then the stragglers get their retries.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (producers, consumer) = workload.finish(config.settle).await;
    let unsettled = wait_settled(rig, &topic, config.settle).await;

    let committed =
        workload::committed(&brokers, &group, &topic, config.partitions, config.settle).await?;
    let partitions = rig.partitions(&topic).await;
    let mut history = History {
        leaders_after_heal,
        unsettled,
        ..History::default()
    };
    for p in partitions.iter().filter(|p| p.topic == topic) {
        let mut replicas = Vec::new();
        for r in &p.replicas {
            replicas.push(rig.read_replica(&topic, p.partition, *r).await?);
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
        let before = offset;
        let found = whole_batches(&read.records)
            .with_context(|| format!("broker {broker}'s {topic}-{partition}"))?;
        if let Some(last) = found.last() {
            offset = last.last_offset + 1;
        }
        batches.extend(found);
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

/// The whole batches at the start of `bytes`, in order (a torn tail is left out).
fn whole_batches(bytes: &bytes::Bytes) -> anyhow::Result<Vec<StoredBatch>> {
    let mut batches = Vec::new();
    let mut position = 0;
    while bytes.len() - position >= BatchHeader::SIZE {
        let h = BatchHeader::parse(&bytes[position..])
            .map_err(|e| anyhow::anyhow!("batch at byte {position}: {e:?}"))?;
        let size = h.total_size();
        if size < BatchHeader::SIZE || position + size > bytes.len() {
            break;
        }
        batches.push(StoredBatch {
            base_offset: h.base_offset,
            last_offset: h.next_offset() - 1,
            bytes: bytes.slice(position..position + size),
        });
        position += size;
    }
    Ok(batches)
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
    /// Run the brokers as processes (a `weir coordinator` and `weir broker`s of this binary)
    /// instead of in this process; faults are SIGKILL and restart, SIGSTOP and SIGCONT.
    #[arg(long)]
    pub processes: bool,
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
    if args.processes {
        config.faults = FaultSet::Processes;
        // The message trace records this process's actors; the brokers run elsewhere.
        config.trace = false;
    }
    let summary = actix_rt::System::new().block_on(async move {
        let print = |r: &RoundReport| {
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
        };
        if args.processes {
            processes::run(&config, print).await
        } else {
            run(&config, print).await
        }
    })?;
    println!("{}", serde_json::to_string(&summary)?);
    anyhow::ensure!(
        summary.ok(),
        "seed {seed}: rounds {:?} broke an invariant",
        summary.failed_rounds
    );
    Ok(())
}
