/*
 * Pairing codes: what a user types round-trips; every word and nameplate is equally likely;
 * typos and malformed codes are refused locally (DUET_EBADCODE) before any guess is spent.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "code.h"
#include "testrng.h"
#include "wordlist.h"

static duet_err_t parse_str(duet_code_t *c, const char *s)
{
    return duet_code_parse(c, s, strlen(s));
}

/* The list the codes are drawn from: what code.h and docs/wordlist.md promise. */
static void test_wordlist_shape(void **state)
{
    (void)state;
    assert_int_equal(DUET_WORDLIST_LEN, 1163);
    for (size_t i = 0; i < DUET_WORDLIST_LEN; i++) {
        const char *w = duet_wordlist[i];
        size_t n = strlen(w);
        assert_true(n >= 3 && n <= DUET_CODE_MAX_WORD);
        for (size_t j = 0; j < n; j++) {
            assert_true(w[j] >= 'a' && w[j] <= 'z');
        }
        if (i > 0) {
            assert_true(strcmp(duet_wordlist[i - 1], w) < 0); /* sorted, no duplicates */
        }
    }
}

static void test_round_trip(void **state)
{
    (void)state;
    duet_testrng_t tr;
    duet_rng_t rng = duet_testrng_init(&tr, 42);
    for (int i = 0; i < 2000; i++) {
        duet_code_t c, p;
        uint16_t np = (uint16_t)(i % 3 == 0 ? 0 : 1 + i % 9999);
        assert_int_equal(duet_code_generate(&c, np, rng), DUET_OK);
        if (np != 0) {
            assert_int_equal(c.nameplate, np);
        }
        assert_true(c.nameplate >= 1 && c.nameplate <= 9999);
        assert_int_not_equal(c.words[0], c.words[1]);
        assert_int_equal(strlen(c.text), c.text_len);
        assert_true(c.text_len <= DUET_CODE_MAX_LEN);
        /* The text is exactly N-word-word. */
        char want[64];
        snprintf(want, sizeof want, "%u-%s-%s", (unsigned)c.nameplate, duet_wordlist[c.words[0]],
                 duet_wordlist[c.words[1]]);
        assert_string_equal(c.text, want);
        assert_int_equal(parse_str(&p, c.text), DUET_OK);
        assert_int_equal(p.nameplate, c.nameplate);
        assert_int_equal(p.words[0], c.words[0]);
        assert_int_equal(p.words[1], c.words[1]);
        assert_string_equal(p.text, c.text);
        duet_code_dispose(&c);
        assert_true(sodium_is_zero((const unsigned char *)&c, sizeof c));
    }
    duet_code_t c;
    assert_int_equal(duet_code_generate(&c, 10000, rng), DUET_ERANGE);
    assert_int_equal(duet_code_generate(&c, 9999, rng), DUET_OK);
    assert_int_equal(duet_code_generate(&c, 1, rng), DUET_OK);
}

/* Pearson's chi-square of counts against expected counts. */
static double chi_square(const unsigned *count, const double *expect, size_t cells)
{
    double x = 0;
    for (size_t i = 0; i < cells; i++) {
        double d = (double)count[i] - expect[i];
        x += d * d / expect[i];
    }
    return x;
}

/* Within 6 standard deviations of the chi-square mean (df) on both sides: a generator that
 * favours some words fails high; one too even to be random (a counter) fails low. */
static void assert_chi_square_plausible(double x, double df)
{
    double sd = sqrt(2 * df);
    if (x > df + 6 * sd || x < df - 6 * sd) {
        fail_msg("chi-square %.1f implausible for %.0f degrees of freedom", x, df);
    }
}

static void test_uniform_words(void **state)
{
    (void)state;
    enum { PER_WORD = 100, N = DUET_WORDLIST_LEN * PER_WORD };
    static unsigned first[DUET_WORDLIST_LEN], second[DUET_WORDLIST_LEN];
    static double expect[DUET_WORDLIST_LEN];
    duet_testrng_t tr;
    duet_rng_t rng = duet_testrng_init(&tr, 7);
    for (int i = 0; i < N; i++) {
        duet_code_t c;
        assert_int_equal(duet_code_generate(&c, 1, rng), DUET_OK);
        first[c.words[0]]++;
        second[c.words[1]]++;
        assert_int_not_equal(c.words[0], c.words[1]);
    }
    for (size_t i = 0; i < DUET_WORDLIST_LEN; i++) {
        expect[i] = PER_WORD;
    }
    assert_chi_square_plausible(chi_square(first, expect, DUET_WORDLIST_LEN),
                                DUET_WORDLIST_LEN - 1);
    assert_chi_square_plausible(chi_square(second, expect, DUET_WORDLIST_LEN),
                                DUET_WORDLIST_LEN - 1);
}

static void test_uniform_nameplate(void **state)
{
    (void)state;
    enum { N = 50000, BUCKETS = 100 };
    unsigned count[BUCKETS] = {0};
    double expect[BUCKETS];
    duet_testrng_t tr;
    duet_rng_t rng = duet_testrng_init(&tr, 8);
    unsigned lo = 10000, hi = 0;
    for (int i = 0; i < N; i++) {
        duet_code_t c;
        assert_int_equal(duet_code_generate(&c, 0, rng), DUET_OK);
        count[(c.nameplate - 1) / 100]++;
        lo = c.nameplate < lo ? c.nameplate : lo;
        hi = c.nameplate > hi ? c.nameplate : hi;
    }
    assert_true(lo >= 1 && hi <= 9999);
    for (int b = 0; b < BUCKETS; b++) {
        unsigned size = b == BUCKETS - 1 ? 99 : 100; /* 9901..9999 */
        expect[b] = (double)N * size / 9999.0;
    }
    assert_chi_square_plausible(chi_square(count, expect, BUCKETS), BUCKETS - 1);
}

static void test_case_and_separators(void **state)
{
    (void)state;
    static const char *const same[] = {
        "417-acid-acorn", "417-ACID-ACORN", "417-Acid-aCoRn", "  417-acid-acorn\n",
        "417 acid acorn", "\t417  acid\tacorn \r\n", "417 - acid - acorn", "417-acid acorn",
    };
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        duet_code_t c;
        if (parse_str(&c, same[i]) != DUET_OK) {
            fail_msg("refused: \"%s\"", same[i]);
        }
        assert_string_equal(c.text, "417-acid-acorn");
        assert_int_equal(c.text_len, strlen("417-acid-acorn"));
        assert_int_equal(c.nameplate, 417);
        assert_string_equal(duet_wordlist[c.words[0]], "acid");
        assert_string_equal(duet_wordlist[c.words[1]], "acorn");
    }
}

static void test_rejects(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",                      /* empty */
        "   ",                   /* blank */
        "417",                   /* one field */
        "417-acid",              /* two fields */
        "417-acid-acorn-acre",   /* three words */
        "417-acid-acornx",       /* a word not in the list */
        "417-acid-grief",        /* a word removed from the EFF list */
        "417-acid-acid",         /* the same word twice: never generated */
        "0417-acid-acorn",       /* leading zero */
        "0-acid-acorn",          /* nameplate 0 */
        "10000-acid-acorn",      /* nameplate over 9999 */
        "99999-acid-acorn",      /* too many digits */
        "-417-acid-acorn",       /* leading separator */
        "417-acid-acorn-",       /* trailing separator */
        "417--acid-acorn",       /* two dashes */
        "417- -acid-acorn",      /* two dashes with a space */
        "+417-acid-acorn",       /* sign */
        "41a-acid-acorn",        /* not a number */
        "acid-417-acorn",        /* wrong order */
        "417-ac1d-acorn",        /* digit in a word */
        "417_acid_acorn",        /* other separator */
        "417-acíd-acorn",        /* non-ASCII (UTF-8 i acute) */
        "417-acid-acorn\xef\xbb\xbf", /* a BOM */
        "417\n-acid-acorn",      /* newline inside */
        "417-acidacidacid-acorn", /* word too long */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        duet_code_t c;
        memset(&c, 0xaa, sizeof c);
        if (parse_str(&c, bad[i]) != DUET_EBADCODE) {
            fail_msg("accepted: \"%s\"", bad[i]);
        }
        assert_true(sodium_is_zero((const unsigned char *)&c, sizeof c));
    }
    /* An embedded NUL, and an input over the limit. */
    duet_code_t c;
    assert_int_equal(duet_code_parse(&c, "417-acid\0-acorn", 15), DUET_EBADCODE);
    char longer[DUET_CODE_MAX_INPUT + 2];
    memset(longer, ' ', sizeof longer);
    memcpy(longer, "417-acid-acorn", 14);
    assert_int_equal(duet_code_parse(&c, longer, DUET_CODE_MAX_INPUT), DUET_OK);
    assert_int_equal(duet_code_parse(&c, longer, DUET_CODE_MAX_INPUT + 1), DUET_EBADCODE);
    /* Nameplate bounds that are accepted. */
    assert_int_equal(parse_str(&c, "1-acid-acorn"), DUET_OK);
    assert_int_equal(parse_str(&c, "9999-acid-acorn"), DUET_OK);
    assert_int_equal(c.nameplate, 9999);
}

/* Every word of the list parses, in either position, to its own index. */
static void test_every_word(void **state)
{
    (void)state;
    for (size_t i = 0; i < DUET_WORDLIST_LEN; i++) {
        char buf[64];
        duet_code_t c;
        const char *other = duet_wordlist[(i + 1) % DUET_WORDLIST_LEN];
        snprintf(buf, sizeof buf, "12-%s-%s", duet_wordlist[i], other);
        assert_int_equal(parse_str(&c, buf), DUET_OK);
        assert_int_equal(c.words[0], i);
        snprintf(buf, sizeof buf, "12-%s-%s", other, duet_wordlist[i]);
        assert_int_equal(parse_str(&c, buf), DUET_OK);
        assert_int_equal(c.words[1], i);
    }
}

static void zero_fill(void *ctx, uint8_t *out, size_t n)
{
    (void)ctx;
    memset(out, 0, n);
}

static void test_broken_rng(void **state)
{
    (void)state;
    /* 2^32 mod 1163 != 0, so an all-zero rng only ever gives rejected values. */
    duet_rng_t zero = {zero_fill, NULL};
    duet_code_t c;
    assert_int_equal(duet_code_generate(&c, 5, zero), DUET_EINTERNAL);
    assert_true(sodium_is_zero((const unsigned char *)&c, sizeof c));
}

int main(void)
{
    if (sodium_init() < 0) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wordlist_shape),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_uniform_words),
        cmocka_unit_test(test_uniform_nameplate),
        cmocka_unit_test(test_case_and_separators),
        cmocka_unit_test(test_rejects),
        cmocka_unit_test(test_every_word),
        cmocka_unit_test(test_broken_rng),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
