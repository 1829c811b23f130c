/*
 * duet — the relay client: a device's sessions with a relay (sync, daemon subscription)
 * and the pairing rendezvous, over Noise_NK links (net/link.h) that pin the relay's key
 * from its URL. The protocol logic is core/relay_sync.h (sessions) and core/relay.h
 * (frames); this module resolves the address, runs the link, pumps frames, and reconnects.
 *
 * Errors the owner sees (on_done, on_state, on_closed):
 *  - DUET_ERELAYKEY: the relay closed the connection during the handshake, which is what a
 *    relay does to a client that does not have its key (the URL's key is not the relay's),
 *    and also what an overloaded relay does to floods;
 *  - DUET_EBUSY: the relay has too many connections from this address;
 *  - DUET_ECONNREFUSED, DUET_ETIMEDOUT, DUET_ENET, DUET_EADDR (a host that does not
 *    resolve), DUET_EVERSION (the relay speaks another protocol version), DUET_EPROTO;
 *  - from the relay, for a session: DUET_ECAPABILITY (never for a correct pair), and for
 *    uploads (upload_err): DUET_EQUOTA (the partner's mailbox is full), DUET_ETOOBIG,
 *    DUET_ENOSPC (the relay's disk), DUET_EIO;
 *  - from the store: whatever the host returned (DUET_ENOSPC, DUET_ELOCKED, ...).
 *
 * Conventions: everything runs on the thread of the given loop. Objects free themselves:
 * after a _stop/_close call no callback is called and the pointer is dangling once the
 * loop has run the closes. Callbacks are never called from inside a call the owner made.
 */
#ifndef DUET_RELAY_CLIENT_H
#define DUET_RELAY_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "err.h"
#include "outbox.h"
#include "relay.h"
#include "relay_sync.h"
#include "rng.h"
#include "store.h"

#define DUET_RELAY_CLIENT_BACKOFF_MIN_MS 500u
#define DUET_RELAY_CLIENT_BACKOFF_MAX_MS 60000u
#define DUET_RELAY_CLIENT_STABLE_MS      30000u /* a session this old resets the backoff */

/* ---- what the lead's commands pass in ---------------------------------------------------- */

/* The relay host (relay_sync.h) backed by the outbox host h (outbox.h), which must outlive
 * it. */
duet_relay_host_t duet_relay_outbox_host(duet_outbox_host_t *h);

/* The pair's relay keys (relay.h) from a paired store: the pair secret, my identity key and
 * my partner's. DUET_ENOTPAIRED when unpaired; the caller wipes *out
 * (duet_relay_keys_dispose). */
duet_err_t duet_relay_client_keys(duet_store_t *st, duet_relay_keys_t *out) DUET_MUST_CHECK;

/* ---- sessions: `sync --relay` (one cycle) and `daemon --relay` (stay subscribed) --------- */

typedef struct duet_relay_client duet_relay_client_t;

typedef struct duet_relay_client_callbacks {
    void *ctx;
    /* One-shot only: the session is over. err is DUET_OK when the cycle completed: every
     * envelope the relay did not hold was offered, the mailbox was collected and
     * acknowledged; upload_err then says whether the relay refused some (DUET_OK: the
     * relay durably holds everything queued here). counts: this session's. */
    void (*on_done)(duet_relay_client_t *c, void *ctx, duet_err_t err, duet_err_t upload_err,
                    const duet_relay_sync_counts_t *counts);
    /* Daemon only: connected (the relay answered and the subscription is on) or not (err:
     * why the connection ended; the client retries with backoff by itself). May be NULL. */
    void (*on_state)(duet_relay_client_t *c, void *ctx, bool connected, duet_err_t err);
    /* Daemon only: a cycle finished with these cumulative counts (a note arrived, ...). May
     * be NULL. */
    void (*on_progress)(duet_relay_client_t *c, void *ctx, const duet_relay_sync_counts_t *counts);
    /* One line of diagnostics for people (no secrets). NULL: none. */
    void (*on_log)(void *ctx, const char *line);
} duet_relay_client_callbacks_t;

typedef struct duet_relay_client_opts {
    uv_loop_t *loop;
    const char *url;               /* duet://HOST:PORT/KEY */
    const duet_relay_host_t *host; /* copied; its ctx must outlive the client */
    const duet_relay_keys_t *keys; /* copied (and wiped at the end) */
    duet_rng_t rng;                /* Noise ephemerals, state nonces, jitter */
    bool stay;                     /* daemon mode */
} duet_relay_client_opts_t;

/*
 * Start a session. DUET_EADDR for a URL that does not parse, DUET_EBADKEY for a key in it
 * that does not decode, DUET_ENOMEM. Everything later comes through the callbacks.
 */
duet_err_t duet_relay_client_start(const duet_relay_client_opts_t *opts,
                                   const duet_relay_client_callbacks_t *cb,
                                   duet_relay_client_t **out) DUET_MUST_CHECK;

/* The outbox has grown: upload it now (daemon; at the next connection if not connected). */
void duet_relay_client_kick(duet_relay_client_t *c);

/* End the session (a batch being received is abandoned, not half-stored); no callback
 * follows. */
void duet_relay_client_stop(duet_relay_client_t *c);

/* ---- the pairing rendezvous: `pair --relay` -------------------------------------------- */

typedef struct duet_relay_rendezvous duet_relay_rendezvous_t;

typedef struct duet_relay_rendezvous_callbacks {
    void *ctx;
    /* The nameplate is ours. Listener: it is held (show the code now). Joiner: it is
     * claimed, the listener is on the line (send the first message now). */
    void (*on_ready)(duet_relay_rendezvous_t *r, void *ctx, uint16_t nameplate);
    /* One pairing message from the other holder, valid during the call. */
    void (*on_message)(duet_relay_rendezvous_t *r, void *ctx, const uint8_t *msg, size_t len);
    /* It is over: DUET_ECLOSED (the other holder left), DUET_ETIMEDOUT (nobody claimed the
     * nameplate in time), DUET_ENAMEPLATE (the nameplate is taken or no longer valid: a
     * listener should make another code), or a connection error as for sessions. After a
     * successful pairing the owner closes first, and this is not called. */
    void (*on_closed)(duet_relay_rendezvous_t *r, void *ctx, duet_err_t err);
    void (*on_log)(void *ctx, const char *line);
} duet_relay_rendezvous_callbacks_t;

/*
 * Meet at the relay's rendezvous. The listener holds nameplate (the one of its code, or 0
 * for one the relay picks: on_ready says which); the joiner claims nameplate (1..9999).
 * Errors as duet_relay_client_start.
 */
duet_err_t duet_relay_rendezvous_start(uv_loop_t *loop, const char *url, uint16_t nameplate,
                                       bool joiner, duet_rng_t rng,
                                       const duet_relay_rendezvous_callbacks_t *cb,
                                       duet_relay_rendezvous_t **out) DUET_MUST_CHECK;

/* Send one pairing message (1..DUET_RELAY_PAIR_MAX bytes; padded to DUET_RELAY_PAIR_MSG so
 * its length says nothing). Queued until on_ready. DUET_ETOOBIG, DUET_EEMPTY, DUET_ESTATE
 * (closed), DUET_ENOMEM. */
duet_err_t duet_relay_rendezvous_send(duet_relay_rendezvous_t *r, const uint8_t *msg,
                                      size_t len) DUET_MUST_CHECK;

/* Close after what is queued has been sent; no callback follows. */
void duet_relay_rendezvous_close(duet_relay_rendezvous_t *r);

#endif /* DUET_RELAY_CLIENT_H */
