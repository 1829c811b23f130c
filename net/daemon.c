/* see daemon.h */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <sodium.h>

#include "control.h"
#include "identity.h"
#include "items.h"
#include "link.h"
#include "outbox.h"
#include "partner.h"
#include "session.h"

#define PENDING_MAX 8

typedef struct daemon_slot {
    duet_session_t *s;
    bool outgoing;
    bool open;
} slot_t;

struct duet_daemon {
    uv_loop_t *loop;
    duet_store_t *st;
    duet_daemon_opts_t o;
    duet_session_keys_t keys;
    bool we_are_smaller; /* our X25519 key sorts first: our connections win ties */
    uv_tcp_t server;
    bool server_live;
    slot_t active;
    slot_t pending[PENDING_MAX];
    uv_timer_t reconnect;
    uint64_t backoff_ms;
    bool connecting;
    duet_control_t *ctl;
    uv_signal_t sigint, sigterm;
    bool stopping;
    duet_err_t start_err;
};

/* ---- events --------------------------------------------------------------------------- */

static void emit(duet_daemon_t *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void emit(duet_daemon_t *d, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof buf) {
        return;
    }
    if (d->o.on_event != NULL) {
        d->o.on_event(d->o.ctx, buf, (size_t)n);
    }
    if (d->ctl != NULL) {
        duet_control_broadcast(d->ctl, buf, (size_t)n);
    }
}

static void logf_(duet_daemon_t *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void logf_(duet_daemon_t *d, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (d->o.on_log != NULL) {
        d->o.on_log(d->o.ctx, buf);
    }
}

/* Reasons are fixed strings from the error table; they need no JSON escaping beyond what
 * the table guarantees (no quotes or backslashes). */
static const char *reason(duet_err_t err)
{
    return err == DUET_OK ? "closed" : duet_strerror(err);
}

/* ---- sessions ------------------------------------------------------------------------- */

static void schedule_reconnect(duet_daemon_t *d, bool soon);

static slot_t *slot_of(duet_daemon_t *d, duet_session_t *s)
{
    if (d->active.s == s) {
        return &d->active;
    }
    for (size_t i = 0; i < PENDING_MAX; i++) {
        if (d->pending[i].s == s) {
            return &d->pending[i];
        }
    }
    return NULL;
}

static void s_open(duet_session_t *s, void *ctx)
{
    duet_daemon_t *d = ctx;
    slot_t *sl = slot_of(d, s);
    if (sl == NULL || sl == &d->active) {
        return;
    }
    /* A pending connection proved to be the partner. Keep one session: the new one, unless
     * the active one is open and was made by the side whose key sorts first while the new
     * one was not (both daemons apply the same rule, so they keep the same connection). */
    if (d->active.s != NULL && d->active.open) {
        bool active_wins = d->active.outgoing == d->we_are_smaller &&
                           sl->outgoing != d->we_are_smaller;
        if (active_wins) {
            duet_session_close(s, DUET_OK);
            sl->open = true;
            return;
        }
        duet_session_close(d->active.s, DUET_OK);
    }
    slot_t promoted = *sl;
    memset(sl, 0, sizeof *sl);
    if (d->active.s != NULL) {
        /* The old one is closing: park it in the freed pending slot until on_close. */
        *sl = d->active;
    }
    d->active = promoted;
    d->active.open = true;
    d->backoff_ms = 0;
    emit(d, "{\"event\":\"connected\",\"peer\":\"%s\",\"direction\":\"%s\"}",
         duet_session_peer(s), promoted.outgoing ? "out" : "in");
    emit(d, "{\"event\":\"partner_online\"}");
}

static void s_event(duet_session_t *s, void *ctx, duet_outbox_event_t ev,
                    const uint8_t id[DUET_ITEM_ID_BYTES], uint32_t kind)
{
    duet_daemon_t *d = ctx;
    char hex[33];
    (void)s;
    duet_item_id_hex(id, hex);
    switch (ev) {
    case DUET_EV_RECEIVED:
        emit(d, "{\"event\":\"received\",\"id\":\"%s\",\"kind\":\"%s\"}", hex,
             duet_kind_name(kind));
        break;
    case DUET_EV_DELIVERED:
        emit(d, "{\"event\":\"delivered\",\"id\":\"%s\"}", hex);
        break;
    case DUET_EV_READ:
        emit(d, "{\"event\":\"read\",\"id\":\"%s\"}", hex);
        break;
    case DUET_EV_CONTROL:
        emit(d, "{\"event\":\"control\",\"id\":\"%s\",\"kind\":\"%s\"}", hex,
             duet_kind_name(kind));
        break;
    }
}

static void s_done(duet_session_t *s, void *ctx)
{
    duet_daemon_t *d = ctx;
    emit(d, "{\"event\":\"synced\",\"sent\":%llu,\"received\":%llu}",
         (unsigned long long)duet_session_items_sent(s),
         (unsigned long long)duet_session_items_received(s));
    if (duet_store_begin(d->st) == DUET_OK) {
        if (duet_partner_set_last_sync(d->st, duet_wallclock_ms(NULL)) == DUET_OK &&
            duet_store_commit(d->st) == DUET_OK) {
            return;
        }
        duet_store_rollback(d->st);
    }
}

static void s_close(duet_session_t *s, void *ctx, duet_err_t err)
{
    duet_daemon_t *d = ctx;
    slot_t *sl = slot_of(d, s);
    bool was_active = sl == &d->active;
    bool was_open = sl != NULL && sl->open;
    bool outgoing = sl != NULL && sl->outgoing;
    if (sl != NULL) {
        memset(sl, 0, sizeof *sl);
    }
    if (outgoing && !was_open) {
        d->connecting = false;
    }
    if (was_active) {
        emit(d, "{\"event\":\"disconnected\",\"reason\":\"%s\"}", reason(err));
        emit(d, "{\"event\":\"partner_offline\"}");
    }
    if (!d->stopping && d->active.s == NULL) {
        schedule_reconnect(d, was_open);
    }
}

static void s_log(duet_session_t *s, void *ctx, const char *line)
{
    duet_daemon_t *d = ctx;
    (void)s;
    logf_(d, "%s", line);
}

static duet_session_callbacks_t make_cb(duet_daemon_t *d)
{
    duet_session_callbacks_t cb = {d, s_open, s_event, s_done, s_close, s_log};
    return cb;
}

static slot_t *free_slot(duet_daemon_t *d)
{
    for (size_t i = 0; i < PENDING_MAX; i++) {
        if (d->pending[i].s == NULL) {
            return &d->pending[i];
        }
    }
    return NULL;
}

static void on_connection(uv_stream_t *server, int status)
{
    duet_daemon_t *d = server->data;
    duet_session_t *s;
    if (status < 0 || d->stopping) {
        return;
    }
    slot_t *sl = free_slot(d);
    duet_session_callbacks_t cb = make_cb(d);
    if (duet_session_accept(server, d->st, &d->keys, NULL, &cb, &s) != DUET_OK) {
        return;
    }
    if (sl == NULL) {
        duet_session_close(s, DUET_EBUSY); /* too many handshakes at once */
        return;
    }
    sl->s = s;
    sl->outgoing = false;
}

/* ---- reconnecting --------------------------------------------------------------------- */

static void try_connect(duet_daemon_t *d)
{
    duet_partner_t p;
    struct sockaddr_storage ss;
    if (d->stopping || d->connecting || d->active.s != NULL) {
        return;
    }
    if (duet_partner_load(d->st, &p) != DUET_OK || p.addr[0] == 0 ||
        duet_addr_parse(p.addr, &ss) != DUET_OK) {
        return; /* no address known: wait for the partner to come to us */
    }
    slot_t *sl = free_slot(d);
    if (sl == NULL) {
        schedule_reconnect(d, false);
        return;
    }
    duet_session_t *s;
    duet_session_callbacks_t cb = make_cb(d);
    if (duet_session_connect(d->loop, d->st, (struct sockaddr *)&ss, &d->keys, NULL, &cb, &s) !=
        DUET_OK) {
        schedule_reconnect(d, false);
        return;
    }
    sl->s = s;
    sl->outgoing = true;
    d->connecting = true;
}

static void on_reconnect(uv_timer_t *t)
{
    try_connect(t->data);
}

static void schedule_reconnect(duet_daemon_t *d, bool soon)
{
    if (d->stopping) {
        return;
    }
    if (soon || d->backoff_ms == 0) {
        d->backoff_ms = DUET_DAEMON_BACKOFF_MIN_MS;
    } else {
        d->backoff_ms *= 2;
        if (d->backoff_ms > DUET_DAEMON_BACKOFF_MAX_MS) {
            d->backoff_ms = DUET_DAEMON_BACKOFF_MAX_MS;
        }
    }
    /* Jitter: a uniform delay in [backoff/2, backoff], so two daemons that lost each other
     * at the same moment do not retry in lockstep. */
    uint64_t wait = d->backoff_ms / 2 + randombytes_uniform((uint32_t)(d->backoff_ms / 2 + 1));
    uv_timer_start(&d->reconnect, on_reconnect, wait, 0);
}

/* ---- control -------------------------------------------------------------------------- */

static void on_kick(void *ctx)
{
    duet_daemon_t *d = ctx;
    if (d->active.s != NULL) {
        duet_session_kick(d->active.s);
    } else if (!d->connecting) {
        uv_timer_stop(&d->reconnect);
        d->backoff_ms = 0;
        try_connect(d);
    }
}

/* ---- start and stop ------------------------------------------------------------------- */

static void stop(duet_daemon_t *d)
{
    if (d->stopping) {
        return;
    }
    d->stopping = true;
    uv_timer_stop(&d->reconnect);
    uv_close((uv_handle_t *)&d->reconnect, NULL);
    uv_close((uv_handle_t *)&d->sigint, NULL);
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    if (d->server_live) {
        uv_close((uv_handle_t *)&d->server, NULL);
    }
    if (d->active.s != NULL) {
        duet_session_close(d->active.s, DUET_OK);
    }
    for (size_t i = 0; i < PENDING_MAX; i++) {
        if (d->pending[i].s != NULL) {
            duet_session_close(d->pending[i].s, DUET_OK);
        }
    }
    if (d->ctl != NULL) {
        duet_control_close(d->ctl);
        d->ctl = NULL;
    }
}

static void on_signal(uv_signal_t *h, int signum)
{
    duet_daemon_t *d = h->data;
    emit(d, "{\"event\":\"stopping\",\"signal\":%d}", signum);
    stop(d);
}

duet_err_t duet_daemon_lock(const char *home, int *fd, long *pid)
{
    char path[4200];
    *fd = -1;
    *pid = 0;
    int n = snprintf(path, sizeof path, "%s/daemon.lock", home);
    if (n < 0 || (size_t)n >= sizeof path) {
        return DUET_ETOOBIG;
    }
    int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (f < 0) {
        return errno == EROFS ? DUET_EREADONLY : DUET_EIO;
    }
    if (flock(f, LOCK_EX | LOCK_NB) != 0) {
        char buf[32] = {0};
        ssize_t r = pread(f, buf, sizeof buf - 1, 0);
        if (r > 0) {
            *pid = strtol(buf, NULL, 10);
        }
        close(f);
        return DUET_EDAEMON;
    }
    char buf[32];
    int len = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    if (ftruncate(f, 0) != 0 || pwrite(f, buf, (size_t)len, 0) != len) {
        close(f);
        return DUET_EIO;
    }
    *fd = f;
    return DUET_OK;
}

static duet_err_t load_keys(duet_store_t *st, duet_session_keys_t *k, bool *smaller)
{
    duet_identity_t id;
    duet_partner_t p;
    uint8_t pub[32];
    duet_err_t err = duet_identity_load(st, &id);
    if (err != DUET_OK) {
        return err;
    }
    err = duet_partner_load(st, &p);
    if (err == DUET_OK) {
        err = duet_identity_x25519(&id, k->local_static, pub);
    }
    if (err == DUET_OK) {
        err = duet_identity_pk_to_x25519(p.identity_pk, k->remote_static);
    }
    if (err == DUET_OK) {
        *smaller = memcmp(pub, k->remote_static, 32) < 0;
    }
    duet_identity_dispose(&id);
    return err;
}

duet_err_t duet_daemon_run(uv_loop_t *loop, duet_store_t *st, const duet_daemon_opts_t *opts)
{
    duet_daemon_t *d = calloc(1, sizeof *d);
    duet_err_t err;
    if (d == NULL) {
        return DUET_ENOMEM;
    }
    d->loop = loop;
    d->st = st;
    d->o = *opts;
    if ((err = load_keys(st, &d->keys, &d->we_are_smaller)) != DUET_OK) {
        sodium_memzero(d, sizeof *d);
        free(d);
        return err;
    }
    /* Items written before pairing or while no daemon ran are sealed now. */
    if ((err = duet_store_begin(st)) == DUET_OK) {
        err = duet_outbox_seal_pending(st);
        err = err == DUET_OK ? duet_store_commit(st) : err;
        if (err != DUET_OK) {
            duet_store_rollback(st);
        }
    }
    if (err != DUET_OK) {
        sodium_memzero(d, sizeof *d);
        free(d);
        return err;
    }

    uv_timer_init(loop, &d->reconnect);
    d->reconnect.data = d;
    uv_signal_init(loop, &d->sigint);
    uv_signal_init(loop, &d->sigterm);
    d->sigint.data = d->sigterm.data = d;
    uv_signal_start(&d->sigint, on_signal, SIGINT);
    uv_signal_start(&d->sigterm, on_signal, SIGTERM);

    const char *listen = opts->listen;
    if (listen == NULL && opts->lan) {
        listen = "[::]:0"; /* every interface, an ephemeral port, announced by beacons */
    }
    char addr[DUET_ADDR_STRLEN] = "";
    if (listen != NULL) {
        struct sockaddr_storage ss;
        if ((err = duet_addr_parse(listen, &ss)) != DUET_OK) {
            goto fail;
        }
        uv_tcp_init(loop, &d->server);
        d->server.data = d;
        d->server_live = true;
        int rc = uv_tcp_bind(&d->server, (struct sockaddr *)&ss, 0);
        if (rc == 0) {
            rc = uv_listen((uv_stream_t *)&d->server, 64, on_connection);
        }
        if (rc != 0) {
            err = rc == UV_EADDRINUSE ? DUET_EADDRINUSE : DUET_ENET;
            goto fail;
        }
        struct sockaddr_storage bound;
        int blen = sizeof bound;
        uv_tcp_getsockname(&d->server, (struct sockaddr *)&bound, &blen);
        duet_addr_format((struct sockaddr *)&bound, addr, sizeof addr);
    }
    duet_control_callbacks_t ccb = {d, on_kick};
    if (duet_control_listen(loop, duet_store_home(st), &ccb, &d->ctl) != DUET_OK) {
        logf_(d, "control socket unavailable (home path too long?): notes reach the partner "
                 "at the next sync");
    }
    if (addr[0]) {
        emit(d, "{\"event\":\"listening\",\"addr\":\"%s\"}", addr);
    } else {
        emit(d, "{\"event\":\"listening\",\"addr\":null}");
    }
    try_connect(d);
    uv_run(loop, UV_RUN_DEFAULT);
    emit(d, "{\"event\":\"stopped\"}");
    sodium_memzero(&d->keys, sizeof d->keys);
    free(d);
    return DUET_OK;
fail:
    stop(d);
    uv_run(loop, UV_RUN_DEFAULT);
    sodium_memzero(&d->keys, sizeof d->keys);
    free(d);
    return err;
}
