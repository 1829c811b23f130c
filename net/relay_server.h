/*
 * duet — the relay server (`duet relay serve`): the libuv shell around the relay engine
 * (core/relayd.h) and its SQLite store (core/relay_sqlite.h).
 *
 * The data folder (created 0700 if absent) holds:
 *   relay.key   the relay's X25519 private key, 32 bytes, mode 0600, made on first start
 *               (written to a temporary file, synced, renamed); a key file that others can
 *               read, or of another length, is refused
 *   relay.db    the mailboxes (WAL, synchronous=FULL), locked against a second relay
 *
 * Clients connect with Noise_NK (net/link.h, DUET_LINK_NK): they must know the relay's
 * public key, which the URL carries, duet://HOST:PORT/KEY. The relay learns nothing of
 * theirs. Every record a client sends is one request frame for the engine.
 *
 * Protection (docs/relay.md lists the settings and their defaults):
 *  - connection limit: at the limit, new connections wait in the kernel's backlog (the
 *    listener stops accepting) until one closes;
 *  - per IP address: at most max_connections_per_ip at once (more are answered with a
 *    fatal ERROR EBUSY after the handshake, so the client can say why), and new
 *    connections at most that many per second (more are closed at once, without a
 *    handshake, so a flood costs no Diffie-Hellman);
 *  - handshake timeout (slowloris), idle timeout (clients' links send keepalives);
 *  - request and byte rate limits per connection and per IP: a client over its rate is not
 *    refused but slowed (its socket is not read until its bucket refills);
 *  - backpressure: a connection's responses are produced only while its write queue is
 *    under slow_reader_bytes; a client whose queue stays above a quarter of that for
 *    slow_reader_ms is dropped;
 *  - group commit: every PUT read in one loop iteration is stored in one transaction,
 *    committed (fsync) in the loop's check phase before any of them is acknowledged.
 *
 * Conventions: everything runs on the loop's thread. Log lines (no secrets, no client
 * data) go to the owner's on_log, at most a few dozen a second.
 */
#ifndef DUET_RELAY_SERVER_H
#define DUET_RELAY_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "err.h"
#include "relay.h"
#include "relayd.h"
#include "rng.h"

#define DUET_RELAY_KEY_FILE "relay.key"
#define DUET_RELAY_DB_FILE  "relay.db"
#define DUET_RELAY_LOG_MAX  256u

typedef struct duet_relay_server duet_relay_server_t;

typedef struct duet_relay_server_opts {
    const char *listen;   /* "HOST:PORT" as net/link.h duet_addr_parse reads it; port 0 picks
                             a free one */
    const char *data_dir; /* the data folder */
    const char *url_host; /* the host clients use, for the URL; NULL: the listen host */
    duet_relay_config_t cfg;
    duet_rng_t rng; /* keys, nameplates (duet_sysrng() in the program) */
    void (*on_log)(void *ctx, const char *line);
    void *ctx;
} duet_relay_server_opts_t;

/*
 * Start serving on loop: the data folder, the key, the database, the listener. On error
 * *what names the step that failed ("data folder", "key file", "database", "listen
 * address") and nothing is left running. Errors: DUET_EADDR, DUET_EADDRINUSE, DUET_EPERM (a
 * folder or key file we may not use, or one others can read), DUET_ECORRUPT (a key file
 * that is not one), DUET_ELOCKED (another relay uses the folder), DUET_ENOSPC, DUET_EIO,
 * DUET_ENOMEM.
 */
duet_err_t duet_relay_server_start(uv_loop_t *loop, const duet_relay_server_opts_t *opts,
                                   duet_relay_server_t **out, const char **what) DUET_MUST_CHECK;

/* The relay's URL, duet://HOST:PORT/KEY (valid while the server lives). */
const char *duet_relay_server_url(const duet_relay_server_t *s);

/* Stop: stop listening, commit what is pending, close every connection gracefully. The
 * loop runs dry once everything is closed; then call duet_relay_server_free. */
void duet_relay_server_stop(duet_relay_server_t *s);

/* Free a stopped server (after the loop has returned). NULL is a no-op. */
void duet_relay_server_free(duet_relay_server_t *s);

/* Counters: the engine's, plus connections refused. */
typedef struct duet_relay_server_counters {
    duet_relayd_counters_t engine;
    uint64_t accepted, refused_busy, refused_rate, dropped_slow, rate_limited;
} duet_relay_server_counters_t;
duet_relay_server_counters_t duet_relay_server_counters(const duet_relay_server_t *s);

/*
 * Load the relay key of a data folder, making folder and key if absent (see the preamble).
 * priv (32 bytes) is the caller's to wipe. Errors as duet_relay_server_start's "data
 * folder" and "key file" steps.
 */
duet_err_t duet_relay_server_key(const char *data_dir, uint8_t priv[static 32],
                                 uint8_t pub[static 32]) DUET_MUST_CHECK;

#endif /* DUET_RELAY_SERVER_H */
