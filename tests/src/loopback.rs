//! A whole cluster on 127.0.0.1: one directory (optionally a standby too)
//! and N daemons.
//!
//! Every daemon uses interface 127.0.0.1 with its own data port; the test's
//! group has its own multicast address and port (see [`crate::alloc`]) so that
//! concurrent tests never hear each other. Every file names the one key
//! the test's directory holds ([`crate::keys::cluster_key_file`]).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use crate::alloc::{free_tcp_port, free_udp_port, mcast_group};
use crate::cluster::{DirectoryProc, Launcher, Node};
use crate::configs::{test_log_level, DaemonConfig, DirectoryConfig, GroupSpec};
use crate::error::Result;
use crate::keys::cluster_keys;
use crate::listener::Listener;
use crate::testenv::TestEnv;

/// The lease the harness gives the directory (the contract's default).
pub const LEASE_MS: u64 = 1500;

/// Directory (or a primary and a standby directory) + daemons on loopback.
/// Dropping it kills everything it started.
#[derive(Debug)]
pub struct LoopbackCluster {
    /// The daemons, `n1`..`nN`. (Fields drop in order: daemons first.)
    pub nodes: Vec<Node>,
    /// The directory (the primary: first in every daemon's list).
    pub directory: DirectoryProc,
    /// A second directory with the same groups, listed after the primary,
    /// when started with [`LoopbackCluster::start_with_standby`]. Nothing
    /// connects to it until the primary fails.
    pub standby: Option<DirectoryProc>,
    /// The declared group every test uses.
    pub group: GroupSpec,
    env: TestEnv,
}

impl LoopbackCluster {
    /// Starts a directory declaring group `group_name`, then `daemons`
    /// daemons, waiting for each to be ready. `timeout` is the whole test's
    /// watchdog limit.
    pub fn start(
        test: &str,
        group_name: &str,
        daemons: usize,
        timeout: Duration,
    ) -> Result<LoopbackCluster> {
        LoopbackCluster::launch(test, group_name, daemons, timeout, false, None)
    }

    /// As [`LoopbackCluster::start`], every daemon with `[tuning]
    /// max_message_bytes` set.
    pub fn start_with_max_message(
        test: &str,
        group_name: &str,
        daemons: usize,
        timeout: Duration,
        max_message_bytes: usize,
    ) -> Result<LoopbackCluster> {
        LoopbackCluster::launch(
            test,
            group_name,
            daemons,
            timeout,
            false,
            Some(max_message_bytes),
        )
    }

    /// As [`LoopbackCluster::start`], plus a standby directory (files
    /// `standby.*`) on its own port with the same groups; every daemon's
    /// `directory` lists the primary, then the standby.
    pub fn start_with_standby(
        test: &str,
        group_name: &str,
        daemons: usize,
        timeout: Duration,
    ) -> Result<LoopbackCluster> {
        LoopbackCluster::launch(test, group_name, daemons, timeout, true, None)
    }

    fn launch(
        test: &str,
        group_name: &str,
        daemons: usize,
        timeout: Duration,
        with_standby: bool,
        max_message_bytes: Option<usize>,
    ) -> Result<LoopbackCluster> {
        let env = TestEnv::new(test, timeout)?;
        let group = GroupSpec {
            name: group_name.to_owned(),
            mcast: mcast_group(test)?,
        };
        // Each port is picked once the directories before it hold theirs.
        let directory = start_directory(&env, &group, "directory")?;
        let standby = if with_standby {
            Some(start_directory(&env, &group, "standby")?)
        } else {
            None
        };
        let addresses: Vec<SocketAddrV4> = std::iter::once(&directory)
            .chain(&standby)
            .map(|d| d.listen)
            .collect();
        let mut nodes = Vec::with_capacity(daemons);
        for k in 1..=daemons {
            let node = format!("n{k}");
            let config = DaemonConfig {
                socket: env.path(&format!("{node}.sock")),
                node,
                directory: addresses.clone(),
                interface: Ipv4Addr::LOCALHOST,
                data_port: free_udp_port()?,
                socket_mode: "0600".to_owned(),
                log_level: test_log_level(),
                max_message_bytes,
                keys: cluster_keys(env.dir())?,
            };
            nodes.push(Node::start(&env, &Launcher::Host, &config)?);
        }
        Ok(LoopbackCluster {
            nodes,
            directory,
            standby,
            group,
            env,
        })
    }

    /// The test environment (directory, spawning, watchdog).
    pub fn env(&self) -> &TestEnv {
        &self.env
    }

    /// The environment, the daemons and the directory at once (a scenario
    /// that restarts the directory needs all three).
    pub fn parts_mut(&mut self) -> (&TestEnv, &[Node], &mut DirectoryProc) {
        (&self.env, &self.nodes, &mut self.directory)
    }

    /// Restarts the directory (SIGTERM, then a start on its config file
    /// read anew); `life` names the new process's logs
    /// (`directory-LIFE.log`).
    pub fn restart_directory(&mut self, life: u32) -> Result<()> {
        self.directory.restart(&self.env, &Launcher::Host, life)
    }

    /// Restarts daemon `k` (counted from 1) the same way; its new logs are
    /// `chorusd-nK-LIFE.log`.
    pub fn restart_node(&mut self, k: usize, life: u32) -> Result<()> {
        self.nodes[k - 1].restart(&self.env, life)
    }

    /// Daemon `k`, counted from 1 like the node names.
    pub fn node(&self, k: usize) -> &Node {
        &self.nodes[k - 1]
    }

    /// Starts `chorusctl listen <group> --json --name NAME` on daemon `k`.
    pub fn listen(&self, k: usize, name: &str) -> Result<Listener> {
        Listener::on_node(&self.env, self.node(k), &self.group.name, name)
    }
}

/// Starts a directory on a free loopback port declaring `group`, its files
/// named `name.*`.
fn start_directory(env: &TestEnv, group: &GroupSpec, name: &str) -> Result<DirectoryProc> {
    let config = DirectoryConfig {
        listen: SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_tcp_port()?),
        lease_ms: LEASE_MS,
        log_level: test_log_level(),
        groups: vec![group.clone()],
        replica: None,
        keys: cluster_keys(env.dir())?,
    };
    DirectoryProc::start_named(env, &Launcher::Host, &config, name)
}
