//! The per-daemon state machine: one per chorusd.
//!
//! It owns the daemon's sessions (local apps) and their members, every group
//! this node takes part in ([`group::GroupState`]), and the conversation with
//! the directory. It never touches a socket or a clock.
//!
//! # Driver call order
//! The daemon's IO thread and the simulator drive a [`Host`] the same way:
//! 1. Feed inputs as they come: [`Host::handle_directory_connected`],
//!    [`Host::handle_directory`], [`Host::handle_directory_lost`],
//!    [`Host::handle_app_connect`], [`Host::handle_app`] (only while
//!    [`Host::can_accept`] is true for that session, which is the
//!    back-pressure), [`Host::handle_app_disconnect`],
//!    [`Host::handle_datagram`], [`Host::handle_timeout`].
//! 2. After each batch of inputs, drain the outputs with [`drive::drain`],
//!    which fixes the order: [`Host::poll_multicast_change`] (join/leave
//!    multicast groups before sending to them), [`Host::poll_transmit`],
//!    [`Host::poll_sequencer`], [`Host::poll_directory`], [`Host::poll_app`],
//!    [`Host::poll_close_session`].
//! 3. Sleep until [`Host::poll_timeout`] or the next input.
//!
//! Draining after a batch rather than after each input is what batches many
//! small messages into one datagram.

mod apps;
mod directory;
pub mod drive;
pub mod group;
pub mod planted;
mod session;

use crate::ids::{ClusterId, GroupId, Incarnation, MemberId, NodeId, ViewId};
use crate::multicast::StreamKey;
use crate::order::sequencer::SequencerInput;
use crate::time::{Duration, Instant};
use crate::wire::app::FromDaemon;
use crate::wire::datagram::{
    self, Datagram, FlushReport, OrderAck, OrderNak, Rejected, DATA_MSG_OVERHEAD_BYTES,
    DATA_PREFIX_BYTES,
};
use crate::wire::directory::ToDirectory;
use crate::SenderSeq;
use group::{Control, Delivered, GroupState};
use session::{Member, Session};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};

pub use session::{Credentials, SessionId};

/// What a host is and the bounds it keeps.
#[derive(Debug, Clone)]
pub struct HostSettings {
    pub node_name: String,
    pub incarnation: Incarnation,
    pub ip: Ipv4Addr,
    pub data_port: u16,
    pub order_port: u16,
    pub max_datagram_bytes: usize,
    pub send_window_messages: usize,
    pub receive_window_messages: usize,
    pub ack_interval: Duration,
    pub retransmit: Duration,
    /// Shown by `chorusctl status` while no directory link is up (the
    /// configured addresses).
    pub directory_label: String,
    pub version: String,
}

/// A change of multicast membership the edge must make on its sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MulticastChange {
    Join(SocketAddrV4),
    Leave(SocketAddrV4),
}

/// Counters for logs and status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostStats {
    pub datagrams_in: u64,
    pub malformed_in: u64,
    pub messages_accepted: u64,
    pub messages_delivered: u64,
    pub naks_sent: u64,
    pub retransmits: u64,
}

/// The daemon's protocol state.
#[derive(Debug)]
pub struct Host {
    s: HostSettings,
    node: Option<NodeId>,
    cluster: Option<ClusterId>,
    connected: bool,
    /// The directory the link is up with, as the edge names it.
    directory_in_use: Option<String>,
    groups: BTreeMap<GroupId, GroupState>,
    group_ids: BTreeMap<String, GroupId>,
    node_names: BTreeMap<NodeId, String>,
    sessions: BTreeMap<SessionId, Session>,
    members: BTreeMap<MemberId, Member>,
    next_member: u32,
    pending_lists: BTreeMap<u32, (SessionId, u32)>,
    next_list: u32,
    stream_next: BTreeMap<GroupId, SenderSeq>,
    dirty: BTreeSet<GroupId>,
    out_dgrams: VecDeque<(SocketAddrV4, Vec<u8>)>,
    pool: Vec<Vec<u8>>,
    out_dir: VecDeque<ToDirectory>,
    out_app: VecDeque<(SessionId, FromDaemon)>,
    out_close: VecDeque<SessionId>,
    out_mcast: VecDeque<MulticastChange>,
    out_seq: VecDeque<SequencerInput>,
    next_tick: Option<Instant>,
    stats: HostStats,
    planted: planted::Planted,
}

impl Host {
    /// A host not yet registered with the directory.
    pub fn new(settings: HostSettings) -> Self {
        Host {
            s: settings,
            node: None,
            cluster: None,
            connected: false,
            directory_in_use: None,
            groups: BTreeMap::new(),
            group_ids: BTreeMap::new(),
            node_names: BTreeMap::new(),
            sessions: BTreeMap::new(),
            members: BTreeMap::new(),
            next_member: 1,
            pending_lists: BTreeMap::new(),
            next_list: 1,
            stream_next: BTreeMap::new(),
            dirty: BTreeSet::new(),
            out_dgrams: VecDeque::new(),
            pool: Vec::new(),
            out_dir: VecDeque::new(),
            out_app: VecDeque::new(),
            out_close: VecDeque::new(),
            out_mcast: VecDeque::new(),
            out_seq: VecDeque::new(),
            next_tick: None,
            stats: HostStats::default(),
            planted: planted::Planted::default(),
        }
    }

    /// The node id, once the directory has welcomed us.
    pub fn node(&self) -> Option<NodeId> {
        self.node
    }

    /// The cluster id, once the directory has welcomed us.
    pub fn cluster(&self) -> Option<ClusterId> {
        self.cluster
    }

    /// Counters.
    pub fn stats(&self) -> HostStats {
        self.stats
    }

    /// The settings this host runs with.
    pub fn settings(&self) -> &HostSettings {
        &self.s
    }

    /// Plants test-only bugs (the simulator's checks of its checkers).
    #[doc(hidden)]
    pub fn plant(&mut self, planted: planted::Planted) {
        self.planted = planted;
    }

    /// Groups this node takes part in.
    pub fn group(&self, id: GroupId) -> Option<&GroupState> {
        self.groups.get(&id)
    }

    /// Every group this node takes part in.
    pub fn groups(&self) -> impl Iterator<Item = &GroupState> {
        self.groups.values()
    }

    /// True when every message accepted from apps is stable (SIGTERM waits for it).
    pub fn is_drained(&self) -> bool {
        self.groups.values().all(|g| g.sends_drained())
    }

    /// The largest payload a member named `name` can send.
    pub fn max_payload(&self, name: &str) -> usize {
        self.s
            .max_datagram_bytes
            .saturating_sub(DATA_PREFIX_BYTES + DATA_MSG_OVERHEAD_BYTES + name.len().min(255))
    }

    // ----- network -----

    /// A datagram from the multicast or unicast socket.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddrV4, bytes: &[u8]) {
        let Some(cluster) = self.cluster else { return };
        self.stats.datagrams_in += 1;
        let d = match datagram::decode(bytes, cluster) {
            Ok(d) => d,
            Err(Rejected::OtherCluster(_)) => return,
            Err(Rejected::Malformed(e)) => {
                self.stats.malformed_in += 1;
                if self.stats.malformed_in.is_power_of_two() {
                    log::warn!(
                        "malformed datagram from {from}: {e} ({} so far)",
                        self.stats.malformed_in
                    );
                }
                return;
            }
        };
        let gid = d.group();
        let Some(g) = self.groups.get_mut(&gid) else {
            return;
        };
        match d {
            Datagram::Data(data) => {
                if g.on_data(&data) {
                    self.pump(now, gid);
                }
            }
            Datagram::Order(b) => {
                if g.on_order(&b) {
                    self.pump(now, gid);
                } else {
                    // Stability may still have moved.
                    self.dirty.insert(gid);
                }
            }
            Datagram::Nak(n) => {
                // Repair goes to the requester's data address from the
                // view; the source address is only a fallback.
                let dest = g
                    .nodes
                    .get(&n.from)
                    .map_or(from, |info| SocketAddrV4::new(info.ip, info.data_port));
                if n.sender == self.node.unwrap_or_default()
                    && n.sender_incarnation == self.s.incarnation
                {
                    self.answer_nak(now, gid, dest, &n.ranges);
                } else if let (Some(cluster), false) = (self.cluster, self.planted.no_retransmit) {
                    let key = StreamKey {
                        node: n.sender,
                        incarnation: n.sender_incarnation,
                    };
                    for &(lo, hi) in &n.ranges {
                        self.stats.retransmits += 1;
                        g.pack_repair(
                            cluster,
                            self.s.max_datagram_bytes,
                            key,
                            lo,
                            hi,
                            dest,
                            &mut self.out_dgrams,
                        );
                    }
                }
            }
            Datagram::OrderNak(n) => {
                let dest = g
                    .nodes
                    .get(&n.from)
                    .map_or(from, |info| SocketAddrV4::new(info.ip, info.data_port));
                if let Some(cluster) = self.cluster {
                    g.pack_order_repair(
                        cluster,
                        self.s.max_datagram_bytes,
                        &n.ranges,
                        dest,
                        &mut self.out_dgrams,
                    );
                }
            }
            Datagram::FlushReport(r) => {
                g.on_flush_report(&r);
                self.pump(now, gid);
            }
            Datagram::OrderAck(_) => {}
        }
        self.schedule(now);
    }

    pub(super) fn answer_nak(
        &mut self,
        now: Instant,
        gid: GroupId,
        from: SocketAddrV4,
        ranges: &[(SenderSeq, SenderSeq)],
    ) {
        let (Some(cluster), Some(g)) = (self.cluster, self.groups.get_mut(&gid)) else {
            return;
        };
        if self.planted.no_retransmit {
            return;
        }
        for &(lo, hi) in ranges {
            let lo = lo.max(SenderSeq(
                g.next_stream_seq().0.saturating_sub(g.send.len() as u64),
            ));
            let hi = hi.min(SenderSeq(g.next_stream_seq().0.saturating_sub(1)));
            if lo <= hi {
                self.stats.retransmits += 1;
                g.pack_data(
                    now,
                    cluster,
                    self.s.max_datagram_bytes,
                    lo,
                    hi,
                    from,
                    &mut self.out_dgrams,
                    &mut self.pool,
                );
            }
        }
    }

    /// After new data or order: deliver, report arrivals to the sequencer.
    pub(super) fn pump(&mut self, _now: Instant, gid: GroupId) {
        loop {
            let Some(g) = self.groups.get_mut(&gid) else {
                return;
            };
            if let Some(cmd) = g.flush_progress() {
                self.out_seq.push_back(cmd);
            }
            self.out_seq.extend(g.arrivals());
            if !g.announced {
                match g.order_start_view() {
                    None => return,
                    Some(sv) if sv == g.view => {
                        self.announce_view(gid);
                        continue;
                    }
                    // deliver() installs the later view first, and announces it.
                    Some(_) => {}
                }
            }
            g.deliver();
            self.dirty.insert(gid);
            let Some(view) = self.route_deliveries(gid) else {
                return;
            };
            // The order reached a view marker: install that view here, tell
            // the members, and go on delivering in the new view.
            let Some(g) = self.groups.get_mut(&gid) else {
                return;
            };
            let Some(v) = g.pending_view(view).cloned() else {
                return;
            };
            if let Some(cmd) = g.install(&v) {
                self.out_seq.push_back(cmd);
            }
            log::debug!("group {}: view {} installed", v.group_name, v.view);
            self.announce_view(gid);
        }
    }

    /// Hands delivered messages to the local members; returns a view to
    /// install if the order reached one (it is always last).
    pub(super) fn route_deliveries(&mut self, gid: GroupId) -> Option<ViewId> {
        let g = self.groups.get_mut(&gid)?;
        let (view, name) = (g.view, g.name.clone());
        let mut next_view = None;
        let mut deliveries = Vec::with_capacity(g.deliveries.len());
        for d in g.deliveries.drain(..) {
            match d {
                Delivered::Message(m) => deliveries.push(m),
                Delivered::View(v) => next_view = Some(v),
            }
        }
        let targets: Vec<SessionId> = self
            .members
            .values()
            .filter(|m| m.group == Some(gid) && m.active)
            .map(|m| m.session)
            .collect();
        for d in deliveries {
            self.stats.messages_delivered += 1;
            let sender = format!("{}:{}", self.node_name(d.node), d.sender_name);
            let mut payload = Some(d.payload);
            for (i, s) in targets.iter().enumerate() {
                // The last member takes the payload; the others get copies.
                let bytes = if i + 1 == targets.len() {
                    payload.take().unwrap_or_default()
                } else {
                    payload.clone().unwrap_or_default()
                };
                self.out_app.push_back((
                    *s,
                    FromDaemon::Message {
                        group: name.clone(),
                        view,
                        sender: sender.clone(),
                        order: d.order,
                        seq: d.seq,
                        payload: bytes,
                    },
                ));
            }
        }
        next_view
    }

    // ----- timers -----

    pub(super) fn schedule(&mut self, now: Instant) {
        if self.next_tick.is_none() && !self.groups.is_empty() {
            self.next_tick = Some(now + self.s.ack_interval);
        }
    }

    /// Drives timers: acks, naks, retransmission, detaching idle groups.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_tick.is_some_and(|t| t > now) {
            return;
        }
        self.next_tick = None;
        let ids: Vec<GroupId> = self.groups.keys().copied().collect();
        let mut controls = Vec::new();
        for gid in ids {
            let Some(g) = self.groups.get_mut(&gid) else {
                continue;
            };
            controls.clear();
            g.tick(now, &mut controls);
            // Arrivals are reported as news comes in; once a tick too, so
            // that a held run no event pointed at is still ordered.
            self.out_seq.extend(g.arrivals());
            let due = if self.planted.no_retransmit {
                Vec::new()
            } else {
                g.send.due_for_retransmit(now, self.s.retransmit)
            };
            if let (Some(cluster), Some(&first)) = (self.cluster, due.first()) {
                // Resend the run from the first message the sequencer lacks.
                let last = due.last().copied().unwrap_or(first);
                self.stats.retransmits += 1;
                let dest = g.address;
                g.pack_data(
                    now,
                    cluster,
                    self.s.max_datagram_bytes,
                    first,
                    last,
                    dest,
                    &mut self.out_dgrams,
                    &mut self.pool,
                );
            }
            // A member whose join is still pending counts too: detaching
            // now would leave it joined at the directory to a group we quit.
            let has_members = self
                .members
                .values()
                .any(|m| m.group == Some(gid) || (m.group.is_none() && m.group_name == g.name));
            // A join after our Detach does not cancel it (the directory
            // reads the Detach first): it is a new attachment, after GroupEnded.
            let detach = !has_members
                && !g.detach_sent
                && g.sends_drained()
                && g.delivered_stable()
                && self.connected;
            for c in controls.drain(..) {
                self.send_control(gid, c);
            }
            if detach {
                // We keep our part (and go on sequencing if we do) until the
                // directory answers with GroupEnded: views may still name us.
                if let Some(g) = self.groups.get_mut(&gid) {
                    g.detach_sent = true;
                }
                self.out_dir.push_back(ToDirectory::Detach { group: gid });
            }
        }
        self.schedule(now);
    }

    pub(super) fn send_control(&mut self, gid: GroupId, c: Control) {
        let (Some(cluster), Some(node)) = (self.cluster, self.node) else {
            return;
        };
        let from_incarnation = self.s.incarnation;
        let seq_inc = self
            .groups
            .get(&gid)
            .and_then(|g| g.nodes.get(&g.sequencer))
            .map(|n| n.incarnation)
            .unwrap_or_default();
        // After a Detach our acks would be counted for our next attachment.
        if matches!(c, Control::OrderAck(..))
            && self.groups.get(&gid).is_some_and(|g| g.detach_sent)
        {
            return;
        }
        let mut buf = self.pool.pop().unwrap_or_default();
        buf.clear();
        let dest = match c {
            Control::DataNak(dest, nak) => {
                self.stats.naks_sent += 1;
                datagram::encode(&Datagram::Nak(nak), cluster, &mut buf);
                dest
            }
            Control::OrderAck(dest, cumulative) => {
                let a = OrderAck {
                    group: gid,
                    from: node,
                    from_incarnation,
                    sequencer_incarnation: seq_inc,
                    cumulative,
                };
                datagram::encode(&Datagram::OrderAck(a), cluster, &mut buf);
                dest
            }
            Control::FlushReport(dest, view, held, anchored) => {
                let r = FlushReport {
                    group: gid,
                    view,
                    from: node,
                    from_incarnation,
                    held,
                    anchored,
                };
                datagram::encode(&Datagram::FlushReport(r), cluster, &mut buf);
                dest
            }
            Control::OrderNak(dest, ranges) => {
                self.stats.naks_sent += 1;
                let n = OrderNak {
                    group: gid,
                    from: node,
                    from_incarnation,
                    sequencer_incarnation: seq_inc,
                    ranges,
                };
                datagram::encode(&Datagram::OrderNak(n), cluster, &mut buf);
                dest
            }
        };
        self.out_dgrams.push_back((dest, buf));
    }

    // ----- outputs -----

    /// Multicast memberships to add or drop.
    pub fn poll_multicast_change(&mut self) -> Option<MulticastChange> {
        self.out_mcast.pop_front()
    }

    /// The next datagram, swapped into `buf`; returns its destination.
    /// Pending sends are packed into as few DATA datagrams as fit.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>, now: Instant) -> Option<SocketAddrV4> {
        if self.out_dgrams.is_empty() {
            self.pack_dirty(now);
        }
        let (dest, mut bytes) = self.out_dgrams.pop_front()?;
        std::mem::swap(buf, &mut bytes);
        if bytes.capacity() > 0 && self.pool.len() < 64 {
            self.pool.push(bytes);
        }
        Some(dest)
    }

    pub(super) fn pack_dirty(&mut self, now: Instant) {
        let Some(cluster) = self.cluster else { return };
        for gid in std::mem::take(&mut self.dirty) {
            let Some(g) = self.groups.get_mut(&gid) else {
                continue;
            };
            if let Some((lo, hi)) = g.send.sendable() {
                let dest = g.address;
                g.pack_data(
                    now,
                    cluster,
                    self.s.max_datagram_bytes,
                    lo,
                    hi,
                    dest,
                    &mut self.out_dgrams,
                    &mut self.pool,
                );
            }
        }
    }

    /// Inputs for this node's sequencer thread.
    pub fn poll_sequencer(&mut self) -> Option<SequencerInput> {
        self.out_seq.pop_front()
    }

    /// Frames for the directory.
    pub fn poll_directory(&mut self) -> Option<ToDirectory> {
        self.out_dir.pop_front()
    }

    /// Replies and events for apps.
    pub fn poll_app(&mut self) -> Option<(SessionId, FromDaemon)> {
        self.out_app.pop_front()
    }

    /// Sessions the edge must close.
    pub fn poll_close_session(&mut self) -> Option<SessionId> {
        self.out_close.pop_front()
    }

    /// When to call [`Host::handle_timeout`]; also "now" if sends are pending.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_tick
    }

    /// Orderly shutdown (SIGTERM): every member leaves, the directory is told.
    pub fn shutdown(&mut self, now: Instant) {
        let sessions: Vec<SessionId> = self.sessions.keys().copied().collect();
        for s in sessions {
            self.handle_app_disconnect(now, s);
        }
        self.out_dir.push_back(ToDirectory::Goodbye);
    }
}
