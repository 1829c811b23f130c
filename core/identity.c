/* see identity.h */
#include "identity.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "codec.h"

static const char b32[] = "0123456789abcdefghjkmnpqrstvwxyz";

static void id_hash(const uint8_t pk[32], uint8_t h[10])
{
    static const char label[] = "duet device id v1";
    crypto_generichash_state s;
    crypto_generichash_init(&s, NULL, 0, 10);
    crypto_generichash_update(&s, (const uint8_t *)label, sizeof label - 1);
    crypto_generichash_update(&s, pk, 32);
    crypto_generichash_final(&s, h, 10);
}

static uint16_t id_check(const uint8_t h[10])
{
    static const char label[] = "duet device id check v1";
    uint8_t c[2];
    crypto_generichash_state s;
    crypto_generichash_init(&s, NULL, 0, 2);
    crypto_generichash_update(&s, (const uint8_t *)label, sizeof label - 1);
    crypto_generichash_update(&s, h, 10);
    crypto_generichash_final(&s, c, 2);
    return (uint16_t)(((unsigned)c[0] << 2) | ((unsigned)c[1] >> 6)); /* top 10 bits */
}

/* 18 base32 digits: the 80 bits of h then the 10 checksum bits. */
static void id_render(const uint8_t h[10], uint16_t check, char out[DUET_DEVICE_ID_LEN + 1])
{
    char digits[18];
    uint32_t acc = 0;
    int bits = 0;
    size_t nd = 0;
    for (size_t i = 0; i < 10; i++) {
        acc = (acc << 8) | h[i];
        bits += 8;
        while (bits >= 5) {
            digits[nd++] = b32[(acc >> (bits - 5)) & 31u];
            bits -= 5;
        }
    }
    digits[nd++] = b32[(check >> 5) & 31u];
    digits[nd++] = b32[check & 31u];
    size_t o = 0;
    for (size_t i = 0; i < 18; i++) {
        if (i == 6 || i == 12) {
            out[o++] = '-';
        }
        out[o++] = digits[i];
    }
    out[o] = 0;
}

void duet_identity_device_id(const uint8_t pk[static DUET_IDENTITY_PK_BYTES],
                             char out[static DUET_DEVICE_ID_LEN + 1])
{
    uint8_t h[10];
    id_hash(pk, h);
    id_render(h, id_check(h), out);
}

bool duet_identity_device_id_valid(const char *s)
{
    uint8_t vals[18];
    size_t n = 0;
    if (strlen(s) != DUET_DEVICE_ID_LEN) {
        return false;
    }
    for (size_t i = 0; i < DUET_DEVICE_ID_LEN; i++) {
        if (i == 6 || i == 13) {
            if (s[i] != '-') {
                return false;
            }
            continue;
        }
        const char *p = s[i] ? strchr(b32, s[i]) : NULL;
        if (p == NULL) {
            return false;
        }
        vals[n++] = (uint8_t)(p - b32);
    }
    uint8_t h[10];
    uint32_t acc = 0;
    int bits = 0;
    size_t nh = 0;
    for (size_t i = 0; i < 16; i++) {
        acc = (acc << 5) | vals[i];
        bits += 5;
        if (bits >= 8) {
            h[nh++] = (uint8_t)(acc >> (bits - 8));
            bits -= 8;
        }
    }
    uint16_t check = (uint16_t)((vals[16] << 5) | vals[17]);
    return nh == 10 && check == id_check(h);
}

bool duet_identity_name_valid(const char *name, size_t len)
{
    if (len == 0 || len > DUET_NAME_MAX || !duet_utf8_valid((const uint8_t *)name, len)) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c == 0x7f) {
            return false;
        }
    }
    return true;
}

duet_err_t duet_identity_create(duet_store_t *st, const char *name, duet_identity_t *out)
{
    uint8_t seed[crypto_sign_SEEDBYTES];
    duet_err_t err;
    size_t nlen = strlen(name);
    uint8_t tmp[1];
    size_t tlen;

    memset(out, 0, sizeof *out);
    if (!duet_identity_name_valid(name, nlen)) {
        return DUET_EINVAL;
    }
    err = duet_store_meta_get(st, "identity_pk", tmp, sizeof tmp, &tlen);
    if (err != DUET_ENOENT) {
        return err == DUET_OK || err == DUET_ETOOBIG ? DUET_EALREADYINIT : err;
    }
    out->sk = sodium_malloc(DUET_IDENTITY_SK_BYTES);
    if (out->sk == NULL) {
        return DUET_ENOMEM;
    }
    duet_rng_t rng = duet_store_rng(st);
    duet_rng_fill(&rng, seed, sizeof seed);
    crypto_sign_seed_keypair(out->pk, out->sk, seed);
    sodium_memzero(seed, sizeof seed);
    duet_identity_device_id(out->pk, out->device_id);
    memcpy(out->name, name, nlen + 1);

    if ((err = duet_store_secret_put(st, "identity", out->sk, DUET_IDENTITY_SK_BYTES)) ||
        (err = duet_store_secret_put(st, "name", (const uint8_t *)name, nlen)) ||
        (err = duet_store_meta_set(st, "identity_pk", out->pk, sizeof out->pk)) ||
        (err = duet_store_meta_set(st, "device_id", (const uint8_t *)out->device_id,
                                   strlen(out->device_id)))) {
        duet_identity_dispose(out);
        return err;
    }
    return DUET_OK;
}

duet_err_t duet_identity_load(duet_store_t *st, duet_identity_t *out)
{
    uint8_t *sk = NULL, *name = NULL;
    size_t sklen = 0, nlen = 0, pklen;
    duet_err_t err;

    memset(out, 0, sizeof *out);
    err = duet_store_meta_get(st, "identity_pk", out->pk, sizeof out->pk, &pklen);
    if (err == DUET_ENOENT) {
        return DUET_ENOTINIT;
    }
    if (err != DUET_OK) {
        return err;
    }
    if (pklen != 32) {
        return DUET_ECORRUPT;
    }
    if ((err = duet_store_secret_get(st, "identity", &sk, &sklen)) != DUET_OK) {
        goto cleanup;
    }
    if ((err = duet_store_secret_get(st, "name", &name, &nlen)) != DUET_OK) {
        goto cleanup;
    }
    if (sklen != DUET_IDENTITY_SK_BYTES || nlen > DUET_NAME_MAX ||
        sodium_memcmp(sk + 32, out->pk, 32) != 0) {
        err = DUET_ECORRUPT;
        goto cleanup;
    }
    out->sk = sodium_malloc(DUET_IDENTITY_SK_BYTES);
    if (out->sk == NULL) {
        err = DUET_ENOMEM;
        goto cleanup;
    }
    memcpy(out->sk, sk, DUET_IDENTITY_SK_BYTES);
    memcpy(out->name, name, nlen);
    out->name[nlen] = 0;
    duet_identity_device_id(out->pk, out->device_id);
cleanup:
    if (sk != NULL) {
        sodium_memzero(sk, sklen);
        free(sk);
    }
    if (name != NULL) {
        sodium_memzero(name, nlen);
        free(name);
    }
    if (err != DUET_OK) {
        duet_identity_dispose(out);
    }
    return err;
}

duet_err_t duet_identity_x25519(const duet_identity_t *id, uint8_t priv[static 32],
                                uint8_t pub[static 32])
{
    memset(pub, 0, 32);
    if (crypto_sign_ed25519_sk_to_curve25519(priv, id->sk) != 0) {
        sodium_memzero(priv, 32);
        return DUET_EBADKEY;
    }
    if (crypto_scalarmult_base(pub, priv) != 0) {
        sodium_memzero(priv, 32);
        return DUET_EBADKEY;
    }
    return DUET_OK;
}

duet_err_t duet_identity_pk_to_x25519(const uint8_t edpk[static 32], uint8_t out[static 32])
{
    if (crypto_sign_ed25519_pk_to_curve25519(out, edpk) != 0) {
        memset(out, 0, 32);
        return DUET_EBADKEY;
    }
    return DUET_OK;
}

void duet_identity_dispose(duet_identity_t *id)
{
    if (id->sk != NULL) {
        sodium_free(id->sk);
    }
    sodium_memzero(id, sizeof *id);
}
