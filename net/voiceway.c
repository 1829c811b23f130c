/* see voiceway.h */
#include "voiceway.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "link.h"

struct duet_voiceway {
    uv_loop_t *loop;
    duet_relay_url_t url;
    duet_store_t *st;
    duet_relay_keys_t keys;
    duet_rng_t rng;
    duet_voiceway_callbacks_t cb;
    uv_timer_t start;
    uv_getaddrinfo_t gai;
    bool gai_active, timer_closed, link_active, opened, closing, stopped, reported;
    duet_link_t *link;
    duet_blobrelay_t *br;
    uint8_t *out; /* a record being filled (DUET_RELAY_RECORD_MAX) */
};

static void log_line(duet_voiceway_t *w, const char *what, const char *detail)
{
    char line[512];
    if (w->cb.on_log != NULL) {
        (void)snprintf(line, sizeof line, "%s%s", what, detail);
        w->cb.on_log(w->cb.ctx, line);
    }
}

static void maybe_free(duet_voiceway_t *w)
{
    if (w->stopped && !w->gai_active && !w->link_active && w->timer_closed) {
        duet_blobrelay_free(w->br);
        duet_relay_keys_dispose(&w->keys);
        free(w->out);
        free(w);
    }
}

static void on_timer_closed(uv_handle_t *h)
{
    duet_voiceway_t *w = h->data;
    w->timer_closed = true;
    maybe_free(w);
}

/* Report once, then free when everything is closed. */
static void report(duet_voiceway_t *w, duet_err_t err)
{
    duet_blobrelay_stats_t stats = {0};
    duet_err_t upload_err = DUET_OK;
    if (w->br != NULL) {
        duet_err_t e = duet_blobrelay_error(w->br);
        bool done = duet_blobrelay_done(w->br);
        upload_err = duet_blobrelay_upload_error(w->br);
        duet_blobrelay_stats(w->br, &stats);
        if (e != DUET_OK) {
            err = e; /* the engine's reason is the better one */
        } else if (err == DUET_OK && !done) {
            err = DUET_ECLOSED; /* the relay hung up on us */
        }
    }
    if (!w->opened && (err == DUET_ECLOSED || err == DUET_ECONNRESET || err == DUET_EAUTH)) {
        err = DUET_ERELAYKEY; /* what a relay that does not have the URL's key looks like */
    }
    if (!w->reported && !w->stopped) {
        w->reported = true;
        w->stopped = true;
        if (w->cb.on_done != NULL) {
            w->cb.on_done(w, w->cb.ctx, err, upload_err, &stats);
        }
        if (!uv_is_closing((uv_handle_t *)&w->start)) {
            uv_close((uv_handle_t *)&w->start, on_timer_closed);
        }
    }
}

/* Send what the engine has while the socket has room: as many frames to a record as fit in
 * one Noise message (net/relay_client.c does the same). */
static void pump(duet_voiceway_t *w)
{
    if (w->link == NULL || !w->opened || w->closing) {
        return;
    }
    for (;;) {
        const uint8_t *frame;
        size_t len = 0, used = 0;
        if (duet_link_write_queue_size(w->link) > DUET_LINK_HIGH_WATER) {
            return; /* on_writable brings us back */
        }
        do {
            duet_err_t err = duet_blobrelay_next_frame(w->br, &frame, &len);
            if (err != DUET_OK) {
                w->closing = true;
                duet_link_close(w->link, err);
                return;
            }
            if (len > 0 && used > 0 &&
                used + DUET_RELAY_RECORD_HDR + len > DUET_RELAY_RECORD_FILL) {
                if (duet_link_send(w->link, w->out, used) != DUET_OK) {
                    return;
                }
                used = 0;
            }
            if (len > 0) {
                duet_relay_record_put_len(w->out + used, len);
                memcpy(w->out + used + DUET_RELAY_RECORD_HDR, frame, len);
                used += DUET_RELAY_RECORD_HDR + len;
            }
        } while (len > 0 && used < DUET_RELAY_RECORD_FILL);
        if (used == 0) {
            break;
        }
        if (duet_link_send(w->link, w->out, used) != DUET_OK) {
            return; /* closing: on_close follows */
        }
    }
    if (duet_blobrelay_done(w->br)) {
        w->closing = true;
        duet_link_close(w->link, DUET_OK);
    }
}

static void l_open(duet_link_t *link, void *ctx)
{
    duet_voiceway_t *w = ctx;
    (void)link;
    w->opened = true;
    pump(w);
}

static duet_err_t l_record(duet_link_t *link, void *ctx, const uint8_t *rec, size_t len)
{
    duet_voiceway_t *w = ctx;
    const uint8_t *frame;
    size_t pos = 0, flen;
    duet_err_t err;
    (void)link;
    if (w->closing) {
        return DUET_OK;
    }
    while ((err = duet_relay_record_next(rec, len, &pos, &frame, &flen)) == DUET_OK) {
        if ((err = duet_blobrelay_recv(w->br, frame, flen)) != DUET_OK) {
            break;
        }
    }
    if (err != DUET_ENOENT) {
        w->closing = true;
        return err; /* the link closes with it */
    }
    return DUET_OK;
}

static void l_pump(duet_link_t *link, void *ctx)
{
    (void)link;
    pump(ctx);
}

static void l_log(duet_link_t *link, void *ctx, const char *line)
{
    (void)link;
    log_line(ctx, "", line);
}

static void l_close(duet_link_t *link, void *ctx, duet_err_t err)
{
    duet_voiceway_t *w = ctx;
    (void)link;
    w->link = NULL;
    w->link_active = false;
    report(w, err);
    maybe_free(w);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    duet_voiceway_t *w = req->data;
    w->gai_active = false;
    if (w->stopped) {
        uv_freeaddrinfo(res);
        maybe_free(w);
        return;
    }
    if (status != 0 || res == NULL) {
        uv_freeaddrinfo(res);
        log_line(w, "cannot resolve ", w->url.host);
        report(w, status == UV_ENOMEM ? DUET_ENOMEM : DUET_EADDR);
        maybe_free(w);
        return;
    }
    duet_link_config_t cfg;
    duet_link_callbacks_t cb;
    memset(&cfg, 0, sizeof cfg);
    cfg.mode = DUET_LINK_NK;
    cfg.remote_static = w->url.key;
    cfg.rng = w->rng;
    memset(&cb, 0, sizeof cb);
    cb.ctx = w;
    cb.on_open = l_open;
    cb.on_record = l_record;
    cb.on_read_drained = l_pump;
    cb.on_writable = l_pump;
    cb.on_close = l_close;
    cb.on_log = l_log;
    duet_blobxfer_callbacks_t bcb = {w->cb.ctx, w->cb.on_progress};
    w->br = duet_blobrelay_new(w->st, &w->keys, &bcb);
    duet_err_t err =
        w->br == NULL ? DUET_ENOMEM : duet_link_connect(w->loop, res->ai_addr, &cfg, &cb, &w->link);
    uv_freeaddrinfo(res);
    if (err != DUET_OK) {
        report(w, err);
        maybe_free(w);
        return;
    }
    w->link_active = true;
}

/* From the loop, not from inside duet_voiceway_start (no callback from an owner's call). */
static void on_start(uv_timer_t *t)
{
    duet_voiceway_t *w = t->data;
    char port[8];
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    (void)snprintf(port, sizeof port, "%u", (unsigned)w->url.port);
    w->gai.data = w;
    int r = uv_getaddrinfo(w->loop, &w->gai, on_resolved, w->url.host, port, &hints);
    if (r != 0) {
        report(w, r == UV_ENOMEM ? DUET_ENOMEM : DUET_EADDR);
        return;
    }
    w->gai_active = true;
}

duet_err_t duet_voiceway_start(uv_loop_t *loop, const char *url, duet_store_t *st,
                               const duet_relay_keys_t *keys, duet_rng_t rng,
                               const duet_voiceway_callbacks_t *cb, duet_voiceway_t **out)
{
    *out = NULL;
    duet_voiceway_t *w = calloc(1, sizeof *w);
    if (w == NULL) {
        return DUET_ENOMEM;
    }
    duet_err_t err = duet_relay_url_parse(&w->url, url, strlen(url));
    if (err == DUET_OK && (w->out = malloc(DUET_RELAY_RECORD_MAX)) == NULL) {
        err = DUET_ENOMEM;
    }
    if (err != DUET_OK) {
        free(w);
        return err;
    }
    w->loop = loop;
    w->st = st;
    w->keys = *keys;
    w->rng = rng;
    w->cb = *cb;
    uv_timer_init(loop, &w->start);
    w->start.data = w;
    (void)uv_timer_start(&w->start, on_start, 0, 0);
    *out = w;
    return DUET_OK;
}

void duet_voiceway_stop(duet_voiceway_t *w)
{
    if (w->stopped) {
        return;
    }
    w->stopped = true;
    w->reported = true;
    if (w->gai_active) {
        uv_cancel((uv_req_t *)&w->gai);
    }
    if (w->link != NULL) {
        w->closing = true;
        duet_link_close(w->link, DUET_OK);
    }
    if (!uv_is_closing((uv_handle_t *)&w->start)) {
        uv_close((uv_handle_t *)&w->start, on_timer_closed);
    }
}
