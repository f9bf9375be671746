//! Links dropping and coming back: a dropped link is not death, a Hello
//! of the same life rebinds, a new incarnation replaces the old life, and
//! asked-for ids.

use super::*;

/// a (member x) and b (member y) in "chat", in view 2, sequenced by a.
fn two_in_chat() -> (Script, NodeId, NodeId) {
    let mut s = Script::new(settings(vec![decl("chat", 1)], None));
    let a = s.node(1, "a", 5);
    let b = s.node(2, "b", 1);
    s.join(1, "chat", 1, "x");
    s.join(2, "chat", 1, "y");
    s.output();
    (s, a, b)
}

#[test]
fn a_dropped_link_is_death_after_a_fifth_of_a_lease() {
    let (mut s, a, b) = two_in_chat();
    s.now = ms(300);
    s.frame(1, ToDirectory::Heartbeat);
    s.now = ms(500);
    s.d.handle_disconnect(s.now, ConnId(1));
    assert_eq!((s.output(), s.closes()), (vec![], vec![]));
    assert_eq!(s.d.node_by_name("a").map(|n| n.node), Some(a));
    assert_eq!(
        s.d.current_view(GroupId(1)).map(|v| v.members.len()),
        Some(2)
    );
    // A closed link leaves a fifth of a lease to come back, not a whole one.
    let grace = LEASE_MS / 5;
    assert_eq!(s.d.poll_timeout(), Some(ms(500 + grace)));
    s.frame(2, ToDirectory::Heartbeat);
    s.advance_to(ms(500 + grace - 1));
    assert_eq!(s.output(), vec![]);
    s.advance_to(ms(500 + grace));
    assert_eq!(
        views(&s.output()),
        vec![(ConnId(2), ViewId(3), b, vec![member(b, 1, "y")])]
    );
    // Its link is already gone: nothing to close.
    assert_eq!(s.closes(), vec![]);
    assert!(s.d.node_by_name("a").is_none());
    assert_eq!(s.d.connection_count(), 1);
}

#[test]
fn a_hello_of_the_same_life_rebinds_without_a_view_change() {
    let (mut s, a, b) = two_in_chat();
    s.now = ms(200);
    s.d.handle_disconnect(s.now, ConnId(1));
    // While a is away b's app joins another member: a misses view 3.
    s.join(2, "chat", 2, "z");
    let members = vec![member(a, 1, "x"), member(b, 1, "y"), member(b, 2, "z")];
    assert_eq!(
        views(&s.output()),
        vec![(ConnId(2), ViewId(3), a, members.clone())]
    );
    s.now = ms(700);
    s.d.handle_connect(s.now, ConnId(3));
    s.frame(3, Script::hello_again("a", 5, a));
    let out = s.output();
    assert_eq!(
        out[0],
        (
            ConnId(3),
            FromDirectory::Welcome {
                node: a,
                cluster: ClusterId(42),
                lease_ms: 1000,
                heartbeat_ms: 250,
                epoch: crate::ids::Epoch(0),
            }
        )
    );
    // The group's recent views a took part in (it may have lost some with
    // the link), then the current one again, to a only, with the same id.
    let got = views(&out[1..]);
    let ids: Vec<ViewId> = got.iter().map(|v| v.1).collect();
    assert_eq!(ids, vec![ViewId(1), ViewId(2), ViewId(3)]);
    assert!(got.iter().all(|v| v.0 == ConnId(3)));
    assert_eq!(got.last(), Some(&(ConnId(3), ViewId(3), a, members)));
    assert_eq!(s.closes(), vec![]);
    // The lease runs from the Hello: a outlives its old deadline.
    s.advance_to(ms(LEASE_MS));
    assert_eq!((s.output(), s.closes()), (vec![], vec![]));
    assert_eq!(s.d.node_by_name("a").map(|n| n.node), Some(a));
    s.advance_to(ms(700 + LEASE_MS));
    assert!(s.d.node_by_name("a").is_none());
}

#[test]
fn a_rebind_closes_the_old_link_if_it_is_still_open() {
    let (mut s, a, _b) = two_in_chat();
    s.d.handle_connect(s.now, ConnId(3));
    s.frame(3, Script::hello_again("a", 5, a));
    let out = s.output();
    assert!(matches!(out[0], (ConnId(3), FromDirectory::Welcome { node, .. }) if node == a));
    assert_eq!(
        views(&out[1..])
            .iter()
            .map(|v| (v.0, v.1))
            .collect::<Vec<_>>(),
        vec![(ConnId(3), ViewId(1)), (ConnId(3), ViewId(2))]
    );
    assert_eq!(s.closes(), vec![ConnId(1)]);
    // The old link is forgotten: its frames and its close change nothing.
    s.frame(1, ToDirectory::Goodbye);
    s.d.handle_disconnect(s.now, ConnId(1));
    assert_eq!((s.output(), s.closes()), (vec![], vec![]));
    // Views now go to the new link.
    s.join(3, "chat", 2, "w");
    let conns: Vec<ConnId> = views(&s.output()).iter().map(|v| v.0).collect();
    assert_eq!(conns, vec![ConnId(3), ConnId(2)]);
}

#[test]
fn a_rebind_with_new_addresses_is_a_view_change() {
    let (mut s, a, b) = two_in_chat();
    s.d.handle_disconnect(s.now, ConnId(1));
    s.d.handle_connect(s.now, ConnId(3));
    let mut hello = Script::hello_again("a", 5, a);
    if let ToDirectory::Hello { data_port, .. } = &mut hello {
        *data_port = 9999;
    }
    s.frame(3, hello);
    let out = s.output();
    assert!(matches!(out[0], (ConnId(3), FromDirectory::Welcome { node, .. }) if node == a));
    let members = vec![member(a, 1, "x"), member(b, 1, "y")];
    assert_eq!(
        views(&out[1..]),
        vec![
            (ConnId(3), ViewId(1), a, vec![member(a, 1, "x")]),
            (ConnId(3), ViewId(3), a, members.clone()),
            (ConnId(2), ViewId(3), a, members)
        ]
    );
    assert_eq!(s.info(a).data_port, 9999);
}

#[test]
fn a_restarted_daemon_replaces_its_old_life() {
    let (mut s, a, b) = two_in_chat();
    // "a" comes back with a new incarnation before its lease ran out.
    s.d.handle_connect(s.now, ConnId(3));
    s.frame(3, Script::hello_frame("a", 6));
    let out = s.output();
    // First the view without the old life (to b only), then the Welcome.
    assert_eq!(
        views(&out[..1]),
        vec![(ConnId(2), ViewId(3), b, vec![member(b, 1, "y")])]
    );
    assert_eq!(
        out[1..],
        [(
            ConnId(3),
            FromDirectory::Welcome {
                node: NodeId(3),
                cluster: ClusterId(42),
                lease_ms: 1000,
                heartbeat_ms: 250,
                epoch: crate::ids::Epoch(0),
            }
        )]
    );
    assert_eq!(s.closes(), vec![ConnId(1)]);
    assert_ne!(s.d.node_by_name("a").map(|n| n.node), Some(a));
    assert_eq!(
        s.d.node_by_name("a").map(|n| n.incarnation),
        Some(Incarnation(6))
    );
}

#[test]
fn a_restart_while_the_link_is_down_is_death_at_once() {
    let (mut s, a, b) = two_in_chat();
    s.d.handle_disconnect(s.now, ConnId(1));
    s.d.handle_connect(s.now, ConnId(3));
    // Even asking for the old id: the old life is over.
    s.frame(3, Script::hello_again("a", 6, a));
    let out = s.output();
    assert_eq!(
        views(&out[..1]),
        vec![(ConnId(2), ViewId(3), b, vec![member(b, 1, "y")])]
    );
    assert!(matches!(
        out[1..],
        [(
            ConnId(3),
            FromDirectory::Welcome {
                node: NodeId(3),
                ..
            }
        )]
    ));
    assert_eq!(s.closes(), vec![]);
}

#[test]
fn an_asked_for_id_is_granted_unless_taken_and_fresh_ids_stay_above() {
    let mut s = Script::new(settings(vec![], None));
    assert_eq!(s.node_again(1, "a", 1, NodeId(5)), NodeId(5));
    // Taken by a: a fresh id, above every id granted.
    assert_eq!(s.node_again(2, "b", 1, NodeId(5)), NodeId(6));
    assert_eq!(s.node(3, "c", 1), NodeId(7));
    // A free id below the others is granted too...
    assert_eq!(s.node_again(4, "d", 1, NodeId(2)), NodeId(2));
    // ...and never handed out fresh afterwards.
    assert_eq!(s.node(5, "e", 1), NodeId(8));
    let ids: Vec<NodeId> = s.d.nodes().map(|n| n.node).collect();
    assert_eq!(
        ids,
        vec![NodeId(2), NodeId(5), NodeId(6), NodeId(7), NodeId(8)]
    );
}

#[test]
fn the_id_of_a_node_declared_dead_is_not_granted_again() {
    let (mut s, a, _b) = two_in_chat();
    s.d.handle_disconnect(s.now, ConnId(1));
    s.now = ms(500);
    s.frame(2, ToDirectory::Heartbeat);
    s.advance_to(ms(LEASE_MS));
    s.output();
    assert!(s.d.node_by_name("a").is_none());
    // The same life comes back too late: it is a new node now.
    assert_eq!(s.node_again(3, "a", 5, a), NodeId(3));
}

#[test]
fn a_sequencer_id_learned_from_a_report_is_never_handed_out_fresh() {
    let mut s = Script::started(settings(vec![decl("chat", 1)], None));
    let a = s.node_again(1, "a", 1, NodeId(3));
    s.resume(
        1,
        Resume {
            group: GroupId(1),
            group_name: "chat".into(),
            address: Ipv4Addr::new(239, 192, 0, 1),
            port: 7410,
            view: ViewId(4),
            sequencer: NodeId(12),
            since: ViewId(1),
            members: vec![(MemberId(1), "x".into())],
        },
    );
    // A daemon that just started waits for the end of the grace period.
    s.d.handle_connect(s.now, ConnId(2));
    s.frame(2, Script::hello_frame("b", 1));
    assert_eq!(s.output(), vec![]);
    // The node that sequenced may still come back under its id.
    assert_eq!(s.node_again(3, "c", 1, NodeId(12)), NodeId(12));
    s.frame(1, ToDirectory::Heartbeat);
    s.advance_to(ms(LEASE_MS));
    let out = s.output();
    assert!(
        matches!(
            out[0],
            (
                ConnId(2),
                FromDirectory::Welcome {
                    node: NodeId(13),
                    ..
                }
            )
        ),
        "{out:?}"
    );
    let _ = a;
}

#[test]
fn a_fresh_hello_waits_for_the_grace_period_so_ids_are_claimed_back_first() {
    let mut s = Script::started(settings(vec![], None));
    // The directory's own host rebooted: its daemon comes back fresh, first.
    s.d.handle_connect(s.now, ConnId(1));
    s.frame(1, Script::hello_frame("fresh", 2));
    // A daemon already waiting for a Welcome may heartbeat on its link.
    s.frame(1, ToDirectory::Heartbeat);
    s.d.handle_connect(s.now, ConnId(2));
    s.frame(2, Script::hello_frame("gone", 1));
    s.frame(2, ToDirectory::Goodbye);
    assert_eq!(s.output(), vec![]);
    assert_eq!(s.closes(), vec![ConnId(2)]);
    // A surviving daemon asks for its id back and gets it at once.
    assert_eq!(s.node_again(3, "survivor", 1, NodeId(1)), NodeId(1));
    assert_eq!(s.d.poll_timeout(), Some(ms(LEASE_MS)));
    s.now = ms(500);
    s.frame(3, ToDirectory::Heartbeat);
    s.advance_to(ms(LEASE_MS));
    let out = s.output();
    assert!(
        matches!(
            out.as_slice(),
            [(
                ConnId(1),
                FromDirectory::Welcome {
                    node: NodeId(2),
                    ..
                }
            )]
        ),
        "{out:?}"
    );
    assert_eq!(s.closes(), vec![]);
    // After the grace period a fresh Hello is answered at once.
    assert_eq!(s.node(4, "late", 1), NodeId(3));
}

#[test]
fn a_node_back_is_told_the_recent_views_before_the_current_one() {
    let (mut s, a, b) = two_in_chat();
    s.d.handle_disconnect(s.now, ConnId(1));
    // Two view changes while a is away: its order will hold both markers,
    // and it installs a view only once it knows it.
    s.join(2, "chat", 2, "z");
    s.join(2, "chat", 3, "w");
    assert_eq!(views(&s.output()).len(), 2);
    s.d.handle_connect(s.now, ConnId(3));
    s.frame(3, Script::hello_again("a", 5, a));
    let out = s.output();
    assert!(matches!(out[0], (ConnId(3), FromDirectory::Welcome { node, .. }) if node == a));
    let ids: Vec<(ConnId, ViewId)> = views(&out[1..]).iter().map(|v| (v.0, v.1)).collect();
    // Views 1 and 2 it had (the daemon ignores them), 3 it missed, 4 is
    // the current one, in order.
    assert_eq!(
        ids,
        (1..=4).map(|v| (ConnId(3), ViewId(v))).collect::<Vec<_>>()
    );
    let _ = b;
}
