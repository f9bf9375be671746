//! The simulated cluster: nodes, directory, apps and network around one
//! event queue. [`Sim::step`] takes the next event or timer, feeds it to the
//! state machine it is for, drains the outputs into the network, the
//! directory link, the sequencer channel and the apps, and runs the
//! checkers that judge internal state.

use crate::app::App;
use crate::check::{bounded_memory, liveness, stability::Stability, Checks, Violation};
use crate::dir::DirDriver;
use crate::net::Network;
use crate::node::{instant, Node, Outbox};
use crate::plan::{Options, Plan, ProcessFault};
use crate::rng::Rng;
use crate::trace::{Trace, TraceMode};
use crate::world::{Ev, Micros, Port, Sched};
use chorus_proto::directory::ConnId;
use chorus_proto::host::{MulticastChange, SessionId};
use chorus_proto::order::sequencer::SequencerInput;
use chorus_proto::wire::directory::{FromDirectory, ToDirectory};
use chorus_proto::GroupId;
use std::collections::BTreeMap;

/// Incarnation of every node's first run (a restart adds one).
pub const FIRST_INCARNATION: u64 = 1000;

/// What woke the world.
#[derive(Debug, Clone, Copy)]
enum Timer {
    Node(usize),
    App(usize),
    Dir,
}

/// The whole simulated cluster.
#[derive(Debug)]
pub struct Sim {
    pub plan: Plan,
    pub opts: Options,
    pub s: Sched,
    pub tr: Trace,
    pub net: Network,
    pub nodes: Vec<Node>,
    pub dir: DirDriver,
    pub apps: Vec<App>,
    pub checks: Checks,
    pub stability: Stability,
    /// Where each (group, order epoch, view) starts, from the sequencer
    /// that began it.
    pub view_starts: liveness::ViewStarts,
    /// Views told to a sequencer whose markers it has not placed yet:
    /// (node, group, view).
    awaiting_starts: Vec<(usize, GroupId, chorus_proto::ViewId)>,
    /// False once the liveness phase began: apps stop acting.
    pub workload: bool,
    pub steps: u64,
    out: Outbox,
    buf: Vec<u8>,
    rng: Rng,
    session_app: BTreeMap<(usize, SessionId), usize>,
    views_seen: u64,
    /// Traffic samples for the fuzz corpus, when wanted.
    pub capture: Option<crate::capture::Capture>,
    /// The directory is down (restarting) until then.
    dir_down_until: Micros,
    /// DATA copies sent per message (the no-storm check).
    pub retransmissions: crate::check::retransmissions::Retransmissions,
    /// Per node: while its daemon is paused, what reached it meanwhile, in
    /// order (its sockets' backlog).
    paused: Vec<Option<Vec<Ev>>>,
    /// The attacker, with [`Options::adversary`].
    pub adversary: Option<crate::adversary::Adversary>,
    /// Datagrams refused at the hosts' seals: (unaltered, altered).
    pub refused: (u64, u64),
    /// What the seals opened (the sealing checker).
    pub sealing: crate::check::sealing::Sealing,
}

impl Sim {
    /// A cluster as `plan` describes; nothing has happened yet.
    pub fn new(plan: Plan, opts: Options, mode: TraceMode) -> Sim {
        let mut root = Rng::new(plan.seed ^ 0x5157_C0DE);
        let net = Network::new(&plan, root.fork(10));
        let plan_n = plan.n();
        let nodes = (0..plan.n())
            .map(|i| Node::new(i, plan.hosts[i], FIRST_INCARNATION, opts.planted))
            .collect();
        let names: Vec<String> = plan.groups.iter().map(|g| g.name.clone()).collect();
        let mut app_rng = root.fork(11);
        let apps: Vec<App> = plan
            .apps
            .iter()
            .enumerate()
            .map(|(i, a)| App::new(i, a.clone(), &names, app_rng.fork(i as u64)))
            .collect();
        let session_app = apps.iter().map(|a| ((a.node, a.session), a.id)).collect();
        let mut sim = Sim {
            dir: DirDriver::new(&plan),
            plan,
            opts,
            s: Sched::default(),
            tr: Trace::new(mode),
            net,
            nodes,
            apps,
            checks: Checks::default(),
            stability: Stability::default(),
            view_starts: BTreeMap::new(),
            awaiting_starts: Vec::new(),
            workload: true,
            steps: 0,
            out: Outbox::default(),
            buf: Vec::with_capacity(2048),
            rng: root.fork(12),
            session_app,
            views_seen: 0,
            capture: None,
            dir_down_until: 0,
            retransmissions: Default::default(),
            paused: (0..plan_n).map(|_| None).collect(),
            adversary: None,
            refused: (0, 0),
            sealing: Default::default(),
        };
        // Forked last, so that every other stream is as without it.
        let adversary_rng = root.fork(13);
        if sim.opts.adversary {
            sim.adversary = Some(crate::adversary::Adversary::new(adversary_rng));
        }
        sim.boot();
        sim
    }

    fn boot(&mut self) {
        if self.tr.on() {
            let p = &self.plan;
            self.tr.line(format_args!(
                "seed {} hosts {} groups {} apps {} messages {} features [{}]",
                p.seed,
                p.n(),
                p.groups.len(),
                p.apps.len(),
                p.messages(),
                p.features.join(" ")
            ));
            for (i, h) in p.hosts.iter().enumerate() {
                self.tr.line(format_args!("h{i} settings {h:?}"));
            }
        }
        for i in 0..self.nodes.len() {
            let at = self.rng.range(0, 5_000);
            self.s.at(at, Ev::DirConnect { node: i });
        }
        if self.opts.process_faults {
            for k in 0..self.plan.process.len() {
                self.s.at(self.plan.process[k].0, Ev::Process { index: k });
            }
        }
    }

    /// The first violation found, if any.
    pub fn violation(&self) -> Option<&Violation> {
        self.checks.violations.first()
    }

    fn fail(&mut self, check: &'static str, r: Result<(), String>) {
        if let Err(detail) = r {
            self.checks.violations.push(Violation {
                check,
                at: self.s.now,
                detail,
            });
        }
    }

    fn next_timer(&self) -> Option<(Micros, Timer)> {
        let mut best: Option<(Micros, Timer)> = None;
        let mut consider = |t: Option<Micros>, w: Timer| {
            if let Some(t) = t {
                if best.is_none_or(|(b, _)| t < b) {
                    best = Some((t, w));
                }
            }
        };
        for (i, n) in self.nodes.iter().enumerate() {
            if self.paused[i].is_none() {
                consider(n.wake(), Timer::Node(i));
            }
        }
        for (j, a) in self.apps.iter().enumerate() {
            // An app of a paused daemon waits on its socket too.
            if self.nodes[a.node].alive && self.paused[a.node].is_none() {
                consider(a.next_action, Timer::App(j));
            }
        }
        consider(
            self.dir.dir.poll_timeout().map(|t| t.as_micros()),
            Timer::Dir,
        );
        best
    }

    /// Runs the next event or timer. False when nothing is left to happen.
    pub fn step(&mut self) -> bool {
        let timer = self.next_timer();
        let queued = self.s.peek_time();
        let now = match (queued, timer) {
            (None, None) => return false,
            (Some(q), Some((t, _))) if q <= t => q,
            (Some(q), None) => q,
            (_, Some((t, _))) => t,
        };
        self.s.now = self.s.now.max(now);
        self.tr.set_now(self.s.now);
        self.checks.now = self.s.now;
        self.steps += 1;
        if queued == Some(now) {
            if let Some((_, ev)) = self.s.pop() {
                self.handle(ev);
            }
        } else if let Some((_, t)) = timer {
            self.fire(t);
        }
        true
    }

    fn fire(&mut self, t: Timer) {
        match t {
            Timer::Node(i) => self.node_timers(i),
            Timer::App(j) => {
                let node = self.apps[j].node;
                let now = self.s.now;
                let workload = self.workload;
                let app = &mut self.apps[j];
                app.act(
                    now,
                    &mut self.nodes[node].host,
                    &mut self.checks,
                    &mut self.tr,
                    workload,
                );
                self.drain_host(node);
            }
            Timer::Dir => {
                self.dir.dir.handle_timeout(instant(self.s.now));
                self.route_dir();
            }
        }
    }

    fn node_timers(&mut self, i: usize) {
        let now = instant(self.s.now);
        let n = &mut self.nodes[i];
        if n.host.poll_timeout().is_some_and(|t| t <= now) {
            n.host.handle_timeout(now);
            self.drain_host(i);
        }
        let n = &mut self.nodes[i];
        if let Some(seq) = n
            .seq
            .as_mut()
            .filter(|s| s.poll_timeout().is_some_and(|t| t <= now))
        {
            seq.handle_timeout(now);
            self.flush_sequencer(i);
        }
        if let Some(frame) = self.nodes[i].driver.poll_heartbeat(now) {
            self.send_to_dir(i, frame);
        }
        self.check_lapse(i);
    }

    /// Tells the host if its driver found it silent for about a lease; the
    /// host then lives on as a new incarnation.
    fn check_lapse(&mut self, i: usize) {
        let now = instant(self.s.now);
        let n = &mut self.nodes[i];
        let Some(silent) = n.driver.take_lapse() else {
            return;
        };
        if self.tr.on() {
            self.tr.line(format_args!(
                "h{i} lease lapsed (silent {} ms)",
                silent.as_millis()
            ));
        }
        n.host.handle_lease_lapsed(now, silent);
        n.incarnation = n.host.settings().incarnation.0;
        // The old life ends as with a crash, for every membership of the
        // node's apps (a leaving one too, not told it was separated): what
        // they sent and the group had not made stable may be lost, and
        // their deliveries past the survivors' order give way.
        for a in self.apps.iter().filter(|a| a.node == i) {
            for (k, m) in a.groups.iter().enumerate() {
                let stream = crate::check::msg_id(a.id, m.group, 0) >> 32;
                self.checks.on_sender_separated(stream, m.next_counter());
                self.checks.on_separated(a.key(k));
            }
        }
        self.drain_host(i);
    }

    fn handle(&mut self, ev: Ev) {
        if let Some(backlog) = ev.node().and_then(|n| self.paused[n].as_mut()) {
            backlog.push(ev);
            return;
        }
        match ev {
            Ev::Datagram {
                node,
                port,
                from,
                bytes,
                forged,
            } => self.on_datagram(node, port, from, &bytes, forged),
            Ev::SeqInput {
                node,
                incarnation,
                input,
            } => self.seq_input(node, incarnation, input),
            Ev::DirConnect { node } => self.dir_connect(node),
            Ev::ToDir { conn, frame } => {
                if self.tr.on() {
                    self.tr.line(format_args!(
                        "dir <- h{} {}",
                        self.dir.node_of(conn).map_or(-1, |n| n as i64),
                        short_to_dir(&frame)
                    ));
                }
                self.dir.dir.handle_frame(instant(self.s.now), conn, frame);
                self.route_dir();
            }
            Ev::FromDir { node, conn, frame } => self.on_dir_frame(node, conn, frame),
            Ev::DirClosed { node, conn } => {
                let n = &mut self.nodes[node];
                if n.alive && n.conn == Some(conn) {
                    if self.tr.on() {
                        self.tr.line(format_args!(
                            "h{node} directory link closed by the directory"
                        ));
                    }
                    n.conn = None;
                    n.driver.on_directory_lost(instant(self.s.now));
                    n.host.handle_directory_lost(instant(self.s.now));
                    self.drain_host(node);
                    self.check_lapse(node);
                    // chorusd reconnects after a short backoff.
                    self.s.at(self.s.now + 50_000, Ev::DirConnect { node });
                }
            }
            Ev::Process { index } => self.process_fault(index),
            Ev::Resume { node } => {
                let backlog = self.paused[node].take().unwrap_or_default();
                if self.tr.on() {
                    self.tr.line(format_args!(
                        "h{node} runs again ({} events waited)",
                        backlog.len()
                    ));
                }
                // The daemon notices it did not run for a while (chorusd's
                // loop calls this every turn; a simulated node stalls only
                // here), then runs its timers, as chorusd's loop does
                // before it reads its sockets: a lapsed lease is found
                // before any stale datagram is delivered.
                self.nodes[node].driver.on_wake(instant(self.s.now));
                self.check_lapse(node);
                self.node_timers(node);
                for ev in backlog {
                    self.handle(ev);
                }
            }
            Ev::Restart { node } => {
                if self.tr.on() {
                    self.tr.line(format_args!(
                        "h{node} restarts as incarnation {}",
                        self.nodes[node].incarnation
                    ));
                }
                self.nodes[node].alive = true;
                self.s.at(self.s.now, Ev::DirConnect { node });
            }
        }
    }

    fn on_datagram(
        &mut self,
        node: usize,
        port: Port,
        from: std::net::SocketAddrV4,
        sealed: &[u8],
        forged: Option<crate::adversary::Mutation>,
    ) {
        if forged.is_none() {
            self.net.arrived(node);
        }
        if !self.nodes[node].alive {
            return;
        }
        // The attacker captures what the network carries (not its own).
        let adversary = self.adversary.as_mut().filter(|_| forged.is_none());
        if let Some(f) =
            adversary.and_then(|a| a.saw(self.s.now, self.nodes.len(), node, port, from, sealed))
        {
            if self.tr.on() {
                self.tr.line(format_args!(
                    "attacker: {:?} of a datagram for h{node} to h{} ({} bytes)",
                    f.mutation,
                    f.node,
                    f.bytes.len()
                ));
            }
            self.s.at(
                f.at,
                Ev::Datagram {
                    node: f.node,
                    port: f.port,
                    from: f.from,
                    bytes: std::rc::Rc::from(f.bytes),
                    forged: Some(f.mutation),
                },
            );
        }
        // Opened as chorusd opens, by the socket's own seal: a datagram
        // that does not open (a duplicate from the network is a replay)
        // never reaches the protocol.
        let mut buf = sealed.to_vec();
        let n = &mut self.nodes[node];
        let seal = match port {
            Port::Data => &mut n.seal,
            Port::Order => &mut n.seq_seal,
        };
        let bytes = match seal.open(&mut buf) {
            Ok(bytes) => {
                let r = self.sealing.on_opened(node, port, sealed, forged);
                if let Err(detail) = r {
                    self.checks.violations.push(Violation {
                        check: "sealing",
                        at: self.s.now,
                        detail,
                    });
                }
                bytes
            }
            Err(why) => {
                if self.tr.on() {
                    let kind = if port == Port::Order { "-seq" } else { "" };
                    let by = if forged.is_some() {
                        " (the attacker's)"
                    } else {
                        ""
                    };
                    self.tr.line(format_args!(
                        "h{node} rx{kind} refused from {from}{by}: {why}"
                    ));
                }
                match forged {
                    Some(m) if m.altered() => self.refused.1 += 1,
                    _ => self.refused.0 += 1,
                }
                if port == Port::Data {
                    self.nodes[node].host.note_refused(from, &why);
                }
                return;
            }
        };
        if self.tr.on() {
            let kind = if port == Port::Order { "-seq" } else { "" };
            self.tr.line(format_args!(
                "h{node} rx{kind} {} from {from}",
                crate::trace::datagram(bytes)
            ));
        }
        let now = instant(self.s.now);
        match port {
            Port::Data => {
                self.nodes[node].host.handle_datagram(now, from, bytes);
                self.drain_host(node);
            }
            Port::Order => {
                if let Some(seq) = self.nodes[node].seq.as_mut() {
                    seq.handle_datagram(now, bytes);
                    self.flush_sequencer(node);
                }
            }
        }
    }

    fn seq_input(&mut self, node: usize, incarnation: u64, input: SequencerInput) {
        let now = instant(self.s.now);
        let n = &mut self.nodes[node];
        if !n.alive || n.incarnation != incarnation {
            return;
        }
        let Some(seq) = n.seq.as_mut() else { return };
        let view = match &input {
            SequencerInput::View {
                group,
                view,
                members,
                next,
                ..
            } => {
                if seq.next_position(*group).is_none() {
                    // New to this sequencer: it starts from this view.
                    self.stability.forget(node, *group);
                }
                self.stability.on_view(node, *group, *view, members);
                // A group new to this sequencer whose order begins at 1.
                let fresh = next.0 == 1 && seq.next_position(*group).is_none();
                Some((*group, *view, fresh))
            }
            _ => None,
        };
        if self.tr.on() {
            self.tr
                .line(format_args!("h{node} seq-in {}", short_seq_input(&input)));
        }
        seq.handle_input(now, input);
        if let Some((group, view, fresh)) = view {
            if let Some(start) = seq.next_position(group) {
                let g = group.0 as u16 - 1;
                if start.0 == 1 || fresh {
                    // A group new to every node (or a takeover by a node
                    // that saw none of the old order, which nobody else
                    // left alive had either): its order starts over.
                    self.checks.on_order_start(g, view.0);
                }
                // Its start is known once the marker is placed (it waits
                // while a sender is inside a large message).
                self.awaiting_starts.push((node, group, view));
            }
            self.views_seen += 1;
        }
        self.note_view_starts(node);
        self.flush_sequencer(node);
    }

    fn dir_connect(&mut self, node: usize) {
        if !self.nodes[node].alive || self.nodes[node].conn.is_some() {
            return;
        }
        if self.s.now < self.dir_down_until {
            // Refused while the directory restarts: try again when it is up.
            self.s.at(self.dir_down_until, Ev::DirConnect { node });
            return;
        }
        let conn = self.dir.open(node);
        if self.tr.on() {
            self.tr.line(format_args!("h{node} dir-connect {conn}"));
        }
        self.dir.dir.handle_connect(instant(self.s.now), conn);
        let n = &mut self.nodes[node];
        n.conn = Some(conn);
        n.driver.on_directory_connected(instant(self.s.now));
        n.host.handle_directory_connected(instant(self.s.now));
        self.drain_host(node);
    }

    fn on_dir_frame(&mut self, node: usize, conn: ConnId, frame: FromDirectory) {
        let now = instant(self.s.now);
        let n = &mut self.nodes[node];
        if !n.alive || n.conn != Some(conn) {
            return;
        }
        if self.tr.on() {
            self.tr
                .line(format_args!("h{node} <- dir {}", short_from_dir(&frame)));
        }
        if let Some(settings) = n.driver.on_directory_frame(now, n.host.settings(), &frame) {
            n.start_sequencer(settings);
        }
        n.host.handle_directory(now, frame);
        self.drain_host(node);
    }

    /// Sends a frame from `node` to the directory, in order, after the
    /// link's delay.
    fn send_to_dir(&mut self, node: usize, frame: ToDirectory) {
        let Some(conn) = self.nodes[node].conn else {
            return;
        };
        if let Some(c) = self.capture.as_mut() {
            let mut b = Vec::new();
            frame.encode(&mut b);
            c.offer("directory_frame", b.get(3).copied().unwrap_or(0), &b);
        }
        let delay =
            self.plan.dir_delay_us + self.net.dir_delay(self.s.now, node) + self.rng.below(200);
        let n = &mut self.nodes[node];
        let at = (self.s.now + delay).max(n.dir_up_at);
        n.dir_up_at = at;
        self.s.at(at, Ev::ToDir { conn, frame });
    }

    fn route_dir(&mut self) {
        while let Some((conn, frame)) = self.dir.dir.poll_output() {
            if let FromDirectory::View(v) = &frame {
                let g = v.group.0 as u16 - 1;
                self.checks.on_view_issued(self.dir.generation, g, v);
            }
            let Some(node) = self.dir.node_of(conn) else {
                continue;
            };
            if let Some(c) = self.capture.as_mut() {
                let mut b = Vec::new();
                frame.encode(&mut b);
                c.offer("directory_frame", b.get(3).copied().unwrap_or(0), &b);
            }
            let at = self.dir_down_at(node);
            self.s.at(at, Ev::FromDir { node, conn, frame });
        }
        while let Some(conn) = self.dir.dir.poll_close() {
            let Some(node) = self.dir.node_of(conn) else {
                continue;
            };
            let at = self.dir_down_at(node);
            self.s.at(at, Ev::DirClosed { node, conn });
        }
    }

    fn dir_down_at(&mut self, node: usize) -> Micros {
        let delay =
            self.plan.dir_delay_us + self.net.dir_delay(self.s.now, node) + self.rng.below(200);
        let n = &mut self.nodes[node];
        n.dir_down_at = (self.s.now + delay).max(n.dir_down_at);
        n.dir_down_at
    }

    /// Drains node `i`'s host and routes every output.
    pub(crate) fn drain_host(&mut self, i: usize) {
        if self.tr.on() && self.opts.debug_host == Some(i) {
            let lines: Vec<String> = self.nodes[i]
                .host
                .groups()
                .map(|g| g.debug_line())
                .collect();
            self.tr
                .line(format_args!("h{i} state {}", lines.join("; ")));
        }
        let mut out = std::mem::take(&mut self.out);
        self.nodes[i].drain(self.s.now, &mut out);
        self.route(i, &mut out);
        self.out = out;
        let r = bounded_memory::check(&self.nodes, i, self.views_seen);
        self.fail("bounded_memory", r);
    }

    fn route(&mut self, i: usize, out: &mut Outbox) {
        for c in out.mcast.drain(..) {
            let (addr, joined) = match c {
                MulticastChange::Join(a) => (a, true),
                MulticastChange::Leave(a) => (a, false),
            };
            if self.tr.on() {
                self.tr.line(format_args!(
                    "h{i} mcast {} {addr}",
                    if joined { "join" } else { "leave" }
                ));
            }
            self.net.set_member(addr, i, joined);
        }
        for (dest, bytes) in out.dgrams.drain(..) {
            self.transmit(i, false, dest, &bytes);
        }
        for input in out.seq.drain(..) {
            let n = &mut self.nodes[i];
            let at = (self.s.now + self.rng.below(30)).max(n.seq_chan_at);
            n.seq_chan_at = at;
            let incarnation = n.incarnation;
            self.s.at(
                at,
                Ev::SeqInput {
                    node: i,
                    incarnation,
                    input,
                },
            );
        }
        let frames: Vec<ToDirectory> = out.dir.drain(..).collect();
        for f in frames {
            self.send_to_dir(i, f);
        }
        for (session, ev) in out.app.drain(..) {
            if let Some(c) = self.capture.as_mut() {
                let mut b = Vec::new();
                ev.encode(&mut b);
                c.offer("app_frame", b.get(3).copied().unwrap_or(0), &b);
            }
            if let chorus_proto::wire::app::FromDaemon::Separated { group, .. } = &ev {
                // The node's part in the group ended: what any of its apps
                // sent there and had not made stable may be lost (those
                // that left meanwhile are told nothing).
                for a in self.apps.iter().filter(|a| a.node == i) {
                    for m in a.groups.iter().filter(|m| m.group_name == *group) {
                        let stream = crate::check::msg_id(a.id, m.group, 0) >> 32;
                        self.checks.on_sender_separated(stream, m.next_counter());
                    }
                }
            }
            if let Some(&a) = self.session_app.get(&(i, session)) {
                self.apps[a].on_event(self.s.now, ev, &mut self.checks, &mut self.tr);
            }
        }
        for session in out.close.drain(..) {
            if let Some(&a) = self.session_app.get(&(i, session)) {
                if self.tr.on() {
                    self.tr
                        .line(format_args!("h{i} closes the session of a{a}"));
                }
                self.apps[a].connected = false;
            }
        }
    }

    /// Node `i` sends a datagram from its data socket, or from its
    /// sequencer's: traced, offered to the fuzz corpus capture, then handed
    /// to the network.
    fn transmit(
        &mut self,
        i: usize,
        from_sequencer: bool,
        dest: std::net::SocketAddrV4,
        bytes: &[u8],
    ) {
        if self.tr.on() {
            let what = if from_sequencer { "seq-tx" } else { "tx" };
            self.tr.line(format_args!(
                "h{i} {what} {} to {dest}",
                crate::trace::datagram(bytes)
            ));
        }
        if let Some(c) = self.capture.as_mut() {
            c.offer("datagram_decode", bytes.get(3).copied().unwrap_or(0), bytes);
        }
        if !from_sequencer {
            self.retransmissions.on_transmit(bytes);
        }
        // Sealed as chorusd seals: the network (its duplicates, its
        // delays) carries what an attacker could capture and replay.
        let n = &mut self.nodes[i];
        let seal = if from_sequencer {
            &mut n.seq_seal
        } else {
            &mut n.seal
        };
        let sealed = seal.seal(bytes);
        self.net
            .send(&mut self.s, &mut self.tr, i, from_sequencer, dest, sealed);
    }

    /// Sends everything node `i`'s sequencer has queued, then judges stability.
    /// Records the starts of views whose markers the sequencer at `node`
    /// has placed.
    fn note_view_starts(&mut self, node: usize) {
        let Some(seq) = self.nodes[node].seq.as_ref() else {
            return;
        };
        let checks = &self.checks;
        let view_starts = &mut self.view_starts;
        self.awaiting_starts.retain(|&(n, group, view)| {
            if n != node {
                return true;
            }
            match seq.view_start(group, view) {
                Some(start) => {
                    let g = group.0 as u16 - 1;
                    let e = checks.epoch_of(g, view.0);
                    view_starts.entry((g, e, view.0)).or_insert(start.0);
                    false
                }
                // Still waiting, unless the sequencer gave the group up.
                None => seq.next_position(group).is_some(),
            }
        });
    }

    fn flush_sequencer(&mut self, i: usize) {
        while let Some(dest) = self.nodes[i].poll_sequencer_transmit(&mut self.buf) {
            let bytes = std::mem::take(&mut self.buf);
            self.transmit(i, true, dest, &bytes);
            self.buf = bytes;
        }
        let r = self.stability.check(&self.nodes, i);
        self.fail("stability", r);
    }

    fn process_fault(&mut self, index: usize) {
        let (_, f) = self.plan.process[index];
        if self.tr.on() {
            self.tr.line(format_args!("process fault {f:?}"));
        }
        match f {
            ProcessFault::Crash { node, down_us } => self.crash(node, down_us),
            ProcessFault::SequencerCrash { group, down_us } => {
                let gid = GroupId(group as u32 + 1);
                let victim = self.nodes.iter().position(|n| {
                    n.alive && n.seq.as_ref().is_some_and(|s| s.groups().any(|g| g == gid))
                });
                if let Some(node) = victim {
                    self.crash(node, down_us);
                }
            }
            ProcessFault::DirRestart { down_us } => {
                let back = self.s.now + down_us;
                self.dir_down_until = back;
                for node in 0..self.nodes.len() {
                    if let (Some(backlog), Some(conn)) =
                        (self.paused[node].as_mut(), self.nodes[node].conn)
                    {
                        // A paused daemon finds the link gone when it runs.
                        backlog.push(Ev::DirClosed { node, conn });
                        continue;
                    }
                    if self.cut_dir_link(node).is_some() {
                        self.drain_host(node);
                        self.s.at(back, Ev::DirConnect { node });
                    }
                }
                self.dir.restart(&self.plan);
            }
            ProcessFault::Pause { node, for_us } => {
                if self.nodes[node].alive && self.paused[node].is_none() {
                    self.nodes[node].driver.on_wake(instant(self.s.now));
                    self.paused[node] = Some(Vec::new());
                    for a in self.apps.iter().filter(|a| a.node == node) {
                        for i in 0..a.groups.len() {
                            self.checks.on_suspect(a.key(i));
                        }
                    }
                    self.s.at(self.s.now + for_us, Ev::Resume { node });
                }
            }
            ProcessFault::DirReset { node } => {
                if self.paused[node].is_some() {
                    return; // its side of the link does nothing while paused
                }
                if let Some(conn) = self.cut_dir_link(node) {
                    self.dir.dir.handle_disconnect(instant(self.s.now), conn);
                    self.route_dir();
                    self.drain_host(node);
                    self.s.at(self.s.now + 100_000, Ev::DirConnect { node });
                }
            }
        }
    }

    /// A live node's directory link breaks (its side): the host learns it
    /// and heartbeats stop. Returns the connection that was open.
    fn cut_dir_link(&mut self, node: usize) -> Option<ConnId> {
        let n = &mut self.nodes[node];
        if !n.alive {
            return None;
        }
        let conn = n.conn.take()?;
        n.driver.on_directory_lost(instant(self.s.now));
        n.host.handle_directory_lost(instant(self.s.now));
        self.check_lapse(node);
        Some(conn)
    }

    /// The node dies: its state is gone, its apps with it; it may restart
    /// with a new incarnation (and no apps).
    fn crash(&mut self, node: usize, down_us: Option<Micros>) {
        if !self.nodes[node].alive {
            return;
        }
        let conn = self.nodes[node].conn.take();
        self.nodes[node].alive = false;
        // A paused daemon that dies loses what waited in its sockets.
        self.paused[node] = None;
        self.net.forget_node(node);
        for a in self.apps.iter_mut().filter(|a| a.node == node) {
            a.crashed(&mut self.checks);
        }
        if let Some(conn) = conn {
            self.dir.dir.handle_disconnect(instant(self.s.now), conn);
            self.route_dir();
        }
        if let Some(d) = down_us {
            let inc = self.nodes[node].incarnation + 1;
            self.nodes[node] = Node::new(node, self.plan.hosts[node], inc, self.opts.planted);
            self.sealing.forget_node(node);
            self.nodes[node].alive = false;
            self.s.at(self.s.now + d, Ev::Restart { node });
        }
    }

    /// Ends every network fault (the liveness phase).
    pub fn heal(&mut self) {
        if self.tr.on() {
            self.tr.line(format_args!(
                "heal: faults end, workload stops; liveness phase"
            ));
        }
        self.net.heal();
        self.workload = false;
    }
}

fn short_to_dir(f: &ToDirectory) -> String {
    match f {
        ToDirectory::Heartbeat => "Heartbeat".to_owned(),
        // Written as it was when `previous` was a NodeId with 0 for none,
        // so that traces stay comparable across that change.
        ToDirectory::Hello {
            name,
            incarnation,
            ip,
            data_port,
            order_port,
            previous,
            ..
        } => format!(
            "Hello {{ name: {name:?}, incarnation: {incarnation:?}, ip: {ip:?}, data_port: {data_port}, order_port: {order_port}, previous: NodeId({}) }}",
            previous.map_or(0, |n| n.0)
        ),
        ToDirectory::PastView(v) => format!("PastView {}", short_view(v)),
        other => format!("{other:?}"),
    }
}

fn short_from_dir(f: &FromDirectory) -> String {
    match f {
        FromDirectory::View(v) => format!("View {}", short_view(v)),
        other => format!("{other:?}"),
    }
}

fn short_view(v: &chorus_proto::wire::directory::View) -> String {
    format!(
        "g{} v{} seq n{} members [{}] nodes [{}]",
        v.group,
        v.view,
        v.sequencer,
        v.members
            .iter()
            .map(|m| format!("{}:{}", m.node, m.name))
            .collect::<Vec<_>>()
            .join(" "),
        v.nodes
            .iter()
            .map(|n| format!("{}/{}", n.node, n.incarnation))
            .collect::<Vec<_>>()
            .join(" ")
    )
}

fn short_seq_input(i: &SequencerInput) -> String {
    match i {
        SequencerInput::View {
            group,
            view,
            members,
            ..
        } => format!(
            "View g{group} v{view} members {:?}",
            members.iter().map(|(n, _)| n.0).collect::<Vec<_>>()
        ),
        SequencerInput::Arrived {
            group,
            stream,
            first,
            end,
            ..
        } => {
            format!(
                "Arrived g{group} n{}/{} {first}..{end}",
                stream.node, stream.incarnation
            )
        }
        other => format!("{other:?}"),
    }
}
