/*
 * duet — the Noise Protocol Framework (revision 34), sans-I/O.
 *
 * One suite: DH 25519, cipher ChaChaPoly (IETF ChaCha20-Poly1305, 64-bit nonce encoded
 * little-endian in the last 8 bytes of the 96-bit nonce), hash BLAKE2b (HASHLEN 64,
 * BLOCKLEN 128; HMAC is real HMAC over crypto_generichash, not keyed BLAKE2b).
 * Patterns: the one-way N, K, X and the interactive NN, NK, NX, KN, KK, KX, XN, XK, XX,
 * IN, IK, IX, each with any set of psk modifiers (psk0 .. pskN), parsed from the protocol
 * name ("Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b").
 *
 * Conventions of this module:
 *  - Nothing here does I/O. Randomness comes from the caller's duet_rng_t (ephemerals), or
 *    a fixed ephemeral private key for test vectors.
 *  - duet_noise_hs_t and duet_noise_cs_t are plain structs the caller owns (_init/_dispose);
 *    _dispose wipes them. Callers that keep them long may put them in sodium_malloc memory.
 *  - Inputs are borrowed for the call. Output goes to caller buffers with a capacity; a
 *    buffer too small is DUET_ETOOBIG and changes nothing.
 *  - A Noise message is at most DUET_NOISE_MAX_MSG (65535) bytes, in and out.
 *  - Any failure while reading a handshake message (bad tag, bad key, wrong size) is sticky:
 *    the handshake is dead and every later call returns the same error. An authentication
 *    failure is always DUET_EAUTH, without detail. A DH result of all zeros (a low-order
 *    public key) is DUET_EBADKEY.
 *  - Transport decryption verifies before it returns anything; on failure it returns
 *    DUET_EAUTH and leaves the cipher state (its nonce) unchanged.
 *  - Buffers: a handshake message and its payload must not overlap; a transport output may
 *    be its input (in place) but must not otherwise overlap it. Overlap is a caller bug.
 *  - Keys are exactly those the pattern uses (duet_noise_info() says which): a missing key
 *    and a key the pattern does not use are both DUET_EINVAL, so that a caller who believes
 *    a remote key is being checked learns that it is not.
 */
#ifndef DUET_NOISE_H
#define DUET_NOISE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "rng.h"

#define DUET_NOISE_MAX_MSG 65535u
#define DUET_NOISE_HASHLEN 64u
#define DUET_NOISE_DHLEN 32u
#define DUET_NOISE_KEYLEN 32u
#define DUET_NOISE_TAGLEN 16u
#define DUET_NOISE_MAX_PSKS 4u
#define DUET_NOISE_MAX_PROLOGUE 1024u
#define DUET_NOISE_MAX_NAME 64u

typedef enum { DUET_NOISE_INITIATOR = 1, DUET_NOISE_RESPONDER = 2 } duet_noise_role_t;

/* What a protocol asks of one role. */
typedef struct duet_noise_info {
    uint8_t messages; /* handshake messages: 1 for one-way patterns, else 2 or 3 */
    bool one_way;     /* N, K, X: only the initiator sends, before and after the handshake */
    bool needs_s;     /* this role must be given keys->s */
    bool needs_rs;    /* this role must be given keys->rs (a pre-message) */
    uint8_t npsks;    /* keys->npsks must equal this */
} duet_noise_info_t;

/* A CipherState. */
typedef struct duet_noise_cs {
    uint8_t k[DUET_NOISE_KEYLEN];
    uint64_t n;
    bool has_key;
} duet_noise_cs_t;

/* Keys given to a handshake. Absent keys are NULL. */
typedef struct duet_noise_keys {
    const uint8_t *s;       /* local static private key (32), for patterns that need one */
    const uint8_t *e;       /* fixed local ephemeral private key (32): test vectors only;
                               NULL generates one from the rng */
    const uint8_t *rs;      /* remote static public key (32), pre-message patterns (K, I..) */
    const uint8_t *re;      /* remote ephemeral public key (32): no supported pattern has an
                               ephemeral pre-message, so this must be NULL */
    const uint8_t *psks[DUET_NOISE_MAX_PSKS]; /* 32 bytes each, in the order the pattern
                                                 uses them */
    size_t npsks;
} duet_noise_keys_t;

typedef struct duet_noise_hs duet_noise_hs_t;

/* Opaque in spirit; defined here so callers can place it on the stack or in secure memory.
 * Do not touch the fields. */
struct duet_noise_hs {
    /* SymmetricState */
    duet_noise_cs_t cs;
    uint8_t ck[DUET_NOISE_HASHLEN];
    uint8_t h[DUET_NOISE_HASHLEN];
    /* HandshakeState */
    uint8_t s_priv[32], s_pub[32];
    uint8_t e_priv[32], e_pub[32];
    uint8_t rs[32], re[32];
    uint8_t psks[DUET_NOISE_MAX_PSKS][32];
    uint8_t npsks, psks_used;
    bool has_s, has_e, has_rs, has_re, fixed_e;
    duet_noise_role_t role;
    uint8_t pattern;      /* index into the pattern table of noise.c */
    uint8_t psk_mask;     /* bit i set: pski modifier present */
    uint8_t msg_index;    /* next handshake message */
    bool done;
    bool split_done;      /* duet_noise_hs_split() has handed out c1 and c2 */
    duet_err_t dead;      /* sticky error, DUET_OK while alive */
    duet_rng_t rng;
    /* Split(): computed when the last handshake message is written or read */
    duet_noise_cs_t c1, c2;
    uint8_t binding[32];  /* see duet_noise_hs_binding_key() */
};

/*
 * Start a handshake for protocol_name ("Noise_KK_25519_ChaChaPoly_BLAKE2b"), in role, with
 * prologue[0..prologue_len) and the keys the pattern needs. Returns DUET_EUNSUPPORTED for a
 * protocol name outside the suite and patterns above, DUET_EINVAL when a key the pattern
 * needs is missing, a key it does not use is given, or the number of PSKs does not match,
 * DUET_ETOOBIG for a prologue over DUET_NOISE_MAX_PROLOGUE, DUET_EBADKEY for an invalid key.
 * The rng is used for the ephemeral key unless keys->e is given (keys->e is ignored by a
 * role that sends no ephemeral). On failure the state is dead: later calls return the same
 * error, and _dispose is still safe.
 */
duet_err_t duet_noise_hs_init(duet_noise_hs_t *hs, const char *protocol_name,
                              duet_noise_role_t role, const uint8_t *prologue,
                              size_t prologue_len, const duet_noise_keys_t *keys,
                              duet_rng_t rng) DUET_MUST_CHECK;

/* Wipe the handshake state. Safe on a zeroed or disposed struct. */
void duet_noise_hs_dispose(duet_noise_hs_t *hs);

/* Whether the protocol name is one this module runs. */
bool duet_noise_supported(const char *protocol_name);

/* What protocol_name asks of role: the keys to pass to _init, the number of handshake
 * messages, whether it is one-way. DUET_EUNSUPPORTED as duet_noise_supported(). */
duet_err_t duet_noise_info(const char *protocol_name, duet_noise_role_t role,
                           duet_noise_info_t *info) DUET_MUST_CHECK;

/* True when it is this side's turn to write the next handshake message. */
bool duet_noise_hs_should_write(const duet_noise_hs_t *hs);

/* True once the last handshake message has been written or read; then duet_noise_hs_split
 * and the getters below may be called. */
bool duet_noise_hs_done(const duet_noise_hs_t *hs);

/*
 * WriteMessage: write the next handshake message carrying payload into out[0..cap), its
 * length in *out_len. DUET_ESTATE when it is not our turn or the handshake is over,
 * DUET_ETOOBIG when the message would exceed cap or DUET_NOISE_MAX_MSG (these two change
 * nothing). DUET_EBADKEY when a DH with the remote key gives zero: sticky, and out is wiped.
 */
duet_err_t duet_noise_hs_write(duet_noise_hs_t *hs, const uint8_t *payload, size_t payload_len,
                               uint8_t *out, size_t cap, size_t *out_len) DUET_MUST_CHECK;

/*
 * ReadMessage: read the peer's next handshake message msg[0..msg_len), writing its payload
 * to payload[0..cap), its length in *payload_len. DUET_EAUTH on a bad tag, DUET_EBADKEY on a
 * low-order or malformed key, DUET_EDECODE on a wrong length (shorter than the pattern's
 * keys and tags, or over DUET_NOISE_MAX_MSG); all sticky, and nothing of the payload is
 * returned. DUET_ESTATE when it is our turn to write or the handshake is over, DUET_ETOOBIG
 * when the payload would not fit in cap: these two change nothing.
 */
duet_err_t duet_noise_hs_read(duet_noise_hs_t *hs, const uint8_t *msg, size_t msg_len,
                              uint8_t *payload, size_t cap, size_t *payload_len) DUET_MUST_CHECK;

/*
 * Split(): the transport cipher states, send for this side and recv from the peer (the
 * spec's c1 is the initiator's send). DUET_ESTATE before the handshake is done. May be
 * called once (later calls: DUET_ESTATE); the handshake's own copies are wiped. In a one-way
 * pattern the direction that does not exist (the responder's send, the initiator's recv)
 * is returned without a key, so the transport calls refuse it with DUET_ESTATE.
 */
duet_err_t duet_noise_hs_split(duet_noise_hs_t *hs, duet_noise_cs_t *send,
                               duet_noise_cs_t *recv) DUET_MUST_CHECK;

/* The handshake hash h (64 bytes), for channel binding. DUET_ESTATE before done. */
duet_err_t duet_noise_hs_handshake_hash(const duet_noise_hs_t *hs,
                                        uint8_t out[static DUET_NOISE_HASHLEN]) DUET_MUST_CHECK;

/* The remote static public key learned (from a message read without error) or given
 * (32 bytes). DUET_ENOENT if none; a dead handshake returns its sticky error and no key. */
duet_err_t duet_noise_hs_remote_static(const duet_noise_hs_t *hs,
                                       uint8_t out[static 32]) DUET_MUST_CHECK;

/*
 * A 32-byte secret bound to this handshake, for deriving further keys (duet's pairing
 * derives its ratchet root from it). It is the first 32 bytes of the third output of
 * HKDF(ck, zerolen, 3) computed at Split() — the outputs 1 and 2 being the transport keys —
 * so it is secret exactly when the transport keys are. DUET_ESTATE before done.
 */
duet_err_t duet_noise_hs_binding_key(const duet_noise_hs_t *hs,
                                     uint8_t out[static 32]) DUET_MUST_CHECK;

/* ---- CipherState (transport) ------------------------------------------------------- */

/* EncryptWithAd: out[0..plain_len+16) = ciphertext||tag, *out_len = plain_len+16.
 * DUET_ENONCE once n reaches 2^64-1 (the reserved value), DUET_ETOOBIG when plain_len+16
 * exceeds DUET_NOISE_MAX_MSG or cap, DUET_ESTATE for a cipher state without a key (the
 * spec's plaintext pass-through is never offered to transport callers). */
duet_err_t duet_noise_cs_encrypt(duet_noise_cs_t *cs, const uint8_t *ad, size_t ad_len,
                                 const uint8_t *plain, size_t plain_len, uint8_t *out,
                                 size_t cap, size_t *out_len) DUET_MUST_CHECK;

/* DecryptWithAd: verifies, then writes plain_len = cipher_len-16 bytes. DUET_EAUTH on a bad
 * tag (nonce unchanged), DUET_ENONCE when exhausted, DUET_EDECODE for cipher_len under 16 or
 * over DUET_NOISE_MAX_MSG, DUET_ETOOBIG when cap < cipher_len-16, DUET_ESTATE without a key.
 * Only DUET_OK advances the nonce. */
duet_err_t duet_noise_cs_decrypt(duet_noise_cs_t *cs, const uint8_t *ad, size_t ad_len,
                                 const uint8_t *cipher, size_t cipher_len, uint8_t *out,
                                 size_t cap, size_t *out_len) DUET_MUST_CHECK;

/* Rekey(): k = first 32 bytes of ENCRYPT(k, 2^64-1, zerolen, 32 zero bytes); n unchanged.
 * Rekeying a cipher state without a key is a caller bug. */
void duet_noise_cs_rekey(duet_noise_cs_t *cs);

/* Wipe a cipher state. */
void duet_noise_cs_dispose(duet_noise_cs_t *cs);

#endif /* DUET_NOISE_H */
