/*
 * Relay benchmark (make bench): the real `duet relay serve` in its own process on loopback,
 * driven by the real client code (net/relay_client.h, core/relay_sync.h) with in-memory
 * devices in this process.
 *
 *   bench_relay [ENVELOPES=200000] [PAIRS=8] [IDLE=10000] [ROUNDS=1000] [DUET_BINARY]
 *
 * Figures (issue 4 targets):
 *  - envelopes stored and forwarded per second: PAIRS writers upload ENVELOPES envelopes of
 *    512 bytes in all while PAIRS subscribed readers collect and acknowledge them; the clock
 *    runs from the first upload to the last envelope stored by a reader (>= 30,000/s);
 *  - the relay's memory per idle connection: its resident set before and after IDLE
 *    connections have said HELLO and sit (<= 16 KiB each); this process raises its own fd
 *    limit to the hard limit, the relay inherits it;
 *  - end-to-end latency with both daemons subscribed: a note queued on one side (kick) to
 *    the envelope stored on the other, ROUNDS times one after another (p99 <= 10 ms).
 * The devices' stores are in memory here, so the figures are the relay's path plus the
 * client code, without the devices' own fsyncs.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>
#include <uv.h>

#include "benchutil.h"
#include "codec.h"
#include "link.h"
#include "relay.h"
#include "relay_client.h"
#include "relay_sync.h"
#include "sysrng.h"

#define ENV_BYTES 512u
#define MAXPAIRS  64u

/* ---- in-memory devices ----------------------------------------------------------------------- */

typedef struct mdev {
    uint64_t n;       /* writer: envelopes to offer (grows in the latency run) */
    uint8_t *relayed; /* writer: per seq */
    uint8_t *have;    /* reader: per seq, committed */
    uint8_t *pending;
    uint64_t cap;
    uint64_t stored;   /* reader: committed */
    uint64_t last_seq; /* reader: the highest seq committed */
    uint64_t wm;       /* reader: every seq <= wm is here */
    uint64_t *plist;   /* reader: the open batch's seqs */
    size_t np;
    uint64_t next_free; /* writer: no unrelayed seq below this */
    uint8_t env[ENV_BYTES];
} mdev_t;

static uint64_t total_stored, target_stored;
static double t_done;

static void mdev_init(mdev_t *d, uint64_t cap)
{
    memset(d, 0, sizeof *d);
    d->cap = cap;
    d->relayed = calloc(cap + 1, 1);
    d->have = calloc(cap + 1, 1);
    d->pending = calloc(cap + 1, 1);
    d->plist = calloc(cap + 1, sizeof *d->plist);
    d->next_free = 1;
    memset(d->env, 0x42, sizeof d->env);
}

static void mdev_free(mdev_t *d)
{
    free(d->relayed);
    free(d->have);
    free(d->pending);
    free(d->plist);
}

static duet_err_t m_state(void *ctx, uint64_t *wm, uint64_t *above, size_t cap, size_t *n)
{
    mdev_t *d = ctx;
    uint64_t w = d->wm;
    *wm = w;
    *n = 0;
    for (uint64_t s = w + 1; s <= d->last_seq && *n < cap; s++) {
        if (d->have[s]) {
            above[(*n)++] = s;
        }
    }
    return DUET_OK;
}

static duet_err_t m_next(void *ctx, uint64_t after, uint64_t *seq, const uint8_t **env, size_t *len)
{
    mdev_t *d = ctx;
    while (d->next_free <= d->n && d->relayed[d->next_free]) {
        d->next_free++;
    }
    for (uint64_t s = after + 1 > d->next_free ? after + 1 : d->next_free; s <= d->n; s++) {
        if (!d->relayed[s]) {
            *seq = s;
            *env = d->env;
            *len = sizeof d->env;
            return DUET_OK;
        }
    }
    return DUET_ENOENT;
}

static duet_err_t m_mark(void *ctx, uint64_t seq)
{
    ((mdev_t *)ctx)->relayed[seq] = 1;
    return DUET_OK;
}

static duet_err_t m_begin(void *ctx)
{
    (void)ctx;
    return DUET_OK;
}

static duet_err_t m_put(void *ctx, uint64_t seq, const uint8_t *env, size_t len, bool *counted)
{
    mdev_t *d = ctx;
    (void)env, (void)len;
    *counted = true;
    if (seq > d->cap) {
        return DUET_ERANGE;
    }
    if (d->have[seq] || d->pending[seq]) {
        return DUET_EDUP;
    }
    d->pending[seq] = 1;
    d->plist[d->np++] = seq;
    return DUET_OK;
}

static double lat_start;
static double *lat;
static uint64_t lat_n;

static duet_err_t m_commit(void *ctx)
{
    mdev_t *d = ctx;
    for (size_t i = 0; i < d->np; i++) {
        uint64_t s = d->plist[i];
        d->pending[s] = 0;
        d->have[s] = 1;
        d->stored++;
        total_stored++;
        if (s > d->last_seq) {
            d->last_seq = s;
        }
    }
    d->np = 0;
    while (d->wm < d->cap && d->have[d->wm + 1]) {
        d->wm++;
    }
    if (lat != NULL && d->last_seq > lat_n) {
        lat[lat_n++] = bench_now() - lat_start;
    }
    if (target_stored && total_stored >= target_stored && t_done == 0) {
        t_done = bench_now();
    }
    return DUET_OK;
}

static void m_abort(void *ctx)
{
    mdev_t *d = ctx;
    for (size_t i = 0; i < d->np; i++) {
        d->pending[d->plist[i]] = 0;
    }
    d->np = 0;
}

static duet_err_t m_acked(void *ctx, uint64_t wm, const uint64_t *above, size_t n, uint64_t *items)
{
    (void)ctx, (void)wm, (void)above, (void)n;
    *items = 0;
    return DUET_OK;
}

static duet_relay_host_t host_of(mdev_t *d)
{
    duet_relay_host_t h = {d, m_state, m_next, m_mark, m_begin, m_put, m_commit, m_abort, m_acked};
    return h;
}

/* ---- the relay process ---------------------------------------------------------------------- */

static pid_t relay_pid;

static void relay_spawn(const char *duet, const char *dir, const char *config, char *url,
                        size_t cap)
{
    int fds[2];
    if (pipe(fds) != 0) {
        abort();
    }
    relay_pid = fork();
    if (relay_pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        execl(duet, duet, "--json", "relay", "serve", "--listen", "127.0.0.1:0", "--data", dir,
              "--config", config, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    char line[1024];
    if (f == NULL || fgets(line, sizeof line, f) == NULL) {
        fprintf(stderr, "bench_relay: the relay did not start\n");
        exit(1);
    }
    char *u = strstr(line, "\"url\":\"");
    char *e = u ? strchr(u + 7, '"') : NULL;
    if (e == NULL || (size_t)(e - u - 7) >= cap) {
        exit(1);
    }
    memcpy(url, u + 7, (size_t)(e - u - 7));
    url[e - u - 7] = 0;
    /* keep the pipe open (the relay writes its last record there); leak f on purpose */
}

static long relay_rss_kib(void)
{
    char path[64], line[256];
    long kib = -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)relay_pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kib = strtol(line + 6, NULL, 10);
        }
    }
    fclose(f);
    return kib;
}

/* ---- sessions ------------------------------------------------------------------------------ */

static uv_loop_t loop;
static const char *url;
static size_t readers_up, writers_done;

static void keys(duet_relay_keys_t *k, uint64_t pair, bool writer)
{
    uint8_t ps[32], a[32], b[32];
    memset(ps, 0, sizeof ps);
    memcpy(ps, &pair, sizeof pair);
    memset(a, 0xaa, 32);
    memset(b, 0xbb, 32);
    duet_relay_keys_derive(k, ps, writer ? a : b, writer ? b : a);
}

static void on_state(duet_relay_client_t *c, void *ctx, bool connected, duet_err_t err)
{
    (void)c, (void)ctx;
    if (connected) {
        readers_up++;
    } else {
        fprintf(stderr, "bench_relay: a session lost its relay: %s\n", duet_err_name(err));
    }
}

static void on_done(duet_relay_client_t *c, void *ctx, duet_err_t err, duet_err_t upload_err,
                    const duet_relay_sync_counts_t *n)
{
    (void)c, (void)ctx, (void)n;
    if (err != DUET_OK || upload_err != DUET_OK) {
        fprintf(stderr, "bench_relay: upload: %s / %s\n", duet_err_name(err),
                duet_err_name(upload_err));
    }
    writers_done++;
}

static duet_relay_client_t *session(mdev_t *d, const duet_relay_host_t *h, uint64_t pair,
                                    bool writer, bool stay)
{
    duet_relay_keys_t k;
    duet_relay_client_t *c;
    keys(&k, pair, writer);
    duet_relay_client_opts_t o = {&loop, url, h, &k, duet_sysrng(), stay};
    duet_relay_client_callbacks_t cb = {.on_done = on_done, .on_state = on_state};
    (void)d;
    if (duet_relay_client_start(&o, &cb, &c) != DUET_OK) {
        abort();
    }
    duet_relay_keys_dispose(&k);
    return c;
}

static void run_until(bool (*cond)(void), double limit_s)
{
    double t0 = bench_now();
    while (!cond() && bench_now() - t0 < limit_s) {
        uv_run(&loop, UV_RUN_ONCE);
    }
}

static size_t want_readers, want_writers;
static bool readers_ready(void)
{
    return readers_up >= want_readers;
}
static bool all_stored(void)
{
    return total_stored >= target_stored && writers_done >= want_writers;
}

static void throughput(uint64_t envelopes, size_t pairs)
{
    mdev_t w[MAXPAIRS], r[MAXPAIRS];
    duet_relay_host_t hw[MAXPAIRS], hr[MAXPAIRS];
    duet_relay_client_t *rc[MAXPAIRS];
    uint64_t per = envelopes / pairs;
    for (size_t p = 0; p < pairs; p++) {
        mdev_init(&w[p], per);
        mdev_init(&r[p], per);
        w[p].n = per;
        hw[p] = host_of(&w[p]);
        hr[p] = host_of(&r[p]);
    }
    readers_up = 0;
    want_readers = pairs;
    for (size_t p = 0; p < pairs; p++) {
        rc[p] = session(&r[p], &hr[p], 100 + p, false, true);
    }
    run_until(readers_ready, 30);
    total_stored = 0;
    target_stored = per * pairs;
    t_done = 0;
    writers_done = 0;
    want_writers = pairs;
    double t0 = bench_now();
    for (size_t p = 0; p < pairs; p++) {
        (void)session(&w[p], &hw[p], 100 + p, true, false);
    }
    run_until(all_stored, 600);
    double t = (t_done > 0 ? t_done : bench_now()) - t0;
    if (total_stored < target_stored) {
        fprintf(stderr, "bench_relay: only %llu of %llu envelopes arrived\n",
                (unsigned long long)total_stored, (unsigned long long)target_stored);
    }
    bench_report("relay", "envelopes stored and forwarded", (double)total_stored / t, "1/s");
    for (size_t p = 0; p < pairs; p++) {
        duet_relay_client_stop(rc[p]);
    }
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_run(&loop, UV_RUN_NOWAIT);
    for (size_t p = 0; p < pairs; p++) {
        mdev_free(&w[p]);
        mdev_free(&r[p]);
    }
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static uint64_t lat_target;
static bool latency_step_done(void)
{
    return lat_n >= lat_target;
}

static void latency(uint64_t rounds)
{
    mdev_t w, r;
    mdev_init(&w, rounds + 1);
    mdev_init(&r, rounds + 1);
    duet_relay_host_t hw = host_of(&w), hr = host_of(&r);
    readers_up = 0;
    want_readers = 2;
    duet_relay_client_t *cr = session(&r, &hr, 999, false, true);
    duet_relay_client_t *cw = session(&w, &hw, 999, true, true);
    run_until(readers_ready, 30);
    lat = calloc(rounds + 1, sizeof *lat);
    lat_n = 0;
    target_stored = 0;
    for (uint64_t i = 1; i <= rounds; i++) {
        w.n = i;
        lat_start = bench_now();
        lat_target = i;
        duet_relay_client_kick(cw);
        run_until(latency_step_done, 5);
        /* let the acknowledgement travel back before the next note */
        double t0 = bench_now();
        while (bench_now() - t0 < 0.0005) {
            uv_run(&loop, UV_RUN_NOWAIT);
        }
    }
    qsort(lat, lat_n, sizeof *lat, cmp_d);
    if (lat_n > 0) {
        bench_report("relay", "latency daemon to daemon p50", lat[lat_n / 2] * 1e3, "ms");
        bench_report("relay", "latency daemon to daemon p99", lat[(lat_n * 99) / 100] * 1e3, "ms");
        bench_report("relay", "latency daemon to daemon max", lat[lat_n - 1] * 1e3, "ms");
    }
    duet_relay_client_stop(cr);
    duet_relay_client_stop(cw);
    uv_run(&loop, UV_RUN_NOWAIT);
    free(lat);
    lat = NULL;
    mdev_free(&w);
    mdev_free(&r);
}

/* ---- idle connections ----------------------------------------------------------------------- */

typedef struct idle {
    duet_link_t *link;
    bool welcomed;
} idle_t;

static size_t idle_welcomed;

static void i_open(duet_link_t *link, void *ctx)
{
    duet_codec_enc_t enc;
    const uint8_t *f;
    uint8_t rec[64];
    size_t len;
    (void)ctx;
    duet_codec_enc_init(&enc, 32);
    duet_relay_enc_hello(&enc, 1);
    if (duet_codec_enc_finish(&enc, &f, &len) == DUET_OK) {
        duet_relay_record_put_len(rec, len);
        memcpy(rec + DUET_RELAY_RECORD_HDR, f, len);
        duet_err_t ignored = duet_link_send(link, rec, DUET_RELAY_RECORD_HDR + len);
        (void)ignored;
    }
    duet_codec_enc_dispose(&enc);
}

static duet_err_t i_record(duet_link_t *link, void *ctx, const uint8_t *rec, size_t len)
{
    idle_t *c = ctx;
    (void)link, (void)rec, (void)len;
    if (!c->welcomed) {
        c->welcomed = true;
        idle_welcomed++;
    }
    return DUET_OK;
}

static void i_close(duet_link_t *link, void *ctx, duet_err_t err)
{
    idle_t *c = ctx;
    (void)link, (void)err;
    c->link = NULL;
}

static void i_log(duet_link_t *link, void *ctx, const char *line)
{
    (void)link, (void)ctx, (void)line;
}

static size_t idle_target;
static bool idle_all(void)
{
    return idle_welcomed >= idle_target;
}

static void idle_memory(size_t n)
{
    duet_relay_url_t u;
    struct sockaddr_storage ss;
    char addr[300];
    if (duet_relay_url_parse(&u, url, strlen(url)) != DUET_OK) {
        abort();
    }
    snprintf(addr, sizeof addr, "%s:%u", u.host, (unsigned)u.port);
    if (duet_addr_parse(addr, &ss) != DUET_OK) {
        abort();
    }
    idle_t *c = calloc(n, sizeof *c);
    long before = relay_rss_kib();
    duet_link_config_t cfg;
    duet_link_callbacks_t cb;
    memset(&cfg, 0, sizeof cfg);
    cfg.mode = DUET_LINK_NK;
    cfg.remote_static = u.key;
    cfg.rng = duet_sysrng();
    memset(&cb, 0, sizeof cb);
    cb.on_open = i_open;
    cb.on_record = i_record;
    cb.on_close = i_close;
    cb.on_log = i_log;
    idle_target = n;
    size_t opened = 0;
    for (size_t i = 0; i < n; i++) {
        cb.ctx = &c[i];
        if (duet_link_connect(&loop, (struct sockaddr *)&ss, &cfg, &cb, &c[i].link) != DUET_OK) {
            break;
        }
        opened++;
        if (i % 200 == 199) {
            uv_run(&loop, UV_RUN_NOWAIT); /* do not flood the listen backlog */
        }
    }
    run_until(idle_all, 120);
    double t0 = bench_now();
    while (bench_now() - t0 < 1.0) {
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    long after = relay_rss_kib();
    if (idle_welcomed > 0 && before > 0 && after > 0) {
        bench_report("relay", "idle connections held", (double)idle_welcomed, "");
        bench_report("relay", "memory per idle connection",
                     (double)(after - before) / (double)idle_welcomed, "KiB");
    }
    for (size_t i = 0; i < opened; i++) {
        if (c[i].link != NULL) {
            duet_link_close(c[i].link, DUET_OK);
        }
    }
    t0 = bench_now();
    while (bench_now() - t0 < 3.0 && uv_run(&loop, UV_RUN_NOWAIT) != 0) {
    }
    free(c);
}

int main(int argc, char **argv)
{
    uint64_t envelopes = argc > 1 ? strtoull(argv[1], NULL, 10) : 200000;
    size_t pairs = argc > 2 ? (size_t)strtoull(argv[2], NULL, 10) : 8;
    size_t idle = argc > 3 ? (size_t)strtoull(argv[3], NULL, 10) : 10000;
    uint64_t rounds = argc > 4 ? strtoull(argv[4], NULL, 10) : 1000;
    char duet[4096], config[4200], url_buf[512];
    if (argc > 5) {
        snprintf(duet, sizeof duet, "%s", argv[5]);
    } else {
        /* build/bench/bench_relay -> build/bin/duet */
        snprintf(duet, sizeof duet, "%s", argv[0]);
        char *slash = strrchr(duet, '/');
        if (slash != NULL) {
            *slash = 0;
        }
        strncat(duet, "/../bin/duet", sizeof duet - strlen(duet) - 1);
    }
    if (pairs == 0 || pairs > MAXPAIRS || sodium_init() < 0) {
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max; /* this process and the relay, not the system */
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    char *dir = bench_tmpdir();
    snprintf(config, sizeof config, "%s/relay.conf", dir);
    FILE *f = fopen(config, "w");
    if (f == NULL) {
        return 1;
    }
    fprintf(f, "# bench: no rate limits, room for everything\n"
               "rate-requests = 0\nrate-bytes = 0\nip-rate-requests = 0\nip-rate-bytes = 0\n"
               "max-connections = 1000000\nmax-connections-per-ip = 1000000\n"
               "mailbox-items = 10000000\nmailbox-bytes = 1099511627776\n");
    fclose(f);
    char data[4200];
    snprintf(data, sizeof data, "%s/relay", dir);
    relay_spawn(duet, data, config, url_buf, sizeof url_buf);
    url = url_buf;
    uv_loop_init(&loop);
    fprintf(stderr, "  relay: %s, fd limit %llu, %ld KiB resident at start\n", url,
            (unsigned long long)rl.rlim_cur, relay_rss_kib());

    /* Idle connections first, on a fresh relay: its resident set then grows by them alone. */
    if (idle > 0) {
        idle_memory(idle);
    }
    if (envelopes > 0) {
        throughput(envelopes, pairs);
    }
    if (rounds > 0) {
        latency(rounds);
    }

    kill(relay_pid, SIGTERM);
    int status;
    (void)waitpid(relay_pid, &status, 0);
    uv_loop_close(&loop);
    bench_rmrf(dir);
    free(dir);
    return 0;
}
