//! The namespace network itself, without chorus: hosts reach each other,
//! multicast crosses the bridge, nftables loss drops (and counts) packets,
//! and everything is removed afterwards. If this fails, the chorus namespace
//! tests cannot pass whatever chorus does.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::io::Read;
use std::process::Command;
use std::time::Duration;

use chorus_tests::netns::{self, find_tool, run, Topology};
use chorus_tests::notify::NotifySocket;
use chorus_tests::process::Spawn;
use chorus_tests::testenv::TestEnv;

const PROBE: &str = env!("CARGO_BIN_EXE_chorus-netprobe");
// Few enough to fit in a default receive buffer even if the reader lags.
const DATAGRAMS: usize = 100;

/// Starts a multicast receiver in host `k`, waits until it has joined, and
/// returns a closure that waits for its count.
fn receiver(
    env: &TestEnv,
    topo: &Topology,
    k: usize,
    label: &str,
    group: &str,
    port: u16,
) -> impl FnOnce() -> usize {
    let notify = NotifySocket::bind(&env.path(&format!("{label}.notify"))).unwrap();
    let addr = topo.host(k).addr.to_string();
    let mut cmd = topo.launcher(k).command(PROBE);
    cmd.args([
        "recv",
        group,
        &port.to_string(),
        &addr,
        &DATAGRAMS.to_string(),
        "1500",
    ]);
    cmd.env("NOTIFY_SOCKET", notify.path());
    let mut spec = Spawn::new(label, cmd);
    spec.stdout_piped = true;
    let (guard, pipes) = env.spawn(spec).unwrap();
    notify.wait_ready(&guard, Duration::from_secs(10)).unwrap();
    let label = label.to_owned();
    move || {
        let status = guard.wait_timeout(Duration::from_secs(20)).unwrap();
        assert!(
            status.success(),
            "{label}: {status}: {}",
            guard.log_tail(10)
        );
        let mut out = String::new();
        pipes.stdout.unwrap().read_to_string(&mut out).unwrap();
        let n = out
            .trim()
            .strip_prefix("received ")
            .unwrap_or_else(|| panic!("{label} printed {out:?}"));
        n.parse().unwrap()
    }
}

fn send(topo: &Topology, k: usize, iface: &str, group: &str, port: u16) {
    let mut cmd = topo.launcher(k).command(PROBE);
    cmd.args([
        "send",
        group,
        &port.to_string(),
        iface,
        &DATAGRAMS.to_string(),
    ]);
    let out = run(&mut cmd, None).unwrap();
    assert_eq!(out.trim(), format!("sent {DATAGRAMS}"));
}

#[test]
fn namespaces_carry_multicast_and_nft_loss_drops() {
    let Some(tools) = netns::require() else {
        return;
    };
    let env = TestEnv::new("netns_setup", Duration::from_secs(120)).unwrap();
    let topo = Topology::create(&tools, 3).unwrap();
    let names = topo.namespaces().to_vec();
    let listed = run(Command::new(&tools.ip).args(["netns", "list"]), None).unwrap();
    for ns in &names {
        assert!(
            listed
                .lines()
                .any(|l| l.split_whitespace().next() == Some(ns)),
            "{ns} not in {listed}"
        );
    }

    // Unicast between hosts (ICMP) — ping is optional outside CI.
    match find_tool("ping") {
        Some(ping) => {
            let ping = ping.to_string_lossy().into_owned();
            for k in [2, 3] {
                let to = topo.host(k).addr.to_string();
                topo.run_in(1, &[&ping, "-c1", "-W2", &to]).unwrap();
            }
        }
        None if std::env::var_os("CI").is_some() => panic!("CI is set but ping is missing"),
        None => eprintln!("ping not installed: unicast check skipped"),
    }

    let group = "239.255.77.1";
    let port = 7410;
    // Multicast, IP_MULTICAST_IF set: both other hosts get every datagram.
    let r2 = receiver(&env, &topo, 2, "recv-h2", group, port);
    let r3 = receiver(&env, &topo, 3, "recv-h3", group, port);
    send(&topo, 1, &topo.host(1).addr.to_string(), group, port);
    assert_eq!((r2(), r3()), (DATAGRAMS, DATAGRAMS));

    // Multicast relying on the 224.0.0.0/4 route alone.
    let r2 = receiver(&env, &topo, 2, "recv-h2-route", group, port);
    send(&topo, 1, "-", group, port);
    assert_eq!(r2(), DATAGRAMS);

    // 30% loss on host 3: every datagram is either received or counted as dropped.
    topo.add_udp_loss(3, 30).unwrap();
    assert_eq!(topo.udp_drops(3).unwrap(), 0);
    let r3 = receiver(&env, &topo, 3, "recv-h3-lossy", group, port);
    let r2 = receiver(&env, &topo, 2, "recv-h2-clean", group, port);
    send(&topo, 1, &topo.host(1).addr.to_string(), group, port);
    let (got3, got2) = (r3(), r2());
    let dropped = topo.udp_drops(3).unwrap();
    eprintln!("lossy host received {got3}, nft dropped {dropped} of {DATAGRAMS}");
    assert!(dropped > 0, "nft dropped nothing");
    assert_eq!(got3 as u64 + dropped, DATAGRAMS as u64);
    assert_eq!(got2, DATAGRAMS, "loss must stay on host 3");

    drop(topo);
    let listed = run(Command::new(&tools.ip).args(["netns", "list"]), None).unwrap();
    for ns in &names {
        assert!(
            !listed
                .lines()
                .any(|l| l.split_whitespace().next() == Some(ns)),
            "{ns} left behind"
        );
    }
}
