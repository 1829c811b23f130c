/*
 * duet — the Signal Double Ratchet with header encryption, sans-I/O.
 *
 * Every item a device sends to its partner is sealed once into an envelope by this module
 * ("The Double Ratchet Algorithm", Perrin and Marlinspike, revision 1, section 4: header
 * encryption). docs/protocol/ratchet.md gives the byte-exact envelope, the KDFs and their
 * labels, and the reasons for each choice. In short:
 *
 *   envelope = 0x01 || nonce (24) || header ciphertext (40) || header tag (16)
 *                   || body ciphertext (plaintext length) || body tag (16)
 *   header   = DHs public key (32) || PN (u32 BE) || N (u32 BE), sealed with
 *              XChaCha20-Poly1305 under the header key HKs and a random nonce
 *   body     = XChaCha20-Poly1305 under the message key itself, nonce = 24 zero bytes
 *              (each message key seals exactly one body),
 *              AD = caller AD || the 80 header bytes
 *   KDF_RK_HE(rk, dh) = HKDF-SHA-256(salt = rk, ikm = dh, info = "duet ratchet rk v1", 96)
 *              = root key || chain key || next header key
 *   KDF_CK(ck)  = message key HMAC-SHA-256(ck, 0x01), next chain key HMAC-SHA-256(ck, 0x02)
 *
 * Initialisation is a documented extension of the spec, so that both partners can send
 * before hearing from each other: see duet_ratchet_init_alice / _bob.
 *
 * Conventions of this module:
 *  - Nothing here does I/O. Randomness (new ratchet key pairs, header nonces) comes from the
 *    duet_rng_t passed to each call that needs it.
 *  - duet_ratchet_t is opaque and lives on the heap, in sodium_malloc memory (guard pages,
 *    mlock where the system allows, wiped on free): it holds up to
 *    DUET_RATCHET_MAX_SKIPPED_TOTAL skipped message keys (133 KiB in all), too large for the
 *    stack, and every byte of it is secret. _new/_free allocate and wipe it; _free(NULL)
 *    is a no-op.
 *  - Inputs are borrowed for the call. Output goes to caller buffers with a capacity; a
 *    buffer too small is DUET_ETOOBIG and changes nothing. Outputs may not overlap inputs.
 *  - Decryption is transactional: on every failure (bad header, bad tag, duplicate, too
 *    many skipped messages, bad key) the state is byte-for-byte unchanged, so the caller
 *    can drop the envelope and go on. On success the state advances, and the caller must
 *    persist it (duet_ratchet_save) in the same transaction as the item it produced.
 *  - Errors from decryption:
 *      DUET_EDECODE   shorter than an envelope with an empty body;
 *      DUET_EVERSION  first byte is not 0x01;
 *      DUET_ETOOBIG   body above DUET_RATCHET_MAX_PLAINTEXT, AD above DUET_RATCHET_MAX_AD,
 *                     or cap too small;
 *      DUET_EAUTH     the header opens under no header key we hold, or the body tag is bad;
 *      DUET_EDUP      the header is authentic, but the message key for its counter has
 *                     already been used (a duplicate or replay). Keys evicted from the
 *                     bounded skipped-key store also land here: either way the message can
 *                     never be opened. A replay whose header key we no longer hold at all
 *                     (its chain is over and none of its skipped keys remain) cannot be told
 *                     from garbage and is DUET_EAUTH;
 *      DUET_EMAXSKIP  it would skip more than DUET_RATCHET_MAX_SKIP messages in one chain;
 *      DUET_EPROTO    an authentic header with an impossible value (N = 2^32-1, or a DH key
 *                     that differs from the current chain's);
 *      DUET_EBADKEY   an authentic header carries a small-order DH public key.
 *  - Caller bugs (NULL where a buffer is required, using an object never initialised or
 *    loaded) abort.
 */
#ifndef DUET_RATCHET_H
#define DUET_RATCHET_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "rng.h"

#define DUET_RATCHET_VERSION 0x01u
#define DUET_RATCHET_KEY_BYTES 32u
#define DUET_RATCHET_HEADER_NONCE_BYTES 24u
#define DUET_RATCHET_HEADER_PLAIN_BYTES 40u  /* DHs (32) || PN (4) || N (4) */
#define DUET_RATCHET_HEADER_BYTES 80u        /* nonce (24) || ciphertext (40) || tag (16) */
#define DUET_RATCHET_TAG_BYTES 16u
/* Envelope bytes beyond the plaintext: version (1) + header (80) + body tag (16). */
#define DUET_RATCHET_OVERHEAD (1u + DUET_RATCHET_HEADER_BYTES + DUET_RATCHET_TAG_BYTES)
/* Largest plaintext one envelope carries: the largest padded item, so that the envelope is
 * at most 96 KiB (a 64 KiB note and its fields fit; voice data travels as blobs). The link
 * splits records over several Noise messages, so envelopes may exceed 64 KiB. */
#define DUET_RATCHET_MAX_PLAINTEXT (98304u - DUET_RATCHET_OVERHEAD)
#define DUET_RATCHET_MAX_ENVELOPE (DUET_RATCHET_MAX_PLAINTEXT + DUET_RATCHET_OVERHEAD)
/* Largest caller associated data (it is concatenated with the header on the stack). */
#define DUET_RATCHET_MAX_AD 256u
/* At most this many message keys are skipped in one chain step (the spec's MAX_SKIP). */
#define DUET_RATCHET_MAX_SKIP 1000u
/* At most this many skipped message keys are kept in total; the oldest go first. */
#define DUET_RATCHET_MAX_SKIPPED_TOTAL 2000u
/* Saved state: a fixed part, then 68 bytes per skipped key (see docs/protocol/ratchet.md). */
#define DUET_RATCHET_SAVED_FIXED_BYTES 342u
#define DUET_RATCHET_SAVED_SKIPPED_BYTES 68u
#define DUET_RATCHET_MAX_SAVED                                                               \
    (DUET_RATCHET_SAVED_FIXED_BYTES +                                                        \
     DUET_RATCHET_MAX_SKIPPED_TOTAL * DUET_RATCHET_SAVED_SKIPPED_BYTES)

typedef struct duet_ratchet duet_ratchet_t;

/* Allocate an empty ratchet (sodium_malloc). DUET_ENOMEM. It must be initialised or loaded
 * before use. */
duet_err_t duet_ratchet_new(duet_ratchet_t **out) DUET_MUST_CHECK;

/* Wipe and free. NULL is a no-op. */
void duet_ratchet_free(duet_ratchet_t *r);

/* Wipe the state, keeping the memory for the next duet_ratchet_load (a caller that loads
 * one per batch spares itself an mmap, mlock, munlock and munmap of the block each time). */
void duet_ratchet_clear(duet_ratchet_t *r);

/*
 * Initialise as Alice, the pairing initiator. Pairing gave both sides the root key sk, the
 * header keys hk_a and nhk_b, and each side's first ratchet key pair; Alice holds a0_priv
 * and knows b0_pub. This is the spec's RatchetInitAliceHE with DHs = A0 instead of a fresh
 * key pair: RK, CKs, NHKs = KDF_RK_HE(sk, DH(A0, B0)); HKs = hk_a; NHKr = nhk_b.
 * DUET_EBADKEY when DH(A0, B0) is all zeros (r is then left empty). Any earlier state in r
 * is wiped first.
 */
duet_err_t duet_ratchet_init_alice(duet_ratchet_t *r, const uint8_t sk[static 32],
                                   const uint8_t hk_a[static 32], const uint8_t nhk_b[static 32],
                                   const uint8_t a0_priv[static 32],
                                   const uint8_t b0_pub[static 32]) DUET_MUST_CHECK;

/*
 * Initialise as Bob, the pairing responder, holding b0_priv and knowing a0_pub. This is the
 * spec's RatchetInitBobHE (DHs = B0, RK = sk, NHKs = nhk_b, NHKr = hk_a) followed at once by
 * the receiving half of DHRatchetHE as if a header carrying A0 had arrived: HKs = nhk_b,
 * HKr = hk_a, DHr = A0, RK, CKr, NHKr = KDF_RK_HE(sk, DH(B0, A0)), DHs = a fresh key pair
 * from rng, RK, CKs, NHKs = KDF_RK_HE(RK, DH(DHs, A0)). Bob can then send at once, and
 * receives Alice's first chain (under hk_a) without a ratchet step.
 * DUET_EBADKEY when a DH result is all zeros (r is then left empty).
 */
duet_err_t duet_ratchet_init_bob(duet_ratchet_t *r, const uint8_t sk[static 32],
                                 const uint8_t hk_a[static 32], const uint8_t nhk_b[static 32],
                                 const uint8_t b0_priv[static 32],
                                 const uint8_t a0_pub[static 32],
                                 const duet_rng_t *rng) DUET_MUST_CHECK;

/* The envelope length for a plaintext of plain_len bytes. */
static inline size_t duet_ratchet_envelope_len(size_t plain_len)
{
    return plain_len + DUET_RATCHET_OVERHEAD;
}

/*
 * RatchetEncryptHE: seal plain[0..plain_len) with ad[0..ad_len) into out[0..cap); the
 * envelope length, plain_len + DUET_RATCHET_OVERHEAD, in *out_len. Draws 24 bytes (the
 * header nonce) from rng. DUET_ETOOBIG when plain_len > DUET_RATCHET_MAX_PLAINTEXT,
 * ad_len > DUET_RATCHET_MAX_AD or cap is too small; DUET_ENONCE when the sending chain has
 * reached 2^32-1 messages (it cannot, in practice, before the partner replies and a new
 * chain starts). On error the state is unchanged.
 */
duet_err_t duet_ratchet_encrypt(duet_ratchet_t *r, const duet_rng_t *rng, const uint8_t *ad,
                                size_t ad_len, const uint8_t *plain, size_t plain_len,
                                uint8_t *out, size_t cap, size_t *out_len) DUET_MUST_CHECK;

/*
 * RatchetDecryptHE: open env[0..env_len) with ad[0..ad_len) into out[0..cap); the plaintext
 * length, env_len - DUET_RATCHET_OVERHEAD, in *out_len. Draws 32 bytes (a new ratchet key
 * pair) from rng when the envelope starts a new chain. Errors as in the preamble; on any
 * error the state is unchanged.
 */
duet_err_t duet_ratchet_decrypt(duet_ratchet_t *r, const duet_rng_t *rng, const uint8_t *ad,
                                size_t ad_len, const uint8_t *env, size_t env_len,
                                uint8_t *out, size_t cap, size_t *out_len) DUET_MUST_CHECK;

/* The number of skipped message keys currently held (0..DUET_RATCHET_MAX_SKIPPED_TOTAL). */
size_t duet_ratchet_skipped_count(const duet_ratchet_t *r);

/* ---- persistence --------------------------------------------------------------------- */

/* The exact length duet_ratchet_save will write (at most DUET_RATCHET_MAX_SAVED). */
size_t duet_ratchet_saved_len(const duet_ratchet_t *r);

/*
 * Serialise the whole state (versioned fixed layout, then the skipped keys) into
 * out[0..cap), its length in *len. DUET_ETOOBIG when cap < duet_ratchet_saved_len(r).
 * The blob holds every secret of the session: the caller seals it before it is stored and
 * wipes its copy.
 */
duet_err_t duet_ratchet_save(const duet_ratchet_t *r, uint8_t *out, size_t cap,
                             size_t *len) DUET_MUST_CHECK;

/*
 * Replace r's state with the one in buf[0..len). Parsing is strict: exact length, known
 * magic, version and flags, absent fields all zero, the public key matching the private
 * one, counts within their limits. DUET_EVERSION for another format version, DUET_EDECODE
 * for anything else malformed; on error r is unchanged.
 */
duet_err_t duet_ratchet_load(duet_ratchet_t *r, const uint8_t *buf, size_t len) DUET_MUST_CHECK;

/* ---- the KDFs, exposed for tests and vectors ----------------------------------------- */

/* KDF_CK: mk = HMAC-SHA-256(ck, 0x01), next_ck = HMAC-SHA-256(ck, 0x02). next_ck may
 * alias ck. */
void duet_ratchet_kdf_ck(const uint8_t ck[static 32], uint8_t next_ck[static 32],
                         uint8_t mk[static 32]);

/*
 * A message-key expansion with a chosen label: out[0..out_len) = HKDF-SHA-256(salt = 32
 * zero bytes, ikm = mk, info). duet's ENCRYPT uses none (the message key is the body key);
 * this stays so that Signal's KDF chain can be checked with Signal's own label and length
 * ("WhisperMessageKeys", 80). DUET_ERANGE when out_len > 255 * 32.
 */
duet_err_t duet_ratchet_kdf_mk(const uint8_t mk[static 32], const uint8_t *info,
                               size_t info_len, uint8_t *out, size_t out_len) DUET_MUST_CHECK;

/* KDF_RK_HE: next_rk || ck || nhk = HKDF-SHA-256(salt = rk, ikm = dh,
 * info = "duet ratchet rk v1", 96). */
void duet_ratchet_kdf_rk(const uint8_t rk[static 32], const uint8_t dh[static 32],
                         uint8_t next_rk[static 32], uint8_t ck[static 32],
                         uint8_t nhk[static 32]);

#endif /* DUET_RATCHET_H */
