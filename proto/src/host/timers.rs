//! The host's timers as data: one deadline per kind of timer. The driver
//! sleeps until the earliest ([`Timers::next`]); the host fires the kinds
//! that are due.

use crate::time::Instant;
use std::collections::BTreeMap;

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// The groups' periodic work (every `ack_interval` while the host takes
    /// part in a group): acks, NAKs, flush reports, retransmission of what
    /// the sequencer has not ordered, and detaching idle groups.
    Tick,
    /// A group's DATA waits to fill a datagram (see `host::BUNDLE_WAIT`).
    Bundle,
    /// A request waiting on the directory reaches its bound (see
    /// `host::waits`).
    DirectoryWait,
}

/// One deadline per timer kind.
#[derive(Debug, Default)]
pub struct Timers {
    deadlines: BTreeMap<Timer, Instant>,
}

impl Timers {
    /// Sets (or moves) the deadline of `kind`.
    pub fn set(&mut self, kind: Timer, at: Instant) {
        self.deadlines.insert(kind, at);
    }

    /// Sets the deadline of `kind` to `at`, unless it is due earlier.
    pub fn set_earliest(&mut self, kind: Timer, at: Instant) {
        let e = self.deadlines.entry(kind).or_insert(at);
        *e = (*e).min(at);
    }

    /// True while `kind` has a deadline.
    pub fn is_armed(&self, kind: Timer) -> bool {
        self.deadlines.contains_key(&kind)
    }

    /// If `kind` is due at `now`, disarms it and returns true.
    pub fn take_due(&mut self, kind: Timer, now: Instant) -> bool {
        match self.deadlines.get(&kind) {
            Some(&at) if at <= now => {
                self.deadlines.remove(&kind);
                true
            }
            _ => false,
        }
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.deadlines.values().min().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Duration;

    #[test]
    fn a_deadline_fires_once_when_due() {
        let mut t = Timers::default();
        let at = Instant::ZERO + Duration::from_millis(20);
        assert_eq!(t.next(), None);
        t.set(Timer::Tick, at);
        assert_eq!(t.next(), Some(at));
        assert!(!t.take_due(Timer::Tick, Instant::ZERO), "not yet");
        assert!(t.take_due(Timer::Tick, at));
        assert!(!t.is_armed(Timer::Tick));
        assert!(!t.take_due(Timer::Tick, at), "fired once");
    }

    #[test]
    fn the_earliest_deadline_wins() {
        let mut t = Timers::default();
        let ms = |n| Instant::ZERO + Duration::from_millis(n);
        t.set(Timer::Tick, ms(10));
        t.set_earliest(Timer::Bundle, ms(5));
        t.set_earliest(Timer::Bundle, ms(7));
        assert_eq!(t.next(), Some(ms(5)));
        assert!(t.take_due(Timer::Bundle, ms(5)));
        assert_eq!(t.next(), Some(ms(10)));
    }
}
