/*
 * duet — the outbox: my items sealed into envelopes, kept until the partner acknowledges
 * them, and the bookkeeping of what came in.
 *
 * Each envelope is sealed once, when the item is written (or, for items written before
 * pairing, when the pairing completes), with the Double Ratchet (ratchet.h), numbered with
 * the next outgoing sequence number (1, 2, 3, ...), and stored with the ratchet state that
 * produced it in one transaction. It is then sent byte-identical over any path until the
 * partner's acknowledgement deletes it. Inbound, the receiver keeps a contiguous watermark
 * plus the set of sequence numbers above it, and checks a sequence number there before it
 * decrypts anything (dedup before decrypt).
 */
#ifndef DUET_OUTBOX_H
#define DUET_OUTBOX_H

#include <stdint.h>

#include "err.h"
#include "store.h"

/* Envelopes not yet acknowledged by the partner: sealed envelopes in the outbox plus my
 * items still waiting to be sealed (written before pairing). */
duet_err_t duet_outbox_count(duet_store_t *st, uint64_t *n) DUET_MUST_CHECK;



#include "items.h"

/*
 * Mark the partner's unread items among items[0..n) as read (one transaction) and, when
 * paired, queue one read receipt naming them, so the partner sees them as read.
 */
duet_err_t duet_inbox_mark_read(duet_store_t *st, const duet_item_t *items, size_t n,
                                uint64_t now_ms) DUET_MUST_CHECK;
#endif
