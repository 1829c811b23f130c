/*
 * duet — a partner session: one KK link (net/link.h) driving one sync engine (core/sync.h)
 * over the store-backed outbox host (core/outbox.h). It is the whole adapter between libuv
 * and the engine, in the spirit of BearSSL's run_until: records in go to the engine, and
 * the engine's frames go out while the socket has room.
 *
 *   link on_record        -> duet_sync_recv
 *   link on_read_drained  -> duet_sync_flush (one durable commit per socket read), pump
 *   link on_writable      -> pump (pull frames until the link says EAGAIN)
 *   duet_session_kick     -> a note was written here: duet_sync_kick, pump
 *
 * The session reports to its owner (sync --connect, the daemon) through callbacks: items
 * received, delivered, read (after their commit), "done" (both sides hold everything), and
 * the close with its reason. The owner keeps the store open for the life of the session.
 */
#ifndef DUET_SESSION_H
#define DUET_SESSION_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "link.h"
#include "outbox.h"
#include "store.h"
#include "sync.h"

typedef struct duet_session duet_session_t;

typedef struct duet_session_callbacks {
    void *ctx;
    /* The link is up and the engine started. */
    void (*on_open)(duet_session_t *s, void *ctx);
    /* An event of the outbox host, after its commit. */
    void (*on_event)(duet_session_t *s, void *ctx, duet_outbox_event_t ev,
                     const uint8_t id[DUET_ITEM_ID_BYTES], uint32_t kind);
    /* Both sides hold everything (duet_sync_done); may fire again after more traffic. */
    void (*on_done)(duet_session_t *s, void *ctx);
    /* The session ended; err explains (DUET_OK: closed cleanly). The session is freed after
     * this returns. */
    void (*on_close)(duet_session_t *s, void *ctx, duet_err_t err);
    /* One log line (no secrets). */
    void (*on_log)(duet_session_t *s, void *ctx, const char *line);
} duet_session_callbacks_t;

typedef struct duet_session_keys {
    uint8_t local_static[32];  /* our X25519 private key (from the identity) */
    uint8_t remote_static[32]; /* the partner's X25519 public key */
} duet_session_keys_t;

/* Connect to addr and run a session. Errors before the connection exists are returned;
 * later ones come through on_close. */
duet_err_t duet_session_connect(uv_loop_t *loop, duet_store_t *st, const struct sockaddr *addr,
                                const duet_session_keys_t *keys,
                                const duet_link_options_t *opts,
                                const duet_session_callbacks_t *cb,
                                duet_session_t **out) DUET_MUST_CHECK;

/* Accept a connection from server and run a session (KK responder: only the partner's key
 * gets through). */
duet_err_t duet_session_accept(uv_stream_t *server, duet_store_t *st,
                               const duet_session_keys_t *keys, const duet_link_options_t *opts,
                               const duet_session_callbacks_t *cb,
                               duet_session_t **out) DUET_MUST_CHECK;

/* The outbox grew (a note was written here): send it now. */
void duet_session_kick(duet_session_t *s);

/* Close (err DUET_OK for a normal end); on_close follows. */
void duet_session_close(duet_session_t *s, duet_err_t err);

/* Items newly delivered to / received from the partner on this session. */
uint64_t duet_session_items_sent(const duet_session_t *s);
uint64_t duet_session_items_received(const duet_session_t *s);

/* Whether the handshake is over and the engine runs. */
bool duet_session_is_open(const duet_session_t *s);

/* The peer's address for logs. */
const char *duet_session_peer(const duet_session_t *s);

/* The error the peer reported, if it sent an ERROR frame (e.g. DUET_EVERSION). */
duet_err_t duet_session_peer_error(const duet_session_t *s, uint32_t *peer_version);

/* The wall clock for the store (ms since the epoch), as the session passes it to core. */
uint64_t duet_wallclock_ms(void *unused);

#endif /* DUET_SESSION_H */
