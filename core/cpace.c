/* see cpace.h */
#include "cpace.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

enum { ST_FRESH = 0, ST_STARTED = 1, ST_DONE = 2, ST_DEAD = 3 };

/* A LEB128 length of a size_t takes at most 10 bytes. */
#define LEB128_MAX 10u
/* Scalar draws before we call the rng broken (a zero scalar has probability 2^-252). */
#define SCALAR_TRIES 8

/* The largest strings this module builds itself, from the input limits. */
#define LV_MAX(n) (3u + (n)) /* every limit here is < 2^14: a 2-byte LEB128 suffices */
#define GENSTR_MAX                                                                           \
    (LV_MAX(sizeof DUET_CPACE_DSI - 1) + LV_MAX(DUET_CPACE_MAX_PRS) +                        \
     LV_MAX(DUET_CPACE_HASH_BLOCK) + LV_MAX(DUET_CPACE_MAX_CI) + LV_MAX(DUET_CPACE_MAX_SID))
#define HALF_MAX (LV_MAX(DUET_CPACE_SHAREBYTES) + LV_MAX(DUET_CPACE_MAX_AD))
#define TRANSCRIPT_MAX (2u + 2u * HALF_MAX)

_Static_assert(DUET_CPACE_MAX_PRS < 16384 && DUET_CPACE_MAX_CI < 16384 &&
                   DUET_CPACE_MAX_SID < 16384 && DUET_CPACE_MAX_AD < 16384,
               "LV_MAX assumes 2-byte LEB128 lengths");

/* ---- a bounded writer --------------------------------------------------------------- */

typedef struct {
    uint8_t *p;
    size_t cap, len;
    bool over; /* set once anything did not fit; then nothing more is written */
} wr_t;

static void wr_bytes(wr_t *w, const uint8_t *src, size_t n)
{
    if (w->over || n > w->cap - w->len) {
        w->over = true;
        return;
    }
    if (n > 0) {
        memcpy(w->p + w->len, src, n);
    }
    w->len += n;
}

static void wr_zeros(wr_t *w, size_t n)
{
    if (w->over || n > w->cap - w->len) {
        w->over = true;
        return;
    }
    memset(w->p + w->len, 0, n);
    w->len += n;
}

static size_t leb128(size_t n, uint8_t out[static LEB128_MAX])
{
    size_t i = 0;
    do {
        uint8_t b = (uint8_t)(n & 0x7f);
        n >>= 7;
        out[i++] = (uint8_t)(n != 0 ? (b | 0x80) : b);
    } while (n != 0);
    return i;
}

static void wr_lv(wr_t *w, const uint8_t *src, size_t n)
{
    uint8_t len[LEB128_MAX];
    wr_bytes(w, len, leb128(n, len));
    wr_bytes(w, src, n);
}

static duet_err_t wr_finish(const wr_t *w, size_t *out_len)
{
    if (w->over) {
        return DUET_ETOOBIG;
    }
    *out_len = w->len;
    return DUET_OK;
}

static void check_str(const uint8_t *p, size_t len)
{
    if (p == NULL && len != 0) {
        abort();
    }
}

/* The draft's lexiographically_larger(a, b). The inputs are public (shares and AD). */
static bool lex_larger(duet_cpace_str_t a, duet_cpace_str_t b)
{
    size_t m = a.len < b.len ? a.len : b.len;
    for (size_t i = 0; i < m; i++) {
        if (a.p[i] != b.p[i]) {
            return a.p[i] > b.p[i];
        }
    }
    return a.len > b.len;
}

/* ---- string utilities --------------------------------------------------------------- */

duet_err_t duet_cpace_prepend_len(duet_cpace_str_t data, uint8_t *out, size_t cap,
                                  size_t *out_len)
{
    return duet_cpace_lv_cat(&data, 1, out, cap, out_len);
}

duet_err_t duet_cpace_lv_cat(const duet_cpace_str_t *parts, size_t n, uint8_t *out, size_t cap,
                             size_t *out_len)
{
    *out_len = 0;
    wr_t w = {out, cap, 0, false};
    for (size_t i = 0; i < n; i++) {
        check_str(parts[i].p, parts[i].len);
        wr_lv(&w, parts[i].p, parts[i].len);
    }
    return wr_finish(&w, out_len);
}

static void wr_o_cat(wr_t *w, duet_cpace_str_t a, duet_cpace_str_t b)
{
    static const uint8_t oc[2] = {'o', 'c'};
    bool a_first = lex_larger(a, b);
    wr_bytes(w, oc, sizeof oc);
    wr_bytes(w, a_first ? a.p : b.p, a_first ? a.len : b.len);
    wr_bytes(w, a_first ? b.p : a.p, a_first ? b.len : a.len);
}

duet_err_t duet_cpace_o_cat(duet_cpace_str_t a, duet_cpace_str_t b, uint8_t *out, size_t cap,
                            size_t *out_len)
{
    *out_len = 0;
    check_str(a.p, a.len);
    check_str(b.p, b.len);
    wr_t w = {out, cap, 0, false};
    wr_o_cat(&w, a, b);
    return wr_finish(&w, out_len);
}

duet_err_t duet_cpace_transcript_ir(duet_cpace_str_t ya, duet_cpace_str_t ada, duet_cpace_str_t yb,
                                    duet_cpace_str_t adb, uint8_t *out, size_t cap,
                                    size_t *out_len)
{
    const duet_cpace_str_t parts[4] = {ya, ada, yb, adb};
    return duet_cpace_lv_cat(parts, 4, out, cap, out_len);
}

duet_err_t duet_cpace_transcript_oc(duet_cpace_str_t ya, duet_cpace_str_t ada, duet_cpace_str_t yb,
                                    duet_cpace_str_t adb, uint8_t *out, size_t cap,
                                    size_t *out_len)
{
    *out_len = 0;
    duet_err_t err;
    uint8_t half_a[HALF_MAX], half_b[HALF_MAX]; /* enough for a share and a bounded AD */
    size_t len_a, len_b;
    const duet_cpace_str_t pa[2] = {ya, ada}, pb[2] = {yb, adb};
    if ((err = duet_cpace_lv_cat(pa, 2, half_a, sizeof half_a, &len_a)) != DUET_OK ||
        (err = duet_cpace_lv_cat(pb, 2, half_b, sizeof half_b, &len_b)) != DUET_OK) {
        return err;
    }
    return duet_cpace_o_cat((duet_cpace_str_t){half_a, len_a},
                            (duet_cpace_str_t){half_b, len_b}, out, cap, out_len);
}

static bool inputs_fit(size_t prs_len, size_t ci_len, size_t sid_len)
{
    return prs_len <= DUET_CPACE_MAX_PRS && ci_len <= DUET_CPACE_MAX_CI &&
           sid_len <= DUET_CPACE_MAX_SID;
}

duet_err_t duet_cpace_generator_string(const uint8_t *prs, size_t prs_len, const uint8_t *ci,
                                       size_t ci_len, const uint8_t *sid, size_t sid_len,
                                       uint8_t *out, size_t cap, size_t *out_len)
{
    *out_len = 0;
    check_str(prs, prs_len);
    check_str(ci, ci_len);
    check_str(sid, sid_len);
    if (!inputs_fit(prs_len, ci_len, sid_len)) {
        return DUET_ETOOBIG;
    }
    static const uint8_t dsi[] = DUET_CPACE_DSI;
    uint8_t tmp[LEB128_MAX];
    /* len(prepend_len(x)) = len(LEB128(len(x))) + len(x) */
    size_t used = leb128(prs_len, tmp) + prs_len + leb128(sizeof dsi - 1, tmp) + (sizeof dsi - 1);
    size_t zpad = used + 1 < DUET_CPACE_HASH_BLOCK ? DUET_CPACE_HASH_BLOCK - used - 1 : 0;

    wr_t w = {out, cap, 0, false};
    wr_lv(&w, dsi, sizeof dsi - 1);
    wr_lv(&w, prs, prs_len);
    wr_bytes(&w, tmp, leb128(zpad, tmp));
    wr_zeros(&w, zpad);
    wr_lv(&w, ci, ci_len);
    wr_lv(&w, sid, sid_len);
    return wr_finish(&w, out_len);
}

/* ---- group operations --------------------------------------------------------------- */

duet_err_t duet_cpace_calculate_generator(const uint8_t *prs, size_t prs_len, const uint8_t *ci,
                                          size_t ci_len, const uint8_t *sid, size_t sid_len,
                                          uint8_t g[static DUET_CPACE_SHAREBYTES])
{
    uint8_t genstr[GENSTR_MAX];
    uint8_t hash[crypto_hash_sha512_BYTES];
    size_t len;
    memset(g, 0, DUET_CPACE_SHAREBYTES);
    duet_err_t err =
        duet_cpace_generator_string(prs, prs_len, ci, ci_len, sid, sid_len, genstr, sizeof genstr,
                                    &len);
    if (err != DUET_OK) {
        goto cleanup;
    }
    crypto_hash_sha512(hash, genstr, len);
    /* from_hash takes the 64-byte hash; it cannot fail for that input length. */
    if (crypto_core_ristretto255_from_hash(g, hash) != 0) {
        err = DUET_EINTERNAL;
    }
cleanup:
    sodium_memzero(genstr, sizeof genstr);
    sodium_memzero(hash, sizeof hash);
    return err;
}

duet_err_t duet_cpace_scalar_mult_vfy(const uint8_t y[static DUET_CPACE_SCALARBYTES],
                                      const uint8_t X[static DUET_CPACE_SHAREBYTES],
                                      uint8_t out[static DUET_CPACE_SHAREBYTES])
{
    /* libsodium decodes X (rejecting non-canonical encodings) and returns -1 when the result
     * is the identity, which also covers X = identity. */
    if (crypto_scalarmult_ristretto255(out, y, X) != 0) {
        sodium_memzero(out, DUET_CPACE_SHAREBYTES);
        return DUET_EBADKEY;
    }
    return DUET_OK;
}

/* ---- the exchange ------------------------------------------------------------------ */

static duet_err_t draw_scalar(duet_rng_t rng, uint8_t y[static DUET_CPACE_SCALARBYTES])
{
    uint8_t wide[crypto_core_ristretto255_NONREDUCEDSCALARBYTES];
    for (int i = 0; i < SCALAR_TRIES; i++) {
        duet_rng_fill(&rng, wide, sizeof wide);
        crypto_core_ristretto255_scalar_reduce(y, wide);
        sodium_memzero(wide, sizeof wide);
        if (!sodium_is_zero(y, DUET_CPACE_SCALARBYTES)) {
            return DUET_OK;
        }
    }
    return DUET_EINTERNAL;
}

duet_err_t duet_cpace_start(duet_cpace_t *ctx, duet_cpace_role_t role, const uint8_t *prs,
                            size_t prs_len, const uint8_t *ci, size_t ci_len, const uint8_t *sid,
                            size_t sid_len, const uint8_t *ad, size_t ad_len, duet_rng_t rng,
                            uint8_t share[static DUET_CPACE_SHAREBYTES])
{
    uint8_t g[DUET_CPACE_SHAREBYTES];
    duet_err_t err;
    sodium_memzero(ctx, sizeof *ctx);
    memset(share, 0, DUET_CPACE_SHAREBYTES);
    if (role != DUET_CPACE_INITIATOR && role != DUET_CPACE_RESPONDER &&
        role != DUET_CPACE_SYMMETRIC) {
        abort();
    }
    check_str(ad, ad_len);
    if (ad_len > DUET_CPACE_MAX_AD) {
        return DUET_ETOOBIG;
    }
    if ((err = duet_cpace_calculate_generator(prs, prs_len, ci, ci_len, sid, sid_len, g)) !=
            DUET_OK ||
        (err = draw_scalar(rng, ctx->y)) != DUET_OK) {
        goto cleanup;
    }
    /* g comes from a hash: it is the identity with negligible probability, and y != 0. */
    if (crypto_scalarmult_ristretto255(ctx->share, ctx->y, g) != 0) {
        err = DUET_EINTERNAL;
        goto cleanup;
    }
    memcpy(share, ctx->share, DUET_CPACE_SHAREBYTES);
    if (sid_len > 0) {
        memcpy(ctx->sid, sid, sid_len);
    }
    ctx->sid_len = sid_len;
    if (ad_len > 0) {
        memcpy(ctx->ad, ad, ad_len);
    }
    ctx->ad_len = ad_len;
    ctx->role = role;
    ctx->state = ST_STARTED;
cleanup:
    sodium_memzero(g, sizeof g);
    if (err != DUET_OK) {
        sodium_memzero(ctx, sizeof *ctx);
    }
    return err;
}

/* The transcript from this side's view: who is "a" depends on the role. */
static duet_err_t own_transcript(const duet_cpace_t *ctx, duet_cpace_str_t peer_share,
                                 duet_cpace_str_t peer_ad, uint8_t *out, size_t cap,
                                 size_t *out_len)
{
    duet_cpace_str_t own = {ctx->share, DUET_CPACE_SHAREBYTES};
    duet_cpace_str_t own_ad = {ctx->ad, ctx->ad_len};
    switch (ctx->role) {
    case DUET_CPACE_INITIATOR:
        return duet_cpace_transcript_ir(own, own_ad, peer_share, peer_ad, out, cap, out_len);
    case DUET_CPACE_RESPONDER:
        return duet_cpace_transcript_ir(peer_share, peer_ad, own, own_ad, out, cap, out_len);
    case DUET_CPACE_SYMMETRIC:
        return duet_cpace_transcript_oc(own, own_ad, peer_share, peer_ad, out, cap, out_len);
    }
    abort();
}

duet_err_t duet_cpace_finish(duet_cpace_t *ctx, const uint8_t peer_share[static DUET_CPACE_SHAREBYTES],
                             const uint8_t *peer_ad, size_t peer_ad_len,
                             uint8_t isk[static DUET_CPACE_ISKBYTES])
{
    static const uint8_t dsi_isk[] = DUET_CPACE_DSI_ISK;
    static const uint8_t sid_prefix[] = DUET_CPACE_SID_OUTPUT_PREFIX;
    uint8_t k[DUET_CPACE_SHAREBYTES];
    uint8_t transcript[TRANSCRIPT_MAX];
    uint8_t prefix[LV_MAX(sizeof dsi_isk - 1) + LV_MAX(DUET_CPACE_MAX_SID) +
                   LV_MAX(DUET_CPACE_SHAREBYTES)];
    size_t tlen = 0, plen = 0;
    crypto_hash_sha512_state st;
    duet_err_t err;

    memset(isk, 0, DUET_CPACE_ISKBYTES);
    check_str(peer_ad, peer_ad_len);
    if (ctx->state != ST_STARTED) {
        return DUET_ESTATE;
    }
    if (peer_ad_len > DUET_CPACE_MAX_AD) {
        err = DUET_ETOOBIG;
        goto cleanup;
    }
    if ((err = duet_cpace_scalar_mult_vfy(ctx->y, peer_share, k)) != DUET_OK) {
        goto cleanup;
    }
    const duet_cpace_str_t peer = {peer_share, DUET_CPACE_SHAREBYTES};
    const duet_cpace_str_t pad = {peer_ad, peer_ad_len};
    const duet_cpace_str_t isk_parts[3] = {
        {dsi_isk, sizeof dsi_isk - 1}, {ctx->sid, ctx->sid_len}, {k, sizeof k}};
    if ((err = own_transcript(ctx, peer, pad, transcript, sizeof transcript, &tlen)) != DUET_OK ||
        (err = duet_cpace_lv_cat(isk_parts, 3, prefix, sizeof prefix, &plen)) != DUET_OK) {
        goto cleanup;
    }
    /* ISK = H(lv_cat(DSI_ISK, sid, K) || transcript) */
    crypto_hash_sha512_init(&st);
    crypto_hash_sha512_update(&st, prefix, plen);
    crypto_hash_sha512_update(&st, transcript, tlen);
    crypto_hash_sha512_final(&st, isk);
    /* sid_output = H("CPaceSidOutput" || transcript) */
    crypto_hash_sha512_init(&st);
    crypto_hash_sha512_update(&st, sid_prefix, sizeof sid_prefix - 1);
    crypto_hash_sha512_update(&st, transcript, tlen);
    crypto_hash_sha512_final(&st, ctx->sid_output);
cleanup:
    sodium_memzero(ctx->y, sizeof ctx->y);
    sodium_memzero(k, sizeof k);
    sodium_memzero(prefix, sizeof prefix);
    sodium_memzero(&st, sizeof st);
    ctx->state = err == DUET_OK ? ST_DONE : ST_DEAD;
    if (err != DUET_OK) {
        sodium_memzero(isk, DUET_CPACE_ISKBYTES);
    }
    return err;
}

duet_err_t duet_cpace_sid_output(const duet_cpace_t *ctx,
                                 uint8_t out[static DUET_CPACE_SIDOUTBYTES])
{
    memset(out, 0, DUET_CPACE_SIDOUTBYTES);
    if (ctx->state != ST_DONE) {
        return DUET_ESTATE;
    }
    memcpy(out, ctx->sid_output, DUET_CPACE_SIDOUTBYTES);
    return DUET_OK;
}

void duet_cpace_dispose(duet_cpace_t *ctx)
{
    sodium_memzero(ctx, sizeof *ctx);
}
