/*
 * duet — CPace, a balanced PAKE, over ristretto255 with SHA-512, sans-I/O.
 *
 * Implements draft-irtf-cfrg-cpace-21 (suite CPACE-RISTR255-SHA512) with libsodium's
 * crypto_core_ristretto255 and crypto_hash_sha512. duet's pairing runs it once per pairing
 * attempt: both devices know a low-entropy password (the pairing code); each sends one share;
 * both derive the same 64-byte ISK if and only if they used the same password, and an active
 * attacker learns nothing that lets it test a second guess offline.
 *
 * Conventions of this module:
 *  - Nothing here does I/O. The secret scalar is drawn from the caller's duet_rng_t
 *    (64 bytes, reduced mod the group order, as libsodium's scalar_random does).
 *  - duet_cpace_t is a plain struct the caller owns (stack or sodium_malloc memory);
 *    duet_cpace_finish and duet_cpace_dispose wipe the secret scalar. One context runs one
 *    exchange: start once, finish once.
 *  - Inputs are borrowed for the call; the context copies the sid and its own AD.
 *  - A peer share that is not a canonical ristretto255 encoding, or that makes the shared
 *    point the identity (the identity itself), is DUET_EBADKEY. This is a peer that does not
 *    follow the protocol, not a wrong password: a wrong password is only detected later, when
 *    the ISKs differ (duet's pairing sees it as a failed Noise handshake). Any failure of
 *    duet_cpace_finish is sticky: the scalar is wiped and the context is dead.
 *  - Lengths over the named limits below are DUET_ETOOBIG and change nothing. NULL with a
 *    zero length is an empty string; NULL with a nonzero length aborts (a caller bug).
 *  - The string utilities (prepend_len, lv_cat, o_cat, transcripts, generator string) are
 *    public so that tests can check each step against the draft's vectors; they write into a
 *    caller buffer out[0..cap) and its length into *out_len, or return DUET_ETOOBIG.
 *  - Names follow the draft: PRS (password-related string), CI (channel identifier), sid
 *    (session id), AD (associated data), Ya/Yb (shares), K, ISK, sid_output.
 */
#ifndef DUET_CPACE_H
#define DUET_CPACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "rng.h"

#define DUET_CPACE_SHAREBYTES 32u   /* an encoded ristretto255 point: Ya, Yb, g, K */
#define DUET_CPACE_SCALARBYTES 32u  /* a scalar, little-endian */
#define DUET_CPACE_ISKBYTES 64u     /* the intermediate session key (SHA-512 output) */
#define DUET_CPACE_SIDOUTBYTES 64u  /* sid_output */
#define DUET_CPACE_MAX_PRS 256u     /* limits on the inputs, in bytes */
#define DUET_CPACE_MAX_CI 256u
#define DUET_CPACE_MAX_SID 64u
#define DUET_CPACE_MAX_AD 256u
#define DUET_CPACE_HASH_BLOCK 128u  /* H.s_in_bytes of SHA-512, sets the zero padding */

/* The draft's domain separation strings. */
#define DUET_CPACE_DSI "CPaceRistretto255"
#define DUET_CPACE_DSI_ISK "CPaceRistretto255_ISK"
#define DUET_CPACE_SID_OUTPUT_PREFIX "CPaceSidOutput"

/*
 * The two settings of the draft. INITIATOR/RESPONDER: the initiator's share is Ya, the
 * responder's Yb, and ISK uses transcript_ir (the order is fixed by role). SYMMETRIC: no
 * roles; ISK uses transcript_oc (ordered concatenation), so both sides compute the same value
 * whoever is "a".
 */
typedef enum {
    DUET_CPACE_INITIATOR = 1,
    DUET_CPACE_RESPONDER = 2,
    DUET_CPACE_SYMMETRIC = 3
} duet_cpace_role_t;

/* A borrowed byte string, for the string utilities. */
typedef struct duet_cpace_str {
    const uint8_t *p;
    size_t len;
} duet_cpace_str_t;

/* Defined here so callers can place it on the stack; do not touch the fields. */
typedef struct duet_cpace {
    uint8_t y[DUET_CPACE_SCALARBYTES];      /* own secret scalar; zero outside start..finish */
    uint8_t share[DUET_CPACE_SHAREBYTES];   /* own share, Ya or Yb */
    uint8_t sid[DUET_CPACE_MAX_SID];
    size_t sid_len;
    uint8_t ad[DUET_CPACE_MAX_AD];          /* own AD */
    size_t ad_len;
    uint8_t sid_output[DUET_CPACE_SIDOUTBYTES];
    duet_cpace_role_t role;
    uint8_t state;                          /* 0 fresh, 1 started, 2 finished, 3 dead */
} duet_cpace_t;

/* ---- the exchange ------------------------------------------------------------------ */

/*
 * Start an exchange: compute the generator from (PRS, CI, sid), draw the secret scalar from
 * rng and write this side's share to share[0..32) — the message to send to the peer, with
 * this side's AD if the application sends one. ctx needs no initialisation; it is
 * overwritten. DUET_ETOOBIG when an input exceeds its limit; DUET_EINTERNAL if the rng keeps
 * returning a zero scalar (a broken rng). On error ctx is left wiped and share zeroed.
 */
duet_err_t duet_cpace_start(duet_cpace_t *ctx, duet_cpace_role_t role, const uint8_t *prs,
                            size_t prs_len, const uint8_t *ci, size_t ci_len, const uint8_t *sid,
                            size_t sid_len, const uint8_t *ad, size_t ad_len, duet_rng_t rng,
                            uint8_t share[static DUET_CPACE_SHAREBYTES]) DUET_MUST_CHECK;

/*
 * Finish with the peer's share and AD: K = scalar_mult_vfy(y, peer_share), then
 *   ISK = SHA-512(lv_cat(DSI_ISK, sid, K) || transcript)
 * with transcript_ir(Ya, ADa, Yb, ADb) for the two roles, transcript_oc(...) for SYMMETRIC.
 * Writes isk[0..64) and computes sid_output. The secret scalar is wiped in every case.
 * DUET_EBADKEY for an invalid or identity peer share, DUET_ETOOBIG for peer AD over the limit,
 * DUET_ESTATE if not started or already finished; isk is zeroed on error.
 */
duet_err_t duet_cpace_finish(duet_cpace_t *ctx, const uint8_t peer_share[static DUET_CPACE_SHAREBYTES],
                             const uint8_t *peer_ad, size_t peer_ad_len,
                             uint8_t isk[static DUET_CPACE_ISKBYTES]) DUET_MUST_CHECK;

/*
 * sid_output = SHA-512("CPaceSidOutput" || transcript), a public session identifier both
 * sides share (useful when no sid was available in advance). DUET_ESTATE before a
 * successful finish.
 */
duet_err_t duet_cpace_sid_output(const duet_cpace_t *ctx,
                                 uint8_t out[static DUET_CPACE_SIDOUTBYTES]) DUET_MUST_CHECK;

/* Wipe the context. Safe on a zeroed or disposed one. */
void duet_cpace_dispose(duet_cpace_t *ctx);

/* ---- group operations --------------------------------------------------------------- */

/*
 * calculate_generator: g = one_way_map(SHA-512(generator_string(DSI, PRS, CI, sid))),
 * encoded (32 bytes). g is derived from the password: treat it as a secret. DUET_ETOOBIG
 * over the limits.
 */
duet_err_t duet_cpace_calculate_generator(const uint8_t *prs, size_t prs_len, const uint8_t *ci,
                                          size_t ci_len, const uint8_t *sid, size_t sid_len,
                                          uint8_t g[static DUET_CPACE_SHAREBYTES]) DUET_MUST_CHECK;

/*
 * scalar_mult_vfy(y, X): encode(decode(X)^y). DUET_EBADKEY when X is not a canonical
 * encoding or the result is the identity (then out is zeroed, the draft's G.I).
 */
duet_err_t duet_cpace_scalar_mult_vfy(const uint8_t y[static DUET_CPACE_SCALARBYTES],
                                      const uint8_t X[static DUET_CPACE_SHAREBYTES],
                                      uint8_t out[static DUET_CPACE_SHAREBYTES]) DUET_MUST_CHECK;

/* ---- string utilities (draft section "CPace function definitions") ---------------------- */

/* prepend_len(data): LEB128(len) || data. */
duet_err_t duet_cpace_prepend_len(duet_cpace_str_t data, uint8_t *out, size_t cap,
                                  size_t *out_len) DUET_MUST_CHECK;

/* lv_cat(parts[0], ..., parts[n-1]) = prepend_len(parts[0]) || ... */
duet_err_t duet_cpace_lv_cat(const duet_cpace_str_t *parts, size_t n, uint8_t *out, size_t cap,
                             size_t *out_len) DUET_MUST_CHECK;

/* o_cat(a, b) = "oc" || max(a, b) || min(a, b), lexicographic byte order (a longer string
 * with an equal prefix is the larger). */
duet_err_t duet_cpace_o_cat(duet_cpace_str_t a, duet_cpace_str_t b, uint8_t *out, size_t cap,
                            size_t *out_len) DUET_MUST_CHECK;

/* transcript_ir(Ya, ADa, Yb, ADb) = lv_cat(Ya, ADa) || lv_cat(Yb, ADb). */
duet_err_t duet_cpace_transcript_ir(duet_cpace_str_t ya, duet_cpace_str_t ada, duet_cpace_str_t yb,
                                    duet_cpace_str_t adb, uint8_t *out, size_t cap,
                                    size_t *out_len) DUET_MUST_CHECK;

/* transcript_oc(Ya, ADa, Yb, ADb) = o_cat(lv_cat(Ya, ADa), lv_cat(Yb, ADb)). */
duet_err_t duet_cpace_transcript_oc(duet_cpace_str_t ya, duet_cpace_str_t ada, duet_cpace_str_t yb,
                                    duet_cpace_str_t adb, uint8_t *out, size_t cap,
                                    size_t *out_len) DUET_MUST_CHECK;

/*
 * generator_string(DSI, PRS, CI, sid, 128) = lv_cat(DSI, PRS, zero_bytes(ZPAD), CI, sid) with
 * ZPAD = max(0, 128 - len(prepend_len(PRS)) - len(prepend_len(DSI)) - 1), so DSI, PRS and the
 * padding fill the first SHA-512 block. Contains the password: wipe it after use.
 * DUET_ETOOBIG over the input limits or cap.
 */
duet_err_t duet_cpace_generator_string(const uint8_t *prs, size_t prs_len, const uint8_t *ci,
                                       size_t ci_len, const uint8_t *sid, size_t sid_len,
                                       uint8_t *out, size_t cap, size_t *out_len) DUET_MUST_CHECK;

#endif /* DUET_CPACE_H */
