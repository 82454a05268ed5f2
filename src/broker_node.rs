//! One broker as a whole, started the way ZooKeeper-mode Kafka starts one (the seed's Case 1
//! and Case 2): open a coordination session, make sure Kafka's top-level znodes and the
//! cluster id exist, open the log dirs, start the broker and controller actors, register on
//! the inter-broker seam, and open the client listener only once the controller's first
//! UpdateMetadata has arrived.
//!
//! `weir cluster` starts N of these in one process (embedded coordination, in-process
//! transport); `weir broker` starts one (remote coordination or ZooKeeper) that reaches the
//! others over TCP ([`crate::transport::tcp`]): nothing but the seam differs. Over TCP a
//! broker finds its peers' inter-broker listeners in the controller's metadata (every
//! listener of every live broker), falling back to their `/brokers/ids` registrations, and
//! admits a peer's connection only when the peer is registered with the broker epoch it
//! claims. When the inter-broker listener is also the client listener (Kafka's default, one
//! `PLAINTEXT` listener), each connection is routed by its first bytes: peers open with
//! `WEIR`, which no Kafka request can start with.
//!
//! Stopping is Kafka's controlled shutdown ([`BrokerNode::shutdown`]): the controller moves
//! every leadership off the broker first, so clients see only retriable errors, then the
//! broker closes its logs cleanly and its coordination session, so the cluster learns at once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::prelude::*;
use anyhow::Context as _;
use futures::future::BoxFuture;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::actors::broker::{self, Broker, BrokerShared};
use crate::actors::controller::actor::Connector;
use crate::actors::controller::actor::{
    CloseSession, CurrentSession, NotifyLogDirFailure, SessionClient, SessionFault,
};
use crate::actors::controller::endpoint::BrokerEndpoint;
use crate::actors::controller::forwarding::ControllerForwarder;
use crate::actors::controller::messages::ControlledShutdown;
use crate::actors::controller::producer_ids::ProducerIdManager;
use crate::actors::controller::producer_ids::ZkProducerIdAllocator;
use crate::actors::controller::zk_client::KafkaZkClient;
use crate::actors::controller::{Controller, ControllerDeps};
use crate::actors::coordination::{self, EmbeddedCoordination};
use crate::actors::group::directory::broker_group_router;
use crate::actors::group::GroupRouter;
use crate::actors::log_cleaner::LogCleaner;
use crate::actors::metadata_cache::{host_port, MetadataCache};
use crate::config::BrokerConfig;
use crate::protocol::api::ApiContext;
use crate::protocol::connection::{self, ConnectionLimits};
use crate::protocol::connection_quotas::{ConnectionQuotas, ListenerKind};
use crate::protocol::listener::{self, Admission, NodeRun};
use crate::storage::LogManager;
use crate::transport::faults::Node;
use crate::transport::peer::{LocalTransport, PeerHandler, PeerTransport, Peers};
use crate::transport::server::{PeerAuthority, PeerServer, ServerLimits};
use crate::transport::tcp::{PeerDirectory, TcpSettings, TcpTransport};
use crate::transport::wire::MAGIC;
use crate::znodes;

/// How long a starting broker waits for the controller's first metadata.
const METADATA_WAIT: Duration = Duration::from_secs(60);

/// What a node needs from its surroundings.
pub struct NodeEnv {
    /// The in-process coordination service when `zookeeper.connect` is unset.
    pub embedded: Option<EmbeddedCoordination>,
    /// How the node reaches the other brokers.
    pub seam: Seam,
    /// Threads replicas and connections run on.
    pub workers: Vec<ArbiterHandle>,
}

/// The inter-broker seam a node joins.
#[derive(Clone)]
pub enum Seam {
    /// Every broker in this process registers on one in-process seam (where the in-process
    /// cluster injects its link faults).
    Local(Arc<LocalTransport>),
    /// Brokers in other processes, over TCP on the inter-broker listener.
    Tcp,
}

/// The sockets a node serves, bound by the caller.
pub struct NodeSockets {
    /// The client listener; also the inter-broker one unless `inter_broker` is given.
    pub client: std::net::TcpListener,
    /// A separate inter-broker listener (`inter.broker.listener.name` naming another
    /// listener than the client one): it serves only peers.
    pub inter_broker: Option<std::net::TcpListener>,
}

/// This node's end of the seam.
enum NodeSeam {
    Local(Arc<LocalTransport>),
    Tcp {
        transport: Arc<TcpTransport>,
        server: OnceLock<Arc<PeerServer>>,
    },
}

impl NodeSeam {
    fn transport(&self) -> Arc<dyn PeerTransport> {
        match self {
            NodeSeam::Local(t) => t.clone(),
            NodeSeam::Tcp { transport, .. } => transport.clone(),
        }
    }

    /// Peers stop reaching this broker, and it stops reaching them.
    fn leave(&self, id: i32) {
        match self {
            NodeSeam::Local(t) => t.unregister(id),
            NodeSeam::Tcp { transport, server } => {
                transport.close();
                if let Some(server) = server.get() {
                    server.stop();
                }
            }
        }
    }
}

/// How [`BrokerNode::shutdown`] asks the controller to move leadership away first.
#[derive(Debug, Clone, Copy)]
pub struct ControlledShutdownPolicy {
    /// `controlled.shutdown.enable`.
    pub enabled: bool,
    /// `controlled.shutdown.max.retries`: attempts before giving up.
    pub attempts: u32,
    /// `controlled.shutdown.retry.backoff.ms`.
    pub backoff: Duration,
}

impl ControlledShutdownPolicy {
    pub fn from_config(config: &BrokerConfig) -> Self {
        Self {
            enabled: config.controlled_shutdown_enable,
            attempts: config.controlled_shutdown_max_retries.max(1) as u32,
            backoff: Duration::from_millis(
                config.controlled_shutdown_retry_backoff_ms.max(0) as u64
            ),
        }
    }
}

/// A running broker node.
pub struct BrokerNode {
    pub id: i32,
    pub addr: SocketAddr,
    pub broker: Addr<Broker>,
    pub controller: Addr<Controller>,
    pub shared: BrokerShared,
    /// The group coordinators this broker runs (status pages read groups through it).
    pub groups: GroupRouter,
    /// The broker epoch of the current registration (czxid of `/brokers/ids/<id>`).
    pub broker_epoch: Arc<AtomicI64>,
    /// Serving, paused or stopped: the listener and every client connection watch it.
    run: watch::Sender<NodeRun>,
    /// The seam this broker is registered on (a crash takes it off).
    seam: NodeSeam,
    /// Requests to the controller (controlled shutdown).
    peers: Peers,
    /// The client requests read and not yet handled (its gauges are in the metrics too).
    pub request_queue: Arc<crate::protocol::request_queue::RequestQueue>,
}

impl BrokerNode {
    /// Starts one broker on an already bound client socket; returns once it serves clients.
    pub async fn start(
        config: BrokerConfig,
        socket: std::net::TcpListener,
        env: &NodeEnv,
    ) -> anyhow::Result<BrokerNode> {
        Self::start_on(
            config,
            NodeSockets {
                client: socket,
                inter_broker: None,
            },
            env,
        )
        .await
    }

    /// Starts one broker on already bound sockets; returns once it serves clients.
    pub async fn start_on(
        mut config: BrokerConfig,
        sockets: NodeSockets,
        env: &NodeEnv,
    ) -> anyhow::Result<BrokerNode> {
        let addr = sockets.client.local_addr()?;
        let inter_addr = match &sockets.inter_broker {
            Some(s) => Some(s.local_addr()?),
            None => None,
        };
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
        let (broker, shared) = Broker::open(config.clone(), Some(&cluster_id), env.workers.clone())
            .with_context(|| format!("broker {id}"))?;
        // The controller actor owns the coordination session; the TCP seam reads
        // registrations through it once it exists.
        let controller_cell: Arc<OnceLock<Addr<Controller>>> = Arc::new(OnceLock::new());
        let registry = Arc::new(Registry {
            metadata: shared.metadata.clone(),
            controller: controller_cell.clone(),
            listener: config.inter_broker_listener(),
        });
        let seam = match &env.seam {
            Seam::Local(transport) => NodeSeam::Local(transport.clone()),
            Seam::Tcp => NodeSeam::Tcp {
                transport: TcpTransport::new(
                    id,
                    broker_epoch.clone(),
                    registry.clone(),
                    TcpSettings::from_config(&config),
                ),
                server: OnceLock::new(),
            },
        };
        let peers = Peers::new(
            id,
            crate::observe::seam::traced(seam.transport()),
            Duration::from_millis(config.controller_socket_timeout_ms.max(1) as u64),
        );
        let (router, directory) = broker_group_router(&config, &shared);
        let log_dir_events = controller_cell.clone();
        let broker = broker
            .with_group_router(router.clone())
            .with_replication(peers.clone(), broker_epoch.clone())
            .with_log_dir_offline_listener(Arc::new(move |_dir| {
                if let Some(controller) = log_dir_events.get() {
                    controller.do_send(NotifyLogDirFailure);
                }
            }))
            .start();

        let advertised: Vec<(String, String, u16)> = config
            .parsed_advertised_listeners()
            .into_iter()
            .map(|l| {
                // A listener bound to port 0 (or no host) advertises what its socket got.
                let bound = match inter_addr {
                    Some(inter) if l.name == config.inter_broker_listener() => inter,
                    _ => addr,
                };
                let host = advertised_host(l.host, bound);
                let port = if l.port == 0 { bound.port() } else { l.port };
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
        let _ = controller_cell.set(controller.clone());
        let endpoint: Arc<dyn PeerHandler> = Arc::new(BrokerEndpoint {
            broker_id: id,
            broker: broker.clone(),
            controller: controller.clone(),
            replicas: shared.replicas.clone(),
        });
        let (run, running) = watch::channel(NodeRun::Serving);
        // Kafka clients of a listener shared with peers wait here until the broker serves.
        let (serving_tx, serving) = watch::channel::<Option<Arc<ApiContext>>>(None);
        let mut client_socket = Some(sockets.client);
        // One count of connections for the whole broker, whichever listener they came on.
        let quotas = ConnectionQuotas::from_config(&config);
        match &seam {
            NodeSeam::Local(transport) => transport.register(id, endpoint),
            NodeSeam::Tcp { transport, server } => {
                transport.register_local(endpoint.clone());
                let peer_server =
                    PeerServer::new(id, endpoint, registry, ServerLimits::from_config(&config));
                let _ = server.set(peer_server.clone());
                match sockets.inter_broker {
                    Some(socket) => {
                        let admission = Admission {
                            quotas: quotas.clone(),
                            kind: ListenerKind::InterBroker,
                        };
                        actix::spawn(listener::accept_with(
                            socket,
                            admission,
                            env.workers.clone(),
                            running.clone(),
                            move |stream, _| peer_server.clone().serve(stream),
                        ));
                    }
                    None => {
                        let limits = ConnectionLimits::from_config(&config);
                        let socket = client_socket.take().expect("the client socket");
                        // Shared by clients and peers: counted as a client listener (stricter
                        // than Kafka, which exempts the inter-broker listener).
                        let admission = Admission {
                            quotas: quotas.clone(),
                            kind: ListenerKind::Client,
                        };
                        actix::spawn(listener::accept_with(
                            socket,
                            admission,
                            env.workers.clone(),
                            running.clone(),
                            move |stream, stop| {
                                route(stream, peer_server.clone(), serving.clone(), limits, stop)
                            },
                        ));
                    }
                }
            }
        }

        // Case 2: serve clients only once the controller told us about the cluster.
        let deadline = tokio::time::Instant::now() + METADATA_WAIT;
        while !shared.metadata.snapshot().is_initialized() {
            if tokio::time::Instant::now() >= deadline {
                abandon(id, &run, &seam, &controller, &broker).await;
                anyhow::bail!(
                    "broker {id}: no metadata from a controller within {METADATA_WAIT:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        let forwarder_peers = peers.clone();
        let forwarder = ControllerForwarder::new(shared.metadata.clone(), peers).start();
        let allocator = ZkProducerIdAllocator {
            controller: controller.clone(),
        }
        .start();
        let link =
            ControllerForwarder::link(&forwarder, ProducerIdManager::new(allocator.recipient()));
        directory.set_controller(link.clone());
        let request_queue = crate::protocol::request_queue::RequestQueue::from_config(&config);
        let ctx = Arc::new(ApiContext {
            broker_id: id,
            topic_defaults: Arc::new(config.topic_defaults()),
            config: Arc::new(config),
            metadata: shared.metadata.clone(),
            replicas: shared.replicas.clone(),
            broker: broker.clone(),
            controller: link,
            groups: router.clone(),
            fetch_gate: Arc::new(tokio::sync::Semaphore::new(1)),
            request_queue: request_queue.clone(),
            client_host: Arc::from(crate::protocol::api::LOCAL_CLIENT_HOST),
        });
        if let Err(e) = crate::metrics::serve(&ctx, run.subscribe()) {
            abandon(id, &run, &seam, &controller, &broker).await;
            return Err(e);
        }
        // [compaction] The log cleaner of this broker's compacted logs; stops with the node.
        let mut until_stopped = run.subscribe();
        LogCleaner::start_for_broker(&ctx.config, shared.replicas.clone(), async move {
            let _ = until_stopped.wait_for(|r| *r == NodeRun::Stopped).await;
        });
        match client_socket {
            Some(socket) => {
                actix::spawn(listener::accept_loop(
                    socket,
                    ctx,
                    quotas,
                    env.workers.clone(),
                    running,
                ));
            }
            None => {
                let _ = serving_tx.send(Some(ctx));
            }
        }
        // Only the controller actor holds the session from here on, so stopping it (a
        // crash) abandons the session.
        drop(zk);
        Ok(BrokerNode {
            id,
            addr,
            broker,
            controller,
            shared,
            groups: router,
            broker_epoch,
            run,
            seam,
            peers: forwarder_peers,
            request_queue,
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
        abandon(
            self.id,
            &self.run,
            &self.seam,
            &self.controller,
            &self.broker,
        )
        .await;
    }

    /// Pauses the broker as a stopped process (fault injection): client requests, messages
    /// to and from its peers and its coordination heartbeats all wait until [`Self::resume`]
    /// (so a long pause expires its session, as for a real process).
    pub async fn pause(&self) -> Result<(), String> {
        let NodeSeam::Local(transport) = &self.seam else {
            return Err("only brokers of an in-process cluster can be paused".into());
        };
        let _ = self.run.send(NodeRun::Paused);
        transport.faults().pause(Node::Broker(self.id));
        self.session_fault(SessionFault::Cut).await
    }

    pub async fn resume(&self) -> Result<(), String> {
        let NodeSeam::Local(transport) = &self.seam else {
            return Err("only brokers of an in-process cluster can be paused".into());
        };
        let _ = self.run.send(NodeRun::Serving);
        transport.faults().resume(Node::Broker(self.id));
        self.session_fault(SessionFault::Heal).await
    }

    /// Kafka's controlled shutdown, then a clean stop: the controller moves every leadership
    /// off this broker (so clients see only retriable errors), the client listener closes,
    /// the logs close cleanly with their checkpoints, the coordination session closes (so the
    /// cluster reacts at once instead of after the session timeout), and the seam is left.
    pub async fn shutdown(&self, policy: ControlledShutdownPolicy) -> Result<(), String> {
        if policy.enabled {
            if let Err(e) = self.controlled_shutdown(policy).await {
                tracing::warn!(broker = self.id, error = %e, "proceeding with an uncontrolled shutdown");
            }
        }
        self.stop_listener();
        let stopped = match self.broker.send(broker::Shutdown).await {
            Ok(result) => result,
            Err(e) => Err(format!("broker actor already stopped: {e}")),
        };
        let _ = self.controller.send(CloseSession).await;
        self.seam.leave(self.id);
        stopped
    }

    /// Asks the controller to move this broker's leaderships away until it leads no
    /// replicated partition, at most `policy.attempts` times `policy.backoff` apart (Kafka's
    /// `controlled.shutdown.max.retries` and `controlled.shutdown.retry.backoff.ms`).
    pub async fn controlled_shutdown(
        &self,
        policy: ControlledShutdownPolicy,
    ) -> Result<(), String> {
        let started = tokio::time::Instant::now();
        let mut last = String::new();
        for attempt in 1..=policy.attempts.max(1) {
            let snapshot = self.shared.metadata.snapshot();
            if !snapshot.brokers.keys().any(|b| *b != self.id) {
                tracing::info!(
                    broker = self.id,
                    "controlled shutdown: no other live broker to take leadership"
                );
                return Ok(());
            }
            let controller = snapshot.controller_id;
            let request = ControlledShutdown {
                broker_id: self.id,
                broker_epoch: self.broker_epoch.load(Ordering::SeqCst),
            };
            let outcome = if controller < 0 {
                Err("no controller is known".to_string())
            } else {
                match self.peers.controlled_shutdown(controller, request).await {
                    Ok(Ok(remaining)) => Ok(remaining),
                    Ok(Err(e)) => Err(format!("controller {controller} answered {e}")),
                    Err(e) => Err(e.to_string()),
                }
            };
            match outcome {
                Ok(remaining) if remaining.is_empty() => {
                    tracing::info!(
                        broker = self.id,
                        attempt,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "controlled shutdown: no partition is led here any more"
                    );
                    return Ok(());
                }
                Ok(remaining) => {
                    last = format!("{} partitions are still led here", remaining.len());
                }
                Err(e) => last = e,
            }
            tracing::warn!(broker = self.id, attempt, reason = %last, "controlled shutdown attempt did not finish");
            if attempt < policy.attempts {
                tokio::time::sleep(policy.backoff).await;
            }
        }
        Err(format!(
            "controlled shutdown failed after {} attempts: {last}",
            policy.attempts.max(1)
        ))
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
/// Stops a node as a crash does: clients cut off, the seam left, the coordination session
/// abandoned, the broker's actors stopped and its log dirs unlocked. A start that fails after
/// its actors began ends here too, so nothing of the attempt (the `.lock` of its log dirs, a
/// registration, a controller) outlives it and a later start on the same dirs can succeed.
async fn abandon(
    id: i32,
    run: &watch::Sender<NodeRun>,
    seam: &NodeSeam,
    controller: &Addr<Controller>,
    broker: &Addr<Broker>,
) {
    let _ = run.send(NodeRun::Stopped);
    seam.leave(id);
    let _ = controller.send(SessionFault::Crash).await;
    // Answered once the broker's replicas halted and its log manager (holding the locks)
    // was dropped.
    let _ = broker.send(broker::Crash).await;
}

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

/// Routes one connection of a listener shared by clients and peers by its first byte: a peer
/// opens with [`MAGIC`] (`W`, which as a Kafka size prefix would announce a 1.4 GB request);
/// a Kafka client's size prefix starts with a zero byte for any request below 16 MB. Clients
/// wait until the broker serves them.
async fn route(
    stream: TcpStream,
    peers: Arc<PeerServer>,
    mut serving: watch::Receiver<Option<Arc<ApiContext>>>,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<NodeRun>,
) {
    let mut first = [0u8; 1];
    match tokio::time::timeout(limits.idle_timeout, stream.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] == MAGIC[0] => peers.serve(stream).await,
        Ok(Ok(1)) => {
            let ctx = tokio::select! {
                ctx = serving.wait_for(Option::is_some) => ctx.ok().and_then(|c| c.clone()),
                _ = stop.wait_for(|r| *r == NodeRun::Stopped) => None,
            };
            if let Some(ctx) = ctx {
                connection::serve(stream, ctx, limits, stop).await;
            }
        }
        // Closed before a byte, or idle: nothing to serve.
        _ => {}
    }
}

/// The TCP seam's view of the cluster: peers' inter-broker listeners (from the controller's
/// metadata, else their registrations) and their registered broker epochs.
struct Registry {
    metadata: MetadataCache,
    controller: Arc<OnceLock<Addr<Controller>>>,
    /// The inter-broker listener name (the same on every broker, as Kafka requires).
    listener: String,
}

impl Registry {
    /// `/brokers/ids/<id>` through this broker's current coordination session.
    fn registration(
        &self,
        broker: i32,
    ) -> BoxFuture<'static, Result<Option<(znodes::BrokerRegistration, i64)>, String>> {
        let controller = self.controller.get().cloned();
        Box::pin(async move {
            let controller = controller.ok_or("the broker is still starting")?;
            let session = controller
                .send(SessionClient)
                .await
                .map_err(|_| "the broker is stopping".to_string())?;
            KafkaZkClient::new(session)
                .get_broker(broker)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

impl PeerDirectory for Registry {
    fn address(&self, broker: i32) -> BoxFuture<'static, Option<String>> {
        let known = self
            .metadata
            .snapshot()
            .brokers
            .get(&broker)
            .and_then(|b| b.listener(&self.listener));
        let registration = self.registration(broker);
        let listener = self.listener.clone();
        Box::pin(async move {
            if known.is_some() {
                return known;
            }
            let (registration, _) = registration.await.ok()??;
            registration
                .parsed_endpoints()
                .into_iter()
                .find(|(name, _, _)| *name == listener)
                .map(|(_, host, port)| host_port(&host, port))
        })
    }
}

impl PeerAuthority for Registry {
    fn registered_epoch(&self, broker: i32) -> BoxFuture<'static, Result<Option<i64>, String>> {
        let registration = self.registration(broker);
        Box::pin(async move { Ok(registration.await?.map(|(_, epoch)| epoch)) })
    }
}

/// The host a listener advertises. Kafka advertises a listener bound to every interface (the
/// default `PLAINTEXT://:9092`) by the machine's name: 0.0.0.0 would send remote clients to
/// themselves.
fn advertised_host(configured: String, bound: std::net::SocketAddr) -> String {
    let every_interface = configured.is_empty()
        || configured
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified());
    if !every_interface {
        return configured;
    }
    match bound.ip() {
        ip if ip.is_unspecified() => resolvable_host_name().unwrap_or_else(|| ip.to_string()),
        ip => ip.to_string(),
    }
}

/// This machine's host name, if it resolves (Kafka's `InetAddress.getLocalHost`).
fn resolvable_host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return None;
    }
    let end = buf.iter().position(|b| *b == 0)?;
    let name = std::str::from_utf8(&buf[..end]).ok()?.to_string();
    use std::net::ToSocketAddrs;
    let resolves = (name.as_str(), 0)
        .to_socket_addrs()
        .is_ok_and(|mut addrs| addrs.next().is_some());
    (resolves && !name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_on_every_interface_advertises_the_host_name_not_0_0_0_0() {
        let any: std::net::SocketAddr = "0.0.0.0:9092".parse().unwrap();
        // A machine whose name does not resolve falls back to the address (Kafka would not
        // start there at all).
        let name = resolvable_host_name();
        let or = |fallback: &str| name.clone().unwrap_or_else(|| fallback.to_string());
        assert_ne!(name.as_deref(), Some(""));
        assert_eq!(advertised_host(String::new(), any), or("0.0.0.0"));
        assert_eq!(advertised_host("0.0.0.0".into(), any), or("0.0.0.0"));
        let any6: std::net::SocketAddr = "[::]:9092".parse().unwrap();
        assert_eq!(advertised_host("[::]".into(), any6), or("::"));
    }

    #[test]
    fn a_listener_with_a_host_advertises_it() {
        let bound: std::net::SocketAddr = "127.0.0.1:9092".parse().unwrap();
        assert_eq!(advertised_host("127.0.0.1".into(), bound), "127.0.0.1");
        assert_eq!(
            advertised_host("kafka.example".into(), bound),
            "kafka.example"
        );
        // No host, but bound to one address (an empty host bound as 127.0.0.1 by a test).
        assert_eq!(advertised_host(String::new(), bound), "127.0.0.1");
    }
}
