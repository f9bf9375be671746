//! The cluster a benchmark runs on: the harness's loopback or namespace
//! cluster, with one declared group.

use std::time::Duration;

use crate::bench::BenchError;
use crate::cluster::Node;
use crate::loopback::LoopbackCluster;
use crate::netns::{find_tool, Tools};
use crate::netns_cluster::NetnsCluster;
use crate::testenv::TestEnv;

/// The group every run uses (declared by the directory).
pub const GROUP: &str = "bench";

/// Names the cluster's temporary directory and picks its multicast group.
const TEST_NAME: &str = "bench";

/// A directory and N daemons; dropping it stops them all (and deletes the
/// namespaces).
#[derive(Debug)]
pub enum BenchCluster {
    Loopback(LoopbackCluster),
    Netns(NetnsCluster),
}

impl BenchCluster {
    /// Starts the directory and `nodes` daemons, on 127.0.0.1 or one per
    /// namespace, each awaited until ready. `watchdog` bounds the life of
    /// the whole cluster: past it the harness kills every process.
    pub fn start(
        nodes: usize,
        netns: bool,
        watchdog: Duration,
    ) -> Result<BenchCluster, BenchError> {
        if netns {
            let tools = netns_tools()?;
            let c = NetnsCluster::start(&tools, TEST_NAME, GROUP, nodes, watchdog)?;
            Ok(BenchCluster::Netns(c))
        } else {
            let c = LoopbackCluster::start(TEST_NAME, GROUP, nodes, watchdog)?;
            Ok(BenchCluster::Loopback(c))
        }
    }

    /// The daemons, `n1`..`nN`.
    pub fn nodes(&self) -> &[Node] {
        match self {
            BenchCluster::Loopback(c) => &c.nodes,
            BenchCluster::Netns(c) => &c.nodes,
        }
    }

    /// The declared group's name.
    pub fn group(&self) -> &str {
        match self {
            BenchCluster::Loopback(c) => &c.group.name,
            BenchCluster::Netns(c) => &c.group.name,
        }
    }

    /// The environment (temporary directory, logs, processes).
    pub fn env(&self) -> &TestEnv {
        match self {
            BenchCluster::Loopback(c) => c.env(),
            BenchCluster::Netns(c) => c.env(),
        }
    }
}

/// The namespace tools, or why namespaces cannot be made here. (Unlike
/// [`crate::netns::require`], never panics under `CI`: the bench reports.)
fn netns_tools() -> Result<Tools, BenchError> {
    let root = nix::unistd::Uid::effective().is_root();
    match (find_tool("ip"), find_tool("nft")) {
        (Some(ip), Some(nft)) if root => Ok(Tools { ip, nft }),
        (ip, nft) => Err(BenchError::Unavailable(format!(
            "--netns needs root, iproute2 and nftables (root: {root}, ip: {}, nft: {})",
            ip.map_or("not found".into(), |p| p.display().to_string()),
            nft.map_or("not found".into(), |p| p.display().to_string()),
        ))),
    }
}
