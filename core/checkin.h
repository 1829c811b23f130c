/*
 * duet — check-ins: shared rituals whose answers are revealed together, and the gentle
 * signals around them (pause/resume, agreements, milestones).
 *
 * A ritual is a set of questions (free text, or a 1–5 scale) with a rhythm (daily, or weekly
 * on a day). One partner proposes it, the other accepts (or declines) it. Once accepted, it
 * has instances: one per local calendar date of its rhythm, starting with the date on which
 * it was accepted ("the first instance is due at once"). An instance's id is derived from the
 * ritual id and the date, so both devices name it the same without talking:
 *
 *   instance id = BLAKE2b-128("duet checkin instance v1" || ritual id || "YYYY-MM-DD")
 *
 * Revealed together. Each answer is sealed (XChaCha20-Poly1305) under its own fresh random
 * key K with associated data naming the instance and the author, and travels as an ANSWER
 * item with a commitment to K, but without K. A device sends its REVEAL (K) for an instance
 * only when it has answered and the partner's sealed ANSWER to that instance is stored here.
 * Nothing the partner can send asks for a key; a key leaves only by that rule, so a modified
 * client learns my answer only after it has committed to one of its own. Rituals created
 * with `open` (both accept that) send K with the answer. docs/protocol/checkin.md has the
 * byte-exact bodies and the argument.
 *
 * Receiving. duet_checkin_receive() runs inside the sync host's receive batch (outbox.c),
 * which holds the ratchet state in memory until its commit; sealing from inside the batch
 * would advance a stale copy of it. So receiving only records "reveal owed" rows, and the
 * host calls duet_checkin_flush_owed() after each commit, in its own transaction, to seal
 * and queue those REVEALs.
 *
 * Time. core/ reads no clock: every function takes now_ms. Local dates come from
 * localtime_r/mktime in the process's time zone (TZ), and the rhythm is computed on calendar
 * dates (days since 1970-01-01), so a daylight-saving change never skips or doubles one.
 *
 * Conventions of this module:
 *  - Functions that write run inside the caller's transaction, except
 *    duet_checkin_flush_owed(), which opens its own.
 *  - Everything that is the couple's words (questions, answers, keys, agreement texts) is
 *    sealed at rest with the store key (store.h). In clear: ids, dates, states, counts.
 *  - Ids (ritual, instance, agreement) are 16 bytes, shown as 32 hex digits like item ids.
 *  - Errors: DUET_ENOTPAIRED (a ritual needs a partner), DUET_ENORITUAL (no such ritual or
 *    instance), DUET_ESTATE (not allowed in the ritual's state), DUET_EEXIST (already
 *    answered: an answer, once sealed and sent, cannot be changed), DUET_EINVAL/DUET_ERANGE
 *    (bad question, answer or date), DUET_EEMPTY (an answer with nothing in it).
 *  - Out-parameters are zeroed on entry; caller bugs abort.
 */
#ifndef DUET_CHECKIN_H
#define DUET_CHECKIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "items.h"
#include "store.h"

#define DUET_CHECKIN_ID_BYTES       16u
#define DUET_CHECKIN_QUESTIONS_MAX  16u   /* questions in a ritual */
#define DUET_CHECKIN_QID_MAX        32u   /* bytes in a question id: [a-z0-9_-] */
#define DUET_CHECKIN_QTEXT_MAX      300u  /* bytes of UTF-8 in a question */
#define DUET_CHECKIN_NAME_MAX       32u   /* bytes of UTF-8 in a ritual's name */
#define DUET_CHECKIN_TEXT_MAX       4096u /* bytes of UTF-8 in one text answer */
#define DUET_CHECKIN_SCALE_MIN      1u
#define DUET_CHECKIN_SCALE_MAX      5u
#define DUET_CHECKIN_PAD            256u   /* sealed answers are padded to a multiple of this */
#define DUET_CHECKIN_PLAIN_MAX      66560u /* padded answer plaintext, at most */
#define DUET_CHECKIN_KEY_BYTES      32u
#define DUET_CHECKIN_NONCE_BYTES    24u
#define DUET_CHECKIN_COMMIT_BYTES   32u
#define DUET_CHECKIN_DATE_LEN       10u     /* "YYYY-MM-DD" */
#define DUET_CHECKIN_DUE_MAX        31u     /* unanswered instances listed per ritual, newest */
#define DUET_CHECKIN_SPAN_DAYS      36600   /* instances exist up to ~100 years after the start */
#define DUET_CHECKIN_DAY_MIN        0       /* 1970-01-01: dates duet reads are in [MIN, MAX] */
#define DUET_CHECKIN_DAY_MAX        2896007 /* 9898-12-31, so MAX + SPAN still has 4 digits */
#define DUET_CHECKIN_LIST_MAX       1000u   /* rituals or agreements listed */
#define DUET_CHECKIN_AGREE_MAX      2000u   /* bytes of UTF-8 in an agreement */
#define DUET_CHECKIN_NOTE_MAX       1000u   /* bytes in a pause note or a milestone */
#define DUET_CHECKIN_SVG_MAX        (4u << 20) /* the chart, at most */
#define DUET_CHECKIN_SVG_SERIES_MAX 64u
#define DUET_CHECKIN_SVG_POINTS_MAX 4000u

/* ---- questions, templates, rhythms ---------------------------------------------------- */

typedef enum { DUET_CHECKIN_TEXT = 1, DUET_CHECKIN_SCALE = 2 } duet_checkin_qtype_t;

typedef struct duet_checkin_question {
    char id[DUET_CHECKIN_QID_MAX + 1];
    char text[DUET_CHECKIN_QTEXT_MAX + 1];
    uint32_t type; /* duet_checkin_qtype_t */
} duet_checkin_question_t;

/* What a ritual asks: its name ("weekly", or a custom ritual's) and its questions. */
typedef struct duet_checkin_spec {
    char name[DUET_CHECKIN_NAME_MAX + 1];
    uint32_t nq;
    duet_checkin_question_t q[DUET_CHECKIN_QUESTIONS_MAX];
} duet_checkin_spec_t;

typedef enum { DUET_CHECKIN_DAILY = 1, DUET_CHECKIN_WEEKLY = 2 } duet_checkin_every_t;

/* The rhythm: daily, or weekly on an ISO weekday (1 Monday .. 7 Sunday; 0 in a proposal:
 * the weekday on which the partner accepts). */
typedef struct duet_checkin_rhythm {
    uint32_t every;
    uint32_t weekday;
} duet_checkin_rhythm_t;

typedef struct duet_checkin_template {
    duet_checkin_spec_t spec;
    duet_checkin_rhythm_t rhythm; /* the default rhythm */
} duet_checkin_template_t;

/* The built-in templates ("weekly", "daily", ...), in a fixed order; question ids are
 * stable across versions. */
size_t duet_checkin_template_count(void);
const duet_checkin_template_t *duet_checkin_template_at(size_t i);
const duet_checkin_template_t *duet_checkin_template_find(const char *name); /* or NULL */

/* Check a spec: a name of 1..NAME_MAX bytes of UTF-8 without control characters; 1..16
 * questions with unique ids of 1..QID_MAX characters from [a-z0-9_-], texts of
 * 1..QTEXT_MAX bytes of UTF-8 without control characters, known types. DUET_EINVAL. */
duet_err_t duet_checkin_spec_check(const duet_checkin_spec_t *spec) DUET_MUST_CHECK;

/* "daily", "weekly", "weekly:DAY" (DAY: mon..sun or monday..sunday, any case). DUET_EINVAL.
 * format writes "daily", "weekly" or "weekly:sun" (at most 16 bytes with the NUL). */
duet_err_t duet_checkin_rhythm_parse(const char *s, duet_checkin_rhythm_t *out) DUET_MUST_CHECK;
void duet_checkin_rhythm_format(const duet_checkin_rhythm_t *r, char out[static 16]);

/* ---- calendar dates ------------------------------------------------------------------- */

/* Days since 1970-01-01 of a proleptic Gregorian date, and back (pure integer arithmetic). */
int64_t duet_checkin_day_from_civil(int64_t y, unsigned m, unsigned d);
void duet_checkin_civil_from_day(int64_t day, int64_t *y, unsigned *m, unsigned *d);
/* "YYYY-MM-DD" and back; parse refuses anything else, and dates outside [DAY_MIN, DAY_MAX]
 * (DUET_EINVAL). */
void duet_checkin_day_format(int64_t day, char out[static DUET_CHECKIN_DATE_LEN + 1]);
duet_err_t duet_checkin_day_parse(const char *s, size_t len, int64_t *day) DUET_MUST_CHECK;
/* ISO weekday of a day: 1 Monday .. 7 Sunday. */
uint32_t duet_checkin_weekday(int64_t day);
/* The local calendar date at ms, and the first instant (ms) of a local date, in the
 * process's time zone. */
int64_t duet_checkin_local_day(uint64_t ms);
uint64_t duet_checkin_day_start_ms(int64_t day);

/* ---- rituals -------------------------------------------------------------------------- */

typedef enum {
    DUET_RITUAL_PROPOSED = 0,
    DUET_RITUAL_ACTIVE = 1,
    DUET_RITUAL_DECLINED = 2 /* declined, withdrawn or stopped: final */
} duet_checkin_state_t;

typedef struct duet_checkin_ritual {
    uint8_t id[DUET_CHECKIN_ID_BYTES];
    bool mine;                    /* I proposed it */
    uint32_t state;               /* duet_checkin_state_t */
    duet_checkin_rhythm_t rhythm; /* weekday resolved once active */
    bool open;                    /* answers visible as they arrive */
    bool started;                 /* start_day and active_at are set (it was accepted) */
    int64_t start_day;            /* the date of the first instance */
    uint64_t active_at;           /* ms: when it became active on this device */
    uint64_t hlc;                 /* when it was proposed (hlc.h) */
    duet_checkin_spec_t spec;
} duet_checkin_ritual_t;

/* Propose a ritual to the partner: stored as proposed, a RITUAL item queued. rhythm.weekday
 * 0 leaves the day to the acceptor. id_out gets the ritual id. */
duet_err_t duet_checkin_propose(duet_store_t *st, const duet_checkin_spec_t *spec,
                                duet_checkin_rhythm_t rhythm, bool open, uint64_t now_ms,
                                uint8_t id_out[static DUET_CHECKIN_ID_BYTES]) DUET_MUST_CHECK;

/* Accept the partner's proposal: active from today's local date (its first instance). Only
 * a proposal the partner made and that is still proposed (DUET_ESTATE otherwise). */
duet_err_t duet_checkin_accept(duet_store_t *st, const uint8_t id[static DUET_CHECKIN_ID_BYTES],
                               uint64_t now_ms) DUET_MUST_CHECK;

/* Decline the partner's proposal, withdraw mine, or stop an active ritual (for both).
 * DUET_ESTATE if it is already declined. */
duet_err_t duet_checkin_decline(duet_store_t *st, const uint8_t id[static DUET_CHECKIN_ID_BYTES],
                                uint64_t now_ms) DUET_MUST_CHECK;

/* One ritual (DUET_ENORITUAL if unknown), or all of them, oldest proposal first (*out is
 * malloc'd; free()). */
duet_err_t duet_checkin_get(duet_store_t *st, const uint8_t id[static DUET_CHECKIN_ID_BYTES],
                            duet_checkin_ritual_t *out) DUET_MUST_CHECK;
duet_err_t duet_checkin_list(duet_store_t *st, duet_checkin_ritual_t **out,
                             size_t *n) DUET_MUST_CHECK;

/* Find a ritual by its id in hex or by a unique prefix of at least 4 hex digits.
 * DUET_ENORITUAL if none, DUET_EINVAL if the text is not hex or the prefix is ambiguous. */
duet_err_t duet_checkin_resolve_ritual(duet_store_t *st, const char *hex,
                                       uint8_t id[static DUET_CHECKIN_ID_BYTES]) DUET_MUST_CHECK;

/* ---- instances ------------------------------------------------------------------------ */

typedef struct duet_checkin_instance {
    uint8_t id[DUET_CHECKIN_ID_BYTES];
    uint8_t ritual[DUET_CHECKIN_ID_BYTES];
    int64_t day;
} duet_checkin_instance_t;

void duet_checkin_instance_id(const uint8_t ritual[static DUET_CHECKIN_ID_BYTES], int64_t day,
                              uint8_t out[static DUET_CHECKIN_ID_BYTES]);

/* Whether day is an instance of a started ritual, and the first instance on or after day. */
bool duet_checkin_is_instance(const duet_checkin_ritual_t *r, int64_t day);
int64_t duet_checkin_next_instance(const duet_checkin_ritual_t *r, int64_t day);

/* The instant (ms) an instance becomes due: the start of its local date, and for the first
 * instance not before the ritual became active here. */
uint64_t duet_checkin_due_ms(const duet_checkin_ritual_t *r, int64_t day);

/* The instances I have not answered whose local date has come (at most DUET_CHECKIN_DUE_MAX
 * per ritual, the newest), of active rituals, by date then ritual. *out is malloc'd. */
duet_err_t duet_checkin_due(duet_store_t *st, uint64_t now_ms, duet_checkin_instance_t **out,
                            size_t *n) DUET_MUST_CHECK;

/* Find an instance by its id in hex or a unique prefix (at least 4 hex digits): one with an
 * answer here, or one of an active ritual up to tomorrow's local date. DUET_ENORITUAL if
 * none, DUET_EINVAL if not hex or ambiguous. */
duet_err_t duet_checkin_resolve_instance(duet_store_t *st, const char *hex, uint64_t now_ms,
                                         duet_checkin_instance_t *out) DUET_MUST_CHECK;

/*
 * For the daemon's reminders: the first instance, in order of (due instant, instance id),
 * strictly after the cursor (after_ms, after_inst), that I have not answered. after_inst
 * NULL means "everything due at after_ms is past". DUET_ENOENT when no active ritual.
 * Loop: when <= now, announce it and call again with the cursor (when, instance); else
 * sleep until when (or until something is received: an accepted ritual is due at once).
 */
duet_err_t duet_checkin_next_due(duet_store_t *st, uint64_t after_ms, const uint8_t *after_inst,
                                 uint64_t *when_ms, uint8_t inst[static DUET_CHECKIN_ID_BYTES],
                                 uint8_t ritual[static DUET_CHECKIN_ID_BYTES]) DUET_MUST_CHECK;

/* ---- answers -------------------------------------------------------------------------- */

typedef struct duet_checkin_value {
    uint32_t type;  /* 0: not answered, else the question's duet_checkin_qtype_t */
    uint32_t scale; /* 1..5 */
    char *text;     /* malloc'd, NUL-terminated (text answers) */
    size_t text_len;
} duet_checkin_value_t;

typedef struct duet_checkin_answers {
    uint32_t n; /* the ritual's number of questions */
    duet_checkin_value_t v[DUET_CHECKIN_QUESTIONS_MAX];
} duet_checkin_answers_t;

/* Set answer i (copies the text; DUET_ENOMEM). clear wipes and frees every text. */
duet_err_t duet_checkin_answers_set_text(duet_checkin_answers_t *a, uint32_t i, const char *s,
                                         size_t len) DUET_MUST_CHECK;
void duet_checkin_answers_set_scale(duet_checkin_answers_t *a, uint32_t i, uint32_t v);
void duet_checkin_answers_clear(duet_checkin_answers_t *a);

/* Check answers against a spec: a value's type must be its question's, scales 1..5
 * (DUET_ERANGE), texts valid UTF-8 of 1..TEXT_MAX bytes without NUL (DUET_EUTF8,
 * DUET_ETOOBIG; an empty text counts as not answered), at least one answer (DUET_EEMPTY). */
duet_err_t duet_checkin_answers_check(const duet_checkin_spec_t *spec,
                                      const duet_checkin_answers_t *a) DUET_MUST_CHECK;

/*
 * Answer an instance of an active ritual whose date has come: the answer is sealed under a
 * fresh key, kept here (sealed), and queued as an ANSWER, with a check-in line for both
 * inboxes; if the partner's sealed answer is already here (or the ritual is open), the key
 * follows. DUET_EEXIST if I have answered it (an answer cannot be changed).
 */
duet_err_t duet_checkin_answer(duet_store_t *st, const duet_checkin_instance_t *inst,
                               const duet_checkin_answers_t *a, uint64_t now_ms) DUET_MUST_CHECK;

typedef enum {
    DUET_CHECKIN_WAITING = 0, /* the partner has not answered (nothing here) */
    DUET_CHECKIN_SEALED = 1,  /* their sealed answer is here, unreadable */
    DUET_CHECKIN_REVEALED = 2 /* readable: both answered and their key came (or open) */
} duet_checkin_pstate_t;

typedef struct duet_checkin_view {
    duet_checkin_instance_t inst;
    bool mine_answered;
    uint64_t mine_hlc;
    bool key_released; /* my key has gone to the partner (or travelled with my answer) */
    duet_checkin_answers_t mine;
    uint32_t partner_state;         /* duet_checkin_pstate_t */
    uint64_t partner_hlc;           /* when they answered (0 if waiting) */
    duet_checkin_answers_t partner; /* only when revealed */
} duet_checkin_view_t;

void duet_checkin_view_clear(duet_checkin_view_t *v);
void duet_checkin_views_free(duet_checkin_view_t *v, size_t n);

/* The state of one instance, both sides, as far as this device may see it. */
duet_err_t duet_checkin_show(duet_store_t *st, const duet_checkin_instance_t *inst,
                             duet_checkin_view_t *out) DUET_MUST_CHECK;

/* Every instance of one ritual (or of all, ritual NULL) that has an answer, or is an
 * instance of an active ritual up to today: by date, then ritual id. */
duet_err_t duet_checkin_history(duet_store_t *st, const uint8_t *ritual, uint64_t now_ms,
                                duet_checkin_view_t **out, size_t *n) DUET_MUST_CHECK;

/* ---- receiving ------------------------------------------------------------------------ */

/* The travelling kinds this module receives. */
#define DUET_CHECKIN_KIND(k)                                                                       \
    ((k) == DUET_KIND_RITUAL || (k) == DUET_KIND_ANSWER || (k) == DUET_KIND_REVEAL ||              \
     (k) == DUET_KIND_AGREEMENT)

/*
 * A RITUAL, ANSWER, REVEAL or AGREEMENT item from the partner, inside the receive batch's
 * transaction. Never seals or queues (see the preamble). DUET_EDECODE for a malformed body;
 * a well-formed item that does not fit (unknown ritual, a key that does not open the sealed
 * answer, a second answer to the same instance) is DUET_OK and changes nothing.
 */
duet_err_t duet_checkin_receive(duet_store_t *st, uint32_t kind,
                                const uint8_t id[static DUET_CHECKIN_ID_BYTES], uint64_t hlc,
                                const uint8_t *body, size_t len, uint64_t now_ms) DUET_MUST_CHECK;

/* Seal and queue the REVEALs owed (its own transaction; call after each receive commit).
 * *queued (may be NULL) gets how many. */
duet_err_t duet_checkin_flush_owed(duet_store_t *st, uint64_t now_ms,
                                   size_t *queued) DUET_MUST_CHECK;

/* ---- inbox lines: check-in answered, pause, resume, milestone --------------------------- */

typedef struct duet_checkin_line {
    uint8_t instance[DUET_CHECKIN_ID_BYTES];
    uint8_t ritual[DUET_CHECKIN_ID_BYTES];
    int64_t day;
    char name[DUET_CHECKIN_NAME_MAX + 1];
} duet_checkin_line_t;

duet_err_t duet_checkin_line_decode(const uint8_t *body, size_t len,
                                    duet_checkin_line_t *out) DUET_MUST_CHECK;

typedef struct duet_checkin_pause {
    bool has_until;
    int64_t until_day;                    /* the last local date of the pause */
    char note[DUET_CHECKIN_NOTE_MAX + 1]; /* "" if none */
} duet_checkin_pause_t;

/* Queue a PAUSE ("let's slow down", until a date or open-ended, with a note) or a RESUME
 * (only the note is used). Needs a partner. id_out (may be NULL) gets the item id. */
duet_err_t duet_checkin_pause(duet_store_t *st, const duet_checkin_pause_t *p, uint64_t now_ms,
                              uint8_t *id_out) DUET_MUST_CHECK;
duet_err_t duet_checkin_resume(duet_store_t *st, const char *note, uint64_t now_ms,
                               uint8_t *id_out) DUET_MUST_CHECK;
duet_err_t duet_checkin_pause_decode(const uint8_t *body, size_t len,
                                     duet_checkin_pause_t *out) DUET_MUST_CHECK;

/* The pause in force at now_ms: the latest PAUSE or RESUME of either side, when it is a
 * PAUSE whose date has not passed. *paused false otherwise. */
duet_err_t duet_checkin_pause_state(duet_store_t *st, uint64_t now_ms, bool *paused, bool *mine,
                                    duet_checkin_pause_t *p) DUET_MUST_CHECK;

/* A milestone: {1: text}, 1..NOTE_MAX bytes of UTF-8. Works unpaired (sent when paired).
 * decode points *text into body. */
duet_err_t duet_checkin_milestone(duet_store_t *st, const char *text, size_t len, uint64_t now_ms,
                                  uint8_t *id_out) DUET_MUST_CHECK;
duet_err_t duet_checkin_milestone_decode(const uint8_t *body, size_t len, const char **text,
                                         size_t *tlen) DUET_MUST_CHECK;

typedef struct duet_checkin_milestone_rec {
    uint8_t id[DUET_CHECKIN_ID_BYTES];
    bool mine;
    uint64_t hlc;
    char text[DUET_CHECKIN_NOTE_MAX + 1];
} duet_checkin_milestone_rec_t;

/* Every milestone, oldest first; *out malloc'd (free()). */
duet_err_t duet_checkin_milestones(duet_store_t *st, duet_checkin_milestone_rec_t **out,
                                   size_t *n) DUET_MUST_CHECK;

/* ---- agreements ----------------------------------------------------------------------- */

/*
 * A shared agreement: a text with a version. It counts as agreed only when both partners
 * have accepted its current version; a change makes a new version that both must accept
 * again (its author accepts it by writing it). Two changes of the same version made at the
 * same time: the one with the greater revision id wins on both devices.
 */
typedef struct duet_checkin_agreement {
    uint8_t id[DUET_CHECKIN_ID_BYTES];
    uint64_t version;
    uint8_t rev[DUET_CHECKIN_ID_BYTES];
    bool mine; /* I wrote the current version */
    bool accepted_me, accepted_partner;
    uint64_t hlc; /* first written */
    char text[DUET_CHECKIN_AGREE_MAX + 1];
} duet_checkin_agreement_t;

duet_err_t duet_checkin_agree_add(duet_store_t *st, const char *text, size_t len, uint64_t now_ms,
                                  uint8_t id_out[static DUET_CHECKIN_ID_BYTES]) DUET_MUST_CHECK;
duet_err_t duet_checkin_agree_change(duet_store_t *st,
                                     const uint8_t id[static DUET_CHECKIN_ID_BYTES],
                                     const char *text, size_t len, uint64_t now_ms) DUET_MUST_CHECK;
/* Accept the current version. DUET_EEXIST if I already have. */
duet_err_t duet_checkin_agree_accept(duet_store_t *st,
                                     const uint8_t id[static DUET_CHECKIN_ID_BYTES],
                                     uint64_t now_ms) DUET_MUST_CHECK;
duet_err_t duet_checkin_agree_get(duet_store_t *st, const uint8_t id[static DUET_CHECKIN_ID_BYTES],
                                  duet_checkin_agreement_t *out) DUET_MUST_CHECK;
/* All agreements, oldest first; *out malloc'd (free() after sodium_memzero if you care). */
duet_err_t duet_checkin_agree_list(duet_store_t *st, duet_checkin_agreement_t **out,
                                   size_t *n) DUET_MUST_CHECK;
duet_err_t duet_checkin_resolve_agreement(duet_store_t *st, const char *hex,
                                          uint8_t id[static DUET_CHECKIN_ID_BYTES]) DUET_MUST_CHECK;

/* ---- the chart ------------------------------------------------------------------------ */

/* One scale question over time: n points, days ascending, values 1..5 or 0 (no answer). */
typedef struct duet_checkin_series {
    const char *title;
    size_t n;
    const int64_t *days;
    const uint8_t *me;
    const uint8_t *partner;
} duet_checkin_series_t;

typedef struct duet_checkin_chart {
    const char *title;
    const char *me_name, *partner_name;
    size_t nseries;
    const duet_checkin_series_t *series;
} duet_checkin_chart_t;

/*
 * Render the chart as a standalone SVG document (UTF-8, NUL-terminated, malloc'd): one
 * panel per series, a line per partner with dots at the answers, gaps where one is missing,
 * a 1–5 axis, dates along the bottom, a legend. Text is XML-escaped. A chart without
 * points says so. DUET_ETOOBIG beyond the SVG limits, DUET_EINVAL for a value above 5.
 */
duet_err_t duet_checkin_svg(const duet_checkin_chart_t *c, char **out, size_t *len) DUET_MUST_CHECK;

#endif /* DUET_CHECKIN_H */
