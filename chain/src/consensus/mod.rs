//! PBFT consensus (SPEC §5) as a sans-IO state machine.
//!
//! [`Engine`] takes [`Input`]s (a message, a timer that fired, a block built or validated, a
//! height committed) and returns [`Output`]s (persist, broadcast, schedule a timer, build or
//! validate a block, decide, report evidence, ask for sync). It holds no socket, clock or
//! randomness, so a seeded simulation can run many engines deterministically; the node does
//! the IO.
//!
//! # Protocol
//! Per height, views 0, 1, …; the proposer of (height, view) is a weighted round-robin slot
//! ([`proposer`]). In view `v` the proposer broadcasts a signed proposal; a validator that
//! finds it valid signs Prepare(v, B); on a quorum (> 2/3 power) of Prepares for B it is
//! *prepared* on B in v, records the prepared certificate, and signs Commit(v, B); a quorum of
//! Commits for B in any view decides B, and those Commits are its commit certificate. A
//! validator whose view timer fires signs ViewChange(v + 1) carrying its highest prepared
//! certificate and from then on never votes in a view below v + 1. The proposer of v + 1 needs
//! ViewChanges for v + 1 from a quorum; its proposal carries them (the *new view*) and must
//! re-propose the block of the highest prepared certificate among them, if there is one.
//! Timers grow with the view. As in PBFT, the timer of a view above 0 starts only when the view
//! is established (a quorum asked for it or a later view, or a justified proposal); until then
//! the validator re-sends its ViewChange every base timeout. A validator that sees ViewChanges from
//! more than 1/3 of the power for higher views joins the lowest of them. So no validator runs
//! ahead on its own timer, and views converge once the network is stable.
//!
//! # Why the view change is safe
//! Claim: if B is decided at height h in view v, no other block can get a prepared certificate
//! (and so no Commit quorum) at h in any view w ≥ v. Quorums are > 2/3 of power and Byzantine
//! power is < 1/3, so any two quorums share honest power.
//! - w = v: an honest validator signs one Prepare per view, so two Prepare quorums in one view
//!   share an honest signer and name the same block.
//! - w > v, by induction on w: the Commit quorum for B in v contains honest validators holding
//!   more than 1/3 of the power, each prepared on B in v before it committed, and each signed
//!   its Commit before any ViewChange above v (it never votes below its view). A proposal in w
//!   is accepted only with ViewChanges for w from a quorum, which shares an honest member with
//!   those committers; that member's ViewChange names a prepared certificate of view ≥ v. By
//!   induction every valid prepared certificate of a view in [v, w) is for B, and certificates
//!   cannot be forged (each carries a quorum of verified Prepare signatures), so the highest
//!   named certificate is for B and the proposal must carry B. Honest validators prepare in w
//!   only such a proposal.
//!
//! Locking is therefore implicit: a prepared certificate survives every later view change
//! through the quorum intersection, and no timing assumption appears anywhere in the argument;
//! timers only serve liveness.
//!
//! # Never sign twice
//! Before a signed message leaves, the engine emits `Persist(Record::Signed(..))` ahead of its
//! `Broadcast`; the node must make the WAL durable before it sends. A prepared certificate is
//! logged before the Commit it justifies, so a restarted validator still reports it. After a
//! crash [`Engine::recover`] first restores everything the validator signed (its view, its
//! votes, its prepared certificate), then replays what it received, so it can never sign a
//! message that conflicts with one it may already have sent.

mod engine;
pub mod message;
pub mod proposer;
pub mod wal;

pub use engine::Engine;
pub use message::{
    Message, NewView, PreparedCertificate, PreparedRef, Proposal, ProposalMsg, Reject,
    SignedProposal, SignedViewChange, ViewChange, ViewChangeMsg,
};

use crate::block::{Block, CommitCertificate};
use crate::hash::Hash;
use crate::validator_set::ValidatorSet;
use crate::vote::SignedVote;
use serde::{Deserialize, Serialize};

/// Timing, from the chain's params. Only durations: the node owns the clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub chain_id: String,
    /// Wait between a commit and the next height's proposal (0 = as soon as possible).
    pub block_time_ms: u64,
    /// View 0's timeout; view `v` waits `view_timeout_ms * (1 + min(v, MAX_TIMEOUT_STEPS))`.
    pub view_timeout_ms: u64,
}

/// Views ahead of the current one the engine keeps messages for; farther ones are ignored so
/// a Byzantine validator cannot make it store unbounded state.
pub const VIEW_WINDOW: u64 = 64;
/// The view timeout grows linearly with the view up to this many steps: long enough to outlast
/// any real network delay, short enough that a chain recovering from a long partition does
/// not wait minutes per view.
pub const MAX_TIMEOUT_STEPS: u64 = 15;

impl Config {
    pub fn view_timeout(&self, view: u64) -> u64 {
        self.view_timeout_ms
            .saturating_mul(1 + view.min(MAX_TIMEOUT_STEPS))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TimeoutKind {
    /// `block_time_ms` after entering a height: the proposer builds, view 0's timer starts.
    NewHeight,
    /// A view's timer: no decision in time, move to the next view. It runs only once the view
    /// is established (view 0, a justified proposal, or ViewChanges for it or later views from a
    /// quorum), so a validator never runs ahead of the others on its own timer.
    View,
    /// While waiting for a quorum of ViewChanges: send ours again (it may have been lost).
    Resend,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Timeout {
    pub height: u64,
    pub view: u64,
    pub kind: TimeoutKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// From the network; not yet verified.
    Message(Message),
    Timeout(Timeout),
    /// The block the engine asked for with [`Output::BuildBlock`].
    BlockBuilt {
        height: u64,
        view: u64,
        block: Box<Block>,
    },
    /// The node's verdict on a block the engine asked it to validate (execution against the
    /// parent state, header fields, timestamp).
    BlockValidated {
        height: u64,
        block_hash: Hash,
        valid: bool,
    },
    /// The store now holds `height` (decided here, or fetched by sync); `next_set` votes on
    /// `height + 1`.
    Committed {
        height: u64,
        next_set: ValidatorSet,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Append to the WAL. Everything persisted must be durable before the next `Broadcast`.
    Persist(Record),
    Broadcast(Message),
    /// Deliver `Input::Timeout(timeout)` after `after_ms`.
    Schedule {
        timeout: Timeout,
        after_ms: u64,
    },
    /// Build a block for (height, view) from the mempool and answer with `BlockBuilt`.
    BuildBlock {
        height: u64,
        view: u64,
    },
    /// Validate this block against the committed parent and answer with `BlockValidated`.
    ValidateBlock(Block),
    /// The block is final: commit it (one atomic write), then answer with `Committed`.
    Decide {
        block: Block,
        certificate: CommitCertificate,
    },
    /// Two conflicting signed votes of one validator: submit an `Evidence` transaction.
    Evidence(SignedVote, SignedVote),
    /// Validators of this set are at `height` or above while this node is below it: fetch the
    /// missing blocks (with certificates) by sync.
    SyncNeeded {
        height: u64,
    },
}

/// A WAL record. Only records of the current height matter; the node drops the log once a
/// height is committed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// A message this validator signed.
    Signed(Message),
    /// A message received and accepted.
    Received(Message),
    /// The validator became prepared on `block` (logged before the Commit it signs).
    Prepared {
        certificate: PreparedCertificate,
        block: Box<Block>,
    },
}

impl Record {
    pub fn height(&self) -> u64 {
        match self {
            Record::Signed(m) | Record::Received(m) => m.height(),
            Record::Prepared { certificate, .. } => certificate.height,
        }
    }
}

/// What to do with a message in gossip: forward it, drop it quietly, or drop it and penalise
/// the peer that sent it.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// Valid but useless here: duplicate, stale, too far ahead.
    Ignore,
    Reject(Reject),
}
