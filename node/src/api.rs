//! The node as the RPC sees it: [`aitbc_rpc::NodeApi`] over the shared state.
//!
//! Reads answer from the committed head under a read lock (never a half-applied block).
//! Submitted txs go to the admission thread ([`crate::admission`]), which checks signatures in
//! batches off the runtime. A `wait: commit` caller registers before its tx is admitted, so a
//! commit that follows at once is not missed.

use crate::admission::Admission;
use crate::metrics;
use crate::shared::Shared;
use aitbc_chain::state::keys;
use aitbc_chain::tx::{HashedTx, Tx, TxKind};
use aitbc_chain::{Address, Hash, SecretKey};
use aitbc_p2p::Handle;
use aitbc_rpc::*;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// How long `wait: commit` waits before it gives up (the tx stays in the mempool).
const COMMIT_WAIT: Duration = Duration::from_secs(60);

pub struct Api {
    shared: Arc<Shared>,
    admission: Admission,
    net: Handle,
    /// Signs admin transactions (faucet transfers, parameter updates); the validator key.
    admin_key: Option<SecretKey>,
}

impl Api {
    pub fn new(
        shared: Arc<Shared>,
        admission: Admission,
        net: Handle,
        admin_key: Option<SecretKey>,
    ) -> Api {
        Api {
            shared,
            admission,
            net,
            admin_key,
        }
    }

    fn internal(e: impl std::fmt::Display) -> ApiError {
        ApiError::internal(e.to_string())
    }

    async fn admit(&self, tx: HashedTx) -> ApiResult<()> {
        admit(&self.admission, tx).await
    }

    /// Signs `kind` with the admin key and admits it.
    async fn submit_admin(&self, kind: TxKind) -> ApiResult<TxSubmitted> {
        let tx = self.admin_tx(kind)?;
        let hash = tx.hash;
        self.admit(tx).await?;
        Ok(TxSubmitted {
            hash,
            status: TxStatus::Pending,
            height: None,
        })
    }

    /// Signs a tx of `kind` with the admin key at its next nonce and the minimum fee.
    fn admin_tx(&self, kind: TxKind) -> ApiResult<HashedTx> {
        let key = self.admin_key.as_ref().ok_or_else(|| {
            ApiError::unavailable("no_admin_key", "this node has no key to sign admin txs")
        })?;
        self.shared.sign_own(key, kind).map_err(Self::internal)
    }

    fn read<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> ApiResult<Option<T>> {
        aitbc_chain::state::read(&*self.shared.store(), key).map_err(Self::internal)
    }
}

impl NodeApi for Api {
    async fn send_tx(&self, tx: Tx, wait: Wait) -> ApiResult<TxSubmitted> {
        let tx = HashedTx::new(tx);
        let hash = tx.hash;
        match wait {
            Wait::None => {
                let admission = self.admission.clone();
                tokio::spawn(async move { admit(&admission, tx).await });
                Ok(TxSubmitted {
                    hash,
                    status: TxStatus::Submitted,
                    height: None,
                })
            }
            Wait::Mempool => {
                self.admit(tx).await?;
                Ok(TxSubmitted {
                    hash,
                    status: TxStatus::Pending,
                    height: None,
                })
            }
            Wait::Commit => {
                let (send, recv) = oneshot::channel();
                self.shared.waiters().entry(hash).or_default().push(send);
                if let Err(e) = self.admit(tx).await {
                    self.shared.waiters().remove(&hash);
                    return Err(e);
                }
                match tokio::time::timeout(COMMIT_WAIT, recv).await {
                    Ok(Ok(height)) => Ok(TxSubmitted {
                        hash,
                        status: TxStatus::Committed,
                        height: Some(height),
                    }),
                    Ok(Err(_)) => Err(ApiError::unavailable(
                        "shutting_down",
                        "the node stopped before the tx was committed",
                    )),
                    Err(_) => {
                        self.shared.waiters().remove(&hash);
                        Err(ApiError::unavailable(
                            "commit_timeout",
                            format!(
                                "not committed within {} s; it may still be (see getTx)",
                                COMMIT_WAIT.as_secs()
                            ),
                        ))
                    }
                }
            }
        }
    }

    fn get_tx(&self, hash: Hash) -> ApiResult<Option<TxInfo>> {
        let store = self.shared.store();
        if let Some(loc) = store.tx_location(&hash).map_err(Self::internal)? {
            let block = store
                .block(loc.height)
                .map_err(Self::internal)?
                .ok_or_else(|| Self::internal(format!("block {} is missing", loc.height)))?;
            let tx = block
                .txs
                .get(loc.index as usize)
                .ok_or_else(|| Self::internal("tx index out of range"))?;
            return Ok(Some(TxInfo {
                hash,
                tx: tx.tx.clone(),
                status: TxStatus::Committed,
                height: Some(loc.height),
                index: Some(loc.index),
                block_hash: Some(block.hash()),
            }));
        }
        drop(store);
        Ok(self.shared.mempool().get(&hash).map(|t| TxInfo {
            hash,
            tx: t.tx.clone(),
            status: TxStatus::Pending,
            height: None,
            index: None,
            block_hash: None,
        }))
    }

    fn get_block(&self, at: BlockRef) -> ApiResult<Option<BlockInfo>> {
        let store = self.shared.store();
        let block = match at {
            BlockRef::Height(h) => store.block(h),
            BlockRef::Hash(h) => store.block_by_hash(&h),
        }
        .map_err(Self::internal)?;
        let Some(block) = block else {
            return Ok(None);
        };
        let commit = store
            .certificate(block.header.height)
            .map_err(Self::internal)?;
        Ok(Some(BlockInfo {
            hash: block.hash(),
            block,
            commit,
        }))
    }

    fn get_header(&self, height: Option<u64>) -> ApiResult<Option<HeaderInfo>> {
        let store = self.shared.store();
        let height = height.unwrap_or(store.height());
        Ok(store
            .block(height)
            .map_err(Self::internal)?
            .map(|b| HeaderInfo {
                hash: b.hash(),
                tx_count: Some(b.txs.len() as u32),
                header: b.header.clone(),
            }))
    }

    fn get_commit(&self, height: u64) -> ApiResult<Option<aitbc_chain::CommitCertificate>> {
        self.shared
            .store()
            .certificate(height)
            .map_err(Self::internal)
    }

    async fn get_account(&self, address: Address) -> ApiResult<AccountInfo> {
        let store = self.shared.store();
        let a = aitbc_chain::state::account(&*store, &address).map_err(Self::internal)?;
        Ok(AccountInfo {
            balance: a.balance,
            nonce: a.nonce,
            stake: a.stake,
            height: store.height(),
        })
    }

    fn get_account_proof(&self, address: Address) -> ApiResult<AccountProofInfo> {
        let store = self.shared.store();
        let proof = store
            .prove(&keys::account(&address))
            .map_err(Self::internal)?;
        Ok(AccountProofInfo {
            address,
            height: store.height(),
            state_root: store.state_root(),
            proof,
        })
    }

    fn estimate_fee(&self, bytes: u64) -> ApiResult<FeeEstimate> {
        let p = self.shared.params();
        Ok(FeeEstimate {
            fee: p.min_fee(bytes),
            bytes,
            base_fee: p.base_fee,
            fee_per_byte: p.fee_per_byte,
        })
    }

    fn validators(&self) -> ApiResult<Vec<ValidatorInfo>> {
        let store = self.shared.store();
        let set = store
            .voting_set(store.height() + 1)
            .ok_or_else(|| Self::internal("no validator set"))?;
        drop(store);
        let live = self.shared.liveness();
        Ok(set
            .validators()
            .iter()
            .map(|v| {
                let l = live.get(&v.pubkey).copied().unwrap_or_default();
                ValidatorInfo {
                    address: v.address,
                    pubkey: v.pubkey,
                    power: v.power,
                    last_signed_height: l.last_signed,
                    missed_blocks: l.missed,
                }
            })
            .collect())
    }

    async fn peers(&self) -> ApiResult<Vec<PeerSummary>> {
        peers(&self.net).await
    }

    fn mempool(&self, limit: usize) -> ApiResult<MempoolInfo> {
        let mempool = self.shared.mempool();
        Ok(MempoolInfo {
            count: mempool.len() as u64,
            bytes: mempool.bytes() as u64,
            txs: mempool.iter().take(limit).map(|t| t.tx.clone()).collect(),
        })
    }

    fn supply(&self) -> ApiResult<SupplyInfo> {
        let supply: u64 = self
            .read(keys::SUPPLY)?
            .ok_or_else(|| Self::internal("supply is missing from state"))?;
        Ok(SupplyInfo {
            supply,
            height: self.shared.head_height(),
        })
    }

    fn genesis(&self) -> &aitbc_chain::genesis::Genesis {
        &self.shared.genesis
    }

    fn consensus_state(&self) -> ApiResult<ConsensusInfo> {
        Ok(self.shared.consensus().clone())
    }

    fn status(&self) -> ApiResult<NodeStatus> {
        let store = self.shared.store();
        Ok(NodeStatus {
            chain_id: self.shared.genesis.chain_id.clone(),
            genesis_hash: self.shared.genesis_hash,
            version: env!("CARGO_PKG_VERSION").to_string(),
            peer_id: self.shared.peer_id.clone(),
            validator: self.shared.validator,
            head_height: store.height(),
            head_hash: store.head_hash(),
            head_time_ms: store.head().timestamp_ms,
            peers: self.shared.peers.load(Ordering::Relaxed),
            syncing: self.shared.syncing.load(Ordering::Relaxed),
        })
    }

    fn sync_status(&self) -> ApiResult<SyncInfo> {
        let head = self.shared.head_height();
        let best = self.shared.best_peer();
        Ok(SyncInfo {
            syncing: self.shared.syncing.load(Ordering::Relaxed),
            head_height: head,
            best_peer_height: best,
            lag: best.unwrap_or(0).saturating_sub(head),
        })
    }

    fn health(&self) -> ApiResult<()> {
        // A read of the head block proves the store is open and readable.
        let store = self.shared.store();
        match store.block(store.height()) {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(Self::internal("the head block is missing")),
            Err(e) => Err(Self::internal(e)),
        }
    }

    fn metrics_text(&self) -> String {
        metrics::encode(&self.shared.registry)
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<NodeEvent> {
        self.shared.events.subscribe()
    }

    async fn admin_mint_faucet(&self, to: Address, amount: u64) -> ApiResult<TxSubmitted> {
        let Some(faucet) = self.shared.genesis.faucet else {
            return Err(ApiError::unavailable(
                "no_faucet",
                "this chain's genesis names no faucet account",
            ));
        };
        if self.admin_key.as_ref().map(|k| Address::of(&k.public())) != Some(faucet) {
            return Err(ApiError::unavailable(
                "no_faucet_key",
                format!("this node's validator key is not the faucet account {faucet}"),
            ));
        }
        self.submit_admin(TxKind::Transfer { to, amount }).await
    }

    async fn admin_add_peer(&self, multiaddr: String) -> ApiResult<()> {
        add_peer(&self.net, multiaddr).await
    }

    async fn admin_param_set(&self, key: String, value: u64) -> ApiResult<TxSubmitted> {
        self.submit_admin(TxKind::ParamUpdate { key, value }).await
    }
}

/// `getPeers`, for full and light nodes alike.
pub(crate) async fn peers(net: &Handle) -> ApiResult<Vec<PeerSummary>> {
    let peers = net.peers().await.map_err(Api::internal)?;
    Ok(peers
        .into_iter()
        .map(|p| PeerSummary {
            peer_id: p.peer_id.to_string(),
            addresses: p.kad_addresses.iter().map(ToString::to_string).collect(),
            connected: p.connected,
        })
        .collect())
}

/// `/admin/peers/add`, for full and light nodes alike.
pub(crate) async fn add_peer(net: &Handle, multiaddr: String) -> ApiResult<()> {
    let addr: aitbc_p2p::Multiaddr = multiaddr
        .parse()
        .map_err(|e| ApiError::invalid_params(format!("multiaddr: {e}")))?;
    if aitbc_p2p::config::peer_id_of(&addr).is_none() {
        return Err(ApiError::invalid_params(
            "multiaddr: must end in /p2p/<peer id>",
        ));
    }
    net.add_peer(addr).await.map_err(Api::internal)
}

/// Admits `tx` through the admission thread; a refusal carries the mempool's reason.
async fn admit(admission: &Admission, tx: HashedTx) -> ApiResult<()> {
    admission
        .admit(tx)
        .await
        .map_err(Api::internal)?
        .map_err(|e| ApiError::rejected(e.reason(), e.to_string()))
}
