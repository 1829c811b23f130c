/*
 * duet — the relay protocol: frames, capabilities, object labels, sealed receive states,
 * relay addresses and the small pure helpers both ends share. docs/protocol/relay.md is
 * the byte-exact description; this header is its C face.
 *
 * A relay keeps mailboxes. Each pair has two, one per direction; the writer of a mailbox
 * leaves objects in it and the reader collects and deletes them. Everything a client says
 * to the relay travels inside a Noise_NK session that pins the relay's key (net/link); the
 * frames below are the plaintext records of that session, msgpack maps with small integer
 * keys (key 0 is the frame type, key 1 the request id), checked by the strict codec.
 *
 *   mailbox id  = BLAKE2b-256(key "duet-relay-mailbox-v1", H(wcap) || H(rcap))
 *   H(cap)      = BLAKE2b-256(key "duet-relay-cap-v1", cap)
 *
 * A writer shows wcap and H(rcap); a reader shows rcap and H(wcap). The relay hashes the
 * capability it was shown and recomputes the mailbox id: a wrong capability is refused
 * (DUET_ECAPABILITY) by a computation that never looks at storage, so the answer is the
 * same whether the mailbox exists or not, and no stranger can create ("squat") a mailbox
 * under an id whose capabilities they do not hold. The relay stores mailbox ids only.
 *
 * Capabilities and the keys for object labels and receive states are derived from the
 * pair secret (pairing.h) with HKDF-SHA-256, per direction: "lo-hi" for the partner whose
 * identity key sorts first (bytewise) writing to the other, "hi-lo" the other way.
 *
 * Object classes: ENVELOPE (write-once, keyed by a label derived from the sequence number,
 * which the relay never sees), STATE (the writer's receive state, sealed, one replaceable
 * object per mailbox: acknowledgements travel back to the sender the way envelopes do),
 * and BLOB (write-once chunks of sealed voice blobs, keyed as the blob layer decides).
 *
 * Conventions of this module:
 *  - Pure: no I/O, no clock (time is passed in), randomness from the caller's duet_rng_t.
 *  - Decoded frames point into the caller's buffer, which must outlive them; _dispose frees
 *    what decoding allocated.
 *  - Every length in a frame has a named limit below; a frame over a limit, with a field of
 *    the wrong type, an unknown key or a missing one is DUET_EPROTO for the decoder's caller.
 *  - Secrets derived here (caps, keys) are wiped by duet_relay_keys_dispose.
 */
#ifndef DUET_RELAY_H
#define DUET_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "err.h"
#include "rng.h"

#define DUET_RELAY_VERSION        1u
#define DUET_RELAY_NOISE_PROTOCOL "Noise_NK_25519_ChaChaPoly_BLAKE2b"
#define DUET_RELAY_KEY_BYTES      32u /* relay key, mailbox ids, caps, cap hashes */
#define DUET_RELAY_OID_MIN        1u  /* object id bytes */
#define DUET_RELAY_OID_MAX        48u
#define DUET_RELAY_LABEL_BYTES    16u /* the object id of envelopes and states */
#define DUET_RELAY_SEQ_MASK_BYTES 8u  /* masked sequence number before an envelope */
#define DUET_RELAY_OBJECT_MAX                                                                      \
    (98304u + 64u)                           /* data bytes of one object: the largest              \
                                                envelope, its masked sequence number, room */
#define DUET_RELAY_FRAME_MAX  (128u * 1024u) /* any frame, either way */
#define DUET_RELAY_RECORD_MAX (256u * 1024u) /* a link record: frames, each u32be length ‖ frame \
                                              */
#define DUET_RELAY_RECORD_HDR 4u
/* Senders fill records up to this (one Noise message of the link: no reassembly, no large
 * buffers on either side); a frame larger than that travels in a record of its own. */
#define DUET_RELAY_RECORD_FILL 65518u
#define DUET_RELAY_LIST_MAX    256u /* entries in one LISTED */
#define DUET_RELAY_DELETE_MAX  256u /* object ids in one DELETE */
#define DUET_RELAY_WINDOW      128u /* requests a client may have unanswered */
#define DUET_RELAY_SUBS_MAX    4u   /* subscriptions per connection */
#define DUET_RELAY_PAIR_MSG    512u /* every PMSG/PDATA payload, padded */
#define DUET_RELAY_PAIR_MAX    510u /* the largest pairing message it can carry */
#define DUET_RELAY_PAIR_QUEUE  8u   /* messages held for a holder not yet reading */

/* The sealed receive state: nonce || AEAD(version || wm || bitmap) || tag. */
#define DUET_RELAY_STATE_BITS  2048u /* sequence numbers above the watermark it covers */
#define DUET_RELAY_STATE_PLAIN (1u + 8u + DUET_RELAY_STATE_BITS / 8u) /* 265 */
#define DUET_RELAY_STATE_BYTES (24u + DUET_RELAY_STATE_PLAIN + 16u)   /* 305 */

/* Object classes. */
#define DUET_RELAY_ENVELOPE  1u
#define DUET_RELAY_STATE     2u
#define DUET_RELAY_BLOB      3u
#define DUET_RELAY_CLASS_MAX 3u

/* Frame types (key 0). Requests, client to relay: */
#define DUET_RELAY_HELLO     1u
#define DUET_RELAY_PUT       2u
#define DUET_RELAY_LIST      3u
#define DUET_RELAY_GET       4u
#define DUET_RELAY_DELETE    5u
#define DUET_RELAY_SUBSCRIBE 6u
#define DUET_RELAY_PING      7u
#define DUET_RELAY_ALLOCATE  8u
#define DUET_RELAY_CLAIM     9u
#define DUET_RELAY_PMSG      10u
/* Responses, relay to client, one per request, in request order: */
#define DUET_RELAY_OK      64u
#define DUET_RELAY_WELCOME 65u
#define DUET_RELAY_LISTED  66u
#define DUET_RELAY_OBJECT  67u
#define DUET_RELAY_ERROR   68u
/* Events, relay to client, unsolicited: */
#define DUET_RELAY_NOTIFY  80u
#define DUET_RELAY_PDATA   81u
#define DUET_RELAY_PCLOSED 82u

/* ---- keys and capabilities ------------------------------------------------------------ */

/* One direction's material. The writer needs wcap and rhash; the reader rcap and whash. */
typedef struct duet_relay_dir {
    uint8_t mbox[DUET_RELAY_KEY_BYTES];  /* mailbox id */
    uint8_t wcap[DUET_RELAY_KEY_BYTES];  /* write capability (secret) */
    uint8_t rcap[DUET_RELAY_KEY_BYTES];  /* read capability (secret) */
    uint8_t whash[DUET_RELAY_KEY_BYTES]; /* H(wcap) */
    uint8_t rhash[DUET_RELAY_KEY_BYTES]; /* H(rcap) */
    uint8_t okey[DUET_RELAY_KEY_BYTES];  /* object labels and sequence masks (secret) */
    uint8_t skey[DUET_RELAY_KEY_BYTES];  /* AEAD key of the sealed receive state (secret) */
} duet_relay_dir_t;

/* A device's view of its pair: out = the mailbox it writes, in = the one it reads. */
typedef struct duet_relay_keys {
    duet_relay_dir_t out, in;
} duet_relay_keys_t;

/*
 * Derive both directions from the 32-byte pair secret and the two Ed25519 identity keys
 * (mine and my partner's; they must differ, else abort). See docs/protocol/relay.md,
 * "Keys". Cannot fail.
 */
void duet_relay_keys_derive(duet_relay_keys_t *k, const uint8_t pair_secret[static 32],
                            const uint8_t my_pk[static 32], const uint8_t partner_pk[static 32]);

/* Wipe the keys. */
void duet_relay_keys_dispose(duet_relay_keys_t *k);

/* H(cap): BLAKE2b-256 keyed with "duet-relay-cap-v1". */
void duet_relay_cap_hash(uint8_t out[static 32], const uint8_t cap[static 32]);

/* The mailbox id of two capability hashes. */
void duet_relay_mailbox_id(uint8_t out[static 32], const uint8_t whash[static 32],
                           const uint8_t rhash[static 32]);

/*
 * The relay's check: cap hashed, with the other hash, gives mbox. writer says which cap
 * this is. DUET_OK or DUET_ECAPABILITY (constant time in the ids' contents).
 */
duet_err_t duet_relay_cap_check(const uint8_t mbox[static 32], const uint8_t cap[static 32],
                                const uint8_t other_hash[static 32], bool writer) DUET_MUST_CHECK;

/* ---- object labels --------------------------------------------------------------------- */

/* The object id of envelope seq in a direction: HMAC-SHA-256(okey, "env" || seq)[0..16). */
void duet_relay_env_oid(uint8_t oid[static DUET_RELAY_LABEL_BYTES], const duet_relay_dir_t *d,
                        uint64_t seq);

/* The object id of the direction's state object: HMAC-SHA-256(okey, "state")[0..16). */
void duet_relay_state_oid(uint8_t oid[static DUET_RELAY_LABEL_BYTES], const duet_relay_dir_t *d);

/*
 * The 8 bytes before an envelope in its object: seq (u64 big-endian) XOR
 * HMAC-SHA-256(okey, "seq" || oid)[0..8).
 */
void duet_relay_seq_mask(uint8_t out[static DUET_RELAY_SEQ_MASK_BYTES], const duet_relay_dir_t *d,
                         const uint8_t oid[static DUET_RELAY_LABEL_BYTES], uint64_t seq);

/*
 * Read an envelope object: data[0..len) = masked seq || envelope, under id oid[0..oid_len).
 * Unmasks the sequence number and checks that oid is its label (so the relay can neither
 * invent nor relabel envelopes). *seq, *env, *env_len (pointing into data) on success;
 * DUET_EAUTH otherwise (a label that is not ours, an envelope shorter than one byte).
 */
duet_err_t duet_relay_env_open(const duet_relay_dir_t *d, const uint8_t *oid, size_t oid_len,
                               const uint8_t *data, size_t len, uint64_t *seq, const uint8_t **env,
                               size_t *env_len) DUET_MUST_CHECK;

/* ---- sealed receive states -------------------------------------------------------------- */

/*
 * Seal the writer's receive state (watermark wm and the sequence numbers above[0..n) it
 * holds above wm, ascending, all > wm) under d->skey, with d->mbox as associated data:
 * out = nonce (24, from rng) || ciphertext || tag, always DUET_RELAY_STATE_BYTES. Numbers
 * above wm + DUET_RELAY_STATE_BITS are left out (acknowledging less is always safe).
 * Aborts when above is not ascending or not above wm (a caller bug).
 */
void duet_relay_state_seal(uint8_t out[static DUET_RELAY_STATE_BYTES], const duet_relay_dir_t *d,
                           uint64_t wm, const uint64_t *above, size_t n, duet_rng_t rng);

/*
 * Open a state object: DUET_EAUTH for anything that does not verify (or has the wrong
 * length), DUET_EDECODE for an unknown version or a watermark too large. *n numbers are
 * written to above (cap >= DUET_RELAY_STATE_BITS, else abort), ascending.
 */
duet_err_t duet_relay_state_open(const duet_relay_dir_t *d, const uint8_t *data, size_t len,
                                 uint64_t *wm, uint64_t *above, size_t cap,
                                 size_t *n) DUET_MUST_CHECK;

/* ---- pairing messages ------------------------------------------------------------------ */

/* Pad a pairing message: out = len (u16 BE) || msg || zeros, DUET_RELAY_PAIR_MSG bytes.
 * DUET_ETOOBIG when len > DUET_RELAY_PAIR_MAX, DUET_EEMPTY when 0. */
duet_err_t duet_relay_pair_pad(uint8_t out[static DUET_RELAY_PAIR_MSG], const uint8_t *msg,
                               size_t len) DUET_MUST_CHECK;

/* The message inside a padded one (pointing into it). DUET_EDECODE for a bad length or
 * padding bytes that are not zero. */
duet_err_t duet_relay_pair_unpad(const uint8_t *padded, size_t padded_len, const uint8_t **msg,
                                 size_t *len) DUET_MUST_CHECK;

/* ---- frames ---------------------------------------------------------------------------- */

/* A decoded frame of either direction. Pointers point into the decoded buffer. */
typedef struct duet_relay_frame {
    uint8_t type;
    uint32_t rid;              /* requests and responses; 0 in events */
    uint32_t version;          /* HELLO, WELCOME; ERROR (the relay's) */
    const uint8_t *mbox;       /* 32: PUT LIST GET DELETE SUBSCRIBE NOTIFY */
    const uint8_t *cap;        /* 32: PUT (wcap) LIST GET DELETE SUBSCRIBE (rcap) */
    const uint8_t *other_hash; /* 32: PUT (rhash), the others (whash) */
    uint8_t cls;               /* PUT OBJECT; LIST (0 = every class) */
    const uint8_t *oid;        /* PUT GET OBJECT */
    size_t oid_len;
    const uint8_t *data; /* PUT OBJECT PMSG PDATA */
    size_t data_len;
    uint64_t after;              /* LIST */
    uint32_t limit;              /* LIST: 1..DUET_RELAY_LIST_MAX */
    uint64_t value;              /* OK; OBJECT and NOTIFY: cursor */
    uint16_t nameplate;          /* CLAIM (1..9999), ALLOCATE (0: any) */
    duet_err_t err;              /* ERROR, PCLOSED */
    bool fatal;                  /* ERROR: the relay closes the connection after it */
    bool more;                   /* LISTED */
    uint32_t object_max, window; /* WELCOME */
    size_t count;                /* DELETE: object ids; LISTED: entries */
    const msgpack_object *array; /* DELETE ids, LISTED entries (see the accessors) */
    duet_codec_msg_t msg;
} duet_relay_frame_t;

/* One LISTED entry. */
typedef struct duet_relay_entry {
    uint64_t cursor;
    uint8_t cls;
    uint8_t oid_len;
    uint8_t oid[DUET_RELAY_OID_MAX];
    uint32_t len;
} duet_relay_entry_t;

/*
 * Decode buf[0..len) (a frame of either direction) into f, checking every field against
 * its type's layout and limits. DUET_EPROTO for anything malformed (f then holds nothing).
 * f must be disposed after a success.
 */
duet_err_t duet_relay_frame_decode(duet_relay_frame_t *f, const uint8_t *buf,
                                   size_t len) DUET_MUST_CHECK;
void duet_relay_frame_dispose(duet_relay_frame_t *f);

/* Whether a frame type is a request (client to relay). */
bool duet_relay_is_request(uint8_t type);

/* The i-th object id of a decoded DELETE (i < f->count; checked by decode). */
void duet_relay_frame_oid(const duet_relay_frame_t *f, size_t i, const uint8_t **oid,
                          size_t *oid_len);

/* The i-th entry of a decoded LISTED (i < f->count; checked by decode). */
void duet_relay_frame_entry(const duet_relay_frame_t *f, size_t i, duet_relay_entry_t *e);

/*
 * Encoders: each appends one frame to enc (reset it first) and leaves any error in the
 * encoder (duet_codec_enc_finish reports it). Lengths are the caller's to respect (a field
 * over its limit is a caller bug: abort).
 */
void duet_relay_enc_hello(duet_codec_enc_t *enc, uint32_t rid);
void duet_relay_enc_put(duet_codec_enc_t *enc, uint32_t rid, const duet_relay_dir_t *d, uint8_t cls,
                        const uint8_t *oid, size_t oid_len, const uint8_t *data, size_t len);
/* A PUT whose data is two parts (masked sequence number, envelope), to spare a copy. */
void duet_relay_enc_put2(duet_codec_enc_t *enc, uint32_t rid, const duet_relay_dir_t *d,
                         uint8_t cls, const uint8_t *oid, size_t oid_len, const uint8_t *a,
                         size_t alen, const uint8_t *b, size_t blen);
/* LIST, GET, DELETE, SUBSCRIBE show the reader's capability of d. */
void duet_relay_enc_list(duet_codec_enc_t *enc, uint32_t rid, const duet_relay_dir_t *d,
                         uint8_t cls, uint64_t after, uint32_t limit);
void duet_relay_enc_get(duet_codec_enc_t *enc, uint32_t rid, const duet_relay_dir_t *d,
                        const uint8_t *oid, size_t oid_len);
/* oids[i] has oid_lens[i] bytes; n in 1..DUET_RELAY_DELETE_MAX. */
void duet_relay_enc_delete(duet_codec_enc_t *enc, uint32_t rid, const duet_relay_dir_t *d,
                           const uint8_t *const *oids, const size_t *oid_lens, size_t n);
void duet_relay_enc_subscribe(duet_codec_enc_t *enc, uint32_t rid, const duet_relay_dir_t *d);
void duet_relay_enc_ping(duet_codec_enc_t *enc, uint32_t rid);
/* nameplate: the one wanted (1..9999), or 0 for any the relay picks. */
void duet_relay_enc_allocate(duet_codec_enc_t *enc, uint32_t rid, uint16_t nameplate);
void duet_relay_enc_claim(duet_codec_enc_t *enc, uint32_t rid, uint16_t nameplate);
/* data is a padded pairing message, DUET_RELAY_PAIR_MSG bytes. */
void duet_relay_enc_pmsg(duet_codec_enc_t *enc, uint32_t rid, const uint8_t *data);

/* The relay's frames. */
void duet_relay_enc_ok(duet_codec_enc_t *enc, uint32_t rid, uint64_t value);
void duet_relay_enc_welcome(duet_codec_enc_t *enc, uint32_t rid);
/* Entries e[0..n), n <= DUET_RELAY_LIST_MAX. */
void duet_relay_enc_listed(duet_codec_enc_t *enc, uint32_t rid, const duet_relay_entry_t *e,
                           size_t n, bool more);
void duet_relay_enc_object(duet_codec_enc_t *enc, uint32_t rid, uint64_t cursor, uint8_t cls,
                           const uint8_t *oid, size_t oid_len, const uint8_t *data, size_t len);
void duet_relay_enc_error(duet_codec_enc_t *enc, uint32_t rid, duet_err_t err, bool fatal);
void duet_relay_enc_notify(duet_codec_enc_t *enc, const uint8_t mbox[static 32], uint64_t cursor);
void duet_relay_enc_pdata(duet_codec_enc_t *enc, const uint8_t *data);
void duet_relay_enc_pclosed(duet_codec_enc_t *enc, duet_err_t why);

/*
 * The error codes a relay may put in ERROR and PCLOSED frames. Anything else a client
 * reads there is reported as DUET_EPROTO, so a relay cannot make a client print an
 * arbitrary message.
 */
bool duet_relay_err_allowed(duet_err_t err);

/* ---- records ------------------------------------------------------------------------------ */

/*
 * A link record carries one or more frames, each as length (u32 big-endian) ‖ frame, so that
 * the responses of one loop iteration leave in one Noise message and one write. Iterate
 * over rec[0..len): *pos starts at 0; each call sets *frame, *flen to the next frame and
 * advances *pos. DUET_ENOENT after the last one; DUET_EPROTO for an empty record, a length of
 * 0 or over DUET_RELAY_FRAME_MAX, or a length beyond the record (then stop reading it).
 */
duet_err_t duet_relay_record_next(const uint8_t *rec, size_t len, size_t *pos,
                                  const uint8_t **frame, size_t *flen) DUET_MUST_CHECK;

/* Write the 4-byte length of a frame of n bytes (1..DUET_RELAY_FRAME_MAX, else abort). */
void duet_relay_record_put_len(uint8_t out[static DUET_RELAY_RECORD_HDR], size_t n);

/* ---- relay addresses ------------------------------------------------------------------- */

#define DUET_RELAY_HOST_MAX 253u
#define DUET_RELAY_URL_MAX  320u

/* duet://HOST:PORT/KEY: HOST a DNS name, an IPv4 address or [IPv6]; KEY the relay's
 * X25519 public key in 52 characters of Crockford base32 (lower case when written). */
typedef struct duet_relay_url {
    char host[DUET_RELAY_HOST_MAX + 1]; /* without brackets, NUL-terminated */
    uint16_t port;
    uint8_t key[DUET_RELAY_KEY_BYTES];
} duet_relay_url_t;

/* Parse text[0..len). DUET_EADDR for anything malformed (the reason is not detailed), and
 * DUET_EBADKEY for a key that does not decode canonically. */
duet_err_t duet_relay_url_parse(duet_relay_url_t *u, const char *text, size_t len) DUET_MUST_CHECK;

/* Write the URL of host, port and key into out (NUL-terminated). DUET_ETOOBIG if cap is too
 * small; DUET_EADDR for a host that would not parse back. */
duet_err_t duet_relay_url_format(char *out, size_t cap, const char *host, uint16_t port,
                                 const uint8_t key[static 32]) DUET_MUST_CHECK;

/* ---- token buckets (rate limits) ------------------------------------------------------ */

/* A token bucket in thousandths of a token. Zero-initialise, or duet_relay_bucket_init. */
typedef struct duet_relay_bucket {
    uint64_t milli;   /* tokens held, x1000 */
    uint64_t last_ms; /* last refill */
} duet_relay_bucket_t;

/* Start full (burst tokens) at now_ms. */
void duet_relay_bucket_init(duet_relay_bucket_t *b, uint64_t burst, uint64_t now_ms);

/*
 * Refill at rate tokens per second up to burst, then take cost tokens if there are that
 * many: true, or false (nothing taken) with *wait_ms the time until there would be. A rate
 * of 0 means no limit (always true). A cost above burst takes a full bucket.
 */
bool duet_relay_bucket_take(duet_relay_bucket_t *b, uint64_t rate, uint64_t burst, uint64_t cost,
                            uint64_t now_ms, uint64_t *wait_ms);

#endif /* DUET_RELAY_H */
