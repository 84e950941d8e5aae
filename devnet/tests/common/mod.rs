//! The harness shared by the end-to-end tests (`devnet.rs`, `demo.rs`, `bench.rs`): the
//! `aitbc-devnet` binary driving real `aitbc-node` processes on 127.0.0.1.
//!
//! The node binary is found where `up` finds it by default: next to `aitbc-devnet` in
//! `target/<profile>/`. Cargo sets `CARGO_BIN_EXE_*` only for this package's own binaries and
//! does not build other packages' binaries for `-p aitbc-devnet`; `cargo nextest run
//! --workspace` (what CI runs) and `cargo build --workspace` do build it. Running only this
//! package's tests needs `cargo build -p aitbc-node` first; the tests say so if it is missing.
//!
//! Every test holds its devnet in a [`Net`] whose `Drop` runs `down` and then SIGKILLs any
//! recorded node still alive, so a failing assertion never leaves processes behind.
//!
//! Not every test file uses every item here, so each declares `#[allow(dead_code)] mod common;`.

use aitbc_devnet::bench::rpc::Conn;
use aitbc_devnet::process::is_node_process;
use aitbc_devnet::record::{Devnet, Member};
use aitbc_node::client::rpc::RpcClient;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub const DEVNET: &str = env!("CARGO_BIN_EXE_aitbc-devnet");

/// The `aitbc-node` next to `aitbc-devnet`, or a panic that says how to build it.
pub fn node_bin() -> PathBuf {
    let bin = Path::new(DEVNET)
        .parent()
        .expect("the devnet binary has a folder")
        .join("aitbc-node");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build -p aitbc-node` first (`cargo nextest run --workspace` \
         builds it)",
        bin.display()
    );
    bin
}

/// Runs `aitbc-devnet <args>`.
pub fn devnet(args: &[&str]) -> Output {
    Command::new(DEVNET)
        .args(args)
        .output()
        .expect("run aitbc-devnet")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A devnet folder inside a temp dir; dropping it stops whatever runs there.
pub struct Net {
    _tmp: tempfile::TempDir,
    pub dir: PathBuf,
}

impl Net {
    pub fn new() -> Net {
        node_bin();
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = std::fs::canonicalize(tmp.path())
            .expect("canonical temp dir")
            .join("net");
        Net { _tmp: tmp, dir }
    }

    /// Runs `aitbc-devnet <cmd> --dir <dir> <extra>`.
    pub fn run(&self, cmd: &str, extra: &[&str]) -> Output {
        Command::new(DEVNET)
            .args([cmd, "--dir"])
            .arg(&self.dir)
            .args(extra)
            .output()
            .expect("run aitbc-devnet")
    }

    /// Runs a command that must succeed; returns its stdout and stderr.
    pub fn ok_with_stderr(&self, cmd: &str, extra: &[&str]) -> (String, String) {
        let out = self.run(cmd, extra);
        assert!(
            out.status.success(),
            "`aitbc-devnet {cmd} {extra:?}` failed:\n{}\n{}\n{}",
            text(&out.stdout),
            text(&out.stderr),
            self.logs()
        );
        (text(&out.stdout), text(&out.stderr))
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, cmd: &str, extra: &[&str]) -> String {
        self.ok_with_stderr(cmd, extra).0
    }

    pub fn record(&self) -> Devnet {
        Devnet::load(&self.dir)
            .expect("devnet.json readable")
            .expect("devnet.json present")
    }

    /// A client for every validator.
    pub fn clients(&self) -> Vec<RpcClient> {
        self.record()
            .nodes
            .iter()
            .map(|n| RpcClient::new(&n.rpc_url()).expect("rpc url"))
            .collect()
    }

    /// A client for node `i` with a timeout long enough for calls that wait for a commit.
    pub fn client(&self, i: usize) -> RpcClient {
        RpcClient::with_timeout(&self.record().nodes[i].rpc_url(), Duration::from_secs(120))
            .expect("rpc url")
    }

    /// A client for `member` (validator or light peer).
    pub fn member_client(&self, member: Member) -> RpcClient {
        let record = self.record();
        let node = record.get(member).expect("a member of the devnet");
        RpcClient::with_timeout(&node.rpc_url(), Duration::from_secs(30)).expect("rpc url")
    }

    /// The tail of every node's log, for failure messages.
    pub fn logs(&self) -> String {
        let Ok(Some(d)) = Devnet::load(&self.dir) else {
            return String::new();
        };
        d.members()
            .map(|m| {
                let log =
                    std::fs::read_to_string(m.home(&self.dir).join("node.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- {m} ---\n{}\n", tail.join("\n"))
            })
            .collect()
    }

    /// `(pid, home)` of every recorded node process, light peers included.
    pub fn recorded_pids(&self) -> Vec<(u32, PathBuf)> {
        let Ok(Some(d)) = Devnet::load(&self.dir) else {
            return Vec::new();
        };
        d.members()
            .filter_map(|m| Some((d.get(m)?.pid?, m.home(&self.dir))))
            .collect()
    }
}

impl Drop for Net {
    /// `down` (which acts only on recorded pids, so it is skipped when there are none), then
    /// SIGKILL for any recorded node that is still alive.
    fn drop(&mut self) {
        let pids = self.recorded_pids();
        if pids.is_empty() {
            return;
        }
        let _ = self.run("down", &[]);
        for (pid, home) in pids {
            if is_node_process(pid, &home) {
                let _ = aitbc_devnet::process::send_signal(pid, libc::SIGKILL);
            }
        }
    }
}

/// The node's head height; panics if it does not answer.
pub fn height(c: &RpcClient) -> u64 {
    c.call("status", json!({})).expect("status")["head_height"]
        .as_u64()
        .expect("head_height")
}

/// The node's head height, or `None` if it does not answer (e.g. a stopped node).
pub fn try_height(c: &RpcClient) -> Option<u64> {
    c.call("status", json!({})).ok()?["head_height"].as_u64()
}

/// The balance of `address` (an `Address` or its string form).
pub fn balance(c: &RpcClient, address: &(impl serde::Serialize + ?Sized)) -> u64 {
    c.call("getBalance", json!({ "address": address }))
        .expect("getBalance")["balance"]
        .as_u64()
        .expect("balance")
}

/// Heights asked per JSON-RPC batch (the node's default batch limit is 100).
const BATCH: u64 = 100;
/// How long a refused batch (rate limit, slow answer) is retried: only a node that really
/// stopped answering hits it.
const BATCH_RETRY: Duration = Duration::from_secs(120);

/// `member`'s block hashes at heights `1..=to` (index 0 is height 1), read with `getHeader`
/// in batches: the node's per-IP rate limit counts HTTP requests, and a check of a few hundred
/// heights on several nodes would otherwise run into it.
pub fn hashes(net: &Net, member: Member, to: u64) -> Vec<String> {
    let record = net.record();
    let url = record
        .get(member)
        .expect("a member of the devnet")
        .rpc_url();
    let mut conn = Conn::new(&url, Duration::from_secs(10));
    let mut out = Vec::new();
    let mut from = 1;
    while from <= to {
        let last = to.min(from + BATCH - 1);
        let params: Vec<String> = (from..=last)
            .map(|h| json!({ "height": h }).to_string())
            .collect();
        let calls: Vec<(&str, &str)> = params.iter().map(|p| ("getHeader", p.as_str())).collect();
        let start = Instant::now();
        let answers = loop {
            match conn.batch::<Value>(&calls) {
                Ok(a) => break a,
                Err(e) => {
                    assert!(
                        start.elapsed() < BATCH_RETRY,
                        "{member}: getHeader {from}..={last}: {e}"
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        };
        for (h, answer) in (from..=last).zip(answers) {
            let header = answer.unwrap_or_else(|e| panic!("{member}: getHeader {h}: {e}"));
            assert_eq!(header["header"]["height"], h, "{member}: header {h}");
            let hash = header["hash"]
                .as_str()
                .unwrap_or_else(|| panic!("{member}: header {h} has no hash: {header}"));
            out.push(hash.to_string());
        }
        from = last + 1;
    }
    out
}
