//! A `chorusctl listen --json` process and the events it printed.
//!
//! A reader thread parses each JSON line into an [`Event`] as it arrives;
//! tests wait for conditions on the events seen so far ("a view with these
//! members", "N messages") with a timeout, instead of sleeping.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdout, Command};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::check::{Delivery, Trace};
use crate::cluster::Node;
use crate::error::{HarnessError, Result};
use crate::process::{lock, ChildGuard, Spawn};
use crate::testenv::TestEnv;

/// `{"event":"view",...}` from the contract.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ViewEvent {
    /// Group name.
    pub group: String,
    /// View id.
    pub view: u64,
    /// Members as `NODE:NAME`.
    pub members: Vec<String>,
    /// The sequencer's node name.
    pub sequencer: String,
}

/// `{"event":"message",...}` from the contract.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MessageEvent {
    /// Group name.
    pub group: String,
    /// The view it was delivered in.
    pub view: u64,
    /// Sender as `NODE:NAME`.
    pub sender: String,
    /// `fifo`, `total` or `safe`.
    pub order: String,
    /// The group's total-order position.
    pub seq: u64,
    /// The payload, when UTF-8.
    #[serde(default)]
    pub data: Option<String>,
    /// The payload in base64, when not UTF-8.
    #[serde(default)]
    pub data_base64: Option<String>,
}

/// `{"event":"separated",...}` from the contract: the member is no longer
/// with the others (its node was declared dead, or dropped).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SeparatedEvent {
    /// Group name.
    pub group: String,
    /// The last view the member installed.
    pub view: u64,
    /// Whether the daemon joins the member again by itself.
    pub rejoining: bool,
    /// Why.
    pub reason: String,
}

/// One line of `chorusctl listen --json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Event {
    /// A view was installed.
    View(ViewEvent),
    /// A message was delivered.
    Message(MessageEvent),
    /// The membership ended unasked.
    Separated(SeparatedEvent),
}

/// What the listener printed so far.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// All events, in output order.
    pub events: Vec<Event>,
    /// Lines that were not a contract event (a contract violation).
    pub bad_lines: Vec<String>,
    /// Whether stdout has ended (the process exited or closed it).
    pub eof: bool,
}

impl Seen {
    /// The message events, in delivery order.
    pub fn messages(&self) -> impl Iterator<Item = &MessageEvent> {
        self.events.iter().filter_map(|e| match e {
            Event::Message(m) => Some(m),
            Event::View(_) | Event::Separated(_) => None,
        })
    }

    /// The most recent view, if any.
    pub fn latest_view(&self) -> Option<&ViewEvent> {
        self.events.iter().rev().find_map(|e| match e {
            Event::View(v) => Some(v),
            Event::Message(_) | Event::Separated(_) => None,
        })
    }
}

#[derive(Debug, Default)]
struct Shared {
    seen: Mutex<Seen>,
    changed: Condvar,
}

/// A running `chorusctl listen`.
#[derive(Debug)]
pub struct Listener {
    label: String,
    guard: ChildGuard,
    shared: Arc<Shared>,
    reader: Option<JoinHandle<()>>,
}

impl Listener {
    /// `chorusctl listen GROUP --json --name NAME` on `node` (label `listen-NODE-NAME`).
    pub fn on_node(env: &TestEnv, node: &Node, group: &str, name: &str) -> Result<Listener> {
        let mut cmd = node.chorusctl();
        cmd.args(["listen", group, "--json", "--name", name]);
        Listener::spawn(env, &format!("listen-{}-{name}", node.name), cmd)
    }

    /// Spawns any `chorusctl listen --json ...` command and starts reading it.
    pub fn spawn(env: &TestEnv, label: &str, command: Command) -> Result<Listener> {
        let mut spec = Spawn::new(label, command);
        spec.stdout_piped = true;
        let (guard, pipes) = env.spawn(spec)?;
        let stdout = pipes
            .stdout
            .ok_or_else(|| HarnessError::Unexpected(format!("{label}: no stdout pipe")))?;
        let copy_path = env.path(&format!("{label}.out"));
        let copy = File::create(&copy_path)
            .map_err(|e| HarnessError::io(format!("creating {}", copy_path.display()), e))?;
        let shared = Arc::new(Shared::default());
        let reader = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || read_events(stdout, copy, &shared))
        };
        Ok(Listener {
            label: label.to_owned(),
            guard,
            shared,
            reader: Some(reader),
        })
    }

    /// The label (also the stem of its `.log` and `.out` files).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The process.
    pub fn process(&self) -> &ChildGuard {
        &self.guard
    }

    /// A copy of everything seen so far.
    pub fn snapshot(&self) -> Seen {
        lock(&self.shared.seen).clone()
    }

    /// Waits until `done(&seen)` holds; fails on timeout, on a malformed line,
    /// or when the output ended without `done` holding.
    pub fn wait_until<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&Seen) -> Option<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + timeout;
        let mut seen = lock(&self.shared.seen);
        loop {
            if let Some(bad) = seen.bad_lines.first() {
                return Err(HarnessError::Unexpected(format!(
                    "{}: line is not a contract event: {bad}",
                    self.label
                )));
            }
            if let Some(value) = done(&seen) {
                return Ok(value);
            }
            if seen.eof {
                let status = self.guard.wait_timeout(Duration::from_secs(5));
                return Err(HarnessError::Unexpected(format!(
                    "{}: output ended ({status:?}) before {what}; log: {}",
                    self.label,
                    self.guard.log_path().display()
                )));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(HarnessError::Timeout {
                    what: format!("{}: {what}", self.label),
                    after: timeout,
                });
            }
            seen = self
                .shared
                .changed
                .wait_timeout(seen, deadline - now)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
    }

    /// Waits until the latest view contains every name in `members`.
    pub fn wait_view_with(&self, members: &[String], timeout: Duration) -> Result<ViewEvent> {
        let what = format!("a view containing {members:?}");
        self.wait_until(&what, timeout, |seen| {
            let view = seen.latest_view()?;
            members
                .iter()
                .all(|m| view.members.contains(m))
                .then(|| view.clone())
        })
    }

    /// Waits until at least `count` messages were delivered; returns them all.
    pub fn wait_messages(&self, count: usize, timeout: Duration) -> Result<Vec<MessageEvent>> {
        let what = format!("{count} messages");
        self.wait_until(&what, timeout, |seen| {
            (seen.messages().count() >= count).then(|| seen.messages().cloned().collect())
        })
    }

    /// The delivered messages as a checker [`Trace`].
    pub fn trace(&self) -> Trace {
        let seen = self.snapshot();
        Trace {
            listener: self.label.clone(),
            deliveries: seen.messages().map(delivery_of).collect(),
        }
    }
}

/// The checker's view of one delivered message.
pub fn delivery_of(m: &MessageEvent) -> Delivery {
    let data = match (&m.data, &m.data_base64) {
        (Some(d), _) => d.clone(),
        (None, Some(b)) => format!("base64:{b}"),
        (None, None) => String::new(),
    };
    Delivery {
        sender: m.sender.clone(),
        data,
        seq: m.seq,
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.guard.kill();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// The reader thread: parse lines until EOF, copy them to `copy`.
fn read_events(stdout: ChildStdout, mut copy: File, shared: &Shared) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let _ = writeln!(copy, "{line}");
        if line.trim().is_empty() {
            continue;
        }
        let parsed = serde_json::from_str::<Event>(&line);
        let mut seen = lock(&shared.seen);
        match parsed {
            Ok(event) => seen.events.push(event),
            Err(e) => seen.bad_lines.push(format!("{line} ({e})")),
        }
        drop(seen);
        shared.changed.notify_all();
    }
    lock(&shared.seen).eof = true;
    shared.changed.notify_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_contract_examples() {
        let view: Event = serde_json::from_str(
            r#"{"event":"view","group":"chat","view":3,"members":["host-a:worker-1","host-b:listen-77"],"sequencer":"host-a"}"#,
        )
        .unwrap();
        assert_eq!(
            view,
            Event::View(ViewEvent {
                group: "chat".into(),
                view: 3,
                members: vec!["host-a:worker-1".into(), "host-b:listen-77".into()],
                sequencer: "host-a".into(),
            })
        );
        let msg: Event = serde_json::from_str(
            r#"{"event":"message","group":"chat","view":3,"sender":"host-b:listen-77","order":"total","seq":42,"data":"hello"}"#,
        )
        .unwrap();
        let Event::Message(m) = msg else {
            panic!("not a message")
        };
        assert_eq!((m.seq, m.data.as_deref()), (42, Some("hello")));
        assert_eq!(delivery_of(&m).data, "hello");
    }

    #[test]
    fn rejects_unknown_event() {
        assert!(serde_json::from_str::<Event>(r#"{"event":"bogus"}"#).is_err());
    }
}
