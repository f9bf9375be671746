//! Resume: daemons reporting their groups, to a directory that knows them
//! (reconciliation) and to one that restarted (recovery in the grace
//! period, then one view).

use super::*;

const CHAT: Ipv4Addr = Ipv4Addr::new(239, 192, 0, 1);

fn report(group: u32, name: &str, address: Ipv4Addr, port: u16) -> Resume {
    Resume {
        group: GroupId(group),
        group_name: name.into(),
        address,
        port,
        view: ViewId(1),
        sequencer: NodeId(1),
        since: ViewId(1),
        members: vec![],
    }
}

/// A report of the declared group "chat" (id 1).
fn chat(view: u64, sequencer: u32, members: &[(u32, &str)]) -> Resume {
    Resume {
        view: ViewId(view),
        sequencer: NodeId(sequencer),
        since: ViewId(1),
        members: members
            .iter()
            .map(|(m, n)| (MemberId(*m), n.to_string()))
            .collect(),
        ..report(1, "chat", CHAT, 7410)
    }
}

/// A directory that just restarted, with "chat" declared, and nodes a, b,
/// c back under their ids 1, 2, 3 (at t=0, its first input).
fn restarted(groups: Vec<GroupDecl>, dynamic: Option<DynamicDecl>) -> (Script, [NodeId; 3]) {
    let mut s = Script::started(settings(groups, dynamic));
    let ids = [
        s.node_again(1, "a", 1, NodeId(1)),
        s.node_again(2, "b", 1, NodeId(2)),
        s.node_again(3, "c", 1, NodeId(3)),
    ];
    assert_eq!(ids, [NodeId(1), NodeId(2), NodeId(3)]);
    (s, ids)
}

/// Keeps every node's lease running (a frame from each).
fn beat(s: &mut Script, conns: &[u64]) {
    for c in conns {
        s.frame(*c, ToDirectory::Heartbeat);
    }
}

mod known_directory {
    use super::*;

    /// a (x, v) and b (y) in chat, view 3; a's link dropped and came back.
    fn rebound() -> (Script, NodeId, NodeId) {
        let mut s = Script::new(settings(vec![decl("chat", 1)], None));
        let a = s.node(1, "a", 1);
        let b = s.node(2, "b", 1);
        s.join(1, "chat", 1, "x");
        s.join(2, "chat", 1, "y");
        s.join(1, "chat", 2, "v");
        s.d.handle_disconnect(s.now, ConnId(1));
        s.output();
        s.d.handle_connect(s.now, ConnId(3));
        s.frame(3, Script::hello_again("a", 1, a));
        let out = s.output();
        assert!(matches!(out[0], (ConnId(3), FromDirectory::Welcome { node, .. }) if node == a));
        // Views 1 and 2 (recent), then the current one, 3.
        assert_eq!(views(&out[1..]).len(), 3);
        (s, a, b)
    }

    #[test]
    fn a_node_that_takes_part_and_reports_its_members_changes_nothing() {
        let (mut s, _a, _b) = rebound();
        s.resume(3, chat(3, 1, &[(1, "x"), (2, "v")]));
        assert_eq!(s.output(), vec![]);
    }

    #[test]
    fn members_the_node_no_longer_has_leave() {
        let (mut s, a, b) = rebound();
        // v's app left while the link was down; the Leave never arrived.
        s.resume(3, chat(3, 1, &[(1, "x")]));
        let members = vec![member(a, 1, "x"), member(b, 1, "y")];
        assert_eq!(
            views(&s.output()),
            vec![
                (ConnId(3), ViewId(4), a, members.clone()),
                (ConnId(2), ViewId(4), a, members)
            ]
        );
    }

    #[test]
    fn a_node_not_attached_joins_with_its_members_above_both_view_ids() {
        let mut s = Script::new(settings(vec![decl("chat", 1)], None));
        let b = s.node(2, "b", 1);
        s.now = ms(900);
        s.frame(2, ToDirectory::Heartbeat);
        s.advance_to(ms(LEASE_MS));
        s.join(2, "chat", 1, "y");
        s.output();
        // a, which ran chat at view 5 under a directory that is gone.
        let a = s.node_again(1, "a", 1, NodeId(7));
        assert_eq!(a, NodeId(7));
        s.resume(1, chat(5, 7, &[(1, "x")]));
        let members = vec![member(b, 1, "y"), member(a, 1, "x")];
        // Sequencer b stays: it is attached.
        assert_eq!(
            views(&s.output()),
            vec![
                (ConnId(2), ViewId(6), b, members.clone()),
                (ConnId(1), ViewId(6), b, members)
            ]
        );
    }

    #[test]
    fn a_report_that_contradicts_the_configuration_ends_the_group_at_the_node() {
        let (mut s, [a, ..]) = restarted(vec![decl("chat", 1)], None);
        // chat moved to another address in the configuration.
        s.resume(1, report(1, "chat", Ipv4Addr::new(239, 192, 0, 77), 7410));
        // No dynamic groups: an unknown group cannot be created again.
        s.resume(1, report(5, "gone", Ipv4Addr::new(239, 192, 100, 1), 7420));
        assert_eq!(
            s.output(),
            vec![
                (ConnId(1), FromDirectory::GroupEnded { group: GroupId(1) }),
                (ConnId(1), FromDirectory::GroupEnded { group: GroupId(5) }),
            ]
        );
        s.advance_to(ms(LEASE_MS));
        assert_eq!(s.output(), vec![]);
        assert_eq!(s.d.current_view(GroupId(1)), None);
        let _ = a;
    }
}

mod restarted_directory {
    use super::*;

    #[test]
    fn three_reports_make_one_view_above_the_highest_with_the_sequencer_kept() {
        let (mut s, [a, b, c]) = restarted(vec![decl("chat", 1)], None);
        s.now = ms(100);
        s.resume(1, chat(7, 2, &[(1, "x")]));
        s.resume(2, chat(9, 2, &[(1, "y"), (2, "z")]));
        s.resume(3, chat(8, 1, &[(4, "w")]));
        assert_eq!(s.output(), vec![]);
        assert_eq!(s.d.current_view(GroupId(1)), None);
        assert_eq!(s.d.poll_timeout(), Some(ms(LEASE_MS)));
        s.advance_to(ms(LEASE_MS - 1));
        assert_eq!(s.output(), vec![]);
        s.advance_to(ms(LEASE_MS));
        let members = vec![
            member(a, 1, "x"),
            member(b, 1, "y"),
            member(b, 2, "z"),
            member(c, 4, "w"),
        ];
        assert_eq!(
            views(&s.output()),
            vec![
                (ConnId(1), ViewId(10), b, members.clone()),
                (ConnId(2), ViewId(10), b, members.clone()),
                (ConnId(3), ViewId(10), b, members),
            ]
        );
        let v = s.d.current_view(GroupId(1)).expect("view");
        assert_eq!((v.group, v.address, v.port), (GroupId(1), CHAT, 7410));
        // Only the leases are left to watch.
        assert_eq!(s.d.poll_timeout(), Some(ms(100 + LEASE_MS)));
    }

    #[test]
    fn a_sequencer_that_did_not_report_is_replaced_by_the_usual_rule() {
        let (mut s, [a, b, _]) = restarted(vec![decl("chat", 1)], None);
        s.now = ms(100);
        s.resume(2, chat(4, 9, &[(1, "y")]));
        s.resume(1, chat(4, 9, &[(2, "x"), (1, "w")]));
        s.advance_to(ms(LEASE_MS));
        // Members by node and member id, whoever reported first; the
        // earliest of them, a's, has the sequencer.
        let members = vec![member(a, 1, "w"), member(a, 2, "x"), member(b, 1, "y")];
        assert_eq!(
            views(&s.output()),
            vec![
                (ConnId(1), ViewId(5), a, members.clone()),
                (ConnId(2), ViewId(5), a, members),
            ]
        );
    }

    #[test]
    fn the_node_longest_in_the_order_takes_it_over_not_a_joiner() {
        let (mut s, [a, b, _]) = restarted(vec![decl("chat", 1)], None);
        s.now = ms(100);
        // b took part since view 2, a only since view 3; the sequencer (9)
        // did not come back.
        s.resume(
            1,
            Resume {
                since: ViewId(3),
                ..chat(4, 9, &[(1, "x")])
            },
        );
        s.resume(
            2,
            Resume {
                since: ViewId(2),
                ..chat(4, 9, &[(1, "y")])
            },
        );
        // A daemon with no history of the group joins meanwhile.
        let d = s.node_again(4, "d", 1, NodeId(4));
        s.join(4, "chat", 1, "z");
        beat(&mut s, &[3]);
        s.advance_to(ms(LEASE_MS));
        let out = views(&s.output());
        assert_eq!(out.len(), 3, "{out:?}");
        assert!(out
            .iter()
            .all(|(_, v, seq, _)| *v == ViewId(5) && *seq == b));
        assert!(
            out.iter().any(|(c, ..)| *c == ConnId(4)),
            "{d} is in the view"
        );
        let _ = a;
    }

    /// A view of chat (as the old directory published it) on `nodes`.
    fn old_view(s: &Script, view: u64, nodes: &[NodeId]) -> View {
        View {
            group: GroupId(1),
            group_name: "chat".into(),
            address: CHAT,
            port: 7410,
            view: ViewId(view),
            sequencer: nodes[0],
            max_message_bytes: 0,
            members: nodes.iter().map(|n| member(*n, 1, "m")).collect(),
            nodes: nodes.iter().map(|n| s.info(*n)).collect(),
        }
    }

    #[test]
    fn a_view_one_node_missed_is_handed_to_it_before_the_first_view() {
        let (mut s, [a, b, c]) = restarted(vec![decl("chat", 1)], None);
        // The old directory published view 4 while a's link was down: a
        // knows view 3, b view 4, and b tells both.
        s.now = ms(100);
        s.resume(1, chat(3, 1, &[(1, "m")]));
        s.resume(2, chat(4, 1, &[(1, "m")]));
        s.frame(2, ToDirectory::PastView(old_view(&s, 3, &[a, b])));
        s.frame(2, ToDirectory::PastView(old_view(&s, 4, &[a, b])));
        // Not taken: c does not take part in chat, and a view that does not
        // list its teller.
        s.frame(3, ToDirectory::PastView(old_view(&s, 2, &[a, c])));
        s.frame(1, ToDirectory::PastView(old_view(&s, 1, &[b])));
        beat(&mut s, &[3]);
        s.advance_to(ms(LEASE_MS));
        let got: Vec<(ConnId, ViewId)> = views(&s.output())
            .into_iter()
            .map(|(conn, view, ..)| (conn, view))
            .collect();
        // Each node gets the views past the one it reported.
        let expected: Vec<(ConnId, ViewId)> = [(1, 4), (1, 5), (2, 5)]
            .into_iter()
            .map(|(c, v)| (ConnId(c), ViewId(v)))
            .collect();
        assert_eq!(got, expected);
    }

    /// The old directory declared c dead and went on without it in view
    /// 5 (b tells of it), then restarted before c came back: c reports
    /// view 4 as if it had stayed. It must drop the group (its state of
    /// the order is stale) and join again; the group recovers without it.
    #[test]
    fn a_node_the_group_went_on_without_drops_the_group() {
        let (mut s, [a, b, c]) = restarted(vec![decl("chat", 1)], None);
        s.now = ms(100);
        s.resume(1, chat(5, 1, &[(1, "m")]));
        s.resume(2, chat(5, 1, &[(1, "m")]));
        s.frame(2, ToDirectory::PastView(old_view(&s, 5, &[a, b])));
        s.resume(3, chat(4, 1, &[(1, "m")]));
        beat(&mut s, &[1, 2, 3]);
        s.advance_to(ms(LEASE_MS));
        let out = s.output();
        assert!(
            out.contains(&(ConnId(3), FromDirectory::GroupEnded { group: GroupId(1) })),
            "{out:?}"
        );
        let recovered: Vec<(ConnId, ViewId, Vec<NodeId>)> = out
            .iter()
            .filter_map(|(conn, f)| match f {
                FromDirectory::View(v) => {
                    Some((*conn, v.view, v.nodes.iter().map(|n| n.node).collect()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            recovered,
            vec![
                (ConnId(1), ViewId(6), vec![a, b]),
                (ConnId(2), ViewId(6), vec![a, b])
            ]
        );
        let _ = c;
    }

    #[test]
    fn past_views_are_not_taken_outside_a_recovery() {
        let mut s = Script::new(settings(vec![decl("chat", 1)], None));
        let a = s.node(1, "a", 1);
        s.join(1, "chat", 1, "m");
        assert_eq!(views(&s.output()).len(), 1);
        // An old view 7 (numbers this directory has not used yet).
        s.frame(1, ToDirectory::PastView(old_view(&s, 7, &[a])));
        assert_eq!(s.output(), vec![]);
        // Back on a new link, a is told this directory's views only.
        s.d.handle_disconnect(s.now, ConnId(1));
        s.d.handle_connect(s.now, ConnId(2));
        s.frame(2, Script::hello_again("a", 1, a));
        let out = s.output();
        let got: Vec<ViewId> = out
            .iter()
            .filter_map(|(_, f)| match f {
                FromDirectory::View(v) => Some(v.view),
                _ => None,
            })
            .collect();
        assert_eq!(got, vec![ViewId(1)]);
    }

    #[test]
    fn joins_wait_for_the_recovery_and_join_its_first_view() {
        let (mut s, [a, ..]) = restarted(vec![decl("chat", 1), decl("idle", 2)], None);
        s.resume(1, chat(3, 1, &[(1, "x")]));
        // A daemon that ran no group before the restart has an app join
        // chat and idle before the grace ends.
        let d = s.node_again(4, "d", 1, NodeId(4));
        s.now = ms(500);
        s.join(4, "chat", 1, "new");
        s.join(4, "idle", 2, "new");
        // A join refused once taken (its name is taken on a).
        s.join(1, "chat", 5, "x");
        assert_eq!(s.output(), vec![]);
        assert_eq!(s.d.poll_timeout(), Some(ms(LEASE_MS)));
        beat(&mut s, &[2, 3]);
        s.advance_to(ms(LEASE_MS));
        let out = s.output();
        assert!(matches!(
            &out[0],
            (ConnId(1), FromDirectory::JoinRefused { member: MemberId(5), reason, .. }) if reason.contains("`a:x`")
        ));
        let members = vec![member(a, 1, "x"), member(d, 1, "new")];
        assert_eq!(
            views(&out[1..3]),
            vec![
                (ConnId(1), ViewId(4), a, members.clone()),
                (ConnId(4), ViewId(4), a, members)
            ]
        );
        assert_eq!(
            views(&out[3..]),
            vec![(ConnId(4), ViewId(1), d, vec![member(d, 2, "new")])]
        );
    }

    #[test]
    fn without_a_restart_in_sight_joins_are_not_held() {
        let mut s = Script::new(settings(vec![decl("chat", 1)], None));
        let a = s.node(1, "a", 1);
        s.join(1, "chat", 1, "x");
        assert_eq!(
            views(&s.output()),
            vec![(ConnId(1), ViewId(1), a, vec![member(a, 1, "x")])]
        );
    }

    #[test]
    fn a_declared_group_is_matched_by_name_and_takes_the_reported_id() {
        // The file now declares news before chat: at start chat got id 2.
        let mut chat_decl = decl("chat", 1);
        chat_decl.allow_users = Some(vec!["alice".into()]);
        let (mut s, [a, b, _]) = restarted(vec![decl("news", 2), chat_decl], None);
        assert_eq!(s.d.group_id("chat"), Some(GroupId(2)));
        s.now = ms(100);
        s.resume(1, chat(6, 1, &[(1, "x")]));
        // chat takes id 1 back; news moves out of its way.
        assert_eq!(s.d.group_id("chat"), Some(GroupId(1)));
        assert_eq!(s.d.group_id("news"), Some(GroupId(3)));
        beat(&mut s, &[2, 3]);
        s.advance_to(ms(LEASE_MS));
        assert_eq!(
            views(&s.output()),
            vec![(ConnId(1), ViewId(7), a, vec![member(a, 1, "x")])]
        );
        // news reported late, under its old id 2 (free again): taken at once.
        let news = report(2, "news", Ipv4Addr::new(239, 192, 0, 2), 7410);
        s.resume(
            2,
            Resume {
                view: ViewId(3),
                sequencer: b,
                since: ViewId(1),
                members: vec![(MemberId(1), "y".into())],
                ..news
            },
        );
        assert_eq!(
            views(&s.output()),
            vec![(ConnId(2), ViewId(4), b, vec![member(b, 1, "y")])]
        );
        assert_eq!(s.d.group_id("news"), Some(GroupId(2)));
        // chat keeps the configuration's access rules.
        s.join_as(2, "chat", 2, "m", "mallory", &[]);
        assert!(matches!(
            s.output().as_slice(),
            [(ConnId(2), FromDirectory::JoinRefused { reason, .. })] if reason.contains("not allowed")
        ));
        // New groups get ids above every id seen.
        s.d.handle_reload(
            s.now,
            settings(
                vec![decl("news", 2), decl("chat", 1), decl("more", 3)],
                None,
            ),
        );
        assert_eq!(s.d.group_id("more"), Some(GroupId(4)));
    }

    #[test]
    fn a_dynamic_group_is_created_again_with_its_id_and_address() {
        let (mut s, [a, ..]) = restarted(vec![], Some(pool()));
        let d1 = Ipv4Addr::new(239, 192, 100, 2);
        s.now = ms(100);
        s.resume(
            1,
            Resume {
                view: ViewId(3),
                members: vec![(MemberId(1), "x".into())],
                ..report(9, "d1", d1, 7420)
            },
        );
        beat(&mut s, &[2, 3]);
        s.advance_to(ms(LEASE_MS));
        let out = s.output();
        assert_eq!(
            out,
            vec![(
                ConnId(1),
                FromDirectory::View(View {
                    group: GroupId(9),
                    group_name: "d1".into(),
                    address: d1,
                    port: 7420,
                    view: ViewId(4),
                    sequencer: a,
                    max_message_bytes: 0,
                    members: vec![member(a, 1, "x")],
                    nodes: vec![s.info(a)],
                })
            )]
        );
        // Its address is in use; new groups get ids above 9.
        s.join(2, "d2", 1, "y");
        s.join(2, "d3", 2, "y");
        let out = s.output();
        assert!(matches!(
            &out[0],
            (ConnId(2), FromDirectory::View(v)) if v.group == GroupId(10) && v.address == Ipv4Addr::new(239, 192, 100, 1)
        ));
        assert!(matches!(
            &out[1],
            (ConnId(2), FromDirectory::JoinRefused { reason, .. }) if reason.contains("pool")
        ));
    }

    #[test]
    fn a_late_report_joins_the_recovered_group_with_a_new_view() {
        let (mut s, [a, b, _]) = restarted(vec![decl("chat", 1)], None);
        s.resume(1, chat(8, 1, &[(1, "x")]));
        s.now = ms(600);
        beat(&mut s, &[1, 2]);
        s.advance_to(ms(LEASE_MS));
        assert_eq!(views(&s.output()).len(), 1);
        s.resume(2, chat(7, 1, &[(1, "y")]));
        let members = vec![member(a, 1, "x"), member(b, 1, "y")];
        assert_eq!(
            views(&s.output()),
            vec![
                (ConnId(1), ViewId(10), a, members.clone()),
                (ConnId(2), ViewId(10), a, members)
            ]
        );
    }

    #[test]
    fn nodes_and_members_gone_during_the_recovery_are_left_out() {
        let (mut s, [a, ..]) = restarted(vec![decl("chat", 1)], None);
        s.resume(1, chat(2, 2, &[(1, "x"), (2, "gone")]));
        s.resume(2, chat(2, 2, &[(1, "y")]));
        s.frame(
            1,
            ToDirectory::Leave {
                group: GroupId(1),
                member: MemberId(2),
            },
        );
        s.frame(2, ToDirectory::Goodbye);
        assert_eq!(s.output(), vec![]);
        assert_eq!(s.closes(), vec![ConnId(2)]);
        s.now = ms(500);
        beat(&mut s, &[1, 3]);
        s.advance_to(ms(LEASE_MS));
        // b sequenced but is gone: a takes over.
        assert_eq!(
            views(&s.output()),
            vec![(ConnId(1), ViewId(3), a, vec![member(a, 1, "x")])]
        );
    }

    #[test]
    fn a_recovery_that_everyone_left_ends_without_a_view() {
        let (mut s, _) = restarted(vec![], Some(pool()));
        let d1 = Ipv4Addr::new(239, 192, 100, 1);
        s.resume(1, report(4, "d1", d1, 7420));
        assert!(s.d.group_id("d1").is_some());
        s.frame(1, ToDirectory::Detach { group: GroupId(4) });
        assert_eq!(take_ended(&mut s.output()), vec![(ConnId(1), GroupId(4))]);
        assert_eq!(s.d.group_id("d1"), None);
        assert_eq!(s.d.poll_timeout(), Some(ms(LEASE_MS)));
        beat(&mut s, &[1, 2, 3]);
        s.advance_to(ms(LEASE_MS));
        assert_eq!(s.output(), vec![]);
    }
}
