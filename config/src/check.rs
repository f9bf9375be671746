//! Checks shared by both files: each returns the value to use or a message
//! saying what is wrong; the caller attaches file, line and key.

use std::fmt::Display;
use std::net::SocketAddr;

use serde::Deserialize;
use toml::Spanned;

use crate::source::Source;
use crate::ConfigError;

/// Accepted values of `log_level`, from least to most verbose.
pub(crate) const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// Longest group, cluster or node name, in bytes: names travel in `str8`
/// fields and are shown in one-line JSON, so they are kept short.
pub(crate) const NAME_BYTES_MAX: usize = 64;

/// Largest `max_message_bytes`, in `chorusd.toml` and per group in
/// `directory.toml`: 16 MiB, what one application frame can carry.
pub(crate) const MESSAGE_BYTES_MAX: usize = 16 << 20;

/// Longest Unix socket path: `sun_path` is 108 bytes including the final NUL.
pub(crate) const SOCKET_PATH_BYTES_MAX: usize = 107;

/// Use the value of an optional key after `check`, or `default` when it is absent.
pub(crate) fn optional<T, U>(
    src: &Source<'_>,
    key: &str,
    value: Option<Spanned<T>>,
    default: U,
    check: impl FnOnce(T) -> Result<U, String>,
) -> Result<U, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => required(src, key, v, check),
    }
}

/// Use the value of a key after `check`; a failed check points at the value's line.
pub(crate) fn required<T, U>(
    src: &Source<'_>,
    key: &str,
    value: Spanned<T>,
    check: impl FnOnce(T) -> Result<U, String>,
) -> Result<U, ConfigError> {
    let span = value.span();
    check(value.into_inner()).map_err(|msg| src.error(span, key, msg))
}

/// A number key with a lower bound and, if `max` is given, an upper one.
pub(crate) fn bounded<T>(
    src: &Source<'_>,
    key: &str,
    value: Option<Spanned<T>>,
    default: T,
    min: T,
    max: Option<T>,
) -> Result<T, ConfigError>
where
    T: PartialOrd + Display + Copy + for<'de> Deserialize<'de>,
{
    optional(src, key, value, default, |v| match max {
        Some(max) if v < min || v > max => Err(format!("{v} is outside {min}..={max}")),
        None if v < min => Err(format!("{v} is too small; the minimum is {min}")),
        _ => Ok(v),
    })
}

/// `log_level`: one of [`LOG_LEVELS`].
pub(crate) fn log_level(s: String) -> Result<String, String> {
    if LOG_LEVELS.contains(&s.as_str()) {
        Ok(s)
    } else {
        Err(format!(
            "`{s}` is not a log level; use one of {}",
            LOG_LEVELS.join(", ")
        ))
    }
}

/// Group and cluster names: 1..=64 bytes of `[A-Za-z0-9._-]`, so they are
/// safe in file names, log lines and command lines without quoting.
pub(crate) fn plain_name(s: &str) -> Result<(), String> {
    length(s)?;
    match s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        Some(c) => Err(format!(
            "`{s}` contains {c:?}; names may use only A-Z, a-z, 0-9, '.', '_' and '-'"
        )),
        None => Ok(()),
    }
}

/// Node names: 1..=64 bytes, no ':' (members are shown as `NODE:NAME`) and no
/// whitespace or control characters.
pub(crate) fn node_name(s: &str) -> Result<(), String> {
    length(s)?;
    match s
        .chars()
        .find(|c| *c == ':' || c.is_whitespace() || c.is_control())
    {
        Some(c) => Err(format!(
            "`{s}` contains {c:?}; node names may not contain ':' or whitespace"
        )),
        None => Ok(()),
    }
}

/// Names of Unix users and groups in allow lists: non-empty, no whitespace.
pub(crate) fn account_names(names: Vec<String>) -> Result<Vec<String>, String> {
    match names
        .iter()
        .find(|n| n.is_empty() || n.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        Some(bad) => Err(format!("`{bad}` is not a user or group name")),
        None => Ok(names),
    }
}

fn length(s: &str) -> Result<(), String> {
    if s.is_empty() {
        Err("must not be empty".to_owned())
    } else if s.len() > NAME_BYTES_MAX {
        Err(format!(
            "`{s}` is {} bytes long; the limit is {NAME_BYTES_MAX}",
            s.len()
        ))
    } else {
        Ok(())
    }
}

/// `HOST:PORT` with a literal IP address and a non-zero port.
pub(crate) fn socket_addr(s: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = s.trim().parse().map_err(|_| {
        format!("`{s}` is not an IP address and port, e.g. \"10.0.0.1:7400\" or \"[::1]:7400\"")
    })?;
    if addr.port() == 0 {
        return Err(format!("`{s}`: the port must not be 0"));
    }
    Ok(addr)
}

/// A port number other than 0.
pub(crate) fn port(p: u16) -> Result<u16, String> {
    if p == 0 {
        Err("the port must not be 0".to_owned())
    } else {
        Ok(p)
    }
}

/// `socket_mode`: an octal string such as `"0660"` (a leading `0o` is also
/// accepted), at most `0777`.
pub(crate) fn octal_mode(value: toml::Value) -> Result<u32, String> {
    let text = match value {
        toml::Value::String(s) => s,
        toml::Value::Integer(_) => {
            return Err("write the mode as an octal string, e.g. socket_mode = \"0660\"".into())
        }
        other => {
            return Err(format!(
                "expected an octal string, found {}",
                other.type_str()
            ))
        }
    };
    let digits = text.strip_prefix("0o").unwrap_or(&text);
    if digits.is_empty() || !digits.chars().all(|c| ('0'..='7').contains(&c)) {
        return Err(format!("`{text}` is not an octal mode such as \"0660\""));
    }
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o777 => Ok(mode),
        _ => Err(format!(
            "`{text}` is larger than 0777; only permission bits may be set"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_modes() {
        let s = |t: &str| octal_mode(toml::Value::String(t.to_owned()));
        assert_eq!(s("0660"), Ok(0o660));
        assert_eq!(s("660"), Ok(0o660));
        assert_eq!(s("0o600"), Ok(0o600));
        assert_eq!(s("0777"), Ok(0o777));
        assert_eq!(s("0"), Ok(0));
        for bad in [
            "",
            "0o",
            "0680",
            "1777",
            "0x1ff",
            "rw-rw----",
            "-660",
            "00000000000000001000",
        ] {
            assert!(s(bad).is_err(), "{bad:?} accepted");
        }
        assert!(octal_mode(toml::Value::Integer(0o660)).is_err());
        assert!(octal_mode(toml::Value::Boolean(true)).is_err());
    }

    #[test]
    fn names() {
        assert!(plain_name("chat.v2_x-y").is_ok());
        assert!(plain_name("").is_err());
        assert!(plain_name("a b").is_err());
        assert!(plain_name("é").is_err());
        assert!(plain_name(&"a".repeat(64)).is_ok());
        assert!(plain_name(&"a".repeat(65)).is_err());
        assert!(node_name("host-a.example").is_ok());
        assert!(node_name("host:a").is_err());
        assert!(node_name("host a").is_err());
        assert!(node_name("host\ta").is_err());
        assert!(node_name("").is_err());
    }

    #[test]
    fn socket_addrs_need_a_port() {
        assert!(socket_addr("10.0.0.1:7400").is_ok());
        assert!(socket_addr("[::1]:7400").is_ok());
        assert!(socket_addr("10.0.0.1").is_err());
        assert!(socket_addr("10.0.0.1:0").is_err());
        assert!(socket_addr("dir.example:7400").is_err());
    }
}
