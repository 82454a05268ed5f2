//! The typed vocabulary shared by every backend and by the wire protocol: znode stats, create
//! modes, requests and their responses, multi ops, watch events and session states. These are
//! ZooKeeper's names and meanings, so code written against one backend reads the same against
//! another.

use serde::{Deserialize, Serialize};

use super::error::CoordinationError;

/// A session id as ZooKeeper hands it out; `0` is never a session (it marks persistent nodes).
pub type SessionId = i64;

/// The largest znode payload accepted, as ZooKeeper's default `jute.maxbuffer` (1 MiB).
pub const MAX_DATA_LEN: usize = 1024 * 1024;

/// How a znode is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CreateMode {
    /// Lives until deleted.
    Persistent,
    /// Deleted when its owning session ends.
    Ephemeral,
    /// Persistent, with a 10-digit counter appended to the name.
    PersistentSequential,
    /// Ephemeral, with a 10-digit counter appended to the name.
    EphemeralSequential,
}

impl CreateMode {
    pub fn is_ephemeral(self) -> bool {
        matches!(
            self,
            CreateMode::Ephemeral | CreateMode::EphemeralSequential
        )
    }

    pub fn is_sequential(self) -> bool {
        matches!(
            self,
            CreateMode::PersistentSequential | CreateMode::EphemeralSequential
        )
    }
}

/// A znode's metadata, field for field ZooKeeper's `Stat`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stat {
    /// zxid of the transaction that created the node (Kafka uses a broker node's czxid as the
    /// broker epoch).
    pub czxid: i64,
    /// zxid of the last data change.
    pub mzxid: i64,
    /// zxid of the last change to the children list.
    pub pzxid: i64,
    /// Creation time, ms since the epoch.
    pub ctime: i64,
    /// Last data change time, ms since the epoch.
    pub mtime: i64,
    /// Number of data changes; the `expected_version` of conditional writes.
    pub version: i32,
    /// Number of children changes; also the counter behind sequential names.
    pub cversion: i32,
    /// Number of ACL changes (always 0: weir keeps no ACLs).
    pub aversion: i32,
    /// The owning session of an ephemeral node, 0 otherwise.
    pub ephemeral_owner: i64,
    pub data_length: i32,
    pub num_children: i32,
}

/// One operation of a [`Request::Multi`]: all of them apply, or none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Fails the whole batch unless `path` exists (at `version`, when given).
    Check {
        path: String,
        version: Option<i32>,
    },
    Create {
        path: String,
        data: Vec<u8>,
        mode: CreateMode,
    },
    SetData {
        path: String,
        data: Vec<u8>,
        version: Option<i32>,
    },
    Delete {
        path: String,
        version: Option<i32>,
    },
}

impl Op {
    pub fn path(&self) -> &str {
        match self {
            Op::Check { path, .. }
            | Op::Create { path, .. }
            | Op::SetData { path, .. }
            | Op::Delete { path, .. } => path,
        }
    }

    pub(crate) fn with_path(self, path: String) -> Op {
        match self {
            Op::Check { version, .. } => Op::Check { path, version },
            Op::Create { data, mode, .. } => Op::Create { path, data, mode },
            Op::SetData { data, version, .. } => Op::SetData {
                path,
                data,
                version,
            },
            Op::Delete { version, .. } => Op::Delete { path, version },
        }
    }
}

/// The outcome of one [`Op`] of a successful multi.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpResult {
    Check,
    /// The actual path (sequential names carry their counter).
    Create {
        path: String,
    },
    SetData {
        stat: Stat,
    },
    Delete,
}

/// A request as a session sends it to the tree (and as it travels over TCP).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    Create {
        path: String,
        data: Vec<u8>,
        mode: CreateMode,
    },
    Delete {
        path: String,
        version: Option<i32>,
    },
    SetData {
        path: String,
        data: Vec<u8>,
        version: Option<i32>,
    },
    GetData {
        path: String,
        watch: bool,
    },
    Exists {
        path: String,
        watch: bool,
    },
    GetChildren {
        path: String,
        watch: bool,
    },
    Multi(Vec<Op>),
}

/// The successful answer to a [`Request`], one variant per request kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Created(String),
    Deleted,
    SetData(Stat),
    Data(Vec<u8>, Stat),
    Exists(Option<Stat>),
    Children(Vec<String>),
    Multi(Vec<OpResult>),
}

/// What changed, as ZooKeeper's `Watcher.Event.EventType` (node events only; session state
/// changes are [`SessionState`]s).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    NodeCreated,
    NodeDeleted,
    NodeDataChanged,
    NodeChildrenChanged,
}

/// One fired watch: at most once per registration.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WatchedEvent {
    pub event_type: EventType,
    pub path: String,
}

/// The client's view of its session, as ZooKeeper's `KeeperState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SessionState {
    /// Connected (again) with the session alive.
    SyncConnected,
    /// The link is down; the session may still be alive on the server.
    Disconnected,
    /// The server ended the session: its ephemerals are gone. Terminal.
    Expired,
    /// `close()` ended the session. Terminal.
    Closed,
}

/// What arrives on [`super::SessionEvents`], in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionEvent {
    Watch(WatchedEvent),
    State(SessionState),
}

/// Checks a path as ZooKeeper's `PathUtils.validatePath`: absolute, no empty, `.` or `..`
/// segments, no trailing slash except the root, no control characters.
pub fn validate_path(path: &str) -> Result<(), CoordinationError> {
    let bad = |why: &str| {
        Err(CoordinationError::BadArguments(format!(
            "path {path:?}: {why}"
        )))
    };
    if !path.starts_with('/') {
        return bad("must start with /");
    }
    if path == "/" {
        return Ok(());
    }
    if path.ends_with('/') {
        return bad("must not end with /");
    }
    for segment in path[1..].split('/') {
        if segment.is_empty() {
            return bad("empty segment");
        }
        if segment == "." || segment == ".." {
            return bad("relative segment");
        }
    }
    if path.chars().any(|c| c == '\0' || c.is_control()) {
        return bad("control character");
    }
    Ok(())
}

/// The parent of a valid non-root path.
pub fn parent_path(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// The last segment of a valid non-root path.
pub fn node_name(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// A client-side chroot (`host:port/chroot`): every path the caller gives is prefixed, every
/// path the service returns is stripped, as ZooKeeper's clients do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chroot {
    /// Empty for no chroot, else a valid path without trailing slash.
    root: String,
}

impl Chroot {
    pub fn new(root: &str) -> Result<Chroot, CoordinationError> {
        if root.is_empty() || root == "/" {
            return Ok(Chroot::default());
        }
        validate_path(root)?;
        Ok(Chroot {
            root: root.to_string(),
        })
    }

    pub fn root(&self) -> &str {
        if self.root.is_empty() {
            "/"
        } else {
            &self.root
        }
    }

    /// The server-side path of a client path.
    pub fn prefix(&self, path: &str) -> String {
        if self.root.is_empty() {
            path.to_string()
        } else if path == "/" {
            self.root.clone()
        } else {
            format!("{}{}", self.root, path)
        }
    }

    /// The client-side path of a server path (unchanged when outside the chroot).
    pub fn strip(&self, path: &str) -> String {
        if self.root.is_empty() {
            return path.to_string();
        }
        match path.strip_prefix(self.root.as_str()) {
            Some("") => "/".to_string(),
            Some(rest) if rest.starts_with('/') => rest.to_string(),
            _ => path.to_string(),
        }
    }

    pub(crate) fn prefix_request(&self, request: Request) -> Request {
        if self.root.is_empty() {
            return request;
        }
        match request {
            Request::Create { path, data, mode } => Request::Create {
                path: self.prefix(&path),
                data,
                mode,
            },
            Request::Delete { path, version } => Request::Delete {
                path: self.prefix(&path),
                version,
            },
            Request::SetData {
                path,
                data,
                version,
            } => Request::SetData {
                path: self.prefix(&path),
                data,
                version,
            },
            Request::GetData { path, watch } => Request::GetData {
                path: self.prefix(&path),
                watch,
            },
            Request::Exists { path, watch } => Request::Exists {
                path: self.prefix(&path),
                watch,
            },
            Request::GetChildren { path, watch } => Request::GetChildren {
                path: self.prefix(&path),
                watch,
            },
            Request::Multi(ops) => Request::Multi(
                ops.into_iter()
                    .map(|op| {
                        let path = self.prefix(op.path());
                        op.with_path(path)
                    })
                    .collect(),
            ),
        }
    }

    pub(crate) fn strip_response(&self, response: Response) -> Response {
        if self.root.is_empty() {
            return response;
        }
        match response {
            Response::Created(path) => Response::Created(self.strip(&path)),
            Response::Multi(results) => Response::Multi(
                results
                    .into_iter()
                    .map(|r| match r {
                        OpResult::Create { path } => OpResult::Create {
                            path: self.strip(&path),
                        },
                        other => other,
                    })
                    .collect(),
            ),
            other => other,
        }
    }

    pub(crate) fn strip_error(&self, error: CoordinationError) -> CoordinationError {
        if self.root.is_empty() {
            return error;
        }
        error.map_path(|p| self.strip(p))
    }

    pub(crate) fn strip_event(&self, event: SessionEvent) -> SessionEvent {
        match event {
            SessionEvent::Watch(WatchedEvent { event_type, path }) => {
                SessionEvent::Watch(WatchedEvent {
                    event_type,
                    path: self.strip(&path),
                })
            }
            state => state,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_path_accepts_zookeeper_paths_and_rejects_malformed_ones() {
        for ok in ["/", "/a", "/brokers/ids/1", "/a-b_c.d"] {
            assert!(validate_path(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a", "/a/", "//a", "/a//b", "/a/./b", "/a/..", "/a\0b"] {
            assert!(validate_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parent_and_name_split_the_last_segment() {
        assert_eq!(parent_path("/a"), "/");
        assert_eq!(parent_path("/a/b/c"), "/a/b");
        assert_eq!(node_name("/a/b/c"), "c");
    }

    #[test]
    fn chroot_prefixes_requests_and_strips_answers() {
        let chroot = Chroot::new("/kafka").unwrap();
        assert_eq!(chroot.prefix("/"), "/kafka");
        assert_eq!(chroot.prefix("/brokers"), "/kafka/brokers");
        assert_eq!(chroot.strip("/kafka"), "/");
        assert_eq!(chroot.strip("/kafka/brokers"), "/brokers");
        assert_eq!(chroot.strip("/kafkaesque"), "/kafkaesque");
        assert_eq!(Chroot::new("/").unwrap().prefix("/x"), "/x");
    }
}
