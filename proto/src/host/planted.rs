//! Bugs planted on purpose, so that the simulator (chorus-sim) can show its
//! checkers catch them. Every switch is off by default and nothing but the
//! simulator's tests turns one on ([`super::Host::plant`]).
//!
//! The switches act only in builds with the `planted` feature, which only
//! the simulator's tests enable (a dev-dependency): in any other build they
//! read as off, and the code they guard is compiled out.

/// Test-only switches that break the protocol in one known way each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Planted {
    /// Never answer a NAK, never repair a peer, never resend what the
    /// sequencer has not ordered: a lost DATA stays lost.
    pub no_retransmit: bool,
    /// Receive streams forget what they delivered: a late copy of a
    /// delivered message is held again as if new.
    pub no_duplicate_suppression: bool,
    /// A retransmission storm, as this protocol once had under load: every
    /// tick, multicast again every message sent that the sequencer has not
    /// ordered yet, on top of the tail probe.
    pub retransmit_storm: bool,
    /// Members are never told they were separated: a node declared dead
    /// (stopped past its lease) joins them again behind their apps' backs,
    /// as chorus once did, and their deliveries have a hole.
    pub silent_separation: bool,
}

impl Planted {
    /// True when this build can plant bugs at all (the `planted` feature).
    pub const AVAILABLE: bool = cfg!(feature = "planted");

    /// The `no_retransmit` switch, as this build honours it.
    pub fn no_retransmit(self) -> bool {
        Self::AVAILABLE && self.no_retransmit
    }

    /// The `retransmit_storm` switch, as this build honours it.
    pub fn retransmit_storm(self) -> bool {
        Self::AVAILABLE && self.retransmit_storm
    }

    /// The `silent_separation` switch, as this build honours it.
    pub fn silent_separation(self) -> bool {
        Self::AVAILABLE && self.silent_separation
    }

    /// The `no_duplicate_suppression` switch, as this build honours it.
    pub fn no_duplicate_suppression(self) -> bool {
        Self::AVAILABLE && self.no_duplicate_suppression
    }
}
