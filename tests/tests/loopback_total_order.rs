//! Three daemons on loopback, three concurrent senders: every listener
//! delivers the same 3000 messages in the same order (contract: `total`).

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::time::Duration;

use chorus_tests::check::assert_all;
use chorus_tests::loopback::LoopbackCluster;
use chorus_tests::scenario::concurrent_senders;

const DAEMONS: usize = 3;
const PER_SENDER: usize = 1000;

#[test]
fn loopback_total_order() {
    let cluster = LoopbackCluster::start(
        "loopback_total_order",
        "chat",
        DAEMONS,
        Duration::from_secs(120),
    )
    .unwrap();
    let run = concurrent_senders(
        cluster.env(),
        &cluster.nodes,
        &cluster.group.name,
        PER_SENDER,
        Duration::from_secs(90),
    )
    .unwrap();
    eprintln!("loopback_total_order: {}", run.summary());
    assert_eq!(run.sent(), DAEMONS * PER_SENDER);
    assert_all(&run.traces, &run.work);
}
