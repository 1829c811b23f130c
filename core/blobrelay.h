/*
 * duet — voice blobs through a relay: my sealed blobs uploaded unit by unit as BLOB objects
 * of the mailbox I write (core/relay.h), the partner's fetched from the mailbox I read into
 * the same resumable partial files the direct path uses (core/voice.h duet_voice_rx_*).
 * Sans-I/O after core/relay_sync.h: relay frames in, relay frames out; it is a relay session
 * of its own (its own HELLO, request ids and window), so the I/O layer runs it on its own
 * Noise_NK link to the relay, beside the relay_sync session. docs/protocol/blob.md,
 * "Through the relay", has the bytes.
 *
 * Objects: one per storage unit k of a blob (the header with chunk 0, then one sealed chunk
 * each: core/blob.h), class DUET_RELAY_BLOB, write-once:
 *
 *   oid  = HMAC-SHA-256(okey of the mailbox, "blob" || blob id (32) || u32be(k))[0..16)
 *   data = the unit's sealed bytes || zeros, always DUET_BLOBRELAY_OBJECT (65577) bytes
 *
 * so the relay sees neither blob ids nor which objects belong together, and every blob
 * object has the same length (the number of them still tells a blob's size to 64 KiB).
 *
 * A session (one-shot):
 *  - Download: for each partner blob this home wants (in the order they were recorded),
 *    take it up (voice.h: locked, its partial file checked unit by unit), GET the units from
 *    the first one missing here, pipelined; each is counted (.rx), checked and stored as it
 *    arrives (duet_blob_recv_append). A unit the relay does not have (not uploaded yet,
 *    expired) or that fails its check leaves the blob for a later session or the direct
 *    link. Complete: finish (the whole blob's id, fsync, rename), mark it available, then
 *    DELETE its objects (only then: a unit deleted before the fsync could not be sent again,
 *    as the relay keeps tombstones).
 *  - Upload: each of my blobs that the relay should hold and does not hold whole (voice.h
 *    duet_voice_next_to_relay: not known to be held by the partner, core/blobxfer.h), from the first unit the relay does not hold (blobs.relayed), PUT unit after
 *    unit; the relay's OK means the unit is durable there, and blobs.relayed moves forward
 *    (written every DUET_BLOBRELAY_MARK_EVERY units and at the end: after a crash at most
 *    that many are PUT again, which the relay's write-once objects absorb). A refusal
 *    (quota, size, the relay's disk) stops uploading for this session
 *    (duet_blobrelay_upload_error), as relay_sync does for envelopes.
 *
 * Store: the engine writes to the store only when no transaction is open on its connection
 * (sqlite3_get_autocommit): a relay_sync session on the same store may hold a page's batch
 * open; the engine's writes then wait for the next call.
 *
 * Errors: a relay that breaks the protocol, refuses a capability or reports a fatal error
 * fails the engine (sticky); so do local failures (the disk, the store). A relay whose
 * largest object is smaller than a unit fails it with DUET_ETOOBIG: it cannot carry blobs.
 *
 * Memory: constant in the blob sizes: one unit buffer, a frame encoder, the core/blob
 * receiver.
 */
#ifndef DUET_BLOBRELAY_H
#define DUET_BLOBRELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blobxfer.h"
#include "err.h"
#include "relay.h"
#include "store.h"

#define DUET_BLOBRELAY_OBJECT     DUET_BLOBXFER_DATA_MAX /* 65577: every blob object's length */
#define DUET_BLOBRELAY_PIPELINE   32u                    /* requests in flight */
#define DUET_BLOBRELAY_AHEAD      24u /* units in flight each way (about 1.5 MiB) */
#define DUET_BLOBRELAY_MARK_EVERY 16u /* units between durable upload marks */
#define DUET_BLOBRELAY_OID_BYTES  DUET_RELAY_LABEL_BYTES

typedef struct duet_blobrelay duet_blobrelay_t;

typedef struct duet_blobrelay_stats {
    uint64_t units_up; /* units the relay newly stored for me */
    uint64_t bytes_up; /* their sealed bytes */
    uint64_t units_in; /* units fetched and stored here */
    uint64_t bytes_in; /* their sealed bytes */
    uint64_t blobs_in; /* the partner's blobs that became available here */
    uint64_t blobs_up; /* my blobs the relay now holds whole */
    uint64_t skipped;  /* blobs left for later (not there yet, damaged, busy elsewhere) */
} duet_blobrelay_stats_t;

/* The object id of unit k of blob id in the mailbox whose keys are d. */
void duet_blobrelay_oid(uint8_t oid[static DUET_BLOBRELAY_OID_BYTES], const duet_relay_dir_t *d,
                        const uint8_t id[static DUET_BLOB_ID_BYTES], uint32_t k);

/* A session over st (a paired home; it must outlive the engine) with the pair's relay keys
 * (copied, wiped at free). cb (may be NULL): progress of each blob, as core/blobxfer.h.
 * NULL when out of memory. */
duet_blobrelay_t *duet_blobrelay_new(duet_store_t *st, const duet_relay_keys_t *keys,
                                     const duet_blobxfer_callbacks_t *cb);
void duet_blobrelay_free(duet_blobrelay_t *br);

/* A frame from the relay. Returns the sticky error once failed. */
duet_err_t duet_blobrelay_recv(duet_blobrelay_t *br, const uint8_t *frame,
                               size_t len) DUET_MUST_CHECK;

/* The next frame to send (*len = 0: nothing now), valid until the next call on br. Also
 * writes what waits for the store, when no transaction is open. */
duet_err_t duet_blobrelay_next_frame(duet_blobrelay_t *br, const uint8_t **frame,
                                     size_t *len) DUET_MUST_CHECK;

/* New voice items arrived or were written (the relay_sync session beside this one stored
 * some): look again for blobs to fetch and to upload, blobs left earlier included. */
void duet_blobrelay_kick(duet_blobrelay_t *br);

/* The session is over: every request answered, nothing left to fetch or upload now (or
 * uploading was refused), everything recorded in the store. */
bool duet_blobrelay_done(const duet_blobrelay_t *br);

duet_err_t duet_blobrelay_error(const duet_blobrelay_t *br);

/* Why uploading stopped (DUET_EQUOTA, DUET_ETOOBIG, DUET_ENOSPC, DUET_EIO), DUET_OK if not. */
duet_err_t duet_blobrelay_upload_error(const duet_blobrelay_t *br);

void duet_blobrelay_stats(const duet_blobrelay_t *br, duet_blobrelay_stats_t *out);

#endif /* DUET_BLOBRELAY_H */
