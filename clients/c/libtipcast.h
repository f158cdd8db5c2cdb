/* libtipcast.h - an asynchronous client of tipcastd (protocol tipcast.v1.msgpack,
 * docs/protocol.md) on libwebsockets and msgpack-c.
 *
 * It is a standalone library for third parties: it links only libwebsockets
 * and msgpack-c, never tipcastd's own libraries.
 *
 * THE CONTRACT
 *
 * Threads. A tc_client owns one libwebsockets context and is used from ONE
 * thread: the one that calls tc_client_service(). Every callback of this
 * header runs on that thread, from inside tc_client_service(). No function of
 * this header may be called from another thread at the same time (there is no
 * lock inside); a program with several threads serialises its calls itself.
 *
 * What callbacks may do. A callback may call any function of this header on
 * the same client (send requests, tc_client_close(), tc_client_stop()),
 * except tc_client_free() and tc_client_service(): free the client after
 * tc_client_service() has returned.
 *
 * Ownership. Strings given to functions are copied before they return; the
 * caller keeps them. A `const tc_msg *` given to a callback, and everything
 * read from it (strings from tc_msg_str(), nested messages), lives until the
 * callback returns: copy what you keep (tc_msg_json() gives a malloc'd copy to
 * free()). Strings returned by tc_* accessors are NOT NUL-terminated unless
 * they say so: use the length they give.
 *
 * Delivery. Room events ("event" messages, and the elements of "events"
 * batches) reach on_event exactly once per room, in seq order, with no gap,
 * across reconnects: the client fills a gap with `history`, and after a
 * reconnect joins every room again and asks `history` from the last seq it
 * delivered. When the server no longer holds the missed events
 * (`history_gone`), the client joins afresh and calls on_snapshot with
 * reset = 1: the events in between are lost for this client.
 *
 * Money. A gift or tip keeps its request id: it is sent again after every
 * reconnect until it gets an ack or a final error, and `unavailable`,
 * `backlogged`, `risk_rate_limited` and `rate_limited` are retried with the
 * same id after the error's retry_after_ms, until money_retry_ms has passed
 * since the request was made. The server answers a repeat with the first ack
 * and "replayed": true, so a gift is paid at most once.
 *
 * Replies. Each request takes a tc_reply_cb, called exactly once: with the
 * reply (code NULL), with the server's error (code = the error's code, msg =
 * the error message), or with a code of the client's own and msg NULL:
 *   "timeout"        no reply within request_timeout_ms (money: money_retry_ms)
 *   "closed"         the client was closed, or the connection was lost before
 *                    the reply (requests other than gift and tip)
 *   "not_connected"  the client is not open and does not reconnect
 *   "bad_argument"   the request could not be built (an id or text too long)
 * A request function returns 0 when the request is queued (its callback will
 * run later, never from inside the function) and -1 when it was not (then the
 * callback is never called).
 *
 * Bounds. Ids, rooms and users: at most 64 bytes (TC_ID_MAX). A frame from
 * the server: at most TC_FRAME_MAX bytes, else the connection is dropped and
 * resumed. Events buffered per room while a gap is being filled: at most
 * TC_PENDING_MAX; past it the room is resumed from history only.
 */
#ifndef LIBTIPCAST_H
#define LIBTIPCAST_H

#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TC_ID_MAX 64
#define TC_FRAME_MAX (1024 * 1024)
#define TC_PENDING_MAX 4096

typedef struct tc_client tc_client;

/* A message from the server: one msgpack map (or, inside it, any value). */
typedef struct tc_msg {
    const msgpack_object *obj;
} tc_msg;

/* The connection's state, as tc_client_state() and on_state tell it. */
enum tc_state {
    TC_IDLE,         /* made, tc_client_connect() not called yet */
    TC_CONNECTING,   /* the first connection is being opened */
    TC_OPEN,         /* authenticated: "welcome" received */
    TC_RECONNECTING, /* connection lost: waiting to connect again, or connecting */
    TC_CLOSED,       /* closed for good: tc_client_close(), auth refused, or no reconnect */
};

/* Why the client is closed for good (tc_client_close_reason()). */
enum tc_close_reason {
    TC_CLOSE_NONE,          /* not closed */
    TC_CLOSE_BY_USER,       /* tc_client_close() */
    TC_CLOSE_AUTH,          /* the token was refused (auth_invalid / auth_expired, close 4003) */
    TC_CLOSE_UNREACHABLE,   /* could not connect and reconnect is off */
    TC_CLOSE_LOST,          /* the connection was lost and reconnect is off */
};

typedef void (*tc_reply_cb)(tc_client *c, const tc_msg *msg, const char *code, void *ud);
typedef void (*tc_msg_cb)(tc_client *c, const tc_msg *msg, void *ud);
typedef void (*tc_snapshot_cb)(tc_client *c, const tc_msg *joined, int reset, void *ud);
typedef void (*tc_state_cb)(tc_client *c, enum tc_state state, int attempt, int delay_ms, void *ud);

struct tc_config {
    const char *url;        /* ws://HOST:PORT/ws or wss://...; required */
    const char *token;      /* the JWT; required */
    int auth_message;       /* 1: send the token in an "auth" message; 0 (default): ?token= */
    int reconnect;          /* 1: reconnect after a lost connection, with backoff */
    int reconnect_min_ms;   /* first delay (default 250) */
    int reconnect_max_ms;   /* longest delay (default 30000) */
    int connect_timeout_ms; /* a connection attempt that takes longer fails (default 10000) */
    int request_timeout_ms; /* default 10000 */
    int money_retry_ms;     /* how long a gift or tip is retried (default 120000) */
    /* Unsolicited messages; each may be NULL. */
    tc_msg_cb on_event;       /* a room event, in seq order, exactly once */
    tc_snapshot_cb on_snapshot; /* a "joined" reply (also the client's own re-joins) */
    tc_msg_cb on_welcome;     /* each "welcome" (each connection) */
    tc_msg_cb on_leaderboard; /* a pushed "leaderboard" */
    tc_msg_cb on_room;        /* a "room" status message */
    tc_msg_cb on_error;       /* an "error" that answers no request of ours */
    tc_state_cb on_state;     /* every state change */
    void *ud;                 /* passed to every callback of the config */
};

/* A client (not connected yet), or NULL when out of memory or the url is not
 * ws:// or wss://. */
tc_client *tc_client_new(const struct tc_config *cfg);
/* Starts connecting; 0, or -1 when the client is not idle. */
int tc_client_connect(tc_client *c);
/* Runs the connection: waits for network activity or a timer (at most
 * about 50 ms) and runs the callbacks due. Returns -1 once the client is
 * closed for good, or after tc_client_stop(); else 0. */
int tc_client_service(tc_client *c);
/* Makes the next tc_client_service() return -1 (a loop's way out). */
void tc_client_stop(tc_client *c);
/* Closes for good: no reconnect; every request still waiting is answered "closed". */
void tc_client_close(tc_client *c);
/* Frees everything; not from inside a callback. Calls nothing. */
void tc_client_free(tc_client *c);

enum tc_state tc_client_state(const tc_client *c);
enum tc_close_reason tc_client_close_reason(const tc_client *c);
/* The code of the error that closed the client for auth (e.g. "auth_invalid"), or "". */
const char *tc_client_close_code(const tc_client *c);
/* Writes a fresh request id "PREFIX-<random hex>" into out (out_len >= 40). */
void tc_client_new_id(tc_client *c, const char *prefix, char *out, size_t out_len);

/* Requests (docs/protocol.md). The room functions track the room: it is
 * joined again after a reconnect until tc_leave(). */
int tc_join(tc_client *c, const char *room, tc_reply_cb cb, void *ud);
int tc_leave(tc_client *c, const char *room, tc_reply_cb cb, void *ud);
int tc_history(tc_client *c, const char *room, int64_t after_seq, tc_reply_cb cb, void *ud);
int tc_leaderboard(tc_client *c, const char *room, tc_reply_cb cb, void *ud);
int tc_catalog(tc_client *c, tc_reply_cb cb, void *ud);
int tc_balance(tc_client *c, tc_reply_cb cb, void *ud);
/* user: NULL for one's own (a creator); an admin may name a creator. */
int tc_earnings(tc_client *c, const char *user, tc_reply_cb cb, void *ud);
int tc_notice(tc_client *c, const char *room, const char *text, tc_reply_cb cb, void *ud);

/* Money. id: the idempotency key (NULL: a fresh one). combo, text: NULL for none. */
struct tc_gift {
    const char *room;
    int64_t gift;
    int64_t count; /* 0: not sent (the server takes 1) */
    const char *combo;
    const char *id;
};
int tc_gift(tc_client *c, const struct tc_gift *g, tc_reply_cb cb, void *ud);
struct tc_tip {
    const char *room;
    int64_t amount;
    const char *text;
    const char *id;
};
int tc_tip(tc_client *c, const struct tc_tip *t, tc_reply_cb cb, void *ud);
/* An admin's wallet credit ("credit"); retried like a gift. */
int tc_credit(tc_client *c, const char *user, int64_t amount, const char *text, const char *id,
              tc_reply_cb cb, void *ud);

/* Reading messages. A missing key, or one of another type, reads as "not there". */
/* The value under key in a map message, or {NULL} (tc_msg_ok() false). */
tc_msg tc_msg_get(const tc_msg *m, const char *key);
int tc_msg_ok(tc_msg m);
/* The string under key: its bytes (not NUL-terminated) and length; NULL if none. */
const char *tc_msg_str(const tc_msg *m, const char *key, size_t *len);
/* Copies the string under key into out as a C string (truncated to out_len - 1);
 * returns out, "" when there is none. */
const char *tc_msg_strcpy(const tc_msg *m, const char *key, char *out, size_t out_len);
/* 1 and *out when key holds an integer; else 0. */
int tc_msg_int(const tc_msg *m, const char *key, int64_t *out);
/* The integer under key, or dflt. */
int64_t tc_msg_int_or(const tc_msg *m, const char *key, int64_t dflt);
/* 1 when the string under key equals s. */
int tc_msg_is(const tc_msg *m, const char *key, const char *s);
/* Number of elements of an array value (0 when not an array) and element i. */
size_t tc_msg_len(tc_msg m);
tc_msg tc_msg_at(tc_msg m, size_t i);
/* The message as one line of JSON (malloc'd, NUL-terminated; free() it), or NULL.
 * Binary values become base64 strings; integers are exact. */
char *tc_msg_json(const tc_msg *m);

/* Decodes one msgpack frame into a message, for tests and tools: returns 0
 * and fills *out (release it with tc_frame_release()), or -1. */
typedef struct tc_frame {
    msgpack_unpacked up;
    tc_msg msg;
} tc_frame;
int tc_frame_decode(const void *data, size_t len, tc_frame *out);
void tc_frame_release(tc_frame *f);

#ifdef __cplusplus
}
#endif

#endif
