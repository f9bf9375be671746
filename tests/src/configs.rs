//! The configuration files the harness writes, in the contract's TOML.
//!
//! Written as text on purpose: the tests exercise the documented file format,
//! not the config crate's types.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;

use crate::alloc::McastGroup;
use crate::keys::KeySpec;

/// One `[[group]]` of directory.toml.
#[derive(Debug, Clone)]
pub struct GroupSpec {
    /// Group name.
    pub name: String,
    /// Multicast address and port.
    pub mcast: McastGroup,
}

/// directory.toml.
#[derive(Debug, Clone)]
pub struct DirectoryConfig {
    /// `listen`.
    pub listen: SocketAddrV4,
    /// `lease_ms`.
    pub lease_ms: u64,
    /// `log_level`.
    pub log_level: String,
    /// `key_file` and `accept_key_files`, or `insecure`: the same key
    /// for every file of one cluster ([`crate::keys::cluster_keys`]).
    pub keys: KeySpec,
    /// Declared groups.
    pub groups: Vec<GroupSpec>,
    /// `id`, `state_dir` and `[[peer]]`: one replica of a replicated
    /// directory (None: a single directory).
    pub replica: Option<ReplicaSpec>,
}

/// One `[[peer]]` of a replicated directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerSpec {
    /// `peer.id`.
    pub id: u64,
    /// `peer.raft`.
    pub raft: SocketAddrV4,
    /// `peer.listen`.
    pub listen: SocketAddrV4,
}

/// The replication keys of directory.toml.
#[derive(Debug, Clone)]
pub struct ReplicaSpec {
    /// `id`.
    pub id: u64,
    /// `state_dir`.
    pub state_dir: PathBuf,
    /// Every replica, this one included.
    pub peers: Vec<PeerSpec>,
}

impl DirectoryConfig {
    /// The file text.
    pub fn to_toml(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "listen = \"{}\"", self.listen);
        let _ = writeln!(s, "lease_ms = {}", self.lease_ms);
        let _ = writeln!(s, "log_level = \"{}\"", self.log_level);
        s.push_str(&self.keys.to_toml());
        if let Some(r) = &self.replica {
            let _ = writeln!(s, "id = {}", r.id);
            let _ = writeln!(s, "state_dir = \"{}\"", r.state_dir.display());
            for p in &r.peers {
                let _ = writeln!(s, "\n[[peer]]");
                let _ = writeln!(s, "id = {}", p.id);
                let _ = writeln!(s, "raft = \"{}\"", p.raft);
                let _ = writeln!(s, "listen = \"{}\"", p.listen);
            }
        }
        for g in &self.groups {
            let _ = writeln!(s, "\n[[group]]");
            let _ = writeln!(s, "name = \"{}\"", g.name);
            let _ = writeln!(s, "address = \"{}\"", g.mcast.address);
            let _ = writeln!(s, "port = {}", g.mcast.port);
        }
        s
    }
}

/// chorusd.toml.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// `node`.
    pub node: String,
    /// `directory`.
    pub directory: Vec<SocketAddrV4>,
    /// `interface`.
    pub interface: Ipv4Addr,
    /// `data_port`.
    pub data_port: u16,
    /// `socket`.
    pub socket: PathBuf,
    /// `socket_mode`.
    pub socket_mode: String,
    /// `log_level`.
    pub log_level: String,
    /// `key_file` and `accept_key_files`, or `insecure`.
    pub keys: KeySpec,
    /// `[tuning] max_message_bytes` (None: the default, 1 MiB).
    pub max_message_bytes: Option<usize>,
}

impl DaemonConfig {
    /// The file text.
    pub fn to_toml(&self) -> String {
        let dirs: Vec<String> = self.directory.iter().map(|d| format!("\"{d}\"")).collect();
        let mut s = String::new();
        let _ = writeln!(s, "node = \"{}\"", self.node);
        let _ = writeln!(s, "directory = [{}]", dirs.join(", "));
        let _ = writeln!(s, "interface = \"{}\"", self.interface);
        let _ = writeln!(s, "data_port = {}", self.data_port);
        let _ = writeln!(s, "socket = \"{}\"", self.socket.display());
        let _ = writeln!(s, "socket_mode = \"{}\"", self.socket_mode);
        let _ = writeln!(s, "log_level = \"{}\"", self.log_level);
        s.push_str(&self.keys.to_toml());
        if let Some(n) = self.max_message_bytes {
            let _ = writeln!(s, "[tuning]\nmax_message_bytes = {n}");
        }
        s
    }
}

/// The `log_level` the harness gives its processes: `CHORUS_TEST_LOG_LEVEL`,
/// else `info`. (`RUST_LOG`, inherited from the test, overrides it anyway.)
pub fn test_log_level() -> String {
    std::env::var("CHORUS_TEST_LOG_LEVEL").unwrap_or_else(|_| "info".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_toml_has_contract_keys() {
        let c = DirectoryConfig {
            listen: "127.0.0.1:7400".parse().unwrap(),
            lease_ms: 1500,
            log_level: "info".into(),
            groups: vec![GroupSpec {
                name: "chat".into(),
                mcast: McastGroup {
                    address: Ipv4Addr::new(239, 255, 1, 2),
                    port: 7410,
                },
            }],
            replica: None,
            keys: KeySpec::file("/tmp/t/cluster.key"),
        };
        let text = c.to_toml();
        assert!(
            text.contains("log_level = \"info\"\nkey_file = \"/tmp/t/cluster.key\"\n"),
            "{text}"
        );
        assert!(text.contains("listen = \"127.0.0.1:7400\"\n"), "{text}");
        assert!(
            text.contains("[[group]]\nname = \"chat\"\naddress = \"239.255.1.2\"\nport = 7410\n"),
            "{text}"
        );
    }

    #[test]
    fn daemon_toml_lists_directories() {
        let c = DaemonConfig {
            node: "n1".into(),
            directory: vec![
                "127.0.0.1:1".parse().unwrap(),
                "127.0.0.1:2".parse().unwrap(),
            ],
            interface: Ipv4Addr::LOCALHOST,
            data_port: 9,
            socket: "/tmp/x.sock".into(),
            socket_mode: "0660".into(),
            log_level: "info".into(),
            max_message_bytes: Some(4096),
            keys: KeySpec::Insecure,
        };
        let text = c.to_toml();
        assert!(
            text.contains("insecure = true\n[tuning]\nmax_message_bytes = 4096\n"),
            "{text}"
        );
        assert!(
            text.contains("directory = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n"),
            "{text}"
        );
        assert!(text.contains("node = \"n1\"\n"), "{text}");
    }
}
