/*
 * duet — the ways two devices meet to pair: a message pipe for the pairing engine.
 *
 *   --listen HOST:PORT   a TCP listener; each connection is a RAW link (net/link.h)
 *   --connect HOST:PORT  a RAW link to the listener
 *   --relay URL          the relay's rendezvous on the nameplate (net/relay_client.h)
 *   (none)               the LAN: the listener listens on an ephemeral port and answers
 *                        beacons for the nameplate; the joiner looks for them
 *                        (net/discovery.h)
 *
 * Whatever the way, the pairing messages are opaque to it: the engine (core/pairing.h) and
 * its CPace and Noise protect them. A way carries one partner at a time; a listener that
 * loses a connection before the engine accepted anything keeps listening.
 */
#ifndef DUET_PAIRWAY_H
#define DUET_PAIRWAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "err.h"
#include "rng.h"

typedef struct duet_pairway duet_pairway_t;

typedef struct duet_pairway_spec {
    uv_loop_t *loop;
    const char *listen;  /* HOST:PORT, or NULL */
    const char *connect; /* HOST:PORT, or NULL */
    const char *relay;   /* duet://HOST:PORT/KEY, or NULL */
    uint16_t nameplate;  /* the code's public part (relay and LAN rendezvous) */
    bool joiner;
    duet_rng_t rng;
} duet_pairway_spec_t;

typedef struct duet_pairway_callbacks {
    void *ctx;
    /* A listener is ready for its partner; addr says where (NULL for relay and LAN). */
    void (*on_code)(duet_pairway_t *w, void *ctx, const char *addr);
    /* A partner is on the line: the joiner sends its first message now. */
    void (*on_open)(duet_pairway_t *w, void *ctx);
    /* One message from the partner, valid during the call. */
    void (*on_message)(duet_pairway_t *w, void *ctx, const uint8_t *msg, size_t len);
    /* The partner's line closed (err DUET_OK when it closed cleanly). */
    void (*on_closed)(duet_pairway_t *w, void *ctx, duet_err_t err);
} duet_pairway_callbacks_t;

duet_err_t duet_pairway_start(const duet_pairway_spec_t *spec, const duet_pairway_callbacks_t *cb,
                              duet_pairway_t **out) DUET_MUST_CHECK;

/* Send one message to the partner (queued; flushed even if the way closes right after). */
duet_err_t duet_pairway_send(duet_pairway_t *w, const uint8_t *msg, size_t len) DUET_MUST_CHECK;

/* Close everything (the listener, the line after a flush); the way frees itself. No
 * callback follows. */
void duet_pairway_close(duet_pairway_t *w);

#endif
