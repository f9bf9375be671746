//! A group's receive side at one member: every sender's stream as this
//! member holds it, and the NAKs for what is missing in them.

use super::recv::{Accept, Held, RecvStream};
use super::{to_ranges, StreamKey};
use crate::ids::{GroupId, Incarnation, NodeId, SenderSeq};
use crate::time::{Duration, Instant};
use crate::wire::datagram::{Data, NAK_RANGES_MAX};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::net::SocketAddrV4;

/// A stream's missing positions, as NAK ranges, due to go to `dest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NakDue {
    pub dest: SocketAddrV4,
    pub stream: StreamKey,
    pub ranges: Vec<(SenderSeq, SenderSeq)>,
}

/// `part`, which lies inside `raw`, as the same range of `copy` (a copy of
/// `raw`); a part from elsewhere gets a copy of its own.
fn slice_of(raw: &[u8], copy: &Bytes, part: &[u8]) -> Bytes {
    let start = (part.as_ptr() as usize).wrapping_sub(raw.as_ptr() as usize);
    match start.checked_add(part.len()) {
        Some(end) if start <= raw.len() && end <= raw.len() && copy.len() == raw.len() => {
            copy.slice(start..end)
        }
        _ => Bytes::copy_from_slice(part),
    }
}

/// How a run of held positions lies against its messages' ends (pieces of
/// a large message are consecutive positions; see [`crate::ids::Frag`]).
/// The sequencer needs it to put a view marker only between messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunShape {
    /// Exclusive end of the first message that ends in the run (None: no
    /// piece of the run ends a message).
    pub first_end: Option<SenderSeq>,
    /// The run's last piece leaves its message unfinished.
    pub open_at_end: bool,
}

impl RunShape {
    /// A run of whole messages from `first`.
    pub fn whole(first: SenderSeq) -> RunShape {
        RunShape {
            first_end: Some(first.next()),
            open_at_end: false,
        }
    }
}

/// A run of a stream held at the sequencer's node, to be ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    pub stream: StreamKey,
    pub first: SenderSeq,
    pub end: SenderSeq,
    pub shape: RunShape,
}

/// What one DATA datagram brought: whether it was news, and how many of its
/// messages the streams dropped, by reason. The counts only report the
/// streams' decisions (for `chorusctl stats`); nothing acts on them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataOutcome {
    /// A message was stored, or (at the sequencer) a stream's start learned.
    pub news: bool,
    /// Messages already held or delivered ([`Accept::Duplicate`]).
    pub duplicate: u64,
    /// Messages past the receive window ([`Accept::BeyondWindow`]).
    pub beyond_window: u64,
    /// Messages before the stream's base ([`Accept::BeforeBase`]).
    pub before_base: u64,
}

/// Every sender's stream of one group at this member (our own included:
/// we deliver our own messages too).
#[derive(Debug)]
pub struct Receivers {
    me: StreamKey,
    streams: BTreeMap<StreamKey, RecvStream>,
    /// When each stream's gaps were last naked (one NAK per stream per
    /// retransmission interval).
    nak_sent_at: BTreeMap<StreamKey, Instant>,
    receive_window: usize,
    send_window: usize,
    /// Pieces of our largest message: our own stream holds them on top.
    max_message_pieces: usize,
    /// Pieces of a peer's largest message: other streams hold them on top.
    peer_message_pieces: usize,
    /// Planted bug (tests only; see `host::planted`).
    forget_delivered: bool,
}

impl Receivers {
    /// The streams of a group where our own stream is `me`.
    pub fn new(
        me: StreamKey,
        receive_window: usize,
        send_window: usize,
        max_message_pieces: usize,
        peer_message_pieces: usize,
        forget_delivered: bool,
    ) -> Receivers {
        Receivers {
            me,
            streams: BTreeMap::new(),
            nak_sent_at: BTreeMap::new(),
            receive_window,
            send_window,
            max_message_pieces,
            peer_message_pieces,
            forget_delivered,
        }
    }

    /// The stream `key`, created empty if new.
    pub fn stream(&mut self, key: StreamKey) -> &mut RecvStream {
        // Our own stream holds every accepted message not yet delivered
        // here: the unstable ones (up to the send capacity) and stable ones
        // whose delivery waits (at most a receive window of positions),
        // and the pieces of a large message accepted past the capacity.
        // Another's holds its window and the rest of a message (its sender
        // finishes one regardless of windows while a view waits).
        let extra = if key == self.me {
            2 * self.send_window + self.max_message_pieces
        } else {
            self.peer_message_pieces
        };
        let window = self.receive_window + extra;
        let forget = self.forget_delivered;
        self.streams.entry(key).or_insert_with(|| {
            let mut r = RecvStream::new(window);
            r.plant_forget_delivered(forget);
            r
        })
    }

    /// The stream `key`, if known.
    pub fn get(&self, key: &StreamKey) -> Option<&RecvStream> {
        self.streams.get(key)
    }

    /// The stream `key`, if known.
    pub fn get_mut(&mut self, key: &StreamKey) -> Option<&mut RecvStream> {
        self.streams.get_mut(key)
    }

    /// Every stream, by key.
    pub fn iter(&self) -> impl Iterator<Item = (&StreamKey, &RecvStream)> {
        self.streams.iter()
    }

    /// Every stream forgets where it starts (the order starts over).
    pub fn forget_bases(&mut self) {
        for s in self.streams.values_mut() {
            s.forget_base();
        }
    }

    /// A message of our own, accepted from a local app.
    pub fn offer_own(&mut self, start: SenderSeq, seq: SenderSeq, held: Held) {
        let me = self.me;
        let s = self.stream(me);
        s.set_base(start);
        s.offer(seq, held);
    }

    /// Takes in a DATA datagram from another node. Its outcome is news if
    /// it brought a message, or (with `learn_start`, at the sequencer)
    /// where a stream starts; the messages not kept are counted by reason.
    /// Our own DATA (looped back by multicast) is passed over uncounted.
    ///
    /// `raw` is the datagram `d` was decoded from: payloads are kept as
    /// slices of one copy of it.
    pub fn on_data(
        &mut self,
        d: &Data<'_>,
        raw: &[u8],
        learn_start: bool,
        group: GroupId,
    ) -> DataOutcome {
        let mut out = DataOutcome::default();
        let key = StreamKey {
            node: d.sender,
            incarnation: d.incarnation,
        };
        if key == self.me {
            return out;
        }
        let s = self.stream(key);
        s.note_start(d.stream_start);
        // A sequencer that has seen nothing of a stream ordered learns where
        // it begins from its DATA. That is news even when every message in the
        // datagram is held already: a new sequencer that held a sender's
        // whole burst before it took over learns the start only from the
        // sender's retransmission, and must then report the burst to its
        // sequencer (nothing else may ever come to make it look again).
        if learn_start && s.base().is_none() {
            log::debug!(
                "group {group}: stream {}/{} starts at {} (as its DATA says)",
                key.node,
                key.incarnation,
                d.stream_start
            );
            s.set_base(d.stream_start);
            out.news = true;
        } else if learn_start && d.stream_start > s.reported && s.order_delivered() {
            // The sender attached again and goes on after a gap: what it
            // had not made stable was lost with its old attachment, and
            // nothing before its new start will come (or be ordered).
            log::debug!(
                "group {group}: stream {}/{} goes on at {} (as its DATA says)",
                key.node,
                key.incarnation,
                d.stream_start
            );
            s.skip_to(d.stream_start);
            s.reported = s.reported.max(d.stream_start);
            out.news = true;
        }
        // One copy of the datagram that every payload in it slices (no
        // allocation per message).
        let shared = Bytes::copy_from_slice(raw);
        for (i, m) in d.msgs.iter().enumerate() {
            let seq = SenderSeq(d.first_seq.0 + i as u64);
            let held = Held {
                order: m.order,
                frag: m.frag,
                sender_name: s.name(m.sender_name),
                payload: slice_of(raw, &shared, m.payload),
            };
            match s.offer(seq, held) {
                Accept::Stored => out.news = true,
                Accept::Duplicate => out.duplicate += 1,
                Accept::BeyondWindow => out.beyond_window += 1,
                Accept::BeforeBase => out.before_base += 1,
            }
        }
        out
    }

    /// Runs held in sender order that the local sequencer has not been told
    /// of, as (stream, first, end), for the streams of `latest` (a departed
    /// node's later messages are not ordered; a joiner's wait until its
    /// view is known here). Our own stream is reported only up to
    /// `own_sent_end` (exclusive): a message the flow window still holds
    /// back would be ordered before any member could have it, and every
    /// member would NAK it.
    pub fn arrivals(
        &mut self,
        latest: &[(NodeId, Incarnation)],
        own_sent_end: SenderSeq,
    ) -> Vec<Arrival> {
        let mut out = Vec::new();
        for (key, s) in &mut self.streams {
            if s.base().is_none() || !latest.contains(&(key.node, key.incarnation)) {
                continue;
            }
            // What was reported is held or delivered: look past it only.
            let mut end = s.contiguous_end_from(s.reported);
            if *key == self.me {
                end = end.min(own_sent_end);
            }
            if end > s.reported {
                out.push(Arrival {
                    stream: *key,
                    first: s.reported,
                    end,
                    shape: s.shape(s.reported, end),
                });
                s.reported = end;
            }
        }
        out
    }

    /// NAKs due now: for each other stream with gaps, at most one per
    /// retransmission interval, to the node `dest` names for it (its sender,
    /// or the host that repairs for a departed one; none: not naked).
    pub fn naks_due(
        &mut self,
        now: Instant,
        rto: Duration,
        mut dest: impl FnMut(StreamKey) -> Option<SocketAddrV4>,
    ) -> Vec<NakDue> {
        let mut out = Vec::new();
        for (key, s) in &self.streams {
            if *key == self.me {
                continue;
            }
            let missing = s.missing(NAK_RANGES_MAX * 8);
            if missing.is_empty() {
                continue;
            }
            let due = self.nak_sent_at.get(key).is_none_or(|t| *t + rto <= now);
            let Some(to) = dest(*key) else {
                continue;
            };
            if due {
                self.nak_sent_at.insert(*key, now);
                out.push(NakDue {
                    dest: to,
                    stream: *key,
                    ranges: to_ranges(missing, NAK_RANGES_MAX)
                        .into_iter()
                        .map(|(a, b)| (SenderSeq(a), SenderSeq(b)))
                        .collect(),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{Frag, Order};
    use crate::wire::datagram::DataMsg;

    const G: GroupId = GroupId(1);

    fn key(n: u32) -> StreamKey {
        StreamKey {
            node: NodeId(n),
            incarnation: Incarnation(1),
        }
    }

    /// DATA from `sender` whose stream starts at `start`: `count` messages
    /// from `first`.
    fn data(sender: u32, start: u64, first: u64, count: usize) -> Data<'static> {
        Data {
            group: G,
            sender: NodeId(sender),
            incarnation: Incarnation(1),
            stream_start: SenderSeq(start),
            first_seq: SenderSeq(first),
            msgs: (0..count)
                .map(|_| DataMsg {
                    order: Order::Total,
                    frag: Frag::Whole,
                    sender_name: "app",
                    payload: b"x",
                })
                .collect(),
        }
    }

    fn news() -> DataOutcome {
        DataOutcome {
            news: true,
            ..DataOutcome::default()
        }
    }

    #[test]
    fn dropped_messages_are_counted_by_reason_and_nothing_else_changes() {
        // We are node 1; a receive window of 4 positions.
        let mut rx = Receivers::new(key(1), 4, 4, 1, 0, false);
        assert_eq!(rx.on_data(&data(2, 1, 1, 2), &[], false, G), news());
        // The same DATA again: both messages held already.
        let again = rx.on_data(&data(2, 1, 1, 2), &[], false, G);
        assert_eq!(
            again,
            DataOutcome {
                duplicate: 2,
                ..DataOutcome::default()
            }
        );
        // Position 9 is past the window (1..=4); 3 is new.
        let mixed = rx.on_data(&data(2, 1, 3, 1), &[], false, G);
        assert_eq!(mixed, news());
        let past = rx.on_data(&data(2, 1, 9, 1), &[], false, G);
        assert_eq!(
            past,
            DataOutcome {
                beyond_window: 1,
                ..DataOutcome::default()
            }
        );
        let s = rx.get(&key(2)).expect("stream of node 2");
        assert!((1..=3).all(|p| s.holds(SenderSeq(p))));
        assert!(!s.holds(SenderSeq(9)));
        assert_eq!(s.base(), None, "a receiver learns the base from ORDER");

        // At the sequencer, DATA names the stream's start (5): what lies
        // before it is not ours to deliver; learning the start is news.
        let early = rx.on_data(&data(3, 5, 3, 3), &[], true, G);
        assert_eq!(
            early,
            DataOutcome {
                news: true,
                before_base: 2,
                ..DataOutcome::default()
            }
        );
        assert_eq!(
            rx.get(&key(3)).and_then(RecvStream::base),
            Some(SenderSeq(5))
        );

        // Our own DATA, looped back by multicast: not a drop.
        assert_eq!(
            rx.on_data(&data(1, 1, 1, 3), &[], false, G),
            DataOutcome::default()
        );
    }
}
