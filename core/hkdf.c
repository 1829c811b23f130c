/* see hkdf.h */
#include "hkdf.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

/*
 * One implementation for both hashes: a small descriptor names the libsodium HMAC calls
 * and the hash length, and the state is a union large enough for either. The wrappers
 * exist because the libsodium functions take differently typed state pointers.
 */
typedef union {
    crypto_auth_hmacsha256_state s256;
    crypto_auth_hmacsha512_state s512;
} hmac_state;

typedef struct {
    size_t hash_len;
    void (*init)(hmac_state *st, const uint8_t *key, size_t key_len);
    void (*update)(hmac_state *st, const uint8_t *in, size_t in_len);
    void (*final)(hmac_state *st, uint8_t *out);
} hmac_desc;

/* Stands in for a NULL key or message of length 0, so libsodium never sees NULL. */
static const uint8_t empty[1] = {0};

static void check_buf(const void *p, size_t len)
{
    if (p == NULL && len != 0) {
        abort();
    }
}

static void init256(hmac_state *st, const uint8_t *key, size_t key_len)
{
    (void)crypto_auth_hmacsha256_init(&st->s256, key ? key : empty, key_len);
}

static void update256(hmac_state *st, const uint8_t *in, size_t in_len)
{
    if (in_len != 0) {
        (void)crypto_auth_hmacsha256_update(&st->s256, in, in_len);
    }
}

static void final256(hmac_state *st, uint8_t *out)
{
    (void)crypto_auth_hmacsha256_final(&st->s256, out);
}

static void init512(hmac_state *st, const uint8_t *key, size_t key_len)
{
    (void)crypto_auth_hmacsha512_init(&st->s512, key ? key : empty, key_len);
}

static void update512(hmac_state *st, const uint8_t *in, size_t in_len)
{
    if (in_len != 0) {
        (void)crypto_auth_hmacsha512_update(&st->s512, in, in_len);
    }
}

static void final512(hmac_state *st, uint8_t *out)
{
    (void)crypto_auth_hmacsha512_final(&st->s512, out);
}

static const hmac_desc sha256 = {32, init256, update256, final256};
static const hmac_desc sha512 = {64, init512, update512, final512};

static void hmac(const hmac_desc *h, uint8_t *out, const uint8_t *key, size_t key_len,
                 const uint8_t *msg, size_t msg_len)
{
    hmac_state st;
    check_buf(key, key_len);
    check_buf(msg, msg_len);
    h->init(&st, key, key_len);
    h->update(&st, msg, msg_len);
    h->final(&st, out);
    sodium_memzero(&st, sizeof st);
}

static duet_err_t hmac_verify(const hmac_desc *h, const uint8_t *tag, size_t tag_len,
                              const uint8_t *key, size_t key_len, const uint8_t *msg,
                              size_t msg_len)
{
    uint8_t full[DUET_HMAC_SHA512_BYTES];
    if (tag == NULL || tag_len < DUET_HMAC_MIN_TAG_BYTES || tag_len > h->hash_len) {
        abort();
    }
    hmac(h, full, key, key_len, msg, msg_len);
    int diff = sodium_memcmp(full, tag, tag_len);
    sodium_memzero(full, sizeof full);
    return diff == 0 ? DUET_OK : DUET_EAUTH;
}

/*
 * RFC 5869 section 2.3. The HMAC state keyed with prk is computed once and copied for each
 * block, which saves two compression-function calls per block (the ratchet derives a
 * message key this way for every message).
 */
static duet_err_t hkdf_expand(const hmac_desc *h, uint8_t *out, size_t out_len,
                              const uint8_t *prk, const uint8_t *info, size_t info_len)
{
    if (prk == NULL) {
        abort();
    }
    check_buf(out, out_len);
    check_buf(info, info_len);
    if (out_len > 255u * h->hash_len) {
        return DUET_ERANGE;
    }
    hmac_state keyed, st;
    uint8_t t[DUET_HMAC_SHA512_BYTES];
    size_t done = 0;
    h->init(&keyed, prk, h->hash_len);
    for (unsigned counter = 1; done < out_len; counter++) {
        uint8_t c = (uint8_t)counter;
        st = keyed;
        if (counter > 1) {
            h->update(&st, t, h->hash_len);
        }
        h->update(&st, info, info_len);
        h->update(&st, &c, 1);
        h->final(&st, t);
        size_t n = out_len - done < h->hash_len ? out_len - done : h->hash_len;
        memcpy(out + done, t, n);
        done += n;
    }
    sodium_memzero(&keyed, sizeof keyed);
    sodium_memzero(&st, sizeof st);
    sodium_memzero(t, sizeof t);
    return DUET_OK;
}

static duet_err_t hkdf(const hmac_desc *h, uint8_t *out, size_t out_len, const uint8_t *salt,
                       size_t salt_len, const uint8_t *ikm, size_t ikm_len, const uint8_t *info,
                       size_t info_len)
{
    uint8_t prk[DUET_HMAC_SHA512_BYTES];
    if (out_len > 255u * h->hash_len) {
        return DUET_ERANGE;
    }
    hmac(h, prk, salt, salt_len, ikm, ikm_len);
    duet_err_t err = hkdf_expand(h, out, out_len, prk, info, info_len);
    sodium_memzero(prk, sizeof prk);
    return err;
}

/* ---- public -------------------------------------------------------------------------- */

void duet_hmac_sha256(uint8_t out[static DUET_HMAC_SHA256_BYTES], const uint8_t *key,
                      size_t key_len, const uint8_t *msg, size_t msg_len)
{
    hmac(&sha256, out, key, key_len, msg, msg_len);
}

void duet_hmac_sha512(uint8_t out[static DUET_HMAC_SHA512_BYTES], const uint8_t *key,
                      size_t key_len, const uint8_t *msg, size_t msg_len)
{
    hmac(&sha512, out, key, key_len, msg, msg_len);
}

duet_err_t duet_hmac_sha256_verify(const uint8_t *tag, size_t tag_len, const uint8_t *key,
                                   size_t key_len, const uint8_t *msg, size_t msg_len)
{
    return hmac_verify(&sha256, tag, tag_len, key, key_len, msg, msg_len);
}

duet_err_t duet_hmac_sha512_verify(const uint8_t *tag, size_t tag_len, const uint8_t *key,
                                   size_t key_len, const uint8_t *msg, size_t msg_len)
{
    return hmac_verify(&sha512, tag, tag_len, key, key_len, msg, msg_len);
}

void duet_hkdf_sha256_extract(uint8_t prk[static DUET_HKDF_SHA256_PRK_BYTES],
                              const uint8_t *salt, size_t salt_len, const uint8_t *ikm,
                              size_t ikm_len)
{
    hmac(&sha256, prk, salt, salt_len, ikm, ikm_len);
}

duet_err_t duet_hkdf_sha256_expand(uint8_t *out, size_t out_len,
                                   const uint8_t prk[static DUET_HKDF_SHA256_PRK_BYTES],
                                   const uint8_t *info, size_t info_len)
{
    return hkdf_expand(&sha256, out, out_len, prk, info, info_len);
}

duet_err_t duet_hkdf_sha256(uint8_t *out, size_t out_len, const uint8_t *salt, size_t salt_len,
                            const uint8_t *ikm, size_t ikm_len, const uint8_t *info,
                            size_t info_len)
{
    return hkdf(&sha256, out, out_len, salt, salt_len, ikm, ikm_len, info, info_len);
}

void duet_hkdf_sha512_extract(uint8_t prk[static DUET_HKDF_SHA512_PRK_BYTES],
                              const uint8_t *salt, size_t salt_len, const uint8_t *ikm,
                              size_t ikm_len)
{
    hmac(&sha512, prk, salt, salt_len, ikm, ikm_len);
}

duet_err_t duet_hkdf_sha512_expand(uint8_t *out, size_t out_len,
                                   const uint8_t prk[static DUET_HKDF_SHA512_PRK_BYTES],
                                   const uint8_t *info, size_t info_len)
{
    return hkdf_expand(&sha512, out, out_len, prk, info, info_len);
}

duet_err_t duet_hkdf_sha512(uint8_t *out, size_t out_len, const uint8_t *salt, size_t salt_len,
                            const uint8_t *ikm, size_t ikm_len, const uint8_t *info,
                            size_t info_len)
{
    return hkdf(&sha512, out, out_len, salt, salt_len, ikm, ikm_len, info, info_len);
}
