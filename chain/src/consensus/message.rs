//! What validators send each other (SPEC §5): proposals, Prepare/Commit votes and view changes.
//!
//! Each signed part is small and fixed-shape (a block hash, never the block), so a signature is
//! cheap to check before the heavy payload is looked at. Payloads that ride along unsigned (the
//! block, a view change's prepared certificate, a new view's justification) are bound to the
//! signed part by hash or carry their own signatures, so a relay can drop them but not forge them.

use crate::block::{verify_quorum, Block, CertificateError, CommitSig};
use crate::codec::{self, CodecError};
use crate::crypto::{self, Domain, PublicKey, SecretKey, SigError, Signature, VerifyingKey};
use crate::hash::Hash;
use crate::validator_set::ValidatorSet;
use crate::vote::{Phase, SignedVote, Vote};
use serde::{Deserialize, Serialize};

/// The signed part of a proposal (pre-prepare): the proposer vouches for `block_hash` as the
/// block of (`height`, `view`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub height: u64,
    pub view: u64,
    pub block_hash: Hash,
    pub proposer: PublicKey,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedProposal {
    pub proposal: Proposal,
    pub sig: Signature,
}

impl Proposal {
    pub fn sign(self, chain_id: &str, key: &SecretKey) -> SignedProposal {
        let sig = key.sign(Domain::Proposal, chain_id, &self);
        SignedProposal {
            proposal: self,
            sig,
        }
    }
}

impl SignedProposal {
    pub fn verify(&self, chain_id: &str, key: &VerifyingKey) -> Result<(), SigError> {
        let digest = crypto::signing_digest(Domain::Proposal, chain_id, &self.proposal);
        crypto::verify(key, &digest, &self.sig)
    }
}

/// A quorum of Prepare votes for one block in one view: the evidence a validator carries into
/// a view change that the block may have been committed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedCertificate {
    pub height: u64,
    pub view: u64,
    pub block_hash: Hash,
    pub signatures: Vec<CommitSig>,
}

impl PreparedCertificate {
    pub fn vote_for(&self, validator: PublicKey) -> Vote {
        Vote {
            height: self.height,
            view: self.view,
            phase: Phase::Prepare,
            block_hash: self.block_hash,
            validator,
        }
    }

    pub fn verify(&self, chain_id: &str, set: &ValidatorSet) -> Result<(), CertificateError> {
        verify_quorum(chain_id, |v| self.vote_for(v), &self.signatures, set)
    }

    pub fn reference(&self) -> PreparedRef {
        PreparedRef {
            view: self.view,
            block_hash: self.block_hash,
        }
    }
}

/// Names a prepared certificate inside a signed view change, so the signature commits the
/// validator to what it prepared without re-signing the certificate's signatures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PreparedRef {
    pub view: u64,
    pub block_hash: Hash,
}

/// "I give up on every view below `view` at `height`; the highest block I prepared is
/// `prepared`."
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewChange {
    pub height: u64,
    pub view: u64,
    pub prepared: Option<PreparedRef>,
    pub validator: PublicKey,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedViewChange {
    pub view_change: ViewChange,
    pub sig: Signature,
}

impl ViewChange {
    pub fn sign(self, chain_id: &str, key: &SecretKey) -> SignedViewChange {
        let sig = key.sign(Domain::ViewChange, chain_id, &self);
        SignedViewChange {
            view_change: self,
            sig,
        }
    }

    pub fn digest(&self, chain_id: &str) -> Hash {
        crypto::signing_digest(Domain::ViewChange, chain_id, self)
    }
}

/// The justification a proposal for a view above 0 carries: view changes for that view from a
/// quorum, and the certificate behind the highest prepared block they name (if any), which the
/// proposal must then re-propose.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewView {
    pub view_changes: Vec<SignedViewChange>,
    pub prepared: Option<PreparedCertificate>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalMsg {
    pub signed: SignedProposal,
    pub block: Block,
    pub new_view: Option<NewView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewChangeMsg {
    pub signed: SignedViewChange,
    /// The certificate `signed.view_change.prepared` names (required when it names one).
    pub prepared: Option<PreparedCertificate>,
    /// That certificate's block, so the next proposer can re-propose it.
    pub block: Option<Block>,
}

/// One consensus message on the wire (gossip topic `/ait/<chain_id>/consensus/1`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    Proposal(Box<ProposalMsg>),
    Vote(SignedVote),
    ViewChange(Box<ViewChangeMsg>),
}

impl Message {
    pub fn height(&self) -> u64 {
        match self {
            Message::Proposal(p) => p.signed.proposal.height,
            Message::Vote(v) => v.vote.height,
            Message::ViewChange(vc) => vc.signed.view_change.height,
        }
    }

    pub fn view(&self) -> u64 {
        match self {
            Message::Proposal(p) => p.signed.proposal.view,
            Message::Vote(v) => v.vote.view,
            Message::ViewChange(vc) => vc.signed.view_change.view,
        }
    }

    /// The validator whose signature the message carries.
    pub fn signer(&self) -> &PublicKey {
        match self {
            Message::Proposal(p) => &p.signed.proposal.proposer,
            Message::Vote(v) => &v.vote.validator,
            Message::ViewChange(vc) => &vc.signed.view_change.validator,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    pub fn decode(bytes: &[u8], max_len: usize) -> Result<Message, CodecError> {
        codec::decode(bytes, max_len)
    }

    /// The largest encoding an honest validator can produce: a full block plus a justification
    /// and a certificate from every validator. Gossip and decoding limits derive from it.
    pub fn max_encoded_len(max_block_bytes: u64, max_validators: u64) -> usize {
        // A signed view change is ~170 bytes, a certificate signature 96; the block's own
        // last_commit holds one more certificate. 4 KiB covers headers and tags.
        let per_validator = 170 + 2 * 96;
        let total = max_block_bytes
            .saturating_add(max_validators.saturating_mul(per_validator))
            .saturating_add(4096);
        usize::try_from(total).unwrap_or(usize::MAX)
    }
}

/// Why a message was refused. Each names a fault of whoever produced or relayed it, so the
/// network layer penalises the peer that sent it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Reject {
    #[error("signer {0} is not in the validator set")]
    NotValidator(PublicKey),
    #[error("bad signature: {0}")]
    BadSignature(SigError),
    #[error("{signer} is not the proposer of view {view}")]
    WrongProposer { signer: PublicKey, view: u64 },
    #[error("block hash {got} does not match the signed hash {signed}")]
    BlockMismatch { signed: Hash, got: Hash },
    #[error("block is for height {got}, the message for {expected}")]
    BlockHeight { expected: u64, got: u64 },
    #[error("a fresh block for view {view} must name view {view} and its proposer")]
    FreshBlockHeader { view: u64 },
    #[error("a proposal for view {0} needs a new-view justification")]
    MissingNewView(u64),
    #[error("a proposal for view 0 carries a justification")]
    UnexpectedNewView,
    #[error("new view: {0}")]
    NewView(#[from] NewViewError),
    #[error("prepared certificate: {0}")]
    Certificate(#[from] CertificateError),
    #[error("view change names prepared {named:?} but carries {carried:?}")]
    PreparedMismatch {
        named: Option<PreparedRef>,
        carried: Option<PreparedRef>,
    },
    #[error("prepared view {prepared} is not below the view change's view {view}")]
    PreparedTooNew { prepared: u64, view: u64 },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NewViewError {
    #[error("view change for height {height} view {view} in a justification for another slot")]
    WrongSlot { height: u64, view: u64 },
    #[error("view change signer {0} is not in the validator set")]
    NotValidator(PublicKey),
    #[error("validator {0} appears twice")]
    Duplicate(PublicKey),
    #[error("view changes hold {power} of {total} power, not more than two thirds")]
    NoQuorum { power: u64, total: u64 },
    #[error("a view change signature does not verify: {0}")]
    BadSignature(SigError),
    #[error("view changes name different blocks as prepared in view {0}")]
    ConflictingPrepared(u64),
    #[error("the highest prepared block {0:?} is not backed by the carried certificate")]
    MissingCertificate(PreparedRef),
    #[error("a certificate is carried although no view change names a prepared block")]
    UnneededCertificate,
    #[error("the proposal must re-propose the prepared block {required}, not {got}")]
    MustRepropose { required: Hash, got: Hash },
}

impl NewView {
    /// Checks this is a valid justification for (`height`, `view`) and returns the block it
    /// forces the proposal to carry: the highest prepared block named, or `None` when the
    /// proposer is free to propose a fresh block. `keys[i]` is `set`'s i-th validator's key;
    /// `verified` says whether a certificate for that reference was already verified here (its
    /// signatures are then not checked again).
    pub fn check(
        &self,
        chain_id: &str,
        height: u64,
        view: u64,
        set: &ValidatorSet,
        keys: &[Option<VerifyingKey>],
        verified: impl Fn(&PreparedRef) -> bool,
    ) -> Result<Option<Hash>, Reject> {
        let mut seen = vec![false; set.len()];
        let mut power = 0u64;
        let mut digests = Vec::with_capacity(self.view_changes.len());
        let mut signers = Vec::with_capacity(self.view_changes.len());
        let mut highest: Option<PreparedRef> = None;
        for svc in &self.view_changes {
            let vc = &svc.view_change;
            if vc.height != height || vc.view != view {
                return Err(NewViewError::WrongSlot {
                    height: vc.height,
                    view: vc.view,
                }
                .into());
            }
            let idx = set
                .index_of(&vc.validator)
                .filter(|&i| keys.get(i).is_some_and(Option::is_some))
                .ok_or(NewViewError::NotValidator(vc.validator))?;
            if std::mem::replace(&mut seen[idx], true) {
                return Err(NewViewError::Duplicate(vc.validator).into());
            }
            power += set.validators()[idx].power;
            digests.push(vc.digest(chain_id));
            signers.push(idx);
            if let Some(p) = vc.prepared {
                if p.view >= view {
                    return Err(Reject::PreparedTooNew {
                        prepared: p.view,
                        view,
                    });
                }
                match highest {
                    Some(h) if h.view == p.view && h.block_hash != p.block_hash => {
                        return Err(NewViewError::ConflictingPrepared(p.view).into())
                    }
                    Some(h) if h.view >= p.view => {}
                    _ => highest = Some(p),
                }
            }
        }
        if !set.is_quorum(power) {
            return Err(NewViewError::NoQuorum {
                power,
                total: set.total_power(),
            }
            .into());
        }
        let items: Vec<crypto::BatchItem<'_>> = self
            .view_changes
            .iter()
            .zip(signers.iter().zip(&digests))
            .filter_map(|(svc, (&idx, digest))| {
                Some(crypto::BatchItem {
                    key: keys.get(idx)?.as_ref()?,
                    digest,
                    sig: &svc.sig,
                })
            })
            .collect();
        crypto::verify_batch(&items).map_err(NewViewError::BadSignature)?;
        match (highest, &self.prepared) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err(NewViewError::UnneededCertificate.into()),
            (Some(h), Some(cert)) if cert.height == height && cert.reference() == h => {
                if !verified(&h) {
                    cert.verify(chain_id, set)?;
                }
                Ok(Some(h.block_hash))
            }
            (Some(h), _) => Err(NewViewError::MissingCertificate(h).into()),
        }
    }
}

/// Verifies a vote's signature with an already decompressed key.
pub fn verify_vote(chain_id: &str, vote: &SignedVote, key: &VerifyingKey) -> Result<(), SigError> {
    crypto::verify(key, &vote.vote.digest(chain_id), &vote.sig)
}

/// Verifies a view change's signature with an already decompressed key.
pub fn verify_view_change(
    chain_id: &str,
    vc: &SignedViewChange,
    key: &VerifyingKey,
) -> Result<(), SigError> {
    crypto::verify(key, &vc.view_change.digest(chain_id), &vc.sig)
}
