//! The host's drop counters (`chorusctl stats`): each datagram or message
//! the host does not take in is counted under its reason, and under no other.

use chorus_proto::host::{Credentials, Host, HostSettings, HostStats, SessionId};
use chorus_proto::wire::app::ToDaemon;
use chorus_proto::wire::datagram::{self, Data, DataMsg, Datagram, OrderBatch, OrderEntry};
use chorus_proto::wire::directory::{FromDirectory, MemberInfo, NodeInfo, View};
use chorus_proto::*;
use std::net::{Ipv4Addr, SocketAddrV4};

const CLUSTER: ClusterId = ClusterId(5);
const GROUP: GroupId = GroupId(1);
/// The host's receive window, in messages.
const WINDOW: usize = 8;

fn ip(n: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, n as u8)
}

fn node(n: u32) -> NodeInfo {
    NodeInfo {
        node: NodeId(n),
        name: format!("h{n}"),
        incarnation: Incarnation(100 + u64::from(n)),
        ip: ip(n),
        data_port: 7001,
        order_port: 7002,
    }
}

/// Node 1, welcomed into the cluster, with member `m` in group `g` (nodes 1
/// and 2; node `sequencer` sequences it).
fn host(sequencer: u32) -> Host {
    let mut h = Host::new(HostSettings {
        node_name: "h1".into(),
        incarnation: Incarnation(101),
        ip: ip(1),
        data_port: 7001,
        order_port: 7002,
        max_datagram_bytes: 1400,
        max_message_bytes: 1 << 20,
        send_window_messages: 8,
        receive_window_messages: WINDOW,
        ack_interval: Duration::from_millis(5),
        retransmit: Duration::from_millis(30),
        flow_budget_bytes: 1 << 20,
        directory_label: String::new(),
        version: "test".into(),
    });
    let t = Instant::ZERO;
    h.handle_directory_connected(t);
    h.handle_directory(
        t,
        FromDirectory::Welcome {
            node: NodeId(1),
            cluster: CLUSTER,
            lease_ms: 1000,
            heartbeat_ms: 250,
            epoch: chorus_proto::Epoch(0),
        },
    );
    h.handle_app_connect(t, SessionId(1), Credentials::default());
    let join = ToDaemon::Join {
        request: 1,
        group: "g".into(),
        name: "m".into(),
    };
    h.handle_app(t, SessionId(1), join);
    let view = View {
        group: GROUP,
        group_name: "g".into(),
        address: Ipv4Addr::new(239, 1, 2, 3),
        port: 7000,
        view: ViewId(1),
        sequencer: NodeId(sequencer),
        max_message_bytes: 0,
        members: [1, 2]
            .map(|n| MemberInfo {
                node: NodeId(n),
                member: MemberId(1),
                name: "m".into(),
            })
            .to_vec(),
        nodes: vec![node(1), node(2)],
    };
    h.handle_directory(t, FromDirectory::View(view));
    assert!(h.group(GROUP).is_some(), "joined");
    h
}

/// DATA of node 2's stream (which starts at 1) in `group`, encoded for
/// `cluster`: `count` messages from `first`.
fn data(cluster: ClusterId, group: GroupId, first: u64, count: usize) -> Vec<u8> {
    let d = Data {
        group,
        sender: NodeId(2),
        incarnation: Incarnation(102),
        stream_start: SenderSeq(1),
        first_seq: SenderSeq(first),
        msgs: (0..count)
            .map(|_| DataMsg {
                order: Order::Total,
                frag: Frag::Whole,
                sender_name: "m",
                payload: b"hello",
            })
            .collect(),
    };
    let mut out = Vec::new();
    datagram::encode(&Datagram::Data(d), cluster, &mut out);
    out
}

/// The drop counters, in their wire order.
fn drops(s: HostStats) -> [u64; 6] {
    [
        s.dropped_other_cluster,
        s.dropped_no_group,
        s.dropped_duplicate,
        s.dropped_beyond_window,
        s.dropped_before_base,
        s.sessions_dropped_slow,
    ]
}

/// Feeds `bytes` from node 2 and returns the drop counters' increases.
fn feed(h: &mut Host, bytes: &[u8]) -> [u64; 6] {
    let before = drops(h.stats());
    h.handle_datagram(Instant::ZERO, SocketAddrV4::new(ip(2), 7001), bytes);
    let after = drops(h.stats());
    std::array::from_fn(|i| after[i] - before[i])
}

#[test]
fn each_drop_is_counted_under_its_reason_only() {
    let mut h = host(1);
    let fresh = data(CLUSTER, GROUP, 1, 2);
    assert_eq!(feed(&mut h, &fresh), [0; 6], "new messages are no drop");
    assert_eq!(feed(&mut h, &fresh), [0, 0, 2, 0, 0, 0], "duplicates");
    // Another node's stream holds its window and a whole message more.
    let reach = WINDOW + h.peer_message_pieces(0);
    let past = data(CLUSTER, GROUP, 3 + reach as u64, 1);
    assert_eq!(feed(&mut h, &past), [0, 0, 0, 1, 0, 0], "beyond the window");
    let other = data(ClusterId(6), GROUP, 3, 1);
    assert_eq!(feed(&mut h, &other), [1, 0, 0, 0, 0, 0], "another cluster");
    let elsewhere = data(CLUSTER, GroupId(9), 3, 1);
    assert_eq!(
        feed(&mut h, &elsewhere),
        [0, 1, 0, 0, 0, 0],
        "no such group"
    );
    assert_eq!(
        feed(&mut h, b"junk"),
        [0; 6],
        "malformed is its own counter"
    );
    assert_eq!(h.stats().malformed_in, 1);
    assert_eq!(h.stats().datagrams_in, 6, "every datagram is counted in");

    h.note_session_dropped_slow();
    assert_eq!(drops(h.stats()), [1, 1, 2, 1, 0, 1]);
    assert_eq!(h.stats_reply().counters, h.stats(), "stats carry them");
}

#[test]
fn messages_before_where_the_order_starts_a_stream_are_counted() {
    // Node 2 sequences; its ORDER starts node 2's stream for us at
    // position 3 (as for a member that joined after 1 and 2 were sent).
    let mut h = host(2);
    let batch = OrderBatch {
        group: GROUP,
        sequencer: NodeId(2),
        sequencer_incarnation: Incarnation(102),
        view: ViewId(1),
        view_start: GlobalSeq(1),
        sequencer_start: GlobalSeq(1),
        stable: GlobalSeq(0),
        first: GlobalSeq(1),
        entries: vec![OrderEntry {
            sender: NodeId(2),
            sender_incarnation: Incarnation(102),
            first: SenderSeq(3),
            count: 1,
        }],
    };
    let mut order = Vec::new();
    datagram::encode(&Datagram::Order(batch), CLUSTER, &mut order);
    assert_eq!(feed(&mut h, &order), [0; 6]);
    // A repair of 1..=3 for another member reaches us too: 3 is ours.
    let repair = data(CLUSTER, GROUP, 1, 3);
    assert_eq!(feed(&mut h, &repair), [0, 0, 0, 0, 2, 0]);
    assert_eq!(
        feed(&mut h, &repair),
        [0, 0, 1, 0, 2, 0],
        "3 is held already"
    );
}

/// Every datagram the host sends now, by destination.
fn sent(h: &mut Host) -> Vec<SocketAddrV4> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    while let Some(dest) = h.poll_transmit(&mut buf, Instant::ZERO) {
        out.push(dest);
    }
    out
}

fn nak(from: u32) -> Vec<u8> {
    let n = datagram::Nak {
        group: GROUP,
        from: NodeId(from),
        from_incarnation: Incarnation(100 + u64::from(from)),
        sender: NodeId(2),
        sender_incarnation: Incarnation(102),
        ranges: vec![(SenderSeq(1), SenderSeq(2))],
    };
    let mut out = Vec::new();
    datagram::encode(&Datagram::Nak(n), CLUSTER, &mut out);
    out
}

#[test]
fn a_nak_is_answered_only_to_a_requester_in_the_view_at_its_view_address() {
    let mut h = host(1);
    assert_eq!(feed(&mut h, &data(CLUSTER, GROUP, 1, 2)), [0; 6]);
    let _ = sent(&mut h);
    let spoofed = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 66), 9999);
    // A requester outside the view: nothing is sent, to anyone.
    h.handle_datagram(Instant::ZERO, spoofed, &nak(9));
    assert_eq!(
        sent(&mut h),
        vec![],
        "a NAK from outside the view was answered"
    );
    // A member's NAK from another source: the repair goes to the member.
    h.handle_datagram(Instant::ZERO, spoofed, &nak(2));
    let dests = sent(&mut h);
    assert!(!dests.is_empty(), "a member's NAK was not answered");
    assert!(
        dests.iter().all(|d| *d == SocketAddrV4::new(ip(2), 7001)),
        "repairs went to {dests:?}"
    );
}

#[test]
fn refused_datagrams_are_counted_as_replays_or_unauthentic() {
    use chorus_proto::wire::seal::{KeyId, OpenError};
    let mut h = host(1);
    let from = SocketAddrV4::new(ip(2), 7001);
    h.note_refused(from, &OpenError::Forged);
    h.note_refused(from, &OpenError::UnknownKey(KeyId(3)));
    h.note_refused(from, &OpenError::Replayed(4));
    h.note_refused(from, &OpenError::TooOld(1));
    h.note_refused(from, &OpenError::NotSealed(1));
    let s = h.stats();
    assert_eq!((s.refused_unauthentic, s.refused_replayed), (3, 2));
    assert_eq!(s.datagrams_in, 5);
    assert_eq!(drops(s), [0; 6], "no drop counter moved");
    // The sequencer thread's refusals add to the same counters.
    h.note_refused_elsewhere(4, 1);
    let s = h.stats();
    assert_eq!((s.refused_unauthentic, s.refused_replayed), (7, 3));
    assert_eq!(s.datagrams_in, 5, "only the host's own sockets' datagrams");
}

/// Issue 14 made repairs go only to nodes of the view. A node that joined
/// in a view this host has not installed yet (its marker waits, perhaps
/// behind a safe message whose stability waits for that very node) is a
/// member to the directory all the same, and must be answered, or the
/// group stops (simulator seeds 303731 and 403163 with process faults).
#[test]
fn a_nak_from_a_node_of_a_view_waiting_for_its_marker_is_answered() {
    let mut h = host(2);
    assert_eq!(feed(&mut h, &data(CLUSTER, GROUP, 1, 2)), [0; 6]);
    let _ = sent(&mut h);
    let proposed = View {
        group: GROUP,
        group_name: "g".into(),
        address: Ipv4Addr::new(239, 1, 2, 3),
        port: 7000,
        view: ViewId(2),
        sequencer: NodeId(2),
        max_message_bytes: 0,
        members: [1, 2, 3]
            .map(|n| MemberInfo {
                node: NodeId(n),
                member: MemberId(1),
                name: "m".into(),
            })
            .to_vec(),
        nodes: vec![node(1), node(2), node(3)],
    };
    h.handle_directory(Instant::ZERO, FromDirectory::View(proposed));
    let _ = sent(&mut h);
    let spoofed = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 66), 9999);
    h.handle_datagram(Instant::ZERO, spoofed, &nak(3));
    let dests = sent(&mut h);
    assert!(
        !dests.is_empty(),
        "a NAK from a node of the pending view was not answered"
    );
    assert!(
        dests.iter().all(|d| *d == SocketAddrV4::new(ip(3), 7001)),
        "repairs went to {dests:?}"
    );
    // Still no one outside every view the directory told.
    h.handle_datagram(Instant::ZERO, spoofed, &nak(9));
    assert_eq!(sent(&mut h), vec![], "a NAK from outside was answered");
}
