//! One test's private world: a temporary directory, its processes, a watchdog.
//!
//! When a test passes its directory is removed. When it panics the directory
//! is kept and the tail of every log in it is printed, so the failure can be
//! read from the test output alone. The watchdog kills the test's processes
//! if the test overruns its time limit; every wait in the harness then fails
//! quickly, and the test panics by itself.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{HarnessError, Result};
use crate::process::{tail_file, ChildGuard, Pipes, Registry, Spawn};

/// How many log lines to print per file when a test fails.
const FAILURE_TAIL_LINES: usize = 40;

/// If the test is still running this long after the watchdog killed its
/// processes, the watchdog ends the whole test process.
const WATCHDOG_GRACE: Duration = Duration::from_secs(30);

/// The per-test environment.
#[derive(Debug)]
pub struct TestEnv {
    name: String,
    dir: PathBuf,
    registry: Arc<Registry>,
    /// Keep the directory when dropped even though nothing panicked.
    keep: AtomicBool,
    _watchdog: Watchdog,
}

impl TestEnv {
    /// Creates the test directory and starts a watchdog of `timeout`.
    pub fn new(name: &str, timeout: Duration) -> Result<TestEnv> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        // Short: Unix socket paths must stay under 108 bytes.
        let short: String = name.chars().take(24).collect();
        let dir = std::env::temp_dir().join(format!("chr-{short}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| HarnessError::io(format!("creating {}", dir.display()), e))?;
        let registry = Arc::new(Registry::default());
        let watchdog = Watchdog::start(name, timeout, Arc::clone(&registry));
        Ok(TestEnv {
            name: name.to_owned(),
            dir,
            registry,
            keep: AtomicBool::new(false),
            _watchdog: watchdog,
        })
    }

    /// The test's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The test directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A path inside the test directory.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Writes a file in the test directory and returns its path.
    pub fn write_file(&self, file: &str, contents: &str) -> Result<PathBuf> {
        let path = self.path(file);
        std::fs::write(&path, contents)
            .map_err(|e| HarnessError::io(format!("writing {}", path.display()), e))?;
        Ok(path)
    }

    /// Spawns a child owned by this test (see [`ChildGuard::spawn`]).
    pub fn spawn(&self, spec: Spawn) -> Result<(ChildGuard, Pipes)> {
        ChildGuard::spawn(&self.dir, &self.registry, spec)
    }

    /// Spawns a plain command with no pipes.
    pub fn spawn_simple(&self, label: &str, command: Command) -> Result<ChildGuard> {
        Ok(self.spawn(Spawn::new(label, command))?.0)
    }

    /// Keeps the directory when this environment is dropped, as a panic
    /// would: for a program (the bench) that reports a failure without
    /// panicking.
    pub fn keep_files(&self) {
        self.keep.store(true, Ordering::Relaxed);
    }

    /// SIGKILLs every process of this environment now (e.g. when the
    /// program is interrupted); their guards still reap them when dropped.
    pub fn kill_all(&self) {
        self.registry.kill_all();
    }

    /// Prints the directory and the tail of every `*.log` / `*.out` in it.
    pub fn dump_logs(&self) {
        eprintln!(
            "==== chorus-tests: {} kept its files in {}",
            self.name,
            self.dir.display()
        );
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            if ext == "log" || ext == "out" {
                eprintln!("---- tail of {}", path.display());
                eprintln!("{}", tail_file(&path, FAILURE_TAIL_LINES));
            }
        }
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        // Children dropped before us are already dead; kill any stragglers so
        // that the logs are complete and nothing outlives the test.
        self.registry.kill_all();
        let keep = self.keep.load(Ordering::Relaxed);
        if keep || std::thread::panicking() || std::env::var_os("CHORUS_TESTS_KEEP").is_some() {
            self.dump_logs();
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Kills a test's processes when the test runs too long.
#[derive(Debug)]
struct Watchdog {
    _cancel: Sender<()>,
}

impl Watchdog {
    fn start(name: &str, timeout: Duration, registry: Arc<Registry>) -> Watchdog {
        let (cancel, cancelled) = mpsc::channel::<()>();
        let name = name.to_owned();
        std::thread::spawn(move || {
            // Dropping the sender (the test ended) disconnects the channel.
            if cancelled.recv_timeout(timeout) != Err(RecvTimeoutError::Timeout) {
                return;
            }
            eprintln!("chorus-tests: watchdog: {name} exceeded {timeout:?}; killing its processes");
            registry.kill_all();
            if cancelled.recv_timeout(WATCHDOG_GRACE) == Err(RecvTimeoutError::Timeout) {
                eprintln!("chorus-tests: watchdog: {name} still running; ending the test process");
                std::process::exit(124);
            }
        });
        Watchdog { _cancel: cancel }
    }
}
