//! Registry of connections and nodes, and their deadlines.
//!
//! A connection that has not said Hello yet has a deadline for it; a node
//! has its lease. The two are kept apart because a node outlives its
//! connection: when the link drops the node stays registered (and in its
//! groups) until its lease runs out, and a Hello from the same life rebinds
//! it to a new connection. One table of deadlines, keyed by [`Due`], serves
//! both.
//!
//! # Node ids
//! A fresh id is one above every id this registry ever granted or
//! reserved, so an id asked for by a daemon (after a directory restart)
//! can never collide with a fresh one handed out later. An asked-for id is
//! granted when no registered node holds it and it is not retired: the
//! ids of nodes that ended during this directory's life are never handed
//! out again, so a node declared dead comes back under a new identity.

use super::ConnId;
use crate::ids::NodeId;
use crate::time::{Duration, Instant};
use crate::wire::directory::NodeInfo;
use std::collections::{BTreeMap, BTreeSet};

/// Most retired ids remembered. Beyond it the lowest (oldest) are dropped
/// and every id at or below them counts as retired.
const RETIRED_MAX: usize = 1 << 16;

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Due {
    /// The connection must have said Hello by now.
    Hello(ConnId),
    /// The node's lease runs out.
    Lease(NodeId),
}

/// One connection as the core knows it.
#[derive(Debug, Clone, Copy)]
struct Conn {
    /// When the Hello must have arrived (meaningless once bound).
    hello_deadline: Instant,
    /// The node bound to this connection, once it said Hello.
    node: Option<NodeId>,
}

/// A registered node.
#[derive(Debug, Clone)]
struct NodeEntry {
    info: NodeInfo,
    /// The node's link, or None while it is away (lease still running).
    conn: Option<ConnId>,
    /// The lease announced in this node's Welcome (a reload does not change
    /// it for nodes already registered, whose heartbeat period follows it).
    lease: Duration,
    /// When the lease runs out.
    deadline: Instant,
}

/// What a connection is, for the dispatcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ConnState {
    /// Connected, no Hello yet.
    AwaitingHello,
    /// Bound to this node.
    Node(NodeId),
}

/// Nodes and connections, with their deadlines.
#[derive(Debug, Default)]
pub(super) struct Registry {
    conns: BTreeMap<ConnId, Conn>,
    nodes: BTreeMap<NodeId, NodeEntry>,
    by_name: BTreeMap<String, NodeId>,
    deadlines: BTreeSet<(Instant, Due)>,
    /// The highest node id granted or reserved; fresh ids are above it.
    last_node: u32,
    /// Ids of nodes that ended (the most recent [`RETIRED_MAX`]).
    retired: BTreeSet<NodeId>,
    /// Every id at or below this counts as retired (forgotten ones).
    retired_floor: u32,
}

impl Registry {
    /// Records a new connection that must say Hello by `deadline`. Returns
    /// false (and changes nothing) if the connection is already known.
    pub(super) fn connect(&mut self, conn: ConnId, deadline: Instant) -> bool {
        if self.conns.contains_key(&conn) {
            return false;
        }
        self.conns.insert(
            conn,
            Conn {
                hello_deadline: deadline,
                node: None,
            },
        );
        self.deadlines.insert((deadline, Due::Hello(conn)));
        true
    }

    /// What `conn` is, or None if the core does not know it (never reported,
    /// or already closed).
    pub(super) fn conn_state(&self, conn: ConnId) -> Option<ConnState> {
        self.conns.get(&conn).map(|c| match c.node {
            None => ConnState::AwaitingHello,
            Some(n) => ConnState::Node(n),
        })
    }

    /// Renews the node's lease: it now runs out at `now` plus its lease.
    pub(super) fn renew(&mut self, node: NodeId, now: Instant) {
        let Some(e) = self.nodes.get_mut(&node) else {
            return;
        };
        self.deadlines.remove(&(e.deadline, Due::Lease(node)));
        e.deadline = now + e.lease;
        self.deadlines.insert((e.deadline, Due::Lease(node)));
    }

    /// Brings the node's lease end forward to `at` at the latest (its link
    /// closed: a crashed daemon's socket closes at once, so waiting a whole
    /// lease would only slow failover).
    pub(super) fn shorten(&mut self, node: NodeId, at: Instant) {
        let Some(e) = self.nodes.get_mut(&node) else {
            return;
        };
        if at < e.deadline {
            self.deadlines.remove(&(e.deadline, Due::Lease(node)));
            e.deadline = at;
            self.deadlines.insert((e.deadline, Due::Lease(node)));
        }
    }

    /// The registered node called `name`.
    pub(super) fn by_name(&self, name: &str) -> Option<&NodeInfo> {
        self.by_name
            .get(name)
            .and_then(|n| self.nodes.get(n))
            .map(|e| &e.info)
    }

    /// The id a node asking for `requested` (if anything) would get: that
    /// id if nobody holds it and it is not retired, else a fresh one. None
    /// when ids are exhausted.
    pub(super) fn grant(&self, requested: Option<NodeId>) -> Option<NodeId> {
        let free = requested
            .filter(|&id| id.0 != 0 && !self.nodes.contains_key(&id) && !self.is_retired(id));
        if free.is_some() {
            return free;
        }
        self.last_node.checked_add(1).map(NodeId)
    }

    fn is_retired(&self, id: NodeId) -> bool {
        id.0 <= self.retired_floor || self.retired.contains(&id)
    }

    /// Keeps fresh ids above `id` (an id the directory learned of from a
    /// daemon, which a node may still ask for).
    pub(super) fn reserve(&mut self, id: NodeId) {
        self.last_node = self.last_node.max(id.0);
    }

    /// Registers the node that said Hello on `conn` under the id
    /// [`Registry::grant`] gives for `requested`. `info.node` is
    /// overwritten. Returns None, changing nothing, when node ids are
    /// exhausted, the connection is unknown or already bound, or the name
    /// is taken (the caller resolves name clashes first).
    /// The highest node id granted or reserved.
    pub(super) fn last_node(&self) -> u32 {
        self.last_node
    }

    /// Fresh ids from now on are above `floor` (ids a previous leader of a
    /// replicated directory may have handed out).
    pub(super) fn raise_floor(&mut self, floor: u32) {
        self.last_node = self.last_node.max(floor);
    }

    pub(super) fn register(
        &mut self,
        conn: ConnId,
        mut info: NodeInfo,
        lease: Duration,
        now: Instant,
        requested: Option<NodeId>,
    ) -> Option<NodeId> {
        let id = self.grant(requested)?;
        if self.by_name.contains_key(&info.name) {
            return None;
        }
        let c = self.conns.get_mut(&conn).filter(|c| c.node.is_none())?;
        self.deadlines.remove(&(c.hello_deadline, Due::Hello(conn)));
        c.node = Some(id);
        self.last_node = self.last_node.max(id.0);
        let deadline = now + lease;
        self.deadlines.insert((deadline, Due::Lease(id)));
        info.node = id;
        self.by_name.insert(info.name.clone(), id);
        let entry = NodeEntry {
            info,
            conn: Some(conn),
            lease,
            deadline,
        };
        self.nodes.insert(id, entry);
        Some(id)
    }

    /// Binds a registered node to `conn` (which must be awaiting its
    /// Hello) and renews its lease. The node's previous connection, if it
    /// had one, is forgotten and returned: the caller closes it. Returns
    /// None, changing nothing, when the node or the connection does not fit.
    pub(super) fn rebind(
        &mut self,
        node: NodeId,
        conn: ConnId,
        now: Instant,
    ) -> Option<Option<ConnId>> {
        let c = self.conns.get_mut(&conn).filter(|c| c.node.is_none())?;
        let e = self.nodes.get_mut(&node)?;
        self.deadlines.remove(&(c.hello_deadline, Due::Hello(conn)));
        c.node = Some(node);
        let old = e.conn.replace(conn);
        if let Some(old) = old {
            self.conns.remove(&old);
        }
        self.renew(node, now);
        Some(old)
    }

    /// Replaces the addresses of a registered node (name, id and
    /// incarnation stay). True if they changed.
    pub(super) fn update_addresses(&mut self, node: NodeId, info: &NodeInfo) -> bool {
        let Some(e) = self.nodes.get_mut(&node) else {
            return false;
        };
        let old = (e.info.ip, e.info.data_port, e.info.order_port);
        let new = (info.ip, info.data_port, info.order_port);
        (e.info.ip, e.info.data_port, e.info.order_port) = new;
        old != new
    }

    /// Removes a node (its id is retired) and forgets its connection.
    /// Returns its info and connection, or None if it was not registered.
    pub(super) fn remove_node(&mut self, node: NodeId) -> Option<(NodeInfo, Option<ConnId>)> {
        let entry = self.nodes.remove(&node)?;
        self.by_name.remove(&entry.info.name);
        self.deadlines.remove(&(entry.deadline, Due::Lease(node)));
        if let Some(conn) = entry.conn {
            self.conns.remove(&conn);
        }
        self.retired.insert(node);
        while self.retired.len() > RETIRED_MAX {
            if let Some(oldest) = self.retired.pop_first() {
                self.retired_floor = self.retired_floor.max(oldest.0);
            }
        }
        Some((entry.info, entry.conn))
    }

    /// The connection said Hello, which waits for an answer: it is no
    /// longer closed for silence.
    pub(super) fn hello_received(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get(&conn) {
            self.deadlines.remove(&(c.hello_deadline, Due::Hello(conn)));
        }
    }

    /// Forgets a connection. A node bound to it stays registered, without
    /// a link, until its lease runs out or it rebinds. Returns that node.
    pub(super) fn forget_conn(&mut self, conn: ConnId) -> Option<NodeId> {
        let c = self.conns.remove(&conn)?;
        match c.node {
            None => {
                self.deadlines.remove(&(c.hello_deadline, Due::Hello(conn)));
                None
            }
            Some(node) => {
                if let Some(e) = self.nodes.get_mut(&node) {
                    e.conn = None;
                }
                Some(node)
            }
        }
    }

    /// Takes the earliest deadline out of the table if it is at or before
    /// `now`. Taking it out guarantees that a caller looping over expired
    /// deadlines terminates whatever it does.
    pub(super) fn pop_expired(&mut self, now: Instant) -> Option<Due> {
        let (deadline, due) = *self.deadlines.first()?;
        if deadline > now {
            return None;
        }
        self.deadlines.remove(&(deadline, due));
        Some(due)
    }

    /// The connections of the nodes whose lease runs out at or before
    /// `now` (those that have one).
    pub(super) fn links_of_leases_due(&self, now: Instant) -> Vec<ConnId> {
        self.deadlines
            .iter()
            .take_while(|(deadline, _)| *deadline <= now)
            .filter_map(|(_, due)| match due {
                Due::Lease(node) => self.conn_of(*node),
                Due::Hello(_) => None,
            })
            .collect()
    }

    /// The earliest deadline.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(deadline, _)| *deadline)
    }

    /// When the node's lease runs out.
    pub(super) fn lease_deadline(&self, node: NodeId) -> Option<Instant> {
        self.nodes.get(&node).map(|e| e.deadline)
    }

    /// The node's lease (as announced in its Welcome).
    pub(super) fn lease_of(&self, node: NodeId) -> Option<Duration> {
        self.nodes.get(&node).map(|e| e.lease)
    }

    /// The node's connection, if it has one now.
    pub(super) fn conn_of(&self, node: NodeId) -> Option<ConnId> {
        self.nodes.get(&node).and_then(|e| e.conn)
    }

    /// The node's info.
    pub(super) fn node(&self, node: NodeId) -> Option<&NodeInfo> {
        self.nodes.get(&node).map(|e| &e.info)
    }

    /// Registered nodes, by id.
    pub(super) fn nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.values().map(|e| &e.info)
    }

    /// Number of registered nodes.
    pub(super) fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Number of known connections (with or without a node).
    pub(super) fn conn_count(&self) -> usize {
        self.conns.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Incarnation;
    use std::net::Ipv4Addr;

    fn info(name: &str) -> NodeInfo {
        NodeInfo {
            node: NodeId(0),
            name: name.into(),
            incarnation: Incarnation(1),
            ip: Ipv4Addr::LOCALHOST,
            data_port: 1,
            order_port: 2,
        }
    }

    fn at(ms: u64) -> Instant {
        Instant::from_micros(ms * 1000)
    }

    const LEASE: Duration = Duration::from_millis(100);

    #[test]
    fn ids_count_up_and_are_never_reused() {
        let mut r = Registry::default();
        assert!(r.connect(ConnId(1), at(100)));
        assert!(!r.connect(ConnId(1), at(100)));
        assert_eq!(
            r.register(ConnId(1), info("a"), LEASE, at(0), None),
            Some(NodeId(1))
        );
        assert!(r.remove_node(NodeId(1)).is_some());
        assert!(r.connect(ConnId(2), at(100)));
        // Asking for the retired id gets a fresh one.
        assert_eq!(
            r.register(ConnId(2), info("a"), LEASE, at(0), Some(NodeId(1))),
            Some(NodeId(2))
        );
        assert_eq!(r.by_name("a").map(|i| i.node), Some(NodeId(2)));
        assert_eq!(r.conn_state(ConnId(1)), None);
        assert_eq!(r.conn_state(ConnId(2)), Some(ConnState::Node(NodeId(2))));
    }

    #[test]
    fn requested_ids_are_granted_when_free_and_fresh_ids_stay_above_them() {
        let mut r = Registry::default();
        r.connect(ConnId(1), at(100));
        r.connect(ConnId(2), at(100));
        r.connect(ConnId(3), at(100));
        r.connect(ConnId(4), at(100));
        assert_eq!(
            r.register(ConnId(1), info("a"), LEASE, at(0), Some(NodeId(7))),
            Some(NodeId(7))
        );
        // Held by a: a fresh id, above 7.
        assert_eq!(
            r.register(ConnId(2), info("b"), LEASE, at(0), Some(NodeId(7))),
            Some(NodeId(8))
        );
        // A lower free id is granted; fresh ids stay above every grant.
        assert_eq!(
            r.register(ConnId(3), info("c"), LEASE, at(0), Some(NodeId(3))),
            Some(NodeId(3))
        );
        r.reserve(NodeId(20));
        assert_eq!(
            r.register(ConnId(4), info("d"), LEASE, at(0), None),
            Some(NodeId(21))
        );
    }

    #[test]
    fn a_node_outlives_its_connection_and_rebinds() {
        let mut r = Registry::default();
        r.connect(ConnId(1), at(50));
        assert_eq!(r.next_deadline(), Some(at(50)));
        let a = r
            .register(ConnId(1), info("a"), LEASE, at(10), None)
            .expect("registered");
        assert_eq!(r.next_deadline(), Some(at(110)));
        r.renew(a, at(80));
        assert_eq!(r.next_deadline(), Some(at(180)));
        assert_eq!(r.forget_conn(ConnId(1)), Some(a));
        assert_eq!(r.conn_of(a), None);
        assert_eq!(r.node_count(), 1);
        // The lease still runs.
        assert_eq!(r.next_deadline(), Some(at(180)));
        r.connect(ConnId(2), at(300));
        assert_eq!(r.rebind(a, ConnId(2), at(120)), Some(None));
        assert_eq!(r.conn_of(a), Some(ConnId(2)));
        assert_eq!(r.next_deadline(), Some(at(220)));
        // Rebinding again hands back the connection to close.
        r.connect(ConnId(3), at(300));
        assert_eq!(r.rebind(a, ConnId(3), at(130)), Some(Some(ConnId(2))));
        assert_eq!(r.conn_state(ConnId(2)), None);
        assert_eq!(r.pop_expired(at(229)), None);
        assert_eq!(r.pop_expired(at(230)), Some(Due::Lease(a)));
        assert_eq!(r.pop_expired(at(230)), None);
        assert!(r.remove_node(a).is_some());
        assert_eq!(r.next_deadline(), None);
        assert_eq!(r.conn_count(), 0);
    }
}
