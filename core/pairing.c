/* see pairing.h */
#include "pairing.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "hkdf.h"

enum {
    ST_FRESH = 0, /* not initialised (a zeroed struct) */
    ST_J_WAIT_P2,
    ST_J_WAIT_P4,
    ST_L_WAIT_P1,
    ST_L_WAIT_P3,
    ST_L_WAIT_P5,
    ST_PAIRED,
    ST_FAILED
};

/* Labels, byte-exact in docs/protocol/pairing.md. */
static const char CI_LABEL[] = "duet-pair-v1";
static const char PROLOGUE_LABEL[] = "duet pair v1";
static const char SIG_LABEL[] = "duet pair sig v1";
static const char INFO_ROOT[] = "duet ratchet root v1";
static const char INFO_HK_A[] = "duet ratchet hk a v1";
static const char INFO_NHK_B[] = "duet ratchet nhk b v1";
static const char INFO_PAIR_SECRET[] = "duet pair secret v1";

#define CI_BYTES (sizeof CI_LABEL - 1 + 2)
#define PROLOGUE_BYTES (sizeof PROLOGUE_LABEL - 1 + 2 + 2 * DUET_CPACE_SHAREBYTES)
#define SIGMSG_MAX                                                                           \
    (sizeof SIG_LABEL - 1 + DUET_NOISE_HASHLEN + 1 + DUET_PAIRING_RECORD_MAX -               \
     DUET_PAIRING_SIGNBYTES)
#define P4_MIN (1u + DUET_PAIRING_NOISE3_BYTES + DUET_PAIRING_RECORD_MIN + DUET_NOISE_TAGLEN)
#define P4_MAX (1u + DUET_PAIRING_NOISE3_BYTES + DUET_PAIRING_RECORD_MAX + DUET_NOISE_TAGLEN)
#define P5_MIN (1u + DUET_PAIRING_RECORD_MIN + DUET_NOISE_TAGLEN)
#define P5_MAX (1u + DUET_PAIRING_RECORD_MAX + DUET_NOISE_TAGLEN)

_Static_assert(P4_MAX <= DUET_PAIRING_MAX_MSG, "P4 fits a pairing message");
_Static_assert(sizeof(((duet_pairing_t *)0)->out) >= P4_MAX, "output buffer");
_Static_assert(PROLOGUE_BYTES <= DUET_NOISE_MAX_PROLOGUE, "prologue");
_Static_assert(DUET_NOISE_HASHLEN == 64, "the signature and HKDF salt take a 64-byte hash");

/* ---- names ----------------------------------------------------------------------- */

/* Length of the strict UTF-8 sequence at s[0..n) (RFC 3629), 0 if invalid; its code point
 * in *cp. */
static size_t utf8_seq(const uint8_t *s, size_t n, uint32_t *cp)
{
    uint8_t b = s[0];
    size_t len;
    uint32_t v, min;
    if (b < 0x80) {
        *cp = b;
        return 1;
    } else if (b >= 0xc2 && b <= 0xdf) {
        len = 2, v = b & 0x1fu, min = 0x80;
    } else if (b >= 0xe0 && b <= 0xef) {
        len = 3, v = b & 0x0fu, min = 0x800;
    } else if (b >= 0xf0 && b <= 0xf4) {
        len = 4, v = b & 0x07u, min = 0x10000;
    } else {
        return 0; /* continuation byte, C0/C1 overlong lead, or above U+10FFFF */
    }
    if (len > n) {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        v = v << 6 | (s[i] & 0x3fu);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) {
        return 0; /* overlong, out of range, surrogate */
    }
    *cp = v;
    return len;
}

duet_err_t duet_pairing_check_name(const char *name, size_t len)
{
    const uint8_t *s = (const uint8_t *)name;
    if (len == 0) {
        return DUET_EEMPTY;
    }
    if (len > DUET_PAIRING_MAX_NAME) {
        return DUET_ETOOBIG;
    }
    bool control = false;
    for (size_t i = 0; i < len;) {
        uint32_t cp = 0;
        size_t n = utf8_seq(s + i, len - i, &cp);
        if (n == 0) {
            return DUET_EUTF8;
        }
        control = control || cp < 0x20 || (cp >= 0x7f && cp <= 0x9f);
        i += n;
    }
    return control ? DUET_EINVAL : DUET_OK;
}

/* ---- records ---------------------------------------------------------------------- */

duet_err_t duet_pairing_record_decode(const uint8_t *buf, size_t len, duet_pairing_record_t *out)
{
    memset(out, 0, sizeof *out);
    if (len < DUET_PAIRING_RECORD_MIN) {
        return DUET_ETRUNCATED;
    }
    size_t name_len = buf[64];
    if (name_len == 0 || name_len > DUET_PAIRING_MAX_NAME) {
        return DUET_EDECODE;
    }
    size_t want = 65 + name_len + DUET_PAIRING_SIGNBYTES;
    if (len < want) {
        return DUET_ETRUNCATED;
    }
    if (len > want) {
        return DUET_ETRAILING;
    }
    duet_err_t err = duet_pairing_check_name((const char *)buf + 65, name_len);
    if (err != DUET_OK) {
        return err == DUET_EUTF8 ? DUET_EUTF8 : DUET_EDECODE;
    }
    memcpy(out->identity_pk, buf, 32);
    memcpy(out->ratchet_pub, buf + 32, 32);
    memcpy(out->name, buf + 65, name_len);
    out->name[name_len] = '\0';
    out->name_len = name_len;
    memcpy(out->sig, buf + 65 + name_len, DUET_PAIRING_SIGNBYTES);
    return DUET_OK;
}

/* The signed bytes: SIG_LABEL || handshake hash || role || pk || ratchet pub || len || name.
 * The record without its signature is exactly the part after the role byte. */
static size_t sig_message(uint8_t out[static SIGMSG_MAX], const uint8_t h[static 64],
                          duet_pairing_role_t role, const uint8_t *rec_body, size_t body_len)
{
    size_t n = 0;
    memcpy(out, SIG_LABEL, sizeof SIG_LABEL - 1);
    n += sizeof SIG_LABEL - 1;
    memcpy(out + n, h, 64);
    n += 64;
    out[n++] = (uint8_t)role;
    memcpy(out + n, rec_body, body_len);
    return n + body_len;
}

/* Our record, signed, into rec[]; returns its length. Wipes the signing key: it is used once. */
static size_t own_record(duet_pairing_t *p, const uint8_t h[static 64],
                         uint8_t rec[static DUET_PAIRING_RECORD_MAX])
{
    uint8_t msg[SIGMSG_MAX];
    size_t body = 65 + p->name_len;
    memcpy(rec, p->id_pk, 32);
    memcpy(rec + 32, p->ratchet_pub, 32);
    rec[64] = (uint8_t)p->name_len;
    memcpy(rec + 65, p->name, p->name_len);
    size_t mlen = sig_message(msg, h, p->role, rec, body);
    crypto_sign_detached(rec + body, NULL, msg, mlen, p->id_sk);
    sodium_memzero(p->id_sk, sizeof p->id_sk);
    return body + DUET_PAIRING_SIGNBYTES;
}

/* Decode and verify the partner's record (plaintext of a transport message). */
static duet_err_t partner_record(duet_pairing_t *p, const uint8_t h[static 64],
                                 const uint8_t *rec, size_t len)
{
    duet_pairing_record_t r;
    uint8_t msg[SIGMSG_MAX];
    duet_pairing_role_t peer =
        p->role == DUET_PAIRING_JOINER ? DUET_PAIRING_LISTENER : DUET_PAIRING_JOINER;
    duet_err_t err = duet_pairing_record_decode(rec, len, &r);
    if (err != DUET_OK) {
        return err;
    }
    size_t mlen = sig_message(msg, h, peer, rec, 65 + r.name_len);
    if (crypto_sign_verify_detached(r.sig, msg, mlen, r.identity_pk) != 0) {
        return DUET_EAUTH;
    }
    /* Our own identity coming back is not a partner (a reflected or cloned device). */
    if (sodium_memcmp(r.identity_pk, p->id_pk, 32) == 0) {
        return DUET_EPROTO;
    }
    memcpy(p->result.partner_identity_pk, r.identity_pk, 32);
    memcpy(p->result.partner_ratchet_pub, r.ratchet_pub, 32);
    memcpy(p->result.partner_name, r.name, r.name_len + 1);
    p->result.partner_name_len = r.name_len;
    return DUET_OK;
}

/* ---- engine plumbing --------------------------------------------------------------- */

static void wipe_secrets(duet_pairing_t *p)
{
    duet_cpace_dispose(&p->cpace);
    duet_noise_hs_dispose(&p->hs);
    duet_noise_cs_dispose(&p->send);
    duet_noise_cs_dispose(&p->recv);
    sodium_memzero(p->id_sk, sizeof p->id_sk);
    sodium_memzero(p->code, sizeof p->code);
    sodium_memzero(p->hh, sizeof p->hh);
    p->code_len = 0;
}

/* Fail for good: wipe every secret and any result; keep only the error (and output the
 * caller queues after this, FAIL). */
static duet_err_t fail(duet_pairing_t *p, duet_err_t err)
{
    wipe_secrets(p);
    sodium_memzero(&p->result, sizeof p->result);
    sodium_memzero(p->out, sizeof p->out);
    p->out_len = 0;
    p->out_ready = false;
    p->err = err;
    p->state = ST_FAILED;
    return err;
}

static void emit(duet_pairing_t *p, size_t len)
{
    p->out_len = len;
    p->out_ready = true;
}

static void put_u16(uint8_t *out, uint16_t v)
{
    out[0] = (uint8_t)(v >> 8);
    out[1] = (uint8_t)(v & 0xff);
}

/* CPace with PRS = the normalised code, CI = "duet-pair-v1" || nameplate, empty sid and AD. */
static duet_err_t cpace_start(duet_pairing_t *p, duet_cpace_role_t role,
                              uint8_t share[static DUET_CPACE_SHAREBYTES])
{
    uint8_t ci[CI_BYTES];
    memcpy(ci, CI_LABEL, sizeof CI_LABEL - 1);
    put_u16(ci + sizeof CI_LABEL - 1, p->nameplate);
    return duet_cpace_start(&p->cpace, role, (const uint8_t *)p->code, p->code_len, ci,
                            sizeof ci, NULL, 0, NULL, 0, p->rng, share);
}

/*
 * CPace's ISK keys the Noise handshake: PSK = ISK[0..32), prologue = "duet pair v1" ||
 * nameplate || Ya || Yb, fresh random static key. Finishes CPace with the peer's share.
 */
static duet_err_t noise_start(duet_pairing_t *p, duet_noise_role_t nrole,
                              const uint8_t peer_share[static DUET_CPACE_SHAREBYTES],
                              const uint8_t ya[static DUET_CPACE_SHAREBYTES],
                              const uint8_t yb[static DUET_CPACE_SHAREBYTES])
{
    uint8_t isk[DUET_CPACE_ISKBYTES], s[DUET_NOISE_DHLEN], prologue[PROLOGUE_BYTES];
    size_t n = 0;
    duet_err_t err = duet_cpace_finish(&p->cpace, peer_share, NULL, 0, isk);
    duet_cpace_dispose(&p->cpace);
    sodium_memzero(p->code, sizeof p->code); /* the password is spent */
    if (err != DUET_OK) {
        goto cleanup;
    }
    memcpy(prologue, PROLOGUE_LABEL, sizeof PROLOGUE_LABEL - 1);
    n += sizeof PROLOGUE_LABEL - 1;
    put_u16(prologue + n, p->nameplate);
    n += 2;
    memcpy(prologue + n, ya, DUET_CPACE_SHAREBYTES);
    n += DUET_CPACE_SHAREBYTES;
    memcpy(prologue + n, yb, DUET_CPACE_SHAREBYTES);
    n += DUET_CPACE_SHAREBYTES;
    duet_rng_fill(&p->rng, s, sizeof s);
    duet_noise_keys_t keys = {.s = s, .psks = {isk}, .npsks = 1};
    err = duet_noise_hs_init(&p->hs, DUET_PAIRING_NOISE_PROTOCOL, nrole, prologue, n, &keys,
                             p->rng);
cleanup:
    sodium_memzero(isk, sizeof isk);
    sodium_memzero(s, sizeof s);
    return err;
}

static duet_err_t derive(const uint8_t binding[static 32], const uint8_t h[static 64],
                         const char *info, uint8_t out[static 32])
{
    return duet_hkdf_sha256(out, 32, h, 64, binding, 32, (const uint8_t *)info, strlen(info));
}

/* After the last Noise message: the handshake hash (kept in p->hh for the records'
 * signatures), the transport keys and the secrets. */
static duet_err_t handshake_done(duet_pairing_t *p)
{
    uint8_t binding[32];
    const uint8_t *h = p->hh;
    duet_err_t err;
    if ((err = duet_noise_hs_handshake_hash(&p->hs, p->hh)) == DUET_OK &&
        (err = duet_noise_hs_binding_key(&p->hs, binding)) == DUET_OK &&
        (err = duet_noise_hs_split(&p->hs, &p->send, &p->recv)) == DUET_OK &&
        (err = derive(binding, h, INFO_ROOT, p->result.root)) == DUET_OK &&
        (err = derive(binding, h, INFO_HK_A, p->result.hk_a)) == DUET_OK &&
        (err = derive(binding, h, INFO_NHK_B, p->result.nhk_b)) == DUET_OK) {
        err = derive(binding, h, INFO_PAIR_SECRET, p->result.pair_secret);
    }
    sodium_memzero(binding, sizeof binding);
    duet_noise_hs_dispose(&p->hs);
    return err;
}

/* Encrypt our record as the first transport message after the type byte at out[at - 1]. */
static duet_err_t seal_record(duet_pairing_t *p, uint8_t type, size_t at, size_t *total)
{
    uint8_t rec[DUET_PAIRING_RECORD_MAX];
    size_t rlen = own_record(p, p->hh, rec), clen = 0;
    duet_err_t err = duet_noise_cs_encrypt(&p->send, &type, 1, rec, rlen, p->out + at,
                                           sizeof p->out - at, &clen);
    sodium_memzero(rec, sizeof rec);
    *total = at + clen;
    return err;
}

/* Decrypt and check the partner's record from a transport message. */
static duet_err_t open_record(duet_pairing_t *p, uint8_t type, const uint8_t *ct,
                              size_t ct_len)
{
    uint8_t rec[DUET_PAIRING_RECORD_MAX];
    size_t rlen = 0;
    duet_err_t err = duet_noise_cs_decrypt(&p->recv, &type, 1, ct, ct_len, rec, sizeof rec, &rlen);
    if (err == DUET_OK) {
        err = partner_record(p, p->hh, rec, rlen);
    }
    sodium_memzero(rec, sizeof rec);
    return err;
}

static void paired(duet_pairing_t *p)
{
    wipe_secrets(p);
    p->state = ST_PAIRED;
}

/* A fixed-size message: exact length. */
static duet_err_t exact(size_t len, size_t want)
{
    return len < want ? DUET_ETRUNCATED : len > want ? DUET_ETRAILING : DUET_OK;
}

/* ---- the steps --------------------------------------------------------------------- */

/* Joiner, at init: P1 = type || version || nameplate || Ya. */
static duet_err_t joiner_p1(duet_pairing_t *p)
{
    duet_err_t err = cpace_start(p, DUET_CPACE_INITIATOR, p->ya);
    if (err != DUET_OK) {
        return err;
    }
    p->out[0] = DUET_PAIRING_P1;
    p->out[1] = DUET_PAIRING_VERSION;
    put_u16(p->out + 2, p->nameplate);
    memcpy(p->out + 4, p->ya, DUET_CPACE_SHAREBYTES);
    emit(p, DUET_PAIRING_P1_BYTES);
    p->state = ST_J_WAIT_P2;
    return DUET_OK;
}

/* Listener, P1 in: check version and nameplate, answer P2 = type || Yb || Noise msg 1. */
static duet_err_t listener_p1(duet_pairing_t *p, const uint8_t *m, size_t len)
{
    uint8_t yb[DUET_CPACE_SHAREBYTES];
    size_t n1 = 0;
    duet_err_t err;
    if (len < 2) {
        return DUET_ETRUNCATED;
    }
    if (m[1] != DUET_PAIRING_VERSION) {
        return DUET_EVERSION; /* before the length: another version may have another size */
    }
    if ((err = exact(len, DUET_PAIRING_P1_BYTES)) != DUET_OK) {
        return err;
    }
    if (((uint16_t)(m[2] << 8 | m[3])) != p->nameplate) {
        return DUET_ENAMEPLATE;
    }
    const uint8_t *ya = m + 4;
    if ((err = cpace_start(p, DUET_CPACE_RESPONDER, yb)) != DUET_OK ||
        (err = noise_start(p, DUET_NOISE_INITIATOR, ya, ya, yb)) != DUET_OK ||
        (err = duet_noise_hs_write(&p->hs, NULL, 0, p->out + 1 + DUET_CPACE_SHAREBYTES,
                                   DUET_PAIRING_NOISE1_BYTES, &n1)) != DUET_OK) {
        return err;
    }
    p->out[0] = DUET_PAIRING_P2;
    memcpy(p->out + 1, yb, DUET_CPACE_SHAREBYTES);
    emit(p, 1 + DUET_CPACE_SHAREBYTES + n1);
    p->state = ST_L_WAIT_P3;
    return DUET_OK;
}

/* Joiner, P2 in: finish CPace, read Noise msg 1, answer P3 = type || Noise msg 2. */
static duet_err_t joiner_p2(duet_pairing_t *p, const uint8_t *m, size_t len)
{
    uint8_t payload[1];
    size_t plen = 0, n2 = 0;
    duet_err_t err;
    if ((err = exact(len, DUET_PAIRING_P2_BYTES)) != DUET_OK) {
        return err;
    }
    const uint8_t *yb = m + 1;
    if ((err = noise_start(p, DUET_NOISE_RESPONDER, yb, p->ya, yb)) != DUET_OK ||
        (err = duet_noise_hs_read(&p->hs, m + 1 + DUET_CPACE_SHAREBYTES,
                                  DUET_PAIRING_NOISE1_BYTES, payload, sizeof payload, &plen)) !=
            DUET_OK) {
        return err == DUET_ETOOBIG ? DUET_EPROTO : err;
    }
    if (plen != 0) {
        return DUET_EPROTO; /* our Noise payloads are empty */
    }
    if ((err = duet_noise_hs_write(&p->hs, NULL, 0, p->out + 1, DUET_PAIRING_NOISE2_BYTES,
                                   &n2)) != DUET_OK) {
        return err;
    }
    p->out[0] = DUET_PAIRING_P3;
    emit(p, 1 + n2);
    p->state = ST_J_WAIT_P4;
    return DUET_OK;
}

/* Listener, P3 in: read Noise msg 2, write msg 3, answer P4 = type || msg 3 || our record. */
static duet_err_t listener_p3(duet_pairing_t *p, const uint8_t *m, size_t len)
{
    uint8_t payload[1];
    size_t plen = 0, n3 = 0, total = 0;
    duet_err_t err;
    if ((err = exact(len, DUET_PAIRING_P3_BYTES)) != DUET_OK) {
        return err;
    }
    if ((err = duet_noise_hs_read(&p->hs, m + 1, DUET_PAIRING_NOISE2_BYTES, payload,
                                  sizeof payload, &plen)) != DUET_OK) {
        return err == DUET_ETOOBIG ? DUET_EPROTO : err;
    }
    if (plen != 0) {
        return DUET_EPROTO;
    }
    if ((err = duet_noise_hs_write(&p->hs, NULL, 0, p->out + 1, DUET_PAIRING_NOISE3_BYTES,
                                   &n3)) != DUET_OK ||
        (err = handshake_done(p)) != DUET_OK ||
        (err = seal_record(p, DUET_PAIRING_P4, 1 + n3, &total)) != DUET_OK) {
        return err;
    }
    p->out[0] = DUET_PAIRING_P4;
    emit(p, total);
    p->state = ST_L_WAIT_P5;
    return DUET_OK;
}

/* Joiner, P4 in: read Noise msg 3 (a wrong code fails here), the listener's record; answer
 * P5 = type || our record. Paired. */
static duet_err_t joiner_p4(duet_pairing_t *p, const uint8_t *m, size_t len)
{
    uint8_t payload[1];
    size_t plen = 0, total = 0;
    duet_err_t err;
    if (len < P4_MIN) {
        return DUET_ETRUNCATED;
    }
    if (len > P4_MAX) {
        return DUET_ETRAILING;
    }
    err = duet_noise_hs_read(&p->hs, m + 1, DUET_PAIRING_NOISE3_BYTES, payload, sizeof payload,
                             &plen);
    if (err == DUET_EAUTH) {
        return DUET_EWRONGCODE; /* the PSK differs: a wrong code (or a forged message) */
    }
    if (err != DUET_OK || plen != 0) {
        return err != DUET_OK ? (err == DUET_ETOOBIG ? DUET_EPROTO : err) : DUET_EPROTO;
    }
    const uint8_t *ct = m + 1 + DUET_PAIRING_NOISE3_BYTES;
    size_t ct_len = len - 1 - DUET_PAIRING_NOISE3_BYTES;
    if ((err = handshake_done(p)) != DUET_OK ||
        (err = open_record(p, DUET_PAIRING_P4, ct, ct_len)) != DUET_OK ||
        (err = seal_record(p, DUET_PAIRING_P5, 1, &total)) != DUET_OK) {
        return err;
    }
    p->out[0] = DUET_PAIRING_P5;
    emit(p, total);
    paired(p);
    return DUET_OK;
}

/* Listener, P5 in: the joiner's record, or FAIL (the joiner saw a wrong code). Paired. */
static duet_err_t listener_p5(duet_pairing_t *p, const uint8_t *m, size_t len)
{
    duet_err_t err;
    if (m[0] == DUET_PAIRING_FAIL) {
        return len == DUET_PAIRING_FAIL_BYTES ? DUET_EWRONGCODE : DUET_ETRAILING;
    }
    if (len < P5_MIN) {
        return DUET_ETRUNCATED;
    }
    if (len > P5_MAX) {
        return DUET_ETRAILING;
    }
    if ((err = open_record(p, DUET_PAIRING_P5, m + 1, len - 1)) != DUET_OK) {
        return err;
    }
    paired(p);
    return DUET_OK;
}

/* ---- public API ------------------------------------------------------------------- */

static uint8_t expected_type(uint8_t state)
{
    switch (state) {
    case ST_L_WAIT_P1:
        return DUET_PAIRING_P1;
    case ST_J_WAIT_P2:
        return DUET_PAIRING_P2;
    case ST_L_WAIT_P3:
        return DUET_PAIRING_P3;
    case ST_J_WAIT_P4:
        return DUET_PAIRING_P4;
    case ST_L_WAIT_P5:
        return DUET_PAIRING_P5;
    default:
        return 0;
    }
}

duet_err_t duet_pairing_init(duet_pairing_t *p, duet_pairing_role_t role, const duet_code_t *code,
                             const duet_pairing_self_t *self, duet_rng_t rng)
{
    sodium_memzero(p, sizeof *p);
    if ((role != DUET_PAIRING_LISTENER && role != DUET_PAIRING_JOINER) || code == NULL ||
        self == NULL || self->identity_pk == NULL || self->identity_sk == NULL ||
        self->ratchet_pub == NULL || (self->name == NULL && self->name_len != 0) ||
        code->text_len == 0 || code->text_len > DUET_CODE_MAX_LEN) {
        abort();
    }
    p->role = role;
    p->rng = rng;
    duet_err_t err = duet_pairing_check_name(self->name, self->name_len);
    if (err != DUET_OK) {
        return fail(p, err);
    }
    p->nameplate = code->nameplate;
    memcpy(p->code, code->text, code->text_len);
    p->code_len = code->text_len;
    memcpy(p->id_pk, self->identity_pk, DUET_PAIRING_KEYBYTES);
    memcpy(p->id_sk, self->identity_sk, DUET_PAIRING_SECRETKEYBYTES);
    memcpy(p->ratchet_pub, self->ratchet_pub, DUET_PAIRING_KEYBYTES);
    memcpy(p->name, self->name, self->name_len);
    p->name_len = self->name_len;
    p->result.role = role;
    if (role == DUET_PAIRING_LISTENER) {
        p->state = ST_L_WAIT_P1;
        return DUET_OK;
    }
    err = joiner_p1(p);
    return err == DUET_OK ? DUET_OK : fail(p, err);
}

bool duet_pairing_output(duet_pairing_t *p, const uint8_t **msg, size_t *len)
{
    *msg = NULL;
    *len = 0;
    if (!p->out_ready) {
        return false;
    }
    p->out_ready = false;
    *msg = p->out;
    *len = p->out_len;
    return true;
}

duet_err_t duet_pairing_receive(duet_pairing_t *p, const uint8_t *msg, size_t len)
{
    if (msg == NULL && len != 0) {
        abort();
    }
    if (p->state == ST_FAILED) {
        return p->err;
    }
    if (p->state == ST_FRESH) {
        abort(); /* not initialised: a caller bug */
    }
    if (p->state == ST_PAIRED || p->out_ready) {
        return DUET_ESTATE;
    }
    duet_err_t err;
    uint8_t want = expected_type(p->state);
    if (len > DUET_PAIRING_MAX_MSG) {
        err = DUET_ETOOBIG;
    } else if (len == 0) {
        err = DUET_ETRUNCATED;
    } else if (msg[0] != want && !(p->state == ST_L_WAIT_P5 && msg[0] == DUET_PAIRING_FAIL)) {
        err = DUET_EPROTO;
    } else {
        switch (p->state) {
        case ST_L_WAIT_P1:
            err = listener_p1(p, msg, len);
            break;
        case ST_J_WAIT_P2:
            err = joiner_p2(p, msg, len);
            break;
        case ST_L_WAIT_P3:
            err = listener_p3(p, msg, len);
            break;
        case ST_J_WAIT_P4:
            err = joiner_p4(p, msg, len);
            break;
        default:
            err = listener_p5(p, msg, len);
            break;
        }
    }
    if (err == DUET_OK) {
        return DUET_OK;
    }
    fail(p, err);
    if (err == DUET_EWRONGCODE && p->role == DUET_PAIRING_JOINER) {
        p->out[0] = DUET_PAIRING_FAIL; /* so the listener fails promptly too */
        emit(p, DUET_PAIRING_FAIL_BYTES);
    }
    return err;
}

duet_pairing_status_t duet_pairing_status(const duet_pairing_t *p)
{
    return p->state == ST_PAIRED   ? DUET_PAIRING_PAIRED
           : p->state == ST_FAILED ? DUET_PAIRING_FAILED
                                   : DUET_PAIRING_RUNNING;
}

duet_err_t duet_pairing_error(const duet_pairing_t *p)
{
    return p->state == ST_FAILED ? p->err : DUET_OK;
}

duet_err_t duet_pairing_result(const duet_pairing_t *p, duet_pairing_result_t *out)
{
    sodium_memzero(out, sizeof *out);
    if (p->state != ST_PAIRED) {
        return DUET_ESTATE;
    }
    *out = p->result;
    return DUET_OK;
}

void duet_pairing_dispose(duet_pairing_t *p)
{
    sodium_memzero(p, sizeof *p);
}
