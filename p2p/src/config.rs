//! Network configuration and the size limits derived from it.
//!
//! Every limit on the wire (gossip frame, sync request, sync response) is computed here from
//! `max_block_bytes` and `max_validators`, so the rule "a full block with its certificate always
//! fits" (SPEC §6) holds by construction instead of by a hand-tuned constant per protocol.

use crate::topic::Topic;
use aitbc_chain::consensus::Message;
use aitbc_chain::hash::Hash;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use std::time::Duration;

/// Most blocks one `Blocks` request may ask for. Sync of 10,000 blocks at 2,000 blocks/s needs
/// a few requests in flight per peer, not huge ones; a bound keeps one request's cost small.
pub const MAX_BLOCKS_PER_REQUEST: u32 = 128;
/// Most headers one `Headers` request may ask for. Headers are small, so light peers can take
/// bigger steps; the response byte limit still truncates a long run of large certificates.
pub const MAX_HEADERS_PER_REQUEST: u32 = 512;
/// A sync request is a tag and a few integers (an address at most): 1 KiB is generous.
pub const MAX_REQUEST_BYTES: usize = 1024;
/// Room around a block in a sync response: headers, tags, lengths, an optional validator set.
const RESPONSE_OVERHEAD: u64 = 64 * 1024;
/// A `CommitSig` is a 32-byte key and a 64-byte signature.
const BYTES_PER_SIGNATURE: u64 = 96;
/// Slack between the largest payload we accept and gossipsub's frame limit: the frame also
/// carries the topic and protobuf framing, and a frame over the limit makes the receiver drop
/// the whole stream rather than one message.
const GOSSIP_FRAME_SLACK: usize = 64 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid p2p config `{field}`: {reason}")]
pub struct ConfigError {
    /// The config key at fault, as the node's config file spells it.
    pub field: &'static str,
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field,
        reason: reason.into(),
    }
}

/// Everything the network layer needs to know. The node fills it from its TOML/env/CLI config;
/// [`Config::new`] gives the defaults of SPEC §8.
#[derive(Clone, Debug)]
pub struct Config {
    /// Chain id: part of every protocol and topic name, so two chains never mix.
    pub chain_id: String,
    /// Genesis hash: peers that report another one are disconnected and banned.
    pub genesis_hash: Hash,
    /// Addresses to listen on (TCP, and QUIC when built with the `quic` feature).
    pub listen: Vec<Multiaddr>,
    /// Bootstrap peers; each must end in `/p2p/<peer-id>` so Kademlia can key it.
    pub bootstrap: Vec<Multiaddr>,
    /// The chain's `max_block_bytes`: every wire limit derives from it.
    pub max_block_bytes: u64,
    /// The chain's `max_validators`: bounds certificate sizes inside those limits.
    pub max_validators: u64,
    /// How long a misbehaving peer stays banned.
    pub ban_duration: Duration,
    /// Most peers connected at once; a new peer beyond it is disconnected.
    pub max_peers: u32,
    /// Peers found by Kademlia are dialed until this many are connected.
    pub target_peers: u32,
    /// Sustained sync requests per second one peer may make.
    pub requests_per_second: u32,
    /// Sync requests one peer may make in a burst above the sustained rate.
    pub request_burst: u32,
    /// Gossip topics to subscribe to: all of them on validators and full nodes; only
    /// [`Topic::Block`] on light peers, which can check certificates but not txs or votes.
    pub topics: Vec<Topic>,
    /// Answer Kademlia queries (validators and full nodes) or only ask (light peers behind NAT).
    pub kad_server: bool,
    /// Connections without any protocol keeping them alive close after this long. Gossipsub keeps
    /// a connection alive only while the peer is in a mesh, ping never does.
    pub idle_connection_timeout: Duration,
    /// A TCP connection whose sent data has waited this long for the peer (unacknowledged, or
    /// unsent behind its closed receive window) is dropped by the kernel (`TCP_USER_TIMEOUT`,
    /// Linux). Without it a peer that stops reading holds its connection, and every message
    /// queued for it, for ever: TCP probes a closed window without end, and closing the
    /// connection waits for the same window.
    pub send_timeout: Duration,
    /// How often to look for more peers while below `target_peers`.
    pub discovery_interval: Duration,
    /// Gossipsub heartbeat (mesh maintenance, IHAVE gossip).
    pub gossip_heartbeat: Duration,
    /// Sync requests time out after this long.
    pub request_timeout: Duration,
    /// Capacity of the event channel to the node; when it is full gossip is ignored (not
    /// forwarded, no penalty) and requests are refused, so a slow node sheds load instead of
    /// stalling the swarm.
    pub event_buffer: usize,
}

impl Config {
    /// Defaults of SPEC §8: listen on 0.0.0.0:7070 (TCP, and UDP for QUIC), 1 MiB blocks.
    pub fn new(chain_id: impl Into<String>, genesis_hash: Hash) -> Config {
        let mut listen: Vec<Multiaddr> = vec!["/ip4/0.0.0.0/tcp/7070"
            .parse()
            .expect("a literal multiaddr parses")];
        if cfg!(feature = "quic") {
            listen.push(
                "/ip4/0.0.0.0/udp/7070/quic-v1"
                    .parse()
                    .expect("a literal multiaddr parses"),
            );
        }
        Config {
            chain_id: chain_id.into(),
            genesis_hash,
            listen,
            bootstrap: Vec::new(),
            max_block_bytes: 1 << 20,
            max_validators: 100,
            ban_duration: Duration::from_secs(600),
            max_peers: 50,
            target_peers: 25,
            requests_per_second: 20,
            request_burst: 40,
            topics: Topic::ALL.to_vec(),
            kad_server: true,
            idle_connection_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(20),
            discovery_interval: Duration::from_secs(10),
            gossip_heartbeat: Duration::from_secs(1),
            request_timeout: Duration::from_secs(10),
            event_buffer: 8192,
        }
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.chain_id.is_empty() || self.chain_id.len() > 64 {
            return Err(invalid("chain_id", "must be 1 to 64 characters"));
        }
        if !self
            .chain_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err(invalid(
                "chain_id",
                "may hold only ASCII letters, digits, '-', '_' and '.' (it is part of protocol names)",
            ));
        }
        if self.listen.is_empty() {
            return Err(invalid("listen", "needs at least one address"));
        }
        for addr in &self.listen {
            if addr.iter().any(|p| matches!(p, Protocol::P2p(_))) {
                return Err(invalid("listen", format!("{addr} must not name a peer id")));
            }
        }
        for addr in &self.bootstrap {
            if peer_id_of(addr).is_none() {
                return Err(invalid(
                    "bootstrap",
                    format!("{addr} must end in /p2p/<peer-id>"),
                ));
            }
        }
        if !(64 * 1024..=64 << 20).contains(&self.max_block_bytes) {
            return Err(invalid(
                "max_block_bytes",
                "must be between 64 KiB and 64 MiB (the chain's own bounds)",
            ));
        }
        if !(1..=10_000).contains(&self.max_validators) {
            return Err(invalid("max_validators", "must be between 1 and 10000"));
        }
        if self.ban_duration < Duration::from_secs(1) {
            return Err(invalid("ban_duration", "must be at least 1 s"));
        }
        if self.max_peers == 0 {
            return Err(invalid("max_peers", "must be at least 1"));
        }
        if self.target_peers == 0 || self.target_peers > self.max_peers {
            return Err(invalid("target_peers", "must be between 1 and max_peers"));
        }
        if self.requests_per_second == 0 {
            return Err(invalid("requests_per_second", "must be at least 1"));
        }
        if self.request_burst == 0 {
            return Err(invalid("request_burst", "must be at least 1"));
        }
        if self.idle_connection_timeout < Duration::from_secs(1) {
            return Err(invalid("idle_connection_timeout", "must be at least 1 s"));
        }
        if self.send_timeout < Duration::from_secs(1) {
            return Err(invalid("send_timeout", "must be at least 1 s"));
        }
        if self.discovery_interval < Duration::from_millis(100) {
            return Err(invalid("discovery_interval", "must be at least 100 ms"));
        }
        if !(Duration::from_millis(50)..=Duration::from_secs(10)).contains(&self.gossip_heartbeat) {
            return Err(invalid(
                "gossip_heartbeat",
                "must be between 50 ms and 10 s",
            ));
        }
        if self.request_timeout < Duration::from_millis(100) {
            return Err(invalid("request_timeout", "must be at least 100 ms"));
        }
        if self.event_buffer < 16 {
            return Err(invalid("event_buffer", "must be at least 16"));
        }
        Ok(())
    }

    /// The wire limits this config implies.
    pub fn limits(&self) -> Limits {
        Limits::new(self.max_block_bytes, self.max_validators)
    }

    /// The Identify protocol version `/ait/<chain_id>/<genesis-hash-hex>`: a peer announcing
    /// another one is on another chain and is dropped before it can waste our resources.
    pub fn identify_version(&self) -> String {
        format!(
            "/ait/{}/{}",
            self.chain_id,
            hex::encode(self.genesis_hash.as_bytes())
        )
    }
}

/// The peer id an address ends with (`…/p2p/<peer-id>`), if any.
pub fn peer_id_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

/// Byte and count bounds on everything that crosses the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest gossip payload accepted or published (a full consensus proposal, or a full block
    /// with its certificate, whichever is larger).
    pub gossip_payload: usize,
    /// gossipsub's frame limit: the payload plus room for the frame's own encoding.
    pub gossip_frame: usize,
    /// Largest encoded sync request.
    pub request: usize,
    /// Largest encoded sync response: a few full blocks with certificates, so one full block
    /// always fits and a run of small blocks travels in one response.
    pub response: usize,
    pub max_blocks: u32,
    pub max_headers: u32,
}

impl Limits {
    pub fn new(max_block_bytes: u64, max_validators: u64) -> Limits {
        let certificate = 128u64.saturating_add(max_validators.saturating_mul(BYTES_PER_SIGNATURE));
        // A block carries its parent's certificate; a sync entry adds its own.
        let block_with_cert = max_block_bytes
            .saturating_add(certificate.saturating_mul(2))
            .saturating_add(4096);
        let block_with_cert = usize::try_from(block_with_cert).unwrap_or(usize::MAX);
        let proposal = Message::max_encoded_len(max_block_bytes, max_validators);
        let gossip_payload = proposal.max(block_with_cert);
        let response = max_block_bytes
            .saturating_add(certificate.saturating_mul(2))
            .saturating_mul(4)
            .saturating_add(RESPONSE_OVERHEAD);
        Limits {
            gossip_payload,
            gossip_frame: gossip_payload.saturating_add(GOSSIP_FRAME_SLACK),
            request: MAX_REQUEST_BYTES,
            response: usize::try_from(response).unwrap_or(usize::MAX),
            max_blocks: MAX_BLOCKS_PER_REQUEST,
            max_headers: MAX_HEADERS_PER_REQUEST,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Config {
        let mut c = Config::new("ait-test", Hash::of(b"genesis"));
        c.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().expect("literal")];
        c
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::new("ait-main", Hash::ZERO).validate(), Ok(()));
        assert_eq!(good().validate(), Ok(()));
    }

    #[test]
    fn bad_values_name_their_field() {
        type Breaker = Box<dyn Fn(&mut Config)>;
        let cases: Vec<(&str, Breaker)> = vec![
            ("chain_id", Box::new(|c| c.chain_id.clear())),
            ("chain_id", Box::new(|c| c.chain_id = "a/b".into())),
            ("listen", Box::new(|c| c.listen.clear())),
            (
                "bootstrap",
                Box::new(|c| c.bootstrap = vec!["/ip4/1.2.3.4/tcp/1".parse().expect("literal")]),
            ),
            ("max_block_bytes", Box::new(|c| c.max_block_bytes = 10)),
            ("max_validators", Box::new(|c| c.max_validators = 0)),
            (
                "ban_duration",
                Box::new(|c| c.ban_duration = Duration::ZERO),
            ),
            ("max_peers", Box::new(|c| c.max_peers = 0)),
            (
                "target_peers",
                Box::new(|c| c.target_peers = c.max_peers + 1),
            ),
            (
                "requests_per_second",
                Box::new(|c| c.requests_per_second = 0),
            ),
            ("request_burst", Box::new(|c| c.request_burst = 0)),
            (
                "idle_connection_timeout",
                Box::new(|c| c.idle_connection_timeout = Duration::ZERO),
            ),
            (
                "send_timeout",
                Box::new(|c| c.send_timeout = Duration::from_millis(999)),
            ),
            (
                "gossip_heartbeat",
                Box::new(|c| c.gossip_heartbeat = Duration::from_secs(60)),
            ),
            ("event_buffer", Box::new(|c| c.event_buffer = 0)),
        ];
        for (field, break_it) in cases {
            let mut c = good();
            break_it(&mut c);
            let err = c.validate().expect_err(field);
            assert_eq!(err.field, field);
            assert!(err.to_string().contains(field));
        }
    }

    #[test]
    fn limits_fit_a_full_block_with_certificates() {
        let l = Limits::new(1 << 20, 100);
        assert!(l.gossip_payload >= (1 << 20) + 2 * 100 * 96);
        assert!(l.gossip_payload >= Message::max_encoded_len(1 << 20, 100));
        assert!(l.gossip_frame > l.gossip_payload);
        assert!(l.response >= 4 << 20);
        assert_eq!(l.max_blocks, 128);
    }

    #[test]
    fn identify_version_pins_chain_and_genesis() {
        let c = good();
        let v = c.identify_version();
        assert!(v.starts_with("/ait/ait-test/"));
        assert!(v.ends_with(&hex::encode(Hash::of(b"genesis").as_bytes())));
    }
}
