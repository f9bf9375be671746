//! No retransmission storms: every DATA message a host puts on the wire is
//! counted, first sends, retransmissions and repairs alike; at the end of a
//! run the copies sent per distinct message must stay within a bound that
//! grows with the plan's loss rate. The protocol sends a message again only
//! when a receiver NAKs it (once per repair round) or as a sender's tail
//! probe (once per retransmission interval), so a storm (whole windows sent
//! again on a timer, NAKs answered over and over) shows as a ratio far past
//! what loss explains. The bound is loose: clogged links and partitions,
//! which the link loss rate does not count, make honest repairs too (a
//! receiver behind a clog NAKs each interval and each answer is lost; one
//! seed of CI's random batch sent one message 52 times, 4.98 copies per
//! message at 3.8 % link loss). The planted storm,
//! `--plant retransmit-storm`, goes past it on about a fifth of the seeds.

use std::collections::HashMap;

/// A DATA message's identity on the wire: group, sender node and
/// incarnation, stream position.
type WireMsg = (u32, u32, u64, u64);

/// The counts of one run.
#[derive(Debug, Default)]
pub struct Retransmissions {
    copies: HashMap<WireMsg, u32>,
    sent: u64,
}

impl Retransmissions {
    /// A datagram a host (not a sequencer) sent. Only the DATA header is
    /// read (the host built it; the run's other checks judge its content).
    pub fn on_transmit(&mut self, bytes: &[u8]) {
        let Some((group, sender, incarnation, first, count)) = data_header(bytes) else {
            return;
        };
        for i in 0..u64::from(count) {
            *self
                .copies
                .entry((group, sender, incarnation, first + i))
                .or_insert(0) += 1;
        }
        self.sent += u64::from(count);
    }

    /// Copies sent per distinct message, and the most copies of one.
    pub fn ratio(&self) -> (f64, u32) {
        let distinct = self.copies.len().max(1) as f64;
        let most = self.copies.values().copied().max().unwrap_or(0);
        (self.sent as f64 / distinct, most)
    }

    /// How many distinct messages were sent at least `k` times, and how
    /// many distinct messages there were.
    pub fn at_least(&self, k: u32) -> (usize, usize) {
        (
            self.copies.values().filter(|c| **c >= k).count(),
            self.copies.len(),
        )
    }

    /// Copies per message allowed under a loss rate of `loss` (0..1).
    pub fn bound(loss: f64) -> f64 {
        BASE_COPIES + LOSS_FACTOR * loss
    }

    /// The end-of-run check.
    pub fn check(&self, loss: f64) -> Result<(), String> {
        let (ratio, most) = self.ratio();
        let bound = Self::bound(loss);
        if ratio > bound {
            return Err(format!(
                "{ratio:.2} copies sent per DATA message ({} of {} messages; one sent {most} times), bound {bound:.2} at {:.1}% loss",
                self.sent,
                self.copies.len(),
                loss * 100.0
            ));
        }
        Ok(())
    }
}

/// DATA's kind byte and the offsets of its header fields (wire/datagram.rs:
/// the 8-byte common header, then group u32, sender u32, incarnation u64,
/// stream start u64, first seq u64, count u16, all big-endian).
const KIND_DATA: u8 = 1;
const DATA_HEADER_BYTES: usize = 42;

fn data_header(b: &[u8]) -> Option<(u32, u32, u64, u64, u16)> {
    if b.len() < DATA_HEADER_BYTES || b[3] != KIND_DATA {
        return None;
    }
    let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let u64_at = |i: usize| (u64::from(u32_at(i)) << 32) | u64::from(u32_at(i + 4));
    let count = u16::from_be_bytes([b[40], b[41]]);
    Some((u32_at(8), u32_at(12), u64_at(16), u64_at(32), count))
}

/// Copies per message with no loss: the first send, plus the tail probes
/// and repairs that reordering, partitions and crashes cause.
const BASE_COPIES: f64 = 6.0;
/// Extra copies per unit of loss rate.
const LOSS_FACTOR: f64 = 20.0;

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_proto::wire::datagram::{encode_data, Data, DataMsg};
    use chorus_proto::{Frag, GroupId, Incarnation, NodeId, Order, SenderSeq};

    #[test]
    fn copies_are_counted_per_message_from_the_data_header() {
        let msg = DataMsg {
            order: Order::Total,
            frag: Frag::Whole,
            sender_name: "a",
            payload: b"x",
        };
        let mut b = Vec::new();
        encode_data(
            &Data {
                group: GroupId(2),
                sender: NodeId(3),
                incarnation: Incarnation(9),
                stream_start: SenderSeq(1),
                first_seq: SenderSeq(5),
                msgs: vec![msg.clone(), msg],
            },
            crate::trace::cluster(),
            &mut b,
        );
        let mut r = Retransmissions::default();
        r.on_transmit(&b);
        r.on_transmit(&b);
        assert_eq!(r.at_least(2), (2, 2));
        assert_eq!(r.ratio(), (2.0, 2));
        assert!(r.check(0.0).is_ok());
        for _ in 0..6 {
            r.on_transmit(&b);
        }
        assert!(r.check(0.0).is_err(), "8 copies each is a storm");
        assert!(r.check(0.3).is_ok(), "unless 30 % loss explains them");
    }
}
