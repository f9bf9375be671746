//! The cluster key in both files: `key_file`, `accept_key_files` and
//! `insecure`, how they combine, and every way a key file can be refused
//! (each at the line and key that named it, so `--check` can say so).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use chorus_config::{describe_keys, ConfigError, DaemonConfig, DirectoryConfig, Trust};
use chorus_proto::wire::seal::ClusterKey;
use common::{assert_points_at, key_file, temp_dir, write_mode};

/// Both files take the trust keys alike: every case runs against each.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Daemon,
    Directory,
}

const KINDS: [Kind; 2] = [Kind::Daemon, Kind::Directory];

impl Kind {
    /// A valid file of this kind before the trust keys (two lines, so the
    /// keys below start on line 3).
    fn base(self) -> &'static str {
        match self {
            Kind::Daemon => "node = \"a\"\ndata_port = 7401\n",
            Kind::Directory => "listen = \"127.0.0.1:7400\"\nlease_ms = 1500\n",
        }
    }

    /// Parses `base() + keys` as the file `dir/<name>.toml`; the trust.
    fn parse(self, dir: &Path, keys: &str) -> Result<Trust, ConfigError> {
        let text = format!("{}{keys}", self.base());
        match self {
            Kind::Daemon => DaemonConfig::parse(&text, &dir.join("chorusd.toml")).map(|c| c.trust),
            Kind::Directory => {
                DirectoryConfig::parse(&text, &dir.join("directory.toml")).map(|c| c.trust)
            }
        }
    }
}

fn keyed(key_file: PathBuf, accept_key_files: Vec<PathBuf>) -> Trust {
    Trust::KeyFiles {
        key_file,
        accept_key_files,
    }
}

#[test]
fn a_file_with_neither_key_nor_insecure_is_told_how_to_make_a_key() {
    let dir = temp_dir("keys_neither");
    for kind in KINDS {
        let err = kind.parse(&dir, "").unwrap_err();
        assert_eq!(err.line, None, "{kind:?}: {err}");
        assert_eq!(err.key.as_deref(), Some("key_file"), "{kind:?}: {err}");
        for words in [
            "no cluster key",
            "chorusctl keygen /etc/chorus/cluster.key",
            "key_file = \"/etc/chorus/cluster.key\"",
            "insecure = true",
            "read and forge",
        ] {
            assert!(
                err.message.contains(words),
                "{kind:?} lacks {words:?}: {err}"
            );
        }
        // insecure = false says the same, at its line.
        let err = kind.parse(&dir, "insecure = false\n").unwrap_err();
        assert_points_at(&err, 3, "insecure", "chorusctl keygen");
    }
}

#[test]
fn insecure_alone_runs_without_a_key() {
    let dir = temp_dir("keys_insecure");
    for kind in KINDS {
        assert_eq!(
            kind.parse(&dir, "insecure = true\n").unwrap(),
            Trust::Insecure
        );
        let err = kind.parse(&dir, "insecure = \"yes\"\n").unwrap_err();
        assert_eq!(err.line, Some(3), "{kind:?}: {err}");
        assert_eq!(err.key.as_deref(), Some("insecure"), "{kind:?}: {err}");
    }
}

#[test]
fn a_good_key_file_is_taken_and_loads() {
    let dir = temp_dir("keys_good");
    let key = key_file(&dir, "cluster.key", 1);
    for kind in KINDS {
        let keys = format!("key_file = \"{}\"\n", key.display());
        let trust = kind.parse(&dir, &keys).unwrap();
        assert_eq!(trust, keyed(key.clone(), vec![]), "{kind:?}");
        let ring = trust.load(Path::new("x.toml")).unwrap().unwrap();
        assert_eq!(
            ring.current().id(),
            ClusterKey::from_bytes(&[1; 32]).id(),
            "{kind:?}"
        );
        // insecure = false beside a key is merely redundant.
        let trust = kind
            .parse(&dir, &format!("{keys}insecure = false\n"))
            .unwrap();
        assert_eq!(trust, keyed(key.clone(), vec![]), "{kind:?}");
    }
}

#[test]
fn relative_key_paths_are_taken_from_the_config_files_directory() {
    let dir = temp_dir("keys_relative");
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    key_file(&dir.join("keys"), "cluster.key", 2);
    key_file(&dir, "old.key", 3);
    for kind in KINDS {
        let trust = kind
            .parse(
                &dir,
                "key_file = \"keys/cluster.key\"\naccept_key_files = [\"old.key\"]\n",
            )
            .unwrap();
        assert_eq!(
            trust,
            keyed(dir.join("keys/cluster.key"), vec![dir.join("old.key")]),
            "{kind:?}"
        );
    }
}

#[test]
fn accepted_keys_open_beside_the_current_one() {
    let dir = temp_dir("keys_accept");
    let new = key_file(&dir, "new.key", 4);
    let old = key_file(&dir, "old.key", 5);
    let older = key_file(&dir, "older.key", 6);
    for kind in KINDS {
        let keys = format!(
            "key_file = \"{}\"\naccept_key_files = [\n  \"{}\",\n  \"{}\",\n]\n",
            new.display(),
            old.display(),
            older.display()
        );
        let trust = kind.parse(&dir, &keys).unwrap();
        assert_eq!(
            trust,
            keyed(new.clone(), vec![old.clone(), older.clone()]),
            "{kind:?}"
        );
        let ring = trust.load(Path::new("x.toml")).unwrap().unwrap();
        assert_eq!(ring.current().id(), ClusterKey::from_bytes(&[4; 32]).id());
        for b in [5, 6] {
            let id = ClusterKey::from_bytes(&[b; 32]).id();
            assert!(ring.get(id).is_some(), "{kind:?}: key {b} not accepted");
        }
        let id = |b: u8| ClusterKey::from_bytes(&[b; 32]).id();
        assert_eq!(
            describe_keys(&ring),
            format!(
                "sealing with cluster key {}, also accepting {}, {}",
                id(4),
                id(5),
                id(6)
            )
        );
        // An empty list is no rotation.
        let keys = format!("key_file = \"{}\"\naccept_key_files = []\n", new.display());
        assert_eq!(kind.parse(&dir, &keys).unwrap(), keyed(new.clone(), vec![]));
    }
}

#[test]
fn key_file_and_insecure_together_are_refused() {
    let dir = temp_dir("keys_both");
    let key = key_file(&dir, "cluster.key", 1);
    for kind in KINDS {
        let keys = format!("key_file = \"{}\"\ninsecure = true\n", key.display());
        let err = kind.parse(&dir, &keys).unwrap_err();
        assert_points_at(&err, 4, "insecure", "choose one");
    }
}

#[test]
fn accept_key_files_without_key_file_is_refused() {
    let dir = temp_dir("keys_accept_alone");
    let key = key_file(&dir, "old.key", 1);
    for kind in KINDS {
        let keys = format!("accept_key_files = [\"{}\"]\n", key.display());
        let err = kind.parse(&dir, &keys).unwrap_err();
        assert_points_at(&err, 3, "accept_key_files", "set key_file too");
        let err = kind
            .parse(&dir, &format!("{keys}insecure = true\n"))
            .unwrap_err();
        assert_points_at(&err, 3, "accept_key_files", "without key_file");
    }
}

#[test]
fn a_key_listed_twice_is_refused_at_the_second() {
    let dir = temp_dir("keys_twice");
    let key = key_file(&dir, "cluster.key", 1);
    let old = key_file(&dir, "old.key", 2);
    for kind in KINDS {
        let keys = format!(
            "key_file = \"{k}\"\naccept_key_files = [\n\"{o}\",\n\"{o}\",\n]\n",
            k = key.display(),
            o = old.display()
        );
        let err = kind.parse(&dir, &keys).unwrap_err();
        assert_points_at(&err, 6, "accept_key_files", "listed twice");
        let keys = format!(
            "key_file = \"{k}\"\naccept_key_files = [\"{k}\"]\n",
            k = key.display()
        );
        let err = kind.parse(&dir, &keys).unwrap_err();
        assert_points_at(&err, 4, "accept_key_files", "listed twice");
    }
}

/// A key file that is refused, and words the refusal must hold.
fn bad_key_files(dir: &Path) -> Vec<(PathBuf, Vec<String>)> {
    let good = ClusterKey::text_of(&[9; 32]);
    let missing = dir.join("missing.key");
    let shown = missing.display().to_string();
    let mut cases = vec![
        (
            missing,
            vec![
                "cannot read key file".to_owned(),
                format!("chorusctl keygen {shown}"),
            ],
        ),
        (
            write_mode(dir, "empty.key", "", 0o600),
            vec!["is empty".to_owned()],
        ),
        (
            write_mode(dir, "short.key", &good[..good.len() - 3], 0o600),
            vec!["62 hex digits long".to_owned(), "a key is 64".to_owned()],
        ),
        (
            write_mode(dir, "nothex.key", &good.replace("09", "zz"), 0o600),
            vec!["not a hex digit".to_owned()],
        ),
        (
            write_mode(dir, "noprefix.key", &"09".repeat(32), 0o600),
            vec!["does not start with `chorus-cluster-key-v1:`".to_owned()],
        ),
        (
            write_mode(dir, "zero.key", &ClusterKey::text_of(&[0; 32]), 0o600),
            vec!["all zero".to_owned()],
        ),
        (
            write_mode(dir, "long.key", &good.repeat(20), 0o600),
            vec![
                "1740 bytes long".to_owned(),
                "one line of 87 bytes".to_owned(),
            ],
        ),
    ];
    for (name, mode) in [
        ("world.key", 0o644),
        ("group.key", 0o640),
        ("other.key", 0o604),
    ] {
        let path = write_mode(dir, name, &good, mode);
        cases.push((
            path.clone(),
            vec![
                format!("has mode {mode:03o}"),
                format!("chmod 600 {}", path.display()),
            ],
        ));
    }
    let sub = dir.join("a-directory.key");
    std::fs::create_dir_all(&sub).unwrap();
    cases.push((sub, vec!["not a regular file".to_owned()]));
    cases
}

#[test]
fn a_bad_key_file_is_refused_where_it_is_named() {
    let dir = temp_dir("keys_bad");
    let good = key_file(&dir, "cluster.key", 1);
    for kind in KINDS {
        for (path, words) in bad_key_files(&dir) {
            let keys = format!("key_file = \"{}\"\n", path.display());
            let err = kind.parse(&dir, &keys).unwrap_err();
            for w in &words {
                assert_points_at(&err, 3, "key_file", w);
            }
            // As an accepted key, on the line of its entry.
            let keys = format!(
                "key_file = \"{}\"\naccept_key_files = [\n\"{}\",\n]\n",
                good.display(),
                path.display()
            );
            let err = kind.parse(&dir, &keys).unwrap_err();
            for w in &words {
                assert_points_at(&err, 5, "accept_key_files", w);
            }
        }
        let err = kind.parse(&dir, "key_file = \"\"\n").unwrap_err();
        assert_points_at(&err, 3, "key_file", "path is empty");
    }
}

#[test]
fn a_key_file_that_goes_bad_after_the_check_fails_the_load() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("keys_later");
    let key = key_file(&dir, "cluster.key", 1);
    let trust = Kind::Daemon
        .parse(&dir, &format!("key_file = \"{}\"\n", key.display()))
        .unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = trust.load(&dir.join("chorusd.toml")).unwrap_err();
    assert_eq!(err.key.as_deref(), Some("key_file"), "{err}");
    assert!(err.message.contains("mode 644"), "{err}");
}

#[test]
fn the_secret_never_shows_in_debug() {
    let shown = format!("{:?}", Trust::Ephemeral([0xab; 32]));
    assert!(!shown.contains("ab"), "{shown}");
    assert!(!shown.contains("171"), "{shown}");
}
