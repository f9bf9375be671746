//! Three directory replicas (Raft) and three daemons that list them all.
//! Mid-stream, `kill -9` the replica that leads. Another replica is
//! elected, the daemons move to it (redirected by the followers) and it
//! rebuilds the group from their reports; a daemon started while the old
//! leader is dead joins the very same group (the same view as the others,
//! not a group of its own); the old leader, restarted, rejoins as a
//! follower and serves nobody. Every listener delivers one sequence with
//! every message.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::collections::BTreeSet;
use std::time::Duration;

use chorus_tests::check::{assert_all, Trace};
use chorus_tests::listener::Listener;
use chorus_tests::replicated::ReplicatedCluster;
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
    let tenth: Vec<String> = first
        .iter()
        .map(|w| format!("{}-{:06}", w.label, PER_SENDER / 10))
        .collect();
    listeners[0]
        .wait_until("a tenth of every sender's messages", timeout, |seen| {
            let got: BTreeSet<&str> = seen.messages().filter_map(|m| m.data.as_deref()).collect();
            tenth.iter().all(|p| got.contains(p.as_str())).then_some(())
        })
        .unwrap();

    // kill -9 the leader mid-stream, and start a new daemon meanwhile.
    cluster.replicas[old].process().kill();
    cluster.add_node().unwrap();
    let n4 = &cluster.nodes[DAEMONS];
    let l4 = Listener::on_node(cluster.env(), n4, GROUP, "l4").unwrap();
    let mut all = members.clone();
    all.push(n4.member("l4"));
    let joined = l4.wait_view_with(&all, timeout).unwrap();
    for l in &listeners {
        // The same view line: every old member is told the very view the
        // new member joined in (same id, same members).
        l.wait_until("the new member's view", timeout, |seen| {
            seen.events.iter().find_map(|e| match e {
                chorus_tests::listener::Event::View(v)
                    if v.view == joined.view && v.members == joined.members =>
                {
                    Some(())
                }
                _ => None,
            })
        })
        .unwrap();
    }
    for sender in senders {
        sender.finish(timeout).unwrap();
    }
    let new = cluster.leader(timeout).unwrap();
    assert_ne!(new, old, "the killed replica cannot lead");
    eprintln!("replica {} leads after the kill", new + 1);

    // The old leader comes back: a follower.
    cluster.restart_replica(old, 2).unwrap();

    // A second round from every daemon, the new one included.
    let second = sender_work(DAEMONS + 1, "t", PER_SENDER / 2);
    let senders = start_senders(cluster.env(), &cluster.nodes, GROUP, &second).unwrap();
    for sender in senders {
        sender.finish(timeout).unwrap();
    }
    let total = DAEMONS * PER_SENDER + (DAEMONS + 1) * (PER_SENDER / 2);
    for l in &listeners {
        l.wait_messages(total, timeout).unwrap();
    }
    let traces: Vec<Trace> = listeners.iter().map(Listener::trace).collect();
    let work: Vec<_> = first.iter().chain(&second).cloned().collect();
    assert_all(&traces, &work);

    // The new daemon's member delivers from its first view on: exactly the
    // others' sequence there, the second round whole.
    l4.wait_messages((DAEMONS + 1) * (PER_SENDER / 2), timeout)
        .unwrap();
    let late = l4.trace();
    let by_seq: std::collections::BTreeMap<u64, _> =
        traces[0].deliveries.iter().map(|d| (d.seq, d)).collect();
    for d in &late.deliveries {
        assert_eq!(
            by_seq.get(&d.seq),
            Some(&d),
            "l4 differs from l1 at seq {}",
            d.seq
        );
    }
    let got: BTreeSet<&str> = late.deliveries.iter().map(|d| d.data.as_str()).collect();
    for w in &second {
        for p in &w.payloads {
            assert!(got.contains(p.as_str()), "l4 lacks {p}");
        }
    }

    assert_eq!(cluster.leader(timeout).unwrap(), new, "the leader stayed");
    let log = std::fs::read_to_string(cluster.replicas[old].process().log_path()).unwrap();
    assert!(
        !log.contains("serving daemons under epoch"),
        "the restarted replica served daemons:\n{log}"
    );
}
