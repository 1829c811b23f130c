/* see relay_server.h */
#include "relay_server.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "crypto.h"
#include "link.h"
#include "relay_sqlite.h"

#define TICK_MS        1000u
#define LISTEN_BACKLOG 511
#define IP_FORGET_MS   60000u /* an IP entry without connections is kept this long */
#define LOG_RATE       20u    /* log lines per second, bursts of 5x */
#define CLOSE_MS       2000u

typedef struct ipent {
    struct ipent *next;
    char addr[DUET_ADDR_STRLEN];
    uint64_t count; /* connections open */
    uint64_t last_ms;
    duet_relay_bucket_t req, bytes, conns;
} ipent_t;

typedef struct rconn {
    duet_relay_server_t *s;
    duet_link_t *link;
    duet_relayd_conn_t *eng;
    ipent_t *ip;
    duet_relay_bucket_t req, bytes;
    uint64_t slow_since;
    uint64_t resume_at; /* paused for its rate until then (0: not paused) */
    bool refuse_busy;
    bool in_pump;
    bool closing;
    struct rconn *prev, *next; /* all connections */
    struct rconn *pump_next;
} rconn_t;

struct duet_relay_server {
    uv_loop_t *loop;
    uv_tcp_t tcp;
    uv_check_t check;
    uv_idle_t idle;
    uv_timer_t tick, resume;
    int handles;
    bool listening, stopping, accept_pending, idle_on;
    duet_relay_config_t cfg;
    duet_link_options_t lopt;
    duet_relay_sqlite_t *db;
    duet_relay_store_t st;
    duet_relayd_t *d;
    uint8_t *key; /* sodium_malloc'd private key */
    uint8_t pub[32];
    char url[DUET_RELAY_URL_MAX + 1];
    duet_rng_t rng;
    void (*on_log)(void *ctx, const char *line);
    void *ctx;
    rconn_t *conns;
    size_t nconns;
    rconn_t *pump;
    ipent_t **ipb;
    size_t nipb, nips;
    uint8_t ipkey[crypto_shorthash_KEYBYTES];
    uint8_t *out; /* the record being filled by pump (DUET_RELAY_RECORD_MAX) */
    duet_relay_bucket_t logb;
    uint64_t log_dropped;
    duet_relay_server_counters_t n;
};

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

__attribute__((format(printf, 2, 3))) static void slog(duet_relay_server_t *s, const char *fmt, ...)
{
    char line[DUET_RELAY_LOG_MAX];
    uint64_t wait;
    if (s->on_log == NULL) {
        return;
    }
    if (!duet_relay_bucket_take(&s->logb, LOG_RATE, 5u * LOG_RATE, 1, uv_now(s->loop), &wait)) {
        s->log_dropped++;
        return;
    }
    if (s->log_dropped > 0) {
        (void)snprintf(line, sizeof line, "%llu log lines left out (too many)",
                       (unsigned long long)s->log_dropped);
        s->log_dropped = 0;
        s->on_log(s->ctx, line);
    }
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    s->on_log(s->ctx, line);
}

/* ---- the key ----------------------------------------------------------------------------- */

static duet_err_t errno_err(int e)
{
    switch (e) {
    case ENOSPC:
    case EDQUOT:
        return DUET_ENOSPC;
    case EACCES:
    case EPERM:
        return DUET_EPERM;
    case EROFS:
        return DUET_EREADONLY;
    case ENOENT:
    case ENOTDIR:
        return DUET_ENOENT;
    case ENOMEM:
        return DUET_ENOMEM;
    default:
        return DUET_EIO;
    }
}

static duet_err_t make_dir(const char *dir)
{
    struct stat sb;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        return errno_err(errno);
    }
    if (stat(dir, &sb) != 0) {
        return errno_err(errno);
    }
    return S_ISDIR(sb.st_mode) ? DUET_OK : DUET_EIO;
}

static duet_err_t read_key(const char *path, uint8_t priv[static 32])
{
    struct stat sb;
    uint8_t buf[33];
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        return errno_err(errno);
    }
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return DUET_EIO;
    }
    if ((sb.st_mode & 077) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return DUET_EPERM; /* a private key others can read is not private */
    }
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    if (n != 32) {
        sodium_memzero(buf, sizeof buf);
        return n < 0 ? DUET_EIO : DUET_ECORRUPT;
    }
    memcpy(priv, buf, 32);
    sodium_memzero(buf, sizeof buf);
    return DUET_OK;
}

static duet_err_t write_key(const char *dir, const char *path, const uint8_t priv[static 32])
{
    char tmp[4096];
    duet_err_t err = DUET_OK;
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        return DUET_EINVAL;
    }
    (void)unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        return errno_err(errno);
    }
    if (write(fd, priv, 32) != 32 || fsync(fd) != 0) {
        err = errno_err(errno);
    }
    if (close(fd) != 0 && err == DUET_OK) {
        err = errno_err(errno);
    }
    if (err == DUET_OK && rename(tmp, path) != 0) {
        err = errno_err(errno);
    }
    if (err != DUET_OK) {
        (void)unlink(tmp);
        return err;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd); /* the rename itself is durable */
        close(dfd);
    }
    return DUET_OK;
}

duet_err_t duet_relay_server_key(const char *data_dir, uint8_t priv[static 32],
                                 uint8_t pub[static 32])
{
    char path[4096];
    memset(pub, 0, 32);
    duet_err_t err = make_dir(data_dir);
    if (err != DUET_OK) {
        return err;
    }
    if (snprintf(path, sizeof path, "%s/%s", data_dir, DUET_RELAY_KEY_FILE) >= (int)sizeof path) {
        return DUET_EINVAL;
    }
    err = read_key(path, priv);
    if (err == DUET_ENOENT) {
        randombytes_buf(priv, 32);
        err = write_key(data_dir, path, priv);
    }
    if (err != DUET_OK) {
        sodium_memzero(priv, 32);
        return err;
    }
    duet_crypto_x25519_public(pub, priv);
    return DUET_OK;
}

/* ---- per-IP accounting ------------------------------------------------------------------- */

static size_t ip_hash(const duet_relay_server_t *s, const char *addr)
{
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, (const uint8_t *)addr, strlen(addr), s->ipkey);
    uint64_t v = 0;
    for (size_t i = 0; i < sizeof h; i++) {
        v = v << 8 | h[i];
    }
    return (size_t)(v & (s->nipb - 1));
}

static bool ip_grow(duet_relay_server_t *s)
{
    size_t n = s->nipb ? s->nipb * 2 : 256;
    ipent_t **b = calloc(n, sizeof *b);
    if (b == NULL) {
        return false;
    }
    ipent_t **old = s->ipb;
    size_t oldn = s->nipb;
    s->ipb = b;
    s->nipb = n;
    for (size_t i = 0; i < oldn; i++) {
        for (ipent_t *e = old[i], *next; e != NULL; e = next) {
            next = e->next;
            size_t k = ip_hash(s, e->addr);
            e->next = b[k];
            b[k] = e;
        }
    }
    free(old);
    return true;
}

/* The entry of a peer "addr:port" (the port is cut off), made if absent; NULL when out of
 * memory. */
static ipent_t *ip_get(duet_relay_server_t *s, const char *peer, uint64_t now)
{
    char addr[DUET_ADDR_STRLEN];
    (void)snprintf(addr, sizeof addr, "%s", peer);
    char *colon = strrchr(addr, ':');
    if (colon != NULL && colon != addr) {
        *colon = 0;
    }
    if (s->nipb == 0 && !ip_grow(s)) {
        return NULL;
    }
    for (ipent_t *e = s->ipb[ip_hash(s, addr)]; e != NULL; e = e->next) {
        if (strcmp(e->addr, addr) == 0) {
            e->last_ms = now;
            return e;
        }
    }
    if (s->nips + 1 > 2 * s->nipb) {
        (void)ip_grow(s);
    }
    ipent_t *e = calloc(1, sizeof *e);
    if (e == NULL) {
        return NULL;
    }
    memcpy(e->addr, addr, sizeof e->addr);
    e->last_ms = now;
    duet_relay_bucket_init(&e->req, 2 * s->cfg.ip_rate_requests, now);
    duet_relay_bucket_init(&e->bytes, 2 * s->cfg.ip_rate_bytes, now);
    duet_relay_bucket_init(&e->conns, 2 * s->cfg.max_connections_per_ip, now);
    size_t k = ip_hash(s, addr);
    e->next = s->ipb[k];
    s->ipb[k] = e;
    s->nips++;
    return e;
}

/* Forget addresses that have had no connection for a while. */
static void ip_sweep(duet_relay_server_t *s, uint64_t now, bool all)
{
    for (size_t i = 0; i < s->nipb; i++) {
        ipent_t **p = &s->ipb[i];
        while (*p != NULL) {
            ipent_t *e = *p;
            if (all || (e->count == 0 && now - e->last_ms >= IP_FORGET_MS)) {
                *p = e->next;
                free(e);
                s->nips--;
            } else {
                p = &e->next;
            }
        }
    }
}

/* ---- connections ------------------------------------------------------------------------- */

static void want_flush(duet_relay_server_t *s);
static void pump(rconn_t *c);

static void pump_later(rconn_t *c)
{
    duet_relay_server_t *s = c->s;
    if (c->in_pump || c->closing) {
        return;
    }
    c->in_pump = true;
    c->pump_next = s->pump;
    s->pump = c;
}

static void on_wake(void *ctx, void *user)
{
    (void)ctx;
    pump_later(user);
}

static void conn_close(rconn_t *c, duet_err_t err)
{
    if (c->closing) {
        return;
    }
    c->closing = true;
    duet_link_close(c->link, err);
}

/* Send what the engine has released while the socket has room, as many frames to a record
 * as fit (one Noise message, one write); close once a fatal error has been said. */
static void pump(rconn_t *c)
{
    duet_relay_server_t *s = c->s;
    if (c->eng == NULL || c->closing) {
        return;
    }
    uint64_t now = wall_ms();
    while (duet_link_write_queue_size(c->link) <= s->lopt.high_water) {
        const uint8_t *frame;
        size_t len, used = 0;
        /* Frames fill a record up to one Noise message; a frame taken that would overflow
         * it goes in the next record. */
        while (duet_relayd_next_frame(c->eng, now, &frame, &len)) {
            if (used > 0 && used + DUET_RELAY_RECORD_HDR + len > DUET_RELAY_RECORD_FILL) {
                if (duet_link_send(c->link, s->out, used) != DUET_OK) {
                    return; /* the link is closing: on_close follows */
                }
                used = 0;
            }
            duet_relay_record_put_len(s->out + used, len);
            memcpy(s->out + used + DUET_RELAY_RECORD_HDR, frame, len);
            used += DUET_RELAY_RECORD_HDR + len;
            if (used >= DUET_RELAY_RECORD_FILL ||
                duet_link_write_queue_size(c->link) > s->lopt.high_water) {
                break;
            }
        }
        if (used == 0) {
            break;
        }
        /* (responses hold no secret: capabilities only travel towards the relay) */
        duet_err_t err = duet_link_send(c->link, s->out, used);
        if (err != DUET_OK) {
            return; /* the link is closing: on_close follows */
        }
    }
    duet_err_t fatal = duet_relayd_conn_error(c->eng);
    if (fatal != DUET_OK && !duet_relayd_has_output(c->eng)) {
        conn_close(c, fatal);
    }
}

static void schedule_resume(duet_relay_server_t *s);

static void on_open(duet_link_t *link, void *ctx)
{
    rconn_t *c = ctx;
    duet_relay_server_t *s = c->s;
    if (c->refuse_busy) {
        /* Tell the client why, then close: its user sees "busy", not a key mismatch. */
        duet_codec_enc_t enc;
        const uint8_t *f;
        size_t len;
        uint8_t rec[64];
        duet_codec_enc_init(&enc, sizeof rec - DUET_RELAY_RECORD_HDR);
        duet_relay_enc_error(&enc, 0, DUET_EBUSY, true);
        if (duet_codec_enc_finish(&enc, &f, &len) == DUET_OK) {
            duet_relay_record_put_len(rec, len);
            memcpy(rec + DUET_RELAY_RECORD_HDR, f, len);
            duet_err_t ignored = duet_link_send(link, rec, DUET_RELAY_RECORD_HDR + len);
            (void)ignored;
        }
        duet_codec_enc_dispose(&enc);
        conn_close(c, DUET_EBUSY);
        return;
    }
    c->eng = duet_relayd_conn_new(s->d, c);
    if (c->eng == NULL) {
        conn_close(c, DUET_ENOMEM);
    }
}

static void pause_for(rconn_t *c, uint64_t wait_ms)
{
    duet_relay_server_t *s = c->s;
    uint64_t at = uv_now(s->loop) + (wait_ms ? wait_ms : 1);
    if (c->resume_at == 0 || at > c->resume_at) {
        c->resume_at = at;
    }
    duet_link_pause_read(c->link);
    s->n.rate_limited++;
    schedule_resume(s);
}

static duet_err_t on_record(duet_link_t *link, void *ctx, const uint8_t *rec, size_t len)
{
    rconn_t *c = ctx;
    duet_relay_server_t *s = c->s;
    uint64_t mono = uv_now(s->loop), w1 = 0, w2 = 0, w3 = 0, w4 = 0;
    (void)link;
    if (c->eng == NULL || c->closing) {
        return DUET_OK; /* a refused connection: its records are dropped */
    }
    const duet_relay_config_t *cfg = &s->cfg;
    const uint8_t *frame;
    size_t pos = 0, flen, frames = 0;
    uint64_t now = wall_ms();
    duet_err_t err;
    /* The record is served either way (it has been read); over its rate, the client's next
     * records wait until its buckets have refilled. */
    while ((err = duet_relay_record_next(rec, len, &pos, &frame, &flen)) == DUET_OK) {
        frames++;
        if ((err = duet_relayd_recv(c->eng, frame, flen, now)) != DUET_OK) {
            break;
        }
    }
    want_flush(s);
    if (err == DUET_EPROTO && duet_relayd_conn_error(c->eng) == DUET_OK) {
        /* the record itself is malformed: the engine says so to the client */
        static const uint8_t junk[] = {0xc1};
        err = duet_relayd_recv(c->eng, junk, sizeof junk, now);
    }
    if (err != DUET_ENOENT) {
        duet_link_pause_read(c->link); /* nothing more from it: say why, then close */
        return DUET_OK;
    }
    bool ok = duet_relay_bucket_take(&c->req, cfg->rate_requests, 2 * cfg->rate_requests, frames,
                                     mono, &w1);
    ok &= duet_relay_bucket_take(&c->bytes, cfg->rate_bytes, 2 * cfg->rate_bytes, len, mono, &w2);
    ok &= duet_relay_bucket_take(&c->ip->req, cfg->ip_rate_requests, 2 * cfg->ip_rate_requests,
                                 frames, mono, &w3);
    ok &= duet_relay_bucket_take(&c->ip->bytes, cfg->ip_rate_bytes, 2 * cfg->ip_rate_bytes, len,
                                 mono, &w4);
    if (!ok) {
        uint64_t w = w1 > w2 ? w1 : w2;
        w = w > w3 ? w : w3;
        pause_for(c, w > w4 ? w : w4);
    }
    return DUET_OK;
}

static void on_writable(duet_link_t *link, void *ctx)
{
    rconn_t *c = ctx;
    (void)link;
    c->slow_since = 0;
    pump(c);
}

static void accept_one(duet_relay_server_t *s);

static void on_link_close(duet_link_t *link, void *ctx, duet_err_t err)
{
    rconn_t *c = ctx;
    duet_relay_server_t *s = c->s;
    (void)link;
    (void)err;
    if (c->eng != NULL) {
        duet_relayd_conn_free(c->eng); /* may tell a pairing partner: flush soon */
        want_flush(s);
    }
    if (c->ip != NULL) {
        c->ip->count--;
        c->ip->last_ms = uv_now(s->loop);
    }
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        s->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    if (c->in_pump) {
        rconn_t **p = &s->pump;
        while (*p != NULL && *p != c) {
            p = &(*p)->pump_next;
        }
        if (*p == c) {
            *p = c->pump_next;
        }
    }
    s->nconns--;
    free(c);
    if (s->accept_pending && !s->stopping && s->nconns < s->cfg.max_connections) {
        s->accept_pending = false;
        accept_one(s);
    }
}

static void on_link_log(duet_link_t *link, void *ctx, const char *line)
{
    rconn_t *c = ctx;
    (void)link;
    slog(c->s, "%s", line);
}

static void accept_one(duet_relay_server_t *s)
{
    duet_link_config_t cfg;
    duet_link_callbacks_t cb;
    duet_link_t *link;
    rconn_t *c = calloc(1, sizeof *c);
    if (c == NULL) {
        s->accept_pending = true; /* try again when a connection closes */
        return;
    }
    memset(&cfg, 0, sizeof cfg);
    cfg.mode = DUET_LINK_NK;
    cfg.local_static = s->key;
    cfg.rng = s->rng;
    cfg.options = &s->lopt;
    memset(&cb, 0, sizeof cb);
    cb.ctx = c;
    cb.on_open = on_open;
    cb.on_record = on_record;
    cb.on_writable = on_writable;
    cb.on_close = on_link_close;
    cb.on_log = on_link_log;
    duet_err_t err = duet_link_accept((uv_stream_t *)&s->tcp, &cfg, &cb, &link);
    if (err != DUET_OK) {
        free(c);
        if (err == DUET_ENOMEM) {
            s->accept_pending = true;
        }
        return;
    }
    uint64_t mono = uv_now(s->loop), wait;
    c->s = s;
    c->link = link;
    c->next = s->conns;
    if (s->conns != NULL) {
        s->conns->prev = c;
    }
    s->conns = c;
    s->nconns++;
    s->n.accepted++;
    duet_relay_bucket_init(&c->req, 2 * s->cfg.rate_requests, mono);
    duet_relay_bucket_init(&c->bytes, 2 * s->cfg.rate_bytes, mono);
    c->ip = ip_get(s, duet_link_peer(link), mono);
    if (c->ip == NULL) {
        conn_close(c, DUET_ENOMEM);
        return;
    }
    c->ip->count++;
    if (!duet_relay_bucket_take(&c->ip->conns, s->cfg.max_connections_per_ip,
                                2 * s->cfg.max_connections_per_ip, 1, mono, &wait)) {
        s->n.refused_rate++;
        conn_close(c, DUET_ERATELIMIT); /* a flood: no handshake, no DH spent on it */
        return;
    }
    if (c->ip->count > s->cfg.max_connections_per_ip) {
        s->n.refused_busy++;
        c->refuse_busy = true;
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    duet_relay_server_t *s = server->data;
    if (status < 0) {
        slog(s, "accept failed: %s", uv_strerror(status));
        return;
    }
    if (s->stopping) {
        return;
    }
    if (s->nconns >= s->cfg.max_connections) {
        /* Not accepting makes libuv stop watching the listener: the connection waits in
         * the kernel's backlog until one of ours closes. */
        s->accept_pending = true;
        return;
    }
    accept_one(s);
}

/* ---- the loop's phases ------------------------------------------------------------------- */

static void on_idle(uv_idle_t *h)
{
    (void)h; /* exists only to keep the loop from blocking before the check phase */
}

static void want_flush(duet_relay_server_t *s)
{
    if (!s->idle_on && s->handles > 0) {
        s->idle_on = true;
        (void)uv_idle_start(&s->idle, on_idle);
    }
}

/* After each poll: commit the batch, then send what it released. */
static void on_check(uv_check_t *h)
{
    duet_relay_server_t *s = h->data;
    if (s->idle_on) {
        s->idle_on = false;
        (void)uv_idle_stop(&s->idle);
    }
    duet_err_t err = duet_relayd_flush(s->d, wall_ms());
    if (err != DUET_OK) {
        slog(s, "storing failed: %s (the clients were told)", duet_strerror(err));
    }
    while (s->pump != NULL) {
        rconn_t *c = s->pump;
        s->pump = c->pump_next;
        c->in_pump = false;
        pump(c);
    }
}

static void on_resume(uv_timer_t *t)
{
    duet_relay_server_t *s = t->data;
    uint64_t now = uv_now(s->loop);
    for (rconn_t *c = s->conns; c != NULL; c = c->next) {
        if (c->resume_at != 0 && c->resume_at <= now && !c->closing) {
            c->resume_at = 0;
            duet_link_resume_read(c->link);
        }
    }
    schedule_resume(s);
}

static void schedule_resume(duet_relay_server_t *s)
{
    uint64_t next = 0, now = uv_now(s->loop);
    for (rconn_t *c = s->conns; c != NULL; c = c->next) {
        if (c->resume_at != 0 && (next == 0 || c->resume_at < next)) {
            next = c->resume_at;
        }
    }
    if (next == 0) {
        (void)uv_timer_stop(&s->resume);
        return;
    }
    (void)uv_timer_start(&s->resume, on_resume, next > now ? next - now : 1, 0);
}

static void on_tick(uv_timer_t *t)
{
    duet_relay_server_t *s = t->data;
    uint64_t mono = uv_now(s->loop);
    duet_err_t err = duet_relayd_tick(s->d, wall_ms());
    if (err != DUET_OK) {
        slog(s, "removing expired objects failed: %s", duet_strerror(err));
    }
    /* Slow readers: a write queue that will not drain. */
    size_t mark = s->cfg.slow_reader_bytes / 4;
    for (rconn_t *c = s->conns, *next; c != NULL; c = next) {
        next = c->next;
        if (c->closing || duet_link_write_queue_size(c->link) <= mark) {
            c->slow_since = 0;
            continue;
        }
        if (c->slow_since == 0) {
            c->slow_since = mono;
        } else if (mono - c->slow_since >= s->cfg.slow_reader_ms) {
            s->n.dropped_slow++;
            slog(s, "%s: dropped: it does not read what it asked for", duet_link_peer(c->link));
            c->closing = true;
            duet_link_close(c->link, DUET_ETIMEDOUT);
        }
    }
    ip_sweep(s, mono, false);
    want_flush(s); /* the tick may have queued PCLOSED frames */
}

/* ---- start and stop ---------------------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h)
{
    duet_relay_server_t *s = h->data;
    s->handles--;
}

/* The host part of "HOST:PORT", without brackets. */
static void listen_host(const char *listen, char *out, size_t cap)
{
    const char *colon = strrchr(listen, ':');
    size_t n = colon != NULL ? (size_t)(colon - listen) : strlen(listen);
    if (n >= 2 && listen[0] == '[' && listen[n - 1] == ']') {
        listen++;
        n -= 2;
    }
    const char *pct = memchr(listen, '%', n); /* an IPv6 zone is local to this machine */
    if (pct != NULL) {
        n = (size_t)(pct - listen);
    }
    (void)snprintf(out, cap, "%.*s", (int)n, listen);
}

static duet_err_t start_listen(duet_relay_server_t *s, const duet_relay_server_opts_t *o)
{
    struct sockaddr_storage ss;
    char host[DUET_RELAY_HOST_MAX + 1];
    duet_err_t err = duet_addr_parse(o->listen, &ss);
    if (err != DUET_OK) {
        return err;
    }
    int r = uv_tcp_init(s->loop, &s->tcp);
    if (r != 0) {
        return DUET_ENET;
    }
    s->tcp.data = s;
    s->handles++;
    s->listening = true;
    r = uv_tcp_bind(&s->tcp, (const struct sockaddr *)&ss, 0);
    if (r == 0) {
        r = uv_listen((uv_stream_t *)&s->tcp, LISTEN_BACKLOG, on_connection);
    }
    if (r != 0) {
        return r == UV_EADDRINUSE      ? DUET_EADDRINUSE
               : r == UV_EADDRNOTAVAIL ? DUET_EADDR
                                       : DUET_ENET;
    }
    struct sockaddr_storage bound;
    int blen = (int)sizeof bound;
    if (uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&bound, &blen) != 0) {
        return DUET_ENET;
    }
    uint16_t port = bound.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                                                : ntohs(((struct sockaddr_in *)&bound)->sin_port);
    if (o->url_host != NULL) {
        (void)snprintf(host, sizeof host, "%s", o->url_host);
    } else {
        listen_host(o->listen, host, sizeof host);
    }
    return duet_relay_url_format(s->url, sizeof s->url, host, port, s->pub);
}

static void close_handles(duet_relay_server_t *s)
{
    if (s->listening) {
        s->listening = false;
        uv_close((uv_handle_t *)&s->tcp, on_handle_closed);
    }
    if (!uv_is_closing((uv_handle_t *)&s->check)) {
        uv_close((uv_handle_t *)&s->check, on_handle_closed);
        uv_close((uv_handle_t *)&s->idle, on_handle_closed);
        uv_close((uv_handle_t *)&s->tick, on_handle_closed);
        uv_close((uv_handle_t *)&s->resume, on_handle_closed);
    }
}

duet_err_t duet_relay_server_start(uv_loop_t *loop, const duet_relay_server_opts_t *o,
                                   duet_relay_server_t **out, const char **what)
{
    char path[4096];
    duet_err_t err;
    *out = NULL;
    *what = "data folder";
    duet_relay_server_t *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return DUET_ENOMEM;
    }
    s->loop = loop;
    s->cfg = o->cfg;
    s->rng = o->rng;
    s->on_log = o->on_log;
    s->ctx = o->ctx;
    duet_rng_fill(&s->rng, s->ipkey, sizeof s->ipkey);
    duet_relay_bucket_init(&s->logb, 5u * LOG_RATE, uv_now(loop));
    duet_link_options_default(&s->lopt);
    s->lopt.heap_secrets = true; /* thousands of links: see net/link.h */
    s->lopt.handshake_ms = s->cfg.handshake_timeout_ms;
    s->lopt.idle_ms = s->cfg.idle_timeout_s * 1000u;
    s->lopt.close_ms = CLOSE_MS;
    s->lopt.high_water = s->cfg.slow_reader_bytes;
    s->lopt.low_water = s->cfg.slow_reader_bytes / 4;
    s->key = sodium_malloc(32);
    s->out = malloc(DUET_RELAY_RECORD_MAX);
    if (s->key == NULL || s->out == NULL) {
        sodium_free(s->key);
        free(s->out);
        free(s);
        return DUET_ENOMEM;
    }
    /* The handles exist from here, so that every failure below can be closed the same way. */
    uv_check_init(loop, &s->check);
    uv_idle_init(loop, &s->idle);
    uv_timer_init(loop, &s->tick);
    uv_timer_init(loop, &s->resume);
    s->check.data = s->idle.data = s->tick.data = s->resume.data = s;
    s->handles = 4;

    err = make_dir(o->data_dir);
    if (err == DUET_OK) {
        *what = "key file";
        err = duet_relay_server_key(o->data_dir, s->key, s->pub);
    }
    if (err == DUET_OK) {
        *what = "database";
        if (snprintf(path, sizeof path, "%s/%s", o->data_dir, DUET_RELAY_DB_FILE) >=
            (int)sizeof path) {
            err = DUET_EINVAL;
        } else {
            err = duet_relay_sqlite_open(path, &s->db);
        }
    }
    if (err == DUET_OK) {
        s->st = duet_relay_sqlite_store(s->db);
        s->d = duet_relayd_new(&s->st, &s->cfg, s->rng, on_wake, s);
        err = s->d == NULL ? DUET_ENOMEM : DUET_OK;
    }
    if (err == DUET_OK) {
        *what = "listen address";
        err = start_listen(s, o);
    }
    if (err != DUET_OK) {
        s->stopping = true;
        close_handles(s);
        while (s->handles > 0) {
            uv_run(loop, UV_RUN_NOWAIT); /* only our handles' close callbacks are due */
        }
        duet_relay_server_free(s);
        return err;
    }
    uv_check_start(&s->check, on_check);
    uv_timer_start(&s->tick, on_tick, TICK_MS, TICK_MS);
    *what = NULL;
    *out = s;
    return DUET_OK;
}

const char *duet_relay_server_url(const duet_relay_server_t *s)
{
    return s->url;
}

void duet_relay_server_stop(duet_relay_server_t *s)
{
    if (s->stopping) {
        return;
    }
    s->stopping = true;
    duet_err_t err = duet_relayd_flush(s->d, wall_ms()); /* nothing stored is left unsaid */
    if (err != DUET_OK) {
        slog(s, "storing failed: %s", duet_strerror(err));
    }
    while (s->pump != NULL) {
        rconn_t *c = s->pump;
        s->pump = c->pump_next;
        c->in_pump = false;
        pump(c);
    }
    for (rconn_t *c = s->conns; c != NULL; c = c->next) {
        conn_close(c, DUET_OK);
    }
    close_handles(s);
}

void duet_relay_server_free(duet_relay_server_t *s)
{
    if (s == NULL) {
        return;
    }
    duet_relayd_free(s->d);
    duet_relay_sqlite_close(s->db);
    sodium_free(s->key);
    free(s->out);
    ip_sweep(s, 0, true);
    free(s->ipb);
    sodium_memzero(s->ipkey, sizeof s->ipkey);
    free(s);
}

duet_relay_server_counters_t duet_relay_server_counters(const duet_relay_server_t *s)
{
    duet_relay_server_counters_t n = s->n;
    n.engine = duet_relayd_counters(s->d);
    return n;
}
