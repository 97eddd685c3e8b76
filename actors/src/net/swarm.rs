//! SwarmActor: owns the libp2p Swarm and translates between it and actor messages.
//! It decides nothing about storage or consensus: inbound frames go to the
//! service's recipient, replies come back as [`Respond`], outbound requests are
//! answered through a oneshot when their response or failure event arrives.
//!
//! The swarm is polled by a small [`ActorFuture`] spawned in `started`, which
//! handles at most [`EVENTS_PER_WAKE`] events per wake-up with full access to the
//! actor (no locks, no extra task).

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix::WeakRecipient;
use futures::StreamExt;
use libp2p::request_response::{self, InboundRequestId, OutboundRequestId, ResponseChannel};
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{identify, kad, Multiaddr, PeerId, Swarm};
use tokio::sync::{mpsc, oneshot};

use super::behaviour::{NetConfig, NodeBehaviour, NodeBehaviourEvent, Proto};
use super::dial::DialFailures;
use super::frame::Frame;
use super::wire::{codes, encode, ErrorReply};
use super::{NetError, NetEvent, NetMetrics};
use crate::metrics::{ActorMetrics, HandlerTimer};

/// Swarm events handled per wake-up before yielding to the mailbox.
const EVENTS_PER_WAKE: usize = 64;
/// Mailbox capacity of the SwarmActor.
pub(crate) const SWARM_MAILBOX: usize = 1024;
/// Window over which rate-limit refusals are counted towards a flood ban.
const FLOOD_WINDOW: Duration = Duration::from_millis(250);

/// An inbound request handed to the service.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Inbound {
    /// Key to answer with.
    pub key: InboundKey,
    /// The requesting peer (authenticated by Noise).
    pub peer: PeerId,
    /// Which protocol it came on.
    pub proto: Proto,
    /// The frame's bytes.
    pub bytes: Vec<u8>,
    /// Where to send the [`Respond`].
    pub reply_to: WeakRecipient<Respond>,
}

/// Identifies an inbound request until it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InboundKey(Proto, InboundRequestId);

/// The answer to an [`Inbound`].
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Respond {
    /// Which request.
    pub key: InboundKey,
    /// The reply frame.
    pub bytes: Vec<u8>,
}

/// Send a request to `peer` on `proto`; resolves with the reply bytes.
#[derive(Debug, Message)]
#[rtype(result = "oneshot::Receiver<Result<Vec<u8>, NetError>>")]
pub struct Request {
    /// Target.
    pub peer: PeerId,
    /// Addresses to dial if not connected.
    pub addrs: Vec<Multiaddr>,
    /// Protocol.
    pub proto: Proto,
    /// Encoded request.
    pub bytes: Vec<u8>,
}

/// Start listening on an address.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), NetError>")]
pub struct Listen(pub Multiaddr);

/// Dial a peer (bootstrap) and add it to the DHT.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), NetError>")]
pub struct Dial(pub Multiaddr);

/// Snapshot of the network state.
#[derive(Debug, Message)]
#[rtype(result = "NetStatus")]
pub struct Status;

/// What [`Status`] returns.
#[derive(Debug, Clone)]
pub struct NetStatus {
    /// This node.
    pub peer_id: PeerId,
    /// Addresses listened on.
    pub listen_addrs: Vec<Multiaddr>,
    /// Peers with an open connection.
    pub connected: Vec<PeerId>,
    /// Connected peers that serve the block-transfer protocol (from identify).
    pub block_servers: Vec<PeerId>,
    /// Connected peers that take part in consensus: key and listen addresses.
    pub members: Vec<PeerInfo>,
    /// Inbound requests being served.
    pub inbound_in_flight: usize,
}

/// What identify told us of a peer.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The peer.
    pub peer_id: PeerId,
    /// Its public key.
    pub public_key: libp2p::identity::PublicKey,
    /// Addresses it listens on.
    pub addrs: Vec<Multiaddr>,
}

/// Stop accepting connections, then resolve once every inbound request has been
/// answered (or `grace` has passed).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Drain {
    /// How long to wait for in-flight requests.
    pub grace: Duration,
}

/// Where an outbound request's reply (or failure) goes.
type ReplySender = oneshot::Sender<Result<Vec<u8>, NetError>>;

struct InFlight {
    peer: PeerId,
    channel: ResponseChannel<Frame>,
}

/// Owner of the Swarm.
pub struct SwarmActor {
    swarm: Swarm<NodeBehaviour>,
    cfg: NetConfig,
    service: Option<Recipient<Inbound>>,
    events: Option<mpsc::Sender<NetEvent>>,
    metrics: Arc<NetMetrics>,
    actor_metrics: Arc<ActorMetrics>,
    libp2p_metrics: Option<libp2p::metrics::Metrics>,
    outbound: HashMap<(Proto, OutboundRequestId), ReplySender>,
    inbound: HashMap<InboundKey, InFlight>,
    /// Answered, waiting for libp2p to confirm the response left.
    sending: HashSet<InboundKey>,
    listeners: Vec<libp2p::core::transport::ListenerId>,
    per_peer: HashMap<PeerId, usize>,
    /// Request budget per peer: tokens left and when they were last topped up.
    budgets: HashMap<PeerId, (f64, Instant)>,
    /// Refusals per peer in the current one-second window (flood detection).
    refusals: HashMap<PeerId, (u32, Instant)>,
    /// Peers blocked for flooding, and until when.
    banned: HashMap<PeerId, Instant>,
    /// Peers cut off by a test fault rule (`cut`; debug builds only), blocked
    /// like banned peers until the rule goes.
    cut: HashSet<PeerId>,
    listen_addrs: Vec<Multiaddr>,
    block_servers: HashSet<PeerId>,
    members: HashMap<PeerId, PeerInfo>,
    /// Members whose last connection closed, and when: they stay in every
    /// cluster they belong to for `member_grace`, so a write needs their vote (and
    /// fails rather than succeeding on fewer replicas) while they may come back.
    departed: HashMap<PeerId, (PeerInfo, Instant)>,
    /// Members that came back after departing (part of the view's fingerprint).
    returns: u64,
    known: HashSet<PeerId>,
    drain_waiters: Vec<oneshot::Sender<()>>,
    self_recipient: Option<WeakRecipient<Respond>>,
    /// Why the last dial of each peer failed (for requests that fail to dial).
    dial_failures: DialFailures,
    /// Dials an operator asked for (bootstrap, `Dial`): their outcome is logged.
    asked_dials: HashMap<ConnectionId, Multiaddr>,
}

impl SwarmActor {
    /// Wraps a built swarm. `service` receives inbound requests (None for clients);
    /// `events` receives listen addresses and connection changes.
    pub fn new(
        swarm: Swarm<NodeBehaviour>,
        cfg: NetConfig,
        service: Option<Recipient<Inbound>>,
        events: Option<mpsc::Sender<NetEvent>>,
        metrics: Arc<NetMetrics>,
    ) -> Self {
        let actor_metrics = metrics.swarm_actor.clone();
        Self {
            swarm,
            cfg,
            service,
            events,
            metrics,
            actor_metrics,
            libp2p_metrics: None,
            outbound: HashMap::new(),
            inbound: HashMap::new(),
            sending: HashSet::new(),
            listeners: Vec::new(),
            per_peer: HashMap::new(),
            budgets: HashMap::new(),
            refusals: HashMap::new(),
            banned: HashMap::new(),
            cut: HashSet::new(),
            listen_addrs: Vec::new(),
            block_servers: HashSet::new(),
            members: HashMap::new(),
            departed: HashMap::new(),
            returns: 0,
            known: HashSet::new(),
            drain_waiters: Vec::new(),
            self_recipient: None,
            dial_failures: DialFailures::default(),
            asked_dials: HashMap::new(),
        }
    }

    /// Records libp2p's own metrics (connections, identify, Kademlia, ping) into
    /// the registry they were created with.
    pub fn with_libp2p_metrics(mut self, m: libp2p::metrics::Metrics) -> Self {
        self.libp2p_metrics = Some(m);
        self
    }

    fn record(&self, ev: &SwarmEvent<NodeBehaviourEvent>) {
        use libp2p::metrics::Recorder;
        let Some(m) = &self.libp2p_metrics else {
            return;
        };
        m.record(ev);
        match ev {
            SwarmEvent::Behaviour(NodeBehaviourEvent::Identify(e)) => m.record(e),
            SwarmEvent::Behaviour(NodeBehaviourEvent::Kad(e)) => m.record(e),
            SwarmEvent::Behaviour(NodeBehaviourEvent::Ping(e)) => m.record(e),
            _ => {}
        }
    }

    fn timer(&self) -> HandlerTimer {
        self.actor_metrics.start()
    }

    fn emit(&self, ev: NetEvent) {
        if let Some(tx) = &self.events {
            // Informational: dropped if nobody keeps up (bounded channel).
            let _ = tx.try_send(ev);
        }
    }

    /// Shares the member set with readers outside the actor.
    fn publish_view(&self) {
        use std::hash::{Hash, Hasher};
        let mut ids: Vec<(&PeerId, bool)> = self
            .members
            .keys()
            .map(|p| (p, true))
            .chain(self.departed.keys().map(|p| (p, false)))
            .collect();
        ids.sort();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        ids.hash(&mut h);
        self.returns.hash(&mut h);
        self.metrics.publish_view(super::MemberView {
            members: self
                .members
                .values()
                .chain(self.departed.values().map(|(info, _)| info))
                .cloned()
                .collect(),
            departed: self.departed.keys().copied().collect(),
            listen_addrs: self.listen_addrs.clone(),
            fingerprint: h.finish(),
        });
    }

    fn on_event(&mut self, ev: SwarmEvent<NodeBehaviourEvent>) {
        self.record(&ev);
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                let full = address
                    .clone()
                    .with_p2p(*self.swarm.local_peer_id())
                    .unwrap_or_else(|a| a);
                self.listen_addrs.push(address);
                self.publish_view();
                self.emit(NetEvent::Listening(full));
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                if num_established.get() == 1 {
                    self.metrics.count_connected(1);
                }
                self.dial_failures.connected(&peer_id);
                if let Some(addr) = self.asked_dials.remove(&connection_id) {
                    tracing::info!(%addr, peer = %peer_id, "connected");
                }
                self.emit(NetEvent::Connected(peer_id))
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                let why = self.dial_failures.record(peer_id, &error);
                match self.asked_dials.remove(&connection_id) {
                    Some(addr) => tracing::info!(%addr, error = %why, "dial failed"),
                    None => tracing::debug!(peer = ?peer_id, error = %why, "dial failed"),
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.metrics.count_connected(-1);
                self.block_servers.remove(&peer_id);
                self.budgets.remove(&peer_id);
                self.refusals.remove(&peer_id);
                self.swarm.behaviour().keep.release(&peer_id);
                if let Some(info) = self.members.remove(&peer_id) {
                    tracing::info!(peer = %peer_id, "peer left (its last connection closed)");
                    self.departed.insert(peer_id, (info, Instant::now()));
                    self.publish_view();
                }
                self.emit(NetEvent::Disconnected(peer_id))
            }
            SwarmEvent::Behaviour(NodeBehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                if info.protocols.contains(&self.cfg.protocols.block) {
                    self.block_servers.insert(peer_id);
                }
                if info.protocols.contains(&self.cfg.protocols.cluster_mp)
                    || info.protocols.contains(&self.cfg.protocols.cluster_json)
                {
                    let addrs = info.listen_addrs.clone();
                    if self.departed.remove(&peer_id).is_some() {
                        self.returns += 1;
                    }
                    self.swarm.behaviour().keep.keep(peer_id);
                    let joined = self
                        .members
                        .insert(
                            peer_id,
                            PeerInfo {
                                peer_id,
                                public_key: info.public_key.clone(),
                                addrs,
                            },
                        )
                        .is_none();
                    if joined {
                        tracing::info!(peer = %peer_id, addrs = ?info.listen_addrs, "peer joined");
                    }
                    self.publish_view();
                }
                let is_new = self.known.insert(peer_id);
                for addr in info.listen_addrs {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
                // A newly met peer may know others: look ourselves up to meet them.
                if is_new && !self.cfg.client_only {
                    let _ = self.swarm.behaviour_mut().kad.bootstrap();
                }
            }
            SwarmEvent::Behaviour(NodeBehaviourEvent::Kad(kad::Event::RoutingUpdated {
                peer,
                ..
            })) if !self.cfg.client_only && !self.swarm.is_connected(&peer) => {
                let _ = self.swarm.dial(peer);
            }
            SwarmEvent::Behaviour(NodeBehaviourEvent::RepoJson(e)) => {
                self.on_rr(Proto::RepoJson, e)
            }
            SwarmEvent::Behaviour(NodeBehaviourEvent::RepoMp(e)) => self.on_rr(Proto::RepoMp, e),
            SwarmEvent::Behaviour(NodeBehaviourEvent::Block(e)) => self.on_rr(Proto::Block, e),
            SwarmEvent::Behaviour(NodeBehaviourEvent::ClusterJson(e)) => {
                self.on_rr(Proto::ClusterJson, e)
            }
            SwarmEvent::Behaviour(NodeBehaviourEvent::ClusterMp(e)) => {
                self.on_rr(Proto::ClusterMp, e)
            }
            _ => {}
        }
    }

    fn on_rr(&mut self, proto: Proto, ev: request_response::Event<Frame, Frame>) {
        use request_response::{Event, Message};
        match ev {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request_id,
                        request,
                        channel,
                    },
                ..
            } => {
                self.on_request(InboundKey(proto, request_id), peer, request, channel);
            }
            Event::Message {
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(tx) = self.outbound.remove(&(proto, request_id)) {
                    let r = match response {
                        Frame::Data(bytes) => Ok(bytes),
                        other => Err(NetError::BadFrame(format!("{other:?}"))),
                    };
                    let _ = tx.send(r);
                }
            }
            Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some(tx) = self.outbound.remove(&(proto, request_id)) {
                    let e = match error {
                        request_response::OutboundFailure::DialFailure => {
                            NetError::Dial(self.dial_failures.explain(&peer))
                        }
                        other => NetError::from_outbound(other),
                    };
                    let _ = tx.send(Err(e));
                }
            }
            Event::InboundFailure {
                request_id, error, ..
            } => {
                self.metrics
                    .count_rejected(&format!("inbound_{}", inbound_reason(&error)));
                let key = InboundKey(proto, request_id);
                self.finish(key);
                self.sending.remove(&key);
                self.check_drained();
            }
            Event::ResponseSent { request_id, .. } => {
                self.sending.remove(&InboundKey(proto, request_id));
                self.check_drained();
            }
        }
    }

    /// Takes one request from `peer`'s budget (refilled at the configured rate, at
    /// most one second's worth); false when it is spent.
    fn spend(&mut self, peer: PeerId) -> bool {
        let rate = f64::from(self.cfg.max_requests_per_peer_per_sec);
        if rate <= 0.0 {
            return true;
        }
        let now = Instant::now();
        let (tokens, at) = self.budgets.entry(peer).or_insert((rate, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(rate);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Counts a rate-limit refusal; a peer refused more than a quarter of its
    /// per-second limit (and at least 8 times) within a quarter of a second — as
    /// fast as its allowance again, on top of it — is disconnected and blocked for
    /// `flood_ban`. The short window bans a flood within tens of milliseconds.
    fn refused(&mut self, peer: PeerId) {
        let now = Instant::now();
        let (n, since) = self.refusals.entry(peer).or_insert((0, now));
        if now.duration_since(*since) > FLOOD_WINDOW {
            *n = 0;
            *since = now;
        }
        *n += 1;
        if *n > (self.cfg.max_requests_per_peer_per_sec / 4).max(8) {
            self.refusals.remove(&peer);
            self.banned.insert(peer, now + self.cfg.flood_ban);
            self.metrics.count_rejected("banned");
            tracing::warn!(%peer, ban = ?self.cfg.flood_ban, "peer flooding requests: disconnected and blocked");
            self.swarm.behaviour_mut().blocked.block_peer(peer);
        }
    }

    /// Drops members gone for longer than `member_grace` from the view.
    fn forget_departed(&mut self) {
        let grace = self.cfg.member_grace;
        let before = self.departed.len();
        self.departed
            .retain(|_, (_, since)| since.elapsed() < grace);
        if self.departed.len() != before {
            self.publish_view();
        }
    }

    /// Lifts the bans that have run out.
    fn unban_expired(&mut self) {
        let now = Instant::now();
        let done: Vec<PeerId> = self
            .banned
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(p, _)| *p)
            .collect();
        for p in done {
            self.banned.remove(&p);
            if !self.cut.contains(&p) {
                self.swarm.behaviour_mut().blocked.unblock_peer(p);
            }
        }
    }

    /// Follows the test fault rules' `cut` lines (`crate::faults`): blocks the
    /// peers newly cut (which closes their connections and refuses new ones) and
    /// unblocks those no longer cut, unless banned.
    fn apply_cuts(&mut self) {
        let now = crate::faults::cut();
        if now == self.cut {
            return;
        }
        for p in now.difference(&self.cut) {
            self.swarm.behaviour_mut().blocked.block_peer(*p);
        }
        for p in self.cut.difference(&now) {
            if !self.banned.contains_key(p) {
                self.swarm.behaviour_mut().blocked.unblock_peer(*p);
            }
        }
        self.cut = now;
        println!("fault: cut {} peers", self.cut.len());
    }

    fn on_request(
        &mut self,
        key: InboundKey,
        peer: PeerId,
        request: Frame,
        channel: ResponseChannel<Frame>,
    ) {
        let (code, detail) = match request {
            Frame::Data(bytes) => {
                if !self.spend(peer) {
                    self.metrics.count_rejected(codes::RATE_LIMITED);
                    self.refused(peer);
                    let rate = self.cfg.max_requests_per_peer_per_sec;
                    return self.reply_error(
                        key.0,
                        channel,
                        codes::RATE_LIMITED,
                        format!("more than {rate} requests/s from this peer; retry later"),
                    );
                }
                let peer_load = self.per_peer.get(&peer).copied().unwrap_or(0);
                let (Some(service), Some(reply_to)) = (&self.service, &self.self_recipient) else {
                    return self.reply_error(
                        key.0,
                        channel,
                        codes::UNAVAILABLE,
                        "this peer serves no requests",
                    );
                };
                if self.inbound.len() >= self.cfg.max_inbound_total
                    || peer_load >= self.cfg.max_inbound_per_peer
                {
                    self.metrics.count_rejected(codes::BUSY);
                    return self.reply_error(
                        key.0,
                        channel,
                        codes::BUSY,
                        "too many requests in flight; retry later",
                    );
                }
                let msg = Inbound {
                    key,
                    peer,
                    proto: key.0,
                    bytes,
                    reply_to: reply_to.clone(),
                };
                self.metrics.repo_service.enqueued();
                if service.try_send(msg).is_err() {
                    self.metrics.repo_service.dropped();
                    self.metrics.count_rejected(codes::BUSY);
                    return self.reply_error(
                        key.0,
                        channel,
                        codes::BUSY,
                        "service queue full; retry later",
                    );
                }
                *self.per_peer.entry(peer).or_default() += 1;
                self.inbound.insert(key, InFlight { peer, channel });
                return;
            }
            Frame::TooLarge { declared, max } => (
                codes::FRAME_TOO_LARGE,
                format!("frame declares {declared} bytes; the limit is {max}"),
            ),
            Frame::Truncated => (
                codes::TRUNCATED_FRAME,
                "stream ended inside the frame".to_string(),
            ),
            Frame::BadLength => (
                codes::BAD_FRAME,
                "length prefix is not an unsigned varint".to_string(),
            ),
        };
        self.metrics.count_rejected(code);
        self.reply_error(key.0, channel, code, detail);
    }

    fn reply_error(
        &mut self,
        proto: Proto,
        channel: ResponseChannel<Frame>,
        code: &str,
        message: impl Into<String>,
    ) {
        let bytes = encode(proto.encoding(), &ErrorReply::new(code, message)).unwrap_or_default();
        // Fails only if the stream is already gone.
        let _ = self
            .swarm
            .behaviour_mut()
            .rr(proto)
            .send_response(channel, Frame::Data(bytes));
    }

    /// Forgets an inbound request (answered or failed).
    fn finish(&mut self, key: InboundKey) -> Option<InFlight> {
        let f = self.inbound.remove(&key)?;
        if let Some(n) = self.per_peer.get_mut(&f.peer) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&f.peer);
            }
        }
        Some(f)
    }

    fn check_drained(&mut self) {
        if self.inbound.is_empty() && self.sending.is_empty() {
            for w in self.drain_waiters.drain(..) {
                let _ = w.send(());
            }
        }
    }
}

fn inbound_reason(e: &request_response::InboundFailure) -> &'static str {
    use request_response::InboundFailure as F;
    match e {
        F::Timeout => "timeout",
        F::ConnectionClosed => "connection_closed",
        F::UnsupportedProtocols => "unsupported_protocols",
        F::ResponseOmission => "response_omission",
        F::Io(_) => "io",
    }
}

/// Polls the swarm from inside the actor's context.
struct SwarmPoller;

impl ActorFuture<SwarmActor> for SwarmPoller {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut SwarmActor,
        _: &mut Context<SwarmActor>,
        task: &mut std::task::Context<'_>,
    ) -> Poll<()> {
        for _ in 0..EVENTS_PER_WAKE {
            match act.swarm.poll_next_unpin(task) {
                Poll::Ready(Some(ev)) => act.on_event(ev),
                Poll::Ready(None) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
        task.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Actor for SwarmActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(SWARM_MAILBOX);
        self.self_recipient = Some(ctx.address().downgrade().recipient());
        ctx.spawn(SwarmPoller);
        ctx.run_interval(Duration::from_secs(1), |act, _| {
            act.unban_expired();
            act.apply_cuts();
            act.forget_departed();
        });
        // Cluster membership is "the K closest connected peers": a connection to a
        // member must not close for being idle (the block's cluster would change
        // under it). The keep-alive behaviour keeps members' connections open;
        // other connections (clients) still close when idle.
    }
}

impl Handler<Request> for SwarmActor {
    type Result = MessageResult<Request>;

    fn handle(&mut self, msg: Request, _: &mut Context<Self>) -> Self::Result {
        let _t = self.timer();
        let (tx, rx) = oneshot::channel();
        for a in msg.addrs {
            self.swarm.add_peer_address(msg.peer, a);
        }
        let id = self
            .swarm
            .behaviour_mut()
            .rr(msg.proto)
            .send_request(&msg.peer, Frame::Data(msg.bytes));
        self.outbound.insert((msg.proto, id), tx);
        MessageResult(rx)
    }
}

impl Handler<Respond> for SwarmActor {
    type Result = ();

    fn handle(&mut self, msg: Respond, _: &mut Context<Self>) {
        let _t = self.timer();
        if let Some(f) = self.finish(msg.key) {
            let sent = self
                .swarm
                .behaviour_mut()
                .rr(msg.key.0)
                .send_response(f.channel, Frame::Data(msg.bytes));
            if sent.is_ok() {
                self.sending.insert(msg.key);
            }
        }
        self.check_drained();
    }
}

impl Handler<Listen> for SwarmActor {
    type Result = Result<(), NetError>;

    fn handle(&mut self, msg: Listen, _: &mut Context<Self>) -> Self::Result {
        let _t = self.timer();
        super::listen::check_free(&msg.0)?;
        let id = self
            .swarm
            .listen_on(msg.0.clone())
            .map_err(|e| NetError::Setup(format!("cannot listen on {}: {e}", msg.0)))?;
        self.listeners.push(id);
        Ok(())
    }
}

impl Handler<Dial> for SwarmActor {
    type Result = Result<(), NetError>;

    fn handle(&mut self, msg: Dial, _: &mut Context<Self>) -> Self::Result {
        let _t = self.timer();
        if let Some(peer) = super::peer_of(&msg.0) {
            self.swarm
                .behaviour_mut()
                .kad
                .add_address(&peer, msg.0.clone());
        }
        let opts = libp2p::swarm::dial_opts::DialOpts::from(msg.0.clone());
        let id = opts.connection_id();
        self.swarm
            .dial(opts)
            .map_err(|e| NetError::Dial(format!("{}: {e}", msg.0)))?;
        self.asked_dials.insert(id, msg.0);
        Ok(())
    }
}

impl Handler<Status> for SwarmActor {
    type Result = MessageResult<Status>;

    fn handle(&mut self, _: Status, _: &mut Context<Self>) -> Self::Result {
        let _t = self.timer();
        MessageResult(NetStatus {
            peer_id: *self.swarm.local_peer_id(),
            listen_addrs: self.listen_addrs.clone(),
            connected: self.swarm.connected_peers().copied().collect(),
            block_servers: self.block_servers.iter().copied().collect(),
            members: self.members.values().cloned().collect(),
            inbound_in_flight: self.inbound.len(),
        })
    }
}

impl Handler<Drain> for SwarmActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: Drain, _: &mut Context<Self>) -> Self::Result {
        let _t = self.timer();
        // No new connections, no new work; answer what is in flight.
        for id in self.listeners.drain(..) {
            self.swarm.remove_listener(id);
        }
        self.service = None;
        let (tx, rx) = oneshot::channel();
        self.drain_waiters.push(tx);
        self.check_drained();
        Box::pin(async move {
            let _ = tokio::time::timeout(msg.grace, rx).await;
        })
    }
}
