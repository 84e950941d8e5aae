//! A light peer as the RPC sees it: headers, certificates, the validator set it tracks and
//! verified balances. What needs blocks, txs or state it does not have (and will not take on
//! trust) is `unavailable` with the reason `light_peer`, so a client knows to ask a full node.

use crate::light::Light;
use crate::metrics;
use aitbc_chain::genesis::Genesis;
use aitbc_chain::{Address, CommitCertificate, Hash, Tx};
use aitbc_rpc::*;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub struct LightApi {
    light: Arc<Light>,
}

impl LightApi {
    pub fn new(light: Arc<Light>) -> LightApi {
        LightApi { light }
    }
}

fn light_only<T>(what: &str) -> ApiResult<T> {
    Err(ApiError::unavailable(
        "light_peer",
        format!("a light peer keeps verified headers only and has no {what}; ask a full node"),
    ))
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(e.to_string())
}

impl NodeApi for LightApi {
    async fn send_tx(&self, _tx: Tx, _wait: Wait) -> ApiResult<TxSubmitted> {
        light_only("mempool")
    }

    fn get_tx(&self, _hash: Hash) -> ApiResult<Option<TxInfo>> {
        light_only("transactions")
    }

    fn get_block(&self, _at: BlockRef) -> ApiResult<Option<BlockInfo>> {
        light_only("block bodies")
    }

    fn get_header(&self, height: Option<u64>) -> ApiResult<Option<HeaderInfo>> {
        let height = height.unwrap_or_else(|| self.light.head_height());
        if height == 0 {
            let header = self.light.genesis_header();
            return Ok(Some(HeaderInfo {
                hash: header.hash(),
                header,
                tx_count: None,
            }));
        }
        Ok(self
            .light
            .header(height)
            .map_err(internal)?
            .map(|ch| HeaderInfo {
                hash: ch.commit.block_hash,
                header: ch.header,
                tx_count: None,
            }))
    }

    fn get_commit(&self, height: u64) -> ApiResult<Option<CommitCertificate>> {
        Ok(self
            .light
            .header(height)
            .map_err(internal)?
            .map(|ch| ch.commit))
    }

    async fn get_account(&self, address: Address) -> ApiResult<AccountInfo> {
        self.light.account(address).await
    }

    fn get_account_proof(&self, _address: Address) -> ApiResult<AccountProofInfo> {
        light_only("state to prove from")
    }

    fn estimate_fee(&self, _bytes: u64) -> ApiResult<FeeEstimate> {
        light_only("current parameters")
    }

    /// The set that signs the next header, as verified; liveness is not tracked here.
    fn validators(&self) -> ApiResult<Vec<ValidatorInfo>> {
        Ok(self
            .light
            .trusted()
            .next_set
            .validators()
            .iter()
            .map(|v| ValidatorInfo {
                address: v.address,
                pubkey: v.pubkey,
                power: v.power,
                last_signed_height: None,
                missed_blocks: 0,
            })
            .collect())
    }

    async fn peers(&self) -> ApiResult<Vec<PeerSummary>> {
        crate::api::peers(&self.light.net).await
    }

    fn mempool(&self, _limit: usize) -> ApiResult<MempoolInfo> {
        light_only("mempool")
    }

    fn supply(&self) -> ApiResult<SupplyInfo> {
        light_only("state")
    }

    fn genesis(&self) -> &Genesis {
        &self.light.genesis
    }

    fn consensus_state(&self) -> ApiResult<ConsensusInfo> {
        Ok(ConsensusInfo {
            height: self.light.head_height() + 1,
            view: 0,
            phase: "light".into(),
            votes_seen: 0,
            proposer: None,
            validator: None,
        })
    }

    fn status(&self) -> ApiResult<NodeStatus> {
        let trusted = self.light.trusted();
        Ok(NodeStatus {
            chain_id: self.light.genesis.chain_id.clone(),
            genesis_hash: self.light.genesis_hash,
            version: env!("CARGO_PKG_VERSION").to_string(),
            peer_id: self.light.peer_id.clone(),
            validator: None,
            head_height: trusted.height(),
            head_hash: trusted.header.hash(),
            head_time_ms: trusted.header.timestamp_ms,
            peers: self.light.peers.load(Ordering::Relaxed),
            syncing: self.light.syncing.load(Ordering::Relaxed),
        })
    }

    fn sync_status(&self) -> ApiResult<SyncInfo> {
        let head = self.light.head_height();
        let best = self.light.best_peer_height.load(Ordering::Relaxed);
        Ok(SyncInfo {
            syncing: self.light.syncing.load(Ordering::Relaxed),
            head_height: head,
            best_peer_height: (best > 0).then_some(best),
            lag: best.saturating_sub(head),
        })
    }

    fn health(&self) -> ApiResult<()> {
        if let Some(h) = self.light.halted() {
            return Err(ApiError::unavailable(
                "conflicting_headers",
                format!("two certified headers at height {h}: this light peer stopped trusting"),
            ));
        }
        let head = self.light.head_height();
        match self.light.header(head) {
            Ok(Some(_)) => Ok(()),
            Ok(None) if head == 0 => Ok(()),
            Ok(None) => Err(internal("the trusted head header is missing")),
            Err(e) => Err(internal(e)),
        }
    }

    fn metrics_text(&self) -> String {
        metrics::encode(&self.light.registry)
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<NodeEvent> {
        self.light.events.subscribe()
    }

    async fn admin_mint_faucet(&self, _to: Address, _amount: u64) -> ApiResult<TxSubmitted> {
        light_only("faucet key")
    }

    async fn admin_add_peer(&self, multiaddr: String) -> ApiResult<()> {
        crate::api::add_peer(&self.light.net, multiaddr).await
    }

    async fn admin_param_set(&self, _key: String, _value: u64) -> ApiResult<TxSubmitted> {
        light_only("authority key")
    }
}
