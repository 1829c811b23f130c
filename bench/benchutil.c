/* see benchutil.h */
#define _XOPEN_SOURCE 700
#include "benchutil.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

long bench_maxrss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

void bench_report(const char *bench, const char *figure, double value, const char *unit)
{
    printf("{\"bench\":\"%s\",\"figure\":\"%s\",\"value\":%.6g,\"unit\":\"%s\"}\n", bench, figure,
           value, unit);
    fflush(stdout);
    fprintf(stderr, "  %-10s %-44s %14.6g %s\n", bench, figure, value, unit);
}

char *bench_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char t[4096];
    snprintf(t, sizeof t, "%s/duet-bench.XXXXXX", base && base[0] ? base : "/tmp");
    if (mkdtemp(t) == NULL) {
        abort();
    }
    return strdup(t);
}

static int rm1(const char *p, const struct stat *s, int f, struct FTW *w)
{
    (void)s, (void)f, (void)w;
    return remove(p);
}

void bench_rmrf(const char *path)
{
    (void)nftw(path, rm1, 16, FTW_DEPTH | FTW_PHYS);
}
