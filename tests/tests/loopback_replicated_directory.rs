//! Three directory replicas (Raft) and three daemons that list them all.
//! Mid-stream, `kill -9` the replica that leads. Another replica is
//! elected, the daemons move to it (redirected by the followers) and it
//! rebuilds the group from their reports; a daemon started while the old
//! leader is dead joins the very same group (the same view as the others,
//! not a group of its own); the old leader, restarted, rejoins as a
//! follower and serves nobody, and a daemon that reaches it first is sent
//! to the leader and joins the same group too. Every listener delivers one sequence with
//! every message.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::time::Duration;

use chorus_tests::check::{assert_all, Trace};
use chorus_tests::listener::Listener;
use chorus_tests::replicated::{
    check_late_member, wait_a_tenth, wait_view_everywhere, ReplicatedCluster,
};
use chorus_tests::scenario::{listeners_in_full_view, sender_work, start_senders};

const REPLICAS: usize = 3;
const DAEMONS: usize = 3;
const PER_SENDER: usize = 1000;
const GROUP: &str = "chat";

#[test]
fn loopback_replicated_directory() {
    let mut cluster = ReplicatedCluster::start(
        "loopback_replicated_directory",
        GROUP,
        REPLICAS,
        DAEMONS,
        Duration::from_secs(100),
    )
    .unwrap();
    let timeout = Duration::from_secs(30);
    let old = cluster.leader(timeout).unwrap();
    eprintln!("replica {} leads", old + 1);

    let (listeners, members, _) =
        listeners_in_full_view(cluster.env(), &cluster.nodes, GROUP, timeout).unwrap();
    let first = sender_work(DAEMONS, "s", PER_SENDER);
    let senders = start_senders(cluster.env(), &cluster.nodes, GROUP, &first).unwrap();
    wait_a_tenth(&listeners[0], &first, PER_SENDER, timeout).unwrap();

    // kill -9 the leader mid-stream, and start a new daemon meanwhile.
    cluster.replicas[old].process().kill();
    let killed_at = std::time::Instant::now();
    cluster.add_node().unwrap();
    let n4 = &cluster.nodes[DAEMONS];
    let l4 = Listener::on_node(cluster.env(), n4, GROUP, "l4").unwrap();
    let mut all = members.clone();
    all.push(n4.member("l4"));
    let joined = l4.wait_view_with(&all, timeout).unwrap();
    wait_view_everywhere(&listeners, &joined, timeout).unwrap();
    eprintln!(
        "leader loss: a daemon started after kill -9 had its member in everyone's view {} ms after it",
        killed_at.elapsed().as_millis()
    );
    for e in listeners[0].snapshot().events.iter().filter(|e| {
        matches!(
            e,
            chorus_tests::listener::Event::View(_) | chorus_tests::listener::Event::Separated(_)
        )
    }) {
        eprintln!("l1: {e:?}");
    }
    // The new leader hands out fresh ids above those the old one recorded
    // (plus a margin), never one an old node may still hold.
    let ids: Vec<u32> = cluster
        .nodes
        .iter()
        .map(|n| {
            chorus::Client::connect(n.socket_path())
                .and_then(|mut c| c.status())
                .unwrap()
                .node_id
        })
        .collect();
    // (The first daemons' ids are above the margin too when an election
    // happened before they registered, as on a loaded machine.)
    let old_max = ids[..DAEMONS].iter().copied().max().unwrap_or(0);
    assert!(
        ids[DAEMONS] > 1024 && ids[DAEMONS] > old_max,
        "node ids {ids:?}"
    );
    for sender in senders {
        sender.finish(timeout).unwrap();
    }
    let new = cluster.leader_other_than(Some(old), timeout).unwrap();
    eprintln!("replica {} leads after the kill", new + 1);

    // The old leader comes back: a follower. A daemon that reaches it
    // first (the scenario: a directory that knows nothing) is sent
    // to the leader, and its member joins the same group as the others.
    cluster.restart_replica(old, 2).unwrap();
    cluster.add_node_trying_first(old).unwrap();
    let n5 = &cluster.nodes[DAEMONS + 1];
    let l5 = Listener::on_node(cluster.env(), n5, GROUP, "l5").unwrap();
    all.push(n5.member("l5"));
    let joined = l5.wait_view_with(&all, timeout).unwrap();
    wait_view_everywhere(&listeners, &joined, timeout).unwrap();
    wait_view_everywhere(std::slice::from_ref(&l4), &joined, timeout).unwrap();

    // A second round from every daemon, the new ones included.
    let second = sender_work(DAEMONS + 2, "t", PER_SENDER / 2);
    let senders = start_senders(cluster.env(), &cluster.nodes, GROUP, &second).unwrap();
    for sender in senders {
        sender.finish(timeout).unwrap();
    }
    let total = DAEMONS * PER_SENDER + (DAEMONS + 2) * (PER_SENDER / 2);
    for l in &listeners {
        l.wait_messages(total, timeout).unwrap();
    }
    let traces: Vec<Trace> = listeners.iter().map(Listener::trace).collect();
    let work: Vec<_> = first.iter().chain(&second).cloned().collect();
    assert_all(&traces, &work);
    for late in [&l4, &l5] {
        late.wait_messages((DAEMONS + 2) * (PER_SENDER / 2), timeout)
            .unwrap();
        check_late_member(&late.trace(), &traces[0], &second).unwrap();
    }

    assert_eq!(cluster.leader(timeout).unwrap(), new, "the leader stayed");
    let log = std::fs::read_to_string(cluster.replicas[old].process().log_path()).unwrap();
    assert!(
        !log.contains("serving daemons under epoch"),
        "the restarted replica served daemons:\n{log}"
    );
}
