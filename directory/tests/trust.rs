//! A keyed directory (issue 14) believes only those who hold the cluster
//! key: a connection without it gets the handshake's nonce at most, cannot
//! register, read the groups or evict a node by its name, and a recorded
//! session replayed does not open; a client with the key registers. The
//! Raft port between keyed replicas refuses a peer without the key too.

#![allow(clippy::unwrap_used)]

use chorus_config::{DirectoryConfig, PeerConfig, ReplicaId, ReplicationConfig, Trust};
use chorus_directory::{Server, ServerHandle};
use chorus_proto::wire::directory::{FromDirectory, ToDirectory, DIRECTORY_FRAME_MAX_BYTES};
use chorus_proto::wire::frame::{write_frame, FrameBuffer};
use chorus_proto::wire::seal::stream::{
    self, ClientHandshake, SealedStream, StreamNonce, HANDSHAKE_BYTES, KIND_STREAM_ACCEPT,
    KIND_STREAM_KEY_REQUIRED,
};
use chorus_proto::wire::seal::{ClusterKey, KeyRing, TAG_BYTES};
use chorus_proto::{Epoch, Incarnation};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

const KEY: [u8; 32] = [7; 32];
const OTHER_KEY: [u8; 32] = [8; 32];
const WAIT: Duration = Duration::from_secs(10);

fn ring(secret: [u8; 32]) -> KeyRing {
    KeyRing::new(ClusterKey::from_bytes(&secret), vec![])
}

fn keyed_directory(trust: Trust) -> ServerHandle {
    let cfg = DirectoryConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        lease_ms: 1500,
        trust,
        ..DirectoryConfig::default()
    };
    Server::bind(&cfg).unwrap().without_grace().spawn().unwrap()
}

fn hello(name: &str) -> ToDirectory {
    ToDirectory::Hello {
        name: name.into(),
        incarnation: Incarnation(1),
        ip: Ipv4Addr::LOCALHOST,
        data_port: 7401,
        order_port: 7402,
        previous: None,
        epoch: Epoch(0),
    }
}

fn plain_frame(msg: &ToDirectory) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, |b| msg.encode(b));
    out
}

/// Everything the directory sends until it closes the connection (or
/// `WAIT` passes: then the test fails, a connection left open is a hang).
fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return got,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("the directory kept the connection open: {e}; got {got:?}"),
        }
    }
}

/// Sends `hello` (a hello frame, clear), reads the directory's answer
/// (which must be its nonce), then sends `rest` and returns what else the
/// directory sent before closing. Waiting for the answer first makes the
/// test see whatever `rest` earns: a peer that is believed is answered and
/// kept, one that is not is closed.
fn handshake_then(addr: SocketAddr, hello: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(hello).unwrap();
    let mut answer = [0u8; 4 + HANDSHAKE_BYTES];
    s.read_exact(&mut answer).unwrap();
    assert_eq!(answer[4 + 3], KIND_STREAM_ACCEPT, "{answer:?}");
    // The answer is its nonce and nothing more: no frame follows it
    // before the client proves itself.
    s.write_all(rest).unwrap();
    read_until_closed(&mut s)
}

/// The frame bodies in `bytes`.
fn frames(bytes: &[u8], max: usize) -> Vec<Vec<u8>> {
    let mut fb = FrameBuffer::new(max);
    fb.extend(bytes);
    let mut v = Vec::new();
    while let Some(f) = fb.next_frame().unwrap() {
        v.push(f.to_vec());
    }
    assert_eq!(fb.pending_bytes(), 0, "a partial frame: {bytes:?}");
    v
}

/// A daemon's link with a key: the handshake done, frames sealed.
struct KeyedClient {
    stream: TcpStream,
    sealed: SealedStream,
    frames: FrameBuffer,
    /// Every byte this client sent, for the replay test.
    sent: Vec<u8>,
}

impl KeyedClient {
    fn connect(addr: SocketAddr, keys: &KeyRing, nonce: u8) -> KeyedClient {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut sent = Vec::new();
        let hs = ClientHandshake::start(keys, StreamNonce([nonce; 32]), &mut sent);
        stream.write_all(&sent).unwrap();
        let mut frames = FrameBuffer::new(DIRECTORY_FRAME_MAX_BYTES + TAG_BYTES);
        let answer = loop {
            if let Some(f) = frames.next_frame().unwrap() {
                break f.to_vec();
            }
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "the directory closed during the handshake");
            frames.extend(&buf[..n]);
        };
        let sealed = hs.finish(&answer).unwrap();
        KeyedClient {
            stream,
            sealed,
            frames,
            sent,
        }
    }

    fn send(&mut self, msg: &ToDirectory) {
        let mut out = Vec::new();
        self.sealed.seal_frame(&mut out, |b| msg.encode(b)).unwrap();
        self.stream.write_all(&out).unwrap();
        self.sent.extend_from_slice(&out);
    }

    /// The next frame within `within`, or None (closed, or nothing came).
    fn recv_within(&mut self, within: Duration) -> Option<FromDirectory> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(f) = self.frames.next_frame().unwrap() {
                let mut body = f.to_vec();
                let plain = self
                    .sealed
                    .open(&mut body)
                    .expect("the directory's frame opens");
                return Some(FromDirectory::decode(plain).unwrap());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut buf = [0u8; 4096];
            match self.stream.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => self.frames.extend(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(_) => return None,
            }
        }
    }

    /// Asks for the group list and waits for the answer, passing over
    /// whatever else comes first; panics with `what` if none comes.
    fn list_groups(&mut self, request: u32, what: &str) {
        self.send(&ToDirectory::ListGroups { request });
        loop {
            match self.recv_within(WAIT) {
                Some(FromDirectory::Groups { request: r, .. }) if r == request => return,
                Some(_) => {}
                None => panic!("{what}"),
            }
        }
    }
}

#[test]
fn a_client_with_the_key_registers_and_reads_the_groups() {
    let dir = keyed_directory(Trust::Ephemeral(KEY));
    let mut c = KeyedClient::connect(dir.local_addr(), &ring(KEY), 1);
    c.send(&hello("n1"));
    assert!(matches!(
        c.recv_within(WAIT),
        Some(FromDirectory::Welcome { .. })
    ));
    c.list_groups(9, "no group list");
}

#[test]
fn a_plain_client_is_told_the_key_is_required_and_nothing_else() {
    let dir = keyed_directory(Trust::Ephemeral(KEY));
    let mut s = TcpStream::connect(dir.local_addr()).unwrap();
    let mut out = plain_frame(&hello("intruder"));
    out.extend(plain_frame(&ToDirectory::ListGroups { request: 1 }));
    s.write_all(&out).unwrap();
    let got = read_until_closed(&mut s);
    let got = frames(&got, 1024);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0][3], KIND_STREAM_KEY_REQUIRED);
}

#[test]
fn a_client_offering_another_key_gets_nothing() {
    let dir = keyed_directory(Trust::Ephemeral(KEY));
    let mut s = TcpStream::connect(dir.local_addr()).unwrap();
    let mut out = Vec::new();
    ClientHandshake::start(&ring(OTHER_KEY), StreamNonce([3; 32]), &mut out);
    out.extend(plain_frame(&hello("intruder")));
    s.write_all(&out).unwrap();
    assert!(read_until_closed(&mut s).is_empty());
}

/// Someone who knows the key id (it is no secret) but not the key gets the
/// directory's nonce and nothing more, whatever it sends after: it cannot
/// register, read the groups, or evict the node of a name by registering
/// under it.
#[test]
fn a_client_that_knows_the_key_id_but_not_the_key_gets_only_the_nonce() {
    let dir = keyed_directory(Trust::Ephemeral(KEY));
    let mut owner = KeyedClient::connect(dir.local_addr(), &ring(KEY), 1);
    owner.send(&hello("n1"));
    assert!(matches!(
        owner.recv_within(WAIT),
        Some(FromDirectory::Welcome { .. })
    ));

    let key_id = ClusterKey::from_bytes(&KEY).id();
    let attempts: Vec<Vec<u8>> = vec![
        // In clear, after the hello.
        plain_frame(&hello("n1")),
        // Sealed under another key.
        {
            let mut other = Vec::new();
            let hs = ClientHandshake::start(&ring(OTHER_KEY), StreamNonce([4; 32]), &mut other);
            let mut forged_accept = Vec::new();
            write_frame(&mut forged_accept, |b| {
                b.extend_from_slice(&chorus_proto::wire::MAGIC.to_be_bytes());
                b.push(chorus_proto::wire::VERSION);
                b.push(KIND_STREAM_ACCEPT);
                b.extend_from_slice(&hs.key_id().0.to_be_bytes());
                b.extend_from_slice(&[0; 32]);
            });
            let mut sealed = hs.finish(&frames(&forged_accept, 64)[0]).unwrap();
            let mut out = Vec::new();
            sealed
                .seal_frame(&mut out, |b| hello("n1").encode(b))
                .unwrap();
            out
        },
        // Garbage the size of a sealed frame.
        {
            let mut out = Vec::new();
            write_frame(&mut out, |b| b.extend_from_slice(&[0x5a; 64]));
            out
        },
    ];
    let mut offer = Vec::new();
    write_frame(&mut offer, |b| {
        b.extend_from_slice(&chorus_proto::wire::MAGIC.to_be_bytes());
        b.push(chorus_proto::wire::VERSION);
        b.push(stream::KIND_STREAM_HELLO);
        b.extend_from_slice(&key_id.0.to_be_bytes());
        b.extend_from_slice(&[5; 32]);
    });
    for mut attempt in attempts {
        attempt.extend(plain_frame(&ToDirectory::ListGroups { request: 1 }));
        let got = handshake_then(dir.local_addr(), &offer, &attempt);
        assert!(got.is_empty(), "nothing after the nonce: {got:?}");
    }
    // The owner of the name is still registered: its link stays up and
    // answers.
    owner.list_groups(2, "the owner's link was closed");
}

#[test]
fn a_recorded_session_replayed_is_refused() {
    let dir = keyed_directory(Trust::Ephemeral(KEY));
    let mut c = KeyedClient::connect(dir.local_addr(), &ring(KEY), 1);
    c.send(&hello("n1"));
    assert!(matches!(
        c.recv_within(WAIT),
        Some(FromDirectory::Welcome { .. })
    ));
    c.send(&ToDirectory::ListGroups { request: 3 });
    let recorded = c.sent.clone();
    drop(c);
    // The directory draws a new nonce: the recorded frames were sealed
    // under keys of another session.
    let (hello, rest) = recorded.split_at(4 + HANDSHAKE_BYTES);
    let got = handshake_then(dir.local_addr(), hello, rest);
    assert!(got.is_empty(), "nothing after the nonce: {got:?}");
}

#[test]
fn during_a_rotation_clients_with_either_key_register() {
    let dir = keyed_directory(Trust::Ephemeral(KEY));
    // The directory's ring here holds one key; a daemon that already
    // seals with the next key but accepts the old is refused until the
    // directory accepts the next key too: it offers its current key only.
    let next = KeyRing::new(
        ClusterKey::from_bytes(&OTHER_KEY),
        vec![ClusterKey::from_bytes(&KEY)],
    );
    let mut s = TcpStream::connect(dir.local_addr()).unwrap();
    let mut out = Vec::new();
    ClientHandshake::start(&next, StreamNonce([3; 32]), &mut out);
    s.write_all(&out).unwrap();
    assert!(read_until_closed(&mut s).is_empty());
    let mut c = KeyedClient::connect(dir.local_addr(), &ring(KEY), 2);
    c.send(&hello("n2"));
    assert!(matches!(
        c.recv_within(WAIT),
        Some(FromDirectory::Welcome { .. })
    ));
}

#[test]
fn an_insecure_directory_refuses_a_keyed_client() {
    let dir = keyed_directory(Trust::Insecure);
    let mut s = TcpStream::connect(dir.local_addr()).unwrap();
    let mut out = Vec::new();
    ClientHandshake::start(&ring(KEY), StreamNonce([3; 32]), &mut out);
    s.write_all(&out).unwrap();
    assert!(read_until_closed(&mut s).is_empty());
}

fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

#[test]
fn keyed_replicas_elect_and_their_raft_port_refuses_a_peer_without_the_key() {
    let dir = std::env::temp_dir().join(format!("chorus-keyed-raft-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ports = free_ports(2);
    let peers = vec![PeerConfig {
        id: ReplicaId(1),
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, ports[0])),
        raft: SocketAddr::from((Ipv4Addr::LOCALHOST, ports[1])),
    }];
    let cfg = DirectoryConfig {
        listen: peers[0].listen,
        lease_ms: 1500,
        trust: Trust::Ephemeral(KEY),
        replication: Some(ReplicationConfig {
            id: peers[0].id,
            state_dir: dir.join("replica1"),
            peers: peers.clone(),
        }),
        ..DirectoryConfig::default()
    };
    let server = Server::bind(&cfg).unwrap().spawn().unwrap();
    // The replica leads (its own vote, through its own sealed port is not
    // needed with one replica) and welcomes a keyed daemon.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut c = KeyedClient::connect(peers[0].listen, &ring(KEY), 1);
        c.send(&hello("n1"));
        match c.recv_within(WAIT) {
            Some(FromDirectory::Welcome { .. }) => break,
            Some(FromDirectory::Redirect { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            other => panic!("expected a Welcome, got {other:?}"),
        }
    }
    // A Raft request in clear (as an insecure replica sends) gets the
    // clear refusal only, never a Raft reply.
    let mut s = TcpStream::connect(peers[0].raft).unwrap();
    let vote = br#"{"version":1,"cluster":1,"from":7,"body":{"Vote":{}}}"#;
    let mut out = (vote.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(vote);
    s.write_all(&out).unwrap();
    let got = frames(&read_until_closed(&mut s), 1024);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0][3], KIND_STREAM_KEY_REQUIRED);
    // A hello under another key: closed with nothing said.
    let mut s = TcpStream::connect(peers[0].raft).unwrap();
    let mut out = Vec::new();
    ClientHandshake::start(&ring(OTHER_KEY), StreamNonce([3; 32]), &mut out);
    s.write_all(&out).unwrap();
    assert!(read_until_closed(&mut s).is_empty());
    // The right key id with a request sealed under another key: the nonce,
    // then the close; no Raft reply.
    let mut offer = Vec::new();
    let key_id = ClusterKey::from_bytes(&KEY).id();
    write_frame(&mut offer, |b| {
        b.extend_from_slice(&chorus_proto::wire::MAGIC.to_be_bytes());
        b.push(chorus_proto::wire::VERSION);
        b.push(stream::KIND_STREAM_HELLO);
        b.extend_from_slice(&key_id.0.to_be_bytes());
        b.extend_from_slice(&[5; 32]);
    });
    let mut request = Vec::new();
    write_frame(&mut request, |b| {
        b.extend_from_slice(vote);
        b.extend_from_slice(&[0; TAG_BYTES]);
    });
    let got = handshake_then(peers[0].raft, &offer, &request);
    assert!(got.is_empty(), "no Raft reply: {got:?}");
    server.stop().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Three keyed replicas elect over their sealed Raft ports (a replica
/// that could not open its peers' frames would never win a vote), the
/// followers redirect a keyed daemon to the leader, and a replica with
/// another key cannot join them.
#[test]
fn keyed_replicas_elect_over_sealed_ports_and_redirect() {
    let dir = std::env::temp_dir().join(format!("chorus-keyed-three-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ports = free_ports(6);
    let peers: Vec<PeerConfig> = (0..3)
        .map(|k| PeerConfig {
            id: ReplicaId(k as u64 + 1),
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, ports[2 * k])),
            raft: SocketAddr::from((Ipv4Addr::LOCALHOST, ports[2 * k + 1])),
        })
        .collect();
    let start = |k: usize, key: [u8; 32]| {
        let cfg = DirectoryConfig {
            listen: peers[k].listen,
            lease_ms: 1500,
            trust: Trust::Ephemeral(key),
            replication: Some(ReplicationConfig {
                id: peers[k].id,
                state_dir: dir.join(format!("replica{}", k + 1)),
                peers: peers.clone(),
            }),
            ..DirectoryConfig::default()
        };
        Server::bind(&cfg).unwrap().spawn().unwrap()
    };
    // Replica 3 holds another key: replicas 1 and 2 are the majority.
    let servers = [start(0, KEY), start(1, KEY), start(2, OTHER_KEY)];
    let deadline = Instant::now() + Duration::from_secs(20);
    let leader = loop {
        let mut found = None;
        for p in &peers[..2] {
            let mut c = KeyedClient::connect(p.listen, &ring(KEY), 1);
            c.send(&hello("n1"));
            let got = c.recv_within(WAIT);
            match got {
                Some(FromDirectory::Welcome { .. }) => found = Some(p.listen),
                Some(FromDirectory::Redirect { leader: Some(l) }) => found = Some(l),
                _ => {}
            }
        }
        if let Some(l) = found {
            break l;
        }
        assert!(Instant::now() < deadline, "no leader among keyed replicas");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        leader == peers[0].listen || leader == peers[1].listen,
        "the replica without the key cannot lead: {leader}"
    );
    // The replica with another key never leads: it redirects (to nobody
    // it can name, or to the leader it cannot reach) its own keyed daemon.
    let mut c = KeyedClient::connect(peers[2].listen, &ring(OTHER_KEY), 1);
    c.send(&hello("n3"));
    assert!(
        !matches!(c.recv_within(WAIT), Some(FromDirectory::Welcome { .. })),
        "a replica cut off by its key must not serve"
    );
    drop(servers);
    let _ = std::fs::remove_dir_all(&dir);
}
