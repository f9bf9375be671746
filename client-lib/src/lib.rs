//! chorus: the client library applications use to talk to their local
//! `chorusd` over its Unix socket.
//!
//! A [`Client`] is one session with the daemon. Through it the application
//! joins groups under a member name, sends messages to them with a delivery
//! service ([`Order`]), and receives [`Event`]s: the views of the groups it
//! joined (view id, members, sequencer) and the messages delivered to it.
//! Members are named `NODE:NAME`, where NODE is the daemon's node name.
//!
//! # From the course API
//!
//! | original call | here |
//! |---|---|
//! | `grp_join(group, name)` | [`Client::join`] |
//! | `grp_leave(group)` | [`Client::leave`] |
//! | `grp_send(group, order, msg)` | [`Client::send`] (then [`Client::flush`] to wait until the daemon accepted it) |
//! | `grp_recv()` | [`Client::recv`] / [`Client::recv_timeout`] |
//!
//! Besides, [`Client::status`], [`Client::groups`] and [`Client::members`]
//! query the daemon's state, and [`Client::stats`] its counters (datagrams
//! and bytes in and out, messages accepted and delivered, NAKs,
//! retransmissions, and each group's queue and flow window): what
//! `chorusctl status`, `groups`, `members` and `stats` print.
//!
//! The connection to the daemon replaces the implicit process-wide state of
//! the original; one process may hold several clients.
//!
//! ```no_run
//! use chorus::{Client, Event, Order};
//!
//! # fn main() -> Result<(), chorus::Error> {
//! let mut client = Client::connect_default()?; // $CHORUS_SOCKET or /run/chorus/chorusd.sock
//! client.join("chat", "worker-1")?;
//! client.send("chat", Order::Total, b"hello")?;
//! client.flush()?; // the daemon now holds the message: it will not be lost while it lives
//! loop {
//!     match client.recv()? {
//!         Event::View(v) => println!("view {} of {}: {:?}", v.view, v.group, v.members),
//!         Event::Message(m) => println!("#{} from {}: {:?}", m.seq, m.sender, m.payload),
//!         // This node was declared dead or dropped: nothing after s.view
//!         // reaches us; unless the daemon rejoins by itself, join again.
//!         Event::Separated(s) => eprintln!("separated from {} after view {}: {}", s.group, s.view, s.reason),
//!     }
//! }
//! # }
//! ```
//!
//! # Sending is pipelined
//!
//! [`Client::send`] only buffers the frame and returns; frames go out in
//! batches (one write for many small messages) whenever the buffer grows
//! large or the client is about to wait for the daemon. At most
//! [`SEND_WINDOW`] sends (and [`SEND_WINDOW_BYTES`] of payload) may be
//! unanswered; the next send first reads the daemon's replies. If the daemon refuses a send, the refusal is returned by
//! the next call made after it arrived, and that call does nothing else;
//! [`Client::flush`] waits for every reply, so it reports any refusal.
//!
//! Views and messages that arrive while a call waits for its reply are queued
//! in memory for [`Client::recv`]; an application that only sends can turn
//! that off with [`Client::discard_events`].
//!
//! # When the directory does not answer
//!
//! Joining, leaving and [`Client::groups`] need the daemon's directory.
//! A daemon that is still registering with it (a directory that has just
//! started registers daemons when its grace period of one lease ends) holds
//! such a request until it is registered; one whose directory does not
//! answer (down, unreachable, or frozen with its connection open) fails it
//! after 5 s (two leases, if the directory's is longer than 2.5 s) with
//! [`Error::Daemon`] and [`ErrorCode::Unavailable`]
//! (`chorusctl` exits 69). The session stays usable: try again later.
//! Groups already joined keep delivering and accepting sends meanwhile.
//! [`Status::connected`] says whether the daemon is registered, i.e. can
//! serve joins now.
//!
//! The library starts no thread: the socket is read only inside calls. A
//! member that stops calling [`Client::recv`] (or any other call) while its
//! groups stay busy lets the daemon's queue towards it grow, and the daemon
//! disconnects sessions that fall too far behind (`session_queue_bytes`).
#![forbid(unsafe_code)]

mod client;
mod error;
mod event;

pub use chorus_proto::wire::app::ErrorCode;
pub use chorus_proto::Order;
pub use client::{Client, SEND_WINDOW, SEND_WINDOW_BYTES};
pub use error::{Error, ProtocolError};
pub use event::{Event, GroupInfo, GroupStats, Message, Separation, Stats, Status, ViewInfo};

use std::path::PathBuf;

/// Environment variable naming the daemon's socket (set it to the path
/// `chorusd --dev` prints).
pub const SOCKET_ENV: &str = "CHORUS_SOCKET";

/// Where a system `chorusd` listens unless configured otherwise.
pub const DEFAULT_SOCKET: &str = "/run/chorus/chorusd.sock";

/// The socket [`Client::connect_default`] uses: `$CHORUS_SOCKET` when set
/// and not empty, else [`DEFAULT_SOCKET`].
pub fn default_socket_path() -> PathBuf {
    match std::env::var_os(SOCKET_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_SOCKET),
    }
}
