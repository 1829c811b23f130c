/* The command table: name, function, arguments, one-line summary, help. `duet --help`
 * lists it in this order; `duet NAME --help` prints one entry. */
#include <string.h>

#include "cli.h"
#include "commands.h"

const duet_cmd_t duet_commands[] = {
    {"init", duet_cmd_init, "[--name NAME] [--passphrase-file FILE]",
     "Create this device: its identity key and an encrypted store in the home folder.",
     "options:\n"
     "  --name NAME             the name your partner sees (default: your login name)\n"
     "  --passphrase-file FILE  protect the store with the passphrase in FILE (Argon2id);\n"
     "                          every later command then asks for it (also from\n"
     "                          DUET_PASSPHRASE_FILE or a prompt on the terminal)\n"},
    {"id", duet_cmd_id, "", "Show this device's id, name and public key.", ""},
    {"status", duet_cmd_status, "",
     "Show whether this device is paired, with whom, what waits to be sent, the last sync.",
     ""},
    {"note", duet_cmd_note, "TEXT|-",
     "Write a note to your partner (from TEXT, or from standard input with -).",
     "The text must be UTF-8, not empty, at most 64 KiB; from standard input it is kept\n"
     "byte for byte, a final newline included. It is sealed in the outbox at once and\n"
     "sent at the next sync.\n"},
    {"inbox", duet_cmd_inbox, "[--limit N] [--peek]",
     "List the conversation, oldest first, with each item's status.",
     "options:\n"
     "  --limit N   only the last N items\n"
     "  --peek      do not mark your partner's items as read\n"},
    {NULL, NULL, NULL, NULL, NULL},
};

const duet_cmd_t *duet_cli_find(const char *name)
{
    for (const duet_cmd_t *c = duet_commands; c->name != NULL; c++) {
        if (strcmp(c->name, name) == 0) {
            return c;
        }
    }
    return NULL;
}
