//! The client library against the fake daemon.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::io::Write;
use std::os::unix::net::UnixListener;
use std::time::Duration;

use chorus::{
    Client, Error, ErrorCode, Event, Message, Order, ProtocolError, ViewInfo, SEND_WINDOW,
};
use chorus_proto::wire::app::{FromDaemon, ToDaemon};
use chorus_proto::wire::frame::write_frame;
use chorus_proto::wire::DecodeError;
use common::{FakeDaemon, TempDir, NODE, REJECTED_PAYLOAD};

fn view(group: &str, view: u64, members: &[&str]) -> Event {
    Event::View(ViewInfo {
        group: group.into(),
        view,
        members: members.iter().map(|m| format!("{NODE}:{m}")).collect(),
        sequencer: NODE.into(),
    })
}

fn message(sender: &str, order: Order, seq: u64, view: u64, payload: &[u8]) -> Event {
    Event::Message(Message {
        group: "chat".into(),
        view,
        sender: format!("{NODE}:{sender}"),
        order,
        seq,
        payload: payload.to_vec(),
    })
}

fn daemon_code(r: Result<impl std::fmt::Debug, Error>) -> ErrorCode {
    match r {
        Err(Error::Daemon { code, .. }) => code,
        other => panic!("expected a daemon refusal, got {other:?}"),
    }
}

#[test]
fn join_send_flush_and_recv_in_order() {
    let fake = FakeDaemon::start();
    let mut c = Client::connect(fake.path()).unwrap();
    c.join("chat", "w1").unwrap();
    c.send("chat", Order::Fifo, b"one").unwrap();
    c.send("chat", Order::Total, b"").unwrap();
    c.send("chat", Order::Safe, &[0xff, 0]).unwrap();
    c.flush().unwrap();
    assert_eq!(c.unanswered_sends(), 0);
    assert_eq!(c.recv().unwrap(), view("chat", 1, &["w1"]));
    assert_eq!(c.recv().unwrap(), message("w1", Order::Fifo, 1, 1, b"one"));
    assert_eq!(c.recv().unwrap(), message("w1", Order::Total, 2, 1, b""));
    assert_eq!(
        c.recv().unwrap(),
        message("w1", Order::Safe, 3, 1, &[0xff, 0])
    );
    c.leave("chat").unwrap();
    assert_eq!(
        fake.requests().last(),
        Some(&ToDaemon::Leave {
            request: 5,
            group: "chat".into()
        })
    );
}

#[test]
fn sends_are_pipelined_up_to_the_window() {
    // The fake answers no send until SEND_WINDOW of them are unanswered: a
    // client that waited for each Ok would hang, one that ignored the window
    // would exceed it.
    let fake = FakeDaemon::start_with(Some(SEND_WINDOW));
    let mut c = Client::connect(fake.path()).unwrap();
    c.join("chat", "w1").unwrap();
    c.discard_events(true);
    let total = 4 * SEND_WINDOW;
    let mut most_unanswered = 0;
    for i in 0..total {
        c.send("chat", Order::Total, i.to_string().as_bytes())
            .unwrap();
        most_unanswered = most_unanswered.max(c.unanswered_sends());
    }
    c.flush().unwrap();
    assert_eq!(most_unanswered, SEND_WINDOW);
    assert_eq!(fake.max_held(), SEND_WINDOW);
    let sent: Vec<Vec<u8>> = fake
        .requests()
        .into_iter()
        .filter_map(|r| match r {
            ToDaemon::Send { payload, .. } => Some(payload),
            _ => None,
        })
        .collect();
    let expected: Vec<Vec<u8>> = (0..total).map(|i| i.to_string().into_bytes()).collect();
    assert_eq!(sent, expected);
    // Discarded events are not queued.
    assert_eq!(c.recv_timeout(Duration::ZERO).unwrap(), None);
}

#[test]
fn large_sends_are_bounded_by_the_byte_window() {
    let payload = vec![1u8; 1 << 20];
    let per_window = chorus::SEND_WINDOW_BYTES / payload.len();
    let fake = FakeDaemon::start_with(Some(per_window));
    let mut c = Client::connect(fake.path()).unwrap();
    c.join("chat", "w1").unwrap();
    c.discard_events(true);
    let mut most_unanswered = 0;
    for _ in 0..3 * per_window {
        c.send("chat", Order::Total, &payload).unwrap();
        most_unanswered = most_unanswered.max(c.unanswered_sends());
    }
    c.flush().unwrap();
    assert_eq!(most_unanswered, per_window);
    assert_eq!(fake.max_held(), per_window);
}

#[test]
fn a_refused_send_is_reported_by_flush_and_the_session_goes_on() {
    let fake = FakeDaemon::start();
    let mut c = Client::connect(fake.path()).unwrap();
    c.join("chat", "w1").unwrap();
    c.send("chat", Order::Total, REJECTED_PAYLOAD).unwrap();
    c.send("chat", Order::Total, b"fine").unwrap();
    assert_eq!(daemon_code(c.flush()), ErrorCode::Refused);
    assert_eq!(c.unanswered_sends(), 0);
    c.send("chat", Order::Total, b"after").unwrap();
    c.flush().unwrap();
    assert_eq!(c.recv().unwrap(), view("chat", 1, &["w1"]));
    assert_eq!(
        c.recv().unwrap(),
        message("w1", Order::Total, 1, 1, b"fine")
    );
    assert_eq!(
        c.recv().unwrap(),
        message("w1", Order::Total, 2, 1, b"after")
    );
}

#[test]
fn a_refusal_read_during_another_call_is_returned_by_the_next_call() {
    let fake = FakeDaemon::start();
    let mut c = Client::connect(fake.path()).unwrap();
    c.join("chat", "w1").unwrap();
    c.send("chat", Order::Total, REJECTED_PAYLOAD).unwrap();
    // The refusal arrives before the status reply; status itself succeeds.
    assert_eq!(c.status().unwrap().node, NODE);
    let before = fake.requests().len();
    assert_eq!(daemon_code(c.groups()), ErrorCode::Refused);
    assert_eq!(
        fake.requests().len(),
        before,
        "the refused call sent nothing"
    );
    assert_eq!(c.groups().unwrap().len(), 2);
}

#[test]
fn daemon_refusals_of_requests_are_errors() {
    let fake = FakeDaemon::start();
    let mut a = Client::connect(fake.path()).unwrap();
    let mut b = Client::connect(fake.path()).unwrap();
    a.join("chat", "same").unwrap();
    assert_eq!(daemon_code(b.join("chat", "same")), ErrorCode::Refused);
    assert_eq!(daemon_code(b.members("nope")), ErrorCode::NoSuchGroup);
    assert_eq!(daemon_code(b.leave("chat")), ErrorCode::NoSuchGroup);
    b.send("chat", Order::Fifo, b"not joined").unwrap();
    assert_eq!(daemon_code(b.flush()), ErrorCode::BadRequest);
    // b is still usable.
    b.join("chat", "other").unwrap();
}

#[test]
fn events_arriving_during_a_call_are_queued_for_recv() {
    let fake = FakeDaemon::start();
    let mut a = Client::connect(fake.path()).unwrap();
    a.join("chat", "a").unwrap();
    let mut b = Client::connect(fake.path()).unwrap();
    b.join("chat", "b").unwrap();
    b.send("chat", Order::Total, b"x").unwrap();
    b.flush().unwrap(); // the fake queued the message to a before b's Ok
    let v = a.members("chat").unwrap();
    assert_eq!(v.members, ["host-a:a", "host-a:b"]);
    assert_eq!(a.recv().unwrap(), view("chat", 1, &["a"]));
    assert_eq!(a.recv().unwrap(), view("chat", 2, &["a", "b"]));
    assert_eq!(a.recv().unwrap(), message("b", Order::Total, 1, 2, b"x"));
}

#[test]
fn recv_timeout_waits_only_so_long() {
    let fake = FakeDaemon::start();
    let mut a = Client::connect(fake.path()).unwrap();
    a.join("chat", "a").unwrap();
    assert_eq!(
        a.recv_timeout(common::PATIENCE).unwrap(),
        Some(view("chat", 1, &["a"]))
    );
    // Nothing else is on its way: a zero timeout polls, a short one expires.
    assert_eq!(a.recv_timeout(Duration::ZERO).unwrap(), None);
    assert_eq!(a.recv_timeout(Duration::from_millis(30)).unwrap(), None);
    let mut b = Client::connect(fake.path()).unwrap();
    b.join("chat", "b").unwrap();
    assert_eq!(
        a.recv_timeout(common::PATIENCE).unwrap(),
        Some(view("chat", 2, &["a", "b"]))
    );
    // After a timed receive, blocking calls still work.
    b.send("chat", Order::Fifo, b"y").unwrap();
    b.flush().unwrap();
    assert_eq!(a.recv().unwrap(), message("b", Order::Fifo, 1, 2, b"y"));
}

#[test]
fn status_groups_and_members_mirror_the_replies() {
    let fake = FakeDaemon::start();
    let mut c = Client::connect(fake.path()).unwrap();
    c.join("chat", "w").unwrap();
    let s = c.status().unwrap();
    assert_eq!(
        (s.node.as_str(), s.node_id, s.incarnation, s.connected),
        (NODE, 1, 77, true)
    );
    assert_eq!((s.groups, s.members), (1, 1));
    let g = c.groups().unwrap();
    assert_eq!(g[0].name, "chat");
    assert_eq!(g[0].address, "239.192.0.10:7410");
    assert_eq!((g[0].view, g[0].members, g[0].local), (1, 1, true));
    assert_eq!((g[1].name.as_str(), g[1].local), ("news", false));
    let v = c.members("chat").unwrap();
    assert_eq!(
        Event::View(v),
        view("chat", 1, &["w"]),
        "members replies like a view"
    );
}

#[test]
fn a_closed_daemon_ends_the_session() {
    let fake = FakeDaemon::start();
    let mut c = Client::connect(fake.path()).unwrap();
    c.join("chat", "w").unwrap();
    assert!(matches!(c.recv(), Ok(Event::View(_))));
    fake.disconnect_all();
    assert!(matches!(c.recv(), Err(Error::Closed)));
    assert!(matches!(c.status(), Err(Error::Closed)));
}

#[test]
fn arguments_the_wire_cannot_carry_are_refused_locally() {
    let fake = FakeDaemon::start();
    let mut c = Client::connect(fake.path()).unwrap();
    let long = "x".repeat(256);
    assert!(matches!(c.join(&long, "w"), Err(Error::Invalid(_))));
    assert!(matches!(c.join("chat", &long), Err(Error::Invalid(_))));
    c.join("chat", "w").unwrap();
    let huge = vec![0u8; chorus_proto::wire::app::APP_FRAME_MAX_BYTES];
    assert!(matches!(
        c.send("chat", Order::Total, &huge),
        Err(Error::Invalid(_))
    ));
    assert_eq!(c.unanswered_sends(), 0);
    c.send("chat", Order::Total, b"ok").unwrap();
    c.flush().unwrap();
    let sends = fake
        .requests()
        .into_iter()
        .filter(|r| matches!(r, ToDaemon::Send { .. }))
        .count();
    assert_eq!(sends, 1, "nothing of the refused send reached the daemon");
}

#[test]
fn connect_names_the_missing_socket() {
    let dir = TempDir::new();
    let path = dir.0.join("absent.sock");
    match Client::connect(&path) {
        Err(e @ Error::Connect { .. }) => {
            assert!(e.to_string().contains(path.to_str().unwrap()), "{e}")
        }
        other => panic!("expected Connect, got {other:?}"),
    }
}

#[test]
fn connect_default_follows_the_environment() {
    // The only test in this binary that reads CHORUS_SOCKET.
    let fake = FakeDaemon::start();
    std::env::set_var(chorus::SOCKET_ENV, fake.path());
    assert_eq!(chorus::default_socket_path(), fake.path());
    let mut c = Client::connect_default().unwrap();
    assert_eq!(c.status().unwrap().node, NODE);
    std::env::set_var(chorus::SOCKET_ENV, "");
    assert_eq!(
        chorus::default_socket_path(),
        std::path::Path::new(chorus::DEFAULT_SOCKET)
    );
    std::env::remove_var(chorus::SOCKET_ENV);
}

/// A daemon that answers the first request with `reply` (raw frame body).
fn raw_daemon(dir: &TempDir, reply: Vec<u8>) -> std::path::PathBuf {
    let path = dir.0.join("raw.sock");
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut out = Vec::new();
        write_frame(&mut out, |b| b.extend_from_slice(&reply));
        s.write_all(&out).unwrap();
        // Keep the stream open until the client is done.
        let _ = std::io::Read::read(&mut s, &mut [0u8; 1]);
    });
    path
}

#[test]
fn garbage_from_the_daemon_is_a_protocol_error() {
    let dir = TempDir::new();
    let path = raw_daemon(&dir, vec![0xde, 0xad, 1, 101, 0, 0, 0, 1]);
    let mut c = Client::connect(path).unwrap();
    assert!(matches!(
        c.status(),
        Err(Error::Protocol(ProtocolError::Decode(
            DecodeError::BadMagic(0xdead)
        )))
    ));
    assert!(matches!(c.status(), Err(Error::Closed)));
}

#[test]
fn a_reply_to_no_request_is_a_protocol_error() {
    let dir = TempDir::new();
    let mut body = Vec::new();
    FromDaemon::Ok { request: 999 }.encode(&mut body);
    let path = raw_daemon(&dir, body);
    let mut c = Client::connect(path).unwrap();
    assert!(matches!(
        c.recv(),
        Err(Error::Protocol(ProtocolError::Unexpected(_)))
    ));
}

#[test]
fn stats_reports_the_daemons_counters_and_groups() {
    let fake = FakeDaemon::start();
    let mut c = Client::connect(fake.path()).unwrap();
    c.join("chat", "w1").unwrap();
    c.discard_events(true);
    for _ in 0..4 {
        c.send("chat", Order::Total, b"x").unwrap();
    }
    // No flush: stats() waits behind the sends, whose replies come first.
    let s = c.stats().unwrap();
    assert_eq!(c.unanswered_sends(), 0);
    assert_eq!(s.messages_accepted, 4);
    assert_eq!(s.groups.len(), 1);
    assert_eq!(s.groups[0].name, "chat");
    assert_eq!(s.groups[0].view, 1);
    assert!(s.groups[0].sequencer);
    assert_eq!(
        fake.requests().last(),
        Some(&ToDaemon::Stats { request: 6 })
    );
}
