/* see cli.h */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "codec.h"

/* ---- errors -------------------------------------------------------------------------- */

int duet_cli_fail(duet_cli_t *cli, const char *what, duet_err_t err)
{
    (void)cli;
    fflush(stdout);
    fprintf(stderr, "duet: %s: %s\n", what, duet_strerror(err));
    return err == DUET_EUSAGE ? DUET_EXIT_USAGE : DUET_EXIT_FAIL;
}

int duet_cli_failf(duet_cli_t *cli, const char *what, const char *fmt, ...)
{
    va_list ap;
    (void)cli;
    fflush(stdout);
    fprintf(stderr, "duet: %s: ", what);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return DUET_EXIT_FAIL;
}

int duet_cli_usage(duet_cli_t *cli, const char *fmt, ...)
{
    va_list ap;
    const char *name = cli->cmd ? cli->cmd->name : "usage";
    fflush(stdout);
    if (cli->sub) {
        fprintf(stderr, "duet: %s %s: ", name, cli->sub);
    } else {
        fprintf(stderr, "duet: %s: ", name);
    }
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (cli->cmd) {
        fprintf(stderr, " (see: duet %s --help)\n", name);
    } else {
        fprintf(stderr, " (see: duet --help)\n");
    }
    return DUET_EXIT_USAGE;
}

/* ---- arguments ----------------------------------------------------------------------- */

void duet_cli_help(const duet_cmd_t *cmd, FILE *f)
{
    fprintf(f, "usage: duet [--home DIR] [--json] %s%s%s\n\n%s\n", cmd->name,
            cmd->usage[0] ? " " : "", cmd->usage, cmd->summary);
    if (cmd->help && cmd->help[0]) {
        fprintf(f, "\n%s", cmd->help);
    }
}

static int set_home(duet_cli_t *cli, const char *dir)
{
    int n = snprintf(cli->home, sizeof cli->home, "%s", dir);
    if (n <= 0 || (size_t)n >= sizeof cli->home) {
        return duet_cli_usage(cli, "--home: path too long or empty");
    }
    return 0;
}

int duet_cli_parse(duet_cli_t *cli, int argc, char **argv, const duet_opt_t *opts, size_t nopts,
                   const char **pos, size_t maxpos, size_t *npos)
{
    bool only_pos = false;
    *npos = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (only_pos || a[0] != '-' || strcmp(a, "-") == 0) {
            if (*npos == maxpos) {
                return duet_cli_usage(cli, "unexpected argument '%s'", a);
            }
            pos[(*npos)++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_pos = true;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            duet_cli_help(cli->cmd, stdout);
            return -1;
        }
        if (strcmp(a, "--json") == 0) {
            cli->json = true;
            continue;
        }
        if (strcmp(a, "--home") == 0) {
            if (i + 1 >= argc) {
                return duet_cli_usage(cli, "--home needs a folder");
            }
            int rc = set_home(cli, argv[++i]);
            if (rc != 0) {
                return rc;
            }
            continue;
        }
        size_t k;
        for (k = 0; k < nopts; k++) {
            if (strcmp(a, opts[k].name) == 0) {
                break;
            }
        }
        if (k == nopts) {
            return duet_cli_usage(cli, "unknown option '%s'", a);
        }
        if (opts[k].kind == DUET_OPT_FLAG) {
            *(bool *)opts[k].dest = true;
        } else {
            if (i + 1 >= argc) {
                return duet_cli_usage(cli, "%s needs a value", a);
            }
            *(const char **)opts[k].dest = argv[++i];
        }
    }
    return 0;
}

int duet_cli_uint(duet_cli_t *cli, const char *opt, const char *s, uint64_t min, uint64_t max,
                  uint64_t *out)
{
    char *end;
    *out = 0;
    if (s == NULL || s[0] < '0' || s[0] > '9') {
        return duet_cli_usage(cli, "%s: not a number: '%s'", opt, s ? s : "");
    }
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != 0 || v < min || v > max) {
        return duet_cli_usage(cli, "%s: expected a number from %" PRIu64 " to %" PRIu64
                                   ", not '%s'",
                              opt, min, max, s);
    }
    *out = v;
    return 0;
}

/* ---- files and passphrases ----------------------------------------------------------- */

duet_err_t duet_cli_read_all(const char *path, size_t max, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    int fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return errno == ENOENT ? DUET_ENOENT : errno == EACCES ? DUET_EPERM : DUET_EIO;
    }
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    duet_err_t err = DUET_OK;
    if (buf == NULL) {
        err = DUET_ENOMEM;
        goto cleanup;
    }
    for (;;) {
        if (n == cap) {
            if (cap > max) {
                err = DUET_ETOOBIG;
                goto cleanup;
            }
            size_t ncap = cap * 2;
            uint8_t *nb = realloc(buf, ncap);
            if (nb == NULL) {
                err = DUET_ENOMEM;
                goto cleanup;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            err = DUET_EIO;
            goto cleanup;
        }
        if (r == 0) {
            break;
        }
        n += (size_t)r;
        if (n > max) {
            err = DUET_ETOOBIG;
            goto cleanup;
        }
    }
cleanup:
    if (fd != STDIN_FILENO) {
        close(fd);
    }
    if (err != DUET_OK) {
        if (buf) {
            sodium_memzero(buf, cap);
        }
        free(buf);
        return err;
    }
    *out = buf;
    *len = n;
    return DUET_OK;
}

static duet_err_t prompt(const char *label, char *buf, size_t cap, size_t *len)
{
    struct termios old, quiet;
    int fd = open("/dev/tty", O_RDWR | O_CLOEXEC);
    *len = 0;
    if (fd < 0) {
        return DUET_ENEEDPASS;
    }
    if (write(fd, label, strlen(label)) < 0 || tcgetattr(fd, &old) != 0) {
        close(fd);
        return DUET_ENEEDPASS;
    }
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
    quiet.c_lflag |= ICANON;
    (void)tcsetattr(fd, TCSAFLUSH, &quiet);
    size_t n = 0;
    duet_err_t err = DUET_OK;
    for (;;) {
        char c;
        ssize_t r = read(fd, &c, 1);
        if (r <= 0 || c == '\n' || c == '\r') {
            break;
        }
        if (n + 1 >= cap) {
            err = DUET_ETOOBIG;
            break;
        }
        buf[n++] = c;
    }
    buf[n] = 0;
    (void)tcsetattr(fd, TCSAFLUSH, &old);
    if (write(fd, "\n", 1) < 0) {
        err = err == DUET_OK ? DUET_EIO : err;
    }
    close(fd);
    *len = n;
    return err;
}

duet_err_t duet_cli_passphrase(duet_cli_t *cli, const char *file, bool confirm, char *buf,
                               size_t cap, size_t *len)
{
    (void)cli;
    *len = 0;
    if (file == NULL) {
        file = getenv("DUET_PASSPHRASE_FILE");
        if (file != NULL && file[0] == 0) {
            file = NULL;
        }
    }
    if (file != NULL) {
        uint8_t *data;
        size_t n;
        duet_err_t err = duet_cli_read_all(file, DUET_STORE_MAX_PASSPHRASE + 2, &data, &n);
        if (err != DUET_OK) {
            return err;
        }
        if (n > 0 && data[n - 1] == '\n') {
            n--;
        }
        if (n > 0 && data[n - 1] == '\r') {
            n--;
        }
        if (n + 1 > cap || n > DUET_STORE_MAX_PASSPHRASE) {
            sodium_memzero(data, n);
            free(data);
            return DUET_ETOOBIG;
        }
        memcpy(buf, data, n);
        buf[n] = 0;
        sodium_memzero(data, n);
        free(data);
        *len = n;
        return n == 0 ? DUET_EEMPTY : DUET_OK;
    }
    duet_err_t err = prompt("duet passphrase: ", buf, cap, len);
    if (err != DUET_OK || !confirm) {
        return err == DUET_OK && *len == 0 ? DUET_EEMPTY : err;
    }
    char again[DUET_STORE_MAX_PASSPHRASE + 1];
    size_t alen;
    err = prompt("again: ", again, sizeof again, &alen);
    if (err == DUET_OK && (alen != *len || sodium_memcmp(again, buf, alen) != 0)) {
        err = DUET_EPASSPHRASE;
    }
    sodium_memzero(again, sizeof again);
    return err;
}

int duet_cli_open(duet_cli_t *cli, duet_store_t **st)
{
    char pass[DUET_STORE_MAX_PASSPHRASE + 1];
    size_t plen = 0;
    duet_store_opts_t o = {.rng = cli->rng};
    duet_err_t err;

    *st = NULL;
    if (cli->home[0] == 0) {
        return duet_cli_failf(cli, "home", "no --home, DUET_HOME or HOME to find the device");
    }
    if (duet_store_has_passphrase(cli->home)) {
        err = duet_cli_passphrase(cli, cli->passphrase_file, false, pass, sizeof pass, &plen);
        if (err != DUET_OK) {
            sodium_memzero(pass, sizeof pass);
            return duet_cli_fail(cli, "passphrase", err == DUET_EEMPTY ? DUET_ENEEDPASS : err);
        }
        o.passphrase = (const uint8_t *)pass;
        o.passphrase_len = plen;
    }
    const char *busy = getenv("DUET_BUSY_TIMEOUT_MS");
    if (busy != NULL) {
        o.busy_timeout_ms = atoi(busy);
    }
    err = duet_store_open(cli->home, &o, st);
    sodium_memzero(pass, sizeof pass);
    if (err != DUET_OK) {
        const char *what = err == DUET_ENOTINIT || err == DUET_EPASSPHRASE ||
                                   err == DUET_ENEEDPASS
                               ? cli->home
                               : "store";
        return duet_cli_fail(cli, what, err);
    }
    return 0;
}

/* ---- time and output ----------------------------------------------------------------- */

uint64_t duet_cli_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void duet_cli_iso8601(uint64_t ms, char out[static 32])
{
    time_t secs = (time_t)(ms / 1000u);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char base[24];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 32, "%s.%03uZ", base, (unsigned)(ms % 1000u));
}

void duet_cli_emit(duet_cli_t *cli)
{
    if (duet_json_emit(&cli->j, stdout) != 0) {
        fprintf(stderr, "duet: output: cannot write to standard output\n");
    }
}

const char *duet_cli_dim(const duet_cli_t *cli)
{
    return cli->color ? "\033[2m" : "";
}

const char *duet_cli_bold(const duet_cli_t *cli)
{
    return cli->color ? "\033[1m" : "";
}

const char *duet_cli_reset(const duet_cli_t *cli)
{
    return cli->color ? "\033[0m" : "";
}

void duet_cli_print_text(const duet_cli_t *cli, const char *s, size_t n)
{
    (void)cli;
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f) {
            fputs("\xef\xbf\xbd", stdout);
        } else if (c == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] >= 0x80 &&
                   (unsigned char)s[i + 1] <= 0x9f) {
            fputs("\xef\xbf\xbd", stdout); /* C1 controls */
            i++;
        } else {
            fputc(c, stdout);
        }
        i++;
    }
}
