//! `aitbc-node run`: opens everything, starts every part, and stops them in order.
//!
//! Start-up refuses to go on with anything it cannot trust (a genesis of another chain, a store
//! whose invariants fail, unreadable keys), each with a message that says what to do. Shutdown
//! (SIGINT/SIGTERM) stops taking requests, lets the core finish its current step, syncs the WAL
//! and flushes the store before the process exits.

use crate::admission::Admission;
use crate::api::Api;
use crate::config::NodeConfig;
use crate::core::{Core, CoreInput};
use crate::metrics::NodeMetrics;
use crate::shared::Shared;
use crate::{home, keys, net, sync};
use aitbc_chain::consensus::wal::Wal;
use aitbc_chain::consensus::{Message, Record};
use aitbc_chain::genesis::Genesis;
use aitbc_chain::store::{ChainStore, SledKv};
use aitbc_chain::Params;
use aitbc_chain::{Address, SecretKey};
use aitbc_p2p::{Event, Handle, Topic};
use aitbc_rpc::{NodeApi, RpcConfig, RpcMetrics};
use anyhow::{bail, Context, Result};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Pending core inputs (gossip beyond this is ignored, not queued without bound).
const CORE_QUEUE: usize = 8192;
/// Admitted txs waiting for the gossip batcher.
const TX_OUTBOX: usize = 65_536;

/// Where the store and WAL live inside `db_path`.
const STORE_DIR: &str = "chain";
const WAL_FILE: &str = "consensus.wal";

/// Loads the validator key if its file exists; a node without one follows the chain.
fn validator_key(config: &NodeConfig) -> Result<Option<SecretKey>> {
    if !config.validator_key.exists() {
        return Ok(None);
    }
    keys::load_validator_key(&config.validator_key)
        .map(Some)
        .with_context(|| format!("validator_key {}", config.validator_key.display()))
}

pub fn run(config: NodeConfig) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("aitbc-rt")
        .build()
        .context("starting the async runtime")?;
    rt.block_on(run_async(config))
}

/// Reads the genesis file and checks it is the configured chain's.
pub(crate) fn load_genesis(config: &NodeConfig) -> Result<Genesis> {
    let genesis = home::read_genesis(&config.genesis)
        .with_context(|| format!("genesis {}", config.genesis.display()))?;
    if genesis.chain_id != config.chain_id {
        bail!(
            "chain_id {:?} does not match the genesis file's {:?} ({})",
            config.chain_id,
            genesis.chain_id,
            config.genesis.display()
        );
    }
    Ok(genesis)
}

/// Starts the swarm on the configured addresses and bootstrap peers, with wire limits from
/// `params`; `light` subscribes to committed blocks only.
pub(crate) async fn start_net(
    config: &NodeConfig,
    genesis: &Genesis,
    params: &Params,
    light: bool,
) -> Result<(Handle, mpsc::Receiver<Event>, String)> {
    let node_key = keys::load_node_key(&config.node_key)
        .with_context(|| format!("node_key {}", config.node_key.display()))?;
    let mut p2p_config = aitbc_p2p::Config::new(genesis.chain_id.clone(), genesis.hash());
    p2p_config.listen = vec![config
        .p2p_bind
        .parse()
        .with_context(|| format!("p2p_bind {:?}", config.p2p_bind))?];
    p2p_config.bootstrap = config
        .bootstrap_peers
        .iter()
        .map(|a| a.parse().with_context(|| format!("bootstrap_peers {a:?}")))
        .collect::<Result<_>>()?;
    p2p_config.max_block_bytes = params.max_block_bytes;
    p2p_config.max_validators = params.max_validators;
    if light {
        p2p_config.topics = vec![Topic::Block];
        p2p_config.kad_server = false;
    }
    let keypair = aitbc_p2p::Keypair::ed25519_from_bytes(node_key.seed())
        .context("node_key is not a valid ed25519 seed")?;
    let (net, events) = aitbc_p2p::start(keypair, p2p_config)
        .await
        .context("starting the p2p network")?;
    let peer_id = net.local_peer_id().to_string();
    for addr in net.listen_addrs().await.unwrap_or_default() {
        tracing::info!(component = "p2p", event = "listening", %addr, "/p2p/{peer_id}");
    }

    Ok((net, events, peer_id))
}

async fn run_async(config: NodeConfig) -> Result<()> {
    let genesis = load_genesis(&config)?;
    let key = validator_key(&config)?;
    let validator = key.as_ref().map(|k| Address::of(&k.public()));

    std::fs::create_dir_all(&config.db_path)
        .with_context(|| format!("db_path {}", config.db_path.display()))?;
    let store_path = config.db_path.join(STORE_DIR);
    let kv = SledKv::open(&store_path)
        .with_context(|| format!("opening the store at {}", store_path.display()))?;
    let store = ChainStore::open(kv, &genesis).with_context(|| {
        format!(
            "the store at {} cannot be trusted; stop the node, delete that directory and \
             start again to sync from peers",
            store_path.display()
        )
    })?;
    tracing::info!(component = "store", event = "open", height = store.height(), hash = %store.head_hash());

    let params = crate::shared::load_params(&store).map_err(anyhow::Error::msg)?;
    let max_record = Message::max_encoded_len(params.max_block_bytes, params.max_validators) * 2;
    let wal_path = config.db_path.join(WAL_FILE);
    let (wal, recovered) = Wal::open::<Record>(&wal_path, max_record)
        .with_context(|| format!("consensus WAL {}", wal_path.display()))?;
    if recovered.dropped_bytes > 0 {
        tracing::warn!(
            component = "consensus",
            event = "wal_tail_dropped",
            bytes = recovered.dropped_bytes,
            "a torn WAL tail (crash mid-write) was dropped"
        );
    }

    let (net, events, peer_id) = start_net(&config, &genesis, &params, false).await?;

    let mut registry = Registry::default();
    let metrics = NodeMetrics::register(&mut registry);
    let rpc_metrics = RpcMetrics::register(&mut registry);
    metrics.on_commit(store.height(), 0, None, None);
    let (outbox_tx, outbox_rx) = mpsc::channel(TX_OUTBOX);
    let shared = Arc::new(
        Shared::new(
            genesis,
            config.mempool(),
            store,
            validator,
            peer_id,
            metrics,
            registry,
            outbox_tx,
        )
        .map_err(anyhow::Error::msg)?,
    );

    let (core_tx, core_rx) = std::sync::mpsc::sync_channel(CORE_QUEUE);
    let (sync_wake_tx, sync_wake_rx) = mpsc::channel(4);
    let admin_key = key.as_ref().map(|k| SecretKey::from_seed(k.seed()));
    let (core, first) = Core::new(
        shared.clone(),
        net.clone(),
        tokio::runtime::Handle::current(),
        key,
        wal,
        recovered.records,
        config.block_time_ms,
        sync_wake_tx.clone(),
    )?;
    let core_thread = std::thread::Builder::new()
        .name("aitbc-core".into())
        .spawn(move || core.run(first, core_rx))
        .context("starting the core thread")?;

    tokio::spawn(net::forward_events(
        shared.clone(),
        net.clone(),
        events,
        core_tx.clone(),
        sync_wake_tx,
    ));
    tokio::spawn(net::publish_tx_batches(
        shared.clone(),
        net.clone(),
        outbox_rx,
    ));
    tokio::spawn(sync::run(
        shared.clone(),
        net.clone(),
        core_tx.clone(),
        sync_wake_rx,
    ));

    let admission = Admission::start(shared.clone()).context("starting the admission thread")?;
    let api = Arc::new(Api::new(shared.clone(), admission, net.clone(), admin_key));
    let servers = RpcServers::start(&config, api, rpc_metrics).await?;

    // Run until a signal, or until the core stops by itself (a failure).
    let core_done = tokio::task::spawn_blocking(move || core_thread.join());
    tokio::pin!(core_done);
    let early = tokio::select! {
        s = shutdown_signal() => { tracing::info!(component = "node", event = "shutdown", signal = s); None }
        r = &mut core_done => Some(r),
    };
    let rpc_stopped = servers.stop();
    let core_result = match early {
        Some(r) => r,
        None => {
            let _ = core_tx.send(CoreInput::Shutdown);
            core_done.await
        }
    };
    rpc_stopped.await;
    net.shutdown().await;
    // Wake `wait: commit` callers: their txs were not committed by this process.
    shared.waiters().clear();
    match core_result {
        Ok(Ok(Ok(()))) => {
            tracing::info!(
                component = "node",
                event = "stopped",
                height = shared.head_height()
            );
            Ok(())
        }
        Ok(Ok(Err(e))) => Err(anyhow::Error::new(e).context("the consensus core stopped")),
        Ok(Err(_)) | Err(_) => bail!("the consensus core panicked"),
    }
}

/// The JSON-RPC server and the optional metrics-only server, stopped together.
pub(crate) struct RpcServers {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl RpcServers {
    pub(crate) async fn start<A: NodeApi>(
        config: &NodeConfig,
        api: Arc<A>,
        rpc_metrics: RpcMetrics,
    ) -> Result<RpcServers> {
        let rpc_config = RpcConfig {
            bind: config.rpc_bind,
            admin_token: config.admin_token.as_ref().map(|t| t.expose().to_string()),
            max_body_bytes: config.rpc_max_body_bytes,
            max_connections: config.rpc_max_connections,
            rate_per_ip: config.rpc_rate_per_ip,
            // Not a config key: twice the rate, the ratio of `RpcConfig::default` (200/400), so
            // a lowered rate is not undone by a fixed burst (see `NodeConfig::rpc_rate_per_ip`).
            rate_burst: config.rpc_rate_per_ip.saturating_mul(2),
            cors_origins: config.rpc_cors_origins.clone(),
            ..RpcConfig::default()
        };
        rpc_config.validate().context("rpc config")?;
        let listener = tokio::net::TcpListener::bind(config.rpc_bind)
            .await
            .with_context(|| format!("rpc_bind {}: cannot listen", config.rpc_bind))?;
        tracing::info!(component = "rpc", event = "listening", addr = %config.rpc_bind);
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let mut tasks = vec![tokio::spawn(aitbc_rpc::serve(
            listener,
            api.clone(),
            rpc_config,
            rpc_metrics,
            stopped(stop_rx.clone()),
        ))];
        if let Some(port) = config.metrics_port {
            let addr = std::net::SocketAddr::new(config.rpc_bind.ip(), port);
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("metrics_port {port}: cannot listen on {addr}"))?;
            tasks.push(tokio::spawn(aitbc_rpc::serve_metrics(
                listener,
                api,
                stopped(stop_rx),
            )));
        }
        Ok(RpcServers { stop, tasks })
    }

    /// Stops taking requests at once; the future resolves when the servers have finished.
    pub(crate) fn stop(self) -> impl std::future::Future<Output = ()> {
        let _ = self.stop.send(true);
        async move {
            for t in self.tasks {
                let _ = t.await;
            }
        }
    }
}

/// Resolves on SIGINT or SIGTERM, naming it.
pub(crate) async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return "SIGINT";
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}
