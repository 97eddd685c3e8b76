//! Keeps chosen connections open while they are idle.
//!
//! libp2p closes a connection once no handler wants it and it has been idle for
//! the idle timeout; to time that, it arms a new timer every time the connection
//! falls idle, which is after every request. Those timers live on one global
//! timer thread, so each arming wakes that thread: on the write path that was
//! about ten thread wake-ups per transaction. A connection this behaviour keeps
//! never falls idle, so it arms none. Kept: connections to consensus members
//! (a block's cluster is its closest *connected* peers, so these must not close
//! for idleness anyway) and, in client mode, every connection (a client talks to
//! a few nodes and wants its connections warm).

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::upgrade::DeniedUpgrade;
use libp2p::core::Endpoint;
use libp2p::swarm::handler::ConnectionEvent;
use libp2p::swarm::{
    ConnectionDenied, ConnectionHandlerEvent, ConnectionId, FromSwarm, NetworkBehaviour,
    SubstreamProtocol, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};
use parking_lot::RwLock;

/// The peers whose connections stay open, shared with their connections' handlers.
#[derive(Debug, Default)]
pub(crate) struct KeepSet {
    all: bool,
    peers: RwLock<HashSet<PeerId>>,
}

impl KeepSet {
    fn keeps(&self, peer: &PeerId) -> bool {
        self.all || self.peers.read().contains(peer)
    }
}

/// The behaviour: hands every connection a handler that asks to keep it open
/// while its peer is in the set.
pub struct KeepAlive {
    set: Arc<KeepSet>,
}

impl KeepAlive {
    /// Keeps connections to the peers added with [`Self::keep`], or every
    /// connection when `all`.
    pub fn new(all: bool) -> Self {
        Self {
            set: Arc::new(KeepSet {
                all,
                peers: RwLock::default(),
            }),
        }
    }

    /// Keeps connections to `peer` open from now on.
    pub fn keep(&self, peer: PeerId) {
        self.set.peers.write().insert(peer);
    }

    /// Lets connections to `peer` close when idle again (noticed the next time
    /// the connection is polled, at the latest at its next ping).
    pub fn release(&self, peer: &PeerId) {
        self.set.peers.write().remove(peer);
    }

    fn handler(&self, peer: PeerId) -> Handler {
        Handler {
            peer,
            set: self.set.clone(),
        }
    }
}

impl NetworkBehaviour for KeepAlive {
    type ConnectionHandler = Handler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer))
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer))
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        ev: THandlerOutEvent<Self>,
    ) {
        match ev {}
    }

    fn on_swarm_event(&mut self, _: FromSwarm) {}

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

/// One connection's handler: speaks no protocol, only answers "keep me?".
pub struct Handler {
    peer: PeerId,
    set: Arc<KeepSet>,
}

impl libp2p::swarm::ConnectionHandler for Handler {
    type FromBehaviour = Infallible;
    type ToBehaviour = Infallible;
    type InboundProtocol = DeniedUpgrade;
    type OutboundProtocol = DeniedUpgrade;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol> {
        SubstreamProtocol::new(DeniedUpgrade, ())
    }

    fn connection_keep_alive(&self) -> bool {
        self.set.keeps(&self.peer)
    }

    fn poll(
        &mut self,
        _: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, (), Self::ToBehaviour>> {
        Poll::Pending
    }

    fn on_behaviour_event(&mut self, ev: Self::FromBehaviour) {
        match ev {}
    }

    fn on_connection_event(
        &mut self,
        _: ConnectionEvent<Self::InboundProtocol, Self::OutboundProtocol>,
    ) {
    }
}
