//! Real `aitbc-node` processes on 127.0.0.1 for the end-to-end tests: started from a home,
//! driven through the command line and JSON-RPC, killed when the test ends however it ends.
#![allow(dead_code)] // each test binary uses its own part

use aitbc_node::client::rpc::RpcClient;
use serde_json::{json, Value};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_aitbc-node");

/// A free loopback port (the listener is dropped; the port stays free in practice).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A node process that is killed when the test ends, however it ends.
pub struct Node {
    child: Option<Child>,
    pub home: PathBuf,
    pub rpc: String,
    pub p2p_port: u16,
    pub rpc_port: u16,
}

impl Node {
    pub fn init(home: &Path) {
        let out = cli(&["init", "--home", path(home)]);
        assert!(out.status.success(), "init: {}", stderr(&out));
    }

    pub fn start(home: &Path) -> Node {
        let (p2p_port, rpc_port) = (free_port(), free_port());
        Self::start_on(home, p2p_port, rpc_port, &[])
    }

    /// Starts on the given ports with `extra` flags.
    pub fn start_on(home: &Path, p2p_port: u16, rpc_port: u16, extra: &[&str]) -> Node {
        let log = std::fs::File::create(home.join("node.log")).expect("log file");
        let child = Command::new(BIN)
            .args(["run", "--home", path(home)])
            .args(["--p2p-bind", &format!("/ip4/127.0.0.1/tcp/{p2p_port}")])
            .args(["--rpc-bind", &format!("127.0.0.1:{rpc_port}")])
            .args(if extra.contains(&"--block-time") {
                &[][..]
            } else {
                &["--block-time", "100"][..]
            })
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn aitbc-node");
        let node = Node {
            child: Some(child),
            home: home.to_path_buf(),
            rpc: format!("http://127.0.0.1:{rpc_port}"),
            p2p_port,
            rpc_port,
        };
        node.wait_for("the RPC to answer", |n| n.call("status", json!({})).ok());
        node
    }

    pub fn client(&self) -> RpcClient {
        RpcClient::new(&self.rpc).expect("rpc url")
    }

    pub fn call(&self, method: &str, params: Value) -> Result<Value, String> {
        self.client()
            .call(method, params)
            .map_err(|e| e.to_string())
    }

    /// `POST /admin/{route}` with `token` as the bearer; the bare result, or the error body.
    pub fn admin(&self, token: &str, route: &str, body: Value) -> Result<Value, String> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .proxy(None)
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let mut answer = agent
            .post(&format!("{}/admin/{route}", self.rpc))
            .header("authorization", &format!("Bearer {token}"))
            .header("content-type", "application/json")
            .send(body.to_string().as_bytes())
            .map_err(|e| e.to_string())?;
        let ok = answer.status().is_success();
        let text = answer
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        let value: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        if ok {
            Ok(value)
        } else {
            Err(text)
        }
    }

    pub fn height(&self) -> u64 {
        let head = self.call("getHead", json!({})).expect("getHead");
        head["header"]["height"].as_u64().expect("height")
    }

    /// Polls `f` every 50 ms for up to 60 s.
    pub fn wait_for<T>(&self, what: &str, f: impl Fn(&Node) -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            if start.elapsed() > Duration::from_secs(60) {
                panic!("timed out waiting for {what}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.home.join("node.log")).unwrap_or_default()
    }

    pub fn signal(&mut self, sig: &str) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        child.wait().expect("wait")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

pub fn cli(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run aitbc-node")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn address_of(home: &Path) -> String {
    let out = cli(&["keys", "show", "--home", path(home)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("validator address: "))
        .expect("address line")
        .trim()
        .to_string()
}

/// A fresh address (of a key nobody holds).
pub fn fresh_address(seed: u8) -> String {
    let key = aitbc_chain::SecretKey::from_seed([seed; 32]);
    aitbc_chain::Address::of(&key.public()).to_string()
}

pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing in:\n{text}"))
}

pub fn pubkey_of(home: &Path) -> String {
    let out = cli(&["keys", "show", "--home", path(home)]);
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("validator pubkey:  "))
        .expect("pubkey line")
        .trim()
        .to_string()
}

/// Homes for `n` validators of one genesis (the first home's, with every validator added at
/// equal stake, copied to all).
pub fn validator_homes(dir: &Path, n: usize) -> Vec<PathBuf> {
    let homes: Vec<PathBuf> = (0..n).map(|i| dir.join(format!("v{i}"))).collect();
    for h in &homes {
        Node::init(h);
    }
    let genesis = homes[0].join("genesis.json");
    for h in &homes[1..] {
        let out = cli(&[
            "genesis",
            "add-validator",
            "--genesis",
            path(&genesis),
            "--pubkey",
            &pubkey_of(h),
            "--stake",
            "1000000000",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    for h in &homes[1..] {
        std::fs::copy(&genesis, h.join("genesis.json")).expect("copy genesis");
    }
    homes
}

/// Starts a node in each home with `extra` flags, all bootstrapping from the first; returns
/// them and the first one's multiaddr.
pub fn start_validators(homes: &[PathBuf], extra: &[&str]) -> (Vec<Node>, String) {
    let first = Node::start_on(&homes[0], free_port(), free_port(), extra);
    let status = first.call("status", json!({})).expect("status");
    let peer_id = status["peer_id"].as_str().expect("peer id").to_string();
    let boot = format!("/ip4/127.0.0.1/tcp/{}/p2p/{peer_id}", first.p2p_port);
    let mut nodes = vec![first];
    for h in &homes[1..] {
        let mut args = vec!["--bootstrap-peers", boot.as_str()];
        args.extend_from_slice(extra);
        nodes.push(Node::start_on(h, free_port(), free_port(), &args));
    }
    (nodes, boot)
}
