//! The per-daemon state machine: one per chorusd.
//!
//! It owns the daemon's sessions (local apps) and their members, every group
//! this node takes part in ([`group::GroupState`]), and the conversation with
//! the directory. It never touches a socket or a clock. It is a router: each
//! input goes to the group's handlers, which append what they want done to
//! the group's ordered list of [`group::Command`]s; the host carries those
//! out into its output queues (`Host::route`) right after each call, so the
//! queues keep the order in which the handlers asked.
//!
//! # Driver call order
//! The daemon's IO thread and the simulator drive a [`Host`] the same way:
//! 1. Feed inputs as they come: [`Host::handle_directory_connected`],
//!    [`Host::handle_directory`], [`Host::handle_directory_lost`],
//!    [`Host::handle_app_connect`], [`Host::handle_app`] (only while
//!    [`Host::can_accept`] is true for that session, which is the
//!    back-pressure), [`Host::handle_app_disconnect`] (after
//!    [`Host::note_session_dropped_slow`] if the edge drops the session for
//!    not reading), [`Host::handle_datagram`], [`Host::handle_timeout`].
//! 2. After each batch of inputs, drain the outputs with [`drive::drain`],
//!    which fixes the order: [`Host::poll_multicast_change`] (join/leave
//!    multicast groups before sending to them), [`Host::poll_transmit`],
//!    [`Host::poll_sequencer`], [`Host::poll_directory`], [`Host::poll_app`],
//!    [`Host::poll_close_session`].
//! 3. Sleep until [`Host::poll_timeout`] (the earliest deadline of the
//!    host's timer table) or the next input.
//!
//! What a driver does besides (heartbeats to the directory, the sequencer's
//! settings from the Welcome) is in [`crate::node`].
//!
//! Draining after a batch rather than after each input is what batches many
//! small messages into one datagram.

mod apps;
mod directory;
pub mod drive;
pub mod group;
pub mod planted;
mod session;
mod timers;
mod waits;

use crate::ids::{ClusterId, GroupId, Incarnation, MemberId, NodeId, ViewId};
use crate::multicast::pack::Packer;
use crate::multicast::StreamKey;
use crate::order::sequencer::SequencerInput;
use crate::time::{Duration, Instant};
use crate::wire::app::FromDaemon;
use crate::wire::datagram::{
    self, Datagram, FlushReport, OrderAck, OrderNak, Rejected, DATA_MSG_OVERHEAD_BYTES,
    DATA_PREFIX_BYTES,
};
use crate::wire::directory::ToDirectory;
use crate::wire::seal::OpenError;
use crate::wire::MAX_MESSAGE_BYTES;
use crate::SenderSeq;
use group::{Command, Control, GroupState};
use session::{Member, Session};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use timers::{Timer, Timers};

pub use session::{Credentials, SessionId};

/// How long new messages may wait for more to fill a DATA datagram, once
/// the group's last DATA went out less than this ago. A sender that sends
/// now and then gets its message out at once; one that keeps the host busy
/// gets full datagrams (the per-datagram cost, not the bytes, bounds the
/// rate), for at most this much latency.
pub const BUNDLE_WAIT: Duration = Duration::from_micros(200);

/// What a host is and the bounds it keeps.
#[derive(Debug, Clone)]
pub struct HostSettings {
    pub node_name: String,
    pub incarnation: Incarnation,
    pub ip: Ipv4Addr,
    pub data_port: u16,
    pub order_port: u16,
    pub max_datagram_bytes: usize,
    /// Largest message payload a local application may send, in bytes
    /// (`[tuning] max_message_bytes`, 1..=16 MiB); a group whose view
    /// carries a lower `max_message_bytes` is held to that.
    pub max_message_bytes: usize,
    pub send_window_messages: usize,
    pub receive_window_messages: usize,
    pub ack_interval: Duration,
    pub retransmit: Duration,
    /// Bytes the receivers can buffer for one group (about half the kernel
    /// receive buffer: it also holds the kernel's per-datagram overhead);
    /// each sender's flow window is its share (see `multicast::flow`).
    pub flow_budget_bytes: usize,
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

/// Counters for logs and status (the same type `chorusctl stats` carries).
pub use crate::wire::app::Counters as HostStats;

/// The daemon's protocol state.
#[derive(Debug)]
pub struct Host {
    s: HostSettings,
    node: Option<NodeId>,
    cluster: Option<ClusterId>,
    connected: bool,
    /// The directory the link is up with, as the edge names it.
    directory_in_use: Option<String>,
    /// Our lease may have run out (see [`Host::handle_lease_lapsed`]): the
    /// next Welcome is a new life, whatever id it gives.
    lapsed: bool,
    /// Per group: our messages not yet stable when the group went on
    /// without this node (see `GroupState::keep_leftovers`).
    leftovers: BTreeMap<GroupId, (SenderSeq, Vec<crate::multicast::recv::Held>)>,
    /// The highest directory epoch this host was welcomed in: said in every
    /// Hello, and a Welcome of a lower one (a deposed leader) is refused.
    epoch: crate::ids::Epoch,
    /// The directory on the current link welcomed us under a stale epoch:
    /// its frames are ignored until the next link.
    fenced: bool,
    groups: BTreeMap<GroupId, GroupState>,
    group_ids: BTreeMap<String, GroupId>,
    node_names: BTreeMap<NodeId, String>,
    /// The last delivery's sender and its `NODE:MEMBER` label (see
    /// `Host::label_for`); reset when a node's name is learned.
    last_label: Option<(NodeId, std::sync::Arc<str>, std::sync::Arc<str>)>,
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
    timers: Timers,
    /// Requests waiting on the directory, and the bound they wait.
    waits: waits::DirectoryWaits,
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
            lapsed: false,
            leftovers: BTreeMap::new(),
            epoch: crate::ids::Epoch(0),
            fenced: false,
            groups: BTreeMap::new(),
            group_ids: BTreeMap::new(),
            node_names: BTreeMap::new(),
            last_label: None,
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
            timers: Timers::default(),
            waits: waits::DirectoryWaits::default(),
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

    /// The edge is about to disconnect an app session because the replies
    /// and deliveries queued for it passed `session_queue_bytes`. Only
    /// counted here (`sessions_dropped_slow`): that queue lives at the edge,
    /// which then closes the session and reports it as any other disconnect.
    pub fn note_session_dropped_slow(&mut self) {
        self.stats.sessions_dropped_slow += 1;
    }

    /// The settings this host runs with.
    pub fn settings(&self) -> &HostSettings {
        &self.s
    }

    /// Plants test-only bugs (the simulator's checks of its checkers); inert
    /// in builds without the `planted` feature (see [`planted`]).
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

    /// The largest piece of a message from a member named `name` that one
    /// datagram carries.
    pub fn max_piece(&self, name: &str) -> usize {
        self.piece_room(name.len())
    }

    /// Payload room in one DATA datagram beside a sender name of
    /// `name_len` bytes (names are cut at 255).
    fn piece_room(&self, name_len: usize) -> usize {
        self.s
            .max_datagram_bytes
            .saturating_sub(DATA_PREFIX_BYTES + DATA_MSG_OVERHEAD_BYTES + name_len.min(255))
            .max(1)
    }

    /// This node's own limit on a message (`max_message_bytes`, at most
    /// the protocol's).
    fn own_max_message(&self) -> usize {
        self.s.max_message_bytes.min(MAX_MESSAGE_BYTES)
    }

    /// The largest message a member can send in `group` (this node's
    /// limit, lowered by the group's own if its view sets one).
    pub fn max_message(&self, group: GroupId) -> usize {
        let own = self.own_max_message();
        match self.groups.get(&group).map(|g| g.views.max_message_bytes()) {
            Some(Some(limit)) => own.min(limit),
            _ => own,
        }
    }

    /// The most pieces any message of ours may take (the longest name
    /// leaves the least room per datagram).
    pub fn max_message_pieces(&self) -> usize {
        self.own_max_message().div_ceil(self.piece_room(255))
    }

    /// The most pieces a peer's message may take in a group whose view
    /// sets `limit` (0: none; peers are then taken to share our own
    /// `max_message_bytes`, as one cluster's configurations do: a peer
    /// allowed more may see the tail of its largest messages dropped here
    /// and repaired as the window moves).
    pub fn peer_message_pieces(&self, limit: u32) -> usize {
        let max = match limit {
            0 => self.own_max_message(),
            l => (l as usize).min(MAX_MESSAGE_BYTES),
        };
        max.div_ceil(self.piece_room(255))
    }

    // ----- network -----

    /// A datagram the edge refused to open (see [`crate::wire::seal`]):
    /// counted, and logged at the first and then at every power of two,
    /// so a flood of forgeries costs a few log lines.
    pub fn note_refused(&mut self, from: SocketAddrV4, why: &OpenError) {
        self.stats.datagrams_in += 1;
        let n = match why {
            OpenError::Replayed(_) | OpenError::TooOld(_) => {
                self.stats.refused_replayed += 1;
                self.stats.refused_replayed
            }
            _ => {
                self.stats.refused_unauthentic += 1;
                self.stats.refused_unauthentic
            }
        };
        if n.is_power_of_two() {
            log::warn!("datagram from {from} refused: {why} ({n} such so far)");
        }
    }

    /// Datagrams refused elsewhere at this node (the sequencer's own
    /// socket, which logs them itself): counted as [`Host::note_refused`]
    /// counts, so the node's counters cover every socket it reads.
    /// (`datagrams_in` stays the host's sockets' own.)
    pub fn note_refused_elsewhere(&mut self, unauthentic: u64, replayed: u64) {
        self.stats.refused_unauthentic += unauthentic;
        self.stats.refused_replayed += replayed;
    }

    /// A datagram from the multicast or unicast socket.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddrV4, bytes: &[u8]) {
        let Some(cluster) = self.cluster else { return };
        self.stats.datagrams_in += 1;
        self.stats.bytes_in += bytes.len() as u64;
        let d = match datagram::decode(bytes, cluster) {
            Ok(d) => d,
            Err(Rejected::OtherCluster(_)) => {
                self.stats.dropped_other_cluster += 1;
                return;
            }
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
        let packer = self.packer(gid);
        let Some(g) = self.groups.get_mut(&gid) else {
            self.stats.dropped_no_group += 1;
            return;
        };
        match d {
            Datagram::Data(data) => {
                let out = g.on_data(&data, bytes);
                self.stats.dropped_duplicate += out.duplicate;
                self.stats.dropped_beyond_window += out.beyond_window;
                self.stats.dropped_before_base += out.before_base;
                if out.news {
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
                // views the directory told us (installed or waiting for
                // their marker), never to the datagram's source: a NAK
                // cannot send repairs to anyone outside them. A joiner of
                // a view still pending here must be answered: the marker
                // may wait for its acknowledgement.
                let Some(dest) = g.views.node_address(n.from) else {
                    log::debug!(
                        "NAK from {from} for node {} outside the view: not answered",
                        n.from
                    );
                    return;
                };
                if Some(n.sender) == self.node && n.sender_incarnation == self.s.incarnation {
                    // Our stream lost datagrams somewhere: slow down.
                    self.stats.naks_received += 1;
                    if g.on_loss_signal(now) {
                        self.stats.window_decreases += 1;
                    }
                    self.answer_nak(now, gid, dest, &n.ranges);
                } else if let (Some(packer), false) = (packer, self.planted.no_retransmit()) {
                    let key = StreamKey {
                        node: n.sender,
                        incarnation: n.sender_incarnation,
                    };
                    for &range in &n.ranges {
                        self.stats.retransmits += 1;
                        g.pack_repair(packer, key, range, dest);
                    }
                }
                self.route(gid);
            }
            Datagram::OrderNak(n) => {
                let Some(dest) = g.views.node_address(n.from) else {
                    log::debug!(
                        "ORDER_NAK from {from} for node {} outside the view: not answered",
                        n.from
                    );
                    return;
                };
                g.pack_order_repair(cluster, self.s.max_datagram_bytes, &n.ranges, dest);
                self.route(gid);
            }
            Datagram::FlushReport(r) => {
                g.on_flush_report(&r);
                self.pump(now, gid);
            }
            Datagram::OrderAck(_) => {}
        }
        self.schedule(now);
    }

    /// How DATA of group `gid` is packed (once the directory welcomed us).
    fn packer(&self, gid: GroupId) -> Option<Packer> {
        Some(Packer {
            cluster: self.cluster?,
            group: gid,
            max_bytes: self.s.max_datagram_bytes,
        })
    }

    pub(super) fn answer_nak(
        &mut self,
        now: Instant,
        gid: GroupId,
        from: SocketAddrV4,
        ranges: &[(SenderSeq, SenderSeq)],
    ) {
        let Some(packer) = self.packer(gid) else {
            return;
        };
        let Some(g) = self.groups.get_mut(&gid) else {
            return;
        };
        if self.planted.no_retransmit() {
            return;
        }
        for &(lo, hi) in ranges {
            let lo = lo.max(SenderSeq(
                g.next_stream_seq().0.saturating_sub(g.send.len() as u64),
            ));
            let hi = hi.min(SenderSeq(g.next_stream_seq().0.saturating_sub(1)));
            if lo <= hi {
                self.stats.retransmits += 1;
                g.pack_data(now, packer, (lo, hi), from, &mut self.pool);
            }
        }
        self.route(gid);
    }

    /// After new data or order: deliver, report arrivals to the sequencer.
    pub(super) fn pump(&mut self, _now: Instant, gid: GroupId) {
        loop {
            let Some(g) = self.groups.get_mut(&gid) else {
                return;
            };
            g.flush_progress();
            g.report_arrivals();
            if !g.views.announced {
                match g.order_start_view() {
                    None => {
                        self.route(gid);
                        return;
                    }
                    Some(sv) if sv == g.views.view => {
                        self.route(gid);
                        self.announce_view(gid);
                        continue;
                    }
                    // deliver() installs the later view first, and announces it.
                    Some(_) => {}
                }
            }
            g.deliver();
            self.dirty.insert(gid);
            let Some(view) = self.route(gid) else {
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
            g.install(&v);
            self.route(gid);
            log::debug!("group {}: view {} installed", v.group_name, v.view);
            self.announce_view(gid);
        }
    }

    /// Carries out what group `gid` asked for, in its order: sequencer
    /// inputs, datagrams, control datagrams, deliveries to the local
    /// members. Returns a view to install if the order reached one (it is
    /// always last).
    pub(super) fn route(&mut self, gid: GroupId) -> Option<ViewId> {
        let g = self.groups.get_mut(&gid)?;
        let commands = g.take_commands();
        let (view, name) = (g.views.view, std::sync::Arc::clone(&g.name));
        let mut next_view = None;
        let mut targets: Option<Vec<SessionId>> = None;
        for c in commands {
            match c {
                Command::Sequencer(i) => self.out_seq.push_back(i),
                Command::Transmit(dest, bytes) => self.out_dgrams.push_back((dest, bytes)),
                Command::Control(c) => self.send_control(gid, c),
                Command::InstallView(v) => next_view = Some(v),
                Command::Deliver(d) => {
                    let targets = targets.get_or_insert_with(|| {
                        self.members
                            .values()
                            .filter(|m| m.group == Some(gid) && m.active)
                            .map(|m| m.session)
                            .collect()
                    });
                    self.stats.messages_delivered += 1;
                    let sender = self.label_for(d.node, &d.sender_name);
                    for s in targets.iter() {
                        // One payload for every member (refcounted).
                        let bytes = d.payload.clone();
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
            }
        }
        next_view
    }

    // ----- timers -----

    /// Arms the tick while the host takes part in any group.
    pub(super) fn schedule(&mut self, now: Instant) {
        if !self.timers.is_armed(Timer::Tick) && !self.groups.is_empty() {
            self.timers.set(Timer::Tick, now + self.s.ack_interval);
        }
    }

    /// Drives timers: acks, naks, retransmission, detaching idle groups.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Bundled DATA waited long enough: the drain that follows packs it.
        let _ = self.timers.take_due(Timer::Bundle, now);
        self.expire_waits(now);
        if !self.timers.take_due(Timer::Tick, now) {
            return;
        }
        let ids: Vec<GroupId> = self.groups.keys().copied().collect();
        for gid in ids {
            let packer = self.packer(gid);
            let Some(g) = self.groups.get_mut(&gid) else {
                continue;
            };
            // Arrivals are reported as news comes in; once a tick too, so
            // that a held run no event pointed at is still ordered.
            g.report_arrivals();
            let probe = if self.planted.no_retransmit() {
                None
            } else {
                g.send.tail_probe_due(now, self.s.retransmit)
            };
            if let (Some(packer), Some(last)) = (packer, probe) {
                // The sequencer has not ordered our last message for a
                // while: resend it, so every receiver sees where the stream
                // ends and NAKs what it lacks before it. Not a loss signal:
                // a busy sequencer is as likely as a lost tail.
                self.stats.retransmits += 1;
                self.stats.tail_probes += 1;
                g.send.note_probe();
                let dest = g.views.address;
                g.pack_data(now, packer, (last, last), dest, &mut self.pool);
            }
            #[cfg(feature = "planted")]
            if let (true, Some(packer)) = (self.planted.retransmit_storm(), packer) {
                if let Some(run) = g.send.unordered_due(now, Duration::from_millis(0)) {
                    self.stats.retransmits += 1;
                    let dest = g.views.address;
                    g.pack_data(now, packer, run, dest, &mut self.pool);
                }
            }
            g.tick(now);
            // A member whose join is still pending counts too: detaching
            // now would leave it joined at the directory to a group we quit.
            let has_members = self
                .members
                .values()
                .any(|m| m.group == Some(gid) || (m.group.is_none() && *m.group_name == *g.name));
            // A join after our Detach does not cancel it (the directory
            // reads the Detach first): it is a new attachment, after GroupEnded.
            let detach = !has_members
                && !g.detach_sent
                && g.sends_drained()
                && g.delivered_stable()
                && self.connected;
            self.route(gid);
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
            .map(|g| g.views.sequencer_incarnation())
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
        self.stats.datagrams_out += 1;
        self.stats.bytes_out += bytes.len() as u64;
        std::mem::swap(buf, &mut bytes);
        if bytes.capacity() > 0 && self.pool.len() < 64 {
            self.pool.push(bytes);
        }
        Some(dest)
    }

    pub(super) fn pack_dirty(&mut self, now: Instant) {
        if self.cluster.is_none() {
            return;
        }
        let full = self.s.max_datagram_bytes.saturating_sub(DATA_PREFIX_BYTES);
        for gid in std::mem::take(&mut self.dirty) {
            let Some(packer) = self.packer(gid) else {
                continue;
            };
            let Some(g) = self.groups.get_mut(&gid) else {
                continue;
            };
            if let Some(range) = g.sendable() {
                // Bundle: less than a datagram's worth, and the last DATA
                // left a moment ago: wait a little for more.
                let wait_until = g.last_data_at().map(|t| t + BUNDLE_WAIT);
                if let Some(until) = wait_until.filter(|u| now < *u) {
                    if g.send.wire_bytes(range.0, range.1) < full {
                        self.dirty.insert(gid);
                        self.timers.set_earliest(Timer::Bundle, until);
                        continue;
                    }
                }
                let dest = g.views.address;
                g.pack_data(now, packer, range, dest, &mut self.pool);
                // At the sequencer's node, what just went out may be ordered.
                g.report_arrivals();
                self.route(gid);
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

    /// When to call [`Host::handle_timeout`]: the earliest deadline of the
    /// host's timer table.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
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
