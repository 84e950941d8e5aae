use super::*;
use crate::block::CommitSig;
use crate::crypto::SecretKey;
use crate::genesis::{Genesis, GenesisAccount};
use crate::store::MemKv;
use crate::tx::{Tx, TxKind};

const CHAIN: &str = "ait-val";

fn keys(n: u8) -> Vec<SecretKey> {
    (1..=n).map(|i| SecretKey::from_seed([i; 32])).collect()
}

fn genesis(ks: &[SecretKey]) -> Genesis {
    let refs: Vec<&SecretKey> = ks.iter().collect();
    let mut g = Genesis::dev(CHAIN, &refs, &[]);
    for k in ks {
        g.accounts.push(GenesisAccount {
            address: Address::of(&k.public()),
            balance: 1_000_000_000_000,
        });
    }
    g
}

fn cert(ks: &[SecretKey], block: &Block) -> CommitCertificate {
    let mut c = CommitCertificate {
        height: block.header.height,
        view: block.header.view,
        block_hash: block.hash(),
        signatures: vec![],
    };
    for k in ks {
        let sig = c.vote_for(k.public()).sign(CHAIN, k).sig;
        c.signatures.push(CommitSig {
            validator: k.public(),
            sig,
        });
    }
    c
}

fn transfer(k: &SecretKey, nonce: u64) -> HashedTx {
    HashedTx::new(Tx::signed(
        CHAIN,
        TxKind::Transfer {
            to: Address([9; 20]),
            amount: 5,
        },
        k,
        nonce,
        1_000_000,
    ))
}

/// The proposer of the next block on `store`'s head in `view`, with its key.
fn proposer<'a>(store: &ChainStore<MemKv>, ks: &'a [SecretKey], view: u64) -> &'a SecretKey {
    let h = store.height() + 1;
    let set = store.voting_set(h).expect("set");
    let addr = proposer_of(&set, h, view).expect("proposer");
    ks.iter()
        .find(|k| Address::of(&k.public()) == addr)
        .expect("key")
}

/// Builds the next block on `store` (with `txs`) and commits it with a certificate from all
/// of `ks`; returns it with its certificate.
fn advance(
    store: &mut ChainStore<MemKv>,
    ks: &[SecretKey],
    last: Option<CommitCertificate>,
    txs: Vec<HashedTx>,
) -> (Block, CommitCertificate) {
    let p = proposer(store, ks, 0);
    let prop = build_proposal(store, Address::of(&p.public()), 0, 1_000, last, txs).expect("build");
    assert!(prop.rejected.is_empty(), "{:?}", prop.rejected);
    let c = cert(ks, &prop.block);
    store
        .commit_block(prop.block.clone(), &c, prop.validated.prepared)
        .expect("commit");
    (prop.block, c)
}

#[test]
fn built_blocks_validate_on_another_node() {
    let ks = keys(4);
    let g = genesis(&ks);
    let mut a = ChainStore::open(MemKv::new(), &g).expect("open");
    let mut b = ChainStore::open(MemKv::new(), &g).expect("open");
    let mut last = None;
    for i in 1..=3u64 {
        let p = proposer(&a, &ks, 0);
        let prop = build_proposal(
            &a,
            Address::of(&p.public()),
            0,
            i * 10,
            last.clone(),
            vec![transfer(&ks[0], i)],
        )
        .expect("build");
        assert_eq!(prop.block.txs.len(), 1);
        let v = validate_block(&b, &prop.block, |_| false).expect("valid");
        assert_eq!(v.hash, prop.block.hash());
        assert_eq!(v.prepared.root(), prop.block.header.state_root);
        let c = cert(&ks[..3], &prop.block);
        a.commit_block(prop.block.clone(), &c, prop.validated.prepared)
            .expect("commit a");
        b.commit_block(prop.block.clone(), &c, v.prepared)
            .expect("commit b");
        last = Some(c);
    }
    assert_eq!(a.head_hash(), b.head_hash());
    assert_eq!(a.state_root(), b.state_root());
}

/// A valid next block on a chain of two committed blocks, and the store it follows.
fn fixture() -> (Vec<SecretKey>, ChainStore<MemKv>, Block) {
    let ks = keys(4);
    let g = genesis(&ks);
    let mut store = ChainStore::open(MemKv::new(), &g).expect("open");
    let (_, c1) = advance(&mut store, &ks, None, vec![]);
    let (_, c2) = advance(&mut store, &ks, Some(c1), vec![]);
    let p = proposer(&store, &ks, 1);
    let prop = build_proposal(
        &store,
        Address::of(&p.public()),
        1,
        5_000,
        Some(c2),
        vec![transfer(&ks[1], 1)],
    )
    .expect("build");
    validate_block(&store, &prop.block, |_| false).expect("fixture is valid");
    (ks, store, prop.block)
}

fn invalid(store: &ChainStore<MemKv>, block: &Block) -> InvalidBlock {
    let e = validate_block(store, block, |_| false).expect_err("must be invalid");
    assert!(e.is_invalid(), "{e}");
    e
}

#[test]
fn every_header_field_is_checked() {
    let (ks, store, good) = fixture();
    let bad = |f: &dyn Fn(&mut Block)| {
        let mut b = good.clone();
        f(&mut b);
        invalid(&store, &b)
    };
    assert!(matches!(
        bad(&|b| b.header.chain_id = "other".into()),
        InvalidBlock::WrongChain { .. }
    ));
    assert!(matches!(
        bad(&|b| b.header.height += 1),
        InvalidBlock::WrongHeight { .. }
    ));
    assert!(matches!(
        bad(&|b| b.header.parent_hash = Hash::ZERO),
        InvalidBlock::WrongParent { .. }
    ));
    let parent_ts = store.head().timestamp_ms;
    assert!(matches!(
        bad(&|b| b.header.timestamp_ms = parent_ts),
        InvalidBlock::Timestamp { .. }
    ));
    assert!(matches!(
        bad(&|b| b.header.view += 1),
        InvalidBlock::WrongProposer { .. }
    ));
    assert!(matches!(
        bad(&|b| b.header.validators_hash = Hash::ZERO),
        InvalidBlock::Mismatch {
            field: "validators_hash",
            ..
        }
    ));
    assert!(matches!(
        bad(&|b| b.header.tx_root = Hash::ZERO),
        InvalidBlock::Mismatch {
            field: "tx_root",
            ..
        }
    ));
    assert!(matches!(
        bad(&|b| b.header.state_root = Hash::ZERO),
        InvalidBlock::Mismatch {
            field: "state_root",
            ..
        }
    ));
    assert!(matches!(
        bad(&|b| b.header.evidence_hash = Hash([1; 32])),
        InvalidBlock::Mismatch {
            field: "evidence_hash",
            ..
        }
    ));
    assert!(matches!(
        bad(&|b| b.header.next_validators_hash = Hash::ZERO),
        InvalidBlock::Mismatch {
            field: "next_validators_hash",
            ..
        }
    ));
    assert!(matches!(
        bad(&|b| b.last_commit = None),
        InvalidBlock::LastCommitMissing
    ));
    // A last_commit without a quorum, one for another block, and one whose hash the header
    // does not commit to.
    assert!(matches!(
        bad(&|b| if let Some(c) = &mut b.last_commit {
            c.signatures.truncate(2)
        }),
        InvalidBlock::LastCommit(CertificateError::NoQuorum { .. })
    ));
    // The head's own certificate is not checked again; any other is, signatures too.
    assert_eq!(good.last_commit.as_ref(), store.head_certificate());
    assert!(matches!(
        bad(&|b| if let Some(c) = &mut b.last_commit {
            c.signatures[0].sig = crate::crypto::Signature([7; 64])
        }),
        InvalidBlock::LastCommit(CertificateError::BadSignature(_))
    ));
    assert!(matches!(
        bad(&|b| if let Some(c) = &mut b.last_commit {
            c.block_hash = Hash::ZERO
        }),
        InvalidBlock::LastCommit(CertificateError::WrongBlock { .. })
    ));
    let other = cert(
        &ks[..3],
        &store.block(store.height()).expect("read").expect("head"),
    );
    assert!(matches!(
        bad(&|b| b.last_commit = Some(other.clone())),
        InvalidBlock::Mismatch {
            field: "last_commit_hash",
            ..
        }
    ));
    // A forged tx signature (tx_root unchanged: the hash excludes the signature).
    let e = bad(&|b| b.txs[0].tx.sig = crate::crypto::Signature([7; 64]));
    assert!(matches!(e, InvalidBlock::Tx { index: 0, .. }), "{e}");
}

#[test]
fn the_first_block_carries_no_last_commit() {
    let ks = keys(1);
    let g = genesis(&ks);
    let store = ChainStore::open(MemKv::new(), &g).expect("open");
    let addr = Address::of(&ks[0].public());
    let prop = build_proposal(&store, addr, 0, 1, None, vec![]).expect("build");
    validate_block(&store, &prop.block, |_| false).expect("valid");
    let mut with = prop.block.clone();
    with.last_commit = Some(cert(&ks, &prop.block));
    assert!(matches!(
        invalid(&store, &with),
        InvalidBlock::LastCommitUnexpected
    ));
}

#[test]
fn validator_set_changes_are_recorded_and_survive_a_reopen() {
    let ks = keys(2);
    let mut g = genesis(&ks);
    g.params.rotation_interval = 3;
    g.params.unbonding_blocks = 3;
    let kv = MemKv::new();
    let mut store = ChainStore::open(kv.clone(), &g).expect("open");
    let genesis_set = store.voting_set(1).expect("set");
    let stake = HashedTx::new(Tx::signed(
        CHAIN,
        TxKind::Stake {
            amount: g.params.min_stake,
        },
        &ks[1],
        1,
        1_000_000,
    ));
    let (_, c1) = advance(&mut store, &ks, None, vec![stake]);
    let (_, c2) = advance(&mut store, &ks, Some(c1), vec![]);
    assert_eq!(store.set_change_at(2), None);
    let (b3, c3) = advance(&mut store, &ks, Some(c2), vec![]);
    // Block 3 ends the epoch: validator 1's doubled stake is the new power from height 4.
    let new_set = store.set_change_at(3).expect("a new set at the epoch end");
    assert_ne!(new_set.hash(), genesis_set.hash());
    assert_eq!(b3.header.next_validators_hash, new_set.hash());
    assert_eq!(store.voting_set(3).expect("set").hash(), genesis_set.hash());
    assert_eq!(store.voting_set(4).expect("set").hash(), new_set.hash());
    let (b4, _) = advance(&mut store, &ks, Some(c3), vec![]);
    assert_eq!(b4.header.validators_hash, new_set.hash());
    drop(store);
    let reopened = ChainStore::open(kv, &g).expect("reopen");
    assert_eq!(
        reopened.voting_set(1).expect("set").hash(),
        genesis_set.hash()
    );
    assert_eq!(reopened.voting_set(5).expect("set").hash(), new_set.hash());
    assert_eq!(reopened.voting_set(0), None);
}
