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
//! from a survivor that did (`follow_between`).

use super::GroupState;
use crate::ids::{GlobalSeq, NodeId, ViewId};
use crate::order::sequencer::SequencerInput;
use crate::time::Instant;
use crate::wire::datagram::FlushReport;
use crate::wire::directory::View;
use std::collections::BTreeMap;
use std::net::SocketAddrV4;

/// A flush in progress at this member.
#[derive(Debug, Clone)]
pub struct Flush {
    /// The latest proposed view with the new sequencer.
    pub view: ViewId,
    pub new_sequencer: NodeId,
    /// Delivery stops here until the cut is known (our report).
    pub limit: GlobalSeq,
    pub report_sent_at: Option<Instant>,
    /// At the new sequencer: each survivor's report (held, anchored).
    pub reports: BTreeMap<NodeId, (GlobalSeq, bool)>,
    /// At the new sequencer: the cut and who holds everything up to it.
    pub cut: Option<(GlobalSeq, NodeId)>,
    /// At the new sequencer, once the cut is fixed: the lowest report. Every
    /// survivor holds everything up to it.
    pub floor: GlobalSeq,
    /// At the new sequencer, once the cut is fixed: whose reports count.
    pub survivors: Vec<NodeId>,
}

impl GroupState {
    /// A view naming another sequencer was proposed: start (or retarget) a flush.
    pub(super) fn begin_flush(&mut self, v: &View) -> Option<SequencerInput> {
        match &mut self.flush {
            Some(f) => {
                f.view = v.view;
                f.new_sequencer = v.sequencer;
                f.report_sent_at = None;
                if f.new_sequencer != self.me.node {
                    f.cut = None;
                }
                // The survivor that held the cut is gone before we caught
                // up with it: what only it held is lost with it, and no
                // survivor delivered past its own report, so the cut is
                // taken again from those left (sim seed 19896).
                let in_view = |n: &NodeId| v.nodes.iter().any(|p| p.node == *n);
                if f.cut.is_some_and(|(_, donor)| !in_view(&donor)) {
                    log::info!(
                        "group {}: the flush donor left before we held the cut; cutting again",
                        self.name
                    );
                    f.cut = None;
                    f.reports.retain(|n, _| in_view(n));
                }
            }
            None => {
                log::info!(
                    "group {}: sequencer {} is gone; flushing to {} at {}",
                    self.name,
                    self.sequencer,
                    v.sequencer,
                    self.held_through
                );
                self.flush = Some(Flush {
                    view: v.view,
                    new_sequencer: v.sequencer,
                    limit: self.held_through,
                    report_sent_at: None,
                    reports: BTreeMap::new(),
                    cut: None,
                    floor: GlobalSeq(0),
                    survivors: Vec::new(),
                });
            }
        }
        if self.is_sequencer {
            self.is_sequencer = false;
            return Some(SequencerInput::Stop { group: self.id });
        }
        None
    }

    /// The nodes whose reports the cut needs: every node of `latest` (but
    /// us) that took part in the old sequencer's order. That is a node
    /// present, with the same incarnation, in every view from the installed
    /// one or from a proposed view that the old sequencer still ordered,
    /// through `latest`. A node whose run of views begins in a view that
    /// already names us is a joiner: its first view installs the new order,
    /// it is in no flush and reports nothing.
    ///
    /// Members that joined in views proposed but not yet installed here are
    /// survivors too: they may hold (and have delivered) positions past any
    /// other report, so the cut must wait for them.
    fn flush_survivors(&self, latest: &View) -> Vec<NodeId> {
        let me = self.me.node;
        latest
            .nodes
            .iter()
            .filter(|n| n.node != me)
            .filter(|n| {
                let present = |nodes: &[crate::wire::directory::NodeInfo]| {
                    nodes
                        .iter()
                        .any(|p| p.node == n.node && p.incarnation == n.incarnation)
                };
                // Walk back from the latest view while the node is present;
                // the earliest view of that run tells whether it joined
                // under the old order.
                let mut first_sequencer = None;
                for v in self.pending_views.values().rev() {
                    if !present(&v.nodes) {
                        return first_sequencer.is_some_and(|s| s != me);
                    }
                    first_sequencer = Some(v.sequencer);
                }
                let in_installed = self
                    .nodes
                    .get(&n.node)
                    .is_some_and(|p| p.incarnation == n.incarnation);
                in_installed || first_sequencer.is_some_and(|s| s != me)
            })
            .map(|n| n.node)
            .collect()
    }

    /// Where delivery must stop for now.
    pub(super) fn delivery_limit(&self) -> Option<GlobalSeq> {
        self.flush.as_ref().map(|f| f.limit)
    }

    /// A survivor's report reached us (we are the new sequencer).
    pub fn on_flush_report(&mut self, r: &FlushReport) {
        if let Some(f) = self
            .flush
            .as_mut()
            .filter(|f| f.new_sequencer == self.me.node)
        {
            let e = f.reports.entry(r.from).or_insert((r.held, r.anchored));
            // A survivor that anchored meanwhile stays so; held only grows.
            *e = (e.0.max(r.held), e.1 || r.anchored);
        }
    }

    pub(super) fn latest_view(&self) -> Option<&View> {
        self.pending_views.values().next_back()
    }

    /// The report to send now, if due (survivors only).
    pub(super) fn flush_report_due(
        &mut self,
        now: Instant,
    ) -> Option<(SocketAddrV4, ViewId, GlobalSeq, bool)> {
        let rto = self.limits.retransmit;
        let me = self.me.node;
        let Some(f) = self.flush.as_ref() else {
            return self.unstarted_report_due(now);
        };
        if f.new_sequencer == me || f.report_sent_at.is_some_and(|t| t + rto > now) {
            return None;
        }
        // What we hold now: the cut may only grow with it, and the floor
        // the new sequencer counts as stable rises as we catch up. Not our
        // delivery limit, which a former new sequencer set to its cut.
        let (view, target) = (f.view, f.new_sequencer);
        let (held, anchored) = (self.held_through, self.is_anchored());
        let n = self
            .latest_view()?
            .nodes
            .iter()
            .find(|n| n.node == target)?;
        let addr = SocketAddrV4::new(n.ip, n.data_port);
        if let Some(f) = self.flush.as_mut() {
            f.report_sent_at = Some(now);
        }
        Some((addr, view, held, anchored))
    }

    /// A member whose order has not started (it attached a moment ago, and
    /// no ORDER of its view has reached it) tells its view's sequencer host
    /// that it holds nothing (held 0), once per retransmission interval.
    /// That host may be a new sequencer in a flush that counts us as a
    /// survivor: the same node and incarnation took part in the old order,
    /// left (its members gone, detached) and attached again while no view
    /// recorded the gap (a restarted directory publishes one view for all
    /// that happened while it recovered). The old attachment delivered only
    /// what was stable, so nothing before the new view's start is ours, and
    /// without this report the flush would wait for us forever.
    fn unstarted_report_due(
        &mut self,
        now: Instant,
    ) -> Option<(SocketAddrV4, ViewId, GlobalSeq, bool)> {
        if self.order.start().is_some() || self.sequencer == self.me.node {
            return None;
        }
        // The first interval after attaching is the ORDER's to arrive.
        let since = *self.unstarted_report_at.get_or_insert(now);
        if since + self.limits.retransmit > now {
            return None;
        }
        let n = self.nodes.get(&self.sequencer)?;
        let addr = SocketAddrV4::new(n.ip, n.data_port);
        self.unstarted_report_at = Some(now);
        Some((addr, self.latest_view_id(), GlobalSeq(0), false))
    }

    /// Who repairs ORDER records and departed senders' messages during a
    /// flush: at the new sequencer, the donor; at a survivor, the new
    /// sequencer's host (the old sequencer is gone, and the new one gathers
    /// everything up to the cut). A survivor that catches up reports more,
    /// which raises the stability floor the new sequencer may need to move
    /// its own windows.
    pub(super) fn flush_repairer(&self) -> Option<NodeId> {
        let f = self.flush.as_ref()?;
        if f.new_sequencer == self.me.node {
            self.flush_donor()
        } else {
            Some(f.new_sequencer)
        }
    }

    /// At the new sequencer, once the cut is fixed: everything up to it must
    /// be held whatever the windows say.
    pub(super) fn flush_reach(&self) -> Option<GlobalSeq> {
        self.flush.as_ref()?.cut.map(|(cut, _)| cut)
    }

    /// Where to fetch what we miss during a flush at the new sequencer: the
    /// survivor that reported the cut.
    pub(super) fn flush_donor(&self) -> Option<NodeId> {
        let f = self.flush.as_ref()?;
        f.cut.map(|(_, d)| d).filter(|d| *d != self.me.node)
    }

    /// At the new sequencer: once every survivor has reported, fix the cut;
    /// once we hold everything up to it, take over. Returns the input that
    /// starts our sequencer.
    pub fn flush_progress(&mut self) -> Option<SequencerInput> {
        let me = self.me.node;
        let latest = self.latest_view()?.clone();
        let f = self.flush.as_ref().filter(|f| f.new_sequencer == me)?;
        let survivors = if f.cut.is_none() {
            self.flush_survivors(&latest)
        } else {
            Vec::new()
        };
        let (held_through, anchored) = (self.held_through, self.is_anchored());
        let f = self.flush.as_mut()?;
        if f.cut.is_none() {
            if !survivors.iter().all(|n| f.reports.contains_key(n)) {
                return None;
            }
            // The cut: the most any anchored survivor holds. A survivor
            // that is not anchored (a joiner whose order starts at its view)
            // may hold positions past a hole that only the dead sequencer
            // filled, so it cannot be the donor; it delivered nothing, and
            // starts over after the cut if its order starts past it.
            let mut cut = if anchored { held_through } else { GlobalSeq(0) };
            let mut donor = me;
            for n in &survivors {
                if let Some(&(h, true)) = f.reports.get(n) {
                    if h > cut {
                        (cut, donor) = (h, *n);
                    }
                }
            }
            if cut.0 == 0 {
                // Nobody anchored survives: every survivor joined a moment
                // ago and delivered nothing; our order goes on where it is.
                cut = held_through;
            }
            let floor = Self::flush_floor(&survivors, &f.reports, cut);
            f.floor = floor;
            f.survivors = survivors;
            log::info!(
                "group {}: flush cut at {cut} (from node {donor})",
                self.name
            );
            f.cut = Some((cut, donor));
            f.limit = cut;
            if self.order.start().is_none_or(|s| s > cut.next()) {
                // We never saw the old order (we attached a moment ago), or
                // ours starts past the cut (we had not anchored): we are
                // responsible for nothing before the cut.
                self.restart_order_at(cut);
            }
            self.order.expect_through(cut);
            self.order.reach_through(cut);
        }
        let f = self.flush.as_mut()?;
        let (cut, _) = f.cut?;
        // Survivors report again as they catch up.
        let now_floor = Self::flush_floor(&f.survivors, &f.reports, cut);
        f.floor = f.floor.max(now_floor);
        // Everything every survivor holds is stable among those who go on
        // (the dead hold nothing any more). Without this, a `safe` message
        // waiting for a stability the dead sequencer will never announce
        // blocks delivery, delivery holds the receive windows, and we could
        // never fetch up to the cut.
        let floor = f.floor.min(self.held_through);
        if floor > self.order.stable() {
            self.order.raise_stable(floor);
            self.send.release_stable(floor);
        }
        if self.held_through < cut {
            return None;
        }
        self.take_over(cut, &latest)
    }

    /// What every survivor that goes on holds: the least report, each
    /// taken up to the cut. Held through 0: its order has not started, so
    /// it is responsible only from the cut on. A survivor whose order starts
    /// past the cut starts over there, and its report (past the cut) does
    /// not lower the floor; one that starts before it does, anchored or not.
    fn flush_floor(
        survivors: &[NodeId],
        reports: &BTreeMap<NodeId, (GlobalSeq, bool)>,
        cut: GlobalSeq,
    ) -> GlobalSeq {
        survivors
            .iter()
            .filter_map(|n| reports.get(n))
            .filter(|(h, _)| h.0 > 0)
            .map(|(h, _)| (*h).min(cut))
            .min()
            .unwrap_or(cut)
    }

    fn take_over(&mut self, cut: GlobalSeq, v: &View) -> Option<SequencerInput> {
        log::info!(
            "group {}: sequencing from {} in view {}",
            self.name,
            cut.next(),
            v.view
        );
        self.switch_sequencer(self.me.node, cut);
        self.is_sequencer = true;
        self.marker_next = Some(GlobalSeq(cut.0 + 2));
        let streams = self.takeover_streams();
        for (key, next) in &streams {
            if let Some(s) = self.streams.get_mut(key) {
                s.reported = *next;
            }
        }
        Some(SequencerInput::View {
            group: self.id,
            view: v.view,
            address: SocketAddrV4::new(v.address, v.port),
            members: v.nodes.iter().map(|n| (n.node, n.incarnation)).collect(),
            next: cut.next(),
            streams,
            stable: self.order.stable(),
            takeover: true,
        })
    }

    /// Our order starts over right after `cut`: a joiner whose order began
    /// past a flush cut (it delivered nothing), or a new sequencer that saw
    /// nothing of the old order. The streams' bases come again from the
    /// records of the new order.
    fn restart_order_at(&mut self, cut: GlobalSeq) {
        self.start_order_at(cut.next());
        for s in self.streams.values_mut() {
            s.forget_base();
        }
    }

    /// The order is `sequencer`'s from `cut + 1` on: forget old records past
    /// the cut, and let our own messages ordered past it be ordered again.
    /// The flush ends.
    pub(super) fn switch_sequencer(&mut self, sequencer: NodeId, cut: GlobalSeq) {
        let since = self.flush.as_ref().map_or(self.sequencer_since, |f| f.view);
        self.follow_sequencer(sequencer, cut, since);
        self.flush = None;
    }

    /// `sequencer` orders the group from `cut + 1` on, since `view`.
    fn follow_sequencer(&mut self, sequencer: NodeId, cut: GlobalSeq, view: ViewId) {
        if self.order.start().is_some_and(|s| s > cut.next()) {
            self.restart_order_at(cut);
        }
        self.order.truncate_after(cut);
        self.sequencer = sequencer;
        self.sequencer_start = cut.next();
        self.sequencer_since = view;
        self.send.unmark_ordered_after(cut);
        if self.held_through > cut {
            self.held_through = cut;
        }
        if self.scanned > cut.next() {
            self.scanned = cut.next();
        }
    }

    /// A survivor sees the new sequencer's ORDER: the cut is in it. Or it
    /// sees the ORDER of a sequencer between ours and the new one, which
    /// took the order over and died before we heard from it.
    pub(super) fn maybe_switch(
        &mut self,
        sequencer: NodeId,
        view: ViewId,
        sequencer_start: GlobalSeq,
    ) -> bool {
        let Some(f) = self.flush.as_ref() else {
            return false;
        };
        let cut = GlobalSeq(sequencer_start.0.saturating_sub(1));
        if sequencer != f.new_sequencer || view < f.view || f.new_sequencer == self.me.node {
            return self.follow_between(sequencer, cut);
        }
        log::info!(
            "group {}: new sequencer {sequencer} cuts the old order at {cut}",
            self.name
        );
        self.switch_sequencer(sequencer, cut);
        true
    }

    /// Our sequencer died; the next one took the order over at `cut`, and
    /// died too before we saw its ORDER. Some survivors did, and hold its
    /// records past the cut, so the flush now under way may cut there: we
    /// follow that order from its cut (its records reach us as repairs) and
    /// the flush goes on (sim seed 26053). Nothing is delivered past a cut
    /// a survivor could not know, so ours lies at or before `cut`.
    fn follow_between(&mut self, sequencer: NodeId, cut: GlobalSeq) -> bool {
        let Some(f) = self.flush.as_ref() else {
            return false;
        };
        let me = self.me.node;
        let named = self.pending_views.values().find(|v| {
            v.view > self.sequencer_since
                && v.view < f.view
                && v.sequencer == sequencer
                && sequencer != me
                && sequencer != f.new_sequencer
        });
        let Some(since) = named.map(|v| v.view) else {
            return false;
        };
        if self.order.next() > cut.next() {
            log::warn!(
                "group {}: sequencer {sequencer} cut the order at {cut}, before what we delivered; its ORDER is ignored",
                self.name
            );
            return false;
        }
        log::info!(
            "group {}: sequencer {sequencer}, gone too, had cut the old order at {cut}",
            self.name
        );
        self.follow_sequencer(sequencer, cut, since);
        if let Some(f) = self.flush.as_mut() {
            f.limit = f.limit.min(cut);
            f.report_sent_at = None;
            if let Some((reach, _)) = f.cut {
                self.order.expect_through(reach);
                self.order.reach_through(reach);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::group::{Control, GroupLimits};
    use crate::ids::{GroupId, Incarnation, SenderSeq};
    use crate::multicast::StreamKey;
    use crate::time::Duration;
    use crate::wire::directory::NodeInfo;
    use std::net::Ipv4Addr;

    const RTO: Duration = Duration::from_millis(50);

    fn limits() -> GroupLimits {
        GroupLimits {
            send_window: 16,
            receive_window: 64,
            retransmit: RTO,
            ack_refresh: Duration::from_millis(500),
            planted: Default::default(),
        }
    }

    fn node(n: u32) -> NodeInfo {
        NodeInfo {
            node: NodeId(n),
            name: format!("h{n}"),
            incarnation: Incarnation(1),
            ip: Ipv4Addr::new(127, 0, 1, n as u8),
            data_port: 7001,
            order_port: 7002,
        }
    }

    fn view(id: u64, sequencer: u32, nodes: &[u32]) -> View {
        View {
            group: GroupId(1),
            group_name: "g".into(),
            address: Ipv4Addr::new(239, 1, 1, 1),
            port: 7400,
            view: ViewId(id),
            sequencer: NodeId(sequencer),
            members: Vec::new(),
            nodes: nodes.iter().map(|&n| node(n)).collect(),
        }
    }

    fn attach(me: u32, v: &View) -> GroupState {
        let key = StreamKey {
            node: NodeId(me),
            incarnation: Incarnation(1),
        };
        let mut g = GroupState::new(v, key, SenderSeq(1), limits());
        let _ = g.install(v);
        g
    }

    /// Regression (sim seed 1782 with process faults): node 4 left the
    /// group and attached again, same incarnation, while a restarted
    /// directory recovered, so the new sequencer's installed view (8) and
    /// the recovered one (9) both list it and the flush counts it as a
    /// survivor. Its fresh attachment must say it holds nothing, or the
    /// flush waits for its report forever.
    #[test]
    fn a_member_attached_again_unseen_reports_holding_nothing() {
        let mut new_seq = attach(1, &view(8, 3, &[1, 3, 4]));
        assert_eq!(new_seq.propose(view(9, 1, &[1, 4])), None);
        assert_eq!(new_seq.flush_progress(), None, "waits for node 4");

        let t = Instant::ZERO + Duration::from_millis(1000);
        let mut joiner = attach(4, &view(9, 1, &[1, 4]));
        let mut out = Vec::new();
        joiner.tick(t, &mut out);
        assert!(out.is_empty(), "the first interval is the ORDER's");
        joiner.tick(t + RTO, &mut out);
        let report = out.iter().find_map(|c| match c {
            Control::FlushReport(to, view, held, _) => Some((*to, *view, *held)),
            _ => None,
        });
        let to = SocketAddrV4::new(Ipv4Addr::new(127, 0, 1, 1), 7001);
        assert_eq!(report, Some((to, ViewId(9), GlobalSeq(0))));

        new_seq.on_flush_report(&FlushReport {
            group: GroupId(1),
            view: ViewId(9),
            from: NodeId(4),
            from_incarnation: Incarnation(1),
            held: GlobalSeq(0),
            anchored: false,
        });
        assert!(matches!(
            new_seq.flush_progress(),
            Some(SequencerInput::View {
                view: ViewId(9),
                ..
            })
        ));
    }
}
