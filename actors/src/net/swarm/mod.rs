//! SwarmActor: owns the libp2p Swarm and translates between it and actor messages.
//! It decides nothing about storage or consensus: inbound frames go to the
//! service's recipient, replies come back as [`Respond`], outbound requests are
//! answered through a oneshot when their response or failure event arrives.
//!
//! The swarm is polled by a small [`ActorFuture`] spawned in `started`, which
//! handles at most [`EVENTS_PER_WAKE`] events per wake-up with full access to the
//! actor (no locks, no extra task).
//!
//! - [`messages`]: the actor's messages and their handlers;
//! - [`events`]: swarm and request-response events translated;
//! - [`admission`]: each inbound request's budget, flood bans and test cuts.

mod admission;
mod events;
mod messages;

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix::WeakRecipient;
use futures::StreamExt;
use libp2p::request_response::OutboundRequestId;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId, Swarm};
use tokio::sync::{mpsc, oneshot};

use super::behaviour::{NetConfig, NodeBehaviour, Proto};
use super::bucket::TokenBucket;
use super::dial::DialFailures;
use super::{NetEvent, NetMetrics};
use crate::metrics::{ActorMetrics, HandlerTimer};
use crate::model::PeerInfo;

/// Swarm events handled per wake-up before yielding to the mailbox.
const EVENTS_PER_WAKE: usize = 64;
/// Mailbox capacity of the SwarmActor.
pub(crate) const SWARM_MAILBOX: usize = 1024;
/// Window over which rate-limit refusals are counted towards a flood ban.
const FLOOD_WINDOW: Duration = Duration::from_millis(250);

pub use messages::{Dial, Drain, Inbound, InboundKey, Listen, NetStatus, Request, Respond, Status};
use messages::{InFlight, ReplySender};

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
    /// Request budget per peer.
    budgets: HashMap<PeerId, TokenBucket>,
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
