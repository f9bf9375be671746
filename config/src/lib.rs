//! # chorus configuration reference
//!
//! chorus reads two TOML files:
//!
//! | file | read by | default path |
//! |---|---|---|
//! | `directory.toml` | `chorus-directory` | `/etc/chorus/directory.toml` ([`DEFAULT_DIRECTORY_CONFIG`]) |
//! | `chorusd.toml` | `chorusd`, one per host | `/etc/chorus/chorusd.toml` ([`DEFAULT_DAEMON_CONFIG`]) |
//!
//! Both binaries take `--config PATH` to read another file and `--check` to
//! validate it and exit: 0 when it is valid, 78 ([`EXIT_CONFIG`]) when it is
//! not. Every key may be left out unless marked *required*; the default is
//! then used. **Unknown keys are errors**, so a misspelt key never silently
//! falls back to a default. Every error names the file, the line and the key:
//!
//! ```text
//! /etc/chorus/directory.toml:22: key `group.address`: group `chat`: 10.0.0.1 is not an IPv4 multicast address (224.0.0.0/4)
//! ```
//!
//! ## `directory.toml`
//!
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `listen` | `"IP:PORT"` | `"0.0.0.0:7400"` | TCP address daemons connect to. The port must not be 0. |
//! | `lease_ms` | integer ≥ 100 | `1500` | A daemon silent this long is declared dead and leaves every group. Daemons renew well within it; larger values ride out longer stalls, smaller ones notice crashes sooner. |
//! | `log_level` | string | `"info"` | `error`, `warn`, `info`, `debug` or `trace`. `RUST_LOG`, when set, wins. |
//! | `cluster` | string | `"chorus"` | Name of this deployment. It is hashed into the cluster id every datagram carries, so two deployments that happen to share a multicast address and port ignore each other's traffic. 1–64 bytes of `A-Z a-z 0-9 . _ -`. |
//! | `key_file` | path | *required unless `insecure = true`* | The cluster key, as `chorusctl keygen` writes it: the same file on every host and directory replica. See "The cluster key" below. |
//! | `accept_key_files` | array of paths | `[]` | Further keys accepted (never used to seal) while a new key is rolled out. Only with `key_file`. |
//! | `insecure` | boolean | `false` | `true` runs without a key: nothing is sealed, and anyone who can reach the network can read and forge messages. A warning is logged at every start. Not with `key_file`. |
//! | `[[group]]` | table, repeated | none | A group declared by the administrator; see below. |
//! | `[dynamic]` | table | absent | Groups created on first join; see below. Without it, joining an undeclared group fails. |
//!
//! ### `[[group]]`: one table per declared group
//!
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `name` | string | *required* | Unique group name, 1–64 bytes of `A-Z a-z 0-9 . _ -`. |
//! | `address` | `"A.B.C.D"` | *required* | IPv4 multicast address (224.0.0.0/4) of the group's data. Use the organisation-local block 239.192.0.0/14 unless you know better. Must lie outside the `[dynamic]` pool. |
//! | `port` | integer 1–65535 | *required* | UDP port of the group's multicast traffic. No two groups may share both address and port. |
//! | `max_members` | integer ≥ 1 | no limit | Joins beyond this many members are refused. |
//! | `max_message_bytes` | integer 1–16777216 | the daemons' limit | Largest message payload in this group. It lowers each daemon's `[tuning] max_message_bytes` for the group and never raises it. |
//! | `allow_users` | array of strings | anyone | Only these local users may join; chorusd checks the application's uid with `SO_PEERCRED`. |
//! | `allow_groups` | array of strings | anyone | Or members of these Unix groups. With either list present, a user in neither is refused. |
//!
//! ### `[dynamic]`: groups created on first join
//!
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `address_pool` | `"A.B.C.D/LEN"` | *required* | Multicast block (inside 224.0.0.0/4, prefix length 8–30, no host bits set) the directory hands addresses out of. Its first and last address are never handed out, so a /24 serves 254 groups at once. |
//! | `port` | integer 1–65535 | *required* | UDP port every dynamic group uses. |
//!
//! ### Replication: `id`, `state_dir` and `[[peer]]`
//!
//! Without them the file describes a single directory. With them it is one
//! replica of a replicated directory: three (or five) `chorus-directory`
//! processes that elect a leader among themselves with Raft. Only the
//! leader serves daemons; the others send a daemon to the leader. Every
//! replica's file lists the same `[[peer]]` tables, itself included, and
//! the same groups. See `config/examples/directory-replicated.toml`.
//!
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `id` | integer ≥ 1 | *required with `[[peer]]`* | Which of the peers this replica is. |
//! | `state_dir` | absolute path | *required with `[[peer]]`* | Where the replica keeps its Raft vote and log across restarts (created if missing). |
//! | `[[peer]]` | table, repeated, at most 7 | none | Every replica: `id` (unique, ≥ 1), `raft` (`"IP:PORT"`, where the replicas talk Raft) and `listen` (`"IP:PORT"`, where daemons connect to it: that replica's own `listen`). No address twice, and no `0.0.0.0`: others connect to these. This replica's `listen` must equal its peer's `listen` (or be `0.0.0.0` with the same port). |
//!
//! chorusd's `directory` key then lists every replica's `listen` address.
//!
//! `chorus-directory` re-reads its file on `SIGHUP` (`systemctl reload
//! chorus-directory`): added groups appear, removed groups end with a final
//! view, and a file with any error is rejected whole while the old
//! configuration stays in force.
//!
//! ### The cluster key: `key_file`, `accept_key_files`, `insecure`
//!
//! Every datagram between daemons and every frame between a daemon and the
//! directory is sealed (AES-256-GCM) under a key derived from one cluster
//! key, which every `chorusd` and every directory replica reads from its
//! `key_file`. A file must name a key or say `insecure = true`; one that
//! does neither is refused with a message saying how to make a key
//! (`chorusctl keygen /etc/chorus/cluster.key`). The key file is read when
//! the configuration is, so `--check` refuses one that is missing, is not a
//! chorus key, or may be read by users other than its owner (any group or
//! other permission bit: `chmod 600` it). A relative path is taken from
//! the configuration file's directory. Changing keys takes a restart; to
//! rotate without stopping the cluster, see "Rotating the cluster key" in
//! `systemd/INSTALL.md`.
//!
//! ## `chorusd.toml`
//!
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `node` | string | the host name | Unique node name, 1–64 bytes, without `:` (members are shown as `NODE:NAME`) or whitespace. |
//! | `directory` | array of `"IP:PORT"` | `["127.0.0.1:7400"]` | The directory server, or every replica of a replicated directory, tried in order; a replica that does not lead sends the daemon to the leader. At least one; no duplicates. |
//! | `interface` | `"A.B.C.D"` | `"127.0.0.1"` | Local unicast IPv4 address used to send and receive multicast and to talk to peers. |
//! | `data_port` | integer 1–65535 | `7401` | UDP port for acknowledgements, repair and unicast traffic. |
//! | `socket` | absolute path | `"/run/chorus/chorusd.sock"` | Unix socket local applications connect to; at most 107 bytes. |
//! | `socket_mode` | octal string | `"0660"` | Permission bits of the socket, as a *string* (`"0660"`, `"660"` or `"0o660"`), at most `"0777"`. With `0660`, applications must run as user or group `chorus`. |
//! | `log_level` | string | `"info"` | As in `directory.toml`. |
//! | `key_file` | path | *required unless `insecure = true`* | As in `directory.toml`: the same key file. |
//! | `accept_key_files` | array of paths | `[]` | As in `directory.toml`. |
//! | `insecure` | boolean | `false` | As in `directory.toml`. |
//! | `[tuning]` | table | all defaults | Protocol bounds; see below. |
//!
//! `chorusd` re-reads its file on `SIGHUP` (`systemctl reload chorusd`):
//! `log_level` applies at once (unless `RUST_LOG` is set); every other key
//! takes a restart, and a reload that finds one changed names it in a
//! warning while the daemon runs on with the old value. A file with any
//! error is logged and ignored. SIGHUP never stops chorusd nor touches its
//! groups.
//!
//! ### `[tuning]`: protocol bounds
//!
//! Every queue and window chorusd keeps is bounded by one of these. The
//! defaults suit a LAN; change them only with a reason.
//!
//! | key | type | default | range | meaning |
//! |---|---|---|---|---|
//! | `max_datagram_bytes` | integer | `1400` | 512–65000 | Largest UDP datagram chorusd sends, headers included; small messages are batched up to this size. Keep it below the path MTU (1500 on Ethernet, less 28 bytes of IP and UDP headers) so datagrams are not fragmented. |
//! | `max_message_bytes` | integer | `1048576` (1 MiB) | 1–16777216 (16 MiB) | Largest message payload an application may send; a message larger than a datagram travels in several. A group's `max_message_bytes` in `directory.toml` may lower it for that group. |
//! | `send_window_messages` | integer | `4096` | ≥ 16 | Messages one sender keeps per group until they are stable (received by every member). When the window is full, further sends are held back until acknowledgements free it: this is the flow control. |
//! | `receive_window_messages` | integer | `8192` | ≥ 16 | Messages a receiver buffers per sender past a gap while it waits for the missing one to be repaired. Need not be larger than `send_window_messages`. |
//! | `ack_interval_ms` | integer | `3` | 1–1000 | Longest a receiver waits before acknowledging what it has. Smaller values free senders' windows sooner at the cost of more acknowledgement traffic. |
//! | `retransmit_ms` | integer | `60` | 5–10000 | How long a missing message is awaited before it is asked for again. |
//! | `session_queue_bytes` | integer | `67108864` (64 MiB) | ≥ 65536 and ≥ `max_message_bytes` | Bytes of delivered-but-unread messages chorusd holds for one application connection. An application that falls this far behind is disconnected, so one slow reader cannot stall its group or exhaust memory. |
//!
//! ## Examples
//!
//! Both files below are the tested examples shipped in `config/examples/`.
//!
//! `directory.toml`:
//!
//! ```toml
#![doc = include_str!("../examples/directory.toml")]
//! ```
//!
//! `chorusd.toml`:
//!
//! ```toml
#![doc = include_str!("../examples/chorusd.toml")]
//! ```
//!
//! ## For programs
//!
//! [`DirectoryConfig::load`] and [`DaemonConfig::load`] read, parse and
//! validate a file; `parse` does the same for text already in memory. The
//! `Default` impls hold every default, which tests and `chorusd --dev` use
//! to build configurations in code (where, unlike in a file, `data_port = 0`
//! is allowed and means "any free port").

#![forbid(unsafe_code)]

mod check;
mod daemon;
mod directory;
mod error;
mod pool;
mod replication;
mod source;
mod trust;

pub use daemon::{DaemonConfig, Tuning};
pub use directory::{DirectoryConfig, DynamicConfig, GroupConfig};
pub use error::ConfigError;
pub use pool::AddressPool;
pub use replication::{PeerConfig, ReplicaId, ReplicationConfig, REPLICAS_MAX};
pub use trust::{describe_keys, read_key_file, Trust};

/// Exit code of every binary when its configuration is invalid (sysexits `EX_CONFIG`).
pub const EXIT_CONFIG: i32 = 78;

/// Where `chorus-directory` reads its configuration unless told otherwise.
pub const DEFAULT_DIRECTORY_CONFIG: &str = "/etc/chorus/directory.toml";

/// Where `chorusd` reads its configuration unless told otherwise.
pub const DEFAULT_DAEMON_CONFIG: &str = "/etc/chorus/chorusd.toml";
