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
}

impl DirDriver {
    /// A directory declaring the plan's groups.
    pub fn new(plan: &Plan) -> DirDriver {
        let groups = plan
            .groups
            .iter()
            .map(|g| GroupDecl {
                name: g.name.clone(),
                address: g.address,
                port: g.port,
                max_members: None,
                allow_users: None,
                allow_groups: None,
            })
            .collect();
        DirDriver {
            dir: Directory::new(DirectorySettings {
                cluster: crate::trace::cluster(),
                lease: Duration::from_millis(plan.lease_ms),
                groups,
                dynamic: None,
            }),
            conns: BTreeMap::new(),
            next_conn: 1,
        }
    }

    /// The directory process restarts: a fresh core (the same config),
    /// every connection gone. Connection ids are never reused.
    pub fn restart(&mut self, plan: &Plan) {
        let next_conn = self.next_conn;
        *self = DirDriver::new(plan);
        self.next_conn = next_conn;
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
