//! Checkers of the delivery guarantees, run on what every listener delivered.
//!
//! Each checker states one property of the contract and returns every
//! violation it finds (empty = the property holds). They assume the listeners
//! were members for the whole workload (joined before the first send, stayed
//! to the end), which is how the end-to-end tests use them: then the contract
//! says each of them delivers every message, once, in the one total order.
//!
//! Messages are identified by their payload: the tests number payloads
//! (`s1-000123`), so a payload names exactly one send.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

/// One delivered message, as the checkers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Sender as `NODE:NAME`.
    pub sender: String,
    /// The payload (the message's identity in a test workload).
    pub data: String,
    /// The group's total-order position.
    pub seq: u64,
}

/// Everything one listener delivered, in delivery order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// Which listener.
    pub listener: String,
    /// Its deliveries.
    pub deliveries: Vec<Delivery>,
}

/// What one sender sent, in send order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderWork {
    /// The sender's label in the test (e.g. `s1`), not its member name.
    pub label: String,
    /// Payloads in the order they were given to `chorusctl send`.
    pub payloads: Vec<String>,
}

/// A broken property, with enough detail to start debugging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// (a) Two listeners' sequences differ.
    Disagreement {
        /// The reference listener (the first trace).
        first: String,
        /// The listener that differs.
        other: String,
        /// First position where they differ.
        index: usize,
        /// The reference's delivery there, if any.
        expected: Option<Delivery>,
        /// The other's delivery there, if any.
        found: Option<Delivery>,
    },
    /// (b) Sent messages a listener never delivered.
    Lost {
        /// Listener.
        listener: String,
        /// How many are missing.
        missing: usize,
        /// The first few missing payloads.
        examples: Vec<String>,
    },
    /// (b) A listener delivered a payload nobody sent.
    Spurious {
        /// Listener.
        listener: String,
        /// The unknown payload.
        data: String,
    },
    /// (c) A listener delivered the same payload twice.
    Duplicate {
        /// Listener.
        listener: String,
        /// The payload.
        data: String,
        /// Positions of the first and second delivery.
        positions: (usize, usize),
    },
    /// (d) A sender's messages were delivered out of send order.
    FifoBroken {
        /// Listener.
        listener: String,
        /// The sender's label.
        sender: String,
        /// Delivered first, though sent later.
        delivered_first: String,
        /// Delivered after, though sent earlier.
        delivered_after: String,
    },
    /// (e) `seq` did not strictly increase at a listener.
    SeqNotIncreasing {
        /// Listener.
        listener: String,
        /// Position of the offending delivery.
        index: usize,
        /// The previous seq.
        previous: u64,
        /// The seq at `index`.
        seq: u64,
    },
    /// (e) The same message has different `seq` at two listeners.
    SeqMismatch {
        /// The payload.
        data: String,
        /// (listener, seq) where first seen.
        first: (String, u64),
        /// (listener, seq) that disagrees.
        other: (String, u64),
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Disagreement { first, other, index, expected, found } => write!(
                f,
                "total order: {other} differs from {first} at position {index}: expected {expected:?}, found {found:?}"
            ),
            Violation::Lost { listener, missing, examples } => {
                write!(f, "loss: {listener} never delivered {missing} messages, e.g. {examples:?}")
            }
            Violation::Spurious { listener, data } => {
                write!(f, "integrity: {listener} delivered {data:?}, which nobody sent")
            }
            Violation::Duplicate { listener, data, positions } => write!(
                f,
                "duplicate: {listener} delivered {data:?} at positions {} and {}",
                positions.0, positions.1
            ),
            Violation::FifoBroken { listener, sender, delivered_first, delivered_after } => write!(
                f,
                "fifo: {listener} delivered {sender}'s {delivered_first:?} before {delivered_after:?}, which was sent earlier"
            ),
            Violation::SeqNotIncreasing { listener, index, previous, seq } => write!(
                f,
                "seq: {listener} position {index} has seq {seq} after {previous}"
            ),
            Violation::SeqMismatch { data, first, other } => write!(
                f,
                "seq: {data:?} has seq {} at {} but {} at {}",
                first.1, first.0, other.1, other.0
            ),
        }
    }
}

/// How many violations of one kind a checker reports at most.
const MAX_REPORTED: usize = 10;

/// (a) Total-order agreement: every listener delivered the identical sequence
/// of (sender, data, seq) as the first listener.
pub fn total_order_agreement(traces: &[Trace]) -> Vec<Violation> {
    let Some((first, rest)) = traces.split_first() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for other in rest {
        let a = &first.deliveries;
        let b = &other.deliveries;
        let index = a.iter().zip(b).position(|(x, y)| x != y);
        let index = match index {
            Some(i) => i,
            None if a.len() == b.len() => continue,
            None => a.len().min(b.len()),
        };
        out.push(Violation::Disagreement {
            first: first.listener.clone(),
            other: other.listener.clone(),
            index,
            expected: a.get(index).cloned(),
            found: b.get(index).cloned(),
        });
    }
    out
}

/// (b) No loss: every sent payload was delivered at every listener; and no
/// creation: nothing was delivered that was not sent.
pub fn no_loss(traces: &[Trace], work: &[SenderWork]) -> Vec<Violation> {
    let sent: BTreeSet<&str> = work
        .iter()
        .flat_map(|w| w.payloads.iter().map(String::as_str))
        .collect();
    let mut out = Vec::new();
    for trace in traces {
        let got: BTreeSet<&str> = trace.deliveries.iter().map(|d| d.data.as_str()).collect();
        let missing: Vec<&str> = sent.difference(&got).copied().collect();
        if !missing.is_empty() {
            out.push(Violation::Lost {
                listener: trace.listener.clone(),
                missing: missing.len(),
                examples: missing.iter().take(5).map(|s| (*s).to_owned()).collect(),
            });
        }
        for data in got.difference(&sent).take(MAX_REPORTED) {
            out.push(Violation::Spurious {
                listener: trace.listener.clone(),
                data: (*data).to_owned(),
            });
        }
    }
    out
}

/// (c) No duplicates: no listener delivered the same payload twice.
pub fn no_duplicates(traces: &[Trace]) -> Vec<Violation> {
    let mut out = Vec::new();
    for trace in traces {
        let mut first_at: HashMap<&str, usize> = HashMap::new();
        for (i, d) in trace.deliveries.iter().enumerate() {
            if let Some(&j) = first_at.get(d.data.as_str()) {
                if out.len() < MAX_REPORTED {
                    out.push(Violation::Duplicate {
                        listener: trace.listener.clone(),
                        data: d.data.clone(),
                        positions: (j, i),
                    });
                }
            } else {
                first_at.insert(&d.data, i);
            }
        }
    }
    out
}

/// (d) FIFO per sender: at every listener, each sender's payloads appear in
/// the order that sender sent them (gaps are (b)'s business, not this one's).
pub fn fifo_per_sender(traces: &[Trace], work: &[SenderWork]) -> Vec<Violation> {
    // payload -> (sender index, position in that sender's send order)
    let mut origin: HashMap<&str, (usize, usize)> = HashMap::new();
    for (s, w) in work.iter().enumerate() {
        for (i, p) in w.payloads.iter().enumerate() {
            origin.insert(p, (s, i));
        }
    }
    let mut out = Vec::new();
    for trace in traces {
        // sender index -> (position, payload) of its latest delivery
        let mut last: BTreeMap<usize, (usize, &str)> = BTreeMap::new();
        for d in &trace.deliveries {
            let Some(&(s, i)) = origin.get(d.data.as_str()) else {
                continue;
            };
            if let Some(&(prev_i, prev_data)) = last.get(&s) {
                if i <= prev_i && out.len() < MAX_REPORTED {
                    out.push(Violation::FifoBroken {
                        listener: trace.listener.clone(),
                        sender: work[s].label.clone(),
                        delivered_first: prev_data.to_owned(),
                        delivered_after: d.data.clone(),
                    });
                }
            }
            last.insert(s, (i, &d.data));
        }
    }
    out
}

/// (e) Sequence numbers: strictly increasing at each listener, and the same
/// payload carries the same `seq` at every listener.
pub fn seq_consistent(traces: &[Trace]) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut seq_of: HashMap<&str, (&str, u64)> = HashMap::new();
    for trace in traces {
        for (i, pair) in trace.deliveries.windows(2).enumerate() {
            if pair[1].seq <= pair[0].seq && out.len() < MAX_REPORTED {
                out.push(Violation::SeqNotIncreasing {
                    listener: trace.listener.clone(),
                    index: i + 1,
                    previous: pair[0].seq,
                    seq: pair[1].seq,
                });
            }
        }
        for d in &trace.deliveries {
            match seq_of.get(d.data.as_str()) {
                Some(&(l, s)) if s != d.seq && out.len() < MAX_REPORTED => {
                    out.push(Violation::SeqMismatch {
                        data: d.data.clone(),
                        first: (l.to_owned(), s),
                        other: (trace.listener.clone(), d.seq),
                    });
                }
                Some(_) => {}
                None => {
                    seq_of.insert(&d.data, (&trace.listener, d.seq));
                }
            }
        }
    }
    out
}

/// All violations of (a)–(e) together.
pub fn check_all(traces: &[Trace], work: &[SenderWork]) -> Vec<Violation> {
    let mut out = total_order_agreement(traces);
    out.extend(no_loss(traces, work));
    out.extend(no_duplicates(traces));
    out.extend(fifo_per_sender(traces, work));
    out.extend(seq_consistent(traces));
    out
}

/// Panics with every violation listed, if there is any.
pub fn assert_all(traces: &[Trace], work: &[SenderWork]) {
    let violations = check_all(traces, work);
    if !violations.is_empty() {
        let lines: Vec<String> = violations.iter().map(|v| format!("  - {v}")).collect();
        panic!(
            "{} delivery violations:\n{}",
            violations.len(),
            lines.join("\n")
        );
    }
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
