//! Finding (and freshly building) the binaries under test.
//!
//! Integration tests cannot depend on another package's binaries, so the
//! harness runs `cargo build --bins` for them once per test process, with the
//! same profile as the test itself: a stale `chorusd` from an earlier build
//! must never be what a test exercises.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::error::{HarnessError, Result};

/// Paths of the binaries under test.
#[derive(Debug, Clone)]
pub struct Bins {
    /// `chorus-directory`.
    pub directory: PathBuf,
    /// `chorusd`.
    pub chorusd: PathBuf,
    /// `chorusctl`.
    pub chorusctl: PathBuf,
}

/// Builds the binaries (once per process) and returns their paths.
///
/// Panics with the build output if the build fails: no test can go on.
pub fn bins() -> &'static Bins {
    static BINS: OnceLock<std::result::Result<Bins, String>> = OnceLock::new();
    let built = BINS.get_or_init(|| build().map_err(|e| e.to_string()));
    match built {
        Ok(bins) => bins,
        Err(message) => panic!("{message}"),
    }
}

/// The directory holding the test's own profile outputs (`target/<profile>`).
///
/// Test executables run from `target/<profile>/deps/`.
pub fn profile_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| HarnessError::io("current_exe", e))?;
    let deps = exe
        .parent()
        .ok_or_else(|| HarnessError::Build(format!("no parent dir for {}", exe.display())))?;
    let profile = if deps.ends_with("deps") {
        deps.parent().unwrap_or(deps)
    } else {
        deps
    };
    Ok(profile.to_path_buf())
}

/// Whether the test itself was built with the release profile.
fn is_release(profile: &Path) -> bool {
    profile.components().any(|c| c.as_os_str() == "release")
}

/// The cargo that runs us (cargo sets `CARGO` for the tests it runs).
fn cargo_program() -> String {
    std::env::var("CARGO")
        .ok()
        .or_else(|| option_env!("CARGO").map(str::to_owned))
        .unwrap_or_else(|| "cargo".to_owned())
}

fn build() -> Result<Bins> {
    let profile = profile_dir()?;
    let mut cmd = Command::new(cargo_program());
    cmd.args([
        "build",
        "--bins",
        "-p",
        "chorusd",
        "-p",
        "chorus-directory",
        "-p",
        "chorus",
    ]);
    if is_release(&profile) {
        cmd.arg("--release");
    }
    // Build in the workspace this crate belongs to, whatever the test's cwd.
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    eprintln!("chorus-tests: building binaries: {cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| HarnessError::io(format!("running {cmd:?}"), e))?;
    if !out.status.success() {
        return Err(HarnessError::Build(format!(
            "{cmd:?} failed with {}:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let bins = Bins {
        directory: profile.join("chorus-directory"),
        chorusd: profile.join("chorusd"),
        chorusctl: profile.join("chorusctl"),
    };
    for path in [&bins.directory, &bins.chorusd, &bins.chorusctl] {
        if !path.is_file() {
            return Err(HarnessError::Build(format!(
                "{} missing after build (is CARGO_TARGET_DIR or --target set differently?)",
                path.display()
            )));
        }
    }
    Ok(bins)
}

/// The workspace root (for `config/examples/...`).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}
