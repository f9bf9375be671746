//! Joins, leaves, detaches and the views they produce.

use super::*;

#[test]
fn join_sends_the_view_to_every_attached_node() {
    let mut s = Script::new(settings(vec![decl("chat", 1)], None));
    let a = s.node(1, "a", 1);
    let b = s.node(2, "b", 1);
    s.join(1, "chat", 1, "x");
    let first = s.output();
    let chat = s.d.group_id("chat").expect("declared");
    assert_eq!(chat, GroupId(1));
    assert_eq!(
        first,
        vec![(
            ConnId(1),
            FromDirectory::View(View {
                group: chat,
                group_name: "chat".into(),
                address: Ipv4Addr::new(239, 192, 0, 1),
                port: 7410,
                view: ViewId(1),
                sequencer: a,
                max_message_bytes: 0,
                members: vec![member(a, 1, "x")],
                nodes: vec![s.info(a)],
            })
        )]
    );
    s.join(2, "chat", 9, "y");
    let out = s.output();
    let members = vec![member(a, 1, "x"), member(b, 9, "y")];
    assert_eq!(
        views(&out),
        vec![
            (ConnId(1), ViewId(2), a, members.clone()),
            (ConnId(2), ViewId(2), a, members),
        ]
    );
    let FromDirectory::View(v) = &out[1].1 else {
        unreachable!()
    };
    assert_eq!(v.nodes, vec![s.info(a), s.info(b)]);
}

#[test]
fn nodes_in_a_view_are_sorted_by_id_and_members_by_join_order() {
    let mut s = Script::new(settings(vec![decl("chat", 1)], None));
    let a = s.node(1, "a", 1);
    let b = s.node(2, "b", 1);
    s.join(2, "chat", 1, "first");
    s.join(1, "chat", 1, "second");
    s.join(2, "chat", 2, "third");
    let v = s.d.current_view(GroupId(1)).expect("view");
    assert_eq!(
        v.members,
        vec![
            member(b, 1, "first"),
            member(a, 1, "second"),
            member(b, 2, "third")
        ]
    );
    assert_eq!(
        v.nodes.iter().map(|n| n.node).collect::<Vec<_>>(),
        vec![a, b]
    );
    assert_eq!(v.sequencer, b);
}

#[test]
fn unknown_group_is_refused_without_dynamic() {
    let mut s = Script::new(settings(vec![decl("chat", 1)], None));
    s.node(1, "a", 1);
    s.join(1, "nope", 3, "x");
    assert_eq!(
        s.output(),
        vec![(
            ConnId(1),
            FromDirectory::JoinRefused {
                group: "nope".into(),
                member: MemberId(3),
                reason: "no such group".into()
            }
        )]
    );
    assert_eq!(s.d.group_id("nope"), None);
}

#[test]
fn acl_admits_listed_users_and_unix_groups_only() {
    let mut g = decl("chat", 1);
    g.allow_users = Some(vec!["alice".into()]);
    g.allow_groups = Some(vec!["chorus".into()]);
    let mut s = Script::new(settings(vec![g], None));
    s.node(1, "a", 1);
    s.join_as(1, "chat", 1, "m1", "bob", &["users"]);
    let out = s.output();
    assert!(matches!(
        out.as_slice(),
        [(ConnId(1), FromDirectory::JoinRefused { member: MemberId(1), reason, .. })] if reason.contains("not allowed")
    ));
    s.join_as(1, "chat", 2, "m2", "alice", &[]);
    s.join_as(1, "chat", 3, "m3", "bob", &["users", "chorus"]);
    let out = s.output();
    assert_eq!(
        views(&out).iter().map(|v| v.1).collect::<Vec<_>>(),
        vec![ViewId(1), ViewId(2)]
    );
}

#[test]
fn max_members_is_enforced() {
    let mut g = decl("chat", 1);
    g.max_members = Some(2);
    let mut s = Script::new(settings(vec![g], None));
    s.node(1, "a", 1);
    s.join(1, "chat", 1, "x");
    s.join(1, "chat", 2, "y");
    s.output();
    s.join(1, "chat", 3, "z");
    assert!(matches!(
        s.output().as_slice(),
        [(ConnId(1), FromDirectory::JoinRefused { member: MemberId(3), reason, .. })] if reason.contains("full")
    ));
    s.frame(
        1,
        ToDirectory::Leave {
            group: GroupId(1),
            member: MemberId(1),
        },
    );
    s.join(1, "chat", 3, "z");
    let out = s.output();
    assert_eq!(views(&out).len(), 2);
}

#[test]
fn every_view_carries_the_groups_max_message_bytes() {
    let mut limited = decl("big", 1);
    limited.max_message_bytes = Some(262_144);
    let mut s = Script::new(settings(vec![limited, decl("plain", 2)], None));
    s.node(1, "a", 1);
    s.node(2, "b", 1);
    s.join(1, "big", 1, "x");
    s.join(2, "big", 1, "y");
    s.join(1, "plain", 2, "x");
    let limits: Vec<(ConnId, String, u32)> = s
        .output()
        .into_iter()
        .map(|(c, f)| match f {
            FromDirectory::View(v) => (c, v.group_name, v.max_message_bytes),
            other => panic!("expected only views, got {other:?}"),
        })
        .collect();
    assert_eq!(
        limits,
        vec![
            (ConnId(1), "big".into(), 262_144),
            (ConnId(1), "big".into(), 262_144),
            (ConnId(2), "big".into(), 262_144),
            (ConnId(1), "plain".into(), 0),
        ]
    );
    let big = s.d.group_id("big").expect("declared");
    assert_eq!(
        s.d.current_view(big).map(|v| v.max_message_bytes),
        Some(262_144)
    );
}

#[test]
fn display_names_are_unique_per_group() {
    let mut s = Script::new(settings(vec![decl("chat", 1)], None));
    s.node(1, "a", 1);
    s.node(2, "b", 1);
    s.join(1, "chat", 1, "x");
    s.join(2, "chat", 1, "x");
    s.output();
    s.join(1, "chat", 2, "x");
    assert!(matches!(
        s.output().as_slice(),
        [(ConnId(1), FromDirectory::JoinRefused { reason, .. })] if reason.contains("`a:x`")
    ));
    assert_eq!(
        s.d.current_view(GroupId(1)).map(|v| v.members.len()),
        Some(2)
    );
}

#[test]
fn the_sequencer_stays_while_its_node_is_attached() {
    let mut s = Script::new(settings(vec![decl("chat", 1)], None));
    let a = s.node(1, "a", 1);
    let b = s.node(2, "b", 1);
    let c = s.node(3, "c", 1);
    s.join(2, "chat", 1, "y");
    s.join(1, "chat", 1, "x");
    s.join(3, "chat", 1, "z");
    s.frame(
        2,
        ToDirectory::Leave {
            group: GroupId(1),
            member: MemberId(1),
        },
    );
    let out = s.output();
    // b sequenced from the first view and still does after its member left.
    assert!(views(&out).iter().all(|v| v.2 == b));
    // b detaches: the earliest-joined remaining member is a's.
    s.frame(2, ToDirectory::Detach { group: GroupId(1) });
    let mut out = s.output();
    assert_eq!(take_ended(&mut out), vec![(ConnId(2), GroupId(1))]);
    let members = vec![member(a, 1, "x"), member(c, 1, "z")];
    assert_eq!(
        views(&out),
        vec![
            (ConnId(1), ViewId(5), a, members.clone()),
            (ConnId(3), ViewId(5), a, members)
        ]
    );
    // c joins another member: a keeps it.
    s.join(3, "chat", 2, "w");
    assert!(views(&s.output()).iter().all(|v| v.2 == a));
}

#[test]
fn leave_keeps_the_node_attached_until_it_detaches() {
    let mut s = Script::new(settings(vec![decl("chat", 1)], None));
    let a = s.node(1, "a", 1);
    let b = s.node(2, "b", 1);
    s.join(1, "chat", 1, "x");
    s.join(2, "chat", 1, "y");
    s.output();
    // Detach while members remain: ignored.
    s.frame(2, ToDirectory::Detach { group: GroupId(1) });
    assert_eq!(s.output(), vec![]);
    s.frame(
        2,
        ToDirectory::Leave {
            group: GroupId(1),
            member: MemberId(1),
        },
    );
    let out = s.output();
    // b still takes part (it drains its sends), so it gets the view too.
    assert_eq!(
        views(&out),
        vec![
            (ConnId(1), ViewId(3), a, vec![member(a, 1, "x")]),
            (ConnId(2), ViewId(3), a, vec![member(a, 1, "x")]),
        ]
    );
    let FromDirectory::View(v) = &out[0].1 else {
        unreachable!()
    };
    assert_eq!(v.nodes.len(), 2);
    // Unknown leave: nothing.
    s.frame(
        2,
        ToDirectory::Leave {
            group: GroupId(1),
            member: MemberId(1),
        },
    );
    assert_eq!(s.output(), vec![]);
    s.frame(2, ToDirectory::Detach { group: GroupId(1) });
    let mut out = s.output();
    // The detached node is told its part is over; the others get the view.
    assert_eq!(take_ended(&mut out), vec![(ConnId(2), GroupId(1))]);
    assert_eq!(
        views(&out),
        vec![(ConnId(1), ViewId(4), a, vec![member(a, 1, "x")])]
    );
    let _ = b;
}

#[test]
fn a_declared_group_keeps_its_id_and_view_counter_when_emptied() {
    let mut s = Script::new(settings(vec![decl("chat", 1)], None));
    let a = s.node(1, "a", 1);
    s.join(1, "chat", 1, "x");
    s.frame(
        1,
        ToDirectory::Leave {
            group: GroupId(1),
            member: MemberId(1),
        },
    );
    s.frame(1, ToDirectory::Detach { group: GroupId(1) });
    // The last node detached: no view, only its GroupEnded.
    let mut out = s.output();
    assert_eq!(take_ended(&mut out), vec![(ConnId(1), GroupId(1))]);
    assert_eq!(views(&out).len(), 2);
    assert_eq!(s.d.current_view(GroupId(1)), None);
    s.join(1, "chat", 2, "x");
    assert_eq!(
        views(&s.output()),
        vec![(ConnId(1), ViewId(3), a, vec![member(a, 2, "x")])]
    );
    assert_eq!(s.d.group_id("chat"), Some(GroupId(1)));
}
