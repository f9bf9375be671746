//! The one error type of this crate.
//!
//! Every problem an administrator can make in a configuration file ends up as a
//! [`ConfigError`] that names the file, the line and the key, so that
//! `chorusd --check` can print something a person can act on without reading
//! code. The binaries map it to exit code [`crate::EXIT_CONFIG`] (78).

use std::fmt;
use std::path::{Path, PathBuf};

/// A configuration file that cannot be read, parsed or validated.
///
/// `line` is 1-based. `line` and `key` are `None` only when there is nothing
/// to point at: the file cannot be read, or the offending value is a default
/// that came from the environment (the node name taken from the host name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the problem is in, as given to `load`/`parse`.
    pub file: PathBuf,
    /// 1-based line of the offending key, when known.
    pub line: Option<usize>,
    /// The key, dotted with its table when it is inside one
    /// (`lease_ms`, `group.address`, `tuning.retransmit_ms`).
    pub key: Option<String>,
    /// What is wrong and, where it helps, what would be right.
    pub message: String,
}

impl ConfigError {
    /// An error at a known place.
    pub fn new(
        file: &Path,
        line: Option<usize>,
        key: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            line,
            key: key.map(str::to_owned),
            message: message.into(),
        }
    }

    /// The file could not be read at all.
    pub fn unreadable(file: &Path, err: &std::io::Error) -> Self {
        Self::new(file, None, None, format!("cannot read: {err}"))
    }
}

impl fmt::Display for ConfigError {
    /// `{file}:{line}: key `{key}`: {message}`, leaving out the parts that are unknown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_includes_only_known_parts() {
        let p = Path::new("/etc/chorus/x.toml");
        let full = ConfigError::new(p, Some(3), Some("group.port"), "must not be 0");
        assert_eq!(
            full.to_string(),
            "/etc/chorus/x.toml:3: key `group.port`: must not be 0"
        );
        let no_key = ConfigError::new(p, Some(7), None, "expected `=`");
        assert_eq!(no_key.to_string(), "/etc/chorus/x.toml:7: expected `=`");
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        assert_eq!(
            ConfigError::unreadable(p, &io).to_string(),
            "/etc/chorus/x.toml: cannot read: gone"
        );
        let no_line = ConfigError::new(p, None, Some("node"), "bad host name");
        assert_eq!(
            no_line.to_string(),
            "/etc/chorus/x.toml: key `node`: bad host name"
        );
    }
}
