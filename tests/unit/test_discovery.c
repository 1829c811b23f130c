/*
 * core/discovery: the blinded-beacon engine, sans-I/O.
 *
 * The wire format is checked against an independent reading of docs/protocol/discovery.md
 * written here with libsodium alone (HKDF from crypto_auth_hmacsha256, the tag with
 * crypto_generichash, the body with crypto_stream_xchacha20), so a changed label, key order
 * or layout fails. Then what a user (or an attacker) would check: the partner is recognised
 * in windows w-1..w+1 and not outside, a stranger's or another couple's beacon is refused,
 * every truncated, oversized, bit-flipped or random datagram is refused, beacons share no
 * bytes across windows, a query is answered at once, the schedule backs off with jitter, the
 * buckets hold, and a stranger who replays a beacon and connects fails Noise KK. Last, the
 * net layer on the loopback interface (no root needed): a seeker finds its partner's port,
 * a stranger with another key finds nothing, and every handle is closed after stop.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "../../core/discovery.h"
#include "../../net/discovery.h"
#include "crypto.h"
#include "noise.h"
#include "testrng.h"

#define W      120000u            /* the default window */
#define T0     (1700000000000ull) /* a wall clock in 2023, ms */
#define BEACON DUET_DISCOVERY_BEACON_BYTES

static const uint8_t src_a[] = {10, 0, 0, 1};
static const uint8_t src_b[] = {10, 0, 0, 2};

/* ---- an independent reading of the format --------------------------------------------- */

static void ref_hmac(uint8_t out[32], const uint8_t *key, size_t key_len, const uint8_t *a,
                     size_t a_len, const uint8_t *b, size_t b_len, uint8_t c)
{
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, key_len);
    crypto_auth_hmacsha256_update(&st, a, a_len);
    crypto_auth_hmacsha256_update(&st, b, b_len);
    crypto_auth_hmacsha256_update(&st, &c, 1);
    crypto_auth_hmacsha256_final(&st, out);
}

/* RFC 5869 with an empty salt, up to 64 bytes out. */
static void ref_hkdf(uint8_t *out, size_t out_len, const uint8_t *ikm, size_t ikm_len,
                     const uint8_t *info, size_t info_len)
{
    uint8_t zero[32] = {0}, prk[32], t1[32], t2[32];
    crypto_auth_hmacsha256(prk, ikm, ikm_len, zero);
    ref_hmac(t1, prk, 32, NULL, 0, info, info_len, 1);
    ref_hmac(t2, prk, 32, t1, 32, info, info_len, 2);
    assert_true(out_len <= 64);
    memcpy(out, t1, out_len < 32 ? out_len : 32);
    if (out_len > 32) {
        memcpy(out + 32, t2, out_len - 32);
    }
}

static void ref_window_keys(uint8_t mac[32], uint8_t enc[32], const uint8_t key[32], uint64_t w)
{
    uint8_t info[64];
    const char *label = "duet lan v1 window";
    size_t n = strlen(label);
    memcpy(info, label, n);
    for (int i = 0; i < 8; i++) {
        info[n + (size_t)i] = (uint8_t)(w >> (56 - 8 * i));
    }
    uint8_t okm[64];
    ref_hkdf(okm, 64, key, 32, info, n + 8);
    memcpy(mac, okm, 32);
    memcpy(enc, okm + 32, 32);
}

/* Open a beacon as the document says; returns 0 and the body, or -1 if the tag is wrong. */
static int ref_open(uint8_t body[16], const uint8_t key[32], uint64_t w, const uint8_t b[56])
{
    uint8_t mac[32], enc[32], tag[16];
    ref_window_keys(mac, enc, key, w);
    crypto_generichash(tag, 16, b, 40, mac, 32);
    if (sodium_memcmp(tag, b + 40, 16) != 0) {
        return -1;
    }
    crypto_stream_xchacha20_xor(body, b + 24, 16, b, enc);
    return 0;
}

/* Seal any body as the document says (to make authentic but malformed beacons). */
static void ref_seal(uint8_t b[56], const uint8_t key[32], uint64_t w, const uint8_t body[16])
{
    uint8_t mac[32], enc[32];
    ref_window_keys(mac, enc, key, w);
    randombytes_buf(b, 24);
    crypto_stream_xchacha20_xor(b + 24, body, 16, b, enc);
    crypto_generichash(b + 40, 16, b, 40, mac, 32);
}

/* ---- fixtures ------------------------------------------------------------------------ */

typedef struct couple {
    duet_testrng_t ra, rb;
    uint8_t key[32];
    duet_discovery_t a, b;
} couple_t;

/* A couple whose pair secret is 32 bytes of `fill`; a listens on port_a and seeks, b
 * listens on port_b and seeks unless told otherwise. */
static void couple_init(couple_t *c, uint8_t fill, uint16_t port_a, bool seek_a, uint16_t port_b,
                        bool seek_b)
{
    uint8_t secret[32];
    memset(secret, fill, sizeof secret);
    duet_discovery_key_paired(c->key, secret);
    duet_discovery_init(&c->a, c->key, port_a, seek_a, NULL, duet_testrng_init(&c->ra, fill), 0);
    duet_discovery_init(&c->b, c->key, port_b, seek_b, NULL,
                        duet_testrng_init(&c->rb, 1000u + fill), 0);
}

static void couple_dispose(couple_t *c)
{
    duet_discovery_dispose(&c->a);
    duet_discovery_dispose(&c->b);
}

static int shares_run(const uint8_t *x, const uint8_t *y, size_t len, size_t run)
{
    for (size_t i = 0; i + run <= len; i++) {
        for (size_t j = 0; j + run <= len; j++) {
            if (memcmp(x + i, y + j, run) == 0) {
                return 1;
            }
        }
    }
    return 0;
}

/* ---- keys and format ----------------------------------------------------------------- */

static void test_keys_match_document(void **state)
{
    (void)state;
    uint8_t secret[32], key[32], ref[32];
    for (int i = 0; i < 32; i++) {
        secret[i] = (uint8_t)(i * 7 + 1);
    }
    duet_discovery_key_paired(key, secret);
    ref_hkdf(ref, 32, secret, 32, (const uint8_t *)"duet lan v1 paired", 18);
    assert_memory_equal(key, ref, 32);

    assert_int_equal(duet_discovery_key_pairing(key, (const uint8_t *)"417", 3), DUET_OK);
    ref_hkdf(ref, 32, (const uint8_t *)"417", 3, (const uint8_t *)"duet lan v1 pairing", 19);
    assert_memory_equal(key, ref, 32);

    /* Another nameplate, another key; the pairing key of bytes is not their paired key. */
    uint8_t other[32];
    assert_int_equal(duet_discovery_key_pairing(other, (const uint8_t *)"418", 3), DUET_OK);
    assert_memory_not_equal(key, other, 32);
    assert_int_equal(duet_discovery_key_pairing(other, secret, 16), DUET_OK);
    duet_discovery_key_paired(key, secret);
    assert_memory_not_equal(key, other, 32);

    /* Limits: 1..16 bytes. */
    memset(key, 0xaa, sizeof key);
    assert_int_equal(duet_discovery_key_pairing(key, (const uint8_t *)"", 0), DUET_EINVAL);
    uint8_t zero[32] = {0};
    assert_memory_equal(key, zero, 32);
    assert_int_equal(duet_discovery_key_pairing(key, secret, 17), DUET_EINVAL);
    assert_int_equal(duet_discovery_key_pairing(key, secret, 16), DUET_OK);
}

static void test_beacon_matches_document(void **state)
{
    (void)state;
    couple_t c;
    couple_init(&c, 1, 41000, true, 0, false);
    uint8_t b[BEACON], body[16];
    uint64_t wall = T0 + 12345;
    uint64_t w = wall / W;

    duet_discovery_beacon(&c.a, wall, DUET_DISCOVERY_ANNOUNCE, b);
    assert_int_equal(ref_open(body, c.key, w, b), 0);
    assert_int_equal(body[0], 1); /* announce */
    assert_int_equal(body[1], 0); /* flags */
    assert_int_equal(body[2], 41000 >> 8);
    assert_int_equal(body[3], 41000 & 0xff);
    assert_memory_equal(body + 4, c.a.instance, 8);
    uint8_t zero[4] = {0};
    assert_memory_equal(body + 12, zero, 4);
    /* The tag binds the window: the same beacon does not open in the next one. */
    assert_int_equal(ref_open(body, c.key, w + 1, b), -1);

    duet_discovery_beacon(&c.a, wall, DUET_DISCOVERY_QUERY, b);
    assert_int_equal(ref_open(body, c.key, w, b), 0);
    assert_int_equal(body[0], 2); /* query, carrying our port */
    assert_int_equal(body[2] << 8 | body[3], 41000);

    /* And the engine accepts what the document's sealing makes. */
    uint8_t mine[16] = {1, 0, 0x1f, 0x90, 9, 9, 9, 9, 9, 9, 9, 9, 0, 0, 0, 0};
    ref_seal(b, c.key, w, mine);
    duet_discovery_rx_t rx;
    assert_int_equal(duet_discovery_receive(&c.b, 0, wall, src_a, sizeof src_a, b, BEACON, &rx),
                     DUET_OK);
    assert_int_equal(rx.kind, DUET_DISCOVERY_ANNOUNCE);
    assert_int_equal(rx.port, 8080);
    couple_dispose(&c);
}

/* ---- recognition --------------------------------------------------------------------- */

static void test_partner_recognised(void **state)
{
    (void)state;
    couple_t c;
    couple_init(&c, 2, 5555, false, 0, true);
    uint8_t b[BEACON];
    duet_discovery_rx_t rx;
    duet_discovery_beacon(&c.a, T0, DUET_DISCOVERY_ANNOUNCE, b);
    assert_int_equal(duet_discovery_receive(&c.b, 10, T0, src_a, sizeof src_a, b, BEACON, &rx),
                     DUET_OK);
    assert_int_equal(rx.kind, DUET_DISCOVERY_ANNOUNCE);
    assert_int_equal(rx.port, 5555);
    assert_false(rx.reply); /* b does not listen, and an announce asks nothing */
    assert_int_equal(duet_discovery_stats(&c.b)->recognised, 1);
    /* The report ended b's query round. */
    assert_int_equal(duet_discovery_next_timeout(&c.b), UINT64_MAX);
    couple_dispose(&c);
}

static void test_windows(void **state)
{
    (void)state;
    couple_t c;
    couple_init(&c, 3, 7000, false, 0, false);
    uint8_t b[BEACON];
    duet_discovery_rx_t rx;
    /* Sent in the middle of window w; the receiver's clock is off by whole windows. */
    uint64_t sent = (T0 / W) * W + W / 2;
    struct {
        int64_t skew_windows;
        duet_err_t want;
    } cases[] = {{0, DUET_OK},     {1, DUET_OK},     {-1, DUET_OK},     {2, DUET_EAUTH},
                 {-2, DUET_EAUTH}, {30, DUET_EAUTH}, {-720, DUET_EAUTH}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        duet_discovery_beacon(&c.a, sent, DUET_DISCOVERY_ANNOUNCE, b);
        uint64_t at = (uint64_t)((int64_t)sent + cases[i].skew_windows * (int64_t)W);
        /* each from its own source so the buckets do not interfere */
        uint8_t src[4] = {10, 1, 0, (uint8_t)i};
        assert_int_equal(duet_discovery_receive(&c.b, 0, at, src, 4, b, BEACON, &rx),
                         cases[i].want);
    }
    /* A replay of an old window's beacon, long after: ignored like a stranger's. */
    duet_discovery_beacon(&c.a, T0 - 3 * W, DUET_DISCOVERY_ANNOUNCE, b);
    assert_int_equal(duet_discovery_receive(&c.b, 0, T0, src_a, 4, b, BEACON, &rx), DUET_EAUTH);
    /* A custom short window works the same way. */
    duet_discovery_config_t cfg = {.window_ms = 1000};
    duet_testrng_t r1, r2;
    duet_discovery_t x, y;
    duet_discovery_init(&x, c.key, 9, false, &cfg, duet_testrng_init(&r1, 5), 0);
    duet_discovery_init(&y, c.key, 0, true, &cfg, duet_testrng_init(&r2, 6), 0);
    duet_discovery_beacon(&x, 10500, DUET_DISCOVERY_ANNOUNCE, b);
    assert_int_equal(duet_discovery_receive(&y, 0, 11999, src_a, 4, b, BEACON, &rx), DUET_OK);
    assert_int_equal(duet_discovery_receive(&y, 0, 12000, src_b, 4, b, BEACON, &rx), DUET_EAUTH);
    /* Window 0: no window -1 to check, and no wrap-around to 2^64-1. */
    duet_discovery_beacon(&x, 5, DUET_DISCOVERY_ANNOUNCE, b);
    assert_int_equal(duet_discovery_receive(&y, 0, 0, src_a, 4, b, BEACON, &rx), DUET_OK);
    duet_discovery_dispose(&x);
    duet_discovery_dispose(&y);
    couple_dispose(&c);
}

static void test_strangers_and_two_couples(void **state)
{
    (void)state;
    couple_t c1, c2;
    couple_init(&c1, 4, 4001, true, 4002, true);
    couple_init(&c2, 5, 5001, true, 5002, true);
    uint8_t b[BEACON];
    duet_discovery_rx_t rx;
    /* Every beacon on the LAN reaches every device; each couple hears only its own. */
    duet_discovery_t *dev[4] = {&c1.a, &c1.b, &c2.a, &c2.b};
    uint16_t port[4] = {4001, 4002, 5001, 5002};
    for (int s = 0; s < 4; s++) {
        for (int kind = 1; kind <= 2; kind++) {
            duet_discovery_beacon(dev[s], T0, (duet_discovery_kind_t)kind, b);
            for (int r = 0; r < 4; r++) {
                uint8_t src[4] = {10, 0, 1, (uint8_t)(s * 8 + kind)};
                duet_err_t err = duet_discovery_receive(dev[r], 0, T0, src, 4, b, BEACON, &rx);
                if (r == s) {
                    assert_int_equal(err, DUET_EDUP); /* its own, looped back */
                } else if (r / 2 == s / 2) {
                    assert_int_equal(err, DUET_OK);
                    assert_int_equal(rx.port, port[s]);
                } else {
                    assert_int_equal(err, DUET_EAUTH);
                    assert_int_equal(rx.port, 0);
                    assert_false(rx.reply);
                }
            }
        }
    }
    /* A stranger with a key of its own, and a pairing key for some nameplate. */
    uint8_t skey[32];
    assert_int_equal(duet_discovery_key_pairing(skey, (const uint8_t *)"417", 3), DUET_OK);
    duet_testrng_t rs;
    duet_discovery_t stranger;
    duet_discovery_init(&stranger, skey, 1234, true, NULL, duet_testrng_init(&rs, 77), 0);
    duet_discovery_beacon(&stranger, T0, DUET_DISCOVERY_QUERY, b);
    assert_int_equal(duet_discovery_receive(&c1.a, 0, T0, src_b, 4, b, BEACON, &rx), DUET_EAUTH);
    assert_false(rx.reply);
    duet_discovery_dispose(&stranger);
    couple_dispose(&c1);
    couple_dispose(&c2);
}

static void test_pairing_by_nameplate(void **state)
{
    (void)state;
    /* The listener announces under the nameplate's key; the joiner queries under it and is
     * answered at once; a joiner with another nameplate hears nothing. */
    uint8_t k417[32], k418[32];
    assert_int_equal(duet_discovery_key_pairing(k417, (const uint8_t *)"417", 3), DUET_OK);
    assert_int_equal(duet_discovery_key_pairing(k418, (const uint8_t *)"418", 3), DUET_OK);
    duet_testrng_t r1, r2, r3;
    duet_discovery_t listener, joiner, wrong;
    duet_discovery_init(&listener, k417, 6000, false, NULL, duet_testrng_init(&r1, 1), 0);
    duet_discovery_init(&joiner, k417, 0, true, NULL, duet_testrng_init(&r2, 2), 0);
    duet_discovery_init(&wrong, k418, 0, true, NULL, duet_testrng_init(&r3, 3), 0);
    uint8_t q[BEACON];
    duet_discovery_rx_t rx, rx2;
    assert_int_equal(duet_discovery_poll(&joiner, 0), DUET_DISCOVERY_QUERY);
    duet_discovery_beacon(&joiner, T0, DUET_DISCOVERY_QUERY, q);
    assert_int_equal(duet_discovery_receive(&listener, 0, T0, src_b, 4, q, BEACON, &rx), DUET_OK);
    assert_true(rx.reply);
    assert_int_equal(rx.port, 0); /* the joiner does not listen: nothing to connect to */
    assert_int_equal(
        duet_discovery_receive(&joiner, 1, T0, src_a, 4, rx.reply_beacon, BEACON, &rx2), DUET_OK);
    assert_int_equal(rx2.port, 6000);
    assert_int_equal(duet_discovery_receive(&wrong, 1, T0, src_a, 4, rx.reply_beacon, BEACON, &rx2),
                     DUET_EAUTH);
    duet_discovery_beacon(&wrong, T0, DUET_DISCOVERY_QUERY, q);
    assert_int_equal(duet_discovery_receive(&listener, 0, T0, src_b, 4, q, BEACON, &rx),
                     DUET_EAUTH);
    assert_false(rx.reply);
    duet_discovery_dispose(&listener);
    duet_discovery_dispose(&joiner);
    duet_discovery_dispose(&wrong);
}

/* ---- bad input ----------------------------------------------------------------------- */

static void test_bad_input(void **state)
{
    (void)state;
    couple_t c;
    couple_init(&c, 6, 6001, false, 6002, false);
    uint8_t b[BEACON], buf[512];
    duet_discovery_rx_t rx;
    duet_discovery_beacon(&c.a, T0, DUET_DISCOVERY_ANNOUNCE, b);
    /* Truncated and oversized, including a valid beacon with bytes appended. */
    memcpy(buf, b, BEACON);
    randombytes_buf(buf + BEACON, sizeof buf - BEACON);
    for (size_t len = 0; len <= sizeof buf; len++) {
        if (len == BEACON) {
            continue;
        }
        assert_int_equal(duet_discovery_receive(&c.b, 0, T0, src_a, 4, buf, len, &rx),
                         DUET_EDECODE);
        assert_int_equal(rx.port, 0);
    }
    assert_int_equal(duet_discovery_receive(&c.b, 0, T0, src_a, 4, NULL, 0, &rx), DUET_EDECODE);
    /* Any bit flipped anywhere: refused. */
    for (size_t i = 0; i < BEACON * 8; i++) {
        memcpy(buf, b, BEACON);
        buf[i / 8] ^= (uint8_t)(1u << (i % 8));
        assert_int_equal(duet_discovery_receive(&c.b, 0, T0, src_a, 4, buf, BEACON, &rx),
                         DUET_EAUTH);
    }
    /* Random beacons of the right size: refused. */
    for (int i = 0; i < 10000; i++) {
        randombytes_buf(buf, BEACON);
        assert_int_equal(duet_discovery_receive(&c.b, 0, T0, src_a, 4, buf, BEACON, &rx),
                         DUET_EAUTH);
    }
    /* Authentic but malformed bodies: refused, nothing reported. */
    uint64_t w = T0 / W;
    const uint8_t bodies[][16] = {
        {3, 0, 0x10, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0}, /* unknown kind */
        {0, 0, 0x10, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0}, /* kind 0 */
        {1, 1, 0x10, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0}, /* flags */
        {1, 0, 0x10, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 1}, /* reserved */
        {2, 0, 0x10, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0x80, 0, 0, 0},
        {1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0}, /* announce without a port */
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        ref_seal(buf, c.key, w, bodies[i]);
        assert_int_equal(duet_discovery_receive(&c.b, 0, T0, src_a, 4, buf, BEACON, &rx),
                         DUET_EPROTO);
        assert_int_equal(rx.port, 0);
        assert_false(rx.reply);
    }
    const duet_discovery_stats_t *s = duet_discovery_stats(&c.b);
    assert_int_equal(s->recognised, 0);
    assert_int_equal(s->malformed, 6);
    assert_int_equal(s->bad_size, sizeof buf + 1); /* 512 wrong lengths + the NULL */
    /* The partner's real beacon still gets through after all that. */
    assert_int_equal(duet_discovery_receive(&c.b, 0, T0, src_a, 4, b, BEACON, &rx), DUET_OK);
    assert_int_equal(rx.port, 6001);
    couple_dispose(&c);
}

/* ---- unlinkability ------------------------------------------------------------------- */

static void test_nothing_stable(void **state)
{
    (void)state;
    couple_t c;
    couple_init(&c, 7, 7777, true, 0, false);
    enum { N = 40 };
    static uint8_t w1[N][BEACON], w2[N][BEACON];
    for (int i = 0; i < N; i++) {
        duet_discovery_beacon(&c.a, T0, (duet_discovery_kind_t)(1 + i % 2), w1[i]);
        duet_discovery_beacon(&c.a, T0 + W, (duet_discovery_kind_t)(1 + i % 2), w2[i]);
    }
    /* Across windows no two beacons share a run of 4 bytes (random data would, for these
     * sizes, with probability about 1e-3; the seeded rng makes the outcome fixed). */
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < N; j++) {
            assert_false(shares_run(w1[i], w2[j], BEACON, 4));
        }
    }
    /* Nor within a window: every beacon is fresh. */
    for (int i = 0; i < N; i++) {
        for (int j = i + 1; j < N; j++) {
            assert_false(shares_run(w1[i], w1[j], BEACON, 4));
        }
    }
    /* No byte position is constant: XOR of consecutive beacons is never zero at the same
     * offset for all of them. */
    for (size_t off = 0; off < BEACON; off++) {
        int same = 0;
        for (int i = 1; i < N; i++) {
            same += w1[i][off] == w1[0][off];
        }
        assert_true(same < N / 4);
    }
    /* The instance id and the key never appear in clear. */
    for (int i = 0; i < N; i++) {
        for (size_t off = 0; off + 8 <= BEACON; off++) {
            assert_memory_not_equal(w1[i] + off, c.a.instance, 8);
        }
        for (size_t off = 0; off + 4 <= 32; off++) {
            for (size_t p = 0; p + 4 <= BEACON; p++) {
                assert_memory_not_equal(w1[i] + p, c.key + off, 4);
            }
        }
    }
    couple_dispose(&c);
}

/* ---- query and answer ---------------------------------------------------------------- */

static void test_query_answered_at_once(void **state)
{
    (void)state;
    couple_t c;
    couple_init(&c, 8, 8001, false, 0, true); /* a listens, b seeks */
    uint8_t q[BEACON];
    duet_discovery_rx_t rx, rx2;
    assert_int_equal(duet_discovery_poll(&c.b, 100), DUET_DISCOVERY_QUERY);
    duet_discovery_beacon(&c.b, T0, DUET_DISCOVERY_QUERY, q);
    assert_int_equal(duet_discovery_receive(&c.a, 100, T0, src_b, 4, q, BEACON, &rx), DUET_OK);
    assert_int_equal(rx.kind, DUET_DISCOVERY_QUERY);
    assert_true(rx.reply);
    assert_int_equal(duet_discovery_stats(&c.a)->replies, 1);
    assert_int_equal(duet_discovery_receive(&c.b, 101, T0, src_a, 4, rx.reply_beacon, BEACON, &rx2),
                     DUET_OK);
    assert_int_equal(rx2.kind, DUET_DISCOVERY_ANNOUNCE);
    assert_int_equal(rx2.port, 8001);
    assert_false(rx2.reply); /* an announce is never answered: no ping-pong */

    /* A device that does not listen hears queries but has nothing to answer. */
    couple_t d;
    couple_init(&d, 9, 0, true, 0, true);
    duet_discovery_beacon(&d.a, T0, DUET_DISCOVERY_QUERY, q);
    assert_int_equal(duet_discovery_receive(&d.b, 0, T0, src_a, 4, q, BEACON, &rx), DUET_OK);
    assert_false(rx.reply);
    assert_int_equal(rx.port, 0);
    couple_dispose(&c);
    couple_dispose(&d);
}

/* ---- schedule ------------------------------------------------------------------------ */

/* Poll e from t until it sends kind `count` times; check each gap against the doubling
 * interval from min to max with jitter [0.75, 1.25). */
static void check_backoff(duet_discovery_t *e, uint64_t t, duet_discovery_kind_t kind, uint64_t min,
                          uint64_t max, int count)
{
    uint64_t iv = min;
    assert_int_equal(duet_discovery_poll(e, t), kind);
    assert_int_equal(duet_discovery_poll(e, t), DUET_DISCOVERY_NONE);
    for (int i = 0; i < count; i++) {
        uint64_t next = duet_discovery_next_timeout(e);
        assert_true(next >= t + iv * 3 / 4);
        assert_true(next < t + iv * 5 / 4);
        assert_int_equal(duet_discovery_poll(e, next - 1), DUET_DISCOVERY_NONE);
        assert_int_equal(duet_discovery_poll(e, next), kind);
        t = next;
        iv = iv * 2 > max ? max : iv * 2;
    }
}

static void test_schedule(void **state)
{
    (void)state;
    uint8_t key[32] = {1};
    duet_testrng_t r;
    duet_discovery_t e;

    /* A seeker that does not listen: queries at once, backs off to 30 s, never announces. */
    duet_discovery_init(&e, key, 0, true, NULL, duet_testrng_init(&r, 1), 5000);
    assert_int_equal(duet_discovery_next_timeout(&e), 5000);
    check_backoff(&e, 5000, DUET_DISCOVERY_QUERY, 250, 30000, 12);
    assert_int_equal(duet_discovery_stats(&e)->sent_announces, 0);
    /* Found: the round ends; a kick starts a new one at once, from the shortest interval. */
    duet_discovery_seek(&e, false, 0);
    assert_int_equal(duet_discovery_next_timeout(&e), UINT64_MAX);
    duet_discovery_kick(&e, 900000);
    check_backoff(&e, 900000, DUET_DISCOVERY_QUERY, 250, 30000, 3);
    duet_discovery_dispose(&e);

    /* A listener that does not seek: announces at once, then 2 s, 4 s, ... up to 60 s. */
    duet_discovery_init(&e, key, 4000, false, NULL, duet_testrng_init(&r, 2), 0);
    assert_int_equal(duet_discovery_next_timeout(&e), 0);
    check_backoff(&e, 0, DUET_DISCOVERY_ANNOUNCE, 2000, 60000, 10);
    assert_int_equal(duet_discovery_stats(&e)->sent_queries, 0);
    /* A new port is announced at once. */
    duet_discovery_set_port(&e, 4001, 1000000);
    assert_int_equal(duet_discovery_next_timeout(&e), 1000000);
    /* Port 0: nothing left to do. */
    duet_discovery_set_port(&e, 0, 1000000);
    assert_int_equal(duet_discovery_next_timeout(&e), UINT64_MAX);
    duet_discovery_dispose(&e);

    /* Both: the first beacon is a query (it carries the port); the announce comes later. */
    duet_discovery_init(&e, key, 4000, true, NULL, duet_testrng_init(&r, 3), 0);
    assert_int_equal(duet_discovery_poll(&e, 0), DUET_DISCOVERY_QUERY);
    assert_int_equal(duet_discovery_poll(&e, 0), DUET_DISCOVERY_NONE);
    duet_discovery_seek(&e, false, 0);
    uint64_t t = duet_discovery_next_timeout(&e);
    assert_true(t >= 1500 && t < 2500);
    assert_int_equal(duet_discovery_poll(&e, t), DUET_DISCOVERY_ANNOUNCE);
    duet_discovery_dispose(&e);

    /* Neither: silent. */
    duet_discovery_init(&e, key, 0, false, NULL, duet_testrng_init(&r, 4), 0);
    assert_int_equal(duet_discovery_next_timeout(&e), UINT64_MAX);
    assert_int_equal(duet_discovery_poll(&e, UINT64_MAX - 1), DUET_DISCOVERY_NONE);
    duet_discovery_dispose(&e);

    /* Jitter: two devices started together drift apart. */
    duet_testrng_t r1, r2;
    duet_discovery_t x, y;
    duet_discovery_init(&x, key, 1, false, NULL, duet_testrng_init(&r1, 10), 0);
    duet_discovery_init(&y, key, 1, false, NULL, duet_testrng_init(&r2, 11), 0);
    int differ = 0;
    uint64_t tx = 0, ty = 0;
    for (int i = 0; i < 8; i++) {
        (void)duet_discovery_poll(&x, tx);
        (void)duet_discovery_poll(&y, ty);
        tx = duet_discovery_next_timeout(&x);
        ty = duet_discovery_next_timeout(&y);
        differ += tx != ty;
    }
    assert_true(differ >= 7);
    duet_discovery_dispose(&x);
    duet_discovery_dispose(&y);
}

/* ---- rate limits --------------------------------------------------------------------- */

static void test_rate_limits(void **state)
{
    (void)state;
    couple_t c;
    couple_init(&c, 10, 1001, false, 1002, false);
    uint8_t q[BEACON];
    duet_discovery_rx_t rx;
    duet_discovery_beacon(&c.a, T0, DUET_DISCOVERY_QUERY, q);
    /* One source replaying an authentic query: a burst of 4, then one per 500 ms. */
    int ok = 0;
    for (int i = 0; i < 100; i++) {
        duet_err_t err = duet_discovery_receive(&c.b, 1000, T0, src_a, 4, q, BEACON, &rx);
        assert_true(err == DUET_OK || err == DUET_ERATELIMIT);
        ok += err == DUET_OK;
        if (err != DUET_OK) {
            assert_false(rx.reply);
            assert_int_equal(rx.port, 0);
        }
    }
    assert_int_equal(ok, DUET_DISCOVERY_SOURCE_BURST);
    assert_int_equal(duet_discovery_receive(&c.b, 1499, T0, src_a, 4, q, BEACON, &rx),
                     DUET_ERATELIMIT);
    assert_int_equal(duet_discovery_receive(&c.b, 1500, T0, src_a, 4, q, BEACON, &rx), DUET_OK);
    assert_true(rx.reply);
    /* Another source is not held back by the first. */
    assert_int_equal(duet_discovery_receive(&c.b, 1500, T0, src_b, 4, q, BEACON, &rx), DUET_OK);
    /* Many sources (spoofed addresses): the global bucket caps them all. It was full again
     * at 1500 (500 ms refill 10 tokens, capped at the burst of 32), then two were spent. */
    ok = 0;
    for (int i = 0; i < 200; i++) {
        uint8_t src[16] = {0xfe, 0x80, 0, 0, 0, 0, 0, 0, (uint8_t)i, (uint8_t)(i >> 8)};
        ok += duet_discovery_receive(&c.b, 1500, T0, src, sizeof src, q, BEACON, &rx) == DUET_OK;
    }
    assert_int_equal(ok, DUET_DISCOVERY_GLOBAL_BURST - 2);
    /* Time refills it. */
    uint8_t src[4] = {192, 168, 1, 1};
    assert_int_equal(duet_discovery_receive(&c.b, 1500 + DUET_DISCOVERY_GLOBAL_REFILL_MS, T0, src,
                                            4, q, BEACON, &rx),
                     DUET_OK);
    /* Own beacons and strangers spend no tokens: checked before the buckets. */
    assert_int_equal(duet_discovery_stats(&c.b)->own, 0);
    couple_dispose(&c);
}

/* ---- a stranger who replays a beacon and connects ------------------------------------- */

static duet_err_t kk_first(const uint8_t *init_s, const uint8_t *init_rs, const uint8_t *resp_s,
                           const uint8_t *resp_rs, uint8_t *payload_seen, size_t *seen_len)
{
    static const char *name = "Noise_KK_25519_ChaChaPoly_BLAKE2b";
    duet_testrng_t r1, r2;
    duet_noise_hs_t i, r;
    duet_noise_keys_t ki = {.s = init_s, .rs = init_rs};
    duet_noise_keys_t kr = {.s = resp_s, .rs = resp_rs};
    assert_int_equal(duet_noise_hs_init(&i, name, DUET_NOISE_INITIATOR, (const uint8_t *)"duet", 4,
                                        &ki, duet_testrng_init(&r1, 1)),
                     DUET_OK);
    assert_int_equal(duet_noise_hs_init(&r, name, DUET_NOISE_RESPONDER, (const uint8_t *)"duet", 4,
                                        &kr, duet_testrng_init(&r2, 2)),
                     DUET_OK);
    uint8_t msg[256];
    size_t len;
    assert_int_equal(duet_noise_hs_write(&i, (const uint8_t *)"v1", 2, msg, sizeof msg, &len),
                     DUET_OK);
    duet_err_t err = duet_noise_hs_read(&r, msg, len, payload_seen, 64, seen_len);
    duet_noise_hs_dispose(&i);
    duet_noise_hs_dispose(&r);
    return err;
}

static void test_stranger_connects(void **state)
{
    (void)state;
    /* Partners a and b (statics known to each other), a stranger s. */
    uint8_t as[32], ap[32], bs[32], bp[32], ss[32], sp[32];
    duet_testrng_t r;
    duet_rng_t rng = duet_testrng_init(&r, 99);
    duet_crypto_x25519_keypair(ap, as, &rng);
    duet_crypto_x25519_keypair(bp, bs, &rng);
    duet_crypto_x25519_keypair(sp, ss, &rng);

    couple_t c;
    couple_init(&c, 11, 2001, true, 2002, true);
    uint8_t b[BEACON];
    duet_discovery_rx_t rx;
    /* The stranger captured b's announce and replays it from its own address: a reports a
     * partner there (a beacon says only "try") and connects... */
    duet_discovery_beacon(&c.b, T0, DUET_DISCOVERY_ANNOUNCE, b);
    uint8_t s_addr[4] = {10, 0, 0, 66};
    assert_int_equal(duet_discovery_receive(&c.a, 0, T0, s_addr, 4, b, BEACON, &rx), DUET_OK);
    assert_int_equal(rx.port, 2002);
    /* ... with Noise KK expecting b's static key. The stranger, even knowing a's public key,
     * cannot read the first message: it learns nothing, not even the version. */
    uint8_t seen[64];
    size_t seen_len = 99;
    assert_int_equal(kk_first(as, bp, ss, ap, seen, &seen_len), DUET_EAUTH);
    assert_int_equal(seen_len, 0);
    /* The stranger connects to a, claiming to be b: a refuses the first message. */
    assert_int_equal(kk_first(ss, ap, as, bp, seen, &seen_len), DUET_EAUTH);
    /* The real partner gets through. */
    assert_int_equal(kk_first(bs, ap, as, bp, seen, &seen_len), DUET_OK);
    assert_int_equal(seen_len, 2);
    couple_dispose(&c);
}

/* ---- net/discovery on the loopback interface ------------------------------------------ */

typedef struct found_box {
    int n;
    struct sockaddr_in addr;
    uv_loop_t *loop;
} found_box_t;

static void on_found(void *ctx, const struct sockaddr *a)
{
    found_box_t *f = ctx;
    f->n++;
    assert_int_equal(a->sa_family, AF_INET);
    memcpy(&f->addr, a, sizeof f->addr);
}

static void on_tick(uv_timer_t *t)
{
    found_box_t *f = t->data;
    uv_stop(f->loop);
}

static void test_lan_loopback(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    uint8_t key[32], other[32], secret[32];
    memset(secret, 0x5a, sizeof secret);
    duet_discovery_key_paired(key, secret);
    secret[0] ^= 1;
    duet_discovery_key_paired(other, secret);
    /* lo only, IPv4, a port of our own so that parallel runs do not meet. */
    duet_lan_options_t opt = {.loopback = true,
                              .only_iface = "lo",
                              .no_ipv6 = true,
                              .udp_port = (uint16_t)(20000 + randombytes_uniform(30000))};
    found_box_t fa = {.loop = &loop}, fb = {.loop = &loop}, fc = {.loop = &loop};
    duet_lan_t *a, *b, *c;

    /* A group that is not multicast is refused, before any handle exists. */
    duet_lan_options_t bad = {.group4 = "10.0.0.1"};
    a = (duet_lan_t *)&bad;
    assert_int_equal(duet_lan_start(&a, &loop, key, 0, true, &bad, on_found, &fa), DUET_EADDR);
    assert_null(a);

    assert_int_equal(duet_lan_start(&a, &loop, key, 5001, false, &opt, on_found, &fa), DUET_OK);
    if (duet_lan_interfaces(a) == 0) {
        duet_lan_stop(a);
        uv_run(&loop, UV_RUN_DEFAULT);
        assert_int_equal(uv_loop_close(&loop), 0);
        skip(); /* no usable loopback interface here */
    }
    assert_int_equal(duet_lan_start(&b, &loop, key, 0, true, &opt, on_found, &fb), DUET_OK);
    assert_int_equal(duet_lan_start(&c, &loop, other, 0, true, &opt, on_found, &fc), DUET_OK);
    uv_timer_t tick;
    uv_timer_init(&loop, &tick);
    tick.data = &fb;
    for (int i = 0; i < 30 && fb.n == 0; i++) { /* at most 3 s */
        uv_timer_start(&tick, on_tick, 100, 0);
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    assert_true(fb.n >= 1);
    assert_int_equal(ntohs(fb.addr.sin_port), 5001);
    assert_int_equal(ntohl(fb.addr.sin_addr.s_addr), 0x7f000001);
    assert_true(duet_lan_stats(a)->replies >= 1); /* b found a by its answer */
    assert_int_equal(fa.n, 0);                    /* b does not listen: nothing to report */
    assert_int_equal(fc.n, 0);                    /* the stranger heard, and found nothing */
    assert_true(duet_lan_stats(c)->unknown >= 1);
    assert_int_equal(duet_lan_stats(c)->recognised, 0);
    assert_true(duet_lan_counters(b)->beacons_sent >= 1);

    duet_lan_stop(a);
    duet_lan_stop(b);
    duet_lan_stop(c);
    duet_lan_stop(NULL);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0); /* every handle closed, memory freed */
}

int main(void)
{
    if (sodium_init() < 0) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys_match_document),
        cmocka_unit_test(test_beacon_matches_document),
        cmocka_unit_test(test_partner_recognised),
        cmocka_unit_test(test_windows),
        cmocka_unit_test(test_strangers_and_two_couples),
        cmocka_unit_test(test_pairing_by_nameplate),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_nothing_stable),
        cmocka_unit_test(test_query_answered_at_once),
        cmocka_unit_test(test_schedule),
        cmocka_unit_test(test_rate_limits),
        cmocka_unit_test(test_stranger_connects),
        cmocka_unit_test(test_lan_loopback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
