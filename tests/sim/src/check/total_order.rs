//! Total-order agreement: no two members deliver different messages (or the
//! same message in different views) at the same (group, position); a
//! message has one position; each member's positions strictly increase; and
//! a member skips no position that another member delivered between its
//! first and last delivery (so a joiner's sequence is a contiguous stretch of
//! everyone else's). Every order (fifo, total, safe) is delivered at its
//! place in the total order today, so every delivery is checked.

use super::MemberKey;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy)]
struct Run {
    first: u64,
    last: u64,
    count: u64,
}

/// The group's order as members delivered it.
#[derive(Debug, Default)]
pub struct TotalOrder {
    by_pos: BTreeMap<(u16, u64), (u64, u64, MemberKey)>,
    pos_of: BTreeMap<u64, u64>,
    runs: BTreeMap<MemberKey, Run>,
}

impl TotalOrder {
    /// A delivery of `id` at position `seq` in view `view`.
    pub fn on_deliver(&mut self, m: MemberKey, id: u64, view: u64, seq: u64) -> Result<(), String> {
        let g = m.group;
        match self.by_pos.get(&(g, seq)) {
            Some(&(other, v, who)) if other != id || v != view => {
                return Err(format!(
                    "group {g} position {seq}: {m} delivered {id:#x} in view {view}, {who} delivered {other:#x} in view {v}"
                ));
            }
            Some(_) => {}
            None => {
                self.by_pos.insert((g, seq), (id, view, m));
            }
        }
        if let Some(&p) = self.pos_of.get(&id) {
            if p != seq {
                return Err(format!(
                    "message {id:#x} delivered at positions {p} and {seq} ({m})"
                ));
            }
        } else {
            self.pos_of.insert(id, seq);
        }
        let run = self.runs.entry(m).or_insert(Run {
            first: seq,
            last: 0,
            count: 0,
        });
        if run.count > 0 {
            if seq <= run.last {
                return Err(format!("{m} delivered position {seq} after {}", run.last));
            }
            if let Some((&(_, p), &(other, _, who))) =
                self.by_pos.range((g, run.last + 1)..(g, seq)).next()
            {
                return Err(format!(
                    "{m} skipped position {p} ({other:#x}, delivered by {who}): went from {} to {seq}",
                    run.last
                ));
            }
        }
        run.last = seq;
        run.count += 1;
        Ok(())
    }

    /// The member's membership ended (its run is kept for the end check).
    pub fn on_stint_end(&mut self, _m: MemberKey) {}

    /// The position a message was delivered at, if any member delivered it.
    pub fn position(&self, id: u64) -> Option<u64> {
        self.pos_of.get(&id).copied()
    }

    /// Positions of `group` delivered by anyone, from `from` on.
    pub fn positions_from(&self, group: u16, from: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.by_pos
            .range((group, from)..(group, u64::MAX))
            .map(|(&(_, p), &(id, _, _))| (p, id))
    }

    /// The first position a member delivered.
    pub fn first_of(&self, m: MemberKey) -> Option<u64> {
        self.runs.get(&m).map(|r| r.first)
    }

    /// Every member's run covers every position delivered in its range.
    pub fn at_end(&self) -> Result<(), String> {
        for (m, r) in &self.runs {
            let known = self
                .by_pos
                .range((m.group, r.first)..=(m.group, r.last))
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
        assert!(t.on_deliver(m(1), 10, 1, 1).is_ok());
        assert!(t.on_deliver(m(1), 11, 1, 2).is_ok());
        assert!(
            t.on_deliver(m(2), 12, 1, 1).is_err(),
            "different message at 1"
        );
        let mut t = TotalOrder::default();
        assert!(t.on_deliver(m(1), 10, 1, 1).is_ok());
        assert!(t.on_deliver(m(1), 11, 1, 2).is_ok());
        assert!(
            t.on_deliver(m(2), 10, 2, 1).is_err(),
            "same message, other view"
        );
        assert!(t.on_deliver(m(3), 10, 1, 1).is_ok());
        assert!(t.on_deliver(m(3), 13, 1, 3).is_err(), "skipped 2");
        let mut t = TotalOrder::default();
        assert!(t.on_deliver(m(1), 10, 1, 1).is_ok());
        assert!(t.on_deliver(m(1), 11, 1, 3).is_ok());
        assert!(t.on_deliver(m(2), 12, 1, 2).is_ok());
        assert!(t.at_end().is_err(), "m1 missed position 2, seen later");
    }
}
