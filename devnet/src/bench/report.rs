//! The bench's figures: one [`Report`], printed as a table next to the SPEC §9 targets and
//! serialised as JSON (same numbers, same names, for scripts and the README).

use super::send::Rejection;
use super::stats::{round1, IntervalMs, LatencyMs};
use crate::table::{render, thousands};
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// SPEC §9: committed transfers per second, sustained for 60 s.
pub const TARGET_TPS: f64 = 10_000.0;
/// The window over which [`TARGET_TPS`] must hold.
pub const TARGET_WINDOW_S: f64 = 60.0;
/// SPEC §9: submit → commit latency p50.
pub const TARGET_P50_MS: f64 = 300.0;
/// SPEC §9: submit → commit latency p99.
pub const TARGET_P99_MS: f64 = 1_000.0;
/// SPEC §9: resident memory per validator at load.
pub const TARGET_RSS_MIB: f64 = 256.0;

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub chain_id: String,
    pub validators: usize,
    pub block_time_ms: u64,
    /// Cores of this machine (the validators and the generator share them).
    pub cpus: usize,
    /// The measured window as run (shorter than asked only when interrupted).
    pub duration_s: f64,
    pub interrupted: bool,
    /// Target transfers per second; 0 = as fast as the chain takes them.
    pub target_rate: u64,
    pub accounts: u32,
    pub connections: usize,
    pub batch: usize,
    /// Transfers signed before the window.
    pub presigned: u64,
    /// The pre-signed count was cut to the memory cap.
    pub presign_capped: bool,
    pub presign_s: f64,
    /// Fee of each transfer: the minimum for its size.
    pub fee: u64,
    /// Distinct transfers sent at least once during the window.
    pub submitted: u64,
    /// Distinct transfers a node admitted to its mempool.
    pub accepted: u64,
    /// Distinct transfers found in blocks committed during the window.
    pub committed: u64,
    /// Transfers submitted in the window and found committed during the drain after it
    /// (they count for latency, not for tx/s).
    pub committed_after_window: u64,
    pub committed_tps: f64,
    pub submitted_tps: f64,
    /// Sends the schedule called for that were not made (rate > 0 only).
    pub behind_schedule: u64,
    /// When the first sender ran out of pre-signed transfers, seconds into the window.
    pub ran_dry_at_s: Option<f64>,
    /// Accounts that stopped sending after a refusal a resend cannot cure.
    pub retired_accounts: u64,
    /// Refusals at submit by reason (a transfer resent after a passing refusal counts once
    /// per refusal).
    pub rejections: BTreeMap<String, Rejection>,
    pub latency_ms: LatencyMs,
    pub blocks: BlockStats,
    /// Largest increase of `blockchain_view_changes_total` on any validator over the window
    /// (every validator counts the same view change, so they are not summed).
    pub view_changes: Option<u64>,
    pub nodes: Vec<NodeStats>,
    pub generator: ProcessStats,
    /// Failed block reads by the commit follower (other than "not yet committed").
    pub follower_errors: u64,
    pub targets: Vec<Target>,
}

/// Blocks committed during the window.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BlockStats {
    pub count: u64,
    pub empty: u64,
    pub txs_mean: Option<f64>,
    pub txs_max: u64,
    /// Between consecutive blocks' header timestamps.
    pub interval_ms: IntervalMs,
    /// From a block's header timestamp to the follower reading it: the block's share of
    /// submit → commit latency, including the follower's own delay.
    pub seen_after_ms: IntervalMs,
    /// Blocks decided in a view above 0 (after at least one view change at their height).
    pub after_view_change: u64,
}

/// One validator over the window.
#[derive(Clone, Debug, Serialize)]
pub struct NodeStats {
    pub node: usize,
    pub pid: u32,
    pub rpc_url: String,
    /// Share of one core over the window (can exceed 100: a node has many threads).
    pub cpu_percent: Option<f64>,
    /// Resident memory at the end of the window.
    pub rss_mib: Option<f64>,
    /// Largest resident memory sampled during the window.
    pub rss_max_mib: Option<f64>,
    pub view_changes: Option<u64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ProcessStats {
    pub cpu_percent: Option<f64>,
    pub rss_mib: Option<f64>,
}

/// A SPEC §9 figure next to what was measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Target {
    pub figure: String,
    pub target: String,
    pub measured: String,
    /// `None` when this run cannot decide it (e.g. a window shorter than the target's).
    pub met: Option<bool>,
}

pub fn mib(bytes: u64) -> f64 {
    round1(bytes as f64 / (1024.0 * 1024.0))
}

fn ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 1_000.0 => format!("{:.2} s", v / 1_000.0),
        Some(v) => format!("{v:.1} ms"),
        None => "-".into(),
    }
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// The SPEC §9 rows this run can speak to.
pub fn targets(r: &Report) -> Vec<Target> {
    let mut out = Vec::new();
    let window_ok = r.duration_s >= TARGET_WINDOW_S;
    out.push(Target {
        figure: "committed transfers/s".into(),
        target: format!("≥ {} sustained 60 s", thousands(TARGET_TPS as u64)),
        measured: format!(
            "{} over {:.0} s",
            thousands(r.committed_tps.round() as u64),
            r.duration_s
        ),
        met: window_ok.then_some(r.committed_tps >= TARGET_TPS),
    });
    let lat = |v: Option<f64>, limit: f64| v.map(|v| v <= limit);
    out.push(Target {
        figure: "submit → commit latency p50".into(),
        target: "≤ 300 ms".into(),
        measured: ms(r.latency_ms.p50),
        met: lat(r.latency_ms.p50, TARGET_P50_MS),
    });
    out.push(Target {
        figure: "submit → commit latency p95".into(),
        target: "-".into(),
        measured: ms(r.latency_ms.p95),
        met: None,
    });
    out.push(Target {
        figure: "submit → commit latency p99".into(),
        target: "≤ 1 s".into(),
        measured: ms(r.latency_ms.p99),
        met: lat(r.latency_ms.p99, TARGET_P99_MS),
    });
    let rss = r
        .nodes
        .iter()
        .filter_map(|n| n.rss_max_mib.map(|m| (m, n.node)))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    out.push(Target {
        figure: "resident memory per validator".into(),
        target: "≤ 256 MiB".into(),
        measured: rss.map_or_else(
            || "-".into(),
            |(m, node)| format!("{m:.1} MiB max (node{node})"),
        ),
        // Every validator must have been measured for "per validator" to hold.
        met: (r.nodes.iter().all(|n| n.rss_max_mib.is_some()) && !r.nodes.is_empty()).then(|| {
            r.nodes
                .iter()
                .all(|n| n.rss_max_mib.is_some_and(|m| m <= TARGET_RSS_MIB))
        }),
    });
    for (what, spread) in [
        ("block interval", &r.blocks.interval_ms),
        ("block timestamp → read", &r.blocks.seen_after_ms),
    ] {
        out.push(Target {
            figure: format!("{what} mean / p50 / max"),
            target: "-".into(),
            measured: format!(
                "{} / {} / {}",
                ms(spread.mean),
                ms(spread.p50),
                ms(spread.max)
            ),
            met: None,
        });
    }
    out.push(Target {
        figure: "view changes".into(),
        target: "-".into(),
        measured: opt(r.view_changes),
        met: None,
    });
    out
}

/// The report as text: a summary, the targets table, the per-validator table.
/// The figures against their SPEC §9 targets, as a table.
pub fn targets_table(targets: &[Target]) -> String {
    let rows: Vec<Vec<String>> = targets
        .iter()
        .map(|t| {
            let met = match t.met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "-",
            };
            vec![
                t.figure.clone(),
                t.measured.clone(),
                t.target.clone(),
                met.into(),
            ]
        })
        .collect();
    render(&["figure", "measured", "target (SPEC §9)", "met"], &rows)
}

/// Writes a bench's `text` to `out`, and its figures as JSON where `--json` says: to a file
/// (`json` = PATH), or to `out` with the text on stderr (`json` = `-`).
pub fn emit(
    text: &str,
    figures: &impl Serialize,
    json: Option<&Path>,
    out: &mut dyn Write,
) -> Result<()> {
    let as_json = serde_json::to_string_pretty(figures)? + "\n";
    match json {
        Some(path) if path == Path::new("-") => {
            eprint!("{text}");
            out.write_all(as_json.as_bytes())
                .context("writing the JSON report")?;
        }
        Some(path) => {
            write!(out, "{text}").context("writing the report")?;
            crate::record::write_atomic(path, as_json.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            writeln!(out, "figures written to {}", path.display())?;
        }
        None => write!(out, "{text}").context("writing the report")?,
    }
    Ok(())
}

pub fn render_text(r: &Report) -> String {
    let mut s = String::new();
    let rate = if r.target_rate == 0 {
        "as fast as the chain takes them".to_string()
    } else {
        format!("{} tx/s", thousands(r.target_rate))
    };
    s.push_str(&format!(
        "bench: {} validators (block time {} ms), {:.0} s at {rate}, {} accounts, {} connections, \
         batches of ≤ {}{}\n",
        r.validators,
        r.block_time_ms,
        r.duration_s,
        thousands(u64::from(r.accounts)),
        r.connections,
        r.batch,
        if r.interrupted { " (interrupted)" } else { "" },
    ));
    s.push_str(&format!(
        "pre-signed {} transfers in {:.1} s{} (fee {} each)\n",
        thousands(r.presigned),
        r.presign_s,
        if r.presign_capped {
            ", cut to the memory cap"
        } else {
            ""
        },
        thousands(r.fee),
    ));
    s.push_str(&format!(
        "submitted {} ({:.0}/s), admitted {}, committed {} in the window + {} after it\n",
        thousands(r.submitted),
        r.submitted_tps,
        thousands(r.accepted),
        thousands(r.committed),
        thousands(r.committed_after_window),
    ));
    if !r.rejections.is_empty() {
        let list: Vec<String> = r
            .rejections
            .iter()
            .map(|(reason, rej)| format!("{reason} {}", thousands(rej.count)))
            .collect();
        s.push_str(&format!("refused at submit: {}\n", list.join(", ")));
    }
    if r.retired_accounts > 0 {
        s.push_str(&format!(
            "{} accounts stopped sending after a refusal a resend cannot cure\n",
            r.retired_accounts
        ));
    }
    if r.behind_schedule > 0 {
        s.push_str(&format!(
            "behind schedule: {} sends due were not made (nonce window or refusals held senders back)\n",
            thousands(r.behind_schedule)
        ));
    }
    if let Some(t) = r.ran_dry_at_s {
        s.push_str(&format!(
            "a sender ran out of pre-signed transfers {t:.1} s into the window\n"
        ));
    }
    if r.follower_errors > 0 {
        s.push_str(&format!(
            "{} failed block reads by the commit follower\n",
            r.follower_errors
        ));
    }
    s.push('\n');
    s.push_str(&targets_table(&r.targets));
    s.push('\n');
    let pct = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.1}%"));
    let mem = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.1} MiB"));
    let mut rows: Vec<Vec<String>> = r
        .nodes
        .iter()
        .map(|n| {
            vec![
                format!("node{}", n.node),
                n.pid.to_string(),
                pct(n.cpu_percent),
                mem(n.rss_mib),
                mem(n.rss_max_mib),
                opt(n.view_changes),
            ]
        })
        .collect();
    rows.push(vec![
        "bench".into(),
        std::process::id().to_string(),
        pct(r.generator.cpu_percent),
        mem(r.generator.rss_mib),
        "-".into(),
        "-".into(),
    ]);
    s.push_str(&render(
        &["process", "pid", "CPU", "RSS", "RSS max", "view changes"],
        &rows,
    ));
    s.push_str(&format!(
        "CPU: share of one core over the window; the {} validators and this load generator share \
         {} cores.\n",
        r.validators, r.cpus
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Report {
        let mut r = Report {
            chain_id: "aitbc-devnet".into(),
            validators: 2,
            block_time_ms: 1_000,
            cpus: 2,
            duration_s: 60.0,
            interrupted: false,
            target_rate: 0,
            accounts: 1_000,
            connections: 4,
            batch: 100,
            presigned: 900_000,
            presign_capped: false,
            presign_s: 9.5,
            fee: 2_640,
            submitted: 610_000,
            accepted: 609_000,
            committed: 600_600,
            committed_after_window: 8_000,
            committed_tps: 10_010.0,
            submitted_tps: 10_166.7,
            behind_schedule: 0,
            ran_dry_at_s: None,
            retired_accounts: 0,
            rejections: BTreeMap::from([(
                "mempool_full".to_string(),
                Rejection {
                    count: 12,
                    example: "mempool is full".into(),
                },
            )]),
            latency_ms: LatencyMs {
                samples: 608_600,
                mean: Some(280.0),
                p50: Some(250.5),
                p95: Some(700.0),
                p99: Some(1_200.0),
                max: Some(2_000.0),
            },
            blocks: BlockStats::default(),
            view_changes: Some(0),
            nodes: (0..2)
                .map(|i| NodeStats {
                    node: i,
                    pid: 100 + i as u32,
                    rpc_url: format!("http://127.0.0.1:{}", 2000 + i),
                    cpu_percent: Some(80.0),
                    rss_mib: Some(100.0),
                    rss_max_mib: Some(if i == 1 { 300.0 } else { 120.0 }),
                    view_changes: Some(0),
                })
                .collect(),
            generator: ProcessStats::default(),
            follower_errors: 0,
            targets: Vec::new(),
        };
        r.targets = targets(&r);
        r
    }

    #[test]
    fn targets_are_judged_against_spec_figures() {
        let r = sample();
        let met: Vec<(&str, Option<bool>)> = r
            .targets
            .iter()
            .map(|t| (t.figure.as_str(), t.met))
            .collect();
        assert_eq!(met[0], ("committed transfers/s", Some(true)));
        assert_eq!(met[1], ("submit → commit latency p50", Some(true)));
        assert_eq!(met[3], ("submit → commit latency p99", Some(false)));
        assert_eq!(met[4], ("resident memory per validator", Some(false)));
        assert!(
            r.targets[4].measured.contains("node1"),
            "{:?}",
            r.targets[4]
        );

        // A short window cannot show a 60 s sustained rate; missing figures decide nothing.
        let mut short = sample();
        short.duration_s = 5.0;
        short.latency_ms = LatencyMs::default();
        short.nodes[0].rss_max_mib = None;
        let t = targets(&short);
        assert_eq!(t[0].met, None);
        assert_eq!(t[1].met, None);
        assert_eq!(t[1].measured, "-");
        assert_eq!(t[4].met, None);
    }

    #[test]
    fn text_has_the_tables_and_refusals() {
        let text = render_text(&sample());
        assert!(text.contains("as fast as the chain takes them"), "{text}");
        assert!(
            text.contains("refused at submit: mempool_full 12"),
            "{text}"
        );
        assert!(text.contains("10,010 over 60 s"), "{text}");
        assert!(text.contains("1.20 s"), "{text}");
        assert!(text.contains("node1"), "{text}");
        assert!(text.contains("300.0 MiB"), "{text}");
        let json = serde_json::to_value(sample()).expect("json");
        assert_eq!(json["nodes"][1]["rss_max_mib"], 300.0);
        assert_eq!(json["rejections"]["mempool_full"]["count"], 12);
        assert_eq!(json["latency_ms"]["p50"], 250.5);
    }
}
