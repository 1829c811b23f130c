/*
 * duet — the partner record: who this device is paired with, kept in the store.
 *
 * One row (a device pairs with exactly one partner): the partner's Ed25519 identity key,
 * its device id, its display name (sealed at rest), when the pairing happened, whether the
 * safety number was confirmed, the last address the partner was reached at, the last
 * successful sync. The pairing's secrets (ratchet state, pair secret) are store secrets.
 */
#ifndef DUET_PARTNER_H
#define DUET_PARTNER_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "identity.h"
#include "store.h"

#define DUET_ADDR_MAX 255u

typedef struct duet_partner {
    uint8_t identity_pk[32];
    char device_id[DUET_DEVICE_ID_LEN + 1];
    char name[DUET_NAME_MAX + 1];
    uint64_t paired_at;   /* ms since the epoch */
    bool verified;
    char addr[DUET_ADDR_MAX + 1]; /* "" if none */
    uint64_t last_sync;   /* ms since the epoch, 0 if never */
} duet_partner_t;

/* Load the partner. DUET_ENOTPAIRED if this device is not paired. */
duet_err_t duet_partner_load(duet_store_t *st, duet_partner_t *out) DUET_MUST_CHECK;

/* Whether the device is paired (false on any error). */
bool duet_partner_exists(duet_store_t *st);

/* Insert the partner (inside the caller's transaction). DUET_EALREADYPAIRED if one exists. */
duet_err_t duet_partner_insert(duet_store_t *st, const duet_partner_t *p) DUET_MUST_CHECK;

duet_err_t duet_partner_set_verified(duet_store_t *st, bool verified) DUET_MUST_CHECK;
duet_err_t duet_partner_set_addr(duet_store_t *st, const char *addr) DUET_MUST_CHECK;
duet_err_t duet_partner_set_last_sync(duet_store_t *st, uint64_t ms) DUET_MUST_CHECK;



#include "pairing.h"

/*
 * Pairing has completed: keep the partner (identity key, device id, name), start the
 * Double Ratchet from the pairing's secrets (the joiner is Alice, the listener Bob; see
 * ratchet.h), keep the pair secret (relay mailboxes, LAN beacons), and seal the items
 * written before pairing. One transaction, the caller's. own_ratchet_priv is the private
 * half of the ratchet key this device sent in its pairing record.
 */
duet_err_t duet_partner_establish(duet_store_t *st, const duet_pairing_result_t *res,
                                  const uint8_t own_ratchet_priv[static 32],
                                  uint64_t now_ms) DUET_MUST_CHECK;
#endif
