/*
 * Fuzz audio detection: the input is written to a file and detected. On success the result
 * must be one of the five kinds with a sane rate, channel count and duration; on failure the
 * error must be DUET_ENOTAUDIO (or DUET_EEMPTY, for an empty input only) and the result
 * zeroed. libsndfile and the codec libraries behind it run on every input too; they are not
 * instrumented for coverage, our header checks are.
 *
 * Seeds (tests/fuzz/corpus/audio/): tiny real files made with the encoders the unit test
 * uses (sox, opusenc, lame), 0.05 to 0.3 s of a tone at low rates: WAV, FLAC, Ogg Vorbis,
 * Ogg Opus, MP3 with an Info frame, without one, and behind an ID3v2 tag.
 *
 * Known: libvorbis 1.3.7 (through libsndfile) leaks ~5.7 KB on some crafted multi-stream Ogg
 * files (docs/audio.md); the LeakSanitizer hook below ignores leaks inside libvorbis.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* libvorbis 1.3.7, through libsndfile, leaks ~5.7 KB when some broken Ogg Vorbis files fail
 * to open (upstream xiph/vorbis issue 125; docs/audio.md). LeakSanitizer asks this hook for
 * suppressions; only leaks allocated inside libvorbis are ignored. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libvorbis.so\n";
}

static void check(bool ok)
{
    if (!ok) {
        abort();
    }
}

static const char *input_path(void)
{
    static char path[300]; /* the fuzz harness's one scratch file, made on first use */
    if (path[0] == '\0') {
        char dir[256];
        const char *t = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/duet-fuzz-audio-XXXXXX", t && *t ? t : "/tmp");
        check(mkdtemp(dir) != NULL);
        snprintf(path, sizeof path, "%s/input", dir);
    }
    return path;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = input_path();
    FILE *f = fopen(path, "wb");
    check(f != NULL);
    check(size == 0 || fwrite(data, 1, size, f) == size);
    check(fclose(f) == 0);

    duet_audio_info_t info;
    duet_err_t err = duet_audio_detect(path, &info);
    if (err == DUET_OK) {
        check(info.format >= DUET_AUDIO_WAV && info.format <= DUET_AUDIO_MPEG);
        check(strcmp(info.mime, duet_audio_mime(info.format)) == 0);
        check(info.sample_rate > 0 && info.sample_rate <= DUET_AUDIO_MAX_RATE);
        check(info.channels > 0 && info.channels <= DUET_AUDIO_MAX_CHANNELS);
        check(info.duration_ms <= DUET_AUDIO_MAX_DURATION_MS);
    } else {
        check(err == DUET_ENOTAUDIO || (err == DUET_EEMPTY && size == 0));
        check(info.format == DUET_AUDIO_NONE && info.mime[0] == '\0' && info.duration_ms == 0);
    }
    return 0;
}
