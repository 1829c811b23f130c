/*
 * Fuzz target: the blob transfer engine's frames (core/blobxfer.h), through the parser and
 * into two engines over two real paired homes: a, which holds a small voice blob (3 storage
 * units), and b, which wants it. The input is a sequence of frames, each prefixed by 4
 * bytes: the first picks the engine by its low bit (0: b, the receiver; 1: a, the sender),
 * the next three are the big-endian length. After each frame the engine flushes and is asked for
 * its output. The home folders are made once per process; before each input b's partial blob is
 * reset.
 *
 * A frame may name the fixture's blob by the placeholder id 0xAA * 32 (a msgpack bin 32 of
 * it): the target replaces it with the real id, which depends on the homes' randomness, so
 * the seeds stay valid. With DUET_FUZZ_DUMP=DIR set, it writes a seed of a real exchange
 * (every frame both engines sent, ids replaced by the placeholder) to DIR/session.
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "blobxfer.h"
#include "items.h"
#include "testpair.h"
#include "testrng.h"
#include "testutil.h"
#include "voice.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define WAV_BYTES (2u * 65536u + 1000u)
#define MAX_FRAME (DUET_BLOBXFER_FRAME_MAX + 64u)

typedef struct fixture {
    char *dir;
    duet_testrng_t trng;
    duet_store_t *a, *b;
    uint8_t blob_id[DUET_BLOB_ID_BYTES];
    char part[DUET_VOICE_PATH_MAX], rx[DUET_VOICE_PATH_MAX], final[DUET_VOICE_PATH_MAX];
} fixture_t;

static fixture_t *fx; /* the test harness's own state, made once */

static void cleanup(void)
{
    duet_store_close(fx->a);
    duet_store_close(fx->b);
    duet_test_rmrf(fx->dir);
    free(fx->dir);
    free(fx);
}

static void put_le(uint8_t *p, uint32_t v, int n)
{
    for (int i = 0; i < n; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static void make_fixture(void)
{
    char ha[600], hb[600], wav[600];
    uint8_t item_id[DUET_ITEM_ID_BYTES];
    duet_item_t it;
    duet_voice_t v;
    duet_voice_blob_t b;
    if (sodium_init() < 0) {
        abort();
    }
    fx = calloc(1, sizeof *fx);
    fx->dir = duet_test_tmpdir();
    duet_rng_t rng = duet_testrng_init(&fx->trng, 7);
    duet_test_path(ha, sizeof ha, fx->dir, "a");
    duet_test_path(hb, sizeof hb, fx->dir, "b");
    duet_test_path(wav, sizeof wav, fx->dir, "v.wav");
    fx->a = duet_test_home(ha, "a", rng);
    fx->b = duet_test_home(hb, "b", rng);
    duet_test_pair(fx->a, fx->b, rng, 1764150000000ull);

    uint8_t *w = calloc(1, WAV_BYTES);
    memcpy(w, "RIFF", 4);
    put_le(w + 4, WAV_BYTES - 8, 4);
    memcpy(w + 8, "WAVEfmt ", 8);
    put_le(w + 16, 16, 4);
    put_le(w + 20, 1, 2);
    put_le(w + 22, 1, 2);
    put_le(w + 24, 8000, 4);
    put_le(w + 28, 16000, 4);
    put_le(w + 32, 2, 2);
    put_le(w + 34, 16, 2);
    memcpy(w + 36, "data", 4);
    put_le(w + 40, WAV_BYTES - 44, 4);
    duet_rng_fill(&rng, w + 44, WAV_BYTES - 44);
    duet_test_write(wav, w, WAV_BYTES);
    free(w);
    if (duet_voice_add(fx->a, wav, "", 0, 1764150000000ull, item_id, NULL) != DUET_OK ||
        duet_items_get(fx->a, item_id, &it) != DUET_OK || duet_store_begin(fx->b) != DUET_OK ||
        duet_voice_on_item(fx->b, item_id, it.body, it.body_len) != DUET_OK ||
        duet_items_put_partner(fx->b, item_id, DUET_KIND_VOICE, it.hlc, it.body, it.body_len,
                               1764150000000ull) != DUET_OK ||
        duet_store_commit(fx->b) != DUET_OK || duet_voice_load(fx->b, item_id, &v, &b) != DUET_OK ||
        duet_voice_path(fx->b, b.id, ".part", fx->part, sizeof fx->part) != DUET_OK ||
        duet_voice_path(fx->b, b.id, ".rx", fx->rx, sizeof fx->rx) != DUET_OK ||
        duet_voice_path(fx->b, b.id, "", fx->final, sizeof fx->final) != DUET_OK) {
        abort();
    }
    memcpy(fx->blob_id, b.id, sizeof fx->blob_id);
    duet_voice_dispose(&v);
    duet_item_clear(&it);
    atexit(cleanup);
}

/* b wants the blob again, from nothing. */
static void reset_b(void)
{
    unlink(fx->part);
    unlink(fx->rx);
    unlink(fx->final);
    if (sqlite3_exec(duet_store_db(fx->b), "UPDATE blobs SET state = 0, fetched = 0", NULL, NULL,
                     NULL) != SQLITE_OK) {
        abort();
    }
}

/* Swap every msgpack bin-32 of the placeholder for the real id, or back. */
static void swap_ids(uint8_t *f, size_t len, const uint8_t from[32], const uint8_t to[32])
{
    for (size_t i = 0; i + 34 <= len; i++) {
        if (f[i] == 0xc4 && f[i + 1] == 32 && memcmp(f + i + 2, from, 32) == 0) {
            memcpy(f + i + 2, to, 32);
        }
    }
}

/* Everything e has to say now; appended to dump (if any) as length-prefixed frames for the
 * other side. Returns the number of frames. */
static size_t drain(duet_blobxfer_t *e, duet_blobxfer_t *to, FILE *dump, bool to_a)
{
    static const uint8_t ph[32] = {0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa,
                                   0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa,
                                   0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa};
    size_t n = 0;
    for (int i = 0; i < 16; i++) {
        const uint8_t *f;
        size_t len;
        if (duet_blobxfer_next_control(e, &f, &len) != DUET_OK ||
            (len == 0 && duet_blobxfer_next_data(e, &f, &len) != DUET_OK) || len == 0) {
            break;
        }
        n++;
        if (to != NULL || dump != NULL) {
            uint8_t *copy = malloc(len);
            memcpy(copy, f, len);
            if (to != NULL) {
                (void)!duet_blobxfer_recv(to, copy, len);
            }
            if (dump != NULL) {
                swap_ids(copy, len, fx->blob_id, ph);
                uint8_t h[4] = {to_a, (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len};
                fwrite(h, 1, 4, dump);
                fwrite(copy, 1, len, dump);
            }
            free(copy);
        }
    }
    return n;
}

/* DUET_FUZZ_DUMP: a real exchange, as a seed. */
static void dump_session(const char *dir)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/session", dir);
    FILE *out = fopen(path, "wb");
    if (out == NULL) {
        abort();
    }
    reset_b();
    duet_blobxfer_t *ea = duet_blobxfer_new(fx->a, NULL), *eb = duet_blobxfer_new(fx->b, NULL);
    if (duet_blobxfer_start(ea) != DUET_OK || duet_blobxfer_start(eb) != DUET_OK) {
        abort();
    }
    for (int round = 0; round < 64; round++) {
        size_t moved = drain(eb, ea, out, true) + drain(ea, eb, out, false);
        (void)!duet_blobxfer_flush(ea);
        (void)!duet_blobxfer_flush(eb);
        if (moved == 0) {
            break;
        }
    }
    duet_blobxfer_free(ea);
    duet_blobxfer_free(eb);
    fclose(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t ph[32] = {0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa,
                                   0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa,
                                   0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa};
    static uint8_t frame[MAX_FRAME];
    if (fx == NULL) {
        make_fixture();
        const char *dump = getenv("DUET_FUZZ_DUMP");
        if (dump != NULL) {
            dump_session(dump);
        }
    }
    reset_b();
    duet_blobxfer_t *ea = duet_blobxfer_new(fx->a, NULL), *eb = duet_blobxfer_new(fx->b, NULL);
    if (ea == NULL || eb == NULL || duet_blobxfer_start(ea) != DUET_OK ||
        duet_blobxfer_start(eb) != DUET_OK) {
        abort(); /* the fixture itself must work */
    }
    size_t pos = 0;
    while (size - pos >= 4) {
        bool to_a = (data[pos] & 1) != 0;
        size_t n = (size_t)data[pos + 1] << 16 | (size_t)data[pos + 2] << 8 | data[pos + 3];
        pos += 4;
        if (n > size - pos) {
            n = size - pos;
        }
        if (n > MAX_FRAME) {
            n = MAX_FRAME;
        }
        memcpy(frame, data + pos, n);
        pos += n;
        swap_ids(frame, n, ph, fx->blob_id);
        duet_blobxfer_frame_t x;
        (void)!duet_blobxfer_parse(frame, n, &x);
        (void)duet_blobxfer_frame_type(frame, n);
        duet_blobxfer_t *e = to_a ? ea : eb;
        (void)!duet_blobxfer_recv(e, frame, n);
        (void)!duet_blobxfer_flush(e);
        (void)drain(e, NULL, NULL, false);
        (void)duet_blobxfer_done(e);
    }
    duet_blobxfer_free(ea);
    duet_blobxfer_free(eb);
    return 0;
}
