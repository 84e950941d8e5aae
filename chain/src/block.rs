//! Headers, blocks and commit certificates (SPEC §5).

use crate::address::Address;
use crate::codec;
use crate::crypto::{self, BatchItem, PublicKey, Signature, VerifyingKey};
use crate::hash::{merkle_root, Hash};
use crate::tx::{HashedTx, TxKind};
use crate::validator_set::ValidatorSet;
use crate::vote::{Phase, Vote};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub chain_id: String,
    pub height: u64,
    pub view: u64,
    pub timestamp_ms: u64,
    pub parent_hash: Hash,
    pub proposer: Address,
    pub tx_root: Hash,
    pub state_root: Hash,
    /// Hash of the set that votes on this block.
    pub validators_hash: Hash,
    /// Hash of the set that votes on the next block (differs only after an epoch boundary).
    pub next_validators_hash: Hash,
    pub last_commit_hash: Hash,
    pub evidence_hash: Hash,
}

impl Header {
    /// The block hash: SHA-256 of the canonical header bytes.
    pub fn hash(&self) -> Hash {
        Hash::of_encoded(self)
    }
}

/// One validator's Commit signature inside a certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitSig {
    pub validator: PublicKey,
    pub sig: Signature,
}

/// Proof that a quorum committed `block_hash` at `height` in `view`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitCertificate {
    pub height: u64,
    pub view: u64,
    pub block_hash: Hash,
    pub signatures: Vec<CommitSig>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CertificateError {
    #[error("certificate is for height {got}, expected {expected}")]
    WrongHeight { expected: u64, got: u64 },
    #[error("certificate is for block {got}, expected {expected}")]
    WrongBlock { expected: Hash, got: Hash },
    #[error("signer {0} is not in the validator set")]
    UnknownSigner(PublicKey),
    #[error("signer {0} appears twice")]
    DuplicateSigner(PublicKey),
    #[error("signers hold {power} of {total} power, not more than two thirds")]
    NoQuorum { power: u64, total: u64 },
    #[error("a signature does not verify: {0}")]
    BadSignature(crypto::SigError),
}

impl CommitCertificate {
    /// The vote each signature in this certificate signs.
    pub fn vote_for(&self, validator: PublicKey) -> Vote {
        Vote {
            height: self.height,
            view: self.view,
            phase: Phase::Commit,
            block_hash: self.block_hash,
            validator,
        }
    }

    /// Checks the certificate commits `block_hash` at `height` with more than 2/3 of `set`'s
    /// power, verifying all signatures in one batch.
    pub fn verify(
        &self,
        chain_id: &str,
        height: u64,
        block_hash: &Hash,
        set: &ValidatorSet,
    ) -> Result<(), CertificateError> {
        if self.height != height {
            return Err(CertificateError::WrongHeight {
                expected: height,
                got: self.height,
            });
        }
        if &self.block_hash != block_hash {
            return Err(CertificateError::WrongBlock {
                expected: *block_hash,
                got: self.block_hash,
            });
        }
        verify_quorum(chain_id, |v| self.vote_for(v), &self.signatures, set)
    }

    pub fn hash(&self) -> Hash {
        Hash::of_encoded(self)
    }
}

/// Checks that `signatures` sign `vote_for(signer)` and come from distinct members of `set`
/// holding more than 2/3 of its power, verifying them in one batch. Commit and prepared
/// certificates share it, so their rules cannot drift apart.
pub fn verify_quorum(
    chain_id: &str,
    vote_for: impl Fn(PublicKey) -> Vote,
    signatures: &[CommitSig],
    set: &ValidatorSet,
) -> Result<(), CertificateError> {
    quorum_signers(signatures, set)?;
    let mut keys = Vec::with_capacity(signatures.len());
    let mut digests = Vec::with_capacity(signatures.len());
    for cs in signatures {
        keys.push(VerifyingKey::new(&cs.validator).map_err(CertificateError::BadSignature)?);
        digests.push(vote_for(cs.validator).digest(chain_id));
    }
    let items: Vec<BatchItem<'_>> = signatures
        .iter()
        .zip(keys.iter().zip(&digests))
        .map(|(cs, (key, digest))| BatchItem {
            key,
            digest,
            sig: &cs.sig,
        })
        .collect();
    crypto::verify_batch(&items).map_err(CertificateError::BadSignature)
}

/// The signers' positions in `set`, once it is checked that they are distinct members holding
/// more than 2/3 of its power. Signatures are not checked: callers that verify many
/// certificates at once (light peers) batch them across certificates.
pub fn quorum_signers(
    signatures: &[CommitSig],
    set: &ValidatorSet,
) -> Result<Vec<usize>, CertificateError> {
    let mut seen = vec![false; set.len()];
    let mut power = 0u64;
    let mut positions = Vec::with_capacity(signatures.len());
    for cs in signatures {
        let idx = set
            .index_of(&cs.validator)
            .ok_or(CertificateError::UnknownSigner(cs.validator))?;
        if std::mem::replace(&mut seen[idx], true) {
            return Err(CertificateError::DuplicateSigner(cs.validator));
        }
        power = power.saturating_add(set.validators()[idx].power);
        positions.push(idx);
    }
    if !set.is_quorum(power) {
        return Err(CertificateError::NoQuorum {
            power,
            total: set.total_power(),
        });
    }
    Ok(positions)
}

/// A block: header, transactions, and the certificate that committed its parent (absent for
/// the first block after genesis, whose parent was fixed by the genesis file, not by votes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub header: Header,
    pub txs: Vec<HashedTx>,
    pub last_commit: Option<CommitCertificate>,
}

impl Block {
    pub fn hash(&self) -> Hash {
        self.header.hash()
    }

    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    pub fn decode(bytes: &[u8], max_len: usize) -> Result<Block, codec::CodecError> {
        codec::decode(bytes, max_len)
    }
}

/// Merkle root over the hashes of `txs`, in block order.
pub fn tx_root(txs: &[HashedTx]) -> Hash {
    let leaves: Vec<Hash> = txs.iter().map(|t| t.hash).collect();
    merkle_root(&leaves)
}

/// Merkle root over the hashes of the block's `Evidence` transactions (zero when none).
pub fn evidence_hash(txs: &[HashedTx]) -> Hash {
    let leaves: Vec<Hash> = txs
        .iter()
        .filter(|t| matches!(t.tx.kind, TxKind::Evidence { .. }))
        .map(|t| t.hash)
        .collect();
    merkle_root(&leaves)
}

/// Hash of an optional certificate (zero when absent).
pub fn last_commit_hash(cert: Option<&CommitCertificate>) -> Hash {
    cert.map_or(Hash::ZERO, CommitCertificate::hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;
    use crate::validator_set::Candidate;

    fn keys(n: u8) -> Vec<SecretKey> {
        (1..=n).map(|i| SecretKey::from_seed([i; 32])).collect()
    }

    fn set_of(keys: &[SecretKey], stake: u64) -> ValidatorSet {
        let cands = keys
            .iter()
            .map(|k| Candidate {
                address: Address::of(&k.public()),
                pubkey: k.public(),
                stake,
            })
            .collect();
        ValidatorSet::select(cands, 1, 100)
    }

    fn cert(keys: &[SecretKey], hash: Hash) -> CommitCertificate {
        let mut c = CommitCertificate {
            height: 7,
            view: 0,
            block_hash: hash,
            signatures: vec![],
        };
        for k in keys {
            let sv = c.vote_for(k.public()).sign("c", k);
            c.signatures.push(CommitSig {
                validator: k.public(),
                sig: sv.sig,
            });
        }
        c
    }

    #[test]
    fn certificate_needs_quorum_of_known_distinct_valid_signers() {
        let ks = keys(4);
        let set = set_of(&ks, 10);
        let h = Hash::of(b"block");
        assert_eq!(cert(&ks[..3], h).verify("c", 7, &h, &set), Ok(()));
        assert!(matches!(
            cert(&ks[..2], h).verify("c", 7, &h, &set),
            Err(CertificateError::NoQuorum {
                power: 20,
                total: 40
            })
        ));
        let mut dup = cert(&ks[..2], h);
        dup.signatures.push(dup.signatures[0].clone());
        assert!(matches!(
            dup.verify("c", 7, &h, &set),
            Err(CertificateError::DuplicateSigner(_))
        ));
        let outsider = SecretKey::from_seed([99; 32]);
        let mut with_outsider = cert(&ks[..2], h);
        with_outsider
            .signatures
            .extend(cert(std::slice::from_ref(&outsider), h).signatures);
        assert!(matches!(
            with_outsider.verify("c", 7, &h, &set),
            Err(CertificateError::UnknownSigner(_))
        ));
        let mut forged = cert(&ks[..3], h);
        forged.signatures[1].sig = forged.signatures[0].sig;
        assert!(matches!(
            forged.verify("c", 7, &h, &set),
            Err(CertificateError::BadSignature(_))
        ));
        assert!(matches!(
            cert(&ks, h).verify("c", 8, &h, &set),
            Err(CertificateError::WrongHeight { .. })
        ));
        assert!(matches!(
            cert(&ks, h).verify("c", 7, &Hash::of(b"x"), &set),
            Err(CertificateError::WrongBlock { .. })
        ));
        assert!(cert(&ks, h).verify("other-chain", 7, &h, &set).is_err());
    }
}
