//! The dialing side of the inter-broker wire ([`super::wire`]): [`TcpTransport`] carries a
//! broker's [`PeerRequest`]s to the other brokers' [`super::server::PeerServer`]s, the same
//! requests [`super::peer::LocalTransport`] delivers in one process.
//!
//! One link per destination broker owns one connection (so one per broker pair and
//! direction of use) and a task that:
//! - dials lazily, when the first request comes, at the address the [`PeerDirectory`] gives
//!   (the peer's inter-broker listener, from the controller's metadata or its registration);
//! - reconnects after a failure with exponential backoff (50 ms doubling to 1 s, Kafka's
//!   `reconnect.backoff.ms` / `reconnect.backoff.max.ms`) and ±20 % jitter, so brokers that
//!   lost the same peer do not all call back at once; requests that arrive while a peer is
//!   unreachable fail at the next attempt, and their senders retry on their own schedule;
//! - bounds what waits: at most `max_in_flight` requests per link are queued or unanswered,
//!   a sender beyond that waits for a slot (backpressure, never unbounded memory);
//! - times requests out after `request_timeout` and then drops the connection, as Kafka's
//!   network client does: a peer that stopped answering (a cut link keeps TCP silent) is
//!   dialed afresh.
//!
//! A request to the broker itself goes straight to its own handler.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use rand::Rng;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::framing::FrameError;
use super::peer::{PeerHandler, PeerRequest, PeerResponse, PeerTransport, TransportError};
use super::wire::{self, Hello, HelloReply, RequestFrame, ResponseFrame, HANDSHAKE, MAGIC};

/// Where brokers listen for their peers.
pub trait PeerDirectory: Send + Sync + 'static {
    /// `host:port` of `broker`'s inter-broker listener, if known.
    fn address(&self, broker: i32) -> BoxFuture<'static, Option<String>>;
}

/// How the transport dials and waits.
#[derive(Debug, Clone, Copy)]
pub struct TcpSettings {
    /// A request without an answer after this fails with a timeout and resets its
    /// connection (`controller.socket.timeout.ms`).
    pub request_timeout: Duration,
    /// Connecting and the handshake must finish within this.
    pub connect_timeout: Duration,
    /// Requests queued or unanswered per destination.
    pub max_in_flight: usize,
    /// The largest response frame accepted (`socket.request.max.bytes`).
    pub max_frame_len: usize,
    pub reconnect_backoff: Duration,
    pub reconnect_backoff_max: Duration,
}

impl TcpSettings {
    pub fn from_config(config: &crate::config::BrokerConfig) -> Self {
        let request_timeout =
            Duration::from_millis(config.controller_socket_timeout_ms.max(1) as u64);
        Self {
            request_timeout,
            // Kafka's socket.connection.setup.timeout.ms.
            connect_timeout: request_timeout.min(Duration::from_secs(10)),
            max_in_flight: 64,
            max_frame_len: config.socket_request_max_bytes.max(1024) as usize,
            reconnect_backoff: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(1),
        }
    }
}

pub struct TcpTransport {
    me: i32,
    /// This broker's current broker epoch, sent in every Hello.
    broker_epoch: Arc<AtomicI64>,
    directory: Arc<dyn PeerDirectory>,
    settings: TcpSettings,
    /// This broker's own endpoint: a request to itself does not touch a socket.
    local: RwLock<Option<Arc<dyn PeerHandler>>>,
    /// One per destination, made on first use. A std Mutex: held for a lookup only.
    links: Mutex<HashMap<i32, Arc<Link>>>,
    /// Where link tasks run (the runtime the transport was made on: senders may be actors
    /// on other threads).
    runtime: tokio::runtime::Handle,
    /// True once closed: every link task ends, failing what it held.
    closed: watch::Sender<bool>,
}

/// The sending half of one destination's link.
struct Link {
    /// Slots for queued or unanswered requests.
    permits: Arc<Semaphore>,
    queue: mpsc::Sender<Outgoing>,
}

/// A request on its way, with its slot.
struct Outgoing {
    request: PeerRequest,
    reply: oneshot::Sender<Result<PeerResponse, TransportError>>,
    permit: OwnedSemaphorePermit,
    /// When the sender stops waiting for the answer.
    deadline: Instant,
}

/// A sent request waiting for its answer.
struct Waiting {
    deadline: Instant,
    reply: oneshot::Sender<Result<PeerResponse, TransportError>>,
    _permit: OwnedSemaphorePermit,
}

impl TcpTransport {
    /// Must be called inside a tokio runtime (the actix System's).
    pub fn new(
        me: i32,
        broker_epoch: Arc<AtomicI64>,
        directory: Arc<dyn PeerDirectory>,
        settings: TcpSettings,
    ) -> Arc<Self> {
        Arc::new(Self {
            me,
            broker_epoch,
            directory,
            settings,
            local: RwLock::new(None),
            links: Mutex::new(HashMap::new()),
            runtime: tokio::runtime::Handle::current(),
            closed: watch::channel(false).0,
        })
    }

    /// Sets this broker's own endpoint.
    pub fn register_local(&self, handler: Arc<dyn PeerHandler>) {
        *self.local.write().unwrap_or_else(|p| p.into_inner()) = Some(handler);
    }

    /// Ends every link: queued and unanswered requests fail, no new connection is made.
    pub fn close(&self) {
        self.closed.send_replace(true);
        *self.local.write().unwrap_or_else(|p| p.into_inner()) = None;
        self.links.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn link(&self, to: i32) -> Arc<Link> {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        links
            .entry(to)
            .or_insert_with(|| {
                let (queue, rx) = mpsc::channel(self.settings.max_in_flight);
                let dialer = Dialer {
                    to,
                    me: self.me,
                    broker_epoch: self.broker_epoch.clone(),
                    directory: self.directory.clone(),
                    settings: self.settings,
                };
                self.runtime.spawn(dialer.run(rx, self.closed.subscribe()));
                Arc::new(Link {
                    permits: Arc::new(Semaphore::new(self.settings.max_in_flight)),
                    queue,
                })
            })
            .clone()
    }
}

impl PeerTransport for TcpTransport {
    fn send(
        &self,
        _from: i32,
        to: i32,
        request: PeerRequest,
    ) -> BoxFuture<'static, Result<PeerResponse, TransportError>> {
        if *self.closed.borrow() {
            return Box::pin(futures::future::ready(Err(TransportError::Closed(to))));
        }
        if to == self.me {
            let local = self.local.read().unwrap_or_else(|p| p.into_inner()).clone();
            let me = self.me;
            return Box::pin(async move {
                match local {
                    Some(handler) => handler.handle(me, request).await,
                    None => Err(TransportError::UnknownBroker(me)),
                }
            });
        }
        let link = self.link(to);
        // Taken now, before the caller's own timeout starts (it wraps this future), so this
        // request's deadline never falls after the caller gave up on it.
        let deadline = Instant::now() + self.settings.request_timeout;
        Box::pin(async move {
            let permit = link
                .permits
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| TransportError::Closed(to))?;
            let (reply, answer) = oneshot::channel();
            link.queue
                .send(Outgoing {
                    request,
                    reply,
                    permit,
                    deadline,
                })
                .await
                .map_err(|_| TransportError::Closed(to))?;
            answer.await.unwrap_or(Err(TransportError::Closed(to)))
        })
    }
}

/// Exponential backoff with jitter.
struct Backoff {
    first: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            current: first,
        }
    }

    fn reset(&mut self) {
        self.current = self.first;
    }

    /// The next wait: the current step ±20 %, then the step doubles up to the maximum.
    fn next(&mut self) -> Duration {
        let jitter = rand::thread_rng().gen_range(0.8..1.2);
        let wait = self.current.mul_f64(jitter);
        self.current = (self.current * 2).min(self.max);
        wait
    }
}

/// The task behind one link.
struct Dialer {
    to: i32,
    me: i32,
    broker_epoch: Arc<AtomicI64>,
    directory: Arc<dyn PeerDirectory>,
    settings: TcpSettings,
}

impl Dialer {
    async fn run(self, mut queue: mpsc::Receiver<Outgoing>, mut closed: watch::Receiver<bool>) {
        let to = self.to;
        let mut backoff = Backoff::new(
            self.settings.reconnect_backoff,
            self.settings.reconnect_backoff_max,
        );
        let mut next_attempt = Instant::now();
        // The last failure logged, so a peer that stays down is reported once, not per retry.
        let mut reported: Option<String> = None;
        // A request that found its connection expired goes first on the next one.
        let mut carried: Option<Outgoing> = None;
        loop {
            let first = match carried.take() {
                Some(item) => item,
                None => tokio::select! {
                    item = queue.recv() => match item {
                        Some(item) => item,
                        None => return,
                    },
                    _ = closed.wait_for(|c| *c) => return,
                },
            };
            tokio::select! {
                _ = tokio::time::sleep_until(next_attempt) => {}
                _ = closed.wait_for(|c| *c) => return,
            }
            match self.connect().await {
                Ok((reader, writer)) => {
                    if reported.take().is_some() {
                        tracing::info!(broker = self.me, to, "reached broker {to} again");
                    }
                    backoff.reset();
                    let (why, unsent) = self
                        .serve(first, reader, writer, &mut queue, &mut closed)
                        .await;
                    carried = unsent;
                    tracing::debug!(broker = self.me, to, reason = %why, "connection to a peer closed");
                    next_attempt = Instant::now() + backoff.next();
                }
                Err(e) => {
                    let text = e.to_string();
                    if reported.as_deref() != Some(text.as_str()) {
                        tracing::warn!(broker = self.me, to, error = %text, "cannot reach a peer broker; retrying with backoff");
                        reported = Some(text);
                    }
                    let _ = first.reply.send(Err(e.clone()));
                    while let Ok(item) = queue.try_recv() {
                        let _ = item.reply.send(Err(e.clone()));
                    }
                    next_attempt = Instant::now() + backoff.next();
                }
            }
        }
    }

    /// Dials the peer's inter-broker listener and runs the handshake.
    async fn connect(&self) -> Result<(OwnedReadHalf, OwnedWriteHalf), TransportError> {
        let to = self.to;
        let io = |detail: String| TransportError::Io { to, detail };
        let addr = self
            .directory
            .address(to)
            .await
            .ok_or(TransportError::UnknownBroker(to))?;
        let limit = self.settings.connect_timeout;
        let stream = tokio::time::timeout(limit, TcpStream::connect(&addr))
            .await
            .map_err(|_| io(format!("connecting to {addr} took over {limit:?}")))?
            .map_err(|e| io(format!("connecting to {addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let (mut reader, mut writer) = stream.into_split();
        let hello = Hello {
            from: self.me,
            broker_epoch: self.broker_epoch.load(Ordering::SeqCst),
            to,
        };
        let mut opening = MAGIC.to_vec();
        opening.extend(
            HANDSHAKE
                .encode(&hello)
                .map_err(|e| io(format!("encoding the handshake: {e}")))?,
        );
        let handshake = async {
            writer.write_all(&opening).await?;
            HANDSHAKE.read::<HelloReply>(&mut reader).await
        };
        match tokio::time::timeout(limit, handshake).await {
            Err(_) => Err(io(format!("no handshake answer from {addr} within {limit:?}"))),
            Ok(Ok(Some(HelloReply::Welcome { broker_id }))) if broker_id == to => {
                Ok((reader, writer))
            }
            Ok(Ok(Some(HelloReply::Welcome { broker_id }))) => Err(io(format!(
                "{addr} is broker {broker_id}, not broker {to}"
            ))),
            Ok(Ok(Some(HelloReply::Refused { reason }))) => {
                Err(io(format!("{addr} refused the connection: {reason}")))
            }
            Ok(Ok(None)) => Err(io(format!("{addr} closed the connection in the handshake"))),
            Ok(Err(FrameError::Version { got, expected })) => Err(io(format!(
                "broker {to} at {addr} speaks inter-broker protocol version {got}, this broker speaks {expected}"
            ))),
            Ok(Err(e)) => Err(io(format!("handshake with {addr}: {e}"))),
        }
    }

    /// Sends requests on an open connection until it fails; returns why it ended, and the
    /// request it had not sent yet because an earlier one had expired. Every request still
    /// unanswered then fails.
    async fn serve(
        &self,
        first: Outgoing,
        mut reader: OwnedReadHalf,
        mut writer: OwnedWriteHalf,
        queue: &mut mpsc::Receiver<Outgoing>,
        closed: &mut watch::Receiver<bool>,
    ) -> (String, Option<Outgoing>) {
        let to = self.to;
        let framing = wire::framing(self.settings.max_frame_len);
        // Keyed by id: ids grow with queueing order and every request has the same timeout,
        // so the first entry has the earliest deadline.
        let waiting: Arc<Mutex<BTreeMap<u64, Waiting>>> = Arc::default();
        let mut reading = tokio::spawn({
            let waiting = waiting.clone();
            async move {
                loop {
                    match framing.read::<ResponseFrame>(&mut reader).await {
                        Ok(Some(frame)) => {
                            let entry = waiting
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .remove(&frame.id);
                            if let Some(entry) = entry {
                                let _ = entry.reply.send(frame.result);
                            }
                        }
                        Ok(None) => return "the peer closed the connection".to_string(),
                        Err(e) => return format!("reading from the peer: {e}"),
                    }
                }
            }
        });
        let mut next_id = 0u64;
        let mut next = Some(first);
        let expired = |waiting: &Mutex<BTreeMap<u64, Waiting>>| {
            waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .next()
                .is_some_and(|w| w.deadline <= Instant::now())
        };
        let why = loop {
            if next.is_some() && expired(&waiting) {
                // Do not send on a connection whose peer stopped answering.
                break format!(
                    "a request got no answer within {:?}; reconnecting",
                    self.settings.request_timeout
                );
            }
            if let Some(out) = next.take() {
                if !out.reply.is_closed() {
                    let id = next_id;
                    next_id += 1;
                    match framing.encode(&RequestFrame {
                        id,
                        request: out.request,
                    }) {
                        Ok(bytes) => {
                            waiting.lock().unwrap_or_else(|p| p.into_inner()).insert(
                                id,
                                Waiting {
                                    deadline: out.deadline,
                                    reply: out.reply,
                                    _permit: out.permit,
                                },
                            );
                            let limit = self.settings.request_timeout;
                            match tokio::time::timeout(limit, writer.write_all(&bytes)).await {
                                Ok(Ok(())) => {}
                                Ok(Err(e)) => break format!("writing to the peer: {e}"),
                                Err(_) => break format!("the peer took no bytes for {limit:?}"),
                            }
                        }
                        Err(e) => {
                            let _ = out.reply.send(Err(TransportError::Io {
                                to,
                                detail: format!("encoding the request: {e}"),
                            }));
                        }
                    }
                }
            }
            let oldest = waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .next()
                .map(|w| w.deadline);
            let expiry = async move {
                match oldest {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                item = queue.recv() => match item {
                    Some(item) => next = Some(item),
                    None => break "the transport closed".to_string(),
                },
                done = &mut reading => {
                    break done.unwrap_or_else(|e| format!("the reader failed: {e}"));
                }
                _ = expiry => {
                    break format!(
                        "a request got no answer within {:?}; reconnecting",
                        self.settings.request_timeout
                    );
                }
                _ = closed.wait_for(|c| *c) => break "the transport closed".to_string(),
            }
        };
        reading.abort();
        let now = Instant::now();
        let unanswered = std::mem::take(&mut *waiting.lock().unwrap_or_else(|p| p.into_inner()));
        for (_, entry) in unanswered {
            let error = if entry.deadline <= now {
                TransportError::Timeout {
                    to,
                    after: self.settings.request_timeout,
                }
            } else {
                TransportError::Io {
                    to,
                    detail: why.clone(),
                }
            };
            let _ = entry.reply.send(Err(error));
        }
        (why, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::controller::messages::ControlledShutdown;
    use crate::actors::controller::messages::DeleteTopics;
    use crate::storage::TopicPartition;
    use crate::transport::peer::Peers;
    use crate::transport::server::{PeerAuthority, PeerServer, ServerLimits};
    use std::sync::atomic::AtomicUsize;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// Answers ControlledShutdown after `delay_ms = broker_epoch` with the sender's id as a
    /// partition number; never answers DeleteTopics; counts requests in progress.
    struct TestHandler {
        in_progress: Arc<AtomicUsize>,
        most: Arc<AtomicUsize>,
    }

    impl PeerHandler for TestHandler {
        fn handle(
            &self,
            from: i32,
            request: PeerRequest,
        ) -> BoxFuture<'static, Result<PeerResponse, TransportError>> {
            let (in_progress, most) = (self.in_progress.clone(), self.most.clone());
            Box::pin(async move {
                let now = in_progress.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                let answer = match request {
                    PeerRequest::ControlledShutdown(m) => {
                        tokio::time::sleep(Duration::from_millis(m.broker_epoch as u64)).await;
                        Ok(PeerResponse::ControlledShutdown(Ok(vec![TopicPartition {
                            topic: "from".into(),
                            partition: from,
                        }])))
                    }
                    _ => std::future::pending().await,
                };
                in_progress.fetch_sub(1, Ordering::SeqCst);
                answer
            })
        }
    }

    /// Broker 1 is registered with epoch 100; nobody else.
    struct Registry(Arc<AtomicI64>);

    impl PeerAuthority for Registry {
        fn registered_epoch(&self, broker: i32) -> BoxFuture<'static, Result<Option<i64>, String>> {
            let epoch = self.0.load(Ordering::SeqCst);
            Box::pin(async move { Ok((broker == 1).then_some(epoch)) })
        }
    }

    struct Fixed(Arc<Mutex<String>>);

    impl PeerDirectory for Fixed {
        fn address(&self, _: i32) -> BoxFuture<'static, Option<String>> {
            let addr = self.0.lock().unwrap().clone();
            Box::pin(async move { Some(addr) })
        }
    }

    struct Setup {
        server: Arc<PeerServer>,
        addr: std::net::SocketAddr,
        accept: tokio::task::JoinHandle<()>,
        most: Arc<AtomicUsize>,
        registered: Arc<AtomicI64>,
    }

    async fn serve_on(
        listener: TcpListener,
        server: Arc<PeerServer>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(server.clone().serve(stream));
            }
        })
    }

    /// Broker 2's server on a free port.
    async fn server(limits: ServerLimits) -> Setup {
        server_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), limits).await
    }

    async fn server_on(listener: TcpListener, limits: ServerLimits) -> Setup {
        let addr = listener.local_addr().unwrap();
        let most = Arc::new(AtomicUsize::new(0));
        let registered = Arc::new(AtomicI64::new(100));
        let server = PeerServer::new(
            2,
            Arc::new(TestHandler {
                in_progress: Arc::default(),
                most: most.clone(),
            }),
            Arc::new(Registry(registered.clone())),
            limits,
        );
        let accept = serve_on(listener, server.clone()).await;
        Setup {
            server,
            addr,
            accept,
            most,
            registered,
        }
    }

    fn limits() -> ServerLimits {
        ServerLimits {
            max_frame_len: 1 << 20,
            max_in_flight: 16,
            handshake_timeout: Duration::from_secs(2),
            frame_timeout: Duration::from_secs(2),
        }
    }

    fn settings(timeout_ms: u64) -> TcpSettings {
        TcpSettings {
            request_timeout: Duration::from_millis(timeout_ms),
            connect_timeout: Duration::from_secs(2),
            max_in_flight: 4,
            max_frame_len: 1 << 20,
            reconnect_backoff: Duration::from_millis(20),
            reconnect_backoff_max: Duration::from_millis(100),
        }
    }

    /// Broker 1's transport (epoch `epoch`) pointed at `addr`.
    fn dialer(addr: String, epoch: i64, timeout_ms: u64) -> (Peers, Arc<TcpTransport>) {
        let transport = TcpTransport::new(
            1,
            Arc::new(AtomicI64::new(epoch)),
            Arc::new(Fixed(Arc::new(Mutex::new(addr)))),
            settings(timeout_ms),
        );
        (
            Peers::new(1, transport.clone(), Duration::from_millis(timeout_ms)),
            transport,
        )
    }

    fn shutdown(delay_ms: i64) -> ControlledShutdown {
        ControlledShutdown {
            broker_id: 1,
            broker_epoch: delay_ms,
        }
    }

    #[tokio::test]
    async fn answers_come_back_by_id_whatever_order_they_complete_in() {
        let s = server(limits()).await;
        let (peers, _t) = dialer(s.addr.to_string(), 100, 5_000);
        let slow = peers.controlled_shutdown(2, shutdown(300));
        let fast = async {
            let answer = peers.controlled_shutdown(2, shutdown(0)).await;
            (answer, Instant::now())
        };
        let (slow, (fast, fast_at)) = tokio::join!(
            async {
                let a = slow.await;
                (a, Instant::now())
            },
            fast
        );
        let (slow, slow_at) = slow;
        assert_eq!(slow.unwrap().unwrap()[0].partition, 1, "the sender's id");
        assert!(fast.unwrap().is_ok());
        assert!(
            fast_at < slow_at,
            "the fast answer did not wait for the slow one"
        );
        assert_eq!(s.most.load(Ordering::SeqCst), 2, "both were served at once");
    }

    #[tokio::test]
    async fn a_dialer_that_is_not_registered_with_its_epoch_is_refused() {
        let s = server(limits()).await;
        // A previous life of broker 1 (epoch 99) and an unknown broker 7.
        let (stale, _t) = dialer(s.addr.to_string(), 99, 2_000);
        let err = stale.controlled_shutdown(2, shutdown(0)).await.unwrap_err();
        assert!(err.to_string().contains("previous life"), "{err}");
        let transport = TcpTransport::new(
            7,
            Arc::new(AtomicI64::new(100)),
            Arc::new(Fixed(Arc::new(Mutex::new(s.addr.to_string())))),
            settings(2_000),
        );
        let unknown = Peers::new(7, transport, Duration::from_secs(2));
        let err = unknown
            .controlled_shutdown(2, shutdown(0))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not registered"), "{err}");
        // An admitted broker cannot speak for another one.
        let (peers, _t) = dialer(s.addr.to_string(), 100, 2_000);
        let err = peers
            .controlled_shutdown(
                2,
                ControlledShutdown {
                    broker_id: 3,
                    broker_epoch: 0,
                },
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, TransportError::Refused { reason, .. } if reason.contains("claims to come from broker 3")),
            "{err:?}"
        );
        // The wrong destination is refused too.
        let (peers, _t) = dialer(s.addr.to_string(), 100, 2_000);
        let err = peers.controlled_shutdown(3, shutdown(0)).await.unwrap_err();
        assert!(err.to_string().contains("not broker 3"), "{err}");
        assert!(peers.controlled_shutdown(2, shutdown(0)).await.is_ok());
    }

    #[tokio::test]
    async fn a_newer_life_of_a_broker_closes_the_connections_of_its_older_life() {
        let s = server(limits()).await;
        let (old, _old_transport) = dialer(s.addr.to_string(), 100, 2_000);
        assert!(old.controlled_shutdown(2, shutdown(0)).await.is_ok());
        let pending = tokio::spawn({
            let old = old.clone();
            async move { old.controlled_shutdown(2, shutdown(1_000)).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Broker 1 restarts: registered anew with epoch 101.
        s.registered.store(101, Ordering::SeqCst);
        let (new, _new_transport) = dialer(s.addr.to_string(), 101, 2_000);
        assert!(new.controlled_shutdown(2, shutdown(0)).await.is_ok());
        let err = pending.await.unwrap().unwrap_err();
        assert!(matches!(err, TransportError::Io { .. }), "{err:?}");
        // Reconnecting with the old epoch is refused.
        let err = old.controlled_shutdown(2, shutdown(0)).await.unwrap_err();
        assert!(err.to_string().contains("previous life"), "{err}");
    }

    #[tokio::test]
    async fn a_request_without_answer_times_out_and_the_next_one_uses_a_new_connection() {
        let s = server(limits()).await;
        let (peers, _t) = dialer(s.addr.to_string(), 100, 300);
        let started = Instant::now();
        let err = peers
            .delete_topics(2, DeleteTopics { topics: vec![] })
            .await
            .unwrap_err();
        assert!(matches!(err, TransportError::Timeout { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(peers.controlled_shutdown(2, shutdown(0)).await.is_ok());
    }

    #[tokio::test]
    async fn a_peer_that_comes_back_is_reached_again() {
        let s = server(limits()).await;
        let (peers, _t) = dialer(s.addr.to_string(), 100, 2_000);
        assert!(peers.controlled_shutdown(2, shutdown(0)).await.is_ok());
        // The peer goes away: its listener and connections close.
        s.accept.abort();
        s.server.stop();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let err = peers.controlled_shutdown(2, shutdown(0)).await.unwrap_err();
        assert!(matches!(err, TransportError::Io { .. }), "{err:?}");
        // It restarts on the same port.
        let listener = loop {
            match TcpListener::bind(s.addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let _again = server_on(listener, limits()).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match peers.controlled_shutdown(2, shutdown(0)).await {
                Ok(_) => break,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(error = %e, "not yet");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("never reconnected: {e}"),
            }
        }
    }

    #[tokio::test]
    async fn requests_in_flight_per_link_are_bounded() {
        let s = server(limits()).await;
        // The dialer allows 4 in flight; 10 slow requests never run more than 4 at once.
        let (peers, _t) = dialer(s.addr.to_string(), 100, 5_000);
        let calls: Vec<_> = (0..10)
            .map(|_| peers.controlled_shutdown(2, shutdown(100)))
            .collect();
        for answer in futures::future::join_all(calls).await {
            assert!(answer.is_ok());
        }
        assert_eq!(s.most.load(Ordering::SeqCst), 4);
    }

    /// Writes `bytes` on a fresh connection and reports whether the server closed it.
    async fn closed_after(addr: std::net::SocketAddr, bytes: &[u8]) -> bool {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        let mut buf = vec![0u8; 4096];
        loop {
            match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }

    #[tokio::test]
    async fn bad_input_closes_that_connection_and_nothing_else() {
        let s = server(limits()).await;
        let (peers, _t) = dialer(s.addr.to_string(), 100, 5_000);
        assert!(peers.controlled_shutdown(2, shutdown(0)).await.is_ok());
        let hello = |from: i32, epoch: i64| {
            let mut b = MAGIC.to_vec();
            b.extend(
                HANDSHAKE
                    .encode(&Hello {
                        from,
                        broker_epoch: epoch,
                        to: 2,
                    })
                    .unwrap(),
            );
            b
        };
        // Garbage instead of the magic.
        assert!(closed_after(s.addr, b"GET / HTTP/1.1\r\n\r\n").await);
        // An oversized handshake frame.
        let mut oversized = MAGIC.to_vec();
        oversized.extend((u32::MAX).to_be_bytes());
        assert!(closed_after(s.addr, &oversized).await);
        // Another protocol version.
        let mut other_version = hello(1, 100);
        other_version[8] = wire::PROTOCOL_VERSION + 1;
        assert!(closed_after(s.addr, &other_version).await);
        // An unregistered broker id.
        assert!(closed_after(s.addr, &hello(9, 100)).await);
        // Admitted, then an oversized request frame, then undecodable bytes.
        let mut big = hello(1, 100);
        big.extend((2u32 << 20).to_be_bytes());
        assert!(closed_after(s.addr, &big).await);
        let mut garbage = hello(1, 100);
        garbage.extend([0, 0, 0, 3, wire::PROTOCOL_VERSION, 0xc1, 0xff]);
        assert!(closed_after(s.addr, &garbage).await);
        // The well-behaved connection never noticed.
        assert!(peers.controlled_shutdown(2, shutdown(0)).await.is_ok());
    }

    #[tokio::test]
    async fn silent_dialers_and_stalled_or_truncated_frames_are_dropped_and_the_link_keeps_working()
    {
        let s = server(ServerLimits {
            handshake_timeout: Duration::from_millis(300),
            frame_timeout: Duration::from_millis(300),
            ..limits()
        })
        .await;
        let (peers, _t) = dialer(s.addr.to_string(), 100, 5_000);
        assert!(peers.controlled_shutdown(2, shutdown(0)).await.is_ok());
        let mut hello = MAGIC.to_vec();
        hello.extend(
            HANDSHAKE
                .encode(&Hello {
                    from: 1,
                    broker_epoch: 100,
                    to: 2,
                })
                .unwrap(),
        );
        // A dialer that says nothing, and one that stalls inside its Hello.
        assert!(closed_after(s.addr, b"").await);
        assert!(closed_after(s.addr, &hello[..hello.len() - 2]).await);
        // Admitted, then a request frame that stalls after its first bytes (a slowloris).
        let mut stalled = hello.clone();
        stalled.extend([0, 0, 0, 100, wire::PROTOCOL_VERSION, 0x92]);
        assert!(closed_after(s.addr, &stalled).await);
        // Admitted, then a length that reads as negative.
        let mut negative = hello.clone();
        negative.extend((-2i32).to_be_bytes());
        assert!(closed_after(s.addr, &negative).await);
        // Admitted, then a frame cut short by the end of the stream.
        let mut stream = TcpStream::connect(s.addr).await.unwrap();
        stream.write_all(&stalled).await.unwrap();
        stream.shutdown().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "a truncated frame closes the connection");
        // The well-behaved link never noticed.
        assert!(peers.controlled_shutdown(2, shutdown(0)).await.is_ok());
    }

    #[tokio::test]
    async fn a_request_to_itself_does_not_touch_a_socket() {
        let transport = TcpTransport::new(
            1,
            Arc::new(AtomicI64::new(1)),
            Arc::new(Fixed(Arc::new(Mutex::new("127.0.0.1:1".into())))),
            settings(1_000),
        );
        transport.register_local(Arc::new(TestHandler {
            in_progress: Arc::default(),
            most: Arc::default(),
        }));
        let peers = Peers::new(1, transport.clone(), Duration::from_secs(1));
        assert!(peers.controlled_shutdown(1, shutdown(0)).await.is_ok());
        transport.close();
        assert!(matches!(
            peers.controlled_shutdown(2, shutdown(0)).await,
            Err(TransportError::Closed(2))
        ));
    }
}
