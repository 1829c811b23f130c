/* duet init, id, status: the device itself. */
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "cli.h"
#include "commands.h"
#include "identity.h"
#include "outbox.h"
#include "partner.h"

/* The default display name: the login name, if it is a valid name, else "me". */
static const char *default_name(void)
{
    const char *u = getenv("USER");
    if (u == NULL || u[0] == 0) {
        struct passwd *pw = getpwuid(getuid());
        u = pw ? pw->pw_name : NULL;
    }
    return (u != NULL && duet_identity_name_valid(u, strlen(u))) ? u : "me";
}

int duet_cmd_init(duet_cli_t *cli, int argc, char **argv)
{
    const char *name = NULL, *passfile = NULL, *pos[1];
    bool ask = false;
    size_t npos;
    const duet_opt_t opts[] = {
        {"--name", DUET_OPT_STR, &name},
        {"--passphrase-file", DUET_OPT_STR, &passfile},
        {"--passphrase", DUET_OPT_FLAG, &ask},
    };
    int rc = duet_cli_parse(cli, argc, argv, opts, 3, pos, 0, &npos);
    if (rc != 0) {
        return rc;
    }
    if (cli->home[0] == 0) {
        return duet_cli_failf(cli, "init", "no --home, DUET_HOME or HOME to put the device in");
    }
    if (name == NULL) {
        name = default_name();
    }
    if (!duet_identity_name_valid(name, strlen(name))) {
        return duet_cli_usage(cli, "--name: 1 to %u bytes of text without control characters",
                              DUET_NAME_MAX);
    }
    if (passfile == NULL) {
        passfile = cli->passphrase_file;
    }

    char pass[DUET_STORE_MAX_PASSPHRASE + 1];
    size_t plen = 0;
    duet_store_opts_t o = {.rng = cli->rng};
    duet_store_t *st = NULL;
    duet_identity_t id = {0};
    duet_err_t err;

    if (passfile != NULL || ask) {
        err = duet_cli_passphrase(cli, passfile, true, pass, sizeof pass, &plen);
        if (err != DUET_OK) {
            sodium_memzero(pass, sizeof pass);
            return duet_cli_fail(cli, "init: passphrase", err);
        }
        o.passphrase = (const uint8_t *)pass;
        o.passphrase_len = plen;
    }
    err = duet_store_create(cli->home, &o, &st);
    sodium_memzero(pass, sizeof pass);
    if (err != DUET_OK) {
        return duet_cli_fail(cli, "init", err);
    }
    if ((err = duet_store_begin(st)) == DUET_OK) {
        err = duet_identity_create(st, name, &id);
        if (err == DUET_OK) {
            err = duet_store_commit(st);
        }
        if (err != DUET_OK) {
            duet_store_rollback(st);
        }
    }
    if (err != DUET_OK) {
        duet_store_close(st);
        duet_store_remove(cli->home);
        return duet_cli_fail(cli, "init", err);
    }
    if (cli->json) {
        duet_json_obj(&cli->j);
        duet_json_kstr(&cli->j, "event", "initialized");
        duet_json_kstr(&cli->j, "device_id", id.device_id);
        duet_json_kstr(&cli->j, "name", id.name);
        duet_json_end(&cli->j);
        duet_cli_emit(cli);
    } else {
        printf("initialized %s%s%s  %s%s%s\n", duet_cli_bold(cli), id.name, duet_cli_reset(cli),
               duet_cli_dim(cli), id.device_id, duet_cli_reset(cli));
        printf("next: pair with your partner: duet pair --listen HOST:PORT (or duet pair)\n");
    }
    duet_identity_dispose(&id);
    duet_store_close(st);
    return DUET_EXIT_OK;
}

int duet_cmd_id(duet_cli_t *cli, int argc, char **argv)
{
    const char *pos[1];
    size_t npos;
    int rc = duet_cli_parse(cli, argc, argv, NULL, 0, pos, 0, &npos);
    if (rc != 0) {
        return rc;
    }
    duet_store_t *st;
    if ((rc = duet_cli_open(cli, &st)) != 0) {
        return rc;
    }
    duet_identity_t id;
    duet_err_t err = duet_identity_load(st, &id);
    duet_store_close(st);
    if (err != DUET_OK) {
        return duet_cli_fail(cli, "id", err);
    }
    char pk[65];
    sodium_bin2hex(pk, sizeof pk, id.pk, sizeof id.pk);
    if (cli->json) {
        duet_json_obj(&cli->j);
        duet_json_kstr(&cli->j, "device_id", id.device_id);
        duet_json_kstr(&cli->j, "name", id.name);
        duet_json_kstr(&cli->j, "public_key", pk);
        duet_json_end(&cli->j);
        duet_cli_emit(cli);
    } else {
        printf("name        %s\ndevice id   %s\npublic key  %s\n", id.name, id.device_id, pk);
    }
    duet_identity_dispose(&id);
    return DUET_EXIT_OK;
}

int duet_cmd_status(duet_cli_t *cli, int argc, char **argv)
{
    const char *pos[1];
    size_t npos;
    int rc = duet_cli_parse(cli, argc, argv, NULL, 0, pos, 0, &npos);
    if (rc != 0) {
        return rc;
    }
    duet_store_t *st;
    if ((rc = duet_cli_open(cli, &st)) != 0) {
        return rc;
    }
    duet_identity_t id;
    duet_partner_t p;
    uint64_t outbox = 0;
    duet_err_t err = duet_identity_load(st, &id);
    if (err != DUET_OK) {
        duet_store_close(st);
        return duet_cli_fail(cli, "status", err);
    }
    duet_identity_dispose(&id);
    duet_err_t perr = duet_partner_load(st, &p);
    err = perr == DUET_ENOTPAIRED ? DUET_OK : perr;
    if (err == DUET_OK) {
        err = duet_outbox_count(st, &outbox);
    }
    duet_store_close(st);
    if (err != DUET_OK) {
        return duet_cli_fail(cli, "status", err);
    }
    bool paired = perr == DUET_OK;
    char last[32] = "";
    if (paired && p.last_sync) {
        duet_cli_iso8601(p.last_sync, last);
    }
    if (cli->json) {
        duet_json_obj(&cli->j);
        duet_json_kbool(&cli->j, "paired", paired);
        duet_json_key(&cli->j, "partner");
        if (paired) {
            duet_json_obj(&cli->j);
            duet_json_kstr(&cli->j, "device_id", p.device_id);
            duet_json_kstr(&cli->j, "name", p.name);
            duet_json_kbool(&cli->j, "verified", p.verified);
            duet_json_end(&cli->j);
        } else {
            duet_json_null(&cli->j);
        }
        duet_json_kint(&cli->j, "outbox", (int64_t)outbox);
        duet_json_key(&cli->j, "last_sync");
        if (last[0]) {
            duet_json_str(&cli->j, last);
        } else {
            duet_json_null(&cli->j);
        }
        duet_json_end(&cli->j);
        duet_cli_emit(cli);
    } else {
        if (paired) {
            printf("paired with  %s%s%s  %s%s%s%s\n", duet_cli_bold(cli), p.name,
                   duet_cli_reset(cli), duet_cli_dim(cli), p.device_id, duet_cli_reset(cli),
                   p.verified ? "  (verified)" : "");
        } else {
            printf("not paired yet (duet pair)\n");
        }
        printf("outbox       %llu waiting to be delivered\n", (unsigned long long)outbox);
        printf("last sync    %s\n", last[0] ? last : "never");
    }
    return DUET_EXIT_OK;
}
