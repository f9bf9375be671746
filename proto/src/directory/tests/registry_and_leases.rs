//! Registration, leases, Hello refusals and goodbyes.

use super::*;

#[test]
fn hello_is_welcomed_with_the_lease_and_a_heartbeat_period() {
    let mut s = Script::new(settings(vec![], None));
    s.d.handle_connect(s.now, ConnId(7));
    s.frame(7, Script::hello_frame("a", 1));
    assert_eq!(
        s.output(),
        vec![(
            ConnId(7),
            FromDirectory::Welcome {
                node: NodeId(1),
                cluster: ClusterId(42),
                lease_ms: 1000,
                heartbeat_ms: 250,
                epoch: crate::ids::Epoch(0),
            }
        )]
    );
    assert_eq!(s.node(8, "b", 1), NodeId(2));
    assert_eq!(s.d.node_by_name("a").map(|n| n.data_port), Some(7401));
}

#[test]
fn heartbeat_has_a_floor() {
    let mut cfg = settings(vec![], None);
    cfg.lease = Duration::from_millis(20);
    let mut s = Script::new(cfg);
    s.d.handle_connect(s.now, ConnId(1));
    s.frame(1, Script::hello_frame("a", 1));
    assert!(matches!(
        s.output().as_slice(),
        [(
            _,
            FromDirectory::Welcome {
                lease_ms: 20,
                heartbeat_ms: 10,
                ..
            }
        )]
    ));
}

#[test]
fn a_frame_before_hello_closes_the_connection() {
    let mut s = Script::new(settings(vec![decl("chat", 1)], None));
    s.d.handle_connect(s.now, ConnId(1));
    s.frame(1, ToDirectory::Heartbeat);
    assert_eq!(s.output(), vec![]);
    assert_eq!(s.closes(), vec![ConnId(1)]);
    // Anything later on that connection is ignored.
    s.frame(1, Script::hello_frame("a", 1));
    assert_eq!(s.output(), vec![]);
    assert_eq!(s.d.nodes().count(), 0);
}

#[test]
fn the_links_of_leases_due_are_named_to_be_read_first() {
    let mut s = Script::new(settings(vec![decl("chat", 1)], None));
    s.node(1, "a", 1);
    s.node(2, "b", 1);
    s.d.handle_connect(s.now, ConnId(3)); // no Hello yet: no lease
    s.now = ms(600);
    s.frame(2, ToDirectory::Heartbeat);
    assert_eq!(s.d.links_to_read_before(ms(999)), vec![]);
    assert_eq!(s.d.links_to_read_before(ms(1000)), vec![ConnId(1)]);
    assert_eq!(
        s.d.links_to_read_before(ms(1600)),
        vec![ConnId(1), ConnId(2)]
    );
    // What was read renews the lease: nothing runs out.
    s.now = ms(1000);
    s.frame(1, ToDirectory::Heartbeat);
    s.d.handle_timeout(s.now);
    assert_eq!(s.d.nodes().count(), 2);
    assert_eq!(s.d.links_to_read_before(ms(1000)), vec![]);
}

#[test]
fn a_silent_node_is_declared_dead_when_its_lease_runs_out() {
    let mut s = Script::new(settings(vec![decl("chat", 1)], None));
    let a = s.node(1, "a", 1);
    let b = s.node(2, "b", 1);
    s.join(1, "chat", 1, "x");
    s.join(2, "chat", 1, "y");
    s.output();
    // b keeps talking; a stays silent.
    s.now = ms(600);
    s.frame(2, ToDirectory::Heartbeat);
    assert_eq!(s.d.poll_timeout(), Some(ms(LEASE_MS)));
    s.d.handle_timeout(ms(999));
    assert_eq!(s.output(), vec![]);
    assert_eq!(s.closes(), vec![]);
    s.now = ms(1000);
    s.d.handle_timeout(s.now);
    // a sequenced (first joined); b's node takes over.
    assert_eq!(
        views(&s.output()),
        vec![(ConnId(2), ViewId(3), b, vec![member(b, 1, "y")])]
    );
    assert_eq!(s.closes(), vec![ConnId(1)]);
    assert!(s.d.node_by_name("a").is_none());
    assert_eq!(s.d.poll_timeout(), Some(ms(600 + LEASE_MS)));
    let _ = a;
}

#[test]
fn a_connection_that_never_says_hello_is_closed_after_one_lease() {
    let mut s = Script::new(settings(vec![], None));
    s.d.handle_connect(ms(0), ConnId(1));
    assert_eq!(s.d.poll_timeout(), Some(ms(LEASE_MS)));
    s.d.handle_timeout(ms(LEASE_MS));
    assert_eq!(s.closes(), vec![ConnId(1)]);
    assert_eq!(s.d.poll_timeout(), None);
}

#[test]
fn goodbye_leaves_everything_and_closes() {
    let mut s = Script::new(settings(vec![decl("c1", 1), decl("c2", 2)], None));
    let a = s.node(1, "a", 1);
    let b = s.node(2, "b", 1);
    s.join(1, "c1", 1, "x");
    s.join(1, "c2", 2, "x");
    s.join(2, "c1", 1, "y");
    s.join(2, "c2", 1, "y");
    s.output();
    s.frame(1, ToDirectory::Goodbye);
    assert_eq!(
        views(&s.output()),
        vec![
            (ConnId(2), ViewId(3), b, vec![member(b, 1, "y")]),
            (ConnId(2), ViewId(3), b, vec![member(b, 1, "y")]),
        ]
    );
    assert_eq!(s.closes(), vec![ConnId(1)]);
    assert!(s.d.nodes().all(|n| n.node != a));
}

#[test]
fn a_second_hello_on_a_link_drops_the_node() {
    let mut s = Script::new(settings(vec![], None));
    s.node(1, "a", 1);
    s.frame(1, Script::hello_frame("a", 1));
    assert_eq!(s.output(), vec![]);
    assert_eq!(s.closes(), vec![ConnId(1)]);
    assert_eq!(s.d.nodes().count(), 0);
    assert_eq!(s.d.connection_count(), 0);
}

#[test]
fn node_ids_are_never_reused() {
    let mut s = Script::new(settings(vec![], None));
    assert_eq!(s.node(1, "a", 1), NodeId(1));
    s.frame(1, ToDirectory::Goodbye);
    assert_eq!(s.node(2, "a", 1), NodeId(2));
}
