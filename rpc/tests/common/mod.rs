//! The `NodeApi` test double: a small in-memory chain (a dev genesis, real signed txs, blocks
//! and certificates in `BTreeMap`s) and helpers to call the server.
//!
//! It checks what the RPC's error paths need (chain id, signature, nonce, fee, funds,
//! duplicates) and commits a block on demand; it does not execute receipts, stakes or
//! parameter updates beyond moving fees and nonces. It is a stand-in for the node, not a model
//! of consensus.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use aitbc_chain::block::{self, Block, CommitCertificate, CommitSig, Header};
use aitbc_chain::genesis::Genesis;
use aitbc_chain::params::AIT;
use aitbc_chain::receipt::{Receipt, ReceiptCore};
use aitbc_chain::state::keys;
use aitbc_chain::state::proof::StateProof;
use aitbc_chain::{Account, Address, Hash, HashedTx, SecretKey, Tx, TxKind};
use aitbc_rpc::*;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use prometheus_client::registry::Registry;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;
use tower::ServiceExt;

pub const CHAIN_ID: &str = "ait-rpc-test";
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

pub fn validator_key() -> SecretKey {
    SecretKey::from_seed([1; 32])
}
pub fn alice() -> SecretKey {
    SecretKey::from_seed([10; 32])
}
pub fn bob() -> SecretKey {
    SecretKey::from_seed([11; 32])
}
pub fn faucet_key() -> SecretKey {
    SecretKey::from_seed([12; 32])
}
pub fn addr(key: &SecretKey) -> Address {
    Address::of(&key.public())
}

/// A fee that covers any small test tx under the default fee schedule.
pub const FEE: u64 = 100_000;

pub fn transfer(from: &SecretKey, to: Address, amount: u64, nonce: u64) -> Tx {
    Tx::signed(CHAIN_ID, TxKind::Transfer { to, amount }, from, nonce, FEE)
}

/// A receipt claim signed by `miner` and the validator acting as coordinator.
pub fn receipt_claim(miner: &SecretKey, nonce: u64) -> Tx {
    let coordinator = validator_key();
    let core = ReceiptCore {
        receipt_id: Hash::of(b"receipt-1"),
        job_id: 1,
        client: addr(&alice()),
        miner: addr(miner),
        coordinator: addr(&coordinator),
        compute_units: 10,
        price: 5,
        output_hash: Hash::of(b"output"),
        client_payment_tx: Hash::of(b"payment"),
    };
    let receipt = Receipt::sign(CHAIN_ID, core, miner, &coordinator);
    Tx::signed(
        CHAIN_ID,
        TxKind::ReceiptClaim {
            receipt: Box::new(receipt),
        },
        miner,
        nonce,
        FEE,
    )
}

struct Chain {
    blocks: BTreeMap<u64, BlockInfo>,
    heights: BTreeMap<Hash, u64>,
    commits: BTreeMap<u64, CommitCertificate>,
    /// Committed txs: hash → (height, index).
    txs: BTreeMap<Hash, (u64, u32)>,
    accounts: BTreeMap<Address, Account>,
    mempool: Vec<Tx>,
    supply: u64,
}

/// The test double. Build with [`TestNode::new`].
pub struct TestNode {
    genesis: Genesis,
    chain: Mutex<Chain>,
    pub events: broadcast::Sender<NodeEvent>,
    registry: Registry,
    /// `false` makes `health` fail (a closed store).
    pub healthy: AtomicBool,
    /// `true` makes `getSupply` fail with an internal error.
    pub broken_supply: AtomicBool,
    pub added_peers: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl TestNode {
    /// A chain of one validator, alice and the faucet funded, and one committed block past
    /// genesis holding a transfer alice → bob (so getTx/getBlock/getCommit have something).
    /// `faucet: false` gives a genesis without a faucet account.
    pub fn new(faucet: bool) -> (Arc<TestNode>, RpcMetrics) {
        let v = validator_key();
        let mut genesis = Genesis::dev(
            CHAIN_ID,
            &[&v],
            &[
                (addr(&alice()), 1_000 * AIT),
                (addr(&faucet_key()), 1_000 * AIT),
            ],
        );
        if faucet {
            genesis.faucet = Some(addr(&faucet_key()));
        }
        let mut registry = Registry::default();
        let metrics = RpcMetrics::register(&mut registry);
        let mut accounts = BTreeMap::new();
        for a in &genesis.accounts {
            accounts.insert(
                a.address,
                Account {
                    balance: a.balance,
                    ..Account::default()
                },
            );
        }
        let supply = genesis.accounts.iter().map(|a| a.balance).sum::<u64>()
            + genesis.validators.iter().map(|v| v.stake).sum::<u64>();
        let header = genesis.header(Hash::ZERO);
        let hash = header.hash();
        let mut chain = Chain {
            blocks: BTreeMap::new(),
            heights: BTreeMap::new(),
            commits: BTreeMap::new(),
            txs: BTreeMap::new(),
            accounts,
            mempool: Vec::new(),
            supply,
        };
        chain.blocks.insert(
            0,
            BlockInfo {
                hash,
                block: Arc::new(Block {
                    header,
                    txs: vec![],
                    last_commit: None,
                }),
                commit: None,
            },
        );
        chain.heights.insert(hash, 0);
        let (events, _) = broadcast::channel(64);
        let node = TestNode {
            genesis,
            chain: Mutex::new(chain),
            events,
            registry,
            healthy: AtomicBool::new(true),
            broken_supply: AtomicBool::new(false),
            added_peers: Mutex::new(Vec::new()),
        };
        let first = transfer(&alice(), addr(&bob()), 1_000, 1);
        if let Err(e) = node.admit(first) {
            panic!("setup transfer refused: {e}");
        }
        node.commit_block();
        (Arc::new(node), metrics)
    }

    fn admit(&self, tx: Tx) -> ApiResult<Hash> {
        let hash = tx.hash();
        if tx.chain_id != CHAIN_ID {
            return Err(ApiError::rejected("wrong_chain", "tx is for another chain"));
        }
        if tx.verify_signature(&hash).is_err() {
            return Err(ApiError::rejected(
                "bad_signature",
                "signature does not verify",
            ));
        }
        let p = &self.genesis.params;
        if tx.fee < tx.min_fee(p.base_fee, p.fee_per_byte) {
            return Err(ApiError::rejected("fee_too_low", "fee below the floor"));
        }
        let mut c = lock(&self.chain);
        if c.txs.contains_key(&hash) || c.mempool.iter().any(|t| t.hash() == hash) {
            return Err(ApiError::rejected("duplicate", "tx already known"));
        }
        let sender = tx.sender();
        let acct = c.accounts.get(&sender).copied().unwrap_or_default();
        let pending: Vec<&Tx> = c.mempool.iter().filter(|t| t.sender() == sender).collect();
        let expected = acct.nonce + 1 + pending.len() as u64;
        if tx.nonce != expected {
            return Err(ApiError::rejected(
                "bad_nonce",
                format!("nonce {} but the next is {expected}", tx.nonce),
            ));
        }
        let reserved: u64 = pending.iter().map(|t| t.max_spend()).sum();
        if acct.balance < reserved.saturating_add(tx.max_spend()) {
            return Err(ApiError::rejected("insufficient_funds", "balance too low"));
        }
        c.mempool.push(tx);
        drop(c);
        let _ = self.events.send(NodeEvent::NewTransaction { hash });
        Ok(hash)
    }

    /// Commits the mempool as the next block, with a certificate from the one validator.
    pub fn commit_block(&self) -> u64 {
        let v = validator_key();
        let mut c = lock(&self.chain);
        let (parent_height, parent) = match c.blocks.iter().next_back() {
            Some((h, b)) => (*h, b.clone()),
            None => return 0,
        };
        let height = parent_height + 1;
        let txs: Vec<HashedTx> = std::mem::take(&mut c.mempool)
            .into_iter()
            .map(HashedTx::new)
            .collect();
        for (i, t) in txs.iter().enumerate() {
            let sender = t.tx.sender();
            let mut a = c.accounts.get(&sender).copied().unwrap_or_default();
            a.balance -= t.tx.max_spend();
            a.nonce = t.tx.nonce;
            c.accounts.insert(sender, a);
            if let TxKind::Transfer { to, amount } = t.tx.kind {
                c.accounts.entry(to).or_default().balance += amount;
            }
            c.txs.insert(t.hash, (height, i as u32));
        }
        let header = Header {
            height,
            timestamp_ms: parent.block.header.timestamp_ms + 1_000,
            parent_hash: parent.hash,
            proposer: addr(&v),
            tx_root: block::tx_root(&txs),
            last_commit_hash: block::last_commit_hash(parent.commit.as_ref()),
            ..parent.block.header.clone()
        };
        let hash = header.hash();
        let mut cert = CommitCertificate {
            height,
            view: 0,
            block_hash: hash,
            signatures: vec![],
        };
        let sig = cert.vote_for(v.public()).sign(CHAIN_ID, &v).sig;
        cert.signatures.push(CommitSig {
            validator: v.public(),
            sig,
        });
        let tx_count = txs.len() as u32;
        let info = BlockInfo {
            hash,
            block: Arc::new(Block {
                header: header.clone(),
                txs,
                last_commit: parent.commit.clone(),
            }),
            commit: Some(cert.clone()),
        };
        c.blocks.insert(height, info);
        c.heights.insert(hash, height);
        c.commits.insert(height, cert);
        drop(c);
        let _ = self.events.send(NodeEvent::NewBlock(HeaderInfo {
            hash,
            header,
            tx_count: Some(tx_count),
        }));
        height
    }

    pub fn head_height(&self) -> u64 {
        lock(&self.chain)
            .blocks
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0)
    }

    /// Hashes of the txs in the block at `height`.
    pub fn get_block_txs(&self, height: u64) -> Vec<Hash> {
        lock(&self.chain)
            .blocks
            .get(&height)
            .map(|b| b.block.txs.iter().map(|t| t.hash).collect())
            .unwrap_or_default()
    }

    pub fn mempool_len(&self) -> usize {
        lock(&self.chain).mempool.len()
    }

    pub fn account(&self, a: &Address) -> Account {
        lock(&self.chain)
            .accounts
            .get(a)
            .copied()
            .unwrap_or_default()
    }

    fn header_info(b: &BlockInfo) -> HeaderInfo {
        HeaderInfo {
            hash: b.hash,
            header: b.block.header.clone(),
            tx_count: Some(b.block.txs.len() as u32),
        }
    }
}

impl NodeApi for TestNode {
    async fn send_tx(&self, tx: Tx, wait: Wait) -> ApiResult<TxSubmitted> {
        let hash = self.admit(tx)?;
        Ok(match wait {
            Wait::None => TxSubmitted {
                hash,
                status: TxStatus::Submitted,
                height: None,
            },
            Wait::Mempool => TxSubmitted {
                hash,
                status: TxStatus::Pending,
                height: None,
            },
            Wait::Commit => TxSubmitted {
                hash,
                status: TxStatus::Committed,
                height: Some(self.commit_block()),
            },
        })
    }

    fn get_tx(&self, hash: Hash) -> ApiResult<Option<TxInfo>> {
        let c = lock(&self.chain);
        if let Some(&(height, index)) = c.txs.get(&hash) {
            let Some(b) = c.blocks.get(&height) else {
                return Err(ApiError::internal("block of a known tx is missing"));
            };
            let Some(t) = b.block.txs.get(index as usize) else {
                return Err(ApiError::internal("tx index out of range"));
            };
            return Ok(Some(TxInfo {
                hash,
                tx: t.tx.clone(),
                status: TxStatus::Committed,
                height: Some(height),
                index: Some(index),
                block_hash: Some(b.hash),
            }));
        }
        Ok(c.mempool.iter().find(|t| t.hash() == hash).map(|t| TxInfo {
            hash,
            tx: t.clone(),
            status: TxStatus::Pending,
            height: None,
            index: None,
            block_hash: None,
        }))
    }

    fn get_block(&self, at: BlockRef) -> ApiResult<Option<BlockInfo>> {
        let c = lock(&self.chain);
        let height = match at {
            BlockRef::Height(h) => Some(h),
            BlockRef::Hash(h) => c.heights.get(&h).copied(),
        };
        Ok(height.and_then(|h| c.blocks.get(&h).cloned()))
    }

    fn get_header(&self, height: Option<u64>) -> ApiResult<Option<HeaderInfo>> {
        let c = lock(&self.chain);
        let b = match height {
            Some(h) => c.blocks.get(&h),
            None => c.blocks.values().next_back(),
        };
        Ok(b.map(TestNode::header_info))
    }

    fn get_commit(&self, height: u64) -> ApiResult<Option<CommitCertificate>> {
        Ok(lock(&self.chain).commits.get(&height).cloned())
    }

    async fn get_account(&self, address: Address) -> ApiResult<AccountInfo> {
        let a = self.account(&address);
        Ok(AccountInfo {
            balance: a.balance,
            nonce: a.nonce,
            stake: a.stake,
            height: self.head_height(),
        })
    }

    fn get_account_proof(&self, address: Address) -> ApiResult<AccountProofInfo> {
        let a = self.account(&address);
        let c = lock(&self.chain);
        let Some(head) = c.blocks.values().next_back() else {
            return Err(ApiError::internal("no head"));
        };
        // Not a real proof: the double keeps no commitment. Shape only.
        Ok(AccountProofInfo {
            address,
            height: head.block.header.height,
            state_root: head.block.header.state_root,
            proof: StateProof {
                key: keys::account(&address),
                value: (!a.is_empty()).then(|| aitbc_chain::codec::encode(&a)),
                bucket: 0,
                pairs: vec![],
                siblings: vec![],
            },
        })
    }

    fn estimate_fee(&self, bytes: u64) -> ApiResult<FeeEstimate> {
        let p = &self.genesis.params;
        Ok(FeeEstimate {
            fee: p.min_fee(bytes),
            bytes,
            base_fee: p.base_fee,
            fee_per_byte: p.fee_per_byte,
        })
    }

    fn validators(&self) -> ApiResult<Vec<ValidatorInfo>> {
        Ok(self
            .genesis
            .validator_set()
            .validators()
            .iter()
            .map(|v| ValidatorInfo {
                address: v.address,
                pubkey: v.pubkey,
                power: v.power,
                last_signed_height: Some(self.head_height()),
                missed_blocks: 0,
            })
            .collect())
    }

    async fn peers(&self) -> ApiResult<Vec<PeerSummary>> {
        Ok(vec![PeerSummary {
            peer_id: "12D3KooWTestPeer".into(),
            addresses: vec!["/ip4/127.0.0.1/tcp/7070".into()],
            connected: true,
        }])
    }

    fn mempool(&self, limit: usize) -> ApiResult<MempoolInfo> {
        let c = lock(&self.chain);
        Ok(MempoolInfo {
            count: c.mempool.len() as u64,
            bytes: c.mempool.iter().map(|t| t.encoded_len() as u64).sum(),
            txs: c.mempool.iter().take(limit).cloned().collect(),
        })
    }

    fn supply(&self) -> ApiResult<SupplyInfo> {
        if self.broken_supply.load(Ordering::SeqCst) {
            return Err(ApiError::internal("supply record unreadable"));
        }
        let supply = lock(&self.chain).supply;
        Ok(SupplyInfo {
            supply,
            height: self.head_height(),
        })
    }

    fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    fn consensus_state(&self) -> ApiResult<ConsensusInfo> {
        Ok(ConsensusInfo {
            height: self.head_height() + 1,
            view: 0,
            phase: "propose".into(),
            votes_seen: 0,
            proposer: Some(addr(&validator_key())),
            validator: Some(addr(&validator_key())),
        })
    }

    fn status(&self) -> ApiResult<NodeStatus> {
        let c = lock(&self.chain);
        let Some(head) = c.blocks.values().next_back() else {
            return Err(ApiError::internal("no head"));
        };
        Ok(NodeStatus {
            chain_id: CHAIN_ID.into(),
            genesis_hash: self.genesis.hash(),
            version: "test".into(),
            peer_id: "12D3KooWSelf".into(),
            validator: Some(addr(&validator_key())),
            head_height: head.block.header.height,
            head_hash: head.hash,
            head_time_ms: head.block.header.timestamp_ms,
            peers: 1,
            syncing: false,
        })
    }

    fn sync_status(&self) -> ApiResult<SyncInfo> {
        Ok(SyncInfo {
            syncing: false,
            head_height: self.head_height(),
            best_peer_height: Some(self.head_height()),
            lag: 0,
        })
    }

    fn health(&self) -> ApiResult<()> {
        if self.healthy.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(ApiError::unavailable("store_closed", "the store is closed"))
        }
    }

    fn metrics_text(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            return String::new();
        }
        text
    }

    fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    async fn admin_mint_faucet(&self, to: Address, amount: u64) -> ApiResult<TxSubmitted> {
        let key = faucet_key();
        let nonce = self.account(&addr(&key)).nonce
            + 1
            + lock(&self.chain)
                .mempool
                .iter()
                .filter(|t| t.sender() == addr(&key))
                .count() as u64;
        self.send_tx(transfer(&key, to, amount, nonce), Wait::Mempool)
            .await
    }

    async fn admin_add_peer(&self, multiaddr: String) -> ApiResult<()> {
        if !multiaddr.starts_with('/') {
            return Err(ApiError::invalid_params(format!(
                "{multiaddr:?} is not a multiaddr"
            )));
        }
        lock(&self.added_peers).push(multiaddr);
        Ok(())
    }

    async fn admin_param_set(&self, key: String, value: u64) -> ApiResult<TxSubmitted> {
        let authority = validator_key();
        let nonce = self.account(&addr(&authority)).nonce + 1;
        let tx = Tx::signed(
            CHAIN_ID,
            TxKind::ParamUpdate { key, value },
            &authority,
            nonce,
            FEE,
        );
        // The validator holds no balance in this genesis, so only the shape is checked here.
        Ok(TxSubmitted {
            hash: tx.hash(),
            status: TxStatus::Submitted,
            height: None,
        })
    }
}

/// Default test config: admin token set, generous rate limit.
pub fn config() -> RpcConfig {
    RpcConfig {
        admin_token: Some(ADMIN_TOKEN.into()),
        rate_per_ip: 10_000,
        rate_burst: 10_000,
        ..RpcConfig::default()
    }
}

pub const CLIENT: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1)),
    40_000,
);

/// The router as a test calls it (with a fixed client address for the rate limit).
pub fn app(node: &Arc<TestNode>, metrics: &RpcMetrics, config: &RpcConfig) -> Router {
    router(Arc::clone(node), config, metrics.clone()).layer(MockConnectInfo(CLIENT))
}

/// A test node with its router under [`config`].
pub fn setup() -> (Arc<TestNode>, Router) {
    let (node, metrics) = TestNode::new(true);
    let app = app(&node, &metrics, &config());
    (node, app)
}

pub struct Answer {
    pub status: StatusCode,
    pub content_type: Option<String>,
    pub text: String,
}

impl Answer {
    /// The body as JSON (`Null` when empty).
    pub fn json(&self) -> Value {
        if self.text.is_empty() {
            return Value::Null;
        }
        match serde_json::from_str(&self.text) {
            Ok(v) => v,
            Err(e) => panic!("not JSON ({e}): {}", self.text),
        }
    }
}

pub async fn send(app: &Router, request: Request<Body>) -> Answer {
    let response = match app.clone().oneshot(request).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = axum::body::to_bytes(response.into_body(), 64 << 20)
        .await
        .expect("body");
    Answer {
        status,
        content_type,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

pub async fn post_raw(app: &Router, path: &str, body: impl Into<Body>) -> Answer {
    let request = Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .expect("request");
    send(app, request).await
}

pub async fn post_json(app: &Router, path: &str, body: &Value) -> Answer {
    post_raw(app, path, body.to_string()).await
}

pub async fn get(app: &Router, path: &str) -> Answer {
    let request = Request::get(path).body(Body::empty()).expect("request");
    send(app, request).await
}

/// One JSON-RPC call at `POST /`; returns the whole response object.
pub async fn rpc(app: &Router, method: &str, params: Value) -> Value {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let answer = post_json(app, "/", &body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    answer.json()
}

/// The `result` of a successful call (panics with the error otherwise).
pub async fn rpc_ok(app: &Router, method: &str, params: Value) -> Value {
    let v = rpc(app, method, params).await;
    match v.get("result") {
        Some(r) => r.clone(),
        None => panic!("{method} failed: {v}"),
    }
}

/// The `error` of a failed call (panics if it succeeded).
pub async fn rpc_err(app: &Router, method: &str, params: Value) -> Value {
    let v = rpc(app, method, params).await;
    match v.get("error") {
        Some(e) => e.clone(),
        None => panic!("{method} succeeded: {v}"),
    }
}
