/* see hlc.h */
#include "hlc.h"

/* 48 bits of milliseconds last until the year 10889; clamp rather than wrap. */
#define HLC_MAX_MS ((UINT64_C(1) << 48) - 1)

static uint64_t clamp_ms(uint64_t ms)
{
    return ms > HLC_MAX_MS ? HLC_MAX_MS : ms;
}

/* A counter overflow carries into the millisecond part: still strictly increasing. */
static uint64_t bump(uint64_t t)
{
    return t + 1;
}

uint64_t duet_hlc_local(uint64_t last, uint64_t now_ms)
{
    uint64_t pt = DUET_HLC_MAKE(clamp_ms(now_ms), 0);
    return pt > last ? pt : bump(last);
}

uint64_t duet_hlc_recv(uint64_t last, uint64_t msg, uint64_t now_ms)
{
    uint64_t pt = DUET_HLC_MAKE(clamp_ms(now_ms), 0);
    uint64_t m = last > msg ? last : msg;
    return pt > m ? pt : bump(m);
}
