//! A node the directory declared dead (its lease ran out under load) comes
//! back under a new id: its members join again unasked. An app that sends
//! meanwhile is told what happened, not a bare "join the group first", and
//! sends again once the new view arrives.

use chorus_proto::host::{Credentials, Host, HostSettings, MulticastChange, SessionId};
use chorus_proto::order::sequencer::{Sequencer, SequencerSettings};
use chorus_proto::wire::app::{ErrorCode, FromDaemon, ToDaemon};
use chorus_proto::wire::directory::{FromDirectory, MemberInfo, NodeInfo, ToDirectory, View};
use chorus_proto::*;
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};

const IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const DATA_PORT: u16 = 7001;
const ORDER_PORT: u16 = 7002;
const GROUP_ADDR: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 1, 2, 3), 7000);
const CLUSTER: ClusterId = ClusterId(5);
const INCARNATION: Incarnation = Incarnation(100);
const APP: SessionId = SessionId(1);

/// One host and its sequencer; datagrams arrive at once, in order.
struct One {
    host: Host,
    seq: Sequencer,
    joined: BTreeSet<SocketAddrV4>,
    now_us: u64,
    to_app: Vec<FromDaemon>,
    to_dir: Vec<ToDirectory>,
}

fn sequencer(node: NodeId) -> Sequencer {
    Sequencer::new(SequencerSettings {
        node,
        incarnation: INCARNATION,
        cluster: CLUSTER,
        max_datagram_bytes: 1400,
        tick: Duration::from_millis(5),
        retransmit: Duration::from_millis(30),
        heartbeat: Duration::from_millis(50),
    })
}

fn welcome(node: NodeId) -> FromDirectory {
    FromDirectory::Welcome {
        node,
        cluster: CLUSTER,
        lease_ms: 1500,
        heartbeat_ms: 375,
        epoch: chorus_proto::Epoch(0),
    }
}

/// The group's view with this host as `node` and its app's member 1.
fn view(id: u64, node: NodeId) -> View {
    View {
        group: GroupId(1),
        group_name: "g".into(),
        address: *GROUP_ADDR.ip(),
        port: GROUP_ADDR.port(),
        view: ViewId(id),
        sequencer: node,
        max_message_bytes: 0,
        members: vec![MemberInfo {
            node,
            member: MemberId(1),
            name: "m".into(),
        }],
        nodes: vec![NodeInfo {
            node,
            name: "h1".into(),
            incarnation: INCARNATION,
            ip: IP,
            data_port: DATA_PORT,
            order_port: ORDER_PORT,
        }],
    }
}

impl One {
    fn new() -> One {
        One {
            host: Host::new(HostSettings {
                node_name: "h1".into(),
                incarnation: INCARNATION,
                ip: IP,
                data_port: DATA_PORT,
                order_port: ORDER_PORT,
                max_datagram_bytes: 1400,
                max_message_bytes: 1 << 20,
                send_window_messages: 64,
                receive_window_messages: 256,
                ack_interval: Duration::from_millis(5),
                retransmit: Duration::from_millis(30),
                flow_budget_bytes: 1 << 20,
                directory_label: String::new(),
                version: "test".into(),
            }),
            seq: sequencer(NodeId(1)),
            joined: BTreeSet::new(),
            now_us: 0,
            to_app: Vec::new(),
            to_dir: Vec::new(),
        }
    }

    fn now(&self) -> Instant {
        Instant::from_micros(self.now_us)
    }

    fn route(&mut self, dest: SocketAddrV4, bytes: &[u8]) {
        let now = self.now();
        let from = SocketAddrV4::new(IP, DATA_PORT);
        if dest == SocketAddrV4::new(IP, ORDER_PORT) {
            self.seq.handle_datagram(now, bytes);
        } else if dest == SocketAddrV4::new(IP, DATA_PORT) || self.joined.contains(&dest) {
            self.host.handle_datagram(now, from, bytes);
        }
    }

    /// Carries every output where it goes until nothing moves.
    fn settle(&mut self) {
        let now = self.now();
        let mut buf = Vec::new();
        for _ in 0..10_000 {
            let mut moved = false;
            while let Some(c) = self.host.poll_multicast_change() {
                match c {
                    MulticastChange::Join(a) => self.joined.insert(a),
                    MulticastChange::Leave(a) => self.joined.remove(&a),
                };
            }
            while let Some(dest) = self.host.poll_transmit(&mut buf, now) {
                let bytes = std::mem::take(&mut buf);
                self.route(dest, &bytes);
                moved = true;
            }
            while let Some(input) = self.host.poll_sequencer() {
                self.seq.handle_input(now, input);
                moved = true;
            }
            while let Some(frame) = self.host.poll_directory() {
                self.to_dir.push(frame);
            }
            while let Some((_, ev)) = self.host.poll_app() {
                self.to_app.push(ev);
            }
            while let Some(dest) = self.seq.poll_transmit(&mut buf) {
                let bytes = std::mem::take(&mut buf);
                self.route(dest, &bytes);
                moved = true;
            }
            if !moved {
                return;
            }
        }
        panic!("outputs never settled");
    }

    /// Lets time pass in 5 ms steps until the app was told `pred`.
    fn until_app(&mut self, what: &str, pred: impl Fn(&FromDaemon) -> bool) -> FromDaemon {
        for _ in 0..1000 {
            self.settle();
            if let Some(i) = self.to_app.iter().position(&pred) {
                return self.to_app.remove(i);
            }
            self.now_us += 5_000;
            let now = self.now();
            if self.host.poll_timeout().is_some_and(|t| t <= now) {
                self.host.handle_timeout(now);
            }
            if self.seq.poll_timeout().is_some_and(|t| t <= now) {
                self.seq.handle_timeout(now);
            }
        }
        panic!("the app was never told {what}; it got {:?}", self.to_app);
    }

    fn app(&mut self, req: ToDaemon) {
        let now = self.now();
        self.host.handle_app(now, APP, req);
        self.settle();
    }

    fn directory(&mut self, frame: FromDirectory) {
        let now = self.now();
        self.host.handle_directory(now, frame);
        self.settle();
    }

    /// Sends one message as request `request`; returns the daemon's answer.
    fn send(&mut self, request: u32) -> FromDaemon {
        self.app(ToDaemon::Send {
            request,
            group: "g".into(),
            order: Order::Total,
            payload: b"hello".to_vec(),
        });
        self.until_app("an answer to the send", |e| {
            matches!(e, FromDaemon::Ok { request: r } | FromDaemon::Error { request: r, .. } if *r == request)
        })
    }

    /// The daemon asked the directory to join member 1 again.
    fn assert_joins_again(&self) {
        assert!(
            self.to_dir.iter().any(|f| matches!(
                f,
                ToDirectory::Join {
                    member: MemberId(1),
                    ..
                }
            )),
            "the member joins again: {:?}",
            self.to_dir
        );
    }

    /// Registered as node 1, the app a member of `g` in view 1.
    fn joined() -> One {
        let mut one = One::new();
        let now = one.now();
        one.host.handle_directory_connected(now);
        one.directory(welcome(NodeId(1)));
        one.host
            .handle_app_connect(now, APP, Credentials::default());
        one.app(ToDaemon::Join {
            request: 1,
            group: "g".into(),
            name: "m".into(),
        });
        one.directory(FromDirectory::View(view(1, NodeId(1))));
        one.until_app("the join's answer", |e| {
            matches!(e, FromDaemon::Ok { request: 1 })
        });
        one.until_app("view 1", |e| {
            matches!(
                e,
                FromDaemon::View {
                    view: ViewId(1),
                    ..
                }
            )
        });
        one
    }
}

#[test]
fn a_send_while_the_node_rejoins_under_a_new_id_says_so_and_sends_resume_with_the_new_view() {
    let mut one = One::joined();
    assert_eq!(one.send(2), FromDaemon::Ok { request: 2 });

    // The directory declared node 1 dead (its lease ran out) and closed the
    // link; the daemon comes back and is registered as node 2.
    let now = one.now();
    one.host.handle_directory_lost(now);
    one.host.handle_directory_connected(now);
    one.to_dir.clear();
    one.seq = sequencer(NodeId(2));
    one.directory(welcome(NodeId(2)));
    one.assert_joins_again();

    match one.send(3) {
        FromDaemon::Error { code, message, .. } => {
            assert_eq!(code, ErrorCode::Unavailable, "{message}");
            assert!(message.contains("declared this node dead"), "{message}");
            assert!(message.contains("node 2"), "{message}");
        }
        other => panic!("a send while rejoining was answered {other:?}"),
    }

    one.directory(FromDirectory::View(view(2, NodeId(2))));
    one.until_app("view 2", |e| {
        matches!(
            e,
            FromDaemon::View {
                view: ViewId(2),
                ..
            }
        )
    });
    assert_eq!(one.send(4), FromDaemon::Ok { request: 4 });
}

#[test]
fn a_rejoin_lost_with_the_link_is_explained_to_the_app() {
    let mut one = One::joined();
    let now = one.now();
    one.host.handle_directory_lost(now);
    one.host.handle_directory_connected(now);
    one.seq = sequencer(NodeId(2));
    one.directory(welcome(NodeId(2)));
    // The link drops again before the directory answered the join.
    let now = one.now();
    one.host.handle_directory_lost(now);
    match one.send(3) {
        FromDaemon::Error { code, message, .. } => {
            assert_eq!(code, ErrorCode::NoSuchGroup, "{message}");
            assert!(message.contains("registered again"), "{message}");
            assert!(message.contains("join the group again"), "{message}");
        }
        other => panic!("a send after a lost rejoin was answered {other:?}"),
    }
    // Joining again clears it.
    one.host.handle_directory_connected(now);
    one.directory(welcome(NodeId(2)));
    one.app(ToDaemon::Join {
        request: 5,
        group: "g".into(),
        name: "m".into(),
    });
    match one.send(6) {
        FromDaemon::Error { code, message, .. } => {
            assert_eq!(code, ErrorCode::NoSuchGroup);
            assert_eq!(message, "join the group before sending to it");
        }
        other => panic!("a send before the join's answer was answered {other:?}"),
    }
}

/// A Welcome of `epoch` (a replicated directory's leader term).
fn welcome_in(node: NodeId, epoch: u64) -> FromDirectory {
    match welcome(node) {
        FromDirectory::Welcome {
            node,
            cluster,
            lease_ms,
            heartbeat_ms,
            ..
        } => FromDirectory::Welcome {
            node,
            cluster,
            lease_ms,
            heartbeat_ms,
            epoch: Epoch(epoch),
        },
        other => other,
    }
}

#[test]
fn a_welcome_from_a_deposed_leader_is_refused_with_everything_after_it() {
    let mut one = One::joined();
    let now = one.now();
    // A failover: the new leader (term 5) welcomes the node again.
    one.host.handle_directory_lost(now);
    one.host.handle_directory_connected(now);
    one.directory(welcome_in(NodeId(1), 5));
    assert_eq!(one.host.directory_epoch(), Epoch(5));
    assert!(!one.host.directory_fenced());

    // The link drops; the next Hello says which epoch the node has seen.
    one.host.handle_directory_lost(now);
    one.to_dir.clear();
    one.host.handle_directory_connected(now);
    one.settle();
    assert!(
        matches!(
            one.to_dir.as_slice(),
            [ToDirectory::Hello {
                epoch: Epoch(5),
                ..
            }]
        ),
        "{:?}",
        one.to_dir
    );

    // The old leader (term 4), not yet aware it was deposed, answers: the
    // node refuses the Welcome, and a view it then sends (a second copy of
    // the group, numbered by a leader that knows nothing) is not taken.
    one.directory(welcome_in(NodeId(1), 4));
    assert!(one.host.directory_fenced());
    assert_eq!(one.host.directory_epoch(), Epoch(5));
    one.to_app.clear();
    let mut stale = view(9, NodeId(1));
    stale.members.clear();
    one.directory(FromDirectory::View(stale));
    assert!(
        !one.to_app
            .iter()
            .any(|e| matches!(e, FromDaemon::View { .. })),
        "a deposed leader's view reached the app: {:?}",
        one.to_app
    );

    // The next link, to the real leader, is taken again.
    one.host.handle_directory_lost(now);
    one.host.handle_directory_connected(now);
    assert!(!one.host.directory_fenced());
    one.directory(welcome_in(NodeId(1), 6));
    assert_eq!(one.host.directory_epoch(), Epoch(6));
}

/// A node that was silent for about its lease (stopped, starved) may have
/// been declared dead: its app is told it was separated (not left with a
/// silent hole), and the node registers again as a new incarnation, whose
/// Hello makes the directory end the old node; the member joins again and
/// its app sees the new view.
#[test]
fn a_lapsed_lease_separates_the_member_and_registers_again_as_a_new_life() {
    let mut one = One::joined();
    one.to_dir.clear();
    let now = one.now();
    one.host
        .handle_lease_lapsed(now, Duration::from_millis(2000));
    one.settle();
    let separated = one.until_app("the separation", |e| {
        matches!(e, FromDaemon::Separated { .. })
    });
    match separated {
        FromDaemon::Separated {
            group,
            view,
            rejoining,
            reason,
        } => {
            assert_eq!((group.as_str(), view, rejoining), ("g", ViewId(1), true));
            assert!(reason.contains("2000 ms"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        one.to_dir.contains(&ToDirectory::Goodbye),
        "the old node says goodbye: {:?}",
        one.to_dir
    );
    assert_eq!(one.host.settings().incarnation, Incarnation(101));
    assert!(
        !one.joined.contains(&GROUP_ADDR),
        "the group's state is gone"
    );

    // The directory closes the link; the daemon comes back as the new life.
    one.host.handle_directory_lost(now);
    one.to_dir.clear();
    one.host.handle_directory_connected(now);
    one.settle();
    assert!(
        one.to_dir.iter().any(|f| matches!(
            f,
            ToDirectory::Hello {
                incarnation: Incarnation(101),
                previous: None,
                ..
            }
        )),
        "{:?}",
        one.to_dir
    );
    one.seq = sequencer(NodeId(2));
    one.directory(welcome(NodeId(2)));
    one.assert_joins_again();
    let mut v = view(2, NodeId(2));
    v.nodes[0].incarnation = Incarnation(101);
    one.directory(FromDirectory::View(v));
    one.until_app("view 2", |e| {
        matches!(
            e,
            FromDaemon::View {
                view: ViewId(2),
                ..
            }
        )
    });
}

/// A view of the group that goes on without this node (the directory
/// dropped it) separates its member, which joins again at once.
#[test]
fn a_view_without_this_node_separates_the_member_which_joins_again() {
    let mut one = One::joined();
    one.to_dir.clear();
    let mut v = view(2, NodeId(3));
    v.members.clear();
    v.nodes[0].node = NodeId(3);
    v.nodes[0].name = "h3".into();
    one.directory(FromDirectory::View(v));
    let separated = one.until_app("the separation", |e| {
        matches!(e, FromDaemon::Separated { .. })
    });
    assert!(
        matches!(
            separated,
            FromDaemon::Separated {
                view: ViewId(1),
                rejoining: true,
                ..
            }
        ),
        "{separated:?}"
    );
    one.assert_joins_again();
}
