/* see safety.h */
#include "safety.h"

#include <sodium.h>
#include <string.h>

#define CHUNK_BYTES 5u
#define CHUNK_MOD 100000u

_Static_assert(DUET_SAFETY_HALF_DIGITS / DUET_SAFETY_GROUP * CHUNK_BYTES <=
                   crypto_hash_sha512_BYTES,
               "the chunks come from one SHA-512 output");
_Static_assert(DUET_SAFETY_TEXT_LEN ==
                   DUET_SAFETY_DIGITS + DUET_SAFETY_DIGITS / DUET_SAFETY_GROUP - 1,
               "text length");

void duet_safety_fingerprint(const uint8_t key[static DUET_SAFETY_KEYBYTES],
                             char out[static DUET_SAFETY_HALF_DIGITS + 1])
{
    uint8_t hash[crypto_hash_sha512_BYTES];
    const uint8_t version[2] = {(uint8_t)(DUET_SAFETY_VERSION >> 8),
                                (uint8_t)(DUET_SAFETY_VERSION & 0xff)};
    crypto_hash_sha512_state st;

    /* Round 1 hashes version || key || key (Signal's version || key || stable id, with no
     * stable id, then || key); later rounds hash the previous output || key. */
    crypto_hash_sha512_init(&st);
    crypto_hash_sha512_update(&st, version, sizeof version);
    crypto_hash_sha512_update(&st, key, DUET_SAFETY_KEYBYTES);
    crypto_hash_sha512_update(&st, key, DUET_SAFETY_KEYBYTES);
    crypto_hash_sha512_final(&st, hash);
    for (unsigned i = 1; i < DUET_SAFETY_ITERATIONS; i++) {
        crypto_hash_sha512_init(&st);
        crypto_hash_sha512_update(&st, hash, sizeof hash);
        crypto_hash_sha512_update(&st, key, DUET_SAFETY_KEYBYTES);
        crypto_hash_sha512_final(&st, hash);
    }
    for (unsigned c = 0; c < DUET_SAFETY_HALF_DIGITS / DUET_SAFETY_GROUP; c++) {
        uint64_t v = 0;
        for (unsigned j = 0; j < CHUNK_BYTES; j++) {
            v = v << 8 | hash[c * CHUNK_BYTES + j];
        }
        v %= CHUNK_MOD;
        for (unsigned d = DUET_SAFETY_GROUP; d-- > 0;) {
            out[c * DUET_SAFETY_GROUP + d] = (char)('0' + v % 10);
            v /= 10;
        }
    }
    out[DUET_SAFETY_HALF_DIGITS] = '\0';
}

void duet_safety_number(const uint8_t key_a[static DUET_SAFETY_KEYBYTES],
                        const uint8_t key_b[static DUET_SAFETY_KEYBYTES], duet_safety_t *out)
{
    char fa[DUET_SAFETY_HALF_DIGITS + 1], fb[DUET_SAFETY_HALF_DIGITS + 1];
    duet_safety_fingerprint(key_a, fa);
    duet_safety_fingerprint(key_b, fb);
    /* Both strings are 30 digits: strcmp orders them as numbers. Public data. */
    const char *lo = strcmp(fa, fb) <= 0 ? fa : fb;
    const char *hi = lo == fa ? fb : fa;
    memcpy(out->digits, lo, DUET_SAFETY_HALF_DIGITS);
    memcpy(out->digits + DUET_SAFETY_HALF_DIGITS, hi, DUET_SAFETY_HALF_DIGITS);
    out->digits[DUET_SAFETY_DIGITS] = '\0';

    size_t t = 0;
    for (unsigned i = 0; i < DUET_SAFETY_DIGITS; i++) {
        if (i > 0 && i % DUET_SAFETY_GROUP == 0) {
            out->text[t++] = ' ';
        }
        out->text[t++] = out->digits[i];
    }
    out->text[t] = '\0';
}
