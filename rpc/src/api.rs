//! What the RPC asks of the node. The node implements [`NodeApi`]; tests implement it over a
//! small in-memory chain. Every type here is what a method returns, serialised as JSON as is
//! (hashes, keys and signatures as `0x` hex, addresses as `ait1…`).

use aitbc_chain::block::{Block, CommitCertificate, Header};
use aitbc_chain::genesis::Genesis;
use aitbc_chain::state::proof::StateProof;
use aitbc_chain::{Address, Hash, PublicKey, Tx};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::Arc;

/// How long `sendTx` waits before it answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Wait {
    /// Answer with the hash at once, before admission is known.
    None,
    /// Answer after the mempool admitted (or rejected) the tx.
    #[default]
    Mempool,
    /// Answer once the block holding the tx is committed, with its height.
    Commit,
}

/// A block by height or by hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockRef {
    Height(u64),
    Hash(Hash),
}

/// Answer to `sendTx` / `sendRawTx` / `submitReceipt`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxSubmitted {
    pub hash: Hash,
    /// `"submitted"` (wait none), `"pending"` (in the mempool) or `"committed"`.
    pub status: TxStatus,
    /// The committing block's height, with `wait: commit`.
    pub height: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TxStatus {
    Submitted,
    Pending,
    Committed,
}

/// Answer to `getTx`: a committed tx with its place, or a pending one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxInfo {
    pub hash: Hash,
    pub tx: Tx,
    pub status: TxStatus,
    /// Set for committed txs.
    pub height: Option<u64>,
    pub index: Option<u32>,
    pub block_hash: Option<Hash>,
}

/// Answer to `getBlock`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockInfo {
    pub hash: Hash,
    /// Shared with the node's store: the store keeps its newest blocks, the ones clients ask
    /// for most, and an answer need not copy one.
    pub block: Arc<Block>,
    /// The certificate that committed this block (absent for genesis).
    pub commit: Option<CommitCertificate>,
}

/// Answer to `getBlock` with `"txs": "hashes"`: the block with its txs as hashes, in block
/// order. What a client following the chain for its own txs needs (as Ethereum's
/// `eth_getBlockByNumber(n, false)`), at about a seventh of the full answer's JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockHashesInfo {
    pub hash: Hash,
    pub header: Header,
    pub tx_hashes: Vec<Hash>,
    pub commit: Option<CommitCertificate>,
}

impl From<BlockInfo> for BlockHashesInfo {
    fn from(info: BlockInfo) -> BlockHashesInfo {
        BlockHashesInfo {
            hash: info.hash,
            tx_hashes: info.block.txs.iter().map(|tx| tx.hash).collect(),
            header: info.block.header.clone(),
            commit: info.commit,
        }
    }
}

/// Answer to `getHead` / `getHeader`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderInfo {
    pub hash: Hash,
    pub header: Header,
    /// Txs in the block; absent on a light peer, which keeps headers only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_count: Option<u32>,
}

/// Answer to `getBalance`: the account at the committed head (zeroes for an unknown one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountInfo {
    pub balance: u64,
    pub nonce: u64,
    pub stake: u64,
    /// The head height the answer was read at.
    pub height: u64,
}

/// Answer to `getAccountProof`: verify `proof` against `state_root`, the state root of the
/// header at `height`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountProofInfo {
    pub address: Address,
    pub height: u64,
    pub state_root: Hash,
    pub proof: StateProof,
}

/// Answer to `estimateFee`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeEstimate {
    /// The minimum fee a tx of `bytes` encoded bytes must pay (`base_fee + fee_per_byte × bytes`).
    pub fee: u64,
    pub bytes: u64,
    pub base_fee: u64,
    pub fee_per_byte: u64,
}

/// One entry of `getValidators`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorInfo {
    pub address: Address,
    pub pubkey: PublicKey,
    pub power: u64,
    /// The last height whose commit certificate this node saw carry the validator's signature.
    pub last_signed_height: Option<u64>,
    /// Heights committed since this node started whose certificate lacks its signature.
    pub missed_blocks: u64,
}

/// One entry of `getPeers` / `GET /p2p/peers`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerSummary {
    pub peer_id: String,
    pub addresses: Vec<String>,
    pub connected: bool,
}

/// Answer to `getMempool`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MempoolInfo {
    pub count: u64,
    pub bytes: u64,
    /// At most the `limit` asked for, highest priority first.
    pub txs: Vec<Tx>,
}

/// Answer to `getSupply`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupplyInfo {
    pub supply: u64,
    pub height: u64,
}

/// Answer to `consensusState`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsensusInfo {
    pub height: u64,
    pub view: u64,
    /// `"propose"`, `"prepare"`, `"commit"`, `"decided"`, or `"follower"` on a node that
    /// does not validate.
    pub phase: String,
    pub votes_seen: u64,
    pub proposer: Option<Address>,
    pub validator: Option<Address>,
}

/// Answer to `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub chain_id: String,
    pub genesis_hash: Hash,
    pub version: String,
    pub peer_id: String,
    /// This node's validator address, if it has a validator key.
    pub validator: Option<Address>,
    pub head_height: u64,
    pub head_hash: Hash,
    pub head_time_ms: u64,
    pub peers: u64,
    pub syncing: bool,
}

/// Answer to `syncStatus` and `GET /sync_status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncInfo {
    pub syncing: bool,
    pub head_height: u64,
    /// The highest head a peer reported, if any peer did.
    pub best_peer_height: Option<u64>,
    /// Blocks behind the best peer (0 when level or ahead).
    pub lag: u64,
}

/// What WebSocket subscribers are sent, by subscription.
// A few hundred bytes per event, one event per block or admitted tx: boxing the header would
// cost an allocation per event for no measurable saving.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum NodeEvent {
    /// `newBlocks`: a committed block.
    NewBlock(HeaderInfo),
    /// `newTransactions`: a tx admitted to this node's mempool.
    NewTransaction { hash: Hash },
    /// `consensusEvents`: a height decided or a view changed.
    Consensus(ConsensusEvent),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum ConsensusEvent {
    Decided { height: u64, view: u64, hash: Hash },
    ViewChange { height: u64, view: u64 },
}

impl NodeEvent {
    /// The subscription (`subscribe` parameter) this event belongs to.
    pub fn topic(&self) -> &'static str {
        match self {
            NodeEvent::NewBlock(_) => "newBlocks",
            NodeEvent::NewTransaction { .. } => "newTransactions",
            NodeEvent::Consensus(_) => "consensusEvents",
        }
    }
}

/// A failed call, as the node reports it. The server turns it into a JSON-RPC error: the
/// `code` as is, and `reason` as `data.reason`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: i64,
    pub message: String,
    pub reason: Option<String>,
}

impl ApiError {
    /// JSON-RPC "invalid params" (-32602).
    pub fn invalid_params(message: impl Into<String>) -> ApiError {
        ApiError {
            code: -32602,
            message: message.into(),
            reason: None,
        }
    }

    /// JSON-RPC "internal error" (-32603): the node failed, not the request.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            code: -32603,
            message: message.into(),
            reason: None,
        }
    }

    /// A rejected transaction (-32000) with its named reason (`bad_signature`, `bad_nonce`,
    /// `insufficient_funds`, `fee_too_low`, `mempool_full`, `duplicate`, …).
    pub fn rejected(reason: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError {
            code: -32000,
            message: message.into(),
            reason: Some(reason.into()),
        }
    }

    /// Nothing found for the key asked about (-32001, reason `not_found`).
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            code: -32001,
            message: message.into(),
            reason: Some("not_found".into()),
        }
    }

    /// The node cannot answer this now or in its mode (-32002), e.g. a light peer asked for a
    /// block, or a wait cut short by shutdown.
    pub fn unavailable(reason: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError {
            code: -32002,
            message: message.into(),
            reason: Some(reason.into()),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The node as the RPC sees it. Reads answer from committed state (and the mempool); calls
/// that wait (a tx until its commit, the peer list from the network task) are async.
///
/// Implementations must be cheap to call concurrently: the server calls them from many
/// connections at once and holds no lock of its own.
pub trait NodeApi: Send + Sync + 'static {
    /// Checks and admits `tx` to the mempool (which gossips it), then waits as `wait` says.
    fn send_tx(&self, tx: Tx, wait: Wait) -> impl Future<Output = ApiResult<TxSubmitted>> + Send;

    fn get_tx(&self, hash: Hash) -> ApiResult<Option<TxInfo>>;
    fn get_block(&self, at: BlockRef) -> ApiResult<Option<BlockInfo>>;
    /// `None` = the committed head.
    fn get_header(&self, height: Option<u64>) -> ApiResult<Option<HeaderInfo>>;
    fn get_commit(&self, height: u64) -> ApiResult<Option<CommitCertificate>>;
    /// Async because a light peer fetches the account with a proof from a full node.
    fn get_account(&self, address: Address) -> impl Future<Output = ApiResult<AccountInfo>> + Send;
    /// A proof of the account against the head's state root.
    fn get_account_proof(&self, address: Address) -> ApiResult<AccountProofInfo>;
    /// The minimum fee for a tx of `bytes` encoded bytes under the current parameters.
    fn estimate_fee(&self, bytes: u64) -> ApiResult<FeeEstimate>;
    fn validators(&self) -> ApiResult<Vec<ValidatorInfo>>;
    fn peers(&self) -> impl Future<Output = ApiResult<Vec<PeerSummary>>> + Send;
    fn mempool(&self, limit: usize) -> ApiResult<MempoolInfo>;
    fn supply(&self) -> ApiResult<SupplyInfo>;
    fn genesis(&self) -> &Genesis;
    fn consensus_state(&self) -> ApiResult<ConsensusInfo>;
    fn status(&self) -> ApiResult<NodeStatus>;
    fn sync_status(&self) -> ApiResult<SyncInfo>;
    /// `Ok` when the process can serve: its store is open and usable.
    fn health(&self) -> ApiResult<()>;
    /// The node's metrics in OpenMetrics text (the server's own metrics are registered into
    /// the same registry by the node, see the server's constructor).
    fn metrics_text(&self) -> String;
    /// Events for WebSocket subscribers. A subscriber that falls behind loses the oldest
    /// events (and is told so), never blocks the node.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<NodeEvent>;

    /// Admin: a transfer of `amount` from the genesis faucet account to `to`, signed with the
    /// faucet key the node was configured with.
    fn admin_mint_faucet(
        &self,
        to: Address,
        amount: u64,
    ) -> impl Future<Output = ApiResult<TxSubmitted>> + Send;
    /// Admin: dial a peer (`/ip4/…/tcp/…/p2p/<id>`).
    fn admin_add_peer(&self, multiaddr: String) -> impl Future<Output = ApiResult<()>> + Send;
    /// Admin: a `ParamUpdate` tx signed with the authority key the node was configured with.
    fn admin_param_set(
        &self,
        key: String,
        value: u64,
    ) -> impl Future<Output = ApiResult<TxSubmitted>> + Send;
}
