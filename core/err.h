/*
 * duet — errors.
 *
 * One list, DUET_ERR_MAP, generates the error enum, the names and the messages, so the
 * three cannot drift (the libuv UV_ERRNO_MAP pattern). Every fallible function in duet
 * returns a duet_err_t; DUET_OK is zero, every error is negative.
 *
 * Conventions for the whole project, stated once:
 *  - Fallible functions return duet_err_t and are marked DUET_MUST_CHECK.
 *  - Out-parameters are set to safe values (zero, NULL) on entry, so an error never
 *    leaves a caller holding half a result.
 *  - Every authentication failure is DUET_EAUTH, with no further detail.
 *  - Peer and protocol errors are sticky inside an engine and close it.
 *  - Caller bugs (NULL where a pointer is required, a buffer that the header says must be
 *    N bytes) abort, as sodium_misuse() does; they are not errors.
 */
#ifndef DUET_ERR_H
#define DUET_ERR_H

#if defined(__GNUC__) || defined(__clang__)
#define DUET_MUST_CHECK __attribute__((warn_unused_result))
#else
#define DUET_MUST_CHECK
#endif

/* XX(NAME, value, "message"). Append new codes at the end of their group; never renumber:
 * the numeric values appear in logs and in the JSON error records. */
#define DUET_ERR_MAP(XX)                                                                     \
    XX(OK, 0, "success")                                                                     \
    /* generic */                                                                            \
    XX(ENOMEM, -1, "out of memory")                                                          \
    XX(EINVAL, -2, "invalid argument")                                                       \
    XX(ERANGE, -3, "value out of range")                                                     \
    XX(ETOOBIG, -4, "too large")                                                             \
    XX(ENOSPC, -5, "no space left on device")                                                \
    XX(EIO, -6, "input/output error")                                                        \
    XX(EPERM, -7, "permission denied")                                                       \
    XX(ENOENT, -8, "not found")                                                              \
    XX(EEXIST, -9, "already exists")                                                         \
    XX(EAGAIN, -10, "try again")                                                             \
    XX(ETIMEDOUT, -11, "timed out")                                                          \
    XX(ECANCELED, -12, "canceled")                                                           \
    XX(EINTERNAL, -13, "internal error")                                                     \
    XX(EUTF8, -14, "text is not valid UTF-8")                                                \
    XX(EEMPTY, -15, "empty")                                                                 \
    XX(EBUSY, -16, "busy")                                                                   \
    XX(ESTATE, -17, "not allowed in this state")                                             \
    XX(EUSAGE, -18, "usage error")                                                           \
    XX(EUNSUPPORTED, -19, "not supported")                                                   \
    /* codec */                                                                              \
    XX(EDECODE, -30, "malformed message")                                                    \
    XX(EDEPTH, -31, "message nested too deeply")                                             \
    XX(ETRAILING, -32, "trailing bytes after message")                                       \
    XX(ETYPE, -33, "wrong type in message")                                                  \
    XX(EUNKNOWNKEY, -34, "unknown field in message")                                         \
    XX(EMISSING, -35, "required field missing from message")                                 \
    XX(ETRUNCATED, -36, "message truncated")                                                 \
    /* store */                                                                              \
    XX(ENOTINIT, -50, "this home has not been initialised (run: duet init)")                 \
    XX(EALREADYINIT, -51, "this home is already initialised")                                \
    XX(ELOCKED, -52, "the database is locked by another process")                            \
    XX(ECORRUPT, -53, "the database file is damaged or is not a duet database")              \
    XX(ESCHEMANEW, -54, "the database was written by a newer duet; upgrade duet")            \
    XX(EREADONLY, -55, "the database is read-only")                                          \
    XX(EPASSPHRASE, -56, "wrong passphrase")                                                 \
    XX(ENEEDPASS, -57, "this home is protected by a passphrase; none was given")             \
    XX(EDB, -58, "database error")                                                           \
    /* crypto and protocol */                                                                \
    XX(EAUTH, -70, "authentication failed")                                                  \
    XX(EBADKEY, -71, "invalid public key")                                                   \
    XX(ENONCE, -72, "nonce space exhausted")                                                 \
    XX(EPROTO, -73, "protocol violation")                                                    \
    XX(EVERSION, -74, "the peer speaks a different protocol version")                        \
    XX(EDUP, -75, "duplicate message")                                                       \
    XX(EMAXSKIP, -76, "too many skipped messages")                                           \
    XX(EWRONGCODE, -77, "the pairing code is wrong")                                         \
    XX(EBADCODE, -78, "the pairing code is malformed")                                       \
    XX(ENOTPAIRED, -79, "this device is not paired")                                         \
    XX(EALREADYPAIRED, -80, "this device is already paired")                                 \
    XX(EUNKNOWNPEER, -81, "connection from an unknown device")                               \
    XX(ECLOSED, -82, "connection closed")                                                    \
    XX(ENAMEPLATE, -83, "that pairing code is no longer valid")                              \
    XX(EQUOTA, -84, "quota exceeded")                                                        \
    XX(ERATELIMIT, -85, "rate limited")                                                      \
    XX(ECAPABILITY, -86, "not authorised")                                                   \
    XX(ERELAYKEY, -87, "the relay's key does not match its address")                         \
    /* network */                                                                            \
    XX(ECONNREFUSED, -100, "connection refused")                                             \
    XX(ECONNRESET, -101, "connection reset by peer")                                         \
    XX(ENET, -102, "network error")                                                          \
    XX(EADDR, -103, "invalid address")                                                       \
    XX(EADDRINUSE, -104, "address already in use")                                           \
    XX(EDAEMON, -105, "another duet daemon is running for this home")                        \
    /* media and rituals */                                                                  \
    XX(ENOTAUDIO, -120, "not a supported audio file")                                        \
    XX(ENOTHERE, -121, "not here yet")                                                       \
    XX(EBLOB, -122, "voice data damaged")                                                    \
    XX(ENORITUAL, -123, "no such check-in")

typedef enum {
#define DUET_ERR_ENUM_(name, value, msg) DUET_##name = (value),
    DUET_ERR_MAP(DUET_ERR_ENUM_)
#undef DUET_ERR_ENUM_
} duet_err_t;

/* The message for err ("authentication failed"); never NULL, "unknown error" for a value
 * that is not in the list. */
const char *duet_strerror(duet_err_t err);

/* The name of err without the prefix ("EAUTH"); "EUNKNOWN" for a value not in the list. */
const char *duet_err_name(duet_err_t err);

#endif /* DUET_ERR_H */
