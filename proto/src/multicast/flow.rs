//! Flow and congestion control of our stream in one group.
//!
//! **Flow control** bounds the bytes a sender has in flight (sent, not yet
//! stable, so not yet acknowledged by every member) to its fair share of
//! what receivers can buffer: the host's budget (about half the kernel
//! receive buffer it asks for, which also holds the kernel's per-datagram
//! overhead) divided among the senders that have messages in flight, as
//! the order shows them to every member alike. It is Totem's global window
//! split evenly, with no extra messages: unlike receiver credits (JGroups'
//! MFC, Aeron), nothing new goes on the wire, and the sequencer's order
//! already tells every node who is sending. A full window makes the app's sends
//! wait (the send stream stops taking them, and the host stops reading the
//! app), so nothing accepted is dropped.
//!
//! **Congestion control** runs AIMD inside that share, as TCP and NORM do,
//! down to a floor of an eighth of the share: a loss signal (a NAK for our
//! stream) halves
//! the window, at most once per retransmission interval (one repair round),
//! and every window's worth of bytes that becomes stable grows it by one
//! datagram, up to the share.

use crate::time::{Duration, Instant};

/// The smallest window, in datagrams: a sender always keeps a few in flight.
const MIN_WINDOW_DATAGRAMS: usize = 4;
/// Losses never take a window below this fraction of its share. Loss that
/// persists at any rate (a noisy link) would otherwise hold the window at a
/// few datagrams, however idle the receivers (10 % random loss ran at ~360
/// messages/s); the shares of all senders add up to the receivers' budget,
/// so all of them at their floor fill an eighth of it.
const FLOOR_FRACTION: usize = 8;

/// One sender's window in one group, in bytes.
#[derive(Debug, Clone)]
pub struct FlowWindow {
    /// The most it may grow to: the fair share of the receivers' buffers.
    share: usize,
    /// The congestion window: what may be in flight now.
    cwnd: usize,
    /// A datagram's size, the unit of growth.
    datagram: usize,
    last_decrease: Option<Instant>,
    /// How many times the window was halved (for counters and tests).
    decreases: u64,
}

impl FlowWindow {
    /// A window of `share` bytes, growing by `datagram` bytes at a time.
    pub fn new(share: usize, datagram: usize) -> FlowWindow {
        let datagram = datagram.max(1);
        let share = share.max(MIN_WINDOW_DATAGRAMS * datagram);
        FlowWindow {
            share,
            cwnd: share,
            datagram,
            last_decrease: None,
            decreases: 0,
        }
    }

    /// The fair share changed (another sender started or stopped): the
    /// window scales with it, keeping what congestion taught (a window
    /// halved to a quarter of the old share is a quarter of the new one).
    pub fn set_share(&mut self, share: usize) {
        let share = share.max(MIN_WINDOW_DATAGRAMS * self.datagram);
        if share == self.share {
            return;
        }
        let scaled = (self.cwnd as u128 * share as u128 / self.share.max(1) as u128) as usize;
        self.share = share;
        self.cwnd = scaled.clamp(self.floor(), share);
    }

    /// The least a loss leaves: an eighth of the share, at least a few
    /// datagrams.
    fn floor(&self) -> usize {
        (self.share / FLOOR_FRACTION)
            .max(MIN_WINDOW_DATAGRAMS * self.datagram)
            .min(self.share)
    }

    /// Bytes that may be in flight now.
    pub fn window(&self) -> usize {
        self.cwnd
    }

    /// The fair share.
    pub fn share(&self) -> usize {
        self.share
    }

    /// How many times a loss halved the window.
    pub fn decreases(&self) -> u64 {
        self.decreases
    }

    /// A loss signal. The window halves, once per `round` (the losses of
    /// one round trip are one congestion event). Returns true if it did.
    pub fn on_loss(&mut self, now: Instant, round: Duration) -> bool {
        if self.last_decrease.is_some_and(|t| t + round > now) {
            return false;
        }
        self.last_decrease = Some(now);
        self.cwnd = (self.cwnd / 2).max(self.floor());
        self.decreases += 1;
        true
    }

    /// `bytes` of ours became stable: grow by one datagram per window.
    pub fn on_stable(&mut self, bytes: usize) {
        if bytes == 0 || self.cwnd >= self.share {
            return;
        }
        let grow = (self.datagram.saturating_mul(bytes) / self.cwnd).max(1);
        self.cwnd = (self.cwnd + grow).min(self.share);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_halves_once_per_round_and_stability_grows_it_back() {
        let mut w = FlowWindow::new(100_000, 1_000);
        let t = Instant::ZERO;
        let round = Duration::from_millis(50);
        assert_eq!(w.window(), 100_000);
        assert!(w.on_loss(t, round));
        assert_eq!(w.window(), 50_000);
        assert!(
            !w.on_loss(t + Duration::from_millis(10), round),
            "same round"
        );
        assert!(w.on_loss(t + round, round));
        assert_eq!(w.window(), 25_000);
        // A window's worth of stable bytes grows it by one datagram.
        w.on_stable(25_000);
        assert_eq!(w.window(), 26_000);
        for _ in 0..1000 {
            w.on_stable(100_000);
        }
        assert_eq!(w.window(), 100_000, "never past the share");
        for i in 0..20 {
            w.on_loss(t + Duration::from_millis(50 * (2 + i)), round);
        }
        assert_eq!(w.window(), 12_500, "never below an eighth of the share");
        let mut small = FlowWindow::new(16_000, 1_000);
        for i in 0..20 {
            small.on_loss(t + Duration::from_millis(50 * i), round);
        }
        assert_eq!(small.window(), 4_000, "nor below a few datagrams");
    }

    #[test]
    fn the_window_scales_with_the_share() {
        let mut w = FlowWindow::new(90_000, 1_000);
        w.set_share(30_000);
        assert_eq!((w.share(), w.window()), (30_000, 30_000));
        w.on_loss(Instant::ZERO, Duration::from_millis(50));
        assert_eq!(w.window(), 15_000);
        w.set_share(60_000);
        assert_eq!(
            (w.share(), w.window()),
            (60_000, 30_000),
            "still half of it"
        );
    }
}
