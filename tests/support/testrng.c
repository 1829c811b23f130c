/* see testrng.h */
#include "testrng.h"

#include <sodium.h>
#include <string.h>

static void testrng_fill(void *ctx, uint8_t *out, size_t n)
{
    duet_testrng_t *r = ctx;
    uint8_t key[randombytes_SEEDBYTES];
    /* key = seed with the counter mixed into its first 8 bytes: a fresh stream per call. */
    memcpy(key, r->seed, sizeof key);
    for (int i = 0; i < 8; i++) {
        key[i] ^= (uint8_t)(r->counter >> (8 * i));
    }
    r->counter++;
    randombytes_buf_deterministic(out, n, key);
}

duet_rng_t duet_testrng_init(duet_testrng_t *r, uint64_t seed)
{
    memset(r, 0, sizeof *r);
    for (int i = 0; i < 8; i++) {
        r->seed[8 + i] = (uint8_t)(seed >> (8 * i));
    }
    r->seed[31] = 0xd7;
    duet_rng_t rng = {testrng_fill, r};
    return rng;
}

uint32_t duet_testrng_uniform(duet_testrng_t *r, uint32_t n)
{
    uint8_t b[4];
    uint32_t v, lim = (uint32_t)(0x100000000ull - (0x100000000ull % n));
    do {
        testrng_fill(r, b, sizeof b);
        v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    } while (lim != 0 && v >= lim);
    return v % n;
}
