/*
 * duet-linkprobe: a misbehaving partner for the daemon fault tests.
 *   duet-linkprobe --home HOME --connect HOST:PORT MODE [--seconds N]
 * MODE:
 *   version2   the partner's real keys, but the link speaks protocol version 2
 *   stranger   a fresh random key instead of the partner's
 *   stopread   the partner's keys; sends its HELLO, then stops reading for N seconds while
 *              the daemon has much to send (it must drop us, not buffer without bound)
 * Prints one JSON line: {"mode":S,"result":"closed"|"open","error":S,"bytes_in":N}.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <uv.h>

#include "identity.h"
#include "link.h"
#include "outbox.h"
#include "partner.h"
#include "session.h"
#include "store.h"
#include "sync.h"
#include "sysrng.h"

typedef struct probe {
    const char *mode;
    duet_link_t *link;
    duet_store_t *st;
    duet_outbox_host_t host;
    duet_sync_t *eng;
    bool opened, closed;
    duet_err_t err;
    uint64_t records;
    uv_timer_t timer;
} probe_t;

static void on_open(duet_link_t *l, void *ctx)
{
    probe_t *p = ctx;
    p->opened = true;
    if (strcmp(p->mode, "stopread") == 0) {
        duet_sync_host_t h = duet_outbox_sync_host(&p->host);
        p->eng = duet_sync_new(&h);
        const uint8_t *f;
        size_t len;
        if (p->eng == NULL || duet_sync_start(p->eng) != DUET_OK ||
            duet_sync_next_frame(p->eng, &f, &len) != DUET_OK ||
            duet_link_send(l, f, len) != DUET_OK) {
            duet_link_close(l, DUET_EINTERNAL);
            return;
        }
        duet_link_pause_read(l); /* and never read again */
    }
}

static duet_err_t on_record(duet_link_t *l, void *ctx, const uint8_t *rec, size_t len)
{
    probe_t *p = ctx;
    (void)l, (void)rec, (void)len;
    p->records++;
    return DUET_OK;
}

static void on_close(duet_link_t *l, void *ctx, duet_err_t err)
{
    probe_t *p = ctx;
    (void)l;
    p->closed = true;
    p->err = err;
    p->link = NULL;
    if (!uv_is_closing((uv_handle_t *)&p->timer)) {
        uv_close((uv_handle_t *)&p->timer, NULL);
    }
}

static void on_log(duet_link_t *l, void *ctx, const char *line)
{
    (void)l, (void)ctx;
    fprintf(stderr, "linkprobe: %s\n", line);
}

static void on_timer(uv_timer_t *t)
{
    probe_t *p = t->data;
    if (p->link != NULL) {
        duet_link_close(p->link, DUET_OK);
    }
    if (!uv_is_closing((uv_handle_t *)t)) {
        uv_close((uv_handle_t *)t, NULL);
    }
}

int main(int argc, char **argv)
{
    const char *home = NULL, *addr = NULL, *mode = NULL;
    int seconds = 10;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--home") == 0 && i + 1 < argc) {
            home = argv[++i];
        } else if (strcmp(argv[i], "--connect") == 0 && i + 1 < argc) {
            addr = argv[++i];
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            seconds = atoi(argv[++i]);
        } else {
            mode = argv[i];
        }
    }
    if (home == NULL || addr == NULL || mode == NULL || sodium_init() < 0) {
        fprintf(stderr, "usage: duet-linkprobe --home HOME --connect HOST:PORT "
                        "version2|stranger|stopread [--seconds N]\n");
        return 2;
    }
    probe_t p = {.mode = mode};
    duet_store_opts_t so = {.rng = duet_sysrng()};
    duet_identity_t id;
    duet_partner_t partner;
    uint8_t priv[32], pub[32], remote[32];
    if (duet_store_open(home, &so, &p.st) != DUET_OK || duet_identity_load(p.st, &id) != DUET_OK ||
        duet_partner_load(p.st, &partner) != DUET_OK ||
        duet_identity_x25519(&id, priv, pub) != DUET_OK ||
        duet_identity_pk_to_x25519(partner.identity_pk, remote) != DUET_OK ||
        duet_outbox_host_init(&p.host, p.st, duet_wallclock_ms, NULL, NULL, NULL) != DUET_OK) {
        fprintf(stderr, "linkprobe: cannot load %s\n", home);
        return 1;
    }
    if (strcmp(mode, "stranger") == 0) {
        randombytes_buf(priv, sizeof priv);
    }
    duet_link_options_t o;
    duet_link_options_default(&o);
    if (strcmp(mode, "version2") == 0) {
        o.test_version = 2;
    }
    o.idle_ms = (uint64_t)seconds * 4000u; /* we are not the one who should time out */
    struct sockaddr_storage ss;
    if (duet_addr_parse(addr, &ss) != DUET_OK) {
        return 2;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    uv_timer_init(&loop, &p.timer);
    p.timer.data = &p;
    uv_timer_start(&p.timer, on_timer, (uint64_t)seconds * 1000u, 0);
    duet_link_config_t cfg = {DUET_LINK_KK, priv, remote, duet_sysrng(), &o};
    duet_link_callbacks_t cb = {&p, on_open, on_record, NULL, NULL, on_close, on_log};
    if (duet_link_connect(&loop, (struct sockaddr *)&ss, &cfg, &cb, &p.link) != DUET_OK) {
        return 1;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    (void)uv_loop_close(&loop);
    printf("{\"mode\":\"%s\",\"opened\":%s,\"result\":\"%s\",\"error\":\"%s\",\"records\":%llu}\n",
           mode, p.opened ? "true" : "false", p.closed ? "closed" : "open",
           duet_err_name(p.err), (unsigned long long)p.records);
    duet_sync_free(p.eng);
    duet_outbox_host_dispose(&p.host);
    duet_identity_dispose(&id);
    duet_store_close(p.st);
    sodium_memzero(priv, sizeof priv);
    return 0;
}
