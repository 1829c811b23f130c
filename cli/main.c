/*
 * duet — the command. Global options, then one command from the table (table.c):
 *   duet [--home DIR] [--json] [--passphrase-file FILE] COMMAND [ARGS]
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "cli.h"
#include "sysrng.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: duet [--home DIR] [--json] [--passphrase-file FILE] COMMAND [ARGS]\n\n"
               "duet keeps two partners close: notes, voice notes and check-ins, end-to-end\n"
               "encrypted, synced directly or through a relay that sees only ciphertext.\n\n"
               "commands:\n");
    for (const duet_cmd_t *c = duet_commands; c->name != NULL; c++) {
        fprintf(f, "  %-10s %s\n", c->name, c->summary);
    }
    fprintf(f, "\nglobal options:\n"
               "  --home DIR   the device's folder (else DUET_HOME, else $XDG_DATA_HOME/duet,\n"
               "               else ~/.local/share/duet)\n"
               "  --json       print JSON Lines records instead of text\n"
               "  --passphrase-file FILE   the passphrase of a protected home\n"
               "  --version    print the version\n\n"
               "`duet COMMAND --help` tells more; `man duet` tells all.\n");
}

static int default_home(duet_cli_t *cli)
{
    const char *h = getenv("DUET_HOME");
    int n;
    if (h != NULL && h[0] != 0) {
        n = snprintf(cli->home, sizeof cli->home, "%s", h);
    } else if ((h = getenv("XDG_DATA_HOME")) != NULL && h[0] == '/') {
        n = snprintf(cli->home, sizeof cli->home, "%s/duet", h);
    } else if ((h = getenv("HOME")) != NULL && h[0] != 0) {
        n = snprintf(cli->home, sizeof cli->home, "%s/.local/share/duet", h);
    } else {
        return -1; /* no default: the command must be given --home */
    }
    if (n <= 0 || (size_t)n >= sizeof cli->home) {
        cli->home[0] = 0;
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    duet_cli_t cli;
    int i, rc;

    memset(&cli, 0, sizeof cli);
    umask(077); /* everything duet creates is the user's alone */
    signal(SIGPIPE, SIG_IGN);
    /* libsodium's ChaCha20-based generator, seeded from getrandom(2): one system call per
     * process instead of one per nonce (the store seals every row with a fresh nonce). */
    if (randombytes_set_implementation(&randombytes_internal_implementation) != 0 ||
        sodium_init() < 0) {
        fprintf(stderr, "duet: libsodium: cannot initialise\n");
        return DUET_EXIT_FAIL;
    }
    cli.rng = duet_sysrng();
    cli.color = isatty(STDOUT_FILENO) && getenv("NO_COLOR") == NULL;
    cli.tty_in = isatty(STDIN_FILENO);
    duet_json_init(&cli.j);
    (void)default_home(&cli); /* --home, here or after the command, overrides it */

    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--json") == 0) {
            cli.json = true;
        } else if (strcmp(a, "--home") == 0 || strcmp(a, "--passphrase-file") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "duet: %s needs a value (see: duet --help)\n", a);
                return DUET_EXIT_USAGE;
            }
            if (a[2] == 'h') {
                int n = snprintf(cli.home, sizeof cli.home, "%s", argv[++i]);
                if (n <= 0 || (size_t)n >= sizeof cli.home) {
                    fprintf(stderr, "duet: --home: path too long or empty\n");
                    return DUET_EXIT_USAGE;
                }
            } else {
                cli.passphrase_file = argv[++i];
            }
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0 || strcmp(a, "help") == 0) {
            if (i + 1 < argc && strcmp(a, "help") == 0) {
                const duet_cmd_t *c = duet_cli_find(argv[i + 1]);
                if (c != NULL) {
                    duet_cli_help(c, stdout);
                    return DUET_EXIT_OK;
                }
            }
            usage(stdout);
            return DUET_EXIT_OK;
        } else if (strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0) {
            printf("duet %s\n", DUET_VERSION);
            return DUET_EXIT_OK;
        } else if (a[0] == '-') {
            fprintf(stderr, "duet: unknown option '%s' (see: duet --help)\n", a);
            return DUET_EXIT_USAGE;
        } else {
            break;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return DUET_EXIT_USAGE;
    }
    const duet_cmd_t *cmd = duet_cli_find(argv[i]);
    if (cmd == NULL) {
        fprintf(stderr, "duet: unknown command '%s' (see: duet --help)\n", argv[i]);
        return DUET_EXIT_USAGE;
    }
    cli.cmd = cmd;
    rc = cmd->fn(&cli, argc - i - 1, argv + i + 1);
    duet_json_dispose(&cli.j);
    if (fflush(stdout) != 0 && rc == 0) {
        fprintf(stderr, "duet: output: cannot write to standard output\n");
        rc = DUET_EXIT_FAIL;
    }
    return rc < 0 ? DUET_EXIT_OK : rc;
}
