//! `directory.toml`'s replication keys: this replica's `id`, its
//! `state_dir` and the `[[peer]]` tables of every replica (itself included).
//!
//! A file without them is a single directory, exactly as before
//! replication existed. With them, the replicas elect a leader among
//! themselves (Raft) and only the leader serves daemons; see the
//! `chorus-directory` crate.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use crate::check::{self, required};
use crate::source::Source;
use crate::ConfigError;

/// Most replicas: Raft needs a majority of them for every decision, and
/// more than seven only slows elections without making the service safer.
pub const REPLICAS_MAX: usize = 7;

/// A directory replica's id, as `id` and `peer.id` spell it: 1 or more,
/// the same in every replica's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplicaId(pub u64);

impl std::fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "replica {}", self.0)
    }
}

/// One `[[peer]]` table: a replica of the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub id: ReplicaId,
    /// TCP address the replicas talk Raft on.
    pub raft: SocketAddr,
    /// TCP address daemons connect to (that replica's `listen`); followers
    /// send daemons here when this replica leads.
    pub listen: SocketAddr,
}

/// The replication keys, validated: present only when `[[peer]]` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// This replica's id: one of `peers`.
    pub id: ReplicaId,
    /// Where this replica keeps its Raft vote and log (created if missing).
    pub state_dir: PathBuf,
    /// Every replica, this one included, in file order.
    pub peers: Vec<PeerConfig>,
}

impl ReplicationConfig {
    /// This replica's own `[[peer]]` entry.
    pub fn own(&self) -> Option<&PeerConfig> {
        self.peers.iter().find(|p| p.id == self.id)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPeer {
    id: Spanned<u64>,
    raft: Spanned<String>,
    listen: Spanned<String>,
}

/// Validates `id`, `state_dir` and `[[peer]]` together. `listen` is this
/// replica's own daemon address, which its peer entry must repeat.
pub(crate) fn validate(
    src: &Source<'_>,
    id: Option<Spanned<u64>>,
    state_dir: Option<Spanned<String>>,
    raw: Vec<RawPeer>,
    listen: (SocketAddr, Option<std::ops::Range<usize>>),
) -> Result<Option<ReplicationConfig>, ConfigError> {
    if raw.is_empty() {
        if let Some(id) = id {
            return Err(src.error(
                id.span(),
                "id",
                "an `id` needs the `[[peer]]` tables of every replica; leave it out for a single directory",
            ));
        }
        if let Some(dir) = state_dir {
            return Err(src.error(
                dir.span(),
                "state_dir",
                "`state_dir` is for replicated directories (with `[[peer]]`); leave it out for a single directory",
            ));
        }
        return Ok(None);
    }
    let first_span = raw[0].id.span();
    let mut peers: Vec<PeerConfig> = Vec::with_capacity(raw.len());
    let mut ids: HashMap<u64, usize> = HashMap::new();
    let mut addrs: HashMap<SocketAddr, usize> = HashMap::new();
    for r in raw {
        let line = src.line_of(r.id.span().start);
        let id_span = r.id.span();
        let pid = required(src, "peer.id", r.id, replica_id)?;
        if let Some(first) = ids.insert(pid.0, line) {
            return Err(src.error(
                id_span,
                "peer.id",
                format!("{pid} is already declared on line {first}"),
            ));
        }
        let raft_span = r.raft.span();
        let raft = required(src, "peer.raft", r.raft, |s| check::socket_addr(&s))?;
        let listen_span = r.listen.span();
        let peer_listen = required(src, "peer.listen", r.listen, |s| check::socket_addr(&s))?;
        for (addr, span, key) in [
            (raft, raft_span, "peer.raft"),
            (peer_listen, listen_span, "peer.listen"),
        ] {
            if addr.ip().is_unspecified() {
                return Err(src.error(
                    span,
                    key,
                    format!("{addr}: the other replicas and the daemons connect here, so it must be the replica's own address"),
                ));
            }
            if let Some(first) = addrs.insert(addr, src.line_of(span.start)) {
                return Err(src.error(
                    span,
                    key,
                    format!("{addr} is already used on line {first}"),
                ));
            }
        }
        peers.push(PeerConfig {
            id: pid,
            raft,
            listen: peer_listen,
        });
    }
    if peers.len() > REPLICAS_MAX {
        return Err(src.error(
            first_span,
            "peer",
            format!(
                "{} replicas; at most {REPLICAS_MAX} (3 or 5 is the usual choice)",
                peers.len()
            ),
        ));
    }
    let Some(id) = id else {
        return Err(ConfigError::new(
            src.file,
            Some(src.line_of(first_span.start)),
            Some("id"),
            "`id` is required with `[[peer]]`: say which of the peers this replica is",
        ));
    };
    let id_span = id.span();
    let own = required(src, "id", id, replica_id)?;
    let Some(me) = peers.iter().find(|p| p.id == own) else {
        return Err(src.error(
            id_span,
            "id",
            format!("{own} is not among the `[[peer]]` tables"),
        ));
    };
    let (listen, listen_span) = listen;
    if me.listen != listen && !listen.ip().is_unspecified() {
        return Err(src.error(
            listen_span.unwrap_or(id_span),
            "listen",
            format!(
                "{listen} differs from this replica's `peer.listen` ({}), where the other replicas send daemons",
                me.listen
            ),
        ));
    }
    if listen.ip().is_unspecified() && listen.port() != me.listen.port() {
        return Err(src.error(
            listen_span.unwrap_or(id_span),
            "listen",
            format!(
                "port {} differs from this replica's `peer.listen` ({}), where the other replicas send daemons",
                listen.port(),
                me.listen
            ),
        ));
    }
    let Some(state_dir) = state_dir else {
        return Err(ConfigError::new(
            src.file,
            Some(src.line_of(id_span.start)),
            Some("state_dir"),
            "`state_dir` is required with `[[peer]]`: the replica keeps its Raft vote there",
        ));
    };
    let state_dir = required(src, "state_dir", state_dir, |s| {
        let p = PathBuf::from(&s);
        if p.is_absolute() {
            Ok(p)
        } else {
            Err(format!("`{s}` is not an absolute path"))
        }
    })?;
    Ok(Some(ReplicationConfig {
        id: own,
        state_dir,
        peers,
    }))
}

fn replica_id(id: u64) -> Result<ReplicaId, String> {
    if id == 0 {
        Err("replica ids start at 1".to_owned())
    } else {
        Ok(ReplicaId(id))
    }
}
