/*
 * Fuzz target: every parser of relay peer data.
 *
 * The first byte picks the subject:
 *   0  the relay's engine (core/relayd.h) over an in-memory SQLite store: the rest is a
 *      sequence of frames, each with a 2-byte big-endian length, fed to two connections in
 *      turn (so subscriptions, rendezvous and quotas between them are reached); after each,
 *      the batch is flushed and every released frame taken; a tick now and then;
 *   1  the client session engine (core/relay_sync.h) in daemon mode, against a host that
 *      accepts everything: frames from a "relay", and the session's own frames taken;
 *   2  the small parsers: a relay URL, a config file, a padded pairing message, a state
 *      object, an envelope label and a record's frames, each on the whole rest.
 * The seed corpus (tests/fuzz/corpus/relay) holds sessions made of valid frames from
 * tools/relay_fuzz_seeds.py.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <sodium.h>

#include "relay.h"
#include "relay_sqlite.h"
#include "relay_sync.h"
#include "relayd.h"
#include "testrng.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void on_wake(void *ctx, void *user)
{
    (void)ctx, (void)user;
}

/* The keys the seeds were made with: pair seed 7, device a (0xaa..) and b (0xbb..). */
static void seed_keys(duet_relay_keys_t *k, bool a)
{
    uint8_t ps[32], pka[32], pkb[32];
    memset(ps, 7, sizeof ps);
    memset(pka, 0xaa, sizeof pka);
    memset(pkb, 0xbb, sizeof pkb);
    duet_relay_keys_derive(k, ps, a ? pka : pkb, a ? pkb : pka);
}

static void drain(duet_relayd_conn_t *c)
{
    const uint8_t *f;
    size_t len;
    for (int i = 0; i < 512 && duet_relayd_next_frame(c, 1000, &f, &len); i++) {
    }
}

static void fuzz_server(const uint8_t *data, size_t size)
{
    duet_relay_sqlite_t *db;
    duet_relay_config_t cfg;
    duet_testrng_t r;
    if (duet_relay_sqlite_open(":memory:", &db) != DUET_OK) {
        return;
    }
    duet_relay_store_t st = duet_relay_sqlite_store(db);
    duet_relay_config_default(&cfg);
    cfg.mailbox_items = 50;
    cfg.mailbox_bytes = 1 << 20;
    duet_relayd_t *d = duet_relayd_new(&st, &cfg, duet_testrng_init(&r, 1), on_wake, NULL);
    duet_relayd_conn_t *c[2] = {duet_relayd_conn_new(d, NULL), duet_relayd_conn_new(d, NULL)};
    size_t pos = 0, k = 0;
    uint64_t now = 1000;
    while (size - pos >= 2 && c[0] != NULL && c[1] != NULL) {
        size_t n = (size_t)data[pos] << 8 | data[pos + 1];
        pos += 2;
        if (n > size - pos) {
            n = size - pos;
        }
        duet_relayd_conn_t *to = c[k++ % 2];
        duet_err_t ignored = duet_relayd_recv(to, data + pos, n, now);
        (void)ignored;
        pos += n;
        ignored = duet_relayd_flush(d, now);
        drain(c[0]);
        drain(c[1]);
        if (k % 7 == 0) {
            now += 700000; /* past the nameplate TTL now and then */
            ignored = duet_relayd_tick(d, now);
            drain(c[0]);
            drain(c[1]);
        }
    }
    duet_relayd_conn_free(c[0]);
    duet_relayd_conn_free(c[1]);
    duet_relayd_free(d);
    duet_relay_sqlite_close(db);
}

static duet_err_t h_state(void *c, uint64_t *wm, uint64_t *above, size_t cap, size_t *n)
{
    (void)c, (void)above, (void)cap;
    *wm = 2;
    *n = 0;
    return DUET_OK;
}
static const uint8_t env[] = {1, 2, 3, 4};
static duet_err_t h_next(void *c, uint64_t after, uint64_t *seq, const uint8_t **e, size_t *len)
{
    (void)c;
    if (after >= 3) {
        return DUET_ENOENT;
    }
    *seq = after + 1;
    *e = env;
    *len = sizeof env;
    return DUET_OK;
}
static duet_err_t h_mark(void *c, uint64_t seq)
{
    (void)c, (void)seq;
    return DUET_OK;
}
static duet_err_t h_begin(void *c)
{
    (void)c;
    return DUET_OK;
}
static duet_err_t h_put(void *c, uint64_t seq, const uint8_t *e, size_t len, bool *counted)
{
    (void)c, (void)e, (void)len;
    *counted = true;
    return seq % 3 == 0 ? DUET_EDUP : seq % 5 == 0 ? DUET_ERANGE : DUET_OK;
}
static duet_err_t h_commit(void *c)
{
    (void)c;
    return DUET_OK;
}
static void h_abort(void *c)
{
    (void)c;
}
static duet_err_t h_acked(void *c, uint64_t wm, const uint64_t *a, size_t n, uint64_t *items)
{
    (void)c, (void)wm, (void)a;
    *items = n;
    return DUET_OK;
}

static void fuzz_client(const uint8_t *data, size_t size)
{
    const duet_relay_host_t host = {NULL,  h_state,  h_next,  h_mark, h_begin,
                                    h_put, h_commit, h_abort, h_acked};
    duet_relay_keys_t k;
    duet_testrng_t r;
    seed_keys(&k, false);
    duet_relay_sync_t *s = duet_relay_sync_new(&host, &k, duet_testrng_init(&r, 2), true);
    duet_relay_keys_dispose(&k);
    if (s == NULL) {
        return;
    }
    size_t pos = 0;
    while (size - pos >= 2) {
        const uint8_t *f;
        size_t len;
        for (int i = 0; i < 64; i++) {
            if (duet_relay_sync_next_frame(s, &f, &len) != DUET_OK || len == 0) {
                break;
            }
        }
        size_t n = (size_t)data[pos] << 8 | data[pos + 1];
        pos += 2;
        if (n > size - pos) {
            n = size - pos;
        }
        duet_err_t ignored = duet_relay_sync_recv(s, data + pos, n);
        (void)ignored;
        pos += n;
        (void)duet_relay_sync_done(s);
    }
    duet_relay_sync_free(s);
}

static void fuzz_small(const uint8_t *data, size_t size)
{
    duet_relay_url_t u;
    duet_relay_config_t cfg;
    duet_relay_keys_t k;
    size_t line, n;
    uint64_t wm, seq, above[DUET_RELAY_STATE_BITS];
    const uint8_t *msg;
    duet_err_t ignored = duet_relay_url_parse(&u, (const char *)data, size);
    duet_relay_config_default(&cfg);
    ignored = duet_relay_config_parse(&cfg, (const char *)data, size, &line);
    ignored = duet_relay_pair_unpad(data, size, &msg, &n);
    seed_keys(&k, false);
    ignored = duet_relay_state_open(&k.in, data, size, &wm, above, DUET_RELAY_STATE_BITS, &n);
    if (size > 16) {
        ignored = duet_relay_env_open(&k.in, data, 16, data + 16, size - 16, &seq, &msg, &n);
    }
    size_t pos = 0;
    while (duet_relay_record_next(data, size, &pos, &msg, &n) == DUET_OK) {
        duet_relay_frame_t f;
        if (duet_relay_frame_decode(&f, msg, n) == DUET_OK) {
            duet_relay_frame_dispose(&f);
        }
    }
    (void)ignored;
    duet_relay_keys_dispose(&k);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || sodium_init() < 0) {
        return 0;
    }
    switch (data[0] % 3) {
    case 0:
        fuzz_server(data + 1, size - 1);
        break;
    case 1:
        fuzz_client(data + 1, size - 1);
        break;
    default:
        fuzz_small(data + 1, size - 1);
        break;
    }
    return 0;
}
