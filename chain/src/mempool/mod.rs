//! The transaction pool (SPEC §3 "Mempool admission").
//!
//! The pool holds only txs whose every signature verified (the sender's, and a claimed receipt's
//! or an evidence tx's votes), so block validation on this node can skip the signature checks of
//! the txs it already holds ([`Mempool::is_verified`]). Gossip delivers txs in batches at 10,000
//! tx/s, so [`Mempool::admit_batch`] runs every cheap check first and verifies all surviving
//! signatures in one batch.
//!
//! Gaps in a sender's nonces are allowed in the pool (txs may arrive out of order), but block
//! building ([`Mempool::select`]) only takes each sender's contiguous run starting at
//! `account.nonce + 1`, and eviction only takes a sender's highest nonce, so it never opens a gap.
//!
//! Everything that decides an outcome is ordered: `BTreeMap`s, `BTreeSet`s and a `BinaryHeap`
//! over totally ordered keys. The `HashMap`s here are only looked up, never iterated, so two
//! nodes with the same pool select the same block.

mod keys;
#[cfg(test)]
mod tests;

use crate::account::Account;
use crate::address::Address;
use crate::crypto::{self, BatchItem, SigError, Signature, VerifyingKey};
use crate::hash::Hash;
use crate::params::Params;
use crate::state::{self, StateError, StateReader};
use crate::tx::HashedTx;
use keys::KeyCache;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};
use std::fmt;
use std::ops::Bound;

/// How far ahead of the account nonce a sender may queue txs (SPEC §3).
pub const MAX_PENDING_PER_SENDER: usize = 64;

/// Senders re-checked against state after each commit besides those the block touched, so txs
/// made stale by a block we did not see the txs of (or a balance drained by someone else's
/// receipt claim) do not sit in the pool forever. Round-robin, so every sender is reached.
const SWEEP_PER_COMMIT: usize = 128;

/// Bounds of the pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MempoolConfig {
    pub max_txs: usize,
    /// Sum of the txs' canonical lengths.
    pub max_bytes: usize,
    /// Most nonces a sender may have pending ahead of its account nonce.
    pub max_per_sender: usize,
    /// Decompressed public keys kept between admissions (0 disables the cache).
    pub key_cache: usize,
}

impl Default for MempoolConfig {
    /// A few blocks' worth of transfers at the 10,000 tx/s target, well inside the 256 MiB
    /// memory budget (a pooled transfer costs about 0.5 KiB with its indexes).
    fn default() -> Self {
        MempoolConfig {
            max_txs: 50_000,
            max_bytes: 16 << 20,
            max_per_sender: MAX_PENDING_PER_SENDER,
            key_cache: 16_384,
        }
    }
}

/// Which signature of a tx failed.
pub use crate::tx::SigPart;

/// Why a signature was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SigFault {
    #[error(transparent)]
    Sig(#[from] SigError),
    #[error("public key is not the key of the address it signs for")]
    KeyMismatch,
}

/// Why a tx was not admitted. [`MempoolError::reason`] is the stable code the RPC exposes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MempoolError {
    #[error("tx is {len} bytes, over the limit of {max}")]
    TooLarge { len: usize, max: u64 },
    #[error("tx is for chain {got:?}, this node runs {expected:?}")]
    WrongChain { expected: String, got: String },
    #[error("{part} signature: {fault}")]
    BadSignature { part: SigPart, fault: SigFault },
    #[error("nonce {nonce} is not above the account nonce {account_nonce}")]
    StaleNonce { nonce: u64, account_nonce: u64 },
    #[error("nonce {nonce} is more than {max_ahead} ahead of the account nonce {account_nonce}")]
    NonceGapTooLarge {
        nonce: u64,
        account_nonce: u64,
        max_ahead: u64,
    },
    #[error("fee {fee} is below the minimum {min}")]
    FeeTooLow { fee: u64, min: u64 },
    #[error("balance {balance} does not cover {needed} spent by the sender's pending txs")]
    InsufficientFunds { balance: u64, needed: u128 },
    #[error("tx is already in the mempool")]
    Duplicate,
    #[error("replacement fee {fee} does not exceed the pending tx's fee {pending_fee}")]
    ReplacementUnderpriced { fee: u64, pending_fee: u64 },
    #[error("mempool is full and the tx does not outbid the lowest-fee evictable tx")]
    MempoolFull,
    #[error("receipt {0} was already claimed")]
    DuplicateReceipt(Hash),
    #[error("client payment {0} already backs another receipt")]
    PaymentUsed(Hash),
    #[error("cannot read the sender's account: {0}")]
    State(String),
}

impl MempoolError {
    pub fn reason(&self) -> &'static str {
        match self {
            MempoolError::TooLarge { .. } => "too_large",
            MempoolError::WrongChain { .. } => "wrong_chain",
            MempoolError::BadSignature { .. } => "bad_signature",
            MempoolError::StaleNonce { .. } => "stale_nonce",
            MempoolError::NonceGapTooLarge { .. } => "nonce_gap_too_large",
            MempoolError::FeeTooLow { .. } => "fee_too_low",
            MempoolError::InsufficientFunds { .. } => "insufficient_funds",
            MempoolError::Duplicate => "duplicate",
            MempoolError::ReplacementUnderpriced { .. } => "replacement_underpriced",
            MempoolError::MempoolFull => "mempool_full",
            MempoolError::DuplicateReceipt(_) => "duplicate_receipt",
            MempoolError::PaymentUsed(_) => "payment_used",
            MempoolError::State(_) => "state_unavailable",
        }
    }

    /// True for the rejections that prove the relaying peer misbehaved (a forged signature, or
    /// another chain's tx on this chain's topic): gossip penalises it. Every other reason can
    /// happen to an honest peer (stale, already known, outbid, or judged under parameters a
    /// block has just changed), so those txs are only dropped.
    pub fn is_invalid(&self) -> bool {
        matches!(
            self,
            MempoolError::BadSignature { .. } | MempoolError::WrongChain { .. }
        )
    }
}

impl From<StateError> for MempoolError {
    fn from(e: StateError) -> Self {
        MempoolError::State(e.to_string())
    }
}

/// A successful admission. Txs that left the pool to make room are reported so the node can
/// tell subscribers (and stop relaying them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admitted {
    pub hash: Hash,
    /// The pending tx with the same sender and nonce that this one outbid.
    pub replaced: Option<Hash>,
    pub evicted: Vec<Hash>,
}

/// One sender's pending txs.
#[derive(Clone, Default)]
struct Queue {
    txs: BTreeMap<u64, HashedTx>,
    /// Σ `max_spend` of `txs`; u128 so 64 maximal spends cannot overflow.
    reserved: u128,
}

/// Eviction candidate: a sender's highest-nonce tx. Ordered lowest fee first, ties by hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Tail {
    fee: u64,
    hash: Hash,
    sender: Address,
    nonce: u64,
}

impl Tail {
    fn of(sender: Address, tx: &HashedTx) -> Tail {
        Tail {
            fee: tx.tx.fee,
            hash: tx.hash,
            sender,
            nonce: tx.tx.nonce,
        }
    }
}

/// What admitting a checked tx will do to the pool.
struct Plan {
    replaces: Option<Hash>,
    evict: Vec<Tail>,
}

/// A receipt claim whose receipt or payment committed state already shows used can never be
/// included: refuse it at the door, or it would sit in the pool (and hold up its sender's later
/// nonces) until a proposer's build drops it. Claims racing each other in the pool are left to
/// block building, which includes only the first.
fn check_claim(tx: &HashedTx, state: &(impl StateReader + ?Sized)) -> Result<(), MempoolError> {
    let crate::tx::TxKind::ReceiptClaim { receipt } = &tx.tx.kind else {
        return Ok(());
    };
    let c = &receipt.core;
    if state.get(&state::keys::receipt(&c.receipt_id))?.is_some() {
        return Err(MempoolError::DuplicateReceipt(c.receipt_id));
    }
    let payment: Option<crate::execution::Payment> =
        state::read(state, &state::keys::payment(&c.client_payment_tx))?;
    if payment.is_some_and(|p| p.used_by.is_some()) {
        return Err(MempoolError::PaymentUsed(c.client_payment_tx));
    }
    Ok(())
}

/// A signature to check, with the part of the tx it belongs to for error reports.
struct SigCheck {
    key: VerifyingKey,
    digest: Hash,
    sig: Signature,
    part: SigPart,
}

#[derive(Clone)]
pub struct Mempool {
    chain_id: String,
    config: MempoolConfig,
    senders: BTreeMap<Address, Queue>,
    /// tx hash → (sender, nonce, arrival order).
    index: HashMap<Hash, (Address, u64, u64)>,
    /// Arrival order of the next admitted tx.
    next_arrival: u64,
    tails: BTreeSet<Tail>,
    bytes: usize,
    keys: KeyCache,
    /// Last sender visited by the post-commit sweep.
    sweep_cursor: Option<Address>,
}

impl fmt::Debug for Mempool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mempool")
            .field("chain_id", &self.chain_id)
            .field("txs", &self.index.len())
            .field("bytes", &self.bytes)
            .field("senders", &self.senders.len())
            .finish()
    }
}

/// Checks each signature alone, reporting the first that fails.
fn verify_each(checks: &[SigCheck]) -> Result<(), MempoolError> {
    for c in checks {
        crypto::verify(&c.key, &c.digest, &c.sig).map_err(|e| MempoolError::BadSignature {
            part: c.part,
            fault: e.into(),
        })?;
    }
    Ok(())
}

fn batch_items(checks: &[SigCheck]) -> Vec<BatchItem<'_>> {
    checks
        .iter()
        .map(|c| BatchItem {
            key: &c.key,
            digest: &c.digest,
            sig: &c.sig,
        })
        .collect()
}

/// Verifies `checks` as one batch, and singly only to name the culprit when the batch fails.
fn verify_all(checks: &[SigCheck]) -> Result<(), MempoolError> {
    match crypto::verify_batch(&batch_items(checks)) {
        Ok(()) => Ok(()),
        Err(_) => verify_each(checks),
    }
}

impl Mempool {
    pub fn new(chain_id: impl Into<String>, config: MempoolConfig) -> Mempool {
        let keys = KeyCache::new(config.key_cache);
        Mempool {
            chain_id: chain_id.into(),
            config,
            senders: BTreeMap::new(),
            index: HashMap::new(),
            next_arrival: 0,
            tails: BTreeSet::new(),
            bytes: 0,
            keys,
            sweep_cursor: None,
        }
    }

    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    pub fn config(&self) -> &MempoolConfig {
        &self.config
    }

    /// Number of pending txs.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Sum of the pending txs' canonical lengths.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn contains(&self, hash: &Hash) -> bool {
        self.index.contains_key(hash)
    }

    pub fn get(&self, hash: &Hash) -> Option<&HashedTx> {
        let (sender, nonce, _) = self.index.get(hash)?;
        self.senders.get(sender)?.txs.get(nonce)
    }

    /// Whether `tx` is, byte for byte, a tx this pool verified, so block validation may skip its
    /// signatures.
    ///
    /// Checking the hash alone is not enough: the tx hash excludes the sender's signature, so a
    /// proposer could ship a known tx with a garbage signature; nodes that hold the tx would
    /// accept the block and nodes that do not would reject it.
    pub fn is_verified(&self, tx: &HashedTx) -> bool {
        self.get(&tx.hash).is_some_and(|pooled| pooled.tx == tx.tx)
    }

    /// All pending txs, by sender address then nonce.
    pub fn iter(&self) -> impl Iterator<Item = &HashedTx> + '_ {
        self.senders.values().flat_map(|q| q.txs.values())
    }

    /// A sender's pending txs in nonce order.
    pub fn sender_txs(&self, sender: &Address) -> impl Iterator<Item = &HashedTx> + '_ {
        self.senders
            .get(sender)
            .into_iter()
            .flat_map(|q| q.txs.values())
    }

    /// The nonce a wallet should sign its next tx with: one past the end of the sender's
    /// contiguous pending run (a gap is where the wallet must fill in).
    pub fn pending_nonce(
        &self,
        state: &(impl StateReader + ?Sized),
        sender: &Address,
    ) -> Result<u64, StateError> {
        let mut next = state::account(state, sender)?.nonce.saturating_add(1);
        if let Some(q) = self.senders.get(sender) {
            for nonce in q.txs.range(next..).map(|(n, _)| *n) {
                if nonce != next {
                    break;
                }
                next = next.saturating_add(1);
            }
        }
        Ok(next)
    }

    /// Admits one tx: every check, then its signatures, then the pool change.
    pub fn admit(
        &mut self,
        tx: HashedTx,
        state: &(impl StateReader + ?Sized),
        params: &Params,
    ) -> Result<Admitted, MempoolError> {
        self.check_stateless(&tx, params)?;
        let sender = tx.sender;
        let account = state::account(state, &sender)?;
        check_claim(&tx, state)?;
        self.prune_stale(&sender, account.nonce);
        let plan = self.plan(&sender, &account, &tx)?;
        let mut checks = Vec::with_capacity(1);
        self.collect_sigs(&tx, &mut checks)?;
        verify_all(&checks)?;
        Ok(self.apply(sender, tx, plan))
    }

    /// Admits a gossip batch, in order, with one batched signature check for all txs that pass
    /// the cheap checks. Results are index-aligned with `txs`.
    ///
    /// Each tx sees the pool as the earlier txs of the batch left it (a sender's nonces 1, 2, 3
    /// in one batch are funded cumulatively; a later replacement in the batch outbids an
    /// earlier one).
    pub fn admit_batch(
        &mut self,
        txs: Vec<HashedTx>,
        state: &(impl StateReader + ?Sized),
        params: &Params,
    ) -> Vec<Result<Admitted, MempoolError>> {
        let mut results: Vec<Option<Result<Admitted, MempoolError>>> = vec![None; txs.len()];
        let mut accounts: HashMap<Address, Account> = HashMap::new();
        // (index, sender, range of its signature checks)
        let mut survivors: Vec<(usize, Address, std::ops::Range<usize>)> = Vec::new();
        let mut checks: Vec<SigCheck> = Vec::with_capacity(txs.len());
        // Byte-identical copies within a batch cost one verification, not one each. Same hash
        // with another signature is still checked: that copy may be the valid one.
        let mut seen: HashSet<(Hash, Signature)> = HashSet::new();

        for (i, tx) in txs.iter().enumerate() {
            let outcome = (|| -> Result<_, MempoolError> {
                self.check_stateless(tx, params)?;
                if !seen.insert((tx.hash, tx.tx.sig)) {
                    return Err(MempoolError::Duplicate);
                }
                let sender = tx.sender;
                let account = match accounts.get(&sender) {
                    Some(a) => *a,
                    None => {
                        let a = state::account(state, &sender)?;
                        self.prune_stale(&sender, a.nonce);
                        accounts.insert(sender, a);
                        a
                    }
                };
                self.check_account(tx, &account)?;
                check_claim(tx, state)?;
                let start = checks.len();
                self.collect_sigs(tx, &mut checks)?;
                Ok((sender, start..checks.len()))
            })();
            match outcome {
                Ok((sender, range)) => survivors.push((i, sender, range)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }

        let all_valid = crypto::verify_batch(&batch_items(&checks)).is_ok();

        let mut txs: Vec<Option<HashedTx>> = txs.into_iter().map(Some).collect();
        for (i, sender, range) in survivors {
            let Some(tx) = txs[i].take() else { continue };
            let outcome = (|| -> Result<Admitted, MempoolError> {
                if !all_valid {
                    verify_each(&checks[range])?;
                }
                let account = accounts.get(&sender).copied().unwrap_or_default();
                let plan = self.plan(&sender, &account, &tx)?;
                Ok(self.apply(sender, tx, plan))
            })();
            results[i] = Some(outcome);
        }
        // Every slot was filled by one of the two passes; the fallback is never taken.
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(MempoolError::MempoolFull)))
            .collect()
    }

    /// Picks txs for a block: highest fee first (ties by earlier arrival, so equal payers are
    /// served in turn rather than by the luck of their hashes), each sender's txs in
    /// nonce order with no gap from `account.nonce + 1`, each sender's cumulative `max_spend`
    /// within its balance, within `max_txs` and `max_bytes`.
    ///
    /// Accounts are read lazily, only for senders whose turn comes, so building a block from a
    /// large pool reads about as many accounts as the block has senders. A sender whose account
    /// cannot be read is left out: a smaller block is always safe.
    pub fn select(
        &self,
        state: &(impl StateReader + ?Sized),
        max_txs: usize,
        max_bytes: usize,
    ) -> Vec<HashedTx> {
        #[derive(PartialEq, Eq, PartialOrd, Ord)]
        struct Ready {
            fee: u64,
            arrival: Reverse<u64>,
            hash: Reverse<Hash>,
            sender: Address,
            nonce: u64,
        }
        let ready = |sender: Address, tx: &HashedTx| Ready {
            fee: tx.tx.fee,
            arrival: Reverse(self.index.get(&tx.hash).map_or(u64::MAX, |(_, _, a)| *a)),
            hash: Reverse(tx.hash),
            sender,
            nonce: tx.tx.nonce,
        };
        /// Where a sender stands in the block being built; `None` = blocked.
        struct Cursor {
            next: u64,
            remaining: u128,
        }

        let mut heap: BinaryHeap<Ready> = self
            .senders
            .iter()
            .filter_map(|(s, q)| q.txs.values().next().map(|tx| ready(*s, tx)))
            .collect();
        let mut cursors: HashMap<Address, Option<Cursor>> = HashMap::new();
        let mut out = Vec::new();
        let mut used_bytes = 0usize;

        while out.len() < max_txs {
            let Some(r) = heap.pop() else { break };
            let Some(queue) = self.senders.get(&r.sender) else {
                continue;
            };
            let cursor = cursors.entry(r.sender).or_insert_with(|| {
                let account = state::account(state, &r.sender).ok()?;
                Some(Cursor {
                    next: account.nonce.checked_add(1)?,
                    remaining: u128::from(account.balance),
                })
            });
            let Some(c) = cursor else { continue };
            if r.nonce != c.next {
                // Only a sender's first entry can be off: the pool still holds nonces the
                // account has passed. Requeue at the real next nonce, under its own fee.
                match queue.txs.get(&c.next) {
                    Some(tx) if r.nonce < c.next => heap.push(ready(r.sender, tx)),
                    _ => *cursor = None,
                }
                continue;
            }
            let Some(tx) = queue.txs.get(&r.nonce) else {
                *cursor = None;
                continue;
            };
            let spend = u128::from(tx.tx.max_spend());
            let fits = used_bytes
                .checked_add(tx.len)
                .is_some_and(|b| b <= max_bytes);
            if spend > c.remaining || !fits {
                // Its later nonces cannot go in without this one.
                *cursor = None;
                continue;
            }
            used_bytes += tx.len;
            c.remaining -= spend;
            c.next += 1;
            out.push(tx.clone());
            if let Some(next) = queue.txs.get(&c.next) {
                heap.push(ready(r.sender, next));
            }
        }
        out
    }

    /// Updates the pool after a block commits: drops the included txs, then re-checks the
    /// affected senders (and a rotating slice of the others) against the new state: nonces the
    /// account has passed go, and so do the highest nonces its balance no longer covers.
    ///
    /// On a state error the pool is left consistent, only less pruned.
    pub fn remove_committed(
        &mut self,
        included: &[Hash],
        state: &(impl StateReader + ?Sized),
    ) -> Result<(), StateError> {
        let mut affected = BTreeSet::new();
        for hash in included {
            if let Some((sender, nonce, _)) = self.index.get(hash).copied() {
                self.remove(&sender, nonce);
                affected.insert(sender);
            }
        }
        affected.extend(self.sweep_slice());
        for sender in affected {
            let account = state::account(state, &sender)?;
            self.revalidate(&sender, &account);
        }
        Ok(())
    }

    /// The next [`SWEEP_PER_COMMIT`] senders after the cursor, wrapping around.
    fn sweep_slice(&mut self) -> Vec<Address> {
        let start = match self.sweep_cursor {
            Some(c) => Bound::Excluded(c),
            None => Bound::Unbounded,
        };
        let mut slice: Vec<Address> = self
            .senders
            .range((start, Bound::Unbounded))
            .map(|(a, _)| *a)
            .take(SWEEP_PER_COMMIT)
            .collect();
        if slice.len() < SWEEP_PER_COMMIT {
            let more = SWEEP_PER_COMMIT - slice.len();
            let wrapped: Vec<Address> = self
                .senders
                .keys()
                .take(more)
                .filter(|a| !slice.contains(a))
                .copied()
                .collect();
            slice.extend(wrapped);
        }
        self.sweep_cursor = slice.last().copied();
        slice
    }

    /// Drops a sender's txs that the account nonce has passed, and then the highest nonces
    /// whose cumulative spend the balance no longer covers.
    fn revalidate(&mut self, sender: &Address, account: &Account) {
        self.prune_stale(sender, account.nonce);
        let Some(q) = self.senders.get(sender) else {
            return;
        };
        let mut total: u128 = 0;
        let cut = q.txs.iter().find_map(|(nonce, tx)| {
            total += u128::from(tx.tx.max_spend());
            (total > u128::from(account.balance)).then_some(*nonce)
        });
        if let Some(cut) = cut {
            let doomed: Vec<u64> = q.txs.range(cut..).map(|(n, _)| *n).collect();
            for nonce in doomed.into_iter().rev() {
                self.remove(sender, nonce);
            }
        }
    }

    /// Drops a sender's txs with nonce <= `account_nonce`: they can never be included.
    fn prune_stale(&mut self, sender: &Address, account_nonce: u64) {
        let Some(q) = self.senders.get(sender) else {
            return;
        };
        let stale: Vec<u64> = q.txs.range(..=account_nonce).map(|(n, _)| *n).collect();
        for nonce in stale {
            self.remove(sender, nonce);
        }
    }

    /// Checks that need neither state nor the pool.
    fn check_stateless(&self, tx: &HashedTx, params: &Params) -> Result<(), MempoolError> {
        debug_assert_eq!(tx.hash, tx.tx.hash(), "HashedTx carries a wrong hash");
        if tx.len as u64 > params.max_tx_bytes {
            return Err(MempoolError::TooLarge {
                len: tx.len,
                max: params.max_tx_bytes,
            });
        }
        if tx.tx.chain_id != self.chain_id {
            return Err(MempoolError::WrongChain {
                expected: self.chain_id.clone(),
                got: tx.tx.chain_id.clone(),
            });
        }
        // From the length already known: no re-encoding.
        let min = params.min_fee(tx.len as u64);
        if tx.tx.fee < min {
            return Err(MempoolError::FeeTooLow {
                fee: tx.tx.fee,
                min,
            });
        }
        Ok(())
    }

    /// Checks against the sender's account alone, which no other tx of a batch can change; so
    /// a batch can settle them before verifying signatures.
    fn check_account(&self, tx: &HashedTx, account: &Account) -> Result<(), MempoolError> {
        if self.index.contains_key(&tx.hash) {
            return Err(MempoolError::Duplicate);
        }
        let nonce = tx.tx.nonce;
        if nonce <= account.nonce {
            return Err(MempoolError::StaleNonce {
                nonce,
                account_nonce: account.nonce,
            });
        }
        let max_ahead = self.config.max_per_sender as u64;
        if nonce - account.nonce > max_ahead {
            return Err(MempoolError::NonceGapTooLarge {
                nonce,
                account_nonce: account.nonce,
                max_ahead,
            });
        }
        let spend = tx.tx.max_spend();
        if spend > account.balance {
            return Err(MempoolError::InsufficientFunds {
                balance: account.balance,
                needed: u128::from(spend),
            });
        }
        Ok(())
    }

    /// The checks that depend on the pool (replacement, cumulative funds, room), and which
    /// txs must leave to make room. Changes nothing, so a rejected tx leaves no trace.
    fn plan(
        &self,
        sender: &Address,
        account: &Account,
        tx: &HashedTx,
    ) -> Result<Plan, MempoolError> {
        // Re-checked here because an earlier tx of the same batch may be this one.
        self.check_account(tx, account)?;
        let queue = self.senders.get(sender);
        let pending = queue.and_then(|q| q.txs.get(&tx.tx.nonce));
        if let Some(old) = pending {
            if tx.tx.fee <= old.tx.fee {
                return Err(MempoolError::ReplacementUnderpriced {
                    fee: tx.tx.fee,
                    pending_fee: old.tx.fee,
                });
            }
        }
        let (count, reserved) = queue.map_or((0, 0), |q| (q.txs.len(), q.reserved));
        let old_spend = pending.map_or(0, |o| u128::from(o.tx.max_spend()));
        let needed = reserved - old_spend + u128::from(tx.tx.max_spend());
        if needed > u128::from(account.balance) {
            return Err(MempoolError::InsufficientFunds {
                balance: account.balance,
                needed,
            });
        }
        if pending.is_none() && count >= self.config.max_per_sender {
            // Unreachable while the nonce window holds, but the bound must not depend on the
            // state passed in being monotone.
            return Err(MempoolError::NonceGapTooLarge {
                nonce: tx.tx.nonce,
                account_nonce: account.nonce,
                max_ahead: self.config.max_per_sender as u64,
            });
        }

        let old_len = pending.map_or(0, |o| o.len);
        let new_count = self.len() + usize::from(pending.is_none());
        let new_bytes = self.bytes - old_len + tx.len;
        let mut excess_count = new_count.saturating_sub(self.config.max_txs);
        let mut excess_bytes = new_bytes.saturating_sub(self.config.max_bytes);
        let mut evict = Vec::new();
        if excess_count == 0 && excess_bytes == 0 {
            return Ok(Plan {
                replaces: pending.map(|o| o.hash),
                evict,
            });
        }
        if tx.len > self.config.max_bytes {
            return Err(MempoolError::MempoolFull);
        }
        // Candidates in fee order: the current tails of other senders, merged with the tails
        // that planned evictions expose (the victim's next-lower nonce). The newcomer's own
        // sender is never a victim: that could open a gap below the newcomer.
        let mut tails = self.tails.iter().filter(|t| t.sender != *sender).peekable();
        let mut exposed: BTreeSet<Tail> = BTreeSet::new();
        while excess_count > 0 || excess_bytes > 0 {
            let from_exposed = match (tails.peek(), exposed.first()) {
                (Some(t), Some(e)) => e < *t,
                (None, Some(_)) => true,
                (Some(_), None) => false,
                (None, None) => return Err(MempoolError::MempoolFull),
            };
            let victim = if from_exposed {
                exposed.pop_first()
            } else {
                tails.next().copied()
            };
            let Some(victim) = victim else {
                return Err(MempoolError::MempoolFull);
            };
            if victim.fee >= tx.tx.fee {
                return Err(MempoolError::MempoolFull);
            }
            let q = self.senders.get(&victim.sender);
            let victim_len = q
                .and_then(|q| q.txs.get(&victim.nonce))
                .map_or(0, |t| t.len);
            if let Some((_, below)) = q.and_then(|q| q.txs.range(..victim.nonce).next_back()) {
                exposed.insert(Tail::of(victim.sender, below));
            }
            excess_count = excess_count.saturating_sub(1);
            excess_bytes = excess_bytes.saturating_sub(victim_len);
            evict.push(victim);
        }
        Ok(Plan {
            replaces: pending.map(|o| o.hash),
            evict,
        })
    }

    fn apply(&mut self, sender: Address, tx: HashedTx, plan: Plan) -> Admitted {
        let evicted = plan
            .evict
            .iter()
            .filter_map(|v| self.remove(&v.sender, v.nonce).map(|t| t.hash))
            .collect();
        if plan.replaces.is_some() {
            self.remove(&sender, tx.tx.nonce);
        }
        let hash = tx.hash;
        self.insert(sender, tx);
        Admitted {
            hash,
            replaced: plan.replaces,
            evicted,
        }
    }

    /// Every signature in the tx, with keys decompressed (through the cache). Key/address
    /// bindings of a receipt are checked here: they are cheap and not signatures.
    fn collect_sigs(&mut self, tx: &HashedTx, out: &mut Vec<SigCheck>) -> Result<(), MempoolError> {
        let start = out.len();
        let result = self.push_sigs(tx, out);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn push_sigs(&mut self, tx: &HashedTx, out: &mut Vec<SigCheck>) -> Result<(), MempoolError> {
        let sigs = tx.signatures().map_err(|part| MempoolError::BadSignature {
            part,
            fault: SigFault::KeyMismatch,
        })?;
        for s in sigs {
            let key = self
                .keys
                .get(s.signer)
                .map_err(|e| MempoolError::BadSignature {
                    part: s.part,
                    fault: e.into(),
                })?;
            out.push(SigCheck {
                key,
                digest: s.digest,
                sig: s.sig,
                part: s.part,
            });
        }
        Ok(())
    }

    /// Inserts a tx whose (sender, nonce) slot is free, keeping every index in step.
    fn insert(&mut self, sender: Address, tx: HashedTx) {
        let q = self.senders.entry(sender).or_default();
        if let Some((_, tail)) = q.txs.last_key_value() {
            self.tails.remove(&Tail::of(sender, tail));
        }
        self.index
            .insert(tx.hash, (sender, tx.tx.nonce, self.next_arrival));
        self.next_arrival += 1;
        self.bytes += tx.len;
        q.reserved += u128::from(tx.tx.max_spend());
        q.txs.insert(tx.tx.nonce, tx);
        if let Some((_, tail)) = q.txs.last_key_value() {
            self.tails.insert(Tail::of(sender, tail));
        }
    }

    /// Removes one tx, keeping every index in step.
    fn remove(&mut self, sender: &Address, nonce: u64) -> Option<HashedTx> {
        let q = self.senders.get_mut(sender)?;
        if let Some((_, tail)) = q.txs.last_key_value() {
            self.tails.remove(&Tail::of(*sender, tail));
        }
        let tx = q.txs.remove(&nonce);
        if let Some(tx) = &tx {
            self.index.remove(&tx.hash);
            self.bytes -= tx.len;
            q.reserved -= u128::from(tx.tx.max_spend());
        }
        match q.txs.last_key_value() {
            Some((_, tail)) => {
                self.tails.insert(Tail::of(*sender, tail));
            }
            None => {
                self.senders.remove(sender);
            }
        }
        tx
    }

    /// Cross-checks every index against the queues (tests only).
    #[cfg(test)]
    fn check_invariants(&self) {
        let mut count = 0;
        let mut bytes = 0;
        for (sender, q) in &self.senders {
            assert!(!q.txs.is_empty(), "empty queue kept for {sender:?}");
            assert!(q.txs.len() <= self.config.max_per_sender);
            let mut reserved = 0u128;
            for (nonce, tx) in &q.txs {
                assert_eq!(tx.tx.nonce, *nonce);
                assert_eq!(tx.tx.sender(), *sender);
                assert_eq!(
                    self.index.get(&tx.hash).map(|(s, n, _)| (*s, *n)),
                    Some((*sender, *nonce))
                );
                reserved += u128::from(tx.tx.max_spend());
                bytes += tx.len;
                count += 1;
            }
            assert_eq!(q.reserved, reserved);
            let (_, last) = q.txs.last_key_value().expect("non-empty");
            assert!(self.tails.contains(&Tail::of(*sender, last)));
        }
        assert_eq!(self.index.len(), count);
        assert_eq!(self.tails.len(), self.senders.len());
        assert_eq!(self.bytes, bytes);
        assert!(count <= self.config.max_txs);
        assert!(bytes <= self.config.max_bytes);
    }
}
