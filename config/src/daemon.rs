//! `chorusd.toml`: the per-host daemon's configuration.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::check::{self, bounded, optional, required, MESSAGE_BYTES_MAX};
use crate::source::Source;
use crate::trust::RawTrust;
use crate::{ConfigError, Trust};

/// The whole of `chorusd.toml`, validated. See the crate documentation for each key.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    /// Unique node name; default: the host name.
    pub node: String,
    /// Directory addresses, tried in order; never empty.
    pub directory: Vec<SocketAddr>,
    /// Local IPv4 address used for multicast and for peers.
    pub interface: Ipv4Addr,
    /// UDP port for acknowledgements, repair and unicast traffic. A file must
    /// give a non-zero port; 0 (any free port) is for tests and `--dev`, which
    /// set it in code.
    pub data_port: u16,
    /// Unix socket for local applications.
    pub socket: PathBuf,
    /// Permission bits of `socket`, e.g. `0o660`.
    pub socket_mode: u32,
    /// `error`, `warn`, `info` (default), `debug` or `trace`.
    pub log_level: String,
    /// Protocol bounds (`[tuning]`).
    pub tuning: Tuning,
    /// The cluster key (`key_file`, `accept_key_files`) or `insecure`.
    /// Built in code, the default is [`Trust::Insecure`]; a file must say
    /// which (no key and no `insecure = true` is an error).
    pub trust: Trust,
}

/// Protocol bounds: every queue and window chorusd keeps has its limit here.
#[derive(Debug, Clone, PartialEq)]
pub struct Tuning {
    /// Largest UDP datagram sent, headers included. Default 1400, 512..=65000.
    pub max_datagram_bytes: usize,
    /// Largest message payload an application may send; larger messages
    /// travel in several datagrams. Default 1 MiB, 1..=16 MiB.
    pub max_message_bytes: usize,
    /// Messages a sender may have unacknowledged per group. Default 4096, >= 16.
    pub send_window_messages: usize,
    /// Messages buffered out of order per group while waiting for a gap to be
    /// repaired. Default 8192, >= 16.
    pub receive_window_messages: usize,
    /// Longest delay before acknowledging what was received. Default 3, 1..=1000.
    pub ack_interval_ms: u64,
    /// Wait before asking again for a missing message. Default 60, 5..=10000.
    pub retransmit_ms: u64,
    /// Bytes of undelivered messages queued for one application session; a
    /// slower application is disconnected. Default 64 MiB, >= 65536.
    pub session_queue_bytes: usize,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            max_datagram_bytes: 1400,
            max_message_bytes: 1 << 20,
            send_window_messages: 4096,
            receive_window_messages: 8192,
            ack_interval_ms: 3,
            retransmit_ms: 60,
            session_queue_bytes: 64 * 1024 * 1024,
        }
    }
}

impl Default for DaemonConfig {
    /// The defaults of every key; `node` is this machine's host name.
    fn default() -> Self {
        DaemonConfig {
            node: host_name(),
            directory: vec![SocketAddr::from(([127, 0, 0, 1], 7400))],
            interface: Ipv4Addr::LOCALHOST,
            data_port: 7401,
            socket: PathBuf::from("/run/chorus/chorusd.sock"),
            socket_mode: 0o660,
            log_level: "info".to_owned(),
            tuning: Tuning::default(),
            trust: Trust::Insecure,
        }
    }
}

/// The kernel's host name, or `localhost` if it cannot be read.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

impl DaemonConfig {
    /// Read, parse and validate the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::unreadable(path, &e))?;
        Self::parse(&text, path)
    }

    /// Parse and validate `text`; `file` is used only in error messages.
    pub fn parse(text: &str, file: &Path) -> Result<Self, ConfigError> {
        let src = Source::new(text, file);
        let raw: RawDaemon = toml::from_str(text).map_err(|e| src.toml_error(&e))?;
        raw.validate(&src)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    node: Option<Spanned<String>>,
    directory: Option<Spanned<Vec<Spanned<String>>>>,
    interface: Option<Spanned<String>>,
    data_port: Option<Spanned<u16>>,
    socket: Option<Spanned<String>>,
    socket_mode: Option<Spanned<toml::Value>>,
    log_level: Option<Spanned<String>>,
    key_file: Option<Spanned<String>>,
    accept_key_files: Option<Spanned<Vec<Spanned<String>>>>,
    insecure: Option<Spanned<bool>>,
    tuning: Option<RawTuning>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTuning {
    max_datagram_bytes: Option<Spanned<usize>>,
    max_message_bytes: Option<Spanned<usize>>,
    send_window_messages: Option<Spanned<usize>>,
    receive_window_messages: Option<Spanned<usize>>,
    ack_interval_ms: Option<Spanned<u64>>,
    retransmit_ms: Option<Spanned<u64>>,
    session_queue_bytes: Option<Spanned<usize>>,
}

impl RawDaemon {
    fn validate(self, src: &Source<'_>) -> Result<DaemonConfig, ConfigError> {
        let d = DaemonConfig::default();
        let node = match self.node {
            Some(n) => required(src, "node", n, |s| check::node_name(&s).map(|()| s))?,
            None => check::node_name(&d.node).map(|()| d.node).map_err(|msg| {
                ConfigError::new(
                    src.file,
                    None,
                    Some("node"),
                    format!("the host name is not usable as a node name ({msg}); set `node`"),
                )
            })?,
        };
        let directory = match self.directory {
            Some(list) => directory_list(src, list)?,
            None => d.directory,
        };
        Ok(DaemonConfig {
            node,
            directory,
            interface: optional(src, "interface", self.interface, d.interface, |s| {
                interface(&s)
            })?,
            data_port: optional(src, "data_port", self.data_port, d.data_port, check::port)?,
            socket: optional(src, "socket", self.socket, d.socket, socket_path)?,
            socket_mode: optional(
                src,
                "socket_mode",
                self.socket_mode,
                d.socket_mode,
                check::octal_mode,
            )?,
            log_level: optional(
                src,
                "log_level",
                self.log_level,
                d.log_level,
                check::log_level,
            )?,
            tuning: match self.tuning {
                Some(t) => t.validate(src)?,
                None => d.tuning,
            },
            trust: RawTrust {
                key_file: self.key_file,
                accept_key_files: self.accept_key_files,
                insecure: self.insecure,
            }
            .validate(src)?,
        })
    }
}

impl RawTuning {
    fn validate(self, src: &Source<'_>) -> Result<Tuning, ConfigError> {
        let d = Tuning::default();
        let key = |k: &str| format!("tuning.{k}");
        // Where a bad pair is reported: the session queue if it was set,
        // else the message limit.
        let pair_span = self
            .session_queue_bytes
            .as_ref()
            .map(|v| (v.span(), "session_queue_bytes"))
            .or_else(|| {
                self.max_message_bytes
                    .as_ref()
                    .map(|v| (v.span(), "max_message_bytes"))
            });
        let t = Tuning {
            max_datagram_bytes: bounded(
                src,
                &key("max_datagram_bytes"),
                self.max_datagram_bytes,
                d.max_datagram_bytes,
                512,
                Some(65000),
            )?,
            max_message_bytes: bounded(
                src,
                &key("max_message_bytes"),
                self.max_message_bytes,
                d.max_message_bytes,
                1,
                Some(MESSAGE_BYTES_MAX),
            )?,
            send_window_messages: bounded(
                src,
                &key("send_window_messages"),
                self.send_window_messages,
                d.send_window_messages,
                16,
                None,
            )?,
            receive_window_messages: bounded(
                src,
                &key("receive_window_messages"),
                self.receive_window_messages,
                d.receive_window_messages,
                16,
                None,
            )?,
            ack_interval_ms: bounded(
                src,
                &key("ack_interval_ms"),
                self.ack_interval_ms,
                d.ack_interval_ms,
                1,
                Some(1000),
            )?,
            retransmit_ms: bounded(
                src,
                &key("retransmit_ms"),
                self.retransmit_ms,
                d.retransmit_ms,
                5,
                Some(10_000),
            )?,
            session_queue_bytes: bounded(
                src,
                &key("session_queue_bytes"),
                self.session_queue_bytes,
                d.session_queue_bytes,
                65_536,
                None,
            )?,
        };
        // A listener's queue must hold the largest message, or every
        // listener would be disconnected by the first one that large.
        if t.session_queue_bytes < t.max_message_bytes {
            let msg = format!(
                "session_queue_bytes ({}) is smaller than max_message_bytes ({}): every listener would be disconnected by the largest message; raise session_queue_bytes or lower max_message_bytes",
                t.session_queue_bytes, t.max_message_bytes
            );
            return Err(match pair_span {
                Some((span, k)) => src.error(span, &key(k), msg),
                None => ConfigError::new(src.file, None, Some("tuning"), msg),
            });
        }
        Ok(t)
    }
}

/// `directory`: at least one address, each once.
fn directory_list(
    src: &Source<'_>,
    list: Spanned<Vec<Spanned<String>>>,
) -> Result<Vec<SocketAddr>, ConfigError> {
    let list_span = list.span();
    let entries = list.into_inner();
    if entries.is_empty() {
        return Err(src.error(
            list_span,
            "directory",
            "list at least one directory address, e.g. [\"10.0.0.1:7400\"]",
        ));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let addr = required(src, "directory", entry, |s| {
            let a = check::socket_addr(&s)?;
            if a.ip().is_unspecified() || a.ip().is_multicast() {
                return Err(format!("`{s}` is not an address a daemon can connect to"));
            }
            if !seen.insert(a) {
                return Err(format!("`{s}` is listed twice"));
            }
            Ok(a)
        })?;
        out.push(addr);
    }
    Ok(out)
}

/// `interface`: a unicast IPv4 address of this host.
fn interface(s: &str) -> Result<Ipv4Addr, String> {
    let a: Ipv4Addr = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not an IPv4 address"))?;
    if a.is_unspecified() || a.is_multicast() || a.is_broadcast() {
        return Err(format!(
            "{a} is not a unicast address; give the address of the interface peers reach this host on"
        ));
    }
    Ok(a)
}

/// `socket`: an absolute path that fits in a Unix socket address.
fn socket_path(s: String) -> Result<PathBuf, String> {
    let path = PathBuf::from(&s);
    if !path.is_absolute() {
        return Err(format!("`{s}` is not an absolute path"));
    }
    if s.len() > check::SOCKET_PATH_BYTES_MAX {
        return Err(format!(
            "`{s}` is {} bytes long; Unix socket paths are limited to {} bytes",
            s.len(),
            check::SOCKET_PATH_BYTES_MAX
        ));
    }
    Ok(path)
}
