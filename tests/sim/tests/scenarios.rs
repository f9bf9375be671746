//! The named scenarios (hand-built plans, see `chorus_sim::scenario`) pass:
//! every checker holds and the liveness phase completes.

use chorus_sim::{run_plan, scenario, TraceMode};

#[test]
fn every_named_scenario_passes() {
    let mut failed = Vec::new();
    for name in scenario::NAMES {
        let plan = scenario::plan(name).expect("a listed scenario has a plan");
        let outcome = run_plan(plan, &scenario::options(), TraceMode::Ring(40));
        match outcome.result {
            Ok(stats) => assert!(stats.accepted > 0, "{name}: nothing was sent"),
            Err(f) => {
                for line in &f.trace_tail {
                    println!("{line}");
                }
                println!("replay: cargo run --release -p chorus-sim --bin sim -- --scenario {name} --trace");
                failed.push(format!("{name}: {}", f.violation));
            }
        }
    }
    assert!(failed.is_empty(), "scenarios failed: {failed:?}");
}

#[test]
fn unknown_scenarios_have_no_plan() {
    assert!(scenario::plan("no-such-scenario").is_none());
}
