//! The checkers catch bugs planted on purpose: with retransmission off,
//! duplicate suppression off, a retransmission storm, a silent separation
//! or seals that open replays, seeds that pass without the bug must fail
//! with it, in the checker that watches for that kind of bug.

use chorus_sim::batch::{jobs, run_batch};
use chorus_sim::{Options, Planted};
use std::collections::BTreeSet;

const SEEDS: std::ops::Range<u64> = 0..24;

/// Failures with `planted`, among the seeds that pass without it.
fn caught(planted: Planted) -> (usize, Vec<(u64, &'static str, String)>) {
    caught_in(SEEDS, planted)
}

/// The same over `seeds`.
fn caught_in(
    seeds: std::ops::Range<u64>,
    planted: Planted,
) -> (usize, Vec<(u64, &'static str, String)>) {
    let clean = Options {
        force_loss_and_dup: true,
        ..Options::default()
    };
    let broken_anyway: BTreeSet<u64> = run_batch(seeds.clone(), &clean, jobs(), None)
        .failed
        .iter()
        .map(|o| o.seed)
        .collect();
    let opts = Options { planted, ..clean };
    let report = run_batch(
        seeds.filter(|s| !broken_anyway.contains(s)),
        &opts,
        jobs(),
        None,
    );
    let failures = report
        .failed
        .iter()
        .filter_map(|o| {
            o.result
                .as_ref()
                .err()
                .map(|f| (o.seed, f.violation.check, f.violation.detail.clone()))
        })
        .collect::<Vec<_>>();
    for (seed, check, detail) in &failures {
        println!(
            "seed {seed}: [{check}] {}",
            detail.chars().take(300).collect::<String>()
        );
    }
    (report.run, failures)
}

#[test]
fn no_retransmission_is_caught() {
    let (run, f) = caught(Planted {
        no_retransmit: true,
        ..Planted::default()
    });
    assert!(run >= 12, "enough clean seeds to judge: {run}");
    // A lost DATA that nobody resends is never delivered: the liveness
    // phase must see it, on nearly every seed (all of them lose datagrams).
    let liveness = f.iter().filter(|(_, c, _)| *c == "liveness").count();
    assert!(
        liveness * 10 >= run * 8,
        "liveness caught {liveness} of {run} seeds"
    );
}

#[test]
fn a_retransmission_storm_is_caught() {
    let (run, f) = caught_in(
        0..60,
        Planted {
            retransmit_storm: true,
            ..Planted::default()
        },
    );
    assert!(run >= 30, "enough clean seeds to judge: {run}");
    // Every message multicast again at every tick until ordered: the copies
    // per message pass what loss, partitions and clogs explain on some
    // seeds (the bound is loose: clogs make honest repairs too).
    let storms = f.iter().filter(|(_, c, _)| *c == "retransmissions").count();
    assert!(storms * 12 >= run, "caught on {storms} of {run} seeds");
}

#[test]
fn seals_that_open_replays_are_caught() {
    // The network duplicates datagrams on every seed here: with the replay
    // window off, a copy opens twice at its socket.
    let (run, f) = caught(Planted {
        no_replay_window: true,
        ..Planted::default()
    });
    assert!(run >= 20, "enough clean seeds to judge: {run}");
    let at_the_seal = f.iter().filter(|(_, c, _)| *c == "sealing").count();
    assert!(
        at_the_seal * 10 >= run * 9,
        "caught at the seal on {at_the_seal} of {run} seeds"
    );
}

#[test]
fn no_duplicate_suppression_is_caught() {
    let (run, f) = caught_in(
        0..60,
        Planted {
            no_duplicate_suppression: true,
            ..Planted::default()
        },
    );
    assert!(run >= 30, "enough clean seeds to judge: {run}");
    // A late copy of a delivered message rewinds the receive stream, which
    // then waits for a position the order has passed: delivery stalls. It
    // takes a late copy: the network duplicates datagrams on every seed,
    // but senders resend little (a tail probe that backs off, NAKed gaps),
    // so only 58-70 % of the seeds get one (measured over the changes of
    // the data path); 40 % leaves room for the next.
    assert!(
        f.len() * 10 >= run * 4,
        "caught on {} of {run} seeds",
        f.len()
    );
    assert!(f.iter().all(|(_, c, _)| matches!(
        *c,
        "liveness" | "total_order" | "fifo" | "integrity" | "bounded_memory"
    )));
}

/// Members never told they were separated (joined again behind their
/// apps' backs after their node was stopped past its lease, as chorus once
/// did) have a hole in what they deliver: the checkers catch it in the
/// separation scenarios, which pass without the bug.
#[test]
fn a_silent_separation_is_caught() {
    for name in [
        "pause-past-lease",
        "sequencer-pause",
        "partition-past-lease",
    ] {
        let plan = || chorus_sim::scenario::plan(name).expect("a named scenario");
        let clean = chorus_sim::run_plan(
            plan(),
            &chorus_sim::scenario::options(),
            chorus_sim::TraceMode::Off,
        );
        assert!(clean.result.is_ok(), "{name} fails without the bug");
        let opts = Options {
            planted: Planted {
                silent_separation: true,
                ..Planted::default()
            },
            ..chorus_sim::scenario::options()
        };
        let planted = chorus_sim::run_plan(plan(), &opts, chorus_sim::TraceMode::Off);
        match planted.result {
            Ok(_) => panic!("{name}: a silent separation was not caught"),
            Err(f) => println!("{name}: caught: {}", f.violation),
        }
    }
}
