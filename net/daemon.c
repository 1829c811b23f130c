/* see daemon.h */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "checkin.h"
#include "control.h"
#include "discovery.h"
#include "identity.h"
#include "items.h"
#include "link.h"
#include "outbox.h"
#include "partner.h"
#include "relay_client.h"
#include "voiceway.h"
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
    duet_link_options_t link_opts;
    bool we_are_smaller; /* our X25519 key sorts first: our connections win ties */
    uv_tcp_t server;
    bool server_live;
    slot_t active;
    slot_t pending[PENDING_MAX];
    uv_timer_t reconnect;
    uint64_t backoff_ms;
    bool connecting;
    duet_control_t *ctl;
    duet_lan_t *lan;
    duet_relay_client_t *relay;  /* --relay: a standing subscription */
    duet_outbox_host_t rhost;
    bool rhost_live;
    char relay_url[512];
    duet_voiceway_t *voice;      /* a voice-blob session at the relay, when one runs */
    bool voice_again;            /* more blob work appeared while it ran */
    uv_timer_t voice_retry;      /* a blob was not at the relay yet, or the session failed */
    uint64_t voice_backoff_ms;
    uv_timer_t due;              /* the next check-in instance falling due */
    uv_prepare_t tick;           /* flushes the owner's buffered events each iteration */
    uv_check_t ckpt_check;       /* after each iteration's I/O: is a checkpoint due? */
    uv_timer_t ckpt;             /* runs it at the start of the next iteration */
    uv_timer_t quiet;            /* DUET_DAEMON_QUIET_MS after the last sync: give memory back */
    uint64_t due_after_ms;       /* reminder cursor: (time, instance) already announced */
    uint8_t due_after_inst[DUET_CHECKIN_ID_BYTES];
    bool due_has_inst;
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

/* Copy s into out as the inside of a JSON string (quotes, backslashes and control characters
 * escaped; the rest of the UTF-8 as is). Truncates to fit. */
static void json_escape(const char *s, char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (; *s != 0 && o + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            out[o++] = '\\', out[o++] = 'u', out[o++] = '0', out[o++] = '0';
            out[o++] = hex[c >> 4], out[o++] = hex[c & 15];
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = 0;
}

/* ---- check-in reminders --------------------------------------------------------------- */

#define DUE_MAX_WAIT_MS (3600u * 1000u) /* look again at least hourly (clock and TZ changes) */

static void schedule_due(duet_daemon_t *d);

static void on_due(uv_timer_t *t)
{
    schedule_due(t->data);
}

/* Announce every instance that has fallen due since the cursor, then sleep until the next. */
static void schedule_due(duet_daemon_t *d)
{
    if (d->stopping) {
        return;
    }
    uint64_t now = duet_wallclock_ms(NULL);
    for (int k = 0; k < 64; k++) {
        uint64_t when;
        uint8_t inst[DUET_CHECKIN_ID_BYTES], ritual[DUET_CHECKIN_ID_BYTES];
        duet_err_t err = duet_checkin_next_due(d->st, d->due_after_ms,
                                               d->due_has_inst ? d->due_after_inst : NULL, &when,
                                               inst, ritual);
        if (err != DUET_OK) {
            uv_timer_start(&d->due, on_due, DUE_MAX_WAIT_MS, 0);
            return;
        }
        if (when > now) {
            uint64_t wait = when - now;
            uv_timer_start(&d->due, on_due, wait < DUE_MAX_WAIT_MS ? wait + 1 : DUE_MAX_WAIT_MS, 0);
            return;
        }
        char ih[2 * DUET_CHECKIN_ID_BYTES + 1], rh[2 * DUET_CHECKIN_ID_BYTES + 1];
        sodium_bin2hex(ih, sizeof ih, inst, sizeof inst);
        sodium_bin2hex(rh, sizeof rh, ritual, sizeof ritual);
        emit(d, "{\"event\":\"due\",\"instance\":\"%s\",\"ritual\":\"%s\"}", ih, rh);
        d->due_after_ms = when;
        memcpy(d->due_after_inst, inst, sizeof inst);
        d->due_has_inst = true;
    }
    uv_timer_start(&d->due, on_due, 1, 0);
}

/* A pause or resume from the partner is shown prominently: its own event, with its words. */
static void announce_pause(duet_daemon_t *d, const uint8_t id[DUET_ITEM_ID_BYTES], uint32_t kind)
{
    duet_item_t it;
    duet_checkin_pause_t p;
    char note[3 * DUET_CHECKIN_NOTE_MAX + 8], until[DUET_CHECKIN_DATE_LEN + 3] = "null";
    if (duet_items_get(d->st, id, &it) != DUET_OK) {
        return;
    }
    if (duet_checkin_pause_decode(it.body, it.body_len, &p) == DUET_OK) {
        json_escape(p.note, note, sizeof note);
        if (kind == DUET_KIND_PAUSE && p.has_until) {
            char day[DUET_CHECKIN_DATE_LEN + 1];
            duet_checkin_day_format(p.until_day, day);
            snprintf(until, sizeof until, "\"%s\"", day);
        }
        if (kind == DUET_KIND_PAUSE) {
            emit(d, "{\"event\":\"pause\",\"until\":%s,\"note\":\"%s\"}", until, note);
        } else {
            emit(d, "{\"event\":\"resume\",\"note\":\"%s\"}", note);
        }
    }
    duet_item_clear(&it);
}

/* ---- sessions ------------------------------------------------------------------------- */

static void schedule_reconnect(duet_daemon_t *d, bool soon);
static void quiet_later(duet_daemon_t *d);

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
        if (kind == DUET_KIND_PAUSE || kind == DUET_KIND_RESUME) {
            announce_pause(d, id, kind);
        }
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
        schedule_due(d); /* an accepted ritual is due at once */
        break;
    }
}

static void s_done(duet_session_t *s, void *ctx)
{
    duet_daemon_t *d = ctx;
    quiet_later(d);
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
        if (d->lan != NULL && !d->stopping) {
            duet_lan_kick(d->lan); /* look for the partner again at once */
        }
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
    if (duet_session_accept(server, d->st, &d->keys, &d->link_opts, &cb, &s) != DUET_OK) {
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

static void connect_to(duet_daemon_t *d, const struct sockaddr *addr);

static void try_connect(duet_daemon_t *d)
{
    duet_partner_t p;
    struct sockaddr_storage ss;
    if (d->stopping || d->connecting || d->active.s != NULL) {
        return;
    }
    if (duet_partner_load(d->st, &p) != DUET_OK || p.addr[0] == 0 ||
        duet_addr_parse(p.addr, &ss) != DUET_OK) {
        return; /* no address known: wait for the partner (or its beacon) */
    }
    connect_to(d, (struct sockaddr *)&ss);
}

/* The partner's beacon was seen: try there, unless a session runs or is being made. */
static void on_lan_found(void *ctx, const struct sockaddr *addr)
{
    duet_daemon_t *d = ctx;
    if (d->stopping || d->connecting || d->active.s != NULL) {
        return;
    }
    connect_to(d, addr);
}

static void connect_to(duet_daemon_t *d, const struct sockaddr *addr)
{
    struct sockaddr_storage ss;
    memcpy(&ss, addr, addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                  : sizeof(struct sockaddr_in));
    slot_t *sl = free_slot(d);
    if (sl == NULL) {
        schedule_reconnect(d, false);
        return;
    }
    duet_session_t *s;
    duet_session_callbacks_t cb = make_cb(d);
    if (duet_session_connect(d->loop, d->st, (struct sockaddr *)&ss, &d->keys, &d->link_opts, &cb,
                             &s) !=
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

/* The next wait of a back-off (DUET_DAEMON_BACKOFF_MIN_MS doubling to ..._MAX_MS; reset
 * starts again from the least), with jitter: a uniform delay in [backoff/2, backoff], so two
 * daemons that lost each other at the same moment do not retry in lockstep. */
static uint64_t backoff_next(uint64_t *ms, bool reset)
{
    if (reset || *ms == 0) {
        *ms = DUET_DAEMON_BACKOFF_MIN_MS;
    } else {
        *ms *= 2;
        if (*ms > DUET_DAEMON_BACKOFF_MAX_MS) {
            *ms = DUET_DAEMON_BACKOFF_MAX_MS;
        }
    }
    return *ms / 2 + randombytes_uniform((uint32_t)(*ms / 2 + 1));
}

static void schedule_reconnect(duet_daemon_t *d, bool soon)
{
    if (d->stopping) {
        return;
    }
    uv_timer_start(&d->reconnect, on_reconnect, backoff_next(&d->backoff_ms, soon), 0);
}

/* ---- the relay -------------------------------------------------------------------------- */

static void relay_event(void *ctx, duet_outbox_event_t ev, const uint8_t id[DUET_ITEM_ID_BYTES],
                        uint32_t kind)
{
    s_event(NULL, ctx, ev, id, kind);
}

static void relay_state(duet_relay_client_t *c, void *ctx, bool connected, duet_err_t err)
{
    duet_daemon_t *d = ctx;
    (void)c;
    if (connected) {
        emit(d, "{\"event\":\"relay_online\"}");
    } else {
        emit(d, "{\"event\":\"relay_offline\",\"reason\":\"%s\"}", reason(err));
    }
}

static void relay_log(void *ctx, const char *line)
{
    logf_(ctx, "relay: %s", line);
}

/* Voice blobs through the relay: a short session on its own connection after each relay
 * cycle (a voice item may have arrived, or one of mine may wait to go up). */
static void voice_poke(duet_daemon_t *d);

static void on_voice_retry(uv_timer_t *t)
{
    voice_poke(t->data);
}

/* A partner's voice note can arrive before its sound is at the relay (the partner's daemon
 * uploads it in its own blob session, after the envelope went up), and nothing at the relay
 * tells us when it lands: look again, backing off, while a blob was left for later or the
 * session failed. Progress resets the back-off. */
static void voice_retry_later(duet_daemon_t *d, bool progress)
{
    if (d->stopping) {
        return;
    }
    uv_timer_start(&d->voice_retry, on_voice_retry, backoff_next(&d->voice_backoff_ms, progress),
                   0);
}

static void voice_done(duet_voiceway_t *w, void *ctx, duet_err_t err, duet_err_t upload_err,
                       const duet_blobrelay_stats_t *st)
{
    duet_daemon_t *d = ctx;
    (void)w;
    d->voice = NULL;
    if (st->blobs_in + st->blobs_up > 0) {
        emit(d, "{\"event\":\"voice\",\"available\":%llu,\"uploaded\":%llu}",
             (unsigned long long)st->blobs_in, (unsigned long long)st->blobs_up);
    }
    if (err != DUET_OK || upload_err != DUET_OK) {
        logf_(d, "voice through the relay: %s",
              duet_strerror(err != DUET_OK ? err : upload_err));
    }
    bool progress = st->blobs_in + st->blobs_up + st->units_in + st->units_up > 0;
    if (d->voice_again && !d->stopping && err == DUET_OK) {
        d->voice_again = false;
        voice_poke(d);
    } else if (err != DUET_OK || st->skipped > 0) {
        d->voice_again = false;
        voice_retry_later(d, progress);
    } else {
        d->voice_backoff_ms = 0; /* nothing left: wait for the next relay cycle */
    }
}

static void voice_poke(duet_daemon_t *d)
{
    if (d->stopping || d->relay_url[0] == 0) {
        return;
    }
    if (d->voice != NULL) {
        d->voice_again = true;
        return;
    }
    uv_timer_stop(&d->voice_retry);
    duet_relay_keys_t keys;
    if (duet_relay_client_keys(d->st, &keys) != DUET_OK) {
        return;
    }
    duet_voiceway_callbacks_t cb = {d, NULL, voice_done, relay_log};
    duet_err_t err = duet_voiceway_start(d->loop, d->relay_url, d->st, &keys,
                                         duet_store_rng(d->st), &cb, &d->voice);
    duet_relay_keys_dispose(&keys);
    if (err != DUET_OK) {
        d->voice = NULL;
    }
}

static void relay_progress(duet_relay_client_t *c, void *ctx,
                           const duet_relay_sync_counts_t *counts)
{
    (void)c;
    (void)counts;
    quiet_later(ctx);
    voice_poke(ctx);
}

static duet_err_t start_relay(duet_daemon_t *d, const char *url)
{
    duet_relay_keys_t keys;
    duet_err_t err = duet_outbox_host_init(&d->rhost, d->st, duet_wallclock_ms, NULL,
                                           relay_event, d);
    if (err != DUET_OK) {
        return err;
    }
    d->rhost_live = true;
    if ((err = duet_relay_client_keys(d->st, &keys)) != DUET_OK) {
        return err;
    }
    duet_relay_host_t host = duet_relay_outbox_host(&d->rhost);
    duet_rng_t rng = duet_store_rng(d->st);
    duet_relay_client_opts_t o = {d->loop, url, &host, &keys, rng, true};
    duet_relay_client_callbacks_t cb = {d, NULL, relay_state, relay_progress, relay_log};
    snprintf(d->relay_url, sizeof d->relay_url, "%s", url);
    err = duet_relay_client_start(&o, &cb, &d->relay);
    duet_relay_keys_dispose(&keys);
    return err;
}

/* ---- control -------------------------------------------------------------------------- */

static void on_kick(void *ctx)
{
    duet_daemon_t *d = ctx;
    if (d->relay != NULL) {
        duet_relay_client_kick(d->relay);
        voice_poke(d); /* a voice note may have been queued */
    }
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
    uv_timer_stop(&d->due);
    uv_close((uv_handle_t *)&d->due, NULL);
    uv_timer_stop(&d->voice_retry);
    uv_close((uv_handle_t *)&d->voice_retry, NULL);
    uv_close((uv_handle_t *)&d->tick, NULL);
    uv_timer_stop(&d->ckpt);
    uv_close((uv_handle_t *)&d->ckpt, NULL);
    uv_close((uv_handle_t *)&d->ckpt_check, NULL);
    uv_timer_stop(&d->quiet);
    uv_close((uv_handle_t *)&d->quiet, NULL);
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
    if (d->lan != NULL) {
        duet_lan_stop(d->lan);
        d->lan = NULL;
    }
    if (d->relay != NULL) {
        duet_relay_client_stop(d->relay);
        d->relay = NULL;
    }
    if (d->voice != NULL) {
        duet_voiceway_stop(d->voice);
        d->voice = NULL;
    }
}

/* Checkpoints off the commit path (core/store.h): a commit that grew the log past the mark
 * does not checkpoint; after this iteration's I/O (the sessions have sent their ACKs in their
 * own check callbacks by then), a zero timer runs it first thing in the next iteration, after
 * the events of this one are out. (A second connection checkpointing on the thread pool was
 * tried: on two cores its fsyncs and CPU slowed every commit of the loop more than the
 * occasional checkpoint on the loop costs.) */
static void on_ckpt(uv_timer_t *t)
{
    duet_daemon_t *d = t->data;
    if (d->o.on_tick != NULL) {
        d->o.on_tick(d->o.ctx);
    }
    if (sqlite3_get_autocommit(duet_store_db(d->st)) &&
        duet_store_checkpoint(d->st) != DUET_OK) {
        logf_(d, "checkpoint of the store failed; it is tried again after the next commits");
    }
}

/* Quiet for a while after syncing (a large sync leaves the page cache and the heap at their
 * peak): give the memory back, so that an idle daemon stays small. */
static void on_quiet(uv_timer_t *t)
{
    duet_daemon_t *d = t->data;
    if (sqlite3_get_autocommit(duet_store_db(d->st))) {
        duet_store_release_memory(d->st);
    }
#ifdef __GLIBC__
    (void)malloc_trim(0);
#endif
}

static void quiet_later(duet_daemon_t *d)
{
    if (!d->stopping) {
        uv_timer_start(&d->quiet, on_quiet, DUET_DAEMON_QUIET_MS, 0);
    }
}

static void on_ckpt_check(uv_check_t *h)
{
    duet_daemon_t *d = h->data;
    /* Not while a batch is open across iterations (relay_sync keeps one open while it waits
     * for the relay): the zero timer would keep the loop from ever blocking. */
    if (!d->stopping && duet_store_wal_pages(d->st) >= DUET_STORE_CHECKPOINT_PAGES &&
        sqlite3_get_autocommit(duet_store_db(d->st)) &&
        !uv_is_active((uv_handle_t *)&d->ckpt)) {
        uv_timer_start(&d->ckpt, on_ckpt, 0, 0);
    }
}

static void on_tick(uv_prepare_t *h)
{
    duet_daemon_t *d = h->data;
    if (d->o.on_tick != NULL) {
        d->o.on_tick(d->o.ctx);
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
    duet_link_options_default(&d->link_opts);
    if (opts->idle_ms > 0) {
        d->link_opts.idle_ms = opts->idle_ms;
        if (opts->idle_ms < d->link_opts.handshake_ms) {
            d->link_opts.handshake_ms = opts->idle_ms;
        }
    }
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
    uv_timer_init(loop, &d->due);
    d->due.data = d;
    uv_timer_init(loop, &d->voice_retry);
    d->voice_retry.data = d;
    uv_prepare_init(loop, &d->tick);
    d->tick.data = d;
    uv_prepare_start(&d->tick, on_tick);
    duet_store_defer_checkpoints(st);
    uv_timer_init(loop, &d->ckpt);
    d->ckpt.data = d;
    uv_timer_init(loop, &d->quiet);
    d->quiet.data = d;
    uv_check_init(loop, &d->ckpt_check);
    d->ckpt_check.data = d;
    uv_check_start(&d->ckpt_check, on_ckpt_check);
    /* Reminders for what fell due in the last day too, then for each new one. */
    d->due_after_ms = duet_wallclock_ms(NULL) - 24u * 3600u * 1000u;
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
    if (opts->lan) {
        uint8_t *secret = NULL, key[DUET_DISCOVERY_KEY_BYTES];
        size_t slen = 0;
        uint16_t port = 0;
        const char *colon = strrchr(addr, ':');
        if (colon != NULL) {
            port = (uint16_t)strtoul(colon + 1, NULL, 10);
        }
        err = duet_store_secret_get(st, "pair_secret", &secret, &slen);
        if (err == DUET_OK && slen == DUET_DISCOVERY_PAIR_SECRET_BYTES) {
            duet_discovery_key_paired(key, secret);
            err = duet_lan_start(&d->lan, loop, key, port, true, NULL, on_lan_found, d);
            sodium_memzero(key, sizeof key);
        }
        if (secret != NULL) {
            sodium_memzero(secret, slen);
            free(secret);
        }
        if (err != DUET_OK || d->lan == NULL) {
            logf_(d, "LAN discovery unavailable (%s); the partner can still connect here",
                  duet_strerror(err));
        }
    }
    if (opts->relay != NULL && (err = start_relay(d, opts->relay)) != DUET_OK) {
        logf_(d, "cannot use the relay %s: %s", opts->relay, duet_strerror(err));
        err = DUET_OK;
    }
    try_connect(d);
    schedule_due(d);
    uv_run(loop, UV_RUN_DEFAULT);
    emit(d, "{\"event\":\"stopped\"}");
    if (d->o.on_tick != NULL) {
        d->o.on_tick(d->o.ctx);
    }
    if (d->rhost_live) {
        duet_outbox_host_dispose(&d->rhost);
    }
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
