#!/usr/bin/env python3
"""Writes the hand-made seed inputs of every fuzz target into fuzz/seeds/<target>/.

Small valid examples of each input format (plus a few near misses). Deterministic:
rerunning it rewrites the same bytes. Needs only Python 3 and, for the signed
cluster record, the `cryptography` package (skipped, with a note, without it).
Run from anywhere: python3 fuzz/seeds/make_seeds.py
"""
import base64
import hashlib
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def mp(v):
    """MessagePack, maps with string keys (what rmp_serde::to_vec_named writes)."""
    if v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, int):
        if 0 <= v < 0x80:
            return bytes([v])
        if -32 <= v < 0:
            return struct.pack("b", v)
        if 0 <= v <= 0xFF:
            return b"\xcc" + bytes([v])
        if 0 <= v <= 0xFFFF:
            return b"\xcd" + struct.pack(">H", v)
        if 0 <= v <= 0xFFFFFFFF:
            return b"\xce" + struct.pack(">I", v)
        if 0 <= v:
            return b"\xcf" + struct.pack(">Q", v)
        return b"\xd3" + struct.pack(">q", v)
    if isinstance(v, float):
        return b"\xcb" + struct.pack(">d", v)
    if isinstance(v, str):
        b = v.encode()
        if len(b) < 32:
            return bytes([0xA0 | len(b)]) + b
        if len(b) <= 0xFF:
            return b"\xd9" + bytes([len(b)]) + b
        return b"\xda" + struct.pack(">H", len(b)) + b
    if isinstance(v, list):
        head = bytes([0x90 | len(v)]) if len(v) < 16 else b"\xdc" + struct.pack(">H", len(v))
        return head + b"".join(mp(x) for x in v)
    if isinstance(v, dict):
        head = bytes([0x80 | len(v)]) if len(v) < 16 else b"\xde" + struct.pack(">H", len(v))
        return head + b"".join(mp(k) + mp(x) for k, x in v.items())
    raise TypeError(type(v))


def js(v):
    return json.dumps(v, separators=(",", ":")).encode()


def canonical(v):
    return json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def digest(v):
    return b64(hashlib.sha256(canonical(v)).digest())


def base58(b):
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    n = int.from_bytes(b, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = alphabet[r] + out
    return "1" * (len(b) - len(b.lstrip(b"\0"))) + out


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


BLOCK = {"header": {"id": "b1", "type": "leaf", "collectionId": "c1"}, "items": [1, 2, 3], "n": 1.5}
TRANSFORMS = {
    "inserts": {"b1": BLOCK},
    "updates": {"b2": [["items", 1, 1, ["x", {"k": None}]], ["name", 0, 0, "new"]]},
    "deletes": ["b3"],
}
MESSAGES = {
    "get": {"operations": [{"get": {"blockIds": ["b1", "b2"]}}], "expiration": 1700000060000},
    "get_context": {"operations": [{"get": {"blockIds": ["b1"], "context": {
        "committed": [{"trxId": "t1", "rev": 1}], "rev": 1, "trxId": "t2"}}}]},
    "pend": {"operations": [{"pend": {"trxId": "t1", "rev": 2, "transforms": TRANSFORMS, "policy": "c"}}],
             "expiration": 1700000060000},
    "commit": {"operations": [{"commit": {"trxId": "t1", "blockIds": ["b1", "b2"], "rev": 2,
                                          "headerId": "h", "tailId": "t"}}]},
    "cancel": {"operations": [{"cancel": {"trxRef": {"trxId": "t1", "blockIds": ["b1"]}}}]},
    "unknown_op": {"operations": [{"drop": {}}]},
    "two_ops": {"operations": [{"get": {"blockIds": ["a"]}}, {"get": {"blockIds": ["b"]}}]},
}


def requests():
    for name, m in MESSAGES.items():
        write("request_json", name + ".json", js(m))
        write("request_msgpack", name + ".mp", mp(m))


def transforms():
    seeds = {
        "splice": (BLOCK, {"updates": [["items", 1, 1, [7, 8, 9]], ["n", 0, 0, {"deep": [True]}]]}),
        "insert": (None, {"insert": BLOCK, "updates": [["items", 3, 0, [4]]]}),
        "delete": (BLOCK, {"delete": True}),
        "insert_delete": (None, {"insert": BLOCK, "delete": True}),
        "out_of_range": (BLOCK, {"updates": [["items", 2, 5, []]]}),
        "header_op": (BLOCK, {"updates": [["header", 0, 0, 1]]}),
    }
    for name, (block, t) in seeds.items():
        head = js(block) + b"\0" if block is not None else b""
        write("transform", name + ".bin", head + js(t))


def frames():
    def varint(n):
        out = b""
        while True:
            b = n & 0x7F
            n >>= 7
            out += bytes([b | 0x80 if n else b])
            if not n:
                return out
    # [selector, n, n chunk sizes, (4 cap bytes if selector % 4 == 3), stream]
    write("frame", "two_small.bin", bytes([16 << 2, 0]) + varint(5) + b"hello" + varint(3) + b"abc")
    write("frame", "chunked.bin", bytes([1, 3, 1, 0, 2]) + varint(300) + bytes(300) + varint(0))
    write("frame", "too_large.bin", bytes([2 << 2, 0]) + varint(9) + b"123456789")
    write("frame", "truncated.bin", bytes([2, 1, 4]) + varint(70000) + b"short")
    write("frame", "bad_length.bin", bytes([1, 0]) + b"\xff" * 11)
    write("frame", "any_cap.bin", bytes([3, 0]) + struct.pack("<I", 1000) + varint(1000) + bytes(1000))


def metas():
    seeds = {
        "ranges": {"ranges": [[0, 5], [7, 9], [12]], "latest": {"trxId": "t1", "rev": 12}},
        "empty": {"ranges": []},
        "overlapping": {"ranges": [[3, 8], [1, 4], [8, 10], [20]]},
    }
    for name, m in seeds.items():
        write("storage_meta", name + ".json", js(m))
        write("storage_meta", name + ".mp", mp(m))


def records():
    message = {"operations": [MESSAGES["commit"]["operations"][0]], "expiration": 1700000060000}
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives import serialization
    except ImportError:
        print("no `cryptography`: writing only the unsigned record seeds")
        keys = []
    else:
        keys = [Ed25519PrivateKey.from_private_bytes(bytes([i + 1]) * 32) for i in range(3)]
    peers, ids = {}, []
    for i, k in enumerate(keys):
        raw = k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        proto = b"\x08\x01\x12\x20" + raw
        pid = base58(b"\x00" + bytes([len(proto)]) + proto)
        ids.append(pid)
        peers[pid] = {"multiaddrs": ["/ip4/127.0.0.1/tcp/%d" % (4001 + i)], "publicKey": b64(proto)}
    if ids:
        message["coordinator"] = ids[0]
    mh = digest(message)
    bare = {"messageHash": mh, "peers": peers, "message": message}
    write("cluster_record", "no_votes.json", js(bare))
    write("cluster_record", "no_votes.mp", mp(bare))
    if not keys:
        return
    peers_digest = digest(peers)
    promises = {}
    for i, (pid, k) in enumerate(zip(ids, keys)):
        vote, reason = ("approve", None) if i < 2 else ("reject", "conflict:x")
        payload = "optimystic/cluster/v1/promise\n%s\n%s\n%s\n%s" % (mh, peers_digest, vote, reason or "")
        promises[pid] = {"type": vote, "signature": b64(k.sign(payload.encode()))}
        if reason:
            promises[pid]["rejectReason"] = reason
    promised = dict(bare, promises=promises)
    write("cluster_record", "promised.json", js(promised))
    write("cluster_record", "promised.mp", mp(promised))
    promises_digest = digest(promises)
    commits = {}
    for pid, k in list(zip(ids, keys))[:2]:
        payload = "optimystic/cluster/v1/commit\n%s\n%s\napprove\n\n%s" % (mh, peers_digest, promises_digest)
        commits[pid] = {"type": "approve", "signature": b64(k.sign(payload.encode()))}
    committed = dict(promised, commits=commits)
    write("cluster_record", "committed.json", js(committed))
    write("cluster_record", "committed.mp", mp(committed))


if __name__ == "__main__":
    requests()
    transforms()
    frames()
    metas()
    records()
