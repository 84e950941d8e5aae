//! Focused engine tests: small synchronous networks driven by hand. The seeded randomized runs
//! with faults and Byzantine validators live in `chain/tests/simulation.rs`.

use super::*;
use crate::block::{evidence_hash, last_commit_hash, tx_root, Header};
use crate::validator_set::Candidate;
use std::collections::VecDeque;

const CHAIN: &str = "ait-test";

fn keys(n: usize) -> Vec<SecretKey> {
    (0..n)
        .map(|i| SecretKey::from_seed([i as u8 + 1; 32]))
        .collect()
}

fn dup(k: &SecretKey) -> SecretKey {
    SecretKey::from_seed(k.seed())
}

fn set_of(keys: &[SecretKey]) -> ValidatorSet {
    let cands = keys
        .iter()
        .map(|k| Candidate {
            address: Address::of(&k.public()),
            pubkey: k.public(),
            stake: 10,
        })
        .collect();
    ValidatorSet::select(cands, 1, 100)
}

fn cfg(block_time_ms: u64) -> Config {
    Config {
        chain_id: CHAIN.into(),
        block_time_ms,
        view_timeout_ms: 1000,
    }
}

fn block(height: u64, view: u64, proposer: &PublicKey, marker: &[u8]) -> Block {
    let txs = Vec::new();
    Block {
        header: Header {
            chain_id: CHAIN.into(),
            height,
            view,
            timestamp_ms: 0,
            parent_hash: Hash::ZERO,
            proposer: Address::of(proposer),
            tx_root: tx_root(&txs),
            state_root: Hash::of(marker),
            validators_hash: Hash::ZERO,
            next_validators_hash: Hash::ZERO,
            last_commit_hash: last_commit_hash(None),
            evidence_hash: evidence_hash(&txs),
        },
        txs,
        last_commit: None,
    }
}

fn proposal(key: &SecretKey, view: u64, block: Block, new_view: Option<NewView>) -> Message {
    Message::Proposal(Box::new(ProposalMsg {
        signed: Proposal {
            height: block.header.height,
            view,
            block_hash: block.hash(),
            proposer: key.public(),
        }
        .sign(CHAIN, key),
        block,
        new_view,
    }))
}

/// n engines on a lossless synchronous network; `down` nodes neither send nor receive.
struct Net {
    engines: Vec<Engine>,
    keys: Vec<SecretKey>,
    inbox: VecDeque<(usize, Input)>,
    decided: Vec<Vec<(Block, CommitCertificate)>>,
    wal: Vec<Vec<Record>>,
    timers: Vec<Vec<Timeout>>,
    evidence: Vec<(SignedVote, SignedVote)>,
    sent: Vec<Vec<Message>>,
    down: Vec<bool>,
}

impl Net {
    fn new(n: usize, block_time_ms: u64) -> Net {
        let keys = keys(n);
        let set = set_of(&keys);
        let mut net = Net {
            engines: Vec::new(),
            keys: keys.iter().map(dup).collect(),
            inbox: VecDeque::new(),
            decided: vec![Vec::new(); n],
            wal: vec![Vec::new(); n],
            timers: vec![Vec::new(); n],
            evidence: Vec::new(),
            sent: vec![Vec::new(); n],
            down: vec![false; n],
        };
        for (i, k) in keys.iter().enumerate() {
            let mut out = Vec::new();
            let e = Engine::new(
                cfg(block_time_ms),
                Some(dup(k)),
                1,
                set.clone(),
                vec![],
                &mut out,
            );
            net.engines.push(e);
            net.apply(i, out);
        }
        net
    }

    fn apply(&mut self, i: usize, out: Vec<Output>) {
        for o in out {
            match o {
                Output::Persist(r) => self.wal[i].push(r),
                Output::Broadcast(m) => {
                    self.sent[i].push(m.clone());
                    for j in 0..self.engines.len() {
                        if j != i && !self.down[j] && !self.down[i] {
                            self.inbox.push_back((j, Input::Message(m.clone())));
                        }
                    }
                }
                Output::Schedule { timeout, .. } => self.timers[i].push(timeout),
                Output::BuildBlock { height, view } => {
                    let pk = self.keys[i].public();
                    let b = block(height, view, &pk, &[i as u8, view as u8]);
                    self.inbox.push_back((
                        i,
                        Input::BlockBuilt {
                            height,
                            view,
                            block: Box::new(b),
                        },
                    ));
                }
                Output::ValidateBlock(b) => self.inbox.push_back((
                    i,
                    Input::BlockValidated {
                        height: b.header.height,
                        block_hash: b.hash(),
                        valid: b.header.state_root != Hash::of(b"invalid"),
                    },
                )),
                Output::Decide { block, certificate } => {
                    self.decided[i].push((block, certificate));
                }
                Output::Evidence(a, b) => self.evidence.push((a, b)),
                Output::SyncNeeded { .. } => {}
            }
        }
    }

    fn run(&mut self) {
        while let Some((i, input)) = self.inbox.pop_front() {
            if self.down[i] {
                continue;
            }
            let mut out = Vec::new();
            self.engines[i].handle(input, &mut out);
            self.apply(i, out);
        }
    }

    /// Fires every pending timer of live nodes (one round), then delivers.
    fn fire_timers(&mut self) {
        for i in 0..self.engines.len() {
            if self.down[i] {
                continue;
            }
            for t in std::mem::take(&mut self.timers[i]) {
                self.inbox.push_back((i, Input::Timeout(t)));
            }
        }
        self.run();
    }

    /// Delivers everything except Commit votes: every node gets prepared, none decides.
    fn run_without_commits(&mut self) {
        while let Some((i, input)) = self.inbox.pop_front() {
            if matches!(&input, Input::Message(Message::Vote(v)) if v.vote.phase == Phase::Commit) {
                continue;
            }
            let mut out = Vec::new();
            self.engines[i].handle(input, &mut out);
            self.apply(i, out);
        }
    }

    fn deliver(&mut self, i: usize, m: Message) -> (Verdict, Vec<Output>) {
        let mut out = Vec::new();
        let v = self.engines[i].handle(Input::Message(m), &mut out);
        (v, out)
    }
}

#[test]
fn four_validators_decide_one_block_in_view_zero() {
    let mut net = Net::new(4, 0);
    net.run();
    let set = set_of(&net.keys);
    let first = &net.decided[0][0];
    for d in &net.decided {
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].0.hash(), first.0.hash());
        assert_eq!(d[0].1.view, 0);
        assert_eq!(d[0].1.verify(CHAIN, 1, &first.0.hash(), &set), Ok(()));
    }
    let proposer = net.engines[0].proposer(1, 0).copied();
    assert_eq!(
        Some(Address::of(&proposer.unwrap())),
        Some(first.0.header.proposer)
    );
}

#[test]
fn single_validator_decides_alone_and_moves_on() {
    let mut net = Net::new(1, 0);
    net.run();
    assert_eq!(net.decided[0].len(), 1);
    let set = net.engines[0].validator_set().clone();
    let mut out = Vec::new();
    net.engines[0].handle(
        Input::Committed {
            height: 1,
            next_set: set,
        },
        &mut out,
    );
    net.apply(0, out);
    net.run();
    assert_eq!(net.decided[0].len(), 2);
    assert_eq!(net.engines[0].height(), 2);
}

#[test]
fn block_time_delays_the_proposal() {
    let mut net = Net::new(4, 500);
    net.run();
    assert!(net.decided.iter().all(Vec::is_empty));
    assert!(net.timers[0]
        .iter()
        .any(|t| t.kind == TimeoutKind::NewHeight));
    net.fire_timers();
    assert!(net.decided.iter().all(|d| d.len() == 1));
}

#[test]
fn silent_proposer_is_replaced_by_view_change() {
    let mut net = Net::new(4, 0);
    // Take the view-0 proposer down before anything is delivered.
    let p0 = net.engines[0]
        .set
        .index_of(net.engines[0].proposer(1, 0).unwrap())
        .unwrap();
    net.down[p0] = true;
    net.inbox.clear();
    net.run();
    assert!(net.decided.iter().all(Vec::is_empty));
    net.fire_timers();
    for (i, d) in net.decided.iter().enumerate() {
        if i != p0 {
            assert_eq!(d.len(), 1, "node {i} decides in view 1");
            assert_eq!(d[0].1.view, 1);
        }
    }
}

#[test]
fn prepared_block_survives_the_view_change() {
    let mut net = Net::new(4, 0);
    // Deliver everything except Commit votes: every node gets prepared on the view-0 block but
    // nobody decides.
    net.run_without_commits();
    let prepared = net.engines[0].prepared().expect("prepared in view 0");
    assert!(net.decided.iter().all(Vec::is_empty));
    net.fire_timers();
    for d in &net.decided {
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].0.hash(), prepared.block_hash, "view 1 re-proposes it");
        assert_eq!(d[0].1.view, 1);
    }
}

/// A new-view proposal that ignores the prepared block it is told about is refused.
#[test]
fn new_view_must_repropose_the_highest_prepared_block() {
    let mut net = Net::new(4, 0);
    net.run_without_commits();
    // Collect the view changes for view 1 without delivering them.
    for i in 0..4 {
        for t in std::mem::take(&mut net.timers[i]) {
            let mut out = Vec::new();
            net.engines[i].handle(Input::Timeout(t), &mut out);
            net.apply(i, out);
        }
    }
    let vcs: Vec<ViewChangeMsg> = net
        .sent
        .iter()
        .flatten()
        .filter_map(|m| match m {
            Message::ViewChange(vc) => Some((**vc).clone()),
            _ => None,
        })
        .collect();
    assert_eq!(vcs.len(), 4);
    let p1 = net.engines[0]
        .set
        .index_of(net.engines[0].proposer(1, 1).unwrap())
        .unwrap();
    let key = &dup(&net.keys[p1]);
    let fresh = block(1, 1, &key.public(), b"fresh");
    let new_view = NewView {
        view_changes: vcs.iter().map(|m| m.signed.clone()).collect(),
        prepared: vcs[0].prepared.clone(),
    };
    let forged = proposal(key, 1, fresh, Some(new_view.clone()));
    let other = (p1 + 1) % 4;
    let (v, _) = net.deliver(other, forged);
    assert!(
        matches!(
            v,
            Verdict::Reject(Reject::NewView(NewViewError::MustRepropose { .. }))
        ),
        "{v:?}"
    );
    // Hiding the certificate does not help either.
    let fresh = block(1, 1, &key.public(), b"fresh2");
    let hidden = proposal(
        key,
        1,
        fresh,
        Some(NewView {
            prepared: None,
            ..new_view
        }),
    );
    let (v, _) = net.deliver(other, hidden);
    assert!(
        matches!(
            v,
            Verdict::Reject(Reject::NewView(NewViewError::MissingCertificate(_)))
        ),
        "{v:?}"
    );
}

#[test]
fn bad_messages_are_rejected_and_stale_ones_ignored() {
    let mut net = Net::new(4, 0);
    let outsider = SecretKey::from_seed([99; 32]);
    let vote = |k: &SecretKey, height| {
        Vote {
            height,
            view: 0,
            phase: Phase::Prepare,
            block_hash: Hash::of(b"x"),
            validator: k.public(),
        }
        .sign(CHAIN, k)
    };
    let (v, _) = net.deliver(0, Message::Vote(vote(&outsider, 1)));
    assert_eq!(v, Verdict::Reject(Reject::NotValidator(outsider.public())));
    let mut forged = vote(&net.keys[1], 1);
    forged.sig = vote(&net.keys[2], 1).sig;
    let (v, _) = net.deliver(0, Message::Vote(forged));
    assert!(matches!(v, Verdict::Reject(Reject::BadSignature(_))));
    let other_chain = Vote {
        height: 1,
        view: 0,
        phase: Phase::Prepare,
        block_hash: Hash::of(b"x"),
        validator: net.keys[1].public(),
    }
    .sign("other-chain", &net.keys[1]);
    let (v, _) = net.deliver(0, Message::Vote(other_chain));
    assert!(matches!(v, Verdict::Reject(Reject::BadSignature(_))));
    // A proposal from someone who is not the proposer of its view.
    let p0 = net.engines[0].proposer(1, 0).copied().unwrap();
    let wrong = net.keys.iter().find(|k| k.public() != p0).unwrap();
    let b = block(1, 0, &wrong.public(), b"w");
    let msg = proposal(wrong, 0, b, None);
    let (v, _) = net.deliver(0, msg);
    assert!(matches!(v, Verdict::Reject(Reject::WrongProposer { .. })));
    // A proposal whose block is not the one signed.
    let pk = net.keys.iter().find(|k| k.public() == p0).unwrap();
    let b = block(1, 0, &p0, b"a");
    let msg = ProposalMsg {
        signed: Proposal {
            height: 1,
            view: 0,
            block_hash: Hash::of(b"not it"),
            proposer: p0,
        }
        .sign(CHAIN, pk),
        block: b,
        new_view: None,
    };
    let (v, _) = net.deliver(0, Message::Proposal(Box::new(msg)));
    assert!(matches!(v, Verdict::Reject(Reject::BlockMismatch { .. })));
    net.run();
    // After height 1 is decided and committed, its messages are stale.
    let set = net.engines[0].validator_set().clone();
    let mut out = Vec::new();
    net.engines[0].handle(
        Input::Committed {
            height: 1,
            next_set: set,
        },
        &mut out,
    );
    let (v, _) = net.deliver(0, Message::Vote(vote(&net.keys[1], 1)));
    assert_eq!(v, Verdict::Ignore);
}

#[test]
fn a_double_vote_yields_evidence_once() {
    let mut net = Net::new(4, 0);
    let k = dup(&net.keys[1]);
    let vote = |hash: &[u8]| {
        Vote {
            height: 1,
            view: 0,
            phase: Phase::Commit,
            block_hash: Hash::of(hash),
            validator: k.public(),
        }
        .sign(CHAIN, &k)
    };
    assert_eq!(net.deliver(0, Message::Vote(vote(b"a"))).0, Verdict::Accept);
    assert_eq!(net.deliver(0, Message::Vote(vote(b"a"))).0, Verdict::Ignore);
    let (v, out) = net.deliver(0, Message::Vote(vote(b"b")));
    assert_eq!(v, Verdict::Accept);
    let ev: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Evidence(a, b) => Some((a.clone(), b.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(ev.len(), 1);
    assert!(ev[0].0.vote.conflicts_with(&ev[0].1.vote));
    let (_, out) = net.deliver(0, Message::Vote(vote(b"c")));
    assert!(!out.iter().any(|o| matches!(o, Output::Evidence(..))));
}

/// A validator that restarts from its WAL keeps its view and its votes: offered a conflicting
/// proposal for a view it already voted in, it signs nothing.
#[test]
fn restart_from_wal_never_signs_twice() {
    let mut net = Net::new(4, 0);
    // Everyone prepares and commits the view-0 block, but no Commit is delivered.
    net.run_without_commits();
    let i = 2;
    let signed_before: Vec<Message> = net.sent[i].clone();
    assert!(signed_before
        .iter()
        .any(|m| matches!(m, Message::Vote(v) if v.vote.phase == Phase::Commit)));
    let set = net.engines[i].validator_set().clone();
    let mut out = Vec::new();
    let mut e = Engine::new(
        cfg(0),
        Some(dup(&net.keys[i])),
        1,
        set,
        net.wal[i].clone(),
        &mut out,
    );
    assert_eq!(e.view(), 0);
    assert!(e.prepared().is_some(), "prepared certificate restored");
    // Re-sends only what it had signed; signs nothing new.
    for o in &out {
        match o {
            Output::Broadcast(m) => assert!(signed_before.contains(m)),
            Output::Persist(Record::Signed(m)) => panic!("signed anew after restart: {m:?}"),
            _ => {}
        }
    }
    // A proposal for another block in view 0 (the proposer equivocating) gets no Prepare.
    let p0 = e.proposer(1, 0).copied().unwrap();
    let pk = net.keys.iter().find(|k| k.public() == p0).unwrap();
    let b = block(1, 0, &p0, b"other");
    let msg = proposal(pk, 0, b.clone(), None);
    let mut out = Vec::new();
    e.handle(Input::Message(msg), &mut out);
    e.handle(
        Input::BlockValidated {
            height: 1,
            block_hash: b.hash(),
            valid: true,
        },
        &mut out,
    );
    assert!(!out.iter().any(|o| matches!(o, Output::Broadcast(_))));
    // Its view change carries the restored prepared certificate.
    e.handle(
        Input::Timeout(Timeout {
            height: 1,
            view: 0,
            kind: TimeoutKind::View,
        }),
        &mut out,
    );
    let vc = out.iter().find_map(|o| match o {
        Output::Broadcast(Message::ViewChange(vc)) => Some(vc.clone()),
        _ => None,
    });
    let vc = vc.expect("view change sent");
    assert!(vc.signed.view_change.prepared.is_some());
    assert!(vc.prepared.is_some() && vc.block.is_some());
}

/// After signing a view change, a restarted validator does not vote in the view it left.
#[test]
fn restart_after_view_change_stays_in_the_new_view() {
    let mut net = Net::new(4, 0);
    let p0 = net.engines[0]
        .set
        .index_of(net.engines[0].proposer(1, 0).unwrap())
        .unwrap();
    let i = (p0 + 1) % 4;
    // Node i times out before the proposal reaches it.
    let held: Vec<(usize, Input)> = net.inbox.drain(..).collect();
    let t = net.timers[i].pop().unwrap();
    let mut out = Vec::new();
    net.engines[i].handle(Input::Timeout(t), &mut out);
    net.apply(i, out);
    let set = net.engines[i].validator_set().clone();
    let mut out = Vec::new();
    let mut e = Engine::new(
        cfg(0),
        Some(dup(&net.keys[i])),
        1,
        set,
        net.wal[i].clone(),
        &mut out,
    );
    assert_eq!(e.view(), 1);
    for (j, input) in held {
        if j == i {
            let mut out = Vec::new();
            e.handle(input, &mut out);
            for o in out {
                if let Output::ValidateBlock(b) = o {
                    let mut out2 = Vec::new();
                    e.handle(
                        Input::BlockValidated {
                            height: 1,
                            block_hash: b.hash(),
                            valid: true,
                        },
                        &mut out2,
                    );
                    assert!(
                        !out2
                            .iter()
                            .any(|o| matches!(o, Output::Broadcast(Message::Vote(_)))),
                        "voted in view 0 after leaving it"
                    );
                }
            }
        }
    }
}

#[test]
fn invalid_proposal_triggers_an_immediate_view_change() {
    let keys = keys(4);
    let set = set_of(&keys);
    let mut out = Vec::new();
    let p0 = {
        let e = Engine::new(cfg(0), None, 1, set.clone(), vec![], &mut out);
        e.proposer(1, 0).copied().unwrap()
    };
    let me = keys.iter().find(|k| k.public() != p0).unwrap();
    let pk = keys.iter().find(|k| k.public() == p0).unwrap();
    let mut out = Vec::new();
    let mut e = Engine::new(cfg(0), Some(dup(me)), 1, set, vec![], &mut out);
    let b = block(1, 0, &p0, b"invalid");
    let mut bad = b.clone();
    bad.header.state_root = Hash::of(b"invalid");
    let msg = proposal(pk, 0, bad.clone(), None);
    let mut out = Vec::new();
    assert_eq!(e.handle(Input::Message(msg), &mut out), Verdict::Accept);
    assert!(out.iter().any(|o| matches!(o, Output::ValidateBlock(_))));
    let mut out = Vec::new();
    e.handle(
        Input::BlockValidated {
            height: 1,
            block_hash: bad.hash(),
            valid: false,
        },
        &mut out,
    );
    assert_eq!(e.view(), 1);
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Broadcast(Message::ViewChange(_)))));
    assert!(!out
        .iter()
        .any(|o| matches!(o, Output::Broadcast(Message::Vote(_)))));
}

#[test]
fn views_converge_when_a_third_moves_ahead() {
    let mut net = Net::new(4, 0);
    net.inbox.clear();
    // Two validators (half the power) time out; the others follow without waiting.
    for i in [0, 1] {
        let t = net.timers[i].pop().unwrap();
        let mut out = Vec::new();
        net.engines[i].handle(Input::Timeout(t), &mut out);
        net.apply(i, out);
    }
    net.run();
    assert!(net.engines.iter().all(|e| e.view() >= 1));
    assert!(net.decided.iter().all(|d| d.len() == 1));
}

#[test]
fn next_height_messages_wait_for_the_commit() {
    let mut net = Net::new(4, 0);
    net.run();
    let set = net.engines[0].validator_set().clone();
    // Nodes 1..4 commit height 1 and run height 2; node 0 has decided but not committed yet.
    for i in 1..4 {
        let mut out = Vec::new();
        net.engines[i].handle(
            Input::Committed {
                height: 1,
                next_set: set.clone(),
            },
            &mut out,
        );
        net.apply(i, out);
    }
    net.run();
    assert_eq!(net.engines[0].height(), 1);
    let mut out = Vec::new();
    net.engines[0].handle(
        Input::Committed {
            height: 1,
            next_set: set,
        },
        &mut out,
    );
    net.apply(0, out);
    net.run();
    assert_eq!(
        net.decided[0].len(),
        2,
        "buffered height-2 messages decide at once"
    );
    assert_eq!(net.decided[0][1].0.hash(), net.decided[1][1].0.hash());
}
