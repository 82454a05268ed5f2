//! The one error type of every coordination backend, named as ZooKeeper's `KeeperException`
//! codes so that callers (broker registration, controller election, fenced writes) match on the
//! same names whichever backend they run against.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum CoordinationError {
    /// The node to create is already there.
    #[error("NodeExists: {path}")]
    NodeExists { path: String },
    /// The node (or the parent of a node to create) is not there.
    #[error("NoNode: {path}")]
    NoNode { path: String },
    /// A conditional write's expected version did not match.
    #[error("BadVersion: {path}")]
    BadVersion { path: String },
    /// A node with children cannot be deleted.
    #[error("NotEmpty: {path}")]
    NotEmpty { path: String },
    /// Ephemeral nodes cannot have children.
    #[error("NoChildrenForEphemerals: {path}")]
    NoChildrenForEphemerals { path: String },
    /// The session is over (expired, or this client was closed); its ephemerals are gone.
    #[error("SessionExpired")]
    SessionExpired,
    /// The link to the service is down; the request may or may not have been applied.
    #[error("ConnectionLoss")]
    ConnectionLoss,
    /// A malformed path, an oversized payload, a bad connect string.
    #[error("BadArguments: {0}")]
    BadArguments(String),
    /// Any other ZooKeeper error code (NoAuth, Unimplemented, ...), by its name.
    #[error("ZooKeeper error: {0}")]
    Other(String),
}

impl CoordinationError {
    /// Rewrites the path a node error names (chroot stripping).
    pub(crate) fn map_path(self, f: impl Fn(&str) -> String) -> CoordinationError {
        use CoordinationError::*;
        match self {
            NodeExists { path } => NodeExists { path: f(&path) },
            NoNode { path } => NoNode { path: f(&path) },
            BadVersion { path } => BadVersion { path: f(&path) },
            NotEmpty { path } => NotEmpty { path: f(&path) },
            NoChildrenForEphemerals { path } => NoChildrenForEphemerals { path: f(&path) },
            other => other,
        }
    }

    /// True for the errors after which the request may have been applied or not.
    pub fn is_connection_loss(&self) -> bool {
        matches!(self, CoordinationError::ConnectionLoss)
    }
}

pub type Result<T, E = CoordinationError> = std::result::Result<T, E>;
