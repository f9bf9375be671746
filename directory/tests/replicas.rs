//! Replicated directories in one process: the leader serves under its
//! term, followers redirect, and the Raft port shrugs off peers that send
//! garbage or run another version.

#![allow(clippy::unwrap_used)]

mod common;

use chorus_config::{DirectoryConfig, PeerConfig, ReplicaId, ReplicationConfig};
use chorus_directory::{Server, ServerHandle};
use chorus_proto::wire::directory::{FromDirectory, ToDirectory};
use chorus_proto::{Epoch, Incarnation};
use common::FakeDaemon;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Long enough for any election on a loaded machine.
const ELECTION_WAIT: Duration = Duration::from_secs(15);

fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

fn peers(n: usize) -> Vec<PeerConfig> {
    let ports = free_ports(2 * n);
    (0..n)
        .map(|k| PeerConfig {
            id: ReplicaId(k as u64 + 1),
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, ports[2 * k])),
            raft: SocketAddr::from((Ipv4Addr::LOCALHOST, ports[2 * k + 1])),
        })
        .collect()
}

fn replica(peers: &[PeerConfig], k: usize, dir: &std::path::Path) -> ServerHandle {
    let cfg = DirectoryConfig {
        listen: peers[k].listen,
        lease_ms: 1500,
        replication: Some(ReplicationConfig {
            id: peers[k].id,
            state_dir: dir.join(format!("replica{}", k + 1)),
            peers: peers.to_vec(),
        }),
        ..DirectoryConfig::default()
    };
    Server::bind(&cfg).unwrap().spawn().unwrap()
}

fn state_dir(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("chorus-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Connects to `addr` and says Hello until something other than a
/// Redirect to nowhere comes back (the replicas may still be electing).
fn first_answer(addr: SocketAddr) -> FromDirectory {
    let deadline = Instant::now() + ELECTION_WAIT;
    loop {
        let mut d = FakeDaemon::connect(addr, "n1", 1);
        d.send(&ToDirectory::Hello {
            name: "n1".into(),
            incarnation: Incarnation(1),
            ip: Ipv4Addr::LOCALHOST,
            data_port: 7401,
            order_port: 7402,
            previous: None,
            epoch: Epoch(0),
        });
        match d.recv() {
            Some(FromDirectory::Redirect { leader: None }) | None if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Some(answer) => return answer,
            None => panic!("no answer from {addr}"),
        }
    }
}

#[test]
fn a_single_replica_leads_and_welcomes_under_its_term() {
    let dir = state_dir("single-replica");
    let peers = peers(1);
    let server = replica(&peers, 0, &dir);
    match first_answer(peers[0].listen) {
        FromDirectory::Welcome { epoch, .. } => assert!(epoch.0 >= 1, "epoch {epoch}"),
        other => panic!("expected a Welcome, got {other:?}"),
    }
    server.stop().unwrap();
    // The vote is on disk: a restarted replica never votes twice in a term.
    assert!(dir.join("replica1").join("raft-state.json").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn followers_redirect_daemons_to_the_leader() {
    let dir = state_dir("three-replicas");
    let peers = peers(3);
    let servers: Vec<ServerHandle> = (0..3).map(|k| replica(&peers, k, &dir)).collect();
    let mut welcomed = Vec::new();
    let mut redirects = Vec::new();
    for p in &peers {
        match first_answer(p.listen) {
            FromDirectory::Welcome { epoch, .. } => welcomed.push((p.listen, epoch)),
            FromDirectory::Redirect { leader: Some(l) } => redirects.push(l),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(welcomed.len(), 1, "one leader: {welcomed:?} {redirects:?}");
    let leader = welcomed[0].0;
    assert!(
        redirects.iter().all(|l| *l == leader),
        "{redirects:?} vs {leader}"
    );
    drop(servers);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sends one length-prefixed frame on the Raft port and reads what comes
/// back until the replica closes the connection.
fn poke(addr: SocketAddr, body: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    s.write_all(&frame).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    got
}

#[test]
fn a_raft_peer_sending_garbage_or_another_version_is_refused_and_harmless() {
    let dir = state_dir("raft-garbage");
    let peers = peers(1);
    let server = replica(&peers, 0, &dir);
    assert!(matches!(
        first_answer(peers[0].listen),
        FromDirectory::Welcome { .. }
    ));
    let raft = peers[0].raft;
    let refused = poke(raft, b"\x00\xffnot json at all");
    assert!(
        String::from_utf8_lossy(&refused).contains("Refused"),
        "{refused:?}"
    );
    let other_version = br#"{"version":99,"cluster":1,"from":7,"body":{"Vote":{}}}"#;
    let refused = String::from_utf8_lossy(&poke(raft, other_version)).into_owned();
    assert!(
        refused.contains("Refused") && refused.contains("version 99"),
        "{refused}"
    );
    // A length beyond any frame: closed without reading it.
    let mut s = TcpStream::connect(raft).unwrap();
    s.write_all(&u32::MAX.to_be_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).unwrap_or(0), 0);
    // The replica still leads and serves.
    assert!(matches!(
        first_answer(peers[0].listen),
        FromDirectory::Welcome { .. }
    ));
    server.stop().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
