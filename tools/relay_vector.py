#!/usr/bin/env python3
"""Write tests/vectors/duet/relay.json: relay known answers computed independently of the C
code (Python hashlib/hmac and a hand-written msgpack encoder, no libsodium, no msgpack-c), for
tests/unit/test_relay.c. docs/protocol/relay.md is the specification followed here.

Covers: the per-direction capabilities, keys and mailbox ids derived from a pair secret; the
object labels and masked sequence numbers of envelopes; the state object's id and plaintext
layout; relay URLs (Crockford base32 keys); the exact bytes of one frame of each type.

Usage: python3 tools/relay_vector.py > tests/vectors/duet/relay.json
"""
import hashlib
import hmac
import json

SALT = b"duet relay v1"
CAP_KEY = b"duet-relay-cap-v1"
MAILBOX_KEY = b"duet-relay-mailbox-v1"


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def hkdf_expand(prk: bytes, info: bytes, n: int) -> bytes:
    out, t, i = b"", b"", 1
    while len(out) < n:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        out += t
        i += 1
    return out[:n]


def b2b(data: bytes, key: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32, key=key).digest()


def direction(prk: bytes, d: str) -> dict:
    x = {}
    for name, label in (("wcap", "wcap"), ("rcap", "rcap"), ("okey", "object"),
                        ("skey", "state")):
        x[name] = hkdf_expand(prk, ("duet relay %s %s" % (label, d)).encode(), 32)
    x["whash"] = b2b(x["wcap"], CAP_KEY)
    x["rhash"] = b2b(x["rcap"], CAP_KEY)
    x["mbox"] = b2b(x["whash"] + x["rhash"], MAILBOX_KEY)
    return x


def env_oid(okey: bytes, seq: int) -> bytes:
    return hmac.new(okey, b"env" + seq.to_bytes(8, "big"), hashlib.sha256).digest()[:16]


def seq_mask(okey: bytes, oid: bytes, seq: int) -> bytes:
    m = hmac.new(okey, b"seq" + oid, hashlib.sha256).digest()[:8]
    return bytes(a ^ b for a, b in zip(seq.to_bytes(8, "big"), m))


def state_oid(okey: bytes) -> bytes:
    return hmac.new(okey, b"state", hashlib.sha256).digest()[:16]


def state_plain(wm: int, above: list) -> bytes:
    bits = bytearray(256)
    for s in above:
        i = s - wm - 1
        if 0 <= i < 2048:
            bits[i // 8] |= 1 << (i % 8)
    return bytes([1]) + wm.to_bytes(8, "big") + bytes(bits)


CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def b32(key: bytes) -> str:
    n = int.from_bytes(key, "big") << 4  # 256 bits + 4 zero bits = 52 characters
    return "".join(CROCKFORD[(n >> (5 * (51 - i))) & 31] for i in range(52))


# ---- a minimal msgpack encoder: the shortest forms, as msgpack-c's packer writes them ----

def mp_uint(v: int) -> bytes:
    if v < 0x80:
        return bytes([v])
    if v < 0x100:
        return b"\xcc" + v.to_bytes(1, "big")
    if v < 0x10000:
        return b"\xcd" + v.to_bytes(2, "big")
    if v < 0x100000000:
        return b"\xce" + v.to_bytes(4, "big")
    return b"\xcf" + v.to_bytes(8, "big")


def mp_int(v: int) -> bytes:
    if v >= 0:
        return mp_uint(v)
    if v >= -32:
        return bytes([v & 0xff])
    if v >= -128:
        return b"\xd0" + v.to_bytes(1, "big", signed=True)
    if v >= -32768:
        return b"\xd1" + v.to_bytes(2, "big", signed=True)
    return b"\xd2" + v.to_bytes(4, "big", signed=True)


def mp_bin(b: bytes) -> bytes:
    if len(b) < 0x100:
        return b"\xc4" + bytes([len(b)]) + b
    if len(b) < 0x10000:
        return b"\xc5" + len(b).to_bytes(2, "big") + b
    return b"\xc6" + len(b).to_bytes(4, "big") + b


def mp(v) -> bytes:
    if isinstance(v, bool):
        return b"\xc3" if v else b"\xc2"
    if isinstance(v, int):
        return mp_int(v)
    if isinstance(v, bytes):
        return mp_bin(v)
    if isinstance(v, list):
        assert len(v) < 16
        return bytes([0x90 | len(v)]) + b"".join(mp(x) for x in v)
    if isinstance(v, dict):
        assert len(v) < 16
        return bytes([0x80 | len(v)]) + b"".join(mp_uint(k) + mp(x) for k, x in v.items())
    raise TypeError(v)


def main():
    pair_secret = bytes(range(32))
    # RFC 8032 section 7.1 TEST 1 and TEST 2 public keys: pk_a sorts after pk_b.
    pk_a = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    pk_b = bytes.fromhex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
    prk = hkdf_extract(SALT, pair_secret)
    lohi, hilo = direction(prk, "lo-hi"), direction(prk, "hi-lo")
    # b's key sorts first: b writes lo-hi, a writes hi-lo.
    a_out, a_in = hilo, lohi

    def hexd(d):
        return {k: v.hex() for k, v in d.items()}

    labels = []
    for seq in (1, 2, 255, 256, 1 << 40):
        oid = env_oid(a_out["okey"], seq)
        labels.append({"seq": seq, "oid": oid.hex(), "masked_seq": seq_mask(a_out["okey"], oid,
                                                                             seq).hex()})
    above = [7, 9, 12, 2058, 2059]
    relay_key = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")

    m = a_out
    oid1 = env_oid(m["okey"], 1)
    data = seq_mask(m["okey"], oid1, 1) + b"\xee" * 24
    frames = {
        "hello": mp({0: 1, 1: 1, 2: 1}),
        "put": mp({0: 2, 1: 7, 2: m["mbox"], 3: m["wcap"], 4: m["rhash"], 5: 1, 6: oid1,
                   7: data}),
        "list": mp({0: 3, 1: 8, 2: a_in["mbox"], 3: a_in["rcap"], 4: a_in["whash"], 5: 1,
                    6: 300, 7: 256}),
        "get": mp({0: 4, 1: 9, 2: a_in["mbox"], 3: a_in["rcap"], 4: a_in["whash"],
                   5: state_oid(a_in["okey"])}),
        "delete": mp({0: 5, 1: 10, 2: a_in["mbox"], 3: a_in["rcap"], 4: a_in["whash"],
                      5: [oid1, b"\x01"]}),
        "subscribe": mp({0: 6, 1: 11, 2: a_in["mbox"], 3: a_in["rcap"], 4: a_in["whash"]}),
        "ping": mp({0: 7, 1: 65536}),
        "allocate": mp({0: 8, 1: 12, 2: 0}),
        "claim": mp({0: 9, 1: 13, 2: 417}),
        "pmsg": mp({0: 10, 1: 14, 2: b"\x00\x03abc" + bytes(507)}),
        "ok": mp({0: 64, 1: 7, 2: 1 << 33}),
        "welcome": mp({0: 65, 1: 1, 2: 1, 3: 98368, 4: 128}),
        "listed": mp({0: 66, 1: 8, 2: [[301, 1, oid1, 520], [302, 3, b"\xab" * 36, 98368]],
                      3: True}),
        "object": mp({0: 67, 1: 9, 2: 5, 3: 2, 4: oid1, 5: b"\x01\x02\x03"}),
        "error": mp({0: 68, 1: 7, 2: -86, 3: False, 4: 1}),
        "error_fatal": mp({0: 68, 1: 0, 2: -73, 3: True, 4: 1}),
        "notify": mp({0: 80, 1: a_in["mbox"], 2: 42}),
        "pdata": mp({0: 81, 1: b"\x00\x03abc" + bytes(507)}),
        "pclosed": mp({0: 82, 1: -82}),
    }
    out = {
        "_comment": "duet relay known answers (docs/protocol/relay.md), generated by "
                    "tools/relay_vector.py with Python hashlib/hmac and its own msgpack "
                    "encoder, independently of the C code. Identity keys: RFC 8032 7.1 TEST 1 "
                    "(a) and TEST 2 (b) public keys. Frames use device a's keys.",
        "pair_secret": pair_secret.hex(),
        "pk_a": pk_a.hex(),
        "pk_b": pk_b.hex(),
        "a_out": hexd(a_out),
        "a_in": hexd(a_in),
        "env_labels_a_out": labels,
        "state_oid_a_out": state_oid(a_out["okey"]).hex(),
        "state": {"wm": 5, "above": above, "plain": state_plain(5, above).hex()},
        "url": {"host": "relay.example.org", "port": 4455, "key": relay_key.hex(),
                "text": "duet://relay.example.org:4455/" + b32(relay_key)},
        "url6": {"host": "::1", "port": 9, "key": (b"\xff" * 32).hex(),
                 "text": "duet://[::1]:9/" + b32(b"\xff" * 32)},
        "frames": {k: v.hex() for k, v in frames.items()},
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
