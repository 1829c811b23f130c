/*
 * The relay: protocol helpers against independent known answers (tests/vectors/duet/
 * relay.json from tools/relay_vector.py), the SQLite backend, the server engine one request
 * at a time, and the client session engine against the server engine over an in-memory
 * link with two devices' outboxes.
 *
 * What a user would check: a partner's notes arrive once and only once through the relay,
 * even when the relay or the client fails between steps; nothing is acknowledged that the
 * relay has not stored; a stranger with the wrong capability learns nothing (the refusal is
 * the same bytes whether the mailbox exists or not); one full mailbox does not stop others;
 * acknowledgements come back through the relay; pairing messages reach the other holder of
 * a nameplate and nobody else.
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

#include "relay.h"
#include "relay_sqlite.h"
#include "relay_sync.h"
#include "relayd.h"
#include "testrng.h"
#include "testutil.h"

/* ---- vectors ---------------------------------------------------------------------------- */

static json_t *vectors(void)
{
    char path[4096];
    json_error_t jerr;
    duet_test_vector_path(path, sizeof path, "duet/relay.json");
    json_t *root = json_load_file(path, 0, &jerr);
    if (root == NULL) {
        fail_msg("cannot read %s: %s", path, jerr.text);
    }
    return root;
}

/* Hex string field of obj into out (exactly n bytes, else the test fails). */
static void hexf(const json_t *obj, const char *key, uint8_t *out, size_t n)
{
    const char *s = json_string_value(json_object_get(obj, key));
    size_t len;
    assert_non_null(s);
    assert_int_equal(sodium_hex2bin(out, n, s, strlen(s), NULL, &len, NULL), 0);
    assert_int_equal(len, n);
}

/* Hex string of any length, malloc'd. */
static uint8_t *hexdup(const json_t *obj, const char *key, size_t *n)
{
    const char *s = json_string_value(json_object_get(obj, key));
    assert_non_null(s);
    uint8_t *out = malloc(strlen(s) / 2 + 1);
    assert_int_equal(sodium_hex2bin(out, strlen(s) / 2 + 1, s, strlen(s), NULL, n, NULL), 0);
    return out;
}

static void check_dir(const json_t *v, const duet_relay_dir_t *d)
{
    uint8_t x[32];
    static const struct {
        const char *name;
        size_t off;
    } f[] = {
        {"wcap", offsetof(duet_relay_dir_t, wcap)},   {"rcap", offsetof(duet_relay_dir_t, rcap)},
        {"okey", offsetof(duet_relay_dir_t, okey)},   {"skey", offsetof(duet_relay_dir_t, skey)},
        {"whash", offsetof(duet_relay_dir_t, whash)}, {"rhash", offsetof(duet_relay_dir_t, rhash)},
        {"mbox", offsetof(duet_relay_dir_t, mbox)}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        hexf(v, f[i].name, x, 32);
        if (memcmp(x, (const uint8_t *)d + f[i].off, 32) != 0) {
            fail_msg("direction field %s differs from the vector", f[i].name);
        }
    }
}

static void derive_ab(const json_t *v, duet_relay_keys_t *a, duet_relay_keys_t *b)
{
    uint8_t ps[32], pka[32], pkb[32];
    hexf(v, "pair_secret", ps, 32);
    hexf(v, "pk_a", pka, 32);
    hexf(v, "pk_b", pkb, 32);
    duet_relay_keys_derive(a, ps, pka, pkb);
    if (b != NULL) {
        duet_relay_keys_derive(b, ps, pkb, pka);
    }
}

static void test_keys_vectors(void **state)
{
    (void)state;
    json_t *v = vectors();
    duet_relay_keys_t a, b;
    derive_ab(v, &a, &b);
    check_dir(json_object_get(v, "a_out"), &a.out);
    check_dir(json_object_get(v, "a_in"), &a.in);
    /* What a writes, b reads: the same mailbox, the same keys. */
    assert_memory_equal(&a.out, &b.in, sizeof a.out);
    assert_memory_equal(&a.in, &b.out, sizeof a.in);
    /* The two directions share nothing. */
    assert_memory_not_equal(a.out.mbox, a.in.mbox, 32);
    assert_memory_not_equal(a.out.wcap, a.in.wcap, 32);
    assert_memory_not_equal(a.out.okey, a.in.okey, 32);
    /* Another pair secret: other mailboxes. */
    uint8_t ps[32], pka[32], pkb[32];
    hexf(v, "pair_secret", ps, 32);
    hexf(v, "pk_a", pka, 32);
    hexf(v, "pk_b", pkb, 32);
    ps[31] ^= 1;
    duet_relay_keys_t c;
    duet_relay_keys_derive(&c, ps, pka, pkb);
    assert_memory_not_equal(c.out.mbox, a.out.mbox, 32);
    duet_relay_keys_dispose(&c);
    duet_relay_keys_dispose(&a);
    duet_relay_keys_dispose(&b);
    json_decref(v);
}

static void test_labels_vectors(void **state)
{
    (void)state;
    json_t *v = vectors();
    duet_relay_keys_t a, b;
    derive_ab(v, &a, &b);
    json_t *labels = json_object_get(v, "env_labels_a_out");
    assert_true(json_array_size(labels) >= 5);
    for (size_t i = 0; i < json_array_size(labels); i++) {
        json_t *l = json_array_get(labels, i);
        uint64_t seq = (uint64_t)json_integer_value(json_object_get(l, "seq"));
        uint8_t oid[16], want[16], mask[8], wmask[8];
        duet_relay_env_oid(oid, &a.out, seq);
        hexf(l, "oid", want, 16);
        assert_memory_equal(oid, want, 16);
        duet_relay_seq_mask(mask, &a.out, oid, seq);
        hexf(l, "masked_seq", wmask, 8);
        assert_memory_equal(mask, wmask, 8);
        /* b opens it; the label and the sequence number must agree. */
        uint8_t data[8 + 3] = {0};
        memcpy(data, mask, 8);
        memcpy(data + 8, "env", 3);
        uint64_t got;
        const uint8_t *env;
        size_t elen;
        assert_int_equal(duet_relay_env_open(&b.in, oid, 16, data, sizeof data, &got, &env, &elen),
                         DUET_OK);
        assert_int_equal(got, seq);
        assert_int_equal(elen, 3);
        assert_memory_equal(env, "env", 3);
        /* A relay relabelling it (another oid), flipping a bit of the mask, or a reader with
         * the other direction's keys: refused. */
        oid[3] ^= 0x10;
        assert_int_equal(duet_relay_env_open(&b.in, oid, 16, data, sizeof data, &got, &env, &elen),
                         DUET_EAUTH);
        oid[3] ^= 0x10;
        data[7] ^= 1;
        assert_int_equal(duet_relay_env_open(&b.in, oid, 16, data, sizeof data, &got, &env, &elen),
                         DUET_EAUTH);
        data[7] ^= 1;
        assert_int_equal(duet_relay_env_open(&b.out, oid, 16, data, sizeof data, &got, &env, &elen),
                         DUET_EAUTH);
        assert_int_equal(duet_relay_env_open(&b.in, oid, 16, data, 8, &got, &env, &elen),
                         DUET_EAUTH); /* no envelope after the mask */
    }
    uint8_t soid[16], want[16];
    duet_relay_state_oid(soid, &a.out);
    hexf(v, "state_oid_a_out", want, 16);
    assert_memory_equal(soid, want, 16);
    duet_relay_keys_dispose(&a);
    duet_relay_keys_dispose(&b);
    json_decref(v);
}

static void test_state_vectors(void **state)
{
    (void)state;
    json_t *v = vectors();
    duet_relay_keys_t a, b;
    derive_ab(v, &a, &b);
    json_t *st = json_object_get(v, "state");
    uint64_t wm = (uint64_t)json_integer_value(json_object_get(st, "wm"));
    json_t *ab = json_object_get(st, "above");
    uint64_t above[16];
    size_t n = json_array_size(ab);
    for (size_t i = 0; i < n; i++) {
        above[i] = (uint64_t)json_integer_value(json_array_get(ab, i));
    }
    uint8_t sealed[DUET_RELAY_STATE_BYTES], plain[DUET_RELAY_STATE_PLAIN];
    uint8_t want[DUET_RELAY_STATE_PLAIN];
    duet_testrng_t r;
    duet_relay_state_seal(sealed, &a.out, wm, above, n, duet_testrng_init(&r, 7));
    /* Decrypt with libsodium directly: key, associated data and layout as documented. */
    uint8_t ad[19 + 32];
    memcpy(ad, "duet relay state v1", 19);
    memcpy(ad + 19, a.out.mbox, 32);
    unsigned long long plen;
    assert_int_equal(crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &plen, NULL, sealed + 24,
                                                                sizeof sealed - 24, ad, sizeof ad,
                                                                sealed, a.out.skey),
                     0);
    assert_int_equal(plen, DUET_RELAY_STATE_PLAIN);
    hexf(st, "plain", want, sizeof want);
    assert_memory_equal(plain, want, sizeof want);
    /* b opens it: numbers beyond the bitmap are left out (acknowledging less is safe). */
    uint64_t got_wm, got[DUET_RELAY_STATE_BITS];
    size_t got_n;
    assert_int_equal(duet_relay_state_open(&b.in, sealed, sizeof sealed, &got_wm, got,
                                           DUET_RELAY_STATE_BITS, &got_n),
                     DUET_OK);
    assert_int_equal(got_wm, wm);
    size_t expect_n = 0;
    for (size_t i = 0; i < n; i++) {
        if (above[i] - wm - 1 < DUET_RELAY_STATE_BITS) {
            assert_int_equal(got[expect_n], above[i]);
            expect_n++;
        }
    }
    assert_int_equal(got_n, expect_n);
    assert_true(expect_n < n);
    /* Every byte matters; the wrong direction cannot open it; the size never changes. */
    for (size_t i = 0; i < sizeof sealed; i += 37) {
        sealed[i] ^= 0x40;
        assert_int_equal(duet_relay_state_open(&b.in, sealed, sizeof sealed, &got_wm, got,
                                               DUET_RELAY_STATE_BITS, &got_n),
                         DUET_EAUTH);
        sealed[i] ^= 0x40;
    }
    assert_int_equal(duet_relay_state_open(&b.out, sealed, sizeof sealed, &got_wm, got,
                                           DUET_RELAY_STATE_BITS, &got_n),
                     DUET_EAUTH);
    assert_int_equal(duet_relay_state_open(&b.in, sealed, sizeof sealed - 1, &got_wm, got,
                                           DUET_RELAY_STATE_BITS, &got_n),
                     DUET_EAUTH);
    uint8_t empty[DUET_RELAY_STATE_BYTES];
    duet_relay_state_seal(empty, &a.out, 0, NULL, 0, duet_testrng_init(&r, 8));
    assert_int_equal(sizeof empty, sizeof sealed); /* an empty state is just as long */
    assert_int_equal(DUET_RELAY_STATE_BYTES, 305);
    duet_relay_keys_dispose(&a);
    duet_relay_keys_dispose(&b);
    json_decref(v);
}

static void check_url(const json_t *u)
{
    const char *text = json_string_value(json_object_get(u, "text"));
    const char *host = json_string_value(json_object_get(u, "host"));
    uint8_t key[32];
    hexf(u, "key", key, 32);
    duet_relay_url_t p;
    assert_int_equal(duet_relay_url_parse(&p, text, strlen(text)), DUET_OK);
    assert_string_equal(p.host, host);
    assert_int_equal(p.port, json_integer_value(json_object_get(u, "port")));
    assert_memory_equal(p.key, key, 32);
    char out[DUET_RELAY_URL_MAX + 1];
    assert_int_equal(duet_relay_url_format(out, sizeof out, host, p.port, key), DUET_OK);
    assert_string_equal(out, text);
    /* Upper case keys are the same key. */
    char upper[DUET_RELAY_URL_MAX + 1];
    snprintf(upper, sizeof upper, "%s", text);
    for (char *c = strrchr(upper, '/'); *c; c++) {
        if (*c >= 'a' && *c <= 'z') {
            *c = (char)(*c - 'a' + 'A');
        }
    }
    assert_int_equal(duet_relay_url_parse(&p, upper, strlen(upper)), DUET_OK);
    assert_memory_equal(p.key, key, 32);
}

static void test_urls(void **state)
{
    (void)state;
    json_t *v = vectors();
    check_url(json_object_get(v, "url"));
    check_url(json_object_get(v, "url6"));
    const char *good = json_string_value(json_object_get(json_object_get(v, "url"), "text"));
    duet_relay_url_t p;
    char bad[512];
    static const char *const bads[] = {
        "",
        "duet://",
        "http://relay.example.org:4455/x",
        "duet://:4455/",
        "duet://relay.example.org/",
        "duet://relay.example.org:0/",
        "duet://relay.example.org:65536/",
        "duet://relay.example.org:04455/",
        "duet://-relay:4455/",
        "duet://re lay:4455/",
        "duet://[::1:4455/",
        "duet://[zz::1]:4455/",
    };
    for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
        const char *key = strrchr(good, '/') + 1;
        snprintf(bad, sizeof bad, "%s%s", bads[i], strchr(bads[i], '/') ? key : "");
        if (duet_relay_url_parse(&p, bad, strlen(bad)) == DUET_OK) {
            fail_msg("accepted %s", bad);
        }
    }
    /* Keys: one character short or long, a letter outside the alphabet (u), and a last
     * character whose four padding bits are not zero. */
    size_t gl = strlen(good);
    snprintf(bad, sizeof bad, "%.*s", (int)(gl - 1), good);
    assert_int_not_equal(duet_relay_url_parse(&p, bad, strlen(bad)), DUET_OK);
    snprintf(bad, sizeof bad, "%s0", good);
    assert_int_not_equal(duet_relay_url_parse(&p, bad, strlen(bad)), DUET_OK);
    snprintf(bad, sizeof bad, "%s", good);
    bad[gl - 3] = 'u';
    assert_int_equal(duet_relay_url_parse(&p, bad, strlen(bad)), DUET_EBADKEY);
    snprintf(bad, sizeof bad, "%s", good);
    bad[gl - 1] = bad[gl - 1] == '1' ? '2' : '1';
    assert_int_equal(duet_relay_url_parse(&p, bad, strlen(bad)), DUET_EBADKEY);
    char small[20];
    uint8_t key[32] = {0};
    assert_int_equal(duet_relay_url_format(small, sizeof small, "h", 1, key), DUET_ETOOBIG);
    json_decref(v);
}

/* Encode one frame with the C encoder, compare with the vector, and decode it back. */
static uint8_t *kept[32];
static size_t nkept;

static void frame_is(const json_t *frames, const char *name, duet_codec_enc_t *enc,
                     duet_relay_frame_t *f)
{
    size_t want_len, len;
    const uint8_t *got;
    uint8_t *want = hexdup(frames, name, &want_len);
    assert_int_equal(duet_codec_enc_finish(enc, &got, &len), DUET_OK);
    if (len != want_len || memcmp(got, want, len) != 0) {
        fail_msg("frame %s: encoding differs from the vector", name);
    }
    assert_int_equal(duet_relay_frame_decode(f, want, want_len), DUET_OK);
    /* Every strict prefix is refused. */
    for (size_t cut = 0; cut < want_len; cut += 1 + want_len / 16) {
        duet_relay_frame_t g;
        assert_int_equal(duet_relay_frame_decode(&g, want, cut), DUET_EPROTO);
    }
    kept[nkept++] = want; /* f points into it */
    duet_codec_enc_reset(enc);
}

static void test_frames_vectors(void **state)
{
    (void)state;
    json_t *v = vectors();
    json_t *fr = json_object_get(v, "frames");
    duet_relay_keys_t a;
    derive_ab(v, &a, NULL);
    duet_codec_enc_t enc;
    duet_relay_frame_t f;
    uint8_t oid1[16], mask[8], data[32], soid[16], pad[DUET_RELAY_PAIR_MSG];
    duet_codec_enc_init(&enc, DUET_RELAY_FRAME_MAX);
    duet_relay_env_oid(oid1, &a.out, 1);
    duet_relay_seq_mask(mask, &a.out, oid1, 1);
    memcpy(data, mask, 8);
    memset(data + 8, 0xee, 24);

    duet_relay_enc_hello(&enc, 1);
    frame_is(fr, "hello", &enc, &f);
    assert_int_equal(f.type, DUET_RELAY_HELLO);
    assert_int_equal(f.version, 1);
    duet_relay_frame_dispose(&f);

    duet_relay_enc_put2(&enc, 7, &a.out, DUET_RELAY_ENVELOPE, oid1, 16, mask, 8, data + 8, 24);
    frame_is(fr, "put", &enc, &f);
    assert_int_equal(f.type, DUET_RELAY_PUT);
    assert_int_equal(f.rid, 7);
    assert_memory_equal(f.mbox, a.out.mbox, 32);
    assert_memory_equal(f.cap, a.out.wcap, 32);
    assert_int_equal(f.data_len, 32);
    assert_int_equal(duet_relay_cap_check(f.mbox, f.cap, f.other_hash, true), DUET_OK);
    assert_int_equal(duet_relay_cap_check(f.mbox, f.cap, f.other_hash, false), DUET_ECAPABILITY);
    duet_relay_frame_dispose(&f);

    duet_relay_enc_list(&enc, 8, &a.in, DUET_RELAY_ENVELOPE, 300, 256);
    frame_is(fr, "list", &enc, &f);
    assert_int_equal(f.after, 300);
    assert_int_equal(f.limit, 256);
    assert_int_equal(duet_relay_cap_check(f.mbox, f.cap, f.other_hash, false), DUET_OK);
    duet_relay_frame_dispose(&f);

    duet_relay_state_oid(soid, &a.in);
    duet_relay_enc_get(&enc, 9, &a.in, soid, 16);
    frame_is(fr, "get", &enc, &f);
    duet_relay_frame_dispose(&f);

    const uint8_t one = 1;
    const uint8_t *oids[2] = {oid1, &one};
    size_t lens[2] = {16, 1};
    duet_relay_enc_delete(&enc, 10, &a.in, oids, lens, 2);
    frame_is(fr, "delete", &enc, &f);
    assert_int_equal(f.count, 2);
    const uint8_t *o;
    size_t ol;
    duet_relay_frame_oid(&f, 1, &o, &ol);
    assert_int_equal(ol, 1);
    assert_int_equal(o[0], 1);
    duet_relay_frame_dispose(&f);

    duet_relay_enc_subscribe(&enc, 11, &a.in);
    frame_is(fr, "subscribe", &enc, &f);
    duet_relay_frame_dispose(&f);
    duet_relay_enc_ping(&enc, 65536);
    frame_is(fr, "ping", &enc, &f);
    assert_int_equal(f.rid, 65536);
    duet_relay_frame_dispose(&f);
    duet_relay_enc_allocate(&enc, 12, 0);
    frame_is(fr, "allocate", &enc, &f);
    assert_int_equal(f.nameplate, 0);
    duet_relay_frame_dispose(&f);
    duet_relay_enc_claim(&enc, 13, 417);
    frame_is(fr, "claim", &enc, &f);
    assert_int_equal(f.nameplate, 417);
    duet_relay_frame_dispose(&f);
    assert_int_equal(duet_relay_pair_pad(pad, (const uint8_t *)"abc", 3), DUET_OK);
    duet_relay_enc_pmsg(&enc, 14, pad);
    frame_is(fr, "pmsg", &enc, &f);
    duet_relay_frame_dispose(&f);

    duet_relay_enc_ok(&enc, 7, (uint64_t)1 << 33);
    frame_is(fr, "ok", &enc, &f);
    assert_int_equal(f.value, (uint64_t)1 << 33);
    duet_relay_frame_dispose(&f);
    duet_relay_enc_welcome(&enc, 1);
    frame_is(fr, "welcome", &enc, &f);
    assert_int_equal(f.window, DUET_RELAY_WINDOW);
    duet_relay_frame_dispose(&f);

    duet_relay_entry_t e[2];
    memset(e, 0, sizeof e);
    e[0] = (duet_relay_entry_t){.cursor = 301, .cls = 1, .oid_len = 16, .len = 520};
    memcpy(e[0].oid, oid1, 16);
    e[1] = (duet_relay_entry_t){.cursor = 302, .cls = 3, .oid_len = 36, .len = 98368};
    memset(e[1].oid, 0xab, 36);
    duet_relay_enc_listed(&enc, 8, e, 2, true);
    frame_is(fr, "listed", &enc, &f);
    assert_true(f.more);
    duet_relay_entry_t back;
    duet_relay_frame_entry(&f, 1, &back);
    assert_int_equal(back.cursor, 302);
    assert_int_equal(back.oid_len, 36);
    assert_int_equal(back.len, 98368);
    duet_relay_frame_dispose(&f);

    duet_relay_enc_object(&enc, 9, 5, 2, oid1, 16, (const uint8_t *)"\x01\x02\x03", 3);
    frame_is(fr, "object", &enc, &f);
    duet_relay_frame_dispose(&f);
    duet_relay_enc_error(&enc, 7, DUET_ECAPABILITY, false);
    frame_is(fr, "error", &enc, &f);
    assert_int_equal(f.err, DUET_ECAPABILITY);
    assert_false(f.fatal);
    duet_relay_frame_dispose(&f);
    duet_relay_enc_error(&enc, 0, DUET_EPROTO, true);
    frame_is(fr, "error_fatal", &enc, &f);
    assert_true(f.fatal);
    duet_relay_frame_dispose(&f);
    duet_relay_enc_notify(&enc, a.in.mbox, 42);
    frame_is(fr, "notify", &enc, &f);
    assert_int_equal(f.value, 42);
    duet_relay_frame_dispose(&f);
    duet_relay_enc_pdata(&enc, pad);
    frame_is(fr, "pdata", &enc, &f);
    const uint8_t *msg;
    size_t mlen;
    assert_int_equal(duet_relay_pair_unpad(f.data, f.data_len, &msg, &mlen), DUET_OK);
    assert_int_equal(mlen, 3);
    assert_memory_equal(msg, "abc", 3);
    duet_relay_frame_dispose(&f);
    duet_relay_enc_pclosed(&enc, DUET_ECLOSED);
    frame_is(fr, "pclosed", &enc, &f);
    assert_int_equal(f.err, DUET_ECLOSED);
    duet_relay_frame_dispose(&f);

    duet_codec_enc_dispose(&enc);
    duet_relay_keys_dispose(&a);
    json_decref(v);
    while (nkept > 0) {
        free(kept[--nkept]);
    }
}

/* Malformed frames: each must be refused by the decoder. */
static void test_frames_malformed(void **state)
{
    (void)state;
    json_t *v = vectors();
    json_t *fr = json_object_get(v, "frames");
    size_t n;
    uint8_t *put = hexdup(fr, "put", &n);
    duet_relay_frame_t f;
    /* Unknown frame type, unknown extra key, a wrong type for a field, a short key. */
    static const uint8_t unknown_type[] = {0x82, 0x00, 0x63, 0x01, 0x01};
    static const uint8_t extra_key[] = {0x84, 0x00, 0x07, 0x01, 0x01, 0x02, 0x00, 0x09, 0x00};
    static const uint8_t wrong_type[] = {0x82, 0x00, 0x07, 0x01, 0xc4, 0x01, 0x00};
    static const uint8_t hello_v0[] = {0x83, 0x00, 0x01, 0x01, 0x01, 0x02, 0x00};
    static const uint8_t claim_0[] = {0x83, 0x00, 0x09, 0x01, 0x01, 0x02, 0x00};
    static const uint8_t claim_big[] = {0x83, 0x00, 0x09, 0x01, 0x01, 0x02, 0xcd, 0x27, 0x10};
    static const uint8_t not_map[] = {0x93, 0x01, 0x01, 0x01};
    static const uint8_t err_code[] = {0x85, 0x00, 0x44, 0x01, 0x00, 0x02,
                                       0x00, 0x03, 0xc2, 0x04, 0x01};
    assert_int_equal(duet_relay_frame_decode(&f, unknown_type, sizeof unknown_type), DUET_EPROTO);
    assert_int_equal(duet_relay_frame_decode(&f, extra_key, sizeof extra_key), DUET_EPROTO);
    assert_int_equal(duet_relay_frame_decode(&f, wrong_type, sizeof wrong_type), DUET_EPROTO);
    assert_int_equal(duet_relay_frame_decode(&f, hello_v0, sizeof hello_v0), DUET_EPROTO);
    assert_int_equal(duet_relay_frame_decode(&f, claim_0, sizeof claim_0), DUET_EPROTO);
    assert_int_equal(duet_relay_frame_decode(&f, claim_big, sizeof claim_big), DUET_EPROTO);
    assert_int_equal(duet_relay_frame_decode(&f, not_map, sizeof not_map), DUET_EPROTO);
    assert_int_equal(duet_relay_frame_decode(&f, err_code, sizeof err_code), DUET_EPROTO);
    /* The PUT with trailing garbage, with its mailbox id one byte short (the bin length
     * prefix changed), and every single-bit change of its header bytes decodes or is
     * refused without a crash (ASan watches). */
    uint8_t *longer = malloc(n + 1);
    memcpy(longer, put, n);
    longer[n] = 0;
    assert_int_equal(duet_relay_frame_decode(&f, longer, n + 1), DUET_EPROTO);
    free(longer);
    for (size_t i = 0; i < 12 && i < n; i++) {
        for (int b = 0; b < 8; b++) {
            put[i] ^= (uint8_t)(1u << b);
            if (duet_relay_frame_decode(&f, put, n) == DUET_OK) {
                duet_relay_frame_dispose(&f);
            }
            put[i] ^= (uint8_t)(1u << b);
        }
    }
    /* An object over the limit. */
    duet_codec_enc_t enc;
    duet_codec_enc_init(&enc, DUET_RELAY_FRAME_MAX);
    duet_codec_put_map(&enc, 3);
    duet_codec_put_key(&enc, 0);
    duet_codec_put_uint(&enc, DUET_RELAY_PMSG);
    duet_codec_put_key(&enc, 1);
    duet_codec_put_uint(&enc, 1);
    duet_codec_put_key(&enc, 2);
    uint8_t small[DUET_RELAY_PAIR_MSG - 1] = {0};
    duet_codec_put_bin(&enc, small, sizeof small);
    const uint8_t *b;
    size_t bl;
    assert_int_equal(duet_codec_enc_finish(&enc, &b, &bl), DUET_OK);
    assert_int_equal(duet_relay_frame_decode(&f, b, bl), DUET_EPROTO);
    duet_codec_enc_dispose(&enc);
    free(put);
    json_decref(v);
}

static void test_pair_padding(void **state)
{
    (void)state;
    uint8_t pad[DUET_RELAY_PAIR_MSG], msg[DUET_RELAY_PAIR_MAX + 1];
    const uint8_t *m;
    size_t len;
    memset(msg, 0x5a, sizeof msg);
    assert_int_equal(duet_relay_pair_pad(pad, msg, 0), DUET_EEMPTY);
    assert_int_equal(duet_relay_pair_pad(pad, msg, sizeof msg), DUET_ETOOBIG);
    assert_int_equal(duet_relay_pair_pad(pad, msg, 274), DUET_OK); /* the largest P4 */
    assert_int_equal(duet_relay_pair_unpad(pad, sizeof pad, &m, &len), DUET_OK);
    assert_int_equal(len, 274);
    pad[sizeof pad - 1] = 1; /* padding must be zeros */
    assert_int_equal(duet_relay_pair_unpad(pad, sizeof pad, &m, &len), DUET_EDECODE);
    pad[sizeof pad - 1] = 0;
    pad[0] = 0x02; /* a length beyond the maximum */
    assert_int_equal(duet_relay_pair_unpad(pad, sizeof pad, &m, &len), DUET_EDECODE);
}

static void test_bucket(void **state)
{
    (void)state;
    duet_relay_bucket_t b;
    uint64_t wait;
    duet_relay_bucket_init(&b, 10, 1000);
    for (int i = 0; i < 10; i++) {
        assert_true(duet_relay_bucket_take(&b, 5, 10, 1, 1000, &wait));
    }
    assert_false(duet_relay_bucket_take(&b, 5, 10, 1, 1000, &wait));
    assert_int_equal(wait, 200); /* 5 per second: one every 200 ms */
    assert_false(duet_relay_bucket_take(&b, 5, 10, 1, 1199, &wait));
    assert_true(duet_relay_bucket_take(&b, 5, 10, 1, 1200, &wait));
    /* Refill stops at the burst; a clock that goes back changes nothing. */
    assert_true(duet_relay_bucket_take(&b, 5, 10, 10, 1000000, &wait));
    assert_false(duet_relay_bucket_take(&b, 5, 10, 1, 500, &wait));
    assert_true(duet_relay_bucket_take(&b, 0, 0, 1000000, 0, &wait)); /* rate 0: no limit */
    duet_relay_bucket_init(&b, 4, 0);
    assert_true(duet_relay_bucket_take(&b, 1, 4, 100, 0, &wait)); /* cost over burst */
    assert_false(duet_relay_bucket_take(&b, 1, 4, 100, 1000, &wait));
}

static void test_config(void **state)
{
    (void)state;
    duet_relay_config_t c;
    size_t line;
    duet_relay_config_default(&c);
    assert_int_equal(c.mailbox_items, 10000);
    assert_int_equal(c.max_object, DUET_RELAY_OBJECT_MAX);
    static const char text[] = "# a relay\n"
                               "mailbox-items = 50\n"
                               "  ttl-s=3600   # an hour\n"
                               "\n"
                               "max-connections\t=\t20000\r\n";
    assert_int_equal(duet_relay_config_parse(&c, text, strlen(text), &line), DUET_OK);
    assert_int_equal(c.mailbox_items, 50);
    assert_int_equal(c.ttl_s, 3600);
    assert_int_equal(c.max_connections, 20000);
    static const char unknown[] = "mailbox-items = 5\nfrobnicate = 1\n";
    assert_int_equal(duet_relay_config_parse(&c, unknown, strlen(unknown), &line), DUET_EINVAL);
    assert_int_equal(line, 2);
    static const char range[] = "max-object = 99999999\n";
    assert_int_equal(duet_relay_config_parse(&c, range, strlen(range), &line), DUET_ERANGE);
    static const char noeq[] = "ttl-s 5\n";
    assert_int_equal(duet_relay_config_parse(&c, noeq, strlen(noeq), &line), DUET_EINVAL);
    static const char neg[] = "ttl-s = -5\n";
    assert_int_equal(duet_relay_config_parse(&c, neg, strlen(neg), &line), DUET_ERANGE);
    for (size_t i = 0; duet_relay_config_name(i) != NULL; i++) {
        assert_non_null(duet_relay_config_doc(i));
    }
    /* docs/relay.md lists every setting with its default. */
    size_t dlen;
    uint8_t *doc = duet_test_slurp("docs/relay.md", &dlen);
    assert_non_null(doc);
    duet_relay_config_default(&c);
    for (size_t i = 0; duet_relay_config_name(i) != NULL; i++) {
        char row[128];
        snprintf(row, sizeof row, "| `%s` | %llu |", duet_relay_config_name(i),
                 (unsigned long long)duet_relay_config_value(&c, i));
        if (!duet_test_contains(doc, dlen, row, strlen(row))) {
            fail_msg("docs/relay.md does not list %s", row);
        }
    }
    free(doc);
}

/* ---- the SQLite backend ------------------------------------------------------------------ */

static const duet_relay_limits_t lim_default = {10, 100000, 0, 60000};

static void put_ok(duet_relay_store_t *st, const uint8_t *mbox, uint8_t cls, uint8_t oidbyte,
                   size_t len, uint64_t now, uint64_t *cursor, bool *dup)
{
    uint8_t data[4096];
    memset(data, oidbyte, sizeof data);
    assert_true(len <= sizeof data);
    assert_int_equal(st->begin(st->ctx), DUET_OK);
    assert_int_equal(
        st->put(st->ctx, mbox, cls, &oidbyte, 1, data, len, now, &lim_default, cursor, dup),
        DUET_OK);
    assert_int_equal(st->commit(st->ctx), DUET_OK);
}

static void test_sqlite_basics(void **state)
{
    (void)state;
    char *dir = duet_test_tmpdir();
    char path[4096];
    duet_test_path(path, sizeof path, dir, "relay.db");
    duet_relay_sqlite_t *db;
    assert_int_equal(duet_relay_sqlite_open(path, &db), DUET_OK);
    duet_relay_store_t st = duet_relay_sqlite_store(db);
    uint8_t m1[32], m2[32];
    memset(m1, 1, 32);
    memset(m2, 2, 32);
    uint64_t cur;
    bool dup;

    put_ok(&st, m1, DUET_RELAY_ENVELOPE, 'a', 100, 1000, &cur, &dup);
    assert_int_equal(cur, 1);
    assert_false(dup);
    put_ok(&st, m1, DUET_RELAY_ENVELOPE, 'b', 200, 1000, &cur, &dup);
    assert_int_equal(cur, 2);
    put_ok(&st, m1, DUET_RELAY_ENVELOPE, 'a', 999, 1000, &cur, &dup); /* write-once */
    assert_true(dup);
    assert_int_equal(cur, 1);
    put_ok(&st, m1, DUET_RELAY_STATE, 's', 305, 1000, &cur, &dup);
    assert_int_equal(cur, 3);
    put_ok(&st, m1, DUET_RELAY_STATE, 's', 305, 2000, &cur, &dup); /* replaced, new cursor */
    assert_false(dup);
    assert_int_equal(cur, 4);
    put_ok(&st, m2, DUET_RELAY_ENVELOPE, 'a', 10, 1000, &cur, &dup); /* cursors per mailbox */
    assert_int_equal(cur, 1);

    duet_relay_entry_t e[8];
    size_t n;
    bool more;
    assert_int_equal(st.list(st.ctx, m1, 0, 0, 1500, e, 8, &n, &more), DUET_OK);
    assert_int_equal(n, 3);
    assert_false(more);
    assert_int_equal(e[0].cursor, 1);
    assert_int_equal(e[0].len, 100);
    assert_int_equal(e[2].cursor, 4);
    assert_int_equal(e[2].cls, DUET_RELAY_STATE);
    assert_int_equal(st.list(st.ctx, m1, DUET_RELAY_ENVELOPE, 1, 1500, e, 1, &n, &more), DUET_OK);
    assert_int_equal(n, 1);
    assert_int_equal(e[0].cursor, 2);
    assert_false(more);
    assert_int_equal(st.list(st.ctx, m1, 0, 0, 1500, e, 2, &n, &more), DUET_OK);
    assert_true(more);

    duet_relay_entry_t meta;
    const uint8_t *data;
    uint8_t oid = 'b';
    assert_int_equal(st.get(st.ctx, m1, &oid, 1, 1500, &meta, &data), DUET_OK);
    assert_int_equal(meta.len, 200);
    assert_int_equal(data[199], 'b');
    oid = 'z';
    assert_int_equal(st.get(st.ctx, m1, &oid, 1, 1500, &meta, &data), DUET_ENOENT);
    uint8_t m3[32];
    memset(m3, 3, 32);
    assert_int_equal(st.get(st.ctx, m3, &oid, 1, 1500, &meta, &data), DUET_ENOENT);
    assert_int_equal(st.list(st.ctx, m3, 0, 0, 1500, e, 8, &n, &more), DUET_OK);
    assert_int_equal(n, 0);

    bool gone;
    oid = 'a';
    assert_int_equal(st.begin(st.ctx), DUET_OK);
    assert_int_equal(st.del(st.ctx, m1, &oid, 1, 1000000, &gone), DUET_OK);
    assert_true(gone);
    assert_int_equal(st.del(st.ctx, m1, &oid, 1, 1000000, &gone), DUET_OK);
    assert_false(gone);
    assert_int_equal(st.commit(st.ctx), DUET_OK);

    duet_relay_stats_t s;
    assert_int_equal(st.stats(st.ctx, &s), DUET_OK);
    assert_int_equal(s.mailboxes, 2);
    assert_int_equal(s.objects, 3);
    assert_int_equal(s.bytes, 200 + 305 + 10);
    /* A collected object leaves a tombstone: a repeated PUT of it (its acknowledgement was
     * lost) is a duplicate, not a second delivery; it is not listed or served. */
    put_ok(&st, m1, DUET_RELAY_ENVELOPE, 'a', 100, 1000, &cur, &dup);
    assert_true(dup);
    assert_int_equal(cur, 1);
    assert_int_equal(st.list(st.ctx, m1, 0, 0, 1500, e, 8, &n, &more), DUET_OK);
    assert_int_equal(n, 2);
    assert_int_equal(st.get(st.ctx, m1, &oid, 1, 1500, &meta, &data), DUET_ENOENT);
    /* A collected state object comes back with the next state. */
    oid = 's';
    assert_int_equal(st.begin(st.ctx), DUET_OK);
    assert_int_equal(st.del(st.ctx, m1, &oid, 1, 1000000, &gone), DUET_OK);
    assert_true(gone);
    assert_int_equal(st.commit(st.ctx), DUET_OK);
    put_ok(&st, m1, DUET_RELAY_STATE, 's', 305, 2000, &cur, &dup);
    assert_false(dup);
    assert_int_equal(cur, 5);
    assert_int_equal(st.get(st.ctx, m1, &oid, 1, 2500, &meta, &data), DUET_OK);
    assert_int_equal(st.stats(st.ctx, &s), DUET_OK);
    assert_int_equal(s.objects, 3);

    /* A batch rolled back leaves nothing. */
    assert_int_equal(st.begin(st.ctx), DUET_OK);
    oid = 'q';
    assert_int_equal(
        st.put(st.ctx, m2, 1, &oid, 1, (const uint8_t *)"x", 1, 1000, &lim_default, &cur, &dup),
        DUET_OK);
    st.rollback(st.ctx);
    assert_int_equal(st.list(st.ctx, m2, 0, 0, 1500, e, 8, &n, &more), DUET_OK);
    assert_int_equal(n, 1);

    /* A second relay on the same file is refused; after a reopen everything is there and
     * cursors go on from where they were. */
    duet_relay_sqlite_t *second;
    assert_int_equal(duet_relay_sqlite_open(path, &second), DUET_ELOCKED);
    duet_relay_sqlite_close(db);
    assert_int_equal(duet_relay_sqlite_open(path, &db), DUET_OK);
    st = duet_relay_sqlite_store(db);
    assert_int_equal(st.list(st.ctx, m1, 0, 0, 1500, e, 8, &n, &more), DUET_OK);
    assert_int_equal(n, 2);
    put_ok(&st, m1, DUET_RELAY_ENVELOPE, 'c', 1, 3000, &cur, &dup);
    assert_int_equal(cur, 6);
    duet_relay_sqlite_close(db);

    /* Not a database. */
    duet_test_path(path, sizeof path, dir, "junk.db");
    char junk[8192];
    memset(junk, 'j', sizeof junk);
    duet_test_write(path, junk, sizeof junk);
    assert_int_equal(duet_relay_sqlite_open(path, &db), DUET_ECORRUPT);
    duet_test_rmrf(dir);
    free(dir);
}

static void test_sqlite_quota_ttl(void **state)
{
    (void)state;
    duet_relay_sqlite_t *db;
    assert_int_equal(duet_relay_sqlite_open(":memory:", &db), DUET_OK);
    duet_relay_store_t st = duet_relay_sqlite_store(db);
    uint8_t m1[32], m2[32], data[1000] = {0};
    memset(m1, 1, 32);
    memset(m2, 2, 32);
    duet_relay_limits_t lim = {3, 2500, 6000, 10000};
    uint64_t cur;
    bool dup;
    assert_int_equal(st.begin(st.ctx), DUET_OK);
    for (uint8_t i = 0; i < 3; i++) {
        assert_int_equal(st.put(st.ctx, m1, 1, &i, 1, data, 500, 0, &lim, &cur, &dup), DUET_OK);
    }
    uint8_t k = 9;
    /* A fourth item: over the item quota, even inside the batch that made the three. */
    assert_int_equal(st.put(st.ctx, m1, 1, &k, 1, data, 10, 0, &lim, &cur, &dup), DUET_EQUOTA);
    /* Bytes: 1500 + 1000 fits 2500 in another mailbox, 1 more does not. */
    assert_int_equal(st.put(st.ctx, m2, 1, &k, 1, data, 1000, 0, &lim, &cur, &dup), DUET_OK);
    k = 10;
    assert_int_equal(st.put(st.ctx, m2, 1, &k, 1, data, 1000, 0, &lim, &cur, &dup), DUET_OK);
    k = 11;
    assert_int_equal(st.put(st.ctx, m2, 1, &k, 1, data, 501, 0, &lim, &cur, &dup), DUET_EQUOTA);
    /* The store's total: 3500 now, 6000 at most: 5500 after two more, then 501 is over. */
    uint8_t m3[32];
    memset(m3, 3, 32);
    k = 1;
    assert_int_equal(st.put(st.ctx, m3, 1, &k, 1, data, 1000, 0, &lim, &cur, &dup), DUET_OK);
    k = 2;
    assert_int_equal(st.put(st.ctx, m3, 1, &k, 1, data, 1000, 0, &lim, &cur, &dup), DUET_OK);
    k = 3;
    assert_int_equal(st.put(st.ctx, m3, 1, &k, 1, data, 501, 0, &lim, &cur, &dup), DUET_EQUOTA);
    assert_int_equal(st.put(st.ctx, m3, 1, &k, 1, data, 500, 0, &lim, &cur, &dup), DUET_OK);
    assert_int_equal(st.commit(st.ctx), DUET_OK);

    /* A state object replaced many times counts once. */
    duet_relay_limits_t lim2 = {2, 100000, 0, 10000};
    uint8_t m4[32];
    memset(m4, 4, 32);
    assert_int_equal(st.begin(st.ctx), DUET_OK);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(
            st.put(st.ctx, m4, DUET_RELAY_STATE, &k, 1, data, 305, 0, &lim2, &cur, &dup), DUET_OK);
    }
    assert_int_equal(cur, 5);
    assert_int_equal(st.commit(st.ctx), DUET_OK);

    /* Expired objects are invisible at once and free their quota. */
    duet_relay_entry_t e[8];
    size_t n;
    bool more;
    assert_int_equal(st.list(st.ctx, m1, 0, 0, 9999, e, 8, &n, &more), DUET_OK);
    assert_int_equal(n, 3);
    assert_int_equal(st.list(st.ctx, m1, 0, 0, 10000, e, 8, &n, &more), DUET_OK);
    assert_int_equal(n, 0);
    assert_int_equal(st.begin(st.ctx), DUET_OK);
    k = 9;
    assert_int_equal(st.put(st.ctx, m1, 1, &k, 1, data, 10, 10000, &lim, &cur, &dup), DUET_OK);
    assert_int_equal(cur, 4); /* cursors never go back */
    assert_int_equal(st.commit(st.ctx), DUET_OK);
    uint64_t removed;
    assert_int_equal(st.expire(st.ctx, 10001, 10000, 1000, &removed), DUET_OK);
    assert_int_equal(removed, 2 + 3 + 1); /* m2's, m3's, m4's state; m1's went at the PUT */
    duet_relay_stats_t s;
    assert_int_equal(st.stats(st.ctx, &s), DUET_OK);
    assert_int_equal(s.objects, 1);
    assert_int_equal(s.bytes, 10);
    /* Empty mailboxes go once they have been empty and untouched for a TTL. */
    assert_int_equal(st.expire(st.ctx, 15000, 10000, 1000, &removed), DUET_OK);
    assert_int_equal(st.stats(st.ctx, &s), DUET_OK);
    assert_int_equal(s.mailboxes, 1);

    /* A tombstone lives until its keep time, then a PUT of the id stores it again. */
    uint8_t m5[32];
    memset(m5, 5, 32);
    bool gone;
    k = 'x';
    assert_int_equal(st.begin(st.ctx), DUET_OK);
    assert_int_equal(st.put(st.ctx, m5, 1, &k, 1, data, 10, 16000, &lim, &cur, &dup), DUET_OK);
    assert_int_equal(st.commit(st.ctx), DUET_OK);
    assert_int_equal(st.begin(st.ctx), DUET_OK);
    assert_int_equal(st.del(st.ctx, m5, &k, 1, 16500, &gone), DUET_OK);
    assert_true(gone);
    assert_int_equal(st.put(st.ctx, m5, 1, &k, 1, data, 10, 16100, &lim, &cur, &dup), DUET_OK);
    assert_true(dup);
    assert_int_equal(st.commit(st.ctx), DUET_OK);
    assert_int_equal(st.expire(st.ctx, 16600, 10000, 1000, &removed), DUET_OK);
    assert_int_equal(removed, 1);
    assert_int_equal(st.begin(st.ctx), DUET_OK);
    assert_int_equal(st.put(st.ctx, m5, 1, &k, 1, data, 10, 16700, &lim, &cur, &dup), DUET_OK);
    assert_false(dup);
    assert_int_equal(st.commit(st.ctx), DUET_OK);

    /* Nameplates: one claim each, expiry, release. */
    duet_testrng_t r;
    duet_rng_t rng = duet_testrng_init(&r, 3);
    uint16_t np, np2;
    assert_int_equal(st.np_allocate(st.ctx, 0, 0, 1000, rng, &np), DUET_OK);
    assert_true(np >= 1 && np <= 9999);
    assert_int_equal(st.np_claim(st.ctx, np, 10), DUET_OK);
    assert_int_equal(st.np_claim(st.ctx, np, 10), DUET_ENAMEPLATE);
    assert_int_equal(st.np_allocate(st.ctx, 0, 0, 1000, rng, &np2), DUET_OK);
    assert_int_not_equal(np, np2);
    assert_int_equal(st.np_claim(st.ctx, np2, 1000), DUET_ENAMEPLATE); /* expired */
    assert_int_equal(st.np_claim(st.ctx, 1234, 0) == DUET_OK && np != 1234 && np2 != 1234, false);
    st.np_release(st.ctx, np);
    assert_int_equal(st.np_claim(st.ctx, np, 10), DUET_ENAMEPLATE);
    /* A wanted nameplate: granted when free, refused while someone holds it. */
    uint16_t np3;
    assert_int_equal(st.np_allocate(st.ctx, 4242, 0, 1000, rng, &np3), DUET_OK);
    assert_int_equal(np3, 4242);
    assert_int_equal(st.np_allocate(st.ctx, 4242, 10, 1000, rng, &np3), DUET_ENAMEPLATE);
    assert_int_equal(st.np_allocate(st.ctx, 4242, 1000, 1000, rng, &np3), DUET_OK); /* expired */
    duet_relay_sqlite_close(db);
}

/* ---- the server engine ---------------------------------------------------------------------- */

typedef struct wire {
    duet_relayd_t *d;
    duet_relay_sqlite_t *db;
    duet_relay_store_t st;
    duet_testrng_t r;
    int wakes;
} wire_t;

static void on_wake(void *ctx, void *user)
{
    (void)user;
    ((wire_t *)ctx)->wakes++;
}

static void wire_init(wire_t *w, const duet_relay_config_t *cfg)
{
    duet_relay_config_t c;
    memset(w, 0, sizeof *w);
    if (cfg == NULL) {
        duet_relay_config_default(&c);
        cfg = &c;
    }
    assert_int_equal(duet_relay_sqlite_open(":memory:", &w->db), DUET_OK);
    w->st = duet_relay_sqlite_store(w->db);
    w->d = duet_relayd_new(&w->st, cfg, duet_testrng_init(&w->r, 11), on_wake, w);
    assert_non_null(w->d);
}

static void wire_dispose(wire_t *w)
{
    duet_relayd_free(w->d);
    duet_relay_sqlite_close(w->db);
}

/* Send one encoded request to c, flush, and return the first response frame, decoded into f
 * (the caller disposes it). buf keeps the frame bytes alive. */
static void request(wire_t *w, duet_relayd_conn_t *c, duet_codec_enc_t *enc, duet_relay_frame_t *f,
                    uint8_t **buf)
{
    const uint8_t *req, *resp;
    size_t len, rlen;
    assert_int_equal(duet_codec_enc_finish(enc, &req, &len), DUET_OK);
    duet_err_t ignored = duet_relayd_recv(c, req, len, 1000);
    (void)ignored;
    duet_codec_enc_reset(enc);
    assert_int_equal(duet_relayd_flush(w->d, 1000), DUET_OK);
    assert_true(duet_relayd_next_frame(c, 1000, &resp, &rlen));
    *buf = malloc(rlen);
    memcpy(*buf, resp, rlen);
    assert_int_equal(duet_relay_frame_decode(f, *buf, rlen), DUET_OK);
}

static duet_relayd_conn_t *hello(wire_t *w, duet_codec_enc_t *enc)
{
    duet_relayd_conn_t *c = duet_relayd_conn_new(w->d, NULL);
    duet_relay_frame_t f;
    uint8_t *buf;
    assert_non_null(c);
    duet_relay_enc_hello(enc, 1);
    request(w, c, enc, &f, &buf);
    assert_int_equal(f.type, DUET_RELAY_WELCOME);
    duet_relay_frame_dispose(&f);
    free(buf);
    return c;
}

static void keys_for(duet_relay_keys_t *a, duet_relay_keys_t *b, uint8_t seed)
{
    uint8_t ps[32], pka[32], pkb[32];
    memset(ps, seed, 32);
    memset(pka, 0xaa, 32);
    memset(pkb, 0xbb, 32);
    duet_relay_keys_derive(a, ps, pka, pkb);
    if (b != NULL) {
        duet_relay_keys_derive(b, ps, pkb, pka);
    }
}

static void test_engine_hello_and_garbage(void **state)
{
    (void)state;
    wire_t w;
    wire_init(&w, NULL);
    duet_codec_enc_t enc;
    duet_codec_enc_init(&enc, DUET_RELAY_FRAME_MAX);
    duet_relay_frame_t f;
    uint8_t *buf;

    /* A request before HELLO: fatal, and the connection refuses everything after. */
    duet_relayd_conn_t *c = duet_relayd_conn_new(w.d, NULL);
    duet_relay_enc_ping(&enc, 5);
    request(&w, c, &enc, &f, &buf);
    assert_int_equal(f.type, DUET_RELAY_ERROR);
    assert_true(f.fatal);
    assert_int_equal(f.err, DUET_EPROTO);
    assert_int_equal(duet_relayd_conn_error(c), DUET_EPROTO);
    duet_relay_frame_dispose(&f);
    free(buf);
    duet_relay_enc_hello(&enc, 1);
    const uint8_t *req;
    size_t len;
    assert_int_equal(duet_codec_enc_finish(&enc, &req, &len), DUET_OK);
    assert_int_equal(duet_relayd_recv(c, req, len, 0), DUET_EPROTO);
    duet_codec_enc_reset(&enc);
    duet_relayd_conn_free(c);

    /* Another version: fatal EVERSION, the relay's version in the frame. */
    c = duet_relayd_conn_new(w.d, NULL);
    duet_codec_put_map(&enc, 3);
    duet_codec_put_key(&enc, 0);
    duet_codec_put_uint(&enc, DUET_RELAY_HELLO);
    duet_codec_put_key(&enc, 1);
    duet_codec_put_uint(&enc, 1);
    duet_codec_put_key(&enc, 2);
    duet_codec_put_uint(&enc, 2);
    request(&w, c, &enc, &f, &buf);
    assert_int_equal(f.err, DUET_EVERSION);
    assert_int_equal(f.version, DUET_RELAY_VERSION);
    duet_relay_frame_dispose(&f);
    free(buf);
    duet_relayd_conn_free(c);

    /* Garbage, truncated and empty frames after HELLO: fatal EPROTO, nothing stored. */
    static const uint8_t garbage[] = {0xc1, 0xff, 0x00, 0x13};
    for (int i = 0; i < 3; i++) {
        c = hello(&w, &enc);
        const uint8_t *g = garbage;
        size_t gl = i == 0 ? sizeof garbage : (i == 1 ? 1 : 0);
        uint8_t trunc[] = {0x88, 0x00, 0x02, 0x01};
        if (i == 1) {
            g = trunc;
            gl = sizeof trunc;
        }
        assert_int_equal(duet_relayd_recv(c, g, gl, 0), DUET_EPROTO);
        assert_int_equal(duet_relayd_flush(w.d, 0), DUET_OK);
        const uint8_t *resp;
        size_t rlen;
        assert_true(duet_relayd_next_frame(c, 0, &resp, &rlen));
        assert_int_equal(duet_relay_frame_decode(&f, resp, rlen), DUET_OK);
        assert_true(f.fatal);
        duet_relay_frame_dispose(&f);
        duet_relayd_conn_free(c);
    }
    /* A response type sent as a request, and a second HELLO. */
    c = hello(&w, &enc);
    duet_relay_enc_ok(&enc, 3, 0);
    request(&w, c, &enc, &f, &buf);
    assert_true(f.fatal);
    duet_relay_frame_dispose(&f);
    free(buf);
    duet_relayd_conn_free(c);
    c = hello(&w, &enc);
    duet_relay_enc_hello(&enc, 2);
    request(&w, c, &enc, &f, &buf);
    assert_true(f.fatal);
    duet_relay_frame_dispose(&f);
    free(buf);
    duet_relayd_conn_free(c);

    duet_relay_stats_t s;
    assert_int_equal(w.st.stats(w.st.ctx, &s), DUET_OK);
    assert_int_equal(s.objects, 0);
    duet_codec_enc_dispose(&enc);
    wire_dispose(&w);
}

static void test_engine_wrong_capability(void **state)
{
    (void)state;
    wire_t w;
    wire_init(&w, NULL);
    duet_codec_enc_t enc;
    duet_codec_enc_init(&enc, DUET_RELAY_FRAME_MAX);
    duet_relay_frame_t f;
    uint8_t *buf, oid[16] = {1};
    duet_relay_keys_t a, b;
    keys_for(&a, &b, 1);
    duet_relayd_conn_t *c = hello(&w, &enc);

    /* a stores an object: the mailbox exists. */
    duet_relay_enc_put(&enc, 2, &a.out, DUET_RELAY_ENVELOPE, oid, 16, oid, 16);
    request(&w, c, &enc, &f, &buf);
    assert_int_equal(f.type, DUET_RELAY_OK);
    duet_relay_frame_dispose(&f);
    free(buf);

    /* A stranger's read of it with a wrong capability, and of a mailbox that does not exist:
     * the same refusal, byte for byte. */
    duet_relay_dir_t wrong = b.in;
    wrong.rcap[0] ^= 1;
    duet_relay_enc_list(&enc, 3, &wrong, 0, 0, 10);
    uint8_t *buf1;
    request(&w, c, &enc, &f, &buf1);
    assert_int_equal(f.type, DUET_RELAY_ERROR);
    assert_int_equal(f.err, DUET_ECAPABILITY);
    assert_false(f.fatal);
    duet_relay_frame_dispose(&f);
    duet_relay_keys_t x, y;
    keys_for(&x, &y, 2); /* nobody ever wrote x's mailbox */
    duet_relay_dir_t wrong2 = y.in;
    wrong2.rcap[0] ^= 1;
    duet_relay_enc_list(&enc, 3, &wrong2, 0, 0, 10);
    uint8_t *buf2;
    request(&w, c, &enc, &f, &buf2);
    duet_relay_frame_dispose(&f);
    assert_memory_equal(buf1, buf2, 10);
    free(buf1);
    free(buf2);

    /* The read capability cannot write, the write capability cannot read, and a squatter
     * cannot create a mailbox under someone else's id with caps of their own. */
    duet_relay_dir_t swap = a.out;
    memcpy(swap.wcap, a.out.rcap, 32);
    memcpy(swap.rhash, a.out.whash, 32);
    duet_relay_enc_put(&enc, 4, &swap, DUET_RELAY_ENVELOPE, oid, 16, oid, 16);
    request(&w, c, &enc, &f, &buf);
    assert_int_equal(f.err, DUET_ECAPABILITY);
    duet_relay_frame_dispose(&f);
    free(buf);
    duet_relay_dir_t rd = b.in;
    memcpy(rd.rcap, a.out.wcap, 32);
    memcpy(rd.whash, a.out.rhash, 32);
    duet_relay_enc_get(&enc, 5, &rd, oid, 16);
    request(&w, c, &enc, &f, &buf);
    assert_int_equal(f.err, DUET_ECAPABILITY);
    duet_relay_frame_dispose(&f);
    free(buf);
    duet_relay_dir_t squat = x.out;
    memcpy(squat.mbox, a.out.mbox, 32);
    duet_relay_enc_put(&enc, 6, &squat, DUET_RELAY_ENVELOPE, oid, 16, oid, 16);
    request(&w, c, &enc, &f, &buf);
    assert_int_equal(f.err, DUET_ECAPABILITY);
    duet_relay_frame_dispose(&f);
    free(buf);
    /* Subscribe and delete with a wrong capability: refused too. */
    duet_relay_enc_subscribe(&enc, 7, &wrong);
    request(&w, c, &enc, &f, &buf);
    assert_int_equal(f.err, DUET_ECAPABILITY);
    duet_relay_frame_dispose(&f);
    free(buf);
    const uint8_t *oids[1] = {oid};
    size_t lens[1] = {16};
    duet_relay_enc_delete(&enc, 8, &wrong, oids, lens, 1);
    request(&w, c, &enc, &f, &buf);
    assert_int_equal(f.err, DUET_ECAPABILITY);
    duet_relay_frame_dispose(&f);
    free(buf);

    /* The right reader sees the object. */
    duet_relay_enc_get(&enc, 9, &b.in, oid, 16);
    request(&w, c, &enc, &f, &buf);
    assert_int_equal(f.type, DUET_RELAY_OBJECT);
    assert_int_equal(f.data_len, 16);
    duet_relay_frame_dispose(&f);
    free(buf);
    duet_relayd_conn_free(c);
    duet_relay_keys_dispose(&a);
    duet_relay_keys_dispose(&b);
    duet_relay_keys_dispose(&x);
    duet_relay_keys_dispose(&y);
    duet_codec_enc_dispose(&enc);
    wire_dispose(&w);
}

static void test_engine_quota_isolated(void **state)
{
    (void)state;
    duet_relay_config_t cfg;
    duet_relay_config_default(&cfg);
    cfg.mailbox_items = 5;
    wire_t w;
    wire_init(&w, &cfg);
    duet_codec_enc_t enc;
    duet_codec_enc_init(&enc, DUET_RELAY_FRAME_MAX);
    duet_relay_frame_t f;
    uint8_t *buf, oid[16] = {0};
    duet_relay_keys_t a, x;
    keys_for(&a, NULL, 1);
    keys_for(&x, NULL, 2);
    duet_relayd_conn_t *flood = hello(&w, &enc), *other = hello(&w, &enc);
    int refused = 0;
    for (int i = 0; i < 20; i++) {
        oid[0] = (uint8_t)i;
        duet_relay_enc_put(&enc, (uint32_t)i + 2, &a.out, DUET_RELAY_ENVELOPE, oid, 16, oid, 16);
        request(&w, flood, &enc, &f, &buf);
        if (f.type == DUET_RELAY_ERROR) {
            assert_int_equal(f.err, DUET_EQUOTA);
            assert_false(f.fatal);
            refused++;
        }
        duet_relay_frame_dispose(&f);
        free(buf);
    }
    assert_int_equal(refused, 15);
    /* Another mailbox, on another connection, is unaffected. */
    duet_relay_enc_put(&enc, 2, &x.out, DUET_RELAY_ENVELOPE, oid, 16, oid, 16);
    request(&w, other, &enc, &f, &buf);
    assert_int_equal(f.type, DUET_RELAY_OK);
    duet_relay_frame_dispose(&f);
    free(buf);
    /* An object over the relay's max-object: refused with ETOOBIG, not fatal. */
    uint8_t *big = calloc(1, DUET_RELAY_OBJECT_MAX);
    duet_relayd_conn_free(flood);
    duet_relayd_conn_free(other);
    duet_relayd_free(w.d);
    cfg.max_object = 1024;
    w.d = duet_relayd_new(&w.st, &cfg, duet_testrng_init(&w.r, 12), on_wake, &w);
    duet_relayd_conn_t *c = hello(&w, &enc);
    duet_relay_enc_put(&enc, 2, &x.out, DUET_RELAY_ENVELOPE, (const uint8_t *)"big", 3, big, 1025);
    request(&w, c, &enc, &f, &buf);
    assert_int_equal(f.err, DUET_ETOOBIG);
    duet_relay_frame_dispose(&f);
    free(buf);
    free(big);
    duet_relayd_conn_free(c);
    duet_relay_keys_dispose(&a);
    duet_relay_keys_dispose(&x);
    duet_codec_enc_dispose(&enc);
    wire_dispose(&w);
}

/* A store whose commit fails on demand, around the SQLite one. */
typedef struct failing {
    duet_relay_store_t inner;
    bool fail_commit;
} failing_t;

static duet_err_t fl_commit(void *ctx)
{
    failing_t *f = ctx;
    if (f->fail_commit) {
        f->inner.rollback(f->inner.ctx);
        return DUET_ENOSPC;
    }
    return f->inner.commit(f->inner.ctx);
}

#define FWD(name, ...)                                                                             \
    failing_t *f = ctx;                                                                            \
    return f->inner.name(f->inner.ctx, __VA_ARGS__)
static duet_err_t fl_begin(void *ctx)
{
    failing_t *f = ctx;
    return f->inner.begin(f->inner.ctx);
}
static void fl_rollback(void *ctx)
{
    failing_t *f = ctx;
    f->inner.rollback(f->inner.ctx);
}
static duet_err_t fl_put(void *ctx, const uint8_t mbox[32], uint8_t cls, const uint8_t *oid,
                         size_t oid_len, const uint8_t *data, size_t len, uint64_t now_ms,
                         const duet_relay_limits_t *lim, uint64_t *cursor, bool *dup)
{
    FWD(put, mbox, cls, oid, oid_len, data, len, now_ms, lim, cursor, dup);
}
static duet_err_t fl_list(void *ctx, const uint8_t mbox[32], uint8_t cls, uint64_t after,
                          uint64_t now_ms, duet_relay_entry_t *out, size_t cap, size_t *n,
                          bool *more)
{
    FWD(list, mbox, cls, after, now_ms, out, cap, n, more);
}
static duet_err_t fl_get(void *ctx, const uint8_t mbox[32], const uint8_t *oid, size_t oid_len,
                         uint64_t now_ms, duet_relay_entry_t *meta, const uint8_t **data)
{
    FWD(get, mbox, oid, oid_len, now_ms, meta, data);
}
static duet_err_t fl_del(void *ctx, const uint8_t mbox[32], const uint8_t *oid, size_t oid_len,
                         uint64_t keep, bool *deleted)
{
    FWD(del, mbox, oid, oid_len, keep, deleted);
}
static duet_err_t fl_expire(void *ctx, uint64_t now_ms, uint64_t ttl_ms, size_t max,
                            uint64_t *removed)
{
    FWD(expire, now_ms, ttl_ms, max, removed);
}
static duet_err_t fl_stats(void *ctx, duet_relay_stats_t *out)
{
    FWD(stats, out);
}
static duet_err_t fl_np_allocate(void *ctx, uint16_t want, uint64_t now_ms, uint64_t ttl_ms,
                                 duet_rng_t rng, uint16_t *np)
{
    FWD(np_allocate, want, now_ms, ttl_ms, rng, np);
}
static duet_err_t fl_np_claim(void *ctx, uint16_t np, uint64_t now_ms)
{
    FWD(np_claim, np, now_ms);
}
static void fl_np_release(void *ctx, uint16_t np)
{
    failing_t *f = ctx;
    f->inner.np_release(f->inner.ctx, np);
}
#undef FWD

static duet_relay_store_t failing_store(failing_t *f)
{
    duet_relay_store_t s = {
        f,      fl_begin,  fl_commit, fl_rollback,    fl_put,      fl_list,      fl_get,
        fl_del, fl_expire, fl_stats,  fl_np_allocate, fl_np_claim, fl_np_release};
    return s;
}

static void test_engine_commit_failure(void **state)
{
    (void)state;
    wire_t w;
    wire_init(&w, NULL);
    failing_t fl = {w.st, false};
    duet_relay_store_t fs = failing_store(&fl);
    duet_relay_config_t cfg;
    duet_relay_config_default(&cfg);
    duet_relayd_free(w.d);
    w.d = duet_relayd_new(&fs, &cfg, duet_testrng_init(&w.r, 13), on_wake, &w);
    duet_codec_enc_t enc;
    duet_codec_enc_init(&enc, DUET_RELAY_FRAME_MAX);
    duet_relay_keys_t a, b;
    keys_for(&a, &b, 1);
    duet_relayd_conn_t *c = hello(&w, &enc), *sub = hello(&w, &enc);
    duet_relay_frame_t f;
    uint8_t *buf;
    duet_relay_enc_subscribe(&enc, 2, &b.in);
    request(&w, sub, &enc, &f, &buf);
    assert_int_equal(f.type, DUET_RELAY_OK);
    duet_relay_frame_dispose(&f);
    free(buf);

    /* Ten PUTs in one batch, then a GET and a PING; the commit fails: every PUT is answered
     * with the error, the reads see nothing, the subscriber hears nothing. */
    fl.fail_commit = true;
    const uint8_t *req, *resp;
    size_t len, rlen;
    for (uint8_t i = 0; i < 10; i++) {
        uint8_t oid[16] = {i};
        duet_relay_enc_put(&enc, 10u + i, &a.out, DUET_RELAY_ENVELOPE, oid, 16, oid, 16);
        assert_int_equal(duet_codec_enc_finish(&enc, &req, &len), DUET_OK);
        assert_int_equal(duet_relayd_recv(c, req, len, 0), DUET_OK);
        duet_codec_enc_reset(&enc);
        assert_false(duet_relayd_has_output(c)); /* nothing before the commit */
    }
    uint8_t oid0[16] = {0};
    duet_relay_enc_get(&enc, 20, &b.in, oid0, 16);
    assert_int_equal(duet_codec_enc_finish(&enc, &req, &len), DUET_OK);
    assert_int_equal(duet_relayd_recv(c, req, len, 0), DUET_OK);
    duet_codec_enc_reset(&enc);
    assert_int_equal(duet_relayd_flush(w.d, 0), DUET_ENOSPC);
    for (int i = 0; i < 10; i++) {
        assert_true(duet_relayd_next_frame(c, 0, &resp, &rlen));
        assert_int_equal(duet_relay_frame_decode(&f, resp, rlen), DUET_OK);
        assert_int_equal(f.type, DUET_RELAY_ERROR);
        assert_int_equal(f.err, DUET_ENOSPC);
        assert_int_equal(f.rid, 10 + i);
        duet_relay_frame_dispose(&f);
    }
    assert_true(duet_relayd_next_frame(c, 0, &resp, &rlen));
    assert_int_equal(duet_relay_frame_decode(&f, resp, rlen), DUET_OK);
    assert_int_equal(f.err, DUET_ENOENT);
    duet_relay_frame_dispose(&f);
    assert_false(duet_relayd_next_frame(sub, 0, &resp, &rlen));

    /* Disk back: the same PUTs succeed, and the subscriber gets one NOTIFY with the last
     * cursor (coalesced). */
    fl.fail_commit = false;
    for (uint8_t i = 0; i < 10; i++) {
        uint8_t oid[16] = {i};
        duet_relay_enc_put(&enc, 30u + i, &a.out, DUET_RELAY_ENVELOPE, oid, 16, oid, 16);
        assert_int_equal(duet_codec_enc_finish(&enc, &req, &len), DUET_OK);
        assert_int_equal(duet_relayd_recv(c, req, len, 0), DUET_OK);
        duet_codec_enc_reset(&enc);
    }
    assert_int_equal(duet_relayd_flush(w.d, 0), DUET_OK);
    for (int i = 0; i < 10; i++) {
        assert_true(duet_relayd_next_frame(c, 0, &resp, &rlen));
        assert_int_equal(duet_relay_frame_decode(&f, resp, rlen), DUET_OK);
        assert_int_equal(f.type, DUET_RELAY_OK);
        assert_int_equal(f.value, (uint64_t)i + 1);
        duet_relay_frame_dispose(&f);
    }
    assert_true(duet_relayd_next_frame(sub, 0, &resp, &rlen));
    assert_int_equal(duet_relay_frame_decode(&f, resp, rlen), DUET_OK);
    assert_int_equal(f.type, DUET_RELAY_NOTIFY);
    assert_int_equal(f.value, 10);
    assert_memory_equal(f.mbox, b.in.mbox, 32);
    duet_relay_frame_dispose(&f);
    assert_false(duet_relayd_next_frame(sub, 0, &resp, &rlen));
    duet_relayd_counters_t n = duet_relayd_counters(w.d);
    assert_int_equal(n.commit_failures, 1);
    assert_int_equal(n.puts, 20);

    duet_relayd_conn_free(c);
    duet_relayd_conn_free(sub);
    duet_relay_keys_dispose(&a);
    duet_relay_keys_dispose(&b);
    duet_codec_enc_dispose(&enc);
    wire_dispose(&w);
}

static void test_engine_window(void **state)
{
    (void)state;
    wire_t w;
    wire_init(&w, NULL);
    duet_codec_enc_t enc;
    duet_codec_enc_init(&enc, DUET_RELAY_FRAME_MAX);
    duet_relayd_conn_t *c = hello(&w, &enc);
    const uint8_t *req, *resp;
    size_t len, rlen;
    uint8_t ping[16];
    duet_relay_enc_ping(&enc, 1);
    assert_int_equal(duet_codec_enc_finish(&enc, &req, &len), DUET_OK);
    assert_true(len <= sizeof ping);
    memcpy(ping, req, len);
    req = ping;
    duet_codec_enc_reset(&enc);
    for (size_t i = 0; i < DUET_RELAY_WINDOW; i++) {
        assert_int_equal(duet_relayd_recv(c, req, len, 0), DUET_OK);
    }
    /* One more than the window, without reading a response: the connection is closed. */
    assert_int_equal(duet_relayd_recv(c, req, len, 0), DUET_EPROTO);
    assert_int_equal(duet_relayd_flush(w.d, 0), DUET_OK);
    size_t frames = 0;
    while (duet_relayd_next_frame(c, 0, &resp, &rlen)) {
        frames++;
    }
    assert_int_equal(frames, DUET_RELAY_WINDOW + 1); /* the pings, then the fatal ERROR */
    duet_relayd_conn_free(c);
    /* Within the window, reading as it goes, a client can send forever. */
    c = hello(&w, &enc);
    for (size_t i = 0; i < 4 * DUET_RELAY_WINDOW; i++) {
        assert_int_equal(duet_relayd_recv(c, req, len, 0), DUET_OK);
        assert_int_equal(duet_relayd_flush(w.d, 0), DUET_OK);
        assert_true(duet_relayd_next_frame(c, 0, &resp, &rlen));
    }
    duet_relayd_conn_free(c);
    duet_codec_enc_dispose(&enc);
    wire_dispose(&w);
}

static void test_engine_rendezvous(void **state)
{
    (void)state;
    wire_t w;
    wire_init(&w, NULL);
    duet_codec_enc_t enc;
    duet_codec_enc_init(&enc, DUET_RELAY_FRAME_MAX);
    duet_relay_frame_t f;
    uint8_t *buf, pad[DUET_RELAY_PAIR_MSG];
    const uint8_t *resp;
    size_t rlen;
    duet_relayd_conn_t *lis = hello(&w, &enc), *join = hello(&w, &enc), *thief = hello(&w, &enc);

    duet_relay_enc_allocate(&enc, 2, 0);
    request(&w, lis, &enc, &f, &buf);
    assert_int_equal(f.type, DUET_RELAY_OK);
    uint16_t np = (uint16_t)f.value;
    assert_true(np >= 1 && np <= 9999);
    duet_relay_frame_dispose(&f);
    free(buf);
    assert_true(duet_relayd_conn_waiting(lis));

    /* A message before anyone claimed: nobody to give it to. */
    assert_int_equal(duet_relay_pair_pad(pad, (const uint8_t *)"early", 5), DUET_OK);
    duet_relay_enc_pmsg(&enc, 3, pad);
    request(&w, lis, &enc, &f, &buf);
    assert_int_equal(f.err, DUET_ENOENT);
    duet_relay_frame_dispose(&f);
    free(buf);

    duet_relay_enc_claim(&enc, 2, np);
    request(&w, join, &enc, &f, &buf);
    assert_int_equal(f.type, DUET_RELAY_OK);
    duet_relay_frame_dispose(&f);
    free(buf);
    /* One pairing per nameplate: a third party is refused. */
    duet_relay_enc_claim(&enc, 2, np);
    request(&w, thief, &enc, &f, &buf);
    assert_int_equal(f.err, DUET_ENAMEPLATE);
    duet_relay_frame_dispose(&f);
    free(buf);
    duet_relay_enc_claim(&enc, 3, np == 9999 ? 1 : (uint16_t)(np + 1));
    request(&w, thief, &enc, &f, &buf);
    assert_int_equal(f.err, DUET_ENAMEPLATE); /* nobody waits there */
    duet_relay_frame_dispose(&f);
    free(buf);

    /* Messages cross, both ways, byte for byte. */
    assert_int_equal(duet_relay_pair_pad(pad, (const uint8_t *)"P1 from the joiner", 18), DUET_OK);
    duet_relay_enc_pmsg(&enc, 3, pad);
    request(&w, join, &enc, &f, &buf);
    assert_int_equal(f.type, DUET_RELAY_OK);
    duet_relay_frame_dispose(&f);
    free(buf);
    assert_true(duet_relayd_next_frame(lis, 0, &resp, &rlen));
    assert_int_equal(duet_relay_frame_decode(&f, resp, rlen), DUET_OK);
    assert_int_equal(f.type, DUET_RELAY_PDATA);
    assert_memory_equal(f.data, pad, DUET_RELAY_PAIR_MSG);
    duet_relay_frame_dispose(&f);
    assert_false(duet_relayd_next_frame(thief, 0, &resp, &rlen));

    /* The joiner leaves: the listener hears it, the nameplate is free again, and cannot be
     * claimed (nobody holds it). */
    duet_relayd_conn_free(join);
    assert_int_equal(duet_relayd_flush(w.d, 0), DUET_OK);
    assert_true(duet_relayd_next_frame(lis, 0, &resp, &rlen));
    assert_int_equal(duet_relay_frame_decode(&f, resp, rlen), DUET_OK);
    assert_int_equal(f.type, DUET_RELAY_PCLOSED);
    assert_int_equal(f.err, DUET_ECLOSED);
    duet_relay_frame_dispose(&f);
    assert_false(duet_relayd_conn_waiting(lis));
    duet_relay_enc_claim(&enc, 4, np);
    request(&w, thief, &enc, &f, &buf);
    assert_int_equal(f.err, DUET_ENAMEPLATE);
    duet_relay_frame_dispose(&f);
    free(buf);

    /* A nameplate nobody claims expires. */
    duet_relay_enc_allocate(&enc, 5, 4242);
    request(&w, lis, &enc, &f, &buf);
    assert_int_equal(f.value, 4242); /* the nameplate of the listener's own code */
    assert_int_equal(f.type, DUET_RELAY_OK);
    duet_relay_frame_dispose(&f);
    free(buf);
    assert_int_equal(duet_relayd_tick(w.d, 1000 + 600 * 1000 + 1), DUET_OK);
    assert_true(duet_relayd_next_frame(lis, 0, &resp, &rlen));
    assert_int_equal(duet_relay_frame_decode(&f, resp, rlen), DUET_OK);
    assert_int_equal(f.type, DUET_RELAY_PCLOSED);
    assert_int_equal(f.err, DUET_ETIMEDOUT);
    duet_relay_frame_dispose(&f);

    duet_relayd_conn_free(lis);
    duet_relayd_conn_free(thief);
    duet_codec_enc_dispose(&enc);
    wire_dispose(&w);
}

/* ---- the client session against the engine ------------------------------------------------- */

#define MAXN 4096

/* One device's outbox and receive state, in memory. */
typedef struct dev {
    uint8_t *out[MAXN]; /* my envelopes by seq; NULL once acknowledged */
    size_t out_len[MAXN];
    bool relayed[MAXN];
    uint64_t out_last;
    uint8_t have[MAXN]; /* partner envelopes stored (committed) */
    uint8_t pending[MAXN];
    uint8_t got_bytes[MAXN]; /* first byte of each stored envelope, to check content */
    bool open;
    bool fail_commit;
    size_t stored, delivered;
} device_t;

static duet_err_t d_state(void *ctx, uint64_t *wm, uint64_t *above, size_t cap, size_t *n)
{
    device_t *d = ctx;
    uint64_t w = 0;
    while (w + 1 < MAXN && d->have[w + 1]) {
        w++;
    }
    *wm = w;
    *n = 0;
    for (uint64_t s = w + 1; s < MAXN && *n < cap; s++) {
        if (d->have[s]) {
            above[(*n)++] = s;
        }
    }
    return DUET_OK;
}

static duet_err_t d_next(void *ctx, uint64_t after, uint64_t *seq, const uint8_t **env, size_t *len)
{
    device_t *d = ctx;
    for (uint64_t s = after + 1; s <= d->out_last; s++) {
        if (d->out[s] != NULL && !d->relayed[s]) {
            *seq = s;
            *env = d->out[s];
            *len = d->out_len[s];
            return DUET_OK;
        }
    }
    return DUET_ENOENT;
}

static duet_err_t d_mark(void *ctx, uint64_t seq)
{
    device_t *d = ctx;
    assert_true(seq <= d->out_last);
    d->relayed[seq] = true;
    return DUET_OK;
}

static duet_err_t d_begin(void *ctx)
{
    device_t *d = ctx;
    assert_false(d->open);
    d->open = true;
    memset(d->pending, 0, sizeof d->pending);
    return DUET_OK;
}

static duet_err_t d_put(void *ctx, uint64_t seq, const uint8_t *env, size_t len, bool *counted)
{
    device_t *d = ctx;
    *counted = false;
    assert_true(d->open);
    if (seq >= MAXN) {
        return DUET_ERANGE;
    }
    if (d->have[seq] || d->pending[seq]) {
        return DUET_EDUP;
    }
    /* The envelope must be what the sender sealed: byte i == (seq + i) & 0xff. */
    for (size_t i = 0; i < len; i++) {
        if (env[i] != (uint8_t)(seq + i)) {
            return DUET_EAUTH;
        }
    }
    d->pending[seq] = 1;
    *counted = true;
    return DUET_OK;
}

static duet_err_t d_commit(void *ctx)
{
    device_t *d = ctx;
    assert_true(d->open);
    if (d->fail_commit) {
        return DUET_ENOSPC;
    }
    for (size_t s = 0; s < MAXN; s++) {
        if (d->pending[s]) {
            assert_false(d->have[s]); /* exactly once */
            d->have[s] = 1;
            d->stored++;
        }
    }
    d->open = false;
    return DUET_OK;
}

static void d_abort(void *ctx)
{
    device_t *d = ctx;
    memset(d->pending, 0, sizeof d->pending);
    d->open = false;
}

static duet_err_t d_acked(void *ctx, uint64_t wm, const uint64_t *above, size_t n, uint64_t *items)
{
    device_t *d = ctx;
    *items = 0;
    for (uint64_t s = 1; s <= d->out_last && s < MAXN; s++) {
        bool got = s <= wm;
        for (size_t j = 0; j < n && !got; j++) {
            got = above[j] == s;
        }
        if (got && d->out[s] != NULL) {
            free(d->out[s]);
            d->out[s] = NULL;
            (*items)++;
            d->delivered++;
        }
    }
    return DUET_OK;
}

static duet_relay_host_t host_of(device_t *d)
{
    duet_relay_host_t h = {d, d_state, d_next, d_mark, d_begin, d_put, d_commit, d_abort, d_acked};
    return h;
}

static void write_notes(device_t *d, size_t n, size_t len)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t s = ++d->out_last;
        d->out[s] = malloc(len);
        for (size_t k = 0; k < len; k++) {
            d->out[s][k] = (uint8_t)(s + k);
        }
        d->out_len[s] = len;
    }
}

static void dev_free(device_t *d)
{
    for (size_t i = 0; i < MAXN; i++) {
        free(d->out[i]);
    }
    free(d);
}

/* Move frames between a session and its connection until both are quiet. drop_after: cut
 * the link (stop moving frames) after this many relay-bound frames (0: never). Returns the
 * number of relay-bound frames moved. */
static size_t run(wire_t *w, duet_relay_sync_t *s, duet_relayd_conn_t *c, size_t drop_after)
{
    size_t moved = 0;
    for (int round = 0; round < 100000; round++) {
        bool any = false;
        for (;;) {
            const uint8_t *fr;
            size_t len;
            if (duet_relay_sync_next_frame(s, &fr, &len) != DUET_OK || len == 0) {
                break;
            }
            if (drop_after && moved >= drop_after) {
                return moved;
            }
            duet_err_t ignored = duet_relayd_recv(c, fr, len, 5000);
            (void)ignored;
            moved++;
            any = true;
        }
        assert_int_equal(duet_relayd_flush(w->d, 5000) == DUET_OK, true);
        const uint8_t *fr;
        size_t len;
        while (duet_relayd_next_frame(c, 5000, &fr, &len)) {
            uint8_t *copy = malloc(len);
            memcpy(copy, fr, len);
            duet_err_t ignored = duet_relay_sync_recv(s, copy, len);
            (void)ignored;
            free(copy);
            any = true;
        }
        if (!any) {
            return moved;
        }
    }
    fail_msg("the session did not settle");
    return moved;
}

/* One one-shot sync of device d (keys k) through the relay. */
static duet_relay_sync_counts_t sync_once(wire_t *w, device_t *d, const duet_relay_keys_t *k,
                                          duet_err_t want, duet_err_t want_upload)
{
    duet_relay_host_t h = host_of(d);
    duet_relay_sync_t *s = duet_relay_sync_new(&h, k, duet_testrng_init(&w->r, 99), false);
    duet_relayd_conn_t *c = duet_relayd_conn_new(w->d, NULL);
    run(w, s, c, 0);
    assert_int_equal(duet_relay_sync_error(s), want);
    if (want == DUET_OK) {
        assert_true(duet_relay_sync_done(s));
        if (want_upload != DUET_EINTERNAL) { /* DUET_EINTERNAL here: either */
            assert_int_equal(duet_relay_sync_upload_error(s), want_upload);
        }
    }
    duet_relay_sync_counts_t n = duet_relay_sync_counts(s);
    duet_relay_sync_free(s);
    duet_relayd_conn_free(c);
    return n;
}

static void test_sync_never_online_together(void **state)
{
    (void)state;
    wire_t w;
    wire_init(&w, NULL);
    duet_relay_keys_t ka, kb;
    keys_for(&ka, &kb, 5);
    device_t *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);

    write_notes(a, 25, 520);
    duet_relay_sync_counts_t n = sync_once(&w, a, &ka, DUET_OK, DUET_OK);
    assert_int_equal(n.uploaded, 25);
    for (size_t s = 1; s <= 25; s++) {
        assert_true(a->relayed[s]);
    }
    /* The relay holds 25 envelopes and a's (empty) state; nothing is delivered yet. */
    duet_relay_stats_t st;
    assert_int_equal(w.st.stats(w.st.ctx, &st), DUET_OK);
    assert_int_equal(st.objects, 26);
    assert_int_equal(a->delivered, 0);

    n = sync_once(&w, b, &kb, DUET_OK, DUET_OK);
    assert_int_equal(n.received, 25);
    assert_int_equal(b->stored, 25);
    /* b collected and deleted them: the relay keeps only the two state objects. */
    assert_int_equal(w.st.stats(w.st.ctx, &st), DUET_OK);
    assert_int_equal(st.objects, 2);

    /* b replies; a's next sync uploads nothing new, collects the reply and learns, from
     * b's state, that its 25 were delivered. */
    write_notes(b, 1, 2048);
    n = sync_once(&w, b, &kb, DUET_OK, DUET_OK);
    assert_int_equal(n.uploaded, 1);
    n = sync_once(&w, a, &ka, DUET_OK, DUET_OK);
    assert_int_equal(n.uploaded, 0);
    assert_int_equal(n.received, 1);
    assert_int_equal(n.delivered, 25);
    assert_int_equal(a->delivered, 25);
    /* And b learns its reply was delivered on its next sync. */
    n = sync_once(&w, b, &kb, DUET_OK, DUET_OK);
    assert_int_equal(n.delivered, 1);
    /* Syncing again changes nothing. */
    n = sync_once(&w, a, &ka, DUET_OK, DUET_OK);
    assert_int_equal(n.received + n.uploaded + n.delivered, 0);
    assert_int_equal(b->stored, 25);
    assert_int_equal(a->stored, 1);
    dev_free(a);
    dev_free(b);
    duet_relay_keys_dispose(&ka);
    duet_relay_keys_dispose(&kb);
    wire_dispose(&w);
}

static void test_sync_interrupted(void **state)
{
    (void)state;
    wire_t w;
    wire_init(&w, NULL);
    duet_relay_keys_t ka, kb;
    keys_for(&ka, &kb, 6);
    device_t *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    write_notes(a, 300, 512);

    /* a's uploads cut at many points: what the relay acknowledged is marked relayed, the
     * rest is sent again, nothing twice in the relay. */
    for (size_t cut = 1; cut < 12; cut += 3) {
        duet_relay_host_t h = host_of(a);
        duet_relay_sync_t *s = duet_relay_sync_new(&h, &ka, duet_testrng_init(&w.r, cut), false);
        duet_relayd_conn_t *c = duet_relayd_conn_new(w.d, NULL);
        run(&w, s, c, cut * 7);
        duet_relay_sync_free(s);
        duet_relayd_conn_free(c);
    }
    sync_once(&w, a, &ka, DUET_OK, DUET_OK);
    duet_relay_stats_t st;
    assert_int_equal(w.st.stats(w.st.ctx, &st), DUET_OK);
    assert_int_equal(st.objects, 300 + 1);

    /* b's download cut, and b's store failing at the commit: nothing is deleted from the
     * relay until b has stored it, and b stores each envelope once. */
    for (size_t cut = 2; cut < 40; cut += 5) {
        duet_relay_host_t h = host_of(b);
        duet_relay_sync_t *s = duet_relay_sync_new(&h, &kb, duet_testrng_init(&w.r, cut), false);
        duet_relayd_conn_t *c = duet_relayd_conn_new(w.d, NULL);
        run(&w, s, c, cut);
        duet_relay_sync_free(s);
        duet_relayd_conn_free(c);
    }
    b->fail_commit = true;
    size_t before = b->stored;
    sync_once(&w, b, &kb, DUET_ENOSPC, DUET_OK);
    assert_int_equal(b->stored, before);
    assert_int_equal(w.st.stats(w.st.ctx, &st), DUET_OK);
    assert_true(st.objects >= 300 - before);
    b->fail_commit = false;
    sync_once(&w, b, &kb, DUET_OK, DUET_OK);
    assert_int_equal(b->stored, 300);
    for (size_t s = 1; s <= 300; s++) {
        assert_int_equal(b->have[s], 1);
    }
    sync_once(&w, a, &ka, DUET_OK, DUET_OK);
    assert_int_equal(a->delivered, 300);
    dev_free(a);
    dev_free(b);
    duet_relay_keys_dispose(&ka);
    duet_relay_keys_dispose(&kb);
    wire_dispose(&w);
}

static void test_sync_quota_and_strangers(void **state)
{
    (void)state;
    duet_relay_config_t cfg;
    duet_relay_config_default(&cfg);
    cfg.mailbox_items = 11; /* ten envelopes and the state object */
    wire_t w;
    wire_init(&w, &cfg);
    duet_relay_keys_t ka, kb, kx;
    keys_for(&ka, &kb, 7);
    keys_for(&kx, NULL, 8);
    device_t *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b), *x = calloc(1, sizeof *x);
    write_notes(a, 30, 512);
    /* The mailbox fills: the sync says so, what fitted is relayed, the rest waits. */
    duet_relay_sync_counts_t n = sync_once(&w, a, &ka, DUET_OK, DUET_EQUOTA);
    assert_true(n.uploaded == 10 || n.uploaded == 11);
    /* A stranger's envelopes (another pair's keys, written into a's mailbox id would be
     * refused; written into its own mailbox they are invisible to b). */
    write_notes(x, 5, 512);
    sync_once(&w, x, &kx, DUET_OK, DUET_OK);
    n = sync_once(&w, b, &kb, DUET_OK, DUET_OK);
    assert_int_equal(b->stored, n.received);
    assert_true(b->stored >= 10);
    /* b collected: room again; a's next syncs deliver the rest. */
    for (int i = 0; i < 4 && b->stored < 30; i++) {
        sync_once(&w, a, &ka, DUET_OK, DUET_EINTERNAL);
        sync_once(&w, b, &kb, DUET_OK, DUET_OK);
    }
    assert_int_equal(b->stored, 30);
    sync_once(&w, a, &ka, DUET_OK, DUET_OK); /* everything relayed: no refusal left */
    assert_int_equal(a->delivered, 30);
    dev_free(a);
    dev_free(b);
    dev_free(x);
    duet_relay_keys_dispose(&ka);
    duet_relay_keys_dispose(&kb);
    duet_relay_keys_dispose(&kx);
    wire_dispose(&w);
}

static void test_sync_daemons(void **state)
{
    (void)state;
    wire_t w;
    wire_init(&w, NULL);
    duet_relay_keys_t ka, kb;
    keys_for(&ka, &kb, 9);
    device_t *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    duet_relay_host_t ha = host_of(a), hb = host_of(b);
    duet_relay_sync_t *sa = duet_relay_sync_new(&ha, &ka, duet_testrng_init(&w.r, 1), true);
    duet_relay_sync_t *sb = duet_relay_sync_new(&hb, &kb, duet_testrng_init(&w.r, 2), true);
    duet_relayd_conn_t *ca = duet_relayd_conn_new(w.d, NULL), *cb = duet_relayd_conn_new(w.d, NULL);
    run(&w, sa, ca, 0);
    run(&w, sb, cb, 0);
    assert_true(duet_relay_sync_done(sa));
    assert_true(duet_relay_sync_done(sb));
    /* a writes; a kick uploads; b is told and collects; b's state goes back; a is told. */
    for (int round = 1; round <= 5; round++) {
        write_notes(a, 3, 512);
        duet_relay_sync_kick(sa);
        run(&w, sa, ca, 0);
        run(&w, sb, cb, 0);
        assert_int_equal(b->stored, 3u * (size_t)round);
        run(&w, sa, ca, 0);
        assert_int_equal(a->delivered, 3u * (size_t)round);
    }
    duet_relay_sync_ping(sa);
    run(&w, sa, ca, 0);
    assert_int_equal(duet_relay_sync_error(sa), DUET_OK);
    duet_relay_sync_free(sa);
    duet_relay_sync_free(sb);
    duet_relayd_conn_free(ca);
    duet_relayd_conn_free(cb);
    dev_free(a);
    dev_free(b);
    duet_relay_keys_dispose(&ka);
    duet_relay_keys_dispose(&kb);
    wire_dispose(&w);
}

int main(void)
{
    if (sodium_init() < 0) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys_vectors),
        cmocka_unit_test(test_labels_vectors),
        cmocka_unit_test(test_state_vectors),
        cmocka_unit_test(test_urls),
        cmocka_unit_test(test_frames_vectors),
        cmocka_unit_test(test_frames_malformed),
        cmocka_unit_test(test_pair_padding),
        cmocka_unit_test(test_bucket),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_sqlite_basics),
        cmocka_unit_test(test_sqlite_quota_ttl),
        cmocka_unit_test(test_engine_hello_and_garbage),
        cmocka_unit_test(test_engine_wrong_capability),
        cmocka_unit_test(test_engine_quota_isolated),
        cmocka_unit_test(test_engine_commit_failure),
        cmocka_unit_test(test_engine_window),
        cmocka_unit_test(test_engine_rendezvous),
        cmocka_unit_test(test_sync_never_online_together),
        cmocka_unit_test(test_sync_interrupted),
        cmocka_unit_test(test_sync_quota_and_strangers),
        cmocka_unit_test(test_sync_daemons),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
