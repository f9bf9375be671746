//! UDP datagrams between daemons.
//!
//! Every datagram starts with an 8-byte header: magic (u16), version (u8),
//! kind (u8), cluster id (u32). Then the body of that kind:
//!
//! | kind | name | sent | body |
//! |---|---|---|---|
//! | 1 | DATA | multicast by a sender (retransmissions too) | group, sender, incarnation, stream start, first seq, count, messages |
//! | 3 | NAK | unicast receiver → sender (or, for a departed sender, → the sequencer's host) | group, from, from inc, sender, sender inc, missing ranges |
//! | 4 | ORDER | multicast by the sequencer | group, sequencer, its inc, view, view start, sequencer start, stable, first global seq, entries |
//! | 5 | ORDER_ACK | unicast member → sequencer | group, from, from inc, sequencer inc, cumulative global seq |
//! | 6 | ORDER_NAK | unicast member → the sequencer's host (or, in a flush, a peer's host) | group, from, from inc, sequencer inc, missing ranges |
//! | 7 | FLUSH_REPORT | unicast survivor → the new sequencer's host | group, view, from, from inc, held through |
//!
//! One DATA datagram carries many small messages; each message is its order
//! code, its sender member name and its payload. Messages in one DATA are
//! consecutive in the sender's stream starting at `first_seq`.
//!
//! Acknowledgement is cumulative over the total order: ORDER_ACK says "I hold
//! the ORDER record and the DATA of every position up to here". The sequencer
//! takes the minimum over the view and announces it as `stable` in every
//! ORDER; senders free what is stable, and `safe` delivery waits for it. An
//! ORDER with no entries is a heartbeat that tells members where the order
//! ends, so a lost tail is noticed and naked.

use super::codec::{Put, Reader};
use super::{DecodeError, MAGIC, VERSION};
use crate::ids::{
    ClusterId, Frag, GlobalSeq, GroupId, Incarnation, NodeId, Order, SenderSeq, ViewId,
};

/// Bytes of the common header.
pub const HEADER_BYTES: usize = 8;
/// Bytes of a DATA body before its messages.
pub const DATA_PREFIX_BYTES: usize = HEADER_BYTES + 4 + 4 + 8 + 8 + 8 + 2;
/// Per-message overhead inside DATA besides name and payload.
pub const DATA_MSG_OVERHEAD_BYTES: usize = 1 + 1 + 2;
/// Most ranges a NAK carries.
pub const NAK_RANGES_MAX: usize = 64;
/// Bytes of one ORDER entry.
pub const ORDER_ENTRY_BYTES: usize = 4 + 8 + 8 + 2;
/// Bytes of an ORDER body before its entries.
pub const ORDER_PREFIX_BYTES: usize = HEADER_BYTES + 4 + 4 + 8 + 8 + 8 + 8 + 8 + 8 + 2;

const KIND_DATA: u8 = 1;
const KIND_NAK: u8 = 3;
const KIND_ORDER: u8 = 4;
const KIND_ORDER_ACK: u8 = 5;
const KIND_ORDER_NAK: u8 = 6;
const KIND_FLUSH_REPORT: u8 = 7;

/// One application message inside a DATA datagram, borrowed from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataMsg<'a> {
    /// The delivery service asked for.
    pub order: Order,
    /// Which piece of its application message this is (in the order
    /// byte's two high bits).
    pub frag: Frag,
    /// The sending member's name (without the node prefix).
    pub sender_name: &'a str,
    /// The payload.
    pub payload: &'a [u8],
}

/// A run of consecutive messages from one sender's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Data<'a> {
    pub group: GroupId,
    pub sender: NodeId,
    pub incarnation: Incarnation,
    /// First position of this stream in this group: where the sequencer
    /// starts ordering a sender it has not heard from before.
    pub stream_start: SenderSeq,
    /// Stream position of `msgs[0]`.
    pub first_seq: SenderSeq,
    pub msgs: Vec<DataMsg<'a>>,
}

/// "Please resend these inclusive ranges of your stream."
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nak {
    pub group: GroupId,
    pub from: NodeId,
    pub from_incarnation: Incarnation,
    /// The stream whose messages are missing.
    pub sender: NodeId,
    pub sender_incarnation: Incarnation,
    pub ranges: Vec<(SenderSeq, SenderSeq)>,
}

/// A run of `count` messages from `sender`'s stream starting at `first`,
/// placed consecutively in the total order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderEntry {
    pub sender: NodeId,
    pub sender_incarnation: Incarnation,
    pub first: SenderSeq,
    pub count: u16,
}

/// A run of the group's total order, from the sequencer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderBatch {
    pub group: GroupId,
    pub sequencer: NodeId,
    pub sequencer_incarnation: Incarnation,
    /// The sequencer's view when it assigned these positions.
    pub view: ViewId,
    /// The first global position the sequencer assigned in `view`: a member
    /// that joined in `view` delivers from here.
    pub view_start: GlobalSeq,
    /// The first position this sequencer assigned in the group: the marker
    /// of the view it took the order over in (1 for the group's first
    /// sequencer). A survivor of a sequencer failover reads the flush cut
    /// from it (`sequencer_start - 1`), whichever view's ORDER reaches it
    /// first.
    pub sequencer_start: GlobalSeq,
    /// Every position up to here is held by every member of the view.
    pub stable: GlobalSeq,
    /// Global position of the first message of `entries[0]` (with no
    /// entries: the next position the sequencer will assign).
    pub first: GlobalSeq,
    pub entries: Vec<OrderEntry>,
}

/// "I hold the ORDER record and the DATA of every position up to `cumulative`."
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderAck {
    pub group: GroupId,
    pub from: NodeId,
    pub from_incarnation: Incarnation,
    pub sequencer_incarnation: Incarnation,
    pub cumulative: GlobalSeq,
}

/// "Please resend these inclusive ranges of the order."
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderNak {
    pub group: GroupId,
    pub from: NodeId,
    pub from_incarnation: Incarnation,
    pub sequencer_incarnation: Incarnation,
    pub ranges: Vec<(GlobalSeq, GlobalSeq)>,
}

/// A survivor's state when the sequencer changes: it holds ORDER and DATA
/// for every position up to `held`, and delivers nothing past it until the
/// new sequencer announces the cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushReport {
    pub group: GroupId,
    /// The view whose sequencer collects the reports.
    pub view: ViewId,
    pub from: NodeId,
    pub from_incarnation: Incarnation,
    pub held: GlobalSeq,
    /// The survivor's order is anchored: it holds every position from its
    /// start on that a member may need from it. A joiner's is not until
    /// what precedes its start was stable once: its `held` may then not
    /// raise the cut (the positions before its start may be the dead
    /// sequencer's alone), but it bounds what is stable.
    pub anchored: bool,
}

/// Any datagram, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datagram<'a> {
    Data(Data<'a>),
    Nak(Nak),
    Order(OrderBatch),
    OrderAck(OrderAck),
    OrderNak(OrderNak),
    FlushReport(FlushReport),
}

impl Datagram<'_> {
    /// The group the datagram belongs to.
    pub fn group(&self) -> GroupId {
        match self {
            Datagram::Data(d) => d.group,
            Datagram::Nak(n) => n.group,
            Datagram::Order(o) => o.group,
            Datagram::OrderAck(a) => a.group,
            Datagram::OrderNak(n) => n.group,
            Datagram::FlushReport(f) => f.group,
        }
    }
}

/// Why a datagram was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    /// Malformed: the sender is broken or hostile.
    Malformed(DecodeError),
    /// Well-formed but from another deployment: ignore silently.
    OtherCluster(ClusterId),
}

fn put_header(out: &mut Vec<u8>, kind: u8, cluster: ClusterId) {
    out.put_u16(MAGIC);
    out.put_u8(VERSION);
    out.put_u8(kind);
    out.put_u32(cluster.0);
}

fn put_seq_ranges(out: &mut Vec<u8>, ranges: impl ExactSizeIterator<Item = (u64, u64)>) {
    out.put_u8(ranges.len().min(NAK_RANGES_MAX) as u8);
    for (a, b) in ranges.take(NAK_RANGES_MAX) {
        out.put_u64(a);
        out.put_u64(b);
    }
}

fn seq_ranges(r: &mut Reader<'_>) -> Result<Vec<(u64, u64)>, DecodeError> {
    let n = r.u8()? as usize;
    if n > NAK_RANGES_MAX {
        return Err(DecodeError::Invalid("nak range count"));
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let a = r.u64()?;
        let b = r.u64()?;
        if a == 0 || b < a {
            return Err(DecodeError::Invalid("nak range"));
        }
        out.push((a, b));
    }
    Ok(out)
}

/// Decodes one datagram. `cluster` is ours: a datagram of another cluster is
/// [`Rejected::OtherCluster`]. Never panics.
pub fn decode(buf: &[u8], cluster: ClusterId) -> Result<Datagram<'_>, Rejected> {
    let mut r = Reader::new(buf);
    let d = decode_inner(&mut r, cluster)?;
    r.finish().map_err(Rejected::Malformed)?;
    Ok(d)
}

fn decode_inner<'a>(r: &mut Reader<'a>, cluster: ClusterId) -> Result<Datagram<'a>, Rejected> {
    let m = Rejected::Malformed;
    let magic = r.u16().map_err(m)?;
    if magic != MAGIC {
        return Err(m(DecodeError::BadMagic(magic)));
    }
    let version = r.u8().map_err(m)?;
    if version != VERSION {
        return Err(m(DecodeError::BadVersion(version)));
    }
    let kind = r.u8().map_err(m)?;
    let their_cluster = ClusterId(r.u32().map_err(m)?);
    let body = decode_body(r, kind).map_err(m)?;
    if their_cluster != cluster {
        return Err(Rejected::OtherCluster(their_cluster));
    }
    Ok(body)
}

fn decode_body<'a>(r: &mut Reader<'a>, kind: u8) -> Result<Datagram<'a>, DecodeError> {
    let group = GroupId(r.u32()?);
    if group.0 == 0 {
        return Err(DecodeError::Invalid("group"));
    }
    match kind {
        KIND_DATA => {
            let sender = NodeId(r.u32()?);
            let incarnation = Incarnation(r.u64()?);
            let stream_start = SenderSeq(r.u64()?);
            let first_seq = SenderSeq(r.u64()?);
            if first_seq.0 == 0 || stream_start.0 == 0 || first_seq < stream_start {
                return Err(DecodeError::Invalid("first seq"));
            }
            let count = r.u16()? as usize;
            // Each message needs at least its overhead: bound the allocation by the input.
            if count == 0 || count * DATA_MSG_OVERHEAD_BYTES > r.remaining() {
                return Err(DecodeError::Invalid("message count"));
            }
            let mut msgs = Vec::with_capacity(count);
            for _ in 0..count {
                let code = r.u8()?;
                let order = Order::from_code(code & 0x3F).ok_or(DecodeError::Invalid("order"))?;
                let sender_name = r.str8("sender name")?;
                let payload = r.bytes16()?;
                msgs.push(DataMsg {
                    order,
                    frag: Frag::from_bits(code),
                    sender_name,
                    payload,
                });
            }
            Ok(Datagram::Data(Data {
                group,
                sender,
                incarnation,
                stream_start,
                first_seq,
                msgs,
            }))
        }
        KIND_NAK => Ok(Datagram::Nak(Nak {
            group,
            from: NodeId(r.u32()?),
            from_incarnation: Incarnation(r.u64()?),
            sender: NodeId(r.u32()?),
            sender_incarnation: Incarnation(r.u64()?),
            ranges: seq_ranges(r)?
                .into_iter()
                .map(|(a, b)| (SenderSeq(a), SenderSeq(b)))
                .collect(),
        })),
        KIND_ORDER => {
            let sequencer = NodeId(r.u32()?);
            let sequencer_incarnation = Incarnation(r.u64()?);
            let view = ViewId(r.u64()?);
            let view_start = GlobalSeq(r.u64()?);
            let sequencer_start = GlobalSeq(r.u64()?);
            let stable = GlobalSeq(r.u64()?);
            let first = GlobalSeq(r.u64()?);
            if first.0 == 0 || view_start.0 == 0 || sequencer_start.0 == 0 || stable >= first {
                return Err(DecodeError::Invalid("global seq"));
            }
            let count = r.u16()? as usize;
            if count * ORDER_ENTRY_BYTES > r.remaining() {
                return Err(DecodeError::Invalid("entry count"));
            }
            let mut entries = Vec::with_capacity(count);
            for _ in 0..count {
                let e = OrderEntry {
                    sender: NodeId(r.u32()?),
                    sender_incarnation: Incarnation(r.u64()?),
                    first: SenderSeq(r.u64()?),
                    count: r.u16()?,
                };
                if e.first.0 == 0 || e.count == 0 {
                    return Err(DecodeError::Invalid("order entry"));
                }
                entries.push(e);
            }
            Ok(Datagram::Order(OrderBatch {
                group,
                sequencer,
                sequencer_incarnation,
                view,
                view_start,
                sequencer_start,
                stable,
                first,
                entries,
            }))
        }
        KIND_ORDER_ACK => Ok(Datagram::OrderAck(OrderAck {
            group,
            from: NodeId(r.u32()?),
            from_incarnation: Incarnation(r.u64()?),
            sequencer_incarnation: Incarnation(r.u64()?),
            cumulative: GlobalSeq(r.u64()?),
        })),
        KIND_ORDER_NAK => Ok(Datagram::OrderNak(OrderNak {
            group,
            from: NodeId(r.u32()?),
            from_incarnation: Incarnation(r.u64()?),
            sequencer_incarnation: Incarnation(r.u64()?),
            ranges: seq_ranges(r)?
                .into_iter()
                .map(|(a, b)| (GlobalSeq(a), GlobalSeq(b)))
                .collect(),
        })),
        KIND_FLUSH_REPORT => Ok(Datagram::FlushReport(FlushReport {
            group,
            view: ViewId(r.u64()?),
            from: NodeId(r.u32()?),
            from_incarnation: Incarnation(r.u64()?),
            held: GlobalSeq(r.u64()?),
            anchored: r.bool("anchored")?,
        })),
        other => Err(DecodeError::UnknownKind(other)),
    }
}

/// Builds a DATA datagram in a caller-owned buffer, one message at a time,
/// so batching needs no intermediate allocation.
#[derive(Debug)]
pub struct DataWriter<'b> {
    out: &'b mut Vec<u8>,
    start: usize,
    count_at: usize,
    count: u16,
    max_bytes: usize,
}

impl<'b> DataWriter<'b> {
    /// Starts a DATA datagram at the end of `out`, limited to `max_bytes`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        out: &'b mut Vec<u8>,
        cluster: ClusterId,
        group: GroupId,
        sender: NodeId,
        incarnation: Incarnation,
        stream_start: SenderSeq,
        first_seq: SenderSeq,
        max_bytes: usize,
    ) -> Self {
        let start = out.len();
        put_header(out, KIND_DATA, cluster);
        out.put_u32(group.0);
        out.put_u32(sender.0);
        out.put_u64(incarnation.0);
        out.put_u64(stream_start.0);
        out.put_u64(first_seq.0);
        let count_at = out.len();
        out.put_u16(0);
        DataWriter {
            out,
            start,
            count_at,
            count: 0,
            max_bytes,
        }
    }

    /// Bytes a message adds to a DATA datagram.
    pub fn msg_bytes(sender_name: &str, payload: &[u8]) -> usize {
        DATA_MSG_OVERHEAD_BYTES + sender_name.len().min(255) + payload.len()
    }

    /// Appends a message if it fits (the first message always fits when it
    /// fits an empty datagram). Returns false when full.
    pub fn push(&mut self, order: Order, frag: Frag, sender_name: &str, payload: &[u8]) -> bool {
        let used = self.out.len() - self.start;
        if self.count == u16::MAX
            || payload.len() > u16::MAX as usize
            || used + Self::msg_bytes(sender_name, payload) > self.max_bytes
        {
            return false;
        }
        self.out.put_u8(order.code() | frag.bits());
        self.out.put_str8(sender_name);
        self.out.put_bytes16(payload);
        self.count += 1;
        true
    }

    /// Messages pushed so far.
    pub fn count(&self) -> u16 {
        self.count
    }

    /// Writes the count. A writer with no message leaves nothing in the buffer.
    pub fn finish(self) -> u16 {
        if self.count == 0 {
            self.out.truncate(self.start);
        } else {
            self.out[self.count_at..self.count_at + 2].copy_from_slice(&self.count.to_be_bytes());
        }
        self.count
    }
}

/// Encodes a datagram other than DATA (DATA goes through [`DataWriter`], or
/// [`encode_data`] in tests).
pub fn encode(d: &Datagram<'_>, cluster: ClusterId, out: &mut Vec<u8>) {
    match d {
        Datagram::Data(data) => encode_data(data, cluster, out),
        Datagram::Nak(n) => {
            put_header(out, KIND_NAK, cluster);
            out.put_u32(n.group.0);
            out.put_u32(n.from.0);
            out.put_u64(n.from_incarnation.0);
            out.put_u32(n.sender.0);
            out.put_u64(n.sender_incarnation.0);
            put_seq_ranges(out, n.ranges.iter().map(|(a, b)| (a.0, b.0)));
        }
        Datagram::Order(o) => {
            put_header(out, KIND_ORDER, cluster);
            out.put_u32(o.group.0);
            out.put_u32(o.sequencer.0);
            out.put_u64(o.sequencer_incarnation.0);
            out.put_u64(o.view.0);
            out.put_u64(o.view_start.0);
            out.put_u64(o.sequencer_start.0);
            out.put_u64(o.stable.0);
            out.put_u64(o.first.0);
            out.put_u16(o.entries.len() as u16);
            for e in &o.entries {
                out.put_u32(e.sender.0);
                out.put_u64(e.sender_incarnation.0);
                out.put_u64(e.first.0);
                out.put_u16(e.count);
            }
        }
        Datagram::OrderAck(a) => {
            put_header(out, KIND_ORDER_ACK, cluster);
            out.put_u32(a.group.0);
            out.put_u32(a.from.0);
            out.put_u64(a.from_incarnation.0);
            out.put_u64(a.sequencer_incarnation.0);
            out.put_u64(a.cumulative.0);
        }
        Datagram::FlushReport(f) => {
            put_header(out, KIND_FLUSH_REPORT, cluster);
            out.put_u32(f.group.0);
            out.put_u64(f.view.0);
            out.put_u32(f.from.0);
            out.put_u64(f.from_incarnation.0);
            out.put_u64(f.held.0);
            out.put_u8(u8::from(f.anchored));
        }
        Datagram::OrderNak(n) => {
            put_header(out, KIND_ORDER_NAK, cluster);
            out.put_u32(n.group.0);
            out.put_u32(n.from.0);
            out.put_u64(n.from_incarnation.0);
            out.put_u64(n.sequencer_incarnation.0);
            put_seq_ranges(out, n.ranges.iter().map(|(a, b)| (a.0, b.0)));
        }
    }
}

/// Encodes a whole DATA (no size limit beyond the u16 count).
pub fn encode_data(d: &Data<'_>, cluster: ClusterId, out: &mut Vec<u8>) {
    let mut w = DataWriter::new(
        out,
        cluster,
        d.group,
        d.sender,
        d.incarnation,
        d.stream_start,
        d.first_seq,
        usize::MAX,
    );
    for m in &d.msgs {
        w.push(m.order, m.frag, m.sender_name, m.payload);
    }
    w.finish();
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const C: ClusterId = ClusterId(7);

    fn order() -> impl Strategy<Value = Order> {
        prop_oneof![Just(Order::Fifo), Just(Order::Total), Just(Order::Safe)]
    }

    fn frag() -> impl Strategy<Value = Frag> {
        prop_oneof![
            Just(Frag::Whole),
            Just(Frag::First),
            Just(Frag::Middle),
            Just(Frag::Last)
        ]
    }

    proptest! {
        #[test]
        fn data_round_trips(
            group in 1u32.., sender: u32, inc: u64, start in 1u64..1000, first in 1000u64..,
            msgs in proptest::collection::vec((order(), frag(), "[a-z0-9-]{0,20}", proptest::collection::vec(any::<u8>(), 0..200)), 1..20)
        ) {
            let d = Data {
                group: GroupId(group), sender: NodeId(sender), incarnation: Incarnation(inc),
                stream_start: SenderSeq(start), first_seq: SenderSeq(first),
                msgs: msgs.iter().map(|(o, f, n, p)| DataMsg { order: *o, frag: *f, sender_name: n, payload: p }).collect(),
            };
            let mut out = Vec::new();
            encode_data(&d, C, &mut out);
            prop_assert_eq!(decode(&out, C), Ok(Datagram::Data(d)));
        }

        #[test]
        fn order_round_trips(
            group in 1u32.., seqr: u32, inc: u64, view: u64, vs in 1u64.., ss in 1u64.., stable in 0u64..1000, first in 1000u64..,
            entries in proptest::collection::vec((any::<u32>(), any::<u64>(), 1u64.., 1u16..), 0..30)
        ) {
            let o = OrderBatch {
                group: GroupId(group), sequencer: NodeId(seqr), sequencer_incarnation: Incarnation(inc),
                view: ViewId(view), view_start: GlobalSeq(vs), sequencer_start: GlobalSeq(ss), stable: GlobalSeq(stable), first: GlobalSeq(first),
                entries: entries.iter().map(|(s, i, f, c)| OrderEntry { sender: NodeId(*s), sender_incarnation: Incarnation(*i), first: SenderSeq(*f), count: *c }).collect(),
            };
            let mut out = Vec::new();
            encode(&Datagram::Order(o.clone()), C, &mut out);
            prop_assert_eq!(decode(&out, C), Ok(Datagram::Order(o)));
        }

        #[test]
        fn small_kinds_round_trip(group in 1u32.., a: u32, b: u64, c: u64, d: u64, anchored: bool,
            ranges in proptest::collection::vec((1u64..1000, 0u64..1000), 0..10)) {
            let ranges: Vec<(u64, u64)> = ranges.into_iter().map(|(x, y)| (x, x + y)).collect();
            let all = vec![
                Datagram::Nak(Nak { group: GroupId(group), from: NodeId(a), from_incarnation: Incarnation(b), sender: NodeId(a ^ 1), sender_incarnation: Incarnation(c), ranges: ranges.iter().map(|(x, y)| (SenderSeq(*x), SenderSeq(*y))).collect() }),
                Datagram::OrderAck(OrderAck { group: GroupId(group), from: NodeId(a), from_incarnation: Incarnation(b), sequencer_incarnation: Incarnation(c), cumulative: GlobalSeq(d) }),
                Datagram::FlushReport(FlushReport { group: GroupId(group), view: ViewId(d), from: NodeId(a), from_incarnation: Incarnation(b), held: GlobalSeq(c), anchored }),
                Datagram::OrderNak(OrderNak { group: GroupId(group), from: NodeId(a), from_incarnation: Incarnation(b), sequencer_incarnation: Incarnation(c), ranges: ranges.iter().map(|(x, y)| (GlobalSeq(*x), GlobalSeq(*y))).collect() }),
            ];
            for dg in all {
                let mut out = Vec::new();
                encode(&dg, C, &mut out);
                prop_assert_eq!(decode(&out, C), Ok(dg));
            }
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes, C);
        }

        #[test]
        fn truncation_is_rejected(cut in 0usize..60) {
            let mut out = Vec::new();
            encode(&Datagram::OrderAck(OrderAck { group: GroupId(1), from: NodeId(2), from_incarnation: Incarnation(3), sequencer_incarnation: Incarnation(4), cumulative: GlobalSeq(5) }), C, &mut out);
            if cut < out.len() {
                prop_assert!(matches!(decode(&out[..cut], C), Err(Rejected::Malformed(_))));
            }
        }
    }

    #[test]
    fn other_cluster_is_told_apart_from_garbage() {
        let mut out = Vec::new();
        encode(
            &Datagram::OrderAck(OrderAck {
                group: GroupId(1),
                from: NodeId(1),
                from_incarnation: Incarnation(1),
                sequencer_incarnation: Incarnation(1),
                cumulative: GlobalSeq(1),
            }),
            ClusterId(99),
            &mut out,
        );
        assert_eq!(decode(&out, C), Err(Rejected::OtherCluster(ClusterId(99))));
        assert!(matches!(
            decode(&out, ClusterId(99)),
            Ok(Datagram::OrderAck(_))
        ));
        out.push(0);
        assert!(matches!(
            decode(&out, ClusterId(99)),
            Err(Rejected::Malformed(DecodeError::Trailing(1)))
        ));
    }

    #[test]
    fn data_writer_respects_the_size_limit() {
        let mut out = Vec::new();
        let mut w = DataWriter::new(
            &mut out,
            C,
            GroupId(1),
            NodeId(1),
            Incarnation(1),
            SenderSeq(1),
            SenderSeq(1),
            100,
        );
        let mut n = 0;
        while w.push(Order::Total, Frag::Whole, "m", &[0u8; 10]) {
            n += 1;
        }
        assert_eq!(w.finish(), n);
        assert!(out.len() <= 100);
        assert_eq!(
            n as usize,
            (100 - DATA_PREFIX_BYTES) / DataWriter::msg_bytes("m", &[0u8; 10])
        );
    }
}
