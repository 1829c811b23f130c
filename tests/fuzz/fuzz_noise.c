/*
 * Fuzz target for core/noise: peer bytes as handshake and transport messages.
 *
 * Input: one selector byte, then chunks, each a 2-byte big-endian length and that many bytes
 * (a short last chunk takes what is left). The selector picks one of the patterns duet uses
 * (KK, NK, XX, XXpsk3, IK) and a role, with fixed keys and ephemerals:
 *  - responder: chunk 0 is message 1; then it writes message 2; for XX-like patterns chunk 1
 *    is message 3;
 *  - initiator: it writes message 1; chunk 0 is message 2; for XX-like patterns it writes
 *    message 3.
 * Once the handshake is done, every further chunk is a transport message for the receiving
 * cipher state. Because everything is fixed, real messages stay valid across runs: the seed
 * corpus (tests/fuzz/corpus/noise/) holds such conversations, regenerated with
 *
 *   cc -std=c11 -DFUZZ_NOISE_GEN -Icore tests/fuzz/fuzz_noise.c core/noise.c core/err.c \
 *      -lsodium -o /tmp/noise-seeds && /tmp/noise-seeds tests/fuzz/corpus/noise
 */
#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "noise.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const fz_names[] = {
    "Noise_KK_25519_ChaChaPoly_BLAKE2b", "Noise_NK_25519_ChaChaPoly_BLAKE2b",
    "Noise_XX_25519_ChaChaPoly_BLAKE2b", "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b",
    "Noise_IK_25519_ChaChaPoly_BLAKE2b",
};
#define FZ_NPATTERNS (sizeof fz_names / sizeof fz_names[0])
#define FZ_PROLOGUE "duet fuzz"

/* Fixed key material: byte i of key number `which` is which * 37 + i. Not a secret. */
static void fz_key(uint8_t out[32], unsigned which)
{
    for (unsigned i = 0; i < 32; i++) {
        out[i] = (uint8_t)(which * 37u + i);
    }
}

/* Start role r (0 initiator, 1 responder) of pattern p with the fixed keys. */
static duet_err_t fz_start(duet_noise_hs_t *hs, size_t p, int r)
{
    duet_noise_role_t role = r == 0 ? DUET_NOISE_INITIATOR : DUET_NOISE_RESPONDER;
    duet_noise_info_t info;
    duet_noise_keys_t k;
    uint8_t s[32], e[32], peer_s[32], rs[32], psk[32];
    duet_err_t err = duet_noise_info(fz_names[p], role, &info);
    if (err != DUET_OK) {
        return err;
    }
    fz_key(s, 1 + (unsigned)r);
    fz_key(e, 3 + (unsigned)r);
    fz_key(peer_s, 2 - (unsigned)r);
    fz_key(psk, 5);
    if (crypto_scalarmult_base(rs, peer_s) != 0) {
        return DUET_EBADKEY;
    }
    memset(&k, 0, sizeof k);
    k.s = info.needs_s ? s : NULL;
    k.rs = info.needs_rs ? rs : NULL;
    k.e = e;
    k.psks[0] = psk;
    k.npsks = info.npsks;
    duet_rng_t none = {NULL, NULL};
    return duet_noise_hs_init(hs, fz_names[p], role, (const uint8_t *)FZ_PROLOGUE,
                              sizeof FZ_PROLOGUE - 1, &k, none);
}

typedef struct fz_reader {
    const uint8_t *p;
    size_t left;
} fz_reader_t;

static bool fz_chunk(fz_reader_t *rd, const uint8_t **chunk, size_t *len)
{
    if (rd->left < 2) {
        return false;
    }
    size_t n = (size_t)rd->p[0] << 8 | rd->p[1];
    rd->p += 2;
    rd->left -= 2;
    if (n > rd->left) {
        n = rd->left;
    }
    *chunk = rd->p;
    *len = n;
    rd->p += n;
    rd->left -= n;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t out[DUET_NOISE_MAX_MSG], plain[DUET_NOISE_MAX_MSG];
    duet_noise_hs_t hs;
    duet_noise_cs_t send, recv;
    fz_reader_t rd;
    const uint8_t *chunk;
    size_t len, n;
    if (size < 1 || sodium_init() < 0) {
        return 0;
    }
    size_t p = (size_t)(data[0] % FZ_NPATTERNS);
    int r = (data[0] / FZ_NPATTERNS) % 2 == 0 ? 1 : 0; /* responders first */
    rd.p = data + 1;
    rd.left = size - 1;
    memset(&send, 0, sizeof send);
    memset(&recv, 0, sizeof recv);
    if (fz_start(&hs, p, r) != DUET_OK) {
        abort(); /* the fixed setup must work */
    }
    while (!duet_noise_hs_done(&hs)) {
        if (duet_noise_hs_should_write(&hs)) {
            duet_err_t err = duet_noise_hs_write(&hs, (const uint8_t *)"fuzz", 4, out,
                                                 sizeof out, &len);
            if (err == DUET_OK) {
                continue;
            }
            /* Our keys are valid, so only the peer's low-order ephemeral (read without a DH
             * in the same message, as in XX's first) can fail a write, and it is sticky. */
            if (err != DUET_EBADKEY || len != 0 ||
                duet_noise_hs_write(&hs, NULL, 0, out, sizeof out, &len) != err) {
                abort();
            }
            goto cleanup;
        }
        if (!fz_chunk(&rd, &chunk, &len)) {
            goto cleanup;
        }
        duet_err_t err = duet_noise_hs_read(&hs, chunk, len, plain, sizeof plain, &n);
        if (err != DUET_OK) {
            /* Sticky: the same message again gives the same error. */
            if (duet_noise_hs_read(&hs, chunk, len, plain, sizeof plain, &n) != err ||
                n != 0 || duet_noise_hs_should_write(&hs)) {
                abort();
            }
            goto cleanup;
        }
        if (n > len) {
            abort();
        }
    }
    if (duet_noise_hs_split(&hs, &send, &recv) != DUET_OK) {
        abort();
    }
    while (fz_chunk(&rd, &chunk, &len)) {
        uint64_t before = recv.n;
        duet_err_t err = duet_noise_cs_decrypt(&recv, NULL, 0, chunk, len, plain, sizeof plain,
                                               &n);
        if ((err == DUET_OK) != (recv.n == before + 1) || (err == DUET_OK && n + 16 != len)) {
            abort();
        }
    }

cleanup:
    duet_noise_hs_dispose(&hs);
    duet_noise_cs_dispose(&send);
    duet_noise_cs_dispose(&recv);
    return 0;
}

#ifdef FUZZ_NOISE_GEN
/* Seed generator: for every pattern and role, a real conversation with the peer the target
 * expects, plus a few transport messages; written as <dir>/seed-<pattern>-<role>. */
#include <stdio.h>

static void put_chunk(uint8_t *buf, size_t *pos, const uint8_t *m, size_t len)
{
    buf[(*pos)++] = (uint8_t)(len >> 8);
    buf[(*pos)++] = (uint8_t)len;
    memcpy(buf + *pos, m, len);
    *pos += len;
}

int main(int argc, char **argv)
{
    static uint8_t buf[4 * DUET_NOISE_MAX_MSG], msg[DUET_NOISE_MAX_MSG],
        plain[DUET_NOISE_MAX_MSG];
    if (argc != 2 || sodium_init() < 0) {
        fprintf(stderr, "usage: noise-seeds DIR\n");
        return 2;
    }
    for (size_t p = 0; p < FZ_NPATTERNS; p++) {
        for (int target = 1; target >= 0; target--) {
            duet_noise_hs_t hs[2];
            duet_noise_cs_t send[2], recv[2];
            size_t pos = 0, len, n;
            if (fz_start(&hs[0], p, 0) != DUET_OK || fz_start(&hs[1], p, 1) != DUET_OK) {
                return 1;
            }
            /* selector: pattern p, responders at p, initiators at p + FZ_NPATTERNS */
            buf[pos++] = (uint8_t)(p + (target == 0 ? FZ_NPATTERNS : 0));
            for (int s = 0; !duet_noise_hs_done(&hs[0]); s = 1 - s) {
                const uint8_t *pl = (const uint8_t *)(s == target ? "fuzz" : "peer says hi");
                size_t pl_len = s == target ? 4 : 12;
                if (duet_noise_hs_write(&hs[s], pl, pl_len, msg, sizeof msg, &len) != DUET_OK ||
                    duet_noise_hs_read(&hs[1 - s], msg, len, plain, sizeof plain, &n) !=
                        DUET_OK) {
                    return 1;
                }
                if (s != target) {
                    put_chunk(buf, &pos, msg, len);
                }
            }
            for (int r = 0; r < 2; r++) {
                if (duet_noise_hs_split(&hs[r], &send[r], &recv[r]) != DUET_OK) {
                    return 1;
                }
            }
            for (int i = 0; i < 2; i++) {
                const char *t = i == 0 ? "a transport message" : "";
                if (duet_noise_cs_encrypt(&send[1 - target], NULL, 0, (const uint8_t *)t,
                                          strlen(t), msg, sizeof msg, &len) != DUET_OK) {
                    return 1;
                }
                put_chunk(buf, &pos, msg, len);
            }
            char path[4096];
            snprintf(path, sizeof path, "%s/seed-%s-%s", argv[1], fz_names[p] + 6,
                     target == 0 ? "initiator" : "responder");
            FILE *f = fopen(path, "wb");
            if (f == NULL || fwrite(buf, 1, pos, f) != pos || fclose(f) != 0) {
                return 1;
            }
        }
    }
    return 0;
}
#endif
