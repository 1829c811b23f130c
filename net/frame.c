/* see frame.h */
#include "frame.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

/* ---- reading frames ------------------------------------------------------------------- */

void duet_frame_reader_init(duet_frame_reader_t *r, size_t max)
{
    if (max == 0 || max > DUET_FRAME_MAX) {
        abort();
    }
    r->max = max;
    r->need = 0;
    r->have = 0;
    r->dead = DUET_OK;
    memset(r->hdr, 0, sizeof r->hdr);
}

void duet_frame_reader_set_max(duet_frame_reader_t *r, size_t max)
{
    if (max == 0 || max > DUET_FRAME_MAX) {
        abort();
    }
    r->max = max;
}

/* The prefix is complete: check the length, and hand out the body at once if it is all in
 * the input. Returns the bytes of the body taken from in (0 or n). */
static duet_err_t reader_start_body(duet_frame_reader_t *r, uint8_t *in, size_t avail,
                                    uint8_t **body, size_t *body_len, size_t *taken)
{
    size_t n = (size_t)r->hdr[0] << 8 | r->hdr[1];
    r->have = 0;
    *taken = 0;
    if (n == 0 || n > r->max) {
        r->dead = DUET_EPROTO;
        return r->dead;
    }
    if (avail >= n) {
        /* The common case: the whole body is in this read; no copy. */
        *body = in;
        *body_len = n;
        *taken = n;
        return DUET_OK;
    }
    r->need = n;
    return DUET_OK;
}

duet_err_t duet_frame_read(duet_frame_reader_t *r, uint8_t *in, size_t len, size_t *used,
                           uint8_t **body, size_t *body_len)
{
    *used = 0;
    *body = NULL;
    *body_len = 0;
    if (r->dead != DUET_OK) {
        return r->dead;
    }
    size_t i = 0;
    while (i < len) {
        if (r->need == 0) {
            r->hdr[r->have++] = in[i++];
            if (r->have < DUET_FRAME_HDR) {
                continue;
            }
            size_t taken;
            duet_err_t err = reader_start_body(r, in + i, len - i, body, body_len, &taken);
            i += taken;
            *used = i;
            if (err != DUET_OK || *body != NULL) {
                return err;
            }
            continue;
        }
        size_t take = r->need - r->have;
        if (take > len - i) {
            take = len - i;
        }
        memcpy(r->buf + r->have, in + i, take);
        r->have += take;
        i += take;
        if (r->have == r->need) {
            *body = r->buf;
            *body_len = r->need;
            r->need = 0;
            r->have = 0;
            break;
        }
    }
    *used = i;
    return DUET_OK;
}

bool duet_frame_reader_idle(const duet_frame_reader_t *r)
{
    return r->need == 0 && r->have == 0;
}

void duet_frame_reader_dispose(duet_frame_reader_t *r)
{
    sodium_memzero(r->buf, sizeof r->buf);
    sodium_memzero(r->hdr, sizeof r->hdr);
    r->need = 0;
    r->have = 0;
}

void duet_frame_put_header(uint8_t out[static DUET_FRAME_HDR], size_t n)
{
    if (n == 0 || n > DUET_FRAME_MAX) {
        abort();
    }
    out[0] = (uint8_t)(n >> 8);
    out[1] = (uint8_t)n;
}

/* ---- reassembling records ------------------------------------------------------------- */

void duet_frame_reasm_init(duet_frame_reasm_t *r, size_t max)
{
    if (max > DUET_FRAME_MAX_RECORD) {
        abort();
    }
    memset(r, 0, sizeof *r);
    r->max = max;
}

/* Make room for need bytes. Grows by doubling from one chunk, up to max; the old buffer
 * is wiped before it is freed, since it holds plaintext. */
static duet_err_t reasm_reserve(duet_frame_reasm_t *r, size_t need)
{
    if (need <= r->cap) {
        return DUET_OK;
    }
    size_t cap = r->cap ? r->cap : DUET_FRAME_MAX_CHUNK;
    while (cap < need) {
        cap *= 2;
    }
    if (cap > r->max) {
        cap = r->max;
    }
    uint8_t *buf = malloc(cap);
    if (buf == NULL) {
        return DUET_ENOMEM;
    }
    if (r->buf != NULL) {
        memcpy(buf, r->buf, r->len);
        sodium_memzero(r->buf, r->cap);
        free(r->buf);
    }
    r->buf = buf;
    r->cap = cap;
    return DUET_OK;
}

static duet_err_t reasm_fail(duet_frame_reasm_t *r, duet_err_t err)
{
    r->dead = err;
    return err;
}

duet_err_t duet_frame_reasm_push(duet_frame_reasm_t *r, const uint8_t *plain, size_t len,
                                 bool *complete, const uint8_t **rec, size_t *rec_len)
{
    *complete = false;
    *rec = NULL;
    *rec_len = 0;
    if (r->dead != DUET_OK) {
        return r->dead;
    }
    if (!r->open) {
        /* A new record: wipe what is left of the last one. */
        duet_frame_reasm_clear(r);
    }
    if (len == 0) {
        return reasm_fail(r, DUET_EPROTO);
    }
    uint8_t flags = plain[0];
    const uint8_t *chunk = plain + 1;
    size_t n = len - 1;
    bool more = (flags & DUET_FRAME_FLAG_MORE) != 0;
    if ((flags & (uint8_t)~DUET_FRAME_FLAG_MORE) != 0 || (more && n == 0)) {
        return reasm_fail(r, DUET_EPROTO);
    }
    if (n > r->max - r->len) {
        return reasm_fail(r, DUET_EPROTO);
    }
    if (!r->open && !more) {
        /* A record in one chunk: hand it out where it is. */
        *complete = true;
        *rec = chunk;
        *rec_len = n;
        return DUET_OK;
    }
    duet_err_t err = reasm_reserve(r, r->len + n);
    if (err != DUET_OK) {
        return reasm_fail(r, err);
    }
    memcpy(r->buf + r->len, chunk, n);
    r->len += n;
    r->open = more;
    if (!more) {
        *complete = true;
        *rec = r->buf;
        *rec_len = r->len;
    }
    return DUET_OK;
}

void duet_frame_reasm_clear(duet_frame_reasm_t *r)
{
    if (r->open) {
        return;
    }
    if (r->buf != NULL) {
        sodium_memzero(r->buf, r->len);
    }
    r->len = 0;
}

bool duet_frame_reasm_idle(const duet_frame_reasm_t *r)
{
    return !r->open;
}

void duet_frame_reasm_dispose(duet_frame_reasm_t *r)
{
    if (r->buf != NULL) {
        sodium_memzero(r->buf, r->cap);
        free(r->buf);
    }
    r->buf = NULL;
    r->len = 0;
    r->cap = 0;
    r->open = false;
}

/* ---- sealed records -------------------------------------------------------------------- */

size_t duet_frame_chunks(size_t len)
{
    return len == 0 ? 1 : (len + DUET_FRAME_MAX_CHUNK - 1) / DUET_FRAME_MAX_CHUNK;
}

size_t duet_frame_sealed_size(size_t len)
{
    return len + duet_frame_chunks(len) * (DUET_FRAME_HDR + 1u + DUET_NOISE_TAGLEN);
}

duet_err_t duet_frame_seal(duet_noise_cs_t *cs, const uint8_t *rec, size_t len, uint8_t *out,
                           size_t cap, size_t *out_len)
{
    *out_len = 0;
    if (len > DUET_FRAME_MAX_RECORD) {
        return DUET_ETOOBIG;
    }
    size_t chunks = duet_frame_chunks(len);
    if (cap < duet_frame_sealed_size(len)) {
        return DUET_ETOOBIG;
    }
    /* Nonce 2^64-1 is reserved: refuse a record that would need it, before sealing any of
     * its chunks, so that a record is sent whole or not at all. */
    if (cs->n > UINT64_MAX - 1u - chunks) {
        return DUET_ENONCE;
    }
    size_t off = 0;
    size_t done = 0;
    for (size_t c = 0; c < chunks; c++) {
        size_t n = len - done;
        if (n > DUET_FRAME_MAX_CHUNK) {
            n = DUET_FRAME_MAX_CHUNK;
        }
        uint8_t *msg = out + off + DUET_FRAME_HDR;
        /* Assemble flags ‖ chunk where the ciphertext goes, then encrypt in place. */
        msg[0] = done + n < len ? DUET_FRAME_FLAG_MORE : 0;
        if (n > 0) {
            memcpy(msg + 1, rec + done, n);
        }
        size_t mlen;
        duet_err_t err =
            duet_noise_cs_encrypt(cs, NULL, 0, msg, n + 1, msg, n + 1 + DUET_NOISE_TAGLEN, &mlen);
        if (err != DUET_OK) {
            /* Cannot happen after the checks above; leave no plaintext behind. */
            sodium_memzero(out, cap);
            return err;
        }
        duet_frame_put_header(out + off, mlen);
        off += DUET_FRAME_HDR + mlen;
        done += n;
    }
    *out_len = off;
    return DUET_OK;
}

duet_err_t duet_frame_open(duet_noise_cs_t *cs, uint8_t *msg, size_t len, duet_frame_reasm_t *r,
                           bool *complete, const uint8_t **rec, size_t *rec_len)
{
    *complete = false;
    *rec = NULL;
    *rec_len = 0;
    if (r->dead != DUET_OK) {
        return r->dead;
    }
    if (len < DUET_FRAME_MIN_SEALED) {
        return reasm_fail(r, DUET_EPROTO);
    }
    size_t plain_len;
    duet_err_t err = duet_noise_cs_decrypt(cs, NULL, 0, msg, len, msg, len, &plain_len);
    if (err != DUET_OK) {
        return reasm_fail(r, err == DUET_EAUTH || err == DUET_ENONCE ? err : DUET_EPROTO);
    }
    return duet_frame_reasm_push(r, msg, plain_len, complete, rec, rec_len);
}
