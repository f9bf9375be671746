//! `chorusctl send` and `chorusctl members` as a test uses them.

use std::io::{BufWriter, Write};
use std::process::Command;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Deserialize;

use crate::cluster::Node;
use crate::error::{HarnessError, Result};
use crate::process::{ChildGuard, Spawn};
use crate::testenv::TestEnv;

/// A running `chorusctl send` fed from standard input.
#[derive(Debug)]
pub struct SendProc {
    guard: ChildGuard,
    writer: Option<JoinHandle<std::io::Result<()>>>,
}

impl SendProc {
    /// `chorusctl send GROUP --name NAME [extra...]` on `node`, writing `lines`
    /// to its stdin from a thread (so that many senders can run at once).
    pub fn on_node(
        env: &TestEnv,
        node: &Node,
        group: &str,
        name: &str,
        extra: &[&str],
        lines: Vec<String>,
    ) -> Result<SendProc> {
        let mut cmd = node.chorusctl();
        cmd.args(["send", group, "--name", name]).args(extra);
        SendProc::spawn(env, &format!("send-{}-{name}", node.name), cmd, lines)
    }

    /// Spawns any `chorusctl send` command and feeds `lines` to it.
    pub fn spawn(env: &TestEnv, label: &str, command: Command, lines: Vec<String>) -> Result<Self> {
        let mut spec = Spawn::new(label, command);
        spec.stdin_piped = true;
        let (guard, pipes) = env.spawn(spec)?;
        let stdin = pipes
            .stdin
            .ok_or_else(|| HarnessError::Unexpected(format!("{label}: no stdin pipe")))?;
        let writer = std::thread::spawn(move || {
            let mut out = BufWriter::new(stdin);
            for line in &lines {
                writeln!(out, "{line}")?;
            }
            out.flush()
            // Dropping `out` closes stdin: end of input for chorusctl.
        });
        Ok(SendProc {
            guard,
            writer: Some(writer),
        })
    }

    /// Waits for the sender to exit, and requires exit status 0 ("all accepted").
    pub fn finish(mut self, timeout: Duration) -> Result<()> {
        let status = self.guard.wait_timeout(timeout)?;
        if let Some(writer) = self.writer.take() {
            match writer.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    return Err(HarnessError::io(
                        format!("writing stdin of {}", self.guard.label()),
                        e,
                    ))
                }
                Err(_) => {
                    return Err(HarnessError::Unexpected(format!(
                        "{}: stdin writer panicked",
                        self.guard.label()
                    )))
                }
            }
        }
        if !status.success() {
            return Err(HarnessError::Unexpected(format!(
                "{} exited with {status}; log tail:\n{}",
                self.guard.label(),
                self.guard.log_tail(20)
            )));
        }
        Ok(())
    }
}

/// `chorusctl members GROUP --json` output.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Members {
    /// Group name.
    pub group: String,
    /// View id.
    pub view: u64,
    /// Members as `NODE:NAME`.
    pub members: Vec<String>,
    /// The sequencer's node name.
    pub sequencer: String,
}

/// Runs `chorusctl members GROUP --json` on `node`.
pub fn members(node: &Node, group: &str) -> Result<Members> {
    let mut cmd = node.chorusctl();
    cmd.args(["members", group, "--json"]);
    let out = cmd
        .output()
        .map_err(|e| HarnessError::io(format!("running {cmd:?}"), e))?;
    if !out.status.success() {
        return Err(HarnessError::Unexpected(format!(
            "{cmd:?} exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim())
        .map_err(|e| HarnessError::Unexpected(format!("members --json printed {text:?}: {e}")))
}

/// The payloads sender `label` sends in a numbered workload: `label-000001`...
///
/// Numbered so that FIFO can be checked from the payload alone.
pub fn numbered_payloads(label: &str, count: usize) -> Vec<String> {
    (1..=count).map(|i| format!("{label}-{i:06}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_numbered_from_one() {
        let p = numbered_payloads("s2", 1000);
        assert_eq!(p.len(), 1000);
        assert_eq!(p[0], "s2-000001");
        assert_eq!(p[999], "s2-001000");
    }
}
