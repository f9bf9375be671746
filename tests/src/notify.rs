//! Awaiting readiness the way systemd does: through `NOTIFY_SOCKET`.
//!
//! `chorusd` and `chorus-directory` send `READY=1` once they serve. The
//! harness binds a Unix datagram socket, passes its path in `NOTIFY_SOCKET`
//! and waits for that datagram, so no test guesses a start-up delay. A path
//! (not abstract) socket works from inside network namespaces too, since
//! `ip netns exec` keeps the file system.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{HarnessError, Result};
use crate::process::ChildGuard;

/// A bound notify socket for one child.
#[derive(Debug)]
pub struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    /// Binds a fresh socket at `path` (removing a stale file first).
    pub fn bind(path: &Path) -> Result<NotifySocket> {
        let _ = std::fs::remove_file(path);
        let socket = UnixDatagram::bind(path)
            .map_err(|e| HarnessError::io(format!("binding {}", path.display()), e))?;
        Ok(NotifySocket {
            socket,
            path: path.to_path_buf(),
        })
    }

    /// The path to put in `NOTIFY_SOCKET`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits until `child` sends `READY=1`, failing early if it exits.
    pub fn wait_ready(&self, child: &ChildGuard, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let slice = Duration::from_millis(50);
        self.socket
            .set_read_timeout(Some(slice))
            .map_err(|e| HarnessError::io("notify socket timeout", e))?;
        let mut buf = [0u8; 4096];
        loop {
            match self.socket.recv(&mut buf) {
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]);
                    if text.lines().any(|l| l.trim() == "READY=1") {
                        return Ok(());
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(HarnessError::io("reading notify socket", e)),
            }
            child.ensure_running()?;
            if Instant::now() >= deadline {
                return Err(HarnessError::Timeout {
                    what: format!(
                        "READY=1 from {} (log: {})",
                        child.label(),
                        child.log_path().display()
                    ),
                    after: timeout,
                });
            }
        }
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
