/*
 * duet — the relay client's session engine: moves a device's envelopes and
 * acknowledgements through a relay's two mailboxes for the pair. Sans-I/O: frames from the
 * relay in, frames to the relay out; net/relay_client moves them over a Noise_NK link.
 *
 * A cycle (docs/protocol/relay.md, "Sync through a relay"):
 *
 *   1. HELLO, then (daemon mode) SUBSCRIBE to the mailbox this device reads.
 *   2. Download: GET the partner's state object and hand it to the host as an ACK
 *      (host.acked: my items turn delivered); LIST the envelopes in pages, GET each, store
 *      them through the host in one transaction per page, and only after that commit
 *      DELETE them from the relay. Envelopes that do not open are left (the relay's TTL
 *      removes them); envelopes too far ahead of the watermark are left for a later cycle.
 *   3. Publish this device's receive state (after a download that stored something, and
 *      once per session): one fixed-size sealed object that replaces the previous one.
 *   4. Upload every envelope the relay does not hold yet (host.next_unrelayed), pipelined;
 *      host.mark_relayed(seq) after the relay's OK, which the relay sends only once the
 *      envelope is durable.
 *
 * One-shot mode stops after one cycle (duet_relay_sync_done); daemon mode stays subscribed
 * and starts a download on NOTIFY and an upload on duet_relay_sync_kick.
 *
 * Errors: a relay that breaks the protocol, refuses a capability or reports a fatal error
 * fails the engine (sticky, duet_relay_sync_error). A refused upload (quota, size, the
 * relay's disk) does not: uploading pauses and duet_relay_sync_upload_error says why, so a
 * one-shot sync can report it and a daemon can go on receiving.
 *
 * Output: duet_relay_sync_next_frame hands out the next frame, valid until the next call on
 * the engine. The engine keeps at most DUET_RELAY_SYNC_PIPELINE requests unanswered.
 */
#ifndef DUET_RELAY_SYNC_H
#define DUET_RELAY_SYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "relay.h"
#include "rng.h"

#define DUET_RELAY_SYNC_PIPELINE     64u        /* requests in flight */
#define DUET_RELAY_SYNC_UPLOAD_BYTES (4u << 20) /* envelope bytes in flight */
#define DUET_RELAY_SYNC_MAX_FETCH    20000u     /* envelopes one one-shot cycle downloads */
#define DUET_RELAY_SYNC_MAX_ABOVE    1024u      /* receive state numbers above the watermark */

/* The durable state behind the engine: the outbox (outbox.h, through net/relay_client's
 * adapter) or a test double. The functions mean what their duet_outbox_* namesakes say. */
typedef struct duet_relay_host {
    void *ctx;
    duet_err_t (*recv_state)(void *ctx, uint64_t *wm, uint64_t *above, size_t cap, size_t *n);
    /* First envelope with seq > after that the relay does not hold; DUET_ENOENT if none.
     * *env is valid until the next host call. */
    duet_err_t (*next_unrelayed)(void *ctx, uint64_t after, uint64_t *seq, const uint8_t **env,
                                 size_t *len);
    duet_err_t (*mark_relayed)(void *ctx, uint64_t seq);
    duet_err_t (*recv_begin)(void *ctx);
    duet_err_t (*recv_put)(void *ctx, uint64_t seq, const uint8_t *env, size_t len, bool *counted);
    duet_err_t (*recv_commit)(void *ctx);
    void (*recv_abort)(void *ctx);
    duet_err_t (*acked)(void *ctx, uint64_t wm, const uint64_t *above, size_t n, uint64_t *items);
} duet_relay_host_t;

typedef struct duet_relay_sync duet_relay_sync_t;

/* A session over host with the pair's keys (copied; wiped at free). stay: daemon mode.
 * NULL when out of memory. */
duet_relay_sync_t *duet_relay_sync_new(const duet_relay_host_t *host, const duet_relay_keys_t *keys,
                                       duet_rng_t rng, bool stay);
void duet_relay_sync_free(duet_relay_sync_t *s);

/* A frame from the relay. Returns the sticky error once failed. */
duet_err_t duet_relay_sync_recv(duet_relay_sync_t *s, const uint8_t *frame,
                                size_t len) DUET_MUST_CHECK;

/* The next frame to send (*len = 0: nothing now), valid until the next call on s. */
duet_err_t duet_relay_sync_next_frame(duet_relay_sync_t *s, const uint8_t **frame,
                                      size_t *len) DUET_MUST_CHECK;

/* The outbox has grown: upload (daemon mode; in one-shot mode before done, harmless). */
void duet_relay_sync_kick(duet_relay_sync_t *s);

/* Send a PING with the next frames (keepalive for a quiet subscription). */
void duet_relay_sync_ping(duet_relay_sync_t *s);

/* One-shot: the cycle is over (everything answered). Daemon: nothing is in progress. */
bool duet_relay_sync_done(const duet_relay_sync_t *s);

/* Whether the relay has answered HELLO (the link, its key and version are good). */
bool duet_relay_sync_welcomed(const duet_relay_sync_t *s);

duet_err_t duet_relay_sync_error(const duet_relay_sync_t *s);
duet_err_t duet_relay_sync_upload_error(const duet_relay_sync_t *s);

/* Counters for this session: envelopes the relay newly stored for us, partner items stored
 * here, my items newly acknowledged by the partner, envelopes that did not open. */
typedef struct duet_relay_sync_counts {
    uint64_t uploaded, received, delivered, rejected;
} duet_relay_sync_counts_t;
duet_relay_sync_counts_t duet_relay_sync_counts(const duet_relay_sync_t *s);

#endif /* DUET_RELAY_SYNC_H */
