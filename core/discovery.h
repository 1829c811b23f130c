/*
 * duet — LAN discovery: blinded beacons, sans-I/O.
 *
 * Partners find each other on a home LAN by UDP multicast (net/discovery.h moves the bytes).
 * Every beacon is DUET_DISCOVERY_BEACON_BYTES (56) bytes that look random to anyone without
 * the key:
 *
 *   nonce (24, fresh random) || body (16, XChaCha20-encrypted) || tag (16)
 *   tag  = BLAKE2b-128(key = mac_key(window), nonce || body)
 *   body = kind (1) || flags (1, zero) || TCP port (2, big-endian) || instance (8) || zero (4)
 *
 * where window = floor(wall-clock ms / window_ms) and the per-window keys come from a 32-byte
 * discovery key by HKDF-SHA-256. The discovery key comes either from the pair secret (paired
 * devices) or from the public nameplate of a pairing code (pairing): never from the code's
 * secret words, which only CPace sees (docs/protocol/discovery.md says why). A receiver
 * accepts the windows w-1, w and w+1 around its own clock; a beacon of any older window is
 * ignored like a stranger's.
 *
 * Two kinds of beacon: a QUERY ("I am looking; answer me") and an ANNOUNCE ("I listen on TCP
 * port P"). A query may also carry a port when the seeker listens itself. A device that
 * recognises a query answers at once with an announce sent back to the query's source (the
 * receive call hands out that reply), so discovery takes one round trip instead of a wait
 * for the next periodic announce. Periodic beacons back off exponentially with jitter.
 *
 * Conventions of this module:
 *  - Nothing here does I/O: the caller passes two clocks, a monotonic now_ms (schedule, rate
 *    limits) and the wall clock wall_ms (Unix epoch ms: windows must agree between devices),
 *    and a duet_rng_t at init for nonces, jitter and the instance id.
 *  - duet_discovery_t is a plain struct the caller owns (_init/_dispose). It holds key
 *    material: _dispose wipes it; a long-lived engine may live in sodium_malloc memory.
 *  - Inputs are borrowed for the call. Beacons are written to caller buffers of exactly
 *    DUET_DISCOVERY_BEACON_BYTES.
 *  - Received bytes are peer data: the receive call never aborts on them. Its cheap path
 *    comes first: a length check, then at most three keyed BLAKE2b compares (one per
 *    accepted window, keys cached), so a flood of random beacons costs little CPU. Only an
 *    authentic beacon is decrypted.
 *  - Rate limits: every authentic beacon costs its source (an opaque id the caller gives,
 *    e.g. the IP address) one token of a small bucket and one token of a global bucket;
 *    without both it is dropped (DUET_ERATELIMIT) with no report and no reply, so a replay
 *    cannot make a device connect, or answer, faster than the buckets allow.
 *  - Caller bugs (NULL pointers, a source id longer than DUET_DISCOVERY_MAX_SOURCE, a
 *    configuration with min > max) abort.
 */
#ifndef DUET_DISCOVERY_H
#define DUET_DISCOVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "rng.h"

/* ---- wire constants ------------------------------------------------------------------ */

#define DUET_DISCOVERY_BEACON_BYTES   56u
#define DUET_DISCOVERY_NONCE_BYTES    24u
#define DUET_DISCOVERY_BODY_BYTES     16u
#define DUET_DISCOVERY_TAG_BYTES      16u
#define DUET_DISCOVERY_INSTANCE_BYTES 8u

#define DUET_DISCOVERY_KEY_BYTES         32u /* a discovery key (from pair secret or nameplate) */
#define DUET_DISCOVERY_PAIR_SECRET_BYTES 32u
#define DUET_DISCOVERY_MAX_NAMEPLATE     16u /* the nameplate as bytes, 1..16 (e.g. "417") */

/* Where beacons go (the net layer's defaults; docs/protocol/discovery.md says why). */
#define DUET_DISCOVERY_UDP_PORT 41714u
#define DUET_DISCOVERY_GROUP4   "239.255.68.84"   /* IPv4 organisation-local scope, TTL 1 */
#define DUET_DISCOVERY_GROUP6   "ff02::6475:6574" /* IPv6 link-local scope ("duet") */

/* ---- defaults of the schedule and the windows ---------------------------------------- */

#define DUET_DISCOVERY_WINDOW_MS       120000u /* 2 minutes; windows w-1..w+1 are accepted */
#define DUET_DISCOVERY_QUERY_MIN_MS    250u    /* first retry of a query */
#define DUET_DISCOVERY_QUERY_MAX_MS    30000u  /* queries back off to this */
#define DUET_DISCOVERY_ANNOUNCE_MIN_MS 2000u   /* first periodic announce after a start/kick */
#define DUET_DISCOVERY_ANNOUNCE_MAX_MS 60000u
/* Jitter: every periodic interval is multiplied by a uniform factor in [0.75, 1.25). */

/* ---- rate limits (named constants, see the preamble) ---------------------------------- */

#define DUET_DISCOVERY_MAX_SOURCE       32u  /* bytes of a source id */
#define DUET_DISCOVERY_SOURCES          64u  /* sources tracked; the stalest is forgotten */
#define DUET_DISCOVERY_SOURCE_BURST     4u   /* authentic beacons a source may send at once */
#define DUET_DISCOVERY_SOURCE_REFILL_MS 500u /* then one per this many ms */
#define DUET_DISCOVERY_GLOBAL_BURST     32u  /* all sources together */
#define DUET_DISCOVERY_GLOBAL_REFILL_MS 50u

typedef enum {
    DUET_DISCOVERY_NONE = 0,
    DUET_DISCOVERY_ANNOUNCE = 1,
    DUET_DISCOVERY_QUERY = 2,
} duet_discovery_kind_t;

/* Timing; a zero field takes the default above. Tests use short windows. */
typedef struct duet_discovery_config {
    uint32_t window_ms;
    uint32_t query_min_ms, query_max_ms;
    uint32_t announce_min_ms, announce_max_ms;
} duet_discovery_config_t;

/* Counters, for logs, tests and benchmarks. */
typedef struct duet_discovery_stats {
    uint64_t received;     /* datagrams given to _receive */
    uint64_t bad_size;     /* not DUET_DISCOVERY_BEACON_BYTES long */
    uint64_t unknown;      /* no tag matched: a stranger, another couple, an old window */
    uint64_t own;          /* our own beacon, looped back */
    uint64_t malformed;    /* authentic but with a body this version does not know */
    uint64_t rate_limited; /* authentic, dropped by a bucket */
    uint64_t recognised;   /* authentic and acted upon */
    uint64_t replies;      /* announces handed out in answer to a query */
    uint64_t sent_queries; /* periodic or first queries handed out by _poll */
    uint64_t sent_announces;
} duet_discovery_stats_t;

/* What an authentic beacon asks of the caller. */
typedef struct duet_discovery_rx {
    duet_discovery_kind_t kind; /* of the received beacon */
    uint16_t port;              /* non-zero: the partner listens on TCP at the source
                                   address, this port: connect (Noise KK decides) */
    bool reply;                 /* send reply_beacon back to the source address and port */
    uint8_t reply_beacon[DUET_DISCOVERY_BEACON_BYTES];
} duet_discovery_rx_t;

typedef struct duet_discovery_window_keys {
    uint64_t window;
    bool valid;
    uint8_t mac[32];
    uint8_t enc[32];
} duet_discovery_window_keys_t;

typedef struct duet_discovery_source {
    uint8_t id[DUET_DISCOVERY_MAX_SOURCE];
    uint8_t id_len;     /* 0: free slot */
    uint32_t tokens_ms; /* credit in ms of refill time, capped at burst * refill */
    uint64_t last_ms;   /* when the credit was last updated */
} duet_discovery_source_t;

/* The engine. Plain struct so the caller can place it; do not touch the fields. */
typedef struct duet_discovery {
    uint8_t key[DUET_DISCOVERY_KEY_BYTES];
    duet_discovery_window_keys_t win[4]; /* cache: the accepted windows and one spare */
    uint8_t instance[DUET_DISCOVERY_INSTANCE_BYTES];
    duet_discovery_config_t cfg;
    duet_rng_t rng;
    uint16_t port;  /* our TCP port, 0 if we do not listen */
    bool seek_mode; /* the engine looks for the partner (kick resumes seeking) */
    bool seeking;   /* a query round is running */
    uint64_t next_query_ms, query_iv_ms;
    uint64_t next_announce_ms, announce_iv_ms;
    duet_discovery_source_t sources[DUET_DISCOVERY_SOURCES];
    uint32_t global_tokens_ms;
    uint64_t global_last_ms;
    duet_discovery_stats_t stats;
} duet_discovery_t;

/* ---- keys ---------------------------------------------------------------------------- */

/* key = HKDF-SHA-256(salt = "", ikm = pair_secret, info = "duet lan v1 paired"): the
 * discovery key of a paired couple. Both partners compute the same one. */
void duet_discovery_key_paired(uint8_t key[static DUET_DISCOVERY_KEY_BYTES],
                               const uint8_t pair_secret[static DUET_DISCOVERY_PAIR_SECRET_BYTES]);

/*
 * key = HKDF-SHA-256(salt = "", ikm = nameplate, info = "duet lan v1 pairing"): the discovery
 * key while pairing with a code whose public nameplate is nameplate[0..len), as the code
 * module normalises it (decimal ASCII, "417"). Only the nameplate: the code's words stay out
 * of every beacon. DUET_EINVAL for len 0 or over DUET_DISCOVERY_MAX_NAMEPLATE (key zeroed).
 */
duet_err_t duet_discovery_key_pairing(uint8_t key[static DUET_DISCOVERY_KEY_BYTES],
                                      const uint8_t *nameplate, size_t len) DUET_MUST_CHECK;

/* ---- the engine ---------------------------------------------------------------------- */

/*
 * Start an engine for key. port: our TCP port (0 if we do not listen: we never announce).
 * seek: look for the partner (a query at once, then retries with backoff until a partner is
 * reported). cfg may be NULL (defaults). The first beacon is due at now_ms: a query when
 * seeking (it carries our port too), else an announce when port is non-zero.
 * The key is copied; the instance id (which lets the engine ignore its own looped-back
 * beacons) is drawn from rng.
 */
void duet_discovery_init(duet_discovery_t *d, const uint8_t key[static DUET_DISCOVERY_KEY_BYTES],
                         uint16_t port, bool seek, const duet_discovery_config_t *cfg,
                         duet_rng_t rng, uint64_t now_ms);

/* Wipe the engine (keys, window keys, sources). Safe on a zeroed struct. */
void duet_discovery_dispose(duet_discovery_t *d);

/* Our TCP port changed (0: we stopped listening). A new non-zero port is announced at once. */
void duet_discovery_set_port(duet_discovery_t *d, uint16_t port, uint64_t now_ms);

/*
 * Something changed (an interface came up, the link to the partner dropped): reset the
 * backoff, announce at once if we listen, and start a new query round if the engine was
 * started with seek.
 */
void duet_discovery_kick(duet_discovery_t *d, uint64_t now_ms);

/* Start (true) or stop (false) a query round by hand. Starting queries at once. */
void duet_discovery_seek(duet_discovery_t *d, bool on, uint64_t now_ms);

/* The monotonic time at which _poll has something to send; UINT64_MAX when nothing is
 * scheduled (not seeking and no port). */
uint64_t duet_discovery_next_timeout(const duet_discovery_t *d);

/*
 * If a periodic beacon is due at now_ms, advance the schedule and return its kind
 * (DUET_DISCOVERY_QUERY or DUET_DISCOVERY_ANNOUNCE); else DUET_DISCOVERY_NONE. At most one
 * beacon per call: call until NONE. The caller then builds one beacon of that kind per
 * interface with _beacon, so two links never carry the same bytes.
 */
duet_discovery_kind_t duet_discovery_poll(duet_discovery_t *d, uint64_t now_ms);

/*
 * Write a fresh beacon of kind (QUERY or ANNOUNCE; abort otherwise) for the window of
 * wall_ms into out: fresh nonce, our port and instance. An ANNOUNCE with port 0 is a caller
 * bug (abort): only a device that listens announces.
 */
void duet_discovery_beacon(duet_discovery_t *d, uint64_t wall_ms, duet_discovery_kind_t kind,
                           uint8_t out[static DUET_DISCOVERY_BEACON_BYTES]);

/*
 * Read a received datagram data[0..len) that came from source id src[0..src_len) (e.g. the
 * IP address and IPv6 scope; 1..DUET_DISCOVERY_MAX_SOURCE bytes). *rx is zeroed on entry.
 *   DUET_OK          an authentic beacon of the partner: rx says what to do (rx->port: the
 *                    partner listens there; rx->reply: send rx->reply_beacon back). A
 *                    report of a port ends the current query round.
 *   DUET_EDECODE     wrong length (the cheap reject)
 *   DUET_EAUTH       no tag matched: a stranger, another couple, a window outside w-1..w+1
 *   DUET_EDUP        our own beacon, looped back
 *   DUET_EPROTO      authentic but malformed body (unknown kind, non-zero reserved bytes,
 *                    an announce without a port): ignored
 *   DUET_ERATELIMIT  authentic, but its source or all sources are over their budget
 * Every error means: ignore the datagram. Counters in _stats.
 */
duet_err_t duet_discovery_receive(duet_discovery_t *d, uint64_t now_ms, uint64_t wall_ms,
                                  const uint8_t *src, size_t src_len, const uint8_t *data,
                                  size_t len, duet_discovery_rx_t *rx) DUET_MUST_CHECK;

/* The counters. */
const duet_discovery_stats_t *duet_discovery_stats(const duet_discovery_t *d);

#endif /* DUET_DISCOVERY_H */
