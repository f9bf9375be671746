//! `chorus-bench` end to end on loopback with tiny parameters: it must
//! report, in JSON, that every member delivered the same 400 messages once,
//! with send→delivery latencies, and each daemon's counters for the run.
//! Throughput is not asserted (too noisy).

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::process::{Command, Output};

use chorus_tests::bins::{bins, BIN_DIR_ENV};

const BENCH: &str = env!("CARGO_BIN_EXE_chorus-bench");

/// Runs the bench with `args`, finding chorusd and chorus-directory where
/// the harness built them for this test's profile.
fn bench(args: &[&str]) -> Output {
    let dir = bins().chorusd.parent().unwrap().to_path_buf();
    Command::new(BENCH)
        .args(args)
        .env(BIN_DIR_ENV, dir)
        .output()
        .unwrap()
}

#[test]
fn bench_smoke_loopback_json() {
    let out = bench(&[
        "--nodes",
        "3",
        "--senders",
        "2",
        "--messages",
        "200",
        "--json",
        "--timeout",
        "60",
    ]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON line per run: {stdout}");
    let run: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(run["same_sequence"], true, "{run}");
    assert_eq!(run["complete"], true, "{run}");
    assert_eq!(run["order"], "total", "{run}");
    let members = run["members"].as_array().unwrap();
    let names: Vec<&str> = members
        .iter()
        .map(|m| m["member"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["n1:r1-listen1", "n2:r1-listen2", "n3:r1-listen3"]);
    for m in members {
        assert_eq!(m["delivered"], 400, "{m}");
        assert_eq!(m["missing"], 0, "{m}");
        assert_eq!(m["duplicates"], 0, "{m}");
        for p in ["p50", "p99", "p999"] {
            let latency = m["latency_us"][p].as_f64().unwrap();
            assert!(latency > 0.0, "{p} of {}: {latency}", m["member"]);
        }
        let (p50, p999) = (
            m["latency_us"]["p50"].as_f64(),
            m["latency_us"]["p999"].as_f64(),
        );
        assert!(p50 <= p999, "{m}");
    }
    // What each daemon did during the run, from its counters.
    let daemons = run["daemons"].as_array().unwrap();
    let nodes: Vec<&str> = daemons
        .iter()
        .map(|d| d["node"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["n1", "n2", "n3"], "{run}");
    for d in daemons {
        for key in [
            "retransmits",
            "naks_sent",
            "naks_received",
            "tail_probes",
            "window_decreases",
            "drops",
            "rcvbuf_errors",
        ] {
            assert!(d[key].is_u64(), "{key} of {}: {d}", d["node"]);
        }
        assert!(d["cpu_s"].as_f64().unwrap() >= 0.0, "{d}");
    }
    assert_eq!(run["rcvbuf_errors_scope"], "host", "{run}");
}

#[test]
fn bench_refuses_payloads_under_16_bytes() {
    let out = Command::new(BENCH).args(["--size", "15"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--size"));
}

#[test]
fn bench_says_how_to_build_missing_binaries() {
    let empty = std::env::temp_dir().join(format!("chr-bench-empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let out = Command::new(BENCH)
        .arg("--messages")
        .arg("1")
        .env(BIN_DIR_ENV, &empty)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir(&empty);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(stderr.contains("chorusd"), "{stderr}");
    assert!(
        stderr.contains("cargo build --release --workspace"),
        "{stderr}"
    );
}
