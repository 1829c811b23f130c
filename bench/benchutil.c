/* see benchutil.h */
#define _XOPEN_SOURCE 700
#include "benchutil.h"

#include <arpa/inet.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
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

pid_t bench_spawn_duet(const char *duet, const char *home, char *const extra[], int out_fd)
{
    char *argv[16];
    int n = 0;
    argv[n++] = (char *)duet;
    argv[n++] = "--home";
    argv[n++] = (char *)home;
    argv[n++] = "--json";
    for (int i = 0; extra[i] != NULL && n < 15; i++) {
        argv[n++] = extra[i];
    }
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        if (out_fd >= 0) {
            dup2(out_fd, 1);
        } else if (freopen("/dev/null", "w", stdout) == NULL) {
            _exit(127);
        }
        execv(duet, argv);
        _exit(127);
    }
    return pid;
}

int bench_free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    bind(s, (struct sockaddr *)&a, sizeof a);
    getsockname(s, (struct sockaddr *)&a, &l);
    close(s);
    return ntohs(a.sin_port);
}

long bench_proc_kib(pid_t pid, const char *field)
{
    char path[64], line[256];
    long v = -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, field, strlen(field)) == 0) {
            v = strtol(line + strlen(field) + 1, NULL, 10);
        }
    }
    fclose(f);
    return v;
}
