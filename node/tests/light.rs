//! End-to-end: a light peer (`aitbc-node run --light`) beside four real validators and three
//! lying peers. The liars are real libp2p peers on the chain's protocols that relay an honest
//! validator's answers with one lie each, and claim to be far ahead so they are asked first.

mod common;

use aitbc_chain::codec;
use aitbc_chain::genesis::Genesis;
use aitbc_chain::{Account, Hash};
use aitbc_p2p::{Acceptance, Event, Handle, Multiaddr, PeerId, SyncResponse};
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

const ADMIN_TOKEN: &str = "light-test-admin-token-0123456789";

#[derive(Clone, Copy, Debug)]
enum Lie {
    /// One header of each answer is altered after it was certified.
    ForgedHeader,
    /// Each answer's first certificate keeps one signature: too little power.
    WeakCertificate,
    /// Balance proofs claim a richer account than the state holds.
    WrongBalance,
}

/// Starts a lying peer that relays requests to `honest` and lies in its answers; returns its
/// multiaddr.
async fn liar(lie: Lie, genesis: &Genesis, honest: &str) -> (PeerId, String) {
    let honest_addr: Multiaddr = honest.parse().expect("multiaddr");
    let honest_id = aitbc_p2p::config::peer_id_of(&honest_addr).expect("peer id");
    let mut config = aitbc_p2p::Config::new(genesis.chain_id.clone(), genesis.hash());
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr")];
    config.bootstrap = vec![honest_addr];
    // It subscribes like any full node: a peer that sends no subscriptions is reset twice in
    // its first seconds (p2p `check_epochs`), and a reset that catches its first runs in flight
    // would leave the light peer caught up from honest peers, never asking it again.
    config.topics = aitbc_p2p::Topic::ALL.to_vec();
    // Kademlia client: no validator lists it, so only its own light peer (which bootstraps from
    // it) finds it. A light peer that also found the balance liar, which claims the highest head,
    // would fetch every header from it in one run and never ask its own liar.
    config.kad_server = false;
    config.requests_per_second = 1000;
    config.request_burst = 1000;
    let (net, mut events) = aitbc_p2p::start(aitbc_p2p::Keypair::generate_ed25519(), config)
        .await
        .expect("p2p starts");
    let id = net.local_peer_id();
    let addr = format!("{}/p2p/{id}", net.listen_addrs().await.expect("addrs")[0]);
    let relay: Handle = net.clone();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                Event::Request { id, request, .. } => {
                    let net = relay.clone();
                    tokio::spawn(async move {
                        let answer = match net.request(honest_id, request).await {
                            Ok(a) => tell(lie, a),
                            Err(_) => SyncResponse::Refused(aitbc_p2p::Refusal::Busy),
                        };
                        let _ = net.respond(id, answer).await;
                    });
                }
                Event::Gossip { id, source, .. } => {
                    let _ = relay
                        .report_validation(id, source, Acceptance::Ignore)
                        .await;
                }
                _ => {}
            }
        }
    });
    (id, addr)
}

fn tell(lie: Lie, answer: SyncResponse) -> SyncResponse {
    match (lie, answer) {
        (Lie::WrongBalance, SyncResponse::Status(mut s)) => {
            s.head_height += 2_000;
            SyncResponse::Status(s)
        }
        (_, SyncResponse::Status(mut s)) => {
            s.head_height += 1_000;
            SyncResponse::Status(s)
        }
        (Lie::ForgedHeader, SyncResponse::Headers(mut hs)) if !hs.is_empty() => {
            let last = hs.len() - 1;
            hs[last].header.state_root = Hash::of(b"forged");
            SyncResponse::Headers(hs)
        }
        (Lie::WeakCertificate, SyncResponse::Headers(mut hs)) if !hs.is_empty() => {
            hs[0].commit.signatures.truncate(1);
            SyncResponse::Headers(hs)
        }
        (Lie::WrongBalance, SyncResponse::AccountProof(mut p)) => {
            let rich = Account {
                balance: u64::MAX / 2,
                ..Account::default()
            };
            p.proof.value = Some(codec::encode(&rich));
            SyncResponse::AccountProof(p)
        }
        (_, other) => other,
    }
}

fn header_hash(n: &Node, height: u64) -> Option<String> {
    let h = n.call("getHeader", json!({ "height": height })).ok()?;
    h["hash"].as_str().map(str::to_string)
}

/// Polls `f` every 100 ms for up to `secs`.
fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn light_peer_verifies_through_a_set_change_and_bans_liars() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let homes = validator_homes(dir.path(), 4);
    let (nodes, boot) = start_validators(&homes, &["--block-time", "20"]);
    let genesis =
        Genesis::from_json(&std::fs::read(homes[0].join("genesis.json")).expect("genesis file"))
            .expect("genesis");

    // Validator 0 stakes more: at the next epoch boundary its power, and so the set, changes.
    let key = aitbc_node::client::load_signing_key(&homes[0].join("validator_key")).expect("key");
    let fee = nodes[0]
        .call("estimateFee", json!({ "bytes": 400 }))
        .expect("fee")["fee"]
        .as_u64()
        .expect("fee");
    let stake = aitbc_chain::Tx::signed(
        &genesis.chain_id,
        aitbc_chain::TxKind::Stake {
            amount: 500_000_000,
        },
        &key,
        1,
        fee,
    );
    nodes[0]
        .call("sendTx", json!({ "tx": stake, "wait": "commit" }))
        .expect("stake committed");
    // The set as (address, power): what a header's `validators_hash` commits to.
    let set_of = |n: &Node| -> Vec<(String, u64)> {
        let v = n.call("getValidators", json!({})).expect("validators");
        v.as_array()
            .expect("array")
            .iter()
            .map(|v| {
                let addr = v["address"].as_str().expect("address").to_string();
                (addr, v["power"].as_u64().expect("power"))
            })
            .collect()
    };
    let before = set_of(&nodes[1]);
    eventually(120, "the validator set to change", || {
        (set_of(&nodes[1]) != before).then_some(())
    });
    eventually(180, "several hundred blocks", || {
        (nodes[0].height() >= 300).then_some(())
    });

    // One light peer per liar, bootstrapping from its liar alone: the liar is its only source
    // until the first runs are judged, so the lie is met whatever the timing. Then it is told of
    // an honest validator through the admin route, as an operator would.
    let lies = [Lie::ForgedHeader, Lie::WeakCertificate, Lie::WrongBalance];
    let mut lights = Vec::new();
    for (i, lie) in lies.into_iter().enumerate() {
        let (id, addr) = rt.block_on(liar(lie, &genesis, &boot));
        let home = dir.path().join(format!("light{i}"));
        Node::init(&home);
        std::fs::copy(homes[0].join("genesis.json"), home.join("genesis.json")).expect("copy");
        let light = Node::start_on(
            &home,
            free_port(),
            free_port(),
            &[
                "--light",
                "--bootstrap-peers",
                &addr,
                "--admin-token",
                ADMIN_TOKEN,
            ],
        );
        lights.push((lie, id, light));
    }
    let banned = |light: &Node, id: &PeerId, lie: Lie| {
        let expected = match lie {
            Lie::ForgedHeader => "served a bad header: certificate: certificate is for block",
            Lie::WeakCertificate => "not more than two thirds",
            Lie::WrongBalance => "bad account proof",
        };
        light.log().lines().any(|line| {
            line.contains("bad_peer") && line.contains(&id.to_string()) && line.contains(expected)
        })
    };
    for (lie, id, light) in &lights {
        match lie {
            // Its first run from the liar carries the lie.
            Lie::ForgedHeader | Lie::WeakCertificate => {
                light.wait_for("the header liar to be banned", |l| {
                    banned(l, id, *lie).then_some(())
                });
            }
            // It relays honest headers: the light peer follows it at first.
            Lie::WrongBalance => {
                light.wait_for("headers through the balance liar", |l| {
                    (l.height() > 0).then_some(())
                });
            }
        }
        light
            .admin(ADMIN_TOKEN, "peers/add", json!({ "multiaddr": boot }))
            .expect("peer added");
    }

    // Each reaches the validators' head, header for header, across the set change.
    let target = nodes[0].height();
    for (_, _, light) in &lights {
        light.wait_for("the light peer to catch up", |l| {
            (l.height() >= target).then_some(())
        });
        for h in (1..=target).step_by(7).chain([target]) {
            assert_eq!(
                header_hash(light, h),
                header_hash(&nodes[2], h),
                "header {h} differs"
            );
        }
        assert_eq!(
            set_of(light),
            set_of(&nodes[0]),
            "the tracked validator set"
        );
    }

    // The balance liar relays honest headers but claims 2,000 more than it has: once it fails
    // to serve them, its claim no longer counts in `syncStatus`, which reports the lag behind
    // the head honest peers can serve.
    let (lie, liar_id, balance_light) = &lights[2];
    balance_light.wait_for("syncStatus to ignore the unbacked claim", |l| {
        let s = l.call("syncStatus", json!({})).ok()?;
        let best = s["best_peer_height"].as_u64()?;
        (best < nodes[0].height() + 500 && s["lag"].as_u64()? < 500).then_some(())
    });

    // Verified balances. The liar claims the highest head, so it is asked first once the light
    // peer has its claim from a poll; it is caught and banned, and an honest peer answers.
    // Every answer, before and after, is the true balance.
    let address = aitbc_chain::Address::of(&key.public()).to_string();
    let full = nodes[0]
        .call("getBalance", json!({ "address": address }))
        .expect("balance");
    let balance_is_true = |light: &Node| {
        let verified = light
            .call("getBalance", json!({ "address": address }))
            .expect("verified balance");
        assert_eq!(verified["balance"], full["balance"]);
        assert_eq!(verified["stake"], full["stake"]);
    };
    balance_light.wait_for("the balance liar to be banned", |l| {
        balance_is_true(l);
        banned(l, liar_id, *lie).then_some(())
    });
    for (_, _, light) in &lights {
        balance_is_true(light);
    }

    // The light peers still follow the honest head.
    let later = nodes[0].height();
    for (_, _, light) in &lights {
        light.wait_for("the light peer to follow the head", |l| {
            (l.height() >= later).then_some(())
        });
        assert_eq!(header_hash(light, later), header_hash(&nodes[0], later));
    }

    // No honest validator was banned: a run that the head moved into meanwhile (gossip, a
    // balance query's fetch) is not a lie.
    for n in &nodes {
        let id = n.call("status", json!({})).expect("status")["peer_id"]
            .as_str()
            .expect("peer id")
            .to_string();
        for (_, _, light) in &lights {
            let log = light.log();
            let ban = log
                .lines()
                .find(|l| l.contains("bad_peer") && l.contains(&id));
            assert!(ban.is_none(), "an honest validator was banned: {ban:?}");
        }
    }

    // A restart resumes from what it stored.
    let (_, _, light) = lights.pop().expect("a light peer");
    let stored = light.height();
    let home = light.home.clone();
    drop(light);
    let light = Node::start_on(
        &home,
        free_port(),
        free_port(),
        &["--light", "--bootstrap-peers", &boot],
    );
    let open = light
        .log()
        .lines()
        .find(|l| l.contains("event=\"open\""))
        .map(str::to_string)
        .expect("open line");
    let resumed: u64 = open
        .rsplit("height=")
        .next()
        .and_then(|h| h.trim().parse().ok())
        .expect("height in the open line");
    assert!(resumed >= stored, "resumed at {resumed}, had {stored}");
    drop(nodes);
}
