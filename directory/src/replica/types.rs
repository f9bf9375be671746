//! What the replicas agree on, and openraft's type configuration.
//!
//! The directory's membership state stays soft (rebuilt from the daemons'
//! reports by each new leader, as after a restart). What consensus must
//! settle is who may serve and under which epoch: a leader proposes a
//! [`Command::Lead`] for its term and serves only once that entry is
//! committed, so a majority knows it leads and every later leader has a
//! higher term. The leader also records the highest node and group ids it
//! has handed out ([`Command::Floors`]), so that a later leader hands out
//! fresh ids above them.

use serde::{Deserialize, Serialize};
use std::io::Cursor;

/// An entry of the replicated log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// `replica` leads in `term` and serves daemons under epoch `term`.
    Lead { replica: u64, term: u64 },
    /// The leader has handed out node ids up to `node` and group ids up to
    /// `group` (the state machine keeps the highest of each).
    Floors { node: u32, group: u32 },
}

/// The answer to an applied [`Command`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied;

openraft::declare_raft_types!(
    /// The directory's Raft: node ids are replica ids, a node's address is
    /// its Raft address.
    pub TypeConfig:
        D = Command,
        R = Applied,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// What the state machine holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leadership {
    /// (replica, term) of the last committed [`Command::Lead`].
    pub last: Option<(u64, u64)>,
    /// How many leaderships committed: a leader that finds only its own
    /// has nobody's ids to keep clear of.
    pub leads: u64,
    /// The highest node id any leader recorded.
    pub node_floor: u32,
    /// The highest group id any leader recorded.
    pub group_floor: u32,
}
