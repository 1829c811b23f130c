#!/usr/bin/env python3
"""Write the seed corpus of tests/fuzz/fuzz_relay.c into tests/fuzz/corpus/relay/: relay
sessions made of valid frames (docs/protocol/relay.md), with the keys the target uses (pair
secret 32 x 0x07, identity keys 32 x 0xaa for a and 32 x 0xbb for b).

Usage: python3 tools/relay_fuzz_seeds.py tests/fuzz/corpus/relay
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from relay_vector import (SALT, direction, env_oid, hkdf_extract, mp, seq_mask,  # noqa: E402
                          state_oid)


def framed(*frames: bytes) -> bytes:
    return b"".join(len(f).to_bytes(2, "big") + f for f in frames)


def main(out: str):
    os.makedirs(out, exist_ok=True)
    prk = hkdf_extract(SALT, bytes([7]) * 32)
    lohi, hilo = direction(prk, "lo-hi"), direction(prk, "hi-lo")
    a_out = lohi  # 0xaa.. sorts before 0xbb..: a writes lo-hi
    b_in = lohi

    def reader(rid, d):
        return {2: d["mbox"], 3: d["rcap"], 4: d["whash"]}

    oid1 = env_oid(a_out["okey"], 1)
    env1 = seq_mask(a_out["okey"], oid1, 1) + bytes(range(1, 65))
    seeds = {}
    seeds["server-session"] = b"\x00" + framed(
        mp({0: 1, 1: 1, 2: 1}),                                      # c0 HELLO
        mp({0: 1, 1: 1, 2: 1}),                                      # c1 HELLO
        mp({0: 2, 1: 2, 2: a_out["mbox"], 3: a_out["wcap"], 4: a_out["rhash"], 5: 1, 6: oid1,
            7: env1}),                                               # c0 PUT
        mp({0: 6, 1: 2, **reader(2, b_in)}),                         # c1 SUBSCRIBE
        mp({0: 2, 1: 3, 2: a_out["mbox"], 3: a_out["wcap"], 4: a_out["rhash"], 5: 2,
            6: state_oid(a_out["okey"]), 7: bytes(305)}),            # c0 PUT state
        mp({0: 3, 1: 3, **reader(3, b_in), 5: 0, 6: 0, 7: 16}),      # c1 LIST
        mp({0: 7, 1: 4}),                                            # c0 PING
        mp({0: 4, 1: 4, **reader(4, b_in), 5: oid1}),                # c1 GET
        mp({0: 8, 1: 5, 2: 0}),                                      # c0 ALLOCATE
        mp({0: 5, 1: 5, **reader(5, b_in), 5: [oid1, b"\x01"]}),     # c1 DELETE
    )
    seeds["server-rendezvous"] = b"\x00" + framed(
        mp({0: 1, 1: 1, 2: 1}),
        mp({0: 1, 1: 1, 2: 1}),
        mp({0: 8, 1: 2, 2: 4242}),                                   # c0 ALLOCATE 4242
        mp({0: 9, 1: 2, 2: 4242}),                                   # c1 CLAIM 4242
        mp({0: 10, 1: 3, 2: b"\x00\x02hi" + bytes(508)}),            # c0 PMSG
        mp({0: 10, 1: 3, 2: b"\x00\x02yo" + bytes(508)}),            # c1 PMSG
    )
    seeds["server-garbage"] = b"\x00" + framed(b"\xc1\x00", mp({0: 7, 1: 1}), b"\x91\x01")
    # The client in daemon mode: HELLO(1), SUBSCRIBE(2), GET state(3), LIST(4), PUTs(5..7).
    listed = mp({0: 66, 1: 4, 2: [[1, 1, oid1, len(env1)]], 3: False})
    seeds["client-session"] = b"\x01" + framed(
        mp({0: 65, 1: 1, 2: 1, 3: 98368, 4: 128}),
        mp({0: 64, 1: 2, 2: 0}),
        mp({0: 68, 1: 3, 2: -8, 3: False, 4: 1}),
        listed,
        mp({0: 64, 1: 5, 2: 1}),
        mp({0: 68, 1: 6, 2: -84, 3: False, 4: 1}),
        mp({0: 64, 1: 7, 2: 3}),
        mp({0: 67, 1: 8, 2: 1, 3: 1, 4: oid1, 5: env1}),
        mp({0: 80, 1: b_in["mbox"], 2: 9}),
        mp({0: 64, 1: 9, 2: 1}),
    )
    seeds["client-fatal"] = b"\x01" + framed(mp({0: 68, 1: 0, 2: -16, 3: True, 4: 1}))
    seeds["small-url"] = b"\x02duet://relay.example.org:4455/" + b"0" * 52
    seeds["small-config"] = b"\x02# relay\nmailbox-items = 5\nttl-s = 60\n"
    seeds["small-pair"] = b"\x02\x00\x03abc" + bytes(507)
    seeds["small-state"] = b"\x02" + bytes(305)
    hello, ping = mp({0: 1, 1: 1, 2: 1}), mp({0: 7, 1: 2})
    seeds["small-record"] = (b"\x02" + len(hello).to_bytes(4, "big") + hello +
                             len(ping).to_bytes(4, "big") + ping)
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fuzz/corpus/relay")
