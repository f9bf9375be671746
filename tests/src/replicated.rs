//! A replicated directory on loopback: several `chorus-directory` replicas
//! that elect a leader with Raft, and daemons that list every replica.
//!
//! Each replica has its own daemon port, Raft port and state directory in
//! the test directory. Daemons start on the first replica in their list and
//! are redirected to the leader; [`ReplicatedCluster::leader`] finds it
//! through the daemons' status.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::time::{Duration, Instant};

use crate::alloc::{free_udp_port, mcast_group};
use crate::cluster::{DirectoryProc, Launcher, Node};
use crate::configs::{
    test_log_level, DaemonConfig, DirectoryConfig, GroupSpec, PeerSpec, ReplicaSpec,
};
use crate::error::{HarnessError, Result};
use crate::loopback::LEASE_MS;
use crate::testenv::TestEnv;

/// Replicas and daemons on loopback. Dropping it kills everything it started.
#[derive(Debug)]
pub struct ReplicatedCluster {
    /// The daemons, `n1`.. (fields drop in order: daemons first).
    pub nodes: Vec<Node>,
    /// The replicas, replica `k + 1` at index `k`.
    pub replicas: Vec<DirectoryProc>,
    /// Every replica's `[[peer]]`.
    pub peers: Vec<PeerSpec>,
    /// The declared group.
    pub group: GroupSpec,
    env: TestEnv,
}

/// `n` distinct free TCP ports on 127.0.0.1: all held at once while picked.
fn free_tcp_ports(n: usize) -> Result<Vec<u16>> {
    let held = (0..n)
        .map(|_| {
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .map_err(|e| HarnessError::io("binding a TCP port", e))
        })
        .collect::<Result<Vec<_>>>()?;
    held.iter()
        .map(|l| {
            l.local_addr()
                .map(|a| a.port())
                .map_err(|e| HarnessError::io("local_addr", e))
        })
        .collect()
}

impl ReplicatedCluster {
    /// Starts `replicas` replicas declaring `group_name`, then `daemons`
    /// daemons listing them all. `timeout` is the test's watchdog limit.
    pub fn start(
        test: &str,
        group_name: &str,
        replicas: usize,
        daemons: usize,
        timeout: Duration,
    ) -> Result<ReplicatedCluster> {
        let env = TestEnv::new(test, timeout)?;
        let group = GroupSpec {
            name: group_name.to_owned(),
            mcast: mcast_group(test)?,
        };
        let ports = free_tcp_ports(2 * replicas)?;
        let peers: Vec<PeerSpec> = (0..replicas)
            .map(|k| PeerSpec {
                id: k as u64 + 1,
                listen: SocketAddrV4::new(Ipv4Addr::LOCALHOST, ports[2 * k]),
                raft: SocketAddrV4::new(Ipv4Addr::LOCALHOST, ports[2 * k + 1]),
            })
            .collect();
        let replicas = peers
            .iter()
            .map(|p| {
                let config = DirectoryConfig {
                    listen: p.listen,
                    lease_ms: LEASE_MS,
                    log_level: test_log_level(),
                    groups: vec![group.clone()],
                    replica: Some(ReplicaSpec {
                        id: p.id,
                        state_dir: env.path(&format!("replica{}.state", p.id)),
                        peers: peers.clone(),
                    }),
                };
                DirectoryProc::start_named(
                    &env,
                    &Launcher::Host,
                    &config,
                    &format!("replica{}", p.id),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let mut cluster = ReplicatedCluster {
            nodes: Vec::new(),
            replicas,
            peers,
            group,
            env,
        };
        for _ in 0..daemons {
            cluster.add_node()?;
        }
        Ok(cluster)
    }

    /// Starts one more daemon, `n<k>`, listing every replica.
    pub fn add_node(&mut self) -> Result<&Node> {
        let node = format!("n{}", self.nodes.len() + 1);
        let config = DaemonConfig {
            socket: self.env.path(&format!("{node}.sock")),
            node,
            directory: self.peers.iter().map(|p| p.listen).collect(),
            interface: Ipv4Addr::LOCALHOST,
            data_port: free_udp_port()?,
            socket_mode: "0600".to_owned(),
            log_level: test_log_level(),
            max_message_bytes: None,
        };
        self.nodes
            .push(Node::start(&self.env, &Launcher::Host, &config)?);
        self.nodes
            .last()
            .ok_or_else(|| HarnessError::Unexpected("no node".into()))
    }

    /// `kill -9` replica `k` (index) if it runs, and start it again on the
    /// same configuration and state directory; `life` names its new logs.
    pub fn restart_replica(&mut self, k: usize, life: u32) -> Result<()> {
        self.replicas[k].kill_and_restart(&self.env, &Launcher::Host, life)
    }

    /// The test environment.
    pub fn env(&self) -> &TestEnv {
        &self.env
    }

    /// The index of the replica every daemon is registered with, once they
    /// all are with the same one (within `timeout`).
    pub fn leader(&self, timeout: Duration) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            let links = self
                .nodes
                .iter()
                .map(directory_of)
                .collect::<Result<Vec<_>>>()?;
            if let Some(Some(first)) = links.first() {
                if links.iter().all(|l| l.as_deref() == Some(first.as_str())) {
                    if let Some(k) = self
                        .peers
                        .iter()
                        .position(|p| p.listen.to_string() == *first)
                    {
                        return Ok(k);
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(HarnessError::Unexpected(format!(
                    "the daemons are not all registered with one replica within {timeout:?}: {links:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The directory address `node`'s link is up with, if it is registered.
pub fn directory_of(node: &Node) -> Result<Option<String>> {
    let fail = |e: chorus::Error| HarnessError::Unexpected(format!("{}: status: {e}", node.name));
    let status = chorus::Client::connect(node.socket_path())
        .and_then(|mut c| c.status())
        .map_err(fail)?;
    Ok(status.connected.then_some(status.directory))
}
