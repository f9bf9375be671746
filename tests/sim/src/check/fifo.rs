//! FIFO per sender: a member delivers each sender's messages in the order
//! the sender sent them, with no gap — once it has delivered one message of
//! a sender, the next one it delivers from that sender is the very next the
//! sender's host accepted. (Every order, fifo included, is delivered at its
//! place in the group's total order, which orders each sender's stream in
//! stream order; with crashes enabled a sender's unordered tail may be lost,
//! which is still gap-free.)

use super::{id_stream, MemberKey};
use std::collections::{BTreeMap, BTreeSet};

/// Per member and sender: the last counter delivered.
#[derive(Debug, Default)]
pub struct Fifo {
    last: BTreeMap<(MemberKey, u64), u32>,
    refused: BTreeSet<u64>,
    /// Per sender stream: the counters its app had reached when it was
    /// separated from the group (its node declared dead, or dropped).
    /// What it sent before such a point and had not made stable may be
    /// lost with the old membership, as with a crash.
    separated_at: BTreeMap<u64, BTreeSet<u32>>,
}

impl Fifo {
    /// The host refused this message: it takes no place in the stream.
    pub fn on_refused(&mut self, id: u64) {
        self.refused.insert(id);
    }

    /// The sender of `stream` was separated with `next` as its next
    /// counter.
    pub fn on_sender_separated(&mut self, stream: u64, next: u32) {
        self.separated_at.entry(stream).or_default().insert(next);
    }

    /// A delivery.
    pub fn on_deliver(&mut self, m: MemberKey, id: u64) -> Result<(), String> {
        let counter = id as u32;
        let stream = id_stream(id);
        let Some(last) = self.last.insert((m, stream), counter) else {
            return Ok(());
        };
        if counter <= last {
            return Err(format!(
                "{m} delivered message #{counter} of a{} after #{last}",
                id >> 40
            ));
        }
        // A separation point between a skipped message and this one.
        let lost_ok = |c: u32| {
            self.separated_at
                .get(&stream)
                .is_some_and(|s| s.range(c + 1..=counter).next().is_some())
        };
        for c in last + 1..counter {
            let skipped = (stream << 32) | u64::from(c);
            if !self.refused.contains(&skipped) && !lost_ok(c) {
                return Err(format!(
                    "{m} delivered #{counter} of a{} after #{last}, skipping accepted #{c}",
                    id >> 40
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::msg_id;

    #[test]
    fn reordering_and_gaps_are_caught_refusals_are_not_gaps() {
        let m = MemberKey {
            app: 0,
            group: 0,
            stint: 1,
        };
        let mut f = Fifo::default();
        assert!(
            f.on_deliver(m, msg_id(3, 0, 5)).is_ok(),
            "a joiner starts anywhere"
        );
        assert!(f.on_deliver(m, msg_id(3, 0, 6)).is_ok());
        assert!(f.on_deliver(m, msg_id(3, 0, 6)).is_err());
        f.on_refused(msg_id(3, 0, 7));
        assert!(f.on_deliver(m, msg_id(3, 0, 8)).is_ok());
        assert!(f.on_deliver(m, msg_id(3, 0, 10)).is_err(), "#9 skipped");
        // a3 was separated before sending #12: #10 and #11 may be lost.
        f.on_sender_separated(msg_id(3, 0, 0) >> 32, 12);
        assert!(f.on_deliver(m, msg_id(3, 0, 12)).is_ok());
        assert!(f.on_deliver(m, msg_id(3, 0, 14)).is_err(), "#13 skipped");
    }
}
