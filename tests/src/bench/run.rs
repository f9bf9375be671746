//! One run: start the members' threads, open the gate once all are in the
//! view, collect what they saw, and build the report.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::bench::cli::RunParams;
use crate::bench::cluster::BenchCluster;
use crate::bench::daemons;
use crate::bench::member::{self, Gate, Identity, ListenerResult, SenderResult, Shared};
use crate::bench::payload::Clock;
use crate::bench::report::RunReport;
use crate::bench::BenchError;
use crate::cluster::Node;

/// What a member thread tells the driver.
enum Outcome {
    /// In the full view.
    Ready,
    Listener(usize, Result<ListenerResult, BenchError>),
    Sender(usize, Result<SenderResult, BenchError>),
}

/// A member thread and the count it advances (deliveries or sends).
struct Worker {
    who: Identity,
    progress: Arc<AtomicU64>,
    handle: JoinHandle<()>,
}

/// Runs `params` on `cluster`; fails if it is not over within `timeout`
/// (joins included) or a member's session fails. The checks' verdicts are
/// in the report, not errors.
pub fn run(
    cluster: &BenchCluster,
    params: &RunParams,
    clock: Clock,
    timeout: Duration,
) -> Result<RunReport, BenchError> {
    let nodes = cluster.nodes();
    let before = daemons::sample_all(nodes);
    let tag = format!("r{}", params.index);
    let listeners: Vec<Identity> = nodes
        .iter()
        .enumerate()
        .map(|(k, node)| identity(node, format!("{tag}-listen{}", k + 1)))
        .collect();
    let senders: Vec<Identity> = (0..params.senders as usize)
        .map(|s| identity(&nodes[s % nodes.len()], format!("{tag}-send{s}")))
        .collect();
    let mut members: Vec<String> = listeners
        .iter()
        .chain(&senders)
        .map(|w| w.member.clone())
        .collect();
    members.sort();
    let shared = Arc::new(Shared {
        clock,
        group: cluster.group().to_owned(),
        members,
        senders: senders.iter().map(|w| w.member.clone()).collect(),
        messages: params.messages,
        size: params.size as usize,
        order: params.order,
        rate: params.rate,
        deadline: Instant::now() + timeout,
        gate: Gate::default(),
        stop: AtomicBool::new(false),
    });
    let (tx, rx) = mpsc::channel();
    let listeners: Vec<Worker> = listeners
        .into_iter()
        .enumerate()
        .map(|(k, who)| spawn_listener(&shared, who, k, tx.clone()))
        .collect();
    let senders: Vec<Worker> = senders
        .into_iter()
        .enumerate()
        .map(|(s, who)| spawn_sender(&shared, who, s, tx.clone()))
        .collect();
    drop(tx);
    let collected = collect(&shared, &rx, listeners.len(), senders.len());
    shared.stop.store(true, Ordering::Relaxed);
    shared.gate.open();
    let (results, sent) = match collected {
        Ok(all) => all,
        Err(e) => return Err(with_progress(e, &shared, timeout, &listeners, &senders)),
    };
    for worker in listeners.into_iter().chain(senders) {
        let _ = worker.handle.join();
    }
    let first_send_ns = sent.iter().map(|s| s.first_send_ns).min().unwrap_or(0);
    let flushed_ns = sent.iter().map(|s| s.flushed_ns).max().unwrap_or(0);
    let mut report = RunReport::new(params, &results, first_send_ns, flushed_ns);
    report.daemons = daemons::deltas(&before, &daemons::sample_all(nodes));
    Ok(report)
}

fn identity(node: &Node, name: String) -> Identity {
    Identity {
        socket: node.socket_path().to_path_buf(),
        member: node.member(&name),
        name,
    }
}

fn spawn_listener(shared: &Arc<Shared>, who: Identity, k: usize, tx: Sender<Outcome>) -> Worker {
    let progress = Arc::new(AtomicU64::new(0));
    let (shared, me, count) = (Arc::clone(shared), who.clone(), Arc::clone(&progress));
    let handle = std::thread::spawn(move || {
        let ready = || {
            let _ = tx.send(Outcome::Ready);
        };
        let result = member::listen(&shared, &me, ready, &count);
        let _ = tx.send(Outcome::Listener(k, result));
    });
    Worker {
        who,
        progress,
        handle,
    }
}

fn spawn_sender(shared: &Arc<Shared>, who: Identity, s: usize, tx: Sender<Outcome>) -> Worker {
    let progress = Arc::new(AtomicU64::new(0));
    let (shared, me, count) = (Arc::clone(shared), who.clone(), Arc::clone(&progress));
    let handle = std::thread::spawn(move || {
        let ready = || {
            let _ = tx.send(Outcome::Ready);
        };
        let done = |r| {
            let _ = tx.send(Outcome::Sender(s, Ok(r)));
        };
        let index = u32::try_from(s).unwrap_or(u32::MAX);
        if let Err(e) = member::send(&shared, &me, index, ready, &count, done) {
            let _ = tx.send(Outcome::Sender(s, Err(e)));
        }
    });
    Worker {
        who,
        progress,
        handle,
    }
}

/// Waits for every member to be ready, opens the gate, then waits for
/// every listener's and sender's result; the first failure ends the wait.
fn collect(
    shared: &Shared,
    rx: &Receiver<Outcome>,
    listeners: usize,
    senders: usize,
) -> Result<(Vec<ListenerResult>, Vec<SenderResult>), BenchError> {
    let mut ready = 0;
    let mut heard: Vec<Option<ListenerResult>> = (0..listeners).map(|_| None).collect();
    let mut sent: Vec<Option<SenderResult>> = vec![None; senders];
    let mut pending = listeners + senders;
    while pending > 0 {
        let left = shared.deadline.saturating_duration_since(Instant::now());
        let outcome = match rx.recv_timeout(left) {
            Ok(o) => o,
            Err(RecvTimeoutError::Timeout) => {
                let phase = if ready < listeners + senders {
                    "joining"
                } else {
                    "delivering"
                };
                return Err(BenchError::Timeout(format!("still {phase}")));
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(BenchError::Check(
                    "a member thread ended without a result".into(),
                ))
            }
        };
        match outcome {
            Outcome::Ready => {
                ready += 1;
                if ready == listeners + senders {
                    shared.gate.open();
                }
            }
            Outcome::Listener(k, result) => {
                heard[k] = Some(result?);
                pending -= 1;
            }
            Outcome::Sender(s, result) => {
                sent[s] = Some(result?);
                pending -= 1;
            }
        }
    }
    Ok((
        heard.into_iter().flatten().collect(),
        sent.into_iter().flatten().collect(),
    ))
}

/// A timeout error, with how far every member got.
fn with_progress(
    e: BenchError,
    shared: &Shared,
    timeout: Duration,
    listeners: &[Worker],
    senders: &[Worker],
) -> BenchError {
    let BenchError::Timeout(what) = e else {
        return e;
    };
    let count = |ws: &[Worker], of: u64| -> String {
        ws.iter()
            .map(|w| {
                format!(
                    "{} {}/{of}",
                    w.who.member,
                    w.progress.load(Ordering::Relaxed)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    BenchError::Timeout(format!(
        "the run did not finish within {} s ({what}); delivered: {}; sent: {}",
        timeout.as_secs(),
        count(listeners, shared.expected()),
        count(senders, u64::from(shared.messages)),
    ))
}
