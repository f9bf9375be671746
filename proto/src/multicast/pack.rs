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
    #[allow(clippy::too_many_arguments)]
    pub fn held<'a>(
        &self,
        held: impl Fn(SenderSeq) -> Option<&'a Held>,
        key: StreamKey,
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
                seq,
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
