/*
 * Sealed blobs: what a user of voice notes would check. A sealed file opens to exactly the
 * original, which is never touched; any change to the sealed bytes (a flipped bit anywhere,
 * a cut, a swap, extra bytes, a wrong tag) is refused; a receiver assembles the blob from
 * pieces of any size, survives a crash and damage on disk, and fetches again at most one
 * chunk; 50 MiB seal in flat memory, more is refused.
 *
 * Attacks are tried twice where it matters: against the real reference (the id catches
 * them, DUET_EBLOB) and against a reference whose id was recomputed over the altered bytes,
 * so that the chunk layer itself must catch them (DUET_EAUTH or DUET_EBLOB).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "blob.h"
#include "testrng.h"

#define SC DUET_BLOB_SEALED_CHUNK
#define HB DUET_BLOB_HEADER_BYTES

typedef struct fixture {
    char dir[256];
    char in[300], sealed[300], out[300], partial[300], final[300], tmp[300];
    duet_testrng_t trng;
    duet_rng_t rng;
} fixture_t;

/* ---- helpers ------------------------------------------------------------------------- */

static void write_file(const char *path, const uint8_t *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (len > 0) {
        assert_int_equal(fwrite(data, 1, len, f), len);
    }
    assert_int_equal(fclose(f), 0);
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    assert_int_equal(fseek(f, 0, SEEK_SET), 0);
    uint8_t *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static uint64_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (uint64_t)st.st_size;
}

/* No temporary file may stay behind in the test folder, whatever failed. */
static void assert_no_tmp(const fixture_t *fx)
{
    DIR *d = opendir(fx->dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strstr(e->d_name, ".tmp-") != NULL) {
            fail_msg("temporary file left behind: %s", e->d_name);
        }
    }
    closedir(d);
}

static uint8_t *random_bytes(fixture_t *fx, size_t len)
{
    uint8_t *p = malloc(len ? len : 1);
    assert_non_null(p);
    duet_rng_fill(&fx->rng, p, len);
    return p;
}

/* BLAKE2b-256 of a file, computed independently of blob.c, in pieces (files up to 50 MiB). */
static void hash_file(const char *path, uint8_t id[32])
{
    crypto_generichash_state h;
    uint8_t buf[8192];
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    crypto_generichash_init(&h, NULL, 0, 32);
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        crypto_generichash_update(&h, buf, n);
    }
    fclose(f);
    crypto_generichash_final(&h, id, 32);
}

static bool files_equal(const char *a, const char *b)
{
    uint8_t ha[32], hb[32];
    if (file_size(a) != file_size(b)) {
        return false;
    }
    hash_file(a, ha);
    hash_file(b, hb);
    return memcmp(ha, hb, 32) == 0;
}

/* A reference for altered sealed bytes: same key, id recomputed over them, given size. */
static duet_blob_ref_t ref_over(const duet_blob_ref_t *base, const uint8_t *sealed, size_t len,
                                uint64_t plain_size)
{
    duet_blob_ref_t r = *base;
    crypto_generichash(r.id, sizeof r.id, sealed, len, NULL, 0);
    r.size = plain_size;
    return r;
}

/* Open bytes as a sealed file with ref; the output must exist exactly on success. */
static duet_err_t open_bytes(fixture_t *fx, const uint8_t *sealed, size_t len,
                             const duet_blob_ref_t *ref)
{
    write_file(fx->tmp, sealed, len);
    unlink(fx->out);
    duet_err_t err = duet_blob_open(fx->tmp, ref, fx->out);
    assert_int_equal(exists(fx->out), err == DUET_OK);
    return err;
}

/* Seal a random plaintext of len bytes into fx->sealed; returns the plaintext. */
static uint8_t *seal_random(fixture_t *fx, size_t len, duet_blob_ref_t *ref)
{
    uint8_t *plain = random_bytes(fx, len);
    write_file(fx->in, plain, len);
    assert_int_equal(duet_blob_seal(fx->in, fx->sealed, fx->rng, ref), DUET_OK);
    return plain;
}

/* Build a sealed stream by hand with libsodium: chunk i has plen[i] bytes and tags[i]. */
static size_t build_stream(const uint8_t key[32], const uint8_t header[HB], const size_t *plen,
                           const unsigned char *tags, size_t n, uint8_t *out)
{
    crypto_secretstream_xchacha20poly1305_state st;
    static uint8_t plain[DUET_BLOB_CHUNK];
    memset(plain, 0x5a, sizeof plain);
    memcpy(out, header, HB);
    crypto_secretstream_xchacha20poly1305_init_pull(&st, header, key);
    size_t off = HB;
    for (size_t i = 0; i < n; i++) {
        unsigned long long clen;
        crypto_secretstream_xchacha20poly1305_push(&st, out + off, &clen, plain, plen[i], NULL, 0,
                                                   tags[i]);
        off += (size_t)clen;
    }
    return off;
}

/* ---- fixture ------------------------------------------------------------------------- */

static int setup(void **state)
{
    fixture_t *fx = calloc(1, sizeof *fx);
    if (fx == NULL || sodium_init() < 0) {
        return -1;
    }
    const char *t = getenv("TMPDIR");
    snprintf(fx->dir, sizeof fx->dir, "%s/duet-blob-XXXXXX", t && *t ? t : "/tmp");
    if (mkdtemp(fx->dir) == NULL) {
        return -1;
    }
    snprintf(fx->in, sizeof fx->in, "%s/voice.ogg", fx->dir);
    snprintf(fx->sealed, sizeof fx->sealed, "%s/sealed.blob", fx->dir);
    snprintf(fx->out, sizeof fx->out, "%s/opened.ogg", fx->dir);
    snprintf(fx->partial, sizeof fx->partial, "%s/recv.partial", fx->dir);
    snprintf(fx->final, sizeof fx->final, "%s/recv.blob", fx->dir);
    snprintf(fx->tmp, sizeof fx->tmp, "%s/scratch", fx->dir);
    fx->rng = duet_testrng_init(&fx->trng, 0xb10b);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *fx = *state;
    DIR *d = opendir(fx->dir);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            char p[600];
            if (e->d_name[0] != '.') {
                snprintf(p, sizeof p, "%s/%s", fx->dir, e->d_name);
                unlink(p);
            }
        }
        closedir(d);
    }
    rmdir(fx->dir);
    free(fx);
    return 0;
}

/* ---- arithmetic and the secretstream set-up ------------------------------------------ */

static void test_arithmetic(void **state)
{
    (void)state;
    assert_int_equal(duet_blob_chunk_count(0), 1);
    assert_int_equal(duet_blob_chunk_count(1), 1);
    assert_int_equal(duet_blob_chunk_count(65535), 1);
    assert_int_equal(duet_blob_chunk_count(65536), 1);
    assert_int_equal(duet_blob_chunk_count(65537), 2);
    assert_int_equal(duet_blob_chunk_count(DUET_BLOB_MAX), 800);
    assert_int_equal(duet_blob_sealed_size(0), 41);
    assert_int_equal(duet_blob_sealed_size(1), 42);
    assert_int_equal(duet_blob_sealed_size(65536), 24 + 65536 + 17);
    assert_int_equal(duet_blob_sealed_size(65537), 24 + 65537 + 34);
    assert_int_equal(duet_blob_sealed_size(DUET_BLOB_MAX), 24 + DUET_BLOB_MAX + 17 * 800);
    assert_int_equal(duet_blob_sealed_size(DUET_BLOB_MAX + 1ull), 0);
    assert_int_equal(duet_blob_chunk_offset(0), 24);
    assert_int_equal(duet_blob_chunk_offset(2), 24 + 2 * SC);
    assert_int_equal(duet_blob_chunk_sealed_len(0, 0), 17);
    assert_int_equal(duet_blob_chunk_sealed_len(65537, 0), SC);
    assert_int_equal(duet_blob_chunk_sealed_len(65537, 1), 18);
    assert_int_equal(duet_blob_chunk_sealed_len(65537, 2), 0);
    assert_int_equal(duet_blob_chunk_sealed_len(131072, 1), SC);
    /* The chunks tile the sealed blob exactly. */
    const uint64_t sizes[] = {0, 1, 65535, 65536, 65537, 3u << 20, DUET_BLOB_MAX};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        uint64_t n = duet_blob_chunk_count(sizes[i]), end = duet_blob_chunk_offset(n - 1);
        end += duet_blob_chunk_sealed_len(sizes[i], n - 1);
        assert_int_equal(end, duet_blob_sealed_size(sizes[i]));
    }
}

/* blob.c sets up its push state with init_pull on a header from duet_rng_t; that must be the
 * state libsodium's own init_push makes for the same header. */
static void test_push_state_from_header(void **state)
{
    (void)state;
    crypto_secretstream_xchacha20poly1305_state a, b;
    uint8_t key[32], header[HB], ca[100 + 17], cb[100 + 17], msg[100];
    for (int round = 0; round < 8; round++) {
        randombytes_buf(key, sizeof key);
        randombytes_buf(msg, sizeof msg);
        crypto_secretstream_xchacha20poly1305_init_push(&a, header, key);
        crypto_secretstream_xchacha20poly1305_init_pull(&b, header, key);
        for (int i = 0; i < 3; i++) {
            unsigned char tag = i == 2 ? crypto_secretstream_xchacha20poly1305_TAG_FINAL : 0;
            crypto_secretstream_xchacha20poly1305_push(&a, ca, NULL, msg, sizeof msg, NULL, 0, tag);
            crypto_secretstream_xchacha20poly1305_push(&b, cb, NULL, msg, sizeof msg, NULL, 0, tag);
            assert_memory_equal(ca, cb, sizeof ca);
        }
    }
}

/* ---- seal and open ------------------------------------------------------------------- */

static void roundtrip(fixture_t *fx, size_t len)
{
    duet_blob_ref_t ref;
    uint8_t *plain = seal_random(fx, len, &ref);
    assert_int_equal(ref.size, len);
    assert_int_equal(file_size(fx->sealed), duet_blob_sealed_size(len));
    /* The id is BLAKE2b-256 over the whole sealed file, header included. */
    uint8_t id[32];
    hash_file(fx->sealed, id);
    assert_memory_equal(id, ref.id, 32);
    /* The sealed file does not contain the plaintext. */
    size_t slen;
    uint8_t *sealed = read_file(fx->sealed, &slen);
    if (len >= 32) {
        assert_null(memmem(sealed, slen, plain, 32));
    }
    /* The original is untouched. */
    size_t ilen;
    uint8_t *again = read_file(fx->in, &ilen);
    assert_int_equal(ilen, len);
    assert_memory_equal(again, plain, len);
    assert_int_equal(duet_blob_verify(fx->sealed, &ref), DUET_OK);
    unlink(fx->out);
    assert_int_equal(duet_blob_open(fx->sealed, &ref, fx->out), DUET_OK);
    assert_true(files_equal(fx->in, fx->out));
    assert_no_tmp(fx);
    free(plain);
    free(sealed);
    free(again);
}

static void test_roundtrip_sizes(void **state)
{
    fixture_t *fx = *state;
    const size_t sizes[] = {0, 1, 65535, 65536, 65537, 3u << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        roundtrip(fx, sizes[i]);
    }
    /* An empty file seals to header + one empty FINAL chunk. */
    duet_blob_ref_t ref;
    free(seal_random(fx, 0, &ref));
    assert_int_equal(file_size(fx->sealed), 41);
}

static void test_seal_is_deterministic_in_rng(void **state)
{
    fixture_t *fx = *state;
    duet_testrng_t t1;
    duet_blob_ref_t r1, r2, r3;
    uint8_t *plain = random_bytes(fx, 1000);
    write_file(fx->in, plain, 1000);
    assert_int_equal(duet_blob_seal(fx->in, fx->sealed, duet_testrng_init(&t1, 7), &r1), DUET_OK);
    assert_int_equal(duet_blob_seal(fx->in, fx->sealed, duet_testrng_init(&t1, 7), &r2), DUET_OK);
    assert_memory_equal(r1.id, r2.id, 32);
    assert_memory_equal(r1.key, r2.key, 32);
    /* Another draw of the rng: another key, another id. */
    assert_int_equal(duet_blob_seal(fx->in, fx->sealed, duet_testrng_init(&t1, 8), &r3), DUET_OK);
    assert_memory_not_equal(r1.key, r3.key, 32);
    assert_memory_not_equal(r1.id, r3.id, 32);
    /* One byte of plaintext changes the id (same key and header). */
    plain[500] ^= 1;
    write_file(fx->in, plain, 1000);
    assert_int_equal(duet_blob_seal(fx->in, fx->sealed, duet_testrng_init(&t1, 7), &r3), DUET_OK);
    assert_memory_equal(r1.key, r3.key, 32);
    assert_memory_not_equal(r1.id, r3.id, 32);
    free(plain);
}

static void test_flip_every_byte(void **state)
{
    fixture_t *fx = *state;
    duet_blob_ref_t ref;
    free(seal_random(fx, 200, &ref));
    size_t len;
    uint8_t *sealed = read_file(fx->sealed, &len);
    assert_int_equal(len, 24 + 200 + 17);
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit += 7) {
            sealed[i] ^= (uint8_t)(1u << bit);
            assert_int_equal(open_bytes(fx, sealed, len, &ref), DUET_EBLOB);
            duet_blob_ref_t forged = ref_over(&ref, sealed, len, ref.size);
            assert_int_equal(open_bytes(fx, sealed, len, &forged), DUET_EAUTH);
            sealed[i] ^= (uint8_t)(1u << bit);
        }
    }
    assert_int_equal(open_bytes(fx, sealed, len, &ref), DUET_OK);
    /* A wrong key with the right id. */
    duet_blob_ref_t wrong = ref;
    wrong.key[31] ^= 0x80;
    assert_int_equal(open_bytes(fx, sealed, len, &wrong), DUET_EAUTH);
    assert_no_tmp(fx);
    free(sealed);
}

static void test_flip_multichunk(void **state)
{
    fixture_t *fx = *state;
    duet_blob_ref_t ref;
    free(seal_random(fx, 2 * 65536 + 300, &ref));
    size_t len;
    uint8_t *sealed = read_file(fx->sealed, &len);
    /* Every byte within 40 of a chunk boundary (or an end), and a stride through the rest. */
    for (size_t i = 0; i < len; i++) {
        size_t d = (i + SC - HB) % SC; /* distance past the last boundary */
        if (!(d < 40 || d > SC - 40 || i < 40 || len - i < 40 || i % 4099 == 0)) {
            continue;
        }
        sealed[i] ^= 0x10;
        assert_int_equal(open_bytes(fx, sealed, len, &ref), DUET_EBLOB);
        duet_blob_ref_t forged = ref_over(&ref, sealed, len, ref.size);
        assert_int_equal(open_bytes(fx, sealed, len, &forged), DUET_EAUTH);
        sealed[i] ^= 0x10;
    }
    free(sealed);
}

static void test_truncation(void **state)
{
    fixture_t *fx = *state;
    duet_blob_ref_t ref;
    const size_t plain_len = 3 * 65536 + 1000;
    free(seal_random(fx, plain_len, &ref));
    size_t len;
    uint8_t *sealed = read_file(fx->sealed, &len);
    /* Every chunk boundary: the real reference sees a short file; a reference made for the
     * shorter blob finds its last chunk without FINAL. */
    for (uint64_t k = 1; k < duet_blob_chunk_count(plain_len); k++) {
        size_t cut = (size_t)duet_blob_chunk_offset(k);
        assert_int_equal(open_bytes(fx, sealed, cut, &ref), DUET_EBLOB);
        duet_blob_ref_t forged = ref_over(&ref, sealed, cut, k * DUET_BLOB_CHUNK);
        assert_int_equal(duet_blob_sealed_size(forged.size), cut);
        assert_int_equal(open_bytes(fx, sealed, cut, &forged), DUET_EBLOB);
    }
    /* Mid-chunk, in the header, and one byte short: a reference for a blob of that length has
     * a last chunk that cannot authenticate. */
    const size_t cuts[] = {
        0, 1, 23, 24, 40, 24 + 17, 24 + 1000, 24 + SC + 5000, 24 + 3 * SC + 500, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        assert_int_equal(open_bytes(fx, sealed, cuts[i], &ref), DUET_EBLOB);
        size_t rest = cuts[i] < 24 ? 0 : (cuts[i] - 24) % SC;
        if (cuts[i] >= 24 + 17 && rest >= 17) {
            uint64_t p = (uint64_t)(cuts[i] - 24) / SC * DUET_BLOB_CHUNK + (rest - 17);
            duet_blob_ref_t forged = ref_over(&ref, sealed, cuts[i], p);
            assert_int_equal(duet_blob_sealed_size(p), cuts[i]);
            assert_int_equal(open_bytes(fx, sealed, cuts[i], &forged), DUET_EAUTH);
        }
    }
    assert_no_tmp(fx);
    free(sealed);
}

static void test_swap_and_drop_chunks(void **state)
{
    fixture_t *fx = *state;
    duet_blob_ref_t ref;
    free(seal_random(fx, 3 * 65536 + 10, &ref));
    size_t len;
    uint8_t *sealed = read_file(fx->sealed, &len);
    uint8_t *tmp = malloc(SC);
    assert_non_null(tmp);
    /* Swap chunks 0 and 1. */
    uint8_t *c0 = sealed + duet_blob_chunk_offset(0), *c1 = sealed + duet_blob_chunk_offset(1);
    memcpy(tmp, c0, SC);
    memcpy(c0, c1, SC);
    memcpy(c1, tmp, SC);
    assert_int_equal(open_bytes(fx, sealed, len, &ref), DUET_EBLOB);
    duet_blob_ref_t forged = ref_over(&ref, sealed, len, ref.size);
    assert_int_equal(open_bytes(fx, sealed, len, &forged), DUET_EAUTH);
    memcpy(c1, c0, SC);
    memcpy(c0, tmp, SC);
    assert_int_equal(open_bytes(fx, sealed, len, &ref), DUET_OK);
    /* Drop chunk 1 (the rest moves up): a blob one chunk shorter. */
    memmove(c1, c1 + SC, len - (size_t)duet_blob_chunk_offset(2));
    forged = ref_over(&ref, sealed, len - SC, ref.size - DUET_BLOB_CHUNK);
    assert_int_equal(open_bytes(fx, sealed, len - SC, &forged), DUET_EAUTH);
    free(tmp);
    free(sealed);
}

static void test_extension(void **state)
{
    fixture_t *fx = *state;
    duet_blob_ref_t ref;
    free(seal_random(fx, 65536 + 7, &ref));
    size_t len;
    uint8_t *sealed = read_file(fx->sealed, &len);
    uint8_t *longer = malloc(len + SC);
    assert_non_null(longer);
    memcpy(longer, sealed, len);
    const size_t extra[] = {1, 17, 18, SC};
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) {
        memset(longer + len, 0x33, extra[i]);
        assert_int_equal(open_bytes(fx, longer, len + extra[i], &ref), DUET_EBLOB);
        duet_blob_ref_t forged = ref_over(&ref, longer, len + extra[i], ref.size);
        assert_int_equal(open_bytes(fx, longer, len + extra[i], &forged), DUET_EBLOB);
    }
    free(longer);
    free(sealed);
}

/* Streams built by hand with the right key: the FINAL tag must be on the last chunk only. */
static void test_tag_rules(void **state)
{
    fixture_t *fx = *state;
    const unsigned char M = crypto_secretstream_xchacha20poly1305_TAG_MESSAGE,
                        P = crypto_secretstream_xchacha20poly1305_TAG_PUSH,
                        R = crypto_secretstream_xchacha20poly1305_TAG_REKEY,
                        F = crypto_secretstream_xchacha20poly1305_TAG_FINAL;
    const size_t plen[2] = {DUET_BLOB_CHUNK, 10};
    const struct {
        unsigned char tags[2];
        duet_err_t want;
    } cases[] = {{{M, F}, DUET_OK},    {{F, M}, DUET_EBLOB}, {{M, M}, DUET_EBLOB},
                 {{F, F}, DUET_EBLOB}, {{M, P}, DUET_EBLOB}, {{P, F}, DUET_EBLOB},
                 {{R, F}, DUET_EBLOB}, {{M, R}, DUET_EBLOB}};
    uint8_t key[32], header[HB];
    uint8_t *buf = malloc(24 + 2 * SC);
    assert_non_null(buf);
    duet_rng_fill(&fx->rng, key, sizeof key);
    duet_rng_fill(&fx->rng, header, sizeof header);
    duet_blob_ref_t base;
    memset(&base, 0, sizeof base);
    memcpy(base.key, key, 32);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = build_stream(key, header, plen, cases[i].tags, 2, buf);
        duet_blob_ref_t ref = ref_over(&base, buf, len, DUET_BLOB_CHUNK + 10);
        assert_int_equal(open_bytes(fx, buf, len, &ref), cases[i].want);
        /* The receiver applies the same rule. */
        duet_blob_recv_t *r;
        uint64_t next;
        unlink(fx->partial);
        assert_int_equal(duet_blob_recv_open(&r, &ref, fx->partial, fx->final, &next), DUET_OK);
        duet_err_t err = duet_blob_recv_append(r, 0, buf, len);
        assert_int_equal(err, cases[i].want);
        if (err == DUET_OK) {
            assert_int_equal(duet_blob_recv_finish(r), DUET_OK);
        } else {
            assert_int_equal(duet_blob_recv_finish(r), DUET_ENOTHERE);
        }
        duet_blob_recv_free(r);
    }
    free(buf);
}

static void test_seal_refusals(void **state)
{
    fixture_t *fx = *state;
    duet_blob_ref_t ref;
    uint8_t data[100] = {1, 2, 3};
    write_file(fx->in, data, sizeof data);
    /* Sealing onto the input itself would replace it. */
    assert_int_equal(duet_blob_seal(fx->in, fx->in, fx->rng, &ref), DUET_EINVAL);
    size_t len;
    uint8_t *again = read_file(fx->in, &len);
    assert_int_equal(len, sizeof data);
    assert_memory_equal(again, data, sizeof data);
    free(again);
    char missing[320];
    snprintf(missing, sizeof missing, "%s/nope", fx->dir);
    assert_int_equal(duet_blob_seal(missing, fx->sealed, fx->rng, &ref), DUET_ENOENT);
    assert_int_equal(duet_blob_seal(fx->dir, fx->sealed, fx->rng, &ref), DUET_EINVAL);
    /* A reference that claims more than the limit. */
    free(seal_random(fx, 10, &ref));
    duet_blob_ref_t big = ref;
    big.size = DUET_BLOB_MAX + 1ull;
    unlink(fx->out);
    assert_int_equal(duet_blob_open(fx->sealed, &big, fx->out), DUET_ETOOBIG);
    assert_int_equal(duet_blob_verify(fx->sealed, &big), DUET_ETOOBIG);
    assert_false(exists(fx->out));
    assert_no_tmp(fx);
}

static long max_rss_kib(void)
{
    struct rusage ru;
    assert_int_equal(getrusage(RUSAGE_SELF, &ru), 0);
    return ru.ru_maxrss;
}

/* Runs first, so that the peak resident size it measures is its own. */
/* The disk fills while sealing (RLIMIT_FSIZE stands for it): a clear error, no sealed file
 * and no temporary left; sealing again with room works, and its id is the hash of the file. */
static void test_seal_write_failure(void **state)
{
    fixture_t *fx = *state;
    size_t len = 20 * 65536 + 5;
    uint8_t *plain = random_bytes(fx, len);
    write_file(fx->in, plain, len);
    unlink(fx->sealed);
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 7 * 65536; /* chunk 7 does not fit */
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    duet_blob_ref_t ref;
    duet_err_t err = duet_blob_seal(fx->in, fx->sealed, fx->rng, &ref);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);
    assert_int_equal(err, DUET_EIO);
    assert_int_equal(access(fx->sealed, F_OK), -1);
    assert_no_tmp(fx);
    assert_int_equal(duet_blob_seal(fx->in, fx->sealed, fx->rng, &ref), DUET_OK);
    uint8_t id[32];
    hash_file(fx->sealed, id);
    assert_memory_equal(id, ref.id, 32);
    free(plain);
}

static void test_limit_and_flat_memory(void **state)
{
    fixture_t *fx = *state;
    duet_blob_ref_t ref;
    long before = max_rss_kib();
    /* 50 MiB of non-zero data, written in pieces. */
    FILE *f = fopen(fx->in, "wb");
    assert_non_null(f);
    uint8_t block[65536];
    for (size_t i = 0; i < DUET_BLOB_MAX / sizeof block; i++) {
        duet_rng_fill(&fx->rng, block, sizeof block);
        assert_int_equal(fwrite(block, 1, sizeof block, f), sizeof block);
    }
    assert_int_equal(fclose(f), 0);
    assert_int_equal(duet_blob_seal(fx->in, fx->sealed, fx->rng, &ref), DUET_OK);
    assert_int_equal(ref.size, DUET_BLOB_MAX);
    assert_int_equal(file_size(fx->sealed), duet_blob_sealed_size(DUET_BLOB_MAX));
    unlink(fx->out);
    assert_int_equal(duet_blob_open(fx->sealed, &ref, fx->out), DUET_OK);
    assert_true(files_equal(fx->in, fx->out));
    /* Neither call held the file in memory: the peak grew by far less than 50 MiB. */
    long grown = max_rss_kib() - before;
    assert_true(grown < 16 * 1024);
    /* One byte more is refused, and nothing is written. */
    unlink(fx->sealed);
    int fd = open(fx->in, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "x", 1), 1);
    close(fd);
    assert_int_equal(duet_blob_seal(fx->in, fx->sealed, fx->rng, &ref), DUET_ETOOBIG);
    assert_false(exists(fx->sealed));
    assert_no_tmp(fx);
    unlink(fx->in);
    unlink(fx->out);
}

/* ---- receiving ----------------------------------------------------------------------- */

/* Feed sealed[from..len) to r in random pieces, sometimes re-sending a little. */
static void feed(fixture_t *fx, duet_blob_recv_t *r, const uint8_t *sealed, size_t len, size_t from)
{
    size_t off = from;
    while (off < len) {
        size_t n = 1 + duet_testrng_uniform(&fx->trng, (uint32_t)(off % 3 ? 3000 : 90000));
        if (n > len - off) {
            n = len - off;
        }
        size_t back = duet_testrng_uniform(&fx->trng, 4) == 0 && off > 10 ? 10 : 0;
        assert_int_equal(duet_blob_recv_append(r, off - back, sealed + off - back, n + back),
                         DUET_OK);
        off += n;
        assert_int_equal(duet_blob_recv_next_offset(r), off);
    }
}

static void test_receiver_random_splits(void **state)
{
    fixture_t *fx = *state;
    duet_blob_ref_t ref;
    free(seal_random(fx, (3u << 20) + 12345, &ref));
    size_t len;
    uint8_t *sealed = read_file(fx->sealed, &len);
    for (int round = 0; round < 3; round++) {
        duet_blob_recv_t *r;
        uint64_t next;
        unlink(fx->partial);
        unlink(fx->final);
        assert_int_equal(duet_blob_recv_open(&r, &ref, fx->partial, fx->final, &next), DUET_OK);
        assert_int_equal(next, 0);
        assert_int_equal(duet_blob_recv_sealed_size(r), len);
        assert_int_equal(duet_blob_recv_finish(r), DUET_ENOTHERE);
        /* A gap is refused and changes nothing. */
        assert_int_equal(duet_blob_recv_append(r, 5, sealed + 5, 10), DUET_EPROTO);
        assert_int_equal(duet_blob_recv_append(r, 0, sealed, DUET_BLOB_APPEND_MAX + 1),
                         DUET_ETOOBIG);
        feed(fx, r, sealed, len, 0);
        assert_true(duet_blob_recv_complete(r));
        /* Bytes past the end. */
        uint8_t more[4] = {0};
        assert_int_equal(duet_blob_recv_append(r, len, more, sizeof more), DUET_EBLOB);
        assert_int_equal(duet_blob_recv_finish(r), DUET_OK);
        assert_int_equal(duet_blob_recv_finish(r), DUET_ESTATE);
        assert_int_equal(duet_blob_recv_append(r, 0, sealed, 1), DUET_ESTATE);
        duet_blob_recv_free(r);
        assert_false(exists(fx->partial));
        assert_true(files_equal(fx->final, fx->sealed));
        assert_int_equal(duet_blob_open(fx->final, &ref, fx->out), DUET_OK);
        assert_true(files_equal(fx->out, fx->in));
    }
    free(sealed);
}

/* A chunk that fails on the way in is not stored; the receiver asks for it again. */
static void test_receiver_rejects_bad_chunk(void **state)
{
    fixture_t *fx = *state;
    duet_blob_ref_t ref;
    free(seal_random(fx, 3 * 65536 + 99, &ref));
    size_t len;
    uint8_t *sealed = read_file(fx->sealed, &len);
    duet_blob_recv_t *r;
    uint64_t next;
    unlink(fx->partial);
    assert_int_equal(duet_blob_recv_open(&r, &ref, fx->partial, fx->final, &next), DUET_OK);
    size_t c2 = (size_t)duet_blob_chunk_offset(2);
    assert_int_equal(duet_blob_recv_append(r, 0, sealed, c2 + 100), DUET_OK);
    assert_int_equal(file_size(fx->partial), c2);
    sealed[c2 + 5000] ^= 4;
    assert_int_equal(duet_blob_recv_append(r, c2 + 100, sealed + c2 + 100, SC), DUET_EAUTH);
    assert_int_equal(duet_blob_recv_next_offset(r), c2);
    assert_int_equal(file_size(fx->partial), c2);
    sealed[c2 + 5000] ^= 4;
    /* A bad header costs chunk 0 as well, and nothing is stored. */
    duet_blob_recv_t *r0;
    char p0[320];
    snprintf(p0, sizeof p0, "%s/other.partial", fx->dir);
    assert_int_equal(duet_blob_recv_open(&r0, &ref, p0, fx->final, &next), DUET_OK);
    sealed[3] ^= 1;
    assert_int_equal(duet_blob_recv_append(r0, 0, sealed, c2), DUET_EAUTH);
    sealed[3] ^= 1;
    assert_int_equal(duet_blob_recv_next_offset(r0), 0);
    assert_int_equal(file_size(p0), 0);
    duet_blob_recv_free(r0);
    unlink(p0);

    feed(fx, r, sealed, len, c2);
    assert_int_equal(duet_blob_recv_finish(r), DUET_OK);
    duet_blob_recv_free(r);
    assert_true(files_equal(fx->final, fx->sealed));
    free(sealed);
}

/* After a restart the receiver continues from the last good chunk: resent bytes <= one
 * chunk (chunk 0 counts its header). Two ways to get there: the receiver is killed after
 * receiving `at` bytes (what it held in memory is lost), or the partial file is the sealed
 * stream cut at `at`, mid-chunk (a torn write). */
static void test_receiver_resume_after_crash(void **state)
{
    fixture_t *fx = *state;
    duet_blob_ref_t ref;
    free(seal_random(fx, 5 * 65536 + 4321, &ref));
    size_t len;
    uint8_t *sealed = read_file(fx->sealed, &len);
    const size_t crash_at[] = {10,          HB + 100,          HB + SC - 1, HB + SC,
                               HB + SC + 1, HB + 3 * SC + 777, len - 1};
    for (size_t i = 0; i < sizeof crash_at / sizeof crash_at[0]; i++) {
        for (int cut_file = 0; cut_file < 2; cut_file++) {
            duet_blob_recv_t *r;
            uint64_t next;
            unlink(fx->partial);
            unlink(fx->final);
            if (cut_file) {
                write_file(fx->partial, sealed, crash_at[i]);
            } else {
                assert_int_equal(duet_blob_recv_open(&r, &ref, fx->partial, fx->final, &next),
                                 DUET_OK);
                feed(fx, r, sealed, crash_at[i], 0);
                duet_blob_recv_free(r); /* the crash */
            }
            assert_int_equal(duet_blob_recv_open(&r, &ref, fx->partial, fx->final, &next), DUET_OK);
            /* next is the end of a chunk (or 0) at or before what was received... */
            assert_true(next == 0 || (next - HB) % SC == 0);
            assert_true(next <= crash_at[i]);
            assert_int_equal(file_size(fx->partial), next);
            /* ...the last good one: at most one chunk is sent again. */
            assert_true(crash_at[i] - next < HB + SC);
            if (crash_at[i] >= HB + SC) {
                assert_true(crash_at[i] - next < SC);
            }
            feed(fx, r, sealed, len, (size_t)next);
            assert_int_equal(duet_blob_recv_finish(r), DUET_OK);
            duet_blob_recv_free(r);
            assert_true(files_equal(fx->final, fx->sealed));
        }
    }
    free(sealed);
}

/* A byte flipped on disk in a stored chunk: resume finds it and the tail is fetched again. */
static void test_receiver_resume_finds_damage(void **state)
{
    fixture_t *fx = *state;
    duet_blob_ref_t ref;
    free(seal_random(fx, 4 * 65536 + 50, &ref));
    size_t len;
    uint8_t *sealed = read_file(fx->sealed, &len);
    const size_t flip_at[] = {0, 23, 24, HB + SC - 1, HB + SC, HB + 2 * SC + 4000, len - 1};
    for (size_t i = 0; i < sizeof flip_at / sizeof flip_at[0]; i++) {
        duet_blob_recv_t *r;
        uint64_t next;
        unlink(fx->partial);
        unlink(fx->final);
        assert_int_equal(duet_blob_recv_open(&r, &ref, fx->partial, fx->final, &next), DUET_OK);
        feed(fx, r, sealed, len, 0);
        assert_true(duet_blob_recv_complete(r));
        duet_blob_recv_free(r); /* not finished: still a partial file */
        /* Damage on disk. */
        int fd = open(fx->partial, O_RDWR);
        assert_true(fd >= 0);
        uint8_t b;
        assert_int_equal(pread(fd, &b, 1, (off_t)flip_at[i]), 1);
        b ^= 0x40;
        assert_int_equal(pwrite(fd, &b, 1, (off_t)flip_at[i]), 1);
        close(fd);
        assert_int_equal(duet_blob_recv_open(&r, &ref, fx->partial, fx->final, &next), DUET_OK);
        /* Resume stops at the start of the damaged chunk (chunk 0 goes with the header). */
        uint64_t want = flip_at[i] < HB + SC ? 0 : HB + SC * ((flip_at[i] - HB) / SC);
        assert_int_equal(next, want);
        assert_false(duet_blob_recv_complete(r));
        feed(fx, r, sealed, len, (size_t)next);
        assert_int_equal(duet_blob_recv_finish(r), DUET_OK);
        duet_blob_recv_free(r);
        assert_true(files_equal(fx->final, fx->sealed));
    }
    /* A partial file longer than the blob is cut back. */
    duet_blob_recv_t *r;
    uint64_t next;
    write_file(fx->partial, sealed, len);
    int fd = open(fx->partial, O_WRONLY | O_APPEND);
    assert_int_equal(write(fd, "junk", 4), 4);
    close(fd);
    assert_int_equal(duet_blob_recv_open(&r, &ref, fx->partial, fx->final, &next), DUET_OK);
    assert_int_equal(next, len);
    assert_int_equal(file_size(fx->partial), len);
    assert_int_equal(duet_blob_recv_resume(r, &next), DUET_OK);
    assert_int_equal(next, len);
    assert_int_equal(duet_blob_recv_finish(r), DUET_OK);
    duet_blob_recv_free(r);
    free(sealed);
}

/* A write that fails (the file size limit stands in for a full disk) loses nothing: the
 * receiver reports it, stays at the same chunk and carries on when space is back. */
static void test_receiver_write_failure(void **state)
{
    fixture_t *fx = *state;
    duet_blob_ref_t ref;
    free(seal_random(fx, 4 * 65536 + 3, &ref));
    size_t len;
    uint8_t *sealed = read_file(fx->sealed, &len);
    duet_blob_recv_t *r;
    uint64_t next;
    unlink(fx->partial);
    unlink(fx->final);
    assert_int_equal(duet_blob_recv_open(&r, &ref, fx->partial, fx->final, &next), DUET_OK);
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = HB + 2 * SC + 100; /* chunk 2 does not fit */
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    size_t c2 = (size_t)duet_blob_chunk_offset(2);
    assert_int_equal(duet_blob_recv_append(r, 0, sealed, c2), DUET_OK);
    duet_err_t err = duet_blob_recv_append(r, c2, sealed + c2, SC);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);
    assert_int_equal(err, DUET_EIO);
    assert_int_equal(duet_blob_recv_next_offset(r), c2);
    assert_int_equal(file_size(fx->partial), c2);
    feed(fx, r, sealed, len, c2);
    assert_int_equal(duet_blob_recv_finish(r), DUET_OK);
    duet_blob_recv_free(r);
    assert_true(files_equal(fx->final, fx->sealed));
    free(sealed);
}

/* Chunks that all authenticate but are not the blob the id names: finish refuses and the
 * next transfer starts from zero. */
static void test_receiver_wrong_id(void **state)
{
    fixture_t *fx = *state;
    duet_blob_ref_t ref;
    free(seal_random(fx, 70000, &ref));
    size_t len;
    uint8_t *sealed = read_file(fx->sealed, &len);
    duet_blob_ref_t bad = ref;
    bad.id[0] ^= 1;
    duet_blob_recv_t *r;
    uint64_t next;
    unlink(fx->partial);
    unlink(fx->final);
    assert_int_equal(duet_blob_recv_open(&r, &bad, fx->partial, fx->final, &next), DUET_OK);
    assert_int_equal(duet_blob_recv_append(r, 0, sealed, len), DUET_OK);
    assert_true(duet_blob_recv_complete(r));
    assert_int_equal(duet_blob_recv_finish(r), DUET_EBLOB);
    assert_false(exists(fx->final));
    assert_int_equal(file_size(fx->partial), 0);
    assert_int_equal(duet_blob_recv_next_offset(r), 0);
    duet_blob_recv_free(r);
    /* A reference over the limit is refused up front. */
    bad = ref;
    bad.size = DUET_BLOB_MAX + 1ull;
    assert_int_equal(duet_blob_recv_open(&r, &bad, fx->partial, fx->final, &next), DUET_ETOOBIG);
    assert_null(r);
    free(sealed);
}

static void test_reader(void **state)
{
    fixture_t *fx = *state;
    duet_blob_ref_t ref;
    free(seal_random(fx, 100000, &ref));
    size_t len;
    uint8_t *sealed = read_file(fx->sealed, &len);
    duet_blob_reader_t *rd;
    assert_int_equal(duet_blob_reader_open(&rd, fx->sealed, &ref), DUET_OK);
    assert_int_equal(duet_blob_reader_size(rd), len);
    uint8_t buf[7000];
    size_t got;
    for (size_t off = 0; off < len; off += got) {
        assert_int_equal(duet_blob_reader_read(rd, off, buf, sizeof buf, &got), DUET_OK);
        assert_true(got > 0);
        assert_memory_equal(buf, sealed + off, got);
    }
    assert_int_equal(duet_blob_reader_read(rd, len, buf, sizeof buf, &got), DUET_OK);
    assert_int_equal(got, 0);
    assert_int_equal(duet_blob_reader_read(rd, len + 1, buf, sizeof buf, &got), DUET_ERANGE);
    duet_blob_reader_free(rd);
    /* A file of the wrong length is not that blob. */
    write_file(fx->tmp, sealed, len - 1);
    assert_int_equal(duet_blob_reader_open(&rd, fx->tmp, &ref), DUET_EBLOB);
    assert_null(rd);
    free(sealed);
}

static void test_ref_check(void **state)
{
    (void)state;
    duet_blob_ref_t ref;
    memset(&ref, 0, sizeof ref);
    ref.size = 10;
    assert_int_equal(duet_blob_ref_check(&ref), DUET_EINVAL); /* empty mime */
    strcpy(ref.mime, "audio/ogg; codecs=opus");
    assert_int_equal(duet_blob_ref_check(&ref), DUET_OK);
    ref.mime[3] = '\n';
    assert_int_equal(duet_blob_ref_check(&ref), DUET_EINVAL);
    memset(ref.mime, 'a', sizeof ref.mime); /* no terminating NUL */
    assert_int_equal(duet_blob_ref_check(&ref), DUET_EINVAL);
    ref.mime[DUET_BLOB_MIME_MAX] = '\0'; /* exactly 64 */
    assert_int_equal(duet_blob_ref_check(&ref), DUET_OK);
    ref.size = DUET_BLOB_MAX + 1ull;
    assert_int_equal(duet_blob_ref_check(&ref), DUET_ETOOBIG);
    duet_blob_ref_dispose(&ref);
    assert_true(sodium_is_zero((const unsigned char *)&ref, sizeof ref));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_limit_and_flat_memory, setup, teardown),
        cmocka_unit_test(test_arithmetic),
        cmocka_unit_test(test_push_state_from_header),
        cmocka_unit_test(test_ref_check),
        cmocka_unit_test_setup_teardown(test_roundtrip_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seal_is_deterministic_in_rng, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flip_every_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flip_multichunk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_swap_and_drop_chunks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_extension, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tag_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seal_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seal_write_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receiver_random_splits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receiver_rejects_bad_chunk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receiver_resume_after_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receiver_resume_finds_damage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receiver_write_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receiver_wrong_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reader, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
