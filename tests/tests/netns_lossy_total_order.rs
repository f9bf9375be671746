//! Four namespace hosts, nftables dropping 5% of incoming UDP on host 2 and
//! 10% on host 3, four concurrent senders: retransmission must still give
//! every listener the same 8000 messages in the same order, with the repairs
//! that took bounded (no retransmission storm).

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::time::Duration;

use chorus_tests::check::assert_all;
use chorus_tests::netns;
use chorus_tests::netns_cluster::NetnsCluster;
use chorus_tests::scenario::concurrent_senders;
use chorus_tests::stats::ClusterStats;

const HOSTS: usize = 4;
const PER_SENDER: usize = 2000;

/// Bound on the retransmissions (sum of every daemon's `retransmits`):
/// [`MAX_REPAIRS`] plus [`TAIL_PROBES_PER_SENDER_SECOND`] per sender per
/// second of the run.
///
/// Repairs: a DATA datagram is lost at host 2 with p = 0.05 and at host 3
/// with p = 0.1 (host 2's own at host 3 only, host 3's at host 2 only), so
/// on average 0.1125 lost copies per datagram, each costing one repair. The
/// short numbered lines pack about 50-100 to a datagram, so the 8000
/// messages are only some 100-150 DATA datagrams (every daemon's datagrams
/// out sum to 160-190, NAKs and acknowledgements included): about 11-17
/// repairs, 50 with a factor of 3 for lost repairs and NAKs.
///
/// Tail probes are not loss-driven: a sender resends its last message at
/// most once per retransmit interval (60 ms) while it is unordered, so at
/// most 17 per second of the run; a run slowed by a busy machine may take
/// a few of those.
///
/// Measured before setting it (3 runs of about 0.2 s): 11, 9, 10
/// retransmissions (2, 1, 0 tail probes): the bound is 50 + 4 x 17 x 0.2 =
/// about 64 there, over 2x the worst run, and well below a storm: one
/// multicast of the unordered messages per sender per 10 ms tick is 100
/// per sender per second, 80 in such a run on top of the repairs (and
/// 6 times the tail-probe allowance however long the run takes).
const MAX_REPAIRS: u64 = 50;
/// See [`MAX_REPAIRS`].
const TAIL_PROBES_PER_SENDER_SECOND: f64 = 17.0;

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
    let before = ClusterStats::read(&cluster.nodes).unwrap();
    let run = concurrent_senders(
        cluster.env(),
        &cluster.nodes,
        &cluster.group.name,
        PER_SENDER,
        Duration::from_secs(180),
    )
    .unwrap();
    let spent = ClusterStats::read(&cluster.nodes).unwrap().since(&before);
    let max_retransmits = MAX_REPAIRS
        + (TAIL_PROBES_PER_SENDER_SECOND * HOSTS as f64 * run.elapsed.as_secs_f64()).ceil() as u64;
    let drops2 = cluster.topology.udp_drops(2).unwrap();
    let drops3 = cluster.topology.udp_drops(3).unwrap();
    eprintln!(
        "netns_lossy_total_order: {}; nft dropped {drops2} packets on host 2, {drops3} on host 3",
        run.summary()
    );
    eprintln!(
        "netns_lossy_total_order: daemons: {}; bound: retransmits <= {max_retransmits}",
        spent.summary()
    );
    assert_eq!(run.sent(), HOSTS * PER_SENDER);
    assert_all(&run.traces, &run.work);
    assert!(
        drops2 > 0 && drops3 > 0,
        "loss was not injected: {drops2} / {drops3}"
    );
    assert!(
        spent.retransmits() <= max_retransmits,
        "{} retransmissions for {} messages in {:.2} s (bound {max_retransmits}): {}",
        spent.retransmits(),
        run.sent(),
        run.elapsed.as_secs_f64(),
        spent.summary()
    );
}
