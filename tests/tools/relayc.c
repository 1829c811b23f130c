/*
 * duet-relayc — a test client for `duet relay serve`, for the integration tests and the
 * abuse cases that need no device: it speaks the relay protocol over the real Noise_NK
 * link, as net/relay_client does, with keys derived from a test "pair seed".
 *
 *   duet-relayc URL hello                   connect and say HELLO
 *   duet-relayc URL upload SEED N SIZE FILE device a: N envelopes of SIZE bytes through
 *                                           the session engine; FILE keeps which the relay
 *                                           acknowledged (one byte per seq, fsync'd)
 *   duet-relayc URL download SEED FILE      device b: collect and acknowledge; FILE keeps
 *                                           what was stored (fsync'd per batch)
 *   duet-relayc URL flood SEED N            N pipelined PUTs of distinct objects to a's
 *                                           mailbox, counting the answers
 *   duet-relayc URL wrongcap SEED           reads with a wrong capability of a mailbox that
 *                                           exists and of one that does not
 *   duet-relayc URL hold N SECONDS          N connections, each says HELLO, then all wait
 *   duet-relayc URL ping N                  N PINGs one after another: latency
 *   duet-relayc URL junk KIND               after HELLO, one bad record: random, truncated
 *                                           (frame cut), truncmsgpack, oversized (a frame
 *                                           over the limit), bigobject
 *   duet-relayc URL pair [NAMEPLATE]        rendezvous as a listener (0: any) or, with
 *                                           "join NAMEPLATE", as the joiner; one message each
 *                                           way
 *
 * Output: "key=value" lines on stdout; errors as "error=NAME" (duet_err_name). Exit 0 when
 * the operation did what it set out to do, 1 otherwise, 2 on usage errors.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>
#include <uv.h>

#include "codec.h"
#include "link.h"
#include "relay.h"
#include "relay_client.h"
#include "relay_sync.h"
#include "sysrng.h"

#define MAXSEQ 100000u

static uv_loop_t loop;
static duet_relay_url_t url;
static const char *url_text;

static void keys_of(uint64_t seed, bool a_side, duet_relay_keys_t *k)
{
    uint8_t ps[32], pka[32], pkb[32];
    memset(ps, 0, sizeof ps);
    memcpy(ps, &seed, sizeof seed);
    memset(pka, 0xaa, 32);
    memset(pkb, 0xbb, 32);
    duet_relay_keys_derive(k, ps, a_side ? pka : pkb, a_side ? pkb : pka);
}

/* ---- device a and device b: file-backed hosts ------------------------------------------------ */

typedef struct dev {
    int fd;
    uint8_t flags[MAXSEQ + 1];   /* a: relayed; b: stored */
    uint8_t pending[MAXSEQ + 1]; /* b: in the open batch */
    uint64_t n, size;            /* a: envelopes and their size */
    uint8_t env[DUET_RELAY_OBJECT_MAX];
    uint64_t dups, stored;
    bool corrupt;
} device_t;

static device_t dev;

static duet_err_t h_state(void *ctx, uint64_t *wm, uint64_t *above, size_t cap, size_t *n)
{
    device_t *d = ctx;
    uint64_t w = 0;
    *n = 0;
    while (w + 1 <= MAXSEQ && d->flags[w + 1] && d->n == 0) {
        w++;
    }
    *wm = w;
    for (uint64_t s = w + 1; d->n == 0 && s <= MAXSEQ && *n < cap; s++) {
        if (d->flags[s]) {
            above[(*n)++] = s;
        }
    }
    return DUET_OK;
}

static duet_err_t h_next(void *ctx, uint64_t after, uint64_t *seq, const uint8_t **env, size_t *len)
{
    device_t *d = ctx;
    for (uint64_t s = after + 1; s <= d->n; s++) {
        if (!d->flags[s]) {
            for (uint64_t i = 0; i < d->size; i++) {
                d->env[i] = (uint8_t)(s + i);
            }
            *seq = s;
            *env = d->env;
            *len = d->size;
            return DUET_OK;
        }
    }
    return DUET_ENOENT;
}

static duet_err_t h_mark(void *ctx, uint64_t seq)
{
    device_t *d = ctx;
    uint8_t one = 1;
    d->flags[seq] = 1;
    if (pwrite(d->fd, &one, 1, (off_t)seq) != 1 || fdatasync(d->fd) != 0) {
        return DUET_EIO;
    }
    return DUET_OK;
}

static duet_err_t h_begin(void *ctx)
{
    device_t *d = ctx;
    memset(d->pending, 0, sizeof d->pending);
    return DUET_OK;
}

static duet_err_t h_put(void *ctx, uint64_t seq, const uint8_t *env, size_t len, bool *counted)
{
    device_t *d = ctx;
    *counted = false;
    if (seq > MAXSEQ) {
        return DUET_ERANGE;
    }
    if (d->flags[seq] || d->pending[seq]) {
        d->dups++;
        return DUET_EDUP;
    }
    for (size_t i = 0; i < len; i++) {
        if (env[i] != (uint8_t)(seq + i)) {
            d->corrupt = true;
            return DUET_EAUTH;
        }
    }
    d->pending[seq] = 1;
    *counted = true;
    return DUET_OK;
}

static duet_err_t h_commit(void *ctx)
{
    device_t *d = ctx;
    for (uint64_t s = 1; s <= MAXSEQ; s++) {
        if (d->pending[s]) {
            d->flags[s] = 1;
            d->stored++;
            uint8_t one = 1;
            if (pwrite(d->fd, &one, 1, (off_t)s) != 1) {
                return DUET_EIO;
            }
        }
    }
    return fdatasync(d->fd) == 0 ? DUET_OK : DUET_EIO;
}

static void h_abort(void *ctx)
{
    device_t *d = ctx;
    memset(d->pending, 0, sizeof d->pending);
}

static duet_err_t h_acked(void *ctx, uint64_t wm, const uint64_t *above, size_t n, uint64_t *items)
{
    (void)ctx, (void)wm, (void)above, (void)n;
    *items = 0;
    return DUET_OK;
}

static bool dev_open(const char *path)
{
    dev.fd = open(path, O_RDWR | O_CREAT, 0600);
    if (dev.fd < 0) {
        return false;
    }
    ssize_t r = pread(dev.fd, dev.flags, sizeof dev.flags, 0);
    return r >= 0;
}

static duet_err_t session_result, session_upload;
static duet_relay_sync_counts_t session_counts;

static void on_done(duet_relay_client_t *c, void *ctx, duet_err_t err, duet_err_t upload_err,
                    const duet_relay_sync_counts_t *counts)
{
    (void)c, (void)ctx;
    session_result = err;
    session_upload = upload_err;
    session_counts = *counts;
}

static void on_log(void *ctx, const char *line)
{
    (void)ctx;
    fprintf(stderr, "relayc: %s\n", line);
}

static int run_session(uint64_t seed, bool a_side)
{
    duet_relay_keys_t k;
    duet_relay_client_t *c;
    keys_of(seed, a_side, &k);
    duet_relay_host_t h = {&dev,  h_state,  h_next,  h_mark, h_begin,
                           h_put, h_commit, h_abort, h_acked};
    duet_relay_client_opts_t o = {&loop, url_text, &h, &k, duet_sysrng(), false};
    duet_relay_client_callbacks_t cb = {.on_done = on_done, .on_log = on_log};
    duet_err_t err = duet_relay_client_start(&o, &cb, &c);
    duet_relay_keys_dispose(&k);
    if (err != DUET_OK) {
        printf("error=%s\n", duet_err_name(err));
        return 1;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uint64_t relayed = 0;
    for (uint64_t s = 1; s <= MAXSEQ; s++) {
        relayed += dev.flags[s];
    }
    printf("uploaded=%llu\nreceived=%llu\nstored_total=%llu\ndups=%llu\ncorrupt=%d\n",
           (unsigned long long)session_counts.uploaded, (unsigned long long)session_counts.received,
           (unsigned long long)relayed, (unsigned long long)dev.dups, dev.corrupt);
    printf("error=%s\nupload_error=%s\n", duet_err_name(session_result),
           duet_err_name(session_upload));
    return session_result == DUET_OK && session_upload == DUET_OK && !dev.corrupt ? 0 : 1;
}

/* ---- raw connections -------------------------------------------------------------------- */

typedef struct raw {
    duet_link_t *link;
    bool open, closed, welcomed;
    duet_err_t err;
    uint32_t rid;
    uint64_t sent, answered, ok, quota, other;
    uint64_t window;
    uint64_t target;
    uint64_t t0;
    uint64_t *lat; /* ping latencies, ns */
    duet_err_t last_error;
    uint8_t errframe[2][64];
    size_t errlen[2];
    int mode;
    duet_relay_keys_t k;
    duet_codec_enc_t enc;
} raw_t;

enum { M_HELLO, M_FLOOD, M_PING, M_HOLD, M_WRONG, M_JUNK };

static const char *junk_kind;

static size_t raw_open_count, raw_welcomed, raw_closed;

/* One frame as a record of its own (length ‖ frame). */
static void raw_send(raw_t *r)
{
    static uint8_t rec[DUET_RELAY_RECORD_MAX];
    const uint8_t *f;
    size_t len;
    if (duet_codec_enc_finish(&r->enc, &f, &len) == DUET_OK) {
        duet_relay_record_put_len(rec, len);
        memcpy(rec + DUET_RELAY_RECORD_HDR, f, len);
        duet_err_t err = duet_link_send(r->link, rec, DUET_RELAY_RECORD_HDR + len);
        (void)err;
    }
    duet_codec_enc_reset(&r->enc);
    r->sent++;
}

static void raw_more(raw_t *r)
{
    if (r->mode == M_FLOOD) {
        while (r->sent - 1 < r->target && r->sent - r->answered < r->window &&
               duet_link_write_queue_size(r->link) < DUET_LINK_HIGH_WATER) {
            uint8_t oid[16] = {0}, data[512];
            uint64_t i = r->sent;
            memcpy(oid, &i, sizeof i);
            memset(data, 0x5a, sizeof data);
            duet_relay_enc_put(&r->enc, ++r->rid, &r->k.out, DUET_RELAY_ENVELOPE, oid, 16, data,
                               sizeof data);
            raw_send(r);
        }
    } else if (r->mode == M_PING && r->sent - 1 < r->target && r->sent == r->answered) {
        r->t0 = uv_hrtime();
        duet_relay_enc_ping(&r->enc, ++r->rid);
        raw_send(r);
    }
}

/* After HELLO: one bad record of the kind asked for. */
static void raw_junk(raw_t *r)
{
    static uint8_t big[DUET_RELAY_FRAME_MAX + 4096];
    uint8_t junk[300];
    const uint8_t *f;
    size_t len;
    duet_err_t err = DUET_OK;
    r->target = 1;
    if (strcmp(junk_kind, "random") == 0) {
        randombytes_buf(junk, sizeof junk);
        err = duet_link_send(r->link, junk, sizeof junk);
    } else if (strcmp(junk_kind, "truncated") == 0) {
        uint8_t data[64] = {0}, oid[16] = {1};
        duet_relay_enc_put(&r->enc, ++r->rid, &r->k.out, DUET_RELAY_ENVELOPE, oid, 16, data,
                           sizeof data);
        if (duet_codec_enc_finish(&r->enc, &f, &len) == DUET_OK) {
            /* a record whose frame is cut in half: its length says more than there is */
            duet_relay_record_put_len(big, len);
            memcpy(big + DUET_RELAY_RECORD_HDR, f, len / 2);
            err = duet_link_send(r->link, big, DUET_RELAY_RECORD_HDR + len / 2);
        }
        duet_codec_enc_reset(&r->enc);
    } else if (strcmp(junk_kind, "truncmsgpack") == 0) {
        uint8_t data[64] = {0}, oid[16] = {1};
        duet_relay_enc_put(&r->enc, ++r->rid, &r->k.out, DUET_RELAY_ENVELOPE, oid, 16, data,
                           sizeof data);
        if (duet_codec_enc_finish(&r->enc, &f, &len) == DUET_OK) {
            /* a well-framed PUT whose msgpack is cut in half */
            duet_relay_record_put_len(big, len / 2);
            memcpy(big + DUET_RELAY_RECORD_HDR, f, len / 2);
            err = duet_link_send(r->link, big, DUET_RELAY_RECORD_HDR + len / 2);
        }
        duet_codec_enc_reset(&r->enc);
    } else if (strcmp(junk_kind, "bigobject") == 0) {
        /* A well-formed PUT whose object is over the relay's max-object: refused, not
         * fatal. */
        uint8_t oid[16] = {2};
        memset(big, 0x33, DUET_RELAY_OBJECT_MAX);
        duet_relay_enc_put(&r->enc, ++r->rid, &r->k.out, DUET_RELAY_ENVELOPE, oid, 16, big,
                           DUET_RELAY_OBJECT_MAX);
        raw_send(r);
        return;
    } else { /* "oversized": a frame over the protocol's frame limit */
        memset(big, 0x91, sizeof big);
        big[0] = 0;
        big[1] = (uint8_t)((sizeof big - DUET_RELAY_RECORD_HDR) >> 16);
        big[2] = (uint8_t)((sizeof big - DUET_RELAY_RECORD_HDR) >> 8);
        big[3] = (uint8_t)(sizeof big - DUET_RELAY_RECORD_HDR);
        err = duet_link_send(r->link, big, sizeof big);
    }
    r->sent++;
    (void)err;
}

static void raw_on_open(duet_link_t *link, void *ctx)
{
    raw_t *r = ctx;
    (void)link;
    r->open = true;
    raw_open_count++;
    duet_relay_enc_hello(&r->enc, ++r->rid);
    raw_send(r);
}

static void raw_done(raw_t *r)
{
    if (r->link != NULL && !r->closed) {
        duet_link_close(r->link, DUET_OK);
    }
}

static duet_err_t raw_on_frame(raw_t *r, const uint8_t *rec, size_t len);

static duet_err_t raw_on_record(duet_link_t *link, void *ctx, const uint8_t *rec, size_t len)
{
    const uint8_t *frame;
    size_t pos = 0, flen;
    duet_err_t err;
    (void)link;
    while ((err = duet_relay_record_next(rec, len, &pos, &frame, &flen)) == DUET_OK) {
        if ((err = raw_on_frame(ctx, frame, flen)) != DUET_OK) {
            return err;
        }
    }
    return err == DUET_ENOENT ? DUET_OK : err;
}

static duet_err_t raw_on_frame(raw_t *r, const uint8_t *rec, size_t len)
{
    duet_relay_frame_t f;
    if (duet_relay_frame_decode(&f, rec, len) != DUET_OK) {
        r->last_error = DUET_EPROTO;
        return DUET_EPROTO;
    }
    if (f.type == DUET_RELAY_WELCOME) {
        r->welcomed = true;
        raw_welcomed++;
        r->answered++;
        if (r->mode == M_HELLO) {
            raw_done(r);
        } else if (r->mode == M_WRONG) {
            /* A wrong read capability for the pair's mailbox (which exists: the test wrote
             * it) and for a mailbox nobody ever wrote. */
            duet_relay_dir_t d = r->k.out;
            d.rcap[0] ^= 1;
            /* Both with the same request id, so the two answers can be compared whole. */
            duet_relay_enc_list(&r->enc, 100, &d, 0, 0, 16);
            raw_send(r);
            duet_relay_keys_t other;
            keys_of(0x0123456789abcdefu, false, &other);
            other.out.rcap[0] ^= 1;
            duet_relay_enc_list(&r->enc, 100, &other.out, 0, 0, 16);
            raw_send(r);
            duet_relay_keys_dispose(&other);
        }
        if (r->mode == M_JUNK) {
            raw_junk(r);
        }
        raw_more(r);
    } else if (f.rid != 0 || f.type == DUET_RELAY_ERROR) {
        r->answered++;
        if (f.type == DUET_RELAY_OK || f.type == DUET_RELAY_LISTED) {
            r->ok++;
        } else if (f.type == DUET_RELAY_ERROR && f.err == DUET_EQUOTA) {
            r->quota++;
        } else if (f.type == DUET_RELAY_ERROR) {
            r->other++;
            r->last_error = f.err;
            if (r->mode == M_WRONG && r->answered - 2 < 2 && len <= sizeof r->errframe[0]) {
                size_t i = r->answered - 2;
                memcpy(r->errframe[i], rec, len);
                r->errlen[i] = len;
            }
        }
        if (f.type == DUET_RELAY_ERROR && f.fatal) {
            r->last_error = f.err;
            duet_relay_frame_dispose(&f);
            raw_done(r);
            return DUET_OK;
        }
        if (r->mode == M_PING && r->lat != NULL) {
            r->lat[r->answered - 2] = uv_hrtime() - r->t0;
        }
        raw_more(r);
        if (r->answered - 1 == r->target && r->mode != M_HOLD) {
            raw_done(r);
        }
    }
    duet_relay_frame_dispose(&f);
    return DUET_OK;
}

static void raw_on_writable(duet_link_t *link, void *ctx)
{
    (void)link;
    raw_more(ctx);
}

static void raw_on_close(duet_link_t *link, void *ctx, duet_err_t err)
{
    raw_t *r = ctx;
    (void)link;
    r->closed = true;
    r->err = err;
    raw_closed++;
}

static void raw_on_log(duet_link_t *link, void *ctx, const char *line)
{
    (void)link, (void)ctx, (void)line;
}

static duet_err_t raw_start(raw_t *r, int mode, uint64_t seed)
{
    struct sockaddr_storage ss;
    char addr[300];
    memset(r, 0, sizeof *r);
    r->mode = mode;
    r->window = 64;
    keys_of(seed, true, &r->k);
    duet_codec_enc_init(&r->enc, DUET_RELAY_FRAME_MAX);
    (void)snprintf(addr, sizeof addr, strchr(url.host, ':') ? "[%s]:%u" : "%s:%u", url.host,
                   (unsigned)url.port);
    duet_err_t err = duet_addr_parse(addr, &ss);
    if (err != DUET_OK) {
        return err;
    }
    duet_link_config_t cfg;
    duet_link_callbacks_t cb;
    memset(&cfg, 0, sizeof cfg);
    cfg.mode = DUET_LINK_NK;
    cfg.remote_static = url.key;
    cfg.rng = duet_sysrng();
    memset(&cb, 0, sizeof cb);
    cb.ctx = r;
    cb.on_open = raw_on_open;
    cb.on_record = raw_on_record;
    cb.on_writable = raw_on_writable;
    cb.on_close = raw_on_close;
    cb.on_log = raw_on_log;
    return duet_link_connect(&loop, (struct sockaddr *)&ss, &cfg, &cb, &r->link);
}

static void raw_dispose(raw_t *r)
{
    duet_codec_enc_dispose(&r->enc);
    duet_relay_keys_dispose(&r->k);
}

static duet_err_t raw_final_err(const raw_t *r)
{
    if (r->last_error != DUET_OK) {
        return r->last_error;
    }
    if (!r->open) {
        return r->err == DUET_ECLOSED || r->err == DUET_ECONNRESET || r->err == DUET_EAUTH
                   ? DUET_ERELAYKEY
                   : r->err;
    }
    return r->err;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* ---- hold: many idle connections ----------------------------------------------------------- */

static uv_timer_t hold_timer;
static raw_t *holds;
static size_t nholds;

static void on_hold_end(uv_timer_t *t)
{
    (void)t;
    for (size_t i = 0; i < nholds; i++) {
        raw_done(&holds[i]);
    }
    uv_close((uv_handle_t *)&hold_timer, NULL);
}

static void on_hold_report(uv_timer_t *t)
{
    static size_t last = (size_t)-1;
    (void)t;
    if (raw_welcomed != last) {
        last = raw_welcomed;
        printf("held=%zu\n", raw_welcomed);
        fflush(stdout);
    }
}

/* ---- the rendezvous ---------------------------------------------------------------------- */

static duet_relay_rendezvous_t *rv;
static bool rv_joiner;
static int rv_status = 1;

static void rv_ready(duet_relay_rendezvous_t *r, void *ctx, uint16_t np)
{
    (void)ctx;
    printf("nameplate=%u\n", (unsigned)np);
    fflush(stdout);
    if (rv_joiner) {
        duet_err_t err =
            duet_relay_rendezvous_send(r, (const uint8_t *)"hello from the joiner", 21);
        (void)err;
    }
}

static void rv_message(duet_relay_rendezvous_t *r, void *ctx, const uint8_t *msg, size_t len)
{
    (void)ctx;
    printf("message=%.*s\n", (int)len, (const char *)msg);
    fflush(stdout);
    if (!rv_joiner) {
        duet_err_t err =
            duet_relay_rendezvous_send(r, (const uint8_t *)"hello from the listener", 23);
        (void)err;
        duet_relay_rendezvous_close(r);
    } else {
        duet_relay_rendezvous_close(r);
    }
    rv_status = 0;
}

static void rv_closed(duet_relay_rendezvous_t *r, void *ctx, duet_err_t err)
{
    (void)r, (void)ctx;
    printf("closed=%s\n", duet_err_name(err));
    duet_relay_rendezvous_close(r);
}

/* ---- main ------------------------------------------------------------------------------ */

static int usage(void)
{
    fprintf(stderr, "usage: duet-relayc URL hello|upload|download|flood|wrongcap|hold|ping|pair "
                    "...\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (sodium_init() < 0 || argc < 3) {
        return usage();
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    url_text = argv[1];
    duet_err_t perr = duet_relay_url_parse(&url, url_text, strlen(url_text));
    if (perr != DUET_OK) {
        printf("error=%s\n", duet_err_name(perr));
        return 1;
    }
    uv_loop_init(&loop);
    const char *cmd = argv[2];
    int status = 1;
    if (strcmp(cmd, "upload") == 0 && argc == 7) {
        dev.n = strtoull(argv[4], NULL, 10);
        dev.size = strtoull(argv[5], NULL, 10);
        if (dev.n == 0 || dev.n > MAXSEQ || dev.size == 0 || dev.size > 98304 ||
            !dev_open(argv[6])) {
            return usage();
        }
        status = run_session(strtoull(argv[3], NULL, 10), true);
    } else if (strcmp(cmd, "download") == 0 && argc == 5) {
        if (!dev_open(argv[4])) {
            return usage();
        }
        status = run_session(strtoull(argv[3], NULL, 10), false);
    } else if (strcmp(cmd, "hello") == 0 || strcmp(cmd, "flood") == 0 || strcmp(cmd, "ping") == 0 ||
               strcmp(cmd, "wrongcap") == 0 || (strcmp(cmd, "junk") == 0 && argc == 4)) {
        raw_t r;
        int mode = cmd[0] == 'h'   ? M_HELLO
                   : cmd[0] == 'f' ? M_FLOOD
                   : cmd[0] == 'p' ? M_PING
                   : cmd[0] == 'j' ? M_JUNK
                                   : M_WRONG;
        junk_kind = mode == M_JUNK ? argv[3] : NULL;
        uint64_t seed =
            mode == M_FLOOD || mode == M_WRONG ? strtoull(argc > 3 ? argv[3] : "1", NULL, 10) : 1;
        duet_err_t err = raw_start(&r, mode, seed);
        if (err != DUET_OK) {
            printf("error=%s\n", duet_err_name(err));
            return 1;
        }
        if (mode == M_FLOOD) {
            r.target = argc > 4 ? strtoull(argv[4], NULL, 10) : 1000;
        } else if (mode == M_PING) {
            r.target = argc > 3 ? strtoull(argv[3], NULL, 10) : 100;
            r.lat = calloc(r.target + 1, sizeof *r.lat);
        } else if (mode == M_WRONG) {
            r.target = 2;
        }
        uv_run(&loop, UV_RUN_DEFAULT);
        duet_err_t fin = raw_final_err(&r);
        printf("welcomed=%d\nok=%llu\nquota=%llu\nother=%llu\nerror=%s\n", r.welcomed,
               (unsigned long long)r.ok, (unsigned long long)r.quota, (unsigned long long)r.other,
               duet_err_name(fin));
        status = r.welcomed ? 0 : 1;
        if (mode == M_PING && r.answered > 1) {
            size_t n = r.answered - 1;
            qsort(r.lat, n, sizeof *r.lat, cmp_u64);
            printf("pings=%zu\np50_us=%llu\np99_us=%llu\nmax_us=%llu\n", n,
                   (unsigned long long)(r.lat[n / 2] / 1000),
                   (unsigned long long)(r.lat[(n * 99) / 100] / 1000),
                   (unsigned long long)(r.lat[n - 1] / 1000));
            status = n == r.target ? 0 : 1;
        }
        if (mode == M_WRONG) {
            bool same = r.errlen[0] > 0 && r.errlen[0] == r.errlen[1] &&
                        memcmp(r.errframe[0], r.errframe[1], r.errlen[0]) == 0;
            printf("refusals_identical=%d\n", same);
            status = same && r.last_error == DUET_ECAPABILITY ? 0 : 1;
        }
        free(r.lat);
        raw_dispose(&r);
    } else if (strcmp(cmd, "hold") == 0 && argc == 5) {
        nholds = strtoull(argv[3], NULL, 10);
        holds = calloc(nholds, sizeof *holds);
        for (size_t i = 0; i < nholds; i++) {
            if (raw_start(&holds[i], M_HOLD, i) != DUET_OK) {
                printf("error=connect\n");
                return 1;
            }
        }
        uv_timer_init(&loop, &hold_timer);
        uv_timer_start(&hold_timer, on_hold_end, strtoull(argv[4], NULL, 10) * 1000u, 0);
        uv_timer_t report;
        uv_timer_init(&loop, &report);
        uv_timer_start(&report, on_hold_report, 200, 200);
        uv_unref((uv_handle_t *)&report);
        uv_run(&loop, UV_RUN_DEFAULT);
        size_t busy = 0;
        for (size_t i = 0; i < nholds; i++) {
            busy += holds[i].last_error == DUET_EBUSY;
        }
        printf("welcomed=%zu\nbusy=%zu\n", raw_welcomed, busy);
        status = raw_welcomed == nholds ? 0 : 1;
        for (size_t i = 0; i < nholds; i++) {
            raw_dispose(&holds[i]);
        }
        free(holds);
    } else if (strcmp(cmd, "pair") == 0) {
        uint16_t np = 0;
        if (argc >= 5 && strcmp(argv[3], "join") == 0) {
            rv_joiner = true;
            np = (uint16_t)strtoul(argv[4], NULL, 10);
        } else if (argc >= 4) {
            np = (uint16_t)strtoul(argv[3], NULL, 10);
        }
        duet_relay_rendezvous_callbacks_t cb = {.on_ready = rv_ready,
                                                .on_message = rv_message,
                                                .on_closed = rv_closed,
                                                .on_log = on_log};
        duet_err_t err =
            duet_relay_rendezvous_start(&loop, url_text, np, rv_joiner, duet_sysrng(), &cb, &rv);
        if (err != DUET_OK) {
            printf("error=%s\n", duet_err_name(err));
            return 1;
        }
        uv_run(&loop, UV_RUN_DEFAULT);
        status = rv_status;
    } else {
        return usage();
    }
    uv_loop_close(&loop);
    return status;
}
