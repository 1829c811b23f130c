/* duet checkin: rituals of questions, answered apart, revealed together (core/checkin.h).
 *
 *   checkin templates | start TEMPLATE|FILE [--every R] [--open] | accept RITUAL |
 *           decline RITUAL | list | due | answer INSTANCE [--answers FILE|-] |
 *           show INSTANCE | history [--ritual R] [--svg FILE]
 *
 * Ids may be given in full or by a unique prefix of at least 4 hex digits. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "checkin.h"
#include "cli.h"
#include "commands.h"
#include "control.h"
#include "identity.h"
#include "partner.h"

#define ANSWERS_FILE_MAX (1u << 20)
#define RITUAL_FILE_MAX  (64u << 10)

/* ---- small helpers -------------------------------------------------------------------- */

static const char *type_name(uint32_t t)
{
    return t == DUET_CHECKIN_SCALE ? "scale" : "text";
}

static const char *state_name(uint32_t s)
{
    return s == DUET_RITUAL_ACTIVE ? "active" : s == DUET_RITUAL_PROPOSED ? "proposed" : "declined";
}

static const char *pstate_name(uint32_t s)
{
    return s == DUET_CHECKIN_REVEALED ? "revealed"
           : s == DUET_CHECKIN_SEALED ? "sealed"
                                      : "waiting";
}

static void questions_json(duet_cli_t *cli, const duet_checkin_spec_t *spec)
{
    duet_json_key(&cli->j, "questions");
    duet_json_arr(&cli->j);
    for (uint32_t i = 0; i < spec->nq; i++) {
        duet_json_obj(&cli->j);
        duet_json_kstr(&cli->j, "id", spec->q[i].id);
        duet_json_kstr(&cli->j, "text", spec->q[i].text);
        duet_json_kstr(&cli->j, "type", type_name(spec->q[i].type));
        duet_json_end(&cli->j);
    }
    duet_json_arr_end(&cli->j);
}

/* {question id: text | number | null}. */
static void answers_json(duet_cli_t *cli, const duet_checkin_spec_t *spec,
                         const duet_checkin_answers_t *a)
{
    duet_json_obj(&cli->j);
    for (uint32_t i = 0; i < spec->nq; i++) {
        const duet_checkin_value_t *v = &a->v[i];
        duet_json_key(&cli->j, spec->q[i].id);
        if (v->type == DUET_CHECKIN_SCALE) {
            duet_json_int(&cli->j, v->scale);
        } else if (v->type == DUET_CHECKIN_TEXT && v->text_len > 0) {
            duet_json_strn(&cli->j, v->text, v->text_len);
        } else {
            duet_json_null(&cli->j);
        }
    }
    duet_json_end(&cli->j);
}

/* The two names shown in text and in the chart. */
typedef struct names {
    char me[DUET_NAME_MAX + 1];
    char partner[DUET_NAME_MAX + 1];
} names_t;

static void load_names(duet_store_t *st, names_t *n)
{
    duet_identity_t id;
    duet_partner_t p;
    snprintf(n->me, sizeof n->me, "me");
    snprintf(n->partner, sizeof n->partner, "partner");
    if (duet_identity_load(st, &id) == DUET_OK) {
        snprintf(n->me, sizeof n->me, "%s", id.name);
        duet_identity_dispose(&id);
    }
    if (duet_partner_load(st, &p) == DUET_OK) {
        snprintf(n->partner, sizeof n->partner, "%s", p.name);
    }
    sodium_memzero(&p, sizeof p);
}

static int fail_id(duet_cli_t *cli, const char *what, const char *arg, duet_err_t err)
{
    if (err == DUET_ENORITUAL || err == DUET_ENOENT) {
        return duet_cli_failf(cli, what, "no check-in '%s' here (see: duet checkin %s)", arg,
                              strstr(what, "accept") || strstr(what, "decline") ? "list" : "due");
    }
    if (err == DUET_EINVAL) {
        return duet_cli_failf(cli, what, "'%s' matches more than one; give more of the id", arg);
    }
    return duet_cli_fail(cli, what, err);
}

/* Open the store and send any key still owed from an interrupted receive. */
static int open_store(duet_cli_t *cli, duet_store_t **st)
{
    int rc = duet_cli_open(cli, st);
    size_t queued = 0;
    if (rc == 0 && duet_checkin_flush_owed(*st, duet_cli_now_ms(), &queued) == DUET_OK &&
        queued > 0) {
        duet_control_kick(cli->home); /* best effort: owed rows stay for the next time */
    }
    return rc;
}

/* ---- templates ------------------------------------------------------------------------ */

static int cmd_templates(duet_cli_t *cli, int argc, char **argv)
{
    const char *pos[1];
    size_t npos;
    duet_store_t *st;
    int rc = duet_cli_parse(cli, argc, argv, NULL, 0, pos, 0, &npos);
    if (rc != 0 || (rc = duet_cli_open(cli, &st)) != 0) {
        return rc;
    }
    duet_store_close(st);
    for (size_t i = 0; i < duet_checkin_template_count(); i++) {
        const duet_checkin_template_t *t = duet_checkin_template_at(i);
        char every[16];
        duet_checkin_rhythm_format(&t->rhythm, every);
        if (cli->json) {
            duet_json_obj(&cli->j);
            duet_json_kstr(&cli->j, "template", t->spec.name);
            duet_json_kstr(&cli->j, "every", every);
            questions_json(cli, &t->spec);
            duet_json_end(&cli->j);
            duet_cli_emit(cli);
            continue;
        }
        printf("%s%s%s  %s(%s)%s\n", duet_cli_bold(cli), t->spec.name, duet_cli_reset(cli),
               duet_cli_dim(cli), every, duet_cli_reset(cli));
        for (uint32_t q = 0; q < t->spec.nq; q++) {
            printf("  %-10s %-5s  %s\n", t->spec.q[q].id, type_name(t->spec.q[q].type),
                   t->spec.q[q].text);
        }
        printf("\n");
    }
    if (!cli->json) {
        printf("Start one with: duet checkin start weekly (or a file of your own questions)\n");
    }
    return DUET_EXIT_OK;
}

/* ---- custom rituals from a file ------------------------------------------------------- */

typedef struct custom {
    duet_checkin_spec_t spec;
    char every[24];
    bool open;
} custom_t;

/* Add a question from a file (id may be NULL: q1, q2, ...). */
static int custom_question(duet_cli_t *cli, const char *file, custom_t *c, const char *id,
                           const char *text, const char *type)
{
    uint32_t i = c->spec.nq;
    if (i == DUET_CHECKIN_QUESTIONS_MAX) {
        return duet_cli_failf(cli, file, "at most %u questions", DUET_CHECKIN_QUESTIONS_MAX);
    }
    duet_checkin_question_t *q = &c->spec.q[i];
    if (id == NULL) {
        snprintf(q->id, sizeof q->id, "q%u", i + 1);
    } else if (strlen(id) > DUET_CHECKIN_QID_MAX) {
        return duet_cli_failf(cli, file, "question %u: the id is longer than %u characters", i + 1,
                              DUET_CHECKIN_QID_MAX);
    } else {
        snprintf(q->id, sizeof q->id, "%s", id);
    }
    if (text == NULL || text[0] == 0) {
        return duet_cli_failf(cli, file, "question %u has no text", i + 1);
    }
    if (strlen(text) > DUET_CHECKIN_QTEXT_MAX) {
        return duet_cli_failf(cli, file, "question %u: at most %u bytes of text", i + 1,
                              DUET_CHECKIN_QTEXT_MAX);
    }
    snprintf(q->text, sizeof q->text, "%s", text);
    if (type == NULL || strcmp(type, "text") == 0) {
        q->type = DUET_CHECKIN_TEXT;
    } else if (strcmp(type, "scale") == 0) {
        q->type = DUET_CHECKIN_SCALE;
    } else {
        return duet_cli_failf(cli, file, "question %u: type is \"text\" or \"scale\", not \"%s\"",
                              i + 1, type);
    }
    c->spec.nq++;
    return 0;
}

static int custom_check(duet_cli_t *cli, const char *file, custom_t *c)
{
    if (c->spec.name[0] == 0) {
        return duet_cli_failf(cli, file, "give the ritual a name (name = \"...\")");
    }
    if (c->spec.nq == 0) {
        return duet_cli_failf(cli, file, "no questions");
    }
    if (duet_checkin_spec_check(&c->spec) == DUET_OK) {
        return 0;
    }
    for (uint32_t i = 0; i < c->spec.nq; i++) {
        for (const char *p = c->spec.q[i].id; *p; p++) {
            if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-')) {
                return duet_cli_failf(cli, file, "question %u: an id is made of a-z, 0-9, _ and -",
                                      i + 1);
            }
        }
        for (uint32_t j = 0; j < i; j++) {
            if (strcmp(c->spec.q[i].id, c->spec.q[j].id) == 0) {
                return duet_cli_failf(cli, file, "two questions have the id '%s'", c->spec.q[i].id);
            }
        }
    }
    return duet_cli_failf(cli, file,
                          "the name (1 to %u bytes) or a question holds control characters or "
                          "is not UTF-8",
                          DUET_CHECKIN_NAME_MAX);
}

static int custom_json(duet_cli_t *cli, const char *file, const uint8_t *data, size_t len,
                       custom_t *c)
{
    json_error_t jerr;
    json_t *root = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &jerr);
    int rc = 0;
    if (root == NULL) {
        return duet_cli_failf(cli, file, "not valid JSON (line %d: %s)", jerr.line, jerr.text);
    }
    json_t *name = json_object_get(root, "name"), *every = json_object_get(root, "every");
    json_t *open = json_object_get(root, "open"), *qs = json_object_get(root, "questions");
    if (!json_is_object(root) || !json_is_string(name) || !json_is_array(qs) ||
        (every != NULL && !json_is_string(every)) || (open != NULL && !json_is_boolean(open))) {
        json_decref(root);
        return duet_cli_failf(cli, file,
                              "expected {\"name\": \"...\", \"every\": \"weekly\", "
                              "\"questions\": [{\"id\": \"...\", \"text\": \"...\", "
                              "\"type\": \"text\"|\"scale\"}, ...]}");
    }
    if (strlen(json_string_value(name)) > DUET_CHECKIN_NAME_MAX) {
        json_decref(root);
        return duet_cli_failf(cli, file, "the name is longer than %u bytes", DUET_CHECKIN_NAME_MAX);
    }
    snprintf(c->spec.name, sizeof c->spec.name, "%s", json_string_value(name));
    if (every != NULL) {
        snprintf(c->every, sizeof c->every, "%s", json_string_value(every));
    }
    c->open = open != NULL && json_is_true(open);
    size_t i;
    json_t *q;
    json_array_foreach(qs, i, q)
    {
        json_t *id = json_object_get(q, "id"), *text = json_object_get(q, "text");
        json_t *type = json_object_get(q, "type");
        if (!json_is_object(q) || (id != NULL && !json_is_string(id)) || !json_is_string(text) ||
            (type != NULL && !json_is_string(type))) {
            rc = duet_cli_failf(cli, file,
                                "question %zu: expected {\"id\": \"...\", \"text\": "
                                "\"...\", \"type\": \"text\"|\"scale\"}",
                                i + 1);
            break;
        }
        rc = custom_question(cli, file, c, id ? json_string_value(id) : NULL,
                             json_string_value(text), type ? json_string_value(type) : NULL);
        if (rc != 0) {
            break;
        }
    }
    json_decref(root);
    return rc;
}

/* Copy a NUL-terminated string that must fit (with its NUL) in cap bytes. */
static bool copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap) {
        return false;
    }
    memcpy(dst, src, n + 1);
    return true;
}

/* A TOML subset: comments, `key = "string"` ('literal' too, true/false for open), and
 * [[question]] tables with id, text, type. */
typedef struct toml_q {
    char id[DUET_CHECKIN_QID_MAX + 8], text[DUET_CHECKIN_QTEXT_MAX + 8], type[16];
    bool has_id, has_type;
} toml_q_t;

/* Parse a value at *p into out (a string, or the words true/false as themselves). */
static bool toml_value(const char **p, char *out, size_t cap)
{
    const char *s = *p;
    size_t n = 0;
    if (*s == '"' || *s == '\'') {
        char quote = *s++;
        while (*s && *s != quote && *s != '\n') {
            char c = *s++;
            if (quote == '"' && c == '\\') {
                char e = *s++;
                c = e == 'n' ? '\n' : e == 't' ? '\t' : e == '"' ? '"' : e == '\\' ? '\\' : 0;
                if (c == 0) {
                    return false;
                }
            }
            if (n + 1 >= cap) {
                return false;
            }
            out[n++] = c;
        }
        if (*s != quote) {
            return false;
        }
        s++;
    } else if (strncmp(s, "true", 4) == 0 || strncmp(s, "false", 5) == 0) {
        n = s[0] == 't' ? 4 : 5;
        memcpy(out, s, n);
        s += n;
    } else {
        return false;
    }
    out[n] = 0;
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    if (*s == '#') {
        while (*s && *s != '\n') {
            s++;
        }
    }
    if (*s != '\n' && *s != 0 && *s != '\r') {
        return false;
    }
    *p = s;
    return true;
}

static int toml_flush(duet_cli_t *cli, const char *file, custom_t *c, toml_q_t *q, bool *open_q)
{
    int rc = 0;
    if (*open_q) {
        rc = custom_question(cli, file, c, q->has_id ? q->id : NULL, q->text,
                             q->has_type ? q->type : NULL);
    }
    memset(q, 0, sizeof *q);
    *open_q = false;
    return rc;
}

static int custom_toml(duet_cli_t *cli, const char *file, const char *s, custom_t *c)
{
    toml_q_t q;
    bool in_q = false;
    int line = 0, rc;
    memset(&q, 0, sizeof q);
    while (*s) {
        line++;
        while (*s == ' ' || *s == '\t') {
            s++;
        }
        if (*s == '#' || *s == '\n' || *s == '\r') {
            while (*s && *s != '\n') {
                s++;
            }
            s += *s == '\n';
            continue;
        }
        if (strncmp(s, "[[question]]", 12) == 0 || strncmp(s, "[[questions]]", 13) == 0) {
            if ((rc = toml_flush(cli, file, c, &q, &in_q)) != 0) {
                return rc;
            }
            in_q = true;
            s = strchr(s, ']') + 2;
            while (*s && *s != '\n') {
                s++;
            }
            s += *s == '\n';
            continue;
        }
        char key[16], val[DUET_CHECKIN_QTEXT_MAX + 8];
        size_t kl = strspn(s, "abcdefghijklmnopqrstuvwxyz_-");
        if (kl == 0 || kl >= sizeof key) {
            return duet_cli_failf(cli, file, "line %d: expected key = \"value\"", line);
        }
        memcpy(key, s, kl);
        key[kl] = 0;
        s += kl;
        s += strspn(s, " \t");
        if (*s != '=') {
            return duet_cli_failf(cli, file, "line %d: expected key = \"value\"", line);
        }
        s++;
        s += strspn(s, " \t");
        if (!toml_value(&s, val, sizeof val)) {
            return duet_cli_failf(cli, file,
                                  "line %d: a value is a \"quoted string\" (at most "
                                  "%u bytes) or true/false",
                                  line, DUET_CHECKIN_QTEXT_MAX);
        }
        while (*s && *s != '\n') {
            s++;
        }
        s += *s == '\n';
        bool ok = true;
        if (in_q && strcmp(key, "id") == 0) {
            ok = copy_str(q.id, sizeof q.id, val);
            q.has_id = true;
        } else if (in_q && strcmp(key, "text") == 0) {
            ok = copy_str(q.text, sizeof q.text, val);
        } else if (in_q && strcmp(key, "type") == 0) {
            ok = copy_str(q.type, sizeof q.type, val);
            q.has_type = true;
        } else if (!in_q && strcmp(key, "name") == 0) {
            ok = copy_str(c->spec.name, sizeof c->spec.name, val);
        } else if (!in_q && strcmp(key, "every") == 0) {
            ok = copy_str(c->every, sizeof c->every, val);
        } else if (!in_q && strcmp(key, "open") == 0) {
            c->open = strcmp(val, "true") == 0;
        } else {
            return duet_cli_failf(cli, file, "line %d: unknown key '%s'", line, key);
        }
        if (!ok) {
            return duet_cli_failf(cli, file, "line %d: '%s' is too long", line, key);
        }
    }
    return toml_flush(cli, file, c, &q, &in_q);
}

/* A ritual from a JSON or TOML file of questions. */
static int load_custom(duet_cli_t *cli, const char *file, custom_t *c)
{
    uint8_t *data;
    size_t len;
    memset(c, 0, sizeof *c);
    duet_err_t err = duet_cli_read_all(file, RITUAL_FILE_MAX, &data, &len);
    if (err == DUET_ETOOBIG) {
        return duet_cli_failf(cli, file, "larger than %u KiB", RITUAL_FILE_MAX >> 10);
    }
    if (err != DUET_OK) {
        return duet_cli_fail(cli, file, err);
    }
    uint8_t *text = realloc(data, len + 1);
    if (text == NULL) {
        free(data);
        return duet_cli_fail(cli, file, DUET_ENOMEM);
    }
    text[len] = 0;
    size_t skip = strspn((const char *)text, " \t\r\n");
    int rc = memchr(text, 0, len) != NULL ? duet_cli_failf(cli, file, "not a text file")
             : text[skip] == '{'          ? custom_json(cli, file, text, len, c)
                                          : custom_toml(cli, file, (const char *)text, c);
    free(text);
    return rc != 0 ? rc : custom_check(cli, file, c);
}

/* ---- start, accept, decline ----------------------------------------------------------- */

static int cmd_start(duet_cli_t *cli, int argc, char **argv)
{
    const char *pos[1], *every = NULL;
    bool open = false;
    size_t npos;
    const duet_opt_t opts[] = {{"--every", DUET_OPT_STR, &every}, {"--open", DUET_OPT_FLAG, &open}};
    int rc = duet_cli_parse(cli, argc, argv, opts, 2, pos, 1, &npos);
    if (rc != 0) {
        return rc;
    }
    if (npos != 1) {
        return duet_cli_usage(cli, "which template? (see: duet checkin templates) or a file of "
                                   "questions (.json or .toml)");
    }
    custom_t *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return duet_cli_fail(cli, "checkin start", DUET_ENOMEM);
    }
    duet_checkin_rhythm_t rhythm;
    const duet_checkin_template_t *t = duet_checkin_template_find(pos[0]);
    if (t != NULL) {
        c->spec = t->spec;
        rhythm = t->rhythm;
    } else if (strchr(pos[0], '/') == NULL && strchr(pos[0], '.') == NULL) {
        free(c);
        return duet_cli_usage(cli,
                              "no template '%s' (weekly, daily, or a .json/.toml file of "
                              "questions)",
                              pos[0]);
    } else {
        if ((rc = load_custom(cli, pos[0], c)) != 0) {
            free(c);
            return rc;
        }
        open = open || c->open;
        if (duet_checkin_rhythm_parse(c->every[0] ? c->every : "weekly", &rhythm) != DUET_OK) {
            rc = duet_cli_failf(cli, pos[0], "every is daily, weekly or weekly:DAY, not '%s'",
                                c->every);
            free(c);
            return rc;
        }
    }
    if (every != NULL && duet_checkin_rhythm_parse(every, &rhythm) != DUET_OK) {
        free(c);
        return duet_cli_usage(cli, "--every: daily, weekly or weekly:DAY (mon..sun), not '%s'",
                              every);
    }
    duet_store_t *st;
    if ((rc = duet_cli_open(cli, &st)) != 0) {
        free(c);
        return rc;
    }
    uint8_t id[DUET_CHECKIN_ID_BYTES];
    duet_err_t err = duet_store_begin(st);
    if (err == DUET_OK) {
        err = duet_checkin_propose(st, &c->spec, rhythm, open, duet_cli_now_ms(), id);
        err = err == DUET_OK ? duet_store_commit(st) : err;
        if (err != DUET_OK) {
            duet_store_rollback(st);
        }
    }
    duet_store_close(st);
    if (err != DUET_OK) {
        free(c);
        if (err == DUET_ENOTPAIRED) {
            return duet_cli_failf(cli, "checkin start",
                                  "this device is not paired yet (pair "
                                  "with your partner first: duet pair)");
        }
        return duet_cli_fail(cli, "checkin start", err);
    }
    duet_control_kick(cli->home); /* a running daemon sends it now */
    char hex[33], rh[16];
    duet_item_id_hex(id, hex);
    duet_checkin_rhythm_format(&rhythm, rh);
    if (cli->json) {
        duet_json_obj(&cli->j);
        duet_json_kstr(&cli->j, "event", "proposed");
        duet_json_kstr(&cli->j, "ritual", hex);
        duet_json_kstr(&cli->j, "template", c->spec.name);
        duet_json_kstr(&cli->j, "every", rh);
        duet_json_kbool(&cli->j, "open", open);
        duet_json_end(&cli->j);
        duet_cli_emit(cli);
    } else {
        printf("proposed  %s%s%s check-in, %s%s  %s%s%s\n", duet_cli_bold(cli), c->spec.name,
               duet_cli_reset(cli), rh, open ? ", answers open as they arrive" : "",
               duet_cli_dim(cli), hex, duet_cli_reset(cli));
        printf("It starts when your partner accepts it (duet checkin accept %.8s).\n", hex);
    }
    free(c);
    return DUET_EXIT_OK;
}

/* accept and decline: one ritual by id. */
static int ritual_op(duet_cli_t *cli, int argc, char **argv, bool accept)
{
    const char *pos[1];
    size_t npos;
    const char *what = accept ? "checkin accept" : "checkin decline";
    int rc = duet_cli_parse(cli, argc, argv, NULL, 0, pos, 1, &npos);
    if (rc != 0) {
        return rc;
    }
    if (npos != 1) {
        return duet_cli_usage(cli, "which ritual? (see: duet checkin list)");
    }
    duet_store_t *st;
    if ((rc = duet_cli_open(cli, &st)) != 0) {
        return rc;
    }
    uint8_t id[DUET_CHECKIN_ID_BYTES];
    duet_checkin_ritual_t *r = malloc(sizeof *r);
    uint64_t now = duet_cli_now_ms();
    duet_err_t err = r == NULL ? DUET_ENOMEM : duet_checkin_resolve_ritual(st, pos[0], id);
    if (err != DUET_OK) {
        duet_store_close(st);
        free(r);
        return fail_id(cli, what, pos[0], err);
    }
    uint32_t was = 0;
    if ((err = duet_checkin_get(st, id, r)) == DUET_OK) {
        was = r->state;
        if (accept && r->mine && r->state == DUET_RITUAL_PROPOSED) {
            duet_store_close(st);
            free(r);
            return duet_cli_failf(cli, what, "you proposed it: your partner accepts it");
        }
        if ((err = duet_store_begin(st)) == DUET_OK) {
            err = accept ? duet_checkin_accept(st, id, now) : duet_checkin_decline(st, id, now);
            err = err == DUET_OK ? duet_store_commit(st) : err;
            if (err != DUET_OK) {
                duet_store_rollback(st);
            }
        }
    }
    if (err == DUET_OK) {
        err = duet_checkin_get(st, id, r);
    }
    duet_store_close(st);
    if (err == DUET_ESTATE) {
        free(r);
        return duet_cli_failf(cli, what, "this check-in is %s already", state_name(was));
    }
    if (err != DUET_OK) {
        free(r);
        return duet_cli_fail(cli, what, err);
    }
    duet_control_kick(cli->home);
    char hex[33], rh[16];
    duet_item_id_hex(id, hex);
    duet_checkin_rhythm_format(&r->rhythm, rh);
    const char *event = accept                      ? "accepted"
                        : was == DUET_RITUAL_ACTIVE ? "stopped"
                        : r->mine                   ? "withdrawn"
                                                    : "declined";
    if (cli->json) {
        duet_json_obj(&cli->j);
        duet_json_kstr(&cli->j, "event", event);
        duet_json_kstr(&cli->j, "ritual", hex);
        if (accept) {
            char date[DUET_CHECKIN_DATE_LEN + 1];
            duet_checkin_day_format(r->start_day, date);
            duet_json_kstr(&cli->j, "every", rh);
            duet_json_kstr(&cli->j, "first", date);
        }
        duet_json_end(&cli->j);
        duet_cli_emit(cli);
    } else if (accept) {
        printf("accepted  %s%s%s check-in, %s. The first one is due now: duet checkin due\n",
               duet_cli_bold(cli), r->spec.name, duet_cli_reset(cli), rh);
    } else {
        printf("%s  %s check-in\n", event, r->spec.name);
    }
    free(r);
    return DUET_EXIT_OK;
}

static int cmd_accept(duet_cli_t *cli, int argc, char **argv)
{
    return ritual_op(cli, argc, argv, true);
}

static int cmd_decline(duet_cli_t *cli, int argc, char **argv)
{
    return ritual_op(cli, argc, argv, false);
}

/* ---- list and due --------------------------------------------------------------------- */

static int cmd_list(duet_cli_t *cli, int argc, char **argv)
{
    const char *pos[1];
    size_t npos, n;
    int rc = duet_cli_parse(cli, argc, argv, NULL, 0, pos, 0, &npos);
    duet_store_t *st;
    if (rc != 0 || (rc = open_store(cli, &st)) != 0) {
        return rc;
    }
    duet_checkin_ritual_t *v;
    duet_err_t err = duet_checkin_list(st, &v, &n);
    duet_store_close(st);
    if (err != DUET_OK) {
        return duet_cli_fail(cli, "checkin list", err);
    }
    if (n == 0 && !cli->json) {
        printf("no check-ins yet (start one: duet checkin start weekly)\n");
    }
    for (size_t i = 0; i < n; i++) {
        char hex[33], rh[16], date[DUET_CHECKIN_DATE_LEN + 1];
        duet_item_id_hex(v[i].id, hex);
        duet_checkin_rhythm_format(&v[i].rhythm, rh);
        if (v[i].started) {
            duet_checkin_day_format(v[i].start_day, date);
        }
        if (cli->json) {
            duet_json_obj(&cli->j);
            duet_json_kstr(&cli->j, "ritual", hex);
            duet_json_kstr(&cli->j, "template", v[i].spec.name);
            duet_json_kstr(&cli->j, "state", state_name(v[i].state));
            duet_json_kstr(&cli->j, "every", rh);
            duet_json_kbool(&cli->j, "open", v[i].open);
            duet_json_kstr(&cli->j, "proposed_by", v[i].mine ? "me" : "partner");
            if (v[i].started) {
                duet_json_kstr(&cli->j, "since", date);
            } else {
                duet_json_knull(&cli->j, "since");
            }
            questions_json(cli, &v[i].spec);
            duet_json_end(&cli->j);
            duet_cli_emit(cli);
            continue;
        }
        printf("%s%.8s%s  %-12s %-12s ", duet_cli_dim(cli), hex, duet_cli_reset(cli),
               v[i].spec.name, rh);
        if (v[i].state == DUET_RITUAL_ACTIVE) {
            printf("active since %s", date);
        } else if (v[i].state == DUET_RITUAL_DECLINED) {
            printf("ended");
        } else if (v[i].mine) {
            printf("proposed, waiting for your partner");
        } else {
            printf("proposed to you: duet checkin accept %.8s", hex);
        }
        printf("%s\n", v[i].open ? " (answers open)" : "");
    }
    free(v);
    return DUET_EXIT_OK;
}

static int cmd_due(duet_cli_t *cli, int argc, char **argv)
{
    const char *pos[1];
    size_t npos, n;
    int rc = duet_cli_parse(cli, argc, argv, NULL, 0, pos, 0, &npos);
    duet_store_t *st;
    if (rc != 0 || (rc = open_store(cli, &st)) != 0) {
        return rc;
    }
    duet_checkin_instance_t *v;
    duet_checkin_ritual_t *r = malloc(sizeof *r);
    duet_err_t err = r == NULL ? DUET_ENOMEM : duet_checkin_due(st, duet_cli_now_ms(), &v, &n);
    if (err != DUET_OK) {
        duet_store_close(st);
        free(r);
        return duet_cli_fail(cli, "checkin due", err);
    }
    if (n == 0 && !cli->json) {
        printf("nothing due. Take care of each other.\n");
    }
    for (size_t i = 0; i < n && err == DUET_OK; i++) {
        char hex[33], rhex[33], date[DUET_CHECKIN_DATE_LEN + 1];
        if ((err = duet_checkin_get(st, v[i].ritual, r)) != DUET_OK) {
            break;
        }
        duet_item_id_hex(v[i].id, hex);
        duet_item_id_hex(v[i].ritual, rhex);
        duet_checkin_day_format(v[i].day, date);
        if (cli->json) {
            duet_json_obj(&cli->j);
            duet_json_kstr(&cli->j, "instance", hex);
            duet_json_kstr(&cli->j, "ritual", rhex);
            duet_json_kstr(&cli->j, "template", r->spec.name);
            duet_json_kstr(&cli->j, "date", date);
            questions_json(cli, &r->spec);
            duet_json_end(&cli->j);
            duet_cli_emit(cli);
        } else {
            printf("%s  %-12s %s%s%s   answer: duet checkin answer %.8s\n", date, r->spec.name,
                   duet_cli_dim(cli), hex, duet_cli_reset(cli), hex);
        }
    }
    duet_store_close(st);
    free(v);
    free(r);
    return err == DUET_OK ? DUET_EXIT_OK : duet_cli_fail(cli, "checkin due", err);
}

/* ---- answer --------------------------------------------------------------------------- */

/* Answers from a JSON object {question id: text | integer}. */
static int answers_from_json(duet_cli_t *cli, const char *src, const uint8_t *data, size_t len,
                             const duet_checkin_spec_t *spec, duet_checkin_answers_t *a)
{
    json_error_t jerr;
    json_t *root = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &jerr);
    const char *key;
    json_t *val;
    int rc = 0;
    if (root == NULL || !json_is_object(root)) {
        json_decref(root);
        return duet_cli_failf(cli, src, "expected a JSON object {\"question id\": answer, ...}");
    }
    a->n = spec->nq;
    json_object_foreach(root, key, val)
    {
        uint32_t i;
        for (i = 0; i < spec->nq && strcmp(spec->q[i].id, key) != 0; i++) {
        }
        if (i == spec->nq) {
            rc = duet_cli_failf(cli, src, "this check-in has no question '%s'", key);
            break;
        }
        if (json_is_null(val)) {
            continue; /* skipped */
        }
        if (spec->q[i].type == DUET_CHECKIN_SCALE) {
            json_int_t x = json_is_integer(val) ? json_integer_value(val) : 0;
            if (!json_is_integer(val) || x < DUET_CHECKIN_SCALE_MIN || x > DUET_CHECKIN_SCALE_MAX) {
                rc = duet_cli_failf(cli, src, "%s: a whole number from 1 to 5", key);
                break;
            }
            duet_checkin_answers_set_scale(a, i, (uint32_t)x);
        } else {
            if (!json_is_string(val)) {
                rc = duet_cli_failf(cli, src, "%s: the answer is text (a JSON string)", key);
                break;
            }
            size_t tl = json_string_length(val);
            if (tl > DUET_CHECKIN_TEXT_MAX) {
                rc = duet_cli_failf(cli, src, "%s: at most %u bytes", key, DUET_CHECKIN_TEXT_MAX);
                break;
            }
            if (duet_checkin_answers_set_text(a, i, json_string_value(val), tl) != DUET_OK) {
                rc = duet_cli_fail(cli, src, DUET_ENOMEM);
                break;
            }
        }
    }
    json_decref(root);
    return rc;
}

/* One line from the terminal (without its newline); false at end of input. */
static bool tty_line(FILE *tty, char *buf, size_t cap)
{
    if (fgets(buf, (int)cap, tty) == NULL) {
        return false;
    }
    size_t n = strlen(buf);
    if (n > 0 && buf[n - 1] == '\n') {
        buf[--n] = 0;
    } else if (n == cap - 1) {
        int c; /* a line longer than the buffer: drop the rest */
        while ((c = fgetc(tty)) != EOF && c != '\n') {
        }
    }
    if (n > 0 && buf[n - 1] == '\r') {
        buf[n - 1] = 0;
    }
    return true;
}

/* Ask each question on the terminal. 1: sent is confirmed, 0: cancelled, -1: no terminal. */
static int answers_from_tty(duet_cli_t *cli, const duet_checkin_ritual_t *r, const char *date,
                            duet_checkin_answers_t *a)
{
    FILE *tty = fopen("/dev/tty", "r+");
    char *line = malloc(DUET_CHECKIN_TEXT_MAX + 2);
    int result = 0;
    if (tty == NULL || line == NULL) {
        if (tty != NULL) {
            fclose(tty);
        }
        free(line);
        return -1;
    }
    a->n = r->spec.nq;
    fprintf(tty, "%s check-in, %s. Leave a line empty to skip it.\n\n", r->spec.name, date);
    for (uint32_t i = 0; i < r->spec.nq; i++) {
        const duet_checkin_question_t *q = &r->spec.q[i];
        for (;;) {
            fprintf(tty, "%s%s%s%s\n> ", duet_cli_bold(cli), q->text, duet_cli_reset(cli),
                    q->type == DUET_CHECKIN_SCALE ? "  [1-5]" : "");
            fflush(tty);
            if (!tty_line(tty, line, DUET_CHECKIN_TEXT_MAX + 2)) {
                goto done;
            }
            if (line[0] == 0) {
                break;
            }
            if (q->type == DUET_CHECKIN_SCALE) {
                if (line[0] >= '1' && line[0] <= '5' && line[1] == 0) {
                    duet_checkin_answers_set_scale(a, i, (uint32_t)(line[0] - '0'));
                    break;
                }
                fprintf(tty, "  a number from 1 to 5, please\n");
                continue;
            }
            if (duet_checkin_answers_set_text(a, i, line, strlen(line)) == DUET_OK) {
                break;
            }
        }
        fprintf(tty, "\n");
    }
    fprintf(tty, "Seal and send? Once sent, an answer cannot be changed. It opens for your "
                 "partner when theirs is in. [y/N] ");
    fflush(tty);
    if (tty_line(tty, line, DUET_CHECKIN_TEXT_MAX + 2) && (line[0] == 'y' || line[0] == 'Y')) {
        result = 1;
    }
done:
    sodium_memzero(line, DUET_CHECKIN_TEXT_MAX + 2);
    free(line);
    fclose(tty);
    return result;
}

static int answer_fail(duet_cli_t *cli, duet_err_t err)
{
    switch (err) {
    case DUET_EEXIST:
        return duet_cli_failf(cli, "checkin answer",
                              "you have answered this one already (an answer cannot be changed)");
    case DUET_ESTATE:
        return duet_cli_failf(cli, "checkin answer",
                              "this check-in is not open for answers "
                              "(stopped, or not due yet)");
    case DUET_EEMPTY:
        return duet_cli_failf(cli, "checkin answer", "nothing answered");
    default:
        return duet_cli_fail(cli, "checkin answer", err);
    }
}

static int cmd_answer(duet_cli_t *cli, int argc, char **argv)
{
    const char *pos[1], *file = NULL;
    size_t npos, len = 0;
    const duet_opt_t opts[] = {{"--answers", DUET_OPT_STR, &file}};
    uint8_t *data = NULL;
    duet_store_t *st = NULL;
    duet_checkin_ritual_t *r = NULL;
    duet_checkin_instance_t inst;
    duet_checkin_answers_t a;
    duet_err_t err;
    memset(&a, 0, sizeof a);
    int rc = duet_cli_parse(cli, argc, argv, opts, 1, pos, 1, &npos);
    if (rc != 0) {
        return rc;
    }
    if (npos != 1) {
        return duet_cli_usage(cli, "which check-in? (see: duet checkin due)");
    }
    if (file == NULL && !cli->tty_in) {
        return duet_cli_usage(cli, "give your answers with --answers FILE (or - for standard "
                                   "input): there is no terminal to ask on");
    }
    const char *src = file != NULL && strcmp(file, "-") != 0 ? file : "standard input";
    if (file != NULL && (err = duet_cli_read_all(file, ANSWERS_FILE_MAX, &data, &len)) != DUET_OK) {
        return duet_cli_fail(cli, src, err);
    }
    if ((rc = open_store(cli, &st)) != 0) {
        goto cleanup;
    }
    uint64_t now = duet_cli_now_ms();
    r = malloc(sizeof *r);
    err = r == NULL ? DUET_ENOMEM : duet_checkin_resolve_instance(st, pos[0], now, &inst);
    if (err == DUET_OK) {
        err = duet_checkin_get(st, inst.ritual, r);
    }
    if (err != DUET_OK) {
        rc = fail_id(cli, "checkin answer", pos[0], err);
        goto cleanup;
    }
    char date[DUET_CHECKIN_DATE_LEN + 1], hex[33];
    duet_checkin_day_format(inst.day, date);
    duet_item_id_hex(inst.id, hex);
    if (data != NULL) {
        rc = answers_from_json(cli, src, data, len, &r->spec, &a);
    } else {
        int t = answers_from_tty(cli, r, date, &a);
        if (t == 0) {
            printf("not sent; nothing changed\n");
            goto cleanup;
        }
        rc = t == 1 ? 0 : duet_cli_usage(cli, "no terminal: give --answers FILE");
    }
    if (rc != 0) {
        goto cleanup;
    }
    if ((err = duet_checkin_answers_check(&r->spec, &a)) == DUET_OK &&
        (err = duet_store_begin(st)) == DUET_OK) {
        err = duet_checkin_answer(st, &inst, &a, now);
        err = err == DUET_OK ? duet_store_commit(st) : err;
        if (err != DUET_OK) {
            duet_store_rollback(st);
        }
    }
    if (err != DUET_OK) {
        rc = answer_fail(cli, err);
        goto cleanup;
    }
    duet_control_kick(cli->home);
    if (cli->json) {
        duet_json_obj(&cli->j);
        duet_json_kstr(&cli->j, "event", "answered");
        duet_json_kstr(&cli->j, "instance", hex);
        duet_json_kbool(&cli->j, "open", r->open);
        duet_json_end(&cli->j);
        duet_cli_emit(cli);
    } else if (r->open) {
        printf("answered  %s, %s: sent, and open to your partner as it arrives\n", r->spec.name,
               date);
    } else {
        printf("answered  %s, %s: sealed. It opens for your partner when their answer is in, "
               "and theirs for you.\n",
               r->spec.name, date);
    }
cleanup:
    duet_checkin_answers_clear(&a);
    duet_store_close(st);
    free(r);
    if (data != NULL) {
        sodium_memzero(data, len);
        free(data);
    }
    return rc;
}

/* ---- show ------------------------------------------------------------------------------- */

static void show_text_value(duet_cli_t *cli, const duet_checkin_value_t *v)
{
    if (v->type == DUET_CHECKIN_SCALE) {
        printf("%u of 5\n", v->scale);
    } else if (v->type == DUET_CHECKIN_TEXT && v->text_len > 0) {
        duet_cli_print_text(cli, v->text, v->text_len);
        printf("\n");
    } else {
        printf("%s(skipped)%s\n", duet_cli_dim(cli), duet_cli_reset(cli));
    }
}

/* One instance, both sides (JSON record or text). */
static void show_one(duet_cli_t *cli, const duet_checkin_ritual_t *r, const duet_checkin_view_t *v,
                     const names_t *names)
{
    char hex[33], rhex[33], date[DUET_CHECKIN_DATE_LEN + 1], at[32];
    duet_item_id_hex(v->inst.id, hex);
    duet_item_id_hex(v->inst.ritual, rhex);
    duet_checkin_day_format(v->inst.day, date);
    if (cli->json) {
        duet_json_obj(&cli->j);
        duet_json_kstr(&cli->j, "instance", hex);
        duet_json_kstr(&cli->j, "ritual", rhex);
        duet_json_kstr(&cli->j, "template", r->spec.name);
        duet_json_kstr(&cli->j, "date", date);
        duet_json_key(&cli->j, "mine");
        if (v->mine_answered) {
            answers_json(cli, &r->spec, &v->mine);
        } else {
            duet_json_null(&cli->j);
        }
        duet_json_key(&cli->j, "partner");
        duet_json_obj(&cli->j);
        duet_json_kstr(&cli->j, "state", pstate_name(v->partner_state));
        duet_json_key(&cli->j, "answers");
        if (v->partner_state == DUET_CHECKIN_REVEALED) {
            answers_json(cli, &r->spec, &v->partner);
        } else {
            duet_json_null(&cli->j);
        }
        if (v->partner_hlc != 0) {
            duet_cli_iso8601(v->partner_hlc >> 16, at);
            duet_json_kstr(&cli->j, "answered_at", at);
        } else {
            duet_json_knull(&cli->j, "answered_at");
        }
        duet_json_end(&cli->j);
        duet_json_kbool(&cli->j, "my_key_released", v->key_released);
        duet_json_end(&cli->j);
        duet_cli_emit(cli);
        return;
    }
    const char *ptext = v->partner_state == DUET_CHECKIN_WAITING    ? "has not answered yet"
                        : v->partner_state == DUET_CHECKIN_REVEALED ? "answered"
                        : v->mine_answered ? "answered; sealed until their key arrives"
                                           : "answered; sealed until you answer too";
    printf("%s%s check-in, %s%s  %s%.8s%s\n", duet_cli_bold(cli), r->spec.name, date,
           duet_cli_reset(cli), duet_cli_dim(cli), hex, duet_cli_reset(cli));
    printf("  %s: %s.  %s: %s.\n", names->me, v->mine_answered ? "answered" : "not answered yet",
           names->partner, ptext);
    for (uint32_t i = 0;
         i < r->spec.nq && (v->mine_answered || v->partner_state == DUET_CHECKIN_REVEALED); i++) {
        printf("\n  %s\n", r->spec.q[i].text);
        if (v->mine_answered) {
            printf("    %-10s ", names->me);
            show_text_value(cli, &v->mine.v[i]);
        }
        if (v->partner_state == DUET_CHECKIN_REVEALED) {
            printf("    %-10s ", names->partner);
            show_text_value(cli, &v->partner.v[i]);
        }
    }
}

static int cmd_show(duet_cli_t *cli, int argc, char **argv)
{
    const char *pos[1];
    size_t npos;
    int rc = duet_cli_parse(cli, argc, argv, NULL, 0, pos, 1, &npos);
    if (rc != 0) {
        return rc;
    }
    if (npos != 1) {
        return duet_cli_usage(cli, "which check-in? (see: duet checkin history)");
    }
    duet_store_t *st;
    if ((rc = open_store(cli, &st)) != 0) {
        return rc;
    }
    duet_checkin_instance_t inst;
    duet_checkin_view_t v;
    names_t names;
    duet_checkin_ritual_t *r = malloc(sizeof *r);
    memset(&v, 0, sizeof v);
    duet_err_t err = r == NULL
                         ? DUET_ENOMEM
                         : duet_checkin_resolve_instance(st, pos[0], duet_cli_now_ms(), &inst);
    if (err == DUET_OK && (err = duet_checkin_get(st, inst.ritual, r)) == DUET_OK) {
        err = duet_checkin_show(st, &inst, &v);
    }
    load_names(st, &names);
    duet_store_close(st);
    if (err != DUET_OK) {
        free(r);
        return fail_id(cli, "checkin show", pos[0], err);
    }
    show_one(cli, r, &v, &names);
    duet_checkin_view_clear(&v);
    free(r);
    return DUET_EXIT_OK;
}

/* ---- history ---------------------------------------------------------------------------- */

/* A sparkline of one partner's answers to a scale question: one block per instance, · for
 * none. */
static void sparkline(const uint8_t *vals, size_t n)
{
    static const char *const blocks[6] = {"\xc2\xb7",     "\xe2\x96\x81", "\xe2\x96\x83",
                                          "\xe2\x96\x84", "\xe2\x96\x86", "\xe2\x96\x88"};
    for (size_t i = 0; i < n; i++) {
        fputs(blocks[vals[i] <= 5 ? vals[i] : 0], stdout);
    }
}

/* The scale answers of one ritual's instances among v[0..n), per scale question. */
typedef struct scale_data {
    size_t n;
    int64_t *days;
    uint8_t *me[DUET_CHECKIN_QUESTIONS_MAX], *partner[DUET_CHECKIN_QUESTIONS_MAX];
} scale_data_t;

static void scale_free(scale_data_t *d)
{
    free(d->days);
    for (size_t q = 0; q < DUET_CHECKIN_QUESTIONS_MAX; q++) {
        free(d->me[q]);
        free(d->partner[q]);
    }
    memset(d, 0, sizeof *d);
}

static duet_err_t scale_collect(const duet_checkin_ritual_t *r, const duet_checkin_view_t *v,
                                size_t n, scale_data_t *d)
{
    memset(d, 0, sizeof *d);
    d->days = calloc(n ? n : 1, sizeof *d->days);
    if (d->days == NULL) {
        return DUET_ENOMEM;
    }
    for (uint32_t q = 0; q < r->spec.nq; q++) {
        if (r->spec.q[q].type != DUET_CHECKIN_SCALE) {
            continue;
        }
        d->me[q] = calloc(n ? n : 1, 1);
        d->partner[q] = calloc(n ? n : 1, 1);
        if (d->me[q] == NULL || d->partner[q] == NULL) {
            scale_free(d);
            return DUET_ENOMEM;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (sodium_memcmp(v[i].inst.ritual, r->id, DUET_CHECKIN_ID_BYTES) != 0) {
            continue;
        }
        size_t k = d->n++;
        d->days[k] = v[i].inst.day;
        for (uint32_t q = 0; q < r->spec.nq; q++) {
            if (d->me[q] == NULL) {
                continue;
            }
            if (v[i].mine_answered && v[i].mine.v[q].type == DUET_CHECKIN_SCALE) {
                d->me[q][k] = (uint8_t)v[i].mine.v[q].scale;
            }
            if (v[i].partner_state == DUET_CHECKIN_REVEALED &&
                v[i].partner.v[q].type == DUET_CHECKIN_SCALE) {
                d->partner[q][k] = (uint8_t)v[i].partner.v[q].scale;
            }
        }
    }
    return DUET_OK;
}

/* The chart of every ritual's scale questions. */
static int write_svg(duet_cli_t *cli, const char *file, const duet_checkin_ritual_t *rs, size_t nr,
                     const duet_checkin_view_t *v, size_t n, const names_t *names)
{
    scale_data_t *d = calloc(nr ? nr : 1, sizeof *d);
    duet_checkin_series_t *series = calloc(nr * DUET_CHECKIN_QUESTIONS_MAX + 1, sizeof *series);
    char(*titles)[DUET_CHECKIN_NAME_MAX + DUET_CHECKIN_QTEXT_MAX + 8] =
        calloc(nr * DUET_CHECKIN_QUESTIONS_MAX + 1, sizeof *titles);
    size_t ns = 0;
    duet_err_t err = d == NULL || series == NULL || titles == NULL ? DUET_ENOMEM : DUET_OK;
    for (size_t i = 0; err == DUET_OK && i < nr; i++) {
        if ((err = scale_collect(&rs[i], v, n, &d[i])) != DUET_OK || d[i].n == 0) {
            continue;
        }
        for (uint32_t q = 0; q < rs[i].spec.nq && ns < DUET_CHECKIN_SVG_SERIES_MAX; q++) {
            if (d[i].me[q] == NULL) {
                continue;
            }
            snprintf(titles[ns], sizeof titles[ns], "%s \xc2\xb7 %s", rs[i].spec.name,
                     rs[i].spec.q[q].text);
            series[ns].title = titles[ns];
            series[ns].n =
                d[i].n < DUET_CHECKIN_SVG_POINTS_MAX ? d[i].n : DUET_CHECKIN_SVG_POINTS_MAX;
            size_t skip = d[i].n - series[ns].n; /* the newest points when there are many */
            series[ns].days = d[i].days + skip;
            series[ns].me = d[i].me[q] + skip;
            series[ns].partner = d[i].partner[q] + skip;
            ns++;
        }
    }
    char heading[2 * DUET_NAME_MAX + 32], *svg = NULL;
    size_t len = 0;
    snprintf(heading, sizeof heading, "Check-ins of %s and %s", names->me, names->partner);
    duet_checkin_chart_t chart = {heading, names->me, names->partner, ns, series};
    if (err == DUET_OK) {
        err = duet_checkin_svg(&chart, &svg, &len);
    }
    for (size_t i = 0; d != NULL && i < nr; i++) {
        scale_free(&d[i]);
    }
    free(d);
    free(series);
    free(titles);
    if (err != DUET_OK) {
        return duet_cli_fail(cli, "checkin history: chart", err);
    }
    FILE *f = fopen(file, "wb");
    bool ok = f != NULL && fwrite(svg, 1, len, f) == len;
    if (f != NULL && fclose(f) != 0) {
        ok = false;
    }
    int saved = errno;
    free(svg);
    if (!ok) {
        return duet_cli_failf(cli, file, "cannot write the chart: %s", strerror(saved));
    }
    return 0;
}

static void history_text(duet_cli_t *cli, const duet_checkin_ritual_t *rs, size_t nr,
                         const duet_checkin_view_t *v, size_t n,
                         const duet_checkin_milestone_rec_t *ms, size_t nm, const names_t *names)
{
    for (size_t i = 0; i < nr; i++) {
        const duet_checkin_ritual_t *r = &rs[i];
        scale_data_t d;
        bool any = false;
        for (size_t k = 0; k < n && !any; k++) {
            any = sodium_memcmp(v[k].inst.ritual, r->id, DUET_CHECKIN_ID_BYTES) == 0;
        }
        if (!any) {
            continue;
        }
        printf("%s%s check-in%s\n", duet_cli_bold(cli), r->spec.name, duet_cli_reset(cli));
        for (size_t k = 0; k < n; k++) {
            if (sodium_memcmp(v[k].inst.ritual, r->id, DUET_CHECKIN_ID_BYTES) != 0) {
                continue;
            }
            char date[DUET_CHECKIN_DATE_LEN + 1], hex[33];
            duet_checkin_day_format(v[k].inst.day, date);
            duet_item_id_hex(v[k].inst.id, hex);
            printf("  %s  %s%.8s%s  %s %s  %s %s\n", date, duet_cli_dim(cli), hex,
                   duet_cli_reset(cli), names->me, v[k].mine_answered ? "answered" : "-",
                   names->partner, pstate_name(v[k].partner_state));
        }
        if (scale_collect(r, v, n, &d) == DUET_OK) {
            for (uint32_t q = 0; q < r->spec.nq; q++) {
                if (d.me[q] == NULL) {
                    continue;
                }
                printf("  %-12s %s ", r->spec.q[q].id, names->me);
                sparkline(d.me[q], d.n);
                printf("   %s ", names->partner);
                sparkline(d.partner[q], d.n);
                printf("\n");
            }
            scale_free(&d);
        }
        printf("\n");
    }
    for (size_t i = 0; i < nm; i++) {
        char at[32];
        duet_cli_iso8601(ms[i].hlc >> 16, at);
        at[10] = 0;
        printf("\xe2\x98\x85 %s  %s: ", at, ms[i].mine ? names->me : names->partner);
        duet_cli_print_text(cli, ms[i].text, strlen(ms[i].text));
        printf("\n");
    }
    if (n == 0 && nm == 0) {
        printf("no check-ins answered yet\n");
    }
}

static int cmd_history(duet_cli_t *cli, int argc, char **argv)
{
    const char *pos[1], *ritual_s = NULL, *svg = NULL;
    size_t npos;
    const duet_opt_t opts[] = {{"--ritual", DUET_OPT_STR, &ritual_s},
                               {"--svg", DUET_OPT_STR, &svg}};
    int rc = duet_cli_parse(cli, argc, argv, opts, 2, pos, 0, &npos);
    duet_store_t *st;
    if (rc != 0 || (rc = open_store(cli, &st)) != 0) {
        return rc;
    }
    uint8_t rid[DUET_CHECKIN_ID_BYTES];
    duet_checkin_ritual_t *rs = NULL;
    duet_checkin_view_t *v = NULL;
    duet_checkin_milestone_rec_t *ms = NULL;
    size_t nr = 0, n = 0, nm = 0;
    names_t names;
    duet_err_t err = DUET_OK;
    if (ritual_s != NULL && (err = duet_checkin_resolve_ritual(st, ritual_s, rid)) != DUET_OK) {
        duet_store_close(st);
        return fail_id(cli, "checkin history", ritual_s, err);
    }
    if ((err = duet_checkin_list(st, &rs, &nr)) == DUET_OK &&
        (err = duet_checkin_history(st, ritual_s ? rid : NULL, duet_cli_now_ms(), &v, &n)) ==
            DUET_OK) {
        err = duet_checkin_milestones(st, &ms, &nm);
    }
    load_names(st, &names);
    duet_store_close(st);
    if (err != DUET_OK) {
        free(rs);
        duet_checkin_views_free(v, n);
        return duet_cli_fail(cli, "checkin history", err);
    }
    if (svg != NULL) {
        rc = write_svg(cli, svg, rs, nr, v, n, &names);
    }
    if (rc == 0 && cli->json) {
        for (size_t i = 0; i < n; i++) {
            for (size_t k = 0; k < nr; k++) {
                if (sodium_memcmp(rs[k].id, v[i].inst.ritual, DUET_CHECKIN_ID_BYTES) == 0) {
                    show_one(cli, &rs[k], &v[i], &names);
                }
            }
        }
        for (size_t i = 0; ritual_s == NULL && i < nm; i++) {
            char hex[33], at[32];
            duet_item_id_hex(ms[i].id, hex);
            duet_cli_iso8601(ms[i].hlc >> 16, at);
            duet_json_obj(&cli->j);
            duet_json_kstr(&cli->j, "milestone", hex);
            duet_json_kstr(&cli->j, "text", ms[i].text);
            duet_json_kstr(&cli->j, "from", ms[i].mine ? "me" : "partner");
            duet_json_kstr(&cli->j, "at", at);
            duet_json_end(&cli->j);
            duet_cli_emit(cli);
        }
        if (svg != NULL) {
            duet_json_obj(&cli->j);
            duet_json_kstr(&cli->j, "event", "chart");
            duet_json_kstr(&cli->j, "svg", svg);
            duet_json_end(&cli->j);
            duet_cli_emit(cli);
        }
    } else if (rc == 0) {
        history_text(cli, rs, nr, v, n, ms, ritual_s == NULL ? nm : 0, &names);
        if (svg != NULL) {
            printf("chart written to %s\n", svg);
        }
    }
    free(rs);
    free(ms);
    duet_checkin_views_free(v, n);
    return rc;
}

/* ---- dispatch ------------------------------------------------------------------------- */

static const struct {
    const char *name;
    int (*fn)(duet_cli_t *, int, char **);
} subs[] = {
    {"templates", cmd_templates}, {"start", cmd_start}, {"accept", cmd_accept},
    {"decline", cmd_decline},     {"list", cmd_list},   {"due", cmd_due},
    {"answer", cmd_answer},       {"show", cmd_show},   {"history", cmd_history},
};

int duet_cmd_checkin(duet_cli_t *cli, int argc, char **argv)
{
    if (argc < 1 || strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0) {
        if (argc >= 1) {
            duet_cli_help(cli->cmd, stdout);
            return -1;
        }
        return duet_cli_usage(cli, "what? templates, start, accept, decline, list, due, answer, "
                                   "show or history");
    }
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        if (strcmp(argv[0], subs[i].name) == 0) {
            cli->sub = subs[i].name;
            return subs[i].fn(cli, argc - 1, argv + 1);
        }
    }
    return duet_cli_usage(cli,
                          "no such thing: '%s' (templates, start, accept, decline, list, "
                          "due, answer, show, history)",
                          argv[0]);
}
