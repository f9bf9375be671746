//! Cluster keys for the clusters the harness starts.
//!
//! Every cluster runs keyed, as a deployment must: one key file per test
//! cluster, random, mode 0600, in the test's directory, named by every
//! daemon's and directory's `key_file` ([`KeySpec`]). A test of what a
//! wrong key does makes a second one with [`key_file`] and gives it to one
//! process only.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use chorus_proto::wire::seal::{ClusterKey, KeyId, KEY_BYTES};
use ring::rand::{SecureRandom as _, SystemRandom};

use crate::error::{HarnessError, Result};

/// The file name of a test cluster's key in its test directory.
pub const CLUSTER_KEY_FILE: &str = "cluster.key";

/// The trust keys of a daemon's or directory's file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySpec {
    /// `key_file` and `accept_key_files`.
    Files {
        /// `key_file`: the key this process seals with.
        key_file: PathBuf,
        /// `accept_key_files`: keys it also opens with (a rotation).
        accept_key_files: Vec<PathBuf>,
    },
    /// `insecure = true`: no key.
    Insecure,
}

impl KeySpec {
    /// `key_file = PATH`, nothing else accepted.
    pub fn file(key_file: impl Into<PathBuf>) -> KeySpec {
        KeySpec::Files {
            key_file: key_file.into(),
            accept_key_files: Vec::new(),
        }
    }

    /// The file's lines for these keys (top-level keys: written before any
    /// table).
    pub fn to_toml(&self) -> String {
        match self {
            KeySpec::Insecure => "insecure = true\n".to_owned(),
            KeySpec::Files {
                key_file,
                accept_key_files,
            } => {
                let mut s = format!("key_file = \"{}\"\n", key_file.display());
                if !accept_key_files.is_empty() {
                    let list: Vec<String> = accept_key_files
                        .iter()
                        .map(|p| format!("\"{}\"", p.display()))
                        .collect();
                    s.push_str(&format!("accept_key_files = [{}]\n", list.join(", ")));
                }
                s
            }
        }
    }
}

/// 32 random bytes from the system's source, as `chorusctl keygen` draws.
pub fn random_secret() -> Result<[u8; KEY_BYTES]> {
    let mut secret = [0u8; KEY_BYTES];
    SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| HarnessError::Unexpected("the system random source failed".into()))?;
    Ok(secret)
}

/// Writes a key file holding `secret` at `path`, mode 0600 (replacing any
/// file there); returns `path`.
pub fn write_key_file(path: &Path, secret: &[u8; KEY_BYTES]) -> Result<PathBuf> {
    let io = |e| HarnessError::io(format!("writing key file {}", path.display()), e);
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(ClusterKey::text_of(secret).as_bytes())
        .map_err(io)?;
    Ok(path.to_path_buf())
}

/// A new random key in `dir/name`, mode 0600: a second key, for a process
/// that must not be of the cluster.
pub fn key_file(dir: &Path, name: &str) -> Result<PathBuf> {
    write_key_file(&dir.join(name), &random_secret()?)
}

/// The test cluster's key, `dir/cluster.key`: made (random, 0600) on the
/// first call, the same file on later calls, so every process of a test
/// that asks gets the same key.
pub fn cluster_key_file(dir: &Path) -> Result<PathBuf> {
    let path = dir.join(CLUSTER_KEY_FILE);
    if path.is_file() {
        return Ok(path);
    }
    write_key_file(&path, &random_secret()?)
}

/// Whether the clusters this process starts run without a key
/// ([`run_clusters_insecure`]).
static INSECURE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes every cluster this process starts from now on run with
/// `insecure = true`: `chorus-bench --insecure`, which measures what the
/// key costs. Tests never call it.
pub fn run_clusters_insecure() {
    INSECURE.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// [`cluster_key_file`] as the keys every file of the cluster names (or
/// none, after [`run_clusters_insecure`]).
pub fn cluster_keys(dir: &Path) -> Result<KeySpec> {
    if INSECURE.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(KeySpec::Insecure);
    }
    Ok(KeySpec::file(cluster_key_file(dir)?))
}

/// Writes `keys` into the config file at `path` (a daemon's or a
/// directory's) in place of the keys it named: what an administrator
/// edits at each step of a rotation (systemd/INSTALL.md).
pub fn rewrite_keys(path: &Path, keys: &KeySpec) -> Result<()> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| HarnessError::io(format!("reading {}", path.display()), e))?;
    let is_key_line = |l: &str| {
        ["key_file", "accept_key_files", "insecure"]
            .iter()
            .any(|k| l.split('=').next().map(str::trim) == Some(*k))
    };
    // Keys are top-level: they go first, before any table.
    let mut out = keys.to_toml();
    for line in text.lines().filter(|l| !is_key_line(l)) {
        out.push_str(line);
        out.push('\n');
    }
    std::fs::write(path, out)
        .map_err(|e| HarnessError::io(format!("writing {}", path.display()), e))
}

/// The id of the key in the file at `path`, as sealed datagrams, frames
/// and logs name it (eight hex digits when displayed).
pub fn key_id(path: &Path) -> Result<KeyId> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| HarnessError::io(format!("reading key file {}", path.display()), e))?;
    ClusterKey::from_text(&text)
        .map(|k| k.id())
        .map_err(|e| HarnessError::Unexpected(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn one_cluster_one_key_and_a_second_key_differs() {
        let dir = std::env::temp_dir().join(format!("chorus-tests-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let a = cluster_key_file(&dir).unwrap();
        let id = key_id(&a).unwrap();
        assert_eq!(cluster_key_file(&dir).unwrap(), a);
        assert_eq!(key_id(&a).unwrap(), id, "a second call kept the key");
        let mode = std::fs::metadata(&a).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = key_file(&dir, "other.key").unwrap();
        assert_ne!(key_id(&b).unwrap(), id);
        let spec = KeySpec::Files {
            key_file: a.clone(),
            accept_key_files: vec![b.clone()],
        };
        assert_eq!(
            spec.to_toml(),
            format!(
                "key_file = \"{}\"\naccept_key_files = [\"{}\"]\n",
                a.display(),
                b.display()
            )
        );
        assert_eq!(KeySpec::Insecure.to_toml(), "insecure = true\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn rewrite_keys_replaces_the_key_lines_and_keeps_the_rest() {
        let dir = std::env::temp_dir().join(format!("chorus-tests-rewrite-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            "node = \"n1\"\nkey_file = \"/a\"\n[tuning]\nmax_message_bytes = 9\n",
        )
        .unwrap();
        let spec = KeySpec::Files {
            key_file: "/b".into(),
            accept_key_files: vec!["/a".into()],
        };
        rewrite_keys(&path, &spec).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "key_file = \"/b\"\naccept_key_files = [\"/a\"]\nnode = \"n1\"\n[tuning]\nmax_message_bytes = 9\n"
        );
        rewrite_keys(&path, &KeySpec::file("/b")).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "key_file = \"/b\"\nnode = \"n1\"\n[tuning]\nmax_message_bytes = 9\n"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
