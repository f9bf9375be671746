//! Frames on the Unix socket between an application and its daemon.
//!
//! Each frame body (inside the 4-byte length of [`super::frame`]) starts with
//! magic (u16), version (u8), kind (u8), then the fields in declared order.
//! Strings are `str8` (u8 length) unless noted, payloads are u32-length-prefixed,
//! lists u16-count-prefixed, orders their [`Order::code`].
//!
//! Requests carry a `request` number chosen by the app; the daemon answers
//! each with exactly one reply carrying the same number ([`FromDaemon::Ok`],
//! [`FromDaemon::Error`] or a typed reply). Views and messages arrive unasked.

use super::codec::{Put, Reader};
use super::{DecodeError, MAGIC, VERSION};
use crate::ids::{Order, ViewId};
use bytes::Bytes;
use std::sync::Arc;

/// Largest payload a Send or Message frame is sized for: 16 MiB, the
/// most `max_message_bytes` allows (the daemon's limit may be lower).
pub const APP_PAYLOAD_MAX_BYTES: usize = 16 << 20;

/// Longest app frame accepted: [`APP_PAYLOAD_MAX_BYTES`] plus room for the
/// other fields (at most 537 bytes, in a Message with 255-byte names).
pub const APP_FRAME_MAX_BYTES: usize = APP_PAYLOAD_MAX_BYTES + 4096;

/// App → daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToDaemon {
    /// Join `group` as member `name`. kind 1: request u32, group str8, name str8.
    Join {
        request: u32,
        group: String,
        name: String,
    },
    /// Leave `group`. kind 2: request u32, group str8.
    Leave { request: u32, group: String },
    /// Send one message to a group this session has joined. kind 3: request
    /// u32, group str8, order u8, payload bytes32. Answered with Ok once the
    /// daemon has accepted it (it will not be lost while the daemon lives).
    Send {
        request: u32,
        group: String,
        order: Order,
        payload: Vec<u8>,
    },
    /// Daemon status. kind 4: request u32.
    Status { request: u32 },
    /// Group list. kind 5: request u32.
    Groups { request: u32 },
    /// Current view of a group. kind 6: request u32, group str8.
    Members { request: u32, group: String },
    /// The daemon's counters. kind 7: request u32.
    Stats { request: u32 },
}

/// Error codes in [`FromDaemon::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The request was malformed or made no sense (e.g. send before join). 1
    BadRequest,
    /// No such group, or not joined. 2
    NoSuchGroup,
    /// The directory refused (ACL, max_members, name in use). 3
    Refused,
    /// The directory is unreachable. 4
    Unavailable,
    /// The payload is larger than the daemon accepts. 5
    TooLarge,
    /// Anything else. 6
    Internal,
}

impl ErrorCode {
    /// Wire code.
    pub fn code(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 1,
            ErrorCode::NoSuchGroup => 2,
            ErrorCode::Refused => 3,
            ErrorCode::Unavailable => 4,
            ErrorCode::TooLarge => 5,
            ErrorCode::Internal => 6,
        }
    }

    /// From a wire code.
    pub fn from_code(c: u16) -> Option<Self> {
        Some(match c {
            1 => ErrorCode::BadRequest,
            2 => ErrorCode::NoSuchGroup,
            3 => ErrorCode::Refused,
            4 => ErrorCode::Unavailable,
            5 => ErrorCode::TooLarge,
            6 => ErrorCode::Internal,
            _ => return None,
        })
    }
}

/// One group as `chorusctl groups` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLine {
    pub name: String,
    /// "239.192.0.10:7410"
    pub address: String,
    pub view: ViewId,
    pub members: u32,
    /// True when this node takes part in the group.
    pub local: bool,
}

/// Most groups a [`DaemonStats`] carries: with the longest names that is
/// still well inside [`APP_FRAME_MAX_BYTES`]; a daemon in more groups lists
/// the first ones (by group id) only.
pub const STATS_GROUPS_MAX: usize = 2048;

/// A daemon's counters since it started (they never go down). The host
/// keeps them (`chorus_proto::host::HostStats` is this type) and
/// `chorusctl stats` shows them; encoded as twenty u64 in field order
/// (the `dropped_*` and `sessions_dropped_slow` came later, the `refused_*` last).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams received on the data and multicast sockets.
    pub datagrams_in: u64,
    /// Their bytes.
    pub bytes_in: u64,
    /// Datagrams sent by the daemon's protocol thread (the sequencer's
    /// ORDER datagrams, sent by its own thread, are not counted).
    pub datagrams_out: u64,
    /// Their bytes.
    pub bytes_out: u64,
    /// Datagrams dropped as malformed.
    pub malformed_in: u64,
    /// Messages accepted from local apps.
    pub messages_accepted: u64,
    /// Messages delivered (once per message, however many local members).
    pub messages_delivered: u64,
    /// NAKs sent (data and order).
    pub naks_sent: u64,
    /// NAKs received for our own stream (each a loss signal to flow control).
    pub naks_received: u64,
    /// DATA datagrams sent again: answers to NAKs, repairs of departed
    /// senders' messages, and tail probes.
    pub retransmits: u64,
    /// Tail probes sent (our last message unordered for a while).
    pub tail_probes: u64,
    /// Times a loss halved a flow window.
    pub window_decreases: u64,
    /// Datagrams of another cluster id (another deployment sharing the
    /// network or a port): well-formed, not ours, ignored.
    pub dropped_other_cluster: u64,
    /// Datagrams for a group this node takes no part in (such as repairs
    /// and NAKs still coming after it left).
    pub dropped_no_group: u64,
    /// Messages in DATA already held or delivered (a repair or duplicate
    /// that came after the first copy). Our own DATA looped back by
    /// multicast is not counted: every message we send comes back so.
    pub dropped_duplicate: u64,
    /// Messages in DATA past the receive window: not kept, NAKed again once
    /// the window moves up to them (a sign of a receiver falling behind).
    pub dropped_beyond_window: u64,
    /// Messages in DATA before the position this node delivers from (sent
    /// before it joined).
    pub dropped_before_base: u64,
    /// App sessions disconnected because their undelivered messages passed
    /// `session_queue_bytes` (the app stopped reading).
    pub sessions_dropped_slow: u64,
    /// Datagrams refused before the protocol saw them: sealed with a key
    /// this node does not hold, altered or forged (the tag did not check
    /// out), or not sealed in a keyed cluster.
    pub refused_unauthentic: u64,
    /// Authentic datagrams refused as replays: received before, or older
    /// than the sender's replay window.
    pub refused_replayed: u64,
}

/// The daemon's counters and its groups, as `chorusctl stats` shows them.
///
/// Encoded as the [`Counters`], then the groups (u16 count, at most
/// [`STATS_GROUPS_MAX`]; each a [`GroupStats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonStats {
    pub counters: Counters,
    /// The groups this node takes part in.
    pub groups: Vec<GroupStats>,
}

/// One group in [`DaemonStats`]. Encoded as name str8, view u64,
/// sequencer bool, queued u32, in_flight_bytes u64, window_bytes u64,
/// window_cap_bytes u64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStats {
    pub name: String,
    /// The installed view.
    pub view: ViewId,
    /// True when this node sequences the group.
    pub sequencer: bool,
    /// Messages in our send stream (accepted and not yet stable).
    pub queued: u32,
    /// Bytes of our stream sent and not yet ordered.
    pub in_flight_bytes: u64,
    /// Our flow window: bytes that may be in flight now.
    pub window_bytes: u64,
    /// The window's cap (our share of the receivers' buffers).
    pub window_cap_bytes: u64,
}

/// Daemon → app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromDaemon {
    /// The request succeeded. kind 101: request u32.
    Ok { request: u32 },
    /// The request failed. kind 102: request u32, code u16, message str16.
    Error {
        request: u32,
        code: ErrorCode,
        message: String,
    },
    /// A view of a joined group. kind 103: group str8, view u64,
    /// members (u16 count; str8 each, "NODE:NAME"), sequencer str8 (node name).
    View {
        group: String,
        view: ViewId,
        members: Vec<String>,
        sequencer: String,
    },
    /// A delivered message. kind 104: group str8, view u64, sender str8
    /// ("NODE:NAME"), order u8, seq u64, payload bytes32.
    Message {
        group: Arc<str>,
        view: ViewId,
        sender: Arc<str>,
        order: Order,
        /// Total order position (total/safe); the sender's stream position (fifo).
        seq: u64,
        payload: Bytes,
    },
    /// Reply to Status. kind 105: request u32, node str8, node_id u32,
    /// incarnation u64, directory str8 (address or ""), connected bool,
    /// groups u32, members u32, version str8.
    Status {
        request: u32,
        node: String,
        node_id: u32,
        incarnation: u64,
        directory: String,
        connected: bool,
        groups: u32,
        members: u32,
        version: String,
    },
    /// Reply to Groups. kind 106: request u32, groups (u16 count; name str8,
    /// address str8, view u64, members u32, local bool).
    Groups {
        request: u32,
        groups: Vec<GroupLine>,
    },
    /// Reply to Members: the same fields as View after the request number.
    /// kind 107: request u32, group str8, view u64, members, sequencer str8.
    Members {
        request: u32,
        group: String,
        view: ViewId,
        members: Vec<String>,
        sequencer: String,
    },
    /// Reply to Stats. kind 108: request u32, stats (see [`DaemonStats`];
    /// boxed, so that the other frames stay small).
    Stats {
        request: u32,
        stats: Box<DaemonStats>,
    },
    /// The member is no longer with the others of `group`, and its app did
    /// not ask to leave: `view` was the last it installed, and nothing of a
    /// later view reaches it under this membership. Sent when this node
    /// was declared dead (its lease ran out while it was paused or cut off)
    /// and registered again, or when the directory dropped it from the
    /// group. If the daemon joins the member again by itself (`rejoining`),
    /// a fresh View follows once it is admitted; otherwise the app must join
    /// again. kind 109: group str8, view u64, rejoining bool, reason str16.
    Separated {
        group: String,
        view: ViewId,
        rejoining: bool,
        reason: String,
    },
}

const KIND_JOIN: u8 = 1;
const KIND_LEAVE: u8 = 2;
const KIND_SEND: u8 = 3;
const KIND_STATUS: u8 = 4;
const KIND_GROUPS: u8 = 5;
const KIND_MEMBERS: u8 = 6;
const KIND_STATS: u8 = 7;

const KIND_OK: u8 = 101;
const KIND_ERROR: u8 = 102;
const KIND_VIEW: u8 = 103;
const KIND_MESSAGE: u8 = 104;
const KIND_STATUS_REPLY: u8 = 105;
const KIND_GROUPS_REPLY: u8 = 106;
const KIND_MEMBERS_REPLY: u8 = 107;
const KIND_STATS_REPLY: u8 = 108;
const KIND_SEPARATED: u8 = 109;

/// Smallest encoding of one [`GroupLine`]: two empty str8, view, members, local.
const GROUP_LINE_MIN_BYTES: usize = 1 + 1 + 8 + 4 + 1;

/// Smallest encoding of one [`GroupStats`]: an empty str8 and the numbers.
const GROUP_STATS_MIN_BYTES: usize = 1 + 8 + 1 + 4 + 8 + 8 + 8;

fn put_header(out: &mut Vec<u8>, kind: u8) {
    out.put_u16(MAGIC);
    out.put_u8(VERSION);
    out.put_u8(kind);
}

/// Reads magic and version and returns the kind.
fn header(r: &mut Reader<'_>) -> Result<u8, DecodeError> {
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

fn order(r: &mut Reader<'_>) -> Result<Order, DecodeError> {
    Order::from_code(r.u8()?).ok_or(DecodeError::Invalid("order"))
}

/// Writes a u16 count and at most `u16::MAX` items: a longer list cannot be
/// expressed, and a member list that long is far beyond any group's bound.
fn put_list<T>(out: &mut Vec<u8>, items: &[T], mut put: impl FnMut(&mut Vec<u8>, &T)) {
    let n = items.len().min(u16::MAX as usize);
    out.put_u16(n as u16);
    for item in &items[..n] {
        put(out, item);
    }
}

/// Reads a u16 count, then that many items of at least `min_bytes` each; the
/// count is checked against the input left before anything is allocated.
fn list<'a, T>(
    r: &mut Reader<'a>,
    what: &'static str,
    min_bytes: usize,
    mut item: impl FnMut(&mut Reader<'a>) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    let n = r.u16()? as usize;
    if n * min_bytes > r.remaining() {
        return Err(DecodeError::Invalid(what));
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(item(r)?);
    }
    Ok(out)
}

fn put_members(out: &mut Vec<u8>, members: &[String]) {
    put_list(out, members, |o, m| o.put_str8(m));
}

fn members(r: &mut Reader<'_>) -> Result<Vec<String>, DecodeError> {
    list(r, "member count", 1, |r| Ok(r.str8("member")?.to_owned()))
}

fn put_group_line(out: &mut Vec<u8>, g: &GroupLine) {
    out.put_str8(&g.name);
    out.put_str8(&g.address);
    out.put_u64(g.view.0);
    out.put_u32(g.members);
    out.put_u8(u8::from(g.local));
}

fn group_line(r: &mut Reader<'_>) -> Result<GroupLine, DecodeError> {
    Ok(GroupLine {
        name: r.str8("group")?.to_owned(),
        address: r.str8("address")?.to_owned(),
        view: ViewId(r.u64()?),
        members: r.u32()?,
        local: r.bool("local")?,
    })
}

fn put_stats(out: &mut Vec<u8>, s: &DaemonStats) {
    let c = &s.counters;
    for v in [
        c.datagrams_in,
        c.bytes_in,
        c.datagrams_out,
        c.bytes_out,
        c.malformed_in,
        c.messages_accepted,
        c.messages_delivered,
        c.naks_sent,
        c.naks_received,
        c.retransmits,
        c.tail_probes,
        c.window_decreases,
        c.dropped_other_cluster,
        c.dropped_no_group,
        c.dropped_duplicate,
        c.dropped_beyond_window,
        c.dropped_before_base,
        c.sessions_dropped_slow,
        c.refused_unauthentic,
        c.refused_replayed,
    ] {
        out.put_u64(v);
    }
    let n = s.groups.len().min(STATS_GROUPS_MAX);
    put_list(out, &s.groups[..n], |o, g| {
        o.put_str8(&g.name);
        o.put_u64(g.view.0);
        o.put_u8(u8::from(g.sequencer));
        o.put_u32(g.queued);
        o.put_u64(g.in_flight_bytes);
        o.put_u64(g.window_bytes);
        o.put_u64(g.window_cap_bytes);
    });
}

fn stats(r: &mut Reader<'_>) -> Result<DaemonStats, DecodeError> {
    let mut s = DaemonStats {
        counters: Counters {
            datagrams_in: r.u64()?,
            bytes_in: r.u64()?,
            datagrams_out: r.u64()?,
            bytes_out: r.u64()?,
            malformed_in: r.u64()?,
            messages_accepted: r.u64()?,
            messages_delivered: r.u64()?,
            naks_sent: r.u64()?,
            naks_received: r.u64()?,
            retransmits: r.u64()?,
            tail_probes: r.u64()?,
            window_decreases: r.u64()?,
            dropped_other_cluster: r.u64()?,
            dropped_no_group: r.u64()?,
            dropped_duplicate: r.u64()?,
            dropped_beyond_window: r.u64()?,
            dropped_before_base: r.u64()?,
            sessions_dropped_slow: r.u64()?,
            refused_unauthentic: r.u64()?,
            refused_replayed: r.u64()?,
        },
        groups: Vec::new(),
    };
    s.groups = list(r, "group count", GROUP_STATS_MIN_BYTES, |r| {
        Ok(GroupStats {
            name: r.str8("group")?.to_owned(),
            view: ViewId(r.u64()?),
            sequencer: r.bool("sequencer")?,
            queued: r.u32()?,
            in_flight_bytes: r.u64()?,
            window_bytes: r.u64()?,
            window_cap_bytes: r.u64()?,
        })
    })?;
    // More than an encoder writes: refused, so that what decodes re-encodes
    // to the same frame.
    if s.groups.len() > STATS_GROUPS_MAX {
        return Err(DecodeError::Invalid("group count"));
    }
    Ok(s)
}

impl ToDaemon {
    /// Appends the frame body (without the length prefix).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            ToDaemon::Join {
                request,
                group,
                name,
            } => {
                put_header(out, KIND_JOIN);
                out.put_u32(*request);
                out.put_str8(group);
                out.put_str8(name);
            }
            ToDaemon::Leave { request, group } => {
                put_header(out, KIND_LEAVE);
                out.put_u32(*request);
                out.put_str8(group);
            }
            ToDaemon::Send {
                request,
                group,
                order,
                payload,
            } => {
                put_header(out, KIND_SEND);
                out.put_u32(*request);
                out.put_str8(group);
                out.put_u8(order.code());
                out.put_bytes32(payload);
            }
            ToDaemon::Status { request } => {
                put_header(out, KIND_STATUS);
                out.put_u32(*request);
            }
            ToDaemon::Groups { request } => {
                put_header(out, KIND_GROUPS);
                out.put_u32(*request);
            }
            ToDaemon::Members { request, group } => {
                put_header(out, KIND_MEMBERS);
                out.put_u32(*request);
                out.put_str8(group);
            }
            ToDaemon::Stats { request } => {
                put_header(out, KIND_STATS);
                out.put_u32(*request);
            }
        }
    }

    /// Decodes a frame body; every byte must be consumed.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let kind = header(&mut r)?;
        let msg = Self::decode_body(&mut r, kind)?;
        r.finish()?;
        Ok(msg)
    }

    fn decode_body(r: &mut Reader<'_>, kind: u8) -> Result<Self, DecodeError> {
        if !(KIND_JOIN..=KIND_STATS).contains(&kind) {
            return Err(DecodeError::UnknownKind(kind));
        }
        let request = r.u32()?;
        Ok(match kind {
            KIND_JOIN => ToDaemon::Join {
                request,
                group: r.str8("group")?.to_owned(),
                name: r.str8("name")?.to_owned(),
            },
            KIND_LEAVE => ToDaemon::Leave {
                request,
                group: r.str8("group")?.to_owned(),
            },
            KIND_SEND => ToDaemon::Send {
                request,
                group: r.str8("group")?.to_owned(),
                order: order(r)?,
                payload: r.bytes32()?.to_vec(),
            },
            KIND_STATUS => ToDaemon::Status { request },
            KIND_GROUPS => ToDaemon::Groups { request },
            KIND_MEMBERS => ToDaemon::Members {
                request,
                group: r.str8("group")?.to_owned(),
            },
            KIND_STATS => ToDaemon::Stats { request },
            _ => return Err(DecodeError::UnknownKind(kind)),
        })
    }
}

impl FromDaemon {
    /// Appends the frame body (without the length prefix).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            FromDaemon::Ok { request } => {
                put_header(out, KIND_OK);
                out.put_u32(*request);
            }
            FromDaemon::Error {
                request,
                code,
                message,
            } => {
                put_header(out, KIND_ERROR);
                out.put_u32(*request);
                out.put_u16(code.code());
                out.put_str16(message);
            }
            FromDaemon::View {
                group,
                view,
                members,
                sequencer,
            } => {
                put_header(out, KIND_VIEW);
                put_view(out, group, *view, members, sequencer);
            }
            FromDaemon::Message {
                group,
                view,
                sender,
                order,
                seq,
                payload,
            } => {
                put_header(out, KIND_MESSAGE);
                out.put_str8(group);
                out.put_u64(view.0);
                out.put_str8(sender);
                out.put_u8(order.code());
                out.put_u64(*seq);
                out.put_bytes32(payload);
            }
            FromDaemon::Status {
                request,
                node,
                node_id,
                incarnation,
                directory,
                connected,
                groups,
                members,
                version,
            } => {
                put_header(out, KIND_STATUS_REPLY);
                out.put_u32(*request);
                out.put_str8(node);
                out.put_u32(*node_id);
                out.put_u64(*incarnation);
                out.put_str8(directory);
                out.put_u8(u8::from(*connected));
                out.put_u32(*groups);
                out.put_u32(*members);
                out.put_str8(version);
            }
            FromDaemon::Groups { request, groups } => {
                put_header(out, KIND_GROUPS_REPLY);
                out.put_u32(*request);
                put_list(out, groups, put_group_line);
            }
            FromDaemon::Members {
                request,
                group,
                view,
                members,
                sequencer,
            } => {
                put_header(out, KIND_MEMBERS_REPLY);
                out.put_u32(*request);
                put_view(out, group, *view, members, sequencer);
            }
            FromDaemon::Stats { request, stats } => {
                put_header(out, KIND_STATS_REPLY);
                out.put_u32(*request);
                put_stats(out, stats);
            }
            FromDaemon::Separated {
                group,
                view,
                rejoining,
                reason,
            } => {
                put_header(out, KIND_SEPARATED);
                out.put_str8(group);
                out.put_u64(view.0);
                out.put_u8(u8::from(*rejoining));
                out.put_str16(reason);
            }
        }
    }

    /// Decodes a frame body; every byte must be consumed.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let kind = header(&mut r)?;
        let msg = Self::decode_body(&mut r, kind)?;
        r.finish()?;
        Ok(msg)
    }

    fn decode_body(r: &mut Reader<'_>, kind: u8) -> Result<Self, DecodeError> {
        Ok(match kind {
            KIND_OK => FromDaemon::Ok { request: r.u32()? },
            KIND_ERROR => FromDaemon::Error {
                request: r.u32()?,
                code: ErrorCode::from_code(r.u16()?).ok_or(DecodeError::Invalid("error code"))?,
                message: r.str16("message")?.to_owned(),
            },
            KIND_VIEW => {
                let (group, view, members, sequencer) = view_fields(r)?;
                FromDaemon::View {
                    group,
                    view,
                    members,
                    sequencer,
                }
            }
            KIND_MESSAGE => FromDaemon::Message {
                group: r.str8("group")?.into(),
                view: ViewId(r.u64()?),
                sender: r.str8("sender")?.into(),
                order: order(r)?,
                seq: r.u64()?,
                payload: Bytes::copy_from_slice(r.bytes32()?),
            },
            KIND_STATUS_REPLY => FromDaemon::Status {
                request: r.u32()?,
                node: r.str8("node")?.to_owned(),
                node_id: r.u32()?,
                incarnation: r.u64()?,
                directory: r.str8("directory")?.to_owned(),
                connected: r.bool("connected")?,
                groups: r.u32()?,
                members: r.u32()?,
                version: r.str8("version")?.to_owned(),
            },
            KIND_GROUPS_REPLY => FromDaemon::Groups {
                request: r.u32()?,
                groups: list(r, "group count", GROUP_LINE_MIN_BYTES, group_line)?,
            },
            KIND_MEMBERS_REPLY => {
                let request = r.u32()?;
                let (group, view, members, sequencer) = view_fields(r)?;
                FromDaemon::Members {
                    request,
                    group,
                    view,
                    members,
                    sequencer,
                }
            }
            KIND_STATS_REPLY => FromDaemon::Stats {
                request: r.u32()?,
                stats: Box::new(stats(r)?),
            },
            KIND_SEPARATED => FromDaemon::Separated {
                group: r.str8("group")?.to_owned(),
                view: ViewId(r.u64()?),
                rejoining: r.bool("rejoining")?,
                reason: r.str16("reason")?.to_owned(),
            },
            _ => return Err(DecodeError::UnknownKind(kind)),
        })
    }
}

fn put_view(out: &mut Vec<u8>, group: &str, view: ViewId, members: &[String], sequencer: &str) {
    out.put_str8(group);
    out.put_u64(view.0);
    put_members(out, members);
    out.put_str8(sequencer);
}

/// Group, view, members and sequencer: the body shared by View and Members.
fn view_fields(r: &mut Reader<'_>) -> Result<(String, ViewId, Vec<String>, String), DecodeError> {
    Ok((
        r.str8("group")?.to_owned(),
        ViewId(r.u64()?),
        members(r)?,
        r.str8("sequencer")?.to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn order() -> impl Strategy<Value = Order> {
        prop_oneof![Just(Order::Fifo), Just(Order::Total), Just(Order::Safe)]
    }

    fn code() -> impl Strategy<Value = ErrorCode> {
        (1u16..=6).prop_map(|c| ErrorCode::from_code(c).expect("code in range"))
    }

    /// Any str8 that survives encoding unclipped (at most 255 bytes).
    fn name() -> impl Strategy<Value = String> {
        "\\PC{0,60}"
    }

    fn payload() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..300)
    }

    fn to_daemon() -> impl Strategy<Value = ToDaemon> {
        prop_oneof![
            (any::<u32>(), name(), name()).prop_map(|(request, group, name)| ToDaemon::Join {
                request,
                group,
                name
            }),
            (any::<u32>(), name()).prop_map(|(request, group)| ToDaemon::Leave { request, group }),
            (any::<u32>(), name(), order(), payload()).prop_map(
                |(request, group, order, payload)| {
                    ToDaemon::Send {
                        request,
                        group,
                        order,
                        payload,
                    }
                }
            ),
            any::<u32>().prop_map(|request| ToDaemon::Status { request }),
            any::<u32>().prop_map(|request| ToDaemon::Groups { request }),
            (any::<u32>(), name())
                .prop_map(|(request, group)| ToDaemon::Members { request, group }),
            any::<u32>().prop_map(|request| ToDaemon::Stats { request }),
        ]
    }

    fn group_line() -> impl Strategy<Value = GroupLine> {
        (name(), name(), any::<u64>(), any::<u32>(), any::<bool>()).prop_map(
            |(name, address, view, members, local)| GroupLine {
                name,
                address,
                view: ViewId(view),
                members,
                local,
            },
        )
    }

    fn group_stats() -> impl Strategy<Value = GroupStats> {
        (
            name(),
            any::<u64>(),
            any::<bool>(),
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
        )
            .prop_map(
                |(name, view, sequencer, queued, in_flight_bytes, window_bytes, cap)| GroupStats {
                    name,
                    view: ViewId(view),
                    sequencer,
                    queued,
                    in_flight_bytes,
                    window_bytes,
                    window_cap_bytes: cap,
                },
            )
    }

    fn daemon_stats() -> impl Strategy<Value = DaemonStats> {
        (
            proptest::array::uniform20(any::<u64>()),
            proptest::collection::vec(group_stats(), 0..6),
        )
            .prop_map(|(c, groups)| DaemonStats {
                counters: Counters {
                    datagrams_in: c[0],
                    bytes_in: c[1],
                    datagrams_out: c[2],
                    bytes_out: c[3],
                    malformed_in: c[4],
                    messages_accepted: c[5],
                    messages_delivered: c[6],
                    naks_sent: c[7],
                    naks_received: c[8],
                    retransmits: c[9],
                    tail_probes: c[10],
                    window_decreases: c[11],
                    dropped_other_cluster: c[12],
                    dropped_no_group: c[13],
                    dropped_duplicate: c[14],
                    dropped_beyond_window: c[15],
                    dropped_before_base: c[16],
                    sessions_dropped_slow: c[17],
                    refused_unauthentic: c[18],
                    refused_replayed: c[19],
                },
                groups,
            })
    }

    fn members() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec(name(), 0..20)
    }

    fn from_daemon() -> impl Strategy<Value = FromDaemon> {
        prop_oneof![
            any::<u32>().prop_map(|request| FromDaemon::Ok { request }),
            (any::<u32>(), code(), "\\PC{0,400}").prop_map(|(request, code, message)| {
                FromDaemon::Error {
                    request,
                    code,
                    message,
                }
            }),
            (name(), any::<u64>(), members(), name()).prop_map(|(group, v, members, sequencer)| {
                FromDaemon::View {
                    group,
                    view: ViewId(v),
                    members,
                    sequencer,
                }
            }),
            (
                name(),
                any::<u64>(),
                name(),
                order(),
                any::<u64>(),
                payload()
            )
                .prop_map(|(group, v, sender, order, seq, payload)| {
                    FromDaemon::Message {
                        group: group.into(),
                        view: ViewId(v),
                        sender: sender.into(),
                        order,
                        seq,
                        payload: payload.into(),
                    }
                }),
            (
                (any::<u32>(), name(), any::<u32>(), any::<u64>(), name()),
                (any::<bool>(), any::<u32>(), any::<u32>(), name())
            )
                .prop_map(
                    |(
                        (request, node, node_id, incarnation, directory),
                        (connected, groups, members, version),
                    )| {
                        FromDaemon::Status {
                            request,
                            node,
                            node_id,
                            incarnation,
                            directory,
                            connected,
                            groups,
                            members,
                            version,
                        }
                    }
                ),
            (any::<u32>(), proptest::collection::vec(group_line(), 0..10))
                .prop_map(|(request, groups)| FromDaemon::Groups { request, groups }),
            (any::<u32>(), name(), any::<u64>(), members(), name()).prop_map(
                |(request, group, v, members, sequencer)| FromDaemon::Members {
                    request,
                    group,
                    view: ViewId(v),
                    members,
                    sequencer,
                }
            ),
            (any::<u32>(), daemon_stats()).prop_map(|(request, stats)| FromDaemon::Stats {
                request,
                stats: Box::new(stats)
            }),
            (name(), any::<u64>(), any::<bool>(), name()).prop_map(
                |(group, v, rejoining, reason)| FromDaemon::Separated {
                    group,
                    view: ViewId(v),
                    rejoining,
                    reason,
                }
            ),
        ]
    }

    fn encode_to(m: &ToDaemon) -> Vec<u8> {
        let mut out = Vec::new();
        m.encode(&mut out);
        out
    }

    fn encode_from(m: &FromDaemon) -> Vec<u8> {
        let mut out = Vec::new();
        m.encode(&mut out);
        out
    }

    proptest! {
        #[test]
        fn to_daemon_round_trips(m in to_daemon()) {
            prop_assert_eq!(ToDaemon::decode(&encode_to(&m)), Ok(m));
        }

        #[test]
        fn from_daemon_round_trips(m in from_daemon()) {
            prop_assert_eq!(FromDaemon::decode(&encode_from(&m)), Ok(m));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = ToDaemon::decode(&bytes);
            let _ = FromDaemon::decode(&bytes);
        }

        /// Random bodies behind a valid header reach every field decoder.
        #[test]
        fn decode_never_panics_behind_a_valid_header(
            kind in prop_oneof![1u8..=8, 100u8..=110],
            bytes in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            let mut body = vec![0xC0, 0xC5, VERSION, kind];
            body.extend_from_slice(&bytes);
            let _ = ToDaemon::decode(&body);
            let _ = FromDaemon::decode(&body);
        }

        #[test]
        fn every_truncation_of_to_daemon_is_rejected(m in to_daemon()) {
            let bytes = encode_to(&m);
            for cut in 0..bytes.len() {
                prop_assert!(ToDaemon::decode(&bytes[..cut]).is_err(), "cut {}", cut);
            }
        }

        #[test]
        fn every_truncation_of_from_daemon_is_rejected(m in from_daemon()) {
            let bytes = encode_from(&m);
            for cut in 0..bytes.len() {
                prop_assert!(FromDaemon::decode(&bytes[..cut]).is_err(), "cut {}", cut);
            }
        }

        #[test]
        fn trailing_bytes_are_rejected(a in to_daemon(), b in from_daemon(), extra in 1usize..10) {
            let mut bytes = encode_to(&a);
            bytes.resize(bytes.len() + extra, 0);
            prop_assert_eq!(ToDaemon::decode(&bytes), Err(DecodeError::Trailing(extra)));
            let mut bytes = encode_from(&b);
            bytes.resize(bytes.len() + extra, 0);
            prop_assert_eq!(FromDaemon::decode(&bytes), Err(DecodeError::Trailing(extra)));
        }
    }

    #[test]
    fn layout_matches_the_documented_field_order() {
        let m = ToDaemon::Send {
            request: 7,
            group: "g".into(),
            order: Order::Safe,
            payload: b"hi".to_vec(),
        };
        assert_eq!(
            encode_to(&m),
            [0xC0, 0xC5, VERSION, 3, 0, 0, 0, 7, 1, b'g', 3, 0, 0, 0, 2, b'h', b'i']
        );
        let e = FromDaemon::Error {
            request: 9,
            code: ErrorCode::TooLarge,
            message: "x".into(),
        };
        assert_eq!(
            encode_from(&e),
            [0xC0, 0xC5, VERSION, 102, 0, 0, 0, 9, 0, 5, 0, 1, b'x']
        );
    }

    #[test]
    fn each_direction_rejects_the_other_directions_kinds() {
        let to = encode_to(&ToDaemon::Status { request: 1 });
        assert_eq!(FromDaemon::decode(&to), Err(DecodeError::UnknownKind(4)));
        let from = encode_from(&FromDaemon::Ok { request: 1 });
        assert_eq!(ToDaemon::decode(&from), Err(DecodeError::UnknownKind(101)));
    }

    #[test]
    fn bad_header_fields_are_named() {
        let mut b = encode_to(&ToDaemon::Groups { request: 1 });
        b[2] = 1;
        assert_eq!(ToDaemon::decode(&b), Err(DecodeError::BadVersion(1)));
        b[0] = 0;
        assert_eq!(ToDaemon::decode(&b), Err(DecodeError::BadMagic(0x00C5)));
    }

    #[test]
    fn invalid_values_are_rejected() {
        let mut send = encode_to(&ToDaemon::Send {
            request: 1,
            group: "g".into(),
            order: Order::Total,
            payload: vec![],
        });
        send[10] = 9;
        assert_eq!(ToDaemon::decode(&send), Err(DecodeError::Invalid("order")));
        let mut err = encode_from(&FromDaemon::Error {
            request: 1,
            code: ErrorCode::Internal,
            message: String::new(),
        });
        err[9] = 0;
        assert_eq!(
            FromDaemon::decode(&err),
            Err(DecodeError::Invalid("error code"))
        );
    }

    #[test]
    fn stats_layout_is_twenty_counters_then_the_groups() {
        let stats = DaemonStats {
            counters: Counters {
                datagrams_in: 1,
                window_decreases: 12,
                dropped_other_cluster: 13,
                sessions_dropped_slow: 18,
                refused_replayed: 20,
                ..Counters::default()
            },
            groups: vec![GroupStats {
                name: "g".into(),
                view: ViewId(3),
                sequencer: true,
                queued: 4,
                in_flight_bytes: 5,
                window_bytes: 6,
                window_cap_bytes: 7,
            }],
        };
        let b = encode_from(&FromDaemon::Stats {
            request: 9,
            stats: Box::new(stats),
        });
        assert_eq!(&b[..8], [0xC0, 0xC5, VERSION, 108, 0, 0, 0, 9]);
        // Counter n (from 1) is at 8 * n.
        assert_eq!(b[8..16], 1u64.to_be_bytes());
        assert_eq!(b[96..104], 12u64.to_be_bytes());
        assert_eq!(b[104..112], 13u64.to_be_bytes());
        assert_eq!(b[144..152], 18u64.to_be_bytes());
        assert_eq!(b[160..168], 20u64.to_be_bytes());
        assert_eq!(&b[168..172], [0, 1, 1, b'g']);
        assert_eq!(b.len(), 172 + 8 + 1 + 4 + 8 + 8 + 8);
        assert_eq!(
            encode_to(&ToDaemon::Stats { request: 2 }),
            [0xC0, 0xC5, VERSION, 7, 0, 0, 0, 2]
        );
    }

    #[test]
    fn stats_with_too_many_groups_stay_bounded() {
        let g = GroupStats {
            name: "x".repeat(255),
            view: ViewId(1),
            sequencer: false,
            queued: 0,
            in_flight_bytes: 0,
            window_bytes: 0,
            window_cap_bytes: 0,
        };
        let stats = DaemonStats {
            groups: vec![g; STATS_GROUPS_MAX + 10],
            ..DaemonStats::default()
        };
        let b = encode_from(&FromDaemon::Stats {
            request: 1,
            stats: Box::new(stats),
        });
        assert!(b.len() <= APP_FRAME_MAX_BYTES, "{} bytes", b.len());
        match FromDaemon::decode(&b) {
            Ok(FromDaemon::Stats { stats, .. }) => assert_eq!(stats.groups.len(), STATS_GROUPS_MAX),
            other => panic!("{other:?}"),
        }
        // A count above the limit is refused even when the bytes are there.
        // The group count follows the header (8 bytes) and 20 counters.
        let at = 8 + 20 * 8;
        let mut over = b.clone();
        over[at..at + 2].copy_from_slice(&((STATS_GROUPS_MAX + 1) as u16).to_be_bytes());
        over.extend_from_slice(&b[at + 2..at + 2 + 1 + 255 + 37]);
        assert_eq!(
            FromDaemon::decode(&over),
            Err(DecodeError::Invalid("group count"))
        );
    }

    /// A 16 MiB payload with the longest names goes through a FrameBuffer
    /// sized as the daemon's and the client's are, fed in 64 KiB reads.
    #[test]
    fn a_16_mib_send_and_delivery_pass_through_a_frame_buffer() {
        use crate::wire::frame::{write_frame, FrameBuffer};
        let payload: Vec<u8> = (0..APP_PAYLOAD_MAX_BYTES)
            .map(|i| (i % 251) as u8)
            .collect();
        let name = "n".repeat(255);
        let send = ToDaemon::Send {
            request: u32::MAX,
            group: name.clone(),
            order: Order::Safe,
            payload: payload.clone(),
        };
        let delivery = FromDaemon::Message {
            group: name.as_str().into(),
            view: ViewId(u64::MAX),
            sender: name.into(),
            order: Order::Fifo,
            seq: u64::MAX,
            payload: payload.into(),
        };
        let mut stream = Vec::new();
        write_frame(&mut stream, |b| send.encode(b));
        let send_bytes = stream.len() - 4;
        write_frame(&mut stream, |b| delivery.encode(b));
        let delivery_bytes = stream.len() - 8 - send_bytes;
        assert_eq!(send_bytes, APP_PAYLOAD_MAX_BYTES + 269);
        assert_eq!(delivery_bytes, APP_PAYLOAD_MAX_BYTES + 537);
        assert!(delivery_bytes <= APP_FRAME_MAX_BYTES);
        // The payload length is a u32 on the wire, not cut to 16 or 24 bits.
        assert_eq!(
            stream[4 + 265..4 + 269],
            (APP_PAYLOAD_MAX_BYTES as u32).to_be_bytes()
        );

        let mut fb = FrameBuffer::new(APP_FRAME_MAX_BYTES);
        let mut frames = 0;
        for chunk in stream.chunks(64 * 1024) {
            fb.extend(chunk);
            while let Some(f) = fb.next_frame().expect("within the limit") {
                match frames {
                    0 => assert!(ToDaemon::decode(f) == Ok(send.clone()), "send differs"),
                    1 => assert!(
                        FromDaemon::decode(f) == Ok(delivery.clone()),
                        "delivery differs"
                    ),
                    _ => panic!("a third frame"),
                }
                frames += 1;
            }
        }
        assert_eq!((frames, fb.pending_bytes()), (2, 0));

        // One byte past the limit is refused from its length alone.
        let mut fb = FrameBuffer::new(APP_FRAME_MAX_BYTES);
        fb.extend(&((APP_FRAME_MAX_BYTES + 1) as u32).to_be_bytes());
        assert_eq!(
            fb.next_frame(),
            Err(DecodeError::TooLong(APP_FRAME_MAX_BYTES + 1))
        );
    }

    #[test]
    fn a_payload_length_beyond_the_input_is_rejected_before_allocating() {
        // Send claiming a 16 MiB payload with two bytes behind it.
        let mut b = vec![0xC0, 0xC5, VERSION, 3, 0, 0, 0, 1, 1, b'g', 2];
        b.extend_from_slice(&(APP_PAYLOAD_MAX_BYTES as u32).to_be_bytes());
        b.extend_from_slice(b"hi");
        assert!(matches!(
            ToDaemon::decode(&b),
            Err(DecodeError::Truncated { .. })
        ));
        let mut m = vec![0xC0, 0xC5, VERSION, 104, 1, b'g'];
        m.extend_from_slice(&1u64.to_be_bytes());
        m.extend_from_slice(&[1, b's', 2]);
        m.extend_from_slice(&1u64.to_be_bytes());
        m.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            FromDaemon::decode(&m),
            Err(DecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn a_huge_member_count_is_rejected_before_allocating() {
        // View of group "" in view 0 claiming 65535 members with nothing after.
        let mut b = vec![0xC0, 0xC5, VERSION, 103, 0];
        b.extend_from_slice(&0u64.to_be_bytes());
        b.extend_from_slice(&[0xFF, 0xFF]);
        assert_eq!(
            FromDaemon::decode(&b),
            Err(DecodeError::Invalid("member count"))
        );
    }
}
