//! A rolling rotation of the cluster key, step by step as
//! systemd/INSTALL.md tells an administrator, while the group goes on:
//!
//! 1. every process accepts the new key (`accept_key_files`), still
//!    sealing with the old one;
//! 2. every process seals with the new key and still accepts the old one;
//! 3. the old key is retired.
//!
//! At each step the directory is restarted, then each daemon takes the
//! step, one at a time: by SIGHUP (`systemctl reload chorusd`: no
//! application is disconnected) or by a restart (SIGTERM, then a start).
//! After every single step of every process (twelve states, most of them
//! mixed: some processes seal with one key, some with the other) a fresh
//! listener on every daemon must deliver every message of a sender on
//! every daemon, each once, in one order. With SIGHUP, listeners started
//! before the rotation stay members throughout and deliver every round,
//! in one order. At the end a daemon that holds only the retired key is
//! refused by the directory, which names the key.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chorus_tests::alloc::free_udp_port;
use chorus_tests::check::{assert_all, SenderWork};
use chorus_tests::cluster::{Launcher, Node};
use chorus_tests::configs::{test_log_level, DaemonConfig};
use chorus_tests::keys::{cluster_key_file, key_file, key_id, rewrite_keys, KeySpec};
use chorus_tests::listener::Listener;
use chorus_tests::loopback::LoopbackCluster;
use chorus_tests::scenario::{sender_work, start_senders};
use chorus_tests::testenv::TestEnv;

const DAEMONS: usize = 3;
const PER_SENDER: usize = 50;
const TIMEOUT: Duration = Duration::from_secs(60);

/// One round: a listener `r<round>l<k>` on every daemon, in one view with
/// `others`; then a sender `r<round>s<k>` on every daemon; every listener
/// must deliver every message, each once, in one order. Returns what was
/// sent.
fn round(
    env: &TestEnv,
    nodes: &[Node],
    group: &str,
    round: usize,
    others: &[String],
) -> Vec<SenderWork> {
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
        .chain(others.iter().cloned())
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
    work
}

/// How a daemon takes a step of the rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// SIGHUP: the daemon reads its keys anew and runs on.
    Reload,
    /// SIGTERM, then a start on the changed file.
    Restart,
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
fn loopback_key_rotation_by_reload() {
    rotate("loopback_key_rotation_by_reload", Step::Reload);
}

#[test]
fn loopback_key_rotation_by_restart() {
    rotate("loopback_key_rotation_by_restart", Step::Restart);
}

fn rotate(test: &str, how: Step) {
    let started = Instant::now();
    let stage = |what: &str| eprintln!("{test}: {:.1} s: {what}", started.elapsed().as_secs_f64());
    let mut cluster =
        LoopbackCluster::start(test, "chat", DAEMONS, Duration::from_secs(300)).unwrap();
    let group = cluster.group.name.clone();
    let env_dir = cluster.env().dir().to_owned();
    let old: PathBuf = cluster_key_file(&env_dir).unwrap();
    let new: PathBuf = key_file(&env_dir, "new.key").unwrap();
    let (old_id, new_id) = (key_id(&old).unwrap(), key_id(&new).unwrap());
    assert_ne!(old_id, new_id);
    let steps = [
        (
            "accept the new key",
            KeySpec::Files {
                key_file: old.clone(),
                accept_key_files: vec![new.clone()],
            },
            format!("sealing with cluster key {old_id}, also accepting {new_id}\n"),
        ),
        (
            "seal with the new key",
            KeySpec::Files {
                key_file: new.clone(),
                accept_key_files: vec![old.clone()],
            },
            format!("sealing with cluster key {new_id}, also accepting {old_id}\n"),
        ),
        (
            "retire the old key",
            KeySpec::file(new.clone()),
            format!("sealing with cluster key {new_id}\n"),
        ),
    ];

    // With SIGHUP, a listener per daemon from before the rotation to its
    // end: no application is disconnected.
    let keepers: Vec<Listener> = match how {
        Step::Reload => (1..=DAEMONS)
            .map(|k| cluster.listen(k, &format!("keep{k}")).unwrap())
            .collect(),
        Step::Restart => Vec::new(),
    };
    let kept: Vec<String> = match how {
        Step::Reload => (1..=DAEMONS)
            .map(|k| cluster.node(k).member(&format!("keep{k}")))
            .collect(),
        Step::Restart => Vec::new(),
    };
    for l in &keepers {
        l.wait_view_with(&kept, TIMEOUT).unwrap();
    }
    let mut work = Vec::new();
    let mut rounds = 0;
    work.extend(round(cluster.env(), &cluster.nodes, &group, rounds, &kept));
    let mut life = 1;
    for (what, keys, described) in &steps {
        life += 1;
        // The directory first, then the daemons one at a time, each done
        // before the next.
        rewrite_keys(&cluster.directory.config_path, keys).unwrap();
        cluster.restart_directory(life).unwrap();
        rounds += 1;
        work.extend(round(cluster.env(), &cluster.nodes, &group, rounds, &kept));
        for k in 1..=DAEMONS {
            rewrite_keys(&cluster.node(k).config_path, keys).unwrap();
            match how {
                Step::Restart => cluster.restart_node(k, life).unwrap(),
                Step::Reload => {
                    let node = cluster.node(k);
                    let pid = nix::unistd::Pid::from_raw(node.process().pid() as i32);
                    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
                    wait_log(
                        node.process().log_path(),
                        &format!("SIGHUP: new keys: now {described}"),
                        Duration::from_secs(20),
                    );
                }
            }
            rounds += 1;
            work.extend(round(cluster.env(), &cluster.nodes, &group, rounds, &kept));
        }
        stage(&format!("{what}: done, {rounds} rounds delivered"));
    }
    if how == Step::Reload {
        let total: usize = work.iter().map(|w| w.payloads.len()).sum();
        for l in &keepers {
            l.wait_messages(total, TIMEOUT).unwrap();
        }
        let traces: Vec<_> = keepers.iter().map(Listener::trace).collect();
        assert_all(&traces, &work);
        stage(&format!(
            "the listeners of before the rotation delivered all {total} messages"
        ));
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
    let refusal = format!("offered key id {old_id}, which this directory does not hold");
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
    stage("a daemon with the retired key is refused");
}
