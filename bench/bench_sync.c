/*
 * Sync benchmark (make bench): two devices as separate processes on loopback.
 *   bench_sync DUET_BINARY [NOTES=100000] [LATENCY_SAMPLES=200]
 *
 * 1. Throughput: NOTES 100-byte notes sealed in device A's outbox; B's daemon listens;
 *    `duet sync --connect` on A moves them all (timed from process start to exit, the
 *    handshake and B's durable commits included). Peak RSS of both processes.
 * 2. The floor, measured in the same run on the same bytes: the envelopes through raw
 *    XChaCha20-Poly1305 opens + raw SQLite inserts with the same commit batching (512 per
 *    transaction, WAL, synchronous=FULL) + raw loopback TCP. Ratio = duet time / floor.
 * 3. Latency with both daemons online: a note committed on A and the daemon nudged, until B's
 *    daemon prints the "received" event (its commit included); p50 and p99.
 * 4. Idle daemon RSS after three quiet seconds.
 * Targets (issue 5): >= 100,000 notes/s and <= 2.5x the floor; p99 <= 1 ms; peak RSS <= 64
 * MiB during the sync, <= 8 MiB idle.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "benchutil.h"
#include "control.h"
#include "items.h"
#include "outbox.h"
#include "partner.h"
#include "store.h"
#include "sysrng.h"
#include "testpair.h"

static const char *duet;
static char *dir;

static pid_t spawn(const char *home, char *const extra[], int out_fd)
{
    return bench_spawn_duet(duet, home, extra, out_fd);
}

/* Read lines from fd (a file the daemon appends to; a pipe could fill up and stall it)
 * until one contains needle, or timeout_ms passes. */
static int wait_line(int fd, const char *needle, int timeout_ms, char *carry, size_t *carry_len)
{
    double end = bench_now() + timeout_ms / 1000.0;
    for (;;) {
        char *nl;
        while ((nl = memchr(carry, '\n', *carry_len)) != NULL) {
            size_t len = (size_t)(nl - carry) + 1;
            int hit = memmem(carry, len, needle, strlen(needle)) != NULL;
            memmove(carry, carry + len, *carry_len - len);
            *carry_len -= len;
            if (hit) {
                return 0;
            }
        }
        int left = (int)((end - bench_now()) * 1000);
        if (left <= 0) {
            return -1;
        }
        ssize_t r = read(fd, carry + *carry_len, 65536 - *carry_len - 1);
        if (r < 0) {
            return -1;
        }
        if (r == 0) {
            usleep(100); /* at the end of the file: the daemon has not written more yet */
            continue;
        }
        *carry_len += (size_t)r;
    }
}

/* The floor: what any implementation must at least do with these bytes. */
static double floor_time(size_t n, size_t env_len)
{
    uint8_t key[32], nonce[24];
    randombytes_buf(key, sizeof key);
    randombytes_buf(nonce, sizeof nonce);
    size_t plen = env_len - 16;
    uint8_t *plain = calloc(1, plen), *ct = malloc(env_len), *out = malloc(plen);
    crypto_aead_xchacha20poly1305_ietf_encrypt(ct, NULL, plain, plen, NULL, 0, NULL, nonce, key);

    /* raw loopback TCP: n envelopes from one process to another */
    int sv[2];
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    bind(ls, (struct sockaddr *)&a, sizeof a);
    listen(ls, 1);
    getsockname(ls, (struct sockaddr *)&a, &al);
    double t0 = bench_now();
    pid_t pid = fork();
    if (pid == 0) {
        int c = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(c, (struct sockaddr *)&a, sizeof a) != 0) {
            _exit(1);
        }
        for (size_t i = 0; i < n; i++) {
            size_t off = 0;
            while (off < env_len) {
                ssize_t w = write(c, ct + off, env_len - off);
                if (w <= 0) {
                    _exit(1);
                }
                off += (size_t)w;
            }
        }
        close(c);
        _exit(0);
    }
    sv[0] = accept(ls, NULL, NULL);
    close(ls);

    char path[4200];
    sqlite3 *db;
    snprintf(path, sizeof path, "%s/floor.db", dir);
    sqlite3_open(path, &db);
    sqlite3_exec(db,
                 "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                 "CREATE TABLE items (n INTEGER PRIMARY KEY, id BLOB UNIQUE, hlc INTEGER, "
                 "body BLOB); CREATE INDEX o ON items (hlc, id);",
                 NULL, NULL, NULL);
    sqlite3_stmt *s;
    sqlite3_prepare_v2(db, "INSERT INTO items (id, hlc, body) VALUES (?1, ?2, ?3)", -1, &s, NULL);
    uint8_t *buf = malloc(env_len);
    for (size_t i = 0; i < n; i++) {
        size_t got = 0;
        while (got < env_len) {
            ssize_t r = read(sv[0], buf + got, env_len - got);
            if (r <= 0) {
                abort();
            }
            got += (size_t)r;
        }
        if (crypto_aead_xchacha20poly1305_ietf_decrypt(out, NULL, NULL, buf, env_len, NULL, 0,
                                                       nonce, key) != 0) {
            abort();
        }
        if (i % 512 == 0) {
            sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        }
        uint8_t id[16];
        randombytes_buf(id, sizeof id);
        sqlite3_bind_blob(s, 1, id, 16, SQLITE_TRANSIENT);
        sqlite3_bind_int64(s, 2, (sqlite3_int64)i);
        sqlite3_bind_blob(s, 3, out, 140, SQLITE_STATIC); /* a 100-byte note, sealed */
        sqlite3_step(s);
        sqlite3_reset(s);
        if (i % 512 == 511 || i == n - 1) {
            sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        }
    }
    double t = bench_now() - t0;
    waitpid(pid, NULL, 0);
    close(sv[0]);
    sqlite3_finalize(s);
    sqlite3_close(db);
    free(plain);
    free(ct);
    free(out);
    free(buf);
    return t;
}

static int cmp_d(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_sync DUET_BINARY [NOTES] [LATENCY_SAMPLES]\n");
        return 2;
    }
    duet = argv[1];
    size_t notes = argc > 2 ? strtoull(argv[2], NULL, 10) : 100000;
    int samples = argc > 3 ? atoi(argv[3]) : 200;
    if (sodium_init() < 0) {
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    dir = bench_tmpdir();
    char ha[4200], hb[4200];
    snprintf(ha, sizeof ha, "%s/a", dir);
    snprintf(hb, sizeof hb, "%s/b", dir);
    duet_rng_t rng = duet_sysrng();
    duet_store_t *a = duet_test_home(ha, "river", rng);
    duet_store_t *b = duet_test_home(hb, "harbor", rng);
    duet_test_pair(b, a, rng, 1764150000000ull);
    duet_store_close(b);

    char text[101];
    memset(text, 'n', 100);
    text[100] = 0;
    uint8_t *body;
    size_t blen;
    if (duet_note_encode(text, 100, &body, &blen) != DUET_OK) {
        return 1;
    }
    for (size_t i = 0; i < notes; i++) {
        if (i % 1000 == 0 && duet_store_begin(a) != DUET_OK) {
            return 1;
        }
        if (duet_outbox_queue(a, DUET_KIND_NOTE, body, blen, 1764150000000ull + i, NULL) !=
            DUET_OK) {
            return 1;
        }
        if ((i % 1000 == 999 || i == notes - 1) && duet_store_commit(a) != DUET_OK) {
            return 1;
        }
    }

    /* B's daemon. */
    int pb[2];
    char logb[4200];
    snprintf(logb, sizeof logb, "%s/daemon-b.log", dir);
    pb[1] = open(logb, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
    pb[0] = open(logb, O_RDONLY);
    if (pb[0] < 0 || pb[1] < 0) {
        return 1;
    }
    int port = bench_free_port();
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    char *dargs[] = {"daemon", "--listen", listen, "--no-lan", NULL};
    pid_t db = spawn(hb, dargs, pb[1]);
    char carry[65536];
    size_t carry_len = 0;
    if (wait_line(pb[0], "listening", 10000, carry, &carry_len) != 0) {
        fprintf(stderr, "bench_sync: daemon did not start\n");
        return 1;
    }

    /* 1. Throughput. */
    char *sargs[] = {"sync", "--connect", listen, "--timeout", "600", NULL};
    double t0 = bench_now();
    pid_t ps = spawn(ha, sargs, -1);
    int status;
    struct rusage ru;
    wait4(ps, &status, 0, &ru);
    double ts = bench_now() - t0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "bench_sync: sync failed\n");
        return 1;
    }
    long daemon_peak = bench_proc_kib(db, "VmHWM:");
    bench_report("sync", "notes synced over loopback (2 processes)", (double)notes / ts,
                 "notes/s");
    double tf = floor_time(notes, 512);
    bench_report("sync", "floor: raw AEAD + SQLite + loopback TCP", (double)notes / tf,
                 "notes/s");
    bench_report("sync", "ratio duet/floor time (target <= 2.5)", ts / tf, "x");
    bench_report("sync", "peak RSS, sync process", (double)ru.ru_maxrss / 1024.0, "MiB");
    bench_report("sync", "peak RSS, receiving daemon", (double)daemon_peak / 1024.0, "MiB");

    /* 3. Latency, both daemons online: A's daemon connects to B (its address is known). */
    int pa[2];
    char loga[4200];
    snprintf(loga, sizeof loga, "%s/daemon-a.log", dir);
    pa[1] = open(loga, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
    pa[0] = open(loga, O_RDONLY);
    if (pa[0] < 0 || pa[1] < 0) {
        return 1;
    }
    char *aargs[] = {"daemon", "--no-lan", NULL};
    pid_t da = spawn(ha, aargs, pa[1]);
    char carry_a[65536];
    size_t carry_a_len = 0;
    if (wait_line(pa[0], "partner_online", 10000, carry_a, &carry_a_len) != 0) {
        fprintf(stderr, "bench_sync: A's daemon did not reach B\n");
        return 1;
    }
    usleep(200000);
    /* Skip what B's daemon wrote during the throughput run. */
    lseek(pb[0], 0, SEEK_END);
    carry_len = 0;
    double *lat = calloc((size_t)samples, sizeof *lat);
    for (int k = 0; k < samples; k++) {
        if (duet_store_begin(a) != DUET_OK ||
            duet_outbox_queue(a, DUET_KIND_NOTE, body, blen, 1764160000000ull + (uint64_t)k,
                              NULL) != DUET_OK ||
            duet_store_commit(a) != DUET_OK) {
            return 1;
        }
        /* From the note committed on A (as `duet note` has it when it returns) to B's daemon
         * saying it received it, after B's durable commit. */
        double s0 = bench_now();
        duet_control_kick(ha);
        if (wait_line(pb[0], "\"received\"", 5000, carry, &carry_len) != 0) {
            fprintf(stderr, "bench_sync: note %d not received\n", k);
            return 1;
        }
        lat[k] = bench_now() - s0;
        usleep(2000);
    }
    qsort(lat, (size_t)samples, sizeof *lat, cmp_d);
    bench_report("sync", "latency note committed -> received (p50)", lat[samples / 2] * 1e3,
                 "ms");
    bench_report("sync", "latency note committed -> received (p99)",
                 lat[(samples * 99) / 100] * 1e3, "ms");

    /* 4. Idle: after the daemon's quiet delay (net/daemon.h), when it has given back what
     * the sync and the latency run used. */
    sleep(3);
    bench_report("sync", "idle daemon RSS", (double)bench_proc_kib(db, "VmRSS:") / 1024.0, "MiB");

    kill(da, SIGTERM);
    kill(db, SIGTERM);
    waitpid(da, NULL, 0);
    waitpid(db, NULL, 0);
    duet_store_close(a);
    free(lat);
    free(body);
    bench_rmrf(dir);
    return 0;
}
