/* see link.h */
#include "link.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Life of a link:
 *
 *   CONNECTING --TCP up--> HANDSHAKE --msg 2 read (initiator)--> OPEN
 *                          HANDSHAKE --msg 2 written (responder)--> CONFIRM
 *                          CONFIRM --first transport message--> OPEN
 *   any --duet_link_close, peer FIN, graceful error--> CLOSING --flushed, FIN both ways
 *         or close_ms--> CLOSED
 *   any --fatal error--> CLOSED --both handles' close callbacks--> on_close, free
 *
 * One uv_timer serves every deadline (handshake, idle, keepalive, slow reader, close bound)
 * and also runs deferred work (an accepted raw link's on_open, input left over by a pause):
 * it is armed for the earliest of them and recomputes when it fires. Activity only moves
 * deadlines later, so the timer is re-armed only when a new deadline can be earlier.
 *
 * Input is processed in place in the link's read buffer (Noise decrypts in place), so the
 * buffer is wiped after each read; while the owner has paused reading, the rest of a read
 * waits there and the socket is not read (invariant: reading => nothing left over).
 */

#define LINK_READ_BUF      65536u
#define LINK_LOG_MAX       256u
#define LINK_VERSION_BYTES 2u
#define LINK_REFUSE_MARK   0xFFFFu /* message 2 payload {FF FF, version}: version refused */

typedef enum {
    LINK_CONNECTING,
    LINK_HANDSHAKE,
    LINK_CONFIRM,
    LINK_OPEN,
    LINK_CLOSING,
    LINK_CLOSED,
} link_state_t;

/* The secrets of a link, in sodium_malloc memory (guarded, locked, wiped by sodium_free), or
 * with heap_secrets inside the link itself (wiped before it is freed). */
typedef struct link_secrets {
    duet_noise_hs_t hs;
    duet_noise_cs_t tx, rx;
    uint8_t h[DUET_NOISE_HASHLEN];
    uint8_t rs[DUET_LINK_KEY_BYTES];
    bool has_rs;
} link_secrets_t;

/* One write: libuv's request and the bytes, alive until the write callback. */
typedef struct link_wreq {
    uv_write_t req;
    duet_link_t *link;
    size_t len;
    uint8_t data[];
} link_wreq_t;

struct duet_link {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t connect_req;
    uv_shutdown_t shutdown_req;
    duet_link_callbacks_t cb;
    duet_link_options_t opt;
    duet_link_mode_t mode;
    duet_noise_role_t role;
    uint16_t version; /* the version we speak */
    link_state_t state;
    duet_err_t err;       /* what on_close reports */
    bool silent;          /* connect/accept failed: free without callbacks */
    int handles;          /* handles whose close callback has not run yet */
    bool reading;         /* uv_read_start is in effect */
    bool paused;          /* the owner paused reading */
    bool in_process;      /* link_process is on the stack */
    bool open_pending;    /* call on_open from the timer (accepted raw link) */
    bool process_pending; /* process left-over input from the timer */
    bool delivered;       /* records delivered since the last on_read_drained */
    bool eof_seen;        /* the peer's FIN has arrived */
    bool shut_done;       /* our FIN has been sent (graceful close) */
    bool above_low;       /* the write queue went above low_water since last drained */
    uint64_t hs_deadline;
    uint64_t last_rx;
    uint64_t last_tx;
    uint64_t above_low_since;
    uint64_t close_deadline;
    size_t wqueue;     /* bytes in write requests not yet called back */
    /* While corked, sealed records accumulate here and go out in one write at uncork (one
     * syscall for many small records); counted in duet_link_write_queue_size. */
    bool corked;
    struct link_wreq *cork;
    size_t cork_cap;
    size_t rpos, rend; /* unprocessed input in rbuf */
    char peer[DUET_ADDR_STRLEN];
    link_secrets_t *sec; /* NULL for raw links; &sec_inline with heap_secrets */
    link_secrets_t sec_inline;
    duet_frame_reasm_t reasm;
    duet_frame_reader_t reader;
    uint8_t rbuf[LINK_READ_BUF];
};

static void link_on_timer(uv_timer_t *t);
static void link_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void link_process(duet_link_t *l);
static void link_close_graceful(duet_link_t *l, duet_err_t err);
static duet_err_t link_flush_cork(duet_link_t *l);

/* ---- small helpers ---------------------------------------------------------------------- */

void duet_link_options_default(duet_link_options_t *o)
{
    memset(o, 0, sizeof *o);
    o->handshake_ms = DUET_LINK_HANDSHAKE_MS;
    o->idle_ms = DUET_LINK_IDLE_MS;
    o->close_ms = DUET_LINK_CLOSE_MS;
    o->high_water = DUET_LINK_HIGH_WATER;
    o->low_water = DUET_LINK_LOW_WATER;
}

static duet_err_t link_uv_err(int r)
{
    switch (r) {
    case UV_ECONNREFUSED:
        return DUET_ECONNREFUSED;
    case UV_ECONNRESET:
    case UV_EPIPE:
    case UV_ECONNABORTED:
        return DUET_ECONNRESET;
    case UV_ETIMEDOUT:
        return DUET_ETIMEDOUT;
    case UV_ENOMEM:
    case UV_ENOBUFS:
        return DUET_ENOMEM;
    case UV_EINVAL:
    case UV_EAFNOSUPPORT:
    case UV_EADDRNOTAVAIL:
        return DUET_EADDR;
    default:
        return DUET_ENET;
    }
}

static uint64_t link_now(const duet_link_t *l)
{
    return uv_now(l->tcp.loop);
}

static bool link_receiving(const duet_link_t *l)
{
    return l->state == LINK_HANDSHAKE || l->state == LINK_CONFIRM || l->state == LINK_OPEN;
}

__attribute__((format(printf, 2, 3))) static void link_log(duet_link_t *l, const char *fmt, ...)
{
    char msg[LINK_LOG_MAX];
    char line[LINK_LOG_MAX + DUET_ADDR_STRLEN + 2];
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    (void)snprintf(line, sizeof line, "%s: %s", l->peer, msg);
    if (l->cb.on_log != NULL) {
        l->cb.on_log(l, l->cb.ctx, line);
    } else {
        fprintf(stderr, "duet: link %s\n", line);
    }
}

/* ---- closing ---------------------------------------------------------------------------- */

static void link_wipe_input(duet_link_t *l)
{
    sodium_memzero(l->rbuf, l->rend);
    l->rpos = 0;
    l->rend = 0;
}

static void link_free(duet_link_t *l)
{
    if (l->cork != NULL) {
        sodium_memzero(l->cork, sizeof *l->cork);
        free(l->cork);
    }
    if (l->sec != NULL) {
        duet_noise_hs_dispose(&l->sec->hs);
        if (l->sec != &l->sec_inline) {
            sodium_free(l->sec);
        }
    }
    sodium_memzero(&l->sec_inline, sizeof l->sec_inline);
    duet_frame_reasm_dispose(&l->reasm);
    duet_frame_reader_dispose(&l->reader);
    sodium_memzero(l->rbuf, sizeof l->rbuf);
    free(l);
}

static void link_on_handle_closed(uv_handle_t *h)
{
    duet_link_t *l = h->data;
    if (--l->handles > 0) {
        return;
    }
    /* libuv has called every request back (ECANCELED) before the close callbacks: nothing
     * refers to the link any more. */
    if (!l->silent) {
        l->cb.on_close(l, l->cb.ctx, l->err);
    }
    link_free(l);
}

/* Close both handles now; pending writes are cancelled (their callbacks free them). */
static void link_finish(duet_link_t *l)
{
    if (l->state == LINK_CLOSED) {
        return;
    }
    l->state = LINK_CLOSED;
    l->reading = false;
    link_wipe_input(l);
    uv_close((uv_handle_t *)&l->tcp, link_on_handle_closed);
    uv_close((uv_handle_t *)&l->timer, link_on_handle_closed);
}

/* A fatal error: close at once, without flushing. The first error is the one reported. */
__attribute__((format(printf, 3, 4))) static void link_fail(duet_link_t *l, duet_err_t err,
                                                            const char *fmt, ...)
{
    if (l->state == LINK_CLOSED) {
        return;
    }
    if (l->state != LINK_CLOSING) {
        char msg[LINK_LOG_MAX];
        va_list ap;
        va_start(ap, fmt);
        (void)vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        link_log(l, "%s (%s)", msg, duet_err_name(err));
        l->err = err;
    }
    link_finish(l);
}

static void link_arm(duet_link_t *l);

static void link_on_shutdown(uv_shutdown_t *req, int status)
{
    duet_link_t *l = req->data;
    if (status == UV_ECANCELED || l->state != LINK_CLOSING) {
        return;
    }
    l->shut_done = true;
    /* Wait for the peer's FIN too: closing a socket with unread input makes the kernel send
     * a reset, which can destroy what we have just flushed before the peer reads it. */
    if (status < 0 || l->eof_seen) {
        link_finish(l);
    }
}

static void link_read_start(duet_link_t *l);

static void link_close_graceful(duet_link_t *l, duet_err_t err)
{
    if (l->state == LINK_CLOSING || l->state == LINK_CLOSED) {
        return;
    }
    l->err = err;
    if (l->state == LINK_CONNECTING) {
        link_finish(l);
        return;
    }
    l->corked = false;
    if (l->state == LINK_OPEN && link_flush_cork(l) != DUET_OK) {
        return; /* the write failed and closed the link */
    }
    l->state = LINK_CLOSING;
    link_wipe_input(l);
    l->paused = false;
    if (!l->eof_seen) {
        link_read_start(l); /* to see the peer's FIN; what comes before it is dropped */
        if (l->state == LINK_CLOSED) {
            return;
        }
    }
    l->shutdown_req.data = l;
    if (uv_shutdown(&l->shutdown_req, (uv_stream_t *)&l->tcp, link_on_shutdown) != 0) {
        link_finish(l);
        return;
    }
    l->close_deadline = link_now(l) + l->opt.close_ms;
    link_arm(l);
}

void duet_link_close(duet_link_t *link, duet_err_t err)
{
    link_close_graceful(link, err);
}

/* ---- writing ---------------------------------------------------------------------------- */

static void link_on_write(uv_write_t *req, int status)
{
    link_wreq_t *w = (link_wreq_t *)req;
    duet_link_t *l = w->link;
    l->wqueue -= w->len;
    free(w);
    if (status == UV_ECANCELED || l->state == LINK_CLOSED) {
        return;
    }
    if (status < 0) {
        link_fail(l, link_uv_err(status), "write failed: %s", uv_strerror(status));
        return;
    }
    if (l->above_low && l->wqueue <= l->opt.low_water) {
        l->above_low = false;
        if (l->state == LINK_OPEN && l->cb.on_writable != NULL) {
            l->cb.on_writable(l, l->cb.ctx);
        }
    }
}

static link_wreq_t *link_wreq_new(duet_link_t *l, size_t len)
{
    link_wreq_t *w = malloc(sizeof *w + len);
    if (w != NULL) {
        w->link = l;
        w->len = len;
    }
    return w;
}

static duet_err_t link_write(duet_link_t *l, link_wreq_t *w);

/* Write what the cork holds, if anything. */
static duet_err_t link_flush_cork(duet_link_t *l)
{
    link_wreq_t *w = l->cork;
    if (w == NULL) {
        return DUET_OK;
    }
    l->cork = NULL;
    return link_write(l, w);
}

/* Hand w to libuv. On failure w is freed and the link failed; the error is returned. Corked
 * bytes go first, so records keep their order (Noise nonces depend on it). */
static duet_err_t link_write(duet_link_t *l, link_wreq_t *w)
{
    if (l->cork != NULL && l->cork != w) {
        duet_err_t ce = link_flush_cork(l);
        if (ce != DUET_OK) {
            free(w);
            return ce;
        }
    }
    uv_buf_t b = uv_buf_init((char *)w->data, (unsigned int)w->len);
    int r = uv_write(&w->req, (uv_stream_t *)&l->tcp, &b, 1, link_on_write);
    if (r != 0) {
        free(w);
        duet_err_t err = link_uv_err(r);
        link_fail(l, err, "write failed: %s", uv_strerror(r));
        return err;
    }
    l->wqueue += w->len;
    l->last_tx = link_now(l);
    if (l->wqueue > l->opt.low_water && !l->above_low) {
        l->above_low = true;
        l->above_low_since = l->last_tx;
        link_arm(l); /* the slow-reader deadline may be the earliest now */
    }
    return DUET_OK;
}

#define LINK_CORK_SIZE (64u << 10)

/* Seal and write one record (secure links). */
static duet_err_t link_write_sealed(duet_link_t *l, const uint8_t *rec, size_t len)
{
    size_t wire = duet_frame_sealed_size(len);
    if (l->corked) {
        if (l->cork != NULL && l->cork->len + wire > l->cork_cap) {
            duet_err_t fe = link_flush_cork(l);
            if (fe != DUET_OK) {
                return fe;
            }
        }
        if (l->cork == NULL) {
            size_t cap = wire > LINK_CORK_SIZE ? wire : LINK_CORK_SIZE;
            l->cork = link_wreq_new(l, cap);
            if (l->cork == NULL) {
                return DUET_ENOMEM;
            }
            l->cork->len = 0;
            l->cork_cap = cap;
        }
        size_t n;
        duet_err_t se =
            duet_frame_seal(&l->sec->tx, rec, len, l->cork->data + l->cork->len, wire, &n);
        if (se != DUET_OK) {
            link_fail(l, se, "cannot seal a record");
            return se;
        }
        l->cork->len += n;
        return DUET_OK;
    }
    link_wreq_t *w = link_wreq_new(l, wire);
    if (w == NULL) {
        return DUET_ENOMEM;
    }
    size_t n;
    duet_err_t err = duet_frame_seal(&l->sec->tx, rec, len, w->data, wire, &n);
    if (err != DUET_OK) {
        free(w);
        link_fail(l, err, "cannot seal a record");
        return err;
    }
    return link_write(l, w);
}

/* Frame and write one body as it is (handshake messages, raw records). */
static duet_err_t link_write_framed(duet_link_t *l, const uint8_t *body, size_t len)
{
    link_wreq_t *w = link_wreq_new(l, DUET_FRAME_HDR + len);
    if (w == NULL) {
        return DUET_ENOMEM;
    }
    duet_frame_put_header(w->data, len);
    memcpy(w->data + DUET_FRAME_HDR, body, len);
    return link_write(l, w);
}

duet_err_t duet_link_send(duet_link_t *l, const uint8_t *rec, size_t len)
{
    if (l->state != LINK_OPEN) {
        return DUET_ESTATE;
    }
    if (l->mode == DUET_LINK_RAW) {
        if (len == 0) {
            return DUET_EINVAL;
        }
        if (len > DUET_LINK_MAX_RAW_RECORD) {
            return DUET_ETOOBIG;
        }
    } else if (len > DUET_LINK_MAX_RECORD) {
        return DUET_ETOOBIG;
    }
    if (duet_link_write_queue_size(l) > l->opt.high_water) {
        return DUET_EAGAIN;
    }
    if (l->mode == DUET_LINK_RAW) {
        return link_write_framed(l, rec, len);
    }
    return link_write_sealed(l, rec, len);
}

size_t duet_link_write_queue_size(const duet_link_t *link)
{
    return link->wqueue + (link->cork != NULL ? link->cork->len : 0);
}

void duet_link_cork(duet_link_t *link)
{
    if (link->mode != DUET_LINK_RAW) {
        link->corked = true;
    }
}

void duet_link_uncork(duet_link_t *link)
{
    link->corked = false;
    if (link->state == LINK_OPEN || link->state == LINK_CLOSING) {
        duet_err_t ignored = link_flush_cork(link); /* a failure closes the link */
        (void)ignored;
    }
}

/* ---- timers ----------------------------------------------------------------------------- */

static uint64_t link_min(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* Arm the timer for the earliest thing the link waits for. */
static void link_arm(duet_link_t *l)
{
    if (l->state == LINK_CLOSED) {
        return;
    }
    uint64_t now = link_now(l);
    uint64_t next = UINT64_MAX;
    if (l->state == LINK_CLOSING) {
        next = l->close_deadline;
    } else if (l->open_pending || (l->process_pending && !l->paused)) {
        (void)uv_timer_start(&l->timer, link_on_timer, 0, 0);
        return;
    } else if (l->state != LINK_OPEN) {
        next = l->hs_deadline;
    } else if (l->opt.idle_ms > 0) {
        if (!l->paused) {
            next = link_min(next, l->last_rx + l->opt.idle_ms);
        }
        if (l->above_low) {
            next = link_min(next, l->above_low_since + l->opt.idle_ms);
        }
        if (l->mode != DUET_LINK_RAW) {
            /* A keepalive is due only once the queue is empty (queued bytes will reach the
             * peer anyway); meanwhile look again a third of the idle time later. */
            uint64_t ka = l->last_tx + l->opt.idle_ms / 3;
            next = link_min(next, l->wqueue == 0 ? ka : now + l->opt.idle_ms / 3 + 1);
        }
    }
    if (next == UINT64_MAX) {
        uv_timer_stop(&l->timer);
        return;
    }
    /* At least 1 ms for a deadline: libuv 1.44 runs a timer re-armed with 0 from its own
     * callback again before the loop's clock moves, so 0 there could spin for ever. */
    (void)uv_timer_start(&l->timer, link_on_timer, next > now ? next - now : 1, 0);
}

static void link_opened(duet_link_t *l);

/* The deadlines of an open link: idle, slow reader, keepalive. */
static void link_check_open(duet_link_t *l, uint64_t now)
{
    uint64_t idle = l->opt.idle_ms;
    if (idle == 0) {
        return;
    }
    if (!l->paused && now - l->last_rx >= idle) {
        link_fail(l, DUET_ETIMEDOUT, "nothing received for %" PRIu64 " ms", now - l->last_rx);
        return;
    }
    if (l->above_low && now - l->above_low_since >= idle) {
        link_fail(l, DUET_ETIMEDOUT,
                  "the peer has not read what we sent for %" PRIu64 " ms (%zu bytes queued)",
                  now - l->above_low_since, l->wqueue);
        return;
    }
    if (l->mode != DUET_LINK_RAW && l->wqueue == 0 && now - l->last_tx >= idle / 3) {
        (void)link_write_sealed(l, NULL, 0); /* a keepalive; a failure closes the link */
    }
}

static void link_on_timer(uv_timer_t *t)
{
    duet_link_t *l = t->data;
    uint64_t now = link_now(l);
    if (l->state == LINK_CLOSING) {
        if (now >= l->close_deadline) {
            link_finish(l);
            return;
        }
        link_arm(l);
        return;
    }
    if (l->open_pending) {
        l->open_pending = false;
        link_opened(l);
    }
    if (l->process_pending && !l->paused && link_receiving(l)) {
        l->process_pending = false;
        link_process(l);
    }
    if (l->state == LINK_OPEN) {
        link_check_open(l, now);
    } else if (l->state != LINK_CLOSED && l->state != LINK_CLOSING && now >= l->hs_deadline) {
        link_fail(l, DUET_ETIMEDOUT, "no connection and handshake within %" PRIu64 " ms",
                  l->opt.handshake_ms);
    }
    link_arm(l);
}

/* ---- the handshake ---------------------------------------------------------------------- */

static void link_put_u16(uint8_t out[2], unsigned v)
{
    out[0] = (uint8_t)(v >> 8);
    out[1] = (uint8_t)v;
}

static unsigned link_get_u16(const uint8_t in[2])
{
    return (unsigned)in[0] << 8 | in[1];
}

/* Write the next handshake message with payload. */
static duet_err_t link_hs_write(duet_link_t *l, const uint8_t *payload, size_t len)
{
    uint8_t msg[DUET_LINK_MAX_HANDSHAKE_MSG];
    size_t n;
    duet_err_t err = duet_noise_hs_write(&l->sec->hs, payload, len, msg, sizeof msg, &n);
    if (err != DUET_OK) {
        link_fail(l, err, "cannot write a handshake message");
        return err;
    }
    return link_write_framed(l, msg, n);
}

/* The handshake is over on our side: keep the transport keys, the handshake hash and the
 * remote static key, and wipe the rest (the ephemeral keys) at once. */
static duet_err_t link_hs_split(duet_link_t *l)
{
    link_secrets_t *s = l->sec;
    duet_err_t err = duet_noise_hs_split(&s->hs, &s->tx, &s->rx);
    if (err == DUET_OK) {
        err = duet_noise_hs_handshake_hash(&s->hs, s->h);
    }
    if (err == DUET_OK) {
        s->has_rs = duet_noise_hs_remote_static(&s->hs, s->rs) == DUET_OK;
    }
    duet_noise_hs_dispose(&s->hs);
    if (err != DUET_OK) {
        link_fail(l, err, "handshake split failed");
        return err;
    }
    duet_frame_reader_set_max(&l->reader, DUET_FRAME_MAX);
    return DUET_OK;
}

/* A failure reading a handshake message, as the link reports it. */
static duet_err_t link_hs_read_error(duet_err_t err)
{
    if (err == DUET_EAUTH || err == DUET_EBADKEY) {
        return DUET_EAUTH; /* every authentication failure is one code */
    }
    return DUET_EPROTO;
}

/* Responder: message 1 is in. Nothing is written before it authenticates, so a stranger
 * learns nothing, not even that we speak this protocol. */
static duet_err_t link_hs_read1(duet_link_t *l, const uint8_t *msg, size_t len)
{
    uint8_t payload[DUET_LINK_MAX_HANDSHAKE_MSG];
    size_t plen;
    duet_err_t err = duet_noise_hs_read(&l->sec->hs, msg, len, payload, sizeof payload, &plen);
    if (err != DUET_OK) {
        err = link_hs_read_error(err);
        if (err == DUET_EAUTH && l->mode == DUET_LINK_KK) {
            link_fail(l, err, "connection from an unknown device");
        } else if (err == DUET_EAUTH) {
            link_fail(l, err, "a client does not have this relay's key");
        } else {
            link_fail(l, err, "malformed handshake message");
        }
        return err;
    }
    if (plen < LINK_VERSION_BYTES) {
        link_fail(l, DUET_EPROTO, "handshake message 1 has no version");
        return DUET_EPROTO;
    }
    unsigned theirs = link_get_u16(payload);
    if (theirs != l->version) {
        /* Say which version we speak, then close: the peer reports it to its user. */
        uint8_t refuse[4];
        link_put_u16(refuse, LINK_REFUSE_MARK);
        link_put_u16(refuse + 2, l->version);
        link_log(l, "the peer speaks link protocol version %u, this device speaks version %u",
                 theirs, l->version);
        err = link_hs_write(l, refuse, sizeof refuse);
        if (err == DUET_OK) {
            link_close_graceful(l, DUET_EVERSION);
        }
        return DUET_EVERSION;
    }
    if (plen != LINK_VERSION_BYTES) {
        link_fail(l, DUET_EPROTO, "handshake message 1 carries more than the version");
        return DUET_EPROTO;
    }
    uint8_t mine[LINK_VERSION_BYTES];
    link_put_u16(mine, l->version);
    err = link_hs_write(l, mine, sizeof mine);
    if (err == DUET_OK) {
        err = link_hs_split(l);
    }
    if (err == DUET_OK) {
        l->state = LINK_CONFIRM; /* open when the initiator's first message decrypts */
    }
    return err;
}

/* Initiator: message 2 is in. */
static duet_err_t link_hs_read2(duet_link_t *l, const uint8_t *msg, size_t len)
{
    uint8_t payload[DUET_LINK_MAX_HANDSHAKE_MSG];
    size_t plen;
    duet_err_t err = duet_noise_hs_read(&l->sec->hs, msg, len, payload, sizeof payload, &plen);
    if (err != DUET_OK) {
        err = link_hs_read_error(err);
        link_fail(l, err,
                  err == DUET_EAUTH ? "the peer failed to authenticate"
                                    : "malformed handshake message");
        return err;
    }
    if (plen == 4 && link_get_u16(payload) == LINK_REFUSE_MARK) {
        unsigned theirs = link_get_u16(payload + 2);
        link_fail(l, DUET_EVERSION,
                  "the peer speaks link protocol version %u, this device speaks version %u", theirs,
                  l->version);
        return DUET_EVERSION;
    }
    if (plen != LINK_VERSION_BYTES) {
        link_fail(l, DUET_EPROTO, "handshake message 2 has no version");
        return DUET_EPROTO;
    }
    unsigned theirs = link_get_u16(payload);
    if (theirs != l->version) {
        link_fail(l, DUET_EVERSION,
                  "the peer answered with link protocol version %u, this device speaks %u", theirs,
                  l->version);
        return DUET_EVERSION;
    }
    err = link_hs_split(l);
    if (err != DUET_OK) {
        return err;
    }
    /* Our first transport message, sent at once: a keepalive that proves to the responder
     * that we hold the ephemeral key of message 1 (a replayed message 1 cannot). */
    err = link_write_sealed(l, NULL, 0);
    if (err != DUET_OK) {
        return err;
    }
    l->state = LINK_OPEN;
    link_opened(l);
    return DUET_OK;
}

/* ---- reading ---------------------------------------------------------------------------- */

static void link_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    duet_link_t *l = h->data;
    (void)suggested;
    *buf = uv_buf_init((char *)l->rbuf, (unsigned int)sizeof l->rbuf);
}

static void link_read_start(duet_link_t *l)
{
    if (l->reading || l->paused || l->state == LINK_CLOSED) {
        return;
    }
    int r = uv_read_start((uv_stream_t *)&l->tcp, link_on_alloc, link_on_read);
    if (r != 0) {
        link_fail(l, link_uv_err(r), "cannot read: %s", uv_strerror(r));
        return;
    }
    l->reading = true;
}

static void link_read_stop(duet_link_t *l)
{
    if (l->reading) {
        (void)uv_read_stop((uv_stream_t *)&l->tcp);
        l->reading = false;
    }
}

/* Hand one record to the owner. */
static void link_deliver(duet_link_t *l, const uint8_t *rec, size_t len)
{
    l->delivered = true;
    duet_err_t err = l->cb.on_record(l, l->cb.ctx, rec, len);
    if (err != DUET_OK && link_receiving(l)) {
        link_log(l, "closing: the engine refused a record (%s)", duet_err_name(err));
        link_close_graceful(l, err);
    }
}

/* One transport message of a secure link. */
static void link_on_transport(duet_link_t *l, uint8_t *msg, size_t len)
{
    bool complete;
    const uint8_t *rec;
    size_t rlen;
    duet_err_t err = duet_frame_open(&l->sec->rx, msg, len, &l->reasm, &complete, &rec, &rlen);
    if (err != DUET_OK) {
        if (err == DUET_EAUTH) {
            link_fail(l, err,
                      l->state == LINK_CONFIRM
                          ? "the initiator did not finish the handshake (a replay?)"
                          : "a record failed authentication");
        } else {
            link_fail(l, err, "malformed record");
        }
        return;
    }
    if (l->state == LINK_CONFIRM) {
        l->state = LINK_OPEN;
        link_opened(l);
        if (l->state != LINK_OPEN) {
            return;
        }
    }
    if (complete && rlen > 0) {
        link_deliver(l, rec, rlen);
    }
    if (complete) {
        duet_frame_reasm_clear(&l->reasm);
    }
}

/* One frame body. */
static void link_on_message(duet_link_t *l, uint8_t *msg, size_t len)
{
    if (l->mode == DUET_LINK_RAW) {
        link_deliver(l, msg, len);
    } else if (l->state == LINK_HANDSHAKE && l->role == DUET_NOISE_RESPONDER) {
        (void)link_hs_read1(l, msg, len);
    } else if (l->state == LINK_HANDSHAKE) {
        (void)link_hs_read2(l, msg, len);
    } else {
        link_on_transport(l, msg, len);
    }
}

/* The run_until of this adapter: take frames from the unprocessed input until it is used
 * up, the owner pauses, or the link closes. */
static void link_process(duet_link_t *l)
{
    if (l->open_pending) {
        l->open_pending = false; /* an accepted raw link: on_open before any record */
        link_opened(l);
    }
    l->in_process = true;
    while (l->rpos < l->rend && !l->paused && link_receiving(l)) {
        size_t used;
        uint8_t *body;
        size_t blen;
        duet_err_t err =
            duet_frame_read(&l->reader, l->rbuf + l->rpos, l->rend - l->rpos, &used, &body, &blen);
        l->rpos += used;
        if (err != DUET_OK) {
            link_fail(l, DUET_EPROTO, "bad frame length");
            break;
        }
        if (body != NULL) {
            link_on_message(l, body, blen);
            sodium_memzero(body, blen);
        }
    }
    l->in_process = false;
    if (!link_receiving(l) || l->rpos < l->rend) {
        return; /* closed, or paused with input left */
    }
    link_wipe_input(l);
    if (l->delivered) {
        l->delivered = false;
        if (l->cb.on_read_drained != NULL) {
            l->cb.on_read_drained(l, l->cb.ctx);
        }
    }
    if (!l->paused && link_receiving(l)) {
        link_read_start(l);
    }
}

/* The peer's FIN while the link is up. */
static void link_on_eof(duet_link_t *l)
{
    l->eof_seen = true;
    link_read_stop(l);
    if (!duet_frame_reader_idle(&l->reader) || !duet_frame_reasm_idle(&l->reasm)) {
        link_fail(l, DUET_EPROTO, "the connection ended in the middle of a record");
    } else if (l->state != LINK_OPEN && l->role == DUET_NOISE_INITIATOR) {
        link_fail(l, DUET_ECLOSED,
                  "the peer closed the connection during the handshake (it may not know this "
                  "device, or it is not the device we expect)");
    } else if (l->state != LINK_OPEN) {
        link_fail(l, DUET_ECLOSED, "the peer closed the connection during the handshake");
    } else {
        link_close_graceful(l, DUET_OK);
    }
}

static void link_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    duet_link_t *l = s->data;
    (void)buf;
    if (nread == 0 || l->state == LINK_CLOSED) {
        return;
    }
    if (l->state == LINK_CLOSING) {
        /* Draining until the peer's FIN: the bytes are dropped. */
        sodium_memzero(l->rbuf, nread > 0 ? (size_t)nread : 0);
        if (nread < 0) {
            l->eof_seen = true;
            link_read_stop(l);
            if (nread != UV_EOF || l->shut_done) {
                link_finish(l);
            }
        }
        return;
    }
    if (nread < 0) {
        if (nread == UV_EOF) {
            link_on_eof(l);
        } else {
            link_fail(l, link_uv_err((int)nread), "read failed: %s", uv_strerror((int)nread));
        }
        return;
    }
    l->last_rx = link_now(l);
    l->rpos = 0;
    l->rend = (size_t)nread;
    /* uv_read_stop is called if the owner pauses: no other read lands in rbuf meanwhile. */
    link_process(l);
}

/* ---- opening ---------------------------------------------------------------------------- */

static void link_opened(duet_link_t *l)
{
    uint64_t now = link_now(l);
    l->last_rx = now;
    if (l->last_tx == 0) {
        l->last_tx = now;
    }
    if (l->cb.on_open != NULL) {
        l->cb.on_open(l, l->cb.ctx);
    }
    link_arm(l);
}

/* TCP is up (connected or accepted). */
static void link_started(duet_link_t *l)
{
    (void)uv_tcp_nodelay(&l->tcp, 1); /* records are written whole; do not wait for more */
    if (l->role == DUET_NOISE_RESPONDER) {
        struct sockaddr_storage ss;
        int n = (int)sizeof ss;
        if (uv_tcp_getpeername(&l->tcp, (struct sockaddr *)&ss, &n) == 0) {
            (void)duet_addr_format((struct sockaddr *)&ss, l->peer, sizeof l->peer);
        }
    }
    l->state = l->mode == DUET_LINK_RAW ? LINK_OPEN : LINK_HANDSHAKE;
    link_read_start(l);
    if (l->state == LINK_CLOSED) {
        return;
    }
    if (l->mode != DUET_LINK_RAW && l->role == DUET_NOISE_INITIATOR) {
        uint8_t v[LINK_VERSION_BYTES];
        link_put_u16(v, l->version);
        (void)link_hs_write(l, v, sizeof v);
    }
}

static void link_on_connect(uv_connect_t *req, int status)
{
    duet_link_t *l = req->data;
    if (status == UV_ECANCELED || l->state != LINK_CONNECTING) {
        return;
    }
    if (status < 0) {
        link_fail(l, link_uv_err(status), "cannot connect: %s", uv_strerror(status));
        return;
    }
    link_started(l);
    if (l->state == LINK_OPEN) {
        link_opened(l); /* raw */
    }
}

/* Check a config against its mode and start the handshake state. */
static duet_err_t link_setup_noise(duet_link_t *l, const duet_link_config_t *cfg)
{
    const char *name = cfg->mode == DUET_LINK_KK ? DUET_LINK_NAME_KK : DUET_LINK_NAME_NK;
    const char *prologue =
        cfg->mode == DUET_LINK_KK ? DUET_LINK_PROLOGUE_KK : DUET_LINK_PROLOGUE_NK;
    bool initiator = l->role == DUET_NOISE_INITIATOR;
    duet_noise_keys_t k;
    memset(&k, 0, sizeof k);
    bool want_s = cfg->mode == DUET_LINK_KK || !initiator;
    bool want_rs = cfg->mode == DUET_LINK_KK || initiator;
    if ((cfg->local_static != NULL) != want_s || (cfg->remote_static != NULL) != want_rs) {
        return DUET_EINVAL;
    }
    k.s = cfg->local_static;
    k.rs = cfg->remote_static;
    l->sec = l->opt.heap_secrets ? &l->sec_inline : sodium_malloc(sizeof *l->sec);
    if (l->sec == NULL) {
        return DUET_ENOMEM;
    }
    memset(l->sec, 0, sizeof *l->sec);
    return duet_noise_hs_init(&l->sec->hs, name, l->role, (const uint8_t *)prologue,
                              strlen(prologue), &k, cfg->rng);
}

/* A new link with its handles initialised (so it must be closed, never just freed). */
static duet_err_t link_new(uv_loop_t *loop, const duet_link_config_t *cfg,
                           const duet_link_callbacks_t *cb, duet_noise_role_t role,
                           duet_link_t **out)
{
    *out = NULL;
    if (cb == NULL || cb->on_record == NULL || cb->on_close == NULL) {
        abort();
    }
    duet_link_options_t opt;
    if (cfg->options != NULL) {
        opt = *cfg->options;
    } else {
        duet_link_options_default(&opt);
    }
    if (opt.handshake_ms == 0 || opt.close_ms == 0 || opt.low_water == 0 ||
        opt.low_water > opt.high_water) {
        abort();
    }
    if (cfg->mode != DUET_LINK_KK && cfg->mode != DUET_LINK_NK && cfg->mode != DUET_LINK_RAW) {
        return DUET_EINVAL;
    }
    duet_link_t *l = calloc(1, sizeof *l);
    if (l == NULL) {
        return DUET_ENOMEM;
    }
    l->cb = *cb;
    l->opt = opt;
    l->mode = cfg->mode;
    l->role = role;
    l->version = opt.test_version ? opt.test_version : (uint16_t)DUET_LINK_VERSION;
    l->state = LINK_CONNECTING;
    l->silent = true; /* until the caller has the link */
    (void)snprintf(l->peer, sizeof l->peer, "?");
    duet_frame_reader_init(&l->reader, cfg->mode == DUET_LINK_RAW ? DUET_FRAME_MAX
                                                                  : DUET_LINK_MAX_HANDSHAKE_MSG);
    duet_frame_reasm_init(&l->reasm, DUET_LINK_MAX_RECORD);
    duet_err_t err = DUET_OK;
    if (cfg->mode != DUET_LINK_RAW) {
        err = link_setup_noise(l, cfg);
    } else if (cfg->local_static != NULL || cfg->remote_static != NULL) {
        err = DUET_EINVAL;
    }
    if (err != DUET_OK) {
        goto cleanup;
    }
    int r = uv_tcp_init(loop, &l->tcp);
    if (r != 0) {
        err = link_uv_err(r);
        goto cleanup;
    }
    /* From here on the link is closed through libuv, never just freed. */
    l->handles = 2;
    (void)uv_timer_init(loop, &l->timer); /* cannot fail */
    l->tcp.data = l;
    l->timer.data = l;
    l->connect_req.data = l;
    l->hs_deadline = uv_now(loop) + opt.handshake_ms;
    *out = l;
    return DUET_OK;
cleanup:
    link_free(l);
    return err;
}

duet_err_t duet_link_connect(uv_loop_t *loop, const struct sockaddr *addr,
                             const duet_link_config_t *cfg, const duet_link_callbacks_t *cb,
                             duet_link_t **out)
{
    duet_link_t *l;
    *out = NULL;
    duet_err_t err = link_new(loop, cfg, cb, DUET_NOISE_INITIATOR, &l);
    if (err != DUET_OK) {
        return err;
    }
    (void)duet_addr_format(addr, l->peer, sizeof l->peer);
    int r = uv_tcp_connect(&l->connect_req, &l->tcp, addr, link_on_connect);
    if (r != 0) {
        link_finish(l); /* silent: freed in the close callback */
        return link_uv_err(r);
    }
    l->silent = false;
    link_arm(l);
    *out = l;
    return DUET_OK;
}

duet_err_t duet_link_accept(uv_stream_t *server, const duet_link_config_t *cfg,
                            const duet_link_callbacks_t *cb, duet_link_t **out)
{
    duet_link_t *l;
    *out = NULL;
    duet_err_t err = link_new(server->loop, cfg, cb, DUET_NOISE_RESPONDER, &l);
    if (err != DUET_OK) {
        return err;
    }
    int r = uv_accept(server, (uv_stream_t *)&l->tcp);
    if (r != 0) {
        link_finish(l);
        return DUET_ENET;
    }
    l->silent = false;
    link_started(l);
    if (l->state == LINK_OPEN) {
        l->open_pending = true; /* raw: on_open from the loop, not from inside accept */
    }
    link_arm(l);
    *out = l;
    return DUET_OK;
}

/* ---- owner controls and getters ------------------------------------------------------- */

void duet_link_pause_read(duet_link_t *l)
{
    if (!link_receiving(l) && l->state != LINK_CONNECTING) {
        return;
    }
    l->paused = true;
    link_read_stop(l);
}

void duet_link_resume_read(duet_link_t *l)
{
    if (!l->paused || (!link_receiving(l) && l->state != LINK_CONNECTING)) {
        return;
    }
    l->paused = false;
    l->last_rx = link_now(l); /* the idle clock restarts */
    if (l->in_process || l->state == LINK_CONNECTING) {
        return; /* link_process goes on by itself; or reading starts on connect */
    }
    if (l->rpos < l->rend) {
        l->process_pending = true; /* deliver from the loop, not from inside this call */
        link_arm(l);
    } else {
        link_read_start(l);
    }
}

duet_err_t duet_link_remote_static(const duet_link_t *l, uint8_t out[static DUET_LINK_KEY_BYTES])
{
    memset(out, 0, DUET_LINK_KEY_BYTES);
    if (l->state != LINK_OPEN && l->state != LINK_CLOSING) {
        return DUET_ESTATE;
    }
    if (l->sec == NULL || !l->sec->has_rs) {
        return DUET_ENOENT;
    }
    memcpy(out, l->sec->rs, DUET_LINK_KEY_BYTES);
    return DUET_OK;
}

duet_err_t duet_link_handshake_hash(const duet_link_t *l, uint8_t out[static DUET_LINK_HASH_BYTES])
{
    memset(out, 0, DUET_LINK_HASH_BYTES);
    if (l->state != LINK_OPEN && l->state != LINK_CLOSING) {
        return DUET_ESTATE;
    }
    if (l->sec == NULL) {
        return DUET_ENOENT;
    }
    memcpy(out, l->sec->h, DUET_LINK_HASH_BYTES);
    return DUET_OK;
}

const char *duet_link_peer(const duet_link_t *l)
{
    return l->peer;
}

duet_link_mode_t duet_link_mode(const duet_link_t *l)
{
    return l->mode;
}

/* ---- addresses -------------------------------------------------------------------------- */

/* PORT: 1 to 5 decimal digits, at most 65535. */
static bool addr_port(const char *s, int *port)
{
    size_t n = strlen(s);
    if (n == 0 || n > 5) {
        return false;
    }
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (s[i] - '0');
    }
    if (v > 65535) {
        return false;
    }
    *port = (int)v;
    return true;
}

duet_err_t duet_addr_parse(const char *s, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof *out);
    size_t n = strnlen(s, DUET_ADDR_MAX_INPUT + 1);
    if (n == 0 || n > DUET_ADDR_MAX_INPUT) {
        return DUET_EADDR;
    }
    char host[DUET_ADDR_MAX_INPUT + 1];
    const char *port_s;
    bool v6 = s[0] == '[';
    if (v6) {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':') {
            return DUET_EADDR;
        }
        size_t hl = (size_t)(close - s - 1);
        memcpy(host, s + 1, hl);
        host[hl] = '\0';
        port_s = close + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (colon == NULL) {
            return DUET_EADDR;
        }
        size_t hl = (size_t)(colon - s);
        memcpy(host, s, hl);
        host[hl] = '\0';
        port_s = colon + 1;
    }
    int port;
    if (!addr_port(port_s, &port) || host[0] == '\0') {
        return DUET_EADDR;
    }
    int r;
    if (v6) {
        r = uv_ip6_addr(host, port, (struct sockaddr_in6 *)out);
    } else {
        if (strcmp(host, "localhost") == 0) {
            (void)snprintf(host, sizeof host, "127.0.0.1");
        }
        /* uv_inet_pton takes exactly four decimal parts; no "1.2.3", no hex, no spaces. */
        r = strchr(host, ':') != NULL ? UV_EINVAL
                                      : uv_ip4_addr(host, port, (struct sockaddr_in *)out);
    }
    if (r != 0) {
        memset(out, 0, sizeof *out);
        return DUET_EADDR;
    }
    return DUET_OK;
}

const char *duet_addr_format(const struct sockaddr *sa, char *out, size_t cap)
{
    char ip[DUET_ADDR_STRLEN];
    int w = -1;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        if (uv_ip4_name(a, ip, sizeof ip) == 0) {
            w = snprintf(out, cap, "%s:%u", ip, (unsigned)ntohs(a->sin_port));
        }
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        if (uv_ip6_name(a, ip, sizeof ip) == 0) {
            w = snprintf(out, cap, "[%s]:%u", ip, (unsigned)ntohs(a->sin6_port));
        }
    }
    if ((w < 0 || (size_t)w >= cap) && cap > 0) {
        (void)snprintf(out, cap, "?");
    }
    return out;
}
