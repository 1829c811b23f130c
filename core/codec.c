/* see codec.h */
#include "codec.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

const duet_codec_limits_t duet_codec_default_limits = {
    .max_depth = 6,
    .max_str = 80u * 1024u,
    .max_bin = 80u * 1024u,
    .max_array = 4096,
    .max_map = 64,
    .max_objects = 100000,
};

/* ---- structural walk ------------------------------------------------------------------ */

static uint64_t be_load(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

/*
 * One pass over the bytes with an explicit stack of "elements still expected" per open
 * container. Every length is checked against both its limit and the bytes left, before
 * anything is allocated.
 */
duet_err_t duet_codec_check(const uint8_t *buf, size_t len, const duet_codec_limits_t *lim)
{
    uint64_t stack[DUET_CODEC_MAX_DEPTH + 1];
    uint32_t depth = 0;
    uint64_t objects = 0;
    size_t pos = 0;

    if (buf == NULL && len != 0) {
        abort();
    }
    if (lim->max_depth > DUET_CODEC_MAX_DEPTH) {
        abort();
    }
    if (len > DUET_CODEC_MAX_INPUT) {
        return DUET_ETOOBIG;
    }
    stack[0] = 1; /* one top-level object */
    for (;;) {
        while (depth > 0 && stack[depth] == 0) {
            depth--;
        }
        if (stack[depth] == 0) {
            break; /* depth 0 done */
        }
        stack[depth]--;
        if (pos >= len) {
            return DUET_ETRUNCATED;
        }
        if (++objects > lim->max_objects) {
            return DUET_ETOOBIG;
        }
        uint8_t b = buf[pos++];
        size_t left = len - pos;
        uint64_t n = 0;       /* payload bytes to skip, or element count */
        size_t lenbytes = 0;  /* size of the length field that follows the type byte */
        enum { SKIP, STR, BIN, ARR, MAP } kind = SKIP;

        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
            continue; /* fixint, nil, bool */
        } else if (b >= 0x80 && b <= 0x8f) {
            kind = MAP, n = b & 0x0fu;
        } else if (b >= 0x90 && b <= 0x9f) {
            kind = ARR, n = b & 0x0fu;
        } else if (b >= 0xa0 && b <= 0xbf) {
            kind = STR, n = b & 0x1fu;
        } else {
            switch (b) {
            case 0xcc: case 0xd0: n = 1; break;
            case 0xcd: case 0xd1: n = 2; break;
            case 0xce: case 0xd2: n = 4; break;
            case 0xcf: case 0xd3: n = 8; break;
            case 0xc4: kind = BIN, lenbytes = 1; break;
            case 0xc5: kind = BIN, lenbytes = 2; break;
            case 0xc6: kind = BIN, lenbytes = 4; break;
            case 0xd9: kind = STR, lenbytes = 1; break;
            case 0xda: kind = STR, lenbytes = 2; break;
            case 0xdb: kind = STR, lenbytes = 4; break;
            case 0xdc: kind = ARR, lenbytes = 2; break;
            case 0xdd: kind = ARR, lenbytes = 4; break;
            case 0xde: kind = MAP, lenbytes = 2; break;
            case 0xdf: kind = MAP, lenbytes = 4; break;
            case 0xc1: return DUET_EDECODE; /* never used by msgpack */
            default: return DUET_ETYPE;     /* float, ext, fixext, timestamp */
            }
        }
        if (lenbytes > 0) {
            if (left < lenbytes) {
                return DUET_ETRUNCATED;
            }
            n = be_load(buf + pos, lenbytes);
            pos += lenbytes;
            left -= lenbytes;
        }
        switch (kind) {
        case SKIP:
            if (left < n) {
                return DUET_ETRUNCATED;
            }
            pos += (size_t)n;
            break;
        case STR:
        case BIN:
            if (n > (kind == STR ? lim->max_str : lim->max_bin)) {
                return DUET_ETOOBIG;
            }
            if (left < n) {
                return DUET_ETRUNCATED;
            }
            pos += (size_t)n;
            break;
        case ARR:
        case MAP:
            if (n > (kind == ARR ? lim->max_array : lim->max_map)) {
                return DUET_ETOOBIG;
            }
            if (kind == MAP) {
                n *= 2;
            }
            if (n > left) {
                return DUET_ETRUNCATED; /* each element takes at least one byte */
            }
            if (n > 0) {
                if (depth + 1 > lim->max_depth) {
                    return DUET_EDEPTH;
                }
                stack[++depth] = n;
            } else if (depth + 1 > lim->max_depth) {
                return DUET_EDEPTH;
            }
            break;
        }
    }
    if (pos != len) {
        return DUET_ETRAILING;
    }
    return DUET_OK;
}

duet_err_t duet_codec_decode(duet_codec_msg_t *msg, const uint8_t *buf, size_t len,
                             const duet_codec_limits_t *lim)
{
    duet_err_t err;
    size_t off = 0;

    memset(msg, 0, sizeof *msg);
    err = duet_codec_check(buf, len, lim);
    if (err != DUET_OK) {
        return err;
    }
    if (!msgpack_zone_init(&msg->zone, 2048)) {
        return DUET_ENOMEM;
    }
    msg->live = true;
    msgpack_unpack_return r =
        msgpack_unpack((const char *)buf, len, &off, &msg->zone, &msg->root);
    if (r != MSGPACK_UNPACK_SUCCESS || off != len) {
        duet_codec_msg_dispose(msg);
        return r == MSGPACK_UNPACK_NOMEM_ERROR ? DUET_ENOMEM : DUET_EDECODE;
    }
    return DUET_OK;
}

void duet_codec_msg_dispose(duet_codec_msg_t *msg)
{
    if (msg->live) {
        msgpack_zone_destroy(&msg->zone);
    }
    memset(msg, 0, sizeof *msg);
}

/* ---- typed reads ---------------------------------------------------------------------- */

bool duet_utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c == 0) {
            return false;
        }
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1, cp = c & 0x1fu;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2, cp = c & 0x0fu;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3, cp = c & 0x07u;
        } else {
            return false; /* continuation byte, overlong lead 0xc0/0xc1, or > 0xf4 */
        }
        if (len - i - 1 < need) {
            return false;
        }
        for (size_t k = 1; k <= need; k++) {
            uint8_t cc = s[i + k];
            if ((cc & 0xc0u) != 0x80u) {
                return false;
            }
            cp = (cp << 6) | (cc & 0x3fu);
        }
        if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff)) {
            return false; /* overlong, out of range, or a surrogate */
        }
        i += need + 1;
    }
    return true;
}

static bool type_matches(const msgpack_object *o, duet_codec_type_t t)
{
    switch (t) {
    case DUET_CODEC_UINT:
        return o->type == MSGPACK_OBJECT_POSITIVE_INTEGER;
    case DUET_CODEC_INT:
        return o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
               o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER;
    case DUET_CODEC_BOOL:
        return o->type == MSGPACK_OBJECT_BOOLEAN;
    case DUET_CODEC_STR:
        return o->type == MSGPACK_OBJECT_STR &&
               duet_utf8_valid((const uint8_t *)o->via.str.ptr, o->via.str.size);
    case DUET_CODEC_BIN:
        return o->type == MSGPACK_OBJECT_BIN;
    case DUET_CODEC_ARRAY:
        return o->type == MSGPACK_OBJECT_ARRAY;
    case DUET_CODEC_MAP:
        return o->type == MSGPACK_OBJECT_MAP;
    case DUET_CODEC_NIL:
        return o->type == MSGPACK_OBJECT_NIL;
    case DUET_CODEC_ANY:
        return true;
    }
    return false;
}

duet_err_t duet_codec_map(const msgpack_object *obj, const duet_codec_field_t *fields, size_t n,
                          const msgpack_object **out)
{
    for (size_t i = 0; i < n; i++) {
        out[i] = NULL;
    }
    if (obj->type != MSGPACK_OBJECT_MAP) {
        return DUET_ETYPE;
    }
    for (uint32_t k = 0; k < obj->via.map.size; k++) {
        const msgpack_object_kv *kv = &obj->via.map.ptr[k];
        if (kv->key.type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
            goto unknown;
        }
        size_t i;
        for (i = 0; i < n; i++) {
            if (fields[i].key == kv->key.via.u64) {
                break;
            }
        }
        if (i == n || out[i] != NULL) {
            goto unknown; /* not ours, or repeated */
        }
        if (!type_matches(&kv->val, fields[i].type)) {
            duet_err_t e = (fields[i].type == DUET_CODEC_STR && kv->val.type == MSGPACK_OBJECT_STR)
                               ? DUET_EUTF8
                               : DUET_ETYPE;
            for (size_t j = 0; j < n; j++) {
                out[j] = NULL;
            }
            return e;
        }
        out[i] = &kv->val;
    }
    for (size_t i = 0; i < n; i++) {
        if (fields[i].required && out[i] == NULL) {
            for (size_t j = 0; j < n; j++) {
                out[j] = NULL;
            }
            return DUET_EMISSING;
        }
    }
    return DUET_OK;
unknown:
    for (size_t j = 0; j < n; j++) {
        out[j] = NULL;
    }
    return DUET_EUNKNOWNKEY;
}

duet_err_t duet_codec_get_uint(const msgpack_object *obj, uint64_t min, uint64_t max,
                               uint64_t *out)
{
    *out = 0;
    if (obj == NULL || obj->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
        return DUET_ETYPE;
    }
    if (obj->via.u64 < min || obj->via.u64 > max) {
        return DUET_ERANGE;
    }
    *out = obj->via.u64;
    return DUET_OK;
}

duet_err_t duet_codec_get_int(const msgpack_object *obj, int64_t min, int64_t max, int64_t *out)
{
    *out = 0;
    if (obj == NULL) {
        return DUET_ETYPE;
    }
    int64_t v;
    if (obj->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (obj->via.u64 > (uint64_t)INT64_MAX) {
            return DUET_ERANGE;
        }
        v = (int64_t)obj->via.u64;
    } else if (obj->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        v = obj->via.i64;
    } else {
        return DUET_ETYPE;
    }
    if (v < min || v > max) {
        return DUET_ERANGE;
    }
    *out = v;
    return DUET_OK;
}

duet_err_t duet_codec_get_bool(const msgpack_object *obj, bool *out)
{
    *out = false;
    if (obj == NULL || obj->type != MSGPACK_OBJECT_BOOLEAN) {
        return DUET_ETYPE;
    }
    *out = obj->via.boolean;
    return DUET_OK;
}

duet_err_t duet_codec_get_bin(const msgpack_object *obj, size_t min, size_t max,
                              const uint8_t **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (obj == NULL || obj->type != MSGPACK_OBJECT_BIN) {
        return DUET_ETYPE;
    }
    if (obj->via.bin.size < min || obj->via.bin.size > max) {
        return DUET_ERANGE;
    }
    *out = (const uint8_t *)obj->via.bin.ptr;
    *out_len = obj->via.bin.size;
    return DUET_OK;
}

duet_err_t duet_codec_get_fixed(const msgpack_object *obj, uint8_t *out, size_t n)
{
    const uint8_t *p;
    size_t len;
    memset(out, 0, n);
    duet_err_t err = duet_codec_get_bin(obj, n, n, &p, &len);
    if (err != DUET_OK) {
        return err;
    }
    if (n > 0) {
        memcpy(out, p, n);
    }
    return DUET_OK;
}

duet_err_t duet_codec_get_str(const msgpack_object *obj, size_t min, size_t max, const char **out,
                              size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (obj == NULL || obj->type != MSGPACK_OBJECT_STR) {
        return DUET_ETYPE;
    }
    if (obj->via.str.size < min || obj->via.str.size > max) {
        return DUET_ERANGE;
    }
    if (!duet_utf8_valid((const uint8_t *)obj->via.str.ptr, obj->via.str.size)) {
        return DUET_EUTF8;
    }
    *out = obj->via.str.ptr;
    *out_len = obj->via.str.size;
    return DUET_OK;
}

/* ---- encoding ------------------------------------------------------------------------- */

static int enc_write(void *data, const char *p, size_t n)
{
    duet_codec_enc_t *enc = data;
    if (enc->err != DUET_OK) {
        return -1;
    }
    if (n == 0) {
        return 0;
    }
    if (n > enc->cap - enc->len) {
        enc->err = DUET_ETOOBIG;
        return -1;
    }
    if (enc->len + n > enc->alloc) {
        size_t want = enc->alloc ? enc->alloc : 256;
        while (want < enc->len + n) {
            want *= 2;
        }
        if (want > enc->cap) {
            want = enc->cap;
        }
        uint8_t *nb = malloc(want);
        if (nb == NULL) {
            enc->err = DUET_ENOMEM;
            return -1;
        }
        if (enc->len > 0) {
            memcpy(nb, enc->buf, enc->len);
        }
        if (enc->buf != NULL) {
            /* Frames may carry key material: wipe the old copy before freeing it. */
            sodium_memzero(enc->buf, enc->alloc);
            free(enc->buf);
        }
        enc->buf = nb;
        enc->alloc = want;
    }
    memcpy(enc->buf + enc->len, p, n);
    enc->len += n;
    return 0;
}

void duet_codec_enc_init(duet_codec_enc_t *enc, size_t cap)
{
    memset(enc, 0, sizeof *enc);
    enc->cap = cap;
    msgpack_packer_init(&enc->pk, enc, enc_write);
}

void duet_codec_enc_reset(duet_codec_enc_t *enc)
{
    if (enc->buf != NULL) {
        sodium_memzero(enc->buf, enc->len);
    }
    enc->len = 0;
    enc->err = DUET_OK;
}

void duet_codec_enc_dispose(duet_codec_enc_t *enc)
{
    if (enc->buf != NULL) {
        sodium_memzero(enc->buf, enc->alloc);
        free(enc->buf);
    }
    memset(enc, 0, sizeof *enc);
}

void duet_codec_put_map(duet_codec_enc_t *enc, uint32_t n)
{
    (void)msgpack_pack_map(&enc->pk, n);
}

void duet_codec_put_array(duet_codec_enc_t *enc, uint32_t n)
{
    (void)msgpack_pack_array(&enc->pk, n);
}

void duet_codec_put_key(duet_codec_enc_t *enc, uint32_t key)
{
    (void)msgpack_pack_uint32(&enc->pk, key);
}

void duet_codec_put_uint(duet_codec_enc_t *enc, uint64_t v)
{
    (void)msgpack_pack_uint64(&enc->pk, v);
}

void duet_codec_put_int(duet_codec_enc_t *enc, int64_t v)
{
    (void)msgpack_pack_int64(&enc->pk, v);
}

void duet_codec_put_bool(duet_codec_enc_t *enc, bool v)
{
    (void)(v ? msgpack_pack_true(&enc->pk) : msgpack_pack_false(&enc->pk));
}

void duet_codec_put_nil(duet_codec_enc_t *enc)
{
    (void)msgpack_pack_nil(&enc->pk);
}

void duet_codec_put_bin(duet_codec_enc_t *enc, const uint8_t *p, size_t n)
{
    if (n > UINT32_MAX) {
        enc->err = DUET_ETOOBIG;
        return;
    }
    (void)msgpack_pack_bin(&enc->pk, n);
    (void)msgpack_pack_bin_body(&enc->pk, p, n);
}

void duet_codec_put_str(duet_codec_enc_t *enc, const char *s, size_t n)
{
    if (n > UINT32_MAX) {
        enc->err = DUET_ETOOBIG;
        return;
    }
    (void)msgpack_pack_str(&enc->pk, n);
    (void)msgpack_pack_str_body(&enc->pk, s, n);
}

duet_err_t duet_codec_enc_finish(duet_codec_enc_t *enc, const uint8_t **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (enc->err != DUET_OK) {
        return enc->err;
    }
    *out = enc->buf;
    *out_len = enc->len;
    return DUET_OK;
}
