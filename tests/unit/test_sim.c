/*
 * The sync simulation: two real stores (SQLite on disk, sealed, with the real ratchet),
 * paired in memory, each with a sync engine, wired by two frame queues. A seeded scheduler
 * interleaves sending, delivering, committing, writing notes, reading the inbox (read
 * receipts), and injects faults: frames lost, duplicated or reordered, disconnects, and
 * crashes (the engine dropped and the store reopened from disk, losing whatever was not
 * committed) at any step. Then the network heals, and the invariants must hold:
 *
 *   - every note written on one side is on the other exactly once;
 *   - both devices show the same conversation in the same order;
 *   - every own note ends delivered (or read); both outboxes are empty;
 *   - the ratchets still agree (one more note each way goes through).
 *
 *   test_sim                       seeds 1..DUET_SIM_COUNT (default 1000)
 *   test_sim --first N --count M   seeds N..N+M-1 (make soak runs millions)
 *   test_sim --seed S [--verbose]  one seed, to reproduce a failure
 * A failing seed prints one line with the command that reproduces it.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "items.h"
#include "outbox.h"
#include "store.h"
#include "sync.h"
#include "testpair.h"
#include "testrng.h"
#include "testutil.h"

#define QMAX 4096
#define MAX_NOTES 24
#define STEPS 400

typedef struct frameq {
    uint8_t *data[QMAX];
    size_t len[QMAX];
    size_t n;
} frameq_t;

typedef struct side {
    char home[4200];
    duet_store_t *st;
    duet_outbox_host_t host;
    bool host_live;
    duet_sync_t *eng;
    uint8_t written[MAX_NOTES + 8][DUET_ITEM_ID_BYTES];
    size_t nwritten;
    duet_testrng_t trng;
    uint64_t restarts;
} side_t;

typedef struct sim {
    uint64_t seed;
    bool verbose;
    char *dir;
    side_t s[2];
    frameq_t q[2]; /* q[i]: frames from side i to side 1-i */
    duet_testrng_t sched;
    uint64_t now;
    bool connected;
    char why[512];
} sim_t;

static uint64_t sim_now(void *ctx)
{
    return ((sim_t *)ctx)->now;
}

static void trace(sim_t *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void trace(sim_t *m, const char *fmt, ...)
{
    if (!m->verbose) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static bool failf(sim_t *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool failf(sim_t *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->why, sizeof m->why, fmt, ap);
    va_end(ap);
    return false;
}

static uint32_t pick(sim_t *m, uint32_t n)
{
    return duet_testrng_uniform(&m->sched, n);
}

static void q_clear(frameq_t *q)
{
    for (size_t i = 0; i < q->n; i++) {
        free(q->data[i]);
    }
    q->n = 0;
}

static void q_push(frameq_t *q, const uint8_t *f, size_t len)
{
    if (q->n == QMAX) {
        abort();
    }
    q->data[q->n] = malloc(len);
    memcpy(q->data[q->n], f, len);
    q->len[q->n] = len;
    q->n++;
}

static void q_pop(frameq_t *q, uint8_t **f, size_t *len)
{
    *f = q->data[0];
    *len = q->len[0];
    memmove(q->data, q->data + 1, (q->n - 1) * sizeof q->data[0]);
    memmove(q->len, q->len + 1, (q->n - 1) * sizeof q->len[0]);
    q->n--;
}

static bool host_up(sim_t *m, int i)
{
    side_t *s = &m->s[i];
    if (!s->host_live) {
        duet_err_t e = duet_outbox_host_init(&s->host, s->st, sim_now, m, NULL, NULL);
        if (e != DUET_OK) {
            return failf(m, "host_init side %d: %s", i, duet_err_name(e));
        }
        s->host_live = true;
    }
    return true;
}

static void disconnect(sim_t *m)
{
    for (int i = 0; i < 2; i++) {
        duet_sync_free(m->s[i].eng); /* aborts an open batch: uncommitted is lost */
        m->s[i].eng = NULL;
        q_clear(&m->q[i]);
    }
    m->connected = false;
}

static bool connect_(sim_t *m)
{
    disconnect(m);
    for (int i = 0; i < 2; i++) {
        if (!host_up(m, i)) {
            return false;
        }
        duet_sync_host_t h = duet_outbox_sync_host(&m->s[i].host);
        m->s[i].eng = duet_sync_new(&h);
        if (m->s[i].eng == NULL || duet_sync_start(m->s[i].eng) != DUET_OK) {
            return failf(m, "engine start on side %d", i);
        }
    }
    m->connected = true;
    return true;
}

static bool crash(sim_t *m, int i)
{
    side_t *s = &m->s[i];
    disconnect(m);
    duet_outbox_host_dispose(&s->host);
    s->host_live = false;
    duet_store_close(s->st);
    /* A fresh stream per restart, as a real process would draw fresh randomness. */
    s->restarts++;
    duet_store_opts_t o = {
        .rng = duet_testrng_init(&s->trng, m->seed * 7919 + (uint64_t)i * 131 + s->restarts)};
    duet_err_t e = duet_store_open(s->home, &o, &s->st);
    if (e != DUET_OK) {
        return failf(m, "reopen after crash on side %d: %s", i, duet_err_name(e));
    }
    return host_up(m, i);
}

/* The CLI would write from another process; here the side's engine first commits what it
 * holds, as the daemon would before the busy writer gets the lock. */
static bool settle(sim_t *m, int i)
{
    if (m->s[i].eng != NULL && duet_sync_batch_open(m->s[i].eng)) {
        if (duet_sync_flush(m->s[i].eng) != DUET_OK) {
            disconnect(m);
        }
    }
    return true;
}

static bool write_note(sim_t *m, int i)
{
    side_t *s = &m->s[i];
    char text[64];
    uint8_t *body;
    size_t len;
    if (s->nwritten >= MAX_NOTES + 8) {
        return true;
    }
    settle(m, i);
    snprintf(text, sizeof text, "note %zu from side %d", s->nwritten, i);
    if (duet_note_encode(text, strlen(text), &body, &len) != DUET_OK) {
        return failf(m, "encode");
    }
    duet_err_t e = duet_store_begin(s->st);
    if (e == DUET_OK) {
        e = duet_outbox_queue(s->st, DUET_KIND_NOTE, body, len, m->now, s->written[s->nwritten]);
    }
    if (e == DUET_OK) {
        e = duet_store_commit(s->st);
    }
    free(body);
    if (e != DUET_OK) {
        duet_store_rollback(s->st);
        return failf(m, "write on side %d: %s", i, duet_err_name(e));
    }
    s->nwritten++;
    trace(m, "write side %d (#%zu)", i, s->nwritten);
    if (s->eng != NULL && duet_sync_kick(s->eng) != DUET_OK) {
        disconnect(m);
    }
    return true;
}

static bool read_inbox(sim_t *m, int i)
{
    duet_item_t *v;
    size_t n;
    settle(m, i);
    duet_err_t e = duet_items_list(m->s[i].st, 0, &v, &n);
    if (e == DUET_OK) {
        e = duet_inbox_mark_read(m->s[i].st, v, n, m->now);
        duet_items_free(v, n);
    }
    if (e != DUET_OK) {
        return failf(m, "read on side %d: %s", i, duet_err_name(e));
    }
    trace(m, "read side %d", i);
    if (m->s[i].eng != NULL && duet_sync_kick(m->s[i].eng) != DUET_OK) {
        disconnect(m);
    }
    return true;
}

/* Pull up to max frames from side i's engine into its queue. */
static size_t pull(sim_t *m, int i, size_t max)
{
    size_t k = 0;
    while (m->connected && k < max) {
        const uint8_t *f;
        size_t len;
        if (duet_sync_next_frame(m->s[i].eng, &f, &len) != DUET_OK) {
            disconnect(m);
            break;
        }
        if (len == 0) {
            break;
        }
        q_push(&m->q[i], f, len);
        k++;
        if (duet_sync_error(m->s[i].eng) != DUET_OK) {
            break; /* its ERROR frame is out; the link closes after it */
        }
    }
    return k;
}

/* Deliver the next frame of q[i] to side 1-i, perhaps lost, duplicated or reordered. */
static size_t deliver(sim_t *m, int i, bool faults)
{
    frameq_t *q = &m->q[i];
    if (!m->connected || q->n == 0) {
        return 0;
    }
    if (faults && q->n >= 2 && pick(m, 100) < 3) {
        uint8_t *t = q->data[0];
        size_t tl = q->len[0];
        q->data[0] = q->data[1];
        q->len[0] = q->len[1];
        q->data[1] = t;
        q->len[1] = tl;
        trace(m, "reorder %d", i);
    }
    uint8_t *f;
    size_t len;
    q_pop(q, &f, &len);
    int copies = 1;
    if (faults) {
        uint32_t r = pick(m, 100);
        copies = r < 3 ? 0 : r < 6 ? 2 : 1;
        if (copies != 1) {
            trace(m, "%s %d", copies ? "duplicate" : "lose", i);
        }
    }
    for (int c = 0; c < copies && m->connected; c++) {
        if (duet_sync_recv(m->s[1 - i].eng, f, len) != DUET_OK) {
            /* A fault broke the session (a lost HELLO, a duplicated one...): the link
             * would close after the ERROR frame; so do we. */
            trace(m, "side %d failed: %s", 1 - i, duet_err_name(duet_sync_error(m->s[1 - i].eng)));
            pull(m, 1 - i, 4);
            disconnect(m);
        }
    }
    free(f);
    return 1;
}

static bool flush(sim_t *m, int i)
{
    if (m->connected && duet_sync_flush(m->s[i].eng) != DUET_OK) {
        trace(m, "flush side %d failed", i);
        disconnect(m);
    }
    return true;
}

static bool step(sim_t *m)
{
    int i = (int)pick(m, 2);
    uint32_t r = pick(m, 1000);
    m->now += pick(m, 50);
    if (!m->connected) {
        if (r < 150) {
            return connect_(m);
        }
        if (r < 200) {
            return write_note(m, i);
        }
        if (r < 210) {
            return crash(m, i);
        }
        return true;
    }
    if (r < 300) {
        pull(m, i, 1 + pick(m, 3));
    } else if (r < 650) {
        deliver(m, i, true);
    } else if (r < 780) {
        flush(m, i);
    } else if (r < 880) {
        if (m->s[i].nwritten < MAX_NOTES) {
            return write_note(m, i);
        }
    } else if (r < 910) {
        return read_inbox(m, i);
    } else if (r < 930) {
        trace(m, "disconnect");
        disconnect(m);
    } else if (r < 950) {
        trace(m, "crash side %d", i);
        return crash(m, i);
    }
    return true;
}

/* No more faults: connect and pump until both engines are done. */
static bool heal(sim_t *m)
{
    for (int round = 0; round < 50; round++) {
        if (!m->connected && !connect_(m)) {
            return false;
        }
        for (int it = 0; it < 100000 && m->connected; it++) {
            size_t moved = 0;
            for (int i = 0; i < 2; i++) {
                moved += pull(m, i, QMAX / 2);
            }
            for (int i = 0; i < 2 && m->connected; i++) {
                while (m->connected && m->q[i].n > 0) {
                    moved += deliver(m, i, false);
                }
            }
            for (int i = 0; i < 2 && m->connected; i++) {
                flush(m, i);
            }
            if (m->connected && moved == 0) {
                if (duet_sync_done(m->s[0].eng) && duet_sync_done(m->s[1].eng)) {
                    return true;
                }
                for (int i = 0; i < 2; i++) {
                    uint64_t out = 0, wm = 0, above[4];
                    size_t na = 0;
                    if (duet_outbox_count(m->s[i].st, &out) != DUET_OK) {
                        out = 999999;
                    }
                    if (duet_outbox_recv_state(&m->s[i].host, &wm, above, 4, &na)) {
                        wm = 999999;
                    }
                    trace(m, "stuck: side %d done=%d err=%s outbox=%llu wm=%llu above=%zu", i,
                          duet_sync_done(m->s[i].eng),
                          duet_err_name(duet_sync_error(m->s[i].eng)),
                          (unsigned long long)out, (unsigned long long)wm, na);
                }
                break; /* stuck: reconnect */
            }
        }
        disconnect(m);
    }
    return failf(m, "did not converge after the network healed");
}

static bool check(sim_t *m)
{
    duet_item_t *v[2];
    size_t n[2];
    for (int i = 0; i < 2; i++) {
        duet_err_t e = duet_items_list(m->s[i].st, 0, &v[i], &n[i]);
        if (e != DUET_OK) {
            return failf(m, "list side %d: %s", i, duet_err_name(e));
        }
    }
    bool ok = true;
    if (n[0] != n[1] || n[0] != m->s[0].nwritten + m->s[1].nwritten) {
        ok = failf(m, "item counts: side 0 has %zu, side 1 has %zu, written %zu + %zu", n[0],
                   n[1], m->s[0].nwritten, m->s[1].nwritten);
    }
    for (size_t k = 0; ok && k < n[0]; k++) {
        if (memcmp(v[0][k].id, v[1][k].id, DUET_ITEM_ID_BYTES) != 0) {
            ok = failf(m, "conversation order differs at position %zu", k);
        }
    }
    for (int i = 0; ok && i < 2; i++) {
        size_t mine = 0;
        for (size_t k = 0; k < n[i]; k++) {
            if (v[i][k].mine) {
                mine++;
                if (v[i][k].status != DUET_STATUS_DELIVERED &&
                    v[i][k].status != DUET_STATUS_READ) {
                    ok = failf(m, "side %d: own item %zu is %s", i, k,
                               duet_status_name(v[i][k].status));
                    break;
                }
            }
        }
        if (ok && mine != m->s[i].nwritten) {
            ok = failf(m, "side %d holds %zu own items, wrote %zu", i, mine, m->s[i].nwritten);
        }
        /* Exactly once: each id written on i is on the other side once (ids are unique in
         * the store, so presence is enough). */
        for (size_t w = 0; ok && w < m->s[i].nwritten; w++) {
            size_t found = 0;
            for (size_t k = 0; k < n[1 - i]; k++) {
                found += !v[1 - i][k].mine &&
                         memcmp(v[1 - i][k].id, m->s[i].written[w], DUET_ITEM_ID_BYTES) == 0;
            }
            if (found != 1) {
                ok = failf(m, "note %zu of side %d is on the other side %zu times", w, i, found);
            }
        }
        uint64_t out;
        if (ok && (duet_outbox_count(m->s[i].st, &out) != DUET_OK || out != 0)) {
            ok = failf(m, "side %d outbox holds %llu", i, (unsigned long long)out);
        }
    }
    duet_items_free(v[0], n[0]);
    duet_items_free(v[1], n[1]);
    return ok;
}

static bool run(sim_t *m)
{
    m->dir = duet_test_tmpdir();
    duet_testrng_t prng;
    duet_rng_t pr = duet_testrng_init(&prng, m->seed ^ 0x5eed);
    duet_testrng_init(&m->sched, m->seed);
    m->now = 1764150000000ull;
    for (int i = 0; i < 2; i++) {
        duet_test_path(m->s[i].home, sizeof m->s[i].home, m->dir, i ? "b" : "a");
        duet_rng_t r = duet_testrng_init(&m->s[i].trng, m->seed * 7 + (uint64_t)i);
        m->s[i].st = duet_test_home(m->s[i].home, i ? "harbor" : "river", r);
    }
    /* Some notes before pairing: they are sealed when the pairing completes. */
    size_t early = pick(m, 3);
    for (size_t k = 0; k < early; k++) {
        if (!write_note(m, (int)pick(m, 2))) {
            return false;
        }
    }
    duet_test_pair(m->s[0].st, m->s[1].st, pr, m->now);
    bool ok = true;
    for (int k = 0; ok && k < STEPS; k++) {
        ok = step(m);
    }
    ok = ok && heal(m);
    ok = ok && check(m);
    /* The ratchets still agree: one more note each way. */
    if (ok) {
        ok = write_note(m, 0) && write_note(m, 1) && (disconnect(m), heal(m)) && check(m);
    }
    disconnect(m);
    for (int i = 0; i < 2; i++) {
        if (m->s[i].host_live) {
            duet_outbox_host_dispose(&m->s[i].host);
        }
        duet_store_close(m->s[i].st);
    }
    duet_test_rmrf(m->dir);
    free(m->dir);
    return ok;
}

int main(int argc, char **argv)
{
    uint64_t first = 1, count = 0;
    bool verbose = false;
    const char *env = getenv("DUET_SIM_COUNT");
    count = env ? strtoull(env, NULL, 10) : 1000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            first = strtoull(argv[++i], NULL, 10);
            count = 1;
        } else if (strcmp(argv[i], "--first") == 0 && i + 1 < argc) {
            first = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc) {
            count = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--verbose") == 0) {
            verbose = true;
        } else {
            fprintf(stderr, "usage: test_sim [--seed S | --first N --count M] [--verbose]\n");
            return 2;
        }
    }
    if (sodium_init() < 0) {
        return 1;
    }
    /* The simulation commits thousands of times: keep its stores on tmpfs when there is
     * one (fsync is free there; the durability logic under test is the same). */
    if (getenv("TMPDIR") == NULL && access("/dev/shm", W_OK) == 0) {
        setenv("TMPDIR", "/dev/shm", 1);
    }
    static sim_t m;
    unsigned failed = 0;
    for (uint64_t seed = first; seed < first + count; seed++) {
        memset(&m, 0, sizeof m);
        m.seed = seed;
        m.verbose = verbose;
        if (!run(&m)) {
            failed++;
            printf("sim: seed %llu failed: %s; reproduce: %s --seed %llu --verbose\n",
                   (unsigned long long)seed, m.why, argv[0], (unsigned long long)seed);
            fflush(stdout);
            if (failed >= 5) {
                break;
            }
        }
    }
    printf("sim: %llu seeds from %llu, %u failed\n", (unsigned long long)count,
           (unsigned long long)first, failed);
    return failed ? 1 : 0;
}
