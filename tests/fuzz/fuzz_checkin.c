/*
 * Fuzz target: everything check-ins read from the partner.
 *
 * A fixture made once per process: two paired stores on disk (fixed seeds, UTC, a fixed
 * clock), A's weekly ritual accepted by B, A's answer to its first instance. Each input is
 * one byte of mode and a body, received by A as if from B inside a transaction that is
 * rolled back, so every input starts from the same state:
 *
 *   mode 0..3  a RITUAL, ANSWER, REVEAL or AGREEMENT body (duet_checkin_receive), then
 *              `show` of the instance and the lists A would print
 *   mode 4..6  an inbox line body: check-in, pause, milestone decoders
 *   mode 7     an answer plaintext: sealed here under a fixed key as B's client would, sent
 *              as an ANSWER with its key, then opened by `show` (the plaintext decoder)
 *
 * DUET_CHECKIN_WRITE_SEEDS=DIR makes the first call write a valid seed of each kind to DIR
 * (tests/fuzz/corpus/checkin/ was made so).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <sodium.h>

#include "checkin.h"
#include "codec.h"
#include "outbox.h"
#include "testpair.h"
#include "testrng.h"
#include "testutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW_MS 1795685400000ull /* 2026-11-26T09:30:00Z, a Thursday */

typedef struct fixture {
    char *dir;
    duet_store_t *a, *b;
    duet_testrng_t ra, rb, rp;
    uint8_t ritual[DUET_CHECKIN_ID_BYTES];
    duet_checkin_instance_t inst;
    uint8_t b_pk[32];
    uint64_t now;
} fixture_t;

static fixture_t *fx;

static uint64_t clock_of(void *ctx)
{
    return *(const uint64_t *)ctx;
}

static void check(duet_err_t e, const char *what)
{
    if (e != DUET_OK) {
        fprintf(stderr, "fuzz_checkin fixture: %s: %s\n", what, duet_err_name(e));
        abort();
    }
}

static void move_all(duet_store_t *from, duet_store_t *to)
{
    duet_outbox_host_t hf, ht;
    uint64_t after = 0, seq;
    const uint8_t *env;
    size_t len;
    bool counted;
    check(duet_outbox_host_init(&hf, from, clock_of, &fx->now, NULL, NULL), "host");
    check(duet_outbox_host_init(&ht, to, clock_of, &fx->now, NULL, NULL), "host");
    check(duet_outbox_recv_begin(&ht), "begin");
    while (duet_outbox_next(&hf, after, &seq, &env, &len) == DUET_OK) {
        after = seq;
        duet_err_t e = duet_outbox_recv_put(&ht, seq, env, len, &counted);
        if (e != DUET_EDUP) {
            check(e, "put");
        }
    }
    check(duet_outbox_recv_commit(&ht), "commit");
    duet_outbox_host_dispose(&hf);
    duet_outbox_host_dispose(&ht);
}

static void cleanup(void)
{
    duet_store_close(fx->a);
    duet_store_close(fx->b);
    duet_test_rmrf(fx->dir);
    free(fx->dir);
    free(fx);
}

static void tx(duet_store_t *st, duet_err_t (*fn)(fixture_t *), const char *what)
{
    check(duet_store_begin(st), "begin");
    check(fn(fx), what);
    check(duet_store_commit(st), "commit");
}

static duet_err_t do_propose(fixture_t *f)
{
    const duet_checkin_template_t *t = duet_checkin_template_find("weekly");
    return duet_checkin_propose(f->a, &t->spec, t->rhythm, false, f->now, f->ritual);
}

static duet_err_t do_accept(fixture_t *f)
{
    return duet_checkin_accept(f->b, f->ritual, f->now);
}

static duet_err_t do_answer(fixture_t *f)
{
    duet_checkin_answers_t a;
    memset(&a, 0, sizeof a);
    a.n = 4;
    duet_err_t e = duet_checkin_answers_set_text(&a, 0, "a walk", 6);
    duet_checkin_answers_set_scale(&a, 3, 4);
    if (e == DUET_OK) {
        e = duet_checkin_answer(f->a, &f->inst, &a, f->now);
    }
    duet_checkin_answers_clear(&a);
    return e;
}

static void setup(void)
{
    char ha[4200], hb[4200];
    size_t n;
    setenv("TZ", "UTC", 1);
    tzset();
    if (sodium_init() < 0) {
        abort();
    }
    fx = calloc(1, sizeof *fx);
    fx->dir = duet_test_tmpdir();
    fx->now = NOW_MS;
    duet_test_path(ha, sizeof ha, fx->dir, "a");
    duet_test_path(hb, sizeof hb, fx->dir, "b");
    fx->a = duet_test_home(ha, "Ana", duet_testrng_init(&fx->ra, 11));
    fx->b = duet_test_home(hb, "Ben", duet_testrng_init(&fx->rb, 12));
    duet_test_pair(fx->a, fx->b, duet_testrng_init(&fx->rp, 13), fx->now);
    tx(fx->a, do_propose, "propose");
    move_all(fx->a, fx->b);
    tx(fx->b, do_accept, "accept");
    move_all(fx->b, fx->a);
    memcpy(fx->inst.ritual, fx->ritual, DUET_CHECKIN_ID_BYTES);
    fx->inst.day = duet_checkin_local_day(fx->now);
    duet_checkin_instance_id(fx->ritual, fx->inst.day, fx->inst.id);
    tx(fx->a, do_answer, "answer");
    check(duet_store_meta_get(fx->b, "identity_pk", fx->b_pk, 32, &n), "pk");
    atexit(cleanup);
}

/* ---- seeds ---------------------------------------------------------------------------- */

static void put_hdr(duet_codec_enc_t *e, uint32_t n)
{
    duet_codec_enc_init(e, 1u << 17);
    duet_codec_put_map(e, n);
}

static void write_seed(const char *dir, const char *name, uint8_t mode, duet_codec_enc_t *e)
{
    const uint8_t *p;
    size_t len;
    char path[4300];
    check(duet_codec_enc_finish(e, &p, &len), "seed");
    uint8_t *buf = malloc(len + 1);
    buf[0] = mode;
    memcpy(buf + 1, p, len);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    duet_test_write(path, buf, len + 1);
    free(buf);
    duet_codec_enc_dispose(e);
}

/* An answer plaintext: {1: [str, nil, nil, 3]} padded to 256. */
static size_t sample_plain(uint8_t out[256])
{
    duet_codec_enc_t e;
    const uint8_t *p;
    size_t len;
    duet_codec_enc_init(&e, 255);
    duet_codec_put_map(&e, 1);
    duet_codec_put_key(&e, 1);
    duet_codec_put_array(&e, 4);
    duet_codec_put_str(&e, "ok", 2);
    duet_codec_put_nil(&e);
    duet_codec_put_nil(&e);
    duet_codec_put_uint(&e, 3);
    check(duet_codec_enc_finish(&e, &p, &len), "plain");
    memset(out, 0, 256);
    memcpy(out, p, len);
    out[len] = 0x80;
    duet_codec_enc_dispose(&e);
    return 256;
}

static void write_seeds(const char *dir)
{
    duet_codec_enc_t e;
    char date[11];
    uint8_t other[16], zero[272], key[32];
    memset(other, 0x42, sizeof other);
    memset(zero, 0, sizeof zero);
    memset(key, 0x17, sizeof key);
    duet_checkin_day_format(fx->inst.day, date);
    mkdir(dir, 0755);

    const duet_checkin_template_t *t = duet_checkin_template_find("daily");
    put_hdr(&e, 7);
    duet_codec_put_key(&e, 1);
    duet_codec_put_uint(&e, 1);
    duet_codec_put_key(&e, 2);
    duet_codec_put_bin(&e, other, 16);
    duet_codec_put_key(&e, 3);
    duet_codec_put_str(&e, "daily", 5);
    duet_codec_put_key(&e, 4);
    duet_codec_put_array(&e, t->spec.nq);
    for (uint32_t i = 0; i < t->spec.nq; i++) {
        duet_codec_put_array(&e, 3);
        duet_codec_put_str(&e, t->spec.q[i].id, strlen(t->spec.q[i].id));
        duet_codec_put_str(&e, t->spec.q[i].text, strlen(t->spec.q[i].text));
        duet_codec_put_uint(&e, t->spec.q[i].type);
    }
    duet_codec_put_key(&e, 5);
    duet_codec_put_uint(&e, 1);
    duet_codec_put_key(&e, 6);
    duet_codec_put_uint(&e, 0);
    duet_codec_put_key(&e, 7);
    duet_codec_put_bool(&e, false);
    write_seed(dir, "ritual-propose", 0, &e);

    put_hdr(&e, 4);
    duet_codec_put_key(&e, 1);
    duet_codec_put_uint(&e, 2);
    duet_codec_put_key(&e, 2);
    duet_codec_put_bin(&e, fx->ritual, 16);
    duet_codec_put_key(&e, 6);
    duet_codec_put_uint(&e, 4);
    duet_codec_put_key(&e, 8);
    duet_codec_put_str(&e, date, 10);
    write_seed(dir, "ritual-accept", 0, &e);

    put_hdr(&e, 2);
    duet_codec_put_key(&e, 1);
    duet_codec_put_uint(&e, 3);
    duet_codec_put_key(&e, 2);
    duet_codec_put_bin(&e, fx->ritual, 16);
    write_seed(dir, "ritual-decline", 0, &e);

    put_hdr(&e, 6);
    duet_codec_put_key(&e, 1);
    duet_codec_put_bin(&e, fx->inst.id, 16);
    duet_codec_put_key(&e, 2);
    duet_codec_put_bin(&e, fx->ritual, 16);
    duet_codec_put_key(&e, 3);
    duet_codec_put_str(&e, date, 10);
    duet_codec_put_key(&e, 4);
    duet_codec_put_bin(&e, zero, 24);
    duet_codec_put_key(&e, 5);
    duet_codec_put_bin(&e, zero, sizeof zero);
    duet_codec_put_key(&e, 6);
    duet_codec_put_bin(&e, zero, 32);
    write_seed(dir, "answer", 1, &e);

    put_hdr(&e, 2);
    duet_codec_put_key(&e, 1);
    duet_codec_put_bin(&e, fx->inst.id, 16);
    duet_codec_put_key(&e, 2);
    duet_codec_put_bin(&e, key, 32);
    write_seed(dir, "reveal", 2, &e);

    put_hdr(&e, 5);
    duet_codec_put_key(&e, 1);
    duet_codec_put_uint(&e, 1);
    duet_codec_put_key(&e, 2);
    duet_codec_put_bin(&e, other, 16);
    duet_codec_put_key(&e, 3);
    duet_codec_put_uint(&e, 1);
    duet_codec_put_key(&e, 4);
    duet_codec_put_bin(&e, key, 16);
    duet_codec_put_key(&e, 5);
    duet_codec_put_str(&e, "Slow mornings.", 14);
    write_seed(dir, "agreement-set", 3, &e);

    put_hdr(&e, 4);
    duet_codec_put_key(&e, 1);
    duet_codec_put_uint(&e, 2);
    duet_codec_put_key(&e, 2);
    duet_codec_put_bin(&e, other, 16);
    duet_codec_put_key(&e, 3);
    duet_codec_put_uint(&e, 1);
    duet_codec_put_key(&e, 4);
    duet_codec_put_bin(&e, key, 16);
    write_seed(dir, "agreement-accept", 3, &e);

    put_hdr(&e, 4);
    duet_codec_put_key(&e, 1);
    duet_codec_put_bin(&e, fx->inst.id, 16);
    duet_codec_put_key(&e, 2);
    duet_codec_put_bin(&e, fx->ritual, 16);
    duet_codec_put_key(&e, 3);
    duet_codec_put_str(&e, date, 10);
    duet_codec_put_key(&e, 4);
    duet_codec_put_str(&e, "weekly", 6);
    write_seed(dir, "line", 4, &e);

    put_hdr(&e, 2);
    duet_codec_put_key(&e, 1);
    duet_codec_put_str(&e, date, 10);
    duet_codec_put_key(&e, 2);
    duet_codec_put_str(&e, "gently", 6);
    write_seed(dir, "pause", 5, &e);

    put_hdr(&e, 1);
    duet_codec_put_key(&e, 1);
    duet_codec_put_str(&e, "first walk", 10);
    write_seed(dir, "milestone", 6, &e);

    uint8_t plain[257];
    plain[0] = 7;
    sample_plain(plain + 1);
    char path[4300];
    snprintf(path, sizeof path, "%s/plaintext", dir);
    duet_test_write(path, plain, sizeof plain);
}

/* ---- one input ------------------------------------------------------------------------ */

/* Mode 7: seal the plaintext as B's client would and send it with its key. */
static void receive_plaintext(const uint8_t *plain, size_t len)
{
    uint8_t key[32], nonce[24], commit[32], in[22 + 32 + 16 + 32], ad[22 + 16 + 32];
    duet_codec_enc_t e;
    const uint8_t *body;
    size_t blen;
    unsigned long long ctl;
    if (len > DUET_CHECKIN_PLAIN_MAX) {
        return;
    }
    uint8_t *ct = malloc(len + 16);
    memset(key, 0x5c, sizeof key);
    memset(nonce, 0x3a, sizeof nonce);
    memcpy(in, "duet checkin commit v1", 22);
    memcpy(in + 22, key, 32);
    memcpy(in + 54, fx->inst.id, 16);
    memcpy(in + 70, fx->b_pk, 32);
    crypto_generichash(commit, 32, in, sizeof in, NULL, 0);
    memcpy(ad, "duet checkin answer v1", 22);
    memcpy(ad + 22, fx->inst.id, 16);
    memcpy(ad + 38, fx->b_pk, 32);
    crypto_aead_xchacha20poly1305_ietf_encrypt(ct, &ctl, plain, len, ad, sizeof ad, NULL, nonce,
                                               key);
    char date[11];
    duet_checkin_day_format(fx->inst.day, date);
    duet_codec_enc_init(&e, 1u << 17);
    duet_codec_put_map(&e, 7);
    duet_codec_put_key(&e, 1);
    duet_codec_put_bin(&e, fx->inst.id, 16);
    duet_codec_put_key(&e, 2);
    duet_codec_put_bin(&e, fx->ritual, 16);
    duet_codec_put_key(&e, 3);
    duet_codec_put_str(&e, date, 10);
    duet_codec_put_key(&e, 4);
    duet_codec_put_bin(&e, nonce, 24);
    duet_codec_put_key(&e, 5);
    duet_codec_put_bin(&e, ct, (size_t)ctl);
    duet_codec_put_key(&e, 6);
    duet_codec_put_bin(&e, commit, 32);
    duet_codec_put_key(&e, 7);
    duet_codec_put_bin(&e, key, 32);
    if (duet_codec_enc_finish(&e, &body, &blen) == DUET_OK) {
        duet_err_t r =
            duet_checkin_receive(fx->a, DUET_KIND_ANSWER, fx->inst.id, 1, body, blen, fx->now);
        (void)r;
    }
    duet_codec_enc_dispose(&e);
    free(ct);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint32_t kinds[4] = {DUET_KIND_RITUAL, DUET_KIND_ANSWER, DUET_KIND_REVEAL,
                                      DUET_KIND_AGREEMENT};
    if (fx == NULL) {
        setup();
        const char *seeds = getenv("DUET_CHECKIN_WRITE_SEEDS");
        if (seeds != NULL) {
            write_seeds(seeds);
        }
    }
    if (size < 1 || size > 100000) {
        return 0;
    }
    uint8_t mode = data[0] % 8;
    const uint8_t *body = data + 1;
    size_t len = size - 1;
    if (mode >= 4 && mode <= 6) {
        duet_checkin_line_t line;
        duet_checkin_pause_t p;
        const char *t;
        size_t tl;
        duet_err_t r = mode == 4   ? duet_checkin_line_decode(body, len, &line)
                       : mode == 5 ? duet_checkin_pause_decode(body, len, &p)
                                   : duet_checkin_milestone_decode(body, len, &t, &tl);
        (void)r;
        return 0;
    }
    if (duet_store_begin(fx->a) != DUET_OK) {
        abort();
    }
    if (mode == 7) {
        receive_plaintext(body, len);
    } else {
        duet_err_t r = duet_checkin_receive(fx->a, kinds[mode], fx->inst.id, 1, body, len, fx->now);
        (void)r;
    }
    /* What A would print afterwards. */
    duet_checkin_view_t v;
    if (duet_checkin_show(fx->a, &fx->inst, &v) == DUET_OK) {
        duet_checkin_view_clear(&v);
    }
    duet_checkin_ritual_t *rs;
    duet_checkin_agreement_t *ag;
    duet_checkin_instance_t *due;
    size_t n;
    if (duet_checkin_list(fx->a, &rs, &n) == DUET_OK) {
        free(rs);
    }
    if (duet_checkin_agree_list(fx->a, &ag, &n) == DUET_OK) {
        free(ag);
    }
    if (duet_checkin_due(fx->a, fx->now + 30 * 86400000ull, &due, &n) == DUET_OK) {
        free(due);
    }
    duet_store_rollback(fx->a);
    return 0;
}
