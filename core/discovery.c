/* see discovery.h */
#include "discovery.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "hkdf.h"

#define NONCE  DUET_DISCOVERY_NONCE_BYTES
#define BODY   DUET_DISCOVERY_BODY_BYTES
#define TAG    DUET_DISCOVERY_TAG_BYTES
#define BEACON DUET_DISCOVERY_BEACON_BYTES
#define NWIN   (sizeof(((duet_discovery_t *)0)->win) / sizeof(((duet_discovery_t *)0)->win[0]))

/* HKDF info labels; docs/protocol/discovery.md lists them. */
static const char label_paired[] = "duet lan v1 paired";
static const char label_pairing[] = "duet lan v1 pairing";
static const char label_window[] = "duet lan v1 window";

/* Body layout (plaintext). */
enum { B_KIND = 0, B_FLAGS = 1, B_PORT = 2, B_INSTANCE = 4, B_ZERO = 12 };

static void need(bool ok)
{
    if (!ok) {
        abort();
    }
}

/* ---- keys ---------------------------------------------------------------------------- */

void duet_discovery_key_paired(uint8_t key[static DUET_DISCOVERY_KEY_BYTES],
                               const uint8_t pair_secret[static DUET_DISCOVERY_PAIR_SECRET_BYTES])
{
    need(key != NULL && pair_secret != NULL);
    /* 32 bytes out of HKDF-SHA-256 cannot be out of range. */
    if (duet_hkdf_sha256(key, DUET_DISCOVERY_KEY_BYTES, NULL, 0, pair_secret,
                         DUET_DISCOVERY_PAIR_SECRET_BYTES, (const uint8_t *)label_paired,
                         sizeof label_paired - 1) != DUET_OK) {
        abort();
    }
}

duet_err_t duet_discovery_key_pairing(uint8_t key[static DUET_DISCOVERY_KEY_BYTES],
                                      const uint8_t *nameplate, size_t len)
{
    need(key != NULL);
    sodium_memzero(key, DUET_DISCOVERY_KEY_BYTES);
    if (len == 0 || len > DUET_DISCOVERY_MAX_NAMEPLATE) {
        return DUET_EINVAL;
    }
    need(nameplate != NULL);
    if (duet_hkdf_sha256(key, DUET_DISCOVERY_KEY_BYTES, NULL, 0, nameplate, len,
                         (const uint8_t *)label_pairing, sizeof label_pairing - 1) != DUET_OK) {
        abort();
    }
    return DUET_OK;
}

/* The MAC and encryption keys of window w: HKDF-SHA-256(salt = "", ikm = key,
 * info = label_window || w as 8 bytes big-endian), 64 bytes = mac || enc. Cached: a window
 * lasts minutes and a receiver checks three of them per beacon. */
static const duet_discovery_window_keys_t *window_keys(duet_discovery_t *d, uint64_t w)
{
    size_t slot = 0;
    uint64_t worst = 0;
    for (size_t i = 0; i < NWIN; i++) {
        if (d->win[i].valid && d->win[i].window == w) {
            return &d->win[i];
        }
        /* Replace an empty slot, else the window farthest from w. */
        uint64_t dist = !d->win[i].valid       ? UINT64_MAX
                        : d->win[i].window > w ? d->win[i].window - w
                                               : w - d->win[i].window;
        if (dist > worst || i == 0) {
            worst = dist;
            slot = i;
        }
    }
    uint8_t info[sizeof label_window - 1 + 8];
    memcpy(info, label_window, sizeof label_window - 1);
    for (size_t i = 0; i < 8; i++) {
        info[sizeof label_window - 1 + i] = (uint8_t)(w >> (56 - 8 * i));
    }
    uint8_t okm[64];
    if (duet_hkdf_sha256(okm, sizeof okm, NULL, 0, d->key, sizeof d->key, info, sizeof info) !=
        DUET_OK) {
        abort();
    }
    duet_discovery_window_keys_t *k = &d->win[slot];
    memcpy(k->mac, okm, 32);
    memcpy(k->enc, okm + 32, 32);
    k->window = w;
    k->valid = true;
    sodium_memzero(okm, sizeof okm);
    return k;
}

static void beacon_tag(uint8_t tag[static TAG], const uint8_t beacon[static BEACON],
                       const duet_discovery_window_keys_t *k)
{
    /* Keyed BLAKE2b over nonce || encrypted body; the window is in the key. */
    crypto_generichash(tag, TAG, beacon, NONCE + BODY, k->mac, sizeof k->mac);
}

/* ---- schedule ------------------------------------------------------------------------ */

/* iv scaled by a uniform factor in [0.75, 1.25), so devices that start together drift
 * apart instead of beaconing in lockstep. */
static uint64_t jitter(duet_discovery_t *d, uint64_t iv)
{
    uint8_t b[4];
    duet_rng_fill(&d->rng, b, sizeof b);
    uint32_t r = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    uint64_t permille = 750u + (((uint64_t)r * 500u) >> 32);
    return iv * permille / 1000u;
}

static uint64_t doubled(uint64_t iv, uint32_t max)
{
    return iv >= max / 2u ? max : iv * 2u;
}

static uint32_t or_default(uint32_t v, uint32_t def)
{
    return v != 0 ? v : def;
}

void duet_discovery_init(duet_discovery_t *d, const uint8_t key[static DUET_DISCOVERY_KEY_BYTES],
                         uint16_t port, bool seek, const duet_discovery_config_t *cfg,
                         duet_rng_t rng, uint64_t now_ms)
{
    need(d != NULL && key != NULL && rng.fill != NULL);
    memset(d, 0, sizeof *d);
    memcpy(d->key, key, sizeof d->key);
    d->rng = rng;
    duet_discovery_config_t c = {0};
    if (cfg != NULL) {
        c = *cfg;
    }
    d->cfg.window_ms = or_default(c.window_ms, DUET_DISCOVERY_WINDOW_MS);
    d->cfg.query_min_ms = or_default(c.query_min_ms, DUET_DISCOVERY_QUERY_MIN_MS);
    d->cfg.query_max_ms = or_default(c.query_max_ms, DUET_DISCOVERY_QUERY_MAX_MS);
    d->cfg.announce_min_ms = or_default(c.announce_min_ms, DUET_DISCOVERY_ANNOUNCE_MIN_MS);
    d->cfg.announce_max_ms = or_default(c.announce_max_ms, DUET_DISCOVERY_ANNOUNCE_MAX_MS);
    need(d->cfg.query_min_ms <= d->cfg.query_max_ms);
    need(d->cfg.announce_min_ms <= d->cfg.announce_max_ms);
    duet_rng_fill(&d->rng, d->instance, sizeof d->instance);
    d->port = port;
    d->seek_mode = seek;
    d->global_tokens_ms = DUET_DISCOVERY_GLOBAL_BURST * DUET_DISCOVERY_GLOBAL_REFILL_MS;
    d->global_last_ms = now_ms;
    duet_discovery_kick(d, now_ms);
}

void duet_discovery_dispose(duet_discovery_t *d)
{
    if (d != NULL) {
        sodium_memzero(d, sizeof *d);
    }
}

void duet_discovery_kick(duet_discovery_t *d, uint64_t now_ms)
{
    need(d != NULL);
    d->announce_iv_ms = d->cfg.announce_min_ms;
    d->query_iv_ms = d->cfg.query_min_ms;
    d->seeking = d->seek_mode;
    d->next_query_ms = now_ms;
    /* A query carries our port, so when we seek the first announce can wait one interval. */
    d->next_announce_ms = d->seeking ? now_ms + jitter(d, d->announce_iv_ms) : now_ms;
}

void duet_discovery_set_port(duet_discovery_t *d, uint16_t port, uint64_t now_ms)
{
    need(d != NULL);
    if (port != 0 && port != d->port) {
        d->next_announce_ms = now_ms;
        d->announce_iv_ms = d->cfg.announce_min_ms;
    }
    d->port = port;
}

void duet_discovery_seek(duet_discovery_t *d, bool on, uint64_t now_ms)
{
    need(d != NULL);
    d->seeking = on;
    if (on) {
        d->next_query_ms = now_ms;
        d->query_iv_ms = d->cfg.query_min_ms;
    }
}

uint64_t duet_discovery_next_timeout(const duet_discovery_t *d)
{
    need(d != NULL);
    uint64_t t = UINT64_MAX;
    if (d->seeking) {
        t = d->next_query_ms;
    }
    if (d->port != 0 && d->next_announce_ms < t) {
        t = d->next_announce_ms;
    }
    return t;
}

duet_discovery_kind_t duet_discovery_poll(duet_discovery_t *d, uint64_t now_ms)
{
    need(d != NULL);
    if (d->seeking && now_ms >= d->next_query_ms) {
        d->next_query_ms = now_ms + jitter(d, d->query_iv_ms);
        d->query_iv_ms = doubled(d->query_iv_ms, d->cfg.query_max_ms);
        d->stats.sent_queries++;
        return DUET_DISCOVERY_QUERY;
    }
    if (d->port != 0 && now_ms >= d->next_announce_ms) {
        d->next_announce_ms = now_ms + jitter(d, d->announce_iv_ms);
        d->announce_iv_ms = doubled(d->announce_iv_ms, d->cfg.announce_max_ms);
        d->stats.sent_announces++;
        return DUET_DISCOVERY_ANNOUNCE;
    }
    return DUET_DISCOVERY_NONE;
}

/* ---- beacons ------------------------------------------------------------------------- */

void duet_discovery_beacon(duet_discovery_t *d, uint64_t wall_ms, duet_discovery_kind_t kind,
                           uint8_t out[static DUET_DISCOVERY_BEACON_BYTES])
{
    need(d != NULL && out != NULL);
    need(kind == DUET_DISCOVERY_QUERY || (kind == DUET_DISCOVERY_ANNOUNCE && d->port != 0));
    uint8_t body[BODY] = {0};
    body[B_KIND] = (uint8_t)kind;
    body[B_PORT] = (uint8_t)(d->port >> 8);
    body[B_PORT + 1] = (uint8_t)d->port;
    memcpy(body + B_INSTANCE, d->instance, sizeof d->instance);

    const duet_discovery_window_keys_t *k = window_keys(d, wall_ms / d->cfg.window_ms);
    duet_rng_fill(&d->rng, out, NONCE);
    crypto_stream_xchacha20_xor(out + NONCE, body, BODY, out, k->enc);
    beacon_tag(out + NONCE + BODY, out, k);
    sodium_memzero(body, sizeof body);
}

/* The window keys under which beacon is authentic (w, w-1 or w+1), or NULL. */
static const duet_discovery_window_keys_t *recognise(duet_discovery_t *d, uint64_t wall_ms,
                                                     const uint8_t beacon[static BEACON])
{
    uint64_t w = wall_ms / d->cfg.window_ms;
    uint64_t cand[3] = {w, w + 1, w - 1};
    size_t n = w == 0 ? 2 : 3;
    const duet_discovery_window_keys_t *found = NULL;
    uint8_t tag[TAG];
    for (size_t i = 0; i < n && found == NULL; i++) {
        const duet_discovery_window_keys_t *k = window_keys(d, cand[i]);
        beacon_tag(tag, beacon, k);
        if (crypto_verify_16(tag, beacon + NONCE + BODY) == 0) {
            found = k;
        }
    }
    sodium_memzero(tag, sizeof tag);
    return found;
}

/* ---- rate limits --------------------------------------------------------------------- */

/* Token bucket kept as credit in ms of refill time: spending one token costs refill_ms. */
static bool bucket_take(uint32_t *credit, uint64_t *last, uint64_t now, uint32_t burst,
                        uint32_t refill_ms)
{
    uint64_t cap = (uint64_t)burst * refill_ms;
    uint64_t c = *credit;
    if (now > *last) {
        c += now - *last;
        *last = now;
    }
    if (c > cap) {
        c = cap;
    }
    bool ok = c >= refill_ms;
    if (ok) {
        c -= refill_ms;
    }
    *credit = (uint32_t)c;
    return ok;
}

static duet_discovery_source_t *source_slot(duet_discovery_t *d, const uint8_t *src, size_t len,
                                            uint64_t now)
{
    duet_discovery_source_t *stalest = &d->sources[0];
    for (size_t i = 0; i < DUET_DISCOVERY_SOURCES; i++) {
        duet_discovery_source_t *s = &d->sources[i];
        if (s->id_len == len && memcmp(s->id, src, len) == 0) {
            return s;
        }
        if (s->id_len == 0 || (stalest->id_len != 0 && s->last_ms < stalest->last_ms)) {
            stalest = s;
        }
    }
    /* A new source, or the stalest is forgotten: it starts with a full bucket. */
    memset(stalest, 0, sizeof *stalest);
    memcpy(stalest->id, src, len);
    stalest->id_len = (uint8_t)len;
    stalest->tokens_ms = DUET_DISCOVERY_SOURCE_BURST * DUET_DISCOVERY_SOURCE_REFILL_MS;
    stalest->last_ms = now;
    return stalest;
}

static bool rate_ok(duet_discovery_t *d, const uint8_t *src, size_t len, uint64_t now)
{
    duet_discovery_source_t *s = source_slot(d, src, len, now);
    if (!bucket_take(&s->tokens_ms, &s->last_ms, now, DUET_DISCOVERY_SOURCE_BURST,
                     DUET_DISCOVERY_SOURCE_REFILL_MS)) {
        return false;
    }
    return bucket_take(&d->global_tokens_ms, &d->global_last_ms, now, DUET_DISCOVERY_GLOBAL_BURST,
                       DUET_DISCOVERY_GLOBAL_REFILL_MS);
}

/* ---- receive ------------------------------------------------------------------------- */

static bool body_valid(const uint8_t body[static BODY])
{
    uint8_t kind = body[B_KIND];
    uint16_t port = (uint16_t)(body[B_PORT] << 8 | body[B_PORT + 1]);
    if (kind != DUET_DISCOVERY_ANNOUNCE && kind != DUET_DISCOVERY_QUERY) {
        return false;
    }
    if (body[B_FLAGS] != 0 || (kind == DUET_DISCOVERY_ANNOUNCE && port == 0)) {
        return false;
    }
    for (size_t i = B_ZERO; i < BODY; i++) {
        if (body[i] != 0) {
            return false;
        }
    }
    return true;
}

duet_err_t duet_discovery_receive(duet_discovery_t *d, uint64_t now_ms, uint64_t wall_ms,
                                  const uint8_t *src, size_t src_len, const uint8_t *data,
                                  size_t len, duet_discovery_rx_t *rx)
{
    need(d != NULL && rx != NULL && src != NULL);
    need(src_len > 0 && src_len <= DUET_DISCOVERY_MAX_SOURCE);
    memset(rx, 0, sizeof *rx);
    d->stats.received++;

    /* The cheap path: a length compare, then one keyed hash per accepted window. */
    if (len != BEACON || data == NULL) {
        d->stats.bad_size++;
        return DUET_EDECODE;
    }
    const duet_discovery_window_keys_t *k = recognise(d, wall_ms, data);
    if (k == NULL) {
        d->stats.unknown++;
        return DUET_EAUTH;
    }

    duet_err_t err = DUET_OK;
    uint8_t body[BODY];
    crypto_stream_xchacha20_xor(body, data + NONCE, BODY, data, k->enc);
    if (!body_valid(body)) {
        d->stats.malformed++;
        err = DUET_EPROTO;
        goto cleanup;
    }
    if (sodium_memcmp(body + B_INSTANCE, d->instance, sizeof d->instance) == 0) {
        d->stats.own++;
        err = DUET_EDUP;
        goto cleanup;
    }
    if (!rate_ok(d, src, src_len, now_ms)) {
        d->stats.rate_limited++;
        err = DUET_ERATELIMIT;
        goto cleanup;
    }

    d->stats.recognised++;
    rx->kind = (duet_discovery_kind_t)body[B_KIND];
    rx->port = (uint16_t)(body[B_PORT] << 8 | body[B_PORT + 1]);
    if (rx->port != 0) {
        d->seeking = false; /* found: this query round is over */
    }
    if (rx->kind == DUET_DISCOVERY_QUERY && d->port != 0) {
        rx->reply = true;
        duet_discovery_beacon(d, wall_ms, DUET_DISCOVERY_ANNOUNCE, rx->reply_beacon);
        d->stats.replies++;
    }

cleanup:
    sodium_memzero(body, sizeof body);
    return err;
}

const duet_discovery_stats_t *duet_discovery_stats(const duet_discovery_t *d)
{
    need(d != NULL);
    return &d->stats;
}
