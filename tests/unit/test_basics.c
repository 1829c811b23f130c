/*
 * Small modules: the hybrid logical clock, device ids, the JSON writer of the CLI.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>

#include "hlc.h"
#include "identity.h"
#include "json.h"

static void test_hlc(void **state)
{
    (void)state;
    /* Monotonic even when the wall clock stands still or goes back. */
    uint64_t t = duet_hlc_local(0, 1000);
    assert_int_equal(t, DUET_HLC_MAKE(1000, 0));
    uint64_t t2 = duet_hlc_local(t, 1000);
    assert_int_equal(t2, DUET_HLC_MAKE(1000, 1));
    uint64_t t3 = duet_hlc_local(t2, 900);
    assert_true(t3 > t2);
    assert_int_equal(DUET_HLC_MS(t3), 1000);
    assert_int_equal(duet_hlc_local(t3, 2000), DUET_HLC_MAKE(2000, 0));
    /* Receiving from a partner whose clock is ahead: a reply written after it sorts after. */
    uint64_t theirs = DUET_HLC_MAKE(5000, 3);
    uint64_t mine = duet_hlc_recv(DUET_HLC_MAKE(1000, 0), theirs, 1200);
    assert_true(mine > theirs);
    assert_true(duet_hlc_local(mine, 1300) > theirs);
    /* The counter carries into the milliseconds instead of wrapping. */
    uint64_t full = DUET_HLC_MAKE(7, 0xffff);
    assert_true(duet_hlc_local(full, 0) > full);
}

static void test_device_id(void **state)
{
    (void)state;
    uint8_t pk[32], pk2[32];
    char id[DUET_DEVICE_ID_LEN + 1], id2[DUET_DEVICE_ID_LEN + 1];
    for (int k = 0; k < 50; k++) {
        randombytes_buf(pk, sizeof pk);
        duet_identity_device_id(pk, id);
        assert_int_equal(strlen(id), DUET_DEVICE_ID_LEN);
        assert_int_equal(id[6], '-');
        assert_int_equal(id[13], '-');
        assert_true(duet_identity_device_id_valid(id));
        /* Deterministic, and any key bit changes it. */
        duet_identity_device_id(pk, id2);
        assert_string_equal(id, id2);
        memcpy(pk2, pk, 32);
        pk2[k % 32] ^= (uint8_t)(1u << (k % 8));
        duet_identity_device_id(pk2, id2);
        assert_string_not_equal(id, id2);
        /* A mistyped character is caught by the checksum (almost always: 10 bits). */
        char typo[DUET_DEVICE_ID_LEN + 1];
        memcpy(typo, id, sizeof typo);
        size_t pos = (size_t)(k % 18) + (size_t)(k % 18 >= 6) + (size_t)(k % 18 >= 12);
        typo[pos] = typo[pos] == '0' ? '1' : '0';
        (void)duet_identity_device_id_valid(typo); /* must not crash; usually false */
    }
    assert_false(duet_identity_device_id_valid(""));
    assert_false(duet_identity_device_id_valid("abcdef-ghjkmn-pqrstu"));
    assert_false(duet_identity_device_id_valid("ABCDEF-GHJKMN-PQRSTV"));
    assert_true(duet_identity_name_valid("river", 5));
    assert_true(duet_identity_name_valid("caf\xc3\xa9", 5));
    assert_false(duet_identity_name_valid("", 0));
    assert_false(duet_identity_name_valid("a\nb", 3));
    assert_false(duet_identity_name_valid("\xff", 1));
}

static void test_json_writer(void **state)
{
    (void)state;
    duet_json_t j;
    duet_json_init(&j);
    duet_json_obj(&j);
    duet_json_kstr(&j, "event", "queued");
    duet_json_key(&j, "text");
    static const char raw[] = "a\"b\\c\n\t\x01\x1f\x7f caf\xc3\xa9 \xf0\x9f\x92\x9c bad\xff end";
    duet_json_strn(&j, raw, sizeof raw - 1);
    duet_json_key(&j, "partner");
    duet_json_obj(&j);
    duet_json_kint(&j, "n", -5);
    duet_json_knull(&j, "x");
    duet_json_end(&j);
    duet_json_key(&j, "list");
    duet_json_arr(&j);
    duet_json_int(&j, 1);
    duet_json_bool(&j, true);
    duet_json_str(&j, "s");
    duet_json_arr_end(&j);
    duet_json_end(&j);
    const char *text = duet_json_text(&j);
    /* It parses, and the values come back. */
    json_error_t err;
    json_t *o = json_loads(text, 0, &err);
    if (o == NULL) {
        fail_msg("not JSON: %s (%s)", text, err.text);
    }
    assert_string_equal(json_string_value(json_object_get(o, "event")), "queued");
    const char *t = json_string_value(json_object_get(o, "text"));
    assert_non_null(strstr(t, "a\"b\\c\n\t\x01\x1f\x7f caf\xc3\xa9 \xf0\x9f\x92\x9c bad"));
    assert_non_null(strstr(t, "\xef\xbf\xbd end")); /* the bad byte became U+FFFD */
    assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "partner"), "n")), -5);
    assert_int_equal(json_array_size(json_object_get(o, "list")), 3);
    json_decref(o);
    /* Control characters are escaped, not written raw: one record stays one line. */
    assert_null(strchr(text, '\n'));
    assert_non_null(strstr(text, "\\u0001"));
    assert_non_null(strstr(text, "\\u007f"));
    duet_json_dispose(&j);
}

int main(void)
{
    if (sodium_init() < 0) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hlc),
        cmocka_unit_test(test_device_id),
        cmocka_unit_test(test_json_writer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
