/* proto.h - protocol v1 codec: requests in, replies and events out.
 *
 * Both subprotocols carry the same maps (docs/protocol.md). Requests are
 * decoded into one flat `struct request`; everything the server sends is built
 * with the `enc` writer, which emits msgpack or JSON from the same calls, into
 * a reference-counted `struct frame` with LWS_PRE bytes of headroom so that
 * lws_write() can use it in place, and one frame can be shared by every member
 * of a room.
 *
 * The msgpack reader is our own: it never allocates, and it checks every
 * declared length against the bytes that remain, so a 6-byte frame declaring
 * 2^32 elements is refused before anything is reserved for them.
 */
#ifndef TIPCAST_PROTO_H
#define TIPCAST_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <msgpack.h>

#include "jwt.h"

enum fmt { FMT_MSGPACK = 0, FMT_JSON = 1, FMT_COUNT = 2 };

/* Fixed protocol bounds (docs/protocol.md, Limits). */
#define PROTO_REQ_ID_MAX 64
#define PROTO_TEXT_MAX 500
#define PROTO_DEPTH_MAX 8
/* A tip's message, and a gift's combo id. */
#define PROTO_TIP_TEXT_MAX 200
#define PROTO_COMBO_MAX 64
/* Bound on any amount of coins in a request: far below 2^53, so that the
 * Lua scripts' double arithmetic stays exact. */
#define PROTO_AMOUNT_MAX 1000000000000LL
/* Headroom lws needs before a payload; equal to LWS_PRE (checked in conn.c). */
#define PROTO_PRE 16

enum req_type {
    REQ_AUTH,
    REQ_PING,
    REQ_JOIN,
    REQ_LEAVE,
    REQ_NOTICE,
    REQ_HISTORY,
    REQ_CATALOG,
    REQ_GIFT,
    REQ_TIP,
    REQ_BALANCE,
    REQ_CREDIT,
    REQ_LEADERBOARD,
};

/* A decoded request. String fields point into the frame being decoded (or into
 * `json`), so they are valid until proto_request_release() and while the
 * received bytes are kept. */
struct request {
    enum req_type type;
    char id[PROTO_REQ_ID_MAX + 1];
    char room[ID_MAX + 1];
    const char *text;
    size_t text_len;
    const char *token;
    size_t token_len;
    int64_t after_seq;
    int64_t gift;           /* gift id */
    int64_t count;          /* gift count, 1 when absent */
    int64_t amount;         /* tip or credit amount */
    char combo[PROTO_COMBO_MAX + 1]; /* "" when absent */
    char user[ID_MAX + 1];  /* credit: the user credited */
    json_t *json; /* owned: the parsed JSON document, or NULL */
};

/* Why a frame was refused. `code` is a stable protocol error code, `field` the
 * offending field or NULL, `id` the request id when it could be read ("" if
 * not). */
struct proto_error {
    const char *code;
    const char *field;
    char id[PROTO_REQ_ID_MAX + 1];
    char message[160];
};

/* Decodes one frame. Returns 0 and fills `req` (release it with
 * proto_request_release), or -1 and fills `err`; on -1 nothing needs to be
 * released. `buf` must outlive the use of `req`'s string fields. */
int proto_decode(enum fmt fmt, const uint8_t *buf, size_t len, struct request *req,
                 struct proto_error *err);

void proto_request_release(struct request *req);

/* Returns 1 when buf[0..len) is valid UTF-8 (no overlongs, no surrogates). */
int proto_utf8_valid(const uint8_t *buf, size_t len);

/* ---- Frames ---------------------------------------------------------- */

/* A finished message ready for lws_write(data + PROTO_PRE, len, ...).
 * Reference counted: whoever holds a pointer holds a reference. */
struct frame {
    int refs;
    uint8_t fmt;
    uint8_t wire;   /* data holds whole WebSocket frames, headers included */
    uint32_t len;
    uint32_t cap;
    uint8_t data[];
};

static inline struct frame *frame_ref(struct frame *f) { f->refs++; return f; }
/* Drops one reference; frees the frame when it was the last. NULL is ignored. */
void frame_unref(struct frame *f);
/* The frame as it goes on the wire: its WebSocket header (FIN, binary for
 * msgpack, text for JSON, unmasked as a server's frames are) is written into
 * the headroom in front of the message. Sets *start; returns the length. */
size_t frame_wire(struct frame *f, uint8_t **start);
/* One `wire` frame holding a's and b's wire bytes back to back: two
 * messages that go out in one write. NULL when out of memory. */
struct frame *frame_join(struct frame *a, struct frame *b);

/* ---- The writer ------------------------------------------------------ */

/* Bound on the size of any frame the server builds. */
#define ENC_MAX_BYTES (1u << 22)

struct enc {
    enum fmt fmt;
    struct frame *f;      /* owned until enc_finish */
    int failed;           /* out of memory or past ENC_MAX_BYTES */
    msgpack_packer pk;
    int depth;
    uint8_t first[PROTO_DEPTH_MAX + 2];
    int after_key;
};

/* Starts a frame with room for about `hint` bytes. Never fails: an allocation
 * failure is remembered and reported by enc_finish. */
void enc_init(struct enc *e, enum fmt fmt, size_t hint);
/* In msgpack, maps and arrays declare their size up front: `n` must equal the
 * number of entries written before the matching enc_end_*. */
void enc_map(struct enc *e, uint32_t n);
void enc_end_map(struct enc *e);
void enc_array(struct enc *e, uint32_t n);
void enc_end_array(struct enc *e);
void enc_key(struct enc *e, const char *key);
void enc_str(struct enc *e, const char *s, size_t len);
void enc_cstr(struct enc *e, const char *s);
void enc_int(struct enc *e, int64_t v);
void enc_bool(struct enc *e, int v);
void enc_nil(struct enc *e);
/* Appends bytes that are already one complete value in the writer's format
 * (an encoded event, say), as the next element. */
void enc_raw(struct enc *e, const uint8_t *p, size_t len);
/* Writes one room event map: type/room/seq followed by the fields of `body`,
 * a msgpack map made by proto_event_body(). Returns -1 (and marks the writer
 * failed) when the body is not such a map. */
int enc_event(struct enc *e, const char *room, int64_t seq, const uint8_t *body, size_t body_len);
/* Returns the finished frame (one reference, owned by the caller), or NULL
 * when the writer failed; in both cases the writer is spent. */
struct frame *enc_finish(struct enc *e);
/* Abandons the writer and frees what it had. */
void enc_discard(struct enc *e);

/* ---- Messages -------------------------------------------------------- */

/* Builds the error frame. `id` may be NULL or "" when unknown. `extra_key`
 * with `extra_val` adds one integer field (retry_after_ms, oldest_seq), and
 * `field` adds "field"; either may be NULL. Returns NULL on allocation failure. */
struct frame *proto_error_frame(enum fmt fmt, const char *id, const char *code,
                                const char *message, const char *field,
                                const char *extra_key, int64_t extra_val);

/* Builds the msgpack body of a notice event: {kind, from, role, text, ts}.
 * Writes into out (cap bytes). Returns its length, or -1 when it does not fit. */
int proto_event_body(uint8_t *out, size_t cap, const char *kind, const char *from,
                     enum role role, const char *text, size_t text_len, int64_t ts_ms);

/* Builds one frame that carries n >= 2 event frames of one room, in order:
 * {"type":"events","room":ROOM,"events":[ev, ev, ...]}. The events are
 * copied as they are, not re-encoded. NULL when out of memory. */
struct frame *proto_batch_frame(enum fmt fmt, const char *room, struct frame *const *events, int n);

/* Builds a standalone event frame. NULL on failure or malformed body. */
struct frame *proto_event_frame(enum fmt fmt, const char *room, int64_t seq,
                                const uint8_t *body, size_t body_len);

#endif
