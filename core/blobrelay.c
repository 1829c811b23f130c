/* see blobrelay.h */
#include "blobrelay.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "codec.h"
#include "voice.h"

_Static_assert(DUET_BLOBRELAY_OBJECT <= DUET_RELAY_OBJECT_MAX, "a unit fits a relay object");
_Static_assert(DUET_BLOBRELAY_PIPELINE <= DUET_RELAY_WINDOW, "within the relay's window");

static const uint8_t blob_label[4] = {'b', 'l', 'o', 'b'};

/* What each request in flight was for. */
enum { P_HELLO = 1, P_GET, P_PUT, P_DELETE };

typedef struct pend {
    uint32_t rid;
    uint8_t kind;
    uint32_t unit;   /* P_GET, P_PUT */
    uint64_t blob_n; /* P_GET, P_PUT: blobs.n of the blob it was for */
} pend_t;

/* The partner's blob being fetched. */
typedef struct incoming {
    bool active;
    duet_voice_rx_t rx;
    uint64_t total; /* sealed size */
    uint32_t nunits;
    uint32_t next_get; /* the next unit to ask for */
    uint32_t waiting;  /* GETs in flight */
    bool stop;         /* a unit is missing or bad: ask no more, let the answers drain */
} incoming_t;

/* My blob being uploaded. */
typedef struct outgoing {
    bool active;
    duet_voice_blob_t row;
    duet_blob_reader_t *rd;
    uint32_t nunits;
    uint32_t next_put; /* the next unit to PUT */
    uint32_t acked;    /* units [0, acked) the relay holds */
    uint32_t marked;   /* what blobs.relayed says */
    uint32_t waiting;  /* PUTs in flight */
} outgoing_t;

struct duet_blobrelay {
    duet_store_t *st;
    duet_relay_keys_t k;
    duet_blobxfer_callbacks_t cb;
    duet_err_t err, upload_err;
    uint32_t next_rid, window;
    pend_t pend[DUET_BLOBRELAY_PIPELINE];
    size_t phead, plen;
    bool hello_sent, welcomed;

    /* download */
    incoming_t in;
    uint64_t dl_cursor; /* blobs.n of the last wanted blob taken up */
    bool dl_exhausted;
    bool avail_pending; /* a blob complete on disk, its row not yet committed */
    duet_voice_blob_t avail_row;
    uint64_t avail_fetched;
    uint8_t del_id[DUET_BLOB_ID_BYTES]; /* its objects to DELETE, units [del_next, del_n) */
    uint32_t del_next, del_n;
    uint8_t del_oids[DUET_RELAY_DELETE_MAX][DUET_BLOBRELAY_OID_BYTES];

    /* upload */
    outgoing_t out;
    uint64_t up_cursor;
    bool up_exhausted;

    duet_blobrelay_stats_t stats;
    duet_codec_enc_t enc;
    uint8_t *buf; /* DUET_BLOBRELAY_OBJECT: one unit, padded */
};

/* ---- units ---------------------------------------------------------------------------- */

static uint64_t unit_start(uint32_t k)
{
    return k == 0 ? 0 : duet_blob_chunk_offset(k);
}

static size_t unit_len(uint64_t size, uint32_t k)
{
    size_t n = duet_blob_chunk_sealed_len(size, k);
    return k == 0 ? n + DUET_BLOB_HEADER_BYTES : n;
}

/* The unit that starts at offset (the receiver's next offset is always one). */
static uint32_t unit_at(uint64_t offset)
{
    return offset == 0 ? 0 : (uint32_t)((offset - DUET_BLOB_HEADER_BYTES) / DUET_BLOB_SEALED_CHUNK);
}

void duet_blobrelay_oid(uint8_t oid[static DUET_BLOBRELAY_OID_BYTES], const duet_relay_dir_t *d,
                        const uint8_t id[static DUET_BLOB_ID_BYTES], uint32_t k)
{
    crypto_auth_hmacsha256_state h;
    uint8_t mac[crypto_auth_hmacsha256_BYTES],
        kb[4] = {(uint8_t)(k >> 24), (uint8_t)(k >> 16), (uint8_t)(k >> 8), (uint8_t)k};
    crypto_auth_hmacsha256_init(&h, d->okey, sizeof d->okey);
    crypto_auth_hmacsha256_update(&h, blob_label, sizeof blob_label);
    crypto_auth_hmacsha256_update(&h, id, DUET_BLOB_ID_BYTES);
    crypto_auth_hmacsha256_update(&h, kb, sizeof kb);
    crypto_auth_hmacsha256_final(&h, mac);
    memcpy(oid, mac, DUET_BLOBRELAY_OID_BYTES);
    sodium_memzero(&h, sizeof h);
}

/* ---- life ----------------------------------------------------------------------------- */

duet_blobrelay_t *duet_blobrelay_new(duet_store_t *st, const duet_relay_keys_t *keys,
                                     const duet_blobxfer_callbacks_t *cb)
{
    duet_blobrelay_t *br = calloc(1, sizeof *br);
    if (br == NULL) {
        return NULL;
    }
    br->buf = malloc(DUET_BLOBRELAY_OBJECT);
    if (br->buf == NULL) {
        free(br);
        return NULL;
    }
    br->st = st;
    br->k = *keys;
    if (cb != NULL) {
        br->cb = *cb;
    }
    br->next_rid = 1;
    br->window = DUET_BLOBRELAY_PIPELINE;
    br->in.rx.fd = -1;
    duet_codec_enc_init(&br->enc, DUET_RELAY_FRAME_MAX);
    return br;
}

static void in_drop(duet_blobrelay_t *br)
{
    duet_voice_rx_close(&br->in.rx); /* the partial file stays */
    memset(&br->in, 0, sizeof br->in);
    br->in.rx.fd = -1;
}

static void out_drop(duet_blobrelay_t *br)
{
    duet_blob_reader_free(br->out.rd);
    memset(&br->out, 0, sizeof br->out);
}

void duet_blobrelay_free(duet_blobrelay_t *br)
{
    if (br == NULL) {
        return;
    }
    in_drop(br);
    out_drop(br);
    duet_codec_enc_dispose(&br->enc);
    free(br->buf);
    sodium_memzero(br, sizeof *br); /* the relay keys */
    free(br);
}

static duet_err_t fail(duet_blobrelay_t *br, duet_err_t err)
{
    if (br->err == DUET_OK) {
        br->err = err;
        in_drop(br);
        out_drop(br);
    }
    return br->err;
}

duet_err_t duet_blobrelay_error(const duet_blobrelay_t *br)
{
    return br->err;
}

duet_err_t duet_blobrelay_upload_error(const duet_blobrelay_t *br)
{
    return br->upload_err;
}

void duet_blobrelay_stats(const duet_blobrelay_t *br, duet_blobrelay_stats_t *out)
{
    *out = br->stats;
}

static void progress(duet_blobrelay_t *br, bool incoming, const uint8_t item[DUET_ITEM_ID_BYTES],
                     uint64_t bytes, uint64_t total, bool complete)
{
    if (br->cb.on_progress == NULL) {
        return;
    }
    duet_blobxfer_progress_t p = {
        .incoming = incoming, .bytes = bytes, .total = total, .complete = complete};
    memcpy(p.item, item, DUET_ITEM_ID_BYTES);
    br->cb.on_progress(br->cb.ctx, &p);
}

bool duet_blobrelay_done(const duet_blobrelay_t *br)
{
    bool upload_over = br->upload_err != DUET_OK || (br->up_exhausted && !br->out.active);
    return br->err == DUET_OK && br->welcomed && br->plen == 0 && !br->in.active &&
           br->dl_exhausted && !br->avail_pending && br->del_next == br->del_n && upload_over &&
           br->out.marked == br->out.acked;
}

/* ---- the store, when it is free ------------------------------------------------------- */

/* Whether the upload's progress should be written now: every DUET_BLOBRELAY_MARK_EVERY
 * units, and when nothing more will be answered for this blob. */
static bool mark_due(const duet_blobrelay_t *br)
{
    const outgoing_t *out = &br->out;
    if (!out->active || out->marked == out->acked) {
        return false;
    }
    bool over = out->waiting == 0 &&
                (out->next_put >= out->nunits || br->upload_err != DUET_OK || br->err != DUET_OK);
    return out->acked - out->marked >= DUET_BLOBRELAY_MARK_EVERY || over;
}

/* Write what waits (a blob now available, upload progress), unless a transaction is open on
 * the store's connection (a relay_sync batch): then at a later call. */
static duet_err_t settle(duet_blobrelay_t *br)
{
    bool mark = mark_due(br);
    if (!br->avail_pending && !mark) {
        return DUET_OK;
    }
    if (!sqlite3_get_autocommit(duet_store_db(br->st))) {
        return DUET_OK;
    }
    duet_err_t err = duet_store_begin(br->st);
    if (err != DUET_OK) {
        return err;
    }
    if (br->avail_pending) {
        err = duet_voice_mark_available(br->st, br->avail_row.id, br->avail_fetched);
    }
    if (err == DUET_OK && mark) {
        err = duet_voice_set_relayed(br->st, br->out.row.id, br->out.acked);
    }
    err = err == DUET_OK ? duet_store_commit(br->st) : err;
    if (err != DUET_OK) {
        duet_store_rollback(br->st);
        return err;
    }
    if (br->avail_pending) {
        br->avail_pending = false;
        br->stats.blobs_in++;
        uint64_t total = duet_blob_sealed_size(br->avail_row.size);
        progress(br, true, br->avail_row.item, total, total, true);
        memcpy(br->del_id, br->avail_row.id, sizeof br->del_id);
        br->del_next = 0;
        br->del_n = (uint32_t)duet_blob_chunk_count(br->avail_row.size);
    }
    if (mark) {
        br->out.marked = br->out.acked;
        if (br->out.acked == br->out.nunits) {
            br->stats.blobs_up++;
            out_drop(br); /* the relay holds all of it */
        }
    }
    return DUET_OK;
}

/* ---- download ------------------------------------------------------------------------- */

/* A blob complete on disk: its row is committed by settle, then its objects deleted. */
static void complete(duet_blobrelay_t *br, const duet_voice_blob_t *row, uint64_t fetched)
{
    br->avail_pending = true;
    br->avail_row = *row;
    br->avail_fetched = fetched;
}

/* Take up the next wanted blob (or find none). */
static duet_err_t take_next_in(duet_blobrelay_t *br)
{
    while (!br->in.active && !br->dl_exhausted && !br->avail_pending && br->del_next == br->del_n) {
        duet_voice_blob_t row;
        bool ready;
        duet_err_t err = duet_voice_next_wanted(br->st, br->dl_cursor, &row);
        if (err == DUET_ENOENT) {
            br->dl_exhausted = true;
            return DUET_OK;
        }
        if (err != DUET_OK) {
            return err;
        }
        br->dl_cursor = row.n;
        err = duet_voice_rx_open(br->st, &row, &br->in.rx, &ready);
        if (err == DUET_EAGAIN || err == DUET_ECORRUPT) {
            br->stats.skipped++; /* busy on another link, or unusable */
            continue;
        }
        if (err != DUET_OK) {
            return err;
        }
        if (ready) {
            complete(br, &row, br->in.rx.count);
            in_drop(br);
            return DUET_OK;
        }
        br->in.active = true;
        br->in.total = duet_blob_recv_sealed_size(br->in.rx.recv);
        br->in.nunits = (uint32_t)duet_blob_chunk_count(row.size);
        br->in.next_get = unit_at(duet_blob_recv_next_offset(br->in.rx.recv));
        progress(br, true, row.item, duet_blob_recv_next_offset(br->in.rx.recv), br->in.total,
                 false);
    }
    return DUET_OK;
}

/* The current blob cannot go on in this session: once its answers have drained, leave it. */
static void stop_in(duet_blobrelay_t *br)
{
    if (!br->in.stop) {
        br->in.stop = true;
        br->stats.skipped++;
    }
    if (br->in.waiting == 0) {
        in_drop(br);
    }
}

static duet_err_t on_get(duet_blobrelay_t *br, const pend_t *p, const duet_relay_frame_t *f)
{
    incoming_t *in = &br->in;
    if (!in->active || p->blob_n != in->rx.row.n) {
        return DUET_OK; /* for a blob already left */
    }
    in->waiting--;
    if (in->stop) {
        stop_in(br);
        return DUET_OK;
    }
    if (f->type == DUET_RELAY_ERROR) {
        if (f->err == DUET_ECAPABILITY || f->err == DUET_EPROTO) {
            return fail(br, f->err);
        }
        stop_in(br); /* not uploaded yet, expired: later, or the direct link */
        return DUET_OK;
    }
    uint8_t oid[DUET_BLOBRELAY_OID_BYTES];
    size_t len = unit_len(in->rx.row.size, p->unit);
    duet_blobrelay_oid(oid, &br->k.in, in->rx.row.id, p->unit);
    if (f->cls != DUET_RELAY_BLOB || f->oid_len != sizeof oid ||
        sodium_memcmp(f->oid, oid, sizeof oid) != 0 || f->data_len != DUET_BLOBRELAY_OBJECT ||
        !sodium_is_zero(f->data + len, DUET_BLOBRELAY_OBJECT - len)) {
        stop_in(br); /* not the object asked for: a confused relay, nothing stored */
        return DUET_OK;
    }
    duet_err_t err = duet_voice_rx_count(&in->rx, len);
    if (err != DUET_OK) {
        return fail(br, err);
    }
    err = duet_blob_recv_append(in->rx.recv, unit_start(p->unit), f->data, len);
    if (err == DUET_EAUTH || err == DUET_EBLOB || err == DUET_EPROTO) {
        stop_in(br); /* the relay's copy is bad: the sender's next upload cannot replace it */
        return DUET_OK;
    }
    if (err != DUET_OK) {
        return fail(br, err);
    }
    br->stats.units_in++;
    br->stats.bytes_in += len;
    if (!duet_blob_recv_complete(in->rx.recv)) {
        progress(br, true, in->rx.row.item, duet_blob_recv_next_offset(in->rx.recv), in->total,
                 false);
        return DUET_OK;
    }
    err = duet_blob_recv_finish(in->rx.recv);
    if (err == DUET_EBLOB) {
        stop_in(br); /* good units, yet another blob: the sender's fault */
        return DUET_OK;
    }
    if (err != DUET_OK) {
        return fail(br, err);
    }
    complete(br, &in->rx.row, in->rx.count);
    in_drop(br);
    return DUET_OK;
}

/* ---- upload --------------------------------------------------------------------------- */

/* Open the next of my blobs to upload (or find none). */
static duet_err_t take_next_out(duet_blobrelay_t *br)
{
    while (!br->out.active && !br->up_exhausted) {
        duet_voice_blob_t row;
        duet_voice_t *v;
        char path[DUET_VOICE_PATH_MAX];
        duet_err_t err = duet_voice_next_to_relay(br->st, br->up_cursor, &row);
        if (err == DUET_ENOENT) {
            br->up_exhausted = true;
            return DUET_OK;
        }
        if (err != DUET_OK) {
            return err;
        }
        br->up_cursor = row.n;
        if ((v = sodium_malloc(sizeof *v)) == NULL) {
            return DUET_ENOMEM;
        }
        err = duet_voice_load(br->st, row.item, v, NULL);
        if (err == DUET_OK) {
            err = duet_voice_path(br->st, row.id, "", path, sizeof path);
        }
        if (err == DUET_OK) {
            err = duet_blob_reader_open(&br->out.rd, path, &v->ref);
        }
        duet_voice_dispose(v);
        sodium_free(v);
        if (err == DUET_ENOENT || err == DUET_EBLOB || err == DUET_ECORRUPT || err == DUET_EINVAL ||
            err == DUET_EPERM) {
            continue; /* gone or damaged here: nothing to upload */
        }
        if (err != DUET_OK) {
            return err;
        }
        br->out.active = true;
        br->out.row = row;
        br->out.nunits = (uint32_t)duet_blob_chunk_count(row.size);
        br->out.next_put = br->out.acked = br->out.marked = (uint32_t)row.relayed;
    }
    return DUET_OK;
}

static duet_err_t on_put(duet_blobrelay_t *br, const pend_t *p, const duet_relay_frame_t *f)
{
    outgoing_t *out = &br->out;
    if (!out->active || p->blob_n != out->row.n) {
        return DUET_OK;
    }
    out->waiting--;
    if (f->type == DUET_RELAY_ERROR) {
        if (f->err == DUET_ECAPABILITY || f->err == DUET_EPROTO) {
            return fail(br, f->err);
        }
        if (br->upload_err == DUET_OK) {
            br->upload_err = f->err; /* quota, size, the relay's disk: no more for now */
        }
        return DUET_OK;
    }
    if (p->unit == out->acked && br->upload_err == DUET_OK) {
        out->acked++; /* answers come in order: the prefix the relay holds grows by one */
        br->stats.units_up++;
        br->stats.bytes_up += unit_len(out->row.size, p->unit);
        uint64_t total = duet_blob_sealed_size(out->row.size);
        uint64_t done = out->acked == out->nunits ? total : unit_start(out->acked);
        progress(br, false, out->row.item, done, total, out->acked == out->nunits);
    }
    return DUET_OK;
}

/* ---- frames in ------------------------------------------------------------------------ */

static duet_err_t on_response(duet_blobrelay_t *br, const duet_relay_frame_t *f)
{
    if (f->type == DUET_RELAY_ERROR && f->fatal) {
        return fail(br, f->err);
    }
    if (br->plen == 0 || br->pend[br->phead].rid != f->rid) {
        return fail(br, DUET_EPROTO);
    }
    pend_t p = br->pend[br->phead];
    br->phead = (br->phead + 1) % DUET_BLOBRELAY_PIPELINE;
    br->plen--;
    bool is_err = f->type == DUET_RELAY_ERROR;
    switch (p.kind) {
    case P_HELLO:
        if (f->type != DUET_RELAY_WELCOME) {
            return fail(br, is_err ? f->err : DUET_EPROTO);
        }
        if (f->object_max < DUET_BLOBRELAY_OBJECT) {
            return fail(br, DUET_ETOOBIG); /* this relay cannot carry a unit */
        }
        br->welcomed = true;
        br->window = f->window < DUET_BLOBRELAY_PIPELINE ? f->window : DUET_BLOBRELAY_PIPELINE;
        return DUET_OK;
    case P_GET:
        if (f->type != DUET_RELAY_OBJECT && !is_err) {
            return fail(br, DUET_EPROTO);
        }
        return on_get(br, &p, f);
    case P_PUT:
        if (f->type != DUET_RELAY_OK && !is_err) {
            return fail(br, DUET_EPROTO);
        }
        return on_put(br, &p, f);
    case P_DELETE:
        if (f->type != DUET_RELAY_OK && !is_err) {
            return fail(br, DUET_EPROTO);
        }
        return DUET_OK; /* a failed delete only leaves work for the relay's TTL */
    default:
        return fail(br, DUET_EINTERNAL);
    }
}

duet_err_t duet_blobrelay_recv(duet_blobrelay_t *br, const uint8_t *frame, size_t len)
{
    duet_relay_frame_t f;
    if (br->err != DUET_OK) {
        return br->err;
    }
    if (duet_relay_frame_decode(&f, frame, len) != DUET_OK) {
        return fail(br, DUET_EPROTO);
    }
    duet_err_t err;
    if (duet_relay_is_request(f.type) || f.type == DUET_RELAY_NOTIFY ||
        f.type == DUET_RELAY_PDATA || f.type == DUET_RELAY_PCLOSED) {
        err = fail(br, DUET_EPROTO); /* this session never subscribes or pairs */
    } else {
        err = on_response(br, &f);
    }
    duet_relay_frame_dispose(&f);
    return err;
}

/* ---- frames out ----------------------------------------------------------------------- */

static pend_t *push_pend(duet_blobrelay_t *br, uint8_t kind, uint32_t *rid)
{
    pend_t *p = &br->pend[(br->phead + br->plen) % DUET_BLOBRELAY_PIPELINE];
    memset(p, 0, sizeof *p);
    p->kind = kind;
    p->rid = br->next_rid++;
    if (br->next_rid == 0) {
        br->next_rid = 1;
    }
    br->plen++;
    *rid = p->rid;
    return p;
}

static duet_err_t emit(duet_blobrelay_t *br, const uint8_t **frame, size_t *len)
{
    duet_err_t err = duet_codec_enc_finish(&br->enc, frame, len);
    if (err != DUET_OK) {
        *frame = NULL;
        *len = 0;
        return fail(br, err);
    }
    return DUET_OK;
}

/* DELETE the objects of the blob that became available, DUET_RELAY_DELETE_MAX at a time. */
static duet_err_t delete_batch(duet_blobrelay_t *br, const uint8_t **frame, size_t *len)
{
    const uint8_t *ptrs[DUET_RELAY_DELETE_MAX];
    size_t lens[DUET_RELAY_DELETE_MAX], n = 0;
    uint32_t rid;
    while (n < DUET_RELAY_DELETE_MAX && br->del_next < br->del_n) {
        duet_blobrelay_oid(br->del_oids[n], &br->k.in, br->del_id, br->del_next++);
        ptrs[n] = br->del_oids[n];
        lens[n] = DUET_BLOBRELAY_OID_BYTES;
        n++;
    }
    push_pend(br, P_DELETE, &rid);
    duet_relay_enc_delete(&br->enc, rid, &br->k.in, ptrs, lens, n);
    return emit(br, frame, len);
}

static duet_err_t get_unit(duet_blobrelay_t *br, const uint8_t **frame, size_t *len)
{
    uint8_t oid[DUET_BLOBRELAY_OID_BYTES];
    uint32_t rid;
    duet_blobrelay_oid(oid, &br->k.in, br->in.rx.row.id, br->in.next_get);
    pend_t *p = push_pend(br, P_GET, &rid);
    p->unit = br->in.next_get++;
    p->blob_n = br->in.rx.row.n;
    br->in.waiting++;
    duet_relay_enc_get(&br->enc, rid, &br->k.in, oid, sizeof oid);
    return emit(br, frame, len);
}

static duet_err_t put_unit(duet_blobrelay_t *br, const uint8_t **frame, size_t *len)
{
    outgoing_t *out = &br->out;
    uint8_t oid[DUET_BLOBRELAY_OID_BYTES];
    uint32_t rid;
    size_t want = unit_len(out->row.size, out->next_put), got;
    duet_err_t err = duet_blob_reader_read(out->rd, unit_start(out->next_put), br->buf, want, &got);
    if (err != DUET_OK || got != want) {
        /* The file changed under us: stop this blob here; what the relay holds is recorded. */
        out->nunits = out->next_put;
        return DUET_OK;
    }
    memset(br->buf + want, 0, DUET_BLOBRELAY_OBJECT - want);
    duet_blobrelay_oid(oid, &br->k.out, out->row.id, out->next_put);
    pend_t *p = push_pend(br, P_PUT, &rid);
    p->unit = out->next_put++;
    p->blob_n = out->row.n;
    out->waiting++;
    duet_relay_enc_put(&br->enc, rid, &br->k.out, DUET_RELAY_BLOB, oid, sizeof oid, br->buf,
                       DUET_BLOBRELAY_OBJECT);
    return emit(br, frame, len);
}

duet_err_t duet_blobrelay_next_frame(duet_blobrelay_t *br, const uint8_t **frame, size_t *len)
{
    uint32_t rid;
    *frame = NULL;
    *len = 0;
    if (br->err != DUET_OK) {
        return br->err;
    }
    duet_codec_enc_reset(&br->enc);
    if (!br->hello_sent) {
        br->hello_sent = true;
        push_pend(br, P_HELLO, &rid);
        duet_relay_enc_hello(&br->enc, rid);
        return emit(br, frame, len);
    }
    duet_err_t err = settle(br);
    if (err == DUET_OK && br->welcomed) {
        err = take_next_in(br);
    }
    if (err == DUET_OK && br->welcomed && br->upload_err == DUET_OK && !br->out.active &&
        !br->up_exhausted) {
        err = take_next_out(br);
    }
    if (err != DUET_OK) {
        return fail(br, err);
    }
    if (!br->welcomed || br->plen >= br->window) {
        return DUET_OK;
    }
    if (br->del_next < br->del_n) {
        return delete_batch(br, frame, len);
    }
    incoming_t *in = &br->in;
    if (in->active && !in->stop && in->next_get < in->nunits &&
        in->waiting < DUET_BLOBRELAY_AHEAD) {
        return get_unit(br, frame, len);
    }
    outgoing_t *out = &br->out;
    if (out->active && br->upload_err == DUET_OK && out->next_put < out->nunits &&
        out->waiting < DUET_BLOBRELAY_AHEAD &&
        out->acked - out->marked < 2 * DUET_BLOBRELAY_MARK_EVERY) {
        return put_unit(br, frame, len);
    }
    if (out->active && out->waiting == 0 &&
        (br->upload_err != DUET_OK || out->next_put >= out->nunits) && out->marked == out->acked) {
        out_drop(br); /* refused, or cut short by a changed file: what the relay holds is noted */
    }
    return DUET_OK;
}

void duet_blobrelay_kick(duet_blobrelay_t *br)
{
    br->dl_exhausted = false;
    br->up_exhausted = false;
    br->dl_cursor = 0; /* blobs left earlier in this session are tried again */
    br->up_cursor = 0;
}
