//! The event queue: every input the simulated cluster sees is an [`Ev`]
//! scheduled at a virtual time. Events at the same time run in the order
//! they were scheduled (an insertion counter breaks ties), so a run depends
//! on nothing but its seed.

use chorus_proto::directory::ConnId;
use chorus_proto::order::sequencer::SequencerInput;
use chorus_proto::wire::directory::{FromDirectory, ToDirectory};
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::net::SocketAddrV4;
use std::rc::Rc;

/// Virtual time in microseconds since the run began.
pub type Micros = u64;

/// Which socket of a node a datagram arrives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// The data socket and the group sockets: handled by the host.
    Data,
    /// The sequencer's socket: ORDER_ACK and ORDER_NAK.
    Order,
}

/// Something that happens at a node, the directory or the network.
#[derive(Debug)]
pub enum Ev {
    /// A datagram reaches `node` on `port`: from the network, or from the
    /// attacker (`forged`: what it did to a datagram it captured).
    Datagram {
        node: usize,
        port: Port,
        from: SocketAddrV4,
        bytes: Rc<[u8]>,
        forged: Option<crate::adversary::Mutation>,
    },
    /// The host hands its sequencer an input (the channel between chorusd's
    /// IO thread and sequencer thread).
    SeqInput {
        node: usize,
        incarnation: u64,
        input: SequencerInput,
    },
    /// The node's TCP connection to the directory opens.
    DirConnect { node: usize },
    /// A frame from a node reaches the directory.
    ToDir { conn: ConnId, frame: ToDirectory },
    /// A frame from the directory reaches a node.
    FromDir {
        node: usize,
        conn: ConnId,
        frame: FromDirectory,
    },
    /// The directory closed a node's connection.
    DirClosed { node: usize, conn: ConnId },
    /// A planned process fault (see `plan::ProcessFault`).
    Process { index: usize },
    /// A crashed node starts again with a new incarnation.
    Restart { node: usize },
    /// A paused node runs again (see `plan::ProcessFault::Pause`).
    Resume { node: usize },
}

impl Ev {
    /// The node whose daemon takes this event in, if one does.
    pub fn node(&self) -> Option<usize> {
        match self {
            Ev::Datagram { node, .. }
            | Ev::SeqInput { node, .. }
            | Ev::DirConnect { node }
            | Ev::FromDir { node, .. }
            | Ev::DirClosed { node, .. } => Some(*node),
            Ev::ToDir { .. } | Ev::Process { .. } | Ev::Restart { .. } | Ev::Resume { .. } => None,
        }
    }
}

struct Entry {
    at: Micros,
    counter: u64,
    ev: Ev,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.counter) == (other.at, other.counter)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    // Reversed: BinaryHeap is a max-heap and we want the earliest first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.counter).cmp(&(self.at, self.counter))
    }
}

/// The queue and the virtual clock.
#[derive(Default)]
pub struct Sched {
    heap: BinaryHeap<Entry>,
    counter: u64,
    /// The current virtual time.
    pub now: Micros,
}

impl std::fmt::Debug for Sched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sched(now={}, queued={})", self.now, self.heap.len())
    }
}

impl Sched {
    /// Schedules `ev` at `at` (never before now).
    pub fn at(&mut self, at: Micros, ev: Ev) {
        self.counter += 1;
        self.heap.push(Entry {
            at: at.max(self.now),
            counter: self.counter,
            ev,
        });
    }

    /// When the earliest queued event is due.
    pub fn peek_time(&self) -> Option<Micros> {
        self.heap.peek().map(|e| e.at)
    }

    /// Removes the earliest event (the caller advances the clock).
    pub fn pop(&mut self) -> Option<(Micros, Ev)> {
        self.heap.pop().map(|e| (e.at, e.ev))
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_then_insertion_order() {
        let mut s = Sched::default();
        s.at(5, Ev::DirConnect { node: 1 });
        s.at(3, Ev::DirConnect { node: 2 });
        s.at(5, Ev::DirConnect { node: 3 });
        let order: Vec<usize> = std::iter::from_fn(|| s.pop())
            .map(|(_, e)| match e {
                Ev::DirConnect { node } => node,
                _ => 0,
            })
            .collect();
        assert_eq!(order, vec![2, 1, 3]);
    }
}
