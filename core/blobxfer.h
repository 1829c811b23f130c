/*
 * duet — the blob transfer engine: sealed voice blobs (core/blob.h) moving between the two
 * partners, resumable, on the same link as the sync engine (core/sync.h). Sans-I/O after
 * picotls/quicly: frames in, frames out, no sockets, no clocks.
 *
 * Each side runs one engine per link; it plays both roles at once:
 *  - receiver of the partner's blobs this home wants (core/voice.h: rows of the blobs table
 *    that are the partner's and partial), one blob at a time in the order they were
 *    recorded; it asks with WANT from where its partial file ends, after the partial file
 *    has been checked chunk by chunk (duet_blob_recv_open), so a crash, a kill or a byte
 *    flipped on disk costs at most the chunks from the first bad one on;
 *  - sender of my blobs the partner asks for, one blob at a time, from a reader on the
 *    sealed file.
 *
 * Frames (docs/protocol/blob.md, "Transfer", has the bytes), msgpack maps keyed by small
 * integers, key 0 the type, written first:
 *
 *   WANT    {0: 16, 1: id, 2: gen, 3: offset, 4: end}   send me [offset, end) of blob id;
 *                                                       replaces any earlier WANT
 *   DATA    {0: 17, 1: id, 2: gen, 3: offset, 4: bytes} sealed bytes at offset, at most one
 *                                                       storage unit (<= 65577 bytes)
 *   MORE    {0: 18, 1: id, 2: gen, 3: end}              the window moves: go on up to end
 *   NOTHERE {0: 19, 1: id, 2: gen}                      I do not have blob id
 *   STATE   {0: 20, 1: wanting}                         I still want `wanting` blobs from you
 *
 * Flow control is the receiver's: it asks at most DUET_BLOBXFER_WINDOW sealed bytes (rounded up
 * to a whole storage unit, so that every DATA frame is one unit) ahead of
 * what it has stored and moves the window with MORE as chunks are stored. `gen` numbers the
 * receiver's WANTs: DATA of an older WANT is stale and ignored, so a restart (after a chunk
 * that failed its check, or a gap) never mixes with what was already on its way. The link
 * below is reliable and ordered; the engine still copes with duplicated, reordered or lost
 * DATA (a gap makes the receiver ask again from where it is); a lost tail is recovered by
 * the next link, as happens anyway when a connection breaks.
 *
 * Completion: each side sends STATE at the start and whenever the number of blobs it still
 * wants from the partner changes, always before the sync engine's ACK of the batch that made
 * it change (the session pumps control frames first), and STATE 0 only after the last blob
 * is durably available. duet_blobxfer_done() is true when the partner wants nothing more
 * and this side has nothing more to fetch. A STATE 0 that comes after I sent the last byte
 * of one of my blobs also says the partner holds that blob: the next flush records it
 * (duet_voice_set_held) so that the relay is spared it (beyond DUET_BLOBXFER_SERVED_MAX
 * blobs per link nothing is recorded, and the relay carries a blob the partner has).
 *
 * Store and files: the engine reads and writes the blobs table and the files of
 * HOME/blobs/ through core/voice.h and core/blob.h. duet_blobxfer_recv() never writes to the
 * store (it may run inside the sync engine's open batch); what needs a write (a blob
 * becoming available) waits for duet_blobxfer_flush(), which the caller runs when no other
 * transaction is open. Chunks are written without fsync (a resume re-checks them); a blob
 * becomes available only after duet_blob_recv_finish() has verified its id, fsync'd and
 * renamed it, and the row is committed.
 *
 * Errors: the peer's protocol errors (a malformed frame, a WANT past the end of the blob)
 * and local failures (disk full, the store) are sticky: every call returns the error and
 * the caller closes the link. Bad data is not an error: a chunk that fails its check is
 * asked again (at most DUET_BLOBXFER_REFETCH_MAX times per blob and link, then the blob
 * waits for another link), a blob the partner does not have waits for another link.
 *
 * Memory: about 200 KiB per engine whatever the blob sizes (a frame encoder, a read
 * buffer, the core/blob receiver's unit and scratch).
 */
#ifndef DUET_BLOBXFER_H
#define DUET_BLOBXFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blob.h"
#include "err.h"
#include "items.h"
#include "store.h"

#define DUET_BLOBXFER_TYPE_MIN    16u /* frame types of this engine: 16..31 */
#define DUET_BLOBXFER_TYPE_MAX    31u
#define DUET_BLOBXFER_DATA_MAX    (DUET_BLOB_HEADER_BYTES + DUET_BLOB_SEALED_CHUNK) /* 65577 */
#define DUET_BLOBXFER_FRAME_MAX   (DUET_BLOBXFER_DATA_MAX + 64u)
#define DUET_BLOBXFER_WINDOW      (2u << 20) /* sealed bytes asked ahead of what is stored */
#define DUET_BLOBXFER_REFETCH_MAX 8u         /* bad chunks asked again, per blob and link */
#define DUET_BLOBXFER_SERVED_MAX  256u       /* my blobs sent whole, awaiting STATE 0 */
#define DUET_BLOBXFER_SEALED_MAX                                                                   \
    (DUET_BLOB_HEADER_BYTES + DUET_BLOB_MAX +                                                      \
     DUET_BLOB_ABYTES * (DUET_BLOB_MAX / DUET_BLOB_CHUNK)) /* 52442424: the largest blob */

typedef enum {
    DUET_BLOBXFER_WANT = 16,
    DUET_BLOBXFER_DATA = 17,
    DUET_BLOBXFER_MORE = 18,
    DUET_BLOBXFER_NOTHERE = 19,
    DUET_BLOBXFER_STATE = 20
} duet_blobxfer_type_t;

/* One frame, parsed. data points into the frame that was parsed. */
typedef struct duet_blobxfer_frame {
    duet_blobxfer_type_t type;
    uint8_t id[DUET_BLOB_ID_BYTES]; /* all but STATE */
    uint32_t gen;                   /* all but STATE; >= 1 */
    uint64_t offset;                /* WANT, DATA */
    uint64_t end;                   /* WANT, MORE */
    uint64_t wanting;               /* STATE */
    const uint8_t *data;            /* DATA: 1..DUET_BLOBXFER_DATA_MAX bytes */
    size_t len;
} duet_blobxfer_frame_t;

/* Progress of one blob, for progress bars and events. */
typedef struct duet_blobxfer_progress {
    bool incoming; /* the partner's blob arriving here, or mine leaving */
    uint8_t item[DUET_ITEM_ID_BYTES];
    uint64_t bytes; /* sealed bytes stored here (in) / sent so far (out) */
    uint64_t total; /* sealed size */
    bool complete;  /* in: available here now; out: the last byte is sent */
} duet_blobxfer_progress_t;

typedef struct duet_blobxfer_callbacks {
    void *ctx;
    /* Called as a blob starts, after every DATA frame, and when it completes. May be NULL. */
    void (*on_progress)(void *ctx, const duet_blobxfer_progress_t *p);
} duet_blobxfer_callbacks_t;

typedef struct duet_blobxfer_stats {
    uint64_t bytes_in;  /* DATA bytes received on this engine (stale ones included) */
    uint64_t bytes_out; /* DATA bytes sent */
    uint64_t blobs_in;  /* the partner's blobs that became available here */
    uint64_t refetches; /* chunks that failed their check and were asked again */
    uint64_t restarts;  /* WANTs sent again after a gap (never on a healthy link) */
    uint64_t skipped;   /* blobs left for another link (not there, damaged, busy) */
} duet_blobxfer_stats_t;

typedef struct duet_blobxfer duet_blobxfer_t;

/* ---- frames -------------------------------------------------------------------------- */

/*
 * The blob engine's frame type of frame[0..len) judged from its first bytes alone (a map
 * header, key 0, a positive fixint in 16..31), 0 when the frame is not one of ours (it
 * belongs to the sync engine, which judges it). For routing on a shared link.
 */
uint32_t duet_blobxfer_frame_type(const uint8_t *frame, size_t len);

/* Parse one frame strictly (exact keys and types, limits above). DUET_EPROTO otherwise;
 * *out is zeroed then. */
duet_err_t duet_blobxfer_parse(const uint8_t *frame, size_t len,
                               duet_blobxfer_frame_t *out) DUET_MUST_CHECK;

/* ---- the engine ---------------------------------------------------------------------- */

/* A new engine over st (a paired home; the store must outlive the engine). NULL when out
 * of memory. cb may be NULL. */
duet_blobxfer_t *duet_blobxfer_new(duet_store_t *st, const duet_blobxfer_callbacks_t *cb);

/* Free; a blob arriving keeps its partial file for the next link. NULL is a no-op. */
void duet_blobxfer_free(duet_blobxfer_t *bx);

/* Start: find the first wanted blob (this may verify its partial file, or finish a blob a
 * crash left complete: a transaction of its own), queue STATE and WANT. Call once, when no
 * transaction is open. */
duet_err_t duet_blobxfer_start(duet_blobxfer_t *bx) DUET_MUST_CHECK;

/* Feed one frame of ours (duet_blobxfer_frame_type() != 0). Never writes to the store. */
duet_err_t duet_blobxfer_recv(duet_blobxfer_t *bx, const uint8_t *frame,
                              size_t len) DUET_MUST_CHECK;

/* New partner items may have been stored (a voice item arrived): look again at the next
 * flush. */
void duet_blobxfer_refresh(duet_blobxfer_t *bx);

/* Commit what the last frames finished (blobs now available), move on to the next wanted
 * blob, and queue STATE if the count changed. Call after every batch of frames, when no
 * other transaction is open on the store (after duet_sync_flush), before pulling frames. */
duet_err_t duet_blobxfer_flush(duet_blobxfer_t *bx) DUET_MUST_CHECK;

/* Whether something waits for duet_blobxfer_flush() (a refresh, a finished blob, blobs the
 * partner confirmed): until
 * then, the caller holds back the sync engine's frames, so that an ACK of the batch that
 * stored a voice item never overtakes the STATE announcing its blob. */
bool duet_blobxfer_needs_flush(const duet_blobxfer_t *bx);

/* The next control frame (STATE, NOTHERE, WANT, MORE), or *len = 0. Send these before the
 * sync engine's frames. Valid until the next call on bx. */
duet_err_t duet_blobxfer_next_control(duet_blobxfer_t *bx, const uint8_t **frame,
                                      size_t *len) DUET_MUST_CHECK;

/* The next DATA frame, or *len = 0. Bulk: send after the sync engine's frames, while the
 * link has room. Valid until the next call on bx. */
duet_err_t duet_blobxfer_next_data(duet_blobxfer_t *bx, const uint8_t **frame,
                                   size_t *len) DUET_MUST_CHECK;

/* True when the partner has said it wants nothing more from me and I have nothing more to
 * fetch on this link (blobs left for another link do not count), everything finished is
 * committed, and no control frame waits. */
bool duet_blobxfer_done(const duet_blobxfer_t *bx);

/* The sticky error (DUET_OK while healthy). */
duet_err_t duet_blobxfer_error(const duet_blobxfer_t *bx);

/* Counters of this engine. */
void duet_blobxfer_stats(const duet_blobxfer_t *bx, duet_blobxfer_stats_t *out);

#endif /* DUET_BLOBXFER_H */
