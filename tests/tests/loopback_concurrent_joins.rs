//! Members joining at the same moment on different daemons must all end up
//! in one view: a view change that starts right after a node joined (before,
//! or while, it joins the multicast group) must still complete everywhere.
//! Regression test for views stuck at a node's first view (found by the
//! total-order tests under CPU contention).

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::time::Duration;

use chorus_tests::loopback::LoopbackCluster;

const DAEMONS: usize = 3;
const ROUNDS: usize = 8;

#[test]
fn loopback_concurrent_joins() {
    let cluster = LoopbackCluster::start(
        "loopback_concurrent_joins",
        "chat",
        DAEMONS,
        Duration::from_secs(120),
    )
    .unwrap();
    for round in 1..=ROUNDS {
        // All listeners of a round start at once, one per daemon.
        let names: Vec<String> = (1..=DAEMONS).map(|k| format!("r{round}-l{k}")).collect();
        let listeners: Vec<_> = names
            .iter()
            .enumerate()
            .map(|(i, name)| cluster.listen(i + 1, name).unwrap())
            .collect();
        let members: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, n)| cluster.node(i + 1).member(n))
            .collect();
        for listener in &listeners {
            let view = listener.wait_view_with(&members, Duration::from_secs(10));
            assert!(view.is_ok(), "round {round}: {}", view.unwrap_err());
        }
        // Dropping the listeners kills them: the next round starts from an
        // empty group on every daemon.
    }
}
