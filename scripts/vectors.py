#!/usr/bin/env python3
"""Known-answer vectors for placement, messageHash, canonical JSON and the
signed vote payloads, computed from docs/CONSENSUS.md and docs/PROTOCOL.md
alone -- none of the project's code is used. Python's standard library
(hashlib, json, base64) and the `cryptography` package (Ed25519) only.

    python3 scripts/vectors.py > tests/vectors/known-answers.json

tests/known_answers.rs checks the Rust code against the file; the documents
quote its values, so another implementation can check itself too.
"""
import base64
import hashlib
import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = B58[r] + out
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + out


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def canonical(v) -> str:
    """Keys sorted (code point order = UTF-8 byte order), no whitespace."""
    return json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def D(v) -> str:
    return b64url(hashlib.sha256(canonical(v).encode()).digest())


class Peer:
    """An Ed25519 identity from a 32-byte seed, as libp2p encodes it."""

    def __init__(self, seed: bytes):
        self.seed = seed
        self.key = Ed25519PrivateKey.from_private_bytes(seed)
        raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        # libp2p PublicKey protobuf: field 1 (KeyType) = 1 (Ed25519), field 2 = key.
        self.protobuf = bytes([0x08, 0x01, 0x12, 0x20]) + raw
        # PeerId: identity multihash (code 0x00) of the protobuf, base58btc.
        self.id_bytes = bytes([0x00, len(self.protobuf)]) + self.protobuf
        self.id = b58(self.id_bytes)
        self.public_key = b64url(self.protobuf)

    def sign(self, payload: str) -> str:
        return b64url(self.key.sign(payload.encode()))


def region(block_id: str) -> int:
    """The first 12 bits of sha256(utf8(blockId))."""
    h = hashlib.sha256(block_id.encode()).digest()
    return (h[0] << 4) | (h[1] >> 4)


def midpoint(r: int) -> bytes:
    """The region's 12 bits, then a 1 bit, then zeros (32 bytes)."""
    return bytes([r >> 4, ((r & 0xF) << 4) | 0x08]) + bytes(30)


def target(r: int, peers, k: int):
    """The k peers closest by XOR of sha256(PeerId bytes) and the midpoint."""
    point = midpoint(r)

    def dist(p):
        key = hashlib.sha256(p.id_bytes).digest()
        return bytes(a ^ b for a, b in zip(key, point))

    return [p.id for p in sorted(peers, key=dist)[:k]]


def main():
    peers = [Peer(bytes([i + 1]) * 32) for i in range(5)]
    blocks = ["b1", "users", "orders-0001", "x", "Z9_-"]
    placement = []
    for b in blocks:
        r = region(b)
        placement.append({"blockId": b, "region": r, "midpoint": midpoint(r).hex(),
                          "target3": target(r, peers, 3)})

    # One write record: a pend of b1 through the region's target, coordinated
    # by the closest, with every member's approving promise and commit.
    r = region("b1")
    members = [p for p in peers if p.id in target(r, peers, 3)]
    coordinator = min(members, key=lambda p: target(r, peers, 3).index(p.id))
    block = {"header": {"id": "b1", "type": "T", "collectionId": "c"}, "n": 1, "s": "ü\u00e9\n\"q\""}
    message = {
        "operations": [{"pend": {"trxId": "t1", "rev": 1,
                                 # Transforms are written with all three fields (PROTOCOL.md).
                                 "transforms": {"inserts": {"b1": block}, "updates": {}, "deletes": []},
                                 "policy": "f"}}],
        "expiration": 1732430000000,
        "coordinator": coordinator.id,
        "epochs": {str(r): 1},
    }
    message_hash = D(message)
    record_peers = {p.id: {"multiaddrs": ["/ip4/127.0.0.1/tcp/4001"], "publicKey": p.public_key}
                    for p in members}
    state = {"b1": {}}
    promises, promise_payloads = {}, {}
    for p in members:
        payload = "optimystic/cluster/v2/promise\n%s\n%s\n%s\n%s\n%s" % (
            message_hash, D(record_peers), "approve", "", D(state))
        promise_payloads[p.id] = payload
        promises[p.id] = {"type": "approve", "signature": p.sign(payload), "state": state}
    effect = [{"kind": "ok"}]
    signatures = {pid: v["signature"] for pid, v in promises.items()}
    commits, commit_payloads = {}, {}
    for p in members:
        payload = "optimystic/cluster/v2/commit\n%s\n%s\n%s\n%s\n%s\n%s" % (
            message_hash, D(record_peers), "approve", "", D(signatures), D(effect))
        commit_payloads[p.id] = payload
        commits[p.id] = {"type": "approve", "signature": p.sign(payload), "effect": effect}
    # A rejecting promise: a reason, no state.
    rejecter = members[-1]
    reject_payload = "optimystic/cluster/v2/promise\n%s\n%s\n%s\n%s\n%s" % (
        message_hash, D(record_peers), "reject", "conflict:other", "")

    out = {
        "how": "python3 scripts/vectors.py (from docs/CONSENSUS.md and docs/PROTOCOL.md; no project code)",
        "peers": [{"seedHex": p.seed.hex(), "peerId": p.id, "publicKey": p.public_key} for p in peers],
        "placement": placement,
        "record": {
            "messageHash": message_hash,
            "peers": record_peers,
            "message": message,
            "promises": promises,
            "commits": commits,
        },
        "canonicalMessage": canonical(message),
        "peersDigest": D(record_peers),
        "stateDigest": D(state),
        "promisesDigest": D(signatures),
        "effectDigest": D(effect),
        "promisePayloads": promise_payloads,
        "commitPayloads": commit_payloads,
        "rejectingPromise": {"peerId": rejecter.id, "reason": "conflict:other",
                             "payload": reject_payload, "signature": rejecter.sign(reject_payload)},
    }
    print(json.dumps(out, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
