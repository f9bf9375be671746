//! `directory.toml`: defaults, validation, and errors that point at line and key.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::Ipv4Addr;
use std::path::Path;

use chorus_config::{ConfigError, DirectoryConfig};
use common::{assert_points_at, line_with};

const FILE: &str = "/etc/chorus/directory.toml";

fn parse(text: &str) -> Result<DirectoryConfig, ConfigError> {
    DirectoryConfig::parse(&common::insecure(text), Path::new(FILE)).map_err(common::unshift)
}

/// `text` as it is, for tests whose messages quote line numbers (they
/// give [`common::insecure`] text themselves).
fn parse_as_is(text: &str) -> Result<DirectoryConfig, ConfigError> {
    DirectoryConfig::parse(text, Path::new(FILE))
}

const TWO_GROUPS: &str = r#"
listen = "127.0.0.1:7400"

[[group]]
name = "chat"
address = "239.192.0.10"
port = 7410

[[group]]
name = "news"
address = "239.192.0.11"
port = 7410
max_members = 3

[dynamic]
address_pool = "239.192.100.0/24"
port = 7420
"#;

#[test]
fn empty_file_gives_the_defaults() {
    let c = parse("").unwrap();
    assert_eq!(c, DirectoryConfig::default());
    assert_eq!(c.listen, "0.0.0.0:7400".parse().unwrap());
    assert_eq!(c.lease_ms, 1500);
    assert_eq!(c.log_level, "info");
    assert_eq!(c.cluster, "chorus");
    assert!(c.groups.is_empty());
    assert!(c.dynamic.is_none());
}

#[test]
fn omitted_optional_group_keys_are_none() {
    let c = parse(TWO_GROUPS).unwrap();
    assert_eq!(c.groups.len(), 2);
    assert_eq!(c.groups[0].name, "chat");
    assert_eq!(c.groups[0].max_members, None);
    assert_eq!(c.groups[0].allow_users, None);
    assert_eq!(c.groups[0].allow_groups, None);
    assert_eq!(c.groups[0].max_message_bytes, None);
    assert_eq!(c.groups[1].max_members, Some(3));
    assert_eq!(
        c.lease_ms, 1500,
        "omitted top-level keys keep their defaults"
    );
}

#[test]
fn unknown_top_level_key_names_key_and_line() {
    let text = "listen = \"0.0.0.0:7400\"\nlease_ms = 1500\nlese_ms = 900\n";
    let err = parse(text).unwrap_err();
    assert_points_at(&err, line_with(text, "lese_ms"), "lese_ms", "unknown field");
    assert_eq!(err.file, Path::new(FILE));
    assert!(err
        .to_string()
        .starts_with(&format!("{FILE}:3: key `lese_ms`:")));
}

#[test]
fn unknown_key_in_second_group_names_key_and_line() {
    let text = TWO_GROUPS.replace("max_members = 3", "max_member = 3");
    let err = parse(&text).unwrap_err();
    assert_points_at(
        &err,
        line_with(&text, "max_member "),
        "group.max_member",
        "unknown field",
    );
}

#[test]
fn unknown_key_in_dynamic_names_key_and_line() {
    let text = format!("{TWO_GROUPS}ttl = 4\n");
    let err = parse(&text).unwrap_err();
    assert_points_at(
        &err,
        line_with(&text, "ttl"),
        "dynamic.ttl",
        "unknown field",
    );
}

#[test]
fn non_multicast_address_names_address_and_line() {
    let text = TWO_GROUPS.replace("239.192.0.11", "10.1.2.3");
    let err = parse(&text).unwrap_err();
    assert_points_at(
        &err,
        line_with(&text, "10.1.2.3"),
        "group.address",
        "not an IPv4 multicast",
    );
    assert!(err.message.contains("news"), "names the group: {err}");

    let text = TWO_GROUPS.replace("239.192.0.11", "239.192.0");
    let err = parse(&text).unwrap_err();
    assert_points_at(
        &err,
        line_with(&text, "\"239.192.0\""),
        "group.address",
        "not an IPv4 address",
    );
}

#[test]
fn bad_pools_are_rejected_at_their_line() {
    for (pool, words) in [
        ("10.0.0.0/8", "multicast"),
        ("239.0.0.0/33", "prefix length"),
        ("239.0.0.0/4", "prefix length"),
        ("239.192.100.7/24", "host bits"),
        ("239.192.100.0", "ADDRESS/PREFIX_LEN"),
    ] {
        let text = TWO_GROUPS.replace("239.192.100.0/24", pool);
        let err = parse(&text).unwrap_err();
        assert_points_at(
            &err,
            line_with(&text, "address_pool"),
            "dynamic.address_pool",
            words,
        );
    }
}

#[test]
fn dynamic_needs_both_keys() {
    let text = TWO_GROUPS.replace("port = 7420\n", "");
    let err = parse(&text).unwrap_err();
    assert_points_at(
        &err,
        line_with(&text, "[dynamic]"),
        "dynamic.port",
        "missing field",
    );
}

#[test]
fn missing_group_key_points_at_its_table() {
    let text = TWO_GROUPS.replace("name = \"news\"\n", "");
    let err = parse(&text).unwrap_err();
    // The second [[group]] header is the one without a name.
    let header = text
        .lines()
        .enumerate()
        .filter(|(_, l)| *l == "[[group]]")
        .nth(1)
        .map(|(i, _)| i + 1)
        .unwrap();
    assert_points_at(&err, header, "group.name", "missing field `name`");
}

#[test]
fn duplicate_group_names_are_rejected_at_the_second() {
    let text = common::insecure(&TWO_GROUPS.replace("\"news\"", "\"chat\""));
    let err = parse_as_is(&text).unwrap_err();
    let first = line_with(&text, "name = \"chat\"");
    let second = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains("name = \"chat\""))
        .nth(1)
        .map(|(i, _)| i + 1)
        .unwrap();
    assert_points_at(
        &err,
        second,
        "group.name",
        &format!("already declared on line {first}"),
    );
}

#[test]
fn duplicate_address_and_port_are_rejected_but_one_of_them_may_repeat() {
    let text = common::insecure(&TWO_GROUPS.replace("239.192.0.11", "239.192.0.10"));
    let err = parse_as_is(&text).unwrap_err();
    let first = line_with(&text, "239.192.0.10");
    let second = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains("239.192.0.10"))
        .map(|(i, _)| i + 1)
        .last()
        .unwrap();
    assert_ne!(first, second);
    assert_points_at(&err, second, "group.address", &format!("line {first}"));

    // Same address on another port, and another address on the same port, are fine.
    let text = TWO_GROUPS
        .replace("239.192.0.11", "239.192.0.10")
        .replace("port = 7410\nmax_members", "port = 7411\nmax_members");
    assert_eq!(parse(&text).unwrap().groups.len(), 2);
}

#[test]
fn group_address_inside_the_dynamic_pool_is_rejected() {
    let text = TWO_GROUPS.replace("239.192.0.11", "239.192.100.255");
    let err = parse(&text).unwrap_err();
    assert_points_at(
        &err,
        line_with(&text, "239.192.100.255"),
        "group.address",
        "dynamic address_pool",
    );

    // Without [dynamic] the same address is fine.
    let cut = text.find("[dynamic]").unwrap();
    let c = parse(&text[..cut]).unwrap();
    assert_eq!(c.groups[1].address, Ipv4Addr::new(239, 192, 100, 255));
}

#[test]
fn group_names_are_checked() {
    let long = "x".repeat(65);
    for (bad, words) in [
        ("", "empty"),
        ("has space", "may use only"),
        ("naïve", "may use only"),
        ("a/b", "may use only"),
        (long.as_str(), "65 bytes"),
    ] {
        let text = TWO_GROUPS.replace("\"news\"", &format!("\"{bad}\""));
        let err = parse(&text).unwrap_err();
        let line = line_with(&text, &format!("name = \"{bad}\""));
        assert_points_at(&err, line, "group.name", words);
    }
    let text = TWO_GROUPS.replace("\"news\"", &format!("\"{}\"", "x".repeat(64)));
    assert_eq!(parse(&text).unwrap().groups[1].name.len(), 64);
}

#[test]
fn ports_must_not_be_zero() {
    let text = TWO_GROUPS.replace("port = 7420", "port = 0");
    let err = parse(&text).unwrap_err();
    assert_points_at(&err, line_with(&text, "port = 0"), "dynamic.port", "0");

    let text = TWO_GROUPS.replacen("port = 7410", "port = 0", 1);
    let err = parse(&text).unwrap_err();
    assert_points_at(&err, line_with(&text, "port = 0"), "group.port", "0");

    let text = TWO_GROUPS.replace("127.0.0.1:7400", "127.0.0.1:0");
    let err = parse(&text).unwrap_err();
    assert_points_at(&err, line_with(&text, "listen"), "listen", "port");

    let text = TWO_GROUPS.replacen("port = 7410", "port = 70000", 1);
    let err = parse(&text).unwrap_err();
    assert_points_at(&err, line_with(&text, "70000"), "group.port", "70000");
}

#[test]
fn lease_log_level_cluster_and_max_members_are_checked() {
    let err = parse("log_level = \"info\"\nlease_ms = 99\n").unwrap_err();
    assert_points_at(&err, 2, "lease_ms", "99");
    assert_eq!(parse("lease_ms = 100\n").unwrap().lease_ms, 100);

    let err = parse("\nlog_level = \"verbose\"\n").unwrap_err();
    assert_points_at(&err, 2, "log_level", "error, warn, info, debug, trace");
    assert_eq!(parse("log_level = \"trace\"\n").unwrap().log_level, "trace");

    assert_eq!(
        parse("cluster = \"prod-eu.1\"\n").unwrap().cluster,
        "prod-eu.1"
    );
    let err = parse("cluster = \"\"\n").unwrap_err();
    assert_points_at(&err, 1, "cluster", "empty");

    let text = TWO_GROUPS.replace("max_members = 3", "max_members = 0");
    let err = parse(&text).unwrap_err();
    assert_points_at(
        &err,
        line_with(&text, "max_members"),
        "group.max_members",
        "at least 1",
    );
}

#[test]
fn group_max_message_bytes_is_kept_and_checked() {
    for value in [1u32, 4096, 16_777_216] {
        let text = TWO_GROUPS.replace(
            "max_members = 3",
            &format!("max_members = 3\nmax_message_bytes = {value}"),
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.groups[1].max_message_bytes, Some(value));
        assert_eq!(
            c.groups[0].max_message_bytes, None,
            "only the group that sets it"
        );
    }
    for (bad, words) in [
        ("0", "outside 1..=16777216"),
        ("16777217", "outside 1..=16777216"),
        ("4294967296", "invalid value"),
        ("-1", "invalid value"),
        ("\"1MiB\"", "invalid type"),
    ] {
        let text = TWO_GROUPS.replace(
            "max_members = 3",
            &format!("max_members = 3\nmax_message_bytes = {bad}"),
        );
        let err = parse(&text).unwrap_err();
        assert_points_at(
            &err,
            line_with(&text, "max_message_bytes"),
            "group.max_message_bytes",
            words,
        );
    }
}

#[test]
fn allow_lists_are_kept_and_checked() {
    let text = TWO_GROUPS.replace(
        "max_members = 3",
        "allow_users = [\"alice\", \"bob\"]\nallow_groups = []",
    );
    let c = parse(&text).unwrap();
    assert_eq!(
        c.groups[1].allow_users,
        Some(vec!["alice".to_owned(), "bob".to_owned()])
    );
    assert_eq!(c.groups[1].allow_groups, Some(vec![]));

    let text = TWO_GROUPS.replace(
        "max_members = 3",
        "allow_users = [\"alice\",\n  \"bad user\"]",
    );
    let err = parse(&text).unwrap_err();
    assert_points_at(
        &err,
        line_with(&text, "allow_users"),
        "group.allow_users",
        "bad user",
    );

    let text = TWO_GROUPS.replace("max_members = 3", "allow_users = [\"alice\",\n  7]");
    let err = parse(&text).unwrap_err();
    assert_points_at(
        &err,
        line_with(&text, "  7]"),
        "group.allow_users",
        "expected a string",
    );
}

#[test]
fn syntax_errors_name_the_line() {
    let text = "lease_ms = 1500\nlisten = \n";
    let err = parse(text).unwrap_err();
    assert_eq!(err.line, Some(2), "{err}");
    assert_eq!(err.key.as_deref(), Some("listen"), "{err}");
    assert!(!err.to_string().contains('\n'), "one line: {err}");
}

#[test]
fn unreadable_file_is_reported_without_line() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/no-such-file.toml");
    let err = DirectoryConfig::load(&path).unwrap_err();
    assert_eq!(err.line, None);
    assert_eq!(err.key, None);
    assert_eq!(err.file, path);
    assert!(
        err.to_string()
            .starts_with(&format!("{}: cannot read: ", path.display())),
        "{err}"
    );
}

const REPLICA: &str = r#"listen = "127.0.0.1:7400"
id = 2
state_dir = "/var/lib/chorus-directory"

[[peer]]
id = 1
raft = "127.0.0.1:7501"
listen = "127.0.0.1:7401"

[[peer]]
id = 2
raft = "127.0.0.1:7502"
listen = "127.0.0.1:7400"

[[peer]]
id = 3
raft = "127.0.0.1:7503"
listen = "127.0.0.1:7403"
"#;

#[test]
fn a_single_directory_has_no_replication() {
    assert_eq!(parse(TWO_GROUPS).unwrap().replication, None);
}

#[test]
fn a_replica_knows_its_id_and_peers() {
    let c = parse(REPLICA).unwrap();
    let r = c.replication.unwrap();
    assert_eq!(r.id, chorus_config::ReplicaId(2));
    assert_eq!(r.peers.len(), 3);
    assert_eq!(r.own().unwrap().raft, "127.0.0.1:7502".parse().unwrap());
}

#[test]
fn replication_errors_point_at_line_and_key() {
    // (replace, with, line of the error in the edited text, key, words)
    let cases: [(&str, &str, usize, &str, &str); 8] = [
        (
            "127.0.0.1:7401",
            "0.0.0.0:7401",
            8,
            "peer.listen",
            "own address",
        ),
        ("id = 2\n", "", 5, "id", "required"),
        ("id = 2\n", "id = 4\n", 2, "id", "not among"),
        (
            "\"/var/lib/chorus-directory\"",
            "\"relative\"",
            3,
            "state_dir",
            "absolute",
        ),
        (
            "127.0.0.1:7503",
            "127.0.0.1:7502",
            17,
            "peer.raft",
            "already used",
        ),
        ("id = 3\n", "id = 1\n", 16, "peer.id", "already declared"),
        ("id = 1\n", "id = 0\n", 6, "peer.id", "start at 1"),
        (
            "127.0.0.1:7400\"\nid",
            "127.0.0.1:7409\"\nid",
            1,
            "listen",
            "differs",
        ),
    ];
    for (from, to, line, key, words) in cases {
        let text = REPLICA.replacen(from, to, 1);
        let err = parse(&text).unwrap_err();
        assert_points_at(&err, line, key, words);
    }
}

#[test]
fn replication_keys_need_peers() {
    let err = parse("id = 1\n").unwrap_err();
    assert_points_at(&err, 1, "id", "[[peer]]");
    let err = parse("state_dir = \"/x\"\n").unwrap_err();
    assert_points_at(&err, 1, "state_dir", "single directory");
}
