//! Three daemons on loopback, three concurrent senders of 5000 messages of
//! 1000 bytes each: every listener delivers the same 15000 messages in the
//! same order, with (no loss injected) next to no retransmissions, and no
//! flow window ever over its cap.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::time::{Duration, Instant};

use chorus_tests::check::assert_all;
use chorus_tests::loopback::LoopbackCluster;
use chorus_tests::scenario::concurrent_senders_sized;
use chorus_tests::stats::{ClusterStats, WindowSampler};

const DAEMONS: usize = 3;
const PER_SENDER: usize = 5000;
const PAYLOAD_BYTES: usize = 1000;

/// How often the flow windows are sampled during the run.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);

#[test]
fn loopback_concurrent_senders() {
    let started = Instant::now();
    let cluster = LoopbackCluster::start(
        "loopback_concurrent_senders",
        "chat",
        DAEMONS,
        Duration::from_secs(120),
    )
    .unwrap();
    let before = ClusterStats::read(&cluster.nodes).unwrap();
    let sampler = WindowSampler::start(&cluster.nodes, SAMPLE_EVERY);
    let run = concurrent_senders_sized(
        cluster.env(),
        &cluster.nodes,
        &cluster.group.name,
        PER_SENDER,
        Some(PAYLOAD_BYTES),
        Duration::from_secs(90),
    )
    .unwrap();
    let windows = sampler.stop().unwrap();
    let spent = ClusterStats::read(&cluster.nodes).unwrap().since(&before);
    eprintln!("loopback_concurrent_senders: {}", run.summary());
    eprintln!(
        "loopback_concurrent_senders: daemons: {}; windows: {}; test took {:.1} s",
        spent.summary(),
        windows.summary(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(run.sent(), DAEMONS * PER_SENDER);
    assert_all(&run.traces, &run.work);

    // No loss on loopback (the kernel may still drop on a full receive
    // buffer, which flow control is there to prevent): at most 1 % of the
    // messages sent again.
    let max_retransmits = (run.sent() / 100) as u64;
    assert!(
        spent.retransmits() <= max_retransmits,
        "{} retransmissions for {} messages on loopback (bound {max_retransmits}): {}",
        spent.retransmits(),
        run.sent(),
        spent.summary()
    );

    // Every group entry read during the run keeps its flow window within
    // the cap, and every node showed its group. (Sampled while the run goes
    // on: once it returns, its listeners are gone and the daemons have left
    // the group.)
    assert!(
        windows.nodes_with_groups.len() == DAEMONS,
        "the sampler did not see the group on every node: {}",
        windows.summary()
    );
    assert!(
        windows.over_cap.is_empty(),
        "flow windows over their cap: {:?}; {}",
        windows.over_cap,
        windows.summary()
    );
}
