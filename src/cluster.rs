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
//! its logs in `D/broker-<i>/`, and the controller's state lives in `D/local-controller/`, so
//! a restart on the same data dir recovers every topic. The configuration (file, then `set`s)
//! applies to every broker.
//!
//! Until [replication] the controller keeps one replica per partition, so the cluster's
//! defaults for `default.replication.factor`, `min.insync.replicas` and
//! `offsets.topic.replication.factor` are 1 (the blueprint's 3/2/3, capped at N, come with
//! [replication]); a user's explicit setting is kept.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use anyhow::Context as _;
use tokio::sync::watch;

use crate::actors::broker::{Broker, BrokerShared, Shutdown};
use crate::actors::group::directory::broker_group_router;
use crate::actors::local_controller::{
    Activate, ControlledBroker, ControllerDefaults, ControllerLink, ControllerState,
    LocalController,
};
use crate::actors::metadata_cache::BrokerEndpoint;
use crate::config::{properties, BrokerConfig};
use crate::protocol::api::ApiContext;
use crate::protocol::listener;

/// Keys whose cluster default differs from Kafka's while there is no replication.
const SINGLE_REPLICA_DEFAULTS: &[(&str, &str)] = &[
    ("default.replication.factor", "1"),
    ("min.insync.replicas", "1"),
    ("offsets.topic.replication.factor", "1"),
];

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

/// A running broker of the cluster.
#[derive(Debug, Clone)]
pub struct RunningBroker {
    pub id: i32,
    pub addr: SocketAddr,
    pub broker: Addr<Broker>,
    pub shared: BrokerShared,
}

pub struct Cluster {
    brokers: Vec<RunningBroker>,
    controller: Addr<LocalController>,
    /// Threads the replicas and connections run on; stopped at shutdown.
    workers: Vec<Arbiter>,
    /// Turns true at shutdown: listeners stop accepting and connections close.
    stop: watch::Sender<bool>,
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

    /// `host:port,host:port,...`, what clients take as `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> String {
        self.brokers
            .iter()
            .map(|b| b.addr.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn controller(&self) -> &Addr<LocalController> {
        &self.controller
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A clean shutdown: stop accepting, close connections, close every log, write the
    /// checkpoints and the clean-shutdown markers, stop the worker threads.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let mut errors = Vec::new();
        for b in &self.brokers {
            match b.broker.send(Shutdown).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(format!("broker {}: {e}", b.id)),
                Err(e) => errors.push(format!("broker {}: {e}", b.id)),
            }
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

        let mut pairs: Vec<(String, String)> = SINGLE_REPLICA_DEFAULTS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if let Some(file) = &self.config_file {
            pairs.extend(properties::load_file(file)?);
        }
        pairs.extend(self.sets.iter().cloned());
        for key in [
            "broker.id",
            "listeners",
            "advertised.listeners",
            "log.dirs",
            "log.dir",
        ] {
            if pairs.iter().any(|(k, _)| k == key) {
                tracing::warn!(key, "ignored: `weir cluster` sets it for each broker");
            }
        }

        let state_path = data_dir.join("local-controller").join("state.json");
        let state = ControllerState::load_or_new(&state_path)?;
        let cluster_id = state.cluster_id.clone();

        let threads = self.worker_threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .max(2)
        });
        let workers: Vec<Arbiter> = (0..threads).map(|_| Arbiter::new()).collect();
        let handles: Vec<ArbiterHandle> = workers.iter().map(Arbiter::handle).collect();

        let mut opened = Vec::new();
        let mut groups = Vec::new();
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
            config.log_dirs = vec![data_dir.join(format!("broker-{id}")).display().to_string()];
            config.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
            let (broker, shared) = Broker::open(config.clone(), Some(&cluster_id), handles.clone())
                .with_context(|| format!("broker {id}"))?;
            let (router, directory) = broker_group_router(&config, &shared);
            let broker = broker.with_group_router(router.clone());
            groups.push((router, directory));
            opened.push((id, addr, socket, config, broker, shared));
        }

        let first_config = opened[0].3.clone();
        let mut controlled = Vec::new();
        let mut running = Vec::new();
        let mut pending_listeners = Vec::new();
        for (id, addr, socket, config, broker, shared) in opened {
            let broker = broker.start();
            controlled.push(ControlledBroker {
                endpoint: BrokerEndpoint {
                    id,
                    host: HOST.to_string(),
                    port: addr.port(),
                    rack: config.broker_rack.clone(),
                },
                addr: broker.clone(),
            });
            running.push(RunningBroker {
                id,
                addr,
                broker,
                shared,
            });
            pending_listeners.push((socket, config));
        }
        let defaults = ControllerDefaults {
            num_partitions: first_config.num_partitions,
            default_replication_factor: first_config.default_replication_factor,
            delete_topic_enable: first_config.delete_topic_enable,
            topic_defaults: first_config.topic_defaults(),
        };
        let controller_id = 1;
        let controller =
            LocalController::new(controller_id, state, Some(state_path), controlled, defaults)
                .start();
        controller
            .send(Activate)
            .await
            .context("the controller stopped")?
            .map_err(|e| anyhow::anyhow!("activating the controller: {e}"))?;

        let link = ControllerLink::local(controller_id, &controller);
        let (stop, stopped) = watch::channel(false);
        for ((b, (socket, config)), (router, directory)) in
            running.iter().zip(pending_listeners).zip(groups)
        {
            directory.set_controller(link.clone());
            let ctx = Arc::new(ApiContext {
                groups: router,
                broker_id: b.id,
                topic_defaults: Arc::new(config.topic_defaults()),
                config: Arc::new(config),
                metadata: b.shared.metadata.clone(),
                replicas: b.shared.replicas.clone(),
                broker: b.broker.clone(),
                controller: link.clone(),
                fetch_gate: Arc::new(tokio::sync::Semaphore::new(1)),
            });
            actix::spawn(listener::accept_loop(
                socket,
                ctx,
                handles.clone(),
                stopped.clone(),
            ));
        }
        tracing::info!(brokers = running.len(), data_dir = %data_dir.display(), "cluster ready");
        Ok(Cluster {
            brokers: running,
            controller,
            workers,
            stop,
            data_dir,
        })
    }
}
