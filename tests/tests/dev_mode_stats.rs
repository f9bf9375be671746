//! `chorusctl stats` and `Client::stats` against a real daemon (`chorusd
//! --dev`): the counters move with the traffic, and the group shows up with
//! this node as its sequencer.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::time::{Duration, Instant};

use chorus::{Client, Event, Order};
use chorus_tests::dev::DevNode;
use chorus_tests::testenv::TestEnv;

const SENT: u64 = 50;

#[test]
fn dev_mode_stats() {
    let env = TestEnv::new("dev_mode_stats", Duration::from_secs(120)).unwrap();
    let dev = DevNode::start(&env, Duration::from_secs(30)).unwrap();

    let mut c = Client::connect(&dev.socket).unwrap();
    let before = c.stats().unwrap();
    c.join("demo", "stats-test").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.recv_timeout(left).unwrap() {
            Some(Event::View(v)) if v.members.iter().any(|m| m.ends_with(":stats-test")) => break,
            Some(_) => {}
            None => panic!("no view with our member within 30 s"),
        }
    }
    for i in 0..SENT {
        c.send("demo", Order::Total, i.to_string().as_bytes())
            .unwrap();
    }
    c.flush().unwrap();
    let mut delivered = 0;
    while delivered < SENT {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.recv_timeout(left).unwrap() {
            Some(Event::Message(_)) => delivered += 1,
            Some(Event::View(_)) => {}
            Some(Event::Separated(s)) => panic!("separated from the group: {s:?}"),
            None => panic!("only {delivered} of {SENT} messages delivered back"),
        }
    }

    let after = c.stats().unwrap();
    assert!(
        after.messages_accepted >= before.messages_accepted + SENT,
        "{before:?} -> {after:?}"
    );
    assert!(
        after.messages_delivered >= before.messages_delivered + SENT,
        "{before:?} -> {after:?}"
    );
    assert!(after.datagrams_out > before.datagrams_out, "{after:?}");
    assert!(after.bytes_out > before.bytes_out, "{after:?}");
    let demo = after
        .groups
        .iter()
        .find(|g| g.name == "demo")
        .unwrap_or_else(|| panic!("no group demo: {after:?}"));
    assert!(demo.sequencer, "the only node sequences: {demo:?}");
    assert!(demo.view >= 1, "{demo:?}");
    assert!(
        demo.window_bytes > 0 && demo.window_bytes <= demo.window_cap_bytes,
        "{demo:?}"
    );

    // The same through chorusctl, as one JSON object.
    let out = dev.chorusctl().args(["stats", "--json"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    let json: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert!(
        json["messages_accepted"].as_u64().unwrap() >= SENT,
        "{json}"
    );
    // The drop counters come through the daemon's reply too (the node's
    // own DATA, looped back by multicast, is no drop).
    for key in [
        "dropped_other_cluster",
        "dropped_no_group",
        "dropped_duplicate",
        "dropped_beyond_window",
        "dropped_before_base",
        "sessions_dropped_slow",
        "refused_unauthentic",
        "refused_replayed",
    ] {
        assert!(json[key].is_u64(), "{key}: {json}");
    }
    assert_eq!(after.sessions_dropped_slow, 0, "{after:?}");
    let groups = json["groups"].as_array().unwrap();
    assert!(
        groups
            .iter()
            .any(|g| g["group"] == "demo" && g["sequencer"] == true),
        "{json}"
    );
    c.leave("demo").unwrap();
}
