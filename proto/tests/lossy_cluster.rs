//! Several hosts and a sequencer on an in-memory network that loses,
//! duplicates and reorders datagrams (seeded): every member must deliver the
//! same messages in the same order, each sender's in FIFO order.
// Hosts, their sequencers and their records are parallel vectors indexed by host.
#![allow(clippy::needless_range_loop)]

use chorus_proto::host::{Credentials, Host, HostSettings, MulticastChange, SessionId};
use chorus_proto::order::sequencer::{Sequencer, SequencerSettings};
use chorus_proto::wire::app::{FromDaemon, ToDaemon};
use chorus_proto::wire::directory::{FromDirectory, MemberInfo, NodeInfo, View};
use chorus_proto::*;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const GROUP_ADDR: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 1, 2, 3), 7000);

fn ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, i as u8 + 1)
}

struct Net {
    hosts: Vec<Host>,
    seqs: Vec<Sequencer>,
    /// (deliver at, counter, destination address, bytes)
    queue: BTreeMap<(u64, u64), (usize, SocketAddrV4, Vec<u8>)>,
    counter: u64,
    rng: Rng,
    loss: u64,
    now: u64,
    joined: Vec<BTreeSet<SocketAddrV4>>,
    delivered: Vec<Vec<(String, u64, Vec<u8>)>>,
    accepted: usize,
    dead: Vec<bool>,
}

impl Net {
    fn new(n: usize, seed: u64, loss: u64) -> Net {
        let hosts = (0..n)
            .map(|i| {
                Host::new(HostSettings {
                    node_name: format!("h{}", i + 1),
                    incarnation: Incarnation(100 + i as u64),
                    ip: ip(i),
                    data_port: 7001,
                    order_port: 7002,
                    max_datagram_bytes: 1400,
                    max_message_bytes: 1 << 20,
                    send_window_messages: 64,
                    receive_window_messages: 256,
                    ack_interval: Duration::from_millis(5),
                    retransmit: Duration::from_millis(30),
                    flow_budget_bytes: 1 << 20,
                    directory_label: String::new(),
                    version: "test".into(),
                })
            })
            .collect();
        let seqs = (0..n)
            .map(|i| {
                Sequencer::new(SequencerSettings {
                    node: NodeId(i as u32 + 1),
                    incarnation: Incarnation(100 + i as u64),
                    cluster: ClusterId(5),
                    max_datagram_bytes: 1400,
                    tick: Duration::from_millis(5),
                    retransmit: Duration::from_millis(30),
                    heartbeat: Duration::from_millis(50),
                })
            })
            .collect();
        Net {
            hosts,
            seqs,
            queue: BTreeMap::new(),
            counter: 0,
            rng: Rng(seed.max(1)),
            loss,
            now: 0,
            joined: vec![BTreeSet::new(); n],
            delivered: vec![Vec::new(); n],
            accepted: 0,
            dead: vec![false; n],
        }
    }

    fn t(&self) -> Instant {
        Instant::from_micros(self.now)
    }

    fn send_dgram(&mut self, src: usize, dest: SocketAddrV4, bytes: Vec<u8>) {
        let copies = if self.rng.chance(2) { 2 } else { 1 };
        for _ in 0..copies {
            let delay = 100 + self.rng.next() % 900;
            self.counter += 1;
            self.queue
                .insert((self.now + delay, self.counter), (src, dest, bytes.clone()));
        }
    }

    fn flush(&mut self) {
        let now = self.t();
        for i in 0..self.hosts.len() {
            if self.dead[i] {
                continue;
            }
            while let Some(c) = self.hosts[i].poll_multicast_change() {
                match c {
                    MulticastChange::Join(a) => self.joined[i].insert(a),
                    MulticastChange::Leave(a) => self.joined[i].remove(&a),
                };
            }
            let mut buf = Vec::new();
            while let Some(dest) = self.hosts[i].poll_transmit(&mut buf, now) {
                self.send_dgram(i, dest, buf.clone());
            }
            while let Some(cmd) = self.hosts[i].poll_sequencer() {
                self.seqs[i].handle_input(now, cmd);
            }
            while self.hosts[i].poll_directory().is_some() {}
            while let Some((_, ev)) = self.hosts[i].poll_app() {
                match ev {
                    FromDaemon::Message {
                        sender,
                        seq,
                        payload,
                        ..
                    } => self.delivered[i].push((sender.to_string(), seq, payload.to_vec())),
                    FromDaemon::View { view, members, .. } => self.delivered[i].push((
                        "VIEW".into(),
                        view.0,
                        members.join(",").into_bytes(),
                    )),
                    FromDaemon::Error { request, code, .. } => self.delivered[i].push((
                        "ERROR".into(),
                        u64::from(request),
                        format!("{code:?}").into_bytes(),
                    )),
                    _ => {}
                }
            }
        }
        let mut buf = Vec::new();
        for i in 0..self.seqs.len() {
            if self.dead[i] {
                continue;
            }
            while let Some(dest) = self.seqs[i].poll_transmit(&mut buf) {
                self.send_dgram(i, dest, buf.clone());
            }
        }
    }

    fn deliver_due(&mut self, until: u64) {
        while let Some((&(at, c), _)) = self.queue.iter().next() {
            if at > until {
                break;
            }
            let Some((src, dest, bytes)) = self.queue.remove(&(at, c)) else {
                break;
            };
            self.now = self.now.max(at);
            let now = self.t();
            let lossy = self.loss;
            if dest.port() == GROUP_ADDR.port() {
                for i in 0..self.hosts.len() {
                    if self.dead[i] {
                        continue;
                    }
                    if self.joined[i].contains(&dest) && !self.rng.chance(lossy) {
                        self.hosts[i].handle_datagram(
                            now,
                            SocketAddrV4::new(ip(src), 7001),
                            &bytes,
                        );
                    }
                }
            } else if let Some(i) =
                (0..self.hosts.len()).find(|&i| ip(i) == *dest.ip() && !self.dead[i])
            {
                if !self.rng.chance(lossy) {
                    if dest.port() == 7002 {
                        self.seqs[i].handle_datagram(now, &bytes);
                    } else {
                        self.hosts[i].handle_datagram(
                            now,
                            SocketAddrV4::new(ip(src), 7001),
                            &bytes,
                        );
                    }
                }
            }
            self.flush();
        }
    }

    fn step(&mut self, dt: u64) {
        let until = self.now + dt;
        self.deliver_due(until);
        self.now = until;
        let now = self.t();
        for (i, h) in self.hosts.iter_mut().enumerate() {
            if self.dead[i] {
                continue;
            }
            if h.poll_timeout().is_some_and(|t| t <= now) {
                h.handle_timeout(now);
            }
        }
        for (i, s) in self.seqs.iter_mut().enumerate() {
            if !self.dead[i] && s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now);
            }
        }
        self.flush();
    }
}

fn view_without(n: usize, v: u64, gone: usize) -> View {
    let mut view = view(n, v);
    view.members.retain(|m| m.node != NodeId(gone as u32 + 1));
    view.nodes.retain(|m| m.node != NodeId(gone as u32 + 1));
    if gone == 0 {
        // The directory's rule: the node of the earliest member left.
        view.sequencer = view.nodes[0].node;
    }
    view
}

fn view(n: usize, v: u64) -> View {
    View {
        group: GroupId(1),
        group_name: "g".into(),
        address: *GROUP_ADDR.ip(),
        port: GROUP_ADDR.port(),
        view: ViewId(v),
        sequencer: NodeId(1),
        max_message_bytes: 0,
        members: (0..n)
            .map(|i| MemberInfo {
                node: NodeId(i as u32 + 1),
                member: MemberId(1),
                name: "m".into(),
            })
            .collect(),
        nodes: (0..n)
            .map(|i| NodeInfo {
                node: NodeId(i as u32 + 1),
                name: format!("h{}", i + 1),
                incarnation: Incarnation(100 + i as u64),
                ip: ip(i),
                data_port: 7001,
                order_port: 7002,
            })
            .collect(),
    }
}

/// Every host registers (node i + 1) and its app `m` asks to join `g`; with
/// `first`, every host is then given that view at once.
fn register_and_join(net: &mut Net, first: Option<View>) {
    let t = net.t();
    for (i, h) in net.hosts.iter_mut().enumerate() {
        h.handle_directory_connected(t);
        h.handle_directory(
            t,
            FromDirectory::Welcome {
                node: NodeId(i as u32 + 1),
                cluster: ClusterId(5),
                lease_ms: 1000,
                heartbeat_ms: 250,
                epoch: chorus_proto::Epoch(0),
            },
        );
        h.handle_app_connect(t, SessionId(1), Credentials::default());
        let join = ToDaemon::Join {
            request: 1,
            group: "g".into(),
            name: "m".into(),
        };
        h.handle_app(t, SessionId(1), join);
        if let Some(v) = &first {
            h.handle_directory(t, FromDirectory::View(v.clone()));
        }
    }
}

fn messages(d: &[(String, u64, Vec<u8>)]) -> Vec<(String, u64, Vec<u8>)> {
    d.iter()
        .filter(|(s, _, _)| s != "VIEW" && s != "ERROR")
        .cloned()
        .collect()
}

fn run(seed: u64, loss: u64, n: usize, per_sender: usize, order: Order) {
    run_sized(seed, loss, n, per_sender, order, |_| 0);
}

/// The payload of sender `i`'s `k`th message, `pad` bytes past its name.
fn payload(i: usize, k: usize, pad: usize) -> Vec<u8> {
    let mut p = format!("{i}:{k:06}").into_bytes();
    p.extend((0..pad).map(|j| (j * 31 + k * 7 + i) as u8));
    p
}

fn run_sized(
    seed: u64,
    loss: u64,
    n: usize,
    per_sender: usize,
    order: Order,
    pad: impl Fn(usize) -> usize,
) {
    let mut net = Net::new(n, seed, loss);
    register_and_join(&mut net, Some(view(n, 1)));
    net.flush();
    let mut sent = vec![0usize; n];
    let mut request = 10;
    let mut rounds = 0;
    while net
        .delivered
        .iter()
        .any(|d| messages(d).len() < n * per_sender)
    {
        rounds += 1;
        assert!(
            rounds < 200_000,
            "seed {seed}: no progress: delivered {:?}",
            net.delivered.iter().map(Vec::len).collect::<Vec<_>>()
        );
        for i in 0..n {
            // A burst of sends, as an app would write them, while the window allows.
            let burst = (net.rng.next() % 8) as usize;
            for _ in 0..burst {
                if sent[i] < per_sender
                    && net.delivered[i].iter().any(|(s, _, _)| s == "VIEW")
                    && net.hosts[i].can_accept(SessionId(1))
                {
                    sent[i] += 1;
                    request += 1;
                    let t = net.t();
                    let payload = payload(i, sent[i], pad(sent[i]));
                    net.hosts[i].handle_app(
                        t,
                        SessionId(1),
                        ToDaemon::Send {
                            request,
                            group: "g".into(),
                            order,
                            payload,
                        },
                    );
                    net.accepted += 1;
                }
            }
        }
        net.flush();
        net.step(500);
    }
    // Agreement, integrity, FIFO.
    let all: Vec<_> = net.delivered.iter().map(|d| messages(d)).collect();
    let first = &all[0];
    for (i, d) in all.iter().enumerate() {
        let got: BTreeSet<&Vec<u8>> = d.iter().map(|(_, _, p)| p).collect();
        for p in &got {
            // Whole and intact: large ones were put back from their pieces.
            let head = String::from_utf8_lossy(&p[..p.len().min(8)]).into_owned();
            let (s, k) = head.split_once(':').expect("a payload of ours");
            let (s, k): (usize, usize) = (s.parse().expect("sender"), k.parse().expect("index"));
            assert_eq!(
                **p,
                payload(s, k, pad(k)),
                "seed {seed}: host {i} got {head} altered"
            );
        }
        assert_eq!(
            got.len(),
            n * per_sender,
            "seed {seed}: host {i} duplicates or loss"
        );
        if order != Order::Fifo {
            assert_eq!(d, first, "seed {seed}: host {i} disagrees on the order");
            let seqs: Vec<u64> = d.iter().map(|(_, s, _)| *s).collect();
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "seed {seed}: seq not increasing"
            );
        }
        for s in 0..n {
            let mine: Vec<&Vec<u8>> = d
                .iter()
                .map(|(_, _, p)| p)
                .filter(|p| p.starts_with(format!("{s}:").as_bytes()))
                .collect();
            assert!(
                mine.windows(2).all(|w| w[0] < w[1]),
                "seed {seed}: FIFO broken for sender {s} at host {i}"
            );
        }
    }
    // Run on until everything is stable: buffers drain.
    for _ in 0..400 {
        net.step(1000);
    }
    for (i, h) in net.hosts.iter().enumerate() {
        if !h.is_drained() {
            for (j, h) in net.hosts.iter().enumerate() {
                eprintln!(
                    "host {j}: {}",
                    h.groups()
                        .map(|g| g.debug_line())
                        .collect::<Vec<_>>()
                        .join("; ")
                );
            }
            eprintln!(
                "sequencer log len {} stability {:?}",
                net.seqs[0].log_len(GroupId(1)),
                net.seqs[0].stability(GroupId(1))
            );
            panic!("seed {seed}: host {i} still holds unstable sends");
        }
    }
    assert_eq!(net.accepted, n * per_sender);
}

#[test]
fn total_order_without_loss() {
    run(1, 0, 3, 300, Order::Total);
}

#[test]
fn total_order_under_loss_many_seeds() {
    for seed in 1..=40 {
        run(seed, 10, 3, 200, Order::Total);
    }
}

#[test]
fn large_messages_are_delivered_whole_under_loss() {
    // Every third message takes many datagrams; one is 200 KB.
    let pad = |k: usize| match k % 3 {
        0 => 3000 + 997 * k,
        _ if k == 7 => 200_000,
        _ => 0,
    };
    for seed in 0..4 {
        run_sized(seed, 5, 3, 24, Order::Total, pad);
    }
    run_sized(9, 5, 3, 12, Order::Safe, pad);
    run_sized(10, 5, 3, 12, Order::Fifo, pad);
}

/// A group's `max_message_bytes` (in its view) lowers the node's limit: a
/// message past it is refused with TooLarge, one at it goes through.
#[test]
fn a_groups_limit_refuses_larger_messages() {
    let mut net = Net::new(2, 1, 0);
    let mut v = view(2, 1);
    v.max_message_bytes = 4000;
    register_and_join(&mut net, Some(v));
    net.flush();
    for (request, len) in [(71, 4001), (72, 4000)] {
        let t = net.t();
        net.hosts[0].handle_app(
            t,
            SessionId(1),
            ToDaemon::Send {
                request,
                group: "g".into(),
                order: Order::Total,
                payload: payload(0, 1, len - 8),
            },
        );
    }
    for _ in 0..200 {
        net.flush();
        net.step(500);
    }
    let errors: Vec<_> = net.delivered[0]
        .iter()
        .filter(|(s, _, _)| s == "ERROR")
        .map(|(_, r, c)| (*r, String::from_utf8_lossy(c).into_owned()))
        .collect();
    assert_eq!(errors, vec![(71, "TooLarge".to_owned())]);
    for d in &net.delivered {
        let got: Vec<usize> = messages(d).iter().map(|(_, _, p)| p.len()).collect();
        assert_eq!(got, vec![4000], "the message at the limit, whole");
    }
}

#[test]
fn fifo_under_loss() {
    for seed in 1..=5 {
        run(seed, 10, 3, 200, Order::Fifo);
    }
}

#[test]
fn safe_under_loss() {
    for seed in 1..=5 {
        run(seed, 5, 4, 100, Order::Safe);
    }
}

/// Host `victim` (not the sequencer) dies mid-stream; the survivors get a
/// view without it. They must deliver one identical sequence, the view at
/// the same position, and every survivor's message exactly once.
fn run_crash(seed: u64, loss: u64, n: usize, per_sender: usize, victim: usize) {
    let mut net = Net::new(n, seed, loss);
    register_and_join(&mut net, Some(view(n, 1)));
    net.flush();
    let mut sent = vec![0usize; n];
    let mut request = 10;
    let mut crashed = false;
    for round in 0..100_000 {
        if !crashed && sent.iter().sum::<usize>() >= n * per_sender / 2 {
            crashed = true;
            net.dead[victim] = true;
            let t = net.t();
            for i in (0..n).filter(|&i| i != victim) {
                net.hosts[i].handle_directory(t, FromDirectory::View(view_without(n, 2, victim)));
            }
            net.flush();
        }
        for i in (0..n).filter(|&i| !net.dead[i]) {
            for _ in 0..(net.rng.next() % 8) {
                if sent[i] < per_sender
                    && net.delivered[i].iter().any(|(s, _, _)| s == "VIEW")
                    && net.hosts[i].can_accept(SessionId(1))
                {
                    sent[i] += 1;
                    request += 1;
                    let t = net.t();
                    let payload = format!("{i}:{:06}", sent[i]).into_bytes();
                    net.hosts[i].handle_app(
                        t,
                        SessionId(1),
                        ToDaemon::Send {
                            request,
                            group: "g".into(),
                            order: Order::Total,
                            payload,
                        },
                    );
                }
            }
        }
        net.flush();
        net.step(500);
        let survivors_done = (0..n).filter(|&i| i != victim).all(|i| {
            let d = &net.delivered[i];
            (0..n).filter(|&s| s != victim).all(|s| {
                d.iter()
                    .filter(|(_, _, p)| p.starts_with(format!("{s}:").as_bytes()))
                    .count()
                    == per_sender
            })
        });
        if crashed && survivors_done && round % 50 == 0 {
            // Let the tail settle, then compare.
            for _ in 0..200 {
                net.step(1000);
            }
            break;
        }
    }
    let survivors: Vec<usize> = (0..n).filter(|&i| i != victim).collect();
    let reference = &net.delivered[survivors[0]];
    if !reference.iter().any(|(s, v, _)| s == "VIEW" && *v == 2) {
        for (j, h) in net.hosts.iter().enumerate() {
            eprintln!(
                "host {j}: {} events; {}",
                net.delivered[j].len(),
                h.groups()
                    .map(|g| g.debug_line())
                    .collect::<Vec<_>>()
                    .join("; ")
            );
        }
        panic!("seed {seed}: view 2 not delivered");
    }
    for &i in &survivors {
        let d = &net.delivered[i];
        if d != reference {
            let at = d
                .iter()
                .zip(reference.iter())
                .position(|(a, b)| a != b)
                .unwrap_or(d.len().min(reference.len()));
            for (j, h) in net.hosts.iter().enumerate() {
                eprintln!(
                    "host {j}: {}",
                    h.groups()
                        .map(|g| g.debug_line())
                        .collect::<Vec<_>>()
                        .join("; ")
                );
                if let Some(g) = h.group(GroupId(1)) {
                    let n = g.debug_next().0;
                    let recs: Vec<_> = (n.saturating_sub(3)..n + 4)
                        .map(|x| {
                            (
                                x,
                                g.record(GlobalSeq(x))
                                    .map(|s| s.to_wire())
                                    .map(|(k, q)| (k.node.0, q.0)),
                            )
                        })
                        .collect();
                    eprintln!("   records {recs:?}");
                }
            }
            for &j in &survivors {
                let ev: Vec<_> = net.delivered[j]
                    .iter()
                    .filter(|e| e.1 >= 110 && e.1 <= 135 || e.0 == "VIEW")
                    .map(|e| (e.0.clone(), e.1, String::from_utf8_lossy(&e.2).to_string()))
                    .collect();
                eprintln!("   delivered at {j}: {ev:?}");
            }
            panic!(
                "seed {seed}: survivors {} ({} events) and {i} ({} events) differ at event {at}: {:?} vs {:?}",
                survivors[0], reference.len(), d.len(), reference.get(at).map(|e| (&e.0, e.1)), d.get(at).map(|e| (&e.0, e.1))
            );
        }
    }
    for &s in &survivors {
        let mine = reference
            .iter()
            .filter(|(_, _, p)| p.starts_with(format!("{s}:").as_bytes()))
            .count();
        assert_eq!(
            mine, per_sender,
            "seed {seed}: survivor {s}'s messages lost or duplicated"
        );
    }
}

#[test]
fn sequencer_crash_mid_stream() {
    for seed in 1..=20 {
        run_crash(seed, 5, 4, 150, 0);
    }
}

#[test]
fn member_crash_mid_stream() {
    for seed in 1..=20 {
        run_crash(seed, 5, 4, 150, 2);
    }
}

#[test]
#[ignore = "long sweep: cargo test -- --ignored"]
fn crash_sweep() {
    let from: u64 = std::env::var("SWEEP_FROM")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    for seed in from..=150 {
        run_crash(seed, 10, 4, 150, (seed % 4) as usize);
    }
}

/// Members join one after another in quick succession; each view reaches
/// each host after its own small delay (the directory's links), so a joiner
/// attaches while the sequencer is already placing the next markers. Then
/// everyone sends: everyone must end in the last view with everything.
fn run_staggered_joins(seed: u64, n: usize, per_sender: usize) {
    let mut net = Net::new(n, seed, 2);
    register_and_join(&mut net, None);
    // (deliver at, host, view)
    let mut views: Vec<(u64, usize, View)> = Vec::new();
    for k in 1..=n {
        let mut v = view(k, k as u64);
        v.nodes.truncate(k);
        v.members.truncate(k);
        for i in 0..k {
            views.push((
                net.now + 200 * k as u64 + net.rng.next() % 3000,
                i,
                v.clone(),
            ));
        }
    }
    views.sort_by_key(|(_, i, v)| (v.view, *i));
    // Each host must see its views in order (one TCP link each).
    let mut last_sent = vec![0u64; n];
    for (at, i, _) in views.iter_mut() {
        *at = (*at).max(last_sent[*i] + 1);
        last_sent[*i] = *at;
    }
    views.sort_by_key(|(at, _, _)| *at);
    let mut sent = vec![0usize; n];
    let mut request = 10;
    for round in 0..60_000 {
        while views.first().is_some_and(|(at, _, _)| *at <= net.now) {
            let (_, i, v) = views.remove(0);
            let t = net.t();
            net.hosts[i].handle_directory(t, FromDirectory::View(v));
        }
        if views.is_empty() {
            for i in 0..n {
                for _ in 0..(net.rng.next() % 4) {
                    if sent[i] < per_sender
                        && net.delivered[i].iter().any(|(s, _, _)| s == "VIEW")
                        && net.hosts[i].can_accept(SessionId(1))
                    {
                        sent[i] += 1;
                        request += 1;
                        let t = net.t();
                        let payload = format!("{i}:{:06}", sent[i]).into_bytes();
                        net.hosts[i].handle_app(
                            t,
                            SessionId(1),
                            ToDaemon::Send {
                                request,
                                group: "g".into(),
                                order: Order::Total,
                                payload,
                            },
                        );
                    }
                }
            }
        }
        net.flush();
        net.step(200);
        let done = (0..n).all(|i| messages(&net.delivered[i]).len() == n * per_sender);
        if done {
            break;
        }
        if round == 59_999 {
            for (j, h) in net.hosts.iter().enumerate() {
                eprintln!(
                    "host {j}: {} msgs; {}",
                    messages(&net.delivered[j]).len(),
                    h.groups()
                        .map(|g| g.debug_line())
                        .collect::<Vec<_>>()
                        .join("; ")
                );
                let views: Vec<u64> = net.delivered[j]
                    .iter()
                    .filter(|e| e.0 == "VIEW")
                    .map(|e| e.1)
                    .collect();
                eprintln!("   views {views:?}");
            }
            panic!("seed {seed}: stuck");
        }
    }
    let all: Vec<_> = net.delivered.iter().map(|d| messages(d)).collect();
    for d in &all[1..] {
        assert_eq!(d, &all[0], "seed {seed}: hosts disagree");
    }
}

#[test]
fn staggered_joins() {
    for seed in 1..=30 {
        run_staggered_joins(seed, 4, 50);
    }
}
