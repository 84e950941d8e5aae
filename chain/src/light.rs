//! Light-peer header verification (SPEC §6): a header chain is trusted from the genesis
//! validator set onwards, one certified header at a time, through every validator-set change,
//! without executing a single tx.
//!
//! A header at height `h` is trusted when it links to the trusted header at `h - 1` and more
//! than 2/3 of the power of the set that header named (`next_validators_hash`) signed its
//! commit certificate. A set change travels with the header that announces it and is trusted
//! only if it hashes to the announced `next_validators_hash`, so every set is anchored in a
//! header that the previous set certified.
//!
//! Signatures are the cost: [`Verifier::verify`] checks every other rule header by header first
//! and then all signatures of the run in one batch, with each set's keys decompressed once per
//! set rather than once per certificate. Only when the batch fails does it fall back to
//! certificate-by-certificate checks, to find the first bad header and keep the good prefix.

#[doc(hidden)]
pub mod fixture;
pub mod store;

use crate::block::{quorum_signers, CertificateError, CommitCertificate, Header};
use crate::crypto::{self, BatchItem, SigError, VerifyingKey};
use crate::hash::Hash;
use crate::validator_set::ValidatorSet;
use serde::{Deserialize, Serialize};

/// A committed header with its certificate, as light peers fetch it (the sync protocol's
/// `Headers` answer).
///
/// Validator-set changes travel inline: `next_validators` is `Some(set)` exactly when
/// `header.next_validators_hash != header.validators_hash`, and then holds the set whose hash is
/// `next_validators_hash` (the set that signs the following header). A light peer starting from
/// the genesis set can so follow every change with no other request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertifiedHeader {
    pub header: Header,
    pub commit: CommitCertificate,
    pub next_validators: Option<ValidatorSet>,
}

/// What a light peer trusts: the last verified header and the set that signs the next one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trusted {
    pub header: Header,
    pub next_set: ValidatorSet,
}

impl Trusted {
    pub fn height(&self) -> u64 {
        self.header.height
    }
}

/// Why a header is not trusted. Each names what the peer got wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("header is for chain `{got}`, not `{expected}`")]
    WrongChain { expected: String, got: String },
    #[error("header height {got}, expected {expected}")]
    WrongHeight { expected: u64, got: u64 },
    #[error("header's parent is {got}, but the trusted header at the height below is {expected}")]
    BrokenLink { expected: Hash, got: Hash },
    #[error("timestamp {got} ms is not after the parent's {parent} ms")]
    TimestampNotAfterParent { parent: u64, got: u64 },
    #[error("header names validator set {got}, but the trusted parent named {expected}")]
    WrongValidators { expected: Hash, got: Hash },
    #[error("header announces set change to {0} but carries no set")]
    MissingSetChange(Hash),
    #[error("header carries a validator set but announces no change")]
    UnexpectedSet,
    #[error("the carried validator set hashes to {got}, the header announces {expected}")]
    SetMismatch { expected: Hash, got: Hash },
    #[error("the announced validator set is empty")]
    EmptySet,
    #[error("validator set member has an unusable key: {0}")]
    BadSetKey(SigError),
    #[error("certificate: {0}")]
    Certificate(#[from] CertificateError),
}

/// How far a run of headers got: the first `accepted` are now trusted; `rejected` says why the
/// next one was not (`None`: all were accepted).
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub accepted: usize,
    pub rejected: Option<HeaderError>,
}

/// A set with its keys decompressed, so a run of certificates under one set pays for point
/// decompression once.
#[derive(Clone)]
struct KeyedSet {
    set: ValidatorSet,
    hash: Hash,
    keys: Vec<VerifyingKey>,
}

impl KeyedSet {
    fn new(set: ValidatorSet) -> Result<KeyedSet, HeaderError> {
        if set.is_empty() {
            return Err(HeaderError::EmptySet);
        }
        let keys = set
            .validators()
            .iter()
            .map(|v| VerifyingKey::new(&v.pubkey))
            .collect::<Result<Vec<_>, _>>()
            .map_err(HeaderError::BadSetKey)?;
        Ok(KeyedSet {
            hash: set.hash(),
            set,
            keys,
        })
    }
}

/// A header that passed every check but its signatures, with what the batch needs.
struct Pending {
    set: usize,
    positions: Vec<usize>,
    digests: Vec<Hash>,
}

/// Verifies header runs on top of what it trusts and moves its trust forward.
pub struct Verifier {
    chain_id: String,
    trusted: Trusted,
    trusted_hash: Hash,
    keyed: KeyedSet,
    /// The set that signed the trusted header, when known (not for genesis, nor after a
    /// restart at a header that changed the set): what a conflicting header must be signed by.
    head_signers: Option<KeyedSet>,
}

impl Verifier {
    /// Starts from `trusted` (the genesis header and set, or what a store kept).
    pub fn new(chain_id: impl Into<String>, trusted: Trusted) -> Result<Verifier, HeaderError> {
        let keyed = KeyedSet::new(trusted.next_set.clone())?;
        let head_signers = (trusted.height() > 0 && trusted.header.validators_hash == keyed.hash)
            .then(|| keyed.clone());
        Ok(Verifier {
            chain_id: chain_id.into(),
            trusted_hash: trusted.header.hash(),
            keyed,
            head_signers,
            trusted,
        })
    }

    /// Whether `other` is a second header at the trusted height, certified by more than 2/3 of
    /// the set that signed the trusted one: proof that validators signed two blocks at one
    /// height, which a light peer keeps as evidence (SPEC §6).
    pub fn is_conflict(&self, other: &CertifiedHeader) -> bool {
        let h = &other.header;
        let Some(set) = &self.head_signers else {
            return false;
        };
        if h.height != self.trusted.height() || h.validators_hash != set.hash {
            return false;
        }
        let hash = h.hash();
        hash != self.trusted_hash
            && other
                .commit
                .verify(&self.chain_id, h.height, &hash, &set.set)
                .is_ok()
    }

    pub fn trusted(&self) -> &Trusted {
        &self.trusted
    }

    pub fn trusted_hash(&self) -> Hash {
        self.trusted_hash
    }

    /// Verifies `headers` (consecutive, starting right above the trusted height) and trusts the
    /// longest valid prefix.
    pub fn verify(&mut self, headers: &[CertifiedHeader]) -> Outcome {
        // Rules other than signatures, header by header, tracking the set each one is signed by.
        let mut sets = vec![self.keyed.clone()];
        let mut pending = Vec::with_capacity(headers.len());
        let mut parent = (&self.trusted.header, self.trusted_hash);
        let mut rejected = None;
        let mut hashes = Vec::with_capacity(headers.len());
        for ch in headers {
            let hash = ch.header.hash();
            let signer = sets.len() - 1;
            match self.check(ch, &hash, parent, &sets[signer]) {
                Ok((positions, next)) => {
                    let digests = positions
                        .iter()
                        .map(|&i| {
                            ch.commit
                                .vote_for(sets[signer].set.validators()[i].pubkey)
                                .digest(&self.chain_id)
                        })
                        .collect();
                    pending.push(Pending {
                        set: signer,
                        positions,
                        digests,
                    });
                    if let Some(next) = next {
                        sets.push(next);
                    }
                }
                Err(e) => {
                    rejected = Some(e);
                    break;
                }
            }
            hashes.push(hash);
            parent = (&ch.header, hash);
        }
        // Signatures: one batch for the run; on failure, find the first bad certificate.
        let batch_ok = verify_signatures(headers, &pending, &sets).is_ok();
        let accepted = if batch_ok {
            pending.len()
        } else {
            let first_bad = (0..pending.len()).find_map(|i| {
                verify_signatures(&headers[i..=i], &pending[i..=i], &sets)
                    .err()
                    .map(|e| (i, e))
            });
            match first_bad {
                Some((i, e)) => {
                    rejected = Some(HeaderError::Certificate(CertificateError::BadSignature(e)));
                    i
                }
                None => pending.len(),
            }
        };
        if accepted > 0 {
            let last = &headers[accepted - 1];
            // The set the successor of the last accepted header is signed by: the one that
            // header announced, if it changed the set (sets are pushed in header order).
            let next_set = pending[accepted - 1].set + usize::from(last.next_validators.is_some());
            self.head_signers = Some(sets[pending[accepted - 1].set].clone());
            self.keyed = sets.swap_remove(next_set);
            self.trusted = Trusted {
                header: last.header.clone(),
                next_set: self.keyed.set.clone(),
            };
            self.trusted_hash = hashes[accepted - 1];
        }
        Outcome { accepted, rejected }
    }

    /// Every rule but the signatures; returns the signers' positions and the set the next
    /// header is signed by, if this header changes it.
    fn check(
        &self,
        ch: &CertifiedHeader,
        hash: &Hash,
        (parent, parent_hash): (&Header, Hash),
        set: &KeyedSet,
    ) -> Result<(Vec<usize>, Option<KeyedSet>), HeaderError> {
        let h = &ch.header;
        if h.chain_id != self.chain_id {
            return Err(HeaderError::WrongChain {
                expected: self.chain_id.clone(),
                got: h.chain_id.clone(),
            });
        }
        if h.height != parent.height + 1 {
            return Err(HeaderError::WrongHeight {
                expected: parent.height + 1,
                got: h.height,
            });
        }
        if h.parent_hash != parent_hash {
            return Err(HeaderError::BrokenLink {
                expected: parent_hash,
                got: h.parent_hash,
            });
        }
        if h.timestamp_ms <= parent.timestamp_ms {
            return Err(HeaderError::TimestampNotAfterParent {
                parent: parent.timestamp_ms,
                got: h.timestamp_ms,
            });
        }
        if h.validators_hash != set.hash {
            return Err(HeaderError::WrongValidators {
                expected: set.hash,
                got: h.validators_hash,
            });
        }
        if ch.commit.height != h.height {
            return Err(CertificateError::WrongHeight {
                expected: h.height,
                got: ch.commit.height,
            }
            .into());
        }
        if ch.commit.block_hash != *hash {
            return Err(CertificateError::WrongBlock {
                expected: *hash,
                got: ch.commit.block_hash,
            }
            .into());
        }
        let positions = quorum_signers(&ch.commit.signatures, &set.set)?;
        let next = match (
            &ch.next_validators,
            h.next_validators_hash == h.validators_hash,
        ) {
            (None, true) => None,
            (Some(_), true) => return Err(HeaderError::UnexpectedSet),
            (None, false) => return Err(HeaderError::MissingSetChange(h.next_validators_hash)),
            (Some(next), false) => {
                let keyed = KeyedSet::new(next.clone())?;
                if keyed.hash != h.next_validators_hash {
                    return Err(HeaderError::SetMismatch {
                        expected: h.next_validators_hash,
                        got: keyed.hash,
                    });
                }
                Some(keyed)
            }
        };
        Ok((positions, next))
    }
}

/// All signatures of `headers` in one batch, each checked against the key of its signer in the
/// set its header is signed by.
fn verify_signatures(
    headers: &[CertifiedHeader],
    pending: &[Pending],
    sets: &[KeyedSet],
) -> Result<(), SigError> {
    let items: Vec<BatchItem<'_>> = headers
        .iter()
        .zip(pending)
        .flat_map(|(ch, p)| {
            let keys = &sets[p.set].keys;
            ch.commit
                .signatures
                .iter()
                .zip(&p.positions)
                .zip(&p.digests)
                .map(move |((cs, &i), digest)| BatchItem {
                    key: &keys[i],
                    digest,
                    sig: &cs.sig,
                })
        })
        .collect();
    crypto::verify_batch(&items)
}

#[cfg(test)]
mod tests;
