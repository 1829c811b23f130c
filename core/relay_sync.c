/* see relay_sync.h */
#include "relay_sync.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "codec.h"

/* What each request in flight was for. */
enum {
    P_HELLO = 1,
    P_SUB,
    P_PING,
    P_GET_STATE,
    P_LIST,
    P_GET_ENV,
    P_DELETE,
    P_PUT_STATE,
    P_PUT_ENV
};

typedef struct pend {
    uint32_t rid;
    uint8_t kind;
    uint16_t idx;   /* P_GET_ENV: index in fetch[] */
    uint32_t bytes; /* P_PUT_ENV: envelope bytes */
    uint64_t seq;   /* P_PUT_ENV */
} pend_t;

typedef uint8_t label_t[DUET_RELAY_LABEL_BYTES];

struct duet_relay_sync {
    duet_relay_host_t h;
    duet_relay_keys_t k;
    duet_rng_t rng;
    bool stay;
    duet_err_t err, upload_err;
    uint32_t next_rid;
    uint32_t window;
    pend_t pend[DUET_RELAY_SYNC_PIPELINE];
    size_t phead, plen;
    bool hello_sent, welcomed, sub_sent, ping_needed;
    label_t state_in_oid, state_out_oid;

    /* download */
    bool dl_active, dl_again, dl_first_done;
    bool need_get_state, state_wait;
    bool need_list, list_wait, list_done, page_more;
    uint64_t dl_after, dl_fetched;
    label_t fetch[DUET_RELAY_LIST_MAX];
    size_t nfetch, fetch_next, fetch_wait;
    label_t del[DUET_RELAY_LIST_MAX];
    size_t ndel;
    bool need_delete, batch_open;
    size_t page_stored;

    /* state publishing */
    bool state_needed, state_inflight;

    /* upload */
    bool up_exhausted, up_again;
    uint64_t up_cursor, up_bytes;
    size_t up_inflight;

    duet_relay_sync_counts_t counts;
    duet_codec_enc_t enc;
    uint64_t scratch[DUET_RELAY_STATE_BITS];
};

duet_relay_sync_t *duet_relay_sync_new(const duet_relay_host_t *host, const duet_relay_keys_t *keys,
                                       duet_rng_t rng, bool stay)
{
    duet_relay_sync_t *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return NULL;
    }
    s->h = *host;
    s->k = *keys;
    s->rng = rng;
    s->stay = stay;
    s->next_rid = 1;
    s->window = DUET_RELAY_SYNC_PIPELINE;
    duet_relay_state_oid(s->state_in_oid, &s->k.in);
    duet_relay_state_oid(s->state_out_oid, &s->k.out);
    duet_codec_enc_init(&s->enc, DUET_RELAY_FRAME_MAX);
    return s;
}

void duet_relay_sync_free(duet_relay_sync_t *s)
{
    if (s == NULL) {
        return;
    }
    if (s->batch_open) {
        s->h.recv_abort(s->h.ctx);
    }
    duet_codec_enc_dispose(&s->enc);
    sodium_memzero(s, sizeof *s);
    free(s);
}

static duet_err_t fail(duet_relay_sync_t *s, duet_err_t err)
{
    if (s->err == DUET_OK) {
        s->err = err;
        if (s->batch_open) {
            s->h.recv_abort(s->h.ctx);
            s->batch_open = false;
        }
    }
    return s->err;
}

duet_err_t duet_relay_sync_error(const duet_relay_sync_t *s)
{
    return s->err;
}

duet_err_t duet_relay_sync_upload_error(const duet_relay_sync_t *s)
{
    return s->upload_err;
}

duet_relay_sync_counts_t duet_relay_sync_counts(const duet_relay_sync_t *s)
{
    return s->counts;
}

bool duet_relay_sync_welcomed(const duet_relay_sync_t *s)
{
    return s->welcomed;
}

static bool upload_idle(const duet_relay_sync_t *s)
{
    return (s->up_exhausted || s->upload_err != DUET_OK) && s->up_inflight == 0;
}

bool duet_relay_sync_done(const duet_relay_sync_t *s)
{
    return s->err == DUET_OK && s->welcomed && !s->dl_active && !s->state_needed &&
           !s->state_inflight && upload_idle(s) && !s->up_again && s->plen == 0 &&
           !s->ping_needed && (!s->stay || s->sub_sent);
}

/* ---- starting work ------------------------------------------------------------------------ */

static void start_download(duet_relay_sync_t *s)
{
    if (s->dl_active) {
        s->dl_again = true;
        return;
    }
    s->dl_active = true;
    s->dl_again = false;
    s->need_get_state = true;
    s->need_list = true;
    s->list_done = false;
    s->page_more = false;
    s->dl_after = 0;
    s->dl_fetched = 0;
}

void duet_relay_sync_kick(duet_relay_sync_t *s)
{
    s->up_again = true;
}

void duet_relay_sync_ping(duet_relay_sync_t *s)
{
    s->ping_needed = true;
}

/* An idle upload that was kicked starts over from the beginning of the outbox: envelopes
 * the relay refused before are tried again, the ones it holds are skipped by the host. */
static void maybe_restart_upload(duet_relay_sync_t *s)
{
    if (s->up_again && upload_idle(s)) {
        s->up_again = false;
        s->up_exhausted = false;
        s->upload_err = DUET_OK;
        s->up_cursor = 0;
    }
}

/* ---- download ---------------------------------------------------------------------------- */

/* The download cycle ends once every part of it is answered. */
static void maybe_end_download(duet_relay_sync_t *s)
{
    if (!s->dl_active || !s->list_done || s->need_get_state || s->state_wait || s->need_delete) {
        return;
    }
    s->dl_active = false;
    if (!s->dl_first_done) {
        s->dl_first_done = true;
        s->state_needed = true; /* once per session, so the partner hears our state */
    }
    if (s->dl_again) {
        s->dl_again = false;
        start_download(s);
    }
}

/* All of a page is answered: make it durable, then let the relay forget it. */
static duet_err_t finish_page(duet_relay_sync_t *s)
{
    if (s->batch_open) {
        s->batch_open = false;
        duet_err_t err = s->h.recv_commit(s->h.ctx);
        if (err != DUET_OK) {
            s->h.recv_abort(s->h.ctx);
            return fail(s, err);
        }
        if (s->page_stored > 0) {
            s->state_needed = true;
        }
    }
    s->page_stored = 0;
    s->need_delete = s->ndel > 0;
    if (s->page_more && s->dl_fetched < DUET_RELAY_SYNC_MAX_FETCH) {
        s->need_list = true;
    } else {
        s->list_done = true;
        if (s->page_more && s->stay) {
            s->dl_again = true; /* a daemon goes on in the next cycle */
        }
    }
    s->nfetch = s->fetch_next = 0;
    maybe_end_download(s);
    return DUET_OK;
}

static bool page_answered(const duet_relay_sync_t *s)
{
    return !s->list_wait && !s->need_list && s->fetch_next == s->nfetch && s->fetch_wait == 0;
}

static duet_err_t on_listed(duet_relay_sync_t *s, const duet_relay_frame_t *f)
{
    duet_relay_entry_t e;
    s->list_wait = false;
    s->nfetch = s->fetch_next = 0;
    s->page_more = f->more;
    for (size_t i = 0; i < f->count; i++) {
        duet_relay_frame_entry(f, i, &e);
        if (e.cursor <= s->dl_after) {
            return fail(s, DUET_EPROTO); /* cursors must grow */
        }
        s->dl_after = e.cursor;
        if (e.cls == DUET_RELAY_ENVELOPE && e.oid_len == DUET_RELAY_LABEL_BYTES) {
            memcpy(s->fetch[s->nfetch++], e.oid, DUET_RELAY_LABEL_BYTES);
        }
    }
    s->dl_fetched += s->nfetch;
    if (s->nfetch == 0) {
        return finish_page(s);
    }
    return DUET_OK;
}

static duet_err_t store_envelope(duet_relay_sync_t *s, const duet_relay_frame_t *f)
{
    uint64_t seq;
    const uint8_t *env;
    size_t len;
    bool counted = false;
    if (duet_relay_env_open(&s->k.in, f->oid, f->oid_len, f->data, f->data_len, &seq, &env, &len) !=
        DUET_OK) {
        s->counts.rejected++; /* not ours to read: the relay's TTL takes it */
        return DUET_OK;
    }
    if (!s->batch_open) {
        duet_err_t err = s->h.recv_begin(s->h.ctx);
        if (err != DUET_OK) {
            return fail(s, err);
        }
        s->batch_open = true;
    }
    duet_err_t err = s->h.recv_put(s->h.ctx, seq, env, len, &counted);
    switch (err) {
    case DUET_OK:
        s->counts.received += counted;
        s->page_stored++;
        memcpy(s->del[s->ndel++], f->oid, DUET_RELAY_LABEL_BYTES);
        return DUET_OK;
    case DUET_EDUP: /* stored before: the relay may forget it */
        memcpy(s->del[s->ndel++], f->oid, DUET_RELAY_LABEL_BYTES);
        return DUET_OK;
    case DUET_ERANGE: /* too far ahead: a later cycle takes it */
        return DUET_OK;
    case DUET_EAUTH:
    case DUET_EDECODE:
        s->counts.rejected++;
        return DUET_OK;
    default:
        return fail(s, err);
    }
}

static duet_err_t on_get_env(duet_relay_sync_t *s, const pend_t *p, const duet_relay_frame_t *f)
{
    duet_err_t err = DUET_OK;
    s->fetch_wait--;
    if (f->type == DUET_RELAY_OBJECT) {
        if (f->oid_len != DUET_RELAY_LABEL_BYTES || p->idx >= s->nfetch ||
            sodium_memcmp(f->oid, s->fetch[p->idx], DUET_RELAY_LABEL_BYTES) != 0) {
            return fail(s, DUET_EPROTO);
        }
        err = store_envelope(s, f);
    } else if (f->err != DUET_ENOENT) {
        return fail(s, f->err);
    }
    if (err == DUET_OK && page_answered(s)) {
        err = finish_page(s);
    }
    return err;
}

static duet_err_t on_get_state(duet_relay_sync_t *s, const duet_relay_frame_t *f)
{
    uint64_t wm, items = 0;
    size_t n;
    s->state_wait = false;
    if (f->type == DUET_RELAY_OBJECT) {
        if (f->oid_len != DUET_RELAY_LABEL_BYTES ||
            sodium_memcmp(f->oid, s->state_in_oid, DUET_RELAY_LABEL_BYTES) != 0) {
            return fail(s, DUET_EPROTO);
        }
        if (duet_relay_state_open(&s->k.in, f->data, f->data_len, &wm, s->scratch,
                                  DUET_RELAY_STATE_BITS, &n) == DUET_OK) {
            duet_err_t err = s->h.acked(s->h.ctx, wm, s->scratch, n, &items);
            if (err != DUET_OK) {
                return fail(s, err);
            }
            s->counts.delivered += items;
        } else {
            s->counts.rejected++;
        }
    } else if (f->err != DUET_ENOENT) {
        return fail(s, f->err);
    }
    maybe_end_download(s);
    return DUET_OK;
}

/* ---- responses ------------------------------------------------------------------------------ */

static duet_err_t on_put_env(duet_relay_sync_t *s, const pend_t *p, const duet_relay_frame_t *f)
{
    s->up_inflight--;
    s->up_bytes -= p->bytes;
    if (f->type == DUET_RELAY_OK) {
        duet_err_t err = s->h.mark_relayed(s->h.ctx, p->seq);
        if (err != DUET_OK) {
            return fail(s, err);
        }
        s->counts.uploaded++;
    } else if (f->err == DUET_ECAPABILITY || f->err == DUET_EPROTO) {
        return fail(s, f->err);
    } else if (s->upload_err == DUET_OK) {
        s->upload_err = f->err; /* quota, size, the relay's disk: stop uploading for now */
    }
    maybe_restart_upload(s);
    return DUET_OK;
}

static duet_err_t on_response(duet_relay_sync_t *s, const duet_relay_frame_t *f)
{
    /* A fatal ERROR may answer no particular request (a relay refusing the connection). */
    if (f->type == DUET_RELAY_ERROR && f->fatal) {
        return fail(s, f->err);
    }
    if (s->plen == 0 || s->pend[s->phead].rid != f->rid) {
        return fail(s, DUET_EPROTO);
    }
    pend_t p = s->pend[s->phead];
    s->phead = (s->phead + 1) % DUET_RELAY_SYNC_PIPELINE;
    s->plen--;
    bool is_err = f->type == DUET_RELAY_ERROR;
    switch (p.kind) {
    case P_HELLO:
        if (f->type != DUET_RELAY_WELCOME) {
            return fail(s, is_err ? f->err : DUET_EPROTO);
        }
        s->welcomed = true;
        s->window = f->window < DUET_RELAY_SYNC_PIPELINE ? f->window : DUET_RELAY_SYNC_PIPELINE;
        start_download(s);
        return DUET_OK;
    case P_SUB:
    case P_PING:
        if (f->type != DUET_RELAY_OK) {
            return fail(s, is_err ? f->err : DUET_EPROTO);
        }
        return DUET_OK;
    case P_GET_STATE:
        if (f->type != DUET_RELAY_OBJECT && !is_err) {
            return fail(s, DUET_EPROTO);
        }
        return on_get_state(s, f);
    case P_LIST:
        if (f->type != DUET_RELAY_LISTED) {
            return fail(s, is_err ? f->err : DUET_EPROTO);
        }
        return on_listed(s, f);
    case P_GET_ENV:
        if (f->type != DUET_RELAY_OBJECT && !is_err) {
            return fail(s, DUET_EPROTO);
        }
        return on_get_env(s, &p, f);
    case P_DELETE:
        if (f->type != DUET_RELAY_OK && !is_err) {
            return fail(s, DUET_EPROTO);
        }
        return DUET_OK; /* a failed delete only leaves work for the TTL */
    case P_PUT_STATE:
        if (f->type != DUET_RELAY_OK && !is_err) {
            return fail(s, DUET_EPROTO);
        }
        s->state_inflight = false;
        if (is_err && f->err == DUET_ECAPABILITY) {
            return fail(s, f->err);
        }
        return DUET_OK;
    case P_PUT_ENV:
        if (f->type != DUET_RELAY_OK && !is_err) {
            return fail(s, DUET_EPROTO);
        }
        return on_put_env(s, &p, f);
    default:
        return fail(s, DUET_EINTERNAL);
    }
}

duet_err_t duet_relay_sync_recv(duet_relay_sync_t *s, const uint8_t *frame, size_t len)
{
    duet_relay_frame_t f;
    duet_err_t err;
    if (s->err != DUET_OK) {
        return s->err;
    }
    if (duet_relay_frame_decode(&f, frame, len) != DUET_OK) {
        return fail(s, DUET_EPROTO);
    }
    if (duet_relay_is_request(f.type)) {
        duet_relay_frame_dispose(&f);
        return fail(s, DUET_EPROTO);
    }
    switch (f.type) {
    case DUET_RELAY_NOTIFY:
        /* Only our own mailbox can be announced; anything else is a confused relay. */
        if (!s->welcomed || sodium_memcmp(f.mbox, s->k.in.mbox, 32) != 0) {
            err = fail(s, DUET_EPROTO);
        } else {
            if (s->stay) {
                start_download(s);
            }
            err = DUET_OK;
        }
        break;
    case DUET_RELAY_PDATA:
    case DUET_RELAY_PCLOSED:
        err = fail(s, DUET_EPROTO);
        break;
    default:
        err = on_response(s, &f);
        break;
    }
    duet_relay_frame_dispose(&f);
    return err;
}

/* ---- requests -------------------------------------------------------------------------------- */

static pend_t *push_pend(duet_relay_sync_t *s, uint8_t kind, uint32_t *rid)
{
    pend_t *p = &s->pend[(s->phead + s->plen) % DUET_RELAY_SYNC_PIPELINE];
    memset(p, 0, sizeof *p);
    p->kind = kind;
    p->rid = s->next_rid++;
    if (s->next_rid == 0) {
        s->next_rid = 1;
    }
    s->plen++;
    *rid = p->rid;
    return p;
}

static duet_err_t emit(duet_relay_sync_t *s, const uint8_t **frame, size_t *len)
{
    duet_err_t err = duet_codec_enc_finish(&s->enc, frame, len);
    return err == DUET_OK ? DUET_OK : fail(s, err);
}

static duet_err_t put_state(duet_relay_sync_t *s, const uint8_t **frame, size_t *len)
{
    uint8_t sealed[DUET_RELAY_STATE_BYTES];
    uint64_t wm;
    size_t n;
    uint32_t rid;
    duet_err_t err = s->h.recv_state(s->h.ctx, &wm, s->scratch, DUET_RELAY_SYNC_MAX_ABOVE, &n);
    if (err != DUET_OK) {
        return fail(s, err);
    }
    duet_relay_state_seal(sealed, &s->k.out, wm, s->scratch, n, s->rng);
    push_pend(s, P_PUT_STATE, &rid);
    duet_relay_enc_put(&s->enc, rid, &s->k.out, DUET_RELAY_STATE, s->state_out_oid,
                       DUET_RELAY_LABEL_BYTES, sealed, sizeof sealed);
    s->state_needed = false;
    s->state_inflight = true;
    return emit(s, frame, len);
}

/* The next envelope to upload, if the window allows: true when a frame was written. */
static duet_err_t put_envelope(duet_relay_sync_t *s, bool *wrote)
{
    uint64_t seq;
    const uint8_t *env;
    size_t elen;
    uint32_t rid;
    uint8_t oid[DUET_RELAY_LABEL_BYTES], mask[DUET_RELAY_SEQ_MASK_BYTES];
    *wrote = false;
    if (s->up_exhausted || s->upload_err != DUET_OK ||
        s->up_bytes >= DUET_RELAY_SYNC_UPLOAD_BYTES) {
        return DUET_OK;
    }
    duet_err_t err = s->h.next_unrelayed(s->h.ctx, s->up_cursor, &seq, &env, &elen);
    if (err == DUET_ENOENT) {
        s->up_exhausted = true;
        maybe_restart_upload(s);
        return DUET_OK;
    }
    if (err != DUET_OK) {
        return fail(s, err);
    }
    if (seq <= s->up_cursor || elen == 0 ||
        elen + DUET_RELAY_SEQ_MASK_BYTES > DUET_RELAY_OBJECT_MAX) {
        return fail(s, DUET_EINTERNAL);
    }
    s->up_cursor = seq;
    duet_relay_env_oid(oid, &s->k.out, seq);
    duet_relay_seq_mask(mask, &s->k.out, oid, seq);
    pend_t *p = push_pend(s, P_PUT_ENV, &rid);
    p->seq = seq;
    p->bytes = (uint32_t)elen;
    s->up_inflight++;
    s->up_bytes += elen;
    duet_relay_enc_put2(&s->enc, rid, &s->k.out, DUET_RELAY_ENVELOPE, oid, sizeof oid, mask,
                        sizeof mask, env, elen);
    *wrote = true;
    return DUET_OK;
}

duet_err_t duet_relay_sync_next_frame(duet_relay_sync_t *s, const uint8_t **frame, size_t *len)
{
    uint32_t rid;
    *frame = NULL;
    *len = 0;
    if (s->err != DUET_OK) {
        return s->err;
    }
    duet_codec_enc_reset(&s->enc);
    if (!s->hello_sent) {
        s->hello_sent = true;
        push_pend(s, P_HELLO, &rid);
        duet_relay_enc_hello(&s->enc, rid);
        return emit(s, frame, len);
    }
    if (!s->welcomed || s->plen >= s->window) {
        return DUET_OK;
    }
    if (s->stay && !s->sub_sent) {
        s->sub_sent = true;
        push_pend(s, P_SUB, &rid);
        duet_relay_enc_subscribe(&s->enc, rid, &s->k.in);
        return emit(s, frame, len);
    }
    if (s->ping_needed) {
        s->ping_needed = false;
        push_pend(s, P_PING, &rid);
        duet_relay_enc_ping(&s->enc, rid);
        return emit(s, frame, len);
    }
    if (s->need_get_state) {
        s->need_get_state = false;
        s->state_wait = true;
        push_pend(s, P_GET_STATE, &rid);
        duet_relay_enc_get(&s->enc, rid, &s->k.in, s->state_in_oid, DUET_RELAY_LABEL_BYTES);
        return emit(s, frame, len);
    }
    if (s->need_delete) {
        const uint8_t *oids[DUET_RELAY_LIST_MAX];
        size_t lens[DUET_RELAY_LIST_MAX];
        for (size_t i = 0; i < s->ndel; i++) {
            oids[i] = s->del[i];
            lens[i] = DUET_RELAY_LABEL_BYTES;
        }
        push_pend(s, P_DELETE, &rid);
        duet_relay_enc_delete(&s->enc, rid, &s->k.in, oids, lens, s->ndel);
        s->need_delete = false;
        s->ndel = 0;
        maybe_end_download(s);
        return emit(s, frame, len);
    }
    if (s->need_list) {
        uint64_t left = DUET_RELAY_SYNC_MAX_FETCH - s->dl_fetched;
        uint32_t limit = left < DUET_RELAY_LIST_MAX ? (uint32_t)left : DUET_RELAY_LIST_MAX;
        s->need_list = false;
        s->list_wait = true;
        push_pend(s, P_LIST, &rid);
        duet_relay_enc_list(&s->enc, rid, &s->k.in, DUET_RELAY_ENVELOPE, s->dl_after,
                            limit ? limit : 1);
        return emit(s, frame, len);
    }
    if (s->fetch_next < s->nfetch) {
        pend_t *p = push_pend(s, P_GET_ENV, &rid);
        p->idx = (uint16_t)s->fetch_next;
        duet_relay_enc_get(&s->enc, rid, &s->k.in, s->fetch[s->fetch_next], DUET_RELAY_LABEL_BYTES);
        s->fetch_next++;
        s->fetch_wait++;
        return emit(s, frame, len);
    }
    if (s->state_needed && !s->state_inflight && !s->batch_open) {
        return put_state(s, frame, len);
    }
    maybe_restart_upload(s);
    bool wrote;
    duet_err_t err = put_envelope(s, &wrote);
    if (err != DUET_OK || !wrote) {
        return err;
    }
    return emit(s, frame, len);
}
