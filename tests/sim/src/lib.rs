//! chorus-sim: a deterministic simulator of the chorus protocol core.
//!
//! One root seed derives a whole scenario ([`plan::Plan`]): the cluster's
//! shape, each host's protocol settings, the network's faults, process
//! faults (planned; injected once the protocol supports them) and the apps'
//! workload. The simulated hosts are the very same `chorus_proto` state
//! machines chorusd runs ([`chorus_proto::host::Host`],
//! [`chorus_proto::order::sequencer::Sequencer`],
//! [`chorus_proto::directory::Directory`]), driven through the same drain
//! function, on one thread, in virtual time. Checkers (one property per
//! file under [`check`]) judge every step; a failure prints the seed and the
//! command that replays it with a trace (legend in tests/README.md).
#![forbid(unsafe_code)]

pub mod adversary;
pub mod app;
pub mod batch;
pub mod capture;
pub mod check;
pub mod cluster;
pub mod dir;
pub mod net;
pub mod node;
pub mod plan;
pub mod planted;
pub mod rng;
pub mod run;
pub mod scenario;
pub mod trace;
pub mod world;

pub use plan::{Options, Planted};
pub use run::{replay_command, run_plan, run_seed, Failure, Outcome, Stats};
pub use trace::TraceMode;

/// Parses `A..B` (B exclusive) or `A..=B` into a range of seeds.
pub fn parse_range(s: &str) -> Option<std::ops::Range<u64>> {
    if let Some((a, b)) = s.split_once("..=") {
        let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
        return Some(a..b.checked_add(1)?);
    }
    let (a, b) = s.split_once("..")?;
    Some(a.trim().parse().ok()?..b.trim().parse().ok()?)
}

/// The tag after a seed in the regressions file that replays it with
/// process faults (crashes, restarts, directory resets and restarts).
pub const PROCESS_FAULTS_TAG: &str = "[process-faults]";

/// The tag after a seed in the regressions file that replays it with the
/// attacker on the network (`--adversary`).
pub const ADVERSARY_TAG: &str = "[adversary]";

/// Reads seeds from a regressions file: the first word of every line that
/// is not blank or a `#` comment. With `process_faults`, only the seeds
/// tagged [`PROCESS_FAULTS_TAG`]; without, only the untagged ones.
pub fn parse_seeds_file_for(text: &str, process_faults: bool) -> Vec<u64> {
    parse_seeds_file_tagged(text, process_faults.then_some(PROCESS_FAULTS_TAG))
}

/// The seeds of a regressions file tagged `tag` (its second word), or
/// with `None` the untagged ones.
pub fn parse_seeds_file_tagged(text: &str, tag: Option<&str>) -> Vec<u64> {
    fn tag_of(line: &str) -> Option<&str> {
        line.split_whitespace()
            .nth(1)
            .filter(|t| [PROCESS_FAULTS_TAG, ADVERSARY_TAG].contains(t))
    }
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|l| tag_of(l) == tag)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// The seeds of a regressions file replayed with default options.
pub fn parse_seeds_file(text: &str) -> Vec<u64> {
    parse_seeds_file_for(text, false)
}
