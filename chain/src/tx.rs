//! Transactions (SPEC §3).
//!
//! The hash of a tx is the digest its signature covers,
//! `SHA-256("AIT/TX/1" || chain_id || 0x00 || canonical bytes of the unsigned fields)`. It
//! excludes the signature, so the same transaction can never appear under two hashes.

use crate::address::Address;
use crate::codec;
use crate::crypto::{self, Domain, PublicKey, SecretKey, Signature, VerifyingKey};
use crate::hash::Hash;
use crate::receipt::Receipt;
use crate::vote::SignedVote;
use serde::{Deserialize, Serialize};

/// What a transaction does, with its payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxKind {
    Transfer {
        to: Address,
        amount: u64,
    },
    ReceiptClaim {
        receipt: Box<Receipt>,
    },
    Stake {
        amount: u64,
    },
    Unstake {
        amount: u64,
    },
    Authorize {
        address: Address,
        allowed: bool,
    },
    ParamUpdate {
        key: String,
        value: u64,
    },
    Evidence {
        vote_a: Box<SignedVote>,
        vote_b: Box<SignedVote>,
    },
}

impl TxKind {
    pub fn name(&self) -> &'static str {
        match self {
            TxKind::Transfer { .. } => "transfer",
            TxKind::ReceiptClaim { .. } => "receipt_claim",
            TxKind::Stake { .. } => "stake",
            TxKind::Unstake { .. } => "unstake",
            TxKind::Authorize { .. } => "authorize",
            TxKind::ParamUpdate { .. } => "param_update",
            TxKind::Evidence { .. } => "evidence",
        }
    }
}

/// A signed transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tx {
    pub chain_id: String,
    pub kind: TxKind,
    pub sender_pubkey: PublicKey,
    pub nonce: u64,
    pub fee: u64,
    pub sig: Signature,
}

/// The signed fields of a [`Tx`], borrowed; encodes exactly as the tx minus its signature.
#[derive(Serialize)]
struct TxBody<'a> {
    chain_id: &'a str,
    kind: &'a TxKind,
    sender_pubkey: &'a PublicKey,
    nonce: u64,
    fee: u64,
}

impl Tx {
    /// Builds and signs a transaction.
    pub fn signed(chain_id: &str, kind: TxKind, key: &SecretKey, nonce: u64, fee: u64) -> Tx {
        let mut tx = Tx {
            chain_id: chain_id.to_string(),
            kind,
            sender_pubkey: key.public(),
            nonce,
            fee,
            sig: Signature([0; 64]),
        };
        tx.sig = key.sign_digest(&tx.hash());
        tx
    }

    fn body(&self) -> TxBody<'_> {
        TxBody {
            chain_id: &self.chain_id,
            kind: &self.kind,
            sender_pubkey: &self.sender_pubkey,
            nonce: self.nonce,
            fee: self.fee,
        }
    }

    /// `domain || chain_id || 0x00 || unsigned fields`, the preimage of [`Tx::hash`].
    pub fn sign_bytes(&self) -> Vec<u8> {
        crypto::sign_bytes(Domain::Tx, &self.chain_id, &self.body())
    }

    /// The tx hash, which is also the digest the sender signs.
    pub fn hash(&self) -> Hash {
        crypto::signing_digest(Domain::Tx, &self.chain_id, &self.body())
    }

    pub fn sender(&self) -> Address {
        Address::of(&self.sender_pubkey)
    }

    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    pub fn encoded_len(&self) -> usize {
        codec::encoded_len(self)
    }

    pub fn decode(bytes: &[u8], max_len: usize) -> Result<Tx, codec::CodecError> {
        codec::decode(bytes, max_len)
    }

    /// Checks the sender's signature over `hash` (which must be `self.hash()`).
    pub fn verify_signature(&self, hash: &Hash) -> Result<(), crypto::SigError> {
        let key = VerifyingKey::new(&self.sender_pubkey)?;
        crypto::verify(&key, hash, &self.sig)
    }

    /// The most this tx can take from the sender's balance: the fee, plus the amount that a
    /// transfer sends or a stake bonds. The mempool reserves this much per pending tx.
    pub fn max_spend(&self) -> u64 {
        let moved = match &self.kind {
            TxKind::Transfer { amount, .. } | TxKind::Stake { amount } => *amount,
            _ => 0,
        };
        self.fee.saturating_add(moved)
    }

    /// The least fee this tx must carry under the given fee schedule.
    pub fn min_fee(&self, base_fee: u64, fee_per_byte: u64) -> u64 {
        crate::params::fee_floor(base_fee, fee_per_byte, self.encoded_len() as u64)
    }
}

/// A transaction with its hash computed once. Everything past decoding passes these around so
/// that no layer hashes the same tx twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashedTx {
    pub tx: Tx,
    pub hash: Hash,
    pub len: usize,
    /// `tx.sender()`, derived once (a SHA-256): admission and execution each need it.
    pub sender: Address,
}

/// Which of a tx's signatures: errors name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigPart {
    Sender,
    ReceiptMiner,
    ReceiptCoordinator,
    EvidenceVoteA,
    EvidenceVoteB,
}

impl std::fmt::Display for SigPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SigPart::Sender => "sender",
            SigPart::ReceiptMiner => "receipt miner",
            SigPart::ReceiptCoordinator => "receipt coordinator",
            SigPart::EvidenceVoteA => "evidence vote_a",
            SigPart::EvidenceVoteB => "evidence vote_b",
        })
    }
}

/// One signature a tx carries: `signer` signed `digest`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxSignature<'a> {
    pub part: SigPart,
    pub signer: &'a PublicKey,
    pub digest: Hash,
    pub sig: Signature,
}

impl HashedTx {
    /// Every signature the tx carries: the sender's, a receipt's miner and coordinator, an
    /// evidence's two votes. The one list that admission and block validation both check, so
    /// they cannot disagree on what "verified" covers. Fails with the part whose public key is
    /// not the key of the address it signs for (a receipt's miner or coordinator).
    pub fn signatures(&self) -> Result<impl Iterator<Item = TxSignature<'_>>, SigPart> {
        let chain_id = &self.tx.chain_id;
        let sender = TxSignature {
            part: SigPart::Sender,
            signer: &self.tx.sender_pubkey,
            digest: self.hash,
            sig: self.tx.sig,
        };
        let inner = match &self.tx.kind {
            TxKind::ReceiptClaim { receipt } => receipt.signatures(chain_id)?.map(Some),
            TxKind::Evidence { vote_a, vote_b } => [
                Some(TxSignature {
                    part: SigPart::EvidenceVoteA,
                    signer: &vote_a.vote.validator,
                    digest: vote_a.vote.digest(chain_id),
                    sig: vote_a.sig,
                }),
                Some(TxSignature {
                    part: SigPart::EvidenceVoteB,
                    signer: &vote_b.vote.validator,
                    digest: vote_b.vote.digest(chain_id),
                    sig: vote_b.sig,
                }),
            ],
            TxKind::Transfer { .. }
            | TxKind::Stake { .. }
            | TxKind::Unstake { .. }
            | TxKind::Authorize { .. }
            | TxKind::ParamUpdate { .. } => [None, None],
        };
        Ok(std::iter::once(sender).chain(inner.into_iter().flatten()))
    }

    pub fn new(tx: Tx) -> HashedTx {
        let hash = tx.hash();
        let len = tx.encoded_len();
        let sender = tx.sender();
        HashedTx {
            tx,
            hash,
            len,
            sender,
        }
    }
}

impl Serialize for HashedTx {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.tx.serialize(s)
    }
}

impl<'de> Deserialize<'de> for HashedTx {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Tx::deserialize(d).map(HashedTx::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer(key: &SecretKey) -> Tx {
        Tx::signed(
            "ait-test",
            TxKind::Transfer {
                to: Address([3; 20]),
                amount: 5,
            },
            key,
            1,
            10_000,
        )
    }

    #[test]
    fn hash_excludes_signature_and_covers_every_field() {
        let key = SecretKey::from_seed([1; 32]);
        let tx = transfer(&key);
        assert_eq!(tx.verify_signature(&tx.hash()), Ok(()));
        let mut resigned = tx.clone();
        resigned.sig = Signature([0; 64]);
        assert_eq!(resigned.hash(), tx.hash());
        let variants = [
            Tx {
                chain_id: "other".into(),
                ..tx.clone()
            },
            Tx {
                nonce: 2,
                ..tx.clone()
            },
            Tx {
                fee: 1,
                ..tx.clone()
            },
            Tx {
                sender_pubkey: SecretKey::from_seed([2; 32]).public(),
                ..tx.clone()
            },
            Tx {
                kind: TxKind::Stake { amount: 5 },
                ..tx.clone()
            },
        ];
        for v in variants {
            assert_ne!(v.hash(), tx.hash());
            assert!(
                v.verify_signature(&v.hash()).is_err(),
                "{v:?} still verifies"
            );
        }
    }

    #[test]
    fn round_trips_binary_and_json() {
        let tx = transfer(&SecretKey::from_seed([1; 32]));
        let bytes = tx.encode();
        assert_eq!(bytes.len(), tx.encoded_len());
        assert_eq!(Tx::decode(&bytes, 1 << 16), Ok(tx.clone()));
        let json = serde_json::to_string(&tx).expect("json");
        assert!(json.contains("ait1"), "{json}");
        assert_eq!(serde_json::from_str::<Tx>(&json).expect("parse"), tx);
        let hashed: HashedTx = codec::decode(&bytes, 1 << 16).expect("decode");
        assert_eq!(hashed.hash, tx.hash());
        assert_eq!(hashed.len, bytes.len());
    }

    #[test]
    fn sign_bytes_have_domain_chain_and_separator() {
        let tx = transfer(&SecretKey::from_seed([1; 32]));
        let sb = tx.sign_bytes();
        assert!(sb.starts_with(b"AIT/TX/1ait-test\0"));
        assert_eq!(Hash::of(&sb), tx.hash());
    }

    #[test]
    fn min_fee_counts_bytes() {
        let tx = transfer(&SecretKey::from_seed([1; 32]));
        assert_eq!(tx.min_fee(100, 2), 100 + 2 * tx.encoded_len() as u64);
        assert_eq!(tx.min_fee(u64::MAX, u64::MAX), u64::MAX);
    }
}
