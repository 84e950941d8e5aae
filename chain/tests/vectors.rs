//! Cross-language test vectors (SPEC §2): key → address, tx → sign bytes → hash → signature,
//! one compute receipt and one vote.
//!
//! The JSON files in `tests/vectors/` are the reference: `check_*` re-derives every field from
//! the file's inputs and fails if the code disagrees, so any change to the canonical encoding,
//! the domain strings or the address rule breaks this test. To rewrite the files on purpose:
//!
//! ```text
//! AITBC_WRITE_VECTORS=1 cargo test -p aitbc-chain --test vectors -- --ignored
//! ```

use aitbc_chain::address::Address;
use aitbc_chain::bytes::{parse_hex, to_hex};
use aitbc_chain::crypto::{self, Domain, PublicKey, SecretKey, VerifyingKey};
use aitbc_chain::hash::Hash;
use aitbc_chain::receipt::{Receipt, ReceiptCore};
use aitbc_chain::tx::{Tx, TxKind};
use aitbc_chain::vote::{Phase, Vote};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

const CHAIN_ID: &str = "ait-vectors";
const MAX_TX_BYTES: usize = 1 << 20;

#[derive(Debug, Serialize, Deserialize)]
struct KeyVector {
    seed: String,
    public_key: String,
    address: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct TxVector {
    description: String,
    seed: String,
    tx_json: Tx,
    canonical_bytes: String,
    sign_bytes: String,
    hash: String,
    signature: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct ReceiptVector {
    description: String,
    chain_id: String,
    miner_seed: String,
    coordinator_seed: String,
    receipt_json: Receipt,
    core_canonical_bytes: String,
    sign_bytes: String,
    digest: String,
    miner_signature: String,
    coordinator_signature: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct VoteVector {
    description: String,
    chain_id: String,
    seed: String,
    vote_json: Vote,
    canonical_bytes: String,
    sign_bytes: String,
    digest: String,
    signature: String,
}

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(name)
}

/// Reads `name` both as raw JSON (to check the exact JSON form) and as typed vectors.
fn read<T: DeserializeOwned>(name: &str) -> (serde_json::Value, T) {
    let text = std::fs::read_to_string(path(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let raw: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let typed = serde_json::from_value(raw.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
    (raw, typed)
}

fn key(seed_hex: &str) -> SecretKey {
    SecretKey::from_seed(parse_hex::<32>(seed_hex).expect("seed is 32 bytes of 0x hex"))
}

fn hex_bytes(s: &str) -> Vec<u8> {
    hex::decode(s.strip_prefix("0x").expect("0x prefix")).expect("hex")
}

/// `serde_json` must give exactly the JSON stored in the file.
fn assert_json_form<T: Serialize>(stored: &serde_json::Value, value: &T, what: &str) {
    assert_eq!(
        &serde_json::to_value(value).expect("json"),
        stored,
        "{what}: JSON form"
    );
}

// ---------------------------------------------------------------------------------------------
// Checks against the committed files.

#[test]
fn check_keys() {
    let (_, keys): (_, Vec<KeyVector>) = read("keys.json");
    assert!(!keys.is_empty());
    for k in &keys {
        let sk = key(&k.seed);
        assert_eq!(sk.public().to_string(), k.public_key, "seed {}", k.seed);
        assert_eq!(k.public_key.parse::<PublicKey>(), Ok(sk.public()));
        let address = Address::of(&sk.public());
        assert_eq!(address.to_string(), k.address, "seed {}", k.seed);
        assert_eq!(k.address.parse::<Address>(), Ok(address));
        // The rule spelled out: bech32("ait", SHA-256(pubkey)[0..20]).
        assert_eq!(address.0[..], Hash::of(&sk.public().0).0[..20]);
    }
}

#[test]
fn check_txs() {
    let (raw, txs): (serde_json::Value, Vec<TxVector>) = read("txs.json");
    let mut kinds: Vec<&str> = txs.iter().map(|v| v.tx_json.kind.name()).collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            "authorize",
            "evidence",
            "param_update",
            "receipt_claim",
            "stake",
            "transfer",
            "unstake"
        ],
        "one vector per TxKind"
    );
    for (v, stored) in txs.iter().zip(raw.as_array().expect("list")) {
        let what = &v.description;
        let tx = &v.tx_json;
        assert_json_form(&stored["tx_json"], tx, what);
        let bytes = tx.encode();
        assert_eq!(to_hex(&bytes), v.canonical_bytes, "{what}: canonical bytes");
        assert_eq!(
            Tx::decode(&hex_bytes(&v.canonical_bytes), MAX_TX_BYTES).as_ref(),
            Ok(tx),
            "{what}: decode"
        );
        let sign_bytes = tx.sign_bytes();
        assert_eq!(to_hex(&sign_bytes), v.sign_bytes, "{what}: sign bytes");
        assert_eq!(tx.hash().to_string(), v.hash, "{what}: hash");
        assert_eq!(
            Hash::of(&sign_bytes),
            tx.hash(),
            "{what}: hash = SHA-256(sign bytes)"
        );
        let sk = key(&v.seed);
        assert_eq!(sk.public(), tx.sender_pubkey, "{what}: sender key");
        assert_eq!(
            sk.sign_digest(&tx.hash()).to_string(),
            v.signature,
            "{what}: signature"
        );
        assert_eq!(tx.sig.to_string(), v.signature, "{what}: tx.sig");
        assert_eq!(tx.verify_signature(&tx.hash()), Ok(()), "{what}: verifies");
    }
}

#[test]
fn check_receipt() {
    let (raw, v): (serde_json::Value, ReceiptVector) = read("receipt.json");
    let r = &v.receipt_json;
    assert_json_form(&raw["receipt_json"], r, "receipt");
    let core_bytes = aitbc_chain::codec::encode(&r.core);
    assert_eq!(to_hex(&core_bytes), v.core_canonical_bytes);
    let decoded: ReceiptCore =
        aitbc_chain::codec::decode(&hex_bytes(&v.core_canonical_bytes), MAX_TX_BYTES)
            .expect("core decodes");
    assert_eq!(&decoded, &r.core);
    let sign_bytes = crypto::sign_bytes(Domain::Receipt, &v.chain_id, &r.core);
    assert_eq!(to_hex(&sign_bytes), v.sign_bytes);
    let digest = r.core.digest(&v.chain_id);
    assert_eq!(digest, Hash::of(&sign_bytes));
    assert_eq!(digest.to_string(), v.digest);
    let (miner, coord) = (key(&v.miner_seed), key(&v.coordinator_seed));
    assert_eq!(miner.public(), r.miner_pubkey);
    assert_eq!(coord.public(), r.coordinator_pubkey);
    assert_eq!(miner.sign_digest(&digest).to_string(), v.miner_signature);
    assert_eq!(
        coord.sign_digest(&digest).to_string(),
        v.coordinator_signature
    );
    assert_eq!(r.miner_sig.to_string(), v.miner_signature);
    assert_eq!(r.coordinator_sig.to_string(), v.coordinator_signature);
    assert_eq!(r.verify_signatures(&v.chain_id), Ok(()));
}

#[test]
fn check_vote() {
    let (raw, v): (serde_json::Value, VoteVector) = read("vote.json");
    let vote = &v.vote_json;
    assert_json_form(&raw["vote_json"], vote, "vote");
    assert_eq!(to_hex(&aitbc_chain::codec::encode(vote)), v.canonical_bytes);
    let decoded: Vote = aitbc_chain::codec::decode(&hex_bytes(&v.canonical_bytes), MAX_TX_BYTES)
        .expect("vote decodes");
    assert_eq!(&decoded, vote);
    let sign_bytes = crypto::sign_bytes(Domain::Vote, &v.chain_id, vote);
    assert_eq!(to_hex(&sign_bytes), v.sign_bytes);
    let digest = vote.digest(&v.chain_id);
    assert_eq!(digest, Hash::of(&sign_bytes));
    assert_eq!(digest.to_string(), v.digest);
    let sk = key(&v.seed);
    assert_eq!(sk.public(), vote.validator);
    let signed = vote.clone().sign(&v.chain_id, &sk);
    assert_eq!(signed.sig.to_string(), v.signature);
    assert_eq!(signed.verify(&v.chain_id), Ok(()));
    let vk = VerifyingKey::new(&vote.validator).expect("valid key");
    let sig = v.signature.parse().expect("signature hex");
    assert_eq!(crypto::verify(&vk, &digest, &sig), Ok(()));
}

// ---------------------------------------------------------------------------------------------
// Generation (run deliberately; see the module docs).

fn seed(i: u8) -> [u8; 32] {
    Hash::of(format!("aitbc test vector seed {i}").as_bytes()).0
}

fn build_keys() -> Vec<KeyVector> {
    let mut ascending = [0u8; 32];
    for (i, b) in ascending.iter_mut().enumerate() {
        *b = i as u8;
    }
    [[0u8; 32], [1u8; 32], ascending, [0xff; 32], seed(0)]
        .into_iter()
        .map(|s| {
            let sk = SecretKey::from_seed(s);
            KeyVector {
                seed: to_hex(&s),
                public_key: sk.public().to_string(),
                address: Address::of(&sk.public()).to_string(),
            }
        })
        .collect()
}

fn sample_receipt(chain_id: &str) -> Receipt {
    let miner = SecretKey::from_seed(seed(20));
    let coord = SecretKey::from_seed(seed(21));
    let core = ReceiptCore {
        receipt_id: Hash::of(b"receipt-1"),
        job_id: 42,
        client: Address::of(&SecretKey::from_seed(seed(22)).public()),
        miner: Address::of(&miner.public()),
        coordinator: Address::of(&coord.public()),
        compute_units: 1_500,
        price: 250_000,
        output_hash: Hash::of(b"job 42 output"),
        client_payment_tx: Hash::of(b"job 42 payment"),
    };
    Receipt::sign(chain_id, core, &miner, &coord)
}

fn sample_vote(block: &[u8]) -> Vote {
    Vote {
        height: 7,
        view: 2,
        phase: Phase::Commit,
        block_hash: Hash::of(block),
        validator: SecretKey::from_seed(seed(30)).public(),
    }
}

fn build_txs() -> Vec<TxVector> {
    let recipient = Address::of(&SecretKey::from_seed(seed(2)).public());
    let validator = SecretKey::from_seed(seed(30));
    let cases: Vec<(&str, u8, TxKind, u64, u64)> = vec![
        (
            "transfer 1000000 to another account",
            1,
            TxKind::Transfer {
                to: recipient,
                amount: 1_000_000,
            },
            0,
            1_000,
        ),
        (
            "stake 5000000",
            3,
            TxKind::Stake { amount: 5_000_000 },
            1,
            1_000,
        ),
        (
            "unstake 2500000",
            3,
            TxKind::Unstake { amount: 2_500_000 },
            2,
            1_000,
        ),
        (
            "authorize an address (admin)",
            4,
            TxKind::Authorize {
                address: recipient,
                allowed: true,
            },
            0,
            500,
        ),
        (
            "update a parameter (admin)",
            4,
            TxKind::ParamUpdate {
                key: "base_fee".into(),
                value: 2_000,
            },
            1,
            500,
        ),
        (
            "claim a compute receipt (signed by miner and coordinator)",
            20,
            TxKind::ReceiptClaim {
                receipt: Box::new(sample_receipt(CHAIN_ID)),
            },
            0,
            2_000,
        ),
        (
            "evidence of a double commit vote",
            5,
            TxKind::Evidence {
                vote_a: Box::new(sample_vote(b"block A").sign(CHAIN_ID, &validator)),
                vote_b: Box::new(sample_vote(b"block B").sign(CHAIN_ID, &validator)),
            },
            u64::MAX - 1,
            3_000,
        ),
    ];
    cases
        .into_iter()
        .map(|(description, i, kind, nonce, fee)| {
            let sk = SecretKey::from_seed(seed(i));
            let tx = Tx::signed(CHAIN_ID, kind, &sk, nonce, fee);
            TxVector {
                description: description.into(),
                seed: to_hex(&seed(i)),
                canonical_bytes: to_hex(&tx.encode()),
                sign_bytes: to_hex(&tx.sign_bytes()),
                hash: tx.hash().to_string(),
                signature: tx.sig.to_string(),
                tx_json: tx,
            }
        })
        .collect()
}

fn build_receipt() -> ReceiptVector {
    let r = sample_receipt(CHAIN_ID);
    ReceiptVector {
        description: "compute receipt: both parties sign SHA-256(\"AIT/RECEIPT/1\" || chain_id || 0x00 || canonical core)".into(),
        chain_id: CHAIN_ID.into(),
        miner_seed: to_hex(&seed(20)),
        coordinator_seed: to_hex(&seed(21)),
        core_canonical_bytes: to_hex(&aitbc_chain::codec::encode(&r.core)),
        sign_bytes: to_hex(&crypto::sign_bytes(Domain::Receipt, CHAIN_ID, &r.core)),
        digest: r.core.digest(CHAIN_ID).to_string(),
        miner_signature: r.miner_sig.to_string(),
        coordinator_signature: r.coordinator_sig.to_string(),
        receipt_json: r,
    }
}

fn build_vote() -> VoteVector {
    let sk = SecretKey::from_seed(seed(30));
    let vote = sample_vote(b"block A");
    let signed = vote.clone().sign(CHAIN_ID, &sk);
    VoteVector {
        description:
            "commit vote: signs SHA-256(\"AIT/VOTE/1\" || chain_id || 0x00 || canonical vote)"
                .into(),
        chain_id: CHAIN_ID.into(),
        seed: to_hex(&seed(30)),
        canonical_bytes: to_hex(&aitbc_chain::codec::encode(&vote)),
        sign_bytes: to_hex(&crypto::sign_bytes(Domain::Vote, CHAIN_ID, &vote)),
        digest: vote.digest(CHAIN_ID).to_string(),
        signature: signed.sig.to_string(),
        vote_json: vote,
    }
}

fn write<T: Serialize>(name: &str, value: &T) {
    let mut text = serde_json::to_string_pretty(value).expect("json");
    text.push('\n');
    std::fs::write(path(name), text).unwrap_or_else(|e| panic!("{name}: {e}"));
}

#[test]
#[ignore = "rewrites tests/vectors/*.json; run with AITBC_WRITE_VECTORS=1 and --ignored"]
fn write_vectors() {
    if std::env::var("AITBC_WRITE_VECTORS").as_deref() != Ok("1") {
        eprintln!("set AITBC_WRITE_VECTORS=1 to rewrite tests/vectors/*.json");
        return;
    }
    std::fs::create_dir_all(path("")).expect("vectors dir");
    write("keys.json", &build_keys());
    write("txs.json", &build_txs());
    write("receipt.json", &build_receipt());
    write("vote.json", &build_vote());
}
