/* see checkin.h */
#include "checkin.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "codec.h"
#include "crypto.h"
#include "outbox.h"
#include "partner.h"

/* Domain-separation labels (docs/protocol/checkin.md). */
static const char label_instance[] = "duet checkin instance v1";
static const char label_answer[] = "duet checkin answer v1";
static const char label_commit[] = "duet checkin commit v1";
#define LABEL_LEN(l) (sizeof(l) - 1u)

#define ID      DUET_CHECKIN_ID_BYTES
#define KEYB    DUET_CHECKIN_KEY_BYTES
#define NONCEB  DUET_CHECKIN_NONCE_BYTES
#define COMMITB DUET_CHECKIN_COMMIT_BYTES
#define TAGB    16u
#define CT_MAX  (DUET_CHECKIN_PLAIN_MAX + TAGB)

/* Ritual operations and agreement operations (key 1 of their bodies). */
enum { OP_PROPOSE = 1, OP_ACCEPT = 2, OP_DECLINE = 3 };
enum { AG_SET = 1, AG_ACCEPT = 2 };

/* ---- small helpers -------------------------------------------------------------------- */

/* Copy an encoder's result into a malloc'd buffer. */
static duet_err_t enc_take(duet_codec_enc_t *enc, uint8_t **out, size_t *len)
{
    const uint8_t *p;
    size_t n;
    *out = NULL;
    *len = 0;
    duet_err_t err = duet_codec_enc_finish(enc, &p, &n);
    if (err == DUET_OK) {
        *out = malloc(n);
        if (*out == NULL) {
            err = DUET_ENOMEM;
        } else {
            memcpy(*out, p, n);
            *len = n;
        }
    }
    duet_codec_enc_dispose(enc);
    return err;
}

static void free_wiped(uint8_t *p, size_t n)
{
    if (p != NULL) {
        sodium_memzero(p, n);
        free(p);
    }
}

/* Text a person wrote or reads: valid UTF-8, no control characters (tab and newline
 * allowed where multiline is). */
static bool text_ok(const char *s, size_t len, bool multiline)
{
    if (!duet_utf8_valid((const uint8_t *)s, len)) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && !(multiline && (c == '\n' || c == '\t'))) || c == 0x7f) {
            return false;
        }
    }
    return true;
}

/* Byte order of two ids (not secret: revision ids and instance ids are public here). */
static int id_order(const uint8_t *a, const uint8_t *b)
{
    for (size_t i = 0; i < ID; i++) {
        if (a[i] != b[i]) {
            return a[i] < b[i] ? -1 : 1;
        }
    }
    return 0;
}

/* A store-seal label followed by an id and an optional byte. */
static size_t seal_ad(uint8_t *ad, const char *label, const uint8_t *id, int extra)
{
    size_t n = strlen(label);
    memcpy(ad, label, n);
    memcpy(ad + n, id, ID);
    n += ID;
    if (extra >= 0) {
        ad[n++] = (uint8_t)extra;
    }
    return n;
}

/* A hex prefix as typed: 4..32 hex digits, lower-cased into out. */
static duet_err_t hex_prefix(const char *hex, char out[33], size_t *n)
{
    size_t len = strlen(hex);
    *n = 0;
    if (len < 4 || len > 2 * ID) {
        return DUET_EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        char c = hex[i];
        if (c >= 'A' && c <= 'F') {
            c = (char)(c - 'A' + 'a');
        }
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return DUET_EINVAL;
        }
        out[i] = c;
    }
    out[len] = 0;
    *n = len;
    return DUET_OK;
}

static bool hex_matches(const uint8_t id[ID], const char *prefix, size_t n)
{
    char hex[33];
    duet_item_id_hex(id, hex);
    return strncmp(hex, prefix, n) == 0;
}

static duet_err_t step_done(duet_store_t *st, sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? DUET_OK : duet_store_rc(st, rc);
}

static duet_err_t my_pk(duet_store_t *st, uint8_t pk[32])
{
    size_t n;
    duet_err_t err = duet_store_meta_get(st, "identity_pk", pk, 32, &n);
    if (err == DUET_ENOENT) {
        return DUET_ENOTINIT;
    }
    return err == DUET_OK && n != 32 ? DUET_ECORRUPT : err;
}

static duet_err_t partner_pk(duet_store_t *st, uint8_t pk[32])
{
    duet_partner_t p;
    duet_err_t err = duet_partner_load(st, &p);
    if (err == DUET_OK) {
        memcpy(pk, p.identity_pk, 32);
    }
    sodium_memzero(&p, sizeof p);
    return err;
}

/* ---- templates ------------------------------------------------------------------------ */

/* Question ids are part of the data (answers files and history name them): never change
 * one; add new questions with new ids. */
static const duet_checkin_template_t templates[] = {
    {{"weekly",
      4,
      {{"felt_good", "What felt good this week?", DUET_CHECKIN_TEXT},
       {"try_next", "What would you like to try next time?", DUET_CHECKIN_TEXT},
       {"support", "How can I support you when you feel vulnerable?", DUET_CHECKIN_TEXT},
       {"closeness", "How close did you feel to me this week? (1 distant, 5 very close)",
        DUET_CHECKIN_SCALE}}},
     {DUET_CHECKIN_WEEKLY, 0}},
    {{"daily",
      4,
      {{"energy", "Energy today (1 drained, 5 full of energy)", DUET_CHECKIN_SCALE},
       {"comfort", "Comfort in body and mind today (1 hard, 5 at ease)", DUET_CHECKIN_SCALE},
       {"closeness", "Closeness to me today (1 distant, 5 very close)", DUET_CHECKIN_SCALE},
       {"line", "One line about your day", DUET_CHECKIN_TEXT}}},
     {DUET_CHECKIN_DAILY, 0}},
};
#define NTEMPLATES (sizeof templates / sizeof templates[0])

size_t duet_checkin_template_count(void)
{
    return NTEMPLATES;
}

const duet_checkin_template_t *duet_checkin_template_at(size_t i)
{
    return i < NTEMPLATES ? &templates[i] : NULL;
}

const duet_checkin_template_t *duet_checkin_template_find(const char *name)
{
    for (size_t i = 0; i < NTEMPLATES; i++) {
        if (strcmp(templates[i].spec.name, name) == 0) {
            return &templates[i];
        }
    }
    return NULL;
}

static bool qid_ok(const char *s)
{
    size_t n = strnlen(s, DUET_CHECKIN_QID_MAX + 1);
    if (n == 0 || n > DUET_CHECKIN_QID_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) {
            return false;
        }
    }
    return true;
}

duet_err_t duet_checkin_spec_check(const duet_checkin_spec_t *spec)
{
    size_t n = strnlen(spec->name, DUET_CHECKIN_NAME_MAX + 1);
    if (n == 0 || n > DUET_CHECKIN_NAME_MAX || !text_ok(spec->name, n, false)) {
        return DUET_EINVAL;
    }
    if (spec->nq == 0 || spec->nq > DUET_CHECKIN_QUESTIONS_MAX) {
        return DUET_EINVAL;
    }
    for (uint32_t i = 0; i < spec->nq; i++) {
        const duet_checkin_question_t *q = &spec->q[i];
        size_t tl = strnlen(q->text, DUET_CHECKIN_QTEXT_MAX + 1);
        if (!qid_ok(q->id) || tl == 0 || tl > DUET_CHECKIN_QTEXT_MAX ||
            !text_ok(q->text, tl, false) ||
            (q->type != DUET_CHECKIN_TEXT && q->type != DUET_CHECKIN_SCALE)) {
            return DUET_EINVAL;
        }
        for (uint32_t j = 0; j < i; j++) {
            if (strcmp(spec->q[j].id, q->id) == 0) {
                return DUET_EINVAL;
            }
        }
    }
    return DUET_OK;
}

/* ---- rhythms -------------------------------------------------------------------------- */

static const char *const day_names[7] = {"monday", "tuesday",  "wednesday", "thursday",
                                         "friday", "saturday", "sunday"};

duet_err_t duet_checkin_rhythm_parse(const char *s, duet_checkin_rhythm_t *out)
{
    char low[24];
    size_t n = strlen(s);
    memset(out, 0, sizeof *out);
    if (n == 0 || n >= sizeof low) {
        return DUET_EINVAL;
    }
    for (size_t i = 0; i <= n; i++) {
        char c = s[i];
        low[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    if (strcmp(low, "daily") == 0) {
        out->every = DUET_CHECKIN_DAILY;
        return DUET_OK;
    }
    if (strcmp(low, "weekly") == 0) {
        out->every = DUET_CHECKIN_WEEKLY;
        return DUET_OK;
    }
    if (strncmp(low, "weekly:", 7) != 0) {
        return DUET_EINVAL;
    }
    const char *d = low + 7;
    size_t dl = strlen(d);
    for (uint32_t i = 0; i < 7; i++) {
        /* "mon" .. "sun", or the whole name */
        if ((dl == 3 && strncmp(d, day_names[i], 3) == 0) || strcmp(d, day_names[i]) == 0) {
            out->every = DUET_CHECKIN_WEEKLY;
            out->weekday = i + 1;
            return DUET_OK;
        }
    }
    return DUET_EINVAL;
}

void duet_checkin_rhythm_format(const duet_checkin_rhythm_t *r, char out[static 16])
{
    if (r->every == DUET_CHECKIN_DAILY) {
        snprintf(out, 16, "daily");
    } else if (r->weekday >= 1 && r->weekday <= 7) {
        snprintf(out, 16, "weekly:%.3s", day_names[r->weekday - 1]);
    } else {
        snprintf(out, 16, "weekly");
    }
}

/* ---- calendar dates ------------------------------------------------------------------- */

/* Howard Hinnant's days_from_civil / civil_from_days ("chrono-Compatible Low-Level Date
 * Algorithms"): exact for the proleptic Gregorian calendar, no time zone involved. */
int64_t duet_checkin_day_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t mp = (int64_t)(m > 2 ? m - 3 : m + 9);
    int64_t doy = (153 * mp + 2) / 5 + (int64_t)d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void duet_checkin_civil_from_day(int64_t day, int64_t *y, unsigned *m, unsigned *d)
{
    int64_t z = day + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
    *m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

void duet_checkin_day_format(int64_t day, char out[static DUET_CHECKIN_DATE_LEN + 1])
{
    int64_t y;
    unsigned m, d;
    if (day < DUET_CHECKIN_DAY_MIN || day > DUET_CHECKIN_DAY_MAX + DUET_CHECKIN_SPAN_DAYS) {
        day = DUET_CHECKIN_DAY_MIN; /* never reached: every day comes from parse or a clock */
    }
    duet_checkin_civil_from_day(day, &y, &m, &d);
    snprintf(out, DUET_CHECKIN_DATE_LEN + 1, "%04d-%02u-%02u", (int)y, m, d);
}

duet_err_t duet_checkin_day_parse(const char *s, size_t len, int64_t *day)
{
    unsigned v[3] = {0, 0, 0};
    static const size_t pos[3] = {0, 5, 8}, width[3] = {4, 2, 2};
    *day = 0;
    if (len != DUET_CHECKIN_DATE_LEN || s[4] != '-' || s[7] != '-') {
        return DUET_EINVAL;
    }
    for (size_t f = 0; f < 3; f++) {
        for (size_t i = 0; i < width[f]; i++) {
            char c = s[pos[f] + i];
            if (c < '0' || c > '9') {
                return DUET_EINVAL;
            }
            v[f] = v[f] * 10u + (unsigned)(c - '0');
        }
    }
    if (v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > 31) {
        return DUET_EINVAL;
    }
    int64_t d = duet_checkin_day_from_civil(v[0], v[1], v[2]);
    int64_t y;
    unsigned m, dd;
    duet_checkin_civil_from_day(d, &y, &m, &dd);
    if (m != v[1] || dd != v[2] || d < DUET_CHECKIN_DAY_MIN || d > DUET_CHECKIN_DAY_MAX) {
        return DUET_EINVAL; /* 2026-02-30, or outside the years duet counts in */
    }
    *day = d;
    return DUET_OK;
}

uint32_t duet_checkin_weekday(int64_t day)
{
    /* 1970-01-01 was a Thursday (ISO 4). */
    int64_t w = (day + 3) % 7;
    if (w < 0) {
        w += 7;
    }
    return (uint32_t)w + 1;
}

int64_t duet_checkin_local_day(uint64_t ms)
{
    time_t t = (time_t)(ms / 1000u);
    struct tm tm;
    if (localtime_r(&t, &tm) == NULL) {
        return (int64_t)(ms / 86400000u); /* out of the C library's range: UTC */
    }
    return duet_checkin_day_from_civil((int64_t)tm.tm_year + 1900, (unsigned)tm.tm_mon + 1,
                                       (unsigned)tm.tm_mday);
}

uint64_t duet_checkin_day_start_ms(int64_t day)
{
    int64_t y;
    unsigned m, d;
    struct tm tm;
    duet_checkin_civil_from_day(day, &y, &m, &d);
    memset(&tm, 0, sizeof tm);
    tm.tm_year = (int)(y - 1900);
    tm.tm_mon = (int)m - 1;
    tm.tm_mday = (int)d;
    tm.tm_isdst = -1; /* let the zone say whether midnight is in summer time */
    time_t t = mktime(&tm);
    if (t == (time_t)-1 || t < 0) {
        return (uint64_t)(day > 0 ? day : 0) * 86400000u;
    }
    /* Where midnight does not exist (a spring-forward at 00:00) mktime moves it forward,
     * which is the day's first instant. Where it lands on the previous date or too late,
     * walk to the first instant whose local date is day, in quarter hours (zones change
     * by multiples of 15 minutes), within a day. */
    for (int i = 0; i < 96 && duet_checkin_local_day((uint64_t)t * 1000u) < day; i++) {
        t += 900;
    }
    for (int i = 0;
         i < 96 && t >= 900 && duet_checkin_local_day((uint64_t)(t - 900) * 1000u) == day; i++) {
        t -= 900;
    }
    return (uint64_t)t * 1000u;
}

/* ---- questions on the wire and at rest -------------------------------------------------- */

/* Keys 3 (name) and 4 (questions: [[id, text, type], ...]) of a ritual body. */
static void put_spec(duet_codec_enc_t *enc, const duet_checkin_spec_t *spec)
{
    duet_codec_put_key(enc, 3);
    duet_codec_put_str(enc, spec->name, strlen(spec->name));
    duet_codec_put_key(enc, 4);
    duet_codec_put_array(enc, spec->nq);
    for (uint32_t i = 0; i < spec->nq; i++) {
        duet_codec_put_array(enc, 3);
        duet_codec_put_str(enc, spec->q[i].id, strlen(spec->q[i].id));
        duet_codec_put_str(enc, spec->q[i].text, strlen(spec->q[i].text));
        duet_codec_put_uint(enc, spec->q[i].type);
    }
}

static duet_err_t get_spec(const msgpack_object *name, const msgpack_object *qs,
                           duet_checkin_spec_t *spec)
{
    const char *s;
    size_t n;
    memset(spec, 0, sizeof *spec);
    if (duet_codec_get_str(name, 1, DUET_CHECKIN_NAME_MAX, &s, &n) != DUET_OK) {
        return DUET_EDECODE;
    }
    memcpy(spec->name, s, n);
    if (qs->type != MSGPACK_OBJECT_ARRAY || qs->via.array.size == 0 ||
        qs->via.array.size > DUET_CHECKIN_QUESTIONS_MAX) {
        return DUET_EDECODE;
    }
    spec->nq = qs->via.array.size;
    for (uint32_t i = 0; i < spec->nq; i++) {
        const msgpack_object *q = &qs->via.array.ptr[i];
        uint64_t type;
        if (q->type != MSGPACK_OBJECT_ARRAY || q->via.array.size != 3) {
            return DUET_EDECODE;
        }
        if (duet_codec_get_str(&q->via.array.ptr[0], 1, DUET_CHECKIN_QID_MAX, &s, &n) != DUET_OK) {
            return DUET_EDECODE;
        }
        memcpy(spec->q[i].id, s, n);
        if (duet_codec_get_str(&q->via.array.ptr[1], 1, DUET_CHECKIN_QTEXT_MAX, &s, &n) !=
            DUET_OK) {
            return DUET_EDECODE;
        }
        memcpy(spec->q[i].text, s, n);
        if (duet_codec_get_uint(&q->via.array.ptr[2], DUET_CHECKIN_TEXT, DUET_CHECKIN_SCALE,
                                &type) != DUET_OK) {
            return DUET_EDECODE;
        }
        spec->q[i].type = (uint32_t)type;
    }
    return duet_checkin_spec_check(spec) == DUET_OK ? DUET_OK : DUET_EDECODE;
}

/* Limits for ritual bodies and sealed specs: a map of at most 8 keys, 16 questions of 3. */
static const duet_codec_limits_t ritual_limits = {.max_depth = 3,
                                                  .max_str = DUET_CHECKIN_QTEXT_MAX,
                                                  .max_bin = ID,
                                                  .max_array = DUET_CHECKIN_QUESTIONS_MAX,
                                                  .max_map = 8,
                                                  .max_objects = 128};

static duet_err_t spec_seal(duet_store_t *st, const uint8_t id[ID], const duet_checkin_spec_t *spec,
                            uint8_t **out, size_t *out_len)
{
    duet_codec_enc_t enc;
    uint8_t *plain, ad[32];
    size_t plen;
    duet_codec_enc_init(&enc, 16384);
    duet_codec_put_map(&enc, 2);
    put_spec(&enc, spec);
    duet_err_t err = enc_take(&enc, &plain, &plen);
    if (err != DUET_OK) {
        return err;
    }
    err = duet_store_seal(st, ad, seal_ad(ad, "ritual", id, -1), plain, plen, out, out_len);
    free_wiped(plain, plen);
    return err;
}

static duet_err_t spec_open(duet_store_t *st, const uint8_t id[ID], const uint8_t *sealed,
                            size_t len, duet_checkin_spec_t *spec)
{
    static const duet_codec_field_t fields[] = {{3, DUET_CODEC_STR, true},
                                                {4, DUET_CODEC_ARRAY, true}};
    const msgpack_object *f[2];
    uint8_t *plain, ad[32];
    size_t plen;
    duet_codec_msg_t msg;
    duet_err_t err =
        duet_store_unseal(st, ad, seal_ad(ad, "ritual", id, -1), sealed, len, &plain, &plen);
    if (err != DUET_OK) {
        return err;
    }
    err = duet_codec_decode(&msg, plain, plen, &ritual_limits);
    if (err == DUET_OK) {
        err = duet_codec_map(&msg.root, fields, 2, f);
        if (err == DUET_OK) {
            err = get_spec(f[0], f[1], spec);
        }
        duet_codec_msg_dispose(&msg);
    }
    free_wiped(plain, plen);
    return err == DUET_OK ? DUET_OK : DUET_ECORRUPT;
}

/* ---- rituals -------------------------------------------------------------------------- */

#define RITUAL_COLS "id, mine, state, every, weekday, open, start_day, active_at, hlc, spec"

static duet_err_t ritual_from_row(duet_store_t *st, sqlite3_stmt *s, duet_checkin_ritual_t *r)
{
    memset(r, 0, sizeof *r);
    if (sqlite3_column_bytes(s, 0) != (int)ID) {
        return DUET_ECORRUPT;
    }
    memcpy(r->id, sqlite3_column_blob(s, 0), ID);
    r->mine = sqlite3_column_int(s, 1) != 0;
    r->state = (uint32_t)sqlite3_column_int(s, 2);
    r->rhythm.every = (uint32_t)sqlite3_column_int(s, 3);
    r->rhythm.weekday = (uint32_t)sqlite3_column_int(s, 4);
    r->open = sqlite3_column_int(s, 5) != 0;
    r->started = sqlite3_column_type(s, 6) != SQLITE_NULL;
    r->start_day = sqlite3_column_int64(s, 6);
    r->active_at = (uint64_t)sqlite3_column_int64(s, 7);
    r->hlc = (uint64_t)sqlite3_column_int64(s, 8);
    if (r->state > DUET_RITUAL_DECLINED ||
        (r->rhythm.every != DUET_CHECKIN_DAILY && r->rhythm.every != DUET_CHECKIN_WEEKLY) ||
        r->rhythm.weekday > 7) {
        return DUET_ECORRUPT;
    }
    return spec_open(st, r->id, sqlite3_column_blob(s, 9), (size_t)sqlite3_column_bytes(s, 9),
                     &r->spec);
}

static duet_err_t ritual_insert(duet_store_t *st, const duet_checkin_ritual_t *r)
{
    uint8_t *sealed;
    size_t slen;
    sqlite3_stmt *s;
    duet_err_t err = spec_seal(st, r->id, &r->spec, &sealed, &slen);
    if (err != DUET_OK) {
        return err;
    }
    err = duet_store_prepare(st,
                             "INSERT INTO rituals (" RITUAL_COLS ") "
                             "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                             &s);
    if (err == DUET_OK) {
        sqlite3_bind_blob(s, 1, r->id, ID, SQLITE_STATIC);
        sqlite3_bind_int(s, 2, r->mine);
        sqlite3_bind_int(s, 3, (int)r->state);
        sqlite3_bind_int(s, 4, (int)r->rhythm.every);
        sqlite3_bind_int(s, 5, (int)r->rhythm.weekday);
        sqlite3_bind_int(s, 6, r->open);
        if (r->started) {
            sqlite3_bind_int64(s, 7, r->start_day);
            sqlite3_bind_int64(s, 8, (sqlite3_int64)r->active_at);
        }
        sqlite3_bind_int64(s, 9, (sqlite3_int64)r->hlc);
        sqlite3_bind_blob(s, 10, sealed, (int)slen, SQLITE_STATIC);
        err = step_done(st, s);
    }
    free(sealed);
    return err;
}

/* Write back what changes over a ritual's life: state, weekday, start. */
static duet_err_t ritual_update(duet_store_t *st, const duet_checkin_ritual_t *r)
{
    sqlite3_stmt *s;
    duet_err_t err = duet_store_prepare(st,
                                        "UPDATE rituals SET state = ?2, weekday = ?3, "
                                        "start_day = ?4, active_at = ?5 WHERE id = ?1",
                                        &s);
    if (err != DUET_OK) {
        return err;
    }
    sqlite3_bind_blob(s, 1, r->id, ID, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, (int)r->state);
    sqlite3_bind_int(s, 3, (int)r->rhythm.weekday);
    if (r->started) {
        sqlite3_bind_int64(s, 4, r->start_day);
        sqlite3_bind_int64(s, 5, (sqlite3_int64)r->active_at);
    }
    return step_done(st, s);
}

duet_err_t duet_checkin_get(duet_store_t *st, const uint8_t id[static DUET_CHECKIN_ID_BYTES],
                            duet_checkin_ritual_t *out)
{
    sqlite3_stmt *s;
    memset(out, 0, sizeof *out);
    duet_err_t err =
        duet_store_prepare(st, "SELECT " RITUAL_COLS " FROM rituals WHERE id = ?1", &s);
    if (err != DUET_OK) {
        return err;
    }
    sqlite3_bind_blob(s, 1, id, ID, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        err = ritual_from_row(st, s, out);
    } else {
        err = rc == SQLITE_DONE ? DUET_ENORITUAL : duet_store_rc(st, rc);
    }
    sqlite3_reset(s);
    if (err != DUET_OK) {
        memset(out, 0, sizeof *out);
    }
    return err;
}

duet_err_t duet_checkin_list(duet_store_t *st, duet_checkin_ritual_t **out, size_t *n)
{
    sqlite3_stmt *s;
    duet_checkin_ritual_t *v = NULL;
    size_t count = 0, cap = 0;
    *out = NULL;
    *n = 0;
    duet_err_t err =
        duet_store_prepare(st, "SELECT " RITUAL_COLS " FROM rituals ORDER BY hlc, id LIMIT ?1", &s);
    if (err != DUET_OK) {
        return err;
    }
    sqlite3_bind_int64(s, 1, DUET_CHECKIN_LIST_MAX);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (count == cap) {
            cap = cap ? cap * 2 : 8;
            duet_checkin_ritual_t *nv = realloc(v, cap * sizeof *nv);
            if (nv == NULL) {
                err = DUET_ENOMEM;
                break;
            }
            v = nv;
        }
        if ((err = ritual_from_row(st, s, &v[count])) != DUET_OK) {
            break;
        }
        count++;
    }
    if (err == DUET_OK && rc != SQLITE_DONE) {
        err = duet_store_rc(st, rc);
    }
    sqlite3_reset(s);
    if (err != DUET_OK) {
        free(v);
        return err;
    }
    *out = v;
    *n = count;
    return DUET_OK;
}

duet_err_t duet_checkin_resolve_ritual(duet_store_t *st, const char *hex,
                                       uint8_t id[static DUET_CHECKIN_ID_BYTES])
{
    char prefix[33];
    size_t plen, n, found = 0;
    duet_checkin_ritual_t *v;
    memset(id, 0, ID);
    if (hex_prefix(hex, prefix, &plen) != DUET_OK) {
        return DUET_ENORITUAL;
    }
    duet_err_t err = duet_checkin_list(st, &v, &n);
    if (err != DUET_OK) {
        return err;
    }
    for (size_t i = 0; i < n; i++) {
        if (hex_matches(v[i].id, prefix, plen)) {
            memcpy(id, v[i].id, ID);
            found++;
        }
    }
    free(v);
    if (found != 1) {
        memset(id, 0, ID);
        return found == 0 ? DUET_ENORITUAL : DUET_EINVAL;
    }
    return DUET_OK;
}

/* The RITUAL body of one operation. */
static duet_err_t ritual_body(const duet_checkin_ritual_t *r, int op, uint8_t **out, size_t *len)
{
    duet_codec_enc_t enc;
    char date[DUET_CHECKIN_DATE_LEN + 1];
    duet_codec_enc_init(&enc, 16384);
    duet_codec_put_map(&enc, op == OP_PROPOSE ? 7u : op == OP_ACCEPT ? 4u : 2u);
    duet_codec_put_key(&enc, 1);
    duet_codec_put_uint(&enc, (uint64_t)op);
    duet_codec_put_key(&enc, 2);
    duet_codec_put_bin(&enc, r->id, ID);
    if (op == OP_PROPOSE) {
        put_spec(&enc, &r->spec);
        duet_codec_put_key(&enc, 5);
        duet_codec_put_uint(&enc, r->rhythm.every);
        duet_codec_put_key(&enc, 6);
        duet_codec_put_uint(&enc, r->rhythm.weekday);
        duet_codec_put_key(&enc, 7);
        duet_codec_put_bool(&enc, r->open);
    } else if (op == OP_ACCEPT) {
        duet_codec_put_key(&enc, 6);
        duet_codec_put_uint(&enc, r->rhythm.weekday);
        duet_checkin_day_format(r->start_day, date);
        duet_codec_put_key(&enc, 8);
        duet_codec_put_str(&enc, date, DUET_CHECKIN_DATE_LEN);
    }
    return enc_take(&enc, out, len);
}

static duet_err_t queue_body(duet_store_t *st, uint32_t kind, uint8_t *body, size_t len,
                             uint64_t now_ms, uint8_t *id_out)
{
    duet_err_t err = duet_outbox_queue(st, kind, body, len, now_ms, id_out);
    free_wiped(body, len);
    return err;
}

static duet_err_t send_ritual(duet_store_t *st, const duet_checkin_ritual_t *r, int op,
                              uint64_t now_ms)
{
    uint8_t *body;
    size_t len;
    duet_err_t err = ritual_body(r, op, &body, &len);
    if (err != DUET_OK) {
        return err;
    }
    return queue_body(st, DUET_KIND_RITUAL, body, len, now_ms, NULL);
}

duet_err_t duet_checkin_propose(duet_store_t *st, const duet_checkin_spec_t *spec,
                                duet_checkin_rhythm_t rhythm, bool open, uint64_t now_ms,
                                uint8_t id_out[static DUET_CHECKIN_ID_BYTES])
{
    duet_checkin_ritual_t *r = calloc(1, sizeof *r);
    memset(id_out, 0, ID);
    if (r == NULL) {
        return DUET_ENOMEM;
    }
    duet_err_t err = DUET_EINVAL;
    if (duet_checkin_spec_check(spec) != DUET_OK ||
        (rhythm.every != DUET_CHECKIN_DAILY && rhythm.every != DUET_CHECKIN_WEEKLY) ||
        rhythm.weekday > 7 || (rhythm.every == DUET_CHECKIN_DAILY && rhythm.weekday != 0)) {
        goto cleanup;
    }
    if (!duet_partner_exists(st)) {
        err = DUET_ENOTPAIRED;
        goto cleanup;
    }
    duet_rng_t rng = duet_store_rng(st);
    duet_rng_fill(&rng, r->id, ID);
    r->mine = true;
    r->state = DUET_RITUAL_PROPOSED;
    r->rhythm = rhythm;
    r->open = open;
    r->spec = *spec;
    if ((err = duet_items_clock(st, now_ms, &r->hlc)) != DUET_OK ||
        (err = ritual_insert(st, r)) != DUET_OK ||
        (err = send_ritual(st, r, OP_PROPOSE, now_ms)) != DUET_OK) {
        goto cleanup;
    }
    memcpy(id_out, r->id, ID);
cleanup:
    free(r);
    return err;
}

/* Start a ritual on start_day; a weekly one without a day takes the start's weekday. */
static void ritual_start(duet_checkin_ritual_t *r, int64_t start_day, uint64_t now_ms)
{
    r->state = DUET_RITUAL_ACTIVE;
    r->started = true;
    r->start_day = start_day;
    r->active_at = now_ms;
    if (r->rhythm.every == DUET_CHECKIN_WEEKLY && r->rhythm.weekday == 0) {
        r->rhythm.weekday = duet_checkin_weekday(start_day);
    }
}

duet_err_t duet_checkin_accept(duet_store_t *st, const uint8_t id[static DUET_CHECKIN_ID_BYTES],
                               uint64_t now_ms)
{
    duet_checkin_ritual_t *r = malloc(sizeof *r);
    if (r == NULL) {
        return DUET_ENOMEM;
    }
    duet_err_t err = duet_checkin_get(st, id, r);
    if (err == DUET_OK && (r->mine || r->state != DUET_RITUAL_PROPOSED)) {
        err = DUET_ESTATE;
    }
    if (err == DUET_OK) {
        ritual_start(r, duet_checkin_local_day(now_ms), now_ms);
        if ((err = ritual_update(st, r)) == DUET_OK) {
            err = send_ritual(st, r, OP_ACCEPT, now_ms);
        }
    }
    free(r);
    return err;
}

duet_err_t duet_checkin_decline(duet_store_t *st, const uint8_t id[static DUET_CHECKIN_ID_BYTES],
                                uint64_t now_ms)
{
    duet_checkin_ritual_t *r = malloc(sizeof *r);
    if (r == NULL) {
        return DUET_ENOMEM;
    }
    duet_err_t err = duet_checkin_get(st, id, r);
    if (err == DUET_OK && r->state == DUET_RITUAL_DECLINED) {
        err = DUET_ESTATE;
    }
    if (err == DUET_OK) {
        r->state = DUET_RITUAL_DECLINED;
        if ((err = ritual_update(st, r)) == DUET_OK) {
            err = send_ritual(st, r, OP_DECLINE, now_ms);
        }
    }
    free(r);
    return err;
}

/* ---- instances ------------------------------------------------------------------------ */

void duet_checkin_instance_id(const uint8_t ritual[static DUET_CHECKIN_ID_BYTES], int64_t day,
                              uint8_t out[static DUET_CHECKIN_ID_BYTES])
{
    uint8_t in[LABEL_LEN(label_instance) + ID + DUET_CHECKIN_DATE_LEN];
    char date[DUET_CHECKIN_DATE_LEN + 1];
    duet_checkin_day_format(day, date);
    memcpy(in, label_instance, LABEL_LEN(label_instance));
    memcpy(in + LABEL_LEN(label_instance), ritual, ID);
    memcpy(in + LABEL_LEN(label_instance) + ID, date, DUET_CHECKIN_DATE_LEN);
    duet_crypto_blake2b(out, ID, in, sizeof in, NULL, 0);
}

bool duet_checkin_is_instance(const duet_checkin_ritual_t *r, int64_t day)
{
    if (!r->started || day < r->start_day || day > r->start_day + DUET_CHECKIN_SPAN_DAYS) {
        return false;
    }
    return day == r->start_day || r->rhythm.every == DUET_CHECKIN_DAILY ||
           duet_checkin_weekday(day) == r->rhythm.weekday;
}

int64_t duet_checkin_next_instance(const duet_checkin_ritual_t *r, int64_t day)
{
    if (day <= r->start_day) {
        return r->start_day;
    }
    if (r->rhythm.every == DUET_CHECKIN_DAILY) {
        return day;
    }
    int64_t ahead = ((int64_t)r->rhythm.weekday - (int64_t)duet_checkin_weekday(day) + 7) % 7;
    return day + ahead;
}

uint64_t duet_checkin_due_ms(const duet_checkin_ritual_t *r, int64_t day)
{
    uint64_t t = duet_checkin_day_start_ms(day);
    if (day == r->start_day && r->active_at > t) {
        t = r->active_at; /* the first instance is due when the ritual starts */
    }
    return t;
}

/* The days of a ritual's instances I have answered, ascending (malloc'd). */
static duet_err_t answered_days(duet_store_t *st, const uint8_t ritual[ID], int64_t **out,
                                size_t *n)
{
    sqlite3_stmt *s;
    int64_t *v = NULL;
    size_t count = 0, cap = 0;
    *out = NULL;
    *n = 0;
    duet_err_t err = duet_store_prepare(
        st, "SELECT day FROM checkin_answers WHERE ritual = ?1 AND mine = 1 ORDER BY day", &s);
    if (err != DUET_OK) {
        return err;
    }
    sqlite3_bind_blob(s, 1, ritual, ID, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (count == cap) {
            cap = cap ? cap * 2 : 32;
            int64_t *nv = realloc(v, cap * sizeof *nv);
            if (nv == NULL) {
                err = DUET_ENOMEM;
                break;
            }
            v = nv;
        }
        v[count++] = sqlite3_column_int64(s, 0);
    }
    if (err == DUET_OK && rc != SQLITE_DONE) {
        err = duet_store_rc(st, rc);
    }
    sqlite3_reset(s);
    if (err != DUET_OK) {
        free(v);
        return err;
    }
    *out = v;
    *n = count;
    return DUET_OK;
}

static bool day_in(const int64_t *days, size_t n, int64_t day)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (days[mid] == day) {
            return true;
        }
        if (days[mid] < day) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return false;
}

/* A growable list of instances. */
typedef struct inst_list {
    duet_checkin_instance_t *v;
    size_t n, cap;
} inst_list_t;

static duet_err_t inst_push(inst_list_t *l, const uint8_t ritual[ID], int64_t day)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        duet_checkin_instance_t *nv = realloc(l->v, cap * sizeof *nv);
        if (nv == NULL) {
            return DUET_ENOMEM;
        }
        l->v = nv;
        l->cap = cap;
    }
    duet_checkin_instance_t *x = &l->v[l->n++];
    memcpy(x->ritual, ritual, ID);
    x->day = day;
    duet_checkin_instance_id(ritual, day, x->id);
    return DUET_OK;
}

static int inst_cmp(const void *a, const void *b)
{
    const duet_checkin_instance_t *x = a, *y = b;
    if (x->day != y->day) {
        return x->day < y->day ? -1 : 1;
    }
    return id_order(x->ritual, y->ritual);
}

/* The last instance day of r on or before day (r started; day >= start_day). */
static int64_t prev_instance(const duet_checkin_ritual_t *r, int64_t day)
{
    if (r->rhythm.every == DUET_CHECKIN_DAILY || day <= r->start_day) {
        return day <= r->start_day ? r->start_day : day;
    }
    int64_t back = ((int64_t)duet_checkin_weekday(day) - (int64_t)r->rhythm.weekday + 7) % 7;
    int64_t d = day - back;
    return d < r->start_day ? r->start_day : d;
}

/* The previous instance before day (day > start_day is an instance). */
static int64_t instance_before(const duet_checkin_ritual_t *r, int64_t day)
{
    return prev_instance(r, day - 1);
}

duet_err_t duet_checkin_due(duet_store_t *st, uint64_t now_ms, duet_checkin_instance_t **out,
                            size_t *n)
{
    duet_checkin_ritual_t *v;
    size_t nr;
    inst_list_t l = {NULL, 0, 0};
    *out = NULL;
    *n = 0;
    duet_err_t err = duet_checkin_list(st, &v, &nr);
    if (err != DUET_OK) {
        return err;
    }
    int64_t today = duet_checkin_local_day(now_ms);
    for (size_t i = 0; i < nr && err == DUET_OK; i++) {
        const duet_checkin_ritual_t *r = &v[i];
        int64_t *done;
        size_t ndone;
        if (r->state != DUET_RITUAL_ACTIVE || !r->started || r->start_day > today) {
            continue;
        }
        if ((err = answered_days(st, r->id, &done, &ndone)) != DUET_OK) {
            break;
        }
        /* Walk back from the newest instance: the newest DUE_MAX unanswered ones. */
        int64_t last = today - r->start_day > DUET_CHECKIN_SPAN_DAYS
                           ? r->start_day + DUET_CHECKIN_SPAN_DAYS
                           : today;
        size_t taken = 0;
        for (int64_t d = prev_instance(r, last); taken < DUET_CHECKIN_DUE_MAX && err == DUET_OK;
             d = instance_before(r, d)) {
            if (!day_in(done, ndone, d)) {
                err = inst_push(&l, r->id, d);
                taken++;
            }
            if (d == r->start_day) {
                break;
            }
        }
        free(done);
    }
    free(v);
    if (err != DUET_OK) {
        free(l.v);
        return err;
    }
    if (l.n > 1) {
        qsort(l.v, l.n, sizeof *l.v, inst_cmp);
    }
    *out = l.v;
    *n = l.n;
    return DUET_OK;
}

/* Every instance known here: those with an answer row (of the given ritual, or all) and
 * those of active rituals up to last_day. Sorted, without duplicates. */
static duet_err_t known_instances(duet_store_t *st, const uint8_t *only, int64_t last_day,
                                  inst_list_t *l)
{
    sqlite3_stmt *s;
    duet_checkin_ritual_t *v;
    size_t nr;
    memset(l, 0, sizeof *l);
    duet_err_t err = duet_store_prepare(st,
                                        "SELECT DISTINCT ritual, day FROM checkin_answers "
                                        "WHERE ?1 IS NULL OR ritual = ?1",
                                        &s);
    if (err != DUET_OK) {
        return err;
    }
    if (only != NULL) {
        sqlite3_bind_blob(s, 1, only, ID, SQLITE_STATIC);
    }
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (sqlite3_column_bytes(s, 0) != (int)ID) {
            err = DUET_ECORRUPT;
            break;
        }
        if ((err = inst_push(l, sqlite3_column_blob(s, 0), sqlite3_column_int64(s, 1))) !=
            DUET_OK) {
            break;
        }
    }
    if (err == DUET_OK && rc != SQLITE_DONE) {
        err = duet_store_rc(st, rc);
    }
    sqlite3_reset(s);
    if (err == DUET_OK && (err = duet_checkin_list(st, &v, &nr)) == DUET_OK) {
        for (size_t i = 0; err == DUET_OK && i < nr; i++) {
            const duet_checkin_ritual_t *r = &v[i];
            if (r->state != DUET_RITUAL_ACTIVE || !r->started ||
                (only != NULL && sodium_memcmp(only, r->id, ID) != 0)) {
                continue;
            }
            for (int64_t d = r->start_day;
                 d <= last_day && d <= r->start_day + DUET_CHECKIN_SPAN_DAYS && err == DUET_OK;
                 d = duet_checkin_next_instance(r, d + 1)) {
                err = inst_push(l, r->id, d);
            }
        }
        free(v);
    }
    if (err != DUET_OK) {
        free(l->v);
        memset(l, 0, sizeof *l);
        return err;
    }
    if (l->n > 1) {
        qsort(l->v, l->n, sizeof *l->v, inst_cmp);
        size_t w = 1;
        for (size_t i = 1; i < l->n; i++) {
            if (inst_cmp(&l->v[i], &l->v[w - 1]) != 0) {
                l->v[w++] = l->v[i];
            }
        }
        l->n = w;
    }
    return DUET_OK;
}

duet_err_t duet_checkin_resolve_instance(duet_store_t *st, const char *hex, uint64_t now_ms,
                                         duet_checkin_instance_t *out)
{
    char prefix[33];
    size_t plen, found = 0;
    inst_list_t l;
    memset(out, 0, sizeof *out);
    if (hex_prefix(hex, prefix, &plen) != DUET_OK) {
        return DUET_ENORITUAL;
    }
    duet_err_t err = known_instances(st, NULL, duet_checkin_local_day(now_ms) + 1, &l);
    if (err != DUET_OK) {
        return err;
    }
    for (size_t i = 0; i < l.n; i++) {
        if (hex_matches(l.v[i].id, prefix, plen)) {
            *out = l.v[i];
            found++;
        }
    }
    free(l.v);
    if (found != 1) {
        memset(out, 0, sizeof *out);
        return found == 0 ? DUET_ENORITUAL : DUET_EINVAL;
    }
    return DUET_OK;
}

/* Whether (when, inst) comes strictly after the cursor (after_ms, after_inst). */
static bool after_cursor(uint64_t when, const uint8_t inst[ID], uint64_t after_ms,
                         const uint8_t *after_inst)
{
    if (when != after_ms) {
        return when > after_ms;
    }
    return after_inst != NULL && id_order(inst, after_inst) > 0;
}

duet_err_t duet_checkin_next_due(duet_store_t *st, uint64_t after_ms, const uint8_t *after_inst,
                                 uint64_t *when_ms, uint8_t inst[static DUET_CHECKIN_ID_BYTES],
                                 uint8_t ritual[static DUET_CHECKIN_ID_BYTES])
{
    duet_checkin_ritual_t *v;
    size_t nr;
    bool any = false;
    *when_ms = 0;
    memset(inst, 0, ID);
    memset(ritual, 0, ID);
    duet_err_t err = duet_checkin_list(st, &v, &nr);
    if (err != DUET_OK) {
        return err;
    }
    int64_t from = duet_checkin_local_day(after_ms) - 1; /* a day of margin for the zone */
    for (size_t i = 0; i < nr && err == DUET_OK; i++) {
        const duet_checkin_ritual_t *r = &v[i];
        int64_t *done;
        size_t ndone;
        if (r->state != DUET_RITUAL_ACTIVE || !r->started) {
            continue;
        }
        if ((err = answered_days(st, r->id, &done, &ndone)) != DUET_OK) {
            break;
        }
        /* The first instance is due when the ritual started here, which may be later
         * than instances after it (an acceptance that arrived late); after it, due instants
         * grow with the date, so the first one past the cursor is the ritual's candidate.
         * The walk starts a day before after_ms's date, a margin for the zone. */
        for (int64_t d = r->start_day, k = 0; k < 64 && d <= r->start_day + DUET_CHECKIN_SPAN_DAYS;
             k++, d = duet_checkin_next_instance(r, d + 1 < from ? from : d + 1)) {
            uint8_t id[ID];
            uint64_t when = duet_checkin_due_ms(r, d);
            if (day_in(done, ndone, d)) {
                continue;
            }
            duet_checkin_instance_id(r->id, d, id);
            if (!after_cursor(when, id, after_ms, after_inst)) {
                continue;
            }
            if (!any || when < *when_ms || (when == *when_ms && id_order(id, inst) < 0)) {
                *when_ms = when;
                memcpy(inst, id, ID);
                memcpy(ritual, r->id, ID);
                any = true;
            }
            if (d != r->start_day) {
                break;
            }
        }
        free(done);
    }
    free(v);
    if (err != DUET_OK) {
        return err;
    }
    if (!any) {
        *when_ms = 0;
        memset(inst, 0, ID);
        memset(ritual, 0, ID);
        return DUET_ENOENT;
    }
    return DUET_OK;
}

/* ---- answers: values ------------------------------------------------------------------ */

duet_err_t duet_checkin_answers_set_text(duet_checkin_answers_t *a, uint32_t i, const char *s,
                                         size_t len)
{
    if (i >= DUET_CHECKIN_QUESTIONS_MAX) {
        abort();
    }
    duet_checkin_value_t *v = &a->v[i];
    char *copy = malloc(len + 1);
    if (copy == NULL) {
        return DUET_ENOMEM;
    }
    memcpy(copy, s, len);
    copy[len] = 0;
    free_wiped((uint8_t *)v->text, v->text_len);
    v->type = DUET_CHECKIN_TEXT;
    v->scale = 0;
    v->text = copy;
    v->text_len = len;
    return DUET_OK;
}

void duet_checkin_answers_set_scale(duet_checkin_answers_t *a, uint32_t i, uint32_t value)
{
    if (i >= DUET_CHECKIN_QUESTIONS_MAX) {
        abort();
    }
    duet_checkin_value_t *v = &a->v[i];
    free_wiped((uint8_t *)v->text, v->text_len);
    v->type = DUET_CHECKIN_SCALE;
    v->scale = value;
    v->text = NULL;
    v->text_len = 0;
}

void duet_checkin_answers_clear(duet_checkin_answers_t *a)
{
    for (uint32_t i = 0; i < DUET_CHECKIN_QUESTIONS_MAX; i++) {
        free_wiped((uint8_t *)a->v[i].text, a->v[i].text_len);
    }
    sodium_memzero(a, sizeof *a);
}

/* Whether value i counts as an answer (an empty text does not). */
static bool answered(const duet_checkin_value_t *v)
{
    return v->type == DUET_CHECKIN_SCALE || (v->type == DUET_CHECKIN_TEXT && v->text_len > 0);
}

duet_err_t duet_checkin_answers_check(const duet_checkin_spec_t *spec,
                                      const duet_checkin_answers_t *a)
{
    uint32_t count = 0;
    if (a->n != spec->nq) {
        return DUET_EINVAL;
    }
    for (uint32_t i = 0; i < spec->nq; i++) {
        const duet_checkin_value_t *v = &a->v[i];
        if (v->type == 0) {
            continue;
        }
        if (v->type != spec->q[i].type) {
            return DUET_EINVAL;
        }
        if (v->type == DUET_CHECKIN_SCALE &&
            (v->scale < DUET_CHECKIN_SCALE_MIN || v->scale > DUET_CHECKIN_SCALE_MAX)) {
            return DUET_ERANGE;
        }
        if (v->type == DUET_CHECKIN_TEXT) {
            if (v->text_len > DUET_CHECKIN_TEXT_MAX) {
                return DUET_ETOOBIG;
            }
            if (v->text_len > 0 && !duet_utf8_valid((const uint8_t *)v->text, v->text_len)) {
                return DUET_EUTF8;
            }
        }
        count += answered(v);
    }
    return count == 0 ? DUET_EEMPTY : DUET_OK;
}

/* The answer plaintext: pad(msgpack {1: [value per question: nil | uint | str]}), padded
 * (ISO/IEC 7816-4: 0x80 then zeros) to a multiple of DUET_CHECKIN_PAD, so the sealed
 * answer's length tells the partner nothing before the reveal but its size class. */
static duet_err_t plain_encode(const duet_checkin_answers_t *a, uint8_t **out, size_t *len)
{
    duet_codec_enc_t enc;
    const uint8_t *p;
    size_t n;
    *out = NULL;
    *len = 0;
    duet_codec_enc_init(&enc, DUET_CHECKIN_PLAIN_MAX - 1);
    duet_codec_put_map(&enc, 1);
    duet_codec_put_key(&enc, 1);
    duet_codec_put_array(&enc, a->n);
    for (uint32_t i = 0; i < a->n; i++) {
        const duet_checkin_value_t *v = &a->v[i];
        if (!answered(v)) {
            duet_codec_put_nil(&enc);
        } else if (v->type == DUET_CHECKIN_SCALE) {
            duet_codec_put_uint(&enc, v->scale);
        } else {
            duet_codec_put_str(&enc, v->text, v->text_len);
        }
    }
    duet_err_t err = duet_codec_enc_finish(&enc, &p, &n);
    if (err == DUET_OK) {
        size_t padded = (n / DUET_CHECKIN_PAD + 1) * DUET_CHECKIN_PAD;
        *out = malloc(padded);
        if (*out == NULL) {
            err = DUET_ENOMEM;
        } else {
            memcpy(*out, p, n);
            (*out)[n] = 0x80;
            memset(*out + n + 1, 0, padded - n - 1);
            *len = padded;
        }
    }
    duet_codec_enc_dispose(&enc);
    return err;
}

static duet_err_t plain_decode(const duet_checkin_spec_t *spec, const uint8_t *buf, size_t len,
                               duet_checkin_answers_t *a)
{
    static const duet_codec_field_t fields[] = {{1, DUET_CODEC_ARRAY, true}};
    static const duet_codec_limits_t lim = {.max_depth = 2,
                                            .max_str = DUET_CHECKIN_TEXT_MAX,
                                            .max_bin = 0,
                                            .max_array = DUET_CHECKIN_QUESTIONS_MAX,
                                            .max_map = 1,
                                            .max_objects = 2 + DUET_CHECKIN_QUESTIONS_MAX + 1};
    const msgpack_object *f[1];
    duet_codec_msg_t msg;
    memset(a, 0, sizeof *a);
    if (len == 0 || len % DUET_CHECKIN_PAD != 0) {
        return DUET_EDECODE;
    }
    while (len > 0 && buf[len - 1] == 0) {
        len--;
    }
    if (len == 0 || buf[len - 1] != 0x80) {
        return DUET_EDECODE;
    }
    len--;
    if (duet_codec_decode(&msg, buf, len, &lim) != DUET_OK) {
        return DUET_EDECODE;
    }
    duet_err_t err = duet_codec_map(&msg.root, fields, 1, f);
    if (err == DUET_OK && f[0]->via.array.size != spec->nq) {
        err = DUET_EDECODE;
    }
    a->n = spec->nq;
    for (uint32_t i = 0; err == DUET_OK && i < spec->nq; i++) {
        const msgpack_object *o = &f[0]->via.array.ptr[i];
        uint64_t scale;
        const char *s;
        size_t n;
        if (o->type == MSGPACK_OBJECT_NIL) {
            continue;
        }
        if (spec->q[i].type == DUET_CHECKIN_SCALE) {
            if (duet_codec_get_uint(o, DUET_CHECKIN_SCALE_MIN, DUET_CHECKIN_SCALE_MAX, &scale) !=
                DUET_OK) {
                err = DUET_EDECODE;
            } else {
                duet_checkin_answers_set_scale(a, i, (uint32_t)scale);
            }
        } else if (duet_codec_get_str(o, 1, DUET_CHECKIN_TEXT_MAX, &s, &n) != DUET_OK) {
            err = DUET_EDECODE;
        } else {
            err = duet_checkin_answers_set_text(a, i, s, n);
        }
    }
    duet_codec_msg_dispose(&msg);
    if (err != DUET_OK) {
        duet_checkin_answers_clear(a);
        return err == DUET_ENOMEM ? err : DUET_EDECODE;
    }
    return DUET_OK;
}

/* ---- answers: the sealing --------------------------------------------------------------- */

/* AD = label || instance id || author's identity key. The author in the AD means a sealed
 * answer cannot be passed off as the other partner's. */
static size_t answer_ad(uint8_t *ad, const uint8_t inst[ID], const uint8_t author[32])
{
    memcpy(ad, label_answer, LABEL_LEN(label_answer));
    memcpy(ad + LABEL_LEN(label_answer), inst, ID);
    memcpy(ad + LABEL_LEN(label_answer) + ID, author, 32);
    return LABEL_LEN(label_answer) + ID + 32;
}

/* commitment = BLAKE2b-256(label || K || instance id || author's identity key): binds the
 * sealed answer to one key, so the key revealed later opens that answer and no other. */
static void commitment(uint8_t out[COMMITB], const uint8_t key[KEYB], const uint8_t inst[ID],
                       const uint8_t author[32])
{
    uint8_t in[LABEL_LEN(label_commit) + KEYB + ID + 32];
    memcpy(in, label_commit, LABEL_LEN(label_commit));
    memcpy(in + LABEL_LEN(label_commit), key, KEYB);
    memcpy(in + LABEL_LEN(label_commit) + KEYB, inst, ID);
    memcpy(in + LABEL_LEN(label_commit) + KEYB + ID, author, 32);
    duet_crypto_blake2b(out, COMMITB, in, sizeof in, NULL, 0);
    sodium_memzero(in, sizeof in);
}

/* A sealed answer: nonce || commitment || ciphertext (as stored, inside the store seal). */
typedef struct sealed_answer {
    uint8_t *buf; /* malloc'd */
    size_t len;
} sealed_answer_t;

#define SA_NONCE(sa)  ((sa)->buf)
#define SA_COMMIT(sa) ((sa)->buf + NONCEB)
#define SA_CT(sa)     ((sa)->buf + NONCEB + COMMITB)
#define SA_CT_LEN(sa) ((sa)->len - NONCEB - COMMITB)

/* Check a key against a sealed answer: the commitment first, then the AEAD opens it.
 * plain (may be NULL) receives the plaintext (malloc'd) when it does. DUET_EAUTH. */
static duet_err_t key_opens(const sealed_answer_t *sa, const uint8_t key[KEYB],
                            const uint8_t inst[ID], const uint8_t author[32], uint8_t **plain,
                            size_t *plen)
{
    uint8_t c[COMMITB], ad[LABEL_LEN(label_answer) + ID + 32];
    size_t n;
    if (plain != NULL) {
        *plain = NULL;
        *plen = 0;
    }
    commitment(c, key, inst, author);
    if (crypto_verify_32(c, SA_COMMIT(sa)) != 0) {
        return DUET_EAUTH;
    }
    size_t ctl = SA_CT_LEN(sa);
    uint8_t *out = malloc(ctl);
    if (out == NULL) {
        return DUET_ENOMEM;
    }
    duet_err_t err = duet_crypto_aead_open(out, ctl, &n, SA_CT(sa), ctl, ad,
                                           answer_ad(ad, inst, author), SA_NONCE(sa), key);
    if (err != DUET_OK || plain == NULL) {
        free_wiped(out, ctl);
        return err == DUET_OK ? DUET_OK : DUET_EAUTH;
    }
    *plain = out;
    *plen = n;
    return DUET_OK;
}

/* One row of checkin_answers. */
typedef struct answer_row {
    bool present;
    uint8_t ritual[ID];
    int64_t day;
    uint64_t hlc;
    sealed_answer_t sa;
    bool has_key;
    uint8_t key[KEYB];
    bool key_sent;
} answer_row_t;

static void row_clear(answer_row_t *r)
{
    free_wiped(r->sa.buf, r->sa.len);
    sodium_memzero(r, sizeof *r);
}

static duet_err_t row_load(duet_store_t *st, const uint8_t inst[ID], bool mine, answer_row_t *r)
{
    sqlite3_stmt *s;
    uint8_t ad[40];
    memset(r, 0, sizeof *r);
    duet_err_t err = duet_store_prepare(st,
                                        "SELECT ritual, day, hlc, answer, key, key_sent "
                                        "FROM checkin_answers WHERE instance = ?1 AND mine = ?2",
                                        &s);
    if (err != DUET_OK) {
        return err;
    }
    sqlite3_bind_blob(s, 1, inst, ID, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, mine);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(s);
        return DUET_OK;
    }
    if (rc != SQLITE_ROW) {
        sqlite3_reset(s);
        return duet_store_rc(st, rc);
    }
    if (sqlite3_column_bytes(s, 0) != (int)ID) {
        sqlite3_reset(s);
        return DUET_ECORRUPT;
    }
    r->present = true;
    memcpy(r->ritual, sqlite3_column_blob(s, 0), ID);
    r->day = sqlite3_column_int64(s, 1);
    r->hlc = (uint64_t)sqlite3_column_int64(s, 2);
    r->key_sent = sqlite3_column_int(s, 5) != 0;
    err = duet_store_unseal(st, ad, seal_ad(ad, "checkin answer", inst, mine),
                            sqlite3_column_blob(s, 3), (size_t)sqlite3_column_bytes(s, 3),
                            &r->sa.buf, &r->sa.len);
    if (err == DUET_OK && r->sa.len < NONCEB + COMMITB + TAGB + DUET_CHECKIN_PAD) {
        err = DUET_ECORRUPT;
    }
    if (err == DUET_OK && sqlite3_column_type(s, 4) != SQLITE_NULL) {
        uint8_t *k;
        size_t klen;
        err = duet_store_unseal(st, ad, seal_ad(ad, "checkin key", inst, mine),
                                sqlite3_column_blob(s, 4), (size_t)sqlite3_column_bytes(s, 4), &k,
                                &klen);
        if (err == DUET_OK) {
            if (klen == KEYB) {
                memcpy(r->key, k, KEYB);
                r->has_key = true;
            } else {
                err = DUET_ECORRUPT;
            }
            free_wiped(k, klen);
        }
    }
    sqlite3_reset(s);
    if (err != DUET_OK) {
        row_clear(r);
    }
    return err;
}

static duet_err_t seal_key(duet_store_t *st, const uint8_t inst[ID], int mine, const char *label,
                           const uint8_t key[KEYB], uint8_t **out, size_t *len)
{
    uint8_t ad[40];
    return duet_store_seal(st, ad, seal_ad(ad, label, inst, mine), key, KEYB, out, len);
}

static duet_err_t row_insert(duet_store_t *st, const uint8_t inst[ID], bool mine,
                             const answer_row_t *r)
{
    uint8_t ad[40], *sealed = NULL, *skey = NULL;
    size_t slen, klen = 0;
    sqlite3_stmt *s;
    duet_err_t err = duet_store_seal(st, ad, seal_ad(ad, "checkin answer", inst, mine), r->sa.buf,
                                     r->sa.len, &sealed, &slen);
    if (err == DUET_OK && r->has_key) {
        err = seal_key(st, inst, mine, "checkin key", r->key, &skey, &klen);
    }
    if (err == DUET_OK) {
        err = duet_store_prepare(st,
                                 "INSERT INTO checkin_answers (instance, mine, ritual, day, hlc, "
                                 "answer, key, key_sent) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                                 &s);
    }
    if (err == DUET_OK) {
        sqlite3_bind_blob(s, 1, inst, ID, SQLITE_STATIC);
        sqlite3_bind_int(s, 2, mine);
        sqlite3_bind_blob(s, 3, r->ritual, ID, SQLITE_STATIC);
        sqlite3_bind_int64(s, 4, r->day);
        sqlite3_bind_int64(s, 5, (sqlite3_int64)r->hlc);
        sqlite3_bind_blob(s, 6, sealed, (int)slen, SQLITE_STATIC);
        if (skey != NULL) {
            sqlite3_bind_blob(s, 7, skey, (int)klen, SQLITE_STATIC);
        }
        sqlite3_bind_int(s, 8, r->key_sent);
        err = step_done(st, s);
    }
    free(sealed);
    free(skey);
    return err;
}

/* The partner's key for their answer, verified: stored with their row. */
static duet_err_t row_set_partner_key(duet_store_t *st, const uint8_t inst[ID],
                                      const uint8_t key[KEYB])
{
    uint8_t *skey;
    size_t klen;
    sqlite3_stmt *s;
    duet_err_t err = seal_key(st, inst, 0, "checkin key", key, &skey, &klen);
    if (err != DUET_OK) {
        return err;
    }
    err = duet_store_prepare(
        st, "UPDATE checkin_answers SET key = ?2 WHERE instance = ?1 AND mine = 0", &s);
    if (err == DUET_OK) {
        sqlite3_bind_blob(s, 1, inst, ID, SQLITE_STATIC);
        sqlite3_bind_blob(s, 2, skey, (int)klen, SQLITE_STATIC);
        err = step_done(st, s);
    }
    free(skey);
    return err;
}

static duet_err_t row_mark_sent(duet_store_t *st, const uint8_t inst[ID])
{
    sqlite3_stmt *s;
    duet_err_t err = duet_store_prepare(
        st, "UPDATE checkin_answers SET key_sent = 1 WHERE instance = ?1 AND mine = 1", &s);
    if (err != DUET_OK) {
        return err;
    }
    sqlite3_bind_blob(s, 1, inst, ID, SQLITE_STATIC);
    return step_done(st, s);
}

/* REVEAL body: {1: instance id, 2: key}. */
static duet_err_t send_reveal(duet_store_t *st, const uint8_t inst[ID], const uint8_t key[KEYB],
                              uint64_t now_ms)
{
    duet_codec_enc_t enc;
    uint8_t *body;
    size_t len;
    duet_codec_enc_init(&enc, 128);
    duet_codec_put_map(&enc, 2);
    duet_codec_put_key(&enc, 1);
    duet_codec_put_bin(&enc, inst, ID);
    duet_codec_put_key(&enc, 2);
    duet_codec_put_bin(&enc, key, KEYB);
    duet_err_t err = enc_take(&enc, &body, &len);
    if (err == DUET_OK) {
        err = queue_body(st, DUET_KIND_REVEAL, body, len, now_ms, NULL);
    }
    if (err == DUET_OK) {
        err = row_mark_sent(st, inst);
    }
    return err;
}

/* ANSWER body: {1: instance, 2: ritual, 3: date, 4: nonce, 5: ciphertext, 6: commitment,
 * 7: key (open rituals only)}. */
static duet_err_t answer_body(const duet_checkin_instance_t *inst, const sealed_answer_t *sa,
                              const uint8_t *key, uint8_t **out, size_t *len)
{
    duet_codec_enc_t enc;
    char date[DUET_CHECKIN_DATE_LEN + 1];
    duet_checkin_day_format(inst->day, date);
    duet_codec_enc_init(&enc, DUET_ITEM_BODY_MAX);
    duet_codec_put_map(&enc, key != NULL ? 7u : 6u);
    duet_codec_put_key(&enc, 1);
    duet_codec_put_bin(&enc, inst->id, ID);
    duet_codec_put_key(&enc, 2);
    duet_codec_put_bin(&enc, inst->ritual, ID);
    duet_codec_put_key(&enc, 3);
    duet_codec_put_str(&enc, date, DUET_CHECKIN_DATE_LEN);
    duet_codec_put_key(&enc, 4);
    duet_codec_put_bin(&enc, SA_NONCE(sa), NONCEB);
    duet_codec_put_key(&enc, 5);
    duet_codec_put_bin(&enc, SA_CT(sa), SA_CT_LEN(sa));
    duet_codec_put_key(&enc, 6);
    duet_codec_put_bin(&enc, SA_COMMIT(sa), COMMITB);
    if (key != NULL) {
        duet_codec_put_key(&enc, 7);
        duet_codec_put_bin(&enc, key, KEYB);
    }
    return enc_take(&enc, out, len);
}

/* CHECKIN (inbox line) body: {1: instance, 2: ritual, 3: date, 4: ritual name}. */
static duet_err_t line_body(const duet_checkin_instance_t *inst, const char *name, uint8_t **out,
                            size_t *len)
{
    duet_codec_enc_t enc;
    char date[DUET_CHECKIN_DATE_LEN + 1];
    duet_checkin_day_format(inst->day, date);
    duet_codec_enc_init(&enc, 256);
    duet_codec_put_map(&enc, 4);
    duet_codec_put_key(&enc, 1);
    duet_codec_put_bin(&enc, inst->id, ID);
    duet_codec_put_key(&enc, 2);
    duet_codec_put_bin(&enc, inst->ritual, ID);
    duet_codec_put_key(&enc, 3);
    duet_codec_put_str(&enc, date, DUET_CHECKIN_DATE_LEN);
    duet_codec_put_key(&enc, 4);
    duet_codec_put_str(&enc, name, strlen(name));
    return enc_take(&enc, out, len);
}

/* Seal my answer under a fresh key: sa and key out. */
static duet_err_t seal_answer(duet_store_t *st, const uint8_t inst[ID], const uint8_t me[32],
                              const duet_checkin_answers_t *a, sealed_answer_t *sa,
                              uint8_t key[KEYB])
{
    uint8_t *plain, ad[LABEL_LEN(label_answer) + ID + 32];
    size_t plen, ctl;
    duet_rng_t rng = duet_store_rng(st);
    memset(sa, 0, sizeof *sa);
    duet_err_t err = plain_encode(a, &plain, &plen);
    if (err != DUET_OK) {
        return err;
    }
    sa->len = NONCEB + COMMITB + plen + TAGB;
    sa->buf = malloc(sa->len);
    if (sa->buf == NULL) {
        free_wiped(plain, plen);
        sa->len = 0;
        return DUET_ENOMEM;
    }
    duet_rng_fill(&rng, key, KEYB);
    duet_rng_fill(&rng, SA_NONCE(sa), NONCEB);
    commitment(SA_COMMIT(sa), key, inst, me);
    err = duet_crypto_aead_seal(SA_CT(sa), plen + TAGB, &ctl, plain, plen, ad,
                                answer_ad(ad, inst, me), SA_NONCE(sa), key);
    free_wiped(plain, plen);
    if (err != DUET_OK) {
        free_wiped(sa->buf, sa->len);
        memset(sa, 0, sizeof *sa);
        sodium_memzero(key, KEYB);
    }
    return err;
}

duet_err_t duet_checkin_answer(duet_store_t *st, const duet_checkin_instance_t *inst,
                               const duet_checkin_answers_t *a, uint64_t now_ms)
{
    duet_checkin_ritual_t *r = malloc(sizeof *r);
    answer_row_t mine, theirs;
    uint8_t me[32], id[ID], *body = NULL;
    size_t blen;
    memset(&mine, 0, sizeof mine);
    memset(&theirs, 0, sizeof theirs);
    if (r == NULL) {
        return DUET_ENOMEM;
    }
    duet_err_t err = duet_checkin_get(st, inst->ritual, r);
    if (err != DUET_OK) {
        goto cleanup;
    }
    duet_checkin_instance_id(inst->ritual, inst->day, id);
    if (sodium_memcmp(id, inst->id, ID) != 0 || !duet_checkin_is_instance(r, inst->day)) {
        err = DUET_ENORITUAL;
        goto cleanup;
    }
    if (r->state != DUET_RITUAL_ACTIVE || inst->day > duet_checkin_local_day(now_ms)) {
        err = DUET_ESTATE; /* stopped, or not due yet */
        goto cleanup;
    }
    if ((err = duet_checkin_answers_check(&r->spec, a)) != DUET_OK) {
        goto cleanup;
    }
    if ((err = row_load(st, inst->id, true, &mine)) != DUET_OK) {
        goto cleanup;
    }
    if (mine.present) {
        err = DUET_EEXIST; /* sealed and sent: an answer cannot be changed */
        goto cleanup;
    }
    if ((err = row_load(st, inst->id, false, &theirs)) != DUET_OK ||
        (err = my_pk(st, me)) != DUET_OK) {
        goto cleanup;
    }
    if (!duet_partner_exists(st)) {
        err = DUET_ENOTPAIRED;
        goto cleanup;
    }
    if ((err = seal_answer(st, inst->id, me, a, &mine.sa, mine.key)) != DUET_OK) {
        goto cleanup;
    }
    mine.present = mine.has_key = true;
    memcpy(mine.ritual, inst->ritual, ID);
    mine.day = inst->day;
    /* The key travels now with an open ritual's answer, or right after the answer when the
     * partner's sealed answer is already here. */
    mine.key_sent = r->open || theirs.present;
    if ((err = duet_items_clock(st, now_ms, &mine.hlc)) != DUET_OK ||
        (err = row_insert(st, inst->id, true, &mine)) != DUET_OK) {
        goto cleanup;
    }
    if ((err = answer_body(inst, &mine.sa, r->open ? mine.key : NULL, &body, &blen)) != DUET_OK ||
        (err = queue_body(st, DUET_KIND_ANSWER, body, blen, now_ms, NULL)) != DUET_OK) {
        goto cleanup;
    }
    if ((err = line_body(inst, r->spec.name, &body, &blen)) != DUET_OK ||
        (err = queue_body(st, DUET_KIND_CHECKIN, body, blen, now_ms, NULL)) != DUET_OK) {
        goto cleanup;
    }
    if (!r->open && theirs.present) {
        err = send_reveal(st, inst->id, mine.key, now_ms);
    }
cleanup:
    row_clear(&mine);
    row_clear(&theirs);
    free(r);
    return err;
}

/* ---- show and history ----------------------------------------------------------------- */

void duet_checkin_view_clear(duet_checkin_view_t *v)
{
    duet_checkin_answers_clear(&v->mine);
    duet_checkin_answers_clear(&v->partner);
    memset(v, 0, sizeof *v);
}

void duet_checkin_views_free(duet_checkin_view_t *v, size_t n)
{
    if (v == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        duet_checkin_view_clear(&v[i]);
    }
    free(v);
}

/* Open a row with its key and decode the answers. */
static duet_err_t row_open(const answer_row_t *row, const duet_checkin_spec_t *spec,
                           const uint8_t inst[ID], const uint8_t author[32],
                           duet_checkin_answers_t *a)
{
    uint8_t *plain;
    size_t plen;
    duet_err_t err = key_opens(&row->sa, row->key, inst, author, &plain, &plen);
    if (err != DUET_OK) {
        return err;
    }
    err = plain_decode(spec, plain, plen, a);
    free_wiped(plain, plen);
    return err;
}

static duet_err_t show_with(duet_store_t *st, const duet_checkin_ritual_t *r,
                            const duet_checkin_instance_t *inst, duet_checkin_view_t *out)
{
    answer_row_t mine, theirs;
    uint8_t pk[32];
    duet_err_t err = row_load(st, inst->id, true, &mine);
    if (err != DUET_OK) {
        return err;
    }
    if ((err = row_load(st, inst->id, false, &theirs)) != DUET_OK) {
        row_clear(&mine);
        return err;
    }
    if (mine.present) {
        out->mine_answered = true;
        out->mine_hlc = mine.hlc;
        out->key_released = mine.key_sent;
        err = my_pk(st, pk);
        if (err == DUET_OK &&
            (!mine.has_key || row_open(&mine, &r->spec, inst->id, pk, &out->mine) != DUET_OK)) {
            err = DUET_ECORRUPT; /* my own answer always opens */
        }
    }
    if (err == DUET_OK && theirs.present) {
        out->partner_state = DUET_CHECKIN_SEALED;
        out->partner_hlc = theirs.hlc;
        /* Readable only once mine is in (or the ritual is open) and their key came. */
        if (theirs.has_key && (mine.present || r->open) && (err = partner_pk(st, pk)) == DUET_OK &&
            row_open(&theirs, &r->spec, inst->id, pk, &out->partner) == DUET_OK) {
            out->partner_state = DUET_CHECKIN_REVEALED;
        }
    }
    row_clear(&mine);
    row_clear(&theirs);
    sodium_memzero(pk, sizeof pk);
    return err;
}

duet_err_t duet_checkin_show(duet_store_t *st, const duet_checkin_instance_t *inst,
                             duet_checkin_view_t *out)
{
    memset(out, 0, sizeof *out);
    duet_checkin_ritual_t *r = malloc(sizeof *r);
    if (r == NULL) {
        return DUET_ENOMEM;
    }
    duet_err_t err = duet_checkin_get(st, inst->ritual, r);
    if (err == DUET_OK) {
        out->inst = *inst;
        out->mine.n = out->partner.n = r->spec.nq;
        err = show_with(st, r, inst, out);
    }
    free(r);
    if (err != DUET_OK) {
        duet_checkin_view_clear(out);
    }
    return err;
}

duet_err_t duet_checkin_history(duet_store_t *st, const uint8_t *ritual, uint64_t now_ms,
                                duet_checkin_view_t **out, size_t *n)
{
    inst_list_t l;
    *out = NULL;
    *n = 0;
    duet_err_t err = known_instances(st, ritual, duet_checkin_local_day(now_ms), &l);
    if (err != DUET_OK) {
        return err;
    }
    duet_checkin_view_t *v = calloc(l.n ? l.n : 1, sizeof *v);
    if (v == NULL) {
        free(l.v);
        return DUET_ENOMEM;
    }
    size_t count = 0;
    for (size_t i = 0; i < l.n; i++) {
        err = duet_checkin_show(st, &l.v[i], &v[count]);
        if (err == DUET_ENORITUAL) {
            continue; /* an answer whose ritual is gone: nothing to show it with */
        }
        if (err != DUET_OK) {
            break;
        }
        count++;
    }
    free(l.v);
    if (err != DUET_OK && err != DUET_ENORITUAL) {
        duet_checkin_views_free(v, count);
        return err;
    }
    *out = v;
    *n = count;
    return DUET_OK;
}

/* ---- receiving ------------------------------------------------------------------------ */

/* Limits for ANSWER, REVEAL and AGREEMENT bodies: flat maps. */
static const duet_codec_limits_t flat_limits = {.max_depth = 1,
                                                .max_str = DUET_CHECKIN_AGREE_MAX,
                                                .max_bin = CT_MAX,
                                                .max_array = 0,
                                                .max_map = 8,
                                                .max_objects = 17};

/* Which keys of fields[0..n) are present must be exactly `want` (bit k-1 for key k). */
static bool keys_are(const msgpack_object *const *f, size_t n, const duet_codec_field_t *fields,
                     uint32_t want)
{
    uint32_t have = 0;
    for (size_t i = 0; i < n; i++) {
        if (f[i] != NULL) {
            have |= 1u << (fields[i].key - 1);
        }
    }
    return have == want;
}

static duet_err_t recv_ritual(duet_store_t *st, uint64_t hlc, const uint8_t *body, size_t len,
                              uint64_t now_ms)
{
    static const duet_codec_field_t fields[] = {
        {1, DUET_CODEC_UINT, true},   {2, DUET_CODEC_BIN, true},   {3, DUET_CODEC_STR, false},
        {4, DUET_CODEC_ARRAY, false}, {5, DUET_CODEC_UINT, false}, {6, DUET_CODEC_UINT, false},
        {7, DUET_CODEC_BOOL, false},  {8, DUET_CODEC_STR, false}};
    const msgpack_object *f[8];
    duet_codec_msg_t msg;
    uint64_t op, every = 0, weekday = 0;
    uint8_t id[ID];
    duet_checkin_ritual_t *r = calloc(1, sizeof *r);
    if (r == NULL) {
        return DUET_ENOMEM;
    }
    duet_err_t err = duet_codec_decode(&msg, body, len, &ritual_limits);
    if (err != DUET_OK) {
        free(r);
        return DUET_EDECODE;
    }
    if (duet_codec_map(&msg.root, fields, 8, f) != DUET_OK ||
        duet_codec_get_uint(f[0], OP_PROPOSE, OP_DECLINE, &op) != DUET_OK ||
        duet_codec_get_fixed(f[1], id, ID) != DUET_OK) {
        err = DUET_EDECODE;
        goto cleanup;
    }
    if (op == OP_PROPOSE) {
        bool open;
        duet_err_t known = duet_checkin_get(st, id, r);
        if (known != DUET_ENORITUAL) {
            err = known; /* DUET_OK: known already (a replayed id), the first one stays */
            goto cleanup;
        }
        if (!keys_are(f, 8, fields, 0x7f) || get_spec(f[2], f[3], &r->spec) != DUET_OK ||
            duet_codec_get_uint(f[4], DUET_CHECKIN_DAILY, DUET_CHECKIN_WEEKLY, &every) != DUET_OK ||
            duet_codec_get_uint(f[5], 0, every == DUET_CHECKIN_DAILY ? 0 : 7, &weekday) !=
                DUET_OK ||
            duet_codec_get_bool(f[6], &open) != DUET_OK) {
            err = DUET_EDECODE;
            goto cleanup;
        }
        memcpy(r->id, id, ID);
        r->mine = false;
        r->state = DUET_RITUAL_PROPOSED;
        r->rhythm.every = (uint32_t)every;
        r->rhythm.weekday = (uint32_t)weekday;
        r->open = open;
        r->hlc = hlc;
        err = ritual_insert(st, r);
        goto cleanup;
    }
    if (op == OP_ACCEPT) {
        const char *date;
        size_t dl;
        int64_t start;
        if (!keys_are(f, 8, fields, 0xa3) || duet_codec_get_uint(f[5], 0, 7, &weekday) != DUET_OK ||
            duet_codec_get_str(f[7], DUET_CHECKIN_DATE_LEN, DUET_CHECKIN_DATE_LEN, &date, &dl) !=
                DUET_OK ||
            duet_checkin_day_parse(date, dl, &start) != DUET_OK) {
            err = DUET_EDECODE;
            goto cleanup;
        }
        /* Only my own proposal, still proposed, and a day that fits the rhythm. */
        if (duet_checkin_get(st, id, r) != DUET_OK || !r->mine ||
            r->state != DUET_RITUAL_PROPOSED) {
            goto cleanup;
        }
        if (r->rhythm.every == DUET_CHECKIN_DAILY
                ? weekday != 0
                : (weekday == 0 || (r->rhythm.weekday != 0 && weekday != r->rhythm.weekday))) {
            goto cleanup;
        }
        r->rhythm.weekday = (uint32_t)weekday;
        ritual_start(r, start, now_ms);
        err = ritual_update(st, r);
        goto cleanup;
    }
    /* OP_DECLINE: either side may end a proposal or a ritual; it is final. */
    if (!keys_are(f, 8, fields, 0x03)) {
        err = DUET_EDECODE;
        goto cleanup;
    }
    if (duet_checkin_get(st, id, r) == DUET_OK && r->state != DUET_RITUAL_DECLINED) {
        r->state = DUET_RITUAL_DECLINED;
        err = ritual_update(st, r);
    }
cleanup:
    duet_codec_msg_dispose(&msg);
    free(r);
    return err;
}

/* A partner's key that came before their answer (reordered paths), kept for the answer. */
static duet_err_t early_key_put(duet_store_t *st, const uint8_t inst[ID], const uint8_t key[KEYB])
{
    uint8_t *skey;
    size_t klen;
    sqlite3_stmt *s;
    duet_err_t err = seal_key(st, inst, -1, "checkin early", key, &skey, &klen);
    if (err != DUET_OK) {
        return err;
    }
    err = duet_store_prepare(
        st, "INSERT OR IGNORE INTO checkin_early (instance, key) VALUES (?1, ?2)", &s);
    if (err == DUET_OK) {
        sqlite3_bind_blob(s, 1, inst, ID, SQLITE_STATIC);
        sqlite3_bind_blob(s, 2, skey, (int)klen, SQLITE_STATIC);
        err = step_done(st, s);
    }
    free(skey);
    return err;
}

/* Take the early key of an instance, if any (the row is removed). */
static duet_err_t early_key_take(duet_store_t *st, const uint8_t inst[ID], bool *found,
                                 uint8_t key[KEYB])
{
    sqlite3_stmt *s;
    uint8_t ad[40], *k = NULL;
    size_t klen = 0;
    *found = false;
    duet_err_t err =
        duet_store_prepare(st, "SELECT key FROM checkin_early WHERE instance = ?1", &s);
    if (err != DUET_OK) {
        return err;
    }
    sqlite3_bind_blob(s, 1, inst, ID, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        err = duet_store_unseal(st, ad, seal_ad(ad, "checkin early", inst, -1),
                                sqlite3_column_blob(s, 0), (size_t)sqlite3_column_bytes(s, 0), &k,
                                &klen);
    } else if (rc != SQLITE_DONE) {
        err = duet_store_rc(st, rc);
    }
    sqlite3_reset(s);
    if (err == DUET_OK && k != NULL && klen == KEYB) {
        memcpy(key, k, KEYB);
        *found = true;
    }
    free_wiped(k, klen);
    if (err != DUET_OK || rc != SQLITE_ROW) {
        return err;
    }
    if ((err = duet_store_prepare(st, "DELETE FROM checkin_early WHERE instance = ?1", &s)) !=
        DUET_OK) {
        return err;
    }
    sqlite3_bind_blob(s, 1, inst, ID, SQLITE_STATIC);
    return step_done(st, s);
}

static duet_err_t owe_reveal(duet_store_t *st, const uint8_t inst[ID])
{
    sqlite3_stmt *s;
    duet_err_t err =
        duet_store_prepare(st, "INSERT OR IGNORE INTO checkin_owed (instance) VALUES (?1)", &s);
    if (err != DUET_OK) {
        return err;
    }
    sqlite3_bind_blob(s, 1, inst, ID, SQLITE_STATIC);
    return step_done(st, s);
}

static duet_err_t recv_answer(duet_store_t *st, uint64_t hlc, const uint8_t *body, size_t len)
{
    static const duet_codec_field_t fields[] = {
        {1, DUET_CODEC_BIN, true}, {2, DUET_CODEC_BIN, true}, {3, DUET_CODEC_STR, true},
        {4, DUET_CODEC_BIN, true}, {5, DUET_CODEC_BIN, true}, {6, DUET_CODEC_BIN, true},
        {7, DUET_CODEC_BIN, false}};
    const msgpack_object *f[7];
    duet_codec_msg_t msg;
    duet_checkin_instance_t inst;
    uint8_t derived[ID], key[KEYB], pk[32], nonce_probe[NONCEB], commit_probe[COMMITB];
    const uint8_t *ct;
    const char *date;
    size_t ctl, dl;
    bool have_key = false;
    answer_row_t mine, theirs;
    duet_checkin_ritual_t *r = malloc(sizeof *r);
    memset(&mine, 0, sizeof mine);
    memset(&theirs, 0, sizeof theirs);
    if (r == NULL) {
        return DUET_ENOMEM;
    }
    duet_err_t err = duet_codec_decode(&msg, body, len, &flat_limits);
    if (err != DUET_OK) {
        free(r);
        return DUET_EDECODE;
    }
    if (duet_codec_map(&msg.root, fields, 7, f) != DUET_OK ||
        duet_codec_get_fixed(f[0], inst.id, ID) != DUET_OK ||
        duet_codec_get_fixed(f[1], inst.ritual, ID) != DUET_OK ||
        duet_codec_get_str(f[2], DUET_CHECKIN_DATE_LEN, DUET_CHECKIN_DATE_LEN, &date, &dl) !=
            DUET_OK ||
        duet_checkin_day_parse(date, dl, &inst.day) != DUET_OK ||
        duet_codec_get_bin(f[4], DUET_CHECKIN_PAD + TAGB, CT_MAX, &ct, &ctl) != DUET_OK ||
        (ctl - TAGB) % DUET_CHECKIN_PAD != 0 ||
        (f[6] != NULL && duet_codec_get_fixed(f[6], key, KEYB) != DUET_OK) ||
        duet_codec_get_fixed(f[3], nonce_probe, NONCEB) != DUET_OK ||
        duet_codec_get_fixed(f[5], commit_probe, COMMITB) != DUET_OK) {
        err = DUET_EDECODE;
        goto cleanup;
    }
    /* The instance must be the one its ritual and date name, of a ritual I know, on its
     * rhythm once started. Anything else is dropped. */
    duet_checkin_instance_id(inst.ritual, inst.day, derived);
    if (sodium_memcmp(derived, inst.id, ID) != 0 ||
        duet_checkin_get(st, inst.ritual, r) != DUET_OK ||
        (r->started && !duet_checkin_is_instance(r, inst.day))) {
        goto cleanup;
    }
    if ((err = row_load(st, inst.id, false, &theirs)) != DUET_OK || theirs.present) {
        goto cleanup; /* the first answer stands: an answer cannot be changed */
    }
    if ((err = row_load(st, inst.id, true, &mine)) != DUET_OK ||
        (err = partner_pk(st, pk)) != DUET_OK) {
        goto cleanup;
    }
    theirs.sa.len = NONCEB + COMMITB + ctl;
    theirs.sa.buf = malloc(theirs.sa.len);
    if (theirs.sa.buf == NULL) {
        err = DUET_ENOMEM;
        goto cleanup;
    }
    memcpy(SA_NONCE(&theirs.sa), nonce_probe, NONCEB);
    memcpy(SA_COMMIT(&theirs.sa), commit_probe, COMMITB);
    memcpy(SA_CT(&theirs.sa), ct, ctl);
    /* My own sealed answer sent back as theirs would be a way to make me reveal for
     * nothing: refuse a commitment equal to mine. */
    if (mine.present && sodium_memcmp(SA_COMMIT(&theirs.sa), SA_COMMIT(&mine.sa), COMMITB) == 0) {
        goto cleanup;
    }
    /* A key that came early is taken (and its row dropped) in any case; a key inside the
     * answer (an open ritual) is the one to check. */
    if ((err = early_key_take(st, inst.id, &have_key, key)) != DUET_OK) {
        goto cleanup;
    }
    if (f[6] != NULL) {
        have_key = duet_codec_get_fixed(f[6], key, KEYB) == DUET_OK;
    }
    if (have_key && key_opens(&theirs.sa, key, inst.id, pk, NULL, NULL) == DUET_OK) {
        memcpy(theirs.key, key, KEYB);
        theirs.has_key = true;
    }
    theirs.present = true;
    memcpy(theirs.ritual, inst.ritual, ID);
    theirs.day = inst.day;
    theirs.hlc = hlc;
    if ((err = row_insert(st, inst.id, false, &theirs)) != DUET_OK) {
        goto cleanup;
    }
    /* The reveal rule: their sealed answer is stored here and I have answered, so my key
     * is owed (sealed after this batch commits, see the preamble). */
    if (mine.present && !mine.key_sent && !r->open) {
        err = owe_reveal(st, inst.id);
    }
cleanup:
    sodium_memzero(key, sizeof key);
    row_clear(&mine);
    row_clear(&theirs);
    duet_codec_msg_dispose(&msg);
    free(r);
    return err;
}

/* A REVEAL: the partner's key for their answer. It is kept only if it opens their sealed
 * answer (or, before that answer is here, to be checked when it comes). It never causes
 * anything to be sent: the reveal rule looks at answers only. */
static duet_err_t recv_reveal(duet_store_t *st, const uint8_t *body, size_t len)
{
    static const duet_codec_field_t fields[] = {{1, DUET_CODEC_BIN, true},
                                                {2, DUET_CODEC_BIN, true}};
    const msgpack_object *f[2];
    duet_codec_msg_t msg;
    uint8_t inst[ID], key[KEYB], pk[32];
    answer_row_t theirs;
    memset(&theirs, 0, sizeof theirs);
    if (duet_codec_decode(&msg, body, len, &flat_limits) != DUET_OK) {
        return DUET_EDECODE;
    }
    duet_err_t err = DUET_OK;
    if (duet_codec_map(&msg.root, fields, 2, f) != DUET_OK ||
        duet_codec_get_fixed(f[0], inst, ID) != DUET_OK ||
        duet_codec_get_fixed(f[1], key, KEYB) != DUET_OK) {
        err = DUET_EDECODE;
        goto cleanup;
    }
    if ((err = row_load(st, inst, false, &theirs)) != DUET_OK) {
        goto cleanup;
    }
    if (!theirs.present) {
        err = early_key_put(st, inst, key);
        goto cleanup;
    }
    if (theirs.has_key || (err = partner_pk(st, pk)) != DUET_OK) {
        goto cleanup;
    }
    if (key_opens(&theirs.sa, key, inst, pk, NULL, NULL) == DUET_OK) {
        err = row_set_partner_key(st, inst, key);
    }
cleanup:
    sodium_memzero(key, sizeof key);
    row_clear(&theirs);
    duet_codec_msg_dispose(&msg);
    return err;
}

static duet_err_t recv_agreement(duet_store_t *st, uint64_t hlc, const uint8_t *body, size_t len);

duet_err_t duet_checkin_receive(duet_store_t *st, uint32_t kind,
                                const uint8_t id[static DUET_CHECKIN_ID_BYTES], uint64_t hlc,
                                const uint8_t *body, size_t len, uint64_t now_ms)
{
    (void)id; /* bodies name what they are about; the item id only deduplicates */
    duet_err_t err;
    switch (kind) {
    case DUET_KIND_RITUAL:
        err = recv_ritual(st, hlc, body, len, now_ms);
        break;
    case DUET_KIND_ANSWER:
        err = recv_answer(st, hlc, body, len);
        break;
    case DUET_KIND_REVEAL:
        err = recv_reveal(st, body, len);
        break;
    case DUET_KIND_AGREEMENT:
        err = recv_agreement(st, hlc, body, len);
        break;
    default:
        abort(); /* the caller dispatches only DUET_CHECKIN_KIND kinds */
    }
    if (err == DUET_OK) {
        err = duet_items_clock_recv(st, hlc, now_ms);
    }
    return err;
}

/* Take one owed instance (or none). */
static duet_err_t owed_next(duet_store_t *st, bool *any, uint8_t inst[ID])
{
    sqlite3_stmt *s;
    *any = false;
    duet_err_t err = duet_store_prepare(st, "SELECT instance FROM checkin_owed LIMIT 1", &s);
    if (err != DUET_OK) {
        return err;
    }
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW && sqlite3_column_bytes(s, 0) == (int)ID) {
        memcpy(inst, sqlite3_column_blob(s, 0), ID);
        *any = true;
    } else if (rc == SQLITE_ROW) {
        err = DUET_ECORRUPT;
    } else if (rc != SQLITE_DONE) {
        err = duet_store_rc(st, rc);
    }
    sqlite3_reset(s);
    return err;
}

duet_err_t duet_checkin_flush_owed(duet_store_t *st, uint64_t now_ms, size_t *queued)
{
    uint8_t inst[ID];
    bool any;
    size_t count = 0;
    sqlite3_stmt *s;
    if (queued != NULL) {
        *queued = 0;
    }
    /* The common case, nothing owed, without a write transaction. */
    duet_err_t err = owed_next(st, &any, inst);
    if (err != DUET_OK || !any) {
        return err;
    }
    if ((err = duet_store_begin(st)) != DUET_OK) {
        return err;
    }
    for (;;) {
        answer_row_t mine;
        if ((err = owed_next(st, &any, inst)) != DUET_OK || !any) {
            break;
        }
        if ((err = row_load(st, inst, true, &mine)) != DUET_OK) {
            break;
        }
        if (mine.present && mine.has_key && !mine.key_sent) {
            err = send_reveal(st, inst, mine.key, now_ms);
            count += err == DUET_OK;
        }
        row_clear(&mine);
        if (err != DUET_OK ||
            (err = duet_store_prepare(st, "DELETE FROM checkin_owed WHERE instance = ?1", &s)) !=
                DUET_OK) {
            break;
        }
        sqlite3_bind_blob(s, 1, inst, ID, SQLITE_STATIC);
        if ((err = step_done(st, s)) != DUET_OK) {
            break;
        }
    }
    if (err == DUET_OK) {
        err = duet_store_commit(st);
    }
    if (err != DUET_OK) {
        duet_store_rollback(st);
        return err;
    }
    if (queued != NULL) {
        *queued = count;
    }
    return DUET_OK;
}

/* ---- inbox lines: check-ins, pauses, milestones ---------------------------------------- */

duet_err_t duet_checkin_line_decode(const uint8_t *body, size_t len, duet_checkin_line_t *out)
{
    static const duet_codec_field_t fields[] = {{1, DUET_CODEC_BIN, true},
                                                {2, DUET_CODEC_BIN, true},
                                                {3, DUET_CODEC_STR, true},
                                                {4, DUET_CODEC_STR, true}};
    const msgpack_object *f[4];
    duet_codec_msg_t msg;
    const char *s, *name;
    size_t n, nl;
    memset(out, 0, sizeof *out);
    if (duet_codec_decode(&msg, body, len, &ritual_limits) != DUET_OK) {
        return DUET_EDECODE;
    }
    duet_err_t err = DUET_OK;
    if (duet_codec_map(&msg.root, fields, 4, f) != DUET_OK ||
        duet_codec_get_fixed(f[0], out->instance, ID) != DUET_OK ||
        duet_codec_get_fixed(f[1], out->ritual, ID) != DUET_OK ||
        duet_codec_get_str(f[2], DUET_CHECKIN_DATE_LEN, DUET_CHECKIN_DATE_LEN, &s, &n) != DUET_OK ||
        duet_checkin_day_parse(s, n, &out->day) != DUET_OK ||
        duet_codec_get_str(f[3], 1, DUET_CHECKIN_NAME_MAX, &name, &nl) != DUET_OK) {
        err = DUET_EDECODE;
    } else {
        memcpy(out->name, name, nl);
        out->name[nl] = 0;
    }
    duet_codec_msg_dispose(&msg);
    if (err != DUET_OK) {
        memset(out, 0, sizeof *out);
    }
    return err;
}

static duet_err_t queue_enc(duet_store_t *st, uint32_t kind, duet_codec_enc_t *enc, uint64_t now_ms,
                            uint8_t *id_out)
{
    uint8_t *body;
    size_t len;
    duet_err_t err = enc_take(enc, &body, &len);
    if (err != DUET_OK) {
        return err;
    }
    return queue_body(st, kind, body, len, now_ms, id_out);
}

duet_err_t duet_checkin_pause(duet_store_t *st, const duet_checkin_pause_t *p, uint64_t now_ms,
                              uint8_t *id_out)
{
    duet_codec_enc_t enc;
    char date[DUET_CHECKIN_DATE_LEN + 1];
    size_t nl = strnlen(p->note, DUET_CHECKIN_NOTE_MAX + 1);
    if (id_out != NULL) {
        memset(id_out, 0, ID);
    }
    if (nl > DUET_CHECKIN_NOTE_MAX || !text_ok(p->note, nl, true)) {
        return DUET_EINVAL;
    }
    if (!duet_partner_exists(st)) {
        return DUET_ENOTPAIRED;
    }
    duet_codec_enc_init(&enc, 2048);
    duet_codec_put_map(&enc, (uint32_t)(p->has_until + (nl > 0)));
    if (p->has_until) {
        duet_checkin_day_format(p->until_day, date);
        duet_codec_put_key(&enc, 1);
        duet_codec_put_str(&enc, date, DUET_CHECKIN_DATE_LEN);
    }
    if (nl > 0) {
        duet_codec_put_key(&enc, 2);
        duet_codec_put_str(&enc, p->note, nl);
    }
    return queue_enc(st, DUET_KIND_PAUSE, &enc, now_ms, id_out);
}

duet_err_t duet_checkin_resume(duet_store_t *st, const char *note, uint64_t now_ms, uint8_t *id_out)
{
    duet_codec_enc_t enc;
    size_t nl = note != NULL ? strnlen(note, DUET_CHECKIN_NOTE_MAX + 1) : 0;
    if (id_out != NULL) {
        memset(id_out, 0, ID);
    }
    if (nl > DUET_CHECKIN_NOTE_MAX || (nl > 0 && !text_ok(note, nl, true))) {
        return DUET_EINVAL;
    }
    if (!duet_partner_exists(st)) {
        return DUET_ENOTPAIRED;
    }
    duet_codec_enc_init(&enc, 2048);
    duet_codec_put_map(&enc, nl > 0);
    if (nl > 0) {
        duet_codec_put_key(&enc, 2);
        duet_codec_put_str(&enc, note, nl);
    }
    return queue_enc(st, DUET_KIND_RESUME, &enc, now_ms, id_out);
}

duet_err_t duet_checkin_pause_decode(const uint8_t *body, size_t len, duet_checkin_pause_t *out)
{
    static const duet_codec_field_t fields[] = {{1, DUET_CODEC_STR, false},
                                                {2, DUET_CODEC_STR, false}};
    const msgpack_object *f[2];
    duet_codec_msg_t msg;
    const char *s;
    size_t n;
    memset(out, 0, sizeof *out);
    if (duet_codec_decode(&msg, body, len, &flat_limits) != DUET_OK) {
        return DUET_EDECODE;
    }
    duet_err_t err = duet_codec_map(&msg.root, fields, 2, f) == DUET_OK ? DUET_OK : DUET_EDECODE;
    if (err == DUET_OK && f[0] != NULL) {
        if (duet_codec_get_str(f[0], DUET_CHECKIN_DATE_LEN, DUET_CHECKIN_DATE_LEN, &s, &n) !=
                DUET_OK ||
            duet_checkin_day_parse(s, n, &out->until_day) != DUET_OK) {
            err = DUET_EDECODE;
        }
        out->has_until = true;
    }
    if (err == DUET_OK && f[1] != NULL) {
        if (duet_codec_get_str(f[1], 1, DUET_CHECKIN_NOTE_MAX, &s, &n) != DUET_OK) {
            err = DUET_EDECODE;
        } else {
            memcpy(out->note, s, n);
            out->note[n] = 0;
        }
    }
    duet_codec_msg_dispose(&msg);
    if (err != DUET_OK) {
        memset(out, 0, sizeof *out);
    }
    return err;
}

duet_err_t duet_checkin_pause_state(duet_store_t *st, uint64_t now_ms, bool *paused, bool *mine,
                                    duet_checkin_pause_t *p)
{
    sqlite3_stmt *s;
    uint8_t id[ID];
    duet_item_t it;
    *paused = false;
    *mine = false;
    memset(p, 0, sizeof *p);
    duet_err_t err = duet_store_prepare(st,
                                        "SELECT id FROM items WHERE kind IN (4, 5) "
                                        "ORDER BY hlc DESC, id DESC LIMIT 1",
                                        &s);
    if (err != DUET_OK) {
        return err;
    }
    int rc = sqlite3_step(s);
    bool found = rc == SQLITE_ROW && sqlite3_column_bytes(s, 0) == (int)ID;
    if (found) {
        memcpy(id, sqlite3_column_blob(s, 0), ID);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        return duet_store_rc(st, rc);
    }
    if (!found || (err = duet_items_get(st, id, &it)) != DUET_OK) {
        return err;
    }
    if (it.kind == DUET_KIND_PAUSE &&
        duet_checkin_pause_decode(it.body, it.body_len, p) == DUET_OK &&
        (!p->has_until || p->until_day >= duet_checkin_local_day(now_ms))) {
        *paused = true;
        *mine = it.mine;
    } else {
        memset(p, 0, sizeof *p);
    }
    duet_item_clear(&it);
    return DUET_OK;
}

duet_err_t duet_checkin_milestone(duet_store_t *st, const char *text, size_t len, uint64_t now_ms,
                                  uint8_t *id_out)
{
    duet_codec_enc_t enc;
    if (id_out != NULL) {
        memset(id_out, 0, ID);
    }
    if (len == 0) {
        return DUET_EEMPTY;
    }
    if (len > DUET_CHECKIN_NOTE_MAX) {
        return DUET_ETOOBIG;
    }
    if (!text_ok(text, len, true)) {
        return DUET_EUTF8;
    }
    duet_codec_enc_init(&enc, 2048);
    duet_codec_put_map(&enc, 1);
    duet_codec_put_key(&enc, 1);
    duet_codec_put_str(&enc, text, len);
    return queue_enc(st, DUET_KIND_MILESTONE, &enc, now_ms, id_out);
}

duet_err_t duet_checkin_milestone_decode(const uint8_t *body, size_t len, const char **text,
                                         size_t *tlen)
{
    static const duet_codec_field_t fields[] = {{1, DUET_CODEC_STR, true}};
    const msgpack_object *f[1];
    duet_codec_msg_t msg;
    *text = NULL;
    *tlen = 0;
    if (duet_codec_decode(&msg, body, len, &flat_limits) != DUET_OK) {
        return DUET_EDECODE;
    }
    duet_err_t err = DUET_OK;
    if (duet_codec_map(&msg.root, fields, 1, f) != DUET_OK ||
        duet_codec_get_str(f[0], 1, DUET_CHECKIN_NOTE_MAX, text, tlen) != DUET_OK) {
        *text = NULL;
        *tlen = 0;
        err = DUET_EDECODE;
    }
    duet_codec_msg_dispose(&msg); /* the string points into body, which outlives msg */
    return err;
}

duet_err_t duet_checkin_milestones(duet_store_t *st, duet_checkin_milestone_rec_t **out, size_t *n)
{
    sqlite3_stmt *s;
    uint8_t(*ids)[ID] = NULL;
    size_t count = 0, cap = 0;
    *out = NULL;
    *n = 0;
    duet_err_t err =
        duet_store_prepare(st, "SELECT id FROM items WHERE kind = 6 ORDER BY hlc, id LIMIT ?1", &s);
    if (err != DUET_OK) {
        return err;
    }
    sqlite3_bind_int64(s, 1, DUET_CHECKIN_LIST_MAX);
    int rc;
    /* The ids first: duet_items_get uses a statement of its own. */
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (sqlite3_column_bytes(s, 0) != (int)ID) {
            err = DUET_ECORRUPT;
            break;
        }
        if (count == cap) {
            cap = cap ? cap * 2 : 16;
            uint8_t(*nv)[ID] = realloc(ids, cap * ID);
            if (nv == NULL) {
                err = DUET_ENOMEM;
                break;
            }
            ids = nv;
        }
        memcpy(ids[count++], sqlite3_column_blob(s, 0), ID);
    }
    if (err == DUET_OK && rc != SQLITE_DONE) {
        err = duet_store_rc(st, rc);
    }
    sqlite3_reset(s);
    duet_checkin_milestone_rec_t *v = NULL;
    size_t got = 0;
    if (err == DUET_OK && (v = calloc(count ? count : 1, sizeof *v)) == NULL) {
        err = DUET_ENOMEM;
    }
    for (size_t i = 0; err == DUET_OK && i < count; i++) {
        duet_item_t it;
        const char *text;
        size_t tl;
        if ((err = duet_items_get(st, ids[i], &it)) != DUET_OK) {
            break;
        }
        if (duet_checkin_milestone_decode(it.body, it.body_len, &text, &tl) == DUET_OK) {
            memcpy(v[got].id, it.id, ID);
            v[got].mine = it.mine;
            v[got].hlc = it.hlc;
            memcpy(v[got].text, text, tl);
            v[got].text[tl] = 0;
            got++;
        }
        duet_item_clear(&it);
    }
    free(ids);
    if (err != DUET_OK) {
        free(v);
        return err;
    }
    *out = v;
    *n = got;
    return DUET_OK;
}

/* ---- agreements ----------------------------------------------------------------------- */

#define AGREE_COLS "id, version, rev, text, mine, hlc, acc_me, acc_partner"

static duet_err_t agree_from_row(duet_store_t *st, sqlite3_stmt *s, duet_checkin_agreement_t *a)
{
    uint8_t ad[32], *text;
    size_t tl;
    memset(a, 0, sizeof *a);
    if (sqlite3_column_bytes(s, 0) != (int)ID || sqlite3_column_bytes(s, 2) != (int)ID) {
        return DUET_ECORRUPT;
    }
    memcpy(a->id, sqlite3_column_blob(s, 0), ID);
    a->version = (uint64_t)sqlite3_column_int64(s, 1);
    memcpy(a->rev, sqlite3_column_blob(s, 2), ID);
    a->mine = sqlite3_column_int(s, 4) != 0;
    a->hlc = (uint64_t)sqlite3_column_int64(s, 5);
    a->accepted_me = sqlite3_column_bytes(s, 6) == (int)ID &&
                     sodium_memcmp(sqlite3_column_blob(s, 6), a->rev, ID) == 0;
    a->accepted_partner = sqlite3_column_bytes(s, 7) == (int)ID &&
                          sodium_memcmp(sqlite3_column_blob(s, 7), a->rev, ID) == 0;
    duet_err_t err =
        duet_store_unseal(st, ad, seal_ad(ad, "agreement", a->id, -1), sqlite3_column_blob(s, 3),
                          (size_t)sqlite3_column_bytes(s, 3), &text, &tl);
    if (err != DUET_OK) {
        return err;
    }
    if (tl == 0 || tl > DUET_CHECKIN_AGREE_MAX) {
        err = DUET_ECORRUPT;
    } else {
        memcpy(a->text, text, tl);
        a->text[tl] = 0;
    }
    free_wiped(text, tl);
    return err;
}

duet_err_t duet_checkin_agree_get(duet_store_t *st, const uint8_t id[static DUET_CHECKIN_ID_BYTES],
                                  duet_checkin_agreement_t *out)
{
    sqlite3_stmt *s;
    memset(out, 0, sizeof *out);
    duet_err_t err =
        duet_store_prepare(st, "SELECT " AGREE_COLS " FROM agreements WHERE id = ?1", &s);
    if (err != DUET_OK) {
        return err;
    }
    sqlite3_bind_blob(s, 1, id, ID, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        err = agree_from_row(st, s, out);
    } else {
        err = rc == SQLITE_DONE ? DUET_ENOENT : duet_store_rc(st, rc);
    }
    sqlite3_reset(s);
    return err;
}

duet_err_t duet_checkin_agree_list(duet_store_t *st, duet_checkin_agreement_t **out, size_t *n)
{
    sqlite3_stmt *s;
    duet_checkin_agreement_t *v = NULL;
    size_t count = 0, cap = 0;
    *out = NULL;
    *n = 0;
    duet_err_t err = duet_store_prepare(
        st, "SELECT " AGREE_COLS " FROM agreements ORDER BY hlc, id LIMIT ?1", &s);
    if (err != DUET_OK) {
        return err;
    }
    sqlite3_bind_int64(s, 1, DUET_CHECKIN_LIST_MAX);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (count == cap) {
            cap = cap ? cap * 2 : 8;
            duet_checkin_agreement_t *nv = realloc(v, cap * sizeof *nv);
            if (nv == NULL) {
                err = DUET_ENOMEM;
                break;
            }
            v = nv;
        }
        if ((err = agree_from_row(st, s, &v[count])) != DUET_OK) {
            break;
        }
        count++;
    }
    if (err == DUET_OK && rc != SQLITE_DONE) {
        err = duet_store_rc(st, rc);
    }
    sqlite3_reset(s);
    if (err != DUET_OK) {
        free(v);
        return err;
    }
    *out = v;
    *n = count;
    return DUET_OK;
}

duet_err_t duet_checkin_resolve_agreement(duet_store_t *st, const char *hex,
                                          uint8_t id[static DUET_CHECKIN_ID_BYTES])
{
    char prefix[33];
    size_t plen, n, found = 0;
    duet_checkin_agreement_t *v;
    memset(id, 0, ID);
    if (hex_prefix(hex, prefix, &plen) != DUET_OK) {
        return DUET_ENOENT;
    }
    duet_err_t err = duet_checkin_agree_list(st, &v, &n);
    if (err != DUET_OK) {
        return err;
    }
    for (size_t i = 0; i < n; i++) {
        if (hex_matches(v[i].id, prefix, plen)) {
            memcpy(id, v[i].id, ID);
            found++;
        }
    }
    sodium_memzero(v, n * sizeof *v);
    free(v);
    if (found != 1) {
        memset(id, 0, ID);
        return found == 0 ? DUET_ENOENT : DUET_EINVAL;
    }
    return DUET_OK;
}

/* Write an agreement row whole: the current version, its text, who accepted which revision
 * (acc_* NULL for none). */
static duet_err_t agree_write(duet_store_t *st, const duet_checkin_agreement_t *a,
                              const uint8_t *acc_me, const uint8_t *acc_partner)
{
    uint8_t ad[32], *sealed;
    size_t slen;
    sqlite3_stmt *s;
    duet_err_t err = duet_store_seal(st, ad, seal_ad(ad, "agreement", a->id, -1),
                                     (const uint8_t *)a->text, strlen(a->text), &sealed, &slen);
    if (err != DUET_OK) {
        return err;
    }
    err = duet_store_prepare(st,
                             "INSERT OR REPLACE INTO agreements (" AGREE_COLS ") "
                             "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                             &s);
    if (err == DUET_OK) {
        sqlite3_bind_blob(s, 1, a->id, ID, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, (sqlite3_int64)a->version);
        sqlite3_bind_blob(s, 3, a->rev, ID, SQLITE_STATIC);
        sqlite3_bind_blob(s, 4, sealed, (int)slen, SQLITE_STATIC);
        sqlite3_bind_int(s, 5, a->mine);
        sqlite3_bind_int64(s, 6, (sqlite3_int64)a->hlc);
        if (acc_me != NULL) {
            sqlite3_bind_blob(s, 7, acc_me, ID, SQLITE_STATIC);
        }
        if (acc_partner != NULL) {
            sqlite3_bind_blob(s, 8, acc_partner, ID, SQLITE_STATIC);
        }
        err = step_done(st, s);
    }
    free(sealed);
    return err;
}

/* AGREEMENT bodies: set {1: 1, 2: id, 3: version, 4: rev, 5: text},
 * accept {1: 2, 2: id, 3: version, 4: rev}. */
static duet_err_t send_agreement(duet_store_t *st, const duet_checkin_agreement_t *a, int op,
                                 uint64_t now_ms)
{
    duet_codec_enc_t enc;
    duet_codec_enc_init(&enc, DUET_CHECKIN_AGREE_MAX + 128);
    duet_codec_put_map(&enc, op == AG_SET ? 5u : 4u);
    duet_codec_put_key(&enc, 1);
    duet_codec_put_uint(&enc, (uint64_t)op);
    duet_codec_put_key(&enc, 2);
    duet_codec_put_bin(&enc, a->id, ID);
    duet_codec_put_key(&enc, 3);
    duet_codec_put_uint(&enc, a->version);
    duet_codec_put_key(&enc, 4);
    duet_codec_put_bin(&enc, a->rev, ID);
    if (op == AG_SET) {
        duet_codec_put_key(&enc, 5);
        duet_codec_put_str(&enc, a->text, strlen(a->text));
    }
    return queue_enc(st, DUET_KIND_AGREEMENT, &enc, now_ms, NULL);
}

static duet_err_t agree_text_check(const char *text, size_t len)
{
    if (len == 0) {
        return DUET_EEMPTY;
    }
    if (len > DUET_CHECKIN_AGREE_MAX) {
        return DUET_ETOOBIG;
    }
    return text_ok(text, len, true) ? DUET_OK : DUET_EUTF8;
}

/* Write a new version of a (its author accepts it) and send it. */
static duet_err_t agree_set_mine(duet_store_t *st, duet_checkin_agreement_t *a, const char *text,
                                 size_t len, const uint8_t *acc_partner, uint64_t now_ms)
{
    duet_rng_t rng = duet_store_rng(st);
    duet_rng_fill(&rng, a->rev, ID);
    memcpy(a->text, text, len);
    a->text[len] = 0;
    a->mine = true;
    duet_err_t err = agree_write(st, a, a->rev, acc_partner);
    if (err == DUET_OK) {
        err = send_agreement(st, a, AG_SET, now_ms);
    }
    return err;
}

duet_err_t duet_checkin_agree_add(duet_store_t *st, const char *text, size_t len, uint64_t now_ms,
                                  uint8_t id_out[static DUET_CHECKIN_ID_BYTES])
{
    memset(id_out, 0, ID);
    duet_err_t err = agree_text_check(text, len);
    if (err != DUET_OK) {
        return err;
    }
    if (!duet_partner_exists(st)) {
        return DUET_ENOTPAIRED;
    }
    duet_checkin_agreement_t *a = calloc(1, sizeof *a);
    if (a == NULL) {
        return DUET_ENOMEM;
    }
    duet_rng_t rng = duet_store_rng(st);
    duet_rng_fill(&rng, a->id, ID);
    a->version = 1;
    if ((err = duet_items_clock(st, now_ms, &a->hlc)) == DUET_OK &&
        (err = agree_set_mine(st, a, text, len, NULL, now_ms)) == DUET_OK) {
        memcpy(id_out, a->id, ID);
    }
    sodium_memzero(a, sizeof *a);
    free(a);
    return err;
}

duet_err_t duet_checkin_agree_change(duet_store_t *st,
                                     const uint8_t id[static DUET_CHECKIN_ID_BYTES],
                                     const char *text, size_t len, uint64_t now_ms)
{
    duet_err_t err = agree_text_check(text, len);
    if (err != DUET_OK) {
        return err;
    }
    duet_checkin_agreement_t *a = malloc(sizeof *a);
    if (a == NULL) {
        return DUET_ENOMEM;
    }
    if ((err = duet_checkin_agree_get(st, id, a)) == DUET_OK) {
        a->version++;
        /* The partner's acceptance was of the old version: it no longer counts. */
        err = agree_set_mine(st, a, text, len, NULL, now_ms);
    }
    sodium_memzero(a, sizeof *a);
    free(a);
    return err;
}

duet_err_t duet_checkin_agree_accept(duet_store_t *st,
                                     const uint8_t id[static DUET_CHECKIN_ID_BYTES],
                                     uint64_t now_ms)
{
    duet_checkin_agreement_t *a = malloc(sizeof *a);
    if (a == NULL) {
        return DUET_ENOMEM;
    }
    duet_err_t err = duet_checkin_agree_get(st, id, a);
    if (err == DUET_OK && a->accepted_me) {
        err = DUET_EEXIST;
    }
    if (err == DUET_OK) {
        err = agree_write(st, a, a->rev, a->accepted_partner ? a->rev : NULL);
    }
    if (err == DUET_OK) {
        err = send_agreement(st, a, AG_ACCEPT, now_ms);
    }
    sodium_memzero(a, sizeof *a);
    free(a);
    return err;
}

static duet_err_t recv_agreement(duet_store_t *st, uint64_t hlc, const uint8_t *body, size_t len)
{
    static const duet_codec_field_t fields[] = {{1, DUET_CODEC_UINT, true},
                                                {2, DUET_CODEC_BIN, true},
                                                {3, DUET_CODEC_UINT, true},
                                                {4, DUET_CODEC_BIN, true},
                                                {5, DUET_CODEC_STR, false}};
    const msgpack_object *f[5];
    duet_codec_msg_t msg;
    uint64_t op, version;
    const char *text = NULL;
    size_t tl = 0;
    duet_checkin_agreement_t *in = calloc(1, sizeof *in), *cur = malloc(sizeof *cur);
    if (in == NULL || cur == NULL) {
        free(in);
        free(cur);
        return DUET_ENOMEM;
    }
    duet_err_t err = duet_codec_decode(&msg, body, len, &flat_limits);
    if (err != DUET_OK) {
        free(in);
        free(cur);
        return DUET_EDECODE;
    }
    if (duet_codec_map(&msg.root, fields, 5, f) != DUET_OK ||
        duet_codec_get_uint(f[0], AG_SET, AG_ACCEPT, &op) != DUET_OK ||
        duet_codec_get_fixed(f[1], in->id, ID) != DUET_OK ||
        duet_codec_get_uint(f[2], 1, (uint64_t)INT64_MAX, &version) != DUET_OK ||
        duet_codec_get_fixed(f[3], in->rev, ID) != DUET_OK || (op == AG_SET) != (f[4] != NULL) ||
        (f[4] != NULL &&
         (duet_codec_get_str(f[4], 1, DUET_CHECKIN_AGREE_MAX, &text, &tl) != DUET_OK ||
          !text_ok(text, tl, true)))) {
        err = DUET_EDECODE;
        goto cleanup;
    }
    in->version = version;
    err = duet_checkin_agree_get(st, in->id, cur);
    if (err != DUET_OK && err != DUET_ENOENT) {
        goto cleanup;
    }
    bool known = err == DUET_OK;
    err = DUET_OK;
    if (op == AG_ACCEPT) {
        /* Counts only for the current revision. */
        if (known && cur->version == version && sodium_memcmp(cur->rev, in->rev, ID) == 0) {
            err = agree_write(st, cur, cur->accepted_me ? cur->rev : NULL, in->rev);
        }
        goto cleanup;
    }
    /* A new version wins over the current one when it is later: by version, then (two
     * changes of the same version at once) by revision id, the same choice on both sides. */
    if (known &&
        (version < cur->version || (version == cur->version && id_order(in->rev, cur->rev) <= 0))) {
        goto cleanup;
    }
    memcpy(in->text, text, tl);
    in->text[tl] = 0;
    in->mine = false;
    in->hlc = known ? cur->hlc : hlc;
    /* Its author accepts it by writing it; mine must be given again. */
    err = agree_write(st, in, NULL, in->rev);
cleanup:
    duet_codec_msg_dispose(&msg);
    sodium_memzero(in, sizeof *in);
    sodium_memzero(cur, sizeof *cur);
    free(in);
    free(cur);
    return err;
}

/* ---- the chart ------------------------------------------------------------------------ */

/* A text buffer with a hard cap (curl's dynbuf): past the cap, a sticky DUET_ETOOBIG. */
typedef struct svgbuf {
    char *p;
    size_t len, cap;
    duet_err_t err;
} svgbuf_t;

__attribute__((format(printf, 2, 3))) static void out(svgbuf_t *b, const char *fmt, ...)
{
    va_list ap;
    if (b->err != DUET_OK) {
        return;
    }
    va_start(ap, fmt);
    char tmp[512];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        b->err = DUET_EINTERNAL; /* every format here is short */
        return;
    }
    if (b->len + (size_t)n + 1 > DUET_CHECKIN_SVG_MAX) {
        b->err = DUET_ETOOBIG;
        return;
    }
    if (b->len + (size_t)n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 8192;
        while (cap < b->len + (size_t)n + 1) {
            cap *= 2;
        }
        char *np = realloc(b->p, cap);
        if (np == NULL) {
            b->err = DUET_ENOMEM;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, tmp, (size_t)n + 1);
    b->len += (size_t)n;
}

/* Text content or an attribute value, XML-escaped, control characters dropped. */
static void out_text(svgbuf_t *b, const char *s)
{
    for (; s != NULL && *s != 0; s++) {
        unsigned char c = (unsigned char)*s;
        switch (c) {
        case '&':
            out(b, "&amp;");
            break;
        case '<':
            out(b, "&lt;");
            break;
        case '>':
            out(b, "&gt;");
            break;
        case '"':
            out(b, "&quot;");
            break;
        case '\'':
            out(b, "&#39;");
            break;
        default:
            if (c >= 0x20 && c != 0x7f) {
                out(b, "%c", (char)c);
            }
        }
    }
}

#define SVG_W        760
#define SVG_LEFT     56
#define SVG_RIGHT    28
#define SVG_TOP      76  /* the heading and the legend */
#define SVG_PANEL    236 /* one series: title, plot, dates */
#define SVG_PLOT_TOP 34  /* within a panel */
#define SVG_PLOT_H   152
#define SVG_ME       "#2f6fb0" /* blue and orange stay apart for colour-blind eyes, */
#define SVG_PARTNER  "#d9782d" /* and the partner's line is dashed as well */
#define SVG_FONT     "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"

static double px_x(const duet_checkin_series_t *s, size_t i)
{
    double w = SVG_W - SVG_LEFT - SVG_RIGHT;
    if (s->n < 2 || s->days[s->n - 1] == s->days[0]) {
        return SVG_LEFT + w / 2;
    }
    return SVG_LEFT +
           w * (double)(s->days[i] - s->days[0]) / (double)(s->days[s->n - 1] - s->days[0]);
}

static double px_y(double top, unsigned v)
{
    return top + SVG_PLOT_H - (double)(v - 1) * (SVG_PLOT_H / 4.0);
}

/* One partner's line: a polyline per run of answered points, a dot on each. */
static void svg_line(svgbuf_t *b, const duet_checkin_series_t *s, const uint8_t *vals, double top,
                     const char *colour, bool dashed, const char *who)
{
    size_t i = 0;
    while (i < s->n) {
        if (vals[i] == 0) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < s->n && vals[j] != 0) {
            j++;
        }
        if (j - i > 1) {
            out(b,
                "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2.5\" "
                "stroke-linejoin=\"round\" stroke-linecap=\"round\"%s points=\"",
                colour, dashed ? " stroke-dasharray=\"7 5\"" : "");
            for (size_t k = i; k < j; k++) {
                out(b, "%s%.1f,%.1f", k > i ? " " : "", px_x(s, k), px_y(top, vals[k]));
            }
            out(b, "\"/>\n");
        }
        i = j;
    }
    for (i = 0; i < s->n; i++) {
        if (vals[i] != 0) {
            char date[DUET_CHECKIN_DATE_LEN + 1];
            duet_checkin_day_format(s->days[i], date);
            out(b,
                "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\" stroke=\"#ffffff\" "
                "stroke-width=\"1.5\"><title>",
                px_x(s, i), px_y(top, vals[i]), colour);
            out_text(b, who);
            out(b, ", %s: %u</title></circle>\n", date, (unsigned)vals[i]);
        }
    }
}

/* Dates along the bottom: the first and the last, and some between that do not crowd. */
static void svg_dates(svgbuf_t *b, const duet_checkin_series_t *s, double y)
{
    double last_x = -1e9, end_x = px_x(s, s->n - 1);
    for (size_t i = 0; i < s->n; i++) {
        double x = px_x(s, i);
        bool edge = i == 0 || i == s->n - 1;
        if (!edge && (x - last_x < 96 || end_x - x < 96)) {
            continue;
        }
        if (i == s->n - 1 && i > 0 && x - last_x < 96) {
            continue; /* the first label already sits there */
        }
        char date[DUET_CHECKIN_DATE_LEN + 1];
        duet_checkin_day_format(s->days[i], date);
        const char *anchor = s->n == 1       ? "middle"
                             : i == 0        ? "start"
                             : i == s->n - 1 ? "end"
                                             : "middle";
        out(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#9aa3ad\"/>\n", x,
            y - 16, x, y - 11);
        out(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" class=\"tick\">%s</text>\n", x, y,
            anchor, date);
        last_x = x;
    }
}

static void svg_panel(svgbuf_t *b, const duet_checkin_chart_t *c, const duet_checkin_series_t *s,
                      double y0)
{
    double top = y0 + SVG_PLOT_TOP, bottom = top + SVG_PLOT_H;
    out(b, "<g>\n<text x=\"%d\" y=\"%.1f\" class=\"q\">", SVG_LEFT, y0 + 18);
    out_text(b, s->title);
    out(b, "</text>\n");
    for (unsigned v = 1; v <= 5; v++) {
        double y = px_y(top, v);
        out(b, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"%s\"/>\n", SVG_LEFT, y,
            SVG_W - SVG_RIGHT, y, v == 1 ? "#9aa3ad" : "#e3e7eb");
        out(b, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\" class=\"tick\">%u</text>\n",
            SVG_LEFT - 10, y + 4, v);
    }
    svg_dates(b, s, bottom + 24);
    svg_line(b, s, s->me, top, SVG_ME, false, c->me_name ? c->me_name : "me");
    svg_line(b, s, s->partner, top, SVG_PARTNER, true,
             c->partner_name ? c->partner_name : "partner");
    out(b, "</g>\n");
}

duet_err_t duet_checkin_svg(const duet_checkin_chart_t *c, char **result, size_t *len)
{
    svgbuf_t b = {NULL, 0, 0, DUET_OK};
    size_t points = 0;
    *result = NULL;
    *len = 0;
    if (c->nseries > DUET_CHECKIN_SVG_SERIES_MAX) {
        return DUET_ETOOBIG;
    }
    for (size_t i = 0; i < c->nseries; i++) {
        const duet_checkin_series_t *s = &c->series[i];
        if (s->n > DUET_CHECKIN_SVG_POINTS_MAX) {
            return DUET_ETOOBIG;
        }
        for (size_t k = 0; k < s->n; k++) {
            if (s->me[k] > 5 || s->partner[k] > 5 || (k > 0 && s->days[k] < s->days[k - 1])) {
                return DUET_EINVAL;
            }
        }
        points += s->n;
    }
    size_t panels = 0;
    for (size_t i = 0; points > 0 && i < c->nseries; i++) {
        panels += c->series[i].n > 0;
    }
    int height = SVG_TOP + (panels > 0 ? (int)panels * SVG_PANEL : 70) + 8;
    out(&b,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
        "viewBox=\"0 0 %d %d\" role=\"img\">\n",
        SVG_W, height, SVG_W, height);
    out(&b, "<title>");
    out_text(&b, c->title ? c->title : "check-ins");
    out(&b,
        "</title>\n<style>text{font-family:%s;fill:#2b3138}"
        ".h{font-size:19px;font-weight:600}.q{font-size:14px;font-weight:600}"
        ".tick{font-size:11px;fill:#6b7580}.lg{font-size:13px}</style>\n",
        SVG_FONT);
    out(&b, "<rect width=\"100%%\" height=\"100%%\" fill=\"#ffffff\"/>\n");
    out(&b, "<text x=\"%d\" y=\"34\" class=\"h\">", SVG_LEFT);
    out_text(&b, c->title ? c->title : "check-ins");
    out(&b, "</text>\n");
    /* The legend: a line sample and a name per partner. */
    out(&b,
        "<g class=\"lg\">\n<line x1=\"%d\" y1=\"56\" x2=\"%d\" y2=\"56\" stroke=\"%s\" "
        "stroke-width=\"2.5\"/>\n<text x=\"%d\" y=\"60\" class=\"lg\">",
        SVG_LEFT, SVG_LEFT + 26, SVG_ME, SVG_LEFT + 34);
    out_text(&b, c->me_name ? c->me_name : "me");
    out(&b,
        "</text>\n<line x1=\"%d\" y1=\"56\" x2=\"%d\" y2=\"56\" stroke=\"%s\" "
        "stroke-width=\"2.5\" stroke-dasharray=\"7 5\"/>\n<text x=\"%d\" y=\"60\" "
        "class=\"lg\">",
        SVG_LEFT + 190, SVG_LEFT + 216, SVG_PARTNER, SVG_LEFT + 224);
    out_text(&b, c->partner_name ? c->partner_name : "partner");
    out(&b, "</text>\n</g>\n");
    if (panels == 0) {
        out(&b, "<text x=\"%d\" y=\"%d\" class=\"q\">No answers on a scale yet.</text>\n", SVG_LEFT,
            SVG_TOP + 40);
    }
    double y0 = SVG_TOP;
    for (size_t i = 0; i < c->nseries && panels > 0; i++) {
        if (c->series[i].n > 0) {
            svg_panel(&b, c, &c->series[i], y0);
            y0 += SVG_PANEL;
        }
    }
    out(&b, "</svg>\n");
    if (b.err != DUET_OK) {
        free(b.p);
        return b.err;
    }
    *result = b.p;
    *len = b.len;
    return DUET_OK;
}
