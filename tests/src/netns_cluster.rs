//! A cluster with one daemon per network-namespace host.
//!
//! The directory runs in host 1's namespace; host k runs daemon `nk` on its
//! own address. Ports are fixed (each host has its own network stack).

use std::net::SocketAddrV4;
use std::time::Duration;

use crate::alloc::mcast_group;
use crate::cluster::{DirectoryProc, Node};
use crate::configs::{test_log_level, DaemonConfig, DirectoryConfig, GroupSpec};
use crate::error::Result;
use crate::keys::cluster_keys;
use crate::listener::Listener;
use crate::loopback::LEASE_MS;
use crate::netns::{Tools, Topology};
use crate::testenv::TestEnv;

/// The directory's TCP port inside host 1.
pub const DIRECTORY_PORT: u16 = 7400;
/// Every daemon's `data_port`.
pub const DATA_PORT: u16 = 7401;

/// Directory + one daemon per namespace host. Dropping it kills the
/// processes, then deletes the namespaces.
#[derive(Debug)]
pub struct NetnsCluster {
    /// The daemons, `n1`..`nN` (daemon k runs in host k).
    pub nodes: Vec<Node>,
    /// The directory (in host 1).
    pub directory: DirectoryProc,
    /// The declared group.
    pub group: GroupSpec,
    /// The namespaces (dropped after the processes in them).
    pub topology: Topology,
    env: TestEnv,
}

impl NetnsCluster {
    /// Builds `hosts` namespaces, starts the directory in host 1 and a daemon
    /// in every host, each awaited through `READY=1`.
    pub fn start(
        tools: &Tools,
        test: &str,
        group_name: &str,
        hosts: usize,
        timeout: Duration,
    ) -> Result<NetnsCluster> {
        NetnsCluster::start_with_spares(tools, test, group_name, hosts, 0, timeout)
    }

    /// As [`NetnsCluster::start`], with `spares` more hosts after the
    /// daemons' that run nothing: for an outsider's processes.
    pub fn start_with_spares(
        tools: &Tools,
        test: &str,
        group_name: &str,
        hosts: usize,
        spares: usize,
        timeout: Duration,
    ) -> Result<NetnsCluster> {
        let env = TestEnv::new(test, timeout)?;
        let topology = Topology::create(tools, hosts + spares)?;
        let group = GroupSpec {
            name: group_name.to_owned(),
            mcast: mcast_group(test)?,
        };
        let listen = SocketAddrV4::new(topology.host(1).addr, DIRECTORY_PORT);
        let dir_config = DirectoryConfig {
            listen,
            lease_ms: LEASE_MS,
            log_level: test_log_level(),
            groups: vec![group.clone()],
            replica: None,
            keys: cluster_keys(env.dir())?,
        };
        let directory = DirectoryProc::start(&env, &topology.launcher(1), &dir_config)?;
        let mut nodes = Vec::with_capacity(hosts);
        for k in 1..=hosts {
            let node = format!("n{k}");
            let config = DaemonConfig {
                socket: env.path(&format!("{node}.sock")),
                node,
                directory: vec![listen],
                interface: topology.host(k).addr,
                data_port: DATA_PORT,
                socket_mode: "0600".to_owned(),
                log_level: test_log_level(),
                max_message_bytes: None,
                keys: cluster_keys(env.dir())?,
            };
            nodes.push(Node::start(&env, &topology.launcher(k), &config)?);
        }
        Ok(NetnsCluster {
            nodes,
            directory,
            group,
            topology,
            env,
        })
    }

    /// The test environment.
    pub fn env(&self) -> &TestEnv {
        &self.env
    }

    /// Daemon `k` (from 1).
    pub fn node(&self, k: usize) -> &Node {
        &self.nodes[k - 1]
    }

    /// Starts `chorusctl listen <group> --json --name NAME` in host `k`.
    pub fn listen(&self, k: usize, name: &str) -> Result<Listener> {
        Listener::on_node(&self.env, self.node(k), &self.group.name, name)
    }
}
