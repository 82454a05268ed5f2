//! One client connection: a reader task that cuts the byte stream into size-prefixed request
//! frames and dispatches each as soon as it arrives, and a writer task that sends the
//! responses back in request order while later requests are still being served (Kafka
//! clients pipeline: librdkafka keeps up to a million requests in flight per connection).
//!
//! Memory stays bounded whatever the client does:
//! - a frame larger than `socket.request.max.bytes` (or with a negative size) closes the
//!   connection before anything is allocated for it;
//! - at most `queued.max.requests` requests are in flight per connection, holding at most
//!   `socket.request.max.bytes` of request bytes; at the bound the reader stops reading, so
//!   TCP flow control pushes back on the client (Kafka goes further and reads one request at
//!   a time per connection; weir lets clients pipeline, within these bounds);
//! - a request's body is read only once the broker-wide [`request_queue::RequestQueue`] (Kafka's request
//!   channel: `queued.max.requests` and `queued.max.request.bytes` over all connections) has
//!   a place for it, so many connections together hold bounded memory too. Each request is
//!   handled in its own task, so it finishes and gives its place back even while its
//!   connection's writer is blocked;
//! - a client that never reads its responses blocks the writer, which stops taking requests,
//!   which stops the reader: the same backpressure (Kafka mutes such a channel);
//! - `connections.max.idle.ms` (default 600 000) closes a connection that sends nothing
//!   between requests for that long, one whose size prefix, once its first byte arrived, or
//!   whose body, once let in, is not whole within that long (a slowloris trickling a partial
//!   frame is dropped however it paces its bytes), and one whose responses make no progress
//!   into its socket for that long (a client that stopped reading).
//!
//! A request that cannot be served (truncated or garbage frame, unknown API key, malformed
//! body) closes the connection, but only after the responses already owed are written.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::api::{self, ApiContext, CloseConnection, Outcome, PendingResponse};
use super::listener::NodeRun;
use super::request_queue;

/// What a connection enforces, from the broker's config.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// `socket.request.max.bytes`.
    pub max_request_bytes: usize,
    /// `queued.max.requests`, applied per connection.
    pub max_in_flight: usize,
    /// `connections.max.idle.ms`.
    pub idle_timeout: Duration,
}

impl ConnectionLimits {
    pub fn from_config(config: &crate::config::BrokerConfig) -> Self {
        Self {
            max_request_bytes: config.socket_request_max_bytes.max(0) as usize,
            max_in_flight: config.queued_max_requests.max(1) as usize,
            idle_timeout: Duration::from_millis(config.connections_max_idle_ms.max(1) as u64),
        }
    }
}

/// What the reader hands the writer, in request order.
enum Pending {
    Response(PendingResponse),
    /// Write what is owed, then close.
    Close(String),
}

/// Serves one connection until the client leaves, misbehaves, or `shutdown` turns true.
pub async fn serve(
    stream: TcpStream,
    ctx: Arc<ApiContext>,
    limits: ConnectionLimits,
    shutdown: watch::Receiver<NodeRun>,
) {
    let peer_addr = stream.peer_addr().ok();
    let peer = peer_addr
        .map(|a| a.to_string())
        .unwrap_or_else(|| "?".into());
    let _ = stream.set_nodelay(true);
    let ctx = ctx.for_connection(peer_addr);
    let (reader, writer) = stream.into_split();
    // Capacity 1: the writer pulls only while it has room in flight, so a full writer
    // stalls the reader right away.
    let (tx, rx) = mpsc::channel(1);
    let writing = tokio::spawn(write_responses(writer, rx, limits, peer.clone()));
    read_requests(reader, tx, &ctx, limits, shutdown, &peer).await;
    let _ = writing.await;
    tracing::debug!(%peer, "connection closed");
}

async fn read_requests(
    mut reader: OwnedReadHalf,
    tx: mpsc::Sender<Pending>,
    ctx: &Arc<ApiContext>,
    limits: ConnectionLimits,
    mut shutdown: watch::Receiver<NodeRun>,
    peer: &str,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    // Request bytes in flight: a frame's bytes stay reserved until its response is done, so
    // a connection holds at most about two maximum-size requests.
    let budget_bytes = limits.max_request_bytes.clamp(1, u32::MAX as usize);
    let budget = Arc::new(tokio::sync::Semaphore::new(budget_bytes));
    loop {
        let size = tokio::select! {
            size = read_size(&mut reader, &mut buf, limits) => size,
            // The writer ended (the client went away or a response asked to close).
            _ = tx.closed() => return,
            _ = shutdown.wait_for(|run| *run == NodeRun::Stopped) => return,
        };
        let size = match size {
            Ok(Some(size)) => size,
            Ok(None) => return,
            Err(reason) => {
                tracing::info!(%peer, %reason, "closing connection");
                let _ = tx.send(Pending::Close(reason)).await;
                return;
            }
        };
        // This connection's bound, then the broker's: until both grant the request, its body
        // is not read (TCP pushes back on the client).
        let weight = size.clamp(1, budget_bytes) as u32;
        let admitted = async {
            let permit = budget.clone().acquire_many_owned(weight).await.ok()?;
            Some((permit, ctx.request_queue.admit(size).await))
        };
        let (permit, place) = tokio::select! {
            admitted = admitted => match admitted {
                Some(admitted) => admitted,
                None => return,
            },
            _ = tx.closed() => return,
            _ = shutdown.wait_for(|run| *run == NodeRun::Stopped) => return,
        };
        let frame = tokio::select! {
            frame = read_body(&mut reader, &mut buf, size, limits) => frame,
            _ = tx.closed() => return,
            _ = shutdown.wait_for(|run| *run == NodeRun::Stopped) => return,
        };
        let frame = match frame {
            Ok(frame) => frame,
            Err(reason) => {
                tracing::info!(%peer, %reason, "closing connection");
                let _ = tx.send(Pending::Close(reason)).await;
                return;
            }
        };
        // A paused broker (fault injection) holds the request as a stopped process would.
        match shutdown
            .wait_for(|run| *run != NodeRun::Paused)
            .await
            .map(|r| *r)
        {
            Ok(NodeRun::Serving) => {}
            _ => return,
        }
        match api::dispatch(ctx, frame) {
            Ok(pending) => {
                // Its own task: the request finishes, and gives its places back, even while
                // the writer is blocked on a client that does not read.
                let handling = tokio::spawn(async move {
                    let outcome = request_queue::holding(place, pending).await;
                    drop(permit);
                    outcome
                });
                let pending: PendingResponse = Box::pin(handling.map(|joined| {
                    joined.unwrap_or_else(|e| Outcome::Close(format!("request task failed: {e}")))
                }));
                if tx.send(Pending::Response(pending)).await.is_err() {
                    return;
                }
            }
            Err(CloseConnection(reason)) => {
                tracing::info!(%peer, %reason, "closing connection");
                let _ = tx.send(Pending::Close(reason)).await;
                return;
            }
        }
    }
}

/// The size of the next request frame, its prefix consumed; `None` when the client closed
/// cleanly between requests. Waiting for a frame's first byte is bounded by the idle timeout;
/// once it came, the size prefix must be whole within the idle timeout too.
async fn read_size(
    reader: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    limits: ConnectionLimits,
) -> Result<Option<usize>, String> {
    let mut deadline = (!buf.is_empty()).then(|| Instant::now() + limits.idle_timeout);
    while buf.len() < 4 {
        let wait_until = deadline.unwrap_or_else(|| Instant::now() + limits.idle_timeout);
        let n = read_more(reader, buf, 4 - buf.len(), wait_until, deadline.is_some()).await?;
        deadline.get_or_insert(wait_until);
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err("truncated frame: the connection ended inside a size prefix".into())
            };
        }
    }
    let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if size < 0 || size as usize > limits.max_request_bytes {
        return Err(format!(
            "request of {size} bytes is larger than socket.request.max.bytes ({})",
            limits.max_request_bytes
        ));
    }
    buf.advance(4);
    Ok(Some(size as usize))
}

/// The `size` bytes of a request frame after its prefix, which must all arrive within the
/// idle timeout of the frame being let in (a slowloris is dropped however it paces them).
async fn read_body(
    reader: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    size: usize,
    limits: ConnectionLimits,
) -> Result<Bytes, String> {
    let deadline = Instant::now() + limits.idle_timeout;
    while buf.len() < size {
        if read_more(reader, buf, size - buf.len(), deadline, true).await? == 0 {
            return Err(format!(
                "truncated frame: the connection ended after {} of {size} bytes",
                buf.len()
            ));
        }
    }
    Ok(buf.split_to(size).freeze())
}

/// Reads at least one byte by `deadline`, growing the buffer towards `wanted` in bounded
/// steps (a huge declared size allocates only as its bytes actually arrive). `in_frame` says
/// whether a frame is under way, for the error.
async fn read_more(
    reader: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    wanted: usize,
    deadline: Instant,
    in_frame: bool,
) -> Result<usize, String> {
    const STEP: usize = 1 << 20;
    if buf.capacity() - buf.len() < wanted.min(STEP) {
        buf.reserve(wanted.clamp(64 * 1024, STEP));
    }
    match tokio::time::timeout_at(deadline, reader.read_buf(buf)).await {
        Err(_) if in_frame => {
            Err("a partial request frame was not completed within connections.max.idle.ms".into())
        }
        Err(_) => Err("idle for connections.max.idle.ms".into()),
        Ok(Err(e)) => Err(format!("read failed: {e}")),
        Ok(Ok(n)) => Ok(n),
    }
}

async fn write_responses(
    mut writer: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Pending>,
    limits: ConnectionLimits,
    peer: String,
) {
    let max_in_flight = limits.max_in_flight;
    let mut in_flight: FuturesOrdered<PendingResponse> = FuturesOrdered::new();
    let mut closing: Option<String> = None;
    let mut input_open = true;
    loop {
        let accepting = input_open && closing.is_none() && in_flight.len() < max_in_flight;
        if in_flight.is_empty() && !accepting {
            break;
        }
        tokio::select! {
            biased;
            Some(outcome) = in_flight.next(), if !in_flight.is_empty() => {
                let mut out: VecDeque<Bytes> = VecDeque::new();
                let mut close = None;
                push_outcome(outcome, &mut out, &mut close);
                // Everything else already done goes out in the same write.
                while close.is_none() && out.iter().map(Bytes::len).sum::<usize>() < 1 << 20 {
                    match in_flight.next().now_or_never() {
                        Some(Some(outcome)) => push_outcome(outcome, &mut out, &mut close),
                        _ => break,
                    }
                }
                if let Err(e) = write_all(&mut writer, out, limits.idle_timeout).await {
                    tracing::info!(%peer, error = %e, "closing connection: write failed");
                    return;
                }
                if let Some(reason) = close {
                    tracing::info!(%peer, %reason, "closing connection");
                    break;
                }
            }
            item = rx.recv(), if accepting => match item {
                Some(Pending::Response(pending)) => in_flight.push_back(pending),
                Some(Pending::Close(reason)) => closing = Some(reason),
                None => input_open = false,
            },
        }
    }
    let _ = writer.flush().await;
    let _ = writer.shutdown().await;
}

fn push_outcome(outcome: Outcome, out: &mut VecDeque<Bytes>, close: &mut Option<String>) {
    match outcome {
        Outcome::Respond(frame) => out.extend(frame.chunks.into_iter().filter(|c| !c.is_empty())),
        Outcome::NoResponse => {}
        Outcome::Close(reason) => *close = Some(reason),
    }
}

/// Writes every chunk with vectored writes (stored record bytes are written from where they
/// are, never copied into one buffer). A socket that takes nothing for `stall_timeout` (the
/// client stopped reading) fails the write.
async fn write_all(
    writer: &mut OwnedWriteHalf,
    mut chunks: VecDeque<Bytes>,
    stall_timeout: Duration,
) -> std::io::Result<()> {
    while !chunks.is_empty() {
        let written = {
            let slices: Vec<IoSlice<'_>> =
                chunks.iter().take(64).map(|c| IoSlice::new(c)).collect();
            tokio::time::timeout(stall_timeout, writer.write_vectored(&slices))
                .await
                .map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client read no response for connections.max.idle.ms",
                    )
                })??
        };
        if written == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                "socket closed",
            ));
        }
        let mut left = written;
        while left > 0 {
            let Some(front) = chunks.front_mut() else {
                break;
            };
            if front.len() <= left {
                left -= front.len();
                chunks.pop_front();
            } else {
                front.advance(left);
                left = 0;
            }
        }
    }
    Ok(())
}
