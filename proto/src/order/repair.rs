//! ORDER repairs from a member: records it knows, for a peer that missed
//! them or a new sequencer catching up to its flush cut, sent as ORDER
//! batches in the name of the group's current sequencer.

use super::delivery::Deliverer;
use crate::ids::{ClusterId, GlobalSeq, GroupId, Incarnation, NodeId, ViewId};
use crate::wire::datagram::{
    self, Datagram, OrderBatch, OrderEntry, ORDER_ENTRY_BYTES, ORDER_PREFIX_BYTES,
};
use std::net::SocketAddrV4;

/// Whose order the repair speaks for and how it is packed.
#[derive(Debug, Clone, Copy)]
pub struct OrderRepair {
    pub cluster: ClusterId,
    pub group: GroupId,
    pub sequencer: NodeId,
    pub sequencer_incarnation: Incarnation,
    /// The installed view.
    pub view: ViewId,
    pub max_bytes: usize,
    /// At most this many positions past each range's start.
    pub window: usize,
}

impl Deliverer {
    /// Answers an ORDER_NAK for `ranges` with the records this member
    /// knows, each datagram handed to `emit`.
    pub fn pack_order_repair(
        &self,
        r: &OrderRepair,
        ranges: &[(GlobalSeq, GlobalSeq)],
        dest: SocketAddrV4,
        emit: &mut impl FnMut(SocketAddrV4, Vec<u8>),
    ) {
        let max_entries =
            (r.max_bytes.saturating_sub(ORDER_PREFIX_BYTES) / ORDER_ENTRY_BYTES).max(1);
        for &(lo, hi) in ranges {
            let hi = GlobalSeq(hi.0.min(lo.0 + r.window as u64));
            let mut g = lo;
            while g <= hi {
                let first = g;
                let mut entries: Vec<OrderEntry> = Vec::new();
                while g <= hi && entries.len() < max_entries {
                    let Some(slot) = self.record(g) else {
                        break;
                    };
                    let (key, seq) = slot.to_wire();
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
                    group: r.group,
                    sequencer: r.sequencer,
                    sequencer_incarnation: r.sequencer_incarnation,
                    view: r.view,
                    // The installed view's real start: a survivor in a flush
                    // reads the cut from it.
                    view_start: self.view_start(),
                    sequencer_start: self.sequencer_start,
                    stable: self.stable().min(GlobalSeq(first.0 - 1)),
                    first,
                    entries,
                };
                let mut buf = Vec::with_capacity(r.max_bytes);
                datagram::encode(&Datagram::Order(batch), r.cluster, &mut buf);
                emit(dest, buf);
            }
        }
    }

    /// Where the installed view's positions begin, as its ORDER batches say.
    pub fn view_start(&self) -> GlobalSeq {
        self.view_start.or(self.log.start()).unwrap_or(GlobalSeq(1))
    }
}
