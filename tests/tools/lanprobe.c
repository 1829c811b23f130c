/*
 * duet-lanprobe: runs net/discovery alone, for the namespace tests and the benchmark.
 *
 *   duet-lanprobe (--secret HEX | --nameplate N) [--port P] [--seek] [options]
 *       Discovery under the key of a 32-byte pair secret (hex) or of a pairing nameplate.
 *       --port P announces TCP port P (nothing listens: the probe only reports); --seek
 *       queries. Prints JSON lines on stdout:
 *         {"event":"started","interfaces":N}
 *         {"event":"found","addr":"10.0.0.2","family":4,"scope":0,"port":P,"ms":T,"us":U}
 *         {"event":"done","found":N,"ms":T,"cpu_ms":C,...counters}
 *       ms (us) is the time since the probe started. Exits after --count N reports (default 1;
 *       0: run until --timeout-ms) or at --timeout-ms (default 10000), or on SIGTERM/SIGINT;
 *       status 0 when something was found, 1 when nothing was, 2 on a usage or start error.
 *       Options: --window-ms N, --rescan-ms N, --udp-port N, --group4 A, --group6 A,
 *       --no-ipv4, --no-ipv6, --loopback, --iface NAME (only this one), --skew-ms N (pretend
 *       the wall clock is off), --announce-ms N / --query-ms N (a fixed interval instead of
 *       the backoff).
 *
 *   duet-lanprobe --flood RATE [--duration-ms N] [--size B] [--udp-port N] [--group4 A]
 *       Sends RATE random datagrams per second (B bytes, default a beacon's 56) to the IPv4
 *       group on every multicast interface, for N ms (default 5000); prints
 *       {"event":"flood","sent":N,"ms":T}.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <jansson.h>
#include <net/if.h>
#include <netinet/in.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "discovery.h"

typedef struct probe {
    uv_loop_t *loop;
    duet_lan_t *lan;
    uv_timer_t timeout;
    uv_signal_t sigterm, sigint;
    uint64_t start_ns;
    unsigned count;
    unsigned found;
    bool done;
} probe_t;

static uint64_t elapsed_ms(const probe_t *p)
{
    return (uv_hrtime() - p->start_ns) / 1000000u;
}

static uint64_t elapsed_us(const probe_t *p)
{
    return (uv_hrtime() - p->start_ns) / 1000u;
}

static void emit(json_t *obj)
{
    char *s = json_dumps(obj, JSON_COMPACT);
    if (s != NULL) {
        printf("%s\n", s);
        fflush(stdout);
        free(s);
    }
    json_decref(obj);
}

static uint64_t cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000u +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000u;
}

static void finish(probe_t *p)
{
    if (p->done) {
        return;
    }
    p->done = true;
    const duet_discovery_stats_t *s = duet_lan_stats(p->lan);
    const duet_lan_counters_t *c = duet_lan_counters(p->lan);
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string("done"));
    json_object_set_new(o, "found", json_integer(p->found));
    json_object_set_new(o, "ms", json_integer((json_int_t)elapsed_ms(p)));
    json_object_set_new(o, "cpu_ms", json_integer((json_int_t)cpu_ms()));
    json_object_set_new(o, "received", json_integer((json_int_t)s->received));
    json_object_set_new(o, "bad_size", json_integer((json_int_t)s->bad_size));
    json_object_set_new(o, "unknown", json_integer((json_int_t)s->unknown));
    json_object_set_new(o, "own", json_integer((json_int_t)s->own));
    json_object_set_new(o, "malformed", json_integer((json_int_t)s->malformed));
    json_object_set_new(o, "rate_limited", json_integer((json_int_t)s->rate_limited));
    json_object_set_new(o, "recognised", json_integer((json_int_t)s->recognised));
    json_object_set_new(o, "replies", json_integer((json_int_t)s->replies));
    json_object_set_new(o, "sent_queries", json_integer((json_int_t)s->sent_queries));
    json_object_set_new(o, "sent_announces", json_integer((json_int_t)s->sent_announces));
    json_object_set_new(o, "datagrams_sent", json_integer((json_int_t)c->beacons_sent));
    json_object_set_new(o, "send_errors", json_integer((json_int_t)c->send_errors));
    json_object_set_new(o, "ifaces_added", json_integer((json_int_t)c->ifaces_added));
    json_object_set_new(o, "ifaces_removed", json_integer((json_int_t)c->ifaces_removed));
    emit(o);
    duet_lan_stop(p->lan);
    uv_close((uv_handle_t *)&p->timeout, NULL);
    uv_close((uv_handle_t *)&p->sigterm, NULL);
    uv_close((uv_handle_t *)&p->sigint, NULL);
}

static void on_found(void *ctx, const struct sockaddr *addr)
{
    probe_t *p = ctx;
    char text[INET6_ADDRSTRLEN] = "";
    unsigned port, scope = 0;
    int family;
    if (addr->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
        uv_ip4_name(in, text, sizeof text);
        port = ntohs(in->sin_port);
        family = 4;
    } else {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
        uv_ip6_name(in6, text, sizeof text);
        port = ntohs(in6->sin6_port);
        scope = in6->sin6_scope_id;
        family = 6;
    }
    p->found++;
    emit(json_pack("{s:s, s:s, s:i, s:i, s:i, s:I, s:I}", "event", "found", "addr", text, "family",
                   family, "scope", (int)scope, "port", (int)port, "ms", (json_int_t)elapsed_ms(p),
                   "us", (json_int_t)elapsed_us(p)));
    if (p->count != 0 && p->found >= p->count) {
        finish(p);
    }
}

static void on_timeout(uv_timer_t *t)
{
    finish(t->data);
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)signum;
    finish(s->data);
}

static int usage(void)
{
    fprintf(stderr, "usage: duet-lanprobe (--secret HEX | --nameplate N) [--port P] [--seek] "
                    "[options] | --flood RATE [options] (see the source's preamble)\n");
    return 2;
}

static bool parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v > max) {
        return false;
    }
    *out = v;
    return true;
}

/* ---- flood mode ---------------------------------------------------------------------- */

static int flood(uint64_t rate, uint64_t duration_ms, uint64_t size, uint16_t udp_port,
                 const char *group)
{
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(udp_port)};
    if (inet_pton(AF_INET, group, &to.sin_addr) != 1) {
        return usage();
    }
    int fds[16];
    size_t nfd = 0;
    struct ifaddrs *all = NULL;
    if (getifaddrs(&all) != 0) {
        return 2;
    }
    for (struct ifaddrs *e = all; e != NULL && nfd < 16; e = e->ifa_next) {
        if (e->ifa_addr == NULL || e->ifa_addr->sa_family != AF_INET || !(e->ifa_flags & IFF_UP) ||
            !(e->ifa_flags & IFF_MULTICAST) || (e->ifa_flags & IFF_LOOPBACK)) {
            continue;
        }
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        struct in_addr ifa = ((struct sockaddr_in *)e->ifa_addr)->sin_addr;
        unsigned char ttl = 1;
        if (fd < 0 || setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &ifa, sizeof ifa) != 0 ||
            setsockopt(fd, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof ttl) != 0) {
            if (fd >= 0) {
                close(fd);
            }
            continue;
        }
        fds[nfd++] = fd;
    }
    freeifaddrs(all);
    if (nfd == 0) {
        fprintf(stderr, "duet-lanprobe: no multicast interface to flood\n");
        return 2;
    }
    /* Pace in 10 ms ticks: rate/100 datagrams per tick and interface. */
    uint8_t buf[2048];
    uint64_t sent = 0, start = uv_hrtime(), ticks = duration_ms / 10u;
    for (uint64_t t = 0; t < ticks; t++) {
        uint64_t per_tick = (rate * (t + 1)) / 100u - (rate * t) / 100u;
        for (uint64_t i = 0; i < per_tick; i++) {
            randombytes_buf(buf, size);
            for (size_t f = 0; f < nfd; f++) {
                if (sendto(fds[f], buf, size, 0, (struct sockaddr *)&to, sizeof to) ==
                    (ssize_t)size) {
                    sent++;
                }
            }
        }
        uint64_t next = start + (t + 1) * 10000000u;
        uint64_t now = uv_hrtime();
        if (next > now) {
            struct timespec ts = {(time_t)((next - now) / 1000000000u),
                                  (long)((next - now) % 1000000000u)};
            nanosleep(&ts, NULL);
        }
    }
    for (size_t f = 0; f < nfd; f++) {
        close(fds[f]);
    }
    json_t *o = json_pack("{s:s, s:I, s:I}", "event", "flood", "sent", (json_int_t)sent, "ms",
                          (json_int_t)((uv_hrtime() - start) / 1000000u));
    emit(o);
    return 0;
}

/* ---- main ---------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    if (sodium_init() < 0) {
        return 2;
    }
    uint8_t key[DUET_DISCOVERY_KEY_BYTES];
    bool have_key = false, seek = false;
    uint64_t port = 0, timeout_ms = 10000, count = 1, v, rate = 0, duration_ms = 5000,
             size = DUET_DISCOVERY_BEACON_BYTES;
    duet_lan_options_t opt;
    memset(&opt, 0, sizeof opt);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes = true;
        if (strcmp(a, "--secret") == 0 && val != NULL) {
            uint8_t secret[DUET_DISCOVERY_PAIR_SECRET_BYTES];
            size_t n = 0;
            if (sodium_hex2bin(secret, sizeof secret, val, strlen(val), NULL, &n, NULL) != 0 ||
                n != sizeof secret) {
                return usage();
            }
            duet_discovery_key_paired(key, secret);
            sodium_memzero(secret, sizeof secret);
            have_key = true;
        } else if (strcmp(a, "--nameplate") == 0 && val != NULL) {
            if (duet_discovery_key_pairing(key, (const uint8_t *)val, strlen(val)) != DUET_OK) {
                return usage();
            }
            have_key = true;
        } else if (strcmp(a, "--port") == 0 && val != NULL && parse_u64(val, 65535, &port)) {
        } else if (strcmp(a, "--timeout-ms") == 0 && val != NULL &&
                   parse_u64(val, 86400000, &timeout_ms)) {
        } else if (strcmp(a, "--count") == 0 && val != NULL && parse_u64(val, 1000000, &count)) {
        } else if (strcmp(a, "--window-ms") == 0 && val != NULL && parse_u64(val, UINT32_MAX, &v) &&
                   v > 0) {
            opt.timing.window_ms = (uint32_t)v;
        } else if (strcmp(a, "--rescan-ms") == 0 && val != NULL && parse_u64(val, UINT32_MAX, &v) &&
                   v > 0) {
            opt.rescan_ms = (uint32_t)v;
        } else if (strcmp(a, "--announce-ms") == 0 && val != NULL &&
                   parse_u64(val, UINT32_MAX, &v) && v > 0) {
            opt.timing.announce_min_ms = opt.timing.announce_max_ms = (uint32_t)v;
        } else if (strcmp(a, "--query-ms") == 0 && val != NULL && parse_u64(val, UINT32_MAX, &v) &&
                   v > 0) {
            opt.timing.query_min_ms = opt.timing.query_max_ms = (uint32_t)v;
        } else if (strcmp(a, "--udp-port") == 0 && val != NULL && parse_u64(val, 65535, &v) &&
                   v > 0) {
            opt.udp_port = (uint16_t)v;
        } else if (strcmp(a, "--group4") == 0 && val != NULL) {
            opt.group4 = val;
        } else if (strcmp(a, "--iface") == 0 && val != NULL) {
            opt.only_iface = val;
        } else if (strcmp(a, "--group6") == 0 && val != NULL) {
            opt.group6 = val;
        } else if (strcmp(a, "--skew-ms") == 0 && val != NULL) {
            char *end;
            long long s = strtoll(val, &end, 10);
            if (*end != '\0') {
                return usage();
            }
            opt.wall_offset_ms = s;
        } else if (strcmp(a, "--flood") == 0 && val != NULL && parse_u64(val, 10000000, &rate)) {
        } else if (strcmp(a, "--duration-ms") == 0 && val != NULL &&
                   parse_u64(val, 3600000, &duration_ms)) {
        } else if (strcmp(a, "--size") == 0 && val != NULL && parse_u64(val, 2048, &size) &&
                   size > 0) {
        } else {
            takes = false;
            if (strcmp(a, "--seek") == 0) {
                seek = true;
            } else if (strcmp(a, "--no-ipv4") == 0) {
                opt.no_ipv4 = true;
            } else if (strcmp(a, "--no-ipv6") == 0) {
                opt.no_ipv6 = true;
            } else if (strcmp(a, "--loopback") == 0) {
                opt.loopback = true;
            } else {
                return usage();
            }
        }
        i += takes;
    }
    if (rate != 0) {
        return flood(rate, duration_ms, size,
                     opt.udp_port != 0 ? opt.udp_port : DUET_DISCOVERY_UDP_PORT,
                     opt.group4 != NULL ? opt.group4 : DUET_DISCOVERY_GROUP4);
    }
    if (!have_key) {
        return usage();
    }

    probe_t p;
    memset(&p, 0, sizeof p);
    p.loop = uv_default_loop();
    p.start_ns = uv_hrtime();
    p.count = (unsigned)count;
    duet_err_t err = duet_lan_start(&p.lan, p.loop, key, (uint16_t)port, seek, &opt, on_found, &p);
    sodium_memzero(key, sizeof key);
    if (err != DUET_OK) {
        fprintf(stderr, "duet-lanprobe: %s\n", duet_strerror(err));
        return 2;
    }
    emit(
        json_pack("{s:s, s:i}", "event", "started", "interfaces", (int)duet_lan_interfaces(p.lan)));
    uv_timer_init(p.loop, &p.timeout);
    p.timeout.data = &p;
    uv_timer_start(&p.timeout, on_timeout, timeout_ms, 0);
    uv_signal_init(p.loop, &p.sigterm);
    uv_signal_init(p.loop, &p.sigint);
    p.sigterm.data = &p;
    p.sigint.data = &p;
    uv_signal_start(&p.sigterm, on_signal, SIGTERM);
    uv_signal_start(&p.sigint, on_signal, SIGINT);
    uv_run(p.loop, UV_RUN_DEFAULT);
    uv_loop_close(p.loop);
    return p.found > 0 ? 0 : 1;
}
