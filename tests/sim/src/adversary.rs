//! An attacker on the simulated network ([`crate::Options::adversary`]).
//!
//! It sees every sealed datagram that reaches a host and keeps copies of
//! some. Now and then, at random, it sends one of them again, a little
//! later: as it was (a replay), with one bit flipped, cut short, under
//! another key id, or to another host's data or order port. It never holds
//! the cluster key, so it can only replay and damage what it captured: the
//! opener must refuse every alteration and every replay of a datagram
//! already opened, and the protocol, judged by every checker as in any
//! run, must deliver exactly what it would without the attacker. A replay
//! of a datagram the network lost on the way is authentic and opens: to
//! the protocol it is a late copy, as a retransmission is.

use std::net::SocketAddrV4;

use crate::rng::Rng;
use crate::world::{Micros, Port};
use chorus_proto::wire::seal::SEALED_HEADER_BYTES;

/// Copies kept at most (a new one replaces a random old one past this).
const KEEP: usize = 64;
/// One datagram in this many that reach a host is copied.
const COPY_ONE_IN: u64 = 20;
/// One datagram in this many that reach a host makes the attacker send.
const SEND_ONE_IN: u64 = 25;
/// The attacker sends within this long after it decided to.
const DELAY_MAX_US: Micros = 50_000;

/// What the attacker did to a captured datagram before sending it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutation {
    /// Sent again as it was, to where it went.
    Replay,
    /// Sent as it was to another host, or the other port of its host.
    Redirect,
    /// One bit flipped.
    FlipBit,
    /// Cut short.
    Truncate,
    /// Another key id in the clear header.
    OtherKeyId,
}

impl Mutation {
    /// Whether the datagram can still open: only an unaltered one can (and
    /// then only if its receiver has not opened it before).
    pub fn altered(self) -> bool {
        !matches!(self, Mutation::Replay | Mutation::Redirect)
    }
}

/// A captured datagram: where it went and what it was.
#[derive(Debug, Clone)]
struct Copy {
    node: usize,
    port: Port,
    from: SocketAddrV4,
    bytes: Vec<u8>,
}

/// One datagram the attacker sends.
#[derive(Debug, Clone)]
pub struct Forgery {
    pub at: Micros,
    pub node: usize,
    pub port: Port,
    pub from: SocketAddrV4,
    pub bytes: Vec<u8>,
    pub mutation: Mutation,
}

/// The attacker's state.
#[derive(Debug)]
pub struct Adversary {
    rng: Rng,
    kept: Vec<Copy>,
    /// Datagrams sent, altered ones among them.
    pub sent: u64,
    pub altered: u64,
}

impl Adversary {
    pub fn new(rng: Rng) -> Adversary {
        Adversary {
            rng,
            kept: Vec::new(),
            sent: 0,
            altered: 0,
        }
    }

    /// A sealed datagram reached `node` on `port` at `now`: maybe keep a
    /// copy, maybe send one. `hosts` is the number of hosts.
    pub fn saw(
        &mut self,
        now: Micros,
        hosts: usize,
        node: usize,
        port: Port,
        from: SocketAddrV4,
        bytes: &[u8],
    ) -> Option<Forgery> {
        if self.rng.below(COPY_ONE_IN) == 0 && !bytes.is_empty() {
            let copy = Copy {
                node,
                port,
                from,
                bytes: bytes.to_vec(),
            };
            if self.kept.len() < KEEP {
                self.kept.push(copy);
            } else {
                let i = self.rng.index(KEEP);
                self.kept[i] = copy;
            }
        }
        if self.kept.is_empty() || self.rng.below(SEND_ONE_IN) != 0 {
            return None;
        }
        let c = self.kept[self.rng.index(self.kept.len())].clone();
        let mutation = match self.rng.below(5) {
            0 => Mutation::Replay,
            1 => Mutation::Redirect,
            2 => Mutation::FlipBit,
            3 => Mutation::Truncate,
            _ => Mutation::OtherKeyId,
        };
        let (mut node, mut port, mut bytes) = (c.node, c.port, c.bytes);
        match mutation {
            Mutation::Replay => {}
            Mutation::Redirect => {
                node = self.rng.index(hosts);
                if self.rng.coin() {
                    port = match port {
                        Port::Data => Port::Order,
                        Port::Order => Port::Data,
                    };
                }
            }
            Mutation::FlipBit => {
                let bit = self.rng.index(bytes.len() * 8);
                bytes[bit / 8] ^= 1 << (bit % 8);
            }
            Mutation::Truncate => {
                let keep = self.rng.index(bytes.len());
                bytes.truncate(keep);
            }
            Mutation::OtherKeyId => {
                if bytes.len() >= SEALED_HEADER_BYTES {
                    bytes[4] ^= 0x80;
                }
            }
        }
        self.sent += 1;
        if mutation.altered() {
            self.altered += 1;
        }
        Some(Forgery {
            at: now + 1 + self.rng.below(DELAY_MAX_US),
            node,
            port,
            from: c.from,
            bytes,
            mutation,
        })
    }
}
