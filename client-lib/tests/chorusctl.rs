//! The chorusctl binary against the fake daemon: the contract's output and exit codes.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc;

use chorus::{Client, Event, Message, Order};
use chorus_proto::wire::app::ToDaemon;
use common::{FakeDaemon, TempDir, NODE, PATIENCE};

fn ctl(socket: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_chorusctl"));
    c.env_remove(chorus::SOCKET_ENV).arg("--socket").arg(socket);
    c
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap()
}

fn stdout_lines(out: &Output) -> Vec<String> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

/// A running chorusctl whose stdout lines are read as they come; killed on drop.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

/// How a chorusctl run ended.
#[derive(Debug)]
struct Finished {
    code: Option<i32>,
    stderr: String,
    /// Lines printed after the last one the test read.
    rest: Vec<String>,
}

impl Running {
    fn spawn(cmd: &mut Command) -> Running {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        Running {
            child,
            lines: read_lines(stdout),
        }
    }

    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(PATIENCE)
            .expect("chorusctl printed no further line")
    }

    fn finish(mut self) -> Finished {
        let status = self.child.wait().unwrap();
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            e.read_to_string(&mut stderr).unwrap();
        }
        // The reader thread ends at end of file, closing the channel.
        let rest = self.lines.iter().collect();
        Finished {
            code: status.code(),
            stderr,
            rest,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Forwards stdout lines to a channel.
fn read_lines(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

fn is_leave_of(group: &'static str) -> impl Fn(&ToDaemon) -> bool {
    move |r| matches!(r, ToDaemon::Leave { group: g, .. } if g == group)
}

#[test]
fn listen_json_prints_views_and_messages_and_stops_after_count() {
    let fake = FakeDaemon::start();
    let listen = Running::spawn(ctl(fake.path()).args([
        "listen",
        "chat",
        "--json",
        "--count",
        "2",
        "--name",
        "listen-77",
    ]));
    assert_eq!(
        listen.next_line(),
        r#"{"event":"view","group":"chat","view":1,"members":["host-a:listen-77"],"sequencer":"host-a"}"#
    );
    let mut w = Client::connect(fake.path()).unwrap();
    w.join("chat", "worker-1").unwrap();
    assert_eq!(
        listen.next_line(),
        r#"{"event":"view","group":"chat","view":2,"members":["host-a:listen-77","host-a:worker-1"],"sequencer":"host-a"}"#
    );
    w.send("chat", Order::Total, b"hello").unwrap();
    w.send("chat", Order::Fifo, &[0xff, 0x00, 0x01]).unwrap();
    w.send("chat", Order::Safe, b"beyond the count").unwrap();
    w.flush().unwrap();
    assert_eq!(
        listen.next_line(),
        r#"{"event":"message","group":"chat","view":2,"sender":"host-a:worker-1","order":"total","seq":1,"data":"hello"}"#
    );
    assert_eq!(
        listen.next_line(),
        r#"{"event":"message","group":"chat","view":2,"sender":"host-a:worker-1","order":"fifo","seq":2,"data_base64":"/wAB"}"#
    );
    let end = listen.finish();
    assert_eq!(end.code, Some(0), "{end:?}");
    assert!(end.rest.is_empty(), "printed past --count: {end:?}");
    assert_eq!(end.stderr, "");
    fake.wait_for_request("the listener's leave", is_leave_of("chat"));
    // The listener left: the worker sees a view without it.
    let mut views = Vec::new();
    while let Some(e) = w.recv_timeout(PATIENCE).unwrap() {
        if let Event::View(v) = e {
            views.push(v.members.clone());
            if v.members == ["host-a:worker-1"] {
                break;
            }
        }
    }
    assert_eq!(views.last().unwrap(), &["host-a:worker-1"]);
}

#[test]
fn listen_human_output_is_one_line_per_event() {
    let fake = FakeDaemon::start();
    let listen = Running::spawn(ctl(fake.path()).args(["listen", "chat", "--count", "1"]));
    let first = listen.next_line();
    let pid = listen.child.id();
    assert_eq!(
        first,
        format!("view chat 1 sequencer=host-a members=host-a:listen-{pid}")
    );
    let mut w = Client::connect(fake.path()).unwrap();
    w.join("chat", "w").unwrap();
    assert_eq!(
        listen.next_line(),
        format!("view chat 2 sequencer=host-a members=host-a:listen-{pid},host-a:w")
    );
    w.send("chat", Order::Total, b"hi there").unwrap();
    w.flush().unwrap();
    assert_eq!(listen.next_line(), "chat #1 host-a:w: hi there");
    assert_eq!(listen.finish().code, Some(0));
}

#[test]
fn listen_exits_quietly_when_stdout_closes() {
    let fake = FakeDaemon::start();
    let mut child = ctl(fake.path())
        .args(["listen", "chat", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.starts_with(r#"{"event":"view""#), "{first}");
    // Close the read end: the next line chorusctl prints meets a broken pipe.
    drop(stdout);
    let mut w = Client::connect(fake.path()).unwrap();
    w.join("chat", "w").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    fake.wait_for_request("the listener's leave", is_leave_of("chat"));
}

/// A member of "chat" that collects what chorusctl send delivers.
fn collect_sent(fake: &FakeDaemon, run_send: impl FnOnce()) -> Vec<Message> {
    let mut r = Client::connect(fake.path()).unwrap();
    r.join("chat", "reader").unwrap();
    run_send();
    // chorusctl left after flushing; its departure view ends the collection.
    let mut got = Vec::new();
    loop {
        match r.recv_timeout(PATIENCE).unwrap().expect("an event") {
            Event::Message(m) => got.push(m),
            Event::View(v) if v.view > 1 && v.members == ["host-a:reader"] => return got,
            Event::View(_) => {}
            Event::Separated(s) => panic!("separated: {s:?}"),
        }
    }
}

#[test]
fn send_sends_each_argument_and_leaves() {
    let fake = FakeDaemon::start();
    let got = collect_sent(&fake, || {
        let out = run(ctl(fake.path()).args([
            "send",
            "chat",
            "--order",
            "safe",
            "--name",
            "s1",
            "one",
            "two words",
        ]));
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert!(out.stdout.is_empty());
    });
    let summary: Vec<(String, Order, Vec<u8>)> = got
        .into_iter()
        .map(|m| (m.sender, m.order, m.payload))
        .collect();
    let s1 = format!("{NODE}:s1");
    assert_eq!(
        summary,
        [
            (s1.clone(), Order::Safe, b"one".to_vec()),
            (s1, Order::Safe, b"two words".to_vec()),
        ]
    );
}

#[test]
fn send_without_messages_sends_stdin_lines_in_total_order() {
    let fake = FakeDaemon::start();
    let got = collect_sent(&fake, || {
        let mut child = ctl(fake.path())
            .args(["send", "chat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"l1\nl2\n\n\xffbin\nlast").unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
    });
    let payloads: Vec<Vec<u8>> = got.iter().map(|m| m.payload.clone()).collect();
    assert_eq!(
        payloads,
        [&b"l1"[..], b"l2", b"", b"\xffbin", b"last"].map(<[u8]>::to_vec)
    );
    assert!(got.iter().all(|m| m.order == Order::Total));
    assert!(got.iter().all(|m| m.sender.starts_with("host-a:send-")));
}

#[test]
fn a_16_mib_stdin_line_is_sent_whole_and_listen_prints_it() {
    const LINE: usize = 16 << 20;
    let fake = FakeDaemon::start();
    let listen = Running::spawn(ctl(fake.path()).args(["listen", "chat", "--count", "1"]));
    assert!(listen.next_line().starts_with("view chat 1 "));
    let mut child = ctl(fake.path())
        .args(["send", "chat", "--name", "big"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let mut text = vec![b'x'; LINE];
        text[LINE - 1] = b'y';
        text.extend_from_slice(b"\nshort\n");
        stdin.write_all(&text).unwrap();
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let sent: Vec<usize> = fake
        .requests()
        .iter()
        .filter_map(|r| match r {
            ToDaemon::Send { payload, .. } => Some(payload.len()),
            _ => None,
        })
        .collect();
    assert_eq!(sent, [LINE, 5], "the long line went whole, in one message");
    // The view with the sender, then the 16 MiB message on one line.
    assert!(listen.next_line().starts_with("view chat 2 "));
    let printed = listen.next_line();
    let prefix = "chat #1 host-a:big: ";
    assert_eq!(printed.len(), prefix.len() + LINE);
    assert!(printed.starts_with(prefix));
    assert!(printed.ends_with("xxy"));
    assert_eq!(listen.finish().code, Some(0));
}

#[test]
fn a_stdin_line_over_16_mib_is_refused_naming_it() {
    let fake = FakeDaemon::start();
    let mut child = ctl(fake.path())
        .args(["send", "chat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let mut text = b"first\n".to_vec();
        text.extend_from_slice(&vec![b'x'; (16 << 20) + 1]);
        text.push(b'\n');
        // chorusctl may stop reading once the line is too long.
        let _ = stdin.write_all(&text);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2 is longer than 16777216 bytes"),
        "{err}"
    );
    // The line before was buffered; chorusctl writes it out as it ends.
    fake.wait_for_request(
        "the first line",
        |r| matches!(r, ToDaemon::Send { payload, .. } if payload == b"first"),
    );
    let sends: Vec<Vec<u8>> = fake
        .requests()
        .into_iter()
        .filter_map(|r| match r {
            ToDaemon::Send { payload, .. } => Some(payload),
            _ => None,
        })
        .collect();
    assert_eq!(
        sends,
        [b"first".to_vec()],
        "nothing of the long line was sent"
    );
}

#[test]
fn send_refused_by_the_daemon_exits_1() {
    let fake = FakeDaemon::start();
    let out = run(ctl(fake.path()).args(["send", "chat", "ok", "reject"]));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rejected by the fake"), "{err}");
}

#[test]
fn status_groups_and_members_json() {
    let fake = FakeDaemon::start();
    let mut w = Client::connect(fake.path()).unwrap();
    w.join("chat", "worker-1").unwrap();

    let out = run(ctl(fake.path()).args(["status", "--json"]));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        stdout_lines(&out),
        [
            r#"{"node":"host-a","node_id":1,"incarnation":77,"directory":"127.0.0.1:7400","connected":true,"groups":1,"members":1,"version":"0.1.0-fake"}"#
        ]
    );

    let out = run(ctl(fake.path()).args(["groups", "--json"]));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        stdout_lines(&out),
        [
            r#"{"group":"chat","address":"239.192.0.10:7410","view":1,"members":1,"local":true}"#,
            r#"{"group":"news","address":"239.192.0.11:7410","view":0,"members":0,"local":false}"#,
        ]
    );

    let out = run(ctl(fake.path()).args(["members", "chat", "--json"]));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        stdout_lines(&out),
        [r#"{"group":"chat","view":1,"members":["host-a:worker-1"],"sequencer":"host-a"}"#]
    );
}

#[test]
fn status_groups_and_members_human() {
    let fake = FakeDaemon::start();
    let mut w = Client::connect(fake.path()).unwrap();
    w.join("chat", "worker-1").unwrap();
    let out = run(ctl(fake.path()).arg("status"));
    assert_eq!(
        stdout_lines(&out),
        [
            "node       host-a (id 1, incarnation 77)",
            "directory  127.0.0.1:7400 (connected)",
            "groups     1",
            "members    1",
            "version    0.1.0-fake",
        ]
    );
    let out = run(ctl(fake.path()).arg("groups"));
    assert_eq!(
        stdout_lines(&out),
        [
            "GROUP  ADDRESS            VIEW  MEMBERS  LOCAL",
            "chat   239.192.0.10:7410  1     1        yes",
            "news   239.192.0.11:7410  0     0        no",
        ]
    );
    let out = run(ctl(fake.path()).args(["members", "chat"]));
    assert_eq!(
        stdout_lines(&out),
        [
            "group      chat",
            "view       1",
            "sequencer  host-a",
            "members    host-a:worker-1",
        ]
    );
}

#[test]
fn stats_json_and_human() {
    let fake = FakeDaemon::start();
    let mut w = Client::connect(fake.path()).unwrap();
    w.join("chat", "worker-1").unwrap();
    w.discard_events(true);
    for m in ["a", "b", "c"] {
        w.send("chat", Order::Total, m.as_bytes()).unwrap();
    }
    w.flush().unwrap();

    let out = run(ctl(fake.path()).args(["stats", "--json"]));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let lines = stdout_lines(&out);
    assert_eq!(lines.len(), 1, "one JSON object: {lines:?}");
    let json: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(json["messages_accepted"], 3, "{json}");
    assert_eq!(json["messages_delivered"], 3, "{json}");
    for key in [
        "datagrams_in",
        "bytes_in",
        "datagrams_out",
        "bytes_out",
        "malformed_in",
        "naks_sent",
        "naks_received",
        "retransmits",
        "tail_probes",
        "window_decreases",
        "dropped_other_cluster",
        "dropped_no_group",
        "dropped_duplicate",
        "dropped_beyond_window",
        "dropped_before_base",
        "sessions_dropped_slow",
        "refused_unauthentic",
        "refused_replayed",
    ] {
        assert_eq!(json[key], 0, "{key}: {json}");
    }
    assert_eq!(
        json["groups"],
        serde_json::json!([{"group":"chat","view":1,"sequencer":true,"queued":0,
            "in_flight_bytes":0,"window_bytes":65536,"window_cap_bytes":131072}])
    );

    let out = run(ctl(fake.path()).arg("stats"));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let lines = stdout_lines(&out);
    assert!(
        lines.contains(&"messages accepted   3".to_owned()),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("drops ") && l.ends_with("before base 0, slow sessions 0")),
        "{lines:?}"
    );
    assert_eq!(
        lines[lines.len() - 2..],
        [
            "GROUP  VIEW  SEQUENCER  QUEUED  IN-FLIGHT B  WINDOW B  CAP B",
            "chat   1     yes        0       0            65536     131072",
        ]
    );
}

#[test]
fn members_of_an_unknown_group_exits_1() {
    let fake = FakeDaemon::start();
    let out = run(ctl(fake.path()).args(["members", "nope", "--json"]));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such group"));
}

#[test]
fn a_missing_socket_exits_69_naming_it() {
    let dir = TempDir::new();
    let path = dir.0.join("nobody-here.sock");
    for args in [
        &["status"][..],
        &["stats", "--json"],
        &["listen", "chat", "--json"],
        &["send", "chat", "x"],
    ] {
        let out = run(ctl(&path).args(args));
        assert_eq!(out.status.code(), Some(69), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(path.to_str().unwrap()), "{err}");
        assert!(err.contains("CHORUS_SOCKET"), "{err}");
        assert!(err.contains("chorusd --dev"), "{err}");
    }
}

#[test]
fn the_socket_comes_from_chorus_socket_without_the_option() {
    let fake = FakeDaemon::start();
    let out = Command::new(env!("CARGO_BIN_EXE_chorusctl"))
        .env(chorus::SOCKET_ENV, fake.path())
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout_lines(&out)[0].starts_with(r#"{"node":"host-a","#));
    // --socket wins over the environment.
    let dir = TempDir::new();
    let out = Command::new(env!("CARGO_BIN_EXE_chorusctl"))
        .env(chorus::SOCKET_ENV, fake.path())
        .arg("--socket")
        .arg(dir.0.join("absent.sock"))
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(69), "{out:?}");
}

#[test]
fn an_unreachable_directory_exits_69_and_status_says_not_connected() {
    let fake = FakeDaemon::start();
    fake.set_directory_down(true);
    for args in [
        &["groups"][..],
        &["groups", "--json"],
        &["send", "chat", "x"],
        &["listen", "chat", "--count", "1"],
    ] {
        let out = run(ctl(fake.path()).args(args));
        assert_eq!(out.status.code(), Some(69), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("directory unreachable"), "{args:?}: {err}");
    }
    // status prints what it knows, and exits 69 until the daemon can serve
    // joins: what a start-up script waits for.
    let out = run(ctl(fake.path()).arg("status"));
    assert_eq!(out.status.code(), Some(69), "{out:?}");
    assert!(stdout_lines(&out)
        .iter()
        .any(|l| l == "directory  127.0.0.1:7400 (not connected)"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not connected to its directory"), "{err}");
    let out = run(ctl(fake.path()).args(["status", "--json"]));
    assert_eq!(out.status.code(), Some(69), "{out:?}");
    assert!(stdout_lines(&out)[0].contains(r#""connected":false"#));
    fake.set_directory_down(false);
    let out = run(ctl(fake.path()).arg("status"));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = run(ctl(fake.path()).args(["send", "chat", "x"]));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn a_leave_the_directory_does_not_answer_after_the_work_is_done_is_a_warning() {
    let fake = FakeDaemon::start();
    fake.set_leave_unavailable(true);
    let out = run(ctl(fake.path()).args(["send", "chat", "accepted"]));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: leaving chat: directory unreachable"),
        "{err}"
    );
    assert!(fake
        .requests()
        .iter()
        .any(|r| matches!(r, ToDaemon::Send { payload, .. } if payload == b"accepted")));
}

#[test]
fn usage_errors_exit_2() {
    let dir = TempDir::new();
    let path = dir.0.join("unused.sock");
    for args in [
        &["send"][..],
        &["send", "chat", "--order", "sorted", "x"],
        &["listen", "chat", "--count", "many"],
        &["frobnicate"],
        &[],
    ] {
        let out = run(ctl(&path).args(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
    for args in [&["--help"][..], &["--version"], &["listen", "--help"]] {
        let out = run(ctl(&path).args(args));
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        assert!(!out.stdout.is_empty());
    }
}
