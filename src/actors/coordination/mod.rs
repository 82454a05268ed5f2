//! Coordination: the strongly consistent notebook of cluster facts (who is alive, who is
//! controller, where partitions live) and the detector of broker death, with ZooKeeper's
//! semantics. Brokers and the controller use one client type, [`CoordinationClient`], against
//! one of three backends, chosen by Kafka's `zookeeper.connect`:
//!
//! | `zookeeper.connect`              | backend                                              |
//! |----------------------------------|------------------------------------------------------|
//! | absent                           | the embedded service in this process ([`EmbeddedCoordination`]) |
//! | `weir://host:port[/chroot]`      | a `weir coordinator` over TCP ([`remote`], [`server`]) |
//! | `host:port[,host:port][/chroot]` | a real ZooKeeper ensemble ([`zookeeper`], through `zookeeper-client`) |
//!
//! Dispatch over the backends is an enum, not a trait object: three known variants, async
//! methods, no boxing.
//!
//! # The embedded service
//! Three actor kinds, on an arbiter of their own:
//! - [`tree::TreeActor`]: the znode tree, versions, one-shot watches, sessions; every request of
//!   every session passes through it in one order, and each write gets the next zxid
//!   (linearizable). Writes go to a transaction log with periodic snapshots ([`persistence`]),
//!   checksummed with crc32fast; replies and watch events wait until their zxid is durable.
//! - [`session::SessionActor`]: one per client session, its front door.
//! - [`session_timeout::SessionTimeoutActor`]: every session's deadline in one ordered set and
//!   one timer for the earliest; expires silent sessions, which deletes their ephemerals (a
//!   crashed broker's `/brokers/ids/<id>`), fires watches, and tells the owner `Expired`.
//!
//! # Semantics shared by all backends
//! - `create` (persistent, ephemeral, sequential: a 10-digit suffix from the parent's
//!   cversion), `get_data` + [`Stat`], conditional `set_data`/`delete` (`None` = any version),
//!   `get_children` (sorted), `exists`, and `multi` (all-or-nothing; on failure the error is the
//!   first failing op's, as ZooKeeper's `KeeperException` for multi).
//! - One-shot watches (`watch: true`), delivered on [`SessionEvents`] in order, at most once
//!   per registration, and before the reply of any later request that could observe the change.
//! - Sessions: negotiated timeout (clamped to [2, 20] × tickTime by the server), heartbeats
//!   every timeout/3, sent from the process's coordination I/O thread ([`io_thread`], as
//!   ZooKeeper's SendThread), so a busy arbiter cannot starve a session. [`SessionEvents`] reports `SyncConnected`, `Disconnected`, `Expired` and
//!   `Closed` in order with the watch events.
//! - Errors are ZooKeeper's names ([`CoordinationError`]).
//! - `close()` ends the session at once. Dropping every clone of a client without `close()`
//!   stops its heartbeats, so an embedded or remote session expires after its timeout (a
//!   crash); the ZooKeeper crate closes the session when its last handle goes.
//!
//! # Embedding and fault injection
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::time::Duration;
//! use weir::actors::coordination::{self, CoordinationConfig, CreateMode, EmbeddedCoordination};
//! // Inside a running actix System:
//! let service = EmbeddedCoordination::start(CoordinationConfig::persistent("/tmp/coord")).await?;
//! let (client, mut events) =
//!     coordination::connect(None, Duration::from_secs(18), Some(&service)).await?;
//! client.create("/brokers/ids/1", b"{}", CreateMode::Ephemeral).await.ok();
//! client.link_switch().expect("embedded").cut(); // requests fail, heartbeats stop
//! service.expire_session(client.session_id()).await; // or expire it at once
//! # Ok(()) }
//! ```

pub mod data_tree;
pub mod embedded;
pub mod error;
pub(crate) mod io_thread;
pub mod persistence;
pub mod remote;
pub mod server;
pub mod session;
pub mod session_timeout;
pub mod tree;
pub mod types;
pub mod wire;
pub mod zookeeper;

use std::time::Duration;

use tokio::sync::mpsc;

pub use embedded::{CoordinationConfig, EmbeddedClient, EmbeddedCoordination, LinkSwitch};
pub use error::{CoordinationError, Result};
pub use remote::RemoteClient;
pub use server::{CoordinatorLimits, CoordinatorServer};
pub use tree::{SessionInfo, TreeStatus};
pub use types::{
    Chroot, CreateMode, EventType, Op, OpResult, Request, Response, SessionEvent, SessionId,
    SessionState, Stat, WatchedEvent,
};
pub use zookeeper::ZooKeeperClient;

/// Where `zookeeper.connect` points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoordinationTarget {
    /// No `zookeeper.connect`: the service embedded in this process.
    Embedded,
    /// `weir://host:port[/chroot]`.
    Weir { addr: String, chroot: String },
    /// A ZooKeeper connect string, passed to the client as is (chroot included).
    ZooKeeper { connect: String },
}

impl CoordinationTarget {
    pub fn parse(zookeeper_connect: Option<&str>) -> Result<CoordinationTarget> {
        let Some(connect) = zookeeper_connect.map(str::trim).filter(|c| !c.is_empty()) else {
            return Ok(CoordinationTarget::Embedded);
        };
        if let Some(rest) = connect.strip_prefix("weir://") {
            let (addr, chroot) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            if addr.is_empty() || !addr.contains(':') {
                return Err(CoordinationError::BadArguments(format!(
                    "zookeeper.connect={connect}: expected weir://host:port[/chroot]"
                )));
            }
            Chroot::new(chroot)?;
            return Ok(CoordinationTarget::Weir {
                addr: addr.to_string(),
                chroot: chroot.to_string(),
            });
        }
        let hosts = connect.split('/').next().unwrap_or("");
        if hosts.split(',').any(|h| h.trim().is_empty()) {
            return Err(CoordinationError::BadArguments(format!(
                "zookeeper.connect={connect}: expected host:port[,host:port...][/chroot]"
            )));
        }
        Ok(CoordinationTarget::ZooKeeper {
            connect: connect.to_string(),
        })
    }
}

/// The watch events and session-state changes of one session, in order.
pub struct SessionEvents {
    events: mpsc::UnboundedReceiver<SessionEvent>,
    /// Strips the client's chroot from event paths (embedded and remote backends).
    chroot: Chroot,
}

impl SessionEvents {
    /// The next event; `None` once the session is over and everything was delivered.
    pub async fn recv(&mut self) -> Option<SessionEvent> {
        let event = self.events.recv().await?;
        Some(self.chroot.strip_event(event))
    }

    /// Events fed by a test instead of a session, to put an actor's event stream in the
    /// test's hands.
    #[cfg(test)]
    pub(crate) fn fed_by(events: mpsc::UnboundedReceiver<SessionEvent>) -> Self {
        Self {
            events,
            chroot: Chroot::default(),
        }
    }

    /// The next event if one is already queued.
    pub fn try_recv(&mut self) -> Option<SessionEvent> {
        let event = self.events.try_recv().ok()?;
        Some(self.chroot.strip_event(event))
    }
}

#[derive(Clone)]
enum Backend {
    Embedded(EmbeddedClient),
    Remote(RemoteClient),
    ZooKeeper(ZooKeeperClient),
}

/// A session on the coordination service: what brokers and the controller hold. Cheap to
/// clone; every clone is the same session.
#[derive(Clone)]
pub struct CoordinationClient {
    backend: Backend,
    /// Client-side chroot for the embedded and remote backends (ZooKeeper's crate applies its
    /// own).
    chroot: Chroot,
}

/// Opens a session. `zookeeper_connect` is Kafka's key (see the table above); without it,
/// `embedded` must name the in-process service. `session_timeout` is the requested timeout
/// (Kafka's `zookeeper.session.timeout.ms`); the server negotiates the real one.
pub async fn connect(
    zookeeper_connect: Option<&str>,
    session_timeout: Duration,
    embedded: Option<&EmbeddedCoordination>,
) -> Result<(CoordinationClient, SessionEvents)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let (backend, chroot) = match CoordinationTarget::parse(zookeeper_connect)? {
        CoordinationTarget::Embedded => {
            let service = embedded.ok_or_else(|| {
                CoordinationError::BadArguments(
                    "no zookeeper.connect and no embedded coordination service".into(),
                )
            })?;
            let (client, events) = service.open_session(session_timeout).await?;
            return Ok((
                CoordinationClient {
                    backend: Backend::Embedded(client),
                    chroot: Chroot::default(),
                },
                SessionEvents {
                    events,
                    chroot: Chroot::default(),
                },
            ));
        }
        CoordinationTarget::Weir { addr, chroot } => (
            Backend::Remote(RemoteClient::connect(&addr, session_timeout, tx).await?),
            Chroot::new(&chroot)?,
        ),
        CoordinationTarget::ZooKeeper { connect } => (
            Backend::ZooKeeper(ZooKeeperClient::connect(&connect, session_timeout, tx).await?),
            Chroot::default(),
        ),
    };
    Ok((
        CoordinationClient {
            backend,
            chroot: chroot.clone(),
        },
        SessionEvents { events: rx, chroot },
    ))
}

impl std::fmt::Debug for CoordinationClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = match &self.backend {
            Backend::Embedded(_) => "embedded",
            Backend::Remote(_) => "weir",
            Backend::ZooKeeper(_) => "zookeeper",
        };
        f.debug_struct("CoordinationClient")
            .field("backend", &backend)
            .field("session", &format_args!("{:#x}", self.session_id()))
            .field("chroot", &self.chroot.root())
            .finish()
    }
}

impl std::fmt::Debug for SessionEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionEvents").finish_non_exhaustive()
    }
}

impl CoordinationClient {
    /// Sends one request through the backend, applying the chroot both ways.
    pub async fn call(&self, request: Request) -> Result<Response> {
        let traced = crate::observe::coord::request(self, &request);
        let request = self.chroot.prefix_request(request);
        let result = match &self.backend {
            Backend::Embedded(c) => c.call(request).await,
            Backend::Remote(c) => c.call(request).await,
            Backend::ZooKeeper(c) => c.call(request).await,
        };
        let result = result
            .map(|r| self.chroot.strip_response(r))
            .map_err(|e| self.chroot.strip_error(e));
        crate::observe::coord::response(traced, &result);
        result
    }

    fn unexpected(response: Response) -> CoordinationError {
        CoordinationError::Other(format!("unexpected response {response:?}"))
    }

    /// Creates a node; returns its actual path (sequential nodes carry their counter).
    pub async fn create(&self, path: &str, data: &[u8], mode: CreateMode) -> Result<String> {
        match self
            .call(Request::Create {
                path: path.to_string(),
                data: data.to_vec(),
                mode,
            })
            .await?
        {
            Response::Created(path) => Ok(path),
            other => Err(Self::unexpected(other)),
        }
    }

    pub async fn get_data(&self, path: &str, watch: bool) -> Result<(Vec<u8>, Stat)> {
        match self
            .call(Request::GetData {
                path: path.to_string(),
                watch,
            })
            .await?
        {
            Response::Data(data, stat) => Ok((data, stat)),
            other => Err(Self::unexpected(other)),
        }
    }

    /// Sets data if the node's version is `expected_version` (`None`: any version).
    pub async fn set_data(
        &self,
        path: &str,
        data: &[u8],
        expected_version: Option<i32>,
    ) -> Result<Stat> {
        match self
            .call(Request::SetData {
                path: path.to_string(),
                data: data.to_vec(),
                version: expected_version,
            })
            .await?
        {
            Response::SetData(stat) => Ok(stat),
            other => Err(Self::unexpected(other)),
        }
    }

    /// Deletes a childless node if its version is `expected_version` (`None`: any version).
    pub async fn delete(&self, path: &str, expected_version: Option<i32>) -> Result<()> {
        match self
            .call(Request::Delete {
                path: path.to_string(),
                version: expected_version,
            })
            .await?
        {
            Response::Deleted => Ok(()),
            other => Err(Self::unexpected(other)),
        }
    }

    /// The children's names, sorted.
    pub async fn get_children(&self, path: &str, watch: bool) -> Result<Vec<String>> {
        match self
            .call(Request::GetChildren {
                path: path.to_string(),
                watch,
            })
            .await?
        {
            Response::Children(children) => Ok(children),
            other => Err(Self::unexpected(other)),
        }
    }

    /// The node's stat, or `None`; with `watch`, a data watch is set either way (it fires on
    /// creation too).
    pub async fn exists(&self, path: &str, watch: bool) -> Result<Option<Stat>> {
        match self
            .call(Request::Exists {
                path: path.to_string(),
                watch,
            })
            .await?
        {
            Response::Exists(stat) => Ok(stat),
            other => Err(Self::unexpected(other)),
        }
    }

    /// Applies all `ops` or none; the error is the first failing op's.
    pub async fn multi(&self, ops: Vec<Op>) -> Result<Vec<OpResult>> {
        match self.call(Request::Multi(ops)).await? {
            Response::Multi(results) => Ok(results),
            other => Err(Self::unexpected(other)),
        }
    }

    /// Creates `path` and any missing ancestors as empty persistent nodes; existing ones are
    /// fine (Kafka's `makeSurePersistentPathExists`).
    pub async fn ensure_path(&self, path: &str) -> Result<()> {
        types::validate_path(path)?;
        if path == "/" {
            return Ok(());
        }
        let mut prefix = String::new();
        for segment in path[1..].split('/') {
            prefix.push('/');
            prefix.push_str(segment);
            match self.create(&prefix, &[], CreateMode::Persistent).await {
                Ok(_) | Err(CoordinationError::NodeExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Creates a node, first creating missing ancestors (Kafka's `createRecursive`).
    pub async fn create_with_parents(
        &self,
        path: &str,
        data: &[u8],
        mode: CreateMode,
    ) -> Result<String> {
        match self.create(path, data, mode).await {
            Err(CoordinationError::NoNode { .. }) => {
                let parent = types::parent_path(path);
                self.ensure_path(parent).await?;
                self.create(path, data, mode).await
            }
            other => other,
        }
    }

    pub fn session_id(&self) -> SessionId {
        match &self.backend {
            Backend::Embedded(c) => c.session_id(),
            Backend::Remote(c) => c.session_id(),
            Backend::ZooKeeper(c) => c.session_id(),
        }
    }

    /// The timeout the server negotiated.
    pub fn session_timeout(&self) -> Duration {
        match &self.backend {
            Backend::Embedded(c) => c.session_timeout(),
            Backend::Remote(c) => c.session_timeout(),
            Backend::ZooKeeper(c) => c.session_timeout(),
        }
    }

    /// The fault-injection switch of an embedded session (`None` for other backends).
    pub fn link_switch(&self) -> Option<LinkSwitch> {
        match &self.backend {
            Backend::Embedded(c) => Some(c.link_switch()),
            _ => None,
        }
    }

    /// Ends the session: its ephemerals are deleted at once; later requests fail with
    /// `SessionExpired`.
    pub async fn close(&self) -> Result<()> {
        match &self.backend {
            Backend::Embedded(c) => c.close().await,
            Backend::Remote(c) => c.close().await,
            Backend::ZooKeeper(c) => c.close().await,
        }
    }
}

#[cfg(test)]
pub(crate) mod support {
    use std::future::Future;
    use std::time::{Duration, Instant};

    /// Polls `check` until it yields a value; panics after 10 s.
    pub async fn wait_for<T, F, Fut>(mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(v) = check().await {
                return v;
            }
            assert!(Instant::now() < deadline, "condition not met within 10 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zookeeper_connect_selects_the_backend() {
        assert_eq!(
            CoordinationTarget::parse(None).unwrap(),
            CoordinationTarget::Embedded
        );
        assert_eq!(
            CoordinationTarget::parse(Some("weir://127.0.0.1:2181/kafka")).unwrap(),
            CoordinationTarget::Weir {
                addr: "127.0.0.1:2181".into(),
                chroot: "/kafka".into()
            }
        );
        assert_eq!(
            CoordinationTarget::parse(Some("zk1:2181,zk2:2181/kafka")).unwrap(),
            CoordinationTarget::ZooKeeper {
                connect: "zk1:2181,zk2:2181/kafka".into()
            }
        );
        assert!(CoordinationTarget::parse(Some("weir://nohostport")).is_err());
        assert!(CoordinationTarget::parse(Some("a:1,,b:2")).is_err());
    }
}
