//! Three directory replicas and four daemons, each on its own
//! network-namespace host. Two failures of the leading replica, mid-stream:
//! first `kill -9` (then a restart: it comes back as a follower), with a new
//! daemon started while it is dead, whose member must join the very same
//! group; then the new leader is cut off the network by nftables (no reset,
//! no FIN: a partition) and healed later. The daemons notice the silent
//! link, move to the replica elected meanwhile; last a follower is cut off
//! and healed. No group stops or splits: every listener delivers one
//! sequence with every message.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::time::Duration;

use chorus_tests::check::{assert_all, Trace};
use chorus_tests::listener::Listener;
use chorus_tests::netns;
use chorus_tests::replicated::{
    check_late_member, wait_a_tenth, wait_view_everywhere, ReplicatedCluster,
};
use chorus_tests::scenario::{listeners_in_full_view, sender_work, start_senders};

const REPLICAS: usize = 3;
const DAEMONS: usize = 3;
const PER_SENDER: usize = 1000;
const GROUP: &str = "chat";

#[test]
fn netns_replicated_directory() {
    let Some(tools) = netns::require() else {
        return;
    };
    let mut cluster = ReplicatedCluster::start_netns(
        &tools,
        "netns_replicated_directory",
        GROUP,
        REPLICAS,
        DAEMONS,
        Duration::from_secs(110),
    )
    .unwrap();
    let timeout = Duration::from_secs(30);
    let first_leader = cluster.leader(timeout).unwrap();
    eprintln!("replica {} leads", first_leader + 1);

    let (listeners, members, _) =
        listeners_in_full_view(cluster.env(), &cluster.nodes, GROUP, timeout).unwrap();

    // Round 1: kill -9 the leader mid-stream; a new daemon meanwhile.
    let first = sender_work(DAEMONS, "s", PER_SENDER);
    let senders = start_senders(cluster.env(), &cluster.nodes, GROUP, &first).unwrap();
    wait_a_tenth(&listeners[0], &first, PER_SENDER, timeout).unwrap();
    cluster.replicas[first_leader].process().kill();
    cluster.add_node().unwrap();
    let n4 = &cluster.nodes[DAEMONS];
    let l4 = Listener::on_node(cluster.env(), n4, GROUP, "l4").unwrap();
    let mut all = members.clone();
    all.push(n4.member("l4"));
    let joined = l4.wait_view_with(&all, timeout).unwrap();
    wait_view_everywhere(&listeners, &joined, timeout).unwrap();
    for sender in senders {
        sender.finish(timeout).unwrap();
    }
    let second_leader = cluster
        .leader_other_than(Some(first_leader), timeout)
        .unwrap();
    eprintln!("replica {} leads after the kill", second_leader + 1);
    cluster.restart_replica(first_leader, 2).unwrap();

    // Round 2, from all four daemons: partition the leader mid-stream.
    let second = sender_work(DAEMONS + 1, "t", PER_SENDER);
    let senders = start_senders(cluster.env(), &cluster.nodes, GROUP, &second).unwrap();
    wait_a_tenth(&listeners[0], &second, PER_SENDER, timeout).unwrap();
    cluster.partition_replica(second_leader).unwrap();
    let third_leader = cluster
        .leader_other_than(Some(second_leader), timeout)
        .unwrap();
    eprintln!(
        "replica {} cut off; replica {} leads",
        second_leader + 1,
        third_leader + 1
    );
    for sender in senders {
        sender.finish(timeout).unwrap();
    }
    let dropped = cluster.heal_replica(second_leader).unwrap();
    assert!(dropped > 0, "the partition dropped nothing");
    let log =
        std::fs::read_to_string(cluster.replicas[second_leader].process().log_path()).unwrap();
    assert!(
        log.contains("stops serving daemons"),
        "the cut-off leader did not stop serving:\n{log}"
    );

    let total = DAEMONS * PER_SENDER + (DAEMONS + 1) * PER_SENDER;
    for l in &listeners {
        l.wait_messages(total, timeout).unwrap();
    }
    let traces: Vec<Trace> = listeners.iter().map(Listener::trace).collect();
    let work: Vec<_> = first.iter().chain(&second).cloned().collect();
    assert_all(&traces, &work);
    l4.wait_messages((DAEMONS + 1) * PER_SENDER, timeout)
        .unwrap();
    check_late_member(&l4.trace(), &traces[0], &second).unwrap();

    // After the heal there is still one leader, and every daemon is with it.
    let leader = cluster.leader(timeout).unwrap();
    eprintln!("after the heal replica {} leads", leader + 1);
}
