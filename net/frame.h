/*
 * duet — the link's framing, sans-I/O (net/frame).
 *
 * The byte layer under net/link, kept free of sockets so that it can be fuzzed on its own
 * (tests/fuzz/fuzz_link.c). docs/protocol/link.md is the byte-exact description.
 *
 *  - Frame: a 2-byte big-endian length n (1..65535), then n bytes. A zero length is a
 *    protocol error; a length above the reader's current maximum is one too, reported as
 *    soon as the two length bytes are in (nothing waits for a body that can never be valid).
 *  - Sealed record (secure links): a record of up to DUET_FRAME_MAX_RECORD bytes is cut into
 *    chunks of at most DUET_FRAME_MAX_CHUNK bytes; each chunk travels as the plaintext of one
 *    Noise transport message, flags ‖ chunk, where flags bit 0 (DUET_FRAME_FLAG_MORE) says
 *    that more chunks of the same record follow and every other bit is zero. A chunk with
 *    MORE set is never empty. A record of zero bytes (one message whose plaintext is the
 *    single byte 0x00) is a keepalive.
 *
 * Conventions of this module:
 *  - The reader and the reassembler are plain structs the caller owns (_init/_dispose);
 *    _dispose wipes what they hold (plaintext may pass through both).
 *  - Errors are sticky: after one, every later call returns it again.
 *  - Every failure caused by peer bytes is DUET_EPROTO, except a Noise tag that does not
 *    verify, which is DUET_EAUTH, and an exhausted nonce, DUET_ENONCE.
 *  - Pointers handed out point into the caller's input or into the struct, and are valid
 *    until the next call on the same struct (or until the caller changes its input).
 */
#ifndef DUET_FRAME_H
#define DUET_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "noise.h"

#define DUET_FRAME_HDR        2u     /* the length prefix */
#define DUET_FRAME_MAX        65535u /* the largest frame body (a Noise message) */
#define DUET_FRAME_FLAG_MORE  0x01u  /* flags bit 0: more chunks follow */
#define DUET_FRAME_MAX_CHUNK  (DUET_FRAME_MAX - DUET_NOISE_TAGLEN - 1u) /* 65518 */
#define DUET_FRAME_MAX_RECORD (256u * 1024u)           /* the largest record after reassembly */
#define DUET_FRAME_MIN_SEALED (DUET_NOISE_TAGLEN + 1u) /* tag + flags: the smallest message */

/* ---- reading frames ------------------------------------------------------------------- */

typedef struct duet_frame_reader {
    size_t max;      /* the largest body accepted for the next frame */
    size_t need;     /* the body length of the frame being read; 0 while reading the prefix */
    size_t have;     /* prefix or body bytes held so far */
    duet_err_t dead; /* sticky error */
    uint8_t hdr[DUET_FRAME_HDR];
    uint8_t buf[DUET_FRAME_MAX]; /* a body that arrived in pieces */
} duet_frame_reader_t;

/* Start a reader that accepts bodies of 1..max bytes (max <= DUET_FRAME_MAX, else abort). */
void duet_frame_reader_init(duet_frame_reader_t *r, size_t max);

/* Change the largest body accepted from the next frame on (same bound as _init). */
void duet_frame_reader_set_max(duet_frame_reader_t *r, size_t max);

/*
 * Take bytes from in[0..len) until one frame is complete or the input is used up. *used is
 * the number of bytes consumed. When a frame is complete, *body and *body_len give it: a
 * pointer into in when the body arrived whole in this call (no copy), else into the
 * reader's buffer; the caller may modify it in place (decrypt) until the next call. *body
 * is NULL when more input is needed. DUET_EPROTO on a zero or too large length (sticky).
 */
duet_err_t duet_frame_read(duet_frame_reader_t *r, uint8_t *in, size_t len, size_t *used,
                           uint8_t **body, size_t *body_len) DUET_MUST_CHECK;

/* True at a frame boundary (no prefix or body byte held): a clean place for EOF. */
bool duet_frame_reader_idle(const duet_frame_reader_t *r);

/* Wipe the reader. */
void duet_frame_reader_dispose(duet_frame_reader_t *r);

/* Write the 2-byte length prefix of a body of n bytes (1 <= n <= DUET_FRAME_MAX, else
 * abort). */
void duet_frame_put_header(uint8_t out[static DUET_FRAME_HDR], size_t n);

/* ---- reassembling records ------------------------------------------------------------- */

typedef struct duet_frame_reasm {
    uint8_t *buf; /* malloc'd, grows up to max; holds a record that came in chunks */
    size_t len;   /* bytes of the record held */
    size_t cap;
    size_t max;      /* the largest record */
    bool open;       /* a chunk with MORE has arrived: the record is not finished */
    duet_err_t dead; /* sticky error */
} duet_frame_reasm_t;

/* Start a reassembler for records of at most max bytes (max <= DUET_FRAME_MAX_RECORD). */
void duet_frame_reasm_init(duet_frame_reasm_t *r, size_t max);

/*
 * Take one plaintext, flags ‖ chunk. When it finishes a record, *complete is true and
 * *rec, *rec_len give the record (*rec_len may be 0: a keepalive); *rec points into plain
 * when the record was one chunk, else into the reassembler, and is valid until the next
 * call on r. DUET_EPROTO for an empty plaintext, a flags byte with a bit other than
 * DUET_FRAME_FLAG_MORE, an empty chunk with MORE set, or a record over max; DUET_ENOMEM
 * when the buffer cannot grow. All sticky.
 */
duet_err_t duet_frame_reasm_push(duet_frame_reasm_t *r, const uint8_t *plain, size_t len,
                                 bool *complete, const uint8_t **rec,
                                 size_t *rec_len) DUET_MUST_CHECK;

/* Wipe the record the last push completed, once the caller is done with it. */
void duet_frame_reasm_clear(duet_frame_reasm_t *r);

/* True when no record is half received. */
bool duet_frame_reasm_idle(const duet_frame_reasm_t *r);

/* Wipe and free the buffer. Safe on a zeroed or disposed struct. */
void duet_frame_reasm_dispose(duet_frame_reasm_t *r);

/* ---- sealed records -------------------------------------------------------------------- */

/* The number of Noise messages a record of len bytes travels in (1 for len 0). */
size_t duet_frame_chunks(size_t len);

/* The bytes on the wire for a sealed record of len bytes: prefixes, flags and tags. */
size_t duet_frame_sealed_size(size_t len);

/*
 * Seal record rec[0..len) with cs into out[0..cap): every chunk as one framed Noise
 * transport message, *out_len = duet_frame_sealed_size(len). DUET_ETOOBIG when len is over
 * DUET_FRAME_MAX_RECORD or the output does not fit in cap, DUET_ENONCE when the nonces run
 * out (nothing is consumed on either: cap and nonces are checked first). rec and out must
 * not overlap.
 */
duet_err_t duet_frame_seal(duet_noise_cs_t *cs, const uint8_t *rec, size_t len, uint8_t *out,
                           size_t cap, size_t *out_len) DUET_MUST_CHECK;

/*
 * Open one framed body msg[0..len) (a Noise transport message) with cs, decrypting it in
 * place, and push its plaintext into r; *complete, *rec and *rec_len as in
 * duet_frame_reasm_push. DUET_EAUTH when the tag does not verify, DUET_EPROTO for a
 * message shorter than DUET_FRAME_MIN_SEALED or a bad plaintext, DUET_ENONCE when the
 * nonces run out.
 */
duet_err_t duet_frame_open(duet_noise_cs_t *cs, uint8_t *msg, size_t len, duet_frame_reasm_t *r,
                           bool *complete, const uint8_t **rec, size_t *rec_len) DUET_MUST_CHECK;

#endif /* DUET_FRAME_H */
