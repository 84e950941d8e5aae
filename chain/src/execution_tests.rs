//! Every validity rule and effect of execution, one test each.

use super::*;
use crate::crypto::{PublicKey, SecretKey, Signature};
use crate::genesis::Genesis;
use crate::params::AIT;
use crate::receipt::{Receipt, ReceiptCore};
use crate::state::{read, MemState};
use crate::tx::Tx;
use crate::vote::{Phase, Vote};
use std::collections::BTreeMap;

const CHAIN: &str = "ait-test";

pub(crate) struct World {
    pub state: MemState,
    pub validators: Vec<SecretKey>,
    pub alice: SecretKey,
    pub bob: SecretKey,
    pub coordinator: SecretKey,
    pub miner: SecretKey,
    pub height: u64,
    pub nonces: BTreeMap<Address, u64>,
}

pub(crate) fn addr(k: &SecretKey) -> Address {
    Address::of(&k.public())
}

impl World {
    pub fn new() -> World {
        let validators: Vec<SecretKey> = (1..=4).map(|i| SecretKey::from_seed([i; 32])).collect();
        let alice = SecretKey::from_seed([10; 32]);
        let bob = SecretKey::from_seed([11; 32]);
        let coordinator = SecretKey::from_seed([12; 32]);
        let miner = SecretKey::from_seed([13; 32]);
        let refs: Vec<&SecretKey> = validators.iter().collect();
        let mut g = Genesis::dev(
            CHAIN,
            &refs,
            &[
                (addr(&alice), 10_000 * AIT),
                (addr(&bob), 100 * AIT),
                (addr(&coordinator), 50 * AIT),
                (addr(&validators[0]), 10 * AIT),
            ],
        );
        g.coordinators = vec![addr(&coordinator)];
        g.params.rotation_interval = 10;
        g.params.unbonding_blocks = 10;
        let mut state = MemState::default();
        state.apply(&g.initial_state().expect("genesis"));
        World {
            state,
            validators,
            alice,
            bob,
            coordinator,
            miner,
            height: 0,
            nonces: BTreeMap::new(),
        }
    }

    pub fn env(&self) -> BlockEnv {
        BlockEnv {
            chain_id: CHAIN.into(),
            height: self.height + 1,
            proposer: addr(&self.validators[0]),
        }
    }

    pub fn tx(&mut self, key: &SecretKey, kind: TxKind) -> HashedTx {
        let nonce = self.nonces.entry(addr(key)).or_insert(0);
        *nonce += 1;
        HashedTx::new(Tx::signed(CHAIN, kind, key, *nonce, 10 * AIT / 1000))
    }

    /// Executes one block; on success commits its changes and advances the height.
    pub fn block(&mut self, txs: &[HashedTx]) -> Result<BlockOutcome, BlockError> {
        let out = execute_block(&self.state, self.env(), txs, |_| false)?;
        self.state.apply(&out.changes);
        self.height += 1;
        Ok(out)
    }

    /// Applies one tx alone; returns its error, if any, with the state untouched on error.
    pub fn one(&mut self, tx: HashedTx) -> Result<(), TxError> {
        match self.block(&[tx]) {
            Ok(_) => Ok(()),
            Err(BlockError::Tx { error, .. }) => Err(error),
            Err(BlockError::State(e)) => panic!("state error {e}"),
        }
    }

    pub fn acct(&self, a: &Address) -> Account {
        crate::state::account(&self.state, a).expect("account")
    }

    pub fn supply(&self) -> u64 {
        read(&self.state, keys::SUPPLY)
            .expect("read")
            .expect("supply")
    }

    pub fn transfer(&mut self, from: &SecretKey, to: Address, amount: u64) -> HashedTx {
        let k = SecretKey::from_seed(from.seed());
        self.tx(&k, TxKind::Transfer { to, amount })
    }
}

fn reason(r: Result<(), TxError>) -> &'static str {
    r.expect_err("tx should fail").reason()
}

#[test]
fn transfer_moves_funds_bumps_nonce_and_pays_fee_to_proposer() {
    let mut w = World::new();
    let (a, b, p) = (addr(&w.alice), addr(&w.bob), addr(&w.validators[0]));
    let (a0, b0, p0, s0) = (w.acct(&a), w.acct(&b), w.acct(&p), w.supply());
    let tx = w.transfer(&SecretKey::from_seed(w.alice.seed()), b, 7 * AIT);
    let fee = tx.tx.fee;
    w.one(tx).expect("valid");
    assert_eq!(w.acct(&a).balance, a0.balance - 7 * AIT - fee);
    assert_eq!(w.acct(&a).nonce, a0.nonce + 1);
    assert_eq!(w.acct(&b).balance, b0.balance + 7 * AIT);
    assert_eq!(w.acct(&p).balance, p0.balance + fee);
    assert_eq!(w.supply(), s0, "transfers never change supply");
}

#[test]
fn rejects_wrong_chain_size_fee_and_signature() {
    let mut w = World::new();
    let b = addr(&w.bob);
    let alice = SecretKey::from_seed(w.alice.seed());
    let other_chain = HashedTx::new(Tx::signed(
        "other",
        TxKind::Transfer { to: b, amount: 1 },
        &alice,
        1,
        AIT,
    ));
    assert_eq!(reason(w.one(other_chain)), "wrong_chain");
    let cheap = HashedTx::new(Tx::signed(
        CHAIN,
        TxKind::Transfer { to: b, amount: 1 },
        &alice,
        1,
        1,
    ));
    assert_eq!(reason(w.one(cheap)), "fee_too_low");
    let mut forged = w.transfer(&alice, b, 1);
    forged.tx.sig = Signature([7; 64]);
    assert_eq!(reason(w.one(forged)), "bad_signature");
    let mut other_signer = w.transfer(&alice, b, 1);
    other_signer.tx.sig = SecretKey::from_seed([99; 32]).sign_digest(&other_signer.hash);
    assert_eq!(reason(w.one(other_signer)), "bad_signature");
    let huge = HashedTx::new(Tx::signed(
        CHAIN,
        TxKind::ParamUpdate {
            key: "x".repeat(40_000),
            value: 1,
        },
        &alice,
        1,
        u64::MAX / 2,
    ));
    assert_eq!(reason(w.one(huge)), "too_large");
    assert_eq!(w.acct(&addr(&alice)).nonce, 0, "failed txs change nothing");
}

#[test]
fn nonces_must_be_strictly_sequential_and_replay_fails() {
    let mut w = World::new();
    let b = addr(&w.bob);
    let alice = SecretKey::from_seed(w.alice.seed());
    let t1 = w.transfer(&alice, b, 1);
    let t2 = w.transfer(&alice, b, 1);
    let t3 = w.transfer(&alice, b, 1);
    assert_eq!(reason(w.one(t2.clone())), "bad_nonce", "gap");
    w.one(t1.clone()).expect("first");
    assert_eq!(reason(w.one(t1)), "bad_nonce", "replay");
    assert_eq!(reason(w.one(t3)), "bad_nonce", "still a gap");
    w.one(t2).expect("second");
}

#[test]
fn insufficient_funds_and_zero_amounts() {
    let mut w = World::new();
    let (a, b) = (addr(&w.alice), addr(&w.bob));
    let bob = SecretKey::from_seed(w.bob.seed());
    let all = w.acct(&b).balance;
    let tx = w.transfer(&bob, a, all);
    assert_eq!(
        reason(w.one(tx)),
        "insufficient_funds",
        "amount plus fee exceeds balance"
    );
    w.nonces.insert(b, 0);
    let zero = w.transfer(&bob, a, 0);
    assert_eq!(reason(w.one(zero)), "zero_amount");
    w.nonces.insert(b, 0);
    let broke = SecretKey::from_seed([77; 32]);
    let tx = w.transfer(&broke, a, 1);
    assert_eq!(
        reason(w.one(tx)),
        "insufficient_funds",
        "cannot pay the fee"
    );
}

#[test]
fn several_txs_of_one_sender_in_one_block() {
    let mut w = World::new();
    let b = addr(&w.bob);
    let alice = SecretKey::from_seed(w.alice.seed());
    let txs: Vec<_> = (0..5).map(|_| w.transfer(&alice, b, AIT)).collect();
    let b0 = w.acct(&b).balance;
    w.block(&txs).expect("valid block");
    assert_eq!(w.acct(&b).balance, b0 + 5 * AIT);
    assert_eq!(w.acct(&addr(&alice)).nonce, 5);
    // A block with one bad tx is invalid as a whole, and reports which.
    let good = w.transfer(&alice, b, AIT);
    let mut bad = w.transfer(&alice, b, AIT);
    bad.tx.sig = Signature([1; 64]);
    match w.block(&[good, bad]) {
        Err(BlockError::Tx {
            index: 1, error, ..
        }) => assert_eq!(error.reason(), "bad_signature"),
        other => panic!("expected tx 1 to fail, got {other:?}"),
    }
}

#[test]
fn stake_unstake_and_unbonding_release() {
    let mut w = World::new();
    let a = addr(&w.alice);
    let alice = SecretKey::from_seed(w.alice.seed());
    let before = w.acct(&a);
    let stake = w.tx(
        &alice,
        TxKind::Stake {
            amount: 2_000 * AIT,
        },
    );
    let fee = stake.tx.fee;
    w.one(stake).expect("stake");
    assert_eq!(w.acct(&a).stake, 2_000 * AIT);
    assert_eq!(w.acct(&a).balance, before.balance - 2_000 * AIT - fee);
    let pk: PublicKey = read(&w.state, &keys::validator_key(&a))
        .expect("read")
        .expect("key recorded");
    assert_eq!(pk, alice.public());
    let too_much = w.tx(
        &alice,
        TxKind::Unstake {
            amount: 3_000 * AIT,
        },
    );
    assert_eq!(reason(w.one(too_much)), "insufficient_stake");
    w.nonces.insert(a, 1);
    let unstake = w.tx(&alice, TxKind::Unstake { amount: 500 * AIT });
    w.one(unstake).expect("unstake");
    let unstaked_at = w.height;
    assert_eq!(w.acct(&a).stake, 1_500 * AIT);
    let bal = w.acct(&a).balance;
    while w.height < unstaked_at + 9 {
        w.block(&[]).expect("empty block");
        assert_eq!(
            w.acct(&a).balance,
            bal,
            "not released before unbonding_blocks"
        );
    }
    w.block(&[]).expect("release block");
    assert_eq!(w.acct(&a).balance, bal + 500 * AIT);
    assert!(
        read::<Vec<(Address, u64)>>(&w.state, &keys::unbonding(w.height))
            .expect("read")
            .is_none()
    );
}

#[test]
fn authorize_and_param_update_need_an_authority() {
    let mut w = World::new();
    let alice = SecretKey::from_seed(w.alice.seed());
    let authority = SecretKey::from_seed(w.validators[0].seed());
    let tx = w.tx(
        &alice,
        TxKind::Authorize {
            address: addr(&alice),
            allowed: true,
        },
    );
    assert_eq!(reason(w.one(tx)), "not_authority");
    w.nonces.insert(addr(&alice), 0);
    let tx = w.tx(
        &alice,
        TxKind::ParamUpdate {
            key: "base_fee".into(),
            value: 1,
        },
    );
    assert_eq!(reason(w.one(tx)), "not_authority");
    let tx = w.tx(
        &authority,
        TxKind::ParamUpdate {
            key: "nope".into(),
            value: 1,
        },
    );
    assert_eq!(reason(w.one(tx)), "invalid_param");
    w.nonces.insert(addr(&authority), 0);
    let tx = w.tx(
        &authority,
        TxKind::ParamUpdate {
            key: "state_buckets".into(),
            value: 4,
        },
    );
    assert_eq!(reason(w.one(tx)), "invalid_param");
    w.nonces.insert(addr(&authority), 0);
    let tx = w.tx(
        &authority,
        TxKind::ParamUpdate {
            key: "base_fee".into(),
            value: 5,
        },
    );
    w.one(tx).expect("authority may update");
    assert_eq!(
        read::<u64>(&w.state, &keys::param("base_fee")).expect("read"),
        Some(5)
    );
    let tx = w.tx(
        &authority,
        TxKind::Authorize {
            address: addr(&alice),
            allowed: true,
        },
    );
    w.one(tx).expect("authority may authorize");
    let set: BTreeSet<Address> = read(&w.state, keys::AUTHORIZED)
        .expect("read")
        .expect("set");
    assert!(set.contains(&addr(&alice)));
}

#[test]
fn validator_set_rotates_only_at_epoch_boundaries() {
    let mut w = World::new();
    let alice = SecretKey::from_seed(w.alice.seed());
    let authority = SecretKey::from_seed(w.validators[0].seed());
    let auth = w.tx(
        &authority,
        TxKind::Authorize {
            address: addr(&alice),
            allowed: true,
        },
    );
    let stake = w.tx(
        &alice,
        TxKind::Stake {
            amount: 5_000 * AIT,
        },
    );
    let out = w.block(&[auth, stake]).expect("block 1");
    assert_eq!(out.next_validators.len(), 4, "unchanged mid-epoch");
    let mut last = out;
    while w.height < 10 {
        last = w.block(&[]).expect("empty");
    }
    assert_eq!(last.next_validators.len(), 5, "alice joins after height 10");
    assert_eq!(
        last.next_validators.validators()[0].address,
        addr(&alice),
        "highest stake first"
    );
    let active: ValidatorSet = read(&w.state, keys::ACTIVE_SET)
        .expect("read")
        .expect("set");
    assert_eq!(active, last.next_validators);
}

fn receipt_for(w: &World, payment: Hash, id: &[u8], units: u64, price: u64) -> Receipt {
    let core = ReceiptCore {
        receipt_id: Hash::of(id),
        job_id: 1,
        client: addr(&w.alice),
        miner: addr(&w.miner),
        coordinator: addr(&w.coordinator),
        compute_units: units,
        price,
        output_hash: Hash::of(b"output"),
        client_payment_tx: payment,
    };
    Receipt::sign(CHAIN, core, &w.miner, &w.coordinator)
}

#[test]
fn receipt_claim_pays_miner_and_mints_exactly() {
    let mut w = World::new();
    let alice = SecretKey::from_seed(w.alice.seed());
    let (c, m) = (addr(&w.coordinator), addr(&w.miner));
    let pay = w.transfer(&alice, c, 30 * AIT);
    let pay_hash = pay.hash;
    w.one(pay).expect("payment");
    let payment: Payment = read(&w.state, &keys::payment(&pay_hash))
        .expect("read")
        .expect("recorded");
    assert_eq!(payment.amount, 30 * AIT);
    let (c0, m0, s0) = (w.acct(&c).balance, w.acct(&m).balance, w.supply());
    let treasury: Address = read(&w.state, keys::TREASURY)
        .expect("read")
        .expect("treasury");
    let t0 = w.acct(&treasury).balance;
    let r = receipt_for(&w, pay_hash, b"r1", 50, 20 * AIT);
    let bob = SecretKey::from_seed(w.bob.seed());
    let claim = w.tx(
        &bob,
        TxKind::ReceiptClaim {
            receipt: Box::new(r.clone()),
        },
    );
    w.one(claim).expect("claim");
    let mint = 50 * 1_000;
    let (cm, tm) = (mint * 500 / 10_000, mint * 1_000 / 10_000);
    assert_eq!(w.acct(&m).balance, m0 + 20 * AIT + mint);
    assert_eq!(w.acct(&c).balance, c0 - 20 * AIT + cm);
    assert_eq!(w.acct(&treasury).balance, t0 + tm);
    assert_eq!(
        w.supply(),
        s0 + mint + cm + tm,
        "supply grows by the mints only"
    );
    // The same receipt, or another receipt on the same payment, is refused.
    let again = w.tx(
        &bob,
        TxKind::ReceiptClaim {
            receipt: Box::new(r),
        },
    );
    assert_eq!(reason(w.one(again)), "duplicate_receipt");
    w.nonces.insert(addr(&bob), 1);
    let reuse = receipt_for(&w, pay_hash, b"r2", 1, 1);
    let tx = w.tx(
        &bob,
        TxKind::ReceiptClaim {
            receipt: Box::new(reuse),
        },
    );
    assert_eq!(reason(w.one(tx)), "payment_used");
}

#[test]
fn receipt_claim_rejections() {
    let mut w = World::new();
    let alice = SecretKey::from_seed(w.alice.seed());
    let bob = SecretKey::from_seed(w.bob.seed());
    let c = addr(&w.coordinator);
    let pay = w.transfer(&alice, c, 30 * AIT);
    let pay_hash = pay.hash;
    let not_to_coord = w.transfer(&alice, addr(&bob), 30 * AIT);
    let plain_hash = not_to_coord.hash;
    w.block(&[pay, not_to_coord]).expect("payments");
    let mut cases: Vec<(Receipt, &str)> = vec![
        (
            receipt_for(&w, Hash::of(b"none"), b"a", 1, AIT),
            "payment_not_found",
        ),
        (
            receipt_for(&w, plain_hash, b"b", 1, AIT),
            "payment_not_found",
        ),
        (
            receipt_for(&w, pay_hash, b"c", 1, 31 * AIT),
            "payment_too_small",
        ),
        (receipt_for(&w, pay_hash, b"d", u64::MAX, AIT), "overflow"),
    ];
    let mut wrong_client = receipt_for(&w, pay_hash, b"e", 1, AIT);
    wrong_client.core.client = addr(&bob);
    let wrong_client = Receipt::sign(CHAIN, wrong_client.core, &w.miner, &w.coordinator);
    cases.push((wrong_client, "payment_mismatch"));
    let mut forged = receipt_for(&w, pay_hash, b"f", 1, AIT);
    forged.core.compute_units = 1_000_000;
    cases.push((forged, "bad_receipt_signature"));
    let rogue = SecretKey::from_seed([66; 32]);
    let mut core = receipt_for(&w, pay_hash, b"g", 1, AIT).core;
    core.coordinator = addr(&rogue);
    cases.push((
        Receipt::sign(CHAIN, core, &w.miner, &rogue),
        "unknown_coordinator",
    ));
    for (r, want) in cases {
        let tx = w.tx(
            &bob,
            TxKind::ReceiptClaim {
                receipt: Box::new(r),
            },
        );
        assert_eq!(reason(w.one(tx)), want);
        w.nonces.insert(addr(&bob), 0);
    }
}

#[test]
fn receipt_claim_needs_coordinator_funds() {
    let mut w = World::new();
    let alice = SecretKey::from_seed(w.alice.seed());
    let coord = SecretKey::from_seed(w.coordinator.seed());
    let c = addr(&coord);
    let pay = w.transfer(&alice, c, 9_000 * AIT);
    let pay_hash = pay.hash;
    w.one(pay).expect("payment");
    // The coordinator spends what it was paid, then cannot cover the price.
    let spend = w.transfer(&coord, addr(&alice), w.acct(&c).balance - AIT);
    w.one(spend).expect("spend");
    let r = receipt_for(&w, pay_hash, b"r", 1, 9_000 * AIT);
    let bob = SecretKey::from_seed(w.bob.seed());
    let tx = w.tx(
        &bob,
        TxKind::ReceiptClaim {
            receipt: Box::new(r),
        },
    );
    assert_eq!(reason(w.one(tx)), "coordinator_insufficient_funds");
}

fn vote(k: &SecretKey, hash: &[u8], height: u64) -> SignedVote {
    Vote {
        height,
        view: 0,
        phase: Phase::Commit,
        block_hash: Hash::of(hash),
        validator: k.public(),
    }
    .sign(CHAIN, k)
}

#[test]
fn evidence_slashes_once_and_deauthorizes() {
    let mut w = World::new();
    w.block(&[]).expect("height 1");
    let v = SecretKey::from_seed(w.validators[2].seed());
    let va = addr(&v);
    let bob = SecretKey::from_seed(w.bob.seed());
    let stake0 = w.acct(&va).stake;
    let s0 = w.supply();
    let ev = w.tx(
        &bob,
        TxKind::Evidence {
            vote_a: Box::new(vote(&v, b"x", 1)),
            vote_b: Box::new(vote(&v, b"y", 1)),
        },
    );
    w.one(ev).expect("evidence");
    let slash = stake0 / 10;
    assert_eq!(w.acct(&va).stake, stake0 - slash);
    assert_eq!(w.supply(), s0, "slashing moves stake to the treasury");
    let set: BTreeSet<Address> = read(&w.state, keys::AUTHORIZED)
        .expect("read")
        .expect("set");
    assert!(!set.contains(&va));
    let again = w.tx(
        &bob,
        TxKind::Evidence {
            vote_a: Box::new(vote(&v, b"x", 1)),
            vote_b: Box::new(vote(&v, b"z", 1)),
        },
    );
    assert_eq!(reason(w.one(again)), "duplicate_evidence");
}

#[test]
fn evidence_rejections() {
    let mut w = World::new();
    w.block(&[]).expect("height 1");
    let v = SecretKey::from_seed(w.validators[1].seed());
    let bob = SecretKey::from_seed(w.bob.seed());
    let nobody = SecretKey::from_seed([55; 32]);
    let mut forged = vote(&v, b"y", 1);
    forged.vote.block_hash = Hash::of(b"q");
    let cases = [
        (
            vote(&v, b"x", 1),
            vote(&v, b"x", 1),
            "evidence_not_conflicting",
        ),
        (
            vote(&v, b"x", 1),
            vote(&SecretKey::from_seed([1; 32]), b"y", 1),
            "evidence_not_conflicting",
        ),
        (vote(&v, b"x", 1), forged, "bad_evidence_signature"),
        (
            vote(&v, b"x", 50),
            vote(&v, b"y", 50),
            "evidence_future_height",
        ),
        (
            vote(&nobody, b"x", 1),
            vote(&nobody, b"y", 1),
            "not_a_validator",
        ),
    ];
    for (a, b, want) in cases {
        let tx = w.tx(
            &bob,
            TxKind::Evidence {
                vote_a: Box::new(a),
                vote_b: Box::new(b),
            },
        );
        assert_eq!(reason(w.one(tx)), want);
        w.nonces.insert(addr(&bob), 0);
    }
}

#[test]
fn build_block_keeps_valid_txs_and_reports_rejected() {
    let mut w = World::new();
    let b = addr(&w.bob);
    let alice = SecretKey::from_seed(w.alice.seed());
    let t1 = w.transfer(&alice, b, AIT);
    let t2 = w.transfer(&alice, b, AIT);
    let mut forged_nonce = w.transfer(&alice, b, AIT);
    forged_nonce.tx.nonce = 9;
    let forged_nonce = HashedTx::new(forged_nonce.tx);
    let built = build_block(
        &w.state,
        w.env(),
        vec![t1.clone(), forged_nonce, t2.clone()],
        0,
    )
    .expect("build");
    assert_eq!(built.txs, vec![t1, t2]);
    assert_eq!(built.rejected.len(), 1);
    assert_eq!(built.rejected[0].1.reason(), "bad_nonce");
    let replay =
        execute_block(&w.state, w.env(), &built.txs, |_| true).expect("same block validates");
    assert_eq!(
        replay.changes, built.outcome.changes,
        "builder and validator agree"
    );
}

#[test]
fn pooled_tx_with_swapped_signature_is_still_checked() {
    use crate::mempool::{Mempool, MempoolConfig};
    let mut w = World::new();
    let alice = SecretKey::from_seed(w.alice.seed());
    let tx = w.transfer(&alice, addr(&w.bob), AIT);
    let mut pool = Mempool::new(CHAIN, MempoolConfig::default());
    let params = Params {
        rotation_interval: 10,
        unbonding_blocks: 10,
        ..Params::default()
    };
    pool.admit(tx.clone(), &w.state, &params).expect("admitted");
    let mut forged = tx.clone();
    forged.tx.sig = Signature([3; 64]);
    assert_eq!(
        forged.hash, tx.hash,
        "the hash does not cover the signature"
    );
    let r = execute_block(&w.state, w.env(), &[forged], |t| pool.is_verified(t));
    assert!(
        matches!(
            r,
            Err(BlockError::Tx {
                index: 0,
                error: TxError::BadSignature(_),
                ..
            })
        ),
        "{r:?}"
    );
    execute_block(&w.state, w.env(), &[tx], |t| pool.is_verified(t)).expect("the pooled tx itself");
}

mod props {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Transfer {
            from: usize,
            to: usize,
            amount: u64,
        },
        PayCoordinator {
            from: usize,
            amount: u64,
        },
        Claim {
            payment: usize,
            units: u64,
            price: u64,
            reuse_id: bool,
        },
        Stake {
            who: usize,
            amount: u64,
        },
        Unstake {
            who: usize,
            amount: u64,
        },
        Replay {
            which: usize,
        },
        BadNonce {
            who: usize,
        },
        EmptyBlock,
    }

    fn op() -> impl Strategy<Value = Op> {
        let amount = prop_oneof![1u64..1_000, 1_000u64..50 * AIT, Just(u64::MAX / 4)];
        prop_oneof![
            4 => (0usize..4, 0usize..4, amount.clone()).prop_map(|(from, to, amount)| Op::Transfer { from, to, amount }),
            2 => (0usize..4, amount.clone()).prop_map(|(from, amount)| Op::PayCoordinator { from, amount }),
            2 => (0usize..8, 0u64..100_000, 0u64..60 * AIT, any::<bool>())
                .prop_map(|(payment, units, price, reuse_id)| Op::Claim { payment, units, price, reuse_id }),
            1 => (0usize..4, amount.clone()).prop_map(|(who, amount)| Op::Stake { who, amount }),
            1 => (0usize..4, amount).prop_map(|(who, amount)| Op::Unstake { who, amount }),
            1 => (0usize..64).prop_map(|which| Op::Replay { which }),
            1 => (0usize..4).prop_map(|who| Op::BadNonce { who }),
            1 => Just(Op::EmptyBlock),
        ]
    }

    /// Sum of every balance and stake in state plus stake waiting in unbonding queues.
    fn held(w: &World) -> u128 {
        let mut total = 0u128;
        for (k, v) in &w.state.0 {
            if k.starts_with(b"acct/") {
                let a: Account = crate::codec::decode(v, 1024).expect("account");
                total += u128::from(a.balance) + u128::from(a.stake);
            } else if k.starts_with(b"unbond/") {
                let q: Vec<(Address, u64)> = crate::codec::decode(v, 1 << 20).expect("queue");
                total += q.iter().map(|(_, x)| u128::from(*x)).sum::<u128>();
            }
        }
        total
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn ledger_invariants_hold_over_random_txs(ops in proptest::collection::vec(op(), 1..60)) {
            let mut w = World::new();
            let actors = [
                SecretKey::from_seed(w.alice.seed()),
                SecretKey::from_seed(w.bob.seed()),
                SecretKey::from_seed(w.coordinator.seed()),
                SecretKey::from_seed(w.miner.seed()),
            ];
            let coord = addr(&w.coordinator);
            let mut committed: Vec<HashedTx> = vec![];
            let mut payments: Vec<Hash> = vec![];
            let mut used_payments = BTreeSet::new();
            let mut claimed_ids = BTreeSet::new();
            let mut last_id = Hash::of(b"receipt-0");
            prop_assert_eq!(held(&w), u128::from(w.supply()));

            for (step, op) in ops.into_iter().enumerate() {
                let supply0 = w.supply();
                let nonces0: Vec<u64> = actors.iter().map(|k| w.acct(&addr(k)).nonce).collect();
                // Build the tx against the chain's real nonces so most ops are otherwise valid.
                let next_nonce = |w: &World, k: &SecretKey| w.acct(&addr(k)).nonce + 1;
                let sign = |w: &World, k: &SecretKey, kind: TxKind, nonce: u64| {
                    let _ = w;
                    HashedTx::new(Tx::signed(CHAIN, kind, k, nonce, 10 * AIT / 1000))
                };
                let tx = match op {
                    Op::Transfer { from, to, amount } => {
                        let k = &actors[from];
                        Some(sign(&w, k, TxKind::Transfer { to: addr(&actors[to]), amount }, next_nonce(&w, k)))
                    }
                    Op::PayCoordinator { from, amount } => {
                        let k = &actors[from];
                        Some(sign(&w, k, TxKind::Transfer { to: coord, amount }, next_nonce(&w, k)))
                    }
                    Op::Claim { payment, units, price, reuse_id } => {
                        let pay = payments.get(payment).copied().unwrap_or(Hash::of(b"missing"));
                        let id = if reuse_id { last_id } else { Hash::of(&(step as u64).to_le_bytes()) };
                        last_id = id;
                        let mut r = receipt_for(&w, pay, b"", units, price);
                        // The payment's actual client, so matching claims can succeed.
                        if let Ok(Some(p)) = read::<Payment>(&w.state, &keys::payment(&pay)) {
                            r.core.client = p.client;
                        }
                        r.core.receipt_id = id;
                        let r = Receipt::sign(CHAIN, r.core, &w.miner, &w.coordinator);
                        let k = &actors[1];
                        Some(sign(&w, k, TxKind::ReceiptClaim { receipt: Box::new(r) }, next_nonce(&w, k)))
                    }
                    Op::Stake { who, amount } => {
                        let k = &actors[who];
                        Some(sign(&w, k, TxKind::Stake { amount }, next_nonce(&w, k)))
                    }
                    Op::Unstake { who, amount } => {
                        let k = &actors[who];
                        Some(sign(&w, k, TxKind::Unstake { amount }, next_nonce(&w, k)))
                    }
                    Op::Replay { which } => committed.get(which).cloned(),
                    Op::BadNonce { who } => {
                        let k = &actors[who];
                        let n = next_nonce(&w, k);
                        Some(sign(&w, k, TxKind::Transfer { to: coord, amount: 1 }, n + 1 + (step as u64 % 3)))
                    }
                    Op::EmptyBlock => None,
                };
                let is_replay = matches!(op, Op::Replay { .. });
                let is_bad_nonce = matches!(op, Op::BadNonce { .. });
                let txs: Vec<HashedTx> = tx.into_iter().collect();
                let built = build_block(&w.state, w.env(), txs.clone(), 0).expect("build");
                // What the builder kept, a validator accepts, with the same effects.
                let out = execute_block(&w.state, w.env(), &built.txs, |_| false).expect("validates");
                prop_assert_eq!(&out.changes, &built.outcome.changes);
                if is_replay || is_bad_nonce {
                    prop_assert!(built.txs.is_empty(), "replayed or out-of-order tx was accepted");
                }
                w.state.apply(&out.changes);
                w.height += 1;

                prop_assert_eq!(w.supply(), supply0 + out.minted, "supply moves only by mints");
                prop_assert_eq!(held(&w), u128::from(w.supply()), "value is conserved");
                for t in &built.txs {
                    if let TxKind::Transfer { to, .. } = &t.tx.kind {
                        if *to == coord {
                            payments.push(t.hash);
                        }
                    }
                    if let TxKind::ReceiptClaim { receipt } = &t.tx.kind {
                        prop_assert!(used_payments.insert(receipt.core.client_payment_tx), "payment used twice");
                        prop_assert!(claimed_ids.insert(receipt.core.receipt_id), "receipt claimed twice");
                    } else {
                        prop_assert_eq!(out.minted, 0, "only receipt claims mint");
                    }
                    committed.push(t.clone());
                }
                for (k, n0) in actors.iter().zip(nonces0) {
                    let sent = built.txs.iter().filter(|t| t.tx.sender() == addr(k)).count() as u64;
                    prop_assert_eq!(w.acct(&addr(k)).nonce, n0 + sent, "nonces advance by one per tx");
                }
            }
            // Every committed tx is rejected if replayed now.
            for t in committed.iter().take(16) {
                let r = execute_block(&w.state, w.env(), std::slice::from_ref(t), |_| false);
                prop_assert!(r.is_err(), "replay of {} accepted", t.hash);
            }
        }
    }
}

#[test]
fn prefetched_accounts_change_nothing() {
    let mut w = World::new();
    let alice = SecretKey::from_seed(w.alice.seed());
    let bob = SecretKey::from_seed(w.bob.seed());
    let mut txs: Vec<HashedTx> = (0..600u32)
        .map(|i| {
            let mut to = [0u8; 20];
            to[..4].copy_from_slice(&(i % 450).to_be_bytes());
            w.transfer(&alice, Address(to), AIT + u64::from(i))
        })
        .collect();
    txs.push(w.transfer(&bob, addr(&alice), AIT));
    txs.push(w.transfer(&alice, addr(&alice), AIT));
    txs.push(w.transfer(&alice, addr(&bob), AIT));
    let run = |threads: usize| {
        let mut exec = Executor::new(&w.state, w.env()).expect("executor");
        if threads > 1 {
            exec.prefetch_on(&txs, threads);
        }
        for t in &txs {
            exec.apply_tx(t, Sigs::Verified).expect("applies");
        }
        let out = exec.finish().expect("finish");
        (
            out.changes
                .iter()
                .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
                .collect::<Vec<_>>(),
            out.fees,
        )
    };
    let alone = run(1);
    assert!(alone.0.len() > 450);
    for threads in [2, 3] {
        assert_eq!(run(threads), alone, "{threads} threads");
    }
}
