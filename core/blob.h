/*
 * duet — sealed blobs (voice notes), sealed, opened and received in resumable pieces.
 *
 * A voice file is encrypted once, with a fresh random 32-byte key, by libsodium's
 * crypto_secretstream_xchacha20poly1305 in plaintext chunks of DUET_BLOB_CHUNK bytes. The
 * sealed blob is
 *
 *     header (24) || chunk_0 || chunk_1 || ... || chunk_{n-1}
 *
 * where every chunk but the last carries exactly DUET_BLOB_CHUNK plaintext bytes with the tag
 * MESSAGE, and the last carries the rest (1..DUET_BLOB_CHUNK bytes; 0 only for an empty file)
 * with the tag FINAL. A sealed chunk is its plaintext length + 17 bytes. The blob id is the
 * BLAKE2b-256 of the whole sealed byte string, header included. The note that mentions a
 * voice note carries its reference {id, key, size, mime, duration_ms}. docs/protocol/blob.md
 * has the byte-exact format and the reasons.
 *
 * Conventions of this module:
 *  - core/ does file I/O here, but only on the paths it is given. A file that is produced
 *    (sealed blob, opened plaintext, received blob) is written under a temporary name in the
 *    same folder (the final name + ".tmp-XXXXXX", mode 0600), fsync'd, renamed into place and
 *    the folder fsync'd; on an error before the rename the temporary file is removed and the
 *    final name is untouched. Paths are 1 to DUET_BLOB_PATH_MAX - 16 bytes long (DUET_EINVAL
 *    otherwise).
 *  - Memory is constant in the size of the file: one chunk of plaintext and one sealed chunk
 *    at a time, whatever the blob size.
 *  - Randomness (the key and the 24-byte stream header) comes from the caller's duet_rng_t;
 *    nothing here reads the OS random source.
 *  - Errors: DUET_ETOOBIG for a plaintext over DUET_BLOB_MAX (also a reference that claims
 *    one). DUET_EBLOB ("voice data damaged") when the sealed bytes are not the blob the
 *    reference names: wrong length, wrong BLAKE2b-256 id, a FINAL tag that is missing from the
 *    last chunk or present on an earlier one, an unknown tag, bytes past the end. DUET_EAUTH
 *    when a chunk fails its Poly1305 tag under the reference's key (no further detail). File
 *    system failures map errno: DUET_ENOENT, DUET_EPERM, DUET_ENOSPC, DUET_EEXIST, DUET_EIO.
 *  - Keys, stream states and plaintext buffers are wiped on every path. The receiver, which
 *    holds a key for a long time, lives in sodium_malloc memory.
 *  - Verify before decrypt: duet_blob_open() checks the id over the whole sealed file before
 *    it decrypts a byte; the receiver checks every chunk's tag before it stores the chunk.
 */
#ifndef DUET_BLOB_H
#define DUET_BLOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "rng.h"

#define DUET_BLOB_CHUNK        65536u /* plaintext bytes per chunk */
#define DUET_BLOB_HEADER_BYTES 24u    /* crypto_secretstream_xchacha20poly1305_HEADERBYTES */
#define DUET_BLOB_ABYTES       17u    /* crypto_secretstream_xchacha20poly1305_ABYTES */
#define DUET_BLOB_SEALED_CHUNK (DUET_BLOB_CHUNK + DUET_BLOB_ABYTES) /* a full sealed chunk */
#define DUET_BLOB_MAX          (50u * 1024u * 1024u)                /* plaintext bytes, 50 MiB */
#define DUET_BLOB_ID_BYTES     32u                                  /* BLAKE2b-256 */
#define DUET_BLOB_KEY_BYTES    32u
#define DUET_BLOB_MIME_MAX     64u            /* bytes, without the terminating NUL */
#define DUET_BLOB_APPEND_MAX   (256u * 1024u) /* most sealed bytes one append takes */
#define DUET_BLOB_PATH_MAX     4096u          /* path buffer, temporary suffix included */

/* A reference to a sealed blob, as a note carries it. */
typedef struct duet_blob_ref {
    uint8_t id[DUET_BLOB_ID_BYTES];    /* BLAKE2b-256 of the sealed bytes */
    uint8_t key[DUET_BLOB_KEY_BYTES];  /* secretstream key; secret */
    uint64_t size;                     /* plaintext bytes, <= DUET_BLOB_MAX */
    char mime[DUET_BLOB_MIME_MAX + 1]; /* NUL-terminated, printable ASCII, 1..64 bytes */
    uint32_t duration_ms;
} duet_blob_ref_t;

/* ---- chunk and offset arithmetic ----------------------------------------------------- */

/* The number of chunks for a plaintext of plain_size bytes: ceil(plain_size / CHUNK), and 1
 * for an empty plaintext (one empty FINAL chunk). */
uint64_t duet_blob_chunk_count(uint64_t plain_size);

/* The sealed size for plain_size plaintext bytes: 24 + plain_size + 17 * chunk_count.
 * 0 (never a valid sealed size) when plain_size > DUET_BLOB_MAX. */
uint64_t duet_blob_sealed_size(uint64_t plain_size);

/* The sealed offset where chunk index starts: 24 + index * DUET_BLOB_SEALED_CHUNK. */
uint64_t duet_blob_chunk_offset(uint64_t index);

/* The sealed length of chunk index (DUET_BLOB_SEALED_CHUNK but for the last chunk); 0 when
 * index >= chunk_count(plain_size) or plain_size > DUET_BLOB_MAX. */
size_t duet_blob_chunk_sealed_len(uint64_t plain_size, uint64_t index);

/* ---- references ---------------------------------------------------------------------- */

/* Check a reference received from a peer: size <= DUET_BLOB_MAX (else DUET_ETOOBIG), mime
 * NUL-terminated within DUET_BLOB_MIME_MAX bytes, 1 byte or more, all printable ASCII
 * (0x20..0x7e) (else DUET_EINVAL). */
duet_err_t duet_blob_ref_check(const duet_blob_ref_t *ref) DUET_MUST_CHECK;

/* Wipe a reference (its key is a secret). */
void duet_blob_ref_dispose(duet_blob_ref_t *ref);

/* ---- seal and open ------------------------------------------------------------------- */

/*
 * Seal the file at in_path into a sealed blob at out_path. The key and the stream header
 * are drawn from rng. On success *ref holds id, key and size; its mime is "" and its
 * duration 0, for the caller to fill (core/audio.h). The input file is only read; out_path
 * must not name the input file (DUET_EINVAL). An existing out_path is replaced.
 * DUET_ETOOBIG over DUET_BLOB_MAX; DUET_EAGAIN when the input changed size while it was read.
 * An empty input seals to a valid blob of 41 bytes (header and one empty FINAL chunk); the
 * application refuses empty voice notes before it gets here.
 */
duet_err_t duet_blob_seal(const char *in_path, const char *out_path, duet_rng_t rng,
                          duet_blob_ref_t *ref) DUET_MUST_CHECK;

/*
 * Check that the file at sealed_path is exactly the blob ref names: its length is
 * sealed_size(ref->size) and its BLAKE2b-256 is ref->id (DUET_EBLOB otherwise). Reads the
 * whole file; decrypts nothing.
 */
duet_err_t duet_blob_verify(const char *sealed_path, const duet_blob_ref_t *ref) DUET_MUST_CHECK;

/*
 * Open (decrypt) the sealed blob at sealed_path to out_path. First duet_blob_verify(); then
 * every chunk is decrypted into a temporary file, which is renamed to out_path only if every
 * chunk authenticates (DUET_EAUTH), the FINAL tag is on the last chunk and on no other, and
 * nothing follows it (DUET_EBLOB). The output is byte-identical to the file that was sealed.
 * DUET_ETOOBIG when ref->size is over DUET_BLOB_MAX.
 */
duet_err_t duet_blob_open(const char *sealed_path, const duet_blob_ref_t *ref,
                          const char *out_path) DUET_MUST_CHECK;

/* ---- receiving, resumable ------------------------------------------------------------ */

/*
 * A receiver assembles a sealed blob whose bytes arrive in order, in pieces of any size,
 * in a partial file that survives crashes. It stores a chunk only after the chunk has
 * authenticated under the reference's key (the 24-byte header is stored together with chunk
 * 0, since it can only be checked with it), so the partial file always holds a prefix of
 * whole good chunks, except after a crash during a write or damage on disk: resume finds
 * that and cuts it off. Chunks are not fsync'd one by one (resume re-verifies after a crash);
 * the whole blob is fsync'd before it gets its final name.
 *
 * Bad data from the network is not sticky: a chunk that fails (DUET_EAUTH or DUET_EBLOB) is
 * dropped, the receiver goes back to the start of that chunk, and the transfer layer asks
 * again from duet_blob_recv_next_offset(). One receiver per partial file at a time.
 */
typedef struct duet_blob_recv duet_blob_recv_t;

/*
 * Start receiving the blob ref names into partial_path (created 0600 if absent, kept if
 * present), to be renamed to final_path by duet_blob_recv_finish(). Runs
 * duet_blob_recv_resume() on what partial_path already holds and sets *next_offset to the
 * sealed offset to ask for next. DUET_ETOOBIG when ref->size is over DUET_BLOB_MAX (the
 * codec checks the rest of a reference with duet_blob_ref_check()). The reference is copied.
 * DUET_EINVAL when partial_path exists and is not a regular file.
 */
duet_err_t duet_blob_recv_open(duet_blob_recv_t **out, const duet_blob_ref_t *ref,
                               const char *partial_path, const char *final_path,
                               uint64_t *next_offset) DUET_MUST_CHECK;

/*
 * Scan the partial file from the start: decrypt each whole chunk with the key to check it
 * (the plaintext is discarded) and hash it; stop at the first chunk that is incomplete, fails
 * its tag, or has the wrong tag; truncate the file right after the last good chunk (so a
 * flipped byte on disk costs that chunk and those after it, which are fetched again); drop
 * any bytes held in memory. *next_offset is the sealed offset to ask for next: 0 when even
 * chunk 0 is missing, the end of the last good chunk otherwise, sealed_size when all is here.
 * After a file system error (DUET_EIO...) the receiver holds nothing; free it.
 */
duet_err_t duet_blob_recv_resume(duet_blob_recv_t *r, uint64_t *next_offset) DUET_MUST_CHECK;

/*
 * Take the sealed bytes data[0..len) that start at sealed offset `offset`. Bytes before
 * duet_blob_recv_next_offset() (a resend) are skipped; a gap (offset past it) is
 * DUET_EPROTO and takes nothing; len > DUET_BLOB_APPEND_MAX is DUET_ETOOBIG. Each chunk that
 * completes is checked and then written: a chunk that fails its tag is DUET_EAUTH, a chunk
 * with the wrong tag (FINAL early or missing) DUET_EBLOB, bytes past the sealed size
 * DUET_EBLOB; in each case that chunk and the rest of data are dropped and the next offset
 * goes back to the start of the chunk. After finish, DUET_ESTATE.
 */
duet_err_t duet_blob_recv_append(duet_blob_recv_t *r, uint64_t offset, const uint8_t *data,
                                 size_t len) DUET_MUST_CHECK;

/* The sealed offset to ask for next (bytes stored plus bytes held for the current chunk). */
uint64_t duet_blob_recv_next_offset(const duet_blob_recv_t *r);

/* The sealed size of the blob being received. */
uint64_t duet_blob_recv_sealed_size(const duet_blob_recv_t *r);

/* True when every chunk is stored and checked: duet_blob_recv_finish() may be called. */
bool duet_blob_recv_complete(const duet_blob_recv_t *r);

/*
 * Finish: DUET_ENOTHERE until every chunk is in; then check that the last stored chunk has
 * the FINAL tag and that the BLAKE2b-256 of the partial file is ref->id. On a mismatch
 * (DUET_EBLOB) the partial file is emptied, so that the next transfer starts over. On
 * success the file is fsync'd and renamed to final_path (replacing it), and the receiver
 * accepts nothing more (DUET_ESTATE).
 */
duet_err_t duet_blob_recv_finish(duet_blob_recv_t *r) DUET_MUST_CHECK;

/* Close the partial file (kept on disk for a later resume) and wipe. NULL is a no-op. */
void duet_blob_recv_free(duet_blob_recv_t *r);

/* ---- sending ------------------------------------------------------------------------- */

/* Reads a sealed blob by offset, for the transfer layer to send. */
typedef struct duet_blob_reader duet_blob_reader_t;

/*
 * Open the sealed blob at sealed_path for reading. Its length must be
 * sealed_size(ref->size) (DUET_EBLOB otherwise); the content is not re-hashed (see
 * duet_blob_verify()).
 */
duet_err_t duet_blob_reader_open(duet_blob_reader_t **out, const char *sealed_path,
                                 const duet_blob_ref_t *ref) DUET_MUST_CHECK;

/* Read up to cap sealed bytes starting at offset into out; *out_len is the number read
 * (0 at the end). DUET_ERANGE for an offset past the end. */
duet_err_t duet_blob_reader_read(duet_blob_reader_t *rd, uint64_t offset, uint8_t *out, size_t cap,
                                 size_t *out_len) DUET_MUST_CHECK;

/* The sealed size. */
uint64_t duet_blob_reader_size(const duet_blob_reader_t *rd);

/* Close. NULL is a no-op. */
void duet_blob_reader_free(duet_blob_reader_t *rd);

#endif /* DUET_BLOB_H */
