//! An in-process cluster: N brokers, their listeners, and the controller, started inside the
//! current actix System. `weir cluster` runs one; tests and embedders use the same builder:
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! let cluster = weir::cluster::Cluster::builder()
//!     .brokers(3)
//!     .base_port(0) // free ports
//!     .data_dir("/tmp/weir-example")
//!     .set("num.partitions", "6")
//!     .start()
//!     .await?;
//! println!("bootstrap.servers={}", cluster.bootstrap_servers());
//! cluster.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! Broker ids are 1..N; broker i listens on 127.0.0.1:(P+i−1) (P = 0 picks free ports), keeps
//! its logs in `D/broker-<i>/`, and the embedded coordination service keeps the cluster's
//! facts (brokers, controller, topics, partition states, configs: Kafka's znode layout) in
//! `D/coordination/`, so a restart on the same data dir recovers every topic. With
//! `zookeeper.connect` set, the brokers use that service (a real ZooKeeper or a
//! `weir coordinator`) instead. Each broker is a [`BrokerNode`]: it registers, stands for
//! controller election, and serves clients once the elected controller has sent it the
//! cluster's metadata. The configuration (file, then `set`s) applies to every broker.
//!
//! The cluster's defaults are the safe ones the seed recommends, each capped at the number of
//! brokers: `default.replication.factor=3`, `min.insync.replicas=2`,
//! `offsets.topic.replication.factor=3`; a user's explicit setting is kept. Under the default
//! `min.insync.replicas`, a topic created with fewer replicas records its replica count as its
//! own (`min.insync.replicas.capped.by.replication.factor`), so that acks=all on a replication
//! factor 1 topic, which most client test suites create, is not refused forever.
//!
//! A running cluster takes faults ([`faults::Fault`]: crash, restart, pause, link cuts,
//! delays, drops, session expiry) and reports its state ([`status::ClusterStatus`]); `weir
//! cluster` reads both as commands on stdin.

pub mod console;
pub mod faults;
pub mod status;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::actors::broker::{Broker, BrokerShared};
use crate::actors::coordination::{CoordinationConfig, EmbeddedCoordination};
use crate::actors::group::GroupRouter;
use crate::broker_node::{BrokerNode, ControlledShutdownPolicy, NodeEnv, Seam};
use crate::config::{properties, BrokerConfig};
use crate::transport::peer::LocalTransport;
use crate::transport::LinkFaults;
use actix::prelude::*;
use anyhow::Context as _;

/// The safe defaults the seed recommends (Step 16: `acks=all`, `min.insync.replicas=2`,
/// replication factor 3), where `weir cluster` departs from Kafka's broker defaults; each is
/// capped at the number of brokers, so a 1-broker cluster still creates topics.
const SAFE_DEFAULTS: &[(&str, u16)] = &[
    ("default.replication.factor", 3),
    ("min.insync.replicas", 2),
    ("offsets.topic.replication.factor", 3),
];

/// How long [`Cluster::shutdown`] waits for each broker's controlled shutdown.
const CONTROLLED_SHUTDOWN_STEP: std::time::Duration = std::time::Duration::from_secs(5);

/// The host every in-process broker listens on.
const HOST: &str = "127.0.0.1";

#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    brokers: u16,
    base_port: u16,
    data_dir: Option<PathBuf>,
    config_file: Option<PathBuf>,
    sets: Vec<(String, String)>,
    worker_threads: Option<usize>,
}

/// Whether a broker of the cluster runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerState {
    Up,
    Paused,
    /// Crashed; its files stay for a restart.
    Down,
}

/// A broker of the cluster. After a crash its actors are gone (`state` is `Down`) until a
/// restart replaces them.
#[derive(Clone)]
pub struct RunningBroker {
    pub id: i32,
    pub addr: SocketAddr,
    pub broker: Addr<Broker>,
    pub shared: BrokerShared,
    pub groups: GroupRouter,
    pub node: Arc<BrokerNode>,
    pub state: BrokerState,
    /// The configuration it was started with (a restart uses it again).
    pub config: BrokerConfig,
}

pub struct Cluster {
    brokers: Vec<RunningBroker>,
    /// The in-process coordination service (absent with `zookeeper.connect`).
    embedded: Option<EmbeddedCoordination>,
    /// The seam between the brokers, where faults are injected.
    transport: Arc<LocalTransport>,
    /// Threads the replicas and connections run on; stopped at shutdown.
    workers: Vec<Arbiter>,
    /// What a restarted broker starts with.
    env: NodeEnv,
    data_dir: PathBuf,
}

impl Cluster {
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder {
            brokers: 3,
            base_port: 0,
            data_dir: None,
            config_file: None,
            sets: Vec::new(),
            worker_threads: None,
        }
    }

    pub fn brokers(&self) -> &[RunningBroker] {
        &self.brokers
    }

    /// The broker with this id.
    pub fn broker(&self, id: i32) -> Option<&RunningBroker> {
        self.brokers.iter().find(|b| b.id == id)
    }

    /// `host:port,host:port,...`, what clients take as `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> String {
        self.brokers
            .iter()
            .map(|b| b.addr.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The in-process coordination service, if the cluster runs one.
    pub fn coordination(&self) -> Option<&EmbeddedCoordination> {
        self.embedded.as_ref()
    }

    /// The inter-broker seam (link faults live on it).
    pub fn transport(&self) -> &Arc<LocalTransport> {
        &self.transport
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A clean shutdown, broker by broker as a rolling stop of Kafka brokers: each one's
    /// controlled shutdown moves its leaderships to the brokers still running (the
    /// controller's broker goes last, so the controller does not move meanwhile), then it
    /// closes every log, writes the checkpoints and the clean-shutdown markers, and closes its
    /// coordination session. Faults are healed first; then the worker threads stop.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.transport.faults().heal_all();
        let mut errors = Vec::new();
        let mut order: Vec<&RunningBroker> = self
            .brokers
            .iter()
            .filter(|b| b.state != BrokerState::Down)
            .collect();
        let controller = order
            .first()
            .map(|b| b.shared.metadata.snapshot().controller_id);
        order.sort_by_key(|b| (Some(b.id) == controller, b.id));
        let last = order.len().saturating_sub(1);
        for (i, b) in order.into_iter().enumerate() {
            if b.state == BrokerState::Paused {
                let _ = b.node.resume().await;
            }
            // One bounded attempt: a stopping cluster does not wait out retries (a crashed
            // controller, say); the broker then stops uncontrolled, as Kafka's would. The
            // last broker has nobody to hand its leaderships to: it just stops.
            let policy = ControlledShutdownPolicy::from_config(&b.config);
            if policy.enabled && i < last {
                let attempt = b.node.controlled_shutdown(ControlledShutdownPolicy {
                    attempts: 1,
                    ..policy
                });
                match tokio::time::timeout(CONTROLLED_SHUTDOWN_STEP, attempt).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(broker = b.id, error = %e, "uncontrolled stop"),
                    Err(_) => tracing::warn!(broker = b.id, "the controller did not answer the controlled shutdown in time; uncontrolled stop"),
                }
            }
            let uncontrolled = ControlledShutdownPolicy {
                enabled: false,
                ..policy
            };
            if let Err(e) = b.node.shutdown(uncontrolled).await {
                errors.push(format!("broker {}: {e}", b.id));
            }
        }
        if let Some(service) = &self.embedded {
            service.shutdown().await;
        }
        for worker in &self.workers {
            worker.stop();
        }
        let workers = self.workers;
        let _ = tokio::task::spawn_blocking(move || {
            for worker in workers {
                let _ = worker.join();
            }
        })
        .await;
        if errors.is_empty() {
            Ok(())
        } else {
            Err(anyhow::anyhow!("unclean shutdown: {}", errors.join("; ")))
        }
    }
}

static NEXT_DEFAULT_DIR: AtomicUsize = AtomicUsize::new(0);

impl ClusterBuilder {
    /// Number of brokers (ids 1..N).
    pub fn brokers(mut self, n: u16) -> Self {
        self.brokers = n;
        self
    }

    /// Broker i listens on `base_port + i - 1`; 0 picks free ports.
    pub fn base_port(mut self, port: u16) -> Self {
        self.base_port = port;
        self
    }

    /// Where the brokers' log dirs and the controller's state live. Without it, a fresh
    /// directory under the system's temp dir.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// A Kafka `.properties` file applied to every broker (before the `set`s).
    pub fn config_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.config_file = Some(file.into());
        self
    }

    /// One `key=value` applied to every broker.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.sets.push((key.into(), value.into()));
        self
    }

    /// Threads for replicas and connections (default: the number of cores, at least 2).
    pub fn worker_threads(mut self, n: usize) -> Self {
        self.worker_threads = Some(n.max(1));
        self
    }

    /// Starts the cluster inside the running actix System; returns once every broker has
    /// its metadata and is accepting clients.
    pub async fn start(self) -> anyhow::Result<Cluster> {
        anyhow::ensure!(self.brokers >= 1, "a cluster needs at least one broker");
        let data_dir = self.data_dir.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!(
                "weir-cluster-{}-{}",
                std::process::id(),
                NEXT_DEFAULT_DIR.fetch_add(1, Ordering::Relaxed)
            ))
        });
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("creating data dir {}", data_dir.display()))?;

        let mut pairs: Vec<(String, String)> = SAFE_DEFAULTS
            .iter()
            .map(|(k, v)| (k.to_string(), (*v).min(self.brokers).to_string()))
            .collect();
        if let Some(file) = &self.config_file {
            pairs.extend(properties::load_file(file)?);
        }
        pairs.extend(self.sets.iter().cloned());
        // The safe default applies: a topic with fewer replicas than it records its replica
        // count, so acks=all stays possible on it (a user's own value keeps Kafka's meaning).
        if !pairs.iter().skip(SAFE_DEFAULTS.len()).any(|(k, _)| {
            k == "min.insync.replicas" || k == "min.insync.replicas.capped.by.replication.factor"
        }) {
            pairs.push((
                "min.insync.replicas.capped.by.replication.factor".to_string(),
                "true".to_string(),
            ));
        }
        for key in [
            "broker.id",
            "listeners",
            "advertised.listeners",
            "inter.broker.listener.name",
            "log.dirs",
            "log.dir",
        ] {
            if pairs.iter().any(|(k, _)| k == key) {
                tracing::warn!(key, "ignored: `weir cluster` sets it for each broker");
            }
        }

        let threads = self.worker_threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .max(2)
        });
        let workers: Vec<Arbiter> = (0..threads).map(|_| Arbiter::new()).collect();
        let handles: Vec<ArbiterHandle> = workers.iter().map(Arbiter::handle).collect();

        let mut configs = Vec::new();
        let mut warned = false;
        for i in 0..self.brokers as i32 {
            let id = i + 1;
            let port = if self.base_port == 0 {
                0
            } else {
                self.base_port
                    .checked_add(i as u16)
                    .context("base port + broker count exceeds 65535")?
            };
            let socket = std::net::TcpListener::bind((HOST, port))
                .with_context(|| format!("broker {id}: binding {HOST}:{port}"))?;
            let addr = socket.local_addr()?;
            let mut config = BrokerConfig::default();
            let warnings = config
                .apply(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if !warned {
                for w in warnings {
                    tracing::warn!("{w}");
                }
                warned = true;
            }
            config.broker_id = id;
            config.listeners = vec![format!("PLAINTEXT://{HOST}:{}", addr.port())];
            config.advertised_listeners = Vec::new();
            config.inter_broker_listener_name = None;
            config.log_dirs = vec![data_dir.join(format!("broker-{id}")).display().to_string()];
            config.metrics_port = config.metrics_port.map(|p| {
                if p == 0 {
                    0
                } else {
                    p.saturating_add(i as u16)
                }
            });
            config.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
            configs.push((config, socket));
        }

        // The coordination service: embedded (persisted under D/coordination/) unless
        // zookeeper.connect names one.
        let embedded = match configs[0].0.zookeeper_connect.as_deref() {
            Some(c) if !c.trim().is_empty() => None,
            _ => {
                // ZooKeeper clamps session timeouts to at least two ticks: a tick short
                // enough for the brokers' `zookeeper.session.timeout.ms` keeps it honoured.
                let session_timeout = configs[0].0.zookeeper_session_timeout_ms.max(2);
                let tick = std::time::Duration::from_millis((session_timeout / 2).min(2000));
                let service = EmbeddedCoordination::start(
                    CoordinationConfig::persistent(data_dir.join("coordination"))
                        .with_tick_time(tick),
                )
                .await
                .context("starting the embedded coordination service")?;
                // Every session the service restored belonged to this cluster's previous run,
                // whose process is gone: expire them now rather than after their timeouts, so
                // the brokers can register again at once.
                for session in service.sessions().await {
                    service.expire_session(session.id).await;
                }
                Some(service)
            }
        };
        let transport = LocalTransport::new(LinkFaults::new());
        let env = NodeEnv {
            embedded: embedded.clone(),
            seam: Seam::Local(transport.clone()),
            workers: handles.clone(),
        };
        let started_configs: Vec<BrokerConfig> = configs.iter().map(|(c, _)| c.clone()).collect();
        let nodes = futures::future::join_all(
            configs
                .into_iter()
                .map(|(config, socket)| BrokerNode::start(config, socket, &env)),
        )
        .await;
        let mut running = Vec::new();
        for (node, config) in nodes.into_iter().zip(started_configs) {
            running.push(RunningBroker::new(node?, config));
        }
        running.sort_by_key(|b| b.id);
        tracing::info!(brokers = running.len(), data_dir = %data_dir.display(), "cluster ready");
        Ok(Cluster {
            brokers: running,
            embedded,
            transport,
            workers,
            env,
            data_dir,
        })
    }
}
