/* see ratchet.h */
#include "ratchet.h"

#include <sodium.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "hkdf.h"

#define KEY DUET_RATCHET_KEY_BYTES
#define HEADER DUET_RATCHET_HEADER_BYTES
#define HEADER_PLAIN DUET_RATCHET_HEADER_PLAIN_BYTES
#define NONCE DUET_RATCHET_HEADER_NONCE_BYTES
#define BODY_OFFSET (1u + HEADER)

/* HKDF labels. Changing one changes every key: they are part of the protocol version. */
static const char label_rk[] = "duet ratchet rk v1";
#define LABEL_LEN(l) (sizeof(l) - 1u)

/* ENCRYPT's expansion of a message key: XChaCha20-Poly1305 key (32) || nonce (24). */

/* Saved state: "DRAT", format 1 (see docs/protocol/ratchet.md for the layout). */
static const uint8_t saved_magic[4] = {'D', 'R', 'A', 'T'};
#define SAVED_FORMAT 1u
#define SAVED_FLAG_RECV 0x01u

/* One decryption can store the skipped keys of two chain steps (the end of the old
 * receiving chain and the start of the new one); the store must hold them all. */
_Static_assert(2u * DUET_RATCHET_MAX_SKIP <= DUET_RATCHET_MAX_SKIPPED_TOTAL,
               "the skipped-key store must hold two full chain steps");

typedef struct {
    uint8_t hk[KEY]; /* header key of the chain the message belongs to */
    uint8_t mk[KEY]; /* its message key */
    uint32_t n;      /* its number in that chain */
} skipped_t;

/* Everything but the skipped keys: small enough to copy for a transactional ratchet step. */
typedef struct {
    uint8_t dhs_priv[KEY], dhs_pub[KEY]; /* our current ratchet key pair */
    uint8_t dhr[KEY];                    /* the partner's current ratchet public key */
    uint8_t rk[KEY];                     /* root key */
    uint8_t cks[KEY], ckr[KEY];          /* sending and receiving chain keys */
    uint8_t hks[KEY], hkr[KEY];          /* sending and receiving header keys */
    uint8_t nhks[KEY], nhkr[KEY];        /* the next ones */
    uint32_t ns, nr, pn;                 /* message numbers: sent, received, previous chain */
    bool has_recv;                       /* ckr and hkr hold a chain (false for Alice until
                                            her partner's first message) */
} chain_state_t;

struct duet_ratchet {
    chain_state_t s;
    bool ready; /* initialised or loaded */
    size_t nskipped;
    /* Oldest first. Entries of one chain are contiguous, which lets decryption try each
     * distinct header key once. */
    skipped_t skipped[DUET_RATCHET_MAX_SKIPPED_TOTAL];
};

typedef struct {
    uint8_t dh[KEY];
    uint32_t pn, n;
} header_t;

/* The arguments of one decryption, passed down together. */
typedef struct {
    const uint8_t *ad;
    size_t ad_len;
    const uint8_t *env;
    size_t env_len;
    uint8_t *out;
    size_t cap;
    size_t *out_len;
} msg_t;

static void require(bool ok)
{
    if (!ok) {
        abort();
    }
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* ---- KDFs ---------------------------------------------------------------------------- */

/* KDF_CK. The HMAC state keyed with ck is computed once for both outputs (two compression
 * calls saved per message); mk may be NULL when only the chain advances. */
static void ck_step(const uint8_t ck[KEY], uint8_t next_ck[KEY], uint8_t *mk)
{
    static const uint8_t one = 0x01, two = 0x02;
    crypto_auth_hmacsha256_state keyed, st;
    (void)crypto_auth_hmacsha256_init(&keyed, ck, KEY);
    if (mk != NULL) {
        st = keyed;
        (void)crypto_auth_hmacsha256_update(&st, &one, 1);
        (void)crypto_auth_hmacsha256_final(&st, mk);
        sodium_memzero(&st, sizeof st);
    }
    (void)crypto_auth_hmacsha256_update(&keyed, &two, 1);
    (void)crypto_auth_hmacsha256_final(&keyed, next_ck);
    sodium_memzero(&keyed, sizeof keyed);
}

void duet_ratchet_kdf_ck(const uint8_t ck[static 32], uint8_t next_ck[static 32],
                         uint8_t mk[static 32])
{
    ck_step(ck, next_ck, mk);
}

duet_err_t duet_ratchet_kdf_mk(const uint8_t mk[static 32], const uint8_t *info,
                               size_t info_len, uint8_t *out, size_t out_len)
{
    static const uint8_t zero_salt[KEY] = {0};
    return duet_hkdf_sha256(out, out_len, zero_salt, sizeof zero_salt, mk, KEY, info,
                            info_len);
}

void duet_ratchet_kdf_rk(const uint8_t rk[static 32], const uint8_t dh[static 32],
                         uint8_t next_rk[static 32], uint8_t ck[static 32],
                         uint8_t nhk[static 32])
{
    uint8_t okm[3 * KEY];
    duet_err_t err = duet_hkdf_sha256(okm, sizeof okm, rk, KEY, dh, KEY,
                                      (const uint8_t *)label_rk, LABEL_LEN(label_rk));
    require(err == DUET_OK);
    memcpy(next_rk, okm, KEY);
    memcpy(ck, okm + KEY, KEY);
    memcpy(nhk, okm + 2 * KEY, KEY);
    sodium_memzero(okm, sizeof okm);
}

/* Walk a chain `steps` messages forward from ck, then derive the key of the next message:
 * mk is the key of message (start + steps), ck_after the chain key that follows it. */
static void chain_walk(const uint8_t ck[KEY], uint32_t steps, uint8_t ck_after[KEY],
                       uint8_t mk[KEY])
{
    uint8_t cur[KEY];
    memcpy(cur, ck, KEY);
    for (uint32_t i = 0; i < steps; i++) {
        ck_step(cur, cur, NULL);
    }
    ck_step(cur, ck_after, mk);
    sodium_memzero(cur, sizeof cur);
}

/* ---- header and body ----------------------------------------------------------------- */

/* HENCRYPT: out[0..80) = nonce || XChaCha20-Poly1305(hk, nonce, DHs || PN || N). */
static void header_seal(uint8_t out[HEADER], const uint8_t hk[KEY], const header_t *h,
                        const duet_rng_t *rng)
{
    uint8_t plain[HEADER_PLAIN];
    size_t len;
    memcpy(plain, h->dh, KEY);
    put_be32(plain + KEY, h->pn);
    put_be32(plain + KEY + 4, h->n);
    duet_rng_fill(rng, out, NONCE);
    duet_err_t err = duet_crypto_aead_seal(out + NONCE, HEADER - NONCE, &len, plain,
                                           sizeof plain, NULL, 0, out, hk);
    require(err == DUET_OK && len == HEADER - NONCE);
    sodium_memzero(plain, sizeof plain);
}

/* HDECRYPT: true and *h filled when enc opens under hk. */
static bool header_open(header_t *h, const uint8_t enc[HEADER], const uint8_t hk[KEY])
{
    uint8_t plain[HEADER_PLAIN];
    size_t len;
    if (duet_crypto_aead_open(plain, sizeof plain, &len, enc + NONCE, HEADER - NONCE, NULL, 0,
                              enc, hk) != DUET_OK) {
        return false;
    }
    memcpy(h->dh, plain, KEY);
    h->pn = get_be32(plain + KEY);
    h->n = get_be32(plain + KEY + 4);
    sodium_memzero(plain, sizeof plain);
    return true;
}

/* The body's AEAD key and nonce from a message key: the message key itself, with an all-zero
 * nonce. Each message key seals exactly one body (the chain never repeats a key, and a used
 * key is deleted), so a fixed nonce never meets the same key twice; Signal's HKDF expansion
 * exists to split one secret into a CBC key, an HMAC key and an IV, which an AEAD does not
 * need. Dropping it halves the cost of a small envelope (bench_crypto). */
static void body_keys(const uint8_t mk[KEY], uint8_t key[DUET_CRYPTO_AEAD_KEY_BYTES],
                      uint8_t nonce[DUET_CRYPTO_AEAD_NONCE_BYTES])
{
    memcpy(key, mk, DUET_CRYPTO_AEAD_KEY_BYTES);
    memset(nonce, 0, DUET_CRYPTO_AEAD_NONCE_BYTES);
}

/* The body's associated data: caller AD || the encrypted header. Returns its length. */
static size_t body_ad(uint8_t *full, const uint8_t *ad, size_t ad_len,
                      const uint8_t enc_header[HEADER])
{
    if (ad_len != 0) {
        memcpy(full, ad, ad_len);
    }
    memcpy(full + ad_len, enc_header, HEADER);
    return ad_len + HEADER;
}

/* Open the body of m with message key mk. DUET_EAUTH on a bad tag. */
static duet_err_t body_open(const msg_t *m, const uint8_t mk[KEY])
{
    uint8_t key[DUET_CRYPTO_AEAD_KEY_BYTES], nonce[DUET_CRYPTO_AEAD_NONCE_BYTES];
    uint8_t full_ad[DUET_RATCHET_MAX_AD + HEADER];
    size_t full_len = body_ad(full_ad, m->ad, m->ad_len, m->env + 1);
    body_keys(mk, key, nonce);
    duet_err_t err = duet_crypto_aead_open(m->out, m->cap, m->out_len, m->env + BODY_OFFSET,
                                           m->env_len - BODY_OFFSET, full_ad, full_len, nonce,
                                           key);
    sodium_memzero(key, sizeof key);
    sodium_memzero(nonce, sizeof nonce);
    return err;
}

/* ---- skipped message keys ------------------------------------------------------------ */

static size_t skipped_find(const duet_ratchet_t *r, const uint8_t hk[KEY], uint32_t n)
{
    for (size_t i = 0; i < r->nskipped; i++) {
        if (r->skipped[i].n == n && sodium_memcmp(r->skipped[i].hk, hk, KEY) == 0) {
            return i;
        }
    }
    return SIZE_MAX;
}

/* Delete entries [i, i+count), keeping the order of the rest. */
static void skipped_delete(duet_ratchet_t *r, size_t i, size_t count)
{
    sodium_memzero(&r->skipped[i], count * sizeof r->skipped[0]);
    size_t tail = r->nskipped - i - count;
    if (tail != 0) {
        memmove(&r->skipped[i], &r->skipped[i + count], tail * sizeof r->skipped[0]);
    }
    r->nskipped -= count;
    sodium_memzero(&r->skipped[r->nskipped], count * sizeof r->skipped[0]);
}

/* Evict the oldest entries so that `incoming` more fit. */
static void skipped_make_room(duet_ratchet_t *r, size_t incoming)
{
    require(incoming <= DUET_RATCHET_MAX_SKIPPED_TOTAL);
    if (r->nskipped + incoming > DUET_RATCHET_MAX_SKIPPED_TOTAL) {
        skipped_delete(r, 0, r->nskipped + incoming - DUET_RATCHET_MAX_SKIPPED_TOTAL);
    }
}

/* Store the keys of messages [from, until) of the chain (hk, ck at message `from`); room
 * has been made. */
static void skipped_store(duet_ratchet_t *r, const uint8_t hk[KEY], const uint8_t ck[KEY],
                          uint32_t from, uint32_t until)
{
    uint8_t cur[KEY];
    memcpy(cur, ck, KEY);
    for (uint32_t n = from; n < until; n++) {
        skipped_t *e = &r->skipped[r->nskipped++];
        memcpy(e->hk, hk, KEY);
        e->n = n;
        ck_step(cur, cur, e->mk);
    }
    sodium_memzero(cur, sizeof cur);
}

/* Open m with the stored key of message n of the chain under hk, deleting it on success.
 * No such key: the message was already opened (or its key evicted): DUET_EDUP. */
static duet_err_t open_skipped(duet_ratchet_t *r, const msg_t *m, const uint8_t hk[KEY],
                               uint32_t n)
{
    size_t i = skipped_find(r, hk, n);
    if (i == SIZE_MAX) {
        return DUET_EDUP;
    }
    duet_err_t err = body_open(m, r->skipped[i].mk);
    if (err == DUET_OK) {
        skipped_delete(r, i, 1);
    }
    return err;
}

/* ---- the three ways a message can arrive --------------------------------------------- */

/* The header opened under HKr: a message of the current receiving chain. */
static duet_err_t recv_current(duet_ratchet_t *r, const msg_t *m, const header_t *h)
{
    if (h->n == UINT32_MAX || sodium_memcmp(h->dh, r->s.dhr, KEY) != 0) {
        return DUET_EPROTO;
    }
    if (h->n < r->s.nr) {
        return open_skipped(r, m, r->s.hkr, h->n);
    }
    if (h->n - r->s.nr > DUET_RATCHET_MAX_SKIP) {
        return DUET_EMAXSKIP;
    }
    uint8_t ck_after[KEY], mk[KEY];
    chain_walk(r->s.ckr, h->n - r->s.nr, ck_after, mk);
    duet_err_t err = body_open(m, mk);
    if (err == DUET_OK) {
        skipped_make_room(r, h->n - r->s.nr);
        skipped_store(r, r->s.hkr, r->s.ckr, r->s.nr, h->n);
        memcpy(r->s.ckr, ck_after, KEY);
        r->s.nr = h->n + 1;
    }
    sodium_memzero(ck_after, sizeof ck_after);
    sodium_memzero(mk, sizeof mk);
    return err;
}

/* DHRatchetHE on a copy of the state: the partner's new ratchet key dh starts new chains. */
static duet_err_t dh_ratchet(chain_state_t *s, const uint8_t dh[KEY], const duet_rng_t *rng)
{
    uint8_t shared[KEY];
    duet_err_t err;
    s->pn = s->ns;
    s->ns = 0;
    s->nr = 0;
    memcpy(s->hks, s->nhks, KEY);
    memcpy(s->hkr, s->nhkr, KEY);
    memcpy(s->dhr, dh, KEY);
    err = duet_crypto_x25519(shared, s->dhs_priv, s->dhr);
    if (err != DUET_OK) {
        goto cleanup;
    }
    duet_ratchet_kdf_rk(s->rk, shared, s->rk, s->ckr, s->nhkr);
    duet_crypto_x25519_keypair(s->dhs_pub, s->dhs_priv, rng);
    err = duet_crypto_x25519(shared, s->dhs_priv, s->dhr);
    if (err != DUET_OK) {
        goto cleanup;
    }
    duet_ratchet_kdf_rk(s->rk, shared, s->rk, s->cks, s->nhks);
    s->has_recv = true;
cleanup:
    sodium_memzero(shared, sizeof shared);
    return err;
}

/* The header opened under NHKr: the partner has a new ratchet key. The step is computed on
 * a copy and committed only once the body has been authenticated. */
static duet_err_t recv_new_chain(duet_ratchet_t *r, const duet_rng_t *rng, const msg_t *m,
                                 const header_t *h)
{
    if (h->n == UINT32_MAX) {
        return DUET_EPROTO;
    }
    /* SkipMessageKeysHE(PN) in the old chain, then (N) in the new one: check both first. */
    if ((h->pn > r->s.nr && h->pn - r->s.nr > DUET_RATCHET_MAX_SKIP) ||
        h->n > DUET_RATCHET_MAX_SKIP) {
        return DUET_EMAXSKIP;
    }
    uint32_t old_skip = r->s.has_recv && h->pn > r->s.nr ? h->pn - r->s.nr : 0;
    chain_state_t next = r->s;
    uint8_t ck_after[KEY], mk[KEY];
    duet_err_t err = dh_ratchet(&next, h->dh, rng);
    if (err != DUET_OK) {
        goto cleanup;
    }
    chain_walk(next.ckr, h->n, ck_after, mk);
    err = body_open(m, mk);
    if (err != DUET_OK) {
        goto cleanup;
    }
    skipped_make_room(r, (size_t)old_skip + h->n);
    if (old_skip != 0) {
        skipped_store(r, r->s.hkr, r->s.ckr, r->s.nr, h->pn);
    }
    skipped_store(r, next.hkr, next.ckr, 0, h->n);
    memcpy(next.ckr, ck_after, KEY);
    next.nr = h->n + 1;
    r->s = next;
cleanup:
    sodium_memzero(&next, sizeof next);
    sodium_memzero(ck_after, sizeof ck_after);
    sodium_memzero(mk, sizeof mk);
    return err;
}

/* TrySkippedMessageKeysHE for the chains before the current one: try each distinct stored
 * header key once (entries of a chain are contiguous). */
static duet_err_t recv_old_chain(duet_ratchet_t *r, const msg_t *m)
{
    const uint8_t *tried = NULL;
    for (size_t i = 0; i < r->nskipped; i++) {
        const uint8_t *hk = r->skipped[i].hk;
        if ((tried != NULL && sodium_memcmp(hk, tried, KEY) == 0) ||
            (r->s.has_recv && sodium_memcmp(hk, r->s.hkr, KEY) == 0)) {
            continue;
        }
        tried = hk;
        header_t h;
        if (header_open(&h, m->env + 1, hk)) {
            uint8_t hk_copy[KEY]; /* open_skipped may move the entries */
            memcpy(hk_copy, hk, KEY);
            duet_err_t err = open_skipped(r, m, hk_copy, h.n);
            sodium_memzero(hk_copy, sizeof hk_copy);
            return err;
        }
    }
    return DUET_EAUTH;
}

/* ---- public -------------------------------------------------------------------------- */

duet_err_t duet_ratchet_new(duet_ratchet_t **out)
{
    require(out != NULL);
    *out = NULL;
    /* sodium_malloc aligns the end of the block to a page, so round the size up to keep
     * the start aligned. */
    size_t size = (sizeof(duet_ratchet_t) + 63u) & ~(size_t)63u;
    duet_ratchet_t *r = sodium_malloc(size);
    if (r == NULL) {
        return DUET_ENOMEM;
    }
    memset(r, 0, size);
    *out = r;
    return DUET_OK;
}

void duet_ratchet_free(duet_ratchet_t *r)
{
    if (r != NULL) {
        sodium_free(r); /* which fills the whole block with zeros before unmapping it */
    }
}

static void reset(duet_ratchet_t *r)
{
    sodium_memzero(&r->s, sizeof r->s);
    sodium_memzero(r->skipped, r->nskipped * sizeof r->skipped[0]);
    r->nskipped = 0;
    r->ready = false;
}

void duet_ratchet_clear(duet_ratchet_t *r)
{
    if (r != NULL) {
        reset(r);
    }
}

duet_err_t duet_ratchet_init_alice(duet_ratchet_t *r, const uint8_t sk[static 32],
                                   const uint8_t hk_a[static 32], const uint8_t nhk_b[static 32],
                                   const uint8_t a0_priv[static 32],
                                   const uint8_t b0_pub[static 32])
{
    uint8_t shared[KEY];
    require(r != NULL);
    reset(r);
    chain_state_t *s = &r->s;
    duet_err_t err = duet_crypto_x25519(shared, a0_priv, b0_pub);
    if (err != DUET_OK) {
        goto cleanup;
    }
    memcpy(s->dhs_priv, a0_priv, KEY);
    duet_crypto_x25519_public(s->dhs_pub, a0_priv);
    memcpy(s->dhr, b0_pub, KEY);
    duet_ratchet_kdf_rk(sk, shared, s->rk, s->cks, s->nhks);
    memcpy(s->hks, hk_a, KEY);
    memcpy(s->nhkr, nhk_b, KEY);
    r->ready = true;
cleanup:
    sodium_memzero(shared, sizeof shared);
    if (err != DUET_OK) {
        reset(r);
    }
    return err;
}

duet_err_t duet_ratchet_init_bob(duet_ratchet_t *r, const uint8_t sk[static 32],
                                 const uint8_t hk_a[static 32], const uint8_t nhk_b[static 32],
                                 const uint8_t b0_priv[static 32],
                                 const uint8_t a0_pub[static 32], const duet_rng_t *rng)
{
    require(r != NULL && rng != NULL);
    reset(r);
    chain_state_t *s = &r->s;
    /* RatchetInitBobHE. */
    memcpy(s->dhs_priv, b0_priv, KEY);
    duet_crypto_x25519_public(s->dhs_pub, b0_priv);
    memcpy(s->rk, sk, KEY);
    memcpy(s->nhks, nhk_b, KEY);
    memcpy(s->nhkr, hk_a, KEY);
    /* The receiving half of DHRatchetHE for Alice's A0, as if her header had arrived. */
    duet_err_t err = dh_ratchet(s, a0_pub, rng);
    if (err != DUET_OK) {
        reset(r);
        return err;
    }
    r->ready = true;
    return DUET_OK;
}

duet_err_t duet_ratchet_encrypt(duet_ratchet_t *r, const duet_rng_t *rng, const uint8_t *ad,
                                size_t ad_len, const uint8_t *plain, size_t plain_len,
                                uint8_t *out, size_t cap, size_t *out_len)
{
    require(r != NULL && r->ready && rng != NULL && out != NULL && out_len != NULL);
    require((ad != NULL || ad_len == 0) && (plain != NULL || plain_len == 0));
    *out_len = 0;
    if (plain_len > DUET_RATCHET_MAX_PLAINTEXT || ad_len > DUET_RATCHET_MAX_AD ||
        cap < duet_ratchet_envelope_len(plain_len)) {
        return DUET_ETOOBIG;
    }
    if (r->s.ns == UINT32_MAX) {
        return DUET_ENONCE;
    }
    uint8_t mk[KEY], next_ck[KEY], key[DUET_CRYPTO_AEAD_KEY_BYTES];
    uint8_t nonce[DUET_CRYPTO_AEAD_NONCE_BYTES], full_ad[DUET_RATCHET_MAX_AD + HEADER];
    header_t h;
    size_t body_len;

    ck_step(r->s.cks, next_ck, mk);
    memcpy(h.dh, r->s.dhs_pub, KEY);
    h.pn = r->s.pn;
    h.n = r->s.ns;
    out[0] = DUET_RATCHET_VERSION;
    header_seal(out + 1, r->s.hks, &h, rng);

    size_t full_len = body_ad(full_ad, ad, ad_len, out + 1);
    body_keys(mk, key, nonce);
    duet_err_t err = duet_crypto_aead_seal(out + BODY_OFFSET, cap - BODY_OFFSET, &body_len,
                                           plain, plain_len, full_ad, full_len, nonce, key);
    require(err == DUET_OK);

    memcpy(r->s.cks, next_ck, KEY);
    r->s.ns++;
    *out_len = BODY_OFFSET + body_len;
    sodium_memzero(mk, sizeof mk);
    sodium_memzero(next_ck, sizeof next_ck);
    sodium_memzero(key, sizeof key);
    sodium_memzero(nonce, sizeof nonce);
    return DUET_OK;
}

duet_err_t duet_ratchet_decrypt(duet_ratchet_t *r, const duet_rng_t *rng, const uint8_t *ad,
                                size_t ad_len, const uint8_t *env, size_t env_len,
                                uint8_t *out, size_t cap, size_t *out_len)
{
    require(r != NULL && r->ready && rng != NULL && out_len != NULL);
    require((ad != NULL || ad_len == 0) && (env != NULL || env_len == 0));
    require(out != NULL || cap == 0);
    *out_len = 0;
    if (env_len < DUET_RATCHET_OVERHEAD) {
        return DUET_EDECODE;
    }
    if (env[0] != DUET_RATCHET_VERSION) {
        return DUET_EVERSION;
    }
    size_t plain_len = env_len - DUET_RATCHET_OVERHEAD;
    if (plain_len > DUET_RATCHET_MAX_PLAINTEXT || ad_len > DUET_RATCHET_MAX_AD ||
        cap < plain_len) {
        return DUET_ETOOBIG;
    }
    /* libsodium wants a non-NULL output even for an empty plaintext. */
    uint8_t none[1];
    const msg_t m = {ad, ad_len, env, env_len, out != NULL ? out : none, cap, out_len};
    header_t h;
    /* Try the likely key first: the current receiving chain, then the next one, then the
     * chains whose skipped keys we still hold. At most one opens the header. */
    if (r->s.has_recv && header_open(&h, env + 1, r->s.hkr)) {
        return recv_current(r, &m, &h);
    }
    if (header_open(&h, env + 1, r->s.nhkr)) {
        return recv_new_chain(r, rng, &m, &h);
    }
    return recv_old_chain(r, &m);
}

size_t duet_ratchet_skipped_count(const duet_ratchet_t *r)
{
    require(r != NULL);
    return r->nskipped;
}

/* ---- persistence --------------------------------------------------------------------- */

size_t duet_ratchet_saved_len(const duet_ratchet_t *r)
{
    require(r != NULL);
    return DUET_RATCHET_SAVED_FIXED_BYTES + r->nskipped * DUET_RATCHET_SAVED_SKIPPED_BYTES;
}

/* The ten keys of the fixed part, in their saved order. */
#define SAVED_KEYS(s)                                                                        \
    {                                                                                        \
        (s)->dhs_priv, (s)->dhs_pub, (s)->dhr, (s)->rk, (s)->cks, (s)->ckr, (s)->hks,         \
            (s)->hkr, (s)->nhks, (s)->nhkr                                                   \
    }
#define SAVED_NKEYS 10u
_Static_assert(DUET_RATCHET_SAVED_FIXED_BYTES == 4u + 1u + 1u + SAVED_NKEYS * KEY + 4u * 4u,
               "saved layout");
_Static_assert(DUET_RATCHET_SAVED_SKIPPED_BYTES == KEY + 4u + KEY, "saved entry layout");

duet_err_t duet_ratchet_save(const duet_ratchet_t *r, uint8_t *out, size_t cap, size_t *len)
{
    require(r != NULL && r->ready && out != NULL && len != NULL);
    *len = 0;
    size_t need = duet_ratchet_saved_len(r);
    if (cap < need) {
        return DUET_ETOOBIG;
    }
    const uint8_t *keys[SAVED_NKEYS] = SAVED_KEYS(&r->s);
    uint8_t *p = out;
    memcpy(p, saved_magic, 4);
    p[4] = SAVED_FORMAT;
    p[5] = r->s.has_recv ? SAVED_FLAG_RECV : 0;
    p += 6;
    for (size_t i = 0; i < SAVED_NKEYS; i++, p += KEY) {
        memcpy(p, keys[i], KEY);
    }
    put_be32(p, r->s.ns);
    put_be32(p + 4, r->s.nr);
    put_be32(p + 8, r->s.pn);
    put_be32(p + 12, (uint32_t)r->nskipped);
    p += 16;
    for (size_t i = 0; i < r->nskipped; i++, p += DUET_RATCHET_SAVED_SKIPPED_BYTES) {
        memcpy(p, r->skipped[i].hk, KEY);
        put_be32(p + KEY, r->skipped[i].n);
        memcpy(p + KEY + 4, r->skipped[i].mk, KEY);
    }
    *len = need;
    return DUET_OK;
}

/* Parse and check the fixed part into *s and *nskipped; nothing of r is touched. */
static duet_err_t parse_fixed(chain_state_t *s, size_t *nskipped, const uint8_t *buf,
                              size_t len)
{
    if (len < DUET_RATCHET_SAVED_FIXED_BYTES || sodium_memcmp(buf, saved_magic, 4) != 0) {
        return DUET_EDECODE;
    }
    if (buf[4] != SAVED_FORMAT) {
        return DUET_EVERSION;
    }
    if ((buf[5] & ~SAVED_FLAG_RECV) != 0) {
        return DUET_EDECODE;
    }
    s->has_recv = (buf[5] & SAVED_FLAG_RECV) != 0;
    uint8_t *keys[SAVED_NKEYS] = SAVED_KEYS(s);
    const uint8_t *p = buf + 6;
    for (size_t i = 0; i < SAVED_NKEYS; i++, p += KEY) {
        memcpy(keys[i], p, KEY);
    }
    s->ns = get_be32(p);
    s->nr = get_be32(p + 4);
    s->pn = get_be32(p + 8);
    uint32_t count = get_be32(p + 12);
    if (count > DUET_RATCHET_MAX_SKIPPED_TOTAL ||
        len != DUET_RATCHET_SAVED_FIXED_BYTES + count * DUET_RATCHET_SAVED_SKIPPED_BYTES) {
        return DUET_EDECODE;
    }
    /* Before the first message from the partner there is no receiving chain: its fields
     * must be empty, so that one state has one encoding. */
    if (!s->has_recv &&
        (!sodium_is_zero(s->ckr, KEY) || !sodium_is_zero(s->hkr, KEY) || s->nr != 0)) {
        return DUET_EDECODE;
    }
    uint8_t pub[KEY];
    duet_crypto_x25519_public(pub, s->dhs_priv);
    int mismatch = sodium_memcmp(pub, s->dhs_pub, KEY);
    sodium_memzero(pub, sizeof pub);
    if (mismatch != 0) {
        return DUET_EDECODE;
    }
    *nskipped = count;
    return DUET_OK;
}

duet_err_t duet_ratchet_load(duet_ratchet_t *r, const uint8_t *buf, size_t len)
{
    require(r != NULL && (buf != NULL || len == 0));
    chain_state_t s;
    size_t count = 0;
    memset(&s, 0, sizeof s);
    duet_err_t err = parse_fixed(&s, &count, buf, len);
    if (err != DUET_OK) {
        goto cleanup;
    }
    const uint8_t *p = buf + DUET_RATCHET_SAVED_FIXED_BYTES;
    for (size_t i = 0; i < count; i++, p += DUET_RATCHET_SAVED_SKIPPED_BYTES) {
        if (get_be32(p + KEY) == UINT32_MAX) {
            err = DUET_EDECODE;
            goto cleanup;
        }
    }
    /* Valid: commit. */
    reset(r);
    r->s = s;
    p = buf + DUET_RATCHET_SAVED_FIXED_BYTES;
    for (size_t i = 0; i < count; i++, p += DUET_RATCHET_SAVED_SKIPPED_BYTES) {
        memcpy(r->skipped[i].hk, p, KEY);
        r->skipped[i].n = get_be32(p + KEY);
        memcpy(r->skipped[i].mk, p + KEY + 4, KEY);
    }
    r->nskipped = count;
    r->ready = true;
cleanup:
    sodium_memzero(&s, sizeof s);
    return err;
}
