//! Packet-script tests of the directory: each feeds inputs and asserts on
//! the exact frames and closes that come out.

use super::*;
use crate::ids::{Incarnation, MemberId, ViewId};
use crate::wire::directory::{MemberInfo, Resume, View};

const LEASE_MS: u64 = 1000;

fn decl(name: &str, last: u8) -> GroupDecl {
    GroupDecl {
        name: name.into(),
        address: Ipv4Addr::new(239, 192, 0, last),
        port: 7410,
        max_members: None,
        max_message_bytes: None,
        allow_users: None,
        allow_groups: None,
    }
}

fn settings(groups: Vec<GroupDecl>, dynamic: Option<DynamicDecl>) -> DirectorySettings {
    DirectorySettings {
        cluster: ClusterId(42),
        lease: Duration::from_millis(LEASE_MS),
        groups,
        dynamic,
    }
}

fn pool() -> DynamicDecl {
    DynamicDecl {
        addresses: vec![
            Ipv4Addr::new(239, 192, 100, 1),
            Ipv4Addr::new(239, 192, 100, 2),
        ],
        port: 7420,
    }
}

fn ms(ms: u64) -> Instant {
    Instant::from_micros(ms * 1000)
}

/// A directory and a clock, with helpers that speak for daemons.
struct Script {
    d: Directory,
    now: Instant,
}

impl Script {
    /// A directory past its grace period (started long before).
    fn new(s: DirectorySettings) -> Self {
        Script {
            d: Directory::new(s).without_grace(),
            now: ms(0),
        }
    }

    /// A directory process that just started (its grace period begins with
    /// the first input).
    fn started(s: DirectorySettings) -> Self {
        Script {
            d: Directory::new(s),
            now: ms(0),
        }
    }

    fn frame(&mut self, conn: u64, f: ToDirectory) {
        self.d.handle_frame(self.now, ConnId(conn), f);
    }

    fn output(&mut self) -> Vec<(ConnId, FromDirectory)> {
        std::iter::from_fn(|| self.d.poll_output()).collect()
    }

    fn closes(&mut self) -> Vec<ConnId> {
        std::iter::from_fn(|| self.d.poll_close()).collect()
    }

    fn hello_frame(name: &str, inc: u64) -> ToDirectory {
        Self::hello_again(name, inc, None)
    }

    /// A Hello from a daemon that had id `previous` before its link dropped.
    fn hello_again(name: &str, inc: u64, previous: impl Into<Option<NodeId>>) -> ToDirectory {
        ToDirectory::Hello {
            name: name.into(),
            incarnation: Incarnation(inc),
            ip: Ipv4Addr::new(127, 0, 0, 1),
            data_port: 7401,
            order_port: 7402,
            previous: previous.into(),
            epoch: crate::ids::Epoch(0),
        }
    }

    /// Connects `conn`, says Hello, and returns the node id from the Welcome.
    fn node(&mut self, conn: u64, name: &str, inc: u64) -> NodeId {
        self.node_again(conn, name, inc, None)
    }

    /// Connects `conn`, says Hello asking for `previous`, and returns the
    /// node id from the Welcome (the only frame expected).
    fn node_again(
        &mut self,
        conn: u64,
        name: &str,
        inc: u64,
        previous: impl Into<Option<NodeId>>,
    ) -> NodeId {
        self.d.handle_connect(self.now, ConnId(conn));
        self.frame(conn, Self::hello_again(name, inc, previous));
        match self.output().as_slice() {
            [(c, FromDirectory::Welcome { node, .. })] if *c == ConnId(conn) => *node,
            other => panic!("expected a Welcome, got {other:?}"),
        }
    }

    /// The daemon on `conn` reports a group it takes part in.
    fn resume(&mut self, conn: u64, r: Resume) {
        self.frame(conn, ToDirectory::Resume(r));
    }

    /// Sets the clock and lets the directory handle its timeouts.
    fn advance_to(&mut self, t: Instant) {
        self.now = t;
        self.d.handle_timeout(t);
    }

    fn join(&mut self, conn: u64, group: &str, member: u32, name: &str) {
        self.join_as(conn, group, member, name, "alice", &[]);
    }

    fn join_as(
        &mut self,
        conn: u64,
        group: &str,
        member: u32,
        name: &str,
        user: &str,
        ugroups: &[&str],
    ) {
        self.frame(
            conn,
            ToDirectory::Join {
                group: group.into(),
                member: MemberId(member),
                member_name: name.into(),
                user: user.into(),
                unix_groups: ugroups.iter().map(|g| g.to_string()).collect(),
            },
        );
    }

    fn info(&self, node: NodeId) -> NodeInfo {
        self.d
            .nodes()
            .find(|n| n.node == node)
            .cloned()
            .expect("node registered")
    }
}

fn member(node: NodeId, member: u32, name: &str) -> MemberInfo {
    MemberInfo {
        node,
        member: MemberId(member),
        name: name.into(),
    }
}

/// Takes the GroupEnded frames out of `out` (a detaching node is told its
/// part is over), as (connection, group).
fn take_ended(out: &mut Vec<(ConnId, FromDirectory)>) -> Vec<(ConnId, GroupId)> {
    let mut ended = Vec::new();
    out.retain(|(c, f)| match f {
        FromDirectory::GroupEnded { group } => {
            ended.push((*c, *group));
            false
        }
        _ => true,
    });
    ended
}

/// The View frames in `out`, as (connection, view id, sequencer, members).
fn views(out: &[(ConnId, FromDirectory)]) -> Vec<(ConnId, ViewId, NodeId, Vec<MemberInfo>)> {
    out.iter()
        .map(|(c, f)| match f {
            FromDirectory::View(v) => (*c, v.view, v.sequencer, v.members.clone()),
            other => panic!("expected only views, got {other:?}"),
        })
        .collect()
}

mod dynamic_groups;
mod epochs;
mod invariants;
mod joins_and_views;
mod links;
mod registry_and_leases;
mod reload;
mod resume;
