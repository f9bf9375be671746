//! chorus-proto: the chorus protocol with no IO.
//!
//! Wire formats ([`wire`]) and the state machines that the daemon, the
//! directory and the simulator all drive: [`directory`] (membership registry),
//! [`host`] (one per daemon: reliable multicast and delivery) and [`order`]
//! (the sequencer); [`node`] is the edge logic every daemon's driver runs
//! around the last two. Nothing here opens a socket, starts a thread, reads a
//! clock or draws randomness: every input carries the time ([`Instant`]), and
//! outputs are polled.
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
