//! Every byte that crosses a process boundary.
//!
//! Three families, each with a checked decoder that validates lengths, rejects
//! unknown kinds, checks that every byte was consumed, and never panics:
//! - [`datagram`]: UDP datagrams between daemons (multicast DATA and ORDER,
//!   unicast acks and naks), with a header carrying magic, version, cluster id.
//! - [`directory`]: frames on the TCP link between a daemon and the directory.
//! - [`app`]: frames on the Unix socket between an application and its daemon.
//! - [`seal`]: the cluster key, and the sealed (encrypted and authenticated)
//!   form of datagrams that a keyed cluster sends instead of the plain one.
//!
//! Stream frames (directory and app) travel as a 4-byte big-endian length
//! followed by that many bytes; [`frame::FrameBuffer`] reassembles them.

pub mod app;
pub mod codec;
pub mod datagram;
pub mod directory;
pub mod frame;
pub mod seal;

pub use codec::DecodeError;

/// First two bytes of every datagram and frame body: "C5".
pub const MAGIC: u16 = 0xC0C5;
/// The largest application message the protocol carries (16 MiB): a
/// daemon's `max_message_bytes` and a group's may only lower it, and a
/// member drops a peer's message that grows past it while being
/// reassembled.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;
/// Protocol version carried in every header. 2: DATA's order byte carries
/// the piece of a large message, views carry the group's
/// `max_message_bytes`, and stats carry the drop counters; a version-1 peer
/// or client is refused by name rather than misread. 3: Hello and Welcome
/// carry the directory's epoch and a replica that does not lead answers
/// Redirect (replicated directory); a version-2 daemon would not know to
/// follow a redirect or fence a deposed leader, so it is refused. 4: a
/// keyed cluster seals every datagram ([`seal`]) and every directory frame
/// after a handshake that proves both ends hold the cluster key; a
/// version-3 peer would send in clear and is refused.
pub const VERSION: u8 = 4;
