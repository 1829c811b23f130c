/*
 * Fuzz target for net/frame: the link's framing and record reassembly, without sockets.
 *
 * Input: one selector byte, then a byte stream as it would come off a socket. The low two
 * bits of the selector pick what reads the stream; bits 4..6 pick the size of the pieces it
 * is fed in (1 byte to everything at once), since a frame or a prefix cut across two reads
 * is where a framer goes wrong:
 *   0  plaintexts: frames whose bodies are flags ‖ chunk, reassembled (what follows
 *      decryption on a secure link);
 *   1  sealed: frames opened with a fixed transport key (nonces from 0), then reassembled;
 *   2  raw: frames only, with the handshake limit (1024) when bit 2 is set, else 65535;
 *   3  round trip: the stream is a record (cut to DUET_FRAME_MAX_RECORD); it is sealed, fed
 *      back through a reader and opened, and must come out identical.
 * Invariants checked: no record over DUET_FRAME_MAX_RECORD, no body over the reader's
 * maximum, consumption always progresses, and the round trip is exact.
 *
 * The seed corpus (tests/fuzz/corpus/link/) holds streams made by this code, regenerated
 * with
 *
 *   cc -std=c11 -D_GNU_SOURCE -DFUZZ_LINK_GEN -Icore -Inet tests/fuzz/fuzz_link.c net/frame.c \
 *      core/noise.c core/err.c -lsodium -o /tmp/link-seeds && /tmp/link-seeds
 * tests/fuzz/corpus/link
 */
#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "noise.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_KEY_BYTE 0x42

static const size_t fz_steps[8] = {1, 2, 3, 7, 64, 1000, 65536, SIZE_MAX};

static void fz_cs(duet_noise_cs_t *cs)
{
    memset(cs, 0, sizeof *cs);
    memset(cs->k, FZ_KEY_BYTE, sizeof cs->k);
    cs->has_key = true;
}

/* Feed in[0..len) in pieces of step bytes; mode 0, 1 or 2. Stops at the first error. */
static void fz_stream(int mode, size_t max, uint8_t *in, size_t len, size_t step)
{
    duet_frame_reader_t *rd = malloc(sizeof *rd);
    if (rd == NULL) {
        return;
    }
    duet_frame_reader_init(rd, max);
    duet_frame_reasm_t ra;
    duet_frame_reasm_init(&ra, DUET_FRAME_MAX_RECORD);
    duet_noise_cs_t cs;
    fz_cs(&cs);
    size_t off = 0;
    while (off < len) {
        size_t n = len - off < step ? len - off : step;
        size_t used;
        uint8_t *body;
        size_t blen;
        if (duet_frame_read(rd, in + off, n, &used, &body, &blen) != DUET_OK) {
            break;
        }
        if (used == 0 || used > n || (body != NULL && (blen == 0 || blen > max))) {
            abort();
        }
        off += used;
        if (body == NULL || mode == 2) {
            continue;
        }
        bool complete;
        const uint8_t *rec;
        size_t rlen;
        duet_err_t err = mode == 0 ? duet_frame_reasm_push(&ra, body, blen, &complete, &rec, &rlen)
                                   : duet_frame_open(&cs, body, blen, &ra, &complete, &rec, &rlen);
        if (err != DUET_OK) {
            break;
        }
        if (complete && rlen > DUET_FRAME_MAX_RECORD) {
            abort();
        }
        if (complete) {
            duet_frame_reasm_clear(&ra);
        }
    }
    duet_frame_reasm_dispose(&ra);
    duet_frame_reader_dispose(rd);
    free(rd);
}

/* Seal rec, read it back in pieces of step bytes, and compare. */
static void fz_roundtrip(const uint8_t *rec, size_t len, size_t step)
{
    if (len > DUET_FRAME_MAX_RECORD) {
        len = DUET_FRAME_MAX_RECORD;
    }
    size_t cap = duet_frame_sealed_size(len);
    uint8_t *wire = malloc(cap);
    duet_frame_reader_t *rd = malloc(sizeof *rd);
    if (wire == NULL || rd == NULL) {
        free(wire);
        free(rd);
        return;
    }
    duet_noise_cs_t tx, rx;
    fz_cs(&tx);
    fz_cs(&rx);
    size_t n;
    if (duet_frame_seal(&tx, rec, len, wire, cap, &n) != DUET_OK || n != cap) {
        abort();
    }
    duet_frame_reader_init(rd, DUET_FRAME_MAX);
    duet_frame_reasm_t ra;
    duet_frame_reasm_init(&ra, DUET_FRAME_MAX_RECORD);
    size_t off = 0, records = 0;
    while (off < n) {
        size_t piece = n - off < step ? n - off : step;
        size_t used;
        uint8_t *body;
        size_t blen;
        if (duet_frame_read(rd, wire + off, piece, &used, &body, &blen) != DUET_OK) {
            abort();
        }
        off += used;
        if (body == NULL) {
            continue;
        }
        bool complete;
        const uint8_t *out;
        size_t olen;
        if (duet_frame_open(&rx, body, blen, &ra, &complete, &out, &olen) != DUET_OK) {
            abort();
        }
        if (complete) {
            if (olen != len || (len > 0 && memcmp(out, rec, len) != 0)) {
                abort();
            }
            records++;
        }
    }
    if (records != 1 || !duet_frame_reader_idle(rd) || !duet_frame_reasm_idle(&ra)) {
        abort();
    }
    duet_frame_reasm_dispose(&ra);
    free(rd);
    free(wire);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    uint8_t sel = data[0];
    size_t step = fz_steps[(sel >> 4) & 7];
    /* A private, writable copy: the reader's callers decrypt in place. */
    size_t len = size - 1;
    uint8_t *in = malloc(len ? len : 1);
    if (in == NULL) {
        return 0;
    }
    memcpy(in, data + 1, len);
    switch (sel & 3) {
    case 0:
        fz_stream(0, DUET_FRAME_MAX, in, len, step);
        break;
    case 1:
        fz_stream(1, DUET_FRAME_MAX, in, len, step);
        break;
    case 2:
        fz_stream(2, (sel & 4) ? 1024 : DUET_FRAME_MAX, in, len, step);
        break;
    default:
        fz_roundtrip(in, len, step);
        break;
    }
    free(in);
    return 0;
}

#ifdef FUZZ_LINK_GEN
#include <stdio.h>

/* Write sel ‖ body[0..len) to dir/name. */
static void gen_write(const char *dir, const char *name, uint8_t sel, const uint8_t *body,
                      size_t len)
{
    char path[4096];
    (void)snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(&sel, 1, 1, f) != 1 || (len && fwrite(body, 1, len, f) != len)) {
        abort();
    }
    fclose(f);
}

/* Append one frame with body b[0..n) to out at *off. */
static void gen_frame(uint8_t *out, size_t *off, const uint8_t *b, size_t n)
{
    duet_frame_put_header(out + *off, n);
    memcpy(out + *off + 2, b, n);
    *off += 2 + n;
}

int main(int argc, char **argv)
{
    if (argc != 2 || sodium_init() < 0) {
        return 2;
    }
    const char *dir = argv[1];
    size_t cap = 4 * duet_frame_sealed_size(DUET_FRAME_MAX_RECORD);
    uint8_t *out = malloc(cap);
    uint8_t *rec = malloc(DUET_FRAME_MAX_RECORD);
    uint8_t *chunk = malloc(1 + DUET_FRAME_MAX_CHUNK);
    for (size_t i = 0; i < DUET_FRAME_MAX_RECORD; i++) {
        rec[i] = (uint8_t)(i * 7 + 1);
    }
    size_t off = 0;

    /* Plaintexts: a keepalive, a one-chunk record, a record in three small chunks. */
    uint8_t ka = 0;
    gen_frame(out, &off, &ka, 1);
    chunk[0] = 0;
    memcpy(chunk + 1, "hello", 5);
    gen_frame(out, &off, chunk, 6);
    for (int i = 0; i < 3; i++) {
        chunk[0] = i < 2 ? DUET_FRAME_FLAG_MORE : 0;
        memcpy(chunk + 1, rec + i * 10, 10);
        gen_frame(out, &off, chunk, 11);
    }
    gen_write(dir, "plain-small", 0x00 | (7 << 4), out, off);
    gen_write(dir, "plain-small-bytewise", 0x00 | (0 << 4), out, off);
    /* Plaintexts: one record of two full chunks and a short one. */
    off = 0;
    for (int i = 0; i < 3; i++) {
        size_t n = i < 2 ? DUET_FRAME_MAX_CHUNK : 100;
        chunk[0] = i < 2 ? DUET_FRAME_FLAG_MORE : 0;
        memcpy(chunk + 1, rec, n);
        gen_frame(out, &off, chunk, 1 + n);
    }
    gen_write(dir, "plain-multichunk", 0x00 | (5 << 4), out, off);

    /* Sealed: a keepalive then records of 5 and 70000 bytes, as a link sends them. */
    duet_noise_cs_t tx;
    fz_cs(&tx);
    size_t n;
    off = 0;
    static const size_t sealed_sizes[] = {0, 5, 70000};
    for (size_t i = 0; i < 3; i++) {
        if (duet_frame_seal(&tx, rec, sealed_sizes[i], out + off, cap - off, &n) != DUET_OK) {
            abort();
        }
        off += n;
    }
    gen_write(dir, "sealed-session", 0x01 | (6 << 4), out, off);
    gen_write(dir, "sealed-session-pieces", 0x01 | (3 << 4), out, off);

    /* Raw: three frames; and one over the handshake limit. */
    off = 0;
    gen_frame(out, &off, (const uint8_t *)"pairing", 7);
    gen_frame(out, &off, rec, 1000);
    gen_frame(out, &off, rec, 1);
    gen_write(dir, "raw-frames", 0x02 | (4 << 4), out, off);
    gen_write(dir, "raw-handshake-limit", 0x06 | (7 << 4), out, off);
    uint8_t zero[] = {0, 0};
    gen_write(dir, "raw-zero-length", 0x02, zero, sizeof zero);

    /* Round trips: empty, small, just over one chunk. */
    gen_write(dir, "roundtrip-empty", 0x03, NULL, 0);
    gen_write(dir, "roundtrip-small", 0x03 | (1 << 4), rec, 33);
    gen_write(dir, "roundtrip-twochunks", 0x03 | (7 << 4), rec, DUET_FRAME_MAX_CHUNK + 1);

    free(chunk);
    free(rec);
    free(out);
    return 0;
}
#endif
