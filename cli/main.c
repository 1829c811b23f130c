/* duet command — placeholder entry point, replaced by the dispatch table. */
#include <stdio.h>

int main(void)
{
    puts("duet " DUET_VERSION);
    return 0;
}
