//! Where in the file a problem is.
//!
//! Values that validation looks at are deserialized as [`toml::Spanned`], so
//! their byte offsets come straight from the parser and [`Source::line_of`]
//! only has to turn an offset into a line. Errors raised by the parser and by
//! serde itself (syntax, wrong type, unknown key) carry a span but not always
//! the key, so [`Source::toml_error`] recovers the key from the text: the key
//! named in the message, or the `key =` on the error's line, dotted with the
//! nearest table header above it. That scan is deliberately simple; it is
//! correct for ordinary files (one key per line, headers on their own line).

use std::ops::Range;
use std::path::Path;

use crate::ConfigError;

/// The text of one configuration file and its name, for error messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source<'a> {
    pub(crate) text: &'a str,
    pub(crate) file: &'a Path,
}

impl<'a> Source<'a> {
    pub(crate) fn new(text: &'a str, file: &'a Path) -> Self {
        Source { text, file }
    }

    /// The 1-based line holding byte `offset` (clamped to the end of the text).
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        let before = self.text.as_bytes().get(..end).unwrap_or_default();
        1 + before.iter().filter(|&&b| b == b'\n').count()
    }

    /// An error about the value at `span`, under the (already dotted) `key`.
    pub(crate) fn error(
        &self,
        span: Range<usize>,
        key: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::new(
            self.file,
            Some(self.line_of(span.start)),
            Some(key),
            message,
        )
    }

    /// Turn a parse or deserialization error into one that names line and key.
    pub(crate) fn toml_error(&self, err: &toml::de::Error) -> ConfigError {
        // Some parser messages span lines ("invalid string\nexpected ..."):
        // keep the error on one line, as `--check` prints it.
        let message = err
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        let Some(span) = err.span() else {
            return ConfigError::new(self.file, None, None, message);
        };
        let line = self.line_of(span.start);
        let key = self.key_for(line, key_named_in(&message));
        ConfigError::new(self.file, Some(line), key.as_deref(), message)
    }

    /// The dotted key an error on `line` is about. `named` is the key the
    /// message names, if any; otherwise it is the key assigned on `line` or,
    /// inside a multi-line array, on the nearest key line above.
    fn key_for(&self, line: usize, named: Option<String>) -> Option<String> {
        if let Some(header) = table_header(self.line_text(line)) {
            // The error is about a table: `[group.x]` for unknown field `x`,
            // or `[[group]]` for missing field `name`.
            return Some(match named {
                Some(k) if !header.ends_with(&format!(".{k}")) && header != k => {
                    format!("{header}.{k}")
                }
                _ => header,
            });
        }
        let key = named.or_else(|| {
            let above: Vec<&str> = self.text.lines().take(line).collect();
            above
                .into_iter()
                .rev()
                .map_while(|text| table_header(text).is_none().then(|| key_assigned(text)))
                .flatten()
                .next()
        })?;
        Some(match self.table_at(line) {
            Some(table) => format!("{table}.{key}"),
            None => key,
        })
    }

    /// The text of 1-based line `line`, without its newline.
    fn line_text(&self, line: usize) -> &'a str {
        self.text.lines().nth(line.saturating_sub(1)).unwrap_or("")
    }

    /// The name of the table (`[x]` or `[[x]]`) that `line` belongs to, if any.
    fn table_at(&self, line: usize) -> Option<String> {
        self.text.lines().take(line).filter_map(table_header).last()
    }
}

/// The key assigned on a `key = value` line, unquoted.
fn key_assigned(line: &str) -> Option<String> {
    let text = line.trim_start();
    if text.starts_with('#') {
        return None;
    }
    let (key, _) = text.split_once('=')?;
    let key: Vec<&str> = key
        .split('.')
        .map(|part| part.trim().trim_matches(|c| c == '"' || c == '\''))
        .collect();
    let plain = key.iter().all(|p| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    });
    plain.then(|| key.join("."))
}

/// `Some("group")` for a `[[group]]` line, `Some("dynamic")` for `[dynamic]`.
fn table_header(line: &str) -> Option<String> {
    let inner = line.trim_start().strip_prefix('[')?;
    let inner = inner.strip_prefix('[').unwrap_or(inner);
    let (name, _) = inner.split_once(']')?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// The key serde names in messages such as ``unknown field `foo`, expected ...``.
fn key_named_in(message: &str) -> Option<String> {
    const NAMING: [&str; 4] = [
        "unknown field `",
        "missing field `",
        "duplicate field `",
        "duplicate key `",
    ];
    NAMING.iter().find_map(|prefix| {
        let (_, rest) = message.split_once(prefix)?;
        let (key, _) = rest.split_once('`')?;
        Some(key.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str =
        "a = 1\n\n[[group]]\nname = \"x\"\n\"quoted\" = 2\n[dynamic] # c\nport = 3\n";

    fn src() -> Source<'static> {
        Source::new(TEXT, Path::new("t.toml"))
    }

    #[test]
    fn offsets_map_to_lines() {
        let s = src();
        assert_eq!(s.line_of(0), 1);
        assert_eq!(s.line_of(5), 1, "the newline belongs to its line");
        assert_eq!(s.line_of(6), 2);
        assert_eq!(s.line_of(TEXT.find("name").unwrap_or(0)), 4);
        assert_eq!(s.line_of(usize::MAX), 8, "clamped past the end");
    }

    #[test]
    fn keys_and_tables_are_found_on_ordinary_lines() {
        let s = src();
        assert_eq!(key_assigned(s.line_text(1)).as_deref(), Some("a"));
        assert_eq!(key_assigned(s.line_text(2)), None);
        assert_eq!(key_assigned(s.line_text(3)), None);
        assert_eq!(key_assigned(s.line_text(5)).as_deref(), Some("quoted"));
        assert_eq!(key_assigned("  \"x\",  # = not a key"), None);
        assert_eq!(s.table_at(1), None);
        assert_eq!(s.table_at(3).as_deref(), Some("group"));
        assert_eq!(s.table_at(5).as_deref(), Some("group"));
        assert_eq!(s.table_at(7).as_deref(), Some("dynamic"));
    }

    #[test]
    fn serde_messages_name_their_key() {
        assert_eq!(
            key_named_in("unknown field `lese_ms`, expected one of `listen`").as_deref(),
            Some("lese_ms")
        );
        assert_eq!(
            key_named_in("missing field `name`").as_deref(),
            Some("name")
        );
        assert_eq!(key_named_in("invalid type: string"), None);
    }
}
