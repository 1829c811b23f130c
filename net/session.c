/* see session.h */
#include "session.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "sysrng.h"

struct duet_session {
    duet_link_t *link;
    duet_store_t *st;
    duet_outbox_host_t host;
    bool host_live;
    duet_sync_t *eng;
    duet_session_callbacks_t cb;
    bool open;
    bool closing;
    bool was_done;
    uint64_t sent_final, received_final; /* counts kept when the engine is dropped */
    /* The batch is committed once per loop iteration, after every socket that was ready has
     * been read: under load one fsync covers many reads, idle it costs no latency. */
    uv_check_t flusher;
    bool flush_pending;
};

uint64_t duet_wallclock_ms(void *unused)
{
    struct timespec ts;
    (void)unused;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void logf_(duet_session_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void logf_(duet_session_t *s, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (s->cb.on_log != NULL) {
        s->cb.on_log(s, s->cb.ctx, line);
    }
}

static void host_event(void *ctx, duet_outbox_event_t ev, const uint8_t id[DUET_ITEM_ID_BYTES],
                       uint32_t kind)
{
    duet_session_t *s = ctx;
    if (s->cb.on_event != NULL) {
        s->cb.on_event(s, s->cb.ctx, ev, id, kind);
    }
}

/* Fail the session: the engine's ERROR frame (if any) goes out first, then the link
 * closes with the reason. */
void duet_session_close(duet_session_t *s, duet_err_t err);

static void fail(duet_session_t *s, duet_err_t err)
{
    if (s->closing) {
        return;
    }
    const uint8_t *f;
    size_t len;
    if (s->eng != NULL && duet_sync_next_frame(s->eng, &f, &len) == DUET_OK && len > 0) {
        duet_err_t ignored = duet_link_send(s->link, f, len);
        (void)ignored;
    }
    duet_session_close(s, err);
}

static void check_done(duet_session_t *s)
{
    if (s->closing || s->eng == NULL) {
        return;
    }
    bool done = duet_sync_done(s->eng);
    if (done && !s->was_done && s->cb.on_done != NULL) {
        s->was_done = true;
        s->cb.on_done(s, s->cb.ctx);
        return;
    }
    s->was_done = done;
}

/* Pull frames from the engine while the link takes them. The engine keeps a frame it
 * handed out only until the next call, so a frame refused with EAGAIN is never lost: the
 * engine is only asked for the next one once the link has room (it checks the queue size
 * first). */
static void pump_frames(duet_session_t *s);

static void pump(duet_session_t *s)
{
    if (s->closing || s->eng == NULL) {
        return;
    }
    duet_link_cork(s->link); /* many small frames, one write */
    pump_frames(s);
    if (!s->closing) {
        duet_link_uncork(s->link);
    }
}

static void pump_frames(duet_session_t *s)
{
    while (!s->closing && s->eng != NULL) {
        if (duet_link_write_queue_size(s->link) >= DUET_LINK_HIGH_WATER) {
            return; /* on_writable calls again */
        }
        const uint8_t *f;
        size_t len;
        duet_err_t err = duet_sync_next_frame(s->eng, &f, &len);
        if (err != DUET_OK) {
            fail(s, err);
            return;
        }
        if (len == 0) {
            break;
        }
        err = duet_link_send(s->link, f, len);
        if (err != DUET_OK) {
            /* Below high water a send cannot be refused for room; anything else is fatal. */
            fail(s, err);
            return;
        }
        if (duet_sync_error(s->eng) != DUET_OK) {
            duet_err_t why = duet_sync_error(s->eng);
            logf_(s, "%s: sync failed: %s", duet_link_peer(s->link), duet_strerror(why));
            duet_session_close(s, why);
            return;
        }
    }
}

static void on_open(duet_link_t *link, void *ctx)
{
    duet_session_t *s = ctx;
    duet_err_t err = duet_outbox_host_init(&s->host, s->st, duet_wallclock_ms, NULL, host_event,
                                           s);
    if (err != DUET_OK) {
        logf_(s, "%s: cannot start sync: %s", duet_link_peer(link), duet_strerror(err));
        s->closing = true;
        duet_link_close(link, err);
        return;
    }
    s->host_live = true;
    duet_sync_host_t h = duet_outbox_sync_host(&s->host);
    s->eng = duet_sync_new(&h);
    if (s->eng == NULL) {
        s->closing = true;
        duet_link_close(link, DUET_ENOMEM);
        return;
    }
    err = duet_sync_start(s->eng);
    if (err != DUET_OK) {
        fail(s, err);
        return;
    }
    s->open = true;
    if (s->cb.on_open != NULL) {
        s->cb.on_open(s, s->cb.ctx);
    }
    pump(s);
}

static duet_err_t on_record(duet_link_t *link, void *ctx, const uint8_t *rec, size_t len)
{
    duet_session_t *s = ctx;
    (void)link;
    if (s->eng == NULL || s->closing) {
        return DUET_OK;
    }
    duet_err_t err = duet_sync_recv(s->eng, rec, len);
    if (err != DUET_OK) {
        uint32_t v = 0;
        duet_err_t peer = duet_sync_peer_error(s->eng, &v);
        if (peer == DUET_EVERSION) {
            logf_(s, "%s: the partner speaks sync version %u; this duet speaks %u: upgrade the "
                     "older one",
                  duet_link_peer(s->link), v, DUET_SYNC_VERSION);
        } else if (peer != DUET_OK) {
            logf_(s, "%s: the partner ended the sync: %s", duet_link_peer(s->link),
                  duet_strerror(peer));
        } else {
            logf_(s, "%s: sync failed: %s", duet_link_peer(s->link), duet_strerror(err));
        }
        fail(s, err);
    }
    return DUET_OK;
}

static void flush_now(duet_session_t *s)
{
    s->flush_pending = false;
    uv_check_stop(&s->flusher);
    if (s->eng == NULL || s->closing) {
        return;
    }
    duet_err_t err = duet_sync_flush(s->eng);
    if (err != DUET_OK) {
        /* The commit failed (disk full, database locked too long): nothing of the batch was
         * acknowledged; the partner keeps it and sends it again later. */
        logf_(s, "%s: cannot store what arrived: %s", duet_link_peer(s->link),
              duet_strerror(err));
        fail(s, err);
        return;
    }
    pump(s);
    check_done(s);
}

static void on_flush_check(uv_check_t *h)
{
    flush_now(h->data);
}

static void on_read_drained(duet_link_t *link, void *ctx)
{
    duet_session_t *s = ctx;
    (void)link;
    if (s->eng == NULL || s->closing) {
        return;
    }
    if (!duet_sync_batch_open(s->eng)) {
        pump(s); /* nothing to commit: answer at once (an ACK freed our window) */
        check_done(s);
        return;
    }
    if (!s->flush_pending) {
        s->flush_pending = true;
        uv_check_start(&s->flusher, on_flush_check);
    }
}

static void on_writable(duet_link_t *link, void *ctx)
{
    duet_session_t *s = ctx;
    (void)link;
    pump(s);
    check_done(s);
}

static void flusher_closed(uv_handle_t *h)
{
    duet_session_t *s = h->data;
    sodium_memzero(s, sizeof *s);
    free(s);
}

static void on_close(duet_link_t *link, void *ctx, duet_err_t err)
{
    duet_session_t *s = ctx;
    (void)link;
    if (s->cb.on_close != NULL) {
        s->cb.on_close(s, s->cb.ctx, err);
    }
    duet_sync_free(s->eng);
    s->eng = NULL;
    if (s->host_live) {
        duet_outbox_host_dispose(&s->host);
        s->host_live = false;
    }
    uv_close((uv_handle_t *)&s->flusher, flusher_closed);
}

static void on_log(duet_link_t *link, void *ctx, const char *line)
{
    duet_session_t *s = ctx;
    (void)link;
    if (s->cb.on_log != NULL) {
        s->cb.on_log(s, s->cb.ctx, line);
    }
}

static duet_err_t make(uv_loop_t *loop, duet_store_t *st, const duet_session_callbacks_t *cb,
                       const duet_session_keys_t *keys, const duet_link_options_t *opts,
                       duet_session_t **s, duet_link_config_t *cfg, duet_link_callbacks_t *lcb)
{
    *s = calloc(1, sizeof **s);
    if (*s == NULL) {
        return DUET_ENOMEM;
    }
    uv_check_init(loop, &(*s)->flusher);
    (*s)->flusher.data = *s;
    (*s)->st = st;
    (*s)->cb = *cb;
    memset(cfg, 0, sizeof *cfg);
    cfg->mode = DUET_LINK_KK;
    cfg->local_static = keys->local_static;
    cfg->remote_static = keys->remote_static;
    cfg->rng = duet_sysrng();
    cfg->options = opts;
    lcb->ctx = *s;
    lcb->on_open = on_open;
    lcb->on_record = on_record;
    lcb->on_read_drained = on_read_drained;
    lcb->on_writable = on_writable;
    lcb->on_close = on_close;
    lcb->on_log = on_log;
    return DUET_OK;
}

duet_err_t duet_session_connect(uv_loop_t *loop, duet_store_t *st, const struct sockaddr *addr,
                                const duet_session_keys_t *keys,
                                const duet_link_options_t *opts,
                                const duet_session_callbacks_t *cb, duet_session_t **out)
{
    duet_session_t *s;
    duet_link_config_t cfg;
    duet_link_callbacks_t lcb;
    *out = NULL;
    duet_err_t err = make(loop, st, cb, keys, opts, &s, &cfg, &lcb);
    if (err != DUET_OK) {
        return err;
    }
    err = duet_link_connect(loop, addr, &cfg, &lcb, &s->link);
    if (err != DUET_OK) {
        uv_close((uv_handle_t *)&s->flusher, flusher_closed);
        return err;
    }
    *out = s;
    return DUET_OK;
}

duet_err_t duet_session_accept(uv_stream_t *server, duet_store_t *st,
                               const duet_session_keys_t *keys, const duet_link_options_t *opts,
                               const duet_session_callbacks_t *cb, duet_session_t **out)
{
    duet_session_t *s;
    duet_link_config_t cfg;
    duet_link_callbacks_t lcb;
    *out = NULL;
    duet_err_t err = make(server->loop, st, cb, keys, opts, &s, &cfg, &lcb);
    if (err != DUET_OK) {
        return err;
    }
    err = duet_link_accept(server, &cfg, &lcb, &s->link);
    if (err != DUET_OK) {
        uv_close((uv_handle_t *)&s->flusher, flusher_closed);
        return err;
    }
    *out = s;
    return DUET_OK;
}

void duet_session_kick(duet_session_t *s)
{
    if (s->eng == NULL || s->closing) {
        return;
    }
    duet_err_t err = duet_sync_kick(s->eng);
    if (err != DUET_OK) {
        fail(s, err);
        return;
    }
    s->was_done = false;
    pump(s);
}

void duet_session_close(duet_session_t *s, duet_err_t err)
{
    if (!s->closing) {
        s->closing = true;
        /* Drop the engine now: an open receive batch is rolled back at once, so another
         * session on the same store can start its own while this link winds down. */
        uv_check_stop(&s->flusher);
        s->flush_pending = false;
        if (s->eng != NULL) {
            s->sent_final = duet_sync_items_sent(s->eng);
            s->received_final = duet_sync_items_received(s->eng);
            duet_sync_free(s->eng);
            s->eng = NULL;
        }
        duet_link_close(s->link, err);
    }
}

uint64_t duet_session_items_sent(const duet_session_t *s)
{
    return s->eng ? duet_sync_items_sent(s->eng) : s->sent_final;
}

uint64_t duet_session_items_received(const duet_session_t *s)
{
    return s->eng ? duet_sync_items_received(s->eng) : s->received_final;
}

bool duet_session_is_open(const duet_session_t *s)
{
    return s->open && !s->closing;
}

const char *duet_session_peer(const duet_session_t *s)
{
    return duet_link_peer(s->link);
}

duet_err_t duet_session_peer_error(const duet_session_t *s, uint32_t *peer_version)
{
    *peer_version = 0;
    return s->eng ? duet_sync_peer_error(s->eng, peer_version) : DUET_OK;
}
