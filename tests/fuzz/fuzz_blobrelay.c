/*
 * Fuzz target: the relay blob session (core/blobrelay.h) reading what a relay sends. Two
 * engines over two real paired homes: a holds a small voice blob to upload (3 units), b
 * wants it. The input is a sequence of relay frames, each prefixed by 4 bytes: the first
 * picks the engine by its low bit (0: b, which downloads; 1: a, which uploads), the next
 * three are the big-endian length. Each engine has sent its HELLO (request id 1) before the
 * first frame; after each frame it is asked for its next frames. Homes are made once per
 * process; before each input the blob's progress is reset on both sides.
 *
 * With DUET_FUZZ_DUMP=DIR set it writes DIR/session: every frame a real relay engine
 * (core/relayd, in memory) sent to both engines during a whole exchange.
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

#include "blobrelay.h"
#include "items.h"
#include "relay_client.h"
#include "relay_sqlite.h"
#include "relayd.h"
#include "testpair.h"
#include "testrng.h"
#include "testutil.h"
#include "voice.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define WAV_BYTES (2u * 65536u + 1000u)

typedef struct fixture {
    char *dir;
    duet_testrng_t trng;
    duet_store_t *a, *b;
    uint8_t blob_id[DUET_BLOB_ID_BYTES];
    char part[DUET_VOICE_PATH_MAX], rx[DUET_VOICE_PATH_MAX], final[DUET_VOICE_PATH_MAX];
    duet_relay_keys_t ka, kb;
} fixture_t;

static fixture_t *fx; /* the test harness's own state, made once */

static void cleanup(void)
{
    duet_relay_keys_dispose(&fx->ka);
    duet_relay_keys_dispose(&fx->kb);
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
    if (duet_relay_client_keys(fx->a, &fx->ka) != DUET_OK ||
        duet_relay_client_keys(fx->b, &fx->kb) != DUET_OK) {
        abort();
    }
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
                     NULL) != SQLITE_OK ||
        sqlite3_exec(duet_store_db(fx->a), "UPDATE blobs SET relayed = 0", NULL, NULL, NULL) !=
            SQLITE_OK) {
        abort();
    }
}

/* Ask e for its frames and hand them to the relay connection c (if any). */
static size_t pull(duet_blobrelay_t *e, duet_relayd_conn_t *c, uint64_t now)
{
    size_t n = 0;
    for (int i = 0; i < 64; i++) {
        const uint8_t *f;
        size_t len;
        if (duet_blobrelay_next_frame(e, &f, &len) != DUET_OK || len == 0) {
            break;
        }
        n++;
        if (c != NULL) {
            (void)!duet_relayd_recv(c, f, len, now);
        }
    }
    return n;
}

/* Deliver what the relay has for c to e, recording it (for e = a when to_a). */
static size_t push(duet_relayd_conn_t *c, duet_blobrelay_t *e, FILE *dump, bool to_a, uint64_t now)
{
    const uint8_t *f;
    size_t len, n = 0;
    while (duet_relayd_next_frame(c, now, &f, &len)) {
        uint8_t *copy = malloc(len);
        memcpy(copy, f, len);
        uint8_t h[4] = {to_a, (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len};
        fwrite(h, 1, 4, dump);
        fwrite(copy, 1, len, dump);
        (void)!duet_blobrelay_recv(e, copy, len);
        free(copy);
        n++;
    }
    return n;
}

/* DUET_FUZZ_DUMP: a real exchange through an in-memory relay, as a seed. */
static void dump_session(const char *dir)
{
    char path[4200];
    duet_relay_sqlite_t *db;
    duet_relay_config_t cfg;
    duet_testrng_t r;
    snprintf(path, sizeof path, "%s/session", dir);
    FILE *out = fopen(path, "wb");
    if (out == NULL || duet_relay_sqlite_open(":memory:", &db) != DUET_OK) {
        abort();
    }
    duet_relay_store_t rst = duet_relay_sqlite_store(db);
    duet_relay_config_default(&cfg);
    cfg.rate_bytes = cfg.ip_rate_bytes = cfg.rate_requests = cfg.ip_rate_requests = 0;
    duet_relayd_t *d = duet_relayd_new(&rst, &cfg, duet_testrng_init(&r, 3), NULL, NULL);
    reset_b();
    /* a uploads first, then b downloads: the order a real pair would see. */
    for (int who = 1; who >= 0; who--) {
        duet_blobrelay_t *e =
            duet_blobrelay_new(who ? fx->a : fx->b, who ? &fx->ka : &fx->kb, NULL);
        duet_relayd_conn_t *c = duet_relayd_conn_new(d, NULL);
        for (int round = 0; round < 200 && !duet_blobrelay_done(e); round++) {
            size_t moved = pull(e, c, 1000);
            (void)!duet_relayd_flush(d, 1000);
            moved += push(c, e, out, who == 1, 1000);
            if (moved == 0) {
                break;
            }
        }
        duet_relayd_conn_free(c);
        duet_blobrelay_free(e);
    }
    duet_relayd_free(d);
    duet_relay_sqlite_close(db);
    fclose(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t frame[DUET_RELAY_FRAME_MAX];
    if (fx == NULL) {
        make_fixture();
        const char *dump = getenv("DUET_FUZZ_DUMP");
        if (dump != NULL) {
            dump_session(dump);
        }
    }
    reset_b();
    duet_blobrelay_t *ea = duet_blobrelay_new(fx->a, &fx->ka, NULL);
    duet_blobrelay_t *eb = duet_blobrelay_new(fx->b, &fx->kb, NULL);
    if (ea == NULL || eb == NULL) {
        abort();
    }
    (void)pull(ea, NULL, 0); /* HELLO */
    (void)pull(eb, NULL, 0);
    size_t pos = 0;
    while (size - pos >= 4) {
        bool to_a = (data[pos] & 1) != 0;
        size_t n = (size_t)data[pos + 1] << 16 | (size_t)data[pos + 2] << 8 | data[pos + 3];
        pos += 4;
        if (n > size - pos) {
            n = size - pos;
        }
        if (n > sizeof frame) {
            n = sizeof frame;
        }
        memcpy(frame, data + pos, n);
        pos += n;
        duet_blobrelay_t *e = to_a ? ea : eb;
        (void)!duet_blobrelay_recv(e, frame, n);
        (void)pull(e, NULL, 0);
        (void)duet_blobrelay_done(e);
    }
    duet_blobrelay_free(ea);
    duet_blobrelay_free(eb);
    return 0;
}
