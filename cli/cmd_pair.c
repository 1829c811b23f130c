/*
 * duet pair, verify: making two devices partners, and checking it was the right one.
 *
 *   pair --listen HOST:PORT [--timeout SEC]   make a code, wait for the partner
 *   pair CODE --connect HOST:PORT             join with the partner's code
 *   pair [--relay URL] / pair CODE --relay URL, and pair / pair CODE (LAN): see pairway.c
 *
 * The pairing engine (core/pairing.h) runs over a "pairing way": a RAW link (2-byte length
 * frames) for an address, the relay's rendezvous, or a LAN rendezvous. One attempt per
 * code: once the partner's first message has been accepted, a failure burns the code.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <uv.h>

#include "cli.h"
#include "code.h"
#include "commands.h"
#include "crypto.h"
#include "identity.h"
#include "pairing.h"
#include "pairway.h"
#include "partner.h"
#include "safety.h"

#define PAIR_DEFAULT_TIMEOUT_S 300u

typedef struct pair_run {
    duet_cli_t *cli;
    duet_store_t *st;
    duet_identity_t id;
    duet_code_t code;
    duet_pairing_t *eng;             /* sodium_malloc'd */
    uint8_t ratchet_pub[32];
    uint8_t *ratchet_priv;           /* sodium_malloc'd */
    duet_pairing_role_t role;
    bool started;                    /* the partner's first message was accepted */
    bool finished;
    duet_err_t result;
    duet_pairway_t *way;
    uv_loop_t loop;
    uv_timer_t timer;
    uv_signal_t sigint, sigterm;
} pair_run_t;

static void stop(pair_run_t *r, duet_err_t err)
{
    if (r->finished) {
        return;
    }
    r->finished = true;
    r->result = err;
    uv_timer_stop(&r->timer);
    uv_signal_stop(&r->sigint);
    uv_signal_stop(&r->sigterm);
    if (r->way != NULL) {
        duet_pairway_close(r->way); /* flushes what is queued (the joiner's last message) */
    }
}

static void flush_output(pair_run_t *r)
{
    const uint8_t *msg;
    size_t len;
    while (duet_pairing_output(r->eng, &msg, &len)) {
        duet_err_t err = duet_pairway_send(r->way, msg, len);
        if (err != DUET_OK) {
            stop(r, err);
            return;
        }
    }
}

static void emit_paired(pair_run_t *r, const duet_pairing_result_t *res)
{
    duet_cli_t *cli = r->cli;
    char did[DUET_DEVICE_ID_LEN + 1];
    duet_safety_t sn;
    duet_identity_device_id(res->partner_identity_pk, did);
    duet_safety_number(r->id.pk, res->partner_identity_pk, &sn);
    if (cli->json) {
        duet_json_obj(&cli->j);
        duet_json_kstr(&cli->j, "event", "paired");
        duet_json_key(&cli->j, "partner");
        duet_json_obj(&cli->j);
        duet_json_kstr(&cli->j, "device_id", did);
        duet_json_kstr(&cli->j, "name", res->partner_name);
        duet_json_end(&cli->j);
        duet_json_kstr(&cli->j, "safety_number", sn.text);
        duet_json_end(&cli->j);
        duet_cli_emit(cli);
    } else {
        printf("paired with %s%s%s  %s%s%s\n", duet_cli_bold(cli), res->partner_name,
               duet_cli_reset(cli), duet_cli_dim(cli), did, duet_cli_reset(cli));
        printf("safety number  %s\n", sn.text);
        printf("compare it with your partner's screen, then: duet verify --confirm\n");
    }
}

/* The engine says PAIRED: keep the partner and start the ratchet, in one transaction. */
static void complete(pair_run_t *r)
{
    duet_pairing_result_t res;
    duet_err_t err = duet_pairing_result(r->eng, &res);
    if (err == DUET_OK && (err = duet_store_begin(r->st)) == DUET_OK) {
        err = duet_partner_establish(r->st, &res, r->ratchet_priv, duet_cli_now_ms());
        if (err == DUET_OK) {
            err = duet_store_commit(r->st);
        }
        if (err != DUET_OK) {
            duet_store_rollback(r->st);
        }
    }
    if (err == DUET_OK) {
        emit_paired(r, &res);
    }
    sodium_memzero(&res, sizeof res);
    stop(r, err);
}

static void way_open(duet_pairway_t *w, void *ctx)
{
    pair_run_t *r = ctx;
    r->way = w;
    flush_output(r); /* the joiner's P1 */
}

static void way_message(duet_pairway_t *w, void *ctx, const uint8_t *msg, size_t len)
{
    pair_run_t *r = ctx;
    (void)w;
    if (r->finished) {
        return;
    }
    duet_err_t err = duet_pairing_receive(r->eng, msg, len);
    r->started = true;
    flush_output(r); /* also after a failure: FAIL must reach the partner */
    if (r->finished) {
        return;
    }
    if (err != DUET_OK) {
        stop(r, err);
        return;
    }
    if (duet_pairing_status(r->eng) == DUET_PAIRING_PAIRED) {
        complete(r);
    }
}

static void way_closed(duet_pairway_t *w, void *ctx, duet_err_t err)
{
    pair_run_t *r = ctx;
    (void)w; /* the way itself lives on (a listener keeps listening) until stop() */
    if (r->finished) {
        return;
    }
    /* The partner went away mid-pairing: the attempt is spent. Before its first message
     * (a port scanner, a second device that gave up), a listener keeps waiting. */
    if (r->role == DUET_PAIRING_LISTENER && !r->started) {
        return;
    }
    stop(r, err == DUET_OK ? DUET_ECLOSED : err);
}

static void on_timer(uv_timer_t *t)
{
    stop(t->data, DUET_ETIMEDOUT);
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)signum;
    stop(s->data, DUET_ECANCELED);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) {
        uv_close(h, NULL);
    }
}

static void way_code(duet_pairway_t *w, void *ctx, const char *addr)
{
    pair_run_t *r = ctx;
    duet_cli_t *cli = r->cli;
    (void)w;
    if (cli->json) {
        duet_json_obj(&cli->j);
        duet_json_kstr(&cli->j, "event", "code");
        duet_json_kstr(&cli->j, "code", r->code.text);
        if (addr != NULL) {
            duet_json_kstr(&cli->j, "addr", addr);
        }
        duet_json_end(&cli->j);
        duet_cli_emit(cli);
    } else {
        printf("your pairing code:  %s%s%s\n", duet_cli_bold(cli), r->code.text,
               duet_cli_reset(cli));
        if (addr != NULL) {
            printf("on your partner's device:  duet pair %s --connect %s\n", r->code.text, addr);
        } else {
            printf("on your partner's device:  duet pair %s\n", r->code.text);
        }
        printf("waiting for your partner...\n");
        fflush(stdout);
    }
}

static const char *pair_what(duet_err_t err)
{
    switch (err) {
    case DUET_EWRONGCODE:
        return "the code does not match: nobody was paired; make a new code and try again";
    case DUET_ETIMEDOUT:
        return "timed out waiting for the partner; nobody was paired";
    case DUET_ECLOSED:
        return "the partner went away before pairing finished; nobody was paired";
    case DUET_ECANCELED:
        return "stopped; nobody was paired";
    case DUET_ENAMEPLATE:
        return "that code's nameplate is taken or has expired at the relay; run 'duet pair' "
               "again for a new code";
    case DUET_ERELAYKEY:
        return "the relay at that address does not have the key in its URL";
    default:
        return NULL;
    }
}

int duet_cmd_pair(duet_cli_t *cli, int argc, char **argv)
{
    const char *listen = NULL, *connect = NULL, *relay = NULL, *timeout_s = NULL, *pos[1];
    size_t npos;
    const duet_opt_t opts[] = {
        {"--listen", DUET_OPT_STR, &listen},
        {"--connect", DUET_OPT_STR, &connect},
        {"--relay", DUET_OPT_STR, &relay},
        {"--timeout", DUET_OPT_STR, &timeout_s},
    };
    int rc = duet_cli_parse(cli, argc, argv, opts, 4, pos, 1, &npos);
    if (rc != 0) {
        return rc;
    }
    uint64_t timeout = PAIR_DEFAULT_TIMEOUT_S;
    if (timeout_s != NULL &&
        (rc = duet_cli_uint(cli, "--timeout", timeout_s, 1, 86400, &timeout)) != 0) {
        return rc;
    }
    bool joiner = npos == 1;
    if (joiner && listen != NULL) {
        return duet_cli_usage(cli, "a code is for joining: use --connect, --relay, or neither "
                                   "(LAN), not --listen");
    }
    if (!joiner && connect != NULL) {
        return duet_cli_usage(cli, "--connect needs the partner's code: duet pair CODE "
                                   "--connect HOST:PORT");
    }
    if ((listen != NULL) + (connect != NULL) + (relay != NULL) > 1) {
        return duet_cli_usage(cli, "choose one way to meet: --listen, --connect or --relay");
    }

    pair_run_t *r = calloc(1, sizeof *r);
    if (r == NULL) {
        return duet_cli_fail(cli, "pair", DUET_ENOMEM);
    }
    r->cli = cli;
    r->role = joiner ? DUET_PAIRING_JOINER : DUET_PAIRING_LISTENER;
    duet_err_t err = DUET_OK;
    int exit_code = DUET_EXIT_FAIL;

    if (joiner) {
        /* A misspelt word is refused here, before anyone is contacted. */
        err = duet_code_parse(&r->code, pos[0], strlen(pos[0]));
        if (err != DUET_OK) {
            free(r);
            return duet_cli_failf(cli, "pair",
                                  "'%s' is not a pairing code (NUMBER-WORD-WORD, with words "
                                  "from duet's list): check it for typos",
                                  pos[0]);
        }
    }
    if ((rc = duet_cli_open(cli, &r->st)) != 0) {
        duet_code_dispose(&r->code);
        free(r);
        return rc;
    }
    if ((err = duet_identity_load(r->st, &r->id)) != DUET_OK) {
        goto fail;
    }
    if (duet_partner_exists(r->st)) {
        err = DUET_EALREADYPAIRED;
        goto fail;
    }
    if (!joiner) {
        err = duet_code_generate(&r->code, 0, cli->rng);
        if (err != DUET_OK) {
            goto fail;
        }
    }
    r->eng = sodium_malloc(sizeof *r->eng);
    r->ratchet_priv = sodium_malloc(32);
    if (r->eng == NULL || r->ratchet_priv == NULL) {
        err = DUET_ENOMEM;
        goto fail;
    }
    duet_crypto_x25519_keypair(r->ratchet_pub, r->ratchet_priv, &cli->rng);
    duet_pairing_self_t self = {r->id.pk, r->id.sk, r->ratchet_pub, r->id.name,
                                strlen(r->id.name)};
    if ((err = duet_pairing_init(r->eng, r->role, &r->code, &self, cli->rng)) != DUET_OK) {
        goto fail;
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

    duet_pairway_callbacks_t wcb = {r, way_code, way_open, way_message, way_closed};
    duet_pairway_spec_t spec = {
        .loop = &r->loop,
        .listen = listen,
        .connect = connect,
        .relay = relay,
        .nameplate = r->code.nameplate,
        .joiner = joiner,
        .rng = cli->rng,
    };
    err = duet_pairway_start(&spec, &wcb, &r->way);
    if (err != DUET_OK) {
        stop(r, err);
    }
    if (err == DUET_OK) {
        uv_run(&r->loop, UV_RUN_DEFAULT);
        err = r->result;
    }
    uv_walk(&r->loop, close_walk, NULL);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    (void)uv_loop_close(&r->loop);
    if (err == DUET_OK) {
        exit_code = DUET_EXIT_OK;
        goto done;
    }
fail:
    if (pair_what(err) != NULL) {
        duet_cli_failf(cli, "pair", "%s", pair_what(err));
    } else if (err == DUET_EADDR) {
        duet_cli_failf(cli, "pair", "'%s' is not an address (HOST:PORT, numeric)",
                       listen ? listen : connect ? connect : "");
    } else {
        duet_cli_fail(cli, "pair", err);
    }
done:
    if (r->eng != NULL) {
        duet_pairing_dispose(r->eng);
        sodium_free(r->eng);
    }
    if (r->ratchet_priv != NULL) {
        sodium_free(r->ratchet_priv);
    }
    duet_code_dispose(&r->code);
    duet_identity_dispose(&r->id);
    duet_store_close(r->st);
    free(r);
    return exit_code;
}

int duet_cmd_verify(duet_cli_t *cli, int argc, char **argv)
{
    bool confirm = false;
    const char *pos[1];
    size_t npos;
    const duet_opt_t opts[] = {{"--confirm", DUET_OPT_FLAG, &confirm}};
    int rc = duet_cli_parse(cli, argc, argv, opts, 1, pos, 0, &npos);
    if (rc != 0) {
        return rc;
    }
    duet_store_t *st;
    if ((rc = duet_cli_open(cli, &st)) != 0) {
        return rc;
    }
    duet_identity_t id;
    duet_partner_t p;
    duet_err_t err = duet_identity_load(st, &id);
    if (err == DUET_OK) {
        err = duet_partner_load(st, &p);
        if (err == DUET_OK && confirm) {
            if ((err = duet_store_begin(st)) == DUET_OK) {
                err = duet_partner_set_verified(st, true);
                err = err == DUET_OK ? duet_store_commit(st) : err;
                if (err != DUET_OK) {
                    duet_store_rollback(st);
                }
            }
            p.verified = err == DUET_OK;
        }
    }
    duet_store_close(st);
    if (err != DUET_OK) {
        if (err != DUET_ENOTPAIRED) {
            duet_identity_dispose(&id);
        }
        return duet_cli_fail(cli, "verify", err);
    }
    duet_safety_t sn;
    duet_safety_number(id.pk, p.identity_pk, &sn);
    duet_identity_dispose(&id);
    if (cli->json) {
        duet_json_obj(&cli->j);
        duet_json_kstr(&cli->j, "safety_number", sn.text);
        duet_json_kbool(&cli->j, "verified", p.verified);
        duet_json_end(&cli->j);
        duet_cli_emit(cli);
    } else {
        printf("safety number  %s\n", sn.text);
        printf("%s\n", p.verified ? "verified: you confirmed it matches your partner's"
                                  : "not verified yet: compare it with your partner's screen "
                                    "(in person or on a call), then: duet verify --confirm");
    }
    return DUET_EXIT_OK;
}
