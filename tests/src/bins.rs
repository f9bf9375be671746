//! Finding (and freshly building) the binaries under test.
//!
//! Integration tests cannot depend on another package's binaries, so the
//! harness runs `cargo build --bins` for them once per test process, with the
//! same profile as the test itself: a stale `chorusd` from an earlier build
//! must never be what a test exercises.
//!
//! A program shipped in this crate (`chorus-bench`) runs where no cargo may
//! be: it calls [`use_prebuilt`] first, which takes the binaries already
//! built next to it (or in `$CHORUS_BIN_DIR`) instead.

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

/// Environment variable naming the directory that holds prebuilt
/// `chorusd` and `chorus-directory` for [`use_prebuilt`].
pub const BIN_DIR_ENV: &str = "CHORUS_BIN_DIR";

/// The binaries of this process: built by [`bins`] or found by
/// [`use_prebuilt`], whichever ran first.
static BINS: OnceLock<std::result::Result<Bins, String>> = OnceLock::new();

/// Builds the binaries (once per process) and returns their paths.
///
/// Panics with the build output if the build fails: no test can go on.
pub fn bins() -> &'static Bins {
    let built = BINS.get_or_init(|| build().map_err(|e| e.to_string()));
    match built {
        Ok(bins) => bins,
        Err(message) => panic!("{message}"),
    }
}

/// Makes [`bins`] use binaries already built instead of building them:
/// those in `$CHORUS_BIN_DIR` when set, else those next to the running
/// executable (`target/<profile>/`). Fails, saying how to build them, if
/// `chorusd` or `chorus-directory` is not there. Call it before anything
/// starts a process; once [`bins`] has run, its answer stays.
pub fn use_prebuilt() -> Result<&'static Bins> {
    let dir = match std::env::var_os(BIN_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => profile_dir()?,
    };
    let found = locate(&dir)?;
    match BINS.get_or_init(|| Ok(found)) {
        Ok(bins) => Ok(bins),
        Err(message) => Err(HarnessError::Build(message.clone())),
    }
}

/// The binaries in `dir`; `chorusctl` need not be there.
fn locate(dir: &Path) -> Result<Bins> {
    let bins = Bins {
        directory: dir.join("chorus-directory"),
        chorusd: dir.join("chorusd"),
        chorusctl: dir.join("chorusctl"),
    };
    let missing: Vec<String> = [&bins.chorusd, &bins.directory]
        .into_iter()
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    if missing.is_empty() {
        return Ok(bins);
    }
    Err(HarnessError::Missing(format!(
        "{} not found: build the workspace first (`cargo build --release --workspace`, \
         then run ./target/release/chorus-bench), or set {BIN_DIR_ENV} to the directory \
         that holds chorusd and chorus-directory",
        missing.join(" and ")
    )))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binaries_are_named_with_how_to_build_them() {
        let empty = std::env::temp_dir().join(format!("chr-bins-empty-{}", std::process::id()));
        std::fs::create_dir_all(&empty).unwrap();
        let err = locate(&empty).unwrap_err().to_string();
        let _ = std::fs::remove_dir(&empty);
        assert!(err.contains("chorusd and "), "{err}");
        assert!(err.contains("chorus-directory not found"), "{err}");
        assert!(err.contains("cargo build --release --workspace"), "{err}");
        assert!(err.contains(BIN_DIR_ENV), "{err}");
    }
}
