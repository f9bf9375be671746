//! Sending repairs: our own stream (first sends and retransmissions),
//! another node's messages we hold (its sender is gone), and ORDER records
//! we know (a peer missed them, or a new sequencer catches up in a flush).

use super::GroupState;
use crate::ids::{ClusterId, GlobalSeq, SenderSeq};
use crate::multicast::StreamKey;
use crate::time::Instant;
use crate::wire::datagram::{
    self, DataWriter, Datagram, OrderBatch, OrderEntry, DATA_MSG_OVERHEAD_BYTES, DATA_PREFIX_BYTES,
    ORDER_ENTRY_BYTES, ORDER_PREFIX_BYTES,
};
use std::collections::VecDeque;
use std::net::SocketAddrV4;

impl GroupState {
    /// Packs messages of our stream into DATA datagrams: `seqs` runs of
    /// positions, each datagram of consecutive positions.
    #[allow(clippy::too_many_arguments)]
    pub fn pack_data(
        &mut self,
        now: Instant,
        cluster: crate::ids::ClusterId,
        max_bytes: usize,
        lo: SenderSeq,
        hi: SenderSeq,
        dest: SocketAddrV4,
        out: &mut VecDeque<(SocketAddrV4, Vec<u8>)>,
        pool: &mut Vec<Vec<u8>>,
    ) {
        let mut seq = lo;
        while seq <= hi {
            let mut buf = pool.pop().unwrap_or_default();
            buf.clear();
            let mut w = DataWriter::new(
                &mut buf,
                cluster,
                self.id,
                self.me.node,
                self.me.incarnation,
                self.send.stream_start(),
                seq,
                max_bytes,
            );
            let first = seq;
            while seq <= hi {
                let Some(m) = self.send.get(seq) else { break };
                if !w.push(m.order, &m.sender_name, &m.payload) {
                    break;
                }
                seq = seq.next();
            }
            let n = w.finish();
            if n == 0 {
                // Too big for a datagram even alone: cannot happen for
                // messages the host accepted (it checks the size).
                log::error!("group {}: message {first} does not fit a datagram", self.id);
                seq = seq.next();
                pool.push(buf);
                continue;
            }
            for q in first.0..seq.0 {
                self.send.mark_sent(SenderSeq(q), now);
            }
            out.push_back((dest, buf));
        }
    }

    /// Repairs a peer with messages of another node's stream that this node
    /// holds (the sender is gone). Consecutive held positions share a DATA.
    #[allow(clippy::too_many_arguments)]
    pub fn pack_repair(
        &self,
        cluster: crate::ids::ClusterId,
        max_bytes: usize,
        key: StreamKey,
        lo: SenderSeq,
        hi: SenderSeq,
        dest: SocketAddrV4,
        out: &mut VecDeque<(SocketAddrV4, Vec<u8>)>,
    ) {
        let mut seq = lo;
        let limit = SenderSeq(hi.0.min(lo.0 + self.limits.receive_window as u64));
        while seq <= limit {
            let Some(first) = self.held_message(key, seq) else {
                seq = seq.next();
                continue;
            };
            // The sender may allow larger datagrams than this node: a
            // message that fits no datagram of ours still goes, alone, in
            // one as large as its sender's (or no one could ever repair it).
            let max_bytes = max_bytes.max(
                DATA_PREFIX_BYTES
                    + DATA_MSG_OVERHEAD_BYTES
                    + first.sender_name.len().min(255)
                    + first.payload.len(),
            );
            let mut buf = Vec::with_capacity(max_bytes);
            let mut w = DataWriter::new(
                &mut buf,
                cluster,
                self.id,
                key.node,
                key.incarnation,
                seq,
                seq,
                max_bytes,
            );
            while seq <= limit {
                let Some(m) = self.held_message(key, seq) else {
                    break;
                };
                if !w.push(m.order, &m.sender_name, &m.payload) {
                    break;
                }
                seq = seq.next();
            }
            if w.finish() == 0 {
                seq = seq.next();
                continue;
            }
            out.push_back((dest, buf));
        }
    }

    /// The ORDER record at `g` if this node knows it: undelivered ones from
    /// the log, delivered ones (markers too) until they are stable.
    pub fn record(&self, g: GlobalSeq) -> Option<(StreamKey, SenderSeq)> {
        if g >= self.order.next() {
            return self.order.entry(g);
        }
        let &(first, _, _) = self.retained_order.front()?;
        let i = g.0.checked_sub(first.0)?;
        let &(at, key, seq) = self.retained_order.get(usize::try_from(i).ok()?)?;
        (at == g).then_some((key, seq))
    }

    /// Answers an ORDER_NAK with the records this node knows, as ORDER
    /// batches in the name of the group's current sequencer.
    pub fn pack_order_repair(
        &self,
        cluster: ClusterId,
        max_bytes: usize,
        ranges: &[(GlobalSeq, GlobalSeq)],
        dest: SocketAddrV4,
        out: &mut VecDeque<(SocketAddrV4, Vec<u8>)>,
    ) {
        let max_entries = (max_bytes.saturating_sub(ORDER_PREFIX_BYTES) / ORDER_ENTRY_BYTES).max(1);
        let sequencer_incarnation = self
            .nodes
            .get(&self.sequencer)
            .map(|n| n.incarnation)
            .unwrap_or_default();
        for &(lo, hi) in ranges {
            let hi = GlobalSeq(hi.0.min(lo.0 + self.limits.receive_window as u64));
            let mut g = lo;
            while g <= hi {
                let first = g;
                let mut entries: Vec<OrderEntry> = Vec::new();
                while g <= hi && entries.len() < max_entries {
                    let Some((key, seq)) = self.record(g) else {
                        break;
                    };
                    match entries.last_mut() {
                        Some(l)
                            if l.sender == key.node
                                && l.sender_incarnation == key.incarnation
                                && l.first.0 + u64::from(l.count) == seq.0
                                && l.count < u16::MAX =>
                        {
                            l.count += 1
                        }
                        _ => entries.push(OrderEntry {
                            sender: key.node,
                            sender_incarnation: key.incarnation,
                            first: seq,
                            count: 1,
                        }),
                    }
                    g = g.next();
                }
                if entries.is_empty() {
                    g = g.next();
                    continue;
                }
                let batch = OrderBatch {
                    group: self.id,
                    sequencer: self.sequencer,
                    sequencer_incarnation,
                    view: self.view,
                    // The installed view's real start: a survivor in a flush
                    // reads the cut from it.
                    view_start: self.view_start(),
                    sequencer_start: self.sequencer_start,
                    stable: self.order.stable().min(GlobalSeq(first.0 - 1)),
                    first,
                    entries,
                };
                let mut buf = Vec::with_capacity(max_bytes);
                datagram::encode(&Datagram::Order(batch), cluster, &mut buf);
                out.push_back((dest, buf));
            }
        }
    }
}
