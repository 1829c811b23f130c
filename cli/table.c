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
    {"voice", duet_cmd_voice, "FILE [--caption TEXT] | save ID OUTFILE | play ID | list",
     "Send a voice note (an audio file), or save, play or list the ones you have.",
     "  voice FILE [--caption TEXT]    seal the recording (WAV, Ogg Opus, Ogg Vorbis, FLAC or\n"
     "                                 MP3, at most 50 MiB) and queue it; the file itself is\n"
     "                                 never changed. The sound travels after the note, in\n"
     "                                 pieces, and picks up where it stopped if interrupted\n"
     "  voice save ID OUTFILE [--wait SEC]\n"
     "                                 write the original recording, byte for byte, once it\n"
     "                                 has arrived; --wait: wait up to SEC seconds for it\n"
     "  voice play ID                  play it (paplay, pw-play, ffplay, or aplay for WAV)\n"
     "  voice list                     every voice note and how far it has arrived\n"
     "Ids can be shortened to their first 4 or more characters. A file named like a\n"
     "subcommand is given with a path (./save).\n"},
    {"inbox", duet_cmd_inbox, "[--limit N] [--peek]",
     "List the conversation, oldest first, with each item's status.",
     "options:\n"
     "  --limit N   only the last N items\n"
     "  --peek      do not mark your partner's items as read\n"},
    {"pair", duet_cmd_pair, "[CODE] [--listen HOST:PORT | --connect HOST:PORT | --relay URL]",
     "Pair with your partner's device using a short code.",
     "One device makes the code and waits; the other types it:\n"
     "  duet pair --listen 0.0.0.0:7000           prints a code, waits for the partner\n"
     "  duet pair 1234-word-word --connect IP:7000  joins with that code\n"
     "  duet pair / duet pair CODE                 the same on your home network, no address\n"
     "  duet pair --relay URL / duet pair CODE --relay URL   meeting through a relay\n"
     "A code works once: a wrong code fails on both sides and pairs nobody.\n"
     "options:\n"
     "  --timeout SEC   give up after SEC seconds (default 300)\n"},
    {"verify", duet_cmd_verify, "[--confirm]",
     "Show the safety number to compare with your partner's; --confirm once it matches.", ""},
    {"sync", duet_cmd_sync, "--connect HOST:PORT | --relay URL | --lan [--timeout SEC]",
     "Exchange everything waiting, both ways, once, then stop.",
     "Exits 0 only when everything queued here reached the partner (or, through a relay,\n"
     "was stored by the relay). Voice notes go both ways too, each resuming where it\n"
     "stopped; their progress shows as a bar on a terminal ({\"event\":\"progress\"}\n"
     "records with --json).\n"
     "options:\n"
     "  --timeout SEC   give up after SEC seconds (default 60)\n"},
    {"daemon", duet_cmd_daemon, "[--listen HOST:PORT] [--relay URL] [--no-lan] [--idle-timeout SEC]",
     "Stay in touch: sync with the partner whenever both are reachable.",
     "Writes events (received, delivered, read, partner online/offline) as it goes; with\n"
     "--json one JSON object per line. SIGINT or SIGTERM stops it cleanly.\n"
     "options:\n"
     "  --listen HOST:PORT  where the partner can reach this device\n"
     "  --relay URL         also keep in touch through this relay\n"
     "  --no-lan            no LAN discovery (and no listening unless --listen)\n"
     "  --idle-timeout SEC  drop a connection silent (or not reading) for SEC seconds\n"
     "                      (default 60; keepalives go out every SEC/3)\n"},
    {"watch", duet_cmd_watch, "", "Follow the running daemon's events.", ""},
    {"checkin", duet_cmd_checkin, "SUBCOMMAND ...",
     "Shared check-ins: a few questions, answered apart, revealed together.",
     "subcommands:\n"
     "  templates                      the built-in rituals and their questions\n"
     "  start TEMPLATE|FILE [--every daily|weekly[:DAY]] [--open]\n"
     "                                 propose a ritual (a template, or a .json/.toml file\n"
     "                                 of your own questions); --open: answers visible as\n"
     "                                 they arrive, if your partner accepts that\n"
     "  accept RITUAL                  accept your partner's proposal; the first one is due\n"
     "                                 at once, the next ones by the rhythm\n"
     "  decline RITUAL                 decline a proposal, withdraw yours, or stop a ritual\n"
     "  list                           the rituals and their state\n"
     "  due                            what is waiting for your answer\n"
     "  answer INSTANCE [--answers FILE|-]\n"
     "                                 answer: a JSON object {question id: text or 1-5},\n"
     "                                 or questions asked on the terminal. An answer is\n"
     "                                 sealed when sent and cannot be changed; it opens\n"
     "                                 for your partner only when theirs is in\n"
     "  show INSTANCE                  both answers, or whether your partner's is waiting,\n"
     "                                 sealed or revealed\n"
     "  history [--ritual R] [--svg FILE]\n"
     "                                 every check-in with both answers, scale answers as\n"
     "                                 sparklines; --svg writes a chart over the weeks\n"
     "Ids can be shortened to their first 4 or more characters.\n"},
    {"pause", duet_cmd_pause, "[--until YYYY-MM-DD] [--note TEXT]",
     "Ask gently to slow down for a while; your partner sees it first thing.", ""},
    {"resume", duet_cmd_resume, "[--note TEXT]", "Say you are ready to go on again.", ""},
    {"agree", duet_cmd_agree, "add TEXT | list | accept ID | change ID TEXT",
     "Shared agreements: boundaries and plans that count once you both accept them.",
     "An agreement counts as agreed only when both of you have accepted its current version;\n"
     "changing it makes a new version that both accept again.\n"},
    {"milestone", duet_cmd_milestone, "TEXT",
     "Mark a step worth celebrating; it is shown in your history.", ""},
    {"relay", duet_cmd_relay, "serve --listen HOST:PORT --data DIR [--config FILE] [options]",
     "Run a relay: mailboxes and a pairing rendezvous that see only ciphertext.",
     "Prints the relay's URL (duet://HOST:PORT/KEY), which clients pass as --relay URL; it\n"
     "pins the relay's key, kept in DIR with the mailboxes. SIGINT or SIGTERM stops it.\n"
     "options:\n"
     "  --listen HOST:PORT      where to listen (numeric address; port 0: any free one)\n"
     "  --data DIR              the relay's folder (made if absent): relay.key, relay.db\n"
     "  --config FILE           settings, one 'name = value' per line\n"
     "  --url-host HOST         the host name clients use, for the URL\n"
     "  --SETTING VALUE         any setting, e.g. --mailbox-items 10000, --ttl-s 2592000,\n"
     "                          --max-connections 4096 (docs/relay.md lists them all)\n"},
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
