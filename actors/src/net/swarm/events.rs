//! Swarm events translated: connections, identify, the DHT and the
//! request-response protocols; inbound requests go to admission, replies to
//! the waiting oneshot.

use std::time::Instant;

use libp2p::request_response;
use libp2p::swarm::SwarmEvent;
use libp2p::{identify, kad};

use super::{InboundKey, SwarmActor};
use crate::model::PeerInfo;
use crate::net::behaviour::{NodeBehaviourEvent, Proto};
use crate::net::frame::Frame;
use crate::net::{NetError, NetEvent};

impl SwarmActor {
    pub(super) fn record(&self, ev: &SwarmEvent<NodeBehaviourEvent>) {
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

    pub(super) fn on_event(&mut self, ev: SwarmEvent<NodeBehaviourEvent>) {
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

    pub(super) fn on_rr(&mut self, proto: Proto, ev: request_response::Event<Frame, Frame>) {
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
