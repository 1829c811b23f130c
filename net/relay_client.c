/* see relay_client.h */
#include "relay_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "codec.h"
#include "identity.h"
#include "link.h"
#include "partner.h"

#define PAIR_QUEUE 16u

/* ---- the outbox as a relay host ----------------------------------------------------------- */

static duet_err_t oh_state(void *ctx, uint64_t *wm, uint64_t *above, size_t cap, size_t *n)
{
    return duet_outbox_recv_state(ctx, wm, above, cap, n);
}

static duet_err_t oh_next(void *ctx, uint64_t after, uint64_t *seq, const uint8_t **env,
                          size_t *len)
{
    return duet_outbox_next_unrelayed(ctx, after, seq, env, len);
}

static duet_err_t oh_mark(void *ctx, uint64_t seq)
{
    duet_outbox_host_t *h = ctx;
    return duet_outbox_mark_relayed(h->st, seq);
}

static duet_err_t oh_begin(void *ctx)
{
    return duet_outbox_recv_begin(ctx);
}

static duet_err_t oh_put(void *ctx, uint64_t seq, const uint8_t *env, size_t len, bool *counted)
{
    return duet_outbox_recv_put(ctx, seq, env, len, counted);
}

static duet_err_t oh_commit(void *ctx)
{
    return duet_outbox_recv_commit(ctx);
}

static void oh_abort(void *ctx)
{
    duet_outbox_recv_abort(ctx);
}

static duet_err_t oh_acked(void *ctx, uint64_t wm, const uint64_t *above, size_t n, uint64_t *items)
{
    return duet_outbox_acked(ctx, wm, above, n, items);
}

duet_relay_host_t duet_relay_outbox_host(duet_outbox_host_t *h)
{
    duet_relay_host_t r = {h,      oh_state,  oh_next,  oh_mark, oh_begin,
                           oh_put, oh_commit, oh_abort, oh_acked};
    return r;
}

duet_err_t duet_relay_client_keys(duet_store_t *st, duet_relay_keys_t *out)
{
    duet_identity_t id;
    duet_partner_t p;
    uint8_t *secret = NULL;
    size_t len = 0;
    memset(out, 0, sizeof *out);
    duet_err_t err = duet_identity_load(st, &id);
    if (err != DUET_OK) {
        return err;
    }
    err = duet_partner_load(st, &p);
    if (err == DUET_OK) {
        err = duet_store_secret_get(st, "pair_secret", &secret, &len);
        if (err == DUET_ENOENT) {
            err = DUET_ENOTPAIRED;
        }
    }
    if (err == DUET_OK && len != 32) {
        err = DUET_ECORRUPT;
    }
    if (err == DUET_OK) {
        duet_relay_keys_derive(out, secret, id.pk, p.identity_pk);
    }
    if (secret != NULL) {
        sodium_memzero(secret, len);
        free(secret);
    }
    duet_identity_dispose(&id);
    return err;
}

/* ---- shared: resolving and linking ----------------------------------------------------------- */

/* What the link reports before it opened, as the user should read it. */
static duet_err_t handshake_err(duet_err_t err)
{
    switch (err) {
    case DUET_ECLOSED:
    case DUET_ECONNRESET:
    case DUET_EAUTH:
        return DUET_ERELAYKEY;
    default:
        return err;
    }
}

static void port_str(char out[8], uint16_t port)
{
    (void)snprintf(out, 8, "%u", (unsigned)port);
}

static duet_err_t gai_err(int status)
{
    return status == UV_ENOMEM ? DUET_ENOMEM : DUET_EADDR;
}

/* ---- sessions ---------------------------------------------------------------------------- */

struct duet_relay_client {
    uv_loop_t *loop;
    duet_relay_url_t url;
    duet_relay_host_t host;
    duet_relay_keys_t keys;
    duet_rng_t rng;
    bool stay;
    duet_relay_client_callbacks_t cb;
    uv_timer_t timer;
    uv_getaddrinfo_t gai;
    bool gai_active, timer_closed, link_active;
    duet_link_t *link;
    duet_relay_sync_t *s;
    bool opened, connected_said, closing_done, stopped, kicked;
    uint64_t opened_at, backoff, progress_seen;
    duet_relay_sync_counts_t total; /* sessions before the current one (daemon) */
    uint8_t *out;                   /* a record being filled (DUET_RELAY_RECORD_MAX) */
};

static void client_connect(duet_relay_client_t *c);

static void client_log(duet_relay_client_t *c, const char *what, const char *detail)
{
    char line[512];
    if (c->cb.on_log != NULL) {
        (void)snprintf(line, sizeof line, "%s%s", what, detail);
        c->cb.on_log(c->cb.ctx, line);
    }
}

static void client_maybe_free(duet_relay_client_t *c)
{
    if (c->stopped && !c->gai_active && !c->link_active && c->timer_closed) {
        duet_relay_sync_free(c->s);
        duet_relay_keys_dispose(&c->keys);
        free(c->out);
        free(c);
    }
}

static void on_timer_closed(uv_handle_t *h)
{
    duet_relay_client_t *c = h->data;
    c->timer_closed = true;
    client_maybe_free(c);
}

static duet_relay_sync_counts_t counts_sum(const duet_relay_client_t *c)
{
    duet_relay_sync_counts_t n = c->total;
    if (c->s != NULL) {
        duet_relay_sync_counts_t k = duet_relay_sync_counts(c->s);
        n.uploaded += k.uploaded;
        n.received += k.received;
        n.delivered += k.delivered;
        n.rejected += k.rejected;
    }
    return n;
}

/* Send what the engine has, while the socket has room. */
static void client_pump(duet_relay_client_t *c)
{
    if (c->link == NULL || !c->opened || c->closing_done) {
        return;
    }
    for (;;) {
        const uint8_t *frame;
        size_t len = 0, used = 0;
        if (duet_link_write_queue_size(c->link) > DUET_LINK_HIGH_WATER) {
            return; /* on_writable brings us back */
        }
        /* As many frames to a record as fit in one Noise message, one write; a frame that
         * would overflow it goes in a record of its own (or the next). */
        do {
            duet_err_t err = duet_relay_sync_next_frame(c->s, &frame, &len);
            if (err != DUET_OK) {
                c->closing_done = true;
                duet_link_close(c->link, err);
                return;
            }
            if (len > 0 && used > 0 &&
                used + DUET_RELAY_RECORD_HDR + len > DUET_RELAY_RECORD_FILL) {
                if (duet_link_send(c->link, c->out, used) != DUET_OK) {
                    return;
                }
                used = 0;
            }
            if (len > 0) {
                duet_relay_record_put_len(c->out + used, len);
                memcpy(c->out + used + DUET_RELAY_RECORD_HDR, frame, len);
                used += DUET_RELAY_RECORD_HDR + len;
            }
        } while (len > 0 && used < DUET_RELAY_RECORD_FILL);
        if (used == 0) {
            break;
        }
        if (duet_link_send(c->link, c->out, used) != DUET_OK) {
            return; /* closing: on_close follows */
        }
    }
    if (!c->stay) {
        if (duet_relay_sync_done(c->s)) {
            c->closing_done = true;
            duet_link_close(c->link, DUET_OK);
        }
        return;
    }
    if (duet_relay_sync_welcomed(c->s) && !c->connected_said) {
        c->connected_said = true;
        c->backoff = 0;
        if (c->cb.on_state != NULL) {
            c->cb.on_state(c, c->cb.ctx, true, DUET_OK);
        }
    }
    if (duet_relay_sync_done(c->s) && c->cb.on_progress != NULL) {
        duet_relay_sync_counts_t n = counts_sum(c);
        uint64_t sig = n.uploaded + n.received + n.delivered;
        if (sig != c->progress_seen) {
            c->progress_seen = sig;
            c->cb.on_progress(c, c->cb.ctx, &n);
        }
    }
}

static void c_on_open(duet_link_t *link, void *ctx)
{
    duet_relay_client_t *c = ctx;
    (void)link;
    c->opened = true;
    c->opened_at = uv_now(c->loop);
    client_pump(c);
}

static duet_err_t c_on_record(duet_link_t *link, void *ctx, const uint8_t *rec, size_t len)
{
    duet_relay_client_t *c = ctx;
    (void)link;
    const uint8_t *frame;
    size_t pos = 0, flen;
    duet_err_t err;
    if (c->closing_done) {
        return DUET_OK;
    }
    while ((err = duet_relay_record_next(rec, len, &pos, &frame, &flen)) == DUET_OK) {
        if ((err = duet_relay_sync_recv(c->s, frame, flen)) != DUET_OK) {
            break;
        }
    }
    if (err != DUET_ENOENT) {
        c->closing_done = true;
        return err; /* the link closes with it */
    }
    return DUET_OK;
}

static void c_on_drained(duet_link_t *link, void *ctx)
{
    (void)link;
    client_pump(ctx);
}

static void c_on_writable(duet_link_t *link, void *ctx)
{
    (void)link;
    client_pump(ctx);
}

static void c_on_log(duet_link_t *link, void *ctx, const char *line)
{
    (void)link;
    client_log(ctx, "", line);
}

static void on_retry(uv_timer_t *t)
{
    client_connect(t->data);
}

/* The connection is over: report (one-shot) or try again later (daemon). */
static void client_ended(duet_relay_client_t *c, duet_err_t err)
{
    duet_err_t upload_err = DUET_OK;
    bool done = false;
    if (c->s != NULL) {
        duet_err_t e = duet_relay_sync_error(c->s);
        done = duet_relay_sync_done(c->s);
        upload_err = duet_relay_sync_upload_error(c->s);
        if (e != DUET_OK) {
            err = e; /* the engine's reason is the better one */
        }
    }
    if (!c->opened) {
        err = handshake_err(err);
    } else if (err == DUET_OK && !done) {
        err = DUET_ECLOSED; /* the relay hung up on us */
    }
    if (c->stopped) {
        return;
    }
    if (!c->stay) {
        duet_relay_sync_counts_t n = counts_sum(c);
        c->stopped = true; /* one report, then the client frees itself */
        if (c->cb.on_done != NULL) {
            c->cb.on_done(c, c->cb.ctx, err, upload_err, &n);
        }
        uv_close((uv_handle_t *)&c->timer, on_timer_closed);
        return;
    }
    if (c->connected_said || c->backoff == 0) {
        if (c->cb.on_state != NULL) {
            c->cb.on_state(c, c->cb.ctx, false, err);
        }
    }
    if (c->opened && uv_now(c->loop) - c->opened_at >= DUET_RELAY_CLIENT_STABLE_MS) {
        c->backoff = 0;
    }
    c->total = counts_sum(c);
    duet_relay_sync_free(c->s);
    c->s = NULL;
    /* Exponential backoff with jitter: [b/2, b), so clients of one relay spread out. */
    c->backoff = c->backoff == 0 ? DUET_RELAY_CLIENT_BACKOFF_MIN_MS : c->backoff * 2;
    if (c->backoff > DUET_RELAY_CLIENT_BACKOFF_MAX_MS) {
        c->backoff = DUET_RELAY_CLIENT_BACKOFF_MAX_MS;
    }
    uint8_t r[2];
    duet_rng_fill(&c->rng, r, sizeof r);
    uint64_t half = c->backoff / 2;
    uint64_t delay = half + (half ? ((uint64_t)r[0] << 8 | r[1]) % half : 0);
    (void)uv_timer_start(&c->timer, on_retry, delay, 0);
}

static void c_on_close(duet_link_t *link, void *ctx, duet_err_t err)
{
    duet_relay_client_t *c = ctx;
    (void)link;
    c->link = NULL;
    c->link_active = false;
    client_ended(c, err);
    client_maybe_free(c);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    duet_relay_client_t *c = req->data;
    c->gai_active = false;
    if (c->stopped) {
        uv_freeaddrinfo(res);
        client_maybe_free(c);
        return;
    }
    if (status != 0 || res == NULL) {
        uv_freeaddrinfo(res);
        client_log(c, "cannot resolve ", c->url.host);
        client_ended(c, gai_err(status));
        client_maybe_free(c);
        return;
    }
    duet_link_config_t cfg;
    duet_link_callbacks_t cb;
    memset(&cfg, 0, sizeof cfg);
    cfg.mode = DUET_LINK_NK;
    cfg.remote_static = c->url.key;
    cfg.rng = c->rng;
    memset(&cb, 0, sizeof cb);
    cb.ctx = c;
    cb.on_open = c_on_open;
    cb.on_record = c_on_record;
    cb.on_read_drained = c_on_drained;
    cb.on_writable = c_on_writable;
    cb.on_close = c_on_close;
    cb.on_log = c_on_log;
    c->s = duet_relay_sync_new(&c->host, &c->keys, c->rng, c->stay);
    duet_err_t err =
        c->s == NULL ? DUET_ENOMEM : duet_link_connect(c->loop, res->ai_addr, &cfg, &cb, &c->link);
    uv_freeaddrinfo(res);
    if (err != DUET_OK) {
        client_ended(c, err);
        client_maybe_free(c);
        return;
    }
    if (c->kicked) {
        duet_relay_sync_kick(c->s);
        c->kicked = false;
    }
    c->link_active = true;
}

static void client_connect(duet_relay_client_t *c)
{
    char port[8];
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    port_str(port, c->url.port);
    c->opened = c->connected_said = c->closing_done = false;
    c->gai.data = c;
    int r = uv_getaddrinfo(c->loop, &c->gai, on_resolved, c->url.host, port, &hints);
    if (r != 0) {
        client_ended(c, gai_err(r));
        return;
    }
    c->gai_active = true;
}

duet_err_t duet_relay_client_start(const duet_relay_client_opts_t *o,
                                   const duet_relay_client_callbacks_t *cb,
                                   duet_relay_client_t **out)
{
    *out = NULL;
    duet_relay_client_t *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return DUET_ENOMEM;
    }
    duet_err_t err = duet_relay_url_parse(&c->url, o->url, strlen(o->url));
    if (err == DUET_OK && (c->out = malloc(DUET_RELAY_RECORD_MAX)) == NULL) {
        err = DUET_ENOMEM;
    }
    if (err != DUET_OK) {
        free(c);
        return err;
    }
    c->loop = o->loop;
    c->host = *o->host;
    c->keys = *o->keys;
    c->rng = o->rng;
    c->stay = o->stay;
    c->cb = *cb;
    uv_timer_init(c->loop, &c->timer);
    c->timer.data = c;
    /* Start from the loop, not from inside this call (no callback from an owner's call). */
    (void)uv_timer_start(&c->timer, on_retry, 0, 0);
    *out = c;
    return DUET_OK;
}

void duet_relay_client_kick(duet_relay_client_t *c)
{
    if (c->s != NULL) {
        duet_relay_sync_kick(c->s);
        client_pump(c);
    } else {
        c->kicked = true;
    }
}

void duet_relay_client_stop(duet_relay_client_t *c)
{
    if (c->stopped) {
        return;
    }
    c->stopped = true;
    if (c->gai_active) {
        (void)uv_cancel((uv_req_t *)&c->gai);
    }
    if (c->link != NULL) {
        duet_link_close(c->link, DUET_ECANCELED);
    }
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

/* ---- the pairing rendezvous -------------------------------------------------------------- */

enum { RV_START, RV_HELLO, RV_CLAIM, RV_READY, RV_DONE };

struct duet_relay_rendezvous {
    uv_loop_t *loop;
    duet_relay_url_t url;
    duet_rng_t rng;
    bool joiner;
    uint16_t nameplate;
    duet_relay_rendezvous_callbacks_t cb;
    uv_getaddrinfo_t gai;
    uv_timer_t timer;
    bool gai_active, link_active, timer_closed, closed_by_owner, reported, opened;
    duet_link_t *link;
    int state;
    uint32_t rid;
    uint8_t queue[PAIR_QUEUE][DUET_RELAY_PAIR_MSG];
    size_t qhead, qlen;
    duet_codec_enc_t enc;
};

static void rv_maybe_free(duet_relay_rendezvous_t *r)
{
    if (r->closed_by_owner && !r->gai_active && !r->link_active && r->timer_closed) {
        duet_codec_enc_dispose(&r->enc);
        sodium_memzero(r->queue, sizeof r->queue);
        free(r);
    }
}

static void rv_timer_closed(uv_handle_t *h)
{
    duet_relay_rendezvous_t *r = h->data;
    r->timer_closed = true;
    rv_maybe_free(r);
}

/* Tell the owner it is over (once), unless the owner closed first. */
static void rv_report(duet_relay_rendezvous_t *r, duet_err_t err)
{
    if (r->reported || r->closed_by_owner) {
        return;
    }
    r->reported = true;
    r->state = RV_DONE;
    if (r->cb.on_closed != NULL) {
        r->cb.on_closed(r, r->cb.ctx, err);
    }
}

/* Send the frame in the encoder as a record of its own. */
static duet_err_t rv_send(duet_relay_rendezvous_t *r)
{
    uint8_t rec[DUET_RELAY_RECORD_HDR + 600];
    const uint8_t *f;
    size_t len;
    duet_err_t err = duet_codec_enc_finish(&r->enc, &f, &len);
    if (err == DUET_OK && len > sizeof rec - DUET_RELAY_RECORD_HDR) {
        err = DUET_EINTERNAL;
    }
    if (err == DUET_OK) {
        duet_relay_record_put_len(rec, len);
        memcpy(rec + DUET_RELAY_RECORD_HDR, f, len);
        err = duet_link_send(r->link, rec, DUET_RELAY_RECORD_HDR + len);
        sodium_memzero(rec, sizeof rec);
    }
    duet_codec_enc_reset(&r->enc);
    return err;
}

/* Send queued pairing messages once ready. Responses are not waited for: the relay answers
 * each PMSG in order, and only an ERROR matters. */
static void rv_flush(duet_relay_rendezvous_t *r)
{
    while (r->state == RV_READY && r->qlen > 0 && r->link != NULL) {
        if (duet_link_write_queue_size(r->link) > DUET_LINK_HIGH_WATER) {
            return;
        }
        duet_relay_enc_pmsg(&r->enc, ++r->rid, r->queue[r->qhead]);
        sodium_memzero(r->queue[r->qhead], DUET_RELAY_PAIR_MSG);
        r->qhead = (r->qhead + 1) % PAIR_QUEUE;
        r->qlen--;
        if (rv_send(r) != DUET_OK) {
            return;
        }
    }
}

static void rv_on_open(duet_link_t *link, void *ctx)
{
    duet_relay_rendezvous_t *r = ctx;
    (void)link;
    r->opened = true;
    duet_relay_enc_hello(&r->enc, ++r->rid);
    if (rv_send(r) != DUET_OK) {
        return;
    }
    if (r->joiner) {
        duet_relay_enc_claim(&r->enc, ++r->rid, r->nameplate);
    } else {
        duet_relay_enc_allocate(&r->enc, ++r->rid, r->nameplate);
    }
    if (rv_send(r) == DUET_OK) {
        r->state = RV_HELLO;
    }
}

static duet_err_t rv_on_frame(duet_relay_rendezvous_t *r, const uint8_t *rec, size_t len);

static duet_err_t rv_on_record(duet_link_t *link, void *ctx, const uint8_t *rec, size_t len)
{
    duet_relay_rendezvous_t *r = ctx;
    const uint8_t *frame;
    size_t pos = 0, flen;
    duet_err_t err;
    (void)link;
    while ((err = duet_relay_record_next(rec, len, &pos, &frame, &flen)) == DUET_OK &&
           r->state != RV_DONE) {
        if ((err = rv_on_frame(r, frame, flen)) != DUET_OK) {
            return err;
        }
    }
    if (err == DUET_EPROTO) {
        rv_report(r, err);
        return err;
    }
    return DUET_OK;
}

static duet_err_t rv_on_frame(duet_relay_rendezvous_t *r, const uint8_t *rec, size_t len)
{
    duet_relay_frame_t f;
    const uint8_t *msg;
    size_t mlen;
    if (duet_relay_frame_decode(&f, rec, len) != DUET_OK) {
        rv_report(r, DUET_EPROTO);
        return DUET_EPROTO;
    }
    duet_err_t err = DUET_OK;
    switch (f.type) {
    case DUET_RELAY_WELCOME:
        if (r->state != RV_HELLO) {
            err = DUET_EPROTO;
        } else {
            r->state = RV_CLAIM;
        }
        break;
    case DUET_RELAY_OK:
        if (r->state == RV_CLAIM) {
            r->state = RV_READY;
            r->nameplate = (uint16_t)f.value;
            if (r->cb.on_ready != NULL) {
                r->cb.on_ready(r, r->cb.ctx, r->nameplate);
            }
            rv_flush(r);
        }
        break; /* the OK of a PMSG */
    case DUET_RELAY_ERROR:
        /* A refused ALLOCATE or CLAIM says why the nameplate is not ours (ENAMEPLATE, or
         * EBUSY: the relay has none free); a refused PMSG means the other holder is gone. */
        err = f.fatal || r->state == RV_CLAIM ? f.err : DUET_ECLOSED;
        break;
    case DUET_RELAY_PDATA:
        if (r->state != RV_READY ||
            duet_relay_pair_unpad(f.data, f.data_len, &msg, &mlen) != DUET_OK) {
            err = DUET_EPROTO;
        } else if (r->cb.on_message != NULL) {
            r->cb.on_message(r, r->cb.ctx, msg, mlen);
        }
        break;
    case DUET_RELAY_PCLOSED:
        err = f.err == DUET_ETIMEDOUT ? DUET_ETIMEDOUT : DUET_ECLOSED;
        break;
    default:
        err = DUET_EPROTO;
        break;
    }
    duet_relay_frame_dispose(&f);
    if (err != DUET_OK) {
        rv_report(r, err);
        return err;
    }
    return DUET_OK;
}

static void rv_on_writable(duet_link_t *link, void *ctx)
{
    (void)link;
    rv_flush(ctx);
}

static void rv_on_close(duet_link_t *link, void *ctx, duet_err_t err)
{
    duet_relay_rendezvous_t *r = ctx;
    (void)link;
    r->link = NULL;
    r->link_active = false;
    if (!r->opened) {
        err = handshake_err(err);
    } else if (err == DUET_OK) {
        err = DUET_ECLOSED;
    }
    rv_report(r, err);
    rv_maybe_free(r);
}

static void rv_on_log(duet_link_t *link, void *ctx, const char *line)
{
    duet_relay_rendezvous_t *r = ctx;
    (void)link;
    if (r->cb.on_log != NULL) {
        r->cb.on_log(r->cb.ctx, line);
    }
}

static void rv_on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    duet_relay_rendezvous_t *r = req->data;
    r->gai_active = false;
    if (r->closed_by_owner) {
        uv_freeaddrinfo(res);
        rv_maybe_free(r);
        return;
    }
    if (status != 0 || res == NULL) {
        uv_freeaddrinfo(res);
        rv_report(r, gai_err(status));
        return;
    }
    duet_link_config_t cfg;
    duet_link_callbacks_t cb;
    memset(&cfg, 0, sizeof cfg);
    cfg.mode = DUET_LINK_NK;
    cfg.remote_static = r->url.key;
    cfg.rng = r->rng;
    memset(&cb, 0, sizeof cb);
    cb.ctx = r;
    cb.on_open = rv_on_open;
    cb.on_record = rv_on_record;
    cb.on_writable = rv_on_writable;
    cb.on_close = rv_on_close;
    cb.on_log = rv_on_log;
    duet_err_t err = duet_link_connect(r->loop, res->ai_addr, &cfg, &cb, &r->link);
    uv_freeaddrinfo(res);
    if (err != DUET_OK) {
        rv_report(r, err);
        return;
    }
    r->link_active = true;
}

static void rv_on_start(uv_timer_t *t)
{
    duet_relay_rendezvous_t *r = t->data;
    char port[8];
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    port_str(port, r->url.port);
    r->gai.data = r;
    int rc = uv_getaddrinfo(r->loop, &r->gai, rv_on_resolved, r->url.host, port, &hints);
    if (rc != 0) {
        rv_report(r, gai_err(rc));
        return;
    }
    r->gai_active = true;
}

duet_err_t duet_relay_rendezvous_start(uv_loop_t *loop, const char *url, uint16_t nameplate,
                                       bool joiner, duet_rng_t rng,
                                       const duet_relay_rendezvous_callbacks_t *cb,
                                       duet_relay_rendezvous_t **out)
{
    *out = NULL;
    if (nameplate > 9999 || (joiner && nameplate == 0)) {
        return DUET_ENAMEPLATE;
    }
    duet_relay_rendezvous_t *r = calloc(1, sizeof *r);
    if (r == NULL) {
        return DUET_ENOMEM;
    }
    duet_err_t err = duet_relay_url_parse(&r->url, url, strlen(url));
    if (err != DUET_OK) {
        free(r);
        return err;
    }
    r->loop = loop;
    r->rng = rng;
    r->joiner = joiner;
    r->nameplate = nameplate;
    r->cb = *cb;
    r->state = RV_START;
    duet_codec_enc_init(&r->enc, DUET_RELAY_FRAME_MAX);
    uv_timer_init(loop, &r->timer);
    r->timer.data = r;
    (void)uv_timer_start(&r->timer, rv_on_start, 0, 0);
    *out = r;
    return DUET_OK;
}

duet_err_t duet_relay_rendezvous_send(duet_relay_rendezvous_t *r, const uint8_t *msg, size_t len)
{
    if (r->closed_by_owner || r->state == RV_DONE) {
        return DUET_ESTATE;
    }
    if (r->qlen == PAIR_QUEUE) {
        return DUET_ENOMEM;
    }
    size_t slot = (r->qhead + r->qlen) % PAIR_QUEUE;
    duet_err_t err = duet_relay_pair_pad(r->queue[slot], msg, len);
    if (err != DUET_OK) {
        return err;
    }
    r->qlen++;
    rv_flush(r);
    return DUET_OK;
}

void duet_relay_rendezvous_close(duet_relay_rendezvous_t *r)
{
    if (r->closed_by_owner) {
        return;
    }
    r->closed_by_owner = true;
    rv_flush(r);
    if (r->gai_active) {
        (void)uv_cancel((uv_req_t *)&r->gai);
    }
    if (r->link != NULL) {
        duet_link_close(r->link, DUET_OK);
    }
    uv_close((uv_handle_t *)&r->timer, rv_timer_closed);
}
