/*
 * Fuzz the blob receiver and opener with bytes that claim to be a sealed blob.
 *
 * Two fixed references are made once per process by sealing fixed plaintexts with a seeded
 * rng (so the same process always makes the same blobs, and the committed seeds stay
 * valid): A = 100 bytes (one chunk), B = 65536 + 200 bytes (two chunks).
 *
 * Input: byte 0 picks the reference (bit 0) and the mode (bits 1-2):
 *   0  the rest is a partial file on disk; open a receiver on it (resume), then finish;
 *   1  the rest is a script of receiver operations (below) from an empty partial file;
 *   2  a 3-byte little-endian K, the first K % (sealed+1) bytes of the real blob as the
 *      partial file, then a script;
 *   3  the rest is a sealed file to duet_blob_verify() and duet_blob_open().
 * Script records: op (1 byte), len (2 bytes LE), then for ops 0-2 len data bytes:
 *   op%7 = 0 append at next_offset, 1 append op/8 bytes before it (a resend), 2 append past
 *   it (a gap), 3 resume, 4 finish, 5 crash (free and reopen), 6 append len bytes of the
 *   real blob at next_offset (so the fuzzer can reach later chunks).
 *
 * Invariants (abort on violation): the partial file is always a prefix of the real blob
 * ending on a chunk boundary, and never longer than next_offset; next_offset never passes
 * the sealed size; a gap is DUET_EPROTO; a finished blob and an opened blob are exactly the
 * real ones. Bytes that authenticate under the key and are not the real blob would be a
 * forgery.
 *
 * The seed corpus in tests/fuzz/corpus/blob/ was written by this file built with
 * -DFUZZ_BLOB_WRITE_SEEDS, which adds a main() taking the corpus folder.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "blob.h"
#include "testrng.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PLAIN_A 100u
#define PLAIN_B (DUET_BLOB_CHUNK + 200u)

typedef struct fixed_blob {
    duet_blob_ref_t ref;
    uint8_t *plain;
    size_t plain_len;
    uint8_t *sealed;
    size_t sealed_len;
} fixed_blob_t;

typedef struct fuzz_env {
    char dir[256];
    char plain[300], sealed[300], partial[300], final[300], out[300];
    fixed_blob_t blob[2];
} fuzz_env_t;

static void check(bool ok)
{
    if (!ok) {
        abort();
    }
}

static void write_all(const char *path, const uint8_t *d, size_t n)
{
    FILE *f = fopen(path, "wb");
    check(f != NULL);
    check(n == 0 || fwrite(d, 1, n, f) == n);
    check(fclose(f) == 0);
}

static uint8_t *read_all(const char *path, size_t *n)
{
    struct stat st;
    check(stat(path, &st) == 0);
    uint8_t *buf = malloc((size_t)st.st_size + 1);
    check(buf != NULL);
    FILE *f = fopen(path, "rb");
    check(f != NULL);
    *n = fread(buf, 1, (size_t)st.st_size, f);
    fclose(f);
    check(*n == (size_t)st.st_size);
    return buf;
}

static void make_blob(fuzz_env_t *env, fixed_blob_t *b, size_t plain_len, uint64_t seed)
{
    duet_testrng_t t;
    duet_rng_t rng = duet_testrng_init(&t, seed);
    b->plain_len = plain_len;
    b->plain = malloc(plain_len);
    check(b->plain != NULL);
    duet_rng_fill(&rng, b->plain, plain_len);
    write_all(env->plain, b->plain, plain_len);
    check(duet_blob_seal(env->plain, env->sealed, rng, &b->ref) == DUET_OK);
    strcpy(b->ref.mime, "audio/ogg; codecs=opus");
    b->sealed = read_all(env->sealed, &b->sealed_len);
}

static fuzz_env_t *env_get(void)
{
    static fuzz_env_t *env; /* the fuzz harness's one fixture, made on first use */
    if (env != NULL) {
        return env;
    }
    check(sodium_init() >= 0);
    env = calloc(1, sizeof *env);
    check(env != NULL);
    const char *t = getenv("TMPDIR");
    snprintf(env->dir, sizeof env->dir, "%s/duet-fuzz-blob-XXXXXX", t && *t ? t : "/tmp");
    check(mkdtemp(env->dir) != NULL);
    snprintf(env->plain, sizeof env->plain, "%s/plain", env->dir);
    snprintf(env->sealed, sizeof env->sealed, "%s/sealed", env->dir);
    snprintf(env->partial, sizeof env->partial, "%s/partial", env->dir);
    snprintf(env->final, sizeof env->final, "%s/final", env->dir);
    snprintf(env->out, sizeof env->out, "%s/out", env->dir);
    make_blob(env, &env->blob[0], PLAIN_A, 0xa);
    make_blob(env, &env->blob[1], PLAIN_B, 0xb);
    return env;
}

static uint64_t file_len(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* The partial file is a prefix of the real blob, on a chunk boundary, within next_offset. */
static void check_partial(const fuzz_env_t *env, const fixed_blob_t *b, duet_blob_recv_t *r)
{
    size_t n;
    uint8_t *p = read_all(env->partial, &n);
    uint64_t next = duet_blob_recv_next_offset(r);
    check(next <= b->sealed_len);
    check(n <= next);
    check(n == 0 || n == b->sealed_len ||
          (n - DUET_BLOB_HEADER_BYTES) % DUET_BLOB_SEALED_CHUNK == 0);
    check(memcmp(p, b->sealed, n) == 0);
    free(p);
}

static void check_final(const fuzz_env_t *env, const fixed_blob_t *b)
{
    size_t n;
    uint8_t *p = read_all(env->final, &n);
    check(n == b->sealed_len && memcmp(p, b->sealed, n) == 0);
    free(p);
}

static duet_blob_recv_t *recv_open(const fuzz_env_t *env, const fixed_blob_t *b)
{
    duet_blob_recv_t *r = NULL;
    uint64_t next;
    duet_err_t err = duet_blob_recv_open(&r, &b->ref, env->partial, env->final, &next);
    check(err == DUET_OK && next <= b->sealed_len);
    return r;
}

/* Run one script op; returns false when the receiver is finished. */
static bool run_op(const fuzz_env_t *env, const fixed_blob_t *b, duet_blob_recv_t **r, uint8_t op,
                   const uint8_t *d, size_t len)
{
    uint64_t next = duet_blob_recv_next_offset(*r);
    duet_err_t err;
    uint64_t ignored;
    switch (op % 7) {
    case 0:
        err = duet_blob_recv_append(*r, next, d, len);
        break;
    case 1: {
        uint64_t back = op / 8u < next ? op / 8u : next;
        err = duet_blob_recv_append(*r, next - back, d, len);
        break;
    }
    case 2:
        err = duet_blob_recv_append(*r, next + 1 + op / 8u, d, len);
        check(err == DUET_EPROTO);
        break;
    case 3:
        err = duet_blob_recv_resume(*r, &ignored);
        check(err == DUET_OK);
        break;
    case 4:
        err = duet_blob_recv_finish(*r);
        check(err == DUET_OK || err == DUET_ENOTHERE);
        if (err == DUET_OK) {
            check_final(env, b);
            return false;
        }
        break;
    case 5:
        duet_blob_recv_free(*r);
        *r = recv_open(env, b);
        err = DUET_OK;
        break;
    default: {
        size_t n = next + len <= b->sealed_len ? len : (size_t)(b->sealed_len - next);
        /* May still fail: garbage held for the current chunk spoils it. */
        err = duet_blob_recv_append(*r, next, b->sealed + next, n);
        break;
    }
    }
    check(err == DUET_OK || err == DUET_EAUTH || err == DUET_EBLOB || err == DUET_EPROTO ||
          err == DUET_ENOTHERE);
    check_partial(env, b, *r);
    return true;
}

static void run_script(const fuzz_env_t *env, const fixed_blob_t *b, const uint8_t *d, size_t n)
{
    duet_blob_recv_t *r = recv_open(env, b);
    check_partial(env, b, r);
    while (n >= 3) {
        uint8_t op = d[0];
        size_t len = (size_t)d[1] | (size_t)d[2] << 8;
        d += 3;
        n -= 3;
        const uint8_t *payload = d;
        if (op % 7 <= 2) {
            len = len < n ? len : n;
            d += len;
            n -= len;
        }
        if (!run_op(env, b, &r, op, payload, len)) {
            break;
        }
    }
    duet_blob_recv_free(r);
}

static void run_open(const fuzz_env_t *env, const fixed_blob_t *b, const uint8_t *d, size_t n)
{
    write_all(env->sealed, d, n);
    duet_err_t v = duet_blob_verify(env->sealed, &b->ref);
    duet_err_t err = duet_blob_open(env->sealed, &b->ref, env->out);
    check(v == DUET_OK || v == DUET_EBLOB);
    check(err == v); /* the id decides; the key then always opens the real blob */
    if (err == DUET_OK) {
        size_t m;
        uint8_t *p = read_all(env->out, &m);
        check(m == b->plain_len && memcmp(p, b->plain, m) == 0);
        free(p);
    } else {
        check(file_len(env->out) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    fuzz_env_t *env = env_get();
    const fixed_blob_t *b = &env->blob[data[0] & 1];
    unsigned mode = (data[0] >> 1) & 3;
    data++;
    size--;
    unlink(env->partial);
    unlink(env->final);
    unlink(env->out);
    switch (mode) {
    case 0: {
        write_all(env->partial, data, size);
        duet_blob_recv_t *r = recv_open(env, b);
        check_partial(env, b, r);
        duet_err_t err = duet_blob_recv_finish(r);
        check(err == DUET_OK || err == DUET_ENOTHERE);
        if (err == DUET_OK) {
            check_final(env, b);
        }
        duet_blob_recv_free(r);
        break;
    }
    case 1:
        run_script(env, b, data, size);
        break;
    case 2: {
        if (size < 3) {
            return 0;
        }
        size_t k =
            ((size_t)data[0] | (size_t)data[1] << 8 | (size_t)data[2] << 16) % (b->sealed_len + 1);
        write_all(env->partial, b->sealed, k);
        run_script(env, b, data + 3, size - 3);
        break;
    }
    default:
        run_open(env, b, data, size);
        break;
    }
    return 0;
}

#ifdef FUZZ_BLOB_WRITE_SEEDS
/* Seed writer: cc -DFUZZ_BLOB_WRITE_SEEDS ... ; ./a.out tests/fuzz/corpus/blob */
static void seed(const char *dir, const char *name, const uint8_t *d, size_t n)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    write_all(path, d, n);
}

static size_t put_op(uint8_t *p, uint8_t op, size_t len, const uint8_t *payload)
{
    p[0] = op;
    p[1] = (uint8_t)len;
    p[2] = (uint8_t)(len >> 8);
    if (payload != NULL) {
        memcpy(p + 3, payload, len);
        return 3 + len;
    }
    return 3;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        return 2;
    }
    fuzz_env_t *env = env_get();
    const fixed_blob_t *a = &env->blob[0], *b = &env->blob[1];
    size_t cap = 4 + 2 * b->sealed_len + 64, n;
    uint8_t *s = malloc(cap);
    check(s != NULL);
    /* mode 0: whole blobs, and B cut inside chunk 1 */
    s[0] = 0;
    memcpy(s + 1, a->sealed, a->sealed_len);
    seed(argv[1], "partial-a-whole", s, 1 + a->sealed_len);
    s[0] = 1;
    memcpy(s + 1, b->sealed, b->sealed_len);
    seed(argv[1], "partial-b-whole", s, 1 + b->sealed_len);
    seed(argv[1], "partial-b-cut", s, 1 + b->sealed_len - 100);
    /* mode 1: A's real bytes as data in two appends, then finish */
    s[0] = 2;
    n = 1;
    n += put_op(s + n, 0, 60, a->sealed);
    n += put_op(s + n, 29, a->sealed_len - 60 + 3, a->sealed + 57); /* op 29: resend 3 */
    n += put_op(s + n, 4, 0, NULL);
    seed(argv[1], "script-a-data", s, n);
    /* mode 1: B from the real blob in pieces, a crash, a resume, a gap, finish */
    s[0] = 3;
    n = 1;
    n += put_op(s + n, 6, 30000, NULL);
    n += put_op(s + n, 6, 40000, NULL);
    n += put_op(s + n, 5, 0, NULL);
    n += put_op(s + n, 2, 4, (const uint8_t *)"gap!");
    n += put_op(s + n, 6, 50000, NULL);
    n += put_op(s + n, 3, 0, NULL);
    n += put_op(s + n, 6, 50000, NULL);
    n += put_op(s + n, 4, 0, NULL);
    seed(argv[1], "script-b-real", s, n);
    /* mode 2: chunk 0 of B on disk, then chunk 1 as data */
    size_t c1 = (size_t)duet_blob_chunk_offset(1);
    s[0] = 5;
    s[1] = (uint8_t)c1;
    s[2] = (uint8_t)(c1 >> 8);
    s[3] = (uint8_t)(c1 >> 16);
    n = 4;
    n += put_op(s + n, 0, b->sealed_len - c1, b->sealed + c1);
    n += put_op(s + n, 4, 0, NULL);
    seed(argv[1], "prefix-b-chunk1-data", s, n);
    /* mode 3: sealed files to open */
    s[0] = 6;
    memcpy(s + 1, a->sealed, a->sealed_len);
    seed(argv[1], "open-a", s, 1 + a->sealed_len);
    s[0] = 7;
    memcpy(s + 1, b->sealed, b->sealed_len);
    s[1 + 5000] ^= 1;
    seed(argv[1], "open-b-flipped", s, 1 + b->sealed_len);
    free(s);
    return 0;
}
#endif
