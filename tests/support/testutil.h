/* Small helpers for the unit tests: temporary folders, files, process-free fixtures. */
#ifndef DUET_TESTUTIL_H
#define DUET_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Make a fresh temporary folder; returns a malloc'd path. Aborts on failure. */
char *duet_test_tmpdir(void);

/* Remove a folder and everything in it. */
void duet_test_rmrf(const char *path);

/* path = dir/name into out (aborts if too long). */
void duet_test_path(char *out, size_t cap, const char *dir, const char *name);

/* Read a whole file (malloc'd, NUL-terminated beyond len); NULL if absent. */
uint8_t *duet_test_slurp(const char *path, size_t *len);

/* Write a file; aborts on failure. */
void duet_test_write(const char *path, const void *data, size_t len);

/* Whether needle occurs in hay. */
int duet_test_contains(const uint8_t *hay, size_t hlen, const void *needle, size_t nlen);

/* The path of a vector file: $DUET_VECTORS/rel (default tests/vectors/rel). */
void duet_test_vector_path(char *out, size_t cap, const char *rel);

#endif
