/*
 * duet — the local store: one SQLite database per home, sealed at rest.
 *
 * A home folder (mode 0700) holds:
 *   store.key   the 32-byte store key, plain (mode 0600) or wrapped with a passphrase
 *               through Argon2id (docs/protocol.md, "Store key file")
 *   duet.db     SQLite in WAL mode, synchronous=FULL, foreign keys on, secure_delete on
 *   blobs/      sealed voice blobs
 *
 * Every item body and every secret (identity key, ratchet state, pair secrets) is sealed
 * with the store key (XChaCha20-Poly1305, random nonce, associated data naming the table and
 * row, so a sealed value cannot be moved to another row). What stays in clear is listed in
 * docs/threat-model.md: row counts, item kinds, timestamps and sequence numbers.
 *
 * Conventions of this module:
 *  - core/ reads no clock: functions that need the time take now_ms from the caller.
 *  - The schema is versioned with PRAGMA user_version and migrated forward on open, one
 *    transaction per step; a database from a newer duet is refused, never downgraded.
 *  - SQLite errors are mapped to duet errors once, here (duet_store_err): SQLITE_BUSY is
 *    DUET_ELOCKED, SQLITE_NOTADB/CORRUPT DUET_ECORRUPT, SQLITE_FULL DUET_ENOSPC,
 *    SQLITE_READONLY DUET_EREADONLY, the rest DUET_EDB.
 *  - Writes happen inside duet_store_begin()/duet_store_commit() (BEGIN IMMEDIATE, so two
 *    processes queue on the busy timeout instead of failing half-way); a failed command
 *    rolls back and leaves the store as it was.
 */
#ifndef DUET_STORE_H
#define DUET_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "err.h"
#include "rng.h"

#define DUET_STORE_KEY_BYTES 32u
#define DUET_STORE_SEAL_OVERHEAD (24u + 16u) /* nonce + tag */
#define DUET_STORE_DEFAULT_BUSY_MS 5000
#define DUET_STORE_MAX_PASSPHRASE 1024u

typedef struct duet_store duet_store_t;

typedef struct duet_store_opts {
    const uint8_t *passphrase; /* NULL: the home uses (or will use) a plain key file */
    size_t passphrase_len;
    int busy_timeout_ms;       /* 0: DUET_STORE_DEFAULT_BUSY_MS */
    duet_rng_t rng;            /* nonces for sealing */
} duet_store_opts_t;

/*
 * Create a new home at path: the folder (0700, created if absent, may exist empty), the key
 * file, the database at the current schema. DUET_EALREADYINIT if the home already holds a
 * key file or a database; nothing is changed then. On any other failure, what this call
 * created is removed again.
 */
duet_err_t duet_store_create(const char *home, const duet_store_opts_t *opts,
                             duet_store_t **out) DUET_MUST_CHECK;

/*
 * Open an existing home. DUET_ENOTINIT when there is no key file or database,
 * DUET_ENEEDPASS when the key is wrapped and no passphrase was given, DUET_EPASSPHRASE when
 * it does not unwrap, DUET_ECORRUPT for a damaged key file or database, DUET_ESCHEMANEW for
 * a database from a newer duet, DUET_ELOCKED when another process holds it past the busy
 * timeout. Migrates an older schema forward.
 */
duet_err_t duet_store_open(const char *home, const duet_store_opts_t *opts,
                           duet_store_t **out) DUET_MUST_CHECK;

/* Remove the key file and database of a home that duet_store_create just made, when the
 * first steps after it failed (duet init). Nothing else in the folder is touched. */
void duet_store_remove(const char *home);

/* Whether the key file of home is passphrase-protected (false if absent). */
bool duet_store_has_passphrase(const char *home);

/* Close and wipe the key. duet_store_close(NULL) does nothing. */
void duet_store_close(duet_store_t *st);

/* The SQLite handle, for the core modules that keep their own tables (items, sync, ...). */
sqlite3 *duet_store_db(duet_store_t *st);
const char *duet_store_home(const duet_store_t *st);
duet_rng_t duet_store_rng(const duet_store_t *st);

/* Map an SQLite result code to a duet error (see the preamble). */
duet_err_t duet_store_err(int rc);

/* The same for a result of st's connection: an I/O error is refined by the OS error behind
 * it (ENOSPC is DUET_ENOSPC, EROFS DUET_EREADONLY, EACCES DUET_EPERM). */
duet_err_t duet_store_rc(duet_store_t *st, int rc);

/* Transactions. begin is BEGIN IMMEDIATE; rollback never fails (it logs nothing). */
duet_err_t duet_store_begin(duet_store_t *st) DUET_MUST_CHECK;
duet_err_t duet_store_commit(duet_store_t *st) DUET_MUST_CHECK;
void duet_store_rollback(duet_store_t *st);

/*
 * Checkpoints off the commit path (the daemon): SQLite checkpoints the write-ahead log from
 * inside the commit that takes it past 1000 pages, which adds the copy and an fsync of the
 * database file to that commit. After duet_store_defer_checkpoints, commits never
 * checkpoint; duet_store_wal_pages says how large the log has grown since the last
 * checkpoint, and the caller runs duet_store_checkpoint (PASSIVE: it waits for no reader or
 * writer) when it has nothing more urgent to do. Other processes on the same home keep
 * checkpointing as usual.
 */
void duet_store_defer_checkpoints(duet_store_t *st);

/* Give back the page cache of st's connection (sqlite3_db_release_memory): for a daemon
 * that has gone quiet after a large sync. The next statements read from the OS again. */
void duet_store_release_memory(duet_store_t *st);
uint64_t duet_store_wal_pages(const duet_store_t *st);
duet_err_t duet_store_checkpoint(duet_store_t *st) DUET_MUST_CHECK;
#define DUET_STORE_CHECKPOINT_PAGES 1000u /* SQLite's own default */

/* Run SQL without results (schema, pragmas). */
duet_err_t duet_store_exec(duet_store_t *st, const char *sql) DUET_MUST_CHECK;

/* Prepare a statement, cached for the life of the store (the sql string must be a literal
 * or otherwise outlive the store). The statement is reset and its bindings cleared. */
duet_err_t duet_store_prepare(duet_store_t *st, const char *sql,
                              sqlite3_stmt **out) DUET_MUST_CHECK;

/*
 * Seal plain[0..len) for the row named by ad[0..ad_len) (e.g. "item" || id): out receives
 * len + DUET_STORE_SEAL_OVERHEAD bytes, allocated with malloc (caller frees; it holds no
 * plaintext). open verifies and returns a malloc'd plaintext the caller wipes and frees.
 */
duet_err_t duet_store_seal(duet_store_t *st, const uint8_t *ad, size_t ad_len,
                           const uint8_t *plain, size_t len, uint8_t **out,
                           size_t *out_len) DUET_MUST_CHECK;
duet_err_t duet_store_unseal(duet_store_t *st, const uint8_t *ad, size_t ad_len,
                             const uint8_t *sealed, size_t len, uint8_t **out,
                             size_t *out_len) DUET_MUST_CHECK;

/* Small named values in clear (meta table): counters, flags, the device id. */
duet_err_t duet_store_meta_get(duet_store_t *st, const char *key, uint8_t *buf, size_t cap,
                               size_t *len) DUET_MUST_CHECK; /* DUET_ENOENT if absent */
duet_err_t duet_store_meta_set(duet_store_t *st, const char *key, const uint8_t *val,
                               size_t len) DUET_MUST_CHECK;
duet_err_t duet_store_meta_get_u64(duet_store_t *st, const char *key, uint64_t dflt,
                                   uint64_t *out) DUET_MUST_CHECK;
duet_err_t duet_store_meta_set_u64(duet_store_t *st, const char *key,
                                   uint64_t v) DUET_MUST_CHECK;

/* Named secrets, sealed (secrets table). get returns malloc'd plaintext the caller wipes
 * (sodium_memzero) and frees; DUET_ENOENT if absent. */
duet_err_t duet_store_secret_get(duet_store_t *st, const char *name, uint8_t **out,
                                 size_t *len) DUET_MUST_CHECK;
duet_err_t duet_store_secret_put(duet_store_t *st, const char *name, const uint8_t *val,
                                 size_t len) DUET_MUST_CHECK;
duet_err_t duet_store_secret_del(duet_store_t *st, const char *name) DUET_MUST_CHECK;

/* ---- for tests ------------------------------------------------------------------------ */

/* Create a home whose database stops at schema version `version` (1..current), to test
 * that duet_store_open upgrades it. */
duet_err_t duet_store_create_at_version(const char *home, const duet_store_opts_t *opts,
                                        int version, duet_store_t **out) DUET_MUST_CHECK;

/* The schema version of an open store, and the version this build writes. */
int duet_store_schema_version(duet_store_t *st);
int duet_store_schema_latest(void);

#endif /* DUET_STORE_H */
