/*
 * duet — HMAC-SHA-256/512 with keys of any length, and HKDF-SHA-256/512 (RFC 5869).
 *
 * libsodium 1.0.18 has HMAC-SHA-256/512 (crypto_auth_hmacsha256/512, whose _init takes a key
 * of any length) but no HKDF (crypto_kdf_hkdf_* arrived in 1.0.19). This module builds HKDF
 * on that HMAC, exactly as RFC 5869 defines it, so that pairing, the ratchet, the relay
 * capabilities and the store keys all derive keys one way. It is checked against the
 * Wycheproof HKDF and HMAC files (tests/unit/test_hkdf.c).
 *
 * Conventions of this module:
 *  - Pure functions of their inputs: no state, no allocation, no randomness.
 *  - Inputs are borrowed for the call. A pointer may be NULL only when its length is 0.
 *  - Outputs may not overlap inputs, except where a function says otherwise.
 *  - Every intermediate value (PRK, HMAC states, T(i) blocks) is wiped with sodium_memzero
 *    before return, on every path. The only error, DUET_ERANGE, is found before anything
 *    is written.
 *  - A salt of length 0 means "no salt": RFC 5869 then uses HashLen zero bytes, which gives
 *    the same PRK (HMAC pads a short key with zeros).
 *  - Caller bugs (a NULL pointer with a non-zero length, a truncated tag length outside the
 *    documented range) abort.
 */
#ifndef DUET_HKDF_H
#define DUET_HKDF_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define DUET_HMAC_SHA256_BYTES 32u
#define DUET_HMAC_SHA512_BYTES 64u
/* The shortest truncated tag duet_hmac_*_verify accepts (128 bits). */
#define DUET_HMAC_MIN_TAG_BYTES 16u

#define DUET_HKDF_SHA256_PRK_BYTES 32u
#define DUET_HKDF_SHA512_PRK_BYTES 64u
/* RFC 5869: L <= 255 * HashLen. */
#define DUET_HKDF_SHA256_MAX_OUT (255u * 32u)
#define DUET_HKDF_SHA512_MAX_OUT (255u * 64u)

/* ---- HMAC ---------------------------------------------------------------------------- */

/* out = HMAC-SHA-256(key[0..key_len), msg[0..msg_len)). Any key length (keys longer than
 * the 64-byte block are hashed first, as RFC 2104 says). out may alias msg. */
void duet_hmac_sha256(uint8_t out[static DUET_HMAC_SHA256_BYTES], const uint8_t *key,
                      size_t key_len, const uint8_t *msg, size_t msg_len);

/* out = HMAC-SHA-512(key, msg). Any key length (block 128 bytes). out may alias msg. */
void duet_hmac_sha512(uint8_t out[static DUET_HMAC_SHA512_BYTES], const uint8_t *key,
                      size_t key_len, const uint8_t *msg, size_t msg_len);

/*
 * Verify a possibly truncated tag: tag[0..tag_len) must equal the first tag_len bytes of
 * HMAC-SHA-256(key, msg), compared in constant time. DUET_OK or DUET_EAUTH.
 * tag_len must be in [DUET_HMAC_MIN_TAG_BYTES, 32] (abort otherwise).
 */
duet_err_t duet_hmac_sha256_verify(const uint8_t *tag, size_t tag_len, const uint8_t *key,
                                   size_t key_len, const uint8_t *msg,
                                   size_t msg_len) DUET_MUST_CHECK;

/* The same for HMAC-SHA-512; tag_len in [DUET_HMAC_MIN_TAG_BYTES, 64]. */
duet_err_t duet_hmac_sha512_verify(const uint8_t *tag, size_t tag_len, const uint8_t *key,
                                   size_t key_len, const uint8_t *msg,
                                   size_t msg_len) DUET_MUST_CHECK;

/* ---- HKDF ---------------------------------------------------------------------------- */

/* HKDF-Extract: prk = HMAC-SHA-256(salt, ikm). Cannot fail. */
void duet_hkdf_sha256_extract(uint8_t prk[static DUET_HKDF_SHA256_PRK_BYTES],
                              const uint8_t *salt, size_t salt_len, const uint8_t *ikm,
                              size_t ikm_len);

/*
 * HKDF-Expand: out[0..out_len) = the first out_len bytes of T(1) || T(2) || ..., where
 * T(i) = HMAC-SHA-256(prk, T(i-1) || info || i). out_len may be 0 (then out may be NULL).
 * DUET_ERANGE when out_len > DUET_HKDF_SHA256_MAX_OUT (out untouched, it may be short).
 */
duet_err_t duet_hkdf_sha256_expand(uint8_t *out, size_t out_len,
                                   const uint8_t prk[static DUET_HKDF_SHA256_PRK_BYTES],
                                   const uint8_t *info, size_t info_len) DUET_MUST_CHECK;

/* HKDF = Expand(Extract(salt, ikm), info, out_len). DUET_ERANGE as for _expand. */
duet_err_t duet_hkdf_sha256(uint8_t *out, size_t out_len, const uint8_t *salt, size_t salt_len,
                            const uint8_t *ikm, size_t ikm_len, const uint8_t *info,
                            size_t info_len) DUET_MUST_CHECK;

/* The same three for SHA-512 (PRK 64 bytes, L <= 255 * 64). */
void duet_hkdf_sha512_extract(uint8_t prk[static DUET_HKDF_SHA512_PRK_BYTES],
                              const uint8_t *salt, size_t salt_len, const uint8_t *ikm,
                              size_t ikm_len);

duet_err_t duet_hkdf_sha512_expand(uint8_t *out, size_t out_len,
                                   const uint8_t prk[static DUET_HKDF_SHA512_PRK_BYTES],
                                   const uint8_t *info, size_t info_len) DUET_MUST_CHECK;

duet_err_t duet_hkdf_sha512(uint8_t *out, size_t out_len, const uint8_t *salt, size_t salt_len,
                            const uint8_t *ikm, size_t ikm_len, const uint8_t *info,
                            size_t info_len) DUET_MUST_CHECK;

#endif /* DUET_HKDF_H */
