//! Re-reading the configuration.

use super::*;

#[test]
fn reload_adds_ends_and_updates_groups() {
    let mut s = Script::new(settings(vec![decl("keep", 1), decl("gone", 2)], None));
    s.node(1, "a", 1);
    s.node(2, "b", 1);
    s.join(1, "keep", 1, "x");
    s.join(1, "gone", 2, "x");
    s.join(2, "gone", 1, "y");
    s.output();
    let mut keep = decl("keep", 1);
    keep.allow_users = Some(vec!["root".into()]);
    s.d.handle_reload(s.now, settings(vec![keep, decl("new", 3)], None));
    assert_eq!(
        s.output(),
        vec![
            (ConnId(1), FromDirectory::GroupEnded { group: GroupId(2) }),
            (ConnId(2), FromDirectory::GroupEnded { group: GroupId(2) }),
        ]
    );
    assert_eq!(s.d.group_id("gone"), None);
    assert_eq!(s.d.group_id("new"), Some(GroupId(3)));
    // "keep" runs on with its view; the new ACL applies to new joins.
    assert_eq!(
        s.d.current_view(GroupId(1)).map(|v| v.view),
        Some(ViewId(1))
    );
    s.join(2, "keep", 2, "y");
    assert!(matches!(
        s.output().as_slice(),
        [(ConnId(2), FromDirectory::JoinRefused { reason, .. })] if reason.contains("not allowed")
    ));
    // A Leave for the ended group is ignored.
    s.frame(
        1,
        ToDirectory::Leave {
            group: GroupId(2),
            member: MemberId(2),
        },
    );
    assert_eq!(s.output(), vec![]);
}

#[test]
fn a_reloaded_max_message_bytes_reaches_the_nodes_with_the_next_view() {
    let mut g = decl("g", 1);
    g.max_message_bytes = Some(4096);
    let mut s = Script::new(settings(vec![g.clone()], None));
    s.node(1, "a", 1);
    s.join(1, "g", 1, "x");
    s.output();
    g.max_message_bytes = Some(1 << 20);
    s.d.handle_reload(s.now, settings(vec![g.clone()], None));
    assert_eq!(s.output(), vec![], "a limit alone makes no new view");
    s.join(1, "g", 2, "y");
    let out = s.output();
    let [(ConnId(1), FromDirectory::View(v))] = out.as_slice() else {
        panic!("expected one view, got {out:?}");
    };
    assert_eq!((v.view, v.max_message_bytes), (ViewId(2), 1 << 20));
    // Dropping the key: the group sets no limit of its own any more.
    g.max_message_bytes = None;
    s.d.handle_reload(s.now, settings(vec![g], None));
    assert_eq!(
        s.d.current_view(GroupId(1)).map(|v| v.max_message_bytes),
        Some(0)
    );
}

#[test]
fn a_group_whose_address_changed_comes_back_under_a_new_id() {
    let mut s = Script::new(settings(vec![decl("g", 1)], None));
    s.node(1, "a", 1);
    s.join(1, "g", 1, "x");
    s.output();
    s.d.handle_reload(s.now, settings(vec![decl("g", 9)], None));
    assert_eq!(
        s.output(),
        vec![(ConnId(1), FromDirectory::GroupEnded { group: GroupId(1) })]
    );
    assert_eq!(s.d.group_id("g"), Some(GroupId(2)));
    assert_eq!(s.d.current_view(GroupId(2)), None);
}

#[test]
fn a_new_lease_applies_to_nodes_registering_afterwards() {
    let mut s = Script::new(settings(vec![], None));
    s.node(1, "a", 1);
    let mut cfg = settings(vec![], None);
    cfg.lease = Duration::from_millis(4000);
    s.d.handle_reload(s.now, cfg);
    s.d.handle_connect(s.now, ConnId(2));
    s.frame(2, Script::hello_frame("b", 1));
    assert!(matches!(
        s.output().as_slice(),
        [(
            ConnId(2),
            FromDirectory::Welcome {
                lease_ms: 4000,
                heartbeat_ms: 1000,
                ..
            }
        )]
    ));
    // a still has its own lease.
    s.d.handle_timeout(ms(LEASE_MS));
    assert_eq!(s.closes(), vec![ConnId(1)]);
}
