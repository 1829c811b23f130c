/*
 * The store: creation and opening, passphrases, migrations, refusal of newer schemas,
 * damaged and locked databases, and sealing at rest (a marker written in a note must not
 * appear in any file of the home, and a sealed row cannot be moved to another row).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>
#include <sqlite3.h>

#include "identity.h"
#include "items.h"
#include "store.h"
#include "testrng.h"
#include "testutil.h"

typedef struct fixture {
    char *dir;
    char home[4096];
    duet_testrng_t trng;
    duet_store_opts_t opts;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    f->dir = duet_test_tmpdir();
    duet_test_path(f->home, sizeof f->home, f->dir, "home");
    f->opts.rng = duet_testrng_init(&f->trng, 42);
    f->opts.busy_timeout_ms = 200;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    duet_test_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* Add a note with text to st in its own transaction. */
static void add_note(duet_store_t *st, const char *text, duet_item_t *out)
{
    uint8_t *body;
    size_t len;
    duet_item_t it;
    assert_int_equal(duet_note_encode(text, strlen(text), &body, &len), DUET_OK);
    assert_int_equal(duet_store_begin(st), DUET_OK);
    assert_int_equal(duet_items_add(st, DUET_KIND_NOTE, body, len, 1764150000000u, &it),
                     DUET_OK);
    assert_int_equal(duet_store_commit(st), DUET_OK);
    free(body);
    if (out) {
        *out = it;
    }
}

static size_t count_items(duet_store_t *st)
{
    duet_item_t *v;
    size_t n;
    assert_int_equal(duet_items_list(st, 0, &v, &n), DUET_OK);
    duet_items_free(v, n);
    return n;
}

static void test_create_open(void **state)
{
    fixture_t *f = *state;
    duet_store_t *st;
    assert_int_equal(duet_store_open(f->home, &f->opts, &st), DUET_ENOTINIT);
    assert_null(st);
    assert_int_equal(duet_store_create(f->home, &f->opts, &st), DUET_OK);
    duet_identity_t id;
    assert_int_equal(duet_store_begin(st), DUET_OK);
    assert_int_equal(duet_identity_create(st, "river", &id), DUET_OK);
    assert_int_equal(duet_store_commit(st), DUET_OK);
    add_note(st, "hello", NULL);
    duet_store_close(st);

    /* A second create changes nothing. */
    assert_int_equal(duet_store_create(f->home, &f->opts, &st), DUET_EALREADYINIT);
    assert_int_equal(duet_store_open(f->home, &f->opts, &st), DUET_OK);
    assert_int_equal(count_items(st), 1);
    duet_identity_t again;
    assert_int_equal(duet_identity_load(st, &again), DUET_OK);
    assert_memory_equal(again.pk, id.pk, 32);
    assert_string_equal(again.name, "river");
    assert_int_equal(duet_identity_create(st, "other", &id), DUET_EALREADYINIT);
    duet_identity_dispose(&again);
    duet_identity_dispose(&id);
    duet_store_close(st);

    /* The home is the user's alone. */
    struct stat sb;
    char p[4200];
    assert_int_equal(stat(f->home, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    duet_test_path(p, sizeof p, f->home, "store.key");
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    duet_test_path(p, sizeof p, f->home, "duet.db");
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mode & 0077, 0);
}

/* Every file of the home, concatenated. */
static uint8_t *home_bytes(const char *home, size_t *len)
{
    static const char *const names[] = {"duet.db", "duet.db-wal", "store.key"};
    uint8_t *all = NULL;
    *len = 0;
    for (size_t i = 0; i < 3; i++) {
        char p[4200];
        size_t n;
        duet_test_path(p, sizeof p, home, names[i]);
        uint8_t *b = duet_test_slurp(p, &n);
        if (b == NULL) {
            continue;
        }
        all = realloc(all, *len + n + 1);
        memcpy(all + *len, b, n);
        *len += n;
        free(b);
    }
    return all;
}

static void test_sealed_at_rest(void **state)
{
    fixture_t *f = *state;
    duet_store_t *st;
    const char *marker = "sealed-marker-8f3a1c";
    assert_int_equal(duet_store_create(f->home, &f->opts, &st), DUET_OK);
    duet_identity_t id;
    assert_int_equal(duet_store_begin(st), DUET_OK);
    assert_int_equal(duet_identity_create(st, "harbor-name-marker", &id), DUET_OK);
    assert_int_equal(duet_store_commit(st), DUET_OK);
    duet_item_t a, b;
    add_note(st, marker, &a);
    add_note(st, "second", &b);

    /* Neither the note, the name nor the secret key is readable in the raw pages. */
    size_t len;
    uint8_t *raw = home_bytes(f->home, &len);
    assert_true(len > 4096);
    assert_false(duet_test_contains(raw, len, marker, strlen(marker)));
    assert_false(duet_test_contains(raw, len, "harbor-name-marker", 18));
    assert_false(duet_test_contains(raw, len, id.sk, 32));
    free(raw);

    /* The sealed body reads back; moved to another row it does not open. */
    duet_item_t got;
    assert_int_equal(duet_items_get(st, a.id, &got), DUET_OK);
    const char *text;
    size_t tlen;
    assert_int_equal(duet_note_decode(got.body, got.body_len, &text, &tlen), DUET_OK);
    assert_int_equal(tlen, strlen(marker));
    assert_memory_equal(text, marker, tlen);
    duet_item_clear(&got);
    sqlite3 *db = duet_store_db(st);
    assert_int_equal(sqlite3_exec(db,
                                  "UPDATE items SET body = (SELECT body FROM items "
                                  "ORDER BY n LIMIT 1) WHERE n = (SELECT max(n) FROM items)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(duet_items_get(st, b.id, &got), DUET_ECORRUPT);
    /* One flipped bit in a sealed body is caught too. */
    assert_int_equal(sqlite3_exec(db,
                                  "UPDATE items SET body = "
                                  "substr(body, 1, 30) || x'ff' || substr(body, 32) WHERE n = 1",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(duet_items_get(st, a.id, &got), DUET_ECORRUPT);
    duet_identity_dispose(&id);
    duet_store_close(st);
}

static void test_passphrase(void **state)
{
    fixture_t *f = *state;
    duet_store_t *st;
    duet_store_opts_t o = f->opts;
    o.passphrase = (const uint8_t *)"correct horse";
    o.passphrase_len = 13;
    assert_int_equal(duet_store_create(f->home, &o, &st), DUET_OK);
    add_note(st, "behind a passphrase", NULL);
    duet_store_close(st);
    assert_true(duet_store_has_passphrase(f->home));

    assert_int_equal(duet_store_open(f->home, &f->opts, &st), DUET_ENEEDPASS);
    duet_store_opts_t wrong = o;
    wrong.passphrase = (const uint8_t *)"correct horsf";
    assert_int_equal(duet_store_open(f->home, &wrong, &st), DUET_EPASSPHRASE);
    assert_null(st);
    assert_int_equal(duet_store_open(f->home, &o, &st), DUET_OK);
    assert_int_equal(count_items(st), 1);
    duet_store_close(st);

    /* A key file whose header (limits, salt) was altered does not unwrap. */
    char p[4200];
    size_t n;
    duet_test_path(p, sizeof p, f->home, "store.key");
    uint8_t *kf = duet_test_slurp(p, &n);
    kf[40] ^= 1; /* a salt byte */
    duet_test_write(p, kf, n);
    assert_int_equal(duet_store_open(f->home, &o, &st), DUET_EPASSPHRASE);
    free(kf);
}

static void test_migration(void **state)
{
    fixture_t *f = *state;
    duet_store_t *st;
    assert_true(duet_store_schema_latest() >= 2);
    assert_int_equal(duet_store_create_at_version(f->home, &f->opts, 1, &st), DUET_OK);
    assert_int_equal(duet_store_schema_version(st), 1);
    duet_identity_t id;
    assert_int_equal(duet_store_begin(st), DUET_OK);
    assert_int_equal(duet_identity_create(st, "river", &id), DUET_OK);
    assert_int_equal(duet_store_commit(st), DUET_OK);
    /* A version-1 item, written with version-1 columns only. */
    add_note(st, "from version one", NULL);
    duet_store_close(st);

    assert_int_equal(duet_store_open(f->home, &f->opts, &st), DUET_OK);
    assert_int_equal(duet_store_schema_version(st), duet_store_schema_latest());
    assert_int_equal(count_items(st), 1);
    duet_identity_t again;
    assert_int_equal(duet_identity_load(st, &again), DUET_OK);
    assert_memory_equal(again.pk, id.pk, 32);
    duet_identity_dispose(&again);
    duet_identity_dispose(&id);
    duet_store_close(st);
}

static void test_newer_schema_refused(void **state)
{
    fixture_t *f = *state;
    duet_store_t *st;
    assert_int_equal(duet_store_create(f->home, &f->opts, &st), DUET_OK);
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", duet_store_schema_latest() + 1);
    assert_int_equal(duet_store_exec(st, sql), DUET_OK);
    duet_store_close(st);
    assert_int_equal(duet_store_open(f->home, &f->opts, &st), DUET_ESCHEMANEW);
    /* Not downgraded: the version is what the newer duet wrote. */
    char p[4200];
    duet_test_path(p, sizeof p, f->home, "duet.db");
    sqlite3 *db;
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(s, 0), duet_store_schema_latest() + 1);
    sqlite3_finalize(s);
    sqlite3_close(db);
}

static void test_garbage_and_truncated(void **state)
{
    fixture_t *f = *state;
    duet_store_t *st;
    char p[4200];
    assert_int_equal(duet_store_create(f->home, &f->opts, &st), DUET_OK);
    for (int i = 0; i < 300; i++) {
        char t[200];
        snprintf(t, sizeof t, "note %d with some padding to fill pages .............", i);
        add_note(st, t, NULL);
    }
    assert_int_equal(duet_store_exec(st, "PRAGMA wal_checkpoint(TRUNCATE)"), DUET_OK);
    duet_store_close(st);

    /* Truncated to half: opening or reading reports damage, nothing crashes. */
    duet_test_path(p, sizeof p, f->home, "duet.db");
    size_t n;
    uint8_t *db = duet_test_slurp(p, &n);
    assert_true(n > 8192);
    duet_test_write(p, db, n / 2);
    duet_err_t err = duet_store_open(f->home, &f->opts, &st);
    if (err == DUET_OK) {
        duet_item_t *v;
        size_t cnt;
        err = duet_items_list(st, 0, &v, &cnt);
        duet_store_close(st);
    }
    assert_int_equal(err, DUET_ECORRUPT);

    /* Garbage: not a database at all. */
    memset(db, 0xa5, n);
    duet_test_write(p, db, n);
    assert_int_equal(duet_store_open(f->home, &f->opts, &st), DUET_ECORRUPT);
    /* A damaged key file. */
    duet_test_path(p, sizeof p, f->home, "store.key");
    duet_test_write(p, "DUETKEY", 7);
    assert_int_equal(duet_store_open(f->home, &f->opts, &st), DUET_ECORRUPT);
    free(db);
}

static void test_locked(void **state)
{
    fixture_t *f = *state;
    duet_store_t *a, *b;
    assert_int_equal(duet_store_create(f->home, &f->opts, &a), DUET_OK);
    add_note(a, "before the lock", NULL);
    assert_int_equal(duet_store_begin(a), DUET_OK); /* a holds the write lock */
    assert_int_equal(duet_store_open(f->home, &f->opts, &b), DUET_OK);
    assert_int_equal(duet_store_begin(b), DUET_ELOCKED); /* after the 200 ms busy timeout */
    assert_int_equal(count_items(b), 1);                 /* readers still read */
    duet_store_rollback(a);
    assert_int_equal(duet_store_begin(b), DUET_OK);
    duet_store_rollback(b);
    duet_store_close(b);
    duet_store_close(a);
}

/*
 * The inbox reads what it shows: on a store of many items, listing the newest 50 walks the
 * order index backwards and stops, with no sort of the whole table (a plan that sorted took
 * 0.6 s on a million items, after the check-in index on kind made the planner prefer it).
 */
static void test_inbox_reads_what_it_shows(void **state)
{
    fixture_t *f = *state;
    duet_store_t *st;
    assert_int_equal(duet_store_create(f->home, &f->opts, &st), DUET_OK);
    uint8_t *body;
    size_t len;
    assert_int_equal(duet_note_encode("a day", 5, &body, &len), DUET_OK);
    assert_int_equal(duet_store_begin(st), DUET_OK);
    for (int i = 0; i < 3000; i++) {
        duet_item_t it;
        assert_int_equal(
            duet_items_add(st, DUET_KIND_NOTE, body, len, 1764150000000u + (uint64_t)i, &it),
            DUET_OK);
        duet_item_clear(&it);
    }
    assert_int_equal(duet_store_commit(st), DUET_OK);
    free(body);
    duet_item_t *v;
    size_t n;
    assert_int_equal(duet_items_list(st, 50, &v, &n), DUET_OK);
    assert_int_equal(n, 50);
    assert_true(v[0].hlc < v[49].hlc); /* oldest first, the newest last */
    duet_items_free(v, n);
    sqlite3_stmt *s = NULL;
    while ((s = sqlite3_next_stmt(duet_store_db(st), s)) != NULL) {
        if (strstr(sqlite3_sql(s), "ORDER BY hlc DESC") != NULL) {
            break;
        }
    }
    assert_non_null(s);
    assert_int_equal(sqlite3_stmt_status(s, SQLITE_STMTSTATUS_SORT, 0), 0);
    assert_true(sqlite3_stmt_status(s, SQLITE_STMTSTATUS_VM_STEP, 0) < 3000);
    duet_store_close(st);
}

/*
 * Deferred checkpoints (the daemon): commits past SQLite's 1000-page mark do not checkpoint,
 * the log's size is reported, and one checkpoint takes it all, after which the log starts
 * again from its beginning.
 */
static void test_deferred_checkpoints(void **state)
{
    fixture_t *f = *state;
    duet_store_t *st;
    assert_int_equal(duet_store_create(f->home, &f->opts, &st), DUET_OK);
    duet_store_defer_checkpoints(st);
    for (int i = 0; i < 2000 && duet_store_wal_pages(st) < DUET_STORE_CHECKPOINT_PAGES + 50;
         i++) {
        add_note(st, "a line of the day, long enough to take some room on its page", NULL);
    }
    assert_true(duet_store_wal_pages(st) >= DUET_STORE_CHECKPOINT_PAGES + 50);
    assert_int_equal(duet_store_checkpoint(st), DUET_OK);
    assert_int_equal(duet_store_wal_pages(st), 0);
    add_note(st, "after the checkpoint", NULL);
    assert_true(duet_store_wal_pages(st) > 0);
    assert_true(duet_store_wal_pages(st) < 20); /* the log restarted */
    assert_true(count_items(st) > 100);
    duet_store_close(st);
}

static void test_secrets_and_meta(void **state)
{
    fixture_t *f = *state;
    duet_store_t *st;
    assert_int_equal(duet_store_create(f->home, &f->opts, &st), DUET_OK);
    uint8_t *v;
    size_t n;
    assert_int_equal(duet_store_secret_get(st, "ratchet", &v, &n), DUET_ENOENT);
    assert_int_equal(duet_store_secret_put(st, "ratchet", (const uint8_t *)"state", 5), DUET_OK);
    assert_int_equal(duet_store_secret_get(st, "ratchet", &v, &n), DUET_OK);
    assert_int_equal(n, 5);
    assert_memory_equal(v, "state", 5);
    free(v);
    /* A secret sealed under one name does not open under another. */
    assert_int_equal(sqlite3_exec(duet_store_db(st),
                                  "INSERT INTO secrets SELECT 'other', sealed FROM secrets "
                                  "WHERE name = 'ratchet'",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(duet_store_secret_get(st, "other", &v, &n), DUET_ECORRUPT);
    assert_int_equal(duet_store_secret_del(st, "ratchet"), DUET_OK);
    assert_int_equal(duet_store_secret_get(st, "ratchet", &v, &n), DUET_ENOENT);
    uint64_t u;
    assert_int_equal(duet_store_meta_get_u64(st, "x", 7, &u), DUET_OK);
    assert_int_equal(u, 7);
    assert_int_equal(duet_store_meta_set_u64(st, "x", 1ull << 40), DUET_OK);
    assert_int_equal(duet_store_meta_get_u64(st, "x", 7, &u), DUET_OK);
    assert_int_equal(u, 1ull << 40);
    duet_store_close(st);
}

int main(void)
{
    if (sodium_init() < 0) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sealed_at_rest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_passphrase, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_and_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_locked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secrets_and_meta, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inbox_reads_what_it_shows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deferred_checkpoints, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
