//! Several "hosts" on one machine: Linux network namespaces on a bridge.
//!
//! Layout for a run with prefix `chr<pid>-<n>-`:
//! - `<prefix>br`: a namespace holding bridge `br0` (multicast snooping off,
//!   so every port gets every group's traffic, as on a plain switch);
//! - `<prefix>h<k>` for k = 1..N: a host with `lo` up and `eth0`, one end of a
//!   veth pair whose other end (`p<k>`) is a port of `br0`; address
//!   `10.77.<b>.<k>/24` (the addresses exist only inside these namespaces) and
//!   a route `224.0.0.0/4 dev eth0`, since the host has no default route.
//!
//! Loss is injected with nftables in a host's namespace: an input-hook rule
//! dropping a random P% of incoming UDP, with a counter the test reads to prove
//! that packets really were dropped.
//!
//! Everything is removed on drop (deleting a namespace deletes its veth end,
//! and the peer with it). Namespaces left by crashed earlier runs (whose pid
//! is gone) are removed when the first topology of a process is created.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

use crate::cluster::Launcher;
use crate::error::{HarnessError, Result};

/// Prefix shared by every namespace this harness creates.
const NS_PREFIX: &str = "chr";

/// The tools namespace tests need.
#[derive(Debug, Clone)]
pub struct Tools {
    /// `ip` from iproute2.
    pub ip: PathBuf,
    /// `nft` from nftables.
    pub nft: PathBuf,
}

/// Returns the tools if this process can build namespaces (root, `ip`, `nft`).
///
/// Otherwise: with `CI` set, panics (CI must run these tests); without it,
/// prints `skipped: needs root + iproute2 + nftables` and returns `None`.
pub fn require() -> Option<Tools> {
    let root = nix::unistd::Uid::effective().is_root();
    let tools = match (find_tool("ip"), find_tool("nft")) {
        (Some(ip), Some(nft)) if root => Some(Tools { ip, nft }),
        _ => None,
    };
    if tools.is_none() {
        let why = format!(
            "needs root + iproute2 + nftables (root: {root}, ip: {:?}, nft: {:?})",
            find_tool("ip"),
            find_tool("nft")
        );
        if std::env::var_os("CI").is_some() {
            panic!("CI is set but this test {why}");
        }
        eprintln!("skipped: {why}");
    }
    tools
}

/// Finds an executable in `PATH` or the sbin directories (often not in a
/// non-root `PATH`).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Runs `cmd` (optionally feeding `stdin`), returning stdout; fails with its
/// stderr if it exits non-zero.
pub fn run(cmd: &mut Command, stdin: Option<&str>) -> Result<String> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| HarnessError::io(format!("running {cmd:?}"), e))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| HarnessError::io(format!("writing stdin of {cmd:?}"), e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| HarnessError::io(format!("waiting for {cmd:?}"), e))?;
    if !out.status.success() {
        return Err(HarnessError::Unexpected(format!(
            "{cmd:?} exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One host namespace.
#[derive(Debug, Clone)]
pub struct Host {
    /// Namespace name.
    pub ns: String,
    /// Its address on the bridge.
    pub addr: Ipv4Addr,
}

/// Bridge + hosts. Dropping it deletes every namespace it created.
#[derive(Debug)]
pub struct Topology {
    tools: Tools,
    prefix: String,
    bridge_ns: String,
    hosts: Vec<Host>,
    created: Vec<String>,
}

impl Topology {
    /// Creates the bridge and `hosts` host namespaces.
    pub fn create(tools: &Tools, hosts: usize) -> Result<Topology> {
        static CLEANED: Once = Once::new();
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        CLEANED.call_once(|| remove_stale(&tools.ip));
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let prefix = format!("{NS_PREFIX}{pid}-{n}-");
        // A per-run subnet: not needed for isolation (each run has its own
        // bridge), but it makes a run's addresses recognisable in logs.
        let subnet = 1 + (pid.wrapping_add(n) % 250) as u8;
        let mut topo = Topology {
            tools: tools.clone(),
            bridge_ns: format!("{prefix}br"),
            prefix,
            hosts: Vec::new(),
            created: Vec::new(),
        };
        topo.build_bridge()?;
        for k in 1..=hosts {
            let addr = Ipv4Addr::new(10, 77, subnet, k as u8);
            topo.build_host(k, addr)?;
        }
        Ok(topo)
    }

    fn add_ns(&mut self, ns: &str) -> Result<()> {
        run(
            Command::new(&self.tools.ip).args(["netns", "add", ns]),
            None,
        )?;
        self.created.push(ns.to_owned());
        self.exec(ns, &["ip", "link", "set", "lo", "up"])?;
        Ok(())
    }

    fn build_bridge(&mut self) -> Result<()> {
        let br = self.bridge_ns.clone();
        self.add_ns(&br)?;
        self.exec(
            &br,
            &[
                "ip",
                "link",
                "add",
                "br0",
                "type",
                "bridge",
                "mcast_snooping",
                "0",
                "forward_delay",
                "0",
            ],
        )?;
        self.exec(&br, &["ip", "link", "set", "br0", "up"])?;
        Ok(())
    }

    fn build_host(&mut self, k: usize, addr: Ipv4Addr) -> Result<()> {
        let ns = format!("{}h{k}", self.prefix);
        self.add_ns(&ns)?;
        let port = format!("p{k}");
        run(
            Command::new(&self.tools.ip).args([
                "link",
                "add",
                "eth0",
                "netns",
                &ns,
                "type",
                "veth",
                "peer",
                "name",
                &port,
                "netns",
                &self.bridge_ns,
            ]),
            None,
        )?;
        let br = self.bridge_ns.clone();
        self.exec(&br, &["ip", "link", "set", &port, "master", "br0"])?;
        self.exec(&br, &["ip", "link", "set", &port, "up"])?;
        let cidr = format!("{addr}/24");
        self.exec(&ns, &["ip", "addr", "add", &cidr, "dev", "eth0"])?;
        self.exec(&ns, &["ip", "link", "set", "eth0", "up"])?;
        self.exec(&ns, &["ip", "route", "add", "224.0.0.0/4", "dev", "eth0"])?;
        self.hosts.push(Host { ns, addr });
        Ok(())
    }

    /// Runs a tool inside namespace `ns` (`ip`/`nft` resolved to full paths).
    fn exec(&self, ns: &str, argv: &[&str]) -> Result<String> {
        self.exec_stdin(ns, argv, None)
    }

    fn exec_stdin(&self, ns: &str, argv: &[&str], stdin: Option<&str>) -> Result<String> {
        let (program, rest) = argv
            .split_first()
            .ok_or_else(|| HarnessError::Unexpected("empty command".into()))?;
        let program: &Path = match *program {
            "ip" => &self.tools.ip,
            "nft" => &self.tools.nft,
            other => Path::new(other),
        };
        let mut cmd = Command::new(&self.tools.ip);
        cmd.args(["netns", "exec", ns]).arg(program).args(rest);
        run(&mut cmd, stdin)
    }

    /// Every namespace this topology created (bridge first).
    pub fn namespaces(&self) -> &[String] {
        &self.created
    }

    /// The hosts, in order (host k is `hosts()[k - 1]`).
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Host `k` (from 1).
    pub fn host(&self, k: usize) -> &Host {
        &self.hosts[k - 1]
    }

    /// A launcher that runs programs in host `k`.
    pub fn launcher(&self, k: usize) -> Launcher {
        Launcher::Netns {
            ip: self.tools.ip.clone(),
            ns: self.host(k).ns.clone(),
        }
    }

    /// A launcher that runs programs in the bridge's namespace (where the
    /// bridge `br0` and every host's port on it are).
    pub fn bridge_launcher(&self) -> Launcher {
        Launcher::Netns {
            ip: self.tools.ip.clone(),
            ns: self.bridge_ns.clone(),
        }
    }

    /// Runs `argv` in host `k` and returns its stdout.
    pub fn run_in(&self, k: usize, argv: &[&str]) -> Result<String> {
        self.exec(&self.host(k).ns, argv)
    }

    /// Drops `percent`% of the UDP packets host `k` receives (nftables).
    pub fn add_udp_loss(&self, k: usize, percent: u8) -> Result<()> {
        let rules = format!(
            "table inet chorus {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n    \
             meta l4proto udp numgen random mod 100 < {percent} counter drop\n  }}\n}}\n"
        );
        self.exec_stdin(&self.host(k).ns, &["nft", "-f", "-"], Some(&rules))?;
        Ok(())
    }

    /// Cuts host `k` off the network (nftables): every packet in or out of
    /// its `eth0` is dropped, silently (no reset: a partition, not a crash).
    /// Its own loopback still works.
    pub fn partition(&self, k: usize) -> Result<()> {
        let rules = "table inet chorus_partition {\n  \
             chain input {\n    type filter hook input priority -10; policy accept;\n    \
             iifname \"eth0\" counter drop\n  }\n  \
             chain output {\n    type filter hook output priority -10; policy accept;\n    \
             oifname \"eth0\" counter drop\n  }\n}\n";
        self.exec_stdin(&self.host(k).ns, &["nft", "-f", "-"], Some(rules))?;
        Ok(())
    }

    /// Ends [`Topology::partition`] of host `k`; returns how many packets
    /// the partition dropped (proof that it cut something).
    pub fn heal(&self, k: usize) -> Result<u64> {
        let ns = &self.host(k).ns;
        let json = self.exec(
            ns,
            &["nft", "-j", "list", "table", "inet", "chorus_partition"],
        )?;
        let dropped = nft_counter_packets(&json)?;
        self.exec(ns, &["nft", "delete", "table", "inet", "chorus_partition"])?;
        Ok(dropped)
    }

    /// How many packets host `k`'s loss rule has dropped so far.
    pub fn udp_drops(&self, k: usize) -> Result<u64> {
        let json = self.exec(
            &self.host(k).ns,
            &["nft", "-j", "list", "chain", "inet", "chorus", "input"],
        )?;
        nft_counter_packets(&json)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in self.created.iter().rev() {
            let _ = run(
                Command::new(&self.tools.ip).args(["netns", "del", ns]),
                None,
            );
        }
    }
}

/// Sums the `counter.packets` of every rule in `nft -j list ...` output.
pub fn nft_counter_packets(json: &str) -> Result<u64> {
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| HarnessError::Unexpected(format!("nft -j output {json:?}: {e}")))?;
    let items = value
        .get("nftables")
        .and_then(|v| v.as_array())
        .ok_or_else(|| HarnessError::Unexpected(format!("nft -j output has no list: {json}")))?;
    let mut packets = 0;
    let exprs = items
        .iter()
        .filter_map(|item| item.get("rule")?.get("expr")?.as_array())
        .flatten();
    for expr in exprs {
        if let Some(n) = expr
            .get("counter")
            .and_then(|c| c.get("packets"))
            .and_then(|p| p.as_u64())
        {
            packets += n;
        }
    }
    Ok(packets)
}

/// Deletes namespaces named `chr<pid>-...` whose pid is not running (crashed
/// earlier runs), and those of our own pid (left by an earlier process that
/// had the same pid: we have created none yet).
fn remove_stale(ip: &Path) {
    let Ok(list) = run(Command::new(ip).args(["netns", "list"]), None) else {
        return;
    };
    let own = std::process::id();
    for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = stale_pid(ns) else { continue };
        if pid == own || !Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("chorus-tests: removing stale namespace {ns}");
            let _ = run(Command::new(ip).args(["netns", "del", ns]), None);
        }
    }
}

/// The pid in a namespace name made by this harness (`chr<pid>-...`).
fn stale_pid(ns: &str) -> Option<u32> {
    let rest = ns.strip_prefix(NS_PREFIX)?;
    let (digits, _) = rest.split_once('-')?;
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_pid_only_matches_our_names() {
        assert_eq!(stale_pid("chr1234-0-h1"), Some(1234));
        assert_eq!(stale_pid("chr1234-0-br"), Some(1234));
        assert_eq!(stale_pid("chrome-1"), None);
        assert_eq!(stale_pid("other"), None);
    }

    #[test]
    fn counter_packets_are_summed() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
            {"chain": {"family": "inet", "table": "chorus", "name": "input"}},
            {"rule": {"expr": [{"match": {}}, {"counter": {"packets": 105, "bytes": 3350}}, {"drop": null}]}},
            {"rule": {"expr": [{"counter": {"packets": 2, "bytes": 10}}]}}]}"#;
        assert_eq!(nft_counter_packets(json).unwrap(), 107);
        assert!(nft_counter_packets("not json").is_err());
    }
}
