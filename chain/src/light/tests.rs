use super::fixture::{certify, genesis, headers, keys, set_of};
use super::store::{Conflict, HeaderStore};
use super::*;
use crate::genesis::Genesis;
use crate::store::MemKv;
use proptest::prelude::*;

const CHAIN: &str = "ait-light";

/// 30 headers signed by keys 1..=4; header 10 hands over to keys 5..=8, header 20 to 9..=11.
fn fixture() -> (Trusted, Vec<CertifiedHeader>) {
    let start = genesis(CHAIN, &keys(1, 4));
    let hs = headers(
        &start,
        &keys(1, 4),
        30,
        &[(10, keys(5, 4)), (20, keys(9, 3))],
    );
    (start, hs)
}

fn verifier(start: &Trusted) -> Verifier {
    Verifier::new(CHAIN, start.clone()).expect("valid start")
}

fn all_ok(n: usize) -> Outcome {
    Outcome {
        accepted: n,
        rejected: None,
    }
}

#[test]
fn follows_every_set_change_in_one_run_or_in_pieces() {
    let (start, hs) = fixture();
    let mut one = verifier(&start);
    assert_eq!(one.verify(&hs), all_ok(30));
    assert_eq!(one.trusted().header, hs[29].header);
    assert_eq!(one.trusted().next_set, set_of(&keys(9, 3)));
    assert_eq!(one.trusted_hash(), hs[29].header.hash());

    let mut pieces = verifier(&start);
    for chunk in [&hs[..10], &hs[10..11], &hs[11..20], &hs[20..]] {
        assert_eq!(pieces.verify(chunk), all_ok(chunk.len()));
    }
    assert_eq!(pieces.trusted(), one.trusted());
    // Resuming from a stored trust gives the same verifier.
    let mut resumed = Verifier::new(
        CHAIN,
        Trusted {
            header: hs[14].header.clone(),
            next_set: set_of(&keys(5, 4)),
        },
    )
    .expect("valid");
    assert_eq!(resumed.verify(&hs[15..]), all_ok(15));
    assert_eq!(resumed.trusted(), one.trusted());
}

/// Verifies `hs` after `edit` changed header `at`; returns the outcome.
fn tampered(at: usize, edit: impl FnOnce(&mut CertifiedHeader)) -> Outcome {
    let (start, mut hs) = fixture();
    edit(&mut hs[at]);
    let mut v = verifier(&start);
    let out = v.verify(&hs);
    assert_eq!(out.accepted, at, "{out:?}");
    assert_eq!(v.trusted().height(), at as u64);
    out
}

/// Re-signs header `at` after its header was edited, with `signers`.
fn resign(ch: &mut CertifiedHeader, signers: &[SecretKey]) {
    ch.commit = certify(CHAIN, &ch.header, signers);
}

use crate::crypto::SecretKey;

#[test]
fn names_each_broken_rule_and_keeps_the_good_prefix() {
    let err = |o: Outcome| o.rejected.expect("a rejection");
    assert!(matches!(
        err(tampered(3, |c| {
            c.header.chain_id = "other".into();
            resign(c, &keys(1, 4));
        })),
        HeaderError::WrongChain { .. }
    ));
    assert!(matches!(
        err(tampered(3, |c| {
            c.header.parent_hash = Hash::ZERO;
            resign(c, &keys(1, 4));
        })),
        HeaderError::BrokenLink { .. }
    ));
    assert!(matches!(
        err(tampered(3, |c| {
            c.header.timestamp_ms = 1_000;
            resign(c, &keys(1, 4));
        })),
        HeaderError::TimestampNotAfterParent { .. }
    ));
    // Signed by the old set after the change to keys 5..=8.
    assert!(matches!(
        err(tampered(12, |c| {
            c.header.validators_hash = set_of(&keys(1, 4)).hash();
            resign(c, &keys(1, 4));
        })),
        HeaderError::WrongValidators { .. }
    ));
    assert!(matches!(
        err(tampered(12, |c| resign(c, &keys(1, 4)))),
        HeaderError::Certificate(CertificateError::UnknownSigner(_))
    ));
    // Two of four: 2000 of 4000 power is not more than 2/3.
    assert_eq!(
        err(tampered(5, |c| resign(c, &keys(1, 2)))),
        HeaderError::Certificate(CertificateError::NoQuorum {
            power: 2000,
            total: 4000
        })
    );
    assert!(matches!(
        err(tampered(5, |c| {
            let s = c.commit.signatures[1].clone();
            c.commit.signatures.push(s);
        })),
        HeaderError::Certificate(CertificateError::DuplicateSigner(_))
    ));
    // A forged signature: everything else about the header is right.
    assert!(matches!(
        err(tampered(7, |c| c.commit.signatures[2].sig.0[5] ^= 1)),
        HeaderError::Certificate(CertificateError::BadSignature(_))
    ));
    assert!(matches!(
        err(tampered(7, |c| c.commit.height = 9)),
        HeaderError::Certificate(CertificateError::WrongHeight { .. })
    ));
    assert!(matches!(
        err(tampered(9, |c| c.next_validators = None)),
        HeaderError::MissingSetChange(_)
    ));
    assert!(matches!(
        err(tampered(9, |c| c.next_validators = Some(set_of(&keys(30, 4))))),
        HeaderError::SetMismatch { .. }
    ));
    assert!(matches!(
        err(tampered(4, |c| c.next_validators = Some(set_of(&keys(1, 4))))),
        HeaderError::UnexpectedSet
    ));
    assert!(matches!(
        err(tampered(9, |c| c.next_validators = Some(ValidatorSet::default()))),
        HeaderError::EmptySet
    ));
}

#[test]
fn a_gap_or_a_repeat_is_the_wrong_height() {
    let (start, hs) = fixture();
    let mut v = verifier(&start);
    assert!(matches!(
        v.verify(&hs[1..]).rejected,
        Some(HeaderError::WrongHeight {
            expected: 1,
            got: 2
        })
    ));
    assert_eq!(v.verify(&hs[..3]), all_ok(3));
    assert!(matches!(
        v.verify(&hs[2..4]).rejected,
        Some(HeaderError::WrongHeight { .. })
    ));
    assert_eq!(v.trusted().height(), 3);
}

#[test]
fn a_second_certified_header_at_the_head_is_a_conflict() {
    let (start, hs) = fixture();
    let mut v = verifier(&start);
    v.verify(&hs[..5]);
    let mut other = hs[4].clone();
    other.header.tx_root = Hash::ZERO;
    other.commit = certify(CHAIN, &other.header, &keys(1, 3));
    assert!(v.is_conflict(&other));
    // Not a conflict: the same header, too little power, another height.
    assert!(!v.is_conflict(&hs[4]));
    let mut weak = other.clone();
    weak.commit = certify(CHAIN, &weak.header, &keys(1, 2));
    assert!(!v.is_conflict(&weak));
    assert!(!v.is_conflict(&hs[3]));
}

#[test]
fn the_store_resumes_from_what_it_verified() {
    let ks = keys(1, 4);
    let refs: Vec<&SecretKey> = ks.iter().collect();
    let g = Genesis::dev(CHAIN, &refs, &[]);
    let kv = MemKv::new();
    let mut store = HeaderStore::open(kv.clone(), &g).expect("opens");
    let start = store.trusted().clone();
    assert_eq!(start.height(), 0);
    assert_eq!(&start.header, store.genesis_header());
    assert_eq!(start.header.parent_hash, g.hash());
    let hs = headers(&start, &ks, 12, &[(6, keys(5, 4))]);
    let mut v = Verifier::new(CHAIN, start).expect("valid");
    assert_eq!(v.verify(&hs), all_ok(12));
    store.append(&hs, v.trusted()).expect("append");

    // A run that overlaps the trusted head: only the stored, identical headers are known.
    assert_eq!(store.known_prefix(&hs[9..]).expect("read"), 3);
    assert_eq!(store.known_prefix(&hs[..2]).expect("read"), 2);
    let mut forged = hs[10..].to_vec();
    forged[1].header.tx_root = Hash::ZERO;
    assert_eq!(store.known_prefix(&forged).expect("read"), 1);
    let more = headers(v.trusted(), &keys(5, 4), 2, &[]);
    assert_eq!(store.known_prefix(&more).expect("read"), 0);

    let reopened = HeaderStore::open(kv.clone(), &g).expect("reopens");
    assert_eq!(reopened.trusted(), v.trusted());
    assert_eq!(reopened.header(6).expect("read"), Some(hs[5].clone()));
    assert_eq!(reopened.header(13).expect("read"), None);

    let conflict = Conflict {
        trusted: hs[11].clone(),
        other: hs[10].clone(),
    };
    reopened.record_conflict(&conflict).expect("record");
    assert_eq!(reopened.conflicts().expect("read"), vec![conflict]);

    let other = Genesis::dev("ait-other", &refs, &[]);
    assert!(matches!(
        HeaderStore::open(kv, &other),
        Err(crate::store::StoreError::GenesisMismatch { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever byte of whichever header or certificate a peer flips, nothing from that header
    /// on is trusted, and everything before it is.
    #[test]
    fn a_flipped_byte_is_never_trusted(at in 0usize..30, pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let (start, mut hs) = fixture();
        let mut bytes = crate::codec::encode(&hs[at]);
        let i = pos.index(bytes.len());
        bytes[i] ^= 1 << bit;
        let Ok(forged) = crate::codec::decode::<CertifiedHeader>(&bytes, bytes.len()) else {
            return Ok(());
        };
        hs[at] = forged;
        let mut v = verifier(&start);
        let out = v.verify(&hs);
        prop_assert_eq!(out.accepted, at);
        prop_assert!(out.rejected.is_some());
    }
}
