/*
 * duet sync: one bounded exchange with the partner, both ways, then exit.
 *   sync --connect HOST:PORT [--timeout SEC]   directly to the partner's daemon
 *   sync --relay URL [--timeout SEC]           through a relay (see syncway.c)
 *   sync --lan [--timeout SEC]                 find the partner's daemon on the LAN
 * Exit 0 only when everything queued here was acknowledged (directly: by the partner; via
 * the relay: stored by the relay).
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <uv.h>

#include "cli.h"
#include "commands.h"
#include "discovery.h"
#include "identity.h"
#include "outbox.h"
#include "partner.h"
#include "relay_client.h"
#include "session.h"

#define SYNC_DEFAULT_TIMEOUT_S 60u

typedef struct sync_run {
    duet_cli_t *cli;
    duet_store_t *st;
    uv_loop_t loop;
    uv_timer_t timer;
    uv_signal_t sigint, sigterm;
    duet_session_t *session;
    duet_session_keys_t keys;
    duet_lan_t *lan;
    duet_relay_client_t *relay;
    duet_outbox_host_t rhost;
    bool rhost_live;
    duet_err_t upload_err;
    bool done;
    bool finished;
    duet_err_t result;
    uint64_t sent, received;
    uint64_t next_progress;
    char log[256];
} sync_run_t;

static void finish(sync_run_t *r, duet_err_t err)
{
    if (r->finished) {
        return;
    }
    r->finished = true;
    r->result = err;
    uv_timer_stop(&r->timer);
    uv_signal_stop(&r->sigint);
    uv_signal_stop(&r->sigterm);
    if (r->session != NULL) {
        duet_session_close(r->session, err);
    }
    if (r->lan != NULL) {
        duet_lan_stop(r->lan);
        r->lan = NULL;
    }
    if (r->relay != NULL) {
        duet_relay_client_stop(r->relay);
        r->relay = NULL;
    }
}

/* Progress: at most a few records a second, not one per item (a sync may move 100,000). */
static void s_event(duet_session_t *s, void *ctx, duet_outbox_event_t ev,
                    const uint8_t id[DUET_ITEM_ID_BYTES], uint32_t kind)
{
    sync_run_t *r = ctx;
    duet_cli_t *cli = r->cli;
    (void)ev;
    (void)id;
    (void)kind;
    uint64_t now = uv_now(&r->loop);
    if (!cli->json || now < r->next_progress) {
        return;
    }
    r->next_progress = now + 250;
    duet_json_obj(&cli->j);
    duet_json_kstr(&cli->j, "event", "progress");
    duet_json_kint(&cli->j, "sent", (int64_t)duet_session_items_sent(s));
    duet_json_kint(&cli->j, "received", (int64_t)duet_session_items_received(s));
    duet_json_end(&cli->j);
    duet_cli_emit(cli);
}

static void s_done(duet_session_t *s, void *ctx)
{
    sync_run_t *r = ctx;
    r->done = true;
    r->sent = duet_session_items_sent(s);
    r->received = duet_session_items_received(s);
    finish(r, DUET_OK);
}

static void s_close(duet_session_t *s, void *ctx, duet_err_t err)
{
    sync_run_t *r = ctx;
    if (!r->done) {
        r->sent = duet_session_items_sent(s);
        r->received = duet_session_items_received(s);
    }
    r->session = NULL;
    if (!r->finished) {
        finish(r, err == DUET_OK ? DUET_ECLOSED : err);
    }
}

static void s_log(duet_session_t *s, void *ctx, const char *line)
{
    sync_run_t *r = ctx;
    (void)s;
    snprintf(r->log, sizeof r->log, "%s", line);
}

static void on_timer(uv_timer_t *t)
{
    finish(t->data, DUET_ETIMEDOUT);
}

static void on_signal(uv_signal_t *h, int signum)
{
    (void)signum;
    finish(h->data, DUET_ECANCELED);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) {
        uv_close(h, NULL);
    }
}

/* ---- through a relay ---------------------------------------------------------------- */

static void relay_done(duet_relay_client_t *c, void *ctx, duet_err_t err, duet_err_t upload_err,
                       const duet_relay_sync_counts_t *counts)
{
    sync_run_t *r = ctx;
    (void)c;
    r->relay = NULL; /* over: it frees itself */
    r->sent = counts->uploaded;
    r->received = counts->received;
    r->upload_err = upload_err;
    r->done = err == DUET_OK;
    finish(r, err);
}

static void relay_log(void *ctx, const char *line)
{
    sync_run_t *r = ctx;
    snprintf(r->log, sizeof r->log, "%s", line);
}

static duet_err_t start_relay(sync_run_t *r, const char *url)
{
    duet_relay_keys_t keys;
    duet_err_t err = duet_outbox_host_init(&r->rhost, r->st, duet_wallclock_ms, NULL, NULL, NULL);
    if (err != DUET_OK) {
        return err;
    }
    r->rhost_live = true;
    if ((err = duet_relay_client_keys(r->st, &keys)) != DUET_OK) {
        return err;
    }
    duet_relay_host_t host = duet_relay_outbox_host(&r->rhost);
    duet_relay_client_opts_t o = {&r->loop, url, &host, &keys, r->cli->rng, false};
    duet_relay_client_callbacks_t cb = {r, relay_done, NULL, NULL, relay_log};
    err = duet_relay_client_start(&o, &cb, &r->relay);
    duet_relay_keys_dispose(&keys);
    return err;
}

/* The partner's beacon: connect there, stop looking. */
static void on_found(void *ctx, const struct sockaddr *addr)
{
    sync_run_t *r = ctx;
    if (r->finished || r->session != NULL) {
        return;
    }
    duet_session_callbacks_t cb = {r, NULL, s_event, s_done, s_close, s_log};
    duet_err_t err = duet_session_connect(&r->loop, r->st, addr, &r->keys, NULL, &cb, &r->session);
    if (err != DUET_OK) {
        return; /* another report may come from another address */
    }
    duet_lan_stop(r->lan);
    r->lan = NULL;
}

static duet_err_t start_lan(sync_run_t *r)
{
    uint8_t *secret = NULL, key[DUET_DISCOVERY_KEY_BYTES];
    size_t slen = 0;
    duet_err_t err = duet_store_secret_get(r->st, "pair_secret", &secret, &slen);
    if (err == DUET_OK && slen != DUET_DISCOVERY_PAIR_SECRET_BYTES) {
        err = DUET_ECORRUPT;
    }
    if (err == DUET_OK) {
        duet_discovery_key_paired(key, secret);
        err = duet_lan_start(&r->lan, &r->loop, key, 0, true, NULL, on_found, r);
        sodium_memzero(key, sizeof key);
    }
    if (secret != NULL) {
        sodium_memzero(secret, slen);
        free(secret);
    }
    return err;
}

/* The X25519 keys of the link: ours from the identity, the partner's from the pairing. */
static duet_err_t link_keys(duet_store_t *st, duet_session_keys_t *k)
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
    duet_identity_dispose(&id);
    return err;
}

static int report(duet_cli_t *cli, sync_run_t *r, uint64_t outbox)
{
    if (cli->json) {
        duet_json_obj(&cli->j);
        duet_json_kstr(&cli->j, "event", "synced");
        duet_json_kint(&cli->j, "sent", (int64_t)r->sent);
        duet_json_kint(&cli->j, "received", (int64_t)r->received);
        duet_json_kint(&cli->j, "outbox", (int64_t)outbox);
        duet_json_end(&cli->j);
        duet_cli_emit(cli);
    } else {
        printf("synced  %llu sent, %llu received%s\n", (unsigned long long)r->sent,
               (unsigned long long)r->received, outbox ? "" : ", nothing left to send");
    }
    return DUET_EXIT_OK;
}

int duet_cmd_sync(duet_cli_t *cli, int argc, char **argv)
{
    const char *connect = NULL, *relay = NULL, *timeout_s = NULL, *pos[1];
    bool lan = false;
    size_t npos;
    const duet_opt_t opts[] = {
        {"--connect", DUET_OPT_STR, &connect},
        {"--relay", DUET_OPT_STR, &relay},
        {"--lan", DUET_OPT_FLAG, &lan},
        {"--timeout", DUET_OPT_STR, &timeout_s},
    };
    int rc = duet_cli_parse(cli, argc, argv, opts, 4, pos, 0, &npos);
    if (rc != 0) {
        return rc;
    }
    uint64_t timeout = SYNC_DEFAULT_TIMEOUT_S;
    if (timeout_s != NULL &&
        (rc = duet_cli_uint(cli, "--timeout", timeout_s, 1, 86400, &timeout)) != 0) {
        return rc;
    }
    if ((connect != NULL) + (relay != NULL) + lan != 1) {
        return duet_cli_usage(cli, "say how to reach the partner: --connect HOST:PORT, "
                                   "--relay URL or --lan");
    }
    struct sockaddr_storage ss;
    if (connect != NULL && duet_addr_parse(connect, &ss) != DUET_OK) {
        return duet_cli_usage(cli, "--connect: '%s' is not HOST:PORT (numeric address)",
                              connect);
    }
    sync_run_t *r = calloc(1, sizeof *r);
    if (r == NULL) {
        return duet_cli_fail(cli, "sync", DUET_ENOMEM);
    }
    r->cli = cli;
    if ((rc = duet_cli_open(cli, &r->st)) != 0) {
        free(r);
        return rc;
    }
    duet_err_t err = link_keys(r->st, &r->keys);
    if (err == DUET_OK) {
        /* Items written before pairing, or while another process held the lock. */
        if ((err = duet_store_begin(r->st)) == DUET_OK) {
            err = duet_outbox_seal_pending(r->st);
            err = err == DUET_OK ? duet_store_commit(r->st) : err;
            if (err != DUET_OK) {
                duet_store_rollback(r->st);
            }
        }
    }
    if (err != DUET_OK) {
        sodium_memzero(&r->keys, sizeof r->keys);
        duet_store_close(r->st);
        free(r);
        return duet_cli_fail(cli, "sync", err);
    }
    uv_loop_init(&r->loop);
    uv_timer_init(&r->loop, &r->timer);
    r->timer.data = r;
    uv_timer_start(&r->timer, on_timer, timeout * 1000u, 0);
    uv_signal_init(&r->loop, &r->sigint);
    uv_signal_init(&r->loop, &r->sigterm);
    r->sigint.data = r->sigterm.data = r;
    uv_signal_start(&r->sigint, on_signal, SIGINT);
    uv_signal_start(&r->sigterm, on_signal, SIGTERM);
    if (lan) {
        err = start_lan(r);
    } else if (relay != NULL) {
        err = start_relay(r, relay);
    } else {
        duet_session_callbacks_t cb = {r, NULL, s_event, s_done, s_close, s_log};
        err = duet_session_connect(&r->loop, r->st, (struct sockaddr *)&ss, &r->keys, NULL, &cb,
                                   &r->session);
    }
    if (err != DUET_OK) {
        finish(r, err);
    }
    uv_run(&r->loop, UV_RUN_DEFAULT);
    uv_walk(&r->loop, close_walk, NULL);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    (void)uv_loop_close(&r->loop);
    sodium_memzero(&r->keys, sizeof r->keys);
    if (r->rhost_live) {
        duet_outbox_host_dispose(&r->rhost);
    }

    uint64_t outbox = 0;
    duet_err_t cerr = duet_outbox_count(r->st, &outbox);
    err = r->result;
    if (err == DUET_OK && r->done) {
        if ((cerr = duet_store_begin(r->st)) == DUET_OK) {
            cerr = duet_partner_set_last_sync(r->st, duet_cli_now_ms());
            if (connect != NULL) {
                cerr = cerr == DUET_OK ? duet_partner_set_addr(r->st, connect) : cerr;
            }
            if (relay != NULL) {
                cerr = cerr == DUET_OK ? duet_store_meta_set(r->st, "relay_url",
                                                             (const uint8_t *)relay,
                                                             strlen(relay))
                                       : cerr;
            }
            cerr = cerr == DUET_OK ? duet_store_commit(r->st) : cerr;
            if (cerr != DUET_OK) {
                duet_store_rollback(r->st);
            }
        }
    }
    duet_store_close(r->st);
    if (relay != NULL && err == DUET_OK && r->done) {
        /* Through a relay, done means the relay durably holds everything queued here; the
         * partner's acknowledgements come back later through the relay. */
        if (r->upload_err == DUET_OK) {
            rc = report(cli, r, outbox);
        } else if (r->upload_err == DUET_EQUOTA) {
            rc = duet_cli_failf(cli, "sync", "the relay is full for this couple (quota); the "
                                             "rest stays here and goes at the next sync");
        } else {
            rc = duet_cli_failf(cli, "sync", "the relay did not store everything: %s",
                                duet_strerror(r->upload_err));
        }
    } else if (relay != NULL && err == DUET_ERELAYKEY) {
        rc = duet_cli_failf(cli, "sync", "the relay at that address does not have the key in "
                                         "its URL (wrong URL, or not a duet relay)");
    } else if (err == DUET_OK && r->done && outbox == 0) {
        rc = report(cli, r, outbox);
    } else {
        if (err == DUET_OK || err == DUET_ECLOSED) {
            rc = duet_cli_failf(cli, "sync", "the partner closed before everything was "
                                             "exchanged; %llu still waiting",
                                (unsigned long long)outbox);
        } else if (err == DUET_ETIMEDOUT && lan && r->session == NULL && !r->done &&
                   r->sent + r->received == 0 && r->log[0] == 0) {
            rc = duet_cli_failf(cli, "sync", "your partner's device was not found on this "
                                             "network (is its daemon running?)");
        } else if (err == DUET_ETIMEDOUT) {
            rc = duet_cli_failf(cli, "sync", "timed out%s%s; %llu still waiting",
                                r->log[0] ? ": " : "", r->log, (unsigned long long)outbox);
        } else if (err == DUET_ECONNREFUSED) {
            rc = duet_cli_failf(cli, "sync", "nobody is listening at %s (is your partner's "
                                             "daemon running?)",
                                connect ? connect : "the address found");
        } else if (r->log[0]) {
            rc = duet_cli_failf(cli, "sync", "%s", r->log);
        } else {
            rc = duet_cli_fail(cli, "sync", err);
        }
    }
    free(r);
    return rc;
}
