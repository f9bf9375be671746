//! The receiver's side of one sender's stream.

use crate::ids::{Frag, Order, SenderSeq};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Arc;

/// A message received and not yet delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub order: Order,
    /// Which piece of its application message this is.
    pub frag: Frag,
    /// Shared by the stream's messages from one member (no copy each).
    pub sender_name: Arc<str>,
    /// Shared with the retained copy and every local member's delivery.
    pub payload: Bytes,
}

/// Outcome of offering a received message to the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// New, stored.
    Stored,
    /// Already held or already delivered: dropped.
    Duplicate,
    /// Before the position this receiver is responsible for: dropped.
    BeforeBase,
    /// Beyond the receive window: dropped (the sender will resend).
    BeyondWindow,
}

/// One sender's stream at a receiver.
///
/// `slots[i]` holds position `origin + i`. Until the base (first position
/// this receiver must deliver) is known, `origin` is the lowest position seen
/// so far; once known, `origin == next_deliver`.
#[derive(Debug)]
pub struct RecvStream {
    base: Option<SenderSeq>,
    origin: SenderSeq,
    slots: VecDeque<Option<Held>>,
    window: usize,
    /// Highest position known to exist (seen in DATA or named by ORDER).
    highest_needed: SenderSeq,
    /// Next position to report to the local sequencer (sequencer node only).
    pub reported: SenderSeq,
    /// One past the highest position the group's order named.
    ordered_end: SenderSeq,
    /// The highest stream start the sender's DATA announced: it sends
    /// nothing before it (a new attachment of the sender to the group).
    announced_start: SenderSeq,
    /// Planted bug (tests only): a late copy of a delivered message is held
    /// again as the next to deliver.
    #[cfg(feature = "planted")]
    forget_delivered: bool,
    /// The last sender name seen on this stream, shared by its messages.
    name: Option<Arc<str>>,
    /// Positions up to here are held even past the window (a new sequencer
    /// catching up to its flush cut; see `OrderLog::reach_through`).
    reach: SenderSeq,
}

impl RecvStream {
    /// A stream with unknown base, holding at most `window` positions.
    pub fn new(window: usize) -> Self {
        RecvStream {
            base: None,
            origin: SenderSeq(0),
            slots: VecDeque::new(),
            window: window.max(1),
            highest_needed: SenderSeq(0),
            reported: SenderSeq(0),
            ordered_end: SenderSeq(0),
            announced_start: SenderSeq(0),
            #[cfg(feature = "planted")]
            forget_delivered: false,
            name: None,
            reach: SenderSeq(0),
        }
    }

    /// `name` as a shared string: the stream's last one when equal (a
    /// stream's messages mostly come from one member or a few).
    pub fn name(&mut self, name: &str) -> Arc<str> {
        match &self.name {
            Some(n) if &**n == name => Arc::clone(n),
            _ => {
                let n: Arc<str> = Arc::from(name);
                self.name = Some(Arc::clone(&n));
                n
            }
        }
    }

    /// The first position this receiver delivers, once known.
    pub fn base(&self) -> Option<SenderSeq> {
        self.base
    }

    /// Next position to deliver (meaningful once the base is known).
    pub fn next_deliver(&self) -> SenderSeq {
        self.origin
    }

    /// Sets the base; drops anything held before it. Ignored once set.
    pub fn set_base(&mut self, base: SenderSeq) {
        if self.base.is_some() {
            return;
        }
        self.base = Some(base);
        if self.slots.is_empty() {
            self.origin = base;
        } else if base > self.origin {
            let drop = (base.0 - self.origin.0) as usize;
            for _ in 0..drop.min(self.slots.len()) {
                self.slots.pop_front();
            }
            self.origin = base;
        } else {
            for _ in 0..(self.origin.0 - base.0) {
                self.slots.push_front(None);
            }
            self.origin = base;
        }
        self.reported = self.reported.max(base);
    }

    /// Forgets the base (keeping what is held): the order this receiver
    /// follows starts over elsewhere, and its next ORDER record for this
    /// sender sets the base again. Only for a receiver that delivered
    /// nothing of this stream (see `GroupState::restart_order_at`).
    pub fn forget_base(&mut self) {
        self.base = None;
    }

    /// Plants the bug that forgets delivered messages (see
    /// `host::planted`); a no-op in builds without the `planted` feature.
    pub fn plant_forget_delivered(&mut self, on: bool) {
        #[cfg(feature = "planted")]
        {
            self.forget_delivered = on;
        }
        #[cfg(not(feature = "planted"))]
        let _ = on;
    }

    fn forgets_delivered(&self) -> bool {
        #[cfg(feature = "planted")]
        return self.forget_delivered;
        #[cfg(not(feature = "planted"))]
        false
    }

    /// Offers a received message.
    pub fn offer(&mut self, seq: SenderSeq, msg: Held) -> Accept {
        if self.base.is_none() && self.slots.is_empty() {
            self.origin = seq;
        }
        if seq < self.origin && self.forgets_delivered() && self.base.is_some_and(|b| seq >= b) {
            for _ in seq.0..self.origin.0 {
                self.slots.push_front(None);
            }
            self.origin = seq;
        }
        if seq < self.origin {
            if self.base.is_some() {
                return if self.base.is_some_and(|b| seq < b) {
                    Accept::BeforeBase
                } else {
                    Accept::Duplicate
                };
            }
            // Base unknown: extend the holding area backwards, within the window.
            let grow = (self.origin.0 - seq.0) as usize;
            if grow + self.slots.len() > self.window {
                return Accept::BeyondWindow;
            }
            for _ in 0..grow {
                self.slots.push_front(None);
            }
            self.origin = seq;
        }
        let i = (seq.0 - self.origin.0) as usize;
        if i >= self.window && seq > self.reach {
            // Not kept, but known to exist: once the window moves up to it,
            // it is naked like any gap (the sender probes only its tail).
            self.highest_needed = self.highest_needed.max(seq);
            return Accept::BeyondWindow;
        }
        while self.slots.len() <= i {
            self.slots.push_back(None);
        }
        self.highest_needed = self.highest_needed.max(seq);
        match &mut self.slots[i] {
            Some(_) => Accept::Duplicate,
            slot => {
                *slot = Some(msg);
                Accept::Stored
            }
        }
    }

    /// True if `seq` is held (received, not yet delivered).
    pub fn holds(&self, seq: SenderSeq) -> bool {
        self.peek(seq).is_some()
    }

    /// Holds positions up to `seq` even past the window (they are ordered
    /// before a flush cut this node must reach).
    pub fn reach_through(&mut self, seq: SenderSeq) {
        self.reach = self.reach.max(seq);
    }

    /// The message at `seq`, if held.
    pub fn peek(&self, seq: SenderSeq) -> Option<&Held> {
        let i = seq.0.checked_sub(self.origin.0)?;
        self.slots.get(usize::try_from(i).ok()?)?.as_ref()
    }

    /// Takes the next message in stream order (base must be known).
    pub fn pop_next(&mut self) -> Option<Held> {
        self.base?;
        match self.slots.front() {
            Some(Some(_)) => {
                let m = self.slots.pop_front().flatten();
                self.origin = self.origin.next();
                m
            }
            _ => None,
        }
    }

    /// Moves the next position to deliver up to `seq`, dropping what is
    /// held before it: those positions were never ordered and never will
    /// be (their sender left the group with them unstable, and its next
    /// attachment goes on after them).
    pub fn skip_to(&mut self, seq: SenderSeq) {
        if self.base.is_none() || seq <= self.origin {
            return;
        }
        let n = usize::try_from(seq.0 - self.origin.0).unwrap_or(usize::MAX);
        for _ in 0..n.min(self.slots.len()) {
            self.slots.pop_front();
        }
        self.origin = seq;
        self.reported = self.reported.max(seq);
    }

    /// Notes that `seq` exists (named by an ORDER record).
    pub fn need(&mut self, seq: SenderSeq) {
        self.highest_needed = self.highest_needed.max(seq);
        self.ordered_end = self.ordered_end.max(seq.next());
    }

    /// The sender's DATA says its stream starts at `start`.
    pub fn note_start(&mut self, start: SenderSeq) {
        self.announced_start = self.announced_start.max(start);
    }

    /// The highest stream start the sender announced.
    pub fn announced_start(&self) -> SenderSeq {
        self.announced_start
    }

    /// True when every position the group's order named is delivered.
    pub fn order_delivered(&self) -> bool {
        self.ordered_end <= self.origin
    }

    /// End (exclusive) of the run of held positions starting at the next
    /// position to deliver: everything before it is held or delivered.
    pub fn contiguous_end(&self) -> SenderSeq {
        self.contiguous_end_from(self.origin)
    }

    /// The same, knowing that everything before `from` is held or
    /// delivered: only what lies past it is looked at (the sequencer's host
    /// asks after every datagram; walking the whole window each time cost
    /// as much as delivery).
    pub fn contiguous_end_from(&self, from: SenderSeq) -> SenderSeq {
        let skip = (from.0.saturating_sub(self.origin.0) as usize).min(self.slots.len());
        // `range` starts there at once (`iter().skip()` walked every slot
        // before it: a tenth of the sequencer host's CPU under load).
        let n = self.slots.range(skip..).take_while(|s| s.is_some()).count();
        SenderSeq(self.origin.0.max(from.0) + n as u64)
    }

    /// Where messages end in `first..end` (positions already delivered
    /// are passed over: they were ordered before).
    pub fn shape(&self, first: SenderSeq, end: SenderSeq) -> super::receivers::RunShape {
        let first_end = (first.0..end.0)
            .find(|&p| {
                self.peek(SenderSeq(p))
                    .is_some_and(|m| m.frag.ends_message())
            })
            .map(|p| SenderSeq(p + 1));
        let open_at_end = end.0 > first.0
            && self
                .peek(SenderSeq(end.0 - 1))
                .is_some_and(|m| !m.frag.ends_message());
        super::receivers::RunShape {
            first_end,
            open_at_end,
        }
    }

    /// Positions known to exist but not held, from the next to deliver on,
    /// within the window (what lies beyond could not be kept yet).
    pub fn missing(&self, max: usize) -> Vec<u64> {
        if self.base.is_none() {
            return Vec::new();
        }
        let mut out = Vec::new();
        let window_last = (self.origin.0 + self.window as u64 - 1).max(self.reach.0);
        let last = self.highest_needed.0.min(window_last);
        let mut seq = self.origin.0;
        while seq <= last && out.len() < max {
            if !self.holds(SenderSeq(seq)) {
                out.push(seq);
            }
            seq += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(b: u8) -> Held {
        Held {
            order: Order::Total,
            frag: Frag::Whole,
            sender_name: "m".into(),
            payload: Bytes::from(vec![b]),
        }
    }

    #[test]
    fn out_of_order_arrivals_are_delivered_in_order() {
        let mut r = RecvStream::new(16);
        r.set_base(SenderSeq(1));
        assert_eq!(r.offer(SenderSeq(2), held(2)), Accept::Stored);
        assert_eq!(r.pop_next(), None);
        assert_eq!(r.missing(10), vec![1]);
        assert_eq!(r.offer(SenderSeq(1), held(1)), Accept::Stored);
        assert_eq!(r.contiguous_end(), SenderSeq(3));
        assert_eq!(r.pop_next(), Some(held(1)));
        assert_eq!(r.pop_next(), Some(held(2)));
        assert_eq!(r.offer(SenderSeq(2), held(2)), Accept::Duplicate);
    }

    #[test]
    fn a_joiner_holds_early_data_until_its_base_is_known() {
        let mut r = RecvStream::new(16);
        assert_eq!(r.offer(SenderSeq(7), held(7)), Accept::Stored);
        assert_eq!(r.offer(SenderSeq(5), held(5)), Accept::Stored);
        assert_eq!(r.pop_next(), None, "no delivery before the base is known");
        r.set_base(SenderSeq(6));
        assert_eq!(r.missing(10), vec![6]);
        assert_eq!(r.offer(SenderSeq(5), held(5)), Accept::BeforeBase);
        assert_eq!(r.offer(SenderSeq(6), held(6)), Accept::Stored);
        assert_eq!(r.pop_next(), Some(held(6)));
        assert_eq!(r.pop_next(), Some(held(7)));
    }

    #[test]
    fn the_window_bounds_memory() {
        let mut r = RecvStream::new(4);
        r.set_base(SenderSeq(1));
        assert_eq!(r.offer(SenderSeq(5), held(5)), Accept::BeyondWindow);
        assert_eq!(r.offer(SenderSeq(4), held(4)), Accept::Stored);
    }
}
