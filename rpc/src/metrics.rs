//! The RPC server's own metrics (SPEC §8: "RPC requests and latency by method"), registered into
//! the node's registry so that `/metrics` shows them beside the chain's.
//!
//! Label values come only from fixed lists (known method names, outcome kinds): a client sending
//! made-up method names lands in `method="unknown"` and cannot grow the label set.

use crate::jsonrpc::outcome;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

type HistogramFamily = Family<MethodLabels, Histogram, fn() -> Histogram>;

/// 0.25 ms to ~8 s: cheap reads sit in the first buckets, `sendTx` with `wait: commit` in the
/// last ones.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// Handles to the RPC metrics. Cloning is cheap (the families are shared), so every connection
/// and task holds its own copy.
#[derive(Clone, Debug)]
pub struct RpcMetrics {
    requests: Family<RequestLabels, Counter>,
    durations: HistogramFamily,
    ws_connections: Gauge,
}

impl RpcMetrics {
    /// Registers `rpc_requests_total{method,outcome}`, `rpc_request_duration_seconds{method}`
    /// and `rpc_ws_connections` into `registry`.
    pub fn register(registry: &mut Registry) -> RpcMetrics {
        let metrics = RpcMetrics {
            requests: Family::default(),
            durations: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            ws_connections: Gauge::default(),
        };
        registry.register(
            "rpc_requests",
            "RPC calls (JSON-RPC, WebSocket, REST, admin) by method and outcome",
            metrics.requests.clone(),
        );
        registry.register(
            "rpc_request_duration_seconds",
            "Time to answer an RPC call, by method",
            metrics.durations.clone(),
        );
        registry.register(
            "rpc_ws_connections",
            "Open WebSocket connections",
            metrics.ws_connections.clone(),
        );
        metrics
    }

    /// Counts a call that reached a method (`method` is a metric label from
    /// [`crate::methods::metric_label`]) and records its latency.
    pub(crate) fn observe(&self, method: &'static str, result: Result<(), i64>, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                method,
                outcome: outcome(result),
            })
            .inc();
        self.durations
            .get_or_create(&MethodLabels { method })
            .observe(took.as_secs_f64());
    }

    /// Counts a request refused before any method was known (parse error, bad envelope, body
    /// too large, rate limited).
    pub(crate) fn record_failure(&self, code: i64) {
        self.requests
            .get_or_create(&RequestLabels {
                method: "unknown",
                outcome: outcome(Err(code)),
            })
            .inc();
    }

    /// Tracks one open WebSocket connection until the guard is dropped.
    pub(crate) fn ws_connection(&self) -> WsConnectionGuard {
        self.ws_connections.inc();
        WsConnectionGuard(self.ws_connections.clone())
    }
}

/// Decrements `rpc_ws_connections` when the connection's task ends, however it ends.
pub(crate) struct WsConnectionGuard(Gauge);

impl Drop for WsConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn exposes_counter_histogram_and_gauge() {
        let mut registry = Registry::default();
        let m = RpcMetrics::register(&mut registry);
        m.observe("getHead", Ok(()), Duration::from_millis(2));
        m.observe("getTx", Err(-32001), Duration::from_millis(1));
        m.record_failure(-32700);
        let guard = m.ws_connection();
        let mut text = String::new();
        encode(&mut text, &registry).expect("encode");
        assert!(
            text.contains(r#"rpc_requests_total{method="getHead",outcome="ok"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"rpc_requests_total{method="getTx",outcome="not_found"} 1"#));
        assert!(text.contains(r#"rpc_requests_total{method="unknown",outcome="parse_error"} 1"#));
        assert!(text.contains(r#"rpc_request_duration_seconds_count{method="getHead"} 1"#));
        assert!(text.contains("rpc_ws_connections 1"), "{text}");
        drop(guard);
        let mut text = String::new();
        encode(&mut text, &registry).expect("encode");
        assert!(text.contains("rpc_ws_connections 0"), "{text}");
    }
}
