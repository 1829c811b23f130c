/*
 * duet — the relay's storage interface: what the relay engine (relayd.h) asks of a storage
 * backend, kept narrow so that the SQLite backend (relay_sqlite.h) and a PostgreSQL one for
 * stateless front ends (docs/relay.md, "Scaling out") can sit behind it interchangeably.
 *
 * The model: mailboxes named by 32-byte ids, each holding objects keyed by (class, object
 * id) with a per-mailbox cursor that grows by one at every store (a reader lists "what came
 * after cursor c"). A mailbox exists from its first PUT; it never needs creating. Objects of
 * class DUET_RELAY_STATE are replaced by a PUT of the same id (with a new cursor); the
 * others are write-once: a second PUT of the same id changes nothing and reports *dup.
 * Every object expires ttl_ms after its PUT; an expired object is invisible at once and
 * removed by the next expire sweep. Nameplates (pairing rendezvous) are claimed through
 * the store too, so that front ends sharing a database share them.
 *
 * Conventions for every backend:
 *  - Writes happen between begin and commit. The engine calls begin before the first
 *    write of a batch and commit once per batch (group commit); commit returns only once
 *    the batch is durable. A failed commit rolls the whole batch back. rollback never fails.
 *    Reads may happen inside or outside a batch.
 *  - Errors: DUET_EQUOTA (a mailbox or store quota), DUET_ENOSPC (the disk is full),
 *    DUET_EIO / DUET_EDB (anything else); nothing is changed by a failed call.
 *  - Out-pointers from get are valid until the next call on the backend.
 *  - Backends hold no plaintext and learn nothing but what the arguments carry.
 */
#ifndef DUET_RELAY_STORE_H
#define DUET_RELAY_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "relay.h"
#include "rng.h"

/* Quotas a PUT must respect; 0 means "no limit" for every field but ttl_ms. */
typedef struct duet_relay_limits {
    uint64_t max_items;       /* objects in one mailbox */
    uint64_t max_bytes;       /* data bytes in one mailbox */
    uint64_t max_store_bytes; /* data bytes in the whole store */
    uint64_t ttl_ms;          /* an object's life */
} duet_relay_limits_t;

typedef struct duet_relay_stats {
    uint64_t mailboxes, objects, bytes;
} duet_relay_stats_t;

typedef struct duet_relay_store {
    void *ctx;

    duet_err_t (*begin)(void *ctx);
    duet_err_t (*commit)(void *ctx);
    void (*rollback)(void *ctx);

    /*
     * Store data[0..len) as object (cls, oid) of mailbox mbox at now_ms. *cursor is the
     * object's cursor (the existing one for a duplicate). DUET_EQUOTA when the mailbox
     * would hold more than lim->max_items objects or lim->max_bytes bytes, or the store
     * more than lim->max_store_bytes (a replaced object counts once).
     */
    duet_err_t (*put)(void *ctx, const uint8_t mbox[32], uint8_t cls, const uint8_t *oid,
                      size_t oid_len, const uint8_t *data, size_t len, uint64_t now_ms,
                      const duet_relay_limits_t *lim, uint64_t *cursor, bool *dup);

    /* Up to cap live objects of mbox with a cursor > after, ascending, of class cls (0:
     * any); *more when there are others after them. No such mailbox: *n = 0. */
    duet_err_t (*list)(void *ctx, const uint8_t mbox[32], uint8_t cls, uint64_t after,
                       uint64_t now_ms, duet_relay_entry_t *out, size_t cap, size_t *n, bool *more);

    /* One live object by id: its entry and data. DUET_ENOENT if absent or expired. */
    duet_err_t (*get)(void *ctx, const uint8_t mbox[32], const uint8_t *oid, size_t oid_len,
                      uint64_t now_ms, duet_relay_entry_t *meta, const uint8_t **data);

    /* Remove one object (any class); *deleted says whether it was there. Its id stays as a
     * tombstone until keep_until_ms (at most its own expiry): a PUT of it meanwhile is a
     * duplicate. */
    duet_err_t (*del)(void *ctx, const uint8_t mbox[32], const uint8_t *oid, size_t oid_len,
                      uint64_t keep_until_ms, bool *deleted);

    /* Remove up to max expired objects, and mailboxes empty for longer than ttl_ms. Its own
     * transaction (never inside a batch). */
    duet_err_t (*expire)(void *ctx, uint64_t now_ms, uint64_t ttl_ms, size_t max,
                         uint64_t *removed);

    duet_err_t (*stats)(void *ctx, duet_relay_stats_t *out);

    /* Nameplates 1..9999. allocate takes want if it is free (DUET_ENAMEPLATE if not), or
     * for want 0 picks a free one at random (DUET_EBUSY if none), and holds it until
     * now_ms + ttl_ms; claim takes an allocated, unexpired, unclaimed one (DUET_ENAMEPLATE
     * otherwise: one pairing per nameplate); release frees it. */
    duet_err_t (*np_allocate)(void *ctx, uint16_t want, uint64_t now_ms, uint64_t ttl_ms,
                              duet_rng_t rng, uint16_t *np);
    duet_err_t (*np_claim)(void *ctx, uint16_t np, uint64_t now_ms);
    void (*np_release)(void *ctx, uint16_t np);
} duet_relay_store_t;

#endif /* DUET_RELAY_STORE_H */
