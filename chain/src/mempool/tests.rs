use super::*;
use crate::crypto::{PublicKey, SecretKey};
use crate::receipt::{Receipt, ReceiptCore};
use crate::state::{keys, MemState};
use crate::tx::Tx;
use crate::tx::TxKind;
use crate::vote::{Phase, Vote};
use proptest::prelude::*;

const CHAIN: &str = "ait-test";
const FEE: u64 = 10_000;
const SINK: Address = Address([0xee; 20]);

fn key(i: u8) -> SecretKey {
    SecretKey::from_seed([i; 32])
}

fn addr(i: u8) -> Address {
    Address::of(&key(i).public())
}

fn transfer_amount(i: u8, nonce: u64, fee: u64, amount: u64) -> HashedTx {
    HashedTx::new(Tx::signed(
        CHAIN,
        TxKind::Transfer { to: SINK, amount },
        &key(i),
        nonce,
        fee,
    ))
}

fn transfer(i: u8, nonce: u64, fee: u64) -> HashedTx {
    transfer_amount(i, nonce, fee, 1)
}

/// A tx whose size is set by the length of its parameter name; it spends only its fee.
fn sized(i: u8, nonce: u64, fee: u64, name_len: usize) -> HashedTx {
    HashedTx::new(Tx::signed(
        CHAIN,
        TxKind::ParamUpdate {
            key: "x".repeat(name_len),
            value: 1,
        },
        &key(i),
        nonce,
        fee,
    ))
}

fn set_account(state: &mut MemState, a: &Address, balance: u64, nonce: u64) {
    let acct = Account {
        balance,
        nonce,
        stake: 0,
    };
    state
        .0
        .insert(keys::account(a), crate::codec::encode(&acct));
}

/// Senders `ids`, each with `balance` and nonce 0.
fn funded(ids: impl IntoIterator<Item = u8>, balance: u64) -> MemState {
    let mut s = MemState::default();
    for i in ids {
        set_account(&mut s, &addr(i), balance, 0);
    }
    s
}

fn pool() -> Mempool {
    Mempool::new(CHAIN, MempoolConfig::default())
}

fn pool_with(max_txs: usize, max_bytes: usize) -> Mempool {
    Mempool::new(
        CHAIN,
        MempoolConfig {
            max_txs,
            max_bytes,
            ..MempoolConfig::default()
        },
    )
}

fn params() -> Params {
    Params::default()
}

fn admit(p: &mut Mempool, s: &MemState, tx: &HashedTx) -> Result<Admitted, MempoolError> {
    let r = p.admit(tx.clone(), s, &params());
    p.check_invariants();
    r
}

fn reason(r: Result<Admitted, MempoolError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) => e.reason(),
    }
}

fn hashes(txs: &[HashedTx]) -> Vec<Hash> {
    txs.iter().map(|t| t.hash).collect()
}

#[test]
fn admits_and_answers_queries() {
    let s = funded([1, 2], 1_000_000);
    let mut p = pool();
    let a1 = transfer(1, 1, FEE);
    let a2 = transfer(1, 2, FEE);
    let b1 = transfer(2, 1, FEE);
    let got = admit(&mut p, &s, &a1).expect("admitted");
    assert_eq!(
        got,
        Admitted {
            hash: a1.hash,
            replaced: None,
            evicted: vec![]
        }
    );
    admit(&mut p, &s, &b1).expect("admitted");
    admit(&mut p, &s, &a2).expect("admitted");
    assert_eq!(p.len(), 3);
    assert!(!p.is_empty());
    assert_eq!(p.bytes(), a1.len + a2.len + b1.len);
    assert!(p.contains(&a2.hash));
    assert_eq!(p.get(&b1.hash), Some(&b1));
    assert_eq!(p.get(&Hash::ZERO), None);
    let mut expected = vec![a1.hash, a2.hash, b1.hash];
    if addr(2) < addr(1) {
        expected.rotate_left(2);
    }
    assert_eq!(
        p.iter().map(|t| t.hash).collect::<Vec<_>>(),
        expected,
        "by sender, then nonce"
    );
    assert_eq!(
        hashes(&p.sender_txs(&addr(1)).cloned().collect::<Vec<_>>()),
        vec![a1.hash, a2.hash]
    );
    assert_eq!(p.pending_nonce(&s, &addr(1)).expect("state"), 3);
    assert_eq!(p.pending_nonce(&s, &addr(2)).expect("state"), 2);
    assert_eq!(p.pending_nonce(&s, &addr(3)).expect("state"), 1);
}

#[test]
fn is_verified_needs_the_same_signature() {
    let s = funded([1], 1_000_000);
    let mut p = pool();
    let tx = transfer(1, 1, FEE);
    admit(&mut p, &s, &tx).expect("admitted");
    assert!(p.is_verified(&tx));
    let mut forged = tx.clone();
    forged.tx.sig.0[10] ^= 1;
    assert_eq!(
        forged.hash, tx.hash,
        "the hash does not cover the signature"
    );
    assert!(p.contains(&forged.hash));
    assert!(
        !p.is_verified(&forged),
        "a swapped signature is not verified"
    );
    assert!(!p.is_verified(&transfer(1, 2, FEE)));
}

#[test]
fn rejects_too_large() {
    let s = funded([1], 1_000_000);
    let mut p = pool();
    let params = Params {
        max_tx_bytes: 600,
        ..params()
    };
    let big = sized(1, 1, 100_000, 700);
    let r = p.admit(big.clone(), &s, &params);
    assert!(matches!(r, Err(MempoolError::TooLarge { len, max: 600 }) if len == big.len));
    assert!(r.as_ref().is_err_and(|e| !e.is_invalid()));
    assert_eq!(reason(r), "too_large");
    assert_eq!(
        reason(p.admit(sized(1, 1, 100_000, 300), &s, &params)),
        "ok"
    );
}

#[test]
fn rejects_wrong_chain() {
    let s = funded([1], 1_000_000);
    let mut p = pool();
    let tx = HashedTx::new(Tx::signed(
        "other-chain",
        TxKind::Transfer {
            to: SINK,
            amount: 1,
        },
        &key(1),
        1,
        FEE,
    ));
    let r = admit(&mut p, &s, &tx);
    assert!(r.as_ref().is_err_and(MempoolError::is_invalid));
    assert_eq!(reason(r), "wrong_chain");
}

#[test]
fn rejects_bad_signature_and_bad_key() {
    let s = funded([1], 1_000_000);
    let mut p = pool();
    let mut tx = transfer(1, 1, FEE);
    tx.tx.sig.0[40] ^= 1;
    let r = admit(&mut p, &s, &tx);
    assert_eq!(
        r,
        Err(MempoolError::BadSignature {
            part: SigPart::Sender,
            fault: SigFault::Sig(SigError::Invalid)
        })
    );
    assert!(r.as_ref().is_err_and(MempoolError::is_invalid));
    assert_eq!(reason(r), "bad_signature");
    assert!(p.is_empty());

    // A sender key that is not a curve point.
    let mut not_point = [0u8; 32];
    not_point[0] = 2;
    let mut raw = transfer(1, 1, FEE).tx;
    raw.sender_pubkey = PublicKey(not_point);
    let bad_key = HashedTx::new(raw);
    let mut s = s;
    set_account(&mut s, &bad_key.tx.sender(), 1_000_000, 0);
    assert_eq!(
        admit(&mut p, &s, &bad_key),
        Err(MempoolError::BadSignature {
            part: SigPart::Sender,
            fault: SigFault::Sig(SigError::BadKey)
        })
    );
    // The good tx is still admitted after its forged twin was turned away.
    assert_eq!(reason(admit(&mut p, &s, &transfer(1, 1, FEE))), "ok");
}

#[test]
fn rejects_stale_nonce() {
    let mut s = MemState::default();
    set_account(&mut s, &addr(1), 1_000_000, 5);
    let mut p = pool();
    for n in [0, 3, 5] {
        let r = admit(&mut p, &s, &transfer(1, n, FEE));
        assert!(
            matches!(r, Err(MempoolError::StaleNonce { nonce, account_nonce: 5 }) if nonce == n)
        );
        assert_eq!(reason(r), "stale_nonce");
    }
    assert_eq!(reason(admit(&mut p, &s, &transfer(1, 6, FEE))), "ok");
}

#[test]
fn rejects_nonce_more_than_64_ahead() {
    let mut s = MemState::default();
    set_account(&mut s, &addr(1), 1_000_000_000, 10);
    let mut p = pool();
    let r = admit(&mut p, &s, &transfer(1, 10 + 65, FEE));
    assert_eq!(
        r,
        Err(MempoolError::NonceGapTooLarge {
            nonce: 75,
            account_nonce: 10,
            max_ahead: 64
        })
    );
    assert_eq!(reason(r), "nonce_gap_too_large");
    assert_eq!(reason(admit(&mut p, &s, &transfer(1, 10 + 64, FEE))), "ok");
    for n in 11..74 {
        assert_eq!(reason(admit(&mut p, &s, &transfer(1, n, FEE))), "ok");
    }
    assert_eq!(p.sender_txs(&addr(1)).count(), 64);
    assert_eq!(p.pending_nonce(&s, &addr(1)).expect("state"), 75);
}

#[test]
fn rejects_fee_below_floor() {
    let s = funded([1], 1_000_000);
    let mut p = pool();
    let probe = transfer(1, 1, 0);
    let min = probe.tx.min_fee(params().base_fee, params().fee_per_byte);
    // The fee is fixed-width, so changing it does not change the length or the floor.
    let low = transfer(1, 1, min - 1);
    assert_eq!(
        low.tx.min_fee(params().base_fee, params().fee_per_byte),
        min
    );
    let r = admit(&mut p, &s, &low);
    assert_eq!(r, Err(MempoolError::FeeTooLow { fee: min - 1, min }));
    assert_eq!(reason(r), "fee_too_low");
    assert_eq!(reason(admit(&mut p, &s, &transfer(1, 1, min))), "ok");
}

#[test]
fn funds_cover_all_pending_txs() {
    // Room for exactly two transfers of 1 unit at FEE.
    let s = funded([1], 2 * (FEE + 1));
    let mut p = pool();
    assert_eq!(reason(admit(&mut p, &s, &transfer(1, 1, FEE))), "ok");
    assert_eq!(reason(admit(&mut p, &s, &transfer(1, 3, FEE))), "ok");
    let r = admit(&mut p, &s, &transfer(1, 2, FEE));
    assert_eq!(
        r,
        Err(MempoolError::InsufficientFunds {
            balance: 2 * (FEE + 1),
            needed: 3 * u128::from(FEE + 1)
        })
    );
    assert_eq!(reason(r), "insufficient_funds");
    // A single tx above the balance, with amounts near u64::MAX: no overflow anywhere.
    let r = admit(&mut p, &s, &transfer_amount(1, 4, FEE, u64::MAX));
    assert_eq!(reason(r), "insufficient_funds");
    let rich = funded([2], u64::MAX);
    assert_eq!(
        reason(admit(
            &mut p,
            &rich,
            &transfer_amount(2, 1, FEE, u64::MAX - FEE)
        )),
        "ok"
    );
    let r = admit(&mut p, &rich, &transfer_amount(2, 2, FEE, u64::MAX - FEE));
    assert!(
        matches!(r, Err(MempoolError::InsufficientFunds { needed, .. }) if needed == 2 * u128::from(u64::MAX))
    );
}

#[test]
fn rejects_duplicate() {
    let s = funded([1], 1_000_000);
    let mut p = pool();
    let tx = transfer(1, 1, FEE);
    assert_eq!(reason(admit(&mut p, &s, &tx)), "ok");
    let r = admit(&mut p, &s, &tx);
    assert_eq!(r, Err(MempoolError::Duplicate));
    assert_eq!(reason(r), "duplicate");
    assert_eq!(p.len(), 1);
}

#[test]
fn higher_fee_replaces_same_nonce() {
    let s = funded([1], 100_000);
    let mut p = pool();
    let old = transfer(1, 1, FEE);
    admit(&mut p, &s, &old).expect("admitted");
    admit(&mut p, &s, &transfer(1, 2, FEE)).expect("admitted");

    for fee in [FEE, FEE - 1] {
        let r = admit(&mut p, &s, &transfer_amount(1, 1, fee, 7));
        assert_eq!(
            r,
            Err(MempoolError::ReplacementUnderpriced {
                fee,
                pending_fee: FEE
            })
        );
        assert_eq!(reason(r), "replacement_underpriced");
    }
    let new = transfer(1, 1, FEE + 1);
    let got = admit(&mut p, &s, &new).expect("replaced");
    assert_eq!(got.replaced, Some(old.hash));
    assert!(!p.contains(&old.hash));
    assert!(p.contains(&new.hash));
    assert_eq!(p.len(), 2);

    // Funds are re-checked with the replacement: 100_000 covers FEE+1 (nonce 2) plus at most
    // 89_999 more.
    let greedy = transfer_amount(1, 1, FEE + 2, 100_000 - (FEE + 1) - (FEE + 2) + 1);
    assert_eq!(reason(admit(&mut p, &s, &greedy)), "insufficient_funds");
    assert!(
        p.contains(&new.hash),
        "a failed replacement changes nothing"
    );
    let fits = transfer_amount(1, 1, FEE + 2, 100_000 - (FEE + 1) - (FEE + 2));
    assert_eq!(reason(admit(&mut p, &s, &fits)), "ok");
}

#[test]
fn full_pool_evicts_lowest_fee_or_rejects() {
    let s = funded(1..=5, 1_000_000);
    let mut p = pool_with(3, usize::MAX);
    let low = transfer(1, 1, FEE);
    admit(&mut p, &s, &low).expect("admitted");
    admit(&mut p, &s, &transfer(2, 1, 3 * FEE)).expect("admitted");
    admit(&mut p, &s, &transfer(3, 1, 2 * FEE)).expect("admitted");

    let r = admit(&mut p, &s, &transfer(4, 1, FEE));
    assert_eq!(
        r,
        Err(MempoolError::MempoolFull),
        "equal fee does not evict"
    );
    assert_eq!(reason(r), "mempool_full");
    let got = admit(&mut p, &s, &transfer(4, 1, FEE + 1)).expect("evicts");
    assert_eq!(got.evicted, vec![low.hash]);
    assert_eq!(p.len(), 3);
    assert!(!p.contains(&low.hash));
}

#[test]
fn eviction_takes_a_senders_highest_nonce_only() {
    let s = funded(1..=5, 1_000_000);
    let mut p = pool_with(3, usize::MAX);
    // Sender 1's cheapest tx is its first; evicting it would strand nonce 2.
    let a1 = transfer(1, 1, FEE);
    let a2 = transfer(1, 2, 5 * FEE);
    let b1 = transfer(2, 1, 2 * FEE);
    for tx in [&a1, &a2, &b1] {
        admit(&mut p, &s, tx).expect("admitted");
    }
    let got = admit(&mut p, &s, &transfer(3, 1, 3 * FEE)).expect("evicts");
    assert_eq!(got.evicted, vec![b1.hash]);
    assert!(p.contains(&a1.hash) && p.contains(&a2.hash));
}

#[test]
fn eviction_never_takes_the_newcomers_own_sender() {
    let s = funded(1..=5, 1_000_000);
    let mut p = pool_with(3, usize::MAX);
    let b1 = transfer(2, 1, 5 * FEE);
    for tx in [&transfer(1, 1, FEE), &transfer(1, 2, FEE), &b1] {
        admit(&mut p, &s, tx).expect("admitted");
    }
    // Sender 1's own tail (fee FEE) is lower, but evicting it would leave a gap below nonce 3.
    assert_eq!(
        reason(admit(&mut p, &s, &transfer(1, 3, 4 * FEE))),
        "mempool_full"
    );
    let got = admit(&mut p, &s, &transfer(1, 3, 6 * FEE)).expect("evicts");
    assert_eq!(got.evicted, vec![b1.hash]);
}

#[test]
fn byte_bound_evicts_as_many_as_needed_in_fee_order() {
    let s = funded(1..=5, 1_000_000);
    let a1 = transfer(1, 1, FEE);
    let a2 = transfer(1, 2, FEE + 100);
    let b1 = transfer(2, 1, 9 * FEE);
    let total = a1.len + a2.len + b1.len;
    let mut p = pool_with(100, total);
    for tx in [&a1, &a2, &b1] {
        admit(&mut p, &s, tx).expect("admitted");
    }
    // A newcomer longer than one transfer but shorter than two: both of sender 1's txs go,
    // tail first (a2, then the a1 it exposes), and b1 (higher fee) stays.
    let big = sized(3, 1, 5 * FEE, a1.len);
    assert!(big.len > a1.len && big.len <= a1.len + a2.len);
    let got = admit(&mut p, &s, &big).expect("evicts");
    assert_eq!(got.evicted, vec![a2.hash, a1.hash]);
    assert!(p.contains(&b1.hash));
    assert!(p.bytes() <= total);
    // Larger than the whole pool: never fits.
    let mut huge_pool = pool_with(100, 100);
    assert_eq!(
        reason(admit(&mut huge_pool, &s, &transfer(1, 1, FEE))),
        "mempool_full"
    );
}

#[test]
fn replacement_can_evict_for_bytes() {
    let s = funded(1..=5, 1_000_000);
    let a1 = sized(1, 1, FEE, 10);
    let b1 = transfer(2, 1, FEE);
    let mut p = pool_with(100, a1.len + b1.len);
    admit(&mut p, &s, &a1).expect("admitted");
    admit(&mut p, &s, &b1).expect("admitted");
    let bigger = sized(1, 1, 2 * FEE, 60);
    let got = admit(&mut p, &s, &bigger).expect("replaces and evicts");
    assert_eq!(got.replaced, Some(a1.hash));
    assert_eq!(got.evicted, vec![b1.hash]);
    assert_eq!(p.len(), 1);
}

#[test]
fn select_orders_by_fee_and_keeps_nonce_order() {
    let s = funded(1..=4, 10_000_000);
    let mut p = pool();
    let a1 = transfer(1, 1, FEE);
    let a2 = transfer(1, 2, 50 * FEE);
    let b1 = transfer(2, 1, 30 * FEE);
    let c1 = transfer(3, 1, 20 * FEE);
    let c3 = transfer(3, 3, 90 * FEE); // gap at nonce 2 stops sender 3
    let d2 = transfer(4, 2, 99 * FEE); // nothing at the account's next nonce
    for tx in [&a1, &a2, &b1, &c1, &c3, &d2] {
        admit(&mut p, &s, tx).expect("admitted");
    }
    let block = p.select(&s, 100, usize::MAX);
    assert_eq!(hashes(&block), vec![b1.hash, c1.hash, a1.hash, a2.hash]);
    assert_eq!(p.select(&s, 100, usize::MAX), block, "deterministic");
    assert_eq!(hashes(&p.select(&s, 2, usize::MAX)), vec![b1.hash, c1.hash]);
    assert!(p.select(&s, 0, usize::MAX).is_empty());
}

#[test]
fn select_respects_bytes_and_skips_a_sender_that_does_not_fit() {
    let s = funded(1..=3, 10_000_000);
    let mut p = pool();
    let big = sized(1, 1, 90 * FEE, 400);
    let big_next = transfer(1, 2, 99 * FEE);
    let small = transfer(2, 1, FEE);
    for tx in [&big, &big_next, &small] {
        admit(&mut p, &s, tx).expect("admitted");
    }
    let room = small.len + big_next.len + 10;
    assert!(room < big.len);
    // The big tx does not fit, and its sender's nonce 2 cannot go without it.
    assert_eq!(hashes(&p.select(&s, 100, room)), vec![small.hash]);
    let all = p.select(&s, 100, big.len + big_next.len + small.len);
    assert_eq!(all.len(), 3);
    assert!(p.select(&s, 100, 0).is_empty());
}

#[test]
fn select_reads_state_for_nonce_and_funds() {
    let mut s = funded([1, 2], 1_000_000);
    let mut p = pool();
    let a: Vec<HashedTx> = (1..=3).map(|n| transfer(1, n, FEE)).collect();
    let b: Vec<HashedTx> = (1..=3).map(|n| transfer(2, n, 2 * FEE)).collect();
    for tx in a.iter().chain(&b) {
        admit(&mut p, &s, tx).expect("admitted");
    }
    // Sender 1's nonce 1 committed elsewhere (pool not yet told); sender 2's balance dropped
    // to cover only two of its txs.
    set_account(&mut s, &addr(1), 1_000_000, 1);
    set_account(&mut s, &addr(2), 2 * (2 * FEE + 1), 0);
    let block = p.select(&s, 100, usize::MAX);
    assert_eq!(
        hashes(&block),
        vec![b[0].hash, b[1].hash, a[1].hash, a[2].hash]
    );
}

#[test]
fn remove_committed_drops_included_stale_and_unfunded() {
    let mut s = funded([1, 2, 3], 1_000_000);
    let mut p = pool();
    let a: Vec<HashedTx> = (1..=3).map(|n| transfer(1, n, FEE)).collect();
    let b: Vec<HashedTx> = (1..=4).map(|n| transfer(2, n, FEE)).collect();
    let c1 = transfer(3, 1, FEE);
    for tx in a.iter().chain(&b).chain([&c1]) {
        admit(&mut p, &s, tx).expect("admitted");
    }
    let block = vec![a[0].clone(), b[0].clone()];
    // Execute: sender 1 advanced by its included tx and, through a block we did not build,
    // also nonce 2; sender 2 advanced by one and lost most of its balance; sender 3 untouched.
    set_account(&mut s, &addr(1), 1_000_000, 2);
    set_account(&mut s, &addr(2), 2 * (FEE + 1) + 5, 1);
    p.remove_committed(&hashes(&block), &s).expect("state");
    p.check_invariants();
    assert_eq!(
        p.iter().map(|t| t.hash).collect::<Vec<_>>().len(),
        1 + 2 + 1
    );
    assert!(
        !p.contains(&a[0].hash) && !p.contains(&a[1].hash),
        "included and stale"
    );
    assert!(p.contains(&a[2].hash));
    assert!(p.contains(&b[1].hash) && p.contains(&b[2].hash));
    assert!(!p.contains(&b[3].hash), "highest nonce no longer funded");
    assert!(p.contains(&c1.hash));
    // Unknown hashes are harmless.
    p.remove_committed(&[Hash::ZERO], &s).expect("state");
    assert_eq!(p.len(), 4);
}

#[test]
fn sweep_reaches_senders_the_block_did_not_name() {
    let mut s = funded(1..=3, 1_000_000);
    let mut p = pool();
    let tx = transfer(3, 1, FEE);
    admit(&mut p, &s, &tx).expect("admitted");
    // A competing tx of sender 3 (not in our pool) committed.
    set_account(&mut s, &addr(3), 1_000_000, 1);
    p.remove_committed(&[], &s).expect("state");
    assert!(p.is_empty());
}

#[test]
fn batch_rejects_only_the_forged_tx() {
    let s = funded(1..=10, 1_000_000);
    let mut p = pool();
    let mut txs: Vec<HashedTx> = (1..=10).map(|i| transfer(i, 1, FEE)).collect();
    txs[4].tx.sig.0[33] ^= 0x10;
    let results = p.admit_batch(txs.clone(), &s, &params());
    p.check_invariants();
    assert_eq!(results.len(), 10);
    for (i, r) in results.iter().enumerate() {
        if i == 4 {
            assert_eq!(
                r.as_ref().map_err(MempoolError::reason),
                Err("bad_signature")
            );
        } else {
            assert_eq!(r.as_ref().map(|a| a.hash), Ok(txs[i].hash), "tx {i}");
        }
    }
    assert_eq!(p.len(), 9);
    assert!(!p.contains(&txs[4].hash));
}

#[test]
fn batch_mixes_cheap_rejections_and_sees_its_own_earlier_txs() {
    let mut s = funded(1..=4, 1_000_000);
    set_account(&mut s, &addr(4), 2 * (FEE + 1), 0);
    let mut p = pool();
    let known = transfer(3, 1, FEE);
    admit(&mut p, &s, &known).expect("admitted");
    let a1 = transfer(1, 1, FEE);
    let a1_better = transfer(1, 1, 2 * FEE);
    let batch = vec![
        a1.clone(),
        transfer(1, 2, FEE),
        transfer(2, 1, 1),   // fee too low
        known.clone(),       // already pooled
        a1_better.clone(),   // replaces a1 from earlier in this batch
        transfer(1, 2, FEE), // byte-identical copy within the batch
        transfer(4, 1, FEE),
        transfer(4, 2, FEE),
        transfer(4, 3, FEE), // the batch's own earlier txs use up the balance
        transfer(2, 0, FEE), // stale
        transfer_amount(1, 1, FEE + 5, 2), // below a1_better's fee
    ];
    let reasons: Vec<&str> = p
        .admit_batch(batch, &s, &params())
        .into_iter()
        .map(reason)
        .collect();
    p.check_invariants();
    assert_eq!(
        reasons,
        vec![
            "ok",
            "ok",
            "fee_too_low",
            "duplicate",
            "ok",
            "duplicate",
            "ok",
            "ok",
            "insufficient_funds",
            "stale_nonce",
            "replacement_underpriced",
        ]
    );
    assert!(p.contains(&a1_better.hash) && !p.contains(&a1.hash));
    assert!(p.admit_batch(Vec::new(), &s, &params()).is_empty());
}

#[test]
fn batch_and_single_agree_on_a_batch_that_overflows_the_pool() {
    let s = funded(1..=6, 1_000_000);
    let txs: Vec<HashedTx> = (1..=6)
        .map(|i| transfer(i, 1, u64::from(i) * FEE))
        .collect();
    let mut batched = pool_with(3, usize::MAX);
    let from_batch: Vec<&str> = batched
        .admit_batch(txs.clone(), &s, &params())
        .into_iter()
        .map(reason)
        .collect();
    let mut single = pool_with(3, usize::MAX);
    let one_by_one: Vec<&str> = txs
        .iter()
        .map(|t| reason(admit(&mut single, &s, t)))
        .collect();
    assert_eq!(from_batch, one_by_one);
    assert_eq!(
        hashes(&batched.select(&s, 10, usize::MAX)),
        hashes(&single.select(&s, 10, usize::MAX))
    );
    assert_eq!(batched.len(), 3);
}

fn receipt_claim(sender: u8, corrupt: impl FnOnce(&mut Receipt)) -> HashedTx {
    let miner = key(20);
    let coord = key(21);
    let core = ReceiptCore {
        receipt_id: Hash::of(b"r"),
        job_id: 1,
        client: Address([9; 20]),
        miner: Address::of(&miner.public()),
        coordinator: Address::of(&coord.public()),
        compute_units: 5,
        price: 10,
        output_hash: Hash::of(b"o"),
        client_payment_tx: Hash::of(b"p"),
    };
    let mut receipt = Receipt::sign(CHAIN, core, &miner, &coord);
    corrupt(&mut receipt);
    HashedTx::new(Tx::signed(
        CHAIN,
        TxKind::ReceiptClaim {
            receipt: Box::new(receipt),
        },
        &key(sender),
        1,
        100 * FEE,
    ))
}

fn evidence(sender: u8, corrupt: impl FnOnce(&mut VotePair)) -> HashedTx {
    let v = key(30);
    let vote = |b: &[u8]| Vote {
        height: 3,
        view: 0,
        phase: Phase::Prepare,
        block_hash: Hash::of(b),
        validator: v.public(),
    };
    let mut pair = VotePair {
        a: vote(b"a").sign(CHAIN, &v),
        b: vote(b"b").sign(CHAIN, &v),
    };
    corrupt(&mut pair);
    HashedTx::new(Tx::signed(
        CHAIN,
        TxKind::Evidence {
            vote_a: Box::new(pair.a),
            vote_b: Box::new(pair.b),
        },
        &key(sender),
        1,
        100 * FEE,
    ))
}

struct VotePair {
    a: crate::vote::SignedVote,
    b: crate::vote::SignedVote,
}

#[test]
fn receipt_and_vote_signatures_are_verified_singly_and_in_batches() {
    let s = funded(1..=8, 10_000_000);
    let good_claim = receipt_claim(1, |_| {});
    let bad_coord = receipt_claim(2, |r| r.coordinator_sig.0[50] ^= 1);
    let bad_miner = receipt_claim(3, |r| r.miner_sig = r.coordinator_sig);
    let wrong_key = receipt_claim(4, |r| r.miner_pubkey = key(22).public());
    let good_ev = evidence(5, |_| {});
    let bad_vote_b = evidence(6, |p| p.b.sig.0[40] ^= 1);
    let bad_vote_a = evidence(7, |p| p.a.sig = p.b.sig);
    let err = |part, fault| Err(MempoolError::BadSignature { part, fault });
    let invalid = SigFault::Sig(SigError::Invalid);
    let expected = vec![
        Ok(good_claim.hash),
        err(SigPart::ReceiptCoordinator, invalid),
        err(SigPart::ReceiptMiner, invalid),
        err(SigPart::ReceiptMiner, SigFault::KeyMismatch),
        Ok(good_ev.hash),
        err(SigPart::EvidenceVoteB, invalid),
        err(SigPart::EvidenceVoteA, invalid),
    ];
    let txs = vec![
        good_claim, bad_coord, bad_miner, wrong_key, good_ev, bad_vote_b, bad_vote_a,
    ];
    let mut single = pool();
    let one_by_one: Vec<_> = txs
        .iter()
        .map(|t| admit(&mut single, &s, t).map(|a| a.hash))
        .collect();
    assert_eq!(one_by_one, expected);
    let mut batched = pool();
    let from_batch: Vec<_> = batched
        .admit_batch(txs, &s, &params())
        .into_iter()
        .map(|r| r.map(|a| a.hash))
        .collect();
    assert_eq!(from_batch, expected);
}

/// State that fails to read one sender's account.
struct Broken {
    inner: MemState,
    bad: Vec<u8>,
}

impl StateReader for Broken {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        if key == self.bad {
            return Err(StateError::Storage("disk on fire".into()));
        }
        self.inner.get(key)
    }
}

#[test]
fn state_errors_reject_skip_or_surface() {
    let s = funded([1, 2], 1_000_000);
    let mut p = pool();
    let a1 = transfer(1, 1, FEE);
    let b1 = transfer(2, 1, FEE);
    admit(&mut p, &s, &a1).expect("admitted");
    admit(&mut p, &s, &b1).expect("admitted");
    let broken = Broken {
        inner: s,
        bad: keys::account(&addr(1)),
    };
    let r = p.admit(transfer(1, 2, FEE), &broken, &params());
    assert!(matches!(r, Err(MempoolError::State(_))));
    assert_eq!(reason(r), "state_unavailable");
    let r = p.admit_batch(vec![transfer(1, 2, FEE)], &broken, &params());
    assert_eq!(
        r.into_iter().map(reason).collect::<Vec<_>>(),
        vec!["state_unavailable"]
    );
    // A block is built without the sender whose account cannot be read.
    assert_eq!(hashes(&p.select(&broken, 10, usize::MAX)), vec![b1.hash]);
    assert!(p.pending_nonce(&broken, &addr(1)).is_err());
    assert!(p.remove_committed(&[b1.hash], &broken).is_err());
    p.check_invariants();
    assert_eq!(
        p.len(),
        1,
        "the included tx is gone even though the sweep failed"
    );
}

#[test]
fn reasons_are_distinct_snake_case_codes() {
    let all = [
        MempoolError::TooLarge { len: 1, max: 0 },
        MempoolError::WrongChain {
            expected: "a".into(),
            got: "b".into(),
        },
        MempoolError::BadSignature {
            part: SigPart::Sender,
            fault: SigFault::KeyMismatch,
        },
        MempoolError::StaleNonce {
            nonce: 1,
            account_nonce: 1,
        },
        MempoolError::NonceGapTooLarge {
            nonce: 70,
            account_nonce: 1,
            max_ahead: 64,
        },
        MempoolError::FeeTooLow { fee: 1, min: 2 },
        MempoolError::InsufficientFunds {
            balance: 1,
            needed: 2,
        },
        MempoolError::Duplicate,
        MempoolError::ReplacementUnderpriced {
            fee: 1,
            pending_fee: 1,
        },
        MempoolError::MempoolFull,
        MempoolError::State("io".into()),
    ];
    let codes: BTreeSet<&str> = all.iter().map(MempoolError::reason).collect();
    assert_eq!(codes.len(), all.len());
    for c in codes {
        assert!(
            c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_'),
            "{c}"
        );
    }
    for e in &all {
        assert!(!e.to_string().is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// Property test: random admit / batch / select / commit sequences.

const SENDERS: u8 = 4;
const PROP_MAX_TXS: usize = 6;
const PROP_PER_SENDER: usize = 4;

#[derive(Clone, Debug)]
enum Op {
    Admit(TxSpec),
    Batch(Vec<TxSpec>),
    Select { max_txs: usize, max_bytes: usize },
    Commit { max_txs: usize },
}

#[derive(Clone, Debug)]
struct TxSpec {
    sender: u8,
    /// Use the pool's pending nonce (the next contiguous one) instead of `ahead`.
    follow: bool,
    /// Ahead of the account nonce; 0 makes it stale.
    ahead: u64,
    fee: u64,
    amount: u64,
    big: bool,
    forged: bool,
}

fn tx_spec() -> impl Strategy<Value = TxSpec> {
    (
        1..=SENDERS,
        prop::bool::weighted(0.6),
        0u64..=(PROP_PER_SENDER as u64 + 1),
        0u64..6,
        0u64..4,
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(sender, follow, ahead, fee, amount, big, forged)| TxSpec {
            sender,
            follow,
            ahead,
            fee: FEE / 2 + fee * FEE / 2,
            amount: amount * 3_000,
            big,
            forged,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => tx_spec().prop_map(Op::Admit),
        2 => prop::collection::vec(tx_spec(), 0..6).prop_map(Op::Batch),
        1 => (0usize..8, 0usize..4).prop_map(|(max_txs, k)| Op::Select { max_txs, max_bytes: 200 + k * 300 }),
        2 => (0usize..5).prop_map(|max_txs| Op::Commit { max_txs }),
    ]
}

fn build(spec: &TxSpec, pool: &Mempool, state: &MemState) -> HashedTx {
    let nonce = if spec.follow {
        pool.pending_nonce(state, &addr(spec.sender))
            .expect("mem state")
    } else {
        crate::state::account(state, &addr(spec.sender))
            .expect("mem state")
            .nonce
            + spec.ahead
    };
    let mut tx = if spec.big {
        sized(spec.sender, nonce, spec.fee + 5_000, 250)
    } else {
        transfer_amount(spec.sender, nonce, spec.fee, spec.amount)
    };
    if spec.forged {
        tx.tx.sig.0[5] ^= 1;
    }
    tx
}

/// Checks a selection against state: per sender contiguous from `nonce + 1`, funded, bounded.
fn check_selection(block: &[HashedTx], state: &MemState, max_txs: usize, max_bytes: usize) {
    assert!(block.len() <= max_txs);
    assert!(block.iter().map(|t| t.len).sum::<usize>() <= max_bytes);
    let mut next: BTreeMap<Address, (u64, u128)> = BTreeMap::new();
    for tx in block {
        let sender = tx.tx.sender();
        let (n, left) = next.entry(sender).or_insert_with(|| {
            let a = crate::state::account(state, &sender).expect("mem state");
            (a.nonce + 1, u128::from(a.balance))
        });
        assert_eq!(tx.tx.nonce, *n, "nonces contiguous from account nonce + 1");
        let spend = u128::from(tx.tx.max_spend());
        assert!(spend <= *left, "selection overspends");
        *n += 1;
        *left -= spend;
    }
}

/// Executes a selected block the simple way: nonce up, max_spend off the balance.
fn execute(block: &[HashedTx], state: &mut MemState) {
    for tx in block {
        let sender = tx.tx.sender();
        let a = crate::state::account(&*state, &sender).expect("mem state");
        set_account(state, &sender, a.balance - tx.tx.max_spend(), tx.tx.nonce);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_keep_the_pool_sound(
        balances in prop::collection::vec(0u64..300_000, SENDERS as usize),
        ops in prop::collection::vec(op(), 1..40),
    ) {
        let mut state = MemState::default();
        for (i, b) in balances.iter().enumerate() {
            set_account(&mut state, &addr(i as u8 + 1), *b, 0);
        }
        let one = transfer(1, 1, FEE).len;
        let config = MempoolConfig {
            max_txs: PROP_MAX_TXS,
            max_bytes: 5 * one,
            max_per_sender: PROP_PER_SENDER,
            key_cache: 4,
        };
        let mut p = Mempool::new(CHAIN, config.clone());
        let params = params();
        for op in ops {
            match op {
                Op::Admit(spec) => {
                    let tx = build(&spec, &p, &state);
                    let r = p.admit(tx.clone(), &state, &params);
                    if spec.forged {
                        prop_assert!(r.is_err());
                    }
                    if r.is_ok() {
                        prop_assert!(p.is_verified(&tx));
                    }
                }
                Op::Batch(specs) => {
                    let txs: Vec<HashedTx> = specs.iter().map(|s| build(s, &p, &state)).collect();
                    let results = p.admit_batch(txs.clone(), &state, &params);
                    prop_assert_eq!(results.len(), txs.len());
                    for ((spec, tx), r) in specs.iter().zip(&txs).zip(&results) {
                        if spec.forged {
                            prop_assert!(r.is_err());
                        }
                        if let Ok(a) = r {
                            prop_assert_eq!(a.hash, tx.hash);
                        }
                    }
                }
                Op::Select { max_txs, max_bytes } => {
                    let block = p.select(&state, max_txs, max_bytes);
                    check_selection(&block, &state, max_txs, max_bytes);
                    prop_assert_eq!(p.select(&state, max_txs, max_bytes), block);
                }
                Op::Commit { max_txs } => {
                    let block = p.select(&state, max_txs, usize::MAX);
                    check_selection(&block, &state, max_txs, usize::MAX);
                    execute(&block, &mut state);
                    p.remove_committed(&hashes(&block), &state).expect("mem state");
                    // Every sender was swept: nothing stale or unfunded is left.
                    for tx in p.iter() {
                        let a = crate::state::account(&state, &tx.tx.sender()).expect("mem state");
                        prop_assert!(tx.tx.nonce > a.nonce);
                    }
                    for i in 1..=SENDERS {
                        let a = crate::state::account(&state, &addr(i)).expect("mem state");
                        let reserved: u128 = p.sender_txs(&addr(i)).map(|t| u128::from(t.tx.max_spend())).sum();
                        prop_assert!(reserved <= u128::from(a.balance));
                    }
                }
            }
            p.check_invariants();
            prop_assert!(p.len() <= config.max_txs);
            prop_assert!(p.bytes() <= config.max_bytes);
            prop_assert_eq!(p.bytes(), p.iter().map(|t| t.len).sum::<usize>());
            prop_assert!(p.iter().all(|t| p.contains(&t.hash)));
        }
    }
}

#[test]
fn claims_of_used_receipts_or_payments_are_refused_at_admission() {
    let mut s = funded(1..=3, 10_000_000);
    let claim = receipt_claim(1, |_| {});
    let TxKind::ReceiptClaim { receipt } = &claim.tx.kind else {
        unreachable!("receipt_claim builds a claim")
    };
    let core = receipt.core.clone();
    // Unused payment on record: admitted.
    let payment = crate::execution::Payment {
        client: core.client,
        coordinator: core.coordinator,
        amount: core.price,
        used_by: None,
    };
    s.0.insert(
        keys::payment(&core.client_payment_tx),
        crate::codec::encode(&payment),
    );
    assert_eq!(reason(admit(&mut pool(), &s, &claim)), "ok");
    // The payment already backs another receipt.
    let used = crate::execution::Payment {
        used_by: Some(Hash::of(b"other receipt")),
        ..payment
    };
    s.0.insert(
        keys::payment(&core.client_payment_tx),
        crate::codec::encode(&used),
    );
    assert_eq!(reason(admit(&mut pool(), &s, &claim)), "payment_used");
    let batch = pool().admit_batch(vec![claim.clone()], &s, &params());
    assert!(matches!(batch[0], Err(MempoolError::PaymentUsed(_))));
    // The receipt itself was claimed.
    s.0.insert(keys::receipt(&core.receipt_id), vec![1]);
    assert_eq!(reason(admit(&mut pool(), &s, &claim)), "duplicate_receipt");
    let batch = pool().admit_batch(vec![claim], &s, &params());
    assert!(matches!(batch[0], Err(MempoolError::DuplicateReceipt(_))));
}

#[test]
fn equal_fees_are_served_in_arrival_order() {
    let s = funded(1..=3, 1_000_000);
    let txs = [
        transfer(1, 1, FEE),
        transfer(2, 1, FEE),
        transfer(3, 1, FEE),
    ];
    // Whatever the hashes, the first to arrive goes first, in both arrival orders.
    for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
        let mut p = pool();
        for &i in &order {
            assert_eq!(reason(admit(&mut p, &s, &txs[i])), "ok");
        }
        let picked = p.select(&s, 3, usize::MAX);
        let expected: Vec<Hash> = order.iter().map(|&i| txs[i].hash).collect();
        assert_eq!(hashes(&picked), expected);
    }
}
