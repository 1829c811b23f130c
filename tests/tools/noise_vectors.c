/*
 * duet-noise-vectors — run Noise test vectors through core/noise.
 *
 *   duet-noise-vectors [--json] FILE...
 *
 * FILE is JSON in the common Noise vector format ({"vectors": [...]}, as cacophony and snow
 * ship it; the older "name" / "init_remote_ephemeral" spellings are accepted). Every vector
 * whose protocol duet_noise_supported() accepts is run in both roles with the vector's keys
 * and ephemerals: each handshake ciphertext must match exactly, each payload must decrypt,
 * the handshake hash must match when given, then the transport messages (which keep
 * alternating where the handshake stopped; one-way patterns send everything from the
 * initiator). One bit flipped at the start and at the end of every ciphertext must be
 * caught: by that read, or for a handshake message sent in the clear, later in the
 * handshake. Other vectors are skipped.
 *
 * Output: a line on stderr per failure, then `N passed, M failed, K skipped`. With --json,
 * one line per vector, {"protocol":S,"result":"pass"|"fail"|"skip"}, before the summary.
 * Exit status: 0 when nothing failed, 1 when something did, 2 on a usage error or a file
 * that cannot be read as a vector file.
 */
#include <jansson.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "noise.h"

#define NV_MAX_HEX_BYTES (2u * DUET_NOISE_MAX_MSG) /* no field of a usable vector is longer */

typedef enum { NV_PASS, NV_FAIL, NV_SKIP } nv_result_t;

typedef struct nv_bytes {
    uint8_t *p;
    size_t n;
    bool present;
} nv_bytes_t;

/* One vector, decoded. Index 0 is the initiator, 1 the responder. */
typedef struct nv_vector {
    const char *name;
    nv_bytes_t prologue[2], s[2], e[2], rs[2];
    nv_bytes_t psks[2][DUET_NOISE_MAX_PSKS];
    size_t npsks[2];
    nv_bytes_t hash;
    size_t nmsgs;
    nv_bytes_t *payload, *cipher;
} nv_vector_t;

/* Work buffers, one allocation for the whole run. */
typedef struct nv_work {
    uint8_t msg[DUET_NOISE_MAX_MSG], bad[DUET_NOISE_MAX_MSG], plain[DUET_NOISE_MAX_MSG];
} nv_work_t;

static const char *const nv_prefix[2] = {"init_", "resp_"};

static nv_result_t nv_fail(const nv_vector_t *v, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static nv_result_t nv_fail(const nv_vector_t *v, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "duet-noise-vectors: FAIL %s: ", v->name ? v->name : "(unnamed)");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return NV_FAIL;
}

/* ---- decoding --------------------------------------------------------------------------- */

static bool nv_hex(const json_t *j, nv_bytes_t *out)
{
    const char *hex = json_string_value(j);
    if (hex == NULL) {
        return false;
    }
    size_t len = strlen(hex), bin_len = 0;
    const char *end = NULL;
    if (len % 2 != 0 || len / 2 > NV_MAX_HEX_BYTES) {
        return false;
    }
    out->p = malloc(len / 2 + 1);
    if (out->p == NULL) {
        return false;
    }
    if (sodium_hex2bin(out->p, len / 2, hex, len, NULL, &bin_len, &end) != 0 ||
        end != hex + len) {
        return false;
    }
    out->n = bin_len;
    out->present = true;
    return true;
}

/* An optional hex field: absent is fine, present but malformed is not. */
static bool nv_field(const json_t *obj, const char *prefix, const char *key, nv_bytes_t *out)
{
    char full[64];
    snprintf(full, sizeof full, "%s%s", prefix, key);
    const json_t *j = json_object_get(obj, full);
    return j == NULL || json_is_null(j) || nv_hex(j, out);
}

static void nv_bytes_free(nv_bytes_t *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

static void nv_vector_free(nv_vector_t *v)
{
    for (int r = 0; r < 2; r++) {
        nv_bytes_free(&v->prologue[r]);
        nv_bytes_free(&v->s[r]);
        nv_bytes_free(&v->e[r]);
        nv_bytes_free(&v->rs[r]);
        for (size_t i = 0; i < DUET_NOISE_MAX_PSKS; i++) {
            nv_bytes_free(&v->psks[r][i]);
        }
    }
    nv_bytes_free(&v->hash);
    for (size_t i = 0; i < v->nmsgs; i++) {
        nv_bytes_free(&v->payload[i]);
        nv_bytes_free(&v->cipher[i]);
    }
    free(v->payload);
    free(v->cipher);
}

/* The PSKs: a list "init_psks" (current format) or a single "init_psk" (older files). A
 * list longer than any pattern can use is decoded up to the limit and counted whole. */
static bool nv_psks(const json_t *obj, int r, nv_vector_t *v)
{
    char key[32];
    snprintf(key, sizeof key, "%spsks", nv_prefix[r]);
    const json_t *list = json_object_get(obj, key);
    if (list == NULL || json_is_null(list)) {
        snprintf(key, sizeof key, "%spsk", nv_prefix[r]);
        const json_t *one = json_object_get(obj, key);
        if (one == NULL || json_is_null(one)) {
            return true;
        }
        v->npsks[r] = 1;
        return nv_hex(one, &v->psks[r][0]);
    }
    if (!json_is_array(list)) {
        return false;
    }
    v->npsks[r] = json_array_size(list);
    for (size_t i = 0; i < v->npsks[r] && i < DUET_NOISE_MAX_PSKS; i++) {
        if (!nv_hex(json_array_get(list, i), &v->psks[r][i])) {
            return false;
        }
    }
    return true;
}

static bool nv_decode(const json_t *obj, nv_vector_t *v)
{
    for (int r = 0; r < 2; r++) {
        /* *_remote_ephemeral is accepted and unused: no pattern duet runs has an
         * ephemeral pre-message, and the others are skipped before they get here. */
        if (!nv_field(obj, nv_prefix[r], "prologue", &v->prologue[r]) ||
            !nv_field(obj, nv_prefix[r], "static", &v->s[r]) ||
            !nv_field(obj, nv_prefix[r], "ephemeral", &v->e[r]) ||
            !nv_field(obj, nv_prefix[r], "remote_static", &v->rs[r]) || !nv_psks(obj, r, v)) {
            return false;
        }
    }
    if (!nv_field(obj, "", "handshake_hash", &v->hash)) {
        return false;
    }
    const json_t *msgs = json_object_get(obj, "messages");
    if (!json_is_array(msgs)) {
        return false;
    }
    size_t n = json_array_size(msgs);
    v->payload = calloc(n + 1, sizeof *v->payload);
    v->cipher = calloc(n + 1, sizeof *v->cipher);
    if (v->payload == NULL || v->cipher == NULL) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *m = json_array_get(msgs, i);
        v->nmsgs = i + 1;
        if (!nv_hex(json_object_get(m, "payload"), &v->payload[i]) ||
            !nv_hex(json_object_get(m, "ciphertext"), &v->cipher[i])) {
            return false;
        }
    }
    return true;
}

/* ---- running ---------------------------------------------------------------------------- */

static bool nv_eq(const uint8_t *a, size_t an, const nv_bytes_t *b)
{
    /* Public test data, not secrets: a plain comparison is right here. */
    return an == b->n && (an == 0 || memcmp(a, b->p, an) == 0);
}

/* Build one role's state from the vector; NV_PASS when it started. */
static nv_result_t nv_start(const nv_vector_t *v, int r, const duet_noise_info_t *info,
                            duet_noise_hs_t *hs)
{
    duet_noise_keys_t keys;
    memset(&keys, 0, sizeof keys);
    const char *who = nv_prefix[r];
    if (info->needs_s) {
        if (v->s[r].n != DUET_NOISE_DHLEN) {
            return nv_fail(v, "%sstatic missing or not 32 bytes", who);
        }
        keys.s = v->s[r].p;
    }
    if (info->needs_rs) {
        if (v->rs[r].n != DUET_NOISE_DHLEN) {
            return nv_fail(v, "%sremote_static missing or not 32 bytes", who);
        }
        keys.rs = v->rs[r].p;
    }
    /* Every role of the supported patterns sends an ephemeral, except the responder of a
     * one-way pattern. Without the vector's ephemeral nothing could match. */
    bool sends_e = !(info->one_way && r == 1);
    if (sends_e && v->e[r].n != DUET_NOISE_DHLEN) {
        return nv_fail(v, "%sephemeral missing or not 32 bytes", who);
    }
    keys.e = sends_e ? v->e[r].p : NULL;
    if (v->npsks[r] != info->npsks) {
        return nv_fail(v, "%spsks: %zu given, the pattern uses %u", who, v->npsks[r],
                       (unsigned)info->npsks);
    }
    for (size_t i = 0; i < v->npsks[r]; i++) {
        if (v->psks[r][i].n != DUET_NOISE_KEYLEN) {
            return nv_fail(v, "%spsks[%zu] is not 32 bytes", who, i);
        }
        keys.psks[i] = v->psks[r][i].p;
    }
    keys.npsks = v->npsks[r];
    duet_rng_t no_rng = {NULL, NULL}; /* the vector's ephemeral is always given */
    duet_err_t err = duet_noise_hs_init(
        hs, v->name, r == 0 ? DUET_NOISE_INITIATOR : DUET_NOISE_RESPONDER,
        v->prologue[r].p, v->prologue[r].n, &keys, no_rng);
    if (err != DUET_OK) {
        return nv_fail(v, "%s init: %s", who, duet_err_name(err));
    }
    return NV_PASS;
}

/*
 * Whether the handshake notices that message idx (sent by hs[sender], now in w->bad) was
 * tampered with. Runs on copies of both states: the read of the bad message, and, when it
 * went through (a message sent before any key exists), the rest of the handshake, which
 * must then fail or end with different handshake hashes.
 */
static bool nv_tamper_caught(const nv_vector_t *v, const duet_noise_hs_t hs[2], int sender,
                             size_t idx, size_t len, size_t hs_len, nv_work_t *w)
{
    duet_noise_hs_t c[2] = {hs[0], hs[1]};
    size_t n = 0;
    bool caught = false;
    int to = 1 - sender;
    if (duet_noise_hs_read(&c[to], w->bad, len, w->plain, sizeof w->plain, &n) != DUET_OK) {
        caught = true;
        goto cleanup;
    }
    for (size_t i = idx + 1; i < hs_len && !caught; i++) {
        int s = (int)(i % 2), d = 1 - s;
        if (duet_noise_hs_write(&c[s], v->payload[i].p, v->payload[i].n, w->bad,
                                sizeof w->bad, &len) != DUET_OK ||
            duet_noise_hs_read(&c[d], w->bad, len, w->plain, sizeof w->plain, &n) != DUET_OK) {
            caught = true;
        }
    }
    if (!caught) {
        uint8_t h0[DUET_NOISE_HASHLEN], h1[DUET_NOISE_HASHLEN];
        caught = duet_noise_hs_handshake_hash(&c[0], h0) != DUET_OK ||
                 duet_noise_hs_handshake_hash(&c[1], h1) != DUET_OK ||
                 sodium_memcmp(h0, h1, sizeof h0) != 0;
    }
cleanup:
    duet_noise_hs_dispose(&c[0]);
    duet_noise_hs_dispose(&c[1]);
    return caught;
}

static nv_result_t nv_handshake_msg(const nv_vector_t *v, duet_noise_hs_t hs[2], size_t i,
                                    size_t hs_len, nv_work_t *w)
{
    int s = (int)(i % 2), d = 1 - s;
    size_t len = 0, n = 0;
    duet_err_t err;
    if (!duet_noise_hs_should_write(&hs[s]) || duet_noise_hs_should_write(&hs[d])) {
        return nv_fail(v, "message %zu: wrong turn", i);
    }
    err = duet_noise_hs_write(&hs[s], v->payload[i].p, v->payload[i].n, w->msg,
                              sizeof w->msg, &len);
    if (err != DUET_OK) {
        return nv_fail(v, "message %zu: write: %s", i, duet_err_name(err));
    }
    if (!nv_eq(w->msg, len, &v->cipher[i])) {
        return nv_fail(v, "message %zu: ciphertext differs", i);
    }
    for (size_t flip = 0; flip < 2 && len > 0; flip++) {
        memcpy(w->bad, w->msg, len);
        w->bad[flip == 0 ? 0 : len - 1] ^= flip == 0 ? 0x01 : 0x80;
        if (!nv_tamper_caught(v, hs, s, i, len, hs_len, w)) {
            return nv_fail(v, "message %zu: a flipped bit went unnoticed", i);
        }
    }
    err = duet_noise_hs_read(&hs[d], w->msg, len, w->plain, sizeof w->plain, &n);
    if (err != DUET_OK) {
        return nv_fail(v, "message %zu: read: %s", i, duet_err_name(err));
    }
    if (!nv_eq(w->plain, n, &v->payload[i])) {
        return nv_fail(v, "message %zu: payload differs", i);
    }
    return NV_PASS;
}

/* After the handshake: both sides done, the hash as given, then Split(). */
static nv_result_t nv_finish(const nv_vector_t *v, duet_noise_hs_t hs[2],
                             duet_noise_cs_t send[2], duet_noise_cs_t recv[2])
{
    uint8_t h[2][DUET_NOISE_HASHLEN];
    for (int r = 0; r < 2; r++) {
        if (!duet_noise_hs_done(&hs[r]) ||
            duet_noise_hs_handshake_hash(&hs[r], h[r]) != DUET_OK) {
            return nv_fail(v, "%s not done after the handshake", nv_prefix[r]);
        }
    }
    if (sodium_memcmp(h[0], h[1], DUET_NOISE_HASHLEN) != 0) {
        return nv_fail(v, "the two sides' handshake hashes differ");
    }
    if (v->hash.present && !nv_eq(h[0], DUET_NOISE_HASHLEN, &v->hash)) {
        return nv_fail(v, "handshake_hash differs");
    }
    for (int r = 0; r < 2; r++) {
        if (duet_noise_hs_split(&hs[r], &send[r], &recv[r]) != DUET_OK) {
            return nv_fail(v, "%s split failed", nv_prefix[r]);
        }
    }
    return NV_PASS;
}

static nv_result_t nv_transport_msg(const nv_vector_t *v, duet_noise_cs_t send[2],
                                    duet_noise_cs_t recv[2], size_t i, bool one_way,
                                    nv_work_t *w)
{
    int s = one_way ? 0 : (int)(i % 2), d = 1 - s;
    size_t len = 0, n = 0;
    duet_err_t err = duet_noise_cs_encrypt(&send[s], NULL, 0, v->payload[i].p,
                                           v->payload[i].n, w->msg, sizeof w->msg, &len);
    if (err != DUET_OK) {
        return nv_fail(v, "message %zu: encrypt: %s", i, duet_err_name(err));
    }
    if (!nv_eq(w->msg, len, &v->cipher[i])) {
        return nv_fail(v, "message %zu: ciphertext differs", i);
    }
    uint64_t nonce = recv[d].n;
    for (size_t flip = 0; flip < 2; flip++) {
        memcpy(w->bad, w->msg, len);
        w->bad[flip == 0 ? 0 : len - 1] ^= flip == 0 ? 0x01 : 0x80;
        err = duet_noise_cs_decrypt(&recv[d], NULL, 0, w->bad, len, w->plain,
                                    sizeof w->plain, &n);
        if (err != DUET_EAUTH || recv[d].n != nonce) {
            return nv_fail(v, "message %zu: a flipped bit gave %s", i, duet_err_name(err));
        }
    }
    err = duet_noise_cs_decrypt(&recv[d], NULL, 0, w->msg, len, w->plain, sizeof w->plain,
                                &n);
    if (err != DUET_OK) {
        return nv_fail(v, "message %zu: decrypt: %s", i, duet_err_name(err));
    }
    if (!nv_eq(w->plain, n, &v->payload[i])) {
        return nv_fail(v, "message %zu: payload differs", i);
    }
    return NV_PASS;
}

static nv_result_t nv_run_decoded(const nv_vector_t *v, nv_work_t *w)
{
    duet_noise_info_t info;
    duet_noise_hs_t hs[2];
    duet_noise_cs_t send[2], recv[2];
    nv_result_t res = NV_PASS;
    memset(hs, 0, sizeof hs);
    memset(send, 0, sizeof send);
    memset(recv, 0, sizeof recv);
    if (duet_noise_info(v->name, DUET_NOISE_INITIATOR, &info) != DUET_OK) {
        return NV_SKIP;
    }
    if (v->prologue[0].n > DUET_NOISE_MAX_PROLOGUE || v->prologue[1].n > DUET_NOISE_MAX_PROLOGUE) {
        fprintf(stderr, "duet-noise-vectors: skip %s: prologue over the limit\n", v->name);
        return NV_SKIP;
    }
    if (v->nmsgs < info.messages) {
        fprintf(stderr, "duet-noise-vectors: skip %s: fewer messages than the handshake\n",
                v->name);
        return NV_SKIP;
    }
    for (int r = 0; r < 2 && res == NV_PASS; r++) {
        duet_noise_info_t ri;
        if (duet_noise_info(v->name, r == 0 ? DUET_NOISE_INITIATOR : DUET_NOISE_RESPONDER,
                            &ri) != DUET_OK) {
            res = nv_fail(v, "no info for %s", nv_prefix[r]);
        } else {
            res = nv_start(v, r, &ri, &hs[r]);
        }
    }
    for (size_t i = 0; i < v->nmsgs && res == NV_PASS; i++) {
        if (i < info.messages) {
            res = nv_handshake_msg(v, hs, i, info.messages, w);
            if (res == NV_PASS && i + 1 == info.messages) {
                res = nv_finish(v, hs, send, recv);
            }
        } else {
            res = nv_transport_msg(v, send, recv, i, info.one_way, w);
        }
    }
    for (int r = 0; r < 2; r++) {
        duet_noise_hs_dispose(&hs[r]);
        duet_noise_cs_dispose(&send[r]);
        duet_noise_cs_dispose(&recv[r]);
    }
    return res;
}

static nv_result_t nv_run(const json_t *obj, const char **name, nv_work_t *w)
{
    nv_vector_t v;
    memset(&v, 0, sizeof v);
    const json_t *jn = json_object_get(obj, "protocol_name");
    if (jn == NULL) {
        jn = json_object_get(obj, "name");
    }
    v.name = json_string_value(jn);
    *name = v.name;
    if (v.name == NULL) {
        return nv_fail(&v, "no protocol_name");
    }
    /* Older noise-c files mark vectors expected to fail, and fallback runs; neither is a
     * plain handshake. */
    if (!duet_noise_supported(v.name) || json_is_true(json_object_get(obj, "fail")) ||
        json_is_true(json_object_get(obj, "fallback"))) {
        return NV_SKIP;
    }
    nv_result_t res;
    if (!nv_decode(obj, &v)) {
        res = nv_fail(&v, "malformed vector (a field is not hex or messages is not a list)");
    } else {
        res = nv_run_decoded(&v, w);
    }
    nv_vector_free(&v);
    return res;
}

static void nv_print_json(const char *name, nv_result_t res)
{
    static const char *const words[] = {"pass", "fail", "skip"};
    json_t *o = json_pack("{s:s?, s:s}", "protocol", name, "result", words[res]);
    char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (line != NULL) {
        puts(line);
    }
    free(line);
    json_decref(o);
}

static int nv_usage(void)
{
    fprintf(stderr, "usage: duet-noise-vectors [--json] FILE...\n");
    return 2;
}

int main(int argc, char **argv)
{
    bool as_json = false;
    int first = 1;
    for (; first < argc && argv[first][0] == '-'; first++) {
        if (strcmp(argv[first], "--json") == 0) {
            as_json = true;
        } else if (strcmp(argv[first], "--") == 0) {
            first++;
            break;
        } else {
            return nv_usage();
        }
    }
    if (first >= argc || sodium_init() < 0) {
        return nv_usage();
    }
    size_t nfiles = (size_t)(argc - first);
    json_t **docs = calloc(nfiles, sizeof *docs);
    nv_work_t *w = malloc(sizeof *w);
    int status = 2;
    unsigned long counts[3] = {0, 0, 0};
    if (docs == NULL || w == NULL) {
        goto cleanup;
    }
    /* Read every file first, so that a bad argument fails before any output. */
    for (size_t f = 0; f < nfiles; f++) {
        json_error_t jerr;
        const char *path = argv[first + (int)f];
        docs[f] = json_load_file(path, 0, &jerr);
        if (docs[f] == NULL || !json_is_array(json_object_get(docs[f], "vectors"))) {
            fprintf(stderr, "duet-noise-vectors: %s: %s\n", path,
                    docs[f] == NULL ? jerr.text : "no \"vectors\" list");
            goto cleanup;
        }
    }
    for (size_t f = 0; f < nfiles; f++) {
        const json_t *list = json_object_get(docs[f], "vectors");
        for (size_t i = 0; i < json_array_size(list); i++) {
            const char *name = NULL;
            nv_result_t res = nv_run(json_array_get(list, i), &name, w);
            counts[res]++;
            if (as_json) {
                nv_print_json(name, res);
            }
        }
    }
    printf("%lu passed, %lu failed, %lu skipped\n", counts[NV_PASS], counts[NV_FAIL],
           counts[NV_SKIP]);
    status = counts[NV_FAIL] == 0 ? 0 : 1;

cleanup:
    for (size_t f = 0; docs != NULL && f < nfiles; f++) {
        json_decref(docs[f]);
    }
    free(docs);
    free(w);
    return status;
}
