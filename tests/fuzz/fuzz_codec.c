/* Fuzz target: the strict msgpack gate and the map reader on arbitrary bytes. */
#include <stddef.h>
#include <stdint.h>

#include "codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    duet_codec_msg_t msg;
    if (duet_codec_decode(&msg, data, size, &duet_codec_default_limits) != DUET_OK) {
        return 0;
    }
    static const duet_codec_field_t fields[] = {
        {0, DUET_CODEC_UINT, true}, {1, DUET_CODEC_STR, false}, {2, DUET_CODEC_BIN, false},
        {3, DUET_CODEC_ARRAY, false}, {4, DUET_CODEC_MAP, false}, {5, DUET_CODEC_INT, false},
    };
    const msgpack_object *out[6];
    if (duet_codec_map(&msg.root, fields, 6, out) == DUET_OK) {
        uint64_t u;
        int64_t i;
        const char *s;
        const uint8_t *b;
        size_t n;
        /* gcc's warn_unused_result ignores a (void) cast: count the results instead. */
        int fails = 0;
        fails += duet_codec_get_uint(out[0], 0, UINT64_MAX, &u) != DUET_OK;
        fails += out[1] && duet_codec_get_str(out[1], 0, 100, &s, &n) != DUET_OK;
        fails += out[2] && duet_codec_get_bin(out[2], 0, 100, &b, &n) != DUET_OK;
        fails += out[5] && duet_codec_get_int(out[5], INT64_MIN, INT64_MAX, &i) != DUET_OK;
        if (fails > 4) {
            __builtin_trap();
        }
    }
    duet_codec_msg_dispose(&msg);
    return 0;
}
