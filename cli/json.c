/* see json.h */
#include "json.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

static void put(duet_json_t *j, const char *s, size_t n)
{
    if (j->overflow) {
        return;
    }
    if (n > DUET_JSON_MAX - j->len - 1) {
        j->overflow = true;
        return;
    }
    if (j->len + n + 1 > j->alloc) {
        size_t want = j->alloc ? j->alloc : 256;
        while (want < j->len + n + 1) {
            want *= 2;
        }
        char *nb = realloc(j->buf, want);
        if (nb == NULL) {
            j->overflow = true;
            return;
        }
        j->buf = nb;
        j->alloc = want;
    }
    memcpy(j->buf + j->len, s, n);
    j->len += n;
    j->buf[j->len] = 0;
}

static void putc_(duet_json_t *j, char c)
{
    put(j, &c, 1);
}

/* Before a value (or a key, in an object): the comma if one is due. */
static void sep(duet_json_t *j)
{
    if (j->depth > 0 && j->need_comma[j->depth]) {
        putc_(j, ',');
    }
    if (j->depth > 0) {
        j->need_comma[j->depth] = true;
    }
}

void duet_json_init(duet_json_t *j)
{
    memset(j, 0, sizeof *j);
}

void duet_json_dispose(duet_json_t *j)
{
    free(j->buf);
    memset(j, 0, sizeof *j);
}

void duet_json_reset(duet_json_t *j)
{
    j->len = 0;
    if (j->buf) {
        j->buf[0] = 0;
    }
    j->overflow = false;
    j->depth = 0;
    memset(j->need_comma, 0, sizeof j->need_comma);
}

static void open_(duet_json_t *j, char c)
{
    sep(j);
    putc_(j, c);
    if (j->depth + 1 >= DUET_JSON_DEPTH) {
        j->overflow = true;
        return;
    }
    j->depth++;
    j->need_comma[j->depth] = false;
}

static void close_(duet_json_t *j, char c)
{
    putc_(j, c);
    if (j->depth > 0) {
        j->depth--;
    }
}

void duet_json_obj(duet_json_t *j) { open_(j, '{'); }
void duet_json_end(duet_json_t *j) { close_(j, '}'); }
void duet_json_arr(duet_json_t *j) { open_(j, '['); }
void duet_json_arr_end(duet_json_t *j) { close_(j, ']'); }

static void quoted(duet_json_t *j, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const uint8_t *p = (const uint8_t *)s;
    putc_(j, '"');
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            put(j, e, 2);
            i++;
        } else if (c == '\n') {
            put(j, "\\n", 2), i++;
        } else if (c == '\t') {
            put(j, "\\t", 2), i++;
        } else if (c == '\r') {
            put(j, "\\r", 2), i++;
        } else if (c < 0x20 || c == 0x7f) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            put(j, e, 6);
            i++;
        } else if (c < 0x80) {
            putc_(j, (char)c);
            i++;
        } else {
            /* A multi-byte sequence: copy it if valid, else one U+FFFD for the bad byte. */
            size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
            if (len <= n - i && duet_utf8_valid(p + i, len)) {
                put(j, (const char *)p + i, len);
                i += len;
            } else {
                put(j, "\xef\xbf\xbd", 3);
                i++;
            }
        }
    }
    putc_(j, '"');
}

void duet_json_key(duet_json_t *j, const char *key)
{
    sep(j);
    quoted(j, key, strlen(key));
    putc_(j, ':');
    j->need_comma[j->depth] = false; /* the value follows without a comma */
}

/* After a key, the value must not add a comma but must set one for the next key. */
static void value_sep(duet_json_t *j)
{
    sep(j);
}

void duet_json_strn(duet_json_t *j, const char *s, size_t n)
{
    value_sep(j);
    quoted(j, s, n);
}

void duet_json_str(duet_json_t *j, const char *s)
{
    duet_json_strn(j, s, strlen(s));
}

void duet_json_int(duet_json_t *j, int64_t v)
{
    char b[32];
    int n = snprintf(b, sizeof b, "%" PRId64, v);
    value_sep(j);
    put(j, b, (size_t)n);
}

void duet_json_uint(duet_json_t *j, uint64_t v)
{
    char b[32];
    int n = snprintf(b, sizeof b, "%" PRIu64, v);
    value_sep(j);
    put(j, b, (size_t)n);
}

void duet_json_bool(duet_json_t *j, bool v)
{
    value_sep(j);
    put(j, v ? "true" : "false", v ? 4 : 5);
}

void duet_json_null(duet_json_t *j)
{
    value_sep(j);
    put(j, "null", 4);
}

void duet_json_raw(duet_json_t *j, const char *text, size_t n)
{
    value_sep(j);
    put(j, text, n);
}

void duet_json_kstr(duet_json_t *j, const char *key, const char *s)
{
    duet_json_key(j, key);
    duet_json_str(j, s);
}

void duet_json_kint(duet_json_t *j, const char *key, int64_t v)
{
    duet_json_key(j, key);
    duet_json_int(j, v);
}

void duet_json_kbool(duet_json_t *j, const char *key, bool v)
{
    duet_json_key(j, key);
    duet_json_bool(j, v);
}

void duet_json_knull(duet_json_t *j, const char *key)
{
    duet_json_key(j, key);
    duet_json_null(j);
}

int duet_json_emit(duet_json_t *j, FILE *f)
{
    int rc = 0;
    if (j->overflow) {
        rc = -1;
    } else {
        putc_(j, '\n');
        if (fwrite(j->buf, 1, j->len, f) != j->len || fflush(f) != 0) {
            rc = -1;
        }
    }
    duet_json_reset(j);
    return rc;
}

const char *duet_json_text(duet_json_t *j)
{
    return j->buf ? j->buf : "";
}
