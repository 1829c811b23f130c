/*
 * Voice blobs through a relay: two real paired homes and the real relay engine (core/relayd
 * on an in-memory relay store), each home's blob session wired to it in memory. What a user
 * would check:
 *  - a voice note uploaded by one partner arrives byte-identical at the other through the
 *    relay, is available only once whole, and leaves no object behind on the relay;
 *  - the relay sees neither blob ids nor sizes below 64 KiB: every blob object has the same
 *    length and an id that is not the blob's;
 *  - a full mailbox stops the upload (EQUOTA) without losing what was stored; with room
 *    again, the upload resumes where the relay's acknowledgements left it and the download
 *    where the partial file ends: no unit is sent or taken in twice;
 *  - a unit damaged on the way is refused (the blob waits) and fetched again later; an
 *    interrupted download resumes; a relay whose objects are too small for a unit is
 *    refused; notes the partner already acknowledged are not uploaded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
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

#define NOW 1764150000000ull

typedef struct fixture {
    char *dir;
    char ha[512], hb[512];
    duet_testrng_t trng, rrng;
    duet_rng_t rng;
    duet_store_t *a, *b;
    duet_relay_keys_t ka, kb;
    duet_relay_sqlite_t *db;
    duet_relay_store_t rst;
    duet_relayd_t *relay;
    uint64_t now;
} fixture_t;

static void put_le(uint8_t *p, uint32_t v, int n)
{
    for (int i = 0; i < n; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static void make_wav(fixture_t *f, const char *path, size_t bytes)
{
    uint8_t *w = malloc(bytes);
    assert_non_null(w);
    size_t data = (bytes - 44) & ~(size_t)1;
    memcpy(w, "RIFF", 4);
    put_le(w + 4, (uint32_t)(36 + data), 4);
    memcpy(w + 8, "WAVEfmt ", 8);
    put_le(w + 16, 16, 4);
    put_le(w + 20, 1, 2);
    put_le(w + 22, 1, 2);
    put_le(w + 24, 8000, 4);
    put_le(w + 28, 16000, 4);
    put_le(w + 32, 2, 2);
    put_le(w + 34, 16, 2);
    memcpy(w + 36, "data", 4);
    put_le(w + 40, (uint32_t)data, 4);
    duet_rng_fill(&f->rng, w + 44, bytes - 44);
    duet_test_write(path, w, bytes);
    free(w);
}

static void relay_start(fixture_t *f, uint64_t mailbox_bytes, uint64_t max_object)
{
    duet_relay_config_t cfg;
    duet_relay_config_default(&cfg);
    cfg.rate_bytes = cfg.ip_rate_bytes = 0; /* the clock here does not move like a real one */
    cfg.rate_requests = cfg.ip_rate_requests = 0;
    cfg.mailbox_bytes = mailbox_bytes;
    cfg.max_object = max_object;
    f->relay = duet_relayd_new(&f->rst, &cfg, duet_testrng_init(&f->rrng, 5), NULL, NULL);
    assert_non_null(f->relay);
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->dir = duet_test_tmpdir();
    f->rng = duet_testrng_init(&f->trng, 77);
    duet_test_path(f->ha, sizeof f->ha, f->dir, "a");
    duet_test_path(f->hb, sizeof f->hb, f->dir, "b");
    f->a = duet_test_home(f->ha, "river", f->rng);
    f->b = duet_test_home(f->hb, "harbor", f->rng);
    duet_test_pair(f->a, f->b, f->rng, NOW);
    assert_int_equal(duet_relay_client_keys(f->a, &f->ka), DUET_OK);
    assert_int_equal(duet_relay_client_keys(f->b, &f->kb), DUET_OK);
    assert_int_equal(duet_relay_sqlite_open(":memory:", &f->db), DUET_OK);
    f->rst = duet_relay_sqlite_store(f->db);
    relay_start(f, 256u << 20, DUET_RELAY_OBJECT_MAX);
    f->now = NOW;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    duet_relayd_free(f->relay);
    duet_relay_sqlite_close(f->db);
    duet_relay_keys_dispose(&f->ka);
    duet_relay_keys_dispose(&f->kb);
    duet_store_close(f->a);
    duet_store_close(f->b);
    duet_test_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* A voice note of `bytes` queued on from, its item stored on to (as a sync would). */
static void send_voice(fixture_t *f, duet_store_t *from, duet_store_t *to, size_t bytes,
                       const char *name, uint8_t id[DUET_ITEM_ID_BYTES])
{
    char path[600];
    duet_item_t it;
    duet_test_path(path, sizeof path, f->dir, name);
    make_wav(f, path, bytes);
    assert_int_equal(duet_voice_add(from, path, "", 0, NOW, id, NULL), DUET_OK);
    assert_int_equal(duet_items_get(from, id, &it), DUET_OK);
    assert_int_equal(duet_store_begin(to), DUET_OK);
    assert_int_equal(duet_voice_on_item(to, id, it.body, it.body_len), DUET_OK);
    assert_int_equal(
        duet_items_put_partner(to, id, DUET_KIND_VOICE, it.hlc, it.body, it.body_len, NOW),
        DUET_OK);
    assert_int_equal(duet_store_commit(to), DUET_OK);
    duet_item_clear(&it);
}

static duet_voice_blob_t blob_of(duet_store_t *st, const uint8_t id[DUET_ITEM_ID_BYTES])
{
    duet_voice_t v;
    duet_voice_blob_t b;
    assert_int_equal(duet_voice_load(st, id, &v, &b), DUET_OK);
    duet_voice_dispose(&v);
    return b;
}

static void assert_intact(fixture_t *f, duet_store_t *st, const uint8_t id[DUET_ITEM_ID_BYTES],
                          const char *name)
{
    char in[600], out[600];
    size_t la, lb;
    duet_test_path(in, sizeof in, f->dir, name);
    duet_test_path(out, sizeof out, f->dir, "saved.out");
    assert_int_equal(duet_voice_save(st, id, out, NULL), DUET_OK);
    uint8_t *x = duet_test_slurp(in, &la), *y = duet_test_slurp(out, &lb);
    assert_int_equal(la, lb);
    assert_memory_equal(x, y, la);
    free(x);
    free(y);
    unlink(out);
}

/* What a session did on the wire. */
typedef struct run {
    size_t puts, blob_puts, bad_len; /* PUTs; of class BLOB; with another data length */
    int corrupt_get;                 /* >= 0: flip a byte in the data of that OBJECT */
    size_t objects, stop_after;      /* OBJECT frames seen; stop the session after n */
    const uint8_t *blob_id;          /* the blob's id must not appear in any PUT */
    bool id_seen;
} run_t;

/* Run one session of the engine of home st against the relay until it is done (or until
 * r->stop_after OBJECT frames, then drop it as a lost connection would). */
static duet_err_t session(fixture_t *f, duet_store_t *st, const duet_relay_keys_t *k, run_t *r)
{
    duet_blobrelay_t *e = duet_blobrelay_new(st, k, NULL);
    duet_relayd_conn_t *c = duet_relayd_conn_new(f->relay, NULL);
    assert_non_null(e);
    assert_non_null(c);
    duet_err_t result = DUET_OK;
    for (int step = 0; step < 100000; step++) {
        const uint8_t *fr;
        size_t len, moved = 0;
        for (;;) {
            assert_int_equal(duet_blobrelay_next_frame(e, &fr, &len), DUET_OK);
            if (len == 0) {
                break;
            }
            duet_relay_frame_t x;
            assert_int_equal(duet_relay_frame_decode(&x, fr, len), DUET_OK);
            if (x.type == DUET_RELAY_PUT) {
                r->puts++;
                r->blob_puts += x.cls == DUET_RELAY_BLOB;
                r->bad_len += x.data_len != DUET_BLOBRELAY_OBJECT;
            }
            duet_relay_frame_dispose(&x);
            if (r->blob_id != NULL && duet_test_contains(fr, len, r->blob_id, DUET_BLOB_ID_BYTES)) {
                r->id_seen = true;
            }
            assert_int_equal(duet_relayd_recv(c, fr, len, f->now), DUET_OK);
            moved++;
        }
        assert_int_equal(duet_relayd_flush(f->relay, f->now), DUET_OK);
        while (duet_relayd_next_frame(c, f->now, &fr, &len)) {
            uint8_t *copy = malloc(len);
            memcpy(copy, fr, len);
            duet_relay_frame_t x;
            assert_int_equal(duet_relay_frame_decode(&x, copy, len), DUET_OK);
            if (x.type == DUET_RELAY_OBJECT) {
                if (r->corrupt_get == (int)r->objects) {
                    copy[(size_t)(x.data - copy) + 1000] ^= 0x10;
                }
                r->objects++;
            }
            duet_relay_frame_dispose(&x);
            duet_err_t err = duet_blobrelay_recv(e, copy, len);
            free(copy);
            moved++;
            if (err != DUET_OK) {
                result = err;
                goto out;
            }
            if (r->stop_after > 0 && r->objects >= r->stop_after) {
                goto out; /* the connection is lost */
            }
        }
        f->now += 10;
        if (duet_blobrelay_done(e)) {
            goto out;
        }
        assert_int_not_equal(moved, 0); /* never stalls */
    }
    fail_msg("the blob session never ended");
out:
    if (result == DUET_OK && r->stop_after == 0) {
        result = duet_blobrelay_upload_error(e);
    }
    duet_relayd_conn_free(c);
    duet_blobrelay_free(e);
    return result;
}

static uint64_t fetched_of(duet_store_t *st, const uint8_t id[DUET_ITEM_ID_BYTES])
{
    duet_voice_blob_t b = blob_of(st, id);
    uint64_t fetched;
    assert_int_equal(duet_voice_progress(st, &b, NULL, &fetched), DUET_OK);
    return fetched;
}

/* Objects left in the mailbox home k reads. */
static size_t objects_left(fixture_t *f, const duet_relay_keys_t *k)
{
    duet_codec_enc_t enc;
    const uint8_t *req, *resp;
    size_t len, rlen, n;
    duet_relay_frame_t x;
    duet_relayd_conn_t *c = duet_relayd_conn_new(f->relay, NULL);
    duet_codec_enc_init(&enc, DUET_RELAY_FRAME_MAX);
    duet_relay_enc_hello(&enc, 1);
    assert_int_equal(duet_codec_enc_finish(&enc, &req, &len), DUET_OK);
    assert_int_equal(duet_relayd_recv(c, req, len, f->now), DUET_OK);
    duet_codec_enc_reset(&enc);
    duet_relay_enc_list(&enc, 2, &k->in, 0, 0, DUET_RELAY_LIST_MAX);
    assert_int_equal(duet_codec_enc_finish(&enc, &req, &len), DUET_OK);
    assert_int_equal(duet_relayd_recv(c, req, len, f->now), DUET_OK);
    assert_int_equal(duet_relayd_flush(f->relay, f->now), DUET_OK);
    assert_true(duet_relayd_next_frame(c, f->now, &resp, &rlen)); /* WELCOME */
    assert_true(duet_relayd_next_frame(c, f->now, &resp, &rlen));
    assert_int_equal(duet_relay_frame_decode(&x, resp, rlen), DUET_OK);
    assert_int_equal(x.type, DUET_RELAY_LISTED);
    n = x.count;
    duet_relay_frame_dispose(&x);
    duet_codec_enc_dispose(&enc);
    duet_relayd_conn_free(c);
    return n;
}

static void test_through_the_relay(void **state)
{
    fixture_t *f = *state;
    uint8_t id[16];
    send_voice(f, f->a, f->b, (3u << 20) + 4321, "v.wav", id);
    duet_voice_blob_t b = blob_of(f->a, id);
    uint64_t units = duet_blob_chunk_count(b.size);

    run_t up = {.corrupt_get = -1, .blob_id = b.id};
    assert_int_equal(session(f, f->a, &f->ka, &up), DUET_OK);
    assert_int_equal(up.blob_puts, units);
    assert_int_equal(up.bad_len, 0); /* every blob object has one length */
    assert_false(up.id_seen);        /* and the relay never sees the blob's id */
    assert_int_equal(blob_of(f->a, id).relayed, units);
    assert_int_equal(objects_left(f, &f->kb), units);

    /* A second session has nothing more to upload. */
    run_t again = {.corrupt_get = -1};
    assert_int_equal(session(f, f->a, &f->ka, &again), DUET_OK);
    assert_int_equal(again.puts, 0);

    assert_int_equal(blob_of(f->b, id).state, DUET_VOICE_PARTIAL);
    run_t down = {.corrupt_get = -1};
    assert_int_equal(session(f, f->b, &f->kb, &down), DUET_OK);
    assert_int_equal(blob_of(f->b, id).state, DUET_VOICE_AVAILABLE);
    assert_intact(f, f->b, id, "v.wav");
    assert_int_equal(fetched_of(f->b, id), duet_blob_sealed_size(b.size));
    assert_int_equal(objects_left(f, &f->kb), 0); /* collected once it is safe here */
}

static void test_quota_then_resume(void **state)
{
    fixture_t *f = *state;
    uint8_t id[16];
    duet_relayd_free(f->relay);
    relay_start(f, 1u << 20, DUET_RELAY_OBJECT_MAX); /* a 1 MiB mailbox */
    send_voice(f, f->a, f->b, 3u << 20, "q.wav", id);
    duet_voice_blob_t b = blob_of(f->a, id);
    uint64_t units = duet_blob_chunk_count(b.size), sealed = duet_blob_sealed_size(b.size);

    run_t up = {.corrupt_get = -1};
    assert_int_equal(session(f, f->a, &f->ka, &up), DUET_EQUOTA);
    uint64_t held = blob_of(f->a, id).relayed;
    assert_true(held > 0 && held < units);
    assert_int_equal(objects_left(f, &f->kb), held);

    /* The partner takes what is there and waits for the rest. */
    run_t down = {.corrupt_get = -1};
    assert_int_equal(session(f, f->b, &f->kb, &down), DUET_OK);
    assert_int_equal(blob_of(f->b, id).state, DUET_VOICE_PARTIAL);
    uint64_t have;
    duet_voice_blob_t bb = blob_of(f->b, id);
    assert_int_equal(duet_voice_progress(f->b, &bb, &have, NULL), DUET_OK);
    assert_int_equal(have, duet_blob_chunk_offset(held));

    /* Room again (a relay with a larger quota over the same store). */
    duet_relayd_free(f->relay);
    relay_start(f, 256u << 20, DUET_RELAY_OBJECT_MAX);
    run_t up2 = {.corrupt_get = -1};
    assert_int_equal(session(f, f->a, &f->ka, &up2), DUET_OK);
    assert_int_equal(up2.blob_puts, units - held); /* from where the relay's OKs left it */
    run_t down2 = {.corrupt_get = -1};
    assert_int_equal(session(f, f->b, &f->kb, &down2), DUET_OK);
    assert_intact(f, f->b, id, "q.wav");
    assert_int_equal(fetched_of(f->b, id), sealed); /* no unit taken in twice */
}

static void test_damaged_unit_and_interruption(void **state)
{
    fixture_t *f = *state;
    uint8_t id[16];
    send_voice(f, f->a, f->b, (2u << 20) + 99, "d.wav", id);
    duet_voice_blob_t b = blob_of(f->a, id);
    uint64_t sealed = duet_blob_sealed_size(b.size);
    run_t up = {.corrupt_get = -1};
    assert_int_equal(session(f, f->a, &f->ka, &up), DUET_OK);

    /* Unit 3 arrives damaged: refused, the blob waits with units 0..2 stored. */
    run_t bad = {.corrupt_get = 3};
    assert_int_equal(session(f, f->b, &f->kb, &bad), DUET_OK);
    duet_voice_blob_t bb = blob_of(f->b, id);
    uint64_t have;
    assert_int_equal(bb.state, DUET_VOICE_PARTIAL);
    assert_int_equal(duet_voice_progress(f->b, &bb, &have, NULL), DUET_OK);
    assert_int_equal(have, duet_blob_chunk_offset(3));

    /* The next session is cut after 10 more units; the one after that finishes. */
    run_t cut = {.corrupt_get = -1, .stop_after = 10};
    assert_int_equal(session(f, f->b, &f->kb, &cut), DUET_OK);
    run_t rest = {.corrupt_get = -1};
    assert_int_equal(session(f, f->b, &f->kb, &rest), DUET_OK);
    assert_intact(f, f->b, id, "d.wav");
    /* Taken in twice: only the damaged unit (counted before it was checked). */
    assert_int_equal(fetched_of(f->b, id), sealed + DUET_BLOB_SEALED_CHUNK);
}

static void test_small_relay_and_acknowledged(void **state)
{
    fixture_t *f = *state;
    uint8_t id[16], id2[16];
    /* A relay whose objects cannot hold a unit. */
    duet_relayd_free(f->relay);
    relay_start(f, 256u << 20, 65536);
    send_voice(f, f->a, f->b, 100000, "s.wav", id);
    run_t r = {.corrupt_get = -1};
    assert_int_equal(session(f, f->a, &f->ka, &r), DUET_ETOOBIG);
    duet_relayd_free(f->relay);
    relay_start(f, 256u << 20, DUET_RELAY_OBJECT_MAX);

    /* Nothing uploaded yet: the partner finds nothing and waits. */
    run_t early = {.corrupt_get = -1};
    assert_int_equal(session(f, f->b, &f->kb, &early), DUET_OK);
    assert_int_equal(blob_of(f->b, id).state, DUET_VOICE_PARTIAL);

    /* A note the partner acknowledged (through the relay, say) still goes up: the ack says
     * nothing about the sound. One whose blob the partner said it holds (STATE 0 on a direct
     * link) is not uploaded. */
    uint8_t id3[16];
    send_voice(f, f->a, f->b, 100000, "t.wav", id2);
    send_voice(f, f->a, f->b, 100000, "u.wav", id3);
    assert_int_equal(duet_store_begin(f->a), DUET_OK);
    assert_int_equal(duet_items_set_status(f->a, id2, DUET_STATUS_DELIVERED), DUET_OK);
    assert_int_equal(duet_items_set_status(f->a, id3, DUET_STATUS_DELIVERED), DUET_OK);
    assert_int_equal(duet_voice_set_held(f->a, id3), DUET_OK);
    assert_int_equal(duet_store_commit(f->a), DUET_OK);
    run_t up = {.corrupt_get = -1};
    assert_int_equal(session(f, f->a, &f->ka, &up), DUET_OK);
    assert_int_equal(up.blob_puts, duet_blob_chunk_count(blob_of(f->a, id).size) +
                                       duet_blob_chunk_count(blob_of(f->a, id2).size));
    assert_int_equal(blob_of(f->a, id2).relayed, duet_blob_chunk_count(blob_of(f->a, id2).size));
    assert_int_equal(blob_of(f->a, id3).relayed, 0);
}

static void test_oid(void **state)
{
    (void)state;
    duet_relay_keys_t k;
    uint8_t ps[32], pa[32], pb[32], id[32], o1[16], o2[16], o3[16];
    memset(ps, 1, 32);
    memset(pa, 2, 32);
    memset(pb, 3, 32);
    memset(id, 4, 32);
    duet_relay_keys_derive(&k, ps, pa, pb);
    duet_blobrelay_oid(o1, &k.out, id, 0);
    duet_blobrelay_oid(o2, &k.out, id, 1);
    duet_blobrelay_oid(o3, &k.in, id, 0);
    assert_memory_not_equal(o1, o2, 16); /* per unit */
    assert_memory_not_equal(o1, o3, 16); /* per direction */
    /* HMAC-SHA-256(okey, "blob" || id || u32be(0))[0..16), recomputed here. */
    uint8_t msg[40], mac[32];
    memcpy(msg, "blob", 4);
    memcpy(msg + 4, id, 32);
    memset(msg + 36, 0, 4);
    crypto_auth_hmacsha256_state h;
    crypto_auth_hmacsha256_init(&h, k.out.okey, 32);
    crypto_auth_hmacsha256_update(&h, msg, sizeof msg);
    crypto_auth_hmacsha256_final(&h, mac);
    assert_memory_equal(o1, mac, 16);
    duet_relay_keys_dispose(&k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oid),
        cmocka_unit_test_setup_teardown(test_through_the_relay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quota_then_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_unit_and_interruption, setup, teardown),
        cmocka_unit_test_setup_teardown(test_small_relay_and_acknowledged, setup, teardown),
    };
    if (sodium_init() < 0) {
        return 1;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
