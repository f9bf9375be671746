//! Running many seeds on every core, for the `sim` binary and the tests.

use crate::plan::Options;
use crate::run::{replay_command, run_seed, Outcome};
use crate::trace::TraceMode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Trace lines kept and printed for a failing seed.
pub const TAIL_LINES: usize = 80;

/// What a batch did.
#[derive(Debug, Default)]
pub struct BatchReport {
    pub run: usize,
    pub failed: Vec<Outcome>,
    pub seconds: f64,
}

impl BatchReport {
    /// Seeds per second of wall time.
    pub fn rate(&self) -> f64 {
        self.run as f64 / self.seconds.max(1e-9)
    }

    /// Every failure with its violation and replay command; the trace
    /// tails of the first few only (enough to start, short enough to read).
    pub fn describe(&self, opts: &Options) -> String {
        let mut s = String::new();
        for (i, o) in self.failed.iter().enumerate() {
            if let Err(f) = &o.result {
                if i < TAILS_SHOWN {
                    for l in &f.trace_tail {
                        s.push_str(l);
                        s.push('\n');
                    }
                }
                s.push_str(&format!(
                    "seed {} FAILED: {}\nreplay: {}\n",
                    o.seed,
                    f.violation,
                    replay_command(o.seed, opts)
                ));
            }
        }
        s
    }
}

/// Failures whose trace tail [`BatchReport::describe`] shows.
pub const TAILS_SHOWN: usize = 3;

/// Runs `seeds` on `jobs` threads until done or until `deadline`. A
/// failing seed is run again with a ring trace so its tail can be shown.
pub fn run_batch(
    seeds: impl Iterator<Item = u64> + Send,
    opts: &Options,
    jobs: usize,
    deadline: Option<Instant>,
) -> BatchReport {
    let started = Instant::now();
    let seeds = Mutex::new(seeds);
    let failed = Mutex::new(Vec::new());
    let run = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|sc| {
        for _ in 0..jobs.max(1) {
            sc.spawn(|| loop {
                if stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let next = seeds.lock().ok().and_then(|mut it| it.next());
                let Some(seed) = next else { break };
                let o = run_seed(seed, opts, TraceMode::Off);
                run.fetch_add(1, Ordering::Relaxed);
                if o.result.is_err() {
                    let traced = run_seed(seed, opts, TraceMode::Ring(TAIL_LINES));
                    if let Ok(mut f) = failed.lock() {
                        f.push(if traced.result.is_err() { traced } else { o });
                    }
                }
            });
        }
    });
    let mut failed = failed.into_inner().unwrap_or_default();
    failed.sort_by_key(|o| o.seed);
    BatchReport {
        run: run.into_inner(),
        failed,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// Threads to use: `CHORUS_SIM_JOBS`, else every core.
pub fn jobs() -> usize {
    std::env::var("CHORUS_SIM_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
