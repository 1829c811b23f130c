/*
 * duet — the relay server's engine: sans-I/O, one engine per relay process (the hub) and
 * one small state per client connection. Request frames in, store calls, response frames
 * out; net/relay_server moves the bytes, the timers and the Noise sessions.
 *
 * Flow of one event-loop iteration:
 *
 *   duet_relayd_recv(conn, frame)   for each frame read (any connection). Writes (PUT,
 *                                   DELETE) go into one open store batch; reads (LIST, GET)
 *                                   are queued and done when their response is taken.
 *   duet_relayd_flush(relayd)       once, after the reads: commits the batch (one fsync for
 *                                   every PUT of the iteration: group commit), then releases
 *                                   the queued responses and pushes NOTIFY to subscribers.
 *                                   If the commit fails, every write of the batch is
 *                                   answered with the error: nothing unstored is
 *                                   acknowledged.
 *   duet_relayd_next_frame(conn)    while the connection's socket has room (backpressure).
 *
 * Responses leave in request order, one per request. A connection with more than
 * DUET_RELAY_WINDOW requests unanswered in the engine breaks the protocol and is closed.
 *
 * Errors: a request the relay refuses (wrong capability, quota, missing object, nameplate
 * taken, disk full) gets an ERROR response and the connection goes on. A malformed frame,
 * a request before HELLO, or another protocol version is fatal: an ERROR frame with the
 * fatal flag is queued, every later duet_relayd_recv returns the same error, and the I/O
 * layer sends what is queued and closes.
 *
 * Conventions: as relay.h. Time is passed in (now_ms). Not thread-safe; one loop owns the
 * hub and its connections.
 */
#ifndef DUET_RELAYD_H
#define DUET_RELAYD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "relay.h"
#include "relay_store.h"
#include "rng.h"

/* ---- settings -------------------------------------------------------------------------- */

/* Every setting of `duet relay serve`, from the config file or flags (docs/relay.md). */
typedef struct duet_relay_config {
    /* connections (net/relay_server) */
    uint64_t max_connections;
    uint64_t max_connections_per_ip;
    uint64_t handshake_timeout_ms;
    uint64_t idle_timeout_s;
    uint64_t rate_requests;    /* per connection: requests per second (0: no limit) */
    uint64_t rate_bytes;       /* per connection: bytes per second received */
    uint64_t ip_rate_requests; /* per IP address, all its connections together */
    uint64_t ip_rate_bytes;
    uint64_t slow_reader_bytes; /* output waiting for a reader that does not read... */
    uint64_t slow_reader_ms;    /* ...for this long: the connection is dropped */
    /* storage (this engine) */
    uint64_t max_object; /* data bytes of one object (<= DUET_RELAY_OBJECT_MAX) */
    uint64_t mailbox_items;
    uint64_t mailbox_bytes;
    uint64_t store_bytes; /* all mailboxes together (0: until the disk is full) */
    uint64_t ttl_s;
    uint64_t nameplate_ttl_s;
    uint64_t tombstone_ttl_s;
    uint64_t sweep_interval_s;
} duet_relay_config_t;

/* The safe defaults (docs/relay.md lists them). */
void duet_relay_config_default(duet_relay_config_t *c);

/* Set one setting by name ("mailbox-items") from a decimal value. DUET_EINVAL for an unknown
 * name, DUET_ERANGE for a value that is not a number in the setting's range. */
duet_err_t duet_relay_config_set(duet_relay_config_t *c, const char *name, size_t name_len,
                                 const char *value, size_t value_len) DUET_MUST_CHECK;

/*
 * Read a config file's text: lines "name = value", '#' comments, blank lines. On error
 * *bad_line is the 1-based line at fault (the settings before it are applied).
 */
duet_err_t duet_relay_config_parse(duet_relay_config_t *c, const char *text, size_t len,
                                   size_t *bad_line) DUET_MUST_CHECK;

/* The settings, for --help and docs: name and one-line description of setting i (NULL past
 * the last), and its value in c. */
const char *duet_relay_config_name(size_t i);
const char *duet_relay_config_doc(size_t i);
uint64_t duet_relay_config_value(const duet_relay_config_t *c, size_t i);

/* ---- the engine ------------------------------------------------------------------------ */

typedef struct duet_relayd duet_relayd_t;
typedef struct duet_relayd_conn duet_relayd_conn_t;

/* Called when a connection that had nothing to send has frames ready. */
typedef void (*duet_relayd_wake_fn)(void *ctx, void *conn_user);

typedef struct duet_relayd_counters {
    uint64_t connections; /* open now */
    uint64_t puts, dups, gets, lists, deletes, notifies;
    uint64_t refused_cap, refused_quota, refused_other, fatal;
    uint64_t commits, commit_failures;
    uint64_t pairings; /* nameplates claimed */
} duet_relayd_counters_t;

/* A hub over store (borrowed; must outlive it) with settings cfg (copied). NULL when out of
 * memory. rng: nameplates, hash keys. */
duet_relayd_t *duet_relayd_new(const duet_relay_store_t *store, const duet_relay_config_t *cfg,
                               duet_rng_t rng, duet_relayd_wake_fn wake, void *wake_ctx);

/* Free the hub (every connection must have been freed). A batch still open is rolled back. */
void duet_relayd_free(duet_relayd_t *d);

/* A new connection (after its handshake). user is passed back to wake. NULL when out of
 * memory. */
duet_relayd_conn_t *duet_relayd_conn_new(duet_relayd_t *d, void *user);

/* The connection is gone: its subscriptions end, its nameplate is released and the other
 * holder told (PCLOSED). NULL is a no-op. */
void duet_relayd_conn_free(duet_relayd_conn_t *c);

/* Process one request frame. DUET_OK, or the connection's fatal error (see the preamble). */
duet_err_t duet_relayd_recv(duet_relayd_conn_t *c, const uint8_t *frame, size_t len,
                            uint64_t now_ms) DUET_MUST_CHECK;

/*
 * End of the iteration: commit the open batch, if any, and release what every connection
 * has queued. Returns the commit's error (the writes of the batch have been answered with
 * it) or DUET_OK.
 */
duet_err_t duet_relayd_flush(duet_relayd_t *d, uint64_t now_ms) DUET_MUST_CHECK;

/*
 * The next released frame of c, or false when there is none now. The frame lives in the
 * hub and is valid until the next call on any connection of the hub. Reads (LIST, GET) are
 * done here.
 */
bool duet_relayd_next_frame(duet_relayd_conn_t *c, uint64_t now_ms, const uint8_t **frame,
                            size_t *len);

/* Whether c has released frames waiting. */
bool duet_relayd_has_output(const duet_relayd_conn_t *c);

/* The fatal error of c (DUET_OK while healthy): close it once its frames are sent. */
duet_err_t duet_relayd_conn_error(const duet_relayd_conn_t *c);

/* Whether c is a subscriber or holds a nameplate (the I/O layer keeps such connections
 * despite silence, up to the idle timeout they refresh with PING). */
bool duet_relayd_conn_waiting(const duet_relayd_conn_t *c);

/*
 * Timers: expire nameplates (their holder gets PCLOSED with DUET_ETIMEDOUT) and, every
 * sweep interval, remove expired objects. Call about once a second, outside a batch (not
 * between recv and flush). Returns the sweep's error, if it ran and failed.
 */
duet_err_t duet_relayd_tick(duet_relayd_t *d, uint64_t now_ms) DUET_MUST_CHECK;

duet_relayd_counters_t duet_relayd_counters(const duet_relayd_t *d);

#endif /* DUET_RELAYD_H */
