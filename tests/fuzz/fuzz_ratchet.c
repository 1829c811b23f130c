/*
 * Fuzz target for core/ratchet: envelopes from the network and saved states read back.
 *
 * The first input byte picks what the rest is (modulo 3):
 *   0  an envelope, decrypted by Bob's fixed state (which holds skipped keys);
 *   1  an envelope, decrypted by Alice's fixed state (which holds skipped keys too);
 *   2  a saved state: if it loads, saving it again must give the same bytes (one state,
 *      one encoding), and it must survive decrypting a real envelope.
 * Decryption must never crash, and when it fails the state must be unchanged (checked by
 * saving before and after; a difference aborts).
 *
 * The fixed states come from a short conversation run once with a seeded rng, and each
 * input starts from their saved form, so runs do not depend on each other.
 *
 * Seeds (tests/fuzz/corpus/ratchet/) are real envelopes and states of that conversation.
 * To write them again:
 *   cc -std=c11 -DDUET_FUZZ_RATCHET_SEEDS -Icore -Itests/support tests/fuzz/fuzz_ratchet.c \
 *      build/libduet_testsupport.a build/libduet_core.a -lsodium -o /tmp/seeds \
 *   && /tmp/seeds tests/fuzz/corpus/ratchet
 */
#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "ratchet.h"
#include "testrng.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ENV_CAP 256u
static const uint8_t AD[] = "fuzz";

typedef struct {
    uint8_t b[ENV_CAP];
    size_t len;
} env_t;

enum { TO_BOB_SKIPPED, TO_BOB_CURRENT, TO_BOB_NEW_CHAIN, TO_ALICE_SKIPPED, TO_ALICE_CURRENT,
       NUM_ENVS };

static struct {
    bool ready;
    duet_ratchet_t *work;
    uint8_t *blob[2]; /* 0 Bob, 1 Alice */
    size_t blob_len[2];
    uint8_t *scratch[2];
    env_t env[NUM_ENVS];
} fx;

static void check(bool ok)
{
    if (!ok) {
        abort();
    }
}

static env_t seal(duet_ratchet_t *r, const duet_rng_t *rng, const char *text)
{
    env_t e;
    check(duet_ratchet_encrypt(r, rng, AD, sizeof AD, (const uint8_t *)text, strlen(text),
                               e.b, sizeof e.b, &e.len) == DUET_OK);
    return e;
}

static void deliver(duet_ratchet_t *r, const duet_rng_t *rng, const env_t *e)
{
    uint8_t out[ENV_CAP];
    size_t len;
    check(duet_ratchet_decrypt(r, rng, AD, sizeof AD, e->b, e->len, out, sizeof out, &len) ==
          DUET_OK);
}

static void save(const duet_ratchet_t *r, uint8_t **buf, size_t *len)
{
    *buf = malloc(DUET_RATCHET_MAX_SAVED);
    check(*buf != NULL);
    check(duet_ratchet_save(r, *buf, DUET_RATCHET_MAX_SAVED, len) == DUET_OK);
}

/* The conversation: Alice sends a0..a2, Bob reads a2 (a0, a1 skipped); Alice sends a3;
 * Bob sends b0, b1, Alice reads b1 (b0 skipped) and ratchets; she sends a4 from her new
 * key; Bob sends b2 in his current chain. Kept undelivered: a0 (Bob's skipped keys), a3
 * (Bob's current chain), a4 (Bob's next chain), b0 (Alice's skipped keys), b2 (Alice's
 * current chain). */
static void setup(void)
{
    duet_testrng_t tk, ta, tb;
    duet_rng_t rk = duet_testrng_init(&tk, 0xF0220), ra = duet_testrng_init(&ta, 1),
               rb = duet_testrng_init(&tb, 2);
    uint8_t sk[32], hk_a[32], nhk_b[32], a0[32], a0_pub[32], b0[32], b0_pub[32];
    duet_ratchet_t *alice = NULL, *bob = NULL;
    check(duet_crypto_init() == DUET_OK);
    duet_rng_fill(&rk, sk, 32);
    duet_rng_fill(&rk, hk_a, 32);
    duet_rng_fill(&rk, nhk_b, 32);
    duet_crypto_x25519_keypair(a0_pub, a0, &rk);
    duet_crypto_x25519_keypair(b0_pub, b0, &rk);
    check(duet_ratchet_new(&alice) == DUET_OK);
    check(duet_ratchet_new(&bob) == DUET_OK);
    check(duet_ratchet_new(&fx.work) == DUET_OK);
    check(duet_ratchet_init_alice(alice, sk, hk_a, nhk_b, a0, b0_pub) == DUET_OK);
    check(duet_ratchet_init_bob(bob, sk, hk_a, nhk_b, b0, a0_pub, &rb) == DUET_OK);

    fx.env[TO_BOB_SKIPPED] = seal(alice, &ra, "a0");
    env_t a1 = seal(alice, &ra, "a1");
    env_t a2 = seal(alice, &ra, "a2");
    deliver(bob, &rb, &a2);
    (void)a1;
    fx.env[TO_BOB_CURRENT] = seal(alice, &ra, "a3");
    fx.env[TO_ALICE_SKIPPED] = seal(bob, &rb, "b0");
    env_t b1 = seal(bob, &rb, "b1");
    deliver(alice, &ra, &b1);
    fx.env[TO_BOB_NEW_CHAIN] = seal(alice, &ra, "a4 from a new key");
    fx.env[TO_ALICE_CURRENT] = seal(bob, &rb, "b2");

    save(bob, &fx.blob[0], &fx.blob_len[0]);
    save(alice, &fx.blob[1], &fx.blob_len[1]);
    fx.scratch[0] = malloc(DUET_RATCHET_MAX_SAVED);
    fx.scratch[1] = malloc(DUET_RATCHET_MAX_SAVED);
    check(fx.scratch[0] != NULL && fx.scratch[1] != NULL);
    duet_ratchet_free(alice);
    duet_ratchet_free(bob);
    fx.ready = true;
}

/* Decrypt env with the working state; on failure the state must be unchanged. */
static void try_decrypt(const uint8_t *env, size_t len)
{
    uint8_t out[DUET_RATCHET_MAX_PLAINTEXT];
    size_t out_len, before, after;
    duet_testrng_t t;
    duet_rng_t rng = duet_testrng_init(&t, 3);
    check(duet_ratchet_save(fx.work, fx.scratch[0], DUET_RATCHET_MAX_SAVED, &before) ==
          DUET_OK);
    duet_err_t err = duet_ratchet_decrypt(fx.work, &rng, AD, sizeof AD, env, len, out,
                                          sizeof out, &out_len);
    if (err != DUET_OK) {
        check(out_len == 0);
        check(duet_ratchet_save(fx.work, fx.scratch[1], DUET_RATCHET_MAX_SAVED, &after) ==
              DUET_OK);
        check(before == after && memcmp(fx.scratch[0], fx.scratch[1], before) == 0);
    } else {
        check(out_len + DUET_RATCHET_OVERHEAD == len);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fx.ready) {
        setup();
    }
    if (size == 0) {
        return 0;
    }
    unsigned mode = data[0] % 3u;
    data++;
    size--;
    if (mode < 2) {
        check(duet_ratchet_load(fx.work, fx.blob[mode], fx.blob_len[mode]) == DUET_OK);
        try_decrypt(data, size);
        return 0;
    }
    if (duet_ratchet_load(fx.work, data, size) != DUET_OK) {
        return 0;
    }
    size_t len;
    check(duet_ratchet_save(fx.work, fx.scratch[1], DUET_RATCHET_MAX_SAVED, &len) == DUET_OK);
    check(len == size && memcmp(fx.scratch[1], data, size) == 0);
    for (unsigned i = 0; i < NUM_ENVS; i++) {
        try_decrypt(fx.env[i].b, fx.env[i].len);
    }
    return 0;
}

#ifdef DUET_FUZZ_RATCHET_SEEDS
static void write_seed(const char *dir, const char *name, uint8_t mode, const uint8_t *body,
                       size_t len)
{
    char path[1024];
    check(snprintf(path, sizeof path, "%s/%s", dir, name) < (int)sizeof path);
    FILE *f = fopen(path, "wb");
    check(f != NULL);
    check(fwrite(&mode, 1, 1, f) == 1 && fwrite(body, 1, len, f) == len);
    check(fclose(f) == 0);
}

int main(int argc, char **argv)
{
    check(argc == 2);
    setup();
    write_seed(argv[1], "env-bob-skipped", 0, fx.env[TO_BOB_SKIPPED].b,
               fx.env[TO_BOB_SKIPPED].len);
    write_seed(argv[1], "env-bob-current", 0, fx.env[TO_BOB_CURRENT].b,
               fx.env[TO_BOB_CURRENT].len);
    write_seed(argv[1], "env-bob-new-chain", 0, fx.env[TO_BOB_NEW_CHAIN].b,
               fx.env[TO_BOB_NEW_CHAIN].len);
    write_seed(argv[1], "env-alice-skipped", 1, fx.env[TO_ALICE_SKIPPED].b,
               fx.env[TO_ALICE_SKIPPED].len);
    write_seed(argv[1], "env-alice-current", 1, fx.env[TO_ALICE_CURRENT].b,
               fx.env[TO_ALICE_CURRENT].len);
    write_seed(argv[1], "state-bob", 2, fx.blob[0], fx.blob_len[0]);
    write_seed(argv[1], "state-alice", 2, fx.blob[1], fx.blob_len[1]);
    return 0;
}
#endif
