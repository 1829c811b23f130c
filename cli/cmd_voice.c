/*
 * duet voice: voice notes.
 *   voice FILE [--caption TEXT]          seal an audio file and queue it (core/voice.h)
 *   voice save ID OUTFILE [--wait SEC]   write the original bytes once they are here
 *   voice play ID                        play it with the first player found
 *   voice list                           every voice blob, mine and my partner's, and how
 *                                        far each has arrived
 * Also the inbox fields of voice items and the progress display of transfers, for
 * cmd_note.c and cmd_sync.c (commands.h). Ids may be given in full or by a unique prefix of
 * at least 4 hex digits. A file named like a subcommand is given with a path (./save).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "cli.h"
#include "commands.h"
#include "control.h"
#include "voice.h"

#define ID_PREFIX_MIN     4u
#define WAIT_POLL_MS      100u
#define PROGRESS_EVERY_MS 200u
#define BAR_WIDTH         24

static double mib(uint64_t bytes)
{
    return (double)bytes / (1024.0 * 1024.0);
}

/* "0:02", "12:34", "1:02:03". */
static void fmt_duration(uint32_t ms, char out[static 16])
{
    uint32_t s = (ms + 500u) / 1000u;
    if (s >= 3600u) {
        snprintf(out, 16, "%u:%02u:%02u", s / 3600u, s / 60u % 60u, s % 60u);
    } else {
        snprintf(out, 16, "%u:%02u", s / 60u, s % 60u);
    }
}

/* ---- progress: JSON events, or a bar on a terminal ----------------------------------- */

void duet_cli_progress_init(duet_cli_t *cli, duet_cli_progress_t *pr)
{
    memset(pr, 0, sizeof *pr);
    const char *term = getenv("TERM");
    pr->bar = !cli->json && isatty(STDERR_FILENO) && (term == NULL || strcmp(term, "dumb") != 0);
}

static void bar_draw(duet_cli_progress_t *pr, const duet_blobxfer_progress_t *p)
{
    char bar[BAR_WIDTH + 1];
    int fill = p->total ? (int)((double)BAR_WIDTH * (double)p->bytes / (double)p->total) : 0;
    for (int i = 0; i < BAR_WIDTH; i++) {
        bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
    }
    bar[BAR_WIDTH] = 0;
    fprintf(stderr, "\r  voice %s  [%s] %5.1f / %.1f MiB ", p->incoming ? "in " : "out", bar,
            mib(p->bytes), mib(p->total));
    pr->drawn = true;
    if (p->complete) {
        fputc('\n', stderr);
        pr->drawn = false;
    }
    fflush(stderr);
}

void duet_cli_progress(duet_cli_t *cli, duet_cli_progress_t *pr, const duet_blobxfer_progress_t *p)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    duet_cli_progress_slot_t *sl = &pr->dir[p->incoming];
    bool same = sl->used && memcmp(sl->item, p->item, sizeof sl->item) == 0;
    /* Per direction: the start and the end of each blob always, in between a few times a
     * second. */
    if (same && (sl->complete || (!p->complete && now < sl->next_ms))) {
        return;
    }
    sl->next_ms = now + PROGRESS_EVERY_MS;
    sl->used = true;
    sl->complete = p->complete;
    memcpy(sl->item, p->item, sizeof sl->item);
    if (cli->json) {
        char hex[33];
        duet_item_id_hex(p->item, hex);
        duet_json_obj(&cli->j);
        duet_json_kstr(&cli->j, "event", "progress");
        duet_json_kstr(&cli->j, "voice", p->incoming ? "in" : "out");
        duet_json_kstr(&cli->j, "id", hex);
        duet_json_key(&cli->j, "bytes");
        duet_json_uint(&cli->j, p->bytes);
        duet_json_key(&cli->j, "total");
        duet_json_uint(&cli->j, p->total);
        duet_json_kbool(&cli->j, "complete", p->complete);
        duet_json_end(&cli->j);
        duet_cli_emit(cli);
    } else if (pr->bar) {
        bar_draw(pr, p);
    }
}

void duet_cli_progress_end(duet_cli_progress_t *pr)
{
    if (pr->drawn) {
        fputc('\n', stderr);
        fflush(stderr);
        pr->drawn = false;
    }
}

/* ---- the inbox ----------------------------------------------------------------------- */

/* The voice note of an item, with whether its blob is here. */
static bool inbox_voice(duet_store_t *st, const duet_item_t *it, duet_voice_t *v,
                        duet_voice_blob_t *b)
{
    if (duet_voice_decode(it->body, it->body_len, v) != DUET_OK) {
        return false;
    }
    if (duet_voice_blob(st, v->ref.id, b) != DUET_OK) {
        memset(b, 0, sizeof *b);
    }
    return true;
}

void duet_cli_voice_fields(duet_cli_t *cli, duet_store_t *st, const duet_item_t *it)
{
    duet_voice_t v;
    duet_voice_blob_t b = {0};
    duet_json_knull(&cli->j, "text");
    duet_json_key(&cli->j, "voice");
    if (!inbox_voice(st, it, &v, &b)) {
        duet_json_null(&cli->j);
        return;
    }
    duet_json_obj(&cli->j);
    duet_json_key(&cli->j, "bytes");
    duet_json_uint(&cli->j, v.ref.size);
    duet_json_key(&cli->j, "duration_ms");
    duet_json_uint(&cli->j, v.ref.duration_ms);
    duet_json_kstr(&cli->j, "mime", v.ref.mime);
    duet_json_key(&cli->j, "caption");
    if (v.caption_len > 0) {
        duet_json_strn(&cli->j, v.caption, v.caption_len);
    } else {
        duet_json_null(&cli->j);
    }
    duet_json_kbool(&cli->j, "available", b.n != 0 && b.state == DUET_VOICE_AVAILABLE);
    duet_json_end(&cli->j);
    duet_voice_dispose(&v);
}

void duet_cli_voice_line(duet_cli_t *cli, duet_store_t *st, const duet_item_t *it)
{
    duet_voice_t v;
    duet_voice_blob_t b = {0};
    char dur[16];
    if (!inbox_voice(st, it, &v, &b)) {
        printf("(voice note)\n");
        return;
    }
    fmt_duration(v.ref.duration_ms, dur);
    printf("\xf0\x9f\x8e\x99 %s", dur); /* U+1F399 studio microphone */
    if (v.caption_len > 0) {
        printf("  ");
        duet_cli_print_text(cli, v.caption, v.caption_len);
    }
    if (!it->mine) {
        uint64_t have = 0;
        if (b.n != 0 && b.state == DUET_VOICE_AVAILABLE) {
            printf("  %s(here)%s", duet_cli_dim(cli), duet_cli_reset(cli));
        } else if (b.n != 0 && duet_voice_progress(st, &b, &have, NULL) == DUET_OK && have > 0) {
            printf("  %s(arriving, %.0f%%)%s", duet_cli_dim(cli),
                   100.0 * (double)have / (double)duet_blob_sealed_size(b.size),
                   duet_cli_reset(cli));
        } else {
            printf("  %s(not here yet)%s", duet_cli_dim(cli), duet_cli_reset(cli));
        }
    }
    putchar('\n');
    duet_voice_dispose(&v);
}

/* ---- ids ----------------------------------------------------------------------------- */

/* The voice item whose id starts with the hex digits s (a unique prefix of 4 or more). */
static int resolve(duet_cli_t *cli, duet_store_t *st, const char *what, const char *s,
                   duet_voice_blob_t *out)
{
    duet_voice_blob_t *rows = NULL;
    size_t n = 0, found = 0, len = strlen(s);
    for (size_t i = 0; i < len; i++) {
        if (strchr("0123456789abcdefABCDEF", s[i]) == NULL) {
            len = 0;
        }
    }
    if (len < ID_PREFIX_MIN || len > 32) {
        return duet_cli_usage(cli,
                              "'%s' is not a voice note id (32 hex digits, or the first 4 "
                              "or more)",
                              s);
    }
    duet_err_t err = duet_voice_blobs(st, &rows, &n);
    if (err != DUET_OK) {
        return duet_cli_fail(cli, what, err);
    }
    for (size_t i = 0; i < n; i++) {
        char hex[33];
        duet_item_id_hex(rows[i].item, hex);
        if (strncasecmp(hex, s, len) == 0) {
            *out = rows[i];
            found++;
        }
    }
    free(rows);
    if (found == 0) {
        return duet_cli_failf(cli, what, "no voice note with id %s", s);
    }
    if (found > 1) {
        return duet_cli_failf(cli, what, "%s names more than one voice note: give more digits", s);
    }
    return 0;
}

/* ---- voice FILE ---------------------------------------------------------------------- */

static int voice_add(duet_cli_t *cli, int argc, char **argv)
{
    const char *caption = NULL, *pos[1];
    size_t npos;
    const duet_opt_t opts[] = {{"--caption", DUET_OPT_STR, &caption}};
    int rc = duet_cli_parse(cli, argc, argv, opts, 1, pos, 1, &npos);
    if (rc != 0) {
        return rc;
    }
    if (npos != 1) {
        return duet_cli_usage(cli, "which audio file? (duet voice FILE [--caption TEXT])");
    }
    const char *file = pos[0];
    size_t clen = caption ? strlen(caption) : 0;
    if (clen > DUET_VOICE_CAPTION_MAX) {
        return duet_cli_failf(cli, "voice", "the caption is too long: at most %u bytes",
                              DUET_VOICE_CAPTION_MAX);
    }
    duet_store_t *st;
    if ((rc = duet_cli_open(cli, &st)) != 0) {
        return rc;
    }
    uint8_t id[DUET_ITEM_ID_BYTES];
    duet_audio_info_t info;
    duet_err_t err =
        duet_voice_add(st, file, caption ? caption : "", clen, duet_cli_now_ms(), id, &info);
    if (err == DUET_OK) {
        duet_control_kick(cli->home); /* a running daemon sends it now */
    }
    duet_store_close(st);
    switch (err) {
    case DUET_OK:
        break;
    case DUET_ENOENT:
        return duet_cli_failf(cli, "voice", "no such file: %s", file);
    case DUET_EPERM:
        return duet_cli_failf(cli, "voice", "cannot read %s: permission denied", file);
    case DUET_EEMPTY:
        return duet_cli_failf(cli, "voice", "%s is empty: there is nothing to send", file);
    case DUET_ETOOBIG:
        return duet_cli_failf(cli, "voice", "%s is too large: a voice note holds at most 50 MiB",
                              file);
    case DUET_ENOTAUDIO:
        return duet_cli_failf(cli, "voice",
                              "%s is not a recording duet can send (WAV, Ogg Opus, Ogg Vorbis, "
                              "FLAC or MP3)",
                              file);
    case DUET_EAGAIN:
        return duet_cli_failf(cli, "voice", "%s changed while it was read: try again", file);
    case DUET_EUTF8:
        return duet_cli_failf(cli, "voice", "the caption is not valid UTF-8");
    default:
        return duet_cli_fail(cli, "voice", err);
    }
    char hex[33], dur[16];
    duet_item_id_hex(id, hex);
    fmt_duration(info.duration_ms, dur);
    if (cli->json) {
        duet_json_obj(&cli->j);
        duet_json_kstr(&cli->j, "event", "queued");
        duet_json_kstr(&cli->j, "id", hex);
        duet_json_kstr(&cli->j, "mime", info.mime);
        duet_json_key(&cli->j, "duration_ms");
        duet_json_uint(&cli->j, info.duration_ms);
        duet_json_end(&cli->j);
        duet_cli_emit(cli);
    } else {
        printf("queued  %s%s%s  voice %s\n", duet_cli_dim(cli), hex, duet_cli_reset(cli), dur);
    }
    return DUET_EXIT_OK;
}

/* ---- voice save ---------------------------------------------------------------------- */

/* Wait up to timeout_s for a partner's blob that a running daemon is fetching, showing how
 * far it is. 0 when it is here, an exit status otherwise. */
static int wait_for(duet_cli_t *cli, duet_store_t *st, duet_voice_blob_t *b, uint64_t timeout_s)
{
    duet_cli_progress_t pr;
    duet_cli_progress_init(cli, &pr);
    uint64_t total = duet_blob_sealed_size(b->size);
    uint64_t polls = timeout_s * 1000u / WAIT_POLL_MS;
    uint8_t id[DUET_BLOB_ID_BYTES];
    memcpy(id, b->id, sizeof id); /* b is rewritten by each look */
    for (uint64_t i = 0;; i++) {
        uint64_t have = 0;
        duet_err_t err = duet_voice_blob(st, id, b);
        if (err == DUET_OK) {
            err = duet_voice_progress(st, b, &have, NULL);
        }
        if (err != DUET_OK) {
            duet_cli_progress_end(&pr);
            return duet_cli_fail(cli, "voice save", err);
        }
        duet_blobxfer_progress_t p = {.incoming = true,
                                      .bytes = have < total ? have : total,
                                      .total = total,
                                      .complete = b->state == DUET_VOICE_AVAILABLE};
        memcpy(p.item, b->item, sizeof p.item);
        duet_cli_progress(cli, &pr, &p);
        if (p.complete) {
            duet_cli_progress_end(&pr);
            return 0;
        }
        if (i >= polls) {
            duet_cli_progress_end(&pr);
            return duet_cli_failf(cli, "voice save",
                                  "not here yet: %.1f of %.1f MiB arrived (timed out)", mib(have),
                                  mib(total));
        }
        usleep(WAIT_POLL_MS * 1000u);
    }
}

static int voice_save(duet_cli_t *cli, int argc, char **argv)
{
    const char *wait_s = NULL, *pos[2];
    size_t npos;
    const duet_opt_t opts[] = {{"--wait", DUET_OPT_STR, &wait_s}};
    int rc = duet_cli_parse(cli, argc, argv, opts, 1, pos, 2, &npos);
    if (rc != 0) {
        return rc;
    }
    if (npos != 2) {
        return duet_cli_usage(cli, "which voice note, and where to? (duet voice save ID OUTFILE)");
    }
    uint64_t wait = 0;
    if (wait_s != NULL && (rc = duet_cli_uint(cli, "--wait", wait_s, 1, 86400, &wait)) != 0) {
        return rc;
    }
    duet_store_t *st;
    if ((rc = duet_cli_open(cli, &st)) != 0) {
        return rc;
    }
    duet_voice_blob_t b = {0};
    if ((rc = resolve(cli, st, "voice save", pos[0], &b)) != 0) {
        duet_store_close(st);
        return rc;
    }
    if (b.state != DUET_VOICE_AVAILABLE && wait > 0 && (rc = wait_for(cli, st, &b, wait)) != 0) {
        duet_store_close(st);
        return rc;
    }
    uint64_t have = 0;
    bool refetch = false;
    duet_err_t err = duet_voice_save(st, b.item, pos[1], &refetch);
    if (err == DUET_ENOTHERE && !refetch && duet_voice_progress(st, &b, &have, NULL) != DUET_OK) {
        have = 0;
    }
    duet_store_close(st);
    char hex[33];
    duet_item_id_hex(b.item, hex);
    if (refetch) {
        return duet_cli_failf(cli, "voice save",
                              "the voice data on this device is %s; it will be fetched again "
                              "at the next sync",
                              err == DUET_EBLOB ? "damaged" : "missing");
    }
    switch (err) {
    case DUET_OK:
        break;
    case DUET_ENOTHERE:
        return duet_cli_failf(cli, "voice save",
                              "not here yet: %.1f of %.1f MiB arrived; it comes with the next "
                              "sync",
                              mib(have), mib(duet_blob_sealed_size(b.size)));
    case DUET_ENOENT:
        return duet_cli_failf(cli, "voice save",
                              b.mine ? "the voice data of this note is gone from this device"
                                     : "cannot write %s: no such folder",
                              pos[1]);
    case DUET_EPERM:
        return duet_cli_failf(cli, "voice save", "cannot write %s: permission denied", pos[1]);
    default:
        return duet_cli_fail(cli, "voice save", err);
    }
    if (cli->json) {
        duet_json_obj(&cli->j);
        duet_json_kstr(&cli->j, "event", "saved");
        duet_json_kstr(&cli->j, "id", hex);
        duet_json_kstr(&cli->j, "file", pos[1]);
        duet_json_key(&cli->j, "bytes");
        duet_json_uint(&cli->j, b.size);
        duet_json_end(&cli->j);
        duet_cli_emit(cli);
    } else {
        printf("saved  %s  (%.1f MiB)\n", pos[1], mib(b.size));
    }
    return DUET_EXIT_OK;
}

/* ---- voice play ---------------------------------------------------------------------- */

/* Whether an executable named name is on PATH. */
static bool on_path(const char *name)
{
    const char *path = getenv("PATH");
    char buf[DUET_CLI_PATH_MAX];
    if (path == NULL) {
        return false;
    }
    while (*path) {
        size_t n = strcspn(path, ":");
        if (n > 0 && n + strlen(name) + 2 <= sizeof buf) {
            memcpy(buf, path, n);
            buf[n] = '/';
            memcpy(buf + n + 1, name, strlen(name) + 1);
            if (access(buf, X_OK) == 0) {
                return true;
            }
        }
        path += n + (path[n] == ':');
    }
    return false;
}

/* The first player that takes this mime type: argv with the file as the last argument. */
static bool pick_player(const char *mime, const char *argv[8])
{
    bool wav = strcmp(mime, "audio/wav") == 0;
    if (on_path("paplay")) {
        argv[0] = "paplay";
        argv[1] = NULL;
    } else if (on_path("pw-play")) {
        argv[0] = "pw-play";
        argv[1] = NULL;
    } else if (on_path("ffplay")) {
        argv[0] = "ffplay";
        argv[1] = "-nodisp";
        argv[2] = "-autoexit";
        argv[3] = "-loglevel";
        argv[4] = "quiet";
        argv[5] = NULL;
    } else if (wav && on_path("aplay")) {
        argv[0] = "aplay";
        argv[1] = "-q";
        argv[2] = NULL;
    } else {
        return false;
    }
    return true;
}

static int voice_play(duet_cli_t *cli, int argc, char **argv)
{
    const char *pos[1], *pargv[8];
    size_t npos;
    int rc = duet_cli_parse(cli, argc, argv, NULL, 0, pos, 1, &npos);
    if (rc != 0) {
        return rc;
    }
    if (npos != 1) {
        return duet_cli_usage(cli, "which voice note? (duet voice play ID)");
    }
    duet_store_t *st;
    if ((rc = duet_cli_open(cli, &st)) != 0) {
        return rc;
    }
    duet_voice_blob_t b = {0};
    duet_voice_t v;
    if ((rc = resolve(cli, st, "voice play", pos[0], &b)) != 0) {
        duet_store_close(st);
        return rc;
    }
    duet_err_t err = duet_voice_load(st, b.item, &v, NULL);
    if (err != DUET_OK) {
        duet_store_close(st);
        return duet_cli_fail(cli, "voice play", err);
    }
    bool have_player = pick_player(v.ref.mime, pargv);
    duet_voice_dispose(&v);
    if (!have_player) {
        duet_store_close(st);
        return duet_cli_failf(cli, "voice play",
                              "no audio player found (paplay, pw-play, ffplay, or aplay for WAV); "
                              "save it instead: duet voice save ID FILE");
    }
    /* The plaintext goes to a private file in the home (0600, folder 0700), gone after. */
    char tmp[DUET_VOICE_PATH_MAX], hex[33];
    uint8_t r[16];
    duet_rng_fill(&cli->rng, r, sizeof r);
    sodium_bin2hex(hex, sizeof hex, r, sizeof r);
    int tn = snprintf(tmp, sizeof tmp, "%s/blobs/play-%s", cli->home, hex);
    bool refetch = false;
    err = tn < 0 || (size_t)tn >= sizeof tmp ? DUET_ETOOBIG : duet_voice_mkdir(st);
    if (err == DUET_OK) {
        err = duet_voice_save(st, b.item, tmp, &refetch);
    }
    duet_store_close(st);
    if (err != DUET_OK) {
        unlink(tmp);
        if (err == DUET_ENOTHERE && !refetch) {
            return duet_cli_failf(cli, "voice play", "not here yet; it comes with the next sync");
        }
        return duet_cli_fail(cli, "voice play", err);
    }
    size_t k = 0;
    while (pargv[k] != NULL) {
        k++;
    }
    pargv[k] = tmp;
    pargv[k + 1] = NULL;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        execvp(pargv[0], (char *const *)pargv);
        _exit(127);
    }
    int status = 0;
    if (pid > 0) {
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
    }
    unlink(tmp);
    if (pid < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        return duet_cli_failf(cli, "voice play", "%s could not play it", pargv[0]);
    }
    if (cli->json) {
        duet_json_obj(&cli->j);
        duet_json_kstr(&cli->j, "event", "played");
        duet_json_kstr(&cli->j, "player", pargv[0]);
        duet_json_end(&cli->j);
        duet_cli_emit(cli);
    }
    return DUET_EXIT_OK;
}

/* ---- voice list ---------------------------------------------------------------------- */

static int voice_list(duet_cli_t *cli, int argc, char **argv)
{
    const char *pos[1];
    size_t npos;
    int rc = duet_cli_parse(cli, argc, argv, NULL, 0, pos, 0, &npos);
    if (rc != 0) {
        return rc;
    }
    duet_store_t *st;
    if ((rc = duet_cli_open(cli, &st)) != 0) {
        return rc;
    }
    duet_voice_blob_t *rows = NULL;
    size_t n = 0;
    duet_err_t err = duet_voice_blobs(st, &rows, &n);
    if (err != DUET_OK) {
        duet_store_close(st);
        return duet_cli_fail(cli, "voice list", err);
    }
    if (n == 0 && !cli->json) {
        printf("no voice notes yet\n");
    }
    for (size_t i = 0; i < n && err == DUET_OK; i++) {
        uint64_t have = 0, fetched = 0, sealed = duet_blob_sealed_size(rows[i].size);
        char hex[33];
        duet_item_id_hex(rows[i].item, hex);
        err = duet_voice_progress(st, &rows[i], &have, &fetched);
        if (cli->json) {
            duet_json_obj(&cli->j);
            duet_json_kstr(&cli->j, "id", hex);
            duet_json_kstr(&cli->j, "from", rows[i].mine ? "me" : "partner");
            duet_json_kstr(&cli->j, "state",
                           rows[i].state == DUET_VOICE_AVAILABLE ? "available" : "partial");
            duet_json_key(&cli->j, "bytes");
            duet_json_uint(&cli->j, rows[i].size);
            duet_json_key(&cli->j, "sealed");
            duet_json_uint(&cli->j, sealed);
            duet_json_key(&cli->j, "have");
            duet_json_uint(&cli->j, have);
            /* Sealed bytes this device took in for it, over every transfer: sealed plus
             * what was sent twice (docs/protocol/blob.md, "Counting"). */
            duet_json_key(&cli->j, "fetched");
            duet_json_uint(&cli->j, rows[i].mine ? 0 : fetched);
            /* Mine: storage units a relay holds (core/blobrelay.h). */
            duet_json_key(&cli->j, "relayed");
            duet_json_uint(&cli->j, rows[i].mine ? rows[i].relayed : 0);
            duet_json_end(&cli->j);
            duet_cli_emit(cli);
        } else {
            printf("%s%s%s  %-7s  %-9s  %6.1f MiB", duet_cli_dim(cli), hex, duet_cli_reset(cli),
                   rows[i].mine ? "me" : "partner",
                   rows[i].state == DUET_VOICE_AVAILABLE ? "here" : "arriving", mib(rows[i].size));
            if (rows[i].state != DUET_VOICE_AVAILABLE) {
                printf("  %3.0f%%", 100.0 * (double)have / (double)sealed);
            }
            putchar('\n');
        }
    }
    free(rows);
    duet_store_close(st);
    return err == DUET_OK ? DUET_EXIT_OK : duet_cli_fail(cli, "voice list", err);
}

/* ---- dispatch ------------------------------------------------------------------------ */

int duet_cmd_voice(duet_cli_t *cli, int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(duet_cli_t *, int, char **);
    } subs[] = {{"save", voice_save}, {"play", voice_play}, {"list", voice_list}};
    if (argc >= 1) {
        for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
            if (strcmp(argv[0], subs[i].name) == 0) {
                cli->sub = subs[i].name;
                return subs[i].fn(cli, argc - 1, argv + 1);
            }
        }
    }
    return voice_add(cli, argc, argv);
}
