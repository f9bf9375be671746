//! What one listening member saw, and the numbers a run reports for it.

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::bench::payload::{self, Stamp};
use crate::bench::sequence::MsgId;

/// Significant decimal digits the latency histogram keeps (0.1% error).
const HISTOGRAM_DIGITS: u8 = 3;

/// The largest latency the histogram tells apart (1 hour); longer ones
/// count as this. A fixed range, because a clamped record never resizes.
const HISTOGRAM_MAX_NS: u64 = 3_600_000_000_000;

/// Bytes in the MB of MB/s.
const BYTES_PER_MB: f64 = 1e6;

/// The deliveries of one member, recorded as they arrive.
#[derive(Debug)]
pub struct MemberLog {
    /// `NODE:NAME`.
    pub member: String,
    /// Messages delivered, well-formed or not.
    pub delivered: u64,
    /// The stamped messages delivered, in delivery order.
    pub sequence: Vec<MsgId>,
    /// Send→delivery latency of every stamped message, in nanoseconds.
    pub latency_ns: Histogram<u64>,
    /// Payload bytes delivered.
    pub payload_bytes: u64,
    /// When the last message was delivered (bench clock, ns).
    pub last_delivery_ns: u64,
    /// Messages with no stamp, the wrong size, or a sender name that is
    /// not the one of their stamp's sender index.
    pub malformed: u64,
}

impl MemberLog {
    /// An empty log for `member`, with room for `expected` deliveries.
    pub fn new(member: &str, expected: usize) -> MemberLog {
        MemberLog {
            member: member.to_owned(),
            delivered: 0,
            sequence: Vec::with_capacity(expected),
            latency_ns: Histogram::new_with_bounds(1, HISTOGRAM_MAX_NS, HISTOGRAM_DIGITS)
                .expect("constant bounds and precision are valid"),
            payload_bytes: 0,
            last_delivery_ns: 0,
            malformed: 0,
        }
    }

    /// Records one delivery of `payload` at `now_ns`. A payload must be
    /// `size` bytes, and `sender_ok(index)` must say that the daemon's
    /// sender name belongs to the stamp's sender index.
    pub fn record(
        &mut self,
        payload: &[u8],
        size: usize,
        now_ns: u64,
        sender_ok: impl Fn(u32) -> bool,
    ) {
        self.delivered += 1;
        self.payload_bytes += payload.len() as u64;
        self.last_delivery_ns = self.last_delivery_ns.max(now_ns);
        let Some(Stamp {
            sender,
            number,
            sent_ns,
        }) = payload::decode(payload)
        else {
            self.malformed += 1;
            return;
        };
        if payload.len() != size || !sender_ok(sender) {
            self.malformed += 1;
        }
        self.sequence.push(MsgId { sender, number });
        self.latency_ns
            .saturating_record(now_ns.saturating_sub(sent_ns));
    }
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    /// The percentiles of a histogram of nanoseconds (all 0 when empty).
    pub fn of(h: &Histogram<u64>) -> Latency {
        let us = |ns: u64| ns as f64 / 1e3;
        Latency {
            p50: us(h.value_at_quantile(0.5)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        }
    }
}

/// The report line of one member.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberStats {
    /// `NODE:NAME`.
    pub member: String,
    pub delivered: u64,
    /// From the run's first send to this member's last delivery.
    pub span_s: f64,
    pub msgs_per_s: f64,
    /// Payload megabytes (10^6 bytes) per second.
    pub mb_per_s: f64,
    pub latency_us: Latency,
}

impl MemberStats {
    /// The numbers of `log`, for a run whose first send was at `first_send_ns`.
    pub fn of(log: &MemberLog, first_send_ns: u64) -> MemberStats {
        let span_s = log.last_delivery_ns.saturating_sub(first_send_ns) as f64 / 1e9;
        let per_s = |x: f64| if span_s > 0.0 { x / span_s } else { 0.0 };
        MemberStats {
            member: log.member.clone(),
            delivered: log.delivered,
            span_s,
            msgs_per_s: per_s(log.delivered as f64),
            mb_per_s: per_s(log.payload_bytes as f64 / BYTES_PER_MB),
            latency_us: Latency::of(&log.latency_ns),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::payload::encode;

    fn payload(sender: u32, number: u32, sent_ns: u64, size: usize) -> Vec<u8> {
        let mut buf = Vec::new();
        let stamp = Stamp {
            sender,
            number,
            sent_ns,
        };
        encode(stamp, size, &mut buf);
        buf
    }

    #[test]
    fn throughput_is_over_first_send_to_last_delivery() {
        let mut log = MemberLog::new("n1:l", 4);
        // 1000 messages of 100 bytes, delivered 1 ms after send, the last
        // at 2 s; the run's first send was at 1 s.
        for i in 0..1000u32 {
            let sent = 1_000_000_000 + u64::from(i) * 1_000_000;
            log.record(&payload(0, i, sent, 100), 100, sent + 1_000_000, |_| true);
        }
        let s = MemberStats::of(&log, 1_000_000_000);
        assert_eq!(s.delivered, 1000);
        assert!((s.span_s - 1.0).abs() < 1e-9, "{s:?}");
        assert!((s.msgs_per_s - 1000.0).abs() < 1e-6, "{s:?}");
        assert!((s.mb_per_s - 0.1).abs() < 1e-9, "{s:?}");
        // 1 ms, within the histogram's precision.
        for v in [s.latency_us.p50, s.latency_us.p99, s.latency_us.p999] {
            assert!((v - 1000.0).abs() <= 1.0, "{s:?}");
        }
    }

    #[test]
    fn percentiles_come_from_the_distribution() {
        let mut log = MemberLog::new("n1:l", 1000);
        for i in 0..1000u32 {
            // Latency (i+1) µs: p50 ≈ 500 µs, p99 ≈ 990 µs, p999 ≈ 999 µs.
            let latency = u64::from(i + 1) * 1000;
            log.record(&payload(0, i, 5, 64), 64, 5 + latency, |_| true);
        }
        let l = MemberStats::of(&log, 0).latency_us;
        assert!((l.p50 - 500.0).abs() <= 1.0, "{l:?}");
        assert!((l.p99 - 990.0).abs() <= 1.0, "{l:?}");
        assert!((l.p999 - 999.0).abs() <= 1.0, "{l:?}");
        assert!(l.p50 < l.p99 && l.p99 < l.p999 && l.p999 <= l.max);
    }

    #[test]
    fn malformed_deliveries_are_counted() {
        let mut log = MemberLog::new("n1:l", 3);
        log.record(&[1, 2, 3], 64, 10, |_| true);
        log.record(&payload(0, 0, 1, 63), 64, 10, |_| true);
        log.record(&payload(1, 0, 1, 64), 64, 10, |s| s == 0);
        log.record(&payload(0, 1, 1, 64), 64, 10, |s| s == 0);
        assert_eq!(log.delivered, 4);
        assert_eq!(log.malformed, 3);
        assert_eq!(log.sequence.len(), 3, "stamped ones still count for order");
    }

    #[test]
    fn an_empty_log_reports_zeros() {
        let s = MemberStats::of(&MemberLog::new("n1:l", 0), 0);
        assert_eq!((s.delivered, s.msgs_per_s, s.mb_per_s), (0, 0.0, 0.0));
        assert_eq!(s.latency_us.p50, 0.0);
    }
}
