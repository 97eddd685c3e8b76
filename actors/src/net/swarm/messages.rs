//! The SwarmActor's messages — requests handed to the service and their answers,
//! outbound requests, listening, dialing, status and drain — and their handlers.

use std::time::Duration;

use actix::prelude::*;
use actix::WeakRecipient;
use libp2p::request_response::{InboundRequestId, ResponseChannel};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::oneshot;

use super::SwarmActor;
use crate::model::{NetError, PeerInfo};
use crate::net::behaviour::Proto;
use crate::net::frame::Frame;

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
pub struct InboundKey(pub(super) Proto, pub(super) InboundRequestId);

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

/// Stop accepting connections, then resolve once every inbound request has been
/// answered (or `grace` has passed).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Drain {
    /// How long to wait for in-flight requests.
    pub grace: Duration,
}

/// Where an outbound request's reply (or failure) goes.
pub(super) type ReplySender = oneshot::Sender<Result<Vec<u8>, NetError>>;

pub(super) struct InFlight {
    pub(super) peer: PeerId,
    pub(super) channel: ResponseChannel<Frame>,
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
        crate::net::listen::check_free(&msg.0)?;
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
        if let Some(peer) = crate::net::peer_of(&msg.0) {
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
