/*
 * duet — the few libsodium calls duet makes everywhere, wrapped so that keys, nonces and
 * lengths are passed one correct way.
 *
 * These are thin: each wrapper is one libsodium call plus the check a caller would forget
 * (an all-zero X25519 result, an output buffer too small, a length that overflows). The
 * primitives are libsodium's; duet composes protocols from them and never implements one.
 * HMAC and HKDF are in hkdf.h.
 *
 *  - X25519 (RFC 7748) for every Diffie-Hellman: a result of all zeros (the peer's public
 *    key has small order) is DUET_EBADKEY, never a usable secret.
 *  - XChaCha20-Poly1305-IETF with associated data as duet's AEAD (24-byte nonces, so random
 *    nonces are safe; 16-byte tags).
 *  - Ed25519 detached signatures for identities.
 *  - BLAKE2b (the hash of duet's Noise suite), keyed or not, 16..64 bytes out.
 *
 * Conventions of this module:
 *  - No state, no allocation. Randomness only from a duet_rng_t the caller passes.
 *  - Inputs are borrowed for the call; a pointer may be NULL only when its length is 0.
 *  - Out-parameters are set to safe values on entry (*out_len = 0). A buffer too small is
 *    DUET_ETOOBIG, found before anything is written.
 *  - Every authentication failure (AEAD tag, signature) is DUET_EAUTH without detail, and
 *    an AEAD open verifies the tag before it writes any plaintext.
 *  - Secrets computed here that do not reach the caller are wiped; a failed X25519 or AEAD
 *    open leaves its output zeroed.
 *  - Caller bugs (NULL with a non-zero length, a BLAKE2b length outside its range) abort.
 *  - duet_crypto_init() (sodium_init) must have succeeded before any other call; the
 *    program calls it once at start-up.
 */
#ifndef DUET_CRYPTO_H
#define DUET_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "rng.h"

#define DUET_CRYPTO_X25519_BYTES 32u     /* public key, private key and shared secret */

#define DUET_CRYPTO_AEAD_KEY_BYTES 32u
#define DUET_CRYPTO_AEAD_NONCE_BYTES 24u
#define DUET_CRYPTO_AEAD_TAG_BYTES 16u

#define DUET_CRYPTO_SIGN_PUBLIC_BYTES 32u
#define DUET_CRYPTO_SIGN_SECRET_BYTES 64u /* libsodium's seed || public key */
#define DUET_CRYPTO_SIGN_SEED_BYTES 32u
#define DUET_CRYPTO_SIGN_BYTES 64u

#define DUET_CRYPTO_BLAKE2B_MIN_BYTES 16u
#define DUET_CRYPTO_BLAKE2B_MAX_BYTES 64u
#define DUET_CRYPTO_BLAKE2B_MAX_KEY_BYTES 64u

/* Initialise libsodium (idempotent, thread-safe). DUET_EINTERNAL if it cannot start. */
duet_err_t duet_crypto_init(void) DUET_MUST_CHECK;

/* ---- X25519 -------------------------------------------------------------------------- */

/*
 * out = X25519(priv, pub). DUET_EBADKEY when the result is all zeros (pub has small order,
 * RFC 7748 section 6.1); out is then zeroed. out may not overlap priv.
 */
duet_err_t duet_crypto_x25519(uint8_t out[static DUET_CRYPTO_X25519_BYTES],
                              const uint8_t priv[static DUET_CRYPTO_X25519_BYTES],
                              const uint8_t pub[static DUET_CRYPTO_X25519_BYTES]) DUET_MUST_CHECK;

/* pub = X25519(priv, 9): the public key of priv (clamped as RFC 7748 says). */
void duet_crypto_x25519_public(uint8_t pub[static DUET_CRYPTO_X25519_BYTES],
                               const uint8_t priv[static DUET_CRYPTO_X25519_BYTES]);

/* A fresh key pair: priv = 32 bytes from rng, pub its public key. */
void duet_crypto_x25519_keypair(uint8_t pub[static DUET_CRYPTO_X25519_BYTES],
                                uint8_t priv[static DUET_CRYPTO_X25519_BYTES],
                                const duet_rng_t *rng);

/* ---- AEAD: XChaCha20-Poly1305-IETF ----------------------------------------------------- */

/*
 * out[0..plain_len+16) = ciphertext || tag of plain under key and nonce, with ad
 * authenticated. *out_len = plain_len + 16. DUET_ETOOBIG when cap is too small (or the
 * length overflows). out may equal plain (in place) but not overlap it otherwise.
 * A (key, nonce) pair must never seal two different messages.
 */
duet_err_t duet_crypto_aead_seal(uint8_t *out, size_t cap, size_t *out_len,
                                 const uint8_t *plain, size_t plain_len, const uint8_t *ad,
                                 size_t ad_len,
                                 const uint8_t nonce[static DUET_CRYPTO_AEAD_NONCE_BYTES],
                                 const uint8_t key[static DUET_CRYPTO_AEAD_KEY_BYTES])
    DUET_MUST_CHECK;

/*
 * Verify cipher[0..cipher_len) (ciphertext || tag) with ad, then write the plaintext,
 * cipher_len - 16 bytes, to out; *out_len = that length. DUET_EAUTH on a bad tag or a
 * cipher shorter than a tag (no plaintext is released: out[0..cipher_len-16) is zeroed),
 * DUET_ETOOBIG when cap is too small. out may equal cipher (in place) but not overlap it
 * otherwise.
 */
duet_err_t duet_crypto_aead_open(uint8_t *out, size_t cap, size_t *out_len,
                                 const uint8_t *cipher, size_t cipher_len, const uint8_t *ad,
                                 size_t ad_len,
                                 const uint8_t nonce[static DUET_CRYPTO_AEAD_NONCE_BYTES],
                                 const uint8_t key[static DUET_CRYPTO_AEAD_KEY_BYTES])
    DUET_MUST_CHECK;

/* ---- Ed25519 ------------------------------------------------------------------------- */

/* The key pair of a 32-byte seed (deterministic). */
void duet_crypto_sign_seed_keypair(uint8_t pk[static DUET_CRYPTO_SIGN_PUBLIC_BYTES],
                                   uint8_t sk[static DUET_CRYPTO_SIGN_SECRET_BYTES],
                                   const uint8_t seed[static DUET_CRYPTO_SIGN_SEED_BYTES]);

/* A fresh key pair from a seed drawn from rng (the seed is wiped). */
void duet_crypto_sign_keypair(uint8_t pk[static DUET_CRYPTO_SIGN_PUBLIC_BYTES],
                              uint8_t sk[static DUET_CRYPTO_SIGN_SECRET_BYTES],
                              const duet_rng_t *rng);

/* sig = Ed25519 signature of msg[0..msg_len) under sk. */
void duet_crypto_sign(uint8_t sig[static DUET_CRYPTO_SIGN_BYTES], const uint8_t *msg,
                      size_t msg_len, const uint8_t sk[static DUET_CRYPTO_SIGN_SECRET_BYTES]);

/* DUET_OK when sig is a valid signature of msg under pk, else DUET_EAUTH (this includes
 * non-canonical signatures and small-order public keys, which libsodium refuses). */
duet_err_t duet_crypto_sign_verify(const uint8_t sig[static DUET_CRYPTO_SIGN_BYTES],
                                   const uint8_t *msg, size_t msg_len,
                                   const uint8_t pk[static DUET_CRYPTO_SIGN_PUBLIC_BYTES])
    DUET_MUST_CHECK;

/* ---- BLAKE2b ------------------------------------------------------------------------- */

/* out[0..out_len) = BLAKE2b(in, key) with out_len in [16, 64] and key_len in [0, 64]
 * (abort otherwise). out may alias in. */
void duet_crypto_blake2b(uint8_t *out, size_t out_len, const uint8_t *in, size_t in_len,
                         const uint8_t *key, size_t key_len);

#endif /* DUET_CRYPTO_H */
