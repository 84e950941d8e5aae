//! End-to-end: `aitbc-devnet bench` against a real 4-validator devnet (separate `aitbc-node`
//! processes), checked through its JSON report and against the chain itself.
//!
//! These tests check that the figures are real and coherent (committed ≤ submitted, ordered
//! percentiles, a CPU and memory figure per validator, commits that the chain's account nonces
//! confirm), never how fast the chain is: SPEC §9 figures are measured by a bench run, not by
//! timed tests on a shared machine.
//!
//! As in `tests/devnet.rs`, the node binary is the `aitbc-node` next to `aitbc-devnet` (run
//! `cargo build -p aitbc-node` first when testing only this package), and every devnet is held
//! by a guard ([`Net`](common::Net), `tests/common/mod.rs`) whose `Drop` stops its nodes, so a
//! failed assertion leaves no process behind.

// Not every harness item is used here (e.g. the RPC helpers `height` and `balance`).
#[allow(dead_code)]
mod common;

use aitbc_devnet::bench::rpc::Conn;
use common::{devnet, text, Net};
use serde_json::Value;
use std::time::Duration;

fn u(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a count: {v}"))
}

fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number: {v}"))
}

/// Sum of the account nonces of devnet accounts `0..count`, read from node0 in batches: every
/// committed transfer from a bench account raises its sender's nonce by one.
fn nonce_sum(net: &Net, count: u32) -> u64 {
    let url = net.record().nodes[0].rpc_url();
    let mut conn = Conn::new(&url, Duration::from_secs(10));
    let params: Vec<String> = (0..count)
        .map(|i| {
            serde_json::json!({ "address": aitbc_devnet::accounts::account_address(i).to_string() })
                .to_string()
        })
        .collect();
    let mut sum = 0;
    for chunk in params.chunks(100) {
        let calls: Vec<(&str, &str)> = chunk.iter().map(|p| ("getBalance", p.as_str())).collect();
        for answer in conn.batch::<Value>(&calls).expect("getBalance batch") {
            sum += u(&answer.expect("getBalance"), "nonce");
        }
    }
    sum
}

/// The bench on 4 validators at 200 ms blocks: 5 s at 200 tx/s, then a second short run with
/// the JSON on stdout. Both must report real, coherent figures.
#[test]
fn bench_reports_real_committed_figures_for_every_validator() {
    let net = Net::new();
    net.ok("up", &["-n", "4", "--block-time", "200"]);
    let before = nonce_sum(&net, 1_000);
    assert_eq!(before, 0, "a fresh devnet's accounts have sent nothing");

    let json_path = net.dir.join("bench.json");
    let json_arg = json_path.to_str().expect("utf-8");
    let table = net.ok(
        "bench",
        &["--duration", "5", "--rate", "200", "--json", json_arg],
    );
    let r: Value =
        serde_json::from_slice(&std::fs::read(&json_path).expect("JSON written")).expect("JSON");
    let context = format!("{table}\n{r:#}\n{}", net.logs());

    // Counts: something committed, never more than was submitted, and the chain agrees.
    let submitted = u(&r, "submitted");
    let committed = u(&r, "committed");
    let late = u(&r, "committed_after_window");
    assert!(committed > 0, "nothing committed:\n{context}");
    assert!(committed <= submitted, "{context}");
    assert!(committed + late <= u(&r, "accepted"), "{context}");
    assert!(u(&r, "accepted") <= submitted, "{context}");
    assert!(submitted <= 1_000, "200 tx/s for 5 s: {context}");
    assert!(
        r["rejections"].as_object().is_some_and(|m| m.is_empty()),
        "an idle devnet refused bench transfers (wrong nonce or fee?):\n{context}"
    );
    let chain = nonce_sum(&net, 1_000);
    assert!(
        chain >= committed + late && chain <= submitted,
        "account nonces moved by {chain}, the bench saw {committed} + {late} of {submitted}:\n{context}"
    );
    assert!(f(&r, "committed_tps") > 0.0, "{context}");

    // Latency: one sample per committed transfer, percentiles in order.
    let l = &r["latency_ms"];
    assert_eq!(u(l, "samples"), committed + late, "{context}");
    let (p50, p95, p99) = (f(l, "p50"), f(l, "p95"), f(l, "p99"));
    assert!(
        0.0 < p50 && p50 <= p95 && p95 <= p99 && p99 <= f(l, "max"),
        "{context}"
    );

    // Blocks and view changes were observed.
    assert!(u(&r["blocks"], "count") > 0, "{context}");
    assert!(r["view_changes"].is_u64(), "{context}");

    // CPU and memory of every validator, matched to the recorded pids.
    let record = net.record();
    let nodes = r["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 4, "{context}");
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(u(n, "node"), i as u64);
        assert_eq!(Some(u(n, "pid") as u32), record.nodes[i].pid, "{context}");
        assert!(f(n, "cpu_percent") >= 0.0, "{context}");
        assert!(f(n, "rss_mib") > 1.0, "{context}");
        assert!(f(n, "rss_max_mib") >= f(n, "rss_mib"), "{context}");
    }

    // The table shows the same figures next to the targets.
    for needle in [
        "committed transfers/s",
        "submit → commit latency p99",
        "resident memory per validator",
        "≤ 256 MiB",
        "node3",
    ] {
        assert!(table.contains(needle), "{needle}:\n{table}");
    }
    assert!(
        table.contains(&format!("{:.1} ms", p50)) || p50 >= 1_000.0,
        "{context}"
    );

    // A second run on the same chain starts from the committed nonces (no refusals), and
    // `--json -` puts the JSON alone on stdout and the table on stderr.
    let (stdout, stderr) = net.ok_with_stderr(
        "bench",
        &[
            "--duration",
            "2",
            "--rate",
            "50",
            "--accounts",
            "10",
            "--connections",
            "3",
            "--json",
            "-",
        ],
    );
    let r2: Value = serde_json::from_str(&stdout).expect("stdout is the JSON report");
    assert!(stderr.contains("committed transfers/s"), "{stderr}");
    assert_eq!(u(&r2, "accounts"), 10);
    assert_eq!(u(&r2, "connections"), 3);
    assert!(u(&r2, "committed") > 0, "{r2:#}");
    assert!(
        r2["rejections"].as_object().is_some_and(|m| m.is_empty()),
        "second run refused: {r2:#}"
    );

    // More accounts than the devnet funds, or a stopped validator: refused before any load.
    let out = net.run("bench", &["--accounts", "1001", "--duration", "1"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("funds 1000 accounts"),
        "{}",
        text(&out.stderr)
    );
    net.ok("down", &[]);
    let out = net.run("bench", &["--duration", "1"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("node0 is not running"),
        "{}",
        text(&out.stderr)
    );
}

/// Refusals that need no running node: they name the problem and touch nothing.
#[test]
fn bench_refuses_bad_arguments_and_missing_devnets() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("none");
    let run = |args: &[&str]| devnet(&[&["bench"][..], args].concat());
    let out = run(&["--dir", missing.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no such folder"),
        "{}",
        text(&out.stderr)
    );
    assert!(!missing.exists(), "created the folder");

    for (args, named) in [
        (vec!["--duration", "0"], "--duration"),
        (vec!["--batch", "101"], "--batch"),
        (vec!["--accounts", "0"], "--accounts"),
        (vec!["--rate", "fast"], "--rate"),
        (vec!["--connections", "0"], "--connections"),
    ] {
        let out = run(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            text(&out.stderr).contains(named),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}
