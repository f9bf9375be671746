//! Epochs: a replicated directory's leader serves under its Raft term. It
//! says so in every Welcome, and refuses a daemon that was welcomed under a
//! later epoch: such a daemon has met a newer leader, so this one is
//! deposed and must hand out nothing more.

use super::*;
use crate::ids::Epoch;

fn hello_in_epoch(name: &str, epoch: u64) -> ToDirectory {
    let mut h = Script::hello_frame(name, 1);
    if let ToDirectory::Hello { epoch: e, .. } = &mut h {
        *e = Epoch(epoch);
    }
    h
}

fn leader(epoch: u64) -> Script {
    let mut s = Script::new(settings(vec![decl("chat", 10)], None));
    s.d = Directory::new(settings(vec![decl("chat", 10)], None))
        .without_grace()
        .with_epoch(Epoch(epoch));
    s
}

#[test]
fn the_welcome_carries_the_leaders_epoch() {
    let mut s = leader(7);
    s.d.handle_connect(s.now, ConnId(1));
    s.frame(1, hello_in_epoch("a", 5));
    let out = s.output();
    assert!(
        matches!(
            out.as_slice(),
            [(
                ConnId(1),
                FromDirectory::Welcome {
                    epoch: Epoch(7),
                    ..
                }
            )]
        ),
        "{out:?}"
    );
}

#[test]
fn a_daemon_from_a_later_epoch_is_refused_by_a_deposed_leader() {
    let mut s = leader(7);
    s.d.handle_connect(s.now, ConnId(1));
    s.frame(1, hello_in_epoch("a", 8));
    let out = s.output();
    assert!(
        matches!(out.as_slice(), [(ConnId(1), FromDirectory::Refused { reason })] if reason.contains("deposed")),
        "{out:?}"
    );
    assert_eq!(s.closes(), vec![ConnId(1)]);
    assert!(s.d.node_by_name("a").is_none());
}

#[test]
fn a_single_directory_takes_any_epoch() {
    // Epoch 0: unreplicated. A daemon that once talked to replicas (a site
    // that went back to one directory) is not locked out.
    let mut s = Script::new(settings(vec![decl("chat", 10)], None));
    s.d.handle_connect(s.now, ConnId(1));
    s.frame(1, hello_in_epoch("a", 3));
    let out = s.output();
    assert!(
        matches!(
            out.as_slice(),
            [(
                ConnId(1),
                FromDirectory::Welcome {
                    epoch: Epoch(0),
                    ..
                }
            )]
        ),
        "{out:?}"
    );
}

#[test]
fn a_new_leader_hands_out_ids_above_the_floors_and_keeps_declared_ones() {
    let d = Directory::new(settings(vec![decl("chat", 10)], Some(pool())))
        .without_grace()
        .with_epoch(Epoch(3))
        .with_id_floors(IdFloors {
            node: 2000,
            group: 500,
        });
    let mut s = leader(3);
    s.d = d;
    assert_eq!(s.d.group_id("chat"), Some(GroupId(1)), "declared ids stay");
    let a = s.node(1, "a", 1);
    assert_eq!(a, NodeId(2001));
    s.join(1, "dyn", 1, "m");
    s.output();
    assert_eq!(s.d.group_id("dyn"), Some(GroupId(501)));
    assert_eq!(
        s.d.id_high_water(),
        IdFloors {
            node: 2001,
            group: 501
        }
    );
    // A daemon asking its previous id back still gets it.
    let b = s.node_again(2, "b", 1, NodeId(7));
    assert_eq!(b, NodeId(7));
}

#[test]
fn a_new_leader_numbers_a_recovered_group_above_the_reports_with_a_margin() {
    // A deposed leader may have handed views 6.. to daemons cut off with
    // it; nobody here reported them, so the first view keeps clear.
    let mut s = Script::started(settings(vec![decl("chat", 10)], None));
    s.d = Directory::new(settings(vec![decl("chat", 10)], None))
        .with_epoch(Epoch(4))
        .with_view_margin(64);
    let a = s.node_again(1, "a", 1, NodeId(1));
    s.frame(
        1,
        ToDirectory::Resume(crate::wire::directory::Resume {
            group: GroupId(1),
            group_name: "chat".into(),
            address: Ipv4Addr::new(239, 192, 0, 10),
            port: 7410,
            view: ViewId(5),
            sequencer: a,
            since: ViewId(1),
            members: vec![(MemberId(1), "x".into())],
        }),
    );
    s.output();
    s.advance_to(ms(LEASE_MS / 2));
    s.frame(1, ToDirectory::Heartbeat);
    s.advance_to(ms(LEASE_MS + 1));
    let v = s.d.current_view(GroupId(1)).expect("a view");
    assert_eq!(v.view, ViewId(5 + 64 + 1));
    assert_eq!(v.sequencer, a, "the sequencer stays: no flush");
}
