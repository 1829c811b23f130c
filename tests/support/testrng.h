/*
 * Seeded, reproducible randomness for tests: a ChaCha20 stream (libsodium
 * randombytes_buf_deterministic) keyed by the seed and advanced by a counter.
 */
#ifndef DUET_TESTRNG_H
#define DUET_TESTRNG_H

#include <stdint.h>

#include "rng.h"

typedef struct duet_testrng {
    uint8_t seed[32];
    uint64_t counter;
} duet_testrng_t;

/* Initialise r from a 64-bit seed and return an rng that draws from it. */
duet_rng_t duet_testrng_init(duet_testrng_t *r, uint64_t seed);

/* A uniform value in [0, n), n > 0, drawn from r. */
uint32_t duet_testrng_uniform(duet_testrng_t *r, uint32_t n);

#endif
