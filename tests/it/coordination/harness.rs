//! The backends the conformance suite runs against, each started fresh per test on free
//! loopback ports and temp dirs: the embedded service in process, a `weir coordinator` served
//! in process (same server code as the binary), the real `weir` binary, and Debian's ZooKeeper
//! 3.8. Plus [`LinkProxy`], a TCP relay that can be cut, so a remote or ZooKeeper client can be
//! made silent (no heartbeats) without being closed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};
use weir::actors::coordination::{
    self, CoordinationClient, CoordinationConfig, CoordinatorLimits, CoordinatorServer, CreateMode,
    EmbeddedCoordination, LinkSwitch, SessionEvents,
};

use crate::support::{free_port, require_program};

/// ZooKeeper's tickTime for every backend: session timeouts clamp to [400 ms, 4 s].
pub const TICK: Duration = Duration::from_millis(200);

/// The chroot the remote and ZooKeeper clients use, so chroot handling is always exercised.
pub const CHROOT: &str = "/weir-it";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Embedded,
    /// A `weir coordinator` served from this process.
    Remote,
    /// The `weir coordinator` binary.
    Binary,
    ZooKeeper,
}

enum Running {
    Embedded(EmbeddedCoordination),
    Remote(EmbeddedCoordination, CoordinatorServer),
    Binary(ChildGuard),
    ZooKeeper(ChildGuard),
    Stopped,
}

/// One running backend.
pub struct Service {
    pub kind: Kind,
    running: Running,
    /// The data dir, kept across restarts.
    dir: tempfile::TempDir,
    /// The port clients connect to (stable across restarts).
    port: u16,
}

/// Makes a client silent (no requests, no heartbeats) without closing it, and lets it talk
/// again.
pub enum Silencer {
    Link(LinkSwitch),
    Proxy(LinkProxy),
}

impl Silencer {
    pub fn cut(&self) {
        match self {
            Silencer::Link(link) => link.cut(),
            Silencer::Proxy(proxy) => proxy.cut(),
        }
    }

    pub fn heal(&self) {
        match self {
            Silencer::Link(link) => link.heal(),
            Silencer::Proxy(proxy) => proxy.heal(),
        }
    }
}

impl Service {
    pub async fn start(kind: Kind) -> Service {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut service = Service {
            kind,
            running: Running::Stopped,
            dir,
            port,
        };
        service.launch().await;
        if kind != Kind::Embedded {
            // The remote and ZooKeeper clients run chrooted; the chroot must exist.
            let (root, _) = coordination::connect(
                Some(&format!("{}:{}", service.scheme(), port)),
                Duration::from_secs(2),
                None,
            )
            .await
            .expect("connect without chroot");
            root.create(CHROOT, b"", CreateMode::Persistent)
                .await
                .expect("create the chroot");
            root.close().await.expect("close");
        }
        service
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn scheme(&self) -> &'static str {
        match self.kind {
            Kind::Remote | Kind::Binary => "weir://127.0.0.1",
            _ => "127.0.0.1",
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    async fn launch(&mut self) {
        let config = || CoordinationConfig::persistent(self.data_dir()).with_tick_time(TICK);
        self.running = match self.kind {
            Kind::Embedded => Running::Embedded(
                EmbeddedCoordination::start(config())
                    .await
                    .expect("start embedded"),
            ),
            Kind::Remote => {
                let service = EmbeddedCoordination::start(config())
                    .await
                    .expect("start embedded");
                let addr = format!("127.0.0.1:{}", self.port);
                let server = retry_bind(&addr, service.clone()).await;
                Running::Remote(service, server)
            }
            Kind::Binary => Running::Binary(start_binary(self.port, &self.data_dir()).await),
            Kind::ZooKeeper => {
                let (port, dir) = (self.port, self.dir.path().to_path_buf());
                Running::ZooKeeper(
                    tokio::task::spawn_blocking(move || start_zookeeper(port, &dir))
                        .await
                        .expect("zookeeper start task"),
                )
            }
        };
    }

    /// Stops the backend (a crash for the processes: SIGKILL) and starts it again on the same
    /// data dir and port.
    pub async fn restart(&mut self) {
        match std::mem::replace(&mut self.running, Running::Stopped) {
            Running::Embedded(service) => service.shutdown().await,
            Running::Remote(service, server) => {
                server.stop();
                service.shutdown().await;
            }
            Running::Binary(child) | Running::ZooKeeper(child) => drop(child),
            Running::Stopped => {}
        }
        self.launch().await;
    }

    /// Whether a client connected before a restart resumes its session after it.
    pub fn clients_survive_restart(&self) -> bool {
        self.kind != Kind::Embedded
    }

    /// `zookeeper.connect` for this service on `port`, chroot included.
    pub fn connect_string(&self, port: u16) -> String {
        format!("{}:{port}{CHROOT}", self.scheme())
    }

    pub async fn client(&self, timeout: Duration) -> (CoordinationClient, SessionEvents) {
        self.try_client(timeout).await.expect("connect")
    }

    pub async fn try_client(
        &self,
        timeout: Duration,
    ) -> coordination::Result<(CoordinationClient, SessionEvents)> {
        match &self.running {
            Running::Embedded(service) => coordination::connect(None, timeout, Some(service)).await,
            _ => coordination::connect(Some(&self.connect_string(self.port)), timeout, None).await,
        }
    }

    /// A client opened from `arbiter`'s thread, as a broker opens its session from its own.
    pub async fn client_on(
        &self,
        arbiter: &actix::ArbiterHandle,
        timeout: Duration,
    ) -> (CoordinationClient, SessionEvents) {
        let (embedded, connect) = match &self.running {
            Running::Embedded(service) => (Some(service.clone()), None),
            _ => (None, Some(self.connect_string(self.port))),
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        assert!(arbiter.spawn(async move {
            let opened = coordination::connect(connect.as_deref(), timeout, embedded.as_ref());
            let _ = tx.send(opened.await);
        }));
        rx.await.expect("the arbiter runs").expect("connect")
    }

    /// A client whose link to the service can be cut.
    pub async fn silenceable_client(
        &self,
        timeout: Duration,
    ) -> (CoordinationClient, SessionEvents, Silencer) {
        match &self.running {
            Running::Embedded(service) => {
                let (client, events) = coordination::connect(None, timeout, Some(service))
                    .await
                    .expect("connect");
                let link = client
                    .link_switch()
                    .expect("embedded clients have a link switch");
                (client, events, Silencer::Link(link))
            }
            _ => {
                let target = SocketAddr::from(([127, 0, 0, 1], self.port));
                let proxy = LinkProxy::start(target).await;
                let connect = self.connect_string(proxy.port());
                let (client, events) = coordination::connect(Some(&connect), timeout, None)
                    .await
                    .expect("connect through the proxy");
                (client, events, Silencer::Proxy(proxy))
            }
        }
    }
}

/// No per-IP connection limit: the conformance suite opens a hundred sessions from one
/// address (the ZooKeeper it also runs against has `maxClientCnxns=0` too).
const UNLIMITED: CoordinatorLimits = CoordinatorLimits {
    max_client_cnxns: 0,
    max_outstanding: 1000,
};

async fn retry_bind(addr: &str, service: EmbeddedCoordination) -> CoordinatorServer {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match CoordinatorServer::bind_with(addr, service.clone(), UNLIMITED).await {
            Ok(server) => return server,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!("bind {addr}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("bind {addr}: {e}"),
        }
    }
}

/// A child process killed (SIGKILL) and reaped on drop.
pub struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `weir coordinator` on `port`, waited for until it prints its address.
pub async fn start_binary(port: u16, data_dir: &Path) -> ChildGuard {
    start_binary_on(&format!("127.0.0.1:{port}"), data_dir).await
}

/// `weir coordinator` listening on `listen` (`host:port`).
pub async fn start_binary_on(listen: &str, data_dir: &Path) -> ChildGuard {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["coordinator", "--max-client-cnxns", "0", "--listen", listen])
        .arg("--data-dir")
        .arg(data_dir)
        .env("WEIR_COORDINATOR_TICK_MS", TICK.as_millis().to_string())
        .env("WEIR_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn weir coordinator");
    let stdout = child.stdout.take().expect("piped stdout");
    let guard = ChildGuard(child);
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let line = tokio::time::timeout(Duration::from_secs(20), line)
        .await
        .expect("weir coordinator printed nothing within 20 s")
        .expect("reader task")
        .expect("read stdout");
    assert_eq!(line.trim(), format!("listening {listen}"));
    guard
}

/// ZooKeeper 3.8 standalone on `port` with its data under `dir`, ready to serve.
pub fn start_zookeeper(port: u16, dir: &Path) -> ChildGuard {
    require_program("java");
    let data = dir.join("zk-data");
    std::fs::create_dir_all(&data).expect("zookeeper data dir");
    let cfg = dir.join("zoo.cfg");
    let mut file = std::fs::File::create(&cfg).expect("zoo.cfg");
    write!(
        file,
        "tickTime={}\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
         admin.enableServer=false\nmaxClientCnxns=0\n4lw.commands.whitelist=srvr\n",
        TICK.as_millis(),
        data.display()
    )
    .expect("write zoo.cfg");
    let log = std::fs::File::create(dir.join("zookeeper.log")).expect("zookeeper log");
    let child = Command::new("java")
        .args([
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Dzookeeper.admin.enableServer=false",
            "-cp",
            "/usr/share/java/*",
            "org.apache.zookeeper.server.ZooKeeperServerMain",
        ])
        .arg(&cfg)
        .stdout(log.try_clone().expect("log handle"))
        .stderr(log)
        .spawn()
        .expect("spawn java (scripts/test.sh installs the zookeeper package)");
    let guard = ChildGuard(child);
    // Ready once it answers the `srvr` four-letter command.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut stream) = StdTcpStream::connect(("127.0.0.1", port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut answer = String::new();
            if stream.write_all(b"srvr").is_ok()
                && stream.read_to_string(&mut answer).is_ok()
                && answer.contains("Mode:")
            {
                return guard;
            }
        }
        assert!(
            Instant::now() < deadline,
            "ZooKeeper did not start within 30 s: see {}",
            dir.join("zookeeper.log").display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A TCP relay on a free loopback port. `cut` drops every relayed connection and refuses new
/// ones (accepted, then closed at once); `heal` relays again.
pub struct LinkProxy {
    port: u16,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    accept_loop: JoinHandle<()>,
}

impl LinkProxy {
    pub async fn start(target: SocketAddr) -> LinkProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let up = Arc::new(AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let accept_loop = tokio::spawn({
            let up = up.clone();
            let connections = connections.clone();
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        continue; // dropped: closed at once
                    }
                    let relay = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    connections.lock().unwrap().push(relay.abort_handle());
                }
            }
        });
        LinkProxy {
            port,
            up,
            connections,
            accept_loop,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for relay in self.connections.lock().unwrap().drain(..) {
            relay.abort();
        }
    }

    pub fn heal(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept_loop.abort();
    }
}
