//! The trace: one compact line per event, formatted only when tracing is on
//! (batch runs pay nothing for it). The legend is in tests/README.md.

use crate::world::Micros;
use chorus_proto::wire::datagram::{self, Datagram, Rejected};
use chorus_proto::ClusterId;
use std::collections::VecDeque;
use std::fmt::{self, Write as _};

/// The cluster every simulated node belongs to.
pub fn cluster() -> ClusterId {
    chorus_proto::cluster_id_from_name("chorus-sim")
}

/// Where trace lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceMode {
    /// Nothing is formatted.
    Off,
    /// Every line is printed to stdout as it happens.
    Print,
    /// The last `n` lines are kept (printed with a failure).
    Ring(usize),
}

/// The trace of one run.
#[derive(Debug)]
pub struct Trace {
    mode: TraceMode,
    now: Micros,
    ring: VecDeque<String>,
}

impl Trace {
    /// A trace in `mode`.
    pub fn new(mode: TraceMode) -> Trace {
        Trace {
            mode,
            now: 0,
            ring: VecDeque::new(),
        }
    }

    /// True when lines are wanted (callers test this before formatting).
    pub fn on(&self) -> bool {
        self.mode != TraceMode::Off
    }

    /// Sets the time stamped on the following lines.
    pub fn set_now(&mut self, now: Micros) {
        self.now = now;
    }

    /// Adds one line.
    pub fn line(&mut self, args: fmt::Arguments<'_>) {
        let mut s = String::with_capacity(96);
        let _ = write!(
            s,
            "{:>4}.{:06} {}",
            self.now / 1_000_000,
            self.now % 1_000_000,
            args
        );
        match self.mode {
            TraceMode::Off => {}
            TraceMode::Print => println!("{s}"),
            TraceMode::Ring(n) => {
                if self.ring.len() == n {
                    self.ring.pop_front();
                }
                self.ring.push_back(s);
            }
        }
    }

    /// The kept lines (ring mode).
    pub fn tail(&self) -> impl Iterator<Item = &String> {
        self.ring.iter()
    }
}

/// A short description of a datagram's contents. A sealed one (as the
/// network carries it) shows its session and counter, which the sender's
/// `tx` line does not: match them by time and sender.
pub fn datagram(bytes: &[u8]) -> String {
    use chorus_proto::wire::seal::{KIND_SEALED, SEALED_HEADER_BYTES};
    if bytes.get(3) == Some(&KIND_SEALED) && bytes.len() >= SEALED_HEADER_BYTES {
        let mut c = [0u8; 8];
        c.copy_from_slice(&bytes[24..32]);
        return format!(
            "sealed s{:02x}{:02x} #{} ({} bytes)",
            bytes[8],
            bytes[12],
            u64::from_be_bytes(c),
            bytes.len()
        );
    }
    match datagram::decode(bytes, cluster()) {
        Ok(Datagram::Data(d)) => format!(
            "DATA g{} n{}/{} seq {}..{} start {}",
            d.group,
            d.sender,
            d.incarnation,
            d.first_seq,
            d.first_seq.0 + d.msgs.len() as u64,
            d.stream_start
        ),
        Ok(Datagram::Nak(n)) => format!(
            "NAK g{} from n{} for n{}/{} {:?}",
            n.group,
            n.from,
            n.sender,
            n.sender_incarnation,
            n.ranges.iter().map(|(a, b)| (a.0, b.0)).collect::<Vec<_>>()
        ),
        Ok(Datagram::Order(o)) => {
            let runs: Vec<String> = o
                .entries
                .iter()
                .map(|e| {
                    format!(
                        "n{}/{}:{}+{}",
                        e.sender, e.sender_incarnation, e.first, e.count
                    )
                })
                .collect();
            format!(
                "ORDER g{} seq n{} v{} vstart {} sstart {} stable {} first {} [{}]",
                o.group,
                o.sequencer,
                o.view,
                o.view_start,
                o.sequencer_start,
                o.stable,
                o.first,
                runs.join(" ")
            )
        }
        Ok(Datagram::OrderAck(a)) => format!(
            "ORDER_ACK g{} from n{} cum {}",
            a.group, a.from, a.cumulative
        ),
        Ok(Datagram::OrderNak(n)) => format!(
            "ORDER_NAK g{} from n{} {:?}",
            n.group,
            n.from,
            n.ranges.iter().map(|(a, b)| (a.0, b.0)).collect::<Vec<_>>()
        ),
        Ok(other) => format!("{other:?}"),
        Err(Rejected::Malformed(e)) => format!("malformed ({e})"),
        Err(Rejected::OtherCluster(c)) => format!("other cluster {c}"),
    }
}
