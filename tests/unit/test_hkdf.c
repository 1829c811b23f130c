/*
 * core/hkdf: HMAC-SHA-256/512 and HKDF-SHA-256/512 against the Wycheproof files (read at
 * run time from $DUET_VECTORS/wycheproof), plus the API's own promises: L > 255*HashLen is
 * refused before anything is written, Extract+Expand equals the one-shot call, an empty salt
 * equals HashLen zero bytes, and a bit flipped in any input changes the output.
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

#include "hkdf.h"

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

/* ---- Wycheproof HKDF ----------------------------------------------------------------- */

typedef duet_err_t (*hkdf_fn)(uint8_t *, size_t, const uint8_t *, size_t, const uint8_t *,
                              size_t, const uint8_t *, size_t);

static void run_hkdf_file(const char *rel, hkdf_fn fn, size_t hash_len)
{
    json_t *root = load_vectors(rel);
    size_t ran = 0, valid = 0, refused = 0;
    size_t i, j;
    json_t *group, *t;
    json_array_foreach(json_object_get(root, "testGroups"), i, group) {
        json_array_foreach(json_object_get(group, "tests"), j, t) {
            size_t ikm_len, salt_len, info_len, okm_len;
            uint8_t *ikm = hex_field(t, "ikm", &ikm_len);
            uint8_t *salt = hex_field(t, "salt", &salt_len);
            uint8_t *info = hex_field(t, "info", &info_len);
            uint8_t *okm = hex_field(t, "okm", &okm_len);
            size_t size = int_field(t, "size");
            uint8_t *out = malloc(size + 1);
            assert_non_null(out);
            duet_err_t err = fn(out, size, salt_len ? salt : NULL, salt_len, ikm, ikm_len,
                                info_len ? info : NULL, info_len);
            if (strcmp(result_of(t), "valid") == 0) {
                assert_int_equal(err, DUET_OK);
                assert_int_equal(okm_len, size);
                assert_memory_equal(out, okm, size);
                valid++;
            } else {
                /* The only invalid HKDF cases ask for more than 255*HashLen bytes. */
                assert_true(size > 255 * hash_len);
                assert_int_equal(err, DUET_ERANGE);
                refused++;
            }
            ran++;
            free(ikm), free(salt), free(info), free(okm), free(out);
        }
    }
    assert_int_equal(ran, int_field(root, "numberOfTests"));
    assert_true(valid > 0 && refused > 0);
    printf("# %s: %zu cases (%zu valid, %zu refused)\n", rel, ran, valid, refused);
    json_decref(root);
}

static void test_wycheproof_hkdf_sha256(void **state)
{
    (void)state;
    run_hkdf_file("wycheproof/hkdf_sha256_test.json", duet_hkdf_sha256, 32);
}

static void test_wycheproof_hkdf_sha512(void **state)
{
    (void)state;
    run_hkdf_file("wycheproof/hkdf_sha512_test.json", duet_hkdf_sha512, 64);
}

/* ---- Wycheproof HMAC ----------------------------------------------------------------- */

typedef void (*hmac_fn)(uint8_t *, const uint8_t *, size_t, const uint8_t *, size_t);
typedef duet_err_t (*hmac_verify_fn)(const uint8_t *, size_t, const uint8_t *, size_t,
                                     const uint8_t *, size_t);

static void run_hmac_file(const char *rel, hmac_fn mac, hmac_verify_fn verify, size_t hash_len)
{
    json_t *root = load_vectors(rel);
    size_t ran = 0, valid = 0, refused = 0;
    size_t i, j;
    json_t *group, *t;
    json_array_foreach(json_object_get(root, "testGroups"), i, group) {
        size_t tag_bytes = int_field(group, "tagSize") / 8;
        assert_true(tag_bytes >= DUET_HMAC_MIN_TAG_BYTES && tag_bytes <= hash_len);
        json_array_foreach(json_object_get(group, "tests"), j, t) {
            size_t key_len, msg_len, tag_len;
            uint8_t *key = hex_field(t, "key", &key_len);
            uint8_t *msg = hex_field(t, "msg", &msg_len);
            uint8_t *tag = hex_field(t, "tag", &tag_len);
            uint8_t full[64];
            assert_int_equal(tag_len, tag_bytes);
            mac(full, key, key_len, msg_len ? msg : NULL, msg_len);
            duet_err_t err = verify(tag, tag_len, key, key_len, msg_len ? msg : NULL, msg_len);
            if (strcmp(result_of(t), "valid") == 0) {
                assert_memory_equal(full, tag, tag_len);
                assert_int_equal(err, DUET_OK);
                valid++;
            } else {
                assert_int_equal(err, DUET_EAUTH);
                refused++;
            }
            ran++;
            free(key), free(msg), free(tag);
        }
    }
    assert_int_equal(ran, int_field(root, "numberOfTests"));
    assert_true(valid > 0 && refused > 0);
    printf("# %s: %zu cases (%zu valid, %zu refused)\n", rel, ran, valid, refused);
    json_decref(root);
}

static void test_wycheproof_hmac_sha256(void **state)
{
    (void)state;
    run_hmac_file("wycheproof/hmac_sha256_test.json", duet_hmac_sha256, duet_hmac_sha256_verify,
                  32);
}

static void test_wycheproof_hmac_sha512(void **state)
{
    (void)state;
    run_hmac_file("wycheproof/hmac_sha512_test.json", duet_hmac_sha512, duet_hmac_sha512_verify,
                  64);
}

/* ---- API promises -------------------------------------------------------------------- */

static void fill(uint8_t *p, size_t n, uint8_t start)
{
    for (size_t i = 0; i < n; i++) {
        p[i] = (uint8_t)(start + i);
    }
}

/* Asking for more than 255*HashLen is refused and writes nothing; exactly 255*HashLen works. */
static void test_range(void **state)
{
    (void)state;
    static uint8_t out[255 * 64 + 1];
    uint8_t ikm[16];
    fill(ikm, sizeof ikm, 1);
    memset(out, 0xAA, sizeof out);
    assert_int_equal(duet_hkdf_sha256(out, 255 * 32 + 1, NULL, 0, ikm, sizeof ikm, NULL, 0),
                     DUET_ERANGE);
    assert_int_equal(duet_hkdf_sha512(out, 255 * 64 + 1, NULL, 0, ikm, sizeof ikm, NULL, 0),
                     DUET_ERANGE);
    for (size_t i = 0; i < sizeof out; i++) {
        assert_int_equal(out[i], 0xAA);
    }
    assert_int_equal(duet_hkdf_sha256(out, 255 * 32, NULL, 0, ikm, sizeof ikm, NULL, 0),
                     DUET_OK);
    assert_int_equal(out[255 * 32], 0xAA);
    assert_int_equal(duet_hkdf_sha512(out, 255 * 64, NULL, 0, ikm, sizeof ikm, NULL, 0),
                     DUET_OK);
    assert_int_equal(out[255 * 64], 0xAA);
    /* L = 0 is a valid request that writes nothing. */
    assert_int_equal(duet_hkdf_sha256(NULL, 0, NULL, 0, ikm, sizeof ikm, NULL, 0), DUET_OK);
}

/* Extract then Expand equals the one-shot call; a shorter output is a prefix of a longer one;
 * an absent salt equals HashLen zero bytes. */
static void test_composition(void **state)
{
    (void)state;
    uint8_t ikm[40], salt[13], info[9], prk[64], a[200], b[200], zeros[64] = {0};
    fill(ikm, sizeof ikm, 3);
    fill(salt, sizeof salt, 50);
    fill(info, sizeof info, 99);

    duet_hkdf_sha256_extract(prk, salt, sizeof salt, ikm, sizeof ikm);
    assert_int_equal(duet_hkdf_sha256_expand(a, sizeof a, prk, info, sizeof info), DUET_OK);
    assert_int_equal(duet_hkdf_sha256(b, sizeof b, salt, sizeof salt, ikm, sizeof ikm, info,
                                      sizeof info),
                     DUET_OK);
    assert_memory_equal(a, b, sizeof a);
    assert_int_equal(duet_hkdf_sha256(b, 33, salt, sizeof salt, ikm, sizeof ikm, info,
                                      sizeof info),
                     DUET_OK);
    assert_memory_equal(a, b, 33);

    duet_hkdf_sha512_extract(prk, salt, sizeof salt, ikm, sizeof ikm);
    assert_int_equal(duet_hkdf_sha512_expand(a, sizeof a, prk, info, sizeof info), DUET_OK);
    assert_int_equal(duet_hkdf_sha512(b, sizeof b, salt, sizeof salt, ikm, sizeof ikm, info,
                                      sizeof info),
                     DUET_OK);
    assert_memory_equal(a, b, sizeof a);

    assert_int_equal(duet_hkdf_sha256(a, 64, NULL, 0, ikm, sizeof ikm, info, sizeof info),
                     DUET_OK);
    assert_int_equal(duet_hkdf_sha256(b, 64, zeros, 32, ikm, sizeof ikm, info, sizeof info),
                     DUET_OK);
    assert_memory_equal(a, b, 64);
    assert_int_equal(duet_hkdf_sha512(a, 64, NULL, 0, ikm, sizeof ikm, info, sizeof info),
                     DUET_OK);
    assert_int_equal(duet_hkdf_sha512(b, 64, zeros, 64, ikm, sizeof ikm, info, sizeof info),
                     DUET_OK);
    assert_memory_equal(a, b, 64);
}

/* Salt and ikm are not interchangeable, and every input byte matters. */
static void test_inputs_matter(void **state)
{
    (void)state;
    uint8_t x[32], y[32], info[8], ref[64], out[64];
    fill(x, sizeof x, 7);
    fill(y, sizeof y, 70);
    fill(info, sizeof info, 200);
    assert_int_equal(duet_hkdf_sha256(ref, 64, x, 32, y, 32, info, 8), DUET_OK);
    assert_int_equal(duet_hkdf_sha256(out, 64, y, 32, x, 32, info, 8), DUET_OK);
    assert_memory_not_equal(ref, out, 64);
    for (size_t bit = 0; bit < 8 * 8; bit += 7) {
        info[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(duet_hkdf_sha256(out, 64, x, 32, y, 32, info, 8), DUET_OK);
        assert_memory_not_equal(ref, out, 64);
        info[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    assert_int_equal(duet_hkdf_sha256(out, 64, x, 32, y, 32, info, 8), DUET_OK);
    assert_memory_equal(ref, out, 64);
}

/* A key longer than the block is hashed first (RFC 2104): HMAC(k) == HMAC(H(k)). */
static void test_long_key(void **state)
{
    (void)state;
    uint8_t key[200], hk[64], msg[5] = {1, 2, 3, 4, 5}, a[64], b[64];
    fill(key, sizeof key, 9);
    crypto_hash_sha256(hk, key, sizeof key);
    duet_hmac_sha256(a, key, sizeof key, msg, sizeof msg);
    duet_hmac_sha256(b, hk, 32, msg, sizeof msg);
    assert_memory_equal(a, b, 32);
    crypto_hash_sha512(hk, key, sizeof key);
    duet_hmac_sha512(a, key, sizeof key, msg, sizeof msg);
    duet_hmac_sha512(b, hk, 64, msg, sizeof msg);
    assert_memory_equal(a, b, 64);
    /* A truncated tag with one flipped bit does not verify. */
    duet_hmac_sha256(a, key, sizeof key, msg, sizeof msg);
    assert_int_equal(duet_hmac_sha256_verify(a, 16, key, sizeof key, msg, sizeof msg), DUET_OK);
    a[15] ^= 0x80;
    assert_int_equal(duet_hmac_sha256_verify(a, 16, key, sizeof key, msg, sizeof msg),
                     DUET_EAUTH);
}

int main(void)
{
    if (sodium_init() < 0) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wycheproof_hkdf_sha256),
        cmocka_unit_test(test_wycheproof_hkdf_sha512),
        cmocka_unit_test(test_wycheproof_hmac_sha256),
        cmocka_unit_test(test_wycheproof_hmac_sha512),
        cmocka_unit_test(test_range),
        cmocka_unit_test(test_composition),
        cmocka_unit_test(test_inputs_matter),
        cmocka_unit_test(test_long_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
