//! `weir chaos --processes`: the same rounds, workload and checker over real processes. A
//! `weir coordinator` and one `weir broker` per broker id (this binary, each on its own
//! loopback ports and log dir, kept across restarts), replicating over the TCP inter-broker
//! seam. Faults are what signals do to a process: SIGKILL (healed by starting the broker
//! again on its files) and SIGSTOP (healed by SIGCONT), of a fixed broker, a partition's
//! leader or the controller, as Kafka's Metadata names them.
//!
//! The checker's view comes over the Kafka protocol (leaders, ISRs, the controller, the
//! high-water mark) and from the brokers' log dirs: each replica's log is read from its
//! segment files once the round settled, as a dump of the dir would.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::checker::ReplicaLog;
use super::schedule::{Action, Target};
use super::{run_dir, run_rounds, whole_batches, ChaosConfig, PartitionView, Rig, RoundReport};
use super::{Summary, CHAOS_SETTINGS};
use crate::demo::client::Client;

const HOST: &str = "127.0.0.1";
/// How long a started process may take to say it is ready (a restarted broker first waits
/// for its previous session to expire).
const READY_WAIT: Duration = Duration::from_secs(60);
/// How long a metadata request may take before another broker is asked.
const ASK_DEADLINE: Duration = Duration::from_secs(2);
/// The coordinator's tick: sessions of 2 s need a tick of at most 1 s.
const COORDINATOR_TICK_MS: &str = "200";

/// One `weir` process and the lines it prints on stdout.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    /// Starts `exe args`, its stderr appended to `log`.
    fn spawn(exe: &Path, args: &[String], log: &Path) -> anyhow::Result<Proc> {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let mut command = Command::new(exe);
        // SAFETY: prctl between fork and exec touches no memory of the parent.
        unsafe {
            // A chaos run killed by a signal takes its brokers with it.
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = command
            .args(args)
            .env("WEIR_COORDINATOR_TICK_MS", COORDINATOR_TICK_MS)
            .env(
                "WEIR_LOG",
                std::env::var("WEIR_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {} {}", exe.display(), args.join(" ")))?;
        let stdout = child.stdout.take().context("piped stdout")?;
        let (tx, lines) = mpsc::channel();
        // Drains stdout for the process's whole life, so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Proc { child, lines })
    }

    /// Waits (without blocking the runtime: the workload shares this thread) for a line
    /// `done` accepts.
    async fn wait_line(&mut self, what: &str, done: impl Fn(&str) -> bool) -> anyhow::Result<()> {
        let until = Instant::now() + READY_WAIT;
        loop {
            match self.lines.try_recv() {
                Ok(line) if done(&line) => return Ok(()),
                Ok(_) => continue,
                Err(mpsc::TryRecvError::Disconnected) => {
                    anyhow::bail!("{what} exited before it was ready")
                }
                Err(mpsc::TryRecvError::Empty) => {}
            }
            anyhow::ensure!(
                Instant::now() < until,
                "{what} was not ready within {READY_WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: a signal to our own child, by pid; no memory is passed.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, signal);
        }
    }

    /// SIGKILL, and reaps it.
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One broker: its fixed address and settings, and its process while it runs.
struct BrokerProc {
    addr: SocketAddr,
    args: Vec<String>,
    log: PathBuf,
    dir: PathBuf,
    proc: Option<Proc>,
    paused: bool,
}

impl BrokerProc {
    async fn start(&mut self, exe: &Path, id: i32) -> anyhow::Result<()> {
        let mut proc = Proc::spawn(exe, &self.args, &self.log)?;
        let ready = proc
            .wait_line(&format!("weir broker {id}"), |l| l == "ready")
            .await;
        if let Err(e) = ready {
            proc.kill();
            return Err(e);
        }
        self.proc = Some(proc);
        self.paused = false;
        Ok(())
    }
}

/// A `weir coordinator` and `weir broker` processes, killed when dropped.
pub struct ProcessCluster {
    exe: PathBuf,
    coordinator: Option<Proc>,
    brokers: BTreeMap<i32, BrokerProc>,
}

/// A free loopback port (bound, then released for the process to take).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind((HOST, 0))?.local_addr()?.port())
}

impl ProcessCluster {
    /// Starts the coordinator and `brokers` brokers of `exe` under `dir`, with the chaos
    /// settings; returns once every broker is ready.
    pub async fn start(exe: &Path, dir: &Path, brokers: u16) -> anyhow::Result<ProcessCluster> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let port = free_port()?;
        let listen = format!("{HOST}:{port}");
        let coordinator_args: Vec<String> = vec![
            "coordinator".into(),
            "--max-client-cnxns".into(),
            "0".into(),
            "--listen".into(),
            listen.clone(),
            "--data-dir".into(),
            dir.join("coordination").display().to_string(),
        ];
        let mut coordinator = Proc::spawn(exe, &coordinator_args, &dir.join("coordinator.log"))?;
        coordinator
            .wait_line("weir coordinator", |l| l.starts_with("listening"))
            .await?;
        let mut cluster = ProcessCluster {
            exe: exe.to_path_buf(),
            coordinator: Some(coordinator),
            brokers: BTreeMap::new(),
        };
        for id in 1..=i32::from(brokers) {
            let (client, replication) = (free_port()?, free_port()?);
            let log_dir = dir.join(format!("broker-{id}"));
            let mut sets: Vec<String> = CHAOS_SETTINGS
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            sets.extend([
                format!("broker.id={id}"),
                format!("zookeeper.connect=weir://{listen}/weir"),
                format!("log.dirs={}", log_dir.display()),
                format!("listeners=PLAINTEXT://{HOST}:{client},REPLICATION://{HOST}:{replication}"),
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,REPLICATION:PLAINTEXT".into(),
                "inter.broker.listener.name=REPLICATION".into(),
                "default.replication.factor=3".into(),
                "min.insync.replicas=2".into(),
                "offsets.topic.replication.factor=3".into(),
            ]);
            let mut args = vec!["broker".to_string()];
            for set in sets {
                args.push("--set".into());
                args.push(set);
            }
            cluster.brokers.insert(
                id,
                BrokerProc {
                    addr: SocketAddr::new(HOST.parse()?, client),
                    args,
                    log: dir.join(format!("broker-{id}.log")),
                    dir: log_dir,
                    proc: None,
                    paused: false,
                },
            );
        }
        // All at once: the first ones wait for a controller, which needs the others' ISRs.
        let exe = cluster.exe.clone();
        let starts = cluster.brokers.iter_mut().map(|(id, b)| b.start(&exe, *id));
        for started in futures::future::join_all(starts).await {
            started?;
        }
        Ok(cluster)
    }

    /// Kills every process.
    pub fn stop(&mut self) {
        for b in self.brokers.values_mut() {
            if let Some(p) = b.proc.take() {
                p.kill();
            }
        }
        if let Some(c) = self.coordinator.take() {
            c.kill();
        }
    }

    /// Metadata (of every topic) from the first running broker that answers.
    async fn metadata(&self) -> Option<kafka_protocol::messages::MetadataResponse> {
        for b in self
            .brokers
            .values()
            .filter(|b| b.proc.is_some() && !b.paused)
        {
            let Ok(Ok(c)) =
                tokio::time::timeout(ASK_DEADLINE, Client::connect(b.addr, "chaos-rig")).await
            else {
                continue;
            };
            if let Ok(m) = c.with_deadline(ASK_DEADLINE).metadata(&[]).await {
                return Some(m);
            }
        }
        None
    }

    async fn resolve(&self, topic: &str, t: Target) -> Option<i32> {
        let id = match t {
            Target::Broker(id) => id,
            Target::Controller => self.metadata().await?.controller_id.0,
            Target::LeaderOf(p) => {
                partitions_of(&self.metadata().await?)
                    .into_iter()
                    .find(|x| x.topic == topic && x.partition == p)?
                    .leader
            }
        };
        (id >= 1).then_some(id)
    }

    /// The leader's high-water mark of the partition, asked of the leader.
    async fn high_watermark(&self, topic: &str, partition: i32, leader: i32) -> Option<i64> {
        let b = self
            .brokers
            .get(&leader)
            .filter(|b| b.proc.is_some() && !b.paused)?;
        let c = tokio::time::timeout(ASK_DEADLINE, Client::connect(b.addr, "chaos-rig"))
            .await
            .ok()?
            .ok()?;
        let fetched = c
            .with_deadline(ASK_DEADLINE)
            .fetch(topic, partition, 0, 0)
            .await
            .ok()?;
        (fetched.error_code == 0).then_some(fetched.high_watermark)
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Every partition the metadata lists (offsets unknown).
fn partitions_of(m: &kafka_protocol::messages::MetadataResponse) -> Vec<PartitionView> {
    let mut out = Vec::new();
    for t in &m.topics {
        let Some(name) = t.name.as_ref() else {
            continue;
        };
        for p in &t.partitions {
            out.push(PartitionView {
                topic: name.0.to_string(),
                partition: p.partition_index,
                leader: p.leader_id.0,
                leader_epoch: p.leader_epoch,
                replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                high_watermark: -1,
                log_end_offset: -1,
            });
        }
    }
    out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    out
}

/// Every whole batch in the segment files of `dir` (a partition's dir), in offset order.
fn read_partition_dir(dir: &Path) -> anyhow::Result<Vec<super::checker::StoredBatch>> {
    let mut segments: Vec<(i64, PathBuf)> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| {
            let path = e.ok()?.path();
            let name = path.file_name()?.to_str()?;
            let base = name.strip_suffix(".log")?.parse::<i64>().ok()?;
            Some((base, path))
        })
        .collect();
    segments.sort();
    let mut batches = Vec::new();
    for (_, path) in segments {
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        batches.extend(
            whole_batches(&bytes::Bytes::from(bytes))
                .with_context(|| format!("{}", path.display()))?,
        );
    }
    Ok(batches)
}

impl Rig for ProcessCluster {
    fn addresses(&self) -> BTreeMap<i32, SocketAddr> {
        self.brokers.iter().map(|(id, b)| (*id, b.addr)).collect()
    }

    async fn inject(&mut self, topic: &str, action: &Action) -> Option<String> {
        let (target, crash) = match *action {
            Action::Crash(t) => (t, true),
            Action::Pause(t) => (t, false),
            other => {
                tracing::info!(action = %other, "not a process fault; skipped");
                return None;
            }
        };
        let id = self.resolve(topic, target).await?;
        let named = match target {
            Target::Broker(_) => id.to_string(),
            t => format!("{t}={id}"),
        };
        let b = self.brokers.get_mut(&id)?;
        if crash {
            let proc = b.proc.take()?;
            tracing::info!(broker = id, "SIGKILL");
            proc.kill();
            b.paused = false;
            Some(format!("kill -9 {named}"))
        } else {
            let proc = b.proc.as_ref().filter(|_| !b.paused)?;
            tracing::info!(broker = id, "SIGSTOP");
            proc.signal(libc::SIGSTOP);
            b.paused = true;
            Some(format!("stop {named}"))
        }
    }

    async fn heal(&mut self) -> anyhow::Result<()> {
        let exe = self.exe.clone();
        for (id, b) in &mut self.brokers {
            if b.paused {
                if let Some(p) = &b.proc {
                    p.signal(libc::SIGCONT);
                }
                b.paused = false;
            }
            if b.proc.is_none() {
                b.start(&exe, *id)
                    .await
                    .with_context(|| format!("restarting broker {id}"))?;
            }
        }
        Ok(())
    }

    async fn partitions(&self, topic: &str) -> Vec<PartitionView> {
        let Some(m) = self.metadata().await else {
            return Vec::new();
        };
        let mut out = partitions_of(&m);
        for p in out.iter_mut().filter(|p| p.topic == topic && p.leader >= 0) {
            p.high_watermark = self
                .high_watermark(topic, p.partition, p.leader)
                .await
                .unwrap_or(-1);
            p.log_end_offset = self
                .log_end(topic, p.partition, p.leader)
                .await
                .unwrap_or(-1);
        }
        out
    }

    async fn log_end(&self, topic: &str, partition: i32, broker: i32) -> Option<i64> {
        let b = self.brokers.get(&broker).filter(|b| b.proc.is_some())?;
        let batches = read_partition_dir(&b.dir.join(format!("{topic}-{partition}"))).ok()?;
        Some(batches.last().map_or(0, |l| l.last_offset + 1))
    }

    async fn read_replica(
        &self,
        topic: &str,
        partition: i32,
        broker: i32,
    ) -> anyhow::Result<ReplicaLog> {
        let b = self
            .brokers
            .get(&broker)
            .with_context(|| format!("there is no broker {broker}"))?;
        let batches = read_partition_dir(&b.dir.join(format!("{topic}-{partition}")))
            .with_context(|| format!("broker {broker}'s {topic}-{partition}"))?;
        Ok(ReplicaLog {
            broker,
            // Chaos topics never delete records: every replica's log starts at 0, so one
            // missing its head is divergent.
            log_start_offset: 0,
            batches,
        })
    }
}

/// Runs `config.rounds` rounds over processes of `config.weir_binary` (this executable by
/// default), calling `on_round` after each.
pub async fn run(
    config: &ChaosConfig,
    mut on_round: impl FnMut(&RoundReport),
) -> anyhow::Result<Summary> {
    anyhow::ensure!(
        (3..=5).contains(&config.brokers),
        "--brokers must be 3 to 5, not {}",
        config.brokers
    );
    let exe = match &config.weir_binary {
        Some(exe) => exe.clone(),
        None => std::env::current_exe().context("finding the weir binary")?,
    };
    let dir = run_dir(config);
    let mut cluster = ProcessCluster::start(&exe, &dir, config.brokers)
        .await
        .context("starting the chaos processes")?;
    let summary = run_rounds(&mut cluster, config, &dir, &mut on_round).await;
    cluster.stop();
    if summary.ok() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(summary)
}
