//! The TCP edge: real sockets on loopback against an in-process server.

use chorus_config::{DirectoryConfig, GroupConfig};
use chorus_directory::Server;
use chorus_proto::wire::directory::{FromDirectory, ToDirectory, DIRECTORY_FRAME_MAX_BYTES};
use chorus_proto::wire::frame::{write_frame, FrameBuffer};
use chorus_proto::{Incarnation, MemberId, NodeId, ViewId};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

fn config() -> DirectoryConfig {
    DirectoryConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        lease_ms: 60_000,
        groups: vec![GroupConfig {
            name: "chat".into(),
            address: Ipv4Addr::new(239, 192, 0, 10),
            port: 7410,
            max_members: None,
            max_message_bytes: None,
            allow_users: None,
            allow_groups: None,
        }],
        ..DirectoryConfig::default()
    }
}

/// A daemon's side of the link, speaking the codec over a blocking socket.
struct Client {
    stream: TcpStream,
    frames: FrameBuffer,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        Client {
            stream,
            frames: FrameBuffer::new(DIRECTORY_FRAME_MAX_BYTES),
        }
    }

    fn send(&mut self, msg: &ToDirectory) {
        let mut out = Vec::new();
        write_frame(&mut out, |b| msg.encode(b));
        self.stream.write_all(&out).expect("send");
    }

    /// The next frame, or None when the server closed the connection.
    fn recv(&mut self) -> Option<FromDirectory> {
        loop {
            if let Some(body) = self.frames.next_frame().expect("frame") {
                return Some(FromDirectory::decode(body).expect("decode"));
            }
            let mut buf = [0u8; 4096];
            match self.stream.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => self.frames.extend(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return None,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    fn hello(&mut self, name: &str) -> NodeId {
        self.send(&ToDirectory::Hello {
            name: name.into(),
            incarnation: Incarnation(1),
            ip: Ipv4Addr::LOCALHOST,
            data_port: 7401,
            order_port: 7402,
            previous: None,
            epoch: chorus_proto::Epoch(0),
        });
        match self.recv() {
            Some(FromDirectory::Welcome {
                node,
                lease_ms: 60_000,
                heartbeat_ms: 15_000,
                ..
            }) => node,
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    fn join(&mut self, group: &str, member: u32, name: &str) {
        self.send(&ToDirectory::Join {
            group: group.into(),
            member: MemberId(member),
            member_name: name.into(),
            user: "alice".into(),
            unix_groups: vec![],
        });
    }

    fn view(&mut self) -> chorus_proto::wire::directory::View {
        match self.recv() {
            Some(FromDirectory::View(v)) => v,
            other => panic!("expected View, got {other:?}"),
        }
    }
}

#[test]
fn hello_and_join_are_answered_and_garbage_hurts_only_its_sender() {
    let handle = Server::bind(&config())
        .expect("bind")
        .without_grace()
        .spawn()
        .expect("spawn");
    let addr = handle.local_addr();
    let mut a = Client::connect(addr);
    let node_a = a.hello("a");
    a.join("chat", 1, "x");
    let v = a.view();
    assert_eq!(
        (v.view, v.sequencer, v.group_name.as_str()),
        (ViewId(1), node_a, "chat")
    );
    assert_eq!(v.members.len(), 1);

    // A peer sending a well-framed body that is not a frame of ours.
    let mut bad = Client::connect(addr);
    bad.stream
        .write_all(&[0, 0, 0, 3, 1, 2, 3])
        .expect("send garbage");
    assert_eq!(bad.recv(), None, "the server closes the garbage connection");

    // A peer announcing an oversized frame.
    let mut huge = Client::connect(addr);
    huge.stream
        .write_all(&u32::MAX.to_be_bytes())
        .expect("send length");
    assert_eq!(huge.recv(), None);

    // Everyone else is still served: b joins, both get the view.
    let mut b = Client::connect(addr);
    let node_b = b.hello("b");
    b.join("chat", 1, "y");
    let va = a.view();
    let vb = b.view();
    assert_eq!(va, vb);
    assert_eq!(va.view, ViewId(2));
    assert_eq!(
        va.nodes.iter().map(|n| n.node).collect::<Vec<_>>(),
        vec![node_a, node_b]
    );
    handle.stop().expect("clean stop");
}

#[test]
fn a_frame_before_hello_closes_the_connection() {
    let handle = Server::bind(&config())
        .expect("bind")
        .without_grace()
        .spawn()
        .expect("spawn");
    let mut c = Client::connect(handle.local_addr());
    c.send(&ToDirectory::Heartbeat);
    assert_eq!(c.recv(), None);
    handle.stop().expect("clean stop");
}

#[test]
fn a_refused_hello_gets_its_reason_before_the_close() {
    let handle = Server::bind(&config())
        .expect("bind")
        .without_grace()
        .spawn()
        .expect("spawn");
    let mut nameless = Client::connect(handle.local_addr());
    nameless.send(&ToDirectory::Hello {
        name: String::new(),
        incarnation: Incarnation(1),
        ip: Ipv4Addr::LOCALHOST,
        data_port: 1,
        order_port: 2,
        previous: None,
        epoch: chorus_proto::Epoch(0),
    });
    assert!(matches!(
        nameless.recv(),
        Some(FromDirectory::Refused { reason }) if reason.contains("name")
    ));
    assert_eq!(nameless.recv(), None);
    handle.stop().expect("clean stop");
}

#[test]
fn a_dropped_link_keeps_the_node_while_its_lease_runs() {
    let handle = Server::bind(&config())
        .expect("bind")
        .without_grace()
        .spawn()
        .expect("spawn");
    let mut a = Client::connect(handle.local_addr());
    let node_a = a.hello("a");
    a.join("chat", 1, "x");
    a.view();
    let mut b = Client::connect(handle.local_addr());
    let node_b = b.hello("b");
    b.join("chat", 1, "y");
    a.view();
    b.view();
    drop(b);
    // The node is still listed (the lease is a minute): a's next change
    // still shows it.
    a.join("chat", 2, "z");
    let v = a.view();
    assert_eq!(v.view, ViewId(3));
    assert_eq!(
        v.nodes.iter().map(|n| n.node).collect::<Vec<_>>(),
        vec![node_a, node_b]
    );
    handle.stop().expect("clean stop");
}

#[test]
fn list_groups_is_answered() {
    let handle = Server::bind(&config())
        .expect("bind")
        .without_grace()
        .spawn()
        .expect("spawn");
    let mut a = Client::connect(handle.local_addr());
    a.hello("a");
    a.send(&ToDirectory::ListGroups { request: 9 });
    match a.recv() {
        Some(FromDirectory::Groups { request: 9, groups }) => {
            assert_eq!(groups.len(), 1);
            assert_eq!(
                (groups[0].name.as_str(), groups[0].view, groups[0].declared),
                ("chat", ViewId(0), true)
            );
        }
        other => panic!("expected Groups, got {other:?}"),
    }
}
