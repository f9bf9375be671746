//! Packet-script tests of the directory: each feeds inputs and asserts on
//! the exact frames and closes that come out.

use super::*;
use crate::ids::{Incarnation, ViewId};
use crate::wire::directory::MemberInfo;

const LEASE_MS: u64 = 1000;

fn decl(name: &str, last: u8) -> GroupDecl {
    GroupDecl {
        name: name.into(),
        address: Ipv4Addr::new(239, 192, 0, last),
        port: 7410,
        max_members: None,
        allow_users: None,
        allow_groups: None,
    }
}

fn settings(groups: Vec<GroupDecl>, dynamic: Option<DynamicDecl>) -> DirectorySettings {
    DirectorySettings {
        cluster: ClusterId(42),
        lease: Duration::from_millis(LEASE_MS),
        groups,
        dynamic,
    }
}

fn pool() -> DynamicDecl {
    DynamicDecl {
        addresses: vec![
            Ipv4Addr::new(239, 192, 100, 1),
            Ipv4Addr::new(239, 192, 100, 2),
        ],
        port: 7420,
    }
}

fn ms(ms: u64) -> Instant {
    Instant::from_micros(ms * 1000)
}

/// A directory and a clock, with helpers that speak for daemons.
struct Script {
    d: Directory,
    now: Instant,
}

impl Script {
    fn new(s: DirectorySettings) -> Self {
        Script {
            d: Directory::new(s),
            now: ms(0),
        }
    }

    fn frame(&mut self, conn: u64, f: ToDirectory) {
        self.d.handle_frame(self.now, ConnId(conn), f);
    }

    fn output(&mut self) -> Vec<(ConnId, FromDirectory)> {
        std::iter::from_fn(|| self.d.poll_output()).collect()
    }

    fn closes(&mut self) -> Vec<ConnId> {
        std::iter::from_fn(|| self.d.poll_close()).collect()
    }

    fn hello_frame(name: &str, inc: u64) -> ToDirectory {
        ToDirectory::Hello {
            name: name.into(),
            incarnation: Incarnation(inc),
            ip: Ipv4Addr::new(127, 0, 0, 1),
            data_port: 7401,
            order_port: 7402,
            previous: crate::ids::NodeId(0),
        }
    }

    /// Connects `conn`, says Hello, and returns the node id from the Welcome.
    fn node(&mut self, conn: u64, name: &str, inc: u64) -> NodeId {
        self.d.handle_connect(self.now, ConnId(conn));
        self.frame(conn, Self::hello_frame(name, inc));
        match self.output().as_slice() {
            [(c, FromDirectory::Welcome { node, .. })] if *c == ConnId(conn) => *node,
            other => panic!("expected a Welcome, got {other:?}"),
        }
    }

    fn join(&mut self, conn: u64, group: &str, member: u32, name: &str) {
        self.join_as(conn, group, member, name, "alice", &[]);
    }

    fn join_as(
        &mut self,
        conn: u64,
        group: &str,
        member: u32,
        name: &str,
        user: &str,
        ugroups: &[&str],
    ) {
        self.frame(
            conn,
            ToDirectory::Join {
                group: group.into(),
                member: MemberId(member),
                member_name: name.into(),
                user: user.into(),
                unix_groups: ugroups.iter().map(|g| g.to_string()).collect(),
            },
        );
    }

    fn info(&self, node: NodeId) -> NodeInfo {
        self.d
            .nodes()
            .find(|n| n.node == node)
            .cloned()
            .expect("node registered")
    }
}

fn member(node: NodeId, member: u32, name: &str) -> MemberInfo {
    MemberInfo {
        node,
        member: MemberId(member),
        name: name.into(),
    }
}

/// The View frames in `out`, as (connection, view id, sequencer, members).
fn views(out: &[(ConnId, FromDirectory)]) -> Vec<(ConnId, ViewId, NodeId, Vec<MemberInfo>)> {
    out.iter()
        .map(|(c, f)| match f {
            FromDirectory::View(v) => (*c, v.view, v.sequencer, v.members.clone()),
            other => panic!("expected only views, got {other:?}"),
        })
        .collect()
}

mod registry_and_leases {
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
                    heartbeat_ms: 250
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
    fn same_name_same_incarnation_is_refused_and_the_live_node_kept() {
        let mut s = Script::new(settings(vec![], None));
        let a = s.node(1, "a", 5);
        s.d.handle_connect(s.now, ConnId(2));
        s.frame(2, Script::hello_frame("a", 5));
        let out = s.output();
        assert!(
            matches!(out.as_slice(), [(ConnId(2), FromDirectory::Refused { reason })] if reason.contains("in use"))
        );
        assert_eq!(s.closes(), vec![ConnId(2)]);
        assert_eq!(s.d.node_by_name("a").map(|n| n.node), Some(a));
    }

    #[test]
    fn a_restarted_daemon_replaces_its_old_life() {
        let mut s = Script::new(settings(vec![decl("chat", 1)], None));
        let a = s.node(1, "a", 5);
        let b = s.node(2, "b", 1);
        s.join(1, "chat", 1, "x");
        s.join(2, "chat", 1, "y");
        s.output();
        // "a" comes back with a new incarnation before its lease ran out.
        s.d.handle_connect(s.now, ConnId(3));
        s.frame(3, Script::hello_frame("a", 6));
        let out = s.output();
        // First the view without the old life (to b only), then the Welcome.
        assert_eq!(
            views(&out[..1]),
            vec![(ConnId(2), ViewId(3), b, vec![member(b, 1, "y")])]
        );
        assert!(matches!(
            out[1],
            (
                ConnId(3),
                FromDirectory::Welcome {
                    node: NodeId(3),
                    ..
                }
            )
        ));
        assert_eq!(out.len(), 2);
        assert_eq!(s.closes(), vec![ConnId(1)]);
        assert_ne!(s.d.node_by_name("a").map(|n| n.node), Some(a));
        assert_eq!(
            s.d.node_by_name("a").map(|n| n.incarnation),
            Some(Incarnation(6))
        );
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
    fn disconnect_is_death_at_once_and_needs_no_close() {
        let mut s = Script::new(settings(vec![decl("chat", 1)], None));
        let _a = s.node(1, "a", 1);
        let b = s.node(2, "b", 1);
        s.join(1, "chat", 1, "x");
        s.join(2, "chat", 1, "y");
        s.output();
        s.d.handle_disconnect(s.now, ConnId(1));
        assert_eq!(
            views(&s.output()),
            vec![(ConnId(2), ViewId(3), b, vec![member(b, 1, "y")])]
        );
        assert_eq!(s.closes(), vec![]);
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
}

mod joins_and_views {
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
        let out = s.output();
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
        assert_eq!(
            views(&s.output()),
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
        // The last node detached: nobody left to tell.
        assert_eq!(views(&s.output()).len(), 2);
        assert_eq!(s.d.current_view(GroupId(1)), None);
        s.join(1, "chat", 2, "x");
        assert_eq!(
            views(&s.output()),
            vec![(ConnId(1), ViewId(3), a, vec![member(a, 2, "x")])]
        );
        assert_eq!(s.d.group_id("chat"), Some(GroupId(1)));
    }
}

mod dynamic_groups {
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
        s.d.handle_disconnect(s.now, ConnId(1));
        assert_eq!(s.d.group_id("d1"), None);
        assert_eq!(s.d.group_summaries(), vec![]);
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
}

mod reload {
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
}

/// Random scripts of inputs: whatever the daemons do, the views the
/// directory hands out stay well-formed and the sequencer rule holds.
mod invariants {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const NAMES: [&str; 3] = ["a", "b", "c"];
    const GROUPS: [&str; 4] = ["chat", "idle", "d1", "d2"];

    #[derive(Debug, Clone)]
    enum Input {
        Connect(u64),
        Disconnect(u64),
        Advance(u64),
        Reload(bool),
        Frame(u64, ToDirectory),
    }

    fn frame() -> impl Strategy<Value = ToDirectory> {
        prop_oneof![
            1 => (0..NAMES.len(), 1u64..3).prop_map(|(n, inc)| Script::hello_frame(NAMES[n], inc)),
            1 => Just(ToDirectory::Heartbeat),
            8 => (0..GROUPS.len(), 1u32..4, 0..2usize, 0..5u8).prop_map(|(g, m, n, who)| {
                ToDirectory::Join {
                    group: GROUPS[g].into(),
                    member: MemberId(m),
                    member_name: ["x", "y"][n].into(),
                    user: if who > 0 { "alice" } else { "mallory" }.into(),
                    unix_groups: vec![],
                }
            }),
            4 => (1u32..7, 1u32..4).prop_map(|(g, m)| ToDirectory::Leave { group: GroupId(g), member: MemberId(m) }),
            3 => (1u32..7).prop_map(|g| ToDirectory::Detach { group: GroupId(g) }),
            1 => any::<u32>().prop_map(|request| ToDirectory::ListGroups { request }),
            1 => Just(ToDirectory::Goodbye),
        ]
    }

    fn input() -> impl Strategy<Value = Input> {
        prop_oneof![
            1 => (1u64..4).prop_map(Input::Connect),
            1 => (1u64..4).prop_map(Input::Disconnect),
            1 => (0u64..500).prop_map(Input::Advance),
            1 => any::<bool>().prop_map(Input::Reload),
            16 => ((1u64..4), frame()).prop_map(|(c, f)| Input::Frame(c, f)),
        ]
    }

    /// Three connections that said Hello, then the random inputs.
    fn script() -> impl Strategy<Value = Vec<Input>> {
        proptest::collection::vec(input(), 1..150).prop_map(|rest| {
            let mut inputs = Vec::new();
            for (c, name) in (1u64..).zip(NAMES) {
                inputs.push(Input::Connect(c));
                inputs.push(Input::Frame(c, Script::hello_frame(name, 1)));
            }
            inputs.extend(rest);
            inputs
        })
    }

    fn config(variant: bool) -> DirectorySettings {
        let mut chat = decl("chat", 1);
        chat.allow_users = Some(vec!["alice".into()]);
        chat.max_members = Some(3);
        let groups = if variant {
            vec![chat, decl("idle", 2)]
        } else {
            vec![chat]
        };
        settings(groups, Some(pool()))
    }

    /// What the test has seen of the directory's output.
    #[derive(Default)]
    struct Seen {
        /// conn -> node, from Welcome frames.
        nodes: BTreeMap<ConnId, NodeId>,
        /// group -> last view sent.
        views: BTreeMap<GroupId, View>,
    }

    impl Seen {
        fn check(&mut self, conn: ConnId, f: &FromDirectory) -> Result<(), TestCaseError> {
            match f {
                FromDirectory::Welcome { node, .. } => {
                    prop_assert!(!self.nodes.values().any(|n| n == node), "node id reused");
                    self.nodes.insert(conn, *node);
                }
                FromDirectory::View(v) => self.check_view(conn, v)?,
                _ => {}
            }
            Ok(())
        }

        fn check_view(&mut self, conn: ConnId, v: &View) -> Result<(), TestCaseError> {
            let ids: Vec<NodeId> = v.nodes.iter().map(|n| n.node).collect();
            prop_assert!(ids.windows(2).all(|w| w[0] < w[1]), "nodes sorted: {ids:?}");
            prop_assert!(ids.contains(&v.sequencer), "sequencer attached");
            prop_assert!(
                v.members.iter().all(|m| ids.contains(&m.node)),
                "member nodes attached"
            );
            let recipient = self.nodes.get(&conn).copied();
            prop_assert!(
                recipient.is_some_and(|r| ids.contains(&r)),
                "sent to a node in the view"
            );
            let mut names: Vec<(NodeId, &str)> = v
                .members
                .iter()
                .map(|m| (m.node, m.name.as_str()))
                .collect();
            names.sort();
            names.dedup();
            prop_assert_eq!(names.len(), v.members.len(), "display names unique");
            if let Some(last) = self.views.get(&v.group) {
                prop_assert!(v.view >= last.view, "view ids never go back");
                if v.view == last.view {
                    prop_assert_eq!(v, last, "one view id, one view");
                } else if v.view.0 == last.view.0 + 1 && ids.contains(&last.sequencer) {
                    prop_assert_eq!(v.sequencer, last.sequencer, "sequencer kept while attached");
                }
            }
            self.views.insert(v.group, v.clone());
            Ok(())
        }
    }

    proptest! {
        #[test]
        fn views_stay_well_formed(inputs in script()) {
            let mut d = Directory::new(config(false));
            let mut now = ms(0);
            let mut seen = Seen::default();
            for input in inputs {
                match input {
                    Input::Connect(c) => d.handle_connect(now, ConnId(c)),
                    Input::Disconnect(c) => d.handle_disconnect(now, ConnId(c)),
                    Input::Advance(dt) => {
                        now = now + Duration::from_millis(dt);
                        d.handle_timeout(now);
                    }
                    Input::Reload(v) => d.handle_reload(now, config(v)),
                    Input::Frame(c, f) => d.handle_frame(now, ConnId(c), f),
                }
                while let Some((conn, f)) = d.poll_output() {
                    seen.check(conn, &f)?;
                }
                while let Some(conn) = d.poll_close() {
                    seen.nodes.remove(&conn);
                }
                prop_assert!(!matches!(d.poll_timeout(), Some(t) if t <= now), "no deadline left behind");
                prop_assert!(d.nodes().count() <= NAMES.len());
            }
        }
    }
}
