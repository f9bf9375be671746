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
