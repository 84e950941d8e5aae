//! Log output (SPEC §8): `tracing` events, human-readable or one JSON object per line.
//!
//! Both formats go to stderr so stdout stays free for command output (`keys show`, `config
//! check`) that scripts parse.
//!
//! The filter is a fixed [`Targets`] list built from `LOG_LEVEL`, not `RUST_LOG`: env-filter
//! would pull a regex engine into the node for a feature the config key already covers, and a
//! second, undocumented knob would make "what is this node logging" harder to answer.
//!
//! Dependencies that log per packet or per write (libp2p and its transports, sled) are held at
//! `warn` unless the level is `debug` or `trace`: at `info` they would bury the node's own
//! events, and when someone asks for `debug` they are usually debugging networking or storage
//! and want those crates too. sled logs through the `log` crate, which is bridged into
//! `tracing` so its warnings still appear.

use crate::config::{LogFormat, LogLevel};
use tracing::Subscriber;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Target prefixes of noisy dependencies (matched as prefixes, so `libp2p` covers every
/// `libp2p_*` crate).
pub const QUIETED_TARGETS: [&str; 10] = [
    "libp2p",
    "multistream_select",
    "yamux",
    "quinn",
    "quinn_proto",
    "rustls",
    "hickory_proto",
    "hickory_resolver",
    "netlink_proto",
    "sled",
];

/// Installs the process-wide subscriber writing to stderr.
///
/// A second call returns an error rather than panicking: the global subscriber can be set only
/// once per process, and a caller (a test, or an embedder that set its own) should be able to
/// carry on with the subscriber already in place.
pub fn init(level: LogLevel, format: LogFormat) -> anyhow::Result<()> {
    subscriber(level, format, std::io::stderr)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))
}

/// The subscriber [`init`] installs, writing to `writer`; separate so tests can capture the
/// exact output format without touching global state.
pub fn subscriber<W>(
    level: LogLevel,
    format: LogFormat,
    writer: W,
) -> impl Subscriber + for<'a> LookupSpan<'a> + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::registry().with(fmt_layer(format, writer).with_filter(filter(level)))
}

/// The formatting layer. JSON flattens event fields into the top-level object so log
/// pipelines can index `component`, `event`, `height` and `latency_ms` directly instead of
/// digging into a nested `fields` object; the span list is left out because it repeats the
/// same span on every line of a long-running task.
fn fmt_layer<S, W>(format: LogFormat, writer: W) -> Box<dyn Layer<S> + Send + Sync + 'static>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        LogFormat::Human => layer.compact().boxed(),
        LogFormat::Json => layer
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    }
}

/// `level` for the node, and for [`QUIETED_TARGETS`] the quieter of `level` and `warn` unless
/// `level` is `debug` or `trace`.
pub fn filter(level: LogLevel) -> Targets {
    let node = level_filter(level);
    let deps = match level {
        LogLevel::Trace | LogLevel::Debug => node,
        // `LevelFilter` orders more verbose as greater, so `min` is the quieter one.
        LogLevel::Info | LogLevel::Warn | LogLevel::Error => node.min(LevelFilter::WARN),
    };
    QUIETED_TARGETS
        .iter()
        .fold(Targets::new().with_default(node), |t, target| {
            t.with_target(*target, deps)
        })
}

fn level_filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Trace => LevelFilter::TRACE,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error => LevelFilter::ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};

    /// A `MakeWriter` whose writers append to one shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Buffer {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    impl io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;

        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    fn capture(level: LogLevel, format: LogFormat, emit: impl FnOnce()) -> String {
        let buf = Buffer::default();
        let sub = subscriber(level, format, buf.clone());
        tracing::subscriber::with_default(sub, emit);
        buf.text()
    }

    #[test]
    fn json_fields_are_top_level() {
        let out = capture(LogLevel::Info, LogFormat::Json, || {
            let height = 42u64;
            let latency_ms = 17u64;
            tracing::info!(
                component = "consensus",
                event = "commit",
                height,
                latency_ms,
                "block committed"
            );
        });
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "one object per line: {out}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["component"], "consensus", "{v}");
        assert_eq!(v["event"], "commit", "{v}");
        assert_eq!(v["height"], 42, "{v}");
        assert_eq!(v["latency_ms"], 17, "{v}");
        assert_eq!(v["message"], "block committed", "{v}");
        assert_eq!(v["level"], "INFO", "{v}");
        assert!(v["timestamp"].is_string(), "{v}");
        assert!(v.get("fields").is_none(), "fields are flattened: {v}");
        assert!(v.get("spans").is_none(), "{v}");
    }

    #[test]
    fn json_keeps_the_current_span() {
        let out = capture(LogLevel::Info, LogFormat::Json, || {
            let span = tracing::info_span!("sync", peer = "p1");
            let _g = span.enter();
            tracing::info!(
                component = "sync",
                event = "batch",
                height = 3u64,
                "applied"
            );
        });
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["component"], "sync", "{v}");
        assert_eq!(v["span"]["name"], "sync", "{v}");
        assert_eq!(v["span"]["peer"], "p1", "{v}");
    }

    #[test]
    fn human_is_one_line_with_the_fields() {
        let out = capture(LogLevel::Info, LogFormat::Human, || {
            tracing::info!(
                component = "consensus",
                event = "commit",
                height = 9u64,
                "done"
            );
        });
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(out.contains("INFO"), "{out}");
        assert!(out.contains("done"), "{out}");
        assert!(out.contains("component=\"consensus\""), "{out}");
        assert!(out.contains("height=9"), "{out}");
        assert!(!out.contains('\u{1b}'), "no colour codes in files: {out:?}");
    }

    fn emit_all() {
        tracing::debug!(target: "aitbc_node::sync", "node debug");
        tracing::info!(target: "aitbc_node::sync", "node info");
        tracing::info!(target: "libp2p_gossipsub::behaviour", "libp2p info");
        tracing::warn!(target: "libp2p_swarm", "libp2p warn");
        tracing::debug!(target: "sled::pagecache", "sled debug");
        tracing::error!(target: "sled::pagecache", "sled error");
    }

    #[test]
    fn dependencies_are_quiet_at_info() {
        let out = capture(LogLevel::Info, LogFormat::Human, emit_all);
        assert!(out.contains("node info"), "{out}");
        assert!(!out.contains("node debug"), "{out}");
        assert!(!out.contains("libp2p info"), "{out}");
        assert!(out.contains("libp2p warn"), "{out}");
        assert!(!out.contains("sled debug"), "{out}");
        assert!(out.contains("sled error"), "{out}");
    }

    #[test]
    fn dependencies_follow_debug() {
        let out = capture(LogLevel::Debug, LogFormat::Human, emit_all);
        for line in [
            "node debug",
            "node info",
            "libp2p info",
            "libp2p warn",
            "sled debug",
        ] {
            assert!(out.contains(line), "{line} missing: {out}");
        }
    }

    #[test]
    fn error_level_applies_to_dependencies_too() {
        let out = capture(LogLevel::Error, LogFormat::Human, emit_all);
        assert!(!out.contains("libp2p warn"), "{out}");
        assert!(!out.contains("node info"), "{out}");
        assert!(out.contains("sled error"), "{out}");
    }

    #[test]
    fn a_second_init_is_an_error_not_a_panic() {
        // nextest runs each test in its own process; under `cargo test` no other test sets
        // the global subscriber, so the first call succeeds either way.
        init(LogLevel::Warn, LogFormat::Json).unwrap();
        assert!(init(LogLevel::Info, LogFormat::Human).is_err());
    }
}
