//! Packing DATA datagrams: first sends and retransmissions of our own
//! stream, and repairs of another node's messages we hold (its sender is
//! gone). Consecutive positions share a datagram, as many as fit.

use super::recv::Held;
use super::send::SendStream;
use super::StreamKey;
use crate::ids::{ClusterId, GroupId, SenderSeq};
use crate::time::Instant;
use crate::wire::datagram::{DataWriter, DATA_MSG_OVERHEAD_BYTES, DATA_PREFIX_BYTES};
use std::net::SocketAddrV4;

/// What every DATA datagram of one group carries and may weigh.
#[derive(Debug, Clone, Copy)]
pub struct Packer {
    pub cluster: ClusterId,
    pub group: GroupId,
    pub max_bytes: usize,
}

impl Packer {
    /// Packs messages `lo..=hi` of our stream `me` into DATA datagrams to
    /// `dest`, marks them sent, and hands each datagram to `emit`.
    #[allow(clippy::too_many_arguments)]
    pub fn own(
        &self,
        send: &mut SendStream,
        me: StreamKey,
        now: Instant,
        lo: SenderSeq,
        hi: SenderSeq,
        dest: SocketAddrV4,
        pool: &mut Vec<Vec<u8>>,
        emit: &mut impl FnMut(SocketAddrV4, Vec<u8>),
    ) {
        let mut seq = lo;
        while seq <= hi {
            let mut buf = pool.pop().unwrap_or_default();
            buf.clear();
            let mut w = DataWriter::new(
                &mut buf,
                self.cluster,
                self.group,
                me.node,
                me.incarnation,
                send.stream_start(),
                seq,
                self.max_bytes,
            );
            let first = seq;
            while seq <= hi {
                let Some(m) = send.get(seq) else { break };
                if !w.push(m.order, m.frag, &m.sender_name, &m.payload) {
                    break;
                }
                seq = seq.next();
            }
            let n = w.finish();
            if n == 0 {
                // Too big for a datagram even alone: cannot happen for
                // messages the host accepted (it checks the size).
                log::error!(
                    "group {}: message {first} does not fit a datagram",
                    self.group
                );
                seq = seq.next();
                pool.push(buf);
                continue;
            }
            for q in first.0..seq.0 {
                send.mark_sent(SenderSeq(q), now);
            }
            emit(dest, buf);
        }
    }

    /// Repairs a peer with messages `lo..=hi` (at most `window` of them) of
    /// another node's stream `key`, as `held` finds them here.
    ///
    /// Each DATA speaks for the sender as its own retransmission would: its
    /// stream start is `announced`, the start the sender's DATA announced
    /// here. A receiver takes a start past what it reported as the sender
    /// attached again and skips to it, so a start made up here (the first
    /// message this node happens to hold) would make it pass over messages
    /// it still lacks. Only if the sender announced nothing here (`None`)
    /// does a DATA start at its first message.
    #[allow(clippy::too_many_arguments)]
    pub fn held<'a>(
        &self,
        held: impl Fn(SenderSeq) -> Option<&'a Held>,
        key: StreamKey,
        announced: Option<SenderSeq>,
        window: usize,
        lo: SenderSeq,
        hi: SenderSeq,
        dest: SocketAddrV4,
        emit: &mut impl FnMut(SocketAddrV4, Vec<u8>),
    ) {
        let mut seq = lo;
        let limit = SenderSeq(hi.0.min(lo.0 + window as u64));
        while seq <= limit {
            let Some(first) = held(seq) else {
                seq = seq.next();
                continue;
            };
            // The sender may allow larger datagrams than this node: a
            // message that fits no datagram of ours still goes, alone, in
            // one as large as its sender's (or no one could ever repair it).
            let max_bytes = self.max_bytes.max(
                DATA_PREFIX_BYTES
                    + DATA_MSG_OVERHEAD_BYTES
                    + first.sender_name.len().min(255)
                    + first.payload.len(),
            );
            let mut buf = Vec::with_capacity(max_bytes);
            let mut w = DataWriter::new(
                &mut buf,
                self.cluster,
                self.group,
                key.node,
                key.incarnation,
                announced.unwrap_or(seq),
                seq,
                max_bytes,
            );
            while seq <= limit {
                let Some(m) = held(seq) else {
                    break;
                };
                if !w.push(m.order, m.frag, &m.sender_name, &m.payload) {
                    break;
                }
                seq = seq.next();
            }
            if w.finish() == 0 {
                seq = seq.next();
                continue;
            }
            emit(dest, buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{Frag, Incarnation, NodeId, Order};
    use crate::wire::datagram::{decode, Datagram};
    use bytes::Bytes;
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    /// DATA of a repair, decoded: (stream start, first seq, messages).
    fn repair(announced: Option<SenderSeq>, held_from: u64) -> Vec<(u64, u64, usize)> {
        let packer = Packer {
            cluster: ClusterId(7),
            group: GroupId(1),
            max_bytes: 1400,
        };
        let key = StreamKey {
            node: NodeId(3),
            incarnation: Incarnation(1),
        };
        let msg = Held {
            order: Order::Fifo,
            frag: Frag::Whole,
            sender_name: Arc::from("a2"),
            payload: Bytes::from_static(b"x"),
        };
        let mut out = Vec::new();
        packer.held(
            |seq| (seq.0 >= held_from).then_some(&msg),
            key,
            announced,
            64,
            SenderSeq(11),
            SenderSeq(23),
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7001),
            &mut |_, b| out.push(b),
        );
        out.iter()
            .map(|b| match decode(b, ClusterId(7)) {
                Ok(Datagram::Data(d)) => (d.stream_start.0, d.first_seq.0, d.msgs.len()),
                other => panic!("not a DATA: {other:?}"),
            })
            .collect()
    }

    /// A host that joined late holds a sender's messages from 21 only, and
    /// is asked for 11..=23. Its repair must say where the sender's stream
    /// starts, as the sender's own DATA did (1): a start of 21 would make
    /// a receiver that reported less skip 11..=20 as if the sender had
    /// attached again (simulator seed 5989 with the attacker).
    #[test]
    fn a_repair_carries_the_start_the_sender_announced() {
        assert_eq!(repair(Some(SenderSeq(1)), 21), vec![(1, 21, 3)]);
        // Nothing announced here (cannot happen for a stream held): the
        // first message repaired.
        assert_eq!(repair(None, 21), vec![(21, 21, 3)]);
    }
}
