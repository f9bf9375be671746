//! Sequencer failover: the flush that agrees on where the old sequencer's
//! order ends.
//!
//! When the directory names a new sequencer (the old one crashed or left),
//! every survivor freezes delivery at what it holds (`held`: ORDER and DATA
//! for every position up to there) and reports that to the new sequencer's
//! host. The new sequencer waits for every survivor, takes the cut
//! `C = max(held)` — no survivor delivered past its own `held`, so nobody
//! delivered past `C` — catches up to `C` from the survivor that reported
//! it, and then orders on from `C + 1` with the new view's marker. A
//! survivor that sees the new sequencer's first ORDER learns `C` from it
//! (its `sequencer_start` is `C + 1`, the marker's position, in whichever
//! view's ORDER reaches the survivor first), drops any old record past
//! `C`, and fetches what it misses up to `C` from the new sequencer's
//! host. Messages the old sequencer ordered past `C` are ordered again
//! (their senders' streams still hold them), so none is lost or delivered
//! twice.
//!
//! If a survivor dies meanwhile, the next view restarts the collection
//! with the same frozen values; if the new sequencer dies, the reports go
//! to the next one; if the survivor that reported the cut dies before the
//! new sequencer caught up with it, the cut is taken again from those
//! left. A survivor that never saw the ORDER of a new sequencer that died
//! follows that sequencer's order from its cut when its records reach it
//! from a survivor that did (`follow_between` in `host/group/failover.rs`).
//!
//! This module holds the flush's state and its decisions (who survives,
//! where the cut is, what is stable); `host/group/failover.rs` applies them
//! to the group's order and streams.

use super::views::Views;
use crate::ids::{GlobalSeq, NodeId, ViewId};
use crate::time::Instant;
use crate::wire::datagram::FlushReport;
use crate::wire::directory::{NodeInfo, View};
use std::collections::BTreeMap;

/// What a survivor reported: how far it holds the order, and whether it is
/// anchored (everything before its order's start was stable once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub held: GlobalSeq,
    pub anchored: bool,
}

/// A flush in progress at this member.
#[derive(Debug, Clone)]
pub struct Flush {
    /// The latest proposed view with the new sequencer.
    pub view: ViewId,
    /// The first view this flush saw naming `new_sequencer`: its ORDER in
    /// any view from here on is of its tenure (a view's marker may wait at
    /// the sequencer while a sender is inside a large message, so its
    /// ORDER can lag behind `view`).
    pub since: ViewId,
    pub new_sequencer: NodeId,
    /// Delivery stops here until the cut is known (our report).
    pub limit: GlobalSeq,
    pub report_sent_at: Option<Instant>,
    /// At the new sequencer: each survivor's report.
    pub reports: BTreeMap<NodeId, Report>,
    /// At the new sequencer: the cut and who holds everything up to it.
    pub cut: Option<(GlobalSeq, NodeId)>,
    /// At the new sequencer, once the cut is fixed: the lowest report. Every
    /// survivor holds everything up to it.
    pub floor: GlobalSeq,
    /// At the new sequencer, once the cut is fixed: whose reports count.
    pub survivors: Vec<NodeId>,
}

impl Flush {
    /// A flush towards `v`'s sequencer, delivery frozen at `limit` (what we hold).
    pub fn new(v: &View, limit: GlobalSeq) -> Flush {
        Flush {
            view: v.view,
            since: v.view,
            new_sequencer: v.sequencer,
            limit,
            report_sent_at: None,
            reports: BTreeMap::new(),
            cut: None,
            floor: GlobalSeq(0),
            survivors: Vec::new(),
        }
    }

    /// A later view while the flush runs: it may name another new
    /// sequencer, or lose the survivor that held the cut. Returns true when
    /// the cut must be taken again for the latter reason.
    pub fn retarget(&mut self, v: &View, me: NodeId) -> bool {
        self.view = v.view;
        if self.new_sequencer != v.sequencer {
            self.since = v.view;
        }
        self.new_sequencer = v.sequencer;
        self.report_sent_at = None;
        if self.new_sequencer != me {
            self.cut = None;
        }
        // The survivor that held the cut is gone before we caught up with
        // it: what only it held is lost with it, and no survivor delivered
        // past its own report, so the cut is taken again from those left
        // (sim seed 19896).
        let in_view = |n: &NodeId| v.nodes.iter().any(|p| p.node == *n);
        if self.cut.is_some_and(|(_, donor)| !in_view(&donor)) {
            self.cut = None;
            self.reports.retain(|n, _| in_view(n));
            return true;
        }
        false
    }

    /// A survivor's report reached us; counted only at the new sequencer.
    pub fn on_report(&mut self, me: NodeId, r: &FlushReport) {
        if self.new_sequencer != me {
            return;
        }
        let e = self.reports.entry(r.from).or_insert(Report {
            held: r.held,
            anchored: r.anchored,
        });
        // A survivor that anchored meanwhile stays so; held only grows.
        *e = Report {
            held: e.held.max(r.held),
            anchored: e.anchored || r.anchored,
        };
    }

    /// At the new sequencer, once the cut is fixed: everything up to it must
    /// be held whatever the windows say.
    pub fn reach(&self) -> Option<GlobalSeq> {
        self.cut.map(|(cut, _)| cut)
    }

    /// Where to fetch what we miss during a flush at the new sequencer: the
    /// survivor that reported the cut.
    pub fn donor(&self, me: NodeId) -> Option<NodeId> {
        self.cut.map(|(_, d)| d).filter(|d| *d != me)
    }

    /// Who repairs ORDER records and departed senders' messages during a
    /// flush: at the new sequencer, the donor; at a survivor, the new
    /// sequencer's host (the old sequencer is gone, and the new one gathers
    /// everything up to the cut). A survivor that catches up reports more,
    /// which raises the stability floor the new sequencer may need to move
    /// its own windows.
    pub fn repairer(&self, me: NodeId) -> Option<NodeId> {
        if self.new_sequencer == me {
            self.donor(me)
        } else {
            Some(self.new_sequencer)
        }
    }

    /// True once every survivor has reported.
    pub fn all_reported(&self, survivors: &[NodeId]) -> bool {
        survivors.iter().all(|n| self.reports.contains_key(n))
    }
}

/// The nodes whose reports the cut needs: every node of `latest` (but
/// `me`) that took part in the old sequencer's order. That is a node
/// present, with the same incarnation, in every view from the installed
/// one or from a proposed view that the old sequencer still ordered,
/// through `latest`. A node whose run of views begins in a view that
/// already names us is a joiner: its first view installs the new order,
/// it is in no flush and reports nothing.
///
/// Members that joined in views proposed but not yet installed here are
/// survivors too: they may hold (and have delivered) positions past any
/// other report, so the cut must wait for them.
pub fn survivors(views: &Views, me: NodeId, latest: &View) -> Vec<NodeId> {
    latest
        .nodes
        .iter()
        .filter(|n| n.node != me)
        .filter(|n| {
            let present = |nodes: &[NodeInfo]| {
                nodes
                    .iter()
                    .any(|p| p.node == n.node && p.incarnation == n.incarnation)
            };
            // Walk back from the latest view while the node is present;
            // the earliest view of that run tells whether it joined
            // under the old order.
            let mut first_sequencer = None;
            for v in views.pending().values().rev() {
                if !present(&v.nodes) {
                    return first_sequencer.is_some_and(|s| s != me);
                }
                first_sequencer = Some(v.sequencer);
            }
            let in_installed = views
                .nodes
                .get(&n.node)
                .is_some_and(|p| p.incarnation == n.incarnation);
            in_installed || first_sequencer.is_some_and(|s| s != me)
        })
        .map(|n| n.node)
        .collect()
}

/// The cut, once every survivor reported, and the node that holds
/// everything up to it: the most any anchored survivor (or we, `own`)
/// holds. A survivor that is not anchored (a joiner whose order starts at
/// its view) may hold positions past a hole that only the dead sequencer
/// filled, so it cannot be the donor; it delivered nothing, and starts over
/// after the cut if its order starts past it.
pub fn choose_cut(
    me: NodeId,
    own: Report,
    survivors: &[NodeId],
    reports: &BTreeMap<NodeId, Report>,
) -> (GlobalSeq, NodeId) {
    let mut cut = if own.anchored { own.held } else { GlobalSeq(0) };
    let mut donor = me;
    for n in survivors {
        if let Some(&Report {
            held,
            anchored: true,
        }) = reports.get(n)
        {
            if held > cut {
                (cut, donor) = (held, *n);
            }
        }
    }
    if cut.0 == 0 {
        // Nobody anchored survives: every survivor joined a moment ago and
        // delivered nothing; our order goes on where it is.
        cut = own.held;
    }
    (cut, donor)
}

/// What every survivor that goes on holds: the least report, each taken up
/// to the cut. Held through 0: its order has not started, so it is
/// responsible only from the cut on. A survivor whose order starts past the
/// cut starts over there, and its report (past the cut) does not lower the
/// floor; one that starts before it does, anchored or not.
pub fn floor(
    survivors: &[NodeId],
    reports: &BTreeMap<NodeId, Report>,
    cut: GlobalSeq,
) -> GlobalSeq {
    survivors
        .iter()
        .filter_map(|n| reports.get(n))
        .filter(|r| r.held.0 > 0)
        .map(|r| r.held.min(cut))
        .min()
        .unwrap_or(cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reports(rs: &[(u32, u64, bool)]) -> BTreeMap<NodeId, Report> {
        rs.iter()
            .map(|&(n, h, a)| {
                (
                    NodeId(n),
                    Report {
                        held: GlobalSeq(h),
                        anchored: a,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn the_cut_is_the_most_an_anchored_survivor_holds() {
        let me = NodeId(1);
        let own = Report {
            held: GlobalSeq(40),
            anchored: true,
        };
        let survivors = [NodeId(2), NodeId(3), NodeId(4)];
        // Node 4 holds the most but is not anchored: it cannot donate.
        let r = reports(&[(2, 55, true), (3, 47, true), (4, 90, false)]);
        assert_eq!(
            choose_cut(me, own, &survivors, &r),
            (GlobalSeq(55), NodeId(2))
        );
        // Every survivor holds at least the floor (up to the cut).
        assert_eq!(floor(&survivors, &r, GlobalSeq(55)), GlobalSeq(47));
        // We hold the most ourselves: we are the donor.
        let own = Report {
            held: GlobalSeq(60),
            anchored: true,
        };
        assert_eq!(choose_cut(me, own, &survivors, &r), (GlobalSeq(60), me));
    }

    #[test]
    fn with_nobody_anchored_the_order_goes_on_where_it_is() {
        let own = Report {
            held: GlobalSeq(7),
            anchored: false,
        };
        let r = reports(&[(2, 0, false)]);
        assert_eq!(
            choose_cut(NodeId(1), own, &[NodeId(2)], &r),
            (GlobalSeq(7), NodeId(1))
        );
        // A survivor holding nothing does not lower the floor.
        assert_eq!(floor(&[NodeId(2)], &r, GlobalSeq(7)), GlobalSeq(7));
    }
}
