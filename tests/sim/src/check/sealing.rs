//! Sealing: what reaches the protocol was sealed by a host of the cluster,
//! as it was sealed, and reaches it once.
//!
//! Judged at the seal, for every datagram that opened: none that the
//! attacker altered ([`crate::adversary`]; it holds no key) opens, and no
//! sealed datagram opens twice at one socket (a duplicate from the network
//! or the attacker's replay is refused by the replay window). The protocol
//! copes with duplicates anyway; this judges the edge that chorusd shares,
//! which promises more.

use std::collections::HashSet;

use crate::adversary::Mutation;
use crate::world::Port;
use chorus_proto::wire::seal::SEALED_HEADER_BYTES;

/// The sealed headers (key id, salt, counter) opened at each socket.
#[derive(Debug, Default)]
pub struct Sealing {
    opened: HashSet<(usize, bool, [u8; SEALED_HEADER_BYTES - 4])>,
}

impl Sealing {
    /// `sealed` opened at `node`'s `port` (the attacker's, with `forged`).
    pub fn on_opened(
        &mut self,
        node: usize,
        port: Port,
        sealed: &[u8],
        forged: Option<Mutation>,
    ) -> Result<(), String> {
        if let Some(m) = forged.filter(|m| m.altered()) {
            return Err(format!(
                "h{node} opened a datagram the attacker altered ({m:?})"
            ));
        }
        let mut id = [0u8; SEALED_HEADER_BYTES - 4];
        if let Some(h) = sealed.get(4..SEALED_HEADER_BYTES) {
            id.copy_from_slice(h);
        }
        if !self.opened.insert((node, port == Port::Order, id)) {
            let by = if forged.is_some() {
                "the attacker's replay"
            } else {
                "a copy from the network"
            };
            return Err(format!(
                "h{node} opened a sealed datagram twice on its {port:?} socket ({by})"
            ));
        }
        Ok(())
    }

    /// A node's life ended: its sockets' seals start afresh (new sessions,
    /// no memory of what they opened).
    pub fn forget_node(&mut self, node: usize) {
        self.opened.retain(|(n, _, _)| *n != node);
    }
}
