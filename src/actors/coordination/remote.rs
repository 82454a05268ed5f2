//! The client of a `weir coordinator` (`zookeeper.connect=weir://host:port`).
//!
//! One manager task owns the TCP connection: it writes requests (each with an `xid`), pings
//! every timeout/3, and reads frames in order (on the coordination I/O thread,
//! [`super::io_thread`], whatever thread the caller is on), so a watch event reaches the session's event
//! channel before the reply that follows it on the wire completes its caller. A connection that
//! breaks, or stays silent for 2/3 of the session timeout (ZooKeeper's read timeout), is lost:
//! in-flight and new requests fail with `ConnectionLoss`, `Disconnected` is reported, and the
//! manager reconnects to resume the same session. The server answers `Connected` (the session
//! survived: `SyncConnected`) or `SessionExpired` (`Expired`, terminal). Dropping every handle
//! without `close()` just drops the connection, leaving the session to expire: a crash.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::error::{CoordinationError, Result};
use super::types::{Request, Response, SessionEvent, SessionId, SessionState};
use super::wire::{encode_frame, read_frame, ClientMessage, FrameError, ServerMessage};

const CONNECTED: u8 = 0;
const DISCONNECTED: u8 = 1;
const EXPIRED: u8 = 2;
const CLOSED: u8 = 3;

enum Command {
    Request(Request, oneshot::Sender<Result<Response>>),
    Close(oneshot::Sender<Result<()>>),
}

struct Shared {
    session_id: SessionId,
    timeout: Duration,
    /// CONNECTED / DISCONNECTED / EXPIRED / CLOSED, so a handle can name the right error once
    /// the manager is gone.
    state: AtomicU8,
    commands: mpsc::UnboundedSender<Command>,
}

/// A session on a `weir coordinator`. Cheap to clone.
#[derive(Clone)]
pub struct RemoteClient {
    shared: Arc<Shared>,
}

/// An established connection: the write half and the frames read by its reader task.
struct Connection {
    writer: OwnedWriteHalf,
    frames: mpsc::UnboundedReceiver<std::result::Result<ServerMessage, FrameError>>,
    reader: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Connects and opens (`session: None`) or resumes a session.
async fn handshake(
    addr: &str,
    session: Option<SessionId>,
    timeout: Duration,
) -> Result<(Connection, SessionId, Duration)> {
    let connect_timeout = timeout.clamp(Duration::from_millis(100), Duration::from_secs(5));
    let stream = tokio::time::timeout(connect_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| CoordinationError::ConnectionLoss)?
        .map_err(|_| CoordinationError::ConnectionLoss)?;
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let hello = encode_frame(&ClientMessage::Connect {
        session_id: session,
        timeout_ms: timeout.as_millis() as u64,
    })
    .map_err(|e| CoordinationError::Other(e.to_string()))?;
    writer
        .write_all(&hello)
        .await
        .map_err(|_| CoordinationError::ConnectionLoss)?;
    let answer = tokio::time::timeout(connect_timeout, read_frame::<ServerMessage>(&mut reader))
        .await
        .map_err(|_| CoordinationError::ConnectionLoss)?;
    let (session_id, timeout) = match answer {
        Ok(Some(ServerMessage::Connected {
            session_id,
            timeout_ms,
        })) => (session_id, Duration::from_millis(timeout_ms)),
        Ok(Some(ServerMessage::ConnectFailed { error })) => return Err(error),
        _ => return Err(CoordinationError::ConnectionLoss),
    };
    let (tx, frames) = mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        loop {
            match read_frame::<ServerMessage>(&mut reader).await {
                Ok(Some(message)) => {
                    if tx.send(Ok(message)).is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
    });
    Ok((
        Connection {
            writer,
            frames,
            reader,
        },
        session_id,
        timeout,
    ))
}

impl RemoteClient {
    /// Opens a session on the coordinator at `addr` (`host:port`).
    pub async fn connect(
        addr: &str,
        timeout: Duration,
        events: mpsc::UnboundedSender<SessionEvent>,
    ) -> Result<RemoteClient> {
        // The connection and its manager live on the coordination I/O thread, so pings and
        // reads never wait for the caller's arbiter.
        let addr = addr.to_string();
        super::io_thread::run(async move {
            let (connection, session_id, timeout) = handshake(&addr, None, timeout).await?;
            let (commands, rx) = mpsc::unbounded_channel();
            let shared = Arc::new(Shared {
                session_id,
                timeout,
                state: AtomicU8::new(CONNECTED),
                commands,
            });
            let _ = events.send(SessionEvent::State(SessionState::SyncConnected));
            let manager = Manager {
                addr,
                shared: shared.clone(),
                commands: rx,
                events,
                next_xid: 1,
            };
            tokio::spawn(manager.run(connection));
            Ok(RemoteClient { shared })
        })
        .await?
    }

    pub fn session_id(&self) -> SessionId {
        self.shared.session_id
    }

    pub fn session_timeout(&self) -> Duration {
        self.shared.timeout
    }

    fn gone(&self) -> CoordinationError {
        match self.shared.state.load(Ordering::SeqCst) {
            EXPIRED | CLOSED => CoordinationError::SessionExpired,
            _ => CoordinationError::ConnectionLoss,
        }
    }

    pub async fn call(&self, request: Request) -> Result<Response> {
        let (tx, rx) = oneshot::channel();
        if self
            .shared
            .commands
            .send(Command::Request(request, tx))
            .is_err()
        {
            return Err(self.gone());
        }
        rx.await.unwrap_or_else(|_| Err(self.gone()))
    }

    pub async fn close(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        if self.shared.commands.send(Command::Close(tx)).is_err() {
            return Ok(());
        }
        rx.await.unwrap_or(Ok(()))
    }
}

/// How a connection ended.
enum Ended {
    /// Every client handle is gone: stop without closing the session.
    ClientGone,
    Closed,
    Expired,
    Lost,
}

enum Pending {
    Request(oneshot::Sender<Result<Response>>),
    Ping,
    Close(oneshot::Sender<Result<()>>),
}

struct Manager {
    addr: String,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<SessionEvent>,
    next_xid: u64,
}

impl Manager {
    fn set_state(&self, state: u8) {
        self.shared.state.store(state, Ordering::SeqCst);
    }

    fn emit(&self, state: SessionState) {
        let _ = self.events.send(SessionEvent::State(state));
    }

    async fn run(mut self, first: Connection) {
        let mut connection = Some(first);
        loop {
            if let Some(conn) = connection.take() {
                match self.serve(conn).await {
                    Ended::ClientGone => return,
                    Ended::Closed => {
                        self.set_state(CLOSED);
                        self.emit(SessionState::Closed);
                        return;
                    }
                    Ended::Expired => {
                        self.set_state(EXPIRED);
                        return;
                    }
                    Ended::Lost => {
                        self.set_state(DISCONNECTED);
                        self.emit(SessionState::Disconnected);
                    }
                }
            }
            match self.reconnect().await {
                Ok(conn) => {
                    self.set_state(CONNECTED);
                    self.emit(SessionState::SyncConnected);
                    connection = Some(conn);
                }
                Err(Ended::Expired) => {
                    self.set_state(EXPIRED);
                    self.emit(SessionState::Expired);
                    return;
                }
                Err(Ended::Closed) => {
                    self.set_state(CLOSED);
                    self.emit(SessionState::Closed);
                    return;
                }
                Err(_) => return,
            }
        }
    }

    /// Retries the coordinator (backing off to 1 s) until the session is resumed or known
    /// expired; requests meanwhile fail with `ConnectionLoss`.
    async fn reconnect(&mut self) -> std::result::Result<Connection, Ended> {
        let mut backoff = Duration::from_millis(20);
        loop {
            match handshake(
                &self.addr,
                Some(self.shared.session_id),
                self.shared.timeout,
            )
            .await
            {
                Ok((conn, _, _)) => return Ok(conn),
                Err(CoordinationError::SessionExpired) => return Err(Ended::Expired),
                Err(_) => {}
            }
            let sleep = tokio::time::sleep(backoff);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    command = self.commands.recv() => match command {
                        None => return Err(Ended::ClientGone),
                        Some(Command::Request(_, reply)) => {
                            let _ = reply.send(Err(CoordinationError::ConnectionLoss));
                        }
                        Some(Command::Close(reply)) => {
                            // The session cannot be closed without a link: left to expire.
                            let _ = reply.send(Err(CoordinationError::ConnectionLoss));
                            return Err(Ended::Closed);
                        }
                    }
                }
            }
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    async fn send(&mut self, conn: &mut Connection, message: ClientMessage) -> bool {
        match encode_frame(&message) {
            Ok(frame) => conn.writer.write_all(&frame).await.is_ok(),
            Err(_) => false,
        }
    }

    async fn serve(&mut self, mut conn: Connection) -> Ended {
        let mut pending: HashMap<u64, Pending> = HashMap::new();
        let period = (self.shared.timeout / 3).max(Duration::from_millis(1));
        let read_timeout = self.shared.timeout * 2 / 3;
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        let mut last_heard = Instant::now();
        let ended = loop {
            tokio::select! {
                command = self.commands.recv() => {
                    let Some(command) = command else { break Ended::ClientGone };
                    let xid = self.next_xid;
                    self.next_xid += 1;
                    let (message, entry) = match command {
                        Command::Request(request, reply) => {
                            (ClientMessage::Request { xid, request }, Pending::Request(reply))
                        }
                        Command::Close(reply) => (ClientMessage::Close { xid }, Pending::Close(reply)),
                    };
                    pending.insert(xid, entry);
                    if !self.send(&mut conn, message).await {
                        break Ended::Lost;
                    }
                }
                frame = conn.frames.recv() => {
                    let Some(Ok(message)) = frame else { break Ended::Lost };
                    last_heard = Instant::now();
                    match message {
                        ServerMessage::Event(event) => {
                            let expired = event == SessionEvent::State(SessionState::Expired);
                            let _ = self.events.send(event);
                            if expired {
                                break Ended::Expired;
                            }
                        }
                        ServerMessage::Reply { xid, result } => {
                            if let Some(Pending::Request(reply)) = pending.remove(&xid) {
                                let _ = reply.send(result);
                            }
                        }
                        ServerMessage::Ack { xid, result } => match pending.remove(&xid) {
                            Some(Pending::Close(reply)) => {
                                let _ = reply.send(result);
                                break Ended::Closed;
                            }
                            Some(Pending::Ping) if result == Err(CoordinationError::SessionExpired) => {
                                self.emit(SessionState::Expired);
                                break Ended::Expired;
                            }
                            _ => {}
                        },
                        ServerMessage::Connected { .. } | ServerMessage::ConnectFailed { .. } => {
                            break Ended::Lost;
                        }
                    }
                }
                _ = ticker.tick() => {
                    if last_heard.elapsed() > read_timeout {
                        tracing::debug!(session = format!("{:#x}", self.shared.session_id), "coordinator silent: connection lost");
                        break Ended::Lost;
                    }
                    let xid = self.next_xid;
                    self.next_xid += 1;
                    pending.insert(xid, Pending::Ping);
                    if !self.send(&mut conn, ClientMessage::Ping { xid }).await {
                        break Ended::Lost;
                    }
                }
            }
        };
        let error = match ended {
            Ended::Expired | Ended::Closed => CoordinationError::SessionExpired,
            _ => CoordinationError::ConnectionLoss,
        };
        for (_, entry) in pending {
            match entry {
                Pending::Request(reply) => {
                    let _ = reply.send(Err(error.clone()));
                }
                Pending::Close(reply) => {
                    let _ = reply.send(Err(error.clone()));
                }
                Pending::Ping => {}
            }
        }
        ended
    }
}
