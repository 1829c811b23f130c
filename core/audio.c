/* see audio.h */
#include "audio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sndfile.h>

#define WINDOW_BYTES          65536u /* read-ahead for the header checks and the MPEG frame walk */
#define DECODE_FRAMES_BUF     4096u  /* floats per libsndfile read */
#define MPEG_L3_DECODER_DELAY 529u   /* samples: the Layer III synthesis filter bank's delay */

static const char *const mimes[] = {
    [DUET_AUDIO_NONE] = "",
    [DUET_AUDIO_WAV] = "audio/wav",
    [DUET_AUDIO_OPUS] = "audio/ogg; codecs=opus",
    [DUET_AUDIO_VORBIS] = "audio/ogg; codecs=vorbis",
    [DUET_AUDIO_FLAC] = "audio/flac",
    [DUET_AUDIO_MPEG] = "audio/mpeg",
};

const char *duet_audio_mime(duet_audio_format_t format)
{
    if ((unsigned)format >= sizeof mimes / sizeof mimes[0]) {
        return "";
    }
    return mimes[format];
}

static duet_err_t err_from_errno(int e)
{
    switch (e) {
    case ENOENT:
    case ENOTDIR:
        return DUET_ENOENT;
    case EACCES:
    case EPERM:
        return DUET_EPERM;
    case ENOMEM:
        return DUET_ENOMEM;
    case ENAMETOOLONG:
        return DUET_EINVAL;
    default:
        return DUET_EIO;
    }
}

/* ---- a read-ahead window over the file ----------------------------------------------- */

typedef struct window {
    int fd;
    uint64_t size; /* of the file */
    uint64_t base; /* file offset of buf[0] */
    size_t len;    /* valid bytes in buf */
    uint8_t buf[WINDOW_BYTES];
} window_t;

/* Point *p at the n (<= 64) bytes at off. *p is NULL when the file has fewer. */
static duet_err_t win_get(window_t *w, uint64_t off, size_t n, const uint8_t **p)
{
    *p = NULL;
    if (off > w->size || n > w->size - off) {
        return DUET_OK;
    }
    if (off < w->base || off + n > w->base + w->len) {
        w->base = off;
        w->len = 0;
        while (w->len < sizeof w->buf) {
            ssize_t got =
                pread(w->fd, w->buf + w->len, sizeof w->buf - w->len, (off_t)(off + w->len));
            if (got < 0 && errno == EINTR) {
                continue;
            }
            if (got < 0) {
                return err_from_errno(errno);
            }
            if (got == 0) {
                break;
            }
            w->len += (size_t)got;
        }
        if (w->len < n) {
            return DUET_OK; /* the file shrank */
        }
    }
    *p = w->buf + (off - w->base);
    return DUET_OK;
}

/* ---- MPEG audio frame headers (ISO 11172-3, 13818-3, and the MPEG 2.5 extension) ----- */

typedef struct mpeg_frame {
    unsigned version; /* header bits: 0 = MPEG 2.5, 2 = MPEG 2, 3 = MPEG 1 */
    unsigned layer;   /* 1, 2, 3 */
    uint32_t rate;    /* Hz */
    uint32_t bytes;   /* the whole frame, header included */
    uint32_t samples; /* per channel */
    bool mono;
} mpeg_frame_t;

/* kbps by [MPEG 1 ? 0 : 1][layer - 1][bitrate index]; index 0 (free format) and 15 are
 * refused before the lookup. */
static const uint16_t mpeg_kbps[2][3][15] = {
    {{0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448},
     {0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384},
     {0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320}},
    {{0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256},
     {0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160},
     {0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160}},
};
static const uint32_t mpeg1_rates[3] = {44100, 48000, 32000};

static bool mpeg_parse(const uint8_t h[4], mpeg_frame_t *f)
{
    if (h[0] != 0xff || (h[1] & 0xe0) != 0xe0) {
        return false;
    }
    unsigned version = (h[1] >> 3) & 3, layer_bits = (h[1] >> 1) & 3;
    unsigned bitrate = h[2] >> 4, rate = (h[2] >> 2) & 3, padding = (h[2] >> 1) & 1;
    if (version == 1 || layer_bits == 0 || bitrate == 0 || bitrate == 15 || rate == 3 ||
        (h[3] & 3) == 2) {
        return false; /* reserved values, or free format (which cannot be walked) */
    }
    f->version = version;
    f->layer = 4 - layer_bits;
    f->rate = mpeg1_rates[rate] >> (version == 3 ? 0 : version == 2 ? 1 : 2);
    f->mono = (h[3] >> 6) == 3;
    uint32_t bps = 1000u * mpeg_kbps[version == 3 ? 0 : 1][f->layer - 1][bitrate];
    if (f->layer == 1) {
        f->samples = 384;
        f->bytes = (12 * bps / f->rate + padding) * 4;
    } else if (f->layer == 2 || version == 3) {
        f->samples = 1152;
        f->bytes = 144 * bps / f->rate + padding;
    } else {
        f->samples = 576; /* layer III, MPEG 2 and 2.5 */
        f->bytes = 72 * bps / f->rate + padding;
    }
    return f->bytes >= 4;
}

static bool mpeg_same_stream(const mpeg_frame_t *a, const mpeg_frame_t *b)
{
    return a->version == b->version && a->layer == b->layer && a->rate == b->rate;
}

/* The first frame header at or after start, within the sync window, that is followed by a
 * second header of the same stream (or ends the file exactly). */
static duet_err_t mpeg_find_first(window_t *w, uint64_t start, uint64_t *first, mpeg_frame_t *f)
{
    for (uint64_t off = start; off - start < DUET_AUDIO_MPEG_SYNC_WINDOW; off++) {
        const uint8_t *h;
        mpeg_frame_t a, b;
        duet_err_t err = win_get(w, off, 4, &h);
        if (err != DUET_OK) {
            return err;
        }
        if (h == NULL) {
            break;
        }
        if (!mpeg_parse(h, &a)) {
            continue;
        }
        if (off + a.bytes == w->size) {
            *first = off;
            *f = a;
            return DUET_OK;
        }
        if ((err = win_get(w, off + a.bytes, 4, &h)) != DUET_OK) {
            return err;
        }
        if (h != NULL && mpeg_parse(h, &b) && mpeg_same_stream(&a, &b)) {
            *first = off;
            *f = a;
            return DUET_OK;
        }
    }
    return DUET_ENOTAUDIO;
}

/* Whether the first frame is a Xing/Info or VBRI header frame (no audio; mpg123 then knows
 * the exact length and the encoder delay and padding). */
static duet_err_t mpeg_has_length_tag(window_t *w, uint64_t off, const mpeg_frame_t *f,
                                      bool *tagged)
{
    *tagged = false;
    if (f->layer != 3 || f->bytes < 40) {
        return DUET_OK;
    }
    /* Xing/Info follows the side information; VBRI is always 32 bytes after the header. */
    unsigned side = f->version == 3 ? (f->mono ? 17 : 32) : (f->mono ? 9 : 17);
    const uint8_t *p;
    duet_err_t err = win_get(w, off, 40, &p);
    if (err != DUET_OK || p == NULL) {
        return err;
    }
    *tagged = memcmp(p + 4 + side, "Xing", 4) == 0 || memcmp(p + 4 + side, "Info", 4) == 0 ||
              memcmp(p + 36, "VBRI", 4) == 0;
    return DUET_OK;
}

typedef struct mpeg_walk {
    uint64_t samples; /* in the audio frames, per channel */
    uint32_t rate;
    bool tagged;
} mpeg_walk_t;

/* Walk the frames from the first to the first header that is not one of the same stream,
 * or a frame cut by the end of the file; count the samples of the audio frames. */
static duet_err_t mpeg_walk(window_t *w, uint64_t start, mpeg_walk_t *out)
{
    uint64_t off;
    mpeg_frame_t f0, f;
    duet_err_t err = mpeg_find_first(w, start, &off, &f0);
    if (err != DUET_OK || (err = mpeg_has_length_tag(w, off, &f0, &out->tagged)) != DUET_OK) {
        return err;
    }
    out->rate = f0.rate;
    out->samples = 0;
    for (bool first = true;; first = false) {
        const uint8_t *h;
        if ((err = win_get(w, off, 4, &h)) != DUET_OK) {
            return err;
        }
        if (h == NULL || !mpeg_parse(h, &f) || !mpeg_same_stream(&f0, &f) ||
            f.bytes > w->size - off) {
            break; /* end of the stream: an ID3v1/APE tag, junk, or a cut frame */
        }
        if (!(first && out->tagged)) {
            out->samples += f.samples;
        }
        off += f.bytes;
    }
    /* Without a length frame nothing says how much is encoder delay and padding, but every
     * Layer III decoder puts out MPEG_L3_DECODER_DELAY samples of filter-bank delay first;
     * they are not content (lame --decode and mpg123's gapless mode drop them too). */
    if (!out->tagged && f0.layer == 3 && out->samples > MPEG_L3_DECODER_DELAY) {
        out->samples -= MPEG_L3_DECODER_DELAY;
    }
    return out->samples > 0 ? DUET_OK : DUET_ENOTAUDIO;
}

/* ---- our own look at the first bytes ------------------------------------------------- */

/* Skip ID3v2 tags at off (MP3 files, sometimes FLAC files, start with them). */
static duet_err_t skip_id3v2(window_t *w, uint64_t *off)
{
    for (unsigned i = 0; i < DUET_AUDIO_MAX_ID3V2; i++) {
        const uint8_t *h;
        duet_err_t err = win_get(w, *off, 10, &h);
        if (err != DUET_OK) {
            return err;
        }
        if (h == NULL || memcmp(h, "ID3", 3) != 0) {
            return DUET_OK;
        }
        if (h[3] < 2 || h[3] > 4 || h[4] == 0xff || ((h[6] | h[7] | h[8] | h[9]) & 0x80) != 0) {
            return DUET_ENOTAUDIO;
        }
        uint64_t len = (uint64_t)h[6] << 21 | (uint64_t)h[7] << 14 | (uint64_t)h[8] << 7 | h[9];
        *off += 10 + len + ((h[5] & 0x10) ? 10 : 0); /* footer present */
    }
    return DUET_OK;
}

/* An Ogg stream: the first page (beginning of stream) must start an Opus or Vorbis stream. */
static duet_err_t sniff_ogg(window_t *w, duet_audio_format_t *format)
{
    const uint8_t *h, *segs, *packet;
    duet_err_t err = win_get(w, 0, 27, &h);
    if (err != DUET_OK || h == NULL) {
        return err != DUET_OK ? err : DUET_ENOTAUDIO;
    }
    if (h[4] != 0 || (h[5] & 0x02) == 0 || h[26] == 0) {
        return DUET_ENOTAUDIO; /* version 0, BOS flag, at least one segment */
    }
    size_t nsegs = h[26];
    if ((err = win_get(w, 27, nsegs, &segs)) != DUET_OK || segs == NULL) {
        return err != DUET_OK ? err : DUET_ENOTAUDIO;
    }
    if (segs[0] < 8 || (err = win_get(w, 27 + nsegs, 8, &packet)) != DUET_OK || packet == NULL) {
        return err != DUET_OK ? err : DUET_ENOTAUDIO;
    }
    if (memcmp(packet, "OpusHead", 8) == 0) {
        *format = DUET_AUDIO_OPUS;
    } else if (memcmp(packet, "\x01vorbis", 7) == 0) {
        *format = DUET_AUDIO_VORBIS;
    } else {
        return DUET_ENOTAUDIO;
    }
    return DUET_OK;
}

/* Decide the kind from the first bytes. For MPEG, *mpeg holds the frame walk. */
static duet_err_t sniff(window_t *w, duet_audio_format_t *format, mpeg_walk_t *mpeg)
{
    const uint8_t *h;
    uint64_t off = 0;
    duet_err_t err = win_get(w, 0, 12, &h);
    if (err != DUET_OK) {
        return err;
    }
    if (h != NULL && memcmp(h, "RIFF", 4) == 0 && memcmp(h + 8, "WAVE", 4) == 0) {
        *format = DUET_AUDIO_WAV;
        return DUET_OK;
    }
    if (h != NULL && memcmp(h, "OggS", 4) == 0) {
        return sniff_ogg(w, format);
    }
    if ((err = skip_id3v2(w, &off)) != DUET_OK || (err = win_get(w, off, 4, &h)) != DUET_OK) {
        return err;
    }
    if (h != NULL && memcmp(h, "fLaC", 4) == 0) {
        *format = DUET_AUDIO_FLAC;
        return DUET_OK;
    }
    if ((err = mpeg_walk(w, off, mpeg)) != DUET_OK) {
        return err;
    }
    *format = DUET_AUDIO_MPEG;
    return DUET_OK;
}

/* ---- libsndfile ---------------------------------------------------------------------- */

/* Point fd 2 at /dev/null; returns the saved descriptor, or -1 when that failed (then
 * nothing changed and the chatter, if any, goes through). */
static int quiet_begin(void)
{
    fflush(stderr);
    int saved = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    if (saved < 0) {
        return -1;
    }
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (null < 0 || dup2(null, STDERR_FILENO) < 0) {
        if (null >= 0) {
            close(null);
        }
        close(saved);
        return -1;
    }
    close(null);
    return saved;
}

static void quiet_end(int saved)
{
    if (saved < 0) {
        return;
    }
    fflush(stderr);
    (void)dup2(saved, STDERR_FILENO);
    close(saved);
}

static bool sf_format_matches(int sf_format, duet_audio_format_t format)
{
    int major = sf_format & SF_FORMAT_TYPEMASK, sub = sf_format & SF_FORMAT_SUBMASK;
    switch (format) {
    case DUET_AUDIO_WAV:
        return major == SF_FORMAT_WAV || major == SF_FORMAT_WAVEX;
    case DUET_AUDIO_OPUS:
        return major == SF_FORMAT_OGG && sub == SF_FORMAT_OPUS;
    case DUET_AUDIO_VORBIS:
        return major == SF_FORMAT_OGG && sub == SF_FORMAT_VORBIS;
    case DUET_AUDIO_FLAC:
        return major == SF_FORMAT_FLAC;
    case DUET_AUDIO_MPEG:
        return major == SF_FORMAT_MPEG;
    default:
        return false;
    }
}

typedef struct sf_result {
    uint64_t frames;
    uint32_t rate;
    uint32_t channels;
} sf_result_t;

/* Decode everything left and add the frames to *frames; stop past max_frames. */
static void sf_count_rest(SNDFILE *sf, float *buf, sf_count_t per_read, uint64_t max_frames,
                          uint64_t *frames)
{
    sf_count_t n;
    while (*frames <= max_frames && (n = sf_readf_float(sf, buf, per_read)) > 0) {
        *frames += (uint64_t)n;
    }
}

/* Open fd with libsndfile (by descriptor: no file name to guess from), check that it is the
 * kind we sniffed and that it decodes, and get its length. */
static duet_err_t sf_probe(int fd, duet_audio_format_t format, sf_result_t *res)
{
    SF_INFO si;
    float buf[DECODE_FRAMES_BUF];
    memset(&si, 0, sizeof si);
    if (lseek(fd, 0, SEEK_SET) != 0) {
        return err_from_errno(errno);
    }
    SNDFILE *sf = sf_open_fd(fd, SFM_READ, &si, SF_FALSE);
    if (sf == NULL) {
        return DUET_ENOTAUDIO;
    }
    duet_err_t err = DUET_OK;
    if (!sf_format_matches(si.format, format) || si.samplerate <= 0 ||
        (uint32_t)si.samplerate > DUET_AUDIO_MAX_RATE || si.channels <= 0 ||
        (uint32_t)si.channels > DUET_AUDIO_MAX_CHANNELS) {
        err = DUET_ENOTAUDIO;
        goto cleanup;
    }
    res->rate = (uint32_t)si.samplerate;
    res->channels = (uint32_t)si.channels;
    /* It must decode: a header alone (or a header over garbage) is not a voice note. */
    sf_count_t per_read = (sf_count_t)(DECODE_FRAMES_BUF / res->channels);
    sf_count_t n = sf_readf_float(sf, buf, per_read);
    if (n <= 0) {
        err = DUET_ENOTAUDIO;
        goto cleanup;
    }
    uint64_t max_frames = (uint64_t)DUET_AUDIO_MAX_DURATION_MS * res->rate / 1000;
    if (si.frames > 0 && si.frames != SF_COUNT_MAX) {
        res->frames = (uint64_t)si.frames;
    } else {
        /* libsndfile cannot tell (a FLAC stream without a sample count): decode to count. */
        res->frames = (uint64_t)n;
        sf_count_rest(sf, buf, per_read, max_frames, &res->frames);
    }

cleanup:
    sf_close(sf);
    return err;
}

/* ---- putting it together ------------------------------------------------------------- */

static duet_err_t to_ms(uint64_t frames, uint32_t rate, uint32_t *ms)
{
    if (frames == 0 || frames > (uint64_t)DUET_AUDIO_MAX_DURATION_MS * rate / 1000) {
        return DUET_ENOTAUDIO;
    }
    *ms = (uint32_t)((frames * 1000 + rate / 2) / rate);
    return DUET_OK;
}

/* The number of frames to believe, from libsndfile's answer and, for MPEG, our walk. */
static duet_err_t choose_frames(duet_audio_format_t format, const sf_result_t *sf,
                                const mpeg_walk_t *walk, uint64_t *frames)
{
    *frames = sf->frames;
    if (format != DUET_AUDIO_MPEG) {
        return DUET_OK;
    }
    if (walk->rate != sf->rate) {
        return DUET_ENOTAUDIO;
    }
    /* Without a length frame, mpg123's count is a guess from the first bitrate; with one, it
     * is exact (gapless) unless the file was cut short, which the walk sees. */
    if (!walk->tagged || walk->samples < *frames) {
        *frames = walk->samples;
    }
    return DUET_OK;
}

duet_err_t duet_audio_detect(const char *path, duet_audio_info_t *info)
{
    if (path == NULL || info == NULL) {
        abort();
    }
    memset(info, 0, sizeof *info);
    struct stat st;
    window_t *w = NULL;
    duet_audio_format_t format = DUET_AUDIO_NONE;
    mpeg_walk_t walk = {0, 0, false};
    sf_result_t sf = {0, 0, 0};
    uint64_t frames = 0;
    uint32_t ms = 0;
    duet_err_t err = DUET_OK;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return err_from_errno(errno);
    }
    if (fstat(fd, &st) != 0) {
        err = err_from_errno(errno);
        goto cleanup;
    }
    if (!S_ISREG(st.st_mode)) {
        err = DUET_ENOTAUDIO;
        goto cleanup;
    }
    if (st.st_size == 0) {
        err = DUET_EEMPTY;
        goto cleanup;
    }
    if ((w = malloc(sizeof *w)) == NULL) {
        err = DUET_ENOMEM;
        goto cleanup;
    }
    w->fd = fd;
    w->size = (uint64_t)st.st_size;
    w->base = 0;
    w->len = 0;
    if ((err = sniff(w, &format, &walk)) != DUET_OK) {
        goto cleanup;
    }
    int saved = format == DUET_AUDIO_MPEG ? quiet_begin() : -1;
    err = sf_probe(fd, format, &sf);
    quiet_end(saved);
    if (err != DUET_OK || (err = choose_frames(format, &sf, &walk, &frames)) != DUET_OK ||
        (err = to_ms(frames, sf.rate, &ms)) != DUET_OK) {
        goto cleanup;
    }
    info->format = format;
    memcpy(info->mime, mimes[format], strlen(mimes[format]) + 1);
    info->duration_ms = ms;
    info->sample_rate = sf.rate;
    info->channels = sf.channels;

cleanup:
    free(w);
    close(fd);
    return err;
}
