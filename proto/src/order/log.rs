//! A member's copy of its group's total order.

use super::slot::Slot;
use crate::ids::{GlobalSeq, SenderSeq, ViewId};
use crate::multicast::StreamKey;
use crate::wire::datagram::OrderBatch;
use std::collections::VecDeque;

/// The positions a member knows, from the first it must deliver.
///
/// A member that joins in view `v` delivers from the first position the
/// sequencer assigned in `v` (announced as `view_start` in ORDER records of
/// `v`); if the first ORDER it sees is already of a later view, it starts at
/// that view's start.
#[derive(Debug)]
pub struct OrderLog {
    join_view: ViewId,
    start: Option<GlobalSeq>,
    /// The view of the batch that fixed `start` (later than `join_view`
    /// when the first ORDER this member saw was of a later view).
    start_view: ViewId,
    next: GlobalSeq,
    slots: VecDeque<Option<Slot>>,
    window: usize,
    highest_known: GlobalSeq,
    stable: GlobalSeq,
    /// Records up to here are kept even past the window: a new sequencer
    /// must know every record up to its flush cut (see `reach_through`).
    reach: GlobalSeq,
}

impl OrderLog {
    /// A log for a member whose first view of the group is `join_view`.
    pub fn new(join_view: ViewId, window: usize) -> Self {
        OrderLog {
            join_view,
            start: None,
            start_view: join_view,
            next: GlobalSeq(1),
            slots: VecDeque::new(),
            window: window.max(1),
            highest_known: GlobalSeq(0),
            stable: GlobalSeq(0),
            reach: GlobalSeq(0),
        }
    }

    /// A log that starts at `start` at once (the sequencer's own node, or a
    /// node taking over as sequencer).
    pub fn started_at(join_view: ViewId, start: GlobalSeq, window: usize) -> Self {
        let mut log = OrderLog::new(join_view, window);
        log.start = Some(start);
        log.next = start;
        log.highest_known = GlobalSeq(start.0.saturating_sub(1));
        log
    }

    /// The first position this member delivers, once known.
    pub fn start(&self) -> Option<GlobalSeq> {
        self.start
    }

    /// The view this member's order starts in.
    pub fn start_view(&self) -> ViewId {
        self.start_view
    }

    /// The next position to deliver.
    pub fn next(&self) -> GlobalSeq {
        self.next
    }

    /// Highest position known to exist.
    pub fn highest_known(&self) -> GlobalSeq {
        self.highest_known
    }

    /// Stability announced by the sequencer.
    pub fn stable(&self) -> GlobalSeq {
        self.stable
    }

    /// Everything up to `g` is held by every member that goes on (a new
    /// sequencer learns it from the flush reports).
    pub fn raise_stable(&mut self, g: GlobalSeq) {
        self.stable = self.stable.max(g);
    }

    /// Keeps records up to `g` even past the window. A new sequencer needs
    /// every record up to its flush cut before it can take over, while its
    /// delivery may wait (a `safe` message) for a stability only the
    /// takeover brings: the window must not stand between them. The excess
    /// is bounded by the cut, which some survivor held within its window.
    pub fn reach_through(&mut self, g: GlobalSeq) {
        self.reach = self.reach.max(g);
    }

    /// Positions up to `g` exist (a flush cut): missing ones get naked.
    pub fn expect_through(&mut self, g: GlobalSeq) {
        self.highest_known = self.highest_known.max(g);
    }

    /// Forgets every record past `cut` (a new sequencer reassigns them).
    pub fn truncate_after(&mut self, cut: GlobalSeq) {
        let keep = cut.0.saturating_add(1).saturating_sub(self.next.0) as usize;
        self.slots.truncate(keep);
        self.highest_known = self.highest_known.min(cut).max(GlobalSeq(self.next.0 - 1));
    }

    /// Takes in an ORDER batch. Returns false if it taught nothing new.
    pub fn absorb(&mut self, batch: &OrderBatch) -> bool {
        self.stable = self.stable.max(batch.stable);
        if batch.view < self.join_view {
            return false;
        }
        if self.start.is_none() {
            self.start_view = batch.view;
        }
        let start = *self.start.get_or_insert_with(|| {
            self.next = batch.view_start;
            batch.view_start
        });
        let mut g = batch.first.0;
        let mut learned = false;
        for e in &batch.entries {
            let key = StreamKey {
                node: e.sender,
                incarnation: e.sender_incarnation,
            };
            for k in 0..u64::from(e.count) {
                if g >= start.0 && g >= self.next.0 {
                    let i = (g - self.next.0) as usize;
                    if i < self.window || g <= self.reach.0 {
                        while self.slots.len() <= i {
                            self.slots.push_back(None);
                        }
                        if self.slots[i].is_none() {
                            self.slots[i] = Some(Slot::from_wire(key, SenderSeq(e.first.0 + k)));
                            learned = true;
                        }
                    }
                }
                g += 1;
            }
        }
        let last = GlobalSeq(g.saturating_sub(1));
        if last > self.highest_known {
            self.highest_known = last;
            learned = true;
        }
        learned
    }

    /// The record at `g`, if known and not yet delivered.
    pub fn entry(&self, g: GlobalSeq) -> Option<Slot> {
        let i = g.0.checked_sub(self.next.0)?;
        *self.slots.get(usize::try_from(i).ok()?)?
    }

    /// The record at the next position, if known.
    pub fn front(&self) -> Option<Slot> {
        self.start?;
        self.slots.front().copied().flatten()
    }

    /// Moves past the next position (it was delivered).
    pub fn advance(&mut self) {
        self.slots.pop_front();
        self.next = self.next.next();
    }

    /// Positions known to exist and not yet known here.
    pub fn missing(&self, max: usize) -> Vec<u64> {
        let mut out = Vec::new();
        if self.start.is_none() {
            return out;
        }
        let mut g = self.next.0;
        while g <= self.highest_known.0 && out.len() < max {
            if self.entry(GlobalSeq(g)).is_none() {
                out.push(g);
            }
            g += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{GroupId, Incarnation, NodeId};
    use crate::wire::datagram::OrderEntry;

    fn batch(view: u64, view_start: u64, first: u64, runs: &[(u32, u64, u16)]) -> OrderBatch {
        OrderBatch {
            group: GroupId(1),
            sequencer: NodeId(1),
            sequencer_incarnation: Incarnation(1),
            view: ViewId(view),
            view_start: GlobalSeq(view_start),
            sequencer_start: GlobalSeq(1),
            stable: GlobalSeq(0),
            first: GlobalSeq(first),
            entries: runs
                .iter()
                .map(|&(n, f, c)| OrderEntry {
                    sender: NodeId(n),
                    sender_incarnation: Incarnation(1),
                    first: SenderSeq(f),
                    count: c,
                })
                .collect(),
        }
    }

    #[test]
    fn a_joiner_starts_at_its_views_start_and_naks_gaps() {
        let mut log = OrderLog::new(ViewId(3), 64);
        assert!(
            !log.absorb(&batch(2, 1, 5, &[(1, 5, 1)])),
            "older view ignored"
        );
        assert!(log.absorb(&batch(3, 10, 12, &[(2, 1, 2)])));
        assert_eq!(log.start(), Some(GlobalSeq(10)));
        assert_eq!(log.missing(10), vec![10, 11]);
        assert!(log.absorb(&batch(3, 10, 10, &[(1, 7, 2)])));
        assert_eq!(
            log.front()
                .and_then(Slot::message)
                .map(|(k, s)| (k.node, s)),
            Some((NodeId(1), SenderSeq(7)))
        );
        log.advance();
        log.advance();
        assert_eq!(
            log.front()
                .and_then(Slot::message)
                .map(|(k, s)| (k.node, s)),
            Some((NodeId(2), SenderSeq(1)))
        );
        assert!(log.missing(10).is_empty());
    }

    #[test]
    fn an_empty_batch_reveals_a_lost_tail() {
        let mut log = OrderLog::started_at(ViewId(1), GlobalSeq(1), 64);
        assert!(log.absorb(&batch(1, 1, 4, &[])));
        assert_eq!(log.missing(10), vec![1, 2, 3]);
    }
}
