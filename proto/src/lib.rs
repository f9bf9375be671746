//! chorus-proto: the chorus protocol with no IO.
//!
//! Wire formats ([`wire`]) and the state machines that the daemon, the
//! directory and the simulator all drive. Nothing here opens a socket,
//! starts a thread, reads a clock or draws randomness: every input carries
//! the time ([`Instant`]), and outputs are polled.
//!
//! The modules, lowest first (none imports one above it):
//! - [`wire`]: datagrams, directory frames, app frames;
//! - [`multicast`]: sender streams, receive streams and their NAKs, DATA packing;
//! - [`order`]: the sequencer, a member's copy of the order, delivery that
//!   joins DATA with ORDER, stability, ORDER repairs;
//! - [`membership`]: a group's views at a member, and the flush that moves
//!   the order to a new sequencer;
//! - [`host`]: one per daemon, the router that hands datagrams, directory
//!   frames and app requests to each group's handlers;
//! - [`node`]: what chorusd and the simulator both do around a host
//!   (directory heartbeats, the sequencer's settings);
//! - [`directory`]: the membership server's core.
//!
//! The protocol manual, from one message's life to sequencer failover and
//! the checkers that hold each promise, is `proto/PROTOCOL.md`, included
//! below.
#![doc = include_str!("../PROTOCOL.md")]
#![forbid(unsafe_code)]

pub mod directory;
pub mod host;
pub mod ids;
pub mod membership;
pub mod multicast;
pub mod node;
pub mod order;
pub mod time;
pub mod wire;

pub use ids::*;
pub use time::{Duration, Instant};
