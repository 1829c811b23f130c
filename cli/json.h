/*
 * A small JSON writer for duet's output: one object per line (JSON Lines). It escapes
 * strings per RFC 8259 (", \, control characters as \uXXXX, the rest of UTF-8 as is), and
 * writes invalid UTF-8 as U+FFFD so the output is always valid JSON. Commas are inserted by
 * the writer. The buffer grows up to a hard cap (16 MiB); past it, output is refused.
 */
#ifndef DUET_CLI_JSON_H
#define DUET_CLI_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define DUET_JSON_MAX (16u << 20)
#define DUET_JSON_DEPTH 32

typedef struct duet_json {
    char *buf;
    size_t len, alloc;
    bool overflow;
    int depth;
    bool need_comma[DUET_JSON_DEPTH];
} duet_json_t;

void duet_json_init(duet_json_t *j);
void duet_json_dispose(duet_json_t *j);
void duet_json_reset(duet_json_t *j);

void duet_json_obj(duet_json_t *j);   /* { */
void duet_json_end(duet_json_t *j);   /* } */
void duet_json_arr(duet_json_t *j);   /* [ */
void duet_json_arr_end(duet_json_t *j); /* ] */
void duet_json_key(duet_json_t *j, const char *key);
void duet_json_str(duet_json_t *j, const char *s);
void duet_json_strn(duet_json_t *j, const char *s, size_t n);
void duet_json_int(duet_json_t *j, int64_t v);
void duet_json_uint(duet_json_t *j, uint64_t v);
void duet_json_bool(duet_json_t *j, bool v);
void duet_json_null(duet_json_t *j);
/* Insert already-valid JSON text as a value. */
void duet_json_raw(duet_json_t *j, const char *text, size_t n);

/* Shorthands: key then value. */
void duet_json_kstr(duet_json_t *j, const char *key, const char *s);
void duet_json_kint(duet_json_t *j, const char *key, int64_t v);
void duet_json_kbool(duet_json_t *j, const char *key, bool v);
void duet_json_knull(duet_json_t *j, const char *key);

/* Write the buffer and a newline to f, flush, and reset. Returns 0, or -1 on overflow or a
 * write error. */
int duet_json_emit(duet_json_t *j, FILE *f);

/* The text so far (NUL-terminated), for tests. */
const char *duet_json_text(duet_json_t *j);

#endif
