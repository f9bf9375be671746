//! Packet scripts for one group: feed datagrams and views, read the exact
//! commands the group produces.

use super::*;
use crate::ids::{ClusterId, Frag, GroupId, Incarnation, NodeId};
use crate::order::sequencer::{Sequencer, SequencerSettings};
use crate::wire::datagram::{self, DataMsg, Datagram, FlushReport, OrderEntry};
use crate::wire::directory::NodeInfo;
use std::net::Ipv4Addr;

const RTO: Duration = Duration::from_millis(50);
const G: GroupId = GroupId(1);

fn limits() -> GroupLimits {
    GroupLimits {
        send_window: 16,
        receive_window: 64,
        retransmit: RTO,
        ack_refresh: Duration::from_millis(500),
        flow_budget_bytes: 1 << 20,
        max_datagram_bytes: 1400,
        max_message_pieces: 8,
        peer_message_pieces: 8,
        planted: Default::default(),
    }
}

fn node(n: u32) -> NodeInfo {
    NodeInfo {
        node: NodeId(n),
        name: format!("h{n}"),
        incarnation: Incarnation(1),
        ip: Ipv4Addr::new(127, 0, 1, n as u8),
        data_port: 7001,
        order_port: 7002,
    }
}

fn data_addr(n: u32) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(127, 0, 1, n as u8), 7001)
}

fn order_addr(n: u32) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(127, 0, 1, n as u8), 7002)
}

fn key(n: u32) -> StreamKey {
    StreamKey {
        node: NodeId(n),
        incarnation: Incarnation(1),
    }
}

fn view(id: u64, sequencer: u32, nodes: &[u32]) -> View {
    View {
        group: G,
        group_name: "g".into(),
        address: Ipv4Addr::new(239, 1, 1, 1),
        port: 7400,
        view: ViewId(id),
        sequencer: NodeId(sequencer),
        max_message_bytes: 0,
        members: Vec::new(),
        nodes: nodes.iter().map(|&n| node(n)).collect(),
    }
}

fn at(ms: u64) -> Instant {
    Instant::ZERO + Duration::from_millis(ms)
}

/// Node `me` attached in view `v` (installed at once, as the first view of
/// a group is).
fn attach(me: u32, v: &View) -> GroupState {
    let mut g = GroupState::new(v, key(me), SenderSeq(1), limits());
    g.install(v);
    g
}

/// DATA from `sender`: messages `first..` with these payloads.
fn data<'a>(sender: u32, first: u64, order: Order, payloads: &[&'a str]) -> Data<'a> {
    Data {
        group: G,
        sender: NodeId(sender),
        incarnation: Incarnation(1),
        stream_start: SenderSeq(1),
        first_seq: SenderSeq(first),
        msgs: payloads
            .iter()
            .map(|p| DataMsg {
                order,
                frag: Frag::Whole,
                sender_name: "app",
                payload: p.as_bytes(),
            })
            .collect(),
    }
}

/// ORDER from `sequencer` in view `v`: from position `first`, runs of
/// (sender, first seq, count); `stable` announced.
fn order(sequencer: u32, v: u64, first: u64, stable: u64, runs: &[(u32, u64, u16)]) -> OrderBatch {
    OrderBatch {
        group: G,
        sequencer: NodeId(sequencer),
        sequencer_incarnation: Incarnation(1),
        view: ViewId(v),
        view_start: GlobalSeq(1),
        sequencer_start: GlobalSeq(1),
        stable: GlobalSeq(stable),
        first: GlobalSeq(first),
        entries: runs
            .iter()
            .map(|&(n, f, c)| OrderEntry {
                sender: NodeId(n),
                sender_incarnation: Incarnation(1),
                first: SenderSeq(f),
                count: c,
            })
            .collect(),
    }
}

/// The payloads and positions of the deliveries among `cmds`.
fn delivered(cmds: &[Command]) -> Vec<(u64, String)> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Deliver(d) => Some((d.seq, String::from_utf8_lossy(&d.payload).into_owned())),
            _ => None,
        })
        .collect()
}

/// A DATA NAK as a test reads it: to, whose stream, ranges.
type NakSeen = (SocketAddrV4, NodeId, Vec<(SenderSeq, SenderSeq)>);

fn data_naks(cmds: &[Command]) -> Vec<NakSeen> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Control(Control::DataNak(to, n)) => Some((*to, n.sender, n.ranges.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_gap_in_a_stream_is_naked_to_its_sender_once_per_interval() {
    let mut g = attach(2, &view(1, 1, &[1, 2, 3]));
    // The sequencer ordered node 3's messages 1..=3; message 2 was lost.
    assert!(g.on_order(&order(1, 1, 1, 0, &[(3, 1, 3)])));
    assert!(g.on_data(&data(3, 1, Order::Total, &["a"]), &[]).news);
    assert!(g.on_data(&data(3, 3, Order::Total, &["c"]), &[]).news);
    g.deliver();
    assert_eq!(delivered(&g.take_commands()), vec![(1, "a".to_owned())]);

    g.tick(at(10));
    let cmds = g.take_commands();
    assert_eq!(
        data_naks(&cmds),
        vec![(data_addr(3), NodeId(3), vec![(SenderSeq(2), SenderSeq(2))])]
    );
    // Our ack says we hold position 1 only.
    assert!(cmds.contains(&Command::Control(Control::OrderAck(
        order_addr(1),
        GlobalSeq(1)
    ))));

    g.tick(at(59));
    assert!(data_naks(&g.take_commands()).is_empty(), "damped");
    g.tick(at(10) + RTO);
    assert_eq!(data_naks(&g.take_commands()).len(), 1, "asked again");

    // The repair fills the gap: both deliver, nothing more is naked.
    assert!(g.on_data(&data(3, 2, Order::Total, &["b"]), &[]).news);
    g.deliver();
    assert_eq!(
        delivered(&g.take_commands()),
        vec![(2, "b".to_owned()), (3, "c".to_owned())]
    );
    g.tick(at(200));
    assert!(data_naks(&g.take_commands()).is_empty());
}

#[test]
fn a_nak_is_answered_with_a_retransmission_of_just_what_was_asked() {
    let mut g = attach(1, &view(1, 1, &[1, 2]));
    for p in ["m1", "m2", "m3"] {
        g.accept_local(
            Order::Total,
            crate::ids::MemberId(1),
            &std::sync::Arc::from("app"),
            bytes::Bytes::from(p.as_bytes().to_vec()),
            1000,
        );
    }
    let _ = g.take_commands();
    let cluster = ClusterId(7);
    let packer = Packer {
        cluster,
        group: G,
        max_bytes: 1400,
    };
    let mut pool = Vec::new();
    g.pack_data(
        at(5),
        packer,
        (SenderSeq(2), SenderSeq(3)),
        data_addr(2),
        &mut pool,
    );
    let cmds = g.take_commands();
    assert_eq!(cmds.len(), 1, "one datagram: {cmds:?}");
    let Command::Transmit(to, bytes) = &cmds[0] else {
        panic!("not a transmission: {cmds:?}");
    };
    assert_eq!(*to, data_addr(2));
    let Ok(Datagram::Data(d)) = datagram::decode(bytes, cluster) else {
        panic!("not DATA");
    };
    assert_eq!((d.sender, d.first_seq), (NodeId(1), SenderSeq(2)));
    let payloads: Vec<&[u8]> = d.msgs.iter().map(|m| m.payload).collect();
    assert_eq!(payloads, vec![b"m2".as_slice(), b"m3".as_slice()]);
}

#[test]
fn data_and_order_deliver_in_the_order_of_the_order() {
    let mut g = attach(2, &view(1, 1, &[1, 2, 3]));
    assert!(g.on_data(&data(1, 1, Order::Total, &["a", "b"]), &[]).news);
    assert!(g.on_data(&data(3, 1, Order::Fifo, &["c"]), &[]).news);
    g.deliver();
    assert!(delivered(&g.take_commands()).is_empty(), "no ORDER yet");

    // Node 3's message first, then node 1's two.
    assert!(g.on_order(&order(1, 1, 1, 0, &[(3, 1, 1), (1, 1, 2)])));
    g.deliver();
    assert_eq!(
        delivered(&g.take_commands()),
        vec![
            (1, "c".to_owned()),
            (2, "a".to_owned()),
            (3, "b".to_owned())
        ]
    );
    assert_eq!(g.held_through(), GlobalSeq(3));
}

#[test]
fn a_safe_message_waits_until_it_is_stable() {
    let mut g = attach(2, &view(1, 1, &[1, 2]));
    assert!(g.on_data(&data(1, 1, Order::Safe, &["s"]), &[]).news);
    assert!(g.on_data(&data(1, 2, Order::Total, &["t"]), &[]).news);
    assert!(g.on_order(&order(1, 1, 1, 0, &[(1, 1, 2)])));
    g.deliver();
    assert!(
        delivered(&g.take_commands()).is_empty(),
        "safe at 1 is not stable; total at 2 waits behind it"
    );
    // Stability alone is news: it releases the safe message.
    assert!(g.on_order(&order(1, 1, 3, 1, &[])));
    g.deliver();
    assert_eq!(
        delivered(&g.take_commands()),
        vec![(1, "s".to_owned()), (2, "t".to_owned())]
    );
}

/// A survivor's report to the new sequencer `from`: held, anchored.
fn report(from: u32, v: u64, held: u64, anchored: bool) -> FlushReport {
    FlushReport {
        group: G,
        view: ViewId(v),
        from: NodeId(from),
        from_incarnation: Incarnation(1),
        held: GlobalSeq(held),
        anchored,
    }
}

fn sequencer_inputs(cmds: &[Command]) -> Vec<SequencerInput> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Sequencer(i) => Some(i.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_flush_cuts_at_the_most_a_survivor_holds_and_fetches_it_from_that_survivor() {
    // Node 1 held positions 1..=2 of sequencer 3's order; 3 dies and view 2
    // names node 1 sequencer, with nodes 2 and 4 surviving.
    let mut g = attach(1, &view(1, 3, &[1, 2, 3, 4]));
    assert!(g.on_data(&data(2, 1, Order::Total, &["a", "b"]), &[]).news);
    assert!(g.on_order(&order(3, 1, 1, 0, &[(2, 1, 2)])));
    g.deliver();
    let _ = g.take_commands();
    g.propose(view(2, 1, &[1, 2, 4]));
    g.flush_progress();
    assert!(
        sequencer_inputs(&g.take_commands()).is_empty(),
        "waits for 2 and 4"
    );

    // Node 2 holds through 5, node 4 (anchored too) through 3: the cut is 5,
    // from node 2, and until we hold it we ask node 2 for what we lack.
    g.on_flush_report(&report(2, 2, 5, true));
    g.on_flush_report(&report(4, 2, 3, true));
    g.flush_progress();
    assert!(
        sequencer_inputs(&g.take_commands()).is_empty(),
        "3..=5 missing"
    );
    g.tick(at(100));
    let cmds = g.take_commands();
    assert!(
        cmds.contains(&Command::Control(Control::OrderNak(
            data_addr(2),
            vec![(GlobalSeq(3), GlobalSeq(5))]
        ))),
        "{cmds:?}"
    );
}

#[test]
fn a_takeover_opens_its_view_with_a_marker() {
    let mut g = attach(1, &view(1, 3, &[1, 2, 3]));
    assert!(g.on_data(&data(2, 1, Order::Total, &["a", "b"]), &[]).news);
    assert!(g.on_order(&order(3, 1, 1, 0, &[(2, 1, 2)])));
    g.deliver();
    let _ = g.take_commands();
    g.propose(view(2, 1, &[1, 2]));
    // Node 2 holds no more than we do: we are the donor and hold the cut.
    g.on_flush_report(&report(2, 2, 2, true));
    g.flush_progress();
    let inputs = sequencer_inputs(&g.take_commands());
    let [input @ SequencerInput::View {
        view: ViewId(2),
        next: GlobalSeq(3),
        takeover: true,
        ..
    }] = inputs.as_slice()
    else {
        panic!("no takeover: {inputs:?}");
    };

    // Our sequencer starts the view with its marker at the cut's next.
    let mut s = Sequencer::new(SequencerSettings {
        node: NodeId(1),
        incarnation: Incarnation(1),
        cluster: ClusterId(7),
        max_datagram_bytes: 1400,
        tick: Duration::from_millis(10),
        retransmit: RTO,
        heartbeat: Duration::from_millis(100),
    });
    s.handle_input(at(0), input.clone());
    let mut buf = Vec::new();
    let mut batches = Vec::new();
    while s.poll_transmit(&mut buf).is_some() {
        if let Ok(Datagram::Order(b)) = datagram::decode(&buf, ClusterId(7)) {
            batches.push(b);
        }
    }
    let first = batches.first().expect("an ORDER");
    assert_eq!(
        (first.first, first.sequencer_start, first.view),
        (GlobalSeq(3), GlobalSeq(3), ViewId(2))
    );
    let marker = crate::order::slot::Slot::from_wire(
        StreamKey {
            node: first.entries[0].sender,
            incarnation: first.entries[0].sender_incarnation,
        },
        first.entries[0].first,
    );
    assert_eq!(marker, crate::order::slot::Slot::ViewMarker(ViewId(2)));
}

/// Regression (sim seed 1782 with process faults): node 4 left the
/// group and attached again, same incarnation, while a restarted
/// directory recovered, so the new sequencer's installed view (8) and
/// the recovered one (9) both list it and the flush counts it as a
/// survivor. Its fresh attachment must say it holds nothing, or the
/// flush waits for its report forever.
#[test]
fn a_member_attached_again_unseen_reports_holding_nothing() {
    let mut new_seq = attach(1, &view(8, 3, &[1, 3, 4]));
    new_seq.propose(view(9, 1, &[1, 4]));
    new_seq.flush_progress();
    assert!(
        sequencer_inputs(&new_seq.take_commands()).is_empty(),
        "waits for node 4"
    );

    let t = at(1000);
    let mut joiner = attach(4, &view(9, 1, &[1, 4]));
    let _ = joiner.take_commands();
    joiner.tick(t);
    assert!(
        joiner.take_commands().is_empty(),
        "the first interval is the ORDER's"
    );
    joiner.tick(t + RTO);
    let report_sent = joiner.take_commands().into_iter().find_map(|c| match c {
        Command::Control(Control::FlushReport(to, view, held, _)) => Some((to, view, held)),
        _ => None,
    });
    assert_eq!(report_sent, Some((data_addr(1), ViewId(9), GlobalSeq(0))));

    new_seq.on_flush_report(&report(4, 9, 0, false));
    new_seq.flush_progress();
    assert!(matches!(
        sequencer_inputs(&new_seq.take_commands()).as_slice(),
        [SequencerInput::View {
            view: ViewId(9),
            ..
        }]
    ));
}
