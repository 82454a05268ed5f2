//! One broker as a whole, started the way ZooKeeper-mode Kafka starts one (the seed's Case 1
//! and Case 2): open a coordination session, make sure Kafka's top-level znodes and the
//! cluster id exist, open the log dirs, start the broker and controller actors, register on
//! the inter-broker seam, and open the client listener only once the controller's first
//! UpdateMetadata has arrived.
//!
//! `weir cluster` starts N of these in one process (embedded coordination, in-process
//! transport); `weir broker` starts one (remote coordination or ZooKeeper).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use anyhow::Context as _;
use tokio::sync::watch;

use crate::actors::broker::{self, Broker, BrokerShared};
use crate::actors::controller::actor::Connector;
use crate::actors::controller::actor::{CurrentSession, SessionFault};
use crate::actors::controller::endpoint::BrokerEndpoint;
use crate::actors::controller::forwarding::ControllerForwarder;
use crate::actors::controller::producer_ids::ZkProducerIdAllocator;
use crate::actors::controller::zk_client::KafkaZkClient;
use crate::actors::controller::{Controller, ControllerDeps};
use crate::actors::coordination::{self, EmbeddedCoordination};
use crate::actors::group::directory::broker_group_router;
use crate::actors::local_controller::ProducerIdManager;
use crate::config::BrokerConfig;
use crate::protocol::api::ApiContext;
use crate::protocol::listener::{self, NodeRun};
use crate::storage::LogManager;
use crate::transport::faults::Node;
use crate::transport::peer::{LocalTransport, Peers};
use crate::znodes;

/// How long a starting broker waits for the controller's first metadata.
const METADATA_WAIT: Duration = Duration::from_secs(60);

/// What a node needs from its surroundings.
pub struct NodeEnv {
    /// The in-process coordination service when `zookeeper.connect` is unset.
    pub embedded: Option<EmbeddedCoordination>,
    pub transport: Arc<LocalTransport>,
    /// Threads replicas and connections run on.
    pub workers: Vec<ArbiterHandle>,
}

/// A running broker node.
pub struct BrokerNode {
    pub id: i32,
    pub addr: SocketAddr,
    pub broker: Addr<Broker>,
    pub controller: Addr<Controller>,
    pub shared: BrokerShared,
    /// The broker epoch of the current registration (czxid of `/brokers/ids/<id>`).
    pub broker_epoch: Arc<AtomicI64>,
    /// Serving, paused or stopped: the listener and every client connection watch it.
    run: watch::Sender<NodeRun>,
    /// The seam this broker is registered on (a crash takes it off).
    transport: Arc<LocalTransport>,
}

impl BrokerNode {
    /// Starts one broker on an already bound client socket; returns once it serves clients.
    pub async fn start(
        mut config: BrokerConfig,
        socket: std::net::TcpListener,
        env: &NodeEnv,
    ) -> anyhow::Result<BrokerNode> {
        let addr = socket.local_addr()?;
        let session_timeout = Duration::from_millis(config.zookeeper_session_timeout_ms);
        let zk_connect = config.zookeeper_connect.clone();
        let embedded = env.embedded.clone();
        let connector: Connector =
            Arc::new(move || {
                let (zk_connect, embedded) = (zk_connect.clone(), embedded.clone());
                Box::pin(async move {
                    Ok(coordination::connect(
                        zk_connect.as_deref(),
                        session_timeout,
                        embedded.as_ref(),
                    )
                    .await?)
                })
            });
        ensure_chroot(config.zookeeper_connect.as_deref(), session_timeout).await?;
        let (client, events) = connector()
            .await
            .with_context(|| format!("broker {}: connecting to coordination", config.broker_id))?;
        let zk = KafkaZkClient::new(client.clone());
        zk.create_top_level_paths()
            .await
            .context("creating Kafka's top-level znodes")?;
        let cluster_id = zk
            .get_or_create_cluster_id(&znodes::generate_cluster_id())
            .await?;
        if config.broker_id < 0 {
            // Kafka's broker.id=-1: the id this log dir already has, else a generated one
            // above reserved.broker.max.id (kept in meta.properties from then on).
            let stored = LogManager::read_broker_metadata(&config.log_dirs())
                .map_err(|e| anyhow::anyhow!("reading meta.properties: {e}"))?;
            config.broker_id = match stored {
                Some(meta) if meta.broker_id >= 0 => meta.broker_id,
                _ => zk.generate_broker_id(config.reserved_broker_max_id).await?,
            };
            tracing::info!(broker = config.broker_id, "using broker id");
        }
        let id = config.broker_id;

        let broker_epoch = Arc::new(AtomicI64::new(-1));
        let peers = Peers::new(
            id,
            crate::observe::seam::traced(env.transport.clone()),
            Duration::from_millis(config.controller_socket_timeout_ms.max(1) as u64),
        );
        let (broker, shared) = Broker::open(config.clone(), Some(&cluster_id), env.workers.clone())
            .with_context(|| format!("broker {id}"))?;
        let (router, directory) = broker_group_router(&config, &shared);
        let broker = broker
            .with_group_router(router.clone())
            .with_replication(peers.clone(), broker_epoch.clone())
            .start();

        let advertised: Vec<(String, String, u16)> = config
            .parsed_advertised_listeners()
            .into_iter()
            .map(|l| {
                let host = if l.host.is_empty() {
                    addr.ip().to_string()
                } else {
                    l.host
                };
                let port = if l.port == 0 { addr.port() } else { l.port };
                (l.name, host, port)
            })
            .collect();
        let protocol_map: BTreeMap<String, String> = config
            .listener_security_protocol_map
            .iter()
            .filter_map(|e| {
                e.split_once(':')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
            })
            .collect();
        let registration =
            znodes::BrokerRegistration::new(advertised, protocol_map, config.broker_rack.clone());
        let deps = ControllerDeps {
            broker_id: id,
            config: Arc::new(config.clone()),
            peers: peers.clone(),
            registration,
            connector,
            on_registered: {
                let epoch = broker_epoch.clone();
                Arc::new(move |e| epoch.store(e, Ordering::SeqCst))
            },
        };
        // The endpoint must exist before the controller (maybe this broker) sends to it.
        let controller = Controller::create(|_| Controller::new(deps, client, events));
        env.transport.register(
            id,
            Arc::new(BrokerEndpoint {
                broker_id: id,
                broker: broker.clone(),
                controller: controller.clone(),
                replicas: shared.replicas.clone(),
            }),
        );

        // Case 2: serve clients only once the controller told us about the cluster.
        let deadline = tokio::time::Instant::now() + METADATA_WAIT;
        while !shared.metadata.snapshot().is_initialized() {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "broker {id}: no metadata from a controller within {METADATA_WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        let forwarder = ControllerForwarder::new(shared.metadata.clone(), peers).start();
        let allocator = ZkProducerIdAllocator {
            controller: controller.clone(),
        }
        .start();
        let link =
            ControllerForwarder::link(&forwarder, ProducerIdManager::new(allocator.recipient()));
        directory.set_controller(link.clone());
        let ctx = Arc::new(ApiContext {
            broker_id: id,
            topic_defaults: Arc::new(config.topic_defaults()),
            config: Arc::new(config),
            metadata: shared.metadata.clone(),
            replicas: shared.replicas.clone(),
            broker: broker.clone(),
            controller: link,
            groups: router,
            fetch_gate: Arc::new(tokio::sync::Semaphore::new(1)),
        });
        let (run, running) = watch::channel(NodeRun::Serving);
        crate::metrics::serve(&ctx, run.subscribe())?;
        actix::spawn(listener::accept_loop(
            socket,
            ctx,
            env.workers.clone(),
            running,
        ));
        // Only the controller actor holds the session from here on, so stopping it (a
        // crash) abandons the session.
        drop(zk);
        Ok(BrokerNode {
            id,
            addr,
            broker,
            controller,
            shared,
            broker_epoch,
            run,
            transport: env.transport.clone(),
        })
    }

    /// Stops accepting clients and closes their connections.
    pub fn stop_listener(&self) {
        let _ = self.run.send(NodeRun::Stopped);
    }

    /// Crashes the broker (fault injection): clients are cut off, peers stop reaching it,
    /// its coordination session is abandoned (its ephemerals vanish when it expires), its
    /// actors stop without flushing or checkpointing. Its files stay for a restart.
    pub async fn crash(&self) {
        tracing::warn!(broker = self.id, "crashing broker (fault injection)");
        self.stop_listener();
        self.transport.unregister(self.id);
        let _ = self.controller.send(SessionFault::Crash).await;
        let _ = self.broker.send(broker::Crash).await;
    }

    /// Pauses the broker as a stopped process (fault injection): client requests, messages
    /// to and from its peers and its coordination heartbeats all wait until [`Self::resume`]
    /// (so a long pause expires its session, as for a real process).
    pub async fn pause(&self) -> Result<(), String> {
        let _ = self.run.send(NodeRun::Paused);
        self.transport.faults().pause(Node::Broker(self.id));
        self.session_fault(SessionFault::Cut).await
    }

    pub async fn resume(&self) -> Result<(), String> {
        let _ = self.run.send(NodeRun::Serving);
        self.transport.faults().resume(Node::Broker(self.id));
        self.session_fault(SessionFault::Heal).await
    }

    /// Cuts or heals the link between this broker and the coordination service.
    pub async fn session_fault(&self, fault: SessionFault) -> Result<(), String> {
        self.controller
            .send(fault)
            .await
            .map_err(|_| format!("broker {} is not running", self.id))?
    }

    /// The id of the broker's current coordination session.
    pub async fn session_id(&self) -> Option<i64> {
        self.controller.send(CurrentSession).await.ok()
    }
}

/// Kafka creates its chroot (`host:port/chroot`) when it is missing: connect once without it
/// and make the path.
async fn ensure_chroot(
    zookeeper_connect: Option<&str>,
    session_timeout: Duration,
) -> anyhow::Result<()> {
    let Some(connect) = zookeeper_connect.map(str::trim).filter(|c| !c.is_empty()) else {
        return Ok(());
    };
    let (scheme, rest) = match connect.strip_prefix("weir://") {
        Some(rest) => ("weir://", rest),
        None => ("", connect),
    };
    let Some(slash) = rest.find('/') else {
        return Ok(());
    };
    let (hosts, chroot) = rest.split_at(slash);
    if chroot == "/" {
        return Ok(());
    }
    let root = format!("{scheme}{hosts}");
    let (client, _events) = coordination::connect(Some(&root), session_timeout, None)
        .await
        .with_context(|| format!("connecting to {root} to create the chroot {chroot}"))?;
    let made = client.ensure_path(chroot).await;
    let _ = client.close().await;
    made.with_context(|| format!("creating the chroot {chroot}"))?;
    Ok(())
}
