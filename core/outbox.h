/*
 * duet — the outbox: my items sealed into envelopes, kept until the partner acknowledges
 * them, and the bookkeeping of what came in. Paths (a direct link, the relay) only move the
 * envelopes this module seals and hand received ones back to it.
 *
 * Sealing. Each item is sealed once, when it is written (or, for items written before
 * pairing, when the pairing completes), with the Double Ratchet (ratchet.h), numbered with
 * the next outgoing sequence number (1, 2, 3, ...), and stored with the ratchet state that
 * produced it in one transaction. It is then sent byte-identical over any path until the
 * partner's acknowledgement removes it.
 *
 *   envelope plaintext = pad(wire item)
 *   wire item          = msgpack {1: seq, 2: id (16 bytes), 3: kind, 4: hlc, 5: body (bin)}
 *   pad(x)             = x || 0x80 || 0x00...  up to the bucket (ISO/IEC 7816-4 padding)
 *   buckets            = envelopes of 512, 2048, 8192, 32768 or 98304 bytes, so an observer
 *                        of envelopes (the relay) cannot tell a short note from a check-in
 *   ratchet AD         = "duet envelope v1" || sender identity key || receiver identity key
 *
 * Receiving. The receiver keeps a contiguous watermark (meta "in_wm") plus the set of
 * sequence numbers above it (table inbound), checks a sequence number there before it
 * decrypts anything (dedup before decrypt), checks after decryption that the sequence number
 * inside the envelope is the one it came with (so a relay cannot shuffle labels), and
 * stores the item, the new receive state and the ratchet state in the batch's transaction.
 *
 * All functions that write run inside the caller's transaction unless they say otherwise.
 */
#ifndef DUET_OUTBOX_H
#define DUET_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "items.h"
#include "store.h"
#include "sync.h"

#define DUET_ENVELOPE_MAX 98304u

/* Events the host reports as they become durable (after the commit), for the daemon's
 * JSON Lines and `duet watch`. */
typedef enum {
    DUET_EV_RECEIVED = 1, /* a partner item arrived (visible kinds) */
    DUET_EV_DELIVERED,    /* one of my items was acknowledged */
    DUET_EV_READ,         /* the partner read one of my items */
    DUET_EV_CONTROL       /* a ritual, answer, reveal or agreement arrived */
} duet_outbox_event_t;

typedef void (*duet_outbox_event_fn)(void *ctx, duet_outbox_event_t ev,
                                     const uint8_t id[DUET_ITEM_ID_BYTES], uint32_t kind);

/* Envelopes not yet acknowledged by the partner: sealed envelopes in the outbox plus my
 * items still waiting to be sealed (written before pairing). Not a transaction. */
duet_err_t duet_outbox_count(duet_store_t *st, uint64_t *n) DUET_MUST_CHECK;

/*
 * Queue one of my items. A visible kind (items.h) is added to the conversation with status
 * queued and sealed at once when the device is paired (later otherwise); any other kind
 * needs a partner (DUET_ENOTPAIRED) and is sealed at once without an inbox line. id_out (16
 * bytes, may be NULL) receives the item id.
 */
duet_err_t duet_outbox_queue(duet_store_t *st, uint32_t kind, const uint8_t *body, size_t len,
                             uint64_t now_ms, uint8_t *id_out) DUET_MUST_CHECK;

/* Seal, in conversation order, my items written before pairing. A no-op when unpaired. */
duet_err_t duet_outbox_seal_pending(duet_store_t *st) DUET_MUST_CHECK;

/*
 * Mark the partner's unread items among items[0..n) as read and, when paired, queue one
 * read receipt naming them, so the partner sees them as read. Its own transaction.
 */
duet_err_t duet_inbox_mark_read(duet_store_t *st, const duet_item_t *items, size_t n,
                                uint64_t now_ms) DUET_MUST_CHECK;

/* ---- the sync host: durable state for sync.h (and the relay client) ------------------ */

typedef struct duet_outbox_host {
    duet_store_t *st;
    uint64_t (*now_ms)(void *clock_ctx); /* the wall clock, for the hybrid logical clock */
    void *clock_ctx;
    duet_outbox_event_fn on_event;       /* may be NULL */
    void *event_ctx;
    /* private */
    struct duet_ratchet *ratchet;        /* loaded for an open receive batch */
    struct duet_ratchet *ratchet_mem;    /* its memory, kept (cleared) between batches */
    uint8_t my_pk[32], partner_pk[32];
    uint8_t *envbuf;                     /* outbox_next's result */
    size_t envbuf_cap;
    uint8_t *plain;                      /* a decrypted envelope (sodium_malloc'd) */
    /* outbox_next reads ahead: up to 64 envelopes or 256 KiB per query; dropped whenever
     * acknowledgements delete rows. */
    struct duet_outbox_pre {
        uint64_t seq;
        size_t off, len;
    } pre[64];
    size_t npre;
    uint64_t pre_from; /* the `after` the read-ahead was made for */
    uint8_t *prebuf;
    bool batch_open;
    /* The receive state while a batch is open, kept here and written once at its commit:
     * the watermark, how many rows the inbound table holds, the largest timestamp seen. */
    uint64_t wm;
    uint64_t inbound_rows;
    uint64_t max_hlc;
    bool wm_dirty;
    struct duet_outbox_pending *pending; /* events held until the commit */
    size_t npending, cap_pending;
} duet_outbox_host_t;

/* Prepare a host over st (paired: DUET_ENOTPAIRED otherwise). */
duet_err_t duet_outbox_host_init(duet_outbox_host_t *h, duet_store_t *st,
                                 uint64_t (*now_ms)(void *), void *clock_ctx,
                                 duet_outbox_event_fn on_event, void *event_ctx) DUET_MUST_CHECK;
void duet_outbox_host_dispose(duet_outbox_host_t *h);

/* The sync.h host interface backed by h. */
duet_sync_host_t duet_outbox_sync_host(duet_outbox_host_t *h);

/* The same functions, for the relay client, which moves envelopes by other means. */
duet_err_t duet_outbox_recv_state(duet_outbox_host_t *h, uint64_t *wm, uint64_t *above,
                                  size_t cap, size_t *n) DUET_MUST_CHECK;
duet_err_t duet_outbox_next(duet_outbox_host_t *h, uint64_t after, uint64_t *seq,
                            const uint8_t **env, size_t *len) DUET_MUST_CHECK;
duet_err_t duet_outbox_recv_begin(duet_outbox_host_t *h) DUET_MUST_CHECK;
duet_err_t duet_outbox_recv_put(duet_outbox_host_t *h, uint64_t seq, const uint8_t *env,
                                size_t len, bool *counted) DUET_MUST_CHECK;
duet_err_t duet_outbox_recv_commit(duet_outbox_host_t *h) DUET_MUST_CHECK;
void duet_outbox_recv_abort(duet_outbox_host_t *h);
duet_err_t duet_outbox_acked(duet_outbox_host_t *h, uint64_t wm, const uint64_t *above, size_t n,
                             uint64_t *items) DUET_MUST_CHECK;

/* The relay's progress on the outbox: which envelopes it has durably stored (so a sync
 * through the relay can finish while the partner is offline). Own transaction each. */
duet_err_t duet_outbox_mark_relayed(duet_store_t *st, uint64_t seq) DUET_MUST_CHECK;
duet_err_t duet_outbox_next_unrelayed(duet_outbox_host_t *h, uint64_t after, uint64_t *seq,
                                      const uint8_t **env, size_t *len) DUET_MUST_CHECK;

#endif /* DUET_OUTBOX_H */
