//! Killing a daemon mid-stream (`kill -9`) and checking what the survivors
//! delivered: the same events in the same order (messages and views, so the
//! view change falls at the same place everywhere: virtual synchrony), every
//! survivor's message exactly once, each sender in FIFO order, a view
//! without the dead host, and how long delivery stalled.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::check::{
    fifo_per_sender, no_duplicates, no_loss, seq_consistent, total_order_agreement, SenderWork,
    Trace,
};
use crate::cluster::Node;
use crate::error::{HarnessError, Result};
use crate::listener::{Event, Listener, Seen};
use crate::scenario::{listeners_in_full_view, sender_work, start_senders};
use crate::testenv::TestEnv;

/// Which daemon to kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Victim {
    /// The node that sequences the group.
    Sequencer,
    /// A node that does not.
    Member,
}

/// What a failover run saw.
#[derive(Debug)]
pub struct FailoverRun {
    /// The killed node's name.
    pub victim: String,
    /// The sequencer before and after.
    pub sequencer_before: String,
    pub sequencer_after: String,
    /// From the kill to the first message delivered in a view without the
    /// victim, at the slowest survivor.
    pub failover: Duration,
    /// Messages each survivor delivered.
    pub delivered: Vec<usize>,
}

impl FailoverRun {
    /// A one-line summary for the test output.
    pub fn summary(&self) -> String {
        format!(
            "killed {} (sequencer {} -> {}); survivors delivered {:?}; failover {} ms",
            self.victim,
            self.sequencer_before,
            self.sequencer_after,
            self.delivered,
            self.failover.as_millis()
        )
    }
}

/// The events from the first view that holds every listener on, as
/// comparable tokens: views by id and members, messages by seq, sender, data.
fn tokens(seen: &Seen, all_listeners: &[String]) -> Vec<String> {
    let start = seen.events.iter().position(|e| match e {
        Event::View(v) => all_listeners.iter().all(|l| v.members.contains(l)),
        Event::Message(_) | Event::Separated(_) => false,
    });
    let Some(start) = start else {
        return Vec::new();
    };
    seen.events[start..]
        .iter()
        .map(|e| match e {
            Event::View(v) => {
                let mut m = v.members.clone();
                m.sort();
                format!("view {} [{}]", v.view, m.join(","))
            }
            Event::Message(m) => format!(
                "msg {} {} {}",
                m.seq,
                m.sender,
                m.data.clone().unwrap_or_default()
            ),
            Event::Separated(s) => format!("separated {} {}", s.view, s.rejoining),
        })
        .collect()
}

/// Listeners and senders on every node; once a tenth of the messages are
/// delivered, `kill -9` the victim's daemon, and at once start a probe
/// sender on a survivor (so there is always traffic to resume); then wait
/// for the survivors.
pub fn kill_mid_stream(
    env: &TestEnv,
    nodes: &[Node],
    group: &str,
    per_sender: usize,
    victim: Victim,
    timeout: Duration,
) -> Result<FailoverRun> {
    let (listeners, members, full) = listeners_in_full_view(env, nodes, group, timeout)?;
    let sequencer_before = full.sequencer;
    let dead = match victim {
        Victim::Sequencer => nodes
            .iter()
            .position(|n| n.name == sequencer_before)
            .ok_or_else(|| {
                HarnessError::Unexpected(format!("no node is the sequencer {sequencer_before}"))
            })?,
        Victim::Member => nodes
            .iter()
            .position(|n| n.name != sequencer_before)
            .ok_or_else(|| HarnessError::Unexpected("every node is the sequencer".into()))?,
    };
    let work = sender_work(nodes.len(), "s", per_sender);
    let senders = start_senders(env, nodes, group, &work)?;
    let survivor = if dead == 0 { 1 } else { 0 };
    let tenth = nodes.len() * per_sender / 10;
    listeners[survivor].wait_messages(tenth, timeout)?;

    let pid = nix::unistd::Pid::from_raw(nodes[dead].process().pid() as i32);
    let seen_before: Vec<usize> = listeners
        .iter()
        .map(|l| l.snapshot().events.len())
        .collect();
    let killed_at = Instant::now();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| HarnessError::Unexpected(format!("kill -9 {}: {e}", nodes[dead].name)))?;
    let stop = Arc::new(AtomicBool::new(false));
    let prober = spawn_probe(
        nodes[survivor].socket_path().to_owned(),
        group.to_owned(),
        stop.clone(),
    );
    let victim_prefix = format!("{}:", nodes[dead].name);
    let failover = measure_failover(
        &listeners,
        &seen_before,
        dead,
        &victim_prefix,
        killed_at,
        timeout,
    );
    stop.store(true, Ordering::Relaxed);
    let probe = prober
        .join()
        .map_err(|_| HarnessError::Unexpected("probe thread panicked".into()))??;
    let failover = failover?;

    let mut survivors_work = vec![probe.clone()];
    for (i, (sender, w)) in senders.into_iter().zip(&work).enumerate() {
        if i == dead {
            // Its daemon is gone: whatever it sent may or may not survive.
            drop(sender);
            continue;
        }
        sender.finish(timeout)?;
        survivors_work.push(w.clone());
    }
    let wanted: Vec<&String> = survivors_work.iter().flat_map(|w| &w.payloads).collect();
    for (i, listener) in listeners.iter().enumerate().filter(|(i, _)| *i != dead) {
        listener.wait_until(
            &format!("every survivor's message at l{}", i + 1),
            timeout,
            |seen| {
                let got: std::collections::BTreeSet<&str> =
                    seen.messages().filter_map(|m| m.data.as_deref()).collect();
                wanted
                    .iter()
                    .all(|p| got.contains(p.as_str()))
                    .then_some(())
            },
        )?;
    }
    // Every sender leaves once it is done (the probe at once, a `send` when
    // it exits): the last view holds the surviving listeners alone. Wait
    // for it everywhere, so that no listener is compared before a view
    // change another one has already delivered.
    let mut last: Vec<&str> = members
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != dead)
        .map(|(_, m)| m.as_str())
        .collect();
    last.sort_unstable();
    for (i, listener) in listeners.iter().enumerate().filter(|(i, _)| *i != dead) {
        listener.wait_until(
            &format!("a view of the surviving listeners alone at l{}", i + 1),
            timeout,
            |seen| {
                let mut m: Vec<&str> = seen
                    .latest_view()?
                    .members
                    .iter()
                    .map(String::as_str)
                    .collect();
                m.sort_unstable();
                (m == last).then_some(())
            },
        )?;
    }
    let mut all_work = work.clone();
    all_work.push(probe);
    check_survivors(&listeners, dead, &members, &all_work, &survivors_work)?;
    let sequencer_after = listeners[survivor]
        .snapshot()
        .latest_view()
        .map(|v| v.sequencer.clone())
        .unwrap_or_default();
    Ok(FailoverRun {
        victim: nodes[dead].name.clone(),
        sequencer_before,
        sequencer_after,
        failover,
        delivered: listeners
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != dead)
            .map(|(_, l)| l.snapshot().messages().count())
            .collect(),
    })
}

/// A member `p1` on a survivor that sends a numbered message every 5 ms
/// until told to stop (or 2000 messages), so there is always traffic to
/// resume after the failover. Connects to the daemon's Unix socket directly
/// (Unix sockets do not belong to network namespaces).
fn spawn_probe(
    socket: PathBuf,
    group: String,
    stop: Arc<AtomicBool>,
) -> JoinHandle<Result<SenderWork>> {
    std::thread::spawn(move || {
        let fail = |e: chorus::Error| HarnessError::Unexpected(format!("probe: {e}"));
        let mut c = chorus::Client::connect(&socket).map_err(fail)?;
        c.discard_events(true);
        c.join(&group, "p1").map_err(fail)?;
        let mut work = SenderWork {
            label: "p1".into(),
            payloads: Vec::new(),
        };
        for i in 1..=2000 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let payload = format!("p1-{i:06}");
            c.send(&group, chorus::Order::Total, payload.as_bytes())
                .map_err(fail)?;
            c.flush().map_err(fail)?;
            work.payloads.push(payload);
            std::thread::sleep(Duration::from_millis(5));
        }
        c.leave(&group).map_err(fail)?;
        Ok(work)
    })
}

/// Polls the survivors (every 2 ms: a measurement, not synchronisation)
/// until each has delivered a message in a view without the victim.
fn measure_failover(
    listeners: &[Listener],
    seen_before: &[usize],
    dead: usize,
    victim_prefix: &str,
    killed_at: Instant,
    timeout: Duration,
) -> Result<Duration> {
    let mut done = vec![false; listeners.len()];
    done[dead] = true;
    loop {
        for (i, l) in listeners.iter().enumerate() {
            if done[i] {
                continue;
            }
            let seen = l.snapshot();
            // Only what came after the kill counts (earlier views, before
            // the victim joined, lack it too).
            let after = &seen.events[seen_before[i].min(seen.events.len())..];
            let view_at = after.iter().position(|e| {
                matches!(e, Event::View(v) if !v.members.iter().any(|m| m.starts_with(victim_prefix)))
            });
            let resumed = view_at
                .is_some_and(|at| after[at..].iter().any(|e| matches!(e, Event::Message(_))));
            done[i] = resumed;
        }
        if done.iter().all(|d| *d) {
            return Ok(killed_at.elapsed());
        }
        if killed_at.elapsed() > timeout {
            return Err(HarnessError::Unexpected(
                "survivors did not resume delivery in a view without the dead node".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The survivors' events agree from the full view on; their messages pass
/// every checker: one total order, no duplicates, FIFO for every sender (the
/// dead one's delivered messages too), consistent seq, and no loss of a
/// survivor's message (the dead sender's may be cut short, equally everywhere).
fn check_survivors(
    listeners: &[Listener],
    dead: usize,
    members: &[String],
    all_work: &[SenderWork],
    survivors_work: &[SenderWork],
) -> Result<()> {
    let alive: Vec<&Listener> = listeners
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != dead)
        .map(|(_, l)| l)
        .collect();
    let toks: Vec<Vec<String>> = alive
        .iter()
        .map(|l| tokens(&l.snapshot(), members))
        .collect();
    for (l, t) in alive.iter().zip(&toks).skip(1) {
        if *t != toks[0] {
            let at = t
                .iter()
                .zip(&toks[0])
                .position(|(a, b)| a != b)
                .unwrap_or(t.len().min(toks[0].len()));
            return Err(HarnessError::Unexpected(format!(
                "{} and {} differ at event {at}: {:?} vs {:?}",
                alive[0].label(),
                l.label(),
                toks[0].get(at),
                t.get(at)
            )));
        }
    }
    let traces: Vec<Trace> = alive.iter().map(|l| l.trace()).collect();
    let mut violations = total_order_agreement(&traces);
    violations.extend(no_duplicates(&traces));
    violations.extend(fifo_per_sender(&traces, all_work));
    violations.extend(seq_consistent(&traces));
    let of_survivors: Vec<Trace> = traces
        .iter()
        .map(|t| Trace {
            listener: t.listener.clone(),
            deliveries: t
                .deliveries
                .iter()
                .filter(|d| {
                    survivors_work
                        .iter()
                        .any(|w| d.data.starts_with(&format!("{}-", w.label)))
                })
                .cloned()
                .collect(),
        })
        .collect();
    violations.extend(no_loss(&of_survivors, survivors_work));
    if !violations.is_empty() {
        return Err(HarnessError::Unexpected(format!(
            "checkers fired: {violations:?}"
        )));
    }
    Ok(())
}
