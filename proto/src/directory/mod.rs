//! The directory's state machine: registry of nodes, leases, groups, views
//! and the choice of sequencer.
//!
//! The directory is the one place where membership is decided. Daemons
//! connect over TCP, say Hello, and then ask for their applications' members
//! to join and leave groups; the directory answers every change with a new
//! [`View`] sent to every node taking part in the group.
//!
//! # Driving it
//! [`Directory`] does no IO and reads no clock. The edge (the TCP server in
//! `chorus-directory`, or a simulator) reports inputs with the current time:
//! [`Directory::handle_connect`], [`Directory::handle_frame`],
//! [`Directory::handle_disconnect`], [`Directory::handle_timeout`] and
//! [`Directory::handle_reload`]. After each batch of inputs it must, in this
//! order:
//! 1. drain [`Directory::poll_output`] and write each frame to its connection;
//! 2. drain [`Directory::poll_close`] and close each connection once the
//!    frames queued for it are flushed (a Refused must reach the peer);
//! 3. call [`Directory::poll_timeout`] and call `handle_timeout` when that
//!    instant has come.
//!
//! Once a connection is in `poll_close` the core has forgotten it: later
//! frames or a disconnect for it are ignored, so the edge need not report
//! the close back.
//!
//! # Rules
//! - A node is registered by its Hello and holds a lease renewed by every
//!   frame it sends. A node silent for its lease, whose connection drops, or
//!   that says Goodbye is gone: its members leave and it is detached from
//!   every group. A connection that says nothing within one lease after it
//!   opened is closed.
//! - A Hello whose name belongs to a live node is refused if the incarnation
//!   is the same (two daemons configured with one name), and replaces the old
//!   node if it differs (the daemon restarted before its lease ran out).
//! - Node ids and group ids count up from 1 and are never reused, so a stale
//!   id can never name a newer node or group.

mod groups;
mod registry;

#[cfg(test)]
mod tests;

use crate::ids::{ClusterId, GroupId, MemberId, NodeId};
use crate::time::{Duration, Instant};
use crate::wire::directory::{FromDirectory, GroupSummary, NodeInfo, ToDirectory, View};
use groups::{DetachError, Groups, JoinRequest};
use registry::{ConnState, Registry};
use std::collections::VecDeque;
use std::fmt;
use std::net::Ipv4Addr;

/// Most nodes registered at once. Bounds the size of a View frame (with
/// [`MEMBERS_PER_GROUP_MAX`], a full View stays well under
/// [`crate::wire::directory::DIRECTORY_FRAME_MAX_BYTES`]).
pub const NODES_MAX: usize = 1024;
/// Most members in one group, whatever `max_members` says.
pub const MEMBERS_PER_GROUP_MAX: usize = 1024;
/// Shortest heartbeat period handed out in a Welcome.
pub const HEARTBEAT_MIN_MS: u32 = 10;
/// Bytes of a Groups reply kept free for its header.
const GROUPS_REPLY_HEADROOM_BYTES: usize = 64;

/// A TCP connection, numbered by the edge. Never reused by the edge while
/// the core may still know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn {}", self.0)
    }
}

/// What the directory is configured with (converted from the configuration
/// file by `chorus-directory`, so that the core does not depend on it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectorySettings {
    /// Handed to every daemon in its Welcome.
    pub cluster: ClusterId,
    /// A node silent this long is declared dead.
    pub lease: Duration,
    /// Groups declared by the administrator, in file order.
    pub groups: Vec<GroupDecl>,
    /// Groups created on first join, if enabled.
    pub dynamic: Option<DynamicDecl>,
}

/// A group declared in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDecl {
    pub name: String,
    /// IPv4 multicast address of the group.
    pub address: Ipv4Addr,
    pub port: u16,
    /// Joins beyond this many members are refused.
    pub max_members: Option<u32>,
    /// If this or `allow_groups` is set, only these users may join...
    pub allow_users: Option<Vec<String>>,
    /// ...or users in one of these Unix groups.
    pub allow_groups: Option<Vec<String>>,
}

/// Dynamic groups: created on first join, deleted when no node takes part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicDecl {
    /// The address pool, in allocation order.
    pub addresses: Vec<Ipv4Addr>,
    /// UDP port of every dynamic group.
    pub port: u16,
}

/// The directory's state machine. See the module documentation for how to
/// drive it.
#[derive(Debug)]
pub struct Directory {
    cluster: ClusterId,
    /// Lease for nodes registering from now on (and the Hello timeout).
    lease: Duration,
    registry: Registry,
    groups: Groups,
    output: VecDeque<(ConnId, FromDirectory)>,
    closing: VecDeque<ConnId>,
}

impl Directory {
    /// A directory with no node; declared groups get ids 1.. in order.
    pub fn new(settings: DirectorySettings) -> Self {
        Directory {
            cluster: settings.cluster,
            lease: settings.lease,
            registry: Registry::default(),
            groups: Groups::new(&settings.groups, settings.dynamic),
            output: VecDeque::new(),
            closing: VecDeque::new(),
        }
    }

    /// A connection opened. It must say Hello within one lease.
    pub fn handle_connect(&mut self, now: Instant, conn: ConnId) {
        if !self.registry.connect(conn, now + self.lease) {
            log::warn!("{conn} reported connected twice; ignored");
        }
    }

    /// A whole frame arrived on `conn`.
    pub fn handle_frame(&mut self, now: Instant, conn: ConnId, frame: ToDirectory) {
        match (self.registry.conn_state(conn), frame) {
            (None, frame) => log::debug!("{conn} is closed; {} ignored", kind_name(&frame)),
            (
                Some(ConnState::AwaitingHello),
                ToDirectory::Hello {
                    name,
                    incarnation,
                    ip,
                    data_port,
                    order_port,
                    previous: _,
                },
            ) => {
                let info = NodeInfo {
                    node: NodeId(0),
                    name,
                    incarnation,
                    ip,
                    data_port,
                    order_port,
                };
                self.hello(now, conn, info);
            }
            (Some(ConnState::AwaitingHello), frame) => {
                log::warn!("{conn}: {} before Hello; closing", kind_name(&frame));
                self.close(conn);
            }
            (Some(ConnState::Node(node)), ToDirectory::Hello { .. }) => {
                log::warn!("node {node} ({conn}) said Hello twice; dropping it");
                self.end_node(node, "protocol violation", true);
            }
            (Some(ConnState::Node(node)), frame) => {
                self.registry.renew(conn, now);
                self.node_frame(node, frame);
            }
        }
    }

    /// The connection closed (by the peer or on an error). Its node, if
    /// any, is gone at once.
    pub fn handle_disconnect(&mut self, _now: Instant, conn: ConnId) {
        match self.registry.conn_state(conn) {
            Some(ConnState::Node(node)) => self.end_node(node, "connection closed", false),
            Some(ConnState::AwaitingHello) => self.registry.forget_conn(conn),
            None => {}
        }
    }

    /// Time passed: nodes whose lease ran out are declared dead, and
    /// connections that never said Hello are closed.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(conn) = self.registry.pop_expired(now) {
            match self.registry.conn_state(conn) {
                Some(ConnState::Node(node)) => self.end_node(node, "lease expired", true),
                Some(ConnState::AwaitingHello) => {
                    log::info!("{conn}: no Hello in time; closing");
                    self.close(conn);
                }
                None => {}
            }
        }
    }

    /// The configuration was re-read. Added groups appear; removed groups
    /// (and groups whose address or port changed) end, with a GroupEnded to
    /// every node attached to them; other groups keep running under their
    /// new access rules and limits. A new lease applies to nodes that
    /// register from now on. The cluster cannot change while running.
    pub fn handle_reload(&mut self, _now: Instant, settings: DirectorySettings) {
        if settings.cluster != self.cluster {
            log::warn!("the cluster changed in the configuration; it takes a restart to apply");
        }
        self.lease = settings.lease;
        for ended in self.groups.reload(&settings.groups, settings.dynamic) {
            for node in ended.nodes {
                if let Some(conn) = self.registry.conn_of(node) {
                    let msg = FromDirectory::GroupEnded { group: ended.group };
                    self.output.push_back((conn, msg));
                }
            }
        }
    }

    /// The next frame to send, in order.
    pub fn poll_output(&mut self) -> Option<(ConnId, FromDirectory)> {
        self.output.pop_front()
    }

    /// The next connection to close, once its queued frames are flushed.
    pub fn poll_close(&mut self) -> Option<ConnId> {
        self.closing.pop_front()
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.registry.next_deadline()
    }

    /// Registered nodes, by id.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.registry.nodes()
    }

    /// Connections the core knows (with or without a node).
    pub fn connection_count(&self) -> usize {
        self.registry.conn_count()
    }

    /// The live node called `name`.
    pub fn node_by_name(&self, name: &str) -> Option<&NodeInfo> {
        self.registry.by_name(name)
    }

    /// The id of the group called `name`.
    pub fn group_id(&self, name: &str) -> Option<GroupId> {
        self.groups.by_name(name).map(|g| g.id)
    }

    /// The current view of a group, or None if it has none.
    pub fn current_view(&self, group: GroupId) -> Option<View> {
        let g = self.groups.get(group).filter(|g| g.has_view())?;
        let sequencer = g.sequencer?;
        Some(View {
            group: g.id,
            group_name: g.name.clone(),
            address: g.address,
            port: g.port,
            view: g.view,
            sequencer,
            members: g.members.clone(),
            nodes: g
                .attached
                .iter()
                .filter_map(|n| self.registry.node(*n).cloned())
                .collect(),
        })
    }

    /// Every group, sorted by name (declared and dynamic; view 0 if none).
    pub fn group_summaries(&self) -> Vec<GroupSummary> {
        self.groups.summaries().collect()
    }

    /// Registers the node that said Hello on `conn`, or refuses it.
    fn hello(&mut self, now: Instant, conn: ConnId, info: NodeInfo) {
        if info.name.is_empty() {
            return self.refuse(conn, "empty node name".into());
        }
        if let Some(old) = self.registry.by_name(&info.name) {
            if old.incarnation == info.incarnation {
                let reason = format!("node name `{}` is in use by a live node", info.name);
                return self.refuse(conn, reason);
            }
            let old = old.node;
            log::info!(
                "node `{}` restarted (incarnation {})",
                info.name,
                info.incarnation
            );
            self.end_node(old, "replaced by a new incarnation", true);
        }
        if self.registry.node_count() >= NODES_MAX {
            return self.refuse(conn, format!("directory full ({NODES_MAX} nodes)"));
        }
        let name = info.name.clone();
        let Some(node) = self.registry.register(conn, info, self.lease, now) else {
            return self.refuse(conn, "node ids exhausted".into());
        };
        log::info!("node `{name}` registered as {node} ({conn})");
        let lease_ms = u32::try_from(self.lease.as_millis()).unwrap_or(u32::MAX);
        let welcome = FromDirectory::Welcome {
            node,
            cluster: self.cluster,
            lease_ms,
            heartbeat_ms: (lease_ms / 4).max(HEARTBEAT_MIN_MS),
        };
        self.output.push_back((conn, welcome));
    }

    /// Handles a frame from a registered node (its lease is already renewed).
    fn node_frame(&mut self, node: NodeId, frame: ToDirectory) {
        match frame {
            ToDirectory::Hello { .. } | ToDirectory::Heartbeat => {}
            // Rebuilding groups from what nodes report: see the directory-restart work.
            ToDirectory::Resume(_) => {}
            ToDirectory::Join {
                group,
                member,
                member_name,
                user,
                unix_groups,
            } => {
                self.join(node, &group, member, &member_name, &user, &unix_groups);
            }
            ToDirectory::Leave { group, member } => {
                if self.groups.leave(node, group, member) {
                    self.publish(group);
                } else {
                    log::debug!("node {node}: leave of unknown member {member} of group {group}");
                }
            }
            ToDirectory::Detach { group } => match self.groups.detach(node, group) {
                Ok(()) => self.publish(group),
                Err(DetachError::HasMembers) => {
                    log::warn!(
                        "node {node}: detach from group {group} while it has members; ignored"
                    );
                }
                Err(DetachError::NotAttached) => {
                    log::debug!("node {node}: detach from group {group} it is not attached to");
                }
            },
            ToDirectory::ListGroups { request } => self.list_groups(node, request),
            ToDirectory::Goodbye => self.end_node(node, "said goodbye", true),
        }
    }

    fn join(
        &mut self,
        node: NodeId,
        group: &str,
        member: MemberId,
        member_name: &str,
        user: &str,
        unix_groups: &[String],
    ) {
        let Some(node_name) = self.registry.node(node).map(|n| n.name.clone()) else {
            return;
        };
        let req = JoinRequest {
            node,
            node_name: &node_name,
            group,
            member,
            member_name,
            user,
            unix_groups,
        };
        match self.groups.join(&req) {
            Ok(id) => {
                log::info!("`{node_name}:{member_name}` joined group `{group}`");
                self.publish(id);
            }
            Err(reason) => {
                log::info!("`{node_name}:{member_name}` may not join group `{group}`: {reason}");
                if let Some(conn) = self.registry.conn_of(node) {
                    let msg = FromDirectory::JoinRefused {
                        group: group.to_owned(),
                        member,
                        reason,
                    };
                    self.output.push_back((conn, msg));
                }
            }
        }
    }

    /// Answers ListGroups, with as many groups as fit in one frame.
    fn list_groups(&mut self, node: NodeId, request: u32) {
        let budget =
            crate::wire::directory::DIRECTORY_FRAME_MAX_BYTES - GROUPS_REPLY_HEADROOM_BYTES;
        let mut used = 0;
        let mut groups = Vec::new();
        for g in self.groups.summaries().take(u16::MAX as usize) {
            used += 1 + g.name.len() + 4 + 2 + 8 + 4 + 1;
            if used > budget {
                log::warn!("group list cut to {} groups to fit one frame", groups.len());
                break;
            }
            groups.push(g);
        }
        if let Some(conn) = self.registry.conn_of(node) {
            self.output
                .push_back((conn, FromDirectory::Groups { request, groups }));
        }
    }

    /// Sends the group's current view to every node taking part in it.
    fn publish(&mut self, group: GroupId) {
        let Some(view) = self.current_view(group) else {
            return;
        };
        log::debug!(
            "group `{}` view {}: {} members on {} nodes, sequencer {}",
            view.group_name,
            view.view,
            view.members.len(),
            view.nodes.len(),
            view.sequencer
        );
        for n in &view.nodes {
            if let Some(conn) = self.registry.conn_of(n.node) {
                self.output
                    .push_back((conn, FromDirectory::View(view.clone())));
            }
        }
    }

    /// The node is gone: removed from the registry, its members leave every
    /// group and it is detached; the groups it took part in get new views.
    /// `close` asks the edge to close its connection (not needed when the
    /// connection is already closed).
    fn end_node(&mut self, node: NodeId, why: &str, close: bool) {
        let Some((info, conn)) = self.registry.remove_node(node) else {
            return;
        };
        log::info!("node `{}` ({node}) is gone: {why}", info.name);
        if close {
            self.closing.push_back(conn);
        }
        for group in self.groups.drop_node(node) {
            self.publish(group);
        }
    }

    /// Refuses a connection that has no node: Refused, then close.
    fn refuse(&mut self, conn: ConnId, reason: String) {
        log::warn!("{conn} refused: {reason}");
        self.output
            .push_back((conn, FromDirectory::Refused { reason }));
        self.close(conn);
    }

    /// Forgets a connection without a node and asks the edge to close it.
    fn close(&mut self, conn: ConnId) {
        self.registry.forget_conn(conn);
        self.closing.push_back(conn);
    }
}

/// A frame's kind, for logs.
fn kind_name(frame: &ToDirectory) -> &'static str {
    match frame {
        ToDirectory::Hello { .. } => "Hello",
        ToDirectory::Heartbeat => "Heartbeat",
        ToDirectory::Join { .. } => "Join",
        ToDirectory::Leave { .. } => "Leave",
        ToDirectory::Detach { .. } => "Detach",
        ToDirectory::ListGroups { .. } => "ListGroups",
        ToDirectory::Goodbye => "Goodbye",
        ToDirectory::Resume(_) => "Resume",
    }
}
