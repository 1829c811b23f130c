/* see blobxfer.h */
#include "blobxfer.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "codec.h"
#include "voice.h"

_Static_assert(DUET_BLOBXFER_DATA_MAX <= DUET_BLOB_APPEND_MAX, "a DATA frame is one append");

/* The partner's blob being fetched on this link. */
typedef struct incoming {
    bool active;
    duet_voice_rx_t rx; /* the blob taken up: its row, receiver and .rx counter (voice.h) */
    uint64_t total;     /* sealed size */
    uint32_t gen;       /* of the WANT in force */
    uint64_t asked;     /* the end of what that WANT and its MOREs ask for */
    uint32_t refetches; /* bad chunks on this link */
    bool want_pending, more_pending;
} incoming_t;

/* My blob being sent on this link. */
typedef struct outgoing {
    bool active;
    uint8_t id[DUET_BLOB_ID_BYTES];
    uint8_t item[DUET_ITEM_ID_BYTES];
    duet_blob_reader_t *rd;
    uint64_t total;
    uint32_t gen;
    uint64_t cursor, end; /* what is left to send: [cursor, end) */
} outgoing_t;

struct duet_blobxfer {
    duet_store_t *st;
    duet_blobxfer_callbacks_t cb;
    duet_err_t err;
    bool started;

    /* Receiving. */
    incoming_t in;
    uint64_t cursor; /* blobs.n of the last wanted blob taken up on this link */
    uint32_t last_gen;
    bool dirty;    /* new wanted blobs may exist */
    bool finished; /* in.row is complete on disk; flush commits it */
    duet_voice_blob_t done_row;
    uint64_t done_fetched;
    uint64_t wanting; /* what our last STATE said */
    bool state_sent, state_pending;

    /* Sending. */
    outgoing_t out;
    bool nothere_pending;
    uint8_t nothere_id[DUET_BLOB_ID_BYTES];
    uint32_t nothere_gen;

    bool peer_state_known;
    uint64_t peer_wanting;
    /* Items of my blobs whose last byte went out on this link; the first `held` of them are
     * confirmed whole at the partner (its STATE 0 came after) and wait for the flush. */
    uint8_t served[DUET_BLOBXFER_SERVED_MAX][DUET_ITEM_ID_BYTES];
    size_t served_n, held;

    duet_blobxfer_stats_t stats;
    duet_codec_enc_t enc;
    uint8_t *buf; /* DUET_BLOBXFER_DATA_MAX: sealed bytes read for a DATA frame */
};

/* ---- frames -------------------------------------------------------------------------- */

uint32_t duet_blobxfer_frame_type(const uint8_t *f, size_t len)
{
    size_t i;
    if (len < 3) {
        return 0;
    }
    if ((f[0] & 0xf0) == 0x80 && (f[0] & 0x0f) > 0) {
        i = 1; /* fixmap */
    } else if (f[0] == 0xde) {
        i = 3; /* map 16 */
    } else if (f[0] == 0xdf) {
        i = 5; /* map 32 */
    } else {
        return 0;
    }
    if (len < i + 2 || f[i] != 0x00 || f[i + 1] < DUET_BLOBXFER_TYPE_MIN ||
        f[i + 1] > DUET_BLOBXFER_TYPE_MAX) {
        return 0;
    }
    return f[i + 1];
}

static duet_err_t get_gen(const msgpack_object *o, uint32_t *gen)
{
    uint64_t v;
    duet_err_t err = duet_codec_get_uint(o, 1, UINT32_MAX, &v);
    *gen = (uint32_t)v;
    return err;
}

duet_err_t duet_blobxfer_parse(const uint8_t *frame, size_t len, duet_blobxfer_frame_t *out)
{
    static const duet_codec_limits_t lim = {.max_depth = 1,
                                            .max_str = 0,
                                            .max_bin = DUET_BLOBXFER_DATA_MAX,
                                            .max_array = 0,
                                            .max_map = 5,
                                            .max_objects = 11};
    static const duet_codec_field_t want[] = {{0, DUET_CODEC_UINT, true},
                                              {1, DUET_CODEC_BIN, true},
                                              {2, DUET_CODEC_UINT, true},
                                              {3, DUET_CODEC_UINT, true},
                                              {4, DUET_CODEC_UINT, true}};
    static const duet_codec_field_t data[] = {{0, DUET_CODEC_UINT, true},
                                              {1, DUET_CODEC_BIN, true},
                                              {2, DUET_CODEC_UINT, true},
                                              {3, DUET_CODEC_UINT, true},
                                              {4, DUET_CODEC_BIN, true}};
    static const duet_codec_field_t more[] = {{0, DUET_CODEC_UINT, true},
                                              {1, DUET_CODEC_BIN, true},
                                              {2, DUET_CODEC_UINT, true},
                                              {3, DUET_CODEC_UINT, true}};
    static const duet_codec_field_t nothere[] = {
        {0, DUET_CODEC_UINT, true}, {1, DUET_CODEC_BIN, true}, {2, DUET_CODEC_UINT, true}};
    static const duet_codec_field_t state[] = {{0, DUET_CODEC_UINT, true},
                                               {1, DUET_CODEC_UINT, true}};
    const msgpack_object *f[5];
    duet_codec_msg_t msg;
    duet_err_t err = DUET_EPROTO;
    memset(out, 0, sizeof *out);
    uint32_t type = duet_blobxfer_frame_type(frame, len);
    if (type == 0 || duet_codec_decode(&msg, frame, len, &lim) != DUET_OK) {
        return DUET_EPROTO;
    }
    switch (type) {
    case DUET_BLOBXFER_WANT:
        if (duet_codec_map(&msg.root, want, 5, f) != DUET_OK ||
            duet_codec_get_fixed(f[1], out->id, DUET_BLOB_ID_BYTES) != DUET_OK ||
            get_gen(f[2], &out->gen) != DUET_OK ||
            duet_codec_get_uint(f[3], 0, DUET_BLOBXFER_SEALED_MAX - 1, &out->offset) ||
            duet_codec_get_uint(f[4], out->offset + 1, DUET_BLOBXFER_SEALED_MAX, &out->end)) {
            goto cleanup;
        }
        break;
    case DUET_BLOBXFER_DATA:
        if (duet_codec_map(&msg.root, data, 5, f) != DUET_OK ||
            duet_codec_get_fixed(f[1], out->id, DUET_BLOB_ID_BYTES) != DUET_OK ||
            get_gen(f[2], &out->gen) != DUET_OK ||
            duet_codec_get_uint(f[3], 0, DUET_BLOBXFER_SEALED_MAX - 1, &out->offset) ||
            duet_codec_get_bin(f[4], 1, DUET_BLOBXFER_DATA_MAX, &out->data, &out->len) ||
            out->offset + out->len > DUET_BLOBXFER_SEALED_MAX) {
            goto cleanup;
        }
        break;
    case DUET_BLOBXFER_MORE:
        if (duet_codec_map(&msg.root, more, 4, f) != DUET_OK ||
            duet_codec_get_fixed(f[1], out->id, DUET_BLOB_ID_BYTES) != DUET_OK ||
            get_gen(f[2], &out->gen) != DUET_OK ||
            duet_codec_get_uint(f[3], 1, DUET_BLOBXFER_SEALED_MAX, &out->end)) {
            goto cleanup;
        }
        break;
    case DUET_BLOBXFER_NOTHERE:
        if (duet_codec_map(&msg.root, nothere, 3, f) != DUET_OK ||
            duet_codec_get_fixed(f[1], out->id, DUET_BLOB_ID_BYTES) != DUET_OK ||
            get_gen(f[2], &out->gen) != DUET_OK) {
            goto cleanup;
        }
        break;
    case DUET_BLOBXFER_STATE:
        if (duet_codec_map(&msg.root, state, 2, f) != DUET_OK ||
            duet_codec_get_uint(f[1], 0, UINT32_MAX, &out->wanting)) {
            goto cleanup;
        }
        break;
    default:
        goto cleanup; /* 21..31: reserved */
    }
    out->type = (duet_blobxfer_type_t)type;
    err = DUET_OK;
cleanup:
    duet_codec_msg_dispose(&msg);
    if (err != DUET_OK) {
        memset(out, 0, sizeof *out);
    }
    return err;
}

/* ---- life ---------------------------------------------------------------------------- */

duet_blobxfer_t *duet_blobxfer_new(duet_store_t *st, const duet_blobxfer_callbacks_t *cb)
{
    duet_blobxfer_t *bx = calloc(1, sizeof *bx);
    if (bx == NULL) {
        return NULL;
    }
    bx->buf = malloc(DUET_BLOBXFER_DATA_MAX);
    if (bx->buf == NULL) {
        free(bx);
        return NULL;
    }
    bx->st = st;
    if (cb != NULL) {
        bx->cb = *cb;
    }
    bx->in.rx.fd = -1;
    duet_codec_enc_init(&bx->enc, DUET_BLOBXFER_FRAME_MAX);
    return bx;
}

static void in_drop(duet_blobxfer_t *bx)
{
    duet_voice_rx_close(&bx->in.rx); /* the partial file stays for the next link */
    memset(&bx->in, 0, sizeof bx->in);
    bx->in.rx.fd = -1;
}

static void out_drop(duet_blobxfer_t *bx)
{
    duet_blob_reader_free(bx->out.rd);
    memset(&bx->out, 0, sizeof bx->out);
}

void duet_blobxfer_free(duet_blobxfer_t *bx)
{
    if (bx == NULL) {
        return;
    }
    in_drop(bx);
    out_drop(bx);
    duet_codec_enc_dispose(&bx->enc);
    free(bx->buf);
    free(bx);
}

static duet_err_t fail(duet_blobxfer_t *bx, duet_err_t err)
{
    if (bx->err == DUET_OK) {
        bx->err = err;
        in_drop(bx);
        out_drop(bx);
    }
    return bx->err;
}

duet_err_t duet_blobxfer_error(const duet_blobxfer_t *bx)
{
    return bx->err;
}

void duet_blobxfer_stats(const duet_blobxfer_t *bx, duet_blobxfer_stats_t *out)
{
    *out = bx->stats;
}

void duet_blobxfer_refresh(duet_blobxfer_t *bx)
{
    bx->dirty = true;
}

bool duet_blobxfer_needs_flush(const duet_blobxfer_t *bx)
{
    return bx->err == DUET_OK && (bx->dirty || bx->finished || bx->held > 0);
}

static void served(duet_blobxfer_t *bx, const uint8_t item[DUET_ITEM_ID_BYTES])
{
    for (size_t i = 0; i < bx->served_n; i++) {
        if (memcmp(bx->served[i], item, DUET_ITEM_ID_BYTES) == 0) {
            return;
        }
    }
    if (bx->served_n < DUET_BLOBXFER_SERVED_MAX) {
        memcpy(bx->served[bx->served_n++], item, DUET_ITEM_ID_BYTES);
    }
}

/* Record the blobs the partner confirmed, in a transaction of their own. */
static duet_err_t commit_held(duet_blobxfer_t *bx)
{
    duet_err_t err = duet_store_begin(bx->st);
    if (err != DUET_OK) {
        return err;
    }
    for (size_t i = 0; i < bx->held && err == DUET_OK; i++) {
        err = duet_voice_set_held(bx->st, bx->served[i]);
    }
    err = err == DUET_OK ? duet_store_commit(bx->st) : err;
    if (err != DUET_OK) {
        duet_store_rollback(bx->st);
        return err;
    }
    memmove(bx->served, bx->served[bx->held], (bx->served_n - bx->held) * DUET_ITEM_ID_BYTES);
    bx->served_n -= bx->held;
    bx->held = 0;
    return DUET_OK;
}

static void progress(duet_blobxfer_t *bx, bool incoming, const uint8_t item[DUET_ITEM_ID_BYTES],
                     uint64_t bytes, uint64_t total, bool complete)
{
    if (bx->cb.on_progress == NULL) {
        return;
    }
    duet_blobxfer_progress_t p = {
        .incoming = incoming, .bytes = bytes, .total = total, .complete = complete};
    memcpy(p.item, item, DUET_ITEM_ID_BYTES);
    bx->cb.on_progress(bx->cb.ctx, &p);
}

/* ---- receiving: which blob, and from where ------------------------------------------- */

/* The end of the storage unit that holds offset: units are the header with chunk 0, then
 * one sealed chunk each. DATA frames never straddle two of them. */
static uint64_t unit_end(uint64_t offset)
{
    uint64_t first = DUET_BLOB_HEADER_BYTES + DUET_BLOB_SEALED_CHUNK;
    if (offset < first) {
        return first;
    }
    return first + ((offset - first) / DUET_BLOB_SEALED_CHUNK + 1) * DUET_BLOB_SEALED_CHUNK;
}

/* How far to ask from next: a window, rounded up to a unit boundary so that every DATA frame
 * is one whole unit (what arrives is then stored at once, never held across frames). */
static uint64_t window_end(uint64_t next, uint64_t total)
{
    uint64_t end = unit_end(next + DUET_BLOBXFER_WINDOW - 1);
    return end < total ? end : total;
}

/* A blob is complete on disk: commit its row (own transaction; no other is open now). */
static duet_err_t commit_available(duet_blobxfer_t *bx, const duet_voice_blob_t *row,
                                   uint64_t fetched)
{
    duet_err_t err = duet_store_begin(bx->st);
    if (err != DUET_OK) {
        return err;
    }
    err = duet_voice_mark_available(bx->st, row->id, fetched);
    err = err == DUET_OK ? duet_store_commit(bx->st) : err;
    if (err != DUET_OK) {
        duet_store_rollback(bx->st);
        return err;
    }
    bx->stats.blobs_in++;
    uint64_t total = duet_blob_sealed_size(row->size);
    progress(bx, true, row->item, total, total, true);
    return DUET_OK;
}

/*
 * Take up the wanted blob row (voice.h duet_voice_rx_open: locked, its partial file checked)
 * and either find it complete (*ready) or get ready to ask for the rest. DUET_EAGAIN (busy
 * elsewhere) and DUET_ECORRUPT (no usable reference) leave the blob for another link;
 * anything else is a local failure.
 */
static duet_err_t in_open(duet_blobxfer_t *bx, const duet_voice_blob_t *row, bool *ready)
{
    duet_err_t err = duet_voice_rx_open(bx->st, row, &bx->in.rx, ready);
    if (err != DUET_OK || *ready) {
        return err;
    }
    uint64_t next = duet_blob_recv_next_offset(bx->in.rx.recv);
    bx->in.active = true;
    bx->in.total = duet_blob_recv_sealed_size(bx->in.rx.recv);
    bx->in.gen = ++bx->last_gen;
    bx->in.asked = window_end(next, bx->in.total);
    bx->in.want_pending = true;
    return DUET_OK;
}

/* Take up wanted blobs until one needs the network (or none is left). */
static duet_err_t take_next(duet_blobxfer_t *bx)
{
    while (!bx->in.active) {
        duet_voice_blob_t row;
        bool ready;
        duet_err_t err = duet_voice_next_wanted(bx->st, bx->cursor, &row);
        if (err == DUET_ENOENT) {
            return DUET_OK;
        }
        if (err != DUET_OK) {
            return err;
        }
        bx->cursor = row.n;
        err = in_open(bx, &row, &ready);
        if (err == DUET_EAGAIN || err == DUET_ECORRUPT) {
            in_drop(bx);
            bx->stats.skipped++;
            continue;
        }
        if (err == DUET_OK && ready) {
            uint64_t fetched = bx->in.rx.count;
            in_drop(bx);
            err = commit_available(bx, &row, fetched);
            if (err != DUET_OK) {
                return err;
            }
            continue;
        }
        if (err != DUET_OK) {
            in_drop(bx);
            return err;
        }
        progress(bx, true, row.item, duet_blob_recv_next_offset(bx->in.rx.recv), bx->in.total,
                 false);
    }
    return DUET_OK;
}

/* Recount what we want from the partner; a change is announced. */
static duet_err_t recount(duet_blobxfer_t *bx)
{
    uint64_t n;
    duet_err_t err = duet_voice_count_wanted(bx->st, bx->cursor, &n);
    if (err != DUET_OK) {
        return err;
    }
    n += bx->in.active;
    if (!bx->state_sent || n != bx->wanting) {
        bx->wanting = n;
        bx->state_pending = true;
    }
    return DUET_OK;
}

duet_err_t duet_blobxfer_start(duet_blobxfer_t *bx)
{
    if (bx->started) {
        abort();
    }
    bx->started = true;
    duet_err_t err = take_next(bx);
    if (err == DUET_OK) {
        err = recount(bx);
    }
    return err == DUET_OK ? DUET_OK : fail(bx, err);
}

duet_err_t duet_blobxfer_flush(duet_blobxfer_t *bx)
{
    if (bx->err != DUET_OK) {
        return bx->err;
    }
    if (!bx->started) {
        abort();
    }
    /* The store is only read when something changed (not after every socket read of a
     * transfer): a blob finished or was given up, or new items may want blobs. */
    duet_err_t err = DUET_OK;
    bool look = bx->dirty;
    if ((bx->finished || bx->held > 0) && !sqlite3_get_autocommit(duet_store_db(bx->st))) {
        return DUET_OK; /* a transaction is open (a caller's misuse): commit at the next flush */
    }
    if (bx->held > 0) {
        err = commit_held(bx);
    }
    if (err == DUET_OK && bx->finished) {
        bx->finished = false;
        look = true;
        err = commit_available(bx, &bx->done_row, bx->done_fetched);
    }
    if (err == DUET_OK && look) {
        bx->dirty = false;
        err = take_next(bx);
        if (err == DUET_OK) {
            err = recount(bx);
        }
    }
    return err == DUET_OK ? DUET_OK : fail(bx, err);
}

/* ---- receiving: frames --------------------------------------------------------------- */

/* Ask again from where the partial file ends, under a new generation. */
static void restart(duet_blobxfer_t *bx)
{
    incoming_t *in = &bx->in;
    uint64_t next = duet_blob_recv_next_offset(in->rx.recv);
    in->gen = ++bx->last_gen;
    in->asked = window_end(next, in->total);
    in->want_pending = true;
    in->more_pending = false;
}

/* Leave the current blob for another link. */
static void give_up(duet_blobxfer_t *bx)
{
    in_drop(bx);
    bx->stats.skipped++;
}

static duet_err_t on_data(duet_blobxfer_t *bx, const duet_blobxfer_frame_t *fr)
{
    incoming_t *in = &bx->in;
    bx->stats.bytes_in += fr->len;
    if (!in->active || sodium_memcmp(fr->id, in->rx.row.id, DUET_BLOB_ID_BYTES) != 0) {
        return DUET_OK; /* a blob this link no longer receives */
    }
    duet_err_t err = duet_voice_rx_count(&in->rx, fr->len);
    if (err != DUET_OK) {
        return fail(bx, err);
    }
    if (fr->gen != in->gen) {
        return DUET_OK; /* sent for an earlier WANT */
    }
    uint64_t next = duet_blob_recv_next_offset(in->rx.recv);
    if (fr->offset > next) {
        bx->stats.restarts++; /* something before it went missing */
        restart(bx);
        return DUET_OK;
    }
    err = duet_blob_recv_append(in->rx.recv, fr->offset, fr->data, fr->len);
    if (err == DUET_EAUTH || err == DUET_EBLOB) {
        /* That chunk was dropped, the rest of the frame too; ask again from its start. */
        bx->stats.refetches++;
        if (++in->refetches > DUET_BLOBXFER_REFETCH_MAX) {
            give_up(bx);
            bx->dirty = true; /* the next flush recounts and moves on */
            return DUET_OK;
        }
        restart(bx);
        return DUET_OK;
    }
    if (err != DUET_OK) {
        return fail(bx, err); /* the disk */
    }
    next = duet_blob_recv_next_offset(in->rx.recv);
    if (duet_blob_recv_complete(in->rx.recv)) {
        err = duet_blob_recv_finish(in->rx.recv);
        if (err == DUET_EBLOB) {
            give_up(bx); /* authenticated chunks, yet another blob: the sender's fault */
            bx->dirty = true;
            return DUET_OK;
        }
        if (err != DUET_OK) {
            return fail(bx, err);
        }
        bx->finished = true;
        bx->done_row = in->rx.row;
        bx->done_fetched = in->rx.count;
        progress(bx, true, in->rx.row.item, in->total, in->total, false);
        in_drop(bx);
        return DUET_OK;
    }
    /* Keep the window open: ask for more once half of it is stored. */
    if (in->asked < in->total && in->asked - next <= DUET_BLOBXFER_WINDOW / 2) {
        in->asked = window_end(next, in->total);
        in->more_pending = true;
    }
    progress(bx, true, in->rx.row.item, next, in->total, false);
    return DUET_OK;
}

static duet_err_t on_nothere(duet_blobxfer_t *bx, const duet_blobxfer_frame_t *fr)
{
    incoming_t *in = &bx->in;
    if (in->active && fr->gen == in->gen &&
        sodium_memcmp(fr->id, in->rx.row.id, DUET_BLOB_ID_BYTES) == 0) {
        give_up(bx); /* perhaps another path (the relay) has it */
        bx->dirty = true;
    }
    return DUET_OK;
}

/* ---- sending: frames ----------------------------------------------------------------- */

static void nothere(duet_blobxfer_t *bx, const uint8_t id[DUET_BLOB_ID_BYTES], uint32_t gen)
{
    out_drop(bx);
    memcpy(bx->nothere_id, id, DUET_BLOB_ID_BYTES);
    bx->nothere_gen = gen;
    bx->nothere_pending = true; /* the partner asks for one blob at a time: one slot */
}

/* Open my blob id for sending; *found false (and NOTHERE queued) when I cannot send it. */
static duet_err_t out_open(duet_blobxfer_t *bx, const duet_blobxfer_frame_t *fr, bool *found)
{
    duet_voice_blob_t row;
    char path[DUET_VOICE_PATH_MAX];
    *found = false;
    out_drop(bx);
    duet_err_t err = duet_voice_blob(bx->st, fr->id, &row);
    if (err == DUET_ENOENT ||
        (err == DUET_OK && (!row.mine || row.state != DUET_VOICE_AVAILABLE))) {
        nothere(bx, fr->id, fr->gen);
        return DUET_OK;
    }
    if (err != DUET_OK) {
        return err;
    }
    duet_voice_t *v = sodium_malloc(sizeof *v);
    if (v == NULL) {
        return DUET_ENOMEM;
    }
    err = duet_voice_load(bx->st, row.item, v, NULL);
    if (err == DUET_OK) {
        err = duet_voice_path(bx->st, row.id, "", path, sizeof path);
    }
    if (err == DUET_OK) {
        err = duet_blob_reader_open(&bx->out.rd, path, &v->ref);
    }
    duet_voice_dispose(v);
    sodium_free(v);
    if (err == DUET_ENOENT || err == DUET_EBLOB || err == DUET_ECORRUPT || err == DUET_EINVAL ||
        err == DUET_EPERM) {
        nothere(bx, fr->id, fr->gen); /* gone or damaged here */
        return DUET_OK;
    }
    if (err != DUET_OK) {
        return err;
    }
    bx->out.active = true;
    memcpy(bx->out.id, row.id, DUET_BLOB_ID_BYTES);
    memcpy(bx->out.item, row.item, DUET_ITEM_ID_BYTES);
    bx->out.total = duet_blob_reader_size(bx->out.rd);
    *found = true;
    return DUET_OK;
}

static duet_err_t on_want(duet_blobxfer_t *bx, const duet_blobxfer_frame_t *fr)
{
    outgoing_t *out = &bx->out;
    if (!out->active || memcmp(out->id, fr->id, DUET_BLOB_ID_BYTES) != 0) {
        bool found;
        duet_err_t err = out_open(bx, fr, &found);
        if (err != DUET_OK) {
            return fail(bx, err);
        }
        if (!found) {
            return DUET_OK;
        }
    }
    if (fr->offset >= out->total) {
        return fail(bx, DUET_EPROTO); /* past the end of a blob whose size we both know */
    }
    out->gen = fr->gen;
    out->cursor = fr->offset;
    out->end = fr->end < out->total ? fr->end : out->total;
    return DUET_OK;
}

static duet_err_t on_more(duet_blobxfer_t *bx, const duet_blobxfer_frame_t *fr)
{
    outgoing_t *out = &bx->out;
    if (out->active && fr->gen == out->gen && memcmp(out->id, fr->id, DUET_BLOB_ID_BYTES) == 0) {
        uint64_t end = fr->end < out->total ? fr->end : out->total;
        if (end > out->end) {
            out->end = end;
        }
    }
    return DUET_OK; /* otherwise for a WANT since replaced */
}

duet_err_t duet_blobxfer_recv(duet_blobxfer_t *bx, const uint8_t *frame, size_t len)
{
    duet_blobxfer_frame_t fr;
    if (bx->err != DUET_OK) {
        return bx->err;
    }
    if (!bx->started) {
        abort();
    }
    if (duet_blobxfer_parse(frame, len, &fr) != DUET_OK) {
        return fail(bx, DUET_EPROTO);
    }
    switch (fr.type) {
    case DUET_BLOBXFER_WANT:
        return on_want(bx, &fr);
    case DUET_BLOBXFER_DATA:
        return on_data(bx, &fr);
    case DUET_BLOBXFER_MORE:
        return on_more(bx, &fr);
    case DUET_BLOBXFER_NOTHERE:
        return on_nothere(bx, &fr);
    case DUET_BLOBXFER_STATE:
        bx->peer_state_known = true;
        bx->peer_wanting = fr.wanting;
        if (fr.wanting == 0) {
            bx->held = bx->served_n; /* it has every blob it had whole from me */
        }
        return DUET_OK;
    }
    return fail(bx, DUET_EPROTO);
}

/* ---- output -------------------------------------------------------------------------- */

static void put_head(duet_blobxfer_t *bx, uint32_t n, duet_blobxfer_type_t type,
                     const uint8_t id[DUET_BLOB_ID_BYTES], uint32_t gen)
{
    duet_codec_put_map(&bx->enc, n);
    duet_codec_put_key(&bx->enc, 0);
    duet_codec_put_uint(&bx->enc, type);
    duet_codec_put_key(&bx->enc, 1);
    duet_codec_put_bin(&bx->enc, id, DUET_BLOB_ID_BYTES);
    duet_codec_put_key(&bx->enc, 2);
    duet_codec_put_uint(&bx->enc, gen);
}

static duet_err_t finish(duet_blobxfer_t *bx, const uint8_t **frame, size_t *len)
{
    duet_err_t err = duet_codec_enc_finish(&bx->enc, frame, len);
    if (err != DUET_OK) {
        *frame = NULL;
        *len = 0;
        return fail(bx, err);
    }
    return DUET_OK;
}

duet_err_t duet_blobxfer_next_control(duet_blobxfer_t *bx, const uint8_t **frame, size_t *len)
{
    incoming_t *in = &bx->in;
    *frame = NULL;
    *len = 0;
    if (bx->err != DUET_OK) {
        return DUET_OK; /* failed: nothing more to say */
    }
    duet_codec_enc_reset(&bx->enc);
    if (bx->state_pending) {
        bx->state_pending = false;
        bx->state_sent = true;
        duet_codec_put_map(&bx->enc, 2);
        duet_codec_put_key(&bx->enc, 0);
        duet_codec_put_uint(&bx->enc, DUET_BLOBXFER_STATE);
        duet_codec_put_key(&bx->enc, 1);
        duet_codec_put_uint(&bx->enc, bx->wanting);
        return finish(bx, frame, len);
    }
    if (bx->nothere_pending) {
        bx->nothere_pending = false;
        put_head(bx, 3, DUET_BLOBXFER_NOTHERE, bx->nothere_id, bx->nothere_gen);
        return finish(bx, frame, len);
    }
    if (in->active && in->want_pending) {
        in->want_pending = false;
        in->more_pending = false; /* the WANT carries the window */
        put_head(bx, 5, DUET_BLOBXFER_WANT, in->rx.row.id, in->gen);
        duet_codec_put_key(&bx->enc, 3);
        duet_codec_put_uint(&bx->enc, duet_blob_recv_next_offset(in->rx.recv));
        duet_codec_put_key(&bx->enc, 4);
        duet_codec_put_uint(&bx->enc, in->asked);
        return finish(bx, frame, len);
    }
    if (in->active && in->more_pending) {
        in->more_pending = false;
        put_head(bx, 4, DUET_BLOBXFER_MORE, in->rx.row.id, in->gen);
        duet_codec_put_key(&bx->enc, 3);
        duet_codec_put_uint(&bx->enc, in->asked);
        return finish(bx, frame, len);
    }
    return DUET_OK;
}

duet_err_t duet_blobxfer_next_data(duet_blobxfer_t *bx, const uint8_t **frame, size_t *len)
{
    outgoing_t *out = &bx->out;
    size_t got;
    *frame = NULL;
    *len = 0;
    if (bx->err != DUET_OK || !out->active || out->cursor >= out->end) {
        return DUET_OK;
    }
    uint64_t stop = unit_end(out->cursor);
    if (stop > out->end) {
        stop = out->end;
    }
    duet_err_t err =
        duet_blob_reader_read(out->rd, out->cursor, bx->buf, (size_t)(stop - out->cursor), &got);
    if (err != DUET_OK || got == 0) {
        nothere(bx, out->id, out->gen); /* the file changed under us: damaged here */
        return DUET_OK;
    }
    duet_codec_enc_reset(&bx->enc);
    put_head(bx, 5, DUET_BLOBXFER_DATA, out->id, out->gen);
    duet_codec_put_key(&bx->enc, 3);
    duet_codec_put_uint(&bx->enc, out->cursor);
    duet_codec_put_key(&bx->enc, 4);
    duet_codec_put_bin(&bx->enc, bx->buf, got);
    if ((err = finish(bx, frame, len)) != DUET_OK) {
        return err;
    }
    out->cursor += got;
    bx->stats.bytes_out += got;
    if (out->cursor == out->total) {
        served(bx, out->item);
    }
    progress(bx, false, out->item, out->cursor, out->total, out->cursor == out->total);
    return DUET_OK;
}

bool duet_blobxfer_done(const duet_blobxfer_t *bx)
{
    return bx->err == DUET_OK && bx->started && bx->peer_state_known && bx->peer_wanting == 0 &&
           !bx->in.active && !bx->finished && !bx->dirty && bx->wanting == 0 &&
           !bx->state_pending && !bx->nothere_pending;
}
