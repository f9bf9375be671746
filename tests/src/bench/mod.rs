//! `chorus-bench`: the cluster benchmark of the contract ("Benchmark").
//!
//! It starts a directory and N daemons with the harness (on loopback, or
//! one per network namespace), then for every run: one listening member per
//! daemon and P sending members spread round-robin over the daemons, each a
//! thread with its own [`chorus::Client`] session. Once every member sees
//! the run's full view the senders send M stamped messages of S bytes each
//! ([`payload`]); every listener records what it delivered and when
//! ([`stats`]); the run's report ([`report`]) gives throughput and latency
//! per listener and the delivery checks ([`sequence`]), and what each
//! daemon did meanwhile ([`daemons`]: retransmissions, NAKs, tail probes,
//! flow-window decreases, kernel receive-buffer drops, CPU time).
//!
//! All runs of one invocation share the cluster; each run's members have
//! names of their own (`r<run>-listen<k>`, `r<run>-send<s>`), and a run
//! starts only once the view holds exactly its members.

pub mod cli;
pub mod cluster;
pub mod daemons;
pub mod member;
pub mod payload;
pub mod report;
pub mod run;
pub mod sequence;
pub mod stats;

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::bins;
use crate::error::HarnessError;
use crate::process::lock;

use cli::{Options, RunParams};
use cluster::BenchCluster;
use payload::Clock;

/// Exit code: a check failed, a run timed out or a session failed.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code: bad usage.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the binaries are not built, or namespaces cannot be made.
pub const EXIT_UNAVAILABLE: u8 = 69;
/// Exit code: interrupted by SIGINT or SIGTERM.
pub const EXIT_INTERRUPTED: u8 = 130;

/// Time allowed on top of the runs' own timeouts for starting the cluster
/// and stopping it, before the harness's watchdog kills everything.
const WATCHDOG_MARGIN: Duration = Duration::from_secs(120);

/// Why the bench stopped before the end (a check that fails is not one:
/// it is in the report).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The harness could not start or reach something.
    #[error("{0}")]
    Harness(#[from] HarnessError),
    /// Something the bench needs is not on this machine.
    #[error("{0}")]
    Unavailable(String),
    /// A member's session with its daemon failed.
    #[error("{member}: {source}")]
    Client {
        member: String,
        source: chorus::Error,
    },
    /// A run did not finish in time.
    #[error("{0}")]
    Timeout(String),
    /// The cluster did something a run cannot go on from.
    #[error("{0}")]
    Check(String),
    /// Writing the report failed.
    #[error("writing the report: {0}")]
    Output(#[from] io::Error),
    /// SIGINT or SIGTERM.
    #[error("interrupted")]
    Interrupted,
    /// A run failed (one of the above, with the run's number).
    #[error("run {run}: {source}")]
    InRun { run: u32, source: Box<BenchError> },
}

impl BenchError {
    /// A client error of `member`.
    pub fn client(member: &str, source: chorus::Error) -> BenchError {
        BenchError::Client {
            member: member.to_owned(),
            source,
        }
    }

    /// Whether the cluster may have misbehaved (its logs are worth
    /// keeping), rather than refused what the bench asked (a payload too
    /// large for a datagram, say). A daemon that says a member it had
    /// admitted is gone, or that it cannot serve, is the cluster's doing.
    pub fn is_cluster_failure(&self) -> bool {
        match self {
            BenchError::Client {
                source: chorus::Error::Daemon { code, .. },
                ..
            } => !matches!(
                code,
                chorus::ErrorCode::BadRequest | chorus::ErrorCode::TooLarge
            ),
            BenchError::Output(_) => false,
            _ => true,
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            BenchError::Unavailable(_) | BenchError::Harness(HarnessError::Missing(_)) => {
                EXIT_UNAVAILABLE
            }
            BenchError::Interrupted => EXIT_INTERRUPTED,
            BenchError::InRun { source, .. } => source.exit_code(),
            _ => EXIT_FAILURE,
        }
    }
}

/// Set once SIGINT or SIGTERM arrived.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// The running cluster, for the signal thread to stop.
static CLUSTER: Mutex<Option<Weak<BenchCluster>>> = Mutex::new(None);

/// Runs `plan` as `opts` says, printing each run's report to `out` as soon
/// as it is done. True when every run passed its checks.
pub fn execute(
    opts: &Options,
    plan: &[RunParams],
    out: &mut impl Write,
) -> Result<bool, BenchError> {
    bins::use_prebuilt()?;
    handle_signals()?;
    if opts.insecure {
        crate::keys::run_clusters_insecure();
    }
    let timeout = Duration::from_secs(opts.timeout);
    let runs = u32::try_from(plan.len()).unwrap_or(u32::MAX);
    let watchdog = timeout.saturating_mul(runs).saturating_add(WATCHDOG_MARGIN);
    let cluster = Arc::new(BenchCluster::start(
        opts.nodes as usize,
        opts.netns,
        watchdog,
    )?);
    // Dropped before `cluster`, so that this thread drops the last reference.
    let _registered = Registered::new(&cluster);
    let clock = Clock::start();
    let mut all_ok = true;
    for params in plan {
        let report = match run::run(&cluster, params, clock, timeout) {
            Ok(report) => report,
            Err(_) if INTERRUPTED.load(Ordering::Relaxed) => return Err(BenchError::Interrupted),
            Err(e) => {
                if e.is_cluster_failure() {
                    eprintln!(
                        "chorus-bench: run {} failed; the cluster's logs follow",
                        params.index
                    );
                    cluster.env().keep_files();
                }
                return Err(BenchError::InRun {
                    run: params.index,
                    source: Box::new(e),
                });
            }
        };
        all_ok &= report.ok;
        if opts.json {
            writeln!(out, "{}", report.json_line())?;
        } else {
            report.write_table(out)?;
            writeln!(out)?;
        }
        out.flush()?;
    }
    Ok(all_ok)
}

/// The running cluster, registered for the signal thread while it lives.
struct Registered;

impl Registered {
    fn new(cluster: &Arc<BenchCluster>) -> Registered {
        *lock(&CLUSTER) = Some(Arc::downgrade(cluster));
        Registered
    }
}

impl Drop for Registered {
    /// Waits until the signal thread holds no reference (it holds one only
    /// under the lock): the cluster's owner must be the one to drop it, so
    /// that it is stopped and cleaned up before the process exits.
    fn drop(&mut self) {
        *lock(&CLUSTER) = None;
    }
}

/// On SIGINT or SIGTERM, kills the cluster's processes: every session
/// then fails, the run ends, and the cluster is dropped as usual (which
/// also deletes namespaces). Before the cluster exists, or on a second
/// signal, exits at once.
fn handle_signals() -> Result<(), BenchError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|e| HarnessError::io("installing signal handlers", e))?;
    std::thread::spawn(move || {
        for _ in signals.forever() {
            let slot = lock(&CLUSTER);
            match slot.as_ref().and_then(Weak::upgrade) {
                Some(cluster) if !INTERRUPTED.swap(true, Ordering::Relaxed) => {
                    eprintln!("chorus-bench: interrupted; stopping the cluster");
                    cluster.env().kill_all();
                }
                _ => std::process::exit(i32::from(EXIT_INTERRUPTED)),
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus::ErrorCode;

    fn daemon_said(code: ErrorCode) -> BenchError {
        BenchError::client(
            "n1:r1-send0",
            chorus::Error::Daemon {
                code,
                message: String::new(),
            },
        )
    }

    #[test]
    fn a_member_lost_by_the_cluster_keeps_its_logs_a_bad_request_does_not() {
        assert!(daemon_said(ErrorCode::NoSuchGroup).is_cluster_failure());
        assert!(daemon_said(ErrorCode::Unavailable).is_cluster_failure());
        assert!(daemon_said(ErrorCode::Internal).is_cluster_failure());
        assert!(!daemon_said(ErrorCode::TooLarge).is_cluster_failure());
        assert!(!daemon_said(ErrorCode::BadRequest).is_cluster_failure());
        assert!(BenchError::Timeout("run 1".into()).is_cluster_failure());
    }
}
