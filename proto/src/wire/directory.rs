//! Frames on the TCP link between a daemon and the directory.
//!
//! Each frame body (inside the 4-byte length of [`super::frame`]) starts with
//! magic (u16), version (u8), kind (u8), then the fields of that kind in the
//! order declared below. Strings are u8-length-prefixed UTF-8 (`str8`) unless
//! noted; lists are u16-count-prefixed; IPv4 addresses are 4 bytes.

use super::DecodeError;
use crate::ids::{ClusterId, GroupId, Incarnation, MemberId, NodeId, ViewId};
use std::net::Ipv4Addr;

/// Longest directory frame accepted.
pub const DIRECTORY_FRAME_MAX_BYTES: usize = 1 << 20;

/// Where a daemon can be reached by its peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub node: NodeId,
    pub name: String,
    pub incarnation: Incarnation,
    /// Interface address (unicast data and multicast).
    pub ip: Ipv4Addr,
    /// UDP port for acks, naks and unicast repair of DATA.
    pub data_port: u16,
    /// UDP port of the node's sequencer socket (ORDER acks and naks).
    pub order_port: u16,
}

/// A member of a group as the directory knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    pub node: NodeId,
    /// The member's id on its node.
    pub member: MemberId,
    /// The member's name on its node (shown as `NODE:NAME`).
    pub name: String,
}

/// One view of a group, as the directory hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub group: GroupId,
    pub group_name: String,
    pub address: Ipv4Addr,
    pub port: u16,
    pub view: ViewId,
    /// The node that sequences the group in this view.
    pub sequencer: NodeId,
    /// Members in join order.
    pub members: Vec<MemberInfo>,
    /// Every node taking part in the group in this view (hosting a member or
    /// still draining its sends), with addresses; sorted by node id.
    pub nodes: Vec<NodeInfo>,
}

/// A group as listed by `chorusctl groups`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSummary {
    pub name: String,
    pub address: Ipv4Addr,
    pub port: u16,
    /// 0 when the group has no view yet (declared, nobody joined).
    pub view: ViewId,
    pub members: u32,
    /// Declared in the configuration (false: created on first join).
    pub declared: bool,
}

/// Daemon → directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToDirectory {
    /// First frame on a link. kind 1: name str8, incarnation u64, ip, data_port u16, order_port u16.
    Hello {
        name: String,
        incarnation: Incarnation,
        ip: Ipv4Addr,
        data_port: u16,
        order_port: u16,
    },
    /// Liveness, renews the lease. kind 2: no fields.
    Heartbeat,
    /// A local member joins. kind 3: group str8, member u32, member_name str8,
    /// user str8, unix_groups (u16 count, str8 each).
    Join {
        group: String,
        member: MemberId,
        member_name: String,
        /// Unix user of the app (from SO_PEERCRED), for allow_users.
        user: String,
        /// Unix groups of the app, for allow_groups.
        unix_groups: Vec<String>,
    },
    /// A local member leaves. kind 4: group u32, member u32.
    Leave { group: GroupId, member: MemberId },
    /// The node has no member left in the group and its sends are stable:
    /// it stops taking part. kind 5: group u32.
    Detach { group: GroupId },
    /// Asks for the group list. kind 6: request u32.
    ListGroups { request: u32 },
    /// Orderly goodbye (SIGTERM): the node's members all leave. kind 7.
    Goodbye,
}

/// Directory → daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromDirectory {
    /// Reply to Hello. kind 101: node u32, cluster u32, lease_ms u32, heartbeat_ms u32.
    Welcome {
        node: NodeId,
        cluster: ClusterId,
        lease_ms: u32,
        heartbeat_ms: u32,
    },
    /// A join was refused. kind 102: group str8, member u32, reason str16.
    JoinRefused {
        group: String,
        member: MemberId,
        reason: String,
    },
    /// A new view of a group this node takes part in. kind 103: group u32,
    /// group_name str8, address, port u16, view u64, sequencer u32,
    /// members (u16 count; node u32, member u32, name str8),
    /// nodes (u16 count; node u32, name str8, incarnation u64, ip, data_port u16, order_port u16).
    View(View),
    /// The group ended (removed from the configuration). kind 104: group u32.
    GroupEnded { group: GroupId },
    /// Reply to ListGroups. kind 105: request u32, groups (u16 count; name str8,
    /// address, port u16, view u64, members u32, declared bool).
    Groups {
        request: u32,
        groups: Vec<GroupSummary>,
    },
    /// The directory refuses the link (e.g. duplicate node name still alive).
    /// kind 106: reason str16. The directory closes the link after it.
    Refused { reason: String },
}

impl ToDirectory {
    /// Appends the frame body (without the length prefix).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let _ = out;
        todo!("ToDirectory::encode")
    }

    /// Decodes a frame body; every byte must be consumed.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let _ = body;
        todo!("ToDirectory::decode")
    }
}

impl FromDirectory {
    /// Appends the frame body (without the length prefix).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let _ = out;
        todo!("FromDirectory::encode")
    }

    /// Decodes a frame body; every byte must be consumed.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let _ = body;
        todo!("FromDirectory::decode")
    }
}
