//! Membership under failure with real binaries on four namespace hosts, all
//! sending 3000 total-order messages: `kill -9` one daemon mid-stream (a
//! member, or the sequencer), with and without 5% loss on a survivor. The
//! survivors must deliver identical event sequences (views included), every
//! survivor's message, and a view without the dead host.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::time::Duration;

use chorus_tests::failover::{kill_mid_stream, Victim};
use chorus_tests::netns;
use chorus_tests::netns_cluster::NetnsCluster;

const HOSTS: usize = 4;
const PER_SENDER: usize = 3000;

fn run(test: &str, victim: Victim, lossy_survivor: bool) {
    let Some(tools) = netns::require() else {
        return;
    };
    let cluster =
        NetnsCluster::start(&tools, test, "chat", HOSTS, Duration::from_secs(240)).unwrap();
    if lossy_survivor {
        // Host 4 never sequences first (the first listener's node does) and
        // is never the member picked to die.
        cluster.topology.add_udp_loss(4, 5).unwrap();
    }
    let run = kill_mid_stream(
        cluster.env(),
        &cluster.nodes,
        &cluster.group.name,
        PER_SENDER,
        victim,
        // A healthy run takes a few seconds; a stall fails in a minute.
        Duration::from_secs(60),
    )
    .unwrap();
    eprintln!("{test}: {}", run.summary());
    assert!(
        run.failover < Duration::from_secs(10),
        "failover took {:?}",
        run.failover
    );
    if victim == Victim::Sequencer {
        assert_ne!(
            run.sequencer_after, run.sequencer_before,
            "the sequencer did not change"
        );
    }
}

#[test]
fn netns_kill_member() {
    run("netns_kill_member", Victim::Member, false);
}

#[test]
fn netns_kill_sequencer() {
    run("netns_kill_sequencer", Victim::Sequencer, false);
}

#[test]
fn netns_kill_member_lossy() {
    run("netns_kill_member_lossy", Victim::Member, true);
}

#[test]
fn netns_kill_sequencer_lossy() {
    run("netns_kill_sequencer_lossy", Victim::Sequencer, true);
}
