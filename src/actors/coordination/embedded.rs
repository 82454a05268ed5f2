//! The embedded coordination service ([`EmbeddedCoordination`]) and its in-process client
//! ([`EmbeddedClient`]).
//!
//! The service runs its actors (tree, session-timeout, one session actor per client) on an
//! arbiter of its own, so coordination work never queues behind a broker's; each client's
//! heartbeats run on the coordination I/O thread ([`super::io_thread`]), so a session lives
//! while the arbiter that opened it is busy. In-process clients talk to their session actor
//! through its actix address; `weir coordinator` serves the
//! same service over TCP ([`super::server`]).
//!
//! Fault injection for the in-process cluster: every client has a [`LinkSwitch`]. Cutting it
//! makes requests fail with `ConnectionLoss` and stops heartbeats, so the session expires after
//! its timeout unless the link is healed first; healing delivers `SyncConnected` and the events
//! held meanwhile (or only `Expired`). [`EmbeddedCoordination::expire_session`] expires a
//! session at once.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use actix::prelude::*;
use anyhow::Context as _;
use tokio::sync::mpsc;

use super::error::{CoordinationError, Result};
use super::persistence;
use super::session::{ClientRequest, Close, Ping, SessionSink, SinkTarget};
use super::tree::{
    ExpireSession, GetStatus, ListSessions, ListWatches, LogSetup, OpenSession, SessionHandle,
    SessionInfo, SetLink, Shutdown, TreeActor, TreeConfig, TreeStatus, WatchInfo,
};
use super::types::{Request, Response, SessionEvent, SessionId, SessionState};

/// How the embedded service runs.
#[derive(Clone, Debug)]
pub struct CoordinationConfig {
    /// Where the transaction log and snapshots live; `None` keeps everything in memory.
    pub data_dir: Option<PathBuf>,
    /// ZooKeeper's `tickTime` (default 2 s): session timeouts are clamped to [2, 20] ticks.
    pub tick_time: Duration,
    /// Snapshot after this many transactions (ZooKeeper's `snapCount`).
    pub snapshot_every: u64,
    /// fsync the log before acknowledging (ZooKeeper's `forceSync`, default on).
    pub fsync: bool,
}

impl Default for CoordinationConfig {
    fn default() -> Self {
        CoordinationConfig {
            data_dir: None,
            tick_time: Duration::from_millis(2000),
            snapshot_every: 10_000,
            fsync: true,
        }
    }
}

impl CoordinationConfig {
    pub fn in_memory() -> Self {
        CoordinationConfig::default()
    }

    pub fn persistent(data_dir: impl Into<PathBuf>) -> Self {
        CoordinationConfig {
            data_dir: Some(data_dir.into()),
            ..CoordinationConfig::default()
        }
    }

    pub fn with_tick_time(mut self, tick: Duration) -> Self {
        self.tick_time = tick;
        self
    }
}

/// A running embedded coordination service. Cheap to clone; every clone names the same service.
#[derive(Clone)]
pub struct EmbeddedCoordination {
    tree: Addr<TreeActor>,
    /// The arbiter (thread) the service's actors run on; stopped by [`Self::shutdown`].
    arbiter: ArbiterHandle,
}

impl std::fmt::Debug for EmbeddedCoordination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedCoordination")
            .finish_non_exhaustive()
    }
}

impl EmbeddedCoordination {
    /// Recovers the data dir (if any) and starts the service on a new arbiter. Must be called
    /// inside a running actix `System`.
    pub async fn start(config: CoordinationConfig) -> anyhow::Result<EmbeddedCoordination> {
        if System::try_current().is_none() {
            anyhow::bail!("the embedded coordination service needs a running actix System");
        }
        let (db, log) = match &config.data_dir {
            Some(dir) => {
                let dir = dir.clone();
                let recovered = tokio::task::spawn_blocking({
                    let dir = dir.clone();
                    move || persistence::recover(&dir)
                })
                .await
                .context("recovery task")?
                .with_context(|| format!("recovering coordination data in {}", dir.display()))?;
                tracing::info!(
                    dir = %dir.display(),
                    zxid = recovered.db.last_zxid(),
                    replayed = recovered.replayed,
                    sessions = recovered.db.sessions().len(),
                    "coordination state recovered"
                );
                (
                    recovered.db,
                    Some(LogSetup {
                        dir,
                        log_path: recovered.log_path,
                        lock: recovered.lock,
                        fsync: config.fsync,
                    }),
                )
            }
            None => (Default::default(), None),
        };
        let tree_config = TreeConfig {
            tick_time: config.tick_time,
            snapshot_every: config.snapshot_every.max(1),
        };
        let arbiter = Arbiter::new().handle();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spawned = arbiter.spawn_fn(move || {
            let _ = tx.send(TreeActor::start_with_timeouts(db, tree_config, log));
        });
        if !spawned {
            anyhow::bail!("the coordination arbiter did not start");
        }
        let tree = rx.await.context("starting the coordination tree")?;
        Ok(EmbeddedCoordination { tree, arbiter })
    }

    /// The tree actor (the TCP server talks to it directly).
    pub fn tree(&self) -> &Addr<TreeActor> {
        &self.tree
    }

    /// Opens a session for an in-process client (what [`super::connect`] does without a
    /// `zookeeper.connect`).
    pub async fn open_session(
        &self,
        timeout: Duration,
    ) -> Result<(EmbeddedClient, mpsc::UnboundedReceiver<SessionEvent>)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let sink = SessionSink::new(SinkTarget::Local(tx.clone()));
        let handle = self
            .tree
            .send(OpenSession { timeout, sink })
            .await
            .map_err(|_| CoordinationError::ConnectionLoss)??;
        let _ = tx.send(SessionEvent::State(SessionState::SyncConnected));
        Ok((EmbeddedClient::new(handle, tx)?, rx))
    }

    /// Expires a session now, as if its client had gone silent. True if it existed.
    pub async fn expire_session(&self, session: SessionId) -> bool {
        self.tree
            .send(ExpireSession(session))
            .await
            .unwrap_or(false)
    }

    /// Cuts a session's link (see [`LinkSwitch::cut`]). True if the session exists.
    pub async fn cut_link(&self, session: SessionId) -> bool {
        self.tree
            .send(SetLink { session, up: false })
            .await
            .unwrap_or(false)
    }

    /// Heals a session's link (see [`LinkSwitch::heal`]). True if the session exists.
    pub async fn heal_link(&self, session: SessionId) -> bool {
        self.tree
            .send(SetLink { session, up: true })
            .await
            .unwrap_or(false)
    }

    pub async fn sessions(&self) -> Vec<SessionInfo> {
        self.tree.send(ListSessions).await.unwrap_or_default()
    }

    pub async fn status(&self) -> Result<TreeStatus> {
        self.tree
            .send(GetStatus)
            .await
            .map_err(|_| CoordinationError::ConnectionLoss)
    }

    /// The watches each session has set (ZooKeeper's `wchc`).
    pub async fn watches(&self) -> Result<BTreeMap<SessionId, Vec<WatchInfo>>> {
        self.tree
            .send(ListWatches)
            .await
            .map_err(|_| CoordinationError::ConnectionLoss)
    }

    /// Stops the service after its log is written out. Clients then see `ConnectionLoss`.
    pub async fn shutdown(&self) {
        let _ = self.tree.send(Shutdown).await;
        self.arbiter.stop();
    }
}

/// Cuts and heals one in-process client's link to the service (fault injection).
#[derive(Clone, Debug)]
pub struct LinkSwitch {
    sink: Arc<SessionSink>,
}

impl LinkSwitch {
    /// Requests fail with `ConnectionLoss`, heartbeats stop, events are held; the client hears
    /// `Disconnected`.
    pub fn cut(&self) {
        self.sink.set_link(false);
    }

    /// The client hears `SyncConnected` and the held events, or `Expired` if the session
    /// timed out meanwhile.
    pub fn heal(&self) {
        self.sink.set_link(true);
    }

    pub fn is_up(&self) -> bool {
        self.sink.link_up()
    }
}

struct EmbeddedInner {
    session: SessionHandle,
    /// Set by `close()`: later requests fail with `SessionExpired`, as ZooKeeper's.
    closed: AtomicBool,
    /// The client's own event channel, to report `Closed`.
    events: mpsc::UnboundedSender<SessionEvent>,
}

/// An in-process session. Cheap to clone. Dropping every clone without `close()` stops its
/// heartbeats, so the session expires after its timeout: that is how an in-process broker
/// "crashes".
#[derive(Clone)]
pub struct EmbeddedClient {
    inner: Arc<EmbeddedInner>,
}

impl EmbeddedClient {
    fn new(session: SessionHandle, events: mpsc::UnboundedSender<SessionEvent>) -> Result<Self> {
        let inner = Arc::new(EmbeddedInner {
            session,
            closed: AtomicBool::new(false),
            events,
        });
        spawn_heartbeat(Arc::downgrade(&inner))?;
        Ok(EmbeddedClient { inner })
    }

    pub fn session_id(&self) -> SessionId {
        self.inner.session.id
    }

    pub fn session_timeout(&self) -> Duration {
        self.inner.session.timeout
    }

    pub fn link_switch(&self) -> LinkSwitch {
        LinkSwitch {
            sink: self.inner.session.sink.clone(),
        }
    }

    fn lost(&self) -> CoordinationError {
        if self.inner.session.sink.is_expired() || self.inner.closed.load(Ordering::SeqCst) {
            CoordinationError::SessionExpired
        } else {
            CoordinationError::ConnectionLoss
        }
    }

    pub async fn call(&self, request: Request) -> Result<Response> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(CoordinationError::SessionExpired);
        }
        if !self.inner.session.sink.link_up() {
            return Err(CoordinationError::ConnectionLoss);
        }
        match self.inner.session.actor.send(ClientRequest(request)).await {
            Ok(result) => result,
            Err(_) => Err(self.lost()),
        }
    }

    pub async fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        if !self.inner.session.sink.link_up() {
            // ZooKeeper's close over a dead link: the session is left to expire.
            let _ = self
                .inner
                .events
                .send(SessionEvent::State(SessionState::Closed));
            return Err(CoordinationError::ConnectionLoss);
        }
        let result = match self.inner.session.actor.send(Close).await {
            Ok(result) => result,
            Err(_) => Ok(()),
        };
        let _ = self
            .inner
            .events
            .send(SessionEvent::State(SessionState::Closed));
        result
    }
}

/// Pings every timeout/3 (as ZooKeeper clients do) while the client lives and its link is up,
/// from the coordination I/O thread ([`super::io_thread`]): not from the caller's arbiter,
/// which may be busy for longer than the session timeout.
fn spawn_heartbeat(inner: Weak<EmbeddedInner>) -> Result<()> {
    let Some(strong) = inner.upgrade() else {
        return Ok(());
    };
    let period = (strong.session.timeout / 3).max(Duration::from_millis(1));
    drop(strong);
    super::io_thread::spawn(async move {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let Some(inner) = inner.upgrade() else { break };
            if inner.closed.load(Ordering::SeqCst) || inner.session.sink.is_expired() {
                break;
            }
            if !inner.session.sink.link_up() {
                continue;
            }
            let ping = inner.session.actor.send(Ping);
            drop(inner);
            if !matches!(ping.await, Ok(Ok(()))) {
                break;
            }
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::coordination::types::{CreateMode, EventType, WatchedEvent};

    fn tick(ms: u64) -> CoordinationConfig {
        CoordinationConfig::in_memory().with_tick_time(Duration::from_millis(ms))
    }

    fn create(path: &str, mode: CreateMode) -> Request {
        Request::Create {
            path: path.into(),
            data: vec![],
            mode,
        }
    }

    #[actix::test]
    async fn heartbeats_keep_a_session_alive_past_its_timeout() {
        let service = EmbeddedCoordination::start(tick(50)).await.unwrap();
        // A timeout with room for scheduling delays on a loaded machine (heartbeats go out
        // every third of it).
        let (client, _events) = service
            .open_session(Duration::from_millis(400))
            .await
            .unwrap();
        client
            .call(create("/e", CreateMode::Ephemeral))
            .await
            .unwrap();
        // Five timeouts of idling: only heartbeats keep it.
        actix_rt::time::sleep(Duration::from_millis(2_000)).await;
        let exists = client
            .call(Request::Exists {
                path: "/e".into(),
                watch: false,
            })
            .await
            .unwrap();
        assert!(matches!(exists, Response::Exists(Some(_))));
        service.shutdown().await;
    }

    #[actix::test]
    async fn cut_link_expires_the_session_and_heal_reports_expired() {
        let service = EmbeddedCoordination::start(tick(50)).await.unwrap();
        let (observer, _) = service.open_session(Duration::from_secs(1)).await.unwrap();
        let (client, mut events) = service
            .open_session(Duration::from_millis(100))
            .await
            .unwrap();
        assert_eq!(
            events.recv().await,
            Some(SessionEvent::State(SessionState::SyncConnected))
        );
        client
            .call(create("/e", CreateMode::Ephemeral))
            .await
            .unwrap();
        let link = client.link_switch();
        link.cut();
        assert_eq!(
            events.recv().await,
            Some(SessionEvent::State(SessionState::Disconnected))
        );
        assert_eq!(
            client
                .call(Request::Exists {
                    path: "/e".into(),
                    watch: false
                })
                .await,
            Err(CoordinationError::ConnectionLoss)
        );
        crate::actors::coordination::support::wait_for(|| async {
            let r = observer
                .call(Request::Exists {
                    path: "/e".into(),
                    watch: false,
                })
                .await;
            (r == Ok(Response::Exists(None))).then_some(())
        })
        .await;
        link.heal();
        assert_eq!(
            events.recv().await,
            Some(SessionEvent::State(SessionState::Expired))
        );
        assert_eq!(
            client
                .call(Request::Exists {
                    path: "/e".into(),
                    watch: false
                })
                .await,
            Err(CoordinationError::SessionExpired)
        );
        service.shutdown().await;
    }

    #[actix::test]
    async fn healed_link_delivers_held_events_after_sync_connected() {
        let service = EmbeddedCoordination::start(tick(200)).await.unwrap();
        let (writer, _) = service.open_session(Duration::from_secs(4)).await.unwrap();
        let (client, mut events) = service.open_session(Duration::from_secs(4)).await.unwrap();
        events.recv().await;
        client
            .call(Request::Exists {
                path: "/n".into(),
                watch: true,
            })
            .await
            .unwrap();
        assert!(service.cut_link(client.session_id()).await);
        writer
            .call(create("/n", CreateMode::Persistent))
            .await
            .unwrap();
        assert!(service.heal_link(client.session_id()).await);
        assert_eq!(
            events.recv().await,
            Some(SessionEvent::State(SessionState::Disconnected))
        );
        assert_eq!(
            events.recv().await,
            Some(SessionEvent::State(SessionState::SyncConnected))
        );
        assert_eq!(
            events.recv().await,
            Some(SessionEvent::Watch(WatchedEvent {
                event_type: EventType::NodeCreated,
                path: "/n".into()
            }))
        );
        service.shutdown().await;
    }

    #[actix::test]
    async fn restart_recovers_tree_and_sessions_from_snapshots_and_log() {
        let dir = tempfile::tempdir().unwrap();
        let config = CoordinationConfig {
            snapshot_every: 3,
            ..CoordinationConfig::persistent(dir.path()).with_tick_time(Duration::from_millis(100))
        };
        let service = EmbeddedCoordination::start(config.clone()).await.unwrap();
        let (client, _) = service.open_session(Duration::from_secs(2)).await.unwrap();
        for i in 0..10 {
            client
                .call(create(&format!("/n{i}"), CreateMode::Persistent))
                .await
                .unwrap();
        }
        client
            .call(create("/e", CreateMode::Ephemeral))
            .await
            .unwrap();
        let before = service.status().await.unwrap();
        service.shutdown().await;

        let service = EmbeddedCoordination::start(config).await.unwrap();
        let after = service.status().await.unwrap();
        assert_eq!(
            (after.last_zxid, after.nodes),
            (before.last_zxid, before.nodes)
        );
        let sessions = service.sessions().await;
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].id, client.session_id());
        assert_eq!(sessions[0].ephemerals, vec!["/e".to_string()]);
        assert!(
            !sessions[0].attached,
            "restored sessions wait for their client"
        );
        assert!(std::fs::read_dir(dir.path()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("snapshot.")));
        service.shutdown().await;
    }

    #[actix::test]
    async fn admin_expiry_ends_a_session_at_once() {
        let service = EmbeddedCoordination::start(tick(2000)).await.unwrap();
        let (client, mut events) = service.open_session(Duration::from_secs(30)).await.unwrap();
        events.recv().await;
        assert!(service.expire_session(client.session_id()).await);
        assert_eq!(
            events.recv().await,
            Some(SessionEvent::State(SessionState::Expired))
        );
        assert!(service.sessions().await.is_empty());
        assert!(!service.expire_session(client.session_id()).await);
        service.shutdown().await;
    }
}
