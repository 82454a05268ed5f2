//! The replicated state of the embedded service, ZooKeeper's `ZKDatabase`: the znode tree with
//! its stats, the ephemerals of every session, and the session table. It is a plain value with
//! no actor or I/O in it, so that the transaction log replays into exactly what the tree actor
//! built live.
//!
//! A write goes through two steps, as in ZooKeeper's PrepRequestProcessor and
//! FinalRequestProcessor:
//! 1. [`Database::prepare`] checks a request against the current tree (versions, existence,
//!    parents, emptiness) and resolves it into a [`Txn`] that can no longer fail: sequential
//!    names get their counter, ephemerals their owner. A multi is checked op by op against an
//!    overlay of the effects of the ops before it, so it is all-or-nothing without copying the
//!    tree.
//! 2. [`Database::apply`] applies a [`TxnRecord`] (txn + zxid + time) and reports what changed,
//!    from which the tree actor fires watches. Replaying the log calls the same function.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::error::{CoordinationError, Result};
use super::types::{
    node_name, parent_path, validate_path, CreateMode, Op, OpResult, SessionId, Stat, MAX_DATA_LEN,
};

/// A resolved write: applying it cannot fail on a tree that it was prepared against.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Txn {
    CreateSession {
        session: SessionId,
        timeout_ms: u64,
    },
    /// Ends a session (expiry or close) and deletes its ephemerals.
    CloseSession {
        session: SessionId,
    },
    Create {
        path: String,
        data: Vec<u8>,
        /// The owning session of an ephemeral, 0 for a persistent node.
        ephemeral_owner: SessionId,
    },
    Delete {
        path: String,
    },
    SetData {
        path: String,
        data: Vec<u8>,
    },
    /// A multi's version check: no effect, logged so results line up with ops.
    Check {
        path: String,
    },
    Multi(Vec<Txn>),
}

/// One committed transaction, the unit of the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnRecord {
    pub zxid: i64,
    /// Wall-clock ms, so that ctime/mtime replay to the same values.
    pub time_ms: i64,
    pub txn: Txn,
}

/// A change that can fire watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    Created(String),
    Deleted(String),
    DataChanged(String),
    ChildrenChanged(String),
}

/// What applying a record did: the changes to fire watches for, and one result per op.
#[derive(Debug, Default)]
pub struct Applied {
    pub triggers: Vec<Trigger>,
    pub results: Vec<OpResult>,
}

#[derive(Clone, Debug)]
struct Znode {
    data: Vec<u8>,
    stat: Stat,
    /// Names (not paths) of the children, sorted so listings are stable.
    children: BTreeSet<String>,
}

/// The view of a node that validation needs; the multi overlay keeps these.
#[derive(Clone, Copy, Debug)]
struct NodeSummary {
    version: i32,
    cversion: i32,
    num_children: i32,
    ephemeral_owner: SessionId,
}

/// A node as stored in a snapshot (children are rebuilt from paths).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotNode {
    pub path: String,
    pub data: Vec<u8>,
    pub stat: Stat,
}

/// A whole [`Database`] as written to a snapshot file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub last_zxid: i64,
    pub next_session_id: SessionId,
    /// (session, negotiated timeout in ms).
    pub sessions: Vec<(SessionId, u64)>,
    pub nodes: Vec<SnapshotNode>,
}

/// The znode tree, the ephemerals index and the session table.
#[derive(Clone, Debug)]
pub struct Database {
    /// Every node by full path (a flat map: lookups by path are the hot operation).
    nodes: HashMap<String, Znode>,
    /// Each live session's ephemerals, so closing a session finds them without a scan.
    ephemerals: HashMap<SessionId, BTreeSet<String>>,
    /// Every live session and its negotiated timeout (ms): persisted so that a restarted
    /// service can expire the sessions that do not come back.
    sessions: BTreeMap<SessionId, u64>,
    /// The next session id to hand out; only grows, so ids are never reused.
    next_session_id: SessionId,
    /// The zxid of the last applied transaction.
    last_zxid: i64,
}

impl Default for Database {
    fn default() -> Self {
        Database::new()
    }
}

impl Database {
    /// An empty tree holding `/` and `/zookeeper`, as a fresh ZooKeeper has.
    pub fn new() -> Database {
        let mut db = Database {
            nodes: HashMap::new(),
            ephemerals: HashMap::new(),
            sessions: BTreeMap::new(),
            next_session_id: 1,
            last_zxid: 0,
        };
        db.nodes.insert(
            "/".to_string(),
            Znode {
                data: Vec::new(),
                stat: Stat::default(),
                children: BTreeSet::new(),
            },
        );
        db.insert_node("/zookeeper", Vec::new(), Stat::default());
        db
    }

    pub fn last_zxid(&self) -> i64 {
        self.last_zxid
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn sessions(&self) -> &BTreeMap<SessionId, u64> {
        &self.sessions
    }

    pub fn has_session(&self, session: SessionId) -> bool {
        self.sessions.contains_key(&session)
    }

    /// Paths of a session's ephemerals.
    pub fn ephemerals_of(&self, session: SessionId) -> Vec<String> {
        self.ephemerals
            .get(&session)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Hands out a session id; never one in use or used before. `seed` (derived from the
    /// clock, as ZooKeeper does) keeps ids distinct across fresh data directories.
    pub fn allocate_session_id(&mut self, seed: SessionId) -> SessionId {
        let id = self.next_session_id.max(seed).max(1);
        self.next_session_id = id + 1;
        id
    }

    pub fn get_data(&self, path: &str) -> Result<(Vec<u8>, Stat)> {
        validate_path(path)?;
        self.nodes
            .get(path)
            .map(|n| (n.data.clone(), n.stat))
            .ok_or_else(|| CoordinationError::NoNode {
                path: path.to_string(),
            })
    }

    pub fn exists(&self, path: &str) -> Result<Option<Stat>> {
        validate_path(path)?;
        Ok(self.nodes.get(path).map(|n| n.stat))
    }

    pub fn children(&self, path: &str) -> Result<Vec<String>> {
        validate_path(path)?;
        self.nodes
            .get(path)
            .map(|n| n.children.iter().cloned().collect())
            .ok_or_else(|| CoordinationError::NoNode {
                path: path.to_string(),
            })
    }

    /// Checks `ops` as one atomic batch for `session` and resolves them into txns (one per op).
    /// The first failing op's error is returned and nothing is prepared.
    pub fn prepare(&self, session: SessionId, ops: &[Op]) -> Result<Vec<Txn>> {
        let mut overlay = Overlay {
            db: self,
            changes: HashMap::new(),
        };
        ops.iter().map(|op| overlay.prepare(session, op)).collect()
    }

    /// Applies one committed record. Replay calls this too, so it never fails: a txn that does
    /// not fit (which only a damaged log could produce) is skipped with a warning.
    pub fn apply(&mut self, record: &TxnRecord) -> Applied {
        let mut applied = Applied::default();
        self.last_zxid = self.last_zxid.max(record.zxid);
        self.apply_txn(&record.txn, record.zxid, record.time_ms, &mut applied);
        applied
    }

    fn apply_txn(&mut self, txn: &Txn, zxid: i64, time_ms: i64, out: &mut Applied) {
        match txn {
            Txn::CreateSession {
                session,
                timeout_ms,
            } => {
                self.sessions.insert(*session, *timeout_ms);
                self.next_session_id = self.next_session_id.max(session + 1);
            }
            Txn::CloseSession { session } => {
                self.sessions.remove(session);
                // Deepest first, so a (theoretical) nested ephemeral never blocks its parent.
                let mut paths = self.ephemerals_of(*session);
                paths.sort_by_key(|p| std::cmp::Reverse(p.len()));
                for path in paths {
                    self.delete_node(&path, zxid, out);
                }
                self.ephemerals.remove(session);
            }
            Txn::Create {
                path,
                data,
                ephemeral_owner,
            } => {
                let parent = parent_path(path).to_string();
                if self.nodes.contains_key(path.as_str()) {
                    tracing::warn!(path, zxid, "skipping create of an existing node");
                    return;
                }
                let Some(parent_node) = self.nodes.get_mut(&parent) else {
                    tracing::warn!(path, zxid, "skipping create whose parent is missing");
                    return;
                };
                parent_node.children.insert(node_name(path).to_string());
                parent_node.stat.cversion += 1;
                parent_node.stat.pzxid = zxid;
                parent_node.stat.num_children = parent_node.children.len() as i32;
                let stat = Stat {
                    czxid: zxid,
                    mzxid: zxid,
                    pzxid: zxid,
                    ctime: time_ms,
                    mtime: time_ms,
                    version: 0,
                    cversion: 0,
                    aversion: 0,
                    ephemeral_owner: *ephemeral_owner,
                    data_length: data.len() as i32,
                    num_children: 0,
                };
                self.insert_node(path, data.clone(), stat);
                if *ephemeral_owner != 0 {
                    self.ephemerals
                        .entry(*ephemeral_owner)
                        .or_default()
                        .insert(path.clone());
                }
                out.triggers.push(Trigger::Created(path.clone()));
                out.triggers.push(Trigger::ChildrenChanged(parent));
                out.results.push(OpResult::Create { path: path.clone() });
            }
            Txn::Delete { path } => {
                self.delete_node(path, zxid, out);
                out.results.push(OpResult::Delete);
            }
            Txn::SetData { path, data } => {
                let Some(node) = self.nodes.get_mut(path.as_str()) else {
                    tracing::warn!(path, zxid, "skipping set of a missing node");
                    return;
                };
                node.data = data.clone();
                node.stat.version += 1;
                node.stat.mzxid = zxid;
                node.stat.mtime = time_ms;
                node.stat.data_length = data.len() as i32;
                let stat = node.stat;
                out.triggers.push(Trigger::DataChanged(path.clone()));
                out.results.push(OpResult::SetData { stat });
            }
            Txn::Check { .. } => out.results.push(OpResult::Check),
            Txn::Multi(txns) => {
                for txn in txns {
                    self.apply_txn(txn, zxid, time_ms, out);
                }
            }
        }
    }

    fn insert_node(&mut self, path: &str, data: Vec<u8>, stat: Stat) {
        if path != "/" {
            if let Some(parent) = self.nodes.get_mut(parent_path(path)) {
                parent.children.insert(node_name(path).to_string());
                parent.stat.num_children = parent.children.len() as i32;
            }
        }
        self.nodes.insert(
            path.to_string(),
            Znode {
                data,
                stat,
                children: BTreeSet::new(),
            },
        );
    }

    fn delete_node(&mut self, path: &str, zxid: i64, out: &mut Applied) {
        let Some(node) = self.nodes.remove(path) else {
            tracing::warn!(path, zxid, "skipping delete of a missing node");
            return;
        };
        let owner = node.stat.ephemeral_owner;
        if owner != 0 {
            if let Some(set) = self.ephemerals.get_mut(&owner) {
                set.remove(path);
            }
        }
        let parent = parent_path(path).to_string();
        if let Some(parent_node) = self.nodes.get_mut(&parent) {
            parent_node.children.remove(node_name(path));
            // As ZooKeeper 3.8 (checked against it): a delete moves pzxid, not cversion, so
            // sequential names count the parent's creates only.
            parent_node.stat.pzxid = zxid;
            parent_node.stat.num_children = parent_node.children.len() as i32;
        }
        out.triggers.push(Trigger::Deleted(path.to_string()));
        out.triggers.push(Trigger::ChildrenChanged(parent));
    }

    fn summary(&self, path: &str) -> Option<NodeSummary> {
        self.nodes.get(path).map(|n| NodeSummary {
            version: n.stat.version,
            cversion: n.stat.cversion,
            num_children: n.stat.num_children,
            ephemeral_owner: n.stat.ephemeral_owner,
        })
    }

    pub fn to_snapshot(&self) -> Snapshot {
        let mut nodes: Vec<SnapshotNode> = self
            .nodes
            .iter()
            .map(|(path, n)| SnapshotNode {
                path: path.clone(),
                data: n.data.clone(),
                stat: n.stat,
            })
            .collect();
        // Parents before children, so restoring can link each node to its parent.
        nodes.sort_by(|a, b| a.path.cmp(&b.path));
        Snapshot {
            last_zxid: self.last_zxid,
            next_session_id: self.next_session_id,
            sessions: self.sessions.iter().map(|(s, t)| (*s, *t)).collect(),
            nodes,
        }
    }

    pub fn from_snapshot(snapshot: Snapshot) -> Database {
        let mut db = Database {
            nodes: HashMap::new(),
            ephemerals: HashMap::new(),
            sessions: snapshot.sessions.into_iter().collect(),
            next_session_id: snapshot.next_session_id,
            last_zxid: snapshot.last_zxid,
        };
        for node in snapshot.nodes {
            if node.stat.ephemeral_owner != 0 {
                db.ephemerals
                    .entry(node.stat.ephemeral_owner)
                    .or_default()
                    .insert(node.path.clone());
            }
            let num_children = node.stat.num_children;
            db.insert_node(&node.path, node.data, node.stat);
            if let Some(n) = db.nodes.get_mut(&node.path) {
                n.stat.num_children = num_children;
            }
        }
        if !db.nodes.contains_key("/") {
            db.nodes.insert(
                "/".to_string(),
                Znode {
                    data: Vec::new(),
                    stat: Stat::default(),
                    children: BTreeSet::new(),
                },
            );
        }
        // num_children is derived; recompute it from the linked children.
        for node in db.nodes.values_mut() {
            node.stat.num_children = node.children.len() as i32;
        }
        db
    }
}

/// The tree as a multi sees it midway: the db plus the effects of the ops already checked.
struct Overlay<'a> {
    db: &'a Database,
    /// Paths touched by earlier ops: `None` once deleted.
    changes: HashMap<String, Option<NodeSummary>>,
}

impl Overlay<'_> {
    fn get(&self, path: &str) -> Option<NodeSummary> {
        match self.changes.get(path) {
            Some(s) => *s,
            None => self.db.summary(path),
        }
    }

    fn check_version(path: &str, node: &NodeSummary, version: Option<i32>) -> Result<()> {
        match version {
            Some(v) if v != -1 && v != node.version => Err(CoordinationError::BadVersion {
                path: path.to_string(),
            }),
            _ => Ok(()),
        }
    }

    fn prepare(&mut self, session: SessionId, op: &Op) -> Result<Txn> {
        let no_node = |path: &str| CoordinationError::NoNode {
            path: path.to_string(),
        };
        match op {
            Op::Check { path, version } => {
                validate_path(path)?;
                let node = self.get(path).ok_or_else(|| no_node(path))?;
                Self::check_version(path, &node, *version)?;
                Ok(Txn::Check { path: path.clone() })
            }
            Op::Create { path, data, mode } => self.prepare_create(session, path, data, *mode),
            Op::SetData {
                path,
                data,
                version,
            } => {
                validate_path(path)?;
                if data.len() > MAX_DATA_LEN {
                    return Err(CoordinationError::BadArguments(format!(
                        "{path}: {} bytes of data exceed {MAX_DATA_LEN}",
                        data.len()
                    )));
                }
                let mut node = self.get(path).ok_or_else(|| no_node(path))?;
                Self::check_version(path, &node, *version)?;
                node.version += 1;
                self.changes.insert(path.clone(), Some(node));
                Ok(Txn::SetData {
                    path: path.clone(),
                    data: data.clone(),
                })
            }
            Op::Delete { path, version } => {
                validate_path(path)?;
                if path == "/" || path == "/zookeeper" {
                    return Err(CoordinationError::BadArguments(format!(
                        "{path} cannot be deleted"
                    )));
                }
                let node = self.get(path).ok_or_else(|| no_node(path))?;
                Self::check_version(path, &node, *version)?;
                if node.num_children > 0 {
                    return Err(CoordinationError::NotEmpty { path: path.clone() });
                }
                let parent = parent_path(path);
                if let Some(mut p) = self.get(parent) {
                    p.num_children -= 1;
                    self.changes.insert(parent.to_string(), Some(p));
                }
                self.changes.insert(path.clone(), None);
                Ok(Txn::Delete { path: path.clone() })
            }
        }
    }

    fn prepare_create(
        &mut self,
        session: SessionId,
        path: &str,
        data: &[u8],
        mode: CreateMode,
    ) -> Result<Txn> {
        if data.len() > MAX_DATA_LEN {
            return Err(CoordinationError::BadArguments(format!(
                "{path}: {} bytes of data exceed {MAX_DATA_LEN}",
                data.len()
            )));
        }
        // A sequential create may name only the parent with a trailing slash ("/queue/").
        let check = if mode.is_sequential() {
            format!("{path}0")
        } else {
            path.to_string()
        };
        validate_path(&check)?;
        if check == "/" {
            return Err(CoordinationError::NodeExists {
                path: path.to_string(),
            });
        }
        let parent = parent_path(&check).to_string();
        let mut parent_node = self.get(&parent).ok_or_else(|| CoordinationError::NoNode {
            path: path.to_string(),
        })?;
        if parent_node.ephemeral_owner != 0 {
            return Err(CoordinationError::NoChildrenForEphemerals {
                path: path.to_string(),
            });
        }
        let resolved = if mode.is_sequential() {
            // ZooKeeper names sequential nodes by the parent's cversion, 10 digits.
            format!("{path}{:010}", parent_node.cversion)
        } else {
            path.to_string()
        };
        if self.get(&resolved).is_some() {
            return Err(CoordinationError::NodeExists { path: resolved });
        }
        let ephemeral_owner = if mode.is_ephemeral() { session } else { 0 };
        parent_node.cversion += 1;
        parent_node.num_children += 1;
        self.changes.insert(parent, Some(parent_node));
        self.changes.insert(
            resolved.clone(),
            Some(NodeSummary {
                version: 0,
                cversion: 0,
                num_children: 0,
                ephemeral_owner,
            }),
        );
        Ok(Txn::Create {
            path: resolved,
            data: data.to_vec(),
            ephemeral_owner,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(db: &mut Database, session: SessionId, ops: &[Op]) -> Result<Applied> {
        let mut txns = db.prepare(session, ops)?;
        let txn = if txns.len() == 1 {
            txns.remove(0)
        } else {
            Txn::Multi(txns)
        };
        let zxid = db.last_zxid() + 1;
        Ok(db.apply(&TxnRecord {
            zxid,
            time_ms: 1000 + zxid,
            txn,
        }))
    }

    fn create(path: &str, mode: CreateMode) -> Op {
        Op::Create {
            path: path.into(),
            data: b"x".to_vec(),
            mode,
        }
    }

    #[test]
    fn create_bumps_parent_cversion_and_stamps_zxids() {
        let mut db = Database::new();
        commit(&mut db, 7, &[create("/a", CreateMode::Persistent)]).unwrap();
        commit(&mut db, 7, &[create("/a/b", CreateMode::Ephemeral)]).unwrap();
        let (_, a) = db.get_data("/a").unwrap();
        let (data, b) = db.get_data("/a/b").unwrap();
        assert_eq!(data, b"x");
        assert_eq!((a.czxid, a.cversion, a.pzxid, a.num_children), (1, 1, 2, 1));
        assert_eq!((b.czxid, b.mzxid, b.ephemeral_owner), (2, 2, 7));
        assert_eq!(db.ephemerals_of(7), vec!["/a/b".to_string()]);
    }

    #[test]
    fn sequential_names_follow_parent_cversion() {
        let mut db = Database::new();
        commit(&mut db, 1, &[create("/q", CreateMode::Persistent)]).unwrap();
        let first = commit(
            &mut db,
            1,
            &[create("/q/n-", CreateMode::PersistentSequential)],
        )
        .unwrap()
        .results;
        commit(&mut db, 1, &[create("/q/other", CreateMode::Persistent)]).unwrap();
        let third = commit(
            &mut db,
            1,
            &[create("/q/n-", CreateMode::EphemeralSequential)],
        )
        .unwrap()
        .results;
        assert_eq!(
            first,
            vec![OpResult::Create {
                path: "/q/n-0000000000".into()
            }]
        );
        assert_eq!(
            third,
            vec![OpResult::Create {
                path: "/q/n-0000000002".into()
            }]
        );
    }

    #[test]
    fn conditional_writes_check_versions() {
        let mut db = Database::new();
        commit(&mut db, 1, &[create("/a", CreateMode::Persistent)]).unwrap();
        let set = |version| Op::SetData {
            path: "/a".into(),
            data: b"y".to_vec(),
            version,
        };
        assert!(matches!(
            commit(&mut db, 1, &[set(Some(3))]),
            Err(CoordinationError::BadVersion { .. })
        ));
        commit(&mut db, 1, &[set(Some(0))]).unwrap();
        commit(&mut db, 1, &[set(None)]).unwrap();
        assert_eq!(db.get_data("/a").unwrap().1.version, 2);
        let delete = |version| Op::Delete {
            path: "/a".into(),
            version,
        };
        assert!(matches!(
            commit(&mut db, 1, &[delete(Some(1))]),
            Err(CoordinationError::BadVersion { .. })
        ));
        commit(&mut db, 1, &[delete(Some(2))]).unwrap();
        assert_eq!(db.exists("/a").unwrap(), None);
    }

    #[test]
    fn create_and_delete_report_zookeeper_errors() {
        let mut db = Database::new();
        assert!(matches!(
            commit(&mut db, 1, &[create("/a/b", CreateMode::Persistent)]),
            Err(CoordinationError::NoNode { .. })
        ));
        commit(&mut db, 1, &[create("/a", CreateMode::Persistent)]).unwrap();
        assert!(matches!(
            commit(&mut db, 1, &[create("/a", CreateMode::Persistent)]),
            Err(CoordinationError::NodeExists { .. })
        ));
        commit(&mut db, 1, &[create("/a/b", CreateMode::Ephemeral)]).unwrap();
        assert!(matches!(
            commit(&mut db, 1, &[create("/a/b/c", CreateMode::Persistent)]),
            Err(CoordinationError::NoChildrenForEphemerals { .. })
        ));
        assert!(matches!(
            commit(
                &mut db,
                1,
                &[Op::Delete {
                    path: "/a".into(),
                    version: None
                }]
            ),
            Err(CoordinationError::NotEmpty { .. })
        ));
    }

    #[test]
    fn failed_multi_changes_nothing_and_reports_first_error() {
        let db = Database::new();
        let before = db.last_zxid();
        let result = db.prepare(
            1,
            &[
                create("/a", CreateMode::Persistent),
                create("/a/b", CreateMode::Persistent),
                Op::Check {
                    path: "/missing".into(),
                    version: None,
                },
            ],
        );
        assert!(matches!(result, Err(CoordinationError::NoNode { path }) if path == "/missing"));
        assert_eq!(db.exists("/a").unwrap(), None);
        assert_eq!(db.last_zxid(), before);
    }

    #[test]
    fn multi_sees_effects_of_its_earlier_ops() {
        let mut db = Database::new();
        let applied = commit(
            &mut db,
            1,
            &[
                create("/a", CreateMode::Persistent),
                create("/a/b", CreateMode::Persistent),
                Op::SetData {
                    path: "/a/b".into(),
                    data: b"z".to_vec(),
                    version: Some(0),
                },
                Op::Delete {
                    path: "/a/b".into(),
                    version: Some(1),
                },
                Op::Check {
                    path: "/a".into(),
                    version: Some(0),
                },
            ],
        )
        .unwrap();
        assert_eq!(applied.results.len(), 5);
        assert_eq!(db.children("/a").unwrap(), Vec::<String>::new());
        // Two child creates counted (the delete does not count, as in ZooKeeper).
        assert_eq!(db.get_data("/a").unwrap().1.cversion, 1);
    }

    #[test]
    fn closing_a_session_deletes_its_ephemerals_only() {
        let mut db = Database::new();
        let zxid = |db: &Database| db.last_zxid() + 1;
        db.apply(&TxnRecord {
            zxid: zxid(&db),
            time_ms: 0,
            txn: Txn::CreateSession {
                session: 5,
                timeout_ms: 4000,
            },
        });
        commit(&mut db, 5, &[create("/e", CreateMode::Ephemeral)]).unwrap();
        commit(&mut db, 5, &[create("/p", CreateMode::Persistent)]).unwrap();
        let applied = db.apply(&TxnRecord {
            zxid: zxid(&db),
            time_ms: 0,
            txn: Txn::CloseSession { session: 5 },
        });
        assert!(applied.triggers.contains(&Trigger::Deleted("/e".into())));
        assert_eq!(db.exists("/e").unwrap(), None);
        assert!(db.exists("/p").unwrap().is_some());
        assert!(!db.has_session(5));
    }

    #[test]
    fn snapshot_round_trips_the_whole_database() {
        let mut db = Database::new();
        db.apply(&TxnRecord {
            zxid: 1,
            time_ms: 0,
            txn: Txn::CreateSession {
                session: 9,
                timeout_ms: 6000,
            },
        });
        commit(&mut db, 9, &[create("/a", CreateMode::Persistent)]).unwrap();
        commit(&mut db, 9, &[create("/a/e", CreateMode::Ephemeral)]).unwrap();
        let restored = Database::from_snapshot(db.to_snapshot());
        assert_eq!(restored.to_snapshot(), db.to_snapshot());
        assert_eq!(restored.ephemerals_of(9), vec!["/a/e".to_string()]);
        assert_eq!(restored.children("/").unwrap(), vec!["a", "zookeeper"]);
    }

    #[test]
    fn session_ids_are_never_reused() {
        let mut db = Database::new();
        let a = db.allocate_session_id(100);
        let b = db.allocate_session_id(0);
        assert_eq!((a, b), (100, 101));
    }
}
