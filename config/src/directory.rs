//! `directory.toml`: the membership server's configuration.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::check::{self, bounded, optional, required, MESSAGE_BYTES_MAX};
use crate::replication::{self, RawPeer, ReplicationConfig};
use crate::source::Source;
use crate::trust::RawTrust;
use crate::{AddressPool, ConfigError, Trust};

/// Shortest lease accepted: below this, scheduling hiccups would evict healthy daemons.
const LEASE_MS_MIN: u64 = 100;

/// The whole of `directory.toml`, validated. See the crate documentation for each key.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectoryConfig {
    /// TCP address daemons connect to. Default `0.0.0.0:7400`.
    pub listen: SocketAddr,
    /// A daemon silent this long is declared dead. Default 1500, at least 100.
    pub lease_ms: u64,
    /// `error`, `warn`, `info` (default), `debug` or `trace`.
    pub log_level: String,
    /// Cluster name, hashed into every datagram header so that two deployments
    /// sharing a multicast address never mix. Default `chorus`.
    pub cluster: String,
    /// Groups declared by the administrator (`[[group]]` tables), in file order.
    pub groups: Vec<GroupConfig>,
    /// Groups created on first join (`[dynamic]`), if enabled.
    pub dynamic: Option<DynamicConfig>,
    /// This replica's id, state directory and peers, when the directory is
    /// replicated (`[[peer]]`); `None` for a single directory.
    pub replication: Option<ReplicationConfig>,
    /// The cluster key (`key_file`, `accept_key_files`) or `insecure`.
    /// Built in code, the default is [`Trust::Insecure`]; a file must say
    /// which (no key and no `insecure = true` is an error).
    pub trust: Trust,
}

/// One `[[group]]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupConfig {
    /// Unique name: 1..=64 bytes of `[A-Za-z0-9._-]`.
    pub name: String,
    /// IPv4 multicast address (224.0.0.0/4) the group's data is sent to.
    pub address: Ipv4Addr,
    /// UDP port of the group's multicast traffic, non-zero.
    pub port: u16,
    /// Largest number of members; `None` for no limit.
    pub max_members: Option<u32>,
    /// Largest message payload in this group, 1..=16 MiB: lowers each
    /// daemon's own `max_message_bytes` for the group (never raises it);
    /// `None` leaves the daemons' limit alone.
    pub max_message_bytes: Option<u32>,
    /// Only these local users may join (checked by chorusd via `SO_PEERCRED`).
    pub allow_users: Option<Vec<String>>,
    /// Or members of these Unix groups.
    pub allow_groups: Option<Vec<String>>,
}

/// The `[dynamic]` table: groups created on first join.
#[derive(Debug, Clone, PartialEq)]
pub struct DynamicConfig {
    /// Multicast block the directory hands addresses out of.
    pub address_pool: AddressPool,
    /// UDP port every dynamic group uses.
    pub port: u16,
}

impl Default for DirectoryConfig {
    /// The defaults of every key, no declared groups and no `[dynamic]`.
    fn default() -> Self {
        DirectoryConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 7400)),
            lease_ms: 1500,
            log_level: "info".to_owned(),
            cluster: "chorus".to_owned(),
            groups: Vec::new(),
            dynamic: None,
            replication: None,
            trust: Trust::Insecure,
        }
    }
}

impl DirectoryConfig {
    /// Read, parse and validate the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::unreadable(path, &e))?;
        Self::parse(&text, path)
    }

    /// Parse and validate `text`; `file` is used only in error messages.
    pub fn parse(text: &str, file: &Path) -> Result<Self, ConfigError> {
        let src = Source::new(text, file);
        let raw: RawDirectory = toml::from_str(text).map_err(|e| src.toml_error(&e))?;
        raw.validate(&src)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDirectory {
    listen: Option<Spanned<String>>,
    lease_ms: Option<Spanned<u64>>,
    log_level: Option<Spanned<String>>,
    cluster: Option<Spanned<String>>,
    key_file: Option<Spanned<String>>,
    accept_key_files: Option<Spanned<Vec<Spanned<String>>>>,
    insecure: Option<Spanned<bool>>,
    #[serde(default)]
    group: Vec<RawGroup>,
    dynamic: Option<RawDynamic>,
    id: Option<Spanned<u64>>,
    state_dir: Option<Spanned<String>>,
    #[serde(default)]
    peer: Vec<RawPeer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: Spanned<String>,
    address: Spanned<String>,
    port: Spanned<u16>,
    max_members: Option<Spanned<u32>>,
    max_message_bytes: Option<Spanned<u32>>,
    allow_users: Option<Spanned<Vec<String>>>,
    allow_groups: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDynamic {
    address_pool: Spanned<String>,
    port: Spanned<u16>,
}

impl RawDirectory {
    fn validate(self, src: &Source<'_>) -> Result<DirectoryConfig, ConfigError> {
        let d = DirectoryConfig::default();
        let listen_span = self.listen.as_ref().map(Spanned::span);
        let listen = optional(src, "listen", self.listen, d.listen, |s| {
            check::socket_addr(&s)
        })?;
        let lease_ms = bounded(
            src,
            "lease_ms",
            self.lease_ms,
            d.lease_ms,
            LEASE_MS_MIN,
            None,
        )?;
        let log_level = optional(
            src,
            "log_level",
            self.log_level,
            d.log_level,
            check::log_level,
        )?;
        let cluster = optional(src, "cluster", self.cluster, d.cluster, |s| {
            check::plain_name(&s).map(|()| s)
        })?;
        let dynamic = self.dynamic.map(|r| r.validate(src)).transpose()?;
        let groups = validate_groups(src, self.group, dynamic.as_ref())?;
        let replication = replication::validate(
            src,
            self.id,
            self.state_dir,
            self.peer,
            (listen, listen_span),
        )?;
        let trust = RawTrust {
            key_file: self.key_file,
            accept_key_files: self.accept_key_files,
            insecure: self.insecure,
        }
        .validate(src)?;
        Ok(DirectoryConfig {
            replication,
            listen,
            lease_ms,
            log_level,
            cluster,
            groups,
            dynamic,
            trust,
        })
    }
}

impl RawDynamic {
    fn validate(self, src: &Source<'_>) -> Result<DynamicConfig, ConfigError> {
        Ok(DynamicConfig {
            address_pool: required(src, "dynamic.address_pool", self.address_pool, |s| {
                AddressPool::parse(&s)
            })?,
            port: required(src, "dynamic.port", self.port, check::port)?,
        })
    }
}

impl RawGroup {
    fn validate(self, src: &Source<'_>) -> Result<GroupConfig, ConfigError> {
        let name = required(src, "group.name", self.name, |s| {
            check::plain_name(&s).map(|()| s)
        })?;
        let address = required(src, "group.address", self.address, |s| {
            group_address(&name, &s)
        })?;
        let port = required(src, "group.port", self.port, check::port)?;
        let max_members = self
            .max_members
            .map(|m| {
                required(src, "group.max_members", m, |m| match m {
                    0 => Err("must be at least 1; leave it out for no limit".to_owned()),
                    m => Ok(m),
                })
            })
            .transpose()?;
        let max_message_bytes = self
            .max_message_bytes
            .map(|m| required(src, "group.max_message_bytes", m, message_bytes))
            .transpose()?;
        let allow = |key: &str, list: Option<Spanned<Vec<String>>>| {
            list.map(|l| required(src, key, l, check::account_names))
                .transpose()
        };
        Ok(GroupConfig {
            allow_users: allow("group.allow_users", self.allow_users)?,
            allow_groups: allow("group.allow_groups", self.allow_groups)?,
            name,
            address,
            port,
            max_members,
            max_message_bytes,
        })
    }
}

/// `group.max_message_bytes`: 1..=16 MiB.
fn message_bytes(m: u32) -> Result<u32, String> {
    if (1..=MESSAGE_BYTES_MAX).contains(&(m as usize)) {
        Ok(m)
    } else {
        Err(format!(
            "{m} is outside 1..={MESSAGE_BYTES_MAX}; leave it out to keep the daemons' limit"
        ))
    }
}

fn group_address(group: &str, s: &str) -> Result<Ipv4Addr, String> {
    let a: Ipv4Addr = s
        .trim()
        .parse()
        .map_err(|_| format!("group `{group}`: `{s}` is not an IPv4 address"))?;
    if a.is_multicast() {
        Ok(a)
    } else {
        Err(format!(
            "group `{group}`: {a} is not an IPv4 multicast address (224.0.0.0/4)"
        ))
    }
}

/// Check each group, then what only the set of groups can show: duplicate
/// names, two groups on one address and port, and addresses the dynamic pool
/// could hand out a second time.
fn validate_groups(
    src: &Source<'_>,
    raw: Vec<RawGroup>,
    dynamic: Option<&DynamicConfig>,
) -> Result<Vec<GroupConfig>, ConfigError> {
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut endpoints: HashMap<(Ipv4Addr, u16), usize> = HashMap::new();
    let mut groups = Vec::with_capacity(raw.len());
    for r in raw {
        let name_span = r.name.span();
        let address_span = r.address.span();
        let g = r.validate(src)?;
        let name_line = src.line_of(name_span.start);
        if let Some(first) = names.insert(g.name.clone(), name_line) {
            return Err(src.error(
                name_span,
                "group.name",
                format!("group `{}` is already declared on line {first}", g.name),
            ));
        }
        let address_line = src.line_of(address_span.start);
        if let Some(first) = endpoints.insert((g.address, g.port), address_line) {
            return Err(src.error(
                address_span,
                "group.address",
                format!(
                    "group `{}`: {}:{} is already used by the group on line {first}",
                    g.name, g.address, g.port
                ),
            ));
        }
        if let Some(pool) = dynamic.map(|d| d.address_pool) {
            if pool.contains(g.address) {
                return Err(src.error(
                    address_span,
                    "group.address",
                    format!(
                        "group `{}`: {} lies inside the dynamic address_pool {pool}, \
                         which the directory hands out to dynamic groups",
                        g.name, g.address
                    ),
                ));
            }
        }
        groups.push(g);
    }
    Ok(groups)
}
