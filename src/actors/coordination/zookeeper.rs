//! The real-ZooKeeper backend (`zookeeper.connect=host:port[,host:port][/chroot]`), through the
//! `zookeeper-client` crate.
//!
//! The crate gives one future per watch ([`zk::OneshotWatcher`]) and a session-state watcher
//! instead of one ordered event stream. [`WatchForwarder`] turns them back into ZooKeeper's
//! single ordered stream: each future is polled with a waker that, when the crate's session
//! task dispatches an event to it, appends the future's id to a wake queue. The crate dispatches
//! in the server's order, so the queue holds events in that order; the forwarder drains it in a
//! background task and also right after every operation returns, so an event the server sent
//! before a reply is on the event channel before the caller sees that reply.
//!
//! ZooKeeper's server keeps one watch per (session, path, kind), so the forwarder keeps at most
//! one pending watcher per (path, data|child) and drops duplicates; a `NodeDeleted` consumes
//! both kinds on that path, as ZooKeeper delivers it once.
//!
//! Unlike the other backends, dropping every handle closes the session (the crate sends
//! CloseSession when its last client goes; a detached session could never be closed at all).
//! A crash of the process still leaves the session to expire, as with any ZooKeeper client.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::task::ArcWake;
use tokio::sync::{mpsc, oneshot, Notify};
use zookeeper_client as zk;

use super::error::{CoordinationError, Result};
use super::types::{
    CreateMode, EventType, Op, OpResult, Request, Response, SessionEvent, SessionId, SessionState,
    Stat, WatchedEvent,
};

/// Maps the crate's errors to the shared names; `path` names the node the request was about.
pub fn map_error(error: zk::Error, path: &str) -> CoordinationError {
    let path = path.to_string();
    match error {
        zk::Error::NodeExists => CoordinationError::NodeExists { path },
        zk::Error::NoNode => CoordinationError::NoNode { path },
        zk::Error::BadVersion => CoordinationError::BadVersion { path },
        zk::Error::NotEmpty => CoordinationError::NotEmpty { path },
        zk::Error::NoChildrenForEphemerals => CoordinationError::NoChildrenForEphemerals { path },
        zk::Error::SessionExpired | zk::Error::ClientClosed => CoordinationError::SessionExpired,
        zk::Error::ConnectionLoss | zk::Error::Timeout | zk::Error::NoHosts => {
            CoordinationError::ConnectionLoss
        }
        zk::Error::BadArguments(why) => CoordinationError::BadArguments(format!("{path}: {why}")),
        other => CoordinationError::Other(other.to_string()),
    }
}

fn map_stat(stat: &zk::Stat) -> Stat {
    Stat {
        czxid: stat.czxid,
        mzxid: stat.mzxid,
        pzxid: stat.pzxid,
        ctime: stat.ctime,
        mtime: stat.mtime,
        version: stat.version,
        cversion: stat.cversion,
        aversion: stat.aversion,
        ephemeral_owner: stat.ephemeral_owner,
        data_length: stat.data_length,
        num_children: stat.num_children,
    }
}

fn map_state(state: zk::SessionState) -> SessionState {
    match state {
        zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => {
            SessionState::SyncConnected
        }
        zk::SessionState::Disconnected => SessionState::Disconnected,
        zk::SessionState::Expired | zk::SessionState::AuthFailed => SessionState::Expired,
        zk::SessionState::Closed => SessionState::Closed,
    }
}

fn create_options(mode: CreateMode) -> zk::CreateOptions<'static> {
    let mode = match mode {
        CreateMode::Persistent => zk::CreateMode::Persistent,
        CreateMode::Ephemeral => zk::CreateMode::Ephemeral,
        CreateMode::PersistentSequential => zk::CreateMode::PersistentSequential,
        CreateMode::EphemeralSequential => zk::CreateMode::EphemeralSequential,
    };
    mode.with_acls(zk::Acls::anyone_all())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum WatchKind {
    Data,
    Child,
}

/// What a pending future yields.
enum Fired {
    Watch(zk::WatchedEvent),
    State(zk::SessionState, zk::StateWatcher),
}

type PendingFuture = Pin<Box<dyn Future<Output = Fired> + Send>>;

/// Ids of woken futures, in wake order.
struct WakeQueue {
    ids: Mutex<VecDeque<u64>>,
    notify: Notify,
}

impl WakeQueue {
    fn push(&self, id: u64) {
        self.ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(id);
        self.notify.notify_one();
    }

    fn pop(&self) -> Option<u64> {
        self.ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
    }
}

struct IdWaker {
    id: u64,
    queue: Arc<WakeQueue>,
}

impl ArcWake for IdWaker {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.queue.push(arc_self.id);
    }
}

struct PendingWatch {
    key: Option<(String, WatchKind)>,
    future: PendingFuture,
}

struct ForwarderState {
    next_id: u64,
    pending: HashMap<u64, PendingWatch>,
    /// The one pending watcher per (path, kind).
    by_key: HashMap<(String, WatchKind), u64>,
    events: mpsc::UnboundedSender<SessionEvent>,
}

/// Turns the crate's per-watch futures into one ordered event stream (see //!).
pub struct WatchForwarder {
    /// Held for a whole drain, so two drains never interleave events.
    state: Mutex<ForwarderState>,
    queue: Arc<WakeQueue>,
}

impl WatchForwarder {
    fn new(events: mpsc::UnboundedSender<SessionEvent>) -> Arc<WatchForwarder> {
        Arc::new(WatchForwarder {
            state: Mutex::new(ForwarderState {
                next_id: 1,
                pending: HashMap::new(),
                by_key: HashMap::new(),
                events,
            }),
            queue: Arc::new(WakeQueue {
                ids: Mutex::new(VecDeque::new()),
                notify: Notify::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, ForwarderState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(
        &self,
        state: &mut ForwarderState,
        key: Option<(String, WatchKind)>,
        future: PendingFuture,
    ) {
        if let Some(key) = &key {
            if state.by_key.contains_key(key) {
                // ZooKeeper fires a re-registered watch once; the older registration covers it.
                return;
            }
        }
        let id = state.next_id;
        state.next_id += 1;
        if let Some(key) = &key {
            state.by_key.insert(key.clone(), id);
        }
        state.pending.insert(id, PendingWatch { key, future });
        // Polled in the next drain, which registers its waker.
        self.queue.push(id);
    }

    fn watch(&self, path: &str, kind: WatchKind, watcher: zk::OneshotWatcher) {
        let future: PendingFuture = Box::pin(async move { Fired::Watch(watcher.changed().await) });
        let mut state = self.lock();
        self.insert(&mut state, Some((path.to_string(), kind)), future);
        drop(state);
        self.drain();
    }

    fn watch_state(&self, mut watcher: zk::StateWatcher) {
        let future: PendingFuture = Box::pin(async move {
            let state = watcher.changed().await;
            Fired::State(state, watcher)
        });
        let mut state = self.lock();
        self.insert(&mut state, None, future);
    }

    /// Forwards every woken future's event, in wake order.
    fn drain(&self) {
        let mut state = self.lock();
        while let Some(id) = self.queue.pop() {
            let Some(mut pending) = state.pending.remove(&id) else {
                continue;
            };
            let waker = futures::task::waker(Arc::new(IdWaker {
                id,
                queue: self.queue.clone(),
            }));
            let mut cx = Context::from_waker(&waker);
            let fired = match pending.future.as_mut().poll(&mut cx) {
                Poll::Pending => {
                    state.pending.insert(id, pending);
                    continue;
                }
                Poll::Ready(fired) => fired,
            };
            if let Some(key) = &pending.key {
                state.by_key.remove(key);
            }
            match fired {
                Fired::Watch(event) => {
                    let event_type = match event.event_type {
                        zk::EventType::NodeCreated => EventType::NodeCreated,
                        zk::EventType::NodeDeleted => EventType::NodeDeleted,
                        zk::EventType::NodeDataChanged => EventType::NodeDataChanged,
                        zk::EventType::NodeChildrenChanged => EventType::NodeChildrenChanged,
                        // The session ended; the state watcher reports it.
                        zk::EventType::Session => continue,
                    };
                    if event_type == EventType::NodeDeleted {
                        for kind in [WatchKind::Data, WatchKind::Child] {
                            if let Some(other) = state.by_key.remove(&(event.path.clone(), kind)) {
                                state.pending.remove(&other);
                            }
                        }
                    }
                    let _ = state.events.send(SessionEvent::Watch(WatchedEvent {
                        event_type,
                        path: event.path,
                    }));
                }
                Fired::State(zk_state, watcher) => {
                    let _ = state.events.send(SessionEvent::State(map_state(zk_state)));
                    if !zk_state.is_terminated() {
                        let future: PendingFuture = Box::pin(async move {
                            let mut watcher = watcher;
                            let state = watcher.changed().await;
                            Fired::State(state, watcher)
                        });
                        self.insert(&mut state, None, future);
                    }
                }
            }
        }
    }
}

struct ZkInner {
    /// Taken by `close()`: the session closes when the last clone (in-flight requests hold
    /// one) is dropped.
    client: Mutex<Option<zk::Client>>,
    session_id: SessionId,
    timeout: Duration,
    forwarder: Arc<WatchForwarder>,
    /// Dropped with the last handle: stops the forwarder's background task.
    _stop: oneshot::Sender<()>,
}

/// A session on a ZooKeeper ensemble. Cheap to clone.
#[derive(Clone)]
pub struct ZooKeeperClient {
    inner: Arc<ZkInner>,
}

impl ZooKeeperClient {
    /// `connect` is ZooKeeper's connect string, chroot included.
    pub async fn connect(
        connect: &str,
        timeout: Duration,
        events: mpsc::UnboundedSender<SessionEvent>,
    ) -> Result<ZooKeeperClient> {
        // The crate spawns its session task (pings, reads, reconnects) on the runtime that
        // connects: the coordination I/O thread, not the caller's arbiter.
        let connect = connect.to_string();
        super::io_thread::run(async move {
            let client = zk::Client::connector()
                .session_timeout(timeout)
                .connect(&connect)
                .await
                .map_err(|e| map_error(e, &connect))?;
            let _ = events.send(SessionEvent::State(SessionState::SyncConnected));
            let forwarder = WatchForwarder::new(events);
            forwarder.watch_state(client.state_watcher());
            forwarder.drain();
            let (stop, mut stopped) = oneshot::channel::<()>();
            let background = forwarder.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = background.queue.notify.notified() => background.drain(),
                        _ = &mut stopped => return,
                    }
                }
            });
            Ok(ZooKeeperClient {
                inner: Arc::new(ZkInner {
                    session_id: client.session_id().0,
                    timeout: client.session_timeout(),
                    client: Mutex::new(Some(client)),
                    forwarder,
                    _stop: stop,
                }),
            })
        })
        .await?
    }

    pub fn session_id(&self) -> SessionId {
        self.inner.session_id
    }

    pub fn session_timeout(&self) -> Duration {
        self.inner.timeout
    }

    fn client(&self) -> Result<zk::Client> {
        self.inner
            .client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(CoordinationError::SessionExpired)
    }

    pub async fn call(&self, request: Request) -> Result<Response> {
        let result = self.dispatch(request).await;
        // Events the server sent ahead of this reply go out before the caller sees it.
        self.inner.forwarder.drain();
        result
    }

    async fn dispatch(&self, request: Request) -> Result<Response> {
        let client = &self.client()?;
        let forwarder = &self.inner.forwarder;
        match request {
            Request::Create { path, data, mode } => {
                let (_, sequence) = client
                    .create(&path, &data, &create_options(mode))
                    .await
                    .map_err(|e| map_error(e, &path))?;
                Ok(Response::Created(if mode.is_sequential() {
                    format!("{path}{sequence}")
                } else {
                    path
                }))
            }
            Request::Delete { path, version } => {
                client
                    .delete(&path, version)
                    .await
                    .map_err(|e| map_error(e, &path))?;
                Ok(Response::Deleted)
            }
            Request::SetData {
                path,
                data,
                version,
            } => {
                let stat = client
                    .set_data(&path, &data, version)
                    .await
                    .map_err(|e| map_error(e, &path))?;
                Ok(Response::SetData(map_stat(&stat)))
            }
            Request::GetData { path, watch: false } => {
                let (data, stat) = client
                    .get_data(&path)
                    .await
                    .map_err(|e| map_error(e, &path))?;
                Ok(Response::Data(data, map_stat(&stat)))
            }
            Request::GetData { path, watch: true } => {
                let (data, stat, watcher) = client
                    .get_and_watch_data(&path)
                    .await
                    .map_err(|e| map_error(e, &path))?;
                forwarder.watch(&path, WatchKind::Data, watcher);
                Ok(Response::Data(data, map_stat(&stat)))
            }
            Request::Exists { path, watch: false } => {
                let stat = client
                    .check_stat(&path)
                    .await
                    .map_err(|e| map_error(e, &path))?;
                Ok(Response::Exists(stat.as_ref().map(map_stat)))
            }
            Request::Exists { path, watch: true } => {
                let (stat, watcher) = client
                    .check_and_watch_stat(&path)
                    .await
                    .map_err(|e| map_error(e, &path))?;
                forwarder.watch(&path, WatchKind::Data, watcher);
                Ok(Response::Exists(stat.as_ref().map(map_stat)))
            }
            Request::GetChildren { path, watch: false } => {
                let mut children = client
                    .list_children(&path)
                    .await
                    .map_err(|e| map_error(e, &path))?;
                children.sort();
                Ok(Response::Children(children))
            }
            Request::GetChildren { path, watch: true } => {
                let (mut children, watcher) = client
                    .list_and_watch_children(&path)
                    .await
                    .map_err(|e| map_error(e, &path))?;
                forwarder.watch(&path, WatchKind::Child, watcher);
                children.sort();
                Ok(Response::Children(children))
            }
            Request::Multi(ops) => self.multi(client, ops).await.map(Response::Multi),
        }
    }

    async fn multi(&self, client: &zk::Client, ops: Vec<Op>) -> Result<Vec<OpResult>> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let mut writer = client.new_multi_writer();
        for op in &ops {
            let added = match op {
                Op::Check { path, version } => {
                    writer.add_check_version(path, version.unwrap_or(-1))
                }
                Op::Create { path, data, mode } => {
                    writer.add_create(path, data, &create_options(*mode))
                }
                Op::SetData {
                    path,
                    data,
                    version,
                } => writer.add_set_data(path, data, *version),
                Op::Delete { path, version } => writer.add_delete(path, *version),
            };
            added.map_err(|e| map_error(e, op.path()))?;
        }
        match writer.commit().await {
            Ok(results) => Ok(results
                .into_iter()
                .map(|r| match r {
                    zk::MultiWriteResult::Check => OpResult::Check,
                    zk::MultiWriteResult::Delete => OpResult::Delete,
                    zk::MultiWriteResult::Create { path, .. } => OpResult::Create { path },
                    zk::MultiWriteResult::SetData { stat } => OpResult::SetData {
                        stat: map_stat(&stat),
                    },
                    // The enum is non-exhaustive; nothing else answers a write op.
                    #[allow(unreachable_patterns)]
                    _ => OpResult::Check,
                })
                .collect()),
            Err(zk::MultiWriteError::OperationFailed { index, source }) => {
                let path = ops.get(index).map(|op| op.path()).unwrap_or("");
                Err(map_error(source, path))
            }
            Err(zk::MultiWriteError::RequestFailed { source }) => Err(map_error(source, "")),
        }
    }

    pub async fn close(&self) -> Result<()> {
        let client = self
            .inner
            .client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        drop(client);
        Ok(())
    }
}
