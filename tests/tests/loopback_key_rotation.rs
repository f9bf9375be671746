//! A rolling rotation of the cluster key, step by step as
//! systemd/INSTALL.md tells an administrator, while the group goes on:
//!
//! 1. every process accepts the new key (`accept_key_files`), restarted
//!    one at a time, still sealing with the old one;
//! 2. every process seals with the new key and still accepts the old one;
//! 3. the old key is retired.
//!
//! After every single restart (twelve states, most of them mixed: some
//! processes seal with one key, some with the other) a fresh listener on
//! every daemon must deliver every message of a sender on every daemon,
//! each once, in one order. At the end a daemon that holds only the
//! retired key is refused by the directory, which names the key.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chorus_tests::alloc::free_udp_port;
use chorus_tests::check::assert_all;
use chorus_tests::cluster::{Launcher, Node};
use chorus_tests::configs::{test_log_level, DaemonConfig};
use chorus_tests::keys::{cluster_key_file, key_file, key_id, rewrite_keys, KeySpec};
use chorus_tests::listener::Listener;
use chorus_tests::loopback::LoopbackCluster;
use chorus_tests::scenario::{sender_work, start_senders};
use chorus_tests::testenv::TestEnv;

const DAEMONS: usize = 3;
const PER_SENDER: usize = 100;
const TIMEOUT: Duration = Duration::from_secs(60);

/// One round: a listener `r<round>l<k>` on every daemon, in one view; then
/// a sender `r<round>s<k>` on every daemon; every listener must deliver
/// every message, each once, in one order.
fn round(env: &TestEnv, nodes: &[Node], group: &str, round: usize) {
    let names: Vec<String> = (1..=nodes.len()).map(|k| format!("r{round}l{k}")).collect();
    let listeners: Vec<Listener> = nodes
        .iter()
        .zip(&names)
        .map(|(node, name)| Listener::on_node(env, node, group, name).unwrap())
        .collect();
    let members: Vec<String> = nodes
        .iter()
        .zip(&names)
        .map(|(node, name)| node.member(name))
        .collect();
    for l in &listeners {
        l.wait_view_with(&members, TIMEOUT).unwrap();
    }
    let work = sender_work(nodes.len(), &format!("r{round}s"), PER_SENDER);
    for sender in start_senders(env, nodes, group, &work).unwrap() {
        sender.finish(TIMEOUT).unwrap();
    }
    for l in &listeners {
        l.wait_messages(work.len() * PER_SENDER, TIMEOUT).unwrap();
    }
    let traces: Vec<_> = listeners.iter().map(Listener::trace).collect();
    assert_all(&traces, &work);
    eprintln!("loopback_key_rotation: round {round} delivered");
}

/// Waits until the log at `path` holds `needle`.
fn wait_log(path: &Path, needle: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} never said {needle:?}; it ends:\n{}",
            path.display(),
            chorus_tests::process::tail_file(path, 20)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn loopback_key_rotation() {
    let started = Instant::now();
    let mut cluster = LoopbackCluster::start(
        "loopback_key_rotation",
        "chat",
        DAEMONS,
        Duration::from_secs(300),
    )
    .unwrap();
    let group = cluster.group.name.clone();
    let env_dir = cluster.env().dir().to_owned();
    let old: PathBuf = cluster_key_file(&env_dir).unwrap();
    let new: PathBuf = key_file(&env_dir, "new.key").unwrap();
    assert_ne!(key_id(&old).unwrap(), key_id(&new).unwrap());
    let steps = [
        (
            "accept the new key",
            KeySpec::Files {
                key_file: old.clone(),
                accept_key_files: vec![new.clone()],
            },
        ),
        (
            "seal with the new key",
            KeySpec::Files {
                key_file: new.clone(),
                accept_key_files: vec![old.clone()],
            },
        ),
        ("retire the old key", KeySpec::file(new.clone())),
    ];

    let mut rounds = 0;
    round(cluster.env(), &cluster.nodes, &group, rounds);
    let mut life = 1;
    for (what, keys) in &steps {
        life += 1;
        // The directory first, then the daemons one at a time, each back
        // before the next goes down.
        rewrite_keys(&cluster.directory.config_path, keys).unwrap();
        cluster.restart_directory(life).unwrap();
        rounds += 1;
        round(cluster.env(), &cluster.nodes, &group, rounds);
        for k in 1..=DAEMONS {
            rewrite_keys(&cluster.node(k).config_path, keys).unwrap();
            cluster.restart_node(k, life).unwrap();
            rounds += 1;
            round(cluster.env(), &cluster.nodes, &group, rounds);
        }
        eprintln!(
            "loopback_key_rotation: {:.1} s: {what}: done, {rounds} rounds delivered",
            started.elapsed().as_secs_f64()
        );
    }

    // A daemon that still holds only the retired key is refused by name.
    let env = cluster.env();
    let config = DaemonConfig {
        node: "n4".to_owned(),
        directory: vec![cluster.directory.listen],
        interface: std::net::Ipv4Addr::LOCALHOST,
        data_port: free_udp_port().unwrap(),
        socket: env.path("n4.sock"),
        socket_mode: "0600".to_owned(),
        log_level: test_log_level(),
        keys: KeySpec::file(old.clone()),
        max_message_bytes: None,
    };
    let n4 = Node::spawn(env, &Launcher::Host, &config).unwrap();
    let refusal = format!(
        "offered key id {}, which this directory does not hold",
        key_id(&old).unwrap()
    );
    wait_log(
        &env.path(&format!("directory-{life}.log")),
        &refusal,
        Duration::from_secs(20),
    );
    n4.process().ensure_running().unwrap();
    let status = chorus::Client::connect(n4.socket_path())
        .and_then(|mut c| c.status())
        .unwrap();
    assert!(!status.connected, "the retired key registered: {status:?}");
    eprintln!(
        "loopback_key_rotation: {:.1} s: a daemon with the retired key is refused",
        started.elapsed().as_secs_f64()
    );
}
