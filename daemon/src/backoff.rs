//! How often chorusd tries the directory again, and how often it says so.
//!
//! Reconnecting is exponential from [`FIRST_RETRY`], doubling up to a cap
//! of half the directory's lease (at least [`CAP_MIN`], at most
//! [`CAP_MAX`]), and starts over at the next Welcome. Why half a lease and
//! not more: after a directory restart the groups are rebuilt from what
//! the daemons report within one lease of the first one coming back (its
//! grace period), so every daemon must be back within a lease of the
//! directory; and a daemon whose link dropped while the directory lives
//! has a fifth of a lease to come back, which the first few quick retries
//! (50, 100, 200 ms) cover.
//!
//! Failures are logged by [`Outage`]: the first one of an outage as a
//! warning, then one summary warning every [`SUMMARY_EVERY`] saying how
//! many attempts failed and how many warnings were suppressed, and one
//! info line once the directory welcomes the node again.

use std::time::{Duration, Instant};

/// The first retry after a failure.
pub const FIRST_RETRY: Duration = Duration::from_millis(50);
/// The lowest cap (a directory with a very short lease).
pub const CAP_MIN: Duration = Duration::from_millis(250);
/// The highest cap (a directory with a long lease).
pub const CAP_MAX: Duration = Duration::from_secs(5);
/// The lease assumed until a Welcome says (the contract's default).
pub const DEFAULT_LEASE: Duration = Duration::from_millis(1500);
/// How often an outage is summarised in the log.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// The reconnect delays.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    cap: Duration,
}

impl Backoff {
    /// Delays for a directory with lease `lease`.
    pub fn new(lease: Duration) -> Backoff {
        Backoff {
            next: FIRST_RETRY,
            cap: cap_for(lease),
        }
    }

    /// The delay before the next attempt; later ones double, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.cap);
        d
    }

    /// The node was welcomed, by a directory with lease `lease`: the next
    /// outage starts from the first delay again.
    pub fn reset(&mut self, lease: Duration) {
        self.cap = cap_for(lease);
        self.next = FIRST_RETRY;
    }

    /// The longest delay.
    #[cfg(test)]
    pub fn cap(&self) -> Duration {
        self.cap
    }
}

fn cap_for(lease: Duration) -> Duration {
    (lease / 2).clamp(CAP_MIN, CAP_MAX)
}

/// One outage of the directory link, as the log tells it.
#[derive(Debug, Default)]
pub struct Outage {
    /// When the first failure of this outage happened.
    since: Option<Instant>,
    failures: u64,
    /// Failures not logged since the last warning.
    suppressed: u64,
    last_warning: Option<Instant>,
}

impl Outage {
    /// A connection attempt failed or the link was lost, for `reason`; the
    /// next attempt is in `retry_in`. Returns the warning to log, if any.
    pub fn failed(&mut self, now: Instant, reason: &str, retry_in: Duration) -> Option<String> {
        self.failures += 1;
        let Some(since) = self.since else {
            self.since = Some(now);
            self.last_warning = Some(now);
            return Some(format!(
                "{reason}; retrying in {} ms, then less often (failures are summarised every {} s)",
                retry_in.as_millis(),
                SUMMARY_EVERY.as_secs()
            ));
        };
        let due = self
            .last_warning
            .is_none_or(|t| now.saturating_duration_since(t) >= SUMMARY_EVERY);
        if !due {
            self.suppressed += 1;
            return None;
        }
        let text = format!(
            "directory still unreachable after {:.1} s: {} attempts failed ({} warnings \
             suppressed); last: {reason}; next attempt in {} ms",
            now.saturating_duration_since(since).as_secs_f64(),
            self.failures,
            self.suppressed,
            retry_in.as_millis()
        );
        self.suppressed = 0;
        self.last_warning = Some(now);
        Some(text)
    }

    /// The directory welcomed the node: the outage (if any) is over.
    /// Returns the line to log.
    pub fn ended(&mut self, now: Instant) -> Option<String> {
        let since = self.since.take()?;
        let text = format!(
            "the directory is back after {:.1} s ({} failed attempts or lost links)",
            now.saturating_duration_since(since).as_secs_f64(),
            self.failures
        );
        *self = Outage::default();
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_half_the_lease_and_start_over_after_a_welcome() {
        let mut b = Backoff::new(DEFAULT_LEASE);
        let ms: Vec<u128> = (0..6).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(ms, [50, 100, 200, 400, 750, 750]);
        b.reset(Duration::from_secs(20));
        assert_eq!(b.next_delay(), FIRST_RETRY);
        assert_eq!(b.cap(), CAP_MAX, "a long lease: capped at 5 s");
        b.reset(Duration::from_millis(100));
        assert_eq!(b.cap(), CAP_MIN, "a short lease: still 250 ms");
    }

    #[test]
    fn an_outage_warns_once_then_summarises_with_what_it_suppressed() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let retry = Duration::from_millis(750);
        let mut o = Outage::default();
        let first = o.failed(at(0), "directory 127.0.0.1:1: refused", retry);
        assert!(first.is_some_and(|w| w.contains("refused")));
        // Twelve more failures within 10 s: silent.
        for k in 1..=12 {
            assert_eq!(o.failed(at(k * 750), "refused", retry), None, "failure {k}");
        }
        let summary = o.failed(at(10_000), "refused", retry).expect("a summary");
        assert!(summary.contains("14 attempts failed"), "{summary}");
        assert!(summary.contains("12 warnings suppressed"), "{summary}");
        assert_eq!(o.failed(at(10_500), "refused", retry), None);
        let back = o.ended(at(11_000)).expect("the outage ends");
        assert!(back.contains("11.0 s"), "{back}");
        assert_eq!(o.ended(at(12_000)), None, "no outage, nothing to say");
        // A new outage warns at once again.
        assert!(o.failed(at(13_000), "refused", retry).is_some());
    }
}
