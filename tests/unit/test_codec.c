/*
 * The strict codec against the msgpack test suite (kawanet/msgpack-test-suite, read at run
 * time from tests/vectors/msgpack): every encoding of every value of a type duet uses must
 * decode to that value and re-encode to one of the listed encodings; the types duet never
 * sends (float, ext, timestamp) must be refused. Then the limits and the strict map reader.
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

#include "codec.h"

static const duet_codec_limits_t wide = {
    .max_depth = 16,
    .max_str = 1u << 20,
    .max_bin = 1u << 20,
    .max_array = 1u << 16,
    .max_map = 1u << 16,
    .max_objects = 1u << 20,
};

static size_t unhex_dashed(const char *s, uint8_t *out, size_t cap)
{
    size_t n = 0;
    while (*s) {
        if (*s == '-') {
            s++;
            continue;
        }
        unsigned v;
        assert_int_equal(sscanf(s, "%2x", &v), 1);
        assert_true(n < cap);
        out[n++] = (uint8_t)v;
        s += 2;
    }
    return n;
}

/* Compare a decoded object with the suite's JSON value; kind is the case's value key. */
static int same(const msgpack_object *o, const json_t *v, const char *kind)
{
    if (strcmp(kind, "nil") == 0) {
        return o->type == MSGPACK_OBJECT_NIL;
    }
    if (strcmp(kind, "bool") == 0 || json_is_boolean(v)) {
        return o->type == MSGPACK_OBJECT_BOOLEAN && o->via.boolean == json_is_true(v);
    }
    if (strcmp(kind, "binary") == 0) {
        uint8_t b[256];
        size_t n = unhex_dashed(json_string_value(v), b, sizeof b);
        return o->type == MSGPACK_OBJECT_BIN && o->via.bin.size == n &&
               (n == 0 || memcmp(o->via.bin.ptr, b, n) == 0);
    }
    if (strcmp(kind, "bignum") == 0) {
        const char *s = json_string_value(v);
        if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            return strtoull(s, NULL, 10) == o->via.u64 && s[0] != '-';
        }
        return o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER && strtoll(s, NULL, 10) == o->via.i64;
    }
    if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            return x >= 0 && (uint64_t)x == o->via.u64;
        }
        return o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER && x == o->via.i64;
    }
    if (json_is_string(v)) {
        size_t n = json_string_length(v);
        return o->type == MSGPACK_OBJECT_STR && o->via.str.size == n &&
               (n == 0 || memcmp(o->via.str.ptr, json_string_value(v), n) == 0);
    }
    if (json_is_array(v)) {
        if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != json_array_size(v)) {
            return 0;
        }
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (!same(&o->via.array.ptr[i], json_array_get(v, i), "value")) {
                return 0;
            }
        }
        return 1;
    }
    if (json_is_object(v)) {
        if (o->type != MSGPACK_OBJECT_MAP || o->via.map.size != json_object_size(v)) {
            return 0;
        }
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            if (kv->key.type != MSGPACK_OBJECT_STR) {
                return 0;
            }
            char key[64];
            assert_true(kv->key.via.str.size < sizeof key);
            memcpy(key, kv->key.via.str.ptr, kv->key.via.str.size);
            key[kv->key.via.str.size] = 0;
            const json_t *jv = json_object_get(v, key);
            if (jv == NULL || !same(&kv->val, jv, "value")) {
                return 0;
            }
        }
        return 1;
    }
    return 0;
}

/* Encode a suite value with our encoder. */
static void encode(duet_codec_enc_t *enc, const json_t *v, const char *kind)
{
    if (strcmp(kind, "nil") == 0) {
        duet_codec_put_nil(enc);
    } else if (strcmp(kind, "binary") == 0) {
        uint8_t b[256];
        size_t n = unhex_dashed(json_string_value(v), b, sizeof b);
        duet_codec_put_bin(enc, b, n);
    } else if (strcmp(kind, "bignum") == 0) {
        const char *s = json_string_value(v);
        if (s[0] == '-') {
            duet_codec_put_int(enc, strtoll(s, NULL, 10));
        } else {
            duet_codec_put_uint(enc, strtoull(s, NULL, 10));
        }
    } else if (json_is_boolean(v)) {
        duet_codec_put_bool(enc, json_is_true(v));
    } else if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        if (x >= 0) {
            duet_codec_put_uint(enc, (uint64_t)x);
        } else {
            duet_codec_put_int(enc, x);
        }
    } else if (json_is_string(v)) {
        duet_codec_put_str(enc, json_string_value(v), json_string_length(v));
    } else if (json_is_array(v)) {
        duet_codec_put_array(enc, (uint32_t)json_array_size(v));
        for (size_t i = 0; i < json_array_size(v); i++) {
            encode(enc, json_array_get(v, i), "value");
        }
    } else if (json_is_object(v)) {
        /* The suite's maps have one key or keys in document order; jansson keeps order. */
        duet_codec_put_map(enc, (uint32_t)json_object_size(v));
        const char *k;
        json_t *jv;
        json_object_foreach((json_t *)v, k, jv) {
            duet_codec_put_str(enc, k, strlen(k));
            encode(enc, jv, "value");
        }
    } else {
        fail_msg("unexpected value");
    }
}

static void test_suite(void **state)
{
    (void)state;
    char path[1024];
    const char *dir = getenv("DUET_VECTORS");
    snprintf(path, sizeof path, "%s/msgpack/msgpack-test-suite.json",
             dir ? dir : "tests/vectors");
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_PRESERVE_ORDER, &jerr);
    if (root == NULL) {
        fail_msg("cannot read %s: %s", path, jerr.text);
    }
    unsigned decoded = 0, encoded = 0, refused = 0;
    const char *file;
    json_t *cases;
    json_object_foreach(root, file, cases) {
        for (size_t c = 0; c < json_array_size(cases); c++) {
            json_t *tc = json_array_get(cases, c);
            const char *kind = NULL;
            json_t *value = NULL;
            static const char *const kinds[] = {"nil", "bool", "binary", "bignum", "number",
                                                "string", "array", "map", "timestamp", "ext"};
            for (size_t k = 0; k < sizeof kinds / sizeof kinds[0] && !kind; k++) {
                if ((value = json_object_get(tc, kinds[k])) != NULL) {
                    kind = kinds[k];
                }
            }
            assert_non_null(kind);
            /* Types duet never sends: floats, ext, timestamps. A "number" that is not an
             * integer is a float. */
            bool unused = strcmp(kind, "timestamp") == 0 || strcmp(kind, "ext") == 0 ||
                          (strcmp(kind, "number") == 0 && !json_is_integer(value));
            json_t *encs = json_object_get(tc, "msgpack");
            bool encoding_listed = false;
            duet_codec_enc_t enc;
            duet_codec_enc_init(&enc, 1u << 16);
            if (!unused) {
                encode(&enc, value, kind);
            }
            const uint8_t *mine = NULL;
            size_t mine_len = 0;
            if (!unused) {
                assert_int_equal(duet_codec_enc_finish(&enc, &mine, &mine_len), DUET_OK);
            }
            for (size_t e = 0; e < json_array_size(encs); e++) {
                uint8_t buf[1024];
                size_t n = unhex_dashed(json_string_value(json_array_get(encs, e)), buf,
                                        sizeof buf);
                duet_codec_msg_t msg;
                duet_err_t err = duet_codec_decode(&msg, buf, n, &wide);
                bool is_float = n > 0 && (buf[0] == 0xca || buf[0] == 0xcb);
                if (unused || is_float) {
                    /* Refused on purpose: duet's frames have no floats or extensions. */
                    assert_int_equal(err, DUET_ETYPE);
                    refused++;
                    continue;
                }
                if (err != DUET_OK) {
                    fail_msg("%s case %zu encoding %zu: %s", file, c, e, duet_err_name(err));
                }
                if (!same(&msg.root, value, kind)) {
                    fail_msg("%s case %zu encoding %zu decodes to another value", file, c, e);
                }
                duet_codec_msg_dispose(&msg);
                decoded++;
                if (n == mine_len && memcmp(buf, mine, n) == 0) {
                    encoding_listed = true;
                }
            }
            if (!unused) {
                if (!encoding_listed) {
                    fail_msg("%s case %zu: our encoding is not one the suite lists", file, c);
                }
                encoded++;
            }
            duet_codec_enc_dispose(&enc);
        }
    }
    json_decref(root);
    print_message("msgpack suite: %u encodings decoded, %u values re-encoded, %u refused\n",
                  decoded, encoded, refused);
    assert_true(decoded > 100);
    assert_true(encoded > 40);
    assert_true(refused > 20);
}

static duet_err_t check_hex(const char *hex, const duet_codec_limits_t *lim)
{
    uint8_t buf[256];
    size_t n = unhex_dashed(hex, buf, sizeof buf);
    return duet_codec_check(buf, n, lim);
}

static void test_limits(void **state)
{
    (void)state;
    duet_codec_limits_t lim = duet_codec_default_limits;
    /* An array claiming 4 billion elements in five bytes: refused before any allocation. */
    assert_int_equal(check_hex("dd-ff-ff-ff-ff", &wide), DUET_ETOOBIG);
    assert_int_equal(check_hex("dd-00-00-00-05-01-02", &wide), DUET_ETRUNCATED);
    assert_int_equal(check_hex("93-01-02", &lim), DUET_ETRUNCATED);
    assert_int_equal(check_hex("93-01-02-03-04", &lim), DUET_ETRAILING);
    assert_int_equal(check_hex("c1", &lim), DUET_EDECODE);
    assert_int_equal(check_hex("", &lim), DUET_ETRUNCATED);
    assert_int_equal(check_hex("c4-05-01", &lim), DUET_ETRUNCATED);
    assert_int_equal(check_hex("cd-01", &lim), DUET_ETRUNCATED);
    /* Depth: 6 nested arrays pass, 7 do not. */
    assert_int_equal(check_hex("91-91-91-91-91-90", &lim), DUET_OK);
    assert_int_equal(check_hex("91-91-91-91-91-91-90", &lim), DUET_EDEPTH);
    assert_int_equal(check_hex("91-91-91-91-91-91-01", &lim), DUET_OK);
    assert_int_equal(check_hex("91-91-91-91-91-91-91-01", &lim), DUET_EDEPTH);
    /* String and binary limits. */
    duet_codec_limits_t small = lim;
    small.max_str = 3;
    small.max_bin = 2;
    small.max_array = 2;
    small.max_map = 1;
    small.max_objects = 4;
    assert_int_equal(check_hex("a3-61-62-63", &small), DUET_OK);
    assert_int_equal(check_hex("a4-61-62-63-64", &small), DUET_ETOOBIG);
    assert_int_equal(check_hex("c4-03-01-02-03", &small), DUET_ETOOBIG);
    assert_int_equal(check_hex("93-01-02-03", &small), DUET_ETOOBIG);
    assert_int_equal(check_hex("82-01-02-03-04", &small), DUET_ETOOBIG);
    assert_int_equal(check_hex("92-92-01-02-01", &small), DUET_ETOOBIG); /* 5 objects */
    /* Input over the hard ceiling. */
    uint8_t *big = calloc(1, DUET_CODEC_MAX_INPUT + 1);
    assert_non_null(big);
    assert_int_equal(duet_codec_check(big, DUET_CODEC_MAX_INPUT + 1, &lim), DUET_ETOOBIG);
    free(big);
}

static void test_map_reader(void **state)
{
    (void)state;
    const duet_codec_field_t fields[] = {
        {1, DUET_CODEC_UINT, true},
        {2, DUET_CODEC_STR, false},
        {3, DUET_CODEC_BIN, true},
    };
    const msgpack_object *out[3];
    duet_codec_enc_t enc;
    const uint8_t *p;
    size_t n;
    duet_codec_msg_t msg;

    duet_codec_enc_init(&enc, 1024);
    duet_codec_put_map(&enc, 2);
    duet_codec_put_key(&enc, 1);
    duet_codec_put_uint(&enc, 7);
    duet_codec_put_key(&enc, 3);
    duet_codec_put_bin(&enc, (const uint8_t *)"xy", 2);
    assert_int_equal(duet_codec_enc_finish(&enc, &p, &n), DUET_OK);
    assert_int_equal(duet_codec_decode(&msg, p, n, &duet_codec_default_limits), DUET_OK);
    assert_int_equal(duet_codec_map(&msg.root, fields, 3, out), DUET_OK);
    assert_non_null(out[0]);
    assert_null(out[1]);
    uint64_t v;
    assert_int_equal(duet_codec_get_uint(out[0], 0, 10, &v), DUET_OK);
    assert_int_equal(v, 7);
    assert_int_equal(duet_codec_get_uint(out[0], 8, 10, &v), DUET_ERANGE);
    uint8_t two[2];
    assert_int_equal(duet_codec_get_fixed(out[2], two, 2), DUET_OK);
    assert_int_equal(duet_codec_get_fixed(out[2], two, 1), DUET_ERANGE);
    duet_codec_msg_dispose(&msg);

    /* Unknown key, repeated key, missing key, wrong type, invalid UTF-8. */
    static const char *const bad[] = {
        "82-01-07-04-c4-00",       /* key 4 unknown */
        "83-01-07-01-07-03-c4-00", /* key 1 twice */
        "81-01-07",                /* key 3 missing */
        "82-01-a1-37-03-c4-00",    /* key 1 is a string */
        "83-01-07-02-a1-ff-03-c4-00", /* key 2 is not UTF-8 */
        "82-a1-31-07-03-c4-00",    /* a string key */
        "92-01-02",                /* not a map */
    };
    static const duet_err_t want[] = {DUET_EUNKNOWNKEY, DUET_EUNKNOWNKEY, DUET_EMISSING,
                                      DUET_ETYPE,       DUET_EUTF8,       DUET_EUNKNOWNKEY,
                                      DUET_ETYPE};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t buf[64];
        size_t len = unhex_dashed(bad[i], buf, sizeof buf);
        assert_int_equal(duet_codec_decode(&msg, buf, len, &duet_codec_default_limits), DUET_OK);
        assert_int_equal(duet_codec_map(&msg.root, fields, 3, out), want[i]);
        for (size_t k = 0; k < 3; k++) {
            assert_null(out[k]);
        }
        duet_codec_msg_dispose(&msg);
    }
    duet_codec_enc_dispose(&enc);
}

static void test_encoder_cap(void **state)
{
    (void)state;
    duet_codec_enc_t enc;
    const uint8_t *p;
    size_t n;
    uint8_t blob[100] = {0};
    duet_codec_enc_init(&enc, 64);
    duet_codec_put_bin(&enc, blob, sizeof blob);
    assert_int_equal(duet_codec_enc_finish(&enc, &p, &n), DUET_ETOOBIG);
    assert_null(p);
    duet_codec_enc_reset(&enc);
    duet_codec_put_bin(&enc, blob, 10);
    assert_int_equal(duet_codec_enc_finish(&enc, &p, &n), DUET_OK);
    assert_int_equal(n, 12);
    duet_codec_enc_dispose(&enc);
}

static void test_utf8(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        bool ok;
    } cases[] = {
        {"plain", true},
        {"caf\xc3\xa9", true},
        {"\xe2\x82\xac", true},           /* euro sign */
        {"\xf0\x9f\x92\x9c", true},       /* purple heart */
        {"\xff\xfe bad", false},
        {"\xc0\xaf", false},              /* overlong '/' */
        {"\xe0\x80\xaf", false},          /* overlong */
        {"\xed\xa0\x80", false},          /* surrogate */
        {"\xf4\x90\x80\x80", false},      /* above U+10FFFF */
        {"\xe2\x82", false},              /* truncated */
        {"\x80", false},                  /* lone continuation */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(duet_utf8_valid((const uint8_t *)cases[i].s, strlen(cases[i].s)),
                         cases[i].ok);
    }
    assert_false(duet_utf8_valid((const uint8_t *)"a\0b", 3));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_suite),      cmocka_unit_test(test_limits),
        cmocka_unit_test(test_map_reader), cmocka_unit_test(test_encoder_cap),
        cmocka_unit_test(test_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
