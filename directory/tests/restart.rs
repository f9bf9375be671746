//! The directory restarts under running groups: daemons come back under
//! their old ids, report their groups, and get one view after the grace
//! period.

mod common;

use chorus_config::{DirectoryConfig, GroupConfig};
use chorus_directory::Server;
use chorus_proto::wire::directory::FromDirectory;
use chorus_proto::{MemberId, NodeId, ViewId};
use common::{assert_quiet, next_views, FakeDaemon};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// A short lease: the grace period after a restart is one lease.
const LEASE_MS: u64 = 400;

fn config(listen: SocketAddr) -> DirectoryConfig {
    DirectoryConfig {
        listen,
        lease_ms: LEASE_MS,
        groups: vec![GroupConfig {
            name: "chat".into(),
            address: Ipv4Addr::new(239, 192, 0, 10),
            port: 7410,
            max_members: None,
            max_message_bytes: None,
            allow_users: None,
            allow_groups: None,
        }],
        ..DirectoryConfig::default()
    }
}

fn node_ids(v: &chorus_proto::wire::directory::View) -> Vec<NodeId> {
    v.nodes.iter().map(|n| n.node).collect()
}

#[test]
fn daemons_keep_their_ids_and_the_group_goes_on_after_a_directory_restart() {
    let first = Server::bind(&config(SocketAddr::from(([127, 0, 0, 1], 0))))
        .expect("bind")
        .spawn()
        .expect("spawn");
    let addr = first.local_addr();
    let mut a = FakeDaemon::connect(addr, "a", 1);
    // A fresh Hello waits out the new directory's grace period (a lease):
    // b connects once a is in, so that its own Hello is not late.
    let node_a = a.hello(None);
    let mut b = FakeDaemon::connect(addr, "b", 1);
    let node_b = b.hello(None);
    a.join("chat", 1, "x");
    a.view();
    b.join("chat", 1, "y");
    let before = a.view();
    assert_eq!(b.view(), before);
    assert_eq!(node_ids(&before), vec![node_a, node_b]);

    first.stop().expect("clean stop");
    a.expect_closed();
    b.expect_closed();

    // A new directory on the same address, knowing nothing.
    let second = Server::bind(&config(addr))
        .expect("bind the same address again")
        .spawn()
        .expect("spawn");
    let mut a = FakeDaemon::connect(addr, "a", 1);
    let mut b = FakeDaemon::connect(addr, "b", 1);
    assert_eq!(a.hello(node_a), node_a);
    assert_eq!(b.hello(node_b), node_b);
    a.resume(&before, vec![(MemberId(1), "x".into())]);
    b.resume(&before, vec![(MemberId(1), "y".into())]);

    // One view after the grace period, continuing the old one.
    let views = next_views(&mut [&mut a, &mut b]);
    let after = views[0].clone();
    assert_eq!(views[1], after);
    assert_eq!(
        (
            after.group,
            after.group_name.as_str(),
            after.address,
            after.port
        ),
        (before.group, "chat", before.address, before.port)
    );
    assert_eq!(after.view, ViewId(before.view.0 + 1));
    assert_eq!(after.sequencer, before.sequencer);
    assert_eq!(after.members, before.members);
    assert_eq!(node_ids(&after), vec![node_a, node_b]);
    // And no other: the links stay quiet for another lease.
    assert_quiet(&mut [&mut a, &mut b], Duration::from_millis(LEASE_MS));
    second.stop().expect("clean stop");
}

#[test]
fn a_daemon_back_within_its_lease_keeps_its_id_without_a_view_change() {
    let server = Server::bind(&config(SocketAddr::from(([127, 0, 0, 1], 0))))
        .expect("bind")
        .spawn()
        .expect("spawn");
    let addr = server.local_addr();
    let mut a = FakeDaemon::connect(addr, "a", 1);
    // A fresh Hello waits out the new directory's grace period (a lease):
    // b connects once a is in, so that its own Hello is not late.
    let node_a = a.hello(None);
    let mut b = FakeDaemon::connect(addr, "b", 1);
    b.hello(None);
    a.join("chat", 1, "x");
    a.view();
    b.join("chat", 1, "y");
    let current = a.view();
    b.view();
    // a's second link of the same life takes over; the first is closed.
    let mut a2 = FakeDaemon::connect(addr, "a", 1);
    assert_eq!(a2.hello(node_a), node_a);
    // The group's recent views come first (a link that dropped may have
    // lost some), in order, then the current one.
    let mut got = vec![a2.view()];
    while got.last() != Some(&current) {
        got.push(a2.view());
    }
    assert!(got.windows(2).all(|w| w[0].view < w[1].view));
    a.expect_closed();
    a2.resume(&current, vec![(MemberId(1), "x".into())]);
    // Nobody hears of it; the next change reaches the new link.
    assert_quiet(&mut [&mut a2, &mut b], Duration::from_millis(LEASE_MS));
    b.join("chat", 2, "z");
    let next = a2.view();
    assert_eq!(next.view, ViewId(current.view.0 + 1));
    assert_eq!(b.view(), next);
    server.stop().expect("clean stop");
}

#[test]
fn a_dropped_link_ends_the_node_after_a_fifth_of_its_lease() {
    let server = Server::bind(&config(SocketAddr::from(([127, 0, 0, 1], 0))))
        .expect("bind")
        .spawn()
        .expect("spawn");
    let addr = server.local_addr();
    let mut a = FakeDaemon::connect(addr, "a", 1);
    // A fresh Hello waits out the new directory's grace period (a lease):
    // b connects once a is in, so that its own Hello is not late.
    let node_a = a.hello(None);
    let mut b = FakeDaemon::connect(addr, "b", 1);
    b.hello(None);
    a.join("chat", 1, "x");
    a.view();
    b.join("chat", 1, "y");
    a.view();
    b.view();
    let dropped = std::time::Instant::now();
    drop(b);
    let v = a.view();
    // A closed link leaves the node a fifth of a lease to come back.
    assert!(dropped.elapsed() >= Duration::from_millis(LEASE_MS) / 5);
    assert!(dropped.elapsed() < Duration::from_millis(LEASE_MS));
    assert_eq!(v.view, ViewId(3));
    assert_eq!(node_ids(&v), vec![node_a]);
    server.stop().expect("clean stop");
}

#[test]
fn the_old_link_gets_no_frame_after_the_takeover() {
    let server = Server::bind(&config(SocketAddr::from(([127, 0, 0, 1], 0))))
        .expect("bind")
        .spawn()
        .expect("spawn");
    let addr = server.local_addr();
    let mut a = FakeDaemon::connect(addr, "a", 1);
    let node_a = a.hello(None);
    let mut a2 = FakeDaemon::connect(addr, "a", 1);
    assert_eq!(a2.hello(node_a), node_a);
    match a.recv() {
        None => assert!(a.closed),
        Some(other) => panic!("expected the close, got {other:?}"),
    }
    a2.send(&chorus_proto::wire::directory::ToDirectory::ListGroups { request: 3 });
    assert!(matches!(
        a2.recv(),
        Some(FromDirectory::Groups { request: 3, .. })
    ));
    server.stop().expect("clean stop");
}
