/* see relay.h */
#include "relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "crypto.h"
#include "hkdf.h"

/* ---- keys and capabilities ------------------------------------------------------------ */

#define SALT          "duet relay v1"
#define CAP_KEY       "duet-relay-cap-v1"
#define MAILBOX_KEY   "duet-relay-mailbox-v1"
#define STATE_AD      "duet relay state v1"
#define STATE_VERSION 1u

static void expand(uint8_t out[static 32], const uint8_t prk[static 32], const char *label,
                   const char *dir)
{
    uint8_t info[64];
    size_t ll = strlen(label), dl = strlen(dir);
    if (ll + dl > sizeof info) {
        abort();
    }
    memcpy(info, label, ll);
    memcpy(info + ll, dir, dl);
    if (duet_hkdf_sha256_expand(out, 32, prk, info, ll + dl) != DUET_OK) {
        abort(); /* 32 bytes is always in range */
    }
}

static void derive_dir(duet_relay_dir_t *d, const uint8_t prk[static 32], const char *dir)
{
    expand(d->wcap, prk, "duet relay wcap ", dir);
    expand(d->rcap, prk, "duet relay rcap ", dir);
    expand(d->okey, prk, "duet relay object ", dir);
    expand(d->skey, prk, "duet relay state ", dir);
    duet_relay_cap_hash(d->whash, d->wcap);
    duet_relay_cap_hash(d->rhash, d->rcap);
    duet_relay_mailbox_id(d->mbox, d->whash, d->rhash);
}

void duet_relay_keys_derive(duet_relay_keys_t *k, const uint8_t pair_secret[static 32],
                            const uint8_t my_pk[static 32], const uint8_t partner_pk[static 32])
{
    uint8_t prk[DUET_HKDF_SHA256_PRK_BYTES];
    int order = 0;
    /* Public keys, compared to name the directions: no secret here. */
    for (size_t i = 0; i < 32 && order == 0; i++) {
        order = (int)my_pk[i] - (int)partner_pk[i];
    }
    if (order == 0) {
        abort(); /* a device cannot be its own partner */
    }
    duet_hkdf_sha256_extract(prk, (const uint8_t *)SALT, strlen(SALT), pair_secret, 32);
    derive_dir(&k->out, prk, order < 0 ? "lo-hi" : "hi-lo");
    derive_dir(&k->in, prk, order < 0 ? "hi-lo" : "lo-hi");
    sodium_memzero(prk, sizeof prk);
}

void duet_relay_keys_dispose(duet_relay_keys_t *k)
{
    sodium_memzero(k, sizeof *k);
}

void duet_relay_cap_hash(uint8_t out[static 32], const uint8_t cap[static 32])
{
    duet_crypto_blake2b(out, 32, cap, 32, (const uint8_t *)CAP_KEY, strlen(CAP_KEY));
}

void duet_relay_mailbox_id(uint8_t out[static 32], const uint8_t whash[static 32],
                           const uint8_t rhash[static 32])
{
    uint8_t both[64];
    memcpy(both, whash, 32);
    memcpy(both + 32, rhash, 32);
    duet_crypto_blake2b(out, 32, both, sizeof both, (const uint8_t *)MAILBOX_KEY,
                        strlen(MAILBOX_KEY));
}

duet_err_t duet_relay_cap_check(const uint8_t mbox[static 32], const uint8_t cap[static 32],
                                const uint8_t other_hash[static 32], bool writer)
{
    uint8_t h[32], id[32];
    duet_relay_cap_hash(h, cap);
    if (writer) {
        duet_relay_mailbox_id(id, h, other_hash);
    } else {
        duet_relay_mailbox_id(id, other_hash, h);
    }
    int ok = crypto_verify_32(id, mbox) == 0;
    sodium_memzero(h, sizeof h);
    return ok ? DUET_OK : DUET_ECAPABILITY;
}

/* ---- object labels --------------------------------------------------------------------- */

static void put_be64(uint8_t out[static 8], uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t get_be64(const uint8_t in[static 8])
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = v << 8 | in[i];
    }
    return v;
}

void duet_relay_env_oid(uint8_t oid[static DUET_RELAY_LABEL_BYTES], const duet_relay_dir_t *d,
                        uint64_t seq)
{
    uint8_t msg[3 + 8], mac[32];
    memcpy(msg, "env", 3);
    put_be64(msg + 3, seq);
    duet_hmac_sha256(mac, d->okey, sizeof d->okey, msg, sizeof msg);
    memcpy(oid, mac, DUET_RELAY_LABEL_BYTES);
}

void duet_relay_state_oid(uint8_t oid[static DUET_RELAY_LABEL_BYTES], const duet_relay_dir_t *d)
{
    uint8_t mac[32];
    duet_hmac_sha256(mac, d->okey, sizeof d->okey, (const uint8_t *)"state", 5);
    memcpy(oid, mac, DUET_RELAY_LABEL_BYTES);
}

void duet_relay_seq_mask(uint8_t out[static DUET_RELAY_SEQ_MASK_BYTES], const duet_relay_dir_t *d,
                         const uint8_t oid[static DUET_RELAY_LABEL_BYTES], uint64_t seq)
{
    uint8_t msg[3 + DUET_RELAY_LABEL_BYTES], mac[32];
    memcpy(msg, "seq", 3);
    memcpy(msg + 3, oid, DUET_RELAY_LABEL_BYTES);
    duet_hmac_sha256(mac, d->okey, sizeof d->okey, msg, sizeof msg);
    put_be64(out, seq);
    for (size_t i = 0; i < DUET_RELAY_SEQ_MASK_BYTES; i++) {
        out[i] ^= mac[i];
    }
}

duet_err_t duet_relay_env_open(const duet_relay_dir_t *d, const uint8_t *oid, size_t oid_len,
                               const uint8_t *data, size_t len, uint64_t *seq, const uint8_t **env,
                               size_t *env_len)
{
    uint8_t zero[DUET_RELAY_SEQ_MASK_BYTES], mask[DUET_RELAY_SEQ_MASK_BYTES];
    uint8_t want[DUET_RELAY_LABEL_BYTES];
    *seq = 0;
    *env = NULL;
    *env_len = 0;
    if (oid_len != DUET_RELAY_LABEL_BYTES || len <= DUET_RELAY_SEQ_MASK_BYTES) {
        return DUET_EAUTH;
    }
    /* The mask of 0 is the bare keystream: XOR it away to get the sequence number. */
    duet_relay_seq_mask(zero, d, oid, 0);
    for (size_t i = 0; i < sizeof mask; i++) {
        mask[i] = data[i] ^ zero[i];
    }
    uint64_t s = get_be64(mask);
    duet_relay_env_oid(want, d, s);
    if (s == 0 || crypto_verify_16(want, oid) != 0) {
        return DUET_EAUTH;
    }
    *seq = s;
    *env = data + DUET_RELAY_SEQ_MASK_BYTES;
    *env_len = len - DUET_RELAY_SEQ_MASK_BYTES;
    return DUET_OK;
}

/* ---- sealed receive states -------------------------------------------------------------- */

static void state_ad(uint8_t ad[static sizeof STATE_AD - 1 + 32], const duet_relay_dir_t *d)
{
    memcpy(ad, STATE_AD, sizeof STATE_AD - 1);
    memcpy(ad + sizeof STATE_AD - 1, d->mbox, 32);
}

void duet_relay_state_seal(uint8_t out[static DUET_RELAY_STATE_BYTES], const duet_relay_dir_t *d,
                           uint64_t wm, const uint64_t *above, size_t n, duet_rng_t rng)
{
    uint8_t plain[DUET_RELAY_STATE_PLAIN], ad[sizeof STATE_AD - 1 + 32];
    size_t out_len;
    uint64_t prev = wm;

    memset(plain, 0, sizeof plain);
    plain[0] = STATE_VERSION;
    put_be64(plain + 1, wm);
    for (size_t i = 0; i < n; i++) {
        if (above[i] <= prev) {
            abort(); /* not ascending, or not above the watermark */
        }
        prev = above[i];
        uint64_t idx = above[i] - wm - 1;
        if (idx < DUET_RELAY_STATE_BITS) {
            plain[9 + idx / 8] |= (uint8_t)(1u << (idx % 8));
        }
    }
    state_ad(ad, d);
    duet_rng_fill(&rng, out, DUET_CRYPTO_AEAD_NONCE_BYTES);
    if (duet_crypto_aead_seal(out + DUET_CRYPTO_AEAD_NONCE_BYTES,
                              DUET_RELAY_STATE_BYTES - DUET_CRYPTO_AEAD_NONCE_BYTES, &out_len,
                              plain, sizeof plain, ad, sizeof ad, out, d->skey) != DUET_OK ||
        out_len + DUET_CRYPTO_AEAD_NONCE_BYTES != DUET_RELAY_STATE_BYTES) {
        abort(); /* sizes are fixed */
    }
    sodium_memzero(plain, sizeof plain);
}

duet_err_t duet_relay_state_open(const duet_relay_dir_t *d, const uint8_t *data, size_t len,
                                 uint64_t *wm, uint64_t *above, size_t cap, size_t *n)
{
    uint8_t plain[DUET_RELAY_STATE_PLAIN], ad[sizeof STATE_AD - 1 + 32];
    size_t plain_len;
    duet_err_t err;

    *wm = 0;
    *n = 0;
    if (cap < DUET_RELAY_STATE_BITS) {
        abort();
    }
    if (len != DUET_RELAY_STATE_BYTES) {
        return DUET_EAUTH;
    }
    state_ad(ad, d);
    err =
        duet_crypto_aead_open(plain, sizeof plain, &plain_len, data + DUET_CRYPTO_AEAD_NONCE_BYTES,
                              len - DUET_CRYPTO_AEAD_NONCE_BYTES, ad, sizeof ad, data, d->skey);
    if (err != DUET_OK) {
        return DUET_EAUTH;
    }
    uint64_t w = get_be64(plain + 1);
    if (plain[0] != STATE_VERSION || w > UINT64_MAX / 2) {
        err = DUET_EDECODE;
        goto cleanup;
    }
    *wm = w;
    for (uint32_t i = 0; i < DUET_RELAY_STATE_BITS; i++) {
        if (plain[9 + i / 8] & (1u << (i % 8))) {
            above[(*n)++] = w + 1 + i;
        }
    }
cleanup:
    sodium_memzero(plain, sizeof plain);
    return err;
}

/* ---- pairing messages ------------------------------------------------------------------ */

duet_err_t duet_relay_pair_pad(uint8_t out[static DUET_RELAY_PAIR_MSG], const uint8_t *msg,
                               size_t len)
{
    memset(out, 0, DUET_RELAY_PAIR_MSG);
    if (len == 0) {
        return DUET_EEMPTY;
    }
    if (len > DUET_RELAY_PAIR_MAX) {
        return DUET_ETOOBIG;
    }
    out[0] = (uint8_t)(len >> 8);
    out[1] = (uint8_t)len;
    memcpy(out + 2, msg, len);
    return DUET_OK;
}

duet_err_t duet_relay_pair_unpad(const uint8_t *padded, size_t padded_len, const uint8_t **msg,
                                 size_t *len)
{
    *msg = NULL;
    *len = 0;
    if (padded_len != DUET_RELAY_PAIR_MSG) {
        return DUET_EDECODE;
    }
    size_t n = (size_t)padded[0] << 8 | padded[1];
    if (n == 0 || n > DUET_RELAY_PAIR_MAX) {
        return DUET_EDECODE;
    }
    uint8_t acc = 0;
    for (size_t i = 2 + n; i < DUET_RELAY_PAIR_MSG; i++) {
        acc |= padded[i];
    }
    if (acc != 0) {
        return DUET_EDECODE;
    }
    *msg = padded + 2;
    *len = n;
    return DUET_OK;
}

/* ---- frames ---------------------------------------------------------------------------- */

static const duet_codec_limits_t frame_limits = {
    .max_depth = 3, /* LISTED: map, array of entries, entry */
    .max_str = 0,
    .max_bin = DUET_RELAY_OBJECT_MAX,
    .max_array =
        DUET_RELAY_LIST_MAX > DUET_RELAY_DELETE_MAX ? DUET_RELAY_LIST_MAX : DUET_RELAY_DELETE_MAX,
    .max_map = 8,
    .max_objects = 5u * DUET_RELAY_LIST_MAX + 32u,
};

/* Field lists, by frame type. Every field is required: no frame has optional fields. */
#define U DUET_CODEC_UINT
#define B DUET_CODEC_BIN
static const duet_codec_field_t f_hello[] = {{0, U, true}, {1, U, true}, {2, U, true}};
static const duet_codec_field_t f_put[] = {{0, U, true}, {1, U, true}, {2, B, true}, {3, B, true},
                                           {4, B, true}, {5, U, true}, {6, B, true}, {7, B, true}};
static const duet_codec_field_t f_list[] = {{0, U, true}, {1, U, true}, {2, B, true}, {3, B, true},
                                            {4, B, true}, {5, U, true}, {6, U, true}, {7, U, true}};
static const duet_codec_field_t f_get[] = {{0, U, true}, {1, U, true}, {2, B, true},
                                           {3, B, true}, {4, B, true}, {5, B, true}};
static const duet_codec_field_t f_delete[] = {{0, U, true}, {1, U, true},
                                              {2, B, true}, {3, B, true},
                                              {4, B, true}, {5, DUET_CODEC_ARRAY, true}};
static const duet_codec_field_t f_sub[] = {
    {0, U, true}, {1, U, true}, {2, B, true}, {3, B, true}, {4, B, true}};
static const duet_codec_field_t f_rid[] = {{0, U, true}, {1, U, true}};
static const duet_codec_field_t f_claim[] = {{0, U, true}, {1, U, true}, {2, U, true}};
static const duet_codec_field_t f_pmsg[] = {{0, U, true}, {1, U, true}, {2, B, true}};
static const duet_codec_field_t f_ok[] = {{0, U, true}, {1, U, true}, {2, U, true}};
static const duet_codec_field_t f_welcome[] = {
    {0, U, true}, {1, U, true}, {2, U, true}, {3, U, true}, {4, U, true}};
static const duet_codec_field_t f_listed[] = {
    {0, U, true}, {1, U, true}, {2, DUET_CODEC_ARRAY, true}, {3, DUET_CODEC_BOOL, true}};
static const duet_codec_field_t f_object[] = {{0, U, true}, {1, U, true}, {2, U, true},
                                              {3, U, true}, {4, B, true}, {5, B, true}};
static const duet_codec_field_t f_error[] = {{0, U, true},
                                             {1, U, true},
                                             {2, DUET_CODEC_INT, true},
                                             {3, DUET_CODEC_BOOL, true},
                                             {4, U, true}};
static const duet_codec_field_t f_notify[] = {{0, U, true}, {1, B, true}, {2, U, true}};
static const duet_codec_field_t f_pdata[] = {{0, U, true}, {1, B, true}};
static const duet_codec_field_t f_pclosed[] = {{0, U, true}, {1, DUET_CODEC_INT, true}};
#undef U
#undef B

typedef struct layout {
    uint8_t type;
    const duet_codec_field_t *fields;
    size_t n;
} layout_t;

#define L(t, f)                                                                                    \
    {                                                                                              \
        t, f, sizeof f / sizeof f[0]                                                               \
    }
static const layout_t layouts[] = {
    L(DUET_RELAY_HELLO, f_hello),   L(DUET_RELAY_PUT, f_put),
    L(DUET_RELAY_LIST, f_list),     L(DUET_RELAY_GET, f_get),
    L(DUET_RELAY_DELETE, f_delete), L(DUET_RELAY_SUBSCRIBE, f_sub),
    L(DUET_RELAY_PING, f_rid),      L(DUET_RELAY_ALLOCATE, f_claim),
    L(DUET_RELAY_CLAIM, f_claim),   L(DUET_RELAY_PMSG, f_pmsg),
    L(DUET_RELAY_OK, f_ok),         L(DUET_RELAY_WELCOME, f_welcome),
    L(DUET_RELAY_LISTED, f_listed), L(DUET_RELAY_OBJECT, f_object),
    L(DUET_RELAY_ERROR, f_error),   L(DUET_RELAY_NOTIFY, f_notify),
    L(DUET_RELAY_PDATA, f_pdata),   L(DUET_RELAY_PCLOSED, f_pclosed),
};
#undef L

bool duet_relay_is_request(uint8_t type)
{
    return type >= DUET_RELAY_HELLO && type <= DUET_RELAY_PMSG;
}

static const layout_t *find_layout(uint64_t type)
{
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++) {
        if (layouts[i].type == type) {
            return &layouts[i];
        }
    }
    return NULL;
}

static bool key32(const msgpack_object *o, const uint8_t **out)
{
    size_t n;
    return duet_codec_get_bin(o, 32, 32, out, &n) == DUET_OK;
}

static bool oid_ok(const msgpack_object *o, const uint8_t **out, size_t *n)
{
    return duet_codec_get_bin(o, DUET_RELAY_OID_MIN, DUET_RELAY_OID_MAX, out, n) == DUET_OK;
}

static bool u64_in(const msgpack_object *o, uint64_t min, uint64_t max, uint64_t *out)
{
    return duet_codec_get_uint(o, min, max, out) == DUET_OK;
}

/* The three capability fields of a mailbox request (keys 2, 3, 4). */
static bool caps(duet_relay_frame_t *f, const msgpack_object **v)
{
    return key32(v[2], &f->mbox) && key32(v[3], &f->cap) && key32(v[4], &f->other_hash);
}

static bool read_entry(const msgpack_object *o, duet_relay_entry_t *e)
{
    uint64_t cursor, cls, len;
    const uint8_t *oid;
    size_t oid_len;
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 4) {
        return false;
    }
    const msgpack_object *a = o->via.array.ptr;
    if (!u64_in(&a[0], 1, UINT64_MAX / 2, &cursor) ||
        !u64_in(&a[1], 1, DUET_RELAY_CLASS_MAX, &cls) || !oid_ok(&a[2], &oid, &oid_len) ||
        !u64_in(&a[3], 1, DUET_RELAY_OBJECT_MAX, &len)) {
        return false;
    }
    if (e != NULL) {
        memset(e, 0, sizeof *e);
        e->cursor = cursor;
        e->cls = (uint8_t)cls;
        e->oid_len = (uint8_t)oid_len;
        memcpy(e->oid, oid, oid_len);
        e->len = (uint32_t)len;
    }
    return true;
}

/* The type-specific checks, once the map matched its layout. */
static bool decode_fields(duet_relay_frame_t *f, const msgpack_object **v)
{
    uint64_t x, y, z;
    size_t n;
    switch (f->type) {
    case DUET_RELAY_HELLO:
        if (!u64_in(v[2], 1, UINT32_MAX, &x)) {
            return false;
        }
        f->version = (uint32_t)x;
        return true;
    case DUET_RELAY_PUT:
        if (!caps(f, v) || !u64_in(v[5], 1, DUET_RELAY_CLASS_MAX, &x) ||
            !oid_ok(v[6], &f->oid, &f->oid_len) ||
            duet_codec_get_bin(v[7], 1, DUET_RELAY_OBJECT_MAX, &f->data, &f->data_len)) {
            return false;
        }
        f->cls = (uint8_t)x;
        return true;
    case DUET_RELAY_LIST:
        if (!caps(f, v) || !u64_in(v[5], 0, DUET_RELAY_CLASS_MAX, &x) ||
            !u64_in(v[6], 0, UINT64_MAX / 2, &f->after) ||
            !u64_in(v[7], 1, DUET_RELAY_LIST_MAX, &y)) {
            return false;
        }
        f->cls = (uint8_t)x;
        f->limit = (uint32_t)y;
        return true;
    case DUET_RELAY_GET:
        return caps(f, v) && oid_ok(v[5], &f->oid, &f->oid_len);
    case DUET_RELAY_DELETE:
        f->array = v[5];
        f->count = v[5]->via.array.size;
        if (!caps(f, v) || f->count == 0 || f->count > DUET_RELAY_DELETE_MAX) {
            return false;
        }
        for (size_t i = 0; i < f->count; i++) {
            const uint8_t *oid;
            if (!oid_ok(&v[5]->via.array.ptr[i], &oid, &n)) {
                return false;
            }
        }
        return true;
    case DUET_RELAY_SUBSCRIBE:
        return caps(f, v);
    case DUET_RELAY_PING:
        return true;
    case DUET_RELAY_ALLOCATE:
    case DUET_RELAY_CLAIM:
        if (!u64_in(v[2], f->type == DUET_RELAY_CLAIM ? 1 : 0, 9999, &x)) {
            return false;
        }
        f->nameplate = (uint16_t)x;
        return true;
    case DUET_RELAY_PMSG:
        return duet_codec_get_bin(v[2], DUET_RELAY_PAIR_MSG, DUET_RELAY_PAIR_MSG, &f->data,
                                  &f->data_len) == DUET_OK;
    case DUET_RELAY_OK:
        return u64_in(v[2], 0, UINT64_MAX, &f->value);
    case DUET_RELAY_WELCOME:
        if (!u64_in(v[2], 1, UINT32_MAX, &x) || !u64_in(v[3], 1, DUET_RELAY_OBJECT_MAX, &y) ||
            !u64_in(v[4], 1, DUET_RELAY_WINDOW, &z)) {
            return false;
        }
        f->version = (uint32_t)x;
        f->object_max = (uint32_t)y;
        f->window = (uint32_t)z;
        return true;
    case DUET_RELAY_LISTED:
        f->array = v[2];
        f->count = v[2]->via.array.size;
        if (f->count > DUET_RELAY_LIST_MAX || duet_codec_get_bool(v[3], &f->more)) {
            return false;
        }
        for (size_t i = 0; i < f->count; i++) {
            if (!read_entry(&v[2]->via.array.ptr[i], NULL)) {
                return false;
            }
        }
        return true;
    case DUET_RELAY_OBJECT:
        if (!u64_in(v[2], 1, UINT64_MAX / 2, &f->value) ||
            !u64_in(v[3], 1, DUET_RELAY_CLASS_MAX, &x) || !oid_ok(v[4], &f->oid, &f->oid_len) ||
            duet_codec_get_bin(v[5], 1, DUET_RELAY_OBJECT_MAX, &f->data, &f->data_len)) {
            return false;
        }
        f->cls = (uint8_t)x;
        return true;
    case DUET_RELAY_ERROR: {
        int64_t code;
        if (duet_codec_get_int(v[2], -32768, -1, &code) || duet_codec_get_bool(v[3], &f->fatal) ||
            !u64_in(v[4], 1, UINT32_MAX, &x)) {
            return false;
        }
        f->err = duet_relay_err_allowed((duet_err_t)code) ? (duet_err_t)code : DUET_EPROTO;
        f->version = (uint32_t)x;
        return true;
    }
    case DUET_RELAY_NOTIFY:
        return key32(v[1], &f->mbox) && u64_in(v[2], 1, UINT64_MAX / 2, &f->value);
    case DUET_RELAY_PDATA:
        return duet_codec_get_bin(v[1], DUET_RELAY_PAIR_MSG, DUET_RELAY_PAIR_MSG, &f->data,
                                  &f->data_len) == DUET_OK;
    case DUET_RELAY_PCLOSED: {
        int64_t code;
        if (duet_codec_get_int(v[1], -32768, -1, &code)) {
            return false;
        }
        f->err = duet_relay_err_allowed((duet_err_t)code) ? (duet_err_t)code : DUET_EPROTO;
        return true;
    }
    default:
        return false;
    }
}

duet_err_t duet_relay_frame_decode(duet_relay_frame_t *f, const uint8_t *buf, size_t len)
{
    const msgpack_object *v[8];
    const msgpack_object *type_o = NULL;
    uint64_t type, rid = 0;

    memset(f, 0, sizeof *f);
    if (len == 0 || len > DUET_RELAY_FRAME_MAX ||
        duet_codec_decode(&f->msg, buf, len, &frame_limits) != DUET_OK) {
        memset(f, 0, sizeof *f);
        return DUET_EPROTO;
    }
    const msgpack_object *root = &f->msg.root;
    if (root->type != MSGPACK_OBJECT_MAP) {
        goto bad;
    }
    for (uint32_t i = 0; i < root->via.map.size; i++) {
        const msgpack_object_kv *kv = &root->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_POSITIVE_INTEGER && kv->key.via.u64 == 0) {
            type_o = &kv->val;
        }
    }
    const layout_t *lay = NULL;
    if (type_o == NULL || !u64_in(type_o, 1, 255, &type) || (lay = find_layout(type)) == NULL ||
        duet_codec_map(root, lay->fields, lay->n, v) != DUET_OK) {
        goto bad;
    }
    f->type = (uint8_t)type;
    /* Key 1 is the request id in requests and responses (events use it otherwise). */
    if (type < DUET_RELAY_NOTIFY) {
        if (!u64_in(v[1], 0, UINT32_MAX, &rid)) {
            goto bad;
        }
        f->rid = (uint32_t)rid;
    }
    if (!decode_fields(f, v)) {
        goto bad;
    }
    return DUET_OK;
bad:
    duet_codec_msg_dispose(&f->msg);
    memset(f, 0, sizeof *f);
    return DUET_EPROTO;
}

void duet_relay_frame_dispose(duet_relay_frame_t *f)
{
    duet_codec_msg_dispose(&f->msg);
    memset(f, 0, sizeof *f);
}

void duet_relay_frame_oid(const duet_relay_frame_t *f, size_t i, const uint8_t **oid,
                          size_t *oid_len)
{
    if (f->type != DUET_RELAY_DELETE || i >= f->count) {
        abort();
    }
    const msgpack_object *o = &f->array->via.array.ptr[i];
    *oid = (const uint8_t *)o->via.bin.ptr;
    *oid_len = o->via.bin.size;
}

void duet_relay_frame_entry(const duet_relay_frame_t *f, size_t i, duet_relay_entry_t *e)
{
    if (f->type != DUET_RELAY_LISTED || i >= f->count ||
        !read_entry(&f->array->via.array.ptr[i], e)) {
        abort();
    }
}

/* ---- encoders -------------------------------------------------------------------------- */

static void head(duet_codec_enc_t *enc, uint32_t nfields, uint8_t type, uint32_t rid)
{
    duet_codec_put_map(enc, nfields);
    duet_codec_put_key(enc, 0);
    duet_codec_put_uint(enc, type);
    duet_codec_put_key(enc, 1);
    duet_codec_put_uint(enc, rid);
}

static void kbin(duet_codec_enc_t *enc, uint32_t key, const uint8_t *p, size_t n)
{
    duet_codec_put_key(enc, key);
    duet_codec_put_bin(enc, p, n);
}

static void kuint(duet_codec_enc_t *enc, uint32_t key, uint64_t v)
{
    duet_codec_put_key(enc, key);
    duet_codec_put_uint(enc, v);
}

static void check_oid(size_t oid_len)
{
    if (oid_len < DUET_RELAY_OID_MIN || oid_len > DUET_RELAY_OID_MAX) {
        abort();
    }
}

/* Keys 2, 3, 4 of a reader's request. */
static void reader_caps(duet_codec_enc_t *enc, const duet_relay_dir_t *d)
{
    kbin(enc, 2, d->mbox, 32);
    kbin(enc, 3, d->rcap, 32);
    kbin(enc, 4, d->whash, 32);
}

void duet_relay_enc_hello(duet_codec_enc_t *enc, uint32_t rid)
{
    head(enc, 3, DUET_RELAY_HELLO, rid);
    kuint(enc, 2, DUET_RELAY_VERSION);
}

void duet_relay_enc_put2(duet_codec_enc_t *enc, uint32_t rid, const duet_relay_dir_t *d,
                         uint8_t cls, const uint8_t *oid, size_t oid_len, const uint8_t *a,
                         size_t alen, const uint8_t *b, size_t blen)
{
    check_oid(oid_len);
    if (cls < 1 || cls > DUET_RELAY_CLASS_MAX || alen + blen == 0 ||
        alen + blen > DUET_RELAY_OBJECT_MAX) {
        abort();
    }
    head(enc, 8, DUET_RELAY_PUT, rid);
    kbin(enc, 2, d->mbox, 32);
    kbin(enc, 3, d->wcap, 32);
    kbin(enc, 4, d->rhash, 32);
    kuint(enc, 5, cls);
    kbin(enc, 6, oid, oid_len);
    duet_codec_put_key(enc, 7);
    msgpack_packer *pk = duet_codec_pk(enc);
    (void)msgpack_pack_bin(pk, alen + blen);
    if (alen > 0) {
        (void)msgpack_pack_bin_body(pk, a, alen);
    }
    if (blen > 0) {
        (void)msgpack_pack_bin_body(pk, b, blen);
    }
}

void duet_relay_enc_put(duet_codec_enc_t *enc, uint32_t rid, const duet_relay_dir_t *d, uint8_t cls,
                        const uint8_t *oid, size_t oid_len, const uint8_t *data, size_t len)
{
    duet_relay_enc_put2(enc, rid, d, cls, oid, oid_len, data, len, NULL, 0);
}

void duet_relay_enc_list(duet_codec_enc_t *enc, uint32_t rid, const duet_relay_dir_t *d,
                         uint8_t cls, uint64_t after, uint32_t limit)
{
    if (cls > DUET_RELAY_CLASS_MAX || limit < 1 || limit > DUET_RELAY_LIST_MAX) {
        abort();
    }
    head(enc, 8, DUET_RELAY_LIST, rid);
    reader_caps(enc, d);
    kuint(enc, 5, cls);
    kuint(enc, 6, after);
    kuint(enc, 7, limit);
}

void duet_relay_enc_get(duet_codec_enc_t *enc, uint32_t rid, const duet_relay_dir_t *d,
                        const uint8_t *oid, size_t oid_len)
{
    check_oid(oid_len);
    head(enc, 6, DUET_RELAY_GET, rid);
    reader_caps(enc, d);
    kbin(enc, 5, oid, oid_len);
}

void duet_relay_enc_delete(duet_codec_enc_t *enc, uint32_t rid, const duet_relay_dir_t *d,
                           const uint8_t *const *oids, const size_t *oid_lens, size_t n)
{
    if (n < 1 || n > DUET_RELAY_DELETE_MAX) {
        abort();
    }
    head(enc, 6, DUET_RELAY_DELETE, rid);
    reader_caps(enc, d);
    duet_codec_put_key(enc, 5);
    duet_codec_put_array(enc, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        check_oid(oid_lens[i]);
        duet_codec_put_bin(enc, oids[i], oid_lens[i]);
    }
}

void duet_relay_enc_subscribe(duet_codec_enc_t *enc, uint32_t rid, const duet_relay_dir_t *d)
{
    head(enc, 5, DUET_RELAY_SUBSCRIBE, rid);
    reader_caps(enc, d);
}

void duet_relay_enc_ping(duet_codec_enc_t *enc, uint32_t rid)
{
    head(enc, 2, DUET_RELAY_PING, rid);
}

void duet_relay_enc_allocate(duet_codec_enc_t *enc, uint32_t rid, uint16_t nameplate)
{
    if (nameplate > 9999) {
        abort();
    }
    head(enc, 3, DUET_RELAY_ALLOCATE, rid);
    kuint(enc, 2, nameplate);
}

void duet_relay_enc_claim(duet_codec_enc_t *enc, uint32_t rid, uint16_t nameplate)
{
    if (nameplate < 1 || nameplate > 9999) {
        abort();
    }
    head(enc, 3, DUET_RELAY_CLAIM, rid);
    kuint(enc, 2, nameplate);
}

void duet_relay_enc_pmsg(duet_codec_enc_t *enc, uint32_t rid, const uint8_t *data)
{
    head(enc, 3, DUET_RELAY_PMSG, rid);
    kbin(enc, 2, data, DUET_RELAY_PAIR_MSG);
}

void duet_relay_enc_ok(duet_codec_enc_t *enc, uint32_t rid, uint64_t value)
{
    head(enc, 3, DUET_RELAY_OK, rid);
    kuint(enc, 2, value);
}

void duet_relay_enc_welcome(duet_codec_enc_t *enc, uint32_t rid)
{
    head(enc, 5, DUET_RELAY_WELCOME, rid);
    kuint(enc, 2, DUET_RELAY_VERSION);
    kuint(enc, 3, DUET_RELAY_OBJECT_MAX);
    kuint(enc, 4, DUET_RELAY_WINDOW);
}

void duet_relay_enc_listed(duet_codec_enc_t *enc, uint32_t rid, const duet_relay_entry_t *e,
                           size_t n, bool more)
{
    if (n > DUET_RELAY_LIST_MAX) {
        abort();
    }
    head(enc, 4, DUET_RELAY_LISTED, rid);
    duet_codec_put_key(enc, 2);
    duet_codec_put_array(enc, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        check_oid(e[i].oid_len);
        duet_codec_put_array(enc, 4);
        duet_codec_put_uint(enc, e[i].cursor);
        duet_codec_put_uint(enc, e[i].cls);
        duet_codec_put_bin(enc, e[i].oid, e[i].oid_len);
        duet_codec_put_uint(enc, e[i].len);
    }
    duet_codec_put_key(enc, 3);
    duet_codec_put_bool(enc, more);
}

void duet_relay_enc_object(duet_codec_enc_t *enc, uint32_t rid, uint64_t cursor, uint8_t cls,
                           const uint8_t *oid, size_t oid_len, const uint8_t *data, size_t len)
{
    check_oid(oid_len);
    head(enc, 6, DUET_RELAY_OBJECT, rid);
    kuint(enc, 2, cursor);
    kuint(enc, 3, cls);
    kbin(enc, 4, oid, oid_len);
    kbin(enc, 5, data, len);
}

void duet_relay_enc_error(duet_codec_enc_t *enc, uint32_t rid, duet_err_t err, bool fatal)
{
    if (!duet_relay_err_allowed(err)) {
        abort();
    }
    head(enc, 5, DUET_RELAY_ERROR, rid);
    duet_codec_put_key(enc, 2);
    duet_codec_put_int(enc, err);
    duet_codec_put_key(enc, 3);
    duet_codec_put_bool(enc, fatal);
    kuint(enc, 4, DUET_RELAY_VERSION);
}

void duet_relay_enc_notify(duet_codec_enc_t *enc, const uint8_t mbox[static 32], uint64_t cursor)
{
    duet_codec_put_map(enc, 3);
    kuint(enc, 0, DUET_RELAY_NOTIFY);
    kbin(enc, 1, mbox, 32);
    kuint(enc, 2, cursor);
}

void duet_relay_enc_pdata(duet_codec_enc_t *enc, const uint8_t *data)
{
    duet_codec_put_map(enc, 2);
    kuint(enc, 0, DUET_RELAY_PDATA);
    kbin(enc, 1, data, DUET_RELAY_PAIR_MSG);
}

void duet_relay_enc_pclosed(duet_codec_enc_t *enc, duet_err_t why)
{
    if (!duet_relay_err_allowed(why)) {
        abort();
    }
    duet_codec_put_map(enc, 2);
    kuint(enc, 0, DUET_RELAY_PCLOSED);
    duet_codec_put_key(enc, 1);
    duet_codec_put_int(enc, why);
}

bool duet_relay_err_allowed(duet_err_t err)
{
    switch (err) {
    case DUET_EPROTO:
    case DUET_EVERSION:
    case DUET_ECAPABILITY:
    case DUET_EQUOTA:
    case DUET_ERATELIMIT:
    case DUET_ETOOBIG:
    case DUET_ENOENT:
    case DUET_ENAMEPLATE:
    case DUET_ENOSPC:
    case DUET_EIO:
    case DUET_EBUSY:
    case DUET_ETIMEDOUT:
    case DUET_ECLOSED:
        return true;
    default:
        return false;
    }
}

/* ---- records ------------------------------------------------------------------------------ */

duet_err_t duet_relay_record_next(const uint8_t *rec, size_t len, size_t *pos,
                                  const uint8_t **frame, size_t *flen)
{
    *frame = NULL;
    *flen = 0;
    if (len == 0) {
        return DUET_EPROTO;
    }
    if (*pos == len) {
        return DUET_ENOENT;
    }
    if (*pos > len || len - *pos < DUET_RELAY_RECORD_HDR) {
        return DUET_EPROTO;
    }
    const uint8_t *p = rec + *pos;
    size_t n = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
    if (n == 0 || n > DUET_RELAY_FRAME_MAX || n > len - *pos - DUET_RELAY_RECORD_HDR) {
        return DUET_EPROTO;
    }
    *frame = p + DUET_RELAY_RECORD_HDR;
    *flen = n;
    *pos += DUET_RELAY_RECORD_HDR + n;
    return DUET_OK;
}

void duet_relay_record_put_len(uint8_t out[static DUET_RELAY_RECORD_HDR], size_t n)
{
    if (n == 0 || n > DUET_RELAY_FRAME_MAX) {
        abort();
    }
    out[0] = (uint8_t)(n >> 24);
    out[1] = (uint8_t)(n >> 16);
    out[2] = (uint8_t)(n >> 8);
    out[3] = (uint8_t)n;
}

/* ---- relay addresses ------------------------------------------------------------------- */

#define SCHEME    "duet://"
#define KEY_CHARS 52u /* ceil(256 / 5) */

static const char b32[] = "0123456789abcdefghjkmnpqrstvwxyz"; /* Crockford, lower case */

static int b32_value(char c)
{
    if (c >= 'A' && c <= 'Z') {
        c = (char)(c - 'A' + 'a');
    }
    for (int i = 0; i < 32; i++) {
        if (b32[i] == c) {
            return i;
        }
    }
    return -1;
}

static void b32_encode(char out[static KEY_CHARS + 1], const uint8_t key[static 32])
{
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < 32; i++) {
        acc = acc << 8 | key[i];
        bits += 8;
        while (bits >= 5) {
            out[o++] = b32[(acc >> (bits - 5)) & 31u];
            bits -= 5;
        }
    }
    out[o++] = b32[(acc << (5 - bits)) & 31u]; /* the last bit, padded with zeros */
    out[o] = 0;
}

static duet_err_t b32_decode(uint8_t key[static 32], const char *s)
{
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < KEY_CHARS; i++) {
        int v = b32_value(s[i]);
        if (v < 0) {
            return DUET_EBADKEY;
        }
        acc = acc << 5 | (uint32_t)v;
        bits += 5;
        if (bits >= 8) {
            key[o++] = (uint8_t)(acc >> (bits - 8));
            bits -= 8;
            acc &= (1u << bits) - 1u;
        }
    }
    /* 260 bits carried 256: the 4 left over must be zero, so each key has one spelling. */
    return o == 32 && acc == 0 ? DUET_OK : DUET_EBADKEY;
}

static bool host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.';
}

static bool ipv6_char(char c)
{
    return (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || (c >= '0' && c <= '9') || c == ':' ||
           c == '.';
}

duet_err_t duet_relay_url_parse(duet_relay_url_t *u, const char *text, size_t len)
{
    size_t i = sizeof SCHEME - 1, hs, he;
    memset(u, 0, sizeof *u);
    if (len < i || len > DUET_RELAY_URL_MAX || strncmp(text, SCHEME, i) != 0) {
        return DUET_EADDR;
    }
    if (i < len && text[i] == '[') {
        hs = ++i;
        while (i < len && ipv6_char(text[i])) {
            i++;
        }
        he = i;
        if (i >= len || text[i] != ']' || he - hs < 2 || he - hs > 45) {
            return DUET_EADDR;
        }
        i++;
    } else {
        hs = i;
        while (i < len && host_char(text[i])) {
            i++;
        }
        he = i;
        if (he == hs || he - hs > DUET_RELAY_HOST_MAX || text[hs] == '-' || text[hs] == '.') {
            return DUET_EADDR;
        }
    }
    if (i >= len || text[i++] != ':') {
        return DUET_EADDR;
    }
    uint32_t port = 0;
    size_t ps = i;
    while (i < len && text[i] >= '0' && text[i] <= '9' && i - ps < 5) {
        port = port * 10 + (uint32_t)(text[i++] - '0');
    }
    if (i == ps || (text[ps] == '0') || port > 65535 || i >= len || text[i++] != '/') {
        return DUET_EADDR;
    }
    if (len - i != KEY_CHARS) {
        return DUET_EADDR;
    }
    duet_err_t err = b32_decode(u->key, text + i);
    if (err != DUET_OK) {
        memset(u, 0, sizeof *u);
        return err;
    }
    memcpy(u->host, text + hs, he - hs);
    u->host[he - hs] = 0;
    u->port = (uint16_t)port;
    return DUET_OK;
}

duet_err_t duet_relay_url_format(char *out, size_t cap, const char *host, uint16_t port,
                                 const uint8_t key[static 32])
{
    char k[KEY_CHARS + 1];
    bool v6 = strchr(host, ':') != NULL;
    if (cap > 0) {
        out[0] = 0;
    }
    b32_encode(k, key);
    int n = snprintf(out, cap, "%s%s%s%s:%u/%s", SCHEME, v6 ? "[" : "", host, v6 ? "]" : "",
                     (unsigned)port, k);
    if (n < 0 || (size_t)n >= cap) {
        if (cap > 0) {
            out[0] = 0;
        }
        return DUET_ETOOBIG;
    }
    duet_relay_url_t check;
    if (duet_relay_url_parse(&check, out, (size_t)n) != DUET_OK) {
        out[0] = 0;
        return DUET_EADDR;
    }
    return DUET_OK;
}

/* ---- token buckets (rate limits) ------------------------------------------------------ */

void duet_relay_bucket_init(duet_relay_bucket_t *b, uint64_t burst, uint64_t now_ms)
{
    b->milli = burst * 1000u;
    b->last_ms = now_ms;
}

bool duet_relay_bucket_take(duet_relay_bucket_t *b, uint64_t rate, uint64_t burst, uint64_t cost,
                            uint64_t now_ms, uint64_t *wait_ms)
{
    *wait_ms = 0;
    if (rate == 0) {
        return true;
    }
    uint64_t full = burst * 1000u;
    uint64_t elapsed = now_ms > b->last_ms ? now_ms - b->last_ms : 0;
    b->last_ms = now_ms > b->last_ms ? now_ms : b->last_ms;
    /* rate tokens per second = rate thousandths per millisecond. */
    if (elapsed > full / rate + 1) {
        b->milli = full;
    } else {
        b->milli += elapsed * rate;
        if (b->milli > full) {
            b->milli = full;
        }
    }
    /* A cost above the burst could never be paid: it takes a full bucket instead. */
    uint64_t need = (cost < burst ? cost : burst) * 1000u;
    if (b->milli >= need) {
        b->milli -= need;
        return true;
    }
    *wait_ms = (need - b->milli + rate - 1) / rate;
    return false;
}
