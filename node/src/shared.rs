//! State the node's parts share: the store and mempool behind locks, and what the core thread
//! publishes for the RPC (consensus progress, validator liveness, sync progress, events).
//!
//! One writer: only the core thread commits to the store and changes the head, so readers
//! (RPC, sync responders, gossip admission) take read locks and never see a half-applied
//! block. The mempool lock is held only for one admission or one selection.

use crate::metrics::NodeMetrics;
use aitbc_chain::crypto::Signature;
use aitbc_chain::execution::{BlockEnv, Executor};
use aitbc_chain::genesis::Genesis;
use aitbc_chain::mempool::{Mempool, MempoolConfig, MempoolError};
use aitbc_chain::state::StateError;
use aitbc_chain::store::{ChainStore, SledKv};
use aitbc_chain::tx::{HashedTx, Tx, TxKind};
use aitbc_chain::{Address, Hash, Params, PublicKey, SecretKey};
use aitbc_rpc::{ConsensusInfo, NodeEvent};
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio::sync::{broadcast, mpsc, oneshot};

pub type Store = ChainStore<SledKv>;

/// How many events a slow WebSocket subscriber may fall behind before it loses the oldest.
const EVENT_BUFFER: usize = 1024;

/// Per validator: the last height whose certificate carried its signature, and how many
/// committed heights since start-up lacked it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Liveness {
    pub last_signed: Option<u64>,
    pub missed: u64,
}

pub struct Shared {
    pub genesis: Genesis,
    pub genesis_hash: Hash,
    pub store: RwLock<Store>,
    pub mempool: Mutex<Mempool>,
    /// Parameters in force at the head (a `ParamUpdate` changes them), for admission.
    pub params: RwLock<Params>,
    pub events: broadcast::Sender<NodeEvent>,
    /// `sendTx` calls waiting for their tx's commit: tx hash → height senders.
    pub commit_waiters: Mutex<BTreeMap<Hash, Vec<oneshot::Sender<u64>>>>,
    pub consensus: Mutex<ConsensusInfo>,
    pub liveness: Mutex<BTreeMap<PublicKey, Liveness>>,
    /// Best head any peer reported (0 = none yet), and whether we are catching up to it.
    pub best_peer_height: AtomicU64,
    pub syncing: AtomicBool,
    pub peers: AtomicU64,
    pub metrics: NodeMetrics,
    pub registry: Registry,
    /// This node's validator address, when it has a validator key.
    pub validator: Option<Address>,
    pub peer_id: String,
    /// Txs admitted here (RPC, this node's own), for the gossip batcher. Txs admitted from
    /// gossip are not queued: gossipsub forwards them.
    tx_outbox: mpsc::Sender<Tx>,
}

impl Shared {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        genesis: Genesis,
        mempool: MempoolConfig,
        store: Store,
        validator: Option<Address>,
        peer_id: String,
        metrics: NodeMetrics,
        registry: Registry,
        tx_outbox: mpsc::Sender<Tx>,
    ) -> Result<Shared, String> {
        let params = load_params(&store)?;
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let mempool = Mempool::new(genesis.chain_id.clone(), mempool);
        let consensus = ConsensusInfo {
            height: store.height() + 1,
            view: 0,
            phase: "propose".into(),
            votes_seen: 0,
            proposer: None,
            validator,
        };
        Ok(Shared {
            genesis_hash: genesis.hash(),
            genesis,
            store: RwLock::new(store),
            mempool: Mutex::new(mempool),
            params: RwLock::new(params),
            events,
            commit_waiters: Mutex::new(BTreeMap::new()),
            consensus: Mutex::new(consensus),
            liveness: Mutex::new(BTreeMap::new()),
            best_peer_height: AtomicU64::new(0),
            syncing: AtomicBool::new(false),
            peers: AtomicU64::new(0),
            metrics,
            registry,
            validator,
            peer_id,
            tx_outbox,
        })
    }

    /// Admits one tx from this node's side (admin, evidence), then tells subscribers and
    /// queues it for gossip. Checks signatures: call it off the async runtime.
    pub fn admit(&self, tx: HashedTx) -> Result<(), MempoolError> {
        // One verdict per tx: the fallback is never taken.
        self.admit_many(vec![tx])
            .pop()
            .unwrap_or(Err(MempoolError::Duplicate))
    }

    /// Admits `txs` in order with one batched signature check (see [`crate::admission`]);
    /// each admitted one is told to subscribers and queued for gossip. Verdicts are
    /// index-aligned with `txs`. Checks signatures: call it off the async runtime.
    pub fn admit_many(&self, txs: Vec<HashedTx>) -> Vec<Result<(), MempoolError>> {
        let (results, admitted) = self.admit_to_pool(txs, true);
        for tx in admitted {
            // A full outbox only delays gossip: the tx is in our pool and our blocks.
            let _ = self.tx_outbox.try_send(tx);
        }
        for e in results.iter().filter_map(|r| r.as_ref().err()) {
            self.metrics.mempool_rejected(e.reason());
        }
        results
    }

    /// The mempool step shared by client and gossip admission: one `Mempool::admit_batch`
    /// under the locks, the pool metrics, and a `NewTransaction` event per admitted tx.
    /// With `copy_admitted`, also returns copies of the admitted txs (for our own gossip),
    /// taken from the pool so rejected txs are never copied.
    pub(crate) fn admit_to_pool(
        &self,
        txs: Vec<HashedTx>,
        copy_admitted: bool,
    ) -> (Vec<Result<(), MempoolError>>, Vec<Tx>) {
        let hashes: Vec<Hash> = txs.iter().map(|t| t.hash).collect();
        let mut admitted = Vec::new();
        let results: Vec<Result<(), MempoolError>> = {
            let store = self.store();
            let params = self.params();
            let mut mempool = self.mempool();
            let results = mempool.admit_batch(txs, &*store, &params);
            self.metrics
                .set_mempool(mempool.len(), mempool.bytes() as u64);
            if copy_admitted {
                admitted.extend(
                    results
                        .iter()
                        .zip(&hashes)
                        .filter(|(r, _)| r.is_ok())
                        .filter_map(|(_, h)| mempool.get(h).map(|t| t.tx.clone())),
                );
            }
            results.into_iter().map(|r| r.map(|_| ())).collect()
        };
        for (r, hash) in results.iter().zip(hashes) {
            if r.is_ok() {
                self.emit(NodeEvent::NewTransaction { hash });
            }
        }
        (results, admitted)
    }

    /// `kind` signed by `key` at the sender's next free nonce (after its pending txs), paying
    /// the minimum fee.
    pub fn sign_own(&self, key: &SecretKey, kind: TxKind) -> Result<HashedTx, StateError> {
        let sender_pubkey = key.public();
        let nonce = {
            let store = self.store();
            self.mempool()
                .pending_nonce(&*store, &Address::of(&sender_pubkey))?
        };
        let chain_id = &self.genesis.chain_id;
        // Fixed-width encoding: the length does not depend on the fee or signature values.
        let probe = Tx {
            chain_id: chain_id.clone(),
            kind: kind.clone(),
            sender_pubkey,
            nonce,
            fee: 0,
            sig: Signature([0; 64]),
        };
        let fee = self.params().min_fee(probe.encoded_len() as u64);
        Ok(HashedTx::new(Tx::signed(chain_id, kind, key, nonce, fee)))
    }

    // A panic while a lock is held is a bug that has already stopped the node's work; the
    // guarded data is replaced whole by each writer, so reading it after a poison is safe.

    pub fn store(&self) -> RwLockReadGuard<'_, Store> {
        self.store.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn store_mut(&self) -> RwLockWriteGuard<'_, Store> {
        self.store.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn mempool(&self) -> MutexGuard<'_, Mempool> {
        self.mempool.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn params(&self) -> Params {
        self.params
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_params(&self, params: Params) {
        *self.params.write().unwrap_or_else(|e| e.into_inner()) = params;
    }

    pub fn consensus(&self) -> MutexGuard<'_, ConsensusInfo> {
        self.consensus.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn liveness(&self) -> MutexGuard<'_, BTreeMap<PublicKey, Liveness>> {
        self.liveness.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn waiters(&self) -> MutexGuard<'_, BTreeMap<Hash, Vec<oneshot::Sender<u64>>>> {
        self.commit_waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub fn head_height(&self) -> u64 {
        self.store().height()
    }

    pub fn best_peer(&self) -> Option<u64> {
        match self.best_peer_height.load(Ordering::Relaxed) {
            0 => None,
            h => Some(h),
        }
    }

    /// Sends an event to WebSocket subscribers; none listening is fine.
    pub fn emit(&self, event: NodeEvent) {
        let _ = self.events.send(event);
    }
}

/// The parameters in `store`'s committed state.
pub fn load_params(store: &Store) -> Result<Params, String> {
    let env = BlockEnv {
        chain_id: store.head().chain_id.clone(),
        height: store.height() + 1,
        proposer: Address([0; 20]),
    };
    Executor::new(store, env)
        .map(|e| e.params().clone())
        .map_err(|e| format!("cannot read the chain parameters: {e}"))
}
