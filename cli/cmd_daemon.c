/* duet daemon, watch: staying in touch, and watching it happen. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include "cli.h"
#include "commands.h"
#include "control.h"
#include "daemon.h"

typedef struct daemon_out {
    duet_cli_t *cli;
} daemon_out_t;

/* Text for people, from one event record. */
static void event_text(const char *json, size_t len)
{
    json_error_t jerr;
    json_t *o = json_loadb(json, len, 0, &jerr);
    if (o == NULL) {
        return;
    }
    const char *ev = json_string_value(json_object_get(o, "event"));
    const char *id = json_string_value(json_object_get(o, "id"));
    const char *kind = json_string_value(json_object_get(o, "kind"));
    if (ev == NULL) {
        json_decref(o);
        return;
    }
    if (strcmp(ev, "listening") == 0) {
        const char *addr = json_string_value(json_object_get(o, "addr"));
        printf("listening%s%s\n", addr ? " on " : "", addr ? addr : "");
    } else if (strcmp(ev, "received") == 0) {
        printf("a %s arrived from your partner  %s\n", kind ? kind : "message", id ? id : "");
    } else if (strcmp(ev, "delivered") == 0) {
        printf("delivered  %s\n", id ? id : "");
    } else if (strcmp(ev, "read") == 0) {
        printf("read by your partner  %s\n", id ? id : "");
    } else if (strcmp(ev, "partner_online") == 0) {
        printf("your partner is online\n");
    } else if (strcmp(ev, "partner_offline") == 0) {
        printf("your partner went offline\n");
    } else if (strcmp(ev, "synced") == 0) {
        printf("in sync\n");
    } else if (strcmp(ev, "stopped") == 0) {
        printf("stopped\n");
    }
    fflush(stdout);
    json_decref(o);
}

static void on_event(void *ctx, const char *json, size_t len)
{
    daemon_out_t *o = ctx;
    if (o->cli->json) {
        /* Flushed once per loop iteration (on_tick), not once per event. */
        fwrite(json, 1, len, stdout);
        fputc('\n', stdout);
    } else {
        event_text(json, len);
    }
}

static void on_tick(void *ctx)
{
    (void)ctx;
    fflush(stdout);
}

static void on_log(void *ctx, const char *line)
{
    (void)ctx;
    fprintf(stderr, "duet: daemon: %s\n", line);
}

int duet_cmd_daemon(duet_cli_t *cli, int argc, char **argv)
{
    const char *listen = NULL, *relay = NULL, *idle_s = NULL, *pos[1];
    bool no_lan = false;
    size_t npos;
    const duet_opt_t opts[] = {
        {"--listen", DUET_OPT_STR, &listen},
        {"--relay", DUET_OPT_STR, &relay},
        {"--no-lan", DUET_OPT_FLAG, &no_lan},
        {"--idle-timeout", DUET_OPT_STR, &idle_s},
    };
    int rc = duet_cli_parse(cli, argc, argv, opts, 4, pos, 0, &npos);
    if (rc != 0) {
        return rc;
    }
    uint64_t idle = 0;
    if (idle_s != NULL && (rc = duet_cli_uint(cli, "--idle-timeout", idle_s, 1, 3600, &idle))) {
        return rc;
    }
    duet_store_t *st;
    if ((rc = duet_cli_open(cli, &st)) != 0) {
        return rc;
    }
    int lockfd;
    long pid;
    duet_err_t err = duet_daemon_lock(cli->home, &lockfd, &pid);
    if (err == DUET_EDAEMON) {
        duet_store_close(st);
        return duet_cli_failf(cli, "daemon", "another duet daemon is running for this home "
                                             "(pid %ld)",
                              pid);
    }
    if (err != DUET_OK) {
        duet_store_close(st);
        return duet_cli_fail(cli, "daemon: lock", err);
    }
    daemon_out_t out = {cli};
    duet_daemon_opts_t o = {
        .listen = listen,
        .relay = relay,
        .lan = !no_lan,
        .idle_ms = idle * 1000u,
        .on_event = on_event,
        .on_log = on_log,
        .on_tick = on_tick,
        .ctx = &out,
    };
    uv_loop_t loop;
    uv_loop_init(&loop);
    err = duet_daemon_run(&loop, st, &o);
    (void)uv_loop_close(&loop);
    duet_store_close(st);
    close(lockfd);
    if (err == DUET_EADDRINUSE) {
        return duet_cli_failf(cli, "daemon", "%s is already in use", listen ? listen : "");
    }
    if (err == DUET_EADDR) {
        return duet_cli_failf(cli, "daemon", "'%s' is not an address (HOST:PORT, numeric)",
                              listen ? listen : "");
    }
    if (err != DUET_OK) {
        return duet_cli_fail(cli, "daemon", err);
    }
    return DUET_EXIT_OK;
}

int duet_cmd_watch(duet_cli_t *cli, int argc, char **argv)
{
    const char *pos[1];
    size_t npos;
    int rc = duet_cli_parse(cli, argc, argv, NULL, 0, pos, 0, &npos);
    if (rc != 0) {
        return rc;
    }
    duet_err_t err;
    int fd = duet_control_watch(cli->home, &err);
    if (fd < 0) {
        if (err == DUET_ENOENT) {
            return duet_cli_failf(cli, "watch", "no daemon is running for this home (start one: "
                                                "duet daemon)");
        }
        return duet_cli_fail(cli, "watch", err);
    }
    char buf[4096];
    size_t have = 0;
    for (;;) {
        ssize_t r = read(fd, buf + have, sizeof buf - have);
        if (r <= 0) {
            break;
        }
        have += (size_t)r;
        char *nl;
        while ((nl = memchr(buf, '\n', have)) != NULL) {
            size_t len = (size_t)(nl - buf);
            if (cli->json) {
                fwrite(buf, 1, len + 1, stdout);
                fflush(stdout);
            } else {
                event_text(buf, len);
            }
            memmove(buf, nl + 1, have - len - 1);
            have -= len + 1;
        }
        if (have == sizeof buf) {
            have = 0; /* a line longer than any event: drop it */
        }
    }
    close(fd);
    return DUET_EXIT_OK;
}
