//! Operating chorus the way an administrator or a script does, on
//! loopback with the real binaries:
//!
//! - start the directory and the daemons, wait for readiness as a script
//!   would (`chorusctl status` exiting 0), join and send at once: works the
//!   first time; a join made while a daemon is still registering waits;
//! - a frozen directory (SIGSTOP): `chorusctl send` and `groups` give up
//!   within the bound (5 s) with exit 69 and say why; after SIGCONT
//!   service resumes;
//! - SIGHUP to chorusd: it keeps running and keeps its groups, applies
//!   `log_level`, names the keys that take a restart, ignores a broken
//!   file;
//! - the directory gone: `chorusctl groups` and `send` exit 69, and the
//!   daemon's log holds a bounded number of warnings, not one per attempt.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chorus_tests::alloc::{free_tcp_port, free_udp_port, mcast_group};
use chorus_tests::cluster::{DirectoryProc, Launcher, Node};
use chorus_tests::configs::{test_log_level, DaemonConfig, DirectoryConfig, GroupSpec};
use chorus_tests::keys::cluster_keys;
use chorus_tests::listener::{Event, Listener};
use chorus_tests::loopback::{LoopbackCluster, LEASE_MS};
use chorus_tests::testenv::TestEnv;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How long chorusd lets a request wait on the directory (`DIRECTORY_WAIT`).
const BOUND: Duration = Duration::from_secs(5);
/// Slack for process start-up on a busy machine.
const SLACK: Duration = Duration::from_secs(4);

/// A finished chorusctl.
#[derive(Debug)]
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs `cmd`, killing it if it has not ended within `limit` (then the code
/// is None): a hang is a failure, not a stuck test.
fn run(mut cmd: Command, limit: Duration) -> Ran {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = start.elapsed();
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut stdout);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    Ran {
        code,
        stdout,
        stderr,
        took,
    }
}

fn signal(pid: u32, sig: Signal) {
    kill(Pid::from_raw(i32::try_from(pid).unwrap()), sig).unwrap();
}

/// Polls `path` until a line satisfies `pred`; returns it.
fn wait_log_line(path: &std::path::Path, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| pred(l)) {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no such line in {} within {timeout:?}; log:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn warnings(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" WARN "))
        .map(str::to_owned)
        .collect()
}

fn daemon_config(env: &TestEnv, node: &str, directory: SocketAddrV4) -> DaemonConfig {
    DaemonConfig {
        socket: env.path(&format!("{node}.sock")),
        node: node.to_owned(),
        directory: vec![directory],
        interface: Ipv4Addr::LOCALHOST,
        data_port: free_udp_port().unwrap(),
        socket_mode: "0600".to_owned(),
        log_level: test_log_level(),
        max_message_bytes: None,
        keys: cluster_keys(env.dir()).unwrap(),
    }
}

/// A script: start the directory and two daemons, wait until `chorusctl
/// status` exits 0 on each, then join and send at once. Meanwhile a
/// listener that joined while its daemon was still registering (a new
/// directory holds registrations for one lease) is served, not refused.
#[test]
fn a_script_that_starts_the_services_waits_for_status_and_joins_works_first_time() {
    let env = TestEnv::new("ops_script_start", Duration::from_secs(60)).unwrap();
    let group = GroupSpec {
        name: "chat".to_owned(),
        mcast: mcast_group("ops_script_start").unwrap(),
    };
    let dir_config = DirectoryConfig {
        listen: SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_tcp_port().unwrap()),
        lease_ms: LEASE_MS,
        log_level: test_log_level(),
        groups: vec![group.clone()],
        replica: None,
        keys: cluster_keys(env.dir()).unwrap(),
    };
    let directory = DirectoryProc::start(&env, &Launcher::Host, &dir_config).unwrap();
    let n1 = Node::spawn(
        &env,
        &Launcher::Host,
        &daemon_config(&env, "n1", directory.listen),
    )
    .unwrap();
    let n2 = Node::spawn(
        &env,
        &Launcher::Host,
        &daemon_config(&env, "n2", directory.listen),
    )
    .unwrap();

    // n2: listen as soon as its socket answers, registered or not.
    let deadline = Instant::now() + Duration::from_secs(20);
    while chorus::Client::connect(n2.socket_path()).is_err() {
        assert!(Instant::now() < deadline, "n2's socket never appeared");
        std::thread::sleep(Duration::from_millis(5));
    }
    let early = run(
        {
            let mut c = n2.chorusctl();
            c.arg("status");
            c
        },
        Duration::from_secs(10),
    );
    let listener = Listener::on_node(&env, &n2, &group.name, "early").unwrap();

    // n1: the script's readiness check, then join and send at once.
    let mut status_codes = Vec::new();
    loop {
        let ran = run(
            {
                let mut c = n1.chorusctl();
                c.arg("status");
                c
            },
            Duration::from_secs(10),
        );
        status_codes.push(ran.code);
        if ran.code == Some(0) {
            assert!(ran.stdout.contains("(connected)"), "{ran:?}");
            break;
        }
        assert_eq!(ran.code, Some(69), "status before ready: {ran:?}");
        assert!(
            Instant::now() < deadline,
            "n1 never ready: {status_codes:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = run(
        {
            let mut c = n1.chorusctl();
            c.args(["send", &group.name, "first-time"]);
            c
        },
        BOUND + SLACK,
    );
    assert_eq!(sent.code, Some(0), "send right after status: {sent:?}");
    let got = listener.wait_messages(1, Duration::from_secs(10)).unwrap();
    assert_eq!(got[0].data.as_deref(), Some("first-time"));
    assert!(got[0].sender.starts_with("n1:"), "{:?}", got[0]);
    eprintln!(
        "n2 status when its listener joined: exit {:?} (69: it joined while registering); \
         n1 status polled {} times before it exited 0",
        early.code,
        status_codes.len()
    );
}

/// The directory frozen: requests that need it give up within the bound
/// with exit 69 and a message saying so; thawed, service resumes.
#[test]
fn a_frozen_directory_makes_send_and_groups_fail_within_the_bound_then_service_resumes() {
    let cluster =
        LoopbackCluster::start("ops_frozen_directory", "chat", 2, Duration::from_secs(90)).unwrap();
    let group = cluster.group.name.clone();
    let listener = cluster.listen(2, "watch").unwrap();
    listener
        .wait_view_with(&[cluster.node(2).member("watch")], Duration::from_secs(10))
        .unwrap();
    let pid = cluster.directory.process().pid();
    signal(pid, Signal::SIGSTOP);
    // Thaw on every way out, a failed assertion included.
    struct Thaw(u32);
    impl Drop for Thaw {
        fn drop(&mut self) {
            let _ = kill(Pid::from_raw(self.0 as i32), Signal::SIGCONT);
        }
    }
    let thaw = Thaw(pid);

    let send = {
        let mut c = cluster.node(1).chorusctl();
        c.args(["send", &group, "while-frozen"]);
        std::thread::spawn(move || run(c, BOUND + SLACK + SLACK))
    };
    let groups = {
        let mut c = cluster.node(1).chorusctl();
        c.arg("groups");
        std::thread::spawn(move || run(c, BOUND + SLACK + SLACK))
    };
    for (what, ran) in [
        ("send", send.join().unwrap()),
        ("groups", groups.join().unwrap()),
    ] {
        assert_eq!(
            ran.code,
            Some(69),
            "{what} with the directory frozen: {ran:?}"
        );
        assert!(
            ran.took >= BOUND - Duration::from_millis(500) && ran.took <= BOUND + SLACK,
            "{what} took {:?}",
            ran.took
        );
        assert!(
            ran.stderr.contains("directory unreachable") && ran.stderr.contains("did not answer"),
            "{what}: {}",
            ran.stderr
        );
    }

    drop(thaw);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ran = run(
            {
                let mut c = cluster.node(1).chorusctl();
                c.args(["send", &group, "after-thaw"]);
                c
            },
            BOUND + SLACK,
        );
        if ran.code == Some(0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no service after SIGCONT: {ran:?}"
        );
    }
    let got = listener.wait_messages(1, Duration::from_secs(10)).unwrap();
    let texts: Vec<_> = got.iter().filter_map(|m| m.data.as_deref()).collect();
    assert_eq!(texts, ["after-thaw"], "the frozen send was never accepted");
}

/// SIGHUP: chorusd keeps running and its members keep their groups; the
/// new log level applies, a key that takes a restart is named, a broken
/// file is logged and ignored.
#[test]
fn sighup_reloads_without_stopping_the_daemon_or_its_groups() {
    let cluster = LoopbackCluster::start("ops_sighup", "chat", 2, Duration::from_secs(60)).unwrap();
    let group = cluster.group.name.clone();
    let n1 = cluster.node(1);
    let on1 = cluster.listen(1, "stays").unwrap();
    let on2 = cluster.listen(2, "peer").unwrap();
    let both = [n1.member("stays"), cluster.node(2).member("peer")];
    let view = on2.wait_view_with(&both, Duration::from_secs(10)).unwrap();
    let log = n1.process().log_path().to_owned();

    // A new level and a new data port in the file.
    let text = std::fs::read_to_string(&n1.config_path).unwrap();
    let changed = text
        .lines()
        .map(|l| {
            if l.starts_with("log_level") {
                "log_level = \"warn\"".to_owned()
            } else if l.starts_with("data_port") {
                "data_port = 9".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&n1.config_path, changed).unwrap();
    signal(n1.process().pid(), Signal::SIGHUP);
    let line = wait_log_line(&log, Duration::from_secs(5), |l| {
        l.contains("SIGHUP") && l.contains("restart")
    });
    assert!(line.contains("data_port"), "{line}");
    assert!(
        !line.contains("log_level"),
        "log_level applies at once: {line}"
    );

    // A broken file: logged, ignored.
    std::fs::write(&n1.config_path, "node = [\n").unwrap();
    signal(n1.process().pid(), Signal::SIGHUP);
    wait_log_line(&log, Duration::from_secs(5), |l| {
        l.contains("SIGHUP") && l.contains("running configuration stays")
    });
    n1.process().ensure_running().unwrap();

    // Still a member, still delivering: no view change, a message each way.
    let sent = run(
        {
            let mut c = cluster.node(2).chorusctl();
            c.args(["send", &group, "--name", "after-hup", "after-hup"]);
            c
        },
        BOUND + SLACK,
    );
    assert_eq!(sent.code, Some(0), "{sent:?}");
    for l in [&on1, &on2] {
        let got = l.wait_messages(1, Duration::from_secs(10)).unwrap();
        assert_eq!(got[0].data.as_deref(), Some("after-hup"), "{}", l.label());
    }
    // Every view n1's member was told since it joined lists it, and the
    // peer's latest view still holds both.
    let seen = on1.snapshot();
    let views: Vec<_> = seen
        .events
        .iter()
        .filter_map(|e| match e {
            Event::View(v) => Some(v.clone()),
            Event::Message(_) => None,
            Event::Separated(s) => panic!("n1's member was separated: {s:?}"),
        })
        .collect();
    assert!(
        views.iter().all(|v| v.members.contains(&both[0])),
        "n1's member left a view: {views:?}"
    );
    let latest = on2.snapshot().latest_view().unwrap().clone();
    assert!(latest.view >= view.view, "{latest:?}");
    assert!(
        both.iter().all(|m| latest.members.contains(m)),
        "{latest:?}"
    );
    n1.process().ensure_running().unwrap();
}

/// The directory gone: `groups` and `send` exit 69 (the daemon is not
/// registered within the bound), and over those seconds the daemon logs a
/// handful of warnings, not one per reconnect attempt.
#[test]
fn with_the_directory_down_groups_exits_69_and_warnings_are_bounded() {
    let cluster =
        LoopbackCluster::start("ops_directory_down", "chat", 1, Duration::from_secs(60)).unwrap();
    let node = cluster.node(1);
    let log = node.process().log_path().to_owned();
    let before = warnings(&log).len();
    cluster.directory.process().kill();
    let start = Instant::now();

    let groups = {
        let mut c = node.chorusctl();
        c.arg("groups");
        std::thread::spawn(move || run(c, BOUND + SLACK + SLACK))
    };
    let send = {
        let mut c = node.chorusctl();
        c.args(["send", "chat", "nobody-hears"]);
        std::thread::spawn(move || run(c, BOUND + SLACK + SLACK))
    };
    for (what, ran) in [
        ("groups", groups.join().unwrap()),
        ("send", send.join().unwrap()),
    ] {
        assert_eq!(
            ran.code,
            Some(69),
            "{what} with the directory down: {ran:?}"
        );
        assert!(
            ran.stderr.contains("directory unreachable"),
            "{what}: {}",
            ran.stderr
        );
        assert!(ran.took <= BOUND + SLACK, "{what} took {:?}", ran.took);
    }
    let status = run(
        {
            let mut c = node.chorusctl();
            c.arg("status");
            c
        },
        Duration::from_secs(10),
    );
    assert_eq!(status.code, Some(69), "{status:?}");
    assert!(status.stdout.contains("not connected"), "{status:?}");

    // About 5 s of outage: at 4 attempts a second, the old daemon logged
    // 20 warnings. Now: the lost link, the first failure (one line: the
    // same outage), the joins that timed out.
    let elapsed = start.elapsed();
    let new: Vec<String> = warnings(&log).split_off(before);
    assert!(
        new.len() <= 4,
        "{} warnings in {elapsed:?}:\n{}",
        new.len(),
        new.join("\n")
    );
    eprintln!("warnings in {elapsed:?}:\n{}", new.join("\n"));
    let directory_lines = new.iter().filter(|l| l.contains("directory_link")).count();
    assert!(directory_lines <= 2, "{}", new.join("\n"));
    node.process().ensure_running().unwrap();
}
