/*
 * Store benchmark (make bench): sealed note inserts through duet's store against raw SQLite
 * inserts of rows of the same size, same schema, same pragmas (WAL, synchronous=FULL), same
 * commit batching, measured in the same run; then `inbox --limit 50` on a store of N items.
 *   bench_store [NOTES=100000] [INBOX_ITEMS=1000000] [DUET_BINARY]
 * Targets (issue 3): ratio <= 2; inbox --limit 50 on 1,000,000 items <= 50 ms.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "benchutil.h"
#include "identity.h"
#include "items.h"
#include "store.h"
#include "sysrng.h"

#define BATCH 1000

static double raw_sqlite(const char *dir, size_t n, size_t row_bytes)
{
    char path[4200];
    sqlite3 *db;
    snprintf(path, sizeof path, "%s/raw.db", dir);
    if (sqlite3_open(path, &db) != SQLITE_OK) {
        abort();
    }
    sqlite3_exec(db,
                 "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                 "CREATE TABLE items (n INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE,"
                 " kind INTEGER NOT NULL, mine INTEGER NOT NULL, hlc INTEGER NOT NULL,"
                 " status INTEGER NOT NULL, body BLOB NOT NULL, seq INTEGER);"
                 "CREATE INDEX items_order ON items (hlc, id);",
                 NULL, NULL, NULL);
    sqlite3_stmt *s;
    sqlite3_prepare_v2(db,
                       "INSERT INTO items (id, kind, mine, hlc, status, body) "
                       "VALUES (?1, 1, 1, ?2, 0, ?3)",
                       -1, &s, NULL);
    uint8_t *body = malloc(row_bytes);
    randombytes_buf(body, row_bytes);
    double t0 = bench_now();
    for (size_t i = 0; i < n; i++) {
        if (i % BATCH == 0) {
            sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        }
        uint8_t id[16];
        randombytes_buf(id, sizeof id);
        sqlite3_bind_blob(s, 1, id, 16, SQLITE_TRANSIENT);
        sqlite3_bind_int64(s, 2, (sqlite3_int64)((1764150000000ull + i) << 16));
        sqlite3_bind_blob(s, 3, body, (int)row_bytes, SQLITE_STATIC);
        if (sqlite3_step(s) != SQLITE_DONE) {
            abort();
        }
        sqlite3_reset(s);
        if (i % BATCH == BATCH - 1 || i == n - 1) {
            sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        }
    }
    double t = bench_now() - t0;
    sqlite3_finalize(s);
    sqlite3_close(db);
    free(body);
    return t;
}

static duet_store_t *new_store(const char *dir, const char *name)
{
    char home[4200];
    duet_store_t *st;
    duet_store_opts_t o = {.rng = duet_sysrng()};
    duet_identity_t id;
    snprintf(home, sizeof home, "%s/%s", dir, name);
    if (duet_store_create(home, &o, &st) != DUET_OK || duet_store_begin(st) != DUET_OK ||
        duet_identity_create(st, "bench", &id) != DUET_OK || duet_store_commit(st) != DUET_OK) {
        abort();
    }
    duet_identity_dispose(&id);
    return st;
}

static double duet_inserts(duet_store_t *st, size_t n, const uint8_t *body, size_t len)
{
    double t0 = bench_now();
    for (size_t i = 0; i < n; i++) {
        duet_item_t it;
        if (i % BATCH == 0 && duet_store_begin(st) != DUET_OK) {
            abort();
        }
        if (duet_items_add(st, DUET_KIND_NOTE, body, len, 1764150000000ull + i, &it) !=
            DUET_OK) {
            abort();
        }
        if ((i % BATCH == BATCH - 1 || i == n - 1) && duet_store_commit(st) != DUET_OK) {
            abort();
        }
    }
    return bench_now() - t0;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    size_t notes = argc > 1 ? strtoull(argv[1], NULL, 10) : 100000;
    size_t big = argc > 2 ? strtoull(argv[2], NULL, 10) : 1000000;
    const char *duet_bin = argc > 3 ? argv[3] : NULL;
    if (sodium_init() < 0) {
        return 1;
    }
    char *dir = bench_tmpdir();
    char text[101];
    memset(text, 'n', 100);
    text[100] = 0;
    uint8_t *body;
    size_t blen;
    if (duet_note_encode(text, 100, &body, &blen) != DUET_OK) {
        return 1;
    }

    duet_store_t *st = new_store(dir, "notes");
    double td = duet_inserts(st, notes, body, blen);
    duet_store_close(st);
    /* The raw rows are as long as the sealed ones: the same bytes go to disk. */
    double tr = raw_sqlite(dir, notes, blen + DUET_STORE_SEAL_OVERHEAD);
    bench_report("store", "raw sqlite inserts (100-byte notes)", (double)notes / tr, "rows/s");
    bench_report("store", "duet sealed note inserts", (double)notes / td, "notes/s");
    bench_report("store", "ratio duet/raw time (target <= 2)", td / tr, "x");

    if (big > 0) {
        st = new_store(dir, "big");
        double tb = duet_inserts(st, big, body, blen);
        bench_report("store", "building the large store", (double)big / tb, "notes/s");
        double lat[21];
        for (int k = 0; k < 21; k++) {
            duet_item_t *v;
            size_t n;
            double t0 = bench_now();
            if (duet_items_list(st, 50, &v, &n) != DUET_OK || n != 50) {
                abort();
            }
            lat[k] = bench_now() - t0;
            duet_items_free(v, n);
        }
        qsort(lat, 21, sizeof lat[0], cmp_d);
        duet_store_close(st);
        char label[96];
        snprintf(label, sizeof label, "inbox list 50 of %zu items, in-process p50", big);
        bench_report("store", label, lat[10] * 1e3, "ms");
        if (duet_bin != NULL) {
            char home[4200];
            snprintf(home, sizeof home, "%s/big", dir);
            for (int k = 0; k < 11; k++) {
                double t0 = bench_now();
                pid_t pid = fork();
                if (pid == 0) {
                    if (freopen("/dev/null", "w", stdout) == NULL) {
                        _exit(127);
                    }
                    execl(duet_bin, duet_bin, "--home", home, "--json", "inbox", "--limit", "50",
                          "--peek", (char *)NULL);
                    _exit(127);
                }
                int status;
                waitpid(pid, &status, 0);
                lat[k] = bench_now() - t0;
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                    fprintf(stderr, "bench: duet inbox failed\n");
                    return 1;
                }
            }
            qsort(lat, 11, sizeof lat[0], cmp_d);
            snprintf(label, sizeof label, "duet inbox --limit 50 on %zu items (process) p50", big);
            bench_report("store", label, lat[5] * 1e3, "ms");
        }
    }
    free(body);
    bench_rmrf(dir);
    free(dir);
    return 0;
}
