/*
 * The sync engine against an in-memory host: the protocol rules one frame at a time (the
 * store-backed simulation with crashes lives in test_sim.c). Checks: both directions
 * complete; ACK only after the commit; a failed commit acknowledges nothing; duplicates are
 * acknowledged without being stored twice; the in-flight window bounds what is sent; a
 * version mismatch and malformed frames fail clearly and tell the peer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "codec.h"
#include "sync.h"

#define MAXN 20000

typedef struct memhost {
    /* outbox */
    uint64_t out_seq[MAXN];
    uint8_t *out_env[MAXN];
    size_t out_len[MAXN];
    size_t nout;
    uint64_t out_last;
    /* received (committed and pending) */
    uint8_t have[MAXN];
    uint8_t pending[MAXN];
    bool open;
    size_t stored;       /* committed puts */
    size_t pending_puts;
    bool fail_commit;
    size_t commits;
} memhost_t;

static duet_err_t mh_recv_state(void *ctx, uint64_t *wm, uint64_t *above, size_t cap, size_t *n)
{
    memhost_t *h = ctx;
    uint64_t w = 0;
    while (w + 1 < MAXN && h->have[w + 1]) {
        w++;
    }
    *wm = w;
    *n = 0;
    for (uint64_t s = w + 1; s < MAXN && *n < cap; s++) {
        if (h->have[s]) {
            above[(*n)++] = s;
        }
    }
    return DUET_OK;
}

static duet_err_t mh_out_last(void *ctx, uint64_t *last)
{
    *last = ((memhost_t *)ctx)->out_last;
    return DUET_OK;
}

static duet_err_t mh_outbox_next(void *ctx, uint64_t after, uint64_t *seq, const uint8_t **env,
                                 size_t *len)
{
    memhost_t *h = ctx;
    for (size_t i = 0; i < h->nout; i++) {
        if (h->out_seq[i] > after) {
            *seq = h->out_seq[i];
            *env = h->out_env[i];
            *len = h->out_len[i];
            return DUET_OK;
        }
    }
    return DUET_ENOENT;
}

static duet_err_t mh_begin(void *ctx)
{
    memhost_t *h = ctx;
    assert_false(h->open);
    h->open = true;
    h->pending_puts = 0;
    memset(h->pending, 0, sizeof h->pending);
    return DUET_OK;
}

static duet_err_t mh_put(void *ctx, uint64_t seq, const uint8_t *env, size_t len, bool *counted)
{
    memhost_t *h = ctx;
    (void)env;
    (void)len;
    *counted = false;
    assert_true(h->open);
    if (seq >= MAXN) {
        return DUET_ERANGE;
    }
    if (h->have[seq] || h->pending[seq]) {
        return DUET_EDUP;
    }
    h->pending[seq] = 1;
    h->pending_puts++;
    *counted = true;
    return DUET_OK;
}

static duet_err_t mh_commit(void *ctx)
{
    memhost_t *h = ctx;
    assert_true(h->open);
    if (h->fail_commit) {
        return DUET_ENOSPC;
    }
    for (size_t s = 0; s < MAXN; s++) {
        if (h->pending[s]) {
            h->have[s] = 1;
        }
    }
    h->stored += h->pending_puts;
    h->open = false;
    h->commits++;
    return DUET_OK;
}

static void mh_abort(void *ctx)
{
    memhost_t *h = ctx;
    memset(h->pending, 0, sizeof h->pending);
    h->open = false;
}

static duet_err_t mh_acked(void *ctx, uint64_t wm, const uint64_t *above, size_t n,
                           uint64_t *items)
{
    memhost_t *h = ctx;
    size_t k = 0;
    *items = 0;
    for (size_t i = 0; i < h->nout; i++) {
        bool got = h->out_seq[i] <= wm;
        for (size_t j = 0; j < n && !got; j++) {
            got = above[j] == h->out_seq[i];
        }
        if (got) {
            free(h->out_env[i]);
            (*items)++;
        } else {
            h->out_seq[k] = h->out_seq[i];
            h->out_env[k] = h->out_env[i];
            h->out_len[k] = h->out_len[i];
            k++;
        }
    }
    h->nout = k;
    return DUET_OK;
}

static duet_sync_host_t host_of(memhost_t *h)
{
    duet_sync_host_t x = {h,       mh_recv_state, mh_out_last, mh_outbox_next, mh_begin,
                          mh_put, mh_commit,     mh_abort,    mh_acked};
    return x;
}

static duet_sync_t *mk(const duet_sync_host_t *x)
{
    duet_sync_t *s = duet_sync_new(x);
    assert_non_null(s);
    assert_int_equal(duet_sync_start(s), DUET_OK);
    return s;
}

static void queue(memhost_t *h, size_t n, size_t len)
{
    for (size_t i = 0; i < n; i++) {
        h->out_last++;
        h->out_seq[h->nout] = h->out_last;
        h->out_env[h->nout] = calloc(1, len);
        h->out_len[h->nout] = len;
        h->nout++;
    }
}

static void clear(memhost_t *h)
{
    for (size_t i = 0; i < h->nout; i++) {
        free(h->out_env[i]);
    }
}

/* Move every frame a has to say into b, then flush b. Returns frames moved. */
static size_t pump(duet_sync_t *a, duet_sync_t *b)
{
    size_t moved = 0;
    for (;;) {
        const uint8_t *f;
        size_t len;
        assert_int_equal(duet_sync_next_frame(a, &f, &len), DUET_OK);
        if (len == 0) {
            break;
        }
        uint8_t *copy = malloc(len);
        memcpy(copy, f, len);
        duet_err_t ignored = duet_sync_recv(b, copy, len); /* b may fail; the test looks */
        (void)ignored;
        free(copy);
        moved++;
    }
    duet_err_t flushed = duet_sync_flush(b);
    (void)flushed;
    return moved;
}

static void run_until_quiet(duet_sync_t *a, duet_sync_t *b)
{
    for (int i = 0; i < 100000; i++) {
        size_t m = pump(a, b) + pump(b, a);
        if (m == 0) {
            return;
        }
    }
    fail_msg("no quiescence");
}

static void test_both_ways(void **state)
{
    (void)state;
    memhost_t *ha = calloc(1, sizeof *ha), *hb = calloc(1, sizeof *hb);
    queue(ha, 40, 200);
    queue(hb, 40, 200);
    duet_sync_host_t xa = host_of(ha), xb = host_of(hb);
    duet_sync_t *a = mk(&xa), *b = mk(&xb);
    run_until_quiet(a, b);
    assert_true(duet_sync_done(a));
    assert_true(duet_sync_done(b));
    assert_int_equal(duet_sync_items_sent(a), 40);
    assert_int_equal(duet_sync_items_received(a), 40);
    assert_int_equal(ha->nout, 0);
    assert_int_equal(hb->stored, 40);
    assert_int_equal(ha->stored, 40);
    /* A new item while connected: kick, and it flows. */
    queue(ha, 1, 100);
    assert_false(duet_sync_done(a));
    assert_int_equal(duet_sync_kick(a), DUET_OK);
    run_until_quiet(a, b);
    assert_true(duet_sync_done(a));
    assert_int_equal(hb->stored, 41);
    duet_sync_free(a);
    duet_sync_free(b);
    clear(ha);
    clear(hb);
    free(ha);
    free(hb);
}

static void test_ack_only_after_commit(void **state)
{
    (void)state;
    memhost_t *ha = calloc(1, sizeof *ha), *hb = calloc(1, sizeof *hb);
    queue(ha, 5, 100);
    duet_sync_host_t xa = host_of(ha), xb = host_of(hb);
    duet_sync_t *a = mk(&xa), *b = mk(&xb);
    const uint8_t *f;
    size_t len;
    /* HELLOs cross. */
    pump(a, b);
    pump(b, a);
    /* a sends its envelopes; b receives but has not flushed: no ACK may leave b. */
    for (;;) {
        assert_int_equal(duet_sync_next_frame(a, &f, &len), DUET_OK);
        if (len == 0) {
            break;
        }
        assert_int_equal(duet_sync_recv(b, f, len), DUET_OK);
    }
    assert_true(duet_sync_batch_open(b));
    assert_int_equal(duet_sync_next_frame(b, &f, &len), DUET_OK);
    assert_int_equal(len, 0);
    /* The commit fails (disk full): the engine fails, nothing is acknowledged. */
    hb->fail_commit = true;
    assert_int_equal(duet_sync_flush(b), DUET_ENOSPC);
    assert_int_equal(duet_sync_next_frame(b, &f, &len), DUET_OK);
    assert_int_equal(len, 0);
    assert_int_equal(hb->stored, 0);
    assert_int_equal(ha->nout, 5);
    duet_sync_free(b);
    duet_sync_free(a);

    /* Reconnect with room on the disk: everything arrives once. */
    hb->fail_commit = false;
    a = mk(&xa);
    b = mk(&xb);
    run_until_quiet(a, b);
    assert_true(duet_sync_done(a));
    assert_int_equal(hb->stored, 5);
    assert_int_equal(ha->nout, 0);
    duet_sync_free(a);
    duet_sync_free(b);
    clear(ha);
    clear(hb);
    free(ha);
    free(hb);
}

static void test_window(void **state)
{
    (void)state;
    memhost_t *ha = calloc(1, sizeof *ha), *hb = calloc(1, sizeof *hb);
    queue(ha, 100, 64 * 1024);
    duet_sync_host_t xa = host_of(ha), xb = host_of(hb);
    duet_sync_t *a = mk(&xa), *b = mk(&xb);
    pump(a, b);
    pump(b, a);
    /* Without ACKs, a sends at most the window (plus the envelope that crosses it). */
    size_t bytes = 0, frames = 0;
    const uint8_t *f;
    size_t len;
    for (;;) {
        assert_int_equal(duet_sync_next_frame(a, &f, &len), DUET_OK);
        if (len == 0) {
            break;
        }
        bytes += len;
        frames++;
    }
    assert_true(frames >= 16 && frames <= 17);
    assert_true(bytes <= DUET_SYNC_WINDOW + 64 * 1024 + 1024);
    duet_sync_free(a);
    duet_sync_free(b);
    /* With ACKs everything goes. */
    a = mk(&xa);
    b = mk(&xb);
    run_until_quiet(a, b);
    assert_int_equal(hb->stored, 100);
    duet_sync_free(a);
    duet_sync_free(b);
    clear(ha);
    clear(hb);
    free(ha);
    free(hb);
}

static void test_duplicates_acknowledged(void **state)
{
    (void)state;
    memhost_t *ha = calloc(1, sizeof *ha), *hb = calloc(1, sizeof *hb);
    queue(ha, 3, 50);
    duet_sync_host_t xa = host_of(ha), xb = host_of(hb);
    duet_sync_t *a = mk(&xa), *b = mk(&xb);
    pump(a, b);
    pump(b, a);
    const uint8_t *f;
    size_t len;
    assert_int_equal(duet_sync_next_frame(a, &f, &len), DUET_OK);
    uint8_t *copy = malloc(len);
    memcpy(copy, f, len);
    size_t clen = len;
    assert_int_equal(duet_sync_recv(b, copy, clen), DUET_OK);
    assert_int_equal(duet_sync_recv(b, copy, clen), DUET_OK); /* the same envelope again */
    assert_int_equal(duet_sync_flush(b), DUET_OK);
    assert_int_equal(hb->stored, 1);
    assert_int_equal(duet_sync_recv(b, copy, clen), DUET_OK); /* and after the commit */
    assert_int_equal(duet_sync_flush(b), DUET_OK);
    assert_int_equal(hb->stored, 1);
    free(copy);
    run_until_quiet(a, b);
    assert_int_equal(hb->stored, 3);
    assert_int_equal(duet_sync_items_received(b), 3);
    assert_true(duet_sync_done(a));
    duet_sync_free(a);
    duet_sync_free(b);
    clear(ha);
    clear(hb);
    free(ha);
    free(hb);
}

static size_t hello_with_version(uint8_t *buf, uint64_t version)
{
    duet_codec_enc_t e;
    const uint8_t *p;
    size_t n;
    duet_codec_enc_init(&e, 256);
    duet_codec_put_map(&e, 5);
    duet_codec_put_key(&e, 0);
    duet_codec_put_uint(&e, 1);
    duet_codec_put_key(&e, 1);
    duet_codec_put_uint(&e, version);
    duet_codec_put_key(&e, 2);
    duet_codec_put_uint(&e, 0);
    duet_codec_put_key(&e, 3);
    duet_codec_put_array(&e, 0);
    duet_codec_put_key(&e, 4);
    duet_codec_put_uint(&e, 0);
    assert_int_equal(duet_codec_enc_finish(&e, &p, &n), DUET_OK);
    memcpy(buf, p, n);
    duet_codec_enc_dispose(&e);
    return n;
}

static void test_version_and_garbage(void **state)
{
    (void)state;
    memhost_t *ha = calloc(1, sizeof *ha), *hb = calloc(1, sizeof *hb);
    duet_sync_host_t xa = host_of(ha), xb = host_of(hb);
    duet_sync_t *a = mk(&xa), *b = mk(&xb);
    uint8_t buf[256];
    size_t n = hello_with_version(buf, 2);
    assert_int_equal(duet_sync_recv(b, buf, n), DUET_EVERSION);
    /* b tells the peer why, and a reports the peer's version clearly. */
    pump(b, a);
    uint32_t pv;
    assert_int_equal(duet_sync_error(a), DUET_EVERSION);
    assert_int_equal(duet_sync_peer_error(a, &pv), DUET_EVERSION);
    assert_int_equal(pv, DUET_SYNC_VERSION);
    duet_sync_free(a);
    duet_sync_free(b);

    /* Garbage, an ENVELOPE before HELLO, an unknown frame type, an unknown key. */
    static const char *const bad[] = {
        "\xff\xfe", "\x83\x00\x02\x01\x01\x02\xc4\x01\x00", "\x81\x00\x09",
        "\x82\x00\x04\x07\x01",
    };
    static const size_t blen[] = {2, 9, 3, 5};
    for (size_t i = 0; i < 4; i++) {
        b = mk(&xb);
        assert_int_equal(duet_sync_recv(b, (const uint8_t *)bad[i], blen[i]), DUET_EPROTO);
        assert_int_equal(duet_sync_recv(b, (const uint8_t *)bad[i], blen[i]), DUET_EPROTO);
        const uint8_t *f;
        size_t len;
        assert_int_equal(duet_sync_next_frame(b, &f, &len), DUET_OK);
        assert_true(len > 0); /* the ERROR frame */
        assert_int_equal(duet_sync_next_frame(b, &f, &len), DUET_OK);
        assert_int_equal(len, 0);
        duet_sync_free(b);
    }
    free(ha);
    free(hb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_both_ways),
        cmocka_unit_test(test_ack_only_after_commit),
        cmocka_unit_test(test_window),
        cmocka_unit_test(test_duplicates_acknowledged),
        cmocka_unit_test(test_version_and_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
