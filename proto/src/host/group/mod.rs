//! One group at one host: its view, the streams of its senders, our own
//! stream, the order log, and the delivery engine that joins DATA with ORDER.

use crate::ids::{GlobalSeq, GroupId, NodeId, Order, SenderSeq, ViewId};
use crate::multicast::recv::{Accept, Held, RecvStream};
use crate::multicast::send::SendStream;
use crate::multicast::{to_ranges, StreamKey};
use crate::order::log::OrderLog;
use crate::order::sequencer::{order_nak_ranges, SequencerInput};
use crate::time::{Duration, Instant};
use crate::wire::datagram::{Data, Nak, OrderBatch, NAK_RANGES_MAX};
use crate::wire::directory::{MemberInfo, NodeInfo, View};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddrV4;

/// Installed views a group remembers (see `GroupState::remembered_views`):
/// as many as the directory keeps of its own.
const INSTALLED_VIEWS_KEPT: usize = 16;

mod flush;
mod repair;

pub use flush::Flush;

/// The stream key that marks a view change in the order: the sequencer
/// puts one at the position where view `v` begins (node 0 is never a node).
pub fn view_marker(view: ViewId) -> StreamKey {
    StreamKey {
        node: NodeId(0),
        incarnation: crate::ids::Incarnation(view.0),
    }
}

/// What the delivery engine hands to the host, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// A message for the local members.
    Message(Delivery),
    /// The next view is installed here (at the same position at every member).
    View(ViewId),
}

/// A message ready for the group's local members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Sending node.
    pub node: NodeId,
    /// Sending member's name on its node.
    pub sender_name: String,
    pub order: Order,
    /// Global position (total, safe) or the sender's stream position (fifo).
    pub seq: u64,
    pub payload: Vec<u8>,
}

/// Bounds and timers a group needs (from the host's settings).
#[derive(Debug, Clone, Copy)]
pub struct GroupLimits {
    pub send_window: usize,
    pub receive_window: usize,
    pub retransmit: Duration,
    /// How often an unchanged ORDER_ACK is repeated (so a restarted or
    /// recovering sequencer relearns where we are).
    pub ack_refresh: Duration,
    /// Test-only bugs (see [`crate::host::planted`]).
    pub planted: crate::host::planted::Planted,
}

/// Something a group wants sent as a unicast control datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// NAK to a sender's data address.
    DataNak(SocketAddrV4, Nak),
    /// ORDER_ACK (cumulative) to the sequencer.
    OrderAck(SocketAddrV4, GlobalSeq),
    /// ORDER_NAK to the sequencer.
    OrderNak(SocketAddrV4, Vec<(GlobalSeq, GlobalSeq)>),
    /// FLUSH_REPORT to the new sequencer's host: (view, held).
    /// A flush report: to, view, held, anchored.
    FlushReport(SocketAddrV4, ViewId, GlobalSeq, bool),
}

/// A group this host takes part in.
#[derive(Debug)]
pub struct GroupState {
    pub id: GroupId,
    pub name: String,
    pub address: SocketAddrV4,
    pub view: ViewId,
    pub members: Vec<MemberInfo>,
    pub nodes: BTreeMap<NodeId, NodeInfo>,
    pub sequencer: NodeId,
    me: StreamKey,
    pub send: SendStream,
    streams: BTreeMap<StreamKey, RecvStream>,
    order: OrderLog,
    scanned: GlobalSeq,
    held_through: GlobalSeq,
    ack_sent: GlobalSeq,
    ack_sent_at: Option<Instant>,
    nak_sent_at: BTreeMap<StreamKey, Instant>,
    order_nak_sent_at: Option<Instant>,
    is_sequencer: bool,
    limits: GroupLimits,
    pub deliveries: VecDeque<Delivered>,
    /// The view whose sequencer orders the group now (a flush sets it to the
    /// view it completes; older views installed later do not change it).
    sequencer_since: ViewId,
    /// The first position the group's current sequencer assigned (its
    /// ORDER batches say; a takeover here sets it to the cut's next). Our
    /// own ORDER repairs carry it, since a survivor in a flush may read
    /// the cut from them.
    sequencer_start: GlobalSeq,
    /// Detach was asked for; the directory's GroupEnded ends the group.
    pub detach_sent: bool,
    /// Local members were told a view of this group (a joiner waits until
    /// it knows which view its order starts in).
    pub announced: bool,
    /// Views announced by the directory, installed when the order reaches
    /// their marker.
    pending_views: BTreeMap<ViewId, View>,
    /// The last views installed, newest last: told to a restarted
    /// directory, which hands them to members that missed them.
    installed_views: VecDeque<View>,
    /// Delivered messages kept until stable, to repair peers whose sender
    /// is gone.
    retained: BTreeMap<(StreamKey, SenderSeq), (GlobalSeq, Held)>,
    retained_order: VecDeque<(GlobalSeq, StreamKey, SenderSeq)>,
    flush: Option<Flush>,
    /// First position of the installed view (its marker's next), once known.
    view_start: Option<GlobalSeq>,
    /// Where the view whose marker was just delivered starts.
    marker_next: Option<GlobalSeq>,
    /// Every position from our order's start on that a member may need
    /// from us, we hold or can fetch: we started the order, took it over,
    /// or (a joiner) everything before our start was stable once. Until
    /// then a joiner delivers nothing and reports nothing in a flush (see
    /// `flush.rs`: a joiner's order starts at its view, past positions
    /// that a lagging member may still need from the sequencer alone).
    anchored: bool,
    /// When we last said, our order not started yet, that we hold nothing
    /// (see `flush.rs`, `unstarted_report_due`).
    unstarted_report_at: Option<Instant>,
}

impl GroupState {
    /// A group joined in view `v.view`; our stream continues at `stream_start`.
    pub fn new(v: &View, me: StreamKey, stream_start: SenderSeq, limits: GroupLimits) -> Self {
        GroupState {
            id: v.group,
            name: v.group_name.clone(),
            address: SocketAddrV4::new(v.address, v.port),
            view: v.view,
            members: Vec::new(),
            nodes: BTreeMap::new(),
            sequencer: v.sequencer,
            me,
            send: SendStream::new(stream_start, limits.send_window),
            streams: BTreeMap::new(),
            order: OrderLog::new(v.view, limits.receive_window),
            scanned: GlobalSeq(0),
            held_through: GlobalSeq(0),
            ack_sent: GlobalSeq(0),
            ack_sent_at: None,
            nak_sent_at: BTreeMap::new(),
            order_nak_sent_at: None,
            is_sequencer: false,
            limits,
            deliveries: VecDeque::new(),
            detach_sent: false,
            announced: false,
            sequencer_since: v.view,
            sequencer_start: GlobalSeq(1),
            pending_views: BTreeMap::new(),
            installed_views: VecDeque::new(),
            retained: BTreeMap::new(),
            retained_order: VecDeque::new(),
            flush: None,
            view_start: None,
            marker_next: None,
            anchored: false,
            unstarted_report_at: None,
        }
    }

    /// Our order starts at `start` in the installed view, and we answer
    /// for nothing before it: we start the group's order, or take it over
    /// (see also `restart_order_at`).
    fn start_order_at(&mut self, start: GlobalSeq) {
        self.order = OrderLog::started_at(self.view, start, self.limits.receive_window);
        self.scanned = start;
        self.held_through = GlobalSeq(start.0 - 1);
        self.anchored = true;
    }

    /// Whether our order is anchored (see the field); a joiner becomes so
    /// once the stability announced reaches the position before its start.
    pub(super) fn is_anchored(&mut self) -> bool {
        if !self.anchored {
            self.anchored = self
                .order
                .start()
                .is_some_and(|s| self.order.stable().next() >= s);
        }
        self.anchored
    }

    /// True when this node sequences the group.
    pub fn is_sequencer(&self) -> bool {
        self.is_sequencer
    }

    /// A view from the directory for a group we already take part in: it is
    /// installed when the order reaches its marker. Returns what our
    /// sequencer must be told (it places the marker).
    pub fn propose(&mut self, v: View) -> Option<SequencerInput> {
        if self.pending_views.contains_key(&v.view) {
            // The directory sends a view again after a rebind: once is enough.
            return None;
        }
        if self.latest_view().is_some_and(|l| l.view > v.view) {
            // A view we missed while our link was down, sent after a later
            // one: it is needed only to install it at its marker; the later
            // view already drove the sequencer and any flush.
            self.pending_views.insert(v.view, v);
            return None;
        }
        let cmd = if v.sequencer != self.sequencer || self.flush.is_some() {
            self.begin_flush(&v)
        } else {
            (v.sequencer == self.me.node && self.is_sequencer).then(|| self.sequencer_view(&v))
        };
        self.pending_views.insert(v.view, v);
        cmd
    }

    /// Installs a view now (the first view we see of a group, or a marker
    /// reached); returns what the local sequencer must be told.
    pub fn install(&mut self, v: &View) -> Option<SequencerInput> {
        self.pending_views.retain(|id, _| *id > v.view);
        if self.installed_views.len() >= INSTALLED_VIEWS_KEPT {
            self.installed_views.pop_front();
        }
        self.installed_views.push_back(v.clone());
        self.view = v.view;
        self.view_start = self.marker_next.take();
        self.members = v.members.clone();
        self.nodes = v.nodes.iter().map(|n| (n.node, n.clone())).collect();
        self.address = SocketAddrV4::new(v.address, v.port);
        if v.view < self.sequencer_since {
            // An older view reached at its marker after a flush moved the
            // order to a newer view's sequencer: that one stays.
            return None;
        }
        self.sequencer = v.sequencer;
        self.sequencer_since = v.view;
        let now_seq = v.sequencer == self.me.node;
        if now_seq && !self.is_sequencer {
            self.is_sequencer = true;
            if self.order.start().is_none() {
                // We start the group's order (or take it over knowing nothing).
                self.start_order_at(GlobalSeq(self.order.highest_known().0 + 1));
            }
        } else if !now_seq && self.is_sequencer {
            self.is_sequencer = false;
            return Some(SequencerInput::Stop { group: self.id });
        }
        if !self.is_sequencer {
            return None;
        }
        // Our own stream is always known from its start.
        let me = self.me;
        let start = self.send.stream_start();
        self.stream(me).set_base(start);
        Some(self.sequencer_view(v))
    }

    fn sequencer_view(&self, v: &View) -> SequencerInput {
        SequencerInput::View {
            group: self.id,
            view: v.view,
            address: SocketAddrV4::new(v.address, v.port),
            members: v.nodes.iter().map(|n| (n.node, n.incarnation)).collect(),
            next: GlobalSeq(self.order.highest_known().0 + 1).max(self.order.next()),
            streams: self.takeover_streams(),
            stable: self.order.stable(),
            takeover: false,
        }
    }

    /// The highest view id this node knows of the group: installed, or
    /// proposed and waiting for its marker. A restarted directory must
    /// number its next view past it: reusing a pending view's id would
    /// make this node take the new view for the old one sent again.
    pub fn latest_view_id(&self) -> ViewId {
        self.pending_views
            .keys()
            .next_back()
            .copied()
            .unwrap_or(self.view)
            .max(self.view)
    }

    /// The view proposed by the directory with this id, if any.
    pub fn pending_view(&self, id: ViewId) -> Option<&View> {
        self.pending_views.get(&id)
    }

    /// Where each stream's next unordered message is, from what this node
    /// has seen ordered (used when it starts sequencing).
    fn takeover_streams(&self) -> Vec<(StreamKey, SenderSeq)> {
        let mut next: BTreeMap<StreamKey, SenderSeq> = BTreeMap::new();
        for (k, s) in &self.streams {
            if s.base().is_some() {
                next.insert(*k, s.next_deliver());
            }
        }
        let mut g = self.order.next();
        while g <= self.order.highest_known() {
            if let Some((k, seq)) = self.order.entry(g).filter(|(k, _)| k.node.0 != 0) {
                let e = next.entry(k).or_insert(seq.next());
                *e = (*e).max(seq.next());
            }
            g = g.next();
        }
        next.into_iter().collect()
    }

    fn stream(&mut self, key: StreamKey) -> &mut RecvStream {
        // Our own stream holds every accepted message not yet delivered
        // here: the unstable ones (up to the send capacity) and stable ones
        // whose delivery waits (at most a receive window of positions).
        let own = if key == self.me {
            2 * self.limits.send_window
        } else {
            0
        };
        let window = self.limits.receive_window + own;
        let forget = self.limits.planted.no_duplicate_suppression;
        self.streams.entry(key).or_insert_with(|| {
            let mut r = RecvStream::new(window);
            r.forget_delivered = forget;
            r
        })
    }

    /// Accepts a message from a local app into our stream (the caller
    /// checked `send.can_accept()`); we deliver our own messages too.
    pub fn accept_local(
        &mut self,
        order: Order,
        member: crate::ids::MemberId,
        name: &str,
        payload: Vec<u8>,
    ) {
        let seq = self.send.push(order, member, name, payload.clone());
        let me = self.me;
        let start = self.send.stream_start();
        let s = self.stream(me);
        s.set_base(start);
        s.offer(
            seq,
            Held {
                order,
                sender_name: name.to_owned(),
                payload,
            },
        );
    }

    /// Takes in a DATA datagram (from another node). Returns true if it
    /// brought news: a message, or (at the sequencer) where a stream starts.
    pub fn on_data(&mut self, d: &Data<'_>) -> bool {
        let key = StreamKey {
            node: d.sender,
            incarnation: d.incarnation,
        };
        if key == self.me {
            return false;
        }
        let is_seq = self.is_sequencer;
        let group = self.id;
        let s = self.stream(key);
        // A sequencer that has seen nothing of a stream ordered learns where
        // it begins from its DATA. That is news even when every message in the
        // datagram is held already: a new sequencer that held a sender's
        // whole burst before it took over learns the start only from the
        // sender's retransmission, and must then report the burst to its
        // sequencer (nothing else may ever come to make it look again).
        let mut new = false;
        if is_seq && s.base().is_none() {
            log::debug!(
                "group {group}: stream {}/{} starts at {} (as its DATA says)",
                key.node,
                key.incarnation,
                d.stream_start
            );
            s.set_base(d.stream_start);
            new = true;
        }
        for (i, m) in d.msgs.iter().enumerate() {
            let seq = SenderSeq(d.first_seq.0 + i as u64);
            let held = Held {
                order: m.order,
                sender_name: m.sender_name.to_owned(),
                payload: m.payload.to_vec(),
            };
            new |= s.offer(seq, held) == Accept::Stored;
        }
        new
    }

    /// Takes in an ORDER batch from the group's sequencer.
    pub fn on_order(&mut self, b: &OrderBatch) -> bool {
        if b.sequencer != self.sequencer
            && !self.maybe_switch(b.sequencer, b.view, b.sequencer_start)
        {
            return false;
        }
        self.sequencer_start = self.sequencer_start.max(b.sequencer_start);
        let stable_before = self.order.stable();
        // New stability alone is news too: it releases `safe` messages.
        let learned = self.order.absorb(b) | (self.order.stable() > stable_before);
        if self.order.start().is_some() && self.scanned < self.order.next() {
            self.scanned = self.order.next();
            self.held_through = self.held_through.max(GlobalSeq(self.scanned.0 - 1));
        }
        self.send.release_stable(self.order.stable());
        learned
    }

    /// Walks newly contiguous ORDER records: learns stream bases, notes
    /// which messages must exist, and which of ours got which position.
    fn scan(&mut self) {
        if self.order.start().is_none() {
            return;
        }
        while let Some((key, seq)) = self.order.entry(self.scanned) {
            let g = self.scanned;
            if key.node.0 == 0 {
                self.scanned = g.next();
                continue;
            }
            if key == self.me {
                self.send.mark_ordered(seq, g);
            }
            let reach = self.flush_reach().is_some_and(|cut| g <= cut);
            let s = self.stream(key);
            s.set_base(seq);
            s.need(seq);
            if reach {
                s.reach_through(seq);
            }
            self.scanned = g.next();
        }
        self.send.release_stable(self.order.stable());
    }

    /// Arrivals the local sequencer has not been told of (sequencer node only).
    pub fn arrivals(&mut self) -> Vec<SequencerInput> {
        let mut out = Vec::new();
        if !self.is_sequencer {
            return out;
        }
        let latest = self
            .pending_views
            .values()
            .next_back()
            .map(|v| {
                v.nodes
                    .iter()
                    .map(|n| (n.node, n.incarnation))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_else(|| {
                self.nodes
                    .values()
                    .map(|n| (n.node, n.incarnation))
                    .collect()
            });
        for (key, s) in &mut self.streams {
            // A departed node's later messages are not ordered; a joiner's
            // wait until its view is known here.
            if s.base().is_none() || !latest.contains(&(key.node, key.incarnation)) {
                continue;
            }
            let end = s.contiguous_end();
            if end > s.reported {
                out.push(SequencerInput::Arrived {
                    group: self.id,
                    stream: *key,
                    first: s.reported,
                    end,
                });
                s.reported = end;
            }
        }
        out
    }

    /// Delivers everything deliverable, in order, into `deliveries`. Every
    /// order (fifo too) is delivered at its position in the group's order, so
    /// all members deliver the same sequence and a view marker cuts it at
    /// the same place everywhere.
    pub fn deliver(&mut self) {
        self.scan();
        // A joiner whose first ORDER was already of a later view never sees
        // the markers in between: it installs that view before delivering.
        let start_view = self.order.start_view();
        if self.order.start().is_some() && start_view > self.view {
            if self.pending_views.contains_key(&start_view) {
                self.marker_next = self.order.start();
                self.deliveries.push_back(Delivered::View(start_view));
            }
            return;
        }
        let limit = self.delivery_limit();
        let anchored = self.is_anchored();
        while let Some((key, seq)) = self.order.front() {
            if !anchored {
                break; // a joiner waits until what precedes its start is stable
            }
            let g = self.order.next();
            if limit.is_some_and(|l| g > l) {
                break; // a flush: nothing past our report until the cut is known
            }
            if key.node.0 == 0 {
                let view = ViewId(key.incarnation.0);
                if view > self.view && !self.pending_views.contains_key(&view) {
                    let later = self.pending_views.keys().next_back().copied();
                    if later.is_none_or(|l| l < view) {
                        break; // the directory's view has not reached us yet
                    }
                    // The directory sends views in order: with a later one
                    // here, this one was missed while our link was down and
                    // is lost (the directory restarted since). Its members
                    // go from our view to the next one we know.
                    log::warn!(
                        "group {}: view {view} was missed; its messages are delivered in view {}",
                        self.name,
                        self.view
                    );
                    self.order.advance();
                    self.retained_order.push_back((g, key, seq));
                    continue;
                }
                self.order.advance();
                self.retained_order.push_back((g, key, seq));
                if view > self.view {
                    self.marker_next = Some(g.next());
                    self.deliveries.push_back(Delivered::View(view));
                    break; // the host installs it before going on
                }
                continue;
            }
            let stable = self.order.stable();
            let Some(s) = self.streams.get_mut(&key) else {
                break;
            };
            if seq < s.next_deliver() {
                self.order.advance();
                self.retained_order.push_back((g, key, seq));
                continue;
            }
            let ready = seq == s.next_deliver()
                && s.peek(seq)
                    .is_some_and(|m| m.order != Order::Safe || g <= stable);
            if !ready {
                break;
            }
            let Some(m) = s.pop_next() else { break };
            self.order.advance();
            self.retained.insert((key, seq), (g, m.clone()));
            self.retained_order.push_back((g, key, seq));
            self.deliveries.push_back(Delivered::Message(Delivery {
                node: key.node,
                sender_name: m.sender_name,
                order: m.order,
                seq: g.0,
                payload: m.payload,
            }));
        }
        self.release_retained();
        self.advance_held_through();
    }

    fn release_retained(&mut self) {
        let stable = self.order.stable();
        while let Some(&(g, key, seq)) = self.retained_order.front() {
            if g > stable {
                break;
            }
            self.retained_order.pop_front();
            self.retained.remove(&(key, seq));
        }
    }

    /// A message of any stream this node holds (for repairing a peer).
    pub fn held_message(&self, key: StreamKey, seq: SenderSeq) -> Option<&Held> {
        self.retained
            .get(&(key, seq))
            .map(|(_, h)| h)
            .or_else(|| self.streams.get(&key).and_then(|s| s.peek(seq)))
    }

    fn advance_held_through(&mut self) {
        if self.order.start().is_none() {
            return;
        }
        let mut g = self.held_through.next().max(self.order.next());
        // Everything delivered is held.
        if self.order.next() > self.held_through.next() {
            self.held_through = GlobalSeq(self.order.next().0 - 1);
        }
        while let Some((key, seq)) = self.order.entry(g) {
            let held = key.node.0 == 0
                || self
                    .streams
                    .get(&key)
                    .is_some_and(|s| seq < s.next_deliver() || s.holds(seq));
            if !held {
                break;
            }
            self.held_through = g;
            g = g.next();
        }
    }

    /// Periodic work: acks and naks due now.
    /// The host that repairs what a departed sender or the order lacks:
    /// the sequencer's, or during a flush at the new sequencer, the donor's.
    fn repair_node(&self) -> Option<crate::wire::directory::NodeInfo> {
        let id = self.flush_repairer().unwrap_or(self.sequencer);
        self.nodes.get(&id).cloned().or_else(|| {
            self.pending_views
                .values()
                .next_back()?
                .nodes
                .iter()
                .find(|n| n.node == id)
                .cloned()
        })
    }

    pub fn tick(&mut self, now: Instant, out: &mut Vec<Control>) {
        let rto = self.limits.retransmit;
        if let Some((addr, view, held, anchored)) = self.flush_report_due(now) {
            out.push(Control::FlushReport(addr, view, held, anchored));
        }
        let repair = self.repair_node();
        let seq_addr = self
            .nodes
            .get(&self.sequencer)
            .map(|n| SocketAddrV4::new(n.ip, n.order_port));
        if let Some(addr) = seq_addr {
            if self.order.start().is_some() {
                // Repeat an ack the sequencer seems not to have (stability
                // lags it after a retransmission interval), and now and then
                // anyway so a new sequencer learns where we are.
                let lagging = self.order.stable() < self.ack_sent
                    && self.ack_sent_at.is_some_and(|t| t + rto <= now);
                let refresh = lagging
                    || self
                        .ack_sent_at
                        .is_none_or(|t| t + self.limits.ack_refresh <= now);
                if self.held_through > self.ack_sent || refresh {
                    self.ack_sent = self.held_through;
                    self.ack_sent_at = Some(now);
                    out.push(Control::OrderAck(addr, self.held_through));
                }
            }
        }
        let missing = self.order.missing(NAK_RANGES_MAX * 8);
        if let Some(r) = repair.as_ref() {
            if !missing.is_empty() && self.order_nak_sent_at.is_none_or(|t| t + rto <= now) {
                self.order_nak_sent_at = Some(now);
                // Peers' hosts answer from what they know; our own
                // sequencer's records we lost come from its thread.
                let port = if r.node == self.me.node {
                    r.order_port
                } else {
                    r.data_port
                };
                out.push(Control::OrderNak(
                    SocketAddrV4::new(r.ip, port),
                    order_nak_ranges(&missing),
                ));
            }
        }
        for (key, s) in &self.streams {
            if *key == self.me {
                continue;
            }
            let missing = s.missing(NAK_RANGES_MAX * 8);
            if missing.is_empty() {
                continue;
            }
            let due = self.nak_sent_at.get(key).is_none_or(|t| *t + rto <= now);
            // A sender the directory has removed cannot repair: the
            // sequencer's host holds everything it ordered.
            let latest = self.pending_views.values().next_back();
            let alive = latest.map_or_else(
                || self.nodes.get(&key.node).cloned(),
                |v| v.nodes.iter().find(|n| n.node == key.node).cloned(),
            );
            let node = alive
                .filter(|n| n.incarnation == key.incarnation && self.flush_donor().is_none())
                .or_else(|| repair.clone());
            let Some(node) = node else {
                continue;
            };
            if due {
                self.nak_sent_at.insert(*key, now);
                out.push(Control::DataNak(
                    SocketAddrV4::new(node.ip, node.data_port),
                    Nak {
                        group: self.id,
                        from: self.me.node,
                        from_incarnation: self.me.incarnation,
                        sender: key.node,
                        sender_incarnation: key.incarnation,
                        ranges: to_ranges(missing, NAK_RANGES_MAX)
                            .into_iter()
                            .map(|(a, b)| (SenderSeq(a), SenderSeq(b)))
                            .collect(),
                    },
                ));
            }
        }
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
        self.order.start().is_none() || self.order.stable().0 + 1 >= self.order.next().0
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
        self.installed_views
            .iter()
            .chain(self.pending_views.values())
    }

    /// The view this member's order starts in, once its start is known.
    pub fn order_start_view(&self) -> Option<ViewId> {
        self.order.start().map(|_| self.order.start_view())
    }

    /// Where the installed view's positions begin, as its ORDER batches say.
    pub fn view_start(&self) -> GlobalSeq {
        self.view_start
            .or(self.order.start())
            .unwrap_or(GlobalSeq(1))
    }

    /// The next position to deliver (tests and debug logs).
    pub fn debug_next(&self) -> GlobalSeq {
        self.order.next()
    }

    /// One line of internal state, for test failures and debug logs.
    pub fn debug_line(&self) -> String {
        let first = self.send.next_seq().0 - self.send.len() as u64;
        let head = self.send.get(crate::ids::SenderSeq(first));
        format!(
            "group {} view {} seq={} order next={} highest={} stable={} held={} acked={} send len={} head={:?}/{:?} streams={:?}",
            self.id, self.view, self.sequencer, self.order.next(), self.order.highest_known(), self.order.stable(),
            self.held_through, self.ack_sent, self.send.len(), head.and_then(|m| m.gseq), head.and_then(|m| m.sent_at),
            self.streams.iter().map(|(k, s)| (k.node.0, s.base().map(|b| b.0), s.next_deliver().0, s.missing(4))).collect::<Vec<_>>()
        )
    }

    /// What this member holds through (its cumulative ack).
    pub fn held_through(&self) -> GlobalSeq {
        self.held_through
    }
}
