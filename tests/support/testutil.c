/* see testutil.h */
#define _XOPEN_SOURCE 700
#include "testutil.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *duet_test_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/duet-test.XXXXXX", base && base[0] ? base : "/tmp");
    if (mkdtemp(tmpl) == NULL) {
        abort();
    }
    char *p = strdup(tmpl);
    if (p == NULL) {
        abort();
    }
    return p;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void duet_test_rmrf(const char *path)
{
    (void)nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

void duet_test_path(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap) {
        abort();
    }
}

uint8_t *duet_test_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    *len = 0;
    if (f == NULL) {
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap + 1);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
        }
        if (buf == NULL) {
            abort();
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        if (r == 0) {
            break;
        }
        n += r;
    }
    fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

void duet_test_write(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        abort();
    }
}

int duet_test_contains(const uint8_t *hay, size_t hlen, const void *needle, size_t nlen)
{
    if (nlen == 0 || hlen < nlen) {
        return 0;
    }
    for (size_t i = 0; i + nlen <= hlen; i++) {
        if (hay[i] == *(const uint8_t *)needle && memcmp(hay + i, needle, nlen) == 0) {
            return 1;
        }
    }
    return 0;
}

void duet_test_vector_path(char *out, size_t cap, const char *rel)
{
    const char *dir = getenv("DUET_VECTORS");
    int n = snprintf(out, cap, "%s/%s", dir && dir[0] ? dir : "tests/vectors", rel);
    if (n < 0 || (size_t)n >= cap) {
        abort();
    }
}
