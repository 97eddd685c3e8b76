//! Admission of each inbound request: the peer's token bucket, flood bans,
//! the test-only cuts, and the load limits, before it reaches the service.

use std::time::Instant;

use libp2p::request_response::ResponseChannel;
use libp2p::PeerId;

use super::{InFlight, Inbound, InboundKey, SwarmActor, FLOOD_WINDOW};
use crate::net::behaviour::Proto;
use crate::net::bucket::TokenBucket;
use crate::net::frame::Frame;
use crate::net::wire::{codes, encode, ErrorReply};

impl SwarmActor {
    /// Takes one request from `peer`'s budget (refilled at the configured rate, at
    /// most one second's worth); false when it is spent.
    pub(super) fn spend(&mut self, peer: PeerId) -> bool {
        let rate = self.cfg.max_requests_per_peer_per_sec;
        if rate == 0 {
            return true;
        }
        let now = Instant::now();
        self.budgets
            .entry(peer)
            .or_insert_with(|| TokenBucket::new(rate, now))
            .take(now)
    }

    /// Counts a rate-limit refusal; a peer refused more than a quarter of its
    /// per-second limit (and at least 8 times) within a quarter of a second — as
    /// fast as its allowance again, on top of it — is disconnected and blocked for
    /// `flood_ban`. The short window bans a flood within tens of milliseconds.
    pub(super) fn refused(&mut self, peer: PeerId) {
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
    pub(super) fn forget_departed(&mut self) {
        let grace = self.cfg.member_grace;
        let before = self.departed.len();
        self.departed
            .retain(|_, (_, since)| since.elapsed() < grace);
        if self.departed.len() != before {
            self.publish_view();
        }
    }

    /// Lifts the bans that have run out.
    pub(super) fn unban_expired(&mut self) {
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
    pub(super) fn apply_cuts(&mut self) {
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

    pub(super) fn on_request(
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

    pub(super) fn reply_error(
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
}
