/*
 * duet — the device identity.
 *
 * Each device has an Ed25519 identity key (libsodium crypto_sign), made at `duet init` from
 * the caller's randomness, kept sealed in the store (secret "identity"). Its X25519 form
 * (crypto_sign_ed25519_*_to_curve25519) is the device's Noise static key for partner links.
 *
 * The device id is a short, checksummed rendering of a hash of the public key:
 *   h  = BLAKE2b-80("duet device id v1" || pk)          (10 bytes)
 *   c  = BLAKE2b-16("duet device id check v1" || h)     (top 10 bits used)
 *   id = base32(h || c)[0..18) in Crockford's lower-case alphabet, grouped 6-6-6 with '-'
 * e.g. "k7fq2m-x9a3pd-4h2r9c". The checksum catches a mistyped character.
 */
#ifndef DUET_IDENTITY_H
#define DUET_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "rng.h"
#include "store.h"

#define DUET_IDENTITY_PK_BYTES 32u
#define DUET_IDENTITY_SK_BYTES 64u
#define DUET_DEVICE_ID_LEN 20u /* 18 characters and two dashes */
#define DUET_NAME_MAX 64u      /* bytes of UTF-8 */

typedef struct duet_identity {
    uint8_t pk[DUET_IDENTITY_PK_BYTES];
    uint8_t *sk; /* sodium_malloc'd, DUET_IDENTITY_SK_BYTES; NULL after dispose */
    char device_id[DUET_DEVICE_ID_LEN + 1];
    char name[DUET_NAME_MAX + 1];
} duet_identity_t;

/* Render the device id of pk into out (NUL-terminated). */
void duet_identity_device_id(const uint8_t pk[static DUET_IDENTITY_PK_BYTES],
                             char out[static DUET_DEVICE_ID_LEN + 1]);

/* Whether s is a well-formed device id with a correct checksum. */
bool duet_identity_device_id_valid(const char *s);

/* Whether name is an acceptable display name: 1..DUET_NAME_MAX bytes of UTF-8, no control
 * characters. */
bool duet_identity_name_valid(const char *name, size_t len);

/*
 * Make a new identity in an open, freshly created store (inside the caller's transaction):
 * the key pair from rng, the sealed secret key, the public key, device id and sealed name.
 * DUET_EALREADYINIT if the store already has one.
 */
duet_err_t duet_identity_create(duet_store_t *st, const char *name,
                                duet_identity_t *out) DUET_MUST_CHECK;

/* Load the identity of an open store. DUET_ENOTINIT if it has none. */
duet_err_t duet_identity_load(duet_store_t *st, duet_identity_t *out) DUET_MUST_CHECK;

/* The X25519 key pair of the identity (for Noise); priv must be wiped by the caller. */
duet_err_t duet_identity_x25519(const duet_identity_t *id, uint8_t priv[static 32],
                                uint8_t pub[static 32]) DUET_MUST_CHECK;

/* The X25519 form of an Ed25519 public key. DUET_EBADKEY if it is not a valid point. */
duet_err_t duet_identity_pk_to_x25519(const uint8_t edpk[static 32],
                                      uint8_t out[static 32]) DUET_MUST_CHECK;

/* Wipe and free the secret key. Safe twice. */
void duet_identity_dispose(duet_identity_t *id);

#endif /* DUET_IDENTITY_H */
