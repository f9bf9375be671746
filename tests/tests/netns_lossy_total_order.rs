//! Four namespace hosts, nftables dropping 5% of incoming UDP on host 2 and
//! 10% on host 3, four concurrent senders: retransmission must still give
//! every listener the same 8000 messages in the same order.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::time::Duration;

use chorus_tests::check::assert_all;
use chorus_tests::netns;
use chorus_tests::netns_cluster::NetnsCluster;
use chorus_tests::scenario::concurrent_senders;

const HOSTS: usize = 4;
const PER_SENDER: usize = 2000;

#[test]
fn netns_lossy_total_order() {
    let Some(tools) = netns::require() else {
        return;
    };
    let cluster = NetnsCluster::start(
        &tools,
        "netns_lossy_total_order",
        "chat",
        HOSTS,
        Duration::from_secs(240),
    )
    .unwrap();
    cluster.topology.add_udp_loss(2, 5).unwrap();
    cluster.topology.add_udp_loss(3, 10).unwrap();
    let run = concurrent_senders(
        cluster.env(),
        &cluster.nodes,
        &cluster.group.name,
        PER_SENDER,
        Duration::from_secs(180),
    )
    .unwrap();
    let drops2 = cluster.topology.udp_drops(2).unwrap();
    let drops3 = cluster.topology.udp_drops(3).unwrap();
    eprintln!(
        "netns_lossy_total_order: {}; nft dropped {drops2} packets on host 2, {drops3} on host 3",
        run.summary()
    );
    assert_eq!(run.sent(), HOSTS * PER_SENDER);
    assert_all(&run.traces, &run.work);
    assert!(
        drops2 > 0 && drops3 > 0,
        "loss was not injected: {drops2} / {drops3}"
    );
}
