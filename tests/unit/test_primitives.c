/*
 * core/crypto: the thin libsodium wrappers, checked against third-party vectors read at run
 * time from $DUET_VECTORS: Wycheproof ChaCha20-Poly1305 (IETF, libsodium directly: duet does
 * not wrap it) and XChaCha20-Poly1305 (through duet_crypto_aead_*), X25519 (the 31 cases
 * with an all-zero shared secret must be refused by duet_crypto_x25519), Ed25519 (verify
 * accepts exactly the valid signatures) and the BLAKE2b KAT (one-shot and streaming in
 * uneven chunks). The HKDF and HMAC files are run by test_hkdf.c. Every file must yield
 * its declared number of cases, so a missing or empty file fails.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>

#include "crypto.h"
#include "testrng.h"

/* ---- vector helpers ------------------------------------------------------------------ */

static json_t *load_vectors(const char *rel)
{
    const char *dir = getenv("DUET_VECTORS");
    char path[1024];
    assert_non_null(dir);
    int w = snprintf(path, sizeof path, "%s/%s", dir, rel);
    assert_true(w > 0 && (size_t)w < sizeof path);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (root == NULL) {
        fail_msg("%s: %s (line %d)", path, jerr.text, jerr.line);
    }
    return root;
}

/* Decode the hex string field `name` of obj into a fresh buffer (at least 1 byte). */
static uint8_t *hex_field(const json_t *obj, const char *name, size_t *len)
{
    const char *hex = json_string_value(json_object_get(obj, name));
    assert_non_null(hex);
    size_t hex_len = strlen(hex);
    uint8_t *bin = malloc(hex_len / 2 + 1);
    assert_non_null(bin);
    assert_int_equal(sodium_hex2bin(bin, hex_len / 2 + 1, hex, hex_len, NULL, len, NULL), 0);
    assert_int_equal(*len * 2, hex_len);
    return bin;
}

static size_t int_field(const json_t *obj, const char *name)
{
    const json_t *v = json_object_get(obj, name);
    assert_true(json_is_integer(v));
    assert_true(json_integer_value(v) >= 0);
    return (size_t)json_integer_value(v);
}

static const char *result_of(const json_t *t)
{
    const char *r = json_string_value(json_object_get(t, "result"));
    assert_non_null(r);
    return r;
}

static int has_flag(const json_t *t, const char *flag)
{
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(t, "flags"), i, f) {
        if (strcmp(json_string_value(f), flag) == 0) {
            return 1;
        }
    }
    return 0;
}

/* ---- AEAD ---------------------------------------------------------------------------- */

/* One AEAD under test: seal/open returning 0 on success, like libsodium. */
typedef struct {
    size_t nonce_bits;
    int (*seal)(uint8_t *out, size_t *out_len, const uint8_t *m, size_t mlen, const uint8_t *ad,
                size_t adlen, const uint8_t *nonce, const uint8_t *key);
    int (*open)(uint8_t *out, size_t *out_len, const uint8_t *c, size_t clen, const uint8_t *ad,
                size_t adlen, const uint8_t *nonce, const uint8_t *key);
} aead_impl;

static int ietf_seal(uint8_t *out, size_t *out_len, const uint8_t *m, size_t mlen,
                     const uint8_t *ad, size_t adlen, const uint8_t *nonce, const uint8_t *key)
{
    unsigned long long clen;
    int r = crypto_aead_chacha20poly1305_ietf_encrypt(out, &clen, m, mlen, ad, adlen, NULL,
                                                      nonce, key);
    *out_len = (size_t)clen;
    return r;
}

static int ietf_open(uint8_t *out, size_t *out_len, const uint8_t *c, size_t clen,
                     const uint8_t *ad, size_t adlen, const uint8_t *nonce, const uint8_t *key)
{
    unsigned long long mlen = 0;
    int r = crypto_aead_chacha20poly1305_ietf_decrypt(out, &mlen, NULL, c, clen, ad, adlen,
                                                      nonce, key);
    *out_len = (size_t)mlen;
    return r;
}

static int duet_seal(uint8_t *out, size_t *out_len, const uint8_t *m, size_t mlen,
                     const uint8_t *ad, size_t adlen, const uint8_t *nonce, const uint8_t *key)
{
    return duet_crypto_aead_seal(out, mlen + DUET_CRYPTO_AEAD_TAG_BYTES, out_len, m, mlen, ad,
                                 adlen, nonce, key) == DUET_OK
               ? 0
               : -1;
}

static int duet_open(uint8_t *out, size_t *out_len, const uint8_t *c, size_t clen,
                     const uint8_t *ad, size_t adlen, const uint8_t *nonce, const uint8_t *key)
{
    duet_err_t err = duet_crypto_aead_open(out, clen, out_len, c, clen, ad, adlen, nonce, key);
    if (err != DUET_OK) {
        assert_int_equal(err, DUET_EAUTH);
        return -1;
    }
    return 0;
}

static void run_aead_file(const char *rel, const aead_impl *impl)
{
    json_t *root = load_vectors(rel);
    size_t ran = 0, valid = 0, refused = 0, bad_nonce = 0;
    size_t i, j;
    json_t *group, *t;
    json_array_foreach(json_object_get(root, "testGroups"), i, group) {
        int usable_nonce = int_field(group, "ivSize") == impl->nonce_bits;
        assert_int_equal(int_field(group, "keySize"), 256);
        assert_int_equal(int_field(group, "tagSize"), 128);
        json_array_foreach(json_object_get(group, "tests"), j, t) {
            int is_valid = strcmp(result_of(t), "valid") == 0;
            ran++;
            if (!usable_nonce) {
                /* A nonce of another size cannot be expressed in libsodium's API: it is
                 * rejected by construction (the README's rule). */
                assert_false(is_valid);
                assert_true(has_flag(t, "InvalidNonceSize"));
                bad_nonce++;
                refused++;
                continue;
            }
            size_t key_len, iv_len, aad_len, msg_len, ct_len, tag_len;
            uint8_t *key = hex_field(t, "key", &key_len);
            uint8_t *iv = hex_field(t, "iv", &iv_len);
            uint8_t *aad = hex_field(t, "aad", &aad_len);
            uint8_t *msg = hex_field(t, "msg", &msg_len);
            uint8_t *ct = hex_field(t, "ct", &ct_len);
            uint8_t *tag = hex_field(t, "tag", &tag_len);
            assert_int_equal(key_len, 32);
            assert_int_equal(iv_len * 8, impl->nonce_bits);
            assert_int_equal(tag_len, 16);
            uint8_t *sealed = malloc(ct_len + tag_len);
            uint8_t *out = malloc(msg_len + ct_len + 32);
            assert_non_null(sealed);
            assert_non_null(out);
            memcpy(sealed, ct, ct_len);
            memcpy(sealed + ct_len, tag, tag_len);
            size_t out_len = 0;
            int opened = impl->open(out, &out_len, sealed, ct_len + tag_len,
                                    aad_len ? aad : NULL, aad_len, iv, key);
            if (is_valid) {
                assert_int_equal(opened, 0);
                assert_int_equal(out_len, msg_len);
                assert_memory_equal(out, msg, msg_len);
                assert_int_equal(impl->seal(out, &out_len, msg_len ? msg : NULL, msg_len,
                                            aad_len ? aad : NULL, aad_len, iv, key),
                                 0);
                assert_int_equal(out_len, ct_len + tag_len);
                assert_memory_equal(out, sealed, out_len);
                valid++;
            } else {
                assert_int_not_equal(opened, 0);
                refused++;
            }
            free(key), free(iv), free(aad), free(msg), free(ct), free(tag), free(sealed);
            free(out);
        }
    }
    assert_int_equal(ran, int_field(root, "numberOfTests"));
    assert_true(valid > 0 && refused > bad_nonce);
    printf("# %s: %zu cases (%zu valid, %zu refused, %zu of them for the nonce size)\n", rel,
           ran, valid, refused, bad_nonce);
    json_decref(root);
}

static void test_wycheproof_chacha20_poly1305(void **state)
{
    (void)state;
    const aead_impl impl = {96, ietf_seal, ietf_open};
    run_aead_file("wycheproof/chacha20_poly1305_test.json", &impl);
}

static void test_wycheproof_xchacha20_poly1305(void **state)
{
    (void)state;
    const aead_impl impl = {192, duet_seal, duet_open};
    run_aead_file("wycheproof/xchacha20_poly1305_test.json", &impl);
}

/* The wrapper's own rules: a short buffer is refused before writing, a short cipher is an
 * authentication failure, a flipped bit anywhere (cipher, tag, ad, nonce, key) fails. */
static void test_aead_wrapper(void **state)
{
    (void)state;
    duet_testrng_t tr;
    duet_rng_t rng = duet_testrng_init(&tr, 1);
    uint8_t key[32], nonce[24], ad[7], msg[50], sealed[66], out[66];
    size_t len = 99;
    duet_rng_fill(&rng, key, sizeof key);
    duet_rng_fill(&rng, nonce, sizeof nonce);
    duet_rng_fill(&rng, ad, sizeof ad);
    duet_rng_fill(&rng, msg, sizeof msg);

    memset(sealed, 0xAA, sizeof sealed);
    assert_int_equal(duet_crypto_aead_seal(sealed, 65, &len, msg, 50, ad, 7, nonce, key),
                     DUET_ETOOBIG);
    assert_int_equal(len, 0);
    assert_int_equal(sealed[0], 0xAA);
    assert_int_equal(duet_crypto_aead_seal(sealed, 66, &len, msg, 50, ad, 7, nonce, key),
                     DUET_OK);
    assert_int_equal(len, 66);

    assert_int_equal(duet_crypto_aead_open(out, 49, &len, sealed, 66, ad, 7, nonce, key),
                     DUET_ETOOBIG);
    assert_int_equal(duet_crypto_aead_open(out, 66, &len, sealed, 15, ad, 7, nonce, key),
                     DUET_EAUTH);
    assert_int_equal(duet_crypto_aead_open(out, 66, &len, sealed, 66, ad, 7, nonce, key),
                     DUET_OK);
    assert_int_equal(len, 50);
    assert_memory_equal(out, msg, 50);

    for (size_t i = 0; i < 66; i++) {
        sealed[i] ^= 1;
        assert_int_equal(duet_crypto_aead_open(out, 66, &len, sealed, 66, ad, 7, nonce, key),
                         DUET_EAUTH);
        assert_int_equal(len, 0);
        sealed[i] ^= 1;
    }
    ad[6] ^= 1;
    assert_int_equal(duet_crypto_aead_open(out, 66, &len, sealed, 66, ad, 7, nonce, key),
                     DUET_EAUTH);
    ad[6] ^= 1;
    nonce[23] ^= 1;
    assert_int_equal(duet_crypto_aead_open(out, 66, &len, sealed, 66, ad, 7, nonce, key),
                     DUET_EAUTH);
    nonce[23] ^= 1;
    key[0] ^= 1;
    assert_int_equal(duet_crypto_aead_open(out, 66, &len, sealed, 66, ad, 7, nonce, key),
                     DUET_EAUTH);
    key[0] ^= 1;
    /* In place. */
    memcpy(out, msg, 50);
    assert_int_equal(duet_crypto_aead_seal(out, 66, &len, out, 50, ad, 7, nonce, key), DUET_OK);
    assert_memory_equal(out, sealed, 66);
    assert_int_equal(duet_crypto_aead_open(out, 66, &len, out, 66, ad, 7, nonce, key), DUET_OK);
    assert_memory_equal(out, msg, 50);
    /* Empty message and empty ad. */
    assert_int_equal(duet_crypto_aead_seal(sealed, 16, &len, NULL, 0, NULL, 0, nonce, key),
                     DUET_OK);
    assert_int_equal(len, 16);
    assert_int_equal(duet_crypto_aead_open(out, 0, &len, sealed, 16, NULL, 0, nonce, key),
                     DUET_OK);
    assert_int_equal(len, 0);
}

/* ---- X25519 -------------------------------------------------------------------------- */

static void test_wycheproof_x25519(void **state)
{
    (void)state;
    json_t *root = load_vectors("wycheproof/x25519_test.json");
    size_t ran = 0, matched = 0, zero = 0;
    size_t i, j;
    json_t *group, *t;
    json_array_foreach(json_object_get(root, "testGroups"), i, group) {
        assert_string_equal(json_string_value(json_object_get(group, "curve")), "curve25519");
        json_array_foreach(json_object_get(group, "tests"), j, t) {
            size_t pub_len, priv_len, shared_len;
            uint8_t *pub = hex_field(t, "public", &pub_len);
            uint8_t *priv = hex_field(t, "private", &priv_len);
            uint8_t *shared = hex_field(t, "shared", &shared_len);
            uint8_t out[32];
            assert_int_equal(pub_len, 32);
            assert_int_equal(priv_len, 32);
            assert_int_equal(shared_len, 32);
            /* No case in this file is "invalid": every one has a defined result, and the
             * all-zero results are the ones duet must refuse. */
            assert_string_not_equal(result_of(t), "invalid");
            duet_err_t err = duet_crypto_x25519(out, priv, pub);
            if (sodium_is_zero(shared, 32)) {
                assert_true(has_flag(t, "ZeroSharedSecret"));
                assert_int_equal(err, DUET_EBADKEY);
                assert_true(sodium_is_zero(out, 32));
                zero++;
            } else {
                assert_int_equal(err, DUET_OK);
                assert_memory_equal(out, shared, 32);
                matched++;
            }
            ran++;
            free(pub), free(priv), free(shared);
        }
    }
    assert_int_equal(ran, int_field(root, "numberOfTests"));
    assert_int_equal(zero, 31);
    assert_true(matched > 0);
    printf("# x25519: %zu cases (%zu shared secrets matched, %zu all-zero refused)\n", ran,
           matched, zero);
    json_decref(root);
}

static void test_x25519_keypair(void **state)
{
    (void)state;
    duet_testrng_t tr;
    duet_rng_t rng = duet_testrng_init(&tr, 2);
    uint8_t apub[32], apriv[32], bpub[32], bpriv[32], s1[32], s2[32];
    duet_crypto_x25519_keypair(apub, apriv, &rng);
    duet_crypto_x25519_keypair(bpub, bpriv, &rng);
    assert_memory_not_equal(apriv, bpriv, 32);
    assert_int_equal(duet_crypto_x25519(s1, apriv, bpub), DUET_OK);
    assert_int_equal(duet_crypto_x25519(s2, bpriv, apub), DUET_OK);
    assert_memory_equal(s1, s2, 32);
    /* The public key of a zero point: u = 0 has order 1, so any DH with it is refused. */
    uint8_t zero_pub[32] = {0};
    assert_int_equal(duet_crypto_x25519(s1, apriv, zero_pub), DUET_EBADKEY);
    assert_true(sodium_is_zero(s1, 32));
}

/* ---- Ed25519 ------------------------------------------------------------------------- */

static void test_wycheproof_ed25519(void **state)
{
    (void)state;
    json_t *root = load_vectors("wycheproof/ed25519_test.json");
    size_t ran = 0, accepted = 0, refused = 0;
    size_t i, j;
    json_t *group, *t;
    json_array_foreach(json_object_get(root, "testGroups"), i, group) {
        size_t pk_len;
        uint8_t *pk = hex_field(json_object_get(group, "publicKey"), "pk", &pk_len);
        assert_int_equal(pk_len, 32);
        json_array_foreach(json_object_get(group, "tests"), j, t) {
            size_t msg_len, sig_len;
            uint8_t *msg = hex_field(t, "msg", &msg_len);
            uint8_t *sig = hex_field(t, "sig", &sig_len);
            /* A signature that is not 64 bytes is a rejection by construction. */
            int ok = sig_len == DUET_CRYPTO_SIGN_BYTES &&
                     duet_crypto_sign_verify(sig, msg_len ? msg : NULL, msg_len, pk) == DUET_OK;
            if (strcmp(result_of(t), "valid") == 0) {
                assert_true(ok);
                accepted++;
            } else {
                assert_false(ok);
                refused++;
            }
            ran++;
            free(msg), free(sig);
        }
        free(pk);
    }
    assert_int_equal(ran, int_field(root, "numberOfTests"));
    assert_true(accepted > 0 && refused > 0);
    printf("# ed25519: %zu cases (%zu accepted, %zu refused)\n", ran, accepted, refused);
    json_decref(root);
}

static void test_sign_roundtrip(void **state)
{
    (void)state;
    duet_testrng_t tr;
    duet_rng_t rng = duet_testrng_init(&tr, 3);
    uint8_t pk[32], sk[64], pk2[32], sk2[64], sig[64], msg[33];
    duet_crypto_sign_keypair(pk, sk, &rng);
    duet_crypto_sign_keypair(pk2, sk2, &rng);
    duet_rng_fill(&rng, msg, sizeof msg);
    duet_crypto_sign(sig, msg, sizeof msg, sk);
    assert_int_equal(duet_crypto_sign_verify(sig, msg, sizeof msg, pk), DUET_OK);
    assert_int_equal(duet_crypto_sign_verify(sig, msg, sizeof msg, pk2), DUET_EAUTH);
    msg[32] ^= 1;
    assert_int_equal(duet_crypto_sign_verify(sig, msg, sizeof msg, pk), DUET_EAUTH);
    msg[32] ^= 1;
    sig[63] ^= 1;
    assert_int_equal(duet_crypto_sign_verify(sig, msg, sizeof msg, pk), DUET_EAUTH);
}

/* ---- BLAKE2b ------------------------------------------------------------------------- */

static void test_blake2b_kat(void **state)
{
    (void)state;
    json_t *root = load_vectors("blake2/blake2b-kat.json");
    size_t ran = 0, keyed = 0;
    size_t i;
    json_t *t;
    assert_true(json_is_array(root));
    json_array_foreach(root, i, t) {
        assert_string_equal(json_string_value(json_object_get(t, "hash")), "blake2b");
        size_t in_len, key_len, out_len;
        uint8_t *in = hex_field(t, "in", &in_len);
        uint8_t *key = hex_field(t, "key", &key_len);
        uint8_t *want = hex_field(t, "out", &out_len);
        uint8_t got[64];
        assert_int_equal(out_len, 64);

        duet_crypto_blake2b(got, 64, in_len ? in : NULL, in_len, key_len ? key : NULL, key_len);
        assert_memory_equal(got, want, 64);

        /* Streaming, in chunks of 1, 2, 3, ... bytes shifted by the case number, so that
         * chunk boundaries fall at every offset modulo the 128-byte block over the file. */
        crypto_generichash_state st;
        assert_int_equal(crypto_generichash_init(&st, key_len ? key : NULL, key_len, 64), 0);
        size_t off = 0, chunk = 1 + i % 7;
        while (off < in_len) {
            size_t n = in_len - off < chunk ? in_len - off : chunk;
            assert_int_equal(crypto_generichash_update(&st, in + off, n), 0);
            off += n;
            chunk = chunk * 3 % 131 + 1;
        }
        memset(got, 0, sizeof got);
        assert_int_equal(crypto_generichash_final(&st, got, 64), 0);
        assert_memory_equal(got, want, 64);

        keyed += key_len != 0;
        ran++;
        free(in), free(key), free(want);
    }
    assert_int_equal(ran, 512);
    assert_int_equal(keyed, 256);
    printf("# blake2b: %zu cases (%zu keyed), one-shot and streaming\n", ran, keyed);
    json_decref(root);
}

int main(void)
{
    if (duet_crypto_init() != DUET_OK) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wycheproof_chacha20_poly1305),
        cmocka_unit_test(test_wycheproof_xchacha20_poly1305),
        cmocka_unit_test(test_aead_wrapper),
        cmocka_unit_test(test_wycheproof_x25519),
        cmocka_unit_test(test_x25519_keypair),
        cmocka_unit_test(test_wycheproof_ed25519),
        cmocka_unit_test(test_sign_roundtrip),
        cmocka_unit_test(test_blake2b_kat),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
