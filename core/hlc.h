/*
 * duet — hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", 2014).
 *
 * A timestamp is 64 bits: milliseconds since the Unix epoch in the high 48 bits, a logical
 * counter in the low 16. Every item carries the timestamp of its author's clock when it was
 * written; receiving an item advances the local clock past it. Items are shown in order of
 * (timestamp, item id), which is the same total order on both devices, and respects
 * causality: a reply is always after what it answers, even if the replier's wall clock is
 * behind. Pure functions; the caller passes the wall clock in.
 */
#ifndef DUET_HLC_H
#define DUET_HLC_H

#include <stdint.h>

#define DUET_HLC_MS(t) ((t) >> 16)
#define DUET_HLC_MAKE(ms, c) (((uint64_t)(ms) << 16) | ((uint64_t)(c) & 0xffffu))

/* The next local timestamp after last, given the wall clock now_ms. */
uint64_t duet_hlc_local(uint64_t last, uint64_t now_ms);

/* The local clock after receiving a timestamp msg, given the wall clock now_ms. */
uint64_t duet_hlc_recv(uint64_t last, uint64_t msg, uint64_t now_ms);

#endif /* DUET_HLC_H */
