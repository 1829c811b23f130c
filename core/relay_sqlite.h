/*
 * duet — the relay's SQLite storage backend, behind relay_store.h.
 *
 * One database file (relay.db in the relay's data folder), WAL journal with
 * synchronous=FULL, so that a commit is on disk when it returns: the relay acknowledges a
 * PUT only after the commit of its batch. The connection holds the file in exclusive
 * locking mode, so a second relay on the same folder is refused at open (DUET_ELOCKED)
 * instead of corrupting the first one's view. secure_delete=FAST overwrites deleted rows
 * in their pages, so collected envelopes do not linger in the file.
 *
 *   mailboxes(id, mbox UNIQUE, last_cursor, items, bytes, touched)
 *   objects(id, mb, cursor, cls, oid, len, expires, data; UNIQUE(mb, oid))
 *   indexes: (mb, cursor) of live objects (cls > 0) for LIST, (expires) for the sweep;
 *   a collected object stays as a tombstone (cls 0, no data) until it would have expired
 *
 * Mailbox rows outlive their objects (until they have been empty for a TTL) so that a
 * mailbox's cursors never go back. Nameplates live in memory: they belong to connections,
 * which do not survive a restart either.
 *
 * Conventions: as relay_store.h. Not thread-safe: one event loop owns it.
 */
#ifndef DUET_RELAY_SQLITE_H
#define DUET_RELAY_SQLITE_H

#include "err.h"
#include "relay_store.h"

#define DUET_RELAY_SQLITE_SCHEMA  1
#define DUET_RELAY_SQLITE_BUSY_MS 2000
/* Page cache (KiB) and memory-mapped reads (bytes): the hot part of the mailboxes (recent
 * objects, the indexes) stays in memory instead of costing a read() per page. */
#define DUET_RELAY_SQLITE_CACHE_KIB "32768"
#define DUET_RELAY_SQLITE_MMAP      "268435456"

typedef struct duet_relay_sqlite duet_relay_sqlite_t;

/*
 * Open (creating if absent) the database at path, or an in-memory one for ":memory:".
 * DUET_ELOCKED when another process holds it, DUET_ECORRUPT for a file that is not a relay
 * database, DUET_ESCHEMANEW for one written by a newer duet, DUET_ENOSPC, DUET_EREADONLY,
 * DUET_EPERM or DUET_EIO when the file cannot be created or written.
 */
duet_err_t duet_relay_sqlite_open(const char *path, duet_relay_sqlite_t **out) DUET_MUST_CHECK;

/* Close; a batch still open is rolled back. NULL is a no-op. */
void duet_relay_sqlite_close(duet_relay_sqlite_t *db);

/* The storage interface backed by db (valid while db is open). */
duet_relay_store_t duet_relay_sqlite_store(duet_relay_sqlite_t *db);

#endif /* DUET_RELAY_SQLITE_H */
