//! What a benchmark message carries, and the clock its send time is read on.
//!
//! Every payload starts with a 16-byte header: the sender's index (u32),
//! the message's number within that sender (u32) and the send time (u64
//! nanoseconds on the bench's [`Clock`]), all big-endian; filler makes up
//! the requested size. All daemons run on this host, so the receiving
//! thread reads the same clock and the difference is the send→delivery
//! latency, for loopback and namespaces alike.

use std::time::Instant;

/// Bytes of the header; the smallest payload the bench sends.
pub const HEADER_BYTES: usize = 16;

/// A monotonic clock shared by every thread of the bench: nanoseconds since
/// a common origin.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    /// A clock whose zero is now.
    pub fn start() -> Clock {
        Clock {
            origin: Instant::now(),
        }
    }

    /// Nanoseconds since the origin (saturating: u64 nanoseconds last 584 years).
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The instant `ns` nanoseconds after the origin.
    pub fn instant_at(&self, ns: u64) -> Instant {
        self.origin + std::time::Duration::from_nanos(ns)
    }
}

/// Which message a payload is, and when it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The sender's index (0..P).
    pub sender: u32,
    /// The message's number within its sender (0..M).
    pub number: u32,
    /// Send time on the bench's [`Clock`].
    pub sent_ns: u64,
}

/// Writes `stamp` and filler into `out` (cleared first) so that it holds
/// `size` bytes, or [`HEADER_BYTES`] if `size` is smaller.
pub fn encode(stamp: Stamp, size: usize, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&stamp.sender.to_be_bytes());
    out.extend_from_slice(&stamp.number.to_be_bytes());
    out.extend_from_slice(&stamp.sent_ns.to_be_bytes());
    // Filler that is not all zeros, so a payload cut short or shifted shows.
    out.extend((HEADER_BYTES..size).map(|i| (i % 251) as u8));
}

/// The stamp at the start of `payload`; `None` if it is shorter than the
/// header.
pub fn decode(payload: &[u8]) -> Option<Stamp> {
    let header = payload.get(..HEADER_BYTES)?;
    let (sender, rest) = header.split_at(4);
    let (number, sent) = rest.split_at(4);
    Some(Stamp {
        sender: u32::from_be_bytes(sender.try_into().ok()?),
        number: u32::from_be_bytes(number.try_into().ok()?),
        sent_ns: u64::from_be_bytes(sent.try_into().ok()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_at_the_requested_size() {
        let stamp = Stamp {
            sender: 7,
            number: 123_456,
            sent_ns: 0x0102_0304_0506_0708,
        };
        let mut buf = vec![9; 3];
        for size in [16, 17, 64, 1400] {
            encode(stamp, size, &mut buf);
            assert_eq!(buf.len(), size);
            assert_eq!(decode(&buf), Some(stamp));
        }
        assert_eq!(buf[16], 16);
    }

    #[test]
    fn short_payloads_do_not_decode() {
        assert_eq!(decode(&[0; 15]), None);
        assert_eq!(decode(&[]), None);
    }

    #[test]
    fn the_clock_moves_forward() {
        let clock = Clock::start();
        let a = clock.now_ns();
        let b = clock.now_ns();
        assert!(b >= a);
        assert!(clock.instant_at(b) >= clock.instant_at(a));
    }
}
