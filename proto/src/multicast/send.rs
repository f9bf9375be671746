//! The sender's side of a stream: accepted messages, numbered, kept until stable.

use crate::ids::{GlobalSeq, MemberId, Order, SenderSeq};
use crate::time::{Duration, Instant};
use std::collections::VecDeque;

/// One accepted message, kept until the group's order declares it stable.
#[derive(Debug, Clone)]
pub struct OutMsg {
    pub order: Order,
    pub member: MemberId,
    pub sender_name: String,
    pub payload: Vec<u8>,
    /// Position in the total order, once the sender has seen its ORDER record.
    pub gseq: Option<GlobalSeq>,
    /// Last (re)transmission; None until first sent.
    pub sent_at: Option<Instant>,
}

/// A sender's stream in one group.
///
/// Messages live in `msgs` from `base` (oldest not yet stable) to
/// `next_seq - 1`. The first `window` of them may be in flight; the rest wait.
/// `capacity` bounds what is accepted at all: beyond it the app is not read
/// (back-pressure), so nothing accepted is ever dropped.
#[derive(Debug)]
pub struct SendStream {
    stream_start: SenderSeq,
    base: SenderSeq,
    next_unsent: SenderSeq,
    msgs: VecDeque<OutMsg>,
    window: usize,
    capacity: usize,
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

    /// True while another message can be accepted.
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

    /// Accepts a message; returns its position. Callers check `can_accept`.
    pub fn push(
        &mut self,
        order: Order,
        member: MemberId,
        name: &str,
        payload: Vec<u8>,
    ) -> SenderSeq {
        let seq = self.next_seq();
        self.msgs.push_back(OutMsg {
            order,
            member,
            sender_name: name.to_owned(),
            payload,
            gseq: None,
            sent_at: None,
        });
        seq
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

    /// Positions accepted but never sent that the window allows to send now.
    pub fn sendable(&self) -> Option<(SenderSeq, SenderSeq)> {
        let window_end = self.base.0 + self.window as u64; // exclusive
        let end = window_end.min(self.next_seq().0);
        (self.next_unsent.0 < end).then(|| (self.next_unsent, SenderSeq(end - 1)))
    }

    /// Marks `seq` (re)transmitted at `now`.
    pub fn mark_sent(&mut self, seq: SenderSeq, now: Instant) {
        if let Some(m) = self.get_mut(seq) {
            m.sent_at = Some(now);
        }
        if seq >= self.next_unsent {
            self.next_unsent = seq.next();
        }
    }

    /// Records the total-order position the sequencer gave `seq`.
    pub fn mark_ordered(&mut self, seq: SenderSeq, gseq: GlobalSeq) {
        if let Some(m) = self.get_mut(seq) {
            m.gseq = Some(gseq);
        }
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
    /// a prefix: the sequencer orders a stream in stream order.
    pub fn release_stable(&mut self, stable: GlobalSeq) -> usize {
        let mut n = 0;
        while let Some(m) = self.msgs.front() {
            match m.gseq {
                Some(g) if g <= stable => {
                    self.msgs.pop_front();
                    self.base = self.base.next();
                    n += 1;
                }
                _ => break,
            }
        }
        if self.next_unsent < self.base {
            self.next_unsent = self.base;
        }
        n
    }

    /// Sent messages the sequencer has not ordered and that were last sent
    /// before `now - rto`: the sequencer may have lost them.
    pub fn due_for_retransmit(&self, now: Instant, rto: Duration) -> Vec<SenderSeq> {
        let mut out = Vec::new();
        for (i, m) in self.msgs.iter().enumerate() {
            let seq = SenderSeq(self.base.0 + i as u64);
            if seq >= self.next_unsent {
                break;
            }
            if m.gseq.is_none() && m.sent_at.is_some_and(|t| t + rto <= now) {
                out.push(seq);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_with(n: u64) -> SendStream {
        let mut s = SendStream::new(SenderSeq(1), 4);
        for i in 0..n {
            s.push(Order::Total, MemberId(1), "m", vec![i as u8]);
        }
        s
    }

    #[test]
    fn window_limits_what_is_sendable() {
        let mut s = stream_with(6);
        assert_eq!(s.sendable(), Some((SenderSeq(1), SenderSeq(4))));
        for q in 1..=4 {
            s.mark_sent(SenderSeq(q), Instant::ZERO);
        }
        assert_eq!(s.sendable(), None);
        s.mark_ordered(SenderSeq(1), GlobalSeq(10));
        s.mark_ordered(SenderSeq(2), GlobalSeq(11));
        assert_eq!(s.release_stable(GlobalSeq(10)), 1);
        assert_eq!(s.sendable(), Some((SenderSeq(5), SenderSeq(5))));
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
        s.mark_ordered(SenderSeq(2), GlobalSeq(5));
        assert_eq!(s.release_stable(GlobalSeq(100)), 0);
        s.mark_ordered(SenderSeq(1), GlobalSeq(4));
        assert_eq!(s.release_stable(GlobalSeq(100)), 2);
        assert_eq!(
            s.get(SenderSeq(3)).map(|m| m.payload.clone()),
            Some(vec![2])
        );
    }

    #[test]
    fn only_unordered_old_messages_are_retransmitted() {
        let mut s = stream_with(3);
        let t0 = Instant::ZERO;
        s.mark_sent(SenderSeq(1), t0);
        s.mark_sent(SenderSeq(2), t0);
        s.mark_ordered(SenderSeq(1), GlobalSeq(1));
        let rto = Duration::from_millis(50);
        assert!(s
            .due_for_retransmit(t0 + Duration::from_millis(10), rto)
            .is_empty());
        assert_eq!(s.due_for_retransmit(t0 + rto, rto), vec![SenderSeq(2)]);
    }
}
