/*
 * duet — pairing codes, NAMEPLATE-WORD-WORD.
 *
 * A pairing code such as "417-olive-kayak" is what one partner reads out and the other types.
 * The NAMEPLATE (a decimal number 1..9999) is public: it names the rendezvous so the two
 * devices find each other. The two WORDS are the secret: they are drawn uniformly from the
 * 1163-word list of core/wordlist.h, distinct from each other, giving log2(1163 * 1162) =
 * 20.37 bits, and they become the CPace password. An attacker gets one guess per code (the
 * pairing burns the code after a failure), so the odds of a guess are 1 in 1,351,406.
 *
 * Conventions of this module:
 *  - Nothing here does I/O; randomness comes from the caller's duet_rng_t.
 *  - duet_code_t is a plain struct the caller owns. It holds a secret: wipe it with
 *    duet_code_dispose when done.
 *  - Parsing is forgiving about form and strict about content: case-insensitive, surrounding
 *    whitespace ignored, fields separated by '-' or spaces (a single '-' with or without
 *    spaces around it, or a run of spaces/tabs). Anything else — a word not in the list, the
 *    same word twice (never generated, so a typo), a nameplate outside 1..9999 or with a
 *    leading zero, a byte that is not ASCII, more or fewer than three fields — is
 *    DUET_EBADCODE, at once, so a typo costs nothing: the one guess is not spent.
 *  - The normalised form is lower case, "N-word-word"; it is what both sides feed to CPace.
 */
#ifndef DUET_CODE_H
#define DUET_CODE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "rng.h"

#define DUET_CODE_NAMEPLATE_MIN 1u
#define DUET_CODE_NAMEPLATE_MAX 9999u
#define DUET_CODE_MAX_WORD 8u   /* longest word the parser accepts (the list's is 5) */
#define DUET_CODE_MAX_LEN 32u   /* longest normalised code, without its NUL */
#define DUET_CODE_MAX_INPUT 128u /* longest text duet_code_parse looks at */

typedef struct duet_code {
    uint16_t nameplate;                 /* 1..9999, public */
    uint16_t words[2];                  /* indexes into duet_wordlist, distinct; secret */
    char text[DUET_CODE_MAX_LEN + 1];   /* normalised "N-word-word", NUL-terminated; secret */
    size_t text_len;
} duet_code_t;

/*
 * Make a fresh code. nameplate is the one the rendezvous assigned (1..9999), or 0 to draw
 * one uniformly at random. The two words are drawn uniformly (rejection sampling, no modulo
 * bias) and distinct. DUET_ERANGE for a nameplate over 9999; DUET_EINTERNAL if the rng is
 * broken (keeps returning the few values that are rejected). code is zeroed on error.
 */
duet_err_t duet_code_generate(duet_code_t *code, uint16_t nameplate,
                              duet_rng_t rng) DUET_MUST_CHECK;

/*
 * Parse what the user typed, text[0..len) (need not be NUL-terminated; a NUL inside is
 * refused). DUET_EBADCODE for anything that is not a code this module could have generated,
 * see the preamble. code is zeroed on error.
 */
duet_err_t duet_code_parse(duet_code_t *code, const char *text, size_t len) DUET_MUST_CHECK;

/* Wipe a code. */
void duet_code_dispose(duet_code_t *code);

#endif /* DUET_CODE_H */
