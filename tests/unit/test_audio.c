/*
 * Audio detection, on files made at run time: WAVs written here (known frames and rate, so
 * the duration is exact) and, from one of them, FLAC and Ogg Vorbis by sox, Ogg Opus by
 * opusenc (opus-tools) and MP3 by lame, in the variants that take different paths through
 * audio.c. Each duration must be within 50 ms of the truth; anything that is not audio
 * (text, random bytes, a PNG, a cut header) is refused; libsndfile's MP3 chatter never
 * reaches stderr. The encoders come from tools/deps.sh; a missing one fails the test.
 */
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "audio.h"
#include "testrng.h"

#define SRC_MS       2500u /* the source recording for the encoders */
#define SRC_RATE     44100u
#define TOLERANCE_MS 50u

typedef struct fixture {
    char dir[256];
    char src[300]; /* SRC_MS of mono 16-bit WAV at SRC_RATE */
} fixture_t;

static fixture_t *g_fx;

/* libvorbis 1.3.7, through libsndfile, leaks ~5.7 KB when some broken Ogg Vorbis files fail
 * to open (upstream xiph/vorbis issue 125; docs/audio.md). LeakSanitizer asks this hook for
 * suppressions; only leaks allocated inside libvorbis are ignored. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libvorbis.so\n";
}
/* one folder of generated files for the whole run */

/* ---- helpers ------------------------------------------------------------------------- */

static void path_in(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", g_fx->dir, name);
}

static void write_bytes(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (len > 0) {
        assert_int_equal(fwrite(data, 1, len, f), len);
    }
    assert_int_equal(fclose(f), 0);
}

static uint8_t *read_bytes(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void put_le(uint8_t *p, uint32_t v, int n)
{
    for (int i = 0; i < n; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

/* A PCM WAV of `frames` frames: a 440 Hz tone with a little noise, so encoders have work. */
static void write_wav(const char *path, uint32_t rate, uint16_t channels, uint16_t bits,
                      uint32_t frames)
{
    uint32_t bps = bits / 8u, data_len = frames * channels * bps;
    uint8_t *buf = calloc(1, 44 + (size_t)data_len);
    assert_non_null(buf);
    memcpy(buf, "RIFF", 4);
    put_le(buf + 4, 36 + data_len, 4);
    memcpy(buf + 8, "WAVEfmt ", 8);
    put_le(buf + 16, 16, 4);
    put_le(buf + 20, 1, 2); /* PCM */
    put_le(buf + 22, channels, 2);
    put_le(buf + 24, rate, 4);
    put_le(buf + 28, rate * channels * bps, 4);
    put_le(buf + 32, channels * bps, 2);
    put_le(buf + 34, bits, 2);
    memcpy(buf + 36, "data", 4);
    put_le(buf + 40, data_len, 4);
    duet_testrng_t t;
    duet_rng_t rng = duet_testrng_init(&t, rate + frames);
    uint8_t *p = buf + 44;
    for (uint32_t i = 0; i < frames; i++) {
        uint8_t noise;
        duet_rng_fill(&rng, &noise, 1);
        double v = 0.5 * sin(2.0 * 3.14159265358979 * 440.0 * i / rate) + (noise - 128) / 2048.0;
        int32_t s = (int32_t)(v * (bits == 16 ? 32767 : 8388607));
        for (uint16_t c = 0; c < channels; c++, p += bps) {
            put_le(p, (uint32_t)s, (int)bps);
        }
    }
    write_bytes(path, buf, 44 + (size_t)data_len);
    free(buf);
}

/* Run an encoder command (quiet); the output file must then exist and not be empty. */
static void make(const char *tool, const char *cmd, const char *out)
{
    char check[128], full[2048];
    snprintf(check, sizeof check, "command -v %s >/dev/null 2>&1", tool);
    if (system(check) != 0) {
        fail_msg("%s is not installed (run tools/deps.sh: it lists sox, opus-tools, lame)", tool);
    }
    snprintf(full, sizeof full, "%s >/dev/null 2>&1", cmd);
    assert_int_equal(system(full), 0);
    struct stat st;
    assert_int_equal(stat(out, &st), 0);
    assert_true(st.st_size > 0);
}

static duet_audio_info_t detect_ok(const char *path, duet_audio_format_t want)
{
    duet_audio_info_t info;
    duet_err_t err = duet_audio_detect(path, &info);
    if (err != DUET_OK) {
        fail_msg("%s: %s", path, duet_err_name(err));
    }
    assert_int_equal(info.format, want);
    assert_string_equal(info.mime, duet_audio_mime(want));
    assert_true(info.sample_rate > 0 && info.channels > 0);
    return info;
}

static void assert_near_ms(const char *what, uint32_t got, uint32_t want)
{
    uint32_t d = got > want ? got - want : want - got;
    if (d > TOLERANCE_MS) {
        fail_msg("%s: %u ms, want %u +- %u", what, got, want, TOLERANCE_MS);
    }
}

static void assert_refused(const char *path, duet_err_t want)
{
    duet_audio_info_t info;
    memset(&info, 0x55, sizeof info);
    duet_err_t err = duet_audio_detect(path, &info);
    if (err != want) {
        fail_msg("%s: %s, want %s", path, duet_err_name(err), duet_err_name(want));
    }
    assert_int_equal(info.format, DUET_AUDIO_NONE);
    assert_string_equal(info.mime, "");
    assert_int_equal(info.duration_ms, 0);
}

/* ---- fixture ------------------------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    g_fx = calloc(1, sizeof *g_fx);
    if (g_fx == NULL) {
        return -1;
    }
    const char *t = getenv("TMPDIR");
    snprintf(g_fx->dir, sizeof g_fx->dir, "%s/duet-audio-XXXXXX", t && *t ? t : "/tmp");
    if (mkdtemp(g_fx->dir) == NULL) {
        return -1;
    }
    snprintf(g_fx->src, sizeof g_fx->src, "%s/src.wav", g_fx->dir);
    write_wav(g_fx->src, SRC_RATE, 1, 16, SRC_RATE * SRC_MS / 1000);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    DIR *d = opendir(g_fx->dir);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            char p[600];
            if (e->d_name[0] != '.') {
                snprintf(p, sizeof p, "%s/%s", g_fx->dir, e->d_name);
                unlink(p);
            }
        }
        closedir(d);
    }
    rmdir(g_fx->dir);
    free(g_fx);
    return 0;
}

/* ---- WAV: exact ---------------------------------------------------------------------- */

static void test_wav_exact(void **state)
{
    (void)state;
    const struct {
        uint32_t rate;
        uint16_t channels, bits;
        uint32_t frames, ms;
    } cases[] = {
        {8000, 1, 16, 16000, 2000}, /* the acceptance test's 2.000 s */
        {48000, 2, 24, 59232, 1234}, {44100, 1, 16, 1, 0},
        {8000, 1, 16, 15996, 2000},  /* 1999.5 ms rounds up */
        {8000, 1, 16, 15995, 1999},  /* 1999.375 ms rounds down */
        {16000, 1, 16, 16008, 1001}, /* 1000.5 */
    };
    char path[320];
    path_in(path, sizeof path, "exact.wav");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_wav(path, cases[i].rate, cases[i].channels, cases[i].bits, cases[i].frames);
        duet_audio_info_t info = detect_ok(path, DUET_AUDIO_WAV);
        assert_int_equal(info.duration_ms, cases[i].ms);
        assert_int_equal(info.sample_rate, cases[i].rate);
        assert_int_equal(info.channels, cases[i].channels);
    }
    detect_ok(g_fx->src, DUET_AUDIO_WAV);
    /* The name does not matter: a WAV called .mp3 is a WAV. */
    path_in(path, sizeof path, "really-a-wav.mp3");
    write_wav(path, 8000, 1, 16, 8000);
    assert_int_equal(detect_ok(path, DUET_AUDIO_WAV).duration_ms, 1000);
}

/* ---- encoded formats ----------------------------------------------------------------- */

/* Made by running: tool opts_in 'source.wav' opts_out 'name'. */
typedef struct encoded {
    const char *name, *tool, *opts_in, *opts_out;
    duet_audio_format_t format;
} encoded_t;

static const encoded_t encodings[] = {
    {"flac.flac", "sox", "", "", DUET_AUDIO_FLAC},
    {"flac-48k-stereo.flac", "sox", "", "-r 48000 -c 2 -b 24", DUET_AUDIO_FLAC},
    {"vorbis.ogg", "sox", "", "-t vorbis", DUET_AUDIO_VORBIS},
    {"vorbis-22k.ogg", "sox", "", "-r 22050 -t vorbis", DUET_AUDIO_VORBIS},
    {"opus.opus", "opusenc", "--quiet", "", DUET_AUDIO_OPUS},
    {"opus-low.ogg", "opusenc", "--quiet --bitrate 12", "", DUET_AUDIO_OPUS},
    /* CBR with a LAME Info frame: libsndfile (mpg123) knows the exact length. */
    {"cbr-info.mp3", "lame", "--quiet", "", DUET_AUDIO_MPEG},
    /* VBR with a Xing frame and an ID3v2 tag in front. */
    {"vbr-xing-id3.mp3", "lame", "--quiet -V4 --add-id3v2 --tt voice", "", DUET_AUDIO_MPEG},
    /* VBR without a length frame: mpg123 would guess from the first bitrate; we walk. */
    {"vbr-notag.mp3", "lame", "--quiet -V6 -t", "", DUET_AUDIO_MPEG},
    /* MPEG-2 Layer III at 22.05 kHz (576-sample frames), no length frame. */
    {"mpeg2-notag.mp3", "lame", "--quiet -t --resample 22.05 -b 32", "", DUET_AUDIO_MPEG},
};

static void encode(const encoded_t *e, char *out, size_t cap)
{
    char cmd[1024];
    path_in(out, cap, e->name);
    snprintf(cmd, sizeof cmd, "%s %s '%s' %s '%s'", e->tool, e->opts_in, g_fx->src, e->opts_out,
             out);
    make(e->tool, cmd, out);
}

static void test_encoded_durations(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof encodings / sizeof encodings[0]; i++) {
        char out[320];
        encode(&encodings[i], out, sizeof out);
        duet_audio_info_t info = detect_ok(out, encodings[i].format);
        assert_near_ms(encodings[i].name, info.duration_ms, SRC_MS);
    }
}

/* A FLAC stream whose header does not give the sample count: the file is decoded to count. */
static void test_flac_without_length(void **state)
{
    (void)state;
    char path[320];
    encode(&encodings[0], path, sizeof path);
    size_t len;
    uint8_t *d = read_bytes(path, &len);
    /* STREAMINFO: 36 bits of total samples end at byte 25 (after "fLaC" and the block
     * header, 10 bytes of sizes, then rate 20 bits, channels 3, bits 5, samples 36). */
    assert_memory_equal(d, "fLaC", 4);
    d[21] &= 0xf0;
    memset(d + 22, 0, 4);
    path_in(path, sizeof path, "flac-nolength.flac");
    write_bytes(path, d, len);
    assert_near_ms("flac-nolength", detect_ok(path, DUET_AUDIO_FLAC).duration_ms, SRC_MS);
    free(d);
}

/* An MP3 cut short keeps its Info frame, which then claims the full length: we count. */
static void test_mp3_cut_short(void **state)
{
    (void)state;
    char path[320];
    encode(&encodings[6], path, sizeof path);
    size_t len;
    uint8_t *d = read_bytes(path, &len);
    path_in(path, sizeof path, "cut.mp3");
    write_bytes(path, d, len / 2);
    duet_audio_info_t info = detect_ok(path, DUET_AUDIO_MPEG);
    assert_near_ms("cut.mp3", info.duration_ms, SRC_MS / 2);
    free(d);
}

/* ---- not audio ----------------------------------------------------------------------- */

static void test_not_audio(void **state)
{
    (void)state;
    char path[320];
    path_in(path, sizeof path, "notes.txt");
    const char *text = "Dear love, this is a text file, not a voice note.\n";
    write_bytes(path, text, strlen(text));
    assert_refused(path, DUET_ENOTAUDIO);

    /* A PNG: signature, IHDR, IEND. */
    static const uint8_t png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0,    0, 0, 13,
                                  'I',  'H', 'D', 'R', 0,    0,    0,    1,    0,    0, 0, 1,
                                  8,    2,   0,   0,   0,    0x90, 0x77, 0x53, 0xde, 0, 0, 0,
                                  0,    'I', 'E', 'N', 'D',  0xae, 0x42, 0x60, 0x82};
    path_in(path, sizeof path, "picture.png");
    write_bytes(path, png, sizeof png);
    assert_refused(path, DUET_ENOTAUDIO);

    /* Random bytes of many sizes, bare and behind an MPEG frame sync or an ID3 tag. */
    duet_testrng_t t;
    duet_rng_t rng = duet_testrng_init(&t, 42);
    uint8_t buf[20000];
    for (int i = 0; i < 60; i++) {
        size_t n = 1 + duet_testrng_uniform(&t, sizeof buf);
        duet_rng_fill(&rng, buf, n);
        if (i % 3 == 1 && n > 4) {
            memcpy(buf, "\xff\xfb\x90\x64", 4);
        } else if (i % 3 == 2 && n > 10) {
            memcpy(buf, "ID3\x03\x00\x00\x00\x00\x01\x00", 10);
        }
        path_in(path, sizeof path, "random.bin");
        write_bytes(path, buf, n);
        assert_refused(path, DUET_ENOTAUDIO);
    }

    /* An Ogg stream that is not Opus or Vorbis (a Theora-like first packet). */
    uint8_t ogg[64] = "OggS";
    ogg[5] = 0x02;
    ogg[26] = 1;
    ogg[27] = 30;
    memcpy(ogg + 28, "\x80theora", 7);
    path_in(path, sizeof path, "video.ogv");
    write_bytes(path, ogg, sizeof ogg);
    assert_refused(path, DUET_ENOTAUDIO);
}

/* Headers cut short, and a header with nothing after it. */
static void test_truncated(void **state)
{
    (void)state;
    char src[320], path[320];
    const struct {
        size_t enc; /* index into encodings, or SIZE_MAX for the source WAV */
        size_t keep;
        duet_err_t want;
    } cases[] = {
        {SIZE_MAX, 4, DUET_ENOTAUDIO},  {SIZE_MAX, 20, DUET_ENOTAUDIO},
        {SIZE_MAX, 43, DUET_ENOTAUDIO}, {SIZE_MAX, 44, DUET_ENOTAUDIO}, /* header, no data */
        {0, 4, DUET_ENOTAUDIO},         {0, 30, DUET_ENOTAUDIO},
        {0, 100, DUET_ENOTAUDIO}, /* STREAMINFO but no frame */
        {2, 30, DUET_ENOTAUDIO},        {2, 500, DUET_ENOTAUDIO},
        {4, 30, DUET_ENOTAUDIO},        {4, 100, DUET_ENOTAUDIO},
        {6, 3, DUET_ENOTAUDIO},         {6, 100, DUET_ENOTAUDIO},
        {7, 100, DUET_ENOTAUDIO},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (cases[i].enc == SIZE_MAX) {
            snprintf(src, sizeof src, "%s", g_fx->src);
        } else {
            encode(&encodings[cases[i].enc], src, sizeof src);
        }
        size_t len;
        uint8_t *d = read_bytes(src, &len);
        assert_true(cases[i].keep < len);
        path_in(path, sizeof path, "truncated");
        write_bytes(path, d, cases[i].keep);
        assert_refused(path, cases[i].want);
        free(d);
    }
}

/* Cuts that keep a whole header: FLAC metadata with only the start of the first frame, and
 * an Ogg Opus stream whose first page lost its beginning-of-stream flag. */
static void test_header_without_audio(void **state)
{
    (void)state;
    char src[320], path[320];
    encode(&encodings[0], src, sizeof src);
    size_t len, off = 4;
    uint8_t *d = read_bytes(src, &len);
    for (bool last = false; !last;) { /* metadata blocks: last flag, type, 24-bit length */
        assert_true(off + 4 < len);
        last = (d[off] & 0x80) != 0;
        off += 4 + ((size_t)d[off + 1] << 16 | (size_t)d[off + 2] << 8 | d[off + 3]);
    }
    path_in(path, sizeof path, "flac-metadata-only.flac");
    write_bytes(path, d, off + 6);
    assert_refused(path, DUET_ENOTAUDIO);
    free(d);

    encode(&encodings[4], src, sizeof src);
    d = read_bytes(src, &len);
    assert_memory_equal(d, "OggS", 4);
    assert_true((d[5] & 0x02) != 0);
    d[5] &= (uint8_t)~0x02;
    path_in(path, sizeof path, "opus-no-bos.opus");
    write_bytes(path, d, len);
    assert_refused(path, DUET_ENOTAUDIO);
    free(d);
}

static void test_empty_missing_folder(void **state)
{
    (void)state;
    char path[320];
    path_in(path, sizeof path, "empty.wav");
    write_bytes(path, "", 0);
    assert_refused(path, DUET_EEMPTY);
    path_in(path, sizeof path, "no-such-file.wav");
    assert_refused(path, DUET_ENOENT);
    assert_refused(g_fx->dir, DUET_ENOTAUDIO);
}

/* mpg123 (inside libsndfile) warns on stderr about a damaged MP3; none of it may show. */
static void test_quiet_stderr(void **state)
{
    (void)state;
    char src[320], path[320], errlog[320];
    encode(&encodings[6], src, sizeof src);
    size_t len;
    uint8_t *d = read_bytes(src, &len);
    /* Cut in half and followed by zeros: mpg123 warns that the Info frame's size is off and
     * that it meets an illegal header, and tries to resync. */
    memset(d + len / 2, 0, len - len / 2);
    path_in(path, sizeof path, "damaged.mp3");
    write_bytes(path, d, len / 2 + 3000);
    free(d);

    path_in(errlog, sizeof errlog, "stderr.log");
    fflush(stderr);
    int saved = dup(2);
    int log = open(errlog, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved >= 0 && log >= 0);
    assert_true(dup2(log, 2) == 2);
    close(log);
    duet_audio_info_t info;
    duet_err_t err = duet_audio_detect(path, &info);
    fprintf(stderr, "after");
    fflush(stderr);
    dup2(saved, 2);
    close(saved);

    assert_int_equal(err, DUET_OK);
    assert_int_equal(info.format, DUET_AUDIO_MPEG);
    size_t n;
    uint8_t *logged = read_bytes(errlog, &n);
    /* Only our own marker: stderr was silent during the call and is back afterwards. */
    assert_int_equal(n, 5);
    assert_memory_equal(logged, "after", 5);
    free(logged);
}

static void test_mime_names(void **state)
{
    (void)state;
    assert_string_equal(duet_audio_mime(DUET_AUDIO_WAV), "audio/wav");
    assert_string_equal(duet_audio_mime(DUET_AUDIO_OPUS), "audio/ogg; codecs=opus");
    assert_string_equal(duet_audio_mime(DUET_AUDIO_VORBIS), "audio/ogg; codecs=vorbis");
    assert_string_equal(duet_audio_mime(DUET_AUDIO_FLAC), "audio/flac");
    assert_string_equal(duet_audio_mime(DUET_AUDIO_MPEG), "audio/mpeg");
    assert_string_equal(duet_audio_mime(DUET_AUDIO_NONE), "");
    assert_string_equal(duet_audio_mime((duet_audio_format_t)99), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mime_names),
        cmocka_unit_test(test_wav_exact),
        cmocka_unit_test(test_encoded_durations),
        cmocka_unit_test(test_flac_without_length),
        cmocka_unit_test(test_mp3_cut_short),
        cmocka_unit_test(test_not_audio),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_header_without_audio),
        cmocka_unit_test(test_empty_missing_folder),
        cmocka_unit_test(test_quiet_stderr),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
