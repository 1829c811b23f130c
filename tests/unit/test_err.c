/* The error table: every code has a distinct name and a message, and unknown codes map to
 * a safe string. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"

static const duet_err_t all[] = {
#define XX_(name, value, msg) DUET_##name,
    DUET_ERR_MAP(XX_)
#undef XX_
};

static void test_names_and_messages(void **state)
{
    (void)state;
    size_t n = sizeof all / sizeof all[0];
    assert_true(n > 10);
    for (size_t i = 0; i < n; i++) {
        assert_non_null(duet_strerror(all[i]));
        assert_true(strlen(duet_strerror(all[i])) > 0);
        assert_string_not_equal(duet_err_name(all[i]), "EUNKNOWN");
        for (size_t j = i + 1; j < n; j++) {
            assert_int_not_equal(all[i], all[j]);
            assert_string_not_equal(duet_err_name(all[i]), duet_err_name(all[j]));
        }
    }
    assert_int_equal(DUET_OK, 0);
    assert_string_equal(duet_err_name(DUET_EAUTH), "EAUTH");
    assert_string_equal(duet_strerror(DUET_EAUTH), "authentication failed");
}

static void test_unknown(void **state)
{
    (void)state;
    assert_string_equal(duet_strerror((duet_err_t)-9999), "unknown error");
    assert_string_equal(duet_err_name((duet_err_t)-9999), "EUNKNOWN");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_and_messages),
        cmocka_unit_test(test_unknown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
