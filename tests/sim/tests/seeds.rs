//! The simulator in CI: every seed that ever failed, a fixed range, and a
//! time-boxed random batch (its seeds printed so a failure replays).
//!
//! Knobs: `CHORUS_SIM_SEEDS` (size of the fixed range), `CHORUS_SIM_PF_SEEDS`
//! (size of the fixed range with process faults), `CHORUS_SIM_SECONDS`
//! (random batch time; 0 skips it), `CHORUS_SIM_JOBS` (threads).

use chorus_sim::batch::{jobs, run_batch};
use chorus_sim::{
    parse_seeds_file, parse_seeds_file_for, parse_seeds_file_tagged, Options, ADVERSARY_TAG,
};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The batches take turns, each on every core (their rates stay honest).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn assert_all_pass(what: &str, seeds: impl Iterator<Item = u64> + Send, secs: Option<u64>) {
    assert_all_pass_with(what, seeds, secs, &Options::default());
}

fn assert_all_pass_with(
    what: &str,
    seeds: impl Iterator<Item = u64> + Send,
    secs: Option<u64>,
    opts: &Options,
) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let deadline = secs.map(|s| Instant::now() + Duration::from_secs(s));
    let report = run_batch(seeds, opts, jobs(), deadline);
    println!(
        "{what}: {} seeds in {:.1}s ({:.1} seeds/s)",
        report.run,
        report.seconds,
        report.rate()
    );
    assert!(
        report.failed.is_empty(),
        "{what}: {} seeds failed\n{}",
        report.failed.len(),
        report.describe(opts)
    );
}

fn process_faults() -> Options {
    Options {
        process_faults: true,
        ..Options::default()
    }
}

#[test]
fn regression_seeds() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../regressions/seeds.txt");
    let text = std::fs::read_to_string(path).expect("tests/regressions/seeds.txt");
    let seeds = parse_seeds_file(&text);
    assert!(!seeds.is_empty(), "the regressions file lists seeds");
    assert_all_pass("regressions", seeds.into_iter(), None);
    let seeds = parse_seeds_file_for(&text, true);
    assert!(
        !seeds.is_empty(),
        "the regressions file lists process-fault seeds"
    );
    assert_all_pass_with(
        "regressions (process faults)",
        seeds.into_iter(),
        None,
        &process_faults(),
    );
    let seeds = parse_seeds_file_tagged(&text, Some(ADVERSARY_TAG));
    assert!(
        !seeds.is_empty(),
        "the regressions file lists attacker seeds"
    );
    assert_all_pass_with(
        "regressions (adversary)",
        seeds.into_iter(),
        None,
        &Options {
            adversary: true,
            ..Options::default()
        },
    );
}

#[test]
fn fixed_seed_range() {
    // Release builds run many more seeds per second than debug ones.
    let default = if cfg!(debug_assertions) {
        1_000
    } else {
        10_000
    };
    let n = env_u64("CHORUS_SIM_SEEDS").unwrap_or(default);
    assert_all_pass("fixed range", 0..n, None);
}

#[test]
fn process_fault_seed_range() {
    // Crashes, restarts, sequencer crashes mid-burst, directory link resets
    // and directory restarts, on top of the network faults.
    let default = if cfg!(debug_assertions) { 200 } else { 5_000 };
    let n = env_u64("CHORUS_SIM_PF_SEEDS").unwrap_or(default);
    assert_all_pass_with("process faults", 0..n, None, &process_faults());
}

#[test]
fn adversary_seed_range() {
    // An attacker on the network replays and alters what it captures; on
    // seeds of their own, half of them with process faults too.
    let default = if cfg!(debug_assertions) { 100 } else { 2_000 };
    let n = env_u64("CHORUS_SIM_ADVERSARY_SEEDS").unwrap_or(default);
    let attacked = Options {
        adversary: true,
        ..Options::default()
    };
    assert_all_pass_with("adversary", 0..n / 2, None, &attacked);
    let attacked = Options {
        adversary: true,
        ..process_faults()
    };
    assert_all_pass_with("adversary (process faults)", n / 2..n, None, &attacked);
}

#[test]
fn random_batch() {
    let secs = env_u64("CHORUS_SIM_SECONDS").unwrap_or(20);
    if secs == 0 {
        return;
    }
    let clock = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    // Far from the fixed ranges, so it explores other seeds; half the time
    // with process faults, on seeds of their own.
    let base = (clock % (1 << 40)) + (1 << 32);
    let pf_base = base + (1 << 41);
    let half = secs.div_ceil(2);
    println!("random batch: seeds from {base} for {half}s (replay one with: sim --seed N --trace)");
    assert_all_pass("random batch", base..pf_base, Some(half));
    println!(
        "random batch with process faults: seeds from {pf_base} for {half}s (replay one with: sim --seed N --trace --process-faults)"
    );
    assert_all_pass_with(
        "random batch (process faults)",
        pf_base..u64::MAX,
        Some(half),
        &process_faults(),
    );
}
