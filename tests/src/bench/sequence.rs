//! The delivery checks of a run: did every member deliver exactly the P×M
//! messages sent, each once, and in the same order as every other member?

use std::collections::BTreeMap;

use chorus::Order;
use serde::Serialize;

/// One message of a run: its sender's index and its number at that sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct MsgId {
    pub sender: u32,
    pub number: u32,
}

/// How one member's deliveries compare with what was sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Completeness {
    /// Messages sent that the member never delivered.
    pub missing: u64,
    /// Deliveries beyond the first of the same message.
    pub duplicates: u64,
    /// Deliveries of a message never sent (sender or number out of range).
    pub unexpected: u64,
}

impl Completeness {
    /// Every message delivered exactly once, and nothing else.
    pub fn is_exact(&self) -> bool {
        *self == Completeness::default()
    }
}

/// Compares `delivered` with the `senders`×`messages` messages sent.
pub fn completeness(delivered: &[MsgId], senders: u32, messages: u32) -> Completeness {
    let per_sender = messages as usize;
    let mut seen = vec![0u32; senders as usize * per_sender];
    let mut c = Completeness::default();
    for id in delivered {
        if id.sender >= senders || id.number >= messages {
            c.unexpected += 1;
            continue;
        }
        let slot = &mut seen[id.sender as usize * per_sender + id.number as usize];
        if *slot > 0 {
            c.duplicates += 1;
        }
        *slot = slot.saturating_add(1);
    }
    c.missing = seen.iter().filter(|&&n| n == 0).count() as u64;
    c
}

/// Whether every member delivered "the same sequence" for `order`.
///
/// For `total` and `safe`: the very same sequence of messages. For `fifo`,
/// which orders each sender's messages but not senders against each other:
/// the same messages, and for each sender the same order at every member.
/// True for fewer than two members.
pub fn same_sequence(order: Order, members: &[&[MsgId]]) -> bool {
    let Some((first, rest)) = members.split_first() else {
        return true;
    };
    match order {
        Order::Total | Order::Safe => rest.iter().all(|m| m == first),
        Order::Fifo => {
            let reference = per_sender(first);
            rest.iter().all(|m| per_sender(m) == reference)
        }
    }
}

/// Each sender's messages in the order `delivered` has them. Two members
/// with equal maps delivered the same messages (as a multiset) with the
/// same order per sender.
fn per_sender(delivered: &[MsgId]) -> BTreeMap<u32, Vec<u32>> {
    let mut map: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for id in delivered {
        map.entry(id.sender).or_default().push(id.number);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(pairs: &[(u32, u32)]) -> Vec<MsgId> {
        pairs
            .iter()
            .map(|&(sender, number)| MsgId { sender, number })
            .collect()
    }

    #[test]
    fn exact_delivery_is_complete() {
        let d = ids(&[(0, 0), (1, 0), (0, 1), (1, 1)]);
        let c = completeness(&d, 2, 2);
        assert!(c.is_exact(), "{c:?}");
    }

    #[test]
    fn loss_duplicates_and_strangers_are_counted() {
        let d = ids(&[(0, 0), (0, 0), (1, 1), (2, 0), (0, 5)]);
        let c = completeness(&d, 2, 2);
        assert_eq!(
            c,
            Completeness {
                missing: 2,
                duplicates: 1,
                unexpected: 2
            }
        );
        assert!(!c.is_exact());
    }

    #[test]
    fn total_order_needs_identical_sequences() {
        let a = ids(&[(0, 0), (1, 0), (0, 1)]);
        let b = ids(&[(1, 0), (0, 0), (0, 1)]);
        assert!(same_sequence(Order::Total, &[&a, &a.clone(), &a]));
        assert!(!same_sequence(Order::Total, &[&a, &a, &b]));
        assert!(!same_sequence(Order::Safe, &[&a, &b]));
        assert!(!same_sequence(Order::Total, &[&a, &a[..2]]));
    }

    #[test]
    fn fifo_compares_per_sender_order_and_the_set() {
        let a = ids(&[(0, 0), (1, 0), (0, 1), (1, 1)]);
        let interleaved = ids(&[(1, 0), (1, 1), (0, 0), (0, 1)]);
        assert!(same_sequence(Order::Fifo, &[&a, &interleaved]));
        let swapped = ids(&[(0, 1), (1, 0), (0, 0), (1, 1)]);
        assert!(!same_sequence(Order::Fifo, &[&a, &swapped]));
        let short = ids(&[(0, 0), (1, 0), (0, 1)]);
        assert!(!same_sequence(Order::Fifo, &[&a, &short]));
    }

    #[test]
    fn one_member_or_none_agrees_with_itself() {
        assert!(same_sequence(Order::Total, &[]));
        assert!(same_sequence(Order::Fifo, &[&ids(&[(0, 0)])]));
    }
}
