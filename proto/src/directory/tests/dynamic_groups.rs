//! Groups created on first join from the address pool.

use super::*;

#[test]
fn dynamic_groups_take_pool_addresses_in_order_and_give_them_back() {
    let mut s = Script::new(settings(vec![decl("chat", 1)], Some(pool())));
    let a = s.node(1, "a", 1);
    s.join(1, "d1", 1, "x");
    s.join(1, "d2", 2, "x");
    s.join(1, "d3", 3, "x");
    let out = s.output();
    let addrs: Vec<_> = out
        .iter()
        .filter_map(|(_, f)| match f {
            FromDirectory::View(v) => Some((v.group, v.address, v.port)),
            _ => None,
        })
        .collect();
    assert_eq!(
        addrs,
        vec![
            (GroupId(2), Ipv4Addr::new(239, 192, 100, 1), 7420),
            (GroupId(3), Ipv4Addr::new(239, 192, 100, 2), 7420),
        ]
    );
    assert!(matches!(
        &out[2],
        (ConnId(1), FromDirectory::JoinRefused { group, reason, .. }) if group == "d3" && reason.contains("pool")
    ));
    // d1 empties: deleted, its address returns to the pool.
    s.frame(
        1,
        ToDirectory::Leave {
            group: GroupId(2),
            member: MemberId(1),
        },
    );
    s.frame(1, ToDirectory::Detach { group: GroupId(2) });
    s.output();
    assert_eq!(s.d.group_id("d1"), None);
    s.join(1, "d3", 3, "x");
    assert_eq!(
        s.output(),
        vec![(
            ConnId(1),
            FromDirectory::View(View {
                group: GroupId(4),
                group_name: "d3".into(),
                address: Ipv4Addr::new(239, 192, 100, 1),
                port: 7420,
                view: ViewId(1),
                sequencer: a,
                max_message_bytes: 0,
                members: vec![member(a, 3, "x")],
                nodes: vec![s.info(a)],
            })
        )]
    );
}

#[test]
fn a_dynamic_group_dies_with_its_last_node() {
    let mut s = Script::new(settings(vec![], Some(pool())));
    s.node(1, "a", 1);
    s.join(1, "d1", 1, "x");
    s.output();
    // The link drops: the group lives on while the node's lease runs.
    s.d.handle_disconnect(s.now, ConnId(1));
    assert!(s.d.group_id("d1").is_some());
    s.advance_to(ms(LEASE_MS));
    assert_eq!(s.d.group_id("d1"), None);
    assert_eq!(s.d.group_summaries(), vec![]);
    assert_eq!((s.output(), s.closes()), (vec![], vec![]));
}

#[test]
fn list_groups_reports_declared_and_dynamic() {
    let mut s = Script::new(settings(
        vec![decl("chat", 1), decl("idle", 2)],
        Some(pool()),
    ));
    s.node(1, "a", 1);
    s.join(1, "chat", 1, "x");
    s.join(1, "chat", 2, "y");
    s.join(1, "dyn", 3, "x");
    s.output();
    s.frame(1, ToDirectory::ListGroups { request: 77 });
    let g = |name: &str, last: [u8; 2], port, view, members, declared| GroupSummary {
        name: name.into(),
        address: Ipv4Addr::new(239, 192, last[0], last[1]),
        port,
        view: ViewId(view),
        members,
        declared,
    };
    assert_eq!(
        s.output(),
        vec![(
            ConnId(1),
            FromDirectory::Groups {
                request: 77,
                groups: vec![
                    g("chat", [0, 1], 7410, 2, 2, true),
                    g("dyn", [100, 1], 7420, 1, 1, false),
                    g("idle", [0, 2], 7410, 0, 0, true),
                ]
            }
        )]
    );
}
