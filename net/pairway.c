/* see pairway.h */
#include "pairway.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "discovery.h"
#include "link.h"
#include "relay_client.h"

struct duet_pairway {
    duet_pairway_spec_t spec;
    duet_pairway_callbacks_t cb;
    uv_tcp_t server;
    bool server_live;
    duet_link_t *link;
    duet_lan_t *lan;
    duet_relay_rendezvous_t *rv;
    bool closing;
    char addr[DUET_ADDR_STRLEN];
};

static void link_open(duet_link_t *l, void *ctx)
{
    duet_pairway_t *w = ctx;
    (void)l;
    if (!w->closing && w->cb.on_open != NULL) {
        w->cb.on_open(w, w->cb.ctx);
    }
}

static duet_err_t link_record(duet_link_t *l, void *ctx, const uint8_t *rec, size_t len)
{
    duet_pairway_t *w = ctx;
    (void)l;
    if (!w->closing) {
        w->cb.on_message(w, w->cb.ctx, rec, len);
    }
    return DUET_OK;
}

static void server_closed(uv_handle_t *h)
{
    duet_pairway_t *w = h->data;
    w->server_live = false;
    if (w->link == NULL) {
        free(w);
    }
}

static void link_close(duet_link_t *l, void *ctx, duet_err_t err)
{
    duet_pairway_t *w = ctx;
    if (w->link == l) {
        w->link = NULL;
    }
    if (w->closing) {
        if (!w->server_live) {
            free(w);
        }
        return;
    }
    w->cb.on_closed(w, w->cb.ctx, err);
}

static void link_log(duet_link_t *l, void *ctx, const char *line)
{
    (void)l;
    (void)ctx;
    (void)line; /* pairing reports its own outcome; link details stay quiet */
}

static void config(duet_pairway_t *w, duet_link_config_t *cfg, duet_link_callbacks_t *lcb)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->mode = DUET_LINK_RAW;
    cfg->rng = w->spec.rng;
    memset(lcb, 0, sizeof *lcb);
    lcb->ctx = w;
    lcb->on_open = link_open;
    lcb->on_record = link_record;
    lcb->on_close = link_close;
    lcb->on_log = link_log;
}

static void on_connection(uv_stream_t *server, int status)
{
    duet_pairway_t *w = server->data;
    duet_link_config_t cfg;
    duet_link_callbacks_t lcb;
    duet_link_t *l;
    if (status < 0 || w->closing) {
        return;
    }
    config(w, &cfg, &lcb);
    if (duet_link_accept(server, &cfg, &lcb, &l) != DUET_OK) {
        return;
    }
    if (w->link != NULL) {
        duet_link_close(l, DUET_EBUSY); /* one partner at a time */
        return;
    }
    w->link = l;
}

/* ---- the relay's rendezvous ----------------------------------------------------------- */

static void rv_ready(duet_relay_rendezvous_t *r, void *ctx, uint16_t nameplate)
{
    duet_pairway_t *w = ctx;
    (void)r, (void)nameplate;
    if (w->closing) {
        return;
    }
    if (w->spec.joiner) {
        if (w->cb.on_open != NULL) {
            w->cb.on_open(w, w->cb.ctx);
        }
    } else if (w->cb.on_code != NULL) {
        w->cb.on_code(w, w->cb.ctx, NULL);
    }
}

static void rv_message(duet_relay_rendezvous_t *r, void *ctx, const uint8_t *msg, size_t len)
{
    duet_pairway_t *w = ctx;
    (void)r;
    if (!w->closing) {
        w->cb.on_message(w, w->cb.ctx, msg, len);
    }
}

static void rv_closed(duet_relay_rendezvous_t *r, void *ctx, duet_err_t err)
{
    duet_pairway_t *w = ctx;
    (void)r;
    w->rv = NULL;
    if (!w->closing) {
        w->cb.on_closed(w, w->cb.ctx, err);
    }
}

static void rv_log(void *ctx, const char *line)
{
    (void)ctx, (void)line; /* pairing reports its own outcome */
}

/* LAN joiner: the listener's beacon answered our query; connect there once. */
static void on_lan_found(void *ctx, const struct sockaddr *addr)
{
    duet_pairway_t *w = ctx;
    duet_link_config_t cfg;
    duet_link_callbacks_t lcb;
    if (w->closing || w->link != NULL) {
        return;
    }
    config(w, &cfg, &lcb);
    if (duet_link_connect(w->spec.loop, addr, &cfg, &lcb, &w->link) != DUET_OK) {
        w->link = NULL;
        return;
    }
    duet_lan_stop(w->lan);
    w->lan = NULL;
}

static duet_err_t lan_start(duet_pairway_t *w, uint16_t port, bool seek)
{
    char np[8];
    uint8_t key[DUET_DISCOVERY_KEY_BYTES];
    int n = snprintf(np, sizeof np, "%u", (unsigned)w->spec.nameplate);
    duet_err_t err = duet_discovery_key_pairing(key, (const uint8_t *)np, (size_t)n);
    if (err == DUET_OK) {
        err = duet_lan_start(&w->lan, w->spec.loop, key, port, seek, NULL, on_lan_found, w);
    }
    sodium_memzero(key, sizeof key);
    return err;
}

duet_err_t duet_pairway_start(const duet_pairway_spec_t *spec, const duet_pairway_callbacks_t *cb,
                              duet_pairway_t **out)
{
    struct sockaddr_storage ss;
    duet_err_t err;
    bool lan = spec->listen == NULL && spec->connect == NULL && spec->relay == NULL;
    *out = NULL;
    if (spec->relay != NULL) {
        duet_pairway_t *w = calloc(1, sizeof *w);
        if (w == NULL) {
            return DUET_ENOMEM;
        }
        w->spec = *spec;
        w->cb = *cb;
        duet_relay_rendezvous_callbacks_t rcb = {w, rv_ready, rv_message, rv_closed, rv_log};
        err = duet_relay_rendezvous_start(spec->loop, spec->relay, spec->nameplate, spec->joiner,
                                          spec->rng, &rcb, &w->rv);
        if (err != DUET_OK) {
            free(w);
            return err;
        }
        *out = w;
        return DUET_OK;
    }
    if (lan && spec->joiner) {
        duet_pairway_t *w = calloc(1, sizeof *w);
        if (w == NULL) {
            return DUET_ENOMEM;
        }
        w->spec = *spec;
        w->cb = *cb;
        if ((err = lan_start(w, 0, true)) != DUET_OK) {
            free(w);
            return err;
        }
        *out = w;
        return DUET_OK;
    }
    duet_pairway_t *w = calloc(1, sizeof *w);
    if (w == NULL) {
        return DUET_ENOMEM;
    }
    w->spec = *spec;
    w->cb = *cb;
    if (spec->connect != NULL) {
        duet_link_config_t cfg;
        duet_link_callbacks_t lcb;
        if ((err = duet_addr_parse(spec->connect, &ss)) != DUET_OK) {
            free(w);
            return err;
        }
        config(w, &cfg, &lcb);
        if ((err = duet_link_connect(spec->loop, (struct sockaddr *)&ss, &cfg, &lcb, &w->link)) !=
            DUET_OK) {
            free(w);
            return err;
        }
        *out = w;
        return DUET_OK;
    }
    if ((err = duet_addr_parse(lan ? "[::]:0" : spec->listen, &ss)) != DUET_OK) {
        free(w);
        return err;
    }
    uv_tcp_init(spec->loop, &w->server);
    w->server.data = w;
    w->server_live = true;
    int rc = uv_tcp_bind(&w->server, (struct sockaddr *)&ss, 0);
    if (rc == 0) {
        rc = uv_listen((uv_stream_t *)&w->server, 8, on_connection);
    }
    if (rc != 0) {
        uv_close((uv_handle_t *)&w->server, server_closed);
        return rc == UV_EADDRINUSE ? DUET_EADDRINUSE : DUET_ENET;
    }
    struct sockaddr_storage bound;
    int blen = sizeof bound;
    uv_tcp_getsockname(&w->server, (struct sockaddr *)&bound, &blen);
    duet_addr_format((struct sockaddr *)&bound, w->addr, sizeof w->addr);
    if (lan) {
        uint16_t port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
        if ((err = lan_start(w, port, false)) != DUET_OK) {
            w->closing = true;
            uv_close((uv_handle_t *)&w->server, server_closed);
            return err;
        }
    }
    *out = w;
    if (cb->on_code != NULL) {
        cb->on_code(w, cb->ctx, lan ? NULL : w->addr);
    }
    return DUET_OK;
}

duet_err_t duet_pairway_send(duet_pairway_t *w, const uint8_t *msg, size_t len)
{
    if (w->rv != NULL) {
        return duet_relay_rendezvous_send(w->rv, msg, len);
    }
    if (w->link == NULL) {
        return DUET_ECLOSED;
    }
    return duet_link_send(w->link, msg, len);
}

void duet_pairway_close(duet_pairway_t *w)
{
    if (w->closing) {
        return;
    }
    w->closing = true;
    if (w->rv != NULL) {
        duet_relay_rendezvous_close(w->rv);
        w->rv = NULL;
        if (w->link == NULL && !w->server_live && w->lan == NULL) {
            free(w);
            return;
        }
    }
    if (w->lan != NULL) {
        duet_lan_stop(w->lan);
        w->lan = NULL;
    }
    if (w->link != NULL) {
        duet_link_close(w->link, DUET_OK);
    }
    if (w->server_live) {
        uv_close((uv_handle_t *)&w->server, server_closed);
    } else if (w->link == NULL) {
        free(w);
    }
}
