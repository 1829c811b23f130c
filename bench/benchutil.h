/* Helpers for the benchmarks: a monotonic clock, peak RSS, and one JSON line per figure. */
#ifndef DUET_BENCHUTIL_H
#define DUET_BENCHUTIL_H

#include <stdint.h>

double bench_now(void);        /* seconds, monotonic */
long bench_maxrss_kib(void);   /* peak resident set of this process */
/* Print {"bench":name,"figure":label,"value":v,"unit":unit} and a readable line on stderr. */
void bench_report(const char *bench, const char *figure, double value, const char *unit);
/* A temporary folder (malloc'd path), removed by bench_rmrf. */
char *bench_tmpdir(void);
void bench_rmrf(const char *path);

#endif
