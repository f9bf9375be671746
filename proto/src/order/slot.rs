//! What one position of a group's total order holds.

use crate::ids::{Incarnation, NodeId, SenderSeq, ViewId};
use crate::multicast::StreamKey;

/// The content of one position of the order: a sender's message, or the
/// marker where a view begins (the sequencer places one at every view
/// change, so every member installs the view at the same position).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Message `seq` of `stream`.
    Message { stream: StreamKey, seq: SenderSeq },
    /// View `0` begins at the next position.
    ViewMarker(ViewId),
}

/// On the wire a marker is an ORDER entry from node 0 (never a node's id),
/// whose incarnation field carries the view and whose sequence number is 1.
const MARKER_NODE: NodeId = NodeId(0);
const MARKER_SEQ: SenderSeq = SenderSeq(1);

impl Slot {
    /// The slot an ORDER entry's (sender, incarnation, seq) names.
    pub fn from_wire(stream: StreamKey, seq: SenderSeq) -> Slot {
        if stream.node == MARKER_NODE {
            Slot::ViewMarker(ViewId(stream.incarnation.0))
        } else {
            Slot::Message { stream, seq }
        }
    }

    /// The (sender, incarnation, seq) an ORDER entry carries for this slot.
    pub fn to_wire(self) -> (StreamKey, SenderSeq) {
        match self {
            Slot::Message { stream, seq } => (stream, seq),
            Slot::ViewMarker(view) => (
                StreamKey {
                    node: MARKER_NODE,
                    incarnation: Incarnation(view.0),
                },
                MARKER_SEQ,
            ),
        }
    }

    /// The message this slot orders, if it is not a marker.
    pub fn message(self) -> Option<(StreamKey, SenderSeq)> {
        match self {
            Slot::Message { stream, seq } => Some((stream, seq)),
            Slot::ViewMarker(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_and_messages_round_trip_through_the_wire_form() {
        let k = StreamKey {
            node: NodeId(3),
            incarnation: Incarnation(9),
        };
        for s in [
            Slot::Message {
                stream: k,
                seq: SenderSeq(7),
            },
            Slot::ViewMarker(ViewId(12)),
        ] {
            let (key, seq) = s.to_wire();
            assert_eq!(Slot::from_wire(key, seq), s);
        }
        assert_eq!(Slot::ViewMarker(ViewId(12)).to_wire().0.node, NodeId(0));
    }
}
