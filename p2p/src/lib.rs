//! AITBC networking (SPEC §6): one libp2p swarm owned by one tokio task, reached through a
//! cloneable [`Handle`] and a stream of [`Event`]s.
//!
//! What the swarm speaks:
//! - TCP + Noise + Yamux, and QUIC (cargo feature `quic`, on by default);
//! - gossipsub on `/ait/<chain_id>/{tx,consensus,block}/1` with anonymous, content-addressed
//!   messages that the node validates before they are forwarded ([`Handle::report_validation`]);
//! - Kademlia on `/ait/<chain_id>/kad/1` for discovery from bootstrap multiaddrs;
//! - the sync request-response protocol `/ait/<chain_id>/sync/1` ([`sync`]);
//! - Identify (carrying `/ait/<chain_id>/<genesis-hash>`, so peers of other chains are dropped)
//!   and Ping.
//!
//! Why one task owns the swarm: libp2p's `Swarm` must be polled continuously and is not `Sync`;
//! the node's many tasks (consensus, mempool, RPC, sync) talk to it through the channel behind
//! [`Handle`], and the loop can enforce per-peer limits and bans in one place.
//!
//! The node keeps the protocol decisions: it decodes and checks every gossip payload and answers
//! every sync request. This crate keeps the network honest around it: bounded sizes everywhere,
//! per-peer request rate limits, peer scoring with bans, chain and genesis checks.

mod behaviour;
pub mod config;
mod rate;
mod service;
mod slow;
pub mod sync;
pub mod topic;

pub use config::{Config, ConfigError, Limits};
pub use service::{start, Acceptance, BanReason, Event, Handle, PeerInfo};
pub use sync::{
    AccountProof, CertifiedBlock, CertifiedHeader, Refusal, Status, SyncRequest, SyncResponse,
};
pub use topic::Topic;

/// libp2p itself, so the node names the same versions of `PeerId`, `Multiaddr` and `Keypair`.
pub use libp2p;
pub use libp2p::gossipsub::MessageId;
pub use libp2p::identity::Keypair;
pub use libp2p::request_response::InboundRequestId as RequestId;
pub use libp2p::{Multiaddr, PeerId};

/// Errors of the network as a whole (start-up, a stopped event loop).
#[derive(Debug, thiserror::Error)]
pub enum P2pError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("transport: {0}")]
    Transport(String),
    #[error("gossipsub: {0}")]
    Gossipsub(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
    #[error("cannot dial {addr}: {reason}")]
    Dial { addr: Multiaddr, reason: String },
    #[error("response of {len} bytes is over the limit of {max}; the peer was told TooLarge")]
    ResponseTooLarge { len: usize, max: usize },
    #[error("the network event loop has stopped")]
    Closed,
}

/// Why a publish failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PublishError {
    #[error("payload of {len} bytes is over the gossip limit of {max}")]
    TooLarge { len: usize, max: usize },
    /// No connected peer is subscribed to the topic (or every one scores below the publish
    /// threshold). Normal right after start-up or a restart, until subscriptions arrive.
    #[error("no peer is subscribed to the topic yet")]
    NoPeers,
    /// The same bytes were published or received recently (message ids are content hashes).
    #[error("the same payload was already published")]
    Duplicate,
    #[error("every peer's send queue is full")]
    QueueFull,
    #[error("publish failed: {0}")]
    Other(String),
    #[error("the network event loop has stopped")]
    Closed,
}

/// Why a sync request got no usable response.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("no response within the request timeout")]
    Timeout,
    #[error("the connection closed before the response")]
    ConnectionClosed,
    #[error("could not dial the peer")]
    DialFailure,
    #[error("the peer does not speak this chain's sync protocol")]
    UnsupportedProtocols,
    /// Transport or codec failure: includes a response over the limit or one that does not
    /// decode.
    #[error("stream failure: {0}")]
    Io(String),
    /// The response does not answer the request (wrong kind, more items than asked, wrong
    /// heights).
    #[error("the response does not answer the request")]
    UnexpectedResponse,
    /// The peer's `Status` names another genesis; it has been disconnected and banned.
    #[error("the peer is on another chain (genesis hash differs); it was banned")]
    GenesisMismatch,
    #[error("the network event loop has stopped")]
    Closed,
}
