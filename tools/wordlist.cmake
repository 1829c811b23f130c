# Turns core/wordlist.txt (one word a line) into a C array: cmake -DIN=... -DOUT=... -P this.
file(STRINGS ${IN} words)
list(LENGTH words n)
set(body "")
foreach(w IN LISTS words)
    string(APPEND body "    \"${w}\",\n")
endforeach()
file(WRITE ${OUT}.tmp
"/* Generated from core/wordlist.txt by tools/wordlist.cmake; do not edit. */\n"
"#include \"wordlist.h\"\n\n"
"const char *const duet_wordlist[DUET_WORDLIST_LEN] = {\n${body}};\n"
"/* ${n} words */\n")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
