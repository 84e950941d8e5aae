//! Node configuration (SPEC §8): defaults, then a TOML file, then environment variables, then
//! command-line flags, each layer overriding the one before.
//!
//! Every value is checked as it is applied, so a bad value stops start-up with a message that
//! names the key as that layer spells it (`rpc_bind`, `RPC_BIND`, `--rpc-bind`) and the layer
//! it came from: an operator with the same key in three places must be told which one is wrong.
//! The environment is read through a caller-supplied lookup so tests never touch the process
//! environment (which is shared between test threads).
//!
//! Relative paths in the file are resolved against the file's directory, so a node home made by
//! `aitbc-node init` keeps working wherever it is moved or mounted. Relative paths from the
//! environment or flags are relative to the working directory, as a shell user expects.

use aitbc_chain::mempool::MempoolConfig;
use aitbc_rpc::RpcConfig;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::Read;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

pub const DEFAULT_CHAIN_ID: &str = "aitbc-dev";
pub const DEFAULT_P2P_BIND: &str = "/ip4/0.0.0.0/tcp/7070";
pub const DEFAULT_RPC_BIND: &str = "127.0.0.1:8080";
/// Longest block time a config may ask for: one hour.
const MAX_BLOCK_TIME_MS: u64 = 3_600_000;
/// Config files larger than this are refused before parsing; a real one is a few hundred bytes.
const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// An admin token shorter than this is guessable over a network.
const MIN_ADMIN_TOKEN_LEN: usize = 16;
/// `rpc_max_body_bytes` bounds: the ones `RpcConfig::validate` enforces (it does not export
/// them; a test keeps the two in step).
pub const MIN_RPC_BODY_BYTES: usize = 64 << 10;
pub const MAX_RPC_BODY_BYTES: usize = 64 << 20;
/// Most `rpc_max_connections`, as `RpcConfig::validate` enforces: each connection costs a task
/// and a file descriptor.
pub const MAX_RPC_CONNECTIONS: usize = 65_536;
/// Most `rpc_rate_per_ip` (requests per second): beyond this the limit is in effect off, and
/// the derived burst (twice the rate) stays far from `u32::MAX`.
pub const MAX_RPC_RATE_PER_IP: u32 = 1_000_000;
/// `mempool_max_txs` bounds. Below a thousand the pool cannot fill one block at the 10,000 tx/s
/// target; a pooled transfer costs about 0.5 KiB, so a million is ~0.5 GiB.
pub const MEMPOOL_TXS: std::ops::RangeInclusive<usize> = 1_000..=1_000_000;
/// `mempool_max_bytes` bounds: at least 1 MiB (many of the largest tx, 32 KiB by default), at
/// most 1 GiB.
pub const MEMPOOL_BYTES: std::ops::RangeInclusive<usize> = (1 << 20)..=(1 << 30);

/// Where a value came from; shown in every error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    Env,
    Flag,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "config file {}", p.display()),
            Source::Env => f.write_str("environment"),
            Source::Flag => f.write_str("command line"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `shown` is the offending value quoted, or `<redacted>` for secrets.
    #[error("{key} ({origin}): {shown} {problem}")]
    Invalid {
        key: String,
        origin: Source,
        shown: String,
        problem: String,
    },
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
}

/// Every configurable key, with its spelling in each layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    ChainId,
    DbPath,
    P2pBind,
    RpcBind,
    BootstrapPeers,
    ValidatorKey,
    NodeKey,
    Genesis,
    BlockTime,
    MetricsPort,
    LogLevel,
    LogFormat,
    AdminToken,
    RpcMaxBodyBytes,
    RpcMaxConnections,
    RpcRatePerIp,
    RpcCorsOrigins,
    MempoolMaxTxs,
    MempoolMaxBytes,
}

impl Key {
    pub const ALL: [Key; 19] = [
        Key::ChainId,
        Key::DbPath,
        Key::P2pBind,
        Key::RpcBind,
        Key::BootstrapPeers,
        Key::ValidatorKey,
        Key::NodeKey,
        Key::Genesis,
        Key::BlockTime,
        Key::MetricsPort,
        Key::LogLevel,
        Key::LogFormat,
        Key::AdminToken,
        Key::RpcMaxBodyBytes,
        Key::RpcMaxConnections,
        Key::RpcRatePerIp,
        Key::RpcCorsOrigins,
        Key::MempoolMaxTxs,
        Key::MempoolMaxBytes,
    ];

    /// The TOML key.
    pub fn file_name(self) -> &'static str {
        match self {
            Key::ChainId => "chain_id",
            Key::DbPath => "db_path",
            Key::P2pBind => "p2p_bind",
            Key::RpcBind => "rpc_bind",
            Key::BootstrapPeers => "bootstrap_peers",
            Key::ValidatorKey => "validator_key",
            Key::NodeKey => "node_key",
            Key::Genesis => "genesis",
            Key::BlockTime => "block_time",
            Key::MetricsPort => "metrics_port",
            Key::LogLevel => "log_level",
            Key::LogFormat => "log_format",
            Key::AdminToken => "admin_token",
            Key::RpcMaxBodyBytes => "rpc_max_body_bytes",
            Key::RpcMaxConnections => "rpc_max_connections",
            Key::RpcRatePerIp => "rpc_rate_per_ip",
            Key::RpcCorsOrigins => "rpc_cors_origins",
            Key::MempoolMaxTxs => "mempool_max_txs",
            Key::MempoolMaxBytes => "mempool_max_bytes",
        }
    }

    /// The environment variable: the TOML key in upper case.
    pub fn env_name(self) -> String {
        self.file_name().to_ascii_uppercase()
    }

    /// The command-line flag: the TOML key with dashes.
    pub fn flag_name(self) -> String {
        format!("--{}", self.file_name().replace('_', "-"))
    }

    fn name_in(self, origin: &Source) -> String {
        match origin {
            Source::Env => self.env_name(),
            Source::Flag => self.flag_name(),
            Source::Default | Source::File(_) => self.file_name().to_string(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Human => "human",
            LogFormat::Json => "json",
        }
    }
}

/// The RPC admin token. A newtype so `Debug` (and so any logged config) never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// The checked, effective configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    pub chain_id: String,
    /// The data directory (sled store, consensus WAL).
    pub db_path: PathBuf,
    /// Libp2p listen multiaddr.
    pub p2p_bind: String,
    pub rpc_bind: SocketAddr,
    /// Dial targets, each ending in `/p2p/<peer id>` so the Noise handshake can check who
    /// answered.
    pub bootstrap_peers: Vec<String>,
    pub validator_key: PathBuf,
    pub node_key: PathBuf,
    pub genesis: PathBuf,
    /// Overrides the genesis `block_time` (milliseconds) when set; for local testing.
    pub block_time_ms: Option<u64>,
    pub metrics_port: Option<u16>,
    pub log_level: LogLevel,
    pub log_format: LogFormat,
    pub admin_token: Option<AdminToken>,
    /// Largest RPC request body (HTTP) or message (WebSocket), in bytes.
    pub rpc_max_body_bytes: usize,
    /// RPC connections served at once; more wait in the accept queue.
    pub rpc_max_connections: usize,
    /// Sustained RPC requests per second per client IP; 0 = no limit. The node lets a client
    /// burst to twice this (as `RpcConfig::default` does), so a low rate is not undone by a
    /// large fixed burst.
    pub rpc_rate_per_ip: u32,
    /// Origins browsers may call the RPC from: empty = no CORS headers, `"*"` = any origin,
    /// otherwise `http://` or `https://` origins (scheme, host, optional port; no path).
    pub rpc_cors_origins: Vec<String>,
    /// The mempool's bounds (count, and sum of canonical lengths). Under load beyond what the
    /// chain commits, the pool fills and a tx waits about `mempool_max_txs` / throughput to be
    /// committed: a smaller pool refuses sooner (`mempool_full`) and keeps that wait short.
    pub mempool_max_txs: usize,
    pub mempool_max_bytes: usize,
}

impl Default for NodeConfig {
    fn default() -> Self {
        // The RPC limits default to what the RPC server itself defaults to.
        let rpc = RpcConfig::default();
        let mempool = MempoolConfig::default();
        NodeConfig {
            chain_id: DEFAULT_CHAIN_ID.to_string(),
            db_path: PathBuf::from("data"),
            p2p_bind: DEFAULT_P2P_BIND.to_string(),
            rpc_bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            bootstrap_peers: Vec::new(),
            validator_key: PathBuf::from("validator_key"),
            node_key: PathBuf::from("node_key"),
            genesis: PathBuf::from("genesis.json"),
            block_time_ms: None,
            metrics_port: None,
            log_level: LogLevel::Info,
            log_format: LogFormat::Human,
            admin_token: None,
            rpc_max_body_bytes: rpc.max_body_bytes,
            rpc_max_connections: rpc.max_connections,
            rpc_rate_per_ip: rpc.rate_per_ip,
            rpc_cors_origins: rpc.cors_origins,
            mempool_max_txs: mempool.max_txs,
            mempool_max_bytes: mempool.max_bytes,
        }
    }
}

/// The TOML file as written. Every key is optional (defaults fill the rest) and an unknown key
/// is an error, so a misspelt key is caught instead of silently ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p2p_bind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpc_bind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootstrap_peers: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validator_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub genesis: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_port: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpc_max_body_bytes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpc_max_connections: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpc_rate_per_ip: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpc_cors_origins: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mempool_max_txs: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mempool_max_bytes: Option<i64>,
}

impl FileConfig {
    /// Reads and parses a config file (size-limited, unknown keys refused).
    pub fn read(path: &Path) -> Result<FileConfig, ConfigError> {
        let file_err = |message: String| ConfigError::File {
            path: path.to_path_buf(),
            message,
        };
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text))
            .map_err(|e| file_err(e.to_string()))?;
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(file_err(format!(
                "larger than the {MAX_CONFIG_BYTES}-byte limit"
            )));
        }
        toml::from_str(&text).map_err(|e| file_err(e.to_string().trim_end().to_string()))
    }

    /// The file's values as a layer; integers become text so every layer is checked by the
    /// same parser and reported the same way.
    fn layer(&self) -> Layer {
        Layer {
            chain_id: self.chain_id.clone(),
            db_path: self.db_path.clone(),
            p2p_bind: self.p2p_bind.clone(),
            rpc_bind: self.rpc_bind.clone(),
            bootstrap_peers: self.bootstrap_peers.clone(),
            validator_key: self.validator_key.clone(),
            node_key: self.node_key.clone(),
            genesis: self.genesis.clone(),
            block_time: self.block_time.map(|v| v.to_string()),
            metrics_port: self.metrics_port.map(|v| v.to_string()),
            log_level: self.log_level.clone(),
            log_format: self.log_format.clone(),
            admin_token: self.admin_token.clone(),
            rpc_max_body_bytes: self.rpc_max_body_bytes.map(|v| v.to_string()),
            rpc_max_connections: self.rpc_max_connections.map(|v| v.to_string()),
            rpc_rate_per_ip: self.rpc_rate_per_ip.map(|v| v.to_string()),
            rpc_cors_origins: self.rpc_cors_origins.clone(),
            mempool_max_txs: self.mempool_max_txs.map(|v| v.to_string()),
            mempool_max_bytes: self.mempool_max_bytes.map(|v| v.to_string()),
        }
    }
}

/// One layer of raw, unchecked values (environment or flags): text as the user typed it.
/// The lists (`bootstrap_peers`, `rpc_cors_origins`) are already split into entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layer {
    pub chain_id: Option<String>,
    pub db_path: Option<String>,
    pub p2p_bind: Option<String>,
    pub rpc_bind: Option<String>,
    pub bootstrap_peers: Option<Vec<String>>,
    pub validator_key: Option<String>,
    pub node_key: Option<String>,
    pub genesis: Option<String>,
    pub block_time: Option<String>,
    pub metrics_port: Option<String>,
    pub log_level: Option<String>,
    pub log_format: Option<String>,
    pub admin_token: Option<String>,
    pub rpc_max_body_bytes: Option<String>,
    pub rpc_max_connections: Option<String>,
    pub rpc_rate_per_ip: Option<String>,
    pub rpc_cors_origins: Option<Vec<String>>,
    pub mempool_max_txs: Option<String>,
    pub mempool_max_bytes: Option<String>,
}

/// Splits a comma-separated list (peers, CORS origins), dropping empty entries (a trailing
/// comma is harmless).
pub fn split_peers(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

impl Layer {
    /// Reads the environment through `lookup`. An empty variable counts as unset, so an
    /// `.env` file can list every variable with blank values.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Layer {
        let get = |key: Key| lookup(&key.env_name()).filter(|v| !v.is_empty());
        Layer {
            chain_id: get(Key::ChainId),
            db_path: get(Key::DbPath),
            p2p_bind: get(Key::P2pBind),
            rpc_bind: get(Key::RpcBind),
            bootstrap_peers: get(Key::BootstrapPeers).map(|v| split_peers(&v)),
            validator_key: get(Key::ValidatorKey),
            node_key: get(Key::NodeKey),
            genesis: get(Key::Genesis),
            block_time: get(Key::BlockTime),
            metrics_port: get(Key::MetricsPort),
            log_level: get(Key::LogLevel),
            log_format: get(Key::LogFormat),
            admin_token: get(Key::AdminToken),
            rpc_max_body_bytes: get(Key::RpcMaxBodyBytes),
            rpc_max_connections: get(Key::RpcMaxConnections),
            rpc_rate_per_ip: get(Key::RpcRatePerIp),
            rpc_cors_origins: get(Key::RpcCorsOrigins).map(|v| split_peers(&v)),
            mempool_max_txs: get(Key::MempoolMaxTxs),
            mempool_max_bytes: get(Key::MempoolMaxBytes),
        }
    }
}

/// The process environment, for `Layer::from_env` outside tests.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl NodeConfig {
    /// Defaults, then `file` (if any), then `env`, then `flags`.
    pub fn load(
        file: Option<&Path>,
        env: &Layer,
        flags: &Layer,
    ) -> Result<NodeConfig, ConfigError> {
        let mut cfg = NodeConfig::default();
        if let Some(path) = file {
            let parsed = FileConfig::read(path)?;
            let base = path.parent().unwrap_or(Path::new(""));
            cfg.apply(
                &parsed.layer(),
                &Source::File(path.to_path_buf()),
                Some(base),
            )?;
        }
        cfg.apply(env, &Source::Env, None)?;
        cfg.apply(flags, &Source::Flag, None)?;
        Ok(cfg)
    }

    /// Applies one layer, checking each value; `base` resolves relative paths (file layer).
    fn apply(
        &mut self,
        layer: &Layer,
        origin: &Source,
        base: Option<&Path>,
    ) -> Result<(), ConfigError> {
        let at = |key: Key| At { key, origin };
        if let Some(v) = &layer.chain_id {
            self.chain_id = at(Key::ChainId).chain_id(v)?;
        }
        if let Some(v) = &layer.db_path {
            self.db_path = at(Key::DbPath).path(v, base)?;
        }
        if let Some(v) = &layer.p2p_bind {
            self.p2p_bind = at(Key::P2pBind).listen_addr(v)?;
        }
        if let Some(v) = &layer.rpc_bind {
            self.rpc_bind = at(Key::RpcBind).socket_addr(v)?;
        }
        if let Some(peers) = &layer.bootstrap_peers {
            self.bootstrap_peers = peers
                .iter()
                .map(|p| at(Key::BootstrapPeers).peer_addr(p))
                .collect::<Result<_, _>>()?;
        }
        if let Some(v) = &layer.validator_key {
            self.validator_key = at(Key::ValidatorKey).path(v, base)?;
        }
        if let Some(v) = &layer.node_key {
            self.node_key = at(Key::NodeKey).path(v, base)?;
        }
        if let Some(v) = &layer.genesis {
            self.genesis = at(Key::Genesis).path(v, base)?;
        }
        if let Some(v) = &layer.block_time {
            self.block_time_ms = Some(at(Key::BlockTime).block_time(v)?);
        }
        if let Some(v) = &layer.metrics_port {
            self.metrics_port = Some(at(Key::MetricsPort).port(v)?);
        }
        if let Some(v) = &layer.log_level {
            self.log_level = at(Key::LogLevel).log_level(v)?;
        }
        if let Some(v) = &layer.log_format {
            self.log_format = at(Key::LogFormat).log_format(v)?;
        }
        if let Some(v) = &layer.admin_token {
            self.admin_token = Some(at(Key::AdminToken).admin_token(v)?);
        }
        if let Some(v) = &layer.rpc_max_body_bytes {
            self.rpc_max_body_bytes = at(Key::RpcMaxBodyBytes).within(
                v,
                MIN_RPC_BODY_BYTES..=MAX_RPC_BODY_BYTES,
                "a body size in bytes (64 KiB to 64 MiB)",
            )?;
        }
        if let Some(v) = &layer.rpc_max_connections {
            self.rpc_max_connections = at(Key::RpcMaxConnections).within(
                v,
                1..=MAX_RPC_CONNECTIONS,
                "a connection limit",
            )?;
        }
        if let Some(v) = &layer.rpc_rate_per_ip {
            self.rpc_rate_per_ip = at(Key::RpcRatePerIp).within(
                v,
                0..=MAX_RPC_RATE_PER_IP,
                "a request rate per second (0 = off)",
            )?;
        }
        if let Some(origins) = &layer.rpc_cors_origins {
            self.rpc_cors_origins = origins
                .iter()
                .map(|o| at(Key::RpcCorsOrigins).cors_origin(o))
                .collect::<Result<_, _>>()?;
        }
        if let Some(v) = &layer.mempool_max_txs {
            self.mempool_max_txs = at(Key::MempoolMaxTxs).within(v, MEMPOOL_TXS, "a tx count")?;
        }
        if let Some(v) = &layer.mempool_max_bytes {
            self.mempool_max_bytes =
                at(Key::MempoolMaxBytes).within(v, MEMPOOL_BYTES, "a size in bytes")?;
        }
        Ok(())
    }

    /// The mempool bounds this config asks for.
    pub fn mempool(&self) -> MempoolConfig {
        MempoolConfig {
            max_txs: self.mempool_max_txs,
            max_bytes: self.mempool_max_bytes,
            ..MempoolConfig::default()
        }
    }

    /// The effective config as TOML, with the admin token redacted, for `config show`.
    pub fn to_toml_redacted(&self) -> String {
        let path = |p: &Path| Some(p.display().to_string());
        let file = FileConfig {
            chain_id: Some(self.chain_id.clone()),
            db_path: path(&self.db_path),
            p2p_bind: Some(self.p2p_bind.clone()),
            rpc_bind: Some(self.rpc_bind.to_string()),
            bootstrap_peers: Some(self.bootstrap_peers.clone()),
            validator_key: path(&self.validator_key),
            node_key: path(&self.node_key),
            genesis: path(&self.genesis),
            block_time: self.block_time_ms.and_then(|v| i64::try_from(v).ok()),
            metrics_port: self.metrics_port.map(i64::from),
            log_level: Some(self.log_level.as_str().to_string()),
            log_format: Some(self.log_format.as_str().to_string()),
            admin_token: self.admin_token.as_ref().map(|_| "<redacted>".to_string()),
            rpc_max_body_bytes: i64::try_from(self.rpc_max_body_bytes).ok(),
            rpc_max_connections: i64::try_from(self.rpc_max_connections).ok(),
            rpc_rate_per_ip: Some(i64::from(self.rpc_rate_per_ip)),
            rpc_cors_origins: Some(self.rpc_cors_origins.clone()),
            mempool_max_txs: i64::try_from(self.mempool_max_txs).ok(),
            mempool_max_bytes: i64::try_from(self.mempool_max_bytes).ok(),
        };
        toml::to_string(&file).unwrap_or_default()
    }
}

/// A key in a layer: builds errors that name both.
struct At<'a> {
    key: Key,
    origin: &'a Source,
}

impl At<'_> {
    fn err(&self, value: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: self.key.name_in(self.origin),
            origin: self.origin.clone(),
            shown: format!("{value:?}"),
            problem: problem.into(),
        }
    }

    fn chain_id(&self, v: &str) -> Result<String, ConfigError> {
        // Same rule as genesis validation, so a config can never name an unloadable chain.
        let ok = (1..=64).contains(&v.len())
            && v.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
            });
        if ok {
            Ok(v.to_string())
        } else {
            Err(self.err(v, "is not a chain id (1 to 64 of a-z, 0-9, '-', '_', '.')"))
        }
    }

    fn path(&self, v: &str, base: Option<&Path>) -> Result<PathBuf, ConfigError> {
        if v.trim().is_empty() {
            return Err(self.err(v, "is not a path (empty)"));
        }
        let p = PathBuf::from(v);
        Ok(match base {
            Some(base) if p.is_relative() => base.join(p),
            _ => p,
        })
    }

    fn listen_addr(&self, v: &str) -> Result<String, ConfigError> {
        let protos = multiaddr_protocols(v).map_err(|why| self.err(v, why))?;
        let ok = matches!(
            protos.as_slice(),
            ["ip4" | "ip6", "tcp"] | ["ip4" | "ip6", "udp", "quic-v1"]
        );
        if ok {
            Ok(v.to_string())
        } else {
            Err(self.err(
                v,
                "is not a listen multiaddr like /ip4/0.0.0.0/tcp/7070 or \
                 /ip4/0.0.0.0/udp/7070/quic-v1",
            ))
        }
    }

    fn peer_addr(&self, v: &str) -> Result<String, ConfigError> {
        let protos = multiaddr_protocols(v).map_err(|why| self.err(v, why))?;
        let Some((last, transport)) = protos.split_last() else {
            return Err(self.err(v, "is not a multiaddr"));
        };
        if *last != "p2p" {
            return Err(self.err(v, "has no /p2p/<peer id> suffix"));
        }
        let ok = matches!(
            transport,
            ["ip4" | "ip6" | "dns" | "dns4" | "dns6", "tcp"]
                | ["ip4" | "ip6" | "dns" | "dns4" | "dns6", "udp", "quic-v1"]
        );
        if ok {
            Ok(v.to_string())
        } else {
            Err(self.err(
                v,
                "is not a peer multiaddr like /ip4/10.0.0.1/tcp/7070/p2p/12D3KooW…",
            ))
        }
    }

    fn socket_addr(&self, v: &str) -> Result<SocketAddr, ConfigError> {
        v.parse()
            .map_err(|_| self.err(v, "is not a socket address (like 127.0.0.1:8080)"))
    }

    fn block_time(&self, v: &str) -> Result<u64, ConfigError> {
        // 0 is allowed: the next height starts as soon as the last one commits (SPEC §9
        // measures empty blocks per second at block_time_ms = 0). The cap keeps a typo from
        // stalling the chain for days.
        match v.parse::<u64>() {
            Ok(ms) if ms <= MAX_BLOCK_TIME_MS => Ok(ms),
            _ => Err(self.err(
                v,
                "is not a block time (milliseconds, 0 to 3600000; 0 = as soon as possible)",
            )),
        }
    }

    fn port(&self, v: &str) -> Result<u16, ConfigError> {
        match v.parse::<u16>() {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(self.err(v, "is not a port (1 to 65535)")),
        }
    }

    /// A whole number in `range`; `what` names what it counts.
    fn within<T: std::str::FromStr + PartialOrd + fmt::Display>(
        &self,
        v: &str,
        range: std::ops::RangeInclusive<T>,
        what: &str,
    ) -> Result<T, ConfigError> {
        match v.parse::<T>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(self.err(
                v,
                format!("is not {what}, {} to {}", range.start(), range.end()),
            )),
        }
    }

    fn cors_origin(&self, v: &str) -> Result<String, ConfigError> {
        if v == "*" {
            return Ok(v.to_string());
        }
        match origin_problem(v) {
            None => Ok(v.to_string()),
            Some(why) => Err(self.err(
                v,
                format!(
                    "is not \"*\" or a CORS origin like \"https://app.example.com\" or \
                     \"http://localhost:3000\": {why}"
                ),
            )),
        }
    }

    fn log_level(&self, v: &str) -> Result<LogLevel, ConfigError> {
        Ok(match v {
            "trace" => LogLevel::Trace,
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" => LogLevel::Warn,
            "error" => LogLevel::Error,
            _ => return Err(self.err(v, "is not a log level (trace, debug, info, warn or error)")),
        })
    }

    fn log_format(&self, v: &str) -> Result<LogFormat, ConfigError> {
        Ok(match v {
            "human" => LogFormat::Human,
            "json" => LogFormat::Json,
            _ => return Err(self.err(v, "is not a log format (human or json)")),
        })
    }

    fn admin_token(&self, v: &str) -> Result<AdminToken, ConfigError> {
        let ok =
            v.chars().count() >= MIN_ADMIN_TOKEN_LEN && v.chars().all(|c| c.is_ascii_graphic());
        if ok {
            Ok(AdminToken(v.to_string()))
        } else {
            // Never echo a secret, even a bad one: it may be a real token pasted wrongly.
            Err(ConfigError::Invalid {
                key: self.key.name_in(self.origin),
                origin: self.origin.clone(),
                shown: "<redacted>".to_string(),
                problem: format!(
                    "is not an admin token (at least {MIN_ADMIN_TOKEN_LEN} printable ASCII \
                     characters, no spaces)"
                ),
            })
        }
    }
}

/// What keeps `s` from being an origin a browser sends (`Origin: scheme://host[:port]`), or
/// `None`. The RPC matches origins byte for byte, so spellings a browser never sends (upper
/// case, a default port, a trailing `/`) are refused here rather than never matching.
fn origin_problem(s: &str) -> Option<&'static str> {
    let (rest, default_port) = if let Some(rest) = s.strip_prefix("https://") {
        (rest, "443")
    } else if let Some(rest) = s.strip_prefix("http://") {
        (rest, "80")
    } else {
        return Some("the scheme must be http:// or https:// (lower case)");
    };
    if rest.contains(['/', '?', '#']) {
        return Some("an origin has no path, query or fragment (not even a trailing '/')");
    }
    if rest.contains('@') {
        return Some("an origin has no user name or password");
    }
    let port = if let Some(bracketed) = rest.strip_prefix('[') {
        let Some((ip, after)) = bracketed.split_once(']') else {
            return Some("has an unclosed '[' around an IPv6 address");
        };
        if ip.parse::<Ipv6Addr>().is_err() || ip.bytes().any(|b| b.is_ascii_uppercase()) {
            return Some("has a bad IPv6 address (lower-case hex, as browsers send it)");
        }
        match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => return Some("has text after the IPv6 address"),
            },
        }
    } else {
        let (host, port) = match rest.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        if !host.split('.').all(label_ok) {
            return Some(
                "the host must be lower-case a-z, 0-9, '-' and '.' (as browsers send it; \
                 punycode for international names)",
            );
        }
        port
    };
    match port {
        None => None,
        Some(p) if p == default_port => {
            Some("browsers leave out the scheme's default port, so it must be left out here")
        }
        // Only the plain decimal spelling a browser sends: no sign, no leading zeros.
        Some(p) if p.parse::<u16>().is_ok_and(|n| n > 0 && n.to_string() == p) => None,
        Some(_) => Some("has a bad port (1 to 65535)"),
    }
}

/// Checks a multiaddr's syntax for the protocols a node uses and returns the protocol names in
/// order. A full parse happens in libp2p at start-up; this catches typos at config time with a
/// message naming the key.
fn multiaddr_protocols(s: &str) -> Result<Vec<&str>, String> {
    let mut parts = s.split('/');
    if parts.next() != Some("") || s.len() < 2 {
        return Err("is not a multiaddr (must start with '/')".to_string());
    }
    let mut protos = Vec::new();
    while let Some(proto) = parts.next() {
        let mut value = |what: &str| {
            parts
                .next()
                .filter(|v| !v.is_empty())
                .ok_or(format!("has /{proto} without {what}"))
        };
        match proto {
            "ip4" => {
                value("an address")?
                    .parse::<Ipv4Addr>()
                    .map_err(|_| "has a bad /ip4 address".to_string())?;
            }
            "ip6" => {
                value("an address")?
                    .parse::<Ipv6Addr>()
                    .map_err(|_| "has a bad /ip6 address".to_string())?;
            }
            "dns" | "dns4" | "dns6" => {
                let host = value("a host name")?;
                if !host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'))
                {
                    return Err(format!("has a bad /{proto} host name"));
                }
            }
            "tcp" | "udp" => {
                value("a port")?
                    .parse::<u16>()
                    .map_err(|_| format!("has a bad /{proto} port"))?;
            }
            "quic-v1" => {}
            "p2p" => {
                let id = value("a peer id")?;
                if !is_peer_id_syntax(id) {
                    return Err("has a /p2p peer id that is not base58".to_string());
                }
            }
            "" => return Err("has an empty protocol (a doubled or trailing '/')".to_string()),
            other => return Err(format!("has unsupported protocol /{other}")),
        }
        protos.push(proto);
    }
    Ok(protos)
}

/// A libp2p peer id as text is base58btc of a multihash: 46 characters for `Qm…` ids, 52 for
/// ed25519 `12D3KooW…` ids; the bounds leave room for other key types.
fn is_peer_id_syntax(id: &str) -> bool {
    const BASE58: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    (40..=100).contains(&id.len()) && id.bytes().all(|b| BASE58.contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const PEER: &str = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";

    fn env(pairs: &[(&str, &str)]) -> Layer {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Layer::from_env(|k| map.get(k).cloned())
    }

    fn write_file(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("config.toml");
        std::fs::write(&p, text).expect("write config");
        p
    }

    fn load_err(file: Option<&Path>, env: &Layer, flags: &Layer) -> String {
        NodeConfig::load(file, env, flags)
            .expect_err("must fail")
            .to_string()
    }

    #[test]
    fn defaults() {
        let c = NodeConfig::load(None, &Layer::default(), &Layer::default()).expect("load");
        assert_eq!(c.p2p_bind, DEFAULT_P2P_BIND);
        assert_eq!(c.rpc_bind.to_string(), DEFAULT_RPC_BIND);
        assert_eq!(c.chain_id, DEFAULT_CHAIN_ID);
        assert_eq!(c.metrics_port, None);
        assert_eq!(c.log_format, LogFormat::Human);
        assert_eq!(c.log_level, LogLevel::Info);
        assert!(c.bootstrap_peers.is_empty());
    }

    #[test]
    fn precedence_default_file_env_flag() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write_file(
            dir.path(),
            &format!(
                "chain_id = \"from-file\"\nrpc_bind = \"127.0.0.1:1111\"\n\
                 log_level = \"debug\"\nmetrics_port = 9100\nblock_time = 500\n\
                 db_path = \"store\"\nbootstrap_peers = [\"/ip4/10.0.0.1/tcp/7070/p2p/{PEER}\"]\n"
            ),
        );
        let env = env(&[
            ("RPC_BIND", "127.0.0.1:2222"),
            ("LOG_LEVEL", "warn"),
            ("METRICS_PORT", "9200"),
            ("DB_PATH", "/var/lib/aitbc"),
        ]);
        let flags = Layer {
            log_level: Some("error".into()),
            metrics_port: Some("9300".into()),
            ..Layer::default()
        };
        let c = NodeConfig::load(Some(&file), &env, &flags).expect("load");
        // Default only.
        assert_eq!(c.p2p_bind, DEFAULT_P2P_BIND);
        assert_eq!(c.log_format, LogFormat::Human);
        // File over default.
        assert_eq!(c.chain_id, "from-file");
        assert_eq!(c.block_time_ms, Some(500));
        assert_eq!(c.bootstrap_peers.len(), 1);
        // Relative file paths resolve against the file's directory.
        assert_eq!(
            c.genesis,
            PathBuf::from("genesis.json"),
            "default stays as is"
        );
        // Env over file.
        assert_eq!(c.rpc_bind.to_string(), "127.0.0.1:2222");
        assert_eq!(c.db_path, PathBuf::from("/var/lib/aitbc"));
        // Flag over env over file.
        assert_eq!(c.log_level, LogLevel::Error);
        assert_eq!(c.metrics_port, Some(9300));

        let only_file =
            NodeConfig::load(Some(&file), &Layer::default(), &Layer::default()).expect("load");
        assert_eq!(only_file.db_path, dir.path().join("store"));
        assert_eq!(only_file.metrics_port, Some(9100));
    }

    #[test]
    fn env_peers_are_comma_separated_and_blank_env_is_unset() {
        let a = format!("/ip4/10.0.0.1/tcp/7070/p2p/{PEER}");
        let b = format!("/dns4/seed.example.org/udp/7070/quic-v1/p2p/{PEER}");
        let e = env(&[
            ("BOOTSTRAP_PEERS", &format!("{a}, {b},")),
            ("METRICS_PORT", ""),
            ("ADMIN_TOKEN", ""),
        ]);
        let c = NodeConfig::load(None, &e, &Layer::default()).expect("load");
        assert_eq!(c.bootstrap_peers, vec![a, b]);
        assert_eq!(c.metrics_port, None);
        assert_eq!(c.admin_token, None);
    }

    #[test]
    fn each_bad_value_names_key_and_source() {
        let cases: &[(&str, &str, &str)] = &[
            ("CHAIN_ID", "Bad Chain", "is not a chain id"),
            ("DB_PATH", " ", "is not a path"),
            ("P2P_BIND", "0.0.0.0:7070", "is not a multiaddr"),
            ("P2P_BIND", "/ip4/0.0.0.0/tcp/99999", "bad /tcp port"),
            ("P2P_BIND", "/dns4/x/tcp/7070", "is not a listen multiaddr"),
            ("RPC_BIND", "x", "is not a socket address"),
            (
                "BOOTSTRAP_PEERS",
                "/ip4/10.0.0.1/tcp/7070",
                "no /p2p/<peer id> suffix",
            ),
            (
                "BOOTSTRAP_PEERS",
                "/ip4/10.0.0.1/tcp/7070/p2p/0OIl",
                "not base58",
            ),
            (
                "BOOTSTRAP_PEERS",
                "/ip4/10.0.0.300/tcp/7070",
                "bad /ip4 address",
            ),
            ("VALIDATOR_KEY", " ", "is not a path"),
            ("NODE_KEY", " ", "is not a path"),
            ("GENESIS", " ", "is not a path"),
            ("BLOCK_TIME", "3600001", "is not a block time"),
            ("BLOCK_TIME", "1s", "is not a block time"),
            ("METRICS_PORT", "70000", "is not a port"),
            ("LOG_LEVEL", "loud", "is not a log level"),
            ("LOG_FORMAT", "xml", "is not a log format"),
            ("ADMIN_TOKEN", "short", "is not an admin token"),
            ("RPC_MAX_BODY_BYTES", "65535", "is not a body size"),
            ("RPC_MAX_BODY_BYTES", "2MiB", "is not a body size"),
            ("RPC_MAX_CONNECTIONS", "0", "is not a connection limit"),
            ("RPC_MAX_CONNECTIONS", "65537", "is not a connection limit"),
            ("RPC_RATE_PER_IP", "-1", "is not a request rate"),
            ("RPC_RATE_PER_IP", "1000001", "is not a request rate"),
            (
                "RPC_CORS_ORIGINS",
                "example.com",
                "must be http:// or https://",
            ),
            ("RPC_CORS_ORIGINS", "https://a.com/app", "no path"),
        ];
        for (var, value, problem) in cases {
            let msg = load_err(None, &env(&[(var, value)]), &Layer::default());
            assert!(msg.starts_with(&format!("{var} (environment): ")), "{msg}");
            assert!(msg.contains(problem), "{var}={value}: {msg}");
        }
        // The brief's exact example.
        assert_eq!(
            load_err(None, &env(&[("RPC_BIND", "x")]), &Layer::default()),
            "RPC_BIND (environment): \"x\" is not a socket address (like 127.0.0.1:8080)"
        );
        // Flags are named as flags.
        let flags = Layer {
            p2p_bind: Some("nonsense".into()),
            ..Layer::default()
        };
        let msg = load_err(None, &Layer::default(), &flags);
        assert!(
            msg.starts_with("--p2p-bind (command line): \"nonsense\""),
            "{msg}"
        );
        // File values are named by TOML key and file path.
        let dir = tempfile::tempdir().expect("tempdir");
        for (line, key) in [
            ("metrics_port = 0", "metrics_port"),
            ("block_time = -5", "block_time"),
            ("log_format = \"JSON\"", "log_format"),
            (
                "bootstrap_peers = [\"/ip4/1.2.3.4/tcp/1\"]",
                "bootstrap_peers",
            ),
        ] {
            let file = write_file(dir.path(), line);
            let msg = load_err(Some(&file), &Layer::default(), &Layer::default());
            let want = format!("{key} (config file {}): ", file.display());
            assert!(msg.starts_with(&want), "{msg}");
        }
    }

    #[test]
    fn later_layer_error_wins_only_if_bad() {
        // A bad file value is reported even when env would override it: the file is still
        // wrong and would bite the moment the variable is unset.
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write_file(dir.path(), "rpc_bind = \"nope\"\n");
        let msg = load_err(
            Some(&file),
            &env(&[("RPC_BIND", "127.0.0.1:1")]),
            &Layer::default(),
        );
        assert!(msg.starts_with("rpc_bind (config file"), "{msg}");
    }

    #[test]
    fn admin_token_never_echoed() {
        let secret = "hunter2 with a space in it";
        let msg = load_err(None, &env(&[("ADMIN_TOKEN", secret)]), &Layer::default());
        assert!(!msg.contains(secret), "{msg}");
        assert!(msg.contains("<redacted>"), "{msg}");
        let good = "0123456789abcdef0123";
        let c = NodeConfig::load(None, &env(&[("ADMIN_TOKEN", good)]), &Layer::default())
            .expect("load");
        assert_eq!(c.admin_token.as_ref().map(AdminToken::expose), Some(good));
        assert!(!format!("{c:?}").contains(good));
        assert!(!c.to_toml_redacted().contains(good));
    }

    #[test]
    fn unknown_and_mistyped_file_keys_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write_file(dir.path(), "chain_id = \"a\"\nrpc_port = 8080\n");
        let msg = load_err(Some(&file), &Layer::default(), &Layer::default());
        assert!(msg.contains("rpc_port"), "{msg}");
        assert!(msg.contains(&file.display().to_string()), "{msg}");

        let file = write_file(dir.path(), "rpc_bind = 8080\n");
        let msg = load_err(Some(&file), &Layer::default(), &Layer::default());
        assert!(msg.contains("rpc_bind"), "{msg}");

        let missing = dir.path().join("missing.toml");
        let msg = load_err(Some(&missing), &Layer::default(), &Layer::default());
        assert!(msg.contains("missing.toml"), "{msg}");
    }

    /// The mempool bounds come from every layer, reach `MempoolConfig`, and are refused
    /// outside their ranges with the key named as the layer spells it.
    #[test]
    fn mempool_bounds_from_each_layer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = NodeConfig::load(None, &Layer::default(), &Layer::default()).expect("load");
        assert_eq!(c.mempool(), MempoolConfig::default());

        let file = write_file(
            dir.path(),
            "mempool_max_txs = 2000\nmempool_max_bytes = 2097152\n",
        );
        let flags = Layer {
            mempool_max_txs: Some("3000".into()),
            ..Layer::default()
        };
        let c = NodeConfig::load(Some(&file), &Layer::default(), &flags).expect("load");
        let m = c.mempool();
        assert_eq!((m.max_txs, m.max_bytes), (3000, 2 << 20), "flag over file");
        assert_eq!(m.max_per_sender, MempoolConfig::default().max_per_sender);

        let msg = load_err(None, &env(&[("MEMPOOL_MAX_TXS", "999")]), &Layer::default());
        assert!(
            msg.starts_with("MEMPOOL_MAX_TXS (environment): \"999\" is not a tx count"),
            "{msg}"
        );
        let flags = Layer {
            mempool_max_bytes: Some("1gb".into()),
            ..Layer::default()
        };
        let msg = load_err(None, &Layer::default(), &flags);
        assert!(
            msg.starts_with("--mempool-max-bytes (command line)"),
            "{msg}"
        );
        let file = write_file(dir.path(), "mempool_max_bytes = 1073741825\n");
        let msg = load_err(Some(&file), &Layer::default(), &Layer::default());
        assert!(msg.contains("mempool_max_bytes"), "{msg}");
        assert!(msg.contains("1048576 to 1073741824"), "{msg}");
    }

    #[test]
    fn redacted_toml_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = NodeConfig {
            metrics_port: Some(9090),
            block_time_ms: Some(250),
            bootstrap_peers: vec![format!("/ip6/::1/tcp/7070/p2p/{PEER}")],
            ..NodeConfig::default()
        };
        let file = write_file(dir.path(), &c.to_toml_redacted());
        let back =
            NodeConfig::load(Some(&file), &Layer::default(), &Layer::default()).expect("load");
        assert_eq!(back.metrics_port, Some(9090));
        assert_eq!(back.block_time_ms, Some(250));
        assert_eq!(back.bootstrap_peers, c.bootstrap_peers);

        let c = NodeConfig {
            rpc_max_body_bytes: MIN_RPC_BODY_BYTES,
            rpc_max_connections: 7,
            rpc_rate_per_ip: 0,
            rpc_cors_origins: vec!["https://a.example".into(), "http://[::1]:3000".into()],
            ..NodeConfig::default()
        };
        let file = write_file(dir.path(), &c.to_toml_redacted());
        let back =
            NodeConfig::load(Some(&file), &Layer::default(), &Layer::default()).expect("load");
        assert_eq!(back.rpc_max_body_bytes, c.rpc_max_body_bytes);
        assert_eq!(back.rpc_max_connections, c.rpc_max_connections);
        assert_eq!(back.rpc_rate_per_ip, c.rpc_rate_per_ip);
        assert_eq!(back.rpc_cors_origins, c.rpc_cors_origins);
        // The defaults are shown too, so `config show` tells the whole story.
        let shown = NodeConfig::default().to_toml_redacted();
        for k in [
            Key::RpcMaxBodyBytes,
            Key::RpcMaxConnections,
            Key::RpcRatePerIp,
            Key::RpcCorsOrigins,
        ] {
            assert!(shown.contains(&format!("{} = ", k.file_name())), "{shown}");
        }
        assert!(shown.contains("rpc_cors_origins = []"), "{shown}");
    }

    #[test]
    fn rpc_limits_default_to_and_stay_within_rpc_config() {
        let rpc = RpcConfig::default();
        let c = NodeConfig::default();
        assert_eq!(c.rpc_max_body_bytes, rpc.max_body_bytes);
        assert_eq!(c.rpc_max_connections, rpc.max_connections);
        assert_eq!(c.rpc_rate_per_ip, rpc.rate_per_ip);
        assert_eq!(c.rpc_cors_origins, rpc.cors_origins);
        // run.rs derives the burst as twice the rate: that reproduces RpcConfig's default.
        assert_eq!(rpc.rate_burst, rpc.rate_per_ip * 2);

        // The node's bounds are RpcConfig::validate's (it does not export them).
        let valid = |f: &dyn Fn(&mut RpcConfig)| {
            let mut r = RpcConfig::default();
            f(&mut r);
            r.validate().is_ok()
        };
        assert!(valid(&|r| r.max_body_bytes = MIN_RPC_BODY_BYTES));
        assert!(valid(&|r| r.max_body_bytes = MAX_RPC_BODY_BYTES));
        assert!(!valid(&|r| r.max_body_bytes = MIN_RPC_BODY_BYTES - 1));
        assert!(!valid(&|r| r.max_body_bytes = MAX_RPC_BODY_BYTES + 1));
        assert!(valid(&|r| r.max_connections = MAX_RPC_CONNECTIONS));
        assert!(!valid(&|r| r.max_connections = MAX_RPC_CONNECTIONS + 1));
        for rate in [0, 1, MAX_RPC_RATE_PER_IP] {
            assert!(valid(&|r| {
                r.rate_per_ip = rate;
                r.rate_burst = rate.saturating_mul(2);
            }));
        }
    }

    #[test]
    fn rpc_keys_from_each_layer_and_precedence() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write_file(
            dir.path(),
            "rpc_max_body_bytes = 100000
rpc_max_connections = 10
rpc_rate_per_ip = 5
             rpc_cors_origins = [\"https://file.example\", \"*\"]
",
        );
        let none = Layer::default();

        // Each key from the file alone.
        let c = NodeConfig::load(Some(&file), &none, &none).expect("load");
        assert_eq!(c.rpc_max_body_bytes, 100_000);
        assert_eq!(c.rpc_max_connections, 10);
        assert_eq!(c.rpc_rate_per_ip, 5);
        assert_eq!(c.rpc_cors_origins, ["https://file.example", "*"]);

        // Each key from the environment alone (CORS comma-separated, like BOOTSTRAP_PEERS).
        let e = env(&[
            ("RPC_MAX_BODY_BYTES", "200000"),
            ("RPC_MAX_CONNECTIONS", "20"),
            ("RPC_RATE_PER_IP", "0"),
            (
                "RPC_CORS_ORIGINS",
                "https://env.example, http://localhost:3000,",
            ),
        ]);
        let c = NodeConfig::load(None, &e, &none).expect("load");
        assert_eq!(c.rpc_max_body_bytes, 200_000);
        assert_eq!(c.rpc_max_connections, 20);
        assert_eq!(c.rpc_rate_per_ip, 0);
        assert_eq!(
            c.rpc_cors_origins,
            ["https://env.example", "http://localhost:3000"]
        );

        // Each key from flags alone.
        let flags = Layer {
            rpc_max_body_bytes: Some("300000".into()),
            rpc_max_connections: Some("30".into()),
            rpc_rate_per_ip: Some("1000000".into()),
            rpc_cors_origins: Some(vec!["*".into()]),
            ..Layer::default()
        };
        let c = NodeConfig::load(None, &none, &flags).expect("load");
        assert_eq!(c.rpc_max_body_bytes, 300_000);
        assert_eq!(c.rpc_max_connections, 30);
        assert_eq!(c.rpc_rate_per_ip, 1_000_000);
        assert_eq!(c.rpc_cors_origins, ["*"]);

        // Precedence: flag over env over file over default, key by key.
        let partial_env = env(&[
            ("RPC_MAX_CONNECTIONS", "20"),
            ("RPC_RATE_PER_IP", "7"),
            ("RPC_CORS_ORIGINS", "https://env.example"),
        ]);
        let partial_flags = Layer {
            rpc_rate_per_ip: Some("9".into()),
            ..Layer::default()
        };
        let c = NodeConfig::load(Some(&file), &partial_env, &partial_flags).expect("load");
        assert_eq!(c.rpc_max_body_bytes, 100_000, "file over default");
        assert_eq!(c.rpc_max_connections, 20, "env over file");
        assert_eq!(c.rpc_cors_origins, ["https://env.example"], "env over file");
        assert_eq!(c.rpc_rate_per_ip, 9, "flag over env over file");
        let c = NodeConfig::load(None, &partial_env, &none).expect("load");
        assert_eq!(
            c.rpc_max_body_bytes,
            RpcConfig::default().max_body_bytes,
            "default"
        );

        // A blank variable is unset; an empty flag (split to no entries) clears the list.
        let c =
            NodeConfig::load(Some(&file), &env(&[("RPC_CORS_ORIGINS", "")]), &none).expect("load");
        assert_eq!(c.rpc_cors_origins, ["https://file.example", "*"]);
        let clear = Layer {
            rpc_cors_origins: Some(split_peers("")),
            ..Layer::default()
        };
        let c = NodeConfig::load(Some(&file), &none, &clear).expect("load");
        assert!(c.rpc_cors_origins.is_empty());
    }

    #[test]
    fn bad_rpc_values_name_key_and_layer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cases: &[(Key, &str, &str, &str)] = &[
            (Key::RpcMaxBodyBytes, "1024", "1024", "is not a body size"),
            (
                Key::RpcMaxBodyBytes,
                "67108865",
                "67108865",
                "is not a body size",
            ),
            (
                Key::RpcMaxConnections,
                "0",
                "0",
                "is not a connection limit",
            ),
            (Key::RpcRatePerIp, "-5", "-5", "is not a request rate"),
            (
                Key::RpcCorsOrigins,
                "https://a.com/",
                "[\"https://a.com/\"]",
                "no path",
            ),
        ];
        for &(key, text, toml_value, problem) in cases {
            // Environment.
            let msg = load_err(None, &env(&[(&key.env_name(), text)]), &Layer::default());
            let want = format!("{} (environment): {text:?} ", key.env_name());
            assert!(msg.starts_with(&want) && msg.contains(problem), "{msg}");

            // Flags.
            let mut flags = Layer::default();
            match key {
                Key::RpcMaxBodyBytes => flags.rpc_max_body_bytes = Some(text.into()),
                Key::RpcMaxConnections => flags.rpc_max_connections = Some(text.into()),
                Key::RpcRatePerIp => flags.rpc_rate_per_ip = Some(text.into()),
                Key::RpcCorsOrigins => flags.rpc_cors_origins = Some(split_peers(text)),
                _ => unreachable!("not an rpc key"),
            }
            let msg = load_err(None, &Layer::default(), &flags);
            let want = format!("{} (command line): {text:?} ", key.flag_name());
            assert!(msg.starts_with(&want) && msg.contains(problem), "{msg}");

            // File.
            let file = write_file(
                dir.path(),
                &format!(
                    "{} = {toml_value}
",
                    key.file_name()
                ),
            );
            let msg = load_err(Some(&file), &Layer::default(), &Layer::default());
            let want = format!(
                "{} (config file {}): {text:?} ",
                key.file_name(),
                file.display()
            );
            assert!(msg.starts_with(&want) && msg.contains(problem), "{msg}");
        }
        assert_eq!(Key::RpcMaxBodyBytes.flag_name(), "--rpc-max-body-bytes");
        assert_eq!(Key::RpcCorsOrigins.env_name(), "RPC_CORS_ORIGINS");

        // A wrongly typed file value is caught by the parser, still naming the key and file.
        let file = write_file(
            dir.path(),
            "rpc_cors_origins = \"https://a.com\"
",
        );
        let msg = load_err(Some(&file), &Layer::default(), &Layer::default());
        assert!(msg.contains("rpc_cors_origins"), "{msg}");
        assert!(msg.contains(&file.display().to_string()), "{msg}");
    }

    #[test]
    fn cors_origins_as_browsers_send_them() {
        let accepted = [
            "*",
            "https://app.example.com",
            "http://localhost:3000",
            "http://127.0.0.1:8080",
            "https://xn--bcher-kva.example",
            "http://[::1]",
            "http://[::1]:5173",
            "https://a.com:8443",
        ];
        for origin in accepted {
            let c = NodeConfig::load(
                None,
                &env(&[("RPC_CORS_ORIGINS", origin)]),
                &Layer::default(),
            )
            .unwrap_or_else(|e| panic!("{origin}: {e}"));
            assert_eq!(c.rpc_cors_origins, [origin]);
            // Whatever the node accepts, the RPC server accepts too.
            let rpc = RpcConfig {
                cors_origins: c.rpc_cors_origins,
                ..RpcConfig::default()
            };
            assert_eq!(rpc.validate(), Ok(()), "{origin}");
        }
        let rejected: &[(&str, &str)] = &[
            ("ftp://a.com", "http:// or https://"),
            ("HTTPS://a.com", "http:// or https://"),
            ("//a.com", "http:// or https://"),
            ("https://", "host"),
            ("https://a.com/", "no path"),
            ("https://a.com/x", "no path"),
            ("https://a.com?q", "no path"),
            ("https://a.com#f", "no path"),
            ("https://user@a.com", "user name"),
            ("https://A.com", "lower-case"),
            ("https://a..com", "lower-case"),
            ("https://a com", "lower-case"),
            ("https://a.com:443", "default port"),
            ("http://a.com:80", "default port"),
            ("http://a.com:0", "bad port"),
            ("http://a.com:65536", "bad port"),
            ("http://a.com:080", "bad port"),
            ("http://a.com:", "bad port"),
            ("http://[::1", "unclosed"),
            ("http://[::g]", "bad IPv6"),
            ("http://[::1]x", "after the IPv6"),
            ("**", "http:// or https://"),
        ];
        for (origin, problem) in rejected {
            let msg = load_err(
                None,
                &env(&[("RPC_CORS_ORIGINS", origin)]),
                &Layer::default(),
            );
            assert!(
                msg.starts_with(&format!("RPC_CORS_ORIGINS (environment): {origin:?}")),
                "{msg}"
            );
            assert!(msg.contains(problem), "{origin}: {msg}");
        }
    }

    /// The shipped examples must list every key, so operators can discover them.
    #[test]
    fn examples_list_every_key() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let toml = std::fs::read_to_string(root.join("config/node.example.toml")).expect("toml");
        let dotenv = std::fs::read_to_string(root.join(".env.example")).expect(".env");
        for k in Key::ALL {
            assert!(toml.contains(&format!("# {} = ", k.file_name())), "{k:?}");
            assert!(toml.contains(&format!("env {}", k.env_name())), "{k:?}");
            assert!(dotenv.contains(&format!("\n{}=", k.env_name())), "{k:?}");
        }
    }

    #[test]
    fn key_names() {
        for k in Key::ALL {
            assert_eq!(k.env_name(), k.file_name().to_ascii_uppercase());
            assert!(k.flag_name().starts_with("--"));
        }
        assert_eq!(Key::P2pBind.flag_name(), "--p2p-bind");
    }
}
