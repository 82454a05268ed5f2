//! The Prometheus endpoint: a tiny HTTP/1.1 responder (one request per connection, then
//! close) answering `GET /metrics` with a scrape and anything else with 404. It follows its
//! broker's life: it stops with the broker (a crash takes it down) and, while the broker is
//! paused, holds scrapes unanswered as a stopped process would.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::exposition::{self, BrokerView};
use crate::protocol::api::ApiContext;
use crate::protocol::listener::NodeRun;

/// Where each broker's endpoint listens (kept across restarts, so a restarted broker that
/// asked for a free port gets its old one back and scrapers keep finding it).
static ADDRESSES: Mutex<Option<HashMap<i32, SocketAddr>>> = Mutex::new(None);

/// Where broker `id` serves its metrics, once started.
pub fn endpoint_addr(id: i32) -> Option<SocketAddr> {
    ADDRESSES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .and_then(|m| m.get(&id).copied())
}

/// The largest request head read; scrapers send a few hundred bytes.
const MAX_HEAD: usize = 16 * 1024;
/// A client that has not sent its request by then is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `port` on `host`, retrying briefly: a restarted broker's previous endpoint may still
/// be closing.
fn bind(host: &str, port: u16) -> std::io::Result<std::net::TcpListener> {
    let mut last = None;
    for _ in 0..5 {
        match std::net::TcpListener::bind((host, port)) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("bind failed")))
}

/// Starts broker `ctx.broker_id`'s endpoint if `metrics.port` is set, on the host of its
/// first listener; it runs until `run` turns [`NodeRun::Stopped`]. Returns the bound address.
pub fn serve(
    ctx: &ApiContext,
    run: watch::Receiver<NodeRun>,
) -> anyhow::Result<Option<SocketAddr>> {
    let Some(port) = ctx.config.metrics_port else {
        return Ok(None);
    };
    let id = ctx.broker_id;
    let host = ctx
        .config
        .parsed_listeners()
        .first()
        .map(|l| l.host.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "0.0.0.0".into());
    // A restarted broker that asked for a free port gets its previous one back.
    let port = match (port, endpoint_addr(id)) {
        (0, Some(previous)) => previous.port(),
        (p, _) => p,
    };
    let listener = match bind(&host, port) {
        Ok(l) => Ok(l),
        Err(_) if ctx.config.metrics_port == Some(0) => bind(&host, 0),
        Err(e) => Err(e),
    }
    .with_context(|| format!("broker {id}: binding metrics.port on {host}:{port}"))?;
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    super::reset(id);
    super::enable();
    ADDRESSES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(id, addr);
    let view = Arc::new(BrokerView {
        broker_id: id,
        metadata: ctx.metadata.clone(),
        replicas: ctx.replicas.clone(),
        groups: ctx.groups.clone(),
        request_queue: ctx.request_queue.clone(),
    });
    actix::spawn(accept_loop(listener, view, run));
    tracing::info!(broker = id, %addr, "serving metrics");
    Ok(Some(addr))
}

async fn accept_loop(
    listener: std::net::TcpListener,
    view: Arc<BrokerView>,
    mut run: watch::Receiver<NodeRun>,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot register the metrics listener");
            return;
        }
    };
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = run.wait_for(|r| *r == NodeRun::Stopped) => break,
        };
        match accepted {
            Ok((stream, _)) => {
                let view = view.clone();
                let run = run.clone();
                actix::spawn(async move {
                    if let Err(e) = answer(stream, &view, run).await {
                        tracing::debug!(error = %e, "metrics scrape failed");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    tracing::debug!(broker = view.broker_id, "metrics endpoint stopped");
}

/// Reads the request head; `None` if the client went away or sent too much.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            return Ok(Some(String::from_utf8_lossy(&head).into_owned()));
        }
        if head.len() > MAX_HEAD {
            return Ok(None);
        }
    }
}

async fn answer(
    mut stream: TcpStream,
    view: &BrokerView,
    mut run: watch::Receiver<NodeRun>,
) -> std::io::Result<()> {
    let Ok(head) = tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await else {
        return Ok(());
    };
    let Some(head) = head? else {
        return Ok(());
    };
    // A paused broker answers nothing until it resumes; a stopped one never.
    let _ = run.wait_for(|r| *r != NodeRun::Paused).await;
    if *run.borrow() == NodeRun::Stopped {
        return Ok(());
    }
    let request_line = head.lines().next().unwrap_or_default();
    let mut words = request_line.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") | ("GET", "/") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            exposition::scrape(view).await,
        ),
        ("GET", _) => ("404 Not Found", "text/plain", "try /metrics\n".to_string()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n".to_string(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// A minimal scraper: `GET /metrics` from `addr`, the body as text (tests, demos).
pub async fn fetch(addr: SocketAddr) -> anyhow::Result<String> {
    let mut stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .context("connecting to the metrics endpoint timed out")??;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: weir\r\nConnection: close\r\n\r\n")
        .await?;
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .context("reading the scrape timed out")??;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("the answer has no header end")?;
    anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "scrape answered {head}");
    Ok(body.to_string())
}
