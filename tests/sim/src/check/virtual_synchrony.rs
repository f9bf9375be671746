//! Virtual synchrony, as far as the protocol promises it today.
//!
//! What is asserted:
//! - View agreement: every member told view `v` of a group is told the same
//!   member list.
//! - Views only move forward at a member, and every message a member is
//!   delivered carries the view the member is in (the last one it was told).
//! - Same set per transition: members that both install view `v` and then,
//!   as their next view, the same view `w`, were delivered exactly the same
//!   set of messages while in `v` (compared by count and an order-free
//!   digest of the ids). The sequencer marks each view change at a position
//!   in the total order and members install the view when their delivery
//!   reaches it, so this holds whenever the sequencer survives the change.
//!
//! Views are named by (group, life, view id): a restarted directory that no
//! node told of a group numbers its views from 1 again, a new life of the
//! group (see `Checks::on_view_issued`).
//!
//! What is not asserted: members whose stint ends (leave or app disconnect)
//! in `v` are not compared with those that move on.

use super::MemberKey;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy)]
struct InView {
    view: u64,
    count: u64,
    digest: u64,
}

/// A move from one view to the next: (group, life, from, to).
type Transition = (u16, u64, u64, u64);

/// Views and per-view delivery sets.
#[derive(Debug, Default)]
pub struct VirtualSynchrony {
    views: BTreeMap<(u16, u64, u64), (Vec<String>, MemberKey)>,
    current: BTreeMap<MemberKey, InView>,
    /// (group, life, from view, to view) to the first mover's (count,
    /// digest, key).
    transitions: BTreeMap<Transition, (u64, u64, MemberKey)>,
    first: BTreeMap<MemberKey, u64>,
}

fn mix(id: u64) -> u64 {
    let mut s = id;
    crate::rng::splitmix64(&mut s)
}

impl VirtualSynchrony {
    /// A member was told view `view` of the group's life `e`, with
    /// `members`.
    pub fn on_view(
        &mut self,
        m: MemberKey,
        e: u64,
        view: u64,
        members: &[String],
    ) -> Result<(), String> {
        let g = m.group;
        match self.views.get(&(g, e, view)) {
            Some((list, who)) if list.as_slice() != members => {
                return Err(format!(
                    "group {g} view {view}: {m} was told [{}], {who} was told [{}]",
                    members.join(" "),
                    list.join(" ")
                ));
            }
            Some(_) => {}
            None => {
                self.views.insert((g, e, view), (members.to_vec(), m));
            }
        }
        self.first.entry(m).or_insert(view);
        let fresh = InView {
            view,
            count: 0,
            digest: 0,
        };
        let Some(prev) = self.current.insert(m, fresh) else {
            return Ok(());
        };
        if view <= prev.view {
            return Err(format!("{m} was told view {view} after view {}", prev.view));
        }
        let key = (g, e, prev.view, view);
        match self.transitions.get(&key) {
            Some(&(count, digest, who)) if (count, digest) != (prev.count, prev.digest) => Err(format!(
                "group {g}: {m} and {who} both moved from view {} to {view} but delivered different sets in view {} ({} vs {count} messages)",
                prev.view, prev.view, prev.count
            )),
            Some(_) => Ok(()),
            None => {
                self.transitions.insert(key, (prev.count, prev.digest, m));
                Ok(())
            }
        }
    }

    /// A delivery labelled with `view`.
    pub fn on_deliver(&mut self, m: MemberKey, id: u64, view: u64) -> Result<(), String> {
        let Some(cur) = self.current.get_mut(&m) else {
            return Err(format!(
                "{m} was delivered {id:#x} before it was told any view"
            ));
        };
        if cur.view != view {
            return Err(format!(
                "{m} is in view {} but was delivered {id:#x} labelled view {view}",
                cur.view
            ));
        }
        cur.count += 1;
        cur.digest = cur.digest.wrapping_add(mix(id));
        Ok(())
    }

    /// The membership ended; its last view is not compared.
    pub fn on_stint_end(&mut self, m: MemberKey) {
        self.current.remove(&m);
    }

    /// The first view a member was told.
    pub fn first_view_of(&self, m: MemberKey) -> Option<u64> {
        self.first.get(&m).copied()
    }

    /// The view a member is in now.
    pub fn view_of(&self, m: MemberKey) -> Option<u64> {
        self.current.get(&m).map(|c| c.view)
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
    fn members_moving_together_must_agree() {
        let mut vs = VirtualSynchrony::default();
        let l = vec!["n0:a0".to_owned()];
        for a in [1, 2] {
            assert!(vs.on_view(m(a), 1, 1, &l).is_ok());
        }
        assert!(vs.on_deliver(m(1), 5, 1).is_ok());
        assert!(vs.on_deliver(m(2), 5, 1).is_ok());
        assert!(vs.on_deliver(m(1), 6, 1).is_ok());
        assert!(vs.on_view(m(1), 1, 2, &l).is_ok());
        assert!(
            vs.on_view(m(2), 1, 2, &l).is_err(),
            "m2 missed message 6 in view 1"
        );
        assert!(
            vs.on_view(m(3), 1, 2, &["x".to_owned()]).is_err(),
            "other member list"
        );
        assert!(vs.on_deliver(m(1), 7, 1).is_err(), "label of an old view");
    }
}
