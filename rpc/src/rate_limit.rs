//! Per-client-IP request rate limit: a token bucket per IP (IPv6 per /64, since one host
//! usually holds a whole /64), answering 429 when empty.
//!
//! Memory is bounded: a bucket that has refilled completely says nothing a fresh bucket would
//! not, so such idle buckets are dropped when the table is full; if it is still full, clients
//! not in it share one overflow bucket until a later sweep frees room.

use crate::envelope::error_text;
use crate::jsonrpc::{codes, RpcError};
use crate::metrics::RpcMetrics;
use crate::respond;
use axum::extract::connect_info::{ConnectInfo, MockConnectInfo};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, Extensions, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most client IPs tracked at once (≈ 50 bytes each).
pub(crate) const MAX_TRACKED_IPS: usize = 16_384;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            last: now,
        }
    }

    /// Takes one token, or says how long until one is there.
    fn take(&mut self, now: Instant, rate: f64, burst: f64) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }
}

#[derive(Debug)]
struct Table {
    buckets: HashMap<IpAddr, Bucket>,
    /// Shared by clients that find the table full, and by requests without a known address.
    overflow: Bucket,
    last_sweep: Instant,
}

/// The per-IP token buckets.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: f64,
    burst: f64,
    /// Time for an empty bucket to refill: a bucket idle this long is full and can go.
    idle: Duration,
    max_tracked: usize,
    table: Mutex<Table>,
}

/// The key a client is limited under: IPv4 (also when IPv4-mapped), or the IPv6 /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl RateLimiter {
    /// `None` when `rate_per_sec` is 0 (limit off).
    pub fn new(rate_per_sec: u32, burst: u32) -> Option<RateLimiter> {
        RateLimiter::with_capacity(rate_per_sec, burst, MAX_TRACKED_IPS)
    }

    fn with_capacity(rate_per_sec: u32, burst: u32, max_tracked: usize) -> Option<RateLimiter> {
        if rate_per_sec == 0 {
            return None;
        }
        let rate = f64::from(rate_per_sec);
        let burst = f64::from(burst.max(1));
        let now = Instant::now();
        Some(RateLimiter {
            rate,
            burst,
            idle: Duration::from_secs_f64(burst / rate).max(Duration::from_millis(100)),
            max_tracked,
            table: Mutex::new(Table {
                buckets: HashMap::new(),
                overflow: Bucket::full(burst, now),
                last_sweep: now,
            }),
        })
    }

    /// Takes a token for `ip` (`None` = address unknown: the shared overflow bucket), or says
    /// how long the client should wait.
    pub fn check(&self, ip: Option<IpAddr>) -> Result<(), Duration> {
        self.check_at(ip.map(client_key), Instant::now())
    }

    fn check_at(&self, key: Option<IpAddr>, now: Instant) -> Result<(), Duration> {
        // The table stays consistent whatever panicked while holding it (each step is a single
        // map or bucket update), so a poisoned lock is still usable.
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let tracked = match key {
            Some(k) if t.buckets.contains_key(&k) => Some(k),
            Some(k) => {
                if t.buckets.len() >= self.max_tracked
                    && now.saturating_duration_since(t.last_sweep) >= self.idle
                {
                    let idle = self.idle;
                    t.buckets
                        .retain(|_, b| now.saturating_duration_since(b.last) < idle);
                    t.last_sweep = now;
                }
                (t.buckets.len() < self.max_tracked).then_some(k)
            }
            None => None,
        };
        let (rate, burst) = (self.rate, self.burst);
        let bucket = match tracked {
            Some(k) => t.buckets.entry(k).or_insert(Bucket::full(burst, now)),
            None => &mut t.overflow,
        };
        bucket.take(now, rate, burst)
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.table.lock().map(|t| t.buckets.len()).unwrap_or(0)
    }
}

/// The client's address as axum's connect info (or a test's `MockConnectInfo`) gives it.
fn client_addr(ext: &Extensions) -> Option<SocketAddr> {
    ext.get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
        .or_else(|| ext.get::<MockConnectInfo<SocketAddr>>().map(|c| c.0))
}

/// Extractor of the client's address; `None` when the router runs without connect info.
pub(crate) struct ClientAddr(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(ClientAddr(client_addr(&parts.extensions)))
    }
}

/// State of the [`limit`] middleware.
#[derive(Clone)]
pub(crate) struct RateLimit {
    pub limiter: Arc<RateLimiter>,
    pub metrics: RpcMetrics,
}

/// Middleware: 429 with `Retry-After` for a client over its rate. JSON-RPC routes get a
/// JSON-RPC error envelope, others the bare error object.
pub(crate) async fn limit(State(rl): State<RateLimit>, req: Request, next: Next) -> Response {
    let ip = client_addr(req.extensions()).map(|a| a.ip());
    let Err(wait) = rl.limiter.check(ip) else {
        return next.run(req).await;
    };
    rl.metrics.record_failure(codes::RATE_LIMITED);
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    let error = RpcError::rate_limited(secs);
    let is_jsonrpc = req.method() == Method::POST && matches!(req.uri().path(), "/" | "/rpc");
    let mut response = if is_jsonrpc {
        respond::text_json(StatusCode::TOO_MANY_REQUESTS, error_text(error))
    } else {
        respond::json(StatusCode::TOO_MANY_REQUESTS, &error)
    };
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(n: u32) -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::from(n)))
    }

    #[test]
    fn bucket_allows_burst_then_refills_at_rate() {
        let rl = RateLimiter::new(10, 3).expect("on");
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(rl.check_at(ip(1), t0).is_ok());
        }
        let wait = rl.check_at(ip(1), t0).expect_err("empty");
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        assert!(rl.check_at(ip(2), t0).is_ok(), "other IPs unaffected");
        assert!(rl.check_at(ip(1), t0 + Duration::from_millis(100)).is_ok());
        assert!(rl.check_at(ip(1), t0 + Duration::from_millis(100)).is_err());
        assert!(RateLimiter::new(0, 5).is_none(), "0 turns the limit off");
    }

    #[test]
    fn table_is_bounded_and_idle_entries_are_evicted() {
        let rl = RateLimiter::with_capacity(10, 2, 4).expect("on");
        let t0 = Instant::now();
        for n in 0..4 {
            assert!(rl.check_at(ip(n), t0).is_ok());
        }
        assert_eq!(rl.tracked(), 4);
        // Full: newcomers share the overflow bucket (burst 2) instead of growing the table.
        assert!(rl.check_at(ip(10), t0).is_ok());
        assert!(rl.check_at(ip(11), t0).is_ok());
        assert!(rl.check_at(ip(12), t0).is_err());
        assert_eq!(rl.tracked(), 4);
        // Once the old buckets have refilled they are dropped and newcomers get their own.
        let later = t0 + Duration::from_secs(1);
        assert!(rl.check_at(ip(12), later).is_ok());
        assert_eq!(rl.tracked(), 1);
    }

    #[test]
    fn ipv6_is_limited_per_64_and_mapped_v4_as_v4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("ip");
        assert_eq!(client_key(a), client_key(b));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().expect("ip");
        assert_eq!(
            client_key(mapped),
            "10.0.0.1".parse::<IpAddr>().expect("ip")
        );
    }
}
