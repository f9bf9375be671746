//! Any text as directory.toml and as chorusd.toml: parsing and validation
//! return a value or an error, never panic.
#![no_main]
#![forbid(unsafe_code)]

use chorus_config::{DaemonConfig, DirectoryConfig};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = DirectoryConfig::parse(text, Path::new("fuzz/directory.toml"));
    let _ = DaemonConfig::parse(text, Path::new("fuzz/chorusd.toml"));
});
