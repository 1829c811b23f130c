/* see noise.h */
#include "noise.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

/* ---- the pattern table ----------------------------------------------------------------- */

enum { TOK_END = 0, TOK_E, TOK_S, TOK_EE, TOK_ES, TOK_SE, TOK_SS, TOK_PSK };

#define NOISE_MAX_MSGS 3u           /* the longest supported pattern (X*) */
#define NOISE_PATTERN_TOKENS 6u     /* the longest message (IX's second: 5) + TOK_END */
#define NOISE_MAX_TOKENS 7u         /* psk0 + 5 pattern tokens + pskN */
#define NOISE_BLOCKLEN 128u         /* BLAKE2b block, for HMAC */
#define NOISE_NONCELEN 12u          /* IETF ChaCha20-Poly1305 */

typedef struct noise_pattern {
    char name[3];
    bool pre_init_s; /* "-> s" pre-message */
    bool pre_resp_s; /* "<- s" pre-message */
    uint8_t nmsgs;
    uint8_t msgs[NOISE_MAX_MSGS][NOISE_PATTERN_TOKENS]; /* message i is the initiator's
                                                           when i is even */
} noise_pattern_t;

/* Section 7.4 (one-way) and 7.5 (interactive) of the spec, revision 34. */
static const noise_pattern_t noise_patterns[] = {
    {"N", false, true, 1, {{TOK_E, TOK_ES}}},
    {"K", true, true, 1, {{TOK_E, TOK_ES, TOK_SS}}},
    {"X", false, true, 1, {{TOK_E, TOK_ES, TOK_S, TOK_SS}}},
    {"NN", false, false, 2, {{TOK_E}, {TOK_E, TOK_EE}}},
    {"NK", false, true, 2, {{TOK_E, TOK_ES}, {TOK_E, TOK_EE}}},
    {"NX", false, false, 2, {{TOK_E}, {TOK_E, TOK_EE, TOK_S, TOK_ES}}},
    {"KN", true, false, 2, {{TOK_E}, {TOK_E, TOK_EE, TOK_SE}}},
    {"KK", true, true, 2, {{TOK_E, TOK_ES, TOK_SS}, {TOK_E, TOK_EE, TOK_SE}}},
    {"KX", true, false, 2, {{TOK_E}, {TOK_E, TOK_EE, TOK_SE, TOK_S, TOK_ES}}},
    {"XN", false, false, 3, {{TOK_E}, {TOK_E, TOK_EE}, {TOK_S, TOK_SE}}},
    {"XK", false, true, 3, {{TOK_E, TOK_ES}, {TOK_E, TOK_EE}, {TOK_S, TOK_SE}}},
    {"XX", false, false, 3, {{TOK_E}, {TOK_E, TOK_EE, TOK_S, TOK_ES}, {TOK_S, TOK_SE}}},
    {"IN", false, false, 2, {{TOK_E, TOK_S}, {TOK_E, TOK_EE, TOK_SE}}},
    {"IK", false, true, 2, {{TOK_E, TOK_ES, TOK_S, TOK_SS}, {TOK_E, TOK_EE, TOK_SE}}},
    {"IX", false, false, 2, {{TOK_E, TOK_S}, {TOK_E, TOK_EE, TOK_SE, TOK_S, TOK_ES}}},
};
#define NOISE_NPATTERNS (sizeof noise_patterns / sizeof noise_patterns[0])

static const char noise_prefix[] = "Noise_";
static const char noise_suffix[] = "_25519_ChaChaPoly_BLAKE2b";

/* A stand-in for NULL inputs of length zero, so libc and libsodium never see NULL. */
static const uint8_t noise_empty[1];

static bool is_pattern_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/*
 * "Noise_" PATTERN MODIFIERS "_25519_ChaChaPoly_BLAKE2b", PATTERN one of the table (upper
 * case and digits, so deferred patterns such as IK1 are found and refused), MODIFIERS
 * "pskN" joined by '+', each N at most the number of messages and given once.
 */
static bool parse_name(const char *name, uint8_t *pattern, uint8_t *psk_mask)
{
    size_t len = strnlen(name, DUET_NOISE_MAX_NAME + 1);
    size_t plen = sizeof noise_prefix - 1, slen = sizeof noise_suffix - 1;
    if (len > DUET_NOISE_MAX_NAME || len < plen + slen ||
        strncmp(name, noise_prefix, plen) != 0 ||
        strcmp(name + len - slen, noise_suffix) != 0) {
        return false;
    }
    const char *p = name + plen, *end = name + len - slen;
    const char *base = p;
    while (p < end && is_pattern_char(*p)) {
        p++;
    }
    size_t blen = (size_t)(p - base);
    size_t i;
    for (i = 0; i < NOISE_NPATTERNS; i++) {
        if (blen == strlen(noise_patterns[i].name) &&
            strncmp(noise_patterns[i].name, base, blen) == 0) {
            break;
        }
    }
    if (i == NOISE_NPATTERNS) {
        return false;
    }
    const char *mods = p;
    unsigned mask = 0;
    while (p < end) {
        if (p != mods && *p++ != '+') {
            return false;
        }
        if (end - p < 4 || strncmp(p, "psk", 3) != 0 || p[3] < '0' ||
            p[3] > (char)('0' + noise_patterns[i].nmsgs)) {
            return false;
        }
        unsigned bit = 1u << (p[3] - '0');
        if (mask & bit) {
            return false;
        }
        mask |= bit;
        p += 4;
    }
    *pattern = (uint8_t)i;
    *psk_mask = (uint8_t)mask;
    return true;
}

static bool msg_has(const noise_pattern_t *pat, unsigned msg, uint8_t tok)
{
    for (unsigned t = 0; t < NOISE_PATTERN_TOKENS && pat->msgs[msg][t] != TOK_END; t++) {
        if (pat->msgs[msg][t] == tok) {
            return true;
        }
    }
    return false;
}

/* Whether role sends token tok in some message. */
static bool role_sends(const noise_pattern_t *pat, duet_noise_role_t role, uint8_t tok)
{
    unsigned first = role == DUET_NOISE_INITIATOR ? 0 : 1;
    for (unsigned m = first; m < pat->nmsgs; m += 2) {
        if (msg_has(pat, m, tok)) {
            return true;
        }
    }
    return false;
}

static void fill_info(const noise_pattern_t *pat, uint8_t psk_mask, duet_noise_role_t role,
                      duet_noise_info_t *info)
{
    bool init = role == DUET_NOISE_INITIATOR;
    info->messages = pat->nmsgs;
    info->one_way = pat->nmsgs == 1;
    info->needs_s = (init ? pat->pre_init_s : pat->pre_resp_s) || role_sends(pat, role, TOK_S);
    info->needs_rs = init ? pat->pre_resp_s : pat->pre_init_s;
    uint8_t n = 0;
    for (unsigned b = 0; b < 8; b++) {
        n = (uint8_t)(n + ((psk_mask >> b) & 1u));
    }
    info->npsks = n;
}

bool duet_noise_supported(const char *protocol_name)
{
    uint8_t pattern, mask;
    if (protocol_name == NULL) {
        abort();
    }
    return parse_name(protocol_name, &pattern, &mask);
}

duet_err_t duet_noise_info(const char *protocol_name, duet_noise_role_t role,
                           duet_noise_info_t *info)
{
    uint8_t pattern, mask;
    if (protocol_name == NULL || info == NULL ||
        (role != DUET_NOISE_INITIATOR && role != DUET_NOISE_RESPONDER)) {
        abort();
    }
    memset(info, 0, sizeof *info);
    if (!parse_name(protocol_name, &pattern, &mask)) {
        return DUET_EUNSUPPORTED;
    }
    fill_info(&noise_patterns[pattern], mask, role, info);
    return DUET_OK;
}

/* ---- hash, HMAC, HKDF (section 4.3) ----------------------------------------------------- */

/* HMAC-BLAKE2b with the key's inner and outer blocks absorbed once, so that HKDF's two or
 * three HMACs under the same temp_key each cost two compressions less. */
typedef struct noise_hmac {
    crypto_generichash_state inner, outer;
} noise_hmac_t;

static void hmac_init(noise_hmac_t *m, const uint8_t *key, size_t key_len)
{
    uint8_t pad[NOISE_BLOCKLEN];
    if (key_len > DUET_NOISE_HASHLEN) {
        abort(); /* HKDF only keys HMAC with ck or temp_key, both HASHLEN */
    }
    memset(pad, 0x36, sizeof pad);
    for (size_t i = 0; i < key_len; i++) {
        pad[i] ^= key[i];
    }
    crypto_generichash_init(&m->inner, NULL, 0, DUET_NOISE_HASHLEN);
    crypto_generichash_update(&m->inner, pad, sizeof pad);
    for (size_t i = 0; i < sizeof pad; i++) {
        pad[i] ^= 0x36 ^ 0x5c;
    }
    crypto_generichash_init(&m->outer, NULL, 0, DUET_NOISE_HASHLEN);
    crypto_generichash_update(&m->outer, pad, sizeof pad);
    sodium_memzero(pad, sizeof pad);
}

/* out = HMAC(key, a || b); b may be empty. */
static void hmac_final(const noise_hmac_t *m, const uint8_t *a, size_t a_len, const uint8_t *b,
                       size_t b_len, uint8_t out[DUET_NOISE_HASHLEN])
{
    crypto_generichash_state st = m->inner;
    uint8_t ih[DUET_NOISE_HASHLEN];
    if (a_len > 0) {
        crypto_generichash_update(&st, a, a_len);
    }
    if (b_len > 0) {
        crypto_generichash_update(&st, b, b_len);
    }
    crypto_generichash_final(&st, ih, sizeof ih);
    st = m->outer;
    crypto_generichash_update(&st, ih, sizeof ih);
    crypto_generichash_final(&st, out, DUET_NOISE_HASHLEN);
    sodium_memzero(ih, sizeof ih);
    sodium_memzero(&st, sizeof st);
}

/*
 * HKDF(chaining_key, input_key_material, 2 or 3): o1, o2 and, when o3 is not NULL, o3.
 * o1 may be chaining_key itself: ck is last read before o1 is written.
 */
static void hkdf(const uint8_t ck[DUET_NOISE_HASHLEN], const uint8_t *ikm, size_t ikm_len,
                 uint8_t o1[DUET_NOISE_HASHLEN], uint8_t o2[DUET_NOISE_HASHLEN],
                 uint8_t *o3)
{
    static const uint8_t one = 0x01, two = 0x02, three = 0x03;
    noise_hmac_t m;
    uint8_t temp_key[DUET_NOISE_HASHLEN];
    hmac_init(&m, ck, DUET_NOISE_HASHLEN);
    hmac_final(&m, ikm, ikm_len, NULL, 0, temp_key);
    hmac_init(&m, temp_key, sizeof temp_key);
    hmac_final(&m, &one, 1, NULL, 0, o1);
    hmac_final(&m, o1, DUET_NOISE_HASHLEN, &two, 1, o2);
    if (o3 != NULL) {
        hmac_final(&m, o2, DUET_NOISE_HASHLEN, &three, 1, o3);
    }
    sodium_memzero(temp_key, sizeof temp_key);
    sodium_memzero(&m, sizeof m);
}

/* ---- CipherState ------------------------------------------------------------------------ */

static void cs_nonce(uint8_t nonce[NOISE_NONCELEN], uint64_t n)
{
    memset(nonce, 0, 4);
    for (unsigned i = 0; i < 8; i++) {
        nonce[4 + i] = (uint8_t)(n >> (8 * i));
    }
}

static void cs_set_key(duet_noise_cs_t *cs, const uint8_t *k)
{
    memcpy(cs->k, k, DUET_NOISE_KEYLEN);
    cs->n = 0;
    cs->has_key = true;
}

/* ENCRYPT(k, n++, ad, plain) into out[0..plain_len+16); the key must be set. */
static duet_err_t cs_seal(duet_noise_cs_t *cs, const uint8_t *ad, size_t ad_len,
                          const uint8_t *plain, size_t plain_len, uint8_t *out)
{
    uint8_t nonce[NOISE_NONCELEN];
    if (cs->n == UINT64_MAX) {
        return DUET_ENONCE;
    }
    cs_nonce(nonce, cs->n);
    crypto_aead_chacha20poly1305_ietf_encrypt(out, NULL, plain ? plain : noise_empty,
                                              plain_len, ad, ad_len, NULL, nonce, cs->k);
    cs->n++;
    return DUET_OK;
}

/* DECRYPT(k, n, ad, cipher): libsodium checks the tag before it writes a byte of out; the
 * nonce moves only on success. cipher_len >= 16. */
static duet_err_t cs_open(duet_noise_cs_t *cs, const uint8_t *ad, size_t ad_len,
                          const uint8_t *cipher, size_t cipher_len, uint8_t *out)
{
    uint8_t nonce[NOISE_NONCELEN];
    if (cs->n == UINT64_MAX) {
        return DUET_ENONCE;
    }
    cs_nonce(nonce, cs->n);
    if (crypto_aead_chacha20poly1305_ietf_decrypt(out, NULL, NULL, cipher, cipher_len, ad,
                                                  ad_len, nonce, cs->k) != 0) {
        return DUET_EAUTH;
    }
    cs->n++;
    return DUET_OK;
}

/* Whether [a, a+alen) and [b, b+blen) share a byte. */
static bool overlaps(const void *a, size_t alen, const void *b, size_t blen)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return alen > 0 && blen > 0 && x < y + blen && y < x + alen;
}

duet_err_t duet_noise_cs_encrypt(duet_noise_cs_t *cs, const uint8_t *ad, size_t ad_len,
                                 const uint8_t *plain, size_t plain_len, uint8_t *out,
                                 size_t cap, size_t *out_len)
{
    if (cs == NULL || out_len == NULL || out == NULL || (ad == NULL && ad_len > 0) ||
        (plain == NULL && plain_len > 0)) {
        abort();
    }
    *out_len = 0;
    if (plain != out && overlaps(plain, plain_len, out, cap)) {
        abort();
    }
    if (!cs->has_key) {
        return DUET_ESTATE;
    }
    if (cs->n == UINT64_MAX) {
        return DUET_ENONCE;
    }
    if (plain_len > DUET_NOISE_MAX_MSG - DUET_NOISE_TAGLEN ||
        plain_len + DUET_NOISE_TAGLEN > cap) {
        return DUET_ETOOBIG;
    }
    duet_err_t err = cs_seal(cs, ad, ad_len, plain, plain_len, out);
    if (err == DUET_OK) {
        *out_len = plain_len + DUET_NOISE_TAGLEN;
    }
    return err;
}

duet_err_t duet_noise_cs_decrypt(duet_noise_cs_t *cs, const uint8_t *ad, size_t ad_len,
                                 const uint8_t *cipher, size_t cipher_len, uint8_t *out,
                                 size_t cap, size_t *out_len)
{
    if (cs == NULL || out_len == NULL || out == NULL || (ad == NULL && ad_len > 0) ||
        (cipher == NULL && cipher_len > 0)) {
        abort();
    }
    *out_len = 0;
    if (cipher != out && overlaps(cipher, cipher_len, out, cap)) {
        abort();
    }
    if (!cs->has_key) {
        return DUET_ESTATE;
    }
    if (cs->n == UINT64_MAX) {
        return DUET_ENONCE;
    }
    if (cipher_len < DUET_NOISE_TAGLEN || cipher_len > DUET_NOISE_MAX_MSG) {
        return DUET_EDECODE;
    }
    if (cipher_len - DUET_NOISE_TAGLEN > cap) {
        return DUET_ETOOBIG;
    }
    duet_err_t err = cs_open(cs, ad, ad_len, cipher, cipher_len, out);
    if (err == DUET_OK) {
        *out_len = cipher_len - DUET_NOISE_TAGLEN;
    }
    return err;
}

void duet_noise_cs_rekey(duet_noise_cs_t *cs)
{
    static const uint8_t zeros[DUET_NOISE_KEYLEN];
    uint8_t nonce[NOISE_NONCELEN];
    uint8_t tmp[DUET_NOISE_KEYLEN + DUET_NOISE_TAGLEN];
    if (cs == NULL || !cs->has_key) {
        abort();
    }
    cs_nonce(nonce, UINT64_MAX);
    crypto_aead_chacha20poly1305_ietf_encrypt(tmp, NULL, zeros, sizeof zeros, NULL, 0, NULL,
                                              nonce, cs->k);
    memcpy(cs->k, tmp, DUET_NOISE_KEYLEN);
    sodium_memzero(tmp, sizeof tmp);
}

void duet_noise_cs_dispose(duet_noise_cs_t *cs)
{
    if (cs != NULL) {
        sodium_memzero(cs, sizeof *cs);
    }
}

/* ---- SymmetricState --------------------------------------------------------------------- */

static void mix_hash(duet_noise_hs_t *hs, const uint8_t *data, size_t len)
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, DUET_NOISE_HASHLEN);
    crypto_generichash_update(&st, hs->h, DUET_NOISE_HASHLEN);
    if (len > 0) {
        crypto_generichash_update(&st, data, len);
    }
    crypto_generichash_final(&st, hs->h, DUET_NOISE_HASHLEN);
    sodium_memzero(&st, sizeof st);
}

static void mix_key(duet_noise_hs_t *hs, const uint8_t *ikm, size_t ikm_len)
{
    uint8_t temp_k[DUET_NOISE_HASHLEN];
    hkdf(hs->ck, ikm, ikm_len, hs->ck, temp_k, NULL);
    cs_set_key(&hs->cs, temp_k);
    sodium_memzero(temp_k, sizeof temp_k);
}

static void mix_key_and_hash(duet_noise_hs_t *hs, const uint8_t *ikm, size_t ikm_len)
{
    uint8_t temp_h[DUET_NOISE_HASHLEN], temp_k[DUET_NOISE_HASHLEN];
    hkdf(hs->ck, ikm, ikm_len, hs->ck, temp_h, temp_k);
    mix_hash(hs, temp_h, sizeof temp_h);
    cs_set_key(&hs->cs, temp_k);
    sodium_memzero(temp_h, sizeof temp_h);
    sodium_memzero(temp_k, sizeof temp_k);
}

/* out[0..*out_len) = EncryptWithAd(h, plain) (plain itself before a key exists); MixHash. */
static duet_err_t encrypt_and_hash(duet_noise_hs_t *hs, const uint8_t *plain, size_t len,
                                   uint8_t *out, size_t *out_len)
{
    if (hs->cs.has_key) {
        duet_err_t err = cs_seal(&hs->cs, hs->h, DUET_NOISE_HASHLEN, plain, len, out);
        if (err != DUET_OK) {
            return err;
        }
        len += DUET_NOISE_TAGLEN;
    } else if (len > 0) {
        memcpy(out, plain, len);
    }
    mix_hash(hs, out, len);
    *out_len = len;
    return DUET_OK;
}

/* out = DecryptWithAd(h, cipher) (cipher itself before a key exists); MixHash(cipher). The
 * caller sized cipher_len so that it holds a tag when a key exists. */
static duet_err_t decrypt_and_hash(duet_noise_hs_t *hs, const uint8_t *cipher,
                                   size_t cipher_len, uint8_t *out)
{
    if (hs->cs.has_key) {
        duet_err_t err = cs_open(&hs->cs, hs->h, DUET_NOISE_HASHLEN, cipher, cipher_len, out);
        if (err != DUET_OK) {
            return err;
        }
    } else if (cipher_len > 0) {
        memcpy(out, cipher, cipher_len);
    }
    mix_hash(hs, cipher, cipher_len);
    return DUET_OK;
}

/* ---- HandshakeState --------------------------------------------------------------------- */

static const noise_pattern_t *hs_pattern(const duet_noise_hs_t *hs)
{
    return &noise_patterns[hs->pattern];
}

/* A state that was never initialised is a caller bug. */
static void hs_check(const duet_noise_hs_t *hs)
{
    if (hs == NULL ||
        (hs->role != DUET_NOISE_INITIATOR && hs->role != DUET_NOISE_RESPONDER) ||
        hs->pattern >= NOISE_NPATTERNS) {
        abort();
    }
}

/* The sticky failure: wipe every key and remember only the role and the error. */
static duet_err_t hs_fail(duet_noise_hs_t *hs, duet_err_t err)
{
    duet_noise_role_t role = hs->role;
    sodium_memzero(hs, sizeof *hs);
    hs->role = role;
    hs->dead = err;
    return err;
}

static bool hs_our_turn(const duet_noise_hs_t *hs)
{
    bool initiator_turn = (hs->msg_index % 2u) == 0;
    return initiator_turn == (hs->role == DUET_NOISE_INITIATOR);
}

/* The tokens of the next message with the psk modifiers placed (section 9.2): psk0 at the
 * start of the first message, pskN at the end of message N. */
static size_t hs_tokens(const duet_noise_hs_t *hs, uint8_t toks[NOISE_MAX_TOKENS])
{
    const uint8_t *msg = hs_pattern(hs)->msgs[hs->msg_index];
    size_t n = 0;
    if (hs->msg_index == 0 && (hs->psk_mask & 1u)) {
        toks[n++] = TOK_PSK;
    }
    for (unsigned t = 0; t < NOISE_PATTERN_TOKENS && msg[t] != TOK_END; t++) {
        toks[n++] = msg[t];
    }
    if (hs->psk_mask & (1u << (hs->msg_index + 1u))) {
        toks[n++] = TOK_PSK;
    }
    return n;
}

/* Bytes the next message carries besides the payload itself: keys, encrypted keys and the
 * payload's tag, following when the cipher state gets its key. Known before anything
 * changes, so size errors can leave the state untouched. */
static size_t hs_overhead(const duet_noise_hs_t *hs, const uint8_t *toks, size_t ntoks)
{
    bool keyed = hs->cs.has_key;
    size_t n = 0;
    for (size_t i = 0; i < ntoks; i++) {
        switch (toks[i]) {
        case TOK_E:
            n += DUET_NOISE_DHLEN;
            keyed = keyed || hs->psk_mask != 0; /* with a PSK, e also does MixKey */
            break;
        case TOK_S:
            n += DUET_NOISE_DHLEN + (keyed ? DUET_NOISE_TAGLEN : 0);
            break;
        default: /* ee, es, se, ss, psk: MixKey */
            keyed = true;
            break;
        }
    }
    return n + (keyed ? DUET_NOISE_TAGLEN : 0);
}

/* MixKey(DH(...)) for ee, es, se, ss, from this role's point of view. */
static duet_err_t hs_mix_dh(duet_noise_hs_t *hs, uint8_t tok)
{
    bool init = hs->role == DUET_NOISE_INITIATOR;
    bool local_e, remote_e;
    switch (tok) {
    case TOK_EE:
        local_e = true;
        remote_e = true;
        break;
    case TOK_ES: /* the initiator's e with the responder's s */
        local_e = init;
        remote_e = !init;
        break;
    case TOK_SE: /* the initiator's s with the responder's e */
        local_e = !init;
        remote_e = init;
        break;
    default: /* TOK_SS */
        local_e = false;
        remote_e = false;
        break;
    }
    /* _init checked the keys against the pattern, so a missing one is a bug here. */
    if (!(local_e ? hs->has_e : hs->has_s) || !(remote_e ? hs->has_re : hs->has_rs)) {
        abort();
    }
    uint8_t dh[DUET_NOISE_DHLEN];
    duet_err_t err = DUET_OK;
    /* libsodium returns -1 when the result is all zeros: a low-order public key. */
    if (crypto_scalarmult(dh, local_e ? hs->e_priv : hs->s_priv,
                          remote_e ? hs->re : hs->rs) != 0) {
        err = DUET_EBADKEY;
    } else {
        mix_key(hs, dh, sizeof dh);
    }
    sodium_memzero(dh, sizeof dh);
    return err;
}

static void hs_mix_psk(duet_noise_hs_t *hs)
{
    if (hs->psks_used >= hs->npsks) {
        abort();
    }
    mix_key_and_hash(hs, hs->psks[hs->psks_used], DUET_NOISE_KEYLEN);
    hs->psks_used++;
}

/* The e token's MixHash, and with any PSK also MixKey (section 9.2). */
static void hs_mix_e(duet_noise_hs_t *hs, const uint8_t pub[DUET_NOISE_DHLEN])
{
    mix_hash(hs, pub, DUET_NOISE_DHLEN);
    if (hs->psk_mask != 0) {
        mix_key(hs, pub, DUET_NOISE_DHLEN);
    }
}

/* After the last message: Split()'s keys and the binding key, then wipe what is no longer
 * needed (ck, the cipher state, every private key and PSK). h and rs stay for the getters. */
static void hs_finish(duet_noise_hs_t *hs)
{
    uint8_t k1[DUET_NOISE_HASHLEN], k2[DUET_NOISE_HASHLEN], k3[DUET_NOISE_HASHLEN];
    hkdf(hs->ck, NULL, 0, k1, k2, k3);
    cs_set_key(&hs->c1, k1);
    cs_set_key(&hs->c2, k2);
    memcpy(hs->binding, k3, sizeof hs->binding);
    sodium_memzero(k1, sizeof k1);
    sodium_memzero(k2, sizeof k2);
    sodium_memzero(k3, sizeof k3);
    sodium_memzero(hs->ck, sizeof hs->ck);
    sodium_memzero(&hs->cs, sizeof hs->cs);
    sodium_memzero(hs->s_priv, sizeof hs->s_priv);
    sodium_memzero(hs->e_priv, sizeof hs->e_priv);
    sodium_memzero(hs->psks, sizeof hs->psks);
    hs->done = true;
}

static void hs_advance(duet_noise_hs_t *hs)
{
    hs->msg_index++;
    if (hs->msg_index == hs_pattern(hs)->nmsgs) {
        hs_finish(hs);
    }
}

/* Initialize() of section 5.3, up to the pre-messages. */
static void hs_symmetric_init(duet_noise_hs_t *hs, const char *name, const uint8_t *prologue,
                              size_t prologue_len)
{
    size_t len = strlen(name);
    if (len <= DUET_NOISE_HASHLEN) {
        memcpy(hs->h, name, len); /* the rest of h is still zero */
    } else {
        crypto_generichash(hs->h, DUET_NOISE_HASHLEN, (const uint8_t *)name, len, NULL, 0);
    }
    memcpy(hs->ck, hs->h, DUET_NOISE_HASHLEN);
    mix_hash(hs, prologue, prologue_len);
    /* Pre-messages: the initiator's keys first, then the responder's. */
    const noise_pattern_t *pat = hs_pattern(hs);
    bool init = hs->role == DUET_NOISE_INITIATOR;
    if (pat->pre_init_s) {
        mix_hash(hs, init ? hs->s_pub : hs->rs, DUET_NOISE_DHLEN);
    }
    if (pat->pre_resp_s) {
        mix_hash(hs, init ? hs->rs : hs->s_pub, DUET_NOISE_DHLEN);
    }
}

/* The keys of *keys match what the role needs. */
static duet_err_t check_keys(const duet_noise_info_t *info, const duet_noise_keys_t *keys)
{
    if ((keys->s != NULL) != info->needs_s || (keys->rs != NULL) != info->needs_rs ||
        keys->re != NULL || keys->npsks != info->npsks) {
        return DUET_EINVAL;
    }
    for (size_t i = 0; i < keys->npsks; i++) {
        if (keys->psks[i] == NULL) {
            return DUET_EINVAL;
        }
    }
    return DUET_OK;
}

duet_err_t duet_noise_hs_init(duet_noise_hs_t *hs, const char *protocol_name,
                              duet_noise_role_t role, const uint8_t *prologue,
                              size_t prologue_len, const duet_noise_keys_t *keys,
                              duet_rng_t rng)
{
    duet_err_t err;
    uint8_t pattern = 0, mask = 0;
    duet_noise_info_t info;
    if (hs == NULL || protocol_name == NULL || keys == NULL ||
        (prologue == NULL && prologue_len > 0) ||
        (role != DUET_NOISE_INITIATOR && role != DUET_NOISE_RESPONDER)) {
        abort();
    }
    sodium_memzero(hs, sizeof *hs);
    hs->role = role;
    if (!parse_name(protocol_name, &pattern, &mask)) {
        err = DUET_EUNSUPPORTED;
        goto cleanup;
    }
    fill_info(&noise_patterns[pattern], mask, role, &info);
    if ((err = check_keys(&info, keys)) != DUET_OK) {
        goto cleanup;
    }
    if (prologue_len > DUET_NOISE_MAX_PROLOGUE) {
        err = DUET_ETOOBIG;
        goto cleanup;
    }
    if (keys->e == NULL && rng.fill == NULL && role_sends(&noise_patterns[pattern], role, TOK_E)) {
        abort(); /* no way to make an ephemeral */
    }
    hs->pattern = pattern;
    hs->psk_mask = mask;
    hs->rng = rng;
    if (keys->s != NULL) {
        memcpy(hs->s_priv, keys->s, DUET_NOISE_DHLEN);
        if (crypto_scalarmult_base(hs->s_pub, hs->s_priv) != 0) {
            err = DUET_EBADKEY;
            goto cleanup;
        }
        hs->has_s = true;
    }
    if (keys->e != NULL) {
        memcpy(hs->e_priv, keys->e, DUET_NOISE_DHLEN);
        hs->fixed_e = true;
    }
    if (keys->rs != NULL) {
        memcpy(hs->rs, keys->rs, DUET_NOISE_DHLEN);
        hs->has_rs = true;
    }
    for (size_t i = 0; i < keys->npsks; i++) {
        memcpy(hs->psks[i], keys->psks[i], DUET_NOISE_KEYLEN);
    }
    hs->npsks = (uint8_t)keys->npsks;
    hs_symmetric_init(hs, protocol_name, prologue ? prologue : noise_empty, prologue_len);
    return DUET_OK;

cleanup:
    return hs_fail(hs, err);
}

void duet_noise_hs_dispose(duet_noise_hs_t *hs)
{
    if (hs != NULL) {
        sodium_memzero(hs, sizeof *hs);
    }
}

bool duet_noise_hs_should_write(const duet_noise_hs_t *hs)
{
    hs_check(hs);
    return hs->dead == DUET_OK && !hs->done && hs_our_turn(hs);
}

bool duet_noise_hs_done(const duet_noise_hs_t *hs)
{
    hs_check(hs);
    return hs->dead == DUET_OK && hs->done;
}

static duet_err_t hs_write_token(duet_noise_hs_t *hs, uint8_t tok, uint8_t *out, size_t *pos)
{
    size_t n;
    duet_err_t err;
    switch (tok) {
    case TOK_E:
        if (!hs->fixed_e) {
            duet_rng_fill(&hs->rng, hs->e_priv, DUET_NOISE_DHLEN);
        }
        if (crypto_scalarmult_base(hs->e_pub, hs->e_priv) != 0) {
            return DUET_EBADKEY;
        }
        hs->has_e = true;
        memcpy(out + *pos, hs->e_pub, DUET_NOISE_DHLEN);
        *pos += DUET_NOISE_DHLEN;
        hs_mix_e(hs, hs->e_pub);
        return DUET_OK;
    case TOK_S:
        err = encrypt_and_hash(hs, hs->s_pub, DUET_NOISE_DHLEN, out + *pos, &n);
        *pos += n;
        return err;
    case TOK_PSK:
        hs_mix_psk(hs);
        return DUET_OK;
    default:
        return hs_mix_dh(hs, tok);
    }
}

duet_err_t duet_noise_hs_write(duet_noise_hs_t *hs, const uint8_t *payload, size_t payload_len,
                               uint8_t *out, size_t cap, size_t *out_len)
{
    uint8_t toks[NOISE_MAX_TOKENS];
    size_t ntoks, total, pos = 0, n;
    duet_err_t err;
    hs_check(hs);
    if (out_len == NULL || out == NULL || (payload == NULL && payload_len > 0)) {
        abort();
    }
    *out_len = 0;
    if (hs->dead != DUET_OK) {
        return hs->dead;
    }
    if (hs->done || !hs_our_turn(hs)) {
        return DUET_ESTATE;
    }
    ntoks = hs_tokens(hs, toks);
    total = hs_overhead(hs, toks, ntoks);
    if (payload_len > DUET_NOISE_MAX_MSG - total || total + payload_len > cap) {
        return DUET_ETOOBIG;
    }
    total += payload_len;
    if (overlaps(payload, payload_len, out, total)) {
        abort();
    }
    for (size_t i = 0; i < ntoks; i++) {
        if ((err = hs_write_token(hs, toks[i], out, &pos)) != DUET_OK) {
            goto cleanup;
        }
    }
    if ((err = encrypt_and_hash(hs, payload, payload_len, out + pos, &n)) != DUET_OK) {
        goto cleanup;
    }
    hs_advance(hs);
    *out_len = pos + n;
    return DUET_OK;

cleanup:
    sodium_memzero(out, total);
    return hs_fail(hs, err);
}

static duet_err_t hs_read_token(duet_noise_hs_t *hs, uint8_t tok, const uint8_t *msg,
                                size_t *pos)
{
    size_t n;
    duet_err_t err;
    switch (tok) {
    case TOK_E:
        memcpy(hs->re, msg + *pos, DUET_NOISE_DHLEN);
        hs->has_re = true;
        *pos += DUET_NOISE_DHLEN;
        hs_mix_e(hs, hs->re);
        return DUET_OK;
    case TOK_S:
        n = DUET_NOISE_DHLEN + (hs->cs.has_key ? DUET_NOISE_TAGLEN : 0);
        if ((err = decrypt_and_hash(hs, msg + *pos, n, hs->rs)) != DUET_OK) {
            return err;
        }
        hs->has_rs = true;
        *pos += n;
        return DUET_OK;
    case TOK_PSK:
        hs_mix_psk(hs);
        return DUET_OK;
    default:
        return hs_mix_dh(hs, tok);
    }
}

duet_err_t duet_noise_hs_read(duet_noise_hs_t *hs, const uint8_t *msg, size_t msg_len,
                              uint8_t *payload, size_t cap, size_t *payload_len)
{
    uint8_t toks[NOISE_MAX_TOKENS], scratch[1];
    size_t ntoks, overhead, plen = 0, pos = 0;
    duet_err_t err;
    hs_check(hs);
    if (payload_len == NULL || (msg == NULL && msg_len > 0) || (payload == NULL && cap > 0)) {
        abort();
    }
    *payload_len = 0;
    if (hs->dead != DUET_OK) {
        return hs->dead;
    }
    if (hs->done || hs_our_turn(hs)) {
        return DUET_ESTATE;
    }
    ntoks = hs_tokens(hs, toks);
    overhead = hs_overhead(hs, toks, ntoks);
    if (msg_len > DUET_NOISE_MAX_MSG || msg_len < overhead) {
        err = DUET_EDECODE;
        goto cleanup;
    }
    plen = msg_len - overhead;
    if (plen > cap) {
        return DUET_ETOOBIG;
    }
    if (overlaps(msg, msg_len, payload, plen)) {
        abort();
    }
    for (size_t i = 0; i < ntoks; i++) {
        if ((err = hs_read_token(hs, toks[i], msg, &pos)) != DUET_OK) {
            goto cleanup;
        }
    }
    /* What is left after the keys is the payload, with its tag once a key exists. An empty
     * payload may come with payload == NULL: it decrypts into nothing at scratch. */
    if ((err = decrypt_and_hash(hs, msg + pos, msg_len - pos,
                                payload != NULL ? payload : scratch)) != DUET_OK) {
        goto cleanup;
    }
    hs_advance(hs);
    *payload_len = plen;
    return DUET_OK;

cleanup:
    if (plen > 0) {
        sodium_memzero(payload, plen);
    }
    return hs_fail(hs, err);
}

duet_err_t duet_noise_hs_split(duet_noise_hs_t *hs, duet_noise_cs_t *send,
                               duet_noise_cs_t *recv)
{
    hs_check(hs);
    if (send == NULL || recv == NULL) {
        abort();
    }
    memset(send, 0, sizeof *send);
    memset(recv, 0, sizeof *recv);
    if (hs->dead != DUET_OK) {
        return hs->dead;
    }
    if (!hs->done || hs->split_done) {
        return DUET_ESTATE;
    }
    bool init = hs->role == DUET_NOISE_INITIATOR;
    *(init ? send : recv) = hs->c1;
    /* One-way patterns: c2 is never used (section 5.3), so nobody gets it. */
    if (hs_pattern(hs)->nmsgs > 1) {
        *(init ? recv : send) = hs->c2;
    }
    sodium_memzero(&hs->c1, sizeof hs->c1);
    sodium_memzero(&hs->c2, sizeof hs->c2);
    hs->split_done = true;
    return DUET_OK;
}

duet_err_t duet_noise_hs_handshake_hash(const duet_noise_hs_t *hs,
                                        uint8_t out[static DUET_NOISE_HASHLEN])
{
    hs_check(hs);
    memset(out, 0, DUET_NOISE_HASHLEN);
    if (hs->dead != DUET_OK) {
        return hs->dead;
    }
    if (!hs->done) {
        return DUET_ESTATE;
    }
    memcpy(out, hs->h, DUET_NOISE_HASHLEN);
    return DUET_OK;
}

duet_err_t duet_noise_hs_remote_static(const duet_noise_hs_t *hs, uint8_t out[static 32])
{
    hs_check(hs);
    memset(out, 0, DUET_NOISE_DHLEN);
    if (hs->dead != DUET_OK) {
        return hs->dead;
    }
    if (!hs->has_rs) {
        return DUET_ENOENT;
    }
    memcpy(out, hs->rs, DUET_NOISE_DHLEN);
    return DUET_OK;
}

duet_err_t duet_noise_hs_binding_key(const duet_noise_hs_t *hs, uint8_t out[static 32])
{
    hs_check(hs);
    memset(out, 0, sizeof hs->binding);
    if (hs->dead != DUET_OK) {
        return hs->dead;
    }
    if (!hs->done) {
        return DUET_ESTATE;
    }
    memcpy(out, hs->binding, sizeof hs->binding);
    return DUET_OK;
}
