/*
 * Voice blob benchmark (make bench): two devices as separate processes on loopback.
 *   bench_blob DUET_BINARY [ROUNDS=3]
 *
 * 1. The baseline, measured in this run: raw ChaCha20-Poly1305-IETF
 *    (crypto_aead_chacha20poly1305_ietf_encrypt) on 64 KiB buffers, one core, MiB/s.
 * 2. Blob transfer: voice notes sealed on device A beforehand (sealing is not timed), B's
 *    daemon listening; `duet sync --connect` on A, timed from its start to its exit: the
 *    handshake, the item, every DATA frame through Noise and TCP, B checking each chunk
 *    (secretstream), hashing the whole blob (BLAKE2b), writing it, fsync, rename and the
 *    commit that makes it available. Throughput = sealed bytes / time, best of ROUNDS
 *    (fresh homes each round). Cases: 10 MiB, 50 MiB, and 4 x 50 MiB = 200 MiB in one
 *    sync; and 50 MiB the other way (A's sync fetching from B's daemon).
 * 3. Peak RSS of both processes in each case: memory must not grow with the file size.
 * 4. The receiver's floor, same run: what the receiving side must do per byte whatever the
 *    implementation (open the link record, check the chunk, hash it), on one core. duet's
 *    receiver does all three in its one thread, so this bounds the transfer on a machine
 *    where the sender takes the other core.
 * Targets (issue 5): >= 200 MiB/s and >= 0.4 x the raw ChaCha20-Poly1305 figure; for
 * reference, c-toxcore moves a 50 MiB file at about 5 MiB/s on this kind of machine, 15 MiB/s
 * for 300 MiB.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>

#include "benchutil.h"
#include "blob.h"
#include "store.h"
#include "sysrng.h"
#include "testpair.h"
#include "voice.h"

#define MIB (1024.0 * 1024.0)

static const char *duet;

static pid_t spawn(const char *home, char *const extra[], int out_fd)
{
    return bench_spawn_duet(duet, home, extra, out_fd);
}

/* Wait until the file at path contains needle (the daemon's JSON Lines). */
static int wait_for(const char *path, const char *needle, double seconds)
{
    double end = bench_now() + seconds;
    while (bench_now() < end) {
        char buf[4096];
        FILE *f = fopen(path, "r");
        size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f) {
            fclose(f);
        }
        buf[n] = 0;
        if (strstr(buf, needle) != NULL) {
            return 0;
        }
        usleep(1000);
    }
    return -1;
}

/* A mono 16-bit WAV of exactly `bytes` bytes with noise for samples (incompressible, like a
 * recording, and nothing in duet compresses anyway). */
static void make_wav(const char *path, size_t bytes, uint32_t seed)
{
    uint8_t h[44] = "RIFF____WAVEfmt \x10\0\0\0\x01\0\x01\0\x80\xbb\0\0\0\x77\x01\0\x02\0\x10\0"
                    "data____";
    uint32_t data = (uint32_t)(bytes - 44), riff = data + 36;
    memcpy(h + 4, &riff, 4);
    memcpy(h + 40, &data, 4);
    FILE *f = fopen(path, "wb");
    uint8_t *buf = malloc(1 << 20), seedk[randombytes_SEEDBYTES] = {0};
    if (f == NULL || buf == NULL) {
        abort();
    }
    memcpy(seedk, &seed, sizeof seed);
    fwrite(h, 1, sizeof h, f);
    for (size_t left = data, i = 0; left > 0; i++) {
        size_t n = left < (1u << 20) ? left : (1u << 20);
        seedk[8] = (uint8_t)i;
        seedk[9] = (uint8_t)(i >> 8);
        randombytes_buf_deterministic(buf, n, seedk);
        fwrite(buf, 1, n, f);
        left -= n;
    }
    fclose(f);
    free(buf);
}

static double raw_chacha(void)
{
    enum { BUF = 65536 };
    static uint8_t m[BUF], c[BUF + 16], k[32], npub[12];
    randombytes_buf(m, sizeof m);
    randombytes_buf(k, sizeof k);
    double best = 0;
    for (int round = 0; round < 3; round++) {
        size_t n = 0;
        double t0 = bench_now(), t;
        do {
            for (int i = 0; i < 256; i++, n++) {
                npub[0] = (uint8_t)n;
                crypto_aead_chacha20poly1305_ietf_encrypt(c, NULL, m, BUF, NULL, 0, NULL, npub, k);
            }
            t = bench_now() - t0;
        } while (t < 0.3);
        double r = (double)n * BUF / MIB / t;
        best = r > best ? r : best;
    }
    return best;
}

/* The receiver's unavoidable work per byte, one core: open the link record
 * (ChaCha20-Poly1305-IETF), check the chunk (secretstream pull), hash it (BLAKE2b). The blob
 * transfer cannot beat this on the receiving side without a second core. */
static double receiver_floor(void)
{
    enum { BUF = 65536 };
    static uint8_t m[BUF], c[BUF + 16], sc[BUF + 17], out[BUF], k[32], npub[12], hdr[24];
    crypto_secretstream_xchacha20poly1305_state push, pull, st;
    crypto_generichash_state h;
    randombytes_buf(m, sizeof m);
    randombytes_buf(k, sizeof k);
    crypto_aead_chacha20poly1305_ietf_encrypt(c, NULL, m, BUF, NULL, 0, NULL, npub, k);
    crypto_secretstream_xchacha20poly1305_init_push(&push, hdr, k);
    crypto_secretstream_xchacha20poly1305_push(&push, sc, NULL, m, BUF, NULL, 0, 0);
    crypto_secretstream_xchacha20poly1305_init_pull(&pull, hdr, k);
    crypto_generichash_init(&h, NULL, 0, 32);
    double best = 0;
    for (int round = 0; round < 3; round++) {
        size_t n = 0;
        double t0 = bench_now(), t;
        do {
            for (int i = 0; i < 64; i++, n++) {
                unsigned char tag;
                memcpy(&st, &pull, sizeof st);
                if (crypto_aead_chacha20poly1305_ietf_decrypt(out, NULL, NULL, c, BUF + 16, NULL, 0,
                                                              npub, k) != 0 ||
                    crypto_secretstream_xchacha20poly1305_pull(&st, out, NULL, &tag, sc, BUF + 17,
                                                               NULL, 0) != 0) {
                    abort();
                }
                crypto_generichash_update(&h, sc, BUF + 17);
            }
            t = bench_now() - t0;
        } while (t < 0.3);
        double r = (double)n * BUF / MIB / t;
        best = r > best ? r : best;
    }
    return best;
}

typedef struct result {
    double seconds;
    uint64_t sealed;
    long sync_kib, daemon_kib;
    double sync_cpu, daemon_cpu; /* seconds of CPU (user + system) during the sync */
} result_t;

/* CPU seconds (user + system) a process has used so far, from /proc/PID/stat. */
static double proc_cpu(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) {
        fclose(f);
    }
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2) {
        return 0;
    }
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/*
 * One run in fresh homes: `count` voice notes of `mib` MiB each, sealed on the sender
 * (A when a_sends, else B), B's daemon listening, A's `sync --connect` timed.
 */
static int run_case(const char *dir, int tag, size_t mib, int count, bool a_sends, result_t *out)
{
    char ha[4200], hb[4200], wav[4200], log[4200], listen[64];
    snprintf(ha, sizeof ha, "%s/a%d", dir, tag);
    snprintf(hb, sizeof hb, "%s/b%d", dir, tag);
    duet_rng_t rng = duet_sysrng();
    duet_store_t *a = duet_test_home(ha, "river", rng);
    duet_store_t *b = duet_test_home(hb, "harbor", rng);
    duet_test_pair(b, a, rng, 1764150000000ull);
    duet_store_t *sender = a_sends ? a : b;
    memset(out, 0, sizeof *out);
    for (int i = 0; i < count; i++) {
        uint8_t id[16];
        size_t bytes = mib * (size_t)MIB;
        snprintf(wav, sizeof wav, "%s/in-%d-%d.wav", dir, tag, i);
        make_wav(wav, bytes, (uint32_t)(tag * 100 + i));
        if (duet_voice_add(sender, wav, "", 0, 1764150000000ull + (uint64_t)i, id, NULL) !=
            DUET_OK) {
            fprintf(stderr, "bench_blob: cannot queue the voice note\n");
            return -1;
        }
        unlink(wav);
        out->sealed += duet_blob_sealed_size(bytes);
    }
    duet_store_close(a);
    duet_store_close(b);

    snprintf(log, sizeof log, "%s/daemon-%d.log", dir, tag);
    int lf = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
    snprintf(listen, sizeof listen, "127.0.0.1:%d", bench_free_port());
    char *dargs[] = {"daemon", "--listen", listen, "--no-lan", NULL};
    pid_t db = spawn(hb, dargs, lf);
    close(lf);
    if (wait_for(log, "listening", 10) != 0) {
        fprintf(stderr, "bench_blob: the daemon did not start\n");
        return -1;
    }
    char *sargs[] = {"sync", "--connect", listen, "--timeout", "600", NULL};
    double d0 = proc_cpu(db);
    double t0 = bench_now();
    pid_t ps = spawn(ha, sargs, -1);
    int status;
    struct rusage ru;
    wait4(ps, &status, 0, &ru);
    out->seconds = bench_now() - t0;
    out->sync_kib = ru.ru_maxrss;
    out->daemon_kib = bench_proc_kib(db, "VmHWM:");
    out->daemon_cpu = proc_cpu(db) - d0;
    out->sync_cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                    (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    kill(db, SIGTERM);
    waitpid(db, NULL, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "bench_blob: sync failed\n");
        return -1;
    }
    /* Every blob must be available on the receiver. */
    duet_store_opts_t o = {.rng = rng};
    duet_store_t *rx;
    duet_voice_blob_t *rows;
    size_t n;
    if (duet_store_open(a_sends ? hb : ha, &o, &rx) != DUET_OK ||
        duet_voice_blobs(rx, &rows, &n) != DUET_OK) {
        return -1;
    }
    int bad = (int)n != count;
    for (size_t i = 0; i < n; i++) {
        bad |= rows[i].state != DUET_VOICE_AVAILABLE;
    }
    free(rows);
    duet_store_close(rx);
    if (bad) {
        fprintf(stderr, "bench_blob: not every voice note arrived\n");
        return -1;
    }
    bench_rmrf(ha);
    bench_rmrf(hb);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_blob DUET_BINARY [ROUNDS]\n");
        return 2;
    }
    duet = argv[1];
    int rounds = argc > 2 ? atoi(argv[2]) : 3;
    if (sodium_init() < 0) {
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    char *dir = bench_tmpdir();

    double raw = raw_chacha();
    bench_report("blob", "raw ChaCha20-Poly1305-IETF, 64 KiB buffers", raw, "MiB/s");
    double floor = receiver_floor();
    bench_report("blob", "receiver floor: link open + chunk check + hash, 1 core", floor, "MiB/s");

    static const struct {
        const char *name;
        size_t mib;
        int count;
        bool a_sends;
    } cases[] = {{"10 MiB", 10, 1, true},
                 {"50 MiB", 50, 1, true},
                 {"200 MiB (4 x 50)", 50, 4, true},
                 {"50 MiB, fetched by sync", 50, 1, false}};
    int tag = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        result_t best = {0}, r;
        long sync_kib = 0, daemon_kib = 0;
        for (int k = 0; k < rounds; k++) {
            if (run_case(dir, tag++, cases[c].mib, cases[c].count, cases[c].a_sends, &r) != 0) {
                bench_rmrf(dir);
                return 1;
            }
            if (best.seconds == 0 || r.seconds < best.seconds) {
                best = r;
            }
            sync_kib = r.sync_kib > sync_kib ? r.sync_kib : sync_kib;
            daemon_kib = r.daemon_kib > daemon_kib ? r.daemon_kib : daemon_kib;
        }
        char label[160];
        double mibs = (double)best.sealed / MIB / best.seconds;
        snprintf(label, sizeof label, "%s: transfer (target >= 200)", cases[c].name);
        bench_report("blob", label, mibs, "MiB/s");
        snprintf(label, sizeof label, "%s: ratio to raw ChaCha20-Poly1305 (target >= 0.4)",
                 cases[c].name);
        bench_report("blob", label, mibs / raw, "x");
        snprintf(label, sizeof label, "%s: ratio to the receiver floor", cases[c].name);
        bench_report("blob", label, mibs / floor, "x");
        /* What the machine's other load cannot change: CPU per MiB of each side, and the
         * throughput the busier side allows when each has a core of its own. */
        double sealed_mib = (double)best.sealed / MIB;
        snprintf(label, sizeof label, "%s: CPU, sync process", cases[c].name);
        bench_report("blob", label, best.sync_cpu * 1e3 / sealed_mib, "ms/MiB");
        snprintf(label, sizeof label, "%s: CPU, daemon", cases[c].name);
        bench_report("blob", label, best.daemon_cpu * 1e3 / sealed_mib, "ms/MiB");
        double busiest = best.sync_cpu > best.daemon_cpu ? best.sync_cpu : best.daemon_cpu;
        snprintf(label, sizeof label, "%s: CPU-bound rate, a core each", cases[c].name);
        bench_report("blob", label, busiest > 0 ? sealed_mib / busiest : 0, "MiB/s");
        snprintf(label, sizeof label, "%s: peak RSS, sync process", cases[c].name);
        bench_report("blob", label, (double)sync_kib / 1024.0, "MiB");
        snprintf(label, sizeof label, "%s: peak RSS, daemon", cases[c].name);
        bench_report("blob", label, (double)daemon_kib / 1024.0, "MiB");
    }
    bench_rmrf(dir);
    free(dir);
    return 0;
}
