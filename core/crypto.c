/* see crypto.h */
#include "crypto.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

/* Stands in for a NULL buffer of length 0, so libsodium never sees NULL. */
static const uint8_t empty[1] = {0};

static const uint8_t *nonnull(const uint8_t *p, size_t len)
{
    if (p == NULL) {
        if (len != 0) {
            abort();
        }
        return empty;
    }
    return p;
}

duet_err_t duet_crypto_init(void)
{
    return sodium_init() < 0 ? DUET_EINTERNAL : DUET_OK;
}

/* ---- X25519 -------------------------------------------------------------------------- */

duet_err_t duet_crypto_x25519(uint8_t out[static DUET_CRYPTO_X25519_BYTES],
                              const uint8_t priv[static DUET_CRYPTO_X25519_BYTES],
                              const uint8_t pub[static DUET_CRYPTO_X25519_BYTES])
{
    /* libsodium returns -1 exactly when the result is all zeros; check the bytes too, so
     * the rule does not hang on a detail of one libsodium version. */
    if (crypto_scalarmult(out, priv, pub) != 0 || sodium_is_zero(out, 32)) {
        sodium_memzero(out, DUET_CRYPTO_X25519_BYTES);
        return DUET_EBADKEY;
    }
    return DUET_OK;
}

void duet_crypto_x25519_public(uint8_t pub[static DUET_CRYPTO_X25519_BYTES],
                               const uint8_t priv[static DUET_CRYPTO_X25519_BYTES])
{
    (void)crypto_scalarmult_base(pub, priv);
}

void duet_crypto_x25519_keypair(uint8_t pub[static DUET_CRYPTO_X25519_BYTES],
                                uint8_t priv[static DUET_CRYPTO_X25519_BYTES],
                                const duet_rng_t *rng)
{
    duet_rng_fill(rng, priv, DUET_CRYPTO_X25519_BYTES);
    duet_crypto_x25519_public(pub, priv);
}

/* ---- AEAD ---------------------------------------------------------------------------- */

duet_err_t duet_crypto_aead_seal(uint8_t *out, size_t cap, size_t *out_len,
                                 const uint8_t *plain, size_t plain_len, const uint8_t *ad,
                                 size_t ad_len,
                                 const uint8_t nonce[static DUET_CRYPTO_AEAD_NONCE_BYTES],
                                 const uint8_t key[static DUET_CRYPTO_AEAD_KEY_BYTES])
{
    *out_len = 0;
    if (plain_len > crypto_aead_xchacha20poly1305_ietf_MESSAGEBYTES_MAX ||
        cap < plain_len + DUET_CRYPTO_AEAD_TAG_BYTES) {
        return DUET_ETOOBIG;
    }
    unsigned long long clen = 0;
    (void)crypto_aead_xchacha20poly1305_ietf_encrypt(out, &clen, nonnull(plain, plain_len),
                                                     plain_len, nonnull(ad, ad_len), ad_len,
                                                     NULL, nonce, key);
    *out_len = (size_t)clen;
    return DUET_OK;
}

duet_err_t duet_crypto_aead_open(uint8_t *out, size_t cap, size_t *out_len,
                                 const uint8_t *cipher, size_t cipher_len, const uint8_t *ad,
                                 size_t ad_len,
                                 const uint8_t nonce[static DUET_CRYPTO_AEAD_NONCE_BYTES],
                                 const uint8_t key[static DUET_CRYPTO_AEAD_KEY_BYTES])
{
    *out_len = 0;
    if (cipher_len < DUET_CRYPTO_AEAD_TAG_BYTES) {
        return DUET_EAUTH;
    }
    if (cap < cipher_len - DUET_CRYPTO_AEAD_TAG_BYTES) {
        return DUET_ETOOBIG;
    }
    /* libsodium verifies the tag before it decrypts, and zeroes out on failure. */
    unsigned long long mlen = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(out, &mlen, NULL, cipher, cipher_len,
                                                   nonnull(ad, ad_len), ad_len, nonce,
                                                   key) != 0) {
        return DUET_EAUTH;
    }
    *out_len = (size_t)mlen;
    return DUET_OK;
}

/* ---- Ed25519 ------------------------------------------------------------------------- */

void duet_crypto_sign_seed_keypair(uint8_t pk[static DUET_CRYPTO_SIGN_PUBLIC_BYTES],
                                   uint8_t sk[static DUET_CRYPTO_SIGN_SECRET_BYTES],
                                   const uint8_t seed[static DUET_CRYPTO_SIGN_SEED_BYTES])
{
    (void)crypto_sign_seed_keypair(pk, sk, seed);
}

void duet_crypto_sign_keypair(uint8_t pk[static DUET_CRYPTO_SIGN_PUBLIC_BYTES],
                              uint8_t sk[static DUET_CRYPTO_SIGN_SECRET_BYTES],
                              const duet_rng_t *rng)
{
    uint8_t seed[DUET_CRYPTO_SIGN_SEED_BYTES];
    duet_rng_fill(rng, seed, sizeof seed);
    duet_crypto_sign_seed_keypair(pk, sk, seed);
    sodium_memzero(seed, sizeof seed);
}

void duet_crypto_sign(uint8_t sig[static DUET_CRYPTO_SIGN_BYTES], const uint8_t *msg,
                      size_t msg_len, const uint8_t sk[static DUET_CRYPTO_SIGN_SECRET_BYTES])
{
    (void)crypto_sign_detached(sig, NULL, nonnull(msg, msg_len), msg_len, sk);
}

duet_err_t duet_crypto_sign_verify(const uint8_t sig[static DUET_CRYPTO_SIGN_BYTES],
                                   const uint8_t *msg, size_t msg_len,
                                   const uint8_t pk[static DUET_CRYPTO_SIGN_PUBLIC_BYTES])
{
    return crypto_sign_verify_detached(sig, nonnull(msg, msg_len), msg_len, pk) == 0
               ? DUET_OK
               : DUET_EAUTH;
}

/* ---- BLAKE2b ------------------------------------------------------------------------- */

void duet_crypto_blake2b(uint8_t *out, size_t out_len, const uint8_t *in, size_t in_len,
                         const uint8_t *key, size_t key_len)
{
    if (out == NULL || out_len < DUET_CRYPTO_BLAKE2B_MIN_BYTES ||
        out_len > DUET_CRYPTO_BLAKE2B_MAX_BYTES || key_len > DUET_CRYPTO_BLAKE2B_MAX_KEY_BYTES) {
        abort();
    }
    (void)crypto_generichash(out, out_len, nonnull(in, in_len), in_len,
                             key_len ? nonnull(key, key_len) : NULL, key_len);
}
