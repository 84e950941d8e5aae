use super::*;
use crate::address::Address;
use crate::block::tx_root;
use crate::crypto::SecretKey;
use crate::state::{self, commitment, keys, MemState};
use crate::tx::{HashedTx, Tx, TxKind};
use proptest::prelude::*;

const BUCKETS: u64 = 64;

fn genesis_with(chain_id: &str, buckets: u64) -> Genesis {
    let v = SecretKey::from_seed([1; 32]);
    let mut g = Genesis::dev(chain_id, &[&v], &[(Address([9; 20]), 1_000)]);
    g.params.state_buckets = buckets;
    g
}

fn genesis() -> Genesis {
    genesis_with("store-test", BUCKETS)
}

/// The block that commits `prepared` with `txs` on top of the store's head, and a certificate
/// for it (unsigned: the store checks only what the certificate is for).
fn next_block<K: KvStore>(
    store: &ChainStore<K>,
    prepared: &PreparedState,
    txs: Vec<HashedTx>,
) -> (Block, CommitCertificate) {
    let head = store.head();
    let header = Header {
        height: head.height + 1,
        timestamp_ms: head.timestamp_ms + 1,
        parent_hash: store.head_hash(),
        tx_root: tx_root(&txs),
        state_root: prepared.root(),
        ..head.clone()
    };
    let block = Block {
        header,
        txs,
        last_commit: store.certificate(head.height).expect("read"),
    };
    let cert = CommitCertificate {
        height: block.header.height,
        view: 0,
        block_hash: block.hash(),
        signatures: vec![],
    };
    (block, cert)
}

fn commit<K: KvStore>(store: &mut ChainStore<K>, changes: &StateChanges, txs: Vec<HashedTx>) {
    let prepared = store.prepare(changes).expect("prepare");
    let (block, cert) = next_block(store, &prepared, txs);
    store
        .commit_block(block.clone(), &cert, prepared)
        .expect("commit");
}

fn changes(items: &[(&str, Option<&str>)]) -> StateChanges {
    items
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec())))
        .collect()
}

fn transfer(nonce: u64) -> HashedTx {
    let key = SecretKey::from_seed([7; 32]);
    HashedTx::new(Tx::signed(
        "store-test",
        TxKind::Transfer {
            to: Address([3; 20]),
            amount: nonce,
        },
        &key,
        nonce,
        10_000,
    ))
}

fn genesis_state(g: &Genesis) -> MemState {
    let mut s = MemState::default();
    s.apply(&g.initial_state().expect("genesis state"));
    s
}

/// A new store with `config` on an empty `MemKv`, and the state it starts from.
fn open_fresh(config: &StoreConfig) -> (Genesis, MemKv, ChainStore<MemKv>, MemState) {
    let g = genesis();
    let kv = MemKv::new();
    let store = ChainStore::open_with(kv.clone(), &g, config).expect("open");
    let expected = genesis_state(&g);
    (g, kv, store, expected)
}

fn root_of(state: &MemState, buckets: u64) -> Hash {
    commitment::state_root(
        state.0.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
        buckets,
    )
    .expect("valid count")
}

#[test]
fn open_initialises_from_genesis() {
    let g = genesis();
    let store = ChainStore::open(MemKv::new(), &g).expect("open");
    let expected = genesis_state(&g);
    assert_eq!(store.height(), 0);
    assert_eq!(store.genesis_hash(), g.hash());
    assert_eq!(store.state_root(), root_of(&expected, BUCKETS));
    assert_eq!(store.head(), &g.header(store.state_root()));
    assert_eq!(store.num_buckets(), BUCKETS);
    for (k, v) in &expected.0 {
        assert_eq!(store.get(k).expect("read").as_ref(), Some(v));
    }
    assert_eq!(
        state::account(&store, &Address([9; 20]))
            .expect("read")
            .balance,
        1_000
    );
    let block0 = store.block(0).expect("read").expect("genesis block stored");
    assert_eq!(block0.header, *store.head());
    assert_eq!(
        store
            .block_height_by_hash(&store.head_hash())
            .expect("read"),
        Some(0)
    );
    assert_eq!(store.certificate(0).expect("read"), None);
}

#[test]
fn commits_are_readable_and_survive_reopen() {
    let (g, kv, mut store, mut expected) = open_fresh(&StoreConfig::default());
    let c1 = changes(&[("a", Some("1")), ("b", Some("2")), ("c", Some("3"))]);
    commit(&mut store, &c1, vec![transfer(1), transfer(2)]);
    expected.apply(&c1);
    let c2 = changes(&[("a", None), ("b", Some("22")), ("zz", None)]);
    commit(&mut store, &c2, vec![transfer(3)]);
    expected.apply(&c2);

    assert_eq!(store.height(), 2);
    assert_eq!(store.state_root(), root_of(&expected, BUCKETS));
    assert_eq!(store.get(b"a").expect("read"), None);
    assert_eq!(store.get(b"b").expect("read"), Some(b"22".to_vec()));
    assert_eq!(
        store.tx_location(&transfer(2).hash).expect("read"),
        Some(TxLocation {
            height: 1,
            index: 1
        })
    );
    assert_eq!(
        store.tx_location(&transfer(3).hash).expect("read"),
        Some(TxLocation {
            height: 2,
            index: 0
        })
    );
    assert_eq!(store.tx_location(&transfer(4).hash).expect("read"), None);
    let b1 = store.block(1).expect("read").expect("block 1");
    assert_eq!(
        store.block_by_hash(&b1.hash()).expect("read"),
        Some(b1.clone())
    );
    let cert1 = store.certificate(1).expect("read").expect("cert 1");
    assert_eq!(cert1.block_hash, b1.hash());
    let b2 = store.block(2).expect("read").expect("block 2");
    assert_eq!(b2.last_commit, Some(cert1));

    let cert2 = store.certificate(2).expect("read");
    assert!(cert2.is_some());
    assert_eq!(store.head_certificate(), cert2.as_ref());

    let (head, hash, root) = (store.head().clone(), store.head_hash(), store.state_root());
    drop(store);
    let reopened = ChainStore::open(kv, &g).expect("reopen");
    assert_eq!(reopened.head(), &head);
    assert_eq!(reopened.head_hash(), hash);
    assert_eq!(reopened.head_certificate(), cert2.as_ref());
    assert_eq!(reopened.state_root(), root);
    assert_eq!(reopened.get(b"c").expect("read"), Some(b"3".to_vec()));
}

#[test]
fn sled_store_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = genesis_with("store-test", 1 << 16);
    let root = {
        let mut store =
            ChainStore::open(SledKv::open(dir.path()).expect("sled"), &g).expect("open");
        commit(&mut store, &changes(&[("x", Some("1"))]), vec![transfer(1)]);
        commit(&mut store, &changes(&[("y", Some("2"))]), vec![]);
        store.state_root()
    };
    let store = ChainStore::open(SledKv::open(dir.path()).expect("sled"), &g).expect("reopen");
    assert_eq!(store.height(), 2);
    assert_eq!(store.state_root(), root);
    assert_eq!(store.get(b"x").expect("read"), Some(b"1".to_vec()));
}

#[test]
fn proofs_verify_for_present_and_absent_keys() {
    let g = genesis();
    let mut store = ChainStore::open(MemKv::new(), &g).expect("open");
    let c: StateChanges = (0..200u32)
        .map(|i| (format!("k{i}").into_bytes(), Some(i.to_le_bytes().to_vec())))
        .collect();
    commit(&mut store, &c, vec![]);
    let root = store.state_root();
    for i in 0..200u32 {
        let p = store.prove(format!("k{i}").as_bytes()).expect("prove");
        assert_eq!(p.verify(&root, BUCKETS), Ok(Some(&i.to_le_bytes()[..])));
    }
    for i in 200..260u32 {
        let p = store.prove(format!("k{i}").as_bytes()).expect("prove");
        assert_eq!(p.verify(&root, BUCKETS), Ok(None));
    }
    let acct = store
        .prove(&keys::account(&Address([9; 20])))
        .expect("prove");
    assert!(matches!(acct.verify(&root, BUCKETS), Ok(Some(_))));
    // A proof is for one root: the previous state's root rejects it.
    let old = store
        .block(0)
        .expect("read")
        .expect("block 0")
        .header
        .state_root;
    let p = store.prove(b"k1").expect("prove");
    assert!(matches!(
        p.verify(&old, BUCKETS),
        Err(crate::state::proof::ProofError::RootMismatch { .. })
    ));
}

#[test]
fn open_with_another_genesis_is_refused() {
    let kv = MemKv::new();
    drop(ChainStore::open(kv.clone(), &genesis()).expect("open"));
    let other = genesis_with("other-chain", BUCKETS);
    let err = ChainStore::open(kv, &other).err().expect("refused");
    assert!(matches!(err, StoreError::GenesisMismatch { .. }), "{err}");
    assert!(err.to_string().contains("resync"), "{err}");
}

/// Writes every touched bucket with its block (no journal records left to replay).
fn write_through() -> StoreConfig {
    StoreConfig {
        write_back_bytes: 0,
        write_back_blocks: 0,
        ..StoreConfig::default()
    }
}

/// A store with some state and the key of one non-empty bucket (written, not journaled).
fn store_with_bucket() -> (MemKv, Genesis, Vec<u8>) {
    let g = genesis();
    let kv = MemKv::new();
    let mut store = ChainStore::open_with(kv.clone(), &g, &write_through()).expect("open");
    commit(
        &mut store,
        &changes(&[("a", Some("1")), ("b", Some("2"))]),
        vec![],
    );
    let b = store.tree.bucket_of(&Hash::of(b"a"));
    (kv, g, key::bucket(b).to_vec())
}

fn refusal(kv: MemKv, g: &Genesis) -> StoreError {
    match ChainStore::open(kv, g) {
        Ok(_) => panic!("a damaged store was opened"),
        Err(e) => {
            assert!(e.to_string().contains("resync"), "no resync advice: {e}");
            e
        }
    }
}

#[test]
fn corrupted_bucket_is_refused_on_open() {
    // Undecodable bytes.
    let (kv, g, k) = store_with_bucket();
    kv.poke(&k, Some(b"garbage"));
    let e = refusal(kv, &g);
    assert!(
        matches!(&e, StoreError::Corrupt { key, .. } if key.starts_with("s/")),
        "{e}"
    );

    // A value changed on disk, its stored hash intact: only the full check sees it.
    let (kv, g, k) = store_with_bucket();
    let bucket = Bucket::decode(&kv.get(&k).expect("get").expect("bucket")).expect("decode");
    let mut raw = bucket.encode();
    let last = raw.len() - 1;
    raw[last] ^= 1;
    kv.poke(&k, Some(&raw));
    assert!(matches!(refusal(kv, &g), StoreError::Corrupt { .. }));

    // A stored value hash changed: the full check names the entry; without it, the state no
    // longer hashes to the head's root.
    let (kv, g, k) = store_with_bucket();
    let raw = kv.get(&k).expect("get").expect("bucket");
    let mut raw = raw.to_vec();
    raw[8 + 32] ^= 1; // first entry's value hash (after the u64 length and the key hash)
    kv.poke(&k, Some(&raw));
    let e = refusal(kv.clone(), &g);
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
    let lenient = StoreConfig {
        verify_values_on_open: false,
        ..StoreConfig::default()
    };
    assert!(matches!(
        ChainStore::open_with(kv, &g, &lenient),
        Err(StoreError::StateRootMismatch { .. })
    ));

    // A bucket lost.
    let (kv, g, k) = store_with_bucket();
    kv.poke(&k, None);
    assert!(matches!(
        refusal(kv, &g),
        StoreError::StateRootMismatch { .. }
    ));

    // A bucket key out of range.
    let (kv, g, _) = store_with_bucket();
    kv.poke(&key::bucket(BUCKETS as u32), Some(&bucket.encode()));
    assert!(matches!(refusal(kv, &g), StoreError::Corrupt { .. }));
}

#[test]
fn missing_head_block_or_head_is_refused() {
    let (kv, g, _) = store_with_bucket();
    kv.poke(&key::block(1, 0), None);
    assert!(matches!(
        refusal(kv, &g),
        StoreError::HeadBlockMissing { height: 1 }
    ));
    let (kv, g, _) = store_with_bucket();
    kv.poke(key::HEAD, Some(b"short"));
    assert!(matches!(refusal(kv, &g), StoreError::Corrupt { .. }));
    let (kv, g, _) = store_with_bucket();
    kv.poke(key::GENESIS, None);
    assert!(matches!(refusal(kv, &g), StoreError::Corrupt { .. }));
}

#[test]
fn corrupt_bucket_read_is_an_error_not_a_panic() {
    let (kv, g, k) = store_with_bucket();
    let store = ChainStore::open_with(
        kv.clone(),
        &g,
        &StoreConfig {
            bucket_cache_bytes: 0,
            ..StoreConfig::default()
        },
    )
    .expect("open");
    kv.poke(&k, Some(&[0xff; 3]));
    assert!(matches!(
        store.get(b"a"),
        Err(StateError::Corrupt { key, .. }) if key.starts_with("s/")
    ));
    assert!(store.prepare(&changes(&[("a", Some("9"))])).is_err());
    assert!(store.prove(b"a").is_err());
}

#[test]
fn commit_checks_what_it_is_given() {
    let g = genesis();
    let mut store = ChainStore::open(MemKv::new(), &g).expect("open");
    let c = changes(&[("a", Some("1"))]);
    let prepared = store.prepare(&c).expect("prepare");
    let (block, cert) = next_block(&store, &prepared, vec![]);

    let mut b = block.clone();
    b.header.height = 2;
    assert!(matches!(
        store.commit_block(b.clone(), &cert, prepared.clone()),
        Err(StoreError::WrongHeight {
            expected: 1,
            got: 2
        })
    ));
    let mut b = block.clone();
    b.header.parent_hash = Hash::of(b"elsewhere");
    assert!(matches!(
        store.commit_block(b.clone(), &cert, prepared.clone()),
        Err(StoreError::WrongParent { .. })
    ));
    let mut b = block.clone();
    b.header.chain_id = "other".into();
    assert!(matches!(
        store.commit_block(b.clone(), &cert, prepared.clone()),
        Err(StoreError::WrongChain { .. })
    ));
    let mut b = block.clone();
    b.header.state_root = Hash::of(b"made up");
    assert!(matches!(
        store.commit_block(b.clone(), &cert, prepared.clone()),
        Err(StoreError::BlockStateRoot { .. })
    ));
    let mut bad_cert = cert.clone();
    bad_cert.block_hash = Hash::of(b"another block");
    assert!(matches!(
        store.commit_block(block.clone(), &bad_cert, prepared.clone()),
        Err(StoreError::CertificateMismatch { .. })
    ));
    // Nothing above changed the store.
    assert_eq!(store.height(), 0);
    assert_eq!(store.get(b"a").expect("read"), None);

    // A preparation made before another block committed is stale.
    let stale = store
        .prepare(&changes(&[("b", Some("2"))]))
        .expect("prepare");
    store
        .commit_block(block.clone(), &cert, prepared)
        .expect("commit");
    let (b2, c2) = next_block(&store, &stale, vec![]);
    assert!(matches!(
        store.commit_block(b2.clone(), &c2, stale),
        Err(StoreError::StalePrepared { .. })
    ));
    assert_eq!(store.get(b"a").expect("read"), Some(b"1".to_vec()));
}

#[test]
fn prepare_writes_nothing_and_skips_unchanged_buckets() {
    let g = genesis();
    let kv = MemKv::new();
    let mut store = ChainStore::open(kv.clone(), &g).expect("open");
    commit(&mut store, &changes(&[("a", Some("1"))]), vec![]);
    let before: Vec<_> = kv.range(b"", None).map(|r| r.expect("scan")).collect();
    let root = store.state_root();
    let same = store
        .prepare(&changes(&[("a", Some("1")), ("nope", None)]))
        .expect("prepare");
    assert_eq!(same.touched_buckets(), 0);
    assert_eq!(same.root(), root);
    let p = store
        .prepare(&changes(&[("a", Some("2"))]))
        .expect("prepare");
    assert_ne!(p.root(), root);
    assert_eq!(p.parent_root(), root);
    let after: Vec<_> = kv.range(b"", None).map(|r| r.expect("scan")).collect();
    assert_eq!(before.len(), after.len());
    assert_eq!(store.get(b"a").expect("read"), Some(b"1".to_vec()));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// After any sequence of committed blocks the store's root is the root of the final state
    /// built from scratch, reads see exactly that state, and a reopen (also with the cache
    /// off, so every bucket comes from the store) agrees.
    #[test]
    fn store_root_matches_root_from_scratch(
        blocks in prop::collection::vec(
            prop::collection::btree_map(
                (0u8..64).prop_map(|k| vec![b'k', k]),
                prop::option::weighted(0.7, prop::collection::vec(any::<u8>(), 0..12)),
                0..32,
            ).prop_map(StateChanges::from),
            1..6,
        ),
        cache_bytes in prop_oneof![Just(0usize), Just(4096usize), Just(1usize << 20)],
        (write_back_bytes, write_back_blocks) in prop_oneof![
            Just((0usize, 0u64)),
            Just((2048usize, 64u64)),
            Just((1usize << 20, 2u64)),
            Just((1usize << 20, 64u64)),
        ],
    ) {
        let config = StoreConfig {
            bucket_cache_bytes: cache_bytes,
            write_back_bytes,
            write_back_blocks,
            ..StoreConfig::default()
        };
        let (g, kv, mut store, mut expected) = open_fresh(&config);
        for c in &blocks {
            commit(&mut store, c, vec![]);
            expected.apply(c);
            prop_assert_eq!(store.state_root(), root_of(&expected, BUCKETS));
        }
        for k in 0u8..64 {
            let key = vec![b'k', k];
            prop_assert_eq!(store.get(&key).expect("read"), expected.0.get(&key).cloned());
        }
        let root = store.state_root();
        drop(store);
        let reopened = ChainStore::open_with(kv.clone(), &g, &config).expect("reopen");
        prop_assert_eq!(reopened.state_root(), root);
        for k in 0u8..64 {
            let key = vec![b'k', k];
            prop_assert_eq!(reopened.get(&key).expect("read"), expected.0.get(&key).cloned());
        }
        // Another tuning reads the same store (it only changes what later commits write).
        let other = ChainStore::open_with(kv, &g, &write_through()).expect("reopen");
        prop_assert_eq!(other.state_root(), root);
    }
}

#[test]
fn large_journal_records_are_chunked_and_replayed() {
    let g = genesis();
    let kv = MemKv::new();
    let mut store = ChainStore::open(kv.clone(), &g).expect("open");
    let big: StateChanges = (0..3000u32)
        .map(|i| (format!("big/{i}").into_bytes(), Some(vec![7u8; 20])))
        .collect();
    commit(&mut store, &big, vec![]);
    let chunks = kv.scan_prefix(key::JOURNAL_PREFIX).count();
    assert!(chunks > 2, "{chunks} chunks");
    let root = store.state_root();
    drop(store);
    let reopened = ChainStore::open(kv.clone(), &g).expect("reopen");
    assert_eq!(reopened.state_root(), root);
    assert_eq!(
        reopened.get(b"big/2999").expect("read"),
        Some(vec![7u8; 20])
    );
    drop(reopened);
    // A chunk lost from the middle is refused.
    kv.poke(&key::journal(1, 1), None);
    assert!(matches!(refusal(kv, &g), StoreError::Corrupt { .. }));
}

#[test]
fn large_blocks_are_stored_in_pieces() {
    let g = genesis();
    let kv = MemKv::new();
    let mut store = ChainStore::open(kv.clone(), &g).expect("open");
    commit(&mut store, &changes(&[]), (1..=100).map(transfer).collect());
    let block = store.block(1).expect("read").expect("block");
    let pieces = kv.scan_prefix(&key::block_pieces(1)).count();
    assert_eq!(pieces, block.encode().len().div_ceil(VALUE_CHUNK));
    assert!(pieces > 2, "{pieces} pieces");
    drop(store);
    let reopened = ChainStore::open(kv.clone(), &g).expect("reopen");
    assert_eq!(reopened.block(1).expect("read"), Some(block));
    drop(reopened);
    // A piece lost from the middle is refused.
    kv.poke(&key::block(1, 1), None);
    assert!(matches!(refusal(kv, &g), StoreError::Corrupt { .. }));
}

/// Heights of the journal records stored, ascending.
fn journal_heights(kv: &MemKv) -> Vec<u64> {
    let mut heights: Vec<u64> = kv
        .scan_prefix(key::JOURNAL_PREFIX)
        .map(|r| {
            key::parse_journal(&r.expect("scan").0)
                .expect("journal key")
                .0
        })
        .collect();
    heights.dedup();
    heights
}

#[test]
fn journal_is_replayed_and_checked_on_open() {
    let config = StoreConfig {
        write_back_blocks: 3,
        ..StoreConfig::default()
    };
    let (g, kv, mut store, mut expected) = open_fresh(&config);
    for h in 1..=5u8 {
        let c = changes(&[
            ("a", Some(&h.to_string())),
            ("b", (h % 2 == 0).then_some("x")),
        ]);
        commit(&mut store, &c, vec![]);
        expected.apply(&c);
    }
    assert!(store.write_back_pending().0 > 0, "buckets held back");
    let journal = journal_heights(&kv);
    assert!(!journal.is_empty() && journal.len() <= 4, "{journal:?}");
    assert_eq!(journal.last(), Some(&5));
    // Stored buckets lag behind: only the journal brings them to the head.
    let root = store.state_root();
    drop(store);
    let reopened = ChainStore::open_with(kv.clone(), &g, &config).expect("reopen");
    assert_eq!(reopened.state_root(), root);
    assert_eq!(reopened.get(b"a").expect("read"), Some(b"5".to_vec()));
    assert_eq!(root, root_of(&expected, BUCKETS));
    drop(reopened);

    // A damaged, missing or extra record is refused.
    let first = journal[0];
    let damaged = kv.clone();
    damaged.poke(&key::journal(5, 0), Some(b"junk"));
    assert!(matches!(refusal(damaged, &g), StoreError::Corrupt { .. }));
    kv.poke(&key::journal(5, 0), None);
    refusal(kv.clone(), &g);
    kv.poke(&key::journal(first + 7, 0), Some(&[0u8; 8]));
    assert!(matches!(refusal(kv, &g), StoreError::Corrupt { .. }));
}

/// The write-back sweep holds no more than the budget after any commit, and no bucket longer
/// than `write_back_blocks` blocks (so the journal never grows past that many records).
#[test]
fn write_back_keeps_to_its_budget_and_its_wait() {
    let config = StoreConfig {
        write_back_bytes: 4096,
        write_back_blocks: 4,
        ..StoreConfig::default()
    };
    let (g, kv, mut store, mut expected) = open_fresh(&config);
    for h in 1..=40u32 {
        // A few keys a block, some touched again block after block.
        let keys: Vec<String> = (0..6)
            .map(|i| format!("k{}", (h * 7 + i * i) % 50))
            .collect();
        let items: Vec<(&str, Option<&str>)> =
            keys.iter().map(|k| (k.as_str(), Some("value"))).collect();
        let c = changes(&items);
        commit(&mut store, &c, vec![]);
        expected.apply(&c);
        let (held, bytes) = store.write_back_pending();
        assert!(
            bytes <= 4096,
            "block {h}: {held} buckets, {bytes} bytes held"
        );
        let journal = journal_heights(&kv);
        assert!(journal.len() <= 5, "block {h}: journal {journal:?}");
    }
    assert_eq!(store.state_root(), root_of(&expected, BUCKETS));
    let root = store.state_root();
    drop(store);
    let reopened = ChainStore::open_with(kv, &g, &config).expect("reopen");
    assert_eq!(reopened.state_root(), root);
}

#[test]
fn store_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ChainStore<SledKv>>();
    assert_send_sync::<ChainStore<MemKv>>();
    assert_send_sync::<PreparedState>();
}

#[test]
fn recent_blocks_read_the_same_as_stored_ones() {
    let g = genesis();
    let kv = MemKv::new();
    let mut store = ChainStore::open(kv.clone(), &g).expect("open");
    for i in 0..(RECENT_BLOCKS as u64 + 3) {
        let c = changes(&[("k", Some(&format!("v{i}")))]);
        commit(&mut store, &c, vec![transfer(i + 1)]);
    }
    let reopened = ChainStore::open(kv, &g).expect("reopen");
    for h in 0..=store.height() {
        let kept = store.block(h).expect("read");
        assert!(kept.is_some(), "block {h}");
        assert_eq!(kept, reopened.block(h).expect("read"), "block {h}");
        let cert = store.certificate(h).expect("read");
        assert_eq!(cert.is_some(), h > 0, "certificate {h}");
        assert_eq!(
            cert,
            reopened.certificate(h).expect("read"),
            "certificate {h}"
        );
    }
    assert_eq!(store.block(store.height() + 1).expect("read"), None);
}

/// sled 0.34.7 writes any log message over a quarter of its segment (128 KiB by default) to a
/// file of its own and never fsyncs that file: a block stored so would not survive a power
/// loss, though `flush` returned. So no value, and no leaf of up to 16 of them, may get there.
#[test]
fn sled_store_writes_no_unsynced_blob_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = genesis_with("store-test", 1 << 16);
    let txs: Vec<HashedTx> = (1..=1500).map(transfer).collect();
    let mut store = ChainStore::open(SledKv::open(dir.path()).expect("sled"), &g).expect("open");
    for i in 0..20u32 {
        let c = changes(&[("k", Some(&format!("v{i}")))]);
        commit(&mut store, &c, txs.clone());
    }
    let encoded = store
        .block(20)
        .expect("read")
        .expect("block")
        .encode()
        .len();
    assert!(encoded > 128 << 10, "a block of {encoded} bytes");
    let blobs: Vec<_> = match std::fs::read_dir(dir.path().join("blobs")) {
        Ok(entries) => entries.map(|e| e.expect("dir entry").path()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("blobs dir: {e}"),
    };
    assert!(blobs.is_empty(), "sled wrote blob files {blobs:?}");
    drop(store);
    let reopened = ChainStore::open(SledKv::open(dir.path()).expect("sled"), &g).expect("reopen");
    for h in [1, 10, 20] {
        let block = reopened.block(h).expect("read").expect("block");
        assert_eq!(block.header.height, h);
        assert_eq!(block.txs.len(), txs.len());
    }
}

#[test]
fn prepare_on_several_threads_gives_what_one_gives() {
    let g = genesis_with("store-test", 1 << 12);
    let mut store = ChainStore::open(MemKv::new(), &g).expect("open");
    let first: StateChanges = (0..4000u32)
        .map(|i| (format!("k/{i}").into_bytes(), Some(vec![1u8; 30])))
        .collect();
    commit(&mut store, &first, vec![]);
    // Changes, additions and deletions over more buckets than one thread takes.
    let next: StateChanges = (0..6000u32)
        .map(|i| {
            let v = (i % 3 != 0).then(|| vec![(i % 251) as u8; 10 + (i % 40) as usize]);
            (format!("k/{}", i * 7 % 8000).into_bytes(), v)
        })
        .collect();
    let mut expected = genesis_state(&g);
    expected.apply(&first);
    expected.apply(&next);
    let mut results = Vec::new();
    for threads in [1, 2, 3] {
        store.set_prepare_threads(threads);
        let prepared = store.prepare(&next).expect("prepare");
        assert!(prepared.touched_buckets() > 3 * MIN_BUCKETS_PER_THREAD);
        assert_eq!(
            prepared.root(),
            root_of(&expected, 1 << 12),
            "{threads} threads"
        );
        results.push(prepared.buckets);
    }
    assert!(results.windows(2).all(|w| w[0] == w[1]));
}
