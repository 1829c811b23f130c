/* see blob.h */
#include "blob.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

_Static_assert(DUET_BLOB_HEADER_BYTES == crypto_secretstream_xchacha20poly1305_HEADERBYTES,
               "secretstream header size");
_Static_assert(DUET_BLOB_ABYTES == crypto_secretstream_xchacha20poly1305_ABYTES,
               "secretstream overhead");
_Static_assert(DUET_BLOB_KEY_BYTES == crypto_secretstream_xchacha20poly1305_KEYBYTES,
               "secretstream key size");
_Static_assert(DUET_BLOB_CHUNK <= crypto_secretstream_xchacha20poly1305_MESSAGEBYTES_MAX,
               "chunk fits one secretstream message");
_Static_assert(DUET_BLOB_ID_BYTES >= crypto_generichash_BYTES_MIN &&
                   DUET_BLOB_ID_BYTES <= crypto_generichash_BYTES_MAX,
               "BLAKE2b output size");

#define TAG_MESSAGE crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
#define TAG_FINAL   crypto_secretstream_xchacha20poly1305_TAG_FINAL
/* Chunk 0 travels and is stored together with the header: the largest unit of storage. */
#define UNIT_MAX     (DUET_BLOB_HEADER_BYTES + DUET_BLOB_SEALED_CHUNK)
#define TMP_SUFFIX   ".tmp-XXXXXX"
#define PATH_LEN_MAX (DUET_BLOB_PATH_MAX - 16u)

typedef crypto_secretstream_xchacha20poly1305_state stream_t;

/* ---- small file helpers -------------------------------------------------------------- */

static duet_err_t err_from_errno(int e)
{
    switch (e) {
    case ENOENT:
    case ENOTDIR:
        return DUET_ENOENT;
    case EACCES:
    case EPERM:
    case EROFS:
        return DUET_EPERM;
    case ENOSPC:
    case EDQUOT:
        return DUET_ENOSPC;
    case EEXIST:
        return DUET_EEXIST;
    case ENOMEM:
        return DUET_ENOMEM;
    case ENAMETOOLONG:
        return DUET_EINVAL;
    default:
        return DUET_EIO;
    }
}

static duet_err_t path_check(const char *path)
{
    size_t n = strnlen(path, PATH_LEN_MAX + 1);
    return (n == 0 || n > PATH_LEN_MAX) ? DUET_EINVAL : DUET_OK;
}

/* Read len bytes at off; fewer only at the end of the file (*got says how many). */
static duet_err_t pread_full(int fd, uint8_t *buf, size_t len, uint64_t off, size_t *got)
{
    *got = 0;
    while (*got < len) {
        ssize_t n = pread(fd, buf + *got, len - *got, (off_t)(off + *got));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return err_from_errno(errno);
        }
        if (n == 0) {
            break;
        }
        *got += (size_t)n;
    }
    return DUET_OK;
}

static duet_err_t pwrite_full(int fd, const uint8_t *buf, size_t len, uint64_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pwrite(fd, buf + done, len - done, (off_t)(off + done));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return err_from_errno(errno);
        }
        done += (size_t)n;
    }
    return DUET_OK;
}

/* Open path read-only and check that it is a regular file; *size is its length. */
static duet_err_t open_regular(const char *path, int *fd, uint64_t *size)
{
    struct stat st;
    *fd = -1;
    *size = 0;
    int f = open(path, O_RDONLY | O_CLOEXEC);
    if (f < 0) {
        return err_from_errno(errno);
    }
    if (fstat(f, &st) != 0) {
        duet_err_t err = err_from_errno(errno);
        close(f);
        return err;
    }
    if (!S_ISREG(st.st_mode)) {
        close(f);
        return DUET_EINVAL;
    }
    *fd = f;
    *size = (uint64_t)st.st_size;
    return DUET_OK;
}

/* Create a fresh temporary file (0600) next to final_path; its name goes to tmp. */
static duet_err_t tmp_create(const char *final_path, char tmp[static DUET_BLOB_PATH_MAX], int *fd)
{
    *fd = -1;
    tmp[0] = '\0';
    size_t n = strlen(final_path);
    memcpy(tmp, final_path, n);
    memcpy(tmp + n, TMP_SUFFIX, sizeof TMP_SUFFIX);
    int f = mkostemp(tmp, O_CLOEXEC);
    if (f < 0) {
        tmp[0] = '\0';
        return err_from_errno(errno);
    }
    *fd = f;
    return DUET_OK;
}

/* fsync the folder holding path, so that a rename into it survives a crash. */
static duet_err_t sync_parent(const char *path)
{
    char dir[DUET_BLOB_PATH_MAX];
    size_t n = strlen(path);
    memcpy(dir, path, n + 1);
    char *slash = strrchr(dir, '/');
    if (slash == NULL) {
        memcpy(dir, ".", 2);
    } else if (slash == dir) {
        dir[1] = '\0';
    } else {
        *slash = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return err_from_errno(errno);
    }
    duet_err_t err = DUET_OK;
    /* EINVAL: a file system that cannot sync folders; the rename is as durable as it gets. */
    if (fsync(fd) != 0 && errno != EINVAL) {
        err = err_from_errno(errno);
    }
    close(fd);
    return err;
}

/* fsync fd, rename from to to, fsync the folder. *renamed tells whether from is gone. */
static duet_err_t commit_file(int fd, const char *from, const char *to, bool *renamed)
{
    *renamed = false;
    if (fsync(fd) != 0) {
        return err_from_errno(errno);
    }
    if (rename(from, to) != 0) {
        return err_from_errno(errno);
    }
    *renamed = true;
    return sync_parent(to);
}

/* ---- chunk and offset arithmetic ----------------------------------------------------- */

uint64_t duet_blob_chunk_count(uint64_t plain_size)
{
    if (plain_size == 0) {
        return 1;
    }
    return (plain_size - 1) / DUET_BLOB_CHUNK + 1;
}

uint64_t duet_blob_sealed_size(uint64_t plain_size)
{
    if (plain_size > DUET_BLOB_MAX) {
        return 0;
    }
    return DUET_BLOB_HEADER_BYTES + plain_size +
           DUET_BLOB_ABYTES * duet_blob_chunk_count(plain_size);
}

uint64_t duet_blob_chunk_offset(uint64_t index)
{
    if (index > (UINT64_MAX - DUET_BLOB_HEADER_BYTES) / DUET_BLOB_SEALED_CHUNK) {
        return UINT64_MAX;
    }
    return DUET_BLOB_HEADER_BYTES + index * DUET_BLOB_SEALED_CHUNK;
}

size_t duet_blob_chunk_sealed_len(uint64_t plain_size, uint64_t index)
{
    if (plain_size > DUET_BLOB_MAX) {
        return 0;
    }
    uint64_t n = duet_blob_chunk_count(plain_size);
    if (index >= n) {
        return 0;
    }
    if (index + 1 < n) {
        return DUET_BLOB_SEALED_CHUNK;
    }
    return (size_t)(plain_size - index * DUET_BLOB_CHUNK) + DUET_BLOB_ABYTES;
}

/* The tag chunk index of n must carry. */
static unsigned char expected_tag(uint64_t index, uint64_t n)
{
    return index + 1 == n ? TAG_FINAL : TAG_MESSAGE;
}

/* ---- references ---------------------------------------------------------------------- */

duet_err_t duet_blob_ref_check(const duet_blob_ref_t *ref)
{
    if (ref == NULL) {
        abort();
    }
    if (ref->size > DUET_BLOB_MAX) {
        return DUET_ETOOBIG;
    }
    size_t n = strnlen(ref->mime, sizeof ref->mime);
    if (n == 0 || n > DUET_BLOB_MIME_MAX) {
        return DUET_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)ref->mime[i];
        if (c < 0x20 || c > 0x7e) {
            return DUET_EINVAL;
        }
    }
    return DUET_OK;
}

void duet_blob_ref_dispose(duet_blob_ref_t *ref)
{
    if (ref != NULL) {
        sodium_memzero(ref, sizeof *ref);
    }
}

/* ---- seal, verify, open -------------------------------------------------------------- */

/* The working memory of seal and open: one chunk each way, whatever the file size. Heap,
 * 64-byte aligned as crypto_generichash_state requires, wiped before it is freed. */
typedef struct blob_work {
    stream_t st;
    crypto_generichash_state hash;
    uint8_t key[DUET_BLOB_KEY_BYTES];
    uint8_t plain[DUET_BLOB_CHUNK];
    uint8_t sealed[UNIT_MAX];
} blob_work_t;

static blob_work_t *work_new(void)
{
    return aligned_alloc(_Alignof(blob_work_t), sizeof(blob_work_t));
}

static void work_free(blob_work_t *w)
{
    if (w != NULL) {
        sodium_memzero(w, sizeof *w);
        free(w);
    }
}

/*
 * Set up the push state for a header chosen by the caller. libsodium 1.0.18 draws the
 * header inside init_push from the OS; core/ must take its randomness from duet_rng_t. Its
 * init_pull derives exactly init_push's state from a given header (HChaCha20 subkey, counter
 * 1, inonce from the header's last 8 bytes: secretstream_xchacha20poly1305.c), so we use it
 * for both directions. test_blob.c pins the equivalence against init_push itself.
 */
static void stream_init_with_header(stream_t *st, const uint8_t header[DUET_BLOB_HEADER_BYTES],
                                    const uint8_t key[DUET_BLOB_KEY_BYTES])
{
    (void)crypto_secretstream_xchacha20poly1305_init_pull(st, header, key);
}

/* Read the plaintext chunk [off, off+want) of the input; a short read means the file shrank. */
static duet_err_t seal_read_chunk(int in, uint8_t *buf, size_t want, uint64_t off)
{
    size_t got;
    duet_err_t err = pread_full(in, buf, want, off, &got);
    if (err != DUET_OK) {
        return err;
    }
    return got == want ? DUET_OK : DUET_EAGAIN;
}

/* Refuse an out_path that names the input file: the rename would replace it. */
static duet_err_t seal_check_distinct(int in, const char *out_path)
{
    struct stat a, b;
    if (fstat(in, &a) != 0) {
        return err_from_errno(errno);
    }
    if (stat(out_path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
        return DUET_EINVAL;
    }
    return DUET_OK;
}

/* Encrypt the input chunk by chunk into out, hashing what is written. */
static duet_err_t seal_stream(blob_work_t *w, int in, int out, uint64_t size)
{
    uint64_t n = duet_blob_chunk_count(size);
    uint64_t off = DUET_BLOB_HEADER_BYTES;
    duet_err_t err = pwrite_full(out, w->sealed, DUET_BLOB_HEADER_BYTES, 0);
    if (err != DUET_OK) {
        return err;
    }
    crypto_generichash_update(&w->hash, w->sealed, DUET_BLOB_HEADER_BYTES);
    for (uint64_t i = 0; i < n; i++) {
        size_t want = duet_blob_chunk_sealed_len(size, i) - DUET_BLOB_ABYTES;
        unsigned long long clen = 0;
        err = seal_read_chunk(in, w->plain, want, i * DUET_BLOB_CHUNK);
        if (err != DUET_OK) {
            return err;
        }
        crypto_secretstream_xchacha20poly1305_push(&w->st, w->sealed, &clen, w->plain, want, NULL,
                                                   0, expected_tag(i, n));
        sodium_memzero(w->plain, want);
        err = pwrite_full(out, w->sealed, (size_t)clen, off);
        if (err != DUET_OK) {
            return err;
        }
        crypto_generichash_update(&w->hash, w->sealed, clen);
        off += clen;
    }
    /* The input must end where fstat said: a byte past it means it grew while we read. */
    size_t got;
    uint8_t extra;
    err = pread_full(in, &extra, 1, size, &got);
    if (err == DUET_OK && got != 0) {
        err = DUET_EAGAIN;
    }
    return err;
}

duet_err_t duet_blob_seal(const char *in_path, const char *out_path, duet_rng_t rng,
                          duet_blob_ref_t *ref)
{
    if (in_path == NULL || out_path == NULL || ref == NULL || rng.fill == NULL) {
        abort();
    }
    memset(ref, 0, sizeof *ref);
    char tmp[DUET_BLOB_PATH_MAX];
    tmp[0] = '\0';
    int in = -1, out = -1;
    uint64_t size = 0;
    bool renamed = false;
    blob_work_t *w = NULL;

    duet_err_t err = path_check(out_path);
    if (err != DUET_OK) {
        goto cleanup;
    }
    if ((err = open_regular(in_path, &in, &size)) != DUET_OK) {
        goto cleanup;
    }
    if (size > DUET_BLOB_MAX) {
        err = DUET_ETOOBIG;
        goto cleanup;
    }
    if ((err = seal_check_distinct(in, out_path)) != DUET_OK) {
        goto cleanup;
    }
    if ((w = work_new()) == NULL) {
        err = DUET_ENOMEM;
        goto cleanup;
    }
    duet_rng_fill(&rng, w->key, sizeof w->key);
    duet_rng_fill(&rng, w->sealed, DUET_BLOB_HEADER_BYTES);
    stream_init_with_header(&w->st, w->sealed, w->key);
    crypto_generichash_init(&w->hash, NULL, 0, DUET_BLOB_ID_BYTES);

    if ((err = tmp_create(out_path, tmp, &out)) != DUET_OK) {
        goto cleanup;
    }
    if ((err = seal_stream(w, in, out, size)) != DUET_OK) {
        goto cleanup;
    }
    crypto_generichash_final(&w->hash, ref->id, DUET_BLOB_ID_BYTES);
    memcpy(ref->key, w->key, sizeof ref->key);
    ref->size = size;
    err = commit_file(out, tmp, out_path, &renamed);

cleanup:
    if (out >= 0) {
        close(out);
    }
    if (tmp[0] != '\0' && !renamed) {
        unlink(tmp);
    }
    if (in >= 0) {
        close(in);
    }
    work_free(w);
    if (err != DUET_OK) {
        duet_blob_ref_dispose(ref);
    }
    return err;
}

/* Check length and BLAKE2b-256 of the open sealed file fd against ref; buf is scratch. */
static duet_err_t verify_fd(int fd, const duet_blob_ref_t *ref, uint8_t *buf, size_t buflen)
{
    struct stat st;
    if (fstat(fd, &st) != 0) {
        return err_from_errno(errno);
    }
    uint64_t sealed = duet_blob_sealed_size(ref->size);
    if ((uint64_t)st.st_size != sealed) {
        return DUET_EBLOB;
    }
    crypto_generichash_state h;
    uint8_t id[DUET_BLOB_ID_BYTES];
    crypto_generichash_init(&h, NULL, 0, sizeof id);
    for (uint64_t off = 0; off < sealed;) {
        size_t want = sealed - off < buflen ? (size_t)(sealed - off) : buflen;
        size_t got;
        duet_err_t err = pread_full(fd, buf, want, off, &got);
        if (err != DUET_OK) {
            return err;
        }
        if (got != want) {
            return DUET_EBLOB;
        }
        crypto_generichash_update(&h, buf, got);
        off += got;
    }
    crypto_generichash_final(&h, id, sizeof id);
    return crypto_verify_32(id, ref->id) == 0 ? DUET_OK : DUET_EBLOB;
}

duet_err_t duet_blob_verify(const char *sealed_path, const duet_blob_ref_t *ref)
{
    if (sealed_path == NULL || ref == NULL) {
        abort();
    }
    if (ref->size > DUET_BLOB_MAX) {
        return DUET_ETOOBIG;
    }
    int fd = -1;
    uint64_t size;
    uint8_t *buf = NULL;
    duet_err_t err = open_regular(sealed_path, &fd, &size);
    if (err != DUET_OK) {
        goto cleanup;
    }
    if ((buf = malloc(UNIT_MAX)) == NULL) {
        err = DUET_ENOMEM;
        goto cleanup;
    }
    err = verify_fd(fd, ref, buf, UNIT_MAX);

cleanup:
    free(buf);
    if (fd >= 0) {
        close(fd);
    }
    return err;
}

/* Decrypt the verified sealed file in into out, chunk by chunk. */
static duet_err_t open_stream(blob_work_t *w, int in, int out, const duet_blob_ref_t *ref)
{
    uint64_t n = duet_blob_chunk_count(ref->size);
    size_t got;
    duet_err_t err = pread_full(in, w->sealed, DUET_BLOB_HEADER_BYTES, 0, &got);
    if (err != DUET_OK || got != DUET_BLOB_HEADER_BYTES) {
        return err != DUET_OK ? err : DUET_EBLOB;
    }
    stream_init_with_header(&w->st, w->sealed, ref->key);
    for (uint64_t i = 0; i < n; i++) {
        size_t len = duet_blob_chunk_sealed_len(ref->size, i);
        unsigned long long mlen = 0;
        unsigned char tag = 0;
        if ((err = pread_full(in, w->sealed, len, duet_blob_chunk_offset(i), &got)) != DUET_OK) {
            return err;
        }
        if (got != len) {
            return DUET_EBLOB;
        }
        if (crypto_secretstream_xchacha20poly1305_pull(&w->st, w->plain, &mlen, &tag, w->sealed,
                                                       len, NULL, 0) != 0) {
            return DUET_EAUTH;
        }
        if (tag != expected_tag(i, n)) {
            sodium_memzero(w->plain, (size_t)mlen);
            return DUET_EBLOB;
        }
        err = pwrite_full(out, w->plain, (size_t)mlen, i * DUET_BLOB_CHUNK);
        sodium_memzero(w->plain, (size_t)mlen);
        if (err != DUET_OK) {
            return err;
        }
    }
    /* Nothing may follow the FINAL chunk (the file could have grown since it was hashed). */
    uint8_t extra;
    err = pread_full(in, &extra, 1, duet_blob_sealed_size(ref->size), &got);
    if (err == DUET_OK && got != 0) {
        err = DUET_EBLOB;
    }
    return err;
}

duet_err_t duet_blob_open(const char *sealed_path, const duet_blob_ref_t *ref, const char *out_path)
{
    if (sealed_path == NULL || ref == NULL || out_path == NULL) {
        abort();
    }
    char tmp[DUET_BLOB_PATH_MAX];
    tmp[0] = '\0';
    int in = -1, out = -1;
    uint64_t size;
    bool renamed = false;
    blob_work_t *w = NULL;

    duet_err_t err = path_check(out_path);
    if (err != DUET_OK) {
        goto cleanup;
    }
    if (ref->size > DUET_BLOB_MAX) {
        err = DUET_ETOOBIG;
        goto cleanup;
    }
    if ((err = open_regular(sealed_path, &in, &size)) != DUET_OK) {
        goto cleanup;
    }
    if ((w = work_new()) == NULL) {
        err = DUET_ENOMEM;
        goto cleanup;
    }
    /* Verify before decrypt: the whole sealed file must be the blob the reference names. */
    if ((err = verify_fd(in, ref, w->sealed, sizeof w->sealed)) != DUET_OK) {
        goto cleanup;
    }
    if ((err = tmp_create(out_path, tmp, &out)) != DUET_OK) {
        goto cleanup;
    }
    if ((err = open_stream(w, in, out, ref)) != DUET_OK) {
        goto cleanup;
    }
    err = commit_file(out, tmp, out_path, &renamed);

cleanup:
    if (out >= 0) {
        close(out);
    }
    if (tmp[0] != '\0' && !renamed) {
        unlink(tmp); /* a partial plaintext never stays behind */
    }
    if (in >= 0) {
        close(in);
    }
    work_free(w);
    return err;
}

/* ---- receiving ----------------------------------------------------------------------- */

struct duet_blob_recv {
    stream_t st;                   /* state after the last stored chunk */
    crypto_generichash_state hash; /* over the stored bytes */
    duet_blob_ref_t ref;
    int fd;
    bool finished;
    uint64_t sealed_size;
    uint64_t nchunks;
    uint64_t stored;     /* bytes stored and checked: 0 or the end of chunk next_chunk-1 */
    uint64_t next_chunk; /* the chunk being assembled in unit[] */
    size_t held;         /* bytes of it held in unit[] (chunk 0: header included) */
    char partial_path[DUET_BLOB_PATH_MAX];
    char final_path[DUET_BLOB_PATH_MAX];
    uint8_t unit[UNIT_MAX];
    uint8_t plain[DUET_BLOB_CHUNK]; /* scratch for checking; wiped after each chunk */
};

/* The stored length of chunk k: chunk 0 goes with the header. */
static size_t recv_unit_len(const duet_blob_recv_t *r, uint64_t k)
{
    size_t len = duet_blob_chunk_sealed_len(r->ref.size, k);
    return k == 0 ? len + DUET_BLOB_HEADER_BYTES : len;
}

/* Forget everything stored: back to an empty stream. */
static void recv_reset(duet_blob_recv_t *r)
{
    sodium_memzero(&r->st, sizeof r->st);
    crypto_generichash_init(&r->hash, NULL, 0, DUET_BLOB_ID_BYTES);
    r->stored = 0;
    r->next_chunk = 0;
    r->held = 0;
}

/*
 * Check the unit buf[0..len) of chunk k: decrypt it (chunk 0 after its header) into the
 * scratch buffer, which is then wiped, and check its tag. On success r->st has moved past
 * chunk k; on failure r->st is unchanged.
 */
static duet_err_t recv_check_unit(duet_blob_recv_t *r, uint64_t k, const uint8_t *buf, size_t len)
{
    stream_t st;
    const uint8_t *c = buf;
    size_t clen = len;
    unsigned long long mlen = 0;
    unsigned char tag = 0;
    duet_err_t err = DUET_OK;
    if (k == 0) {
        stream_init_with_header(&st, buf, r->ref.key);
        c += DUET_BLOB_HEADER_BYTES;
        clen -= DUET_BLOB_HEADER_BYTES;
    } else {
        memcpy(&st, &r->st, sizeof st);
    }
    if (crypto_secretstream_xchacha20poly1305_pull(&st, r->plain, &mlen, &tag, c, clen, NULL, 0) !=
        0) {
        err = DUET_EAUTH;
        goto cleanup;
    }
    if (tag != expected_tag(k, r->nchunks)) {
        err = DUET_EBLOB;
        goto cleanup;
    }
    memcpy(&r->st, &st, sizeof st);

cleanup:
    sodium_memzero(r->plain, (size_t)mlen);
    sodium_memzero(&st, sizeof st);
    return err;
}

/* unit[] holds all of chunk next_chunk: check it, then write it, then count it. */
static duet_err_t recv_store_unit(duet_blob_recv_t *r)
{
    stream_t before;
    memcpy(&before, &r->st, sizeof before);
    duet_err_t err = recv_check_unit(r, r->next_chunk, r->unit, r->held);
    if (err != DUET_OK) {
        goto cleanup;
    }
    if ((err = pwrite_full(r->fd, r->unit, r->held, r->stored)) != DUET_OK) {
        memcpy(&r->st, &before, sizeof before);
        (void)!ftruncate(r->fd, (off_t)r->stored); /* best effort: resume would cut it too */
        goto cleanup;
    }
    crypto_generichash_update(&r->hash, r->unit, r->held);
    r->stored += r->held;
    r->next_chunk++;

cleanup:
    r->held = 0;
    sodium_memzero(&before, sizeof before);
    return err;
}

duet_err_t duet_blob_recv_resume(duet_blob_recv_t *r, uint64_t *next_offset)
{
    if (r == NULL || next_offset == NULL) {
        abort();
    }
    *next_offset = 0;
    if (r->finished) {
        return DUET_ESTATE;
    }
    recv_reset(r);
    while (r->next_chunk < r->nchunks) {
        size_t len = recv_unit_len(r, r->next_chunk);
        size_t got;
        duet_err_t err = pread_full(r->fd, r->unit, len, r->stored, &got);
        if (err != DUET_OK) {
            recv_reset(r);
            return err;
        }
        if (got != len || recv_check_unit(r, r->next_chunk, r->unit, len) != DUET_OK) {
            break; /* incomplete or damaged: this chunk and all after it are fetched again */
        }
        crypto_generichash_update(&r->hash, r->unit, len);
        r->stored += len;
        r->next_chunk++;
    }
    if (ftruncate(r->fd, (off_t)r->stored) != 0) {
        duet_err_t err = err_from_errno(errno);
        recv_reset(r);
        return err;
    }
    *next_offset = r->stored;
    return DUET_OK;
}

duet_err_t duet_blob_recv_open(duet_blob_recv_t **out, const duet_blob_ref_t *ref,
                               const char *partial_path, const char *final_path,
                               uint64_t *next_offset)
{
    if (out == NULL || ref == NULL || partial_path == NULL || final_path == NULL ||
        next_offset == NULL) {
        abort();
    }
    *out = NULL;
    *next_offset = 0;
    if (ref->size > DUET_BLOB_MAX) {
        return DUET_ETOOBIG;
    }
    if (path_check(partial_path) != DUET_OK || path_check(final_path) != DUET_OK) {
        return DUET_EINVAL;
    }
    if (sodium_init() < 0) { /* sodium_malloc needs the page size sodium_init() reads */
        return DUET_EINTERNAL;
    }
    _Static_assert(sizeof(duet_blob_recv_t) % _Alignof(duet_blob_recv_t) == 0, "size");
    duet_blob_recv_t *r = sodium_malloc(sizeof *r);
    if (r == NULL) {
        return DUET_ENOMEM;
    }
    /* sodium_malloc puts the block against a guard page, so it is aligned only as far as the
     * size is; crypto_generichash_state needs 64 bytes. */
    if ((uintptr_t)r % _Alignof(duet_blob_recv_t) != 0) {
        sodium_free(r);
        return DUET_EINTERNAL;
    }
    memset(r, 0, sizeof *r);
    r->fd = -1;
    memcpy(&r->ref, ref, sizeof r->ref);
    r->sealed_size = duet_blob_sealed_size(ref->size);
    r->nchunks = duet_blob_chunk_count(ref->size);
    memcpy(r->partial_path, partial_path, strlen(partial_path) + 1);
    memcpy(r->final_path, final_path, strlen(final_path) + 1);

    duet_err_t err = DUET_OK;
    struct stat st;
    r->fd = open(partial_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (r->fd < 0) {
        err = errno == ELOOP ? DUET_EINVAL : err_from_errno(errno);
        goto cleanup;
    }
    if (fstat(r->fd, &st) != 0) {
        err = err_from_errno(errno);
        goto cleanup;
    }
    if (!S_ISREG(st.st_mode)) {
        err = DUET_EINVAL;
        goto cleanup;
    }
    if ((err = duet_blob_recv_resume(r, next_offset)) != DUET_OK) {
        goto cleanup;
    }
    *out = r;
    r = NULL;

cleanup:
    duet_blob_recv_free(r);
    return err;
}

duet_err_t duet_blob_recv_append(duet_blob_recv_t *r, uint64_t offset, const uint8_t *data,
                                 size_t len)
{
    if (r == NULL || (data == NULL && len != 0)) {
        abort();
    }
    if (r->finished) {
        return DUET_ESTATE;
    }
    if (len > DUET_BLOB_APPEND_MAX) {
        return DUET_ETOOBIG;
    }
    uint64_t next = r->stored + r->held;
    if (offset > next) {
        return DUET_EPROTO;
    }
    if (offset + len <= next) {
        return DUET_OK; /* all of it is here already */
    }
    size_t skip = (size_t)(next - offset);
    data += skip;
    len -= skip;
    while (len > 0) {
        if (r->next_chunk >= r->nchunks) {
            return DUET_EBLOB; /* past the FINAL chunk */
        }
        size_t unit = recv_unit_len(r, r->next_chunk);
        size_t take = unit - r->held < len ? unit - r->held : len;
        memcpy(r->unit + r->held, data, take);
        r->held += take;
        data += take;
        len -= take;
        if (r->held == unit) {
            duet_err_t err = recv_store_unit(r);
            if (err != DUET_OK) {
                return err;
            }
        }
    }
    return DUET_OK;
}

uint64_t duet_blob_recv_next_offset(const duet_blob_recv_t *r)
{
    return r->stored + r->held;
}

uint64_t duet_blob_recv_sealed_size(const duet_blob_recv_t *r)
{
    return r->sealed_size;
}

bool duet_blob_recv_complete(const duet_blob_recv_t *r)
{
    return !r->finished && r->next_chunk == r->nchunks;
}

duet_err_t duet_blob_recv_finish(duet_blob_recv_t *r)
{
    if (r == NULL) {
        abort();
    }
    if (r->finished) {
        return DUET_ESTATE;
    }
    /* Every chunk stored means the last one was checked to carry FINAL (expected_tag). */
    if (r->next_chunk != r->nchunks) {
        return DUET_ENOTHERE;
    }
    crypto_generichash_state h;
    uint8_t id[DUET_BLOB_ID_BYTES];
    bool renamed = false;
    memcpy(&h, &r->hash, sizeof h); /* a retry after an I/O error hashes again */
    crypto_generichash_final(&h, id, sizeof id);
    if (crypto_verify_32(id, r->ref.id) != 0) {
        /* Every chunk authenticated, yet this is not the blob the reference names: start over. */
        recv_reset(r);
        if (ftruncate(r->fd, 0) != 0) {
            return err_from_errno(errno);
        }
        return DUET_EBLOB;
    }
    duet_err_t err = commit_file(r->fd, r->partial_path, r->final_path, &renamed);
    if (renamed) {
        r->finished = true;
        close(r->fd);
        r->fd = -1;
    }
    return err;
}

void duet_blob_recv_free(duet_blob_recv_t *r)
{
    if (r == NULL) {
        return;
    }
    if (r->fd >= 0) {
        close(r->fd);
    }
    sodium_free(r); /* wipes */
}

/* ---- sending ------------------------------------------------------------------------- */

struct duet_blob_reader {
    int fd;
    uint64_t size;
};

duet_err_t duet_blob_reader_open(duet_blob_reader_t **out, const char *sealed_path,
                                 const duet_blob_ref_t *ref)
{
    if (out == NULL || sealed_path == NULL || ref == NULL) {
        abort();
    }
    *out = NULL;
    if (ref->size > DUET_BLOB_MAX) {
        return DUET_ETOOBIG;
    }
    int fd;
    uint64_t size;
    duet_err_t err = open_regular(sealed_path, &fd, &size);
    if (err != DUET_OK) {
        return err;
    }
    if (size != duet_blob_sealed_size(ref->size)) {
        close(fd);
        return DUET_EBLOB;
    }
    duet_blob_reader_t *rd = malloc(sizeof *rd);
    if (rd == NULL) {
        close(fd);
        return DUET_ENOMEM;
    }
    rd->fd = fd;
    rd->size = size;
    *out = rd;
    return DUET_OK;
}

duet_err_t duet_blob_reader_read(duet_blob_reader_t *rd, uint64_t offset, uint8_t *out, size_t cap,
                                 size_t *out_len)
{
    if (rd == NULL || out_len == NULL || (out == NULL && cap != 0)) {
        abort();
    }
    *out_len = 0;
    if (offset > rd->size) {
        return DUET_ERANGE;
    }
    size_t want = rd->size - offset < cap ? (size_t)(rd->size - offset) : cap;
    size_t got;
    duet_err_t err = pread_full(rd->fd, out, want, offset, &got);
    if (err != DUET_OK) {
        return err;
    }
    if (got != want) {
        return DUET_EBLOB; /* the file shrank under us */
    }
    *out_len = got;
    return DUET_OK;
}

uint64_t duet_blob_reader_size(const duet_blob_reader_t *rd)
{
    return rd->size;
}

void duet_blob_reader_free(duet_blob_reader_t *rd)
{
    if (rd == NULL) {
        return;
    }
    close(rd->fd);
    free(rd);
}
