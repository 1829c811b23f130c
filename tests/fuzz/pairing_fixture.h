/*
 * A deterministic pairing session shared by tests/unit/test_pairing.c and
 * tests/fuzz/fuzz_pairing.c: fixed seeds, code and names, so that the real messages in
 * tests/fuzz/corpus/pairing/ are the ones the fuzz target's engines expect
 * (test_pairing checks that the committed corpus still matches this fixture).
 */
#ifndef DUET_PAIRING_FIXTURE_H
#define DUET_PAIRING_FIXTURE_H

#include <sodium.h>
#include <string.h>

#include "code.h"
#include "pairing.h"
#include "testrng.h"

#define FIX_CODE "417-acid-acorn"
#define FIX_SEED_JOINER 101u
#define FIX_SEED_LISTENER 202u
#define FIX_NAME_JOINER "Ana"
#define FIX_NAME_LISTENER "Ben"

/* A device: its engine, its seeded rng, its identity and first ratchet public key. The
 * struct must not move after fix_party_init (the rng points into it). */
typedef struct {
    duet_pairing_t eng;
    duet_testrng_t tr;
    uint8_t pk[32], sk[64], rpub[32];
} fix_party_t;

static inline duet_err_t fix_party_init_name(fix_party_t *x, duet_pairing_role_t role,
                                             const char *code_text, const char *name,
                                             size_t name_len, uint64_t seed)
{
    duet_rng_t rng = duet_testrng_init(&x->tr, seed);
    uint8_t id_seed[32];
    duet_code_t code;
    duet_rng_fill(&rng, id_seed, sizeof id_seed);
    crypto_sign_seed_keypair(x->pk, x->sk, id_seed);
    duet_rng_fill(&rng, x->rpub, sizeof x->rpub); /* any 32 bytes: the engine passes it on */
    duet_err_t err = duet_code_parse(&code, code_text, strlen(code_text));
    if (err != DUET_OK) {
        return err;
    }
    duet_pairing_self_t self = {x->pk, x->sk, x->rpub, name, name_len};
    err = duet_pairing_init(&x->eng, role, &code, &self, rng);
    duet_code_dispose(&code);
    return err;
}

static inline duet_err_t fix_party_init(fix_party_t *x, duet_pairing_role_t role,
                                        const char *code_text, const char *name, uint64_t seed)
{
    return fix_party_init_name(x, role, code_text, name, strlen(name), seed);
}

/* Move the pending output of from, if any, into to. Returns whether a message moved; the
 * message is copied to msg/len when they are not NULL. */
static inline bool fix_pump(fix_party_t *from, fix_party_t *to, uint8_t *msg, size_t *len,
                            duet_err_t *rx_err)
{
    const uint8_t *m;
    size_t n;
    if (!duet_pairing_output(&from->eng, &m, &n)) {
        return false;
    }
    if (msg != NULL) {
        memcpy(msg, m, n);
        *len = n;
    }
    *rx_err = duet_pairing_receive(&to->eng, m, n);
    return true;
}

#endif /* DUET_PAIRING_FIXTURE_H */
