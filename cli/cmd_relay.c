/*
 * duet relay serve: run a relay (net/relay_server.h) until SIGINT or SIGTERM.
 *
 *   relay serve --listen HOST:PORT --data DIR [--config FILE] [--url-host HOST]
 *               [--SETTING VALUE]...
 *
 * Settings come from the defaults, then the config file, then the flags (docs/relay.md).
 * Prints {"event":"listening","url":S} once it listens (text: "listening on URL"), one
 * line per problem on stderr, and {"event":"stopped",...} with its counters at the end.
 * Needs no home: a relay is not a device.
 */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "cli.h"
#include "commands.h"
#include "relay_server.h"
#include "relayd.h"

#define RELAY_CONFIG_MAX   (64u << 10)
#define RELAY_MAX_SETTINGS 32u

typedef struct relay_run {
    duet_cli_t *cli;
    duet_relay_server_t *srv;
    uv_signal_t sigint, sigterm;
} relay_run_t;

static void on_log(void *ctx, const char *line)
{
    (void)ctx;
    fprintf(stderr, "duet: relay: %s\n", line);
}

static void on_signal(uv_signal_t *h, int signum)
{
    relay_run_t *r = h->data;
    (void)signum;
    uv_signal_stop(&r->sigint);
    uv_signal_stop(&r->sigterm);
    uv_close((uv_handle_t *)&r->sigint, NULL);
    uv_close((uv_handle_t *)&r->sigterm, NULL);
    duet_relay_server_stop(r->srv);
}

static void emit_listening(duet_cli_t *cli, const char *url)
{
    if (cli->json) {
        duet_json_obj(&cli->j);
        duet_json_kstr(&cli->j, "event", "listening");
        duet_json_kstr(&cli->j, "url", url);
        duet_json_end(&cli->j);
        duet_cli_emit(cli);
    } else {
        printf("listening on %s\n", url);
        fflush(stdout);
    }
}

static void emit_stopped(duet_cli_t *cli, const duet_relay_server_counters_t *n)
{
    if (cli->json) {
        duet_json_obj(&cli->j);
        duet_json_kstr(&cli->j, "event", "stopped");
        duet_json_kint(&cli->j, "connections", (int64_t)n->accepted);
        duet_json_kint(&cli->j, "stored", (int64_t)n->engine.puts);
        duet_json_kint(&cli->j, "collected", (int64_t)n->engine.deletes);
        duet_json_kint(
            &cli->j, "refused",
            (int64_t)(n->engine.refused_cap + n->engine.refused_quota + n->engine.refused_other));
        duet_json_end(&cli->j);
        duet_cli_emit(cli);
    } else {
        printf("stopped  %llu connections, %llu objects stored, %llu collected\n",
               (unsigned long long)n->accepted, (unsigned long long)n->engine.puts,
               (unsigned long long)n->engine.deletes);
    }
}

/* Read and apply a config file. Returns 0 or the exit status after printing why. */
static int apply_config(duet_cli_t *cli, duet_relay_config_t *cfg, const char *path)
{
    uint8_t *text;
    size_t len, line;
    duet_err_t err = duet_cli_read_all(path, RELAY_CONFIG_MAX, &text, &len);
    if (err == DUET_ETOOBIG) {
        return duet_cli_failf(cli, "relay serve", "%s: larger than 64 KiB", path);
    }
    if (err != DUET_OK) {
        return duet_cli_failf(cli, "relay serve", "%s: %s", path, duet_strerror(err));
    }
    err = duet_relay_config_parse(cfg, (const char *)text, len, &line);
    free(text);
    if (err == DUET_EINVAL) {
        return duet_cli_failf(cli, "relay serve",
                              "%s line %zu: not 'setting = number' with a known setting", path,
                              line);
    }
    if (err != DUET_OK) {
        return duet_cli_failf(cli, "relay serve", "%s line %zu: value out of range", path, line);
    }
    return 0;
}

static int serve(duet_cli_t *cli, int argc, char **argv)
{
    const char *listen = NULL, *data = NULL, *config = NULL, *url_host = NULL, *pos[1];
    const char *values[RELAY_MAX_SETTINGS] = {NULL};
    char names[RELAY_MAX_SETTINGS][48];
    duet_opt_t opts[4 + RELAY_MAX_SETTINGS];
    size_t nopts = 0, nset = 0, npos;
    opts[nopts++] = (duet_opt_t){"--listen", DUET_OPT_STR, &listen};
    opts[nopts++] = (duet_opt_t){"--data", DUET_OPT_STR, &data};
    opts[nopts++] = (duet_opt_t){"--config", DUET_OPT_STR, &config};
    opts[nopts++] = (duet_opt_t){"--url-host", DUET_OPT_STR, &url_host};
    for (const char *n; (n = duet_relay_config_name(nset)) != NULL && nset < RELAY_MAX_SETTINGS;
         nset++) {
        (void)snprintf(names[nset], sizeof names[nset], "--%s", n);
        opts[nopts++] = (duet_opt_t){names[nset], DUET_OPT_STR, &values[nset]};
    }
    int rc = duet_cli_parse(cli, argc, argv, opts, nopts, pos, 0, &npos);
    if (rc != 0) {
        return rc;
    }
    if (listen == NULL || data == NULL) {
        return duet_cli_usage(cli, "needs --listen HOST:PORT and --data DIR");
    }
    duet_relay_config_t cfg;
    duet_relay_config_default(&cfg);
    if (config != NULL && (rc = apply_config(cli, &cfg, config)) != 0) {
        return rc;
    }
    for (size_t i = 0; i < nset; i++) {
        if (values[i] != NULL && duet_relay_config_set(&cfg, names[i] + 2, strlen(names[i] + 2),
                                                       values[i], strlen(values[i])) != DUET_OK) {
            return duet_cli_usage(cli, "%s: '%s' is not a number in range", names[i], values[i]);
        }
    }

    /* Each connection's link holds two 64 KiB buffers of which an idle connection touches a
     * page or two. A fixed mmap threshold keeps such blocks out of the heap, where calloc
     * would have to clear (and so make resident) memory a freed connection dirtied; glibc's
     * default threshold grows after the first frees and would put them there. */
    (void)mallopt(M_MMAP_THRESHOLD, 96 * 1024);
    (void)mallopt(M_TRIM_THRESHOLD, 16 * 1024 * 1024); /* no brk() churn under load */
    relay_run_t r = {.cli = cli};
    duet_relay_server_opts_t o = {
        .listen = listen,
        .data_dir = data,
        .url_host = url_host,
        .cfg = cfg,
        .rng = cli->rng,
        .on_log = on_log,
        .ctx = &r,
    };
    uv_loop_t loop;
    const char *what;
    uv_loop_init(&loop);
    duet_err_t err = duet_relay_server_start(&loop, &o, &r.srv, &what);
    if (err != DUET_OK) {
        (void)uv_loop_close(&loop);
        if (err == DUET_EADDR) {
            return duet_cli_failf(cli, "relay serve", "'%s' is not an address (HOST:PORT, numeric)",
                                  listen);
        }
        if (err == DUET_EADDRINUSE) {
            return duet_cli_failf(cli, "relay serve", "%s is already in use", listen);
        }
        if (err == DUET_ELOCKED) {
            return duet_cli_failf(cli, "relay serve", "%s: another relay is using this folder",
                                  data);
        }
        if (err == DUET_EPERM && strcmp(what, "key file") == 0) {
            return duet_cli_failf(cli, "relay serve",
                                  "%s/%s: not usable (it must be the relay's own, mode 0600)", data,
                                  DUET_RELAY_KEY_FILE);
        }
        return duet_cli_failf(cli, "relay serve", "%s: %s", what, duet_strerror(err));
    }
    uv_signal_init(&loop, &r.sigint);
    uv_signal_init(&loop, &r.sigterm);
    r.sigint.data = r.sigterm.data = &r;
    uv_signal_start(&r.sigint, on_signal, SIGINT);
    uv_signal_start(&r.sigterm, on_signal, SIGTERM);
    emit_listening(cli, duet_relay_server_url(r.srv));
    (void)uv_run(&loop, UV_RUN_DEFAULT);
    duet_relay_server_counters_t n = duet_relay_server_counters(r.srv);
    duet_relay_server_free(r.srv);
    (void)uv_loop_close(&loop);
    emit_stopped(cli, &n);
    return DUET_EXIT_OK;
}

int duet_cmd_relay(duet_cli_t *cli, int argc, char **argv)
{
    if (argc >= 1 && strcmp(argv[0], "serve") == 0) {
        cli->sub = "serve";
        return serve(cli, argc - 1, argv + 1);
    }
    if (argc >= 1 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
        duet_cli_help(cli->cmd, stdout);
        return -1;
    }
    return duet_cli_usage(cli, "which relay command? (serve)");
}
