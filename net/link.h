/*
 * duet — the network link (net/link): one TCP connection carrying records for an engine.
 *
 * The only code that moves bytes between a socket and duet's engines, after BearSSL's
 * ssl_io.c: read bytes, feed the framing (net/frame.h) and Noise (core/noise.h), hand out
 * whole records; take records, seal and write them. docs/protocol/link.md gives the bytes.
 *
 * Modes:
 *  - DUET_LINK_KK: Noise_KK_25519_ChaChaPoly_BLAKE2b between paired partners, prologue
 *    "duet link". Both sides know both static keys; a responder hears only from the one
 *    partner key it was given: anyone else fails on message 1 (DUET_EAUTH, logged as
 *    "connection from an unknown device"), and the link closes without writing a byte.
 *  - DUET_LINK_NK: Noise_NK_25519_ChaChaPoly_BLAKE2b to a relay, prologue "duet relay";
 *    the client (initiator) knows the relay's static key, the relay learns nothing of the
 *    client's.
 *  - DUET_LINK_RAW: framing only (records of at most 65535 bytes, no encryption), for
 *    pairing, whose engine runs its own Noise handshake inside its messages.
 * Secure links check the protocol version in the handshake (DUET_EVERSION on a mismatch, on
 * both sides, with a log line naming both versions) and carry records of up to
 * DUET_LINK_MAX_RECORD bytes.
 *
 * Conventions of this module:
 *  - Everything runs on the thread of the uv loop the link was made on; nothing blocks.
 *  - A link is created by duet_link_connect or duet_link_accept and freed by itself: after
 *    on_close (called exactly once, from libuv's close callback) the pointer is dangling.
 *    If connect or accept return an error, no callback is ever called for that link.
 *  - Callbacks are never called from inside a duet_link_* call made by the owner (on_log
 *    excepted: a send that meets a socket error logs it at once); the owner may call any
 *    duet_link_* function (send, close, pause...) from inside a callback, except from
 *    on_close.
 *  - Memory: about 130 KiB per link (a read buffer and a frame buffer of 64 KiB each), plus
 *    a reassembly buffer that grows to at most DUET_LINK_MAX_RECORD while a record arrives
 *    in several chunks, plus the write queue (at most high_water + one sealed record).
 *  - Records handed to on_record are borrowed for the call. Records given to duet_link_send
 *    are copied (sealed) before it returns.
 *  - Backpressure is a pull model: duet_link_send returns DUET_EAGAIN while more than
 *    high_water bytes are queued; on_writable says when the queue has drained to low_water,
 *    so the engine can pull its next frames then (as core/sync.h duet_sync_next_frame).
 *  - Secrets (the Noise state) live in sodium_malloc memory; buffers that held plaintext are
 *    wiped after use and when the link is freed.
 *  - Errors on the link (peer, protocol, timeout, socket) close it and are reported once, in
 *    on_close: DUET_OK when the peer closed cleanly or the owner closed with DUET_OK;
 *    DUET_ECONNREFUSED, DUET_ECONNRESET, DUET_ETIMEDOUT, DUET_EPROTO, DUET_EAUTH,
 *    DUET_EVERSION, DUET_ECLOSED (the peer closed during the handshake: for an initiator,
 *    what a responder that does not know us, or that is not who we think, looks like),
 *    DUET_ENET (any other socket error), DUET_ENOMEM, or the error the owner passed.
 *    Every close that is not DUET_OK is explained in one line to on_log.
 */
#ifndef DUET_LINK_H
#define DUET_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "err.h"
#include "frame.h"
#include "noise.h"
#include "rng.h"

#define DUET_LINK_VERSION           1u                    /* the protocol version we speak */
#define DUET_LINK_MAX_RECORD        DUET_FRAME_MAX_RECORD /* 256 KiB, secure links */
#define DUET_LINK_MAX_RAW_RECORD    DUET_FRAME_MAX        /* 65535, raw links */
#define DUET_LINK_MAX_HANDSHAKE_MSG 1024u                 /* a handshake message's frame */
#define DUET_LINK_KEY_BYTES         32u
#define DUET_LINK_HASH_BYTES        DUET_NOISE_HASHLEN
#define DUET_LINK_PROLOGUE_KK       "duet link"
#define DUET_LINK_PROLOGUE_NK       "duet relay"
#define DUET_LINK_NAME_KK           "Noise_KK_25519_ChaChaPoly_BLAKE2b"
#define DUET_LINK_NAME_NK           "Noise_NK_25519_ChaChaPoly_BLAKE2b"
#define DUET_ADDR_STRLEN            64u /* "[ffff:...:ffff%scope]:65535" and its NUL */
#define DUET_ADDR_MAX_INPUT         255u

/* Defaults for duet_link_options_t. */
#define DUET_LINK_HANDSHAKE_MS 10000u
#define DUET_LINK_IDLE_MS      60000u
#define DUET_LINK_CLOSE_MS     2000u
#define DUET_LINK_HIGH_WATER   (1u << 20)
#define DUET_LINK_LOW_WATER    (256u << 10)

typedef enum { DUET_LINK_KK = 1, DUET_LINK_NK = 2, DUET_LINK_RAW = 3 } duet_link_mode_t;

typedef struct duet_link_options {
    /* From connect or accept to the end of the handshake (and, for a responder, the
     * initiator's first transport message). Must be > 0. */
    uint64_t handshake_ms;
    /* Close with DUET_ETIMEDOUT when nothing has been received for idle_ms (not counted
     * while the owner has paused reading), or when our write queue has stayed above
     * low_water for idle_ms (the peer is not reading). Secure links send a keepalive when
     * they have written nothing for idle_ms / 3, so both ends must use the same value
     * (the default, in production). 0 disables all three. */
    uint64_t idle_ms;
    /* The bound on a graceful close (flush, FIN, wait for the peer's FIN). Must be > 0. */
    uint64_t close_ms;
    /* Write queue marks in bytes, 0 < low_water <= high_water. */
    size_t high_water;
    size_t low_water;
    /* Tests only: the protocol version this link speaks instead of DUET_LINK_VERSION
     * (0: DUET_LINK_VERSION). */
    uint16_t test_version;
    /* Keep the link's secrets (handshake state, transport keys) inside the link's own
     * memory, wiped with sodium_memzero when the link is freed, instead of sodium_malloc's
     * guarded and locked pages: those cost two resident pages, four of address space and
     * four memory mappings per link, which a relay holding tens of thousands of links cannot
     * afford (vm.max_map_count is 65530). The relay server sets it; devices, with a few
     * links, do not. */
    bool heap_secrets;
} duet_link_options_t;

/* Fill o with the defaults above. */
void duet_link_options_default(duet_link_options_t *o);

typedef struct duet_link_config {
    duet_link_mode_t mode;
    /* Our X25519 static private key (32 bytes): KK, and NK for the responder (the relay). */
    const uint8_t *local_static;
    /* The peer's X25519 static public key (32 bytes): KK, and NK for the initiator. */
    const uint8_t *remote_static;
    /* Ephemeral keys (net/sysrng.h duet_sysrng() in the program); its ctx must stay valid
     * until on_open or on_close. Unused in RAW mode. */
    duet_rng_t rng;
    /* NULL for the defaults. Copied. */
    const duet_link_options_t *options;
} duet_link_config_t;

typedef struct duet_link duet_link_t;

typedef struct duet_link_callbacks {
    void *ctx;
    /* The handshake is done (for a responder: and the initiator has proven it is live by
     * its first transport message); duet_link_remote_static works. Records may be sent.
     * RAW links open as soon as the TCP connection is up. */
    void (*on_open)(duet_link_t *link, void *ctx);
    /* One record from the peer, rec[0..len), len >= 1, valid during the call. Anything but
     * DUET_OK closes the link gracefully with that error. Required. */
    duet_err_t (*on_record)(duet_link_t *link, void *ctx, const uint8_t *rec, size_t len);
    /* Every record of the last socket read has been delivered: flush a batch here. */
    void (*on_read_drained)(duet_link_t *link, void *ctx);
    /* The write queue has drained to low_water after a send left it above (in particular
     * after DUET_EAGAIN): pull the next frames. */
    void (*on_writable)(duet_link_t *link, void *ctx);
    /* The link is closed (see the preamble for err), exactly once; the link is freed when
     * this returns. Required. */
    void (*on_close)(duet_link_t *link, void *ctx, duet_err_t err);
    /* One line of diagnostics (no secrets), e.g. "127.0.0.1:7000: connection from an unknown
     * device". NULL writes "duet: link <line>" to stderr. */
    void (*on_log)(duet_link_t *link, void *ctx, const char *line);
} duet_link_callbacks_t;

/*
 * Connect to addr (IPv4 or IPv6) as the initiator, on loop. *out is the new link (the
 * owner's handle for send/close), NULL on error. DUET_ENOMEM; DUET_EINVAL for keys that do
 * not fit the mode, DUET_EBADKEY for an invalid key; DUET_EADDR for an address libuv
 * refuses; DUET_ENET for other socket errors. Later failures (refused, unreachable, timed
 * out) come through on_close.
 */
duet_err_t duet_link_connect(uv_loop_t *loop, const struct sockaddr *addr,
                             const duet_link_config_t *cfg, const duet_link_callbacks_t *cb,
                             duet_link_t **out) DUET_MUST_CHECK;

/*
 * Accept one pending connection of server (a listening uv_tcp_t) as the responder: call it
 * from the server's connection callback. Errors as duet_link_connect, and DUET_ENET when
 * there was nothing to accept. The link runs on server's loop.
 */
duet_err_t duet_link_accept(uv_stream_t *server, const duet_link_config_t *cfg,
                            const duet_link_callbacks_t *cb, duet_link_t **out) DUET_MUST_CHECK;

/*
 * Send one record rec[0..len): secure links take 0..DUET_LINK_MAX_RECORD bytes (0 sends a
 * keepalive, which the peer does not deliver), raw links 1..DUET_LINK_MAX_RAW_RECORD.
 * DUET_OK: the record is sealed and queued (it is sent even if the owner closes right
 * after). DUET_EAGAIN: the write queue is above high_water, nothing was queued; wait for
 * on_writable. DUET_ETOOBIG / DUET_EINVAL: a length out of those bounds. DUET_ESTATE:
 * before on_open or after close. A socket error closes the link and is returned.
 */
duet_err_t duet_link_send(duet_link_t *link, const uint8_t *rec, size_t len) DUET_MUST_CHECK;

/*
 * Close the link with err (DUET_OK for a normal end; on_close reports err). Records already
 * queued are flushed, then our side is shut down (FIN) and the link waits for the peer's
 * FIN, all within options.close_ms; records the peer sends meanwhile are dropped. No
 * callback but on_close follows. A no-op once the link is closing.
 */
void duet_link_close(duet_link_t *link, duet_err_t err);

/* Stop delivering records (and reading the socket) until duet_link_resume_read. The
 * records of the current read that are not yet delivered wait too. The idle timeout does
 * not count while paused. */
void duet_link_pause_read(duet_link_t *link);
void duet_link_resume_read(duet_link_t *link);

/* Cork and uncork (secure links): between the two, records sent are sealed into one buffer
 * and written with one system call at uncork (or when 64 KiB have gathered), as TCP_CORK
 * would. Other writes (keepalives, close) flush it first, so order is kept. */
void duet_link_cork(duet_link_t *link);
void duet_link_uncork(duet_link_t *link);

/* The bytes queued by this link for the socket and not yet written (libuv's write
 * callback not yet called): the measure high_water and low_water apply to. */
size_t duet_link_write_queue_size(const duet_link_t *link);

/* The peer's static public key (32 bytes), once open. DUET_ESTATE before on_open,
 * DUET_ENOENT when the mode does not give one (RAW, and an NK responder). */
duet_err_t duet_link_remote_static(const duet_link_t *link,
                                   uint8_t out[static DUET_LINK_KEY_BYTES]) DUET_MUST_CHECK;

/* The Noise handshake hash (64 bytes), for channel binding. DUET_ESTATE before on_open,
 * DUET_ENOENT on a raw link. */
duet_err_t duet_link_handshake_hash(const duet_link_t *link,
                                    uint8_t out[static DUET_LINK_HASH_BYTES]) DUET_MUST_CHECK;

/* The peer's address as "1.2.3.4:5" or "[::1]:5" (for logs); never NULL. */
const char *duet_link_peer(const duet_link_t *link);

/* The mode the link was made with. */
duet_link_mode_t duet_link_mode(const duet_link_t *link);

/* ---- addresses -------------------------------------------------------------------------- */

/*
 * Parse "HOST:PORT" into out: HOST is a numeric IPv4 address ("192.0.2.1"), a bracketed
 * IPv6 address ("[2001:db8::1]", "[fe80::1%eth0]") or "localhost" (127.0.0.1); PORT is
 * 0..65535 in decimal, without sign or spaces. DUET_EADDR for anything else (including
 * names other than localhost: duet does not resolve names) or a string over
 * DUET_ADDR_MAX_INPUT bytes; out is zeroed then.
 */
duet_err_t duet_addr_parse(const char *s, struct sockaddr_storage *out) DUET_MUST_CHECK;

/* Format sa (AF_INET or AF_INET6) as duet_addr_parse reads it, into out[0..cap); "?" when
 * it cannot. Returns out. */
const char *duet_addr_format(const struct sockaddr *sa, char *out, size_t cap);

#endif /* DUET_LINK_H */
