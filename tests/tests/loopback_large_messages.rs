//! Large messages end to end: three daemons on loopback (`[tuning]
//! max_message_bytes` = 16 MiB), `chorusctl send` writes a 1 MiB line and a
//! 16 MiB line; members on the two other nodes and on the sender's node
//! deliver both whole, byte for byte, in the same order, and a line past
//! the limit is refused with a clear error and delivers nothing.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use chorus::{Client, Event};
use chorus_tests::loopback::LoopbackCluster;

const MIB: usize = 1 << 20;

/// A line of `len` printable bytes (no newline) that differs from any
/// other line of another length or seed at most places.
fn line(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| b'a' + ((i * 7 + i / 4093 + seed as usize) % 26) as u8)
        .collect()
}

fn joined(client: &mut Client, group: &str, name: &str, deadline: Instant) {
    client.join(group, name).unwrap();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.recv_timeout(left).unwrap() {
            Some(Event::View(v)) if v.members.iter().any(|m| m.ends_with(name)) => return,
            Some(_) => {}
            None => panic!("{name}: no view with it before the deadline"),
        }
    }
}

/// The next `n` messages' (seq, payload).
fn messages(client: &mut Client, n: usize, deadline: Instant) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.recv_timeout(left).unwrap() {
            Some(Event::Message(m)) => out.push((m.seq, m.payload)),
            Some(_) => {}
            None => panic!("only {} of {n} messages before the deadline", out.len()),
        }
    }
    out
}

/// `chorusctl send GROUP --name NAME` on daemon `k`, fed `lines` on stdin.
fn send_lines(
    cluster: &LoopbackCluster,
    k: usize,
    group: &str,
    name: &str,
    lines: &[&[u8]],
) -> std::process::Output {
    let mut child = cluster
        .node(k)
        .chorusctl()
        .args(["send", group, "--name", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        for l in lines {
            stdin.write_all(l).unwrap();
            stdin.write_all(b"\n").unwrap();
        }
    }
    child.wait_with_output().unwrap()
}

#[test]
fn loopback_large_messages() {
    let cluster = LoopbackCluster::start_with_max_message(
        "loopback_large_messages",
        "big",
        3,
        Duration::from_secs(240),
        16 * MIB,
    )
    .unwrap();
    let group = cluster.group.name.clone();
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut members: Vec<Client> = (1..=3)
        .map(|k| Client::connect(cluster.node(k).socket_path()).unwrap())
        .collect();
    for (k, c) in members.iter_mut().enumerate() {
        joined(c, &group, &format!("m{}", k + 1), deadline);
    }

    let one = line(MIB, 1);
    let sixteen = line(16 * MIB, 2);
    let out = send_lines(&cluster, 1, &group, "big-sender", &[&one, &sixteen]);
    assert!(out.status.success(), "chorusctl send: {out:?}");

    let mut seen = Vec::new();
    for (k, c) in members.iter_mut().enumerate() {
        let got = messages(c, 2, deadline);
        assert_eq!(got[0].1.len(), one.len(), "member m{} 1 MiB", k + 1);
        assert!(
            got[0].1 == one,
            "member m{}: the 1 MiB message altered",
            k + 1
        );
        assert_eq!(got[1].1.len(), sixteen.len(), "member m{} 16 MiB", k + 1);
        assert!(
            got[1].1 == sixteen,
            "member m{}: the 16 MiB message altered",
            k + 1
        );
        seen.push((got[0].0, got[1].0));
    }
    assert!(
        seen.windows(2).all(|w| w[0] == w[1]),
        "the same positions everywhere: {seen:?}"
    );

    // Past the limit: refused, with the reason, and nothing delivered.
    let too_big = line(16 * MIB + 1, 3);
    let out = send_lines(&cluster, 2, &group, "too-big", &[&too_big, b"small"]);
    assert!(!out.status.success(), "a 16 MiB + 1 line must be refused");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("16 MiB") || err.contains("16777216"), "{err}");
    // The only delivery after it, if any, is the small line.
    for c in members.iter_mut() {
        if let Some(Event::Message(m)) = c.recv_timeout(Duration::from_millis(500)).unwrap() {
            assert_eq!(m.payload, b"small", "nothing of the refused line");
        }
    }
}
