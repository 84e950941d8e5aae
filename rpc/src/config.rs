//! What the operator can tune about the RPC server, and the checks that keep it servable.

use std::fmt;
use std::net::SocketAddr;

/// Settings of the RPC server (SPEC §7, §8). [`RpcConfig::default`] is what a fresh node runs
/// with: loopback only, no CORS, no admin routes.
#[derive(Clone, PartialEq, Eq)]
pub struct RpcConfig {
    /// Where to listen. Loopback by default: exposing the RPC is a deliberate choice.
    pub bind: SocketAddr,
    /// Largest request body (HTTP) or message (WebSocket) in bytes. Must fit a `sendRawTx` of
    /// the largest tx the chain admits (hex doubles it) plus the JSON around it.
    pub max_body_bytes: usize,
    /// Open TCP connections served at once (HTTP keep-alive and WebSocket alike); further
    /// connections wait in the kernel's accept queue until one closes.
    pub max_connections: usize,
    /// Sustained requests per second per client IP (IPv6 clients by /64). 0 turns the limit
    /// off, e.g. for a local load generator.
    pub rate_per_ip: u32,
    /// Requests a client IP may send in a burst above `rate_per_ip`.
    pub rate_burst: u32,
    /// Origins browsers may call from. Empty: no CORS headers at all; `"*"`: any origin.
    pub cors_origins: Vec<String>,
    /// Bearer token of the `/admin/*` routes; `None` = the routes do not exist.
    pub admin_token: Option<String>,
    /// Calls in one JSON-RPC batch.
    pub max_batch: usize,
    /// Subscriptions one WebSocket connection may hold.
    pub max_ws_subscriptions: usize,
}

impl Default for RpcConfig {
    fn default() -> Self {
        RpcConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 2 << 20,
            max_connections: 256,
            rate_per_ip: 200,
            rate_burst: 400,
            cors_origins: Vec::new(),
            admin_token: None,
            max_batch: 100,
            max_ws_subscriptions: 32,
        }
    }
}

/// The admin token never appears in logs or `{:?}` output.
impl fmt::Debug for RpcConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RpcConfig")
            .field("bind", &self.bind)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_connections", &self.max_connections)
            .field("rate_per_ip", &self.rate_per_ip)
            .field("rate_burst", &self.rate_burst)
            .field("cors_origins", &self.cors_origins)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field("max_batch", &self.max_batch)
            .field("max_ws_subscriptions", &self.max_ws_subscriptions)
            .finish()
    }
}

/// A setting the server cannot run with; `field` is the [`RpcConfig`] field's name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("rpc config {field}: {problem}")]
pub struct ConfigError {
    pub field: &'static str,
    pub problem: String,
}

fn check(ok: bool, field: &'static str, problem: impl Into<String>) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError {
            field,
            problem: problem.into(),
        })
    }
}

/// Smallest body limit that still holds a realistic `sendRawTx`.
pub const MIN_BODY_BYTES: usize = 64 << 10;
/// Largest body limit: past this one request could hold a worrying share of a node's memory.
pub const MAX_BODY_BYTES: usize = 64 << 20;
/// Shortest admin token accepted: anything shorter can be guessed over the network.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

impl RpcConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check(
            (MIN_BODY_BYTES..=MAX_BODY_BYTES).contains(&self.max_body_bytes),
            "max_body_bytes",
            format!(
                "{} is outside {MIN_BODY_BYTES}..={MAX_BODY_BYTES}",
                self.max_body_bytes
            ),
        )?;
        check(
            (1..=65_536).contains(&self.max_connections),
            "max_connections",
            format!("{} is outside 1..=65536", self.max_connections),
        )?;
        check(
            self.rate_per_ip == 0 || self.rate_burst >= 1,
            "rate_burst",
            "must be at least 1 while rate_per_ip is set",
        )?;
        for origin in &self.cors_origins {
            check(
                origin == "*" || valid_origin(origin),
                "cors_origins",
                format!("{origin:?} is neither \"*\" nor an origin like \"https://example.com\""),
            )?;
        }
        if let Some(token) = &self.admin_token {
            check(
                token.len() >= MIN_ADMIN_TOKEN_LEN,
                "admin_token",
                format!("must be at least {MIN_ADMIN_TOKEN_LEN} characters"),
            )?;
            check(
                token.bytes().all(|b| b.is_ascii_graphic()),
                "admin_token",
                "must be printable ASCII without spaces (it travels in an HTTP header)",
            )?;
        }
        check(
            (1..=10_000).contains(&self.max_batch),
            "max_batch",
            format!("{} is outside 1..=10000", self.max_batch),
        )?;
        check(
            (1..=1_024).contains(&self.max_ws_subscriptions),
            "max_ws_subscriptions",
            format!("{} is outside 1..=1024", self.max_ws_subscriptions),
        )?;
        Ok(())
    }
}

/// `scheme://host[:port]` with nothing after it, as browsers send in `Origin`.
fn valid_origin(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once("://") else {
        return false;
    };
    !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        && !rest.is_empty()
        && !rest.contains('/')
        && rest.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_loopback() {
        let c = RpcConfig::default();
        assert_eq!(c.validate(), Ok(()));
        assert!(c.bind.ip().is_loopback());
        assert_eq!(c.bind.port(), 8080);
    }

    #[test]
    fn each_bad_field_is_named() {
        type Mutation = fn(&mut RpcConfig);
        let cases: [(Mutation, &str); 9] = [
            (|c| c.max_body_bytes = 10, "max_body_bytes"),
            (|c| c.max_connections = 0, "max_connections"),
            (|c| c.rate_burst = 0, "rate_burst"),
            (
                |c| c.cors_origins = vec!["not an origin".into()],
                "cors_origins",
            ),
            (
                |c| c.cors_origins = vec!["https://a.com/path".into()],
                "cors_origins",
            ),
            (|c| c.admin_token = Some("short".into()), "admin_token"),
            (
                |c| c.admin_token = Some("has a space in it ok".into()),
                "admin_token",
            ),
            (|c| c.max_batch = 0, "max_batch"),
            (|c| c.max_ws_subscriptions = 0, "max_ws_subscriptions"),
        ];
        for (mutate, field) in cases {
            let mut c = RpcConfig::default();
            mutate(&mut c);
            let err = c.validate().expect_err(field);
            assert_eq!(err.field, field);
            assert!(err.to_string().contains(field), "{err}");
        }
        let ok = RpcConfig {
            rate_per_ip: 0,
            rate_burst: 0,
            cors_origins: vec!["*".into(), "http://localhost:3000".into()],
            admin_token: Some("0123456789abcdef".into()),
            ..RpcConfig::default()
        };
        assert_eq!(ok.validate(), Ok(()));
    }

    #[test]
    fn debug_redacts_the_admin_token() {
        let c = RpcConfig {
            admin_token: Some("super-secret-token-123".into()),
            ..RpcConfig::default()
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("super-secret"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }
}
