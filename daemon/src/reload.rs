//! SIGHUP: re-read `chorusd.toml`, apply what can change while running, and
//! name what cannot.
//!
//! Only `log_level` applies at once (unless `RUST_LOG` is set, which wins
//! as at start). Every other key shapes sockets, the node's identity or
//! the protocol's bounds, all fixed for the daemon's life: a change to one
//! is logged as a warning naming the keys, and the daemon keeps running
//! with the old values until it is restarted. A file that does not load
//! (unreadable, invalid) is logged and ignored. SIGHUP never stops chorusd
//! and never touches its groups.

use chorus_config::{DaemonConfig, Trust};
use log::LevelFilter;
use std::path::PathBuf;

/// The running configuration and where it came from.
#[derive(Debug)]
pub struct Reloader {
    path: PathBuf,
    running: DaemonConfig,
    /// `RUST_LOG` was set at start: it, not `log_level`, sets the level.
    env_sets_level: bool,
}

/// What a reload found.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The file did not load; the running configuration stays.
    Rejected(String),
    /// The file loaded: the new log level if it was applied, and the keys
    /// that changed but take a restart.
    Loaded {
        log_level: Option<String>,
        need_restart: Vec<&'static str>,
    },
}

impl Reloader {
    pub fn new(path: PathBuf, running: DaemonConfig) -> Reloader {
        Reloader {
            path,
            running,
            env_sets_level: std::env::var_os("RUST_LOG").is_some(),
        }
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
                need_restart,
            } => {
                if let Some(level) = log_level {
                    log::info!("SIGHUP: log_level is now {level}");
                }
                if !need_restart.is_empty() {
                    log::warn!(
                        "SIGHUP: {} changed in {}: applied only when chorusd restarts (it runs \
                         on with the old values)",
                        need_restart.join(", "),
                        self.path.display()
                    );
                }
                if log_level.is_none() && need_restart.is_empty() {
                    log::info!("SIGHUP: nothing changed that applies while running");
                }
            }
        }
        outcome
    }

    fn apply(&mut self, new: DaemonConfig) -> Outcome {
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
    // The keys are read once, at start: a rotation restarts each process
    // in turn (systemd/INSTALL.md), so a changed key is named here too.
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
        ("key_file", key_file(&old.trust) != key_file(&new.trust)),
        (
            "accept_key_files",
            accepted(&old.trust) != accepted(&new.trust),
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
        let mut r = Reloader::new(path.clone(), running);
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
                need_restart: vec!["data_port", "tuning.retransmit_ms"],
            }
        );
        assert_eq!(log::max_level(), LevelFilter::Debug);
        // The same file again: the level is already applied; the restart
        // keys are still named (the daemon still runs the old values).
        let again = r.reload();
        assert!(
            matches!(again, Outcome::Loaded { log_level: None, ref need_restart } if need_restart.len() == 2)
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
                need_restart: vec![],
            }
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_changed_key_is_named_as_taking_a_restart() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempdir("keys");
        let (mut r, path) = reloader(&dir);
        let key = |name: &str, byte: u8| {
            let p = dir.join(name);
            let text = chorus_proto::wire::seal::ClusterKey::text_of(&[byte; 32]);
            write(&p, &text);
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            p
        };
        let (a, b) = (key("a.key", 1), key("b.key", 2));
        let keyed = BASE.replace(
            "insecure = true\n",
            &format!("key_file = \"{}\"\n", a.display()),
        );
        write(&path, &keyed);
        assert_eq!(
            r.reload(),
            Outcome::Loaded {
                log_level: None,
                need_restart: vec!["key_file", "insecure"],
            }
        );
        let rotating = format!("{keyed}accept_key_files = [\"{}\"]\n", b.display());
        write(&path, &rotating);
        assert!(matches!(
            r.reload(),
            Outcome::Loaded { ref need_restart, .. }
                if need_restart == &vec!["key_file", "accept_key_files", "insecure"]
        ));
        let _ = std::fs::remove_dir_all(dir);
    }
}
