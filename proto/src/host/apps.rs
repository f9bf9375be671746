//! Requests from local apps: join, leave, send, and the status queries.

use super::session::{Credentials, Member, Session, SessionId};
use super::waits::Waiting;
use super::Host;
use crate::ids::{MemberId, Order};
use crate::time::Instant;
use crate::wire::app::{DaemonStats, ErrorCode, FromDaemon, GroupStats, ToDaemon};
use crate::wire::directory::ToDirectory;

impl Host {
    /// A local app connected, with its credentials (from SO_PEERCRED).
    pub fn handle_app_connect(&mut self, _now: Instant, session: SessionId, creds: Credentials) {
        self.sessions.insert(session, Session::new(creds));
    }

    /// False while the session's sends cannot be accepted: the edge then
    /// stops reading it until this turns true (back-pressure, never loss).
    pub fn can_accept(&self, session: SessionId) -> bool {
        let Some(s) = self.sessions.get(&session) else {
            return true;
        };
        s.members.iter().all(|id| {
            self.members
                .get(id)
                .and_then(|m| m.group)
                .and_then(|g| self.groups.get(&g))
                .is_none_or(|g| g.send.can_accept())
        })
    }

    /// The app went away: its members leave their groups.
    pub fn handle_app_disconnect(&mut self, now: Instant, session: SessionId) {
        let Some(s) = self.sessions.remove(&session) else {
            return;
        };
        for id in s.members {
            if let Some(m) = self.members.get_mut(&id) {
                m.leave_request = None;
                m.join_request = None;
                // A join in flight may be granted already: leave it too
                // when we know the group's id (else the ghost check does).
                if let Some(g) = m
                    .group
                    .or_else(|| self.group_ids.get(&m.group_name).copied())
                {
                    self.out_dir.push_back(ToDirectory::Leave {
                        group: g,
                        member: id,
                    });
                }
            }
            self.members.remove(&id);
        }
        self.pending_lists.retain(|_, (s, _)| *s != session);
        self.forget_queued_lists(session);
        self.schedule(now);
    }

    /// A request from an app.
    pub fn handle_app(&mut self, now: Instant, session: SessionId, req: ToDaemon) {
        if !self.sessions.contains_key(&session) {
            return;
        }
        match req {
            ToDaemon::Join {
                request,
                group,
                name,
            } => self.app_join(now, session, request, group, name),
            ToDaemon::Leave { request, group } => self.app_leave(now, session, request, &group),
            ToDaemon::Send {
                request,
                group,
                order,
                payload,
            } => self.app_send(session, request, &group, order, payload),
            ToDaemon::Status { request } => {
                let reply = FromDaemon::Status {
                    request,
                    node: self.s.node_name.clone(),
                    node_id: self.node.map_or(0, |n| n.0),
                    incarnation: self.s.incarnation.0,
                    directory: self
                        .directory_in_use
                        .clone()
                        .unwrap_or_else(|| self.s.directory_label.clone()),
                    connected: self.connected,
                    groups: self.groups.len() as u32,
                    members: self.members.len() as u32,
                    version: self.s.version.clone(),
                };
                self.out_app.push_back((session, reply));
            }
            ToDaemon::Groups { request } => self.app_groups(now, session, request),
            ToDaemon::Members { request, group } => self.app_members(session, request, &group),
            ToDaemon::Stats { request } => {
                let stats = Box::new(self.stats_reply());
                self.out_app
                    .push_back((session, FromDaemon::Stats { request, stats }));
            }
        }
        self.schedule(now);
    }

    /// The counters and every group's queue and window, as `chorusctl stats`
    /// shows them.
    pub fn stats_reply(&self) -> DaemonStats {
        DaemonStats {
            counters: self.stats,
            groups: self
                .groups
                .values()
                .map(|g| {
                    let (window, cap) = g.flow_window();
                    GroupStats {
                        name: g.name.to_string(),
                        view: g.views.view,
                        sequencer: g.is_sequencer(),
                        queued: u32::try_from(g.send.len()).unwrap_or(u32::MAX),
                        in_flight_bytes: g.send.in_flight_bytes() as u64,
                        window_bytes: window as u64,
                        window_cap_bytes: cap as u64,
                    }
                })
                .collect(),
        }
    }

    /// A listing of the directory's groups: asked now, queued until this
    /// node is registered (with a bound, see `host::waits`), or refused.
    fn app_groups(&mut self, now: Instant, session: SessionId, request: u32) {
        if !self.connected {
            if self.queues_while_unregistered() {
                self.queue_list(now, session, request);
            } else {
                self.reply_err(
                    session,
                    request,
                    ErrorCode::Unavailable,
                    "directory unreachable",
                );
            }
            return;
        }
        let id = self.next_list_id();
        self.pending_lists.insert(id, (session, request));
        self.out_dir
            .push_back(ToDirectory::ListGroups { request: id });
        self.start_wait(now, Waiting::List(id));
    }

    /// A fresh number for a listing asked of the directory.
    pub(super) fn next_list_id(&mut self) -> u32 {
        let id = self.next_list;
        self.next_list = self.next_list.wrapping_add(1);
        id
    }

    pub(super) fn app_join(
        &mut self,
        now: Instant,
        session: SessionId,
        request: u32,
        group: String,
        name: String,
    ) {
        if !self.connected && !self.queues_while_unregistered() {
            self.reply_err(
                session,
                request,
                ErrorCode::Unavailable,
                "directory unreachable",
            );
            return;
        }
        if name.is_empty()
            || name.len() > 64
            || name.contains(':')
            || name.chars().any(char::is_whitespace)
        {
            self.reply_err(
                session,
                request,
                ErrorCode::BadRequest,
                "member name must be 1-64 bytes, no ':' or spaces",
            );
            return;
        }
        let Some(s) = self.sessions.get(&session) else {
            return;
        };
        if s.members
            .iter()
            .any(|id| self.members.get(id).is_some_and(|m| m.group_name == group))
        {
            self.reply_err(
                session,
                request,
                ErrorCode::BadRequest,
                "this session already joined the group",
            );
            return;
        }
        let id = MemberId(self.next_member);
        self.next_member += 1;
        let (user, unix_groups) = (s.creds.user.clone(), s.creds.unix_groups.clone());
        if let Some(s) = self.sessions.get_mut(&session) {
            s.dropped.retain(|(g, _)| *g != group);
        }
        let mut member = Member::new(session, group.clone(), name.clone(), request);
        // Not registered yet: the Join goes out with the Welcome.
        member.join_unsent = !self.connected;
        self.members.insert(id, member);
        if let Some(s) = self.sessions.get_mut(&session) {
            s.members.push(id);
        }
        if self.connected {
            self.out_dir.push_back(ToDirectory::Join {
                group,
                member: id,
                member_name: name,
                user,
                unix_groups,
            });
        }
        self.start_wait(now, Waiting::Join(id));
    }

    pub(super) fn session_member(&self, session: SessionId, group: &str) -> Option<MemberId> {
        let s = self.sessions.get(&session)?;
        s.members
            .iter()
            .copied()
            .find(|id| self.members.get(id).is_some_and(|m| m.group_name == group))
    }

    pub(super) fn app_leave(
        &mut self,
        now: Instant,
        session: SessionId,
        request: u32,
        group: &str,
    ) {
        let Some(id) = self.session_member(session, group) else {
            self.reply_err(
                session,
                request,
                ErrorCode::NoSuchGroup,
                "not a member of this group",
            );
            return;
        };
        let Some(m) = self.members.get_mut(&id) else {
            return;
        };
        match m.group {
            Some(g) if self.connected => {
                m.leave_request = Some(request);
                m.active = false;
                self.out_dir.push_back(ToDirectory::Leave {
                    group: g,
                    member: id,
                });
                self.start_wait(now, Waiting::Leave(id));
            }
            _ => {
                m.leave_request = Some(request);
                self.finish_leave(id);
            }
        }
    }

    pub(super) fn finish_leave(&mut self, id: MemberId) {
        let Some(m) = self.members.remove(&id) else {
            return;
        };
        if let Some(req) = m.leave_request {
            self.out_app
                .push_back((m.session, FromDaemon::Ok { request: req }));
        }
        self.forget_member(id, m.session);
    }

    pub(super) fn forget_member(&mut self, id: MemberId, session: SessionId) {
        if let Some(s) = self.sessions.get_mut(&session) {
            s.members.retain(|m| *m != id);
        }
    }

    pub(super) fn app_send(
        &mut self,
        session: SessionId,
        request: u32,
        group: &str,
        order: Order,
        payload: Vec<u8>,
    ) {
        let member = self
            .session_member(session, group)
            .and_then(|id| self.members.get(&id).map(|m| (id, m)));
        let sendable = member
            .filter(|(_, m)| m.active)
            .and_then(|(id, m)| m.group.map(|g| (id, g, m.name.clone())));
        let Some((id, gid, name)) = sendable else {
            let rejoining = member.is_some_and(|(_, m)| m.rejoining);
            let (code, message) = self.why_not_sendable(session, group, rejoining);
            self.reply_err(session, request, code, &message);
            return;
        };
        let max = self.max_message(gid);
        if payload.len() > max {
            let msg = format!(
                "payload of {} bytes exceeds the limit of {max} bytes",
                payload.len()
            );
            self.reply_err(session, request, ErrorCode::TooLarge, &msg);
            return;
        }
        let piece = self.max_piece(&name);
        let Some(g) = self.groups.get_mut(&gid) else {
            return;
        };
        if !g.send.can_accept() {
            // The edge only feeds us while can_accept() holds; refuse loudly rather than drop.
            self.reply_err(session, request, ErrorCode::Internal, "send queue full");
            return;
        }
        g.accept_local(order, id, &name, bytes::Bytes::from(payload), piece);
        self.stats.messages_accepted += 1;
        self.out_app
            .push_back((session, FromDaemon::Ok { request }));
        self.dirty.insert(gid);
        g.report_arrivals();
        self.route(gid);
    }

    /// Why the session cannot send to `group`: not joined (yet), or a
    /// member this node lost without the app asking, said as such.
    fn why_not_sendable(
        &self,
        session: SessionId,
        group: &str,
        rejoining: bool,
    ) -> (ErrorCode, String) {
        if rejoining {
            let node = self
                .node
                .map_or_else(String::new, |n| format!(" as node {n}"));
            return (
                ErrorCode::Unavailable,
                format!(
                    "the directory declared this node dead (its lease ran out) and it registered \
                     again{node}: the member is joining the group again and may send once its next \
                     view arrives; messages not yet stable under the old identity were lost"
                ),
            );
        }
        if let Some(why) = self
            .sessions
            .get(&session)
            .and_then(|s| s.dropped_from(group))
        {
            return (ErrorCode::NoSuchGroup, format!("no longer a member: {why}"));
        }
        (
            ErrorCode::NoSuchGroup,
            "join the group before sending to it".into(),
        )
    }

    pub(super) fn app_members(&mut self, session: SessionId, request: u32, group: &str) {
        let g = self.group_ids.get(group).and_then(|id| self.groups.get(id));
        let Some(g) = g else {
            self.reply_err(
                session,
                request,
                ErrorCode::NoSuchGroup,
                "this node takes no part in that group",
            );
            return;
        };
        let reply = FromDaemon::Members {
            request,
            group: g.name.to_string(),
            view: g.views.view,
            members: g
                .views
                .members
                .iter()
                .map(|m| format!("{}:{}", self.node_name(m.node), m.name))
                .collect(),
            sequencer: self.node_name(g.views.sequencer),
        };
        self.out_app.push_back((session, reply));
    }

    pub(super) fn reply_err(
        &mut self,
        session: SessionId,
        request: u32,
        code: ErrorCode,
        message: &str,
    ) {
        self.out_app.push_back((
            session,
            FromDaemon::Error {
                request,
                code,
                message: message.to_owned(),
            },
        ));
    }
}
