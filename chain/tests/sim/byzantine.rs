//! Byzantine behaviours, built by transforming what an honest [`Engine`] for the Byzantine key
//! wants to send, and by signing forged messages with that key.
//!
//! [`Engine`]: aitbc_chain::consensus::Engine

use super::rng::SplitMix64;
use aitbc_chain::block::Block;
use aitbc_chain::consensus::{NewView, Proposal, ProposalMsg, ViewChange, ViewChangeMsg};
use aitbc_chain::crypto::{PublicKey, SecretKey};
use aitbc_chain::hash::Hash;
use aitbc_chain::validator_set::ValidatorSet;
use aitbc_chain::vote::{SignedVote, Vote};

/// Which of two conflicting messages a peer gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    A,
    B,
    /// Both, so the peer can see the equivocation (and report evidence for votes).
    Both,
}

/// A random split of `nodes` peers: 3/8 get A, 3/8 get B, 1/4 get both.
pub fn split(rng: &mut SplitMix64, nodes: usize) -> Vec<Side> {
    (0..nodes)
        .map(|_| match rng.below(8) {
            0..=2 => Side::A,
            3..=5 => Side::B,
            _ => Side::Both,
        })
        .collect()
}

/// An equivocating proposer's two blocks of one (height, view), and who got which.
#[derive(Clone, Debug)]
pub struct Equivocation {
    pub orig: Hash,
    pub alt: Hash,
    pub sides: Vec<Side>,
}

/// A second block for the same slot: same header but a different (still valid) state root.
pub fn alternative_block(block: &Block) -> Block {
    let mut alt = block.clone();
    alt.header.state_root = Hash::of_parts(&[b"equivocation", block.hash().as_bytes()]);
    alt
}

/// The engine's proposal with its block (and justification) replaced, re-signed.
pub fn forge_proposal(
    chain_id: &str,
    key: &SecretKey,
    orig: &ProposalMsg,
    block: Block,
    new_view: Option<NewView>,
) -> ProposalMsg {
    let p = &orig.signed.proposal;
    let signed = Proposal {
        height: p.height,
        view: p.view,
        block_hash: block.hash(),
        proposer: p.proposer,
    }
    .sign(chain_id, key);
    ProposalMsg {
        signed,
        block,
        new_view,
    }
}

/// The cheat a Byzantine new-view proposer can try: justify its view with only the view changes
/// that name no prepared block (its own re-signed as "prepared nothing"), which leaves it free to
/// propose a fresh block. Legal whenever those still form a quorum; the safety argument says they
/// never do once a block was decided (every quorum holds an honest committer naming it). `None`
/// if there is nothing to strip or the rest is no quorum.
pub fn strip_new_view(
    chain_id: &str,
    key: &SecretKey,
    nv: &NewView,
    set: &ValidatorSet,
) -> Option<NewView> {
    nv.prepared.as_ref()?;
    let me: PublicKey = key.public();
    let mut view_changes = Vec::new();
    let mut power = 0;
    for svc in &nv.view_changes {
        let vc = &svc.view_change;
        if vc.validator == me {
            view_changes.push(
                ViewChange {
                    prepared: None,
                    ..vc.clone()
                }
                .sign(chain_id, key),
            );
        } else if vc.prepared.is_none() {
            view_changes.push(svc.clone());
        } else {
            continue;
        }
        power += set.get(&vc.validator)?.power;
    }
    set.is_quorum(power).then_some(NewView {
        view_changes,
        prepared: None,
    })
}

/// A view change that hides the validator's prepared block, re-signed.
pub fn hide_prepared(chain_id: &str, key: &SecretKey, m: &ViewChangeMsg) -> ViewChangeMsg {
    ViewChangeMsg {
        signed: ViewChange {
            prepared: None,
            ..m.signed.view_change.clone()
        }
        .sign(chain_id, key),
        prepared: None,
        block: None,
    }
}

/// The same vote signed for another block.
pub fn forge_vote(chain_id: &str, key: &SecretKey, vote: &SignedVote, hash: Hash) -> SignedVote {
    Vote {
        block_hash: hash,
        ..vote.vote.clone()
    }
    .sign(chain_id, key)
}

/// The hash a double voter also votes for.
pub fn double_vote_hash(hash: &Hash) -> Hash {
    Hash::of_parts(&[b"double-vote", hash.as_bytes()])
}
