//! Helpers shared by the integration tests (included with `mod common;`).
#![allow(dead_code)]

use chorus_config::ConfigError;

/// 1-based line of the first line of `text` that contains `needle`.
pub fn line_with(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in test text"))
}

/// Assert that `err` points at `line` and `key`, and that its message contains `words`.
#[track_caller]
pub fn assert_points_at(err: &ConfigError, line: usize, key: &str, words: &str) {
    assert_eq!(err.line, Some(line), "wrong line in: {err}");
    assert_eq!(err.key.as_deref(), Some(key), "wrong key in: {err}");
    assert!(
        err.message.contains(words),
        "message lacks {words:?}: {err}"
    );
    let shown = err.to_string();
    assert!(
        shown.contains(&format!(":{line}: key `{key}`: ")),
        "display lacks line and key: {shown}"
    );
}

/// `text` with `insecure = true` on a first line of its own, for the tests
/// of every other key: a file must now choose its trust, and these tests
/// are not about that choice. [`unshift`] takes the added line back out of
/// an error's position, so expected lines stay those of `text`.
pub fn insecure(text: &str) -> String {
    format!("insecure = true\n{text}")
}

/// An error from parsing [`insecure`]`(text)`, with its line as in `text`.
pub fn unshift(mut err: ConfigError) -> ConfigError {
    err.line = err.line.map(|l| l.saturating_sub(1));
    err
}

/// A directory for one test's files, removed when dropped unless the
/// test failed (its files then show what it saw).
pub struct TempDir(std::path::PathBuf);

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A fresh, empty [`TempDir`] for one test's files.
pub fn temp_dir(test: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("chorus-config-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// Writes `text` to `dir/name` with permission bits `mode` (set after
/// writing, so the umask does not change them).
pub fn write_mode(dir: &std::path::Path, name: &str, text: &str, mode: u32) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// A valid key file (every secret byte `byte`, mode 0600) at `dir/name`.
pub fn key_file(dir: &std::path::Path, name: &str, byte: u8) -> std::path::PathBuf {
    let text = chorus_proto::wire::seal::ClusterKey::text_of(&[byte; 32]);
    write_mode(dir, name, &text, 0o600)
}

/// The shipped example `name` with its `key_file` pointed at a key made in
/// `dir` (the examples name /etc/chorus/cluster.key, absent here), saved
/// as `dir/name`; its path.
pub fn example_keyed(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    let text = std::fs::read_to_string(shipped).unwrap();
    let key = key_file(dir, "cluster.key", 7);
    let line = "key_file = \"/etc/chorus/cluster.key\"";
    assert!(
        text.contains(line),
        "{name} names no /etc/chorus/cluster.key"
    );
    let text = text.replace(line, &format!("key_file = \"{}\"", key.display()));
    write_mode(dir, name, &text, 0o644)
}
