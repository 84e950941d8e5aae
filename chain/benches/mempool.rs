//! Mempool admission and block building (SPEC §9: batched signature checks should run at
//! ≥ 90% of ed25519-dalek's own batch verification; gossip admits 10,000 tx/s).
//!
//! `sig/*` is the baseline: the signature work alone, by ed25519-dalek and by our cofactored
//! `crypto::verify_batch`. `admit/*` is the whole admission path for a gossip batch, with the
//! key cache warm (a long-lived pool seeing senders it has seen before) or disabled.

use aitbc_chain::account::Account;
use aitbc_chain::address::Address;
use aitbc_chain::crypto::{self, BatchItem, SecretKey, VerifyingKey};
use aitbc_chain::mempool::{Mempool, MempoolConfig};
use aitbc_chain::state::{keys, MemState};
use aitbc_chain::{codec, HashedTx, Params, Tx, TxKind};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::time::Duration;

const CHAIN: &str = "ait-bench";
const BATCH: usize = 1024;
const FEE: u64 = 10_000;

fn keys(n: usize) -> Vec<SecretKey> {
    (0..n)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            SecretKey::from_seed(seed)
        })
        .collect()
}

fn state(keys: &[SecretKey]) -> MemState {
    let mut s = MemState::default();
    for k in keys {
        let acct = Account {
            balance: 1_000_000_000,
            nonce: 0,
            stake: 0,
        };
        s.0.insert(
            keys::account(&Address::of(&k.public())),
            codec::encode(&acct),
        );
    }
    s
}

fn transfers(keys: &[SecretKey], nonce: u64, fee: impl Fn(usize) -> u64) -> Vec<HashedTx> {
    keys.iter()
        .enumerate()
        .map(|(i, k)| {
            HashedTx::new(Tx::signed(
                CHAIN,
                TxKind::Transfer {
                    to: Address([0xee; 20]),
                    amount: 1,
                },
                k,
                nonce,
                fee(i),
            ))
        })
        .collect()
}

fn signatures(c: &mut Criterion) {
    let ks = keys(BATCH);
    let txs = transfers(&ks, 1, |_| FEE);
    let mut g = c.benchmark_group("sig");
    g.throughput(Throughput::Elements(BATCH as u64));

    let dalek_keys: Vec<ed25519_dalek::VerifyingKey> = txs
        .iter()
        .map(|t| ed25519_dalek::VerifyingKey::from_bytes(&t.tx.sender_pubkey.0).expect("valid key"))
        .collect();
    let dalek_sigs: Vec<ed25519_dalek::Signature> = txs
        .iter()
        .map(|t| ed25519_dalek::Signature::from_bytes(&t.tx.sig.0))
        .collect();
    let msgs: Vec<&[u8]> = txs.iter().map(|t| &t.hash.0[..]).collect();
    g.bench_function("dalek_verify_batch_1024", |b| {
        b.iter(|| ed25519_dalek::verify_batch(&msgs, &dalek_sigs, &dalek_keys).expect("valid"))
    });

    let vks: Vec<VerifyingKey> = txs
        .iter()
        .map(|t| VerifyingKey::new(&t.tx.sender_pubkey).expect("valid key"))
        .collect();
    let items: Vec<BatchItem<'_>> = txs
        .iter()
        .zip(&vks)
        .map(|(t, key)| BatchItem {
            key,
            digest: &t.hash,
            sig: &t.tx.sig,
        })
        .collect();
    g.bench_function("ours_verify_batch_1024", |b| {
        b.iter(|| crypto::verify_batch(&items).expect("valid"))
    });
    g.bench_function("ours_verify_batch_1024_with_key_decompression", |b| {
        b.iter(|| {
            let vks: Vec<VerifyingKey> = txs
                .iter()
                .map(|t| VerifyingKey::new(&t.tx.sender_pubkey).expect("valid key"))
                .collect();
            let items: Vec<BatchItem<'_>> = txs
                .iter()
                .zip(&vks)
                .map(|(t, key)| BatchItem {
                    key,
                    digest: &t.hash,
                    sig: &t.tx.sig,
                })
                .collect();
            crypto::verify_batch(&items).expect("valid")
        })
    });
    g.finish();

    let mut g = c.benchmark_group("key");
    g.throughput(Throughput::Elements(1));
    let pk = ks[0].public();
    g.bench_function("verifying_key_new", |b| {
        b.iter(|| VerifyingKey::new(std::hint::black_box(&pk)))
    });
    g.finish();
}

/// A pool that has already admitted nonce 1 of every sender (so its key cache is warm), and
/// the batch of their nonce-2 txs to admit next.
fn warm_pool(ks: &[SecretKey], s: &MemState, key_cache: usize, warm: &[HashedTx]) -> Mempool {
    let mut pool = Mempool::new(
        CHAIN,
        MempoolConfig {
            key_cache,
            ..MempoolConfig::default()
        },
    );
    let ok = pool
        .admit_batch(warm.to_vec(), s, &Params::default())
        .iter()
        .filter(|r| r.is_ok())
        .count();
    assert_eq!(ok, ks.len());
    pool
}

fn admission(c: &mut Criterion) {
    let ks = keys(BATCH);
    let s = state(&ks);
    let params = Params::default();
    let warm = transfers(&ks, 1, |_| FEE);
    let next = transfers(&ks, 2, |_| FEE);
    let mut g = c.benchmark_group("admit");
    g.throughput(Throughput::Elements(BATCH as u64));
    for (name, cache) in [("warm_key_cache", 16_384), ("no_key_cache", 0)] {
        g.bench_function(format!("batch_1024_{name}"), |b| {
            b.iter_batched(
                || (warm_pool(&ks, &s, cache, &warm), next.clone()),
                |(mut pool, txs)| {
                    let results = pool.admit_batch(txs, &s, &params);
                    assert!(results.iter().all(|r| r.is_ok()));
                    pool
                },
                BatchSize::PerIteration,
            )
        });
    }
    // Gossip's real batches: a few milliseconds of traffic at 10,000 tx/s.
    g.bench_function("batch_64x16_warm_key_cache", |b| {
        b.iter_batched(
            || (warm_pool(&ks, &s, 16_384, &warm), next.clone()),
            |(mut pool, txs)| {
                let mut txs = txs.into_iter();
                loop {
                    let chunk: Vec<HashedTx> = txs.by_ref().take(64).collect();
                    if chunk.is_empty() {
                        break;
                    }
                    pool.admit_batch(chunk, &s, &params);
                }
                pool
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("single_1024_warm_key_cache", |b| {
        b.iter_batched(
            || (warm_pool(&ks, &s, 16_384, &warm), next.clone()),
            |(mut pool, txs)| {
                for tx in txs {
                    pool.admit(tx, &s, &params).expect("admitted");
                }
                pool
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn selection(c: &mut Criterion) {
    // 2,000 senders × 10 nonces, fees varying by sender; build a 10,000-tx block.
    let ks = keys(2_000);
    let s = state(&ks);
    let params = Params::default();
    let mut pool = Mempool::new(CHAIN, MempoolConfig::default());
    for nonce in 1..=10 {
        let txs = transfers(&ks, nonce, |i| FEE + (i as u64 * 7919) % 5_000);
        for r in pool.admit_batch(txs, &s, &params) {
            r.expect("admitted");
        }
    }
    let mut g = c.benchmark_group("select");
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("10k_of_20k", |b| {
        b.iter(|| {
            let block = pool.select(&s, 10_000, usize::MAX);
            assert_eq!(block.len(), 10_000);
            block
        })
    });
    let block: Vec<_> = pool
        .select(&s, 10_000, usize::MAX)
        .iter()
        .map(|t| t.hash)
        .collect();
    g.bench_function("remove_committed_10k_of_20k", |b| {
        b.iter_batched(
            || pool.clone(),
            |mut p| {
                p.remove_committed(&block, &s).expect("state");
                p
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = signatures, admission, selection
}
criterion_main!(benches);
