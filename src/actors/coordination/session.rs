//! One client session on the embedded service: the [`SessionActor`] is the session's front door
//! (every request and heartbeat of that client passes through it, stamped with its session id),
//! and the [`SessionSink`] is its back door (the watch events and session-state changes the
//! tree sends it).
//!
//! Ordering: the tree pushes events into the sink synchronously while it handles the write that
//! fired them, and releases the reply of any later request afterwards. Since the sink writes
//! into the same ordered stream the client reads (its event channel in process, its TCP
//! connection otherwise), a client always sees an event before a result that reflects the
//! change behind it: ZooKeeper's ordering guarantee. That is also why events do not travel
//! through this actor's mailbox: a mailbox hop could let a reply overtake them.
//!
//! The sink also models the link between client and service: while the link is cut (fault
//! injection) or no connection is attached (a remote client between connections), events are
//! buffered and delivered on reconnection; if the session expired meanwhile, the client gets
//! only `Expired`, as a ZooKeeper client that reconnects too late.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use actix::prelude::*;
use tokio::sync::mpsc::UnboundedSender;

use super::error::{CoordinationError, Result};
use super::session_timeout::Touch;
use super::tree::{CloseSession, Execute};
use super::types::{Request, Response, SessionEvent, SessionId, SessionState};
use super::wire::ServerMessage;

/// Events kept for a detached session beyond this are dropped (with a warning): a session is
/// detached for at most its timeout, so only a flood of changes gets here.
const MAX_BUFFERED_EVENTS: usize = 100_000;

/// Where a session's events go.
#[derive(Debug)]
pub enum SinkTarget {
    /// An in-process client's event channel.
    Local(UnboundedSender<SessionEvent>),
    /// A `weir coordinator` connection's outgoing frames.
    Remote(UnboundedSender<ServerMessage>),
    /// No client attached (between TCP connections, or restored after a restart).
    Detached,
}

impl SinkTarget {
    /// Sends one event; false when the receiving side is gone.
    fn send(&self, event: SessionEvent) -> std::result::Result<(), SessionEvent> {
        match self {
            SinkTarget::Local(tx) => tx.send(event).map_err(|e| e.0),
            SinkTarget::Remote(tx) => tx.send(ServerMessage::Event(event)).map_err(|e| match e.0 {
                ServerMessage::Event(event) => event,
                _ => SessionEvent::State(SessionState::Disconnected),
            }),
            SinkTarget::Detached => Err(event),
        }
    }

    fn is_same(&self, other: &SinkTarget) -> bool {
        match (self, other) {
            (SinkTarget::Local(a), SinkTarget::Local(b)) => a.same_channel(b),
            (SinkTarget::Remote(a), SinkTarget::Remote(b)) => a.same_channel(b),
            _ => false,
        }
    }
}

#[derive(Debug)]
struct SinkState {
    /// The attached client, if any.
    target: SinkTarget,
    /// False while fault injection cuts this client's link.
    link_up: bool,
    /// Events that could not be delivered yet, in order.
    buffered: VecDeque<SessionEvent>,
    /// Set once the tree ended the session: only `Expired` is left to say.
    expired: bool,
}

/// The session's event outlet, shared by the tree (which delivers) and the client side (which
/// attaches, detaches and cuts the link). A std mutex: held only for a few pushes, never across
/// an await.
#[derive(Debug)]
pub struct SessionSink {
    state: Mutex<SinkState>,
}

impl SessionSink {
    pub fn new(target: SinkTarget) -> Arc<SessionSink> {
        Arc::new(SessionSink {
            state: Mutex::new(SinkState {
                target,
                link_up: true,
                buffered: VecDeque::new(),
                expired: false,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, SinkState> {
        // A poisoned lock only means a panic elsewhere mid-push; the queue is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Delivers (or buffers) one event from the tree.
    pub fn deliver(&self, event: SessionEvent) {
        let mut state = self.lock();
        if event == SessionEvent::State(SessionState::Expired) {
            state.expired = true;
            state.buffered.clear();
        }
        if !state.link_up {
            Self::buffer(&mut state, event);
        } else if let Err(event) = state.target.send(event) {
            state.target = SinkTarget::Detached;
            Self::buffer(&mut state, event);
        }
    }

    fn buffer(state: &mut SinkState, event: SessionEvent) {
        if state.buffered.len() >= MAX_BUFFERED_EVENTS {
            tracing::warn!("dropping a watch event of a detached session: buffer full");
            state.buffered.pop_front();
        }
        state.buffered.push_back(event);
    }

    /// Attaches a (new) client connection: `greeting` first, then whatever was buffered.
    pub fn attach(&self, target: SinkTarget, greeting: Option<ServerMessage>) {
        let mut state = self.lock();
        if let (Some(greeting), SinkTarget::Remote(tx)) = (greeting, &target) {
            let _ = tx.send(greeting);
        }
        state.target = target;
        if state.link_up {
            Self::flush(&mut state);
        }
    }

    /// Detaches `target` if it is still the attached one (a newer connection may have
    /// replaced it already).
    pub fn detach(&self, target: &SinkTarget) {
        let mut state = self.lock();
        if state.target.is_same(target) {
            state.target = SinkTarget::Detached;
        }
    }

    fn flush(state: &mut SinkState) {
        while let Some(event) = state.buffered.pop_front() {
            if let Err(event) = state.target.send(event) {
                state.buffered.push_front(event);
                state.target = SinkTarget::Detached;
                return;
            }
        }
    }

    /// Cuts or heals this client's link (fault injection). A cut tells the client
    /// `Disconnected`; a heal tells it `SyncConnected` and delivers what was held, or only
    /// `Expired` when the session ended meanwhile.
    pub fn set_link(&self, up: bool) {
        let mut state = self.lock();
        if state.link_up == up {
            return;
        }
        state.link_up = up;
        if !up {
            let _ = state
                .target
                .send(SessionEvent::State(SessionState::Disconnected));
            return;
        }
        if state.expired {
            state.buffered.clear();
            state
                .buffered
                .push_back(SessionEvent::State(SessionState::Expired));
        } else {
            state
                .buffered
                .push_front(SessionEvent::State(SessionState::SyncConnected));
        }
        Self::flush(&mut state);
    }

    pub fn link_up(&self) -> bool {
        self.lock().link_up
    }

    pub fn is_attached(&self) -> bool {
        !matches!(self.lock().target, SinkTarget::Detached)
    }

    pub fn is_expired(&self) -> bool {
        self.lock().expired
    }
}

/// A client request, answered once the tree has applied (and made durable) whatever it reads
/// or writes.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Response>")]
pub struct ClientRequest(pub Request);

/// A heartbeat.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<()>")]
pub struct Ping;

/// The client ends its session (its ephemerals go at once).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<()>")]
pub struct Close;

/// From the tree: the session is over; the actor answers `SessionExpired` and stops.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct SessionEnded;

pub struct SessionActor {
    /// Stamped on every request: the owner of the ephemerals this client creates.
    id: SessionId,
    /// Where requests go, in arrival order.
    tree: Recipient<Execute>,
    /// Where a `Close` goes.
    closer: Recipient<CloseSession>,
    /// Told of every sign of life (request or heartbeat).
    timeouts: Recipient<Touch>,
    /// Set when the tree ended the session, so late requests fail fast.
    ended: bool,
}

impl SessionActor {
    pub fn new(
        id: SessionId,
        tree: Recipient<Execute>,
        closer: Recipient<CloseSession>,
        timeouts: Recipient<Touch>,
    ) -> SessionActor {
        SessionActor {
            id,
            tree,
            closer,
            timeouts,
            ended: false,
        }
    }
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // A pipelining client must never have its requests reordered by a full mailbox.
        ctx.set_mailbox_capacity(usize::MAX >> 2);
    }
}

fn mailbox_lost(_: MailboxError) -> CoordinationError {
    CoordinationError::ConnectionLoss
}

impl Handler<ClientRequest> for SessionActor {
    type Result = ResponseFuture<Result<Response>>;

    fn handle(
        &mut self,
        ClientRequest(request): ClientRequest,
        _: &mut Context<Self>,
    ) -> Self::Result {
        if self.ended {
            return Box::pin(async { Err(CoordinationError::SessionExpired) });
        }
        self.timeouts.do_send(Touch(self.id));
        // `send` enqueues now, so requests reach the tree in the order they arrived here.
        let reply = self.tree.send(Execute {
            session: self.id,
            request,
        });
        Box::pin(async move { reply.await.map_err(mailbox_lost)? })
    }
}

impl Handler<Ping> for SessionActor {
    type Result = Result<()>;

    fn handle(&mut self, _: Ping, _: &mut Context<Self>) -> Result<()> {
        if self.ended {
            return Err(CoordinationError::SessionExpired);
        }
        self.timeouts.do_send(Touch(self.id));
        Ok(())
    }
}

impl Handler<Close> for SessionActor {
    type Result = ResponseFuture<Result<()>>;

    fn handle(&mut self, _: Close, _: &mut Context<Self>) -> Self::Result {
        if self.ended {
            return Box::pin(async { Ok(()) });
        }
        let reply = self.closer.send(CloseSession { session: self.id });
        Box::pin(async move { reply.await.map_err(mailbox_lost)? })
    }
}

impl Handler<SessionEnded> for SessionActor {
    type Result = ();

    fn handle(&mut self, _: SessionEnded, ctx: &mut Context<Self>) {
        self.ended = true;
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::coordination::types::{EventType, WatchedEvent};
    use tokio::sync::mpsc;

    /// Stands in for the tree and the session-timeout actor: records what the session sends.
    #[derive(Default)]
    struct Peer {
        executed: Vec<(SessionId, Request)>,
        closed: Vec<SessionId>,
        touched: Vec<SessionId>,
    }
    impl Actor for Peer {
        type Context = Context<Self>;
    }
    impl Handler<Execute> for Peer {
        type Result = Result<Response>;
        fn handle(&mut self, msg: Execute, _: &mut Context<Self>) -> Self::Result {
            self.executed.push((msg.session, msg.request));
            Ok(Response::Deleted)
        }
    }
    impl Handler<CloseSession> for Peer {
        type Result = Result<()>;
        fn handle(&mut self, msg: CloseSession, _: &mut Context<Self>) -> Self::Result {
            self.closed.push(msg.session);
            Ok(())
        }
    }
    impl Handler<Touch> for Peer {
        type Result = ();
        fn handle(&mut self, Touch(s): Touch, _: &mut Context<Self>) {
            self.touched.push(s);
        }
    }
    #[derive(Message)]
    #[rtype(result = "(Vec<(SessionId, Request)>, Vec<SessionId>, Vec<SessionId>)")]
    struct Seen;
    impl Handler<Seen> for Peer {
        type Result = MessageResult<Seen>;
        fn handle(&mut self, _: Seen, _: &mut Context<Self>) -> Self::Result {
            MessageResult((
                self.executed.clone(),
                self.closed.clone(),
                self.touched.clone(),
            ))
        }
    }

    fn delete(path: &str) -> Request {
        Request::Delete {
            path: path.into(),
            version: None,
        }
    }

    #[actix::test]
    async fn session_stamps_requests_in_order_and_reports_life() {
        let peer = Peer::default().start();
        let session = SessionActor::new(
            9,
            peer.clone().recipient(),
            peer.clone().recipient(),
            peer.clone().recipient(),
        )
        .start();
        // Pipelined: all sent before any is awaited.
        let replies: Vec<_> = (0..20)
            .map(|i| session.send(ClientRequest(delete(&format!("/n{i}")))))
            .collect();
        for reply in replies {
            assert_eq!(reply.await.unwrap(), Ok(Response::Deleted));
        }
        session.send(Ping).await.unwrap().unwrap();
        session.send(Close).await.unwrap().unwrap();
        let (executed, closed, touched) = peer.send(Seen).await.unwrap();
        let expected: Vec<_> = (0..20).map(|i| (9, delete(&format!("/n{i}")))).collect();
        assert_eq!(executed, expected);
        assert_eq!(closed, vec![9]);
        assert_eq!(touched.len(), 21);
    }

    #[actix::test]
    async fn ended_session_refuses_requests_and_stops() {
        let peer = Peer::default().start();
        let session = SessionActor::new(
            3,
            peer.clone().recipient(),
            peer.clone().recipient(),
            peer.clone().recipient(),
        )
        .start();
        session.send(SessionEnded).await.unwrap();
        // Either the stopped actor's mailbox is closed or it answers SessionExpired.
        match session.send(ClientRequest(delete("/x"))).await {
            Ok(reply) => assert_eq!(reply, Err(CoordinationError::SessionExpired)),
            Err(MailboxError::Closed) => {}
            Err(other) => panic!("unexpected {other}"),
        }
        let (executed, _, _) = peer.send(Seen).await.unwrap();
        assert!(executed.is_empty());
    }

    fn watch(path: &str) -> SessionEvent {
        SessionEvent::Watch(WatchedEvent {
            event_type: EventType::NodeDataChanged,
            path: path.into(),
        })
    }

    #[test]
    fn cut_link_buffers_events_and_heal_delivers_them_after_sync_connected() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let sink = SessionSink::new(SinkTarget::Local(tx));
        sink.deliver(watch("/a"));
        sink.set_link(false);
        sink.deliver(watch("/b"));
        sink.set_link(true);
        let got: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(
            got,
            vec![
                watch("/a"),
                SessionEvent::State(SessionState::Disconnected),
                SessionEvent::State(SessionState::SyncConnected),
                watch("/b"),
            ]
        );
    }

    #[test]
    fn session_expired_while_cut_reports_only_expired_on_heal() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let sink = SessionSink::new(SinkTarget::Local(tx));
        sink.set_link(false);
        sink.deliver(watch("/a"));
        sink.deliver(SessionEvent::State(SessionState::Expired));
        sink.set_link(true);
        let got: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(
            got,
            vec![
                SessionEvent::State(SessionState::Disconnected),
                SessionEvent::State(SessionState::Expired),
            ]
        );
    }

    #[test]
    fn detached_session_keeps_events_for_the_next_connection() {
        let (old_tx, old_rx) = mpsc::unbounded_channel();
        let sink = SessionSink::new(SinkTarget::Remote(old_tx.clone()));
        drop(old_rx);
        sink.detach(&SinkTarget::Remote(old_tx));
        assert!(!sink.is_attached());
        sink.deliver(watch("/a"));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let greeting = ServerMessage::Connected {
            session_id: 1,
            timeout_ms: 100,
        };
        sink.attach(SinkTarget::Remote(tx), Some(greeting.clone()));
        assert_eq!(rx.try_recv().unwrap(), greeting);
        assert_eq!(rx.try_recv().unwrap(), ServerMessage::Event(watch("/a")));
    }
}
