//! Delivery at a member: joins the group's ORDER records with the DATA its
//! streams hold, hands messages on at their positions, keeps delivered ones
//! until stable (to repair peers), and says how far it holds the order (its
//! cumulative ack, from which the sequencer computes stability).
//!
//! Every order (fifo too) is delivered at its position in the group's
//! order, so all members deliver the same sequence and a view marker cuts
//! it at the same place everywhere. `safe` messages wait until stable.

use super::log::OrderLog;
use super::sequencer::order_nak_ranges;
use super::slot::Slot;
use crate::ids::{Frag, GlobalSeq, NodeId, Order, SenderSeq, ViewId};
use crate::multicast::receivers::Receivers;
use crate::multicast::recv::Held;
use crate::multicast::send::SendStream;
use crate::multicast::StreamKey;
use crate::time::{Duration, Instant};
use crate::wire::datagram::{OrderBatch, NAK_RANGES_MAX};
use crate::wire::directory::View;
use crate::wire::MAX_MESSAGE_BYTES;
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// What delivery hands on, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// A message for the local members.
    Message(Delivery),
    /// The order reached the marker of this view: it is installed here,
    /// before anything after it is delivered.
    View(ViewId),
}

/// A message ready for the group's local members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Sending node.
    pub node: NodeId,
    /// Sending member's name on its node.
    pub sender_name: Arc<str>,
    pub order: Order,
    /// Global position (total, safe) or the sender's stream position (fifo).
    pub seq: u64,
    pub payload: Bytes,
}

/// One group's delivery state at a member.
#[derive(Debug)]
pub struct Deliverer {
    /// Our copy of the order.
    pub(crate) log: OrderLog,
    /// Records up to here were walked (stream bases learned, ours marked).
    pub(crate) scanned: GlobalSeq,
    /// We hold ORDER and DATA for every position up to here: our ack.
    pub(crate) held_through: GlobalSeq,
    /// Every position from our order's start on that a member may need
    /// from us, we hold or can fetch: we started the order, took it over,
    /// or (a joiner) everything before our start was stable once. Until
    /// then a joiner delivers nothing and reports nothing in a flush (see
    /// `membership::flush`: a joiner's order starts at its view, past
    /// positions that a lagging member may still need from the sequencer
    /// alone).
    anchored: bool,
    /// Delivered messages kept until stable, to repair peers whose sender
    /// is gone.
    retained: BTreeMap<(StreamKey, SenderSeq), (GlobalSeq, Held)>,
    /// Delivered positions (markers too) until stable, oldest first.
    retained_order: VecDeque<(GlobalSeq, Slot)>,
    /// First position of the installed view (its marker's next), once known.
    pub(crate) view_start: Option<GlobalSeq>,
    /// Where the view whose marker was just delivered starts.
    pub(crate) marker_next: Option<GlobalSeq>,
    /// The first position the group's current sequencer assigned (its
    /// ORDER batches say; a takeover here sets it to the cut's next). Our
    /// own ORDER repairs carry it, since a survivor in a flush may read
    /// the cut from them.
    pub(crate) sequencer_start: GlobalSeq,
    ack_sent: GlobalSeq,
    ack_sent_at: Option<Instant>,
    order_nak_sent_at: Option<Instant>,
    window: usize,
    /// Messages whose first pieces were delivered here, by sender.
    assembly: Assembly,
}

/// Large messages being put back together at a member: each sender's
/// stream carries one message's pieces at consecutive positions, so one
/// unfinished message per stream at most, each bounded by
/// [`MAX_MESSAGE_BYTES`].
#[derive(Debug, Default)]
struct Assembly {
    unfinished: BTreeMap<StreamKey, Unfinished>,
    /// Pieces passed over because their message began before this
    /// member's order did (logged once in a while).
    orphans: u64,
}

/// A message whose first pieces were delivered.
#[derive(Debug)]
struct Unfinished {
    order: Order,
    sender_name: Arc<str>,
    payload: Vec<u8>,
}

impl Assembly {
    /// Takes the piece delivered at `g`; returns the message it completes.
    fn take(&mut self, key: StreamKey, g: GlobalSeq, m: Held, group: &str) -> Option<Delivery> {
        match m.frag {
            Frag::Whole => Some(Delivery {
                node: key.node,
                sender_name: m.sender_name,
                order: m.order,
                seq: g.0,
                payload: m.payload,
            }),
            Frag::First => {
                let u = Unfinished {
                    order: m.order,
                    sender_name: m.sender_name,
                    payload: m.payload.to_vec(),
                };
                if self.unfinished.insert(key, u).is_some() {
                    log::warn!(
                        "group {group}: node {}/{} began a message before finishing the last; the unfinished one is dropped",
                        key.node,
                        key.incarnation
                    );
                }
                None
            }
            Frag::Middle | Frag::Last => {
                let Some(u) = self.unfinished.get_mut(&key) else {
                    self.orphans += 1;
                    if self.orphans.is_power_of_two() {
                        log::warn!(
                            "group {group}: a piece of a message from node {}/{} that began before this member's order did is passed over ({} pieces so far)",
                            key.node,
                            key.incarnation,
                            self.orphans
                        );
                    }
                    return None;
                };
                if u.payload.len() + m.payload.len() > MAX_MESSAGE_BYTES {
                    log::warn!(
                        "group {group}: a message from node {}/{} grows past {MAX_MESSAGE_BYTES} bytes; dropped",
                        key.node,
                        key.incarnation
                    );
                    self.unfinished.remove(&key);
                    return None;
                }
                u.payload.extend_from_slice(&m.payload);
                if m.frag == Frag::Middle {
                    return None;
                }
                let u = self.unfinished.remove(&key)?;
                Some(Delivery {
                    node: key.node,
                    sender_name: u.sender_name,
                    order: u.order,
                    seq: g.0,
                    payload: Bytes::from(u.payload),
                })
            }
        }
    }

    /// Forgets the unfinished messages of senders not in `v`.
    fn keep_senders(&mut self, v: &View) {
        self.unfinished.retain(|k, _| {
            v.nodes
                .iter()
                .any(|n| n.node == k.node && n.incarnation == k.incarnation)
        });
    }
}

impl Deliverer {
    /// Delivery for a member whose first view is `view`, holding at most
    /// `window` positions ahead of delivery.
    pub fn new(view: ViewId, window: usize) -> Deliverer {
        Deliverer {
            log: OrderLog::new(view, window),
            scanned: GlobalSeq(0),
            held_through: GlobalSeq(0),
            anchored: false,
            retained: BTreeMap::new(),
            retained_order: VecDeque::new(),
            view_start: None,
            marker_next: None,
            sequencer_start: GlobalSeq(1),
            ack_sent: GlobalSeq(0),
            ack_sent_at: None,
            order_nak_sent_at: None,
            window,
            assembly: Assembly::default(),
        }
    }

    /// Our order starts at `start` in view `view`, and we answer for
    /// nothing before it: we start the group's order, or take it over.
    pub fn start_order_at(&mut self, view: ViewId, start: GlobalSeq) {
        self.log = OrderLog::started_at(view, start, self.window);
        self.scanned = start;
        self.held_through = GlobalSeq(start.0 - 1);
        self.anchored = true;
    }

    /// Whether our order is anchored (see the field); a joiner becomes so
    /// once the stability announced reaches the position before its start.
    pub fn is_anchored(&mut self) -> bool {
        if !self.anchored {
            self.anchored = self
                .log
                .start()
                .is_some_and(|s| self.log.stable().next() >= s);
        }
        self.anchored
    }

    /// Takes in an ORDER batch of the sequencer we follow. Returns true if
    /// it taught something: records, or new stability (which releases
    /// `safe` messages).
    pub fn absorb(&mut self, b: &OrderBatch) -> bool {
        self.sequencer_start = self.sequencer_start.max(b.sequencer_start);
        let stable_before = self.log.stable();
        let learned = self.log.absorb(b) | (self.log.stable() > stable_before);
        if self.log.start().is_some() && self.scanned < self.log.next() {
            self.scanned = self.log.next();
            self.held_through = self.held_through.max(GlobalSeq(self.scanned.0 - 1));
        }
        learned
    }

    /// Walks newly contiguous ORDER records: learns stream bases, notes
    /// which messages must exist, and which of ours (`me`) got which
    /// position. Records up to `reach` (a flush cut) are held whatever the
    /// windows say. Returns the bytes of ours that stability freed.
    pub fn scan(
        &mut self,
        rx: &mut Receivers,
        send: &mut SendStream,
        me: StreamKey,
        reach: Option<GlobalSeq>,
    ) -> usize {
        if self.log.start().is_none() {
            return 0;
        }
        while let Some(slot) = self.log.entry(self.scanned) {
            let g = self.scanned;
            let Slot::Message { stream, seq } = slot else {
                self.scanned = g.next();
                continue;
            };
            if stream == me {
                send.mark_ordered(seq, g);
            }
            let s = rx.stream(stream);
            s.set_base(seq);
            s.need(seq);
            if reach.is_some_and(|cut| g <= cut) {
                s.reach_through(seq);
            }
            self.scanned = g.next();
        }
        send.release_stable(self.log.stable())
    }

    /// Delivers everything deliverable, in order, into `out`. `installed`
    /// is the installed view and `pending` the views proposed and waiting
    /// for their marker; nothing past `limit` (a flush) is delivered.
    pub fn deliver(
        &mut self,
        rx: &mut Receivers,
        installed: ViewId,
        pending: &BTreeMap<ViewId, View>,
        limit: Option<GlobalSeq>,
        group_name: &str,
        out: &mut impl FnMut(Delivered),
    ) {
        // A joiner whose first ORDER was already of a later view never sees
        // the markers in between: it installs that view before delivering.
        let start_view = self.log.start_view();
        if self.log.start().is_some() && start_view > installed {
            if pending.contains_key(&start_view) {
                self.marker_next = self.log.start();
                out(Delivered::View(start_view));
            }
            return;
        }
        let anchored = self.is_anchored();
        while let Some(slot) = self.log.front() {
            if !anchored {
                break; // a joiner waits until what precedes its start is stable
            }
            let g = self.log.next();
            if limit.is_some_and(|l| g > l) {
                break; // a flush: nothing past our report until the cut is known
            }
            let (key, seq) = match slot {
                Slot::ViewMarker(view) => {
                    if view > installed && !pending.contains_key(&view) {
                        let later = pending.keys().next_back().copied();
                        if later.is_none_or(|l| l < view) {
                            break; // the directory's view has not reached us yet
                        }
                        // The directory sends views in order: with a later
                        // one here, this one was missed while our link was
                        // down and is lost (the directory restarted since).
                        // Its members go from our view to the next one we know.
                        log::warn!(
                            "group {group_name}: view {view} was missed; its messages are delivered in view {installed}"
                        );
                        self.log.advance();
                        self.retained_order.push_back((g, slot));
                        continue;
                    }
                    self.log.advance();
                    self.retained_order.push_back((g, slot));
                    if let Some(v) = pending.get(&view) {
                        // A sender gone mid-message never finishes it.
                        self.assembly.keep_senders(v);
                    }
                    if view > installed {
                        self.marker_next = Some(g.next());
                        out(Delivered::View(view));
                        break; // the host installs it before going on
                    }
                    continue;
                }
                Slot::Message { stream, seq } => (stream, seq),
            };
            let stable = self.log.stable();
            let Some(s) = rx.get_mut(&key) else {
                break;
            };
            if seq < s.next_deliver() {
                self.log.advance();
                self.retained_order.push_back((g, slot));
                continue;
            }
            let upto = seq.min(s.announced_start());
            if upto > s.next_deliver() {
                // The order names this one and every earlier position is
                // delivered, and the sender said its stream (a new
                // attachment to the group) starts past what we hold: what
                // lies between was never ordered and never will be (a
                // stream is ordered in stream order). The sender was
                // dropped from the group and attached again; what it had
                // not made stable was lost with the old attachment.
                log::debug!(
                    "group {group_name}: stream {}/{} goes on at {upto}; {}..{upto} were never ordered",
                    key.node,
                    key.incarnation,
                    s.next_deliver()
                );
                s.skip_to(upto);
            }
            let ready = seq == s.next_deliver()
                && s.peek(seq)
                    .is_some_and(|m| m.order != Order::Safe || g <= stable);
            if !ready {
                break;
            }
            let Some(m) = s.pop_next() else { break };
            self.log.advance();
            self.retained.insert((key, seq), (g, m.clone()));
            self.retained_order.push_back((g, slot));
            if let Some(d) = self.assembly.take(key, g, m, group_name) {
                out(Delivered::Message(d));
            }
        }
        self.release_retained();
        self.advance_held_through(rx);
    }

    fn release_retained(&mut self) {
        let stable = self.log.stable();
        while let Some(&(g, slot)) = self.retained_order.front() {
            if g > stable {
                break;
            }
            self.retained_order.pop_front();
            if let Slot::Message { stream, seq } = slot {
                self.retained.remove(&(stream, seq));
            }
        }
    }

    fn advance_held_through(&mut self, rx: &Receivers) {
        if self.log.start().is_none() {
            return;
        }
        let mut g = self.held_through.next().max(self.log.next());
        // Everything delivered is held.
        if self.log.next() > self.held_through.next() {
            self.held_through = GlobalSeq(self.log.next().0 - 1);
        }
        while let Some(slot) = self.log.entry(g) {
            let held = match slot {
                Slot::ViewMarker(_) => true,
                Slot::Message { stream, seq } => rx
                    .get(&stream)
                    .is_some_and(|s| seq < s.next_deliver() || s.holds(seq)),
            };
            if !held {
                break;
            }
            self.held_through = g;
            g = g.next();
        }
    }

    /// A message of any stream this member holds (for repairing a peer):
    /// delivered and not yet stable, or held and not yet delivered.
    pub fn held_message<'a>(
        &'a self,
        rx: &'a Receivers,
        key: StreamKey,
        seq: SenderSeq,
    ) -> Option<&'a Held> {
        self.retained
            .get(&(key, seq))
            .map(|(_, h)| h)
            .or_else(|| rx.get(&key).and_then(|s| s.peek(seq)))
    }

    /// The ORDER record at `g` if this member knows it: undelivered ones
    /// from the log, delivered ones (markers too) until they are stable.
    pub fn record(&self, g: GlobalSeq) -> Option<Slot> {
        if g >= self.log.next() {
            return self.log.entry(g);
        }
        let &(first, _) = self.retained_order.front()?;
        let i = g.0.checked_sub(first.0)?;
        let &(at, slot) = self.retained_order.get(usize::try_from(i).ok()?)?;
        (at == g).then_some(slot)
    }

    /// Where each stream's next unordered message is, from what this member
    /// has seen ordered (used when it starts sequencing).
    pub fn takeover_streams(&self, rx: &Receivers) -> Vec<(StreamKey, SenderSeq)> {
        let mut next: BTreeMap<StreamKey, SenderSeq> = BTreeMap::new();
        for (k, s) in rx.iter() {
            if s.base().is_some() {
                next.insert(*k, s.next_deliver());
            }
        }
        let mut g = self.log.next();
        while g <= self.log.highest_known() {
            if let Some(Slot::Message { stream, seq }) = self.log.entry(g) {
                let e = next.entry(stream).or_insert(seq.next());
                *e = (*e).max(seq.next());
            }
            g = g.next();
        }
        next.into_iter().collect()
    }

    /// Of `streams` (each with the next position to order, as
    /// [`Self::takeover_streams`] gives them), those whose last ordered
    /// piece leaves a message unfinished: a new sequencer's marker must wait
    /// for the rest of their messages, or a joiner of its view would begin
    /// inside one (it holds none of the first pieces).
    pub fn open_streams(
        &self,
        rx: &Receivers,
        streams: &[(StreamKey, SenderSeq)],
    ) -> Vec<StreamKey> {
        streams
            .iter()
            .filter(|(key, next)| {
                let Some(last) = next.0.checked_sub(1).filter(|l| *l > 0) else {
                    return false;
                };
                match self.held_message(rx, *key, SenderSeq(last)) {
                    Some(h) => !h.frag.ends_message(),
                    // Delivered and stable: an unfinished message is in
                    // the assembly.
                    None => {
                        rx.get(key)
                            .is_some_and(|s| SenderSeq(last) < s.next_deliver())
                            && self.assembly.unfinished.contains_key(key)
                    }
                }
            })
            .map(|(key, _)| *key)
            .collect()
    }

    /// The streams with messages in flight in the group: ordered and not
    /// yet stable (delivered here or not). `me` counts too when `sending`.
    /// The senders sharing the receivers' buffers now.
    pub fn senders_in_flight(&self, me: StreamKey, sending: bool) -> usize {
        let mut seen: Vec<StreamKey> = Vec::new();
        if sending {
            seen.push(me);
        }
        let stable = self.log.stable();
        let delivered = self
            .retained_order
            .iter()
            .filter(|(g, _)| *g > stable)
            .map(|(_, s)| *s);
        let mut g = self.log.next();
        let undelivered = std::iter::from_fn(|| {
            while g <= self.log.highest_known() {
                let slot = self.log.entry(g);
                g = g.next();
                if slot.is_some() {
                    return slot;
                }
            }
            None
        });
        for slot in delivered.chain(undelivered) {
            if let Slot::Message { stream, .. } = slot {
                if !seen.contains(&stream) {
                    seen.push(stream);
                }
            }
        }
        seen.len()
    }

    /// The cumulative ack to send now, if due: what we hold grew, or the
    /// sequencer seems not to have our last ack (stability lags it after a
    /// retransmission interval `rto`), or `refresh` passed (so a new
    /// sequencer learns where we are).
    pub fn ack_due(&mut self, now: Instant, rto: Duration, refresh: Duration) -> Option<GlobalSeq> {
        // Nothing to ack before our order starts.
        self.log.start()?;
        let lagging =
            self.log.stable() < self.ack_sent && self.ack_sent_at.is_some_and(|t| t + rto <= now);
        let refresh = lagging || self.ack_sent_at.is_none_or(|t| t + refresh <= now);
        if self.held_through > self.ack_sent || refresh {
            self.ack_sent = self.held_through;
            self.ack_sent_at = Some(now);
            return Some(self.held_through);
        }
        None
    }

    /// ORDER positions to nak now, if any are missing and the last ORDER_NAK
    /// is a retransmission interval old.
    pub fn order_naks_due(
        &mut self,
        now: Instant,
        rto: Duration,
    ) -> Option<Vec<(GlobalSeq, GlobalSeq)>> {
        let missing = self.log.missing(NAK_RANGES_MAX * 8);
        if missing.is_empty() || self.order_nak_sent_at.is_some_and(|t| t + rto > now) {
            return None;
        }
        self.order_nak_sent_at = Some(now);
        Some(order_nak_ranges(&missing))
    }

    /// True when everything delivered here is stable (every member holds it).
    pub fn delivered_stable(&self) -> bool {
        self.log.start().is_none() || self.log.stable().0 + 1 >= self.log.next().0
    }

    /// The group's announced stability.
    pub fn stable(&self) -> GlobalSeq {
        self.log.stable()
    }

    /// What we hold through (our cumulative ack).
    pub fn held_through(&self) -> GlobalSeq {
        self.held_through
    }

    /// The last cumulative ack sent.
    pub fn ack_sent(&self) -> GlobalSeq {
        self.ack_sent
    }

    /// Our order's copy.
    pub fn log(&self) -> &OrderLog {
        &self.log
    }
}
