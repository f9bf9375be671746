//! A replicated directory: several `chorus-directory` replicas that elect a
//! leader with Raft, and daemons that list every replica; on loopback, or
//! one process per network-namespace host (replica k in host k, daemon j in
//! host R + j, one host left for a daemon started later), so that a
//! replica can be cut off with nftables.
//!
//! Each replica has its own daemon port, Raft port and state directory in
//! the test directory. Daemons start on the first replica in their list and
//! are redirected to the leader; [`ReplicatedCluster::leader`] finds it
//! through the daemons' status.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::time::{Duration, Instant};

use crate::alloc::{free_udp_port, mcast_group};
use crate::check::{SenderWork, Trace};
use crate::cluster::{DirectoryProc, Launcher, Node};
use crate::configs::{
    test_log_level, DaemonConfig, DirectoryConfig, GroupSpec, PeerSpec, ReplicaSpec,
};
use crate::error::{HarnessError, Result};
use crate::keys::cluster_keys;
use crate::listener::{Event, Listener, ViewEvent};
use crate::loopback::LEASE_MS;
use crate::netns::{Tools, Topology};
use crate::testenv::TestEnv;

/// Hosts a namespace cluster keeps for daemons started later.
pub const SPARE_HOSTS: usize = 1;
/// Ports inside a namespace host (each host has its own stack).
const NETNS_LISTEN_PORT: u16 = 7400;
const NETNS_RAFT_PORT: u16 = 7405;
const NETNS_DATA_PORT: u16 = 7401;

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
    /// Where each replica runs.
    launchers: Vec<Launcher>,
    /// The namespaces, for a namespace cluster (dropped after the processes).
    pub topology: Option<Topology>,
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
        ReplicatedCluster::launch(test, group_name, replicas, daemons, timeout, None)
    }

    /// As [`ReplicatedCluster::start`], one process per namespace host.
    pub fn start_netns(
        tools: &Tools,
        test: &str,
        group_name: &str,
        replicas: usize,
        daemons: usize,
        timeout: Duration,
    ) -> Result<ReplicatedCluster> {
        ReplicatedCluster::launch(test, group_name, replicas, daemons, timeout, Some(tools))
    }

    fn launch(
        test: &str,
        group_name: &str,
        replicas: usize,
        daemons: usize,
        timeout: Duration,
        tools: Option<&Tools>,
    ) -> Result<ReplicatedCluster> {
        let env = TestEnv::new(test, timeout)?;
        let group = GroupSpec {
            name: group_name.to_owned(),
            mcast: mcast_group(test)?,
        };
        let topology = tools
            .map(|t| Topology::create(t, replicas + daemons + SPARE_HOSTS))
            .transpose()?;
        let (peers, launchers): (Vec<PeerSpec>, Vec<Launcher>) = match &topology {
            None => {
                let ports = free_tcp_ports(2 * replicas)?;
                (0..replicas)
                    .map(|k| {
                        let peer = PeerSpec {
                            id: k as u64 + 1,
                            listen: SocketAddrV4::new(Ipv4Addr::LOCALHOST, ports[2 * k]),
                            raft: SocketAddrV4::new(Ipv4Addr::LOCALHOST, ports[2 * k + 1]),
                        };
                        (peer, Launcher::Host)
                    })
                    .unzip()
            }
            Some(t) => (1..=replicas)
                .map(|k| {
                    let addr = t.host(k).addr;
                    let peer = PeerSpec {
                        id: k as u64,
                        listen: SocketAddrV4::new(addr, NETNS_LISTEN_PORT),
                        raft: SocketAddrV4::new(addr, NETNS_RAFT_PORT),
                    };
                    (peer, t.launcher(k))
                })
                .unzip(),
        };
        let replicas = peers
            .iter()
            .zip(&launchers)
            .map(|(p, launcher)| {
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
                    keys: cluster_keys(env.dir())?,
                };
                DirectoryProc::start_named(&env, launcher, &config, &format!("replica{}", p.id))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut cluster = ReplicatedCluster {
            nodes: Vec::new(),
            replicas,
            peers,
            group,
            launchers,
            topology,
            env,
        };
        for _ in 0..daemons {
            cluster.add_node()?;
        }
        Ok(cluster)
    }

    /// Starts one more daemon, `n<k>`, listing every replica.
    pub fn add_node(&mut self) -> Result<&Node> {
        self.add_node_trying_first(0)
    }

    /// As [`ReplicatedCluster::add_node`], with replica `first` (index)
    /// first in the daemon's list: the one it reaches first.
    pub fn add_node_trying_first(&mut self, first: usize) -> Result<&Node> {
        let node = format!("n{}", self.nodes.len() + 1);
        let (interface, data_port, launcher) = match &self.topology {
            None => (Ipv4Addr::LOCALHOST, free_udp_port()?, Launcher::Host),
            Some(t) => {
                let host = self.peers.len() + self.nodes.len() + 1;
                if host > t.hosts().len() {
                    return Err(HarnessError::Unexpected(format!(
                        "no namespace host left for {node}"
                    )));
                }
                (t.host(host).addr, NETNS_DATA_PORT, t.launcher(host))
            }
        };
        let config = DaemonConfig {
            socket: self.env.path(&format!("{node}.sock")),
            node,
            directory: self
                .peers
                .iter()
                .cycle()
                .skip(first)
                .take(self.peers.len())
                .map(|p| p.listen)
                .collect(),
            interface,
            data_port,
            socket_mode: "0600".to_owned(),
            log_level: test_log_level(),
            max_message_bytes: None,
            keys: cluster_keys(self.env.dir())?,
        };
        self.nodes.push(Node::start(&self.env, &launcher, &config)?);
        self.nodes
            .last()
            .ok_or_else(|| HarnessError::Unexpected("no node".into()))
    }

    /// `kill -9` replica `k` (index) if it runs, and start it again on the
    /// same configuration and state directory; `life` names its new logs.
    pub fn restart_replica(&mut self, k: usize, life: u32) -> Result<()> {
        self.replicas[k].kill_and_restart(&self.env, &self.launchers[k], life)
    }

    /// Cuts replica `k` (index) off the network (namespace clusters only).
    pub fn partition_replica(&self, k: usize) -> Result<()> {
        self.namespaces()?.partition(k + 1)
    }

    /// Ends the partition of replica `k`; returns the packets it dropped.
    pub fn heal_replica(&self, k: usize) -> Result<u64> {
        self.namespaces()?.heal(k + 1)
    }

    fn namespaces(&self) -> Result<&Topology> {
        self.topology
            .as_ref()
            .ok_or_else(|| HarnessError::Unexpected("not a namespace cluster".into()))
    }

    /// The test environment.
    pub fn env(&self) -> &TestEnv {
        &self.env
    }

    /// The index of the replica every daemon is registered with, once they
    /// all are with the same one (within `timeout`).
    pub fn leader(&self, timeout: Duration) -> Result<usize> {
        self.leader_other_than(None, timeout)
    }

    /// As [`ReplicatedCluster::leader`], waiting for a replica other than
    /// `old` (whose daemons may not have noticed its loss yet).
    pub fn leader_other_than(&self, old: Option<usize>, timeout: Duration) -> Result<usize> {
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
                        .filter(|k| Some(*k) != old)
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

/// Waits until `listener` delivered the `(per_sender / 10)`-th message of
/// every sender of `work`: the stream is well under way.
pub fn wait_a_tenth(
    listener: &Listener,
    work: &[SenderWork],
    per_sender: usize,
    timeout: Duration,
) -> Result<()> {
    let tenth: Vec<String> = work
        .iter()
        .map(|w| format!("{}-{:06}", w.label, (per_sender / 10).max(1)))
        .collect();
    listener.wait_until("a tenth of every sender's messages", timeout, |seen| {
        let got: BTreeSet<&str> = seen.messages().filter_map(|m| m.data.as_deref()).collect();
        tenth.iter().all(|p| got.contains(p.as_str())).then_some(())
    })
}

/// Waits until every listener was told `view` itself (same id, same
/// members): one line of views, not a copy of the group of their own.
pub fn wait_view_everywhere(
    listeners: &[Listener],
    view: &ViewEvent,
    timeout: Duration,
) -> Result<()> {
    for l in listeners {
        l.wait_until(
            &format!("view {} {:?}", view.view, view.members),
            timeout,
            |seen| {
                seen.events.iter().find_map(|e| match e {
                    Event::View(v) if v.view == view.view && v.members == view.members => Some(()),
                    _ => None,
                })
            },
        )?;
    }
    Ok(())
}

/// A member that joined late delivered, at each position, what the
/// reference delivered there, and every message of `must_have`.
pub fn check_late_member(late: &Trace, reference: &Trace, must_have: &[SenderWork]) -> Result<()> {
    let by_seq: BTreeMap<u64, _> = reference.deliveries.iter().map(|d| (d.seq, d)).collect();
    for d in &late.deliveries {
        if by_seq.get(&d.seq) != Some(&d) {
            return Err(HarnessError::Unexpected(format!(
                "{} delivered {d:?} at seq {}, {} delivered {:?}",
                late.listener,
                d.seq,
                reference.listener,
                by_seq.get(&d.seq)
            )));
        }
    }
    let got: BTreeSet<&str> = late.deliveries.iter().map(|d| d.data.as_str()).collect();
    let missing: Vec<&String> = must_have
        .iter()
        .flat_map(|w| &w.payloads)
        .filter(|p| !got.contains(p.as_str()))
        .collect();
    if !missing.is_empty() {
        return Err(HarnessError::Unexpected(format!(
            "{} lacks {} messages, e.g. {:?}",
            late.listener,
            missing.len(),
            missing.iter().take(5).collect::<Vec<_>>()
        )));
    }
    Ok(())
}
