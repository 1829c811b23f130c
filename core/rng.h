/*
 * duet — randomness, passed in.
 *
 * core/ never reads the OS random source itself: every engine that needs random bytes
 * (ephemeral keys, nonces, item ids) takes a duet_rng_t from its caller. The program passes
 * one backed by libsodium's randombytes_buf (net/sysrng.h); tests pass a seeded one
 * (tests/support/testrng.h), so every run and every test vector is reproducible.
 */
#ifndef DUET_RNG_H
#define DUET_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct duet_rng {
    /* Fill out[0..n) with random bytes. Must not fail. */
    void (*fill)(void *ctx, uint8_t *out, size_t n);
    void *ctx;
} duet_rng_t;

static inline void duet_rng_fill(const duet_rng_t *rng, uint8_t *out, size_t n)
{
    rng->fill(rng->ctx, out, n);
}

#endif /* DUET_RNG_H */
