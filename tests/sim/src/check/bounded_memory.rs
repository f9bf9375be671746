//! Bounded memory: windows never exceed their limits.
//!
//! - A host's send stream of a group never holds more than its capacity
//!   (twice `send_window_messages`: beyond it the app is not read) and the
//!   pieces of one large message accepted just below it.
//! - A sequencer keeps only records not yet stable. Each is a message some
//!   sender still holds unstable (at most twice its send window per sender
//!   node and incarnation, plus one large message's pieces) or a view
//!   marker, so its log never exceeds
//!   `Σ (2 × send window + pieces) × incarnations + views`.

use crate::node::Node;

/// Checks the host at `i` (and its sequencer).
pub fn check(nodes: &[Node], i: usize, views: u64) -> Result<(), String> {
    let n = &nodes[i];
    if !n.alive {
        return Ok(());
    }
    let cap = 2 * n.params.send_window_messages + n.host.max_message_pieces();
    for g in n.host.groups() {
        if g.send.len() > cap {
            return Err(format!(
                "h{i} group {}: send stream holds {} messages, capacity {cap}",
                g.id,
                g.send.len()
            ));
        }
    }
    if let Some(seq) = &n.seq {
        let incarnations: u64 = nodes
            .iter()
            .map(|m| m.incarnation - crate::cluster::FIRST_INCARNATION + 1)
            .sum();
        let windows: u64 = nodes
            .iter()
            .map(|m| (2 * m.params.send_window_messages + m.host.max_message_pieces()) as u64)
            .sum();
        let bound = windows * incarnations + views + 1;
        for gid in seq.groups() {
            let len = seq.log_len(gid) as u64;
            if len > bound {
                return Err(format!(
                    "sequencer h{i} group {gid}: {len} unstable records, bound {bound}"
                ));
            }
        }
    }
    Ok(())
}
