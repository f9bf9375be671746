//! The cluster key: which key file a process seals with, which others it
//! also accepts during a rotation, or the explicit choice to run without.
//!
//! A key file holds one line, `chorus-cluster-key-v1:` and 64 hex digits
//! (`chorusctl keygen PATH` writes one). It must be readable by its owner
//! only: a key that other users may read is a key they hold.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use chorus_proto::wire::seal::{ClusterKey, KeyRing, KEY_BYTES};

use crate::ConfigError;

/// How a process proves it belongs to the cluster.
#[derive(Clone, PartialEq, Eq)]
pub enum Trust {
    /// `key_file` (sealing and opening) and `accept_key_files` (opening
    /// only, during a rotation).
    KeyFiles {
        key_file: PathBuf,
        accept_key_files: Vec<PathBuf>,
    },
    /// A key held only in memory: `chorusd --dev` draws one at start for
    /// itself and its in-process directory.
    Ephemeral([u8; KEY_BYTES]),
    /// `insecure = true`: no key; anyone who can send a datagram or reach
    /// the directory is believed. Logged as a warning at every start.
    Insecure,
}

impl fmt::Debug for Trust {
    /// Never prints an ephemeral key's bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trust::KeyFiles {
                key_file,
                accept_key_files,
            } => f
                .debug_struct("KeyFiles")
                .field("key_file", key_file)
                .field("accept_key_files", accept_key_files)
                .finish(),
            Trust::Ephemeral(_) => f.write_str("Ephemeral(..)"),
            Trust::Insecure => f.write_str("Insecure"),
        }
    }
}

impl Trust {
    /// The keys this trust names, read from their files and checked;
    /// `None` when insecure. `config` is the configuration file the key
    /// files were named in (for the error's location).
    pub fn load(&self, config: &Path) -> Result<Option<KeyRing>, ConfigError> {
        match self {
            Trust::Insecure => Ok(None),
            Trust::Ephemeral(secret) => Ok(Some(KeyRing::new(
                ClusterKey::from_bytes(secret),
                Vec::new(),
            ))),
            Trust::KeyFiles {
                key_file,
                accept_key_files,
            } => {
                let current = read_key_file(key_file)
                    .map_err(|m| ConfigError::new(config, None, Some("key_file"), m))?;
                let mut also = Vec::new();
                for p in accept_key_files {
                    also.push(read_key_file(p).map_err(|m| {
                        ConfigError::new(config, None, Some("accept_key_files"), m)
                    })?);
                }
                Ok(Some(KeyRing::new(current, also)))
            }
        }
    }
}

/// Reads and checks one key file; the error says what is wrong with it and
/// how to put it right.
pub fn read_key_file(path: &Path) -> Result<ClusterKey, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| {
        format!("cannot read key file {shown}: {e} (make one with `chorusctl keygen {shown}`)")
    })?;
    if !meta.is_file() {
        return Err(format!("key file {shown} is not a regular file"));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "key file {shown} has mode {mode:03o}: other users may read or change it; make it readable by its owner only (`chmod 600 {shown}`)"
        ));
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read key file {shown}: {e}"))?;
    ClusterKey::from_text(&text).map_err(|e| format!("key file {shown} is not a chorus key: {e}"))
}
