//! An attacker on the cluster's network (issue 14), with real parts: three
//! keyed daemons in namespace hosts 1-3, and a fourth host that holds no key.
//! - Every datagram the hosts send is captured on the bridge while they
//!   deliver numbered messages: no payload is on the wire in clear, and
//!   every datagram is sealed (magic, version, the sealed kind).
//! - From host 4 every captured datagram is sent twice more and in altered
//!   forms (bits flipped, tag cut off): the daemons count them refused as
//!   replays and as unauthentic, answer none of the NAKs among them, and
//!   every listener still delivers the same messages, each once.
//! - A daemon in host 4 with another cluster key never registers: it is in
//!   no view, and its member is told nothing.
//! - A TCP client in host 4 that says Hello in clear gets no view, no group
//!   and no node names from the directory.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use chorus_proto::wire::seal::{ClusterKey, KIND_SEALED};
use chorus_proto::wire::{MAGIC, VERSION};
use chorus_tests::bins::bins;
use chorus_tests::client::{numbered_payloads, SendProc};
use chorus_tests::listener::Listener;
use chorus_tests::netns;
use chorus_tests::netns_cluster::{NetnsCluster, DATA_PORT, DIRECTORY_PORT};
use chorus_tests::stats::ClusterStats;
use chorus_tests::wiretap::read_capture;

const DAEMONS: usize = 3;
/// The outsider's host.
const OUTSIDER: usize = 4;
const PER_SENDER: usize = 300;
/// In every payload: what must never be seen on the wire.
const MARKER: &str = "SECRET-PAYLOAD";

fn wiretap() -> &'static str {
    env!("CARGO_BIN_EXE_chorus-wiretap")
}

/// Sends `PER_SENDER` numbered messages from every daemon at once, tagged
/// `round`, and waits until every listener delivered all of them.
fn send_round(cluster: &NetnsCluster, listeners: &[Listener], round: &str, expect_total: usize) {
    let mut senders = Vec::new();
    for k in 1..=DAEMONS {
        let lines = numbered_payloads(&format!("{MARKER}-{round}-n{k}"), PER_SENDER);
        senders.push(
            SendProc::on_node(
                cluster.env(),
                cluster.node(k),
                &cluster.group.name,
                &format!("s{k}"),
                &[],
                lines,
            )
            .unwrap(),
        );
    }
    for s in senders {
        s.finish(Duration::from_secs(60)).unwrap();
    }
    for l in listeners {
        l.wait_messages(expect_total, Duration::from_secs(60))
            .unwrap();
    }
}

#[test]
fn netns_trust() {
    let Some(tools) = netns::require() else {
        return;
    };
    let started = Instant::now();
    let cluster = NetnsCluster::start_with_spares(
        &tools,
        "netns_trust",
        "chat",
        DAEMONS,
        1,
        Duration::from_secs(240),
    )
    .unwrap();
    let env = cluster.env();
    let stage = |what: &str| {
        eprintln!(
            "netns_trust: {:.1} s: {what}",
            started.elapsed().as_secs_f64()
        )
    };
    let outsider_addr = cluster.topology.host(OUTSIDER).addr;

    // The tap on the bridge, running before anything is sent.
    let capture = env.path("wire.cap");
    let stop = env.path("wire.stop");
    let mut cmd = cluster.topology.bridge_launcher().command(wiretap());
    cmd.arg("capture").arg(&capture).arg(&stop).arg("120");
    let tap = env.spawn_simple("wiretap-capture", cmd).unwrap();
    let ready = capture.with_extension("ready");
    let t0 = Instant::now();
    while !ready.exists() {
        tap.ensure_running().unwrap();
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the tap never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let listeners: Vec<Listener> = (1..=DAEMONS)
        .map(|k| cluster.listen(k, &format!("l{k}")).unwrap())
        .collect();
    let everyone: Vec<String> = (1..=DAEMONS)
        .map(|k| cluster.node(k).member(&format!("l{k}")))
        .collect();
    for l in &listeners {
        l.wait_view_with(&everyone, Duration::from_secs(30))
            .unwrap();
    }
    stage("views installed");
    send_round(&cluster, &listeners, "first", DAEMONS * PER_SENDER);
    stage("first round delivered");

    std::fs::write(&stop, b"").unwrap();
    tap.wait_timeout(Duration::from_secs(10)).unwrap();
    let captured = read_capture(&capture).unwrap();
    let chorus: Vec<_> = captured
        .iter()
        .filter(|c| c.payload.starts_with(&MAGIC.to_be_bytes()))
        .collect();
    eprintln!(
        "netns_trust: captured {} datagrams ({} chorus)",
        captured.len(),
        chorus.len()
    );
    assert!(
        chorus.len() >= 20,
        "too few datagrams captured: {}",
        chorus.len()
    );
    let in_clear = captured
        .iter()
        .filter(|c| {
            c.payload
                .windows(MARKER.len())
                .any(|w| w == MARKER.as_bytes())
        })
        .count();
    assert_eq!(
        in_clear, 0,
        "{in_clear} captured datagrams carry a payload in clear"
    );
    for c in &chorus {
        assert_eq!(
            c.payload.get(2..4),
            Some(&[VERSION, KIND_SEALED][..]),
            "an unsealed datagram {} -> {}",
            c.src,
            c.dst
        );
    }

    stage("capture read");
    // The attack from host 4: replays and alterations.
    let before = ClusterStats::read(&cluster.nodes).unwrap();
    let out = cluster
        .topology
        .run_in(
            OUTSIDER,
            &[
                wiretap(),
                "replay",
                &capture.display().to_string(),
                &outsider_addr.to_string(),
                "2",
            ],
        )
        .unwrap();
    eprintln!("netns_trust: outsider: {}", out.trim());
    // What the daemons made of it, once they have read it all.
    let deadline = Instant::now() + Duration::from_secs(20);
    let spent = loop {
        let spent = ClusterStats::read(&cluster.nodes).unwrap().since(&before);
        let t = spent.total();
        if t.refused_replayed >= chorus.len() as u64 || Instant::now() > deadline {
            break spent;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let t = spent.total();
    eprintln!(
        "netns_trust: during the attack: refused {} replayed, {} unauthentic; {} retransmits, {} messages delivered",
        t.refused_replayed, t.refused_unauthentic, t.retransmits, t.messages_delivered
    );
    assert!(t.refused_replayed >= chorus.len() as u64, "{t:?}");
    assert!(t.refused_unauthentic >= chorus.len() as u64, "{t:?}");
    assert_eq!(t.messages_delivered, 0, "the attack delivered messages");
    assert_eq!(t.retransmits, 0, "replayed NAKs were answered");

    stage("attack over");
    // A daemon with another key, in host 4: never registers.
    let other = env.path("other.key");
    std::fs::write(&other, ClusterKey::text_of(&[0x5a; 32])).unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();
    let socket = env.path("n4.sock");
    let toml = format!(
        "node = \"n4\"\ndirectory = [\"{}:{DIRECTORY_PORT}\"]\ninterface = \"{outsider_addr}\"\n\
         data_port = {DATA_PORT}\nsocket = \"{}\"\nkey_file = \"{}\"\n",
        cluster.topology.host(1).addr,
        socket.display(),
        other.display()
    );
    let config = env.write_file("chorusd-n4.toml", &toml).unwrap();
    let mut cmd = cluster.topology.launcher(OUTSIDER).command(&bins().chorusd);
    cmd.arg("--config").arg(&config).env_remove("NOTIFY_SOCKET");
    let n4 = env.spawn_simple("chorusd-n4", cmd).unwrap();
    let mut listen4 = cluster
        .topology
        .launcher(OUTSIDER)
        .command(&bins().chorusctl);
    listen4
        .arg("--socket")
        .arg(&socket)
        .args(["listen", "chat", "--json", "--name", "l4"]);
    let l4 = Listener::spawn(env, "listen-n4-l4", listen4).unwrap();

    // The outsider's plain Hello, from host 4.
    let out = cluster
        .topology
        .run_in(
            OUTSIDER,
            &[
                wiretap(),
                "probe-directory",
                &format!("{}:{DIRECTORY_PORT}", cluster.topology.host(1).addr),
                "n1",
            ],
        )
        .unwrap();
    let mut words = out.split_whitespace();
    assert_eq!(words.next(), Some("received"), "{out}");
    let n: usize = words.next().unwrap().parse().unwrap();
    let hex = words.next().unwrap_or("");
    let text: Vec<u8> = (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
        .collect();
    eprintln!("netns_trust: a client without the key got {n} bytes from the directory");
    for secret in ["chat", "n1", "n2", "n3"] {
        assert!(
            !text.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the directory told a client without the key `{secret}`: {hex}"
        );
    }
    // The handshake's nonce and nothing more: no frame of the protocol.
    assert!(n <= 64, "{n} bytes to a client without the key: {hex}");

    stage("directory probed");
    // Life goes on: a second round, delivered once each, everywhere alike.
    send_round(&cluster, &listeners, "second", 2 * DAEMONS * PER_SENDER);
    stage("second round delivered");
    let first = listeners[0].snapshot();
    let want: Vec<(String, String)> = first
        .messages()
        .map(|m| (m.sender.clone(), m.data.clone().unwrap_or_default()))
        .collect();
    assert_eq!(want.len(), 2 * DAEMONS * PER_SENDER);
    let distinct: BTreeSet<&(String, String)> = want.iter().collect();
    assert_eq!(distinct.len(), want.len(), "a message was delivered twice");
    for l in &listeners[1..] {
        let got: Vec<(String, String)> = l
            .snapshot()
            .messages()
            .map(|m| (m.sender.clone(), m.data.clone().unwrap_or_default()))
            .collect();
        assert_eq!(got, want, "{} delivered another sequence", l.label());
    }
    // Every view was the three keyed daemons' only.
    for l in &listeners {
        for e in &l.snapshot().events {
            if let chorus_tests::listener::Event::View(v) = e {
                assert!(
                    v.members.iter().all(|m| !m.starts_with("n4:")),
                    "the other key's daemon got into a view: {v:?}"
                );
            }
        }
    }
    let seen4 = l4.snapshot();
    assert_eq!(
        seen4.messages().count(),
        0,
        "the other key's member got messages"
    );
    assert!(
        seen4.latest_view().is_none(),
        "the other key's member got a view"
    );
    // It keeps trying, refused every time, and does not crash.
    n4.ensure_running().unwrap();
    stage("checked");
    drop(l4);
    drop(n4);
    stage("outsider stopped");
    drop(listeners);
    drop(cluster);
    stage("cluster stopped");
}
