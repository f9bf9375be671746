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
use toml::Spanned;

use crate::source::Source;
use crate::ConfigError;

/// What a file that names no key is told: how to make one, and the
/// alternative with its cost spelt out, so the choice to run unauthenticated
/// is made knowingly.
pub(crate) const NO_KEY: &str =
    "no cluster key: make one with `chorusctl keygen /etc/chorus/cluster.key`, \
copy it to every host and the directory, and set key_file = \"/etc/chorus/cluster.key\"; \
or set insecure = true to run without authentication (anyone who can reach the network \
can then read and forge messages)";

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

/// Largest key file read: a key is one line of 87 bytes, with room for
/// surrounding whitespace an editor may add.
const KEY_FILE_BYTES_MAX: u64 = 1024;

/// The trust keys of either file, as written: `key_file`,
/// `accept_key_files` and `insecure`.
pub(crate) struct RawTrust {
    pub(crate) key_file: Option<Spanned<String>>,
    pub(crate) accept_key_files: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) insecure: Option<Spanned<bool>>,
}

impl RawTrust {
    /// Checks the keys against each other and reads every key file now, so
    /// that `--check` (and a reload) refuses a missing or readable-by-others
    /// key where the file names it, not at start. Relative key paths are
    /// taken from the configuration file's directory: a service's working
    /// directory is no place to look for its key.
    pub(crate) fn validate(self, src: &Source<'_>) -> Result<Trust, ConfigError> {
        let insecure = self.insecure.as_ref().is_some_and(|i| *i.get_ref());
        let Some(key_file) = self.key_file else {
            if let Some(accept) = &self.accept_key_files {
                return Err(src.error(
                    accept.span(),
                    "accept_key_files",
                    "accept_key_files without key_file: the keys accepted during a rotation \
                     come with the key this process seals with; set key_file too",
                ));
            }
            if insecure {
                return Ok(Trust::Insecure);
            }
            return Err(match &self.insecure {
                Some(i) => src.error(i.span(), "insecure", NO_KEY),
                None => ConfigError::new(src.file, None, Some("key_file"), NO_KEY),
            });
        };
        if let Some(i) = self.insecure.as_ref().filter(|i| *i.get_ref()) {
            return Err(src.error(
                i.span(),
                "insecure",
                "insecure = true and key_file both set: choose one (remove insecure to run \
                 with the key, or key_file to run without authentication)",
            ));
        }
        let key_file = key_path(src, "key_file", key_file)?;
        let mut accept_key_files: Vec<PathBuf> = Vec::new();
        for entry in self
            .accept_key_files
            .map(Spanned::into_inner)
            .unwrap_or_default()
        {
            let span = entry.span();
            let path = key_path(src, "accept_key_files", entry)?;
            if path == key_file || accept_key_files.contains(&path) {
                return Err(src.error(
                    span,
                    "accept_key_files",
                    format!("{} is listed twice", path.display()),
                ));
            }
            accept_key_files.push(path);
        }
        Ok(Trust::KeyFiles {
            key_file,
            accept_key_files,
        })
    }
}

/// One key file's path, resolved against the configuration file's
/// directory and read, its faults reported at its line under `key`.
fn key_path(src: &Source<'_>, key: &str, value: Spanned<String>) -> Result<PathBuf, ConfigError> {
    let span = value.span();
    let text = value.into_inner();
    if text.trim().is_empty() {
        return Err(src.error(
            span,
            key,
            "the key file path is empty; name a file made by `chorusctl keygen PATH`",
        ));
    }
    let path = match src.file.parent() {
        Some(dir) => dir.join(&text),
        None => PathBuf::from(&text),
    };
    read_key_file(&path).map_err(|m| src.error(span, key, m))?;
    Ok(path)
}

/// The keys of `ring` as a start logs them: the ids only (which name the
/// keys without revealing them), so an administrator can see from the logs
/// which key every process seals with during a rotation.
pub fn describe_keys(ring: &KeyRing) -> String {
    let ids = ring.ids();
    let mut s = format!("sealing with cluster key {}", ring.current().id());
    if ids.len() > 1 {
        let also: Vec<String> = ids.iter().skip(1).map(ToString::to_string).collect();
        s.push_str(&format!(", also accepting {}", also.join(", ")));
    }
    s
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
    // A key file is one short line; a path to some large file is a
    // mistake, and is refused before it is read into memory.
    if meta.len() > KEY_FILE_BYTES_MAX {
        return Err(format!(
            "key file {shown} is {} bytes long; a key file is one line of {} bytes (make one with `chorusctl keygen PATH`)",
            meta.len(),
            ClusterKey::text_of(&[0; KEY_BYTES]).len()
        ));
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
