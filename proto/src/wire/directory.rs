//! Frames on the TCP link between a daemon and the directory.
//!
//! Each frame body (inside the 4-byte length of [`super::frame`]) starts with
//! magic (u16), version (u8), kind (u8), then the fields of that kind in the
//! order declared below. Strings are u8-length-prefixed UTF-8 (`str8`) unless
//! noted; lists are u16-count-prefixed; IPv4 addresses are 4 bytes.
//!
//! Decoding also rejects ids the directory never hands out: a node or group
//! id of 0, and view 0 in a View (view 0 only means "no view" in a
//! [`GroupSummary`]).

use super::codec::{Put, Reader};
use super::{DecodeError, MAGIC, VERSION};
use crate::ids::{ClusterId, Epoch, GroupId, Incarnation, MemberId, NodeId, ViewId};
use std::net::{Ipv4Addr, SocketAddr};

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
    /// Largest message payload the group's configuration allows, in bytes;
    /// each daemon applies the lower of this and its own limit. 0: the
    /// group sets no limit of its own (dynamic groups, and declared groups
    /// without `max_message_bytes`).
    pub max_message_bytes: u32,
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
    /// First frame on a link. kind 1: name str8, incarnation u64, ip,
    /// data_port u16, order_port u16, previous u32, epoch u64.
    Hello {
        name: String,
        incarnation: Incarnation,
        ip: Ipv4Addr,
        data_port: u16,
        order_port: u16,
        /// The id this node had before its link dropped, if any. After a
        /// directory restart the node asks to keep it, so the groups' streams
        /// keep their names. Encoded as u32 (0: none).
        previous: Option<NodeId>,
        /// The highest directory epoch this daemon has been welcomed in (0:
        /// none). A directory whose own epoch is lower is a deposed leader
        /// and refuses the daemon. Encoded last, as u64.
        epoch: Epoch,
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
    /// After (re-)registering, a node states a group it takes part in, so
    /// a restarted directory rebuilds the group as it was. kind 8: group u32,
    /// group_name str8, address, port u16, view u64, sequencer u32,
    /// since u64, members (u16 count; member u32, name str8).
    Resume(Resume),
    /// After a group's Resume, each view of it the node remembers (its
    /// recent installed views and those waiting for their marker). A
    /// restarted directory hands them to the nodes that missed them before
    /// the group's first view: a node must install every view whose marker
    /// its order reaches. kind 9: the fields of a View (kind 103).
    PastView(View),
}

/// A group as one node knows it, sent when it re-registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    pub group: GroupId,
    pub group_name: String,
    pub address: Ipv4Addr,
    pub port: u16,
    /// The node's installed view.
    pub view: ViewId,
    pub sequencer: NodeId,
    /// The view the node's part in the group's current order began in. A
    /// restarted directory counts the node that began earliest as the
    /// oldest: it knows the most of the order, so it is the one to take
    /// the order over if the sequencer is gone.
    pub since: ViewId,
    /// This node's members of the group.
    pub members: Vec<(MemberId, String)>,
}

/// Directory → daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromDirectory {
    /// Reply to Hello. kind 101: node u32, cluster u32, lease_ms u32,
    /// heartbeat_ms u32, epoch u64.
    Welcome {
        node: NodeId,
        cluster: ClusterId,
        lease_ms: u32,
        heartbeat_ms: u32,
        /// The epoch the directory serves under (its Raft term; 0 for a
        /// single directory). Every later frame on the link is of this
        /// epoch: a link is to one leader only.
        epoch: Epoch,
    },
    /// A join was refused. kind 102: group str8, member u32, reason str16.
    JoinRefused {
        group: String,
        member: MemberId,
        reason: String,
    },
    /// A new view of a group this node takes part in. kind 103: group u32,
    /// group_name str8, address, port u16, view u64, sequencer u32,
    /// max_message_bytes u32, members (u16 count; node u32, member u32, name str8),
    /// nodes (u16 count; node u32, name str8, incarnation u64, ip, data_port u16, order_port u16).
    View(View),
    /// The group ended for this node: removed from the configuration, or
    /// the node detached (it keeps its part until this arrives). kind 104:
    /// group u32.
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
    /// This replica of a replicated directory does not lead: the daemon
    /// should connect to `leader` (the leader's daemon address), or, when
    /// it is `None` (no leader known, e.g. during an election), try the
    /// next address of its list. kind 107: leader str8 (`IP:PORT`, empty:
    /// none). The replica closes the link after it.
    Redirect { leader: Option<SocketAddr> },
}

const KIND_HELLO: u8 = 1;
const KIND_HEARTBEAT: u8 = 2;
const KIND_JOIN: u8 = 3;
const KIND_LEAVE: u8 = 4;
const KIND_DETACH: u8 = 5;
const KIND_LIST_GROUPS: u8 = 6;
const KIND_GOODBYE: u8 = 7;
const KIND_RESUME: u8 = 8;
const KIND_PAST_VIEW: u8 = 9;
const KIND_WELCOME: u8 = 101;
const KIND_JOIN_REFUSED: u8 = 102;
const KIND_VIEW: u8 = 103;
const KIND_GROUP_ENDED: u8 = 104;
const KIND_GROUPS: u8 = 105;
const KIND_REFUSED: u8 = 106;
const KIND_REDIRECT: u8 = 107;

/// Fewest bytes one `str8` entry of a list takes (its length byte).
const STR8_MIN_BYTES: usize = 1;
/// Fewest bytes of one member entry in a View: node, member, empty name.
const MEMBER_MIN_BYTES: usize = 4 + 4 + 1;
/// Fewest bytes of one node entry in a View.
const NODE_MIN_BYTES: usize = 4 + 1 + 8 + 4 + 2 + 2;
/// Fewest bytes of one group summary in Groups.
const SUMMARY_MIN_BYTES: usize = 1 + 4 + 2 + 8 + 4 + 1;

fn put_header(out: &mut Vec<u8>, kind: u8) {
    out.put_u16(MAGIC);
    out.put_u8(VERSION);
    out.put_u8(kind);
}

/// Reads magic and version, returns the kind.
fn read_header(r: &mut Reader<'_>) -> Result<u8, DecodeError> {
    let magic = r.u16()?;
    if magic != MAGIC {
        return Err(DecodeError::BadMagic(magic));
    }
    let version = r.u8()?;
    if version != VERSION {
        return Err(DecodeError::BadVersion(version));
    }
    r.u8()
}

/// Writes a u16 list count. Lists longer than `u16::MAX` are cut there, and
/// callers then write only that many entries, so the frame stays decodable.
fn put_count(out: &mut Vec<u8>, len: usize) -> usize {
    let n = len.min(u16::MAX as usize);
    out.put_u16(n as u16);
    n
}

/// Reads a u16 list count and checks that the input can hold that many
/// entries of at least `min_entry_bytes` each, so that a hostile count cannot
/// make the decoder allocate more than the input justifies.
fn read_count(
    r: &mut Reader<'_>,
    min_entry_bytes: usize,
    field: &'static str,
) -> Result<usize, DecodeError> {
    let n = r.u16()? as usize;
    if n * min_entry_bytes > r.remaining() {
        return Err(DecodeError::Invalid(field));
    }
    Ok(n)
}

fn put_ip(out: &mut Vec<u8>, ip: Ipv4Addr) {
    out.extend_from_slice(&ip.octets());
}

fn read_ip(r: &mut Reader<'_>) -> Result<Ipv4Addr, DecodeError> {
    let b = r.bytes(4)?;
    Ok(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
}

/// A group id on the wire is never 0.
fn read_group(r: &mut Reader<'_>) -> Result<GroupId, DecodeError> {
    match r.u32()? {
        0 => Err(DecodeError::Invalid("group")),
        g => Ok(GroupId(g)),
    }
}

/// A node id on the wire is never 0.
fn read_node(r: &mut Reader<'_>, field: &'static str) -> Result<NodeId, DecodeError> {
    match r.u32()? {
        0 => Err(DecodeError::Invalid(field)),
        n => Ok(NodeId(n)),
    }
}

impl ToDirectory {
    /// Appends the frame body (without the length prefix).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            ToDirectory::Hello {
                name,
                incarnation,
                ip,
                data_port,
                order_port,
                previous,
                epoch,
            } => {
                put_header(out, KIND_HELLO);
                out.put_str8(name);
                out.put_u64(incarnation.0);
                put_ip(out, *ip);
                out.put_u16(*data_port);
                out.put_u16(*order_port);
                out.put_u32(previous.map_or(0, |n| n.0));
                out.put_u64(epoch.0);
            }
            ToDirectory::Heartbeat => put_header(out, KIND_HEARTBEAT),
            ToDirectory::Join {
                group,
                member,
                member_name,
                user,
                unix_groups,
            } => {
                put_header(out, KIND_JOIN);
                out.put_str8(group);
                out.put_u32(member.0);
                out.put_str8(member_name);
                out.put_str8(user);
                let n = put_count(out, unix_groups.len());
                for g in &unix_groups[..n] {
                    out.put_str8(g);
                }
            }
            ToDirectory::Leave { group, member } => {
                put_header(out, KIND_LEAVE);
                out.put_u32(group.0);
                out.put_u32(member.0);
            }
            ToDirectory::Detach { group } => {
                put_header(out, KIND_DETACH);
                out.put_u32(group.0);
            }
            ToDirectory::ListGroups { request } => {
                put_header(out, KIND_LIST_GROUPS);
                out.put_u32(*request);
            }
            ToDirectory::Goodbye => put_header(out, KIND_GOODBYE),
            ToDirectory::Resume(g) => {
                put_header(out, KIND_RESUME);
                out.put_u32(g.group.0);
                out.put_str8(&g.group_name);
                put_ip(out, g.address);
                out.put_u16(g.port);
                out.put_u64(g.view.0);
                out.put_u32(g.sequencer.0);
                out.put_u64(g.since.0);
                let n = put_count(out, g.members.len());
                for (m, name) in &g.members[..n] {
                    out.put_u32(m.0);
                    out.put_str8(name);
                }
            }
            ToDirectory::PastView(v) => {
                put_header(out, KIND_PAST_VIEW);
                encode_view_fields(v, out);
            }
        }
    }

    /// Decodes a frame body; every byte must be consumed.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let kind = read_header(&mut r)?;
        let msg = match kind {
            KIND_HELLO => ToDirectory::Hello {
                name: r.str8("node name")?.to_owned(),
                incarnation: Incarnation(r.u64()?),
                ip: read_ip(&mut r)?,
                data_port: r.u16()?,
                order_port: r.u16()?,
                previous: Some(NodeId(r.u32()?)).filter(|n| n.0 != 0),
                epoch: Epoch(r.u64()?),
            },
            KIND_HEARTBEAT => ToDirectory::Heartbeat,
            KIND_JOIN => decode_join(&mut r)?,
            KIND_LEAVE => ToDirectory::Leave {
                group: read_group(&mut r)?,
                member: MemberId(r.u32()?),
            },
            KIND_DETACH => ToDirectory::Detach {
                group: read_group(&mut r)?,
            },
            KIND_LIST_GROUPS => ToDirectory::ListGroups { request: r.u32()? },
            KIND_GOODBYE => ToDirectory::Goodbye,
            KIND_RESUME => decode_resume(&mut r)?,
            KIND_PAST_VIEW => ToDirectory::PastView(decode_view(&mut r)?),
            other => return Err(DecodeError::UnknownKind(other)),
        };
        r.finish()?;
        Ok(msg)
    }
}

fn decode_resume(r: &mut Reader<'_>) -> Result<ToDirectory, DecodeError> {
    let group = read_group(r)?;
    let group_name = r.str8("group name")?.to_owned();
    let address = read_ip(r)?;
    let port = r.u16()?;
    let view = ViewId(r.u64()?);
    let sequencer = read_node(r, "sequencer")?;
    let since = ViewId(r.u64()?);
    let n = read_count(r, 4 + STR8_MIN_BYTES, "member count")?;
    let mut members = Vec::with_capacity(n);
    for _ in 0..n {
        members.push((MemberId(r.u32()?), r.str8("member name")?.to_owned()));
    }
    Ok(ToDirectory::Resume(Resume {
        group,
        group_name,
        address,
        port,
        view,
        sequencer,
        since,
        members,
    }))
}

fn decode_join(r: &mut Reader<'_>) -> Result<ToDirectory, DecodeError> {
    let group = r.str8("group name")?.to_owned();
    let member = MemberId(r.u32()?);
    let member_name = r.str8("member name")?.to_owned();
    let user = r.str8("user")?.to_owned();
    let n = read_count(r, STR8_MIN_BYTES, "unix group count")?;
    let mut unix_groups = Vec::with_capacity(n);
    for _ in 0..n {
        unix_groups.push(r.str8("unix group")?.to_owned());
    }
    Ok(ToDirectory::Join {
        group,
        member,
        member_name,
        user,
        unix_groups,
    })
}

impl FromDirectory {
    /// Appends the frame body (without the length prefix).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            FromDirectory::Welcome {
                node,
                cluster,
                lease_ms,
                heartbeat_ms,
                epoch,
            } => {
                put_header(out, KIND_WELCOME);
                out.put_u32(node.0);
                out.put_u32(cluster.0);
                out.put_u32(*lease_ms);
                out.put_u32(*heartbeat_ms);
                out.put_u64(epoch.0);
            }
            FromDirectory::JoinRefused {
                group,
                member,
                reason,
            } => {
                put_header(out, KIND_JOIN_REFUSED);
                out.put_str8(group);
                out.put_u32(member.0);
                out.put_str16(reason);
            }
            FromDirectory::View(v) => {
                put_header(out, KIND_VIEW);
                encode_view_fields(v, out);
            }
            FromDirectory::GroupEnded { group } => {
                put_header(out, KIND_GROUP_ENDED);
                out.put_u32(group.0);
            }
            FromDirectory::Groups { request, groups } => {
                put_header(out, KIND_GROUPS);
                out.put_u32(*request);
                let n = put_count(out, groups.len());
                for g in &groups[..n] {
                    out.put_str8(&g.name);
                    put_ip(out, g.address);
                    out.put_u16(g.port);
                    out.put_u64(g.view.0);
                    out.put_u32(g.members);
                    out.put_u8(u8::from(g.declared));
                }
            }
            FromDirectory::Refused { reason } => {
                put_header(out, KIND_REFUSED);
                out.put_str16(reason);
            }
            FromDirectory::Redirect { leader } => {
                put_header(out, KIND_REDIRECT);
                out.put_str8(&leader.map(|a| a.to_string()).unwrap_or_default());
            }
        }
    }

    /// Decodes a frame body; every byte must be consumed.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let kind = read_header(&mut r)?;
        let msg = match kind {
            KIND_WELCOME => FromDirectory::Welcome {
                node: read_node(&mut r, "node")?,
                cluster: ClusterId(r.u32()?),
                lease_ms: r.u32()?,
                heartbeat_ms: r.u32()?,
                epoch: Epoch(r.u64()?),
            },
            KIND_JOIN_REFUSED => FromDirectory::JoinRefused {
                group: r.str8("group name")?.to_owned(),
                member: MemberId(r.u32()?),
                reason: r.str16("reason")?.to_owned(),
            },
            KIND_VIEW => FromDirectory::View(decode_view(&mut r)?),
            KIND_GROUP_ENDED => FromDirectory::GroupEnded {
                group: read_group(&mut r)?,
            },
            KIND_GROUPS => decode_groups(&mut r)?,
            KIND_REFUSED => FromDirectory::Refused {
                reason: r.str16("reason")?.to_owned(),
            },
            KIND_REDIRECT => FromDirectory::Redirect {
                leader: match r.str8("leader")? {
                    "" => None,
                    a => Some(a.parse().map_err(|_| DecodeError::Invalid("leader"))?),
                },
            },
            other => return Err(DecodeError::UnknownKind(other)),
        };
        r.finish()?;
        Ok(msg)
    }
}

fn encode_view_fields(v: &View, out: &mut Vec<u8>) {
    out.put_u32(v.group.0);
    out.put_str8(&v.group_name);
    put_ip(out, v.address);
    out.put_u16(v.port);
    out.put_u64(v.view.0);
    out.put_u32(v.sequencer.0);
    out.put_u32(v.max_message_bytes);
    let n = put_count(out, v.members.len());
    for m in &v.members[..n] {
        out.put_u32(m.node.0);
        out.put_u32(m.member.0);
        out.put_str8(&m.name);
    }
    let n = put_count(out, v.nodes.len());
    for node in &v.nodes[..n] {
        out.put_u32(node.node.0);
        out.put_str8(&node.name);
        out.put_u64(node.incarnation.0);
        put_ip(out, node.ip);
        out.put_u16(node.data_port);
        out.put_u16(node.order_port);
    }
}

fn decode_view(r: &mut Reader<'_>) -> Result<View, DecodeError> {
    let group = read_group(r)?;
    let group_name = r.str8("group name")?.to_owned();
    let address = read_ip(r)?;
    let port = r.u16()?;
    let view = match r.u64()? {
        0 => return Err(DecodeError::Invalid("view")),
        v => ViewId(v),
    };
    let sequencer = read_node(r, "sequencer")?;
    let max_message_bytes = r.u32()?;
    let n = read_count(r, MEMBER_MIN_BYTES, "member count")?;
    let mut members = Vec::with_capacity(n);
    for _ in 0..n {
        members.push(MemberInfo {
            node: read_node(r, "member node")?,
            member: MemberId(r.u32()?),
            name: r.str8("member name")?.to_owned(),
        });
    }
    let n = read_count(r, NODE_MIN_BYTES, "node count")?;
    let mut nodes = Vec::with_capacity(n);
    for _ in 0..n {
        nodes.push(NodeInfo {
            node: read_node(r, "node")?,
            name: r.str8("node name")?.to_owned(),
            incarnation: Incarnation(r.u64()?),
            ip: read_ip(r)?,
            data_port: r.u16()?,
            order_port: r.u16()?,
        });
    }
    Ok(View {
        group,
        group_name,
        address,
        port,
        view,
        sequencer,
        max_message_bytes,
        members,
        nodes,
    })
}

fn decode_groups(r: &mut Reader<'_>) -> Result<FromDirectory, DecodeError> {
    let request = r.u32()?;
    let n = read_count(r, SUMMARY_MIN_BYTES, "group count")?;
    let mut groups = Vec::with_capacity(n);
    for _ in 0..n {
        groups.push(GroupSummary {
            name: r.str8("group name")?.to_owned(),
            address: read_ip(r)?,
            port: r.u16()?,
            view: ViewId(r.u64()?),
            members: r.u32()?,
            declared: r.bool("declared")?,
        });
    }
    Ok(FromDirectory::Groups { request, groups })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip() -> impl Strategy<Value = Ipv4Addr> {
        any::<u32>().prop_map(Ipv4Addr::from)
    }

    /// Strings that fit a `str8` (at most 60 chars of up to 4 bytes each).
    fn s8() -> impl Strategy<Value = String> {
        "\\PC{0,60}"
    }

    fn node_info() -> impl Strategy<Value = NodeInfo> {
        (1u32.., s8(), any::<u64>(), ip(), any::<u16>(), any::<u16>()).prop_map(
            |(node, name, inc, ip, data_port, order_port)| NodeInfo {
                node: NodeId(node),
                name,
                incarnation: Incarnation(inc),
                ip,
                data_port,
                order_port,
            },
        )
    }

    fn member_info() -> impl Strategy<Value = MemberInfo> {
        (1u32.., any::<u32>(), s8()).prop_map(|(node, member, name)| MemberInfo {
            node: NodeId(node),
            member: MemberId(member),
            name,
        })
    }

    fn view() -> impl Strategy<Value = View> {
        (
            (1u32.., s8(), ip(), any::<u16>(), 1u64.., 1u32..),
            any::<u32>(),
            proptest::collection::vec(member_info(), 0..20),
            proptest::collection::vec(node_info(), 0..10),
        )
            .prop_map(
                |(
                    (group, group_name, address, port, view, seq),
                    max_message_bytes,
                    members,
                    nodes,
                )| {
                    View {
                        group: GroupId(group),
                        group_name,
                        address,
                        port,
                        view: ViewId(view),
                        sequencer: NodeId(seq),
                        max_message_bytes,
                        members,
                        nodes,
                    }
                },
            )
    }

    fn summary() -> impl Strategy<Value = GroupSummary> {
        (
            s8(),
            ip(),
            any::<u16>(),
            any::<u64>(),
            any::<u32>(),
            any::<bool>(),
        )
            .prop_map(
                |(name, address, port, view, members, declared)| GroupSummary {
                    name,
                    address,
                    port,
                    view: ViewId(view),
                    members,
                    declared,
                },
            )
    }

    fn to_directory() -> impl Strategy<Value = ToDirectory> {
        prop_oneof![
            (
                s8(),
                any::<u64>(),
                ip(),
                any::<u16>(),
                any::<u16>(),
                any::<u32>(),
                any::<u64>()
            )
                .prop_map(|(name, inc, ip, data_port, order_port, previous, epoch)| {
                    ToDirectory::Hello {
                        name,
                        incarnation: Incarnation(inc),
                        ip,
                        data_port,
                        order_port,
                        previous: Some(NodeId(previous)).filter(|n| n.0 != 0),
                        epoch: Epoch(epoch),
                    }
                }),
            (
                1u32..,
                s8(),
                ip(),
                any::<u16>(),
                any::<u64>(),
                1u32..,
                proptest::collection::vec((any::<u32>(), s8()), 0..8)
            )
                .prop_map(|(g, group_name, address, port, view, seq, members)| {
                    ToDirectory::Resume(Resume {
                        group: GroupId(g),
                        group_name,
                        address,
                        port,
                        view: ViewId(view),
                        sequencer: NodeId(seq),
                        since: ViewId(1),
                        members: members.into_iter().map(|(m, n)| (MemberId(m), n)).collect(),
                    })
                }),
            Just(ToDirectory::Heartbeat),
            (
                s8(),
                any::<u32>(),
                s8(),
                s8(),
                proptest::collection::vec(s8(), 0..10)
            )
                .prop_map(|(group, member, member_name, user, unix_groups)| {
                    ToDirectory::Join {
                        group,
                        member: MemberId(member),
                        member_name,
                        user,
                        unix_groups,
                    }
                }),
            (1u32.., any::<u32>()).prop_map(|(g, m)| ToDirectory::Leave {
                group: GroupId(g),
                member: MemberId(m),
            }),
            (1u32..).prop_map(|g| ToDirectory::Detach { group: GroupId(g) }),
            any::<u32>().prop_map(|request| ToDirectory::ListGroups { request }),
            Just(ToDirectory::Goodbye),
            view().prop_map(ToDirectory::PastView),
        ]
    }

    fn from_directory() -> impl Strategy<Value = FromDirectory> {
        prop_oneof![
            (
                1u32..,
                any::<u32>(),
                any::<u32>(),
                any::<u32>(),
                any::<u64>()
            )
                .prop_map(|(n, c, l, h, e)| FromDirectory::Welcome {
                    node: NodeId(n),
                    cluster: ClusterId(c),
                    lease_ms: l,
                    heartbeat_ms: h,
                    epoch: Epoch(e),
                }),
            proptest::option::of((ip(), any::<u16>())).prop_map(|a| FromDirectory::Redirect {
                leader: a.map(|(ip, port)| SocketAddr::from((ip, port))),
            }),
            (s8(), any::<u32>(), "\\PC{0,300}").prop_map(|(group, m, reason)| {
                FromDirectory::JoinRefused {
                    group,
                    member: MemberId(m),
                    reason,
                }
            }),
            view().prop_map(FromDirectory::View),
            (1u32..).prop_map(|g| FromDirectory::GroupEnded { group: GroupId(g) }),
            (any::<u32>(), proptest::collection::vec(summary(), 0..20))
                .prop_map(|(request, groups)| FromDirectory::Groups { request, groups }),
            "\\PC{0,300}".prop_map(|reason| FromDirectory::Refused { reason }),
        ]
    }

    fn encoded_to(m: &ToDirectory) -> Vec<u8> {
        let mut out = Vec::new();
        m.encode(&mut out);
        out
    }

    fn encoded_from(m: &FromDirectory) -> Vec<u8> {
        let mut out = Vec::new();
        m.encode(&mut out);
        out
    }

    proptest! {
        #[test]
        fn to_directory_round_trips(m in to_directory()) {
            prop_assert_eq!(ToDirectory::decode(&encoded_to(&m)), Ok(m));
        }

        #[test]
        fn from_directory_round_trips(m in from_directory()) {
            prop_assert_eq!(FromDirectory::decode(&encoded_from(&m)), Ok(m));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = ToDirectory::decode(&bytes);
            let _ = FromDirectory::decode(&bytes);
        }

        /// Random bytes after a valid header reach the per-kind decoders.
        #[test]
        fn decode_never_panics_past_the_header(
            kind: u8,
            bytes in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            let mut body = vec![0xC0, 0xC5, VERSION, kind];
            body.extend_from_slice(&bytes);
            let _ = ToDirectory::decode(&body);
            let _ = FromDirectory::decode(&body);
        }

        #[test]
        fn truncated_to_directory_is_rejected(m in to_directory(), cut in any::<prop::sample::Index>()) {
            let out = encoded_to(&m);
            let cut = cut.index(out.len());
            prop_assert!(ToDirectory::decode(&out[..cut]).is_err());
        }

        #[test]
        fn truncated_from_directory_is_rejected(m in from_directory(), cut in any::<prop::sample::Index>()) {
            let out = encoded_from(&m);
            let cut = cut.index(out.len());
            prop_assert!(FromDirectory::decode(&out[..cut]).is_err());
        }

        #[test]
        fn trailing_bytes_are_rejected(
            to in to_directory(),
            from in from_directory(),
            extra in proptest::collection::vec(any::<u8>(), 1..8),
        ) {
            let mut out = encoded_to(&to);
            out.extend_from_slice(&extra);
            prop_assert!(ToDirectory::decode(&out).is_err());
            let mut out = encoded_from(&from);
            out.extend_from_slice(&extra);
            prop_assert!(FromDirectory::decode(&out).is_err());
        }
    }

    #[test]
    fn header_and_kind_numbers_are_as_documented() {
        let out = encoded_to(&ToDirectory::Goodbye);
        assert_eq!(out, vec![0xC0, 0xC5, VERSION, 7]);
        let out = encoded_from(&FromDirectory::GroupEnded { group: GroupId(5) });
        assert_eq!(out, vec![0xC0, 0xC5, VERSION, 104, 0, 0, 0, 5]);
        let hello = ToDirectory::Hello {
            name: "ab".into(),
            incarnation: Incarnation(1),
            ip: Ipv4Addr::new(10, 0, 0, 2),
            data_port: 7401,
            order_port: 7402,
            previous: Some(NodeId(3)),
            epoch: Epoch(9),
        };
        let mut want = vec![
            0xC0, 0xC5, VERSION, 1, 2, b'a', b'b', 0, 0, 0, 0, 0, 0, 0, 1, 10, 0, 0, 2,
        ];
        want.extend_from_slice(&7401u16.to_be_bytes());
        want.extend_from_slice(&7402u16.to_be_bytes());
        want.extend_from_slice(&3u32.to_be_bytes());
        want.extend_from_slice(&9u64.to_be_bytes());
        assert_eq!(encoded_to(&hello), want);
        let redirect = FromDirectory::Redirect {
            leader: Some(SocketAddr::from(([10, 0, 0, 1], 7400))),
        };
        let mut want = vec![0xC0, 0xC5, VERSION, 107, 13];
        want.extend_from_slice(b"10.0.0.1:7400");
        assert_eq!(encoded_from(&redirect), want);
    }

    #[test]
    fn a_redirect_to_garbage_is_rejected() {
        let mut body = vec![0xC0, 0xC5, VERSION, 107, 5];
        body.extend_from_slice(b"nowhe");
        assert_eq!(
            FromDirectory::decode(&body),
            Err(DecodeError::Invalid("leader"))
        );
        let none = encoded_from(&FromDirectory::Redirect { leader: None });
        assert_eq!(
            FromDirectory::decode(&none),
            Ok(FromDirectory::Redirect { leader: None })
        );
    }

    #[test]
    fn wrong_magic_version_and_kind_are_told_apart() {
        assert_eq!(
            ToDirectory::decode(&[0xC0, 0xC6, 1, 2]),
            Err(DecodeError::BadMagic(0xC0C6))
        );
        assert_eq!(
            ToDirectory::decode(&[0xC0, 0xC5, 1, 2]),
            Err(DecodeError::BadVersion(1))
        );
        assert_eq!(
            ToDirectory::decode(&[0xC0, 0xC5, VERSION, 101]),
            Err(DecodeError::UnknownKind(101))
        );
        assert_eq!(
            FromDirectory::decode(&[0xC0, 0xC5, VERSION, 2]),
            Err(DecodeError::UnknownKind(2))
        );
    }

    #[test]
    fn zero_ids_are_rejected() {
        let leave = encoded_to(&ToDirectory::Leave {
            group: GroupId(0),
            member: MemberId(1),
        });
        assert_eq!(
            ToDirectory::decode(&leave),
            Err(DecodeError::Invalid("group"))
        );
        let welcome = encoded_from(&FromDirectory::Welcome {
            node: NodeId(0),
            cluster: ClusterId(1),
            lease_ms: 1,
            heartbeat_ms: 1,
            epoch: Epoch(0),
        });
        assert_eq!(
            FromDirectory::decode(&welcome),
            Err(DecodeError::Invalid("node"))
        );
    }

    #[test]
    fn views_carry_max_message_bytes_after_the_sequencer() {
        for limit in [0, 1, 262_144, 16 << 20, u32::MAX] {
            let v = View {
                group: GroupId(7),
                group_name: "g".into(),
                address: Ipv4Addr::new(239, 192, 0, 10),
                port: 7410,
                view: ViewId(3),
                sequencer: NodeId(2),
                max_message_bytes: limit,
                members: vec![MemberInfo {
                    node: NodeId(2),
                    member: MemberId(1),
                    name: "m".into(),
                }],
                nodes: vec![],
            };
            let out = encoded_from(&FromDirectory::View(v.clone()));
            // header, group, name "g", address, port, view, sequencer.
            let at = 4 + 4 + 2 + 4 + 2 + 8 + 4;
            assert_eq!(out[at..at + 4], limit.to_be_bytes());
            assert_eq!(
                FromDirectory::decode(&out),
                Ok(FromDirectory::View(v.clone()))
            );
            let past = encoded_to(&ToDirectory::PastView(v.clone()));
            assert_eq!(ToDirectory::decode(&past), Ok(ToDirectory::PastView(v)));
            // Without the field the frame is short: rejected, not misread.
            let mut short = out[..at].to_vec();
            short.extend_from_slice(&out[at + 4..]);
            assert!(FromDirectory::decode(&short).is_err());
            assert!(FromDirectory::decode(&out[..at + 2]).is_err());
        }
    }

    #[test]
    fn a_hostile_count_does_not_allocate() {
        // Join with a 65535 unix-group count but no bytes behind it.
        let mut body = vec![
            0xC0, 0xC5, VERSION, 3, 1, b'g', 0, 0, 0, 1, 0, 0, 0xFF, 0xFF,
        ];
        assert_eq!(
            ToDirectory::decode(&body),
            Err(DecodeError::Invalid("unix group count"))
        );
        body.truncate(12);
        assert!(matches!(
            ToDirectory::decode(&body),
            Err(DecodeError::Truncated { .. })
        ));
    }
}
