/* see sysrng.h */
#include "sysrng.h"

#include <sodium.h>

static void sysrng_fill(void *ctx, uint8_t *out, size_t n)
{
    (void)ctx;
    randombytes_buf(out, n);
}

duet_rng_t duet_sysrng(void)
{
    duet_rng_t r = {sysrng_fill, NULL};
    return r;
}
