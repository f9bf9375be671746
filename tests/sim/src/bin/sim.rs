//! `sim`: runs the deterministic simulator.
//!
//! ```text
//! sim --seeds A..B [--jobs N]     run a range of seeds (B exclusive; A..=B inclusive)
//! sim --seed S [--trace]          one seed (its trace on stdout with --trace)
//! sim --scenario NAME [--trace]   a named scenario (`--scenario list` names them)
//! sim --regressions FILE          every untagged seed listed in FILE (with
//!                                 --process-faults: the seeds tagged [process-faults])
//! options: --process-faults  --plant no-retransmit|no-duplicate-suppression|retransmit-storm|silent-separation|no-replay-window  --force-loss  --adversary
//!          --debug-host I (with --trace: host I's internal state after each of its steps)
//!          --log LEVEL (with --trace: the protocol core's log records, e.g. `--log debug`)
//! ```
//! It prints each seed before running it and, on failure, the violation and
//! the exact command that replays it. Exit status 1 if any seed failed.
#![forbid(unsafe_code)]

use chorus_sim::batch::run_batch;
use chorus_sim::{
    parse_range, parse_seeds_file_tagged, replay_command, run_plan, run_seed, scenario, Options,
    Outcome, TraceMode,
};
use std::process::ExitCode;

struct Args {
    seeds: Vec<u64>,
    scenario: Option<String>,
    trace: bool,
    log: Option<log::LevelFilter>,
    regressions: Option<String>,
    jobs: usize,
    opts: Options,
}

fn usage() -> ExitCode {
    eprintln!("usage: sim (--seeds A..B | --seed S | --regressions FILE | --scenario NAME) [--trace] [--jobs N] [--process-faults] [--plant no-retransmit|no-duplicate-suppression|retransmit-storm|silent-separation|no-replay-window] [--force-loss] [--adversary] [--debug-host I] [--log LEVEL]");
    ExitCode::from(2)
}

fn parse_args() -> Option<Args> {
    let mut a = Args {
        seeds: Vec::new(),
        scenario: None,
        trace: false,
        log: None,
        regressions: None,
        jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
        opts: Options::default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seeds" => a.seeds.extend(parse_range(&it.next()?)?),
            "--seed" => a.seeds.push(it.next()?.parse().ok()?),
            "--scenario" => a.scenario = Some(it.next()?),
            "--regressions" => {
                // Untagged seeds; with --process-faults, the tagged ones.
                a.regressions = Some(std::fs::read_to_string(it.next()?).ok()?);
            }
            "--trace" => a.trace = true,
            "--jobs" => a.jobs = it.next()?.parse().ok()?,
            "--process-faults" => a.opts.process_faults = true,
            "--force-loss" => a.opts.force_loss_and_dup = true,
            "--adversary" => a.opts.adversary = true,
            "--debug-host" => a.opts.debug_host = Some(it.next()?.parse().ok()?),
            "--log" => a.log = Some(it.next()?.parse().ok()?),
            "--plant" => match it.next()?.as_str() {
                "no-retransmit" => a.opts.planted.no_retransmit = true,
                "no-duplicate-suppression" => a.opts.planted.no_duplicate_suppression = true,
                "retransmit-storm" => a.opts.planted.retransmit_storm = true,
                "silent-separation" => a.opts.planted.silent_separation = true,
                "no-replay-window" => a.opts.planted.no_replay_window = true,
                _ => return None,
            },
            _ => return None,
        }
    }
    if a.opts.planted != chorus_sim::Planted::default()
        && !chorus_proto::host::planted::Planted::AVAILABLE
    {
        eprintln!("sim: --plant needs a build with the planted bugs: cargo run --release -p chorus-sim --features chorus-proto/planted --bin sim -- ...");
        return None;
    }
    if let Some(text) = a.regressions.take() {
        a.seeds
            .extend(parse_seeds_file_tagged(&text, regression_tag(&a.opts)));
    }
    (!a.seeds.is_empty() || a.scenario.is_some()).then_some(a)
}

fn report(o: &Outcome, opts: &Options) -> bool {
    match &o.result {
        Ok(s) => {
            println!(
                "seed {} ok: {} hosts, {} messages, {} steps, {:.2}s virtual ({:.2}s safety), {} datagrams ({} dropped, {} duplicated), {} refused at the seals ({} altered), {} from the attacker",
                o.seed,
                s.hosts,
                s.accepted,
                s.steps,
                s.end_us as f64 / 1e6,
                s.safety_us as f64 / 1e6,
                s.net.sent,
                s.net.dropped,
                s.net.duplicated,
                s.refused.0 + s.refused.1,
                s.refused.1,
                s.forged
            );
            true
        }
        Err(f) => {
            for l in &f.trace_tail {
                println!("{l}");
            }
            println!("seed {} FAILED: {}", o.seed, f.violation);
            println!("replay: {}", replay_command(o.seed, opts));
            false
        }
    }
}

/// Runs the named scenario (or lists them all for `list`).
fn run_scenario(name: &str, trace: bool) -> ExitCode {
    let Some(plan) = scenario::plan(name) else {
        if name != "list" {
            eprintln!("sim: no scenario `{name}`");
        }
        println!("scenarios: {}", scenario::NAMES.join(", "));
        return if name == "list" {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        };
    };
    println!("scenario {name}");
    let mode = if trace {
        TraceMode::Print
    } else {
        TraceMode::Ring(chorus_sim::batch::TAIL_LINES)
    };
    let outcome = run_plan(plan, &scenario::options(), mode);
    match &outcome.result {
        Ok(s) => {
            println!(
                "scenario {name} ok: {} messages, {:.2}s virtual",
                s.accepted,
                s.end_us as f64 / 1e6
            );
            ExitCode::SUCCESS
        }
        Err(f) => {
            for l in &f.trace_tail {
                println!("{l}");
            }
            println!("scenario {name} FAILED: {}", f.violation);
            println!(
                "replay: cargo run --release -p chorus-sim --bin sim -- --scenario {name} --trace"
            );
            ExitCode::FAILURE
        }
    }
}

/// Prints the core's log records among the trace lines (they are printed
/// as they happen, so each record sits after the event that caused it).
struct TraceLogger;

static TRACE_LOGGER: TraceLogger = TraceLogger;

impl TraceLogger {
    fn install(level: log::LevelFilter) {
        if log::set_logger(&TRACE_LOGGER).is_ok() {
            log::set_max_level(level);
        }
    }
}

impl log::Log for TraceLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &log::Record<'_>) {
        println!("            log {} {}: {}", r.level(), r.target(), r.args());
    }
    fn flush(&self) {}
}

fn main() -> ExitCode {
    let Some(args) = parse_args() else {
        return usage();
    };
    if let (true, Some(level)) = (args.trace, args.log) {
        TraceLogger::install(level);
    }
    if let Some(name) = &args.scenario {
        return run_scenario(name, args.trace);
    }
    if args.trace || args.seeds.len() == 1 {
        let mut ok = true;
        for &seed in &args.seeds {
            println!("seed {seed}");
            let mode = if args.trace {
                TraceMode::Print
            } else {
                TraceMode::Ring(chorus_sim::batch::TAIL_LINES)
            };
            ok &= report(&run_seed(seed, &args.opts, mode), &args.opts);
        }
        return if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let (first, last) = (args.seeds[0], args.seeds[args.seeds.len() - 1]);
    println!(
        "seeds {first}..={last} ({} seeds, {} jobs)",
        args.seeds.len(),
        args.jobs
    );
    let r = run_batch(args.seeds.clone().into_iter(), &args.opts, args.jobs, None);
    print!("{}", r.describe(&args.opts));
    let failed: Vec<u64> = r.failed.iter().map(|o| o.seed).collect();
    println!(
        "{} seeds in {:.1}s ({:.1} seeds/s, {} jobs); {} failed{}",
        r.run,
        r.seconds,
        r.rate(),
        args.jobs,
        failed.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(": {failed:?}")
        }
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The regressions a run with `opts` replays: those tagged for the
/// attacker with `--adversary`, else those tagged for process faults with
/// `--process-faults`, else the untagged ones.
fn regression_tag(opts: &Options) -> Option<&'static str> {
    if opts.adversary {
        Some(chorus_sim::ADVERSARY_TAG)
    } else if opts.process_faults {
        Some(chorus_sim::PROCESS_FAULTS_TAG)
    } else {
        None
    }
}
