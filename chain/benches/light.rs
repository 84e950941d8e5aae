//! Light-peer header verification (SPEC §9 target: ≥ 10,000 headers/s on a 4-validator
//! chain): runs of certified headers, each signed by all 4 validators, verified as a light peer
//! receives them from the sync protocol (a `Headers` answer holds up to 512), one run at a time
//! on top of the trust the previous run reached. One run crosses a validator-set change.

use aitbc_chain::light::fixture::{genesis, headers, keys};
use aitbc_chain::light::Verifier;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const CHAIN: &str = "ait-bench";

fn bench(c: &mut Criterion) {
    let start = genesis(CHAIN, &keys(1, 4));
    let hs = headers(&start, &keys(1, 4), 2048, &[(1000, keys(5, 4))]);
    let mut g = c.benchmark_group("light_headers");
    g.throughput(Throughput::Elements(hs.len() as u64));
    for run in [1usize, 64, 512] {
        g.bench_with_input(BenchmarkId::new("verify_run", run), &run, |b, &run| {
            b.iter(|| {
                let mut v = Verifier::new(CHAIN, start.clone()).expect("valid start");
                for chunk in hs.chunks(run) {
                    let out = v.verify(chunk);
                    assert!(out.rejected.is_none(), "{out:?}");
                }
                v.trusted().height()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
