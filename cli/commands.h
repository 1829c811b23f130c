/* The command functions, one file per group (cmd_*.c), dispatched from the table in
 * table.c. Each takes the arguments after its name and returns the exit status. */
#ifndef DUET_CLI_COMMANDS_H
#define DUET_CLI_COMMANDS_H

#include "blobxfer.h"
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
int duet_cmd_voice(duet_cli_t *cli, int argc, char **argv);
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

/* Voice notes (cmd_voice.c), for the inbox (cmd_note.c) and sync (cmd_sync.c): a voice
 * item's JSON fields ("text": null and "voice": {...}) and its text line; and the progress
 * of blob transfers: {"event":"progress","voice":"in"|"out",...} records with --json, a bar
 * on stderr when it is a terminal, nothing otherwise. */
void duet_cli_voice_fields(duet_cli_t *cli, duet_store_t *st, const duet_item_t *it);
void duet_cli_voice_line(duet_cli_t *cli, duet_store_t *st, const duet_item_t *it);

typedef struct duet_cli_progress_slot {
    bool used, complete;
    uint8_t item[DUET_ITEM_ID_BYTES];
    uint64_t next_ms;
} duet_cli_progress_slot_t;

typedef struct duet_cli_progress {
    bool bar;                        /* draw a bar (stderr is a terminal, no --json) */
    bool drawn;                      /* a bar line is on the screen, not yet ended */
    duet_cli_progress_slot_t dir[2]; /* [0] out, [1] in */
} duet_cli_progress_t;

void duet_cli_progress_init(duet_cli_t *cli, duet_cli_progress_t *pr);
void duet_cli_progress(duet_cli_t *cli, duet_cli_progress_t *pr, const duet_blobxfer_progress_t *p);
void duet_cli_progress_end(duet_cli_progress_t *pr);

#endif
