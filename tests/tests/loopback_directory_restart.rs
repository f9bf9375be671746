//! The directory holds soft state only: `kill -9` it mid-stream and start
//! it again. The daemons keep serving their groups meanwhile, re-register
//! and resume them; new members join through the restarted directory; and
//! every listener delivers every message of every sender, in one order.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::time::Duration;

use chorus_tests::check::assert_all;
use chorus_tests::loopback::LoopbackCluster;
use chorus_tests::scenario::directory_restart_mid_stream;

const DAEMONS: usize = 3;
const PER_SENDER: usize = 2000;

#[test]
fn loopback_directory_restart() {
    let mut cluster = LoopbackCluster::start(
        "loopback_directory_restart",
        "chat",
        DAEMONS,
        Duration::from_secs(120),
    )
    .unwrap();
    let group = cluster.group.name.clone();
    let (env, nodes, directory) = cluster.parts_mut();
    let run = directory_restart_mid_stream(
        env,
        nodes,
        directory,
        &group,
        PER_SENDER,
        Duration::from_secs(60),
    )
    .unwrap();
    eprintln!("loopback_directory_restart: {}", run.summary());
    assert_eq!(run.sent(), 2 * DAEMONS * PER_SENDER);
    assert_all(&run.traces, &run.work);
}
