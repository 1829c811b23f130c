/* see items.h */
#include "items.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "codec.h"
#include "hlc.h"

const char *duet_kind_name(uint32_t kind)
{
    switch (kind) {
    case DUET_KIND_NOTE: return "note";
    case DUET_KIND_VOICE: return "voice";
    case DUET_KIND_CHECKIN: return "checkin";
    case DUET_KIND_PAUSE: return "pause";
    case DUET_KIND_RESUME: return "resume";
    case DUET_KIND_MILESTONE: return "milestone";
    case DUET_KIND_RECEIPT: return "receipt";
    case DUET_KIND_RITUAL: return "ritual";
    case DUET_KIND_ANSWER: return "answer";
    case DUET_KIND_REVEAL: return "reveal";
    case DUET_KIND_AGREEMENT: return "agreement";
    default: return "unknown";
    }
}

const char *duet_status_name(uint32_t status)
{
    switch (status) {
    case DUET_STATUS_QUEUED: return "queued";
    case DUET_STATUS_DELIVERED: return "delivered";
    case DUET_STATUS_READ: return "read";
    case DUET_STATUS_UNREAD: return "unread";
    default: return "unknown";
    }
}

void duet_item_id_hex(const uint8_t id[static DUET_ITEM_ID_BYTES], char out[static 33])
{
    sodium_bin2hex(out, 33, id, DUET_ITEM_ID_BYTES);
}

duet_err_t duet_item_id_parse(const char *hex, uint8_t id[static DUET_ITEM_ID_BYTES])
{
    size_t n = 0;
    const char *end = NULL;
    if (strlen(hex) != 2 * DUET_ITEM_ID_BYTES ||
        sodium_hex2bin(id, DUET_ITEM_ID_BYTES, hex, strlen(hex), NULL, &n, &end) != 0 ||
        n != DUET_ITEM_ID_BYTES || *end != 0) {
        memset(id, 0, DUET_ITEM_ID_BYTES);
        return DUET_EINVAL;
    }
    return DUET_OK;
}

static void item_ad(const uint8_t id[DUET_ITEM_ID_BYTES], uint8_t ad[4 + DUET_ITEM_ID_BYTES])
{
    memcpy(ad, "item", 4);
    memcpy(ad + 4, id, DUET_ITEM_ID_BYTES);
}

duet_err_t duet_items_clock(duet_store_t *st, uint64_t now_ms, uint64_t *hlc)
{
    uint64_t last;
    *hlc = 0;
    duet_err_t err = duet_store_meta_get_u64(st, "hlc", 0, &last);
    if (err != DUET_OK) {
        return err;
    }
    uint64_t t = duet_hlc_local(last, now_ms);
    err = duet_store_meta_set_u64(st, "hlc", t);
    if (err == DUET_OK) {
        *hlc = t;
    }
    return err;
}

duet_err_t duet_items_clock_recv(duet_store_t *st, uint64_t msg_hlc, uint64_t now_ms)
{
    uint64_t last;
    duet_err_t err = duet_store_meta_get_u64(st, "hlc", 0, &last);
    if (err != DUET_OK) {
        return err;
    }
    return duet_store_meta_set_u64(st, "hlc", duet_hlc_recv(last, msg_hlc, now_ms));
}

static duet_err_t insert(duet_store_t *st, const uint8_t id[DUET_ITEM_ID_BYTES], uint32_t kind,
                         bool mine, uint64_t hlc, uint32_t status, const uint8_t *body,
                         size_t len)
{
    uint8_t ad[4 + DUET_ITEM_ID_BYTES];
    uint8_t *sealed = NULL;
    size_t slen;
    sqlite3_stmt *s;
    duet_err_t err;

    if (len > DUET_ITEM_BODY_MAX || hlc > (uint64_t)INT64_MAX) {
        return DUET_ETOOBIG;
    }
    item_ad(id, ad);
    err = duet_store_seal(st, ad, sizeof ad, body, len, &sealed, &slen);
    if (err != DUET_OK) {
        return err;
    }
    err = duet_store_prepare(st,
                             "INSERT INTO items (id, kind, mine, hlc, status, body) "
                             "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                             &s);
    if (err == DUET_OK) {
        sqlite3_bind_blob(s, 1, id, DUET_ITEM_ID_BYTES, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, kind);
        sqlite3_bind_int(s, 3, mine ? 1 : 0);
        sqlite3_bind_int64(s, 4, (sqlite3_int64)hlc);
        sqlite3_bind_int64(s, 5, status);
        sqlite3_bind_blob(s, 6, sealed, (int)slen, SQLITE_STATIC);
        int rc = sqlite3_step(s);
        sqlite3_reset(s);
        err = rc == SQLITE_DONE ? DUET_OK : duet_store_rc(st, rc);
    }
    free(sealed);
    return err;
}

duet_err_t duet_items_add(duet_store_t *st, uint32_t kind, const uint8_t *body, size_t len,
                          uint64_t now_ms, duet_item_t *out)
{
    memset(out, 0, sizeof *out);
    uint64_t hlc;
    duet_err_t err = duet_items_clock(st, now_ms, &hlc);
    if (err != DUET_OK) {
        return err;
    }
    duet_rng_t rng = duet_store_rng(st);
    duet_rng_fill(&rng, out->id, DUET_ITEM_ID_BYTES);
    err = insert(st, out->id, kind, true, hlc, DUET_STATUS_QUEUED, body, len);
    if (err != DUET_OK) {
        memset(out, 0, sizeof *out);
        return err;
    }
    out->kind = kind;
    out->mine = true;
    out->hlc = hlc;
    out->status = DUET_STATUS_QUEUED;
    return DUET_OK;
}

duet_err_t duet_items_put_partner(duet_store_t *st, const uint8_t id[static DUET_ITEM_ID_BYTES],
                                  uint32_t kind, uint64_t hlc, const uint8_t *body, size_t len,
                                  uint64_t now_ms)
{
    duet_err_t err = insert(st, id, kind, false, hlc, DUET_STATUS_UNREAD, body, len);
    if (err != DUET_OK) {
        return err;
    }
    return duet_items_clock_recv(st, hlc, now_ms);
}

duet_err_t duet_items_put_partner_noclock(duet_store_t *st,
                                          const uint8_t id[static DUET_ITEM_ID_BYTES],
                                          uint32_t kind, uint64_t hlc, const uint8_t *body,
                                          size_t len)
{
    return insert(st, id, kind, false, hlc, DUET_STATUS_UNREAD, body, len);
}

void duet_item_clear(duet_item_t *it)
{
    if (it->body != NULL) {
        sodium_memzero(it->body, it->body_len);
        free(it->body);
    }
    memset(it, 0, sizeof *it);
}

void duet_items_free(duet_item_t *items, size_t n)
{
    if (items == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        duet_item_clear(&items[i]);
    }
    free(items);
}

/* Fill it from a row (id, kind, mine, hlc, status, body). */
static duet_err_t from_row(duet_store_t *st, sqlite3_stmt *s, duet_item_t *it)
{
    uint8_t ad[4 + DUET_ITEM_ID_BYTES];
    memset(it, 0, sizeof *it);
    if (sqlite3_column_bytes(s, 0) != DUET_ITEM_ID_BYTES) {
        return DUET_ECORRUPT;
    }
    memcpy(it->id, sqlite3_column_blob(s, 0), DUET_ITEM_ID_BYTES);
    it->kind = (uint32_t)sqlite3_column_int64(s, 1);
    it->mine = sqlite3_column_int(s, 2) != 0;
    it->hlc = (uint64_t)sqlite3_column_int64(s, 3);
    it->status = (uint32_t)sqlite3_column_int64(s, 4);
    item_ad(it->id, ad);
    return duet_store_unseal(st, ad, sizeof ad, sqlite3_column_blob(s, 5),
                             (size_t)sqlite3_column_bytes(s, 5), &it->body, &it->body_len);
}

duet_err_t duet_items_get(duet_store_t *st, const uint8_t id[static DUET_ITEM_ID_BYTES],
                          duet_item_t *out)
{
    sqlite3_stmt *s;
    memset(out, 0, sizeof *out);
    duet_err_t err = duet_store_prepare(
        st, "SELECT id, kind, mine, hlc, status, body FROM items WHERE id = ?1", &s);
    if (err != DUET_OK) {
        return err;
    }
    sqlite3_bind_blob(s, 1, id, DUET_ITEM_ID_BYTES, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        err = from_row(st, s, out);
    } else {
        err = rc == SQLITE_DONE ? DUET_ENOENT : duet_store_rc(st, rc);
    }
    sqlite3_reset(s);
    return err;
}

duet_err_t duet_items_list(duet_store_t *st, size_t limit, duet_item_t **items, size_t *n)
{
    sqlite3_stmt *s;
    duet_item_t *v = NULL;
    size_t count = 0;
    duet_err_t err;

    *items = NULL;
    *n = 0;
    if (limit == 0 || limit > DUET_ITEMS_LIST_MAX) {
        limit = DUET_ITEMS_LIST_MAX;
    }
    /* The newest `limit` by the order index, walked backwards, then reversed. The unary +
     * keeps the planner off the index on kind (check-ins), which would sort every row. */
    err = duet_store_prepare(st,
                             "SELECT id, kind, mine, hlc, status, body FROM items "
                             "WHERE +kind BETWEEN 1 AND 15 "
                             "ORDER BY hlc DESC, id DESC LIMIT ?1",
                             &s);
    if (err != DUET_OK) {
        return err;
    }
    sqlite3_bind_int64(s, 1, (sqlite3_int64)limit);
    size_t cap = limit < 64 ? limit : 64;
    v = calloc(cap, sizeof *v);
    if (v == NULL) {
        sqlite3_reset(s);
        return DUET_ENOMEM;
    }
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (count == cap) {
            size_t ncap = cap * 2;
            duet_item_t *nv = realloc(v, ncap * sizeof *nv);
            if (nv == NULL) {
                err = DUET_ENOMEM;
                goto cleanup;
            }
            memset(nv + cap, 0, (ncap - cap) * sizeof *nv);
            v = nv;
            cap = ncap;
        }
        err = from_row(st, s, &v[count]);
        if (err != DUET_OK) {
            goto cleanup;
        }
        count++;
    }
    if (rc != SQLITE_DONE) {
        err = duet_store_rc(st, rc);
        goto cleanup;
    }
    for (size_t i = 0; i < count / 2; i++) {
        duet_item_t t = v[i];
        v[i] = v[count - 1 - i];
        v[count - 1 - i] = t;
    }
cleanup:
    sqlite3_reset(s);
    if (err != DUET_OK) {
        duet_items_free(v, count);
        return err;
    }
    *items = v;
    *n = count;
    return DUET_OK;
}

duet_err_t duet_items_set_status(duet_store_t *st, const uint8_t id[static DUET_ITEM_ID_BYTES],
                                 uint32_t status)
{
    sqlite3_stmt *s;
    /* Only forward: delivered never goes back to queued, read never back to unread. A
     * partner's item is unread (3) then read (2); mine go 0 -> 1 -> 2. */
    duet_err_t err = duet_store_prepare(
        st,
        "UPDATE items SET status = ?2 WHERE id = ?1 AND "
        "((mine = 1 AND status < ?2 AND ?2 <= 2) OR (mine = 0 AND status = 3 AND ?2 = 2))",
        &s);
    if (err != DUET_OK) {
        return err;
    }
    sqlite3_bind_blob(s, 1, id, DUET_ITEM_ID_BYTES, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, status);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? DUET_OK : duet_store_rc(st, rc);
}

duet_err_t duet_items_count(duet_store_t *st, int mine, int status, uint64_t *n)
{
    sqlite3_stmt *s;
    *n = 0;
    duet_err_t err = duet_store_prepare(st,
                                        "SELECT count(*) FROM items WHERE kind BETWEEN 1 AND 15 "
                                        "AND (?1 < 0 OR mine = ?1) AND (?2 < 0 OR status = ?2)",
                                        &s);
    if (err != DUET_OK) {
        return err;
    }
    sqlite3_bind_int(s, 1, mine);
    sqlite3_bind_int(s, 2, status);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *n = (uint64_t)sqlite3_column_int64(s, 0);
        err = DUET_OK;
    } else {
        err = duet_store_rc(st, rc);
    }
    sqlite3_reset(s);
    return err;
}

duet_err_t duet_note_encode(const char *text, size_t len, uint8_t **body, size_t *body_len)
{
    duet_codec_enc_t enc;
    const uint8_t *p;
    size_t n;

    *body = NULL;
    *body_len = 0;
    if (len == 0) {
        return DUET_EEMPTY;
    }
    if (len > DUET_NOTE_MAX) {
        return DUET_ETOOBIG;
    }
    if (!duet_utf8_valid((const uint8_t *)text, len)) {
        return DUET_EUTF8;
    }
    duet_codec_enc_init(&enc, DUET_ITEM_BODY_MAX);
    duet_codec_put_map(&enc, 1);
    duet_codec_put_key(&enc, 1);
    duet_codec_put_str(&enc, text, len);
    duet_err_t err = duet_codec_enc_finish(&enc, &p, &n);
    if (err == DUET_OK) {
        *body = malloc(n);
        if (*body == NULL) {
            err = DUET_ENOMEM;
        } else {
            memcpy(*body, p, n);
            *body_len = n;
        }
    }
    duet_codec_enc_dispose(&enc);
    return err;
}

duet_err_t duet_note_decode(const uint8_t *body, size_t body_len, const char **text, size_t *len)
{
    static const duet_codec_field_t fields[] = {{1, DUET_CODEC_STR, true}};
    const msgpack_object *f[1];
    duet_codec_msg_t msg;

    *text = NULL;
    *len = 0;
    duet_err_t err = duet_codec_decode(&msg, body, body_len, &duet_codec_default_limits);
    if (err != DUET_OK) {
        return err;
    }
    err = duet_codec_map(&msg.root, fields, 1, f);
    if (err == DUET_OK) {
        err = duet_codec_get_str(f[0], 1, DUET_NOTE_MAX, text, len);
    }
    duet_codec_msg_dispose(&msg);
    return err;
}
