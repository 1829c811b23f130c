/* duet note, inbox: writing to the partner and reading the conversation. */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "cli.h"
#include "commands.h"
#include "control.h"
#include "identity.h"
#include "items.h"
#include "outbox.h"

int duet_cmd_note(duet_cli_t *cli, int argc, char **argv)
{
    const char *pos[1];
    size_t npos;
    int rc = duet_cli_parse(cli, argc, argv, NULL, 0, pos, 1, &npos);
    if (rc != 0) {
        return rc;
    }
    if (npos != 1) {
        return duet_cli_usage(cli, "what should the note say? (TEXT, or - for standard input)");
    }
    const char *text = pos[0];
    size_t len = strlen(text);
    uint8_t *in = NULL;
    duet_err_t err;
    if (strcmp(text, "-") == 0) {
        err = duet_cli_read_all("-", DUET_NOTE_MAX, &in, &len);
        if (err == DUET_ETOOBIG) {
            return duet_cli_failf(cli, "note", "too long: a note holds at most 64 KiB");
        }
        if (err != DUET_OK) {
            return duet_cli_fail(cli, "note: standard input", err);
        }
        text = (const char *)in;
    }
    uint8_t *body = NULL;
    size_t body_len = 0;
    err = duet_note_encode(text, len, &body, &body_len);
    if (in != NULL) {
        sodium_memzero(in, len);
        free(in);
    }
    if (err != DUET_OK) {
        if (err == DUET_ETOOBIG) {
            return duet_cli_failf(cli, "note", "too long: a note holds at most 64 KiB");
        }
        if (err == DUET_EEMPTY) {
            return duet_cli_failf(cli, "note", "empty: there is nothing to send");
        }
        return duet_cli_fail(cli, "note", err);
    }

    duet_store_t *st;
    if ((rc = duet_cli_open(cli, &st)) != 0) {
        sodium_memzero(body, body_len);
        free(body);
        return rc;
    }
    duet_item_t it;
    err = duet_store_begin(st);
    if (err == DUET_OK) {
        err = duet_outbox_queue(st, DUET_KIND_NOTE, body, body_len, duet_cli_now_ms(), it.id);
        if (err == DUET_OK) {
            err = duet_store_commit(st);
        }
        if (err != DUET_OK) {
            duet_store_rollback(st);
        }
    }
    sodium_memzero(body, body_len);
    free(body);
    if (err != DUET_OK) {
        duet_store_close(st);
        return duet_cli_fail(cli, "note", err);
    }
    duet_control_kick(cli->home); /* a running daemon sends it now */
    duet_store_close(st);
    char hex[33];
    duet_item_id_hex(it.id, hex);
    if (cli->json) {
        duet_json_obj(&cli->j);
        duet_json_kstr(&cli->j, "event", "queued");
        duet_json_kstr(&cli->j, "id", hex);
        duet_json_end(&cli->j);
        duet_cli_emit(cli);
    } else {
        printf("queued  %s%s%s\n", duet_cli_dim(cli), hex, duet_cli_reset(cli));
    }
    return DUET_EXIT_OK;
}

/* One inbox record. Check-in kinds (check-in answered, pause, resume, milestone) are
 * rendered by cmd_ritual.c: see the marked lines. */
static void inbox_record(duet_cli_t *cli, const duet_item_t *it, const char *partner)
{
    char hex[33], at[32];
    const char *text = NULL;
    size_t tlen = 0;
    bool ritual = duet_cli_ritual_kind(it->kind); /* check-in kinds */
    duet_item_id_hex(it->id, hex);
    duet_cli_iso8601(it->hlc >> 16, at);
    if (it->kind == DUET_KIND_NOTE && duet_note_decode(it->body, it->body_len, &text, &tlen)) {
        text = NULL; /* a body that does not decode is shown without text */
    }
    if (cli->json) {
        duet_json_obj(&cli->j);
        duet_json_kstr(&cli->j, "id", hex);
        duet_json_kstr(&cli->j, "kind", duet_kind_name(it->kind));
        duet_json_kstr(&cli->j, "from", it->mine ? "me" : "partner");
        if (ritual) {
            duet_cli_ritual_fields(cli, it); /* check-in kinds: "text" and their own */
        } else {
            duet_json_key(&cli->j, "text");
            if (text != NULL) {
                duet_json_strn(&cli->j, text, tlen);
            } else {
                duet_json_null(&cli->j);
            }
        }
        duet_json_kstr(&cli->j, "at", at);
        duet_json_kstr(&cli->j, "status", duet_status_name(it->status));
        duet_json_end(&cli->j);
        duet_cli_emit(cli);
        return;
    }
    /* "2026-11-26 09:30  me       delivered  text" */
    at[10] = ' ';
    at[16] = 0;
    printf("%s%s%s  %-7s  %-9s  ", duet_cli_dim(cli), at, duet_cli_reset(cli),
           it->mine ? "me" : "partner", duet_status_name(it->status));
    if (ritual) {
        duet_cli_ritual_line(cli, it, partner); /* check-in kinds */
    } else if (text != NULL) {
        /* Continuation lines line up under the first line's text. */
        size_t start = 0;
        for (size_t i = 0; i <= tlen; i++) {
            if (i == tlen || text[i] == '\n') {
                if (start > 0 && i > start) {
                    printf("%*s", 38, "");
                }
                duet_cli_print_text(cli, text + start, i - start);
                if (i < tlen || start < tlen) {
                    putchar('\n');
                }
                start = i + 1;
                if (i + 1 == tlen) {
                    break; /* a final newline ends the last line */
                }
            }
        }
    } else {
        printf("(%s)\n", duet_kind_name(it->kind));
    }
}

int duet_cmd_inbox(duet_cli_t *cli, int argc, char **argv)
{
    const char *limit_s = NULL, *pos[1];
    bool peek = false;
    size_t npos;
    const duet_opt_t opts[] = {
        {"--limit", DUET_OPT_STR, &limit_s},
        {"--peek", DUET_OPT_FLAG, &peek},
    };
    int rc = duet_cli_parse(cli, argc, argv, opts, 2, pos, 0, &npos);
    if (rc != 0) {
        return rc;
    }
    uint64_t limit = 0;
    if (limit_s != NULL &&
        (rc = duet_cli_uint(cli, "--limit", limit_s, 1, DUET_ITEMS_LIST_MAX, &limit)) != 0) {
        return rc;
    }
    duet_store_t *st;
    if ((rc = duet_cli_open(cli, &st)) != 0) {
        return rc;
    }
    duet_item_t *items = NULL;
    size_t n = 0;
    duet_err_t err = duet_items_list(st, (size_t)limit, &items, &n);
    bool marked = false;
    if (err == DUET_OK && !peek) {
        for (size_t i = 0; i < n; i++) {
            marked |= !items[i].mine && items[i].status == DUET_STATUS_UNREAD;
        }
        err = duet_inbox_mark_read(st, items, n, duet_cli_now_ms());
    }
    if (err != DUET_OK) {
        duet_items_free(items, n);
        duet_store_close(st);
        return duet_cli_fail(cli, "inbox", err);
    }
    char partner[DUET_NAME_MAX + 1];
    duet_cli_ritual_banner(cli, st, partner, sizeof partner); /* a pause, first of all */
    if (marked) {
        duet_control_kick(cli->home); /* the read receipt goes out now if a daemon runs */
    }
    duet_store_close(st);
    if (n == 0 && !cli->json) {
        printf("nothing here yet\n");
    }
    for (size_t i = 0; i < n; i++) {
        inbox_record(cli, &items[i], partner);
    }
    duet_items_free(items, n);
    return DUET_EXIT_OK;
}
