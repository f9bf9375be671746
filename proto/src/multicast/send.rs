//! The sender's side of a stream: accepted messages, numbered, kept until stable.

use crate::ids::{Frag, GlobalSeq, MemberId, Order, SenderSeq};
use crate::time::{Duration, Instant};
use crate::wire::datagram::DATA_MSG_OVERHEAD_BYTES;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Arc;

/// One accepted message, kept until the group's order declares it stable.
#[derive(Debug, Clone)]
pub struct OutMsg {
    pub order: Order,
    /// Which piece of its application message this is.
    pub frag: Frag,
    pub member: MemberId,
    pub sender_name: Arc<str>,
    pub payload: Bytes,
    /// Position in the total order, once the sender has seen its ORDER record.
    pub gseq: Option<GlobalSeq>,
    /// Last (re)transmission; None until first sent.
    pub sent_at: Option<Instant>,
}

impl OutMsg {
    /// What the message weighs in a DATA datagram (the flow window counts it).
    pub fn wire_bytes(&self) -> usize {
        DATA_MSG_OVERHEAD_BYTES + self.sender_name.len().min(255) + self.payload.len()
    }
}

/// A sender's stream in one group.
///
/// Messages live in `msgs` from `base` (oldest not yet stable) to
/// `next_seq - 1`. The first `window` of them may be in flight, and no more
/// bytes than the flow window the caller gives [`SendStream::sendable`]; the
/// rest wait. `capacity` bounds what is accepted at all: beyond it the app is
/// not read (back-pressure), so nothing accepted is ever dropped.
#[derive(Debug)]
pub struct SendStream {
    stream_start: SenderSeq,
    base: SenderSeq,
    next_unsent: SenderSeq,
    msgs: VecDeque<OutMsg>,
    window: usize,
    capacity: usize,
    /// Bytes of the messages sent and not yet stable (`base..next_unsent`).
    in_flight_bytes: usize,
    /// Tail probes sent since the sequencer last ordered one of ours: each
    /// doubles the wait before the next (a sequencer that is down or cut
    /// off for seconds gets a few probes, not one per interval).
    probes_unanswered: u32,
}

impl SendStream {
    /// A stream whose first message will be `start`.
    pub fn new(start: SenderSeq, window: usize) -> Self {
        SendStream {
            stream_start: start,
            base: start,
            next_unsent: start,
            msgs: VecDeque::new(),
            window: window.max(1),
            capacity: window.max(1) * 2,
            in_flight_bytes: 0,
            probes_unanswered: 0,
        }
    }

    /// Where this stream began (carried in every DATA).
    pub fn stream_start(&self) -> SenderSeq {
        self.stream_start
    }

    /// The position the next accepted message gets.
    pub fn next_seq(&self) -> SenderSeq {
        SenderSeq(self.base.0 + self.msgs.len() as u64)
    }

    /// True while another message can be accepted. A message of many
    /// pieces is accepted whole, so the stream may hold up to one
    /// message's pieces past `capacity` (bounded by the largest message).
    pub fn can_accept(&self) -> bool {
        self.msgs.len() < self.capacity
    }

    /// Messages accepted and not yet stable.
    pub fn len(&self) -> usize {
        self.msgs.len()
    }

    /// True when everything accepted is stable.
    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// Accepts a message (or one piece of one); returns its position.
    /// Callers check `can_accept` before a message's first piece.
    pub fn push(
        &mut self,
        order: Order,
        frag: Frag,
        member: MemberId,
        name: &Arc<str>,
        payload: Bytes,
    ) -> SenderSeq {
        let seq = self.next_seq();
        self.msgs.push_back(OutMsg {
            order,
            frag,
            member,
            sender_name: Arc::clone(name),
            payload,
            gseq: None,
            sent_at: None,
        });
        seq
    }

    /// The messages not yet stable, oldest first, with the first's position.
    pub fn unstable(&self) -> (SenderSeq, impl Iterator<Item = &OutMsg>) {
        (self.base, self.msgs.iter())
    }

    /// The message at `seq`, if still held.
    pub fn get(&self, seq: SenderSeq) -> Option<&OutMsg> {
        let i = seq.0.checked_sub(self.base.0)?;
        self.msgs.get(usize::try_from(i).ok()?)
    }

    fn get_mut(&mut self, seq: SenderSeq) -> Option<&mut OutMsg> {
        let i = seq.0.checked_sub(self.base.0)?;
        self.msgs.get_mut(usize::try_from(i).ok()?)
    }

    /// Positions accepted but never sent that the windows allow to send
    /// now: at most `window` messages from the oldest unstable one, and at
    /// most `window_bytes` in flight (sent, not yet stable). A message larger
    /// than the whole byte window still goes once nothing else is in flight.
    ///
    /// With `finish_message`, the rest of a message whose first pieces
    /// went out goes regardless of the windows: a view's marker waits for
    /// it at the sequencer, and a member waiting for that view before it
    /// acks would otherwise hold back the stability the windows wait for.
    pub fn sendable(
        &self,
        window_bytes: usize,
        finish_message: bool,
    ) -> Option<(SenderSeq, SenderSeq)> {
        let window_end = self.base.0 + self.window as u64; // exclusive
        let mut budget = window_bytes.saturating_sub(self.in_flight_bytes);
        let mut seq = self.next_unsent;
        while seq < self.next_seq() {
            let Some(m) = self.get(seq) else {
                break;
            };
            let bytes = m.wire_bytes();
            if finish_message && m.frag.continues() {
                budget = budget.saturating_sub(bytes);
                seq = seq.next();
                continue;
            }
            let alone = seq == self.next_unsent && self.in_flight_bytes == 0;
            if seq.0 >= window_end || (bytes > budget && !alone) {
                break;
            }
            budget = budget.saturating_sub(bytes);
            seq = seq.next();
        }
        (seq > self.next_unsent).then(|| (self.next_unsent, SenderSeq(seq.0 - 1)))
    }

    /// What messages `lo..=hi` weigh in DATA.
    pub fn wire_bytes(&self, lo: SenderSeq, hi: SenderSeq) -> usize {
        let mut n = 0;
        let mut seq = lo;
        while seq <= hi {
            n += self.get(seq).map_or(0, OutMsg::wire_bytes);
            seq = seq.next();
        }
        n
    }

    /// The first message never sent (everything before it went out once).
    pub fn next_unsent(&self) -> SenderSeq {
        self.next_unsent
    }

    /// Bytes sent and not yet stable.
    pub fn in_flight_bytes(&self) -> usize {
        self.in_flight_bytes
    }

    /// Marks `seq` (re)transmitted at `now`.
    pub fn mark_sent(&mut self, seq: SenderSeq, now: Instant) {
        if let Some(m) = self.get_mut(seq) {
            m.sent_at = Some(now);
        }
        while self.next_unsent <= seq {
            let bytes = self.get(self.next_unsent).map_or(0, OutMsg::wire_bytes);
            self.in_flight_bytes += bytes;
            self.next_unsent = self.next_unsent.next();
        }
    }

    /// Records the total-order position the sequencer gave `seq`.
    pub fn mark_ordered(&mut self, seq: SenderSeq, gseq: GlobalSeq) {
        if let Some(m) = self.get_mut(seq) {
            m.gseq = Some(gseq);
        }
        self.probes_unanswered = 0;
    }

    /// Forgets positions past `cut` (a new sequencer orders those again).
    pub fn unmark_ordered_after(&mut self, cut: GlobalSeq) {
        for m in &mut self.msgs {
            if m.gseq.is_some_and(|g| g > cut) {
                m.gseq = None;
            }
        }
    }

    /// Frees every message whose position is at or below `stable`. They form
    /// a prefix: the sequencer orders a stream in stream order. Returns the
    /// bytes freed of those that were in flight.
    pub fn release_stable(&mut self, stable: GlobalSeq) -> usize {
        let mut freed = 0;
        while let Some(m) = self.msgs.front() {
            match m.gseq {
                Some(g) if g <= stable => {
                    if self.base < self.next_unsent {
                        freed += m.wire_bytes();
                    }
                    self.msgs.pop_front();
                    self.base = self.base.next();
                }
                _ => break,
            }
        }
        self.in_flight_bytes = self.in_flight_bytes.saturating_sub(freed);
        if self.next_unsent < self.base {
            self.next_unsent = self.base;
        }
        freed
    }

    /// Every sent message the sequencer has not ordered, last sent before
    /// `now - rto`, as one run (the planted retransmission storm).
    #[cfg(feature = "planted")]
    pub fn unordered_due(&self, now: Instant, rto: Duration) -> Option<(SenderSeq, SenderSeq)> {
        let due = |(i, m): (usize, &OutMsg)| {
            let seq = SenderSeq(self.base.0 + i as u64);
            (seq < self.next_unsent
                && m.gseq.is_none()
                && m.sent_at.is_some_and(|t| t + rto <= now))
            .then_some(seq)
        };
        let first = self.msgs.iter().enumerate().find_map(due)?;
        let last = self.msgs.iter().enumerate().rev().find_map(due)?;
        Some((first, last))
    }

    /// The tail probe: the last message sent that the sequencer has not
    /// ordered, if it was last sent before `now - rto`. Receivers NAK any
    /// gap below the highest message they saw, so only a lost tail needs the
    /// sender to act; resending that one message (not the whole unordered
    /// run, which a busy sequencer may simply not have reached yet) shows
    /// everyone where the stream ends.
    /// The wait doubles with each probe the sequencer has not answered by
    /// ordering something of ours, up to 32 intervals.
    pub fn tail_probe_due(&self, now: Instant, rto: Duration) -> Option<SenderSeq> {
        let last = SenderSeq(self.next_unsent.0.checked_sub(1)?);
        let m = self.get(last)?;
        let wait = Duration::from_micros(rto.as_micros() << self.probes_unanswered.min(5));
        (m.gseq.is_none() && m.sent_at.is_some_and(|t| t + wait <= now)).then_some(last)
    }

    /// A tail probe went out.
    pub fn note_probe(&mut self) {
        self.probes_unanswered = self.probes_unanswered.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_with(n: u64) -> SendStream {
        let mut s = SendStream::new(SenderSeq(1), 4);
        for i in 0..n {
            s.push(
                Order::Total,
                Frag::Whole,
                MemberId(1),
                &Arc::from("m"),
                Bytes::from(vec![i as u8]),
            );
        }
        s
    }

    const ANY: usize = usize::MAX;

    #[test]
    fn window_limits_what_is_sendable() {
        let mut s = stream_with(6);
        assert_eq!(s.sendable(ANY, false), Some((SenderSeq(1), SenderSeq(4))));
        for q in 1..=4 {
            s.mark_sent(SenderSeq(q), Instant::ZERO);
        }
        assert_eq!(s.sendable(ANY, false), None);
        s.mark_ordered(SenderSeq(1), GlobalSeq(10));
        s.mark_ordered(SenderSeq(2), GlobalSeq(11));
        assert!(s.release_stable(GlobalSeq(10)) > 0);
        assert_eq!(s.sendable(ANY, false), Some((SenderSeq(5), SenderSeq(5))));
    }

    #[test]
    fn the_byte_window_bounds_what_is_in_flight() {
        let mut s = stream_with(4);
        let one = s.get(SenderSeq(1)).map_or(0, OutMsg::wire_bytes);
        assert_eq!(
            s.sendable(2 * one, false),
            Some((SenderSeq(1), SenderSeq(2)))
        );
        s.mark_sent(SenderSeq(1), Instant::ZERO);
        s.mark_sent(SenderSeq(2), Instant::ZERO);
        assert_eq!(s.in_flight_bytes(), 2 * one);
        assert_eq!(s.sendable(2 * one, false), None, "the window is full");
        s.mark_ordered(SenderSeq(1), GlobalSeq(1));
        assert_eq!(s.release_stable(GlobalSeq(1)), one);
        assert_eq!(
            s.sendable(2 * one, false),
            Some((SenderSeq(3), SenderSeq(3)))
        );
        // A window smaller than one message still lets one go when idle.
        let mut t = stream_with(1);
        assert_eq!(t.sendable(1, false), Some((SenderSeq(1), SenderSeq(1))));
        t.mark_sent(SenderSeq(1), Instant::ZERO);
        assert_eq!(t.sendable(1, false), None);
    }

    #[test]
    fn capacity_bounds_acceptance() {
        let s = stream_with(8);
        assert!(!s.can_accept());
        assert_eq!(s.next_seq(), SenderSeq(9));
    }

    #[test]
    fn release_stops_at_first_unordered() {
        let mut s = stream_with(3);
        for q in 1..=3 {
            s.mark_sent(SenderSeq(q), Instant::ZERO);
        }
        let one = s.get(SenderSeq(1)).map_or(0, OutMsg::wire_bytes);
        s.mark_ordered(SenderSeq(2), GlobalSeq(5));
        assert_eq!(s.release_stable(GlobalSeq(100)), 0);
        assert_eq!(s.len(), 3);
        s.mark_ordered(SenderSeq(1), GlobalSeq(4));
        assert_eq!(s.release_stable(GlobalSeq(100)), 2 * one);
        assert_eq!((s.len(), s.in_flight_bytes()), (1, one));
        assert_eq!(
            s.get(SenderSeq(3)).map(|m| m.payload.clone()),
            Some(Bytes::from(vec![2]))
        );
    }

    #[test]
    fn only_an_old_unordered_tail_is_probed() {
        let mut s = stream_with(4);
        let t0 = Instant::ZERO;
        for q in 1..=3 {
            s.mark_sent(SenderSeq(q), t0);
        }
        s.mark_ordered(SenderSeq(1), GlobalSeq(1));
        let rto = Duration::from_millis(50);
        assert_eq!(s.tail_probe_due(t0 + Duration::from_millis(10), rto), None);
        // 2 and 3 are unordered: only the last sent, 3, is resent.
        assert_eq!(s.tail_probe_due(t0 + rto, rto), Some(SenderSeq(3)));
        s.mark_sent(SenderSeq(3), t0 + rto);
        s.note_probe();
        assert_eq!(s.tail_probe_due(t0 + rto, rto), None, "once per interval");
        let two = t0 + Duration::from_millis(149);
        assert_eq!(
            s.tail_probe_due(two, rto),
            None,
            "unanswered: twice as long"
        );
        let three = t0 + Duration::from_millis(150);
        assert_eq!(s.tail_probe_due(three, rto), Some(SenderSeq(3)));
        s.mark_ordered(SenderSeq(2), GlobalSeq(2));
        s.mark_ordered(SenderSeq(3), GlobalSeq(3));
        let later = t0 + Duration::from_millis(400);
        assert_eq!(s.tail_probe_due(later, rto), None, "all ordered");
    }
}
