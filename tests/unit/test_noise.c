/*
 * core/noise: handshakes between two in-memory engines (seeded rng), what an attacker can
 * and cannot do to them, the transport cipher states and their limits, and the cacophony
 * KK vector, so that this test alone notices a changed protocol name, HKDF or MixHash.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>

#include "noise.h"
#include "testrng.h"

#define SUITE "_25519_ChaChaPoly_BLAKE2b"
#define NO_TAMPER SIZE_MAX

/* ---- two engines in memory ---------------------------------------------------------------- */

/* Index 0 is the initiator, 1 the responder. */
typedef struct pair {
    const char *name;
    duet_noise_info_t info[2];
    duet_noise_hs_t hs[2];
    duet_testrng_t tr[2];
    uint8_t s[2][32], pub[2][32];
    uint8_t psk[DUET_NOISE_MAX_PSKS][32];
} pair_t;

/* What a test changes from the honest setup. */
typedef struct pair_opts {
    const uint8_t *rs[2];  /* the remote static each side is given, instead of the truth */
    const uint8_t *psk[2]; /* every PSK of that side, instead of the shared ones */
    const char *prologue[2];
} pair_opts_t;

static const duet_noise_role_t roles[2] = {DUET_NOISE_INITIATOR, DUET_NOISE_RESPONDER};

static duet_err_t pair_start(pair_t *p, const char *name, uint64_t seed, const pair_opts_t *o)
{
    memset(p, 0, sizeof *p);
    p->name = name;
    duet_testrng_t keys_tr;
    duet_rng_t keys_rng = duet_testrng_init(&keys_tr, seed ^ 0x5eed);
    for (int r = 0; r < 2; r++) {
        duet_rng_fill(&keys_rng, p->s[r], 32);
        assert_int_equal(crypto_scalarmult_base(p->pub[r], p->s[r]), 0);
    }
    for (unsigned i = 0; i < DUET_NOISE_MAX_PSKS; i++) {
        duet_rng_fill(&keys_rng, p->psk[i], 32);
    }
    for (int r = 0; r < 2; r++) {
        assert_int_equal(duet_noise_info(name, roles[r], &p->info[r]), DUET_OK);
        duet_noise_keys_t k;
        memset(&k, 0, sizeof k);
        if (p->info[r].needs_s) {
            k.s = p->s[r];
        }
        if (p->info[r].needs_rs) {
            k.rs = o && o->rs[r] ? o->rs[r] : p->pub[1 - r];
        }
        k.npsks = p->info[r].npsks;
        for (size_t i = 0; i < k.npsks; i++) {
            k.psks[i] = o && o->psk[r] ? o->psk[r] : p->psk[i];
        }
        const char *pro = o && o->prologue[r] ? o->prologue[r] : "duet test prologue";
        duet_rng_t rng = duet_testrng_init(&p->tr[r], seed * 2 + (uint64_t)r);
        duet_err_t err = duet_noise_hs_init(&p->hs[r], name, roles[r], (const uint8_t *)pro,
                                            strlen(pro), &k, rng);
        if (err != DUET_OK) {
            return err;
        }
    }
    return DUET_OK;
}

static void pair_dispose(pair_t *p)
{
    duet_noise_hs_dispose(&p->hs[0]);
    duet_noise_hs_dispose(&p->hs[1]);
}

static void payload_for(size_t i, char out[32])
{
    snprintf(out, 32, "payload of message %zu", i);
}

/*
 * Run the handshake to its end. When tamper_msg is a message index, bit (tamper_byte % 8) of
 * byte tamper_byte of that message is flipped in flight. Returns the first error and, in
 * *failed_at, the index of the message whose write or read failed (SIZE_MAX if none).
 */
static duet_err_t pair_run(pair_t *p, size_t tamper_msg, size_t tamper_byte, size_t *failed_at)
{
    uint8_t msg[DUET_NOISE_MAX_MSG], got[DUET_NOISE_MAX_MSG];
    *failed_at = SIZE_MAX;
    for (size_t i = 0; i < p->info[0].messages; i++) {
        int s = (int)(i % 2), d = 1 - s;
        char pl[32];
        size_t len = 0, n = 0;
        payload_for(i, pl);
        assert_true(duet_noise_hs_should_write(&p->hs[s]));
        assert_false(duet_noise_hs_should_write(&p->hs[d]));
        duet_err_t err = duet_noise_hs_write(&p->hs[s], (const uint8_t *)pl, strlen(pl), msg,
                                             sizeof msg, &len);
        if (err == DUET_OK && i == tamper_msg) {
            assert_true(tamper_byte < len);
            msg[tamper_byte] ^= (uint8_t)(1u << (tamper_byte % 8));
        }
        if (err == DUET_OK) {
            err = duet_noise_hs_read(&p->hs[d], msg, len, got, sizeof got, &n);
        }
        if (err != DUET_OK) {
            *failed_at = i;
            return err;
        }
        if (i != tamper_msg) {
            assert_int_equal(n, strlen(pl));
            assert_memory_equal(got, pl, n);
        }
    }
    assert_true(duet_noise_hs_done(&p->hs[0]));
    assert_true(duet_noise_hs_done(&p->hs[1]));
    return DUET_OK;
}

/* Length of handshake message i of a fresh pair (for the tamper loop). */
static size_t message_len(const char *name, size_t idx)
{
    pair_t p;
    uint8_t msg[DUET_NOISE_MAX_MSG], got[DUET_NOISE_MAX_MSG];
    size_t len = 0, n;
    assert_int_equal(pair_start(&p, name, 7, NULL), DUET_OK);
    for (size_t i = 0; i <= idx; i++) {
        int s = (int)(i % 2);
        char pl[32];
        payload_for(i, pl);
        assert_int_equal(duet_noise_hs_write(&p.hs[s], (const uint8_t *)pl, strlen(pl), msg,
                                             sizeof msg, &len),
                         DUET_OK);
        assert_int_equal(duet_noise_hs_read(&p.hs[1 - s], msg, len, got, sizeof got, &n),
                         DUET_OK);
    }
    pair_dispose(&p);
    return len;
}

/* Both directions of the transport carry messages (only initiator to responder one-way). */
static void check_transport(duet_noise_cs_t send[2], duet_noise_cs_t recv[2], bool one_way)
{
    uint8_t c[128], m[128];
    size_t cl, ml;
    for (int round = 0; round < 4; round++) {
        for (int s = 0; s < (one_way ? 1 : 2); s++) {
            const char *text = s == 0 ? "to the responder" : "to the initiator";
            assert_int_equal(duet_noise_cs_encrypt(&send[s], NULL, 0, (const uint8_t *)text,
                                                   strlen(text), c, sizeof c, &cl),
                             DUET_OK);
            assert_int_equal(cl, strlen(text) + 16);
            assert_memory_not_equal(c, text, strlen(text));
            assert_int_equal(duet_noise_cs_decrypt(&recv[1 - s], NULL, 0, c, cl, m, sizeof m,
                                                   &ml),
                             DUET_OK);
            assert_int_equal(ml, strlen(text));
            assert_memory_equal(m, text, ml);
        }
    }
}

/* ---- handshakes ---------------------------------------------------------------------------- */

static const char *const duet_patterns[] = {
    "Noise_KK" SUITE, "Noise_NK" SUITE, "Noise_XX" SUITE, "Noise_IK" SUITE, "Noise_XXpsk3" SUITE,
};

static const char *const other_patterns[] = {
    "Noise_N" SUITE,  "Noise_K" SUITE,  "Noise_X" SUITE,  "Noise_NN" SUITE,
    "Noise_NX" SUITE, "Noise_KN" SUITE, "Noise_KX" SUITE, "Noise_XN" SUITE,
    "Noise_XK" SUITE, "Noise_IN" SUITE, "Noise_IX" SUITE, "Noise_NNpsk0+psk2" SUITE,
    "Noise_XXpsk0+psk1+psk2+psk3" SUITE, "Noise_Npsk0+psk1" SUITE, "Noise_KKpsk2" SUITE,
};

static void handshake_ok(const char *name)
{
    pair_t p;
    size_t at;
    duet_noise_cs_t send[2], recv[2];
    uint8_t h[2][64], bind[2][32], rs[32];
    assert_int_equal(pair_start(&p, name, 1, NULL), DUET_OK);
    assert_int_equal(pair_run(&p, NO_TAMPER, 0, &at), DUET_OK);
    for (int r = 0; r < 2; r++) {
        assert_int_equal(duet_noise_hs_handshake_hash(&p.hs[r], h[r]), DUET_OK);
        assert_int_equal(duet_noise_hs_binding_key(&p.hs[r], bind[r]), DUET_OK);
        /* Whoever has a remote static now has the peer's true one. */
        duet_err_t err = duet_noise_hs_remote_static(&p.hs[r], rs);
        if (err == DUET_OK) {
            assert_memory_equal(rs, p.pub[1 - r], 32);
        } else {
            assert_int_equal(err, DUET_ENOENT);
            assert_false(p.info[1 - r].needs_s);
        }
        assert_int_equal(duet_noise_hs_split(&p.hs[r], &send[r], &recv[r]), DUET_OK);
        duet_noise_cs_t again_send, again_recv;
        assert_int_equal(duet_noise_hs_split(&p.hs[r], &again_send, &again_recv), DUET_ESTATE);
        assert_false(again_send.has_key);
        assert_false(again_recv.has_key);
    }
    assert_memory_equal(h[0], h[1], 64);
    assert_memory_equal(bind[0], bind[1], 32);
    assert_memory_not_equal(bind[0], send[0].k, 32);
    assert_memory_not_equal(bind[0], recv[0].k, 32);
    check_transport(send, recv, p.info[0].one_way);
    if (p.info[0].one_way) {
        uint8_t c[32];
        size_t cl;
        assert_false(send[1].has_key);
        assert_int_equal(duet_noise_cs_encrypt(&send[1], NULL, 0, (const uint8_t *)"x", 1, c,
                                               sizeof c, &cl),
                         DUET_ESTATE);
    }
    for (int r = 0; r < 2; r++) {
        duet_noise_cs_dispose(&send[r]);
        duet_noise_cs_dispose(&recv[r]);
    }
    pair_dispose(&p);
}

static void test_duet_patterns(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof duet_patterns / sizeof duet_patterns[0]; i++) {
        handshake_ok(duet_patterns[i]);
    }
}

static void test_other_patterns(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof other_patterns / sizeof other_patterns[0]; i++) {
        handshake_ok(other_patterns[i]);
    }
}

/* The rng is used: two seeds give two different handshakes. */
static void test_ephemerals_from_rng(void **state)
{
    (void)state;
    pair_t a, b;
    size_t at;
    uint8_t ha[64], hb[64];
    assert_int_equal(pair_start(&a, "Noise_NN" SUITE, 1, NULL), DUET_OK);
    assert_int_equal(pair_start(&b, "Noise_NN" SUITE, 2, NULL), DUET_OK);
    assert_int_equal(pair_run(&a, NO_TAMPER, 0, &at), DUET_OK);
    assert_int_equal(pair_run(&b, NO_TAMPER, 0, &at), DUET_OK);
    assert_int_equal(duet_noise_hs_handshake_hash(&a.hs[0], ha), DUET_OK);
    assert_int_equal(duet_noise_hs_handshake_hash(&b.hs[0], hb), DUET_OK);
    assert_memory_not_equal(ha, hb, 64);
    pair_dispose(&a);
    pair_dispose(&b);
}

/* A responder given the wrong initiator key, or an initiator with the wrong responder key:
 * KK fails on message 1 with EAUTH and nothing of the payload comes out. */
static void test_kk_wrong_remote_static(void **state)
{
    (void)state;
    uint8_t other[32], other_pub[32];
    randombytes_buf(other, sizeof other);
    assert_int_equal(crypto_scalarmult_base(other_pub, other), 0);
    for (int who = 0; who < 2; who++) {
        pair_t p;
        pair_opts_t o;
        memset(&o, 0, sizeof o);
        o.rs[who] = other_pub;
        assert_int_equal(pair_start(&p, "Noise_KK" SUITE, 3, &o), DUET_OK);
        const char *secret = "only for my partner";
        uint8_t msg[256], got[256], rs[32];
        size_t len, n = 99;
        assert_int_equal(duet_noise_hs_write(&p.hs[0], (const uint8_t *)secret, strlen(secret),
                                             msg, sizeof msg, &len),
                         DUET_OK);
        memset(got, 0xaa, sizeof got);
        assert_int_equal(duet_noise_hs_read(&p.hs[1], msg, len, got, sizeof got, &n),
                         DUET_EAUTH);
        assert_int_equal(n, 0);
        assert_null(memmem(got, sizeof got, secret, strlen(secret)));
        assert_null(memmem(msg, len, secret, strlen(secret)));
        assert_int_equal(duet_noise_hs_remote_static(&p.hs[1], rs), DUET_EAUTH);
        assert_false(duet_noise_hs_done(&p.hs[1]));
        pair_dispose(&p);
    }
}

/* XXpsk3 with different PSKs (a wrong pairing code): the handshake fails. */
static void test_xxpsk3_wrong_psk(void **state)
{
    (void)state;
    uint8_t wrong[32];
    memset(wrong, 0x42, sizeof wrong);
    for (int who = 0; who < 2; who++) {
        pair_t p;
        pair_opts_t o;
        size_t at;
        memset(&o, 0, sizeof o);
        o.psk[who] = wrong;
        assert_int_equal(pair_start(&p, "Noise_XXpsk3" SUITE, 4, &o), DUET_OK);
        assert_int_equal(pair_run(&p, NO_TAMPER, 0, &at), DUET_EAUTH);
        /* psk3 is mixed in by the initiator's message 3; with a PSK the e token keys the
         * state, so the responder notices on the first message its key reaches. */
        assert_int_equal(at, 2);
        assert_false(duet_noise_hs_done(&p.hs[1]));
        pair_dispose(&p);
    }
}

/* Different prologues: the handshake fails. */
static void test_prologue_mismatch(void **state)
{
    (void)state;
    pair_t p;
    pair_opts_t o;
    size_t at;
    memset(&o, 0, sizeof o);
    o.prologue[1] = "duet/2";
    assert_int_equal(pair_start(&p, "Noise_KK" SUITE, 5, &o), DUET_OK);
    assert_int_equal(pair_run(&p, NO_TAMPER, 0, &at), DUET_EAUTH);
    assert_int_equal(at, 0);
    pair_dispose(&p);
}

/* A bit flipped in any byte of any handshake message breaks the handshake: on that message,
 * or, for a message sent before any key exists (XX's first), on the next one. */
static void test_tamper_every_byte(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof duet_patterns / sizeof duet_patterns[0]; k++) {
        const char *name = duet_patterns[k];
        duet_noise_info_t info;
        assert_int_equal(duet_noise_info(name, DUET_NOISE_INITIATOR, &info), DUET_OK);
        for (size_t m = 0; m < info.messages; m++) {
            size_t len = message_len(name, m);
            for (size_t b = 0; b < len; b++) {
                pair_t p;
                size_t at;
                assert_int_equal(pair_start(&p, name, 7, NULL), DUET_OK);
                duet_err_t err = pair_run(&p, m, b, &at);
                if (err == DUET_OK) {
                    fail_msg("%s: message %zu byte %zu flipped and accepted", name, m, b);
                }
                assert_true(err == DUET_EAUTH || err == DUET_EBADKEY);
                assert_true(at == m || (at == m + 1 && m + 1 < info.messages));
                pair_dispose(&p);
            }
        }
    }
}

/* Low-order public keys (u = 0 and u = 1: small-order points, not vector data) give
 * DUET_EBADKEY, as the peer's ephemeral or as a configured remote static. */
static void test_low_order_keys(void **state)
{
    (void)state;
    uint8_t low[2][32];
    memset(low, 0, sizeof low);
    low[1][0] = 1;
    for (int i = 0; i < 2; i++) {
        /* As the initiator's ephemeral in NK message 1: es at the responder. */
        pair_t p;
        uint8_t msg[256], got[256];
        size_t len, n;
        assert_int_equal(pair_start(&p, "Noise_NK" SUITE, 8, NULL), DUET_OK);
        assert_int_equal(duet_noise_hs_write(&p.hs[0], NULL, 0, msg, sizeof msg, &len),
                         DUET_OK);
        memcpy(msg, low[i], 32);
        assert_int_equal(duet_noise_hs_read(&p.hs[1], msg, len, got, sizeof got, &n),
                         DUET_EBADKEY);
        assert_int_equal(duet_noise_hs_read(&p.hs[1], msg, len, got, sizeof got, &n),
                         DUET_EBADKEY);
        pair_dispose(&p);

        /* As the responder's ephemeral in XX message 2: ee at the initiator. */
        assert_int_equal(pair_start(&p, "Noise_XX" SUITE, 8, NULL), DUET_OK);
        assert_int_equal(duet_noise_hs_write(&p.hs[0], NULL, 0, msg, sizeof msg, &len),
                         DUET_OK);
        assert_int_equal(duet_noise_hs_read(&p.hs[1], msg, len, got, sizeof got, &n), DUET_OK);
        assert_int_equal(duet_noise_hs_write(&p.hs[1], NULL, 0, msg, sizeof msg, &len),
                         DUET_OK);
        memcpy(msg, low[i], 32);
        assert_int_equal(duet_noise_hs_read(&p.hs[0], msg, len, got, sizeof got, &n),
                         DUET_EBADKEY);
        pair_dispose(&p);

        /* As the relay key an NK initiator is given: its first write fails, sticky, and the
         * output holds nothing. */
        pair_opts_t o;
        memset(&o, 0, sizeof o);
        o.rs[0] = low[i];
        assert_int_equal(pair_start(&p, "Noise_NK" SUITE, 8, &o), DUET_OK);
        memset(msg, 0x55, sizeof msg);
        len = 99;
        assert_int_equal(duet_noise_hs_write(&p.hs[0], (const uint8_t *)"hi", 2, msg,
                                             sizeof msg, &len),
                         DUET_EBADKEY);
        assert_int_equal(len, 0);
        for (size_t j = 0; j < 32 + 2 + 16; j++) {
            assert_int_equal(msg[j], 0);
        }
        assert_int_equal(duet_noise_hs_write(&p.hs[0], NULL, 0, msg, sizeof msg, &len),
                         DUET_EBADKEY);
        pair_dispose(&p);
    }
}

/* After a failed read every call returns the same error, and nothing can be extracted. */
static void test_sticky_errors(void **state)
{
    (void)state;
    pair_t p;
    uint8_t msg[256], bad[256], got[256], out[64];
    size_t len, n;
    duet_noise_cs_t send, recv;
    assert_int_equal(pair_start(&p, "Noise_IK" SUITE, 9, NULL), DUET_OK);
    assert_int_equal(duet_noise_hs_write(&p.hs[0], (const uint8_t *)"x", 1, msg, sizeof msg,
                                         &len),
                     DUET_OK);
    memcpy(bad, msg, len);
    bad[len - 1] ^= 1;
    assert_int_equal(duet_noise_hs_read(&p.hs[1], bad, len, got, sizeof got, &n), DUET_EAUTH);
    /* The genuine message no longer helps. */
    assert_int_equal(duet_noise_hs_read(&p.hs[1], msg, len, got, sizeof got, &n), DUET_EAUTH);
    assert_int_equal(duet_noise_hs_write(&p.hs[1], NULL, 0, msg, sizeof msg, &len), DUET_EAUTH);
    assert_false(duet_noise_hs_should_write(&p.hs[1]));
    assert_false(duet_noise_hs_done(&p.hs[1]));
    assert_int_equal(duet_noise_hs_split(&p.hs[1], &send, &recv), DUET_EAUTH);
    assert_false(send.has_key);
    assert_false(recv.has_key);
    assert_int_equal(duet_noise_hs_handshake_hash(&p.hs[1], out), DUET_EAUTH);
    assert_int_equal(duet_noise_hs_binding_key(&p.hs[1], out), DUET_EAUTH);
    assert_int_equal(duet_noise_hs_remote_static(&p.hs[1], out), DUET_EAUTH);
    pair_dispose(&p);

    /* A wrong length is sticky too. */
    assert_int_equal(pair_start(&p, "Noise_KK" SUITE, 9, NULL), DUET_OK);
    assert_int_equal(duet_noise_hs_write(&p.hs[0], NULL, 0, msg, sizeof msg, &len), DUET_OK);
    assert_int_equal(duet_noise_hs_read(&p.hs[1], msg, 40, got, sizeof got, &n), DUET_EDECODE);
    assert_int_equal(duet_noise_hs_read(&p.hs[1], msg, len, got, sizeof got, &n),
                     DUET_EDECODE);
    pair_dispose(&p);
}

/* Calls out of turn or out of phase are refused and change nothing. */
static void test_state_errors(void **state)
{
    (void)state;
    pair_t p;
    uint8_t msg[256], got[256], out[64];
    size_t len, n, at;
    duet_noise_cs_t send, recv;
    assert_int_equal(pair_start(&p, "Noise_XX" SUITE, 10, NULL), DUET_OK);
    assert_int_equal(duet_noise_hs_write(&p.hs[1], NULL, 0, msg, sizeof msg, &len), DUET_ESTATE);
    assert_int_equal(duet_noise_hs_read(&p.hs[0], msg, 32, got, sizeof got, &n), DUET_ESTATE);
    assert_int_equal(duet_noise_hs_split(&p.hs[0], &send, &recv), DUET_ESTATE);
    assert_int_equal(duet_noise_hs_handshake_hash(&p.hs[0], out), DUET_ESTATE);
    assert_int_equal(duet_noise_hs_binding_key(&p.hs[0], out), DUET_ESTATE);
    assert_int_equal(duet_noise_hs_remote_static(&p.hs[0], out), DUET_ENOENT);
    assert_int_equal(pair_run(&p, NO_TAMPER, 0, &at), DUET_OK);
    assert_int_equal(duet_noise_hs_write(&p.hs[0], NULL, 0, msg, sizeof msg, &len), DUET_ESTATE);
    assert_int_equal(duet_noise_hs_read(&p.hs[1], msg, 64, got, sizeof got, &n), DUET_ESTATE);
    pair_dispose(&p);
}

static void test_init_errors(void **state)
{
    (void)state;
    static const char *const unsupported[] = {
        "Noise_XX_448_ChaChaPoly_BLAKE2b",
        "Noise_XX_25519_AESGCM_BLAKE2b",
        "Noise_XX_25519_ChaChaPoly_BLAKE2s",
        "Noise_XX_25519_ChaChaPoly_SHA512",
        "Noise_IK1" SUITE,
        "Noise_XXpsk4" SUITE,
        "Noise_NKpsk3" SUITE,
        "Noise_XXpsk3+psk3" SUITE,
        "Noise_XX+psk3" SUITE,
        "Noise_XXpsk3+" SUITE,
        "Noise_XXfallback" SUITE,
        "Noise_XXpsk" SUITE,
        "Noise_xx" SUITE,
        "Noise_" SUITE,
        "Noise_XX" SUITE "_",
        "NoisePSK_XX" SUITE,
        "",
        "Noise_XXpsk0+psk1+psk2+psk3+psk0_25519_ChaChaPoly_BLAKE2b_and_then_some_more",
    };
    duet_noise_hs_t hs;
    duet_noise_keys_t k;
    uint8_t s[32], rs[32], psk[32], msg[128];
    size_t len;
    duet_testrng_t tr;
    duet_rng_t rng = duet_testrng_init(&tr, 11);
    memset(&k, 0, sizeof k);
    memset(s, 1, sizeof s);
    memset(rs, 9, sizeof rs);
    memset(psk, 3, sizeof psk);
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++) {
        assert_false(duet_noise_supported(unsupported[i]));
        assert_int_equal(duet_noise_hs_init(&hs, unsupported[i], DUET_NOISE_INITIATOR, NULL, 0,
                                            &k, rng),
                         DUET_EUNSUPPORTED);
        /* dead from the start: every call says why */
        assert_int_equal(duet_noise_hs_write(&hs, NULL, 0, msg, sizeof msg, &len),
                         DUET_EUNSUPPORTED);
        duet_noise_hs_dispose(&hs);
    }
    assert_true(duet_noise_supported("Noise_XXpsk3+psk0" SUITE));

    /* KK without the remote static */
    k.s = s;
    assert_int_equal(duet_noise_hs_init(&hs, "Noise_KK" SUITE, DUET_NOISE_INITIATOR, NULL, 0,
                                        &k, rng),
                     DUET_EINVAL);
    /* NK's initiator has no static: giving one is a mistake */
    k.rs = rs;
    assert_int_equal(duet_noise_hs_init(&hs, "Noise_NK" SUITE, DUET_NOISE_INITIATOR, NULL, 0,
                                        &k, rng),
                     DUET_EINVAL);
    /* XX learns the remote static: giving one is a mistake */
    assert_int_equal(duet_noise_hs_init(&hs, "Noise_XX" SUITE, DUET_NOISE_INITIATOR, NULL, 0,
                                        &k, rng),
                     DUET_EINVAL);
    k.rs = NULL;
    /* XXpsk3 without its PSK, with two, with a NULL one */
    assert_int_equal(duet_noise_hs_init(&hs, "Noise_XXpsk3" SUITE, DUET_NOISE_INITIATOR, NULL,
                                        0, &k, rng),
                     DUET_EINVAL);
    k.psks[0] = psk;
    k.psks[1] = psk;
    k.npsks = 2;
    assert_int_equal(duet_noise_hs_init(&hs, "Noise_XXpsk3" SUITE, DUET_NOISE_INITIATOR, NULL,
                                        0, &k, rng),
                     DUET_EINVAL);
    k.psks[0] = NULL;
    k.npsks = 1;
    assert_int_equal(duet_noise_hs_init(&hs, "Noise_XXpsk3" SUITE, DUET_NOISE_INITIATOR, NULL,
                                        0, &k, rng),
                     DUET_EINVAL);
    k.psks[0] = psk;
    /* an ephemeral pre-message key: no supported pattern has one */
    k.re = rs;
    assert_int_equal(duet_noise_hs_init(&hs, "Noise_XXpsk3" SUITE, DUET_NOISE_INITIATOR, NULL,
                                        0, &k, rng),
                     DUET_EINVAL);
    k.re = NULL;
    /* prologue limit */
    uint8_t pro[DUET_NOISE_MAX_PROLOGUE + 1];
    memset(pro, 'p', sizeof pro);
    assert_int_equal(duet_noise_hs_init(&hs, "Noise_XXpsk3" SUITE, DUET_NOISE_INITIATOR, pro,
                                        sizeof pro, &k, rng),
                     DUET_ETOOBIG);
    assert_int_equal(duet_noise_hs_init(&hs, "Noise_XXpsk3" SUITE, DUET_NOISE_INITIATOR, pro,
                                        DUET_NOISE_MAX_PROLOGUE, &k, rng),
                     DUET_OK);
    duet_noise_hs_dispose(&hs);

    duet_noise_info_t info;
    assert_int_equal(duet_noise_info("Noise_IKpsk1+psk2" SUITE, DUET_NOISE_RESPONDER, &info),
                     DUET_OK);
    assert_int_equal(info.messages, 2);
    assert_false(info.one_way);
    assert_true(info.needs_s);
    assert_false(info.needs_rs);
    assert_int_equal(info.npsks, 2);
    assert_int_equal(duet_noise_info("Noise_K" SUITE, DUET_NOISE_RESPONDER, &info), DUET_OK);
    assert_true(info.one_way);
    assert_true(info.needs_rs);
    assert_int_equal(duet_noise_info("Noise_K1K" SUITE, DUET_NOISE_RESPONDER, &info),
                     DUET_EUNSUPPORTED);
}

/* ---- transport ----------------------------------------------------------------------------- */

/* A finished KK pair's cipher states. */
static void transport_pair(duet_noise_cs_t send[2], duet_noise_cs_t recv[2])
{
    pair_t p;
    size_t at;
    assert_int_equal(pair_start(&p, "Noise_KK" SUITE, 12, NULL), DUET_OK);
    assert_int_equal(pair_run(&p, NO_TAMPER, 0, &at), DUET_OK);
    for (int r = 0; r < 2; r++) {
        assert_int_equal(duet_noise_hs_split(&p.hs[r], &send[r], &recv[r]), DUET_OK);
    }
    pair_dispose(&p);
}

static void test_transport_order_and_tag_failure(void **state)
{
    (void)state;
    duet_noise_cs_t send[2], recv[2];
    uint8_t c[3][64], m[64];
    size_t cl[3], ml;
    transport_pair(send, recv);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(duet_noise_cs_encrypt(&send[0], (const uint8_t *)"ad", 2,
                                               (const uint8_t *)"note", 4, c[i], sizeof c[i],
                                               &cl[i]),
                         DUET_OK);
        assert_int_equal(send[0].n, (uint64_t)i + 1);
    }
    /* Same plaintext, different nonces. */
    assert_memory_not_equal(c[0], c[1], cl[0]);
    /* Out of order: message 1 first fails and leaves n at 0. */
    assert_int_equal(duet_noise_cs_decrypt(&recv[1], (const uint8_t *)"ad", 2, c[1], cl[1], m,
                                           sizeof m, &ml),
                     DUET_EAUTH);
    assert_int_equal(recv[1].n, 0);
    /* A flipped bit, a wrong ad, a short message: each fails and n stays. */
    c[0][cl[0] - 1] ^= 0x80;
    assert_int_equal(duet_noise_cs_decrypt(&recv[1], (const uint8_t *)"ad", 2, c[0], cl[0], m,
                                           sizeof m, &ml),
                     DUET_EAUTH);
    c[0][cl[0] - 1] ^= 0x80;
    assert_int_equal(duet_noise_cs_decrypt(&recv[1], (const uint8_t *)"AD", 2, c[0], cl[0], m,
                                           sizeof m, &ml),
                     DUET_EAUTH);
    assert_int_equal(duet_noise_cs_decrypt(&recv[1], NULL, 0, c[0], 15, m, sizeof m, &ml),
                     DUET_EDECODE);
    assert_int_equal(recv[1].n, 0);
    for (int i = 0; i < 3; i++) {
        memset(m, 0, sizeof m);
        assert_int_equal(duet_noise_cs_decrypt(&recv[1], (const uint8_t *)"ad", 2, c[i], cl[i],
                                               m, sizeof m, &ml),
                         DUET_OK);
        assert_int_equal(ml, 4);
        assert_memory_equal(m, "note", 4);
    }
    /* A replay fails. */
    assert_int_equal(duet_noise_cs_decrypt(&recv[1], (const uint8_t *)"ad", 2, c[2], cl[2], m,
                                           sizeof m, &ml),
                     DUET_EAUTH);
    /* In place. */
    uint8_t buf[64];
    memcpy(buf, "in place", 8);
    assert_int_equal(duet_noise_cs_encrypt(&send[1], NULL, 0, buf, 8, buf, sizeof buf, &cl[0]),
                     DUET_OK);
    assert_int_equal(duet_noise_cs_decrypt(&recv[0], NULL, 0, buf, cl[0], buf, sizeof buf, &ml),
                     DUET_OK);
    assert_memory_equal(buf, "in place", 8);
}

static void test_rekey(void **state)
{
    (void)state;
    duet_noise_cs_t send[2], recv[2];
    uint8_t c[64], m[64], before[32];
    size_t cl, ml;
    transport_pair(send, recv);
    memcpy(before, send[0].k, 32);
    uint64_t n = send[0].n;
    duet_noise_cs_rekey(&send[0]);
    duet_noise_cs_rekey(&recv[1]);
    assert_memory_not_equal(before, send[0].k, 32);
    assert_memory_equal(send[0].k, recv[1].k, 32);
    assert_int_equal(send[0].n, n);
    assert_int_equal(duet_noise_cs_encrypt(&send[0], NULL, 0, (const uint8_t *)"after", 5, c,
                                           sizeof c, &cl),
                     DUET_OK);
    assert_int_equal(duet_noise_cs_decrypt(&recv[1], NULL, 0, c, cl, m, sizeof m, &ml), DUET_OK);
    assert_memory_equal(m, "after", 5);
    /* One side alone rekeys: the other cannot read it. */
    duet_noise_cs_rekey(&send[0]);
    assert_int_equal(duet_noise_cs_encrypt(&send[0], NULL, 0, (const uint8_t *)"x", 1, c,
                                           sizeof c, &cl),
                     DUET_OK);
    assert_int_equal(duet_noise_cs_decrypt(&recv[1], NULL, 0, c, cl, m, sizeof m, &ml),
                     DUET_EAUTH);
    /* Rekey is ENCRYPT(k, 2^64-1, "", zeros): check it against libsodium directly. */
    uint8_t k[32], nonce[12], zeros[32], expect[48];
    memcpy(k, send[1].k, 32);
    memset(nonce, 0xff, sizeof nonce);
    memset(nonce, 0, 4);
    memset(zeros, 0, sizeof zeros);
    crypto_aead_chacha20poly1305_ietf_encrypt(expect, NULL, zeros, 32, NULL, 0, NULL, nonce, k);
    duet_noise_cs_rekey(&send[1]);
    assert_memory_equal(send[1].k, expect, 32);
}

static void test_nonce_exhaustion(void **state)
{
    (void)state;
    duet_noise_cs_t send[2], recv[2];
    uint8_t c[64], m[64];
    size_t cl, ml;
    transport_pair(send, recv);
    send[0].n = UINT64_MAX - 1;
    recv[1].n = UINT64_MAX - 1;
    /* 2^64-2 is the last usable nonce... */
    assert_int_equal(duet_noise_cs_encrypt(&send[0], NULL, 0, (const uint8_t *)"last", 4, c,
                                           sizeof c, &cl),
                     DUET_OK);
    assert_int_equal(duet_noise_cs_decrypt(&recv[1], NULL, 0, c, cl, m, sizeof m, &ml), DUET_OK);
    /* ...2^64-1 is reserved. */
    assert_int_equal(send[0].n, UINT64_MAX);
    assert_int_equal(duet_noise_cs_encrypt(&send[0], NULL, 0, (const uint8_t *)"more", 4, c,
                                           sizeof c, &cl),
                     DUET_ENONCE);
    assert_int_equal(cl, 0);
    assert_int_equal(duet_noise_cs_decrypt(&recv[1], NULL, 0, c, 20, m, sizeof m, &ml),
                     DUET_ENONCE);
    /* Rekey still works at the end (it uses the reserved nonce itself, not n). */
    duet_noise_cs_rekey(&send[0]);
    assert_int_equal(send[0].n, UINT64_MAX);
}

static void test_size_limits(void **state)
{
    (void)state;
    duet_noise_cs_t send[2], recv[2];
    uint8_t *big = calloc(1, DUET_NOISE_MAX_MSG + 2), *c = calloc(1, DUET_NOISE_MAX_MSG + 2);
    size_t cl, ml;
    assert_non_null(big);
    assert_non_null(c);
    transport_pair(send, recv);
    /* Transport: 65535 bytes on the wire is the most. */
    assert_int_equal(duet_noise_cs_encrypt(&send[0], NULL, 0, big, DUET_NOISE_MAX_MSG - 16, c,
                                           DUET_NOISE_MAX_MSG + 2, &cl),
                     DUET_OK);
    assert_int_equal(cl, DUET_NOISE_MAX_MSG);
    assert_int_equal(duet_noise_cs_encrypt(&send[0], NULL, 0, big, DUET_NOISE_MAX_MSG - 15, c,
                                           DUET_NOISE_MAX_MSG + 2, &cl),
                     DUET_ETOOBIG);
    assert_int_equal(send[0].n, 1);
    assert_int_equal(duet_noise_cs_decrypt(&recv[1], NULL, 0, c, DUET_NOISE_MAX_MSG + 1, big,
                                           DUET_NOISE_MAX_MSG + 2, &ml),
                     DUET_EDECODE);
    assert_int_equal(duet_noise_cs_decrypt(&recv[1], NULL, 0, c, DUET_NOISE_MAX_MSG, big,
                                           DUET_NOISE_MAX_MSG + 2, &ml),
                     DUET_OK);
    assert_int_equal(ml, DUET_NOISE_MAX_MSG - 16);

    /* Handshake: NN's first message is e (32) + the payload in clear. */
    pair_t p;
    size_t len, n;
    assert_int_equal(pair_start(&p, "Noise_NN" SUITE, 13, NULL), DUET_OK);
    assert_int_equal(duet_noise_hs_write(&p.hs[0], big, DUET_NOISE_MAX_MSG - 31, c,
                                         DUET_NOISE_MAX_MSG + 2, &len),
                     DUET_ETOOBIG);
    assert_int_equal(duet_noise_hs_write(&p.hs[0], big, DUET_NOISE_MAX_MSG - 32, c,
                                         DUET_NOISE_MAX_MSG + 2, &len),
                     DUET_OK);
    assert_int_equal(len, DUET_NOISE_MAX_MSG);
    assert_int_equal(duet_noise_hs_read(&p.hs[1], c, DUET_NOISE_MAX_MSG + 1, big,
                                        DUET_NOISE_MAX_MSG + 2, &n),
                     DUET_EDECODE);
    pair_dispose(&p);
    assert_int_equal(pair_start(&p, "Noise_NN" SUITE, 13, NULL), DUET_OK);
    assert_int_equal(duet_noise_hs_write(&p.hs[0], big, DUET_NOISE_MAX_MSG - 32, c,
                                         DUET_NOISE_MAX_MSG + 2, &len),
                     DUET_OK);
    assert_int_equal(duet_noise_hs_read(&p.hs[1], c, len, big, DUET_NOISE_MAX_MSG + 2, &n),
                     DUET_OK);
    assert_int_equal(n, DUET_NOISE_MAX_MSG - 32);
    pair_dispose(&p);
    free(big);
    free(c);
}

/* A buffer one byte short is refused and changes nothing: the same call with room works. */
static void test_small_buffers(void **state)
{
    (void)state;
    pair_t p, q;
    uint8_t msg[256], msg2[256], got[256];
    size_t len, len2, n;
    const char *pl = "twelve bytes";
    assert_int_equal(pair_start(&p, "Noise_XXpsk3" SUITE, 14, NULL), DUET_OK);
    assert_int_equal(pair_start(&q, "Noise_XXpsk3" SUITE, 14, NULL), DUET_OK);
    /* XXpsk3 message 1: e (32) + payload + tag (the PSK's e token keys the state). */
    size_t need = 32 + strlen(pl) + 16;
    assert_int_equal(duet_noise_hs_write(&p.hs[0], (const uint8_t *)pl, strlen(pl), msg,
                                         need - 1, &len),
                     DUET_ETOOBIG);
    assert_int_equal(len, 0);
    assert_true(duet_noise_hs_should_write(&p.hs[0]));
    assert_int_equal(duet_noise_hs_write(&p.hs[0], (const uint8_t *)pl, strlen(pl), msg, need,
                                         &len),
                     DUET_OK);
    assert_int_equal(duet_noise_hs_write(&q.hs[0], (const uint8_t *)pl, strlen(pl), msg2,
                                         sizeof msg2, &len2),
                     DUET_OK);
    assert_int_equal(len, len2);
    assert_memory_equal(msg, msg2, len); /* the refused call consumed nothing */
    assert_int_equal(duet_noise_hs_read(&p.hs[1], msg, len, got, strlen(pl) - 1, &n),
                     DUET_ETOOBIG);
    assert_int_equal(duet_noise_hs_read(&p.hs[1], msg, len, got, strlen(pl), &n), DUET_OK);
    assert_memory_equal(got, pl, n);
    pair_dispose(&p);
    pair_dispose(&q);

    duet_noise_cs_t send[2], recv[2];
    uint8_t c[64], m[64];
    size_t cl, ml;
    transport_pair(send, recv);
    assert_int_equal(duet_noise_cs_encrypt(&send[0], NULL, 0, (const uint8_t *)pl, strlen(pl),
                                           c, strlen(pl) + 15, &cl),
                     DUET_ETOOBIG);
    assert_int_equal(send[0].n, 0);
    assert_int_equal(duet_noise_cs_encrypt(&send[0], NULL, 0, (const uint8_t *)pl, strlen(pl),
                                           c, strlen(pl) + 16, &cl),
                     DUET_OK);
    assert_int_equal(duet_noise_cs_decrypt(&recv[1], NULL, 0, c, cl, m, strlen(pl) - 1, &ml),
                     DUET_ETOOBIG);
    assert_int_equal(recv[1].n, 0);
    assert_int_equal(duet_noise_cs_decrypt(&recv[1], NULL, 0, c, cl, m, strlen(pl), &ml),
                     DUET_OK);
}

/* ---- the cacophony KK vector, and the binding key recomputed independently ----------------- */

static bool hex_to(const json_t *j, uint8_t *out, size_t cap, size_t *len)
{
    const char *hex = json_string_value(j);
    const char *end = NULL;
    if (hex == NULL) {
        return false;
    }
    return sodium_hex2bin(out, cap, hex, strlen(hex), NULL, len, &end) == 0 &&
           end == hex + strlen(hex);
}

static void hex32(const json_t *v, const char *key, uint8_t out[32])
{
    size_t len = 0;
    if (!hex_to(json_object_get(v, key), out, 32, &len) || len != 32) {
        fail_msg("cacophony KK: %s is not 32 bytes of hex", key);
    }
}

/* A second, plain HMAC-BLAKE2b and Noise HKDF, written from RFC 2104 and Noise section 4.3
 * without sharing code with core/noise.c. */
static void ref_hmac(const uint8_t key[64], const uint8_t *d, size_t dlen, uint8_t out[64])
{
    uint8_t k[128], inner[64];
    crypto_generichash_state st;
    memset(k, 0, sizeof k);
    memcpy(k, key, 64);
    for (int i = 0; i < 128; i++) {
        k[i] ^= 0x36;
    }
    crypto_generichash_init(&st, NULL, 0, 64);
    crypto_generichash_update(&st, k, 128);
    crypto_generichash_update(&st, d, dlen);
    crypto_generichash_final(&st, inner, 64);
    for (int i = 0; i < 128; i++) {
        k[i] ^= 0x36 ^ 0x5c;
    }
    crypto_generichash_init(&st, NULL, 0, 64);
    crypto_generichash_update(&st, k, 128);
    crypto_generichash_update(&st, inner, 64);
    crypto_generichash_final(&st, out, 64);
}

static void ref_hkdf(const uint8_t ck[64], const uint8_t *ikm, size_t ikm_len, uint8_t o[3][64])
{
    uint8_t tk[64], buf[65];
    ref_hmac(ck, ikm, ikm_len, tk);
    buf[0] = 1;
    ref_hmac(tk, buf, 1, o[0]);
    memcpy(buf, o[0], 64);
    buf[64] = 2;
    ref_hmac(tk, buf, 65, o[1]);
    memcpy(buf, o[1], 64);
    buf[64] = 3;
    ref_hmac(tk, buf, 65, o[2]);
}

static json_t *load_cacophony(void)
{
    const char *dir = getenv("DUET_VECTORS");
    char path[4096];
    json_error_t jerr;
    if (dir == NULL) {
        fail_msg("DUET_VECTORS is not set");
    }
    snprintf(path, sizeof path, "%s/noise/cacophony.txt", dir);
    json_t *doc = json_load_file(path, 0, &jerr);
    if (doc == NULL) {
        fail_msg("%s: %s", path, jerr.text);
    }
    return doc;
}

static void test_cacophony_kk(void **state)
{
    (void)state;
    const char *want = "Noise_KK" SUITE;
    json_t *doc = load_cacophony();
    const json_t *list = json_object_get(doc, "vectors"), *v = NULL;
    size_t found = 0;
    for (size_t i = 0; i < json_array_size(list); i++) {
        const json_t *e = json_array_get(list, i);
        const char *name = json_string_value(json_object_get(e, "protocol_name"));
        if (name != NULL && strcmp(name, want) == 0) {
            v = e;
            found++;
        }
    }
    assert_int_equal(found, 1);

    static const char *const pfx[2] = {"init_", "resp_"};
    uint8_t s[2][32], e[2][32], rs[2][32], pro[2][256];
    size_t pro_len[2];
    duet_noise_hs_t hs[2];
    for (int r = 0; r < 2; r++) {
        char key[32];
        snprintf(key, sizeof key, "%sstatic", pfx[r]);
        hex32(v, key, s[r]);
        snprintf(key, sizeof key, "%sephemeral", pfx[r]);
        hex32(v, key, e[r]);
        snprintf(key, sizeof key, "%sremote_static", pfx[r]);
        hex32(v, key, rs[r]);
        snprintf(key, sizeof key, "%sprologue", pfx[r]);
        assert_true(hex_to(json_object_get(v, key), pro[r], sizeof pro[r], &pro_len[r]));
        duet_noise_keys_t k;
        memset(&k, 0, sizeof k);
        k.s = s[r];
        k.e = e[r];
        k.rs = rs[r];
        duet_rng_t none = {NULL, NULL};
        assert_int_equal(duet_noise_hs_init(&hs[r], want, roles[r], pro[r], pro_len[r], &k,
                                            none),
                         DUET_OK);
    }
    const json_t *msgs = json_object_get(v, "messages");
    assert_true(json_array_size(msgs) > 2);
    duet_noise_cs_t send[2], recv[2];
    uint8_t pl[256], ct[256], out[256], got[256];
    size_t pl_len, ct_len, len, n;
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        const json_t *m = json_array_get(msgs, i);
        int sd = (int)(i % 2), d = 1 - sd;
        assert_true(hex_to(json_object_get(m, "payload"), pl, sizeof pl, &pl_len));
        assert_true(hex_to(json_object_get(m, "ciphertext"), ct, sizeof ct, &ct_len));
        if (i < 2) {
            assert_int_equal(duet_noise_hs_write(&hs[sd], pl, pl_len, out, sizeof out, &len),
                             DUET_OK);
            assert_int_equal(len, ct_len);
            assert_memory_equal(out, ct, len);
            assert_int_equal(duet_noise_hs_read(&hs[d], ct, ct_len, got, sizeof got, &n),
                             DUET_OK);
        } else {
            if (i == 2) {
                uint8_t h[64], hh[64];
                size_t hh_len;
                assert_true(hex_to(json_object_get(v, "handshake_hash"), hh, sizeof hh,
                                   &hh_len));
                assert_int_equal(hh_len, 64);
                for (int r = 0; r < 2; r++) {
                    assert_int_equal(duet_noise_hs_handshake_hash(&hs[r], h), DUET_OK);
                    assert_memory_equal(h, hh, 64);
                }
            }
            if (i == 2) {
                uint8_t bind[2][32];
                for (int r = 0; r < 2; r++) {
                    assert_int_equal(duet_noise_hs_binding_key(&hs[r], bind[r]), DUET_OK);
                    assert_int_equal(duet_noise_hs_split(&hs[r], &send[r], &recv[r]), DUET_OK);
                }
                /* Recompute ck from the vector's keys: KK mixes es, ss (message 1), ee, se
                 * (message 2) into ck, which starts as the padded protocol name. Then
                 * HKDF(ck, "", 3) gives the two transport keys and the binding key. */
                uint8_t ck[64], pub_re[32], dh[4][32], o[3][64];
                memset(ck, 0, sizeof ck);
                memcpy(ck, want, strlen(want));
                assert_int_equal(crypto_scalarmult_base(pub_re, e[1]), 0);
                assert_int_equal(crypto_scalarmult(dh[0], e[0], rs[0]), 0); /* es */
                assert_int_equal(crypto_scalarmult(dh[1], s[0], rs[0]), 0); /* ss */
                assert_int_equal(crypto_scalarmult(dh[2], e[0], pub_re), 0); /* ee */
                assert_int_equal(crypto_scalarmult(dh[3], s[0], pub_re), 0); /* se */
                for (int j = 0; j < 4; j++) {
                    ref_hkdf(ck, dh[j], 32, o);
                    memcpy(ck, o[0], 64);
                }
                ref_hkdf(ck, NULL, 0, o);
                assert_memory_equal(send[0].k, o[0], 32);
                assert_memory_equal(recv[1].k, o[0], 32);
                assert_memory_equal(recv[0].k, o[1], 32);
                assert_memory_equal(send[1].k, o[1], 32);
                assert_memory_equal(bind[0], o[2], 32);
                assert_memory_equal(bind[1], o[2], 32);
            }
            assert_int_equal(duet_noise_cs_encrypt(&send[sd], NULL, 0, pl, pl_len, out,
                                                   sizeof out, &len),
                             DUET_OK);
            assert_int_equal(len, ct_len);
            assert_memory_equal(out, ct, len);
            assert_int_equal(duet_noise_cs_decrypt(&recv[d], NULL, 0, ct, ct_len, got,
                                                   sizeof got, &n),
                             DUET_OK);
        }
        assert_int_equal(n, pl_len);
        assert_memory_equal(got, pl, n);
    }
    for (int r = 0; r < 2; r++) {
        duet_noise_hs_dispose(&hs[r]);
        duet_noise_cs_dispose(&send[r]);
        duet_noise_cs_dispose(&recv[r]);
    }
    json_decref(doc);
}

int main(void)
{
    if (sodium_init() < 0) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duet_patterns),
        cmocka_unit_test(test_other_patterns),
        cmocka_unit_test(test_ephemerals_from_rng),
        cmocka_unit_test(test_kk_wrong_remote_static),
        cmocka_unit_test(test_xxpsk3_wrong_psk),
        cmocka_unit_test(test_prologue_mismatch),
        cmocka_unit_test(test_tamper_every_byte),
        cmocka_unit_test(test_low_order_keys),
        cmocka_unit_test(test_sticky_errors),
        cmocka_unit_test(test_state_errors),
        cmocka_unit_test(test_init_errors),
        cmocka_unit_test(test_transport_order_and_tag_failure),
        cmocka_unit_test(test_rekey),
        cmocka_unit_test(test_nonce_exhaustion),
        cmocka_unit_test(test_size_limits),
        cmocka_unit_test(test_small_buffers),
        cmocka_unit_test(test_cacophony_kk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
