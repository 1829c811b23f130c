/* Helpers for the benchmarks: a monotonic clock, peak RSS, and one JSON line per figure. */
#ifndef DUET_BENCHUTIL_H
#define DUET_BENCHUTIL_H

#include <stdint.h>
#include <sys/types.h>

double bench_now(void);        /* seconds, monotonic */
long bench_maxrss_kib(void);   /* peak resident set of this process */
/* Print {"bench":name,"figure":label,"value":v,"unit":unit} and a readable line on stderr. */
void bench_report(const char *bench, const char *figure, double value, const char *unit);
/* A temporary folder (malloc'd path), removed by bench_rmrf. */
char *bench_tmpdir(void);
void bench_rmrf(const char *path);
/* Run `duet --home HOME --json EXTRA...` in the background, its stdout to out_fd (or
 * /dev/null when out_fd < 0). */
pid_t bench_spawn_duet(const char *duet, const char *home, char *const extra[], int out_fd);
/* A TCP port on 127.0.0.1 free a moment ago. */
int bench_free_port(void);
/* A "Field:" of /proc/PID/status in KiB (VmRSS:, VmHWM:), -1 if unreadable. */
long bench_proc_kib(pid_t pid, const char *field);

#endif
