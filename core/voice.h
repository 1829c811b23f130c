/*
 * duet — voice notes: the voice item (kind 2) and the blobs a home holds or wants.
 *
 * A voice note is two things (docs/protocol/blob.md, "The voice item"):
 *  - an item of kind DUET_KIND_VOICE whose body is the blob reference plus an optional
 *    caption, {1: caption, 2: id, 3: key, 4: size, 5: mime, 6: duration_ms}; it travels
 *    sealed in an envelope like every item, so the blob key never leaves the end-to-end
 *    encryption;
 *  - a sealed blob (core/blob.h) in HOME/blobs/<64 hex digits of the blob id>, mode 0600,
 *    moved separately by core/blobxfer.h.
 *
 * The table blobs (store migration 4) has one row per blob id: whether it is mine or the
 * partner's, its state (partial: wanted, not all here; available: complete, verified and
 * renamed to its final name), the plaintext size, the item that names it, and, for the
 * partner's blobs, how many sealed bytes this device has taken in for it (see "fetched").
 * For my blobs, `relayed` counts the storage units the relay holds (core/blobrelay.h).
 * Keys are never stored outside the sealed item bodies: whoever needs a blob's key reads the
 * item (duet_voice_load).
 *
 * Files of a blob, all in HOME/blobs/ (the folder is created 0700 on first use):
 *   <hex>        the complete sealed blob (mine, or the partner's once available)
 *   <hex>.part   the partner's blob while it arrives (core/blob.h receiver, resumable)
 *   <hex>.rx     8 bytes, little-endian: sealed bytes taken in for it so far, over every
 *                session, counted before they are used (so a crash can only overcount);
 *                folded into blobs.fetched when the blob becomes available
 *
 * Conventions of this module:
 *  - core/ does file I/O here only under the home's blobs/ folder and on the paths the
 *    caller names (the file to send, the file to save to).
 *  - Functions that write to the store run inside the caller's transaction, except those
 *    that say "own transaction" (they seal or open files, which must not hold the
 *    database's write lock for the time it takes).
 *  - duet_voice_t holds the blob key: dispose it (sodium_memzero) after use.
 */
#ifndef DUET_VOICE_H
#define DUET_VOICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "audio.h"
#include "blob.h"
#include "err.h"
#include "items.h"
#include "store.h"

#define DUET_VOICE_CAPTION_MAX 4096u /* bytes of UTF-8 in a caption */
#define DUET_VOICE_BODY_MAX    (DUET_VOICE_CAPTION_MAX + 256u)
#define DUET_VOICE_PATH_MAX    DUET_BLOB_PATH_MAX

/* A voice item's body, decoded. */
typedef struct duet_voice {
    duet_blob_ref_t ref;                      /* id, key (secret), size, mime, duration */
    char caption[DUET_VOICE_CAPTION_MAX + 1]; /* NUL-terminated; "" when there is none */
    size_t caption_len;
} duet_voice_t;

typedef enum { DUET_VOICE_PARTIAL = 0, DUET_VOICE_AVAILABLE = 1 } duet_voice_state_t;

/* One row of the blobs table. */
typedef struct duet_voice_blob {
    uint64_t n; /* insertion order */
    uint8_t id[DUET_BLOB_ID_BYTES];
    uint8_t item[DUET_ITEM_ID_BYTES];
    bool mine;
    duet_voice_state_t state;
    uint64_t size;    /* plaintext bytes */
    uint64_t fetched; /* sealed bytes taken in (partner's, once available) */
    uint64_t relayed; /* mine: storage units the relay holds, from the first */
} duet_voice_blob_t;

/* ---- the voice item body ------------------------------------------------------------- */

/*
 * Encode v as a voice item body (malloc'd, the caller wipes and frees it: it holds the key).
 * The caption must be 0..DUET_VOICE_CAPTION_MAX bytes of UTF-8 (DUET_ETOOBIG, DUET_EUTF8);
 * 0 bytes writes no caption. The reference must pass duet_blob_ref_check and have size >= 1.
 */
duet_err_t duet_voice_encode(const duet_voice_t *v, uint8_t **body, size_t *len) DUET_MUST_CHECK;

/*
 * Decode a voice item body. Strict: the map has exactly the keys above (1 optional), id and
 * key 32 bytes, size 1..DUET_BLOB_MAX, mime as duet_blob_ref_check, duration at most
 * DUET_AUDIO_MAX_DURATION_MS, caption 1..DUET_VOICE_CAPTION_MAX bytes of UTF-8 when
 * present. Anything else is DUET_EDECODE; *v is then zeroed.
 */
duet_err_t duet_voice_decode(const uint8_t *body, size_t len, duet_voice_t *v) DUET_MUST_CHECK;

/* Wipe v (its key). */
void duet_voice_dispose(duet_voice_t *v);

/* ---- writing one --------------------------------------------------------------------- */

/*
 * Queue a voice note from the audio file at path. Own transaction. The file is checked
 * (DUET_ENOENT, DUET_EPERM; DUET_EEMPTY for 0 bytes; DUET_ETOOBIG over DUET_BLOB_MAX;
 * DUET_ENOTAUDIO for anything core/audio.h does not accept), sealed into HOME/blobs/<hex>
 * with a fresh key from the store's rng, and then, in one transaction, the item is queued
 * (outbox.h) and the blob recorded as mine and available. The input file is only read. On
 * any failure nothing is queued and no blob file is left behind. caption as in
 * duet_voice_encode. item_id (16 bytes) receives the item id; info (may be NULL) the audio's
 * kind and duration.
 */
duet_err_t duet_voice_add(duet_store_t *st, const char *path, const char *caption,
                          size_t caption_len, uint64_t now_ms, uint8_t item_id[DUET_ITEM_ID_BYTES],
                          duet_audio_info_t *info) DUET_MUST_CHECK;

/* ---- receiving ----------------------------------------------------------------------- */

/*
 * A voice item from the partner is being stored (outbox.c, in the batch's transaction):
 * record its blob as wanted (partial). A blob id already known keeps its row. DUET_EDECODE
 * for a body that does not decode (the caller then keeps the item out of the store).
 */
duet_err_t duet_voice_on_item(duet_store_t *st, const uint8_t item_id[DUET_ITEM_ID_BYTES],
                              const uint8_t *body, size_t len) DUET_MUST_CHECK;

/* The first partner blob still wanted with n > after (insertion order): DUET_ENOENT if
 * none. And how many there are. */
duet_err_t duet_voice_next_wanted(duet_store_t *st, uint64_t after,
                                  duet_voice_blob_t *b) DUET_MUST_CHECK;
duet_err_t duet_voice_count_wanted(duet_store_t *st, uint64_t after, uint64_t *n) DUET_MUST_CHECK;

/* The blob a partner blob row says is now complete: state available, fetched recorded, the
 * .rx file removed (after the commit is not needed: a stale .rx is ignored). */
duet_err_t duet_voice_mark_available(duet_store_t *st, const uint8_t id[DUET_BLOB_ID_BYTES],
                                     uint64_t fetched) DUET_MUST_CHECK;

/* ---- looking things up --------------------------------------------------------------- */

/* The row of blob id: DUET_ENOENT if the home does not know it. */
duet_err_t duet_voice_blob(duet_store_t *st, const uint8_t id[DUET_BLOB_ID_BYTES],
                           duet_voice_blob_t *b) DUET_MUST_CHECK;

/*
 * The voice note of an item: its decoded body (with the key) and its blob's row. DUET_ENOENT
 * for an unknown item, DUET_EINVAL for an item that is not a voice note, DUET_ECORRUPT for
 * a body or a row that does not fit. b may be NULL.
 */
duet_err_t duet_voice_load(duet_store_t *st, const uint8_t item_id[DUET_ITEM_ID_BYTES],
                           duet_voice_t *v, duet_voice_blob_t *b) DUET_MUST_CHECK;

/* Every blob row, in insertion order (malloc'd; free()). At most DUET_ITEMS_LIST_MAX. */
duet_err_t duet_voice_blobs(duet_store_t *st, duet_voice_blob_t **out, size_t *n) DUET_MUST_CHECK;

/* The path of a blob's file: suffix "" (the blob), ".part" or ".rx". DUET_ETOOBIG when it
 * does not fit cap. */
duet_err_t duet_voice_path(duet_store_t *st, const uint8_t id[DUET_BLOB_ID_BYTES],
                           const char *suffix, char *out, size_t cap) DUET_MUST_CHECK;

/* Create HOME/blobs (0700) if it is absent. */
duet_err_t duet_voice_mkdir(duet_store_t *st) DUET_MUST_CHECK;

/* Sealed bytes of a partner blob on disk so far (the .part file's size; the sealed size
 * once available) and the sealed bytes taken in for it (blobs.fetched, or the .rx count
 * while it arrives). Either may be NULL. */
duet_err_t duet_voice_progress(duet_store_t *st, const duet_voice_blob_t *b, uint64_t *have,
                               uint64_t *fetched) DUET_MUST_CHECK;

/* The .rx counter file: read it (0 when absent or damaged). */
uint64_t duet_voice_rx_read(const char *rx_path);

/* ---- taking up a partner blob for receiving (core/blobxfer.h, core/blobrelay.h) ------- */

/* A partner blob being received by one link or path. */
typedef struct duet_voice_rx {
    duet_voice_blob_t row;
    duet_blob_recv_t *recv; /* core/blob.h receiver on the .part file */
    int fd;                 /* the .rx counter, locked (flock) while this rx lives */
    uint64_t count;         /* its value */
} duet_voice_rx_t;

/*
 * Take up the wanted blob row for receiving: lock its .rx counter (DUET_EAGAIN when another
 * link, of this process or another, receives it now), load its reference from its item
 * (DUET_ECORRUPT when that is not usable: leave the blob), and check what is on disk with
 * duet_blob_recv_open (every stored unit is checked; a damaged one and those after it are
 * cut off). *ready when it is complete already (a crash came between the last unit and the
 * commit that makes it available): then rx->recv is NULL and only rx->count counts; commit
 * with duet_voice_mark_available. On error *rx holds nothing.
 */
duet_err_t duet_voice_rx_open(duet_store_t *st, const duet_voice_blob_t *row, duet_voice_rx_t *rx,
                              bool *ready) DUET_MUST_CHECK;

/* Count n more sealed bytes taken in, durably against a crash of this process (pwrite, no
 * fsync), before they are used. DUET_EIO if the counter cannot be written. */
duet_err_t duet_voice_rx_count(duet_voice_rx_t *rx, uint64_t n) DUET_MUST_CHECK;

/* Let the blob go (the partial file stays, the lock is released). Safe on a zeroed rx whose
 * fd is -1, and twice. */
void duet_voice_rx_close(duet_voice_rx_t *rx);

/* ---- the relay path (core/blobrelay.h) ------------------------------------------------ */

/* The first of my blobs with n > after that the relay should hold and does not hold whole
 * yet: available, relayed < its unit count, and not known to be held by the partner
 * (duet_voice_set_held). An acknowledged item says nothing about its blob: the partner may
 * have the envelope from the relay and be waiting there for the sound. DUET_ENOENT if none. */
duet_err_t duet_voice_next_to_relay(duet_store_t *st, uint64_t after,
                                    duet_voice_blob_t *b) DUET_MUST_CHECK;

/* Record that the partner holds the blob of my item whole (it said so on a direct link,
 * core/blobxfer.h): the relay need not carry it. Caller's transaction. */
duet_err_t duet_voice_set_held(duet_store_t *st,
                               const uint8_t item[DUET_ITEM_ID_BYTES]) DUET_MUST_CHECK;

/* Record that the relay holds units [0, units) of my blob id. Caller's transaction. */
duet_err_t duet_voice_set_relayed(duet_store_t *st, const uint8_t id[DUET_BLOB_ID_BYTES],
                                  uint64_t units) DUET_MUST_CHECK;

/* ---- saving -------------------------------------------------------------------------- */

/*
 * Write the original bytes of the voice note of item_id to out_path (duet_blob_open: the
 * whole blob is verified against its id, then decrypted; out_path is replaced atomically).
 * DUET_ENOTHERE while the blob has not fully arrived. If a partner's blob turns out damaged
 * on this device (DUET_EBLOB) or its file is missing (then DUET_ENOTHERE), it is marked
 * wanted again, its file turned back into a partial one so the next sync checks it chunk by
 * chunk and fetches again from the first bad chunk, and *refetch is set (own transaction).
 * A missing file of my own voice note is DUET_ENOENT. refetch may be NULL.
 */
duet_err_t duet_voice_save(duet_store_t *st, const uint8_t item_id[DUET_ITEM_ID_BYTES],
                           const char *out_path, bool *refetch) DUET_MUST_CHECK;

#endif /* DUET_VOICE_H */
