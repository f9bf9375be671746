//! Total-order agreement: no two members deliver different messages (or the
//! same message in different views) at the same (group, position); a
//! message has one position; each member's positions strictly increase; and
//! a member skips no position that another member delivered between its
//! first and last delivery (so a joiner's sequence is a contiguous stretch of
//! everyone else's). Every order (fifo, total, safe) is delivered at its
//! place in the total order today, so every delivery is checked.
//!
//! Agreement is uniform for `safe` and among the living for `total` and
//! `fifo` (as Spread's SAFE and AGREED). A member whose host crashes may
//! have delivered, just before, a `total` message at a position that no
//! survivor ever learned (the sequencer's own host delivers what it orders
//! at once): the survivors' order after the flush rules, and the crashed
//! member's non-safe deliveries give way to it. A `safe` delivery was held
//! by every member first, so even a crashed member's must agree.
//!
//! A member whose node is paused (or cut off) past its lease is separated
//! when it runs again: for its old membership it counts as crashed, and
//! its non-safe deliveries beyond the survivors' cut give way too. While
//! its node is paused it is a *suspect*: a conflict with its deliveries
//! is a dispute, judged at the end (a violation unless it was separated).
//!
//! A declared group that every node left keeps its name, but its order
//! starts again at position 1 in the next view (and a restarted directory
//! that no node told of the group numbers its views from 1 again):
//! positions are judged within one such order, an epoch, which the caller
//! names (see `Checks::epoch_of`).

use super::MemberKey;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Copy)]
struct Run {
    epoch: u64,
    first: u64,
    last: u64,
    count: u64,
}

/// Who delivered a message at a position, and whether it was `safe`.
#[derive(Debug, Clone)]
struct Seen {
    id: u64,
    view: u64,
    /// Every member that delivered it there (the first names it).
    by: Vec<MemberKey>,
    safe: bool,
}

/// The group's order as members delivered it.
#[derive(Debug, Default)]
pub struct TotalOrder {
    by_pos: BTreeMap<(u16, u64, u64), Seen>,
    pos_of: BTreeMap<u64, (u64, u64)>,
    runs: BTreeMap<MemberKey, Run>,
    crashed: BTreeSet<MemberKey>,
    /// Members of a paused node, not yet known to be separated.
    suspects: BTreeSet<MemberKey>,
    /// Conflicts with suspects' deliveries, as (what, who delivered the
    /// record that gave way).
    disputes: Vec<(String, Vec<MemberKey>)>,
}

impl TotalOrder {
    /// True when a record gives way to a survivor's: not `safe`, and every
    /// member that delivered it has crashed.
    fn provisional(&self, o: &Seen) -> bool {
        !o.safe && o.by.iter().all(|w| self.crashed.contains(w))
    }

    /// True when a record may give way if its deliverers turn out to be
    /// separated (all crashed or suspect); the dispute is kept.
    fn disputed(&mut self, o: &Seen, what: String) -> bool {
        let gone = |w: &MemberKey| self.crashed.contains(w) || self.suspects.contains(w);
        if o.safe || !o.by.iter().all(gone) {
            return false;
        }
        self.disputes.push((what, o.by.clone()));
        true
    }

    /// The member's node is paused: see the module doc.
    pub fn on_suspect(&mut self, m: MemberKey) {
        self.suspects.insert(m);
    }

    /// A delivery of `id` at position `seq` in view `view` of the group's
    /// order `e`.
    pub fn on_deliver(
        &mut self,
        m: MemberKey,
        e: u64,
        id: u64,
        view: u64,
        seq: u64,
        safe: bool,
    ) -> Result<(), String> {
        let g = m.group;
        match self.by_pos.get_mut(&(g, e, seq)) {
            Some(o) if o.id == id && o.view == view => o.by.push(m),
            Some(o) => {
                let o = o.clone();
                let what = format!(
                    "group {g} position {seq}: {m} delivered {id:#x} in view {view}, {} delivered {:#x} in view {}",
                    o.by[0], o.id, o.view
                );
                if !self.provisional(&o) && !self.disputed(&o, what.clone()) {
                    return Err(what);
                }
                if self.pos_of.get(&o.id) == Some(&(e, seq)) {
                    self.pos_of.remove(&o.id);
                }
                self.by_pos.insert(
                    (g, e, seq),
                    Seen {
                        id,
                        view,
                        by: vec![m],
                        safe,
                    },
                );
            }
            None => {
                self.by_pos.insert(
                    (g, e, seq),
                    Seen {
                        id,
                        view,
                        by: vec![m],
                        safe,
                    },
                );
            }
        }
        match self.pos_of.get(&id).copied() {
            Some((pe, p)) if (pe, p) != (e, seq) => {
                let what = format!("message {id:#x} delivered at positions {p} and {seq} ({m})");
                let older = self.by_pos.get(&(g, pe, p)).cloned();
                let gave_way = older
                    .as_ref()
                    .is_none_or(|o| o.id != id || self.provisional(o));
                if !gave_way && !older.is_some_and(|o| self.disputed(&o, what.clone())) {
                    return Err(what);
                }
                self.pos_of.insert(id, (e, seq));
            }
            Some(_) => {}
            None => {
                self.pos_of.insert(id, (e, seq));
            }
        }
        let run = self.runs.entry(m).or_insert(Run {
            epoch: e,
            first: seq,
            last: 0,
            count: 0,
        });
        let (first, last, count) = (run.first, run.last, run.count);
        if run.epoch != e {
            return Err(format!("{m} delivered in two orders of the group"));
        }
        if count > 0 {
            if seq <= last {
                return Err(format!("{m} delivered position {seq} after {last}"));
            }
            let skipped: Vec<(u64, Seen)> = self
                .by_pos
                .range((g, e, last + 1)..(g, e, seq))
                .filter(|(_, o)| !self.provisional(o))
                .map(|(&(_, _, p), o)| (p, o.clone()))
                .collect();
            for (p, o) in skipped {
                let what = format!(
                    "{m} skipped position {p} ({:#x}, delivered by {}): went from {last} to {seq}",
                    o.id, o.by[0]
                );
                if !self.disputed(&o, what.clone()) {
                    return Err(what);
                }
            }
        }
        let run = self.runs.entry(m).or_insert(Run {
            epoch: e,
            first,
            last: 0,
            count: 0,
        });
        run.last = seq;
        run.count += 1;
        Ok(())
    }

    /// The member's membership ended (its run is kept for the end check).
    pub fn on_stint_end(&mut self, _m: MemberKey) {}

    /// The member's host crashed: its non-safe deliveries give way to the
    /// survivors' order from now on.
    pub fn on_crash(&mut self, m: MemberKey) {
        self.crashed.insert(m);
    }

    /// The position a message was delivered at, if any member delivered it.
    pub fn position(&self, id: u64) -> Option<u64> {
        self.pos_of.get(&id).map(|&(_, p)| p)
    }

    /// Positions of `group` that a member of its order `e` must deliver,
    /// from `from` on: those delivered by someone who did not crash (or
    /// `safe`).
    pub fn positions_from(
        &self,
        group: u16,
        e: u64,
        from: u64,
    ) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.by_pos
            .range((group, e, from)..(group, e, u64::MAX))
            .filter(|(_, o)| !self.provisional(o))
            .map(|(&(_, _, p), o)| (p, o.id))
    }

    /// The first position a member delivered.
    pub fn first_of(&self, m: MemberKey) -> Option<u64> {
        self.runs.get(&m).map(|r| r.first)
    }

    /// Every living member's run covers every position delivered in its
    /// range (a crashed member's provisional positions aside).
    pub fn at_end(&self) -> Result<(), String> {
        for (what, by) in &self.disputes {
            if let Some(w) = by.iter().find(|w| !self.crashed.contains(w)) {
                return Err(format!("{what} ({w} was never separated)"));
            }
        }
        for (m, r) in self.runs.iter().filter(|(m, _)| !self.crashed.contains(m)) {
            let known = self
                .by_pos
                .range((m.group, r.epoch, r.first)..=(m.group, r.epoch, r.last))
                .filter(|(_, o)| !self.provisional(o))
                .count() as u64;
            if known != r.count {
                return Err(format!(
                    "{m} delivered {} of the {known} positions between {} and {}",
                    r.count, r.first, r.last
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(app: u32) -> MemberKey {
        MemberKey {
            app,
            group: 0,
            stint: 1,
        }
    }

    #[test]
    fn disagreement_reordering_and_skips_are_caught() {
        let mut t = TotalOrder::default();
        assert!(t.on_deliver(m(1), 1, 10, 1, 1, false).is_ok());
        assert!(t.on_deliver(m(1), 1, 11, 1, 2, false).is_ok());
        assert!(
            t.on_deliver(m(2), 1, 12, 1, 1, false).is_err(),
            "different message at 1"
        );
        let mut t = TotalOrder::default();
        assert!(t.on_deliver(m(1), 1, 10, 1, 1, false).is_ok());
        assert!(t.on_deliver(m(1), 1, 11, 1, 2, false).is_ok());
        assert!(
            t.on_deliver(m(2), 1, 10, 2, 1, false).is_err(),
            "same message, other view"
        );
        assert!(t.on_deliver(m(3), 1, 10, 1, 1, false).is_ok());
        assert!(t.on_deliver(m(3), 1, 13, 1, 3, false).is_err(), "skipped 2");
        let mut t = TotalOrder::default();
        assert!(t.on_deliver(m(1), 1, 10, 1, 1, false).is_ok());
        assert!(t.on_deliver(m(1), 1, 11, 1, 3, false).is_ok());
        assert!(t.on_deliver(m(2), 1, 12, 1, 2, false).is_ok());
        assert!(t.at_end().is_err(), "m1 missed position 2, seen later");
    }

    #[test]
    fn a_crashed_members_total_deliveries_give_way_but_safe_ones_do_not() {
        let mut t = TotalOrder::default();
        assert!(t.on_deliver(m(1), 1, 10, 1, 1, false).is_ok());
        assert!(t.on_deliver(m(1), 1, 11, 1, 2, false).is_ok());
        assert!(t.on_deliver(m(2), 1, 10, 1, 1, false).is_ok());
        t.on_crash(m(1));
        // The survivors' order after the flush: 12 at 2, then 11 at 4.
        assert!(t.on_deliver(m(2), 1, 12, 2, 2, false).is_ok());
        assert!(t.on_deliver(m(2), 1, 11, 2, 4, false).is_ok());
        assert!(t.at_end().is_ok());
        let mut t = TotalOrder::default();
        assert!(t.on_deliver(m(1), 1, 10, 1, 1, true).is_ok());
        t.on_crash(m(1));
        assert!(
            t.on_deliver(m(2), 1, 12, 1, 1, false).is_err(),
            "a safe delivery is uniform"
        );
        let mut t = TotalOrder::default();
        assert!(t.on_deliver(m(1), 1, 10, 1, 1, false).is_ok());
        assert!(
            t.on_deliver(m(2), 1, 12, 1, 1, false).is_err(),
            "the living must agree"
        );
    }
}
