/*
 * Crypto benchmark (make bench): duet's constructions against the raw libsodium primitive
 * under them, in the same run.
 *   - envelope seal+open of a 100-byte note (Double Ratchet, header encryption) vs raw
 *     XChaCha20-Poly1305 seal+open of the same bytes (target <= 3x)
 *   - Noise_KK handshakes/s (both sides, in memory)
 *   - pairings/s: CPace + Noise_XXpsk3 + identity records, both sides, in memory
 *   - blob sealing MB/s (a 64 MiB file through core/blob) vs raw secretstream over the same
 *     bytes in memory (target >= 0.8x)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "benchutil.h"
#include "blob.h"
#include "code.h"
#include "crypto.h"
#include "noise.h"
#include "pairing.h"
#include "ratchet.h"
#include "sysrng.h"

static void bench_envelope(void)
{
    duet_rng_t rng = duet_sysrng();
    uint8_t sk[32], hka[32], nhkb[32], a0p[32], a0s[32], b0p[32], b0s[32];
    randombytes_buf(sk, 32);
    randombytes_buf(hka, 32);
    randombytes_buf(nhkb, 32);
    duet_crypto_x25519_keypair(a0p, a0s, &rng);
    duet_crypto_x25519_keypair(b0p, b0s, &rng);
    duet_ratchet_t *a, *b;
    if (duet_ratchet_new(&a) || duet_ratchet_new(&b) ||
        duet_ratchet_init_alice(a, sk, hka, nhkb, a0s, b0p) ||
        duet_ratchet_init_bob(b, sk, hka, nhkb, b0s, a0p, &rng)) {
        abort();
    }
    uint8_t note[100], env[256], out[256], ad[80];
    memset(note, 'n', sizeof note);
    memset(ad, 7, sizeof ad);
    size_t n, m;
    const int N = 200000;
    double t0 = bench_now();
    for (int i = 0; i < N; i++) {
        if (duet_ratchet_encrypt(a, &rng, ad, sizeof ad, note, sizeof note, env, sizeof env, &n) ||
            duet_ratchet_decrypt(b, &rng, ad, sizeof ad, env, n, out, sizeof out, &m)) {
            abort();
        }
    }
    double td = bench_now() - t0;
    uint8_t key[32], nonce[24], ct[256];
    unsigned long long cl, pl;
    randombytes_buf(key, 32);
    t0 = bench_now();
    for (int i = 0; i < N; i++) {
        randombytes_buf(nonce, sizeof nonce);
        crypto_aead_xchacha20poly1305_ietf_encrypt(ct, &cl, note, sizeof note, ad, sizeof ad,
                                                   NULL, nonce, key);
        if (crypto_aead_xchacha20poly1305_ietf_decrypt(out, &pl, NULL, ct, cl, ad, sizeof ad,
                                                       nonce, key) != 0) {
            abort();
        }
    }
    double tr = bench_now() - t0;
    bench_report("crypto", "envelope seal+open, 100-byte note", N / td, "ops/s");
    bench_report("crypto", "raw XChaCha20-Poly1305 seal+open, same bytes", N / tr, "ops/s");
    bench_report("crypto", "ratio envelope/raw time (target <= 3)", td / tr, "x");
    duet_ratchet_free(a);
    duet_ratchet_free(b);
}

static void bench_kk(void)
{
    duet_rng_t rng = duet_sysrng();
    uint8_t is[32], ip[32], rs[32], rp[32];
    duet_crypto_x25519_keypair(ip, is, &rng);
    duet_crypto_x25519_keypair(rp, rs, &rng);
    const int N = 2000;
    double t0 = bench_now();
    for (int i = 0; i < N; i++) {
        duet_noise_hs_t hi, hr;
        duet_noise_keys_t ki = {.s = is, .rs = rp}, kr = {.s = rs, .rs = ip};
        uint8_t m[256], p[64];
        size_t ml, pl;
        duet_noise_cs_t s1, r1, s2, r2;
        if (duet_noise_hs_init(&hi, "Noise_KK_25519_ChaChaPoly_BLAKE2b", DUET_NOISE_INITIATOR,
                               (const uint8_t *)"duet link", 9, &ki, rng) ||
            duet_noise_hs_init(&hr, "Noise_KK_25519_ChaChaPoly_BLAKE2b", DUET_NOISE_RESPONDER,
                               (const uint8_t *)"duet link", 9, &kr, rng) ||
            duet_noise_hs_write(&hi, (const uint8_t *)"\0\1", 2, m, sizeof m, &ml) ||
            duet_noise_hs_read(&hr, m, ml, p, sizeof p, &pl) ||
            duet_noise_hs_write(&hr, (const uint8_t *)"\0\1", 2, m, sizeof m, &ml) ||
            duet_noise_hs_read(&hi, m, ml, p, sizeof p, &pl) || duet_noise_hs_split(&hi, &s1, &r1) ||
            duet_noise_hs_split(&hr, &s2, &r2)) {
            abort();
        }
        duet_noise_hs_dispose(&hi);
        duet_noise_hs_dispose(&hr);
    }
    bench_report("crypto", "Noise_KK handshakes (both sides)", N / (bench_now() - t0), "hs/s");
}

static void bench_pairing(void)
{
    duet_rng_t rng = duet_sysrng();
    const int N = 300;
    uint8_t apk[32], ask[64], bpk[32], bsk[64], ar[32], ars[32], br[32], brs[32];
    crypto_sign_keypair(apk, ask);
    crypto_sign_keypair(bpk, bsk);
    duet_crypto_x25519_keypair(ar, ars, &rng);
    duet_crypto_x25519_keypair(br, brs, &rng);
    duet_pairing_t *l = sodium_malloc(sizeof *l), *j = sodium_malloc(sizeof *j);
    double t0 = bench_now();
    for (int i = 0; i < N; i++) {
        duet_code_t code;
        if (duet_code_generate(&code, 0, rng)) {
            abort();
        }
        duet_pairing_self_t sl = {apk, ask, ar, "river", 5}, sj = {bpk, bsk, br, "harbor", 6};
        if (duet_pairing_init(l, DUET_PAIRING_LISTENER, &code, &sl, rng) ||
            duet_pairing_init(j, DUET_PAIRING_JOINER, &code, &sj, rng)) {
            abort();
        }
        for (int k = 0; k < 6; k++) {
            const uint8_t *msg;
            size_t len;
            uint8_t copy[DUET_PAIRING_MAX_MSG];
            while (duet_pairing_output(j, &msg, &len)) {
                memcpy(copy, msg, len);
                if (duet_pairing_receive(l, copy, len)) {
                    abort();
                }
            }
            while (duet_pairing_output(l, &msg, &len)) {
                memcpy(copy, msg, len);
                if (duet_pairing_receive(j, copy, len)) {
                    abort();
                }
            }
        }
        if (duet_pairing_status(l) != DUET_PAIRING_PAIRED ||
            duet_pairing_status(j) != DUET_PAIRING_PAIRED) {
            abort();
        }
        duet_pairing_dispose(l);
        duet_pairing_dispose(j);
        duet_code_dispose(&code);
    }
    bench_report("crypto", "pairings: CPace + XXpsk3 + records (both sides)",
                 N / (bench_now() - t0), "pairings/s");
    sodium_free(l);
    sodium_free(j);
}

static void bench_blob(void)
{
    const size_t size = 50u << 20; /* the voice-note limit */
    char *dir = bench_tmpdir(), in[4200], out[4200];
    snprintf(in, sizeof in, "%s/in", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    uint8_t *data = malloc(size);
    randombytes_buf(data, size);
    FILE *f = fopen(in, "wb");
    fwrite(data, 1, size, f);
    fclose(f);
    duet_blob_ref_t ref;
    double t0 = bench_now();
    if (duet_blob_seal(in, out, duet_sysrng(), &ref) != DUET_OK) {
        abort();
    }
    double tb = bench_now() - t0;
    /* Raw secretstream over the same bytes, in memory, same chunk size. */
    crypto_secretstream_xchacha20poly1305_state st;
    uint8_t key[32], hdr[24];
    uint8_t *ct = malloc(DUET_BLOB_CHUNK + 17);
    crypto_secretstream_xchacha20poly1305_keygen(key);
    t0 = bench_now();
    crypto_secretstream_xchacha20poly1305_init_push(&st, hdr, key);
    for (size_t off = 0; off < size; off += DUET_BLOB_CHUNK) {
        size_t n = size - off < DUET_BLOB_CHUNK ? size - off : DUET_BLOB_CHUNK;
        crypto_secretstream_xchacha20poly1305_push(
            &st, ct, NULL, data + off, n, NULL, 0,
            off + n == size ? crypto_secretstream_xchacha20poly1305_TAG_FINAL : 0);
    }
    double tr = bench_now() - t0;
    /* And raw secretstream file to file with the same I/O: read 64 KiB, push, write, fsync
     * at the end, as the blob code does (but no id hash, no temporary name, no checks). */
    char rawout[4200];
    snprintf(rawout, sizeof rawout, "%s/raw", dir);
    uint8_t *chunk = malloc(DUET_BLOB_CHUNK);
    t0 = bench_now();
    FILE *fi = fopen(in, "rb"), *fo = fopen(rawout, "wb");
    crypto_secretstream_xchacha20poly1305_init_push(&st, hdr, key);
    fwrite(hdr, 1, sizeof hdr, fo);
    for (size_t off = 0; off < size; off += DUET_BLOB_CHUNK) {
        size_t n = fread(chunk, 1, DUET_BLOB_CHUNK, fi);
        unsigned long long cl;
        crypto_secretstream_xchacha20poly1305_push(
            &st, ct, &cl, chunk, n, NULL, 0,
            off + n == size ? crypto_secretstream_xchacha20poly1305_TAG_FINAL : 0);
        fwrite(ct, 1, (size_t)cl, fo);
    }
    fflush(fo);
    fsync(fileno(fo));
    fclose(fo);
    fclose(fi);
    double tf = bench_now() - t0;
    free(chunk);
    double mib = (double)size / (1 << 20);
    bench_report("crypto", "blob sealing, 50 MiB file to sealed file", mib / tb, "MiB/s");
    bench_report("crypto", "raw secretstream, file to file, same I/O", mib / tf, "MiB/s");
    bench_report("crypto", "ratio blob/raw file throughput (target >= 0.8)", tf / tb, "x");
    bench_report("crypto", "raw secretstream, in memory (for scale)", mib / tr, "MiB/s");
    free(ct);
    free(data);
    bench_rmrf(dir);
    free(dir);
}

int main(void)
{
    if (sodium_init() < 0) {
        return 1;
    }
    bench_envelope();
    bench_kk();
    bench_pairing();
    bench_blob();
    return 0;
}
