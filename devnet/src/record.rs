//! `devnet.json`: the record of a devnet folder — which chain, which ports, which processes.
//!
//! It is both the marker that makes a folder a devnet (so `down --clean` never deletes a folder
//! that is not one) and the only way later commands find the running nodes. It is read as
//! outside input: bounded in size, unknown fields refused, and every value checked before use,
//! above all the pids, since a pid of 0 or -1 given to kill(2) would signal a whole process
//! group or every process the user owns.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// File name of the record inside the devnet folder.
pub const DEVNET_FILE: &str = "devnet.json";
/// The record's format; bumped on incompatible changes so an old binary refuses a new record.
pub const FORMAT_VERSION: u32 = 1;
/// Most validators one devnet may have. Far above what one machine runs usefully (SPEC §9 asks
/// for 16), low enough that a corrupt record cannot make `up` spawn thousands of processes.
pub const MAX_NODES: usize = 64;
/// Most light peers one devnet may have (`up --light K`).
pub const MAX_LIGHT: usize = 16;
/// A record with 64 nodes is about 16 KiB; anything much bigger is not one.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// The whole record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Devnet {
    pub version: u32,
    pub chain_id: String,
    /// `0x`-hex genesis hash, for display and to notice a genesis edited behind our back.
    pub genesis_hash: String,
    /// The block time the nodes run with (`--block-time` of `aitbc-node run`).
    pub block_time_ms: u64,
    /// Funded devnet accounts in genesis (key files `accounts/account0` …).
    pub accounts: u32,
    /// One entry per validator; node `i` lives in `node{i}/`.
    pub nodes: Vec<NodeRecord>,
    /// One entry per light peer (`up --light K`); light peer `i` lives in `light{i}/`. Absent
    /// from a record without any, so records written before light peers existed still load.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub light: Vec<NodeRecord>,
}

/// One process of a devnet, as commands name it: `node2` (or `2`) is a validator, `light0` a
/// light peer. Its home is derived from it, never stored, so a record cannot point `reset` at
/// another folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Member {
    Validator(usize),
    Light(usize),
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Member::Validator(i) => write!(f, "node{i}"),
            Member::Light(i) => write!(f, "light{i}"),
        }
    }
}

impl Member {
    /// Its home folder in the devnet folder `dir`.
    pub fn home(self, dir: &Path) -> PathBuf {
        dir.join(self.to_string())
    }
}

/// One node process: a validator or a light peer. Its home is derived from its [`Member`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRecord {
    /// The validator's `ait1…` address; none for a light peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validator: Option<String>,
    pub p2p_port: u16,
    pub rpc_port: u16,
    /// The libp2p peer id, known once the node has answered `status` (it is derived from the
    /// home's `node_key`, so it survives restarts).
    pub peer_id: Option<String>,
    /// The process, while `up` believes it runs; cleared by `down`.
    pub pid: Option<u32>,
}

impl NodeRecord {
    pub fn rpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.rpc_port)
    }

    /// The listen address given to `--p2p-bind`.
    pub fn p2p_bind(&self) -> String {
        format!("/ip4/127.0.0.1/tcp/{}", self.p2p_port)
    }

    /// The dialable multiaddr (with `/p2p/<peer id>` once the peer id is known).
    pub fn p2p_multiaddr(&self) -> String {
        match &self.peer_id {
            Some(id) => format!("{}/p2p/{id}", self.p2p_bind()),
            None => self.p2p_bind(),
        }
    }
}

impl Devnet {
    /// Path of the record in `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(DEVNET_FILE)
    }

    /// Home folder of validator `index` in `dir`.
    pub fn home(dir: &Path, index: usize) -> PathBuf {
        Member::Validator(index).home(dir)
    }

    /// Every member: the validators, then the light peers.
    pub fn members(&self) -> impl Iterator<Item = Member> {
        (0..self.nodes.len())
            .map(Member::Validator)
            .chain((0..self.light.len()).map(Member::Light))
    }

    /// The record of `member`, if this devnet has it.
    pub fn get(&self, member: Member) -> Option<&NodeRecord> {
        match member {
            Member::Validator(i) => self.nodes.get(i),
            Member::Light(i) => self.light.get(i),
        }
    }

    pub fn get_mut(&mut self, member: Member) -> Option<&mut NodeRecord> {
        match member {
            Member::Validator(i) => self.nodes.get_mut(i),
            Member::Light(i) => self.light.get_mut(i),
        }
    }

    /// Parses a `NODE` argument: `2` or `node2` for a validator, `light0` for a light peer,
    /// which must exist in this devnet.
    pub fn member(&self, arg: &str) -> Result<Member> {
        let (member, count) = if let Some(digits) = arg.strip_prefix("light") {
            (digits.parse().map(Member::Light), self.light.len())
        } else {
            let digits = arg.strip_prefix("node").unwrap_or(arg);
            (digits.parse().map(Member::Validator), self.nodes.len())
        };
        let member = member.map_err(|_| {
            anyhow::anyhow!("NODE {arg:?}: expected a node such as 0, node0 or light0")
        })?;
        if self.get(member).is_none() {
            let range = match (member, count) {
                (Member::Light(_), 0) => "no light peers".to_string(),
                (Member::Light(_), n) => format!("light0 to light{}", n - 1),
                (Member::Validator(_), n) => format!("node0 to node{}", n.saturating_sub(1)),
            };
            bail!("NODE {arg}: this devnet has {range}");
        }
        Ok(member)
    }

    /// Reads and checks the record in `dir`; `Ok(None)` when there is none.
    pub fn load(dir: &Path) -> Result<Option<Devnet>> {
        let path = Devnet::path(dir);
        let file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading {}", path.display()))?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            bail!(
                "{} is over {MAX_FILE_BYTES} bytes: not a devnet record",
                path.display()
            );
        }
        let devnet = Devnet::from_json(&bytes).with_context(|| {
            format!(
                "{} is not a valid devnet record (remove the folder by hand if it is stale)",
                path.display()
            )
        })?;
        Ok(Some(devnet))
    }

    /// Parses and checks a record.
    pub fn from_json(bytes: &[u8]) -> Result<Devnet> {
        let devnet: Devnet = serde_json::from_slice(bytes)?;
        devnet.check()?;
        Ok(devnet)
    }

    /// The record as pretty JSON.
    pub fn to_json(&self) -> Result<String> {
        Ok(serde_json::to_string_pretty(self)? + "\n")
    }

    /// Checks every value a command will act on.
    pub fn check(&self) -> Result<()> {
        if self.version != FORMAT_VERSION {
            bail!(
                "version {} is not supported (this aitbc-devnet reads version {FORMAT_VERSION})",
                self.version
            );
        }
        if self.nodes.is_empty() || self.nodes.len() > MAX_NODES {
            bail!("{} nodes; a devnet has 1 to {MAX_NODES}", self.nodes.len());
        }
        if self.light.len() > MAX_LIGHT {
            bail!(
                "{} light peers; a devnet has at most {MAX_LIGHT}",
                self.light.len()
            );
        }
        let mut ports = std::collections::BTreeSet::new();
        for m in self.members() {
            let Some(n) = self.get(m) else { continue };
            for port in [n.p2p_port, n.rpc_port] {
                if port == 0 {
                    bail!("{m}: port 0");
                }
                if !ports.insert(port) {
                    bail!("{m}: port {port} is used twice");
                }
            }
            if let Some(pid) = n.pid {
                // kill(2) with 0 signals our own process group, -1 every process we own, and
                // pid 1 is init: none of them can be a node `up` started.
                if pid <= 1 || pid > i32::MAX as u32 {
                    bail!("{m}: pid {pid} cannot be a node process");
                }
            }
            if let Some(id) = &n.peer_id {
                // It is spliced into a multiaddr and a command line.
                if id.is_empty() || id.len() > 128 || !id.chars().all(|c| c.is_ascii_alphanumeric())
                {
                    bail!("{m}: peer id {id:?} is not a base58 libp2p peer id");
                }
            }
            match (m, &n.validator) {
                (Member::Validator(_), Some(v)) => {
                    v.parse::<aitbc_chain::Address>()
                        .map_err(|e| anyhow::anyhow!("{m}: validator {v:?}: {e}"))?;
                }
                (Member::Validator(_), None) => bail!("{m}: no validator address"),
                (Member::Light(_), Some(_)) => bail!("{m}: a light peer has no validator"),
                (Member::Light(_), None) => {}
            }
        }
        Ok(())
    }

    /// Writes the record atomically (temp file in `dir`, fsync, rename), so a crash mid-write
    /// never leaves a torn record that would orphan the running nodes.
    pub fn save(&self, dir: &Path) -> Result<()> {
        self.check()
            .context("refusing to write an invalid devnet record")?;
        let path = Devnet::path(dir);
        write_atomic(&path, self.to_json()?.as_bytes())
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Forgets every recorded process (all stopped, or none of them ours any more).
    pub fn clear_pids(&mut self) {
        for node in self.nodes.iter_mut().chain(&mut self.light) {
            node.pid = None;
        }
    }

    /// Members whose recorded process is still that member.
    pub fn running(&self, dir: &Path) -> Vec<Member> {
        self.members()
            .filter(|&m| self.is_running(dir, m))
            .collect()
    }

    /// Whether `member`'s recorded pid is alive and still that member's process.
    pub fn is_running(&self, dir: &Path, member: Member) -> bool {
        match self.get(member).and_then(|n| n.pid) {
            Some(pid) => crate::process::is_node_process(pid, &member.home(dir)),
            None => false,
        }
    }
}

/// Replaces `path` with `bytes` atomically: a temp file in the same folder, synced, renamed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// A record of `nodes` stopped nodes (ports 1000+i and 2000+i, no peer ids) for tests.
#[cfg(test)]
pub(crate) fn test_record(nodes: u32) -> Devnet {
    Devnet {
        version: FORMAT_VERSION,
        chain_id: "aitbc-devnet".into(),
        genesis_hash: "0x00".into(),
        block_time_ms: 1000,
        accounts: 0,
        nodes: (0..nodes)
            .map(|i| NodeRecord {
                validator: Some(crate::accounts::account_address(i).to_string()),
                p2p_port: 1000 + i as u16,
                rpc_port: 2000 + i as u16,
                peer_id: None,
                pid: None,
            })
            .collect(),
        light: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(seed: u8) -> String {
        aitbc_chain::Address::of(&aitbc_chain::SecretKey::from_seed([seed; 32]).public())
            .to_string()
    }

    fn sample() -> Devnet {
        Devnet {
            version: FORMAT_VERSION,
            chain_id: "aitbc-devnet".into(),
            genesis_hash: format!("0x{}", "ab".repeat(32)),
            block_time_ms: 200,
            accounts: 1000,
            nodes: (0..4u8)
                .map(|i| NodeRecord {
                    validator: Some(address(i + 1)),
                    p2p_port: 30_000 + u16::from(i) * 2,
                    rpc_port: 30_001 + u16::from(i) * 2,
                    peer_id: Some(format!("12D3KooWabc{i}")),
                    pid: (i % 2 == 0).then_some(4242 + u32::from(i)),
                })
                .collect(),
            light: vec![NodeRecord {
                validator: None,
                p2p_port: 30_010,
                rpc_port: 30_011,
                peer_id: None,
                pid: None,
            }],
        }
    }

    #[test]
    fn round_trips_through_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(Devnet::load(dir.path()).expect("no record"), None);
        let d = sample();
        d.save(dir.path()).expect("save");
        assert_eq!(Devnet::load(dir.path()).expect("load"), Some(d.clone()));
        // Saving again replaces the file (atomic rename over the old one).
        let mut d2 = d;
        d2.nodes[1].pid = Some(9999);
        d2.save(dir.path()).expect("save again");
        assert_eq!(Devnet::load(dir.path()).expect("load"), Some(d2));
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .expect("ls")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from(DEVNET_FILE)]);
    }

    #[test]
    fn addresses_are_derived_from_ports_and_peer_id() {
        let n = &sample().nodes[0];
        assert_eq!(n.rpc_url(), "http://127.0.0.1:30001");
        assert_eq!(n.p2p_bind(), "/ip4/127.0.0.1/tcp/30000");
        assert_eq!(
            n.p2p_multiaddr(),
            "/ip4/127.0.0.1/tcp/30000/p2p/12D3KooWabc0"
        );
        assert_eq!(Devnet::home(Path::new("x"), 3), Path::new("x/node3"));
        assert_eq!(Member::Light(1).home(Path::new("x")), Path::new("x/light1"));
    }

    #[test]
    fn members_are_named_and_parsed() {
        let d = sample();
        let all: Vec<String> = d.members().map(|m| m.to_string()).collect();
        assert_eq!(all, ["node0", "node1", "node2", "node3", "light0"]);
        assert_eq!(d.member("2").expect("2"), Member::Validator(2));
        assert_eq!(d.member("node3").expect("node3"), Member::Validator(3));
        assert_eq!(d.member("light0").expect("light0"), Member::Light(0));
        for (arg, says) in [
            ("4", "node0 to node3"),
            ("light1", "light0 to light0"),
            ("x", "expected a node"),
            ("-1", "expected a node"),
            ("light", "expected a node"),
        ] {
            let err = d.member(arg).expect_err(arg);
            assert!(err.to_string().contains(says), "{arg}: {err:#}");
        }
        let mut none = d;
        none.light.clear();
        let err = none.member("light0").expect_err("no light peers");
        assert!(err.to_string().contains("no light peers"), "{err:#}");
    }

    #[test]
    fn a_record_without_light_peers_omits_them_and_loads() {
        let mut d = sample();
        d.light.clear();
        let json = d.to_json().expect("json");
        assert!(!json.contains("light"), "{json}");
        assert_eq!(Devnet::from_json(json.as_bytes()).expect("load"), d);
    }

    #[test]
    fn dangerous_or_broken_records_are_refused() {
        type Mutation = fn(&mut Devnet);
        let cases: Vec<(&str, Mutation)> = vec![
            ("pid 0", |d| d.nodes[0].pid = Some(0)),
            ("pid 1", |d| d.nodes[0].pid = Some(1)),
            ("pid", |d| d.nodes[0].pid = Some(u32::MAX)),
            ("port 0", |d| d.nodes[1].rpc_port = 0),
            ("used twice", |d| d.nodes[2].p2p_port = d.nodes[0].rpc_port),
            ("peer id", |d| d.nodes[0].peer_id = Some("a/../b".into())),
            ("peer id", |d| d.nodes[0].peer_id = Some(String::new())),
            ("validator", |d| d.nodes[3].validator = Some("nope".into())),
            ("no validator", |d| d.nodes[1].validator = None),
            ("light0: a light peer has no validator", |d| {
                d.light[0].validator = d.nodes[0].validator.clone()
            }),
            ("light0: port 30001 is used twice", |d| {
                d.light[0].rpc_port = d.nodes[0].rpc_port
            }),
            ("light peers", |d| d.light = vec![d.light[0].clone(); 17]),
            ("version", |d| d.version = 2),
            ("nodes", |d| d.nodes.clear()),
        ];
        for (what, mutate) in cases {
            let mut d = sample();
            mutate(&mut d);
            let json = serde_json::to_vec(&d).expect("json");
            let err = Devnet::from_json(&json).expect_err(what);
            assert!(format!("{err:#}").contains(what), "{what}: {err:#}");
            let dir = tempfile::tempdir().expect("tempdir");
            assert!(d.save(dir.path()).is_err(), "{what}: saved");
        }
        let mut v = serde_json::to_value(sample()).expect("json");
        v["extra"] = serde_json::json!(1);
        assert!(
            Devnet::from_json(v.to_string().as_bytes()).is_err(),
            "unknown field"
        );
        assert!(Devnet::from_json(b"not json").is_err());
    }

    #[test]
    fn oversized_or_garbage_file_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(
            Devnet::path(dir.path()),
            vec![b' '; MAX_FILE_BYTES as usize + 10],
        )
        .expect("write");
        let err = Devnet::load(dir.path()).expect_err("too big");
        assert!(err.to_string().contains("not a devnet record"), "{err:#}");
        fs::write(Devnet::path(dir.path()), b"{}").expect("write");
        let err = Devnet::load(dir.path()).expect_err("garbage");
        assert!(
            err.to_string().contains("not a valid devnet record"),
            "{err:#}"
        );
    }
}
