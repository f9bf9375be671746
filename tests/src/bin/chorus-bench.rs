//! chorus-bench: the cluster benchmark (contract: "Benchmark"). The logic
//! is in `chorus_tests::bench`.
//!
//! Exit codes: 0 every run passed its checks, 1 a check failed or a run
//! failed or timed out, 2 usage, 69 chorusd/chorus-directory not built or
//! namespaces unavailable, 130 interrupted.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use chorus_tests::bench::cli::Options;
use chorus_tests::bench::{execute, EXIT_FAILURE, EXIT_USAGE};
use clap::Parser;

fn main() -> ExitCode {
    let opts = Options::parse();
    let plan = match opts.plan() {
        Ok(plan) => plan,
        Err(message) => {
            eprintln!("chorus-bench: {message}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let mut out = std::io::stdout().lock();
    match execute(&opts, &plan, &mut out) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("chorus-bench: a check failed (see the report)");
            ExitCode::from(EXIT_FAILURE)
        }
        Err(e) => {
            eprintln!("chorus-bench: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
