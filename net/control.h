/*
 * duet — the daemon's control socket: a Unix stream socket in the home folder
 * (HOME/control.sock, mode 0600, so only the user reaches it).
 *
 * Protocol: lines of ASCII. A client sends one command line:
 *   "kick"    something was queued (a note written by `duet note`): sync now
 *   "watch"   stream events: the daemon then writes one JSON object per line (JSON Lines)
 *             until the client or the daemon closes
 * The daemon answers nothing to "kick" and closes. Lines are at most 64 bytes; anything
 * else closes the connection.
 */
#ifndef DUET_CONTROL_H
#define DUET_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "err.h"

#define DUET_CONTROL_NAME "control.sock"
#define DUET_CONTROL_MAX_WATCHERS 16u
#define DUET_CONTROL_WATCH_QUEUE (256u << 10) /* a watcher further behind is dropped */

typedef struct duet_control duet_control_t;

typedef struct duet_control_callbacks {
    void *ctx;
    void (*on_kick)(void *ctx);
} duet_control_callbacks_t;

/* Listen on HOME/control.sock (a stale file from a dead daemon is replaced: the caller holds
 * the home's daemon lock). DUET_ETOOBIG when the path does not fit a socket address. */
duet_err_t duet_control_listen(uv_loop_t *loop, const char *home,
                               const duet_control_callbacks_t *cb,
                               duet_control_t **out) DUET_MUST_CHECK;

/* Send line (without its newline) to every watcher. */
void duet_control_broadcast(duet_control_t *c, const char *line, size_t len);

/* Stop listening, drop the watchers, remove the socket file; frees itself. */
void duet_control_close(duet_control_t *c);

/* Client side, blocking and bounded (about a second): tell the home's daemon to sync now.
 * Quietly does nothing when no daemon listens. */
void duet_control_kick(const char *home);

/* Client side: connect and ask for events; returns a connected socket fd to read JSON Lines
 * from, or -1 (DUET_ENOENT in *err when no daemon runs). */
int duet_control_watch(const char *home, duet_err_t *err);

#endif
