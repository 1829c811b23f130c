/*
 * duet — what kind of audio a file is, and how long it plays.
 *
 * A voice note's reference carries a mime type and a duration (core/blob.h); this module
 * finds both for a file the user picked. Five kinds are accepted:
 *
 *     WAV (RIFF/WAVE)   "audio/wav"
 *     Ogg Opus          "audio/ogg; codecs=opus"
 *     Ogg Vorbis        "audio/ogg; codecs=vorbis"
 *     FLAC              "audio/flac"
 *     MPEG audio (MP3)  "audio/mpeg"
 *
 * Everything else is DUET_ENOTAUDIO, even what libsndfile could read (AIFF, AU...), so that
 * the partner's device knows what it gets. docs/audio.md says exactly what is checked how.
 *
 * Conventions of this module:
 *  - The kind is decided twice and both must agree: our own check of the first bytes (the
 *    magic, the first Ogg packet, two consecutive MPEG frame headers; never the file name),
 *    and libsndfile 1.2 opening the file by descriptor (so it cannot fall back on the
 *    extension either). The file must also decode: libsndfile must return some samples.
 *  - The duration is frames / sample rate, rounded to the nearest millisecond, with frames
 *    from libsndfile, except for MPEG audio, where libsndfile's count is an estimate unless
 *    the file has a Xing/Info/VBRI frame: there we count the frames ourselves (and take the
 *    smaller of the two counts when such a frame exists). When libsndfile cannot tell the
 *    length (a FLAC stream without a sample count), the file is decoded to count.
 *  - Reads only the file at the path it is given; memory is constant in the file size.
 *    For MPEG audio, the file descriptor 2 points at /dev/null while libsndfile works, as
 *    libsndfile 1.2 lets mpg123 print warnings there; it is restored before return (so do not
 *    call this while another thread writes to stderr).
 *  - Errors: DUET_EEMPTY for an empty (0-byte) file; DUET_ENOTAUDIO for anything that is not
 *    one of the five kinds, has no samples (a header alone), is damaged before its first
 *    samples, is not a regular file, or claims more than DUET_AUDIO_MAX_DURATION_MS;
 *    DUET_ENOENT, DUET_EPERM, DUET_EIO when the file cannot be read.
 */
#ifndef DUET_AUDIO_H
#define DUET_AUDIO_H

#include <stdint.h>

#include "err.h"

#define DUET_AUDIO_MIME_MAX         64u                       /* bytes, without the NUL */
#define DUET_AUDIO_MAX_DURATION_MS  (24u * 60u * 60u * 1000u) /* one day: anything longer lies */
#define DUET_AUDIO_MAX_RATE         768000u                   /* samples per second */
#define DUET_AUDIO_MAX_CHANNELS     255u
#define DUET_AUDIO_MPEG_SYNC_WINDOW 65536u /* bytes searched for the first MPEG frame */
#define DUET_AUDIO_MAX_ID3V2        8u     /* ID3v2 tags skipped at the start of a file */

typedef enum duet_audio_format {
    DUET_AUDIO_NONE = 0,
    DUET_AUDIO_WAV = 1,
    DUET_AUDIO_OPUS = 2,
    DUET_AUDIO_VORBIS = 3,
    DUET_AUDIO_FLAC = 4,
    DUET_AUDIO_MPEG = 5,
} duet_audio_format_t;

typedef struct duet_audio_info {
    duet_audio_format_t format;
    char mime[DUET_AUDIO_MIME_MAX + 1]; /* NUL-terminated, one of the five above */
    uint32_t duration_ms;               /* rounded to the nearest millisecond */
    uint32_t sample_rate;               /* as decoded (Opus: libopus's output rate) */
    uint32_t channels;
} duet_audio_info_t;

/*
 * Detect the kind and duration of the audio file at path. On success *info is filled; on
 * error it is zeroed (format DUET_AUDIO_NONE, mime ""). Errors as in the preamble.
 */
duet_err_t duet_audio_detect(const char *path, duet_audio_info_t *info) DUET_MUST_CHECK;

/* The mime type of a format ("audio/flac"); "" for DUET_AUDIO_NONE or an unknown value. */
const char *duet_audio_mime(duet_audio_format_t format);

#endif /* DUET_AUDIO_H */
