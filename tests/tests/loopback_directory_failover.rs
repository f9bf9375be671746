//! Two directories, no restart: every daemon lists a primary and a standby.
//! `kill -9` the primary mid-stream and leave it dead. The daemons keep
//! serving their groups, move to the standby (the next address in their
//! list), and the standby rebuilds the group from their reports after one
//! lease; new members join through it; and every listener delivers every
//! message of every sender, in one order.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::time::Duration;

use chorus_tests::check::assert_all;
use chorus_tests::loopback::LoopbackCluster;
use chorus_tests::scenario::directory_failover_mid_stream;

const DAEMONS: usize = 3;
const PER_SENDER: usize = 1500;

#[test]
fn loopback_directory_failover() {
    let cluster = LoopbackCluster::start_with_standby(
        "loopback_directory_failover",
        "chat",
        DAEMONS,
        Duration::from_secs(120),
    )
    .unwrap();
    let standby = cluster.standby.as_ref().unwrap();
    assert_ne!(cluster.directory.listen, standby.listen);
    let run = directory_failover_mid_stream(
        cluster.env(),
        &cluster.nodes,
        &cluster.directory,
        standby,
        &cluster.group.name,
        PER_SENDER,
        Duration::from_secs(60),
    )
    .unwrap();
    eprintln!("loopback_directory_failover: {}", run.summary());
    assert_eq!(run.sent(), 2 * DAEMONS * PER_SENDER);
    assert_all(&run.traces, &run.work);
}
