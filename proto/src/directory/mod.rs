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
//!    instant has come; first, read what already arrived on the links
//!    [`Directory::links_to_read_before`] names and hand it in.
//!
//! That last read is what keeps a busy or briefly descheduled edge from
//! declaring a node dead whose heartbeat is already in its socket buffer: a
//! lease runs out only when the node's frames have not reached this host.
//!
//! Once a connection is in `poll_close` the core has forgotten it: later
//! frames or a disconnect for it are ignored, so the edge need not report
//! the close back.
//!
//! # Rules
//! - A node is registered by its Hello and holds a lease renewed by every
//!   frame it sends. A node silent for its lease or that says Goodbye is
//!   gone: its members leave and it is detached from every group. A
//!   connection that says nothing within one lease after it opened is
//!   closed.
//! - A dropped link is not death: the node stays registered, in its groups,
//!   until its lease (counted from its last frame) runs out. A Hello from the
//!   same life (same name and incarnation) within the lease rebinds the node
//!   to the new connection: it keeps its id, the old connection (if still
//!   open) is closed, and the node is sent a Welcome and the current view of
//!   every group it takes part in (it may have missed some). No view changes
//!   (unless its addresses changed: peers must learn them).
//! - A Hello with a known name and another incarnation is a restarted
//!   daemon: the old node is gone at once (views change) and the new one is
//!   registered under a fresh id.
//! - A Hello from an unknown name may ask for its previous id (after a
//!   directory restart): it gets it unless a registered node holds it or it
//!   belonged to a node that ended during this directory's life (that node
//!   comes back as a new one). Fresh ids are above every id ever granted,
//!   so they never collide with asked-for ones. Group ids likewise stay above
//!   every id seen, declared, created or reported.
//! - A Hello that asks for no id (a daemon that just started) during the
//!   grace period is answered only when the period ends. A directory cannot
//!   tell its first start from a restart, and a fresh id handed out then
//!   could be one that a surviving daemon is about to ask back (the
//!   directory's own host rebooting: its daemon comes back fresh and first);
//!   that daemon would lose its id, and its groups their order and what was
//!   not yet stable. Waiting costs a daemon started with the directory up to
//!   one lease.
//! - After (re-)registering under its previous id a daemon reports each
//!   group it takes part in (Resume); the groups of a restarted directory
//!   are rebuilt from those reports during a grace period of one lease from
//!   the first input. See `resume.rs`.
//! - View ids only increase per group; the sequencer stays while its node
//!   is attached (moving the order costs the members a flush).

mod groups;
mod registry;
mod resume;

#[cfg(test)]
mod tests;

use crate::ids::{ClusterId, Epoch, GroupId, NodeId, ViewId};
use crate::time::{Duration, Instant};
use crate::wire::directory::{FromDirectory, GroupSummary, NodeInfo, ToDirectory, View};
use groups::{DetachError, Groups, JoinRequest};
use registry::{ConnState, Due, Registry};
use resume::PendingJoin;
pub use resume::HELD_JOINS_MAX;
use std::collections::{BTreeMap, VecDeque};
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
/// Views kept per group for nodes that missed some while their link was
/// down (see `send_recent_views`).
const RECENT_VIEWS_MAX: usize = 16;
/// Bytes of a Groups reply kept free for its header.
const GROUPS_REPLY_HEADROOM_BYTES: usize = 64;

/// The highest node and group ids a directory has handed out (or seen
/// reported). A replicated directory keeps them in its replicated log, so
/// that a new leader hands out fresh ids above every id an earlier leader
/// used ([`Directory::with_id_floors`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IdFloors {
    pub node: u32,
    pub group: u32,
}

impl IdFloors {
    /// Whether either id is above `other`'s.
    pub fn exceeds(&self, other: &IdFloors) -> bool {
        self.node > other.node || self.group > other.group
    }
}

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
    /// Largest message payload in the group, handed to the daemons in
    /// every [`View`] (they apply the lower of it and their own limit);
    /// `None`: no limit of the group's own (0 on the wire). A reload that
    /// changes it reaches the daemons with the group's next view.
    pub max_message_bytes: Option<u32>,
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
    /// End of the grace period: one lease after the first input.
    grace_end: Option<Instant>,
    /// The grace period ended (recoveries done, held joins taken).
    grace_over: bool,
    /// A node asked for its previous id: this directory restarted under
    /// running groups, so joins to groups without a view wait for the end
    /// of the grace period.
    restart_seen: bool,
    /// Joins waiting for the end of the grace period, in arrival order.
    held: Vec<PendingJoin>,
    /// Per group, the last views published (see `send_recent_views`).
    recent_views: BTreeMap<GroupId, VecDeque<View>>,
    /// Per group, the views of the previous directory that nodes told of
    /// while it recovered (`past_view`): which nodes those went on
    /// without (see `excluded_after`).
    told_views: BTreeMap<GroupId, VecDeque<View>>,
    /// Hellos asking for no id, waiting for the end of the grace period,
    /// in arrival order.
    held_hellos: Vec<(ConnId, NodeInfo)>,
    /// The epoch this directory serves under: the Raft term of a replicated
    /// directory's leader, 0 for a single directory. Sent in every Welcome.
    epoch: Epoch,
    /// How far above the highest reported view a recovered group's first
    /// view is numbered (see `with_view_margin`).
    view_margin: u64,
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
            grace_end: None,
            grace_over: false,
            restart_seen: false,
            held: Vec::new(),
            held_hellos: Vec::new(),
            recent_views: BTreeMap::new(),
            told_views: BTreeMap::new(),
            epoch: Epoch(0),
            view_margin: 0,
        }
    }

    /// A directory that numbers each recovered group's first view `margin`
    /// above the highest view reported (one above it otherwise). A new
    /// leader of a replicated directory uses it: a deposed leader may have
    /// handed views to daemons on its side of a partition in its last
    /// moments, which nobody here reported; the margin keeps this leader's
    /// view ids clear of them. View ids need not be consecutive.
    pub fn with_view_margin(mut self, margin: u64) -> Self {
        self.view_margin = margin;
        self
    }

    /// A directory serving under `epoch` (a replicated directory's leader:
    /// its Raft term). It welcomes daemons under it and refuses a daemon
    /// that was welcomed under a higher one: this directory is then a
    /// deposed leader that has not noticed yet.
    pub fn with_epoch(mut self, epoch: Epoch) -> Self {
        self.epoch = epoch;
        self
    }

    /// The epoch this directory serves under.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// A directory whose fresh node and group ids are above `floors`
    /// (declared groups keep their ids 1.. in declaration order, the same
    /// in every replica). Ids asked back by daemons are granted as ever.
    pub fn with_id_floors(mut self, floors: IdFloors) -> Self {
        self.registry.raise_floor(floors.node);
        self.groups.last_group = self.groups.last_group.max(floors.group);
        self
    }

    /// The highest node and group ids handed out or seen so far.
    pub fn id_high_water(&self) -> IdFloors {
        IdFloors {
            node: self.registry.last_node(),
            group: self.groups.last_group,
        }
    }

    /// A directory that cannot have restarted under running groups (one
    /// that lives and dies in the daemon's process, as `chorusd --dev`'s):
    /// it has no grace period, so it answers every Hello at once.
    pub fn without_grace(mut self) -> Self {
        self.skip_grace();
        self
    }

    /// Ends the grace period before any input (see `without_grace`).
    pub fn skip_grace(&mut self) {
        if self.grace_end.is_none() {
            self.grace_over = true;
        }
    }

    /// A connection opened. It must say Hello within one lease.
    pub fn handle_connect(&mut self, now: Instant, conn: ConnId) {
        self.note_time(now);
        if !self.registry.connect(conn, now + self.lease) {
            log::warn!("{conn} reported connected twice; ignored");
        }
    }

    /// A whole frame arrived on `conn`.
    pub fn handle_frame(&mut self, now: Instant, conn: ConnId, frame: ToDirectory) {
        self.note_time(now);
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
                    previous,
                    epoch,
                },
            ) => {
                if self.epoch.0 > 0 && epoch > self.epoch {
                    return self.refuse(
                        conn,
                        format!(
                            "this directory serves epoch {} but the node was welcomed in epoch {epoch}: \
                             this replica is a deposed leader",
                            self.epoch
                        ),
                    );
                }
                let info = NodeInfo {
                    node: NodeId(0),
                    name,
                    incarnation,
                    ip,
                    data_port,
                    order_port,
                };
                self.hello(now, conn, info, previous);
            }
            (Some(ConnState::AwaitingHello), frame) if self.is_held_hello(conn) => {
                self.while_hello_held(conn, frame);
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
                self.note_silence(now, node);
                self.registry.renew(node, now);
                self.node_frame(now, node, frame);
            }
        }
    }

    /// The connection closed (by the peer or on an error). Its node, if
    /// any, stays registered until its lease runs out or it rebinds.
    pub fn handle_disconnect(&mut self, now: Instant, conn: ConnId) {
        self.note_time(now);
        self.held_hellos.retain(|(c, _)| *c != conn);
        if let Some(node) = self.registry.forget_conn(conn) {
            // A closed link is stronger evidence than silence: a daemon that
            // only lost its link reconnects within a fifth of a lease (its
            // backoff is capped below that) and rebinds; a dead one is
            // declared dead then instead of a whole lease later.
            self.registry.shorten(node, now + self.disconnect_grace());
            self.drop_held_joins(node);
            let until = self.registry.lease_deadline(node).unwrap_or(now);
            log::info!(
                "node {node} lost its link ({conn}); it is declared dead in {} ms unless it comes back",
                until.saturating_since(now).as_millis()
            );
        }
    }

    /// Forgets the joins a node's old link asked for and that wait for the
    /// grace period: the daemon failed them when the link broke (its apps
    /// may ask again), so taking them later would put members in the group
    /// that nobody serves (sim seed 39959).
    fn drop_held_joins(&mut self, node: NodeId) {
        let before = self.held.len();
        self.held.retain(|j| j.node != node);
        if self.held.len() < before {
            log::info!(
                "node {node}: {} held joins dropped with its link",
                before - self.held.len()
            );
        }
    }

    /// Logs a node heard from with less than half its lease left: the
    /// trace of a node about to be declared dead (a stalled daemon, a slow
    /// network, or this loop itself late), while nothing is lost yet.
    fn note_silence(&self, now: Instant, node: NodeId) {
        let (Some(deadline), Some(lease)) = (
            self.registry.lease_deadline(node),
            self.registry.lease_of(node),
        ) else {
            return;
        };
        let left = deadline.saturating_since(now);
        if left.as_micros() * 2 < lease.as_micros() {
            log::warn!(
                "node {node} was silent for {} ms of its {} ms lease",
                lease.as_millis().saturating_sub(left.as_millis()),
                lease.as_millis()
            );
        }
    }

    /// How long a node whose link closed has to come back.
    fn disconnect_grace(&self) -> Duration {
        Duration::from_micros(self.lease.as_micros() / 5)
    }

    /// Time passed: the grace period may end, nodes whose lease ran out
    /// are declared dead, and connections that never said Hello are closed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.note_time(now);
        while let Some(due) = self.registry.pop_expired(now) {
            match due {
                Due::Lease(node) => self.end_node(node, "lease expired", true),
                Due::Hello(conn) => {
                    if self.registry.conn_state(conn) == Some(ConnState::AwaitingHello) {
                        log::info!("{conn}: no Hello in time; closing");
                        self.close(conn);
                    }
                }
            }
        }
    }

    /// The configuration was re-read. Added groups appear; removed groups
    /// (and groups whose address or port changed) end, with a GroupEnded to
    /// every node attached to them; other groups keep running under their
    /// new access rules and limits. A new lease applies to nodes that
    /// register from now on. The cluster cannot change while running.
    pub fn handle_reload(&mut self, now: Instant, settings: DirectorySettings) {
        self.note_time(now);
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

    /// The links whose node's lease runs out at or before `now`: before
    /// calling `handle_timeout(now)` the edge reads what already arrived on
    /// them (their frames renew the leases).
    pub fn links_to_read_before(&self, now: Instant) -> Vec<ConnId> {
        self.registry.links_of_leases_due(now)
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.registry.next_deadline(), self.grace_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Registered nodes, by id.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.registry.nodes()
    }

    /// Connections the core knows (with or without a node).
    pub fn connection_count(&self) -> usize {
        self.registry.conn_count()
    }

    /// The registered node called `name` (its link may be down).
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
            max_message_bytes: g.max_message_bytes.unwrap_or(0),
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

    /// Registers the node that said Hello on `conn`, rebinds it, or
    /// refuses it.
    fn hello(&mut self, now: Instant, conn: ConnId, info: NodeInfo, previous: Option<NodeId>) {
        if info.name.is_empty() {
            return self.refuse(conn, "empty node name".into());
        }
        if let Some(old) = self.registry.by_name(&info.name) {
            let old = (old.node, old.incarnation);
            if old.1 == info.incarnation {
                return self.rebind(now, conn, old.0, &info);
            }
            log::info!(
                "node `{}` restarted (incarnation {})",
                info.name,
                info.incarnation
            );
            self.end_node(old.0, "replaced by a new incarnation", true);
        }
        if previous.is_none() && self.in_grace(now) {
            return self.hold_hello(conn, info);
        }
        self.register(now, conn, info, previous);
    }

    /// Registers a node under a fresh id, or the `previous` one it asks for
    /// if free, and welcomes it.
    fn register(&mut self, now: Instant, conn: ConnId, info: NodeInfo, previous: Option<NodeId>) {
        if self.registry.node_count() >= NODES_MAX {
            return self.refuse(conn, format!("directory full ({NODES_MAX} nodes)"));
        }
        let name = info.name.clone();
        let Some(node) = self
            .registry
            .register(conn, info, self.lease, now, previous)
        else {
            return self.refuse(conn, "node ids exhausted".into());
        };
        match previous {
            None => log::info!("node `{name}` registered as {node} ({conn})"),
            Some(previous) => {
                // Only a directory that restarted meets a node it does not
                // know asking for its id: nodes are about to resume groups.
                self.restart_seen = true;
                if previous == node {
                    log::info!("node `{name}` registered again as {node} ({conn})");
                } else {
                    log::info!("node `{name}` asked for id {previous}, which is taken or retired; registered as {node} ({conn})");
                }
            }
        }
        self.welcome(conn, node);
    }

    /// The node's life goes on on a new connection: it keeps its id and
    /// groups, gets a Welcome and the current view of each of its groups.
    /// Its views change only if its addresses did.
    fn rebind(&mut self, now: Instant, conn: ConnId, node: NodeId, info: &NodeInfo) {
        let Some(old) = self.registry.rebind(node, conn, now) else {
            return self.refuse(conn, "cannot rebind the node".into());
        };
        match old {
            Some(old) => {
                log::info!("node `{}` ({node}) moved from {old} to {conn}", info.name);
                self.closing.push_back(old);
                self.drop_held_joins(node);
            }
            None => log::info!("node `{}` ({node}) is back on {conn}", info.name),
        }
        let moved = self.registry.update_addresses(node, info);
        self.welcome(conn, node);
        for group in self.groups.attached_to(node) {
            self.send_recent_views(conn, node, group);
            if moved {
                if self.groups.bump(group) {
                    self.publish(group);
                }
            } else if let Some(view) = self.current_view(group) {
                self.output.push_back((conn, FromDirectory::View(view)));
            }
        }
    }

    /// Sends the node its Welcome with the lease it registered under.
    fn welcome(&mut self, conn: ConnId, node: NodeId) {
        let lease = self.registry.lease_of(node).unwrap_or(self.lease);
        let lease_ms = u32::try_from(lease.as_millis()).unwrap_or(u32::MAX);
        let welcome = FromDirectory::Welcome {
            node,
            cluster: self.cluster,
            lease_ms,
            heartbeat_ms: (lease_ms / 4).max(HEARTBEAT_MIN_MS),
            epoch: self.epoch,
        };
        self.output.push_back((conn, welcome));
    }

    /// Handles a frame from a registered node (its lease is already renewed).
    fn node_frame(&mut self, now: Instant, node: NodeId, frame: ToDirectory) {
        match frame {
            ToDirectory::Hello { .. } | ToDirectory::Heartbeat => {}
            ToDirectory::Resume(r) => self.resume(now, node, r),
            ToDirectory::PastView(v) => self.past_view(node, v),
            ToDirectory::Join {
                group,
                member,
                member_name,
                user,
                unix_groups,
            } => {
                let join = PendingJoin {
                    node,
                    group,
                    member,
                    member_name,
                    user,
                    unix_groups,
                };
                if self.must_hold(now, &join.group) {
                    self.hold(join);
                } else {
                    self.join_now(&join);
                }
            }
            ToDirectory::Leave { group, member } => {
                if self.groups.leave(node, group, member) {
                    self.publish(group);
                } else {
                    log::debug!("node {node}: leave of unknown member {member} of group {group}");
                }
            }
            ToDirectory::Detach { group } => match self.groups.detach(node, group) {
                Ok(()) => {
                    self.publish(group);
                    // The node keeps its part until told: only now may it drop it.
                    self.send_to_node(node, FromDirectory::GroupEnded { group });
                }
                Err(DetachError::HasMembers) => {
                    log::debug!(
                        "node {node}: detach from group {group} while it has members (a join crossed it); ignored"
                    );
                }
                Err(DetachError::NotAttached) => {
                    log::debug!("node {node}: detach from group {group} it is not attached to");
                    self.send_to_node(node, FromDirectory::GroupEnded { group });
                }
            },
            ToDirectory::ListGroups { request } => {
                if let Some(conn) = self.registry.conn_of(node) {
                    self.list_groups(conn, request);
                }
            }
            ToDirectory::Goodbye => self.end_node(node, "said goodbye", true),
        }
    }

    /// Takes a join now: the member joins (new view) or is refused.
    fn join_now(&mut self, join: &PendingJoin) {
        let node = join.node;
        let Some(node_name) = self.registry.node(node).map(|n| n.name.clone()) else {
            return;
        };
        let req = JoinRequest {
            node,
            node_name: &node_name,
            group: &join.group,
            member: join.member,
            member_name: &join.member_name,
            user: &join.user,
            unix_groups: &join.unix_groups,
        };
        match self.groups.join(&req) {
            Ok(id) => {
                log::info!(
                    "`{node_name}:{}` joined group `{}`",
                    join.member_name,
                    join.group
                );
                self.publish(id);
            }
            Err(reason) => {
                log::info!(
                    "`{node_name}:{}` may not join group `{}`: {reason}",
                    join.member_name,
                    join.group
                );
                self.refuse_join(join, reason);
            }
        }
    }

    /// Tells the node its join was refused.
    fn refuse_join(&mut self, join: &PendingJoin, reason: String) {
        if let Some(conn) = self.registry.conn_of(join.node) {
            let msg = FromDirectory::JoinRefused {
                group: join.group.clone(),
                member: join.member,
                reason,
            };
            self.output.push_back((conn, msg));
        }
    }

    /// Answers ListGroups, with as many groups as fit in one frame.
    fn list_groups(&mut self, conn: ConnId, request: u32) {
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
        self.output
            .push_back((conn, FromDirectory::Groups { request, groups }));
    }

    /// Sends a frame to a node if it has a link.
    fn send_to_node(&mut self, node: NodeId, frame: FromDirectory) {
        if let Some(conn) = self.registry.conn_of(node) {
            self.output.push_back((conn, frame));
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
        // Forget the views of groups that ended (dynamic ones come and go).
        let groups = &self.groups;
        self.recent_views.retain(|id, _| groups.get(*id).is_some());
        self.told_views.retain(|id, _| groups.get(*id).is_some());
        let recent = self.recent_views.entry(group).or_default();
        if recent.back().is_none_or(|v| v.view < view.view) {
            if recent.len() >= RECENT_VIEWS_MAX {
                recent.pop_front();
            }
            recent.push_back(view);
        }
    }

    /// Sends `node`, back on `conn`, the recent views of `group` it took
    /// part in, before the current one (which the caller sends): it may
    /// have missed some while its link was down, and would wait for ever at
    /// a missed view's marker in the order. Views it has are ignored.
    fn send_recent_views(&mut self, conn: ConnId, node: NodeId, group: GroupId) {
        self.send_recent_views_after(conn, node, group, ViewId(0));
    }

    /// Sends `node` on `conn` the recent views of `group` that list it,
    /// above `after` and below the current one, oldest first.
    fn send_recent_views_after(
        &mut self,
        conn: ConnId,
        node: NodeId,
        group: GroupId,
        after: ViewId,
    ) {
        let Some(current) = self.groups.get(group).map(|g| g.view) else {
            return;
        };
        let Some(recent) = self.recent_views.get(&group) else {
            return;
        };
        for v in recent.iter().filter(|v| {
            v.view > after && v.view < current && v.nodes.iter().any(|n| n.node == node)
        }) {
            self.output
                .push_back((conn, FromDirectory::View(v.clone())));
        }
    }

    /// Sends each node that resumed a group that just recovered the views
    /// its nodes told of (see `past_view`) that it took part in and had
    /// not heard of (`reported`: the latest view each reported), before
    /// the group's first view. Nodes attached since (held joins) start
    /// with that first view and need none.
    fn send_past_views(&mut self, group: GroupId, reported: &BTreeMap<NodeId, ViewId>) {
        for (node, latest) in reported {
            let attached = self
                .groups
                .get(group)
                .is_some_and(|g| g.attached.contains(node));
            if let Some(conn) = self.registry.conn_of(*node).filter(|_| attached) {
                self.send_recent_views_after(conn, *node, group, *latest);
            }
        }
    }

    /// The node is gone: removed from the registry, its members leave every
    /// group and it is detached; the groups it took part in get new views;
    /// its held joins are dropped. `close` asks the edge to close its
    /// connection, if it has one (not needed when it is already closed).
    fn end_node(&mut self, node: NodeId, why: &str, close: bool) {
        let Some((info, conn)) = self.registry.remove_node(node) else {
            return;
        };
        log::info!("node `{}` ({node}) is gone: {why}", info.name);
        if let Some(conn) = conn.filter(|_| close) {
            self.closing.push_back(conn);
        }
        self.held.retain(|j| j.node != node);
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
        ToDirectory::PastView(_) => "PastView",
    }
}
