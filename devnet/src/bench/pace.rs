//! Pacing and flow control of the senders.
//!
//! Pacing is open-loop against a fixed schedule: transaction `i` (0-based) of a sender is due at
//! `i / rate` seconds into the window. A sender that falls behind (its accounts are held back by
//! the nonce window, or a round trip took long) sends what is overdue as soon as it can, up to a
//! batch at a time, so the offered load over the window is the target rate whenever the chain
//! takes it. A closed-loop generator would instead slow down with the chain and hide the
//! latency a real client at that rate would see.
//!
//! Flow control is the mempool's own rule (SPEC §3): at most 64 pending nonces per sender. A
//! sender is held at [`NONCE_WINDOW`] ahead of its last nonce seen committed, leaving room for
//! the lag between the node that commits and the node the bench follows.

use std::time::Duration;

/// Most nonces one account may be ahead of its last committed nonce. Under the mempool's 64 so
/// that the followed node seeing a commit a little late never pushes a sender over the limit.
pub const NONCE_WINDOW: u64 = 48;

/// The schedule of one sender.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pacer {
    /// Transactions per second; 0 = unpaced (everything is due at once).
    rate: f64,
}

impl Pacer {
    pub fn new(rate_per_s: f64) -> Pacer {
        let rate = if rate_per_s.is_finite() && rate_per_s > 0.0 {
            rate_per_s
        } else {
            0.0
        };
        Pacer { rate }
    }

    pub fn unpaced(&self) -> bool {
        self.rate == 0.0
    }

    /// How many transactions are due `elapsed` into the window: those with `i / rate ≤ elapsed`.
    pub fn due(&self, elapsed: Duration) -> u64 {
        if self.unpaced() {
            return u64::MAX;
        }
        let n = (elapsed.as_secs_f64() * self.rate).floor();
        // `as` saturates on overflow; +1 because transaction 0 is due at once.
        (n as u64).saturating_add(1)
    }

    /// Time from `elapsed` until transaction number `sent` is due (zero if it already is).
    pub fn until_due(&self, sent: u64, elapsed: Duration) -> Duration {
        if self.unpaced() {
            return Duration::ZERO;
        }
        let at = sent as f64 / self.rate;
        Duration::from_secs_f64((at - elapsed.as_secs_f64()).max(0.0))
    }
}

/// Whether an account may send `nonce` while its last nonce seen committed is `committed`.
pub fn within_window(nonce: u64, committed: u64) -> bool {
    nonce <= committed.saturating_add(NONCE_WINDOW)
}

/// Splits `total` transactions over `parts` as evenly as possible (the first ones get the
/// remainder), so that the per-account lists add up exactly to what was asked.
pub fn split(total: u64, parts: usize) -> Vec<u64> {
    if parts == 0 {
        return Vec::new();
    }
    let n = parts as u64;
    (0..n)
        .map(|i| total / n + u64::from(i < total % n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_rate_times_elapsed_plus_the_first() {
        let p = Pacer::new(200.0);
        assert_eq!(p.due(Duration::ZERO), 1);
        assert_eq!(p.due(Duration::from_millis(4)), 1);
        assert_eq!(p.due(Duration::from_millis(5)), 2);
        assert_eq!(p.due(Duration::from_secs(1)), 201);
        // Over a 5 s window exactly rate × 5 are due before the window closes.
        assert_eq!(p.due(Duration::from_micros(4_999_999)), 1_000);
        assert_eq!(p.until_due(0, Duration::ZERO), Duration::ZERO);
        assert_eq!(p.until_due(1, Duration::ZERO), Duration::from_millis(5));
        assert_eq!(
            p.until_due(3, Duration::from_millis(12)),
            Duration::from_millis(3)
        );
        assert_eq!(
            p.until_due(1, Duration::from_secs(9)),
            Duration::ZERO,
            "overdue"
        );
        // A fractional rate (a sender's share of the total) keeps its long-run average.
        let p = Pacer::new(2.5);
        assert_eq!(p.due(Duration::from_secs(10)), 26);
        assert_eq!(p.due(Duration::from_millis(399)), 1);
        assert_eq!(p.due(Duration::from_millis(400)), 2);
    }

    #[test]
    fn unpaced_has_everything_due() {
        for p in [Pacer::new(0.0), Pacer::new(f64::NAN), Pacer::new(-3.0)] {
            assert!(p.unpaced());
            assert_eq!(p.due(Duration::ZERO), u64::MAX);
            assert_eq!(p.until_due(1_000_000, Duration::ZERO), Duration::ZERO);
        }
        // Huge elapsed times saturate instead of wrapping.
        assert_eq!(Pacer::new(1e18).due(Duration::from_secs(1 << 40)), u64::MAX);
    }

    #[test]
    fn nonce_window_stays_under_the_mempool_limit() {
        assert!(NONCE_WINDOW < aitbc_chain::mempool::MAX_PENDING_PER_SENDER as u64);
        assert!(within_window(1, 0));
        assert!(within_window(48, 0));
        assert!(!within_window(49, 0));
        assert!(within_window(1_048, 1_000));
        assert!(within_window(u64::MAX, u64::MAX - 1), "no overflow");
    }

    #[test]
    fn split_adds_up() {
        assert_eq!(split(10, 3), vec![4, 3, 3]);
        assert_eq!(split(2, 4), vec![1, 1, 0, 0]);
        assert_eq!(split(9, 0), Vec::<u64>::new());
        let parts = split(1_000_003, 1_000);
        assert_eq!(parts.iter().sum::<u64>(), 1_000_003);
        assert!(
            parts.iter().max().copied().unwrap_or(0) - parts.iter().min().copied().unwrap_or(0)
                <= 1
        );
    }
}
