/*
 * duet — the pairing-code word list.
 *
 * 1163 short English words, curated from the EFF short word list 1 (CC BY 3.0 US, Electronic
 * Frontier Foundation; see docs/wordlist.md for the words removed and why). Two words give
 * log2(1163^2) = 20.37 bits of secret. The array is generated at build time from
 * core/wordlist.txt; it is sorted, lower case, ASCII, with no duplicates.
 */
#ifndef DUET_WORDLIST_H
#define DUET_WORDLIST_H

#define DUET_WORDLIST_LEN 1163

extern const char *const duet_wordlist[DUET_WORDLIST_LEN];

#endif /* DUET_WORDLIST_H */
