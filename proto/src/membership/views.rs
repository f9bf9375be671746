//! One group's views at a member: the installed view, the views the
//! directory proposed (installed when the order reaches their marker), and
//! the last views installed (told to a restarted directory).

use crate::ids::{Incarnation, NodeId, ViewId};
use crate::wire::directory::{MemberInfo, NodeInfo, View};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddrV4;

/// Installed views a group remembers (see [`Views::remembered`]): as many
/// as the directory keeps of its own.
pub const INSTALLED_VIEWS_KEPT: usize = 16;

/// A group's views at this member.
#[derive(Debug)]
pub struct Views {
    /// The installed view.
    pub view: ViewId,
    /// Its members and nodes.
    pub members: Vec<MemberInfo>,
    pub nodes: BTreeMap<NodeId, NodeInfo>,
    /// The group's multicast address.
    pub address: SocketAddrV4,
    /// The node that orders the group now.
    pub sequencer: NodeId,
    /// The view whose sequencer orders the group now (a flush sets it to the
    /// view it completes; older views installed later do not change it).
    pub sequencer_since: ViewId,
    /// Local members were told a view of this group (a joiner waits until
    /// it knows which view its order starts in).
    pub announced: bool,
    /// Views announced by the directory, installed when the order reaches
    /// their marker.
    pending: BTreeMap<ViewId, View>,
    /// The last views installed, newest last: told to a restarted
    /// directory, which hands them to members that missed them.
    installed: VecDeque<View>,
}

impl Views {
    /// The views of a group first seen in `v` (not installed yet).
    pub fn new(v: &View) -> Views {
        Views {
            view: v.view,
            members: Vec::new(),
            nodes: BTreeMap::new(),
            address: SocketAddrV4::new(v.address, v.port),
            sequencer: v.sequencer,
            sequencer_since: v.view,
            announced: false,
            pending: BTreeMap::new(),
            installed: VecDeque::new(),
        }
    }

    /// Keeps a proposed view until the order reaches its marker.
    pub fn propose(&mut self, v: View) {
        self.pending.insert(v.view, v);
    }

    /// True when view `id` was proposed and waits for its marker.
    pub fn is_pending(&self, id: ViewId) -> bool {
        self.pending.contains_key(&id)
    }

    /// The proposed views waiting for their marker, by id.
    pub fn pending(&self) -> &BTreeMap<ViewId, View> {
        &self.pending
    }

    /// The proposed view with this id, if any.
    pub fn pending_view(&self, id: ViewId) -> Option<&View> {
        self.pending.get(&id)
    }

    /// The data address of `node` as the newest view naming it gives it:
    /// the installed view, or a view proposed and waiting for its marker.
    /// A node that joined in a view this member has not installed yet (its
    /// marker waits, perhaps for that very node's acknowledgement) is
    /// already a member to the directory, and must be answered.
    pub fn node_address(&self, node: NodeId) -> Option<SocketAddrV4> {
        self.pending
            .values()
            .rev()
            .find_map(|v| v.nodes.iter().find(|n| n.node == node))
            .or_else(|| self.nodes.get(&node))
            .map(|info| SocketAddrV4::new(info.ip, info.data_port))
    }

    /// The latest proposed view.
    pub fn latest(&self) -> Option<&View> {
        self.pending.values().next_back()
    }

    /// The highest view id this node knows of the group: installed, or
    /// proposed and waiting for its marker. A restarted directory must
    /// number its next view past it: reusing a pending view's id would
    /// make this node take the new view for the old one sent again.
    pub fn latest_id(&self) -> ViewId {
        self.pending
            .keys()
            .next_back()
            .copied()
            .unwrap_or(self.view)
            .max(self.view)
    }

    /// Installs `v` (the first view of the group, or its marker reached).
    /// Returns false when it is an older view reached at its marker after a
    /// flush moved the order to a newer view's sequencer: that one stays.
    pub fn install(&mut self, v: &View) -> bool {
        self.pending.retain(|id, _| *id > v.view);
        if self.installed.len() >= INSTALLED_VIEWS_KEPT {
            self.installed.pop_front();
        }
        self.installed.push_back(v.clone());
        self.view = v.view;
        self.members = v.members.clone();
        self.nodes = v.nodes.iter().map(|n| (n.node, n.clone())).collect();
        self.address = SocketAddrV4::new(v.address, v.port);
        if v.view < self.sequencer_since {
            return false;
        }
        self.sequencer = v.sequencer;
        self.sequencer_since = v.view;
        true
    }

    /// Every view of the group we remember, oldest first: the last ones
    /// installed and those waiting for their marker.
    pub fn remembered(&self) -> impl Iterator<Item = &View> {
        self.installed.iter().chain(self.pending.values())
    }

    /// The group's own limit on a message's size, if its latest view
    /// (proposed, else installed) sets one.
    pub fn max_message_bytes(&self) -> Option<usize> {
        let v = self.latest().or_else(|| self.installed.back())?;
        (v.max_message_bytes > 0).then_some(v.max_message_bytes as usize)
    }

    /// The nodes of the latest view known (proposed, else installed): the
    /// ones whose streams are still ordered.
    pub fn latest_nodes(&self) -> Vec<(NodeId, Incarnation)> {
        self.latest()
            .map(|v| {
                v.nodes
                    .iter()
                    .map(|n| (n.node, n.incarnation))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_else(|| {
                self.nodes
                    .values()
                    .map(|n| (n.node, n.incarnation))
                    .collect()
            })
    }

    /// `node` as the latest view known lists it (proposed, else installed).
    pub fn latest_node(&self, node: NodeId) -> Option<NodeInfo> {
        self.latest().map_or_else(
            || self.nodes.get(&node).cloned(),
            |v| v.nodes.iter().find(|n| n.node == node).cloned(),
        )
    }

    /// `node` as the installed view lists it, else the latest proposed one.
    pub fn find_node(&self, node: NodeId) -> Option<NodeInfo> {
        self.nodes.get(&node).cloned().or_else(|| {
            self.latest()?
                .nodes
                .iter()
                .find(|n| n.node == node)
                .cloned()
        })
    }

    /// The sequencer's incarnation in the installed view.
    pub fn sequencer_incarnation(&self) -> Incarnation {
        self.nodes
            .get(&self.sequencer)
            .map(|n| n.incarnation)
            .unwrap_or_default()
    }
}
