//! A broker's listener: accepts Kafka client connections and spreads them over the worker
//! arbiters (threads), one tokio task pair per connection. A connection over
//! `max.connections` or `max.connections.per.ip` ([`ConnectionQuotas`]) is closed as it is
//! accepted.

use std::sync::Arc;

use actix::prelude::ArbiterHandle;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::api::ApiContext;
use super::connection::{self, ConnectionLimits};
use super::connection_quotas::{ConnectionQuotas, ListenerKind};

/// What a broker's client side is doing. The fault injection of an in-process cluster
/// pauses a broker (its requests wait, as in a stopped process) and crashes it (listener and
/// connections close).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRun {
    Serving,
    Paused,
    Stopped,
}

/// Accepts until `run` turns [`NodeRun::Stopped`]. `workers` are the arbiters connections
/// run on; empty means the current one.
pub async fn accept_loop(
    listener: std::net::TcpListener,
    ctx: Arc<ApiContext>,
    quotas: Arc<ConnectionQuotas>,
    workers: Vec<ArbiterHandle>,
    shutdown: watch::Receiver<NodeRun>,
) {
    let limits = ConnectionLimits::from_config(&ctx.config);
    let admission = Admission {
        quotas,
        kind: ListenerKind::Client,
    };
    accept_with(
        listener,
        admission,
        workers,
        shutdown,
        move |stream, stop| connection::serve(stream, ctx.clone(), limits, stop),
    )
    .await
}

/// The quotas a listener's connections count against, and as which kind of listener.
#[derive(Debug, Clone)]
pub struct Admission {
    pub quotas: Arc<ConnectionQuotas>,
    pub kind: ListenerKind,
}

/// Accepts until `shutdown` turns [`NodeRun::Stopped`], serving each connection `admission`
/// lets in with `serve` on one of `workers` (round robin; empty means the current arbiter).
/// A listener shared by Kafka clients and peer brokers routes each connection by its first
/// bytes in `serve`.
pub async fn accept_with<F, Fut>(
    listener: std::net::TcpListener,
    admission: Admission,
    workers: Vec<ArbiterHandle>,
    mut shutdown: watch::Receiver<NodeRun>,
    serve: F,
) where
    F: Fn(TcpStream, watch::Receiver<NodeRun>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let serve = Arc::new(serve);
    let local = listener.local_addr().ok();
    if let Err(e) = listener.set_nonblocking(true) {
        tracing::error!(error = %e, "cannot make the listener non-blocking");
        return;
    }
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot register the listener");
            return;
        }
    };
    let mut next = 0usize;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|run| *run == NodeRun::Stopped) => break,
        };
        let (stream, slot) = match accepted {
            Ok((stream, addr)) => match admission.quotas.try_acquire(addr.ip(), admission.kind) {
                Ok(slot) => (stream, slot),
                Err(reason) => {
                    // Dropped unread: the client sees its connection closed.
                    tracing::warn!(peer = %addr, %reason, "refusing a connection");
                    continue;
                }
            },
            Err(e) => {
                // Out of file descriptors and the like: keep serving the others.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let stop = shutdown.clone();
        if workers.is_empty() {
            let serving = serve(stream, stop);
            tokio::spawn(async move {
                serving.await;
                drop(slot);
            });
            continue;
        }
        // A tokio stream belongs to the runtime that accepted it: move the socket itself.
        let std_stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot hand a connection to a worker");
                continue;
            }
        };
        let worker = &workers[next % workers.len()];
        next += 1;
        let serve = serve.clone();
        worker.spawn(async move {
            match TcpStream::from_std(std_stream) {
                Ok(stream) => serve(stream, stop).await,
                Err(e) => tracing::warn!(error = %e, "cannot adopt a connection"),
            }
            drop(slot);
        });
    }
    tracing::debug!(listener = ?local, "listener stopped");
}
