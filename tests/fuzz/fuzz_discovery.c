/*
 * Fuzz target for core/discovery: received datagrams, as a LAN would deliver them.
 *
 * Input: records, each a selector byte, a length byte L and L bytes of datagram (a short last
 * record takes what is left). The selector picks the receiving engine (bit 6: a paired
 * device that listens and seeks, or a joiner seeking under the nameplate "417"), the source
 * (bits 3..5: one of eight addresses, so the buckets fill) and the receiver's clock (bits
 * 0..2: -3..+4 windows around the time the seeds were made). Both engines use fixed keys,
 * instances and randomness, so a beacon made once stays valid: the seed corpus
 * (tests/fuzz/corpus/discovery/) holds such beacons from their partners, regenerated with
 *
 *   cc -std=c11 -DFUZZ_DISCOVERY_GEN -Icore -Itests/support tests/fuzz/fuzz_discovery.c \
 *      core/discovery.c core/hkdf.c core/err.c tests/support/testrng.c -lsodium \
 *      -o /tmp/discovery-seeds && /tmp/discovery-seeds tests/fuzz/corpus/discovery
 *
 * After each record the engine is polled and asked for a beacon, and a reply it hands out
 * is fed to the other engine (which must refuse it: another key), so the schedule and the
 * answer path run too. A refused datagram that still asks for a reply or reports a port
 * aborts.
 */
#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/discovery.h"
#include "testrng.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_WALL   1760000000000ull /* the seeds' wall clock, ms */
#define FZ_WINDOW 120000u

static void fz_keys(uint8_t paired[32], uint8_t pairing[32])
{
    uint8_t secret[32];
    for (int i = 0; i < 32; i++) {
        secret[i] = (uint8_t)(0x40 + i);
    }
    duet_discovery_key_paired(paired, secret);
    if (duet_discovery_key_pairing(pairing, (const uint8_t *)"417", 3) != DUET_OK) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool inited;
    if (!inited) {
        if (sodium_init() < 0) {
            abort();
        }
        inited = true;
    }
    uint8_t paired[32], pairing[32];
    fz_keys(paired, pairing);
    duet_testrng_t r[2];
    duet_discovery_t eng[2];
    duet_discovery_init(&eng[0], paired, 4242, true, NULL, duet_testrng_init(&r[0], 1), 0);
    duet_discovery_init(&eng[1], pairing, 0, true, NULL, duet_testrng_init(&r[1], 2), 0);

    uint64_t now = 0;
    size_t off = 0;
    while (off + 2 <= size) {
        uint8_t sel = data[off];
        size_t len = data[off + 1];
        off += 2;
        if (len > size - off) {
            len = size - off;
        }
        int who = (sel >> 6) & 1;
        uint8_t src[4] = {10, 0, 0, (uint8_t)((sel >> 3) & 7)};
        int64_t skew = (int64_t)(sel & 7) - 3;
        uint64_t wall = (uint64_t)((int64_t)FZ_WALL + skew * (int64_t)FZ_WINDOW);
        duet_discovery_rx_t rx;
        /* Copy to an exact-size buffer so that a read past the datagram is caught. */
        uint8_t *dgram = malloc(len ? len : 1);
        if (dgram == NULL) {
            break;
        }
        memcpy(dgram, data + off, len);
        duet_err_t err =
            duet_discovery_receive(&eng[who], now, wall, src, sizeof src, dgram, len, &rx);
        free(dgram);
        off += len;
        if (err == DUET_OK && rx.reply) {
            /* The other engine has another key: the answer must be a stranger's to it. */
            duet_discovery_rx_t rx2;
            if (duet_discovery_receive(&eng[1 - who], now, wall, src, sizeof src, rx.reply_beacon,
                                       sizeof rx.reply_beacon, &rx2) != DUET_EAUTH) {
                abort();
            }
        }
        /* Invariants: only an authentic beacon asks for anything. */
        if (err != DUET_OK && (rx.port != 0 || rx.reply)) {
            abort();
        }
        now += 100;
        duet_discovery_kind_t kind = duet_discovery_poll(&eng[who], now);
        if (kind != DUET_DISCOVERY_NONE) {
            uint8_t b[DUET_DISCOVERY_BEACON_BYTES];
            duet_discovery_beacon(&eng[who], wall, kind, b);
        }
    }
    duet_discovery_dispose(&eng[0]);
    duet_discovery_dispose(&eng[1]);
    sodium_memzero(paired, sizeof paired);
    sodium_memzero(pairing, sizeof pairing);
    return 0;
}

#ifdef FUZZ_DISCOVERY_GEN
/* Seeds: the partners' real beacons (announce, query, an answer), in their window and the
 * neighbouring ones, plus garbage of the right size and truncated beacons. */
static void put(const char *dir, const char *name, const uint8_t *p, size_t n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(p, 1, n, f) != n) {
        perror(path);
        exit(1);
    }
    fclose(f);
}

static size_t record(uint8_t *out, uint8_t sel, const uint8_t *b, size_t n)
{
    out[0] = sel;
    out[1] = (uint8_t)n;
    memcpy(out + 2, b, n);
    return n + 2;
}

int main(int argc, char **argv)
{
    if (argc != 2 || sodium_init() < 0) {
        fprintf(stderr, "usage: discovery-seeds DIR\n");
        return 2;
    }
    uint8_t paired[32], pairing[32];
    fz_keys(paired, pairing);
    duet_testrng_t r[2];
    duet_discovery_t partner, listener;
    duet_discovery_init(&partner, paired, 5151, true, NULL, duet_testrng_init(&r[0], 11), 0);
    duet_discovery_init(&listener, pairing, 6161, false, NULL, duet_testrng_init(&r[1], 12), 0);
    uint8_t b[DUET_DISCOVERY_BEACON_BYTES], buf[1024];
    size_t n;

    duet_discovery_beacon(&partner, FZ_WALL, DUET_DISCOVERY_ANNOUNCE, b);
    put(argv[1], "paired-announce", buf, record(buf, 3, b, sizeof b));
    duet_discovery_beacon(&partner, FZ_WALL, DUET_DISCOVERY_QUERY, b);
    put(argv[1], "paired-query", buf, record(buf, 3 | 1 << 3, b, sizeof b));
    n = record(buf, 2, b, sizeof b);      /* receiver one window behind */
    n += record(buf + n, 4, b, sizeof b); /* one ahead */
    n += record(buf + n, 7, b, sizeof b); /* four ahead: refused */
    put(argv[1], "paired-windows", buf, n);
    n = 0;
    for (int i = 0; i < 8; i++) { /* a replay from one source */
        n += record(buf + n, 3, b, sizeof b);
    }
    put(argv[1], "paired-replay", buf, n);
    duet_discovery_beacon(&listener, FZ_WALL, DUET_DISCOVERY_ANNOUNCE, b);
    put(argv[1], "pairing-announce", buf, record(buf, 3 | 1 << 6, b, sizeof b));
    duet_discovery_beacon(&listener, FZ_WALL, DUET_DISCOVERY_QUERY, b);
    put(argv[1], "pairing-query", buf, record(buf, 3 | 1 << 6 | 2 << 3, b, sizeof b));
    n = record(buf, 3, b, 40); /* truncated */
    n += record(buf + n, 3, b, 0);
    put(argv[1], "truncated", buf, n);
    memset(b, 0xa5, sizeof b);
    put(argv[1], "garbage", buf, record(buf, 3, b, sizeof b));
    duet_discovery_dispose(&partner);
    duet_discovery_dispose(&listener);
    return 0;
}
#endif
