//! A limit on inbound connection handshakes per second, checked when a connection
//! is accepted — before the Noise handshake, which is the expensive part of a
//! connection and the only way to learn the peer's identity. A banned peer that
//! keeps reconnecting, or anyone opening connections in a loop, can then cost the
//! node at most this many handshakes a second; beyond it connections are dropped
//! unanswered. Established connections are never affected.

use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Instant;

use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::swarm::{
    dummy, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

use super::bucket::TokenBucket;

/// Token bucket over accepted inbound connections (`0` = unlimited).
pub struct HandshakeLimit {
    per_sec: u32,
    bucket: TokenBucket,
}

/// Why an inbound connection was dropped.
#[derive(Debug, thiserror::Error)]
#[error("more than {0} inbound handshakes per second")]
struct TooManyHandshakes(u32);

impl HandshakeLimit {
    /// At most `per_sec` inbound handshakes per second (`0` = unlimited).
    pub fn new(per_sec: u32) -> Self {
        Self {
            per_sec,
            bucket: TokenBucket::new(per_sec, Instant::now()),
        }
    }
}

impl NetworkBehaviour for HandshakeLimit {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        if self.bucket.take(Instant::now()) {
            Ok(())
        } else {
            Err(ConnectionDenied::new(TooManyHandshakes(self.per_sec)))
        }
    }

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, _: FromSwarm) {}

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        e: THandlerOutEvent<Self>,
    ) {
        match e {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}
