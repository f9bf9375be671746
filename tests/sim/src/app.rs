//! Simulated applications: each is one session on one host that joins its
//! groups, sends bursts while the host accepts them (back-pressure), maybe
//! leaves, rejoins or disconnects, and hands everything it is told to the
//! checkers.

use crate::check::{msg_id, Checks, MemberKey};
use crate::plan::AppPlan;
use crate::rng::Rng;
use crate::trace::Trace;
use crate::world::Micros;
use chorus_proto::host::{Credentials, Host, SessionId};
use chorus_proto::wire::app::{FromDaemon, ToDaemon};
use chorus_proto::Order;
use std::collections::BTreeMap;

/// Where an app stands in one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MState {
    /// Not a member; joins at `join_at` if set.
    Idle,
    Joining,
    Member,
    Leaving,
}

/// An app's part in one group.
#[derive(Debug)]
pub struct Membership {
    pub group: usize,
    pub group_name: String,
    pub state: MState,
    /// Counts the app's memberships in this group (a rejoin is a new one).
    pub stint: u32,
    pub join_at: Option<Micros>,
    pub leave_at: Option<Micros>,
    pub rejoin_after: Option<Micros>,
    /// Messages still to send.
    pub to_send: u32,
    /// The first counter sent in the current stint.
    pub stint_first_counter: u32,
    next_counter: u32,
}

impl Membership {
    /// The counter the next send gets.
    pub fn next_counter(&self) -> u32 {
        self.next_counter
    }
}

#[derive(Debug, Clone, Copy)]
enum Pending {
    Join(usize),
    Leave(usize),
    Send(u64),
}

/// One simulated application.
#[derive(Debug)]
pub struct App {
    pub id: usize,
    pub node: usize,
    pub session: SessionId,
    pub plan: AppPlan,
    /// The session is open.
    pub connected: bool,
    /// Disconnected on purpose: its messages need not arrive.
    pub disconnected: bool,
    pub groups: Vec<Membership>,
    pub next_action: Option<Micros>,
    next_request: u32,
    pending: BTreeMap<u32, Pending>,
    rng: Rng,
    /// Draws the sizes of large sends (apart, so plans without them draw
    /// as before).
    large: Rng,
}

impl App {
    /// An app as planned; `group_names[k]` names group `k`.
    pub fn new(id: usize, plan: AppPlan, group_names: &[String], rng: Rng) -> App {
        let groups = plan
            .groups
            .iter()
            .map(|g| Membership {
                group: g.group,
                group_name: group_names[g.group].clone(),
                state: MState::Idle,
                stint: 0,
                join_at: Some(g.join_at),
                leave_at: g.leave_at,
                rejoin_after: g.rejoin_after,
                to_send: g.messages,
                stint_first_counter: 1,
                next_counter: 1,
            })
            .collect();
        App {
            id,
            node: plan.node,
            large: Rng::new(plan.large_seed),
            session: SessionId(id as u64 + 1),
            plan,
            connected: false,
            disconnected: false,
            groups,
            next_action: Some(0),
            next_request: 1,
            pending: BTreeMap::new(),
            rng,
        }
    }

    /// The member key of the app's current stint in group slot `i`.
    pub fn key(&self, i: usize) -> MemberKey {
        MemberKey {
            app: self.id as u32,
            group: self.groups[i].group as u16,
            stint: self.groups[i].stint,
        }
    }

    fn request(&mut self, p: Pending) -> u32 {
        let r = self.next_request;
        self.next_request += 1;
        self.pending.insert(r, p);
        r
    }

    /// True when the app has nothing left to do.
    pub fn finished(&self) -> bool {
        self.disconnected
            || self.groups.iter().all(|m| match m.state {
                MState::Joining | MState::Leaving => false,
                MState::Idle => m.join_at.is_none(),
                MState::Member => m.to_send == 0 && m.leave_at.is_none(),
            })
    }

    /// Does what is due at `now`: connect, join, send a burst, leave,
    /// disconnect. `workload` is false once the liveness phase began (only
    /// the session is kept).
    pub fn act(
        &mut self,
        now: Micros,
        host: &mut Host,
        checks: &mut Checks,
        tr: &mut Trace,
        workload: bool,
    ) {
        let t = crate::node::instant(now);
        if !self.connected && !self.disconnected {
            self.connected = true;
            host.handle_app_connect(t, self.session, Credentials::default());
        }
        self.next_action = None;
        if !workload || self.disconnected {
            return;
        }
        if self.plan.disconnect_at.is_some_and(|d| d <= now) {
            if tr.on() {
                tr.line(format_args!("a{} disconnect", self.id));
            }
            self.disconnect(now, host, checks);
            return;
        }
        for i in 0..self.groups.len() {
            self.act_in(i, now, host, checks, tr);
        }
        if !self.finished() {
            let jitter = self.rng.below(self.plan.interval_us);
            self.next_action = Some(now + self.plan.interval_us / 2 + jitter);
        }
        if let Some(d) = self.plan.disconnect_at {
            self.next_action = Some(self.next_action.map_or(d, |a| a.min(d)));
        }
    }

    fn act_in(
        &mut self,
        i: usize,
        now: Micros,
        host: &mut Host,
        checks: &mut Checks,
        tr: &mut Trace,
    ) {
        let t = crate::node::instant(now);
        let m = &self.groups[i];
        match m.state {
            MState::Idle if m.join_at.is_some_and(|j| j <= now) => {
                let group = m.group_name.clone();
                let request = self.request(Pending::Join(i));
                self.groups[i].state = MState::Joining;
                let name = format!("a{}", self.id);
                if tr.on() {
                    tr.line(format_args!("a{} join {group}", self.id));
                }
                host.handle_app(
                    t,
                    self.session,
                    ToDaemon::Join {
                        request,
                        group,
                        name,
                    },
                );
            }
            MState::Member if m.leave_at.is_some_and(|l| l <= now) => {
                let group = m.group_name.clone();
                let request = self.request(Pending::Leave(i));
                let g = &mut self.groups[i];
                g.state = MState::Leaving;
                g.leave_at = None;
                g.join_at = g.rejoin_after.take().map(|r| now + r);
                if tr.on() {
                    tr.line(format_args!("a{} leave {group}", self.id));
                }
                host.handle_app(t, self.session, ToDaemon::Leave { request, group });
            }
            MState::Member if m.to_send > 0 => self.burst(i, now, host, checks, tr),
            _ => {}
        }
    }

    fn burst(
        &mut self,
        i: usize,
        now: Micros,
        host: &mut Host,
        checks: &mut Checks,
        tr: &mut Trace,
    ) {
        let t = crate::node::instant(now);
        let name = format!("a{}", self.id);
        let max = host.max_piece(&name).min(self.plan.payload_max).max(8);
        let k = self.rng.range(1, u64::from(self.plan.burst_max));
        for _ in 0..k {
            if self.groups[i].to_send == 0 || !host.can_accept(self.session) {
                break;
            }
            let g = &mut self.groups[i];
            let id = msg_id(self.id, g.group, g.next_counter);
            g.next_counter += 1;
            g.to_send -= 1;
            let group = g.group_name.clone();
            let order = self.pick_order();
            let mut len = self.rng.range(8, max as u64) as usize;
            if self.plan.large_pct > 0 && self.large.below(100) < u64::from(self.plan.large_pct) {
                // Two to four datagrams' worth: sent in pieces.
                let piece = host.max_piece(&name);
                len = self.large.range(piece as u64 + 1, 4 * piece as u64) as usize;
            }
            let payload = crate::check::payload(id, len);
            checks.on_send(id, len);
            let request = self.request(Pending::Send(id));
            if tr.on() {
                tr.line(format_args!(
                    "a{} send {group} #{} {} {len}B",
                    self.id,
                    id as u32,
                    order.as_str()
                ));
            }
            host.handle_app(
                t,
                self.session,
                ToDaemon::Send {
                    request,
                    group,
                    order,
                    payload,
                },
            );
        }
    }

    fn pick_order(&mut self) -> Order {
        let r = self.rng.below(100) as u32;
        if r < self.plan.fifo_pct {
            Order::Fifo
        } else if r < self.plan.fifo_pct + self.plan.safe_pct {
            Order::Safe
        } else {
            Order::Total
        }
    }

    /// The app goes away: its session closes, its memberships end.
    pub fn disconnect(&mut self, now: Micros, host: &mut Host, checks: &mut Checks) {
        // To the checkers the app is gone as if its host had crashed.
        self.crashed(checks);
        host.handle_app_disconnect(crate::node::instant(now), self.session);
    }

    /// The app's host crashed: the app is gone with it.
    pub fn crashed(&mut self, checks: &mut Checks) {
        for i in 0..self.groups.len() {
            if matches!(self.groups[i].state, MState::Member | MState::Leaving) {
                checks.on_stint_end(self.key(i));
            }
            checks.on_crash(self.key(i));
            self.groups[i].state = MState::Idle;
            self.groups[i].join_at = None;
        }
        self.disconnected = true;
        self.connected = false;
        self.next_action = None;
    }

    /// An event from the daemon.
    pub fn on_event(&mut self, now: Micros, ev: FromDaemon, checks: &mut Checks, tr: &mut Trace) {
        match ev {
            FromDaemon::Ok { request } => self.on_reply(now, request, true, checks, tr),
            FromDaemon::Error { request, .. } => self.on_reply(now, request, false, checks, tr),
            FromDaemon::View {
                group,
                view,
                members,
                ..
            } => {
                let Some(i) = self.groups.iter().position(|m| m.group_name == group) else {
                    return;
                };
                let m = &mut self.groups[i];
                if m.state == MState::Joining {
                    m.state = MState::Member;
                    m.stint += 1;
                    m.stint_first_counter = m.next_counter;
                }
                if tr.on() {
                    tr.line(format_args!(
                        "a{} view {group} v{} [{}]",
                        self.id,
                        view,
                        members.join(" ")
                    ));
                }
                let key = self.key(i);
                checks.on_view(key, view.0, &members);
            }
            FromDaemon::Message {
                group,
                view,
                seq,
                order,
                payload,
                sender,
            } => {
                let Some(i) = self.groups.iter().position(|m| *m.group_name == *group) else {
                    return;
                };
                if tr.on() {
                    let id = crate::check::payload_id(&payload).unwrap_or(0);
                    tr.line(format_args!(
                        "a{} deliver {group} v{} @{seq} from {sender} #{}/a{} {}",
                        self.id,
                        view,
                        id as u32,
                        id >> 40,
                        order.as_str()
                    ));
                }
                let key = self.key(i);
                checks.on_deliver(key, view.0, seq, &payload, order == Order::Safe);
            }
            FromDaemon::Separated {
                group,
                view,
                rejoining,
                reason,
            } => {
                let Some(i) = self.groups.iter().position(|m| m.group_name == group) else {
                    return;
                };
                if tr.on() {
                    tr.line(format_args!(
                        "a{} separated {group} after v{view} (rejoining {rejoining}): {reason}",
                        self.id
                    ));
                }
                // The membership ends here: what it delivered must be a
                // stretch of the others' order with no hole; the next view
                // (if the daemon joins again) begins a new one.
                if matches!(self.groups[i].state, MState::Member | MState::Leaving) {
                    checks.on_separated(self.key(i));
                    checks.on_stint_end(self.key(i));
                }
                let m = &self.groups[i];
                let stream = crate::check::msg_id(self.id, m.group, 0) >> 32;
                checks.on_sender_separated(stream, m.next_counter());
                let m = &mut self.groups[i];
                if rejoining {
                    m.state = MState::Joining;
                } else {
                    m.state = MState::Idle;
                    m.join_at = Some(now + 50_000);
                }
            }
            _ => {}
        }
        if self.next_action.is_none() && !self.finished() && !self.disconnected {
            self.next_action = Some(now);
        }
    }

    fn on_reply(
        &mut self,
        now: Micros,
        request: u32,
        ok: bool,
        checks: &mut Checks,
        tr: &mut Trace,
    ) {
        match self.pending.remove(&request) {
            Some(Pending::Send(id)) => checks.on_send_result(id, ok),
            Some(Pending::Join(i)) if !ok => {
                // Refused or the directory was unreachable: try again later.
                let m = &mut self.groups[i];
                m.state = MState::Idle;
                m.join_at = Some(now + 50_000);
                if tr.on() {
                    tr.line(format_args!("a{} join refused; retry", self.id));
                }
            }
            Some(Pending::Leave(i)) => {
                checks.on_stint_end(self.key(i));
                self.groups[i].state = MState::Idle;
            }
            _ => {}
        }
    }
}
