//! `chorusd.toml`: defaults, validation, and errors that point at line and key.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use chorus_config::{ConfigError, DaemonConfig, Tuning};
use common::{assert_points_at, line_with};

fn parse(text: &str) -> Result<DaemonConfig, ConfigError> {
    DaemonConfig::parse(&common::insecure(text), Path::new("chorusd.toml")).map_err(common::unshift)
}

#[test]
fn empty_file_gives_the_defaults() {
    let c = parse("").unwrap();
    assert_eq!(c, DaemonConfig::default());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    assert_eq!(c.node, host);
    assert_eq!(
        c.directory,
        vec!["127.0.0.1:7400".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(c.interface, Ipv4Addr::LOCALHOST);
    assert_eq!(c.data_port, 7401);
    assert_eq!(c.socket, PathBuf::from("/run/chorus/chorusd.sock"));
    assert_eq!(c.socket_mode, 0o660);
    assert_eq!(c.log_level, "info");
    let t = &c.tuning;
    assert_eq!(
        (
            t.max_datagram_bytes,
            t.send_window_messages,
            t.receive_window_messages
        ),
        (1400, 4096, 8192)
    );
    assert_eq!((t.ack_interval_ms, t.retransmit_ms), (3, 60));
    assert_eq!(t.session_queue_bytes, 67_108_864);
    assert_eq!(t.max_message_bytes, 1_048_576);
}

#[test]
fn data_port_zero_is_only_for_code() {
    let err = parse("node = \"a\"\ndata_port = 0\n").unwrap_err();
    assert_points_at(&err, 2, "data_port", "0");
    let dev = DaemonConfig {
        data_port: 0,
        ..DaemonConfig::default()
    };
    assert_eq!(dev.data_port, 0);
}

#[test]
fn socket_mode_is_an_octal_string() {
    for (text, mode) in [
        ("0660", 0o660),
        ("600", 0o600),
        ("0o640", 0o640),
        ("0777", 0o777),
        ("0000", 0),
    ] {
        let c = parse(&format!("socket_mode = \"{text}\"\n")).unwrap();
        assert_eq!(c.socket_mode, mode, "{text}");
    }
    for (text, words) in [
        ("\"0680\"", "octal"),
        ("\"01000\"", "0777"),
        ("\"rw-rw----\"", "octal"),
        ("\"\"", "octal"),
        ("660", "string"),
        ("0o660", "string"),
    ] {
        let file = format!("node = \"a\"\n\nsocket_mode = {text}\n");
        let err = parse(&file).unwrap_err();
        assert_points_at(&err, 3, "socket_mode", words);
    }
}

#[test]
fn node_names_are_checked() {
    assert_eq!(parse("node = \"host-b.lan\"\n").unwrap().node, "host-b.lan");
    for (bad, words) in [("host:b", "':'"), ("host b", "whitespace"), ("", "empty")] {
        let text = format!("log_level = \"info\"\nnode = \"{bad}\"\n");
        let err = parse(&text).unwrap_err();
        assert_points_at(&err, 2, "node", words);
    }
    let err = parse(&format!("node = \"{}\"\n", "n".repeat(65))).unwrap_err();
    assert_points_at(&err, 1, "node", "64");
}

#[test]
fn directory_list_is_checked() {
    let text = "directory = [\"10.0.0.1:7400\", \"10.0.0.9:7500\", \"[fd00::1]:7400\"]\n";
    let c = parse(text).unwrap();
    let want: Vec<SocketAddr> = ["10.0.0.1:7400", "10.0.0.9:7500", "[fd00::1]:7400"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(c.directory, want, "kept in order");

    for (list, words) in [
        ("[]", "at least one"),
        ("[\"10.0.0.1:7400\", \"10.0.0.1:7400\"]", "twice"),
        ("[\"10.0.0.1\"]", "IP address and port"),
        ("[\"dir.example.com:7400\"]", "IP address and port"),
        ("[\"0.0.0.0:7400\"]", "connect"),
        ("[\"10.0.0.1:0\"]", "port"),
    ] {
        let text = format!("node = \"a\"\ndirectory = {list}\n");
        let err = parse(&text).unwrap_err();
        assert_points_at(&err, 2, "directory", words);
    }
    let text = "node = \"a\"\ndirectory = [\n  \"10.0.0.1:7400\",\n  \"10.0.0.1:7400\",\n]\n";
    let err = parse(text).unwrap_err();
    assert_points_at(&err, 4, "directory", "twice");
}

#[test]
fn interface_must_be_a_unicast_ipv4_address() {
    assert_eq!(
        parse("interface = \"192.168.1.20\"\n").unwrap().interface,
        Ipv4Addr::new(192, 168, 1, 20)
    );
    for bad in ["239.1.1.1", "0.0.0.0", "255.255.255.255", "::1", "eth0"] {
        let text = format!("\ninterface = \"{bad}\"\n");
        let err = parse(&text).unwrap_err();
        assert_points_at(&err, 2, "interface", bad);
    }
}

#[test]
fn socket_path_must_be_absolute_and_short() {
    assert_eq!(
        parse("socket = \"/tmp/c.sock\"\n").unwrap().socket,
        PathBuf::from("/tmp/c.sock")
    );
    let err = parse("socket = \"run/c.sock\"\n").unwrap_err();
    assert_points_at(&err, 1, "socket", "absolute");
    let long = format!("/{}", "s".repeat(107));
    let err = parse(&format!("socket = \"{long}\"\n")).unwrap_err();
    assert_points_at(&err, 1, "socket", "107");
}

#[test]
fn log_level_is_checked() {
    let err = parse("log_level = \"INFO\"\n").unwrap_err();
    assert_points_at(&err, 1, "log_level", "not a log level");
}

#[test]
fn partial_tuning_keeps_other_defaults() {
    let c = parse("[tuning]\nretransmit_ms = 100\nreceive_window_messages = 16\n").unwrap();
    assert_eq!(
        c.tuning,
        Tuning {
            retransmit_ms: 100,
            receive_window_messages: 16,
            ..Tuning::default()
        }
    );
    assert!(
        c.tuning.receive_window_messages < c.tuning.send_window_messages,
        "the receive window need not be as large as the send window"
    );
}

#[test]
fn a_session_queue_smaller_than_the_largest_message_is_refused() {
    let text = "[tuning]\nmax_message_bytes = 2097152\nsession_queue_bytes = 1048576\n";
    let err = parse(text).unwrap_err();
    assert_points_at(
        &err,
        3,
        "tuning.session_queue_bytes",
        "smaller than max_message_bytes",
    );
    // Only the message limit set: the error names it.
    let text = "[tuning]\nmax_message_bytes = 16777216\n";
    assert!(parse(text).is_ok(), "16 MiB fits the default 64 MiB queue");
    let text = "[tuning]\nsession_queue_bytes = 65536\n";
    let err = parse(text).unwrap_err();
    assert_points_at(&err, 2, "tuning.session_queue_bytes", "1048576");
    let text = "[tuning]\nsession_queue_bytes = 1048576\nmax_message_bytes = 1048576\n";
    assert!(parse(text).is_ok(), "equal is enough");
}

#[test]
fn tuning_bounds_are_enforced_at_both_ends() {
    for (key, low, high) in [
        ("max_datagram_bytes", Some(511), Some(65001)),
        ("max_message_bytes", Some(0), Some(16_777_217)),
        ("send_window_messages", Some(15), None),
        ("receive_window_messages", Some(15), None),
        ("ack_interval_ms", Some(0), Some(1001)),
        ("retransmit_ms", Some(4), Some(10_001)),
        ("session_queue_bytes", Some(65_535), None),
    ] {
        for bad in [low, high].into_iter().flatten() {
            let text = format!("node = \"a\"\n[tuning]\n{key} = {bad}\n");
            let err = parse(&text).unwrap_err();
            assert_points_at(&err, 3, &format!("tuning.{key}"), &bad.to_string());
        }
        for good in [low.map(|l| l + 1), high.map(|h| h - 1)]
            .into_iter()
            .flatten()
        {
            // (the smallest session queue holds messages up to its size)
            let pair = if key == "session_queue_bytes" {
                "max_message_bytes = 65536\n"
            } else {
                ""
            };
            let text = format!("[tuning]\n{key} = {good}\n{pair}");
            assert!(parse(&text).is_ok(), "{key} = {good} rejected");
        }
    }
    let err = parse("[tuning]\nsend_window_messages = -1\n").unwrap_err();
    assert_points_at(&err, 2, "tuning.send_window_messages", "-1");
}

#[test]
fn max_message_bytes_admits_its_whole_range() {
    for (value, want) in [(1, 1), (16_777_216, 16 << 20), (65_536, 65_536)] {
        let c = parse(&format!("[tuning]\nmax_message_bytes = {value}\n")).unwrap();
        assert_eq!(c.tuning.max_message_bytes, want);
        assert_eq!(
            c.tuning,
            Tuning {
                max_message_bytes: want,
                ..Tuning::default()
            },
            "only max_message_bytes changed"
        );
    }
    let err = parse("node = \"a\"\n[tuning]\nmax_message_bytes = 16777217\n").unwrap_err();
    assert_points_at(&err, 3, "tuning.max_message_bytes", "1..=16777216");
    let err = parse("[tuning]\nmax_message_bytes = \"1 MiB\"\n").unwrap_err();
    assert_points_at(&err, 2, "tuning.max_message_bytes", "invalid type");
}

#[test]
fn unknown_keys_are_errors_everywhere() {
    let text = "node = \"a\"\nsocket_perms = \"0660\"\n";
    let err = parse(text).unwrap_err();
    assert_points_at(&err, 2, "socket_perms", "unknown field");

    let text = "node = \"a\"\n\n[tuning]\nack_interval_ms = 5\nnak_interval_ms = 5\n";
    let err = parse(text).unwrap_err();
    assert_points_at(
        &err,
        line_with(text, "nak_"),
        "tuning.nak_interval_ms",
        "unknown field",
    );

    let text = "node = \"a\"\n[tunning]\n";
    let err = parse(text).unwrap_err();
    assert_points_at(&err, 2, "tunning", "unknown field");
}

#[test]
fn wrong_types_name_key_and_line() {
    let text = "node = \"a\"\ndata_port = \"7401\"\n";
    let err = parse(text).unwrap_err();
    assert_points_at(&err, 2, "data_port", "invalid type");
    let text = "directory = \"10.0.0.1:7400\"\n";
    let err = parse(text).unwrap_err();
    assert_points_at(&err, 1, "directory", "invalid type");
}

#[test]
fn load_reads_the_file() {
    let dir = common::temp_dir("load_reads");
    let path = common::example_keyed(&dir, "chorusd.toml");
    let loaded = DaemonConfig::load(&path).unwrap();
    let parsed = DaemonConfig::parse(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
    assert_eq!(loaded, parsed);
    let missing = path.with_file_name("absent.toml");
    let err = DaemonConfig::load(&missing).unwrap_err();
    assert_eq!((err.line, err.key.as_deref()), (None, None));
    assert!(err.message.starts_with("cannot read"), "{err}");
}
