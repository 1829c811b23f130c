/*
 * The pairing engine, two engines wired together in memory with seeded rngs: both sides end
 * with each other's identity, name and ratchet key and the same secrets; a wrong code fails
 * both sides with DUET_EWRONGCODE; no tampered, replayed, truncated or padded message ever
 * makes the receiving side "paired"; a failed engine stays failed; bad names are refused.
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

#include "../fuzz/pairing_fixture.h"
#include "cpace.h"
#include "hkdf.h"
#include "noise.h"
#include "pairing.h"

#define MAXMSGS 8
#define BUFLEN (DUET_PAIRING_MAX_MSG + 16)

enum { JOINER = 0, LISTENER = 1 };

typedef struct {
    uint8_t msg[MAXMSGS][BUFLEN];
    size_t len[MAXMSGS];
    int from[MAXMSGS];
    duet_err_t rx[MAXMSGS]; /* what the receiver returned */
    int n;
} transcript_t;

/* Change message number index (0-based, in sending order) in place; len may change. */
typedef void (*mutate_fn)(int index, uint8_t *msg, size_t *len, void *ctx);

static fix_party_t joiner, listener;
static transcript_t tr;

/* Deliver every message until neither side has anything to send. */
static void run(transcript_t *t, mutate_fn mut, void *ctx)
{
    memset(t, 0, sizeof *t);
    bool moved = true;
    while (moved) {
        moved = false;
        for (int side = JOINER; side <= LISTENER; side++) {
            fix_party_t *from = side == JOINER ? &joiner : &listener;
            fix_party_t *to = side == JOINER ? &listener : &joiner;
            const uint8_t *m;
            size_t n;
            while (duet_pairing_output(&from->eng, &m, &n)) {
                assert_true(t->n < MAXMSGS);
                assert_true(n >= 1 && n <= DUET_PAIRING_MAX_MSG);
                uint8_t *buf = t->msg[t->n];
                memcpy(buf, m, n);
                if (mut != NULL) {
                    mut(t->n, buf, &n, ctx);
                }
                t->len[t->n] = n;
                t->from[t->n] = side;
                t->rx[t->n] = duet_pairing_receive(&to->eng, buf, n);
                t->n++;
                moved = true;
            }
        }
    }
}

static void start(const char *jcode, const char *lcode, uint64_t jseed, uint64_t lseed)
{
    assert_int_equal(fix_party_init(&listener, DUET_PAIRING_LISTENER, lcode, FIX_NAME_LISTENER,
                                    lseed),
                     DUET_OK);
    assert_int_equal(fix_party_init(&joiner, DUET_PAIRING_JOINER, jcode, FIX_NAME_JOINER, jseed),
                     DUET_OK);
}

static void session(const char *jcode, const char *lcode, mutate_fn mut, void *ctx)
{
    start(jcode, lcode, FIX_SEED_JOINER, FIX_SEED_LISTENER);
    run(&tr, mut, ctx);
}

static void finish(void)
{
    duet_pairing_dispose(&joiner.eng);
    duet_pairing_dispose(&listener.eng);
}

static duet_pairing_status_t st(const fix_party_t *x)
{
    return duet_pairing_status(&x->eng);
}

/* ---- success --------------------------------------------------------------------- */

static void check_partner(const duet_pairing_result_t *r, const fix_party_t *partner,
                          const char *name)
{
    assert_memory_equal(r->partner_identity_pk, partner->pk, 32);
    assert_memory_equal(r->partner_ratchet_pub, partner->rpub, 32);
    assert_string_equal(r->partner_name, name);
    assert_int_equal(r->partner_name_len, strlen(name));
}

static void test_pair(void **state)
{
    (void)state;
    session(FIX_CODE, FIX_CODE, NULL, NULL);
    assert_int_equal(tr.n, 5);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(tr.rx[i], DUET_OK);
        assert_int_equal(tr.from[i], i % 2 == 0 ? JOINER : LISTENER);
        assert_int_equal(tr.msg[i][0], i + 1); /* P1..P5 */
    }
    assert_int_equal(tr.len[0], DUET_PAIRING_P1_BYTES);
    assert_int_equal(tr.len[1], DUET_PAIRING_P2_BYTES);
    assert_int_equal(tr.len[2], DUET_PAIRING_P3_BYTES);
    /* P4 = type, Noise msg 3, record "Ben" + tag; P5 = type, record "Ana" + tag. */
    assert_int_equal(tr.len[3], 1 + DUET_PAIRING_NOISE3_BYTES + 65 + 3 + 64 + 16);
    assert_int_equal(tr.len[4], 1 + 65 + 3 + 64 + 16);

    assert_int_equal(st(&joiner), DUET_PAIRING_PAIRED);
    assert_int_equal(st(&listener), DUET_PAIRING_PAIRED);
    duet_pairing_result_t rj, rl;
    assert_int_equal(duet_pairing_result(&joiner.eng, &rj), DUET_OK);
    assert_int_equal(duet_pairing_result(&listener.eng, &rl), DUET_OK);
    assert_int_equal(rj.role, DUET_PAIRING_JOINER);
    assert_int_equal(rl.role, DUET_PAIRING_LISTENER);
    check_partner(&rj, &listener, FIX_NAME_LISTENER);
    check_partner(&rl, &joiner, FIX_NAME_JOINER);
    assert_memory_equal(rj.root, rl.root, 32);
    assert_memory_equal(rj.hk_a, rl.hk_a, 32);
    assert_memory_equal(rj.nhk_b, rl.nhk_b, 32);
    assert_memory_equal(rj.pair_secret, rl.pair_secret, 32);
    /* Four different keys, none of them zero. */
    const uint8_t *k[4] = {rj.root, rj.hk_a, rj.nhk_b, rj.pair_secret};
    for (int i = 0; i < 4; i++) {
        assert_false(sodium_is_zero(k[i], 32));
        for (int j = i + 1; j < 4; j++) {
            assert_memory_not_equal(k[i], k[j], 32);
        }
    }
    /* Nothing more to say; more input is refused without breaking the pairing. */
    const uint8_t *m;
    size_t n;
    assert_false(duet_pairing_output(&joiner.eng, &m, &n));
    assert_int_equal(duet_pairing_receive(&joiner.eng, tr.msg[3], tr.len[3]), DUET_ESTATE);
    assert_int_equal(st(&joiner), DUET_PAIRING_PAIRED);
    /* The engines hold no secrets but the result: the signing key copy is gone. */
    assert_true(sodium_is_zero(joiner.eng.id_sk, sizeof joiner.eng.id_sk));
    assert_true(sodium_is_zero(listener.eng.id_sk, sizeof listener.eng.id_sk));
    assert_true(sodium_is_zero((const unsigned char *)joiner.eng.code, sizeof joiner.eng.code));
    finish();
    assert_true(sodium_is_zero((const unsigned char *)&joiner.eng, sizeof joiner.eng));

    /* Other seeds: other secrets (fresh CPace scalars and Noise keys every time). */
    start(FIX_CODE, FIX_CODE, 7, 8);
    run(&tr, NULL, NULL);
    duet_pairing_result_t r2;
    assert_int_equal(duet_pairing_result(&joiner.eng, &r2), DUET_OK);
    assert_memory_not_equal(r2.root, rj.root, 32);
    assert_memory_not_equal(r2.pair_secret, rj.pair_secret, 32);
    finish();
}

/* Codes typed differently but equal after normalisation pair. */
static void test_pair_typed_code(void **state)
{
    (void)state;
    session("  417 ACID acorn\n", FIX_CODE, NULL, NULL);
    assert_int_equal(st(&joiner), DUET_PAIRING_PAIRED);
    assert_int_equal(st(&listener), DUET_PAIRING_PAIRED);
    finish();
}

/* ---- wrong code ------------------------------------------------------------------- */

static void check_wrong_code(const char *jcode)
{
    session(jcode, FIX_CODE, NULL, NULL);
    assert_int_equal(st(&joiner), DUET_PAIRING_FAILED);
    assert_int_equal(st(&listener), DUET_PAIRING_FAILED);
    assert_int_equal(duet_pairing_error(&joiner.eng), DUET_EWRONGCODE);
    assert_int_equal(duet_pairing_error(&listener.eng), DUET_EWRONGCODE);
    /* P1..P4 then FAIL. */
    assert_int_equal(tr.n, 5);
    assert_int_equal(tr.rx[3], DUET_EWRONGCODE);
    assert_int_equal(tr.msg[4][0], DUET_PAIRING_FAIL);
    assert_int_equal(tr.len[4], DUET_PAIRING_FAIL_BYTES);
    assert_int_equal(tr.rx[4], DUET_EWRONGCODE);
    duet_pairing_result_t r;
    assert_int_equal(duet_pairing_result(&joiner.eng, &r), DUET_ESTATE);
    assert_true(sodium_is_zero((const unsigned char *)&r, sizeof r));
    assert_int_equal(duet_pairing_result(&listener.eng, &r), DUET_ESTATE);
    /* No secret left behind in a failed engine. */
    assert_true(sodium_is_zero(joiner.eng.id_sk, sizeof joiner.eng.id_sk));
    assert_true(sodium_is_zero(listener.eng.result.root, 32));
    finish();
}

static void test_wrong_code(void **state)
{
    (void)state;
    check_wrong_code("417-acorn-acid"); /* the two words swapped, same nameplate */
    check_wrong_code("417-acid-acre");  /* one word wrong */
}

static void test_other_nameplate(void **state)
{
    (void)state;
    session("418-acid-acorn", FIX_CODE, NULL, NULL);
    assert_int_equal(tr.n, 1);
    assert_int_equal(duet_pairing_error(&listener.eng), DUET_ENAMEPLATE);
    assert_int_not_equal(st(&joiner), DUET_PAIRING_PAIRED);
    finish();
}

/* ---- tampering -------------------------------------------------------------------- */

typedef struct {
    int index;
    size_t pos;
    uint8_t mask;
} flip_t;

static void flip(int index, uint8_t *msg, size_t *len, void *ctx)
{
    const flip_t *f = ctx;
    if (index == f->index && f->pos < *len) {
        msg[f->pos] ^= f->mask;
    }
}

static bool allowed_failure(duet_err_t e)
{
    return e == DUET_EAUTH || e == DUET_EDECODE || e == DUET_EPROTO || e == DUET_EVERSION ||
           e == DUET_ENAMEPLATE || e == DUET_EBADKEY || e == DUET_EWRONGCODE ||
           e == DUET_ETRAILING || e == DUET_ETRUNCATED;
}

/*
 * Flip one bit in every byte of every message. The side that receives the altered message
 * must never be paired, and must fail with one of the expected errors. The joiner is paired
 * once it has read P4 and sent P5 (it cannot know whether P5 arrives), so altering P5 leaves
 * the joiner paired and the listener failed; every other alteration pairs nobody.
 */
static void test_tamper_every_byte(void **state)
{
    (void)state;
    session(FIX_CODE, FIX_CODE, NULL, NULL);
    size_t lens[5];
    for (int i = 0; i < 5; i++) {
        lens[i] = tr.len[i];
    }
    finish();
    int runs = 0;
    for (int m = 0; m < 5; m++) {
        for (size_t pos = 0; pos < lens[m]; pos++) {
            flip_t f = {m, pos, (uint8_t)(1u << (pos % 8))};
            session(FIX_CODE, FIX_CODE, flip, &f);
            fix_party_t *rx = m % 2 == 0 ? &listener : &joiner;
            if (st(rx) == DUET_PAIRING_PAIRED) {
                fail_msg("message %d byte %zu altered: receiver paired", m + 1, pos);
            }
            if (m < 4 && (st(&joiner) == DUET_PAIRING_PAIRED ||
                          st(&listener) == DUET_PAIRING_PAIRED)) {
                fail_msg("message %d byte %zu altered: someone paired", m + 1, pos);
            }
            /* The receiver failed on this message or on a later one. */
            assert_true(tr.n > m);
            bool failed = false;
            for (int k = m; k < tr.n; k++) {
                if (tr.rx[k] != DUET_OK) {
                    if (!allowed_failure(tr.rx[k])) {
                        fail_msg("message %d byte %zu: unexpected %s", m + 1, pos,
                                 duet_err_name(tr.rx[k]));
                    }
                    failed = true;
                }
            }
            assert_true(failed);
            finish();
            runs++;
        }
    }
    assert_true(runs > 300);
}

/* ---- replay ----------------------------------------------------------------------- */

static transcript_t old;

static void test_replay(void **state)
{
    (void)state;
    session(FIX_CODE, FIX_CODE, NULL, NULL);
    old = tr;
    finish();

    /* A fresh listener with another code (same nameplate), or the same code and new
     * randomness, gets the recorded P1 and P3: P3 does not fit its own P2. */
    static const struct {
        const char *code;
        uint64_t seed;
    } fresh[] = {{"417-acre-agent", FIX_SEED_LISTENER}, {FIX_CODE, 999}};
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(fix_party_init(&listener, DUET_PAIRING_LISTENER, fresh[i].code, "Cy",
                                        fresh[i].seed),
                         DUET_OK);
        const uint8_t *m;
        size_t n;
        assert_int_equal(duet_pairing_receive(&listener.eng, old.msg[0], old.len[0]), DUET_OK);
        assert_true(duet_pairing_output(&listener.eng, &m, &n));
        duet_err_t e = duet_pairing_receive(&listener.eng, old.msg[2], old.len[2]);
        assert_int_equal(e, DUET_EAUTH);
        assert_int_equal(st(&listener), DUET_PAIRING_FAILED);
        assert_false(duet_pairing_output(&listener.eng, &m, &n));
        duet_pairing_dispose(&listener.eng);
    }

    /* A fresh joiner (new randomness) fed the recorded P2: it was made for another Ya. */
    assert_int_equal(fix_party_init(&joiner, DUET_PAIRING_JOINER, FIX_CODE, "Di", 555), DUET_OK);
    const uint8_t *m;
    size_t n;
    assert_true(duet_pairing_output(&joiner.eng, &m, &n));
    assert_int_equal(duet_pairing_receive(&joiner.eng, old.msg[1], old.len[1]), DUET_EAUTH);
    duet_pairing_dispose(&joiner.eng);

    /* A new session up to P3, then the old P4: its Noise message 3 does not verify. */
    start(FIX_CODE, FIX_CODE, 31, 32);
    duet_err_t e;
    assert_true(fix_pump(&joiner, &listener, NULL, NULL, &e) && e == DUET_OK); /* P1 */
    assert_true(fix_pump(&listener, &joiner, NULL, NULL, &e) && e == DUET_OK); /* P2 */
    assert_true(fix_pump(&joiner, &listener, NULL, NULL, &e) && e == DUET_OK); /* P3 */
    assert_true(duet_pairing_output(&listener.eng, &m, &n));                   /* drop P4 */
    assert_int_equal(duet_pairing_receive(&joiner.eng, old.msg[3], old.len[3]), DUET_EWRONGCODE);
    assert_int_equal(st(&joiner), DUET_PAIRING_FAILED);
    /* The listener gets FAIL, and the old P5 would not have helped it either. */
    assert_true(fix_pump(&joiner, &listener, NULL, NULL, &e));
    assert_int_equal(e, DUET_EWRONGCODE);
    finish();

    start(FIX_CODE, FIX_CODE, 41, 42);
    for (int i = 0; i < 4; i++) {
        fix_party_t *from = i % 2 == 0 ? &joiner : &listener;
        fix_party_t *to = i % 2 == 0 ? &listener : &joiner;
        assert_true(fix_pump(from, to, NULL, NULL, &e) && e == DUET_OK);
    }
    assert_int_equal(st(&joiner), DUET_PAIRING_PAIRED);
    assert_true(duet_pairing_output(&joiner.eng, &m, &n)); /* drop the real P5 */
    assert_int_equal(duet_pairing_receive(&listener.eng, old.msg[4], old.len[4]), DUET_EAUTH);
    assert_int_equal(st(&listener), DUET_PAIRING_FAILED);
    finish();
}

/* ---- sizes ------------------------------------------------------------------------ */

typedef struct {
    int index;
    int how; /* 0 truncate by one, 1 add a byte, 2 pad to MAX_MSG + 1, 3 empty */
} resize_t;

static void resize(int index, uint8_t *msg, size_t *len, void *ctx)
{
    const resize_t *r = ctx;
    if (index != r->index) {
        return;
    }
    switch (r->how) {
    case 0:
        *len -= 1;
        break;
    case 1:
        msg[*len] = 0;
        *len += 1;
        break;
    case 2:
        memset(msg + *len, 0, DUET_PAIRING_MAX_MSG + 1 - *len);
        *len = DUET_PAIRING_MAX_MSG + 1;
        break;
    default:
        *len = 0;
        break;
    }
}

static void test_sizes(void **state)
{
    (void)state;
    static const duet_err_t want[4] = {DUET_ETRUNCATED, DUET_ETRAILING, DUET_ETOOBIG,
                                       DUET_ETRUNCATED};
    for (int m = 0; m < 5; m++) {
        for (int how = 0; how < 4; how++) {
            resize_t r = {m, how};
            session(FIX_CODE, FIX_CODE, resize, &r);
            fix_party_t *rx = m % 2 == 0 ? &listener : &joiner;
            assert_int_equal(tr.n, m + 1);
            /* P4 and P5 end in a transport message of variable length: one byte more or
             * less is only seen by its tag. */
            duet_err_t w = m >= 3 && how <= 1 ? DUET_EAUTH : want[how];
            if (tr.rx[m] != w) {
                fail_msg("message %d resized (%d): %s", m + 1, how, duet_err_name(tr.rx[m]));
            }
            assert_int_equal(st(rx), DUET_PAIRING_FAILED);
            if (m < 4) {
                assert_int_not_equal(st(&joiner), DUET_PAIRING_PAIRED);
                assert_int_not_equal(st(&listener), DUET_PAIRING_PAIRED);
            }
            finish();
        }
    }
}

/* P1's version and nameplate, and message types out of turn. */
static void test_version_and_types(void **state)
{
    (void)state;
    session(FIX_CODE, FIX_CODE, NULL, NULL);
    old = tr;
    finish();
    uint8_t msg[BUFLEN];

    static const struct {
        size_t pos;
        uint8_t value;
        duet_err_t want;
    } p1[] = {{1, 2, DUET_EVERSION}, {1, 0, DUET_EVERSION}, {3, 0xa2, DUET_ENAMEPLATE},
              {0, DUET_PAIRING_P3, DUET_EPROTO}, {0, DUET_PAIRING_FAIL, DUET_EPROTO}};
    for (size_t i = 0; i < sizeof p1 / sizeof p1[0]; i++) {
        assert_int_equal(fix_party_init(&listener, DUET_PAIRING_LISTENER, FIX_CODE, "Ben", 5),
                         DUET_OK);
        memcpy(msg, old.msg[0], old.len[0]);
        msg[p1[i].pos] = p1[i].value;
        assert_int_equal(duet_pairing_receive(&listener.eng, msg, old.len[0]), p1[i].want);
        duet_pairing_dispose(&listener.eng);
    }
    /* A version 2 P1 of another size is still reported as a version mismatch. */
    assert_int_equal(fix_party_init(&listener, DUET_PAIRING_LISTENER, FIX_CODE, "Ben", 5), DUET_OK);
    const uint8_t v2[3] = {DUET_PAIRING_P1, 2, 0};
    assert_int_equal(duet_pairing_receive(&listener.eng, v2, sizeof v2), DUET_EVERSION);
    duet_pairing_dispose(&listener.eng);

    /* A joiner that receives P1, or FAIL in place of P2: out of turn. */
    static const uint8_t types[] = {DUET_PAIRING_P1, DUET_PAIRING_FAIL, DUET_PAIRING_P4};
    for (size_t i = 0; i < sizeof types; i++) {
        assert_int_equal(fix_party_init(&joiner, DUET_PAIRING_JOINER, FIX_CODE, "Ana", 6), DUET_OK);
        const uint8_t *m;
        size_t n;
        assert_true(duet_pairing_output(&joiner.eng, &m, &n));
        memcpy(msg, old.msg[1], old.len[1]);
        msg[0] = types[i];
        assert_int_equal(duet_pairing_receive(&joiner.eng, msg, old.len[1]), DUET_EPROTO);
        duet_pairing_dispose(&joiner.eng);
    }
}

/* ---- a failed engine stays failed ---------------------------------------------------- */

static void test_failed_is_sticky(void **state)
{
    (void)state;
    session(FIX_CODE, FIX_CODE, NULL, NULL);
    old = tr;
    finish();

    assert_int_equal(fix_party_init(&listener, DUET_PAIRING_LISTENER, FIX_CODE, "Ben", 5), DUET_OK);
    uint8_t bad[BUFLEN];
    memcpy(bad, old.msg[0], old.len[0]);
    bad[1] = 9;
    assert_int_equal(duet_pairing_receive(&listener.eng, bad, old.len[0]), DUET_EVERSION);
    /* A second attempt, even a valid P1, is refused with the first error. */
    assert_int_equal(duet_pairing_receive(&listener.eng, old.msg[0], old.len[0]), DUET_EVERSION);
    assert_int_equal(st(&listener), DUET_PAIRING_FAILED);
    const uint8_t *m;
    size_t n;
    assert_false(duet_pairing_output(&listener.eng, &m, &n));
    duet_pairing_result_t r;
    assert_int_equal(duet_pairing_result(&listener.eng, &r), DUET_ESTATE);
    duet_pairing_dispose(&listener.eng);

    /* After a wrong code, the joiner refuses to go on too. */
    check_wrong_code("417-acorn-acid");
    session("417-acorn-acid", FIX_CODE, NULL, NULL);
    assert_int_equal(duet_pairing_receive(&joiner.eng, old.msg[3], old.len[3]), DUET_EWRONGCODE);
    assert_int_equal(duet_pairing_receive(&listener.eng, old.msg[4], old.len[4]), DUET_EWRONGCODE);
    finish();

    /* Input while output waits: refused, nothing changes. */
    assert_int_equal(fix_party_init(&joiner, DUET_PAIRING_JOINER, FIX_CODE, "Ana", 6), DUET_OK);
    assert_int_equal(duet_pairing_receive(&joiner.eng, old.msg[1], old.len[1]), DUET_ESTATE);
    assert_int_equal(st(&joiner), DUET_PAIRING_RUNNING);
    assert_true(duet_pairing_output(&joiner.eng, &m, &n));
    assert_int_equal(n, DUET_PAIRING_P1_BYTES);
    duet_pairing_dispose(&joiner.eng);
}

/* The same identity on both sides (a cloned device) is refused. */
static void test_same_identity(void **state)
{
    (void)state;
    start(FIX_CODE, FIX_CODE, FIX_SEED_JOINER, FIX_SEED_LISTENER);
    /* Re-start the listener with the joiner's identity. */
    duet_code_t code;
    assert_int_equal(duet_code_parse(&code, FIX_CODE, strlen(FIX_CODE)), DUET_OK);
    duet_pairing_self_t self = {joiner.pk, joiner.sk, listener.rpub, "Ben", 3};
    duet_rng_t rng = duet_testrng_init(&listener.tr, 77);
    assert_int_equal(duet_pairing_init(&listener.eng, DUET_PAIRING_LISTENER, &code, &self, rng),
                     DUET_OK);
    run(&tr, NULL, NULL);
    assert_int_equal(duet_pairing_error(&joiner.eng), DUET_EPROTO);
    assert_int_not_equal(st(&listener), DUET_PAIRING_PAIRED);
    finish();
}

/* ---- names and records ------------------------------------------------------------- */

static void test_names(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        size_t len;
        duet_err_t want;
    } names[] = {
        {"Zo\xc3\xab", 4, DUET_OK},                 /* Zoë */
        {"\xf0\x9f\x99\x82", 4, DUET_OK},          /* U+1F642 */
        {"\xe4\xb8\xad\xe6\x96\x87", 6, DUET_OK},  /* two CJK characters */
        {"", 0, DUET_EEMPTY},
        {"\xff", 1, DUET_EUTF8},
        {"\xc0\xaf", 2, DUET_EUTF8},               /* overlong '/' */
        {"\xe0\x80\xaf", 3, DUET_EUTF8},           /* overlong, 3 bytes */
        {"\xed\xa0\x80", 3, DUET_EUTF8},           /* surrogate U+D800 */
        {"\xf4\x90\x80\x80", 4, DUET_EUTF8},       /* above U+10FFFF */
        {"\xe2\x82", 2, DUET_EUTF8},               /* truncated */
        {"a\x80", 2, DUET_EUTF8},                  /* lone continuation */
        {"a\nb", 3, DUET_EINVAL},                  /* control */
        {"\x7f", 1, DUET_EINVAL},                  /* DEL */
        {"\xc2\x85", 2, DUET_EINVAL},              /* C1 NEL */
        {"a\0b", 3, DUET_EINVAL},                  /* NUL */
        {"\x1b[2J", 4, DUET_EINVAL},               /* a terminal escape */
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        duet_err_t e = fix_party_init_name(&joiner, DUET_PAIRING_JOINER, FIX_CODE, names[i].name,
                                           names[i].len, 3);
        if (e != names[i].want) {
            fail_msg("name %zu: %s, want %s", i, duet_err_name(e), duet_err_name(names[i].want));
        }
        if (e != DUET_OK) {
            assert_int_equal(st(&joiner), DUET_PAIRING_FAILED);
            const uint8_t *m;
            size_t n;
            assert_false(duet_pairing_output(&joiner.eng, &m, &n));
            assert_true(sodium_is_zero(joiner.eng.id_sk, sizeof joiner.eng.id_sk));
        }
        duet_pairing_dispose(&joiner.eng);
    }
    char longest[DUET_PAIRING_MAX_NAME + 1];
    memset(longest, 'x', sizeof longest);
    assert_int_equal(duet_pairing_check_name(longest, DUET_PAIRING_MAX_NAME), DUET_OK);
    assert_int_equal(duet_pairing_check_name(longest, DUET_PAIRING_MAX_NAME + 1), DUET_ETOOBIG);

    /* A full pairing with a non-ASCII name carries it intact. */
    assert_int_equal(fix_party_init(&listener, DUET_PAIRING_LISTENER, FIX_CODE, "Zo\xc3\xab", 1),
                     DUET_OK);
    assert_int_equal(fix_party_init(&joiner, DUET_PAIRING_JOINER, FIX_CODE, "\xf0\x9f\x99\x82", 2),
                     DUET_OK);
    run(&tr, NULL, NULL);
    duet_pairing_result_t r;
    assert_int_equal(duet_pairing_result(&joiner.eng, &r), DUET_OK);
    assert_string_equal(r.partner_name, "Zo\xc3\xab");
    assert_int_equal(duet_pairing_result(&listener.eng, &r), DUET_OK);
    assert_string_equal(r.partner_name, "\xf0\x9f\x99\x82");
    finish();
}

static void test_record_decode(void **state)
{
    (void)state;
    uint8_t rec[DUET_PAIRING_RECORD_MAX + 2];
    duet_pairing_record_t r;
    randombytes_buf(rec, sizeof rec);
    rec[64] = 3;
    memcpy(rec + 65, "Ana", 3);
    size_t len = 65 + 3 + 64;
    assert_int_equal(duet_pairing_record_decode(rec, len, &r), DUET_OK);
    assert_memory_equal(r.identity_pk, rec, 32);
    assert_memory_equal(r.ratchet_pub, rec + 32, 32);
    assert_string_equal(r.name, "Ana");
    assert_memory_equal(r.sig, rec + 68, 64);
    assert_int_equal(duet_pairing_record_decode(rec, len + 1, &r), DUET_ETRAILING);
    assert_int_equal(duet_pairing_record_decode(rec, len - 1, &r), DUET_ETRUNCATED);
    assert_true(sodium_is_zero((const unsigned char *)&r, sizeof r));
    assert_int_equal(duet_pairing_record_decode(rec, 10, &r), DUET_ETRUNCATED);
    memcpy(rec + 65, "A\xff", 2);
    assert_int_equal(duet_pairing_record_decode(rec, len, &r), DUET_EUTF8);
    memcpy(rec + 65, "A\x07", 2);
    assert_int_equal(duet_pairing_record_decode(rec, len, &r), DUET_EDECODE);
    rec[64] = 0;
    assert_int_equal(duet_pairing_record_decode(rec, len, &r), DUET_EDECODE);
    rec[64] = DUET_PAIRING_MAX_NAME + 1;
    assert_int_equal(duet_pairing_record_decode(rec, sizeof rec, &r), DUET_EDECODE);
}

/* ---- the composition, rebuilt from docs/protocol/pairing.md ----------------------------- */

/* An rng that records what it hands out, so a test can rebuild every step independently. */
#define MAXDRAWS 8
typedef struct {
    duet_rng_t inner;
    uint8_t draw[MAXDRAWS][64];
    size_t len[MAXDRAWS];
    int n;
} rec_rng_t;

static void rec_fill(void *ctx, uint8_t *out, size_t n)
{
    rec_rng_t *r = ctx;
    duet_rng_fill(&r->inner, out, n);
    assert_true(r->n < MAXDRAWS && n <= 64);
    memcpy(r->draw[r->n], out, n);
    r->len[r->n++] = n;
}

static void init_recorded(fix_party_t *x, duet_pairing_role_t role, const char *name,
                          uint64_t seed, rec_rng_t *log)
{
    duet_rng_t rng = duet_testrng_init(&x->tr, seed);
    uint8_t id_seed[32];
    duet_code_t code;
    duet_rng_fill(&rng, id_seed, sizeof id_seed);
    crypto_sign_seed_keypair(x->pk, x->sk, id_seed);
    duet_rng_fill(&rng, x->rpub, sizeof x->rpub);
    assert_int_equal(duet_code_parse(&code, FIX_CODE, strlen(FIX_CODE)), DUET_OK);
    memset(log, 0, sizeof *log);
    log->inner = rng;
    duet_pairing_self_t self = {x->pk, x->sk, x->rpub, name, strlen(name)};
    assert_int_equal(duet_pairing_init(&x->eng, role, &code, &self,
                                       (duet_rng_t){rec_fill, log}),
                     DUET_OK);
}

typedef struct {
    uint8_t wide[64];
} wide_rng_t;

static void wide_fill(void *ctx, uint8_t *out, size_t n)
{
    assert_int_equal(n, 64);
    memcpy(out, ((wide_rng_t *)ctx)->wide, 64);
}

/* The CPace share of a side from its first draw, as the doc says: PRS = the code, CI =
 * "duet-pair-v1" || nameplate (u16 BE), empty sid and AD. */
static void shadow_cpace_start(duet_cpace_t *c, duet_cpace_role_t role, const rec_rng_t *log,
                               uint8_t share[32])
{
    static const uint8_t ci[] = "duet-pair-v1\x01\xa1"; /* 417 = 0x01a1 */
    wide_rng_t w;
    assert_int_equal(log->len[0], 64);
    memcpy(w.wide, log->draw[0], 64);
    assert_int_equal(duet_cpace_start(c, role, (const uint8_t *)FIX_CODE, strlen(FIX_CODE), ci,
                                      sizeof ci - 1, NULL, 0, NULL, 0, (duet_rng_t){wide_fill, &w},
                                      share),
                     DUET_OK);
}

static void shadow_noise_init(duet_noise_hs_t *hs, duet_noise_role_t role, const rec_rng_t *log,
                              const uint8_t psk[32], const uint8_t ya[32], const uint8_t yb[32])
{
    uint8_t prologue[12 + 2 + 64];
    memcpy(prologue, "duet pair v1", 12);
    prologue[12] = 0x01;
    prologue[13] = 0xa1;
    memcpy(prologue + 14, ya, 32);
    memcpy(prologue + 46, yb, 32);
    /* Draw 1: the fresh static key; draw 2: the Noise ephemeral. */
    assert_int_equal(log->len[1], 32);
    assert_int_equal(log->len[2], 32);
    duet_noise_keys_t keys = {.s = log->draw[1], .e = log->draw[2], .psks = {psk}, .npsks = 1};
    assert_int_equal(duet_noise_hs_init(hs, "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b", role,
                                        prologue, sizeof prologue, &keys, (duet_rng_t){0}),
                     DUET_OK);
}

static void shadow_step(duet_noise_hs_t *w, duet_noise_hs_t *r, const uint8_t *want, size_t n)
{
    uint8_t msg[256], pl[8];
    size_t len = 0, plen = 9;
    assert_int_equal(duet_noise_hs_write(w, NULL, 0, msg, sizeof msg, &len), DUET_OK);
    assert_int_equal(len, n);
    assert_memory_equal(msg, want, n);
    assert_int_equal(duet_noise_hs_read(r, msg, len, pl, sizeof pl, &plen), DUET_OK);
    assert_int_equal(plen, 0);
}

/* Decrypt a record (AD = the message type) and check its layout and signature. */
static void shadow_record(duet_noise_cs_t *recv, uint8_t type, const uint8_t *ct, size_t ct_len,
                          const uint8_t h[64], uint8_t role, const fix_party_t *owner,
                          const char *name)
{
    uint8_t rec[DUET_PAIRING_RECORD_MAX], sigmsg[300];
    size_t rlen = 0, nl = strlen(name);
    assert_int_equal(duet_noise_cs_decrypt(recv, &type, 1, ct, ct_len, rec, sizeof rec, &rlen),
                     DUET_OK);
    assert_int_equal(rlen, 32 + 32 + 1 + nl + 64);
    assert_memory_equal(rec, owner->pk, 32);
    assert_memory_equal(rec + 32, owner->rpub, 32);
    assert_int_equal(rec[64], nl);
    assert_memory_equal(rec + 65, name, nl);
    size_t m = 0;
    memcpy(sigmsg, "duet pair sig v1", 16);
    m += 16;
    memcpy(sigmsg + m, h, 64);
    m += 64;
    sigmsg[m++] = role;
    memcpy(sigmsg + m, rec, 65 + nl);
    m += 65 + nl;
    assert_int_equal(crypto_sign_verify_detached(rec + 65 + nl, sigmsg, m, owner->pk), 0);
}

static void check_derived(const uint8_t binding[32], const uint8_t h[64], const char *info,
                          const uint8_t *got)
{
    uint8_t want[32];
    assert_int_equal(duet_hkdf_sha256(want, 32, h, 64, binding, 32, (const uint8_t *)info,
                                      strlen(info)),
                     DUET_OK);
    assert_memory_equal(got, want, 32);
}

/*
 * Rebuild the whole session from the recorded randomness with the lower modules (CPace,
 * Noise, HKDF, Ed25519) and the constants written in docs/protocol/pairing.md, and check
 * every byte the engines sent and every secret they derived. A changed label, prologue,
 * PSK choice, role, HKDF input order or record layout fails here.
 */
static void test_matches_the_doc(void **state)
{
    (void)state;
    static rec_rng_t lj, ll;
    init_recorded(&listener, DUET_PAIRING_LISTENER, "Ben", FIX_SEED_LISTENER, &ll);
    init_recorded(&joiner, DUET_PAIRING_JOINER, "Ana", FIX_SEED_JOINER, &lj);
    run(&tr, NULL, NULL);
    assert_int_equal(tr.n, 5);
    assert_int_equal(st(&joiner), DUET_PAIRING_PAIRED);
    assert_int_equal(ll.n, 3);
    assert_int_equal(lj.n, 3);

    /* P1 = 01 | 01 | 01 a1 | Ya ; P2 = 02 | Yb | msg1 */
    duet_cpace_t cj, cl;
    uint8_t ya[32], yb[32], isk_j[64], isk_l[64];
    shadow_cpace_start(&cj, DUET_CPACE_INITIATOR, &lj, ya);
    shadow_cpace_start(&cl, DUET_CPACE_RESPONDER, &ll, yb);
    const uint8_t p1_head[4] = {0x01, 0x01, 0x01, 0xa1};
    assert_memory_equal(tr.msg[0], p1_head, 4);
    assert_memory_equal(tr.msg[0] + 4, ya, 32);
    assert_int_equal(tr.msg[1][0], 0x02);
    assert_memory_equal(tr.msg[1] + 1, yb, 32);
    assert_int_equal(duet_cpace_finish(&cj, yb, NULL, 0, isk_j), DUET_OK);
    assert_int_equal(duet_cpace_finish(&cl, ya, NULL, 0, isk_l), DUET_OK);
    assert_memory_equal(isk_j, isk_l, 64);

    /* Noise: the listener initiates; PSK = ISK[0..32). */
    duet_noise_hs_t hl, hj;
    shadow_noise_init(&hl, DUET_NOISE_INITIATOR, &ll, isk_l, ya, yb);
    shadow_noise_init(&hj, DUET_NOISE_RESPONDER, &lj, isk_j, ya, yb);
    shadow_step(&hl, &hj, tr.msg[1] + 33, 48);
    assert_int_equal(tr.msg[2][0], 0x03);
    shadow_step(&hj, &hl, tr.msg[2] + 1, 96);
    assert_int_equal(tr.msg[3][0], 0x04);
    shadow_step(&hl, &hj, tr.msg[3] + 1, 64);

    uint8_t h[64], h2[64], binding[32];
    assert_int_equal(duet_noise_hs_handshake_hash(&hl, h), DUET_OK);
    assert_int_equal(duet_noise_hs_handshake_hash(&hj, h2), DUET_OK);
    assert_memory_equal(h, h2, 64);
    assert_int_equal(duet_noise_hs_binding_key(&hl, binding), DUET_OK);
    duet_noise_cs_t ls, lr, js, jr;
    assert_int_equal(duet_noise_hs_split(&hl, &ls, &lr), DUET_OK);
    assert_int_equal(duet_noise_hs_split(&hj, &js, &jr), DUET_OK);

    /* P4's transport part: the listener's record (role 1); P5: the joiner's (role 2). */
    shadow_record(&jr, 0x04, tr.msg[3] + 65, tr.len[3] - 65, h, 0x01, &listener, "Ben");
    assert_int_equal(tr.msg[4][0], 0x05);
    shadow_record(&lr, 0x05, tr.msg[4] + 1, tr.len[4] - 1, h, 0x02, &joiner, "Ana");

    /* The secrets: HKDF-SHA-256(salt = h, ikm = binding key, info = label). */
    duet_pairing_result_t rj, rl;
    assert_int_equal(duet_pairing_result(&joiner.eng, &rj), DUET_OK);
    assert_int_equal(duet_pairing_result(&listener.eng, &rl), DUET_OK);
    const duet_pairing_result_t *rs[2] = {&rj, &rl};
    for (int i = 0; i < 2; i++) {
        check_derived(binding, h, "duet ratchet root v1", rs[i]->root);
        check_derived(binding, h, "duet ratchet hk a v1", rs[i]->hk_a);
        check_derived(binding, h, "duet ratchet nhk b v1", rs[i]->nhk_b);
        check_derived(binding, h, "duet pair secret v1", rs[i]->pair_secret);
    }
    duet_noise_hs_dispose(&hl);
    duet_noise_hs_dispose(&hj);
    duet_cpace_dispose(&cj);
    duet_cpace_dispose(&cl);
    finish();
}

/* ---- the fuzz corpus ---------------------------------------------------------------- */

/* The committed seed corpus of fuzz_pairing holds the real messages of the fixture session,
 * prefixed by the fuzz target's mode byte. Check it still matches (a drift would make the
 * fuzzer stop reaching the later steps); DUET_PAIRING_CORPUS_OUT=<dir> rewrites it. */
static const struct {
    const char *file;
    uint8_t mode;
    int msg;
} corpus[] = {
    {"p1", 0, 0}, {"p3", 1, 2}, {"p5", 2, 4}, {"p2", 3, 1}, {"p4", 4, 3},
};

static void test_fuzz_corpus(void **state)
{
    (void)state;
    session(FIX_CODE, FIX_CODE, NULL, NULL);
    assert_int_equal(tr.n, 5);
    const char *out = getenv("DUET_PAIRING_CORPUS_OUT");
    const char *src = getenv("DUET_SRC");
    char path[1024];
    for (size_t i = 0; i < sizeof corpus / sizeof corpus[0]; i++) {
        uint8_t want[BUFLEN + 1], got[BUFLEN + 2];
        want[0] = corpus[i].mode;
        memcpy(want + 1, tr.msg[corpus[i].msg], tr.len[corpus[i].msg]);
        size_t wlen = 1 + tr.len[corpus[i].msg];
        if (out != NULL) {
            snprintf(path, sizeof path, "%s/%s", out, corpus[i].file);
            FILE *f = fopen(path, "wb");
            assert_non_null(f);
            assert_int_equal(fwrite(want, 1, wlen, f), wlen);
            assert_int_equal(fclose(f), 0);
            continue;
        }
        snprintf(path, sizeof path, "%s/tests/fuzz/corpus/pairing/%s", src ? src : ".",
                 corpus[i].file);
        FILE *f = fopen(path, "rb");
        if (f == NULL) {
            fail_msg("missing corpus file %s", path);
        }
        size_t n = fread(got, 1, sizeof got, f);
        fclose(f);
        if (n != wlen || memcmp(got, want, n) != 0) {
            fail_msg("%s no longer matches the fixture: regenerate with "
                     "DUET_PAIRING_CORPUS_OUT=tests/fuzz/corpus/pairing",
                     path);
        }
    }
    finish();
}

int main(void)
{
    if (sodium_init() < 0) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pair),
        cmocka_unit_test(test_pair_typed_code),
        cmocka_unit_test(test_wrong_code),
        cmocka_unit_test(test_other_nameplate),
        cmocka_unit_test(test_tamper_every_byte),
        cmocka_unit_test(test_replay),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_version_and_types),
        cmocka_unit_test(test_failed_is_sticky),
        cmocka_unit_test(test_same_identity),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_record_decode),
        cmocka_unit_test(test_matches_the_doc),
        cmocka_unit_test(test_fuzz_corpus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
