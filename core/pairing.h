/*
 * duet — the pairing engine: a code, CPace and Noise_XXpsk3 turn two strangers into partners.
 *
 * The LISTENER made the pairing code and waits; the JOINER typed it and connects. Five
 * messages over one reliable, ordered stream (docs/protocol/pairing.md has them byte-exact):
 *
 *   P1 joiner -> listener   version, nameplate, CPace share Ya
 *   P2 listener -> joiner   CPace share Yb, Noise message 1 (-> e)
 *   P3 joiner -> listener   Noise message 2 (<- e, ee, s, es)
 *   P4 listener -> joiner   Noise message 3 (-> s, se, psk), then the listener's identity
 *                           record in the first transport message
 *   P5 joiner -> listener   the joiner's identity record (transport), or FAIL
 *
 * The Noise PSK is the first 32 bytes of the CPace ISK, so a wrong code fails Noise message 3:
 * the joiner reports DUET_EWRONGCODE and sends FAIL, and the listener, reading FAIL, reports
 * DUET_EWRONGCODE too. The joiner is the CPace initiator and the ratchet's "Alice"; the
 * listener is the Noise initiator (it is the first to know both CPace shares, which the
 * Noise prologue and PSK need).
 *
 * Conventions of this module:
 *  - Sans-I/O: the caller moves messages. After duet_pairing_init and after every
 *    duet_pairing_receive, call duet_pairing_output until it says there is nothing, and send
 *    what it gives, also after a failure (FAIL must reach the peer). The caller frames the
 *    messages (e.g. a 2-byte length); a message is at most DUET_PAIRING_MAX_MSG bytes.
 *  - Randomness comes from the caller's duet_rng_t (CPace scalar, fresh Noise keys).
 *  - duet_pairing_t is a plain struct the caller owns; it holds secrets (the code, the
 *    identity signing key until used, the derived keys), so callers may place it in
 *    sodium_malloc memory; duet_pairing_dispose wipes it.
 *  - One attempt per engine: the first error is sticky, every later call returns it, and
 *    the caller must burn the code (the design's "one guess per nameplate"). A wrong code is
 *    DUET_EWRONGCODE; a peer speaking another version DUET_EVERSION, a P1 for another
 *    nameplate DUET_ENAMEPLATE; anything malformed DUET_EDECODE, DUET_ETRUNCATED,
 *    DUET_ETRAILING, DUET_ETOOBIG or DUET_EPROTO (a message out of turn); a failed tag or
 *    signature DUET_EAUTH; an invalid key DUET_EBADKEY. Tampering with P4's Noise part is
 *    indistinguishable from a wrong code and is reported as DUET_EWRONGCODE.
 *  - The Noise static keys are fresh random keys made for this pairing, never the identity
 *    keys: in XX an active attacker without the code could decrypt message 2's static (the
 *    PSK only enters at message 3). Identities travel only in transport messages, under keys
 *    that need the code.
 */
#ifndef DUET_PAIRING_H
#define DUET_PAIRING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "code.h"
#include "cpace.h"
#include "err.h"
#include "noise.h"
#include "rng.h"

#define DUET_PAIRING_VERSION 1u
#define DUET_PAIRING_MAX_MSG 4096u      /* any pairing message, in or out */
#define DUET_PAIRING_MAX_NAME 64u       /* display name, bytes of UTF-8 */
#define DUET_PAIRING_KEYBYTES 32u       /* identity pk, ratchet pub, derived keys */
#define DUET_PAIRING_SIGNBYTES 64u
#define DUET_PAIRING_SECRETKEYBYTES 64u /* libsodium Ed25519 secret key (seed || pk) */

#define DUET_PAIRING_NOISE_PROTOCOL "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b"

/* Message types: the first byte of every message. */
#define DUET_PAIRING_P1 0x01u
#define DUET_PAIRING_P2 0x02u
#define DUET_PAIRING_P3 0x03u
#define DUET_PAIRING_P4 0x04u
#define DUET_PAIRING_P5 0x05u
#define DUET_PAIRING_FAIL 0x0fu

/* Exact sizes of the fixed messages and parts (XXpsk3 with empty Noise payloads). */
#define DUET_PAIRING_NOISE1_BYTES 48u  /* e (32) + tag of the empty payload (16) */
#define DUET_PAIRING_NOISE2_BYTES 96u  /* e (32) + encrypted s (48) + tag (16) */
#define DUET_PAIRING_NOISE3_BYTES 64u  /* encrypted s (48) + tag (16) */
#define DUET_PAIRING_P1_BYTES (1u + 1u + 2u + DUET_CPACE_SHAREBYTES)
#define DUET_PAIRING_P2_BYTES (1u + DUET_CPACE_SHAREBYTES + DUET_PAIRING_NOISE1_BYTES)
#define DUET_PAIRING_P3_BYTES (1u + DUET_PAIRING_NOISE2_BYTES)
#define DUET_PAIRING_FAIL_BYTES 1u

/* An identity record: identity pk, first ratchet pub, name length, name, signature. */
#define DUET_PAIRING_RECORD_MIN (32u + 32u + 1u + 1u + DUET_PAIRING_SIGNBYTES)
#define DUET_PAIRING_RECORD_MAX (32u + 32u + 1u + DUET_PAIRING_MAX_NAME + DUET_PAIRING_SIGNBYTES)

typedef enum { DUET_PAIRING_LISTENER = 1, DUET_PAIRING_JOINER = 2 } duet_pairing_role_t;

typedef enum {
    DUET_PAIRING_RUNNING = 0,
    DUET_PAIRING_PAIRED = 1,
    DUET_PAIRING_FAILED = 2
} duet_pairing_status_t;

/* What this device brings. Borrowed for duet_pairing_init; the engine copies it. */
typedef struct duet_pairing_self {
    const uint8_t *identity_pk;  /* Ed25519 public key (32) */
    const uint8_t *identity_sk;  /* its libsodium secret key (64), to sign our record */
    const uint8_t *ratchet_pub;  /* our first ratchet X25519 public key (32); the caller
                                    keeps the private half */
    const char *name;            /* display name, 1..64 bytes of UTF-8, no control chars */
    size_t name_len;
} duet_pairing_self_t;

/* What pairing produced, the same on both sides except role and the partner fields. */
typedef struct duet_pairing_result {
    duet_pairing_role_t role;                          /* own role; the joiner is "Alice" */
    uint8_t partner_identity_pk[DUET_PAIRING_KEYBYTES];
    uint8_t partner_ratchet_pub[DUET_PAIRING_KEYBYTES];
    char partner_name[DUET_PAIRING_MAX_NAME + 1];      /* NUL-terminated */
    size_t partner_name_len;
    /* HKDF-SHA-256(ikm = Noise binding key, salt = handshake hash, info = label) */
    uint8_t root[DUET_PAIRING_KEYBYTES];        /* "duet ratchet root v1" */
    uint8_t hk_a[DUET_PAIRING_KEYBYTES];        /* "duet ratchet hk a v1" */
    uint8_t nhk_b[DUET_PAIRING_KEYBYTES];       /* "duet ratchet nhk b v1" */
    uint8_t pair_secret[DUET_PAIRING_KEYBYTES]; /* "duet pair secret v1" */
} duet_pairing_result_t;

/* A decoded identity record (the signature is checked by the engine, not by the decoder). */
typedef struct duet_pairing_record {
    uint8_t identity_pk[DUET_PAIRING_KEYBYTES];
    uint8_t ratchet_pub[DUET_PAIRING_KEYBYTES];
    char name[DUET_PAIRING_MAX_NAME + 1];        /* NUL-terminated */
    size_t name_len;
    uint8_t sig[DUET_PAIRING_SIGNBYTES];
} duet_pairing_record_t;

/* Defined here so callers can place it; do not touch the fields. */
typedef struct duet_pairing {
    duet_pairing_role_t role;
    uint8_t state;                  /* see pairing.c */
    duet_err_t err;                 /* sticky error, DUET_OK while alive */
    duet_rng_t rng;
    uint16_t nameplate;
    char code[DUET_CODE_MAX_LEN + 1];
    size_t code_len;
    uint8_t id_pk[DUET_PAIRING_KEYBYTES];
    uint8_t id_sk[DUET_PAIRING_SECRETKEYBYTES];
    uint8_t ratchet_pub[DUET_PAIRING_KEYBYTES];
    char name[DUET_PAIRING_MAX_NAME];
    size_t name_len;
    duet_cpace_t cpace;
    uint8_t ya[DUET_CPACE_SHAREBYTES];
    duet_noise_hs_t hs;
    duet_noise_cs_t send, recv;
    uint8_t hh[DUET_NOISE_HASHLEN];  /* handshake hash, signed by both records */
    duet_pairing_result_t result;
    uint8_t out[1u + DUET_PAIRING_NOISE3_BYTES + DUET_PAIRING_RECORD_MAX + DUET_NOISE_TAGLEN];
    size_t out_len;
    bool out_ready;
} duet_pairing_t;

/*
 * Start a pairing in role with the code (parsed or generated, see code.h) and this device's
 * identity. The joiner has P1 ready at once. DUET_EUTF8 for a name that is not UTF-8,
 * DUET_EEMPTY for an empty one, DUET_ETOOBIG over 64 bytes, DUET_EINVAL for a control
 * character in it; p is then failed (sticky) and holds no secret.
 */
duet_err_t duet_pairing_init(duet_pairing_t *p, duet_pairing_role_t role, const duet_code_t *code,
                             const duet_pairing_self_t *self, duet_rng_t rng) DUET_MUST_CHECK;

/*
 * The next message to send, if any: true and *msg, *len set (an engine buffer, valid until
 * the next call on p), or false. Take it before the next duet_pairing_receive.
 */
bool duet_pairing_output(duet_pairing_t *p, const uint8_t **msg, size_t *len);

/*
 * Give the engine the peer's next message msg[0..len). DUET_OK when it was accepted (there
 * may be output to send, and the status may now be PAIRED). An error fails the engine for
 * good (see the preamble); DUET_ESTATE, which changes nothing, when output is still waiting
 * to be taken or the engine is already paired.
 */
duet_err_t duet_pairing_receive(duet_pairing_t *p, const uint8_t *msg,
                                size_t len) DUET_MUST_CHECK;

/* RUNNING, PAIRED or FAILED. */
duet_pairing_status_t duet_pairing_status(const duet_pairing_t *p);

/* The sticky error of a failed engine, DUET_OK otherwise. */
duet_err_t duet_pairing_error(const duet_pairing_t *p);

/* Copy the result out. DUET_ESTATE unless PAIRED (then *out is zeroed). */
duet_err_t duet_pairing_result(const duet_pairing_t *p,
                               duet_pairing_result_t *out) DUET_MUST_CHECK;

/* Wipe the engine. Safe on a zeroed or disposed one. */
void duet_pairing_dispose(duet_pairing_t *p);

/* ---- identity records (public for tests and fuzzing) ---------------------------------- */

/*
 * Decode a record from buf[0..len): identity pk (32) || ratchet pub (32) || name length
 * (1) || name || signature (64). DUET_ETRUNCATED if short, DUET_ETRAILING if bytes follow,
 * DUET_EUTF8 for a name that is not UTF-8, DUET_EDECODE for an empty name, one over 64 bytes
 * or one with a control character. *out is zeroed on error.
 */
duet_err_t duet_pairing_record_decode(const uint8_t *buf, size_t len,
                                      duet_pairing_record_t *out) DUET_MUST_CHECK;

/*
 * Whether name[0..len) is a display name duet accepts: 1..64 bytes of strict UTF-8 (no
 * overlong forms, no surrogates, nothing above U+10FFFF) without control characters (C0,
 * DEL, C1), which a terminal could act on. DUET_OK, DUET_EEMPTY, DUET_ETOOBIG, DUET_EUTF8 or
 * DUET_EINVAL.
 */
duet_err_t duet_pairing_check_name(const char *name, size_t len) DUET_MUST_CHECK;

#endif /* DUET_PAIRING_H */
