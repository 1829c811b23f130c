/*
 * duet — LAN discovery over UDP multicast, on libuv: the sockets around core/discovery.h.
 *
 * The symbols of this module are duet_lan_*: the sans-I/O engine it drives owns the
 * duet_discovery_* names (and the file name discovery.h, which this header includes).
 *
 * What it does:
 *  - Finds every interface that is up and running and can multicast (getifaddrs: IFF_UP,
 *    IFF_RUNNING, IFF_MULTICAST; loopback only when an option asks, IPv4 only), takes its
 *    first IPv4 address and its IPv6 link-local address, and for each of them opens a send
 *    socket bound to that address (an ephemeral port: unicast answers come back to it, so
 *    several processes on one host never steal each other's answers) and joins the group on
 *    that interface on a shared receive socket bound to the group port (SO_REUSEADDR).
 *  - Re-scans the interfaces every rescan_ms (5 s): an interface that went down is dropped,
 *    one that came (back) up is joined, and a new interface kicks the engine (a query and an
 *    announce at once), so partners find each other again right after a link returns.
 *  - Sends each due beacon on every interface (a fresh beacon per interface), hop limit 1,
 *    multicast loop on (so two devices on one host can test together; the engine ignores its
 *    own beacons). Answers to queries go back by unicast to the query's source address and
 *    port, at once. Sends are uv_udp_try_send: a datagram that cannot leave now is dropped,
 *    as UDP would; the schedule sends another.
 *  - Reports "the partner listens at ADDRESS, TCP port P" through the found callback, with
 *    the IPv6 scope id set for a link-local address, ready for uv_tcp_connect. Reports are
 *    rate-limited by the engine per source address; the caller connects and runs Noise KK
 *    (or, while pairing, CPace), which decides whether it really is the partner.
 *
 * Conventions:
 *  - One object per discovery key (paired key or pairing key), on the caller's loop.
 *    Everything runs on the loop thread; no call may come from another thread.
 *  - duet_lan_stop() closes the handles; the object frees itself (and wipes its keys) in the
 *    last close callback, so the loop must run a little after it. It may be called from the
 *    found callback; the callback is not called again after it.
 *  - Time: the loop's monotonic clock (uv_now) for the schedule and the wall clock
 *    (CLOCK_REALTIME) for the beacon windows.
 */
#ifndef DUET_NET_DISCOVERY_H
#define DUET_NET_DISCOVERY_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "../core/discovery.h"

#define DUET_LAN_RESCAN_MS  5000u
#define DUET_LAN_MAX_IFACES 32u  /* interface/family pairs used at once; more are ignored */
#define DUET_LAN_RECV_BUF   128u /* longer datagrams are truncated, then refused by size */

typedef struct duet_lan duet_lan_t;

/* Options; a zeroed struct (or NULL) means the defaults. */
typedef struct duet_lan_options {
    uint16_t udp_port;  /* 0: DUET_DISCOVERY_UDP_PORT */
    const char *group4; /* NULL: DUET_DISCOVERY_GROUP4 */
    const char *group6; /* NULL: DUET_DISCOVERY_GROUP6 */
    bool no_ipv4, no_ipv6;
    bool loopback;                  /* tests: use the loopback interface too (IPv4) */
    const char *only_iface;         /* tests: use this interface only (e.g. "lo" with loopback) */
    uint32_t rescan_ms;             /* 0: DUET_LAN_RESCAN_MS */
    int64_t wall_offset_ms;         /* tests: pretend the wall clock is off by this much */
    duet_discovery_config_t timing; /* window and schedule; zero fields: defaults */
} duet_lan_options_t;

/* Counters of the net layer (the engine's are in duet_lan_stats). */
typedef struct duet_lan_counters {
    uint64_t beacons_sent; /* datagrams sent (one per interface per beacon, and replies) */
    uint64_t send_errors;
    uint64_t ifaces_added;
    uint64_t ifaces_removed;
    uint64_t found; /* found callbacks made */
} duet_lan_counters_t;

/* The partner listens at addr (sockaddr_in or sockaddr_in6, port = its TCP port, scope id
 * set for link-local IPv6). addr is valid for the call. */
typedef void (*duet_lan_found_cb)(void *ctx, const struct sockaddr *addr);

/*
 * Start discovery on loop for key (duet_discovery_key_paired or _pairing): tcp_port is our
 * listening port (0: we do not listen, so we never announce), seek asks to look for the
 * partner (a query at once, then retries with backoff until found; duet_lan_kick and
 * duet_lan_seek start again). cb is called for each report. opt may be NULL.
 * The key is copied into locked memory. Errors: DUET_EADDR (a group that does not parse or is
 * not multicast), DUET_ENET (no receive socket could be opened for any family; e.g. the group
 * port is taken without SO_REUSEADDR), DUET_ENOMEM. *out is NULL on error.
 */
duet_err_t duet_lan_start(duet_lan_t **out, uv_loop_t *loop,
                          const uint8_t key[static DUET_DISCOVERY_KEY_BYTES], uint16_t tcp_port,
                          bool seek, const duet_lan_options_t *opt, duet_lan_found_cb cb,
                          void *ctx) DUET_MUST_CHECK;

/* Our TCP port changed (0: not listening); a new port is announced at once. */
void duet_lan_set_port(duet_lan_t *lan, uint16_t tcp_port);

/* Start (true) or stop (false) looking for the partner. */
void duet_lan_seek(duet_lan_t *lan, bool on);

/* Something changed (e.g. the link to the partner dropped): re-scan the interfaces now,
 * announce and query at once, backoff reset. */
void duet_lan_kick(duet_lan_t *lan);

/* The engine's counters and the net layer's. */
const duet_discovery_stats_t *duet_lan_stats(const duet_lan_t *lan);
const duet_lan_counters_t *duet_lan_counters(const duet_lan_t *lan);

/* Interfaces (interface, family) in use now. */
size_t duet_lan_interfaces(const duet_lan_t *lan);

/* Stop and free (see the preamble). NULL is a no-op. */
void duet_lan_stop(duet_lan_t *lan);

#endif /* DUET_NET_DISCOVERY_H */
