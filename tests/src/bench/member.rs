//! The members of a run, each a thread with its own client session: one
//! listener per daemon, whose deliveries are measured, and the senders.
//!
//! Every member joins, then waits for a view holding exactly the run's
//! members (leftovers of the previous run gone) and reports ready. Senders
//! then wait at the [`Gate`] the driver opens once all are ready; listeners
//! go straight on receiving. A sender that is done keeps reading (and
//! dropping) what the group delivers to it until the driver says stop: a
//! member that stops reading would be disconnected by its daemon, which
//! would change the view under the run.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use chorus::{Client, Event, Order};

use crate::bench::payload::{encode, Clock, Stamp};
use crate::bench::stats::MemberLog;
use crate::bench::BenchError;
use crate::process::lock;

/// How often a finished sender checks whether the run is over.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// What every member of a run shares.
#[derive(Debug)]
pub struct Shared {
    pub clock: Clock,
    pub group: String,
    /// The run's members (`NODE:NAME`), sorted: the view to wait for.
    pub members: Vec<String>,
    /// The senders' member names, by sender index.
    pub senders: Vec<String>,
    pub messages: u32,
    pub size: usize,
    pub order: Order,
    pub rate: Option<f64>,
    /// When the run fails for taking too long.
    pub deadline: Instant,
    /// Opened when every member is ready.
    pub gate: Gate,
    /// Set when the run is over (or abandoned).
    pub stop: AtomicBool,
}

impl Shared {
    /// Messages every listener must deliver.
    pub fn expected(&self) -> u64 {
        self.senders.len() as u64 * u64::from(self.messages)
    }
}

/// A one-way gate: closed until opened, then open for good.
#[derive(Debug, Default)]
pub struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    /// Opens the gate and wakes every waiter.
    pub fn open(&self) {
        *lock(&self.open) = true;
        self.opened.notify_all();
    }

    /// Waits until the gate is open (true) or `deadline` passes (false).
    pub fn wait(&self, deadline: Instant) -> bool {
        let mut open = lock(&self.open);
        while !*open {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            open = match self.opened.wait_timeout(open, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        true
    }
}

/// Who a member is and where it connects.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The daemon's socket.
    pub socket: PathBuf,
    /// The name it joins as.
    pub name: String,
    /// `NODE:NAME`, as others see it.
    pub member: String,
}

/// What a listener brings back.
#[derive(Debug)]
pub struct ListenerResult {
    pub log: MemberLog,
    /// Views delivered during the run (the membership should not change).
    pub view_changes: u64,
}

/// What a sender brings back.
#[derive(Debug, Clone, Copy)]
pub struct SenderResult {
    /// When it sent its first message (bench clock, ns).
    pub first_send_ns: u64,
    /// When the daemon had accepted all its messages.
    pub flushed_ns: u64,
}

/// Connects, joins and waits for the run's full view.
fn join_run(shared: &Shared, who: &Identity) -> Result<Client, BenchError> {
    let fail = |e| BenchError::client(&who.member, e);
    let mut client = Client::connect(&who.socket).map_err(fail)?;
    client.join(&shared.group, &who.name).map_err(fail)?;
    loop {
        let left = shared.deadline.saturating_duration_since(Instant::now());
        match client.recv_timeout(left).map_err(fail)? {
            None => {
                return Err(BenchError::Timeout(format!(
                    "{} never saw a view of exactly the run's {} members",
                    who.member,
                    shared.members.len()
                )))
            }
            Some(Event::View(view)) => {
                let mut members = view.members;
                members.sort();
                if members == shared.members {
                    return Ok(client);
                }
            }
            Some(Event::Message(m)) => {
                return Err(BenchError::Check(format!(
                    "{} was delivered a message from {} before the run started",
                    who.member, m.sender
                )))
            }
            Some(Event::Separated(s)) => return Err(separated(who, &s)),
        }
    }
}

/// A listener: joins, reports ready, then records deliveries until it has
/// the run's P×M messages. `progress` counts them for a timeout report.
pub fn listen(
    shared: &Shared,
    who: &Identity,
    ready: impl FnOnce(),
    progress: &AtomicU64,
) -> Result<ListenerResult, BenchError> {
    let mut client = join_run(shared, who)?;
    ready();
    let expected = shared.expected();
    let mut log = MemberLog::new(&who.member, usize::try_from(expected).unwrap_or(0));
    let mut view_changes = 0;
    while log.delivered < expected {
        let left = shared.deadline.saturating_duration_since(Instant::now());
        let event = client
            .recv_timeout(left)
            .map_err(|e| BenchError::client(&who.member, e))?;
        match event {
            None => {
                return Err(BenchError::Timeout(format!(
                    "{} stopped waiting",
                    who.member
                )))
            }
            Some(Event::View(_)) => view_changes += 1,
            Some(Event::Separated(s)) => return Err(separated(who, &s)),
            Some(Event::Message(m)) => {
                let now = shared.clock.now_ns();
                let sender_ok = |i: u32| {
                    shared
                        .senders
                        .get(i as usize)
                        .is_some_and(|s| *s == m.sender)
                };
                log.record(&m.payload, shared.size, now, sender_ok);
                progress.store(log.delivered, Ordering::Relaxed);
            }
        }
    }
    Ok(ListenerResult { log, view_changes })
}

/// A sender: joins, reports ready, waits for the gate, sends its M
/// messages (paced when a rate is set), reports through `done`, then keeps
/// its session read until the run stops. `sent` counts what it sent.
pub fn send(
    shared: &Shared,
    who: &Identity,
    index: u32,
    ready: impl FnOnce(),
    sent: &AtomicU64,
    done: impl FnOnce(SenderResult),
) -> Result<(), BenchError> {
    let fail = |e| BenchError::client(&who.member, e);
    let mut client = join_run(shared, who)?;
    // Its own group's traffic comes back to it; it only needs the replies.
    client.discard_events(true);
    ready();
    if !shared.gate.wait(shared.deadline) || shared.stop.load(Ordering::Relaxed) {
        return Err(BenchError::Timeout(format!(
            "{} was never told to start",
            who.member
        )));
    }
    let mut payload = Vec::with_capacity(shared.size);
    let first_send_ns = shared.clock.now_ns();
    for number in 0..shared.messages {
        if let Some(rate) = shared.rate {
            pace(shared, &mut client, first_send_ns, number, rate).map_err(fail)?;
        }
        if shared.stop.load(Ordering::Relaxed) {
            return Err(BenchError::Timeout(format!("{} was stopped", who.member)));
        }
        let stamp = Stamp {
            sender: index,
            number,
            sent_ns: shared.clock.now_ns(),
        };
        encode(stamp, shared.size, &mut payload);
        client
            .send(&shared.group, shared.order, &payload)
            .map_err(fail)?;
        sent.fetch_add(1, Ordering::Relaxed);
    }
    client.flush().map_err(fail)?;
    done(SenderResult {
        first_send_ns,
        flushed_ns: shared.clock.now_ns(),
    });
    while !shared.stop.load(Ordering::Relaxed) {
        // Errors no longer matter: the sender's part is done.
        if client.recv_timeout(DRAIN_POLL).is_err() {
            break;
        }
    }
    Ok(())
}

/// Waits until message `number` is due at `rate` per second from
/// `start_ns`. Buffered sends are flushed first so that they leave now
/// rather than when the next batch fills.
fn pace(
    shared: &Shared,
    client: &mut Client,
    start_ns: u64,
    number: u32,
    rate: f64,
) -> Result<(), chorus::Error> {
    let due_ns = start_ns.saturating_add((f64::from(number) / rate * 1e9) as u64);
    if shared.clock.now_ns() >= due_ns {
        return Ok(());
    }
    client.flush()?;
    let due = shared.clock.instant_at(due_ns).min(shared.deadline);
    std::thread::sleep(due.saturating_duration_since(Instant::now()));
    Ok(())
}

/// A member of the run was separated from the others (its node declared
/// dead under load): the run cannot be complete.
fn separated(who: &Identity, s: &chorus::Separation) -> BenchError {
    BenchError::Check(format!(
        "{} was separated from the group after view {}: {}",
        who.member, s.view, s.reason
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_gate_times_out_closed_and_passes_open() {
        let gate = Arc::new(Gate::default());
        assert!(!gate.wait(Instant::now() + Duration::from_millis(5)));
        let opener = Arc::clone(&gate);
        let t = std::thread::spawn(move || opener.open());
        assert!(gate.wait(Instant::now() + Duration::from_secs(30)));
        t.join().unwrap();
        assert!(gate.wait(Instant::now()), "stays open");
    }
}
