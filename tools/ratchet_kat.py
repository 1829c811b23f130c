#!/usr/bin/env python3
"""Known-answer envelopes for duet's Double Ratchet (core/ratchet.c), from an independent
implementation.

Everything here is written from the specifications, in pure Python with only the standard
library: HMAC-SHA-256 and HKDF (RFC 5869) on hmac/hashlib, X25519 (RFC 7748), ChaCha20 and
Poly1305 (RFC 8439), HChaCha20 and XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha). None of it
shares code with libsodium, so a KDF label, an HKDF argument order, a header field or an AD
layout that drifts in the C code makes tests/unit/test_ratchet.c fail.

Before writing anything the script checks its primitives against the Wycheproof files in
tests/vectors/wycheproof (XChaCha20-Poly1305, X25519, HKDF-SHA-256) and, when the optional
`cryptography` package is importable, against it as well.

Usage: python3 tools/ratchet_kat.py [OUT]   (default tests/vectors/duet/ratchet-kat.json)

The scenario (see "steps" in the output): both sides initialise from fixed pairing secrets;
Bob sends first, Alice sends before hearing from him, messages arrive out of order within
and across chains, and an empty message with empty AD closes. Each party's randomness is a
tape: the exact byte strings its rng returns, in order (24-byte header nonces, 32-byte
ratchet private keys), so that the C implementation must draw them in the same order.
"""

import hashlib
import hmac
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

LABEL_RK = b"duet ratchet rk v1"
VERSION = 0x01
MAX_SKIP = 1000

# ---- HMAC / HKDF (RFC 5869) -------------------------------------------------------------


def hmac_sha256(key, msg):
    return hmac.new(key, msg, hashlib.sha256).digest()


def hkdf_sha256(salt, ikm, info, length):
    if length > 255 * 32:
        raise ValueError("HKDF output too long")
    prk = hmac_sha256(salt if salt else b"\x00" * 32, ikm)
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac_sha256(prk, t + info + bytes([i]))
        out += t
        i += 1
    return out[:length]


# ---- X25519 (RFC 7748 section 5) --------------------------------------------------------

P = 2**255 - 19


def x25519(k, u):
    k = bytearray(k)
    k[0] &= 248
    k[31] &= 127
    k[31] |= 64
    k = int.from_bytes(k, "little")
    x1 = int.from_bytes(u, "little") & ((1 << 255) - 1)
    x2, z2, x3, z3, swap = 1, 0, x1, 1, 0
    for t in reversed(range(255)):
        kt = (k >> t) & 1
        swap ^= kt
        if swap:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = kt
        a, b = x2 + z2, x2 - z2
        aa, bb = a * a % P, b * b % P
        e = aa - bb
        c, d = x3 + z3, x3 - z3
        da, cb = d * a % P, c * b % P
        x3 = (da + cb) ** 2 % P
        z3 = x1 * (da - cb) ** 2 % P
        x2 = aa * bb % P
        z2 = e * (aa + 121665 * e) % P
    if swap:
        x2, z2 = x3, z3
    return (x2 * pow(z2, P - 2, P) % P).to_bytes(32, "little")


def x25519_base(k):
    return x25519(k, (9).to_bytes(32, "little"))


def dh(priv, pub):
    out = x25519(priv, pub)
    if out == bytes(32):
        raise ValueError("all-zero X25519 result")
    return out


# ---- ChaCha20, HChaCha20, Poly1305, (X)ChaCha20-Poly1305 (RFC 8439, draft-xchacha) -------

M32 = 0xFFFFFFFF


def _rotl(v, c):
    return ((v << c) & M32) | (v >> (32 - c))


def _quarter(s, a, b, c, d):
    s[a] = (s[a] + s[b]) & M32
    s[d] = _rotl(s[d] ^ s[a], 16)
    s[c] = (s[c] + s[d]) & M32
    s[b] = _rotl(s[b] ^ s[c], 12)
    s[a] = (s[a] + s[b]) & M32
    s[d] = _rotl(s[d] ^ s[a], 8)
    s[c] = (s[c] + s[d]) & M32
    s[b] = _rotl(s[b] ^ s[c], 7)


def _rounds(s):
    for _ in range(10):
        _quarter(s, 0, 4, 8, 12)
        _quarter(s, 1, 5, 9, 13)
        _quarter(s, 2, 6, 10, 14)
        _quarter(s, 3, 7, 11, 15)
        _quarter(s, 0, 5, 10, 15)
        _quarter(s, 1, 6, 11, 12)
        _quarter(s, 2, 7, 8, 13)
        _quarter(s, 3, 4, 9, 14)


SIGMA = struct.unpack("<4I", b"expand 32-byte k")


def chacha20_block(key, counter, nonce12):
    init = list(SIGMA) + list(struct.unpack("<8I", key)) + [counter] + list(
        struct.unpack("<3I", nonce12))
    s = init[:]
    _rounds(s)
    return struct.pack("<16I", *[(s[i] + init[i]) & M32 for i in range(16)])


def hchacha20(key, nonce16):
    s = list(SIGMA) + list(struct.unpack("<8I", key)) + list(struct.unpack("<4I", nonce16))
    _rounds(s)
    return struct.pack("<8I", *(s[0:4] + s[12:16]))


def chacha20_xor(key, counter, nonce12, data):
    out = bytearray()
    for i in range(0, len(data), 64):
        block = chacha20_block(key, counter + i // 64, nonce12)
        out += bytes(x ^ y for x, y in zip(data[i:i + 64], block))
    return bytes(out)


def poly1305(key, msg):
    r = int.from_bytes(key[:16], "little") & 0x0FFFFFFC0FFFFFFC0FFFFFFC0FFFFFFF
    s = int.from_bytes(key[16:], "little")
    p, acc = (1 << 130) - 5, 0
    for i in range(0, len(msg), 16):
        n = int.from_bytes(msg[i:i + 16] + b"\x01", "little")
        acc = (acc + n) * r % p
    return ((acc + s) & ((1 << 128) - 1)).to_bytes(16, "little")


def _pad16(b):
    return b"\x00" * (-len(b) % 16)


def _mac_data(ad, ct):
    return ad + _pad16(ad) + ct + _pad16(ct) + struct.pack("<QQ", len(ad), len(ct))


def chacha20poly1305_seal(key, nonce12, msg, ad):
    otk = chacha20_block(key, 0, nonce12)[:32]
    ct = chacha20_xor(key, 1, nonce12, msg)
    return ct + poly1305(otk, _mac_data(ad, ct))


def chacha20poly1305_open(key, nonce12, sealed, ad):
    if len(sealed) < 16:
        return None
    ct, tag = sealed[:-16], sealed[-16:]
    otk = chacha20_block(key, 0, nonce12)[:32]
    if not hmac.compare_digest(poly1305(otk, _mac_data(ad, ct)), tag):
        return None
    return chacha20_xor(key, 1, nonce12, ct)


def xchacha_seal(key, nonce24, msg, ad):
    return chacha20poly1305_seal(hchacha20(key, nonce24[:16]), b"\x00" * 4 + nonce24[16:],
                                 msg, ad)


def xchacha_open(key, nonce24, sealed, ad):
    return chacha20poly1305_open(hchacha20(key, nonce24[:16]), b"\x00" * 4 + nonce24[16:],
                                 sealed, ad)


# ---- self-checks --------------------------------------------------------------------------


def _load(rel):
    with open(os.path.join(ROOT, "tests", "vectors", rel)) as f:
        return json.load(f)


def self_check():
    h = bytes.fromhex
    n = 0
    for g in _load("wycheproof/xchacha20_poly1305_test.json")["testGroups"]:
        if g["ivSize"] != 192:
            continue
        for t in g["tests"]:
            sealed = h(t["ct"]) + h(t["tag"])
            got = xchacha_open(h(t["key"]), h(t["iv"]), sealed, h(t["aad"]))
            if t["result"] == "valid":
                assert got == h(t["msg"]), t["tcId"]
                assert xchacha_seal(h(t["key"]), h(t["iv"]), h(t["msg"]), h(t["aad"])) == sealed
            else:
                assert got is None, t["tcId"]
            n += 1
    for g in _load("wycheproof/x25519_test.json")["testGroups"]:
        for t in g["tests"]:
            assert x25519(h(t["private"]), h(t["public"])) == h(t["shared"]), t["tcId"]
            n += 1
    for g in _load("wycheproof/hkdf_sha256_test.json")["testGroups"]:
        for t in g["tests"]:
            if t["result"] == "valid":
                got = hkdf_sha256(h(t["salt"]), h(t["ikm"]), h(t["info"]), t["size"])
                assert got == h(t["okm"]), t["tcId"]
                n += 1
    try:  # optional second opinion
        from cryptography.hazmat.primitives.asymmetric.x25519 import (X25519PrivateKey,
                                                                      X25519PublicKey)
        from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
        k, nonce, msg, ad = bytes(range(32)), bytes(range(12)), b"duet" * 20, b"ad"
        assert ChaCha20Poly1305(k).encrypt(nonce, msg, ad) == chacha20poly1305_seal(
            k, nonce, msg, ad)
        a = X25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
        b = bytes(range(40, 72))
        assert a.exchange(X25519PublicKey.from_public_bytes(x25519_base(b))) == x25519(
            bytes(range(1, 33)), x25519_base(b))
    except ImportError:
        pass
    return n


# ---- the Double Ratchet with header encryption (spec section 4, duet's parameters) -------


def kdf_rk(rk, dh_out):
    okm = hkdf_sha256(rk, dh_out, LABEL_RK, 96)
    return okm[:32], okm[32:64], okm[64:]


def kdf_ck(ck):
    return hmac_sha256(ck, b"\x02"), hmac_sha256(ck, b"\x01")  # next ck, mk


def msg_keys(mk):
    # ENCRYPT: the message key is the AEAD key itself, used for exactly one message, so the
    # nonce can be all zeros (docs/protocol/ratchet.md, "Why the message key is the key").
    return mk, b"\x00" * 24


class Tape:
    """The rng of one party: returns the next recorded byte string, which must have the
    requested length."""

    def __init__(self):
        self.queue = []
        self.used = []

    def load(self, items):
        self.queue = list(items)
        self.used = []

    def fill(self, n):
        item = self.queue.pop(0)
        assert len(item) == n
        self.used.append(item)
        return item


class Party:
    def __init__(self, rng):
        self.rng = rng
        self.skipped = []  # [(hk, n, mk)], oldest first
        self.ckr = self.hkr = None
        self.nr = self.ns = self.pn = 0

    @classmethod
    def alice(cls, rng, sk, hk_a, nhk_b, a0_priv, b0_pub):
        p = cls(rng)
        p.dhs = (a0_priv, x25519_base(a0_priv))
        p.dhr = b0_pub
        p.rk, p.cks, p.nhks = kdf_rk(sk, dh(a0_priv, b0_pub))
        p.hks, p.nhkr = hk_a, nhk_b
        return p

    @classmethod
    def bob(cls, rng, sk, hk_a, nhk_b, b0_priv, a0_pub):
        p = cls(rng)
        p.dhs = (b0_priv, x25519_base(b0_priv))
        p.rk, p.nhks, p.nhkr = sk, nhk_b, hk_a
        p.hks = p.cks = None
        p.dh_ratchet(a0_pub)
        return p

    def gen(self):
        priv = self.rng.fill(32)
        return priv, x25519_base(priv)

    def dh_ratchet(self, dh_pub):
        self.pn, self.ns, self.nr = self.ns, 0, 0
        self.hks, self.hkr = self.nhks, self.nhkr
        self.dhr = dh_pub
        self.rk, self.ckr, self.nhkr = kdf_rk(self.rk, dh(self.dhs[0], self.dhr))
        self.dhs = self.gen()
        self.rk, self.cks, self.nhks = kdf_rk(self.rk, dh(self.dhs[0], self.dhr))

    def encrypt(self, plaintext, ad):
        self.cks, mk = kdf_ck(self.cks)
        header = self.dhs[1] + struct.pack(">II", self.pn, self.ns)
        nonce = self.rng.fill(24)
        enc_header = nonce + xchacha_seal(self.hks, nonce, header, b"")
        self.ns += 1
        key, body_nonce = msg_keys(mk)
        body = xchacha_seal(key, body_nonce, plaintext, ad + enc_header)
        return bytes([VERSION]) + enc_header + body

    @staticmethod
    def hdecrypt(hk, enc_header):
        if hk is None:
            return None
        plain = xchacha_open(hk, enc_header[:24], enc_header[24:], b"")
        if plain is None:
            return None
        pn, n = struct.unpack(">II", plain[32:])
        return plain[:32], pn, n

    def open_body(self, mk, env, ad):
        key, nonce = msg_keys(mk)
        plain = xchacha_open(key, nonce, env[81:], ad + env[1:81])
        assert plain is not None
        return plain

    def skip(self, until):
        assert self.nr + MAX_SKIP >= until
        if self.ckr is not None:
            while self.nr < until:
                self.ckr, mk = kdf_ck(self.ckr)
                self.skipped.append((self.hkr, self.nr, mk))
                self.nr += 1

    def decrypt(self, env, ad):
        assert env[0] == VERSION
        enc_header = env[1:81]
        for i, (hk, n, mk) in enumerate(self.skipped):
            h = self.hdecrypt(hk, enc_header)
            if h is not None and h[2] == n:
                del self.skipped[i]
                return self.open_body(mk, env, ad)
        h = self.hdecrypt(self.hkr, enc_header)
        if h is None:
            h = self.hdecrypt(self.nhkr, enc_header)
            assert h is not None
            self.skip(h[1])
            self.dh_ratchet(h[0])
        self.skip(h[2])
        self.ckr, mk = kdf_ck(self.ckr)
        self.nr += 1
        return self.open_body(mk, env, ad)


# ---- the scenario -------------------------------------------------------------------------


def det(label, n):
    """Fixed 'random' bytes: SHA-512 of a label, truncated."""
    return hashlib.sha512(b"duet ratchet kat v1 " + label.encode()).digest()[:n]


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        ROOT, "tests", "vectors", "duet", "ratchet-kat.json")
    checked = self_check()

    sk, hk_a, nhk_b = det("sk", 32), det("hk_a", 32), det("nhk_b", 32)
    a0_priv, b0_priv = det("a0", 32), det("b0", 32)
    a0_pub, b0_pub = x25519_base(a0_priv), x25519_base(b0_priv)
    tapes = {"alice": Tape(), "bob": Tape()}
    counter = [0]

    def fresh(n):
        counter[0] += 1
        return det("rng %d" % counter[0], n)

    tapes["bob"].load([fresh(32)])
    bob_init_rng = tapes["bob"].queue[:]
    alice = Party.alice(tapes["alice"], sk, hk_a, nhk_b, a0_priv, b0_pub)
    bob = Party.bob(tapes["bob"], sk, hk_a, nhk_b, b0_priv, a0_pub)
    parties = {"alice": alice, "bob": bob}
    envelopes, steps = {}, []

    def send(who, mid, text, ad):
        tapes[who].load([fresh(24)])
        env = parties[who].encrypt(text, ad)
        envelopes[mid] = (env, text, ad)
        steps.append({"op": "send", "who": who, "id": mid, "rng": [x.hex() for x in
                                                                    tapes[who].used],
                      "ad": ad.hex(), "plaintext": text.hex(), "envelope": env.hex()})

    def recv(who, mid, ratchet):
        env, text, ad = envelopes[mid]
        tapes[who].load([fresh(32)] if ratchet else [])
        got = parties[who].decrypt(env, ad)
        assert got == text and not tapes[who].queue
        steps.append({"op": "recv", "who": who, "id": mid, "rng": [x.hex() for x in
                                                                    tapes[who].used],
                      "ad": ad.hex(), "plaintext": text.hex()})

    send("bob", "b0", b"Bob writes first, before he has heard anything.", b"duet kat ad 1")
    send("alice", "a0", b"Alice writes too.", b"duet kat ad 2")
    send("alice", "a1", b"And again, a little later.", b"duet kat ad 3")
    recv("bob", "a1", False)   # skips a0
    recv("bob", "a0", False)   # from the skipped keys
    recv("alice", "b0", True)  # Alice's first DH ratchet step
    send("alice", "a2", b"Thank you for the note.", b"duet kat ad 4")
    send("bob", "b1", b"Still on my first chain.", b"")
    recv("bob", "a2", True)    # Bob's DH ratchet step
    recv("alice", "b1", False)
    send("bob", "b2", b"New chain, first message.", b"duet kat ad 5")
    send("bob", "b3", b"New chain, second message.", b"duet kat ad 6")
    recv("alice", "b3", True)  # DH ratchet step, skipping b2 in the new chain
    recv("alice", "b2", False)
    send("alice", "a3", b"", b"")
    recv("bob", "a3", True)

    rk_case = {"rk": sk.hex(), "dh": dh(a0_priv, b0_pub).hex()}
    nrk, ck, nhk = kdf_rk(sk, dh(a0_priv, b0_pub))
    rk_case.update(next_rk=nrk.hex(), ck=ck.hex(), nhk=nhk.hex())
    next_ck, mk = kdf_ck(ck)
    key, nonce = msg_keys(mk)

    doc = {
        "description": "Known-answer envelopes and KDF values for duet's Double Ratchet with "
                       "header encryption (docs/protocol/ratchet.md), computed by "
                       "tools/ratchet_kat.py, an independent pure-Python implementation "
                       "(no libsodium). Each party's rng is a tape: the byte strings it must "
                       "return, in order. All values hex.",
        "generator": "tools/ratchet_kat.py",
        "primitive_self_checks": checked,
        "init": {"sk": sk.hex(), "hk_a": hk_a.hex(), "nhk_b": nhk_b.hex(),
                 "a0_priv": a0_priv.hex(), "a0_pub": a0_pub.hex(),
                 "b0_priv": b0_priv.hex(), "b0_pub": b0_pub.hex(),
                 "bob_rng": [x.hex() for x in bob_init_rng]},
        "kdf_rk": [rk_case],
        "kdf_ck": [{"ck": ck.hex(), "next_ck": next_ck.hex(), "mk": mk.hex()}],
        "steps": steps,
    }
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    with open(out_path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    print("%s: %d steps (%d primitive self-checks passed)" % (out_path, len(steps), checked))


if __name__ == "__main__":
    main()
