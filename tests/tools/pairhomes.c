/*
 * duet-pairhomes: pair two homes and move envelopes between them in one process, for
 * integration tests that drive the real duet binary without a network.
 *
 *   duet-pairhomes pair HOME_A HOME_B   pair two initialised homes (the real pairing
 *                                       engines, in memory)
 *   duet-pairhomes sync HOME_A HOME_B   move every envelope both ways through the real sync
 *                                       hosts (outbox.h), with acknowledgements, until
 *                                       nothing moves; prints {"a_to_b":N,"b_to_a":N}
 *   duet-pairhomes send HOME_A HOME_B   the same in one direction only, once
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "outbox.h"
#include "store.h"
#include "sysrng.h"
#include "testpair.h"

static uint64_t now_ms(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void die(const char *what, duet_err_t e)
{
    fprintf(stderr, "duet-pairhomes: %s: %s\n", what, duet_strerror(e));
    exit(1);
}

static duet_store_t *open_home(const char *home)
{
    duet_store_t *st;
    duet_store_opts_t o = {.rng = duet_sysrng()};
    duet_err_t e = duet_store_open(home, &o, &st);
    if (e != DUET_OK) {
        die(home, e);
    }
    return st;
}

/* Everything from `from` that `to` does not hold, in one batch, then the acknowledgement. */
static size_t send_all(duet_store_t *from, duet_store_t *to)
{
    duet_outbox_host_t hf, ht;
    uint64_t wm, above[DUET_SYNC_MAX_ABOVE], after, seq, items;
    const uint8_t *env;
    size_t n, len, moved = 0;
    bool counted;
    duet_err_t e;
    if ((e = duet_outbox_host_init(&hf, from, now_ms, NULL, NULL, NULL)) != DUET_OK ||
        (e = duet_outbox_host_init(&ht, to, now_ms, NULL, NULL, NULL)) != DUET_OK) {
        die("host", e);
    }
    if ((e = duet_outbox_recv_state(&ht, &wm, above, DUET_SYNC_MAX_ABOVE, &n)) != DUET_OK ||
        (e = duet_outbox_recv_begin(&ht)) != DUET_OK) {
        die("receive", e);
    }
    after = wm;
    while (duet_outbox_next(&hf, after, &seq, &env, &len) == DUET_OK) {
        after = seq;
        e = duet_outbox_recv_put(&ht, seq, env, len, &counted);
        if (e == DUET_OK) {
            moved++;
        } else if (e != DUET_EDUP) {
            die("receive", e);
        }
    }
    if ((e = duet_outbox_recv_commit(&ht)) != DUET_OK ||
        (e = duet_outbox_recv_state(&ht, &wm, above, DUET_SYNC_MAX_ABOVE, &n)) != DUET_OK ||
        (e = duet_outbox_acked(&hf, wm, above, n, &items)) != DUET_OK) {
        die("commit", e);
    }
    duet_outbox_host_dispose(&hf);
    duet_outbox_host_dispose(&ht);
    return moved;
}

int main(int argc, char **argv)
{
    if (argc != 4 || sodium_init() < 0) {
        fprintf(stderr, "usage: duet-pairhomes pair|sync|send HOME_A HOME_B\n");
        return 2;
    }
    duet_store_t *a = open_home(argv[2]), *b = open_home(argv[3]);
    if (strcmp(argv[1], "pair") == 0) {
        duet_test_pair(a, b, duet_sysrng(), now_ms(NULL));
    } else if (strcmp(argv[1], "send") == 0) {
        printf("{\"a_to_b\":%zu}\n", send_all(a, b));
    } else if (strcmp(argv[1], "sync") == 0) {
        size_t ab = 0, ba = 0;
        for (int i = 0; i < 8; i++) {
            size_t x = send_all(a, b), y = send_all(b, a);
            ab += x;
            ba += y;
            if (x + y == 0) {
                break;
            }
        }
        printf("{\"a_to_b\":%zu,\"b_to_a\":%zu}\n", ab, ba);
    } else {
        fprintf(stderr, "duet-pairhomes: unknown command '%s'\n", argv[1]);
        return 2;
    }
    duet_store_close(a);
    duet_store_close(b);
    return 0;
}
