//! Batched signature checks per second: ours (cofactored, deterministic weights) next to raw
//! `ed25519_dalek::verify_batch`, and single verification. SPEC §9 target: ours ≥ 90% of dalek.

use aitbc_chain::crypto::{self, BatchItem, SecretKey, VerifyingKey};
use aitbc_chain::hash::Hash;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ed25519_dalek::Signer;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("signatures");
    for n in [64usize, 256, 1024] {
        let keys: Vec<SecretKey> = (0..n)
            .map(|i| SecretKey::from_seed(Hash::of(&(i as u64).to_le_bytes()).0))
            .collect();
        let digests: Vec<Hash> = (0..n)
            .map(|i| Hash::of(&(i as u64 + 1_000_000).to_le_bytes()))
            .collect();
        let sigs: Vec<_> = keys
            .iter()
            .zip(&digests)
            .map(|(k, d)| k.sign_digest(d))
            .collect();
        let vks: Vec<VerifyingKey> = keys
            .iter()
            .map(|k| VerifyingKey::new(&k.public()).expect("valid key"))
            .collect();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("aitbc_batch", n), &n, |b, _| {
            b.iter(|| {
                let items: Vec<BatchItem<'_>> = vks
                    .iter()
                    .zip(&digests)
                    .zip(&sigs)
                    .map(|((key, digest), sig)| BatchItem { key, digest, sig })
                    .collect();
                crypto::verify_batch(&items).expect("valid batch")
            })
        });

        let dalek_keys: Vec<ed25519_dalek::SigningKey> = keys
            .iter()
            .map(|k| ed25519_dalek::SigningKey::from_bytes(&k.seed()))
            .collect();
        let dalek_vks: Vec<_> = dalek_keys.iter().map(|k| k.verifying_key()).collect();
        let dalek_sigs: Vec<_> = dalek_keys
            .iter()
            .zip(&digests)
            .map(|(k, d)| k.sign(&d.0))
            .collect();
        let msgs: Vec<&[u8]> = digests.iter().map(|d| d.0.as_slice()).collect();
        g.bench_with_input(BenchmarkId::new("dalek_batch", n), &n, |b, _| {
            b.iter(|| {
                ed25519_dalek::verify_batch(&msgs, &dalek_sigs, &dalek_vks).expect("valid batch")
            })
        });
    }
    // 1,024 signatures from 64 keys (16 txs per sender), as in a block or a sync run: each
    // key is one point of the multiscalar multiplication, not sixteen.
    let senders: Vec<SecretKey> = (0..64u64)
        .map(|i| SecretKey::from_seed(Hash::of(&i.to_le_bytes()).0))
        .collect();
    let repeated: Vec<(VerifyingKey, Hash, _)> = (0..1024u64)
        .map(|i| {
            let k = &senders[(i % 64) as usize];
            let d = Hash::of(&(i + 2_000_000).to_le_bytes());
            (
                VerifyingKey::new(&k.public()).expect("valid key"),
                d,
                k.sign_digest(&d),
            )
        })
        .collect();
    g.throughput(Throughput::Elements(1024));
    g.bench_function("aitbc_batch_1024_from_64_keys", |b| {
        b.iter(|| {
            let items: Vec<BatchItem<'_>> = repeated
                .iter()
                .map(|(key, digest, sig)| BatchItem { key, digest, sig })
                .collect();
            crypto::verify_batch(&items).expect("valid batch")
        })
    });
    let k = SecretKey::from_seed([1; 32]);
    let d = Hash::of(b"single");
    let s = k.sign_digest(&d);
    let vk = VerifyingKey::new(&k.public()).expect("valid key");
    g.throughput(Throughput::Elements(1));
    g.bench_function("aitbc_single", |b| {
        b.iter(|| crypto::verify(&vk, &d, &s).expect("valid"))
    });
    g.bench_function("decompress_key", |b| {
        b.iter(|| VerifyingKey::new(&k.public()).expect("valid"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
