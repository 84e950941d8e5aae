//! The event loop that owns the swarm, and the [`Handle`] the node uses to talk to it.

use crate::behaviour::{build_swarm, kad_protocol, score_thresholds, Behaviour, BehaviourEvent};
use crate::config::{peer_id_of, Config, Limits};
use crate::rate::RateLimiter;
use crate::sync::{Refusal, SyncRequest, SyncResponse};
use crate::topic::{Topic, Topics};
use crate::{P2pError, PublishError, RequestError};
use aitbc_chain::codec;
use libp2p::core::transport::ListenerId;
use libp2p::futures::StreamExt;
use libp2p::gossipsub::{self, MessageAcceptance, MessageId};
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{
    self, InboundRequestId, OutboundFailure, OutboundRequestId, ResponseChannel,
};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::SwarmEvent;
use libp2p::{identify, kad, ping, Multiaddr, PeerId, StreamProtocol, Swarm};
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;

/// How long [`start`] waits for its listeners to come up.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Addresses kept per peer from one Identify message: a peer cannot fill our table with junk.
const MAX_IDENTIFY_ADDRS: usize = 16;
/// Peer events waiting for room in the event channel; beyond this the oldest are dropped (the
/// node re-learns the peer set from [`Handle::peers`]).
const MAX_PENDING_EVENTS: usize = 65_536;

/// The node's verdict on a gossip message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acceptance {
    /// Valid: forward it to our mesh.
    Accept,
    /// Invalid (bad signature, malformed): drop it and penalise the peer that sent it.
    Reject,
    /// Not judged (stale, duplicate, or we are syncing): drop it without penalty.
    Ignore,
}

impl From<Acceptance> for MessageAcceptance {
    fn from(a: Acceptance) -> MessageAcceptance {
        match a {
            Acceptance::Accept => MessageAcceptance::Accept,
            Acceptance::Reject => MessageAcceptance::Reject,
            Acceptance::Ignore => MessageAcceptance::Ignore,
        }
    }
}

/// Why a peer was banned.
#[derive(Clone, Debug, PartialEq)]
pub enum BanReason {
    /// Its Identify protocol version names another chain or genesis.
    WrongChain { protocol_version: String },
    /// Its `Status` response names another genesis hash.
    GenesisMismatch,
    /// Its gossipsub score fell below the graylist threshold (invalid messages).
    LowScore(f64),
    /// The node asked for it.
    Node(String),
}

/// What the network tells the node.
#[derive(Debug)]
pub enum Event {
    /// A gossip message to validate. The node must answer with [`Handle::report_validation`]
    /// (`id`, `source`) within a few gossipsub heartbeats; until then it is not forwarded.
    Gossip {
        topic: Topic,
        data: Vec<u8>,
        id: MessageId,
        /// The peer that relayed it to us (not necessarily its author): the one penalised on
        /// `Reject`.
        source: PeerId,
    },
    /// A sync request that passed the rate limit and bounds checks. Answer with
    /// [`Handle::respond`] before the request timeout.
    Request {
        peer: PeerId,
        id: InboundRequestId,
        request: SyncRequest,
    },
    /// A peer's first connection is up and its Identify info matches our chain and genesis.
    PeerConnected { peer: PeerId },
    /// A peer that was reported connected lost its last connection.
    PeerDisconnected { peer: PeerId },
    /// A peer was disconnected and will be refused until its ban expires.
    PeerBanned { peer: PeerId, reason: BanReason },
}

/// One peer as [`Handle::peers`] reports it.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    pub peer_id: PeerId,
    /// At least one connection is up.
    pub connected: bool,
    /// Its Identify info matched our chain (it was reported with [`Event::PeerConnected`]).
    pub identified: bool,
    /// Addresses Kademlia holds for it (empty when it is not in the routing table).
    pub kad_addresses: Vec<Multiaddr>,
    /// Topics it is subscribed to.
    pub topics: Vec<Topic>,
    /// Its gossipsub score.
    pub score: Option<f64>,
}

enum Command {
    Publish {
        topic: Topic,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<MessageId, PublishError>>,
    },
    Request {
        peer: PeerId,
        request: SyncRequest,
        reply: oneshot::Sender<Result<SyncResponse, RequestError>>,
    },
    Respond {
        id: InboundRequestId,
        response: SyncResponse,
    },
    Validation {
        id: MessageId,
        source: PeerId,
        acceptance: Acceptance,
    },
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
    Banned(oneshot::Sender<Vec<PeerId>>),
    AddPeer {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<(), P2pError>>,
    },
    Ban {
        peer: PeerId,
        reason: String,
    },
    Shutdown(oneshot::Sender<()>),
}

/// The node's side of the network. Cheap to clone; every method is a message to the event loop.
/// When every `Handle` is dropped the loop stops and the swarm closes.
#[derive(Clone, Debug)]
pub struct Handle {
    commands: mpsc::Sender<Command>,
    local_peer_id: PeerId,
    limits: Limits,
}

impl Handle {
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// The wire limits in force (derived from the config).
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    async fn send(&self, cmd: Command) -> Result<(), P2pError> {
        self.commands.send(cmd).await.map_err(|_| P2pError::Closed)
    }

    /// Publishes `data` on `topic` to every subscribed peer (flood publish).
    pub async fn publish(&self, topic: Topic, data: Vec<u8>) -> Result<MessageId, PublishError> {
        if data.len() > self.limits.gossip_payload {
            return Err(PublishError::TooLarge {
                len: data.len(),
                max: self.limits.gossip_payload,
            });
        }
        let (reply, rx) = oneshot::channel();
        self.send(Command::Publish { topic, data, reply })
            .await
            .map_err(|_| PublishError::Closed)?;
        rx.await.map_err(|_| PublishError::Closed)?
    }

    /// Sends a sync request and waits for the answer (or the request timeout). The response is
    /// checked to answer the request; a `Status` naming another genesis bans the peer.
    pub async fn request(
        &self,
        peer: PeerId,
        request: SyncRequest,
    ) -> Result<SyncResponse, RequestError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Request {
            peer,
            request,
            reply,
        })
        .await
        .map_err(|_| RequestError::Closed)?;
        rx.await.map_err(|_| RequestError::Closed)?
    }

    /// Answers the request `id` of an [`Event::Request`]. A response over the limit is not
    /// sent: the peer is told [`Refusal::TooLarge`] and the error says so, so the node can
    /// retry with fewer items.
    pub async fn respond(
        &self,
        id: InboundRequestId,
        response: SyncResponse,
    ) -> Result<(), P2pError> {
        let len = codec::encoded_len(&response);
        if len > self.limits.response {
            self.send(Command::Respond {
                id,
                response: SyncResponse::Refused(Refusal::TooLarge),
            })
            .await?;
            return Err(P2pError::ResponseTooLarge {
                len,
                max: self.limits.response,
            });
        }
        self.send(Command::Respond { id, response }).await
    }

    /// Reports the node's verdict on a gossip message; `Accept` forwards it, `Reject` penalises
    /// `source` (and bans it once its score passes the graylist threshold).
    pub async fn report_validation(
        &self,
        id: MessageId,
        source: PeerId,
        acceptance: Acceptance,
    ) -> Result<(), P2pError> {
        self.send(Command::Validation {
            id,
            source,
            acceptance,
        })
        .await
    }

    /// Connected peers and peers known to Kademlia.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, P2pError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Peers(tx)).await?;
        rx.await.map_err(|_| P2pError::Closed)
    }

    /// The addresses we listen on (with port 0 resolved).
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, P2pError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::ListenAddrs(tx)).await?;
        rx.await.map_err(|_| P2pError::Closed)
    }

    /// Peers banned now.
    pub async fn banned(&self) -> Result<Vec<PeerId>, P2pError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Banned(tx)).await?;
        rx.await.map_err(|_| P2pError::Closed)
    }

    /// Dials `addr`; with a `/p2p/<peer-id>` suffix the peer also goes into Kademlia.
    pub async fn add_peer(&self, addr: Multiaddr) -> Result<(), P2pError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::AddPeer { addr, reply }).await?;
        rx.await.map_err(|_| P2pError::Closed)?
    }

    /// Disconnects `peer` and refuses it for the configured ban duration.
    pub async fn ban(&self, peer: PeerId, reason: impl Into<String>) -> Result<(), P2pError> {
        self.send(Command::Ban {
            peer,
            reason: reason.into(),
        })
        .await
    }

    /// Stops the event loop and closes every connection; returns once the swarm is dropped (so
    /// a restart with the same key can listen again).
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.send(Command::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// Starts the network: builds the swarm with `key` (the node's identity, not its validator key),
/// listens on every configured address, dials the bootstrap peers and spawns the event loop on
/// the current tokio runtime. Returns once every listener is up.
pub async fn start(
    key: Keypair,
    config: Config,
) -> Result<(Handle, mpsc::Receiver<Event>), P2pError> {
    config.validate()?;
    let limits = config.limits();
    let local_peer_id = key.public().to_peer_id();
    let mut swarm = build_swarm(key, &config, &limits)?;

    let mut listeners: HashMap<ListenerId, Multiaddr> = HashMap::new();
    for addr in &config.listen {
        let id = swarm
            .listen_on(addr.clone())
            .map_err(|e| P2pError::Listen {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
        listeners.insert(id, addr.clone());
    }
    let deadline = tokio::time::Instant::now() + LISTEN_TIMEOUT;
    while !listeners.is_empty() {
        let event = tokio::time::timeout_at(deadline, swarm.select_next_some())
            .await
            .map_err(|_| {
                let addr = listeners
                    .values()
                    .next()
                    .cloned()
                    .unwrap_or_else(Multiaddr::empty);
                P2pError::Listen {
                    addr,
                    reason: "no listen address within 10 s".into(),
                }
            })?;
        match event {
            SwarmEvent::NewListenAddr { listener_id, .. } => {
                listeners.remove(&listener_id);
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                if let Some(addr) = listeners.remove(&listener_id) {
                    return Err(P2pError::Listen {
                        addr,
                        reason: format!("listener closed: {reason:?}"),
                    });
                }
            }
            SwarmEvent::ListenerError { listener_id, error } => {
                if let Some(addr) = listeners.remove(&listener_id) {
                    return Err(P2pError::Listen {
                        addr,
                        reason: error.to_string(),
                    });
                }
            }
            _ => {}
        }
    }

    let (cmd_tx, cmd_rx) = mpsc::channel(1024);
    let (event_tx, event_rx) = mpsc::channel(config.event_buffer);
    let mut service = Service {
        topics: Topics::new(&config.chain_id),
        identify_version: config.identify_version(),
        kad_protocol: kad_protocol(&config.chain_id),
        limiter: RateLimiter::new(config.requests_per_second, config.request_burst),
        swarm,
        commands: cmd_rx,
        events: event_tx,
        pending_events: VecDeque::new(),
        identified: HashSet::new(),
        sessions: HashMap::new(),
        bans: HashMap::new(),
        inbound: HashMap::new(),
        outbound: HashMap::new(),
        limits,
        config,
    };
    service.dial_bootstrap();
    if service.swarm.behaviour_mut().kad.bootstrap().is_err() {
        tracing::debug!("no bootstrap peers: waiting for inbound connections");
    }
    tokio::spawn(service.run());

    Ok((
        Handle {
            commands: cmd_tx,
            local_peer_id,
            limits,
        },
        event_rx,
    ))
}

struct Service {
    config: Config,
    limits: Limits,
    topics: Topics,
    identify_version: String,
    kad_protocol: StreamProtocol,
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    /// Peer events that found the channel full; sent in order before any new gossip or request.
    pending_events: VecDeque<Event>,
    /// Peers whose Identify info matched (reported `PeerConnected`).
    identified: HashSet<PeerId>,
    /// Each connected peer's Identify agent version, which carries a per-start session nonce.
    sessions: HashMap<PeerId, String>,
    /// Banned peers and when their ban ends.
    bans: HashMap<PeerId, Instant>,
    limiter: RateLimiter,
    /// Inbound requests passed to the node, waiting for its answer.
    inbound: HashMap<InboundRequestId, ResponseChannel<SyncResponse>>,
    /// Our requests waiting for an answer.
    outbound: HashMap<OutboundRequestId, PendingRequest>,
}

struct PendingRequest {
    peer: PeerId,
    request: SyncRequest,
    reply: oneshot::Sender<Result<SyncResponse, RequestError>>,
}

impl Service {
    async fn run(mut self) {
        let mut maintenance = tokio::time::interval(Duration::from_secs(1));
        maintenance.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut discovery = tokio::time::interval(self.config.discovery_interval);
        discovery.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // A second sender, so waiting for room does not borrow `self` across the handlers.
        let events = self.events.clone();
        let shutdown_reply = loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Shutdown(reply)) => break Some(reply),
                    Some(cmd) => self.on_command(cmd),
                    None => break None,
                },
                permit = events.reserve(), if !self.pending_events.is_empty() => {
                    match permit {
                        Ok(permit) => {
                            if let Some(event) = self.pending_events.pop_front() {
                                permit.send(event);
                            }
                        }
                        // The node dropped its receiver: nobody to tell.
                        Err(_) => self.pending_events.clear(),
                    }
                }
                _ = maintenance.tick() => self.maintenance(),
                _ = discovery.tick() => self.discover(),
            }
        };
        // Fail pending requests now rather than leaving callers to their timeouts.
        for (_, pending) in self.outbound.drain() {
            let _ = pending.reply.send(Err(RequestError::Closed));
        }
        drop(self.swarm);
        if let Some(reply) = shutdown_reply {
            let _ = reply.send(());
        }
    }

    // ---- events to the node ----

    /// Queues an event the node must not miss (peer changes, bans).
    fn emit(&mut self, event: Event) {
        if self.pending_events.is_empty() {
            match self.events.try_send(event) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Closed(_)) => return,
                Err(mpsc::error::TrySendError::Full(event)) => self.pending_events.push_back(event),
            }
        } else {
            self.pending_events.push_back(event);
        }
        if self.pending_events.len() > MAX_PENDING_EVENTS {
            self.pending_events.pop_front();
            tracing::warn!("node is not draining network events; dropped the oldest peer event");
        }
    }

    /// Offers a sheddable event (gossip, request); `false` when the node is not keeping up (or
    /// has gone), and the event was dropped.
    fn offer(&mut self, event: Event) -> bool {
        self.pending_events.is_empty() && self.events.try_send(event).is_ok()
    }

    // ---- commands ----

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Publish { topic, data, reply } => {
                let hash = self.topics.hash(topic);
                let len = data.len();
                let result = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(hash, data)
                    .map_err(|e| match e {
                        gossipsub::PublishError::Duplicate => PublishError::Duplicate,
                        gossipsub::PublishError::NoPeersSubscribedToTopic => PublishError::NoPeers,
                        gossipsub::PublishError::MessageTooLarge => PublishError::TooLarge {
                            len,
                            max: self.limits.gossip_payload,
                        },
                        gossipsub::PublishError::AllQueuesFull(_) => PublishError::QueueFull,
                        other => PublishError::Other(other.to_string()),
                    });
                let _ = reply.send(result);
            }
            Command::Request {
                peer,
                request,
                reply,
            } => {
                if self.bans.contains_key(&peer) {
                    let _ = reply.send(Err(RequestError::DialFailure));
                    return;
                }
                let id = self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .send_request(&peer, request.clone());
                self.outbound.insert(
                    id,
                    PendingRequest {
                        peer,
                        request,
                        reply,
                    },
                );
            }
            Command::Respond { id, response } => {
                if let Some(channel) = self.inbound.remove(&id) {
                    // Err: the request timed out or its connection closed meanwhile.
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .sync
                        .send_response(channel, response);
                }
            }
            Command::Validation {
                id,
                source,
                acceptance,
            } => {
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&id, &source, acceptance.into());
                if acceptance == Acceptance::Reject {
                    self.check_score(source);
                }
            }
            Command::Peers(reply) => {
                let _ = reply.send(self.peer_infos());
            }
            Command::ListenAddrs(reply) => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
            Command::Banned(reply) => {
                let _ = reply.send(self.bans.keys().copied().collect());
            }
            Command::AddPeer { addr, reply } => {
                let _ = reply.send(self.add_peer(addr));
            }
            Command::Ban { peer, reason } => self.ban(peer, BanReason::Node(reason)),
            Command::Shutdown(_) => unreachable!("handled in run()"),
        }
    }

    fn add_peer(&mut self, addr: Multiaddr) -> Result<(), P2pError> {
        if let Some(peer) = peer_id_of(&addr) {
            if peer == *self.swarm.local_peer_id() {
                return Err(P2pError::Dial {
                    addr,
                    reason: "that is our own peer id".into(),
                });
            }
            self.swarm
                .behaviour_mut()
                .kad
                .add_address(&peer, addr.clone());
            // A second connection to a connected peer would look like a restart to it.
            let opts = DialOpts::peer_id(peer)
                .addresses(vec![addr.clone()])
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            return self.swarm.dial(opts).map_err(|e| P2pError::Dial {
                addr,
                reason: e.to_string(),
            });
        }
        self.swarm.dial(addr.clone()).map_err(|e| P2pError::Dial {
            addr,
            reason: e.to_string(),
        })
    }

    fn peer_infos(&mut self) -> Vec<PeerInfo> {
        let mut infos: HashMap<PeerId, PeerInfo> = HashMap::new();
        let connected: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        let blank = |peer_id| PeerInfo {
            peer_id,
            connected: false,
            identified: false,
            kad_addresses: Vec::new(),
            topics: Vec::new(),
            score: None,
        };
        for peer in connected {
            let mut info = blank(peer);
            info.connected = true;
            info.identified = self.identified.contains(&peer);
            infos.insert(peer, info);
        }
        for bucket in self.swarm.behaviour_mut().kad.kbuckets() {
            for entry in bucket.iter() {
                let peer = *entry.node.key.preimage();
                infos
                    .entry(peer)
                    .or_insert_with(|| blank(peer))
                    .kad_addresses = entry.node.value.iter().cloned().collect();
            }
        }
        let gossipsub = &self.swarm.behaviour().gossipsub;
        for (peer, topics) in gossipsub.all_peers() {
            if let Some(info) = infos.get_mut(peer) {
                info.topics = topics.iter().filter_map(|h| self.topics.topic(h)).collect();
            }
        }
        for info in infos.values_mut() {
            info.score = gossipsub.peer_score(&info.peer_id);
        }
        infos.into_values().collect()
    }

    // ---- bans ----

    fn ban(&mut self, peer: PeerId, reason: BanReason) {
        if peer == *self.swarm.local_peer_id() {
            return;
        }
        let until = Instant::now() + self.config.ban_duration;
        let newly = self.bans.insert(peer, until).is_none();
        let behaviour = self.swarm.behaviour_mut();
        behaviour.blocked.block_peer(peer);
        behaviour.kad.remove_peer(&peer);
        let _ = self.swarm.disconnect_peer_id(peer);
        if newly {
            tracing::info!(%peer, ?reason, "banned peer");
            self.emit(Event::PeerBanned { peer, reason });
        }
    }

    /// Bans `peer` if its gossipsub score is below the graylist threshold.
    fn check_score(&mut self, peer: PeerId) {
        let threshold = score_thresholds().graylist_threshold;
        if let Some(score) = self.swarm.behaviour().gossipsub.peer_score(&peer) {
            if score < threshold && !self.bans.contains_key(&peer) {
                self.ban(peer, BanReason::LowScore(score));
            }
        }
    }

    fn maintenance(&mut self) {
        let now = Instant::now();
        let expired: Vec<PeerId> = self
            .bans
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(p, _)| *p)
            .collect();
        for peer in expired {
            self.bans.remove(&peer);
            self.swarm.behaviour_mut().blocked.unblock_peer(peer);
            tracing::info!(%peer, "ban expired");
        }
        let connected: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for peer in connected {
            self.check_score(peer);
        }
        self.limiter.prune(now);
    }

    // ---- discovery ----

    fn dial_bootstrap(&mut self) {
        for addr in self.config.bootstrap.clone() {
            let Some(peer) = peer_id_of(&addr) else {
                continue;
            };
            if peer == *self.swarm.local_peer_id() || self.bans.contains_key(&peer) {
                continue;
            }
            self.swarm
                .behaviour_mut()
                .kad
                .add_address(&peer, addr.clone());
            let opts = DialOpts::peer_id(peer)
                .addresses(vec![addr])
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                tracing::debug!(%peer, error = %e, "bootstrap dial failed");
            }
        }
    }

    fn below_target(&self) -> bool {
        self.swarm.connected_peers().count() < self.config.target_peers as usize
    }

    /// Kademlia finds peers but does not keep them connected for gossip: look for more while
    /// below the target, and dial what the routing table already holds.
    fn discover(&mut self) {
        if !self.below_target() {
            return;
        }
        if self.swarm.connected_peers().next().is_none() {
            self.dial_bootstrap();
        }
        let local = *self.swarm.local_peer_id();
        let known: Vec<(PeerId, Vec<Multiaddr>)> = self
            .swarm
            .behaviour_mut()
            .kad
            .kbuckets()
            .flat_map(|b| {
                b.iter()
                    .map(|e| {
                        (
                            *e.node.key.preimage(),
                            e.node.value.iter().cloned().collect(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        // Dials in flight do not count as connected yet: start at most the shortfall per round.
        let shortfall = (self.config.target_peers as usize)
            .saturating_sub(self.swarm.connected_peers().count());
        let candidates = known
            .into_iter()
            .filter(|(peer, _)| !self.swarm.is_connected(peer) && !self.bans.contains_key(peer));
        for (peer, addrs) in candidates.collect::<Vec<_>>().into_iter().take(shortfall) {
            self.dial(peer, addrs);
        }
        if self.swarm.behaviour().kad.mode() == kad::Mode::Server
            || self.swarm.connected_peers().next().is_some()
        {
            self.swarm.behaviour_mut().kad.get_closest_peers(local);
        }
    }

    fn dial(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        if peer == *self.swarm.local_peer_id()
            || self.bans.contains_key(&peer)
            || self.swarm.is_connected(&peer)
            || !self.below_target()
        {
            return;
        }
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            tracing::trace!(%peer, error = %e, "dial not started");
        }
    }

    // ---- swarm events ----

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(e)) => self.on_gossipsub(e),
            SwarmEvent::Behaviour(BehaviourEvent::Sync(e)) => self.on_sync(e),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => self.on_identify(e),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => self.on_kad(e),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(e)) => self.on_ping(e),
            SwarmEvent::Behaviour(BehaviourEvent::Limits(never))
            | SwarmEvent::Behaviour(BehaviourEvent::Blocked(never)) => match never {},
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                ..
            } if num_established.get() == 1
                && self.swarm.connected_peers().count() > self.config.max_peers as usize =>
            {
                tracing::debug!(peer = %peer_id, "over max_peers: disconnecting new peer");
                let _ = self.swarm.disconnect_peer_id(peer_id);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.sessions.remove(&peer_id);
                if self.identified.remove(&peer_id) {
                    self.emit(Event::PeerDisconnected { peer: peer_id });
                }
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
            }
            _ => {}
        }
    }

    fn on_gossipsub(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                let verdict = match self.topics.topic(&message.topic) {
                    None => Some(MessageAcceptance::Ignore),
                    Some(_) if message.data.len() > self.limits.gossip_payload => {
                        Some(MessageAcceptance::Reject)
                    }
                    Some(topic) => {
                        let event = Event::Gossip {
                            topic,
                            data: message.data,
                            id: message_id.clone(),
                            source: propagation_source,
                        };
                        if self.offer(event) {
                            None
                        } else {
                            // Not judged, so not forwarded and not held against the sender.
                            Some(MessageAcceptance::Ignore)
                        }
                    }
                };
                if let Some(verdict) = verdict {
                    let reject = matches!(verdict, MessageAcceptance::Reject);
                    self.swarm
                        .behaviour_mut()
                        .gossipsub
                        .report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            verdict,
                        );
                    if reject {
                        self.check_score(propagation_source);
                    }
                }
            }
            gossipsub::Event::SlowPeer {
                peer_id,
                failed_messages,
            } => {
                tracing::debug!(peer = %peer_id, ?failed_messages, "slow gossip peer");
            }
            _ => {}
        }
    }

    fn on_sync(&mut self, event: request_response::Event<SyncRequest, SyncResponse>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request_id,
                    request,
                    channel,
                } => self.on_request(peer, request_id, request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    let Some(pending) = self.outbound.remove(&request_id) else {
                        return;
                    };
                    let result = if !response.answers(&pending.request) {
                        Err(RequestError::UnexpectedResponse)
                    } else {
                        match &response {
                            SyncResponse::Status(status)
                                if status.genesis_hash != self.config.genesis_hash =>
                            {
                                self.ban(pending.peer, BanReason::GenesisMismatch);
                                Err(RequestError::GenesisMismatch)
                            }
                            _ => Ok(response),
                        }
                    };
                    let _ = pending.reply.send(result);
                }
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(pending) = self.outbound.remove(&request_id) {
                    let error = match error {
                        OutboundFailure::DialFailure => RequestError::DialFailure,
                        OutboundFailure::Timeout => RequestError::Timeout,
                        OutboundFailure::ConnectionClosed => RequestError::ConnectionClosed,
                        OutboundFailure::UnsupportedProtocols => RequestError::UnsupportedProtocols,
                        OutboundFailure::Io(e) => RequestError::Io(e.to_string()),
                    };
                    let _ = pending.reply.send(Err(error));
                }
            }
            request_response::Event::InboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                self.inbound.remove(&request_id);
                tracing::debug!(%peer, %error, "inbound sync request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_request(
        &mut self,
        peer: PeerId,
        id: InboundRequestId,
        request: SyncRequest,
        channel: ResponseChannel<SyncResponse>,
    ) {
        let mut refusal = if !self.limiter.try_take(peer, Instant::now()) {
            Some(Refusal::RateLimited)
        } else {
            request.check(&self.limits).err()
        };
        if refusal.is_none() {
            if self.offer(Event::Request { peer, id, request }) {
                // The node's answer comes back through this loop, so inserting after the send
                // cannot race it.
                self.inbound.insert(id, channel);
                return;
            }
            refusal = Some(Refusal::Busy);
        }
        let refusal = refusal.unwrap_or(Refusal::Busy);
        tracing::debug!(%peer, ?refusal, "refused sync request");
        let _ = self
            .swarm
            .behaviour_mut()
            .sync
            .send_response(channel, SyncResponse::Refused(refusal));
    }

    fn on_identify(&mut self, event: identify::Event) {
        let identify::Event::Received { peer_id, info, .. } = event else {
            return;
        };
        if info.protocol_version != self.identify_version {
            self.ban(
                peer_id,
                BanReason::WrongChain {
                    protocol_version: info.protocol_version,
                },
            );
            return;
        }
        // A restarted peer (same key, new session) reconnected while we still held its old, dead
        // connection (a session is forgotten when a peer's last connection closes, so a changed
        // one means the connections overlapped). gossipsub then treated the new connection as a
        // second one and never sent the peer our subscriptions, so it cannot publish to us
        // (rust-libp2p #5097) even after the old connection dies; the dead connection's handler
        // may also swallow messages from the peer's shared queue. Drop the peer entirely; its
        // next dial (or ours) starts clean.
        let restarted = self
            .sessions
            .insert(peer_id, info.agent_version.clone())
            .is_some_and(|old| old != info.agent_version);
        if restarted {
            tracing::info!(peer = %peer_id, "peer restarted: resetting its connections");
            self.sessions.remove(&peer_id);
            let _ = self.swarm.disconnect_peer_id(peer_id);
            return;
        }
        // Only peers that answer Kademlia queries belong in the routing table; a client-mode
        // peer (a light node) would only make lookups fail.
        if info.protocols.contains(&self.kad_protocol) {
            for addr in info
                .listen_addrs
                .into_iter()
                .filter(dialable)
                .take(MAX_IDENTIFY_ADDRS)
            {
                self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
            }
        }
        if self.identified.insert(peer_id) {
            self.emit(Event::PeerConnected { peer: peer_id });
        }
    }

    fn on_kad(&mut self, event: kad::Event) {
        match event {
            kad::Event::RoutingUpdated {
                peer,
                is_new_peer: true,
                addresses,
                ..
            } => self.dial(peer, addresses.into_vec()),
            kad::Event::OutboundQueryProgressed {
                result: kad::QueryResult::GetClosestPeers(Ok(ok)),
                ..
            } => {
                for found in ok.peers {
                    self.dial(found.peer_id, found.addrs);
                }
            }
            _ => {}
        }
    }

    fn on_ping(&mut self, event: ping::Event) {
        // A ping timeout means the connection is dead (the peer lost power or the path broke
        // without a FIN or RST): close it now, so the node hears `PeerDisconnected` and
        // discovery redials, instead of waiting for the idle timeout.
        if let Err(ping::Failure::Timeout) = event.result {
            tracing::debug!(peer = %event.peer, "ping timeout: closing connection");
            self.swarm.close_connection(event.connection);
        }
    }
}

/// Addresses worth storing for a peer: IP or DNS with a port, never the unspecified address
/// nor a relayed one.
fn dialable(addr: &Multiaddr) -> bool {
    let mut has_host = false;
    let mut has_port = false;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(ip) if !ip.is_unspecified() => has_host = true,
            Protocol::Ip6(ip) if !ip.is_unspecified() => has_host = true,
            Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_) => has_host = true,
            Protocol::Tcp(port) | Protocol::Udp(port) if port != 0 => has_port = true,
            Protocol::P2pCircuit => return false,
            _ => {}
        }
    }
    has_host && has_port
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialable_addresses() {
        let ok = |s: &str| dialable(&s.parse::<Multiaddr>().expect("literal"));
        assert!(ok("/ip4/127.0.0.1/tcp/7070"));
        assert!(ok("/ip4/10.0.0.1/udp/7070/quic-v1"));
        assert!(ok("/dns4/example.org/tcp/7070"));
        assert!(!ok("/ip4/0.0.0.0/tcp/7070"));
        assert!(!ok("/ip4/127.0.0.1/tcp/0"));
        assert!(!ok("/ip4/127.0.0.1"));
        assert!(!ok("/ip4/1.2.3.4/tcp/1/p2p-circuit"));
    }
}
