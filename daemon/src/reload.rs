//! SIGHUP: re-read `chorusd.toml`, apply what can change while running, and
//! name what cannot.
//!
//! `log_level` applies at once (unless `RUST_LOG` is set, which wins as at
//! start), and so do the cluster keys: `key_file` and `accept_key_files`
//! are read anew at every SIGHUP, and keys that differ from the running
//! ones (another file named, or a file rewritten) are taken by every
//! socket and the directory link without a restart, one step of a rotation
//! (systemd/INSTALL.md). Every other key shapes sockets, the node's
//! identity or the protocol's bounds, all fixed for the daemon's life, and
//! so does the choice between a key and `insecure`: a change to one is
//! logged as a warning naming the keys, and the daemon keeps running with
//! the old values until it is restarted. A file that does not load
//! (unreadable, invalid, a key file missing or open to others) is logged
//! and ignored. SIGHUP never stops chorusd and never touches its groups.

use chorus_config::{describe_keys, DaemonConfig, Trust};
use chorus_proto::wire::seal::{KeyId, KeyRing};
use log::LevelFilter;
use std::path::PathBuf;

/// The running configuration and where it came from.
#[derive(Debug)]
pub struct Reloader {
    path: PathBuf,
    running: DaemonConfig,
    /// The ids of the keys running (current first); `None` without keys
    /// from files (insecure, or the ephemeral key of `--dev`).
    running_keys: Option<Vec<KeyId>>,
    /// Keys a reload read and the daemon has not taken yet.
    pending_keys: Option<KeyRing>,
    /// `RUST_LOG` was set at start: it, not `log_level`, sets the level.
    env_sets_level: bool,
}

/// What a reload found.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The file did not load; the running configuration stays.
    Rejected(String),
    /// The file loaded: the new log level if it was applied, the ids of
    /// the new keys if they changed (current first), and the keys that
    /// changed but take a restart.
    Loaded {
        log_level: Option<String>,
        keys: Option<Vec<KeyId>>,
        need_restart: Vec<&'static str>,
    },
}

impl Reloader {
    /// `keys`: the ring the daemon started with.
    pub fn new(path: PathBuf, running: DaemonConfig, keys: Option<&KeyRing>) -> Reloader {
        let running_keys = match running.trust {
            Trust::KeyFiles { .. } => keys.map(KeyRing::ids),
            Trust::Ephemeral(_) | Trust::Insecure => None,
        };
        Reloader {
            path,
            running,
            running_keys,
            pending_keys: None,
            env_sets_level: std::env::var_os("RUST_LOG").is_some(),
        }
    }

    /// The keys the last reload read, if they differ from those running:
    /// the daemon takes them ([`crate::io::Daemon::rekey`]).
    pub fn take_keys(&mut self) -> Option<KeyRing> {
        self.pending_keys.take()
    }

    /// Re-reads the file and applies it; logs what happened.
    pub fn reload(&mut self) -> Outcome {
        log::info!("SIGHUP: re-reading {}", self.path.display());
        let outcome = match DaemonConfig::load(&self.path) {
            Ok(new) => self.apply(new),
            Err(e) => Outcome::Rejected(e.to_string()),
        };
        match &outcome {
            Outcome::Rejected(e) => {
                log::error!("SIGHUP: {e}; the running configuration stays");
            }
            Outcome::Loaded {
                log_level,
                keys,
                need_restart,
            } => {
                if let Some(level) = log_level {
                    log::info!("SIGHUP: log_level is now {level}");
                }
                if let Some(ring) = &self.pending_keys {
                    log::info!("SIGHUP: new keys: now {}", describe_keys(ring));
                }
                if !need_restart.is_empty() {
                    log::warn!(
                        "SIGHUP: {} changed in {}: applied only when chorusd restarts (it runs \
                         on with the old values)",
                        need_restart.join(", "),
                        self.path.display()
                    );
                }
                if log_level.is_none() && keys.is_none() && need_restart.is_empty() {
                    log::info!("SIGHUP: nothing changed that applies while running");
                }
            }
        }
        outcome
    }

    fn apply(&mut self, new: DaemonConfig) -> Outcome {
        // The keys first: a key file that does not read rejects the whole
        // file, before anything of it is applied.
        let ring = match (&self.running_keys, &new.trust) {
            (Some(_), Trust::KeyFiles { .. }) => match new.trust.load(&self.path) {
                Ok(ring) => ring,
                Err(e) => return Outcome::Rejected(e.to_string()),
            },
            _ => None,
        };
        let mut keys = None;
        if let Some(ring) = ring {
            let ids = ring.ids();
            if self.running_keys.as_ref() != Some(&ids) {
                keys = Some(ids.clone());
                self.running_keys = Some(ids);
                self.running.trust = new.trust.clone();
                self.pending_keys = Some(ring);
            }
        }
        let need_restart = restart_keys(&self.running, &new);
        let mut log_level = None;
        if new.log_level != self.running.log_level {
            if self.env_sets_level {
                log::warn!(
                    "SIGHUP: log_level changed to {}, but RUST_LOG sets the level; not applied",
                    new.log_level
                );
            } else if set_log_level(&new.log_level) {
                log_level = Some(new.log_level.clone());
                self.running.log_level = new.log_level;
            }
        }
        Outcome::Loaded {
            log_level,
            keys,
            need_restart,
        }
    }
}

/// Sets the level of every log record from now on; false if `level` is not
/// one (the configuration's validation allows only levels).
pub fn set_log_level(level: &str) -> bool {
    match level.parse::<LevelFilter>() {
        Ok(l) => {
            log::set_max_level(l);
            true
        }
        Err(_) => false,
    }
}

/// The keys that differ between `old` and `new` and take a restart, as
/// named in `chorusd.toml`.
pub fn restart_keys(old: &DaemonConfig, new: &DaemonConfig) -> Vec<&'static str> {
    let (a, b) = (&old.tuning, &new.tuning);
    // Keys from files change while running (`Reloader::apply`); going
    // from them to none or an ephemeral key, or back, takes a restart.
    let files = |t: &Trust| matches!(t, Trust::KeyFiles { .. });
    let live_keys = files(&old.trust) && files(&new.trust);
    let key_file = |t: &Trust| match t {
        Trust::KeyFiles { key_file, .. } => Some(key_file.clone()),
        Trust::Ephemeral(_) | Trust::Insecure => None,
    };
    let accepted = |t: &Trust| match t {
        Trust::KeyFiles {
            accept_key_files, ..
        } => accept_key_files.clone(),
        Trust::Ephemeral(_) | Trust::Insecure => Vec::new(),
    };
    let checks = [
        (
            "key_file",
            !live_keys && key_file(&old.trust) != key_file(&new.trust),
        ),
        (
            "accept_key_files",
            !live_keys && accepted(&old.trust) != accepted(&new.trust),
        ),
        (
            "insecure",
            (old.trust == Trust::Insecure) != (new.trust == Trust::Insecure),
        ),
        ("node", old.node != new.node),
        ("directory", old.directory != new.directory),
        ("interface", old.interface != new.interface),
        ("data_port", old.data_port != new.data_port),
        ("socket", old.socket != new.socket),
        ("socket_mode", old.socket_mode != new.socket_mode),
        (
            "tuning.max_datagram_bytes",
            a.max_datagram_bytes != b.max_datagram_bytes,
        ),
        (
            "tuning.max_message_bytes",
            a.max_message_bytes != b.max_message_bytes,
        ),
        (
            "tuning.send_window_messages",
            a.send_window_messages != b.send_window_messages,
        ),
        (
            "tuning.receive_window_messages",
            a.receive_window_messages != b.receive_window_messages,
        ),
        (
            "tuning.ack_interval_ms",
            a.ack_interval_ms != b.ack_interval_ms,
        ),
        ("tuning.retransmit_ms", a.retransmit_ms != b.retransmit_ms),
        (
            "tuning.session_queue_bytes",
            a.session_queue_bytes != b.session_queue_bytes,
        ),
    ];
    // A key added to the configuration must be named here: this fails to
    // compile until it is (every field is taken apart).
    let DaemonConfig {
        node: _,
        directory: _,
        interface: _,
        data_port: _,
        socket: _,
        socket_mode: _,
        log_level: _,
        tuning: _,
        trust: _,
    } = new;
    let chorus_config::Tuning {
        max_datagram_bytes: _,
        max_message_bytes: _,
        send_window_messages: _,
        receive_window_messages: _,
        ack_interval_ms: _,
        retransmit_ms: _,
        session_queue_bytes: _,
    } = b;
    checks
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(key, _)| key)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_proto::wire::seal::ClusterKey;
    use std::io::Write;

    fn write(path: &std::path::Path, text: &str) {
        let mut f = std::fs::File::create(path).expect("create");
        f.write_all(text.as_bytes()).expect("write");
    }

    const BASE: &str =
        "node = \"a\"\ndirectory = [\"127.0.0.1:7400\"]\ninterface = \"127.0.0.1\"\n\
                        data_port = 7401\nsocket = \"/tmp/x.sock\"\nlog_level = \"info\"\n\
                        insecure = true\n";

    fn reloader(dir: &std::path::Path) -> (Reloader, PathBuf) {
        let path = dir.join("chorusd.toml");
        write(&path, BASE);
        let running = DaemonConfig::load(&path).expect("valid");
        let mut r = Reloader::new(path.clone(), running, None);
        r.env_sets_level = false;
        (r, path)
    }

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("chorusd-reload-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    #[test]
    fn the_log_level_applies_and_restart_keys_are_named() {
        let dir = tempdir("apply");
        let (mut r, path) = reloader(&dir);
        let text = BASE
            .replace("\"info\"", "\"debug\"")
            .replace("7401", "7402")
            + "[tuning]\nretransmit_ms = 90\n";
        write(&path, &text);
        assert_eq!(
            r.reload(),
            Outcome::Loaded {
                log_level: Some("debug".into()),
                keys: None,
                need_restart: vec!["data_port", "tuning.retransmit_ms"],
            }
        );
        assert_eq!(log::max_level(), LevelFilter::Debug);
        // The same file again: the level is already applied; the restart
        // keys are still named (the daemon still runs the old values).
        let again = r.reload();
        assert!(
            matches!(again, Outcome::Loaded { log_level: None, keys: None, ref need_restart } if need_restart.len() == 2)
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_broken_or_missing_file_is_rejected_and_changes_nothing() {
        let dir = tempdir("broken");
        let (mut r, path) = reloader(&dir);
        write(&path, "node = \"a\"\nbogus_key = 1\n");
        let Outcome::Rejected(why) = r.reload() else {
            panic!("a broken file must be rejected");
        };
        assert!(why.contains("bogus_key"), "{why}");
        std::fs::remove_file(&path).expect("remove");
        assert!(matches!(r.reload(), Outcome::Rejected(_)));
        // The running configuration is what it was: the original file again
        // changes nothing.
        write(&path, BASE);
        assert_eq!(
            r.reload(),
            Outcome::Loaded {
                log_level: None,
                keys: None,
                need_restart: vec![],
            }
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Writes a key file of `byte`s at `dir/name`, mode 0600.
    fn key(dir: &std::path::Path, name: &str, byte: u8) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(name);
        let text = ClusterKey::text_of(&[byte; 32]);
        write(&p, &text);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        p
    }

    /// A reload between insecure and a key: named as taking a restart,
    /// no keys taken.
    fn takes_a_restart(r: &mut Reloader) {
        assert_eq!(
            r.reload(),
            Outcome::Loaded {
                log_level: None,
                keys: None,
                need_restart: vec!["key_file", "insecure"],
            }
        );
        assert!(r.take_keys().is_none());
    }

    fn id(byte: u8) -> KeyId {
        ClusterKey::from_bytes(&[byte; 32]).id()
    }

    #[test]
    fn going_from_insecure_to_a_key_is_named_as_taking_a_restart() {
        let dir = tempdir("keys");
        let (mut r, path) = reloader(&dir);
        let (a, b) = (key(&dir, "a.key", 1), key(&dir, "b.key", 2));
        let keyed = BASE.replace(
            "insecure = true\n",
            &format!("key_file = \"{}\"\n", a.display()),
        );
        write(&path, &keyed);
        takes_a_restart(&mut r);
        let rotating = format!("{keyed}accept_key_files = [\"{}\"]\n", b.display());
        write(&path, &rotating);
        assert!(matches!(
            r.reload(),
            Outcome::Loaded { ref need_restart, .. }
                if need_restart == &vec!["key_file", "accept_key_files", "insecure"]
        ));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_rotation_takes_the_new_keys_without_a_restart() {
        let dir = tempdir("rotate");
        let (a, b) = (key(&dir, "a.key", 1), key(&dir, "b.key", 2));
        let path = dir.join("chorusd.toml");
        let base = BASE.replace("insecure = true\n", "");
        let with = |key_file: &PathBuf, accept: &[&PathBuf]| {
            let list: Vec<String> = accept
                .iter()
                .map(|p| format!("\"{}\"", p.display()))
                .collect();
            let mut text = format!("{base}key_file = \"{}\"\n", key_file.display());
            if !list.is_empty() {
                text.push_str(&format!("accept_key_files = [{}]\n", list.join(", ")));
            }
            text
        };
        write(&path, &with(&a, &[]));
        let running = DaemonConfig::load(&path).expect("valid");
        let ring = running.trust.load(&path).expect("keys");
        let mut r = Reloader::new(path.clone(), running, ring.as_ref());
        r.env_sets_level = false;
        let loaded = |keys: Option<Vec<KeyId>>| Outcome::Loaded {
            log_level: None,
            keys,
            need_restart: vec![],
        };
        // Nothing changed: nothing to take.
        assert_eq!(r.reload(), loaded(None));
        assert!(r.take_keys().is_none());
        // Step 2: accept the new key.
        write(&path, &with(&a, &[&b]));
        assert_eq!(r.reload(), loaded(Some(vec![id(1), id(2)])));
        assert_eq!(r.take_keys().map(|k| k.ids()), Some(vec![id(1), id(2)]));
        assert!(r.take_keys().is_none(), "taken once");
        assert_eq!(r.reload(), loaded(None), "the same file again");
        // Step 3: seal with it.
        write(&path, &with(&b, &[&a]));
        assert_eq!(r.reload(), loaded(Some(vec![id(2), id(1)])));
        assert_eq!(r.take_keys().map(|k| k.ids()), Some(vec![id(2), id(1)]));
        // A key file rewritten in place (`keygen --force`) is a new key.
        let b = key(&dir, "b.key", 3);
        assert_eq!(r.reload(), loaded(Some(vec![id(3), id(1)])));
        assert_eq!(r.take_keys().map(|k| k.ids()), Some(vec![id(3), id(1)]));
        // A key file opened up to others rejects the whole file: nothing
        // of it is applied, the running keys stay.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&a, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
        write(&path, &with(&b, &[&a]).replace("\"info\"", "\"debug\""));
        let Outcome::Rejected(why) = r.reload() else {
            panic!("a key file others may read must be refused");
        };
        assert!(why.contains("a.key"), "{why}");
        assert!(r.take_keys().is_none());
        // Step 4: retire the old key.
        write(&path, &with(&b, &[]));
        assert_eq!(r.reload(), loaded(Some(vec![id(3)])));
        assert_eq!(r.take_keys().map(|k| k.ids()), Some(vec![id(3)]));
        // From a key to insecure takes a restart, and takes no keys.
        write(&path, BASE);
        takes_a_restart(&mut r);
        let _ = std::fs::remove_dir_all(dir);
    }
}
