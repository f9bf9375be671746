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

use super::DecodeError;
use crate::ids::{Order, ViewId};

/// Longest app frame accepted (payload up to 1 MiB plus headers).
pub const APP_FRAME_MAX_BYTES: usize = (1 << 20) + 4096;

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
    /// The payload is larger than a datagram can carry. 5
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
        group: String,
        view: ViewId,
        sender: String,
        order: Order,
        /// Total order position (total/safe); the sender's stream position (fifo).
        seq: u64,
        payload: Vec<u8>,
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
    Groups { request: u32, groups: Vec<GroupLine> },
    /// Reply to Members: the same fields as View after the request number.
    /// kind 107: request u32, group str8, view u64, members, sequencer str8.
    Members {
        request: u32,
        group: String,
        view: ViewId,
        members: Vec<String>,
        sequencer: String,
    },
}

impl ToDaemon {
    /// Appends the frame body (without the length prefix).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let _ = out;
        todo!("ToDaemon::encode")
    }

    /// Decodes a frame body; every byte must be consumed.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let _ = body;
        todo!("ToDaemon::decode")
    }
}

impl FromDaemon {
    /// Appends the frame body (without the length prefix).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let _ = out;
        todo!("FromDaemon::encode")
    }

    /// Decodes a frame body; every byte must be consumed.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let _ = body;
        todo!("FromDaemon::decode")
    }
}
