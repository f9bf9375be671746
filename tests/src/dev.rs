//! `chorusd --dev`: the self-contained node a newcomer tries first.
//!
//! It prints the socket path it serves on; the exact wording is free, so the
//! harness takes the first word of its stdout that is a path under the
//! `XDG_RUNTIME_DIR` it was given (this covers `socket: /x/y.sock`,
//! `export CHORUS_SOCKET=/x/y.sock` and quoted forms).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::bins::bins;
use crate::error::{HarnessError, Result};
use crate::process::{ChildGuard, Spawn};
use crate::testenv::TestEnv;

/// A running `chorusd --dev`.
#[derive(Debug)]
pub struct DevNode {
    /// The socket it printed.
    pub socket: PathBuf,
    guard: ChildGuard,
}

impl DevNode {
    /// Starts `chorusd --dev` with `XDG_RUNTIME_DIR=<test dir>/xdg`, and waits
    /// (at most `timeout`) until it has printed its socket path and the socket
    /// exists.
    pub fn start(env: &TestEnv, timeout: Duration) -> Result<DevNode> {
        let xdg = env.path("xdg");
        std::fs::create_dir_all(&xdg)
            .map_err(|e| HarnessError::io(format!("creating {}", xdg.display()), e))?;
        let mut cmd = std::process::Command::new(&bins().chorusd);
        cmd.arg("--dev")
            .env("XDG_RUNTIME_DIR", &xdg)
            .env_remove("CHORUS_SOCKET");
        let mut spec = Spawn::new("chorusd-dev", cmd);
        spec.stdout_piped = true;
        let (guard, pipes) = env.spawn(spec)?;
        let stdout = pipes
            .stdout
            .ok_or_else(|| HarnessError::Unexpected("chorusd --dev: no stdout".into()))?;
        let copy_path = env.path("chorusd-dev.out");
        let mut copy = std::fs::File::create(&copy_path)
            .map_err(|e| HarnessError::io(format!("creating {}", copy_path.display()), e))?;
        let (tx, rx) = mpsc::channel::<String>();
        // Keep draining stdout for the daemon's whole life so it never blocks.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout)
                .lines()
                .map_while(std::result::Result::ok)
            {
                let _ = writeln!(copy, "{line}");
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + timeout;
        let socket = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(line) => {
                    if let Some(path) = socket_path_in(&line, &xdg) {
                        break path;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => guard.ensure_running()?,
            }
            guard.ensure_running()?;
            if left.is_zero() {
                return Err(HarnessError::Timeout {
                    what: "chorusd --dev to print its socket path".into(),
                    after: timeout,
                });
            }
        };
        wait_for_path(&socket, &guard, deadline)?;
        Ok(DevNode { socket, guard })
    }

    /// The daemon process.
    pub fn process(&self) -> &ChildGuard {
        &self.guard
    }

    /// A `chorusctl` command that finds this node through `CHORUS_SOCKET`.
    pub fn chorusctl(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(&bins().chorusctl);
        cmd.env("CHORUS_SOCKET", &self.socket);
        cmd
    }
}

/// Polls for `path` to exist (the daemon may print before it binds).
fn wait_for_path(path: &Path, guard: &ChildGuard, deadline: Instant) -> Result<()> {
    while !path.exists() {
        guard.ensure_running()?;
        if Instant::now() >= deadline {
            return Err(HarnessError::Unexpected(format!(
                "chorusd --dev printed {} but it never appeared",
                path.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// The first word of `line` that is a path under `dir`.
pub fn socket_path_in(line: &str, dir: &Path) -> Option<PathBuf> {
    let dir = dir.to_str()?;
    line.split(|c: char| c.is_whitespace() || matches!(c, '=' | '"' | '\'' | '`'))
        .map(|w| w.trim_end_matches([',', '.', ';', ')']))
        .find(|w| w.starts_with(dir) && w.len() > dir.len())
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_path_in_common_wordings() {
        let dir = Path::new("/tmp/x/xdg");
        let want = Some(PathBuf::from("/tmp/x/xdg/chorus/chorusd.sock"));
        assert_eq!(
            socket_path_in("socket: /tmp/x/xdg/chorus/chorusd.sock", dir),
            want
        );
        assert_eq!(
            socket_path_in("export CHORUS_SOCKET=/tmp/x/xdg/chorus/chorusd.sock", dir),
            want
        );
        assert_eq!(
            socket_path_in(
                "  export CHORUS_SOCKET='/tmp/x/xdg/chorus/chorusd.sock'",
                dir
            ),
            want
        );
        assert_eq!(
            socket_path_in("listening on /tmp/x/xdg/chorus/chorusd.sock.", dir),
            want
        );
        assert_eq!(socket_path_in("group demo on 239.255.0.1:7410", dir), None);
        assert_eq!(socket_path_in("dir /tmp/x/xdg", dir), None);
    }
}
