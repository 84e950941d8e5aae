//! The PBFT state machine. See the module docs of [`crate::consensus`] for the protocol and its
//! safety argument; this file is their direct transcription.

use super::message::{verify_view_change, verify_vote, NewViewError};
use super::proposer::ProposerSchedule;
use super::{
    Config, Input, Message, NewView, Output, PreparedCertificate, PreparedRef, Proposal,
    ProposalMsg, Record, Reject, Timeout, TimeoutKind, Verdict, ViewChange, ViewChangeMsg,
    VIEW_WINDOW,
};
use crate::address::Address;
use crate::block::{Block, CommitCertificate, CommitSig};
use crate::crypto::{PublicKey, SecretKey, VerifyingKey};
use crate::hash::Hash;
use crate::validator_set::ValidatorSet;
use crate::vote::{Phase, SignedVote, Vote};
use std::collections::{BTreeMap, BTreeSet};

/// Messages for the next height kept per validator until this node gets there (an honest one
/// sends at most a proposal, two votes and a view change or two per view).
const FUTURE_PER_VALIDATOR: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Validity {
    Pending,
    Valid,
    Invalid,
}

/// Votes of one (view, phase): at most one counted per validator.
#[derive(Default)]
struct Tally {
    votes: BTreeMap<usize, SignedVote>,
    power: BTreeMap<Hash, u64>,
}

impl Tally {
    fn signatures_for(&self, hash: &Hash) -> Vec<CommitSig> {
        self.votes
            .values()
            .filter(|sv| &sv.vote.block_hash == hash)
            .map(|sv| CommitSig {
                validator: sv.vote.validator,
                sig: sv.sig,
            })
            .collect()
    }
}

/// Everything about the current height; dropped as a whole when the height is committed.
#[derive(Default)]
struct Round {
    view: u64,
    /// The `block_time` wait is over (or was skipped): view timers run.
    started: bool,
    /// The current view's timer runs (the view is established).
    timer_running: bool,
    /// A `Resend` timer is pending for the current view.
    resend_pending: bool,
    decided: bool,
    sync_requested: bool,
    /// The accepted proposal of each view (the first valid one: an equivocating proposer's
    /// second block is ignored).
    proposals: BTreeMap<u64, Hash>,
    blocks: BTreeMap<Hash, Block>,
    validity: BTreeMap<Hash, Validity>,
    votes: BTreeMap<(u64, Phase), Tally>,
    /// View changes by target view and validator index.
    view_changes: BTreeMap<u64, BTreeMap<usize, super::SignedViewChange>>,
    /// Verified prepared certificates, one per (view, block).
    certs: BTreeMap<PreparedRef, PreparedCertificate>,
    /// The highest certificate this validator is prepared on.
    prepared: Option<PreparedRef>,
    /// The sign-once guard: what this validator signed at this height.
    signed_votes: BTreeMap<(u64, Phase), SignedVote>,
    signed_view_change: Option<u64>,
    proposed: BTreeSet<u64>,
    /// A block requested from the node for this view, with the justification it must carry.
    building: Option<(u64, Option<NewView>)>,
    evidence: BTreeSet<(usize, u64, Phase)>,
    /// Own messages of the current view, re-sent after a restart.
    own: Vec<Message>,
}

pub struct Engine {
    cfg: Config,
    key: Option<SecretKey>,
    pubkey: Option<PublicKey>,
    height: u64,
    set: ValidatorSet,
    keys: Vec<Option<VerifyingKey>>,
    schedule: ProposerSchedule,
    me: Option<usize>,
    r: Round,
    future: BTreeMap<usize, Vec<Message>>,
    /// Highest height above ours that a verified message was seen for.
    seen_above: u64,
}

impl Engine {
    /// An engine for `height` (the first height not yet committed), voted on by `set`. `key` is
    /// this node's validator key (`None` for a follower that tracks consensus without voting).
    /// `wal` holds the records persisted before a restart (empty on a fresh start): what the
    /// validator signed is restored first, so it can never sign a conflicting message, then
    /// what it received is replayed. Initial outputs (timers, re-sends, block requests) go to
    /// `out`.
    pub fn new(
        cfg: Config,
        key: Option<SecretKey>,
        height: u64,
        set: ValidatorSet,
        wal: Vec<Record>,
        out: &mut Vec<Output>,
    ) -> Engine {
        let pubkey = key.as_ref().map(SecretKey::public);
        let mut e = Engine {
            cfg,
            key,
            pubkey,
            height: 0,
            set: ValidatorSet::default(),
            keys: Vec::new(),
            schedule: ProposerSchedule::new(&ValidatorSet::default()),
            me: None,
            r: Round::default(),
            future: BTreeMap::new(),
            seen_above: 0,
        };
        e.reset_height(height, set);
        let records: Vec<Record> = wal.into_iter().filter(|r| r.height() == height).collect();
        if records.is_empty() {
            e.begin(out);
            return e;
        }
        for record in &records {
            e.restore(record);
        }
        e.r.started = true;
        // Own messages of the final view are sent again: the crash may have come before the
        // send. Re-sending is safe; they are already durable.
        let view = e.r.view;
        e.r.own = records
            .iter()
            .filter_map(|r| match r {
                Record::Signed(m) if m.view() == view => Some(m.clone()),
                _ => None,
            })
            .collect();
        out.extend(e.r.own.iter().cloned().map(Output::Broadcast));
        for record in records {
            if let Record::Received(m) = record {
                e.on_message(m, out, false);
            }
        }
        e.arm_timer(out);
        if let Some(&hash) = e.r.proposals.get(&view) {
            e.request_validation(hash, out);
        }
        e.try_commit(out);
        e.try_decide_any(out);
        if e.r.view == 0 {
            e.maybe_build(0, None, out);
        } else {
            e.try_propose_new_view(out);
        }
        e
    }

    pub fn handle(&mut self, input: Input, out: &mut Vec<Output>) -> Verdict {
        match input {
            Input::Message(m) => return self.on_message(m, out, true),
            Input::Timeout(t) => self.on_timeout(t, out),
            Input::BlockBuilt {
                height,
                view,
                block,
            } => self.on_block_built(height, view, *block, out),
            Input::BlockValidated {
                height,
                block_hash,
                valid,
            } => self.on_block_validated(height, block_hash, valid, out),
            Input::Committed { height, next_set } => {
                if height >= self.height {
                    self.reset_height(height + 1, next_set);
                    self.begin(out);
                }
            }
        }
        Verdict::Accept
    }

    pub fn height(&self) -> u64 {
        self.height
    }

    pub fn view(&self) -> u64 {
        self.r.view
    }

    pub fn is_decided(&self) -> bool {
        self.r.decided
    }

    pub fn validator_set(&self) -> &ValidatorSet {
        &self.set
    }

    /// The highest block this validator is prepared on at the current height.
    pub fn prepared(&self) -> Option<PreparedRef> {
        self.r.prepared
    }

    /// Distinct (view, phase, validator) votes seen at the current height.
    pub fn votes_seen(&self) -> usize {
        self.r.votes.values().map(|t| t.votes.len()).sum()
    }

    /// The proposer of (`height`, `view`) under the current set.
    pub fn proposer(&self, height: u64, view: u64) -> Option<&PublicKey> {
        let idx = self.schedule.proposer(height, view)?;
        Some(&self.set.validators()[idx].pubkey)
    }

    // ---- heights and views ----

    fn reset_height(&mut self, height: u64, set: ValidatorSet) {
        self.height = height;
        self.r = Round::default();
        // The set changes only at epoch boundaries: keep the decompressed keys and the
        // proposer cycle of an unchanged one.
        if set == self.set && !self.keys.is_empty() {
            return;
        }
        self.keys = set
            .validators()
            .iter()
            .map(|v| VerifyingKey::new(&v.pubkey).ok())
            .collect();
        self.schedule = ProposerSchedule::new(&set);
        self.me = self.pubkey.and_then(|pk| set.index_of(&pk));
        self.set = set;
    }

    /// Enters the current height: waits `block_time`, then starts view 0, and replays messages
    /// that arrived early.
    fn begin(&mut self, out: &mut Vec<Output>) {
        if self.cfg.block_time_ms == 0 {
            self.start(out);
        } else {
            out.push(Output::Schedule {
                timeout: Timeout {
                    height: self.height,
                    view: 0,
                    kind: TimeoutKind::NewHeight,
                },
                after_ms: self.cfg.block_time_ms,
            });
        }
        let early = std::mem::take(&mut self.future);
        for m in early.into_values().flatten() {
            if m.height() >= self.height {
                self.on_message(m, out, true);
            }
        }
    }

    fn start(&mut self, out: &mut Vec<Output>) {
        if self.r.started {
            return;
        }
        self.r.started = true;
        self.arm_timer(out);
        if self.r.view == 0 {
            self.maybe_build(0, None, out);
        }
    }

    /// Starts the current view's timer once the view is established (view 0, an accepted
    /// proposal, or ViewChanges for it or later views from a quorum); until then schedules a re-send of our
    /// ViewChange, so a lost one cannot leave the others short of a quorum.
    fn arm_timer(&mut self, out: &mut Vec<Output>) {
        let view = self.r.view;
        if self.r.timer_running || !self.r.started {
            return;
        }
        // Validators that asked for this view or a later one have all left the views below:
        // once they are a quorum, this node is not ahead of the others by running its timer.
        let left: BTreeSet<usize> = self
            .r
            .view_changes
            .range(view..)
            .flat_map(|(_, e)| e.keys().copied())
            .collect();
        let vc_power: u64 = left.iter().map(|&i| self.set.validators()[i].power).sum();
        let established =
            view == 0 || self.r.proposals.contains_key(&view) || self.set.is_quorum(vc_power);
        let (kind, after_ms) = if established {
            self.r.timer_running = true;
            (TimeoutKind::View, self.cfg.view_timeout(view))
        } else if !self.r.resend_pending {
            self.r.resend_pending = true;
            (TimeoutKind::Resend, self.cfg.view_timeout_ms)
        } else {
            return;
        };
        out.push(Output::Schedule {
            timeout: Timeout {
                height: self.height,
                view,
                kind,
            },
            after_ms,
        });
    }

    /// Moves to `view` (a timeout, a justified proposal, or the > 1/3 rule).
    fn enter_view(&mut self, view: u64) {
        self.r.view = view;
        self.r.started = true;
        self.r.own.clear();
        // Blocks of abandoned views go, unless a prepared certificate may force a re-proposal:
        // a height that stalls for many views must not hold a block per view.
        let r = &mut self.r;
        let keep: BTreeSet<Hash> = r
            .certs
            .keys()
            .map(|p| p.block_hash)
            .chain(r.proposals.range(view..).map(|(_, h)| *h))
            .collect();
        r.blocks.retain(|h, _| keep.contains(h));
        r.timer_running = false;
        r.resend_pending = false;
    }

    fn on_timeout(&mut self, t: Timeout, out: &mut Vec<Output>) {
        if t.height != self.height || self.r.decided {
            return;
        }
        match t.kind {
            TimeoutKind::NewHeight => self.start(out),
            TimeoutKind::View if t.view == self.r.view => {
                self.sync_if_behind(out);
                self.start_view_change(self.r.view + 1, out);
            }
            TimeoutKind::Resend if t.view == self.r.view => {
                self.r.resend_pending = false;
                self.sync_if_behind(out);
                if !self.r.timer_running {
                    out.extend(
                        self.r
                            .own
                            .iter()
                            .filter(|m| matches!(m, Message::ViewChange(_)))
                            .cloned()
                            .map(Output::Broadcast),
                    );
                    self.arm_timer(out);
                }
            }
            TimeoutKind::View | TimeoutKind::Resend => {}
        }
    }

    /// Stuck at this height while validators of our set already work on a later one: the
    /// blocks in between were committed without us, so fetch them.
    fn sync_if_behind(&self, out: &mut Vec<Output>) {
        if self.seen_above > self.height {
            out.push(Output::SyncNeeded {
                height: self.seen_above,
            });
        }
    }

    /// Gives up every view below `view`: signs ViewChange(view) with the highest prepared
    /// certificate, then waits for the new view's proposal.
    fn start_view_change(&mut self, view: u64, out: &mut Vec<Output>) {
        if view <= self.r.view {
            return;
        }
        self.enter_view(view);
        if let (Some(key), Some(me), Some(pk)) = (&self.key, self.me, self.pubkey) {
            if self.r.signed_view_change < Some(view) {
                let prepared = self.r.prepared;
                let signed = ViewChange {
                    height: self.height,
                    view,
                    prepared,
                    validator: pk,
                }
                .sign(&self.cfg.chain_id, key);
                self.r.signed_view_change = Some(view);
                let msg = Message::ViewChange(Box::new(ViewChangeMsg {
                    signed: signed.clone(),
                    prepared: prepared.and_then(|p| self.r.certs.get(&p).cloned()),
                    block: prepared.and_then(|p| self.r.blocks.get(&p.block_hash).cloned()),
                }));
                self.send(msg, out);
                self.r
                    .view_changes
                    .entry(view)
                    .or_default()
                    .insert(me, signed);
            }
        }
        self.arm_timer(out);
        self.try_propose_new_view(out);
    }

    /// Persists then broadcasts a message this validator signed.
    fn send(&mut self, msg: Message, out: &mut Vec<Output>) {
        out.push(Output::Persist(Record::Signed(msg.clone())));
        out.push(Output::Broadcast(msg.clone()));
        self.r.own.push(msg);
    }

    // ---- proposing ----

    fn is_proposer(&self, view: u64) -> bool {
        self.me.is_some() && self.schedule.proposer(self.height, view) == self.me
    }

    fn maybe_build(&mut self, view: u64, new_view: Option<NewView>, out: &mut Vec<Output>) {
        if !self.is_proposer(view)
            || self.r.proposed.contains(&view)
            || self.r.building.as_ref().is_some_and(|(v, _)| *v == view)
        {
            return;
        }
        self.r.building = Some((view, new_view));
        out.push(Output::BuildBlock {
            height: self.height,
            view,
        });
    }

    /// As the proposer of the current view above 0: once view changes from a quorum are in,
    /// re-propose the highest prepared block they name, or ask for a fresh one.
    fn try_propose_new_view(&mut self, out: &mut Vec<Output>) {
        let view = self.r.view;
        if view == 0 || self.r.decided || !self.is_proposer(view) || self.r.proposed.contains(&view)
        {
            return;
        }
        if self.r.building.as_ref().is_some_and(|(v, _)| *v == view) {
            return;
        }
        let Some(entries) = self.r.view_changes.get(&view) else {
            return;
        };
        // Only view changes whose prepared block this node can re-propose: any quorum is a
        // valid justification, so leaving out one whose block is missing costs no safety.
        let mut chosen = Vec::new();
        let mut power = 0;
        for (&idx, svc) in entries {
            let usable = svc.view_change.prepared.is_none_or(|p| {
                self.r.certs.contains_key(&p) && self.r.blocks.contains_key(&p.block_hash)
            });
            if usable {
                power += self.set.validators()[idx].power;
                chosen.push(svc.clone());
            }
        }
        if !self.set.is_quorum(power) {
            return;
        }
        let highest = chosen
            .iter()
            .filter_map(|svc| svc.view_change.prepared)
            .max_by_key(|p| p.view);
        let new_view = NewView {
            view_changes: chosen,
            prepared: highest.and_then(|p| self.r.certs.get(&p).cloned()),
        };
        match highest.and_then(|p| self.r.blocks.get(&p.block_hash).cloned()) {
            Some(block) => self.propose(view, block, Some(new_view), out),
            None => self.maybe_build(view, Some(new_view), out),
        }
    }

    fn on_block_built(&mut self, height: u64, view: u64, block: Block, out: &mut Vec<Output>) {
        if height != self.height || self.r.decided || block.header.height != height {
            return;
        }
        match self.r.building.take() {
            Some((v, new_view)) if v == view && view == self.r.view => {
                // The node built it by executing it: it is valid here.
                self.r.validity.insert(block.hash(), Validity::Valid);
                self.propose(view, block, new_view, out);
            }
            other => self.r.building = other,
        }
    }

    fn propose(
        &mut self,
        view: u64,
        block: Block,
        new_view: Option<NewView>,
        out: &mut Vec<Output>,
    ) {
        let (Some(key), Some(pk)) = (&self.key, self.pubkey) else {
            return;
        };
        if !self.r.proposed.insert(view) {
            return;
        }
        let hash = block.hash();
        let signed = Proposal {
            height: self.height,
            view,
            block_hash: hash,
            proposer: pk,
        }
        .sign(&self.cfg.chain_id, key);
        let msg = ProposalMsg {
            signed,
            block: block.clone(),
            new_view,
        };
        self.send(Message::Proposal(Box::new(msg)), out);
        self.r.proposals.insert(view, hash);
        self.r.blocks.entry(hash).or_insert(block);
        self.request_validation(hash, out);
        self.try_prepare(out);
    }

    // ---- incoming messages ----

    fn on_message(&mut self, m: Message, out: &mut Vec<Output>, log: bool) -> Verdict {
        let height = m.height();
        if height < self.height {
            return Verdict::Ignore;
        }
        if height > self.height {
            return self.on_future(m, out);
        }
        match m {
            Message::Proposal(p) => self.on_proposal(*p, out, log),
            Message::Vote(v) => self.on_vote(v, out, log),
            Message::ViewChange(vc) => self.on_view_change(*vc, out, log),
        }
    }

    /// A message for a later height: proof (if a validator of our set signed it) that the
    /// chain moved on without us. Kept if it is for the next height.
    fn on_future(&mut self, m: Message, out: &mut Vec<Output>) -> Verdict {
        let Some(idx) = self.set.index_of(m.signer()) else {
            return Verdict::Ignore;
        };
        let Some(key) = &self.keys[idx] else {
            return Verdict::Ignore;
        };
        let chain_id = &self.cfg.chain_id;
        let ok = match &m {
            Message::Proposal(p) => p.signed.verify(chain_id, key).is_ok(),
            Message::Vote(v) => verify_vote(chain_id, v, key).is_ok(),
            Message::ViewChange(vc) => verify_view_change(chain_id, &vc.signed, key).is_ok(),
        };
        if !ok {
            // The set may have changed at an epoch boundary: not provably bad.
            return Verdict::Ignore;
        }
        let height = m.height();
        if height > self.seen_above {
            self.seen_above = height;
            if height > self.height + 1 {
                out.push(Output::SyncNeeded { height });
            }
        }
        if height == self.height + 1 {
            let queue = self.future.entry(idx).or_default();
            if queue.len() < FUTURE_PER_VALIDATOR && !queue.contains(&m) {
                queue.push(m);
            }
        }
        Verdict::Accept
    }

    fn on_proposal(&mut self, p: ProposalMsg, out: &mut Vec<Output>, log: bool) -> Verdict {
        let sp = &p.signed.proposal;
        let view = sp.view;
        if view > self.r.view + VIEW_WINDOW || self.r.proposals.contains_key(&view) {
            return Verdict::Ignore;
        }
        let Some(pidx) = self.schedule.proposer(self.height, view) else {
            return Verdict::Ignore;
        };
        if self.set.validators()[pidx].pubkey != sp.proposer {
            return Verdict::Reject(Reject::WrongProposer {
                signer: sp.proposer,
                view,
            });
        }
        let Some(key) = &self.keys[pidx] else {
            return Verdict::Reject(Reject::NotValidator(sp.proposer));
        };
        if let Err(e) = p.signed.verify(&self.cfg.chain_id, key) {
            return Verdict::Reject(Reject::BadSignature(e));
        }
        let hash = p.block.hash();
        if hash != sp.block_hash {
            return Verdict::Reject(Reject::BlockMismatch {
                signed: sp.block_hash,
                got: hash,
            });
        }
        if p.block.header.height != self.height {
            return Verdict::Reject(Reject::BlockHeight {
                expected: self.height,
                got: p.block.header.height,
            });
        }
        if view < self.r.view {
            // Too late to vote on, but a Commit quorum of its view may still decide it.
            self.r.blocks.entry(hash).or_insert(p.block);
            self.try_decide_any(out);
            return Verdict::Ignore;
        }
        let required = match (view, &p.new_view) {
            (0, None) => None,
            (0, Some(_)) => return Verdict::Reject(Reject::UnexpectedNewView),
            (_, None) => return Verdict::Reject(Reject::MissingNewView(view)),
            (_, Some(nv)) => {
                match nv.check(
                    &self.cfg.chain_id,
                    self.height,
                    view,
                    &self.set,
                    &self.keys,
                    |r| self.r.certs.contains_key(r),
                ) {
                    Ok(r) => r,
                    Err(e) => return Verdict::Reject(e),
                }
            }
        };
        match required {
            Some(req) if req != hash => {
                return Verdict::Reject(Reject::NewView(NewViewError::MustRepropose {
                    required: req,
                    got: hash,
                }))
            }
            Some(_) => {}
            None => {
                let header = &p.block.header;
                if header.view != view || header.proposer != Address::of(&sp.proposer) {
                    return Verdict::Reject(Reject::FreshBlockHeader { view });
                }
            }
        }
        if let Some(cert) = p.new_view.as_ref().and_then(|nv| nv.prepared.clone()) {
            self.r.certs.entry(cert.reference()).or_insert(cert);
        }
        if log {
            out.push(Output::Persist(Record::Received(Message::Proposal(
                Box::new(p.clone()),
            ))));
        }
        self.r.proposals.insert(view, hash);
        self.r.blocks.entry(hash).or_insert(p.block);
        if view > self.r.view {
            // A justified proposal proves a quorum left the views below: follow it.
            self.enter_view(view);
        }
        self.arm_timer(out);
        self.request_validation(hash, out);
        self.try_prepare(out);
        self.try_decide_any(out);
        Verdict::Accept
    }

    fn on_vote(&mut self, sv: SignedVote, out: &mut Vec<Output>, log: bool) -> Verdict {
        let vote = &sv.vote;
        if vote.view > self.r.view + VIEW_WINDOW {
            return Verdict::Ignore;
        }
        let Some(idx) = self.set.index_of(&vote.validator) else {
            return Verdict::Reject(Reject::NotValidator(vote.validator));
        };
        let known = self
            .r
            .votes
            .get(&(vote.view, vote.phase))
            .and_then(|t| t.votes.get(&idx));
        if known.is_some_and(|k| k.vote.block_hash == vote.block_hash) {
            return Verdict::Ignore;
        }
        let Some(key) = &self.keys[idx] else {
            return Verdict::Reject(Reject::NotValidator(vote.validator));
        };
        if let Err(e) = verify_vote(&self.cfg.chain_id, &sv, key) {
            return Verdict::Reject(Reject::BadSignature(e));
        }
        if log && known.is_none() {
            out.push(Output::Persist(Record::Received(Message::Vote(sv.clone()))));
        }
        self.add_vote(idx, sv, out);
        Verdict::Accept
    }

    /// Counts a verified vote, then acts on any quorum it completes.
    fn add_vote(&mut self, idx: usize, sv: SignedVote, out: &mut Vec<Output>) {
        let (view, phase, hash) = (sv.vote.view, sv.vote.phase, sv.vote.block_hash);
        if self.count_vote(idx, sv, out) {
            match phase {
                Phase::Prepare => self.try_commit(out),
                Phase::Commit => self.try_decide(view, hash, out),
            }
        }
    }

    /// One vote per validator per view and phase; a second, different one is evidence. True if
    /// the vote was counted.
    fn count_vote(&mut self, idx: usize, sv: SignedVote, out: &mut Vec<Output>) -> bool {
        let (view, phase, hash) = (sv.vote.view, sv.vote.phase, sv.vote.block_hash);
        let tally = self.r.votes.entry((view, phase)).or_default();
        if let Some(prev) = tally.votes.get(&idx) {
            if prev.vote.block_hash != hash && self.r.evidence.insert((idx, view, phase)) {
                out.push(Output::Evidence(prev.clone(), sv));
            }
            return false;
        }
        *tally.power.entry(hash).or_default() += self.set.validators()[idx].power;
        tally.votes.insert(idx, sv);
        true
    }

    fn on_view_change(&mut self, m: ViewChangeMsg, out: &mut Vec<Output>, log: bool) -> Verdict {
        let vc = &m.signed.view_change;
        let view = vc.view;
        if view == 0 || view < self.r.view || view > self.r.view + VIEW_WINDOW {
            return Verdict::Ignore;
        }
        let Some(idx) = self.set.index_of(&vc.validator) else {
            return Verdict::Reject(Reject::NotValidator(vc.validator));
        };
        if self
            .r
            .view_changes
            .get(&view)
            .is_some_and(|e| e.contains_key(&idx))
        {
            return Verdict::Ignore;
        }
        let Some(key) = &self.keys[idx] else {
            return Verdict::Reject(Reject::NotValidator(vc.validator));
        };
        if let Err(e) = verify_view_change(&self.cfg.chain_id, &m.signed, key) {
            return Verdict::Reject(Reject::BadSignature(e));
        }
        let carried = m.prepared.as_ref().map(PreparedCertificate::reference);
        if vc.prepared != carried {
            return Verdict::Reject(Reject::PreparedMismatch {
                named: vc.prepared,
                carried,
            });
        }
        if let Some(cert) = &m.prepared {
            if cert.view >= view {
                return Verdict::Reject(Reject::PreparedTooNew {
                    prepared: cert.view,
                    view,
                });
            }
            if cert.height != self.height {
                return Verdict::Reject(Reject::BlockHeight {
                    expected: self.height,
                    got: cert.height,
                });
            }
            if let Some(block) = &m.block {
                let got = block.hash();
                if got != cert.block_hash {
                    return Verdict::Reject(Reject::BlockMismatch {
                        signed: cert.block_hash,
                        got,
                    });
                }
            }
            // One verified certificate per (view, block) is all a justification needs.
            if !self.r.certs.contains_key(&cert.reference()) {
                if let Err(e) = cert.verify(&self.cfg.chain_id, &self.set) {
                    return Verdict::Reject(Reject::Certificate(e));
                }
            }
        }
        if log {
            out.push(Output::Persist(Record::Received(Message::ViewChange(
                Box::new(m.clone()),
            ))));
        }
        let ViewChangeMsg {
            signed,
            prepared,
            block,
        } = m;
        if let Some(cert) = prepared {
            self.r.certs.entry(cert.reference()).or_insert(cert);
        }
        if let Some(block) = block {
            self.r.blocks.entry(block.hash()).or_insert(block);
        }
        self.r
            .view_changes
            .entry(view)
            .or_default()
            .insert(idx, signed);
        self.join_higher_view(out);
        self.arm_timer(out);
        self.try_propose_new_view(out);
        Verdict::Accept
    }

    /// If validators with more than 1/3 of the power want views above ours, at least one of
    /// them is honest: join the lowest such view rather than wait out our timer.
    fn join_higher_view(&mut self, out: &mut Vec<Output>) {
        if self.r.decided {
            return;
        }
        let mut highest: BTreeMap<usize, u64> = BTreeMap::new();
        for (&view, entries) in self.r.view_changes.range(self.r.view + 1..) {
            for &idx in entries.keys() {
                highest.insert(idx, view);
            }
        }
        let power: u64 = highest
            .keys()
            .map(|&i| self.set.validators()[i].power)
            .sum();
        if u128::from(power) * 3 > u128::from(self.set.total_power()) {
            if let Some(&target) = highest.values().min() {
                self.start_view_change(target, out);
            }
        }
    }

    // ---- voting ----

    fn request_validation(&mut self, hash: Hash, out: &mut Vec<Output>) {
        if self.r.validity.contains_key(&hash) {
            return;
        }
        if let Some(block) = self.r.blocks.get(&hash) {
            self.r.validity.insert(hash, Validity::Pending);
            out.push(Output::ValidateBlock(block.clone()));
        }
    }

    fn on_block_validated(&mut self, height: u64, hash: Hash, valid: bool, out: &mut Vec<Output>) {
        if height != self.height || self.r.validity.get(&hash) != Some(&Validity::Pending) {
            return;
        }
        let verdict = if valid {
            Validity::Valid
        } else {
            Validity::Invalid
        };
        self.r.validity.insert(hash, verdict);
        if valid {
            self.try_prepare(out);
            self.try_commit(out);
        } else if self.r.proposals.get(&self.r.view) == Some(&hash) && !self.r.decided {
            // Waiting out the timer would change nothing: the proposer of this view is faulty.
            self.start_view_change(self.r.view + 1, out);
        }
    }

    /// The current view's proposal, if accepted and found valid here.
    fn valid_proposal(&self) -> Option<Hash> {
        let hash = *self.r.proposals.get(&self.r.view)?;
        (self.r.validity.get(&hash) == Some(&Validity::Valid)).then_some(hash)
    }

    fn try_prepare(&mut self, out: &mut Vec<Output>) {
        if self.r.decided {
            return;
        }
        if let Some(hash) = self.valid_proposal() {
            self.sign_vote(Phase::Prepare, hash, out);
        }
    }

    /// On a Prepare quorum for the current view's valid proposal: record the prepared
    /// certificate (before the Commit it justifies), then sign Commit.
    fn try_commit(&mut self, out: &mut Vec<Output>) {
        let view = self.r.view;
        if self.r.decided
            || self.me.is_none()
            || self.r.signed_votes.contains_key(&(view, Phase::Commit))
        {
            return;
        }
        let Some(hash) = self.valid_proposal() else {
            return;
        };
        let Some(tally) = self.r.votes.get(&(view, Phase::Prepare)) else {
            return;
        };
        if !self
            .set
            .is_quorum(tally.power.get(&hash).copied().unwrap_or(0))
        {
            return;
        }
        let cert = PreparedCertificate {
            height: self.height,
            view,
            block_hash: hash,
            signatures: tally.signatures_for(&hash),
        };
        let Some(block) = self.r.blocks.get(&hash) else {
            return;
        };
        out.push(Output::Persist(Record::Prepared {
            certificate: cert.clone(),
            block: Box::new(block.clone()),
        }));
        let reference = cert.reference();
        self.r.certs.insert(reference, cert);
        if self.r.prepared.is_none_or(|p| p.view < view) {
            self.r.prepared = Some(reference);
        }
        self.sign_vote(Phase::Commit, hash, out);
    }

    /// Signs a vote for the current view unless one of this phase was already signed in it:
    /// the sign-once guard that the WAL makes durable.
    fn sign_vote(&mut self, phase: Phase, hash: Hash, out: &mut Vec<Output>) {
        let view = self.r.view;
        let (Some(key), Some(me), Some(pk)) = (&self.key, self.me, self.pubkey) else {
            return;
        };
        if self.r.signed_votes.contains_key(&(view, phase)) {
            return;
        }
        let sv = Vote {
            height: self.height,
            view,
            phase,
            block_hash: hash,
            validator: pk,
        }
        .sign(&self.cfg.chain_id, key);
        self.r.signed_votes.insert((view, phase), sv.clone());
        self.send(Message::Vote(sv.clone()), out);
        self.add_vote(me, sv, out);
    }

    fn try_decide(&mut self, view: u64, hash: Hash, out: &mut Vec<Output>) {
        if self.r.decided {
            return;
        }
        let Some(tally) = self.r.votes.get(&(view, Phase::Commit)) else {
            return;
        };
        if !self
            .set
            .is_quorum(tally.power.get(&hash).copied().unwrap_or(0))
        {
            return;
        }
        if !self.r.blocks.contains_key(&hash) {
            // Decided, but the block never reached us: fetch it with its certificate.
            if !self.r.sync_requested {
                self.r.sync_requested = true;
                out.push(Output::SyncNeeded {
                    height: self.height + 1,
                });
            }
            return;
        }
        let certificate = CommitCertificate {
            height: self.height,
            view,
            block_hash: hash,
            signatures: tally.signatures_for(&hash),
        };
        // Nothing at this height needs the block once it is decided: hand it over, no copy.
        let Some(block) = self.r.blocks.remove(&hash) else {
            return;
        };
        self.r.decided = true;
        out.push(Output::Decide { block, certificate });
    }

    /// After a block body arrives: any Commit quorum waiting for it can now decide.
    fn try_decide_any(&mut self, out: &mut Vec<Output>) {
        let ready: Vec<(u64, Hash)> = self
            .r
            .votes
            .iter()
            .filter(|((_, phase), _)| *phase == Phase::Commit)
            .flat_map(|(&(view, _), t)| {
                t.power
                    .iter()
                    .filter(|(_, &p)| self.set.is_quorum(p))
                    .map(move |(&h, _)| (view, h))
            })
            .collect();
        for (view, hash) in ready {
            self.try_decide(view, hash, out);
        }
    }

    // ---- recovery ----

    /// Restores one record of what this validator did before a restart.
    fn restore(&mut self, record: &Record) {
        match record {
            Record::Signed(Message::Vote(sv)) => {
                let (view, phase) = (sv.vote.view, sv.vote.phase);
                self.r.view = self.r.view.max(view);
                self.r.signed_votes.insert((view, phase), sv.clone());
                if let Some(me) = self.me {
                    // Own votes never conflict with each other, so nothing is emitted.
                    self.count_vote(me, sv.clone(), &mut Vec::new());
                }
            }
            Record::Signed(Message::ViewChange(m)) => {
                let view = m.signed.view_change.view;
                self.r.view = self.r.view.max(view);
                self.r.signed_view_change = self.r.signed_view_change.max(Some(view));
                if let Some(me) = self.me {
                    self.r
                        .view_changes
                        .entry(view)
                        .or_default()
                        .insert(me, m.signed.clone());
                }
            }
            Record::Signed(Message::Proposal(p)) => {
                let view = p.signed.proposal.view;
                let hash = p.signed.proposal.block_hash;
                self.r.view = self.r.view.max(view);
                self.r.proposed.insert(view);
                self.r.proposals.insert(view, hash);
                self.r.blocks.entry(hash).or_insert_with(|| p.block.clone());
            }
            Record::Prepared { certificate, block } => {
                let reference = certificate.reference();
                self.r
                    .blocks
                    .entry(reference.block_hash)
                    .or_insert_with(|| (**block).clone());
                self.r.certs.insert(reference, certificate.clone());
                if self.r.prepared.is_none_or(|p| p.view < reference.view) {
                    self.r.prepared = Some(reference);
                }
            }
            Record::Received(_) => {}
        }
    }
}

#[cfg(test)]
mod tests;
