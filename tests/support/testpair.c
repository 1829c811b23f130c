/* see testpair.h */
#include "testpair.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "code.h"
#include "crypto.h"
#include "identity.h"
#include "pairing.h"
#include "partner.h"

#define CHECK(x)                                                                             \
    do {                                                                                     \
        duet_err_t e_ = (x);                                                                 \
        if (e_ != DUET_OK) {                                                                 \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, duet_err_name(e_));   \
            abort();                                                                         \
        }                                                                                    \
    } while (0)

duet_store_t *duet_test_home(const char *home, const char *name, duet_rng_t rng)
{
    duet_store_t *st;
    duet_store_opts_t o = {.rng = rng, .busy_timeout_ms = 2000};
    duet_identity_t id;
    CHECK(duet_store_create(home, &o, &st));
    CHECK(duet_store_begin(st));
    CHECK(duet_identity_create(st, name, &id));
    CHECK(duet_store_commit(st));
    duet_identity_dispose(&id);
    return st;
}

static void move(duet_pairing_t *from, duet_pairing_t *to)
{
    const uint8_t *m;
    size_t len;
    while (duet_pairing_output(from, &m, &len)) {
        uint8_t copy[DUET_PAIRING_MAX_MSG];
        memcpy(copy, m, len);
        duet_err_t e = duet_pairing_receive(to, copy, len);
        (void)e; /* the status is checked by the caller */
    }
}

void duet_test_pair(duet_store_t *a, duet_store_t *b, duet_rng_t rng, uint64_t now_ms)
{
    duet_identity_t ia, ib;
    duet_code_t code;
    uint8_t ra_pub[32], ra_priv[32], rb_pub[32], rb_priv[32];
    duet_pairing_t *pa = sodium_malloc(sizeof *pa), *pb = sodium_malloc(sizeof *pb);
    duet_pairing_result_t res_a, res_b;
    if (pa == NULL || pb == NULL) {
        abort();
    }
    CHECK(duet_identity_load(a, &ia));
    CHECK(duet_identity_load(b, &ib));
    CHECK(duet_code_generate(&code, 0, rng));
    duet_crypto_x25519_keypair(ra_pub, ra_priv, &rng);
    duet_crypto_x25519_keypair(rb_pub, rb_priv, &rng);
    duet_pairing_self_t sa = {ia.pk, ia.sk, ra_pub, ia.name, strlen(ia.name)};
    duet_pairing_self_t sb = {ib.pk, ib.sk, rb_pub, ib.name, strlen(ib.name)};
    CHECK(duet_pairing_init(pa, DUET_PAIRING_LISTENER, &code, &sa, rng));
    CHECK(duet_pairing_init(pb, DUET_PAIRING_JOINER, &code, &sb, rng));
    for (int i = 0; i < 8; i++) {
        move(pb, pa);
        move(pa, pb);
    }
    if (duet_pairing_status(pa) != DUET_PAIRING_PAIRED ||
        duet_pairing_status(pb) != DUET_PAIRING_PAIRED) {
        fprintf(stderr, "testpair: pairing failed: %s / %s\n",
                duet_err_name(duet_pairing_error(pa)), duet_err_name(duet_pairing_error(pb)));
        abort();
    }
    CHECK(duet_pairing_result(pa, &res_a));
    CHECK(duet_pairing_result(pb, &res_b));
    CHECK(duet_store_begin(a));
    CHECK(duet_partner_establish(a, &res_a, ra_priv, now_ms));
    CHECK(duet_store_commit(a));
    CHECK(duet_store_begin(b));
    CHECK(duet_partner_establish(b, &res_b, rb_priv, now_ms));
    CHECK(duet_store_commit(b));
    duet_pairing_dispose(pa);
    duet_pairing_dispose(pb);
    sodium_free(pa);
    sodium_free(pb);
    sodium_memzero(ra_priv, 32);
    sodium_memzero(rb_priv, 32);
    sodium_memzero(&res_a, sizeof res_a);
    sodium_memzero(&res_b, sizeof res_b);
    duet_code_dispose(&code);
    duet_identity_dispose(&ia);
    duet_identity_dispose(&ib);
}
