//! The shipped examples in `config/examples/` load, validate, and document the defaults.
//!
//! The examples name `/etc/chorus/cluster.key`, which a test machine lacks:
//! each test loads a copy whose `key_file` names a key it made.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use chorus_config::{AddressPool, DaemonConfig, DirectoryConfig, Trust, Tuning};

/// The example `name`, keyed, in a directory of its own for `test` (kept
/// while the returned guard lives).
fn example(test: &str, name: &str) -> (common::TempDir, PathBuf) {
    let dir = common::temp_dir(test);
    let path = common::example_keyed(&dir, name);
    (dir, path)
}

/// The trust every keyed example loads with: the key beside it.
fn example_trust(example: &Path) -> Trust {
    Trust::KeyFiles {
        key_file: example.with_file_name("cluster.key"),
        accept_key_files: Vec::new(),
    }
}

/// The example with every "#key = value" / "#[table]" line uncommented.
/// Prose comments ("# text") are left alone.
fn uncommented(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '[') => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn directory_example_loads_as_documented() {
    let (_dir, path) = example("dir_example", "directory.toml");
    let c = DirectoryConfig::load(&path).unwrap();
    assert_eq!(c.trust, example_trust(&path));
    assert_eq!(c.listen, "0.0.0.0:7400".parse::<SocketAddr>().unwrap());
    assert_eq!(c.lease_ms, 1500);
    assert_eq!(c.log_level, "info");
    assert_eq!(c.cluster, "chorus");
    assert_eq!(c.groups.len(), 1);
    let g = &c.groups[0];
    assert_eq!(g.name, "chat");
    assert_eq!(g.address, Ipv4Addr::new(239, 192, 0, 10));
    assert_eq!(g.port, 7410);
    assert_eq!(g.max_members, Some(64));
    assert_eq!(g.max_message_bytes, Some(262_144));
    assert_eq!(g.allow_users, Some(vec!["alice".to_owned()]));
    assert_eq!(g.allow_groups, Some(vec!["chorus".to_owned()]));
    let d = c.dynamic.as_ref().unwrap();
    assert_eq!(
        d.address_pool,
        AddressPool::parse("239.192.100.0/24").unwrap()
    );
    assert_eq!(d.port, 7420);
}

#[test]
fn daemon_example_loads_as_documented() {
    let (_dir, path) = example("daemon_example", "chorusd.toml");
    let c = DaemonConfig::load(&path).unwrap();
    assert_eq!(c.trust, example_trust(&path));
    assert_eq!(c.node, "host-a");
    assert_eq!(
        c.directory,
        vec!["10.0.0.1:7400".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(c.interface, Ipv4Addr::new(10, 0, 0, 2));
    assert_eq!(c.data_port, 7401);
    assert_eq!(c.socket, PathBuf::from("/run/chorus/chorusd.sock"));
    assert_eq!(c.socket_mode, 0o660);
    assert_eq!(c.log_level, "info");
    assert_eq!(c.tuning, Tuning::default());
}

#[test]
fn commented_defaults_in_examples_are_valid_and_true() {
    let (_dir, path) = example("commented_daemon", "chorusd.toml");
    let text = uncommented(&path);
    assert!(text.contains("\n[tuning]\n"), "tuning section not found");
    let c = DaemonConfig::parse(&text, &path).unwrap();
    assert_eq!(c.tuning, Tuning::default());
    // Every Tuning field is documented: changing each documented value must
    // show up in the parsed result.
    for (key, value) in [
        ("max_datagram_bytes", 9000),
        ("max_message_bytes", 65_536),
        ("send_window_messages", 64),
        ("receive_window_messages", 64),
        ("ack_interval_ms", 5),
        ("retransmit_ms", 250),
        ("session_queue_bytes", 1 << 20),
    ] {
        let changed = text
            .lines()
            .map(|l| {
                if l.starts_with(&format!("{key} = ")) {
                    format!("{key} = {value}")
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let t = DaemonConfig::parse(&changed, &path).unwrap().tuning;
        assert_ne!(
            t,
            Tuning::default(),
            "{key} is not documented in the example"
        );
    }

    let (_dir, path) = example("commented_directory", "directory.toml");
    let text = uncommented(&path);
    assert!(text.contains("\ncluster = "), "cluster key not documented");
    let c = DirectoryConfig::parse(&text, &path).unwrap();
    assert_eq!(c.cluster, DirectoryConfig::default().cluster);
}

#[test]
fn reference_documents_every_key() {
    let docs = include_str!("../src/lib.rs");
    for key in [
        "listen",
        "lease_ms",
        "log_level",
        "cluster",
        "[[group]]",
        "name",
        "address",
        "port",
        "max_members",
        "max_message_bytes",
        "allow_users",
        "allow_groups",
        "[dynamic]",
        "address_pool",
        "node",
        "directory",
        "interface",
        "data_port",
        "socket",
        "socket_mode",
        "[tuning]",
        "max_datagram_bytes",
        "max_message_bytes",
        "send_window_messages",
        "receive_window_messages",
        "ack_interval_ms",
        "retransmit_ms",
        "session_queue_bytes",
        "key_file",
        "accept_key_files",
        "insecure",
    ] {
        assert!(
            docs.contains(&format!("//! | `{key}` |")),
            "{key} has no row in the reference"
        );
    }
}

#[test]
fn replicated_directory_example_loads_as_documented() {
    use chorus_config::ReplicaId;
    let (_dir, path) = example("replicated_example", "directory-replicated.toml");
    let c = DirectoryConfig::load(&path).unwrap();
    assert_eq!(c.trust, example_trust(&path));
    let r = c.replication.as_ref().unwrap();
    assert_eq!(r.id, ReplicaId(1));
    assert_eq!(r.state_dir, Path::new("/var/lib/chorus-directory"));
    let ids: Vec<u64> = r.peers.iter().map(|p| p.id.0).collect();
    assert_eq!(ids, vec![1, 2, 3]);
    assert_eq!(r.own().unwrap().listen, c.listen);
    assert_eq!(
        r.peers[2].raft,
        "10.0.0.3:7405".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(c.groups.len(), 1);
}
