//! Registry of connections and nodes, and their deadlines.
//!
//! Every connection the edge reports has one deadline: before its Hello it is
//! the time by which the Hello must arrive, afterwards the node's lease. A node
//! is bound to exactly one connection for its whole life, so one table of
//! deadlines keyed by connection serves both.

use super::ConnId;
use crate::ids::NodeId;
use crate::time::{Duration, Instant};
use crate::wire::directory::NodeInfo;
use std::collections::{BTreeMap, BTreeSet};

/// One connection as the core knows it.
#[derive(Debug, Clone, Copy)]
struct Conn {
    deadline: Instant,
    /// The node registered on this connection, once it said Hello.
    node: Option<NodeId>,
}

/// A registered node.
#[derive(Debug, Clone)]
struct NodeEntry {
    info: NodeInfo,
    conn: ConnId,
    /// The lease announced in this node's Welcome (a reload does not change
    /// it for nodes already registered, whose heartbeat period follows it).
    lease: Duration,
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
    deadlines: BTreeSet<(Instant, ConnId)>,
    /// The last node id handed out; ids are never reused.
    last_node: u32,
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
                deadline,
                node: None,
            },
        );
        self.deadlines.insert((deadline, conn));
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

    /// Renews the lease of the node on `conn`: its deadline becomes `now`
    /// plus its lease.
    pub(super) fn renew(&mut self, conn: ConnId, now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(lease) = c.node.and_then(|n| self.nodes.get(&n)).map(|e| e.lease) else {
            return;
        };
        self.deadlines.remove(&(c.deadline, conn));
        c.deadline = now + lease;
        self.deadlines.insert((c.deadline, conn));
    }

    /// The live node called `name`.
    pub(super) fn by_name(&self, name: &str) -> Option<&NodeInfo> {
        self.by_name
            .get(name)
            .and_then(|n| self.nodes.get(n))
            .map(|e| &e.info)
    }

    /// Registers the node that said Hello on `conn` and gives it the next id.
    /// `info.node` is overwritten. Returns None, changing nothing, when node
    /// ids are exhausted, the connection is unknown or already bound, or the
    /// name is taken (the caller resolves name clashes first).
    pub(super) fn register(
        &mut self,
        conn: ConnId,
        mut info: NodeInfo,
        lease: Duration,
        now: Instant,
    ) -> Option<NodeId> {
        let next = self.last_node.checked_add(1)?;
        if self.by_name.contains_key(&info.name) {
            return None;
        }
        let c = self.conns.get_mut(&conn).filter(|c| c.node.is_none())?;
        let id = NodeId(next);
        self.last_node = next;
        self.deadlines.remove(&(c.deadline, conn));
        c.deadline = now + lease;
        c.node = Some(id);
        self.deadlines.insert((c.deadline, conn));
        info.node = id;
        self.by_name.insert(info.name.clone(), id);
        self.nodes.insert(id, NodeEntry { info, conn, lease });
        Some(id)
    }

    /// Removes a node and forgets its connection. Returns its info and
    /// connection, or None if it was not registered.
    pub(super) fn remove_node(&mut self, node: NodeId) -> Option<(NodeInfo, ConnId)> {
        let entry = self.nodes.remove(&node)?;
        self.by_name.remove(&entry.info.name);
        if let Some(c) = self.conns.remove(&entry.conn) {
            self.deadlines.remove(&(c.deadline, entry.conn));
        }
        Some((entry.info, entry.conn))
    }

    /// Forgets a connection that has no node (a node's connection goes with
    /// [`Registry::remove_node`]).
    pub(super) fn forget_conn(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get(&conn).copied() {
            if let Some(node) = c.node {
                self.remove_node(node);
            } else {
                self.conns.remove(&conn);
                self.deadlines.remove(&(c.deadline, conn));
            }
        }
    }

    /// Takes the earliest deadline out of the table if it is at or before
    /// `now`, and returns its connection. Taking it out guarantees that a
    /// caller looping over expired deadlines terminates whatever it does.
    pub(super) fn pop_expired(&mut self, now: Instant) -> Option<ConnId> {
        let (deadline, conn) = *self.deadlines.first()?;
        if deadline > now {
            return None;
        }
        self.deadlines.remove(&(deadline, conn));
        Some(conn)
    }

    /// The earliest deadline.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(deadline, _)| *deadline)
    }

    /// The node's connection.
    pub(super) fn conn_of(&self, node: NodeId) -> Option<ConnId> {
        self.nodes.get(&node).map(|e| e.conn)
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

    #[test]
    fn ids_count_up_and_are_never_reused() {
        let mut r = Registry::default();
        let lease = Duration::from_millis(100);
        assert!(r.connect(ConnId(1), at(100)));
        assert!(!r.connect(ConnId(1), at(100)));
        assert_eq!(
            r.register(ConnId(1), info("a"), lease, at(0)),
            Some(NodeId(1))
        );
        assert!(r.remove_node(NodeId(1)).is_some());
        assert!(r.connect(ConnId(2), at(100)));
        assert_eq!(
            r.register(ConnId(2), info("a"), lease, at(0)),
            Some(NodeId(2))
        );
        assert_eq!(r.by_name("a").map(|i| i.node), Some(NodeId(2)));
        assert_eq!(r.conn_state(ConnId(1)), None);
        assert_eq!(r.conn_state(ConnId(2)), Some(ConnState::Node(NodeId(2))));
    }

    #[test]
    fn renewal_moves_the_deadline() {
        let mut r = Registry::default();
        let lease = Duration::from_millis(100);
        r.connect(ConnId(1), at(50));
        assert_eq!(r.next_deadline(), Some(at(50)));
        r.register(ConnId(1), info("a"), lease, at(10));
        assert_eq!(r.next_deadline(), Some(at(110)));
        r.renew(ConnId(1), at(80));
        assert_eq!(r.next_deadline(), Some(at(180)));
        assert_eq!(r.pop_expired(at(179)), None);
        assert_eq!(r.pop_expired(at(180)), Some(ConnId(1)));
        assert_eq!(r.pop_expired(at(180)), None);
        r.forget_conn(ConnId(1));
        assert_eq!(r.next_deadline(), None);
        assert_eq!(r.node_count(), 0);
        assert_eq!(r.conn_count(), 0);
    }
}
