//! Child processes that cannot outlive their test.
//!
//! Every process a test starts is a [`ChildGuard`]: dropping it sends SIGKILL
//! and reaps it, so a failing (panicking) test leaves nothing behind. Its
//! stderr goes to a log file in the test's directory. Every guard is also
//! registered in a [`Registry`] that the watchdog uses to kill the whole test's
//! processes when the test overruns its time.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use crate::error::{HarnessError, Result};

/// Locks a mutex, ignoring poisoning: the harness only keeps plain data behind
/// its locks, and a panicking test must still be able to clean up.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// All live children of one test, weakly held so that guards stay the owners.
#[derive(Debug, Default)]
pub struct Registry {
    children: Mutex<Vec<(String, Weak<Mutex<Child>>)>>,
}

impl Registry {
    fn add(&self, label: &str, child: &Arc<Mutex<Child>>) {
        let mut children = lock(&self.children);
        children.retain(|(_, weak)| weak.strong_count() > 0);
        children.push((label.to_owned(), Arc::downgrade(child)));
    }

    /// SIGKILLs every live child. `Child::kill` on an already-reaped child does
    /// nothing, so this never hits a recycled pid.
    pub fn kill_all(&self) {
        let children = lock(&self.children);
        for (label, weak) in children.iter() {
            if let Some(child) = weak.upgrade() {
                let mut child = lock(&child);
                if let Ok(None) = child.try_wait() {
                    eprintln!("chorus-tests: killing {label} (pid {})", child.id());
                    let _ = child.kill();
                }
            }
        }
    }
}

/// A running child process, killed and reaped on drop.
#[derive(Debug)]
pub struct ChildGuard {
    label: String,
    child: Arc<Mutex<Child>>,
    log: PathBuf,
}

/// Standard input/output handles taken from a spawned child.
#[derive(Debug, Default)]
pub struct Pipes {
    /// The child's stdin when spawned with [`Spawn::stdin_piped`].
    pub stdin: Option<ChildStdin>,
    /// The child's stdout when spawned with [`Spawn::stdout_piped`].
    pub stdout: Option<ChildStdout>,
}

/// How to spawn one child.
#[derive(Debug)]
pub struct Spawn {
    /// Name used in logs and file names (e.g. `chorusd-n1`).
    pub label: String,
    /// The command, fully configured except for stdio.
    pub command: Command,
    /// Pipe stdin (otherwise /dev/null).
    pub stdin_piped: bool,
    /// Pipe stdout (otherwise it goes to `<label>.out` in the test directory).
    pub stdout_piped: bool,
}

impl Spawn {
    /// A spawn description with stdin and stdout not piped.
    pub fn new(label: impl Into<String>, command: Command) -> Self {
        Spawn {
            label: label.into(),
            command,
            stdin_piped: false,
            stdout_piped: false,
        }
    }
}

impl ChildGuard {
    /// Spawns `spec` with stderr to `<dir>/<label>.log` and registers it.
    pub fn spawn(dir: &Path, registry: &Registry, spec: Spawn) -> Result<(ChildGuard, Pipes)> {
        let Spawn {
            label,
            mut command,
            stdin_piped,
            stdout_piped,
        } = spec;
        let log = dir.join(format!("{label}.log"));
        let stderr = File::create(&log)
            .map_err(|e| HarnessError::io(format!("creating {}", log.display()), e))?;
        command.stderr(stderr);
        command.stdin(if stdin_piped {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        if stdout_piped {
            command.stdout(Stdio::piped());
        } else {
            let out_path = dir.join(format!("{label}.out"));
            let out = File::create(&out_path)
                .map_err(|e| HarnessError::io(format!("creating {}", out_path.display()), e))?;
            command.stdout(out);
        }
        let mut child = command
            .spawn()
            .map_err(|e| HarnessError::io(format!("spawning {label}: {command:?}"), e))?;
        let pipes = Pipes {
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
        };
        let child = Arc::new(Mutex::new(child));
        registry.add(&label, &child);
        Ok((ChildGuard { label, child, log }, pipes))
    }

    /// The label given at spawn.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The stderr log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        lock(&self.child).id()
    }

    /// `Some(status)` if the process has ended.
    pub fn try_wait(&self) -> Result<Option<ExitStatus>> {
        lock(&self.child)
            .try_wait()
            .map_err(|e| HarnessError::io(format!("waiting for {}", self.label), e))
    }

    /// Fails with [`HarnessError::Exited`] if the process has ended.
    pub fn ensure_running(&self) -> Result<()> {
        match self.try_wait()? {
            None => Ok(()),
            Some(status) => Err(HarnessError::Exited {
                label: self.label.clone(),
                status,
                log: self.log.clone(),
            }),
        }
    }

    /// Waits for the process to end by itself, at most `timeout`.
    ///
    /// Polls `try_wait` every few milliseconds: std has no wait-with-timeout,
    /// and polling an exit is waiting on the event itself, not guessing a delay.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::Timeout {
                    what: format!("{} to exit", self.label),
                    after: timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends SIGTERM, as `systemctl stop` does, and waits at most
    /// `timeout` for the process to exit.
    pub fn terminate(&self, timeout: Duration) -> Result<ExitStatus> {
        let pid = nix::unistd::Pid::from_raw(self.pid() as i32);
        // An error means it is gone already: the wait below says how.
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        self.wait_timeout(timeout)
    }

    /// Sends SIGKILL and reaps (also what `Drop` does).
    pub fn kill(&self) {
        let mut child = lock(&self.child);
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The last `lines` lines of the stderr log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail_file(&self.log, lines)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `lines` lines of a text file (at most the last 64 KiB are read).
pub fn tail_file(path: &Path, lines: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(64 * 1024);
    if file.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    let all: Vec<String> = BufReader::new(bytes.as_slice())
        .lines()
        .map_while(std::result::Result::ok)
        .collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
