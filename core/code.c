/* see code.h */
#include "code.h"

#include <sodium.h>
#include <stdbool.h>
#include <string.h>

#include "wordlist.h"

/* Draws before we call the rng broken: each draw is rejected with probability < 2^-20. */
#define UNIFORM_TRIES 64
#define FIELDS 3

_Static_assert(DUET_WORDLIST_LEN > 1 && DUET_WORDLIST_LEN <= UINT16_MAX, "word indexes");
_Static_assert(4 + 2 * (1 + DUET_CODE_MAX_WORD) <= DUET_CODE_MAX_LEN, "normalised text fits");

/* A uniform value in [0, n), as libsodium's randombytes_uniform: reject the values below
 * 2^32 mod n so that what remains is a whole number of copies of [0, n). */
static duet_err_t uniform(duet_rng_t rng, uint32_t n, uint32_t *out)
{
    const uint32_t min = (uint32_t)(0u - n) % n;
    uint8_t b[4];
    for (int i = 0; i < UNIFORM_TRIES; i++) {
        duet_rng_fill(&rng, b, sizeof b);
        uint32_t r = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                     (uint32_t)b[3] << 24;
        if (r >= min) {
            *out = r % n;
            sodium_memzero(b, sizeof b);
            return DUET_OK;
        }
    }
    sodium_memzero(b, sizeof b);
    return DUET_EINTERNAL;
}

static void put(duet_code_t *code, const char *s, size_t n)
{
    memcpy(code->text + code->text_len, s, n);
    code->text_len += n;
}

/* Fill code->text from the nameplate and word indexes. */
static void render(duet_code_t *code)
{
    char digits[5];
    size_t nd = 0;
    for (unsigned v = code->nameplate; v != 0; v /= 10) {
        digits[sizeof digits - 1 - nd++] = (char)('0' + v % 10);
    }
    code->text_len = 0;
    put(code, digits + sizeof digits - nd, nd);
    for (int i = 0; i < 2; i++) {
        const char *w = duet_wordlist[code->words[i]];
        put(code, "-", 1);
        put(code, w, strlen(w));
    }
    code->text[code->text_len] = '\0';
}

duet_err_t duet_code_generate(duet_code_t *code, uint16_t nameplate, duet_rng_t rng)
{
    uint32_t np = nameplate, w0 = 0, w1 = 0;
    duet_err_t err = DUET_OK;
    sodium_memzero(code, sizeof *code);
    if (nameplate > DUET_CODE_NAMEPLATE_MAX) {
        return DUET_ERANGE;
    }
    if (nameplate == 0) {
        if ((err = uniform(rng, DUET_CODE_NAMEPLATE_MAX, &np)) != DUET_OK) {
            goto cleanup;
        }
        np += DUET_CODE_NAMEPLATE_MIN;
    }
    /* Two distinct words, uniform over the ordered pairs: the second is drawn from the other
     * 1162 words. A repeated word would look like a typo (and the parser refuses it). */
    if ((err = uniform(rng, DUET_WORDLIST_LEN, &w0)) != DUET_OK ||
        (err = uniform(rng, DUET_WORDLIST_LEN - 1, &w1)) != DUET_OK) {
        goto cleanup;
    }
    if (w1 >= w0) {
        w1++;
    }
    code->nameplate = (uint16_t)np;
    code->words[0] = (uint16_t)w0;
    code->words[1] = (uint16_t)w1;
    render(code);
cleanup:
    if (err != DUET_OK) {
        sodium_memzero(code, sizeof *code);
    }
    return err;
}

/* ---- parsing ----------------------------------------------------------------------- */

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static bool is_sep(char c)
{
    return c == '-' || c == ' ' || c == '\t';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static bool is_letter(char c)
{
    c = lower(c);
    return c >= 'a' && c <= 'z';
}

typedef struct {
    const char *p;
    size_t len;
} field_t;

/* Split s[0..n) (already trimmed) into exactly FIELDS fields. A separator is a run of
 * spaces, tabs and at most one '-'. */
static bool split(const char *s, size_t n, field_t f[FIELDS])
{
    size_t i = 0;
    for (int k = 0; k < FIELDS; k++) {
        if (k > 0) {
            int dashes = 0;
            size_t start = i;
            while (i < n && is_sep(s[i])) {
                dashes += s[i] == '-';
                i++;
            }
            if (i == start || dashes > 1) {
                return false;
            }
        }
        f[k].p = s + i;
        while (i < n && !is_sep(s[i])) {
            i++;
        }
        f[k].len = (size_t)(s + i - f[k].p);
        if (f[k].len == 0) {
            return false;
        }
    }
    return i == n;
}

static bool parse_nameplate(field_t f, uint16_t *out)
{
    if (f.len > 4 || f.p[0] == '0') {
        return false; /* 1..9999, no leading zero (so also not 0) */
    }
    unsigned v = 0;
    for (size_t i = 0; i < f.len; i++) {
        if (!is_digit(f.p[i])) {
            return false;
        }
        v = v * 10 + (unsigned)(f.p[i] - '0');
    }
    *out = (uint16_t)v;
    return true;
}

/* Find the word (lower-cased into a zero-padded buffer) in the list. The scan visits every
 * word and compares fixed-size buffers, so its timing does not depend on which word it is. */
static bool lookup_word(field_t f, uint16_t *out)
{
    uint8_t want[DUET_CODE_MAX_WORD], cand[DUET_CODE_MAX_WORD];
    if (f.len > DUET_CODE_MAX_WORD) {
        return false;
    }
    memset(want, 0, sizeof want);
    for (size_t i = 0; i < f.len; i++) {
        if (!is_letter(f.p[i])) {
            return false;
        }
        want[i] = (uint8_t)lower(f.p[i]);
    }
    unsigned found = 0, idx = 0;
    for (unsigned i = 0; i < DUET_WORDLIST_LEN; i++) {
        const char *w = duet_wordlist[i];
        size_t wl = strlen(w);
        memset(cand, 0, sizeof cand);
        memcpy(cand, w, wl <= sizeof cand ? wl : sizeof cand);
        unsigned eq = (unsigned)(sodium_memcmp(cand, want, sizeof want) == 0);
        unsigned mask = 0u - eq;
        idx = (idx & ~mask) | (i & mask);
        found |= eq;
    }
    *out = (uint16_t)idx;
    sodium_memzero(want, sizeof want);
    return found != 0;
}

duet_err_t duet_code_parse(duet_code_t *code, const char *text, size_t len)
{
    field_t f[FIELDS];
    sodium_memzero(code, sizeof *code);
    if (len > DUET_CODE_MAX_INPUT) {
        return DUET_EBADCODE;
    }
    /* Only printable ASCII and whitespace: refuses NUL, control bytes and any non-ASCII
     * (UTF-8) byte before looking further. */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (!(c >= 0x20 && c < 0x7f) && !is_space((char)c)) {
            return DUET_EBADCODE;
        }
    }
    while (len > 0 && is_space(text[0])) {
        text++;
        len--;
    }
    while (len > 0 && is_space(text[len - 1])) {
        len--;
    }
    if (!split(text, len, f) || !parse_nameplate(f[0], &code->nameplate) ||
        !lookup_word(f[1], &code->words[0]) || !lookup_word(f[2], &code->words[1]) ||
        code->words[0] == code->words[1]) {
        sodium_memzero(code, sizeof *code);
        return DUET_EBADCODE;
    }
    render(code);
    return DUET_OK;
}

void duet_code_dispose(duet_code_t *code)
{
    sodium_memzero(code, sizeof *code);
}
