/* see outbox.h */
#include "outbox.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "checkin.h"
#include "codec.h"
#include "identity.h"
#include "partner.h"
#include "ratchet.h"
#include "voice.h"

/* Envelope sizes an observer can see. The plaintext is padded to bucket - overhead. */
static const size_t buckets[] = {512, 2048, 8192, 32768, DUET_ENVELOPE_MAX};
#define NBUCKETS (sizeof buckets / sizeof buckets[0])
#define WIRE_MAX (DUET_ENVELOPE_MAX - DUET_RATCHET_OVERHEAD)
#define AD_LEN (16u + 32u + 32u)

static const uint8_t envelope_label[16] = "duet envelope v1";

typedef struct duet_outbox_pending {
    duet_outbox_event_t ev;
    uint8_t id[DUET_ITEM_ID_BYTES];
    uint32_t kind;
} pending_t;

/* ---- helpers -------------------------------------------------------------------------- */

static void envelope_ad(uint8_t ad[AD_LEN], const uint8_t sender[32], const uint8_t receiver[32])
{
    memcpy(ad, envelope_label, 16);
    memcpy(ad + 16, sender, 32);
    memcpy(ad + 48, receiver, 32);
}

static duet_err_t load_keys(duet_store_t *st, uint8_t my_pk[32], uint8_t partner_pk[32])
{
    size_t n;
    duet_partner_t p;
    duet_err_t err = duet_store_meta_get(st, "identity_pk", my_pk, 32, &n);
    if (err == DUET_ENOENT) {
        return DUET_ENOTINIT;
    }
    if (err != DUET_OK) {
        return err;
    }
    if (n != 32) {
        return DUET_ECORRUPT;
    }
    err = duet_partner_load(st, &p);
    if (err == DUET_OK) {
        memcpy(partner_pk, p.identity_pk, 32);
    }
    sodium_memzero(&p, sizeof p);
    return err;
}

static duet_err_t ratchet_load(duet_store_t *st, duet_ratchet_t **out)
{
    uint8_t *blob = NULL;
    size_t len = 0;
    duet_ratchet_t *r = NULL;
    *out = NULL;
    duet_err_t err = duet_store_secret_get(st, "ratchet", &blob, &len);
    if (err == DUET_ENOENT) {
        return DUET_ENOTPAIRED;
    }
    if (err != DUET_OK) {
        return err;
    }
    err = duet_ratchet_new(&r);
    if (err == DUET_OK) {
        err = duet_ratchet_load(r, blob, len);
        if (err != DUET_OK) {
            err = DUET_ECORRUPT;
        }
    }
    sodium_memzero(blob, len);
    free(blob);
    if (err != DUET_OK) {
        duet_ratchet_free(r);
        return err;
    }
    *out = r;
    return DUET_OK;
}

/* Load the ratchet into r, memory the caller keeps. r is left clear on failure. */
static duet_err_t ratchet_load_into(duet_store_t *st, duet_ratchet_t *r)
{
    uint8_t *blob = NULL;
    size_t len = 0;
    duet_err_t err = duet_store_secret_get(st, "ratchet", &blob, &len);
    if (err == DUET_ENOENT) {
        return DUET_ENOTPAIRED;
    }
    if (err != DUET_OK) {
        return err;
    }
    if (duet_ratchet_load(r, blob, len) != DUET_OK) {
        duet_ratchet_clear(r);
        err = DUET_ECORRUPT;
    }
    sodium_memzero(blob, len);
    free(blob);
    return err;
}

static duet_err_t ratchet_save(duet_store_t *st, const duet_ratchet_t *r)
{
    size_t cap = duet_ratchet_saved_len(r), len;
    uint8_t *blob = sodium_malloc(cap);
    if (blob == NULL) {
        return DUET_ENOMEM;
    }
    duet_err_t err = duet_ratchet_save(r, blob, cap, &len);
    if (err == DUET_OK) {
        err = duet_store_secret_put(st, "ratchet", blob, len);
    }
    sodium_free(blob);
    return err;
}

/* The wire item, padded to its bucket, into buf (WIRE_MAX bytes). */
static duet_err_t wire_encode(uint64_t seq, const uint8_t id[DUET_ITEM_ID_BYTES], uint32_t kind,
                              uint64_t hlc, const uint8_t *body, size_t len, uint8_t *buf,
                              size_t *out_len)
{
    duet_codec_enc_t enc;
    const uint8_t *p;
    size_t n;
    *out_len = 0;
    duet_codec_enc_init(&enc, WIRE_MAX - 1);
    duet_codec_put_map(&enc, 5);
    duet_codec_put_key(&enc, 1);
    duet_codec_put_uint(&enc, seq);
    duet_codec_put_key(&enc, 2);
    duet_codec_put_bin(&enc, id, DUET_ITEM_ID_BYTES);
    duet_codec_put_key(&enc, 3);
    duet_codec_put_uint(&enc, kind);
    duet_codec_put_key(&enc, 4);
    duet_codec_put_uint(&enc, hlc);
    duet_codec_put_key(&enc, 5);
    duet_codec_put_bin(&enc, body, len);
    duet_err_t err = duet_codec_enc_finish(&enc, &p, &n);
    if (err == DUET_OK) {
        size_t padded = 0;
        for (size_t i = 0; i < NBUCKETS; i++) {
            if (n + 1 <= buckets[i] - DUET_RATCHET_OVERHEAD) {
                padded = buckets[i] - DUET_RATCHET_OVERHEAD;
                break;
            }
        }
        if (padded == 0) {
            err = DUET_ETOOBIG;
        } else {
            memcpy(buf, p, n);
            buf[n] = 0x80;
            memset(buf + n + 1, 0, padded - n - 1);
            *out_len = padded;
        }
    }
    duet_codec_enc_dispose(&enc);
    return err;
}

typedef struct wire_item {
    uint64_t seq;
    uint8_t id[DUET_ITEM_ID_BYTES];
    uint32_t kind;
    uint64_t hlc;
    const uint8_t *body;
    size_t body_len;
} wire_item_t;

/* Unpad and decode; the body points into buf. */
static duet_err_t wire_decode(const uint8_t *buf, size_t len, duet_codec_msg_t *msg,
                              wire_item_t *w)
{
    static const duet_codec_field_t fields[] = {{1, DUET_CODEC_UINT, true},
                                                {2, DUET_CODEC_BIN, true},
                                                {3, DUET_CODEC_UINT, true},
                                                {4, DUET_CODEC_UINT, true},
                                                {5, DUET_CODEC_BIN, true}};
    static const duet_codec_limits_t lim = {.max_depth = 2,
                                            .max_str = 0,
                                            .max_bin = WIRE_MAX,
                                            .max_array = 0,
                                            .max_map = 8,
                                            .max_objects = 16};
    const msgpack_object *f[5];
    uint64_t kind;
    memset(w, 0, sizeof *w);
    while (len > 0 && buf[len - 1] == 0) {
        len--;
    }
    if (len == 0 || buf[len - 1] != 0x80) {
        return DUET_EDECODE;
    }
    len--;
    duet_err_t err = duet_codec_decode(msg, buf, len, &lim);
    if (err != DUET_OK) {
        return DUET_EDECODE;
    }
    if (duet_codec_map(&msg->root, fields, 5, f) != DUET_OK ||
        duet_codec_get_uint(f[0], 1, UINT64_MAX / 2, &w->seq) != DUET_OK ||
        duet_codec_get_fixed(f[1], w->id, DUET_ITEM_ID_BYTES) != DUET_OK ||
        duet_codec_get_uint(f[2], 1, UINT32_MAX, &kind) != DUET_OK ||
        duet_codec_get_uint(f[3], 0, (uint64_t)INT64_MAX, &w->hlc) != DUET_OK ||
        duet_codec_get_bin(f[4], 0, DUET_ITEM_BODY_MAX, &w->body, &w->body_len) != DUET_OK) {
        duet_codec_msg_dispose(msg);
        return DUET_EDECODE;
    }
    w->kind = (uint32_t)kind;
    return DUET_OK;
}

/* Seal one item with r under the next sequence number and add it to the outbox. */
static duet_err_t seal_one(duet_store_t *st, duet_ratchet_t *r, const uint8_t my_pk[32],
                           const uint8_t partner_pk[32], const uint8_t id[DUET_ITEM_ID_BYTES],
                           uint32_t kind, uint64_t hlc, const uint8_t *body, size_t len,
                           bool visible)
{
    uint64_t seq;
    uint8_t ad[AD_LEN];
    size_t wlen = WIRE_MAX, elen;
    sqlite3_stmt *s;
    duet_err_t err = duet_store_meta_get_u64(st, "out_seq", 0, &seq);
    if (err != DUET_OK) {
        return err;
    }
    seq++;
    uint8_t *wire = malloc(WIRE_MAX);
    uint8_t *env = malloc(DUET_ENVELOPE_MAX);
    if (wire == NULL || env == NULL) {
        err = DUET_ENOMEM;
        goto cleanup;
    }
    if ((err = wire_encode(seq, id, kind, hlc, body, len, wire, &wlen)) != DUET_OK) {
        goto cleanup;
    }
    envelope_ad(ad, my_pk, partner_pk);
    duet_rng_t rng = duet_store_rng(st);
    if ((err = duet_ratchet_encrypt(r, &rng, ad, sizeof ad, wire, wlen, env, DUET_ENVELOPE_MAX,
                                    &elen)) != DUET_OK) {
        goto cleanup;
    }
    if ((err = duet_store_prepare(st,
                                  "INSERT INTO outbox (seq, item_id, counts, envelope) "
                                  "VALUES (?1, ?2, ?3, ?4)",
                                  &s)) != DUET_OK) {
        goto cleanup;
    }
    sqlite3_bind_int64(s, 1, (sqlite3_int64)seq);
    if (visible) {
        sqlite3_bind_blob(s, 2, id, DUET_ITEM_ID_BYTES, SQLITE_STATIC);
    }
    sqlite3_bind_int(s, 3, kind != DUET_KIND_RECEIPT);
    sqlite3_bind_blob(s, 4, env, (int)elen, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        err = duet_store_rc(st, rc);
        goto cleanup;
    }
    if (visible) {
        if ((err = duet_store_prepare(st, "UPDATE items SET seq = ?2 WHERE id = ?1", &s)) !=
            DUET_OK) {
            goto cleanup;
        }
        sqlite3_bind_blob(s, 1, id, DUET_ITEM_ID_BYTES, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, (sqlite3_int64)seq);
        rc = sqlite3_step(s);
        sqlite3_reset(s);
        if (rc != SQLITE_DONE) {
            err = duet_store_rc(st, rc);
            goto cleanup;
        }
    }
    err = duet_store_meta_set_u64(st, "out_seq", seq);
cleanup:
    if (wire != NULL) {
        sodium_memzero(wire, wlen); /* what was written, not the whole 96 KiB buffer */
    }
    free(wire);
    free(env);
    return err;
}

/* ---- queueing ------------------------------------------------------------------------- */

duet_err_t duet_outbox_count(duet_store_t *st, uint64_t *n)
{
    sqlite3_stmt *s;
    *n = 0;
    duet_err_t err = duet_store_prepare(
        st,
        "SELECT (SELECT count(*) FROM outbox) + "
        "(SELECT count(*) FROM items WHERE mine = 1 AND seq IS NULL AND status = 0)",
        &s);
    if (err != DUET_OK) {
        return err;
    }
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *n = (uint64_t)sqlite3_column_int64(s, 0);
    } else {
        err = duet_store_rc(st, rc);
    }
    sqlite3_reset(s);
    return err;
}

duet_err_t duet_outbox_seal_pending(duet_store_t *st)
{
    uint8_t my_pk[32], partner_pk[32];
    duet_ratchet_t *r = NULL;
    sqlite3_stmt *s;
    duet_item_t it;
    bool any = false;

    duet_err_t err = load_keys(st, my_pk, partner_pk);
    if (err == DUET_ENOTPAIRED) {
        return DUET_OK;
    }
    if (err != DUET_OK) {
        return err;
    }
    for (;;) {
        /* One at a time: sealing updates the rows the query walks. */
        err = duet_store_prepare(st,
                                 "SELECT id FROM items WHERE mine = 1 AND seq IS NULL "
                                 "ORDER BY hlc, id LIMIT 1",
                                 &s);
        if (err != DUET_OK) {
            break;
        }
        int rc = sqlite3_step(s);
        if (rc == SQLITE_DONE) {
            sqlite3_reset(s);
            break;
        }
        if (rc != SQLITE_ROW || sqlite3_column_bytes(s, 0) != DUET_ITEM_ID_BYTES) {
            err = rc == SQLITE_ROW ? DUET_ECORRUPT : duet_store_rc(st, rc);
            sqlite3_reset(s);
            break;
        }
        uint8_t id[DUET_ITEM_ID_BYTES];
        memcpy(id, sqlite3_column_blob(s, 0), sizeof id);
        sqlite3_reset(s);
        if (r == NULL && (err = ratchet_load(st, &r)) != DUET_OK) {
            break;
        }
        if ((err = duet_items_get(st, id, &it)) != DUET_OK) {
            break;
        }
        err = seal_one(st, r, my_pk, partner_pk, it.id, it.kind, it.hlc, it.body, it.body_len,
                       true);
        duet_item_clear(&it);
        if (err != DUET_OK) {
            break;
        }
        any = true;
    }
    if (err == DUET_OK && any) {
        err = ratchet_save(st, r);
    }
    duet_ratchet_free(r);
    return err;
}

duet_err_t duet_outbox_queue(duet_store_t *st, uint32_t kind, const uint8_t *body, size_t len,
                             uint64_t now_ms, uint8_t *id_out)
{
    uint8_t my_pk[32], partner_pk[32];
    duet_err_t err;
    if (id_out != NULL) {
        memset(id_out, 0, DUET_ITEM_ID_BYTES);
    }
    if (DUET_KIND_VISIBLE(kind)) {
        duet_item_t it;
        if ((err = duet_items_add(st, kind, body, len, now_ms, &it)) != DUET_OK ||
            (err = duet_outbox_seal_pending(st)) != DUET_OK) {
            return err;
        }
        if (id_out != NULL) {
            memcpy(id_out, it.id, DUET_ITEM_ID_BYTES);
        }
        return DUET_OK;
    }
    if ((err = load_keys(st, my_pk, partner_pk)) != DUET_OK) {
        return err;
    }
    uint8_t id[DUET_ITEM_ID_BYTES];
    uint64_t hlc;
    duet_rng_t rng = duet_store_rng(st);
    duet_rng_fill(&rng, id, sizeof id);
    if ((err = duet_items_clock(st, now_ms, &hlc)) != DUET_OK) {
        return err;
    }
    duet_ratchet_t *r;
    if ((err = ratchet_load(st, &r)) != DUET_OK) {
        return err;
    }
    err = seal_one(st, r, my_pk, partner_pk, id, kind, hlc, body, len, false);
    if (err == DUET_OK) {
        err = ratchet_save(st, r);
    }
    duet_ratchet_free(r);
    if (err == DUET_OK && id_out != NULL) {
        memcpy(id_out, id, DUET_ITEM_ID_BYTES);
    }
    return err;
}

/* A read receipt: {1: [id, id, ...]}. */
static duet_err_t receipt_encode(const duet_item_t *items, size_t n, uint8_t **out,
                                 size_t *out_len, size_t *count)
{
    duet_codec_enc_t enc;
    const uint8_t *p;
    size_t len;
    *out = NULL;
    *count = 0;
    for (size_t i = 0; i < n; i++) {
        *count += !items[i].mine && items[i].status == DUET_STATUS_UNREAD;
    }
    duet_codec_enc_init(&enc, DUET_ITEM_BODY_MAX);
    duet_codec_put_map(&enc, 1);
    duet_codec_put_key(&enc, 1);
    duet_codec_put_array(&enc, (uint32_t)*count);
    for (size_t i = 0; i < n; i++) {
        if (!items[i].mine && items[i].status == DUET_STATUS_UNREAD) {
            duet_codec_put_bin(&enc, items[i].id, DUET_ITEM_ID_BYTES);
        }
    }
    duet_err_t err = duet_codec_enc_finish(&enc, &p, &len);
    if (err == DUET_OK) {
        *out = malloc(len);
        if (*out == NULL) {
            err = DUET_ENOMEM;
        } else {
            memcpy(*out, p, len);
            *out_len = len;
        }
    }
    duet_codec_enc_dispose(&enc);
    return err;
}

/* One receipt holds at most this many ids (4096 x 18 bytes fits the body limit). */
#define RECEIPT_MAX_IDS 4096u

duet_err_t duet_inbox_mark_read(duet_store_t *st, const duet_item_t *items, size_t n,
                                uint64_t now_ms)
{
    size_t unread = 0;
    for (size_t i = 0; i < n; i++) {
        unread += !items[i].mine && items[i].status == DUET_STATUS_UNREAD;
    }
    if (unread == 0) {
        return DUET_OK;
    }
    duet_err_t err = duet_store_begin(st);
    if (err != DUET_OK) {
        return err;
    }
    for (size_t i = 0; i < n && err == DUET_OK; i++) {
        if (!items[i].mine && items[i].status == DUET_STATUS_UNREAD) {
            err = duet_items_set_status(st, items[i].id, DUET_STATUS_READ);
        }
    }
    bool paired = duet_partner_exists(st);
    for (size_t off = 0; paired && err == DUET_OK && off < n; off += RECEIPT_MAX_IDS) {
        size_t chunk = n - off < RECEIPT_MAX_IDS ? n - off : RECEIPT_MAX_IDS;
        uint8_t *body;
        size_t blen, count;
        err = receipt_encode(items + off, chunk, &body, &blen, &count);
        if (err == DUET_OK && count > 0) {
            err = duet_outbox_queue(st, DUET_KIND_RECEIPT, body, blen, now_ms, NULL);
        }
        free(body);
    }
    if (err == DUET_OK) {
        err = duet_store_commit(st);
    }
    if (err != DUET_OK) {
        duet_store_rollback(st);
    }
    return err;
}

/* ---- the host ------------------------------------------------------------------------- */

duet_err_t duet_outbox_host_init(duet_outbox_host_t *h, duet_store_t *st,
                                 uint64_t (*now_ms)(void *), void *clock_ctx,
                                 duet_outbox_event_fn on_event, void *event_ctx)
{
    memset(h, 0, sizeof *h);
    h->st = st;
    h->now_ms = now_ms;
    h->clock_ctx = clock_ctx;
    h->on_event = on_event;
    h->event_ctx = event_ctx;
    duet_err_t err = load_keys(st, h->my_pk, h->partner_pk);
    if (err != DUET_OK) {
        memset(h, 0, sizeof *h);
    }
    return err;
}

void duet_outbox_host_dispose(duet_outbox_host_t *h)
{
    if (h->batch_open) {
        duet_outbox_recv_abort(h);
    }
    free(h->envbuf);
    free(h->pending);
    free(h->prebuf);
    sodium_free(h->plain);
    duet_ratchet_free(h->ratchet_mem);
    memset(h, 0, sizeof *h);
}

static duet_err_t pend(duet_outbox_host_t *h, duet_outbox_event_t ev,
                       const uint8_t id[DUET_ITEM_ID_BYTES], uint32_t kind)
{
    if (h->on_event == NULL) {
        return DUET_OK;
    }
    if (h->npending == h->cap_pending) {
        size_t cap = h->cap_pending ? h->cap_pending * 2 : 64;
        pending_t *p = realloc(h->pending, cap * sizeof *p);
        if (p == NULL) {
            return DUET_ENOMEM;
        }
        h->pending = p;
        h->cap_pending = cap;
    }
    h->pending[h->npending].ev = ev;
    memcpy(h->pending[h->npending].id, id, DUET_ITEM_ID_BYTES);
    h->pending[h->npending].kind = kind;
    h->npending++;
    return DUET_OK;
}

static void fire(duet_outbox_host_t *h)
{
    for (size_t i = 0; i < h->npending; i++) {
        h->on_event(h->event_ctx, h->pending[i].ev, h->pending[i].id, h->pending[i].kind);
    }
    h->npending = 0;
}

duet_err_t duet_outbox_recv_state(duet_outbox_host_t *h, uint64_t *wm, uint64_t *above,
                                  size_t cap, size_t *n)
{
    sqlite3_stmt *s;
    duet_err_t err = DUET_OK;
    *n = 0;
    if (h->batch_open) {
        *wm = h->wm; /* not yet in meta: written at the commit */
    } else if ((err = duet_store_meta_get_u64(h->st, "in_wm", 0, wm)) != DUET_OK) {
        return err;
    }
    err = duet_store_prepare(h->st, "SELECT seq FROM inbound ORDER BY seq LIMIT ?1", &s);
    if (err != DUET_OK) {
        return err;
    }
    sqlite3_bind_int64(s, 1, (sqlite3_int64)cap);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        above[(*n)++] = (uint64_t)sqlite3_column_int64(s, 0);
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? DUET_OK : duet_store_rc(h->st, rc);
}

static duet_err_t host_out_last(void *ctx, uint64_t *last)
{
    duet_outbox_host_t *h = ctx;
    return duet_store_meta_get_u64(h->st, "out_seq", 0, last);
}

static duet_err_t next_where(duet_outbox_host_t *h, const char *sql, uint64_t after,
                             uint64_t *seq, const uint8_t **env, size_t *len)
{
    sqlite3_stmt *s;
    *env = NULL;
    *len = 0;
    duet_err_t err = duet_store_prepare(h->st, sql, &s);
    if (err != DUET_OK) {
        return err;
    }
    sqlite3_bind_int64(s, 1, (sqlite3_int64)after);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        err = DUET_ENOENT;
    } else if (rc != SQLITE_ROW) {
        err = duet_store_rc(h->st, rc);
    } else {
        size_t n = (size_t)sqlite3_column_bytes(s, 1);
        if (n == 0 || n > DUET_ENVELOPE_MAX) {
            err = DUET_ECORRUPT;
        } else {
            if (n > h->envbuf_cap) {
                uint8_t *b = realloc(h->envbuf, DUET_ENVELOPE_MAX);
                if (b == NULL) {
                    sqlite3_reset(s);
                    return DUET_ENOMEM;
                }
                h->envbuf = b;
                h->envbuf_cap = DUET_ENVELOPE_MAX;
            }
            memcpy(h->envbuf, sqlite3_column_blob(s, 1), n);
            *seq = (uint64_t)sqlite3_column_int64(s, 0);
            *env = h->envbuf;
            *len = n;
        }
    }
    sqlite3_reset(s);
    return err;
}

#define PREFETCH_BYTES (256u << 10)

/* Fill the read-ahead with the envelopes after `after`: one query for many envelopes. */
static duet_err_t prefetch(duet_outbox_host_t *h, uint64_t after)
{
    sqlite3_stmt *s;
    h->npre = 0;
    h->pre_from = after;
    if (h->prebuf == NULL && (h->prebuf = malloc(PREFETCH_BYTES + DUET_ENVELOPE_MAX)) == NULL) {
        return DUET_ENOMEM;
    }
    duet_err_t err = duet_store_prepare(
        h->st, "SELECT seq, envelope FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT 64", &s);
    if (err != DUET_OK) {
        return err;
    }
    sqlite3_bind_int64(s, 1, (sqlite3_int64)after);
    size_t used = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        size_t n = (size_t)sqlite3_column_bytes(s, 1);
        if (n == 0 || n > DUET_ENVELOPE_MAX) {
            err = DUET_ECORRUPT;
            break;
        }
        memcpy(h->prebuf + used, sqlite3_column_blob(s, 1), n);
        h->pre[h->npre].seq = (uint64_t)sqlite3_column_int64(s, 0);
        h->pre[h->npre].off = used;
        h->pre[h->npre].len = n;
        h->npre++;
        used += n;
        if (used >= PREFETCH_BYTES) {
            break; /* the next row could overflow the buffer */
        }
    }
    sqlite3_reset(s);
    if (err == DUET_OK && rc != SQLITE_ROW && rc != SQLITE_DONE) {
        err = duet_store_rc(h->st, rc);
    }
    if (err != DUET_OK) {
        h->npre = 0;
    }
    return err;
}

duet_err_t duet_outbox_next(duet_outbox_host_t *h, uint64_t after, uint64_t *seq,
                            const uint8_t **env, size_t *len)
{
    *env = NULL;
    *len = 0;
    for (int pass = 0; pass < 2; pass++) {
        /* Valid only if the read-ahead started at or before `after`: then its first entry
         * above `after` is the outbox's first row above it. Callers may ask again for the
         * same `after`, so nothing is consumed. */
        if (h->pre_from <= after) {
            size_t lo = 0, hi = h->npre;
            while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (h->pre[mid].seq <= after) {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            if (lo < h->npre) {
                const struct duet_outbox_pre *p = &h->pre[lo];
                *seq = p->seq;
                *env = h->prebuf + p->off;
                *len = p->len;
                return DUET_OK;
            }
        }
        if (pass == 0) {
            duet_err_t err = prefetch(h, after);
            if (err != DUET_OK) {
                return err;
            }
        }
    }
    return DUET_ENOENT;
}

duet_err_t duet_outbox_next_unrelayed(duet_outbox_host_t *h, uint64_t after, uint64_t *seq,
                                      const uint8_t **env, size_t *len)
{
    return next_where(h,
                      "SELECT seq, envelope FROM outbox WHERE seq > ?1 AND relay_stored = 0 "
                      "ORDER BY seq LIMIT 1",
                      after, seq, env, len);
}

duet_err_t duet_outbox_mark_relayed(duet_store_t *st, uint64_t seq)
{
    sqlite3_stmt *s;
    duet_err_t err = duet_store_prepare(st, "UPDATE outbox SET relay_stored = 1 WHERE seq = ?1",
                                        &s);
    if (err != DUET_OK) {
        return err;
    }
    sqlite3_bind_int64(s, 1, (sqlite3_int64)seq);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? DUET_OK : duet_store_rc(st, rc);
}

duet_err_t duet_outbox_recv_begin(duet_outbox_host_t *h)
{
    if (h->batch_open) {
        abort();
    }
    duet_err_t err = duet_store_begin(h->st);
    if (err != DUET_OK) {
        return err;
    }
    if (h->ratchet_mem == NULL) {
        err = duet_ratchet_new(&h->ratchet_mem);
    }
    if (err == DUET_OK) {
        err = ratchet_load_into(h->st, h->ratchet_mem);
    }
    if (err == DUET_OK) {
        h->ratchet = h->ratchet_mem;
        err = duet_store_meta_get_u64(h->st, "in_wm", 0, &h->wm);
    }
    if (err == DUET_OK) {
        sqlite3_stmt *s;
        err = duet_store_prepare(h->st, "SELECT count(*) FROM inbound", &s);
        if (err == DUET_OK) {
            int rc = sqlite3_step(s);
            h->inbound_rows = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(s, 0) : 0;
            err = rc == SQLITE_ROW ? DUET_OK : duet_store_rc(h->st, rc);
            sqlite3_reset(s);
        }
    }
    if (err != DUET_OK) {
        duet_ratchet_clear(h->ratchet_mem);
        h->ratchet = NULL;
        duet_store_rollback(h->st);
        return err;
    }
    h->max_hlc = 0;
    h->wm_dirty = false;
    h->batch_open = true;
    h->npending = 0;
    return DUET_OK;
}

void duet_outbox_recv_abort(duet_outbox_host_t *h)
{
    if (!h->batch_open) {
        return;
    }
    duet_store_rollback(h->st);
    duet_ratchet_clear(h->ratchet_mem);
    h->ratchet = NULL;
    h->batch_open = false;
    h->npending = 0;
}

duet_err_t duet_outbox_recv_commit(duet_outbox_host_t *h)
{
    if (!h->batch_open) {
        abort();
    }
    duet_err_t err = ratchet_save(h->st, h->ratchet);
    if (err == DUET_OK && h->wm_dirty) {
        err = duet_store_meta_set_u64(h->st, "in_wm", h->wm);
    }
    if (err == DUET_OK && h->max_hlc != 0) {
        err = duet_items_clock_recv(h->st, h->max_hlc, h->now_ms ? h->now_ms(h->clock_ctx) : 0);
    }
    if (err == DUET_OK) {
        err = duet_store_commit(h->st);
    }
    if (err != DUET_OK) {
        duet_outbox_recv_abort(h);
        return err;
    }
    duet_ratchet_clear(h->ratchet_mem);
    h->ratchet = NULL;
    h->batch_open = false;
    /* Check-ins: the REVEALs this batch made owed are sealed now, in their own transaction,
     * with the ratchet state the batch has just saved (sealing inside the batch would use a
     * stale copy of it). If this fails, the owed rows stay and the next commit, or the
     * next check-in command, sends them: the batch itself is durable either way. */
    size_t revealed;
    duet_err_t owed = duet_checkin_flush_owed(h->st, h->now_ms ? h->now_ms(h->clock_ctx) : 0,
                                              &revealed);
    (void)owed;
    fire(h);
    return DUET_OK;
}

static duet_err_t seq_known(duet_outbox_host_t *h, uint64_t seq, uint64_t wm, bool *known)
{
    sqlite3_stmt *s;
    *known = seq <= wm;
    if (*known || h->inbound_rows == 0) {
        return DUET_OK; /* nothing above the watermark: no need to look */
    }
    duet_err_t err = duet_store_prepare(h->st, "SELECT 1 FROM inbound WHERE seq = ?1", &s);
    if (err != DUET_OK) {
        return err;
    }
    sqlite3_bind_int64(s, 1, (sqlite3_int64)seq);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        return duet_store_rc(h->st, rc);
    }
    *known = rc == SQLITE_ROW;
    return DUET_OK;
}

/* Record seq as received and move the watermark over what is now contiguous (in memory;
 * written at the commit). */
static duet_err_t mark_received(duet_outbox_host_t *h, uint64_t seq, uint64_t wm)
{
    sqlite3_stmt *s;
    duet_err_t err;
    int rc;
    (void)wm;
    if (seq != h->wm + 1) {
        if ((err = duet_store_prepare(h->st, "INSERT INTO inbound (seq) VALUES (?1)", &s))) {
            return err;
        }
        sqlite3_bind_int64(s, 1, (sqlite3_int64)seq);
        rc = sqlite3_step(s);
        sqlite3_reset(s);
        if (rc != SQLITE_DONE) {
            return duet_store_rc(h->st, rc);
        }
        h->inbound_rows++;
        return DUET_OK;
    }
    h->wm = seq;
    h->wm_dirty = true;
    while (h->inbound_rows > 0) {
        if ((err = duet_store_prepare(h->st, "DELETE FROM inbound WHERE seq = ?1", &s))) {
            return err;
        }
        sqlite3_bind_int64(s, 1, (sqlite3_int64)(h->wm + 1));
        rc = sqlite3_step(s);
        sqlite3_reset(s);
        if (rc != SQLITE_DONE) {
            return duet_store_rc(h->st, rc);
        }
        if (sqlite3_changes(duet_store_db(h->st)) == 0) {
            break;
        }
        h->wm++;
        h->inbound_rows--;
    }
    return DUET_OK;
}

/* A read receipt from the partner: my items it names are now read. */
static duet_err_t on_receipt(duet_outbox_host_t *h, const uint8_t *body, size_t len)
{
    static const duet_codec_field_t fields[] = {{1, DUET_CODEC_ARRAY, true}};
    const msgpack_object *f[1];
    duet_codec_msg_t msg;
    duet_codec_limits_t lim = duet_codec_default_limits;
    lim.max_array = RECEIPT_MAX_IDS;
    duet_err_t err = duet_codec_decode(&msg, body, len, &lim);
    if (err != DUET_OK) {
        return DUET_EDECODE;
    }
    err = duet_codec_map(&msg.root, fields, 1, f);
    for (uint32_t i = 0; err == DUET_OK && i < f[0]->via.array.size; i++) {
        uint8_t id[DUET_ITEM_ID_BYTES];
        if (duet_codec_get_fixed(&f[0]->via.array.ptr[i], id, sizeof id) != DUET_OK) {
            err = DUET_EDECODE;
            break;
        }
        err = duet_items_set_status(h->st, id, DUET_STATUS_READ);
        if (err == DUET_OK && sqlite3_changes(duet_store_db(h->st)) > 0) {
            err = pend(h, DUET_EV_READ, id, DUET_KIND_NOTE);
        }
    }
    duet_codec_msg_dispose(&msg);
    return err == DUET_ETYPE || err == DUET_EMISSING || err == DUET_EUNKNOWNKEY ? DUET_EDECODE
                                                                               : err;
}

duet_err_t duet_outbox_recv_put(duet_outbox_host_t *h, uint64_t seq, const uint8_t *env,
                                size_t len, bool *counted)
{
    uint64_t wm;
    bool known;
    uint8_t ad[AD_LEN];
    size_t plen;
    wire_item_t w;
    duet_codec_msg_t msg;
    *counted = false;
    if (!h->batch_open) {
        abort();
    }
    duet_err_t err;
    wm = h->wm;
    /* Dedup before decrypt, and refuse what is too far ahead to track. */
    if ((err = seq_known(h, seq, wm, &known)) != DUET_OK) {
        return err;
    }
    if (known) {
        return DUET_EDUP;
    }
    if (seq > wm + DUET_SYNC_MAX_ABOVE) {
        return DUET_ERANGE;
    }
    if (h->plain == NULL && (h->plain = sodium_malloc(WIRE_MAX)) == NULL) {
        return DUET_ENOMEM;
    }
    uint8_t *plain = h->plain;
    envelope_ad(ad, h->partner_pk, h->my_pk);
    duet_rng_t rng = duet_store_rng(h->st);
    err = duet_ratchet_decrypt(h->ratchet, &rng, ad, sizeof ad, env, len, plain, WIRE_MAX, &plen);
    if (err != DUET_OK) {
        /* Not ours to open (tampered, replayed, or from another session): drop it. The
         * ratchet wrote nothing on failure. */
        return err == DUET_ENOMEM ? err : DUET_EAUTH;
    }
    if ((err = wire_decode(plain, plen, &msg, &w)) != DUET_OK) {
        sodium_memzero(plain, plen);
        return err;
    }
    /* The sequence number inside is the truth: a relay that relabels an envelope only
     * delays it (the label it gave stays unacknowledged and comes again). */
    if (w.seq != seq) {
        if ((err = seq_known(h, w.seq, wm, &known)) != DUET_OK || known) {
            goto done;
        }
        seq = w.seq;
    }
    if (DUET_KIND_VISIBLE(w.kind)) {
        /* Voice notes (voice.h): the blob the item names is wanted, recorded in this batch;
         * a body that does not decode keeps the item out (DUET_EDECODE, below). */
        if (w.kind == DUET_KIND_VOICE) {
            err = duet_voice_on_item(h->st, w.id, w.body, w.body_len);
        }
        if (err == DUET_OK) {
            err = duet_items_put_partner_noclock(h->st, w.id, w.kind, w.hlc, w.body, w.body_len);
        }
        if (w.hlc > h->max_hlc) {
            h->max_hlc = w.hlc; /* merged into the clock once, at the commit */
        }
        if (err == DUET_EEXIST) {
            err = DUET_OK; /* the same item under another number: keep one */
        } else if (err == DUET_OK) {
            err = pend(h, DUET_EV_RECEIVED, w.id, w.kind);
        }
    } else if (w.kind == DUET_KIND_RECEIPT) {
        err = on_receipt(h, w.body, w.body_len);
    } else if (DUET_CHECKIN_KIND(w.kind)) {
        /* Check-ins (checkin.h): rituals, sealed answers, reveals, agreements. Inside this
         * batch's transaction; it only records, any REVEAL it owes is sealed after the
         * commit (see duet_outbox_recv_commit). */
        uint64_t now = h->now_ms ? h->now_ms(h->clock_ctx) : 0;
        err = duet_checkin_receive(h->st, w.kind, w.id, w.hlc, w.body, w.body_len, now);
        if (err == DUET_OK) {
            err = pend(h, DUET_EV_CONTROL, w.id, w.kind);
        }
    } else {
        /* A kind this version does not know (a newer partner's): acknowledge and keep
         * nothing, so the partner's outbox does not stall on it. */
        err = DUET_OK;
    }
    if (err == DUET_EDECODE) {
        err = DUET_OK; /* a malformed body from the partner's own client: acknowledged, kept
                          out of the store */
    }
    if (err == DUET_OK) {
        err = mark_received(h, seq, wm);
    }
    if (err == DUET_OK) {
        *counted = w.kind != DUET_KIND_RECEIPT;
    }
done:
    duet_codec_msg_dispose(&msg);
    sodium_memzero(plain, plen);
    return err;
}

duet_err_t duet_outbox_acked(duet_outbox_host_t *h, uint64_t wm, const uint64_t *above, size_t n,
                             uint64_t *items)
{
    sqlite3_stmt *s;
    duet_err_t err = DUET_OK;
    bool own = !h->batch_open;
    *items = 0;
    h->npre = 0; /* rows are about to go: read ahead again next time */
    if (own && (err = duet_store_begin(h->st)) != DUET_OK) {
        return err;
    }
    /* Everything at or below the watermark, then each one above it. */
    for (size_t i = 0; i <= n && err == DUET_OK; i++) {
        const char *sel = i == 0 ? "SELECT seq, item_id, counts FROM outbox WHERE seq <= ?1"
                                 : "SELECT seq, item_id, counts FROM outbox WHERE seq = ?1";
        uint64_t key = i == 0 ? wm : above[i - 1];
        if ((err = duet_store_prepare(h->st, sel, &s)) != DUET_OK) {
            break;
        }
        sqlite3_bind_int64(s, 1, (sqlite3_int64)key);
        int rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            *items += sqlite3_column_int(s, 2) != 0;
            if (sqlite3_column_bytes(s, 1) == DUET_ITEM_ID_BYTES) {
                uint8_t id[DUET_ITEM_ID_BYTES];
                memcpy(id, sqlite3_column_blob(s, 1), sizeof id);
                err = duet_items_set_status(h->st, id, DUET_STATUS_DELIVERED);
                if (err == DUET_OK && sqlite3_changes(duet_store_db(h->st)) > 0) {
                    err = pend(h, DUET_EV_DELIVERED, id, DUET_KIND_NOTE);
                }
                if (err != DUET_OK) {
                    break;
                }
            }
        }
        sqlite3_reset(s);
        if (err == DUET_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
            err = duet_store_rc(h->st, rc);
        }
        if (err != DUET_OK) {
            break;
        }
        const char *del = i == 0 ? "DELETE FROM outbox WHERE seq <= ?1"
                                 : "DELETE FROM outbox WHERE seq = ?1";
        if ((err = duet_store_prepare(h->st, del, &s)) != DUET_OK) {
            break;
        }
        sqlite3_bind_int64(s, 1, (sqlite3_int64)key);
        rc = sqlite3_step(s);
        sqlite3_reset(s);
        if (rc != SQLITE_DONE) {
            err = duet_store_rc(h->st, rc);
        }
    }
    if (own) {
        if (err == DUET_OK) {
            err = duet_store_commit(h->st);
        }
        if (err != DUET_OK) {
            duet_store_rollback(h->st);
            h->npending = 0;
            *items = 0;
        } else {
            fire(h);
        }
    }
    return err;
}

/* ---- sync.h adapters ------------------------------------------------------------------ */

static duet_err_t a_recv_state(void *c, uint64_t *wm, uint64_t *above, size_t cap, size_t *n)
{
    return duet_outbox_recv_state(c, wm, above, cap, n);
}
static duet_err_t a_next(void *c, uint64_t after, uint64_t *seq, const uint8_t **env,
                         size_t *len)
{
    return duet_outbox_next(c, after, seq, env, len);
}
static duet_err_t a_begin(void *c)
{
    return duet_outbox_recv_begin(c);
}
static duet_err_t a_put(void *c, uint64_t seq, const uint8_t *env, size_t len, bool *counted)
{
    return duet_outbox_recv_put(c, seq, env, len, counted);
}
static duet_err_t a_commit(void *c)
{
    return duet_outbox_recv_commit(c);
}
static void a_abort(void *c)
{
    duet_outbox_recv_abort(c);
}
static duet_err_t a_acked(void *c, uint64_t wm, const uint64_t *above, size_t n, uint64_t *items)
{
    return duet_outbox_acked(c, wm, above, n, items);
}

duet_sync_host_t duet_outbox_sync_host(duet_outbox_host_t *h)
{
    duet_sync_host_t x = {h,      a_recv_state, host_out_last, a_next, a_begin,
                          a_put,  a_commit,     a_abort,       a_acked};
    return x;
}
