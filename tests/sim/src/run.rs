//! One seed, two phases.
//!
//! 1. Safety: faults on, the workload running, every checker after every
//!    step, until every app is done or the safety phase's time is up.
//! 2. Liveness: faults healed and the workload stopped; within the plan's
//!    bound every accepted message must reach every member it is due to and
//!    every send buffer must drain (see `check::liveness`).
//!
//! Then the end-of-run checks (each member's run of positions is complete).

use crate::check::{liveness, Violation};
use crate::cluster::Sim;
use crate::net::NetStats;
use crate::plan::{Options, Plan};
use crate::trace::TraceMode;
use crate::world::Micros;

/// What a passing seed did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    pub hosts: usize,
    pub accepted: usize,
    pub steps: u64,
    pub safety_us: Micros,
    pub end_us: Micros,
    pub net: NetStats,
    /// Datagrams refused at the hosts' seals: (unaltered: duplicates from
    /// the network and the attacker's replays; altered by the attacker).
    pub refused: (u64, u64),
    /// Datagrams the attacker sent, if there was one.
    pub forged: u64,
}

/// Why a seed failed.
#[derive(Debug, Clone)]
pub struct Failure {
    pub violation: Violation,
    /// The last trace lines (when run with a ring trace).
    pub trace_tail: Vec<String>,
}

/// The result of one seed.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub seed: u64,
    pub result: Result<Stats, Failure>,
}

/// How often the liveness phase looks whether it is done.
const PROBE_US: Micros = 5_000;
/// Safety phase steps between looks at whether the workload is done.
const DONE_PROBE_STEPS: u64 = 512;

/// The command that replays `seed` with its trace.
pub fn replay_command(seed: u64, opts: &Options) -> String {
    // Planted bugs exist only in builds with proto's `planted` feature.
    let features = if opts.planted != crate::Planted::default() {
        " --features chorus-proto/planted"
    } else {
        ""
    };
    let mut cmd =
        format!("cargo run --release -p chorus-sim{features} --bin sim -- --seed {seed} --trace");
    if opts.process_faults {
        cmd.push_str(" --process-faults");
    }
    if opts.planted.no_retransmit {
        cmd.push_str(" --plant no-retransmit");
    }
    if opts.planted.no_duplicate_suppression {
        cmd.push_str(" --plant no-duplicate-suppression");
    }
    if opts.planted.retransmit_storm {
        cmd.push_str(" --plant retransmit-storm");
    }
    if opts.planted.silent_separation {
        cmd.push_str(" --plant silent-separation");
    }
    if opts.planted.no_replay_window {
        cmd.push_str(" --plant no-replay-window");
    }
    if opts.force_loss_and_dup {
        cmd.push_str(" --force-loss");
    }
    if opts.adversary {
        cmd.push_str(" --adversary");
    }
    cmd
}

/// Runs one seed.
pub fn run_seed(seed: u64, opts: &Options, mode: TraceMode) -> Outcome {
    run_plan(Plan::from_seed(seed, opts), opts, mode)
}

/// Runs one plan (a seed's, or a named scenario's).
pub fn run_plan(plan: Plan, opts: &Options, mode: TraceMode) -> Outcome {
    let seed = plan.seed;
    let mut sim = Sim::new(plan, opts.clone(), mode);
    let result = run_phases(&mut sim).map_err(|violation| {
        if sim.tr.on() {
            sim.tr.line(format_args!("VIOLATION {violation}"));
        }
        Failure {
            violation,
            trace_tail: sim.tr.tail().cloned().collect(),
        }
    });
    Outcome { seed, result }
}

fn run_phases(sim: &mut Sim) -> Result<Stats, Violation> {
    let safety_end = sim.plan.safety_end_us;
    while sim.s.now < safety_end {
        if !sim.step() {
            break;
        }
        if let Some(v) = sim.violation() {
            return Err(v.clone());
        }
        if sim.steps.is_multiple_of(DONE_PROBE_STEPS) && sim.apps.iter().all(|a| a.finished()) {
            break;
        }
    }
    let safety_us = sim.s.now;
    sim.heal();
    let deadline = sim.s.now + sim.plan.liveness_bound_us;
    let mut probe = sim.s.now;
    loop {
        if sim.s.now >= probe {
            probe = sim.s.now + PROBE_US;
            if liveness::drained(&sim.nodes)
                && liveness::missing(&sim.checks, &sim.apps, &sim.nodes, &sim.view_starts).is_ok()
            {
                break;
            }
        }
        if sim.s.now >= deadline || !sim.step() {
            let r = liveness::missing(&sim.checks, &sim.apps, &sim.nodes, &sim.view_starts);
            return Err(Violation {
                check: "liveness",
                at: sim.s.now,
                detail: format!(
                    "not done {} ms after healing: {}",
                    sim.plan.liveness_bound_us / 1000,
                    r.err()
                        .unwrap_or_else(|| "nothing left to do but not done".into())
                ),
            });
        }
        if let Some(v) = sim.violation() {
            return Err(v.clone());
        }
    }
    sim.checks.at_end();
    if let Some(v) = sim.violation() {
        return Err(v.clone());
    }
    // No storm: copies sent per DATA message within what the loss explains.
    let loss = sim.plan.links.iter().map(|l| l.loss_ppm).max().unwrap_or(0);
    if let Err(detail) = sim.retransmissions.check(f64::from(loss) / 1e6) {
        return Err(Violation {
            check: "retransmissions",
            at: sim.s.now,
            detail,
        });
    }
    Ok(Stats {
        hosts: sim.nodes.len(),
        accepted: sim.checks.integrity.accepted_count(),
        steps: sim.steps,
        safety_us,
        end_us: sim.s.now,
        net: sim.net.stats,
        refused: sim.refused,
        forged: sim.adversary.as_ref().map_or(0, |a| a.sent),
    })
}
