/*
 * The duet command: shared context, the command table, and helpers every command uses.
 *
 * Output: with --json every record is one JSON object on one line of stdout (JSON Lines),
 * flushed as it is written; without it, short aligned text for people, colour only on a
 * TTY and never with NO_COLOR set. Errors: one line on stderr, "duet: <what>: <why>", exit
 * status 1, or 2 for usage errors. A command that fails leaves the store as it was (every
 * write is one transaction).
 */
#ifndef DUET_CLI_H
#define DUET_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"
#include "json.h"
#include "rng.h"
#include "store.h"

#define DUET_EXIT_OK 0
#define DUET_EXIT_FAIL 1
#define DUET_EXIT_USAGE 2
#define DUET_CLI_PATH_MAX 4096

typedef struct duet_cmd duet_cmd_t;

typedef struct duet_cli {
    char home[DUET_CLI_PATH_MAX];
    bool json;
    bool color;             /* stdout is a TTY and NO_COLOR is unset */
    bool tty_in;            /* stdin is a TTY */
    const char *passphrase_file;
    const duet_cmd_t *cmd;  /* the command running */
    const char *sub;        /* its subcommand ("serve" of "relay serve"), or NULL */
    duet_json_t j;          /* the record being written */
    duet_rng_t rng;
} duet_cli_t;

struct duet_cmd {
    const char *name;
    int (*fn)(duet_cli_t *cli, int argc, char **argv);
    const char *usage;   /* arguments, e.g. "TEXT|-" */
    const char *summary; /* one line */
    const char *help;    /* the rest of `duet NAME --help` */
};

/* The table (main.c) and a lookup. */
extern const duet_cmd_t duet_commands[];
const duet_cmd_t *duet_cli_find(const char *name);

/* ---- errors -------------------------------------------------------------------------- */

/* Print "duet: <what>: <message of err>" and return the exit status for err. */
int duet_cli_fail(duet_cli_t *cli, const char *what, duet_err_t err);
/* Print "duet: <what>: <formatted>" and return DUET_EXIT_FAIL. */
int duet_cli_failf(duet_cli_t *cli, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Print "duet: <command>: <formatted>" plus a hint to --help; return DUET_EXIT_USAGE. */
int duet_cli_usage(duet_cli_t *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- arguments ----------------------------------------------------------------------- */

typedef enum { DUET_OPT_FLAG, DUET_OPT_STR } duet_opt_kind_t;

typedef struct duet_opt {
    const char *name; /* "--limit" */
    duet_opt_kind_t kind;
    void *dest;       /* bool * for flags, const char ** for strings */
} duet_opt_t;

/*
 * Parse argv[0..argc) (the arguments after the command name) against opts; positional
 * arguments go to pos[0..maxpos). "--json" and "--home DIR" are accepted anywhere. "--help"
 * prints the command's help and returns -1 (the caller exits 0). A lone "-" is positional;
 * "--" ends the options. Returns 0, or DUET_EXIT_USAGE after printing the reason.
 */
int duet_cli_parse(duet_cli_t *cli, int argc, char **argv, const duet_opt_t *opts, size_t nopts,
                   const char **pos, size_t maxpos, size_t *npos);

/* Parse a non-negative integer argument in [min, max]; usage error otherwise. */
int duet_cli_uint(duet_cli_t *cli, const char *opt, const char *s, uint64_t min, uint64_t max,
                  uint64_t *out);

/* Print a command's help. */
void duet_cli_help(const duet_cmd_t *cmd, FILE *f);

/* ---- the store ----------------------------------------------------------------------- */

/* Open the home's store (asking for the passphrase if it has one). On failure print the
 * error and return the exit status; 0 on success. */
int duet_cli_open(duet_cli_t *cli, duet_store_t **st);

/* Read a passphrase for a new or existing home: from file (one trailing newline dropped),
 * else DUET_PASSPHRASE_FILE, else a no-echo prompt on the TTY. buf receives up to cap-1
 * bytes; the caller wipes it. */
duet_err_t duet_cli_passphrase(duet_cli_t *cli, const char *file, bool confirm, char *buf,
                               size_t cap, size_t *len) DUET_MUST_CHECK;

/* Read all of a file or stdin ("-") up to max bytes; DUET_ETOOBIG beyond. */
duet_err_t duet_cli_read_all(const char *path, size_t max, uint8_t **out,
                             size_t *len) DUET_MUST_CHECK;

/* ---- time and output ----------------------------------------------------------------- */

uint64_t duet_cli_now_ms(void);

/* ISO-8601 UTC with milliseconds: "2026-11-26T09:30:00.123Z". */
void duet_cli_iso8601(uint64_t ms, char out[static 32]);

/* Emit the current JSON record (cli->j) on stdout. */
void duet_cli_emit(duet_cli_t *cli);

/* Styling for text output: the escape when colour is on, "" otherwise. */
const char *duet_cli_dim(const duet_cli_t *cli);
const char *duet_cli_bold(const duet_cli_t *cli);
const char *duet_cli_reset(const duet_cli_t *cli);

/* Write text to stdout for a person: control characters other than newline and tab are
 * shown as U+FFFD, so a partner's note cannot drive the terminal. */
void duet_cli_print_text(const duet_cli_t *cli, const char *s, size_t n);

#endif /* DUET_CLI_H */
