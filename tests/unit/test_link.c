/*
 * net/link and net/frame: real links over 127.0.0.1 in one uv loop, in-process.
 *
 * Each test builds a harness (h_t) with a listening socket on a port from bind(0), one or
 * two endpoints, and a guard timer that stops the loop if a test would hang. Endpoints are
 * links (side_t), or hand-driven sockets (sock_t) that send raw bytes or play a scripted
 * Noise initiator built from core/noise and net/frame directly (to send what an honest
 * link never sends), or a recording proxy (proxy_t) for the replay tests. Callbacks only
 * record what happened; the assertions run after the loop has ended, so a failure never
 * longjmps out of libuv.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>
#include <uv.h>

#include "frame.h"
#include "link.h"
#include "noise.h"
#include "sysrng.h"
#include "testrng.h"

#define GUARD_MS    20000u
#define SOCK_RX_CAP (1u << 20)
#define SIDE_LOG    4096u

/* ---- keys ------------------------------------------------------------------------------- */

typedef struct keypair {
    uint8_t priv[32], pub[32];
} keypair_t;

typedef struct fixture {
    keypair_t alice, bob, mallory, relay;
} fixture_t;

static void keypair_make(keypair_t *k, duet_rng_t *rng)
{
    duet_rng_fill(rng, k->priv, sizeof k->priv);
    assert_int_equal(crypto_scalarmult_base(k->pub, k->priv), 0);
}

static int group_setup(void **state)
{
    if (sodium_init() < 0) {
        return -1;
    }
    fixture_t *f = calloc(1, sizeof *f);
    duet_testrng_t tr;
    duet_rng_t rng = duet_testrng_init(&tr, 0x11c4);
    keypair_make(&f->alice, &rng);
    keypair_make(&f->bob, &rng);
    keypair_make(&f->mallory, &rng);
    keypair_make(&f->relay, &rng);
    *state = f;
    return 0;
}

static int group_teardown(void **state)
{
    free(*state);
    return 0;
}

/* Byte j of the k-th non-empty record a side sends. */
static uint8_t pattern_byte(uint32_t k, size_t j)
{
    return (uint8_t)(k * 31u + j * 7u + (j >> 9) + 1u);
}

static void pattern_fill(uint8_t *buf, uint32_t k, size_t len)
{
    for (size_t j = 0; j < len; j++) {
        buf[j] = pattern_byte(k, j);
    }
}

/* ---- the harness ------------------------------------------------------------------------ */

typedef struct h h_t;

typedef enum { SRV_NONE, SRV_LINK, SRV_SOCK } srv_kind_t;

/* A link endpoint and what it saw. */
typedef struct side {
    h_t *h;
    const char *name;
    duet_link_t *link;
    duet_link_config_t cfg;
    duet_link_options_t opt;
    int opened, closed, writable, drained, eagain;
    duet_err_t close_err;
    uint64_t start_at, open_at, close_at;
    /* sending: plan[i] bytes for each i, pattern k = number of non-empty records before */
    const size_t *plan;
    size_t nplan, next;
    uint32_t sent_idx;
    size_t max_queue;
    bool close_when_done; /* close(DUET_OK) once everything is sent and received */
    /* receiving: the expected lengths of the non-empty records */
    const size_t *expect;
    size_t nexpect, nrec;
    uint64_t rec_bytes;
    duet_err_t refuse_with; /* on_record returns this (DUET_OK: accept) */
    /* pausing after each record */
    bool pause_each, paused_now;
    uint64_t resume_ms; /* how long each pause lasts (default 5 ms) */
    int max_pauses;     /* pause only this many times (0: no limit) */
    int pauses;
    int delivered_while_paused;
    uv_timer_t resume_timer;
    bool resume_timer_used;
    /* learned at open */
    duet_err_t rs_err, hh_err;
    uint8_t rs[32], hh[DUET_LINK_HASH_BYTES];
    char log[SIDE_LOG];
} side_t;

/* A socket driven by hand. */
typedef struct sock {
    h_t *h;
    bool used, closing;
    int handles;
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_timer_t timer;
    uv_shutdown_t sreq;
    /* raw behaviour */
    const uint8_t *greeting;
    size_t greeting_len;
    bool shut_after; /* FIN after the greeting */
    bool no_read;
    /* what came in */
    uint8_t *rx;
    size_t rx_len, rx_total;
    bool eof;
    int err;
    /* scripted Noise initiator */
    bool noise;
    duet_link_mode_t mode;
    uint16_t version;
    const uint8_t *s, *rs;
    duet_noise_hs_t hs;
    duet_noise_cs_t tx, rxcs;
    duet_frame_reader_t rd;
    duet_frame_reasm_t ra;
    bool open;
    duet_err_t noise_err;
    void (*script)(struct sock *);
    int keepalives, records;
    bool manual; /* decrypt by hand and keep the plaintexts */
    size_t nplain;
    size_t plain_len[8], frame_len[8];
    uint8_t plain[8][16];
    uint64_t ka_period;           /* send a keepalive this often once open */
    bool stop_reading_after_open; /* a peer that does not read */
} sock_t;

/* A TCP proxy that records both directions: [0] client to server, [1] server to client. */
typedef struct proxy {
    h_t *h;
    uv_tcp_t listener, end[2];
    uv_connect_t creq;
    uv_shutdown_t sreq[2];
    struct sockaddr_storage addr;
    uint8_t *rec[2];
    size_t len[2];
    bool eof[2];
    int handles;
} proxy_t;

struct h {
    fixture_t *f;
    uv_loop_t loop;
    uv_tcp_t server;
    uv_timer_t guard;
    bool guard_fired, shut;
    struct sockaddr_storage addr;
    srv_kind_t srv_kind;
    side_t cli, srv;
    sock_t sock;
    proxy_t *proxy;
    int ends, expect_ends;
    uint8_t *sendbuf;
    char fail[256];
};

static void h_failf(h_t *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void h_failf(h_t *h, const char *fmt, ...)
{
    if (h->fail[0] != '\0') {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(h->fail, sizeof h->fail, fmt, ap);
    va_end(ap);
}

static void h_on_closed_quiet(uv_handle_t *hd)
{
    (void)hd;
}

static void sock_close(sock_t *s);

/* Stop listening and guarding: the loop ends when the endpoints are closed. */
static void h_shutdown(h_t *h)
{
    if (h->shut) {
        return;
    }
    h->shut = true;
    uv_close((uv_handle_t *)&h->server, h_on_closed_quiet);
    uv_close((uv_handle_t *)&h->guard, h_on_closed_quiet);
    if (h->proxy != NULL && !uv_is_closing((uv_handle_t *)&h->proxy->listener)) {
        uv_close((uv_handle_t *)&h->proxy->listener, h_on_closed_quiet);
    }
}

static void h_end(h_t *h)
{
    if (++h->ends >= h->expect_ends) {
        h_shutdown(h);
    }
}

static void proxy_abort(proxy_t *p);

static void h_on_guard(uv_timer_t *t)
{
    h_t *h = t->data;
    h->guard_fired = true;
    side_t *sides[2] = {&h->cli, &h->srv};
    for (int i = 0; i < 2; i++) {
        if (sides[i]->link != NULL && !sides[i]->closed) {
            duet_link_close(sides[i]->link, DUET_ECANCELED);
        }
    }
    if (h->sock.used) {
        sock_close(&h->sock);
    }
    if (h->proxy != NULL) {
        proxy_abort(h->proxy);
    }
    h_shutdown(h);
}

static int h_listen(uv_loop_t *loop, uv_tcp_t *t, struct sockaddr_storage *addr,
                    uv_connection_cb cb)
{
    struct sockaddr_in any;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &any), 0);
    assert_int_equal(uv_tcp_init(loop, t), 0);
    assert_int_equal(uv_tcp_bind(t, (const struct sockaddr *)&any, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)t, 16, cb), 0);
    int n = (int)sizeof *addr;
    assert_int_equal(uv_tcp_getsockname(t, (struct sockaddr *)addr, &n), 0);
    return ntohs(((struct sockaddr_in *)addr)->sin_port);
}

static void side_init(h_t *h, side_t *s, const char *name, duet_link_mode_t mode,
                      const keypair_t *local, const uint8_t *remote_pub)
{
    memset(s, 0, sizeof *s);
    s->h = h;
    s->name = name;
    s->cfg.mode = mode;
    s->cfg.local_static = local ? local->priv : NULL;
    s->cfg.remote_static = remote_pub;
    s->cfg.rng = duet_sysrng();
    duet_link_options_default(&s->opt);
    s->cfg.options = &s->opt;
    s->close_err = DUET_EINTERNAL;
}

static void srv_on_connection(uv_stream_t *server, int status);

static h_t *h_new(void **state, srv_kind_t kind, int expect_ends)
{
    h_t *h = calloc(1, sizeof *h);
    assert_non_null(h);
    h->f = *state;
    h->srv_kind = kind;
    h->expect_ends = expect_ends;
    h->sendbuf = malloc(DUET_LINK_MAX_RECORD + 1);
    assert_non_null(h->sendbuf);
    assert_int_equal(uv_loop_init(&h->loop), 0);
    h->server.data = h;
    (void)h_listen(&h->loop, &h->server, &h->addr, srv_on_connection);
    h->server.data = h;
    assert_int_equal(uv_timer_init(&h->loop, &h->guard), 0);
    h->guard.data = h;
    assert_int_equal(uv_timer_start(&h->guard, h_on_guard, GUARD_MS, 0), 0);
    return h;
}

/* Run to the end; assert that nothing hung and every handle was closed. */
static void h_run(h_t *h)
{
    (void)uv_run(&h->loop, UV_RUN_DEFAULT);
    assert_false(h->guard_fired);
    assert_int_equal(uv_loop_close(&h->loop), 0);
    if (h->fail[0] != '\0') {
        fail_msg("%s", h->fail);
    }
}

static void h_free(h_t *h)
{
    if (h->proxy != NULL) {
        free(h->proxy->rec[0]);
        free(h->proxy->rec[1]);
        free(h->proxy);
    }
    duet_noise_hs_dispose(&h->sock.hs);
    duet_frame_reasm_dispose(&h->sock.ra);
    free(h->sock.rx);
    free(h->sendbuf);
    free(h);
}

/* ---- link callbacks --------------------------------------------------------------------- */

static void side_pump(side_t *s);

static bool side_done(const side_t *s)
{
    return s->next == s->nplan && s->nrec == s->nexpect;
}

static void side_maybe_close(side_t *s)
{
    if (s->close_when_done && side_done(s) && s->opened && !s->closed) {
        duet_link_close(s->link, DUET_OK);
    }
}

static void cb_open(duet_link_t *link, void *ctx)
{
    side_t *s = ctx;
    s->opened++;
    s->open_at = uv_now(&s->h->loop);
    s->rs_err = duet_link_remote_static(link, s->rs);
    s->hh_err = duet_link_handshake_hash(link, s->hh);
    side_pump(s);
    side_maybe_close(s);
}

static void side_on_resume(uv_timer_t *t)
{
    side_t *s = t->data;
    s->paused_now = false;
    if (s->link != NULL && !s->closed) {
        duet_link_resume_read(s->link);
    }
}

static duet_err_t cb_record(duet_link_t *link, void *ctx, const uint8_t *rec, size_t len)
{
    side_t *s = ctx;
    (void)link;
    h_t *h = s->h;
    if (s->paused_now) {
        s->delivered_while_paused++;
    }
    if (s->nrec >= s->nexpect) {
        h_failf(h, "%s: unexpected record %zu of %zu bytes", s->name, s->nrec, len);
    } else if (len != s->expect[s->nrec]) {
        h_failf(h, "%s: record %zu has %zu bytes, expected %zu", s->name, s->nrec, len,
                s->expect[s->nrec]);
    } else {
        for (size_t j = 0; j < len; j++) {
            if (rec[j] != pattern_byte((uint32_t)s->nrec, j)) {
                h_failf(h, "%s: record %zu differs at byte %zu", s->name, s->nrec, j);
                break;
            }
        }
    }
    s->nrec++;
    s->rec_bytes += len;
    if (s->refuse_with != DUET_OK) {
        return s->refuse_with;
    }
    if (s->pause_each && s->nrec < s->nexpect &&
        (s->max_pauses == 0 || s->pauses < s->max_pauses)) {
        s->pauses++;
        duet_link_pause_read(s->link);
        s->paused_now = true;
        if (!s->resume_timer_used) {
            s->resume_timer_used = true;
            assert_int_equal(uv_timer_init(&h->loop, &s->resume_timer), 0);
            s->resume_timer.data = s;
        }
        (void)uv_timer_start(&s->resume_timer, side_on_resume, s->resume_ms ? s->resume_ms : 5, 0);
    }
    side_maybe_close(s);
    return DUET_OK;
}

static void cb_drained(duet_link_t *link, void *ctx)
{
    side_t *s = ctx;
    (void)link;
    s->drained++;
}

static void cb_writable(duet_link_t *link, void *ctx)
{
    side_t *s = ctx;
    (void)link;
    s->writable++;
    side_pump(s);
    side_maybe_close(s);
}

static void cb_close(duet_link_t *link, void *ctx, duet_err_t err)
{
    side_t *s = ctx;
    (void)link;
    s->closed++;
    s->close_err = err;
    s->close_at = uv_now(&s->h->loop);
    s->link = NULL;
    if (s->h->sock.used && s->h->sock.stop_reading_after_open) {
        sock_close(&s->h->sock); /* it would never notice */
    }
    if (s->resume_timer_used) {
        uv_close((uv_handle_t *)&s->resume_timer, h_on_closed_quiet);
    }
    h_end(s->h);
}

static void cb_log(duet_link_t *link, void *ctx, const char *line)
{
    side_t *s = ctx;
    (void)link;
    size_t n = strlen(s->log);
    (void)snprintf(s->log + n, sizeof s->log - n, "%s\n", line);
}

static duet_link_callbacks_t side_callbacks(side_t *s)
{
    duet_link_callbacks_t cb = {
        .ctx = s,
        .on_open = cb_open,
        .on_record = cb_record,
        .on_read_drained = cb_drained,
        .on_writable = cb_writable,
        .on_close = cb_close,
        .on_log = cb_log,
    };
    return cb;
}

/* Send the plan until it is done or the link pushes back. */
static void side_pump(side_t *s)
{
    while (s->link != NULL && s->next < s->nplan) {
        size_t len = s->plan[s->next];
        if (len > 0) {
            pattern_fill(s->h->sendbuf, s->sent_idx, len);
        }
        duet_err_t err = duet_link_send(s->link, s->h->sendbuf, len);
        size_t q = duet_link_write_queue_size(s->link);
        if (q > s->max_queue) {
            s->max_queue = q;
        }
        if (err == DUET_EAGAIN) {
            s->eagain++;
            return;
        }
        if (err != DUET_OK) {
            h_failf(s->h, "%s: send of %zu bytes: %s", s->name, len, duet_err_name(err));
            return;
        }
        if (len > 0) {
            s->sent_idx++;
        }
        s->next++;
    }
}

static void side_connect(side_t *s)
{
    duet_link_callbacks_t cb = side_callbacks(s);
    s->start_at = uv_now(&s->h->loop);
    assert_int_equal(duet_link_connect(&s->h->loop, (const struct sockaddr *)&s->h->addr, &s->cfg,
                                       &cb, &s->link),
                     DUET_OK);
    assert_non_null(s->link);
    /* Nothing may be sent before the handshake. */
    assert_int_equal(duet_link_send(s->link, (const uint8_t *)"x", 1), DUET_ESTATE);
}

/* ---- hand-driven sockets ---------------------------------------------------------------- */

typedef struct sock_wreq {
    uv_write_t req;
    uint8_t data[];
} sock_wreq_t;

static void sock_on_write(uv_write_t *req, int status)
{
    (void)status;
    free(req);
}

static void sock_write(sock_t *s, const uint8_t *data, size_t len)
{
    if (s->closing) {
        return;
    }
    sock_wreq_t *w = malloc(sizeof *w + len);
    assert_non_null(w);
    memcpy(w->data, data, len);
    uv_buf_t b = uv_buf_init((char *)w->data, (unsigned int)len);
    if (uv_write(&w->req, (uv_stream_t *)&s->tcp, &b, 1, sock_on_write) != 0) {
        free(w);
    }
}

/* Frame and write a handshake or hand-made transport message. */
static void sock_write_framed(sock_t *s, const uint8_t *body, size_t len)
{
    uint8_t *buf = malloc(len + 2);
    assert_non_null(buf);
    duet_frame_put_header(buf, len);
    memcpy(buf + 2, body, len);
    sock_write(s, buf, len + 2);
    free(buf);
}

/* Encrypt plain as one transport message, whatever it holds. */
static void sock_send_plain(sock_t *s, const uint8_t *plain, size_t len)
{
    uint8_t *msg = malloc(len + DUET_NOISE_TAGLEN);
    assert_non_null(msg);
    size_t n;
    assert_int_equal(
        duet_noise_cs_encrypt(&s->tx, NULL, 0, plain, len, msg, len + DUET_NOISE_TAGLEN, &n),
        DUET_OK);
    sock_write_framed(s, msg, n);
    free(msg);
}

/* Seal a record as an honest link would. */
static void sock_send_record(sock_t *s, const uint8_t *rec, size_t len)
{
    size_t cap = duet_frame_sealed_size(len);
    uint8_t *buf = malloc(cap);
    assert_non_null(buf);
    size_t n;
    assert_int_equal(duet_frame_seal(&s->tx, rec, len, buf, cap, &n), DUET_OK);
    sock_write(s, buf, n);
    free(buf);
}

static void sock_on_handle_closed(uv_handle_t *hd)
{
    sock_t *s = hd->data;
    if (--s->handles == 0) {
        h_end(s->h);
    }
}

static void sock_close(sock_t *s)
{
    if (s->closing) {
        return;
    }
    s->closing = true;
    uv_close((uv_handle_t *)&s->tcp, sock_on_handle_closed);
    uv_close((uv_handle_t *)&s->timer, sock_on_handle_closed);
}

static void sock_on_ka(uv_timer_t *t)
{
    sock_t *s = t->data;
    sock_send_record(s, NULL, 0);
}

/* The scripted initiator: message 2 or a transport message arrived. */
static void sock_noise_frame(sock_t *s, uint8_t *body, size_t len)
{
    if (!s->open) {
        uint8_t payload[64];
        size_t plen;
        s->noise_err = duet_noise_hs_read(&s->hs, body, len, payload, sizeof payload, &plen);
        if (s->noise_err != DUET_OK) {
            sock_close(s);
            return;
        }
        assert_int_equal(duet_noise_hs_split(&s->hs, &s->tx, &s->rxcs), DUET_OK);
        s->open = true;
        if (s->stop_reading_after_open) {
            (void)uv_read_stop((uv_stream_t *)&s->tcp);
        }
        if (s->ka_period > 0) {
            (void)uv_timer_start(&s->timer, sock_on_ka, s->ka_period, s->ka_period);
        }
        if (s->script != NULL) {
            s->script(s);
        }
        return;
    }
    if (s->manual) {
        uint8_t *plain = malloc(len);
        size_t plen;
        s->noise_err = duet_noise_cs_decrypt(&s->rxcs, NULL, 0, body, len, plain, len, &plen);
        if (s->noise_err == DUET_OK && s->nplain < 8) {
            s->frame_len[s->nplain] = len;
            s->plain_len[s->nplain] = plen;
            memcpy(s->plain[s->nplain], plain, plen < 16 ? plen : 16);
            s->nplain++;
        }
        free(plain);
        return;
    }
    bool complete;
    const uint8_t *rec;
    size_t rlen;
    s->noise_err = duet_frame_open(&s->rxcs, body, len, &s->ra, &complete, &rec, &rlen);
    if (s->noise_err != DUET_OK) {
        sock_close(s);
        return;
    }
    if (complete && rlen == 0) {
        s->keepalives++;
    } else if (complete) {
        s->records++;
    }
}

static void sock_on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf)
{
    (void)hd;
    buf->base = malloc(suggested);
    buf->len = buf->base ? suggested : 0;
}

static void sock_on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    sock_t *s = st->data;
    if (nread > 0) {
        size_t n = (size_t)nread;
        s->rx_total += n;
        size_t keep = SOCK_RX_CAP - s->rx_len < n ? SOCK_RX_CAP - s->rx_len : n;
        memcpy(s->rx + s->rx_len, buf->base, keep);
        s->rx_len += keep;
        size_t off = 0;
        while (s->noise && off < n && !s->closing) {
            size_t used;
            uint8_t *body;
            size_t blen;
            if (duet_frame_read(&s->rd, (uint8_t *)buf->base + off, n - off, &used, &body, &blen) !=
                DUET_OK) {
                s->noise_err = DUET_EPROTO;
                sock_close(s);
                break;
            }
            off += used;
            if (body != NULL) {
                sock_noise_frame(s, body, blen);
            }
        }
    } else if (nread < 0) {
        if (nread == UV_EOF) {
            s->eof = true;
        } else {
            s->err = (int)nread;
        }
        sock_close(s);
    }
    free(buf->base);
}

static void sock_on_shutdown(uv_shutdown_t *req, int status)
{
    (void)req;
    (void)status;
}

/* The connection is up: say what the script says. */
static void sock_up(sock_t *s)
{
    if (!s->no_read) {
        assert_int_equal(uv_read_start((uv_stream_t *)&s->tcp, sock_on_alloc, sock_on_read), 0);
    }
    if (s->noise) {
        uint8_t v[2] = {(uint8_t)(s->version >> 8), (uint8_t)s->version};
        uint8_t msg[128];
        size_t n;
        assert_int_equal(duet_noise_hs_write(&s->hs, v, sizeof v, msg, sizeof msg, &n), DUET_OK);
        sock_write_framed(s, msg, n);
    }
    if (s->greeting_len > 0) {
        sock_write(s, s->greeting, s->greeting_len);
    }
    if (s->shut_after) {
        s->sreq.data = s;
        (void)uv_shutdown(&s->sreq, (uv_stream_t *)&s->tcp, sock_on_shutdown);
    }
}

static void sock_on_connect(uv_connect_t *req, int status)
{
    sock_t *s = req->data;
    if (status < 0) {
        s->err = status;
        sock_close(s);
        return;
    }
    sock_up(s);
}

static void sock_prepare(h_t *h, sock_t *s)
{
    s->h = h;
    s->used = true;
    s->rx = malloc(SOCK_RX_CAP);
    assert_non_null(s->rx);
    assert_int_equal(uv_tcp_init(&h->loop, &s->tcp), 0);
    assert_int_equal(uv_timer_init(&h->loop, &s->timer), 0);
    s->handles = 2;
    s->tcp.data = s;
    s->timer.data = s;
    s->creq.data = s;
}

/* Make the socket a scripted Noise initiator (mode KK or NK) with keys s and rs. */
static void sock_noise(sock_t *s, duet_link_mode_t mode, const uint8_t *local,
                       const uint8_t *remote)
{
    s->noise = true;
    s->mode = mode;
    s->version = 1;
    duet_noise_keys_t k;
    memset(&k, 0, sizeof k);
    k.s = mode == DUET_LINK_KK ? local : NULL;
    k.rs = remote;
    /* Spelled out here, not taken from link.h, so that a changed name or prologue fails. */
    const char *name = mode == DUET_LINK_KK ? "Noise_KK_25519_ChaChaPoly_BLAKE2b"
                                            : "Noise_NK_25519_ChaChaPoly_BLAKE2b";
    const char *pro = mode == DUET_LINK_KK ? "duet link" : "duet relay";
    assert_int_equal(duet_noise_hs_init(&s->hs, name, DUET_NOISE_INITIATOR, (const uint8_t *)pro,
                                        strlen(pro), &k, duet_sysrng()),
                     DUET_OK);
    duet_frame_reader_init(&s->rd, DUET_FRAME_MAX);
    duet_frame_reasm_init(&s->ra, DUET_FRAME_MAX_RECORD);
}

static void sock_connect(h_t *h, sock_t *s)
{
    sock_prepare(h, s);
    assert_int_equal(
        uv_tcp_connect(&s->creq, &s->tcp, (const struct sockaddr *)&h->addr, sock_on_connect), 0);
}

static void srv_on_connection(uv_stream_t *server, int status)
{
    h_t *h = server->data;
    if (status < 0) {
        h_failf(h, "listen: %s", uv_strerror(status));
        return;
    }
    if (h->srv_kind == SRV_LINK && h->srv.link == NULL && !h->srv.closed) {
        duet_link_callbacks_t cb = side_callbacks(&h->srv);
        h->srv.start_at = uv_now(&h->loop);
        duet_err_t err = duet_link_accept(server, &h->srv.cfg, &cb, &h->srv.link);
        if (err != DUET_OK) {
            h_failf(h, "accept: %s", duet_err_name(err));
        }
    } else if (h->srv_kind == SRV_SOCK && !h->sock.used) {
        sock_prepare(h, &h->sock);
        assert_int_equal(uv_accept(server, (uv_stream_t *)&h->sock.tcp), 0);
        sock_up(&h->sock);
    } else {
        h_failf(h, "unexpected connection");
        uv_tcp_t *t = malloc(sizeof *t);
        (void)uv_tcp_init(&h->loop, t);
        (void)uv_accept(server, (uv_stream_t *)t);
        uv_close((uv_handle_t *)t, (uv_close_cb)free);
    }
}

/* ---- the recording proxy ---------------------------------------------------------------- */

static void proxy_on_closed(uv_handle_t *hd)
{
    proxy_t *p = hd->data;
    if (--p->handles == 0) {
        h_end(p->h);
    }
}

static void proxy_abort(proxy_t *p)
{
    for (int i = 0; i < 2; i++) {
        if (!uv_is_closing((uv_handle_t *)&p->end[i])) {
            uv_close((uv_handle_t *)&p->end[i], proxy_on_closed);
        }
    }
}

static void proxy_on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    proxy_t *p = st->data;
    int from = st == (uv_stream_t *)&p->end[0] ? 0 : 1;
    uv_stream_t *to = (uv_stream_t *)&p->end[1 - from];
    if (nread > 0) {
        size_t n = (size_t)nread;
        if (p->len[from] + n <= SOCK_RX_CAP) {
            memcpy(p->rec[from] + p->len[from], buf->base, n);
            p->len[from] += n;
        }
        sock_wreq_t *w = malloc(sizeof *w + n);
        memcpy(w->data, buf->base, n);
        uv_buf_t b = uv_buf_init((char *)w->data, (unsigned int)n);
        if (uv_write(&w->req, to, &b, 1, sock_on_write) != 0) {
            free(w);
        }
    } else if (nread < 0) {
        p->eof[from] = true;
        (void)uv_read_stop(st);
        if (p->eof[0] && p->eof[1]) {
            proxy_abort(p);
        } else {
            (void)uv_shutdown(&p->sreq[1 - from], to, sock_on_shutdown);
        }
    }
    free(buf->base);
}

static void proxy_on_connect(uv_connect_t *req, int status)
{
    proxy_t *p = req->data;
    if (status < 0) {
        proxy_abort(p);
        return;
    }
    for (int i = 0; i < 2; i++) {
        (void)uv_read_start((uv_stream_t *)&p->end[i], sock_on_alloc, proxy_on_read);
    }
}

static void proxy_on_connection(uv_stream_t *server, int status)
{
    proxy_t *p = server->data;
    assert_int_equal(status, 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(uv_tcp_init(&p->h->loop, &p->end[i]), 0);
        p->end[i].data = p;
    }
    p->handles = 2;
    assert_int_equal(uv_accept(server, (uv_stream_t *)&p->end[0]), 0);
    p->creq.data = p;
    assert_int_equal(uv_tcp_connect(&p->creq, &p->end[1], (const struct sockaddr *)&p->h->addr,
                                    proxy_on_connect),
                     0);
}

/* A proxy in front of h's server; clients connect to *addr. */
static proxy_t *proxy_new(h_t *h)
{
    proxy_t *p = calloc(1, sizeof *p);
    assert_non_null(p);
    p->h = h;
    p->rec[0] = malloc(SOCK_RX_CAP);
    p->rec[1] = malloc(SOCK_RX_CAP);
    p->listener.data = p;
    (void)h_listen(&h->loop, &p->listener, &p->addr, proxy_on_connection);
    p->listener.data = p;
    h->proxy = p;
    return p;
}

/* ---- pure framing ----------------------------------------------------------------------- */

static void cs_pair(duet_noise_cs_t *a, duet_noise_cs_t *b, uint8_t seed)
{
    memset(a, 0, sizeof *a);
    memset(a->k, seed, sizeof a->k);
    a->has_key = true;
    *b = *a;
}

/* Feed a byte stream to a reader in pieces of `step` bytes, opening every frame. */
static duet_err_t frame_feed(duet_frame_reader_t *rd, duet_noise_cs_t *rx, duet_frame_reasm_t *ra,
                             uint8_t *wire, size_t len, size_t step, uint8_t *out, size_t *out_len,
                             size_t *records)
{
    *out_len = 0;
    *records = 0;
    size_t off = 0;
    while (off < len) {
        size_t n = len - off < step ? len - off : step;
        size_t used;
        uint8_t *body;
        size_t blen;
        duet_err_t err = duet_frame_read(rd, wire + off, n, &used, &body, &blen);
        if (err != DUET_OK) {
            return err;
        }
        off += used;
        if (body == NULL) {
            continue;
        }
        bool complete;
        const uint8_t *rec;
        size_t rlen;
        err = duet_frame_open(rx, body, blen, ra, &complete, &rec, &rlen);
        if (err != DUET_OK) {
            return err;
        }
        if (complete) {
            memcpy(out + *out_len, rec, rlen);
            *out_len += rlen;
            (*records)++;
        }
    }
    return DUET_OK;
}

static void test_frame_roundtrip(void **state)
{
    (void)state;
    static const size_t sizes[] = {0,
                                   1,
                                   DUET_FRAME_MAX_CHUNK - 1,
                                   DUET_FRAME_MAX_CHUNK,
                                   DUET_FRAME_MAX_CHUNK + 1,
                                   3 * DUET_FRAME_MAX_CHUNK,
                                   DUET_FRAME_MAX_RECORD};
    static const size_t steps[] = {1, 7, 65537, 1u << 22};
    uint8_t *rec = malloc(DUET_FRAME_MAX_RECORD);
    uint8_t *out = malloc(DUET_FRAME_MAX_RECORD);
    uint8_t *wire = malloc(duet_frame_sealed_size(DUET_FRAME_MAX_RECORD));
    duet_frame_reader_t *rd = malloc(sizeof *rd);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        for (size_t t = 0; t < sizeof steps / sizeof steps[0]; t++) {
            size_t len = sizes[i];
            pattern_fill(rec, (uint32_t)i, len);
            duet_noise_cs_t tx, rx;
            cs_pair(&tx, &rx, 0x42);
            size_t n;
            size_t cap = duet_frame_sealed_size(len);
            assert_int_equal(duet_frame_seal(&tx, rec, len, wire, cap - 1, &n), DUET_ETOOBIG);
            assert_int_equal(tx.n, 0);
            assert_int_equal(duet_frame_seal(&tx, rec, len, wire, cap, &n), DUET_OK);
            assert_int_equal(n, cap);
            assert_int_equal(tx.n, duet_frame_chunks(len));
            duet_frame_reader_init(rd, DUET_FRAME_MAX);
            duet_frame_reasm_t ra;
            duet_frame_reasm_init(&ra, DUET_FRAME_MAX_RECORD);
            size_t got, records;
            assert_int_equal(frame_feed(rd, &rx, &ra, wire, n, steps[t], out, &got, &records),
                             DUET_OK);
            assert_int_equal(records, 1);
            assert_int_equal(got, len);
            assert_memory_equal(out, rec, len);
            assert_true(duet_frame_reader_idle(rd));
            assert_true(duet_frame_reasm_idle(&ra));
            duet_frame_reasm_dispose(&ra);
        }
    }
    /* Over the maximum: refused before anything is sealed. */
    duet_noise_cs_t tx, rx;
    cs_pair(&tx, &rx, 1);
    size_t n;
    assert_int_equal(duet_frame_seal(&tx, rec, DUET_FRAME_MAX_RECORD + 1, wire,
                                     duet_frame_sealed_size(DUET_FRAME_MAX_RECORD + 1), &n),
                     DUET_ETOOBIG);
    /* The nonce counter near its end: refused whole, nothing consumed. */
    tx.n = UINT64_MAX - 2;
    assert_int_equal(duet_frame_seal(&tx, rec, 2 * DUET_FRAME_MAX_CHUNK, wire,
                                     duet_frame_sealed_size(2 * DUET_FRAME_MAX_CHUNK), &n),
                     DUET_ENONCE);
    assert_int_equal(tx.n, UINT64_MAX - 2);
    assert_int_equal(duet_frame_seal(&tx, rec, 1, wire, duet_frame_sealed_size(1), &n), DUET_OK);
    free(rd);
    free(wire);
    free(out);
    free(rec);
}

static void test_frame_errors(void **state)
{
    (void)state;
    duet_frame_reader_t *rd = malloc(sizeof *rd);
    size_t used, blen;
    uint8_t *body;
    /* A zero length. */
    uint8_t zero[] = {0, 0, 1};
    duet_frame_reader_init(rd, DUET_FRAME_MAX);
    assert_int_equal(duet_frame_read(rd, zero, sizeof zero, &used, &body, &blen), DUET_EPROTO);
    assert_null(body);
    assert_int_equal(duet_frame_read(rd, zero + 2, 1, &used, &body, &blen), DUET_EPROTO);
    /* Over the reader's maximum, refused on the prefix alone; the maximum itself passes. */
    uint8_t big[] = {0x04, 0x01};
    duet_frame_reader_init(rd, 1024);
    assert_int_equal(duet_frame_read(rd, big, 1, &used, &body, &blen), DUET_OK);
    assert_false(duet_frame_reader_idle(rd));
    assert_int_equal(duet_frame_read(rd, big + 1, 1, &used, &body, &blen), DUET_EPROTO);
    uint8_t max[2 + 1024] = {0x04, 0x00};
    duet_frame_reader_init(rd, 1024);
    assert_int_equal(duet_frame_read(rd, max, sizeof max, &used, &body, &blen), DUET_OK);
    assert_int_equal(blen, 1024);
    assert_ptr_equal(body, max + 2); /* whole in the input: no copy */
    /* Two frames in one input come out one per call. */
    uint8_t two[] = {0, 1, 'a', 0, 2, 'b', 'c'};
    duet_frame_reader_init(rd, DUET_FRAME_MAX);
    assert_int_equal(duet_frame_read(rd, two, sizeof two, &used, &body, &blen), DUET_OK);
    assert_int_equal(used, 3);
    assert_int_equal(blen, 1);
    assert_int_equal(body[0], 'a');
    assert_int_equal(duet_frame_read(rd, two + 3, 4, &used, &body, &blen), DUET_OK);
    assert_int_equal(blen, 2);
    assert_memory_equal(body, "bc", 2);
    free(rd);

    /* Plaintexts: flags. */
    duet_frame_reasm_t ra;
    bool complete;
    const uint8_t *rec;
    size_t rlen;
    static const uint8_t bad[][2] = {{0x02, 'x'}, {0x80, 'x'}, {0xFF, 'x'}};
    for (size_t i = 0; i < 3; i++) {
        duet_frame_reasm_init(&ra, DUET_FRAME_MAX_RECORD);
        assert_int_equal(duet_frame_reasm_push(&ra, bad[i], 2, &complete, &rec, &rlen),
                         DUET_EPROTO);
        assert_false(complete);
        duet_frame_reasm_dispose(&ra);
    }
    duet_frame_reasm_init(&ra, DUET_FRAME_MAX_RECORD);
    assert_int_equal(duet_frame_reasm_push(&ra, (const uint8_t *)"", 0, &complete, &rec, &rlen),
                     DUET_EPROTO);
    duet_frame_reasm_dispose(&ra);
    /* MORE with an empty chunk. */
    duet_frame_reasm_init(&ra, DUET_FRAME_MAX_RECORD);
    uint8_t more_empty = DUET_FRAME_FLAG_MORE;
    assert_int_equal(duet_frame_reasm_push(&ra, &more_empty, 1, &complete, &rec, &rlen),
                     DUET_EPROTO);
    duet_frame_reasm_dispose(&ra);
    /* A keepalive: complete, zero bytes. */
    duet_frame_reasm_init(&ra, DUET_FRAME_MAX_RECORD);
    uint8_t ka = 0;
    assert_int_equal(duet_frame_reasm_push(&ra, &ka, 1, &complete, &rec, &rlen), DUET_OK);
    assert_true(complete);
    assert_int_equal(rlen, 0);
    /* The cap: exactly max passes, one byte more fails at once. */
    uint8_t *chunk = calloc(1, 1 + DUET_FRAME_MAX_CHUNK);
    size_t left = DUET_FRAME_MAX_RECORD;
    while (left > 0) {
        size_t n = left < DUET_FRAME_MAX_CHUNK ? left : DUET_FRAME_MAX_CHUNK;
        left -= n;
        chunk[0] = left > 0 ? DUET_FRAME_FLAG_MORE : 0;
        assert_int_equal(duet_frame_reasm_push(&ra, chunk, 1 + n, &complete, &rec, &rlen), DUET_OK);
    }
    assert_true(complete);
    assert_int_equal(rlen, DUET_FRAME_MAX_RECORD);
    left = DUET_FRAME_MAX_RECORD + 1;
    duet_err_t err = DUET_OK;
    while (left > 0 && err == DUET_OK) {
        size_t n = left < DUET_FRAME_MAX_CHUNK ? left : DUET_FRAME_MAX_CHUNK;
        left -= n;
        chunk[0] = DUET_FRAME_FLAG_MORE;
        err = duet_frame_reasm_push(&ra, chunk, 1 + n, &complete, &rec, &rlen);
    }
    assert_int_equal(err, DUET_EPROTO);
    assert_int_equal(left, 0); /* failed on the chunk that crossed the cap */
    duet_frame_reasm_dispose(&ra);
    free(chunk);

    /* A tampered sealed message: EAUTH; a short one: EPROTO. */
    duet_noise_cs_t tx, rx;
    cs_pair(&tx, &rx, 9);
    uint8_t wire[64];
    size_t n;
    assert_int_equal(duet_frame_seal(&tx, (const uint8_t *)"hello", 5, wire, sizeof wire, &n),
                     DUET_OK);
    wire[4] ^= 1;
    duet_frame_reasm_init(&ra, DUET_FRAME_MAX_RECORD);
    assert_int_equal(duet_frame_open(&rx, wire + 2, n - 2, &ra, &complete, &rec, &rlen),
                     DUET_EAUTH);
    duet_frame_reasm_dispose(&ra);
    duet_frame_reasm_init(&ra, DUET_FRAME_MAX_RECORD);
    assert_int_equal(
        duet_frame_open(&rx, wire + 2, DUET_FRAME_MIN_SEALED - 1, &ra, &complete, &rec, &rlen),
        DUET_EPROTO);
    duet_frame_reasm_dispose(&ra);
}

/* ---- addresses -------------------------------------------------------------------------- */

static void test_addr_parse(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    char buf[DUET_ADDR_STRLEN];
    static const struct {
        const char *in, *out;
    } good[] = {
        {"127.0.0.1:7000", "127.0.0.1:7000"},   {"192.0.2.1:1", "192.0.2.1:1"},
        {"localhost:65535", "127.0.0.1:65535"}, {"[::1]:443", "[::1]:443"},
        {"[2001:db8::5]:0", "[2001:db8::5]:0"}, {"0.0.0.0:80", "0.0.0.0:80"},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_int_equal(duet_addr_parse(good[i].in, &ss), DUET_OK);
        assert_string_equal(duet_addr_format((struct sockaddr *)&ss, buf, sizeof buf), good[i].out);
    }
    static const char *const bad[] = {
        "",           "127.0.0.1",    "127.0.0.1:",     ":80",          "127.0.0.1:65536",
        "1.2.3:80",   "1.2.3.4.5:80", "256.1.1.1:80",   "01.2.3.4:80",  "127.0.0.1:+80",
        "1.2.3.4: 8", "1.2.3.4:8 ",   " 1.2.3.4:8",     "::1:80",       "[::1]80",
        "[::1]",      "[::1:80",      "[]:80",          "[1.2.3.4]:80", "example.org:80",
        "localhost",  "LOCALHOST:80", "1.2.3.4:123456", "0x7f.0.0.1:1", "[::1]:-1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&ss, 0xAA, sizeof ss);
        assert_int_equal(duet_addr_parse(bad[i], &ss), DUET_EADDR);
        assert_int_equal(ss.ss_family, 0);
    }
    char longs[DUET_ADDR_MAX_INPUT + 8];
    memset(longs, '1', sizeof longs - 1);
    longs[sizeof longs - 1] = '\0';
    assert_int_equal(duet_addr_parse(longs, &ss), DUET_EADDR);
}

/* ---- KK, NK, RAW between two links -------------------------------------------------------- */

static const size_t kk_plan[] = {1,
                                 0,
                                 2,
                                 100,
                                 DUET_FRAME_MAX_CHUNK - 1,
                                 DUET_FRAME_MAX_CHUNK,
                                 DUET_FRAME_MAX_CHUNK + 1,
                                 2 * DUET_FRAME_MAX_CHUNK,
                                 2 * DUET_FRAME_MAX_CHUNK + 1,
                                 200000,
                                 DUET_LINK_MAX_RECORD,
                                 0,
                                 7};
static const size_t kk_expect[] = {1,
                                   2,
                                   100,
                                   DUET_FRAME_MAX_CHUNK - 1,
                                   DUET_FRAME_MAX_CHUNK,
                                   DUET_FRAME_MAX_CHUNK + 1,
                                   2 * DUET_FRAME_MAX_CHUNK,
                                   2 * DUET_FRAME_MAX_CHUNK + 1,
                                   200000,
                                   DUET_LINK_MAX_RECORD,
                                   7};
#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static void plan_both(h_t *h, const size_t *plan, size_t nplan, const size_t *expect,
                      size_t nexpect)
{
    side_t *s[2] = {&h->cli, &h->srv};
    for (int i = 0; i < 2; i++) {
        s[i]->plan = plan;
        s[i]->nplan = nplan;
        s[i]->expect = expect;
        s[i]->nexpect = nexpect;
    }
    h->cli.close_when_done = true;
}

static void test_kk_exchange(void **state)
{
    fixture_t *f = *state;
    h_t *h = h_new(state, SRV_LINK, 2);
    side_init(h, &h->cli, "alice", DUET_LINK_KK, &f->alice, f->bob.pub);
    side_init(h, &h->srv, "bob", DUET_LINK_KK, &f->bob, f->alice.pub);
    plan_both(h, kk_plan, N_OF(kk_plan), kk_expect, N_OF(kk_expect));
    side_connect(&h->cli);
    h_run(h);
    side_t *s[2] = {&h->cli, &h->srv};
    const keypair_t *peer[2] = {&f->bob, &f->alice};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(s[i]->opened, 1);
        assert_int_equal(s[i]->closed, 1);
        assert_int_equal(s[i]->close_err, DUET_OK);
        assert_int_equal(s[i]->nrec, N_OF(kk_expect));
        assert_true(s[i]->drained > 0);
        assert_int_equal(s[i]->rs_err, DUET_OK);
        assert_memory_equal(s[i]->rs, peer[i]->pub, 32);
        assert_int_equal(s[i]->hh_err, DUET_OK);
        assert_string_equal(s[i]->log, "");
    }
    assert_memory_equal(h->cli.hh, h->srv.hh, DUET_LINK_HASH_BYTES);
    h_free(h);
}

/* Sizes out of bounds are refused without closing the link. */
static void bounds_on_open(side_t *s, size_t over, duet_err_t want_over, duet_err_t want_zero)
{
    assert_int_equal(duet_link_send(s->link, s->h->sendbuf, over), want_over);
    assert_int_equal(duet_link_send(s->link, s->h->sendbuf, 0), want_zero);
}

static void cb_open_bounds_secure(duet_link_t *link, void *ctx)
{
    side_t *s = ctx;
    bounds_on_open(s, DUET_LINK_MAX_RECORD + 1, DUET_ETOOBIG, DUET_OK);
    assert_int_equal(duet_link_send(link, s->h->sendbuf, 300u * 1024u), DUET_ETOOBIG);
    cb_open(link, ctx);
}

static void test_kk_bounds(void **state)
{
    fixture_t *f = *state;
    h_t *h = h_new(state, SRV_LINK, 2);
    side_init(h, &h->cli, "alice", DUET_LINK_KK, &f->alice, f->bob.pub);
    side_init(h, &h->srv, "bob", DUET_LINK_KK, &f->bob, f->alice.pub);
    static const size_t plan[] = {5};
    plan_both(h, plan, 1, plan, 1);
    duet_link_callbacks_t cb = side_callbacks(&h->cli);
    cb.on_open = cb_open_bounds_secure;
    assert_int_equal(duet_link_connect(&h->loop, (const struct sockaddr *)&h->addr, &h->cli.cfg,
                                       &cb, &h->cli.link),
                     DUET_OK);
    h_run(h);
    assert_int_equal(h->cli.close_err, DUET_OK);
    assert_int_equal(h->srv.close_err, DUET_OK);
    assert_int_equal(h->srv.nrec, 1); /* the empty record was not delivered */
    h_free(h);
}

static void test_nk(void **state)
{
    fixture_t *f = *state;
    h_t *h = h_new(state, SRV_LINK, 2);
    side_init(h, &h->cli, "client", DUET_LINK_NK, NULL, f->relay.pub);
    side_init(h, &h->srv, "relay", DUET_LINK_NK, &f->relay, NULL);
    /* Only the relay speaks: it must open on the client's first (empty) message alone. */
    static const size_t plan[] = {10, 70000, 3};
    h->srv.plan = plan;
    h->srv.nplan = N_OF(plan);
    h->cli.expect = plan;
    h->cli.nexpect = N_OF(plan);
    h->cli.close_when_done = true;
    h->srv.opt.handshake_ms = 2000;
    side_connect(&h->cli);
    h_run(h);
    assert_int_equal(h->cli.close_err, DUET_OK);
    assert_int_equal(h->srv.close_err, DUET_OK);
    assert_int_equal(h->cli.nrec, 3);
    assert_int_equal(h->srv.nrec, 0);
    assert_int_equal(h->cli.rs_err, DUET_OK);
    assert_memory_equal(h->cli.rs, f->relay.pub, 32);
    assert_int_equal(h->srv.rs_err, DUET_ENOENT); /* the relay learns no client key */
    assert_memory_equal(h->cli.hh, h->srv.hh, DUET_LINK_HASH_BYTES);
    h_free(h);
}

static void test_nk_wrong_relay_key(void **state)
{
    fixture_t *f = *state;
    h_t *h = h_new(state, SRV_LINK, 2);
    side_init(h, &h->cli, "client", DUET_LINK_NK, NULL, f->mallory.pub);
    side_init(h, &h->srv, "relay", DUET_LINK_NK, &f->relay, NULL);
    side_connect(&h->cli);
    h_run(h);
    assert_int_equal(h->srv.close_err, DUET_EAUTH);
    assert_int_equal(h->cli.close_err, DUET_ECLOSED);
    assert_int_equal(h->srv.opened + h->cli.opened, 0);
    h_free(h);
}

static void cb_open_bounds_raw(duet_link_t *link, void *ctx)
{
    side_t *s = ctx;
    bounds_on_open(s, DUET_LINK_MAX_RAW_RECORD + 1, DUET_ETOOBIG, DUET_EINVAL);
    cb_open(link, ctx);
}

static void test_raw(void **state)
{
    h_t *h = h_new(state, SRV_LINK, 2);
    side_init(h, &h->cli, "a", DUET_LINK_RAW, NULL, NULL);
    side_init(h, &h->srv, "b", DUET_LINK_RAW, NULL, NULL);
    static const size_t plan[] = {1, 2, 1000, 65534, DUET_LINK_MAX_RAW_RECORD, 9};
    plan_both(h, plan, N_OF(plan), plan, N_OF(plan));
    duet_link_callbacks_t cb = side_callbacks(&h->cli);
    cb.on_open = cb_open_bounds_raw;
    assert_int_equal(duet_link_connect(&h->loop, (const struct sockaddr *)&h->addr, &h->cli.cfg,
                                       &cb, &h->cli.link),
                     DUET_OK);
    h_run(h);
    assert_int_equal(h->cli.close_err, DUET_OK);
    assert_int_equal(h->srv.close_err, DUET_OK);
    assert_int_equal(h->cli.nrec, N_OF(plan));
    assert_int_equal(h->srv.nrec, N_OF(plan));
    assert_int_equal(h->cli.rs_err, DUET_ENOENT);
    assert_int_equal(h->cli.hh_err, DUET_ENOENT);
    h_free(h);
}

/* A raw link carries its frames in the clear, exactly as documented. */
static void test_raw_bytes(void **state)
{
    h_t *h = h_new(state, SRV_SOCK, 2);
    side_init(h, &h->cli, "a", DUET_LINK_RAW, NULL, NULL);
    static const size_t plan[] = {3};
    h->cli.plan = plan;
    h->cli.nplan = 1;
    h->cli.close_when_done = true;
    side_connect(&h->cli);
    h_run(h);
    assert_int_equal(h->cli.close_err, DUET_OK);
    uint8_t want[5] = {0, 3, pattern_byte(0, 0), pattern_byte(0, 1), pattern_byte(0, 2)};
    assert_int_equal(h->sock.rx_total, sizeof want);
    assert_memory_equal(h->sock.rx, want, sizeof want);
    h_free(h);
}

/* ---- who may connect -------------------------------------------------------------------- */

static void test_kk_stranger(void **state)
{
    fixture_t *f = *state;
    h_t *h = h_new(state, SRV_LINK, 2);
    side_init(h, &h->srv, "bob", DUET_LINK_KK, &f->bob, f->alice.pub);
    /* Mallory knows Bob's public key and speaks the protocol perfectly. */
    sock_noise(&h->sock, DUET_LINK_KK, f->mallory.priv, f->bob.pub);
    sock_connect(h, &h->sock);
    h_run(h);
    assert_int_equal(h->srv.close_err, DUET_EAUTH);
    assert_int_equal(h->srv.opened, 0);
    assert_non_null(strstr(h->srv.log, "connection from an unknown device"));
    /* The stranger learns nothing: not one byte came back. */
    assert_int_equal(h->sock.rx_total, 0);
    assert_true(h->sock.eof || h->sock.err == UV_ECONNRESET);
    assert_false(h->sock.open);
    h_free(h);
}

static void test_kk_stranger_link(void **state)
{
    fixture_t *f = *state;
    h_t *h = h_new(state, SRV_LINK, 2);
    side_init(h, &h->cli, "mallory", DUET_LINK_KK, &f->mallory, f->bob.pub);
    side_init(h, &h->srv, "bob", DUET_LINK_KK, &f->bob, f->alice.pub);
    side_connect(&h->cli);
    h_run(h);
    assert_int_equal(h->srv.close_err, DUET_EAUTH);
    assert_int_equal(h->cli.close_err, DUET_ECLOSED);
    assert_non_null(strstr(h->srv.log, "connection from an unknown device"));
    assert_non_null(strstr(h->cli.log, "during the handshake"));
    assert_int_equal(h->srv.opened + h->cli.opened, 0);
    h_free(h);
}

static void test_kk_wrong_remote_key(void **state)
{
    fixture_t *f = *state;
    h_t *h = h_new(state, SRV_LINK, 2);
    /* Alice believes Bob's key is Mallory's. */
    side_init(h, &h->cli, "alice", DUET_LINK_KK, &f->alice, f->mallory.pub);
    side_init(h, &h->srv, "bob", DUET_LINK_KK, &f->bob, f->alice.pub);
    side_connect(&h->cli);
    h_run(h);
    assert_int_equal(h->srv.close_err, DUET_EAUTH);
    assert_int_equal(h->cli.close_err, DUET_ECLOSED);
    assert_int_equal(h->srv.opened + h->cli.opened, 0);
    h_free(h);
}

/* Bob's responder was given the wrong partner key: even the real Alice is refused. */
static void test_kk_responder_wrong_key(void **state)
{
    fixture_t *f = *state;
    h_t *h = h_new(state, SRV_LINK, 2);
    side_init(h, &h->cli, "alice", DUET_LINK_KK, &f->alice, f->bob.pub);
    side_init(h, &h->srv, "bob", DUET_LINK_KK, &f->bob, f->mallory.pub);
    side_connect(&h->cli);
    h_run(h);
    assert_int_equal(h->srv.close_err, DUET_EAUTH);
    assert_int_equal(h->cli.close_err, DUET_ECLOSED);
    h_free(h);
}

static void test_config_errors(void **state)
{
    fixture_t *f = *state;
    h_t *h = h_new(state, SRV_NONE, 0);
    side_t *s = &h->cli;
    duet_link_t *l = (duet_link_t *)1;
    side_init(h, s, "x", DUET_LINK_KK, &f->alice, NULL); /* KK without the partner key */
    duet_link_callbacks_t cb = side_callbacks(s);
    assert_int_equal(duet_link_connect(&h->loop, (struct sockaddr *)&h->addr, &s->cfg, &cb, &l),
                     DUET_EINVAL);
    assert_null(l);
    side_init(h, s, "x", DUET_LINK_NK, &f->alice, f->relay.pub); /* NK client with a static */
    assert_int_equal(duet_link_connect(&h->loop, (struct sockaddr *)&h->addr, &s->cfg, &cb, &l),
                     DUET_EINVAL);
    side_init(h, s, "x", DUET_LINK_RAW, NULL, f->relay.pub);
    assert_int_equal(duet_link_connect(&h->loop, (struct sockaddr *)&h->addr, &s->cfg, &cb, &l),
                     DUET_EINVAL);
    h_shutdown(h);
    h_run(h);
    h_free(h);
}

static void test_connect_refused(void **state)
{
    fixture_t *f = *state;
    h_t *h = h_new(state, SRV_NONE, 1);
    /* A port that nobody listens on: bound, not listening, then closed. */
    uv_tcp_t t;
    struct sockaddr_storage dead;
    struct sockaddr_in any;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &any), 0);
    assert_int_equal(uv_tcp_init(&h->loop, &t), 0);
    assert_int_equal(uv_tcp_bind(&t, (const struct sockaddr *)&any, 0), 0);
    int n = (int)sizeof dead;
    assert_int_equal(uv_tcp_getsockname(&t, (struct sockaddr *)&dead, &n), 0);
    uv_close((uv_handle_t *)&t, NULL);
    (void)uv_run(&h->loop, UV_RUN_NOWAIT);
    h->addr = dead;
    side_init(h, &h->cli, "alice", DUET_LINK_KK, &f->alice, f->bob.pub);
    side_connect(&h->cli);
    h_run(h);
    assert_int_equal(h->cli.close_err, DUET_ECONNREFUSED);
    assert_int_equal(h->cli.opened, 0);
    assert_non_null(strstr(h->cli.log, "cannot connect"));
    h_free(h);
}

/* ---- malformed input -------------------------------------------------------------------- */

/* A responder link fed by a raw socket; returns the harness after the run. */
static h_t *run_raw_client(void **state, const uint8_t *bytes, size_t len, bool shut,
                           uint64_t handshake_ms)
{
    fixture_t *f = *state;
    h_t *h = h_new(state, SRV_LINK, 2);
    side_init(h, &h->srv, "bob", DUET_LINK_KK, &f->bob, f->alice.pub);
    if (handshake_ms > 0) {
        h->srv.opt.handshake_ms = handshake_ms;
    }
    h->sock.greeting = bytes;
    h->sock.greeting_len = len;
    h->sock.shut_after = shut;
    sock_connect(h, &h->sock);
    h_run(h);
    assert_int_equal(h->srv.opened, 0);
    assert_int_equal(h->sock.rx_total, 0); /* never a byte to a stranger */
    return h;
}

static void test_garbage(void **state)
{
    /* Not duet at all: the prefix reads as a long frame that never ends. */
    static const char http[] = "GET / HTTP/1.1\r\nHost: example\r\n\r\n";
    h_t *h = run_raw_client(state, (const uint8_t *)http, sizeof http - 1, true, 0);
    assert_int_equal(h->srv.close_err, DUET_EPROTO);
    h_free(h);
    /* A well-framed message 1 of random bytes fails authentication. */
    uint8_t junk[2 + 50];
    junk[0] = 0;
    junk[1] = 50;
    randombytes_buf(junk + 2, 50);
    h = run_raw_client(state, junk, sizeof junk, false, 0);
    assert_int_equal(h->srv.close_err, DUET_EAUTH);
    h_free(h);
    /* Too short to be message 1. */
    uint8_t tiny[] = {0, 3, 1, 2, 3};
    h = run_raw_client(state, tiny, sizeof tiny, false, 0);
    assert_int_equal(h->srv.close_err, DUET_EPROTO);
    h_free(h);
}

static void test_truncated(void **state)
{
    uint8_t part[2 + 20] = {0, 50};
    h_t *h = run_raw_client(state, part, sizeof part, true, 0);
    assert_int_equal(h->srv.close_err, DUET_EPROTO);
    assert_non_null(strstr(h->srv.log, "middle"));
    h_free(h);
    /* A scanner: connects, says nothing, leaves. */
    h = run_raw_client(state, NULL, 0, true, 0);
    assert_int_equal(h->srv.close_err, DUET_ECLOSED);
    h_free(h);
    /* EOF after a lone first byte of a prefix. */
    uint8_t one[] = {0};
    h = run_raw_client(state, one, 1, true, 0);
    assert_int_equal(h->srv.close_err, DUET_EPROTO);
    h_free(h);
}

static void test_length_prefix(void **state)
{
    /* Refused on the prefix alone, long before the handshake timeout. */
    uint8_t zero[] = {0, 0};
    h_t *h = run_raw_client(state, zero, sizeof zero, false, 10000);
    assert_int_equal(h->srv.close_err, DUET_EPROTO);
    assert_true(h->srv.close_at - h->srv.start_at < 2000);
    h_free(h);
    uint8_t over[] = {0x04, 0x01}; /* 1025: over the handshake message limit */
    h = run_raw_client(state, over, sizeof over, false, 10000);
    assert_int_equal(h->srv.close_err, DUET_EPROTO);
    assert_true(h->srv.close_at - h->srv.start_at < 2000);
    h_free(h);
}

static void test_handshake_timeout(void **state)
{
    /* A peer that connects and says nothing. */
    h_t *h = run_raw_client(state, NULL, 0, false, 200);
    assert_int_equal(h->srv.close_err, DUET_ETIMEDOUT);
    assert_true(h->srv.close_at - h->srv.start_at >= 200);
    assert_non_null(strstr(h->srv.log, "handshake"));
    h_free(h);
    /* A server that accepts and says nothing. */
    fixture_t *f = *state;
    h = h_new(state, SRV_SOCK, 2);
    side_init(h, &h->cli, "alice", DUET_LINK_KK, &f->alice, f->bob.pub);
    h->cli.opt.handshake_ms = 200;
    side_connect(&h->cli);
    h_run(h);
    assert_int_equal(h->cli.close_err, DUET_ETIMEDOUT);
    assert_int_equal(h->cli.opened, 0);
    assert_int_equal(h->sock.rx_total, 52); /* message 1: length (2), e (32), version (2),
                                               tag (16) */
    h_free(h);
}

/* Scripted initiators after a good handshake: they send one bad message each. */
static void script_confirm(sock_t *s)
{
    sock_send_record(s, NULL, 0); /* the confirming first message, then silence */
}

static void script_bad_flags(sock_t *s)
{
    sock_send_record(s, NULL, 0); /* the confirming first message */
    uint8_t plain[] = {0x02, 'x'};
    sock_send_plain(s, plain, sizeof plain);
}

static void script_more_empty(sock_t *s)
{
    sock_send_record(s, NULL, 0);
    uint8_t plain[] = {DUET_FRAME_FLAG_MORE};
    sock_send_plain(s, plain, sizeof plain);
}

static void script_no_flags(sock_t *s)
{
    sock_send_record(s, NULL, 0);
    sock_send_plain(s, NULL, 0);
}

static void script_zero_frame(sock_t *s)
{
    sock_send_record(s, NULL, 0);
    uint8_t z[] = {0, 0};
    sock_write(s, z, 2);
}

static void script_short_frame(sock_t *s)
{
    sock_send_record(s, NULL, 0);
    uint8_t z[] = {0, 5, 1, 2, 3, 4, 5};
    sock_write(s, z, sizeof z);
}

static void script_over_cap(sock_t *s)
{
    sock_send_record(s, NULL, 0);
    uint8_t *plain = calloc(1, 1 + DUET_FRAME_MAX_CHUNK);
    plain[0] = DUET_FRAME_FLAG_MORE;
    /* Five full chunks with MORE: 327590 bytes, over the 262144 cap; no last chunk. */
    for (int i = 0; i < 5; i++) {
        sock_send_plain(s, plain, 1 + DUET_FRAME_MAX_CHUNK);
    }
    free(plain);
}

static void script_at_cap(sock_t *s)
{
    uint8_t *rec = malloc(DUET_LINK_MAX_RECORD);
    pattern_fill(rec, 0, DUET_LINK_MAX_RECORD);
    sock_send_record(s, rec, DUET_LINK_MAX_RECORD);
    free(rec);
    uv_shutdown_t *req = &s->sreq;
    (void)uv_shutdown(req, (uv_stream_t *)&s->tcp, sock_on_shutdown);
}

static void script_truncated_record(sock_t *s)
{
    sock_send_record(s, NULL, 0);
    uint8_t part[] = {0, 40, 1, 2, 3};
    sock_write(s, part, sizeof part);
    (void)uv_shutdown(&s->sreq, (uv_stream_t *)&s->tcp, sock_on_shutdown);
}

static void script_half_record(sock_t *s)
{
    sock_send_record(s, NULL, 0);
    uint8_t plain[] = {DUET_FRAME_FLAG_MORE, 'a', 'b'};
    sock_send_plain(s, plain, sizeof plain);
    (void)uv_shutdown(&s->sreq, (uv_stream_t *)&s->tcp, sock_on_shutdown);
}

/* Records made by hand: {flags, bytes}, one chunk and then two. */
static void script_by_hand(sock_t *s)
{
    uint8_t one[] = {0x00, pattern_byte(0, 0), pattern_byte(0, 1)};
    sock_send_plain(s, one, sizeof one);
    uint8_t first[] = {0x01, pattern_byte(1, 0)};
    uint8_t last[] = {0x00, pattern_byte(1, 1), pattern_byte(1, 2)};
    sock_send_plain(s, first, sizeof first);
    sock_send_plain(s, last, sizeof last);
}

static h_t *run_script(void **state, void (*script)(sock_t *), const duet_link_options_t *o)
{
    fixture_t *f = *state;
    h_t *h = h_new(state, SRV_LINK, 2);
    side_init(h, &h->srv, "bob", DUET_LINK_KK, &f->bob, f->alice.pub);
    if (o != NULL) {
        h->srv.opt = *o;
    }
    sock_noise(&h->sock, DUET_LINK_KK, f->alice.priv, f->bob.pub);
    h->sock.script = script;
    sock_connect(h, &h->sock);
    h_run(h);
    assert_true(h->sock.open); /* the handshake itself was fine */
    return h;
}

static void test_bad_transport(void **state)
{
    static void (*const scripts[])(sock_t *) = {
        script_bad_flags,   script_more_empty, script_no_flags,         script_zero_frame,
        script_short_frame, script_over_cap,   script_truncated_record, script_half_record,
    };
    for (size_t i = 0; i < N_OF(scripts); i++) {
        h_t *h = run_script(state, scripts[i], NULL);
        assert_int_equal(h->srv.opened, 1);
        assert_int_equal(h->srv.nrec, 0);
        assert_int_equal(h->srv.close_err, DUET_EPROTO);
        h_free(h);
    }
}

static void test_record_at_cap(void **state)
{
    h_t *h;
    fixture_t *f = *state;
    h = h_new(state, SRV_LINK, 2);
    side_init(h, &h->srv, "bob", DUET_LINK_KK, &f->bob, f->alice.pub);
    static const size_t expect[] = {DUET_LINK_MAX_RECORD};
    h->srv.expect = expect;
    h->srv.nexpect = 1;
    sock_noise(&h->sock, DUET_LINK_KK, f->alice.priv, f->bob.pub);
    h->sock.script = script_at_cap; /* no confirming keepalive: any first message will do */
    sock_connect(h, &h->sock);
    h_run(h);
    assert_int_equal(h->srv.opened, 1);
    assert_int_equal(h->srv.nrec, 1);
    assert_int_equal(h->srv.close_err, DUET_OK);
    h_free(h);
}

/* The transport format, checked against a peer built by hand from the description in
 * docs/protocol/link.md: names, prologues, version, flags byte and chunking. */
static void test_wire_format(void **state)
{
    fixture_t *f = *state;
    for (int nk = 0; nk < 2; nk++) {
        h_t *h = h_new(state, SRV_LINK, 2);
        if (nk) {
            side_init(h, &h->srv, "relay", DUET_LINK_NK, &f->relay, NULL);
            sock_noise(&h->sock, DUET_LINK_NK, NULL, f->relay.pub);
        } else {
            side_init(h, &h->srv, "bob", DUET_LINK_KK, &f->bob, f->alice.pub);
            sock_noise(&h->sock, DUET_LINK_KK, f->alice.priv, f->bob.pub);
        }
        static const size_t expect[] = {2, 3};
        static const size_t plan[] = {3};
        h->srv.expect = expect;
        h->srv.nexpect = 2;
        h->srv.plan = plan;
        h->srv.nplan = 1;
        h->srv.close_when_done = true;
        h->sock.script = script_by_hand;
        h->sock.manual = true;
        sock_connect(h, &h->sock);
        h_run(h);
        assert_true(h->sock.open);
        assert_int_equal(h->srv.opened, 1);
        assert_int_equal(h->srv.nrec, 2);
        assert_int_equal(h->srv.close_err, DUET_OK);
        /* Bob's record of 3 bytes: one message of 1 + 3 + 16 bytes, flags 0. */
        assert_int_equal(h->sock.nplain, 1);
        assert_int_equal(h->sock.frame_len[0], 20);
        assert_int_equal(h->sock.plain_len[0], 4);
        uint8_t want[] = {0x00, pattern_byte(0, 0), pattern_byte(0, 1), pattern_byte(0, 2)};
        assert_memory_equal(h->sock.plain[0], want, sizeof want);
        h_free(h);
    }
}

/* ---- replay ----------------------------------------------------------------------------- */

static void test_replay(void **state)
{
    fixture_t *f = *state;
    /* 1. Record a real session through a proxy. */
    h_t *h = h_new(state, SRV_LINK, 3);
    proxy_t *p = proxy_new(h);
    side_init(h, &h->cli, "alice", DUET_LINK_KK, &f->alice, f->bob.pub);
    side_init(h, &h->srv, "bob", DUET_LINK_KK, &f->bob, f->alice.pub);
    static const size_t plan[] = {40, 70000};
    plan_both(h, plan, N_OF(plan), plan, N_OF(plan));
    h->addr = p->addr; /* alice connects to the proxy; the proxy to the server */
    struct sockaddr_storage real;
    int n = (int)sizeof real;
    assert_int_equal(uv_tcp_getsockname(&h->server, (struct sockaddr *)&real, &n), 0);
    side_connect(&h->cli);
    h->addr = real;
    h_run(h);
    assert_int_equal(h->cli.close_err, DUET_OK);
    assert_int_equal(h->srv.nrec, 2);
    size_t c2s_len = p->len[0], s2c_len = p->len[1];
    uint8_t *c2s = malloc(c2s_len), *s2c = malloc(s2c_len);
    memcpy(c2s, p->rec[0], c2s_len);
    memcpy(s2c, p->rec[1], s2c_len);
    assert_true(c2s_len > 70000);
    h_free(h);

    /* 2. Alice's bytes, replayed to a fresh Bob: message 1 is accepted (it carries no
     * freshness), but the first transport message is under keys of the old session. */
    h = h_new(state, SRV_LINK, 2);
    side_init(h, &h->srv, "bob", DUET_LINK_KK, &f->bob, f->alice.pub);
    h->sock.greeting = c2s;
    h->sock.greeting_len = c2s_len;
    sock_connect(h, &h->sock);
    h_run(h);
    assert_int_equal(h->srv.close_err, DUET_EAUTH);
    assert_int_equal(h->srv.opened, 0);
    assert_int_equal(h->srv.nrec, 0);
    assert_non_null(strstr(h->srv.log, "replay"));
    h_free(h);

    /* 3. Bob's bytes, replayed to a fresh Alice: message 2 does not fit her new ephemeral. */
    h = h_new(state, SRV_SOCK, 2);
    side_init(h, &h->cli, "alice", DUET_LINK_KK, &f->alice, f->bob.pub);
    h->sock.greeting = s2c;
    h->sock.greeting_len = s2c_len;
    side_connect(&h->cli);
    h_run(h);
    assert_int_equal(h->cli.close_err, DUET_EAUTH);
    assert_int_equal(h->cli.opened, 0);
    assert_int_equal(h->cli.nrec, 0);
    h_free(h);
    free(c2s);
    free(s2c);
}

/* ---- versions --------------------------------------------------------------------------- */

static void version_case(void **state, uint16_t cli_v, uint16_t srv_v)
{
    fixture_t *f = *state;
    h_t *h = h_new(state, SRV_LINK, 2);
    side_init(h, &h->cli, "alice", DUET_LINK_KK, &f->alice, f->bob.pub);
    side_init(h, &h->srv, "bob", DUET_LINK_KK, &f->bob, f->alice.pub);
    h->cli.opt.test_version = cli_v;
    h->srv.opt.test_version = srv_v;
    side_connect(&h->cli);
    h_run(h);
    assert_int_equal(h->cli.close_err, DUET_EVERSION);
    assert_int_equal(h->srv.close_err, DUET_EVERSION);
    assert_int_equal(h->cli.opened + h->srv.opened, 0);
    char want_cli[128], want_srv[128];
    unsigned cv = cli_v ? cli_v : DUET_LINK_VERSION, sv = srv_v ? srv_v : DUET_LINK_VERSION;
    (void)snprintf(want_cli, sizeof want_cli,
                   "the peer speaks link protocol version %u, this device speaks version %u", sv,
                   cv);
    (void)snprintf(want_srv, sizeof want_srv,
                   "the peer speaks link protocol version %u, this device speaks version %u", cv,
                   sv);
    assert_non_null(strstr(h->cli.log, want_cli));
    assert_non_null(strstr(h->srv.log, want_srv));
    /* Neither side calls it an authentication failure. */
    assert_null(strstr(h->cli.log, "authenticat"));
    assert_null(strstr(h->srv.log, "unknown device"));
    h_free(h);
}

static void test_version(void **state)
{
    version_case(state, 2, 0); /* a newer initiator */
    version_case(state, 0, 2); /* a newer responder */
}

/* ---- flow control, idle, close ---------------------------------------------------------- */

static void test_slow_reader(void **state)
{
    duet_link_options_t o;
    duet_link_options_default(&o);
    o.idle_ms = 600;
    o.high_water = 256u << 10;
    o.low_water = 64u << 10;
    fixture_t *f = *state;
    h_t *h = h_new(state, SRV_LINK, 2);
    side_init(h, &h->srv, "bob", DUET_LINK_KK, &f->bob, f->alice.pub);
    h->srv.opt = o;
    /* Bob has far more to say than a non-reading peer and the kernel can hold. */
    static size_t plan[400];
    for (size_t i = 0; i < N_OF(plan); i++) {
        plan[i] = DUET_LINK_MAX_RECORD;
    }
    h->srv.plan = plan;
    h->srv.nplan = N_OF(plan);
    /* Alice handshakes, then stops reading but keeps sending keepalives, so that only the
     * slow-reader rule can close the link. */
    sock_noise(&h->sock, DUET_LINK_KK, f->alice.priv, f->bob.pub);
    h->sock.script = script_confirm;
    h->sock.stop_reading_after_open = true;
    h->sock.ka_period = 100;
    sock_connect(h, &h->sock);
    h_run(h);
    assert_int_equal(h->srv.opened, 1);
    assert_int_equal(h->srv.close_err, DUET_ETIMEDOUT);
    assert_non_null(strstr(h->srv.log, "has not read"));
    assert_true(h->srv.eagain > 0);
    assert_true(h->srv.next < N_OF(plan));
    /* Memory stays bounded: never more than high water plus one sealed record. */
    assert_true(h->srv.max_queue > o.high_water);
    assert_true(h->srv.max_queue <= o.high_water + duet_frame_sealed_size(DUET_LINK_MAX_RECORD));
    h_free(h);
}

static void on_later_close(uv_timer_t *t)
{
    side_t *s = t->data;
    if (s->link != NULL) {
        duet_link_close(s->link, DUET_OK);
    }
    uv_close((uv_handle_t *)t, h_on_closed_quiet);
}

static void test_idle_keepalive(void **state)
{
    fixture_t *f = *state;
    /* Two quiet links stay up on keepalives alone, for over three idle periods. */
    h_t *h = h_new(state, SRV_LINK, 2);
    side_init(h, &h->cli, "alice", DUET_LINK_KK, &f->alice, f->bob.pub);
    side_init(h, &h->srv, "bob", DUET_LINK_KK, &f->bob, f->alice.pub);
    h->cli.opt.idle_ms = 300;
    h->srv.opt.idle_ms = 300;
    side_connect(&h->cli);
    uv_timer_t later;
    assert_int_equal(uv_timer_init(&h->loop, &later), 0);
    later.data = &h->cli;
    assert_int_equal(uv_timer_start(&later, on_later_close, 1000, 0), 0);
    h_run(h);
    assert_int_equal(h->cli.close_err, DUET_OK);
    assert_int_equal(h->srv.close_err, DUET_OK);
    assert_true(h->cli.close_at - h->cli.open_at >= 900);
    h_free(h);

    /* A peer that handshakes and then says nothing at all is dropped after idle_ms, and
     * was sent keepalives every idle_ms / 3 meanwhile. */
    duet_link_options_t o;
    duet_link_options_default(&o);
    o.idle_ms = 600;
    o.handshake_ms = 500;
    h = run_script(state, NULL, &o);
    assert_int_equal(h->srv.opened, 0); /* it never sent its first transport message */
    assert_int_equal(h->srv.close_err, DUET_ETIMEDOUT);
    h_free(h);
    h = run_script(state, script_confirm, &o);
    assert_int_equal(h->srv.opened, 1);
    assert_int_equal(h->srv.close_err, DUET_ETIMEDOUT);
    assert_non_null(strstr(h->srv.log, "nothing received"));
    assert_true(h->srv.close_at - h->srv.open_at >= 600);
    assert_true(h->sock.keepalives >= 2);
    h_free(h);
}

static void test_close_flushes(void **state)
{
    fixture_t *f = *state;
    h_t *h = h_new(state, SRV_LINK, 2);
    side_init(h, &h->cli, "alice", DUET_LINK_KK, &f->alice, f->bob.pub);
    side_init(h, &h->srv, "bob", DUET_LINK_KK, &f->bob, f->alice.pub);
    /* 8 MiB, more than the kernel's socket buffers hold while Bob is not reading, so that
     * much of it is still in the link's queue when Alice closes. */
    static size_t plan[32];
    for (size_t i = 0; i < N_OF(plan); i++) {
        plan[i] = DUET_LINK_MAX_RECORD - i;
    }
    h->cli.plan = plan;
    h->cli.nplan = N_OF(plan);
    h->cli.opt.high_water = 16u << 20;
    h->srv.expect = plan;
    h->srv.nexpect = N_OF(plan);
    h->cli.close_when_done = true; /* closes right after the sends, in on_open */
    h->srv.pause_each = true;
    h->srv.max_pauses = 1;
    h->srv.resume_ms = 300;
    side_connect(&h->cli);
    h_run(h);
    assert_int_equal(h->cli.eagain, 0);
    assert_true(h->cli.close_at >= h->cli.open_at);
    assert_int_equal(h->srv.nrec, N_OF(plan));
    assert_int_equal(h->srv.delivered_while_paused, 0);
    assert_true(h->srv.close_at - h->cli.open_at >= 300); /* the pause was real */
    assert_int_equal(h->cli.close_err, DUET_OK);
    assert_int_equal(h->srv.close_err, DUET_OK);
    h_free(h);
}

static void test_pause_resume(void **state)
{
    fixture_t *f = *state;
    h_t *h = h_new(state, SRV_LINK, 2);
    side_init(h, &h->cli, "alice", DUET_LINK_KK, &f->alice, f->bob.pub);
    side_init(h, &h->srv, "bob", DUET_LINK_KK, &f->bob, f->alice.pub);
    static size_t plan[40];
    for (size_t i = 0; i < N_OF(plan); i++) {
        plan[i] = 1 + i * 97;
    }
    plan[20] = 150000;
    h->cli.plan = plan;
    h->cli.nplan = N_OF(plan);
    h->srv.expect = plan;
    h->srv.nexpect = N_OF(plan);
    h->srv.pause_each = true;
    h->cli.close_when_done = true;
    side_connect(&h->cli);
    h_run(h);
    assert_int_equal(h->srv.nrec, N_OF(plan));
    assert_int_equal(h->srv.delivered_while_paused, 0);
    assert_true(h->srv.drained > 0);
    assert_int_equal(h->srv.close_err, DUET_OK);
    h_free(h);
}

static void test_record_refused(void **state)
{
    fixture_t *f = *state;
    h_t *h = h_new(state, SRV_LINK, 2);
    side_init(h, &h->cli, "alice", DUET_LINK_KK, &f->alice, f->bob.pub);
    side_init(h, &h->srv, "bob", DUET_LINK_KK, &f->bob, f->alice.pub);
    static const size_t plan[] = {5, 6, 7};
    h->cli.plan = plan;
    h->cli.nplan = N_OF(plan);
    h->srv.expect = plan;
    h->srv.nexpect = N_OF(plan);
    h->srv.refuse_with = DUET_EDECODE;
    side_connect(&h->cli);
    h_run(h);
    assert_int_equal(h->srv.nrec, 1); /* nothing after the refused record */
    assert_int_equal(h->srv.close_err, DUET_EDECODE);
    assert_int_equal(h->cli.close_err, DUET_OK); /* a clean close, seen from Alice */
    h_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_roundtrip),
        cmocka_unit_test(test_frame_errors),
        cmocka_unit_test(test_addr_parse),
        cmocka_unit_test(test_kk_exchange),
        cmocka_unit_test(test_kk_bounds),
        cmocka_unit_test(test_nk),
        cmocka_unit_test(test_nk_wrong_relay_key),
        cmocka_unit_test(test_raw),
        cmocka_unit_test(test_raw_bytes),
        cmocka_unit_test(test_kk_stranger),
        cmocka_unit_test(test_kk_stranger_link),
        cmocka_unit_test(test_kk_wrong_remote_key),
        cmocka_unit_test(test_kk_responder_wrong_key),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_length_prefix),
        cmocka_unit_test(test_handshake_timeout),
        cmocka_unit_test(test_bad_transport),
        cmocka_unit_test(test_record_at_cap),
        cmocka_unit_test(test_wire_format),
        cmocka_unit_test(test_replay),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_slow_reader),
        cmocka_unit_test(test_idle_keepalive),
        cmocka_unit_test(test_close_flushes),
        cmocka_unit_test(test_pause_resume),
        cmocka_unit_test(test_record_refused),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
