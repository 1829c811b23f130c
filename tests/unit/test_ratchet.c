/*
 * core/ratchet: the Double Ratchet with header encryption, tested as a user of it would
 * check it, with two engines wired together in memory:
 *  - known answers from an independent implementation (tests/vectors/duet/ratchet-kat.json,
 *    made by tools/ratchet_kat.py): every envelope byte-exact, so a changed KDF label, a
 *    swapped HKDF salt/ikm, a header field or AD layout fails; Signal's KDF_CK constants
 *    (tests/vectors/double-ratchet) through the parameterised message-key expansion;
 *  - delivery: in order both ways, Bob first, Alice first, interleaved, out of order within
 *    and across chains, loss, duplicates and replays (also across a save/load restart);
 *  - limits: MAX_SKIP (state unchanged, later in-window messages still open), the bounded
 *    skipped-key store (oldest evicted), sizes;
 *  - tampering with every byte of an envelope (state byte-for-byte unchanged);
 *  - forward secrecy, post-compromise security, what the header hides;
 *  - strict loading of saved states.
 * "State unchanged" is checked by comparing duet_ratchet_save output before and after.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>

#include "crypto.h"
#include "ratchet.h"
#include "testrng.h"

/* ---- helpers ------------------------------------------------------------------------- */

static json_t *load_vectors(const char *rel)
{
    const char *dir = getenv("DUET_VECTORS");
    char path[1024];
    assert_non_null(dir);
    int w = snprintf(path, sizeof path, "%s/%s", dir, rel);
    assert_true(w > 0 && (size_t)w < sizeof path);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (root == NULL) {
        fail_msg("%s: %s (line %d)", path, jerr.text, jerr.line);
    }
    return root;
}

/* Decode hex into a fresh buffer (at least 1 byte); *len its length. */
static uint8_t *hex_dup(const char *hex, size_t *len)
{
    assert_non_null(hex);
    size_t hex_len = strlen(hex);
    uint8_t *bin = malloc(hex_len / 2 + 1);
    assert_non_null(bin);
    assert_int_equal(sodium_hex2bin(bin, hex_len / 2 + 1, hex, hex_len, NULL, len, NULL), 0);
    assert_int_equal(*len * 2, hex_len);
    return bin;
}

static uint8_t *hex_field(const json_t *obj, const char *name, size_t *len)
{
    return hex_dup(json_string_value(json_object_get(obj, name)), len);
}

/* Decode a hex field that must be exactly n bytes into out. */
static void hex_exact(const json_t *obj, const char *name, uint8_t *out, size_t n)
{
    size_t len;
    uint8_t *b = hex_field(obj, name, &len);
    assert_int_equal(len, n);
    memcpy(out, b, n);
    free(b);
}

/* A saved state, for "unchanged" comparisons. */
typedef struct {
    uint8_t *buf;
    size_t len;
} snap_t;

static snap_t snap(const duet_ratchet_t *r)
{
    snap_t s = {malloc(DUET_RATCHET_MAX_SAVED), 0};
    assert_non_null(s.buf);
    assert_int_equal(duet_ratchet_save(r, s.buf, DUET_RATCHET_MAX_SAVED, &s.len), DUET_OK);
    assert_int_equal(s.len, duet_ratchet_saved_len(r));
    return s;
}

static void snap_free(snap_t *s)
{
    free(s->buf);
    s->buf = NULL;
}

static void assert_state_is(const duet_ratchet_t *r, const snap_t *s)
{
    snap_t now = snap(r);
    assert_int_equal(now.len, s->len);
    assert_memory_equal(now.buf, s->buf, s->len);
    snap_free(&now);
}

/* Two paired engines with their own seeded rngs. */
typedef struct {
    duet_ratchet_t *a, *b;
    duet_testrng_t ta, tb;
    duet_rng_t ra, rb;
    uint8_t hk_a[32], nhk_b[32]; /* kept to forge authentic headers */
} pair_t;

static void pair_init(pair_t *p, uint64_t seed)
{
    duet_testrng_t tk;
    duet_rng_t rk = duet_testrng_init(&tk, seed);
    uint8_t sk[32], hk_a[32], nhk_b[32], a0[32], a0_pub[32], b0[32], b0_pub[32];
    duet_rng_fill(&rk, sk, 32);
    duet_rng_fill(&rk, hk_a, 32);
    duet_rng_fill(&rk, nhk_b, 32);
    duet_crypto_x25519_keypair(a0_pub, a0, &rk);
    duet_crypto_x25519_keypair(b0_pub, b0, &rk);
    p->ra = duet_testrng_init(&p->ta, seed * 3 + 1);
    p->rb = duet_testrng_init(&p->tb, seed * 3 + 2);
    assert_int_equal(duet_ratchet_new(&p->a), DUET_OK);
    assert_int_equal(duet_ratchet_new(&p->b), DUET_OK);
    assert_int_equal(duet_ratchet_init_alice(p->a, sk, hk_a, nhk_b, a0, b0_pub), DUET_OK);
    assert_int_equal(duet_ratchet_init_bob(p->b, sk, hk_a, nhk_b, b0, a0_pub, &p->rb), DUET_OK);
    memcpy(p->hk_a, hk_a, 32);
    memcpy(p->nhk_b, nhk_b, 32);
}

static void pair_free(pair_t *p)
{
    duet_ratchet_free(p->a);
    duet_ratchet_free(p->b);
}

#define ENV_CAP 512u
static const uint8_t AD[] = "duet test ad";

typedef struct {
    uint8_t b[ENV_CAP];
    size_t len;
} env_t;

/* Seal text (as bytes, no NUL) with the test AD. */
static env_t seal(duet_ratchet_t *r, const duet_rng_t *rng, const char *text)
{
    env_t e;
    size_t n = strlen(text);
    assert_int_equal(duet_ratchet_encrypt(r, rng, AD, sizeof AD, (const uint8_t *)text, n, e.b,
                                          sizeof e.b, &e.len),
                     DUET_OK);
    assert_int_equal(e.len, duet_ratchet_envelope_len(n));
    return e;
}

static void open_ok(duet_ratchet_t *r, const duet_rng_t *rng, const env_t *e, const char *text)
{
    uint8_t out[ENV_CAP];
    size_t len = 999;
    duet_err_t err = duet_ratchet_decrypt(r, rng, AD, sizeof AD, e->b, e->len, out, sizeof out,
                                          &len);
    if (err != DUET_OK) {
        fail_msg("decrypt \"%s\": %s", text, duet_err_name(err));
    }
    assert_int_equal(len, strlen(text));
    assert_memory_equal(out, text, len);
}

/* Decrypt must fail with `want`, leaving the state byte-for-byte unchanged. */
static void open_fails(duet_ratchet_t *r, const duet_rng_t *rng, const uint8_t *env,
                       size_t env_len, duet_err_t want)
{
    uint8_t out[ENV_CAP];
    size_t len = 999;
    snap_t before = snap(r);
    duet_err_t err = duet_ratchet_decrypt(r, rng, AD, sizeof AD, env, env_len, out, sizeof out,
                                          &len);
    if (err != want) {
        fail_msg("expected %s, got %s", duet_err_name(want), duet_err_name(err));
    }
    assert_int_equal(len, 0);
    assert_state_is(r, &before);
    snap_free(&before);
}

static void text_of(char *buf, size_t cap, const char *who, unsigned i)
{
    int w = snprintf(buf, cap, "%s message number %u", who, i);
    assert_true(w > 0 && (size_t)w < cap);
}

/* ---- known answers ------------------------------------------------------------------- */

/* An rng that replays the byte strings of a JSON array, each of the exact length asked. */
typedef struct {
    const json_t *items;
    size_t next;
    bool bad;
} tape_t;

static void tape_fill(void *ctx, uint8_t *out, size_t n)
{
    tape_t *t = ctx;
    const char *hex = json_string_value(json_array_get(t->items, t->next++));
    size_t len = 0;
    if (hex == NULL || sodium_hex2bin(out, n, hex, strlen(hex), NULL, &len, NULL) != 0 ||
        len != n) {
        t->bad = true;
        memset(out, 0, n);
    }
}

static void tape_check(const tape_t *t)
{
    assert_false(t->bad);
    assert_int_equal(t->next, json_array_size(t->items));
}

static void test_kat_envelopes(void **state)
{
    (void)state;
    json_t *root = load_vectors("duet/ratchet-kat.json");
    const json_t *init = json_object_get(root, "init");
    uint8_t sk[32], hk_a[32], nhk_b[32], a0[32], a0_pub[32], b0[32], b0_pub[32], pub[32];
    hex_exact(init, "sk", sk, 32);
    hex_exact(init, "hk_a", hk_a, 32);
    hex_exact(init, "nhk_b", nhk_b, 32);
    hex_exact(init, "a0_priv", a0, 32);
    hex_exact(init, "a0_pub", a0_pub, 32);
    hex_exact(init, "b0_priv", b0, 32);
    hex_exact(init, "b0_pub", b0_pub, 32);
    duet_crypto_x25519_public(pub, a0);
    assert_memory_equal(pub, a0_pub, 32);

    duet_ratchet_t *alice, *bob;
    assert_int_equal(duet_ratchet_new(&alice), DUET_OK);
    assert_int_equal(duet_ratchet_new(&bob), DUET_OK);
    assert_int_equal(duet_ratchet_init_alice(alice, sk, hk_a, nhk_b, a0, b0_pub), DUET_OK);
    tape_t tape = {json_object_get(init, "bob_rng"), 0, false};
    duet_rng_t rng = {tape_fill, &tape};
    assert_int_equal(duet_ratchet_init_bob(bob, sk, hk_a, nhk_b, b0, a0_pub, &rng), DUET_OK);
    tape_check(&tape);

    json_t *sent = json_object(); /* id -> envelope hex */
    size_t i, nsend = 0, nrecv = 0;
    json_t *step;
    json_array_foreach(json_object_get(root, "steps"), i, step) {
        const char *op = json_string_value(json_object_get(step, "op"));
        const char *who = json_string_value(json_object_get(step, "who"));
        const char *id = json_string_value(json_object_get(step, "id"));
        assert_non_null(op);
        assert_non_null(who);
        assert_non_null(id);
        duet_ratchet_t *r = strcmp(who, "alice") == 0 ? alice : bob;
        tape = (tape_t){json_object_get(step, "rng"), 0, false};
        size_t ad_len, pt_len, env_len;
        uint8_t *ad = hex_field(step, "ad", &ad_len);
        uint8_t *pt = hex_field(step, "plaintext", &pt_len);
        uint8_t out[ENV_CAP];
        size_t out_len;
        if (strcmp(op, "send") == 0) {
            uint8_t *want = hex_field(step, "envelope", &env_len);
            assert_int_equal(duet_ratchet_encrypt(r, &rng, ad_len ? ad : NULL, ad_len,
                                                  pt_len ? pt : NULL, pt_len, out, sizeof out,
                                                  &out_len),
                             DUET_OK);
            assert_int_equal(out_len, env_len);
            assert_memory_equal(out, want, env_len);
            json_object_set(sent, id, json_object_get(step, "envelope"));
            free(want);
            nsend++;
        } else {
            assert_string_equal(op, "recv");
            uint8_t *env = hex_dup(json_string_value(json_object_get(sent, id)), &env_len);
            duet_err_t err = duet_ratchet_decrypt(r, &rng, ad_len ? ad : NULL, ad_len, env,
                                                  env_len, out, sizeof out, &out_len);
            if (err != DUET_OK) {
                fail_msg("step %zu (%s receives %s): %s", i, who, id, duet_err_name(err));
            }
            assert_int_equal(out_len, pt_len);
            assert_memory_equal(out, pt, pt_len);
            free(env);
            nrecv++;
        }
        tape_check(&tape);
        free(ad), free(pt);
    }
    assert_true(nsend > 0 && nrecv > 0);
    printf("# ratchet-kat: %zu envelopes reproduced byte-exact, %zu opened\n", nsend, nrecv);
    json_decref(sent);
    duet_ratchet_free(alice);
    duet_ratchet_free(bob);
    json_decref(root);
}

/* KDF_RK_HE and KDF_CK against the script's values. */
static void test_kat_kdfs(void **state)
{
    (void)state;
    json_t *root = load_vectors("duet/ratchet-kat.json");
    size_t i, ran = 0;
    json_t *c;
    json_array_foreach(json_object_get(root, "kdf_rk"), i, c) {
        uint8_t rk[32], dh[32], want_rk[32], want_ck[32], want_nhk[32], a[32], b[32], d[32];
        hex_exact(c, "rk", rk, 32);
        hex_exact(c, "dh", dh, 32);
        hex_exact(c, "next_rk", want_rk, 32);
        hex_exact(c, "ck", want_ck, 32);
        hex_exact(c, "nhk", want_nhk, 32);
        duet_ratchet_kdf_rk(rk, dh, a, b, d);
        assert_memory_equal(a, want_rk, 32);
        assert_memory_equal(b, want_ck, 32);
        assert_memory_equal(d, want_nhk, 32);
        ran++;
    }
    json_array_foreach(json_object_get(root, "kdf_ck"), i, c) {
        uint8_t ck[32], want_next[32], want_mk[32], next[32], mk[32];
        hex_exact(c, "ck", ck, 32);
        hex_exact(c, "next_ck", want_next, 32);
        hex_exact(c, "mk", want_mk, 32);
        duet_ratchet_kdf_ck(ck, next, mk);
        assert_memory_equal(next, want_next, 32);
        assert_memory_equal(mk, want_mk, 32);
        ran++;
    }
    assert_int_equal(ran, 2);
    json_decref(root);
}

/* Signal's chain-key KATs: KDF_CK with HMAC constants 0x01/0x02, then HKDF-SHA-256 with
 * Signal's label and length (a protocol constant, not vector data). The v3 case must match;
 * the v2-legacy case used a non-RFC-5869 HKDF, so its chain key matches but its cipher and
 * MAC keys must NOT. */
static void test_libsignal_chain_key(void **state)
{
    (void)state;
    static const char signal_label[] = "WhisperMessageKeys";
    json_t *root = load_vectors("double-ratchet/libsignal-kdf-kat.json");
    size_t i, v3 = 0, v2 = 0;
    json_t *t;
    json_array_foreach(json_object_get(json_object_get(root, "chain_key_kdf"), "tests"), i, t) {
        const char *id = json_string_value(json_object_get(t, "id"));
        const char *hkdf = json_string_value(json_object_get(t, "hkdf"));
        const json_t *pub = json_object_get(t, "published");
        const json_t *computed = json_object_get(t, "collector_computed");
        uint8_t ck[32], want_next[32], want_cipher[32], want_mac[32], want_seed[32], iv[16];
        uint8_t next[32], seed[32], okm[80];
        assert_non_null(id);
        assert_non_null(hkdf);
        hex_exact(pub, "chain_key", ck, 32);
        hex_exact(pub, "next_chain_key", want_next, 32);
        hex_exact(pub, "cipher_key", want_cipher, 32);
        hex_exact(pub, "mac_key", want_mac, 32);
        hex_exact(computed, "message_key_seed", want_seed, 32);
        hex_exact(computed, "iv", iv, 16);

        duet_ratchet_kdf_ck(ck, next, seed);
        assert_memory_equal(next, want_next, 32);
        assert_memory_equal(seed, want_seed, 32);
        assert_int_equal(duet_ratchet_kdf_mk(seed, (const uint8_t *)signal_label,
                                             sizeof signal_label - 1, okm, sizeof okm),
                         DUET_OK);
        if (strcmp(hkdf, "HKDFv3") == 0) {
            assert_memory_equal(okm, want_cipher, 32);
            assert_memory_equal(okm + 32, want_mac, 32);
            assert_memory_equal(okm + 64, iv, 16);
            v3++;
        } else {
            assert_string_equal(hkdf, "HKDFv2");
            assert_memory_not_equal(okm, want_cipher, 32);
            assert_memory_not_equal(okm + 32, want_mac, 32);
            v2++;
        }
    }
    assert_int_equal(v3, 1);
    assert_int_equal(v2, 1);
    json_decref(root);
}

/* ---- delivery ------------------------------------------------------------------------ */

static void test_in_order_both_ways(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, 10);
    char text[64];
    /* A conversation with random turns and run lengths. */
    for (unsigned turn = 0; turn < 40; turn++) {
        bool from_a = duet_testrng_uniform(&p.ta, 2) == 0;
        unsigned run = 1 + duet_testrng_uniform(&p.ta, 4);
        for (unsigned k = 0; k < run; k++) {
            text_of(text, sizeof text, from_a ? "alice" : "bob", turn * 10 + k);
            env_t e = from_a ? seal(p.a, &p.ra, text) : seal(p.b, &p.rb, text);
            open_ok(from_a ? p.b : p.a, from_a ? &p.rb : &p.ra, &e, text);
        }
    }
    assert_int_equal(duet_ratchet_skipped_count(p.a), 0);
    assert_int_equal(duet_ratchet_skipped_count(p.b), 0);
    pair_free(&p);
}

static void test_bob_first(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, 11);
    env_t e1 = seal(p.b, &p.rb, "bob 1"), e2 = seal(p.b, &p.rb, "bob 2");
    open_ok(p.a, &p.ra, &e1, "bob 1");
    open_ok(p.a, &p.ra, &e2, "bob 2");
    env_t e3 = seal(p.a, &p.ra, "alice 1");
    open_ok(p.b, &p.rb, &e3, "alice 1");
    pair_free(&p);
}

static void test_alice_first(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, 12);
    env_t e1 = seal(p.a, &p.ra, "alice 1"), e2 = seal(p.a, &p.ra, "alice 2");
    open_ok(p.b, &p.rb, &e1, "alice 1");
    open_ok(p.b, &p.rb, &e2, "alice 2");
    env_t e3 = seal(p.b, &p.rb, "bob 1");
    open_ok(p.a, &p.ra, &e3, "bob 1");
    env_t e4 = seal(p.a, &p.ra, "alice 3");
    open_ok(p.b, &p.rb, &e4, "alice 3");
    pair_free(&p);
}

/* Both write before either has read, several times over, delivered in crossing orders. */
static void test_interleaved(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, 13);
    for (unsigned round = 0; round < 5; round++) {
        env_t a1 = seal(p.a, &p.ra, "a1"), b1 = seal(p.b, &p.rb, "b1");
        env_t a2 = seal(p.a, &p.ra, "a2"), b2 = seal(p.b, &p.rb, "b2");
        if (round % 2 == 0) {
            open_ok(p.b, &p.rb, &a1, "a1");
            open_ok(p.a, &p.ra, &b2, "b2");
            open_ok(p.b, &p.rb, &a2, "a2");
            open_ok(p.a, &p.ra, &b1, "b1");
        } else {
            open_ok(p.a, &p.ra, &b1, "b1");
            open_ok(p.b, &p.rb, &a2, "a2");
            open_ok(p.a, &p.ra, &b2, "b2");
            open_ok(p.b, &p.rb, &a1, "a1");
        }
    }
    assert_int_equal(duet_ratchet_skipped_count(p.a), 0);
    assert_int_equal(duet_ratchet_skipped_count(p.b), 0);
    pair_free(&p);
}

static void shuffle(duet_testrng_t *t, unsigned *order, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        order[i] = i;
    }
    for (unsigned i = n; i > 1; i--) {
        unsigned j = duet_testrng_uniform(t, i);
        unsigned tmp = order[i - 1];
        order[i - 1] = order[j];
        order[j] = tmp;
    }
}

static void test_out_of_order_within_chain(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, 14);
    enum { N = 20 };
    env_t e[N];
    char text[N][64];
    unsigned order[N];
    for (unsigned i = 0; i < N; i++) {
        text_of(text[i], sizeof text[i], "alice", i);
        e[i] = seal(p.a, &p.ra, text[i]);
    }
    shuffle(&p.ta, order, N);
    for (unsigned i = 0; i < N; i++) {
        open_ok(p.b, &p.rb, &e[order[i]], text[order[i]]);
    }
    assert_int_equal(duet_ratchet_skipped_count(p.b), 0);
    pair_free(&p);
}

/* Alice writes three chains (0..9 under A0, 10..19 under A1, 20..29 under A2); Bob reads
 * one message of chain 1 early (which skips the rest of chain 0 through PN) and the other
 * 29 in a random order across all three chains. */
static void test_out_of_order_across_chains(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, 27);
    enum { N = 30, EARLY = 15 };
    static env_t e[N];
    char text[N][64];
    unsigned order[N];
    for (unsigned i = 0; i < N; i++) {
        text_of(text[i], sizeof text[i], "alice", i);
        e[i] = seal(p.a, &p.ra, text[i]);
        if (i == 9 || i == 19) {
            if (i == 19) {
                open_ok(p.b, &p.rb, &e[EARLY], text[EARLY]);
            }
            env_t r = seal(p.b, &p.rb, "bob replies");
            open_ok(p.a, &p.ra, &r, "bob replies");
        }
    }
    assert_int_equal(duet_ratchet_skipped_count(p.b), 10 + 5);
    shuffle(&p.ta, order, N);
    for (unsigned i = 0; i < N; i++) {
        if (order[i] != EARLY) {
            open_ok(p.b, &p.rb, &e[order[i]], text[order[i]]);
        }
    }
    assert_int_equal(duet_ratchet_skipped_count(p.b), 0);
    pair_free(&p);
}

/* Messages never delivered do not stop later ones, in the same chain or the next. */
static void test_loss(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, 15);
    env_t lost1 = seal(p.a, &p.ra, "lost 1");
    env_t lost2 = seal(p.a, &p.ra, "lost 2");
    (void)lost1;
    env_t got = seal(p.a, &p.ra, "arrives");
    open_ok(p.b, &p.rb, &got, "arrives");
    assert_int_equal(duet_ratchet_skipped_count(p.b), 2);
    /* Bob's reply is lost too; Alice's next chain carries PN = 3. */
    env_t lost3 = seal(p.b, &p.rb, "bob lost");
    (void)lost3;
    env_t b2 = seal(p.b, &p.rb, "bob arrives");
    open_ok(p.a, &p.ra, &b2, "bob arrives");
    env_t a4 = seal(p.a, &p.ra, "alice new chain");
    open_ok(p.b, &p.rb, &a4, "alice new chain");
    /* A lost message that turns up late still opens, from the skipped keys. */
    open_ok(p.b, &p.rb, &lost2, "lost 2");
    assert_int_equal(duet_ratchet_skipped_count(p.b), 1);
    assert_int_equal(duet_ratchet_skipped_count(p.a), 1);
    pair_free(&p);
}

static void test_duplicate(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, 16);
    env_t e0 = seal(p.a, &p.ra, "zero"), e1 = seal(p.a, &p.ra, "one");
    env_t e2 = seal(p.a, &p.ra, "two");
    open_ok(p.b, &p.rb, &e0, "zero");
    open_fails(p.b, &p.rb, e0.b, e0.len, DUET_EDUP); /* current chain, already read */
    open_ok(p.b, &p.rb, &e2, "two");
    open_ok(p.b, &p.rb, &e1, "one");                 /* from the skipped keys */
    open_fails(p.b, &p.rb, e1.b, e1.len, DUET_EDUP); /* its key is gone */
    open_fails(p.b, &p.rb, e2.b, e2.len, DUET_EDUP);

    /* A new-chain message replayed after it started the chain. */
    env_t r = seal(p.b, &p.rb, "reply");
    open_ok(p.a, &p.ra, &r, "reply");
    open_fails(p.a, &p.ra, r.b, r.len, DUET_EDUP);
    env_t f = seal(p.a, &p.ra, "next chain");
    open_ok(p.b, &p.rb, &f, "next chain");
    open_fails(p.b, &p.rb, f.b, f.len, DUET_EDUP);
    /* Alice's first chain is over and none of its keys remain: a replay from it cannot be
     * told from garbage (documented: DUET_EAUTH). */
    open_fails(p.b, &p.rb, e0.b, e0.len, DUET_EAUTH);
    /* And the conversation goes on. */
    env_t g = seal(p.a, &p.ra, "still fine");
    open_ok(p.b, &p.rb, &g, "still fine");
    pair_free(&p);
}

static void test_replay_after_restart(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, 17);
    env_t e0 = seal(p.a, &p.ra, "zero"), e1 = seal(p.a, &p.ra, "one");
    env_t e2 = seal(p.a, &p.ra, "two");
    open_ok(p.b, &p.rb, &e0, "zero");
    open_ok(p.b, &p.rb, &e2, "two");
    snap_t saved = snap(p.b);
    duet_ratchet_free(p.b);
    assert_int_equal(duet_ratchet_new(&p.b), DUET_OK);
    assert_int_equal(duet_ratchet_load(p.b, saved.buf, saved.len), DUET_OK);
    assert_state_is(p.b, &saved);
    open_fails(p.b, &p.rb, e0.b, e0.len, DUET_EDUP);
    open_fails(p.b, &p.rb, e2.b, e2.len, DUET_EDUP);
    open_ok(p.b, &p.rb, &e1, "one");
    open_fails(p.b, &p.rb, e1.b, e1.len, DUET_EDUP);
    env_t r = seal(p.b, &p.rb, "after restart");
    open_ok(p.a, &p.ra, &r, "after restart");
    snap_free(&saved);
    pair_free(&p);
}

/* ---- limits -------------------------------------------------------------------------- */

static void test_max_skip(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, 18);
    enum { N = DUET_RATCHET_MAX_SKIP + 2 };
    env_t *e = malloc(N * sizeof *e);
    assert_non_null(e);
    char text[64];
    for (unsigned i = 0; i < N; i++) {
        text_of(text, sizeof text, "alice", i);
        e[i] = seal(p.a, &p.ra, text);
    }
    /* N = 1001 would skip 1001 keys: refused, state unchanged. */
    open_fails(p.b, &p.rb, e[N - 1].b, e[N - 1].len, DUET_EMAXSKIP);
    /* N = 1000 skips exactly MAX_SKIP: accepted. */
    text_of(text, sizeof text, "alice", N - 2);
    open_ok(p.b, &p.rb, &e[N - 2], text);
    assert_int_equal(duet_ratchet_skipped_count(p.b), DUET_RATCHET_MAX_SKIP);
    text_of(text, sizeof text, "alice", N - 1);
    open_ok(p.b, &p.rb, &e[N - 1], text);
    text_of(text, sizeof text, "alice", 5);
    open_ok(p.b, &p.rb, &e[5], text);

    /* Across a ratchet step: Bob sends 1002 messages of which Alice reads only the first;
     * after she answers, Bob's next chain starts with PN = 1002, which would skip 1001
     * keys of the old chain: refused, and her state is unchanged. */
    env_t r0 = seal(p.b, &p.rb, "bob 0");
    for (unsigned i = 1; i < N; i++) {
        e[i] = seal(p.b, &p.rb, "bob");
    }
    open_ok(p.a, &p.ra, &r0, "bob 0");
    env_t a = seal(p.a, &p.ra, "alice answers");
    open_ok(p.b, &p.rb, &a, "alice answers");
    env_t next = seal(p.b, &p.rb, "bob next chain");
    open_fails(p.a, &p.ra, next.b, next.len, DUET_EMAXSKIP);
    /* A message from inside the window still opens. */
    open_ok(p.a, &p.ra, &e[1], "bob");
    free(e);
    pair_free(&p);
}

/* The store keeps at most MAX_SKIPPED_TOTAL keys, the oldest evicted first. */
static void test_skipped_total(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, 19);
    enum { CHAIN = DUET_RATCHET_MAX_SKIP + 1 };
    env_t *e = malloc(3 * CHAIN * sizeof *e);
    assert_non_null(e);
    char text[64];
    /* Three chains of Alice's; Bob reads only the last message of each. */
    for (unsigned c = 0; c < 3; c++) {
        for (unsigned i = 0; i < CHAIN; i++) {
            text_of(text, sizeof text, "alice", c * CHAIN + i);
            e[c * CHAIN + i] = seal(p.a, &p.ra, text);
        }
        text_of(text, sizeof text, "alice", c * CHAIN + CHAIN - 1);
        open_ok(p.b, &p.rb, &e[c * CHAIN + CHAIN - 1], text);
        env_t r = seal(p.b, &p.rb, "reply");
        open_ok(p.a, &p.ra, &r, "reply");
    }
    assert_int_equal(duet_ratchet_skipped_count(p.b), DUET_RATCHET_MAX_SKIPPED_TOTAL);
    /* Chain 0's keys were evicted: its header key is gone too, so EAUTH. */
    open_fails(p.b, &p.rb, e[0].b, e[0].len, DUET_EAUTH);
    open_fails(p.b, &p.rb, e[CHAIN - 2].b, e[CHAIN - 2].len, DUET_EAUTH);
    /* Chains 1 and 2 are kept whole. */
    text_of(text, sizeof text, "alice", CHAIN);
    open_ok(p.b, &p.rb, &e[CHAIN], text);
    text_of(text, sizeof text, "alice", 3 * CHAIN - 2);
    open_ok(p.b, &p.rb, &e[3 * CHAIN - 2], text);
    assert_int_equal(duet_ratchet_skipped_count(p.b), DUET_RATCHET_MAX_SKIPPED_TOTAL - 2);

    /* Partial eviction: a fourth chain skipping 10 evicts 8 more of chain 1's oldest keys
     * (2 slots are free), whose header key survives: those replays are DUET_EDUP. */
    for (unsigned i = 0; i < 11; i++) {
        e[i] = seal(p.a, &p.ra, "fourth chain");
    }
    open_ok(p.b, &p.rb, &e[10], "fourth chain");
    assert_int_equal(duet_ratchet_skipped_count(p.b), DUET_RATCHET_MAX_SKIPPED_TOTAL);
    open_fails(p.b, &p.rb, e[CHAIN + 1].b, e[CHAIN + 1].len, DUET_EDUP);
    free(e);
    pair_free(&p);
}

static void test_sizes(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, 20);
    static uint8_t big[DUET_RATCHET_MAX_ENVELOPE + 1];
    static uint8_t out[DUET_RATCHET_MAX_ENVELOPE + 1];
    uint8_t ad[DUET_RATCHET_MAX_AD + 1] = {0};
    size_t len = 7;
    snap_t before = snap(p.a);
    assert_int_equal(duet_ratchet_encrypt(p.a, &p.ra, NULL, 0, big,
                                          DUET_RATCHET_MAX_PLAINTEXT + 1, out, sizeof out, &len),
                     DUET_ETOOBIG);
    assert_int_equal(len, 0);
    assert_int_equal(duet_ratchet_encrypt(p.a, &p.ra, ad, sizeof ad, big, 1, out, sizeof out,
                                          &len),
                     DUET_ETOOBIG);
    assert_int_equal(duet_ratchet_encrypt(p.a, &p.ra, NULL, 0, big, 10, out,
                                          duet_ratchet_envelope_len(10) - 1, &len),
                     DUET_ETOOBIG);
    assert_state_is(p.a, &before);
    snap_free(&before);

    /* The largest plaintext and AD go through; an empty one too. */
    for (size_t i = 0; i < DUET_RATCHET_MAX_PLAINTEXT; i++) {
        big[i] = (uint8_t)i;
    }
    assert_int_equal(duet_ratchet_encrypt(p.a, &p.ra, ad, DUET_RATCHET_MAX_AD, big,
                                          DUET_RATCHET_MAX_PLAINTEXT, out, sizeof out, &len),
                     DUET_OK);
    assert_int_equal(len, DUET_RATCHET_MAX_ENVELOPE);
    static uint8_t plain[DUET_RATCHET_MAX_PLAINTEXT];
    size_t plen = 0;
    assert_int_equal(duet_ratchet_decrypt(p.b, &p.rb, ad, DUET_RATCHET_MAX_AD, out, len, plain,
                                          sizeof plain - 1, &plen),
                     DUET_ETOOBIG);
    assert_int_equal(duet_ratchet_decrypt(p.b, &p.rb, ad, DUET_RATCHET_MAX_AD, out, len, plain,
                                          sizeof plain, &plen),
                     DUET_OK);
    assert_int_equal(plen, DUET_RATCHET_MAX_PLAINTEXT);
    assert_memory_equal(plain, big, plen);
    assert_int_equal(duet_ratchet_encrypt(p.a, &p.ra, NULL, 0, NULL, 0, out, sizeof out, &len),
                     DUET_OK);
    assert_int_equal(len, DUET_RATCHET_OVERHEAD);
    assert_int_equal(duet_ratchet_decrypt(p.b, &p.rb, NULL, 0, out, len, NULL, 0, &plen),
                     DUET_OK);
    assert_int_equal(plen, 0);

    /* Malformed envelopes: too short, wrong version, too long, a different AD. */
    env_t e = seal(p.a, &p.ra, "hello");
    open_fails(p.b, &p.rb, e.b, DUET_RATCHET_OVERHEAD - 1, DUET_EDECODE);
    open_fails(p.b, &p.rb, e.b, 0, DUET_EDECODE);
    e.b[0] = 0x02;
    open_fails(p.b, &p.rb, e.b, e.len, DUET_EVERSION);
    e.b[0] = DUET_RATCHET_VERSION;
    memset(big, 0, sizeof big);
    big[0] = DUET_RATCHET_VERSION;
    open_fails(p.b, &p.rb, big, sizeof big, DUET_ETOOBIG);
    assert_int_equal(duet_ratchet_decrypt(p.b, &p.rb, AD, sizeof AD - 1, e.b, e.len, plain,
                                          sizeof plain, &plen),
                     DUET_EAUTH);
    open_ok(p.b, &p.rb, &e, "hello");
    pair_free(&p);
}

/* A small-order ratchet key from pairing is refused. */
static void test_bad_initial_key(void **state)
{
    (void)state;
    duet_ratchet_t *r;
    duet_testrng_t t;
    duet_rng_t rng = duet_testrng_init(&t, 21);
    uint8_t k[32], zero[32] = {0};
    duet_rng_fill(&rng, k, 32);
    assert_int_equal(duet_ratchet_new(&r), DUET_OK);
    assert_int_equal(duet_ratchet_init_alice(r, k, k, k, k, zero), DUET_EBADKEY);
    assert_int_equal(duet_ratchet_init_bob(r, k, k, k, k, zero, &rng), DUET_EBADKEY);
    duet_ratchet_free(r);
    duet_ratchet_free(NULL);
}

/* An envelope whose header is authentic under hk (as only the partner could make it) but
 * whose values are chosen by the test; the body is 16 zero bytes (an empty plaintext with
 * a wrong tag). */
static env_t forge(const uint8_t hk[32], const uint8_t dh[32], uint32_t pn, uint32_t n)
{
    env_t e;
    uint8_t header[40];
    unsigned long long clen;
    memset(&e, 0, sizeof e);
    memcpy(header, dh, 32);
    for (int i = 0; i < 4; i++) {
        header[32 + i] = (uint8_t)(pn >> (24 - 8 * i));
        header[36 + i] = (uint8_t)(n >> (24 - 8 * i));
    }
    duet_testrng_t t;
    duet_rng_t rng = duet_testrng_init(&t, (uint64_t)pn << 32 | n);
    e.b[0] = DUET_RATCHET_VERSION;
    duet_rng_fill(&rng, e.b + 1, 24);
    assert_int_equal(crypto_aead_xchacha20poly1305_ietf_encrypt(e.b + 25, &clen, header, 40,
                                                                NULL, 0, NULL, e.b + 1, hk),
                     0);
    e.len = DUET_RATCHET_OVERHEAD;
    return e;
}

/* Authentic headers with impossible or hostile values are refused, state unchanged. */
static void test_forged_headers(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, 28);
    uint8_t zero[32] = {0}, other[32], priv[32];
    duet_crypto_x25519_keypair(other, priv, &p.ra);
    snap_t sa = snap(p.a);
    uint8_t a0_pub[32];
    memcpy(a0_pub, sa.buf + 38, 32);
    snap_free(&sa);

    /* Bob's current receiving chain is Alice's first (hk_a, DH = A0). */
    env_t e = forge(p.hk_a, other, 0, 0); /* another DH key in the same chain */
    open_fails(p.b, &p.rb, e.b, e.len, DUET_EPROTO);
    e = forge(p.hk_a, a0_pub, 0, UINT32_MAX);
    open_fails(p.b, &p.rb, e.b, e.len, DUET_EPROTO);
    e = forge(p.hk_a, a0_pub, 0, DUET_RATCHET_MAX_SKIP + 1);
    open_fails(p.b, &p.rb, e.b, e.len, DUET_EMAXSKIP);
    e = forge(p.hk_a, a0_pub, 0, 3); /* right values, bad body */
    open_fails(p.b, &p.rb, e.b, e.len, DUET_EAUTH);

    /* Alice's next receiving header key is nhk_b: a new chain from Bob. */
    e = forge(p.nhk_b, zero, 0, 0); /* small-order DH key */
    open_fails(p.a, &p.ra, e.b, e.len, DUET_EBADKEY);
    e = forge(p.nhk_b, other, DUET_RATCHET_MAX_SKIP + 1, 0);
    open_fails(p.a, &p.ra, e.b, e.len, DUET_EMAXSKIP);
    e = forge(p.nhk_b, other, 0, DUET_RATCHET_MAX_SKIP + 1);
    open_fails(p.a, &p.ra, e.b, e.len, DUET_EMAXSKIP);
    e = forge(p.nhk_b, other, 0, UINT32_MAX);
    open_fails(p.a, &p.ra, e.b, e.len, DUET_EPROTO);
    e = forge(p.nhk_b, other, 0, 2); /* a full DH ratchet step, then a bad body */
    open_fails(p.a, &p.ra, e.b, e.len, DUET_EAUTH);

    /* Both still talk. */
    env_t m = seal(p.b, &p.rb, "still here");
    open_ok(p.a, &p.ra, &m, "still here");
    m = seal(p.a, &p.ra, "me too");
    open_ok(p.b, &p.rb, &m, "me too");
    pair_free(&p);
}

/* ---- tampering ----------------------------------------------------------------------- */

/* Flip each bit position class of every byte of env: always refused, state unchanged. */
static void tamper_all(duet_ratchet_t *r, const duet_rng_t *rng, const env_t *e)
{
    env_t t = *e;
    for (size_t i = 0; i < e->len; i++) {
        for (unsigned bit = 0; bit < 8; bit += 3) {
            t.b[i] ^= (uint8_t)(1u << bit);
            duet_err_t want = i == 0 ? DUET_EVERSION : DUET_EAUTH;
            open_fails(r, rng, t.b, t.len, want);
            t.b[i] ^= (uint8_t)(1u << bit);
        }
    }
}

static void test_tamper_every_byte(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, 22);
    /* A message of the current chain, with skipped keys present. */
    env_t skipped = seal(p.a, &p.ra, "skipped for now");
    env_t e = seal(p.a, &p.ra, "a note of thirty bytes or so..");
    tamper_all(p.b, &p.rb, &e);
    open_ok(p.b, &p.rb, &e, "a note of thirty bytes or so..");
    /* A message from the skipped keys. */
    tamper_all(p.b, &p.rb, &skipped);
    open_ok(p.b, &p.rb, &skipped, "skipped for now");
    /* A message that starts a new chain (a DH ratchet step). */
    env_t r = seal(p.b, &p.rb, "a reply that ratchets");
    tamper_all(p.a, &p.ra, &r);
    open_ok(p.a, &p.ra, &r, "a reply that ratchets");
    /* Truncated envelopes. */
    env_t f = seal(p.a, &p.ra, "truncate me");
    for (size_t len = DUET_RATCHET_OVERHEAD; len < f.len; len++) {
        open_fails(p.b, &p.rb, f.b, len, DUET_EAUTH);
    }
    open_ok(p.b, &p.rb, &f, "truncate me");
    pair_free(&p);
}

/* ---- security properties ------------------------------------------------------------- */

/* A state captured after reading message n opens none of the messages up to n. */
static void test_forward_secrecy(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, 23);
    enum { N = 6 };
    env_t e[N];
    char text[N][64];
    for (unsigned i = 0; i < N; i++) {
        text_of(text[i], sizeof text[i], "alice", i);
        e[i] = seal(p.a, &p.ra, text[i]);
    }
    /* Bob reads 0, 1, 3, 4 (2 is skipped and read later, 5 is still in flight). */
    open_ok(p.b, &p.rb, &e[0], text[0]);
    open_ok(p.b, &p.rb, &e[1], text[1]);
    open_ok(p.b, &p.rb, &e[3], text[3]);
    open_ok(p.b, &p.rb, &e[4], text[4]);
    open_ok(p.b, &p.rb, &e[2], text[2]);
    snap_t captured = snap(p.b);
    duet_ratchet_t *thief;
    assert_int_equal(duet_ratchet_new(&thief), DUET_OK);
    assert_int_equal(duet_ratchet_load(thief, captured.buf, captured.len), DUET_OK);
    for (unsigned i = 0; i < 5; i++) {
        open_fails(thief, &p.rb, e[i].b, e[i].len, DUET_EDUP);
    }
    /* The capture is real: it does open the message still in flight. */
    open_ok(thief, &p.rb, &e[5], text[5]);
    /* And no saved byte holds an old message key: the state has no skipped keys left. */
    assert_int_equal(duet_ratchet_skipped_count(p.b), 0);
    duet_ratchet_free(thief);
    snap_free(&captured);
    pair_free(&p);
}

/* After a round trip of new ratchet keys, a state captured before opens no new message,
 * even when the thief follows the conversation with its copy. */
static void test_post_compromise(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, 24);
    env_t e = seal(p.a, &p.ra, "before");
    open_ok(p.b, &p.rb, &e, "before");
    snap_t captured = snap(p.b);
    duet_ratchet_t *thief;
    duet_testrng_t tt;
    duet_rng_t trng = duet_testrng_init(&tt, 999);
    assert_int_equal(duet_ratchet_new(&thief), DUET_OK);
    assert_int_equal(duet_ratchet_load(thief, captured.buf, captured.len), DUET_OK);

    /* Alice's next message in the same chain: the thief reads it (the capture is real). */
    env_t a1 = seal(p.a, &p.ra, "same chain");
    open_ok(p.b, &p.rb, &a1, "same chain");
    open_ok(thief, &trng, &a1, "same chain");
    /* Bob replies from a key pair the thief also holds; Alice ratchets and answers. The
     * thief can still follow: Bob's private key has not changed yet. */
    env_t b1 = seal(p.b, &p.rb, "bob");
    open_ok(p.a, &p.ra, &b1, "bob");
    env_t a2 = seal(p.a, &p.ra, "alice ratchets");
    open_ok(p.b, &p.rb, &a2, "alice ratchets"); /* Bob makes a fresh key pair here */
    open_ok(thief, &trng, &a2, "alice ratchets");  /* ...and so does the thief, another */
    /* Bob writes from his fresh key; Alice ratchets once more. From now on the thief is
     * out: the chains depend on Bob's new private key. */
    env_t b2 = seal(p.b, &p.rb, "bob, fresh key");
    open_ok(p.a, &p.ra, &b2, "bob, fresh key");
    env_t a3 = seal(p.a, &p.ra, "after the round trip");
    env_t a4 = seal(p.a, &p.ra, "and again");
    open_fails(thief, &trng, a3.b, a3.len, DUET_EAUTH);
    open_fails(thief, &trng, a4.b, a4.len, DUET_EAUTH);
    /* The stale capture itself (not following along) is out as well. */
    duet_ratchet_t *stale;
    assert_int_equal(duet_ratchet_new(&stale), DUET_OK);
    assert_int_equal(duet_ratchet_load(stale, captured.buf, captured.len), DUET_OK);
    open_fails(stale, &trng, a3.b, a3.len, DUET_EAUTH);
    open_ok(p.b, &p.rb, &a3, "after the round trip");
    open_ok(p.b, &p.rb, &a4, "and again");
    duet_ratchet_free(stale);
    duet_ratchet_free(thief);
    snap_free(&captured);
    pair_free(&p);
}

static bool contains(const uint8_t *hay, size_t hay_len, const uint8_t *needle, size_t n)
{
    for (size_t i = 0; i + n <= hay_len; i++) {
        if (memcmp(hay + i, needle, n) == 0) {
            return true;
        }
    }
    return false;
}

/* Consecutive headers share no more bytes at the same offsets than chance allows (about
 * 80/256 per pair), and no 8-byte window of the sender's ratchet public key appears. */
static void test_header_hides(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, 25);
    enum { N = 64 };
    env_t e[N];
    size_t total_same = 0;
    for (unsigned i = 0; i < N; i++) {
        e[i] = seal(p.a, &p.ra, "same text every time");
    }
    for (unsigned i = 1; i < N; i++) {
        size_t same = 0;
        for (size_t k = 1; k < 1 + DUET_RATCHET_HEADER_BYTES; k++) {
            same += e[i].b[k] == e[i - 1].b[k];
        }
        assert_true(same <= 6);
        total_same += same;
        /* The same plaintext never gives the same body either. */
        assert_memory_not_equal(e[i].b + 81, e[i - 1].b + 81, e[i].len - 81);
    }
    /* Expected about 63 * 80 / 256 = 20. */
    assert_true(total_same < 60);

    /* Alice's public ratchet key: the one in the header Bob decrypts. It is A0, which Bob
     * knows from pairing; read it back from a save of Alice's state (offset 38). */
    snap_t s = snap(p.a);
    const uint8_t *pub = s.buf + 38;
    for (unsigned i = 0; i < N; i++) {
        for (size_t k = 0; k + 8 <= 32; k++) {
            assert_false(contains(e[i].b, e[i].len, pub + k, 8));
        }
    }
    snap_free(&s);
    open_ok(p.b, &p.rb, &e[N - 1], "same text every time");
    pair_free(&p);
}

/* ---- persistence --------------------------------------------------------------------- */

static void test_save_load(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, 26);
    env_t e0 = seal(p.a, &p.ra, "zero");
    env_t e1 = seal(p.a, &p.ra, "one");
    open_ok(p.b, &p.rb, &e1, "one");

    /* Round trip, for both roles and with skipped keys. */
    snap_t sa = snap(p.a), sb = snap(p.b);
    assert_int_equal(sb.len, DUET_RATCHET_SAVED_FIXED_BYTES + DUET_RATCHET_SAVED_SKIPPED_BYTES);
    duet_ratchet_t *r;
    assert_int_equal(duet_ratchet_new(&r), DUET_OK);
    assert_int_equal(duet_ratchet_load(r, sa.buf, sa.len), DUET_OK);
    assert_state_is(r, &sa);
    assert_int_equal(duet_ratchet_load(r, sb.buf, sb.len), DUET_OK);
    assert_state_is(r, &sb);
    size_t len;
    assert_int_equal(duet_ratchet_save(r, sb.buf, sb.len - 1, &len), DUET_ETOOBIG);
    assert_int_equal(len, 0);

    /* Strict parsing: each corruption is refused and leaves r as it was. */
    uint8_t *bad = malloc(sb.len + 1);
    assert_non_null(bad);
    struct {
        size_t off;
        uint8_t xor;
        duet_err_t want;
    } flips[] = {
        {0, 0x01, DUET_EDECODE},  /* magic */
        {4, 0x03, DUET_EVERSION}, /* format version */
        {5, 0x02, DUET_EDECODE},  /* unknown flag */
        {6, 0x40, DUET_EDECODE},  /* private key no longer matches the public key */
        {38, 0x01, DUET_EDECODE}, /* public key */
        {341, 0x01, DUET_EDECODE}, /* skipped count: length mismatch */
        {338, 0xF0, DUET_EDECODE}, /* skipped count above the limit */
        {342 + 32, 0xFF, DUET_EDECODE}, /* a skipped N of 2^32-1 (its top byte) */
    };
    for (size_t i = 0; i < sizeof flips / sizeof flips[0]; i++) {
        memcpy(bad, sb.buf, sb.len);
        bad[flips[i].off] ^= flips[i].xor;
        if (flips[i].off == 342 + 32) {
            memset(bad + 342 + 32, 0xFF, 4);
        }
        assert_int_equal(duet_ratchet_load(r, bad, sb.len), flips[i].want);
        assert_state_is(r, &sb);
    }
    memcpy(bad, sb.buf, sb.len);
    bad[sb.len] = 0;
    assert_int_equal(duet_ratchet_load(r, bad, sb.len + 1), DUET_EDECODE);
    for (size_t l = 0; l < sb.len; l += 17) {
        assert_int_equal(duet_ratchet_load(r, bad, l), DUET_EDECODE);
    }
    assert_int_equal(duet_ratchet_load(r, bad, sb.len - 1), DUET_EDECODE);
    assert_state_is(r, &sb);

    /* Alice before her first message from Bob has no receiving chain: its fields must be
     * zero (flag clear). */
    memcpy(bad, sa.buf, sa.len);
    assert_int_equal(bad[5], 0);
    bad[166] ^= 1; /* CKr */
    assert_int_equal(duet_ratchet_load(r, bad, sa.len), DUET_EDECODE);
    memcpy(bad, sa.buf, sa.len);
    bad[333] = 1; /* Nr */
    assert_int_equal(duet_ratchet_load(r, bad, sa.len), DUET_EDECODE);
    assert_state_is(r, &sb);

    /* The loaded copy works as the original would. */
    open_ok(r, &p.rb, &e0, "zero");
    free(bad);
    duet_ratchet_free(r);
    snap_free(&sa);
    snap_free(&sb);
    pair_free(&p);
}

int main(void)
{
    if (duet_crypto_init() != DUET_OK) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kat_envelopes),
        cmocka_unit_test(test_kat_kdfs),
        cmocka_unit_test(test_libsignal_chain_key),
        cmocka_unit_test(test_in_order_both_ways),
        cmocka_unit_test(test_bob_first),
        cmocka_unit_test(test_alice_first),
        cmocka_unit_test(test_interleaved),
        cmocka_unit_test(test_out_of_order_within_chain),
        cmocka_unit_test(test_out_of_order_across_chains),
        cmocka_unit_test(test_loss),
        cmocka_unit_test(test_duplicate),
        cmocka_unit_test(test_replay_after_restart),
        cmocka_unit_test(test_max_skip),
        cmocka_unit_test(test_skipped_total),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_bad_initial_key),
        cmocka_unit_test(test_forged_headers),
        cmocka_unit_test(test_tamper_every_byte),
        cmocka_unit_test(test_forward_secrecy),
        cmocka_unit_test(test_post_compromise),
        cmocka_unit_test(test_header_hides),
        cmocka_unit_test(test_save_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
