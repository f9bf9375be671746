//! A host (and its sequencer) fed a random sequence of inputs decoded from
//! the fuzz bytes: directory frames, app requests, raw and well-formed
//! datagrams, time passing. Nothing may panic.
#![no_main]
#![forbid(unsafe_code)]

use chorus_proto::host::drive::{drain, HostSink};
use chorus_proto::host::{Credentials, Host, HostSettings, MulticastChange, SessionId};
use chorus_proto::order::sequencer::{Sequencer, SequencerInput, SequencerSettings};
use chorus_proto::wire::app::{FromDaemon, ToDaemon};
use chorus_proto::wire::datagram::{
    encode, Data, DataMsg, Datagram, Nak, OrderAck, OrderBatch, OrderEntry, OrderNak,
};
use chorus_proto::wire::directory::{FromDirectory, MemberInfo, NodeInfo, ToDirectory, View};
use chorus_proto::*;
use libfuzzer_sys::fuzz_target;
use std::net::{Ipv4Addr, SocketAddrV4};

const CLUSTER: ClusterId = ClusterId(7);

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }
    fn small(&mut self, n: u8) -> u64 {
        u64::from(self.u8() % n)
    }
    fn take(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a.to_vec()
    }
}

/// Collects the sequencer inputs; everything else is dropped.
#[derive(Default)]
struct Sink(Vec<SequencerInput>);

impl HostSink for Sink {
    fn multicast(&mut self, _: MulticastChange) {}
    fn transmit(&mut self, _: SocketAddrV4, _: &[u8]) {}
    fn sequencer(&mut self, i: SequencerInput) {
        self.0.push(i);
    }
    fn directory(&mut self, _: ToDirectory) {}
    fn app(&mut self, _: SessionId, _: FromDaemon) {}
    fn close_session(&mut self, _: SessionId) {}
}

fn node_info(n: u32, inc: u64) -> NodeInfo {
    NodeInfo {
        node: NodeId(n),
        name: format!("h{n}"),
        incarnation: Incarnation(inc),
        ip: Ipv4Addr::new(127, 0, 1, n as u8),
        data_port: 7001,
        order_port: 7002,
    }
}

fn view(inp: &mut Input<'_>) -> View {
    let members: Vec<MemberInfo> = (0..inp.small(4))
        .map(|_| MemberInfo {
            node: NodeId(1 + inp.small(3) as u32),
            member: MemberId(1 + inp.small(3) as u32),
            name: "m".into(),
        })
        .collect();
    let mut nodes: Vec<u32> = members.iter().map(|m| m.node.0).collect();
    nodes.push(1 + inp.small(3) as u32);
    nodes.sort_unstable();
    nodes.dedup();
    View {
        group: GroupId(1 + inp.small(2) as u32),
        group_name: format!("g{}", inp.small(2)),
        address: Ipv4Addr::new(239, 1, 1, 1),
        port: 7400,
        view: ViewId(1 + inp.small(8)),
        sequencer: NodeId(1 + inp.small(3) as u32),
        // Not drawn, so that the corpus keeps its meaning.
        max_message_bytes: 0,
        members,
        nodes: nodes
            .into_iter()
            .map(|n| node_info(n, 1 + inp.small(2)))
            .collect(),
    }
}

fn datagram(inp: &mut Input<'_>) -> Vec<u8> {
    let group = GroupId(1 + inp.small(2) as u32);
    let (node, inc) = (
        NodeId(1 + inp.small(3) as u32),
        Incarnation(1 + inp.small(2)),
    );
    let a = 1 + inp.small(40);
    let b = a + inp.small(20);
    let len = usize::from(inp.u8() % 32);
    let payload = inp.take(len);
    let d = match inp.small(5) {
        0 => Datagram::Data(Data {
            group,
            sender: node,
            incarnation: inc,
            stream_start: SenderSeq(1 + inp.small(3)),
            first_seq: SenderSeq(a),
            msgs: (0..1 + inp.small(4))
                .map(|_| DataMsg {
                    order: Order::from_code(inp.u8() % 3).unwrap_or(Order::Total),
                    // Pieces of large messages too, in any (even wrong) sequence.
                    frag: Frag::from_bits(inp.u8()),
                    sender_name: "m",
                    payload: &payload,
                })
                .collect(),
        }),
        1 => Datagram::Order(OrderBatch {
            group,
            sequencer: node,
            sequencer_incarnation: inc,
            view: ViewId(1 + inp.small(8)),
            view_start: GlobalSeq(1 + inp.small(40)),
            sequencer_start: GlobalSeq(1 + inp.small(40)),
            stable: GlobalSeq(inp.small(60)),
            first: GlobalSeq(a),
            entries: (0..inp.small(4))
                .map(|_| OrderEntry {
                    sender: NodeId(inp.small(4) as u32),
                    sender_incarnation: Incarnation(1 + inp.small(8)),
                    first: SenderSeq(1 + inp.small(40)),
                    count: 1 + inp.small(8) as u16,
                })
                .collect(),
        }),
        2 => Datagram::Nak(Nak {
            group,
            from: node,
            from_incarnation: inc,
            sender: NodeId(1 + inp.small(3) as u32),
            sender_incarnation: inc,
            ranges: vec![(SenderSeq(a), SenderSeq(b))],
        }),
        3 => Datagram::OrderAck(OrderAck {
            group,
            from: node,
            from_incarnation: inc,
            sequencer_incarnation: inc,
            cumulative: GlobalSeq(b),
        }),
        _ => Datagram::OrderNak(OrderNak {
            group,
            from: node,
            from_incarnation: inc,
            sequencer_incarnation: inc,
            ranges: vec![(GlobalSeq(a), GlobalSeq(b))],
        }),
    };
    let mut out = Vec::new();
    encode(&d, CLUSTER, &mut out);
    out
}

fn app_request(inp: &mut Input<'_>, request: u32) -> ToDaemon {
    let group = format!("g{}", inp.small(2));
    match inp.small(4) {
        0 => ToDaemon::Join {
            request,
            group,
            name: format!("m{}", inp.small(3)),
        },
        1 => ToDaemon::Leave { request, group },
        2 => ToDaemon::Members { request, group },
        _ => {
            let order = Order::from_code(inp.u8() % 3).unwrap_or(Order::Safe);
            let len = usize::from(inp.u8());
            ToDaemon::Send {
                request,
                group,
                order,
                payload: inp.take(len),
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let mut host = Host::new(HostSettings {
        node_name: "h1".into(),
        incarnation: Incarnation(1),
        ip: Ipv4Addr::new(127, 0, 1, 1),
        data_port: 7001,
        order_port: 7002,
        max_datagram_bytes: 512,
        max_message_bytes: 1 << 20,
        send_window_messages: 16,
        receive_window_messages: 16,
        ack_interval: Duration::from_millis(2),
        retransmit: Duration::from_millis(5),
        flow_budget_bytes: 64 << 10,
        directory_label: String::new(),
        version: "fuzz".into(),
    });
    let mut seq = Sequencer::new(SequencerSettings {
        node: NodeId(1),
        incarnation: Incarnation(1),
        cluster: CLUSTER,
        max_datagram_bytes: 512,
        tick: Duration::from_millis(2),
        retransmit: Duration::from_millis(5),
        heartbeat: Duration::from_millis(10),
    });
    let (mut now, mut request, mut buf, mut sink) = (0u64, 0u32, Vec::new(), Sink::default());
    let from = SocketAddrV4::new(Ipv4Addr::new(127, 0, 1, 2), 7001);
    while !inp.0.is_empty() {
        let t = Instant::from_micros(now);
        request = request.wrapping_add(1);
        match inp.small(12) {
            0 => host.handle_directory_connected(t),
            1 => host.handle_directory(
                t,
                FromDirectory::Welcome {
                    node: NodeId(1 + inp.small(2) as u32),
                    cluster: CLUSTER,
                    lease_ms: 1000,
                    heartbeat_ms: 250,
                    epoch: chorus_proto::Epoch(inp.small(3)),
                },
            ),
            2 | 3 => {
                let v = view(&mut inp);
                host.handle_directory(t, FromDirectory::View(v));
            }
            4 => host.handle_app_connect(t, SessionId(inp.small(3)), Credentials::default()),
            5 | 6 => {
                let s = SessionId(inp.small(3));
                let req = app_request(&mut inp, request);
                if host.can_accept(s) {
                    host.handle_app(t, s, req);
                }
            }
            7 => host.handle_app_disconnect(t, SessionId(inp.small(3))),
            8 => {
                let n = usize::from(inp.u8());
                let raw = inp.take(n);
                host.handle_datagram(t, from, &raw);
                seq.handle_datagram(t, &raw);
            }
            9 => {
                let d = datagram(&mut inp);
                host.handle_datagram(t, from, &d);
                seq.handle_datagram(t, &d);
            }
            10 => {
                now += 100 * u64::from(inp.u8());
                let t = Instant::from_micros(now);
                host.handle_timeout(t);
                seq.handle_timeout(t);
            }
            _ => match inp.small(3) {
                0 => host.handle_directory_lost(t),
                1 => host.handle_directory(
                    t,
                    FromDirectory::GroupEnded {
                        group: GroupId(1 + inp.small(2) as u32),
                    },
                ),
                _ => host.handle_directory(
                    t,
                    FromDirectory::JoinRefused {
                        group: "g0".into(),
                        member: MemberId(1 + inp.small(3) as u32),
                        reason: String::new(),
                    },
                ),
            },
        }
        drain(&mut host, t, &mut buf, &mut sink);
        for i in sink.0.drain(..) {
            seq.handle_input(t, i);
        }
        while seq.poll_transmit(&mut buf).is_some() {}
    }
});
