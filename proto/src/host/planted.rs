//! Bugs planted on purpose, so that the simulator (chorus-sim) can show its
//! checkers catch them. Every switch is off by default and nothing but the
//! simulator's tests turns one on ([`super::Host::plant`]).

/// Test-only switches that break the protocol in one known way each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Planted {
    /// Never answer a NAK, never repair a peer, never resend what the
    /// sequencer has not ordered: a lost DATA stays lost.
    pub no_retransmit: bool,
    /// Receive streams forget what they delivered: a late copy of a
    /// delivered message is held again as if new.
    pub no_duplicate_suppression: bool,
}
