/*
 * Fuzz the pairing-code parser (what a user types, or what a script passes on the command
 * line). Whatever the input, the parser must not read out of bounds, and a code it accepts
 * must be normalised: its text parses again to the same code, is lower case, and fits.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "code.h"
#include "wordlist.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    duet_code_t c, again;
    if (duet_code_parse(&c, (const char *)data, size) != DUET_OK) {
        return 0;
    }
    if (c.text_len == 0 || c.text_len > DUET_CODE_MAX_LEN || strlen(c.text) != c.text_len ||
        c.nameplate < DUET_CODE_NAMEPLATE_MIN || c.nameplate > DUET_CODE_NAMEPLATE_MAX ||
        c.words[0] >= DUET_WORDLIST_LEN || c.words[1] >= DUET_WORDLIST_LEN ||
        c.words[0] == c.words[1]) {
        abort();
    }
    for (size_t i = 0; i < c.text_len; i++) {
        char ch = c.text[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-')) {
            abort();
        }
    }
    if (duet_code_parse(&again, c.text, c.text_len) != DUET_OK ||
        again.nameplate != c.nameplate || again.words[0] != c.words[0] ||
        again.words[1] != c.words[1] || strcmp(again.text, c.text) != 0) {
        abort();
    }
    duet_code_dispose(&c);
    duet_code_dispose(&again);
    return 0;
}
