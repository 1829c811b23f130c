/*
 * duet — the strict msgpack codec for every frame duet reads from a peer, a relay or disk.
 *
 * Encoding is msgpack-c's packer writing into a capped buffer. Decoding is msgpack-c's
 * unpacker, behind a strict gate:
 *
 *  1. duet_codec_decode() first walks the bytes iteratively (no recursion) and refuses
 *     anything outside the limits: nesting deeper than max_depth, strings, binaries,
 *     arrays or maps longer than their limit, more objects in all than max_objects, any
 *     type duet never sends (float, ext/timestamp), truncated input, and trailing bytes
 *     after the one top-level object. The walk exists because msgpack-c allocates an
 *     array's or map's element table from its declared length before it has seen the
 *     elements, so a six-byte "array of 4 billion" would ask for 64 GiB; after the walk,
 *     every declared length is known to fit in the input.
 *  2. msgpack-c then unpacks into a zone owned by the duet_codec_msg_t.
 *  3. Typed getters read fields with exact types and ranges; duet_codec_map() checks that a
 *     map has only known keys (small unsigned integers), no duplicates, and every required
 *     key, each of the declared type. Strings are validated as UTF-8.
 *
 * Frames are maps keyed by small unsigned integers (docs/protocol.md lists each frame's
 * keys); unknown keys are an error, so nothing a peer sends is silently ignored.
 */
#ifndef DUET_CODEC_H
#define DUET_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "err.h"

/* Hard ceilings; each frame type picks limits at or below these. */
#define DUET_CODEC_MAX_DEPTH 16u
#define DUET_CODEC_MAX_INPUT (1u << 20) /* 1 MiB: no frame is larger */

typedef struct duet_codec_limits {
    uint32_t max_depth;   /* containers nested (a top-level map is depth 1) */
    uint32_t max_str;     /* bytes in one string */
    uint32_t max_bin;     /* bytes in one binary */
    uint32_t max_array;   /* elements in one array */
    uint32_t max_map;     /* pairs in one map */
    uint32_t max_objects; /* objects in the whole message, containers included */
} duet_codec_limits_t;

/* Limits for ordinary duet frames: depth 6, strings and binaries up to 80 KiB (a 64 KiB
 * note plus envelope overhead), arrays up to 4096, maps up to 64, 100,000 objects. */
extern const duet_codec_limits_t duet_codec_default_limits;

/* ---- decoding ------------------------------------------------------------------------ */

typedef struct duet_codec_msg {
    msgpack_zone zone;
    msgpack_object root;
    bool live;
} duet_codec_msg_t;

/*
 * Check buf[0..len) against lim (see the preamble) and unpack it into msg. On success
 * msg->root is the top-level object, valid until duet_codec_msg_dispose(msg); the object
 * points into msg's zone and into buf (strings and binaries are not copied, so buf must
 * outlive msg). Errors: DUET_ETRUNCATED, DUET_ETRAILING, DUET_EDEPTH, DUET_ETOOBIG,
 * DUET_ETYPE (float or ext), DUET_EDECODE (reserved byte 0xc1), DUET_ENOMEM.
 */
duet_err_t duet_codec_decode(duet_codec_msg_t *msg, const uint8_t *buf, size_t len,
                             const duet_codec_limits_t *lim) DUET_MUST_CHECK;

/* Only the structural check of duet_codec_decode (for fuzzing and for callers that only
 * need to know a message is well formed). */
duet_err_t duet_codec_check(const uint8_t *buf, size_t len,
                            const duet_codec_limits_t *lim) DUET_MUST_CHECK;

/* Free what decode allocated. Safe on a zeroed or disposed msg. */
void duet_codec_msg_dispose(duet_codec_msg_t *msg);

/* Field types for duet_codec_map. */
typedef enum {
    DUET_CODEC_UINT = 1, /* positive integer */
    DUET_CODEC_INT,      /* any integer */
    DUET_CODEC_BOOL,
    DUET_CODEC_STR, /* UTF-8 string */
    DUET_CODEC_BIN,
    DUET_CODEC_ARRAY,
    DUET_CODEC_MAP,
    DUET_CODEC_NIL,
    DUET_CODEC_ANY /* any type; the caller checks */
} duet_codec_type_t;

typedef struct duet_codec_field {
    uint32_t key;
    duet_codec_type_t type;
    bool required;
} duet_codec_field_t;

/*
 * Read a map with integer keys against fields[0..n): out[i] is set to the value of
 * fields[i].key, or NULL if absent and optional. DUET_ETYPE if obj is not a map or a value
 * has the wrong type (strings are also UTF-8 checked: DUET_EUTF8), DUET_EUNKNOWNKEY for a
 * key not in fields (or not an unsigned integer, or repeated), DUET_EMISSING for a required
 * key that is absent.
 */
duet_err_t duet_codec_map(const msgpack_object *obj, const duet_codec_field_t *fields, size_t n,
                          const msgpack_object **out) DUET_MUST_CHECK;

/* Typed reads. Each checks the exact type and the range/length; *out is zero on error. */
duet_err_t duet_codec_get_uint(const msgpack_object *obj, uint64_t min, uint64_t max,
                               uint64_t *out) DUET_MUST_CHECK;
duet_err_t duet_codec_get_int(const msgpack_object *obj, int64_t min, int64_t max,
                              int64_t *out) DUET_MUST_CHECK;
duet_err_t duet_codec_get_bool(const msgpack_object *obj, bool *out) DUET_MUST_CHECK;
/* Binary of length in [min, max]. */
duet_err_t duet_codec_get_bin(const msgpack_object *obj, size_t min, size_t max,
                              const uint8_t **out, size_t *out_len) DUET_MUST_CHECK;
/* Binary of exactly n bytes, copied to out. */
duet_err_t duet_codec_get_fixed(const msgpack_object *obj, uint8_t *out,
                                size_t n) DUET_MUST_CHECK;
/* UTF-8 string of length in [min, max] bytes (not NUL-terminated). */
duet_err_t duet_codec_get_str(const msgpack_object *obj, size_t min, size_t max,
                              const char **out, size_t *out_len) DUET_MUST_CHECK;

/* Whether s[0..len) is well-formed UTF-8 (RFC 3629: no overlongs, no surrogates, nothing
 * above U+10FFFF). NUL bytes are refused too: no duet text contains them. */
bool duet_utf8_valid(const uint8_t *s, size_t len);

/* ---- encoding ------------------------------------------------------------------------ */

/*
 * An encoder writes into a buffer it owns that grows up to cap bytes (a hard maximum set at
 * creation, as curl's dynbuf does). Writes past cap set a sticky DUET_ETOOBIG that
 * duet_codec_enc_finish reports; the pack calls themselves do not fail.
 */
typedef struct duet_codec_enc {
    msgpack_packer pk;
    uint8_t *buf;
    size_t len, alloc, cap;
    duet_err_t err;
} duet_codec_enc_t;

void duet_codec_enc_init(duet_codec_enc_t *enc, size_t cap);
void duet_codec_enc_reset(duet_codec_enc_t *enc); /* empty it, keep the memory */
void duet_codec_enc_dispose(duet_codec_enc_t *enc); /* wipes and frees */

/* The packer, for msgpack_pack_* calls. */
static inline msgpack_packer *duet_codec_pk(duet_codec_enc_t *enc)
{
    return &enc->pk;
}

/* Shorthands for the common shapes. */
void duet_codec_put_map(duet_codec_enc_t *enc, uint32_t n);
void duet_codec_put_array(duet_codec_enc_t *enc, uint32_t n);
void duet_codec_put_key(duet_codec_enc_t *enc, uint32_t key);
void duet_codec_put_uint(duet_codec_enc_t *enc, uint64_t v);
void duet_codec_put_int(duet_codec_enc_t *enc, int64_t v);
void duet_codec_put_bool(duet_codec_enc_t *enc, bool v);
void duet_codec_put_nil(duet_codec_enc_t *enc);
void duet_codec_put_bin(duet_codec_enc_t *enc, const uint8_t *p, size_t n);
void duet_codec_put_str(duet_codec_enc_t *enc, const char *s, size_t n);

/* The encoded bytes (valid until the next call on enc) or the sticky error. */
duet_err_t duet_codec_enc_finish(duet_codec_enc_t *enc, const uint8_t **out,
                                 size_t *out_len) DUET_MUST_CHECK;

#endif /* DUET_CODEC_H */
