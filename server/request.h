/* request.h - a client's request, decoded: both subprotocols carry the same
 * maps (docs/protocol.md), and both are read into one flat struct request
 * by the request table in request.c, which knows each type's required and
 * optional fields and their bounds.
 *
 * Decoding never trusts the client: every length is checked against the
 * bytes that remain (core/mpack.h), nesting is bounded, and every refusal
 * carries a stable error code, the offending field and the request id when
 * it could be read. */
#ifndef TIPCAST_REQUEST_H
#define TIPCAST_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "errors.h"
#include "frame.h"
#include "jwt.h"
#include "message.h"
#include "reply.h"
#include "wallet.h"

/* Longest notice text. */
#define REQUEST_NOTICE_MAX 500
/* Longest goal title (bytes of UTF-8), and the latest deadline (year 2100). */
#define REQUEST_DEADLINE_MAX 4102444800000LL
#define REQUEST_GOAL_TITLE_MAX 100
/* Deepest nesting of a request. */
#define REQUEST_DEPTH_MAX MESSAGE_DEPTH_MAX

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
    REQ_EARNINGS,
    REQ_GOAL,
    REQ_GOAL_CLEAR,
    REQ_UNPIN,
    REQ_MODERATOR_ADD,
    REQ_MODERATOR_REMOVE,
    REQ_MODERATORS,
    REQ_GLOBAL_BOARD,
    REQ_PLEDGE,
    REQ_COUNT
};

/* A decoded request. String fields point into the frame being decoded (or
 * into `json`), so they are valid until request_release() and while the
 * received bytes are kept. */
struct request {
    enum req_type type;
    char id[REPLY_ID_MAX + 1];
    char room[ID_MAX + 1];
    const char *text;
    size_t text_len;
    const char *token;
    size_t token_len;
    int64_t after_seq;
    int64_t gift;                     /* gift id */
    int64_t count;                    /* gift count, 1 when absent */
    int64_t amount;                   /* tip or credit amount */
    char combo[WALLET_COMBO_MAX + 1]; /* "" when absent */
    char user[ID_MAX + 1];            /* credit: the user credited; earnings: the creator, "" when absent */
    int64_t deadline;                 /* goal: ms since the epoch, 0 when absent */
    char order[ID_MAX + 1];           /* unpin: the pinned tip's order id */
    char coupon[ID_MAX + 1];          /* gift: a coupon's code, "" when absent */
    int period;                       /* global_board: enum gboard_period (day when absent) */
    int64_t campaign;                 /* pledge: the campaign id */
    int64_t tier;                     /* pledge: the reward tier, 0 when absent */
    json_t *json;                     /* owned: the parsed JSON document, or NULL */
};

/* Why a frame was refused: the code, the offending field or NULL, the
 * request id when it could be read ("" if not), and a message. */
struct request_error {
    int type; /* the request's type once it was read (enum req_type), else -1 */
    enum err code;
    const char *field;
    char id[REPLY_ID_MAX + 1];
    char message[160];
};

/* Decodes one frame. Returns 0 and fills `req` (release it with
 * request_release), or -1 and fills `err`; on -1 nothing needs to be
 * released. `buf` must outlive the use of `req`'s string fields. */
int request_decode(enum fmt fmt, const uint8_t *buf, size_t len, struct request *req, struct request_error *err);

void request_release(struct request *req);

/* A type's name as clients write it ("gift"). */
const char *request_type_name(enum req_type t);

#endif
