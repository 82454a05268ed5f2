//! `weir coordinator`'s TCP front end: one task per connection turns frames ([`super::wire`])
//! into messages to the embedded service's actors and their answers back into frames.
//!
//! A connection's first frame opens or resumes a session; from then on its requests go to that
//! session's actor in the order they were read (each `send` is enqueued before the next frame
//! is read, so pipelined requests keep their order), and the answers and the watch events share
//! one outgoing queue drained by a writer task. When the connection ends for any reason the
//! session stays (detached, its events buffered) until it is resumed or times out, as a
//! ZooKeeper session survives a connection loss shorter than its timeout. Bad input (garbage,
//! an oversized or unknown frame, a second `Connect`) closes that connection only.
//!
//! Floods are bounded with ZooKeeper's own limits ([`CoordinatorLimits`]): `maxClientCnxns`
//! connections per client IP (default 60; more are closed as they are accepted), at most
//! `globalOutstandingLimit` requests per connection read but not yet answered on the socket
//! (default 1000; at the bound the connection is not read, so TCP pushes back on a client that
//! floods or never reads its answers), and a connection silent for its session timeout (no
//! frame, or a partial frame not completed) or whose answers make no progress into its socket
//! for that long is closed, as ZooKeeper closes the connection of a session it expires.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;

use crate::protocol::connection_quotas::{ConnectionQuotas, ListenerKind};

use super::embedded::EmbeddedCoordination;
use super::error::CoordinationError;
use super::session::{ClientRequest, Close, Ping, SessionActor, SessionSink, SinkTarget};
use super::tree::{AttachSession, OpenSession, SessionHandle};
use super::wire::{encode_frame, read_frame, ClientMessage, ServerMessage};

/// How long a new connection may take to say `Connect`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// ZooKeeper's limits on what clients may hold.
#[derive(Debug, Clone, Copy)]
pub struct CoordinatorLimits {
    /// `maxClientCnxns`: connections per client IP; 0 is unlimited.
    pub max_client_cnxns: usize,
    /// `globalOutstandingLimit`, applied per connection: requests read and not yet answered.
    pub max_outstanding: usize,
}

impl Default for CoordinatorLimits {
    fn default() -> Self {
        Self {
            max_client_cnxns: 60,
            max_outstanding: 1000,
        }
    }
}

/// A running TCP server; [`CoordinatorServer::stop`] (or dropping it) closes the listener and
/// every connection.
pub struct CoordinatorServer {
    local_addr: SocketAddr,
    accept_loop: JoinHandle<()>,
    /// Flipped to true on stop: every connection task watches it and closes its socket.
    stopping: watch::Sender<bool>,
}

impl CoordinatorServer {
    /// Binds `addr` and serves `service` on it from the current tokio runtime.
    pub async fn bind(
        addr: &str,
        service: EmbeddedCoordination,
    ) -> std::io::Result<CoordinatorServer> {
        Self::bind_with(addr, service, CoordinatorLimits::default()).await
    }

    /// [`CoordinatorServer::bind`] with other limits than ZooKeeper's defaults.
    pub async fn bind_with(
        addr: &str,
        service: EmbeddedCoordination,
        limits: CoordinatorLimits,
    ) -> std::io::Result<CoordinatorServer> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Self::serve_with(listener, service, limits))
    }

    pub fn serve(listener: TcpListener, service: EmbeddedCoordination) -> CoordinatorServer {
        Self::serve_with(listener, service, CoordinatorLimits::default())
    }

    pub fn serve_with(
        listener: TcpListener,
        service: EmbeddedCoordination,
        limits: CoordinatorLimits,
    ) -> CoordinatorServer {
        let local_addr = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let (stopping, stop_signal) = watch::channel(false);
        let per_ip = match limits.max_client_cnxns {
            0 => usize::MAX,
            n => n,
        };
        let quotas = ConnectionQuotas::new(usize::MAX, per_ip, Default::default());
        let accept_loop = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        let slot = match quotas.try_acquire(peer.ip(), ListenerKind::Client) {
                            Ok(slot) => slot,
                            Err(reason) => {
                                let reason =
                                    reason.replace("max.connections.per.ip", "maxClientCnxns");
                                tracing::warn!(%peer, %reason, "refusing a coordination connection");
                                continue;
                            }
                        };
                        let service = service.clone();
                        let stop_signal = stop_signal.clone();
                        tokio::spawn(async move {
                            if let Err(reason) =
                                serve_connection(stream, service, stop_signal, limits).await
                            {
                                tracing::warn!(%peer, "closing coordination connection: {reason}");
                            }
                            drop(slot);
                        });
                    }
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
        CoordinatorServer {
            local_addr,
            accept_loop,
            stopping,
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting and closes every connection (their sessions stay, detached).
    pub fn stop(&self) {
        self.accept_loop.abort();
        let _ = self.stopping.send(true);
    }
}

impl Drop for CoordinatorServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Why a connection was closed by the server (only logged).
type Reason = String;

async fn serve_connection(
    stream: TcpStream,
    service: EmbeddedCoordination,
    mut stopping: watch::Receiver<bool>,
    limits: CoordinatorLimits,
) -> Result<(), Reason> {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let (out, mut outgoing) = mpsc::unbounded_channel::<ServerMessage>();
    // Requests read and not yet answered on the socket: the reader takes a permit per
    // request, the writer gives it back once the answer is written.
    let outstanding = Arc::new(Semaphore::new(limits.max_outstanding.max(1)));
    // Until the session is open, the handshake timeout bounds a stalled write.
    let (stall_tx, stall) = watch::channel(HANDSHAKE_TIMEOUT);
    let written = outstanding.clone();
    let writer_task = tokio::spawn(async move {
        while let Some(message) = outgoing.recv().await {
            let frame = match encode_frame(&message) {
                Ok(frame) => frame,
                Err(e) => {
                    tracing::error!("cannot encode a coordination reply: {e}");
                    continue;
                }
            };
            let limit = *stall.borrow();
            match tokio::time::timeout(limit, writer.write_all(&frame)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break,
                Err(_) => {
                    tracing::warn!(
                        "closing coordination connection: the client read nothing for {limit:?}"
                    );
                    break;
                }
            }
            if matches!(
                message,
                ServerMessage::Reply { .. } | ServerMessage::Ack { .. }
            ) {
                written.add_permits(1);
            }
        }
        // The reader waiting for a permit stops too.
        written.close();
        let _ = writer.shutdown().await;
    });

    let first = tokio::time::timeout(HANDSHAKE_TIMEOUT, read_frame::<ClientMessage>(&mut reader))
        .await
        .map_err(|_| "no Connect within the handshake timeout".to_string())?;
    let (session_id, timeout_ms) = match first {
        Ok(Some(ClientMessage::Connect {
            session_id,
            timeout_ms,
        })) => (session_id, timeout_ms),
        Ok(Some(other)) => {
            writer_task.abort();
            return Err(format!("expected Connect, got {other:?}"));
        }
        Ok(None) => return Ok(()),
        Err(e) => {
            writer_task.abort();
            return Err(e.to_string());
        }
    };
    let target = || SinkTarget::Remote(out.clone());
    let opened = match session_id {
        None => {
            let sink = SessionSink::new(target());
            service
                .tree()
                .send(OpenSession {
                    timeout: Duration::from_millis(timeout_ms),
                    sink,
                })
                .await
                .map_err(|_| CoordinationError::ConnectionLoss)
                .and_then(|r| r)
                .inspect(|handle| {
                    let _ = out.send(ServerMessage::Connected {
                        session_id: handle.id,
                        timeout_ms: handle.timeout.as_millis() as u64,
                    });
                })
        }
        // The tree sends `Connected` itself, ahead of the events buffered for the session.
        Some(session) => service
            .tree()
            .send(AttachSession {
                session,
                target: target(),
            })
            .await
            .map_err(|_| CoordinationError::ConnectionLoss)
            .and_then(|r| r),
    };
    let handle: SessionHandle = match opened {
        Ok(handle) => handle,
        Err(error) => {
            let _ = out.send(ServerMessage::ConnectFailed { error });
            drop(out);
            let _ = tokio::time::timeout(Duration::from_secs(1), writer_task).await;
            return Ok(());
        }
    };

    let _ = stall_tx.send(handle.timeout);
    let result = tokio::select! {
        result = serve_requests(&mut reader, &handle.actor, &out, &outstanding, handle.timeout) => result,
        _ = stopping.wait_for(|stop| *stop) => Err("server stopping".to_string()),
    };
    // The session outlives its connection: it is only detached.
    handle.sink.detach(&SinkTarget::Remote(out.clone()));
    drop(out);
    match result {
        Ok(()) => {
            // Let the answers already owed go out (bounded by a second), then close.
            let mut writer_task = writer_task;
            if tokio::time::timeout(Duration::from_secs(1), &mut writer_task)
                .await
                .is_err()
            {
                writer_task.abort();
            }
            Ok(())
        }
        Err(reason) => {
            writer_task.abort();
            Err(reason)
        }
    }
}

/// Reads requests until the client goes, closes its session, sends something bad, or is
/// silent (or stalls inside a frame) for its session timeout.
async fn serve_requests(
    reader: &mut tokio::net::tcp::OwnedReadHalf,
    session: &Addr<SessionActor>,
    out: &mpsc::UnboundedSender<ServerMessage>,
    outstanding: &Semaphore,
    session_timeout: Duration,
) -> Result<(), Reason> {
    loop {
        // At the bound the socket is not read: TCP flow control pushes back on the client.
        match outstanding.acquire().await {
            Ok(permit) => permit.forget(),
            Err(_) => return Ok(()),
        }
        let read = tokio::time::timeout(session_timeout, read_frame::<ClientMessage>(reader));
        let message = match read.await {
            Ok(Ok(Some(message))) => message,
            Ok(Ok(None)) => return Ok(()),
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => {
                return Err(format!(
                    "no whole frame within the session timeout ({session_timeout:?})"
                ))
            }
        };
        match message {
            ClientMessage::Request { xid, request } => {
                // Enqueued now, answered whenever the tree releases it.
                let reply = session.send(ClientRequest(request));
                let out = out.clone();
                tokio::spawn(async move {
                    let result = reply
                        .await
                        .unwrap_or(Err(CoordinationError::ConnectionLoss));
                    let _ = out.send(ServerMessage::Reply { xid, result });
                });
            }
            ClientMessage::Ping { xid } => {
                let reply = session.send(Ping);
                let out = out.clone();
                tokio::spawn(async move {
                    // A stopped session actor: the session's `Expired` event already went out
                    // (or the service is stopping), so this ack says nothing more.
                    let result = reply
                        .await
                        .unwrap_or(Err(CoordinationError::ConnectionLoss));
                    let _ = out.send(ServerMessage::Ack { xid, result });
                });
            }
            ClientMessage::Close { xid } => {
                let result = session
                    .send(Close)
                    .await
                    .unwrap_or(Err(CoordinationError::ConnectionLoss));
                let _ = out.send(ServerMessage::Ack { xid, result });
                return Ok(());
            }
            ClientMessage::Connect { .. } => {
                return Err("Connect on an established connection".into());
            }
        }
    }
}
