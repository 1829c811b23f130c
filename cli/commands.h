/* The command functions, one file per group (cmd_*.c), dispatched from the table in
 * table.c. Each takes the arguments after its name and returns the exit status. */
#ifndef DUET_CLI_COMMANDS_H
#define DUET_CLI_COMMANDS_H

#include "cli.h"

int duet_cmd_init(duet_cli_t *cli, int argc, char **argv);
int duet_cmd_id(duet_cli_t *cli, int argc, char **argv);
int duet_cmd_status(duet_cli_t *cli, int argc, char **argv);
int duet_cmd_note(duet_cli_t *cli, int argc, char **argv);
int duet_cmd_inbox(duet_cli_t *cli, int argc, char **argv);
int duet_cmd_pair(duet_cli_t *cli, int argc, char **argv);
int duet_cmd_verify(duet_cli_t *cli, int argc, char **argv);
int duet_cmd_sync(duet_cli_t *cli, int argc, char **argv);
int duet_cmd_daemon(duet_cli_t *cli, int argc, char **argv);
int duet_cmd_watch(duet_cli_t *cli, int argc, char **argv);
int duet_cmd_relay(duet_cli_t *cli, int argc, char **argv);

#endif
