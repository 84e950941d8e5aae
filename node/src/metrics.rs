//! The node's Prometheus metrics (SPEC §8).
//!
//! Everything lives in one [`NodeMetrics`] registered into a registry the node owns, so the RPC
//! server can add its own request metrics to the same registry and `/metrics` (and the optional
//! `METRICS_PORT`) serve one document. RPC request counts and latency by method are therefore
//! not here: the RPC server registers them.
//!
//! Label values come only from the closed types below ([`GossipTopic`], [`Direction`]) or from
//! `&'static str` reasons. A label value a peer could choose would let it create unbounded
//! series and exhaust this node's (and Prometheus') memory, so the types make that impossible
//! rather than relying on callers to remember.
//!
//! Gauges are `i64` in prometheus-client; heights, counts and byte totals are `u64` here and are
//! clamped at `i64::MAX`, which no real value reaches, instead of wrapping to a negative number.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use std::fmt::{self, Write as _};
use std::time::Duration;

/// The content type `/metrics` must be served with: [`encode`] writes OpenMetrics text (with
/// `# UNIT` lines and a closing `# EOF`), and the content type is what makes a scraper pick its
/// OpenMetrics parser rather than the older Prometheus text parser.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The gossip topics, mirroring `aitbc_p2p::Topic` without depending on the p2p crate: the
/// metrics stay usable (and testable) without libp2p, and the node maps one to the other.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum GossipTopic {
    Tx,
    Consensus,
    Block,
}

impl GossipTopic {
    pub const ALL: [GossipTopic; 3] = [GossipTopic::Tx, GossipTopic::Consensus, GossipTopic::Block];

    /// The label value: the topic's name in its gossipsub topic string (`/ait/<chain>/tx/1`).
    pub fn as_str(self) -> &'static str {
        match self {
            GossipTopic::Tx => "tx",
            GossipTopic::Consensus => "consensus",
            GossipTopic::Block => "block",
        }
    }
}

/// Whether a gossip message was received from a peer or published by this node.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub const ALL: [Direction; 2] = [Direction::In, Direction::Out];

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

// Written by hand: the derive emits the variant name as is (`Tx`), and label values are
// lower case like every other Prometheus label value.
impl EncodeLabelValue for GossipTopic {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

impl EncodeLabelValue for Direction {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GossipLabels {
    topic: GossipTopic,
    direction: Direction,
}

/// `&'static str` so only reasons compiled into the node can become label values, never text
/// taken from a message or an error's `Display`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Between consecutive commits: 10 ms to ~50 s in steps of ×1.5. The low end covers
/// `block_time_ms = 0` devnets (≥ 100 blocks/s, SPEC §9), the default 1 s block time sits in
/// the middle where ×1.5 steps still tell "on time" from "one and a half block times late",
/// and the top catches several back-to-back view changes before `+Inf`.
fn block_interval_buckets() -> impl Iterator<Item = f64> {
    tidy(exponential_buckets(0.01, 1.5, 22))
}

/// Proposal seen (received or built) to commit on this node: 1 ms to ~5 s in steps of ×1.5.
/// The SPEC §9 latency targets (p50 ≤ 300 ms, p99 ≤ 1 s, 16 validators p50 ≤ 2 s) all fall
/// well inside, with ~20 % resolution so `histogram_quantile` can check them; a local
/// single-validator commit takes about a millisecond.
fn finality_buckets() -> impl Iterator<Item = f64> {
    tidy(exponential_buckets(0.001, 1.5, 22))
}

/// One block's atomic store write plus flush: 100 µs to ~1.6 s in doublings. This histogram is
/// for spotting disk stalls (an fsync taking 100× longer than usual), where the order of
/// magnitude matters more than fine resolution, so fewer, wider buckets suffice.
fn store_commit_buckets() -> impl Iterator<Item = f64> {
    tidy(exponential_buckets(0.0001, 2.0, 15))
}

/// Rounds bucket bounds to three significant digits. Repeated multiplication yields bounds
/// like `0.0022500000000000004`, which end up verbatim in `le` labels that dashboards and
/// alerts have to spell; three digits keep them readable and stable across platforms.
fn tidy(buckets: impl Iterator<Item = f64>) -> impl Iterator<Item = f64> {
    buckets.map(|b| format!("{b:.2e}").parse().unwrap_or(b))
}

/// Handles to every node metric. Cloning is cheap (each metric is an `Arc` inside) and all
/// clones update the same series, so each task can own one instead of sharing a lock.
#[derive(Clone, Debug)]
pub struct NodeMetrics {
    blocks: Counter,
    transactions: Counter,
    consensus_rounds: Counter,
    view_changes: Counter,
    network_peers: Gauge,
    height: Gauge,
    block_interval: Histogram,
    finality: Histogram,
    mempool_size: Gauge,
    mempool_bytes: Gauge,
    catching_up: Gauge,
    sync_lag_blocks: Gauge,
    validator_last_signed_height: Gauge,
    validator_missed_blocks: Counter,
    gossip_messages: Family<GossipLabels, Counter>,
    gossip_bytes: Family<GossipLabels, Counter>,
    invalid_messages: Family<ReasonLabels, Counter>,
    sync_blocks: Counter,
    store_commit: Histogram,
    mempool_rejections: Family<ReasonLabels, Counter>,
}

impl NodeMetrics {
    /// Registers every node metric into `registry`. Counters are registered without `_total`
    /// and units are passed as [`Unit`]s: prometheus-client appends both (and writes the
    /// OpenMetrics `# UNIT` line), so a suffix in the name would be doubled.
    ///
    /// Call once per registry: registering twice exposes duplicate metric families, which
    /// Prometheus rejects.
    pub fn register(registry: &mut Registry) -> NodeMetrics {
        let m = NodeMetrics {
            blocks: Counter::default(),
            transactions: Counter::default(),
            consensus_rounds: Counter::default(),
            view_changes: Counter::default(),
            network_peers: Gauge::default(),
            height: Gauge::default(),
            block_interval: Histogram::new(block_interval_buckets()),
            finality: Histogram::new(finality_buckets()),
            mempool_size: Gauge::default(),
            mempool_bytes: Gauge::default(),
            catching_up: Gauge::default(),
            sync_lag_blocks: Gauge::default(),
            validator_last_signed_height: Gauge::default(),
            validator_missed_blocks: Counter::default(),
            gossip_messages: Family::default(),
            gossip_bytes: Family::default(),
            invalid_messages: Family::default(),
            sync_blocks: Counter::default(),
            store_commit: Histogram::new(store_commit_buckets()),
            mempool_rejections: Family::default(),
        };
        // Every topic and direction series exists from the start, at zero: a counter that
        // appears only at its first increment hides that increment from `rate()` and
        // `increase()`, and this label space is small and fixed. Reason families cannot be
        // primed (the reasons belong to other modules) and stay absent until first used.
        for topic in GossipTopic::ALL {
            for direction in Direction::ALL {
                let labels = GossipLabels { topic, direction };
                drop(m.gossip_messages.get_or_create(&labels));
                drop(m.gossip_bytes.get_or_create(&labels));
            }
        }
        let r = registry;
        r.register(
            "blockchain_blocks",
            "Blocks committed by this node (consensus and sync)",
            m.blocks.clone(),
        );
        r.register(
            "blockchain_transactions",
            "Transactions in blocks committed by this node",
            m.transactions.clone(),
        );
        r.register(
            "blockchain_consensus_rounds",
            "Consensus views started (one per height, plus one per view change)",
            m.consensus_rounds.clone(),
        );
        r.register(
            "blockchain_view_changes",
            "View changes this node moved to",
            m.view_changes.clone(),
        );
        r.register(
            "blockchain_network_peers",
            "Connected peers",
            m.network_peers.clone(),
        );
        r.register(
            "blockchain_height",
            "Height of the last committed block",
            m.height.clone(),
        );
        r.register_with_unit(
            "blockchain_block_interval",
            "Time between consecutive commits seen by this node",
            Unit::Seconds,
            m.block_interval.clone(),
        );
        r.register_with_unit(
            "blockchain_finality",
            "Time from a block's proposal arriving or being built to its commit on this node",
            Unit::Seconds,
            m.finality.clone(),
        );
        r.register(
            "blockchain_mempool_size",
            "Transactions pending in the mempool",
            m.mempool_size.clone(),
        );
        r.register_with_unit(
            "blockchain_mempool",
            "Encoded size of the transactions pending in the mempool",
            Unit::Bytes,
            m.mempool_bytes.clone(),
        );
        r.register(
            "blockchain_catching_up",
            "1 while the node is syncing blocks from peers, else 0",
            m.catching_up.clone(),
        );
        r.register(
            "blockchain_sync_lag_blocks",
            "Blocks between this node's head and the best head its peers report",
            m.sync_lag_blocks.clone(),
        );
        r.register(
            "blockchain_validator_last_signed_height",
            "Last height this node's validator key signed a commit vote for",
            m.validator_last_signed_height.clone(),
        );
        r.register(
            "blockchain_validator_missed_blocks",
            "Committed blocks this node's validator was in the set for but did not sign",
            m.validator_missed_blocks.clone(),
        );
        r.register(
            "blockchain_gossip_messages",
            "Gossip messages by topic and direction",
            m.gossip_messages.clone(),
        );
        r.register_with_unit(
            "blockchain_gossip",
            "Gossip payload bytes by topic and direction",
            Unit::Bytes,
            m.gossip_bytes.clone(),
        );
        r.register(
            "blockchain_invalid_messages",
            "Messages from peers rejected as invalid, by reason",
            m.invalid_messages.clone(),
        );
        r.register(
            "blockchain_sync_blocks",
            "Blocks applied through sync rather than consensus",
            m.sync_blocks.clone(),
        );
        r.register_with_unit(
            "blockchain_store_commit",
            "Atomic store write and flush of one committed block",
            Unit::Seconds,
            m.store_commit.clone(),
        );
        r.register(
            "blockchain_mempool_rejections",
            "Transactions the mempool refused, by reason",
            m.mempool_rejections.clone(),
        );
        m
    }

    /// A block was committed at `height` with `txs` transactions. `interval` is the time since
    /// the previous commit this node saw (`None` for the first one after start-up, which has
    /// no meaningful predecessor); `finality` is `None` for blocks this node did not see
    /// proposed (applied from sync), which would otherwise skew the histogram with download
    /// times.
    pub fn on_commit(
        &self,
        height: u64,
        txs: u64,
        interval: Option<Duration>,
        finality: Option<Duration>,
    ) {
        self.blocks.inc();
        self.transactions.inc_by(txs);
        self.height.set(clamp(height));
        if let Some(d) = interval {
            self.block_interval.observe(d.as_secs_f64());
        }
        if let Some(d) = finality {
            self.finality.observe(d.as_secs_f64());
        }
    }

    /// One gossip message of `bytes` payload bytes on `topic`.
    pub fn gossip(&self, topic: GossipTopic, direction: Direction, bytes: usize) {
        let labels = GossipLabels { topic, direction };
        self.gossip_messages.get_or_create(&labels).inc();
        self.gossip_bytes
            .get_or_create(&labels)
            .inc_by(u64::try_from(bytes).unwrap_or(u64::MAX));
    }

    /// A peer's message was rejected as invalid. `reason` is a fixed snake_case code (e.g.
    /// `decode`, `bad_signature`, `wrong_chain`).
    pub fn invalid(&self, reason: &'static str) {
        self.invalid_messages
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn set_peers(&self, n: usize) {
        self.network_peers.set(clamp(n));
    }

    /// The mempool's pending transaction count and their encoded bytes.
    pub fn set_mempool(&self, count: usize, bytes: u64) {
        self.mempool_size.set(clamp(count));
        self.mempool_bytes.set(clamp(bytes));
    }

    /// Sync state: whether the node is catching up and how many blocks it is behind the best
    /// peer (0 when level).
    pub fn set_sync(&self, catching_up: bool, lag: u64) {
        self.catching_up.set(i64::from(catching_up));
        self.sync_lag_blocks.set(clamp(lag));
    }

    /// This node's validator signed a commit vote at `height`.
    pub fn validator_signed(&self, height: u64) {
        self.validator_last_signed_height.set(clamp(height));
    }

    /// A block was committed without this node's validator's signature while it was in the
    /// validator set.
    pub fn validator_missed(&self) {
        self.validator_missed_blocks.inc();
    }

    pub fn view_change(&self) {
        self.view_changes.inc();
    }

    /// A consensus view started (a new height, or a new view after a view change).
    pub fn round(&self) {
        self.consensus_rounds.inc();
    }

    /// One block's atomic store write and flush took `dur`.
    pub fn store_commit(&self, dur: Duration) {
        self.store_commit.observe(dur.as_secs_f64());
    }

    /// The mempool refused a transaction; `reason` is `MempoolError::reason()`.
    pub fn mempool_rejected(&self, reason: &'static str) {
        self.mempool_rejections
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// `n` blocks were applied through sync.
    pub fn sync_blocks(&self, n: u64) {
        self.sync_blocks.inc_by(n);
    }
}

fn clamp<T: TryInto<i64>>(v: T) -> i64 {
    v.try_into().unwrap_or(i64::MAX)
}

/// The registry as OpenMetrics text, ready to serve with [`CONTENT_TYPE`].
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a `String` cannot fail, and every registered metric encodes; an error here
    // would be a prometheus-client bug, and an empty scrape reports it better than a panic in
    // the RPC handler would.
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        out.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every metric name SPEC §8 requires of the node (RPC metrics are the RPC server's), plus
    /// the node's own sync, store and mempool-rejection metrics.
    const SPEC_NAMES: [&str; 20] = [
        "blockchain_blocks_total",
        "blockchain_transactions_total",
        "blockchain_consensus_rounds_total",
        "blockchain_view_changes_total",
        "blockchain_network_peers",
        "blockchain_height",
        "blockchain_block_interval_seconds",
        "blockchain_finality_seconds",
        "blockchain_mempool_size",
        "blockchain_mempool_bytes",
        "blockchain_catching_up",
        "blockchain_sync_lag_blocks",
        "blockchain_validator_last_signed_height",
        "blockchain_validator_missed_blocks_total",
        "blockchain_gossip_messages_total",
        "blockchain_gossip_bytes_total",
        "blockchain_invalid_messages_total",
        "blockchain_sync_blocks_total",
        "blockchain_store_commit_seconds",
        "blockchain_mempool_rejections_total",
    ];

    fn setup() -> (Registry, NodeMetrics) {
        let mut registry = Registry::default();
        let m = NodeMetrics::register(&mut registry);
        (registry, m)
    }

    /// The value of the sample line whose series (name plus labels) is exactly `series`.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(series)?;
            let value = rest.strip_prefix(' ')?;
            value.split(' ').next()?.parse().ok()
        })
    }

    /// Metric family names from the `# TYPE` lines.
    fn families(text: &str) -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .map(str::to_string)
            .collect()
    }

    /// Sample names (before labels or the value), which is what PromQL queries use.
    fn sample_names(text: &str) -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.split(['{', ' ']).next())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn every_spec_name_is_exposed() {
        let (registry, m) = setup();
        // Reason families only show samples once a reason has been counted.
        m.invalid("decode");
        m.mempool_rejected("fee_too_low");
        let text = encode(&registry);
        let names = sample_names(&text);
        for want in SPEC_NAMES {
            let found = names
                .iter()
                .any(|n| n == want || n.strip_prefix(want) == Some("_bucket"));
            assert!(found, "{want} missing from:\n{text}");
        }
        assert!(!text.contains("_total_total"), "{text}");
        assert!(!text.contains("_seconds_seconds"), "{text}");
        assert!(!text.contains("_bytes_bytes"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn family_names_follow_conventions() {
        let (registry, m) = setup();
        m.invalid("decode");
        m.mempool_rejected("duplicate");
        let text = encode(&registry);
        let fams = families(&text);
        assert_eq!(fams.len(), 20, "{fams:?}");
        for f in &fams {
            assert!(f.starts_with("blockchain_"), "{f}");
            assert!(
                !f.ends_with("_total"),
                "counter family {f} keeps its suffix off"
            );
        }
        assert!(text.contains("# TYPE blockchain_blocks counter"), "{text}");
        assert!(
            text.contains("# UNIT blockchain_finality_seconds seconds"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE blockchain_gossip_bytes counter"),
            "{text}"
        );
    }

    #[test]
    fn values_after_updates() {
        let (registry, m) = setup();
        m.on_commit(5, 3, None, Some(Duration::from_millis(120)));
        m.on_commit(6, 4, Some(Duration::from_millis(1_010)), None);
        m.set_peers(7);
        m.set_mempool(12, 3_400);
        m.set_sync(true, 250);
        m.validator_signed(6);
        m.validator_missed();
        m.view_change();
        m.round();
        m.round();
        m.store_commit(Duration::from_micros(350));
        m.sync_blocks(9);
        let text = encode(&registry);
        let v = |s: &str| sample(&text, s).unwrap_or_else(|| panic!("{s} missing:\n{text}"));

        assert_eq!(v("blockchain_blocks_total"), 2.0);
        assert_eq!(v("blockchain_transactions_total"), 7.0);
        assert_eq!(v("blockchain_height"), 6.0);
        assert_eq!(v("blockchain_network_peers"), 7.0);
        assert_eq!(v("blockchain_mempool_size"), 12.0);
        assert_eq!(v("blockchain_mempool_bytes"), 3_400.0);
        assert_eq!(v("blockchain_catching_up"), 1.0);
        assert_eq!(v("blockchain_sync_lag_blocks"), 250.0);
        assert_eq!(v("blockchain_validator_last_signed_height"), 6.0);
        assert_eq!(v("blockchain_validator_missed_blocks_total"), 1.0);
        assert_eq!(v("blockchain_view_changes_total"), 1.0);
        assert_eq!(v("blockchain_consensus_rounds_total"), 2.0);
        assert_eq!(v("blockchain_sync_blocks_total"), 9.0);

        // Only observed durations count; `None` is skipped.
        assert_eq!(v("blockchain_finality_seconds_count"), 1.0);
        assert!((v("blockchain_finality_seconds_sum") - 0.12).abs() < 1e-9);
        assert_eq!(v("blockchain_block_interval_seconds_count"), 1.0);
        assert!((v("blockchain_block_interval_seconds_sum") - 1.01).abs() < 1e-9);
        assert_eq!(v("blockchain_store_commit_seconds_count"), 1.0);
        assert_eq!(
            v("blockchain_store_commit_seconds_bucket{le=\"+Inf\"}"),
            1.0
        );
        assert_eq!(
            v("blockchain_store_commit_seconds_bucket{le=\"0.0001\"}"),
            0.0
        );
        assert_eq!(
            v("blockchain_store_commit_seconds_bucket{le=\"0.0004\"}"),
            1.0
        );

        m.set_sync(false, 0);
        let text = encode(&registry);
        assert_eq!(sample(&text, "blockchain_catching_up"), Some(0.0));
        assert_eq!(sample(&text, "blockchain_sync_lag_blocks"), Some(0.0));
    }

    #[test]
    fn labelled_families_render_their_labels() {
        let (registry, m) = setup();
        m.gossip(GossipTopic::Consensus, Direction::Out, 200);
        m.gossip(GossipTopic::Consensus, Direction::Out, 50);
        m.gossip(GossipTopic::Block, Direction::In, 1_000);
        m.invalid("bad_signature");
        m.invalid("bad_signature");
        m.mempool_rejected("mempool_full");
        let text = encode(&registry);
        let v = |s: &str| sample(&text, s).unwrap_or_else(|| panic!("{s} missing:\n{text}"));

        assert_eq!(
            v("blockchain_gossip_messages_total{topic=\"consensus\",direction=\"out\"}"),
            2.0
        );
        assert_eq!(
            v("blockchain_gossip_bytes_total{topic=\"consensus\",direction=\"out\"}"),
            250.0
        );
        assert_eq!(
            v("blockchain_gossip_messages_total{topic=\"block\",direction=\"in\"}"),
            1.0
        );
        assert_eq!(
            v("blockchain_gossip_bytes_total{topic=\"block\",direction=\"in\"}"),
            1_000.0
        );
        assert_eq!(
            v("blockchain_invalid_messages_total{reason=\"bad_signature\"}"),
            2.0
        );
        assert_eq!(
            v("blockchain_mempool_rejections_total{reason=\"mempool_full\"}"),
            1.0
        );
        // Topic and direction series exist (at zero) before their first message.
        assert_eq!(
            v("blockchain_gossip_messages_total{topic=\"tx\",direction=\"in\"}"),
            0.0
        );
        // Reasons never seen are not exposed.
        assert!(!text.contains("reason=\"decode\""), "{text}");
    }

    #[test]
    fn every_topic_and_direction_has_a_label_value() {
        let (registry, m) = setup();
        for topic in GossipTopic::ALL {
            for direction in Direction::ALL {
                m.gossip(topic, direction, 1);
            }
        }
        let text = encode(&registry);
        for topic in ["tx", "consensus", "block"] {
            for direction in ["in", "out"] {
                let series = format!(
                    "blockchain_gossip_messages_total{{topic=\"{topic}\",direction=\"{direction}\"}}"
                );
                assert_eq!(sample(&text, &series), Some(1.0), "{series}\n{text}");
            }
        }
    }

    #[test]
    fn mempool_reasons_come_from_the_chain_crate() {
        let (registry, m) = setup();
        let e = aitbc_chain::mempool::MempoolError::Duplicate;
        m.mempool_rejected(e.reason());
        let text = encode(&registry);
        assert_eq!(
            sample(
                &text,
                "blockchain_mempool_rejections_total{reason=\"duplicate\"}"
            ),
            Some(1.0)
        );
    }

    #[test]
    fn clones_share_series_and_values_clamp() {
        let (registry, m) = setup();
        let other = m.clone();
        other.on_commit(u64::MAX, 0, None, None);
        m.on_commit(1, 0, None, None);
        let text = encode(&registry);
        assert_eq!(sample(&text, "blockchain_blocks_total"), Some(2.0));
        other.set_mempool(1, u64::MAX);
        let text = encode(&registry);
        assert_eq!(
            sample(&text, "blockchain_mempool_bytes"),
            Some(i64::MAX as f64)
        );
    }

    #[test]
    fn buckets_cover_their_ranges() {
        let interval: Vec<f64> = block_interval_buckets().collect();
        assert!(interval[0] <= 0.01 && *interval.last().unwrap() >= 30.0);
        let finality: Vec<f64> = finality_buckets().collect();
        assert!(finality[0] <= 0.001 && *finality.last().unwrap() >= 2.0);
        // The SPEC §9 latency targets each have a bucket boundary within 20 %.
        for target in [0.3, 1.0, 2.0] {
            assert!(
                finality.iter().any(|b| (b / target - 1.0).abs() < 0.2),
                "{target}"
            );
        }
        let store: Vec<f64> = store_commit_buckets().collect();
        assert!(store[0] <= 0.0001 && *store.last().unwrap() >= 1.0);
        for b in interval.iter().chain(&finality).chain(&store) {
            let digits = b
                .to_string()
                .trim_start_matches(['0', '.'])
                .replace('.', "");
            assert!(
                digits.len() <= 3,
                "{b} has more than three significant digits"
            );
        }
        for w in finality.windows(2) {
            assert!(w[0] < w[1], "{finality:?} must increase");
        }
    }

    #[test]
    fn bucket_labels_are_short() {
        let (registry, _m) = setup();
        let text = encode(&registry);
        assert!(
            text.contains("blockchain_finality_seconds_bucket{le=\"0.00225\"}"),
            "{text}"
        );
        assert!(
            text.contains("blockchain_block_interval_seconds_bucket{le=\"1.3\"}"),
            "{text}"
        );
    }
}
