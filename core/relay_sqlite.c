/* see relay_sqlite.h */
#include "relay_sqlite.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <sqlite3.h>

#include "store.h"

#define NP_COUNT 10000u /* nameplates 1..9999; index 0 unused */

enum { NP_FREE = 0, NP_ALLOCATED, NP_CLAIMED };

/* The prepared statements, by index. */
enum {
    S_MB_FIND,
    S_MB_INSERT,
    S_MB_UPDATE,
    S_MB_DEC,
    S_OBJ_FIND,
    S_OBJ_INSERT,
    S_OBJ_REPLACE,
    S_OBJ_DELETE,
    S_OBJ_TOMBSTONE,
    S_LIST_ANY,
    S_LIST_CLASS,
    S_GET,
    S_EXPIRED,
    S_MB_EXPIRED_OWN,
    S_MB_PURGE,
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_COUNT
};

static const char *const sql_text[S_COUNT] = {
    [S_MB_FIND] = "SELECT id, last_cursor, items, bytes, touched FROM mailboxes WHERE mbox = ?1",
    [S_MB_INSERT] = "INSERT INTO mailboxes (mbox, last_cursor, items, bytes, touched) "
                    "VALUES (?1, 0, 0, 0, ?2)",
    [S_MB_UPDATE] = "UPDATE mailboxes SET last_cursor = ?2, items = ?3, bytes = ?4, "
                    "touched = ?5 WHERE id = ?1",
    [S_MB_DEC] = "UPDATE mailboxes SET items = items - 1, bytes = bytes - ?2 WHERE id = ?1",
    [S_OBJ_FIND] = "SELECT id, cursor, cls, len FROM objects WHERE mb = ?1 AND oid = ?2",
    [S_OBJ_INSERT] = "INSERT OR IGNORE INTO objects (mb, cursor, cls, oid, len, expires, data) "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [S_OBJ_REPLACE] = "UPDATE objects SET cursor = ?2, len = ?3, expires = ?4, data = ?5, "
                      "cls = ?6 WHERE id = ?1",
    [S_OBJ_DELETE] = "DELETE FROM objects WHERE id = ?1",
    /* A tombstone keeps len (RETURNING gives the new values; this one is not changed). */
    [S_OBJ_TOMBSTONE] = "UPDATE objects SET cls = 0, data = x'', expires = min(expires, ?3) "
                        "WHERE mb = ?1 AND oid = ?2 AND cls > 0 RETURNING len",
    [S_LIST_ANY] = "SELECT cursor, cls, oid, len FROM objects WHERE mb = ?1 AND cursor > ?2 "
                   "AND expires > ?3 AND cls > 0 ORDER BY cursor LIMIT ?4",
    [S_LIST_CLASS] = "SELECT cursor, cls, oid, len FROM objects WHERE mb = ?1 AND cursor > ?2 "
                     "AND expires > ?3 AND cls > 0 AND cls = ?5 ORDER BY cursor LIMIT ?4",
    [S_GET] = "SELECT cursor, cls, len, data FROM objects WHERE mb = ?1 AND oid = ?2 "
              "AND expires > ?3 AND cls > 0",
    [S_EXPIRED] = "SELECT id, mb, len, cls FROM objects WHERE expires <= ?1 LIMIT ?2",
    [S_MB_EXPIRED_OWN] = "SELECT id, len, cls FROM objects WHERE mb = ?1 AND expires <= ?2",
    [S_MB_PURGE] = "DELETE FROM mailboxes WHERE items = 0 AND touched <= ?1",
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
};

static const char schema[] = "CREATE TABLE IF NOT EXISTS mailboxes ("
                             " id INTEGER PRIMARY KEY,"
                             " mbox BLOB NOT NULL UNIQUE,"
                             " last_cursor INTEGER NOT NULL,"
                             " items INTEGER NOT NULL,"
                             " bytes INTEGER NOT NULL,"
                             " touched INTEGER NOT NULL);"
                             "CREATE TABLE IF NOT EXISTS objects ("
                             " id INTEGER PRIMARY KEY,"
                             " mb INTEGER NOT NULL,"
                             " cursor INTEGER NOT NULL,"
                             " cls INTEGER NOT NULL,"
                             " oid BLOB NOT NULL,"
                             " len INTEGER NOT NULL,"
                             " expires INTEGER NOT NULL,"
                             " data BLOB NOT NULL,"
                             " UNIQUE (mb, oid));"
                             /* live objects only: a LIST never walks the tombstones */
                             "CREATE INDEX IF NOT EXISTS objects_live ON objects (mb, cursor) "
                             "WHERE cls > 0;"
                             "CREATE INDEX IF NOT EXISTS objects_expires ON objects (expires);";

#define MB_CACHE 256u /* mailboxes whose rows are kept in memory */

typedef struct mbent {
    bool valid, dirty;
    uint8_t mbox[32];
    int64_t id;
    uint64_t last_cursor, items, bytes, touched;
} mbent_t;

struct duet_relay_sqlite {
    sqlite3 *db;
    sqlite3_stmt *st[S_COUNT];
    bool in_batch;
    duet_err_t broken; /* SQLite rolled the open batch back by itself */
    mbent_t mbc[MB_CACHE];
    uint64_t bytes;      /* data bytes in the store, committed */
    int64_t batch_bytes; /* change made by the open batch */
    uint8_t *getbuf;     /* get's result */
    size_t getbuf_cap;
    uint8_t np_state[NP_COUNT];
    uint64_t np_expires[NP_COUNT];
};

static duet_err_t map_rc(duet_relay_sqlite_t *s, int rc)
{
    duet_err_t err = duet_store_err(rc);
    if (err == DUET_EIO || err == DUET_EDB) {
        int e = s->db != NULL ? sqlite3_system_errno(s->db) : 0;
        if (e == ENOSPC || e == EDQUOT) {
            return DUET_ENOSPC;
        }
        if (e == EROFS) {
            return DUET_EREADONLY;
        }
        if (e == EACCES) {
            return DUET_EPERM;
        }
        return DUET_EIO;
    }
    return err;
}

static sqlite3_stmt *stmt(duet_relay_sqlite_t *s, int i)
{
    sqlite3_stmt *st = s->st[i];
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return st;
}

/* Step a statement that returns no row; reset it. */
static duet_err_t run(duet_relay_sqlite_t *s, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? DUET_OK : map_rc(s, rc);
}

static int64_t i64(uint64_t v)
{
    return v > INT64_MAX ? INT64_MAX : (int64_t)v;
}

static uint64_t col_u64(sqlite3_stmt *st, int i)
{
    int64_t v = sqlite3_column_int64(st, i);
    return v < 0 ? 0 : (uint64_t)v;
}

/* ---- open and close -------------------------------------------------------------------- */

static duet_err_t exec(duet_relay_sqlite_t *s, const char *sql)
{
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? DUET_OK : map_rc(s, rc);
}

static duet_err_t setup(duet_relay_sqlite_t *s)
{
    sqlite3_stmt *st = NULL;
    duet_err_t err;
    int rc;

    sqlite3_busy_timeout(s->db, DUET_RELAY_SQLITE_BUSY_MS);
    sqlite3_extended_result_codes(s->db, 1);
    /* Exclusive locking before the first access: WAL then needs no shared memory, and the
     * lock taken below keeps a second relay out of this folder. */
    if ((err = exec(s, "PRAGMA locking_mode = EXCLUSIVE")) != DUET_OK) {
        return err;
    }
    rc = sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL);
    if (rc != SQLITE_OK) {
        return map_rc(s, rc);
    }
    rc = sqlite3_step(st);
    int version = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW) {
        return map_rc(s, rc);
    }
    if (version > DUET_RELAY_SQLITE_SCHEMA) {
        return DUET_ESCHEMANEW;
    }
    if ((err = exec(s, "PRAGMA journal_mode = WAL")) != DUET_OK ||
        (err = exec(s, "PRAGMA synchronous = FULL")) != DUET_OK ||
        (err = exec(s, "PRAGMA secure_delete = FAST")) != DUET_OK ||
        (err = exec(s, "PRAGMA journal_size_limit = 16777216")) != DUET_OK ||
        (err = exec(s, "PRAGMA wal_autocheckpoint = 8192")) != DUET_OK ||
        (err = exec(s, "PRAGMA cache_size = -" DUET_RELAY_SQLITE_CACHE_KIB)) != DUET_OK ||
        (err = exec(s, "PRAGMA mmap_size = " DUET_RELAY_SQLITE_MMAP)) != DUET_OK) {
        return err;
    }
    if ((err = exec(s, "BEGIN IMMEDIATE")) != DUET_OK) {
        return err;
    }
    err = exec(s, schema);
    if (err == DUET_OK && version < DUET_RELAY_SQLITE_SCHEMA) {
        err = exec(s, "PRAGMA user_version = 1");
    }
    if (err == DUET_OK) {
        err = exec(s, "COMMIT");
    }
    if (err != DUET_OK) {
        (void)sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return err;
    }
    for (int i = 0; i < S_COUNT; i++) {
        rc = sqlite3_prepare_v3(s->db, sql_text[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL);
        if (rc != SQLITE_OK) {
            return map_rc(s, rc);
        }
    }
    rc = sqlite3_prepare_v2(s->db, "SELECT coalesce(sum(len), 0) FROM objects", -1, &st, NULL);
    if (rc != SQLITE_OK) {
        return map_rc(s, rc);
    }
    rc = sqlite3_step(st);
    s->bytes = rc == SQLITE_ROW ? col_u64(st, 0) : 0;
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? DUET_OK : map_rc(s, rc);
}

duet_err_t duet_relay_sqlite_open(const char *path, duet_relay_sqlite_t **out)
{
    *out = NULL;
    duet_relay_sqlite_t *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return DUET_ENOMEM;
    }
    int rc = sqlite3_open_v2(
        path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    duet_err_t err = rc == SQLITE_OK ? setup(s) : map_rc(s, rc);
    if (err == DUET_EDB) {
        err = DUET_ECORRUPT; /* not a database, or not ours */
    }
    if (err != DUET_OK) {
        duet_relay_sqlite_close(s);
        return err;
    }
    *out = s;
    return DUET_OK;
}

void duet_relay_sqlite_close(duet_relay_sqlite_t *s)
{
    if (s == NULL) {
        return;
    }
    if (s->in_batch) {
        (void)sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    }
    for (int i = 0; i < S_COUNT; i++) {
        sqlite3_finalize(s->st[i]);
    }
    sqlite3_close(s->db);
    free(s->getbuf);
    free(s);
}

/* ---- the mailbox cache -------------------------------------------------------------------
 *
 * Every operation names a mailbox; reading its row and writing its counters back for each
 * would cost two statements per object. Mailboxes in use stay in a small direct-mapped cache
 * instead (the ids are hashes, so their first bytes spread them); counters changed by a batch
 * are written back once, just before its COMMIT. The cache is the truth only inside this
 * process, which holds the database's exclusive lock; a rollback or a sweep empties it. */

static mbent_t *mb_slot(duet_relay_sqlite_t *s, const uint8_t mbox[32])
{
    return &s->mbc[((size_t)mbox[0] << 8 | mbox[1]) % MB_CACHE];
}

static duet_err_t mb_write_back(duet_relay_sqlite_t *s, mbent_t *e)
{
    if (!e->dirty) {
        return DUET_OK;
    }
    sqlite3_stmt *st = stmt(s, S_MB_UPDATE);
    sqlite3_bind_int64(st, 1, e->id);
    sqlite3_bind_int64(st, 2, i64(e->last_cursor));
    sqlite3_bind_int64(st, 3, i64(e->items));
    sqlite3_bind_int64(st, 4, i64(e->bytes));
    sqlite3_bind_int64(st, 5, i64(e->touched));
    duet_err_t err = run(s, st);
    if (err == DUET_OK) {
        e->dirty = false;
    }
    return err;
}

static void mb_forget_all(duet_relay_sqlite_t *s)
{
    memset(s->mbc, 0, sizeof s->mbc);
}

/*
 * The cache entry of mbox, loaded from the database if needed; with create (inside a batch)
 * a mailbox that does not exist is made. *e is NULL when it does not exist (and create is
 * false).
 */
static duet_err_t mb_get(duet_relay_sqlite_t *s, const uint8_t mbox[32], bool create,
                         uint64_t now_ms, mbent_t **e)
{
    mbent_t *slot = mb_slot(s, mbox);
    *e = NULL;
    if (slot->valid && memcmp(slot->mbox, mbox, 32) == 0) { /* public ids: memcmp is fine */
        *e = slot;
        return DUET_OK;
    }
    duet_err_t err = mb_write_back(s, slot); /* evicted: its counters go to the table now */
    if (err != DUET_OK) {
        return err;
    }
    slot->valid = false;
    sqlite3_stmt *st = stmt(s, S_MB_FIND);
    sqlite3_bind_blob(st, 1, mbox, 32, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        slot->id = sqlite3_column_int64(st, 0);
        slot->last_cursor = col_u64(st, 1);
        slot->items = col_u64(st, 2);
        slot->bytes = col_u64(st, 3);
        slot->touched = col_u64(st, 4);
        rc = SQLITE_DONE;
    } else if (rc == SQLITE_DONE) {
        sqlite3_reset(st);
        if (!create) {
            return DUET_OK;
        }
        st = stmt(s, S_MB_INSERT);
        sqlite3_bind_blob(st, 1, mbox, 32, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, i64(now_ms));
        if ((err = run(s, st)) != DUET_OK) {
            return err;
        }
        slot->id = sqlite3_last_insert_rowid(s->db);
        slot->last_cursor = slot->items = slot->bytes = 0;
        slot->touched = now_ms;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        return map_rc(s, rc);
    }
    memcpy(slot->mbox, mbox, 32);
    slot->valid = true;
    slot->dirty = false;
    *e = slot;
    return DUET_OK;
}

/* ---- batches --------------------------------------------------------------------------- */

static duet_err_t st_begin(void *ctx)
{
    duet_relay_sqlite_t *s = ctx;
    if (s->in_batch) {
        abort();
    }
    duet_err_t err = run(s, stmt(s, S_BEGIN));
    if (err == DUET_OK) {
        s->in_batch = true;
        s->broken = DUET_OK;
        s->batch_bytes = 0;
    }
    return err;
}

static void st_rollback(void *ctx)
{
    duet_relay_sqlite_t *s = ctx;
    if (!s->in_batch) {
        return;
    }
    if (sqlite3_get_autocommit(s->db) == 0) {
        (void)run(s, stmt(s, S_ROLLBACK));
    }
    mb_forget_all(s); /* its counters may hold the batch's changes */
    s->in_batch = false;
    s->batch_bytes = 0;
}

static duet_err_t st_commit(void *ctx)
{
    duet_relay_sqlite_t *s = ctx;
    duet_err_t err = DUET_OK;
    if (!s->in_batch) {
        abort();
    }
    if (s->broken != DUET_OK) {
        err = s->broken;
    }
    for (size_t i = 0; i < MB_CACHE && err == DUET_OK; i++) {
        err = mb_write_back(s, &s->mbc[i]);
    }
    if (err == DUET_OK) {
        err = run(s, stmt(s, S_COMMIT));
    }
    if (err != DUET_OK) {
        st_rollback(s); /* SQLite may have rolled back already; make sure */
        return err;
    }
    s->bytes = (uint64_t)((int64_t)s->bytes + s->batch_bytes);
    s->batch_bytes = 0;
    s->in_batch = false;
    return DUET_OK;
}

/*
 * A statement failed inside a batch. Some failures (a full disk, I/O) make SQLite roll the
 * whole transaction back at once; then nothing more may be written in "this batch" (it would
 * commit on its own, outside any transaction), and its COMMIT must fail.
 */
static duet_err_t batch_failed(duet_relay_sqlite_t *s, duet_err_t err)
{
    if (s->in_batch && sqlite3_get_autocommit(s->db) != 0 && s->broken == DUET_OK) {
        s->broken = err;
    }
    return err;
}

/* ---- objects --------------------------------------------------------------------------- */

typedef struct object {
    int64_t id;
    uint64_t cursor, len;
    uint8_t cls;
} object_t;

static duet_err_t obj_find(duet_relay_sqlite_t *s, int64_t mb, const uint8_t *oid, size_t oid_len,
                           object_t *o, bool *found)
{
    sqlite3_stmt *st = stmt(s, S_OBJ_FIND);
    memset(o, 0, sizeof *o);
    *found = false;
    sqlite3_bind_int64(st, 1, mb);
    sqlite3_bind_blob(st, 2, oid, (int)oid_len, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        o->id = sqlite3_column_int64(st, 0);
        o->cursor = col_u64(st, 1);
        o->cls = (uint8_t)sqlite3_column_int(st, 2);
        o->len = col_u64(st, 3);
        *found = true;
        rc = SQLITE_DONE;
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? DUET_OK : map_rc(s, rc);
}

/* Drop a mailbox's expired objects (before refusing a PUT for quota). */
static duet_err_t mb_drop_expired(duet_relay_sqlite_t *s, mbent_t *mb, uint64_t now_ms)
{
    sqlite3_stmt *st = stmt(s, S_MB_EXPIRED_OWN);
    int64_t ids[64];
    uint64_t lens[64];
    bool live[64];
    size_t n = 0;
    int rc;
    sqlite3_bind_int64(st, 1, mb->id);
    sqlite3_bind_int64(st, 2, i64(now_ms));
    while (n < 64 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        ids[n] = sqlite3_column_int64(st, 0);
        lens[n] = col_u64(st, 1);
        live[n++] = sqlite3_column_int(st, 2) != 0;
    }
    sqlite3_reset(st);
    for (size_t i = 0; i < n; i++) {
        sqlite3_stmt *d = stmt(s, S_OBJ_DELETE);
        sqlite3_bind_int64(d, 1, ids[i]);
        duet_err_t err = run(s, d);
        if (err != DUET_OK) {
            return err;
        }
        if (live[i]) { /* a tombstone was counted in nothing */
            mb->items--;
            mb->bytes -= lens[i];
            mb->dirty = true;
            s->batch_bytes -= (int64_t)lens[i];
        }
    }
    return DUET_OK;
}

static bool over_quota(const duet_relay_sqlite_t *s, const mbent_t *mb, uint64_t add_items,
                       uint64_t add_bytes, uint64_t remove_bytes, const duet_relay_limits_t *lim)
{
    uint64_t store = (uint64_t)((int64_t)s->bytes + s->batch_bytes);
    if (lim->max_items && mb->items + add_items > lim->max_items) {
        return true;
    }
    if (lim->max_bytes && mb->bytes - remove_bytes + add_bytes > lim->max_bytes) {
        return true;
    }
    return lim->max_store_bytes && add_bytes > remove_bytes &&
           store + add_bytes - remove_bytes > lim->max_store_bytes;
}

/* The existing object (cls, oid), for a PUT that must know what it would replace. */
static duet_err_t put_lookup(duet_relay_sqlite_t *s, mbent_t *mb, const uint8_t *oid,
                             size_t oid_len, object_t *o, bool *have)
{
    return obj_find(s, mb->id, oid, oid_len, o, have);
}

static duet_err_t st_put(void *ctx, const uint8_t mbox[32], uint8_t cls, const uint8_t *oid,
                         size_t oid_len, const uint8_t *data, size_t len, uint64_t now_ms,
                         const duet_relay_limits_t *lim, uint64_t *cursor, bool *dup)
{
    duet_relay_sqlite_t *s = ctx;
    mbent_t *mb;
    object_t o = {0};
    bool have_obj = false;
    duet_err_t err;

    *cursor = 0;
    *dup = false;
    if (!s->in_batch) {
        abort();
    }
    if (s->broken != DUET_OK) {
        return s->broken;
    }
    if ((err = mb_get(s, mbox, true, now_ms, &mb)) != DUET_OK) {
        return batch_failed(s, err);
    }
    /* Write-once objects need no look-up first unless the mailbox is full: the INSERT below
     * ignores a duplicate, and a look-up then finds its cursor. A state object must know
     * what it replaces. */
    bool look = cls == DUET_RELAY_STATE || over_quota(s, mb, 1, len, 0, lim);
    if (look && (err = put_lookup(s, mb, oid, oid_len, &o, &have_obj)) != DUET_OK) {
        return batch_failed(s, err);
    }
    /* A state object replaces its predecessor (or revives its tombstone); anything else is
     * write-once, and a tombstone (an object the reader collected) still answers "already
     * here": an upload repeated after a lost acknowledgement does not deliver twice. */
    bool replace = have_obj && cls == DUET_RELAY_STATE;
    if (have_obj && !replace) {
        *cursor = o.cursor;
        *dup = true;
        return DUET_OK;
    }
    bool was_live = have_obj && o.cls != 0;
    uint64_t add_items = was_live ? 0 : 1, remove = was_live ? o.len : 0;
    if (over_quota(s, mb, add_items, len, remove, lim)) {
        if ((err = mb_drop_expired(s, mb, now_ms)) != DUET_OK) {
            return batch_failed(s, err);
        }
        if (replace && (err = put_lookup(s, mb, oid, oid_len, &o, &have_obj)) != DUET_OK) {
            return batch_failed(s, err); /* the replaced object may have expired and gone */
        }
        replace = have_obj && cls == DUET_RELAY_STATE;
        was_live = have_obj && o.cls != 0;
        add_items = was_live ? 0 : 1;
        remove = was_live ? o.len : 0;
        if (over_quota(s, mb, add_items, len, remove, lim)) {
            return DUET_EQUOTA;
        }
    }
    uint64_t next = mb->last_cursor + 1;
    uint64_t expires = now_ms + lim->ttl_ms < now_ms ? UINT64_MAX : now_ms + lim->ttl_ms;
    sqlite3_stmt *st;
    if (replace) {
        st = stmt(s, S_OBJ_REPLACE);
        sqlite3_bind_int64(st, 1, o.id);
        sqlite3_bind_int64(st, 2, i64(next));
        sqlite3_bind_int64(st, 3, i64(len));
        sqlite3_bind_int64(st, 4, i64(expires));
        sqlite3_bind_blob(st, 5, data, (int)len, SQLITE_STATIC);
        sqlite3_bind_int(st, 6, cls);
    } else {
        st = stmt(s, S_OBJ_INSERT);
        sqlite3_bind_int64(st, 1, mb->id);
        sqlite3_bind_int64(st, 2, i64(next));
        sqlite3_bind_int(st, 3, cls);
        sqlite3_bind_blob(st, 4, oid, (int)oid_len, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, i64(len));
        sqlite3_bind_int64(st, 6, i64(expires));
        sqlite3_bind_blob(st, 7, data, (int)len, SQLITE_STATIC);
    }
    if ((err = run(s, st)) != DUET_OK) {
        return batch_failed(s, err);
    }
    if (!replace && sqlite3_changes(s->db) == 0) {
        /* INSERT OR IGNORE met the object (or its tombstone): a duplicate */
        if ((err = put_lookup(s, mb, oid, oid_len, &o, &have_obj)) != DUET_OK) {
            return batch_failed(s, err);
        }
        *cursor = o.cursor;
        *dup = true;
        return DUET_OK;
    }
    mb->last_cursor = next;
    mb->items += add_items;
    mb->bytes = mb->bytes - remove + len;
    mb->touched = now_ms;
    mb->dirty = true;
    s->batch_bytes += (int64_t)len - (int64_t)remove;
    *cursor = next;
    return DUET_OK;
}

static duet_err_t st_list(void *ctx, const uint8_t mbox[32], uint8_t cls, uint64_t after,
                          uint64_t now_ms, duet_relay_entry_t *out, size_t cap, size_t *n,
                          bool *more)
{
    duet_relay_sqlite_t *s = ctx;
    mbent_t *mb;
    *n = 0;
    *more = false;
    duet_err_t err = mb_get(s, mbox, false, now_ms, &mb);
    if (err != DUET_OK || mb == NULL) {
        return err;
    }
    sqlite3_stmt *st = stmt(s, cls ? S_LIST_CLASS : S_LIST_ANY);
    sqlite3_bind_int64(st, 1, mb->id);
    sqlite3_bind_int64(st, 2, i64(after));
    sqlite3_bind_int64(st, 3, i64(now_ms));
    sqlite3_bind_int64(st, 4, (int64_t)cap + 1);
    if (cls) {
        sqlite3_bind_int(st, 5, cls);
    }
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            *more = true;
            break;
        }
        duet_relay_entry_t *e = &out[*n];
        int oid_len = sqlite3_column_bytes(st, 2);
        memset(e, 0, sizeof *e);
        e->cursor = col_u64(st, 0);
        e->cls = (uint8_t)sqlite3_column_int(st, 1);
        if (oid_len < (int)DUET_RELAY_OID_MIN || oid_len > (int)DUET_RELAY_OID_MAX) {
            sqlite3_reset(st);
            *n = 0;
            return DUET_ECORRUPT;
        }
        memcpy(e->oid, sqlite3_column_blob(st, 2), (size_t)oid_len);
        e->oid_len = (uint8_t)oid_len;
        e->len = (uint32_t)col_u64(st, 3);
        (*n)++;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        *n = 0;
        *more = false;
        return map_rc(s, rc);
    }
    return DUET_OK;
}

static duet_err_t st_get(void *ctx, const uint8_t mbox[32], const uint8_t *oid, size_t oid_len,
                         uint64_t now_ms, duet_relay_entry_t *meta, const uint8_t **data)
{
    duet_relay_sqlite_t *s = ctx;
    mbent_t *mb;
    memset(meta, 0, sizeof *meta);
    *data = NULL;
    duet_err_t err = mb_get(s, mbox, false, now_ms, &mb);
    if (err != DUET_OK) {
        return err;
    }
    if (mb == NULL) {
        return DUET_ENOENT;
    }
    sqlite3_stmt *st = stmt(s, S_GET);
    sqlite3_bind_int64(st, 1, mb->id);
    sqlite3_bind_blob(st, 2, oid, (int)oid_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, i64(now_ms));
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(st);
        return rc == SQLITE_DONE ? DUET_ENOENT : map_rc(s, rc);
    }
    size_t len = (size_t)sqlite3_column_bytes(st, 3);
    const void *blob = sqlite3_column_blob(st, 3);
    if (len == 0 || len > DUET_RELAY_OBJECT_MAX || blob == NULL) {
        sqlite3_reset(st);
        return DUET_ECORRUPT;
    }
    if (s->getbuf == NULL) {
        s->getbuf = malloc(DUET_RELAY_OBJECT_MAX);
        if (s->getbuf == NULL) {
            sqlite3_reset(st);
            return DUET_ENOMEM;
        }
    }
    memcpy(s->getbuf, blob, len);
    meta->cursor = col_u64(st, 0);
    meta->cls = (uint8_t)sqlite3_column_int(st, 1);
    meta->oid_len = (uint8_t)oid_len;
    memcpy(meta->oid, oid, oid_len);
    meta->len = (uint32_t)len;
    sqlite3_reset(st);
    *data = s->getbuf;
    return DUET_OK;
}

static duet_err_t st_del(void *ctx, const uint8_t mbox[32], const uint8_t *oid, size_t oid_len,
                         uint64_t keep_until_ms, bool *deleted)
{
    duet_relay_sqlite_t *s = ctx;
    mbent_t *mb;
    *deleted = false;
    if (!s->in_batch) {
        abort();
    }
    if (s->broken != DUET_OK) {
        return s->broken;
    }
    duet_err_t err = mb_get(s, mbox, false, 0, &mb);
    if (err != DUET_OK || mb == NULL) {
        return batch_failed(s, err);
    }
    /* The data goes (secure_delete overwrites it); the id stays as a tombstone until
     * keep_until_ms (or the object's own expiry), so that a PUT repeated after a lost
     * acknowledgement is a duplicate. */
    sqlite3_stmt *st = stmt(s, S_OBJ_TOMBSTONE);
    sqlite3_bind_int64(st, 1, mb->id);
    sqlite3_bind_blob(st, 2, oid, (int)oid_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, i64(keep_until_ms));
    int rc = sqlite3_step(st);
    uint64_t len = 0;
    bool found = rc == SQLITE_ROW;
    if (found) {
        len = col_u64(st, 0);
        rc = sqlite3_step(st);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        return batch_failed(s, map_rc(s, rc));
    }
    if (found) {
        /* A delete does not refresh "touched": only PUTs keep an empty mailbox alive. */
        mb->items--;
        mb->bytes -= len;
        mb->dirty = true;
        s->batch_bytes -= (int64_t)len;
        *deleted = true;
    }
    return DUET_OK;
}

/* ---- the sweep --------------------------------------------------------------------------- */

#define SWEEP_CHUNK 256u

/* Remove one expired object found by the sweep and fix its mailbox's counters. */
static duet_err_t sweep_one(duet_relay_sqlite_t *s, int64_t id, int64_t mbid, uint64_t len,
                            bool live)
{
    sqlite3_stmt *st = stmt(s, S_OBJ_DELETE);
    sqlite3_bind_int64(st, 1, id);
    duet_err_t err = run(s, st);
    if (err != DUET_OK || !live) {
        return err;
    }
    st = stmt(s, S_MB_DEC);
    sqlite3_bind_int64(st, 1, mbid);
    sqlite3_bind_int64(st, 2, i64(len));
    if ((err = run(s, st)) == DUET_OK) {
        s->batch_bytes -= (int64_t)len;
    }
    return err;
}

static duet_err_t sweep(duet_relay_sqlite_t *s, uint64_t now_ms, uint64_t ttl_ms, size_t max,
                        uint64_t *removed)
{
    int64_t ids[SWEEP_CHUNK], mbs[SWEEP_CHUNK];
    uint64_t lens[SWEEP_CHUNK];
    bool live[SWEEP_CHUNK];
    duet_err_t err = DUET_OK;
    while (*removed < max && err == DUET_OK) {
        size_t want = max - *removed < SWEEP_CHUNK ? max - *removed : SWEEP_CHUNK, n = 0;
        sqlite3_stmt *st = stmt(s, S_EXPIRED);
        int rc;
        sqlite3_bind_int64(st, 1, i64(now_ms));
        sqlite3_bind_int64(st, 2, (int64_t)want);
        while (n < want && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            ids[n] = sqlite3_column_int64(st, 0);
            mbs[n] = sqlite3_column_int64(st, 1);
            lens[n] = col_u64(st, 2);
            live[n++] = sqlite3_column_int(st, 3) != 0;
        }
        sqlite3_reset(st);
        if (n == 0) {
            break;
        }
        for (size_t i = 0; i < n && err == DUET_OK; i++) {
            err = sweep_one(s, ids[i], mbs[i], lens[i], live[i]);
        }
        *removed += n;
    }
    if (err == DUET_OK) {
        sqlite3_stmt *st = stmt(s, S_MB_PURGE);
        sqlite3_bind_int64(st, 1, i64(now_ms > ttl_ms ? now_ms - ttl_ms : 0));
        err = run(s, st);
    }
    return err;
}

static duet_err_t st_expire(void *ctx, uint64_t now_ms, uint64_t ttl_ms, size_t max,
                            uint64_t *removed)
{
    duet_relay_sqlite_t *s = ctx;
    *removed = 0;
    duet_err_t err = st_begin(s);
    if (err != DUET_OK) {
        return err;
    }
    err = sweep(s, now_ms, ttl_ms, max, removed);
    if (err == DUET_OK) {
        err = st_commit(s);
    } else {
        st_rollback(s);
    }
    mb_forget_all(s); /* the sweep changed counters and removed rows behind the cache */
    if (err != DUET_OK) {
        *removed = 0;
    }
    return err;
}

static duet_err_t st_stats(void *ctx, duet_relay_stats_t *out)
{
    duet_relay_sqlite_t *s = ctx;
    sqlite3_stmt *st = NULL;
    memset(out, 0, sizeof *out);
    int rc = sqlite3_prepare_v2(s->db,
                                "SELECT count(*), coalesce(sum(items), 0), "
                                "coalesce(sum(bytes), 0) FROM mailboxes",
                                -1, &st, NULL);
    if (rc != SQLITE_OK) {
        return map_rc(s, rc);
    }
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        out->mailboxes = col_u64(st, 0);
        out->objects = col_u64(st, 1);
        out->bytes = col_u64(st, 2);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? DUET_OK : map_rc(s, rc);
}

/* ---- nameplates ------------------------------------------------------------------------ */

static bool np_free(const duet_relay_sqlite_t *s, size_t i, uint64_t now_ms)
{
    return s->np_state[i] == NP_FREE ||
           (s->np_state[i] == NP_ALLOCATED && s->np_expires[i] <= now_ms);
}

static duet_err_t st_np_allocate(void *ctx, uint16_t want, uint64_t now_ms, uint64_t ttl_ms,
                                 duet_rng_t rng, uint16_t *np)
{
    duet_relay_sqlite_t *s = ctx;
    size_t pick = 0;
    *np = 0;
    if (want != 0) {
        if (want >= NP_COUNT || !np_free(s, want, now_ms)) {
            return DUET_ENAMEPLATE;
        }
        s->np_state[want] = NP_ALLOCATED;
        s->np_expires[want] = now_ms + ttl_ms;
        *np = want;
        return DUET_OK;
    }
    /* Uniform among 1..9999 by rejection; a few tries find a free one unless nearly all are
     * taken, and then a scan from a random start does. */
    for (int tries = 0; tries < 32 && pick == 0; tries++) {
        uint8_t b[4];
        duet_rng_fill(&rng, b, sizeof b);
        uint32_t r = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
        uint32_t limit = UINT32_MAX - UINT32_MAX % (NP_COUNT - 1);
        if (r >= limit) {
            continue;
        }
        size_t i = 1 + r % (NP_COUNT - 1);
        if (np_free(s, i, now_ms)) {
            pick = i;
        }
    }
    for (size_t k = 0; k < NP_COUNT - 1 && pick == 0; k++) {
        size_t i = 1 + (k + (size_t)(now_ms % (NP_COUNT - 1))) % (NP_COUNT - 1);
        if (np_free(s, i, now_ms)) {
            pick = i;
        }
    }
    if (pick == 0) {
        return DUET_EBUSY;
    }
    s->np_state[pick] = NP_ALLOCATED;
    s->np_expires[pick] = now_ms + ttl_ms;
    *np = (uint16_t)pick;
    return DUET_OK;
}

static duet_err_t st_np_claim(void *ctx, uint16_t np, uint64_t now_ms)
{
    duet_relay_sqlite_t *s = ctx;
    if (np < 1 || np >= NP_COUNT || s->np_state[np] != NP_ALLOCATED ||
        s->np_expires[np] <= now_ms) {
        return DUET_ENAMEPLATE;
    }
    s->np_state[np] = NP_CLAIMED;
    return DUET_OK;
}

static void st_np_release(void *ctx, uint16_t np)
{
    duet_relay_sqlite_t *s = ctx;
    if (np >= 1 && np < NP_COUNT) {
        s->np_state[np] = NP_FREE;
        s->np_expires[np] = 0;
    }
}

duet_relay_store_t duet_relay_sqlite_store(duet_relay_sqlite_t *s)
{
    duet_relay_store_t st = {
        .ctx = s,
        .begin = st_begin,
        .commit = st_commit,
        .rollback = st_rollback,
        .put = st_put,
        .list = st_list,
        .get = st_get,
        .del = st_del,
        .expire = st_expire,
        .stats = st_stats,
        .np_allocate = st_np_allocate,
        .np_claim = st_np_claim,
        .np_release = st_np_release,
    };
    return st;
}
