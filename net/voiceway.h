/*
 * duet — voice blobs through a relay, one-shot: a core/blobrelay.h session on a Noise_NK
 * link of its own to the relay (pinned by the key in its URL, like net/relay_client.h),
 * beside or after the relay_sync session that moves the envelopes. `duet sync --relay` runs
 * it once the envelope cycle is over, so that the voice items of this cycle are known.
 *
 * The frames travel as net/relay_client's do: several frames to a link record, each behind
 * its 4-byte length (docs/protocol/relay.md). Conventions as net/relay_client.h: everything
 * on the given loop's thread; callbacks are never called from inside a call of the owner;
 * after on_done or duet_voiceway_stop the object frees itself once the loop has run its
 * closes.
 */
#ifndef DUET_VOICEWAY_H
#define DUET_VOICEWAY_H

#include <uv.h>

#include "blobrelay.h"
#include "err.h"
#include "relay.h"
#include "rng.h"
#include "store.h"

typedef struct duet_voiceway duet_voiceway_t;

typedef struct duet_voiceway_callbacks {
    void *ctx;
    /* Each step of a blob moving up or down (core/blobxfer.h). May be NULL. */
    void (*on_progress)(void *ctx, const duet_blobxfer_progress_t *p);
    /* The session is over. err: DUET_OK when it completed (everything fetchable fetched,
     * every blob to upload offered); upload_err: why uploading stopped (DUET_EQUOTA, ...)
     * or DUET_OK; the counters. Connection errors as net/relay_client.h (DUET_ERELAYKEY...). */
    void (*on_done)(duet_voiceway_t *w, void *ctx, duet_err_t err, duet_err_t upload_err,
                    const duet_blobrelay_stats_t *stats);
    /* One line for people (no secrets). May be NULL. */
    void (*on_log)(void *ctx, const char *line);
} duet_voiceway_callbacks_t;

/*
 * Start a session with the relay at url (duet://HOST:PORT/KEY) over st (which must outlive
 * it) with the pair's relay keys (copied). DUET_EADDR / DUET_EBADKEY for a URL that does not
 * parse, DUET_ENOMEM; everything later through on_done.
 */
duet_err_t duet_voiceway_start(uv_loop_t *loop, const char *url, duet_store_t *st,
                               const duet_relay_keys_t *keys, duet_rng_t rng,
                               const duet_voiceway_callbacks_t *cb,
                               duet_voiceway_t **out) DUET_MUST_CHECK;

/* End it now; no callback follows. */
void duet_voiceway_stop(duet_voiceway_t *w);

#endif /* DUET_VOICEWAY_H */
