/*
 * Voice notes end to end below the network: the voice item body, the blobs table, and two
 * blob transfer engines over two real paired homes, wired together in memory (quicly's
 * t/test.c style) with knobs for lost, duplicated, reordered and corrupted frames and for
 * disconnects. What a user would check:
 *  - a voice note arrives byte-identical, whatever the network does, and only then is it
 *    available; both engines say done only when the receiver has it;
 *  - a transfer interrupted any number of times resumes where it stopped: on a clean link
 *    not one sealed byte is taken in twice (the .rx count equals the sealed size);
 *  - a chunk corrupted on the way is refetched; a byte flipped in a stored chunk on disk is
 *    found at the next start and exactly the chunks from it on are fetched again;
 *  - a blob damaged after it became available is detected by `save`, wanted again, and
 *    fetched again from its first bad chunk;
 *  - what cannot be sent is refused (missing, empty, over 50 MiB, not audio) and leaves
 *    nothing behind; the body and frame parsers are strict; the receiver asks for at most
 *    one window ahead.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "blobxfer.h"
#include "codec.h"
#include "items.h"
#include "testpair.h"
#include "testrng.h"
#include "testutil.h"
#include "voice.h"

#define NOW  1764150000000ull
#define UNIT (DUET_BLOB_HEADER_BYTES + DUET_BLOB_SEALED_CHUNK)

typedef struct fixture {
    char *dir;
    char ha[512], hb[512];
    duet_testrng_t trng;
    duet_rng_t rng;
    duet_store_t *a, *b;
} fixture_t;

/* ---- helpers ------------------------------------------------------------------------- */

static void put_le(uint8_t *p, uint32_t v, int n)
{
    for (int i = 0; i < n; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

/* A mono 16-bit 8 kHz PCM WAV of exactly `bytes` bytes (>= 46), samples from the rng. */
static void make_wav(fixture_t *f, const char *path, size_t bytes)
{
    uint8_t *w = malloc(bytes);
    assert_non_null(w);
    size_t data = (bytes - 44) & ~(size_t)1;
    memcpy(w, "RIFF", 4);
    put_le(w + 4, (uint32_t)(36 + data), 4);
    memcpy(w + 8, "WAVEfmt ", 8);
    put_le(w + 16, 16, 4);
    put_le(w + 20, 1, 2);    /* PCM */
    put_le(w + 22, 1, 2);    /* mono */
    put_le(w + 24, 8000, 4); /* rate */
    put_le(w + 28, 16000, 4);
    put_le(w + 32, 2, 2);
    put_le(w + 34, 16, 2);
    memcpy(w + 36, "data", 4);
    put_le(w + 40, (uint32_t)data, 4);
    duet_rng_fill(&f->rng, w + 44, bytes - 44);
    duet_test_write(path, w, bytes);
    free(w);
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->dir = duet_test_tmpdir();
    f->rng = duet_testrng_init(&f->trng, 42);
    duet_test_path(f->ha, sizeof f->ha, f->dir, "a");
    duet_test_path(f->hb, sizeof f->hb, f->dir, "b");
    f->a = duet_test_home(f->ha, "river", f->rng);
    f->b = duet_test_home(f->hb, "harbor", f->rng);
    duet_test_pair(f->a, f->b, f->rng, NOW);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    duet_store_close(f->a);
    duet_store_close(f->b);
    duet_test_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* Queue a voice note of `bytes` on from, and store its item on to as the sync engine would
 * (items_put_partner and the voice hook in one transaction). */
static void send_voice(fixture_t *f, duet_store_t *from, duet_store_t *to, size_t bytes,
                       const char *name, uint8_t id[DUET_ITEM_ID_BYTES])
{
    char path[600];
    duet_item_t it;
    duet_test_path(path, sizeof path, f->dir, name);
    make_wav(f, path, bytes);
    assert_int_equal(duet_voice_add(from, path, "for you", 7, NOW, id, NULL), DUET_OK);
    assert_int_equal(duet_items_get(from, id, &it), DUET_OK);
    assert_int_equal(duet_store_begin(to), DUET_OK);
    assert_int_equal(duet_voice_on_item(to, id, it.body, it.body_len), DUET_OK);
    assert_int_equal(
        duet_items_put_partner(to, id, DUET_KIND_VOICE, it.hlc, it.body, it.body_len, NOW),
        DUET_OK);
    assert_int_equal(duet_store_commit(to), DUET_OK);
    duet_item_clear(&it);
}

/* The receiver saves the note; it must be the file that was sent, byte for byte. */
static void assert_intact(fixture_t *f, duet_store_t *st, const uint8_t id[DUET_ITEM_ID_BYTES],
                          const char *name)
{
    char in[600], out[600];
    size_t la, lb;
    duet_test_path(in, sizeof in, f->dir, name);
    duet_test_path(out, sizeof out, f->dir, "saved.out");
    assert_int_equal(duet_voice_save(st, id, out, NULL), DUET_OK);
    uint8_t *x = duet_test_slurp(in, &la), *y = duet_test_slurp(out, &lb);
    assert_non_null(x);
    assert_non_null(y);
    assert_int_equal(la, lb);
    assert_memory_equal(x, y, la);
    free(x);
    free(y);
    unlink(out);
}

static duet_voice_blob_t blob_of(duet_store_t *st, const uint8_t id[DUET_ITEM_ID_BYTES])
{
    duet_voice_t v;
    duet_voice_blob_t b;
    assert_int_equal(duet_voice_load(st, id, &v, &b), DUET_OK);
    duet_voice_dispose(&v);
    return b;
}

static uint64_t fetched_of(duet_store_t *st, const uint8_t id[DUET_ITEM_ID_BYTES])
{
    duet_voice_blob_t b = blob_of(st, id);
    uint64_t fetched;
    assert_int_equal(duet_voice_progress(st, &b, NULL, &fetched), DUET_OK);
    return fetched;
}

/* ---- the in-memory network ----------------------------------------------------------- */

typedef struct queue {
    uint8_t **p;
    size_t *len;
    size_t n, cap;
} queue_t;

typedef struct knobs {
    uint32_t drop, dup, reorder, corrupt, disconnect; /* per mille, per frame (disconnect: per
                                                         step) */
} knobs_t;

typedef struct sim {
    fixture_t *f;
    duet_blobxfer_t *ea, *eb;
    queue_t ab, ba;
    knobs_t k;
    size_t bulk; /* DATA frames each side may send per step (0: 8) */
    size_t reconnects, steps, corrupted;
    uint64_t max_ahead; /* most DATA bytes a->b in the queue at once */
} sim_t;

static void q_push(queue_t *q, const uint8_t *p, size_t len)
{
    if (q->n == q->cap) {
        q->cap = q->cap ? q->cap * 2 : 64;
        q->p = realloc(q->p, q->cap * sizeof *q->p);
        q->len = realloc(q->len, q->cap * sizeof *q->len);
        assert_non_null(q->p);
        assert_non_null(q->len);
    }
    q->p[q->n] = malloc(len);
    assert_non_null(q->p[q->n]);
    memcpy(q->p[q->n], p, len);
    q->len[q->n++] = len;
}

static void q_clear(queue_t *q)
{
    for (size_t i = 0; i < q->n; i++) {
        free(q->p[i]);
    }
    q->n = 0;
}

static void q_free(queue_t *q)
{
    q_clear(q);
    free(q->p);
    free(q->len);
}

static bool roll(sim_t *s, uint32_t per_mille)
{
    return per_mille > 0 && duet_testrng_uniform(&s->f->trng, 1000) < per_mille;
}

static void link_up(sim_t *s)
{
    s->ea = duet_blobxfer_new(s->f->a, NULL);
    s->eb = duet_blobxfer_new(s->f->b, NULL);
    assert_non_null(s->ea);
    assert_non_null(s->eb);
    assert_int_equal(duet_blobxfer_start(s->ea), DUET_OK);
    assert_int_equal(duet_blobxfer_start(s->eb), DUET_OK);
}

static void link_down(sim_t *s)
{
    duet_blobxfer_free(s->ea);
    duet_blobxfer_free(s->eb);
    s->ea = s->eb = NULL;
    q_clear(&s->ab);
    q_clear(&s->ba);
}

/* Everything one engine has to say now: control frames, then up to `bulk` DATA frames (the
 * link's room). Returns the number of frames. */
static size_t produce(duet_blobxfer_t *e, queue_t *q, size_t bulk)
{
    const uint8_t *fr;
    size_t len, n = 0;
    for (;;) {
        assert_int_equal(duet_blobxfer_next_control(e, &fr, &len), DUET_OK);
        if (len == 0) {
            break;
        }
        assert_int_not_equal(duet_blobxfer_frame_type(fr, len), 0);
        q_push(q, fr, len);
        n++;
    }
    for (size_t i = 0; i < bulk; i++) {
        assert_int_equal(duet_blobxfer_next_data(e, &fr, &len), DUET_OK);
        if (len == 0) {
            break;
        }
        q_push(q, fr, len);
        n++;
    }
    return n;
}

/* Flip one byte inside a DATA frame's payload (the frame still parses). */
static bool corrupt_data(sim_t *s, uint8_t *fr, size_t len)
{
    duet_blobxfer_frame_t x;
    if (duet_blobxfer_parse(fr, len, &x) != DUET_OK || x.type != DUET_BLOBXFER_DATA) {
        return false;
    }
    size_t at = (size_t)(x.data - fr) + duet_testrng_uniform(&s->f->trng, (uint32_t)x.len);
    fr[at] ^= 0x20;
    return true;
}

/* Deliver what is queued, through the knobs, then flush (the batch boundary). */
static void deliver(sim_t *s, duet_blobxfer_t *to, queue_t *q)
{
    for (size_t i = 0; i + 1 < q->n; i++) {
        if (roll(s, s->k.reorder)) {
            uint8_t *p = q->p[i];
            size_t l = q->len[i];
            q->p[i] = q->p[i + 1];
            q->len[i] = q->len[i + 1];
            q->p[i + 1] = p;
            q->len[i + 1] = l;
        }
    }
    for (size_t i = 0; i < q->n; i++) {
        if (roll(s, s->k.drop)) {
            continue;
        }
        if (roll(s, s->k.corrupt) && corrupt_data(s, q->p[i], q->len[i])) {
            s->corrupted++;
        }
        assert_int_equal(duet_blobxfer_recv(to, q->p[i], q->len[i]), DUET_OK);
        if (roll(s, s->k.dup)) {
            assert_int_equal(duet_blobxfer_recv(to, q->p[i], q->len[i]), DUET_OK);
        }
    }
    q_clear(q);
    assert_int_equal(duet_blobxfer_flush(to), DUET_OK);
}

static uint64_t data_bytes(const queue_t *q)
{
    uint64_t n = 0;
    for (size_t i = 0; i < q->n; i++) {
        duet_blobxfer_frame_t x;
        if (duet_blobxfer_parse(q->p[i], q->len[i], &x) == DUET_OK &&
            x.type == DUET_BLOBXFER_DATA) {
            n += x.len;
        }
    }
    return n;
}

/* Run until both engines are done; a stall (a lost tail) or a disconnect knob starts a new
 * link, as a broken connection would. */
static void run(sim_t *s, size_t max_steps)
{
    link_up(s);
    for (s->steps = 0; s->steps < max_steps; s->steps++) {
        size_t bulk = s->bulk ? s->bulk : 8;
        size_t moved = produce(s->ea, &s->ab, bulk) + produce(s->eb, &s->ba, bulk);
        uint64_t ahead = data_bytes(&s->ab);
        if (ahead > s->max_ahead) {
            s->max_ahead = ahead;
        }
        if (roll(s, s->k.disconnect)) {
            link_down(s);
            s->reconnects++;
            link_up(s);
            continue;
        }
        deliver(s, s->eb, &s->ab);
        deliver(s, s->ea, &s->ba);
        if (duet_blobxfer_done(s->ea) && duet_blobxfer_done(s->eb)) {
            return;
        }
        if (moved == 0) {
            link_down(s);
            s->reconnects++;
            link_up(s);
        }
    }
    fail_msg("no completion after %zu steps (%zu reconnects)", s->steps, s->reconnects);
}

static void sim_end(sim_t *s)
{
    link_down(s);
    q_free(&s->ab);
    q_free(&s->ba);
}

/* ---- tests: the body ----------------------------------------------------------------- */

static void test_body_roundtrip_and_strictness(void **state)
{
    (void)state;
    duet_voice_t v, w;
    uint8_t *body;
    size_t len;
    memset(&v, 0, sizeof v);
    randombytes_buf(v.ref.id, sizeof v.ref.id);
    randombytes_buf(v.ref.key, sizeof v.ref.key);
    v.ref.size = 32044;
    memcpy(v.ref.mime, "audio/wav", 10);
    v.ref.duration_ms = 2000;
    memcpy(v.caption, "for you", 7);
    v.caption_len = 7;
    assert_int_equal(duet_voice_encode(&v, &body, &len), DUET_OK);
    assert_int_equal(duet_voice_decode(body, len, &w), DUET_OK);
    assert_memory_equal(w.ref.id, v.ref.id, 32);
    assert_memory_equal(w.ref.key, v.ref.key, 32);
    assert_int_equal(w.ref.size, 32044);
    assert_string_equal(w.ref.mime, "audio/wav");
    assert_int_equal(w.ref.duration_ms, 2000);
    assert_string_equal(w.caption, "for you");
    /* Every truncation and every single-byte change either fails or decodes to something
     * the checks accept; never a crash, never a key read past the body. */
    for (size_t i = 0; i < len; i++) {
        assert_int_not_equal(duet_voice_decode(body, i, &w), DUET_OK);
    }
    free(body);

    /* No caption: key 1 absent. */
    v.caption_len = 0;
    v.caption[0] = 0;
    assert_int_equal(duet_voice_encode(&v, &body, &len), DUET_OK);
    assert_int_equal(duet_voice_decode(body, len, &w), DUET_OK);
    assert_int_equal(w.caption_len, 0);
    free(body);

    /* What the encoder refuses. */
    v.ref.size = 0;
    assert_int_equal(duet_voice_encode(&v, &body, &len), DUET_EINVAL);
    v.ref.size = DUET_BLOB_MAX + 1;
    assert_int_equal(duet_voice_encode(&v, &body, &len), DUET_EINVAL);
    v.ref.size = 10;
    v.caption_len = DUET_VOICE_CAPTION_MAX + 1;
    assert_int_equal(duet_voice_encode(&v, &body, &len), DUET_ETOOBIG);
    v.caption_len = 2;
    memcpy(v.caption, "\xc3\x28", 2);
    assert_int_equal(duet_voice_encode(&v, &body, &len), DUET_EUTF8);

    /* What the decoder refuses: an unknown key, a short id, an empty caption, a control
     * character in the mime type, size 0. */
    static const struct {
        const char *why;
        uint8_t extra_key;
        size_t id_len;
        const char *caption;
        const char *mime;
        uint64_t size;
    } bad[] = {{"unknown key", 7, 32, NULL, "audio/wav", 10},
               {"short id", 0, 31, NULL, "audio/wav", 10},
               {"empty caption", 0, 32, "", "audio/wav", 10},
               {"mime control", 0, 32, NULL, "audio/\x01wav", 10},
               {"size 0", 0, 32, NULL, "audio/wav", 0},
               {"size over 50 MiB", 0, 32, NULL, "audio/wav", DUET_BLOB_MAX + 1}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        duet_codec_enc_t e;
        const uint8_t *p;
        uint8_t id[32] = {0}, key[32] = {0};
        duet_codec_enc_init(&e, 4096);
        duet_codec_put_map(&e, 5u + (bad[i].caption != NULL) + (bad[i].extra_key != 0));
        if (bad[i].caption != NULL) {
            duet_codec_put_key(&e, 1);
            duet_codec_put_str(&e, bad[i].caption, strlen(bad[i].caption));
        }
        duet_codec_put_key(&e, 2);
        duet_codec_put_bin(&e, id, bad[i].id_len);
        duet_codec_put_key(&e, 3);
        duet_codec_put_bin(&e, key, 32);
        duet_codec_put_key(&e, 4);
        duet_codec_put_uint(&e, bad[i].size);
        duet_codec_put_key(&e, 5);
        duet_codec_put_str(&e, bad[i].mime, strlen(bad[i].mime));
        duet_codec_put_key(&e, 6);
        duet_codec_put_uint(&e, 1);
        if (bad[i].extra_key) {
            duet_codec_put_key(&e, bad[i].extra_key);
            duet_codec_put_uint(&e, 1);
        }
        assert_int_equal(duet_codec_enc_finish(&e, &p, &len), DUET_OK);
        if (duet_voice_decode(p, len, &w) != DUET_EDECODE) {
            fail_msg("decoded a body with %s", bad[i].why);
        }
        duet_codec_enc_dispose(&e);
    }
}

/* ---- tests: frames ------------------------------------------------------------------- */

static size_t enc_frame(uint8_t *out, uint32_t type, int nkeys, const uint64_t *vals,
                        const uint8_t *id, size_t id_len, const uint8_t *data, size_t dlen)
{
    duet_codec_enc_t e;
    const uint8_t *p;
    size_t len;
    duet_codec_enc_init(&e, DUET_BLOBXFER_FRAME_MAX + 64);
    duet_codec_put_map(&e, (uint32_t)nkeys);
    duet_codec_put_key(&e, 0);
    duet_codec_put_uint(&e, type);
    for (int k = 1; k < nkeys; k++) {
        duet_codec_put_key(&e, (uint32_t)k);
        if (k == 1 && id != NULL) {
            duet_codec_put_bin(&e, id, id_len);
        } else if (k == 4 && data != NULL) {
            duet_codec_put_bin(&e, data, dlen);
        } else {
            duet_codec_put_uint(&e, vals[k]);
        }
    }
    assert_int_equal(duet_codec_enc_finish(&e, &p, &len), DUET_OK);
    memcpy(out, p, len);
    duet_codec_enc_dispose(&e);
    return len;
}

static void test_frame_parser(void **state)
{
    (void)state;
    static uint8_t fr[DUET_BLOBXFER_FRAME_MAX + 128], data[DUET_BLOBXFER_DATA_MAX + 1];
    uint8_t id[32];
    duet_blobxfer_frame_t x;
    randombytes_buf(id, sizeof id);
    uint64_t want[5] = {0, 0, 7, 100, 200};
    size_t n = enc_frame(fr, DUET_BLOBXFER_WANT, 5, want, id, 32, NULL, 0);
    assert_int_equal(duet_blobxfer_frame_type(fr, n), DUET_BLOBXFER_WANT);
    assert_int_equal(duet_blobxfer_parse(fr, n, &x), DUET_OK);
    assert_int_equal(x.gen, 7);
    assert_int_equal(x.offset, 100);
    assert_int_equal(x.end, 200);
    assert_memory_equal(x.id, id, 32);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(duet_blobxfer_parse(fr, i, &x), DUET_EPROTO); /* truncated */
    }
    /* end <= offset, gen 0, end past the largest blob, a short id, a reserved type */
    uint64_t w1[5] = {0, 0, 7, 200, 200}, w2[5] = {0, 0, 0, 1, 2},
             w3[5] = {0, 0, 1, 0, DUET_BLOBXFER_SEALED_MAX + 1ull};
    n = enc_frame(fr, DUET_BLOBXFER_WANT, 5, w1, id, 32, NULL, 0);
    assert_int_equal(duet_blobxfer_parse(fr, n, &x), DUET_EPROTO);
    n = enc_frame(fr, DUET_BLOBXFER_WANT, 5, w2, id, 32, NULL, 0);
    assert_int_equal(duet_blobxfer_parse(fr, n, &x), DUET_EPROTO);
    n = enc_frame(fr, DUET_BLOBXFER_WANT, 5, w3, id, 32, NULL, 0);
    assert_int_equal(duet_blobxfer_parse(fr, n, &x), DUET_EPROTO);
    n = enc_frame(fr, DUET_BLOBXFER_WANT, 5, want, id, 31, NULL, 0);
    assert_int_equal(duet_blobxfer_parse(fr, n, &x), DUET_EPROTO);
    n = enc_frame(fr, 21, 5, want, id, 32, NULL, 0);
    assert_int_equal(duet_blobxfer_frame_type(fr, n), 21);
    assert_int_equal(duet_blobxfer_parse(fr, n, &x), DUET_EPROTO);

    /* DATA: 1..65577 bytes. */
    uint64_t d[5] = {0, 0, 3, 24, 0};
    n = enc_frame(fr, DUET_BLOBXFER_DATA, 5, d, id, 32, data, DUET_BLOBXFER_DATA_MAX);
    assert_int_equal(duet_blobxfer_parse(fr, n, &x), DUET_OK);
    assert_int_equal(x.len, DUET_BLOBXFER_DATA_MAX);
    assert_ptr_equal(x.data, fr + n - DUET_BLOBXFER_DATA_MAX);
    n = enc_frame(fr, DUET_BLOBXFER_DATA, 5, d, id, 32, data, DUET_BLOBXFER_DATA_MAX + 1);
    assert_int_equal(duet_blobxfer_parse(fr, n, &x), DUET_EPROTO);
    n = enc_frame(fr, DUET_BLOBXFER_DATA, 5, d, id, 32, data, 0);
    assert_int_equal(duet_blobxfer_parse(fr, n, &x), DUET_EPROTO);

    /* STATE, and an unknown extra key on it. */
    uint64_t st[3] = {0, 2, 9};
    n = enc_frame(fr, DUET_BLOBXFER_STATE, 2, st, NULL, 0, NULL, 0);
    assert_int_equal(duet_blobxfer_parse(fr, n, &x), DUET_OK);
    assert_int_equal(x.wanting, 2);
    n = enc_frame(fr, DUET_BLOBXFER_STATE, 3, st, NULL, 0, NULL, 0);
    assert_int_equal(duet_blobxfer_parse(fr, n, &x), DUET_EPROTO);

    /* Sync frames (types 1..5) are not ours, whatever follows. */
    n = enc_frame(fr, 3, 2, st, NULL, 0, NULL, 0);
    assert_int_equal(duet_blobxfer_frame_type(fr, n), 0);
    assert_int_equal(duet_blobxfer_parse(fr, n, &x), DUET_EPROTO);
    uint8_t odd[] = {0x81, 0x01, 0x10}; /* key 1 first */
    assert_int_equal(duet_blobxfer_frame_type(odd, sizeof odd), 0);
}

/* The bytes docs/protocol/blob.md shows: STATE 0, the first WANT, the first DATA. */
static void test_frame_bytes(void **state)
{
    fixture_t *f = *state;
    uint8_t id[16];
    const uint8_t *fr;
    size_t len;
    static const uint8_t state0[] = {0x82, 0x00, 0x14, 0x01, 0x00};
    duet_blobxfer_t *ea = duet_blobxfer_new(f->a, NULL);
    assert_int_equal(duet_blobxfer_start(ea), DUET_OK);
    assert_int_equal(duet_blobxfer_next_control(ea, &fr, &len), DUET_OK);
    assert_int_equal(len, sizeof state0);
    assert_memory_equal(fr, state0, sizeof state0);

    send_voice(f, f->a, f->b, 3u << 20, "bytes.wav", id);
    duet_voice_blob_t b = blob_of(f->b, id);
    duet_blobxfer_t *eb = duet_blobxfer_new(f->b, NULL);
    assert_int_equal(duet_blobxfer_start(eb), DUET_OK);
    assert_int_equal(duet_blobxfer_next_control(eb, &fr, &len), DUET_OK); /* STATE 1 */
    assert_int_equal(duet_blobxfer_next_control(eb, &fr, &len), DUET_OK); /* WANT */
    static const uint8_t head[] = {0x85, 0x00, 0x10, 0x01, 0xc4, 0x20};
    static const uint8_t tail[] = {0x02, 0x01, 0x03, 0x00, 0x04, 0xce, 0x00, 0x20, 0x02, 0x38};
    assert_int_equal(len, sizeof head + 32 + sizeof tail);
    assert_memory_equal(fr, head, sizeof head);
    assert_memory_equal(fr + sizeof head, b.id, 32);
    assert_memory_equal(fr + sizeof head + 32, tail, sizeof tail);

    uint8_t want[128];
    memcpy(want, fr, len);
    assert_int_equal(duet_blobxfer_recv(ea, want, len), DUET_OK);
    assert_int_equal(duet_blobxfer_next_data(ea, &fr, &len), DUET_OK);
    static const uint8_t dhead[] = {0x85, 0x00, 0x11, 0x01, 0xc4, 0x20};
    static const uint8_t dtail[] = {0x02, 0x01, 0x03, 0x00, 0x04, 0xc6, 0x00, 0x01, 0x00, 0x29};
    assert_int_equal(len, sizeof dhead + 32 + sizeof dtail + UNIT);
    assert_memory_equal(fr, dhead, sizeof dhead);
    assert_memory_equal(fr + sizeof dhead + 32, dtail, sizeof dtail);
    duet_blobxfer_free(ea);
    duet_blobxfer_free(eb);
}

/* ---- tests: transfers ---------------------------------------------------------------- */

static void test_clean_transfer_exact_bytes(void **state)
{
    fixture_t *f = *state;
    uint8_t id[16];
    sim_t s = {.f = f};
    send_voice(f, f->a, f->b, 5u << 20, "five.wav", id);
    assert_int_equal(blob_of(f->b, id).state, DUET_VOICE_PARTIAL);
    char out[600];
    duet_test_path(out, sizeof out, f->dir, "early.out");
    assert_int_equal(duet_voice_save(f->b, id, out, NULL), DUET_ENOTHERE);
    assert_int_equal(access(out, F_OK), -1);

    run(&s, 10000);
    assert_int_equal(s.reconnects, 0);
    assert_int_equal(blob_of(f->b, id).state, DUET_VOICE_AVAILABLE);
    assert_intact(f, f->b, id, "five.wav");
    duet_voice_blob_t b = blob_of(f->b, id);
    uint64_t sealed = duet_blob_sealed_size(b.size);
    assert_int_equal(fetched_of(f->b, id), sealed); /* not a byte twice */
    /* The receiver never asks more than a window ahead of what it stored. */
    assert_true(s.max_ahead <= DUET_BLOBXFER_WINDOW + UNIT); /* a window, in whole units */
    assert_true(s.max_ahead > 0);
    sim_end(&s);

    /* My own blob stays mine: the sender's row is available and it saves intact too. */
    assert_true(blob_of(f->a, id).mine);
    assert_intact(f, f->a, id, "five.wav");
}

static void test_disconnects_resume_without_resending(void **state)
{
    fixture_t *f = *state;
    uint8_t id[16];
    sim_t s = {.f = f, .k = {.disconnect = 150}, .bulk = 2};
    send_voice(f, f->a, f->b, (3u << 20) + 12345, "three.wav", id);
    run(&s, 20000);
    assert_true(s.reconnects >= 3);
    assert_intact(f, f->b, id, "three.wav");
    /* Frames lost with a link were never taken in; the rest never came twice. */
    assert_int_equal(fetched_of(f->b, id), duet_blob_sealed_size(blob_of(f->b, id).size));
    sim_end(&s);
}

static void test_loss_dup_reorder(void **state)
{
    fixture_t *f = *state;
    uint8_t id1[16], id2[16], id3[16];
    sim_t s = {.f = f, .k = {.drop = 20, .dup = 30, .reorder = 30, .disconnect = 5}};
    send_voice(f, f->a, f->b, (2u << 20) + 777, "one.wav", id1);
    send_voice(f, f->a, f->b, 4000, "two.wav", id2);
    send_voice(f, f->b, f->a, (1u << 20) + 5, "three.wav", id3); /* the other way at once */
    run(&s, 50000);
    assert_intact(f, f->b, id1, "one.wav");
    assert_intact(f, f->b, id2, "two.wav");
    assert_intact(f, f->a, id3, "three.wav");
    sim_end(&s);
}

static void test_corrupted_on_the_way_refetched(void **state)
{
    fixture_t *f = *state;
    uint8_t id[16];
    sim_t s = {.f = f, .k = {.corrupt = 20}};
    send_voice(f, f->a, f->b, 3u << 20, "c.wav", id);
    run(&s, 20000);
    assert_true(s.corrupted > 0);
    assert_int_equal(s.reconnects, 0); /* refetched on the same link */
    assert_intact(f, f->b, id, "c.wav");
    duet_blobxfer_stats_t st;
    duet_blobxfer_stats(s.eb, &st);
    assert_int_equal(st.refetches, s.corrupted);
    sim_end(&s);
}

/* Stop a transfer half-way; flip a byte in a stored chunk on disk; the next link finds it,
 * and exactly the chunks from it to where the file ended are fetched again. */
static void test_flipped_byte_on_disk(void **state)
{
    fixture_t *f = *state;
    uint8_t id[16];
    char part[DUET_VOICE_PATH_MAX];
    sim_t s = {.f = f};
    send_voice(f, f->a, f->b, 3u << 20, "d.wav", id);
    duet_voice_blob_t b = blob_of(f->b, id);
    uint64_t sealed = duet_blob_sealed_size(b.size);
    assert_int_equal(duet_voice_path(f->b, b.id, ".part", part, sizeof part), DUET_OK);

    link_up(&s);
    struct stat sb = {0};
    for (int i = 0; i < 1000 && (stat(part, &sb) != 0 || sb.st_size < (off_t)(20 * UNIT)); i++) {
        produce(s.ea, &s.ab, 2);
        produce(s.eb, &s.ba, 2);
        deliver(&s, s.eb, &s.ab);
        deliver(&s, s.ea, &s.ba);
    }
    link_down(&s);
    assert_int_equal(stat(part, &sb), 0);
    uint64_t stored = (uint64_t)sb.st_size;
    assert_true(stored >= 20 * UNIT && stored < sealed);
    assert_int_equal(fetched_of(f->b, id), stored);

    /* Chunk 7 gets a flipped byte. */
    uint64_t bad = duet_blob_chunk_offset(7);
    int fd = open(part, O_RDWR);
    uint8_t c;
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &c, 1, (off_t)(bad + 1000)), 1);
    c ^= 1;
    assert_int_equal(pwrite(fd, &c, 1, (off_t)(bad + 1000)), 1);
    close(fd);

    run(&s, 10000);
    assert_intact(f, f->b, id, "d.wav");
    assert_int_equal(fetched_of(f->b, id), sealed + (stored - bad));
    sim_end(&s);
}

/* A crash after the last chunk was renamed into place but before the row said so: the next
 * start finds the complete file, checks it, and marks it available without the network. */
static void test_complete_on_disk_needs_no_network(void **state)
{
    fixture_t *f = *state;
    uint8_t id[16];
    char final[DUET_VOICE_PATH_MAX], src[DUET_VOICE_PATH_MAX];
    send_voice(f, f->a, f->b, 300000, "e.wav", id);
    duet_voice_blob_t b = blob_of(f->b, id);
    assert_int_equal(duet_voice_path(f->b, b.id, "", final, sizeof final), DUET_OK);
    assert_int_equal(duet_voice_path(f->a, b.id, "", src, sizeof src), DUET_OK);
    assert_int_equal(duet_voice_mkdir(f->b), DUET_OK);
    size_t len;
    uint8_t *bytes = duet_test_slurp(src, &len);
    duet_test_write(final, bytes, len);
    free(bytes);

    duet_blobxfer_t *e = duet_blobxfer_new(f->b, NULL);
    assert_non_null(e);
    assert_int_equal(duet_blobxfer_start(e), DUET_OK);
    assert_int_equal(blob_of(f->b, id).state, DUET_VOICE_AVAILABLE);
    duet_blobxfer_stats_t st;
    duet_blobxfer_stats(e, &st);
    assert_int_equal(st.blobs_in, 1);
    duet_blobxfer_free(e);
    assert_intact(f, f->b, id, "e.wav");
}

/* Damage after arrival: save detects it, the blob is wanted again, and the next link
 * fetches it again from the first bad chunk only. */
static void test_damaged_after_arrival(void **state)
{
    fixture_t *f = *state;
    uint8_t id[16];
    char final[DUET_VOICE_PATH_MAX], out[600];
    sim_t s = {.f = f};
    send_voice(f, f->a, f->b, 2u << 20, "g.wav", id);
    run(&s, 10000);
    sim_end(&s);
    duet_voice_blob_t b = blob_of(f->b, id);
    uint64_t sealed = duet_blob_sealed_size(b.size);
    assert_int_equal(duet_voice_path(f->b, b.id, "", final, sizeof final), DUET_OK);
    uint64_t bad = duet_blob_chunk_offset(25);
    int fd = open(final, O_RDWR);
    uint8_t c = 0;
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &c, 1, (off_t)bad + 5), 1);
    c ^= 0x80;
    assert_int_equal(pwrite(fd, &c, 1, (off_t)bad + 5), 1);
    close(fd);

    bool refetch = false;
    duet_test_path(out, sizeof out, f->dir, "damaged.out");
    assert_int_equal(duet_voice_save(f->b, id, out, &refetch), DUET_EBLOB);
    assert_true(refetch);
    assert_int_equal(access(out, F_OK), -1); /* nothing half-written */
    assert_int_equal(blob_of(f->b, id).state, DUET_VOICE_PARTIAL);

    sim_t s2 = {.f = f};
    run(&s2, 10000);
    assert_intact(f, f->b, id, "g.wav");
    assert_int_equal(blob_of(f->b, id).fetched, sealed - bad);
    sim_end(&s2);
}

/* The sender no longer has the blob: NOTHERE, the receiver leaves it for another link and
 * both are done; the item is still there, not available. */
static void test_not_there(void **state)
{
    fixture_t *f = *state;
    uint8_t id[16];
    char src[DUET_VOICE_PATH_MAX];
    send_voice(f, f->a, f->b, 100000, "h.wav", id);
    duet_voice_blob_t b = blob_of(f->a, id);
    assert_int_equal(duet_voice_path(f->a, b.id, "", src, sizeof src), DUET_OK);
    assert_int_equal(unlink(src), 0);
    sim_t s = {.f = f};
    run(&s, 1000);
    duet_blobxfer_stats_t st;
    duet_blobxfer_stats(s.eb, &st);
    assert_int_equal(st.skipped, 1);
    assert_int_equal(s.reconnects, 0);
    assert_int_equal(blob_of(f->b, id).state, DUET_VOICE_PARTIAL);
    sim_end(&s);
}

/* Two links on one home (the daemon and `duet sync`) never write one partial file at once:
 * the second leaves the blob to the first. */
static void test_one_receiver_per_blob(void **state)
{
    fixture_t *f = *state;
    uint8_t id[16];
    send_voice(f, f->a, f->b, 200000, "i.wav", id);
    duet_blobxfer_t *e1 = duet_blobxfer_new(f->b, NULL), *e2 = duet_blobxfer_new(f->b, NULL);
    assert_int_equal(duet_blobxfer_start(e1), DUET_OK);
    assert_int_equal(duet_blobxfer_start(e2), DUET_OK);
    duet_blobxfer_stats_t s1, s2;
    duet_blobxfer_stats(e1, &s1);
    duet_blobxfer_stats(e2, &s2);
    assert_int_equal(s1.skipped, 0);
    assert_int_equal(s2.skipped, 1);
    duet_blobxfer_free(e1);
    duet_blobxfer_free(e2);
}

/* done() waits for the partner's STATE, for the partner's blob, and for the commit. */
static void test_done_semantics(void **state)
{
    fixture_t *f = *state;
    uint8_t id[16];
    sim_t s = {.f = f};
    link_up(&s);
    assert_false(duet_blobxfer_done(s.ea)); /* no STATE heard yet */
    produce(s.ea, &s.ab, 8);
    produce(s.eb, &s.ba, 8);
    deliver(&s, s.eb, &s.ab);
    deliver(&s, s.ea, &s.ba);
    assert_true(duet_blobxfer_done(s.ea));
    assert_true(duet_blobxfer_done(s.eb));

    /* A voice item arrives at b during the link: b wants, so a is not done, until b has it. */
    send_voice(f, f->a, f->b, 150000, "j.wav", id);
    duet_blobxfer_refresh(s.eb);
    assert_false(duet_blobxfer_done(s.eb));
    assert_int_equal(duet_blobxfer_flush(s.eb), DUET_OK);
    produce(s.eb, &s.ba, 8); /* STATE 1 and WANT, before anything else */
    deliver(&s, s.ea, &s.ba);
    assert_false(duet_blobxfer_done(s.ea));
    /* Until b says it holds the blob, the relay still has to carry it. */
    duet_voice_blob_t up;
    assert_int_equal(duet_voice_next_to_relay(f->a, 0, &up), DUET_OK);
    for (int i = 0; i < 100 && !(duet_blobxfer_done(s.ea) && duet_blobxfer_done(s.eb)); i++) {
        produce(s.ea, &s.ab, 8);
        produce(s.eb, &s.ba, 8);
        deliver(&s, s.eb, &s.ab);
        if (!duet_blobxfer_done(s.eb)) {
            assert_false(duet_blobxfer_done(s.ea)); /* b's STATE 0 has not come */
        }
        deliver(&s, s.ea, &s.ba);
    }
    assert_true(duet_blobxfer_done(s.ea));
    assert_int_equal(blob_of(f->b, id).state, DUET_VOICE_AVAILABLE);
    /* b's STATE 0 came after a sent the last byte: b holds the blob, the relay is spared it. */
    assert_int_equal(duet_voice_next_to_relay(f->a, 0, &up), DUET_ENOENT);

    /* A STATE 0 says nothing of a blob b did not fetch on this link (it is busy on another
     * one, the relay's, say): the relay still has to carry it. */
    uint8_t id2[16], fr[64];
    send_voice(f, f->a, f->b, 1000, "j2.wav", id2);
    duet_blobxfer_t *other = duet_blobxfer_new(f->b, NULL);
    assert_int_equal(duet_blobxfer_start(other), DUET_OK); /* takes the blob up */
    duet_blobxfer_refresh(s.eb);
    for (int i = 0; i < 10; i++) {
        produce(s.ea, &s.ab, 8);
        produce(s.eb, &s.ba, 8);
        deliver(&s, s.eb, &s.ab);
        deliver(&s, s.ea, &s.ba);
    }
    uint64_t zero[2] = {0, 0};
    size_t n = enc_frame(fr, DUET_BLOBXFER_STATE, 2, zero, NULL, 0, NULL, 0);
    assert_int_equal(duet_blobxfer_recv(s.ea, fr, n), DUET_OK);
    assert_int_equal(duet_blobxfer_flush(s.ea), DUET_OK);
    assert_int_equal(blob_of(f->b, id2).state, DUET_VOICE_PARTIAL);
    assert_int_equal(duet_voice_next_to_relay(f->a, 0, &up), DUET_OK);
    assert_memory_equal(up.item, id2, 16);
    duet_blobxfer_free(other);
    sim_end(&s);
}

/* A WANT past the end of a blob we both know is a protocol error, sticky. */
static void test_want_past_end(void **state)
{
    fixture_t *f = *state;
    uint8_t id[16], fr[256];
    send_voice(f, f->a, f->b, 1000, "k.wav", id);
    duet_voice_blob_t b = blob_of(f->a, id);
    duet_blobxfer_t *e = duet_blobxfer_new(f->a, NULL);
    assert_int_equal(duet_blobxfer_start(e), DUET_OK);
    uint64_t sealed = duet_blob_sealed_size(b.size);
    uint64_t w[5] = {0, 0, 1, sealed, sealed + 10};
    size_t n = enc_frame(fr, DUET_BLOBXFER_WANT, 5, w, b.id, 32, NULL, 0);
    assert_int_equal(duet_blobxfer_recv(e, fr, n), DUET_EPROTO);
    assert_int_equal(duet_blobxfer_error(e), DUET_EPROTO);
    assert_int_equal(duet_blobxfer_flush(e), DUET_EPROTO);
    duet_blobxfer_free(e);
}

/* ---- tests: what cannot be sent ------------------------------------------------------ */

static void test_refusals(void **state)
{
    fixture_t *f = *state;
    char path[600], blobs[600];
    uint8_t id[16];
    uint64_t before, after;
    assert_int_equal(duet_items_count(f->a, -1, -1, &before), DUET_OK);

    duet_test_path(path, sizeof path, f->dir, "missing.wav");
    assert_int_equal(duet_voice_add(f->a, path, "", 0, NOW, id, NULL), DUET_ENOENT);
    duet_test_path(path, sizeof path, f->dir, "empty.wav");
    duet_test_write(path, "", 0);
    assert_int_equal(duet_voice_add(f->a, path, "", 0, NOW, id, NULL), DUET_EEMPTY);
    duet_test_path(path, sizeof path, f->dir, "text.wav");
    duet_test_write(path, "hello, this is not a recording\n", 31);
    assert_int_equal(duet_voice_add(f->a, path, "", 0, NOW, id, NULL), DUET_ENOTAUDIO);
    assert_int_equal(duet_voice_add(f->a, f->dir, "", 0, NOW, id, NULL), DUET_ENOTAUDIO);
    duet_test_path(path, sizeof path, f->dir, "huge.wav");
    make_wav(f, path, 4096);
    assert_int_equal(truncate(path, (off_t)DUET_BLOB_MAX + 1), 0); /* sparse */
    assert_int_equal(duet_voice_add(f->a, path, "", 0, NOW, id, NULL), DUET_ETOOBIG);
    duet_test_path(path, sizeof path, f->dir, "ok.wav");
    make_wav(f, path, 4096);
    assert_int_equal(duet_voice_add(f->a, path, "\xff", 1, NOW, id, NULL), DUET_EUTF8);

    assert_int_equal(duet_items_count(f->a, -1, -1, &after), DUET_OK);
    assert_int_equal(after, before);
    /* No blob file left behind by any of them. */
    duet_test_path(blobs, sizeof blobs, f->ha, "blobs");
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A '%s' 2>/dev/null)\"", blobs);
    assert_int_equal(system(cmd), 0);

    /* The file that was sent is never changed. */
    size_t l1, l2;
    uint8_t *x = duet_test_slurp(path, &l1);
    assert_int_equal(duet_voice_add(f->a, path, "", 0, NOW, id, NULL), DUET_OK);
    uint8_t *y = duet_test_slurp(path, &l2);
    assert_int_equal(l1, l2);
    assert_memory_equal(x, y, l1);
    free(x);
    free(y);
    struct stat sb;
    char final[DUET_VOICE_PATH_MAX];
    assert_int_equal(duet_voice_path(f->a, blob_of(f->a, id).id, "", final, sizeof final), DUET_OK);
    assert_int_equal(stat(final, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body_roundtrip_and_strictness),
        cmocka_unit_test(test_frame_parser),
        cmocka_unit_test_setup_teardown(test_frame_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clean_transfer_exact_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disconnects_resume_without_resending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loss_dup_reorder, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupted_on_the_way_refetched, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flipped_byte_on_disk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_complete_on_disk_needs_no_network, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_after_arrival, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_there, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_receiver_per_blob, setup, teardown),
        cmocka_unit_test_setup_teardown(test_done_semantics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_want_past_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
    };
    if (sodium_init() < 0) {
        return 1;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
