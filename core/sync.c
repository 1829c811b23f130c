/* see sync.h */
#include "sync.h"

#include <stdlib.h>
#include <string.h>

#include "codec.h"

enum {
    F_HELLO = 1,
    F_ENVELOPE = 2,
    F_ACK = 3,
    F_HAVE = 4,
    F_ERROR = 5,
};

/* Envelopes in flight are tracked in a ring: at most this many, whatever their size. */
#define INFLIGHT_MAX 4096u

typedef struct inflight {
    uint64_t seq;
    uint32_t len;
} inflight_t;

struct duet_sync {
    duet_sync_host_t h;
    duet_err_t err;
    duet_err_t peer_err;
    uint32_t peer_version;
    bool hello_sent, hello_recv;
    bool need_ack, need_have;
    bool error_pending;

    /* What the peer holds of mine, from its HELLO and ACKs. */
    uint64_t peer_wm;
    uint64_t peer_above[DUET_SYNC_MAX_ABOVE];
    size_t peer_nabove;
    uint64_t cursor; /* the highest sequence number sent on this link */
    inflight_t inflight[INFLIGHT_MAX];
    size_t in_head, in_count;
    uint64_t inflight_bytes;

    /* What the peer has for me. */
    uint64_t peer_out_last;

    /* The open receive batch. */
    bool batch_open;
    size_t batch_n;
    uint64_t batch_items;

    uint64_t items_sent, items_recv;
    uint64_t scratch[DUET_SYNC_MAX_ABOVE];
    /* The receive state to acknowledge, captured right after the commit: a batch opened
     * later must not leak into an ACK before it is durable itself. */
    bool started;
    uint64_t hello_last;
    uint64_t announced_last; /* the out_last the peer has heard from us */
    uint64_t ack_wm;
    uint64_t ack_above[DUET_SYNC_MAX_ABOVE];
    size_t ack_nabove;
    duet_codec_enc_t enc;
};

static const duet_codec_limits_t frame_limits = {
    .max_depth = 2,
    .max_str = 0,
    .max_bin = DUET_SYNC_MAX_ENVELOPE,
    .max_array = DUET_SYNC_MAX_ABOVE,
    .max_map = 8,
    .max_objects = DUET_SYNC_MAX_ABOVE + 32,
};

duet_sync_t *duet_sync_new(const duet_sync_host_t *host)
{
    duet_sync_t *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return NULL;
    }
    s->h = *host;
    duet_codec_enc_init(&s->enc, DUET_SYNC_MAX_FRAME);
    return s;
}

void duet_sync_free(duet_sync_t *s)
{
    if (s == NULL) {
        return;
    }
    if (s->batch_open) {
        s->h.recv_abort(s->h.ctx);
    }
    duet_codec_enc_dispose(&s->enc);
    free(s);
}

/* Fail the engine (once) and, for errors the peer should hear about, queue an ERROR. */
static duet_err_t fail(duet_sync_t *s, duet_err_t err, bool tell_peer)
{
    if (s->err == DUET_OK) {
        s->err = err;
        s->error_pending = tell_peer;
        if (s->batch_open) {
            s->h.recv_abort(s->h.ctx);
            s->batch_open = false;
        }
    }
    return s->err;
}

duet_err_t duet_sync_start(duet_sync_t *s)
{
    /* The HELLO's state is taken now, before any envelope can arrive on this link. */
    duet_err_t err = s->h.out_last(s->h.ctx, &s->hello_last);
    if (err == DUET_OK) {
        err = s->h.recv_state(s->h.ctx, &s->ack_wm, s->ack_above, DUET_SYNC_MAX_ABOVE,
                              &s->ack_nabove);
    }
    if (err != DUET_OK) {
        return fail(s, err, false);
    }
    s->started = true;
    s->announced_last = s->hello_last;
    return DUET_OK;
}

duet_err_t duet_sync_error(const duet_sync_t *s)
{
    return s->err;
}

duet_err_t duet_sync_peer_error(const duet_sync_t *s, uint32_t *peer_version)
{
    *peer_version = s->peer_version;
    return s->peer_err;
}

uint64_t duet_sync_items_sent(const duet_sync_t *s)
{
    return s->items_sent;
}

uint64_t duet_sync_items_received(const duet_sync_t *s)
{
    return s->items_recv;
}

bool duet_sync_batch_open(const duet_sync_t *s)
{
    return s->batch_open;
}

/* ---- receiving ------------------------------------------------------------------------ */

/* Read a receive-state pair (wm, [above]) and check it: above ascending, all > wm. */
static duet_err_t read_state(const msgpack_object *wm_o, const msgpack_object *above_o,
                             uint64_t *wm, uint64_t *above, size_t *n)
{
    *n = 0;
    duet_err_t err = duet_codec_get_uint(wm_o, 0, UINT64_MAX / 2, wm);
    if (err != DUET_OK) {
        return DUET_EPROTO;
    }
    uint64_t prev = *wm;
    for (uint32_t i = 0; i < above_o->via.array.size; i++) {
        uint64_t v;
        if (duet_codec_get_uint(&above_o->via.array.ptr[i], prev + 1, UINT64_MAX / 2, &v)) {
            return DUET_EPROTO;
        }
        above[(*n)++] = v;
        prev = v;
    }
    return DUET_OK;
}

static bool in_set(const uint64_t *v, size_t n, uint64_t x)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid] == x) {
            return true;
        }
        if (v[mid] < x) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return false;
}

static bool peer_has(const duet_sync_t *s, uint64_t seq)
{
    return seq <= s->peer_wm || in_set(s->peer_above, s->peer_nabove, seq);
}

/* Forget envelopes in flight that the peer now holds. Envelopes are sent in ascending
 * order, so the ring is ascending: drop covered ones from the front, and recount. */
static void settle_inflight(duet_sync_t *s)
{
    size_t kept = 0;
    uint64_t bytes = 0;
    inflight_t tmp;
    for (size_t i = 0; i < s->in_count; i++) {
        tmp = s->inflight[(s->in_head + i) % INFLIGHT_MAX];
        if (!peer_has(s, tmp.seq)) {
            s->inflight[(s->in_head + kept) % INFLIGHT_MAX] = tmp;
            kept++;
            bytes += tmp.len;
        }
    }
    s->in_count = kept;
    s->inflight_bytes = bytes;
}

static duet_err_t on_hello(duet_sync_t *s, const msgpack_object **f)
{
    uint64_t version, out_last;
    if (s->hello_recv) {
        return fail(s, DUET_EPROTO, true);
    }
    if (duet_codec_get_uint(f[1], 0, UINT32_MAX, &version) != DUET_OK) {
        return fail(s, DUET_EPROTO, true);
    }
    if (version != DUET_SYNC_VERSION) {
        s->peer_version = (uint32_t)version;
        return fail(s, DUET_EVERSION, true);
    }
    if (read_state(f[2], f[3], &s->peer_wm, s->peer_above, &s->peer_nabove) != DUET_OK ||
        duet_codec_get_uint(f[4], 0, UINT64_MAX / 2, &out_last) != DUET_OK) {
        return fail(s, DUET_EPROTO, true);
    }
    s->peer_out_last = out_last;
    s->hello_recv = true;
    s->cursor = s->peer_wm;
    /* The HELLO acknowledges too: what the peer stored before (its ACK lost with the last
     * link) leaves the outbox now. */
    uint64_t items = 0;
    duet_err_t err = s->h.acked(s->h.ctx, s->peer_wm, s->peer_above, s->peer_nabove, &items);
    if (err != DUET_OK) {
        return fail(s, err, false);
    }
    s->items_sent += items;
    return DUET_OK;
}

static duet_err_t on_envelope(duet_sync_t *s, const msgpack_object **f)
{
    uint64_t seq;
    const uint8_t *env;
    size_t len;
    bool counted = false;
    if (!s->hello_recv || duet_codec_get_uint(f[1], 1, UINT64_MAX / 2, &seq) != DUET_OK ||
        duet_codec_get_bin(f[2], 1, DUET_SYNC_MAX_ENVELOPE, &env, &len) != DUET_OK) {
        return fail(s, DUET_EPROTO, true);
    }
    if (seq > s->peer_out_last) {
        s->peer_out_last = seq;
    }
    if (!s->batch_open) {
        duet_err_t err = s->h.recv_begin(s->h.ctx);
        if (err != DUET_OK) {
            return fail(s, err, false);
        }
        s->batch_open = true;
        s->batch_n = 0;
        s->batch_items = 0;
    }
    duet_err_t err = s->h.recv_put(s->h.ctx, seq, env, len, &counted);
    switch (err) {
    case DUET_OK:
        s->batch_items += counted;
        break;
    case DUET_EDUP:    /* already here: the ACK will say so */
    case DUET_ERANGE:  /* too far ahead: sent again once the gap fills */
    case DUET_EAUTH:   /* does not open: never acknowledged */
    case DUET_EDECODE:
        break;
    default:
        return fail(s, err, false); /* the store failed: acknowledge nothing */
    }
    if (++s->batch_n >= DUET_SYNC_BATCH_MAX) {
        return duet_sync_flush(s);
    }
    return DUET_OK;
}

static duet_err_t on_ack(duet_sync_t *s, const msgpack_object **f)
{
    uint64_t items = 0;
    if (!s->hello_recv ||
        read_state(f[1], f[2], &s->peer_wm, s->peer_above, &s->peer_nabove) != DUET_OK) {
        return fail(s, DUET_EPROTO, true);
    }
    duet_err_t err = s->h.acked(s->h.ctx, s->peer_wm, s->peer_above, s->peer_nabove, &items);
    if (err != DUET_OK) {
        return fail(s, err, false);
    }
    s->items_sent += items;
    settle_inflight(s);
    return DUET_OK;
}

duet_err_t duet_sync_recv(duet_sync_t *s, const uint8_t *frame, size_t len)
{
    static const duet_codec_field_t any_type[] = {{0, DUET_CODEC_UINT, true}};
    static const duet_codec_field_t hello[] = {{0, DUET_CODEC_UINT, true},
                                               {1, DUET_CODEC_UINT, true},
                                               {2, DUET_CODEC_UINT, true},
                                               {3, DUET_CODEC_ARRAY, true},
                                               {4, DUET_CODEC_UINT, true}};
    static const duet_codec_field_t envelope[] = {
        {0, DUET_CODEC_UINT, true}, {1, DUET_CODEC_UINT, true}, {2, DUET_CODEC_BIN, true}};
    static const duet_codec_field_t ack[] = {
        {0, DUET_CODEC_UINT, true}, {1, DUET_CODEC_UINT, true}, {2, DUET_CODEC_ARRAY, true}};
    static const duet_codec_field_t have[] = {{0, DUET_CODEC_UINT, true},
                                              {1, DUET_CODEC_UINT, true}};
    static const duet_codec_field_t error[] = {
        {0, DUET_CODEC_UINT, true}, {1, DUET_CODEC_INT, true}, {2, DUET_CODEC_UINT, true}};
    const msgpack_object *f[5];
    duet_codec_msg_t msg;
    uint64_t type;
    duet_err_t err;

    if (s->err != DUET_OK) {
        return s->err;
    }
    if (!s->started) {
        abort(); /* duet_sync_start was not called: a caller bug */
    }
    if (duet_codec_decode(&msg, frame, len, &frame_limits) != DUET_OK) {
        return fail(s, DUET_EPROTO, true);
    }
    /* The type first, with its key alone: then the frame against its own field list. */
    const msgpack_object *root = &msg.root;
    if (root->type != MSGPACK_OBJECT_MAP || root->via.map.size == 0) {
        err = fail(s, DUET_EPROTO, true);
        goto cleanup;
    }
    f[0] = NULL;
    for (uint32_t i = 0; i < root->via.map.size; i++) {
        const msgpack_object_kv *kv = &root->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_POSITIVE_INTEGER && kv->key.via.u64 == 0) {
            f[0] = &kv->val;
        }
    }
    (void)any_type;
    if (f[0] == NULL || duet_codec_get_uint(f[0], 1, 255, &type) != DUET_OK) {
        err = fail(s, DUET_EPROTO, true);
        goto cleanup;
    }
    switch (type) {
    case F_HELLO:
        err = duet_codec_map(root, hello, 5, f);
        err = err ? fail(s, DUET_EPROTO, true) : on_hello(s, f);
        break;
    case F_ENVELOPE:
        err = duet_codec_map(root, envelope, 3, f);
        err = err ? fail(s, DUET_EPROTO, true) : on_envelope(s, f);
        break;
    case F_ACK:
        err = duet_codec_map(root, ack, 3, f);
        err = err ? fail(s, DUET_EPROTO, true) : on_ack(s, f);
        break;
    case F_HAVE: {
        uint64_t last;
        err = duet_codec_map(root, have, 2, f);
        if (err || !s->hello_recv || duet_codec_get_uint(f[1], 0, UINT64_MAX / 2, &last)) {
            err = fail(s, DUET_EPROTO, true);
        } else if (last > s->peer_out_last) {
            s->peer_out_last = last;
        }
        break;
    }
    case F_ERROR: {
        int64_t code;
        uint64_t version;
        err = duet_codec_map(root, error, 3, f);
        if (err || duet_codec_get_int(f[1], -32768, 0, &code) ||
            duet_codec_get_uint(f[2], 0, UINT32_MAX, &version)) {
            err = fail(s, DUET_EPROTO, false);
            break;
        }
        s->peer_version = (uint32_t)version;
        /* The peer's reason, as far as we know the code; a protocol error otherwise. */
        s->peer_err = code == DUET_EVERSION ? DUET_EVERSION : DUET_EPROTO;
        err = fail(s, s->peer_err, false);
        break;
    }
    default:
        err = fail(s, DUET_EPROTO, true);
        break;
    }
cleanup:
    duet_codec_msg_dispose(&msg);
    return err;
}

duet_err_t duet_sync_flush(duet_sync_t *s)
{
    if (s->err != DUET_OK) {
        return s->err;
    }
    if (!s->batch_open) {
        return DUET_OK;
    }
    s->batch_open = false;
    duet_err_t err = s->h.recv_commit(s->h.ctx);
    if (err != DUET_OK) {
        s->h.recv_abort(s->h.ctx);
        return fail(s, err, false);
    }
    /* Only now, with the batch durable, may the peer learn that we hold it. */
    s->items_recv += s->batch_items;
    s->batch_items = 0;
    err = s->h.recv_state(s->h.ctx, &s->ack_wm, s->ack_above, DUET_SYNC_MAX_ABOVE,
                          &s->ack_nabove);
    uint64_t last = 0;
    if (err == DUET_OK) {
        err = s->h.out_last(s->h.ctx, &last);
    }
    if (err != DUET_OK) {
        return fail(s, err, false);
    }
    /* Receiving may have queued items of ours (a check-in key owed once the partner's answer
     * is here): announce them before the ACK, so the peer cannot think it has everything. */
    if (last > s->announced_last) {
        s->need_have = true;
    }
    s->need_ack = true;
    return DUET_OK;
}

duet_err_t duet_sync_kick(duet_sync_t *s)
{
    if (s->err == DUET_OK) {
        s->need_have = true;
    }
    return s->err;
}

/* ---- sending -------------------------------------------------------------------------- */

/* Write "wm, key, [above]": the HELLO's state read now (no batch is open before the
 * HELLO), an ACK's the one captured at its commit. */
static void put_state(duet_sync_t *s, uint64_t wm, const uint64_t *above, size_t n)
{
    duet_codec_put_uint(&s->enc, wm);
    duet_codec_put_key(&s->enc, s->hello_sent ? 2 : 3);
    duet_codec_put_array(&s->enc, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        duet_codec_put_uint(&s->enc, above[i]);
    }
}

static duet_err_t finish(duet_sync_t *s, const uint8_t **frame, size_t *len)
{
    duet_err_t err = duet_codec_enc_finish(&s->enc, frame, len);
    if (err != DUET_OK) {
        return fail(s, err, false);
    }
    return DUET_OK;
}

duet_err_t duet_sync_next_frame(duet_sync_t *s, const uint8_t **frame, size_t *len)
{
    duet_err_t err;
    *frame = NULL;
    *len = 0;
    duet_codec_enc_reset(&s->enc);

    if (s->error_pending) {
        s->error_pending = false;
        duet_codec_put_map(&s->enc, 3);
        duet_codec_put_key(&s->enc, 0);
        duet_codec_put_uint(&s->enc, F_ERROR);
        duet_codec_put_key(&s->enc, 1);
        duet_codec_put_int(&s->enc, s->err);
        duet_codec_put_key(&s->enc, 2);
        duet_codec_put_uint(&s->enc, DUET_SYNC_VERSION);
        return duet_codec_enc_finish(&s->enc, frame, len);
    }
    if (s->err != DUET_OK) {
        return DUET_OK; /* failed: nothing more to say */
    }
    if (!s->started) {
        abort(); /* duet_sync_start was not called: a caller bug */
    }
    if (!s->hello_sent) {
        duet_codec_put_map(&s->enc, 5);
        duet_codec_put_key(&s->enc, 0);
        duet_codec_put_uint(&s->enc, F_HELLO);
        duet_codec_put_key(&s->enc, 1);
        duet_codec_put_uint(&s->enc, DUET_SYNC_VERSION);
        duet_codec_put_key(&s->enc, 2);
        put_state(s, s->ack_wm, s->ack_above, s->ack_nabove);
        duet_codec_put_key(&s->enc, 4);
        duet_codec_put_uint(&s->enc, s->hello_last);
        s->hello_sent = true;
        s->need_have = false;
        return finish(s, frame, len);
    }
    if (s->need_have) {
        uint64_t last;
        s->need_have = false;
        if ((err = s->h.out_last(s->h.ctx, &last)) != DUET_OK) {
            return fail(s, err, false);
        }
        duet_codec_put_map(&s->enc, 2);
        duet_codec_put_key(&s->enc, 0);
        duet_codec_put_uint(&s->enc, F_HAVE);
        duet_codec_put_key(&s->enc, 1);
        duet_codec_put_uint(&s->enc, last);
        s->announced_last = last;
        return finish(s, frame, len);
    }
    if (s->need_ack) {
        s->need_ack = false;
        duet_codec_put_map(&s->enc, 3);
        duet_codec_put_key(&s->enc, 0);
        duet_codec_put_uint(&s->enc, F_ACK);
        duet_codec_put_key(&s->enc, 1);
        put_state(s, s->ack_wm, s->ack_above, s->ack_nabove);
        return finish(s, frame, len);
    }
    if (!s->hello_recv || s->inflight_bytes >= DUET_SYNC_WINDOW || s->in_count == INFLIGHT_MAX) {
        return DUET_OK;
    }
    for (;;) {
        uint64_t seq;
        const uint8_t *env;
        size_t elen;
        err = s->h.outbox_next(s->h.ctx, s->cursor, &seq, &env, &elen);
        if (err == DUET_ENOENT) {
            return DUET_OK;
        }
        if (err != DUET_OK) {
            return fail(s, err, false);
        }
        if (seq <= s->cursor || elen == 0 || elen > DUET_SYNC_MAX_ENVELOPE) {
            return fail(s, DUET_EINTERNAL, false);
        }
        s->cursor = seq;
        if (peer_has(s, seq)) {
            continue; /* the peer stored it before; its ACK will clear it from the outbox */
        }
        duet_codec_put_map(&s->enc, 3);
        duet_codec_put_key(&s->enc, 0);
        duet_codec_put_uint(&s->enc, F_ENVELOPE);
        duet_codec_put_key(&s->enc, 1);
        duet_codec_put_uint(&s->enc, seq);
        duet_codec_put_key(&s->enc, 2);
        duet_codec_put_bin(&s->enc, env, elen);
        s->inflight[(s->in_head + s->in_count) % INFLIGHT_MAX] =
            (inflight_t){seq, (uint32_t)elen};
        s->in_count++;
        s->inflight_bytes += elen;
        return finish(s, frame, len);
    }
}

bool duet_sync_done(const duet_sync_t *s)
{
    uint64_t wm, seq;
    size_t n;
    const uint8_t *env;
    size_t elen;
    duet_sync_t *m = (duet_sync_t *)s; /* the host calls below do not change the engine */

    if (s->err != DUET_OK || !s->hello_sent || !s->hello_recv || s->batch_open ||
        s->need_ack || s->need_have) {
        return false;
    }
    if (m->h.recv_state(m->h.ctx, &wm, m->scratch, DUET_SYNC_MAX_ABOVE, &n) != DUET_OK ||
        wm < s->peer_out_last) {
        return false;
    }
    return m->h.outbox_next(m->h.ctx, 0, &seq, &env, &elen) == DUET_ENOENT;
}
