//! `sim-corpus DIR`: runs a few simulator seeds and writes samples of the
//! real traffic they carried (datagrams of every kind, directory frames,
//! app frames) as fuzz corpus files under `DIR/<target>/`, plus hand-made
//! seeds for the targets the simulator does not exercise (app requests,
//! configuration files, host input sequences).
#![forbid(unsafe_code)]

use chorus_proto::wire::app::ToDaemon;
use chorus_proto::Order;
use chorus_sim::capture::Capture;
use chorus_sim::cluster::Sim;
use chorus_sim::plan::{Options, Plan};
use chorus_sim::TraceMode;
use std::path::Path;
use std::process::ExitCode;

const SEEDS: [u64; 3] = [1, 2, 5];

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let d = dir.join(target);
    std::fs::create_dir_all(&d)?;
    std::fs::write(d.join(name), bytes)
}

fn capture() -> Capture {
    let mut all = Capture::new(3);
    for seed in SEEDS {
        let opts = Options::default();
        let mut sim = Sim::new(Plan::from_seed(seed, &opts), opts, TraceMode::Off);
        sim.capture = Some(Capture::new(3));
        while sim.s.now < 1_500_000 && sim.step() {}
        for ((target, kind), samples) in sim.capture.take().map(|c| c.samples).unwrap_or_default() {
            for s in samples {
                all.samples.entry((target, kind)).or_default().push(s);
            }
        }
    }
    all
}

fn hand_made(dir: &Path) -> std::io::Result<()> {
    let requests = [
        ToDaemon::Join {
            request: 1,
            group: "g0".into(),
            name: "a1".into(),
        },
        ToDaemon::Send {
            request: 2,
            group: "g0".into(),
            order: Order::Safe,
            payload: b"hello".to_vec(),
        },
        ToDaemon::Leave {
            request: 3,
            group: "g0".into(),
        },
        ToDaemon::Status { request: 4 },
        ToDaemon::Groups { request: 5 },
        ToDaemon::Members {
            request: 6,
            group: "g0".into(),
        },
        ToDaemon::Stats { request: 7 },
    ];
    for (i, r) in requests.iter().enumerate() {
        let mut b = Vec::new();
        r.encode(&mut b);
        write(dir, "app_frame", &format!("to-daemon-{i}"), &b)?;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/examples");
    if let Ok(entries) = std::fs::read_dir(&root) {
        for e in entries.flatten() {
            if let (Ok(text), Some(name)) = (std::fs::read(e.path()), e.file_name().to_str()) {
                write(dir, "config_parse", name, &text)?;
            }
        }
    }
    // host_inputs reads a byte per choice: a few sequences that welcome
    // the host, give it a view, connect an app, join and send.
    let scripts: [&[u8]; 3] = [
        &[
            0, 1, 0, 2, 0, 0, 1, 4, 0, 5, 0, 0, 0, 5, 3, 0, 0, 4, 10, 50, 9, 0, 0, 0, 0,
        ],
        &[
            0, 1, 1, 3, 2, 1, 1, 1, 1, 4, 1, 6, 1, 3, 0, 0, 9, 1, 1, 0, 10, 200, 11, 0,
        ],
        &[
            1, 0, 9, 2, 0, 1, 1, 1, 8, 8, 0xC0, 0xC5, 2, 1, 0, 0, 0, 7, 10, 255, 7, 1,
        ],
    ];
    for (i, s) in scripts.iter().enumerate() {
        write(dir, "host_inputs", &format!("script-{i}"), s)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: sim-corpus DIR");
        return ExitCode::from(2);
    };
    let dir = Path::new(&dir);
    let mut n = 0;
    for ((target, kind), samples) in capture().samples {
        for (i, s) in samples.iter().enumerate() {
            if let Err(e) = write(dir, target, &format!("sim-kind{kind}-{i}"), s) {
                eprintln!("{}: {e}", dir.display());
                return ExitCode::FAILURE;
            }
            n += 1;
            if target == "datagram_decode" {
                // Real datagrams are good host inputs too (op 8: raw datagram).
                let mut script = vec![0, 1, 0, 8, s.len().min(255) as u8];
                script.extend_from_slice(&s[..s.len().min(255)]);
                let _ = write(dir, "host_inputs", &format!("sim-dgram{kind}-{i}"), &script);
            }
        }
    }
    if let Err(e) = hand_made(dir) {
        eprintln!("{}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    println!(
        "wrote {n} captured samples and the hand-made seeds under {}",
        dir.display()
    );
    ExitCode::SUCCESS
}
