/* Fuzz target: the sync engine's frame parser. The input is a sequence of frames, each
 * prefixed by a 2-byte big-endian length, fed to an engine whose host accepts everything;
 * after each, the engine is asked for its output. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sync.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static duet_err_t st(void *c, uint64_t *wm, uint64_t *above, size_t cap, size_t *n)
{
    (void)c, (void)above, (void)cap;
    *wm = 3;
    *n = 0;
    return DUET_OK;
}
static duet_err_t last(void *c, uint64_t *l)
{
    (void)c;
    *l = 2;
    return DUET_OK;
}
static const uint8_t env[] = {1, 2, 3};
static duet_err_t next(void *c, uint64_t after, uint64_t *seq, const uint8_t **e, size_t *len)
{
    (void)c;
    if (after >= 2) {
        return DUET_ENOENT;
    }
    *seq = after + 1;
    *e = env;
    *len = sizeof env;
    return DUET_OK;
}
static duet_err_t begin(void *c)
{
    (void)c;
    return DUET_OK;
}
static duet_err_t put(void *c, uint64_t seq, const uint8_t *e, size_t len, bool *counted)
{
    (void)c, (void)e, (void)len;
    *counted = true;
    return seq % 3 == 0 ? DUET_EDUP : DUET_OK;
}
static duet_err_t commit(void *c)
{
    (void)c;
    return DUET_OK;
}
static void abort_(void *c)
{
    (void)c;
}
static duet_err_t acked(void *c, uint64_t wm, const uint64_t *a, size_t n, uint64_t *items)
{
    (void)c, (void)wm, (void)a;
    *items = n;
    return DUET_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const duet_sync_host_t host = {NULL, st, last, next, begin, put, commit, abort_, acked};
    duet_sync_t *s = duet_sync_new(&host);
    if (s == NULL || duet_sync_start(s) != DUET_OK) {
        duet_sync_free(s);
        return 0;
    }
    size_t pos = 0;
    while (size - pos >= 2) {
        size_t n = (size_t)data[pos] << 8 | data[pos + 1];
        pos += 2;
        if (n > size - pos) {
            n = size - pos;
        }
        int fails = duet_sync_recv(s, data + pos, n) != DUET_OK;
        fails += duet_sync_flush(s) != DUET_OK;
        pos += n;
        for (int i = 0; i < 8; i++) {
            const uint8_t *f;
            size_t len;
            if (duet_sync_next_frame(s, &f, &len) != DUET_OK || len == 0) {
                break;
            }
        }
        (void)fails;
        (void)duet_sync_done(s);
    }
    duet_sync_free(s);
    return 0;
}
