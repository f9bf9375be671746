//! The sequencer: assigns each group's total order and multicasts it reliably.
//!
//! Driver call order (chorusd's sequencer thread and the simulator alike):
//! feed [`Sequencer::handle_input`] (from the host), [`Sequencer::handle_datagram`]
//! (acks and naks on the sequencer's socket) and [`Sequencer::handle_timeout`];
//! after each batch drain [`Sequencer::poll_transmit`], then wait until
//! [`Sequencer::poll_timeout`].

use super::slot::Slot;
use crate::ids::{ClusterId, GlobalSeq, GroupId, Incarnation, NodeId, SenderSeq, ViewId};
use crate::multicast::receivers::RunShape;
use crate::multicast::{to_ranges, StreamKey};
use crate::time::{Duration, Instant};
use crate::wire::datagram::{
    self, Datagram, OrderBatch, OrderEntry, Rejected, NAK_RANGES_MAX, ORDER_ENTRY_BYTES,
    ORDER_PREFIX_BYTES,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddrV4;

/// Bounds and timers of the sequencer.
#[derive(Debug, Clone)]
pub struct SequencerSettings {
    pub node: NodeId,
    pub incarnation: Incarnation,
    pub cluster: ClusterId,
    pub max_datagram_bytes: usize,
    /// How often to announce stability and check retransmission.
    pub tick: Duration,
    /// Records unacked this long are multicast again.
    pub retransmit: Duration,
    /// An empty ORDER at least this often, so members see where the order ends.
    pub heartbeat: Duration,
}

/// What the host tells its sequencer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SequencerInput {
    /// This node sequences `group` in `view`. For a group new to this
    /// sequencer, `next` is the first position to assign and `streams` where
    /// each known sender's next unordered message is.
    View {
        group: GroupId,
        view: ViewId,
        address: SocketAddrV4,
        members: Vec<(NodeId, Incarnation)>,
        next: GlobalSeq,
        streams: Vec<(StreamKey, SenderSeq)>,
        /// What is known stable already (a takeover must not assume more:
        /// members count as holding only this much until they ack).
        stable: GlobalSeq,
        /// We take the order over from a sequencer that is gone: the view
        /// begins with its marker, which tells the survivors the cut, even
        /// when nothing was ordered before (`next` is 1).
        takeover: bool,
        /// For a group new to this sequencer whose order already ran: the
        /// streams whose last ordered piece leaves a message unfinished (a
        /// cut inside it). The view's marker waits for the rest of their
        /// messages, as it waits for any sender inside a message.
        open: Vec<StreamKey>,
    },
    /// Messages `first..end` of a stream are held by this node, in order.
    Arrived {
        group: GroupId,
        stream: StreamKey,
        first: SenderSeq,
        end: SenderSeq,
        /// Where the run's messages end (pieces of a large one).
        shape: RunShape,
    },
    /// This node no longer sequences `group`.
    Stop { group: GroupId },
}

#[derive(Debug)]
struct LogEntry {
    slot: Slot,
    sent_at: Option<Instant>,
}

#[derive(Debug)]
struct SeqGroup {
    view: ViewId,
    view_start: GlobalSeq,
    /// The first position we assigned (see `OrderBatch::sequencer_start`).
    start: GlobalSeq,
    address: SocketAddrV4,
    /// Each member's cumulative ack.
    acked: BTreeMap<NodeId, (Incarnation, GlobalSeq)>,
    /// Next position each stream's next message gets ordered at.
    ordered: BTreeMap<StreamKey, SenderSeq>,
    /// Streams whose last ordered piece leaves a message unfinished.
    open: BTreeSet<StreamKey>,
    /// Views whose markers wait for the open streams to finish, oldest first.
    pending: Vec<PendingView>,
    /// Arrivals that wait behind those markers, in arrival order.
    deferred: VecDeque<Deferred>,
    /// The latest views' first positions (a few: for drivers and checks).
    starts: VecDeque<(ViewId, GlobalSeq)>,
    /// Records from `log_base` to `next - 1` (not yet stable).
    log: VecDeque<LogEntry>,
    log_base: GlobalSeq,
    next: GlobalSeq,
    unsent: GlobalSeq,
    stable: GlobalSeq,
    announced_stable: GlobalSeq,
    last_sent: Option<Instant>,
}

/// Longest wait of a view's marker for senders inside a message, in
/// retransmission intervals: a safety net (a member that cannot ack
/// before it sees the view would otherwise stall the open sender's flow
/// window for good), long enough that loss and partitions of seconds do
/// not trip it (40 was tripped by one of a few hundred milliseconds: sim
/// seed 36847).
const MARKER_WAIT_RTOS: u64 = 250;

/// A view whose marker waits (see `Sequencer::place_markers`).
#[derive(Debug)]
struct PendingView {
    view: ViewId,
    /// When the view was told.
    since: Instant,
    address: SocketAddrV4,
    members: Vec<(NodeId, Incarnation)>,
}

/// A run of arrivals, ordered now or kept until a marker is placed.
#[derive(Debug, Clone, Copy)]
struct Deferred {
    stream: StreamKey,
    first: SenderSeq,
    end: SenderSeq,
    shape: RunShape,
}

impl SeqGroup {
    /// Remembers where the current view starts.
    fn note_start(&mut self) {
        if self.starts.len() == 16 {
            self.starts.pop_front();
        }
        self.starts.push_back((self.view, self.view_start));
    }

    /// Puts `view`'s marker at the next position.
    fn push_marker(&mut self, view: ViewId) {
        self.log.push_back(LogEntry {
            slot: Slot::ViewMarker(view),
            sent_at: None,
        });
        self.next = self.next.next();
    }

    fn entry(&self, g: GlobalSeq) -> Option<&LogEntry> {
        let i = g.0.checked_sub(self.log_base.0)?;
        self.log.get(usize::try_from(i).ok()?)
    }

    fn recompute_stable(&mut self) {
        let min = self.acked.values().map(|(_, a)| *a).min();
        let stable = min.unwrap_or(GlobalSeq(self.next.0 - 1));
        if stable > self.stable {
            self.stable = stable;
        }
        while self.log_base <= self.stable && !self.log.is_empty() {
            self.log.pop_front();
            self.log_base = self.log_base.next();
        }
        if self.log.is_empty() {
            self.log_base = self.next;
        }
    }
}

/// The sequencer of every group this node sequences.
#[derive(Debug)]
pub struct Sequencer {
    settings: SequencerSettings,
    groups: BTreeMap<GroupId, SeqGroup>,
    out: VecDeque<(SocketAddrV4, Vec<u8>)>,
    next_tick: Option<Instant>,
}

impl Sequencer {
    /// A sequencer with no groups yet.
    pub fn new(settings: SequencerSettings) -> Self {
        Sequencer {
            settings,
            groups: BTreeMap::new(),
            out: VecDeque::new(),
            next_tick: None,
        }
    }

    /// Settings for the node as the directory (re)welcomed it. The same
    /// identity welcomed again (a lost link, a directory restart) keeps
    /// every group's order: the members go on in the same views. Only a new
    /// identity starts afresh. Returns true when the state was reset.
    pub fn reconfigure(&mut self, settings: SequencerSettings) -> bool {
        let same = self.settings.node == settings.node
            && self.settings.incarnation == settings.incarnation
            && self.settings.cluster == settings.cluster;
        if !same {
            self.groups.clear();
            self.out.clear();
            self.next_tick = None;
        }
        self.settings = settings;
        !same
    }

    /// Groups currently sequenced here.
    pub fn groups(&self) -> impl Iterator<Item = GroupId> + '_ {
        self.groups.keys().copied()
    }

    /// The next position `group` would assign.
    pub fn next_position(&self, group: GroupId) -> Option<GlobalSeq> {
        self.groups.get(&group).map(|g| g.next)
    }

    /// Where `view` of `group` starts, once its marker is placed (for the
    /// latest few views).
    pub fn view_start(&self, group: GroupId, view: ViewId) -> Option<GlobalSeq> {
        let g = self.groups.get(&group)?;
        g.starts.iter().find(|(v, _)| *v == view).map(|(_, s)| *s)
    }

    /// The stability point of `group` and the last one announced.
    pub fn stability(&self, group: GroupId) -> Option<(GlobalSeq, GlobalSeq)> {
        self.groups
            .get(&group)
            .map(|g| (g.stable, g.announced_stable))
    }

    /// Records held for retransmission in `group` (bounded by stability).
    pub fn log_len(&self, group: GroupId) -> usize {
        self.groups.get(&group).map_or(0, |g| g.log.len())
    }

    /// Takes an input from the host.
    pub fn handle_input(&mut self, now: Instant, input: SequencerInput) {
        match input {
            SequencerInput::View {
                group,
                view,
                address,
                members,
                next,
                streams,
                stable,
                takeover,
                open,
            } => {
                let seqs = (next, stable, takeover);
                self.install_view(now, group, view, address, members, (streams, open), seqs)
            }
            SequencerInput::Arrived {
                group,
                stream,
                first,
                end,
                shape,
            } => {
                let a = Deferred {
                    stream,
                    first,
                    end,
                    shape,
                };
                self.arrived(now, group, a)
            }
            SequencerInput::Stop { group } => {
                self.groups.remove(&group);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn install_view(
        &mut self,
        now: Instant,
        group: GroupId,
        view: ViewId,
        address: SocketAddrV4,
        members: Vec<(NodeId, Incarnation)>,
        (streams, open): (Vec<(StreamKey, SenderSeq)>, Vec<StreamKey>),
        (next, stable, takeover): (GlobalSeq, GlobalSeq, bool),
    ) {
        let Some(g) = self.groups.get_mut(&group) else {
            log::debug!(
                "sequencer: group {group}: starts at {next} in view {view} (takeover {takeover}), streams {streams:?}"
            );
            let mut g = SeqGroup {
                view,
                view_start: next,
                start: next,
                address,
                acked: BTreeMap::new(),
                ordered: streams.into_iter().collect(),
                open: BTreeSet::new(),
                pending: Vec::new(),
                deferred: VecDeque::new(),
                starts: VecDeque::new(),
                log: VecDeque::new(),
                log_base: next,
                next,
                unsent: next,
                stable: stable.min(GlobalSeq(next.0 - 1)),
                announced_stable: GlobalSeq(0),
                last_sent: None,
            };
            // Everyone starts at what is known stable.
            let before = g.stable;
            g.acked = members.iter().map(|&(n, i)| (n, (i, before))).collect();
            g.recompute_stable();
            // A takeover (a group new here whose order already ran) starts
            // the view with a marker too. Survivors read the cut from our
            // first position (`OrderBatch::sequencer_start`), wherever the
            // marker falls.
            let member = |k: &StreamKey| {
                members
                    .iter()
                    .any(|(n, i)| *n == k.node && *i == k.incarnation)
            };
            g.open = open.into_iter().filter(|k| member(k)).collect();
            if (next.0 > 1 || takeover) && !g.open.is_empty() {
                // The cut fell inside live senders' messages: the marker
                // waits for their rest (`place_markers`). Until then our
                // ORDER names the new view, starting at the cut: a joiner
                // of it passes over the unfinished messages' pieces and
                // installs the view at its marker.
                log::debug!(
                    "sequencer: group {group}: view {view}'s marker waits for {} sender(s) inside a message at the cut",
                    g.open.len()
                );
                g.pending.push(PendingView {
                    view,
                    since: now,
                    address,
                    members,
                });
            } else {
                if next.0 > 1 || takeover {
                    g.push_marker(view);
                }
                g.view_start = g.next;
                g.note_start();
            }
            self.groups.insert(group, g);
            // Announce the view start at once so joiners learn where they begin.
            self.emit(now, group, true);
            self.schedule(now);
            return;
        };
        let latest = g.pending.last().map_or(g.view, |p| p.view);
        if view < latest || (view == latest && view > g.view) {
            return; // older than what we know, or told again while it waits
        }
        let member = |k: &StreamKey| {
            members
                .iter()
                .any(|(n, i)| *n == k.node && *i == k.incarnation)
        };
        // A departed node's stream is ordered no further, and its acks no
        // longer count (at once: a live sender finishing a message before
        // the marker must not wait for a stability that the departed hold
        // back). Joiners count from the marker on.
        g.ordered.retain(|k, _| member(k));
        g.open.retain(|k| member(k));
        g.deferred.retain(|a| member(&a.stream));
        g.acked
            .retain(|n, (i, _)| members.iter().any(|(m, j)| m == n && j == i));
        g.recompute_stable();
        if view == g.view {
            g.address = address;
            let before = GlobalSeq(g.next.0 - 1);
            for (node, inc) in members {
                g.acked.entry(node).or_insert((inc, before));
            }
            g.recompute_stable();
            return;
        }
        // The view begins here for everyone: a marker takes a position,
        // and the members install the view when they reach it. The marker
        // waits while a live sender is inside a message (its pieces go on
        // being ordered): every member of the view then holds every piece
        // of what it delivers in it.
        g.pending.push(PendingView {
            view,
            since: now,
            address,
            members,
        });
        self.place_markers(now, group);
    }

    /// Places the markers of the views waiting for them once no sender of
    /// the latest is inside a message, then orders what waited behind them.
    fn place_markers(&mut self, now: Instant, group: GroupId) {
        let Some(g) = self.groups.get_mut(&group) else {
            return;
        };
        let Some(oldest) = g.pending.first() else {
            return;
        };
        // The wait is bounded: a member that needs the view before it can
        // ack (one in a flush towards us) would otherwise hold back the
        // stability that the open sender's flow window waits for. A joiner
        // of a view placed early skips the unfinished message's pieces
        // (and logs it).
        let wait = Duration::from_micros(MARKER_WAIT_RTOS * self.settings.retransmit.as_micros());
        let overdue = oldest.since + wait <= now;
        if !g.open.is_empty() && !overdue {
            return;
        }
        if !g.open.is_empty() {
            log::warn!(
                "sequencer: group {group}: view {} placed while {} sender(s) are inside a message in pieces",
                g.pending.last().map_or(g.view, |p| p.view),
                g.open.len()
            );
        }
        for p in std::mem::take(&mut g.pending) {
            g.push_marker(p.view);
            g.view_start = g.next;
            g.view = p.view;
            g.note_start();
            g.address = p.address;
            let before = GlobalSeq(g.next.0 - 1);
            for (node, inc) in p.members {
                g.acked.entry(node).or_insert((inc, before));
            }
        }
        g.recompute_stable();
        // Announce the view start at once so joiners learn where they begin.
        self.emit(now, group, true);
        let deferred = match self.groups.get_mut(&group) {
            Some(g) => std::mem::take(&mut g.deferred),
            None => return,
        };
        for a in deferred {
            self.arrived(now, group, a);
        }
        self.schedule(now);
    }

    fn arrived(&mut self, now: Instant, group: GroupId, a: Deferred) {
        let Some(g) = self.groups.get_mut(&group) else {
            return;
        };
        let stream = a.stream;
        if !g.ordered.contains_key(&stream) {
            log::debug!(
                "sequencer: group {group}: first arrival of stream {}/{}: {}..{}",
                stream.node,
                stream.incarnation,
                a.first,
                a.end
            );
        }
        // Runs of this stream waiting behind a marker come first.
        let waiting_end = g
            .deferred
            .iter()
            .rev()
            .find(|d| d.stream == stream)
            .map(|d| d.end);
        let next_seq = match waiting_end {
            Some(e) => e,
            None => *g.ordered.entry(stream).or_insert(a.first),
        };
        let next_seq = if a.first > next_seq {
            // The host reports past a gap only when the sender said its
            // stream goes on there (it was dropped from the group and
            // attached again; what it had not made stable was lost): what
            // lies between is never ordered, and members skip it.
            log::info!(
                "sequencer: group {group}: stream {}/{} goes on at {} after a gap from {next_seq}",
                stream.node,
                stream.incarnation,
                a.first,
            );
            g.open.remove(&stream);
            a.first
        } else {
            next_seq
        };
        if a.end <= next_seq {
            // Told before.
            self.emit(now, group, false);
            self.schedule(now);
            return;
        }
        let waiting = !g.pending.is_empty();
        if waiting && (!g.open.contains(&stream) || waiting_end.is_some()) {
            // A view's marker waits: a sender not inside a message starts
            // no new one before it.
            g.deferred.push_back(a);
            return;
        }
        let mut end = a.end;
        let mut open = a.shape.open_at_end;
        if waiting {
            // Inside a message: its pieces are ordered up to its end; what
            // follows waits for the marker.
            if let Some(e) = a.shape.first_end.filter(|e| *e > next_seq && *e < a.end) {
                g.deferred.push_back(Deferred {
                    first: e,
                    shape: RunShape {
                        first_end: None,
                        open_at_end: a.shape.open_at_end,
                    },
                    ..a
                });
                end = e;
                open = false;
            } else if a.shape.first_end.is_some_and(|e| e == a.end) {
                open = false;
            }
        }
        let mut seq = next_seq;
        while seq < end {
            g.log.push_back(LogEntry {
                slot: Slot::Message { stream, seq },
                sent_at: None,
            });
            seq = seq.next();
            g.next = g.next.next();
        }
        g.ordered.insert(stream, seq);
        if open {
            g.open.insert(stream);
        } else {
            g.open.remove(&stream);
        }
        self.emit(now, group, false);
        if waiting {
            self.place_markers(now, group);
        }
        self.schedule(now);
    }

    /// Takes an ORDER_ACK or ORDER_NAK from a member.
    pub fn handle_datagram(&mut self, now: Instant, bytes: &[u8]) {
        let d = match datagram::decode(bytes, self.settings.cluster) {
            Ok(d) => d,
            Err(Rejected::OtherCluster(_)) => return,
            Err(Rejected::Malformed(e)) => {
                log::debug!("sequencer: malformed datagram: {e}");
                return;
            }
        };
        match d {
            Datagram::OrderAck(a) if a.sequencer_incarnation == self.settings.incarnation => {
                if let Some(g) = self.groups.get_mut(&a.group) {
                    if let Some((inc, acked)) = g.acked.get_mut(&a.from) {
                        if *inc == a.from_incarnation && a.cumulative > *acked {
                            *acked = a.cumulative.min(GlobalSeq(g.next.0 - 1));
                            g.recompute_stable();
                        }
                    }
                }
            }
            Datagram::OrderNak(n) if n.sequencer_incarnation == self.settings.incarnation => {
                let ranges: Vec<(GlobalSeq, GlobalSeq)> = n.ranges;
                self.resend(now, n.group, &ranges);
            }
            _ => {}
        }
    }

    fn resend(&mut self, now: Instant, group: GroupId, ranges: &[(GlobalSeq, GlobalSeq)]) {
        let Some(g) = self.groups.get_mut(&group) else {
            return;
        };
        for &(lo, hi) in ranges {
            let lo = lo.max(g.log_base);
            let hi = hi.min(GlobalSeq(g.unsent.0.saturating_sub(1)));
            if lo <= hi {
                Self::pack(&self.settings, g, group, lo, hi, now, &mut self.out);
            }
        }
    }

    /// Drives timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_tick.is_some_and(|t| t > now) {
            return;
        }
        let groups: Vec<GroupId> = self.groups.keys().copied().collect();
        for id in groups {
            self.place_markers(now, id);
            let Some(g) = self.groups.get_mut(&id) else {
                continue;
            };
            // Backup retransmission: the oldest unstable records, if old.
            let rto = self.settings.retransmit;
            let first_unacked = g.stable.next();
            let stale = g
                .entry(first_unacked)
                .and_then(|e| e.sent_at)
                .is_some_and(|t| t + rto <= now);
            if stale {
                let per_dgram = Self::entries_per_datagram(&self.settings) as u64;
                let hi = GlobalSeq((first_unacked.0 + per_dgram - 1).min(g.unsent.0 - 1));
                Self::pack(&self.settings, g, id, first_unacked, hi, now, &mut self.out);
            }
            let heartbeat_due = g
                .last_sent
                .is_none_or(|t| t + self.settings.heartbeat <= now);
            let announce = g.stable > g.announced_stable || heartbeat_due;
            self.emit(now, id, announce);
        }
        self.next_tick = None;
        self.schedule(now);
    }

    fn schedule(&mut self, now: Instant) {
        if !self.groups.is_empty() && self.next_tick.is_none() {
            self.next_tick = Some(now + self.settings.tick);
        }
    }

    /// The next datagram to send, written into `buf` (cleared first).
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> Option<SocketAddrV4> {
        let (dest, mut bytes) = self.out.pop_front()?;
        std::mem::swap(buf, &mut bytes);
        Some(dest)
    }

    /// When to call [`Sequencer::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_tick
    }

    fn entries_per_datagram(s: &SequencerSettings) -> usize {
        (s.max_datagram_bytes.saturating_sub(ORDER_PREFIX_BYTES) / ORDER_ENTRY_BYTES).max(1)
    }

    /// Multicasts unsent records; with `force`, an empty heartbeat if none.
    fn emit(&mut self, now: Instant, group: GroupId, force: bool) {
        let Some(g) = self.groups.get_mut(&group) else {
            return;
        };
        if g.unsent < g.next {
            let hi = GlobalSeq(g.next.0 - 1);
            let lo = g.unsent.max(g.log_base);
            g.unsent = g.next;
            if lo <= hi {
                Self::pack(&self.settings, g, group, lo, hi, now, &mut self.out);
                return;
            }
        }
        if force {
            let batch = Self::batch(&self.settings, g, group, g.next, Vec::new());
            g.announced_stable = g.stable;
            g.last_sent = Some(now);
            let mut bytes = Vec::with_capacity(ORDER_PREFIX_BYTES);
            datagram::encode(&Datagram::Order(batch), self.settings.cluster, &mut bytes);
            self.out.push_back((g.address, bytes));
        }
    }

    fn batch(
        s: &SequencerSettings,
        g: &SeqGroup,
        group: GroupId,
        first: GlobalSeq,
        entries: Vec<OrderEntry>,
    ) -> OrderBatch {
        OrderBatch {
            group,
            sequencer: s.node,
            sequencer_incarnation: s.incarnation,
            view: g.view,
            view_start: g.view_start,
            sequencer_start: g.start,
            stable: g.stable.min(GlobalSeq(first.0 - 1)),
            first,
            entries,
        }
    }

    /// Multicasts records `lo..=hi` in as few datagrams as fit.
    fn pack(
        s: &SequencerSettings,
        g: &mut SeqGroup,
        group: GroupId,
        lo: GlobalSeq,
        hi: GlobalSeq,
        now: Instant,
        out: &mut VecDeque<(SocketAddrV4, Vec<u8>)>,
    ) {
        let max_entries = Self::entries_per_datagram(s);
        let mut pos = lo;
        while pos <= hi {
            let first = pos;
            let mut entries: Vec<OrderEntry> = Vec::new();
            while pos <= hi {
                let Some(e) = g.entry(pos) else { break };
                let (stream, seq) = e.slot.to_wire();
                let extends = entries.last().is_some_and(|l| {
                    l.sender == stream.node
                        && l.sender_incarnation == stream.incarnation
                        && l.first.0 + u64::from(l.count) == seq.0
                        && l.count < u16::MAX
                });
                if extends {
                    if let Some(l) = entries.last_mut() {
                        l.count += 1;
                    }
                } else if entries.len() == max_entries {
                    break;
                } else {
                    entries.push(OrderEntry {
                        sender: stream.node,
                        sender_incarnation: stream.incarnation,
                        first: seq,
                        count: 1,
                    });
                }
                let i = (pos.0 - g.log_base.0) as usize;
                if let Some(e) = g.log.get_mut(i) {
                    e.sent_at = Some(now);
                }
                pos = pos.next();
            }
            if entries.is_empty() {
                break;
            }
            let batch = Self::batch(s, g, group, first, entries);
            g.announced_stable = g.announced_stable.max(batch.stable);
            g.last_sent = Some(now);
            let mut bytes = Vec::with_capacity(s.max_datagram_bytes);
            datagram::encode(&Datagram::Order(batch), s.cluster, &mut bytes);
            out.push_back((g.address, bytes));
        }
    }
}

/// Builds the NAK ranges a member sends for missing positions.
pub fn order_nak_ranges(missing: &[u64]) -> Vec<(GlobalSeq, GlobalSeq)> {
    to_ranges(missing.iter().copied(), NAK_RANGES_MAX)
        .into_iter()
        .map(|(a, b)| (GlobalSeq(a), GlobalSeq(b)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::datagram::{OrderAck, OrderNak};
    use std::net::Ipv4Addr;

    const C: ClusterId = ClusterId(1);
    const G: GroupId = GroupId(1);

    fn seq() -> Sequencer {
        Sequencer::new(SequencerSettings {
            node: NodeId(1),
            incarnation: Incarnation(9),
            cluster: C,
            max_datagram_bytes: 1400,
            tick: Duration::from_millis(10),
            retransmit: Duration::from_millis(50),
            heartbeat: Duration::from_millis(100),
        })
    }

    fn key(n: u32) -> StreamKey {
        StreamKey {
            node: NodeId(n),
            incarnation: Incarnation(1),
        }
    }

    fn drain(s: &mut Sequencer) -> Vec<OrderBatch> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        while s.poll_transmit(&mut buf).is_some() {
            match datagram::decode(&buf, C) {
                Ok(Datagram::Order(b)) => out.push(b),
                other => panic!("unexpected {other:?}"),
            }
        }
        out
    }

    fn view(s: &mut Sequencer, now: Instant, v: u64, members: &[u32]) {
        s.handle_input(
            now,
            SequencerInput::View {
                group: G,
                view: ViewId(v),
                address: SocketAddrV4::new(Ipv4Addr::new(239, 1, 1, 1), 7000),
                members: members
                    .iter()
                    .map(|&n| (NodeId(n), Incarnation(1)))
                    .collect(),
                next: GlobalSeq(1),
                streams: Vec::new(),
                stable: GlobalSeq(0),
                takeover: false,
                open: Vec::new(),
            },
        );
    }

    fn ack(s: &mut Sequencer, now: Instant, from: u32, g: u64) {
        let mut b = Vec::new();
        datagram::encode(
            &Datagram::OrderAck(OrderAck {
                group: G,
                from: NodeId(from),
                from_incarnation: Incarnation(1),
                sequencer_incarnation: Incarnation(9),
                cumulative: GlobalSeq(g),
            }),
            C,
            &mut b,
        );
        s.handle_datagram(now, &b);
    }

    #[test]
    fn arrivals_are_ordered_in_runs_and_stability_follows_acks() {
        let mut s = seq();
        let t = Instant::ZERO;
        view(&mut s, t, 1, &[1, 2]);
        drain(&mut s);
        s.handle_input(
            t,
            SequencerInput::Arrived {
                group: G,
                stream: key(2),
                first: SenderSeq(1),
                end: SenderSeq(4),
                shape: RunShape::whole(SenderSeq(1)),
            },
        );
        s.handle_input(
            t,
            SequencerInput::Arrived {
                group: G,
                stream: key(1),
                first: SenderSeq(1),
                end: SenderSeq(2),
                shape: RunShape::whole(SenderSeq(1)),
            },
        );
        let b = drain(&mut s);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].first, GlobalSeq(1));
        assert_eq!(
            (b[0].entries[0].sender, b[0].entries[0].count),
            (NodeId(2), 3)
        );
        assert_eq!(b[1].first, GlobalSeq(4));
        // A duplicate report orders nothing twice.
        s.handle_input(
            t,
            SequencerInput::Arrived {
                group: G,
                stream: key(2),
                first: SenderSeq(1),
                end: SenderSeq(4),
                shape: RunShape::whole(SenderSeq(1)),
            },
        );
        assert!(drain(&mut s).is_empty());
        ack(&mut s, t, 1, 4);
        assert_eq!(s.log_len(G), 4, "not stable until every member acks");
        ack(&mut s, t, 2, 3);
        assert_eq!(s.log_len(G), 1);
        s.handle_timeout(t + Duration::from_millis(10));
        let hb = drain(&mut s);
        assert_eq!(hb.last().map(|b| b.stable), Some(GlobalSeq(3)));
    }

    #[test]
    fn naks_are_answered_and_stale_records_resent() {
        let mut s = seq();
        let t = Instant::ZERO;
        view(&mut s, t, 1, &[1, 2]);
        s.handle_input(
            t,
            SequencerInput::Arrived {
                group: G,
                stream: key(2),
                first: SenderSeq(1),
                end: SenderSeq(3),
                shape: RunShape::whole(SenderSeq(1)),
            },
        );
        drain(&mut s);
        let mut b = Vec::new();
        datagram::encode(
            &Datagram::OrderNak(OrderNak {
                group: G,
                from: NodeId(2),
                from_incarnation: Incarnation(1),
                sequencer_incarnation: Incarnation(9),
                ranges: vec![(GlobalSeq(2), GlobalSeq(2))],
            }),
            C,
            &mut b,
        );
        s.handle_datagram(t, &b);
        let r = drain(&mut s);
        assert_eq!(
            (r[0].first, r[0].entries[0].first),
            (GlobalSeq(2), SenderSeq(2))
        );
        s.handle_timeout(t + Duration::from_millis(60));
        let r = drain(&mut s);
        assert!(r
            .iter()
            .any(|b| b.first == GlobalSeq(1) && !b.entries.is_empty()));
    }

    #[test]
    fn a_new_member_counts_from_its_views_start() {
        let mut s = seq();
        let t = Instant::ZERO;
        view(&mut s, t, 1, &[1]);
        s.handle_input(
            t,
            SequencerInput::Arrived {
                group: G,
                stream: key(1),
                first: SenderSeq(1),
                end: SenderSeq(3),
                shape: RunShape::whole(SenderSeq(1)),
            },
        );
        ack(&mut s, t, 1, 2);
        view(&mut s, t, 2, &[1, 2]);
        let b = drain(&mut s);
        let last = b.last().map(|b| (b.view, b.view_start, b.stable));
        // The marker of view 2 takes position 3; the new member starts at 4.
        assert_eq!(last, Some((ViewId(2), GlobalSeq(4), GlobalSeq(2))));
        let marker = b
            .iter()
            .find(|b| b.first == GlobalSeq(3))
            .map(|b| b.entries[0]);
        assert_eq!(
            marker.map(|e| (e.sender, e.sender_incarnation)),
            Some((NodeId(0), Incarnation(2)))
        );
    }

    /// Regression (crash sweep seed 108): the host tells its sequencer the
    /// same view again when it installs it at the marker; that must not move
    /// the view's start, or survivors of a flush read a wrong cut from it.
    #[test]
    fn the_same_view_again_keeps_its_start() {
        let mut s = seq();
        let t = Instant::ZERO;
        view(&mut s, t, 1, &[1, 2]);
        view(&mut s, t, 2, &[1, 2]);
        s.handle_input(
            t,
            SequencerInput::Arrived {
                group: G,
                stream: key(2),
                first: SenderSeq(1),
                end: SenderSeq(5),
                shape: RunShape::whole(SenderSeq(1)),
            },
        );
        view(&mut s, t, 2, &[1, 2]);
        let b = drain(&mut s);
        assert!(b
            .iter()
            .filter(|b| b.view == ViewId(2))
            .all(|b| b.view_start == GlobalSeq(2)));
    }

    fn arrived(s: &mut Sequencer, t: Instant, node: u32, first: u64, end: u64, shape: RunShape) {
        let (first, end) = (SenderSeq(first), SenderSeq(end));
        s.handle_input(
            t,
            SequencerInput::Arrived {
                group: G,
                stream: key(node),
                first,
                end,
                shape,
            },
        );
    }

    /// The global positions of the records drained, as (position, node,
    /// stream position); markers as node 0.
    fn records(b: &[OrderBatch]) -> Vec<(u64, u32, u64)> {
        let mut out = Vec::new();
        for batch in b {
            let mut g = batch.first.0;
            for e in &batch.entries {
                for i in 0..u64::from(e.count) {
                    out.push((g, e.sender.0, e.first.0 + i));
                    g += 1;
                }
            }
        }
        out
    }

    /// A view's marker never splits a live sender's large message: the
    /// pieces still to come are ordered first, other senders' new messages
    /// wait behind the marker, and a departed sender's unfinished message
    /// holds nothing up.
    #[test]
    fn a_marker_waits_for_a_message_in_pieces() {
        let mut s = seq();
        let t = Instant::ZERO;
        view(&mut s, t, 1, &[1, 2, 3]);
        // Node 2 has begun a message of pieces 1..=4 (two so far); node 3
        // one of pieces 1..=3 (one so far).
        let open = RunShape {
            first_end: None,
            open_at_end: true,
        };
        arrived(&mut s, t, 2, 1, 3, open);
        arrived(&mut s, t, 3, 1, 2, open);
        drain(&mut s);
        // View 2 drops node 3: its message will never end.
        view(&mut s, t, 2, &[1, 2]);
        assert!(
            records(&drain(&mut s)).iter().all(|r| r.1 != 0),
            "no marker while node 2 is inside a message"
        );
        // Node 1 sends a whole message: it waits behind the marker.
        arrived(&mut s, t, 1, 1, 2, RunShape::whole(SenderSeq(1)));
        assert!(records(&drain(&mut s)).is_empty());
        // Node 2's last pieces and then a whole message arrive in one run.
        let shape = RunShape {
            first_end: Some(SenderSeq(5)),
            open_at_end: false,
        };
        arrived(&mut s, t, 2, 3, 6, shape);
        let r = records(&drain(&mut s));
        let expect = vec![
            (4, 2, 3),
            (5, 2, 4),
            (6, 0, 1), // a marker (node 0)
            (7, 1, 1),
            (8, 2, 5),
        ];
        assert_eq!(r, expect);
        assert_eq!(s.view_start(G, ViewId(2)), Some(GlobalSeq(7)));
    }

    /// A takeover whose cut fell inside a live sender's message: the new
    /// sequencer orders the message's rest before its view's marker (a
    /// joiner of the view would otherwise begin inside the message), while
    /// its first ORDER already tells the survivors the cut.
    #[test]
    fn a_takeover_marker_waits_for_a_message_cut_in_pieces() {
        let mut s = seq();
        let t = Instant::ZERO;
        s.handle_input(
            t,
            SequencerInput::View {
                group: G,
                view: ViewId(5),
                address: SocketAddrV4::new(Ipv4Addr::new(239, 1, 1, 1), 7000),
                members: [1, 2, 3]
                    .iter()
                    .map(|&n| (NodeId(n), Incarnation(1)))
                    .collect(),
                // The old order ended at 10 with node 2's piece 3 (of 1..=5)
                // and node 3's whole message 1.
                next: GlobalSeq(11),
                streams: vec![(key(2), SenderSeq(4)), (key(3), SenderSeq(2))],
                stable: GlobalSeq(8),
                takeover: true,
                // Node 4 (gone) was inside a message too: it holds nothing up.
                open: vec![key(2), key(4)],
            },
        );
        let first = drain(&mut s);
        assert!(!first.is_empty(), "the takeover is announced at once");
        for b in &first {
            assert_eq!(b.sequencer_start, GlobalSeq(11), "the cut is told");
            assert!(b.entries.is_empty(), "no marker yet: {b:?}");
        }
        assert_eq!(s.view_start(G, ViewId(5)), None);
        // Node 3's next message waits behind the marker.
        arrived(&mut s, t, 3, 2, 3, RunShape::whole(SenderSeq(2)));
        assert!(records(&drain(&mut s)).is_empty());
        // Node 2's last two pieces end the message: then the marker.
        let rest = RunShape {
            first_end: Some(SenderSeq(6)),
            open_at_end: false,
        };
        arrived(&mut s, t, 2, 4, 6, rest);
        let expect = vec![
            (11, 2, 4),
            (12, 2, 5),
            (13, 0, 1), // the marker
            (14, 3, 2),
        ];
        assert_eq!(records(&drain(&mut s)), expect);
        assert_eq!(s.view_start(G, ViewId(5)), Some(GlobalSeq(14)));
    }
}
