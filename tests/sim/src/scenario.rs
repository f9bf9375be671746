//! Named scenarios: hand-built plans for a sequence of events that random
//! seeds reach too rarely to be relied on (each one a bug the namespace
//! tests found first). They run with process faults on; `sim --scenario
//! NAME --trace` replays one.

use crate::plan::{AppGroup, AppPlan, FaultKind, GroupPlan, HostParams, LinkParams, Plan, Span};
use crate::plan::{Options, ProcessFault};
use crate::world::Micros;

/// Every named scenario, for `sim --scenario` and the test that runs them.
pub const NAMES: &[&str] = &[
    "unordered-burst-failover",
    "pause-past-lease",
    "sequencer-pause",
    "partition-past-lease",
];

/// The plan of the scenario called `name`.
pub fn plan(name: &str) -> Option<Plan> {
    match name {
        "unordered-burst-failover" => Some(unordered_burst_failover()),
        "pause-past-lease" => Some(separation(
            "scenario pause-past-lease",
            Vec::new(),
            vec![(
                1_000_000,
                ProcessFault::Pause {
                    node: 2,
                    for_us: 3_000_000,
                },
            )],
        )),
        "sequencer-pause" => Some(separation(
            "scenario sequencer-pause",
            Vec::new(),
            vec![(
                1_000_000,
                ProcessFault::Pause {
                    node: 0,
                    for_us: 3_000_000,
                },
            )],
        )),
        "partition-past-lease" => Some(separation(
            "scenario partition-past-lease",
            vec![
                Span {
                    start: 1_000_000,
                    end: 4_000_000,
                    kind: FaultKind::Partition {
                        side: 1 << 2,
                        symmetric: true,
                    },
                },
                // Its link to the directory is cut as long: what it sends
                // arrives when the partition heals (TCP retransmits).
                Span {
                    start: 1_000_000,
                    end: 4_000_000,
                    kind: FaultKind::DirDelay {
                        node: 2,
                        extra_us: 3_000_000,
                    },
                },
            ],
            Vec::new(),
        )),
        _ => None,
    }
}

/// The options a named scenario runs with.
pub fn options() -> Options {
    Options {
        process_faults: true,
        ..Options::default()
    }
}

/// The sequencer (h0) never sees a burst that h2 sends (the link h2 → h0
/// is clogged), while h1 holds all of it; then h0 dies. h1 takes the order
/// over knowing nothing of h2's stream (nothing of it was ordered), and the
/// burst is all h2 ever sends, so no new DATA comes: h1 learns where the
/// stream starts only from h2's retransmissions, every message of which it
/// holds already. Before the fix, that news did not make h1 report the
/// burst to its sequencer, and the burst was never ordered. (h3 joins
/// another group late: it keeps the workload, and so the safety phase,
/// going past the crash without an event in g0 that would wake h1.)
fn unordered_burst_failover() -> Plan {
    let n = 4;
    let host = HostParams {
        max_datagram_bytes: 1400,
        send_window_messages: 16,
        receive_window_messages: 64,
        ack_interval_ms: 5,
        retransmit_ms: 40,
    };
    let app = |node: usize, group: usize, join_at: Micros, messages: u32, anchor: bool| AppPlan {
        node,
        groups: vec![AppGroup {
            group,
            join_at,
            messages,
            leave_at: None,
            rejoin_after: None,
        }],
        anchor,
        burst_max: 12,
        interval_us: 1_000,
        fifo_pct: 0,
        safe_pct: 0,
        payload_max: 32,
        disconnect_at: None,
        large_pct: 0,
        large_seed: 0,
    };
    Plan {
        seed: 0,
        hosts: vec![host; n],
        groups: (0..2)
            .map(|k| GroupPlan {
                name: format!("g{k}"),
                address: std::net::Ipv4Addr::new(239, 255, 7, k + 1),
                port: 7400 + u16::from(k),
            })
            .collect(),
        // h0 sequences (its member joins first); h1 joins before h2, so it
        // is the longest in the order after h0 and takes the order over.
        apps: vec![
            app(0, 0, 20_000, 0, true),
            app(1, 0, 100_000, 0, false),
            app(2, 0, 200_000, 12, false),
            app(3, 1, 7_500_000, 1, true),
        ],
        lease_ms: 1_500,
        links: quiet_links(n),
        dir_delay_us: 500,
        queue_cap: usize::MAX,
        spans: vec![Span {
            start: 0,
            end: 3_000_000,
            kind: FaultKind::ClogLink { from: 2, to: 0 },
        }],
        process: vec![(
            600_000,
            ProcessFault::SequencerCrash {
                group: 0,
                down_us: None,
            },
        )],
        safety_end_us: 8_000_000,
        liveness_bound_us: 10_000_000,
        features: vec!["scenario unordered-burst-failover"],
    }
}

/// Three nodes, every app a member of g0 sending all along; h0 joins first
/// (it sequences). `spans` and `process` cut one node off for twice the
/// lease (1.5 s): the others go on without it, and when it is back its
/// members are told they were separated, join again, and see no hole.
fn separation(
    feature: &'static str,
    spans: Vec<Span>,
    process: Vec<(Micros, ProcessFault)>,
) -> Plan {
    let n = 3;
    let host = HostParams {
        max_datagram_bytes: 1400,
        send_window_messages: 32,
        receive_window_messages: 128,
        ack_interval_ms: 5,
        retransmit_ms: 40,
    };
    let app = |node: usize, join_at: Micros| AppPlan {
        node,
        groups: vec![AppGroup {
            group: 0,
            join_at,
            messages: 300,
            leave_at: None,
            rejoin_after: None,
        }],
        anchor: node == 0,
        burst_max: 4,
        interval_us: 20_000,
        fifo_pct: 10,
        safe_pct: 10,
        payload_max: 64,
        disconnect_at: None,
        large_pct: 10,
        large_seed: node as u64 + 1,
    };
    Plan {
        seed: 0,
        hosts: vec![host; n],
        groups: vec![GroupPlan {
            name: "g0".into(),
            address: std::net::Ipv4Addr::new(239, 255, 7, 1),
            port: 7400,
        }],
        apps: vec![app(0, 20_000), app(1, 100_000), app(2, 200_000)],
        lease_ms: 1_500,
        links: quiet_links(n),
        dir_delay_us: 500,
        queue_cap: usize::MAX,
        spans,
        process,
        safety_end_us: 8_000_000,
        liveness_bound_us: 10_000_000,
        features: vec![feature],
    }
}

/// Every link of `n` hosts without loss or jitter: 200 µs between hosts,
/// 5 µs to itself (the scenarios bring their faults themselves).
fn quiet_links(n: usize) -> Vec<LinkParams> {
    (0..n * n)
        .map(|i| LinkParams {
            loss_ppm: 0,
            dup_ppm: 0,
            delay_min_us: if i / n == i % n { 5 } else { 200 },
            jitter_us: 0,
            mtu_bytes: 65_535,
        })
        .collect()
}
