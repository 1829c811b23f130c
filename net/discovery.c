/* see discovery.h */
#include "discovery.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sysrng.h"

/* One UDP socket: the shared receive socket of a family, or the send socket of one
 * interface and family. */
typedef struct lan_sock {
    uv_udp_t h;
    duet_lan_t *lan;
    bool is_rx;
    /* send sockets only: */
    char ifname[IF_NAMESIZE];
    unsigned ifindex;
    int family;
    struct sockaddr_storage addr;                       /* the interface address it is bound to */
    char addr_text[INET6_ADDRSTRLEN + IF_NAMESIZE + 2]; /* for the libuv calls, "a%if" */
    bool joined;                                        /* the group is joined on this interface */
    bool seen;                                          /* mark of the current re-scan */
    uint8_t buf[DUET_LAN_RECV_BUF];
} lan_sock_t;

struct duet_lan {
    uv_loop_t *loop;
    duet_discovery_t *eng; /* sodium_malloc: holds the keys */
    duet_lan_found_cb cb;
    void *ctx;
    uint16_t udp_port;
    bool no_ipv4, no_ipv6, loopback;
    char only_iface[IF_NAMESIZE]; /* empty: every interface */
    uint32_t rescan_ms;
    int64_t wall_offset_ms;
    struct sockaddr_in group4;
    struct sockaddr_in6 group6;
    char group4_text[INET_ADDRSTRLEN];
    char group6_text[INET6_ADDRSTRLEN];
    lan_sock_t *rx4, *rx6;
    lan_sock_t *ifaces[DUET_LAN_MAX_IFACES];
    size_t n_ifaces;
    uv_timer_t beacon_timer, rescan_timer;
    int open_handles;
    bool closing;
    duet_lan_counters_t counters;
};

static void arm(duet_lan_t *lan);
static void rescan(duet_lan_t *lan);

/* ---- clocks and addresses ------------------------------------------------------------ */

static uint64_t wall_ms(const duet_lan_t *lan)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) {
        return 0;
    }
    int64_t ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + lan->wall_offset_ms;
    return ms > 0 ? (uint64_t)ms : 0;
}

/* The engine's rate-limit id of a source: the IPv4 address, or the IPv6 address and scope. */
static size_t source_id(uint8_t id[static 20], const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        memcpy(id, &in->sin_addr, 4);
        return 4;
    }
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    memcpy(id, &in6->sin6_addr, 16);
    memcpy(id + 16, &in6->sin6_scope_id, 4);
    return 20;
}

static bool is_link_local6(const struct sockaddr_in6 *a)
{
    return a->sin6_addr.s6_addr[0] == 0xfe && (a->sin6_addr.s6_addr[1] & 0xc0) == 0x80;
}

/* ---- handles ------------------------------------------------------------------------- */

static void lan_free(duet_lan_t *lan)
{
    if (lan->eng != NULL) {
        duet_discovery_dispose(lan->eng);
        sodium_free(lan->eng);
    }
    free(lan);
}

static void on_handle_closed(uv_handle_t *h)
{
    duet_lan_t *lan = h->data;
    if (h->type == UV_UDP) {
        /* Every UDP handle is the first member of a lan_sock_t. */
        free((lan_sock_t *)(void *)h);
    }
    if (--lan->open_handles == 0 && lan->closing) {
        lan_free(lan);
    }
}

static void close_sock(lan_sock_t *s)
{
    uv_close((uv_handle_t *)&s->h, on_handle_closed);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    lan_sock_t *s = (lan_sock_t *)(void *)h;
    *buf = uv_buf_init((char *)s->buf, sizeof s->buf);
}

static void send_to(duet_lan_t *lan, lan_sock_t *s, const uint8_t *b, const struct sockaddr *to)
{
    uv_buf_t buf = uv_buf_init((char *)b, DUET_DISCOVERY_BEACON_BYTES);
    if (uv_udp_try_send(&s->h, &buf, 1, to) == (int)DUET_DISCOVERY_BEACON_BYTES) {
        lan->counters.beacons_sent++;
    } else {
        lan->counters.send_errors++;
    }
}

static void on_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr,
                    unsigned flags)
{
    (void)buf;
    lan_sock_t *s = (lan_sock_t *)(void *)h;
    duet_lan_t *lan = s->lan;
    if (nread <= 0 || addr == NULL || lan->closing) {
        return;
    }
    /* A truncated datagram was longer than any beacon: refused by its size. */
    size_t len = (flags & UV_UDP_PARTIAL) ? sizeof s->buf + 1 : (size_t)nread;
    uint8_t id[20];
    size_t id_len = source_id(id, addr);
    duet_discovery_rx_t rx;
    if (duet_discovery_receive(lan->eng, uv_now(lan->loop), wall_ms(lan), id, id_len, s->buf, len,
                               &rx) != DUET_OK) {
        return;
    }
    if (rx.reply) {
        send_to(lan, s, rx.reply_beacon, addr);
    }
    if (rx.port != 0) {
        struct sockaddr_storage to;
        memset(&to, 0, sizeof to);
        if (addr->sa_family == AF_INET) {
            memcpy(&to, addr, sizeof(struct sockaddr_in));
            ((struct sockaddr_in *)&to)->sin_port = htons(rx.port);
        } else {
            memcpy(&to, addr, sizeof(struct sockaddr_in6));
            ((struct sockaddr_in6 *)&to)->sin6_port = htons(rx.port);
        }
        lan->counters.found++;
        lan->cb(lan->ctx, (const struct sockaddr *)&to);
        if (lan->closing) {
            return;
        }
    }
    arm(lan); /* a report ends the query round */
}

static lan_sock_t *sock_new(duet_lan_t *lan, int family, bool is_rx)
{
    lan_sock_t *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return NULL;
    }
    if (uv_udp_init_ex(lan->loop, &s->h, (unsigned)family) != 0) {
        free(s);
        return NULL;
    }
    s->h.data = lan;
    s->lan = lan;
    s->is_rx = is_rx;
    s->family = family;
    lan->open_handles++;
    return s;
}

/* The shared receive socket of a family: bound to the group port on the wildcard address. */
static lan_sock_t *rx_open(duet_lan_t *lan, int family)
{
    lan_sock_t *s = sock_new(lan, family, true);
    if (s == NULL) {
        return NULL;
    }
    struct sockaddr_storage any;
    memset(&any, 0, sizeof any);
    unsigned flags = UV_UDP_REUSEADDR;
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&any;
        in->sin_family = AF_INET;
        in->sin_port = htons(lan->udp_port);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&any;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(lan->udp_port);
        flags |= UV_UDP_IPV6ONLY;
    }
    if (uv_udp_bind(&s->h, (const struct sockaddr *)&any, flags) != 0 ||
        uv_udp_recv_start(&s->h, on_alloc, on_recv) != 0) {
        close_sock(s);
        return NULL;
    }
    return s;
}

/* ---- interfaces ---------------------------------------------------------------------- */

static void iface_join(duet_lan_t *lan, lan_sock_t *s)
{
    lan_sock_t *rx = s->family == AF_INET ? lan->rx4 : lan->rx6;
    const char *group = s->family == AF_INET ? lan->group4_text : lan->group6_text;
    int r = uv_udp_set_membership(&rx->h, group, s->addr_text, UV_JOIN_GROUP);
    /* EADDRINUSE: still joined from before the interface went down (the kernel keeps a
     * socket's memberships across down/up). */
    s->joined = r == 0 || r == UV_EADDRINUSE;
}

static void iface_remove(duet_lan_t *lan, size_t i)
{
    lan_sock_t *s = lan->ifaces[i];
    if (s->joined) {
        lan_sock_t *rx = s->family == AF_INET ? lan->rx4 : lan->rx6;
        const char *group = s->family == AF_INET ? lan->group4_text : lan->group6_text;
        /* Fails when the interface is gone; nothing to undo then. */
        (void)uv_udp_set_membership(&rx->h, group, s->addr_text, UV_LEAVE_GROUP);
    }
    close_sock(s);
    lan->ifaces[i] = lan->ifaces[--lan->n_ifaces];
    lan->counters.ifaces_removed++;
}

/* Open the send socket of an interface address and join the group there. False when the
 * address cannot be used yet (e.g. an IPv6 address still in duplicate address detection):
 * the next re-scan tries again. */
static bool iface_add(duet_lan_t *lan, const char *name, const struct sockaddr *addr)
{
    if (lan->n_ifaces == DUET_LAN_MAX_IFACES) {
        return false;
    }
    int family = addr->sa_family;
    lan_sock_t *s = sock_new(lan, family, false);
    if (s == NULL) {
        return false;
    }
    snprintf(s->ifname, sizeof s->ifname, "%s", name);
    s->ifindex = if_nametoindex(name);
    char text[INET6_ADDRSTRLEN];
    if (family == AF_INET) {
        memcpy(&s->addr, addr, sizeof(struct sockaddr_in));
        ((struct sockaddr_in *)&s->addr)->sin_port = 0;
        uv_ip4_name((const struct sockaddr_in *)&s->addr, text, sizeof text);
        snprintf(s->addr_text, sizeof s->addr_text, "%s", text);
    } else {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&s->addr;
        memcpy(a6, addr, sizeof(struct sockaddr_in6));
        a6->sin6_port = 0;
        a6->sin6_scope_id = s->ifindex;
        uv_ip6_name(a6, text, sizeof text);
        snprintf(s->addr_text, sizeof s->addr_text, "%s%%%s", text, name);
    }
    if (s->ifindex == 0 || uv_udp_bind(&s->h, (const struct sockaddr *)&s->addr, 0) != 0 ||
        uv_udp_set_multicast_interface(&s->h, s->addr_text) != 0 ||
        uv_udp_set_multicast_ttl(&s->h, 1) != 0 || uv_udp_set_multicast_loop(&s->h, 1) != 0 ||
        uv_udp_recv_start(&s->h, on_alloc, on_recv) != 0) {
        close_sock(s);
        return false;
    }
    iface_join(lan, s);
    s->seen = true;
    lan->ifaces[lan->n_ifaces++] = s;
    lan->counters.ifaces_added++;
    return true;
}

/* Whether getifaddrs entry e is an address we beacon from. */
static bool usable(const duet_lan_t *lan, const struct ifaddrs *e)
{
    if (e->ifa_addr == NULL || e->ifa_name == NULL) {
        return false;
    }
    if (lan->only_iface[0] != '\0' && strcmp(e->ifa_name, lan->only_iface) != 0) {
        return false;
    }
    unsigned f = e->ifa_flags;
    if (!(f & IFF_UP) || !(f & IFF_RUNNING)) {
        return false;
    }
    int family = e->ifa_addr->sa_family;
    if (f & IFF_LOOPBACK) {
        /* Linux routes IPv4 multicast on lo when asked to; IPv6 link-local multicast not. */
        return lan->loopback && family == AF_INET && lan->rx4 != NULL;
    }
    if (!(f & IFF_MULTICAST)) {
        return false;
    }
    if (family == AF_INET) {
        return lan->rx4 != NULL;
    }
    return family == AF_INET6 && lan->rx6 != NULL &&
           is_link_local6((const struct sockaddr_in6 *)e->ifa_addr);
}

static bool same_addr(const lan_sock_t *s, const struct sockaddr *a)
{
    if (s->family != a->sa_family) {
        return false;
    }
    if (a->sa_family == AF_INET) {
        return memcmp(&((const struct sockaddr_in *)&s->addr)->sin_addr,
                      &((const struct sockaddr_in *)a)->sin_addr, 4) == 0;
    }
    return memcmp(&((const struct sockaddr_in6 *)&s->addr)->sin6_addr,
                  &((const struct sockaddr_in6 *)a)->sin6_addr, 16) == 0;
}

static lan_sock_t *find_iface(duet_lan_t *lan, const char *name, int family)
{
    for (size_t i = 0; i < lan->n_ifaces; i++) {
        lan_sock_t *s = lan->ifaces[i];
        if (s->family == family && strcmp(s->ifname, name) == 0) {
            return s;
        }
    }
    return NULL;
}

/* Bring the interface list up to date: keep what is still there, drop what went away or
 * changed address, add what is new (one address per interface and family). A new interface
 * kicks the engine, so a returning link is used at once. */
static void rescan(duet_lan_t *lan)
{
    struct ifaddrs *all = NULL;
    if (getifaddrs(&all) != 0) {
        return;
    }
    for (size_t i = 0; i < lan->n_ifaces; i++) {
        lan->ifaces[i]->seen = false;
    }
    /* Pass 1: what is still there exactly as it was. */
    for (const struct ifaddrs *e = all; e != NULL; e = e->ifa_next) {
        if (!usable(lan, e)) {
            continue;
        }
        lan_sock_t *s = find_iface(lan, e->ifa_name, e->ifa_addr->sa_family);
        if (s != NULL && same_addr(s, e->ifa_addr)) {
            s->seen = true;
        }
    }
    for (size_t i = lan->n_ifaces; i-- > 0;) {
        if (!lan->ifaces[i]->seen) {
            iface_remove(lan, i);
        }
    }
    /* Pass 2: new interfaces (or new addresses of ones just dropped). */
    bool added = false;
    for (const struct ifaddrs *e = all; e != NULL; e = e->ifa_next) {
        if (usable(lan, e) && find_iface(lan, e->ifa_name, e->ifa_addr->sa_family) == NULL) {
            added |= iface_add(lan, e->ifa_name, e->ifa_addr);
        }
    }
    freeifaddrs(all);
    /* A join that failed before (the interface was not ready) is tried again. */
    for (size_t i = 0; i < lan->n_ifaces; i++) {
        if (!lan->ifaces[i]->joined) {
            iface_join(lan, lan->ifaces[i]);
        }
    }
    if (added) {
        duet_discovery_kick(lan->eng, uv_now(lan->loop));
    }
}

/* ---- timers -------------------------------------------------------------------------- */

static void send_beacons(duet_lan_t *lan, duet_discovery_kind_t kind)
{
    uint64_t wall = wall_ms(lan);
    uint8_t b[DUET_DISCOVERY_BEACON_BYTES];
    for (size_t i = 0; i < lan->n_ifaces; i++) {
        lan_sock_t *s = lan->ifaces[i];
        duet_discovery_beacon(lan->eng, wall, kind, b);
        if (s->family == AF_INET) {
            send_to(lan, s, b, (const struct sockaddr *)&lan->group4);
        } else {
            struct sockaddr_in6 g = lan->group6;
            g.sin6_scope_id = s->ifindex;
            send_to(lan, s, b, (const struct sockaddr *)&g);
        }
    }
}

static void on_beacon_timer(uv_timer_t *t)
{
    duet_lan_t *lan = t->data;
    uint64_t now = uv_now(lan->loop);
    duet_discovery_kind_t kind;
    while ((kind = duet_discovery_poll(lan->eng, now)) != DUET_DISCOVERY_NONE) {
        send_beacons(lan, kind);
    }
    arm(lan);
}

static void arm(duet_lan_t *lan)
{
    uint64_t due = duet_discovery_next_timeout(lan->eng);
    if (due == UINT64_MAX) {
        uv_timer_stop(&lan->beacon_timer);
        return;
    }
    uint64_t now = uv_now(lan->loop);
    uv_timer_start(&lan->beacon_timer, on_beacon_timer, due > now ? due - now : 0, 0);
}

static void on_rescan_timer(uv_timer_t *t)
{
    duet_lan_t *lan = t->data;
    rescan(lan);
    arm(lan);
}

/* ---- API ----------------------------------------------------------------------------- */

static duet_err_t parse_groups(duet_lan_t *lan, const char *g4, const char *g6)
{
    if (uv_ip4_addr(g4, lan->udp_port, &lan->group4) != 0 ||
        !IN_MULTICAST(ntohl(lan->group4.sin_addr.s_addr)) ||
        uv_ip6_addr(g6, lan->udp_port, &lan->group6) != 0 ||
        !IN6_IS_ADDR_MULTICAST(&lan->group6.sin6_addr)) {
        return DUET_EADDR;
    }
    snprintf(lan->group4_text, sizeof lan->group4_text, "%s", g4);
    snprintf(lan->group6_text, sizeof lan->group6_text, "%s", g6);
    return DUET_OK;
}

duet_err_t duet_lan_start(duet_lan_t **out, uv_loop_t *loop,
                          const uint8_t key[static DUET_DISCOVERY_KEY_BYTES], uint16_t tcp_port,
                          bool seek, const duet_lan_options_t *opt, duet_lan_found_cb cb, void *ctx)
{
    if (out == NULL || loop == NULL || key == NULL || cb == NULL) {
        abort();
    }
    *out = NULL;
    duet_lan_options_t o;
    memset(&o, 0, sizeof o);
    if (opt != NULL) {
        o = *opt;
    }
    duet_lan_t *lan = calloc(1, sizeof *lan);
    if (lan == NULL) {
        return DUET_ENOMEM;
    }
    lan->loop = loop;
    lan->cb = cb;
    lan->ctx = ctx;
    lan->udp_port = o.udp_port != 0 ? o.udp_port : DUET_DISCOVERY_UDP_PORT;
    lan->no_ipv4 = o.no_ipv4;
    lan->no_ipv6 = o.no_ipv6;
    lan->loopback = o.loopback;
    if (o.only_iface != NULL) {
        snprintf(lan->only_iface, sizeof lan->only_iface, "%s", o.only_iface);
    }
    lan->rescan_ms = o.rescan_ms != 0 ? o.rescan_ms : DUET_LAN_RESCAN_MS;
    lan->wall_offset_ms = o.wall_offset_ms;
    duet_err_t err = parse_groups(lan, o.group4 != NULL ? o.group4 : DUET_DISCOVERY_GROUP4,
                                  o.group6 != NULL ? o.group6 : DUET_DISCOVERY_GROUP6);
    if (err != DUET_OK) {
        free(lan);
        return err;
    }
    lan->eng = sodium_malloc(sizeof *lan->eng);
    if (lan->eng == NULL) {
        free(lan);
        return DUET_ENOMEM;
    }
    duet_discovery_init(lan->eng, key, tcp_port, seek, &o.timing, duet_sysrng(), uv_now(loop));

    /* From here on, handles exist: failures go through duet_lan_stop. */
    uv_timer_init(loop, &lan->beacon_timer);
    uv_timer_init(loop, &lan->rescan_timer);
    lan->beacon_timer.data = lan;
    lan->rescan_timer.data = lan;
    lan->open_handles = 2;
    if (!lan->no_ipv4) {
        lan->rx4 = rx_open(lan, AF_INET);
    }
    if (!lan->no_ipv6) {
        lan->rx6 = rx_open(lan, AF_INET6);
    }
    if (lan->rx4 == NULL && lan->rx6 == NULL) {
        duet_lan_stop(lan);
        return DUET_ENET;
    }
    rescan(lan);
    uv_timer_start(&lan->rescan_timer, on_rescan_timer, lan->rescan_ms, lan->rescan_ms);
    arm(lan);
    *out = lan;
    return DUET_OK;
}

void duet_lan_set_port(duet_lan_t *lan, uint16_t tcp_port)
{
    duet_discovery_set_port(lan->eng, tcp_port, uv_now(lan->loop));
    arm(lan);
}

void duet_lan_seek(duet_lan_t *lan, bool on)
{
    duet_discovery_seek(lan->eng, on, uv_now(lan->loop));
    arm(lan);
}

void duet_lan_kick(duet_lan_t *lan)
{
    rescan(lan);
    duet_discovery_kick(lan->eng, uv_now(lan->loop));
    arm(lan);
}

const duet_discovery_stats_t *duet_lan_stats(const duet_lan_t *lan)
{
    return duet_discovery_stats(lan->eng);
}

const duet_lan_counters_t *duet_lan_counters(const duet_lan_t *lan)
{
    return &lan->counters;
}

size_t duet_lan_interfaces(const duet_lan_t *lan)
{
    return lan->n_ifaces;
}

void duet_lan_stop(duet_lan_t *lan)
{
    if (lan == NULL || lan->closing) {
        return;
    }
    lan->closing = true;
    uv_timer_stop(&lan->beacon_timer);
    uv_timer_stop(&lan->rescan_timer);
    uv_close((uv_handle_t *)&lan->beacon_timer, on_handle_closed);
    uv_close((uv_handle_t *)&lan->rescan_timer, on_handle_closed);
    if (lan->rx4 != NULL) {
        close_sock(lan->rx4);
    }
    if (lan->rx6 != NULL) {
        close_sock(lan->rx6);
    }
    for (size_t i = 0; i < lan->n_ifaces; i++) {
        close_sock(lan->ifaces[i]);
    }
    lan->n_ifaces = 0;
}
