/*
 * duet — items: what the partners write to each other, as the local store keeps them.
 *
 * An item has a 16-byte random id (the same on both devices), a kind, an author (mine or
 * the partner's), a hybrid-logical-clock timestamp (hlc.h), a status, and a body: a small
 * msgpack map whose keys depend on the kind (docs/protocol.md, "Item bodies"), sealed at
 * rest with the store key under the associated data "item" || id.
 *
 * Conversation order is (hlc, id), identical on both devices. Status of my items: queued
 * (not yet acknowledged by the partner), delivered, read; of the partner's: unread, read.
 *
 * All functions here run inside the caller's transaction when they write.
 */
#ifndef DUET_ITEMS_H
#define DUET_ITEMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "store.h"

#define DUET_ITEM_ID_BYTES 16u
#define DUET_NOTE_MAX 65536u      /* bytes of UTF-8 in a note */
#define DUET_ITEM_BODY_MAX 81920u /* any item body, encoded */
#define DUET_ITEMS_LIST_MAX 100000u

/* Kinds shown in the inbox (1..15) and kinds that only travel (16..). The numbers are on
 * the wire: never reuse one. */
typedef enum {
    DUET_KIND_NOTE = 1,
    DUET_KIND_VOICE = 2,
    DUET_KIND_CHECKIN = 3,   /* a check-in answered (the inbox line; answers live apart) */
    DUET_KIND_PAUSE = 4,     /* "let's slow down" */
    DUET_KIND_RESUME = 5,
    DUET_KIND_MILESTONE = 6,
    DUET_KIND_RECEIPT = 16,  /* read receipts for the partner's items */
    DUET_KIND_RITUAL = 17,   /* check-in ritual proposals, acceptances, declines */
    DUET_KIND_ANSWER = 18,   /* a sealed check-in answer */
    DUET_KIND_REVEAL = 19,   /* the key that opens a sealed answer */
    DUET_KIND_AGREEMENT = 20 /* shared agreements and their acceptances */
} duet_kind_t;

#define DUET_KIND_VISIBLE(k) ((k) >= 1 && (k) <= 15)

typedef enum {
    DUET_STATUS_QUEUED = 0,
    DUET_STATUS_DELIVERED = 1,
    DUET_STATUS_READ = 2,
    DUET_STATUS_UNREAD = 3
} duet_status_t;

typedef struct duet_item {
    uint8_t id[DUET_ITEM_ID_BYTES];
    uint32_t kind;
    bool mine;
    uint64_t hlc;
    uint32_t status;
    uint8_t *body; /* malloc'd plaintext, or NULL; wiped and freed by duet_item_clear */
    size_t body_len;
} duet_item_t;

/* Names for output: "note", "voice", ...; "queued", "delivered", "read", "unread". */
const char *duet_kind_name(uint32_t kind);
const char *duet_status_name(uint32_t status);

/* Hex of an id (32 characters + NUL) and back (DUET_EINVAL if malformed). */
void duet_item_id_hex(const uint8_t id[static DUET_ITEM_ID_BYTES], char out[static 33]);
duet_err_t duet_item_id_parse(const char *hex, uint8_t id[static DUET_ITEM_ID_BYTES])
    DUET_MUST_CHECK;

/* Advance and return the local clock (meta "hlc") for now_ms. */
duet_err_t duet_items_clock(duet_store_t *st, uint64_t now_ms, uint64_t *hlc) DUET_MUST_CHECK;

/* Merge a received timestamp into the local clock. */
duet_err_t duet_items_clock_recv(duet_store_t *st, uint64_t msg_hlc,
                                 uint64_t now_ms) DUET_MUST_CHECK;

/*
 * Add one of my items: a fresh id from the store's rng, the next local timestamp, status
 * queued, the body sealed. *out gets id, kind, hlc, status (body NULL).
 */
duet_err_t duet_items_add(duet_store_t *st, uint32_t kind, const uint8_t *body, size_t len,
                          uint64_t now_ms, duet_item_t *out) DUET_MUST_CHECK;

/* Store the partner's item as received (status unread). DUET_EEXIST if the id is known. */
duet_err_t duet_items_put_partner(duet_store_t *st, const uint8_t id[static DUET_ITEM_ID_BYTES],
                                  uint32_t kind, uint64_t hlc, const uint8_t *body, size_t len,
                                  uint64_t now_ms) DUET_MUST_CHECK;

/* The same without touching the local clock: for a batch of received items, whose caller
 * merges the largest timestamp into the clock once (duet_items_clock_recv) at its end. */
duet_err_t duet_items_put_partner_noclock(duet_store_t *st,
                                          const uint8_t id[static DUET_ITEM_ID_BYTES],
                                          uint32_t kind, uint64_t hlc, const uint8_t *body,
                                          size_t len) DUET_MUST_CHECK;

/* Read one item with its body. DUET_ENOENT if absent. */
duet_err_t duet_items_get(duet_store_t *st, const uint8_t id[static DUET_ITEM_ID_BYTES],
                          duet_item_t *out) DUET_MUST_CHECK;

/*
 * The last `limit` items of the conversation (0: all, up to DUET_ITEMS_LIST_MAX), oldest
 * first, bodies unsealed. *items is malloc'd; free with duet_items_free(*items, *n).
 */
duet_err_t duet_items_list(duet_store_t *st, size_t limit, duet_item_t **items,
                           size_t *n) DUET_MUST_CHECK;
void duet_items_free(duet_item_t *items, size_t n);
void duet_item_clear(duet_item_t *it);

/* Set the status of an item (only forward: queued < delivered < read; unread < read). */
duet_err_t duet_items_set_status(duet_store_t *st, const uint8_t id[static DUET_ITEM_ID_BYTES],
                                 uint32_t status) DUET_MUST_CHECK;

/* Count items: all, or only mine/partner's with a status (-1 for any). */
duet_err_t duet_items_count(duet_store_t *st, int mine, int status,
                            uint64_t *n) DUET_MUST_CHECK;

/* Note bodies: {1: text}. encode checks UTF-8 and 1..DUET_NOTE_MAX bytes (DUET_EEMPTY,
 * DUET_ETOOBIG, DUET_EUTF8); the malloc'd body is the caller's to free. decode points into
 * body. */
duet_err_t duet_note_encode(const char *text, size_t len, uint8_t **body,
                            size_t *body_len) DUET_MUST_CHECK;
duet_err_t duet_note_decode(const uint8_t *body, size_t body_len, const char **text,
                            size_t *len) DUET_MUST_CHECK;

#endif /* DUET_ITEMS_H */
