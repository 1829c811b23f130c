/*
 * Check-ins between two real, paired stores (SQLite on disk, sealed, with the real ratchet),
 * moving envelopes through the sync host (outbox.h) as a link would:
 *
 *  - the whole ritual: propose, accept, due on both devices with the same instance id,
 *    answer, sealed, revealed together;
 *  - every order in which the two answers and the two key releases can arrive, with what
 *    `show` must say on both sides at each step (the reveal rule decides which orders exist:
 *    the count of complete orders is checked too);
 *  - an impatient or modified partner gets nothing early: forged, early, foreign or reflected
 *    reveals and answers, fabricated requests;
 *  - answers are unreadable at rest before and after the reveal;
 *  - open rituals; agreements and their versions; pause and resume; milestones;
 *  - the rhythm over a whole year in Europe/Berlin and America/New_York: every instance once,
 *    none missed or doubled across the daylight-saving changes;
 *  - history and the SVG chart.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cmocka.h>
#include <sodium.h>

#include "checkin.h"
#include "codec.h"
#include "items.h"
#include "outbox.h"
#include "store.h"
#include "testpair.h"
#include "testrng.h"
#include "testutil.h"

#define ID     DUET_CHECKIN_ID_BYTES
#define HOUR   3600000ull
#define DAY_MS 86400000ull

#define OK(x) assert_int_equal((x), DUET_OK)

/* ---- the fixture: two paired homes --------------------------------------------------- */

typedef struct fx {
    char *dir;
    char ha[4200], hb[4200];
    duet_store_t *a, *b;
    duet_testrng_t ra, rb, rp;
    uint64_t now;
} fx_t;

static void set_tz(const char *tz)
{
    setenv("TZ", tz, 1);
    tzset();
}

/* ms of a local wall time in the current zone. */
static uint64_t local_ms(int y, int mo, int d, int h, int mi)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_isdst = -1;
    time_t t = mktime(&tm);
    assert_true(t > 0);
    return (uint64_t)t * 1000u;
}

static fx_t *fx_new(const char *tz, uint64_t seed)
{
    fx_t *f = calloc(1, sizeof *f);
    set_tz(tz);
    f->dir = duet_test_tmpdir();
    duet_test_path(f->ha, sizeof f->ha, f->dir, "a");
    duet_test_path(f->hb, sizeof f->hb, f->dir, "b");
    f->a = duet_test_home(f->ha, "river", duet_testrng_init(&f->ra, seed));
    f->b = duet_test_home(f->hb, "stone", duet_testrng_init(&f->rb, seed + 1));
    f->now = local_ms(2026, 11, 26, 9, 30); /* a Thursday */
    duet_test_pair(f->a, f->b, duet_testrng_init(&f->rp, seed + 2), f->now);
    return f;
}

static void fx_free(fx_t *f)
{
    duet_store_close(f->a);
    duet_store_close(f->b);
    duet_test_rmrf(f->dir);
    free(f->dir);
    free(f);
}

static int teardown(void **state)
{
    if (*state != NULL) {
        fx_free(*state);
    }
    set_tz("UTC");
    return 0;
}

static uint64_t clock_of(void *ctx)
{
    return *(const uint64_t *)ctx;
}

static uint64_t out_seq(duet_store_t *st)
{
    uint64_t v;
    OK(duet_store_meta_get_u64(st, "out_seq", 0, &v));
    return v;
}

/* Deliver from's envelopes [lo, hi] to `to` in one batch (its commit flushes owed
 * reveals). Envelopes already there are skipped. Returns how many went in. */
static size_t deliver(fx_t *f, duet_store_t *from, duet_store_t *to, uint64_t lo, uint64_t hi)
{
    duet_outbox_host_t hf, ht;
    size_t moved = 0;
    OK(duet_outbox_host_init(&hf, from, clock_of, &f->now, NULL, NULL));
    OK(duet_outbox_host_init(&ht, to, clock_of, &f->now, NULL, NULL));
    OK(duet_outbox_recv_begin(&ht));
    for (uint64_t want = lo; want <= hi; want++) {
        uint64_t seq;
        const uint8_t *env;
        size_t len;
        bool counted;
        if (duet_outbox_next(&hf, want - 1, &seq, &env, &len) != DUET_OK || seq != want) {
            continue;
        }
        duet_err_t e = duet_outbox_recv_put(&ht, seq, env, len, &counted);
        if (e == DUET_EDUP) {
            continue;
        }
        OK(e);
        moved++;
    }
    OK(duet_outbox_recv_commit(&ht));
    duet_outbox_host_dispose(&hf);
    duet_outbox_host_dispose(&ht);
    return moved;
}

/* One full exchange in one direction, then the acknowledgement back. */
static size_t sync_dir(fx_t *f, duet_store_t *from, duet_store_t *to)
{
    size_t moved = deliver(f, from, to, 1, out_seq(from));
    duet_outbox_host_t hf, ht;
    uint64_t wm, above[1024], items;
    size_t n;
    OK(duet_outbox_host_init(&hf, from, clock_of, &f->now, NULL, NULL));
    OK(duet_outbox_host_init(&ht, to, clock_of, &f->now, NULL, NULL));
    OK(duet_outbox_recv_state(&ht, &wm, above, 1024, &n));
    OK(duet_outbox_acked(&hf, wm, above, n, &items));
    duet_outbox_host_dispose(&hf);
    duet_outbox_host_dispose(&ht);
    return moved;
}

/* Sync both ways until nothing moves (a received answer may make a reveal owed). */
static void sync_all(fx_t *f)
{
    for (int i = 0; i < 8; i++) {
        if (sync_dir(f, f->a, f->b) + sync_dir(f, f->b, f->a) == 0) {
            return;
        }
    }
    fail_msg("sync does not settle");
}

/* Run a write as a command would: one transaction. */
#define TX(st, expr)                                                                               \
    do {                                                                                           \
        OK(duet_store_begin(st));                                                                  \
        duet_err_t e_ = (expr);                                                                    \
        if (e_ == DUET_OK) {                                                                       \
            OK(duet_store_commit(st));                                                             \
        } else {                                                                                   \
            duet_store_rollback(st);                                                               \
        }                                                                                          \
        assert_int_equal(e_, DUET_OK);                                                             \
    } while (0)

static duet_err_t tx_err(duet_store_t *st, duet_err_t e)
{
    if (e == DUET_OK) {
        OK(duet_store_commit(st));
    } else {
        duet_store_rollback(st);
    }
    return e;
}

/* A proposes `tmpl`, B accepts: returns the ritual id. */
static void start_ritual(fx_t *f, const char *tmpl, const char *every, bool open,
                         uint8_t ritual[ID])
{
    const duet_checkin_template_t *t = duet_checkin_template_find(tmpl);
    duet_checkin_rhythm_t r = t->rhythm;
    assert_non_null(t);
    if (every != NULL) {
        OK(duet_checkin_rhythm_parse(every, &r));
    }
    TX(f->a, duet_checkin_propose(f->a, &t->spec, r, open, f->now, ritual));
    sync_all(f);
    TX(f->b, duet_checkin_accept(f->b, ritual, f->now));
    sync_all(f);
}

/* The one due instance of ritual on st. */
static duet_checkin_instance_t due_one(duet_store_t *st, uint64_t now, const uint8_t ritual[ID])
{
    duet_checkin_instance_t *v, found;
    size_t n, hits = 0;
    OK(duet_checkin_due(st, now, &v, &n));
    memset(&found, 0, sizeof found);
    for (size_t i = 0; i < n; i++) {
        if (sodium_memcmp(v[i].ritual, ritual, ID) == 0) {
            found = v[i];
            hits++;
        }
    }
    free(v);
    assert_int_equal(hits, 1);
    return found;
}

/* Answers for a spec: text "<tag>:<question id>", scale `scale`. */
static void fill(const duet_checkin_spec_t *spec, const char *tag, uint32_t scale,
                 duet_checkin_answers_t *a)
{
    memset(a, 0, sizeof *a);
    a->n = spec->nq;
    for (uint32_t i = 0; i < spec->nq; i++) {
        if (spec->q[i].type == DUET_CHECKIN_SCALE) {
            duet_checkin_answers_set_scale(a, i, scale);
        } else {
            char t[128];
            int n = snprintf(t, sizeof t, "%s:%s", tag, spec->q[i].id);
            OK(duet_checkin_answers_set_text(a, i, t, (size_t)n));
        }
    }
}

static void answer(duet_store_t *st, const duet_checkin_instance_t *inst, const char *tag,
                   uint32_t scale, uint64_t now)
{
    duet_checkin_ritual_t r;
    duet_checkin_answers_t a;
    OK(duet_checkin_get(st, inst->ritual, &r));
    fill(&r.spec, tag, scale, &a);
    TX(st, duet_checkin_answer(st, inst, &a, now));
    duet_checkin_answers_clear(&a);
}

static uint32_t pstate(duet_store_t *st, const duet_checkin_instance_t *inst)
{
    duet_checkin_view_t v;
    OK(duet_checkin_show(st, inst, &v));
    uint32_t s = v.partner_state;
    duet_checkin_view_clear(&v);
    return s;
}

/* The text answer to question i as the view shows it (NULL if none). */
static bool partner_text_is(duet_store_t *st, const duet_checkin_instance_t *inst, uint32_t i,
                            const char *want)
{
    duet_checkin_view_t v;
    OK(duet_checkin_show(st, inst, &v));
    bool ok = v.partner_state == DUET_CHECKIN_REVEALED && v.partner.v[i].text != NULL &&
              strcmp(v.partner.v[i].text, want) == 0;
    duet_checkin_view_clear(&v);
    return ok;
}

/* Whether any file of a home holds needle. */
static bool home_contains(const char *home, const char *needle)
{
    DIR *d = opendir(home);
    struct dirent *e;
    bool found = false;
    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        char p[8400];
        size_t len;
        if (e->d_name[0] == '.') {
            continue;
        }
        duet_test_path(p, sizeof p, home, e->d_name);
        uint8_t *data = duet_test_slurp(p, &len);
        if (data != NULL && duet_test_contains(data, len, needle, strlen(needle))) {
            found = true;
        }
        free(data);
    }
    closedir(d);
    return found;
}

/* ---- templates, rhythms, dates ------------------------------------------------------- */

static void test_templates_and_dates(void **state)
{
    (void)state;
    const duet_checkin_template_t *w = duet_checkin_template_find("weekly");
    const duet_checkin_template_t *d = duet_checkin_template_find("daily");
    assert_non_null(w);
    assert_non_null(d);
    assert_null(duet_checkin_template_find("monthly"));
    OK(duet_checkin_spec_check(&w->spec));
    OK(duet_checkin_spec_check(&d->spec));
    /* The questions, with stable ids. */
    assert_string_equal(w->spec.q[0].text, "What felt good this week?");
    assert_string_equal(w->spec.q[1].text, "What would you like to try next time?");
    assert_string_equal(w->spec.q[2].text, "How can I support you when you feel vulnerable?");
    assert_string_equal(w->spec.q[3].id, "closeness");
    assert_int_equal(w->spec.q[3].type, DUET_CHECKIN_SCALE);
    assert_string_equal(d->spec.q[0].id, "energy");
    assert_string_equal(d->spec.q[1].id, "comfort");
    assert_string_equal(d->spec.q[2].id, "closeness");
    assert_int_equal(d->spec.q[3].type, DUET_CHECKIN_TEXT);

    duet_checkin_spec_t bad = w->spec;
    memcpy(bad.q[1].id, bad.q[0].id, sizeof bad.q[0].id);
    assert_int_equal(duet_checkin_spec_check(&bad), DUET_EINVAL); /* duplicate id */
    bad = w->spec;
    strcpy(bad.q[0].id, "Bad Id");
    assert_int_equal(duet_checkin_spec_check(&bad), DUET_EINVAL);
    bad = w->spec;
    bad.nq = 0;
    assert_int_equal(duet_checkin_spec_check(&bad), DUET_EINVAL);
    bad = w->spec;
    strcpy(bad.q[0].text, "tab\there");
    assert_int_equal(duet_checkin_spec_check(&bad), DUET_EINVAL);

    duet_checkin_rhythm_t r;
    char s[16];
    OK(duet_checkin_rhythm_parse("weekly:Sun", &r));
    assert_int_equal(r.every, DUET_CHECKIN_WEEKLY);
    assert_int_equal(r.weekday, 7);
    duet_checkin_rhythm_format(&r, s);
    assert_string_equal(s, "weekly:sun");
    OK(duet_checkin_rhythm_parse("weekly:monday", &r));
    assert_int_equal(r.weekday, 1);
    OK(duet_checkin_rhythm_parse("DAILY", &r));
    assert_int_equal(r.every, DUET_CHECKIN_DAILY);
    assert_int_equal(duet_checkin_rhythm_parse("weekly:funday", &r), DUET_EINVAL);
    assert_int_equal(duet_checkin_rhythm_parse("monthly", &r), DUET_EINVAL);
    assert_int_equal(duet_checkin_rhythm_parse("weekly:", &r), DUET_EINVAL);

    int64_t day;
    char date[11];
    OK(duet_checkin_day_parse("2026-11-30", 10, &day));
    assert_int_equal(day, 20787);
    assert_int_equal(duet_checkin_weekday(day), 1); /* a Monday */
    duet_checkin_day_format(day, date);
    assert_string_equal(date, "2026-11-30");
    OK(duet_checkin_day_parse("2024-02-29", 10, &day));
    assert_int_equal(duet_checkin_day_parse("2026-02-29", 10, &day), DUET_EINVAL);
    assert_int_equal(duet_checkin_day_parse("2026-13-01", 10, &day), DUET_EINVAL);
    assert_int_equal(duet_checkin_day_parse("2026-1-01x", 10, &day), DUET_EINVAL);
    assert_int_equal(duet_checkin_day_parse("26-11-30", 8, &day), DUET_EINVAL);
    assert_int_equal(duet_checkin_weekday(0), 4); /* 1970-01-01 was a Thursday */
    for (int64_t x = -800000; x < 2932896; x += 97) {
        int64_t y;
        unsigned m, dd;
        duet_checkin_civil_from_day(x, &y, &m, &dd);
        assert_int_equal(duet_checkin_day_from_civil(y, m, dd), x);
    }
    /* The instance id is BLAKE2b-128 of the label, the ritual id and the date. */
    uint8_t rid[ID], want[ID], got[ID], in[24 + ID + 10];
    memset(rid, 0x5a, sizeof rid);
    memcpy(in, "duet checkin instance v1", 24);
    memcpy(in + 24, rid, ID);
    memcpy(in + 24 + ID, "2026-11-30", 10);
    crypto_generichash(want, sizeof want, in, sizeof in, NULL, 0);
    OK(duet_checkin_day_parse("2026-11-30", 10, &day));
    duet_checkin_instance_id(rid, day, got);
    assert_memory_equal(got, want, ID);
    duet_checkin_instance_id(rid, day + 1, got);
    assert_memory_not_equal(got, want, ID);
}

/* ---- the whole ritual ----------------------------------------------------------------- */

static void test_full_flow(void **state)
{
    fx_t *f = fx_new("UTC", 100);
    *state = f;
    uint8_t ritual[ID];
    const duet_checkin_template_t *t = duet_checkin_template_find("weekly");

    /* Not paired: no ritual can start. */
    {
        char h[4300];
        duet_testrng_t r;
        duet_test_path(h, sizeof h, f->dir, "alone");
        duet_store_t *alone = duet_test_home(h, "alone", duet_testrng_init(&r, 9));
        OK(duet_store_begin(alone));
        assert_int_equal(
            tx_err(alone, duet_checkin_propose(alone, &t->spec, t->rhythm, false, f->now, ritual)),
            DUET_ENOTPAIRED);
        duet_store_close(alone);
    }

    TX(f->a, duet_checkin_propose(f->a, &t->spec, t->rhythm, false, f->now, ritual));
    duet_checkin_ritual_t ra, rb;
    OK(duet_checkin_get(f->a, ritual, &ra));
    assert_true(ra.mine);
    assert_int_equal(ra.state, DUET_RITUAL_PROPOSED);
    /* Only the partner accepts. */
    OK(duet_store_begin(f->a));
    assert_int_equal(tx_err(f->a, duet_checkin_accept(f->a, ritual, f->now)), DUET_ESTATE);
    sync_all(f);
    OK(duet_checkin_get(f->b, ritual, &rb));
    assert_false(rb.mine);
    assert_int_equal(rb.state, DUET_RITUAL_PROPOSED);
    assert_string_equal(rb.spec.q[2].text, t->spec.q[2].text);

    /* Nothing is due before the acceptance. */
    duet_checkin_instance_t *v;
    size_t n;
    OK(duet_checkin_due(f->a, f->now, &v, &n));
    assert_int_equal(n, 0);
    free(v);

    f->now += HOUR;
    TX(f->b, duet_checkin_accept(f->b, ritual, f->now));
    sync_all(f);
    OK(duet_checkin_get(f->a, ritual, &ra));
    OK(duet_checkin_get(f->b, ritual, &rb));
    assert_int_equal(ra.state, DUET_RITUAL_ACTIVE);
    assert_int_equal(rb.state, DUET_RITUAL_ACTIVE);
    assert_int_equal(ra.start_day, rb.start_day);
    assert_int_equal(ra.rhythm.weekday, 4); /* the weekday of the acceptance: Thursday */

    /* Due at once, the same instance on both devices. */
    duet_checkin_instance_t ia = due_one(f->a, f->now, ritual);
    duet_checkin_instance_t ib = due_one(f->b, f->now, ritual);
    assert_memory_equal(ia.id, ib.id, ID);
    assert_int_equal(ia.day, duet_checkin_local_day(f->now));
    assert_int_equal(pstate(f->a, &ia), DUET_CHECKIN_WAITING);

    /* A answers: B holds it sealed, unreadable, also at rest. */
    answer(f->a, &ia, "a-secret-answer", 4, f->now);
    OK(duet_store_begin(f->a));
    duet_checkin_answers_t again;
    fill(&t->spec, "changed", 1, &again);
    assert_int_equal(tx_err(f->a, duet_checkin_answer(f->a, &ia, &again, f->now)), DUET_EEXIST);
    duet_checkin_answers_clear(&again);
    OK(duet_checkin_due(f->a, f->now, &v, &n));
    assert_int_equal(n, 0); /* answered: no longer due */
    free(v);
    sync_all(f);
    assert_int_equal(pstate(f->b, &ib), DUET_CHECKIN_SEALED);
    duet_checkin_view_t view;
    OK(duet_checkin_show(f->b, &ib, &view));
    assert_false(view.mine_answered);
    assert_int_equal(view.partner.v[0].type, 0);
    assert_null(view.partner.v[0].text);
    duet_checkin_view_clear(&view);
    assert_false(home_contains(f->hb, "a-secret-answer"));
    assert_false(home_contains(f->ha, "a-secret-answer"));

    /* B answers: both reveal. */
    f->now += HOUR;
    answer(f->b, &ib, "b-answer", 2, f->now);
    assert_int_equal(pstate(f->b, &ib), DUET_CHECKIN_SEALED); /* A's key is not here yet */
    sync_all(f);
    assert_int_equal(pstate(f->a, &ia), DUET_CHECKIN_REVEALED);
    assert_int_equal(pstate(f->b, &ib), DUET_CHECKIN_REVEALED);
    assert_true(partner_text_is(f->b, &ib, 0, "a-secret-answer:felt_good"));
    assert_true(partner_text_is(f->a, &ia, 2, "b-answer:support"));
    OK(duet_checkin_show(f->a, &ia, &view));
    assert_true(view.mine_answered);
    assert_true(view.key_released);
    assert_int_equal(view.mine.v[3].scale, 4);
    assert_int_equal(view.partner.v[3].scale, 2);
    assert_string_equal(view.mine.v[1].text, "a-secret-answer:try_next");
    duet_checkin_view_clear(&view);
    /* The sealing is as docs/protocol/checkin.md says, checked with libsodium directly on
     * what B holds of A's answer: commitment, associated data, padding, plaintext. */
    {
        uint8_t apk[32], ad[96], *sa, *key, c[32], in[22 + 32 + ID + 32];
        size_t n32, salen, klen;
        OK(duet_store_meta_get(f->a, "identity_pk", apk, 32, &n32));
        sqlite3_stmt *s;
        assert_int_equal(sqlite3_prepare_v2(duet_store_db(f->b),
                                            "SELECT answer, key FROM checkin_answers WHERE "
                                            "instance = ?1 AND mine = 0",
                                            -1, &s, NULL),
                         SQLITE_OK);
        sqlite3_bind_blob(s, 1, ib.id, ID, SQLITE_STATIC);
        assert_int_equal(sqlite3_step(s), SQLITE_ROW);
        memcpy(ad, "checkin answer", 14);
        memcpy(ad + 14, ib.id, ID);
        ad[14 + ID] = 0;
        OK(duet_store_unseal(f->b, ad, 15 + ID, sqlite3_column_blob(s, 0),
                             (size_t)sqlite3_column_bytes(s, 0), &sa, &salen));
        memcpy(ad, "checkin key", 11);
        memcpy(ad + 11, ib.id, ID);
        ad[11 + ID] = 0;
        OK(duet_store_unseal(f->b, ad, 12 + ID, sqlite3_column_blob(s, 1),
                             (size_t)sqlite3_column_bytes(s, 1), &key, &klen));
        sqlite3_finalize(s);
        memcpy(in, "duet checkin commit v1", 22);
        memcpy(in + 22, key, 32);
        memcpy(in + 54, ib.id, ID);
        memcpy(in + 54 + ID, apk, 32);
        crypto_generichash(c, 32, in, sizeof in, NULL, 0);
        assert_memory_equal(c, sa + 24, 32);
        memcpy(ad, "duet checkin answer v1", 22);
        memcpy(ad + 22, ib.id, ID);
        memcpy(ad + 22 + ID, apk, 32);
        size_t ctl = salen - 56;
        uint8_t *plain = malloc(ctl);
        unsigned long long plen;
        assert_int_equal(crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &plen, NULL, sa + 56,
                                                                    ctl, ad, 22 + ID + 32, sa, key),
                         0);
        assert_int_equal(plen % 256, 0);
        /* {1: [str, str, str, 4]} then 0x80 and zeros. */
        const uint8_t head[] = {0x81, 0x01, 0x94, 0xd9};
        assert_memory_equal(plain, head, 3);
        duet_codec_msg_t msg;
        size_t end = (size_t)plen;
        while (end > 0 && plain[end - 1] == 0) {
            end--;
        }
        assert_int_equal(plain[end - 1], 0x80);
        OK(duet_codec_decode(&msg, plain, end - 1, &duet_codec_default_limits));
        assert_int_equal(msg.root.via.map.ptr[0].val.via.array.ptr[3].via.u64, 4);
        duet_codec_msg_dispose(&msg);
        free(plain);
        free(sa);
        free(key);
    }
    /* Still nothing readable at rest, on either side. */
    assert_false(home_contains(f->hb, "a-secret-answer"));
    assert_false(home_contains(f->ha, "b-answer"));

    /* Both inboxes show the two check-in lines, in the same order. */
    duet_item_t *ita, *itb;
    size_t na, nb;
    OK(duet_items_list(f->a, 0, &ita, &na));
    OK(duet_items_list(f->b, 0, &itb, &nb));
    assert_int_equal(na, 2);
    assert_int_equal(nb, 2);
    for (size_t i = 0; i < na; i++) {
        duet_checkin_line_t la;
        assert_int_equal(ita[i].kind, DUET_KIND_CHECKIN);
        assert_memory_equal(ita[i].id, itb[i].id, DUET_ITEM_ID_BYTES);
        OK(duet_checkin_line_decode(ita[i].body, ita[i].body_len, &la));
        assert_memory_equal(la.instance, ia.id, ID);
        assert_string_equal(la.name, "weekly");
    }
    assert_true(ita[0].mine);
    assert_false(itb[0].mine);
    duet_items_free(ita, na);
    duet_items_free(itb, nb);

    /* A week later the next instance is due, a new id; the old one is not. */
    f->now += 7 * DAY_MS;
    duet_checkin_instance_t next = due_one(f->a, f->now, ritual);
    assert_int_equal(next.day, ia.day + 7);
    assert_memory_not_equal(next.id, ia.id, ID);
    /* Resolving by prefix. */
    char hex[33], pre[9];
    duet_checkin_instance_t found;
    duet_item_id_hex(next.id, hex);
    memcpy(pre, hex, 8);
    pre[8] = 0;
    OK(duet_checkin_resolve_instance(f->b, pre, f->now, &found));
    assert_memory_equal(found.id, next.id, ID);
    assert_int_equal(duet_checkin_resolve_instance(f->b, "zz", f->now, &found), DUET_ENORITUAL);
    uint8_t rid[ID];
    duet_item_id_hex(ritual, hex);
    OK(duet_checkin_resolve_ritual(f->b, hex, rid));
    assert_memory_equal(rid, ritual, ID);

    /* Stopping it ends it on both sides. */
    TX(f->b, duet_checkin_decline(f->b, ritual, f->now));
    sync_all(f);
    OK(duet_checkin_get(f->a, ritual, &ra));
    assert_int_equal(ra.state, DUET_RITUAL_DECLINED);
    OK(duet_checkin_due(f->a, f->now, &v, &n));
    assert_int_equal(n, 0);
    free(v);
}

/* ---- every order of arrival ---------------------------------------------------------- */

/* A protocol state as the test expects it: who answered, which units arrived. Units:
 * 0 A's answer (to B), 1 B's answer (to A), 2 A's reveal (to B), 3 B's reveal (to A). */
typedef struct model {
    bool answered[2];
    bool exists[4], arrived[4];
    uint64_t lo[4], hi[4]; /* the unit's envelopes */
} model_t;

typedef struct walk {
    fx_t *base;
    uint8_t ritual[ID];
    duet_checkin_instance_t inst;
    size_t paths, steps;
} walk_t;

/* Copy the files of one home to another folder. */
static void copy_home(const char *from, const char *to)
{
    DIR *d = opendir(from);
    struct dirent *e;
    assert_non_null(d);
    duet_test_rmrf(to);
    assert_int_equal(mkdir(to, 0700), 0);
    while ((e = readdir(d)) != NULL) {
        char p[8400], q[8400];
        size_t len;
        if (e->d_name[0] == '.') {
            continue;
        }
        duet_test_path(p, sizeof p, from, e->d_name);
        duet_test_path(q, sizeof q, to, e->d_name);
        uint8_t *data = duet_test_slurp(p, &len);
        if (data != NULL) {
            duet_test_write(q, data, len);
        }
        free(data);
    }
    closedir(d);
}

static void check_states(walk_t *w, fx_t *f, const model_t *m)
{
    /* What A sees of B: waiting until B's answer is here; revealed once B's key is here
     * and A has answered; sealed in between. The same for B. */
    for (int side = 0; side < 2; side++) {
        int other = 1 - side;
        uint32_t want = !m->arrived[other]                             ? DUET_CHECKIN_WAITING
                        : (m->arrived[2 + other] && m->answered[side]) ? DUET_CHECKIN_REVEALED
                                                                       : DUET_CHECKIN_SEALED;
        duet_store_t *st = side == 0 ? f->a : f->b;
        assert_int_equal(pstate(st, &w->inst), want);
    }
}

static void apply(walk_t *w, fx_t *f, model_t *m, int action)
{
    duet_store_t *side[2] = {f->a, f->b};
    if (action < 2) {
        /* Side `action` answers: its ANSWER and inbox line, and its key right after when the
         * other's sealed answer is already here. */
        int s = action;
        uint64_t before = out_seq(side[s]);
        answer(side[s], &w->inst, s == 0 ? "from-a" : "from-b", (uint32_t)(3 + s), f->now);
        uint64_t after = out_seq(side[s]);
        m->answered[s] = true;
        m->exists[s] = true;
        m->lo[s] = before + 1;
        m->hi[s] = before + 2;
        bool owes = m->arrived[1 - s];
        assert_int_equal(after - before, owes ? 3 : 2);
        if (owes) {
            m->exists[2 + s] = true;
            m->lo[2 + s] = m->hi[2 + s] = after;
        }
        return;
    }
    /* Deliver unit u to the other side. */
    int u = action - 2;
    int from = u % 2, to = 1 - from;
    uint64_t before = out_seq(side[to]);
    assert_true(deliver(f, side[from], side[to], m->lo[u], m->hi[u]) > 0);
    m->arrived[u] = true;
    uint64_t after = out_seq(side[to]);
    /* The reveal rule, seen from outside: the receiver sends its key exactly when the
     * partner's answer arrives after its own answer. Nothing else makes it send. */
    bool owes = u < 2 && m->answered[to];
    assert_int_equal(after - before, owes ? 1 : 0);
    if (owes) {
        m->exists[2 + to] = true;
        m->lo[2 + to] = m->hi[2 + to] = after;
    }
}

static void walk(walk_t *w, int *path, int depth)
{
    /* Replay the path from the base pair, then branch. */
    fx_t f;
    memset(&f, 0, sizeof f);
    f.dir = w->base->dir;
    snprintf(f.ha, sizeof f.ha, "%s/wa", w->base->dir);
    snprintf(f.hb, sizeof f.hb, "%s/wb", w->base->dir);
    copy_home(w->base->ha, f.ha);
    copy_home(w->base->hb, f.hb);
    duet_store_opts_t oa = {.rng = duet_testrng_init(&f.ra, 7000 + (uint64_t)depth)};
    duet_store_opts_t ob = {.rng = duet_testrng_init(&f.rb, 8000 + (uint64_t)depth)};
    OK(duet_store_open(f.ha, &oa, &f.a));
    OK(duet_store_open(f.hb, &ob, &f.b));
    f.now = w->base->now;
    model_t m;
    memset(&m, 0, sizeof m);
    check_states(w, &f, &m);
    for (int i = 0; i < depth; i++) {
        apply(w, &f, &m, path[i]);
        check_states(w, &f, &m);
        w->steps++;
    }
    int next[6], nn = 0;
    for (int s = 0; s < 2; s++) {
        if (!m.answered[s]) {
            next[nn++] = s;
        }
    }
    for (int u = 0; u < 4; u++) {
        if (m.exists[u] && !m.arrived[u]) {
            next[nn++] = 2 + u;
        }
    }
    if (nn == 0) {
        /* Complete: both see both answers, readable. */
        assert_true(partner_text_is(f.a, &w->inst, 0, "from-b:felt_good"));
        assert_true(partner_text_is(f.b, &w->inst, 0, "from-a:felt_good"));
        w->paths++;
    }
    duet_store_close(f.a);
    duet_store_close(f.b);
    for (int i = 0; i < nn; i++) {
        path[depth] = next[i];
        walk(w, path, depth + 1);
    }
}

static void test_every_order(void **state)
{
    fx_t *f = fx_new("UTC", 200);
    *state = f;
    walk_t w;
    memset(&w, 0, sizeof w);
    w.base = f;
    start_ritual(f, "weekly", NULL, false, w.ritual);
    w.inst = due_one(f->a, f->now, w.ritual);
    duet_store_close(f->a);
    duet_store_close(f->b);
    int path[16];
    walk(&w, path, 0);
    /* The orders the rule allows: 18 (each key can only follow the other's answer; either
     * key may overtake its own sender's answer on another path). A rule that sent keys
     * earlier or later would make other orders possible or impossible. */
    assert_int_equal(w.paths, 18);
    print_message("%zu complete orders, %zu steps checked\n", w.paths, w.steps);
    /* Reopen the base stores for the teardown. */
    duet_store_opts_t oa = {.rng = duet_testrng_init(&f->ra, 1)};
    duet_store_opts_t ob = {.rng = duet_testrng_init(&f->rb, 2)};
    OK(duet_store_open(f->ha, &oa, &f->a));
    OK(duet_store_open(f->hb, &ob, &f->b));
}

/* ---- the impatient or modified partner ------------------------------------------------- */

/* B's modified client queues whatever it likes. */
static void b_sends(fx_t *f, uint32_t kind, duet_codec_enc_t *enc)
{
    const uint8_t *p;
    size_t len;
    OK(duet_codec_enc_finish(enc, &p, &len));
    TX(f->b, duet_outbox_queue(f->b, kind, p, len, f->now, NULL));
    duet_codec_enc_dispose(enc);
}

static void forged_reveal(fx_t *f, const uint8_t inst[ID], uint8_t fill_byte)
{
    duet_codec_enc_t enc;
    uint8_t key[32];
    memset(key, fill_byte, sizeof key);
    duet_codec_enc_init(&enc, 256);
    duet_codec_put_map(&enc, 2);
    duet_codec_put_key(&enc, 1);
    duet_codec_put_bin(&enc, inst, ID);
    duet_codec_put_key(&enc, 2);
    duet_codec_put_bin(&enc, key, 32);
    b_sends(f, DUET_KIND_REVEAL, &enc);
}

/* An ANSWER body from parts. */
static void b_answer_raw(fx_t *f, const uint8_t inst[ID], const uint8_t ritual[ID],
                         const char *date, const uint8_t *nonce, const uint8_t *ct, size_t ctl,
                         const uint8_t *commit)
{
    duet_codec_enc_t enc;
    duet_codec_enc_init(&enc, DUET_ITEM_BODY_MAX);
    duet_codec_put_map(&enc, 6);
    duet_codec_put_key(&enc, 1);
    duet_codec_put_bin(&enc, inst, ID);
    duet_codec_put_key(&enc, 2);
    duet_codec_put_bin(&enc, ritual, ID);
    duet_codec_put_key(&enc, 3);
    duet_codec_put_str(&enc, date, 10);
    duet_codec_put_key(&enc, 4);
    duet_codec_put_bin(&enc, nonce, 24);
    duet_codec_put_key(&enc, 5);
    duet_codec_put_bin(&enc, ct, ctl);
    duet_codec_put_key(&enc, 6);
    duet_codec_put_bin(&enc, commit, 32);
    b_sends(f, DUET_KIND_ANSWER, &enc);
}

static void test_impatient_partner(void **state)
{
    fx_t *f = fx_new("UTC", 300);
    *state = f;
    uint8_t ritual[ID];
    start_ritual(f, "weekly", NULL, false, ritual);
    duet_checkin_instance_t inst = due_one(f->a, f->now, ritual);
    char date[11];
    duet_checkin_day_format(inst.day, date);

    answer(f->a, &inst, "patient-a", 5, f->now);
    sync_all(f);
    uint64_t a_seq = out_seq(f->a);

    /* 1. B asks for A's key by sending its own "key" first, without an answer. */
    forged_reveal(f, inst.id, 0x11);
    /* 2. A reveal for another instance, and for a made-up one. */
    duet_checkin_instance_t other;
    other = inst;
    duet_checkin_instance_id(ritual, inst.day + 7, other.id);
    forged_reveal(f, other.id, 0x22);
    uint8_t bogus[ID];
    memset(bogus, 0x33, sizeof bogus);
    forged_reveal(f, bogus, 0x44);
    /* 3. Fabricated requests: an unknown kind, a ritual operation that does not exist, a
     *    REVEAL without a key. */
    {
        duet_codec_enc_t enc;
        duet_codec_enc_init(&enc, 256);
        duet_codec_put_map(&enc, 1);
        duet_codec_put_key(&enc, 1);
        duet_codec_put_bin(&enc, inst.id, ID);
        b_sends(f, 21, &enc);
        duet_codec_enc_init(&enc, 256);
        duet_codec_put_map(&enc, 2);
        duet_codec_put_key(&enc, 1);
        duet_codec_put_uint(&enc, 9);
        duet_codec_put_key(&enc, 2);
        duet_codec_put_bin(&enc, ritual, ID);
        b_sends(f, DUET_KIND_RITUAL, &enc);
        duet_codec_enc_init(&enc, 256);
        duet_codec_put_map(&enc, 1);
        duet_codec_put_key(&enc, 1);
        duet_codec_put_bin(&enc, inst.id, ID);
        b_sends(f, DUET_KIND_REVEAL, &enc);
    }
    /* 4. An answer whose instance id does not match its ritual and date. */
    uint8_t zeros[DUET_CHECKIN_PAD + 16], nonce[24], commit[32];
    memset(zeros, 0, sizeof zeros);
    memset(nonce, 1, sizeof nonce);
    memset(commit, 2, sizeof commit);
    b_answer_raw(f, other.id, ritual, date, nonce, zeros, sizeof zeros, commit);
    /* 5. A's own sealed answer, sent back as B's (B holds it, sealed, in its store). */
    {
        sqlite3_stmt *s;
        uint8_t ad[64], *plain;
        size_t plen;
        assert_int_equal(sqlite3_prepare_v2(duet_store_db(f->b),
                                            "SELECT answer FROM checkin_answers WHERE "
                                            "instance = ?1 AND mine = 0",
                                            -1, &s, NULL),
                         SQLITE_OK);
        sqlite3_bind_blob(s, 1, inst.id, ID, SQLITE_STATIC);
        assert_int_equal(sqlite3_step(s), SQLITE_ROW);
        memcpy(ad, "checkin answer", 14);
        memcpy(ad + 14, inst.id, ID);
        ad[14 + ID] = 0;
        OK(duet_store_unseal(f->b, ad, 14 + ID + 1, sqlite3_column_blob(s, 0),
                             (size_t)sqlite3_column_bytes(s, 0), &plain, &plen));
        sqlite3_finalize(s);
        b_answer_raw(f, inst.id, ritual, date, plain, plain + 56, plen - 56, plain + 24);
        free(plain);
    }
    sync_all(f);

    /* A sent nothing for any of it, and B still cannot read A. */
    assert_int_equal(out_seq(f->a), a_seq);
    assert_int_equal(pstate(f->b, &inst), DUET_CHECKIN_SEALED);
    assert_int_equal(pstate(f->a, &inst), DUET_CHECKIN_WAITING); /* no answer of B counted */
    assert_false(home_contains(f->hb, "patient-a"));

    /* B answers for real: its key follows; A's follows B's answer; both revealed. The
     * early forged key did not get in the way. */
    answer(f->b, &inst, "finally-b", 1, f->now);
    sync_all(f);
    assert_int_equal(pstate(f->a, &inst), DUET_CHECKIN_REVEALED);
    assert_int_equal(pstate(f->b, &inst), DUET_CHECKIN_REVEALED);
    assert_true(partner_text_is(f->b, &inst, 0, "patient-a:felt_good"));
    assert_true(partner_text_is(f->a, &inst, 0, "finally-b:felt_good"));
    assert_int_equal(out_seq(f->a), a_seq + 1); /* exactly one REVEAL */
    /* The forged early keys are gone or harmless: none is left for this instance. */
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(duet_store_db(f->a),
                                        "SELECT count(*) FROM checkin_early WHERE instance = ?1",
                                        -1, &s, NULL),
                     SQLITE_OK);
    sqlite3_bind_blob(s, 1, inst.id, ID, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(s, 0), 0);
    sqlite3_finalize(s);
}

/* A modified client can commit to nonsense to get my key (no two-party protocol can stop
 * that, docs/protocol/checkin.md), but it cannot then reveal an answer chosen after reading
 * mine: the commitment binds its sealed answer to one key. */
static void test_commitment_binds(void **state)
{
    fx_t *f = fx_new("UTC", 400);
    *state = f;
    uint8_t ritual[ID];
    start_ritual(f, "daily", NULL, false, ritual);
    duet_checkin_instance_t inst = due_one(f->a, f->now, ritual);
    char date[11];
    duet_checkin_day_format(inst.day, date);
    answer(f->a, &inst, "honest-a", 3, f->now);
    sync_all(f);
    uint8_t nonce[24], commit[32], ct[DUET_CHECKIN_PAD + 16];
    memset(nonce, 7, sizeof nonce);
    memset(commit, 8, sizeof commit);
    memset(ct, 9, sizeof ct);
    b_answer_raw(f, inst.id, ritual, date, nonce, ct, sizeof ct, commit);
    uint64_t a_seq = out_seq(f->a);
    sync_all(f);
    assert_int_equal(out_seq(f->a), a_seq + 1); /* A's key went: B sent a sealed answer */
    assert_int_equal(pstate(f->a, &inst), DUET_CHECKIN_SEALED);
    for (uint8_t k = 0; k < 4; k++) {
        forged_reveal(f, inst.id, (uint8_t)(0x80 + k));
    }
    sync_all(f);
    assert_int_equal(pstate(f->a, &inst), DUET_CHECKIN_SEALED); /* no key opens it */
    duet_checkin_view_t v;
    OK(duet_checkin_show(f->a, &inst, &v));
    assert_true(v.key_released); /* show tells A that its key is out */
    duet_checkin_view_clear(&v);
}

/* A modified client may push its own key before I answer. My client keeps the ritual for
 * me: their answer stays sealed until mine is in, and nothing of mine goes out for it. */
static void test_early_key_waits_for_me(void **state)
{
    fx_t *f = fx_new("UTC", 450);
    *state = f;
    uint8_t ritual[ID];
    start_ritual(f, "weekly", NULL, false, ritual);
    duet_checkin_instance_t inst = due_one(f->b, f->now, ritual);
    answer(f->b, &inst, "eager-b", 2, f->now);
    {
        /* B's real key, from B's own store. */
        sqlite3_stmt *s;
        uint8_t ad[64], *key;
        size_t klen;
        assert_int_equal(sqlite3_prepare_v2(duet_store_db(f->b),
                                            "SELECT key FROM checkin_answers WHERE "
                                            "instance = ?1 AND mine = 1",
                                            -1, &s, NULL),
                         SQLITE_OK);
        sqlite3_bind_blob(s, 1, inst.id, ID, SQLITE_STATIC);
        assert_int_equal(sqlite3_step(s), SQLITE_ROW);
        memcpy(ad, "checkin key", 11);
        memcpy(ad + 11, inst.id, ID);
        ad[11 + ID] = 1;
        OK(duet_store_unseal(f->b, ad, 11 + ID + 1, sqlite3_column_blob(s, 0),
                             (size_t)sqlite3_column_bytes(s, 0), &key, &klen));
        sqlite3_finalize(s);
        assert_int_equal(klen, 32);
        duet_codec_enc_t enc;
        duet_codec_enc_init(&enc, 256);
        duet_codec_put_map(&enc, 2);
        duet_codec_put_key(&enc, 1);
        duet_codec_put_bin(&enc, inst.id, ID);
        duet_codec_put_key(&enc, 2);
        duet_codec_put_bin(&enc, key, 32);
        b_sends(f, DUET_KIND_REVEAL, &enc);
        sodium_memzero(key, klen);
        free(key);
    }
    uint64_t a_seq = out_seq(f->a);
    sync_all(f);
    assert_int_equal(pstate(f->a, &inst), DUET_CHECKIN_SEALED);
    assert_int_equal(out_seq(f->a), a_seq);
    answer(f->a, &inst, "calm-a", 4, f->now);
    assert_int_equal(out_seq(f->a), a_seq + 3); /* answer, line, and the key right after */
    assert_true(partner_text_is(f->a, &inst, 0, "eager-b:felt_good"));
    sync_all(f);
    assert_true(partner_text_is(f->b, &inst, 0, "calm-a:felt_good"));
}

/* ---- open rituals -------------------------------------------------------------------- */

static void test_open_ritual(void **state)
{
    fx_t *f = fx_new("UTC", 500);
    *state = f;
    uint8_t ritual[ID];
    start_ritual(f, "daily", NULL, true, ritual);
    duet_checkin_ritual_t r;
    OK(duet_checkin_get(f->b, ritual, &r));
    assert_true(r.open);
    duet_checkin_instance_t inst = due_one(f->a, f->now, ritual);
    uint64_t b_seq = out_seq(f->b);
    answer(f->a, &inst, "open-a", 5, f->now);
    sync_all(f);
    /* Visible as it arrives, before B answers, and B sent nothing back for it. */
    assert_int_equal(pstate(f->b, &inst), DUET_CHECKIN_REVEALED);
    assert_true(partner_text_is(f->b, &inst, 3, "open-a:line"));
    assert_int_equal(out_seq(f->b), b_seq);
    answer(f->b, &inst, "open-b", 1, f->now);
    assert_int_equal(out_seq(f->b), b_seq + 2); /* answer and line; the key is inside */
    sync_all(f);
    assert_int_equal(pstate(f->a, &inst), DUET_CHECKIN_REVEALED);
    assert_false(home_contains(f->hb, "open-a"));
}

/* ---- answers: validation --------------------------------------------------------------- */

static void test_answer_checks(void **state)
{
    fx_t *f = fx_new("UTC", 600);
    *state = f;
    uint8_t ritual[ID];
    start_ritual(f, "daily", NULL, false, ritual);
    duet_checkin_ritual_t r;
    OK(duet_checkin_get(f->a, ritual, &r));
    duet_checkin_answers_t a;
    memset(&a, 0, sizeof a);
    a.n = r.spec.nq;
    assert_int_equal(duet_checkin_answers_check(&r.spec, &a), DUET_EEMPTY);
    duet_checkin_answers_set_scale(&a, 0, 6);
    assert_int_equal(duet_checkin_answers_check(&r.spec, &a), DUET_ERANGE);
    duet_checkin_answers_set_scale(&a, 0, 0);
    assert_int_equal(duet_checkin_answers_check(&r.spec, &a), DUET_ERANGE);
    duet_checkin_answers_set_scale(&a, 0, 3);
    OK(duet_checkin_answers_check(&r.spec, &a));         /* skipping questions is fine */
    OK(duet_checkin_answers_set_text(&a, 1, "text", 4)); /* a scale question */
    assert_int_equal(duet_checkin_answers_check(&r.spec, &a), DUET_EINVAL);
    duet_checkin_answers_set_scale(&a, 1, 2);
    OK(duet_checkin_answers_set_text(&a, 3, "\xc3\x28", 2));
    assert_int_equal(duet_checkin_answers_check(&r.spec, &a), DUET_EUTF8);
    char *big = malloc(DUET_CHECKIN_TEXT_MAX + 1);
    memset(big, 'x', DUET_CHECKIN_TEXT_MAX + 1);
    OK(duet_checkin_answers_set_text(&a, 3, big, DUET_CHECKIN_TEXT_MAX + 1));
    assert_int_equal(duet_checkin_answers_check(&r.spec, &a), DUET_ETOOBIG);
    OK(duet_checkin_answers_set_text(&a, 3, big, DUET_CHECKIN_TEXT_MAX));
    OK(duet_checkin_answers_check(&r.spec, &a));
    free(big);

    /* The longest answer still travels in one envelope, and opens on the other side. */
    duet_checkin_instance_t inst = due_one(f->a, f->now, ritual);
    TX(f->a, duet_checkin_answer(f->a, &inst, &a, f->now));
    duet_checkin_answers_clear(&a);
    /* Not yet due: tomorrow's instance. */
    duet_checkin_instance_t tomorrow = inst;
    tomorrow.day++;
    duet_checkin_instance_id(ritual, tomorrow.day, tomorrow.id);
    fill(&r.spec, "early", 3, &a);
    OK(duet_store_begin(f->b));
    assert_int_equal(tx_err(f->b, duet_checkin_answer(f->b, &tomorrow, &a, f->now)), DUET_ESTATE);
    /* Not an instance of the ritual at all. */
    duet_checkin_instance_t wrong = inst;
    wrong.id[0] ^= 1;
    OK(duet_store_begin(f->b));
    assert_int_equal(tx_err(f->b, duet_checkin_answer(f->b, &wrong, &a, f->now)), DUET_ENORITUAL);
    TX(f->b, duet_checkin_answer(f->b, &inst, &a, f->now));
    duet_checkin_answers_clear(&a);
    sync_all(f);
    duet_checkin_view_t v;
    OK(duet_checkin_show(f->b, &inst, &v));
    assert_int_equal(v.partner_state, DUET_CHECKIN_REVEALED);
    assert_int_equal(v.partner.v[3].text_len, DUET_CHECKIN_TEXT_MAX);
    assert_int_equal(v.partner.v[2].type, 0); /* skipped */
    duet_checkin_view_clear(&v);
}

/* ---- the rhythm over a year ---------------------------------------------------------- */

typedef struct expect_dst {
    const char *tz;
    int spring_m, spring_d, fall_m, fall_d; /* the 2026 changes */
} expect_dst_t;

static void year_walk(const expect_dst_t *x)
{
    fx_t *f = fx_new(x->tz, 700);
    uint8_t daily[ID], sunday[ID], weekly[ID];
    f->now = local_ms(2026, 1, 1, 10, 0); /* a Thursday */
    start_ritual(f, "daily", NULL, false, daily);
    start_ritual(f, "weekly", "weekly:sun", false, sunday);
    start_ritual(f, "weekly", NULL, false, weekly);
    int64_t start = duet_checkin_day_from_civil(2026, 1, 1);
    int64_t end = duet_checkin_day_from_civil(2027, 1, 1); /* exclusive */
    uint64_t end_ms = duet_checkin_day_start_ms(end);
    duet_store_t *sides[2] = {f->a, f->b};
    for (int s = 0; s < 2; s++) {
        /* Walk the daemon's reminder cursor through the year. */
        uint64_t after = f->now - 1;
        uint8_t last[ID], *cursor = NULL;
        size_t seen[3] = {0, 0, 0};
        int64_t prev_day[3] = {start - 1, start - 1, start - 1};
        uint64_t prev_when[3] = {0, 0, 0};
        int gaps23 = 0, gaps25 = 0, weekgaps167 = 0, weekgaps169 = 0;
        for (;;) {
            uint64_t when;
            uint8_t inst[ID], rit[ID];
            OK(duet_checkin_next_due(sides[s], after, cursor, &when, inst, rit));
            if (when >= end_ms) {
                break;
            }
            int k = sodium_memcmp(rit, daily, ID) == 0    ? 0
                    : sodium_memcmp(rit, sunday, ID) == 0 ? 1
                                                          : 2;
            int64_t day = duet_checkin_local_day(when);
            uint8_t want[ID];
            duet_checkin_instance_id(rit, day, want);
            assert_memory_equal(inst, want, ID);
            assert_true(day > prev_day[k]); /* never twice */
            /* Which day comes next, by the calendar. */
            int64_t expect = k == 0 ? prev_day[k] + 1
                             : prev_day[k] < start
                                 ? start
                                 : prev_day[k] + (k == 1 && prev_day[k] == start ? 3 : 7);
            assert_int_equal(day, expect); /* never missed */
            if (day != start && prev_day[k] == start) {
                /* Right after the first instance (due when accepted): only the midnight. */
                time_t t = (time_t)(when / 1000u);
                struct tm tm;
                localtime_r(&t, &tm);
                assert_int_equal(tm.tm_hour, 0);
                assert_int_equal(tm.tm_min, 0);
            } else if (day != start) {
                /* Due at the first instant of its local date. */
                time_t t = (time_t)(when / 1000u);
                struct tm tm;
                localtime_r(&t, &tm);
                assert_int_equal(tm.tm_hour, 0);
                assert_int_equal(tm.tm_min, 0);
                assert_int_equal(duet_checkin_local_day(when - 1000), day - 1);
                uint64_t gap = when - prev_when[k];
                if (k == 0) {
                    assert_true(gap == 23 * HOUR || gap == 24 * HOUR || gap == 25 * HOUR);
                    gaps23 += gap == 23 * HOUR;
                    gaps25 += gap == 25 * HOUR;
                } else if (prev_day[k] != start) {
                    assert_true(gap >= 167 * HOUR && gap <= 169 * HOUR);
                    weekgaps167 += gap == 167 * HOUR;
                    weekgaps169 += gap == 169 * HOUR;
                }
            } else {
                assert_true(when >= f->now - HOUR); /* the first: when it was accepted */
            }
            prev_day[k] = day;
            prev_when[k] = when;
            seen[k]++;
            after = when;
            memcpy(last, inst, ID);
            cursor = last;
        }
        assert_int_equal(seen[0], 365);
        assert_int_equal(seen[1], 1 + 52); /* the start, then every Sunday */
        assert_int_equal(seen[2], 53);     /* every Thursday of 2026 */
        assert_int_equal(gaps23, 1);
        assert_int_equal(gaps25, 1);
        /* Sundays: the week after each change is an hour shorter or longer; the Thursday
         * ritual's weeks across the changes too. */
        assert_int_equal(weekgaps167, 2);
        assert_int_equal(weekgaps169, 2);
    }
    /* The transitions themselves, and `due` hour by hour around them. */
    int64_t spring =
        duet_checkin_day_from_civil(2026, (unsigned)x->spring_m, (unsigned)x->spring_d);
    int64_t fall = duet_checkin_day_from_civil(2026, (unsigned)x->fall_m, (unsigned)x->fall_d);
    assert_int_equal(duet_checkin_day_start_ms(spring + 1) - duet_checkin_day_start_ms(spring),
                     23 * HOUR);
    assert_int_equal(duet_checkin_day_start_ms(fall + 1) - duet_checkin_day_start_ms(fall),
                     25 * HOUR);
    for (int64_t around = 0; around < 2; around++) {
        int64_t d0 = (around == 0 ? spring : fall) - 1;
        for (uint64_t t = duet_checkin_day_start_ms(d0); t < duet_checkin_day_start_ms(d0 + 3);
             t += HOUR / 2) {
            duet_checkin_instance_t *v;
            size_t n;
            OK(duet_checkin_due(f->b, t, &v, &n));
            int64_t today = duet_checkin_local_day(t);
            size_t daily_n = 0;
            int64_t newest = 0;
            for (size_t i = 0; i < n; i++) {
                if (sodium_memcmp(v[i].ritual, daily, ID) == 0) {
                    daily_n++;
                    newest = v[i].day > newest ? v[i].day : newest;
                    for (size_t j = 0; j < i; j++) {
                        assert_memory_not_equal(v[i].id, v[j].id, ID);
                    }
                }
            }
            free(v);
            assert_int_equal(newest, today);
            assert_int_equal(daily_n, DUET_CHECKIN_DUE_MAX); /* the newest 31, none twice */
        }
    }
    /* Answered instances are not reminded of again. */
    duet_checkin_instance_t inst;
    inst.day = spring;
    memcpy(inst.ritual, daily, ID);
    duet_checkin_instance_id(daily, spring, inst.id);
    answer(f->b, &inst, "dst", 3, duet_checkin_day_start_ms(spring) + 12 * HOUR);
    uint64_t when, after = duet_checkin_day_start_ms(spring) - HOUR;
    uint8_t id[ID], rit[ID], last[ID], *cur = NULL;
    size_t at_midnight = 0;
    for (;;) {
        OK(duet_checkin_next_due(f->b, after, cur, &when, id, rit));
        if (when > duet_checkin_day_start_ms(spring)) {
            break;
        }
        assert_memory_not_equal(id, inst.id, ID);
        at_midnight++;
        after = when;
        memcpy(last, id, ID);
        cur = last;
    }
    assert_int_equal(at_midnight, 1); /* the Sunday ritual's only */
    fx_free(f);
}

static void test_dst_berlin(void **state)
{
    (void)state;
    /* 2026-03-29 02:00 -> 03:00, 2026-10-25 03:00 -> 02:00 */
    expect_dst_t x = {"Europe/Berlin", 3, 29, 10, 25};
    year_walk(&x);
}

static void test_dst_new_york(void **state)
{
    (void)state;
    /* 2026-03-08 02:00 -> 03:00, 2026-11-01 02:00 -> 01:00 */
    expect_dst_t x = {"America/New_York", 3, 8, 11, 1};
    year_walk(&x);
}

/* The acceptance came late (partners a day apart, or a slow path): the first instance is
 * due when it arrives, and is reminded once. */
static void test_due_on_late_accept(void **state)
{
    fx_t *f = fx_new("UTC", 800);
    *state = f;
    uint8_t ritual[ID];
    const duet_checkin_template_t *t = duet_checkin_template_find("daily");
    TX(f->a, duet_checkin_propose(f->a, &t->spec, t->rhythm, false, f->now, ritual));
    sync_all(f);
    TX(f->b, duet_checkin_accept(f->b, ritual, f->now));
    uint64_t accepted = f->now;
    f->now += 30 * HOUR; /* A hears of it the next day */
    sync_all(f);
    uint64_t when;
    uint8_t inst[ID], rit[ID], first[ID];
    OK(duet_checkin_next_due(f->a, accepted, NULL, &when, inst, rit));
    /* Today's instance (due at midnight) comes first, then the first one, due on arrival. */
    assert_int_equal(when, duet_checkin_day_start_ms(duet_checkin_local_day(f->now)));
    OK(duet_checkin_next_due(f->a, when, inst, &when, first, rit));
    assert_int_equal(when, f->now);
    uint8_t want[ID];
    duet_checkin_instance_id(ritual, duet_checkin_local_day(accepted), want);
    assert_memory_equal(first, want, ID);
    duet_checkin_instance_t *v;
    size_t n;
    OK(duet_checkin_due(f->a, f->now, &v, &n));
    assert_int_equal(n, 2);
    free(v);
}

/* ---- agreements ----------------------------------------------------------------------- */

static duet_checkin_agreement_t agreement(duet_store_t *st, const uint8_t id[ID])
{
    duet_checkin_agreement_t a;
    OK(duet_checkin_agree_get(st, id, &a));
    return a;
}

static void test_agreements(void **state)
{
    fx_t *f = fx_new("UTC", 900);
    *state = f;
    uint8_t id[ID];
    const char *v1 = "No big talks after 9 pm on treatment days.";
    TX(f->a, duet_checkin_agree_add(f->a, v1, strlen(v1), f->now, id));
    duet_checkin_agreement_t x = agreement(f->a, id);
    assert_int_equal(x.version, 1);
    assert_true(x.accepted_me);
    assert_false(x.accepted_partner);
    sync_all(f);
    x = agreement(f->b, id);
    assert_string_equal(x.text, v1);
    assert_false(x.accepted_me);
    assert_true(x.accepted_partner); /* its author */
    TX(f->b, duet_checkin_agree_accept(f->b, id, f->now));
    OK(duet_store_begin(f->b));
    assert_int_equal(tx_err(f->b, duet_checkin_agree_accept(f->b, id, f->now)), DUET_EEXIST);
    sync_all(f);
    x = agreement(f->a, id);
    assert_true(x.accepted_me && x.accepted_partner); /* agreed */
    x = agreement(f->b, id);
    assert_true(x.accepted_me && x.accepted_partner);

    /* A change asks both again; its author has accepted it by writing it. */
    const char *v2 = "No big talks after 9 pm, unless one of us asks.";
    TX(f->b, duet_checkin_agree_change(f->b, id, v2, strlen(v2), f->now));
    x = agreement(f->b, id);
    assert_int_equal(x.version, 2);
    assert_true(x.accepted_me);
    assert_false(x.accepted_partner);
    sync_all(f);
    x = agreement(f->a, id);
    assert_string_equal(x.text, v2);
    assert_false(x.accepted_me);
    assert_true(x.accepted_partner);
    TX(f->a, duet_checkin_agree_accept(f->a, id, f->now));
    sync_all(f);
    assert_true(agreement(f->a, id).accepted_partner && agreement(f->a, id).accepted_me);
    assert_true(agreement(f->b, id).accepted_partner && agreement(f->b, id).accepted_me);

    /* Both change version 2 at once: both devices settle on the same text, and it is not
     * agreed until the other one accepts it. */
    TX(f->a, duet_checkin_agree_change(f->a, id, "from a", 6, f->now));
    TX(f->b, duet_checkin_agree_change(f->b, id, "from b", 6, f->now));
    sync_all(f);
    duet_checkin_agreement_t xa = agreement(f->a, id), xb = agreement(f->b, id);
    assert_int_equal(xa.version, 3);
    assert_int_equal(xb.version, 3);
    assert_string_equal(xa.text, xb.text);
    assert_memory_equal(xa.rev, xb.rev, ID);
    assert_true(xa.mine != xb.mine);
    assert_false(xa.accepted_me && xa.accepted_partner);
    duet_store_t *loser = xa.mine ? f->b : f->a;
    TX(loser, duet_checkin_agree_accept(loser, id, f->now));
    sync_all(f);
    assert_true(agreement(f->a, id).accepted_me && agreement(f->a, id).accepted_partner);
    assert_true(agreement(f->b, id).accepted_me && agreement(f->b, id).accepted_partner);

    /* A stale acceptance (of an older revision) does not count for the new one. */
    duet_checkin_agreement_t cur = agreement(f->a, id);
    TX(f->a, duet_checkin_agree_change(f->a, id, "v4", 2, f->now));
    {
        duet_codec_enc_t enc;
        duet_codec_enc_init(&enc, 256);
        duet_codec_put_map(&enc, 4);
        duet_codec_put_key(&enc, 1);
        duet_codec_put_uint(&enc, 2);
        duet_codec_put_key(&enc, 2);
        duet_codec_put_bin(&enc, id, ID);
        duet_codec_put_key(&enc, 3);
        duet_codec_put_uint(&enc, cur.version);
        duet_codec_put_key(&enc, 4);
        duet_codec_put_bin(&enc, cur.rev, ID);
        b_sends(f, DUET_KIND_AGREEMENT, &enc);
    }
    sync_all(f);
    assert_false(agreement(f->a, id).accepted_partner);

    duet_checkin_agreement_t *list;
    size_t n;
    OK(duet_checkin_agree_list(f->b, &list, &n));
    assert_int_equal(n, 1);
    free(list);
    OK(duet_store_begin(f->a));
    assert_int_equal(tx_err(f->a, duet_checkin_agree_add(f->a, "", 0, f->now, id)), DUET_EEMPTY);
}

/* ---- pause, resume, milestones --------------------------------------------------------- */

static void test_pause_and_milestones(void **state)
{
    fx_t *f = fx_new("UTC", 1000);
    *state = f;
    bool paused, mine;
    duet_checkin_pause_t p;
    memset(&p, 0, sizeof p);
    p.has_until = true;
    p.until_day = duet_checkin_local_day(f->now) + 3;
    strcpy(p.note, "The scan is on Thursday. Gentle days, please.");
    TX(f->a, duet_checkin_pause(f->a, &p, f->now, NULL));
    sync_all(f);
    duet_checkin_pause_t got;
    OK(duet_checkin_pause_state(f->b, f->now, &paused, &mine, &got));
    assert_true(paused);
    assert_false(mine);
    assert_true(got.has_until);
    assert_int_equal(got.until_day, p.until_day);
    assert_string_equal(got.note, p.note);
    OK(duet_checkin_pause_state(f->a, f->now, &paused, &mine, &got));
    assert_true(paused && mine);
    /* Over after its last day. */
    OK(duet_checkin_pause_state(f->b, f->now + 4 * DAY_MS, &paused, &mine, &got));
    assert_false(paused);
    /* An open-ended pause, ended by a resume from the other side. */
    memset(&p, 0, sizeof p);
    f->now += HOUR;
    TX(f->a, duet_checkin_pause(f->a, &p, f->now, NULL));
    sync_all(f);
    OK(duet_checkin_pause_state(f->b, f->now + 100 * DAY_MS, &paused, &mine, &got));
    assert_true(paused);
    f->now += HOUR;
    TX(f->b, duet_checkin_resume(f->b, "Ready when you are.", f->now, NULL));
    sync_all(f);
    OK(duet_checkin_pause_state(f->a, f->now, &paused, &mine, &got));
    assert_false(paused);

    /* The inbox carries them (pause, pause, resume). */
    duet_item_t *it;
    size_t n;
    OK(duet_items_list(f->a, 0, &it, &n));
    assert_int_equal(n, 3);
    assert_int_equal(it[0].kind, DUET_KIND_PAUSE);
    assert_int_equal(it[2].kind, DUET_KIND_RESUME);
    OK(duet_checkin_pause_decode(it[2].body, it[2].body_len, &got));
    assert_string_equal(got.note, "Ready when you are.");
    duet_items_free(it, n);

    const char *m = "First walk around the block <3 & more";
    TX(f->b, duet_checkin_milestone(f->b, m, strlen(m), f->now, NULL));
    sync_all(f);
    duet_checkin_milestone_rec_t *ms;
    OK(duet_checkin_milestones(f->a, &ms, &n));
    assert_int_equal(n, 1);
    assert_string_equal(ms[0].text, m);
    assert_false(ms[0].mine);
    free(ms);
    assert_false(home_contains(f->ha, "First walk around"));
    OK(duet_store_begin(f->b));
    assert_int_equal(tx_err(f->b, duet_checkin_milestone(f->b, "", 0, f->now, NULL)), DUET_EEMPTY);
    OK(duet_store_begin(f->b));
    assert_int_equal(tx_err(f->b, duet_checkin_milestone(f->b, "a\x01", 2, f->now, NULL)),
                     DUET_EUTF8);
}

/* ---- history and the chart ------------------------------------------------------------ */

/* A small well-formedness check: tags nest and close, attributes are quoted, every '&'
 * starts an entity. (python3's xml.etree checks the CLI's file in checkin_cli.sh.) */
static bool xml_well_formed(const char *s)
{
    const char *stack[64];
    size_t lens[64], depth = 0;
    while (*s) {
        if (*s == '&') {
            if (strncmp(s, "&amp;", 5) && strncmp(s, "&lt;", 4) && strncmp(s, "&gt;", 4) &&
                strncmp(s, "&quot;", 6) && strncmp(s, "&#39;", 5)) {
                return false;
            }
            s++;
            continue;
        }
        if (*s != '<') {
            if (*s == '>') {
                return false;
            }
            s++;
            continue;
        }
        if (s[1] == '?') {
            s = strstr(s, "?>");
            if (s == NULL) {
                return false;
            }
            s += 2;
            continue;
        }
        bool closing = s[1] == '/';
        const char *name = s + 1 + closing;
        size_t nl = strcspn(name, " />\n");
        const char *end = name + nl;
        bool in_quote = false;
        while (*end && (in_quote || *end != '>')) {
            if (*end == '"') {
                in_quote = !in_quote;
            } else if (!in_quote && *end == '<') {
                return false;
            }
            end++;
        }
        if (*end != '>') {
            return false;
        }
        bool self = end[-1] == '/';
        if (closing) {
            if (depth == 0 || lens[depth - 1] != nl || strncmp(stack[depth - 1], name, nl)) {
                return false;
            }
            depth--;
        } else if (!self) {
            if (depth == 64) {
                return false;
            }
            stack[depth] = name;
            lens[depth++] = nl;
        }
        s = end + 1;
    }
    return depth == 0;
}

static void test_history_and_chart(void **state)
{
    fx_t *f = fx_new("UTC", 1100);
    *state = f;
    uint8_t ritual[ID];
    start_ritual(f, "weekly", NULL, false, ritual);
    /* Five weeks: both answer in weeks 0, 1, 3; only A in week 2; nobody in week 4. */
    for (int week = 0; week < 5; week++) {
        duet_checkin_instance_t inst = due_one(f->a, f->now, ritual);
        if (week != 4) {
            answer(f->a, &inst, "a", (uint32_t)(1 + week), f->now);
        }
        if (week != 2 && week != 4) {
            answer(f->b, &inst, "b", (uint32_t)(5 - week), f->now);
        }
        sync_all(f);
        f->now += 7 * DAY_MS;
    }
    f->now -= 7 * DAY_MS;
    duet_checkin_view_t *v;
    size_t n;
    OK(duet_checkin_history(f->a, ritual, f->now, &v, &n));
    assert_int_equal(n, 5);
    for (size_t i = 1; i < n; i++) {
        assert_int_equal(v[i].inst.day, v[i - 1].inst.day + 7);
    }
    assert_int_equal(v[0].partner_state, DUET_CHECKIN_REVEALED);
    assert_int_equal(v[0].mine.v[3].scale, 1);
    assert_int_equal(v[0].partner.v[3].scale, 5);
    assert_int_equal(v[2].partner_state, DUET_CHECKIN_WAITING);
    assert_false(v[4].mine_answered);
    duet_checkin_views_free(v, n);
    OK(duet_checkin_history(f->b, NULL, f->now, &v, &n));
    assert_int_equal(n, 5);
    assert_int_equal(v[2].partner_state, DUET_CHECKIN_SEALED); /* B never answered week 2 */
    duet_checkin_views_free(v, n);

    /* The chart: one panel per scale question, gaps where an answer is missing. */
    int64_t days[5];
    uint8_t me[5] = {1, 2, 3, 4, 0}, partner[5] = {5, 4, 0, 2, 0};
    for (int i = 0; i < 5; i++) {
        days[i] = 20787 + 7 * i;
    }
    duet_checkin_series_t s = {"How close did you feel <to me> & \"why\"?", 5, days, me, partner};
    duet_checkin_chart_t c = {"weekly check-in", "river & co", "stone <3", 1, &s};
    char *svg;
    size_t len;
    OK(duet_checkin_svg(&c, &svg, &len));
    assert_int_equal(strlen(svg), len);
    assert_true(xml_well_formed(svg));
    assert_non_null(strstr(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert_non_null(strstr(svg, "river &amp; co"));
    assert_non_null(strstr(svg, "stone &lt;3"));
    assert_non_null(strstr(svg, "&lt;to me&gt; &amp; &quot;why&quot;?"));
    assert_non_null(strstr(svg, "2026-11-30"));
    assert_non_null(strstr(svg, "2026-12-28"));
    assert_null(strstr(svg, "<to me>"));
    /* me: one line through weeks 0-3; partner: weeks 0-1, then a lone dot at week 3. */
    size_t polylines = 0, circles = 0;
    for (const char *p = svg; (p = strstr(p, "<polyline")) != NULL; p++) {
        polylines++;
    }
    for (const char *p = svg; (p = strstr(p, "<circle")) != NULL; p++) {
        circles++;
    }
    assert_int_equal(polylines, 2);
    assert_int_equal(circles, 4 + 3);
    free(svg);
    /* No points: it says so, still well formed. */
    duet_checkin_chart_t empty = {"nothing", NULL, NULL, 0, NULL};
    OK(duet_checkin_svg(&empty, &svg, &len));
    assert_true(xml_well_formed(svg));
    assert_non_null(strstr(svg, "No answers on a scale yet."));
    free(svg);
    me[0] = 6;
    assert_int_equal(duet_checkin_svg(&c, &svg, &len), DUET_EINVAL);
    assert_false(xml_well_formed("<a><b></a></b>"));
    assert_false(xml_well_formed("<a>&</a>"));
}

/* ---- malformed bodies ----------------------------------------------------------------- */

static void test_malformed(void **state)
{
    fx_t *f = fx_new("UTC", 1200);
    *state = f;
    uint8_t id[ID];
    memset(id, 1, sizeof id);
    static const uint8_t junk[][8] = {
        {0xc1}, {0x80}, {0x81, 0x01, 0xc0}, {0x92, 0x01, 0x02}, {0x81, 0x09, 0x01}};
    static const uint32_t kinds[] = {DUET_KIND_RITUAL, DUET_KIND_ANSWER, DUET_KIND_REVEAL,
                                     DUET_KIND_AGREEMENT};
    for (size_t k = 0; k < 4; k++) {
        for (size_t j = 0; j < sizeof junk / sizeof junk[0]; j++) {
            size_t len = j == 0 || j == 1 ? 1 : 3;
            OK(duet_store_begin(f->a));
            assert_int_equal(duet_checkin_receive(f->a, kinds[k], id, 1, junk[j], len, f->now),
                             DUET_EDECODE);
            duet_store_rollback(f->a);
        }
    }
    duet_checkin_line_t line;
    duet_checkin_pause_t p;
    const char *t;
    size_t tl;
    assert_int_equal(duet_checkin_line_decode(junk[2], 3, &line), DUET_EDECODE);
    assert_int_equal(duet_checkin_pause_decode(junk[4], 3, &p), DUET_EDECODE);
    assert_int_equal(duet_checkin_milestone_decode(junk[2], 3, &t, &tl), DUET_EDECODE);
    OK(duet_checkin_pause_decode((const uint8_t *)"\x80", 1, &p));
    assert_false(p.has_until);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_templates_and_dates),
        cmocka_unit_test_teardown(test_full_flow, teardown),
        cmocka_unit_test_teardown(test_every_order, teardown),
        cmocka_unit_test_teardown(test_impatient_partner, teardown),
        cmocka_unit_test_teardown(test_commitment_binds, teardown),
        cmocka_unit_test_teardown(test_early_key_waits_for_me, teardown),
        cmocka_unit_test_teardown(test_open_ritual, teardown),
        cmocka_unit_test_teardown(test_answer_checks, teardown),
        cmocka_unit_test_teardown(test_dst_berlin, teardown),
        cmocka_unit_test_teardown(test_dst_new_york, teardown),
        cmocka_unit_test_teardown(test_due_on_late_accept, teardown),
        cmocka_unit_test_teardown(test_agreements, teardown),
        cmocka_unit_test_teardown(test_pause_and_milestones, teardown),
        cmocka_unit_test_teardown(test_history_and_chart, teardown),
        cmocka_unit_test_teardown(test_malformed, teardown),
    };
    if (sodium_init() < 0) {
        return 1;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
