//! The flush applied to one group (see [`crate::membership::flush`] for
//! what it agrees on and why): starting and retargeting it, reporting what
//! we hold, fixing the cut at the new sequencer and taking the order over,
//! and, at a survivor, switching to the new sequencer's order at its cut.

use super::{Command, GroupState};
use crate::ids::{GlobalSeq, NodeId, ViewId};
use crate::membership::flush::{self, Flush, Report};
use crate::order::sequencer::SequencerInput;
use crate::time::Instant;
use crate::wire::datagram::FlushReport;
use crate::wire::directory::View;
use std::net::SocketAddrV4;

impl GroupState {
    /// A view naming another sequencer was proposed: start (or retarget) a
    /// flush. Returns what our sequencer must be told.
    pub(super) fn begin_flush(&mut self, v: &View) -> Option<SequencerInput> {
        let me = self.me.node;
        match &mut self.flush {
            Some(f) => {
                if f.retarget(v, me) {
                    log::info!(
                        "group {}: the flush donor left before we held the cut; cutting again",
                        self.name
                    );
                }
            }
            None => {
                let held = self.order.held_through;
                log::info!(
                    "group {}: sequencer {} is gone; flushing to {} at {held}",
                    self.name,
                    self.views.sequencer,
                    v.sequencer,
                );
                self.flush = Some(Flush::new(v, held));
            }
        }
        if self.is_sequencer {
            self.is_sequencer = false;
            return Some(SequencerInput::Stop { group: self.id });
        }
        None
    }

    /// A survivor's report reached us (we are the new sequencer).
    pub fn on_flush_report(&mut self, r: &FlushReport) {
        let me = self.me.node;
        if let Some(f) = self.flush.as_mut() {
            f.on_report(me, r);
        }
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
        let (held, anchored) = (self.order.held_through, self.order.is_anchored());
        let n = self
            .views
            .latest()?
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
        if self.order.log.start().is_some() || self.views.sequencer == self.me.node {
            return None;
        }
        // The first interval after attaching is the ORDER's to arrive.
        let since = *self.unstarted_report_at.get_or_insert(now);
        if since + self.limits.retransmit > now {
            return None;
        }
        let n = self.views.nodes.get(&self.views.sequencer)?;
        let addr = SocketAddrV4::new(n.ip, n.data_port);
        self.unstarted_report_at = Some(now);
        Some((addr, self.views.latest_id(), GlobalSeq(0), false))
    }

    /// At the new sequencer: once every survivor has reported, fix the cut;
    /// once we hold everything up to it, take over (our sequencer is told
    /// to start).
    pub fn flush_progress(&mut self) {
        if let Some(cmd) = self.flush_step() {
            self.out.push(Command::Sequencer(cmd));
        }
    }

    fn flush_step(&mut self) -> Option<SequencerInput> {
        let me = self.me.node;
        let latest = self.views.latest()?.clone();
        let f = self.flush.as_ref().filter(|f| f.new_sequencer == me)?;
        let survivors = if f.cut.is_none() {
            flush::survivors(&self.views, me, &latest)
        } else {
            Vec::new()
        };
        let own = Report {
            held: self.order.held_through,
            anchored: self.order.is_anchored(),
        };
        let f = self.flush.as_mut()?;
        if f.cut.is_none() {
            if !f.all_reported(&survivors) {
                return None;
            }
            let (cut, donor) = flush::choose_cut(me, own, &survivors, &f.reports);
            f.floor = flush::floor(&survivors, &f.reports, cut);
            f.survivors = survivors;
            log::info!(
                "group {}: flush cut at {cut} (from node {donor})",
                self.name
            );
            f.cut = Some((cut, donor));
            f.limit = cut;
            if self.order.log.start().is_none_or(|s| s > cut.next()) {
                // We never saw the old order (we attached a moment ago), or
                // ours starts past the cut (we had not anchored): we are
                // responsible for nothing before the cut.
                self.restart_order_at(cut);
            }
            self.order.log.expect_through(cut);
            self.order.log.reach_through(cut);
        }
        let f = self.flush.as_mut()?;
        let (cut, _) = f.cut?;
        // Survivors report again as they catch up.
        let now_floor = flush::floor(&f.survivors, &f.reports, cut);
        f.floor = f.floor.max(now_floor);
        // Everything every survivor holds is stable among those who go on
        // (the dead hold nothing any more). Without this, a `safe` message
        // waiting for a stability the dead sequencer will never announce
        // blocks delivery, delivery holds the receive windows, and we could
        // never fetch up to the cut.
        let floor = f.floor.min(self.order.held_through);
        if floor > self.order.log.stable() {
            self.order.log.raise_stable(floor);
            let freed = self.send.release_stable(floor);
            self.flow.on_stable(freed);
        }
        if self.order.held_through < cut {
            return None;
        }
        self.take_over(cut, &latest)
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
        let streams = self.order.takeover_streams(&self.rx);
        for (key, next) in &streams {
            if let Some(s) = self.rx.get_mut(key) {
                s.reported = *next;
            }
        }
        // A cut inside a live sender's message moves the marker past the
        // message's rest; delivery learns where when it reaches it.
        let open = self.order.open_streams(&self.rx, &streams);
        self.order.marker_next = open.is_empty().then_some(GlobalSeq(cut.0 + 2));
        Some(SequencerInput::View {
            group: self.id,
            view: v.view,
            address: SocketAddrV4::new(v.address, v.port),
            members: v.nodes.iter().map(|n| (n.node, n.incarnation)).collect(),
            next: cut.next(),
            streams,
            stable: self.order.log.stable(),
            takeover: true,
            open,
        })
    }

    /// Our order starts over right after `cut`: a joiner whose order began
    /// past a flush cut (it delivered nothing), or a new sequencer that saw
    /// nothing of the old order. The streams' bases come again from the
    /// records of the new order.
    fn restart_order_at(&mut self, cut: GlobalSeq) {
        self.start_order_at(cut.next());
        self.rx.forget_bases();
    }

    /// The order is `sequencer`'s from `cut + 1` on: forget old records past
    /// the cut, and let our own messages ordered past it be ordered again.
    /// The flush ends.
    fn switch_sequencer(&mut self, sequencer: NodeId, cut: GlobalSeq) {
        let since = self
            .flush
            .as_ref()
            .map_or(self.views.sequencer_since, |f| f.view);
        self.follow_sequencer(sequencer, cut, since);
        self.flush = None;
    }

    /// `sequencer` orders the group from `cut + 1` on, since `view`.
    fn follow_sequencer(&mut self, sequencer: NodeId, cut: GlobalSeq, view: ViewId) {
        if self.order.log.start().is_some_and(|s| s > cut.next()) {
            self.restart_order_at(cut);
        }
        self.order.log.truncate_after(cut);
        self.views.sequencer = sequencer;
        self.order.sequencer_start = cut.next();
        self.views.sequencer_since = view;
        self.send.unmark_ordered_after(cut);
        if self.order.held_through > cut {
            self.order.held_through = cut;
        }
        if self.order.scanned > cut.next() {
            self.order.scanned = cut.next();
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
        if sequencer != f.new_sequencer || view < f.since || f.new_sequencer == self.me.node {
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
        let named = self.views.pending().values().find(|v| {
            v.view > self.views.sequencer_since
                && v.view < f.view
                && v.sequencer == sequencer
                && sequencer != me
                && sequencer != f.new_sequencer
        });
        let Some(since) = named.map(|v| v.view) else {
            return false;
        };
        if self.order.log.next() > cut.next() {
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
                self.order.log.expect_through(reach);
                self.order.log.reach_through(reach);
            }
        }
        true
    }
}
