/*
 * duet — the system random source for the engines of core/ (libsodium randombytes_buf,
 * which reads getrandom(2)). The returned rng has no state; sodium_init() must have run.
 */
#ifndef DUET_SYSRNG_H
#define DUET_SYSRNG_H

#include "rng.h"

duet_rng_t duet_sysrng(void);

#endif /* DUET_SYSRNG_H */
