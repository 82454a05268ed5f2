//! The tree actor: the one place where the embedded service's state changes. It owns the
//! [`Database`] (znodes, versions, sessions), the one-shot watches, and the session table with
//! each session's [`SessionSink`] and [`SessionActor`].
//!
//! Linearizability: every request of every session reaches this actor's mailbox and is handled
//! one at a time; each write becomes one transaction with the next zxid.
//!
//! Durability and ordering: a write is applied to the in-memory tree at once (so later requests
//! see it) and appended to the transaction log ([`TxnLog`], a writer thread that fsyncs in
//! groups). Nothing that could reveal it leaves the actor before the log reports it durable:
//! every reply and every watch event is queued as a *held action* tagged with the zxid it
//! depends on, and actions run strictly in queue order as durability advances. So no client
//! sees a change that a crash could undo, and a watch event is always delivered before the
//! reply of any later request (ZooKeeper's "a client sees the event before the new data").
//! Without a data dir (tests, throwaway clusters) durability is immediate.
//!
//! Watches follow ZooKeeper's DataTree: `get_data`/`exists` set a data watch (fired by
//! create, set, delete), `get_children` a child watch (fired by a child's create or delete
//! and by the node's own delete). Each is a set of sessions per path, cleared when it fires,
//! so a session hears at most once per registration, and a deleted node's data and child
//! watchers of one session hear one `NodeDeleted`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::data_tree::{Database, Snapshot, Trigger, Txn, TxnRecord};
use super::error::{CoordinationError, Result};
use super::persistence::{DirLock, LogEvent, LogWriter};
use super::session::{SessionActor, SessionEnded, SessionSink, SinkTarget};
use super::session_timeout::{
    SessionTimedOut, SessionTimeoutActor, Touch, TrackSession, UntrackSession,
};
use super::types::{
    EventType, Op, OpResult, Request, Response, SessionEvent, SessionId, SessionState, WatchedEvent,
};
use super::wire::ServerMessage;

/// Where committed transactions go to become durable. The tree is told back through
/// [`LogReport`].
pub trait TxnLog: Send {
    fn append(&self, record: TxnRecord);
    fn snapshot(&self, snapshot: Snapshot);
    /// Finishes queued work (blocking; called off the actor thread).
    fn close(self: Box<Self>);
}

impl TxnLog for LogWriter {
    fn append(&self, record: TxnRecord) {
        LogWriter::append(self, record)
    }
    fn snapshot(&self, snapshot: Snapshot) {
        LogWriter::snapshot(self, snapshot)
    }
    fn close(self: Box<Self>) {
        LogWriter::close(*self)
    }
}

/// Where and how the tree's log writer writes (from [`super::persistence::recover`]).
pub struct LogSetup {
    pub dir: std::path::PathBuf,
    pub log_path: std::path::PathBuf,
    pub lock: DirLock,
    pub fsync: bool,
}

/// ZooKeeper's timing knobs.
#[derive(Clone, Debug)]
pub struct TreeConfig {
    /// ZooKeeper's `tickTime`: negotiated session timeouts lie in [2, 20] ticks.
    pub tick_time: Duration,
    /// Snapshot after this many transactions (ZooKeeper's `snapCount`).
    pub snapshot_every: u64,
}

impl Default for TreeConfig {
    fn default() -> Self {
        TreeConfig {
            tick_time: Duration::from_millis(2000),
            snapshot_every: 10_000,
        }
    }
}

impl TreeConfig {
    /// Clamps a requested session timeout to [2 * tick, 20 * tick], as ZooKeeper does.
    pub fn negotiate(&self, requested: Duration) -> Duration {
        requested.clamp(self.tick_time * 2, self.tick_time * 20)
    }
}

/// The session-timeout actor as the tree and the sessions see it (a test can stand in).
#[derive(Clone)]
pub struct TimeoutsLink {
    pub track: Recipient<TrackSession>,
    pub untrack: Recipient<UntrackSession>,
    pub touch: Recipient<Touch>,
}

impl TimeoutsLink {
    pub fn of<A>(addr: Addr<A>) -> TimeoutsLink
    where
        A: Actor<Context = Context<A>>
            + Handler<TrackSession>
            + Handler<UntrackSession>
            + Handler<Touch>,
    {
        TimeoutsLink {
            track: addr.clone().recipient(),
            untrack: addr.clone().recipient(),
            touch: addr.recipient(),
        }
    }
}

/// A request of one session.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Response>")]
pub struct Execute {
    pub session: SessionId,
    pub request: Request,
}

/// Starts a new session whose events go to `sink`.
#[derive(Message)]
#[rtype(result = "Result<SessionHandle>")]
pub struct OpenSession {
    pub timeout: Duration,
    pub sink: Arc<SessionSink>,
}

/// Re-attaches a client to a live session (reconnection after a connection loss or a restart
/// of the service). The greeting (`Connected`) and any buffered events go to `target` first.
#[derive(Message)]
#[rtype(result = "Result<SessionHandle>")]
pub struct AttachSession {
    pub session: SessionId,
    pub target: SinkTarget,
}

/// Ends a session at its client's request.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<()>")]
pub struct CloseSession {
    pub session: SessionId,
}

/// Fault injection / admin: expires a session now, as if it had timed out. True if it existed.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "bool")]
pub struct ExpireSession(pub SessionId);

/// Fault injection: cuts (`up: false`) or heals a session's link. True if the session exists.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "bool")]
pub struct SetLink {
    pub session: SessionId,
    pub up: bool,
}

/// The live sessions, for admins and tests.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Vec<SessionInfo>")]
pub struct ListSessions;

/// Counters for admins and tests.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "TreeStatus")]
pub struct GetStatus;

/// The watches each session has set (ZooKeeper's `wchc` four-letter command).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "BTreeMap<SessionId, Vec<WatchInfo>>")]
pub struct ListWatches;

/// One watch a session has set.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum WatchInfo {
    /// Fired by the node's creation, change or deletion (`get_data`/`exists`).
    Data(String),
    /// Fired by a child's creation or deletion (`get_children`).
    Children(String),
}

/// From the log writer.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct LogReport(pub LogEvent);

/// Stops the tree after the log has written everything queued.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Shutdown;

/// What a client needs to talk to its session.
#[derive(Clone, Debug)]
pub struct SessionHandle {
    pub id: SessionId,
    pub timeout: Duration,
    pub actor: Addr<SessionActor>,
    pub sink: Arc<SessionSink>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: SessionId,
    pub timeout: Duration,
    pub link_up: bool,
    pub attached: bool,
    pub ephemerals: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeStatus {
    pub last_zxid: i64,
    pub durable_zxid: i64,
    pub nodes: usize,
    pub sessions: usize,
}

/// A live session as the tree keeps it.
struct LiveSession {
    timeout: Duration,
    /// Where its watch events and its expiry go.
    sink: Arc<SessionSink>,
    /// Stopped when the session ends.
    actor: Addr<SessionActor>,
}

/// A reply or event waiting for its zxid to be durable.
type HeldAction = Box<dyn FnOnce()>;

pub struct TreeActor {
    /// The znodes, sessions and zxid: the state the log replays to.
    db: Database,
    config: TreeConfig,
    /// Paths watched for create/set/delete, with the sessions to tell (a set: registering
    /// twice still fires once).
    data_watches: HashMap<String, BTreeSet<SessionId>>,
    /// Paths watched for children changes (and their own delete).
    child_watches: HashMap<String, BTreeSet<SessionId>>,
    sessions: HashMap<SessionId, LiveSession>,
    timeouts: TimeoutsLink,
    /// `None`: in-memory, every zxid is durable at once.
    log: Option<Box<dyn TxnLog>>,
    /// The highest zxid the log reported on disk.
    durable_zxid: i64,
    /// Replies and events in the order they must be seen, each with the zxid it waits for.
    held: VecDeque<(i64, HeldAction)>,
    /// Transactions since the last snapshot.
    since_snapshot: u64,
    /// Set when the log failed: the tree then refuses every request (ConnectionLoss), as a
    /// ZooKeeper server that cannot write its log stops serving.
    failed: bool,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Session ids start from the clock, as ZooKeeper's do, so ids from a fresh data dir do not
/// repeat ids of an earlier one. The shifts keep 40 bits of milliseconds and leave the value
/// positive.
fn session_id_seed() -> SessionId {
    ((now_ms() as u64).wrapping_shl(24) >> 8) as SessionId
}

impl TreeActor {
    pub fn new(
        db: Database,
        config: TreeConfig,
        timeouts: TimeoutsLink,
        log: Option<Box<dyn TxnLog>>,
    ) -> TreeActor {
        let durable_zxid = db.last_zxid();
        TreeActor {
            db,
            config,
            data_watches: HashMap::new(),
            child_watches: HashMap::new(),
            sessions: HashMap::new(),
            timeouts,
            log,
            durable_zxid,
            held: VecDeque::new(),
            since_snapshot: 0,
            failed: false,
        }
    }

    /// Starts a tree on the current arbiter with its own session-timeout actor and, when
    /// `log` is given, a log writer as it describes.
    pub fn start_with_timeouts(
        db: Database,
        config: TreeConfig,
        log: Option<LogSetup>,
    ) -> Addr<TreeActor> {
        TreeActor::create(move |ctx| {
            let tree = ctx.address();
            let timeouts = SessionTimeoutActor::new(tree.clone().recipient()).start();
            let mut failed = false;
            let log: Option<Box<dyn TxnLog>> = match log {
                None => None,
                Some(LogSetup {
                    dir,
                    log_path,
                    lock,
                    fsync,
                }) => {
                    let report = tree.clone();
                    match LogWriter::start(
                        dir,
                        log_path,
                        lock,
                        super::persistence::LogOptions { fsync },
                        move |event| report.do_send(LogReport(event)),
                    ) {
                        Ok(writer) => Some(Box::new(writer)),
                        Err(e) => {
                            tracing::error!("coordination log unavailable: {e:#}");
                            failed = true;
                            None
                        }
                    }
                }
            };
            let mut actor = TreeActor::new(db, config, TimeoutsLink::of(timeouts), log);
            actor.failed = failed;
            actor
        })
    }

    /// Runs `action` once `zxid` is durable and every earlier held action has run.
    fn hold(&mut self, zxid: i64, action: HeldAction) {
        if self.held.is_empty() && zxid <= self.durable_zxid {
            action();
        } else {
            self.held.push_back((zxid, action));
        }
    }

    fn release(&mut self) {
        while let Some((zxid, _)) = self.held.front() {
            if *zxid > self.durable_zxid {
                break;
            }
            if let Some((_, action)) = self.held.pop_front() {
                action();
            }
        }
    }

    /// Answers after everything already held (and so after every event it could reveal).
    fn reply_later<T: Send + 'static>(&mut self, value: Result<T>) -> ResponseFuture<Result<T>> {
        let (tx, rx) = oneshot::channel();
        let zxid = self.db.last_zxid();
        self.hold(
            zxid,
            Box::new(move || {
                let _ = tx.send(value);
            }),
        );
        Box::pin(async move { rx.await.unwrap_or(Err(CoordinationError::ConnectionLoss)) })
    }

    /// Applies, logs, fires watches; returns one result per op.
    fn commit(&mut self, txn: Txn) -> Vec<OpResult> {
        let record = TxnRecord {
            zxid: self.db.last_zxid() + 1,
            time_ms: now_ms(),
            txn,
        };
        let zxid = record.zxid;
        let applied = self.db.apply(&record);
        match &self.log {
            Some(log) => {
                log.append(record);
                self.since_snapshot += 1;
                if self.since_snapshot >= self.config.snapshot_every {
                    self.since_snapshot = 0;
                    log.snapshot(self.db.to_snapshot());
                }
            }
            None => self.durable_zxid = zxid,
        }
        self.fire(zxid, &applied.triggers);
        applied.results
    }

    fn fire(&mut self, zxid: i64, triggers: &[Trigger]) {
        for trigger in triggers {
            let (event_type, path, watchers) = match trigger {
                Trigger::Created(p) => (EventType::NodeCreated, p, self.data_watches.remove(p)),
                Trigger::DataChanged(p) => {
                    (EventType::NodeDataChanged, p, self.data_watches.remove(p))
                }
                Trigger::Deleted(p) => {
                    let mut all = self.data_watches.remove(p).unwrap_or_default();
                    all.extend(self.child_watches.remove(p).unwrap_or_default());
                    (EventType::NodeDeleted, p, Some(all))
                }
                Trigger::ChildrenChanged(p) => (
                    EventType::NodeChildrenChanged,
                    p,
                    self.child_watches.remove(p),
                ),
            };
            for session in watchers.unwrap_or_default() {
                let Some(live) = self.sessions.get(&session) else {
                    continue;
                };
                let sink = live.sink.clone();
                let event = SessionEvent::Watch(WatchedEvent {
                    event_type,
                    path: path.clone(),
                });
                self.hold(zxid, Box::new(move || sink.deliver(event)));
            }
        }
    }

    fn start_session(
        &mut self,
        id: SessionId,
        timeout: Duration,
        sink: Arc<SessionSink>,
        ctx: &mut Context<Self>,
    ) -> SessionHandle {
        let tree = ctx.address();
        let actor = SessionActor::new(
            id,
            tree.clone().recipient(),
            tree.recipient(),
            self.timeouts.touch.clone(),
        )
        .start();
        self.timeouts.track.do_send(TrackSession {
            session: id,
            timeout,
        });
        self.sessions.insert(
            id,
            LiveSession {
                timeout,
                sink: sink.clone(),
                actor: actor.clone(),
            },
        );
        SessionHandle {
            id,
            timeout,
            actor,
            sink,
        }
    }

    /// Forgets a session whose CloseSession txn was just committed; tells its client when it
    /// expired (rather than closed).
    fn end_session(&mut self, session: SessionId, expired: bool) {
        let Some(live) = self.sessions.remove(&session) else {
            return;
        };
        self.timeouts.untrack.do_send(UntrackSession(session));
        for watches in [&mut self.data_watches, &mut self.child_watches] {
            watches.retain(|_, sessions| {
                sessions.remove(&session);
                !sessions.is_empty()
            });
        }
        let zxid = self.db.last_zxid();
        self.hold(
            zxid,
            Box::new(move || {
                if expired {
                    live.sink
                        .deliver(SessionEvent::State(SessionState::Expired));
                }
                live.actor.do_send(SessionEnded);
            }),
        );
    }

    fn expire(&mut self, session: SessionId) -> bool {
        if self.failed || !self.db.has_session(session) {
            return false;
        }
        tracing::info!(session = format!("{session:#x}"), "session expired");
        self.commit(Txn::CloseSession { session });
        self.end_session(session, true);
        true
    }

    fn write(&mut self, session: SessionId, ops: &[Op]) -> Result<Vec<OpResult>> {
        let mut txns = self.db.prepare(session, ops)?;
        let txn = if txns.len() == 1 {
            txns.pop()
                .ok_or_else(|| CoordinationError::Other("empty write".into()))?
        } else {
            Txn::Multi(txns)
        };
        Ok(self.commit(txn))
    }

    fn execute(&mut self, session: SessionId, request: Request) -> Result<Response> {
        if self.failed {
            return Err(CoordinationError::ConnectionLoss);
        }
        if !self.db.has_session(session) {
            return Err(CoordinationError::SessionExpired);
        }
        let unexpected = || CoordinationError::Other("unexpected op result".into());
        match request {
            Request::GetData { path, watch } => {
                let (data, stat) = self.db.get_data(&path)?;
                if watch {
                    self.data_watches.entry(path).or_default().insert(session);
                }
                Ok(Response::Data(data, stat))
            }
            Request::Exists { path, watch } => {
                let stat = self.db.exists(&path)?;
                if watch {
                    self.data_watches.entry(path).or_default().insert(session);
                }
                Ok(Response::Exists(stat))
            }
            Request::GetChildren { path, watch } => {
                let children = self.db.children(&path)?;
                if watch {
                    self.child_watches.entry(path).or_default().insert(session);
                }
                Ok(Response::Children(children))
            }
            Request::Create { path, data, mode } => {
                match self
                    .write(session, &[Op::Create { path, data, mode }])?
                    .pop()
                {
                    Some(OpResult::Create { path }) => Ok(Response::Created(path)),
                    _ => Err(unexpected()),
                }
            }
            Request::SetData {
                path,
                data,
                version,
            } => match self
                .write(
                    session,
                    &[Op::SetData {
                        path,
                        data,
                        version,
                    }],
                )?
                .pop()
            {
                Some(OpResult::SetData { stat }) => Ok(Response::SetData(stat)),
                _ => Err(unexpected()),
            },
            Request::Delete { path, version } => {
                self.write(session, &[Op::Delete { path, version }])?;
                Ok(Response::Deleted)
            }
            Request::Multi(ops) if ops.is_empty() => Ok(Response::Multi(Vec::new())),
            Request::Multi(ops) => {
                let mut txns = self.db.prepare(session, &ops)?;
                let results = self.commit(if txns.len() == 1 {
                    txns.pop().ok_or_else(unexpected)?
                } else {
                    Txn::Multi(txns)
                });
                Ok(Response::Multi(results))
            }
        }
    }
}

impl Actor for TreeActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Every session's requests funnel here; a full mailbox would reorder a pipelining
        // session's requests, so the mailbox is effectively unbounded.
        ctx.set_mailbox_capacity(usize::MAX >> 2);
        // Sessions restored from disk get a fresh deadline: they expire unless their clients
        // come back in time, as in ZooKeeper.
        let restored: Vec<(SessionId, u64)> =
            self.db.sessions().iter().map(|(s, t)| (*s, *t)).collect();
        for (id, timeout_ms) in restored {
            let sink = SessionSink::new(SinkTarget::Detached);
            self.start_session(id, Duration::from_millis(timeout_ms), sink, ctx);
        }
        if !self.sessions.is_empty() {
            tracing::info!(
                sessions = self.sessions.len(),
                "restored sessions wait for their clients"
            );
        }
    }
}

impl Handler<Execute> for TreeActor {
    type Result = ResponseFuture<Result<Response>>;

    fn handle(&mut self, msg: Execute, _: &mut Context<Self>) -> Self::Result {
        let result = self.execute(msg.session, msg.request);
        self.reply_later(result)
    }
}

impl Handler<OpenSession> for TreeActor {
    type Result = ResponseFuture<Result<SessionHandle>>;

    fn handle(&mut self, msg: OpenSession, ctx: &mut Context<Self>) -> Self::Result {
        if self.failed {
            return self.reply_later(Err(CoordinationError::ConnectionLoss));
        }
        let timeout = self.config.negotiate(msg.timeout);
        let id = self.db.allocate_session_id(session_id_seed());
        self.commit(Txn::CreateSession {
            session: id,
            timeout_ms: timeout.as_millis() as u64,
        });
        let handle = self.start_session(id, timeout, msg.sink, ctx);
        tracing::debug!(session = format!("{id:#x}"), ?timeout, "session opened");
        self.reply_later(Ok(handle))
    }
}

impl Handler<AttachSession> for TreeActor {
    type Result = ResponseFuture<Result<SessionHandle>>;

    fn handle(&mut self, msg: AttachSession, _: &mut Context<Self>) -> Self::Result {
        let result = match self.sessions.get(&msg.session) {
            Some(live) if !self.failed => {
                live.sink.attach(
                    msg.target,
                    Some(ServerMessage::Connected {
                        session_id: msg.session,
                        timeout_ms: live.timeout.as_millis() as u64,
                    }),
                );
                self.timeouts.touch.do_send(Touch(msg.session));
                Ok(SessionHandle {
                    id: msg.session,
                    timeout: live.timeout,
                    actor: live.actor.clone(),
                    sink: live.sink.clone(),
                })
            }
            Some(_) => Err(CoordinationError::ConnectionLoss),
            None => Err(CoordinationError::SessionExpired),
        };
        self.reply_later(result)
    }
}

impl Handler<CloseSession> for TreeActor {
    type Result = ResponseFuture<Result<()>>;

    fn handle(&mut self, msg: CloseSession, _: &mut Context<Self>) -> Self::Result {
        if self.failed {
            return self.reply_later(Err(CoordinationError::ConnectionLoss));
        }
        if self.db.has_session(msg.session) {
            self.commit(Txn::CloseSession {
                session: msg.session,
            });
            self.end_session(msg.session, false);
        }
        self.reply_later(Ok(()))
    }
}

impl Handler<SessionTimedOut> for TreeActor {
    type Result = ();

    fn handle(&mut self, SessionTimedOut(session): SessionTimedOut, _: &mut Context<Self>) {
        self.expire(session);
    }
}

impl Handler<ExpireSession> for TreeActor {
    type Result = bool;

    fn handle(&mut self, ExpireSession(session): ExpireSession, _: &mut Context<Self>) -> bool {
        self.expire(session)
    }
}

impl Handler<SetLink> for TreeActor {
    type Result = bool;

    fn handle(&mut self, msg: SetLink, _: &mut Context<Self>) -> bool {
        match self.sessions.get(&msg.session) {
            Some(live) => {
                live.sink.set_link(msg.up);
                true
            }
            None => false,
        }
    }
}

impl Handler<ListSessions> for TreeActor {
    type Result = MessageResult<ListSessions>;

    fn handle(&mut self, _: ListSessions, _: &mut Context<Self>) -> Self::Result {
        let mut list: Vec<SessionInfo> = self
            .sessions
            .iter()
            .map(|(id, live)| SessionInfo {
                id: *id,
                timeout: live.timeout,
                link_up: live.sink.link_up(),
                attached: live.sink.is_attached(),
                ephemerals: self.db.ephemerals_of(*id),
            })
            .collect();
        list.sort_by_key(|s| s.id);
        MessageResult(list)
    }
}

impl Handler<ListWatches> for TreeActor {
    type Result = MessageResult<ListWatches>;

    fn handle(&mut self, _: ListWatches, _: &mut Context<Self>) -> Self::Result {
        let mut out: BTreeMap<SessionId, Vec<WatchInfo>> = BTreeMap::new();
        for (path, sessions) in &self.data_watches {
            for s in sessions {
                out.entry(*s)
                    .or_default()
                    .push(WatchInfo::Data(path.clone()));
            }
        }
        for (path, sessions) in &self.child_watches {
            for s in sessions {
                out.entry(*s)
                    .or_default()
                    .push(WatchInfo::Children(path.clone()));
            }
        }
        for watches in out.values_mut() {
            watches.sort();
        }
        MessageResult(out)
    }
}

impl Handler<GetStatus> for TreeActor {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(TreeStatus {
            last_zxid: self.db.last_zxid(),
            durable_zxid: self.durable_zxid,
            nodes: self.db.node_count(),
            sessions: self.sessions.len(),
        })
    }
}

impl Handler<LogReport> for TreeActor {
    type Result = ();

    fn handle(&mut self, LogReport(event): LogReport, _: &mut Context<Self>) {
        match event {
            LogEvent::Durable(zxid) => {
                self.durable_zxid = self.durable_zxid.max(zxid);
                self.release();
            }
            LogEvent::Failed(error) => {
                tracing::error!("coordination log failed, refusing requests: {error}");
                self.failed = true;
                // Held replies are dropped: their clients see ConnectionLoss.
                self.held.clear();
            }
        }
    }
}

impl Handler<Shutdown> for TreeActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) -> Self::Result {
        let log = self.log.take();
        ctx.stop();
        Box::pin(async move {
            if let Some(log) = log {
                let _ = tokio::task::spawn_blocking(move || log.close()).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::coordination::session::ClientRequest;
    use crate::actors::coordination::types::CreateMode;
    use std::sync::Mutex;
    use tokio::sync::mpsc;

    /// Stands in for the session-timeout actor: records what the tree asks of it.
    #[derive(Default)]
    struct TimeoutsProbe {
        tracked: Vec<SessionId>,
        untracked: Vec<SessionId>,
    }
    impl Actor for TimeoutsProbe {
        type Context = Context<Self>;
    }
    impl Handler<TrackSession> for TimeoutsProbe {
        type Result = ();
        fn handle(&mut self, msg: TrackSession, _: &mut Context<Self>) {
            self.tracked.push(msg.session);
        }
    }
    impl Handler<UntrackSession> for TimeoutsProbe {
        type Result = ();
        fn handle(&mut self, UntrackSession(s): UntrackSession, _: &mut Context<Self>) {
            self.untracked.push(s);
        }
    }
    impl Handler<Touch> for TimeoutsProbe {
        type Result = ();
        fn handle(&mut self, _: Touch, _: &mut Context<Self>) {}
    }
    #[derive(Message)]
    #[rtype(result = "(Vec<SessionId>, Vec<SessionId>)")]
    struct Probed;
    impl Handler<Probed> for TimeoutsProbe {
        type Result = MessageResult<Probed>;
        fn handle(&mut self, _: Probed, _: &mut Context<Self>) -> Self::Result {
            MessageResult((self.tracked.clone(), self.untracked.clone()))
        }
    }

    /// Stands in for the log writer: keeps records; durability is reported by the test.
    #[derive(Clone, Default)]
    struct ManualLog(Arc<Mutex<Vec<i64>>>);
    impl TxnLog for ManualLog {
        fn append(&self, record: TxnRecord) {
            self.0.lock().unwrap().push(record.zxid);
        }
        fn snapshot(&self, _: Snapshot) {}
        fn close(self: Box<Self>) {}
    }

    struct Fixture {
        tree: Addr<TreeActor>,
        probe: Addr<TimeoutsProbe>,
    }

    fn start(log: Option<Box<dyn TxnLog>>) -> Fixture {
        let probe = TimeoutsProbe::default().start();
        let tree = TreeActor::new(
            Database::new(),
            TreeConfig {
                tick_time: Duration::from_millis(100),
                snapshot_every: 1000,
            },
            TimeoutsLink::of(probe.clone()),
            log,
        )
        .start();
        Fixture { tree, probe }
    }

    async fn open(
        tree: &Addr<TreeActor>,
    ) -> (SessionHandle, mpsc::UnboundedReceiver<SessionEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = tree
            .send(OpenSession {
                timeout: Duration::from_millis(1000),
                sink: SessionSink::new(SinkTarget::Local(tx)),
            })
            .await
            .unwrap()
            .unwrap();
        (handle, rx)
    }

    async fn call(session: &SessionHandle, request: Request) -> Result<Response> {
        session.actor.send(ClientRequest(request)).await.unwrap()
    }

    fn create(path: &str, mode: CreateMode) -> Request {
        Request::Create {
            path: path.into(),
            data: b"d".to_vec(),
            mode,
        }
    }

    fn event(event_type: EventType, path: &str) -> SessionEvent {
        SessionEvent::Watch(WatchedEvent {
            event_type,
            path: path.into(),
        })
    }

    #[actix::test]
    async fn negotiated_timeout_is_clamped_to_ticks_and_session_is_tracked() {
        let f = start(None);
        let (tx, _rx) = mpsc::unbounded_channel();
        let short = f
            .tree
            .send(OpenSession {
                timeout: Duration::from_millis(1),
                sink: SessionSink::new(SinkTarget::Local(tx.clone())),
            })
            .await
            .unwrap()
            .unwrap();
        let long = f
            .tree
            .send(OpenSession {
                timeout: Duration::from_secs(3600),
                sink: SessionSink::new(SinkTarget::Local(tx)),
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(short.timeout, Duration::from_millis(200));
        assert_eq!(long.timeout, Duration::from_millis(2000));
        assert_ne!(short.id, long.id);
        let (tracked, _) = f.probe.send(Probed).await.unwrap();
        assert_eq!(tracked, vec![short.id, long.id]);
    }

    #[actix::test]
    async fn watch_event_reaches_the_watcher_before_the_reply_that_shows_the_change() {
        let f = start(None);
        let (writer, _) = open(&f.tree).await;
        let (watcher, mut events) = open(&f.tree).await;
        call(&writer, create("/a", CreateMode::Persistent))
            .await
            .unwrap();
        call(
            &watcher,
            Request::GetData {
                path: "/a".into(),
                watch: true,
            },
        )
        .await
        .unwrap();
        call(
            &writer,
            Request::SetData {
                path: "/a".into(),
                data: b"new".to_vec(),
                version: None,
            },
        )
        .await
        .unwrap();
        let read = call(
            &watcher,
            Request::GetData {
                path: "/a".into(),
                watch: false,
            },
        )
        .await
        .unwrap();
        assert!(matches!(read, Response::Data(ref d, _) if d == b"new"));
        // Already in the channel by the time the read returned.
        assert_eq!(
            events.try_recv().unwrap(),
            event(EventType::NodeDataChanged, "/a")
        );
        // One-shot: a second change does not fire again.
        call(
            &writer,
            Request::SetData {
                path: "/a".into(),
                data: b"newer".to_vec(),
                version: None,
            },
        )
        .await
        .unwrap();
        call(
            &watcher,
            Request::Exists {
                path: "/a".into(),
                watch: false,
            },
        )
        .await
        .unwrap();
        assert!(events.try_recv().is_err());
    }

    #[actix::test]
    async fn deleting_a_node_fires_data_child_and_parent_watches_once_each() {
        let f = start(None);
        let (s, mut events) = open(&f.tree).await;
        call(&s, create("/p", CreateMode::Persistent))
            .await
            .unwrap();
        call(&s, create("/p/c", CreateMode::Persistent))
            .await
            .unwrap();
        for request in [
            Request::GetData {
                path: "/p/c".into(),
                watch: true,
            },
            Request::Exists {
                path: "/p/c".into(),
                watch: true,
            },
            Request::GetChildren {
                path: "/p/c".into(),
                watch: true,
            },
            Request::GetChildren {
                path: "/p".into(),
                watch: true,
            },
        ] {
            call(&s, request).await.unwrap();
        }
        call(
            &s,
            Request::Delete {
                path: "/p/c".into(),
                version: None,
            },
        )
        .await
        .unwrap();
        let got: Vec<_> = std::iter::from_fn(|| events.try_recv().ok()).collect();
        assert_eq!(
            got,
            vec![
                event(EventType::NodeDeleted, "/p/c"),
                event(EventType::NodeChildrenChanged, "/p"),
            ]
        );
    }

    #[actix::test]
    async fn timed_out_session_loses_ephemerals_fires_watches_and_hears_expired() {
        let f = start(None);
        let (doomed, mut doomed_events) = open(&f.tree).await;
        let (watcher, mut events) = open(&f.tree).await;
        call(&doomed, create("/e", CreateMode::Ephemeral))
            .await
            .unwrap();
        call(
            &watcher,
            Request::Exists {
                path: "/e".into(),
                watch: true,
            },
        )
        .await
        .unwrap();
        f.tree.send(SessionTimedOut(doomed.id)).await.unwrap();
        let gone = call(
            &watcher,
            Request::Exists {
                path: "/e".into(),
                watch: false,
            },
        )
        .await;
        assert_eq!(gone, Ok(Response::Exists(None)));
        assert_eq!(
            events.try_recv().unwrap(),
            event(EventType::NodeDeleted, "/e")
        );
        assert_eq!(
            doomed_events.recv().await.unwrap(),
            SessionEvent::State(SessionState::Expired)
        );
        // An expired session can do nothing: its actor answers SessionExpired or is gone.
        let late = doomed
            .actor
            .send(ClientRequest(create("/x", CreateMode::Persistent)))
            .await;
        assert!(!matches!(late, Ok(Ok(_))));
        let (_, untracked) = f.probe.send(Probed).await.unwrap();
        assert_eq!(untracked, vec![doomed.id]);
        let sessions = f.tree.send(ListSessions).await.unwrap();
        assert_eq!(
            sessions.iter().map(|s| s.id).collect::<Vec<_>>(),
            vec![watcher.id]
        );
    }

    #[actix::test]
    async fn replies_and_events_wait_for_the_log() {
        let log = ManualLog::default();
        let f = start(Some(Box::new(log.clone())));
        // Nothing is durable until reported: the session itself waits.
        let (tx, mut events) = mpsc::unbounded_channel();
        let opening = f.tree.send(OpenSession {
            timeout: Duration::from_millis(1000),
            sink: SessionSink::new(SinkTarget::Local(tx)),
        });
        let opening = tokio::spawn(opening);
        actix_rt::task::yield_now().await;
        f.tree.send(LogReport(LogEvent::Durable(1))).await.unwrap();
        let session = opening.await.unwrap().unwrap().unwrap();
        let creating = tokio::spawn(
            session
                .actor
                .send(ClientRequest(create("/w", CreateMode::Persistent))),
        );
        crate::actors::coordination::support::wait_for(|| async {
            let s = f.tree.send(GetStatus).await.unwrap();
            (s.last_zxid == 2).then_some(())
        })
        .await;
        f.tree.send(LogReport(LogEvent::Durable(2))).await.unwrap();
        creating.await.unwrap().unwrap().unwrap();
        call(
            &session,
            Request::Exists {
                path: "/w".into(),
                watch: true,
            },
        )
        .await
        .unwrap();
        let set = tokio::spawn(session.actor.send(ClientRequest(Request::SetData {
            path: "/w".into(),
            data: vec![],
            version: None,
        })));
        let status = crate::actors::coordination::support::wait_for(|| async {
            let s = f.tree.send(GetStatus).await.unwrap();
            (s.last_zxid == 3).then_some(s)
        })
        .await;
        assert_eq!(status.durable_zxid, 2);
        assert!(events.try_recv().is_err(), "event released before durable");
        assert!(!set.is_finished());
        f.tree.send(LogReport(LogEvent::Durable(3))).await.unwrap();
        assert!(matches!(
            set.await.unwrap().unwrap(),
            Ok(Response::SetData(_))
        ));
        assert_eq!(
            events.try_recv().unwrap(),
            event(EventType::NodeDataChanged, "/w")
        );
        assert_eq!(*log.0.lock().unwrap(), vec![1, 2, 3]);
    }

    #[actix::test]
    async fn failed_log_turns_requests_into_connection_loss() {
        let f = start(Some(Box::new(ManualLog::default())));
        let (tx, _events) = mpsc::unbounded_channel();
        let opening = tokio::spawn(f.tree.send(OpenSession {
            timeout: Duration::from_millis(1000),
            sink: SessionSink::new(SinkTarget::Local(tx)),
        }));
        actix_rt::task::yield_now().await;
        f.tree
            .send(LogReport(LogEvent::Failed("disk full".into())))
            .await
            .unwrap();
        assert!(matches!(
            opening.await.unwrap().unwrap(),
            Err(CoordinationError::ConnectionLoss)
        ));
    }
}
