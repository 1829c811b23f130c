/*
 * duet — the sync engine: exactly-once delivery of sealed envelopes between two partners
 * over one authenticated, ordered link. Sans-I/O, after picotls/quicly: frames in, frames
 * out, no sockets, no clocks.
 *
 * Each device numbers its outgoing envelopes 1, 2, 3, ... (outbox.h). The receiver keeps a
 * contiguous watermark W (every sequence number <= W has been stored) plus the set of those
 * above W that it has stored. The protocol (docs/protocol.md, "Sync"):
 *
 *   HELLO    {0: 1, 1: version, 2: W, 3: [above...], 4: out_last}  each side, first
 *   ENVELOPE {0: 2, 1: seq, 2: envelope}                             as many as needed
 *   ACK      {0: 3, 1: W, 2: [above...]}                             after a durable commit
 *   HAVE     {0: 4, 1: out_last}                                     new items queued
 *   ERROR    {0: 5, 1: code, 2: version}                             then the link closes
 *
 * A sender sends, in order, every outbox envelope the peer's HELLO or ACK does not already
 * cover, keeping at most DUET_SYNC_WINDOW bytes of envelopes unacknowledged on the link
 * (flow control). A receiver stores received envelopes through the host in one transaction
 * per batch and acknowledges the batch only after the host has committed it durably; a crash
 * before the commit loses the batch on this side and the sender sends it again, a crash
 * after it loses at most the ACK and the next HELLO carries W instead. Duplicates are
 * recognised from the sequence number before anything is decrypted.
 *
 * The engine keeps no items itself: the host (duet_sync_host_t, implemented on the store by
 * outbox.c) owns the outbox and the receive state, so the engine and its tests see the same
 * durable state a crash would leave.
 *
 * Output: duet_sync_next_frame() hands out the next frame to send, valid until the next call
 * on the engine. The link pulls frames only while its socket has room (backpressure); the
 * engine never queues envelopes beyond the window.
 *
 * Errors: a malformed frame, a frame out of order, or a version the engine does not speak
 * is a sticky error (DUET_EPROTO, DUET_EVERSION); the engine queues an ERROR frame for the
 * peer, and the caller closes the link after sending it.
 */
#ifndef DUET_SYNC_H
#define DUET_SYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define DUET_SYNC_VERSION 1u
#define DUET_SYNC_MAX_ABOVE 1024u       /* sequence numbers tracked above the watermark */
#define DUET_SYNC_WINDOW (1u << 20)     /* unacknowledged envelope bytes in flight */
#define DUET_SYNC_MAX_ENVELOPE 98304u   /* 96 KiB: the largest padded envelope */
#define DUET_SYNC_MAX_FRAME (DUET_SYNC_MAX_ENVELOPE + 64u)
#define DUET_SYNC_BATCH_MAX 512u        /* envelopes committed in one transaction */

/* The host: durable state, implemented on the store (outbox.c) or in memory in tests. */
typedef struct duet_sync_host {
    void *ctx;
    /* My receive state: the watermark and up to cap sequence numbers above it, ascending. */
    duet_err_t (*recv_state)(void *ctx, uint64_t *wm, uint64_t *above, size_t cap, size_t *n);
    /* The last sequence number I have assigned (0 if none). */
    duet_err_t (*out_last)(void *ctx, uint64_t *last);
    /* The first outbox envelope with a sequence number > after: DUET_ENOENT if none. *env is
     * valid until the next host call. */
    duet_err_t (*outbox_next)(void *ctx, uint64_t after, uint64_t *seq, const uint8_t **env,
                              size_t *len);
    /* Receiving: open a transaction, store one envelope, commit it durably, or abandon it.
     * put returns DUET_EDUP for one already stored (nothing changes), DUET_EAUTH or
     * DUET_EDECODE for one that does not open (nothing changes, it is not acknowledged),
     * DUET_ERANGE for one too far ahead of the watermark (not stored now; sent again later).
     * *counted says whether it was an item (a note, a voice note, a check-in record) rather
     * than a receipt. */
    duet_err_t (*recv_begin)(void *ctx);
    duet_err_t (*recv_put)(void *ctx, uint64_t seq, const uint8_t *env, size_t len,
                           bool *counted);
    duet_err_t (*recv_commit)(void *ctx);
    void (*recv_abort)(void *ctx);
    /* The peer holds everything <= wm and above[0..n): drop those from the outbox; *items is
     * the number of items among them newly acknowledged. */
    duet_err_t (*acked)(void *ctx, uint64_t wm, const uint64_t *above, size_t n,
                        uint64_t *items);
} duet_sync_host_t;

typedef struct duet_sync duet_sync_t;

/* A new engine over host. NULL when out of memory. */
duet_sync_t *duet_sync_new(const duet_sync_host_t *host);
void duet_sync_free(duet_sync_t *s);

/* Start: queues our HELLO. DUET_OK or a host error. */
duet_err_t duet_sync_start(duet_sync_t *s) DUET_MUST_CHECK;

/* Feed one frame received from the peer. Envelopes are stored in the current batch; call
 * duet_sync_flush when no more frames are immediately available. Returns the sticky error
 * if the engine has failed. */
duet_err_t duet_sync_recv(duet_sync_t *s, const uint8_t *frame, size_t len) DUET_MUST_CHECK;

/* Commit the current batch durably and queue its ACK. A host error (disk full) fails the
 * engine: nothing of the batch is acknowledged. */
duet_err_t duet_sync_flush(duet_sync_t *s) DUET_MUST_CHECK;

/* The outbox has grown (a note was written while connected): send it, announce out_last. */
duet_err_t duet_sync_kick(duet_sync_t *s) DUET_MUST_CHECK;

/* The next frame to send, or *len = 0 when there is nothing to send now. The frame is valid
 * until the next call on s. */
duet_err_t duet_sync_next_frame(duet_sync_t *s, const uint8_t **frame,
                                size_t *len) DUET_MUST_CHECK;

/* The sticky error (DUET_OK while healthy). */
duet_err_t duet_sync_error(const duet_sync_t *s);

/* The error the peer reported in an ERROR frame, and its version (0 if none). */
duet_err_t duet_sync_peer_error(const duet_sync_t *s, uint32_t *peer_version);

/* True when both HELLOs have crossed, everything in my outbox is acknowledged, I hold every
 * envelope the peer has announced, and no batch is waiting for its commit. */
bool duet_sync_done(const duet_sync_t *s);

/* Items (not receipts) newly acknowledged by the peer and newly received, on this link. */
uint64_t duet_sync_items_sent(const duet_sync_t *s);
uint64_t duet_sync_items_received(const duet_sync_t *s);

/* Whether the engine holds received envelopes not yet committed (the link calls flush). */
bool duet_sync_batch_open(const duet_sync_t *s);

#endif /* DUET_SYNC_H */
