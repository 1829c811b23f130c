/* duet pause, resume, agree, milestone: the gentle signals around check-ins
 * (core/checkin.h), and how their lines look in the inbox. */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "checkin.h"
#include "cli.h"
#include "commands.h"
#include "control.h"
#include "identity.h"
#include "items.h"
#include "partner.h"

/* Run one write in a transaction. */
#define IN_TX(st, err, expr)                                                                       \
    do {                                                                                           \
        if (((err) = duet_store_begin(st)) == DUET_OK) {                                           \
            (err) = (expr);                                                                        \
            (err) = (err) == DUET_OK ? duet_store_commit(st) : (err);                              \
            if ((err) != DUET_OK) {                                                                \
                duet_store_rollback(st);                                                           \
            }                                                                                      \
        }                                                                                          \
    } while (0)

static int fail_unpaired(duet_cli_t *cli, const char *what, duet_err_t err)
{
    if (err == DUET_ENOTPAIRED) {
        return duet_cli_failf(cli, what,
                              "this device is not paired yet (pair with your partner "
                              "first: duet pair)");
    }
    return duet_cli_fail(cli, what, err);
}

static void event_id(duet_cli_t *cli, const char *event, const char *key, const uint8_t id[16])
{
    char hex[33];
    duet_item_id_hex(id, hex);
    duet_json_obj(&cli->j);
    duet_json_kstr(&cli->j, "event", event);
    duet_json_kstr(&cli->j, key, hex);
}

/* ---- pause and resume ------------------------------------------------------------------ */

int duet_cmd_pause(duet_cli_t *cli, int argc, char **argv)
{
    const char *pos[1], *until = NULL, *note = NULL;
    size_t npos;
    const duet_opt_t opts[] = {{"--until", DUET_OPT_STR, &until}, {"--note", DUET_OPT_STR, &note}};
    int rc = duet_cli_parse(cli, argc, argv, opts, 2, pos, 0, &npos);
    if (rc != 0) {
        return rc;
    }
    duet_checkin_pause_t p;
    memset(&p, 0, sizeof p);
    uint64_t now = duet_cli_now_ms();
    if (until != NULL) {
        if (duet_checkin_day_parse(until, strlen(until), &p.until_day) != DUET_OK) {
            return duet_cli_usage(cli, "--until: a date as YYYY-MM-DD, not '%s'", until);
        }
        if (p.until_day < duet_checkin_local_day(now)) {
            return duet_cli_usage(cli, "--until: %s has passed already", until);
        }
        p.has_until = true;
    }
    if (note != NULL) {
        size_t nl = strlen(note);
        if (nl > DUET_CHECKIN_NOTE_MAX) {
            return duet_cli_usage(cli, "--note: at most %u bytes", DUET_CHECKIN_NOTE_MAX);
        }
        memcpy(p.note, note, nl);
    }
    duet_store_t *st;
    if ((rc = duet_cli_open(cli, &st)) != 0) {
        return rc;
    }
    uint8_t id[DUET_ITEM_ID_BYTES];
    duet_err_t err;
    IN_TX(st, err, duet_checkin_pause(st, &p, now, id));
    duet_store_close(st);
    if (err == DUET_EINVAL) {
        return duet_cli_failf(cli, "pause", "--note: text without control characters, please");
    }
    if (err != DUET_OK) {
        return fail_unpaired(cli, "pause", err);
    }
    duet_control_kick(cli->home); /* a running daemon sends it now */
    if (cli->json) {
        event_id(cli, "paused", "id", id);
        if (until != NULL) {
            duet_json_kstr(&cli->j, "until", until);
        } else {
            duet_json_knull(&cli->j, "until");
        }
        duet_json_end(&cli->j);
        duet_cli_emit(cli);
    } else {
        printf("\xe2\x8f\xb8  sent: let's slow down%s%s. Your partner will see it first thing.\n",
               until ? " until " : "", until ? until : "");
    }
    return DUET_EXIT_OK;
}

int duet_cmd_resume(duet_cli_t *cli, int argc, char **argv)
{
    const char *pos[1], *note = NULL;
    size_t npos;
    const duet_opt_t opts[] = {{"--note", DUET_OPT_STR, &note}};
    int rc = duet_cli_parse(cli, argc, argv, opts, 1, pos, 0, &npos);
    if (rc != 0) {
        return rc;
    }
    if (note != NULL && strlen(note) > DUET_CHECKIN_NOTE_MAX) {
        return duet_cli_usage(cli, "--note: at most %u bytes", DUET_CHECKIN_NOTE_MAX);
    }
    duet_store_t *st;
    if ((rc = duet_cli_open(cli, &st)) != 0) {
        return rc;
    }
    uint8_t id[DUET_ITEM_ID_BYTES];
    duet_err_t err;
    IN_TX(st, err, duet_checkin_resume(st, note, duet_cli_now_ms(), id));
    duet_store_close(st);
    if (err == DUET_EINVAL) {
        return duet_cli_failf(cli, "resume", "--note: text without control characters, please");
    }
    if (err != DUET_OK) {
        return fail_unpaired(cli, "resume", err);
    }
    duet_control_kick(cli->home);
    if (cli->json) {
        event_id(cli, "resumed", "id", id);
        duet_json_end(&cli->j);
        duet_cli_emit(cli);
    } else {
        printf("\xe2\x96\xb6  sent: ready to go on again.\n");
    }
    return DUET_EXIT_OK;
}

/* ---- agreements ----------------------------------------------------------------------- */

static int agree_fail(duet_cli_t *cli, const char *what, const char *arg, duet_err_t err)
{
    switch (err) {
    case DUET_ENOENT:
        return duet_cli_failf(cli, what, "no agreement '%s' (see: duet agree list)", arg);
    case DUET_EINVAL:
        return duet_cli_failf(cli, what, "'%s' matches more than one; give more of the id", arg);
    case DUET_EEMPTY:
        return duet_cli_failf(cli, what, "empty: what would you like to agree on?");
    case DUET_ETOOBIG:
        return duet_cli_failf(cli, what, "at most %u bytes", DUET_CHECKIN_AGREE_MAX);
    case DUET_EUTF8:
        return duet_cli_failf(cli, what, "text must be UTF-8 without control characters");
    default:
        return fail_unpaired(cli, what, err);
    }
}

static void agreement_json(duet_cli_t *cli, const duet_checkin_agreement_t *a)
{
    char hex[33];
    duet_item_id_hex(a->id, hex);
    duet_json_kstr(&cli->j, "agreement", hex);
    duet_json_kint(&cli->j, "version", (int64_t)a->version);
    duet_json_kstr(&cli->j, "text", a->text);
    duet_json_kbool(&cli->j, "agreed", a->accepted_me && a->accepted_partner);
    duet_json_kbool(&cli->j, "accepted_by_me", a->accepted_me);
    duet_json_kbool(&cli->j, "accepted_by_partner", a->accepted_partner);
    duet_json_kstr(&cli->j, "written_by", a->mine ? "me" : "partner");
}

static int agree_list(duet_cli_t *cli, duet_store_t *st)
{
    duet_checkin_agreement_t *v;
    size_t n;
    duet_err_t err = duet_checkin_agree_list(st, &v, &n);
    duet_store_close(st);
    if (err != DUET_OK) {
        return duet_cli_fail(cli, "agree list", err);
    }
    if (n == 0 && !cli->json) {
        printf("no agreements yet (write one: duet agree add \"...\")\n");
    }
    for (size_t i = 0; i < n; i++) {
        if (cli->json) {
            duet_json_obj(&cli->j);
            agreement_json(cli, &v[i]);
            duet_json_end(&cli->j);
            duet_cli_emit(cli);
            continue;
        }
        char hex[33];
        duet_item_id_hex(v[i].id, hex);
        const char *state = v[i].accepted_me && v[i].accepted_partner ? "agreed"
                            : v[i].accepted_me                        ? "waiting for your partner"
                                               : "waiting for you (duet agree accept)";
        printf("%s%.8s%s  v%llu  %s%-11s%s", duet_cli_dim(cli), hex, duet_cli_reset(cli),
               (unsigned long long)v[i].version,
               v[i].accepted_me && v[i].accepted_partner ? duet_cli_bold(cli) : "", state,
               duet_cli_reset(cli));
        printf("\n    ");
        duet_cli_print_text(cli, v[i].text, strlen(v[i].text));
        printf("\n");
    }
    sodium_memzero(v, n * sizeof *v);
    free(v);
    return DUET_EXIT_OK;
}

int duet_cmd_agree(duet_cli_t *cli, int argc, char **argv)
{
    const char *pos[3];
    size_t npos;
    if (argc >= 1 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
        duet_cli_help(cli->cmd, stdout);
        return -1;
    }
    if (argc < 1) {
        return duet_cli_usage(cli, "what? add TEXT, list, accept ID or change ID TEXT");
    }
    const char *sub = argv[0];
    size_t want = strcmp(sub, "list") == 0     ? 0
                  : strcmp(sub, "add") == 0    ? 1
                  : strcmp(sub, "accept") == 0 ? 1
                  : strcmp(sub, "change") == 0 ? 2
                                               : 9;
    if (want == 9) {
        return duet_cli_usage(cli, "no such thing: '%s' (add, list, accept, change)", sub);
    }
    cli->sub = sub;
    int rc = duet_cli_parse(cli, argc - 1, argv + 1, NULL, 0, pos, want, &npos);
    if (rc != 0) {
        return rc;
    }
    if (npos != want) {
        return duet_cli_usage(cli, "%s",
                              want == 1 && strcmp(sub, "add") == 0 ? "what should it say?"
                              : want == 2 ? "which agreement, and its new text?"
                                          : "which agreement? (see: duet agree list)");
    }
    duet_store_t *st;
    if ((rc = duet_cli_open(cli, &st)) != 0) {
        return rc;
    }
    if (want == 0) {
        return agree_list(cli, st);
    }
    char what[32];
    snprintf(what, sizeof what, "agree %s", sub);
    uint8_t id[DUET_CHECKIN_ID_BYTES];
    uint64_t now = duet_cli_now_ms();
    duet_err_t err = DUET_OK;
    if (strcmp(sub, "add") == 0) {
        IN_TX(st, err, duet_checkin_agree_add(st, pos[0], strlen(pos[0]), now, id));
    } else if ((err = duet_checkin_resolve_agreement(st, pos[0], id)) == DUET_OK) {
        if (strcmp(sub, "accept") == 0) {
            IN_TX(st, err, duet_checkin_agree_accept(st, id, now));
        } else {
            IN_TX(st, err, duet_checkin_agree_change(st, id, pos[1], strlen(pos[1]), now));
        }
    }
    duet_checkin_agreement_t *a = malloc(sizeof *a);
    if (err == DUET_OK) {
        err = a == NULL ? DUET_ENOMEM : duet_checkin_agree_get(st, id, a);
    }
    duet_store_close(st);
    if (err == DUET_EEXIST) {
        free(a);
        return duet_cli_failf(cli, what, "you have accepted this version already");
    }
    if (err != DUET_OK) {
        free(a);
        return agree_fail(cli, what, strcmp(sub, "add") == 0 ? "" : pos[0], err);
    }
    duet_control_kick(cli->home);
    const char *event = strcmp(sub, "add") == 0      ? "added"
                        : strcmp(sub, "accept") == 0 ? "accepted"
                                                     : "changed";
    bool agreed = a->accepted_me && a->accepted_partner;
    if (cli->json) {
        duet_json_obj(&cli->j);
        duet_json_kstr(&cli->j, "event", event);
        agreement_json(cli, a);
        duet_json_end(&cli->j);
        duet_cli_emit(cli);
    } else {
        char hex[33];
        duet_item_id_hex(a->id, hex);
        printf("%s  %s%.8s%s  v%llu  %s\n", event, duet_cli_dim(cli), hex, duet_cli_reset(cli),
               (unsigned long long)a->version,
               agreed ? "agreed by both of you"
                      : "it counts once your partner accepts this version too");
    }
    sodium_memzero(a, sizeof *a);
    free(a);
    return DUET_EXIT_OK;
}

/* ---- milestones ----------------------------------------------------------------------- */

int duet_cmd_milestone(duet_cli_t *cli, int argc, char **argv)
{
    const char *pos[1];
    size_t npos;
    int rc = duet_cli_parse(cli, argc, argv, NULL, 0, pos, 1, &npos);
    if (rc != 0) {
        return rc;
    }
    if (npos != 1) {
        return duet_cli_usage(cli, "what are you celebrating?");
    }
    duet_store_t *st;
    if ((rc = duet_cli_open(cli, &st)) != 0) {
        return rc;
    }
    uint8_t id[DUET_ITEM_ID_BYTES];
    duet_err_t err;
    IN_TX(st, err, duet_checkin_milestone(st, pos[0], strlen(pos[0]), duet_cli_now_ms(), id));
    duet_store_close(st);
    switch (err) {
    case DUET_OK:
        break;
    case DUET_EEMPTY:
        return duet_cli_failf(cli, "milestone", "empty: what are you celebrating?");
    case DUET_ETOOBIG:
        return duet_cli_failf(cli, "milestone", "at most %u bytes", DUET_CHECKIN_NOTE_MAX);
    case DUET_EUTF8:
        return duet_cli_failf(cli, "milestone", "text must be UTF-8 without control characters");
    default:
        return duet_cli_fail(cli, "milestone", err);
    }
    duet_control_kick(cli->home);
    if (cli->json) {
        event_id(cli, "queued", "id", id);
        duet_json_end(&cli->j);
        duet_cli_emit(cli);
    } else {
        printf("\xe2\x98\x85  a milestone, worth celebrating. It is in your history now.\n");
    }
    return DUET_EXIT_OK;
}

/* ---- inbox lines (called from cmd_note.c) --------------------------------------------- */

bool duet_cli_ritual_kind(uint32_t kind)
{
    return kind == DUET_KIND_CHECKIN || kind == DUET_KIND_PAUSE || kind == DUET_KIND_RESUME ||
           kind == DUET_KIND_MILESTONE;
}

void duet_cli_ritual_fields(duet_cli_t *cli, const duet_item_t *it)
{
    /* "text": a milestone's words, a pause's or resume's note, null for a check-in line. */
    duet_checkin_pause_t p;
    const char *t = NULL;
    size_t tl = 0;
    bool paused = (it->kind == DUET_KIND_PAUSE || it->kind == DUET_KIND_RESUME) &&
                  duet_checkin_pause_decode(it->body, it->body_len, &p) == DUET_OK;
    if (paused && p.note[0] != 0) {
        t = p.note;
        tl = strlen(p.note);
    } else if (it->kind == DUET_KIND_MILESTONE &&
               duet_checkin_milestone_decode(it->body, it->body_len, &t, &tl) != DUET_OK) {
        t = NULL;
    }
    duet_json_key(&cli->j, "text");
    if (t != NULL) {
        duet_json_strn(&cli->j, t, tl);
    } else {
        duet_json_null(&cli->j);
    }
    if (it->kind == DUET_KIND_CHECKIN) {
        duet_checkin_line_t l;
        duet_json_key(&cli->j, "checkin");
        if (duet_checkin_line_decode(it->body, it->body_len, &l) != DUET_OK) {
            duet_json_null(&cli->j);
            return;
        }
        char inst[33], rit[33], date[DUET_CHECKIN_DATE_LEN + 1];
        duet_item_id_hex(l.instance, inst);
        duet_item_id_hex(l.ritual, rit);
        duet_checkin_day_format(l.day, date);
        duet_json_obj(&cli->j);
        duet_json_kstr(&cli->j, "instance", inst);
        duet_json_kstr(&cli->j, "ritual", rit);
        duet_json_kstr(&cli->j, "template", l.name);
        duet_json_kstr(&cli->j, "date", date);
        duet_json_end(&cli->j);
    } else if (it->kind == DUET_KIND_PAUSE) {
        duet_json_key(&cli->j, "pause");
        if (!paused) {
            duet_json_null(&cli->j);
            return;
        }
        duet_json_obj(&cli->j);
        if (p.has_until) {
            char date[DUET_CHECKIN_DATE_LEN + 1];
            duet_checkin_day_format(p.until_day, date);
            duet_json_kstr(&cli->j, "until", date);
        } else {
            duet_json_knull(&cli->j, "until");
        }
        duet_json_end(&cli->j);
    }
}

void duet_cli_ritual_line(duet_cli_t *cli, const duet_item_t *it, const char *partner)
{
    const char *who = it->mine ? "you" : partner;
    if (it->kind == DUET_KIND_CHECKIN) {
        duet_checkin_line_t l;
        char date[DUET_CHECKIN_DATE_LEN + 1], hex[33];
        if (duet_checkin_line_decode(it->body, it->body_len, &l) != DUET_OK) {
            printf("\xe2\x9c\x93 %s answered a check-in\n", who);
            return;
        }
        duet_checkin_day_format(l.day, date);
        duet_item_id_hex(l.instance, hex);
        printf("\xe2\x9c\x93 %s answered the %s check-in of %s  %s(duet checkin show %.8s)%s\n",
               who, l.name, date, duet_cli_dim(cli), hex, duet_cli_reset(cli));
        return;
    }
    if (it->kind == DUET_KIND_MILESTONE) {
        const char *t;
        size_t tl;
        printf("%s\xe2\x98\x85 ", duet_cli_bold(cli));
        if (duet_checkin_milestone_decode(it->body, it->body_len, &t, &tl) == DUET_OK) {
            duet_cli_print_text(cli, t, tl);
        }
        printf("%s\n", duet_cli_reset(cli));
        return;
    }
    duet_checkin_pause_t p;
    bool ok = duet_checkin_pause_decode(it->body, it->body_len, &p) == DUET_OK;
    if (it->kind == DUET_KIND_PAUSE) {
        char date[DUET_CHECKIN_DATE_LEN + 1];
        printf("%s\xe2\x8f\xb8 %s asked to slow down", duet_cli_bold(cli),
               it->mine ? "you" : partner);
        if (ok && p.has_until) {
            duet_checkin_day_format(p.until_day, date);
            printf(" until %s", date);
        }
    } else {
        printf("%s\xe2\x96\xb6 %s %s ready to go on again", duet_cli_bold(cli), who,
               it->mine ? "are" : "is");
    }
    if (ok && p.note[0] != 0) {
        printf(": ");
        duet_cli_print_text(cli, p.note, strlen(p.note));
    }
    printf("%s\n", duet_cli_reset(cli));
}

void duet_cli_ritual_banner(duet_cli_t *cli, duet_store_t *st, char *partner, size_t cap)
{
    duet_partner_t pr;
    duet_checkin_pause_t p;
    bool paused, mine;
    snprintf(partner, cap, "your partner");
    if (duet_partner_load(st, &pr) == DUET_OK) {
        snprintf(partner, cap, "%s", pr.name);
    }
    sodium_memzero(&pr, sizeof pr);
    if (cli->json ||
        duet_checkin_pause_state(st, duet_cli_now_ms(), &paused, &mine, &p) != DUET_OK || !paused ||
        mine) {
        return;
    }
    /* The partner asked to slow down: say so first, before anything else. */
    printf("%s\xe2\x8f\xb8  %s asked to slow down", duet_cli_bold(cli), partner);
    if (p.has_until) {
        char date[DUET_CHECKIN_DATE_LEN + 1];
        duet_checkin_day_format(p.until_day, date);
        printf(" until %s", date);
    }
    if (p.note[0] != 0) {
        printf(": ");
        duet_cli_print_text(cli, p.note, strlen(p.note));
    }
    printf("%s\n\n", duet_cli_reset(cli));
}
