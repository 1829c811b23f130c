/* see voice.h */
#include "voice.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "codec.h"
#include "outbox.h"

#define BLOBS_DIR  "blobs"
#define HEX_ID_LEN (2u * DUET_BLOB_ID_BYTES)

/* ---- the body ------------------------------------------------------------------------ */

duet_err_t duet_voice_encode(const duet_voice_t *v, uint8_t **body, size_t *len)
{
    duet_codec_enc_t enc;
    const uint8_t *p;
    size_t n;
    *body = NULL;
    *len = 0;
    if (v->caption_len > DUET_VOICE_CAPTION_MAX) {
        return DUET_ETOOBIG;
    }
    if (!duet_utf8_valid((const uint8_t *)v->caption, v->caption_len)) {
        return DUET_EUTF8;
    }
    if (duet_blob_ref_check(&v->ref) != DUET_OK || v->ref.size == 0 ||
        v->ref.duration_ms > DUET_AUDIO_MAX_DURATION_MS) {
        return DUET_EINVAL;
    }
    duet_codec_enc_init(&enc, DUET_VOICE_BODY_MAX);
    duet_codec_put_map(&enc, v->caption_len > 0 ? 6 : 5);
    if (v->caption_len > 0) {
        duet_codec_put_key(&enc, 1);
        duet_codec_put_str(&enc, v->caption, v->caption_len);
    }
    duet_codec_put_key(&enc, 2);
    duet_codec_put_bin(&enc, v->ref.id, DUET_BLOB_ID_BYTES);
    duet_codec_put_key(&enc, 3);
    duet_codec_put_bin(&enc, v->ref.key, DUET_BLOB_KEY_BYTES);
    duet_codec_put_key(&enc, 4);
    duet_codec_put_uint(&enc, v->ref.size);
    duet_codec_put_key(&enc, 5);
    duet_codec_put_str(&enc, v->ref.mime, strlen(v->ref.mime));
    duet_codec_put_key(&enc, 6);
    duet_codec_put_uint(&enc, v->ref.duration_ms);
    duet_err_t err = duet_codec_enc_finish(&enc, &p, &n);
    if (err == DUET_OK) {
        *body = malloc(n);
        if (*body == NULL) {
            err = DUET_ENOMEM;
        } else {
            memcpy(*body, p, n);
            *len = n;
        }
    }
    duet_codec_enc_dispose(&enc); /* wipes the key it held */
    return err;
}

duet_err_t duet_voice_decode(const uint8_t *body, size_t len, duet_voice_t *v)
{
    static const duet_codec_field_t fields[] = {
        {1, DUET_CODEC_STR, false}, {2, DUET_CODEC_BIN, true}, {3, DUET_CODEC_BIN, true},
        {4, DUET_CODEC_UINT, true}, {5, DUET_CODEC_STR, true}, {6, DUET_CODEC_UINT, true}};
    static const duet_codec_limits_t lim = {.max_depth = 1,
                                            .max_str = DUET_VOICE_CAPTION_MAX,
                                            .max_bin = DUET_BLOB_KEY_BYTES,
                                            .max_array = 0,
                                            .max_map = 6,
                                            .max_objects = 13};
    const msgpack_object *f[6];
    duet_codec_msg_t msg;
    const char *s;
    size_t slen;
    uint64_t size, duration;
    memset(v, 0, sizeof *v);
    if (duet_codec_decode(&msg, body, len, &lim) != DUET_OK) {
        return DUET_EDECODE;
    }
    duet_err_t err = DUET_EDECODE;
    if (duet_codec_map(&msg.root, fields, 6, f) != DUET_OK ||
        duet_codec_get_fixed(f[1], v->ref.id, DUET_BLOB_ID_BYTES) != DUET_OK ||
        duet_codec_get_fixed(f[2], v->ref.key, DUET_BLOB_KEY_BYTES) != DUET_OK ||
        duet_codec_get_uint(f[3], 1, (uint64_t)DUET_BLOB_MAX, &size) != DUET_OK ||
        duet_codec_get_str(f[4], 1, DUET_BLOB_MIME_MAX, &s, &slen) != DUET_OK ||
        duet_codec_get_uint(f[5], 0, (uint64_t)DUET_AUDIO_MAX_DURATION_MS, &duration) != DUET_OK) {
        goto cleanup;
    }
    memcpy(v->ref.mime, s, slen);
    v->ref.mime[slen] = 0;
    v->ref.size = size;
    v->ref.duration_ms = (uint32_t)duration;
    if (duet_blob_ref_check(&v->ref) != DUET_OK) {
        goto cleanup;
    }
    if (f[0] != NULL) {
        if (duet_codec_get_str(f[0], 1, DUET_VOICE_CAPTION_MAX, &s, &slen) != DUET_OK) {
            goto cleanup;
        }
        memcpy(v->caption, s, slen);
        v->caption[slen] = 0;
        v->caption_len = slen;
    }
    err = DUET_OK;
cleanup:
    duet_codec_msg_dispose(&msg);
    if (err != DUET_OK) {
        duet_voice_dispose(v);
    }
    return err;
}

void duet_voice_dispose(duet_voice_t *v)
{
    sodium_memzero(v, sizeof *v);
}

/* ---- files --------------------------------------------------------------------------- */

static duet_err_t errno_err(int e)
{
    switch (e) {
    case ENOENT:
    case ENOTDIR:
        return DUET_ENOENT;
    case EACCES:
    case EPERM:
    case EROFS:
        return DUET_EPERM;
    case ENOSPC:
    case EDQUOT:
        return DUET_ENOSPC;
    case ENAMETOOLONG:
        return DUET_ETOOBIG;
    default:
        return DUET_EIO;
    }
}

static duet_err_t dir_path(duet_store_t *st, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/" BLOBS_DIR, duet_store_home(st));
    return n < 0 || (size_t)n >= cap ? DUET_ETOOBIG : DUET_OK;
}

duet_err_t duet_voice_path(duet_store_t *st, const uint8_t id[DUET_BLOB_ID_BYTES],
                           const char *suffix, char *out, size_t cap)
{
    char hex[HEX_ID_LEN + 1];
    sodium_bin2hex(hex, sizeof hex, id, DUET_BLOB_ID_BYTES);
    int n = snprintf(out, cap, "%s/" BLOBS_DIR "/%s%s", duet_store_home(st), hex, suffix);
    return n < 0 || (size_t)n >= cap ? DUET_ETOOBIG : DUET_OK;
}

duet_err_t duet_voice_mkdir(duet_store_t *st)
{
    char dir[DUET_VOICE_PATH_MAX];
    duet_err_t err = dir_path(st, dir, sizeof dir);
    if (err != DUET_OK) {
        return err;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        return errno_err(errno);
    }
    return DUET_OK;
}

/* fsync the blobs folder, so a rename in it is durable. */
static duet_err_t sync_dir(duet_store_t *st)
{
    char dir[DUET_VOICE_PATH_MAX];
    duet_err_t err = dir_path(st, dir, sizeof dir);
    if (err != DUET_OK) {
        return err;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return errno_err(errno);
    }
    err = fsync(fd) == 0 ? DUET_OK : errno_err(errno);
    close(fd);
    return err;
}

uint64_t duet_voice_rx_read(const char *rx_path)
{
    uint8_t b[8];
    int fd = open(rx_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        return 0;
    }
    ssize_t n = pread(fd, b, sizeof b, 0);
    close(fd);
    if (n != (ssize_t)sizeof b) {
        return 0;
    }
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = v << 8 | b[i];
    }
    return v;
}

/* ---- the table ----------------------------------------------------------------------- */

#define BLOB_COLS "n, id, item, mine, state, size, fetched, relayed"

static duet_err_t from_row(sqlite3_stmt *s, duet_voice_blob_t *b)
{
    memset(b, 0, sizeof *b);
    if (sqlite3_column_bytes(s, 1) != DUET_BLOB_ID_BYTES ||
        sqlite3_column_bytes(s, 2) != DUET_ITEM_ID_BYTES) {
        return DUET_ECORRUPT;
    }
    b->n = (uint64_t)sqlite3_column_int64(s, 0);
    memcpy(b->id, sqlite3_column_blob(s, 1), DUET_BLOB_ID_BYTES);
    memcpy(b->item, sqlite3_column_blob(s, 2), DUET_ITEM_ID_BYTES);
    b->mine = sqlite3_column_int(s, 3) != 0;
    b->state = sqlite3_column_int(s, 4) == 1 ? DUET_VOICE_AVAILABLE : DUET_VOICE_PARTIAL;
    sqlite3_int64 size = sqlite3_column_int64(s, 5);
    sqlite3_int64 fetched = sqlite3_column_int64(s, 6);
    sqlite3_int64 relayed = sqlite3_column_int64(s, 7);
    if (size < 1 || size > (sqlite3_int64)DUET_BLOB_MAX || fetched < 0 || relayed < 0 ||
        (uint64_t)relayed > duet_blob_chunk_count((uint64_t)size)) {
        return DUET_ECORRUPT;
    }
    b->size = (uint64_t)size;
    b->fetched = (uint64_t)fetched;
    b->relayed = (uint64_t)relayed;
    return DUET_OK;
}

/* Run a one-row query whose ?1 is bound by the caller's bind (an id or a number). */
static duet_err_t one_row(duet_store_t *st, sqlite3_stmt *s, duet_voice_blob_t *b)
{
    int rc = sqlite3_step(s);
    duet_err_t err;
    if (rc == SQLITE_ROW) {
        err = from_row(s, b);
    } else {
        memset(b, 0, sizeof *b);
        err = rc == SQLITE_DONE ? DUET_ENOENT : duet_store_rc(st, rc);
    }
    sqlite3_reset(s);
    return err;
}

static duet_err_t insert_blob(duet_store_t *st, const duet_blob_ref_t *ref,
                              const uint8_t item[DUET_ITEM_ID_BYTES], bool mine)
{
    sqlite3_stmt *s;
    duet_err_t err = duet_store_prepare(st,
                                        "INSERT OR IGNORE INTO blobs (id, mine, state, size, item) "
                                        "VALUES (?1, ?2, ?3, ?4, ?5)",
                                        &s);
    if (err != DUET_OK) {
        return err;
    }
    sqlite3_bind_blob(s, 1, ref->id, DUET_BLOB_ID_BYTES, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, mine);
    sqlite3_bind_int(s, 3, mine ? DUET_VOICE_AVAILABLE : DUET_VOICE_PARTIAL);
    sqlite3_bind_int64(s, 4, (sqlite3_int64)ref->size);
    sqlite3_bind_blob(s, 5, item, DUET_ITEM_ID_BYTES, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? DUET_OK : duet_store_rc(st, rc);
}

duet_err_t duet_voice_on_item(duet_store_t *st, const uint8_t item_id[DUET_ITEM_ID_BYTES],
                              const uint8_t *body, size_t len)
{
    duet_voice_t v;
    duet_err_t err = duet_voice_decode(body, len, &v);
    if (err == DUET_OK) {
        err = insert_blob(st, &v.ref, item_id, false);
    }
    duet_voice_dispose(&v);
    return err;
}

duet_err_t duet_voice_next_wanted(duet_store_t *st, uint64_t after, duet_voice_blob_t *b)
{
    sqlite3_stmt *s;
    memset(b, 0, sizeof *b);
    duet_err_t err = duet_store_prepare(st,
                                        "SELECT " BLOB_COLS " FROM blobs WHERE mine = 0 AND "
                                        "state = 0 AND n > ?1 ORDER BY n LIMIT 1",
                                        &s);
    if (err != DUET_OK) {
        return err;
    }
    sqlite3_bind_int64(s, 1, (sqlite3_int64)after);
    return one_row(st, s, b);
}

duet_err_t duet_voice_count_wanted(duet_store_t *st, uint64_t after, uint64_t *n)
{
    sqlite3_stmt *s;
    *n = 0;
    duet_err_t err = duet_store_prepare(
        st, "SELECT count(*) FROM blobs WHERE mine = 0 AND state = 0 AND n > ?1", &s);
    if (err != DUET_OK) {
        return err;
    }
    sqlite3_bind_int64(s, 1, (sqlite3_int64)after);
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

static duet_err_t set_state(duet_store_t *st, const uint8_t id[DUET_BLOB_ID_BYTES],
                            duet_voice_state_t state, uint64_t fetched)
{
    sqlite3_stmt *s;
    duet_err_t err = duet_store_prepare(
        st, "UPDATE blobs SET state = ?2, fetched = ?3 WHERE id = ?1 AND mine = 0", &s);
    if (err != DUET_OK) {
        return err;
    }
    sqlite3_bind_blob(s, 1, id, DUET_BLOB_ID_BYTES, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, (int)state);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)fetched);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? DUET_OK : duet_store_rc(st, rc);
}

duet_err_t duet_voice_mark_available(duet_store_t *st, const uint8_t id[DUET_BLOB_ID_BYTES],
                                     uint64_t fetched)
{
    char rx[DUET_VOICE_PATH_MAX];
    duet_err_t err = set_state(st, id, DUET_VOICE_AVAILABLE, fetched);
    if (err == DUET_OK && duet_voice_path(st, id, ".rx", rx, sizeof rx) == DUET_OK) {
        (void)unlink(rx); /* its count now lives in the row; a stale file would be ignored */
    }
    return err;
}

duet_err_t duet_voice_blob(duet_store_t *st, const uint8_t id[DUET_BLOB_ID_BYTES],
                           duet_voice_blob_t *b)
{
    sqlite3_stmt *s;
    memset(b, 0, sizeof *b);
    duet_err_t err = duet_store_prepare(st, "SELECT " BLOB_COLS " FROM blobs WHERE id = ?1", &s);
    if (err != DUET_OK) {
        return err;
    }
    sqlite3_bind_blob(s, 1, id, DUET_BLOB_ID_BYTES, SQLITE_STATIC);
    return one_row(st, s, b);
}

duet_err_t duet_voice_load(duet_store_t *st, const uint8_t item_id[DUET_ITEM_ID_BYTES],
                           duet_voice_t *v, duet_voice_blob_t *b)
{
    duet_item_t it;
    duet_voice_blob_t row;
    memset(v, 0, sizeof *v);
    if (b != NULL) {
        memset(b, 0, sizeof *b);
    }
    duet_err_t err = duet_items_get(st, item_id, &it);
    if (err != DUET_OK) {
        return err;
    }
    if (it.kind != DUET_KIND_VOICE) {
        duet_item_clear(&it);
        return DUET_EINVAL;
    }
    err = duet_voice_decode(it.body, it.body_len, v);
    duet_item_clear(&it);
    if (err != DUET_OK) {
        return DUET_ECORRUPT;
    }
    err = duet_voice_blob(st, v->ref.id, &row);
    if (err == DUET_ENOENT) {
        err = DUET_ECORRUPT; /* every voice item in the store has its row */
    }
    if (err != DUET_OK) {
        duet_voice_dispose(v);
        return err;
    }
    if (b != NULL) {
        *b = row;
    }
    return DUET_OK;
}

duet_err_t duet_voice_blobs(duet_store_t *st, duet_voice_blob_t **out, size_t *n)
{
    sqlite3_stmt *s;
    duet_voice_blob_t *v = NULL;
    size_t count = 0, cap = 0;
    *out = NULL;
    *n = 0;
    duet_err_t err =
        duet_store_prepare(st, "SELECT " BLOB_COLS " FROM blobs ORDER BY n LIMIT ?1", &s);
    if (err != DUET_OK) {
        return err;
    }
    sqlite3_bind_int64(s, 1, DUET_ITEMS_LIST_MAX);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            duet_voice_blob_t *nv = realloc(v, ncap * sizeof *nv);
            if (nv == NULL) {
                err = DUET_ENOMEM;
                break;
            }
            v = nv;
            cap = ncap;
        }
        if ((err = from_row(s, &v[count])) != DUET_OK) {
            break;
        }
        count++;
    }
    if (err == DUET_OK && rc != SQLITE_DONE) {
        err = duet_store_rc(st, rc);
    }
    sqlite3_reset(s);
    if (err != DUET_OK) {
        free(v);
        return err;
    }
    *out = v;
    *n = count;
    return DUET_OK;
}

duet_err_t duet_voice_progress(duet_store_t *st, const duet_voice_blob_t *b, uint64_t *have,
                               uint64_t *fetched)
{
    char path[DUET_VOICE_PATH_MAX];
    struct stat sb;
    uint64_t h = 0, f = b->fetched;
    duet_err_t err = DUET_OK;
    if (b->state == DUET_VOICE_AVAILABLE) {
        h = duet_blob_sealed_size(b->size);
    } else {
        if ((err = duet_voice_path(st, b->id, ".part", path, sizeof path)) == DUET_OK &&
            stat(path, &sb) == 0) {
            h = (uint64_t)sb.st_size;
        }
        if (err == DUET_OK &&
            (err = duet_voice_path(st, b->id, ".rx", path, sizeof path)) == DUET_OK) {
            f = duet_voice_rx_read(path);
        }
    }
    if (have != NULL) {
        *have = h;
    }
    if (fetched != NULL) {
        *fetched = f;
    }
    return err;
}

/* ---- writing one --------------------------------------------------------------------- */

/* Check the file the user picked, before anything is sealed. */
static duet_err_t check_input(const char *path, duet_audio_info_t *info)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        return errno_err(errno);
    }
    if (!S_ISREG(sb.st_mode)) {
        return DUET_ENOTAUDIO;
    }
    if (sb.st_size == 0) {
        return DUET_EEMPTY;
    }
    if ((uint64_t)sb.st_size > (uint64_t)DUET_BLOB_MAX) {
        return DUET_ETOOBIG;
    }
    return duet_audio_detect(path, info);
}

/* Seal path into HOME/blobs/<hex id>; *ref gets id, key and size. */
static duet_err_t seal_into_home(duet_store_t *st, const char *path, duet_blob_ref_t *ref,
                                 char final[DUET_VOICE_PATH_MAX])
{
    char tmp[DUET_VOICE_PATH_MAX], dir[DUET_VOICE_PATH_MAX], hex[33];
    uint8_t r[16];
    duet_rng_t rng = duet_store_rng(st);
    duet_err_t err = duet_voice_mkdir(st);
    if (err == DUET_OK) {
        err = dir_path(st, dir, sizeof dir);
    }
    if (err != DUET_OK) {
        return err;
    }
    /* A name no other writer uses; the blob id is only known once it is sealed. */
    duet_rng_fill(&rng, r, sizeof r);
    sodium_bin2hex(hex, sizeof hex, r, sizeof r);
    int n = snprintf(tmp, sizeof tmp, "%s/sealing-%s", dir, hex);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        return DUET_ETOOBIG;
    }
    err = duet_blob_seal(path, tmp, rng, ref);
    if (err != DUET_OK) {
        return err;
    }
    err = duet_voice_path(st, ref->id, "", final, DUET_VOICE_PATH_MAX);
    if (err == DUET_OK && rename(tmp, final) != 0) {
        err = errno_err(errno);
    }
    if (err == DUET_OK) {
        err = sync_dir(st);
    }
    if (err != DUET_OK) {
        (void)unlink(tmp);
        (void)unlink(final);
        duet_blob_ref_dispose(ref);
    }
    return err;
}

duet_err_t duet_voice_add(duet_store_t *st, const char *path, const char *caption,
                          size_t caption_len, uint64_t now_ms, uint8_t item_id[DUET_ITEM_ID_BYTES],
                          duet_audio_info_t *info)
{
    duet_voice_t *v = NULL;
    duet_audio_info_t ai;
    char final[DUET_VOICE_PATH_MAX];
    uint8_t *body = NULL;
    size_t body_len = 0;
    bool sealed = false;
    memset(item_id, 0, DUET_ITEM_ID_BYTES);
    if (info != NULL) {
        memset(info, 0, sizeof *info);
    }
    if (caption_len > DUET_VOICE_CAPTION_MAX) {
        return DUET_ETOOBIG;
    }
    if (!duet_utf8_valid((const uint8_t *)caption, caption_len)) {
        return DUET_EUTF8;
    }
    duet_err_t err = check_input(path, &ai);
    if (err != DUET_OK) {
        return err;
    }
    v = sodium_malloc(sizeof *v); /* holds the key */
    if (v == NULL) {
        return DUET_ENOMEM;
    }
    memset(v, 0, sizeof *v);
    if ((err = seal_into_home(st, path, &v->ref, final)) != DUET_OK) {
        goto cleanup;
    }
    sealed = true;
    memcpy(v->ref.mime, ai.mime, sizeof v->ref.mime);
    v->ref.duration_ms = ai.duration_ms;
    memcpy(v->caption, caption, caption_len);
    v->caption_len = caption_len;
    if ((err = duet_voice_encode(v, &body, &body_len)) != DUET_OK) {
        goto cleanup;
    }
    if ((err = duet_store_begin(st)) != DUET_OK) {
        goto cleanup;
    }
    err = duet_outbox_queue(st, DUET_KIND_VOICE, body, body_len, now_ms, item_id);
    if (err == DUET_OK) {
        err = insert_blob(st, &v->ref, item_id, true);
    }
    if (err == DUET_OK) {
        err = duet_store_commit(st);
    }
    if (err != DUET_OK) {
        duet_store_rollback(st);
        memset(item_id, 0, DUET_ITEM_ID_BYTES);
    }
cleanup:
    if (err != DUET_OK && sealed) {
        (void)unlink(final);
    }
    if (err == DUET_OK && info != NULL) {
        *info = ai;
    }
    if (body != NULL) {
        sodium_memzero(body, body_len);
        free(body);
    }
    sodium_free(v);
    return err;
}

/* ---- saving -------------------------------------------------------------------------- */

/* A partner blob found damaged or missing here: back to partial, file and row, so the next
 * transfer resumes from its first bad chunk (the receiver's resume checks each one). */
static duet_err_t want_again(duet_store_t *st, const uint8_t id[DUET_BLOB_ID_BYTES])
{
    char final[DUET_VOICE_PATH_MAX], part[DUET_VOICE_PATH_MAX];
    duet_err_t err = duet_voice_path(st, id, "", final, sizeof final);
    if (err == DUET_OK) {
        err = duet_voice_path(st, id, ".part", part, sizeof part);
    }
    if (err != DUET_OK) {
        return err;
    }
    if (rename(final, part) != 0 && errno != ENOENT) {
        return errno_err(errno);
    }
    if ((err = duet_store_begin(st)) != DUET_OK) {
        return err;
    }
    err = set_state(st, id, DUET_VOICE_PARTIAL, 0);
    err = err == DUET_OK ? duet_store_commit(st) : err;
    if (err != DUET_OK) {
        duet_store_rollback(st);
    }
    return err;
}

duet_err_t duet_voice_save(duet_store_t *st, const uint8_t item_id[DUET_ITEM_ID_BYTES],
                           const char *out_path, bool *refetch)
{
    duet_voice_t *v;
    duet_voice_blob_t b;
    char path[DUET_VOICE_PATH_MAX];
    if (refetch != NULL) {
        *refetch = false;
    }
    v = sodium_malloc(sizeof *v);
    if (v == NULL) {
        return DUET_ENOMEM;
    }
    duet_err_t err = duet_voice_load(st, item_id, v, &b);
    if (err == DUET_OK && b.state != DUET_VOICE_AVAILABLE) {
        err = DUET_ENOTHERE;
    }
    if (err == DUET_OK) {
        err = duet_voice_path(st, b.id, "", path, sizeof path);
    }
    if (err == DUET_OK && access(path, F_OK) != 0 && errno == ENOENT) {
        /* Gone from this device: the partner's comes again, mine is lost here. */
        err = b.mine ? DUET_ENOENT : DUET_ENOTHERE;
        if (!b.mine && want_again(st, b.id) == DUET_OK && refetch != NULL) {
            *refetch = true;
        }
    } else if (err == DUET_OK) {
        err = duet_blob_open(path, &v->ref, out_path);
        if (err == DUET_EBLOB && !b.mine && want_again(st, b.id) == DUET_OK && refetch != NULL) {
            *refetch = true;
        }
    }
    duet_voice_dispose(v);
    sodium_free(v);
    return err;
}

/* ---- taking up a partner blob for receiving ------------------------------------------ */

/* Lock and read the .rx counter: DUET_EAGAIN when another link holds it. */
static duet_err_t rx_lock(duet_store_t *st, const uint8_t id[DUET_BLOB_ID_BYTES],
                          duet_voice_rx_t *rx)
{
    char path[DUET_VOICE_PATH_MAX];
    duet_err_t err = duet_voice_path(st, id, ".rx", path, sizeof path);
    if (err != DUET_OK) {
        return err;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        return errno_err(errno);
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        err = errno == EWOULDBLOCK ? DUET_EAGAIN : DUET_EIO;
        close(fd);
        return err;
    }
    rx->fd = fd;
    rx->count = duet_voice_rx_read(path);
    return DUET_OK;
}

duet_err_t duet_voice_rx_open(duet_store_t *st, const duet_voice_blob_t *row, duet_voice_rx_t *rx,
                              bool *ready)
{
    char final[DUET_VOICE_PATH_MAX], part[DUET_VOICE_PATH_MAX];
    uint64_t next = 0;
    *ready = false;
    memset(rx, 0, sizeof *rx);
    rx->fd = -1;
    duet_voice_t *v = sodium_malloc(sizeof *v); /* holds the key */
    if (v == NULL) {
        return DUET_ENOMEM;
    }
    duet_err_t err = duet_voice_load(st, row->item, v, NULL);
    if (err == DUET_OK && sodium_memcmp(v->ref.id, row->id, DUET_BLOB_ID_BYTES) != 0) {
        err = DUET_ECORRUPT;
    }
    if (err == DUET_ENOENT || err == DUET_EINVAL) {
        err = DUET_ECORRUPT;
    }
    if (err == DUET_OK) {
        err = duet_voice_mkdir(st);
    }
    if (err == DUET_OK) {
        err = duet_voice_path(st, row->id, "", final, sizeof final);
    }
    if (err == DUET_OK) {
        err = duet_voice_path(st, row->id, ".part", part, sizeof part);
    }
    if (err == DUET_OK) {
        err = rx_lock(st, row->id, rx);
    }
    if (err != DUET_OK) {
        goto cleanup;
    }
    rx->row = *row;
    if (access(final, F_OK) == 0) {
        if (duet_blob_verify(final, &v->ref) == DUET_OK) {
            *ready = true;
            goto cleanup;
        }
        /* Not the blob: check it chunk by chunk like any partial file. */
        if (rename(final, part) != 0) {
            err = errno_err(errno);
            goto cleanup;
        }
    }
    err = duet_blob_recv_open(&rx->recv, &v->ref, part, final, &next);
    if (err == DUET_EINVAL) {
        err = DUET_ECORRUPT; /* the partial path is not a regular file: leave it alone */
    }
    if (err == DUET_OK && duet_blob_recv_complete(rx->recv)) {
        err = duet_blob_recv_finish(rx->recv);
        if (err == DUET_OK) {
            duet_blob_recv_free(rx->recv);
            rx->recv = NULL;
            *ready = true;
        } else if (err == DUET_EBLOB) {
            err = DUET_OK; /* every unit good, yet not this blob: finish emptied it */
        }
    }
cleanup:
    if (err != DUET_OK) {
        duet_voice_rx_close(rx);
    }
    duet_voice_dispose(v);
    sodium_free(v);
    return err;
}

duet_err_t duet_voice_rx_count(duet_voice_rx_t *rx, uint64_t n)
{
    uint8_t b[8];
    rx->count += n;
    for (int i = 0; i < 8; i++) {
        b[i] = (uint8_t)(rx->count >> (8 * i));
    }
    return pwrite(rx->fd, b, sizeof b, 0) == (ssize_t)sizeof b ? DUET_OK : DUET_EIO;
}

void duet_voice_rx_close(duet_voice_rx_t *rx)
{
    duet_blob_recv_free(rx->recv); /* the partial file stays */
    if (rx->fd >= 0) {
        close(rx->fd); /* and releases the lock */
    }
    memset(rx, 0, sizeof *rx);
    rx->fd = -1;
}

/* ---- the relay path ------------------------------------------------------------------ */

duet_err_t duet_voice_next_to_relay(duet_store_t *st, uint64_t after, duet_voice_blob_t *b)
{
    sqlite3_stmt *s;
    memset(b, 0, sizeof *b);
    /* A blob's unit count is ceil(size / 65536) (blob.h: one unit per chunk). */
    duet_err_t err = duet_store_prepare(
        st,
        "SELECT b.n, b.id, b.item, b.mine, b.state, b.size, b.fetched, b.relayed FROM blobs b "
        "WHERE b.mine = 1 AND b.state = 1 AND b.n > ?1 AND "
        "b.relayed < (b.size + 65535) / 65536 AND b.held = 0 ORDER BY b.n LIMIT 1",
        &s);
    if (err != DUET_OK) {
        return err;
    }
    sqlite3_bind_int64(s, 1, (sqlite3_int64)after);
    return one_row(st, s, b);
}

duet_err_t duet_voice_set_held(duet_store_t *st, const uint8_t item[DUET_ITEM_ID_BYTES])
{
    sqlite3_stmt *s;
    duet_err_t err =
        duet_store_prepare(st, "UPDATE blobs SET held = 1 WHERE item = ?1 AND mine = 1", &s);
    if (err != DUET_OK) {
        return err;
    }
    sqlite3_bind_blob(s, 1, item, DUET_ITEM_ID_BYTES, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? DUET_OK : duet_store_rc(st, rc);
}

duet_err_t duet_voice_set_relayed(duet_store_t *st, const uint8_t id[DUET_BLOB_ID_BYTES],
                                  uint64_t units)
{
    sqlite3_stmt *s;
    duet_err_t err =
        duet_store_prepare(st, "UPDATE blobs SET relayed = ?2 WHERE id = ?1 AND mine = 1", &s);
    if (err != DUET_OK) {
        return err;
    }
    sqlite3_bind_blob(s, 1, id, DUET_BLOB_ID_BYTES, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)units);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? DUET_OK : duet_store_rc(st, rc);
}
