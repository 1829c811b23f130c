/*
 * duet — the daemon: one libuv loop per home that keeps the partners in touch.
 *
 * It listens for the partner (KK links: nobody else gets past the first handshake
 * message), reconnects to the partner's last known address with exponential backoff and
 * jitter, runs one sync session at a time (core/sync.h over net/session.h), takes nudges
 * and serves `duet watch` on the control socket (net/control.h), and writes every event as
 * one JSON object per line through its owner's callback. One daemon per home: a lock file
 * (HOME/daemon.lock, with the pid) refuses a second one. SIGINT and SIGTERM close everything
 * cleanly.
 */
#ifndef DUET_DAEMON_H
#define DUET_DAEMON_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "err.h"
#include "store.h"

#define DUET_DAEMON_BACKOFF_MIN_MS 500u
#define DUET_DAEMON_BACKOFF_MAX_MS 60000u
#define DUET_DAEMON_QUIET_MS       2000u /* after the last sync: memory given back */

typedef struct duet_daemon duet_daemon_t;

typedef struct duet_daemon_opts {
    const char *listen;  /* HOST:PORT, or NULL */
    const char *relay;   /* relay URL, or NULL */
    bool lan;            /* LAN discovery on */
    uint64_t idle_ms;    /* link idle/slow-reader timeout (0: the default, 60 s); the
                            handshake timeout is the smaller of 10 s and this */
    /* One event: a complete JSON object (no newline). */
    void (*on_event)(void *ctx, const char *json, size_t len);
    /* One log line for people (stderr). */
    void (*on_log)(void *ctx, const char *line);
    /* Once per loop iteration, before waiting for I/O: flush buffered output. May be NULL. */
    void (*on_tick)(void *ctx);
    void *ctx;
} duet_daemon_opts_t;

/* Take the home's daemon lock. DUET_EDAEMON with *pid of the running one when taken. The
 * lock lasts as long as fd (returned) stays open. */
duet_err_t duet_daemon_lock(const char *home, int *fd, long *pid) DUET_MUST_CHECK;

/* Run the daemon on loop until SIGINT/SIGTERM (or duet_daemon_stop). st stays the
 * caller's. Returns DUET_OK on a clean stop, or the error that prevented starting
 * (DUET_EADDRINUSE, DUET_EADDR, DUET_ENOTPAIRED, ...). */
duet_err_t duet_daemon_run(uv_loop_t *loop, duet_store_t *st,
                           const duet_daemon_opts_t *opts) DUET_MUST_CHECK;

#endif
