//! One seed → one whole scenario ("swarm"): the cluster's shape, each host's
//! protocol settings, the network's behaviour per link, a timed fault plan
//! and the apps' workload. Which fault kinds a seed uses is itself drawn,
//! so seeds explore gentle and hostile corners (every seed has some fault).

use crate::rng::Rng;
use crate::world::Micros;

/// Knobs a caller sets for a whole batch (not drawn from the seed).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Plan and inject process faults: host crash and restart, sequencer
    /// crash, directory link reset. Off until the protocol supports them
    /// (issue 4: flush, failover, restart); the plan draws them either way so
    /// that turning this on does not change the other draws of a seed.
    pub process_faults: bool,
    /// Bugs planted on purpose in every host (tests of the checkers).
    pub planted: Planted,
    /// Every seed turns on loss and duplication (planted-bug tests).
    pub force_loss_and_dup: bool,
    /// With a trace: the internal state of this host after each of its steps.
    pub debug_host: Option<usize>,
    /// An attacker on the network replays and alters the sealed datagrams
    /// it captures (see [`crate::adversary`]). It draws from a random
    /// stream of its own: the rest of a seed's run is drawn as without it.
    pub adversary: bool,
}

/// The simulator's copy of the host's test-only bug switches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Planted {
    /// See `chorus_proto::host::planted::Planted::retransmit_storm`.
    pub retransmit_storm: bool,
    pub no_retransmit: bool,
    pub no_duplicate_suppression: bool,
    /// See `chorus_proto::host::planted::Planted::silent_separation`.
    pub silent_separation: bool,
    /// Every host's seals open replays: see
    /// `chorus_proto::wire::seal::DatagramOpener::plant_no_replay_window`.
    pub no_replay_window: bool,
}

/// Per-host protocol settings (within the ranges chorusd's config accepts).
#[derive(Debug, Clone, Copy)]
pub struct HostParams {
    pub max_datagram_bytes: usize,
    pub send_window_messages: usize,
    pub receive_window_messages: usize,
    pub ack_interval_ms: u64,
    pub retransmit_ms: u64,
}

/// How one directed link treats datagrams when no fault span is active.
#[derive(Debug, Clone, Copy)]
pub struct LinkParams {
    pub loss_ppm: u32,
    pub dup_ppm: u32,
    pub delay_min_us: Micros,
    /// Uniform extra delay: reorders datagrams on the link.
    pub jitter_us: Micros,
    /// Datagrams longer than this are dropped.
    pub mtu_bytes: usize,
}

/// A fault active during `[start, end)`.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub start: Micros,
    pub end: Micros,
    pub kind: FaultKind,
}

/// Network faults (all enabled today).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Nodes in `side` (a bit set) cannot reach the others; if not
    /// `symmetric`, only traffic from `side` to the rest is cut.
    Partition { side: u64, symmetric: bool },
    /// Datagrams from `from` to `to` are held until the span ends.
    ClogLink { from: usize, to: usize },
    /// Every datagram to or from `node` is held until the span ends.
    ClogHost { node: usize },
    /// Datagrams to `node` longer than `mtu_bytes` are dropped.
    Mtu { node: usize, mtu_bytes: usize },
    /// Extra loss on every datagram to `node`.
    LossBurst { node: usize, loss_ppm: u32 },
    /// Frames between `node` and the directory take `extra_us` longer.
    DirDelay { node: usize, extra_us: Micros },
}

/// Process faults: planned for every seed, injected only with
/// [`Options::process_faults`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessFault {
    /// The host dies (volatile state lost); restarts with a new incarnation
    /// after `down_us` if given.
    Crash {
        node: usize,
        down_us: Option<Micros>,
    },
    /// Whichever node sequences group `group` dies, mid-burst.
    SequencerCrash {
        group: usize,
        down_us: Option<Micros>,
    },
    /// The node's directory connection breaks and is reopened.
    DirReset { node: usize },
    /// The directory process restarts: its state (soft: registry, views)
    /// is gone, every link breaks, and it is back after `down_us`. The
    /// daemons reconnect and resume their groups.
    DirRestart { down_us: Micros },
    /// The node's daemon stops for `for_us` (`kill -STOP`, then `-CONT`):
    /// it runs no timer and reads nothing; what reaches it meanwhile waits
    /// in its sockets. Longer than the lease, the directory declares it
    /// dead; when it runs again its members must be told they were
    /// separated, and never see a hole in what they deliver.
    Pause { node: usize, for_us: Micros },
}

/// A declared group.
#[derive(Debug, Clone)]
pub struct GroupPlan {
    pub name: String,
    pub address: std::net::Ipv4Addr,
    pub port: u16,
}

/// One app's part in one group.
#[derive(Debug, Clone)]
pub struct AppGroup {
    pub group: usize,
    pub join_at: Micros,
    pub messages: u32,
    /// Leave at this time (then maybe join again after `rejoin_after`).
    pub leave_at: Option<Micros>,
    pub rejoin_after: Option<Micros>,
}

/// One simulated application (one session on one host).
#[derive(Debug, Clone)]
pub struct AppPlan {
    pub node: usize,
    pub groups: Vec<AppGroup>,
    /// Never leaves nor disconnects: keeps its group's sequencer in place.
    pub anchor: bool,
    pub burst_max: u32,
    pub interval_us: Micros,
    /// Percent of sends that are `fifo` and `safe` (the rest `total`).
    pub fifo_pct: u32,
    pub safe_pct: u32,
    pub payload_max: usize,
    pub disconnect_at: Option<Micros>,
    /// Percent of sends larger than a datagram (sent in pieces).
    pub large_pct: u32,
    /// Seeds the draws of large sends.
    pub large_seed: u64,
}

/// Everything one seed decides.
#[derive(Debug, Clone)]
pub struct Plan {
    pub seed: u64,
    pub hosts: Vec<HostParams>,
    pub groups: Vec<GroupPlan>,
    pub apps: Vec<AppPlan>,
    pub lease_ms: u64,
    /// `links[from * n + to]`.
    pub links: Vec<LinkParams>,
    pub dir_delay_us: Micros,
    /// Datagrams in flight to one node beyond this are dropped.
    pub queue_cap: usize,
    pub spans: Vec<Span>,
    pub process: Vec<(Micros, ProcessFault)>,
    /// The safety phase ends here at the latest.
    pub safety_end_us: Micros,
    /// After healing, everything must be delivered within this.
    pub liveness_bound_us: Micros,
    /// Which fault kinds this seed turned on (for the trace header).
    pub features: Vec<&'static str>,
}

/// Fewest messages a seed sends in all.
pub const MESSAGES_MIN: u32 = 500;

impl Plan {
    /// Draws a scenario from `seed`.
    pub fn from_seed(seed: u64, opts: &Options) -> Plan {
        let mut root = Rng::new(seed);
        let mut shape = root.fork(1);
        let mut netr = root.fork(2);
        let mut faultr = root.fork(3);
        let mut workr = root.fork(4);
        let mut procr = root.fork(5);
        let n = shape.range(3, 5) as usize;
        let hosts: Vec<HostParams> = (0..n).map(|_| host_params(&mut shape)).collect();
        let groups = (0..shape.range(1, 2) as usize)
            .map(|k| GroupPlan {
                name: format!("g{k}"),
                address: std::net::Ipv4Addr::new(239, 255, 7, k as u8 + 1),
                port: 7400 + k as u16,
            })
            .collect::<Vec<_>>();
        let mut features = Vec::new();
        let (mut links, queue_cap) = links(&mut netr, n, opts, &mut features);
        let safety_end_us = 8_000_000;
        let spans = spans(&mut faultr, n, safety_end_us, &mut features);
        if features.is_empty() {
            // Every seed runs with some network fault: a quiet draw gets
            // loss (from its own stream, so no other draw of the seed moves).
            let mut quiet = root.fork(6);
            let max_loss = quiet.range(10_000, 100_000);
            for (i, l) in links.iter_mut().enumerate() {
                if i / n != i % n {
                    l.loss_ppm = quiet.range(1_000, max_loss) as u32;
                }
            }
            features.push("loss");
        }
        let mut apps = apps(&mut workr, n, groups.len(), &hosts, &mut features);
        // Some apps also send messages of several datagrams (from a stream
        // of their own, so no other draw of the seed moves).
        let mut larger = root.fork(7);
        for a in &mut apps {
            if larger.below(3) == 0 {
                a.large_pct = larger.range(5, 30) as u32;
            }
            a.large_seed = larger.next_u64();
        }
        let mut process = process_faults(&mut procr, n, groups.len());
        // Some plans pause a daemon past its lease (from a stream of their
        // own, so no other draw of the seed moves), with a short lease so
        // that the workload goes on after it is admitted again.
        let mut pauser = root.fork(8);
        let mut lease_ms = 5_000;
        if opts.process_faults && pauser.below(6) == 0 {
            lease_ms = 1_500;
            let at = pauser.range(400_000, 3_000_000);
            let for_us = lease_ms * 1_000 + pauser.range(300_000, 2_500_000);
            let node = pauser.index(n);
            if std::env::var_os("SIM_NO_PAUSE").is_none() {
                process.push((at, ProcessFault::Pause { node, for_us }));
            }
            process.sort_by_key(|(t, _)| *t);
            features.push("pause");
        }
        if apps.iter().any(|a| a.large_pct > 0) {
            features.push("large");
        }
        Plan {
            seed,
            hosts,
            groups,
            apps,
            lease_ms,
            links,
            dir_delay_us: netr.range(100, 2_000),
            queue_cap,
            spans,
            process,
            safety_end_us,
            liveness_bound_us: 10_000_000,
            features,
        }
    }

    /// Number of hosts.
    pub fn n(&self) -> usize {
        self.hosts.len()
    }

    /// The link from `from` to `to`.
    pub fn link(&self, from: usize, to: usize) -> &LinkParams {
        &self.links[from * self.n() + to]
    }

    /// Messages the workload sends in all (if nothing is refused).
    pub fn messages(&self) -> u32 {
        self.apps
            .iter()
            .flat_map(|a| a.groups.iter())
            .map(|g| g.messages)
            .sum()
    }
}

fn host_params(r: &mut Rng) -> HostParams {
    let send_window_messages = *pick(r, &[16, 16, 24, 32, 64]);
    HostParams {
        max_datagram_bytes: *pick(r, &[512, 600, 900, 1400, 1400]),
        send_window_messages,
        // Mostly roomier than the send window, sometimes tighter (valid too).
        receive_window_messages: if r.below(5) == 0 {
            r.range(16, send_window_messages as u64) as usize
        } else {
            r.range(send_window_messages as u64, 256) as usize
        },
        ack_interval_ms: r.range(2, 20),
        retransmit_ms: r.range(10, 100),
    }
}

fn pick<'a, T>(r: &mut Rng, xs: &'a [T]) -> &'a T {
    &xs[r.index(xs.len())]
}

fn links(
    r: &mut Rng,
    n: usize,
    opts: &Options,
    features: &mut Vec<&'static str>,
) -> (Vec<LinkParams>, usize) {
    let lossy = opts.force_loss_and_dup || r.below(4) != 0;
    let dups = opts.force_loss_and_dup || r.coin();
    let reorder = r.below(4) != 0;
    let overflow = r.below(4) == 0;
    for (on, name) in [
        (lossy, "loss"),
        (dups, "dup"),
        (reorder, "reorder"),
        (overflow, "overflow"),
    ] {
        if on {
            features.push(name);
        }
    }
    let max_loss = r.range(10_000, 150_000) as u32;
    let links = (0..n * n)
        .map(|i| {
            let own = i / n == i % n;
            LinkParams {
                loss_ppm: if lossy && !own {
                    r.range(0, u64::from(max_loss)) as u32
                } else {
                    0
                },
                dup_ppm: if dups { r.range(0, 50_000) as u32 } else { 0 },
                delay_min_us: if own { 5 } else { r.range(50, 1_000) },
                jitter_us: if reorder { r.range(0, 3_000) } else { 0 },
                mtu_bytes: 65_535,
            }
        })
        .collect();
    let queue_cap = if overflow {
        r.range(8, 64) as usize
    } else {
        usize::MAX
    };
    (links, queue_cap)
}

fn spans(r: &mut Rng, n: usize, end: Micros, features: &mut Vec<&'static str>) -> Vec<Span> {
    let mut out = Vec::new();
    let kinds: [(&'static str, u64); 6] = [
        ("partition", 2),
        ("clog-link", 3),
        ("clog-host", 3),
        ("mtu", 3),
        ("loss-burst", 2),
        ("dir-delay", 3),
    ];
    for (k, (name, odds)) in kinds.iter().enumerate() {
        if r.below(*odds) != 0 {
            continue;
        }
        features.push(name);
        for _ in 0..r.range(1, 4) {
            // Faults start once the group runs and stay short enough
            // that leases (5 s) never run out.
            let start = r.range(300_000, end / 2);
            let end = start + r.range(20_000, 600_000);
            let node = r.index(n);
            let kind = match k {
                0 => FaultKind::Partition {
                    side: partition_side(r, n),
                    symmetric: r.coin(),
                },
                1 => FaultKind::ClogLink {
                    from: node,
                    to: (node + 1 + r.index(n - 1)) % n,
                },
                2 => FaultKind::ClogHost { node },
                3 => FaultKind::Mtu {
                    node,
                    mtu_bytes: r.range(200, 700) as usize,
                },
                4 => FaultKind::LossBurst {
                    node,
                    loss_ppm: r.range(300_000, 1_000_000) as u32,
                },
                _ => FaultKind::DirDelay {
                    node,
                    extra_us: r.range(10_000, 300_000),
                },
            };
            out.push(Span { start, end, kind });
        }
    }
    out
}

/// A non-empty proper subset of the nodes.
fn partition_side(r: &mut Rng, n: usize) -> u64 {
    let all = (1u64 << n) - 1;
    loop {
        let s = r.below(all) + 1;
        if s != all {
            return s;
        }
    }
}

fn apps(
    r: &mut Rng,
    n: usize,
    groups: usize,
    hosts: &[HostParams],
    features: &mut Vec<&'static str>,
) -> Vec<AppPlan> {
    let churn = r.coin();
    let disconnects = r.below(4) == 0;
    if churn {
        features.push("churn");
    }
    if disconnects {
        features.push("app-disconnect");
    }
    let mut apps = Vec::new();
    // One anchor per group joins first, on a random node, and stays: the
    // directory keeps the first member's node as sequencer while it stays.
    for g in 0..groups {
        let node = r.index(n);
        apps.push(new_app(
            r,
            node,
            hosts,
            true,
            vec![AppGroup {
                group: g,
                join_at: 20_000,
                messages: 0,
                leave_at: None,
                rejoin_after: None,
            }],
        ));
    }
    // Every node hosts at least one more app; some host two.
    for node in 0..n {
        for _ in 0..r.range(1, 2) {
            let mut gs = Vec::new();
            for g in 0..groups {
                if groups == 1 || r.below(3) != 0 {
                    let join_at = r.range(150_000, 400_000);
                    gs.push(AppGroup {
                        group: g,
                        join_at,
                        messages: 0,
                        leave_at: None,
                        rejoin_after: None,
                    });
                }
            }
            if gs.is_empty() {
                // Drawn only here, so other seeds' draws do not move.
                let join_at = r.range(150_000, 400_000);
                gs.push(AppGroup {
                    group: r.index(groups),
                    join_at,
                    messages: 0,
                    leave_at: None,
                    rejoin_after: None,
                });
            }
            apps.push(new_app(r, node, hosts, false, gs));
        }
    }
    spread_messages(r, &mut apps);
    if churn {
        plan_churn(r, &mut apps);
    }
    if disconnects {
        let movable: Vec<usize> = (0..apps.len()).filter(|&i| !apps[i].anchor).collect();
        if let Some(&i) = movable.get(r.index(movable.len())) {
            apps[i].disconnect_at = Some(r.range(800_000, 3_000_000));
        }
    }
    apps
}

fn new_app(
    r: &mut Rng,
    node: usize,
    hosts: &[HostParams],
    anchor: bool,
    groups: Vec<AppGroup>,
) -> AppPlan {
    let max_payload = hosts[node].max_datagram_bytes - 42 - 4 - 8;
    AppPlan {
        node,
        groups,
        anchor,
        burst_max: r.range(1, 12) as u32,
        interval_us: r.range(500, 20_000),
        fifo_pct: r.range(0, 40) as u32,
        safe_pct: r.range(0, 30) as u32,
        payload_max: if r.below(5) == 0 {
            max_payload
        } else {
            r.range(16, 96) as usize
        },
        disconnect_at: None,
        large_pct: 0,
        large_seed: 0,
    }
}

/// At least [`MESSAGES_MIN`] messages, spread over every (app, group).
fn spread_messages(r: &mut Rng, apps: &mut [AppPlan]) {
    let total = r.range(u64::from(MESSAGES_MIN), 900) as u32;
    let slots: Vec<(usize, usize)> = apps
        .iter()
        .enumerate()
        .flat_map(|(i, a)| (0..a.groups.len()).map(move |j| (i, j)))
        .collect();
    for k in 0..total {
        // Round robin for a floor, then random.
        let (i, j) = if (k as usize) < slots.len() * 20 {
            slots[k as usize % slots.len()]
        } else {
            slots[r.index(slots.len())]
        };
        apps[i].groups[j].messages += 1;
    }
}

fn plan_churn(r: &mut Rng, apps: &mut [AppPlan]) {
    for a in apps.iter_mut().filter(|a| !a.anchor) {
        for g in &mut a.groups {
            if r.below(3) == 0 {
                g.leave_at = Some(r.range(600_000, 3_500_000));
                if r.coin() {
                    g.rejoin_after = Some(r.range(50_000, 800_000));
                }
            }
        }
    }
}

fn process_faults(r: &mut Rng, n: usize, groups: usize) -> Vec<(Micros, ProcessFault)> {
    let mut out = Vec::new();
    for _ in 0..r.range(0, 2) {
        let at = r.range(500_000, 4_000_000);
        let down_us = r.coin().then(|| r.range(100_000, 1_500_000));
        let f = match r.below(4) {
            0 => ProcessFault::Crash {
                node: r.index(n),
                down_us,
            },
            1 => ProcessFault::SequencerCrash {
                group: r.index(groups),
                down_us,
            },
            2 => ProcessFault::DirReset { node: r.index(n) },
            _ => ProcessFault::DirRestart {
                down_us: r.range(50_000, 600_000),
            },
        };
        out.push((at, f));
    }
    out.sort_by_key(|(t, _)| *t);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_deterministic_and_big_enough() {
        let opts = Options::default();
        for seed in (0..2000).chain(40_000..41_000) {
            let a = Plan::from_seed(seed, &opts);
            let b = Plan::from_seed(seed, &opts);
            assert_eq!(format!("{a:?}"), format!("{b:?}"));
            assert!(a.n() >= 3);
            assert!(
                a.messages() >= MESSAGES_MIN,
                "seed {seed}: {}",
                a.messages()
            );
            assert!(!a.features.is_empty(), "seed {seed} runs with faults");
            for g in 0..a.groups.len() {
                assert!(a
                    .apps
                    .iter()
                    .any(|x| x.anchor && x.groups.iter().any(|ag| ag.group == g)));
            }
        }
    }
}
