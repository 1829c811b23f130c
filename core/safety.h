/*
 * duet — the safety number.
 *
 * After pairing, both devices can show a 60-digit number derived from the two identity keys
 * (Ed25519 public keys). The partners compare it out of band (side by side, or read over a
 * call); if it matches, no one sat in the middle of the pairing. It is Signal's numeric
 * fingerprint (libsignal NumericFingerprintGenerator, version 0, 5200 iterations) with our
 * keys: each key gives 30 digits, the two halves are sorted, so both devices print the same
 * number whichever is "local". docs/protocol/safety.md has it byte-exact.
 *
 * Conventions of this module: pure functions of public keys; nothing to fail, nothing
 * secret. Keys are not validated (any 32 bytes give a number).
 */
#ifndef DUET_SAFETY_H
#define DUET_SAFETY_H

#include <stdint.h>

#define DUET_SAFETY_VERSION 0u        /* the 2-byte version prefix, as Signal's */
#define DUET_SAFETY_ITERATIONS 5200u  /* SHA-512 iterations per key, as Signal's */
#define DUET_SAFETY_KEYBYTES 32u      /* an Ed25519 public key */
#define DUET_SAFETY_HALF_DIGITS 30u   /* digits per key */
#define DUET_SAFETY_DIGITS 60u        /* digits of the number */
#define DUET_SAFETY_GROUP 5u          /* digits per group when displayed */
#define DUET_SAFETY_TEXT_LEN 71u      /* 12 groups of 5 with single spaces between */

typedef struct duet_safety {
    char digits[DUET_SAFETY_DIGITS + 1];  /* "123450987..." 60 digits, NUL-terminated */
    char text[DUET_SAFETY_TEXT_LEN + 1];  /* "12345 09876 ..." NUL-terminated */
} duet_safety_t;

/*
 * The 30-digit fingerprint of one key: hash = 0x0000 || key; 5200 times hash =
 * SHA-512(hash || key); then each of the first six 5-byte chunks of hash, read big-endian, mod
 * 100000, as 5 zero-padded digits. out gets 30 digits and a NUL.
 */
void duet_safety_fingerprint(const uint8_t key[static DUET_SAFETY_KEYBYTES],
                             char out[static DUET_SAFETY_HALF_DIGITS + 1]);

/*
 * The safety number of a pairing: the two fingerprints, the smaller (as a digit string) first.
 * The same for (a, b) and (b, a).
 */
void duet_safety_number(const uint8_t key_a[static DUET_SAFETY_KEYBYTES],
                        const uint8_t key_b[static DUET_SAFETY_KEYBYTES], duet_safety_t *out);

#endif /* DUET_SAFETY_H */
