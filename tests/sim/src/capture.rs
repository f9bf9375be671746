//! Samples of real traffic from a simulated run, to seed the fuzz corpus:
//! datagrams by kind, directory frames and app frames, a few of each.

use std::collections::BTreeMap;

/// What a run captured, by fuzz target and kind.
#[derive(Debug, Default)]
pub struct Capture {
    /// (target, kind) → samples.
    pub samples: BTreeMap<(&'static str, u8), Vec<Vec<u8>>>,
    seen: BTreeMap<(&'static str, u8), u64>,
    /// Samples kept per (target, kind).
    pub per_kind: usize,
}

impl Capture {
    /// Keeps up to `per_kind` samples of each kind, spread over the run.
    pub fn new(per_kind: usize) -> Capture {
        Capture {
            per_kind,
            ..Capture::default()
        }
    }

    /// Offers one message; `kind` is its kind byte.
    pub fn offer(&mut self, target: &'static str, kind: u8, bytes: &[u8]) {
        let seen = self.seen.entry((target, kind)).or_insert(0);
        *seen += 1;
        let kept = self.samples.entry((target, kind)).or_default();
        // Keep the 1st, 2nd, 4th, 8th, ... so that samples span the run.
        if kept.len() < self.per_kind && seen.is_power_of_two() {
            kept.push(bytes.to_vec());
        }
    }
}
