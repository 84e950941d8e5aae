//! The composed libp2p behaviour and the swarm that carries it.

use crate::config::{Config, Limits};
use crate::sync::{self, SyncCodec};
use crate::topic::{message_id_fn, Topic};
use crate::P2pError;
use libp2p::core::{upgrade, Transport};
use libp2p::gossipsub::{
    self, MessageAuthenticity, PeerScoreParams, PeerScoreThresholds, TopicScoreParams,
    ValidationMode,
};
use libp2p::identity::Keypair;
use libp2p::kad::{self, store::MemoryStore, StoreInserts};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    allow_block_list, connection_limits, identify, noise, ping, tcp, yamux, StreamProtocol, Swarm,
    SwarmBuilder,
};
use std::collections::HashSet;
use std::time::Duration;

/// Connection limits and the block list come first so they refuse a connection before any other
/// behaviour spends work on it.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) limits: connection_limits::Behaviour,
    pub(crate) blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub(crate) gossipsub: gossipsub::Behaviour,
    pub(crate) kad: kad::Behaviour<MemoryStore>,
    pub(crate) sync: request_response::Behaviour<SyncCodec>,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
}

/// Score thresholds. Only the graylist one matters to us directly: a connected peer below it is
/// disconnected and banned by the event loop (gossipsub itself merely ignores such a peer).
pub(crate) fn score_thresholds() -> PeerScoreThresholds {
    PeerScoreThresholds {
        gossip_threshold: -10.0,
        publish_threshold: -50.0,
        graylist_threshold: -80.0,
        accept_px_threshold: 100.0,
        opportunistic_graft_threshold: 5.0,
    }
}

/// Per-topic scoring, tuned for a small validator network rather than taken from
/// `TopicScoreParams::default()` (whose 1 ms time-in-mesh quantum inflates a new peer's score
/// within seconds and hides penalties, and whose delivery-rate penalties punish quiet topics
/// such as consensus votes).
///
/// Positive terms are small and capped (see `topic_score_cap`), the invalid-message term
/// dominates: it is `-25 × (invalid count)²`, so two rejected messages reach -100 and three
/// -225, past the graylist threshold (-80) even for a peer with the full positive cap (+20).
/// The count decays to 10% over ten minutes, so a peer that once relayed one bad message is not
/// marked for long. Mesh-delivery (P3, P3b) penalties are off: votes and blocks are bursty and a
/// quiet-but-honest validator must not be penalised for silence.
pub(crate) fn topic_score_params() -> TopicScoreParams {
    TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 300.0,
        first_message_deliveries_weight: 0.5,
        first_message_deliveries_decay: gossipsub::score_parameter_decay(Duration::from_secs(60)),
        first_message_deliveries_cap: 20.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_message_deliveries_decay: 0.5,
        mesh_message_deliveries_cap: 100.0,
        mesh_message_deliveries_threshold: 1.0,
        mesh_message_deliveries_window: Duration::from_millis(10),
        mesh_message_deliveries_activation: Duration::from_secs(60),
        mesh_failure_penalty_weight: 0.0,
        mesh_failure_penalty_decay: 0.5,
        invalid_message_deliveries_weight: -25.0,
        invalid_message_deliveries_decay: gossipsub::score_parameter_decay(Duration::from_secs(
            600,
        )),
    }
}

pub(crate) fn score_params(config: &Config) -> PeerScoreParams {
    PeerScoreParams {
        topics: Topic::ALL
            .iter()
            .map(|t| (t.ident(&config.chain_id).hash(), topic_score_params()))
            .collect(),
        // Good behaviour can offset at most this much penalty.
        topic_score_cap: 20.0,
        app_specific_weight: 0.0,
        // Devnets run every validator on one host: co-location is normal here, not a Sybil sign.
        ip_colocation_factor_weight: 0.0,
        ip_colocation_factor_threshold: 10.0,
        ip_colocation_factor_whitelist: HashSet::new(),
        // Broken IHAVE/IWANT promises and GRAFT-during-backoff: mild and only beyond a few.
        behaviour_penalty_weight: -1.0,
        behaviour_penalty_threshold: 6.0,
        behaviour_penalty_decay: gossipsub::score_parameter_decay(Duration::from_secs(60)),
        decay_interval: Duration::from_secs(1),
        decay_to_zero: 0.01,
        // Long enough that disconnecting does not wash a penalty away before the ban ends.
        retain_score: config.ban_duration.max(Duration::from_secs(600)),
        // Off: slowness is not misbehaviour. gossipsub's default (-0.2 per message that did not
        // fit the peer's queue) took a peer that stalled for a second under a burst past the
        // graylist threshold, and so to a ban; a peer that stays slow is reset instead
        // (`slow.rs`).
        slow_peer_weight: 0.0,
        slow_peer_threshold: 0.0,
        slow_peer_decay: 0.2,
    }
}

/// gossipsub for a network of 2–16 validators: every node is in every other's mesh, messages
/// are validated by the node before they are forwarded, and publishing floods to all peers.
pub(crate) fn gossipsub_config(
    config: &Config,
    limits: &Limits,
) -> Result<gossipsub::Config, P2pError> {
    // D = 8 reaches every peer of a 9-node network directly; D_high = 16 keeps all 15 peers of a
    // 16-validator network in the mesh; D_low = 2 and one outbound peer let 2- and 3-node
    // networks keep a mesh at all (gossipsub's build() does not check these for the default
    // topic config, so they are checked in the unit tests instead).
    let built = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(config.gossip_heartbeat)
        .mesh_n(8)
        .mesh_n_low(2)
        .mesh_n_high(16)
        .mesh_outbound_min(1)
        .gossip_lazy(8)
        .history_length(5)
        .history_gossip(3)
        .flood_publish(true)
        .validate_messages()
        // Anonymous messages: no author, no seqno, no signature. `Anonymous` (not `None`) makes
        // a message that does carry those fields invalid, so nobody can smuggle a signed
        // message with a different id scheme into our caches.
        .validation_mode(ValidationMode::Anonymous)
        .message_id_fn(message_id_fn)
        .max_transmit_size(limits.gossip_frame)
        // IHAVE lists outgrow the 16 KiB default above ~160 msg/s and the receiver then drops
        // the stream for good.
        .max_control_message_size(256 * 1024)
        .duplicate_cache_time(Duration::from_secs(120))
        .build()
        .map_err(|e| P2pError::Gossipsub(e.to_string()))?;
    Ok(built)
}

/// `aitbc/<version> session/<nonce>`, the nonce new each time the swarm starts. A peer whose
/// session changes while we still hold a connection to it has restarted, and that old connection
/// is dead (see `Service::on_identify`).
fn agent_version() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let nonce = (nanos as u64) ^ (u64::from(std::process::id()) << 40);
    format!("aitbc/{} session/{nonce:016x}", env!("CARGO_PKG_VERSION"))
}

pub(crate) fn kad_protocol(chain_id: &str) -> StreamProtocol {
    StreamProtocol::try_from_owned(format!("/ait/{chain_id}/kad/1"))
        .expect("a name starting with '/' is a valid protocol")
}

fn build_behaviour(key: &Keypair, config: &Config, limits: &Limits) -> Result<Behaviour, P2pError> {
    let peer_id = key.public().to_peer_id();

    let mut gossipsub = gossipsub::Behaviour::new(
        MessageAuthenticity::Anonymous,
        gossipsub_config(config, limits)?,
    )
    .map_err(|e| P2pError::Gossipsub(e.to_string()))?;
    gossipsub
        .with_peer_score(score_params(config), score_thresholds())
        .map_err(P2pError::Gossipsub)?;
    for topic in &config.topics {
        gossipsub
            .subscribe(&topic.ident(&config.chain_id))
            .map_err(|e| P2pError::Gossipsub(e.to_string()))?;
    }

    let mut kad_config = kad::Config::new(kad_protocol(&config.chain_id));
    kad_config
        .set_query_timeout(Duration::from_secs(30))
        // We store no records; refuse to let peers store theirs with us.
        .set_record_filtering(StoreInserts::FilterBoth)
        .set_periodic_bootstrap_interval(Some(Duration::from_secs(300)));
    let mut kad = kad::Behaviour::with_config(peer_id, MemoryStore::new(peer_id), kad_config);
    // Without a confirmed external address Kademlia would stay a client and never answer, which
    // bootstrap() hides (it still returns Ok).
    kad.set_mode(Some(if config.kad_server {
        kad::Mode::Server
    } else {
        kad::Mode::Client
    }));

    let sync = request_response::Behaviour::with_codec(
        SyncCodec::new(limits),
        [(sync::protocol(&config.chain_id), ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(config.request_timeout)
            .with_max_concurrent_streams(64),
    );

    let identify = identify::Behaviour::new(
        identify::Config::new(config.identify_version(), key.public())
            .with_agent_version(agent_version()),
    );

    let max_peers = config.max_peers;
    let limits_behaviour = connection_limits::Behaviour::new(
        connection_limits::ConnectionLimits::default()
            .with_max_pending_incoming(Some(max_peers.clamp(8, 64)))
            .with_max_pending_outgoing(Some(max_peers.clamp(8, 64)))
            .with_max_established_incoming(Some(max_peers))
            .with_max_established(Some(max_peers.saturating_mul(2)))
            // Two: a TCP and a QUIC connection, or a restarted peer's new connection while its
            // old one has not been noticed dead yet.
            .with_max_established_per_peer(Some(2)),
    );

    Ok(Behaviour {
        limits: limits_behaviour,
        blocked: allow_block_list::Behaviour::default(),
        gossipsub,
        kad,
        sync,
        identify,
        ping: ping::Behaviour::new(ping::Config::new()),
    })
}

/// Builds the swarm: TCP + Noise + Yamux, QUIC when the `quic` feature is on, DNS for
/// `/dns4/…` bootstrap addresses.
pub(crate) fn build_swarm(
    key: Keypair,
    config: &Config,
    limits: &Limits,
) -> Result<Swarm<Behaviour>, P2pError> {
    let transport_err = |e: &dyn std::fmt::Display| P2pError::Transport(e.to_string());
    let idle = config.idle_connection_timeout;
    let send_timeout = config.send_timeout;
    let behaviour = build_behaviour(&key, config, limits)?;
    let builder = SwarmBuilder::with_existing_identity(key).with_tokio();
    #[cfg(feature = "quic")]
    let builder = builder.with_quic();
    let swarm = builder
        // What `with_tcp` builds, plus a send deadline on every socket (`Config::send_timeout`).
        .with_other_transport(
            |key| -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
                Ok(
                    tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
                        .map(move |stream: tcp::tokio::TcpStream, _| {
                            set_send_timeout(&stream, send_timeout);
                            stream
                        })
                        .upgrade(upgrade::Version::V1Lazy)
                        .authenticate(noise::Config::new(key)?)
                        .multiplex(yamux::Config::default()),
                )
            },
        )
        .map_err(|e| transport_err(&e))?
        .with_dns()
        .map_err(|e| transport_err(&e))?
        .with_behaviour(|_| behaviour)
        .map_err(|e| transport_err(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build();
    Ok(swarm)
}

#[cfg(target_os = "linux")]
fn set_send_timeout(stream: &tcp::tokio::TcpStream, timeout: Duration) {
    if let Err(e) = socket2::SockRef::from(&stream.0).set_tcp_user_timeout(Some(timeout)) {
        // The connection still works; it only lacks the deadline.
        tracing::warn!(error = %e, "could not set TCP_USER_TIMEOUT");
    }
}

#[cfg(not(target_os = "linux"))]
fn set_send_timeout(_: &tcp::tokio::TcpStream, _: Duration) {}

#[cfg(test)]
mod tests {
    use super::*;
    use aitbc_chain::hash::Hash;

    #[test]
    fn mesh_parameters_are_consistent() {
        let config = Config::new("c", Hash::ZERO);
        let g = gossipsub_config(&config, &config.limits()).expect("builds");
        assert!(g.mesh_outbound_min() <= g.mesh_n_low());
        assert!(g.mesh_n_low() <= g.mesh_n());
        assert!(g.mesh_n() <= g.mesh_n_high());
        assert!(g.mesh_outbound_min() * 2 <= g.mesh_n());
        assert!(g.flood_publish());
        assert!(g.validate_messages());
        assert!(g.max_transmit_size() > config.limits().gossip_payload);
        assert!(g.history_length() >= g.history_gossip());
    }

    #[test]
    fn score_parameters_validate_and_graylist_after_a_few_invalid_messages() {
        let config = Config::new("c", Hash::ZERO);
        let params = score_params(&config);
        params.validate().expect("valid params");
        score_thresholds().validate().expect("valid thresholds");
        let t = topic_score_params();
        let graylist = score_thresholds().graylist_threshold;
        // Best case for the offender: the whole positive cap.
        let score = |invalid: f64| {
            params.topic_score_cap
                + t.topic_weight * t.invalid_message_deliveries_weight * invalid * invalid
        };
        assert!(score(1.0) > graylist, "one bad relay is not fatal");
        assert!(score(3.0) < graylist, "three are");
    }
}
