//! The host's side of the directory conversation: registration, views
//! proposed and installed, groups joined and left, identity after a lost link.

use super::group::{GroupLimits, GroupState};
use super::session::{Member, SessionId, DROPPED_MAX};
use super::{Host, MulticastChange};
use crate::ids::{Epoch, GroupId, MemberId, NodeId};
use crate::multicast::StreamKey;
use crate::order::sequencer::SequencerInput;
use crate::time::{Duration, Instant};
use crate::wire::app::{ErrorCode, FromDaemon, GroupLine};
use crate::wire::directory::{FromDirectory, Resume, ToDirectory, View};
use crate::SenderSeq;
use std::collections::BTreeSet;
use std::net::SocketAddrV4;
use std::sync::Arc;

/// How often a member repeats an unchanged ORDER_ACK, so that a sequencer
/// that restarted or took over relearns where the member is.
const ACK_REFRESH: Duration = Duration::from_millis(200);

impl Host {
    /// The link to the directory is up: say hello.
    pub fn handle_directory_connected(&mut self, _now: Instant) {
        self.fenced = false;
        self.out_dir.push_back(ToDirectory::Hello {
            name: self.s.node_name.clone(),
            incarnation: self.s.incarnation,
            ip: self.s.ip,
            data_port: self.s.data_port,
            order_port: self.s.order_port,
            previous: self.node,
            epoch: self.epoch,
        });
    }

    /// The highest directory epoch this host was welcomed in.
    pub fn directory_epoch(&self) -> Epoch {
        self.epoch
    }

    /// Whether the current link's directory welcomed us under an epoch
    /// older than one we had seen: the edge should drop the link and try
    /// another directory.
    pub fn directory_fenced(&self) -> bool {
        self.fenced
    }

    /// The edge's link is up with the directory at `addr` (of those
    /// configured): `chorusctl status` shows it.
    pub fn note_directory_in_use(&mut self, addr: String) {
        self.directory_in_use = Some(addr);
    }

    /// The link to the directory is gone. Current views keep serving;
    /// requests waiting on the directory fail.
    pub fn handle_directory_lost(&mut self, _now: Instant) {
        self.connected = false;
        self.directory_in_use = None;
        // Joins sent on the lost link fail; those queued until the node is
        // registered keep waiting (within their bound).
        let waiting = self.member_ids(|m| m.join_request.is_some() && !m.join_unsent);
        for id in waiting {
            if let Some(m) = self.members.remove(&id) {
                if let Some(req) = m.join_request {
                    self.reply_err(
                        m.session,
                        req,
                        ErrorCode::Unavailable,
                        "directory unreachable",
                    );
                }
                self.forget_member(id, m.session);
            }
        }
        for (_, (session, req)) in std::mem::take(&mut self.pending_lists) {
            self.reply_err(
                session,
                req,
                ErrorCode::Unavailable,
                "directory unreachable",
            );
        }
        self.finish_leaves_under_way();
        // A join made again after a re-registration may be lost with the
        // link; its app never asked for it, so it is told when it sends.
        // (After a lapse the joins go out only once the new life is
        // welcomed: the link closing after our Goodbye loses none.)
        let rejoining = self.member_ids(|m| m.rejoining && !self.lapsed);
        for id in rejoining {
            let why = "this node was declared dead and registered again, and the directory \
                       link was lost before the member had joined again; join the group again";
            self.separate(id, false, why);
            self.drop_member(id, why);
        }
    }

    /// Our members that `keep` holds for.
    fn member_ids(&self, keep: impl Fn(&Member) -> bool) -> Vec<MemberId> {
        self.members
            .iter()
            .filter(|(_, m)| keep(m))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Every leave waiting for the directory is done (without it, or with
    /// the membership it was leaving already over).
    fn finish_leaves_under_way(&mut self) {
        for id in self.member_ids(|m| m.leave_request.is_some()) {
            self.finish_leave(id);
        }
    }

    /// Drops a member the app did not ask to leave, keeping why for its
    /// session (told when the app next sends to that group).
    fn drop_member(&mut self, id: MemberId, why: &str) {
        let Some(m) = self.members.remove(&id) else {
            return;
        };
        log::info!(
            "member {id} ({}) of group {}: dropped: {why}",
            m.name,
            m.group_name
        );
        self.note_dropped(m.session, &m.group_name, why);
        self.forget_member(id, m.session);
    }

    fn note_dropped(&mut self, session: SessionId, group: &str, why: &str) {
        if let Some(s) = self.sessions.get_mut(&session) {
            s.dropped.retain(|(g, _)| g != group);
            if s.dropped.len() >= DROPPED_MAX {
                s.dropped.remove(0);
            }
            s.dropped.push((group.to_owned(), why.to_owned()));
        }
    }

    /// A frame from the directory.
    pub fn handle_directory(&mut self, now: Instant, frame: FromDirectory) {
        if self.fenced {
            log::debug!("frame from a deposed directory leader ignored");
            return;
        }
        match frame {
            FromDirectory::Welcome { epoch, .. } if epoch < self.epoch => {
                log::warn!(
                    "the directory welcomed this node under epoch {epoch}, older than epoch {} it \
                     was welcomed in before: a deposed leader; its frames are ignored",
                    self.epoch
                );
                self.fenced = true;
            }
            FromDirectory::Welcome {
                node,
                cluster,
                lease_ms,
                epoch,
                ..
            } => {
                self.note_lease(Duration::from_millis(u64::from(lease_ms)));
                if epoch > self.epoch {
                    if self.epoch.0 > 0 {
                        log::info!("the directory's epoch moved from {} to {epoch}", self.epoch);
                    }
                    self.epoch = epoch;
                }
                log::info!("registered with the directory as node {node} (epoch {epoch})");
                let previous = self.node.replace(node);
                self.cluster = Some(cluster);
                self.connected = true;
                self.node_names.insert(node, self.s.node_name.clone());
                self.last_label = None;
                match previous {
                    _ if std::mem::take(&mut self.lapsed) => self.rejoin_as_new_node(),
                    Some(p) if p != node => self.rejoin_as_new_node(),
                    Some(_) => self.resume_groups(),
                    None => {}
                }
                self.send_queued();
            }
            FromDirectory::JoinRefused { member, reason, .. } => self.join_refused(member, &reason),
            FromDirectory::View(v) => self.install_view(now, v),
            FromDirectory::GroupEnded { group } => {
                self.end_group(group, "the directory ended this node's part in the group")
            }
            FromDirectory::Groups { request, groups } => {
                if let Some((session, req)) = self.pending_lists.remove(&request) {
                    let lines = groups
                        .into_iter()
                        .map(|g| GroupLine {
                            local: self
                                .group_ids
                                .get(&g.name)
                                .is_some_and(|id| self.groups.contains_key(id)),
                            address: format!("{}:{}", g.address, g.port),
                            name: g.name,
                            view: g.view,
                            members: g.members,
                        })
                        .collect();
                    self.out_app.push_back((
                        session,
                        FromDaemon::Groups {
                            request: req,
                            groups: lines,
                        },
                    ));
                }
            }
            FromDirectory::Refused { reason } => {
                log::error!("the directory refused this node: {reason}");
            }
            FromDirectory::Redirect { leader } => {
                // The edge follows it (another connection); nothing here.
                log::debug!("the directory replica redirects to {leader:?}");
            }
        }
        self.schedule(now);
    }

    pub(super) fn install_view(&mut self, now: Instant, v: View) {
        let Some(me) = self.node else { return };
        for n in &v.nodes {
            self.node_names.insert(n.node, n.name.clone());
            self.last_label = None;
        }
        self.group_ids.insert(v.group_name.clone(), v.group);
        if !v.nodes.iter().any(|n| n.node == me) {
            self.end_group(
                v.group,
                "the group's view goes on without this node (the directory took it for gone)",
            );
            return;
        }
        let key = StreamKey {
            node: me,
            incarnation: self.s.incarnation,
        };
        let limits = GroupLimits {
            send_window: self.s.send_window_messages,
            receive_window: self.s.receive_window_messages,
            retransmit: self.s.retransmit,
            ack_refresh: ACK_REFRESH,
            flow_budget_bytes: self.s.flow_budget_bytes,
            max_datagram_bytes: self.s.max_datagram_bytes,
            max_message_pieces: self.max_message_pieces(),
            peer_message_pieces: self.peer_message_pieces(v.max_message_bytes),
            planted: self.planted,
        };
        let start = self
            .stream_next
            .get(&v.group)
            .copied()
            .unwrap_or(SenderSeq(1));
        log::debug!(
            "group {}: view {} proposed: members={} sequencer={}",
            v.group_name,
            v.view,
            v.members.len(),
            v.sequencer
        );
        if let Some(g) = self.groups.get_mut(&v.group) {
            // Installed where the order reaches the view's marker.
            if v.view > g.views.view {
                g.propose(v.clone());
                self.route(v.group);
                if self.leave_ghosts(&v) {
                    // The directory refuses a Detach while it counts a
                    // member of ours; once the ghosts are gone, detach again.
                    if let Some(g) = self.groups.get_mut(&v.group) {
                        g.detach_sent = false;
                    }
                }
            }
            self.pump(now, v.group);
            return;
        }
        log::info!(
            "group {} ({}): taking part from view {}",
            v.group_name,
            v.group,
            v.view
        );
        self.out_mcast
            .push_back(MulticastChange::Join(SocketAddrV4::new(v.address, v.port)));
        let mut g = GroupState::new(&v, key, start, limits);
        if let Some((base, held)) = self.leftovers.remove(&v.group) {
            g.keep_leftovers(base, held);
        }
        g.install(&v);
        self.groups.insert(v.group, g);
        self.route(v.group);
        // Members hear of the group once its order's start is known (pump):
        // then they are told the view it starts in. Ghosts leave now.
        self.leave_ghosts(&v);
        self.pump(now, v.group);
    }

    /// Asks the directory to remove the members of this node that a view
    /// lists and that no app here holds: joins whose app went away, or
    /// whose answer was lost with a link (the daemon failed them, and the
    /// directory took them all the same). True if there were any.
    fn leave_ghosts(&mut self, v: &View) -> bool {
        let Some(me) = self.node else { return false };
        let mut any = false;
        for m in v
            .members
            .iter()
            .filter(|m| m.node == me && !self.members.contains_key(&m.member))
        {
            log::info!(
                "group {}: member {} ({}) is no app's here; leaving",
                v.group_name,
                m.member,
                m.name
            );
            self.out_dir.push_back(ToDirectory::Leave {
                group: v.group,
                member: m.member,
            });
            any = true;
        }
        any
    }

    /// Tells each local member of the group the view, and settles joins and
    /// leaves that waited for it.
    pub(super) fn announce_view(&mut self, gid: GroupId) {
        if let Some(g) = self.groups.get_mut(&gid) {
            g.views.announced = true;
        }
        let Some(g) = self.groups.get(&gid) else {
            return;
        };
        let Some(me) = self.node else { return };
        let in_view: BTreeSet<MemberId> = g
            .views
            .members
            .iter()
            .filter(|m| m.node == me)
            .map(|m| m.member)
            .collect();
        // Members of ours the directory lists but no session owns (their app
        // left while the join was in flight): make them leave.
        for ghost in in_view.iter().filter(|id| !self.members.contains_key(id)) {
            self.out_dir.push_back(ToDirectory::Leave {
                group: gid,
                member: *ghost,
            });
        }
        let names: Vec<String> = g
            .views
            .members
            .iter()
            .map(|m| format!("{}:{}", self.node_name(m.node), m.name))
            .collect();
        let sequencer = self.node_name(g.views.sequencer);
        let (view, group_name) = (g.views.view, g.name.clone());
        let ids = self.member_ids(|m| m.group == Some(gid) || *m.group_name == *group_name);
        for id in ids {
            let Some(m) = self.members.get_mut(&id) else {
                continue;
            };
            if in_view.contains(&id) && m.leave_request.is_some() {
                continue; // leaving: silent until a view without it settles the leave
            }
            if in_view.contains(&id) {
                m.group = Some(gid);
                m.active = true;
                m.rejoining = false;
                m.view = Some(view);
                let session = m.session;
                if let Some(req) = m.join_request.take() {
                    self.out_app
                        .push_back((session, FromDaemon::Ok { request: req }));
                }
                self.out_app.push_back((
                    session,
                    FromDaemon::View {
                        group: group_name.to_string(),
                        view,
                        members: names.clone(),
                        sequencer: sequencer.clone(),
                    },
                ));
            } else if m.active && m.leave_request.is_none() {
                self.separate(id, true, "the group's view goes on without this member");
                self.rejoin_member(id);
            } else if m.active || m.leave_request.is_some() {
                self.finish_leave(id);
            }
        }
    }

    /// The node driver found this node silent towards the directory for
    /// about its lease (`silent_for`): paused (`kill -STOP`), not scheduled,
    /// or cut off. The directory may have declared it dead and the groups
    /// gone on without it, while a directory that restarted meanwhile could
    /// not tell. So this life ends here, as if the daemon had restarted but
    /// kept its applications: every member is told it was separated (its
    /// app then sees a new view when it is admitted again), the groups'
    /// state goes, and the node registers again under a new incarnation,
    /// which makes the directory end the old node at once if it still
    /// holds it. Sends not yet stable under the old life are lost with it
    /// (logged, and the separation says so).
    pub fn handle_lease_lapsed(&mut self, _now: Instant, silent_for: Duration) {
        if self.node.is_none() || self.lapsed {
            return;
        }
        let unstable: usize = self.groups.values().map(|g| g.send.len()).sum();
        log::warn!(
            "this node was silent towards the directory for {} ms, about its lease: it may have \
             been declared dead; its members are separated and it registers again as a new \
             incarnation ({unstable} sends not yet stable are lost)",
            silent_for.as_millis()
        );
        let why = format!(
            "this node was silent towards the directory for {} ms, past its lease (paused, \
             overloaded or cut off), so it may have been declared dead; it registers again and \
             the member joins again ({unstable} messages sent from this node and not yet \
             stable may be lost)",
            silent_for.as_millis()
        );
        let active = self.member_ids(|m| m.active);
        for id in active {
            self.separate(id, true, &why);
        }
        // Leaves under way are done: the old membership is over.
        self.finish_leaves_under_way();
        self.forget_all_groups();
        for m in self.members.values_mut() {
            if m.active || m.rejoining {
                m.rejoining = m.join_request.is_none();
                m.active = false;
                m.group = None;
            }
        }
        self.s.incarnation = crate::ids::Incarnation(self.s.incarnation.0.wrapping_add(1));
        self.node = None;
        self.lapsed = true;
        if self.connected {
            // The directory ends the old node and closes the link; the
            // edge reconnects and says Hello as the new incarnation.
            self.out_dir.push_back(ToDirectory::Goodbye);
        }
    }

    /// We kept our identity across a lost link (or a directory restart):
    /// tell the directory every group we take part in, as we know it, and
    /// the views of it we remember.
    pub(super) fn resume_groups(&mut self) {
        let Some(me) = self.node else { return };
        for g in self.groups.values_mut() {
            // A Detach sent on the old link may be lost with it (the
            // directory restarted): we take part until told otherwise, and
            // ack again, or stability stops at us (sim seed 26652). The
            // next tick detaches again if we still have no member.
            g.detach_sent = false;
        }
        for g in self.groups.values() {
            let members = g
                .views
                .members
                .iter()
                .filter(|m| m.node == me && self.members.get(&m.member).is_some_and(|l| l.active))
                .map(|m| (m.member, m.name.clone()))
                .collect();
            self.out_dir.push_back(ToDirectory::Resume(Resume {
                group: g.id,
                group_name: g.name.to_string(),
                address: *g.views.address.ip(),
                port: g.views.address.port(),
                view: g.latest_view_id(),
                sequencer: g.views.sequencer,
                since: g.order_start_view().unwrap_or_else(|| g.latest_view_id()),
                members,
            }));
            // A restarted directory hands these to members that missed one.
            for v in g.remembered_views() {
                self.out_dir.push_back(ToDirectory::PastView(v.clone()));
            }
        }
    }

    /// Every group's state goes with an identity that ends: multicast
    /// memberships are left, our sequencer stops, and nothing of the old
    /// streams carries over.
    fn forget_all_groups(&mut self) {
        let ids: Vec<GroupId> = self.groups.keys().copied().collect();
        for gid in ids {
            if let Some(g) = self.groups.remove(&gid) {
                self.out_mcast
                    .push_back(MulticastChange::Leave(g.views.address));
                if g.is_sequencer() {
                    self.out_seq.push_back(SequencerInput::Stop { group: gid });
                }
            }
        }
        self.stream_next.clear();
        self.leftovers.clear();
    }

    /// The directory declared our old identity dead while the link was
    /// down and welcomed us as a new node: the groups go on without our old
    /// self, so every member joins again under the new identity (its app
    /// sees a fresh view). Messages the old identity had not made stable are
    /// lost with it; that is logged.
    pub(super) fn rejoin_as_new_node(&mut self) {
        let unstable: usize = self.groups.values().map(|g| g.send.len()).sum();
        if unstable > 0 {
            log::warn!("re-registered as a new node: {unstable} messages not yet stable under the old identity are dropped");
        }
        self.forget_all_groups();
        let node = self.node.map_or(0, |n| n.0);
        let why = format!(
            "this node was declared dead (its lease ran out while it was paused or cut \
             off) and registered again as node {node}; the member is joining again"
        );
        for id in self.member_ids(|m| m.active) {
            self.separate(id, true, &why);
        }
        for (id, m) in self.members.iter_mut() {
            if m.active || m.join_request.is_some() || m.rejoining {
                let Some(s) = self.sessions.get(&m.session) else {
                    continue;
                };
                // A member whose app asked for the join is answered by the
                // view as before; the others join again unasked.
                m.rejoining = m.join_request.is_none();
                m.join_unsent = false;
                m.active = false;
                m.group = None;
                self.out_dir.push_back(ToDirectory::Join {
                    group: m.group_name.clone(),
                    member: *id,
                    member_name: m.name.to_string(),
                    user: s.creds.user.clone(),
                    unix_groups: s.creds.unix_groups.clone(),
                });
            }
        }
    }

    /// The directory refused a member's join: the app that asked for it is
    /// answered; a member joining again unasked is separated for good.
    fn join_refused(&mut self, member: MemberId, reason: &str) {
        let Some(m) = self.members.get(&member) else {
            return;
        };
        if let Some(req) = m.join_request {
            let session = m.session;
            self.reply_err(session, req, ErrorCode::Refused, reason);
        } else if m.rejoining {
            let why = format!(
                "this node was declared dead and registered again, and the directory refused \
                 the member's join: {reason}"
            );
            self.separate(member, false, &why);
        }
        if let Some(m) = self.members.remove(&member) {
            self.forget_member(member, m.session);
        }
    }

    /// Tells the app of member `id` that its membership ended unasked
    /// (`FromDaemon::Separated`), if it was ever told a view; logs why.
    /// A member not `rejoining` keeps the reason for its next send.
    fn separate(&mut self, id: MemberId, rejoining: bool, why: &str) {
        let Some(m) = self.members.get_mut(&id) else {
            return;
        };
        let Some(view) = m.view else {
            return;
        };
        if self.planted.silent_separation() {
            return;
        }
        log::warn!(
            "member {id} ({}) of group {}: separated after view {view}: {why}",
            m.name,
            m.group_name
        );
        let (session, group) = (m.session, m.group_name.clone());
        if !rejoining {
            self.note_dropped(session, &group, why);
        }
        self.out_app.push_back((
            session,
            FromDaemon::Separated {
                group,
                view,
                rejoining,
                reason: why.to_owned(),
            },
        ));
    }

    /// This node no longer takes part in group `gid`; members of ours still
    /// in it (their apps did not ask to leave) are told `why`.
    pub(super) fn end_group(&mut self, gid: GroupId, why: &str) {
        if let Some(g) = self.groups.remove(&gid) {
            log::info!("group {}: no longer taking part", g.name);
            if !g.sends_drained() {
                log::warn!(
                    "group {}: the group went on without this node; {} messages sent from here and not yet stable may be lost",
                    g.name,
                    g.send.len()
                );
            }
            // A later attachment goes on with the stream after them: peers
            // skip what was never ordered (see `RecvStream::skip_to`), and
            // deliver what was, which we must then deliver too.
            self.stream_next.insert(gid, g.next_stream_seq());
            if !g.sends_drained() {
                self.leftovers.insert(gid, g.leftovers());
            }
            self.out_mcast
                .push_back(MulticastChange::Leave(g.views.address));
            if g.is_sequencer() {
                self.out_seq.push_back(SequencerInput::Stop { group: gid });
            }
            let ids = self.member_ids(|m| m.group == Some(gid));
            for id in ids {
                if self
                    .members
                    .get(&id)
                    .is_some_and(|m| m.active && m.leave_request.is_none())
                {
                    self.separate(id, true, why);
                    self.rejoin_member(id);
                } else {
                    self.finish_leave(id);
                }
            }
        }
    }

    /// A member of ours that the group went on without, though its app did
    /// not leave, joins again (its app was told it was separated; it sees
    /// the new view once admitted). Sent now if the link is up; a Welcome
    /// under a new identity sends it again.
    fn rejoin_member(&mut self, id: MemberId) {
        let Some(m) = self.members.get_mut(&id) else {
            return;
        };
        m.active = false;
        m.group = None;
        m.rejoining = true;
        let Some(s) = self.sessions.get(&m.session) else {
            return;
        };
        if self.connected && !self.lapsed {
            self.out_dir.push_back(ToDirectory::Join {
                group: m.group_name.clone(),
                member: id,
                member_name: m.name.to_string(),
                user: s.creds.user.clone(),
                unix_groups: s.creds.unix_groups.clone(),
            });
        }
    }

    /// `NODE:NAME`, how apps see a member (one allocation: it is made for
    /// every message delivered).
    /// `NODE:MEMBER` for a delivery, shared with the last delivery's when
    /// it is the same sender (a stream's messages mostly are).
    pub(super) fn label_for(&mut self, node: NodeId, member: &Arc<str>) -> Arc<str> {
        if let Some((n, m, label)) = &self.last_label {
            if *n == node && (Arc::ptr_eq(m, member) || **m == **member) {
                return Arc::clone(label);
            }
        }
        let label: Arc<str> = self.sender_label(node, member).into();
        self.last_label = Some((node, Arc::clone(member), Arc::clone(&label)));
        label
    }

    pub(super) fn sender_label(&self, node: NodeId, member: &str) -> String {
        use std::fmt::Write as _;
        let name = self.node_names.get(&node);
        let mut s = String::with_capacity(name.map_or(16, String::len) + 1 + member.len());
        match name {
            Some(n) => s.push_str(n),
            None => {
                let _ = write!(s, "node-{node}");
            }
        }
        s.push(':');
        s.push_str(member);
        s
    }

    pub(super) fn node_name(&self, node: NodeId) -> String {
        self.node_names
            .get(&node)
            .cloned()
            .unwrap_or_else(|| format!("node-{node}"))
    }
}
