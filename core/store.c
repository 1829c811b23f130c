/* see store.h */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#define KEYFILE_NAME "store.key"
#define DB_NAME "duet.db"
#define PATH_MAX_LEN 4096
#define STMT_CACHE 256

/* Key file: magic (8) || mode (1) || mode 0: key (32)
 *                                  || mode 1: opslimit u64 BE || memlimit u64 BE ||
 *                                             salt (16) || nonce (24) || wrapped key (48) */
static const uint8_t keyfile_magic[8] = {'D', 'U', 'E', 'T', 'K', 'E', 'Y', 1};
#define KEYFILE_PLAIN_LEN (8 + 1 + 32)
#define KEYFILE_PASS_HDR (8 + 1 + 8 + 8 + crypto_pwhash_SALTBYTES)
#define KEYFILE_PASS_LEN                                                                     \
    (KEYFILE_PASS_HDR + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + 32 +                  \
     crypto_aead_xchacha20poly1305_ietf_ABYTES)

struct duet_store {
    sqlite3 *db;
    uint8_t *key; /* sodium_malloc'd, DUET_STORE_KEY_BYTES */
    duet_rng_t rng;
    char home[PATH_MAX_LEN];
    struct {
        const char *sql;
        sqlite3_stmt *stmt;
    } cache[STMT_CACHE];
    size_t ncache;
    uint64_t wal_pages; /* with deferred checkpoints: the log's size, as the last commit saw */
};

/* ---- schema --------------------------------------------------------------------------- */

/* Migration i takes the database from user_version i to i+1. Never edit a released step;
 * add a new one. */
static const char *const migrations[] = {
    /* 0 -> 1: the device, its secrets and its items. */
    "CREATE TABLE meta (k TEXT PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE secrets (name TEXT PRIMARY KEY, sealed BLOB NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE items ("
    "  n INTEGER PRIMARY KEY,"
    "  id BLOB NOT NULL UNIQUE CHECK (length(id) = 16),"
    "  kind INTEGER NOT NULL,"
    "  mine INTEGER NOT NULL CHECK (mine IN (0, 1)),"
    "  hlc INTEGER NOT NULL,"
    "  status INTEGER NOT NULL,"
    "  body BLOB NOT NULL);"
    "CREATE INDEX items_order ON items (hlc, id);",

    /* 1 -> 2: the partner, the outbox of sealed envelopes, what has come in. */
    "CREATE TABLE partner ("
    "  one INTEGER PRIMARY KEY CHECK (one = 1),"
    "  identity_pk BLOB NOT NULL CHECK (length(identity_pk) = 32),"
    "  device_id TEXT NOT NULL,"
    "  name BLOB NOT NULL,"
    "  paired_at INTEGER NOT NULL,"
    "  verified INTEGER NOT NULL DEFAULT 0,"
    "  addr TEXT,"
    "  last_sync INTEGER);"
    "ALTER TABLE items ADD COLUMN seq INTEGER;"
    "CREATE INDEX items_unsealed ON items (mine, seq) WHERE mine = 1 AND seq IS NULL;"
    "CREATE TABLE outbox ("
    "  seq INTEGER PRIMARY KEY,"
    "  item_id BLOB,"
    "  counts INTEGER NOT NULL,"
    "  envelope BLOB NOT NULL,"
    "  relay_stored INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE inbound (seq INTEGER PRIMARY KEY);",

    /* 2 -> 3: check-ins (core/checkin.c). Ids, dates, states in clear; the couple's words
     * (questions, answers, answer keys, agreement texts) sealed with the store key. */
    "CREATE TABLE rituals ("
    "  id BLOB PRIMARY KEY CHECK (length(id) = 16),"
    "  mine INTEGER NOT NULL CHECK (mine IN (0, 1)),"
    "  state INTEGER NOT NULL,"
    "  every INTEGER NOT NULL,"
    "  weekday INTEGER NOT NULL,"
    "  open INTEGER NOT NULL,"
    "  start_day INTEGER,"
    "  active_at INTEGER,"
    "  hlc INTEGER NOT NULL,"
    "  spec BLOB NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE checkin_answers ("
    "  instance BLOB NOT NULL CHECK (length(instance) = 16),"
    "  mine INTEGER NOT NULL CHECK (mine IN (0, 1)),"
    "  ritual BLOB NOT NULL,"
    "  day INTEGER NOT NULL,"
    "  hlc INTEGER NOT NULL,"
    "  answer BLOB NOT NULL,"
    "  key BLOB,"
    "  key_sent INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (instance, mine)) WITHOUT ROWID;"
    "CREATE INDEX checkin_answers_ritual ON checkin_answers (ritual, mine, day);"
    "CREATE TABLE checkin_early (instance BLOB PRIMARY KEY, key BLOB NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE checkin_owed (instance BLOB PRIMARY KEY) WITHOUT ROWID;"
    "CREATE TABLE agreements ("
    "  id BLOB PRIMARY KEY CHECK (length(id) = 16),"
    "  version INTEGER NOT NULL,"
    "  rev BLOB NOT NULL,"
    "  text BLOB NOT NULL,"
    "  mine INTEGER NOT NULL,"
    "  hlc INTEGER NOT NULL,"
    "  acc_me BLOB,"
    "  acc_partner BLOB) WITHOUT ROWID;"
    "CREATE INDEX items_kind ON items (kind, hlc, id);",

    /* 3 -> 4: voice blobs (core/voice.c): the sealed blobs this home holds or wants, one row
     * per blob id. The blob keys stay inside the sealed item bodies (column item). */
    "CREATE TABLE blobs ("
    "  n INTEGER PRIMARY KEY,"
    "  id BLOB NOT NULL UNIQUE CHECK (length(id) = 32),"
    "  mine INTEGER NOT NULL CHECK (mine IN (0, 1)),"
    "  state INTEGER NOT NULL CHECK (state IN (0, 1)),"
    "  size INTEGER NOT NULL,"
    "  item BLOB NOT NULL CHECK (length(item) = 16),"
    "  fetched INTEGER NOT NULL DEFAULT 0,"
    "  relayed INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX blobs_wanted ON blobs (mine, state, n);",

    /* 4 -> 5: held = the partner said on a direct link that it has my blob whole, so the
     * relay need not carry it (core/voice.h duet_voice_set_held). Blobs of items already
     * acknowledged before this column existed count as held, as the old rule had it. */
    "ALTER TABLE blobs ADD COLUMN held INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX blobs_item ON blobs (item);"
    "UPDATE blobs SET held = 1 WHERE mine = 1 AND relayed = 0 AND item IN "
    "  (SELECT id FROM items WHERE mine = 1 AND status != 0);",
};
#define NMIGRATIONS ((int)(sizeof migrations / sizeof migrations[0]))

int duet_store_schema_latest(void)
{
    return NMIGRATIONS;
}

/* ---- errors --------------------------------------------------------------------------- */

duet_err_t duet_store_err(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW:
        return DUET_OK;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return DUET_ELOCKED;
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
        return DUET_ECORRUPT;
    case SQLITE_FULL:
        return DUET_ENOSPC;
    case SQLITE_READONLY:
        return DUET_EREADONLY;
    case SQLITE_NOMEM:
        return DUET_ENOMEM;
    case SQLITE_PERM:
    case SQLITE_AUTH:
        return DUET_EPERM;
    case SQLITE_CANTOPEN:
    case SQLITE_IOERR:
        return DUET_EIO;
    case SQLITE_CONSTRAINT:
        return DUET_EEXIST;
    case SQLITE_TOOBIG:
        return DUET_ETOOBIG;
    default:
        return DUET_EDB;
    }
}

static duet_err_t errno_err(int e)
{
    switch (e) {
    case ENOSPC:
    case EDQUOT:
        return DUET_ENOSPC;
    case EACCES:
    case EPERM:
        return DUET_EPERM;
    case EROFS:
        return DUET_EREADONLY;
    case ENOENT:
        return DUET_ENOENT;
    case EEXIST:
        return DUET_EEXIST;
    default:
        return DUET_EIO;
    }
}

duet_err_t duet_store_rc(duet_store_t *st, int rc)
{
    duet_err_t err = duet_store_err(rc);
    if ((err == DUET_EIO || err == DUET_EDB) && st != NULL && st->db != NULL) {
        switch (sqlite3_system_errno(st->db)) {
        case ENOSPC:
        case EDQUOT:
            return DUET_ENOSPC;
        case EROFS:
            return DUET_EREADONLY;
        case EACCES:
        case EPERM:
            return DUET_EPERM;
        default:
            break;
        }
    }
    return err;
}

/* ---- paths and the key file ----------------------------------------------------------- */

static duet_err_t join(char *out, const char *home, const char *name)
{
    int n = snprintf(out, PATH_MAX_LEN, "%s/%s", home, name);
    return (n < 0 || n >= PATH_MAX_LEN) ? DUET_ETOOBIG : DUET_OK;
}

/* mkdir -p with mode 0700 for every folder it creates. */
static duet_err_t mkdir_p(const char *path)
{
    char buf[PATH_MAX_LEN];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) {
        return DUET_ETOOBIG;
    }
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == 0) {
            char c = buf[i];
            buf[i] = 0;
            if (mkdir(buf, 0700) != 0 && errno != EEXIST) {
                return errno_err(errno);
            }
            buf[i] = c;
        }
    }
    return DUET_OK;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t load_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* Write buf to path atomically: a temporary file in the same folder, fsync, rename, fsync
 * the folder. Mode 0600. */
static duet_err_t write_file_atomic(const char *home, const char *path, const uint8_t *buf,
                                    size_t len)
{
    char tmp[PATH_MAX_LEN];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        return DUET_ETOOBIG;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        return errno_err(errno);
    }
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, buf + off, len - off);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            duet_err_t err = errno_err(errno);
            close(fd);
            unlink(tmp);
            return err;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        duet_err_t err = errno_err(errno);
        unlink(tmp);
        return err;
    }
    if (rename(tmp, path) != 0) {
        duet_err_t err = errno_err(errno);
        unlink(tmp);
        return err;
    }
    int dfd = open(home, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return DUET_OK;
}

static duet_err_t read_keyfile(const char *path, uint8_t *buf, size_t cap, size_t *len)
{
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        return errno == ENOENT ? DUET_ENOTINIT : errno_err(errno);
    }
    size_t off = 0;
    for (;;) {
        if (off == cap) {
            close(fd);
            return DUET_ECORRUPT; /* longer than any key file */
        }
        ssize_t r = read(fd, buf + off, cap - off);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            duet_err_t err = errno_err(errno);
            close(fd);
            return err;
        }
        if (r == 0) {
            break;
        }
        off += (size_t)r;
    }
    close(fd);
    *len = off;
    return DUET_OK;
}

/* Derive the wrapping key from the passphrase (Argon2id). */
static duet_err_t pw_key(uint8_t key[32], const duet_store_opts_t *opts, const uint8_t *salt,
                         uint64_t ops, uint64_t mem)
{
    if (opts->passphrase_len > DUET_STORE_MAX_PASSPHRASE) {
        return DUET_ETOOBIG;
    }
    if (ops < crypto_pwhash_OPSLIMIT_MIN || ops > crypto_pwhash_OPSLIMIT_SENSITIVE ||
        mem < crypto_pwhash_MEMLIMIT_MIN || mem > crypto_pwhash_MEMLIMIT_SENSITIVE) {
        return DUET_ECORRUPT; /* limits outside what we would ever write */
    }
    if (crypto_pwhash(key, 32, (const char *)opts->passphrase, opts->passphrase_len, salt, ops,
                      (size_t)mem, crypto_pwhash_ALG_ARGON2ID13) != 0) {
        return DUET_ENOMEM;
    }
    return DUET_OK;
}

static duet_err_t make_keyfile(const char *home, const char *path, const duet_store_opts_t *opts,
                               uint8_t *key)
{
    uint8_t file[KEYFILE_PASS_LEN];
    size_t len;
    duet_err_t err = DUET_OK;
    uint8_t wrap[32];

    duet_rng_fill(&opts->rng, key, DUET_STORE_KEY_BYTES);
    memcpy(file, keyfile_magic, 8);
    if (opts->passphrase == NULL) {
        file[8] = 0;
        memcpy(file + 9, key, 32);
        len = KEYFILE_PLAIN_LEN;
    } else {
        uint64_t ops = crypto_pwhash_OPSLIMIT_MODERATE, mem = crypto_pwhash_MEMLIMIT_MODERATE;
        uint8_t *salt = file + 8 + 1 + 16;
        uint8_t *nonce = file + KEYFILE_PASS_HDR;
        file[8] = 1;
        be64(file + 9, ops);
        be64(file + 17, mem);
        duet_rng_fill(&opts->rng, salt, crypto_pwhash_SALTBYTES);
        duet_rng_fill(&opts->rng, nonce, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
        err = pw_key(wrap, opts, salt, ops, mem);
        if (err != DUET_OK) {
            goto cleanup;
        }
        /* The header is the associated data: tampering with the limits or salt fails. */
        crypto_aead_xchacha20poly1305_ietf_encrypt(
            nonce + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, NULL, key, 32, file,
            KEYFILE_PASS_HDR, NULL, nonce, wrap);
        len = KEYFILE_PASS_LEN;
    }
    err = write_file_atomic(home, path, file, len);
cleanup:
    sodium_memzero(wrap, sizeof wrap);
    sodium_memzero(file, sizeof file);
    return err;
}

static duet_err_t load_keyfile(const char *path, const duet_store_opts_t *opts, uint8_t *key)
{
    uint8_t file[KEYFILE_PASS_LEN + 1];
    size_t len;
    uint8_t wrap[32];
    duet_err_t err = read_keyfile(path, file, sizeof file, &len);
    if (err != DUET_OK) {
        goto cleanup;
    }
    if (len < 9 || memcmp(file, keyfile_magic, 8) != 0) {
        err = DUET_ECORRUPT;
        goto cleanup;
    }
    if (file[8] == 0) {
        if (len != KEYFILE_PLAIN_LEN) {
            err = DUET_ECORRUPT;
            goto cleanup;
        }
        memcpy(key, file + 9, 32);
    } else if (file[8] == 1) {
        if (len != KEYFILE_PASS_LEN) {
            err = DUET_ECORRUPT;
            goto cleanup;
        }
        if (opts->passphrase == NULL) {
            err = DUET_ENEEDPASS;
            goto cleanup;
        }
        const uint8_t *salt = file + 8 + 1 + 16;
        const uint8_t *nonce = file + KEYFILE_PASS_HDR;
        err = pw_key(wrap, opts, salt, load_be64(file + 9), load_be64(file + 17));
        if (err != DUET_OK) {
            goto cleanup;
        }
        if (crypto_aead_xchacha20poly1305_ietf_decrypt(
                key, NULL, NULL, nonce + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
                32 + crypto_aead_xchacha20poly1305_ietf_ABYTES, file, KEYFILE_PASS_HDR, nonce,
                wrap) != 0) {
            err = DUET_EPASSPHRASE;
            goto cleanup;
        }
    } else {
        err = DUET_ECORRUPT;
    }
cleanup:
    sodium_memzero(wrap, sizeof wrap);
    sodium_memzero(file, sizeof file);
    return err;
}

bool duet_store_has_passphrase(const char *home)
{
    char path[PATH_MAX_LEN];
    uint8_t file[KEYFILE_PASS_LEN + 1];
    size_t len;
    if (join(path, home, KEYFILE_NAME) != DUET_OK ||
        read_keyfile(path, file, sizeof file, &len) != DUET_OK) {
        return false;
    }
    bool pass = len > 8 && memcmp(file, keyfile_magic, 8) == 0 && file[8] == 1;
    sodium_memzero(file, sizeof file);
    return pass;
}

/* ---- opening -------------------------------------------------------------------------- */

static int wal_hook(void *ctx, sqlite3 *db, const char *name, int pages)
{
    duet_store_t *st = ctx;
    (void)db;
    (void)name;
    st->wal_pages = pages > 0 ? (uint64_t)pages : 0;
    return SQLITE_OK;
}

void duet_store_defer_checkpoints(duet_store_t *st)
{
    sqlite3_wal_hook(st->db, wal_hook, st); /* replaces the automatic checkpoint */
}

void duet_store_release_memory(duet_store_t *st)
{
    (void)sqlite3_db_release_memory(st->db);
}

uint64_t duet_store_wal_pages(const duet_store_t *st)
{
    return st->wal_pages;
}

duet_err_t duet_store_checkpoint(duet_store_t *st)
{
    int rc = sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    st->wal_pages = 0;
    return rc == SQLITE_OK || rc == SQLITE_BUSY ? DUET_OK : duet_store_rc(st, rc);
}

duet_err_t duet_store_exec(duet_store_t *st, const char *sql)
{
    int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);
    return duet_store_rc(st, rc);
}

int duet_store_schema_version(duet_store_t *st)
{
    sqlite3_stmt *s;
    int v = -1;
    if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &s, NULL) == SQLITE_OK) {
        if (sqlite3_step(s) == SQLITE_ROW) {
            v = sqlite3_column_int(s, 0);
        }
        sqlite3_finalize(s);
    }
    return v;
}

static duet_err_t read_version(duet_store_t *st, int *v)
{
    sqlite3_stmt *s;
    *v = -1;
    int rc = sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &s, NULL);
    if (rc != SQLITE_OK) {
        return duet_store_rc(st, rc);
    }
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *v = sqlite3_column_int(s, 0);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(s);
    return duet_store_rc(st, rc);
}

/* Bring the schema from its version up to target, one transaction per step. */
static duet_err_t migrate(duet_store_t *st, int target)
{
    int v;
    duet_err_t err = read_version(st, &v);
    if (err != DUET_OK) {
        return err;
    }
    if (v > NMIGRATIONS) {
        return DUET_ESCHEMANEW;
    }
    while (v < target) {
        char setv[64];
        snprintf(setv, sizeof setv, "PRAGMA user_version = %d", v + 1);
        err = duet_store_begin(st);
        if (err != DUET_OK) {
            return err;
        }
        err = duet_store_exec(st, migrations[v]);
        if (err == DUET_OK) {
            err = duet_store_exec(st, setv);
        }
        if (err == DUET_OK) {
            err = duet_store_commit(st);
        }
        if (err != DUET_OK) {
            duet_store_rollback(st);
            return err;
        }
        v++;
    }
    return DUET_OK;
}

static duet_err_t open_db(duet_store_t *st, const char *path, bool create, int busy_ms)
{
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
    int rc = sqlite3_open_v2(path, &st->db, flags, NULL);
    if (rc != SQLITE_OK) {
        return rc == SQLITE_CANTOPEN && !create ? DUET_ENOTINIT : duet_store_rc(st, rc);
    }
    if (sqlite3_db_readonly(st->db, "main") == 1) {
        /* SQLite fell back to read-only (a read-only disk or file): duet needs to write its
         * WAL even to read, so say so now rather than fail later with an I/O error. */
        return DUET_EREADONLY;
    }
    sqlite3_extended_result_codes(st->db, 0);
    sqlite3_busy_timeout(st->db, busy_ms > 0 ? busy_ms : DUET_STORE_DEFAULT_BUSY_MS);
    /* journal_mode first: it is the first read of the file, so a non-database fails here. */
    duet_err_t err = duet_store_exec(st, "PRAGMA journal_mode = WAL");
    if (err == DUET_OK) {
        err = duet_store_exec(st, "PRAGMA synchronous = FULL;"
                                  "PRAGMA foreign_keys = ON;"
                                  "PRAGMA secure_delete = ON;"
                                  "PRAGMA trusted_schema = OFF;");
    }
    return err;
}

static duet_err_t store_alloc(const char *home, const duet_store_opts_t *opts, duet_store_t **out)
{
    *out = NULL;
    if (strlen(home) >= PATH_MAX_LEN - 32) {
        return DUET_ETOOBIG;
    }
    duet_store_t *st = calloc(1, sizeof *st);
    if (st == NULL) {
        return DUET_ENOMEM;
    }
    st->key = sodium_malloc(DUET_STORE_KEY_BYTES);
    if (st->key == NULL) {
        free(st);
        return DUET_ENOMEM;
    }
    st->rng = opts->rng;
    snprintf(st->home, sizeof st->home, "%s", home);
    *out = st;
    return DUET_OK;
}

static duet_err_t create_at(const char *home, const duet_store_opts_t *opts, int version,
                            duet_store_t **out)
{
    char keypath[PATH_MAX_LEN], dbpath[PATH_MAX_LEN], side[PATH_MAX_LEN + 8];
    duet_store_t *st = NULL;
    bool made_key = false, made_db = false;
    duet_err_t err;

    *out = NULL;
    if ((err = join(keypath, home, KEYFILE_NAME)) != DUET_OK ||
        (err = join(dbpath, home, DB_NAME)) != DUET_OK) {
        return err;
    }
    if ((err = mkdir_p(home)) != DUET_OK) {
        return err;
    }
    if (exists(keypath) || exists(dbpath)) {
        return DUET_EALREADYINIT;
    }
    if ((err = store_alloc(home, opts, &st)) != DUET_OK) {
        return err;
    }
    if ((err = make_keyfile(home, keypath, opts, st->key)) != DUET_OK) {
        goto cleanup;
    }
    made_key = true;
    made_db = true;
    if ((err = open_db(st, dbpath, true, opts->busy_timeout_ms)) != DUET_OK) {
        goto cleanup;
    }
    (void)chmod(dbpath, 0600);
    err = migrate(st, version);
cleanup:
    if (err != DUET_OK) {
        duet_store_close(st);
        st = NULL;
        if (made_db) {
            unlink(dbpath);
            snprintf(side, sizeof side, "%s-wal", dbpath);
            unlink(side);
            snprintf(side, sizeof side, "%s-shm", dbpath);
            unlink(side);
        }
        if (made_key) {
            unlink(keypath);
        }
    }
    *out = st;
    return err;
}

void duet_store_remove(const char *home)
{
    static const char *const names[] = {DB_NAME, DB_NAME "-wal", DB_NAME "-shm", KEYFILE_NAME};
    char path[PATH_MAX_LEN];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (join(path, home, names[i]) == DUET_OK) {
            unlink(path);
        }
    }
}

duet_err_t duet_store_create(const char *home, const duet_store_opts_t *opts, duet_store_t **out)
{
    return create_at(home, opts, NMIGRATIONS, out);
}

duet_err_t duet_store_create_at_version(const char *home, const duet_store_opts_t *opts,
                                        int version, duet_store_t **out)
{
    if (version < 1 || version > NMIGRATIONS) {
        abort();
    }
    return create_at(home, opts, version, out);
}

duet_err_t duet_store_open(const char *home, const duet_store_opts_t *opts, duet_store_t **out)
{
    char keypath[PATH_MAX_LEN], dbpath[PATH_MAX_LEN];
    duet_store_t *st = NULL;
    duet_err_t err;

    *out = NULL;
    if ((err = join(keypath, home, KEYFILE_NAME)) != DUET_OK ||
        (err = join(dbpath, home, DB_NAME)) != DUET_OK) {
        return err;
    }
    if (!exists(keypath) || !exists(dbpath)) {
        return DUET_ENOTINIT;
    }
    if ((err = store_alloc(home, opts, &st)) != DUET_OK) {
        return err;
    }
    if ((err = load_keyfile(keypath, opts, st->key)) != DUET_OK) {
        goto cleanup;
    }
    if ((err = open_db(st, dbpath, false, opts->busy_timeout_ms)) != DUET_OK) {
        goto cleanup;
    }
    int v;
    if ((err = read_version(st, &v)) != DUET_OK) {
        goto cleanup;
    }
    if (v == 0) {
        err = DUET_ECORRUPT; /* a database file that duet never initialised */
        goto cleanup;
    }
    if (v > NMIGRATIONS) {
        err = DUET_ESCHEMANEW;
        goto cleanup;
    }
    if (v < NMIGRATIONS) {
        err = migrate(st, NMIGRATIONS);
    }
cleanup:
    if (err != DUET_OK) {
        duet_store_close(st);
        st = NULL;
    }
    *out = st;
    return err;
}

void duet_store_close(duet_store_t *st)
{
    if (st == NULL) {
        return;
    }
    for (size_t i = 0; i < st->ncache; i++) {
        sqlite3_finalize(st->cache[i].stmt);
    }
    if (st->db != NULL) {
        sqlite3_close_v2(st->db);
    }
    sodium_free(st->key);
    free(st);
}

sqlite3 *duet_store_db(duet_store_t *st)
{
    return st->db;
}

const char *duet_store_home(const duet_store_t *st)
{
    return st->home;
}

duet_rng_t duet_store_rng(const duet_store_t *st)
{
    return st->rng;
}

/* ---- transactions and statements ------------------------------------------------------ */

duet_err_t duet_store_begin(duet_store_t *st)
{
    return duet_store_exec(st, "BEGIN IMMEDIATE");
}

duet_err_t duet_store_commit(duet_store_t *st)
{
    return duet_store_exec(st, "COMMIT");
}

void duet_store_rollback(duet_store_t *st)
{
    if (!sqlite3_get_autocommit(st->db)) {
        (void)sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    }
}

duet_err_t duet_store_prepare(duet_store_t *st, const char *sql, sqlite3_stmt **out)
{
    *out = NULL;
    for (size_t i = 0; i < st->ncache; i++) {
        if (st->cache[i].sql == sql) {
            sqlite3_reset(st->cache[i].stmt);
            sqlite3_clear_bindings(st->cache[i].stmt);
            *out = st->cache[i].stmt;
            return DUET_OK;
        }
    }
    if (st->ncache == STMT_CACHE) {
        abort(); /* more distinct statements than the cache holds: raise STMT_CACHE */
    }
    sqlite3_stmt *s;
    int rc = sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, NULL);
    if (rc != SQLITE_OK) {
        return duet_store_rc(st, rc);
    }
    st->cache[st->ncache].sql = sql;
    st->cache[st->ncache].stmt = s;
    st->ncache++;
    *out = s;
    return DUET_OK;
}

/* ---- sealing -------------------------------------------------------------------------- */

/* The associated data of a sealed value: a domain label, then the caller's row name. */
static const uint8_t seal_label[] = "duet store v1";

static duet_err_t seal_ad(const uint8_t *ad, size_t ad_len, uint8_t *buf, size_t cap,
                          size_t *len)
{
    size_t l = sizeof seal_label;
    if (ad_len > cap - l) {
        return DUET_ETOOBIG;
    }
    memcpy(buf, seal_label, l);
    if (ad_len > 0) {
        memcpy(buf + l, ad, ad_len);
    }
    *len = l + ad_len;
    return DUET_OK;
}

duet_err_t duet_store_seal(duet_store_t *st, const uint8_t *ad, size_t ad_len,
                           const uint8_t *plain, size_t len, uint8_t **out, size_t *out_len)
{
    uint8_t adbuf[256];
    size_t adl;
    *out = NULL;
    *out_len = 0;
    duet_err_t err = seal_ad(ad, ad_len, adbuf, sizeof adbuf, &adl);
    if (err != DUET_OK) {
        return err;
    }
    if (len > SIZE_MAX - DUET_STORE_SEAL_OVERHEAD) {
        return DUET_ETOOBIG;
    }
    uint8_t *buf = malloc(len + DUET_STORE_SEAL_OVERHEAD);
    if (buf == NULL) {
        return DUET_ENOMEM;
    }
    uint8_t *nonce = buf;
    duet_rng_fill(&st->rng, nonce, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
    crypto_aead_xchacha20poly1305_ietf_encrypt(buf + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
                                               NULL, plain, len, adbuf, adl, NULL, nonce,
                                               st->key);
    *out = buf;
    *out_len = len + DUET_STORE_SEAL_OVERHEAD;
    return DUET_OK;
}

duet_err_t duet_store_unseal(duet_store_t *st, const uint8_t *ad, size_t ad_len,
                             const uint8_t *sealed, size_t len, uint8_t **out, size_t *out_len)
{
    uint8_t adbuf[256];
    size_t adl;
    *out = NULL;
    *out_len = 0;
    duet_err_t err = seal_ad(ad, ad_len, adbuf, sizeof adbuf, &adl);
    if (err != DUET_OK) {
        return err;
    }
    if (len < DUET_STORE_SEAL_OVERHEAD) {
        return DUET_ECORRUPT;
    }
    size_t plen = len - DUET_STORE_SEAL_OVERHEAD;
    uint8_t *buf = malloc(plen ? plen : 1);
    if (buf == NULL) {
        return DUET_ENOMEM;
    }
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(
            buf, NULL, NULL, sealed + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
            len - crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, adbuf, adl, sealed,
            st->key) != 0) {
        free(buf);
        return DUET_ECORRUPT; /* a sealed row that does not open was damaged on disk */
    }
    *out = buf;
    *out_len = plen;
    return DUET_OK;
}

/* ---- meta and secrets ----------------------------------------------------------------- */

duet_err_t duet_store_meta_get(duet_store_t *st, const char *key, uint8_t *buf, size_t cap,
                               size_t *len)
{
    sqlite3_stmt *s;
    *len = 0;
    duet_err_t err = duet_store_prepare(st, "SELECT v FROM meta WHERE k = ?1", &s);
    if (err != DUET_OK) {
        return err;
    }
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        err = DUET_ENOENT;
    } else if (rc != SQLITE_ROW) {
        err = duet_store_rc(st, rc);
    } else {
        size_t n = (size_t)sqlite3_column_bytes(s, 0);
        if (n > cap) {
            err = DUET_ETOOBIG;
        } else {
            if (n > 0) {
                memcpy(buf, sqlite3_column_blob(s, 0), n);
            }
            *len = n;
        }
    }
    sqlite3_reset(s);
    return err;
}

duet_err_t duet_store_meta_set(duet_store_t *st, const char *key, const uint8_t *val, size_t len)
{
    sqlite3_stmt *s;
    duet_err_t err = duet_store_prepare(st, "INSERT OR REPLACE INTO meta (k, v) VALUES (?1, ?2)",
                                        &s);
    if (err != DUET_OK) {
        return err;
    }
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 2, len ? (const void *)val : "", (int)len, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? DUET_OK : duet_store_rc(st, rc);
}

duet_err_t duet_store_meta_get_u64(duet_store_t *st, const char *key, uint64_t dflt,
                                   uint64_t *out)
{
    uint8_t b[8];
    size_t n;
    *out = dflt;
    duet_err_t err = duet_store_meta_get(st, key, b, sizeof b, &n);
    if (err == DUET_ENOENT) {
        return DUET_OK;
    }
    if (err != DUET_OK) {
        return err;
    }
    if (n != 8) {
        return DUET_ECORRUPT;
    }
    *out = load_be64(b);
    return DUET_OK;
}

duet_err_t duet_store_meta_set_u64(duet_store_t *st, const char *key, uint64_t v)
{
    uint8_t b[8];
    be64(b, v);
    return duet_store_meta_set(st, key, b, sizeof b);
}

duet_err_t duet_store_secret_get(duet_store_t *st, const char *name, uint8_t **out, size_t *len)
{
    sqlite3_stmt *s;
    *out = NULL;
    *len = 0;
    duet_err_t err = duet_store_prepare(st, "SELECT sealed FROM secrets WHERE name = ?1", &s);
    if (err != DUET_OK) {
        return err;
    }
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        err = DUET_ENOENT;
    } else if (rc != SQLITE_ROW) {
        err = duet_store_rc(st, rc);
    } else {
        err = duet_store_unseal(st, (const uint8_t *)name, strlen(name),
                                sqlite3_column_blob(s, 0), (size_t)sqlite3_column_bytes(s, 0),
                                out, len);
    }
    sqlite3_reset(s);
    return err;
}

duet_err_t duet_store_secret_put(duet_store_t *st, const char *name, const uint8_t *val,
                                 size_t len)
{
    sqlite3_stmt *s;
    uint8_t *sealed;
    size_t slen;
    duet_err_t err = duet_store_seal(st, (const uint8_t *)name, strlen(name), val, len, &sealed,
                                     &slen);
    if (err != DUET_OK) {
        return err;
    }
    err = duet_store_prepare(st, "INSERT OR REPLACE INTO secrets (name, sealed) VALUES (?1, ?2)",
                             &s);
    if (err == DUET_OK) {
        sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_blob(s, 2, sealed, (int)slen, SQLITE_STATIC);
        int rc = sqlite3_step(s);
        sqlite3_reset(s);
        err = rc == SQLITE_DONE ? DUET_OK : duet_store_rc(st, rc);
    }
    free(sealed);
    return err;
}

duet_err_t duet_store_secret_del(duet_store_t *st, const char *name)
{
    sqlite3_stmt *s;
    duet_err_t err = duet_store_prepare(st, "DELETE FROM secrets WHERE name = ?1", &s);
    if (err != DUET_OK) {
        return err;
    }
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? DUET_OK : duet_store_rc(st, rc);
}
