//! One group at one host: the glue between its handlers.
//!
//! A group's state is split by concern: [`Views`] (membership: installed
//! and proposed views), [`SendStream`] and [`Receivers`] (multicast: our
//! stream and everyone's as we hold them), [`Deliverer`] (order: joining
//! DATA with ORDER, acks, repairs of the order) and, while the sequencer
//! changes, a [`Flush`] (`failover.rs`). [`GroupState`] routes each input
//! to them and appends what they want done to one ordered list of
//! [`Command`]s, which the host drains after each input. A unit test can
//! feed inputs and read the exact commands (see `tests.rs`).

use crate::ids::{ClusterId, Frag, GlobalSeq, GroupId, MemberId, Order, SenderSeq, ViewId};
use crate::membership::flush::Flush;
use crate::membership::views::Views;
use crate::multicast::flow::FlowWindow;
use crate::multicast::pack::Packer;
use crate::multicast::receivers::{DataOutcome, Receivers};
use crate::multicast::recv::Held;
use crate::multicast::send::SendStream;
use crate::multicast::StreamKey;
use crate::order::delivery::{Delivered, Deliverer};
use crate::order::repair::OrderRepair;
use crate::order::sequencer::SequencerInput;
use crate::time::{Duration, Instant};
use crate::wire::datagram::{Data, Nak, OrderBatch};
use crate::wire::directory::{NodeInfo, View};
use bytes::Bytes;
use std::net::SocketAddrV4;
use std::sync::Arc;

mod failover;
#[cfg(test)]
mod tests;

pub use crate::order::delivery::Delivery;

/// How long fewer senders must be seen in flight before a flow share grows.
const SENDERS_HOLD: Duration = Duration::from_millis(200);

/// Bounds and timers a group needs (from the host's settings).
#[derive(Debug, Clone, Copy)]
pub struct GroupLimits {
    pub send_window: usize,
    pub receive_window: usize,
    pub retransmit: Duration,
    /// How often an unchanged ORDER_ACK is repeated (so a restarted or
    /// recovering sequencer relearns where we are).
    pub ack_refresh: Duration,
    /// What receivers can buffer for the group, shared by its senders.
    pub flow_budget_bytes: usize,
    /// A datagram's size (the flow window's unit).
    pub max_datagram_bytes: usize,
    /// The most pieces one message of ours may be split into: our own
    /// stream holds a whole message past the send capacity.
    pub max_message_pieces: usize,
    /// The most pieces a peer's message in this group may take: every
    /// other stream holds a whole message past the receive window. A
    /// message's rest must always be taken in: the next view's marker may
    /// wait for it, and the delivery that would free the window may wait
    /// for that view (a member that acks only once it has its start).
    pub peer_message_pieces: usize,
    /// Test-only bugs (see [`crate::host::planted`]).
    pub planted: crate::host::planted::Planted,
}

/// Something a group wants sent as a unicast control datagram (the host
/// encodes it: it knows the node's id and the cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// NAK to a sender's data address.
    DataNak(SocketAddrV4, Nak),
    /// ORDER_ACK (cumulative) to the sequencer.
    OrderAck(SocketAddrV4, GlobalSeq),
    /// ORDER_NAK to the sequencer.
    OrderNak(SocketAddrV4, Vec<(GlobalSeq, GlobalSeq)>),
    /// A flush report: to, view, held, anchored.
    FlushReport(SocketAddrV4, ViewId, GlobalSeq, bool),
}

/// What a group wants done, in the order it must be done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// An input for this node's sequencer.
    Sequencer(SequencerInput),
    /// A datagram packed here (DATA, or ORDER repairs) to send as it is.
    Transmit(SocketAddrV4, Vec<u8>),
    /// A control datagram for the host to encode and send.
    Control(Control),
    /// A message for the group's local members.
    Deliver(Delivery),
    /// The order reached this view's marker: the host installs it (it is
    /// always the last command of a delivery run).
    InstallView(ViewId),
}

/// A group this host takes part in.
#[derive(Debug)]
pub struct GroupState {
    pub id: GroupId,
    /// Shared with every delivery to the group's members (no copy each).
    pub name: Arc<str>,
    me: StreamKey,
    limits: GroupLimits,
    /// Membership: the installed view and those proposed.
    pub views: Views,
    /// Our own stream.
    pub send: SendStream,
    /// How much of our stream may be in flight.
    flow: FlowWindow,
    /// Every sender's stream as we hold it.
    rx: Receivers,
    /// The order and what we delivered of it.
    order: Deliverer,
    /// A change of sequencer in progress.
    flush: Option<Flush>,
    is_sequencer: bool,
    /// Detach was asked for; the directory's GroupEnded ends the group.
    pub detach_sent: bool,
    /// When DATA of ours last went out for the first time (bundling).
    last_data_at: Option<Instant>,
    /// The senders the flow share is divided by, and when that many were
    /// last seen in flight (see `update_flow_share`).
    senders: (usize, Option<Instant>),
    /// When we last said, our order not started yet, that we hold nothing
    /// (see `failover.rs`, `unstarted_report_due`).
    unstarted_report_at: Option<Instant>,
    out: Vec<Command>,
}

impl GroupState {
    /// A group joined in view `v.view`; our stream continues at `stream_start`.
    pub fn new(v: &View, me: StreamKey, stream_start: SenderSeq, limits: GroupLimits) -> Self {
        let mut g = GroupState {
            id: v.group,
            name: v.group_name.as_str().into(),
            me,
            limits,
            views: Views::new(v),
            send: SendStream::new(stream_start, limits.send_window),
            flow: FlowWindow::new(
                Self::flow_share(&limits, v.nodes.len()),
                limits.max_datagram_bytes,
            ),
            // (until the first tick counts the senders in flight)
            rx: Receivers::new(
                me,
                limits.receive_window,
                limits.send_window,
                limits.max_message_pieces,
                limits.peer_message_pieces,
                limits.planted.no_duplicate_suppression(),
            ),
            order: Deliverer::new(v.view, limits.receive_window),
            flush: None,
            is_sequencer: false,
            detach_sent: false,
            unstarted_report_at: None,
            last_data_at: None,
            senders: (v.nodes.len().max(1), None),
            out: Vec::new(),
        };
        // Our own stream begins where this attachment's does: records of
        // an earlier attachment's messages (ordered from peers' copies
        // after we were dropped and came back) are not ours to deliver.
        g.rx.stream(me).set_base(stream_start);
        g
    }

    /// What the group wants done since the last call, in order.
    pub fn take_commands(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.out)
    }

    /// Each sender's fair share of the receivers' buffers among `senders`
    /// concurrent senders.
    fn flow_share(limits: &GroupLimits, senders: usize) -> usize {
        limits.flow_budget_bytes / senders.max(1)
    }

    /// The share follows the senders with messages in flight (as the order
    /// shows them): each new one shrinks everybody's share at their next
    /// tick, and a share grows only once fewer senders were seen for
    /// `SENDERS_HOLD` (senders that start together each see only themselves
    /// in flight at first: trusting that, each would take the whole budget).
    /// A group starts by counting every node of its view.
    fn update_flow_share(&mut self, now: Instant) {
        let sending = !self.send.is_empty();
        let seen = self.order.senders_in_flight(self.me, sending).max(1);
        let (counted, since) = self.senders;
        match since {
            _ if seen >= counted => self.senders = (seen, Some(now)),
            None => self.senders.1 = Some(now),
            Some(t) if now >= t + SENDERS_HOLD => self.senders = (seen, Some(now)),
            Some(_) => {}
        }
        self.flow
            .set_share(Self::flow_share(&self.limits, self.senders.0));
    }

    /// Our messages the windows let go now (never-sent positions).
    pub fn sendable(&self) -> Option<(SenderSeq, SenderSeq)> {
        let view_pending = self.views.latest_id() > self.views.view;
        self.send.sendable(self.flow.window(), view_pending)
    }

    /// A sign that our stream lost datagrams (a NAK for it): the window halves, once per repair round. Returns true if
    /// it did.
    pub fn on_loss_signal(&mut self, now: Instant) -> bool {
        let halved = self.flow.on_loss(now, self.limits.retransmit);
        if halved {
            log::debug!(
                "group {}: loss; flow window {} of {} bytes",
                self.id,
                self.flow.window(),
                self.flow.share()
            );
        }
        halved
    }

    /// The flow window (bytes that may be in flight) and its cap.
    pub fn flow_window(&self) -> (usize, usize) {
        (self.flow.window(), self.flow.share())
    }

    /// Our order starts at `start` in the installed view, and we answer
    /// for nothing before it: we start the group's order, or take it over
    /// (see also `restart_order_at`).
    fn start_order_at(&mut self, start: GlobalSeq) {
        self.order.start_order_at(self.views.view, start);
    }

    /// True when this node sequences the group.
    pub fn is_sequencer(&self) -> bool {
        self.is_sequencer
    }

    /// A view from the directory for a group we already take part in: it is
    /// installed when the order reaches its marker. Our sequencer may have
    /// to be told (it places the marker).
    pub fn propose(&mut self, v: View) {
        if self.views.is_pending(v.view) {
            // The directory sends a view again after a rebind: once is enough.
            return;
        }
        if self.views.latest().is_some_and(|l| l.view > v.view) {
            // A view we missed while our link was down, sent after a later
            // one: it is needed only to install it at its marker; the later
            // view already drove the sequencer and any flush.
            self.views.propose(v);
            return;
        }
        let cmd = if v.sequencer != self.views.sequencer || self.flush.is_some() {
            self.begin_flush(&v)
        } else {
            (v.sequencer == self.me.node && self.is_sequencer).then(|| self.sequencer_view(&v))
        };
        self.views.propose(v);
        if let Some(c) = cmd {
            self.out.push(Command::Sequencer(c));
        }
    }

    /// Installs a view now (the first view we see of a group, or a marker
    /// reached); our sequencer may have to be told.
    pub fn install(&mut self, v: &View) {
        self.order.view_start = self.order.marker_next.take();
        if !self.views.install(v) {
            // An older view reached at its marker after a flush moved the
            // order to a newer view's sequencer: that one stays.
            return;
        }
        let now_seq = v.sequencer == self.me.node;
        if now_seq && !self.is_sequencer {
            self.is_sequencer = true;
            if self.order.log.start().is_none() {
                // We start the group's order (or take it over knowing nothing).
                self.start_order_at(GlobalSeq(self.order.log.highest_known().0 + 1));
            }
        } else if !now_seq && self.is_sequencer {
            self.is_sequencer = false;
            self.out
                .push(Command::Sequencer(SequencerInput::Stop { group: self.id }));
            return;
        }
        if !self.is_sequencer {
            return;
        }
        // Our own stream is always known from its start.
        let start = self.send.stream_start();
        self.rx.stream(self.me).set_base(start);
        let cmd = self.sequencer_view(v);
        self.out.push(Command::Sequencer(cmd));
    }

    fn sequencer_view(&self, v: &View) -> SequencerInput {
        let log = self.order.log();
        let streams = self.order.takeover_streams(&self.rx);
        SequencerInput::View {
            group: self.id,
            view: v.view,
            address: SocketAddrV4::new(v.address, v.port),
            members: v.nodes.iter().map(|n| (n.node, n.incarnation)).collect(),
            next: GlobalSeq(log.highest_known().0 + 1).max(log.next()),
            open: self.order.open_streams(&self.rx, &streams),
            streams,
            stable: log.stable(),
            takeover: false,
        }
    }

    /// The highest view id this node knows of the group (see
    /// [`Views::latest_id`]).
    pub fn latest_view_id(&self) -> ViewId {
        self.views.latest_id()
    }

    /// The view proposed by the directory with this id, if any.
    pub fn pending_view(&self, id: ViewId) -> Option<&View> {
        self.views.pending_view(id)
    }

    /// Accepts a message from a local app into our stream (the caller
    /// checked `send.can_accept()`); we deliver our own messages too.
    pub fn accept_local(
        &mut self,
        order: Order,
        member: MemberId,
        name: &Arc<str>,
        payload: Bytes,
        piece_bytes: usize,
    ) {
        let start = self.send.stream_start();
        let piece_bytes = piece_bytes.max(1);
        let n = payload.len().div_ceil(piece_bytes).max(1);
        // Larger than a datagram: consecutive pieces of our stream (slices
        // of the one payload), each ordered on its own; members deliver
        // the whole at the last one.
        for i in 0..n {
            let frag = Frag::of(i, n);
            let piece = payload.slice(i * piece_bytes..((i + 1) * piece_bytes).min(payload.len()));
            let seq = self.send.push(order, frag, member, name, piece.clone());
            let held = Held {
                order,
                frag,
                sender_name: Arc::clone(name),
                payload: piece,
            };
            self.rx.offer_own(start, seq, held);
        }
    }

    /// Our messages not yet stable, as members hold them, with the first's
    /// position: kept when the group goes on without this node, for the
    /// next attachment (see [`Self::keep_leftovers`]).
    pub fn leftovers(&self) -> (SenderSeq, Vec<Held>) {
        let (base, msgs) = self.send.unstable();
        let held = msgs
            .map(|m| Held {
                order: m.order,
                frag: m.frag,
                sender_name: Arc::clone(&m.sender_name),
                payload: m.payload.clone(),
            })
            .collect();
        (base, held)
    }

    /// An earlier attachment's messages not yet stable when the group went
    /// on without us, from `base` on: peers hold copies and may still
    /// order them, in this attachment's views, and our own members must
    /// deliver them then like everyone. Those never ordered are passed
    /// over when the order goes on past them.
    pub fn keep_leftovers(&mut self, base: SenderSeq, held: Vec<Held>) {
        let own = self.rx.stream(self.me);
        own.forget_base();
        own.set_base(base);
        for (i, h) in held.into_iter().enumerate() {
            own.offer(SenderSeq(base.0 + i as u64), h);
        }
    }

    /// Takes in a DATA datagram (from another node). Its outcome is news if
    /// it brought a message, or (at the sequencer) where a stream starts;
    /// it also counts the messages dropped, by reason.
    pub fn on_data(&mut self, d: &Data<'_>, raw: &[u8]) -> DataOutcome {
        self.rx.on_data(d, raw, self.is_sequencer, self.id)
    }

    /// Takes in an ORDER batch from the group's sequencer. Returns true if
    /// it brought news.
    pub fn on_order(&mut self, b: &OrderBatch) -> bool {
        if b.sequencer != self.views.sequencer
            && !self.maybe_switch(b.sequencer, b.view, b.sequencer_start)
        {
            return false;
        }
        let learned = self.order.absorb(b);
        let freed = self.send.release_stable(self.order.stable());
        self.flow.on_stable(freed);
        learned
    }

    /// Tells the local sequencer of arrivals it has not heard of
    /// (sequencer node only).
    pub fn report_arrivals(&mut self) {
        if !self.is_sequencer {
            return;
        }
        let latest = self.views.latest_nodes();
        let sent_end = self.send.next_unsent();
        for a in self.rx.arrivals(&latest, sent_end) {
            self.out.push(Command::Sequencer(SequencerInput::Arrived {
                group: self.id,
                stream: a.stream,
                first: a.first,
                end: a.end,
                shape: a.shape,
            }));
        }
    }

    /// Delivers everything deliverable, in order ([`Command::Deliver`],
    /// ending with [`Command::InstallView`] if the order reached a view).
    pub fn deliver(&mut self) {
        let reach = self.flush.as_ref().and_then(Flush::reach);
        let freed = self
            .order
            .scan(&mut self.rx, &mut self.send, self.me, reach);
        self.flow.on_stable(freed);
        let limit = self.flush.as_ref().map(|f| f.limit);
        let out = &mut self.out;
        self.order.deliver(
            &mut self.rx,
            self.views.view,
            self.views.pending(),
            limit,
            &self.name,
            &mut |d| {
                out.push(match d {
                    Delivered::Message(m) => Command::Deliver(m),
                    Delivered::View(v) => Command::InstallView(v),
                })
            },
        );
    }

    /// A message of any stream this node holds (for repairing a peer).
    pub fn held_message(&self, key: StreamKey, seq: SenderSeq) -> Option<&Held> {
        self.order.held_message(&self.rx, key, seq)
    }

    /// The ORDER record at `g` if this node knows it (tests and debug logs).
    pub fn record(&self, g: GlobalSeq) -> Option<crate::order::slot::Slot> {
        self.order.record(g)
    }

    /// The host that repairs what a departed sender or the order lacks:
    /// the sequencer's, or during a flush at the new sequencer, the donor's.
    fn repair_node(&self) -> Option<NodeInfo> {
        let me = self.me.node;
        let id = self
            .flush
            .as_ref()
            .and_then(|f| f.repairer(me))
            .unwrap_or(self.views.sequencer);
        self.views.find_node(id)
    }

    /// Periodic work: a flush report, acks, ORDER NAKs and DATA NAKs due now.
    pub fn tick(&mut self, now: Instant) {
        self.update_flow_share(now);
        let rto = self.limits.retransmit;
        if let Some((addr, view, held, anchored)) = self.flush_report_due(now) {
            self.out.push(Command::Control(Control::FlushReport(
                addr, view, held, anchored,
            )));
        }
        let repair = self.repair_node();
        let seq_addr = self
            .views
            .nodes
            .get(&self.views.sequencer)
            .map(|n| SocketAddrV4::new(n.ip, n.order_port));
        if let Some(addr) = seq_addr {
            if let Some(held) = self.order.ack_due(now, rto, self.limits.ack_refresh) {
                self.out
                    .push(Command::Control(Control::OrderAck(addr, held)));
            }
        }
        if let Some(r) = repair.as_ref() {
            if let Some(ranges) = self.order.order_naks_due(now, rto) {
                // Peers' hosts answer from what they know; our own
                // sequencer's records we lost come from its thread.
                let port = if r.node == self.me.node {
                    r.order_port
                } else {
                    r.data_port
                };
                self.out.push(Command::Control(Control::OrderNak(
                    SocketAddrV4::new(r.ip, port),
                    ranges,
                )));
            }
        }
        let me = self.me;
        let (views, flush) = (&self.views, &self.flush);
        let naks = self.rx.naks_due(now, rto, |key| {
            // A sender the directory has removed cannot repair: the
            // sequencer's host holds everything it ordered.
            let no_donor = flush.as_ref().and_then(|f| f.donor(me.node)).is_none();
            views
                .latest_node(key.node)
                .filter(|n| n.incarnation == key.incarnation && no_donor)
                .or_else(|| repair.clone())
                .map(|n| SocketAddrV4::new(n.ip, n.data_port))
        });
        for n in naks {
            self.out.push(Command::Control(Control::DataNak(
                n.dest,
                Nak {
                    group: self.id,
                    from: me.node,
                    from_incarnation: me.incarnation,
                    sender: n.stream.node,
                    sender_incarnation: n.stream.incarnation,
                    ranges: n.ranges,
                },
            )));
        }
    }

    /// When DATA of ours last went out for the first time.
    pub fn last_data_at(&self) -> Option<Instant> {
        self.last_data_at
    }

    /// Packs messages `lo..=hi` of our stream into DATA to `dest` (first
    /// sends and retransmissions).
    pub fn pack_data(
        &mut self,
        now: Instant,
        packer: Packer,
        (lo, hi): (SenderSeq, SenderSeq),
        dest: SocketAddrV4,
        pool: &mut Vec<Vec<u8>>,
    ) {
        if hi >= self.send.next_unsent() {
            self.last_data_at = Some(now);
        }
        let out = &mut self.out;
        packer.own(
            &mut self.send,
            self.me,
            now,
            lo,
            hi,
            dest,
            pool,
            &mut |d, b| out.push(Command::Transmit(d, b)),
        );
    }

    /// Repairs a peer with messages `lo..=hi` of another node's stream that
    /// this node holds (the sender is gone).
    pub fn pack_repair(
        &mut self,
        packer: Packer,
        key: StreamKey,
        (lo, hi): (SenderSeq, SenderSeq),
        dest: SocketAddrV4,
    ) {
        let mut out = std::mem::take(&mut self.out);
        let (order, rx) = (&self.order, &self.rx);
        let announced = rx
            .get(&key)
            .map(|s| s.announced_start())
            .filter(|s| s.0 > 0);
        packer.held(
            |seq| order.held_message(rx, key, seq),
            key,
            announced,
            self.limits.receive_window,
            lo,
            hi,
            dest,
            &mut |d, b| out.push(Command::Transmit(d, b)),
        );
        self.out = out;
    }

    /// Answers an ORDER_NAK with the records this node knows, as ORDER
    /// batches in the name of the group's current sequencer.
    pub fn pack_order_repair(
        &mut self,
        cluster: ClusterId,
        max_bytes: usize,
        ranges: &[(GlobalSeq, GlobalSeq)],
        dest: SocketAddrV4,
    ) {
        let r = OrderRepair {
            cluster,
            group: self.id,
            sequencer: self.views.sequencer,
            sequencer_incarnation: self.views.sequencer_incarnation(),
            view: self.views.view,
            max_bytes,
            window: self.limits.receive_window,
        };
        let out = &mut self.out;
        self.order.pack_order_repair(&r, ranges, dest, &mut |d, b| {
            out.push(Command::Transmit(d, b))
        });
    }

    /// True when nothing of ours awaits stability.
    pub fn sends_drained(&self) -> bool {
        self.send.is_empty()
    }

    /// True when everything delivered here is stable (every member holds
    /// it). A node leaves a group only then: were the sequencer to die
    /// after we left, survivors that lacked a position we delivered would
    /// order it anew, and our members' last deliveries would disagree with
    /// theirs.
    pub fn delivered_stable(&self) -> bool {
        self.order.delivered_stable()
    }

    /// Our stream's next position (to continue it if we attach again).
    pub fn next_stream_seq(&self) -> SenderSeq {
        self.send.next_seq()
    }

    /// The group's announced stability.
    pub fn stable(&self) -> GlobalSeq {
        self.order.stable()
    }

    /// Every view of the group we remember, oldest first: the last ones
    /// installed and those waiting for their marker.
    pub fn remembered_views(&self) -> impl Iterator<Item = &View> {
        self.views.remembered()
    }

    /// The view this member's order starts in, once its start is known.
    pub fn order_start_view(&self) -> Option<ViewId> {
        let log = self.order.log();
        log.start().map(|_| log.start_view())
    }

    /// Where the installed view's positions begin, as its ORDER batches say.
    pub fn view_start(&self) -> GlobalSeq {
        self.order.view_start()
    }

    /// The next position to deliver (tests and debug logs).
    pub fn debug_next(&self) -> GlobalSeq {
        self.order.log().next()
    }

    /// One line of internal state, for test failures and debug logs.
    pub fn debug_line(&self) -> String {
        let first = self.send.next_seq().0 - self.send.len() as u64;
        let head = self.send.get(SenderSeq(first));
        let log = self.order.log();
        format!(
            "group {} view {} seq={} order next={} highest={} stable={} held={} acked={} send len={} head={:?}/{:?} streams={:?}",
            self.id, self.views.view, self.views.sequencer, log.next(), log.highest_known(), log.stable(),
            self.order.held_through(), self.order.ack_sent(), self.send.len(), head.and_then(|m| m.gseq), head.and_then(|m| m.sent_at),
            self.rx.iter().map(|(k, s)| (k.node.0, s.base().map(|b| b.0), s.next_deliver().0, s.missing(4))).collect::<Vec<_>>()
        )
    }

    /// What this member holds through (its cumulative ack).
    pub fn held_through(&self) -> GlobalSeq {
        self.order.held_through()
    }
}
