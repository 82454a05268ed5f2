//! The browser console: a live view of the cluster served by weir itself
//! (`weir cluster --ui 127.0.0.1:8080`, `ui.listener` for `weir broker`), off unless asked.
//!
//! The page (HTML, CSS and vanilla JS embedded with `include_str!`: no build step, no CDN)
//! shows brokers and the controller, every partition's leader, replicas, ISR, leader epoch
//! and a log-start / high-water-mark / log-end bar, the consumer groups with their lag, the
//! message trace as a scrolling sequence diagram, and, with `--ui-faults`, the fault
//! console's buttons.
//!
//! # Endpoints
//! | request | answer |
//! |---|---|
//! | `GET /` (`/app.js`, `/style.css`) | the page |
//! | `GET /api/info` | `{"faults": bool, "source": ...}`: whether the fault buttons work |
//! | `GET /api/status` | the latest [`ClusterStatus`] as JSON |
//! | `GET /api/events` | server-sent events: `status` (the whole status, when it changed, at most every [`REFRESH`] plus after each fault) and `trace` (`{"events": [...], "lost": n}`, the trace events of the last [`TRACE_BATCH`], at most [`TRACE_BATCH_MAX`] of them) |
//! | `POST /api/fault` `{"command": "crash 1"}` | a fault console command ([`crate::cluster::faults::Fault`]): 200 `{"ok": true, "reply": ...}`, 409 when refused, 400 when malformed, 403 unless the fault console is enabled |
//!
//! # Who owns what
//! The server never touches the cluster: whoever owns it (the stdin console loop of `weir
//! cluster`, or `weir broker`'s main task) holds the [`UiLink`], publishes a status now and
//! then ([`UiLink::publish`], sent on only when it changed) and answers the fault requests
//! the link yields. The trace comes from the process's trace tap ([`crate::trace::tap`]),
//! opened while a page is connected.
//!
//! A fault is a state change a cross-site page could trigger with a plain form post, so the
//! fault endpoint takes only `application/json` (which a browser sends cross-origin only
//! after a CORS preflight this server never grants), refuses a foreign `Origin`, and a `Host`
//! that is not an IP address or `localhost` (DNS rebinding).

pub mod http;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

use self::http::{ReadError, Request};
use crate::cluster::faults::Fault;
use crate::cluster::status::ClusterStatus;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// How often the owner of the cluster refreshes the status (and so the most often a page
/// gets one, faults aside).
pub const REFRESH: Duration = Duration::from_millis(500);
/// Trace events are sent in batches this far apart.
pub const TRACE_BATCH: Duration = Duration::from_millis(250);
/// At most this many trace events a batch (the newest); the rest are counted as lost.
pub const TRACE_BATCH_MAX: usize = 200;
/// A comment line keeps idle event streams open through proxies and tells a dead client.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// How long a fault request waits for the cluster's owner to answer.
const FAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// One fault console command from the page, and where its answer (`ok …` / `error …`) goes.
#[derive(Debug)]
pub struct FaultRequest {
    pub command: String,
    pub reply: oneshot::Sender<String>,
}

/// The cluster owner's end: publishes statuses, takes fault requests.
pub struct UiLink {
    status: watch::Sender<Arc<String>>,
    faults: mpsc::Receiver<FaultRequest>,
}

impl UiLink {
    /// Publishes `status`; pages get it only if it differs from the last one.
    pub fn publish(&self, status: &ClusterStatus) {
        let json = match serde_json::to_string(status) {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode the status for the console");
                return;
            }
        };
        self.status.send_if_modified(|current| {
            if current.as_str() == json {
                false
            } else {
                *current = Arc::new(json);
                true
            }
        });
    }

    /// The next fault request from a page; pending forever when the fault console is off.
    pub async fn next_fault(&mut self) -> FaultRequest {
        match self.faults.recv().await {
            Some(request) => request,
            None => std::future::pending().await,
        }
    }
}

/// The running server; dropping it (or [`UiServer::stop`]) stops it.
pub struct UiServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
}

impl UiServer {
    /// The address it listens on (with the port it got, for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for UiServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the page is told about the server.
#[derive(Debug, Clone, Serialize)]
struct Info {
    faults: bool,
    source: String,
}

/// What every connection shares.
struct State {
    info: Info,
    status: watch::Receiver<Arc<String>>,
    /// `None` when the fault console is off.
    faults: Option<mpsc::Sender<FaultRequest>>,
}

/// Starts serving on `listen` (`host:port`; port 0 picks one). `faults` enables the fault
/// endpoint; `source` says on the page whose view it is (`"cluster"`, `"broker 2"`).
pub async fn start(listen: &str, faults: bool, source: &str) -> anyhow::Result<(UiServer, UiLink)> {
    let listen = listen
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the console's listener on {listen}"))?;
    let addr = listener.local_addr()?;
    let (status_tx, status_rx) = watch::channel(Arc::new(String::from("{}")));
    let (fault_tx, fault_rx) = mpsc::channel(8);
    let state = Arc::new(State {
        info: Info {
            faults,
            source: source.to_string(),
        },
        status: status_rx,
        faults: faults.then_some(fault_tx),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(accept_loop(listener, state, stop_rx));
    tracing::info!(%addr, faults, "serving the console");
    Ok((
        UiServer {
            addr,
            stop: stop_tx,
        },
        UiLink {
            status: status_tx,
            faults: fault_rx,
        },
    ))
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped(&mut stop) => break,
        };
        match accepted {
            Ok((stream, _)) => {
                let state = state.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve(stream, &state, stop).await {
                        tracing::debug!(error = %e, "console connection ended");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "console accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    tracing::debug!("console stopped");
}

/// Until the server is told to stop (the receiver's guard is not held: it is not `Send`).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec())
}

fn error_body(why: &str) -> Vec<u8> {
    json(&serde_json::json!({ "error": why }))
}

async fn serve(
    mut stream: TcpStream,
    state: &State,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let request = match http::read_request(&mut stream).await {
        Ok(r) => r,
        Err(ReadError::Gone) => return Ok(()),
        Err(ReadError::Bad(status)) => {
            return http::respond(&mut stream, status, "text/plain", status.as_bytes()).await
        }
    };
    const JSON: &str = "application/json";
    match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/") | ("GET", "/index.html") => {
            http::respond(
                &mut stream,
                "200 OK",
                "text/html; charset=utf-8",
                INDEX_HTML.as_bytes(),
            )
            .await
        }
        ("GET", "/app.js") => {
            http::respond(
                &mut stream,
                "200 OK",
                "text/javascript; charset=utf-8",
                APP_JS.as_bytes(),
            )
            .await
        }
        ("GET", "/style.css") => {
            http::respond(
                &mut stream,
                "200 OK",
                "text/css; charset=utf-8",
                STYLE_CSS.as_bytes(),
            )
            .await
        }
        ("GET", "/api/info") => {
            http::respond(&mut stream, "200 OK", JSON, &json(&state.info)).await
        }
        ("GET", "/api/status") => {
            let status = state.status.borrow().clone();
            http::respond(&mut stream, "200 OK", JSON, status.as_bytes()).await
        }
        ("GET", "/api/events") => events(stream, state.status.clone(), stop).await,
        ("POST", "/api/fault") => {
            let (status, body) = fault(&request, state).await;
            http::respond(&mut stream, status, JSON, &body).await
        }
        (
            _,
            "/" | "/index.html" | "/app.js" | "/style.css" | "/api/info" | "/api/status"
            | "/api/events" | "/api/fault",
        ) => {
            http::respond(
                &mut stream,
                "405 Method Not Allowed",
                JSON,
                &error_body("method not allowed"),
            )
            .await
        }
        _ => {
            http::respond(
                &mut stream,
                "404 Not Found",
                JSON,
                &error_body("no such page"),
            )
            .await
        }
    }
}

/// Whether a `Host` header names an IP address or `localhost` (with or without a port): a
/// page served under a DNS name could be a rebinding attack's, whose origin matches its host.
fn is_local_host(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        // `[v6]:port`, `v4:port`, `name:port`; a bare v6 address has more colons.
        Some((name, port))
            if port.chars().all(|c| c.is_ascii_digit()) && !name.contains(':')
                || name.ends_with(']') =>
        {
            name
        }
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.is_empty()
        || name.eq_ignore_ascii_case("localhost")
        || name.parse::<std::net::IpAddr>().is_ok()
}

/// `POST /api/fault`: the answer's status and JSON body.
async fn fault(request: &Request, state: &State) -> (&'static str, Vec<u8>) {
    let Some(faults) = &state.faults else {
        return (
            "403 Forbidden",
            error_body("the fault console is off: start weir with --ui-faults to enable it"),
        );
    };
    let is_json = request
        .header("content-type")
        .is_some_and(|t| t.split(';').next().unwrap_or_default().trim() == "application/json");
    if !is_json {
        return (
            "415 Unsupported Media Type",
            error_body("send application/json"),
        );
    }
    let host = request.header("host").unwrap_or_default();
    if !is_local_host(host) {
        return (
            "403 Forbidden",
            error_body("faults are taken only at an IP address or localhost"),
        );
    }
    if let Some(origin) = request.header("origin") {
        if origin != format!("http://{host}") {
            return (
                "403 Forbidden",
                error_body("faults are taken only from this page"),
            );
        }
    }
    #[derive(serde::Deserialize)]
    struct Body {
        command: String,
    }
    let command = match serde_json::from_slice::<Body>(&request.body) {
        Ok(b) => b.command.trim().to_string(),
        Err(e) => {
            return (
                "400 Bad Request",
                error_body(&format!("expected {{\"command\": \"...\"}}: {e}")),
            )
        }
    };
    if let Err(why) = command.parse::<Fault>() {
        return ("400 Bad Request", error_body(&why));
    }
    let (reply_tx, reply_rx) = oneshot::channel();
    let request = FaultRequest {
        command: command.clone(),
        reply: reply_tx,
    };
    if faults.send(request).await.is_err() {
        return (
            "503 Service Unavailable",
            error_body("the cluster is shutting down"),
        );
    }
    match tokio::time::timeout(FAULT_TIMEOUT, reply_rx).await {
        Ok(Ok(reply)) => match reply.strip_prefix("error ") {
            Some(why) => ("409 Conflict", error_body(why)),
            None => (
                "200 OK",
                json(&serde_json::json!({ "ok": true, "reply": reply })),
            ),
        },
        Ok(Err(_)) => (
            "503 Service Unavailable",
            error_body("the cluster is shutting down"),
        ),
        Err(_) => (
            "504 Gateway Timeout",
            error_body(&format!("`{command}` did not finish in {FAULT_TIMEOUT:?}")),
        ),
    }
}

/// `GET /api/events`: the status whenever it changes, and the trace in batches, until the
/// client goes away or the server stops.
async fn events(
    stream: TcpStream,
    mut status: watch::Receiver<Arc<String>>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    // Nothing more is read but the end: a closed connection shows as EOF.
    let (mut reader, mut writer) = stream.into_split();
    http::start_events(&mut writer).await?;
    let current = status.borrow_and_update().clone();
    http::event(&mut writer, "status", &current).await?;
    let mut trace = crate::trace::tap::subscribe();
    let mut batch: std::collections::VecDeque<Arc<crate::trace::Event>> = Default::default();
    let mut lost = 0u64;
    let mut flush = tokio::time::interval(TRACE_BATCH);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut keepalive =
        tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut probe = [0u8; 64];
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => return Ok(()),
            changed = status.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let current = status.borrow_and_update().clone();
                http::event(&mut writer, "status", &current).await?;
            }
            received = trace.recv() => match received {
                Ok(e) => {
                    if batch.len() == TRACE_BATCH_MAX {
                        batch.pop_front();
                        lost += 1;
                    }
                    batch.push_back(e);
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => lost += n,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
            },
            _ = flush.tick() => {
                if !batch.is_empty() || lost > 0 {
                    let events: Vec<&crate::trace::Event> = batch.iter().map(|e| e.as_ref()).collect();
                    let data = serde_json::json!({ "events": events, "lost": lost });
                    batch.clear();
                    lost = 0;
                    http::event(&mut writer, "trace", &data.to_string()).await?;
                }
            }
            _ = keepalive.tick() => {
                tokio::io::AsyncWriteExt::write_all(&mut writer, b": keepalive\n\n").await?;
            }
            read = tokio::io::AsyncReadExt::read(&mut reader, &mut probe) => {
                if matches!(read, Ok(0) | Err(_)) {
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::status::{BrokerStatus, PartitionStatus};
    use crate::cluster::BrokerState;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    fn status(hwm: i64) -> ClusterStatus {
        ClusterStatus {
            brokers: (1..=3)
                .map(|id| BrokerStatus {
                    id,
                    addr: format!("127.0.0.1:{}", 10_000 + id),
                    state: BrokerState::Up,
                })
                .collect(),
            controller: 2,
            controller_epoch: 1,
            partitions: vec![PartitionStatus {
                topic: "orders".into(),
                partition: 0,
                leader: 1,
                leader_epoch: 0,
                replicas: vec![1, 2, 3],
                isr: vec![1, 2, 3],
                log_start_offset: 0,
                high_watermark: hwm,
                log_end_offset: hwm,
            }],
            groups: Vec::new(),
        }
    }

    /// One request; the status line and the body.
    async fn call(addr: SocketAddr, request: &str) -> (String, String) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        (head.lines().next().unwrap().to_string(), body.to_string())
    }

    fn post_fault(command: &str, content_type: &str, origin: Option<&str>) -> String {
        let body = serde_json::json!({ "command": command }).to_string();
        let origin = origin
            .map(|o| format!("Origin: {o}\r\n"))
            .unwrap_or_default();
        format!(
            "POST /api/fault HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n{origin}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    #[test]
    fn only_addresses_and_localhost_count_as_local_hosts() {
        for host in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST",
            "[::1]:8080",
            "::1",
            "10.0.0.5",
        ] {
            assert!(is_local_host(host), "{host}");
        }
        for host in ["evil.example", "evil.example:8080", "127.0.0.1.nip.io:80"] {
            assert!(!is_local_host(host), "{host}");
        }
    }

    #[tokio::test]
    async fn the_status_endpoint_answers_the_latest_published_status_as_json() {
        let (server, link) = start("127.0.0.1:0", false, "cluster").await.unwrap();
        link.publish(&status(7));
        let (line, body) = call(server.addr(), "GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(line, "HTTP/1.1 200 OK");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["brokers"].as_array().unwrap().len(), 3);
        assert_eq!(json["controller"], 2);
        assert_eq!(json["partitions"][0]["high_watermark"], 7);
        assert_eq!(json["partitions"][0]["log_start_offset"], 0);

        let (line, body) = call(server.addr(), "GET / HTTP/1.1\r\n\r\n").await;
        assert_eq!(line, "HTTP/1.1 200 OK");
        assert!(body.contains("<script src=\"/app.js\">"));
        let (line, _) = call(server.addr(), "GET /nope HTTP/1.1\r\n\r\n").await;
        assert_eq!(line, "HTTP/1.1 404 Not Found");
        let (line, _) = call(server.addr(), "DELETE /api/status HTTP/1.1\r\n\r\n").await;
        assert_eq!(line, "HTTP/1.1 405 Method Not Allowed");
        let (line, _) = call(server.addr(), "garbage\r\n\r\n").await;
        assert_eq!(line, "HTTP/1.1 400 Bad Request");
    }

    #[tokio::test]
    // The guard only serializes the tests that use the process-wide trace hooks; nothing
    // else takes it on this runtime.
    #[allow(clippy::await_holding_lock)]
    async fn the_event_stream_pushes_status_changes_and_trace_batches() {
        let _serial = crate::trace::TEST_RECORDING
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (server, link) = start("127.0.0.1:0", false, "cluster").await.unwrap();
        link.publish(&status(1));
        let mut stream = TcpStream::connect(server.addr()).await.unwrap();
        stream
            .write_all(b"GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut lines = BufReader::new(stream).lines();
        // The next `data:` line of an event named `name`.
        async fn next_event(
            lines: &mut tokio::io::Lines<BufReader<TcpStream>>,
            name: &str,
        ) -> serde_json::Value {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            let mut current = String::new();
            loop {
                let line = tokio::time::timeout_at(deadline, lines.next_line())
                    .await
                    .unwrap_or_else(|_| panic!("no `{name}` event in time"))
                    .unwrap()
                    .expect("the stream stays open");
                if let Some(n) = line.strip_prefix("event: ") {
                    current = n.to_string();
                } else if let Some(data) = line.strip_prefix("data: ") {
                    if current == name {
                        return serde_json::from_str(data).unwrap();
                    }
                }
            }
        }
        assert_eq!(lines.next_line().await.unwrap().unwrap(), "HTTP/1.1 200 OK");
        let first = next_event(&mut lines, "status").await;
        assert_eq!(first["partitions"][0]["high_watermark"], 1);
        // An unchanged status is not sent again; a changed one is.
        link.publish(&status(1));
        link.publish(&status(5));
        let second = next_event(&mut lines, "status").await;
        assert_eq!(second["partitions"][0]["high_watermark"], 5);
        // The page's connection opened the trace tap: an emitted event arrives in a batch.
        crate::trace::emit(crate::trace::Event::new(
            crate::trace::Category::Controller,
            "b2",
            "b2",
            "ControllerElected",
        ));
        let batch = next_event(&mut lines, "trace").await;
        let kinds: Vec<&str> = batch["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["kind"].as_str())
            .collect();
        assert!(kinds.contains(&"ControllerElected"), "batch {batch}");
        drop(lines);
        drop(server);
    }

    #[tokio::test]
    async fn the_fault_endpoint_is_refused_without_the_fault_console() {
        let (server, _link) = start("127.0.0.1:0", false, "cluster").await.unwrap();
        let (line, body) = call(
            server.addr(),
            &post_fault("crash 1", "application/json", None),
        )
        .await;
        assert_eq!(line, "HTTP/1.1 403 Forbidden");
        assert!(body.contains("--ui-faults"), "{body}");
        let (_, info) = call(server.addr(), "GET /api/info HTTP/1.1\r\n\r\n").await;
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&info).unwrap()["faults"],
            false
        );
    }

    #[tokio::test]
    async fn with_the_fault_console_a_fault_reaches_the_cluster_owner_and_its_answer_comes_back() {
        let (server, mut link) = start("127.0.0.1:0", true, "cluster").await.unwrap();
        let owner = tokio::spawn(async move {
            let request = link.next_fault().await;
            let command = request.command.clone();
            request.reply.send(format!("ok {command}")).unwrap();
            let request = link.next_fault().await;
            request
                .reply
                .send("error broker 9 is not in the cluster".into())
                .unwrap();
            command
        });
        let addr = server.addr();
        let (line, body) = call(addr, &post_fault("crash 1", "application/json", None)).await;
        assert_eq!(line, "HTTP/1.1 200 OK", "{body}");
        assert!(body.contains("ok crash 1"));
        let (line, body) = call(addr, &post_fault("crash 9", "application/json", None)).await;
        assert_eq!(line, "HTTP/1.1 409 Conflict");
        assert!(body.contains("not in the cluster"));
        assert_eq!(owner.await.unwrap(), "crash 1");

        // Refused before reaching the owner: not a fault, not JSON, another site's page.
        let (line, _) = call(addr, &post_fault("status", "application/json", None)).await;
        assert_eq!(line, "HTTP/1.1 400 Bad Request");
        let (line, _) = call(addr, &post_fault("crash 1", "text/plain", None)).await;
        assert_eq!(line, "HTTP/1.1 415 Unsupported Media Type");
        let (line, _) = call(
            addr,
            &post_fault("crash 1", "application/json", Some("http://evil.example")),
        )
        .await;
        assert_eq!(line, "HTTP/1.1 403 Forbidden");
        // A DNS-rebound page: its origin matches its host, a name rather than an address.
        let rebound = post_fault(
            "crash 1",
            "application/json",
            Some("http://evil.example:80"),
        )
        .replace("Host: 127.0.0.1", "Host: evil.example:80");
        let (line, _) = call(addr, &rebound).await;
        assert_eq!(line, "HTTP/1.1 403 Forbidden");
    }
}
