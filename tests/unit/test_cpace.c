/*
 * CPace (ristretto255, SHA-512) against draft-irtf-cfrg-cpace-21's vectors, read at run time
 * from $DUET_VECTORS/cpace/: the string utilities, the generator (DSI, ZPAD, PRS, CI, sid),
 * the shares, K, ISK in both settings, sid_output, and scalar_mult_vfy's rejections. Then the
 * properties the pairing relies on: roles matter, every input matters, failures are sticky.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>

#include "cpace.h"
#include "testrng.h"

#define HEXMAX 512

/* ---- vector plumbing ----------------------------------------------------------------- */

static json_t *load_vectors(const char *file)
{
    const char *dir = getenv("DUET_VECTORS");
    assert_non_null(dir);
    char path[1024];
    int n = snprintf(path, sizeof path, "%s/cpace/%s", dir, file);
    assert_true(n > 0 && (size_t)n < sizeof path);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (root == NULL) {
        fail_msg("cannot load %s: %s", path, jerr.text);
    }
    return root;
}

static json_t *get(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL) {
        fail_msg("vector field missing: %s", key);
    }
    return v;
}

/* Decode the hex string obj[key] (either case) into out; returns its length. */
static size_t hex_field(json_t *obj, const char *key, uint8_t *out, size_t cap)
{
    const char *hex = json_string_value(get(obj, key));
    assert_non_null(hex);
    size_t len = 0;
    if (sodium_hex2bin(out, cap, hex, strlen(hex), NULL, &len, NULL) != 0) {
        fail_msg("bad hex in %s", key);
    }
    assert_int_equal(len * 2, strlen(hex));
    return len;
}

static void hex_field32(json_t *obj, const char *key, uint8_t out[32])
{
    assert_int_equal(hex_field(obj, key, out, 32), 32);
}

#define assert_bytes_equal(a, b, n) assert_memory_equal((a), (b), (n))

/* An rng that returns a given scalar y as the 64-byte wide value y || 0^32, which
 * crypto_core_ristretto255_scalar_reduce maps back to y (y < the group order): the vectors'
 * scalars go through the real code path, with no test-only API. */
typedef struct {
    uint8_t wide[64];
} fixed_rng_t;

static void fixed_fill(void *ctx, uint8_t *out, size_t n)
{
    fixed_rng_t *f = ctx;
    assert_int_equal(n, sizeof f->wide);
    memcpy(out, f->wide, n);
}

static duet_rng_t fixed_rng(fixed_rng_t *f, const uint8_t y[32])
{
    memset(f, 0, sizeof *f);
    memcpy(f->wide, y, 32);
    return (duet_rng_t){fixed_fill, f};
}

static void zero_fill(void *ctx, uint8_t *out, size_t n)
{
    (void)ctx;
    memset(out, 0, n);
}

/* ---- the string utilities, driven by the vector keys ---------------------------------- */

/* Parse one argument expression of the vector keys: b'ascii' or bytes(range(N)). */
static size_t parse_arg(const char *s, size_t len, uint8_t *out, size_t cap)
{
    if (len >= 3 && s[0] == 'b' && s[1] == '\'' && s[len - 1] == '\'') {
        size_t n = len - 3;
        assert_true(n <= cap);
        for (size_t i = 0; i < n; i++) {
            assert_true(s[2 + i] != '\\'); /* no escapes in these vectors */
            out[i] = (uint8_t)s[2 + i];
        }
        return n;
    }
    unsigned long count;
    int end = -1;
    char buf[64];
    assert_true(len < sizeof buf);
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (sscanf(buf, "bytes(range(%lu))%n", &count, &end) == 1 && end == (int)len && count <= cap) {
        for (size_t i = 0; i < count; i++) {
            out[i] = (uint8_t)i;
        }
        return count;
    }
    fail_msg("cannot parse vector argument %s", buf);
    return 0;
}

#define MAXARGS 4

/* Split "fn(a,b,...)" into fn and its arguments (commas inside quotes or parentheses are not
 * separators). Returns the number of arguments, or -1 if the key is not a call. */
static int parse_call(const char *key, char *fn, size_t fncap, uint8_t args[MAXARGS][HEXMAX],
                      size_t lens[MAXARGS])
{
    const char *open = strchr(key, '(');
    size_t klen = strlen(key);
    if (open == NULL || key[klen - 1] != ')' || key[0] == 'b') {
        return -1;
    }
    size_t flen = (size_t)(open - key);
    assert_true(flen < fncap);
    memcpy(fn, key, flen);
    fn[flen] = '\0';
    int n = 0, depth = 0;
    bool quoted = false;
    const char *start = open + 1, *end = key + klen - 1;
    for (const char *p = start; p <= end; p++) {
        if (p < end && *p == '\'') {
            quoted = !quoted;
        } else if (p < end && !quoted && *p == '(') {
            depth++;
        } else if (p < end && !quoted && *p == ')') {
            depth--;
        } else if (p == end || (!quoted && depth == 0 && *p == ',')) {
            assert_true(n < MAXARGS);
            lens[n] = parse_arg(start, (size_t)(p - start), args[n], HEXMAX);
            n++;
            start = p + 1;
        }
    }
    return n;
}

static void check_util(const char *fn, int nargs, uint8_t args[MAXARGS][HEXMAX],
                       const size_t lens[MAXARGS], const uint8_t *want, size_t want_len)
{
    uint8_t got[HEXMAX * 2];
    size_t got_len = 0;
    duet_cpace_str_t a[MAXARGS];
    for (int i = 0; i < nargs; i++) {
        a[i] = (duet_cpace_str_t){args[i], lens[i]};
    }
    if (strcmp(fn, "prepend_len") == 0) {
        assert_int_equal(nargs, 1);
        assert_int_equal(duet_cpace_prepend_len(a[0], got, sizeof got, &got_len), DUET_OK);
    } else if (strcmp(fn, "lv_cat") == 0) {
        assert_int_equal(duet_cpace_lv_cat(a, (size_t)nargs, got, sizeof got, &got_len), DUET_OK);
    } else if (strcmp(fn, "o_cat") == 0) {
        assert_int_equal(nargs, 2);
        assert_int_equal(duet_cpace_o_cat(a[0], a[1], got, sizeof got, &got_len), DUET_OK);
    } else if (strcmp(fn, "transcript_ir") == 0) {
        assert_int_equal(nargs, 4);
        assert_int_equal(duet_cpace_transcript_ir(a[0], a[1], a[2], a[3], got, sizeof got, &got_len),
                         DUET_OK);
    } else if (strcmp(fn, "transcript_oc") == 0) {
        assert_int_equal(nargs, 4);
        assert_int_equal(duet_cpace_transcript_oc(a[0], a[1], a[2], a[3], got, sizeof got, &got_len),
                         DUET_OK);
    } else {
        fail_msg("unknown utility %s", fn);
    }
    assert_int_equal(got_len, want_len);
    assert_bytes_equal(got, want, want_len);
}

static void test_string_utils(void **state)
{
    (void)state;
    json_t *root = load_vectors("cpace-ristretto255-sha512.json");
    json_t *utils = get(root, "string_utils");
    static const char *const groups[] = {"prepend_len", "lv_cat", "o_cat", "transcript_ir",
                                         "transcript_oc"};
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
        json_t *grp = get(utils, groups[g]);
        const char *key;
        json_t *val;
        int checked = 0;
        json_object_foreach(grp, key, val)
        {
            static uint8_t args[MAXARGS][HEXMAX];
            size_t lens[MAXARGS];
            char fn[32];
            int n = parse_call(key, fn, sizeof fn, args, lens);
            if (n < 0) {
                /* b'1234' -> its hex: the literal syntax our parser reads must agree. */
                uint8_t lit[HEXMAX], hex[HEXMAX];
                size_t llen = parse_arg(key, strlen(key), lit, sizeof lit);
                size_t hlen = hex_field(grp, key, hex, sizeof hex);
                assert_int_equal(llen, hlen);
                assert_bytes_equal(lit, hex, hlen);
                continue;
            }
            assert_string_equal(fn, groups[g]);
            uint8_t want[HEXMAX];
            size_t want_len = hex_field(grp, key, want, sizeof want);
            check_util(fn, n, args, lens, want, want_len);
            checked++;
        }
        if (checked < 1) {
            fail_msg("no %s vectors", groups[g]);
        }
    }
    json_decref(root);
}

static void test_lv_cat_limits(void **state)
{
    (void)state;
    uint8_t out[8];
    size_t len = 99;
    const uint8_t data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    /* 1 length byte + 8 data bytes do not fit in 8: refused, not truncated. */
    assert_int_equal(duet_cpace_prepend_len((duet_cpace_str_t){data, 8}, out, sizeof out, &len),
                     DUET_ETOOBIG);
    assert_int_equal(len, 0);
    assert_int_equal(duet_cpace_prepend_len((duet_cpace_str_t){data, 7}, out, sizeof out, &len),
                     DUET_OK);
    assert_int_equal(len, 8);
    /* A 300-byte string takes a two-byte LEB128 length: 0xac 0x02. */
    static uint8_t big[300], bigout[310];
    assert_int_equal(duet_cpace_prepend_len((duet_cpace_str_t){big, 300}, bigout, sizeof bigout, &len),
                     DUET_OK);
    assert_int_equal(len, 302);
    assert_int_equal(bigout[0], 0xac);
    assert_int_equal(bigout[1], 0x02);
}

/* The draft's lexiographically_larger: on an equal prefix the longer string is the larger,
 * so it goes first in o_cat (the vectors only have strings that differ early). */
static void test_o_cat_prefix_order(void **state)
{
    (void)state;
    const uint8_t ab[2] = {'A', 'B'}, b[1] = {'B'};
    uint8_t out[8];
    size_t len;
    assert_int_equal(duet_cpace_o_cat((duet_cpace_str_t){ab, 1}, (duet_cpace_str_t){ab, 2}, out,
                                      sizeof out, &len),
                     DUET_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(out, "ocABA", 5);
    assert_int_equal(duet_cpace_o_cat((duet_cpace_str_t){ab, 2}, (duet_cpace_str_t){ab, 1}, out,
                                      sizeof out, &len),
                     DUET_OK);
    assert_memory_equal(out, "ocABA", 5);
    assert_int_equal(duet_cpace_o_cat((duet_cpace_str_t){ab, 2}, (duet_cpace_str_t){b, 1}, out,
                                      sizeof out, &len),
                     DUET_OK);
    assert_memory_equal(out, "ocBAB", 5);
    /* Equal strings: either order is the same bytes. */
    assert_int_equal(duet_cpace_o_cat((duet_cpace_str_t){b, 1}, (duet_cpace_str_t){b, 1}, out,
                                      sizeof out, &len),
                     DUET_OK);
    assert_int_equal(len, 4);
    assert_memory_equal(out, "ocBB", 4);
}

/* ---- the generator ----------------------------------------------------------------- */

static void test_generator(void **state)
{
    (void)state;
    json_t *root = load_vectors("cpace-ristretto255-sha512.json");
    json_t *cg = get(root, "calculate_generator");
    json_t *iv = get(root, "intermediate_values");
    json_t *params = get(root, "parameters");
    uint8_t prs[HEXMAX], ci[HEXMAX], sid[HEXMAX], dsi[HEXMAX];
    size_t prs_len = hex_field(cg, "PRS", prs, sizeof prs);
    size_t ci_len = hex_field(cg, "CI", ci, sizeof ci);
    size_t sid_len = hex_field(cg, "sid", sid, sizeof sid);

    /* The DSI label: our constant is the draft's, in both spellings the file gives. */
    size_t dsi_len = hex_field(cg, "DSI", dsi, sizeof dsi);
    assert_int_equal(dsi_len, strlen(DUET_CPACE_DSI));
    assert_bytes_equal(dsi, DUET_CPACE_DSI, dsi_len);
    assert_string_equal(json_string_value(get(params, "DSI")), DUET_CPACE_DSI);
    assert_string_equal(json_string_value(get(params, "DSI_ISK")), DUET_CPACE_DSI_ISK);
    assert_string_equal(json_string_value(get(params, "sid_output_prefix")),
                        DUET_CPACE_SID_OUTPUT_PREFIX);
    assert_int_equal(json_integer_value(get(params, "H.s_in_bytes")), DUET_CPACE_HASH_BLOCK);

    /* generator_string: pins DSI, the ZPAD length and the field order. */
    uint8_t want[HEXMAX], got[HEXMAX];
    size_t want_len = hex_field(cg, "generator_string(G.DSI,PRS,CI,sid,H.s_in_bytes)", want,
                                sizeof want);
    size_t got_len;
    assert_int_equal(duet_cpace_generator_string(prs, prs_len, ci, ci_len, sid, sid_len, got,
                                                 sizeof got, &got_len),
                     DUET_OK);
    assert_int_equal(got_len, want_len);
    assert_bytes_equal(got, want, want_len);
    uint8_t iv_gs[HEXMAX];
    assert_int_equal(hex_field(iv, "generator_string(G.DSI,PRS,CI,sid,H.s_in_bytes)", iv_gs,
                               sizeof iv_gs),
                     want_len);
    assert_bytes_equal(iv_gs, got, want_len);

    /* ZPAD: its length byte sits after lv(DSI) and lv(PRS); DSI, PRS and ZPAD fill one
     * SHA-512 block. */
    json_int_t zpad = json_integer_value(get(cg, "ZPAD length"));
    size_t zpad_at = 1 + dsi_len + 1 + prs_len;
    assert_int_equal(got[zpad_at], zpad);
    assert_int_equal(zpad_at + 1 + (size_t)zpad, DUET_CPACE_HASH_BLOCK);
    for (json_int_t i = 0; i < zpad; i++) {
        assert_int_equal(got[zpad_at + 1 + (size_t)i], 0);
    }

    uint8_t hash[64], want_hash[64];
    crypto_hash_sha512(hash, got, got_len);
    assert_int_equal(hex_field(cg, "hash result", want_hash, sizeof want_hash), 64);
    assert_bytes_equal(hash, want_hash, 64);

    uint8_t g[32], want_g[32];
    hex_field32(cg, "encoded generator g", want_g);
    assert_int_equal(duet_cpace_calculate_generator(prs, prs_len, ci, ci_len, sid, sid_len, g),
                     DUET_OK);
    assert_bytes_equal(g, want_g, 32);

    /* Over the limits: refused. */
    static uint8_t big[DUET_CPACE_MAX_PRS + 1];
    assert_int_equal(duet_cpace_calculate_generator(big, sizeof big, ci, ci_len, sid, sid_len, g),
                     DUET_ETOOBIG);
    assert_true(sodium_is_zero(g, 32));
    json_decref(root);
}

/* ---- the protocol run -------------------------------------------------------------- */

typedef struct {
    uint8_t prs[HEXMAX], ci[HEXMAX], sid[HEXMAX], ada[HEXMAX], adb[HEXMAX];
    size_t prs_len, ci_len, sid_len, ada_len, adb_len;
    uint8_t g[32], ya[32], yb[32], Ya[32], Yb[32], K[32];
    uint8_t isk_ir[64], isk_sy[64], sid_ir[64], sid_oc[64];
} run_t;

static void load_run(json_t *p, run_t *r)
{
    r->prs_len = hex_field(p, "PRS", r->prs, sizeof r->prs);
    r->ci_len = hex_field(p, "CI", r->ci, sizeof r->ci);
    r->sid_len = hex_field(p, "sid", r->sid, sizeof r->sid);
    r->ada_len = hex_field(p, "ADa", r->ada, sizeof r->ada);
    r->adb_len = hex_field(p, "ADb", r->adb, sizeof r->adb);
    hex_field32(p, "g", r->g);
    hex_field32(p, "ya", r->ya);
    hex_field32(p, "yb", r->yb);
    hex_field32(p, "Ya", r->Ya);
    hex_field32(p, "Yb", r->Yb);
    hex_field32(p, "K", r->K);
    assert_int_equal(hex_field(p, "ISK_IR", r->isk_ir, 64), 64);
    assert_int_equal(hex_field(p, "ISK_SY", r->isk_sy, 64), 64);
    assert_int_equal(hex_field(p, "sid_output_ir", r->sid_ir, 64), 64);
    assert_int_equal(hex_field(p, "sid_output_oc", r->sid_oc, 64), 64);
}

static void start_with(duet_cpace_t *ctx, const run_t *r, duet_cpace_role_t role,
                       const uint8_t y[32], const uint8_t *ad, size_t ad_len, uint8_t share[32])
{
    fixed_rng_t f;
    assert_int_equal(duet_cpace_start(ctx, role, r->prs, r->prs_len, r->ci, r->ci_len, r->sid,
                                      r->sid_len, ad, ad_len, fixed_rng(&f, y), share),
                     DUET_OK);
}

static void run_protocol(json_t *p)
{
    run_t r;
    load_run(p, &r);
    uint8_t g[32], share_a[32], share_b[32], isk_a[64], isk_b[64], so_a[64], so_b[64], k[32];
    assert_int_equal(duet_cpace_calculate_generator(r.prs, r.prs_len, r.ci, r.ci_len, r.sid,
                                                    r.sid_len, g),
                     DUET_OK);
    assert_bytes_equal(g, r.g, 32);

    /* K from both sides. */
    assert_int_equal(duet_cpace_scalar_mult_vfy(r.ya, r.Yb, k), DUET_OK);
    assert_bytes_equal(k, r.K, 32);
    assert_int_equal(duet_cpace_scalar_mult_vfy(r.yb, r.Ya, k), DUET_OK);
    assert_bytes_equal(k, r.K, 32);

    /* Initiator-responder. */
    duet_cpace_t a, b;
    start_with(&a, &r, DUET_CPACE_INITIATOR, r.ya, r.ada, r.ada_len, share_a);
    start_with(&b, &r, DUET_CPACE_RESPONDER, r.yb, r.adb, r.adb_len, share_b);
    assert_bytes_equal(share_a, r.Ya, 32);
    assert_bytes_equal(share_b, r.Yb, 32);
    assert_int_equal(duet_cpace_finish(&a, share_b, r.adb, r.adb_len, isk_a), DUET_OK);
    assert_int_equal(duet_cpace_finish(&b, share_a, r.ada, r.ada_len, isk_b), DUET_OK);
    assert_bytes_equal(isk_a, r.isk_ir, 64);
    assert_bytes_equal(isk_b, r.isk_ir, 64);
    assert_int_equal(duet_cpace_sid_output(&a, so_a), DUET_OK);
    assert_int_equal(duet_cpace_sid_output(&b, so_b), DUET_OK);
    assert_bytes_equal(so_a, r.sid_ir, 64);
    assert_bytes_equal(so_b, r.sid_ir, 64);
    /* The scalars are gone. */
    assert_true(sodium_is_zero(a.y, sizeof a.y));
    assert_true(sodium_is_zero(b.y, sizeof b.y));
    duet_cpace_dispose(&a);
    duet_cpace_dispose(&b);

    /* Symmetric: the same ISK_SY whichever side computes it. */
    start_with(&a, &r, DUET_CPACE_SYMMETRIC, r.ya, r.ada, r.ada_len, share_a);
    start_with(&b, &r, DUET_CPACE_SYMMETRIC, r.yb, r.adb, r.adb_len, share_b);
    assert_int_equal(duet_cpace_finish(&a, share_b, r.adb, r.adb_len, isk_a), DUET_OK);
    assert_int_equal(duet_cpace_finish(&b, share_a, r.ada, r.ada_len, isk_b), DUET_OK);
    assert_bytes_equal(isk_a, r.isk_sy, 64);
    assert_bytes_equal(isk_b, r.isk_sy, 64);
    assert_int_equal(duet_cpace_sid_output(&a, so_a), DUET_OK);
    assert_int_equal(duet_cpace_sid_output(&b, so_b), DUET_OK);
    assert_bytes_equal(so_a, r.sid_oc, 64);
    assert_bytes_equal(so_b, r.sid_oc, 64);
    duet_cpace_dispose(&a);
    duet_cpace_dispose(&b);
}

static void test_protocol_appendix(void **state)
{
    (void)state;
    json_t *root = load_vectors("cpace-ristretto255-sha512.json");
    run_protocol(get(root, "protocol"));
    json_decref(root);
}

static void test_protocol_testvectors_json(void **state)
{
    (void)state;
    json_t *root = load_vectors("testvectors.json");
    run_protocol(get(root, "G_Coffee25519"));
    json_decref(root);
}

/* The hash inputs of ISK and the transcripts, step by step (intermediate_values). */
static void test_intermediate_values(void **state)
{
    (void)state;
    json_t *root = load_vectors("cpace-ristretto255-sha512.json");
    json_t *iv = get(root, "intermediate_values");
    run_t r;
    load_run(get(root, "protocol"), &r);
    const duet_cpace_str_t Ya = {r.Ya, 32}, Yb = {r.Yb, 32};
    const duet_cpace_str_t ADa = {r.ada, r.ada_len}, ADb = {r.adb, r.adb_len};
    uint8_t t_ir[HEXMAX], t_oc[HEXMAX], want[HEXMAX], pre[HEXMAX];
    size_t ir_len, oc_len, pre_len, want_len;

    assert_int_equal(duet_cpace_transcript_ir(Ya, ADa, Yb, ADb, t_ir, sizeof t_ir, &ir_len),
                     DUET_OK);
    want_len = hex_field(iv, "transcript_ir(Ya,ADa,Yb,ADb)", want, sizeof want);
    assert_int_equal(ir_len, want_len);
    assert_bytes_equal(t_ir, want, want_len);
    assert_int_equal(duet_cpace_transcript_oc(Ya, ADa, Yb, ADb, t_oc, sizeof t_oc, &oc_len),
                     DUET_OK);
    want_len = hex_field(iv, "transcript_oc(Ya,ADa,Yb,ADb)", want, sizeof want);
    assert_int_equal(oc_len, want_len);
    assert_bytes_equal(t_oc, want, want_len);
    /* transcript_oc is order-independent, transcript_ir is not. */
    uint8_t swapped[HEXMAX];
    size_t sw_len;
    assert_int_equal(duet_cpace_transcript_oc(Yb, ADb, Ya, ADa, swapped, sizeof swapped, &sw_len),
                     DUET_OK);
    assert_int_equal(sw_len, oc_len);
    assert_bytes_equal(swapped, t_oc, oc_len);
    assert_int_equal(duet_cpace_transcript_ir(Yb, ADb, Ya, ADa, swapped, sizeof swapped, &sw_len),
                     DUET_OK);
    assert_memory_not_equal(swapped, t_ir, ir_len);

    want_len = hex_field(iv, "DSI = G.DSI_ISK, b'CPaceRistretto255_ISK' [initiator/responder]",
                         want, sizeof want);
    assert_int_equal(want_len, strlen(DUET_CPACE_DSI_ISK));
    assert_bytes_equal(want, DUET_CPACE_DSI_ISK, want_len);

    const duet_cpace_str_t parts[3] = {
        {(const uint8_t *)DUET_CPACE_DSI_ISK, strlen(DUET_CPACE_DSI_ISK)},
        {r.sid, r.sid_len},
        {r.K, 32}};
    assert_int_equal(duet_cpace_lv_cat(parts, 3, pre, sizeof pre, &pre_len), DUET_OK);
    static const struct {
        const char *input, *result;
        bool ir;
    } isks[] = {
        {"lv_cat(DSI,sid,K)||transcript_ir(Ya,ADa,Yb,ADb)", "ISK result [initiator/responder]",
         true},
        {"lv_cat(DSI,sid,K)||transcript_oc(Ya,ADa,Yb,ADb)", "ISK result [parallel]", false},
    };
    for (size_t i = 0; i < 2; i++) {
        uint8_t input[HEXMAX * 2];
        const uint8_t *t = isks[i].ir ? t_ir : t_oc;
        size_t tlen = isks[i].ir ? ir_len : oc_len;
        memcpy(input, pre, pre_len);
        memcpy(input + pre_len, t, tlen);
        want_len = hex_field(iv, isks[i].input, want, sizeof want);
        assert_int_equal(want_len, pre_len + tlen);
        assert_bytes_equal(input, want, want_len);
        uint8_t isk[64], want_isk[64];
        crypto_hash_sha512(isk, input, want_len);
        assert_int_equal(hex_field(iv, isks[i].result, want_isk, 64), 64);
        assert_bytes_equal(isk, want_isk, 64);
    }
    json_decref(root);
}

static void check_points(json_t *pts)
{
    json_t *valid = get(pts, "Valid");
    uint8_t s[32], X[32], want[32], out[32], bad[32];
    hex_field32(valid, "s", s);
    hex_field32(valid, "X", X);
    hex_field32(valid, "G.scalar_mult_vfy(s,X)", want);
    assert_int_equal(duet_cpace_scalar_mult_vfy(s, X, out), DUET_OK);
    assert_bytes_equal(out, want, 32);
    hex_field32(valid, "G.scalar_mult(s,decode(X))", want);
    assert_bytes_equal(out, want, 32);
    /* Y1: a non-canonical encoding; Y2: the identity. Both rejected, output = G.I. */
    static const char *const invalid[] = {"Invalid Y1", "Invalid Y2"};
    for (size_t i = 0; i < 2; i++) {
        hex_field32(pts, invalid[i], bad);
        memset(out, 0xaa, sizeof out);
        assert_int_equal(duet_cpace_scalar_mult_vfy(s, bad, out), DUET_EBADKEY);
        assert_true(sodium_is_zero(out, sizeof out));
    }
}

static void test_scalar_mult_vfy(void **state)
{
    (void)state;
    json_t *root = load_vectors("cpace-ristretto255-sha512.json");
    check_points(get(root, "scalar_mult_vfy"));
    json_decref(root);
    root = load_vectors("testvectors.json");
    check_points(get(root, "G_Coffee25519_points"));
    json_decref(root);
}

/* A protocol run that receives an invalid share aborts: EBADKEY, no ISK, dead context. */
static void test_invalid_peer_share_aborts(void **state)
{
    (void)state;
    json_t *root = load_vectors("cpace-ristretto255-sha512.json");
    json_t *pts = get(root, "scalar_mult_vfy");
    run_t r;
    load_run(get(root, "protocol"), &r);
    static const char *const invalid[] = {"Invalid Y1", "Invalid Y2"};
    for (size_t i = 0; i < 2; i++) {
        duet_cpace_t a;
        uint8_t share[32], bad[32], isk[64], so[64];
        hex_field32(pts, invalid[i], bad);
        start_with(&a, &r, DUET_CPACE_INITIATOR, r.ya, r.ada, r.ada_len, share);
        memset(isk, 0xaa, sizeof isk);
        assert_int_equal(duet_cpace_finish(&a, bad, r.adb, r.adb_len, isk), DUET_EBADKEY);
        assert_true(sodium_is_zero(isk, sizeof isk));
        assert_true(sodium_is_zero(a.y, sizeof a.y));
        /* Sticky: the good share is refused now. */
        assert_int_equal(duet_cpace_finish(&a, r.Yb, r.adb, r.adb_len, isk), DUET_ESTATE);
        assert_true(sodium_is_zero(isk, sizeof isk));
        assert_int_equal(duet_cpace_sid_output(&a, so), DUET_ESTATE);
        duet_cpace_dispose(&a);
    }
    json_decref(root);
}

/* ---- properties -------------------------------------------------------------------- */

typedef struct {
    const char *prs, *ci, *sid, *ad;
    duet_cpace_role_t role;
} side_t;

/* One exchange with seeded scalars; returns whether both ISKs agree. */
static bool exchange(const side_t *a, const side_t *b, uint64_t seed, uint8_t isk_a[64])
{
    duet_testrng_t ra, rb;
    duet_rng_t rnga = duet_testrng_init(&ra, seed), rngb = duet_testrng_init(&rb, seed + 1);
    duet_cpace_t ca, cb;
    uint8_t sa[32], sb[32], isk_b[64];
#define S_(x) (const uint8_t *)(x), strlen(x)
    assert_int_equal(duet_cpace_start(&ca, a->role, S_(a->prs), S_(a->ci), S_(a->sid), S_(a->ad),
                                      rnga, sa),
                     DUET_OK);
    assert_int_equal(duet_cpace_start(&cb, b->role, S_(b->prs), S_(b->ci), S_(b->sid), S_(b->ad),
                                      rngb, sb),
                     DUET_OK);
    assert_int_equal(duet_cpace_finish(&ca, sb, S_(b->ad), isk_a), DUET_OK);
    assert_int_equal(duet_cpace_finish(&cb, sa, S_(a->ad), isk_b), DUET_OK);
#undef S_
    bool same = sodium_memcmp(isk_a, isk_b, 64) == 0;
    duet_cpace_dispose(&ca);
    duet_cpace_dispose(&cb);
    return same;
}

static void test_every_input_matters(void **state)
{
    (void)state;
    const side_t ini = {"7-acid-acorn", "duet-pair-v1", "", "", DUET_CPACE_INITIATOR};
    const side_t res = {"7-acid-acorn", "duet-pair-v1", "", "", DUET_CPACE_RESPONDER};
    uint8_t isk[64], isk2[64];
    assert_true(exchange(&ini, &res, 1, isk));
    /* Same seeds, same inputs: same ISK; other seeds: another ISK (fresh scalars). */
    assert_true(exchange(&ini, &res, 1, isk2));
    assert_memory_equal(isk, isk2, 64);
    assert_true(exchange(&ini, &res, 3, isk2));
    assert_memory_not_equal(isk, isk2, 64);

    side_t x = res;
    x.prs = "7-acorn-acid"; /* wrong password */
    assert_false(exchange(&ini, &x, 1, isk2));
    x = res;
    x.ci = "duet-pair-v2";
    assert_false(exchange(&ini, &x, 1, isk2));
    x = res;
    x.sid = "s";
    assert_false(exchange(&ini, &x, 1, isk2));
    /* AD: the peer's view of my AD must be what I used. */
    side_t ia = ini;
    ia.ad = "A";
    side_t rb = res;
    rb.ad = "B";
    assert_true(exchange(&ia, &rb, 1, isk2));
    /* Both sides claim the initiator role: transcript_ir puts the shares in opposite orders,
     * so the keys differ. Catches a transcript that does not depend on the role. */
    x = ini;
    assert_false(exchange(&ini, &x, 1, isk2));
    x = res;
    assert_false(exchange(&x, &res, 1, isk2));
    /* Symmetric on both sides agrees; symmetric against a role does not. */
    side_t sy = ini;
    sy.role = DUET_CPACE_SYMMETRIC;
    assert_true(exchange(&sy, &sy, 1, isk2));
    assert_false(exchange(&sy, &res, 1, isk2));
}

static void test_state_and_limits(void **state)
{
    (void)state;
    duet_cpace_t c;
    uint8_t share[32], isk[64], so[64], peer[32] = {0};
    memset(&c, 0, sizeof c);
    assert_int_equal(duet_cpace_finish(&c, peer, NULL, 0, isk), DUET_ESTATE);
    assert_int_equal(duet_cpace_sid_output(&c, so), DUET_ESTATE);

    duet_testrng_t tr;
    duet_rng_t rng = duet_testrng_init(&tr, 9);
    static uint8_t big[DUET_CPACE_MAX_AD + 1];
    assert_int_equal(duet_cpace_start(&c, DUET_CPACE_INITIATOR, (const uint8_t *)"p", 1, NULL, 0,
                                      NULL, 0, big, sizeof big, rng, share),
                     DUET_ETOOBIG);
    assert_true(sodium_is_zero(share, 32));
    assert_int_equal(duet_cpace_start(&c, DUET_CPACE_INITIATOR, (const uint8_t *)"p", 1, NULL, 0,
                                      big, DUET_CPACE_MAX_SID + 1, NULL, 0, rng, share),
                     DUET_ETOOBIG);
    assert_int_equal(duet_cpace_start(&c, DUET_CPACE_INITIATOR, (const uint8_t *)"p", 1, big,
                                      DUET_CPACE_MAX_CI + 1, NULL, 0, NULL, 0, rng, share),
                     DUET_ETOOBIG);
    /* At the limits: accepted. */
    assert_int_equal(duet_cpace_start(&c, DUET_CPACE_INITIATOR, big, DUET_CPACE_MAX_PRS, big,
                                      DUET_CPACE_MAX_CI, big, DUET_CPACE_MAX_SID, big,
                                      DUET_CPACE_MAX_AD, rng, share),
                     DUET_OK);
    assert_false(sodium_is_zero(c.y, sizeof c.y));
    assert_int_equal(duet_cpace_finish(&c, share, big, DUET_CPACE_MAX_AD + 1, isk), DUET_ETOOBIG);
    assert_true(sodium_is_zero(c.y, sizeof c.y));
    duet_cpace_dispose(&c);

    /* A finished context refuses a second finish. */
    assert_int_equal(duet_cpace_start(&c, DUET_CPACE_RESPONDER, (const uint8_t *)"p", 1, NULL, 0,
                                      NULL, 0, NULL, 0, rng, share),
                     DUET_OK);
    uint8_t other[32];
    duet_cpace_t d;
    assert_int_equal(duet_cpace_start(&d, DUET_CPACE_INITIATOR, (const uint8_t *)"p", 1, NULL, 0,
                                      NULL, 0, NULL, 0, rng, other),
                     DUET_OK);
    assert_int_equal(duet_cpace_finish(&c, other, NULL, 0, isk), DUET_OK);
    assert_int_equal(duet_cpace_finish(&c, other, NULL, 0, isk), DUET_ESTATE);
    assert_true(sodium_is_zero(isk, sizeof isk));
    duet_cpace_dispose(&c);
    duet_cpace_dispose(&d);

    /* An rng that only returns zeros cannot give a scalar. */
    duet_rng_t zero = {zero_fill, NULL};
    assert_int_equal(duet_cpace_start(&c, DUET_CPACE_INITIATOR, (const uint8_t *)"p", 1, NULL, 0,
                                      NULL, 0, NULL, 0, zero, share),
                     DUET_EINTERNAL);
    assert_true(sodium_is_zero(share, 32));
}

int main(void)
{
    if (sodium_init() < 0) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_string_utils),
        cmocka_unit_test(test_lv_cat_limits),
        cmocka_unit_test(test_o_cat_prefix_order),
        cmocka_unit_test(test_generator),
        cmocka_unit_test(test_protocol_appendix),
        cmocka_unit_test(test_protocol_testvectors_json),
        cmocka_unit_test(test_intermediate_values),
        cmocka_unit_test(test_scalar_mult_vfy),
        cmocka_unit_test(test_invalid_peer_share_aborts),
        cmocka_unit_test(test_every_input_matters),
        cmocka_unit_test(test_state_and_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
