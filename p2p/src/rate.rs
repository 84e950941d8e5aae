//! Per-peer token buckets for inbound sync requests.
//!
//! Serving a `Blocks` request costs store reads and up to a few MiB of upload; without a limit
//! one peer could keep a validator's disk and uplink busy. The event loop takes a token before
//! passing a request on and refuses the request when the bucket is empty.

use libp2p::PeerId;
use std::collections::HashMap;
use std::time::Instant;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Buckets of `burst` tokens refilled at `rate` tokens per second, one per peer.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: HashMap<PeerId, Bucket>,
}

impl RateLimiter {
    pub(crate) fn new(rate: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            buckets: HashMap::new(),
        }
    }

    /// Takes one token from `peer`'s bucket; `false` when it is empty.
    pub(crate) fn try_take(&mut self, peer: PeerId, now: Instant) -> bool {
        let (rate, burst) = (self.rate, self.burst);
        let bucket = self.buckets.entry(peer).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets buckets that have refilled completely: they behave like new ones, so the map only
    /// holds peers that asked recently. Keeping them across a disconnect (instead of dropping
    /// them then) stops a peer from resetting its bucket by reconnecting.
    pub(crate) fn prune(&mut self, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        self.buckets.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
            b.tokens + elapsed * rate < burst
        });
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate() {
        let mut r = RateLimiter::new(10, 3);
        let p = PeerId::random();
        let q = PeerId::random();
        let t0 = Instant::now();
        assert!(r.try_take(p, t0));
        assert!(r.try_take(p, t0));
        assert!(r.try_take(p, t0));
        assert!(!r.try_take(p, t0), "burst spent");
        assert!(r.try_take(q, t0), "other peers have their own bucket");
        assert!(
            !r.try_take(p, t0 + Duration::from_millis(50)),
            "half a token"
        );
        assert!(r.try_take(p, t0 + Duration::from_millis(110)));
        assert!(!r.try_take(p, t0 + Duration::from_millis(110)));
        // A long pause refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(100);
        for _ in 0..3 {
            assert!(r.try_take(p, later));
        }
        assert!(!r.try_take(p, later));
    }

    #[test]
    fn prune_drops_only_full_buckets() {
        let mut r = RateLimiter::new(1, 2);
        let p = PeerId::random();
        let t0 = Instant::now();
        assert!(r.try_take(p, t0));
        r.prune(t0);
        assert_eq!(r.len(), 1);
        r.prune(t0 + Duration::from_secs(5));
        assert_eq!(r.len(), 0);
    }
}
