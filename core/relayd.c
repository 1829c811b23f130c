/* see relayd.h */
#include "relayd.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "codec.h"

/* ---- settings -------------------------------------------------------------------------- */

typedef struct setting {
    const char *name;
    size_t offset;
    uint64_t dflt, min, max;
    const char *doc;
} setting_t;

#define O(f) offsetof(duet_relay_config_t, f)
static const setting_t settings[] = {
    {"max-connections", O(max_connections), 4096, 1, 1000000,
     "connections open at once (each costs a file descriptor)"},
    {"max-connections-per-ip", O(max_connections_per_ip), 64, 1, 1000000,
     "connections open at once from one IP address; also new connections per second from it"},
    {"handshake-timeout-ms", O(handshake_timeout_ms), 5000, 100, 600000,
     "time a new connection has to finish its Noise handshake"},
    {"idle-timeout-s", O(idle_timeout_s), 60, 30, 60,
     "silence after which a connection is closed; the relay's keepalives go every third of "
     "it, and clients' links time out after 60 s, hence at most 60"},
    {"rate-requests", O(rate_requests), 2000, 0, 100000000,
     "requests per second per connection (0: no limit); bursts of twice that"},
    {"rate-bytes", O(rate_bytes), 33554432, 0, 100000000000,
     "bytes per second received per connection (0: no limit); bursts of twice that"},
    {"ip-rate-requests", O(ip_rate_requests), 4000, 0, 100000000,
     "requests per second from one IP address, all its connections together"},
    {"ip-rate-bytes", O(ip_rate_bytes), 67108864, 0, 100000000000,
     "bytes per second received from one IP address"},
    {"slow-reader-bytes", O(slow_reader_bytes), 524288, 65536, 1073741824,
     "output kept for one client (its write queue's high-water mark); a quarter of it..."},
    {"slow-reader-ms", O(slow_reader_ms), 10000, 100, 600000,
     "...still unread after this long drops the client"},
    {"max-object", O(max_object), DUET_RELAY_OBJECT_MAX, 1024, DUET_RELAY_OBJECT_MAX,
     "bytes of one stored object (envelope or blob chunk)"},
    {"mailbox-items", O(mailbox_items), 10000, 1, 100000000, "objects in one mailbox"},
    {"mailbox-bytes", O(mailbox_bytes), 268435456, 65536, 1099511627776, "bytes in one mailbox"},
    {"store-bytes", O(store_bytes), 0, 0, 1099511627776000,
     "bytes in all mailboxes together (0: until the disk is full)"},
    {"ttl-s", O(ttl_s), 2592000, 60, 315360000,
     "life of a stored object; expired objects are removed"},
    {"nameplate-ttl-s", O(nameplate_ttl_s), 600, 10, 86400,
     "life of a pairing nameplate nobody has claimed"},
    {"tombstone-ttl-s", O(tombstone_ttl_s), 86400, 0, 315360000,
     "how long the id of a collected object is remembered, so that an upload repeated after "
     "a lost acknowledgement is not delivered twice"},
    {"sweep-interval-s", O(sweep_interval_s), 60, 1, 86400,
     "how often expired objects are removed"},
};
#undef O
#define NSETTINGS (sizeof settings / sizeof settings[0])

static uint64_t *field(duet_relay_config_t *c, size_t i)
{
    return (uint64_t *)(void *)((char *)c + settings[i].offset);
}

void duet_relay_config_default(duet_relay_config_t *c)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < NSETTINGS; i++) {
        *field(c, i) = settings[i].dflt;
    }
}

duet_err_t duet_relay_config_set(duet_relay_config_t *c, const char *name, size_t name_len,
                                 const char *value, size_t value_len)
{
    for (size_t i = 0; i < NSETTINGS; i++) {
        if (strlen(settings[i].name) != name_len ||
            strncmp(settings[i].name, name, name_len) != 0) {
            continue;
        }
        uint64_t v = 0;
        if (value_len == 0 || value_len > 20) {
            return DUET_ERANGE;
        }
        for (size_t k = 0; k < value_len; k++) {
            if (value[k] < '0' || value[k] > '9' || v > (UINT64_MAX - 9) / 10) {
                return DUET_ERANGE;
            }
            v = v * 10 + (uint64_t)(value[k] - '0');
        }
        if (v < settings[i].min || v > settings[i].max) {
            return DUET_ERANGE;
        }
        *field(c, i) = v;
        return DUET_OK;
    }
    return DUET_EINVAL;
}

static bool space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r';
}

duet_err_t duet_relay_config_parse(duet_relay_config_t *c, const char *text, size_t len,
                                   size_t *bad_line)
{
    size_t line = 0, i = 0;
    *bad_line = 0;
    while (i < len) {
        size_t end = i;
        while (end < len && text[end] != '\n') {
            end++;
        }
        line++;
        size_t a = i, b = end;
        for (size_t k = a; k < b; k++) {
            if (text[k] == '#') {
                b = k;
                break;
            }
        }
        while (a < b && space(text[a])) {
            a++;
        }
        while (b > a && space(text[b - 1])) {
            b--;
        }
        if (a < b) {
            size_t eq = a;
            while (eq < b && text[eq] != '=') {
                eq++;
            }
            if (eq == b) {
                *bad_line = line;
                return DUET_EINVAL;
            }
            size_t ne = eq, vs = eq + 1;
            while (ne > a && space(text[ne - 1])) {
                ne--;
            }
            while (vs < b && space(text[vs])) {
                vs++;
            }
            duet_err_t err = duet_relay_config_set(c, text + a, ne - a, text + vs, b - vs);
            if (err != DUET_OK) {
                *bad_line = line;
                return err;
            }
        }
        i = end + 1;
    }
    return DUET_OK;
}

const char *duet_relay_config_name(size_t i)
{
    return i < NSETTINGS ? settings[i].name : NULL;
}

const char *duet_relay_config_doc(size_t i)
{
    return i < NSETTINGS ? settings[i].doc : NULL;
}

uint64_t duet_relay_config_value(const duet_relay_config_t *c, size_t i)
{
    if (i >= NSETTINGS) {
        abort();
    }
    return *field((duet_relay_config_t *)c, i);
}

/* ---- the engine's state ---------------------------------------------------------------- */

#define NAMEPLATES      10000u
#define PAIR_MSGS_MAX   16u /* messages through one nameplate, both ways */
#define QUEUE_MAX       (DUET_RELAY_WINDOW + DUET_RELAY_SUBS_MAX + PAIR_MSGS_MAX + 2u)
#define SUB_BUCKETS_MIN 64u
#define QUEUE_KEEP      4u /* a queue this small stays allocated between requests */

/* Kinds of queued items: a response (or event) frame type, plus the reads done lazily. */
enum { Q_LIST_READ = 200, Q_GET_READ = 201, Q_NOTIFY_SUB = 202 };

typedef struct qitem {
    uint8_t kind;    /* DUET_RELAY_OK/WELCOME/ERROR/PDATA/PCLOSED or a Q_ kind */
    uint8_t cls;     /* LIST */
    uint8_t oid_len; /* GET */
    uint8_t sub;     /* Q_NOTIFY_SUB: the subscription index */
    bool wrote;      /* an OK that acknowledges a write of the open batch */
    bool counted;    /* a response to a request (counts against the window) */
    bool fatal;      /* ERROR */
    uint16_t limit;  /* LIST */
    duet_err_t err;  /* ERROR, PCLOSED */
    uint32_t rid;
    uint64_t value;   /* OK; LIST: after */
    uint8_t mbox[32]; /* LIST, GET */
    uint8_t oid[DUET_RELAY_OID_MAX];
    uint8_t *data; /* PDATA: DUET_RELAY_PAIR_MSG bytes, malloc'd */
} qitem_t;

typedef struct sub {
    struct sub *next; /* hash chain */
    duet_relayd_conn_t *conn;
    uint64_t cursor; /* the latest cursor to announce */
    uint64_t staged; /* a cursor written by the open batch (0: none) */
    bool used;
    bool queued;    /* a NOTIFY for it is in the queue */
    bool in_staged; /* on the hub's staged list */
    struct sub *staged_next;
    uint8_t mbox[32];
} sub_t;

struct duet_relayd_conn {
    duet_relayd_t *d;
    void *user;
    duet_err_t fatal;
    bool hello;
    uint8_t np_role; /* 0, 1 (allocated: the listener), 2 (claimed: the joiner) */
    uint16_t np;
    qitem_t *q; /* ring; allocated while non-empty */
    size_t qcap, qhead, qlen;
    size_t released;                   /* items at the head that may be sent */
    size_t requests;                   /* responses in the queue */
    duet_relayd_conn_t *dprev, *dnext; /* the hub's dirty list */
    bool dirty;
    sub_t subs[DUET_RELAY_SUBS_MAX];
};

typedef struct slot {
    duet_relayd_conn_t *holder[2]; /* listener, joiner */
    uint64_t expires;
    uint32_t msgs;
} slot_t;

struct duet_relayd {
    duet_relay_store_t st;
    duet_relay_config_t cfg;
    duet_relay_limits_t lim;
    duet_rng_t rng;
    duet_relayd_wake_fn wake;
    void *wake_ctx;
    bool batch;
    duet_relayd_conn_t *dirty;
    sub_t **buckets;
    size_t nbuckets, nsubs;
    sub_t *staged; /* subscriptions touched by the open batch */
    uint8_t hash_key[crypto_shorthash_KEYBYTES];
    slot_t *slots; /* NAMEPLATES, allocated on first use */
    uint64_t next_sweep;
    duet_relayd_counters_t n;
    duet_codec_enc_t enc;
    duet_relay_entry_t entries[DUET_RELAY_LIST_MAX];
};

/* ---- hub ------------------------------------------------------------------------------- */

duet_relayd_t *duet_relayd_new(const duet_relay_store_t *store, const duet_relay_config_t *cfg,
                               duet_rng_t rng, duet_relayd_wake_fn wake, void *wake_ctx)
{
    duet_relayd_t *d = calloc(1, sizeof *d);
    if (d == NULL) {
        return NULL;
    }
    d->st = *store;
    d->cfg = *cfg;
    d->lim.max_items = cfg->mailbox_items;
    d->lim.max_bytes = cfg->mailbox_bytes;
    d->lim.max_store_bytes = cfg->store_bytes;
    d->lim.ttl_ms = cfg->ttl_s * 1000u;
    d->rng = rng;
    d->wake = wake;
    d->wake_ctx = wake_ctx;
    duet_rng_fill(&d->rng, d->hash_key, sizeof d->hash_key);
    duet_codec_enc_init(&d->enc, DUET_RELAY_FRAME_MAX);
    return d;
}

void duet_relayd_free(duet_relayd_t *d)
{
    if (d == NULL) {
        return;
    }
    if (d->batch) {
        d->st.rollback(d->st.ctx);
    }
    duet_codec_enc_dispose(&d->enc);
    free(d->buckets);
    free(d->slots);
    sodium_memzero(d->hash_key, sizeof d->hash_key);
    free(d);
}

duet_relayd_counters_t duet_relayd_counters(const duet_relayd_t *d)
{
    return d->n;
}

static void mark_dirty(duet_relayd_conn_t *c)
{
    duet_relayd_t *d = c->d;
    if (c->dirty) {
        return;
    }
    c->dirty = true;
    c->dprev = NULL;
    c->dnext = d->dirty;
    if (d->dirty != NULL) {
        d->dirty->dprev = c;
    }
    d->dirty = c;
}

static void unmark_dirty(duet_relayd_conn_t *c)
{
    if (!c->dirty) {
        return;
    }
    if (c->dprev != NULL) {
        c->dprev->dnext = c->dnext;
    } else {
        c->d->dirty = c->dnext;
    }
    if (c->dnext != NULL) {
        c->dnext->dprev = c->dprev;
    }
    c->dirty = false;
    c->dprev = c->dnext = NULL;
}

/* ---- queues ------------------------------------------------------------------------------ */

static qitem_t *q_at(duet_relayd_conn_t *c, size_t i)
{
    return &c->q[(c->qhead + i) % c->qcap];
}

/* Append an item (zeroed, kind set); NULL when the queue cannot grow (out of memory or over
 * QUEUE_MAX, which the window check keeps from happening). */
static qitem_t *q_push(duet_relayd_conn_t *c, uint8_t kind)
{
    if (c->qlen == c->qcap) {
        size_t ncap = c->qcap ? c->qcap * 2 : 4;
        if (ncap > QUEUE_MAX) {
            ncap = QUEUE_MAX;
        }
        if (ncap <= c->qcap) {
            return NULL;
        }
        qitem_t *nq = malloc(ncap * sizeof *nq);
        if (nq == NULL) {
            return NULL;
        }
        for (size_t i = 0; i < c->qlen; i++) {
            nq[i] = *q_at(c, i);
        }
        free(c->q);
        c->q = nq;
        c->qcap = ncap;
        c->qhead = 0;
    }
    qitem_t *it = &c->q[(c->qhead + c->qlen) % c->qcap];
    memset(it, 0, sizeof *it);
    it->kind = kind;
    c->qlen++;
    mark_dirty(c);
    return it;
}

static void q_item_free(qitem_t *it)
{
    if (it->data != NULL) {
        free(it->data);
        it->data = NULL;
    }
}

static void q_pop(duet_relayd_conn_t *c)
{
    q_item_free(q_at(c, 0));
    c->qhead = (c->qhead + 1) % c->qcap;
    c->qlen--;
    c->released--;
    if (c->qlen == 0 && c->qcap > QUEUE_KEEP) {
        free(c->q); /* an idle connection keeps no large queue */
        c->q = NULL;
        c->qcap = c->qhead = 0;
    }
}

/* ---- subscriptions (a hash table keyed by SipHash of the mailbox id) --------------------- */

static size_t sub_bucket(const duet_relayd_t *d, const uint8_t mbox[32])
{
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, mbox, 32, d->hash_key);
    uint64_t v = 0;
    for (size_t i = 0; i < sizeof h; i++) {
        v = v << 8 | h[i];
    }
    return (size_t)(v & (d->nbuckets - 1));
}

static bool sub_grow(duet_relayd_t *d)
{
    size_t n = d->nbuckets ? d->nbuckets * 2 : SUB_BUCKETS_MIN;
    sub_t **b = calloc(n, sizeof *b);
    if (b == NULL) {
        return false;
    }
    sub_t **old = d->buckets;
    size_t oldn = d->nbuckets;
    d->buckets = b;
    d->nbuckets = n;
    for (size_t i = 0; i < oldn; i++) {
        sub_t *s = old[i];
        while (s != NULL) {
            sub_t *next = s->next;
            size_t k = sub_bucket(d, s->mbox);
            s->next = b[k];
            b[k] = s;
            s = next;
        }
    }
    free(old);
    return true;
}

static bool sub_add(duet_relayd_t *d, sub_t *s)
{
    if ((d->nsubs + 1 > d->nbuckets * 2 || d->nbuckets == 0) && !sub_grow(d) && d->nbuckets == 0) {
        return false;
    }
    size_t k = sub_bucket(d, s->mbox);
    s->next = d->buckets[k];
    d->buckets[k] = s;
    d->nsubs++;
    return true;
}

static void sub_remove(duet_relayd_t *d, sub_t *s)
{
    sub_t **p = &d->buckets[sub_bucket(d, s->mbox)];
    while (*p != NULL && *p != s) {
        p = &(*p)->next;
    }
    if (*p == s) {
        *p = s->next;
        d->nsubs--;
    }
    if (s->in_staged) {
        sub_t **q = &d->staged;
        while (*q != NULL && *q != s) {
            q = &(*q)->staged_next;
        }
        if (*q == s) {
            *q = s->staged_next;
        }
    }
    memset(s, 0, sizeof *s);
}

/* A PUT landed in mbox at cursor (in the open batch): stage a NOTIFY for its subscribers. */
static void sub_stage(duet_relayd_t *d, const uint8_t mbox[32], uint64_t cursor)
{
    if (d->nsubs == 0) {
        return;
    }
    for (sub_t *s = d->buckets[sub_bucket(d, mbox)]; s != NULL; s = s->next) {
        if (sodium_memcmp(s->mbox, mbox, 32) != 0) {
            continue;
        }
        if (cursor > s->staged) {
            s->staged = cursor;
        }
        if (!s->in_staged) {
            s->in_staged = true;
            s->staged_next = d->staged;
            d->staged = s;
        }
    }
}

/* After the batch: announce (committed) or forget (failed) the staged cursors. */
static void sub_publish(duet_relayd_t *d, bool committed)
{
    sub_t *s = d->staged;
    d->staged = NULL;
    while (s != NULL) {
        sub_t *next = s->staged_next;
        s->in_staged = false;
        s->staged_next = NULL;
        if (committed && s->staged > s->cursor) {
            s->cursor = s->staged;
            if (!s->queued) {
                qitem_t *it = q_push(s->conn, Q_NOTIFY_SUB);
                if (it != NULL) {
                    it->sub = (uint8_t)(s - s->conn->subs);
                    s->queued = true;
                }
            }
        }
        s->staged = 0;
        s = next;
    }
}

/* ---- connections ------------------------------------------------------------------------- */

duet_relayd_conn_t *duet_relayd_conn_new(duet_relayd_t *d, void *user)
{
    duet_relayd_conn_t *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return NULL;
    }
    c->d = d;
    c->user = user;
    d->n.connections++;
    return c;
}

/* The rendezvous table, allocated when the first pairing comes (most relays that serve
 * only mailboxes never need its 240 KB). */
static bool slots_ready(duet_relayd_t *d)
{
    if (d->slots == NULL) {
        d->slots = calloc(NAMEPLATES, sizeof *d->slots);
    }
    return d->slots != NULL;
}

/* Clear a slot: its holders other than c hear why (PCLOSED) and hold nothing any more. */
static void slot_detach(duet_relayd_t *d, slot_t *s, const duet_relayd_conn_t *c, duet_err_t why)
{
    for (int i = 0; i < 2; i++) {
        duet_relayd_conn_t *h = s->holder[i];
        if (h == NULL) {
            continue;
        }
        if (h != c) {
            qitem_t *it = q_push(h, DUET_RELAY_PCLOSED);
            if (it != NULL) {
                it->err = why;
            }
        }
        h->np = 0;
        h->np_role = 0;
    }
    (void)d;
    memset(s, 0, sizeof *s);
}

/* End the rendezvous of c's nameplate: the other holder hears why; the nameplate is free. */
static void np_end(duet_relayd_conn_t *c, duet_err_t why)
{
    duet_relayd_t *d = c->d;
    if (c->np == 0) {
        return;
    }
    uint16_t np = c->np;
    slot_detach(d, &d->slots[np], c, why);
    d->st.np_release(d->st.ctx, np);
}

void duet_relayd_conn_free(duet_relayd_conn_t *c)
{
    if (c == NULL) {
        return;
    }
    duet_relayd_t *d = c->d;
    np_end(c, DUET_ECLOSED);
    for (size_t i = 0; i < DUET_RELAY_SUBS_MAX; i++) {
        if (c->subs[i].used) {
            sub_remove(d, &c->subs[i]);
        }
    }
    unmark_dirty(c);
    while (c->qlen > 0) {
        c->released = c->qlen;
        q_pop(c);
    }
    free(c->q);
    d->n.connections--;
    free(c);
}

duet_err_t duet_relayd_conn_error(const duet_relayd_conn_t *c)
{
    return c->fatal;
}

bool duet_relayd_conn_waiting(const duet_relayd_conn_t *c)
{
    if (c->np != 0) {
        return true;
    }
    for (size_t i = 0; i < DUET_RELAY_SUBS_MAX; i++) {
        if (c->subs[i].used) {
            return true;
        }
    }
    return false;
}

bool duet_relayd_has_output(const duet_relayd_conn_t *c)
{
    return c->released > 0;
}

/* ---- requests ---------------------------------------------------------------------------- */

static duet_err_t fatal(duet_relayd_conn_t *c, uint32_t rid, duet_err_t err)
{
    if (c->fatal == DUET_OK) {
        c->fatal = err;
        c->d->n.fatal++;
        qitem_t *it = q_push(c, DUET_RELAY_ERROR);
        if (it != NULL) {
            it->rid = rid;
            it->err = err;
            it->fatal = true;
        }
    }
    return c->fatal;
}

/* Queue a response to request rid; a fatal ENOMEM if the queue cannot take it. */
static qitem_t *respond(duet_relayd_conn_t *c, uint8_t kind, uint32_t rid)
{
    qitem_t *it = q_push(c, kind);
    if (it == NULL) {
        return NULL;
    }
    it->rid = rid;
    it->counted = true;
    c->requests++;
    return it;
}

static duet_err_t refuse(duet_relayd_conn_t *c, uint32_t rid, duet_err_t err)
{
    duet_relayd_t *d = c->d;
    if (!duet_relay_err_allowed(err)) {
        err = DUET_EIO; /* a store failure the client need not know the details of */
    }
    if (err == DUET_ECAPABILITY) {
        d->n.refused_cap++;
    } else if (err == DUET_EQUOTA) {
        d->n.refused_quota++;
    } else {
        d->n.refused_other++;
    }
    qitem_t *it = respond(c, DUET_RELAY_ERROR, rid);
    if (it == NULL) {
        return fatal(c, rid, DUET_EIO);
    }
    it->err = err;
    return DUET_OK;
}

static duet_err_t ok(duet_relayd_conn_t *c, uint32_t rid, uint64_t value, bool wrote)
{
    qitem_t *it = respond(c, DUET_RELAY_OK, rid);
    if (it == NULL) {
        return fatal(c, rid, DUET_EIO);
    }
    it->value = value;
    it->wrote = wrote;
    return DUET_OK;
}

static duet_err_t open_batch(duet_relayd_t *d)
{
    if (d->batch) {
        return DUET_OK;
    }
    duet_err_t err = d->st.begin(d->st.ctx);
    if (err == DUET_OK) {
        d->batch = true;
    }
    return err;
}

static duet_err_t on_put(duet_relayd_conn_t *c, const duet_relay_frame_t *f, uint64_t now)
{
    duet_relayd_t *d = c->d;
    uint64_t cursor;
    bool dup;
    if (duet_relay_cap_check(f->mbox, f->cap, f->other_hash, true) != DUET_OK) {
        return refuse(c, f->rid, DUET_ECAPABILITY);
    }
    if (f->data_len > d->cfg.max_object) {
        return refuse(c, f->rid, DUET_ETOOBIG);
    }
    duet_err_t err = open_batch(d);
    if (err == DUET_OK) {
        err = d->st.put(d->st.ctx, f->mbox, f->cls, f->oid, f->oid_len, f->data, f->data_len, now,
                        &d->lim, &cursor, &dup);
    }
    if (err != DUET_OK) {
        return refuse(c, f->rid, err);
    }
    if (dup) {
        d->n.dups++;
    } else {
        d->n.puts++;
        sub_stage(d, f->mbox, cursor);
    }
    return ok(c, f->rid, cursor, !dup);
}

static duet_err_t on_delete(duet_relayd_conn_t *c, const duet_relay_frame_t *f, uint64_t now)
{
    duet_relayd_t *d = c->d;
    uint64_t count = 0;
    if (duet_relay_cap_check(f->mbox, f->cap, f->other_hash, false) != DUET_OK) {
        return refuse(c, f->rid, DUET_ECAPABILITY);
    }
    duet_err_t err = open_batch(d);
    for (size_t i = 0; i < f->count && err == DUET_OK; i++) {
        const uint8_t *oid;
        size_t oid_len;
        bool gone;
        duet_relay_frame_oid(f, i, &oid, &oid_len);
        err = d->st.del(d->st.ctx, f->mbox, oid, oid_len, now + d->cfg.tombstone_ttl_s * 1000u,
                        &gone);
        count += gone;
    }
    if (err != DUET_OK) {
        return refuse(c, f->rid, err);
    }
    d->n.deletes += count;
    return ok(c, f->rid, count, count > 0);
}

/* LIST and GET: check the capability now, read when the response is taken. */
static duet_err_t on_read(duet_relayd_conn_t *c, const duet_relay_frame_t *f)
{
    if (duet_relay_cap_check(f->mbox, f->cap, f->other_hash, false) != DUET_OK) {
        return refuse(c, f->rid, DUET_ECAPABILITY);
    }
    qitem_t *it = respond(c, f->type == DUET_RELAY_LIST ? Q_LIST_READ : Q_GET_READ, f->rid);
    if (it == NULL) {
        return fatal(c, f->rid, DUET_EIO);
    }
    memcpy(it->mbox, f->mbox, 32);
    if (f->type == DUET_RELAY_LIST) {
        it->cls = f->cls;
        it->value = f->after;
        it->limit = (uint16_t)f->limit;
    } else {
        it->oid_len = (uint8_t)f->oid_len;
        memcpy(it->oid, f->oid, f->oid_len);
    }
    return DUET_OK;
}

static duet_err_t on_subscribe(duet_relayd_conn_t *c, const duet_relay_frame_t *f)
{
    sub_t *free_sub = NULL;
    if (duet_relay_cap_check(f->mbox, f->cap, f->other_hash, false) != DUET_OK) {
        return refuse(c, f->rid, DUET_ECAPABILITY);
    }
    for (size_t i = 0; i < DUET_RELAY_SUBS_MAX; i++) {
        sub_t *s = &c->subs[i];
        if (s->used && sodium_memcmp(s->mbox, f->mbox, 32) == 0) {
            return ok(c, f->rid, 0, false); /* already subscribed */
        }
        if (!s->used && free_sub == NULL) {
            free_sub = s;
        }
    }
    if (free_sub == NULL) {
        return refuse(c, f->rid, DUET_EQUOTA);
    }
    memset(free_sub, 0, sizeof *free_sub);
    memcpy(free_sub->mbox, f->mbox, 32);
    free_sub->conn = c;
    free_sub->used = true;
    if (!sub_add(c->d, free_sub)) {
        memset(free_sub, 0, sizeof *free_sub);
        return refuse(c, f->rid, DUET_EIO);
    }
    return ok(c, f->rid, 0, false);
}

static duet_err_t on_allocate(duet_relayd_conn_t *c, const duet_relay_frame_t *f, uint64_t now)
{
    duet_relayd_t *d = c->d;
    uint16_t np;
    if (c->np != 0) {
        return fatal(c, f->rid, DUET_EPROTO); /* one rendezvous per connection */
    }
    if (!slots_ready(d)) {
        return refuse(c, f->rid, DUET_EIO);
    }
    duet_err_t err = d->st.np_allocate(d->st.ctx, f->nameplate, now, d->cfg.nameplate_ttl_s * 1000u,
                                       d->rng, &np);
    if (err != DUET_OK) {
        return refuse(c, f->rid, err);
    }
    slot_t *s = &d->slots[np];
    /* The store counts a nameplate free once it has expired; the tick may not have told its
     * old holder yet. */
    slot_detach(d, s, NULL, DUET_ETIMEDOUT);
    s->holder[0] = c;
    s->expires = now + d->cfg.nameplate_ttl_s * 1000u;
    c->np = np;
    c->np_role = 1;
    return ok(c, f->rid, np, false);
}

static duet_err_t on_claim(duet_relayd_conn_t *c, const duet_relay_frame_t *f, uint64_t now)
{
    duet_relayd_t *d = c->d;
    if (c->np != 0) {
        return fatal(c, f->rid, DUET_EPROTO);
    }
    if (!slots_ready(d)) {
        return refuse(c, f->rid, DUET_EIO);
    }
    slot_t *s = &d->slots[f->nameplate];
    if (s->holder[0] == NULL || s->holder[1] != NULL ||
        d->st.np_claim(d->st.ctx, f->nameplate, now) != DUET_OK) {
        return refuse(c, f->rid, DUET_ENAMEPLATE);
    }
    s->holder[1] = c;
    c->np = f->nameplate;
    c->np_role = 2;
    d->n.pairings++;
    return ok(c, f->rid, f->nameplate, false);
}

static duet_err_t on_pmsg(duet_relayd_conn_t *c, const duet_relay_frame_t *f)
{
    duet_relayd_t *d = c->d;
    if (c->np == 0) {
        return refuse(c, f->rid, DUET_ENAMEPLATE);
    }
    slot_t *s = &d->slots[c->np];
    duet_relayd_conn_t *peer = s->holder[c->np_role == 1 ? 1 : 0];
    if (peer == NULL) {
        return refuse(c, f->rid, DUET_ENOENT); /* nobody to talk to yet */
    }
    if (s->msgs >= PAIR_MSGS_MAX) {
        return refuse(c, f->rid, DUET_EQUOTA);
    }
    uint8_t *copy = malloc(DUET_RELAY_PAIR_MSG);
    qitem_t *it = copy != NULL ? q_push(peer, DUET_RELAY_PDATA) : NULL;
    if (it == NULL) {
        free(copy);
        return refuse(c, f->rid, DUET_EIO);
    }
    memcpy(copy, f->data, DUET_RELAY_PAIR_MSG);
    it->data = copy;
    s->msgs++;
    return ok(c, f->rid, 0, false);
}

duet_err_t duet_relayd_recv(duet_relayd_conn_t *c, const uint8_t *frame, size_t len,
                            uint64_t now_ms)
{
    duet_relay_frame_t f;
    duet_err_t err;
    if (c->fatal != DUET_OK) {
        return c->fatal;
    }
    if (duet_relay_frame_decode(&f, frame, len) != DUET_OK) {
        return fatal(c, 0, DUET_EPROTO);
    }
    if (!duet_relay_is_request(f.type) || c->requests >= DUET_RELAY_WINDOW) {
        err = fatal(c, f.rid, DUET_EPROTO);
        goto cleanup;
    }
    if (!c->hello) {
        if (f.type != DUET_RELAY_HELLO) {
            err = fatal(c, f.rid, DUET_EPROTO);
        } else if (f.version != DUET_RELAY_VERSION) {
            err = fatal(c, f.rid, DUET_EVERSION);
        } else {
            c->hello = true;
            qitem_t *it = respond(c, DUET_RELAY_WELCOME, f.rid);
            err = it != NULL ? DUET_OK : fatal(c, f.rid, DUET_EIO);
        }
        goto cleanup;
    }
    switch (f.type) {
    case DUET_RELAY_PUT:
        err = on_put(c, &f, now_ms);
        break;
    case DUET_RELAY_LIST:
    case DUET_RELAY_GET:
        err = on_read(c, &f);
        break;
    case DUET_RELAY_DELETE:
        err = on_delete(c, &f, now_ms);
        break;
    case DUET_RELAY_SUBSCRIBE:
        err = on_subscribe(c, &f);
        break;
    case DUET_RELAY_PING:
        err = ok(c, f.rid, 0, false);
        break;
    case DUET_RELAY_ALLOCATE:
        err = on_allocate(c, &f, now_ms);
        break;
    case DUET_RELAY_CLAIM:
        err = on_claim(c, &f, now_ms);
        break;
    case DUET_RELAY_PMSG:
        err = on_pmsg(c, &f);
        break;
    default: /* a second HELLO */
        err = fatal(c, f.rid, DUET_EPROTO);
        break;
    }
cleanup:
    duet_relay_frame_dispose(&f);
    return err;
}

/* ---- the end of an iteration ------------------------------------------------------------- */

duet_err_t duet_relayd_flush(duet_relayd_t *d, uint64_t now_ms)
{
    duet_err_t err = DUET_OK;
    (void)now_ms;
    if (d->batch) {
        d->batch = false;
        err = d->st.commit(d->st.ctx);
        if (err == DUET_OK) {
            d->n.commits++;
        } else {
            d->n.commit_failures++;
            if (!duet_relay_err_allowed(err)) {
                err = DUET_EIO;
            }
        }
        /* Nothing unstored may be acknowledged: the batch's writes get the error. */
        for (duet_relayd_conn_t *c = d->dirty; c != NULL; c = c->dnext) {
            for (size_t i = c->released; i < c->qlen; i++) {
                qitem_t *it = q_at(c, i);
                if (it->wrote && err != DUET_OK) {
                    it->kind = DUET_RELAY_ERROR;
                    it->err = err;
                }
                it->wrote = false;
            }
        }
        sub_publish(d, err == DUET_OK);
    }
    while (d->dirty != NULL) {
        duet_relayd_conn_t *c = d->dirty;
        unmark_dirty(c);
        bool had = c->released > 0;
        c->released = c->qlen;
        if (!had && c->released > 0 && d->wake != NULL) {
            d->wake(d->wake_ctx, c->user);
        }
    }
    return err;
}

/* ---- output ------------------------------------------------------------------------------ */

static void encode_list(duet_relayd_t *d, const qitem_t *it, uint64_t now)
{
    size_t n;
    bool more;
    duet_err_t err =
        d->st.list(d->st.ctx, it->mbox, it->cls, it->value, now, d->entries, it->limit, &n, &more);
    d->n.lists++;
    if (err != DUET_OK) {
        duet_relay_enc_error(&d->enc, it->rid, duet_relay_err_allowed(err) ? err : DUET_EIO, false);
        return;
    }
    duet_relay_enc_listed(&d->enc, it->rid, d->entries, n, more);
}

static void encode_get(duet_relayd_t *d, const qitem_t *it, uint64_t now)
{
    duet_relay_entry_t meta;
    const uint8_t *data;
    duet_err_t err = d->st.get(d->st.ctx, it->mbox, it->oid, it->oid_len, now, &meta, &data);
    d->n.gets++;
    if (err != DUET_OK) {
        duet_relay_enc_error(&d->enc, it->rid, duet_relay_err_allowed(err) ? err : DUET_EIO, false);
        return;
    }
    duet_relay_enc_object(&d->enc, it->rid, meta.cursor, meta.cls, meta.oid, meta.oid_len, data,
                          meta.len);
}

static void encode(duet_relayd_conn_t *c, qitem_t *it, uint64_t now)
{
    duet_relayd_t *d = c->d;
    switch (it->kind) {
    case DUET_RELAY_OK:
        duet_relay_enc_ok(&d->enc, it->rid, it->value);
        break;
    case DUET_RELAY_WELCOME:
        duet_relay_enc_welcome(&d->enc, it->rid);
        break;
    case DUET_RELAY_ERROR:
        duet_relay_enc_error(&d->enc, it->rid, it->err, it->fatal);
        break;
    case DUET_RELAY_PDATA:
        duet_relay_enc_pdata(&d->enc, it->data);
        break;
    case DUET_RELAY_PCLOSED:
        duet_relay_enc_pclosed(&d->enc, it->err);
        break;
    case Q_LIST_READ:
        encode_list(d, it, now);
        break;
    case Q_GET_READ:
        encode_get(d, it, now);
        break;
    case Q_NOTIFY_SUB: {
        sub_t *s = &c->subs[it->sub];
        s->queued = false;
        d->n.notifies++;
        duet_relay_enc_notify(&d->enc, s->mbox, s->cursor);
        break;
    }
    default:
        abort();
    }
}

bool duet_relayd_next_frame(duet_relayd_conn_t *c, uint64_t now_ms, const uint8_t **frame,
                            size_t *len)
{
    duet_relayd_t *d = c->d;
    *frame = NULL;
    *len = 0;
    if (c->released > 0) {
        qitem_t *it = q_at(c, 0);
        duet_codec_enc_reset(&d->enc);
        encode(c, it, now_ms);
        if (it->counted) {
            c->requests--;
        }
        q_pop(c);
        if (duet_codec_enc_finish(&d->enc, frame, len) != DUET_OK) {
            /* Cannot happen with the limits above; close rather than send half a frame. */
            *frame = NULL;
            *len = 0;
            if (c->fatal == DUET_OK) {
                c->fatal = DUET_EINTERNAL;
            }
            return false;
        }
        return true;
    }
    return false;
}

/* ---- timers ------------------------------------------------------------------------------ */

duet_err_t duet_relayd_tick(duet_relayd_t *d, uint64_t now_ms)
{
    duet_err_t err = DUET_OK;
    if (d->batch) {
        abort(); /* flush first */
    }
    if (d->slots != NULL) {
        for (size_t np = 1; np < NAMEPLATES; np++) {
            slot_t *s = &d->slots[np];
            if (s->holder[0] != NULL && s->holder[1] == NULL && s->expires <= now_ms) {
                duet_relayd_conn_t *h = s->holder[0];
                qitem_t *it = q_push(h, DUET_RELAY_PCLOSED);
                if (it != NULL) {
                    it->err = DUET_ETIMEDOUT;
                }
                np_end(h, DUET_ETIMEDOUT);
            }
        }
    }
    if (now_ms >= d->next_sweep) {
        uint64_t removed;
        d->next_sweep = now_ms + d->cfg.sweep_interval_s * 1000u;
        err = d->st.expire(d->st.ctx, now_ms, d->lim.ttl_ms, 100000, &removed);
    }
    duet_err_t ferr = duet_relayd_flush(d, now_ms); /* release the PCLOSED frames */
    return err != DUET_OK ? err : ferr;
}
