//! The listening side of the inter-broker wire ([`super::wire`]): one [`PeerServer`] per
//! broker serves every connection other brokers dial to it, on the inter-broker listener or
//! handed over by a client listener it shares (after the connection's first bytes showed
//! [`MAGIC`]).
//!
//! A connection is admitted only after its [`Hello`]: the dialer must name this broker and be
//! registered in `/brokers/ids` with exactly the broker epoch it claims (the
//! [`PeerAuthority`] reads the registration), so a peer claiming an unregistered id, or a
//! previous life of a restarted broker, is refused. When a broker's newer life connects, the
//! connections of its older lives are closed.
//!
//! Every request that names its sender (a controller's id, a follower's replica id, a broker
//! asking for an ISR change or a controlled shutdown) must name the admitted broker, or it is
//! refused. Then requests are served concurrently and answered as they complete, at most
//! `max_in_flight` at a time per connection: at the bound the reader stops reading, so TCP
//! flow control pushes back on the dialer, and a dialer that does not read its answers stalls
//! the writer and so the reader: memory stays bounded. Bad input (wrong magic, garbage,
//! an oversized or undecodable frame, another protocol version) closes that connection and
//! nothing else; so does a request frame left partial for `connections.max.idle.ms`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use super::framing::FrameError;
use super::peer::{PeerHandler, TransportError};
use super::wire::{self, Hello, HelloReply, RequestFrame, ResponseFrame, HANDSHAKE, MAGIC};

/// Who may connect: the broker epochs registered in the coordination service.
pub trait PeerAuthority: Send + Sync + 'static {
    /// The epoch `broker` is registered with now (the czxid of `/brokers/ids/<id>`), `None`
    /// when it is not registered.
    fn registered_epoch(&self, broker: i32) -> BoxFuture<'static, Result<Option<i64>, String>>;
}

/// What one connection may use.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// The largest request frame (`socket.request.max.bytes`).
    pub max_frame_len: usize,
    /// Requests served at once per connection.
    pub max_in_flight: usize,
    /// The dialer's magic and Hello must arrive within this, and its registration be checked.
    pub handshake_timeout: Duration,
    /// A request frame, once its first byte arrived, must be whole within this
    /// (`connections.max.idle.ms`): a stalled partial frame closes the connection. Between
    /// frames an admitted peer may stay silent (a controller's channel can idle for long).
    pub frame_timeout: Duration,
}

impl ServerLimits {
    pub fn from_config(config: &crate::config::BrokerConfig) -> Self {
        Self {
            max_frame_len: config.socket_request_max_bytes.max(1024) as usize,
            max_in_flight: config.queued_max_requests.clamp(1, 1024) as usize,
            handshake_timeout: Duration::from_secs(10),
            frame_timeout: Duration::from_millis(config.connections_max_idle_ms.max(1) as u64),
        }
    }
}

pub struct PeerServer {
    broker_id: i32,
    handler: Arc<dyn PeerHandler>,
    authority: Arc<dyn PeerAuthority>,
    limits: ServerLimits,
    /// The newest admitted broker epoch of each peer; connections of older lives watch it
    /// and close when it moves past theirs. A std Mutex: held for a map lookup only.
    newest_epochs: Mutex<HashMap<i32, watch::Sender<i64>>>,
    /// True once the broker stops: every connection closes.
    stopped: watch::Sender<bool>,
}

impl PeerServer {
    pub fn new(
        broker_id: i32,
        handler: Arc<dyn PeerHandler>,
        authority: Arc<dyn PeerAuthority>,
        limits: ServerLimits,
    ) -> Arc<Self> {
        Arc::new(Self {
            broker_id,
            handler,
            authority,
            limits,
            newest_epochs: Mutex::new(HashMap::new()),
            stopped: watch::channel(false).0,
        })
    }

    /// Closes every connection and refuses new ones.
    pub fn stop(&self) {
        self.stopped.send_replace(true);
    }

    /// Serves one dialed connection until the dialer leaves, misbehaves, a newer life of it
    /// connects, or the server stops.
    pub async fn serve(self: Arc<Self>, stream: TcpStream) {
        let peer = stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "?".into());
        if *self.stopped.borrow() {
            return;
        }
        let _ = stream.set_nodelay(true);
        let (mut reader, mut writer) = stream.into_split();
        let Some((hello, mut newest)) = self.handshake(&mut reader, &mut writer, &peer).await
        else {
            return;
        };
        let from = hello.from;
        tracing::debug!(broker = self.broker_id, from, %peer, "peer connected");

        let framing = wire::framing(self.limits.max_frame_len);
        let (tx, mut rx) = mpsc::channel::<ResponseFrame>(self.limits.max_in_flight);
        let writing = tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                let bytes = match framing.encode(&frame) {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot encode a peer response");
                        break;
                    }
                };
                if writer.write_all(&bytes).await.is_err() {
                    break;
                }
            }
        });

        let permits = Arc::new(Semaphore::new(self.limits.max_in_flight));
        let mut stopped = self.stopped.subscribe();
        let mut tasks = JoinSet::new();
        let epoch = hello.broker_epoch;
        let reason = loop {
            while tasks.try_join_next().is_some() {}
            let permit = tokio::select! {
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => break None,
                },
                why = closing(&mut stopped, &mut newest, epoch, &tx) => break why,
            };
            let frame = tokio::select! {
                frame = framing.read_within::<RequestFrame>(&mut reader, Some(self.limits.frame_timeout)) => frame,
                why = closing(&mut stopped, &mut newest, epoch, &tx) => break why,
            };
            match frame {
                Ok(Some(RequestFrame { id, request })) => {
                    let (handler, tx) = (self.handler.clone(), tx.clone());
                    let me = self.broker_id;
                    tasks.spawn(async move {
                        // A request naming another sender than the admitted one is refused.
                        let result = match request.claimed_sender() {
                            Some(claimed) if claimed != from => Err(TransportError::Refused {
                                to: me,
                                reason: format!(
                                    "{} claims to come from broker {claimed} on broker {from}'s connection",
                                    request.kind()
                                ),
                            }),
                            _ => handler.handle(from, request).await,
                        };
                        let _ = tx.send(ResponseFrame { id, result }).await;
                        drop(permit);
                    });
                }
                Ok(None) => break None,
                // The peer went away (a crash, a cut link): nothing to complain about.
                Err(FrameError::Io(e)) => {
                    tracing::debug!(broker = self.broker_id, from, %peer, error = %e, "peer connection lost");
                    break None;
                }
                Err(e) => break Some(format!("bad frame: {e}")),
            }
        };
        if let Some(reason) = reason {
            tracing::warn!(broker = self.broker_id, from, %peer, %reason, "closing a peer connection");
        }
        tasks.abort_all();
        drop(tx);
        let _ = writing.await;
        tracing::debug!(broker = self.broker_id, from, %peer, "peer connection closed");
    }

    /// Reads and checks the dialer's magic and Hello; answers Welcome (returning the Hello and
    /// a watch of the peer's newest epoch) or Refused.
    async fn handshake(
        &self,
        reader: &mut OwnedReadHalf,
        writer: &mut OwnedWriteHalf,
        peer: &str,
    ) -> Option<(Hello, watch::Receiver<i64>)> {
        let limit = self.limits.handshake_timeout;
        let mut magic = [0u8; 4];
        match tokio::time::timeout(limit, reader.read_exact(&mut magic)).await {
            Ok(Ok(_)) if magic == MAGIC => {}
            Ok(Ok(_)) => {
                tracing::warn!(broker = self.broker_id, %peer, "a connection on the inter-broker port does not speak weir's protocol; closing it");
                return None;
            }
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "peer left during the handshake");
                return None;
            }
            Err(_) => {
                tracing::warn!(broker = self.broker_id, %peer, "no handshake within {limit:?}; closing");
                return None;
            }
        }
        let hello = match tokio::time::timeout(limit, HANDSHAKE.read::<Hello>(reader)).await {
            Ok(Ok(Some(hello))) => hello,
            Ok(Err(FrameError::Version { got, expected })) => {
                tracing::warn!(
                    broker = self.broker_id,
                    %peer,
                    peer_version = got,
                    version = expected,
                    "a peer speaks inter-broker protocol version {got}, this broker speaks {expected}; closing its connection"
                );
                refuse(
                    writer,
                    format!(
                        "broker {} speaks inter-broker protocol version {expected}, not {got}",
                        self.broker_id
                    ),
                )
                .await;
                return None;
            }
            Ok(Ok(None)) => return None,
            Ok(Err(e)) => {
                tracing::warn!(broker = self.broker_id, %peer, error = %e, "bad handshake on the inter-broker port; closing");
                return None;
            }
            Err(_) => {
                tracing::warn!(broker = self.broker_id, %peer, "no Hello within {limit:?}; closing");
                return None;
            }
        };
        let refused = |reason: String| {
            tracing::warn!(broker = self.broker_id, %peer, from = hello.from, %reason, "refusing a peer connection");
            reason
        };
        if hello.to != self.broker_id {
            refuse(
                writer,
                refused(format!(
                    "this is broker {}, not broker {}",
                    self.broker_id, hello.to
                )),
            )
            .await;
            return None;
        }
        let registered =
            tokio::time::timeout(limit, self.authority.registered_epoch(hello.from)).await;
        let problem = match registered {
            Ok(Ok(Some(epoch))) if epoch == hello.broker_epoch => None,
            Ok(Ok(Some(epoch))) => Some(format!(
                "broker {} is registered with broker epoch {epoch}, not {} (a previous life of it)",
                hello.from, hello.broker_epoch
            )),
            Ok(Ok(None)) => Some(format!("broker {} is not registered", hello.from)),
            Ok(Err(e)) => Some(format!(
                "cannot check the registration of broker {}: {e}",
                hello.from
            )),
            Err(_) => Some(format!(
                "checking the registration of broker {} took over {limit:?}",
                hello.from
            )),
        };
        if let Some(reason) = problem {
            refuse(writer, refused(reason)).await;
            return None;
        }
        let newest = {
            let mut epochs = self.newest_epochs.lock().unwrap_or_else(|p| p.into_inner());
            let sender = epochs
                .entry(hello.from)
                .or_insert_with(|| watch::channel(hello.broker_epoch).0);
            sender.send_if_modified(|newest| {
                let newer = *newest < hello.broker_epoch;
                if newer {
                    *newest = hello.broker_epoch;
                }
                newer
            });
            let newest = *sender.borrow();
            (newest <= hello.broker_epoch).then(|| sender.subscribe())
        };
        let Some(newest) = newest else {
            refuse(
                writer,
                refused(format!(
                    "a newer life of broker {} is connected",
                    hello.from
                )),
            )
            .await;
            return None;
        };
        let welcome = HelloReply::Welcome {
            broker_id: self.broker_id,
        };
        let bytes = HANDSHAKE.encode(&welcome).ok()?;
        writer.write_all(&bytes).await.ok()?;
        Some((hello, newest))
    }
}

/// Resolves when the connection must close: the server stopped, a newer life of the peer was
/// admitted (with the reason), or the writer ended.
async fn closing(
    stopped: &mut watch::Receiver<bool>,
    newest: &mut watch::Receiver<i64>,
    epoch: i64,
    tx: &mpsc::Sender<ResponseFrame>,
) -> Option<String> {
    tokio::select! {
        _ = stopped.wait_for(|s| *s) => None,
        _ = newest.wait_for(|e| *e > epoch) => Some(format!("a newer life of the peer (broker epoch above {epoch}) connected")),
        _ = tx.closed() => None,
    }
}

/// Tells the dialer why, then the connection closes (dropped by the caller).
async fn refuse(writer: &mut OwnedWriteHalf, reason: String) {
    if let Ok(bytes) = HANDSHAKE.encode(&HelloReply::Refused { reason }) {
        let _ = writer.write_all(&bytes).await;
    }
    let _ = writer.shutdown().await;
}
