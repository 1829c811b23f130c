/* The command functions, one file per group (cmd_*.c), dispatched from the table in
 * table.c. Each takes the arguments after its name and returns the exit status. */
#ifndef DUET_CLI_COMMANDS_H
#define DUET_CLI_COMMANDS_H

#include "cli.h"
#include "items.h"

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

/* Check-ins (cmd_checkin.c) and the signals around them (cmd_ritual.c). */
int duet_cmd_checkin(duet_cli_t *cli, int argc, char **argv);
int duet_cmd_pause(duet_cli_t *cli, int argc, char **argv);
int duet_cmd_resume(duet_cli_t *cli, int argc, char **argv);
int duet_cmd_agree(duet_cli_t *cli, int argc, char **argv);
int duet_cmd_milestone(duet_cli_t *cli, int argc, char **argv);

/* Inbox lines of check-in kinds (check-in answered, pause, resume, milestone), rendered by
 * cmd_ritual.c for the inbox in cmd_note.c: whether a kind is one of them; its JSON fields
 * ("text" and its own); its text line (after the time, author and status); and, before the
 * list, a banner when the partner has asked to slow down (text mode), which also gives the
 * partner's name for the lines. */
bool duet_cli_ritual_kind(uint32_t kind);
void duet_cli_ritual_fields(duet_cli_t *cli, const duet_item_t *it);
void duet_cli_ritual_line(duet_cli_t *cli, const duet_item_t *it, const char *partner);
void duet_cli_ritual_banner(duet_cli_t *cli, duet_store_t *st, char *partner, size_t cap);

#endif
