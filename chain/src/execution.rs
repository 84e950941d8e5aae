//! Transaction and block execution: every validity rule and effect of SPEC §3 and §4.
//!
//! A block is valid only if every transaction in it is valid (the proposer drops failing ones
//! while building), so no fee is ever charged for a failed transaction. Each tx is checked in
//! full against a scratch copy of what it touches and applied only if every check passes.
//! Fees accumulate and are credited to the proposer once, at the end of the block.

use crate::account::Account;
use crate::address::Address;
use crate::crypto::{self, BatchItem, PublicKey, SigError, VerifyingKey};
use crate::hash::Hash;
use crate::parallel;
use crate::params::{ParamError, Params, BPS};
use crate::receipt::{Receipt, ReceiptSigError};
use crate::state::ledger::Ledger;
use crate::state::{keys, StateChanges, StateError, StateReader};
use crate::tx::{HashedTx, SigPart, TxKind};
use crate::validator_set::{Candidate, ValidatorSet};
use crate::vote::SignedVote;
use serde::{Deserialize, Serialize};
use std::collections::btree_map::{BTreeMap, Entry};
use std::collections::BTreeSet;

/// Most accounts the authorities may authorize at once: bounds the epoch-change work.
pub const MAX_AUTHORIZED: usize = 1024;

/// A committed transfer to a registered coordinator: what a receipt's `client_payment_tx` names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub client: Address,
    pub coordinator: Address,
    pub amount: u64,
    /// The receipt that used this payment, once claimed.
    pub used_by: Option<Hash>,
}

/// A claimed receipt, kept so that its id can never be claimed again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptRecord {
    pub job_id: u64,
    pub miner: Address,
    pub height: u64,
    pub minted: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum TxError {
    #[error("tx is {len} bytes, over max_tx_bytes = {max}")]
    TooLarge { len: usize, max: u64 },
    #[error("tx is for chain {got:?}, this is {expected:?}")]
    WrongChain { expected: String, got: String },
    #[error("fee {got} is below the minimum {min}")]
    FeeTooLow { min: u64, got: u64 },
    #[error("bad signature: {0}")]
    BadSignature(SigError),
    #[error("nonce {got} is not the next nonce {expected}")]
    BadNonce { expected: u64, got: u64 },
    #[error("needs {needed} units, account has {available}")]
    InsufficientFunds { needed: u64, available: u64 },
    #[error("amount must be greater than zero")]
    ZeroAmount,
    #[error("unstake of {requested} exceeds stake {staked}")]
    InsufficientStake { staked: u64, requested: u64 },
    #[error("sender is not a genesis authority")]
    NotAuthority,
    #[error("parameter update: {0}")]
    InvalidParam(#[from] ParamError),
    #[error("already {MAX_AUTHORIZED} authorized validators")]
    TooManyAuthorized,
    #[error("receipt signature: {0}")]
    BadReceiptSignature(#[from] ReceiptSigError),
    #[error("coordinator {0} is not registered in genesis")]
    UnknownCoordinator(Address),
    #[error("receipt {0} was already claimed")]
    DuplicateReceipt(Hash),
    #[error("client payment {0} is not a committed transfer to a coordinator")]
    PaymentNotFound(Hash),
    #[error("client payment {0} is not from the receipt's client to its coordinator")]
    PaymentMismatch(Hash),
    #[error("client payment of {paid} is less than the price {price}")]
    PaymentTooSmall { paid: u64, price: u64 },
    #[error("client payment {0} already backs another receipt")]
    PaymentUsed(Hash),
    #[error("coordinator balance {available} does not cover the price {price}")]
    CoordinatorFunds { price: u64, available: u64 },
    #[error("amount overflows")]
    Overflow,
    #[error(
        "the two votes do not conflict (same validator, height, view, phase; different block)"
    )]
    EvidenceNotConflicting,
    #[error("evidence vote signature: {0}")]
    BadEvidenceSignature(SigError),
    #[error("evidence is for height {height}, above the current height {current}")]
    EvidenceFromFuture { height: u64, current: u64 },
    #[error("evidence names {0}, which has no stake and is not authorized")]
    NotAValidator(Address),
    #[error("this offence was already punished")]
    DuplicateEvidence,
    #[error("state: {0}")]
    State(#[from] StateError),
}

impl TxError {
    /// Stable snake_case code, exposed by the RPC as `data.reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            TxError::TooLarge { .. } => "too_large",
            TxError::WrongChain { .. } => "wrong_chain",
            TxError::FeeTooLow { .. } => "fee_too_low",
            TxError::BadSignature(_) => "bad_signature",
            TxError::BadNonce { .. } => "bad_nonce",
            TxError::InsufficientFunds { .. } => "insufficient_funds",
            TxError::ZeroAmount => "zero_amount",
            TxError::InsufficientStake { .. } => "insufficient_stake",
            TxError::NotAuthority => "not_authority",
            TxError::InvalidParam(_) => "invalid_param",
            TxError::TooManyAuthorized => "too_many_authorized",
            TxError::BadReceiptSignature(_) => "bad_receipt_signature",
            TxError::UnknownCoordinator(_) => "unknown_coordinator",
            TxError::DuplicateReceipt(_) => "duplicate_receipt",
            TxError::PaymentNotFound(_) => "payment_not_found",
            TxError::PaymentMismatch(_) => "payment_mismatch",
            TxError::PaymentTooSmall { .. } => "payment_too_small",
            TxError::PaymentUsed(_) => "payment_used",
            TxError::CoordinatorFunds { .. } => "coordinator_insufficient_funds",
            TxError::Overflow => "overflow",
            TxError::EvidenceNotConflicting => "evidence_not_conflicting",
            TxError::BadEvidenceSignature(_) => "bad_evidence_signature",
            TxError::EvidenceFromFuture { .. } => "evidence_future_height",
            TxError::NotAValidator(_) => "not_a_validator",
            TxError::DuplicateEvidence => "duplicate_evidence",
            TxError::State(_) => "internal",
        }
    }
}

/// Whether a transaction's signatures still need checking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sigs {
    /// Checked already on this node (mempool admission or a block-wide batch).
    Verified,
    /// Check every signature the tx carries.
    Check,
}

/// Checks every signature a tx carries: the sender's, and those inside receipts and evidence.
pub fn verify_tx_signatures(tx: &HashedTx) -> Result<(), TxError> {
    verify_txs(&[tx]).map_err(|(_, e)| e)
}

/// The error for a bad signature in `part` of a tx.
fn sig_error(part: SigPart, e: SigError) -> TxError {
    match part {
        SigPart::Sender => TxError::BadSignature(e),
        SigPart::ReceiptMiner => ReceiptSigError::Miner(e).into(),
        SigPart::ReceiptCoordinator => ReceiptSigError::Coordinator(e).into(),
        SigPart::EvidenceVoteA | SigPart::EvidenceVoteB => TxError::BadEvidenceSignature(e),
    }
}

/// Verifies every signature of many txs ([`HashedTx::signatures`]) in one batch; only when the
/// batch fails are they checked singly, to name the first bad tx (its index and error).
pub fn verify_txs(txs: &[&HashedTx]) -> Result<(), (usize, TxError)> {
    let mut keys = Vec::with_capacity(txs.len());
    let mut sigs = Vec::with_capacity(txs.len());
    // Each signer's key is decompressed once (a sender often has many txs in a block or run).
    let mut decompressed: BTreeMap<PublicKey, VerifyingKey> = BTreeMap::new();
    for (i, t) in txs.iter().enumerate() {
        let each = t.signatures().map_err(|part| {
            let e = match part {
                SigPart::ReceiptMiner => ReceiptSigError::MinerKeyMismatch,
                _ => ReceiptSigError::CoordinatorKeyMismatch,
            };
            (i, TxError::from(e))
        })?;
        for s in each {
            let key = match decompressed.entry(*s.signer) {
                Entry::Occupied(e) => *e.get(),
                Entry::Vacant(e) => {
                    *e.insert(VerifyingKey::new(s.signer).map_err(|e| (i, sig_error(s.part, e)))?)
                }
            };
            keys.push(key);
            sigs.push((i, s));
        }
    }
    let items: Vec<BatchItem<'_>> = sigs
        .iter()
        .zip(&keys)
        .map(|((_, s), key)| BatchItem {
            key,
            digest: &s.digest,
            sig: &s.sig,
        })
        .collect();
    if crypto::verify_batch(&items).is_err() {
        for ((i, s), it) in sigs.iter().zip(&items) {
            crypto::verify(it.key, it.digest, it.sig).map_err(|e| (*i, sig_error(s.part, e)))?;
        }
    }
    Ok(())
}

/// What a block is executed in.
#[derive(Clone, Debug)]
pub struct BlockEnv {
    pub chain_id: String,
    pub height: u64,
    pub proposer: Address,
}

/// The result of executing a block.
#[derive(Debug)]
pub struct BlockOutcome {
    pub changes: StateChanges,
    /// The set that votes on the next height (its hash is the header's `next_validators_hash`).
    pub next_validators: ValidatorSet,
    pub fees: u64,
    pub minted: u64,
}

/// Writes a transaction makes, held until all its checks pass. One per executor, cleared
/// after each tx: allocating its lists per tx was 3% of executing a block.
#[derive(Default)]
struct Scratch {
    accounts: ScratchAccounts,
    puts: Vec<(Vec<u8>, Vec<u8>)>,
    minted: u64,
}

impl Scratch {
    fn clear(&mut self) {
        self.accounts.0.clear();
        self.puts.clear();
        self.minted = 0;
    }
}

/// The few accounts one tx touches (at most four: a receipt claim's sender, coordinator,
/// miner and treasury), in a flat list: a map is slower for so few.
#[derive(Default)]
struct ScratchAccounts(Vec<(Address, Account)>);

impl ScratchAccounts {
    fn get(&self, a: &Address) -> Option<&Account> {
        self.0.iter().find(|(x, _)| x == a).map(|(_, acct)| acct)
    }

    fn insert(&mut self, a: Address, acct: Account) {
        match self.0.iter_mut().find(|(x, _)| *x == a) {
            Some((_, slot)) => *slot = acct,
            None => self.0.push((a, acct)),
        }
    }
}

/// Fewest txs worth another prefetch thread (a read costs about a µs at 1M accounts).
const MIN_PREFETCH_TXS: usize = 256;

/// Executes the transactions of one block over a state.
pub struct Executor<R> {
    ledger: Ledger<R>,
    env: BlockEnv,
    params: Params,
    supply: u64,
    fees: u64,
    minted: u64,
    /// `meta/coordinators`, read on first use. Only genesis writes it, so one read per block
    /// serves every transfer (each one checks whether it pays a coordinator).
    coordinators: Option<BTreeSet<Address>>,
    scratch: Scratch,
}

fn load_params(ledger: &Ledger<impl StateReader>) -> Result<Params, StateError> {
    let mut p = Params::default();
    for name in Params::NAMES {
        let key = keys::param(name);
        let value: u64 = required(ledger, &key)?;
        p.set_unvalidated(name, value)
            .map_err(|e| corrupt(&key, e))?;
    }
    p.validate().map_err(|e| corrupt(b"param/*", e))?;
    Ok(p)
}

fn corrupt(key: &[u8], e: impl std::fmt::Display) -> StateError {
    StateError::Corrupt {
        key: keys::display(key),
        reason: e.to_string(),
    }
}

fn required<T: serde::de::DeserializeOwned>(
    ledger: &Ledger<impl StateReader>,
    key: &[u8],
) -> Result<T, StateError> {
    ledger.get(key)?.ok_or_else(|| corrupt(key, "missing"))
}

impl<R: StateReader> Executor<R> {
    pub fn new(base: R, env: BlockEnv) -> Result<Self, StateError> {
        let ledger = Ledger::new(base);
        let params = load_params(&ledger)?;
        let supply = required(&ledger, keys::SUPPLY)?;
        Ok(Executor {
            ledger,
            env,
            params,
            supply,
            fees: 0,
            minted: 0,
            coordinators: None,
            scratch: Scratch::default(),
        })
    }

    fn is_coordinator(&mut self, a: &Address) -> Result<bool, StateError> {
        if self.coordinators.is_none() {
            self.coordinators = Some(required(&self.ledger, keys::COORDINATORS)?);
        }
        Ok(self.coordinators.as_ref().is_some_and(|c| c.contains(a)))
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Room for the accounts of `txs` more transfers, so the block's account map is not
    /// re-hashed as it grows (that was a third of a transfer's execution).
    pub fn reserve(&mut self, txs: usize) {
        self.ledger.reserve_accounts(2 * txs);
    }

    /// Reads ahead, on one thread per core (up to 4), the accounts `txs` send from and
    /// transfer to. Txs apply one after another, but their reads of the state before the
    /// block do not depend on each other, and at 1M accounts each is a cache miss or two
    /// into a random bucket. What is read is exactly what a tx would have read itself; a read
    /// that fails is left for the tx to repeat and report.
    fn prefetch(&mut self, txs: &[HashedTx])
    where
        R: Sync,
    {
        let threads = parallel::parts(txs.len(), MIN_PREFETCH_TXS, parallel::threads());
        if threads > 1 {
            self.prefetch_on(txs, threads);
        }
    }

    fn prefetch_on(&mut self, txs: &[HashedTx], threads: usize)
    where
        R: Sync,
    {
        let base = self.ledger.base();
        let parts = parallel::map_parts(txs, &mut vec![(); threads], |part, _| {
            let mut read = Vec::with_capacity(2 * part.len());
            for t in part {
                let to = match &t.tx.kind {
                    TxKind::Transfer { to, .. } => Some(to),
                    _ => None,
                };
                for a in std::iter::once(&t.sender).chain(to) {
                    if let Ok(acct) = crate::state::account(base, a) {
                        read.push((*a, acct));
                    }
                }
            }
            read
        });
        for part in parts {
            self.ledger.add_read_accounts(part);
        }
    }

    fn scratch_account(&mut self, s: &mut Scratch, a: &Address) -> Result<Account, StateError> {
        match s.accounts.get(a) {
            Some(acct) => Ok(*acct),
            None => self.ledger.account(a),
        }
    }

    /// Checks and applies one tx. On error nothing is changed.
    pub fn apply_tx(&mut self, tx: &HashedTx, sigs: Sigs) -> Result<(), TxError> {
        let mut s = std::mem::take(&mut self.scratch);
        let result = self.apply_with(tx, sigs, &mut s);
        s.clear();
        self.scratch = s;
        result
    }

    fn apply_with(&mut self, tx: &HashedTx, sigs: Sigs, s: &mut Scratch) -> Result<(), TxError> {
        let t = &tx.tx;
        if tx.len as u64 > self.params.max_tx_bytes {
            return Err(TxError::TooLarge {
                len: tx.len,
                max: self.params.max_tx_bytes,
            });
        }
        if t.chain_id != self.env.chain_id {
            return Err(TxError::WrongChain {
                expected: self.env.chain_id.clone(),
                got: t.chain_id.clone(),
            });
        }
        let min = self.params.min_fee(tx.len as u64);
        if t.fee < min {
            return Err(TxError::FeeTooLow { min, got: t.fee });
        }
        if sigs == Sigs::Check {
            verify_tx_signatures(tx)?;
        }
        let sender = tx.sender;
        let mut acct = self.ledger.account(&sender)?;
        let expected = acct.nonce.checked_add(1).ok_or(TxError::Overflow)?;
        if t.nonce != expected {
            return Err(TxError::BadNonce {
                expected,
                got: t.nonce,
            });
        }
        acct.balance = acct
            .balance
            .checked_sub(t.fee)
            .ok_or(TxError::InsufficientFunds {
                needed: t.fee,
                available: acct.balance,
            })?;
        acct.nonce = expected;
        s.accounts.insert(sender, acct);
        match &t.kind {
            TxKind::Transfer { to, amount } => self.transfer(s, tx, sender, *to, *amount)?,
            TxKind::Stake { amount } => self.stake(s, sender, t.sender_pubkey, *amount)?,
            TxKind::Unstake { amount } => self.unstake(s, sender, *amount)?,
            TxKind::Authorize { address, allowed } => {
                self.authorize(s, sender, *address, *allowed)?
            }
            TxKind::ParamUpdate { key, value } => self.param_update(s, sender, key, *value)?,
            TxKind::ReceiptClaim { receipt } => self.claim(s, receipt)?,
            TxKind::Evidence { vote_a, vote_b } => self.evidence(s, vote_a, vote_b)?,
        }
        let supply = self.supply.checked_add(s.minted).ok_or(TxError::Overflow)?;
        let fees = self.fees.checked_add(t.fee).ok_or(TxError::Overflow)?;
        // All checks passed: apply.
        for (a, acct) in s.accounts.0.drain(..) {
            self.ledger.set_account(a, acct);
        }
        for (k, v) in s.puts.drain(..) {
            self.ledger.put_raw(k, v);
        }
        self.supply = supply;
        self.minted += s.minted;
        self.fees = fees;
        Ok(())
    }

    fn debit(&mut self, s: &mut Scratch, a: Address, amount: u64) -> Result<(), TxError> {
        let mut acct = self.scratch_account(s, &a)?;
        acct.balance = acct
            .balance
            .checked_sub(amount)
            .ok_or(TxError::InsufficientFunds {
                needed: amount,
                available: acct.balance,
            })?;
        s.accounts.insert(a, acct);
        Ok(())
    }

    fn credit(&mut self, s: &mut Scratch, a: Address, amount: u64) -> Result<(), TxError> {
        let mut acct = self.scratch_account(s, &a)?;
        acct.balance = acct.balance.checked_add(amount).ok_or(TxError::Overflow)?;
        s.accounts.insert(a, acct);
        Ok(())
    }

    fn transfer(
        &mut self,
        s: &mut Scratch,
        tx: &HashedTx,
        from: Address,
        to: Address,
        amount: u64,
    ) -> Result<(), TxError> {
        if amount == 0 {
            return Err(TxError::ZeroAmount);
        }
        self.debit(s, from, amount)
            .map_err(|e| with_fee(e, tx.tx.fee))?;
        self.credit(s, to, amount)?;
        if self.is_coordinator(&to)? {
            let p = Payment {
                client: from,
                coordinator: to,
                amount,
                used_by: None,
            };
            s.puts
                .push((keys::payment(&tx.hash), crate::codec::encode(&p)));
        }
        Ok(())
    }

    fn stake(
        &mut self,
        s: &mut Scratch,
        who: Address,
        pubkey: crate::crypto::PublicKey,
        amount: u64,
    ) -> Result<(), TxError> {
        if amount == 0 {
            return Err(TxError::ZeroAmount);
        }
        let fee = self.fees_of(s, &who)?;
        let mut acct = self.scratch_account(s, &who)?;
        acct.balance = acct
            .balance
            .checked_sub(amount)
            .ok_or(TxError::InsufficientFunds {
                needed: amount + fee,
                available: acct.balance + fee,
            })?;
        acct.stake = acct.stake.checked_add(amount).ok_or(TxError::Overflow)?;
        s.accounts.insert(who, acct);
        s.puts
            .push((keys::validator_key(&who), crate::codec::encode(&pubkey)));
        Ok(())
    }

    /// The fee already taken from `who` in this scratch (for error messages only).
    fn fees_of(&mut self, s: &Scratch, who: &Address) -> Result<u64, StateError> {
        let before = self.ledger.account(who)?.balance;
        Ok(s.accounts
            .get(who)
            .map_or(0, |a| before.saturating_sub(a.balance)))
    }

    fn unstake(&mut self, s: &mut Scratch, who: Address, amount: u64) -> Result<(), TxError> {
        if amount == 0 {
            return Err(TxError::ZeroAmount);
        }
        let mut acct = self.scratch_account(s, &who)?;
        acct.stake = acct
            .stake
            .checked_sub(amount)
            .ok_or(TxError::InsufficientStake {
                staked: acct.stake,
                requested: amount,
            })?;
        s.accounts.insert(who, acct);
        let release = self
            .env
            .height
            .checked_add(self.params.unbonding_blocks)
            .ok_or(TxError::Overflow)?;
        let key = keys::unbonding(release);
        let mut queue: Vec<(Address, u64)> = self.ledger.get(&key)?.unwrap_or_default();
        queue.push((who, amount));
        s.puts.push((key, crate::codec::encode(&queue)));
        Ok(())
    }

    fn require_authority(&self, who: &Address) -> Result<(), TxError> {
        let authorities: BTreeSet<Address> = required(&self.ledger, keys::AUTHORITIES)?;
        if authorities.contains(who) {
            Ok(())
        } else {
            Err(TxError::NotAuthority)
        }
    }

    fn authorize(
        &mut self,
        s: &mut Scratch,
        who: Address,
        address: Address,
        allowed: bool,
    ) -> Result<(), TxError> {
        self.require_authority(&who)?;
        let mut set: BTreeSet<Address> = required(&self.ledger, keys::AUTHORIZED)?;
        if allowed {
            if !set.contains(&address) && set.len() >= MAX_AUTHORIZED {
                return Err(TxError::TooManyAuthorized);
            }
            set.insert(address);
        } else {
            set.remove(&address);
        }
        s.puts
            .push((keys::AUTHORIZED.to_vec(), crate::codec::encode(&set)));
        Ok(())
    }

    fn param_update(
        &mut self,
        s: &mut Scratch,
        who: Address,
        key: &str,
        value: u64,
    ) -> Result<(), TxError> {
        self.require_authority(&who)?;
        let mut next = self.params.clone();
        next.update(key, value)?;
        s.puts
            .push((keys::param(key), crate::codec::encode(&value)));
        // Later txs of this block already see the new value.
        self.params = next;
        Ok(())
    }

    fn claim(&mut self, s: &mut Scratch, receipt: &Receipt) -> Result<(), TxError> {
        let c = &receipt.core;
        if !self.is_coordinator(&c.coordinator)? {
            return Err(TxError::UnknownCoordinator(c.coordinator));
        }
        let rkey = keys::receipt(&c.receipt_id);
        if self.ledger.get::<ReceiptRecord>(&rkey)?.is_some() {
            return Err(TxError::DuplicateReceipt(c.receipt_id));
        }
        let pkey = keys::payment(&c.client_payment_tx);
        let mut payment: Payment = self
            .ledger
            .get(&pkey)?
            .ok_or(TxError::PaymentNotFound(c.client_payment_tx))?;
        if payment.client != c.client || payment.coordinator != c.coordinator {
            return Err(TxError::PaymentMismatch(c.client_payment_tx));
        }
        if payment.amount < c.price {
            return Err(TxError::PaymentTooSmall {
                paid: payment.amount,
                price: c.price,
            });
        }
        if payment.used_by.is_some() {
            return Err(TxError::PaymentUsed(c.client_payment_tx));
        }
        let coordinator_balance = self.scratch_account(s, &c.coordinator)?.balance;
        if coordinator_balance < c.price {
            return Err(TxError::CoordinatorFunds {
                price: c.price,
                available: coordinator_balance,
            });
        }
        let mint = c
            .compute_units
            .checked_mul(self.params.mint_per_unit)
            .ok_or(TxError::Overflow)?;
        let share = |bps: u64| (u128::from(mint) * u128::from(bps) / u128::from(BPS)) as u64;
        let coordinator_mint = share(self.params.coordinator_bps);
        let treasury_mint = share(self.params.treasury_bps);
        let treasury: Address = required(&self.ledger, keys::TREASURY)?;
        self.debit(s, c.coordinator, c.price)?;
        self.credit(
            s,
            c.miner,
            c.price.checked_add(mint).ok_or(TxError::Overflow)?,
        )?;
        self.credit(s, c.coordinator, coordinator_mint)?;
        self.credit(s, treasury, treasury_mint)?;
        s.minted = mint
            .checked_add(coordinator_mint)
            .and_then(|m| m.checked_add(treasury_mint))
            .ok_or(TxError::Overflow)?;
        payment.used_by = Some(c.receipt_id);
        s.puts.push((pkey, crate::codec::encode(&payment)));
        let record = ReceiptRecord {
            job_id: c.job_id,
            miner: c.miner,
            height: self.env.height,
            minted: s.minted,
        };
        s.puts.push((rkey, crate::codec::encode(&record)));
        Ok(())
    }

    fn evidence(&mut self, s: &mut Scratch, a: &SignedVote, b: &SignedVote) -> Result<(), TxError> {
        if !a.vote.conflicts_with(&b.vote) {
            return Err(TxError::EvidenceNotConflicting);
        }
        if a.vote.height > self.env.height {
            return Err(TxError::EvidenceFromFuture {
                height: a.vote.height,
                current: self.env.height,
            });
        }
        let offence = offence_hash(a);
        let ekey = keys::evidence(&offence);
        if self.ledger.get::<u64>(&ekey)?.is_some() {
            return Err(TxError::DuplicateEvidence);
        }
        let offender = a.validator_address();
        let mut authorized: BTreeSet<Address> = required(&self.ledger, keys::AUTHORIZED)?;
        let mut acct = self.scratch_account(s, &offender)?;
        if acct.stake == 0 && !authorized.contains(&offender) {
            return Err(TxError::NotAValidator(offender));
        }
        let slash =
            (u128::from(acct.stake) * u128::from(self.params.slash_bps) / u128::from(BPS)) as u64;
        acct.stake -= slash;
        s.accounts.insert(offender, acct);
        // Slashed stake goes to the treasury: supply changes only by receipt mints.
        let treasury: Address = required(&self.ledger, keys::TREASURY)?;
        self.credit(s, treasury, slash)?;
        authorized.remove(&offender);
        s.puts
            .push((keys::AUTHORIZED.to_vec(), crate::codec::encode(&authorized)));
        s.puts.push((ekey, crate::codec::encode(&self.env.height)));
        Ok(())
    }

    /// End-of-block work: credit fees, release unbonded stake, rotate the set at epoch ends.
    pub fn finish(mut self) -> Result<BlockOutcome, StateError> {
        let mut proposer = self.ledger.account(&self.env.proposer)?;
        proposer.balance = proposer
            .balance
            .checked_add(self.fees)
            .ok_or_else(|| overflow("proposer balance"))?;
        self.ledger.set_account(self.env.proposer, proposer);

        let ukey = keys::unbonding(self.env.height);
        if let Some(queue) = self.ledger.get::<Vec<(Address, u64)>>(&ukey)? {
            for (who, amount) in queue {
                let mut acct = self.ledger.account(&who)?;
                acct.balance = acct
                    .balance
                    .checked_add(amount)
                    .ok_or_else(|| overflow("unbonding"))?;
                self.ledger.set_account(who, acct);
            }
            self.ledger.delete(ukey);
        }

        let mut next: ValidatorSet = required(&self.ledger, keys::ACTIVE_SET)?;
        if self
            .env
            .height
            .is_multiple_of(self.params.rotation_interval)
        {
            let selected = self.select_validators()?;
            // An empty set could never commit again; keep the old one rather than halt.
            if !selected.is_empty() {
                next = selected;
                self.ledger.put(keys::ACTIVE_SET.to_vec(), &next);
            }
        }
        self.ledger.put(keys::SUPPLY.to_vec(), &self.supply);
        Ok(BlockOutcome {
            changes: self.ledger.into_changes(),
            next_validators: next,
            fees: self.fees,
            minted: self.minted,
        })
    }

    fn select_validators(&mut self) -> Result<ValidatorSet, StateError> {
        let authorized: BTreeSet<Address> = required(&self.ledger, keys::AUTHORIZED)?;
        let mut candidates = Vec::with_capacity(authorized.len());
        for address in authorized {
            let Some(pubkey) = self.ledger.get(&keys::validator_key(&address))? else {
                continue;
            };
            let stake = self.ledger.account(&address)?.stake;
            candidates.push(Candidate {
                address,
                pubkey,
                stake,
            });
        }
        Ok(ValidatorSet::select(
            candidates,
            self.params.min_stake,
            self.params.max_validators,
        ))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("tx {index} ({hash}): {error}")]
    Tx {
        index: usize,
        hash: Hash,
        error: TxError,
    },
    #[error("state: {0}")]
    State(#[from] StateError),
}

/// Executes a proposed block's transactions in order. Signatures of txs that `verified` does
/// not vouch for are checked first, in one batch.
///
/// `verified` must compare the whole tx, signature included (`Mempool::is_verified`): the tx
/// hash excludes the signature, so a proposer could pair a pooled tx's hash with a forged
/// signature, and nodes that had the tx would accept a block the others reject.
pub fn execute_block<R: StateReader + Sync>(
    base: R,
    env: BlockEnv,
    txs: &[HashedTx],
    verified: impl Fn(&HashedTx) -> bool,
) -> Result<BlockOutcome, BlockError> {
    let (unchecked_idx, unchecked): (Vec<usize>, Vec<&HashedTx>) =
        txs.iter().enumerate().filter(|(_, t)| !verified(t)).unzip();
    verify_txs(&unchecked).map_err(|(i, error)| {
        let index = unchecked_idx[i];
        BlockError::Tx {
            index,
            hash: txs[index].hash,
            error,
        }
    })?;
    let mut exec = Executor::new(base, env)?;
    exec.reserve(txs.len());
    exec.prefetch(txs);
    for (index, t) in txs.iter().enumerate() {
        exec.apply_tx(t, Sigs::Verified)
            .map_err(|error| BlockError::Tx {
                index,
                hash: t.hash,
                error,
            })?;
    }
    Ok(exec.finish()?)
}

/// A block a proposer built: the txs that applied, their effects, and the ones that failed
/// (stale or no longer affordable) so the mempool can drop them.
#[derive(Debug)]
pub struct BuiltBlock {
    pub txs: Vec<HashedTx>,
    pub outcome: BlockOutcome,
    pub rejected: Vec<(Hash, TxError)>,
}

/// Builds a block from already-verified candidates (in the mempool's priority order), keeping
/// each that applies until the block limits are reached. `reserved_bytes` is room kept for the
/// header and certificate.
pub fn build_block<R: StateReader>(
    base: R,
    env: BlockEnv,
    candidates: impl IntoIterator<Item = HashedTx>,
    reserved_bytes: u64,
) -> Result<BuiltBlock, StateError> {
    let mut exec = Executor::new(base, env)?;
    let max_txs = exec.params.max_block_txs;
    let max_bytes = exec.params.max_block_bytes.saturating_sub(reserved_bytes);
    let candidates = candidates.into_iter();
    exec.reserve(candidates.size_hint().0.min(max_txs as usize));
    let (mut txs, mut rejected, mut bytes) = (Vec::new(), Vec::new(), 0u64);
    for t in candidates {
        if txs.len() as u64 >= max_txs {
            break;
        }
        if bytes + t.len as u64 > max_bytes {
            continue;
        }
        match exec.apply_tx(&t, Sigs::Verified) {
            Ok(()) => {
                bytes += t.len as u64;
                txs.push(t);
            }
            Err(TxError::State(e)) => return Err(e),
            Err(e) => rejected.push((t.hash, e)),
        }
    }
    Ok(BuiltBlock {
        txs,
        outcome: exec.finish()?,
        rejected,
    })
}

fn overflow(what: &str) -> StateError {
    StateError::Corrupt {
        key: what.to_string(),
        reason: "balance overflow".into(),
    }
}

/// An insufficient-funds error for the amount alone, restated to include the fee paid first.
fn with_fee(e: TxError, fee: u64) -> TxError {
    match e {
        TxError::InsufficientFunds { needed, available } => TxError::InsufficientFunds {
            needed: needed.saturating_add(fee),
            available: available.saturating_add(fee),
        },
        e => e,
    }
}

/// Identifies one offence: a validator's vote slot (height, view, phase). Any second pair of
/// conflicting votes for the same slot is the same offence and is not punished twice.
pub fn offence_hash(v: &SignedVote) -> Hash {
    Hash::of_encoded(&(v.vote.validator, v.vote.height, v.vote.view, v.vote.phase))
}

#[cfg(test)]
#[path = "execution_tests.rs"]
mod tests;
