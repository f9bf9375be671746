//! The simulated directory: the very same [`Directory`] core chorus-directory
//! runs, behind connections that deliver frames reliably and in order (TCP)
//! after a delay the fault plan may stretch.

use crate::plan::Plan;
use chorus_proto::directory::{ConnId, Directory, DirectorySettings, GroupDecl};
use chorus_proto::Duration;
use std::collections::BTreeMap;

/// The directory core and which node holds each connection.
#[derive(Debug)]
pub struct DirDriver {
    pub dir: Directory,
    conns: BTreeMap<ConnId, usize>,
    next_conn: u64,
    /// How many times the directory process restarted.
    pub generation: u64,
}

impl DirDriver {
    /// A directory declaring the plan's groups.
    pub fn new(plan: &Plan) -> DirDriver {
        DirDriver {
            dir: Directory::new(settings(plan)).without_grace(),
            conns: BTreeMap::new(),
            next_conn: 1,
            generation: 0,
        }
    }

    /// The directory process restarts: a fresh core (the same config, and
    /// a grace period, unlike the first one, which started long before the
    /// daemons), every connection gone. Connection ids are never reused.
    pub fn restart(&mut self, plan: &Plan) {
        self.dir = Directory::new(settings(plan));
        self.conns.clear();
        self.generation += 1;
    }

    /// A new connection from `node` (never reusing an id).
    pub fn open(&mut self, node: usize) -> ConnId {
        let c = ConnId(self.next_conn);
        self.next_conn += 1;
        self.conns.insert(c, node);
        c
    }

    /// The node at the other end of `conn`.
    pub fn node_of(&self, conn: ConnId) -> Option<usize> {
        self.conns.get(&conn).copied()
    }
}

/// The directory's settings: the plan's groups, declared.
fn settings(plan: &Plan) -> DirectorySettings {
    let groups = plan
        .groups
        .iter()
        .map(|g| GroupDecl {
            name: g.name.clone(),
            address: g.address,
            port: g.port,
            max_members: None,
            max_message_bytes: None,
            allow_users: None,
            allow_groups: None,
        })
        .collect();
    DirectorySettings {
        cluster: crate::trace::cluster(),
        lease: Duration::from_millis(plan.lease_ms),
        groups,
        dynamic: None,
    }
}
