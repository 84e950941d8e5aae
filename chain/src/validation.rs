//! Whether a block may follow the committed head, and how a proposer builds one that does.
//!
//! Proposals (before any vote) and synced blocks (with their certificate) pass the same checks:
//! every header field is re-derived from the parent, the validator set and the block's own
//! execution, so a node never stores a block it could not have built itself. The execution
//! result is kept ([`Validated`]) so the block is executed once even though it is checked
//! before the vote and committed after it.

use crate::address::Address;
use crate::block::{self, Block, CertificateError, CommitCertificate, Header};
use crate::codec;
use crate::consensus::proposer::ProposerSchedule;
use crate::execution::{self, BlockEnv, BlockError, BlockOutcome, Executor, TxError};
use crate::hash::Hash;
use crate::state::StateError;
use crate::store::{ChainStore, KvStore, PreparedState, StoreError};
use crate::tx::HashedTx;
use crate::validator_set::ValidatorSet;

/// A block that passed every check, with what committing it needs.
#[derive(Debug)]
pub struct Validated {
    pub hash: Hash,
    pub outcome: BlockOutcome,
    pub prepared: PreparedState,
}

/// Why a block cannot follow the head. [`InvalidBlock::Local`] is this node's failure (its
/// store), not the block's: the caller must not blame the sender for it.
#[derive(Debug, thiserror::Error)]
pub enum InvalidBlock {
    #[error("block is for chain {got}, expected {expected}")]
    WrongChain { expected: String, got: String },
    #[error("block height {got}, expected {expected}")]
    WrongHeight { expected: u64, got: u64 },
    #[error("parent hash {got}, expected the head {expected}")]
    WrongParent { expected: Hash, got: Hash },
    #[error("timestamp {got} ms is not after the parent's {parent} ms")]
    Timestamp { parent: u64, got: u64 },
    #[error("proposer {got} is not the proposer of view {view}, {expected}")]
    WrongProposer {
        view: u64,
        expected: Address,
        got: Address,
    },
    #[error("validators_hash {got}, expected {expected}")]
    WrongValidators { expected: Hash, got: Hash },
    #[error("last_commit is missing")]
    LastCommitMissing,
    #[error("the first block after genesis carries a last_commit")]
    LastCommitUnexpected,
    #[error("last_commit: {0}")]
    LastCommit(#[from] CertificateError),
    #[error("{field} {got}, computed {computed}")]
    Mismatch {
        field: &'static str,
        got: Hash,
        computed: Hash,
    },
    #[error("{count} txs, more than max_block_txs {max}")]
    TooManyTxs { count: usize, max: u64 },
    #[error("{bytes} bytes, more than max_block_bytes {max}")]
    TooLarge { bytes: usize, max: u64 },
    #[error("tx {index} ({hash}): {error}")]
    Tx {
        index: usize,
        hash: Hash,
        error: TxError,
    },
    #[error("this node cannot check the block: {0}")]
    Local(String),
}

impl From<StoreError> for InvalidBlock {
    fn from(e: StoreError) -> Self {
        InvalidBlock::Local(e.to_string())
    }
}

impl From<StateError> for InvalidBlock {
    fn from(e: StateError) -> Self {
        InvalidBlock::Local(e.to_string())
    }
}

impl InvalidBlock {
    /// True when the block itself is at fault (its sender can be penalised).
    pub fn is_invalid(&self) -> bool {
        !matches!(self, InvalidBlock::Local(_))
    }
}

/// The proposer of (`height`, `view`) under `set`.
pub fn proposer_of(set: &ValidatorSet, height: u64, view: u64) -> Option<Address> {
    let i = ProposerSchedule::new(set).proposer(height, view)?;
    set.validators().get(i).map(|v| v.address)
}

fn voting_set<K: KvStore>(
    store: &ChainStore<K>,
    height: u64,
) -> Result<std::sync::Arc<ValidatorSet>, InvalidBlock> {
    store
        .voting_set(height)
        .ok_or_else(|| InvalidBlock::Local(format!("no validator set for height {height}")))
}

fn check(field: &'static str, got: Hash, computed: Hash) -> Result<(), InvalidBlock> {
    if got == computed {
        Ok(())
    } else {
        Err(InvalidBlock::Mismatch {
            field,
            got,
            computed,
        })
    }
}

/// Checks that `block` may follow `store`'s head, executing it. `verified` vouches for txs
/// whose signatures this node already checked (see [`execution::execute_block`]).
pub fn validate_block<K: KvStore>(
    store: &ChainStore<K>,
    block: &Block,
    verified: impl Fn(&HashedTx) -> bool,
) -> Result<Validated, InvalidBlock> {
    let head = store.head();
    let h = &block.header;
    if h.chain_id != head.chain_id {
        return Err(InvalidBlock::WrongChain {
            expected: head.chain_id.clone(),
            got: h.chain_id.clone(),
        });
    }
    if h.height != head.height + 1 {
        return Err(InvalidBlock::WrongHeight {
            expected: head.height + 1,
            got: h.height,
        });
    }
    if h.parent_hash != store.head_hash() {
        return Err(InvalidBlock::WrongParent {
            expected: store.head_hash(),
            got: h.parent_hash,
        });
    }
    if h.timestamp_ms <= head.timestamp_ms {
        return Err(InvalidBlock::Timestamp {
            parent: head.timestamp_ms,
            got: h.timestamp_ms,
        });
    }
    let set = voting_set(store, h.height)?;
    check("validators_hash", h.validators_hash, set.hash())?;
    match proposer_of(&set, h.height, h.view) {
        Some(expected) if expected == h.proposer => {}
        expected => {
            return Err(InvalidBlock::WrongProposer {
                view: h.view,
                expected: expected.unwrap_or(Address([0; 20])),
                got: h.proposer,
            })
        }
    }
    match (&block.last_commit, head.height) {
        (None, 0) => {}
        (Some(_), 0) => return Err(InvalidBlock::LastCommitUnexpected),
        (None, _) => return Err(InvalidBlock::LastCommitMissing),
        // The head's own certificate was checked when the head was committed (a sync run
        // commits each block with the next one's `last_commit`, so this is the usual case
        // there); any other is checked here.
        (Some(cert), _) if store.head_certificate() == Some(cert) => {}
        (Some(cert), parent) => {
            let parent_set = voting_set(store, parent)?;
            cert.verify(&h.chain_id, parent, &store.head_hash(), &parent_set)?;
        }
    }
    check(
        "last_commit_hash",
        h.last_commit_hash,
        block::last_commit_hash(block.last_commit.as_ref()),
    )?;
    check("tx_root", h.tx_root, block::tx_root(&block.txs))?;
    check(
        "evidence_hash",
        h.evidence_hash,
        block::evidence_hash(&block.txs),
    )?;

    let env = env_of(h);
    let params = Executor::new(store, env.clone())?.params().clone();
    if block.txs.len() as u64 > params.max_block_txs {
        return Err(InvalidBlock::TooManyTxs {
            count: block.txs.len(),
            max: params.max_block_txs,
        });
    }
    let bytes = codec::encoded_len(block);
    if bytes as u64 > params.max_block_bytes {
        return Err(InvalidBlock::TooLarge {
            bytes,
            max: params.max_block_bytes,
        });
    }
    let outcome =
        execution::execute_block(store, env, &block.txs, verified).map_err(|e| match e {
            BlockError::Tx { index, hash, error } => InvalidBlock::Tx { index, hash, error },
            BlockError::State(e) => InvalidBlock::from(e),
        })?;
    check(
        "next_validators_hash",
        h.next_validators_hash,
        outcome.next_validators.hash(),
    )?;
    let prepared = store.prepare(&outcome.changes)?;
    check("state_root", h.state_root, prepared.root())?;
    Ok(Validated {
        hash: h.hash(),
        outcome,
        prepared,
    })
}

fn env_of(h: &Header) -> BlockEnv {
    BlockEnv {
        chain_id: h.chain_id.clone(),
        height: h.height,
        proposer: h.proposer,
    }
}

/// A block a proposer built, already validated, and the candidates it left out because they
/// no longer apply (the mempool drops them).
#[derive(Debug)]
pub struct Proposal {
    pub block: Block,
    pub validated: Validated,
    pub rejected: Vec<(Hash, TxError)>,
}

/// Builds the block `proposer` proposes in `view` on `store`'s head from already-verified
/// `candidates` (in priority order). `last_commit` is the certificate of the head (none on
/// genesis); `now_ms` is the proposer's clock, raised if needed so the timestamp still follows
/// the parent's.
pub fn build_proposal<K: KvStore>(
    store: &ChainStore<K>,
    proposer: Address,
    view: u64,
    now_ms: u64,
    last_commit: Option<CommitCertificate>,
    candidates: impl IntoIterator<Item = HashedTx>,
) -> Result<Proposal, InvalidBlock> {
    let head = store.head();
    let height = head.height + 1;
    let set = voting_set(store, height)?;
    let mut header = Header {
        chain_id: head.chain_id.clone(),
        height,
        view,
        timestamp_ms: now_ms.max(head.timestamp_ms + 1),
        parent_hash: store.head_hash(),
        proposer,
        tx_root: Hash::ZERO,
        state_root: Hash::ZERO,
        validators_hash: set.hash(),
        next_validators_hash: Hash::ZERO,
        last_commit_hash: block::last_commit_hash(last_commit.as_ref()),
        evidence_hash: Hash::ZERO,
    };
    // Room for everything but the txs: the header, the certificate and the length prefixes.
    let reserved = codec::encoded_len(&Block {
        header: header.clone(),
        txs: Vec::new(),
        last_commit: last_commit.clone(),
    }) as u64;
    let built = execution::build_block(store, env_of(&header), candidates, reserved)?;
    let prepared = store.prepare(&built.outcome.changes)?;
    header.tx_root = block::tx_root(&built.txs);
    header.evidence_hash = block::evidence_hash(&built.txs);
    header.next_validators_hash = built.outcome.next_validators.hash();
    header.state_root = prepared.root();
    let hash = header.hash();
    Ok(Proposal {
        block: Block {
            header,
            txs: built.txs,
            last_commit,
        },
        validated: Validated {
            hash,
            outcome: built.outcome,
            prepared,
        },
        rejected: built.rejected,
    })
}

#[cfg(test)]
mod tests;
