/* Test fixture: two initialised homes, paired in memory with the real pairing engines. */
#ifndef DUET_TESTPAIR_H
#define DUET_TESTPAIR_H

#include "rng.h"
#include "store.h"

/* Create home (a new folder path) with an identity called name. Aborts on failure. */
duet_store_t *duet_test_home(const char *home, const char *name, duet_rng_t rng);

/* Pair the two stores (a the listener, b the joiner) through the pairing engines and
 * duet_partner_establish. Aborts on failure. */
void duet_test_pair(duet_store_t *a, duet_store_t *b, duet_rng_t rng, uint64_t now_ms);

#endif
