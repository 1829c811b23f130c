/* see partner.h */
#include "partner.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

static const uint8_t name_ad[] = "partner name";

duet_err_t duet_partner_load(duet_store_t *st, duet_partner_t *out)
{
    sqlite3_stmt *s;
    memset(out, 0, sizeof *out);
    duet_err_t err = duet_store_prepare(st,
                                        "SELECT identity_pk, device_id, name, paired_at, "
                                        "verified, addr, last_sync FROM partner WHERE one = 1",
                                        &s);
    if (err != DUET_OK) {
        return err;
    }
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        err = DUET_ENOTPAIRED;
        goto cleanup;
    }
    if (rc != SQLITE_ROW) {
        err = duet_store_rc(st, rc);
        goto cleanup;
    }
    const unsigned char *did = sqlite3_column_text(s, 1);
    const unsigned char *addr = sqlite3_column_text(s, 5);
    if (sqlite3_column_bytes(s, 0) != 32 || did == NULL ||
        strlen((const char *)did) > DUET_DEVICE_ID_LEN ||
        (addr != NULL && strlen((const char *)addr) > DUET_ADDR_MAX)) {
        err = DUET_ECORRUPT;
        goto cleanup;
    }
    memcpy(out->identity_pk, sqlite3_column_blob(s, 0), 32);
    memcpy(out->device_id, did, strlen((const char *)did) + 1);
    if (addr != NULL) {
        memcpy(out->addr, addr, strlen((const char *)addr) + 1);
    }
    out->paired_at = (uint64_t)sqlite3_column_int64(s, 3);
    out->verified = sqlite3_column_int(s, 4) != 0;
    out->last_sync = (uint64_t)sqlite3_column_int64(s, 6);
    uint8_t *name;
    size_t nlen;
    err = duet_store_unseal(st, name_ad, sizeof name_ad - 1, sqlite3_column_blob(s, 2),
                            (size_t)sqlite3_column_bytes(s, 2), &name, &nlen);
    if (err == DUET_OK) {
        if (nlen > DUET_NAME_MAX) {
            err = DUET_ECORRUPT;
        } else {
            memcpy(out->name, name, nlen);
            out->name[nlen] = 0;
        }
        sodium_memzero(name, nlen);
        free(name);
    }
cleanup:
    sqlite3_reset(s);
    if (err != DUET_OK) {
        memset(out, 0, sizeof *out);
    }
    return err;
}

bool duet_partner_exists(duet_store_t *st)
{
    sqlite3_stmt *s;
    if (duet_store_prepare(st, "SELECT 1 FROM partner WHERE one = 1", &s) != DUET_OK) {
        return false;
    }
    bool yes = sqlite3_step(s) == SQLITE_ROW;
    sqlite3_reset(s);
    return yes;
}

duet_err_t duet_partner_insert(duet_store_t *st, const duet_partner_t *p)
{
    sqlite3_stmt *s;
    uint8_t *sealed;
    size_t slen;
    if (duet_partner_exists(st)) {
        return DUET_EALREADYPAIRED;
    }
    duet_err_t err = duet_store_seal(st, name_ad, sizeof name_ad - 1, (const uint8_t *)p->name,
                                     strlen(p->name), &sealed, &slen);
    if (err != DUET_OK) {
        return err;
    }
    err = duet_store_prepare(st,
                             "INSERT INTO partner (one, identity_pk, device_id, name, paired_at, "
                             "verified, addr, last_sync) VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                             &s);
    if (err == DUET_OK) {
        sqlite3_bind_blob(s, 1, p->identity_pk, 32, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, p->device_id, -1, SQLITE_STATIC);
        sqlite3_bind_blob(s, 3, sealed, (int)slen, SQLITE_STATIC);
        sqlite3_bind_int64(s, 4, (sqlite3_int64)p->paired_at);
        sqlite3_bind_int(s, 5, p->verified ? 1 : 0);
        if (p->addr[0]) {
            sqlite3_bind_text(s, 6, p->addr, -1, SQLITE_STATIC);
        }
        if (p->last_sync) {
            sqlite3_bind_int64(s, 7, (sqlite3_int64)p->last_sync);
        }
        int rc = sqlite3_step(s);
        sqlite3_reset(s);
        err = rc == SQLITE_DONE ? DUET_OK : duet_store_rc(st, rc);
    }
    free(sealed);
    return err;
}

static duet_err_t update(duet_store_t *st, const char *sql, sqlite3_int64 v, const char *text)
{
    sqlite3_stmt *s;
    duet_err_t err = duet_store_prepare(st, sql, &s);
    if (err != DUET_OK) {
        return err;
    }
    if (text != NULL) {
        sqlite3_bind_text(s, 1, text, -1, SQLITE_STATIC);
    } else {
        sqlite3_bind_int64(s, 1, v);
    }
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        return duet_store_rc(st, rc);
    }
    return sqlite3_changes(duet_store_db(st)) == 1 ? DUET_OK : DUET_ENOTPAIRED;
}

duet_err_t duet_partner_set_verified(duet_store_t *st, bool verified)
{
    return update(st, "UPDATE partner SET verified = ?1 WHERE one = 1", verified ? 1 : 0, NULL);
}

duet_err_t duet_partner_set_addr(duet_store_t *st, const char *addr)
{
    if (strlen(addr) > DUET_ADDR_MAX) {
        return DUET_ETOOBIG;
    }
    return update(st, "UPDATE partner SET addr = ?1 WHERE one = 1", 0, addr);
}

duet_err_t duet_partner_set_last_sync(duet_store_t *st, uint64_t ms)
{
    return update(st, "UPDATE partner SET last_sync = ?1 WHERE one = 1", (sqlite3_int64)ms, NULL);
}

#include "outbox.h"
#include "ratchet.h"

duet_err_t duet_partner_establish(duet_store_t *st, const duet_pairing_result_t *res,
                                  const uint8_t own_ratchet_priv[static 32], uint64_t now_ms)
{
    duet_partner_t p;
    duet_ratchet_t *r = NULL;
    uint8_t *blob = NULL;
    size_t cap = 0, len;
    duet_err_t err;

    memset(&p, 0, sizeof p);
    memcpy(p.identity_pk, res->partner_identity_pk, 32);
    duet_identity_device_id(p.identity_pk, p.device_id);
    if (res->partner_name_len > DUET_NAME_MAX) {
        return DUET_EINVAL;
    }
    memcpy(p.name, res->partner_name, res->partner_name_len);
    p.paired_at = now_ms;
    if ((err = duet_partner_insert(st, &p)) != DUET_OK) {
        return err;
    }
    if ((err = duet_ratchet_new(&r)) != DUET_OK) {
        return err;
    }
    if (res->role == DUET_PAIRING_JOINER) {
        err = duet_ratchet_init_alice(r, res->root, res->hk_a, res->nhk_b, own_ratchet_priv,
                                      res->partner_ratchet_pub);
    } else {
        duet_rng_t rng = duet_store_rng(st);
        err = duet_ratchet_init_bob(r, res->root, res->hk_a, res->nhk_b, own_ratchet_priv,
                                    res->partner_ratchet_pub, &rng);
    }
    if (err == DUET_OK) {
        cap = duet_ratchet_saved_len(r);
        blob = sodium_malloc(cap);
        err = blob == NULL ? DUET_ENOMEM : duet_ratchet_save(r, blob, cap, &len);
    }
    if (err == DUET_OK) {
        err = duet_store_secret_put(st, "ratchet", blob, len);
    }
    if (err == DUET_OK) {
        err = duet_store_secret_put(st, "pair_secret", res->pair_secret, 32);
    }
    if (err == DUET_OK) {
        err = duet_outbox_seal_pending(st);
    }
    if (blob != NULL) {
        sodium_free(blob);
    }
    duet_ratchet_free(r);
    return err;
}
