/*
 * Fuzz the pairing engine where it reads peer data. The first input byte picks the step; the
 * rest is the peer's message at that step, after real messages from the fixture session
 * (pairing_fixture.h) have brought the engine there:
 *   0  listener reads P1        1  listener reads P3 (after a real P1)
 *   2  listener reads P5/FAIL   3  joiner reads P2
 *   4  joiner reads P4          5  the identity record decoder   6  the name checker
 * Whatever the input: no crash, no read out of bounds, and no "paired" unless the message is
 * byte-for-byte the real one (a forged message must never pair).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pairing_fixture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static fix_party_t joiner, listener;

/* Run the real session until the engine under test waits for message number step (0-based);
 * copy the real message it expects into real/real_len. */
static void advance(int step, uint8_t *real, size_t *real_len)
{
    duet_err_t e;
    if (fix_party_init(&listener, DUET_PAIRING_LISTENER, FIX_CODE, FIX_NAME_LISTENER,
                       FIX_SEED_LISTENER) != DUET_OK ||
        fix_party_init(&joiner, DUET_PAIRING_JOINER, FIX_CODE, FIX_NAME_JOINER,
                       FIX_SEED_JOINER) != DUET_OK) {
        abort();
    }
    for (int i = 0; i < step; i++) {
        fix_party_t *from = i % 2 == 0 ? &joiner : &listener;
        fix_party_t *to = i % 2 == 0 ? &listener : &joiner;
        if (!fix_pump(from, to, NULL, NULL, &e) || e != DUET_OK) {
            abort();
        }
    }
    const uint8_t *m;
    fix_party_t *from = step % 2 == 0 ? &joiner : &listener;
    if (!duet_pairing_output(&from->eng, &m, real_len)) {
        abort();
    }
    memcpy(real, m, *real_len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int steps[5] = {0, 2, 4, 1, 3}; /* mode -> message number */
    static uint8_t real[DUET_PAIRING_MAX_MSG];
    if (size < 1) {
        return 0;
    }
    uint8_t mode = data[0];
    const uint8_t *msg = data + 1;
    size_t len = size - 1;
    if (mode == 5) {
        duet_pairing_record_t r;
        if (duet_pairing_record_decode(msg, len, &r) == DUET_OK &&
            (r.name_len == 0 || r.name_len > DUET_PAIRING_MAX_NAME ||
             strlen(r.name) != r.name_len)) {
            abort();
        }
        return 0;
    }
    if (mode == 6) {
        if (duet_pairing_check_name((const char *)msg, len) == DUET_OK &&
            (len == 0 || len > DUET_PAIRING_MAX_NAME)) {
            abort();
        }
        return 0;
    }
    if (mode > 4) {
        return 0;
    }
    size_t real_len = 0;
    int step = steps[mode];
    advance(step, real, &real_len);
    fix_party_t *rx = step % 2 == 0 ? &listener : &joiner;
    duet_err_t e = duet_pairing_receive(&rx->eng, msg, len);
    bool genuine = len == real_len && memcmp(msg, real, len) == 0;
    if (duet_pairing_status(&rx->eng) == DUET_PAIRING_PAIRED && !genuine) {
        abort();
    }
    if (genuine && e != DUET_OK) {
        abort();
    }
    /* The engine's output is well-formed whatever happened. */
    const uint8_t *out;
    size_t out_len;
    if (duet_pairing_output(&rx->eng, &out, &out_len) &&
        (out_len == 0 || out_len > DUET_PAIRING_MAX_MSG)) {
        abort();
    }
    duet_pairing_dispose(&joiner.eng);
    duet_pairing_dispose(&listener.eng);
    return 0;
}
