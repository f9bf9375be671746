//! Requests that need the directory, with a bound set (`host::waits`): a
//! join or listing made before the node is registered is queued and sent
//! at the Welcome; one the directory does not answer fails with
//! `Unavailable` once the bound passes, and not before; without a bound the
//! host behaves as it always did.

use chorus_proto::host::{Credentials, Host, HostSettings, SessionId};
use chorus_proto::wire::app::{ErrorCode, FromDaemon, ToDaemon};
use chorus_proto::wire::directory::{FromDirectory, MemberInfo, NodeInfo, ToDirectory, View};
use chorus_proto::*;
use std::net::Ipv4Addr;

const BOUND: Duration = Duration::from_millis(5000);
const APP: SessionId = SessionId(1);

fn ms(n: u64) -> Instant {
    Instant::ZERO + Duration::from_millis(n)
}

fn host(bound: Option<Duration>) -> Host {
    let mut h = Host::new(HostSettings {
        node_name: "h1".into(),
        incarnation: Incarnation(101),
        ip: Ipv4Addr::new(10, 0, 0, 1),
        data_port: 7001,
        order_port: 7002,
        max_datagram_bytes: 1400,
        max_message_bytes: 1 << 20,
        send_window_messages: 8,
        receive_window_messages: 8,
        ack_interval: Duration::from_millis(5),
        retransmit: Duration::from_millis(30),
        flow_budget_bytes: 1 << 20,
        directory_label: String::new(),
        version: "test".into(),
    });
    h.set_directory_wait(bound);
    h.handle_app_connect(ms(0), APP, Credentials::default());
    h
}

fn welcome(h: &mut Host, at: Instant) {
    welcome_with_lease(h, at, 1500);
}

fn welcome_with_lease(h: &mut Host, at: Instant, lease_ms: u32) {
    h.handle_directory(
        at,
        FromDirectory::Welcome {
            node: NodeId(1),
            cluster: ClusterId(5),
            lease_ms,
            heartbeat_ms: lease_ms / 4,
            epoch: Epoch(0),
        },
    );
}

fn join(h: &mut Host, at: Instant, request: u32) {
    let req = ToDaemon::Join {
        request,
        group: "g".into(),
        name: "m".into(),
    };
    h.handle_app(at, APP, req);
}

fn view(member: u32) -> View {
    let me = NodeInfo {
        node: NodeId(1),
        name: "h1".into(),
        incarnation: Incarnation(101),
        ip: Ipv4Addr::new(10, 0, 0, 1),
        data_port: 7001,
        order_port: 7002,
    };
    View {
        group: GroupId(1),
        group_name: "g".into(),
        address: Ipv4Addr::new(239, 1, 2, 3),
        port: 7000,
        view: ViewId(1),
        sequencer: NodeId(1),
        max_message_bytes: 0,
        members: vec![MemberInfo {
            node: NodeId(1),
            member: MemberId(member),
            name: "m".into(),
        }],
        nodes: vec![me],
    }
}

fn to_directory(h: &mut Host) -> Vec<ToDirectory> {
    std::iter::from_fn(|| h.poll_directory()).collect()
}

fn to_app(h: &mut Host) -> Vec<FromDaemon> {
    std::iter::from_fn(|| h.poll_app())
        .map(|(_, m)| m)
        .collect()
}

/// Runs the host's timers at `at` if any is due.
fn tick(h: &mut Host, at: Instant) {
    if h.poll_timeout().is_some_and(|t| t <= at) {
        h.handle_timeout(at);
    }
}

fn unavailable(replies: &[FromDaemon], request: u32) -> Option<String> {
    replies.iter().find_map(|r| match r {
        FromDaemon::Error {
            request: r,
            code: ErrorCode::Unavailable,
            message,
        } if *r == request => Some(message.clone()),
        _ => None,
    })
}

#[test]
fn a_join_made_while_registering_is_sent_at_the_welcome_and_served() {
    let mut h = host(Some(BOUND));
    h.handle_directory_connected(ms(0));
    let _ = to_directory(&mut h); // the Hello
    join(&mut h, ms(10), 7);
    assert!(to_app(&mut h).is_empty(), "the join waits, no refusal");
    assert!(
        !to_directory(&mut h)
            .iter()
            .any(|f| matches!(f, ToDirectory::Join { .. })),
        "nothing sent before the Welcome"
    );
    welcome(&mut h, ms(1500));
    let sent = to_directory(&mut h);
    let member = sent.iter().find_map(|f| match f {
        ToDirectory::Join { member, group, .. } if group == "g" => Some(*member),
        _ => None,
    });
    let member = member.expect("the queued join goes out with the Welcome");
    h.handle_directory(ms(1510), FromDirectory::View(view(member.0)));
    tick(&mut h, ms(1520));
    let replies = to_app(&mut h);
    assert!(
        replies
            .iter()
            .any(|r| matches!(r, FromDaemon::Ok { request: 7 })),
        "{replies:?}"
    );
    // Answered: the bound passing later changes nothing.
    tick(&mut h, ms(20_000));
    assert!(unavailable(&to_app(&mut h), 7).is_none());
}

#[test]
fn a_join_the_directory_never_answers_fails_at_the_bound() {
    let mut h = host(Some(BOUND));
    h.handle_directory_connected(ms(0));
    welcome(&mut h, ms(0));
    let _ = to_directory(&mut h);
    join(&mut h, ms(100), 3);
    assert!(to_directory(&mut h)
        .iter()
        .any(|f| matches!(f, ToDirectory::Join { .. })));
    assert_eq!(h.poll_timeout(), Some(ms(5100)));
    tick(&mut h, ms(5099));
    assert!(
        unavailable(&to_app(&mut h), 3).is_none(),
        "not before the bound"
    );
    tick(&mut h, ms(5100));
    let why = unavailable(&to_app(&mut h), 3).expect("refused at the bound");
    assert!(why.contains("did not answer the join within 5 s"), "{why}");
    // The session may join again (the first member is gone here).
    join(&mut h, ms(5200), 4);
    assert!(to_app(&mut h).is_empty());
}

#[test]
fn a_join_while_never_registered_fails_at_the_bound_saying_so() {
    let mut h = host(Some(BOUND));
    join(&mut h, ms(0), 1);
    h.handle_app(ms(0), APP, ToDaemon::Groups { request: 2 });
    assert!(to_app(&mut h).is_empty());
    // A link that comes and goes meanwhile does not fail the queued join.
    h.handle_directory_connected(ms(100));
    h.handle_directory_lost(ms(200));
    assert!(to_app(&mut h).is_empty());
    tick(&mut h, ms(5000));
    let replies = to_app(&mut h);
    let why = unavailable(&replies, 1).expect("join refused");
    assert!(why.contains("not get registered"), "{why}");
    assert!(unavailable(&replies, 2).is_some(), "{replies:?}");
    // Registered later: nothing of those requests is sent.
    welcome(&mut h, ms(6000));
    assert!(!to_directory(&mut h)
        .iter()
        .any(|f| matches!(f, ToDirectory::Join { .. } | ToDirectory::ListGroups { .. })));
}

#[test]
fn a_leave_the_directory_never_confirms_fails_at_the_bound_and_the_member_is_gone() {
    let mut h = host(Some(BOUND));
    h.handle_directory_connected(ms(0));
    welcome(&mut h, ms(0));
    join(&mut h, ms(0), 1);
    let member = to_directory(&mut h)
        .iter()
        .find_map(|f| match f {
            ToDirectory::Join { member, .. } => Some(*member),
            _ => None,
        })
        .expect("join sent");
    h.handle_directory(ms(10), FromDirectory::View(view(member.0)));
    tick(&mut h, ms(20));
    let _ = to_app(&mut h);
    let leave = ToDaemon::Leave {
        request: 2,
        group: "g".into(),
    };
    h.handle_app(ms(1000), APP, leave);
    tick(&mut h, ms(6000));
    let why = unavailable(&to_app(&mut h), 2).expect("leave refused at the bound");
    assert!(why.contains("did not confirm the leave"), "{why}");
    // The member is gone here: sending is refused as for a non-member.
    let send = ToDaemon::Send {
        request: 3,
        group: "g".into(),
        order: Order::Total,
        payload: b"x".to_vec(),
    };
    h.handle_app(ms(6001), APP, send);
    assert!(to_app(&mut h).iter().any(|r| matches!(
        r,
        FromDaemon::Error {
            request: 3,
            code: ErrorCode::NoSuchGroup,
            ..
        }
    )));
}

#[test]
fn a_directory_with_a_long_lease_gets_two_leases_to_answer() {
    let mut h = host(Some(BOUND));
    h.handle_directory_connected(ms(0));
    welcome_with_lease(&mut h, ms(0), 4000);
    assert_eq!(h.directory_wait(), Some(Duration::from_millis(8000)));
    let _ = to_directory(&mut h);
    join(&mut h, ms(0), 1);
    tick(&mut h, ms(7999));
    assert!(
        unavailable(&to_app(&mut h), 1).is_none(),
        "within two leases"
    );
    tick(&mut h, ms(8000));
    let why = unavailable(&to_app(&mut h), 1).expect("refused after two leases");
    assert!(why.contains("within 8 s"), "{why}");
}

#[test]
fn without_a_bound_a_join_while_unregistered_is_refused_at_once() {
    let mut h = host(None);
    join(&mut h, ms(0), 1);
    let why = unavailable(&to_app(&mut h), 1).expect("refused at once");
    assert_eq!(why, "directory unreachable");
    assert_eq!(h.poll_timeout(), None, "no timer armed");
}
