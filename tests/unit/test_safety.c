/*
 * The safety number: both devices print the same 60 digits whichever key is "mine", any
 * change to either key changes them, and they match values computed independently (Python
 * hashlib, tools/safety_vector.py) in $DUET_VECTORS/duet/safety.json.
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

#include "safety.h"

static json_t *load(void)
{
    const char *dir = getenv("DUET_VECTORS");
    assert_non_null(dir);
    char path[1024];
    int n = snprintf(path, sizeof path, "%s/duet/safety.json", dir);
    assert_true(n > 0 && (size_t)n < sizeof path);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (root == NULL) {
        fail_msg("cannot load %s: %s", path, jerr.text);
    }
    return root;
}

static const char *str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    if (s == NULL) {
        fail_msg("missing %s", key);
    }
    return s;
}

static void key(json_t *o, const char *name, uint8_t out[32])
{
    const char *hex = str(o, name);
    size_t len = 0;
    assert_int_equal(sodium_hex2bin(out, 32, hex, strlen(hex), NULL, &len, NULL), 0);
    assert_int_equal(len, 32);
}

static void test_known_answers(void **state)
{
    (void)state;
    json_t *root = load();
    assert_int_equal(json_integer_value(json_object_get(root, "version")), DUET_SAFETY_VERSION);
    assert_int_equal(json_integer_value(json_object_get(root, "iterations")),
                     DUET_SAFETY_ITERATIONS);
    json_t *cases = json_object_get(root, "cases");
    size_t n = json_array_size(cases);
    assert_true(n >= 1);
    for (size_t i = 0; i < n; i++) {
        json_t *c = json_array_get(cases, i);
        uint8_t a[32], b[32];
        char fp[DUET_SAFETY_HALF_DIGITS + 1];
        duet_safety_t s;
        key(c, "key_a", a);
        key(c, "key_b", b);
        duet_safety_fingerprint(a, fp);
        assert_string_equal(fp, str(c, "fingerprint_a"));
        duet_safety_fingerprint(b, fp);
        assert_string_equal(fp, str(c, "fingerprint_b"));
        duet_safety_number(a, b, &s);
        assert_string_equal(s.digits, str(c, "safety_number"));
        assert_string_equal(s.text, str(c, "text"));
        duet_safety_number(b, a, &s);
        assert_string_equal(s.digits, str(c, "safety_number"));
        assert_string_equal(s.text, str(c, "text"));
    }
    json_decref(root);
}

static void test_format(void **state)
{
    (void)state;
    uint8_t a[32], b[32];
    duet_safety_t s;
    for (int round = 0; round < 8; round++) {
        randombytes_buf(a, sizeof a);
        randombytes_buf(b, sizeof b);
        duet_safety_number(a, b, &s);
        assert_int_equal(strlen(s.digits), DUET_SAFETY_DIGITS);
        assert_int_equal(strlen(s.text), DUET_SAFETY_TEXT_LEN);
        for (size_t i = 0; i < DUET_SAFETY_DIGITS; i++) {
            assert_true(s.digits[i] >= '0' && s.digits[i] <= '9');
        }
        /* 12 groups of 5 digits separated by single spaces, the same digits in order. */
        size_t d = 0;
        for (size_t i = 0; i < DUET_SAFETY_TEXT_LEN; i++) {
            if (i % 6 == 5) {
                assert_int_equal(s.text[i], ' ');
            } else {
                assert_int_equal(s.text[i], s.digits[d++]);
            }
        }
        assert_int_equal(d, DUET_SAFETY_DIGITS);
        /* The halves are sorted and are the two fingerprints. */
        char fa[31], fb[31];
        duet_safety_fingerprint(a, fa);
        duet_safety_fingerprint(b, fb);
        assert_true(strncmp(s.digits, s.digits + 30, 30) <= 0);
        assert_true((strncmp(s.digits, fa, 30) == 0 && strncmp(s.digits + 30, fb, 30) == 0) ||
                    (strncmp(s.digits, fb, 30) == 0 && strncmp(s.digits + 30, fa, 30) == 0));
    }
}

static void test_order_independent(void **state)
{
    (void)state;
    uint8_t a[32], b[32];
    duet_safety_t ab, ba;
    for (int round = 0; round < 8; round++) {
        randombytes_buf(a, sizeof a);
        randombytes_buf(b, sizeof b);
        duet_safety_number(a, b, &ab);
        duet_safety_number(b, a, &ba);
        assert_string_equal(ab.digits, ba.digits);
        assert_string_equal(ab.text, ba.text);
    }
}

/* One bit of either key, anywhere, changes the number. */
static void test_bit_flips(void **state)
{
    (void)state;
    uint8_t a[32], b[32];
    duet_safety_t base, flipped;
    randombytes_buf(a, sizeof a);
    randombytes_buf(b, sizeof b);
    duet_safety_number(a, b, &base);
    static const unsigned bits[] = {0, 1, 7, 8, 100, 128, 200, 254, 255};
    for (size_t i = 0; i < sizeof bits / sizeof bits[0]; i++) {
        unsigned bit = bits[i];
        for (int which = 0; which < 2; which++) {
            uint8_t *k = which == 0 ? a : b;
            k[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            duet_safety_number(a, b, &flipped);
            assert_string_not_equal(flipped.digits, base.digits);
            k[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        }
    }
    duet_safety_number(a, b, &flipped);
    assert_string_equal(flipped.digits, base.digits);
}

int main(void)
{
    if (sodium_init() < 0) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_order_independent),
        cmocka_unit_test(test_bit_flips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
