//! Reliable multicast: one sender's stream ([`send::SendStream`]) and a
//! receiver's view of one sender's stream ([`recv::RecvStream`]).
//!
//! A stream is identified by (group, sender node, incarnation) and numbered
//! by [`SenderSeq`](crate::SenderSeq) from the stream's start. Receivers hold
//! out-of-order messages, hand them on in sender order, and nak gaps; senders
//! keep every message until the sequencer announces it stable (held by every
//! member) and retransmit what the sequencer has not yet ordered.

pub mod flow;
pub mod pack;
pub mod receivers;
pub mod recv;
pub mod send;

use crate::ids::{Incarnation, NodeId};

/// Names one sender's stream within a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamKey {
    pub node: NodeId,
    pub incarnation: Incarnation,
}

/// Collapses sorted positions into inclusive ranges, at most `max` of them.
pub fn to_ranges(seqs: impl IntoIterator<Item = u64>, max: usize) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for s in seqs {
        match out.last_mut() {
            Some((_, hi)) if *hi + 1 == s => *hi = s,
            _ => {
                if out.len() == max {
                    break;
                }
                out.push((s, s));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::to_ranges;

    #[test]
    fn ranges_collapse_and_are_bounded() {
        assert_eq!(
            to_ranges([1, 2, 3, 5, 7, 8], 10),
            vec![(1, 3), (5, 5), (7, 8)]
        );
        assert_eq!(to_ranges([1, 3, 5], 2), vec![(1, 1), (3, 3)]);
        assert!(to_ranges([], 2).is_empty());
    }
}
