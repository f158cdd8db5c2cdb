/* request.c - decoding a client's request: the request table, each
 * type's required and optional fields and their bounds (see request.h). */
#include "request.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coins.h"
#include "mpack.h"
#include "promo.h"
#include "utf8.h"

static int fail(struct request_error *err, enum err code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(struct request_error *err, enum err code, const char *field, const char *fmt, ...)
{
    va_list ap;
    err->code = code;
    err->field = field;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return -1;
}

/* One field of a request, whichever the format it came in. */
enum fval_kind { FV_ABSENT, FV_STR, FV_INT, FV_OTHER };
struct fval {
    enum fval_kind kind;
    const char *s;
    size_t len;
    int64_t i;
};

enum field_id {
    F_TYPE, F_ID, F_ROOM, F_TEXT, F_TOKEN, F_AFTER_SEQ, F_GIFT, F_CNT, F_AMOUNT, F_COMBO, F_USER,
    F_DEADLINE, F_ORDER, F_COUPON, F_PERIOD, F_CAMPAIGN, F_TIER,
    F_COUNT
};
static const char *const field_names[F_COUNT] = {"type", "id", "room", "text", "token", "after_seq",
                                                 "gift", "count", "amount", "combo", "user", "deadline",
                                                 "order", "coupon", "period", "campaign", "tier"};

static int field_lookup(const char *key, size_t len)
{
    for (int f = 0; f < F_COUNT; f++)
        if (strlen(field_names[f]) == len && memcmp(field_names[f], key, len) == 0)
            return f;
    return -1;
}

static int decode_msgpack(const uint8_t *buf, size_t len, struct fval *fv, struct request_error *err)
{
    struct mpack m = mpack_of(buf, len);
    uint32_t n;
    if (mpack_map(&m, &n) < 0)
        return fail(err, ERR_BAD_MESSAGE, NULL, "a message must be one msgpack map");
    for (uint32_t i = 0; i < n; i++) {
        const char *key;
        size_t klen;
        if (mpack_str(&m, &key, &klen) < 0)
            return fail(err, ERR_BAD_MESSAGE, NULL, "map keys must be strings");
        int f = field_lookup(key, klen);
        const uint8_t *save = m.p;
        struct mpack_item it;
        enum mpack_kind k = f < 0 ? MP_NIL : mpack_next(&m, &it);
        if (k == MP_BAD)
            return fail(err, ERR_BAD_MESSAGE, NULL, "truncated or malformed msgpack");
        if (f >= 0 && k == MP_STR) {
            fv[f] = (struct fval){FV_STR, (const char *)it.data, (size_t)it.len, 0};
        } else if (f >= 0 && k == MP_INT) {
            fv[f] = (struct fval){FV_INT, NULL, 0, it.i};
        } else {
            /* An unknown key's value, or a known key's value of another
             * type: skipped whole (and the field marked of the wrong type). */
            m.p = save;
            if (mpack_skip(&m, REQUEST_DEPTH_MAX - 1) < 0)
                return fail(err, ERR_BAD_MESSAGE, NULL, "malformed or too deeply nested value");
            if (f >= 0)
                fv[f] = (struct fval){FV_OTHER, NULL, 0, 0};
        }
    }
    if (m.p != m.end)
        return fail(err, ERR_BAD_MESSAGE, NULL, "trailing bytes after the message");
    return 0;
}

static int json_depth_ok(json_t *v, int depth)
{
    if (depth > REQUEST_DEPTH_MAX)
        return 0;
    if (json_is_object(v)) {
        const char *k;
        json_t *c;
        json_object_foreach(v, k, c)
            if (!json_depth_ok(c, depth + 1))
                return 0;
    } else if (json_is_array(v)) {
        size_t i;
        json_t *c;
        json_array_foreach(v, i, c)
            if (!json_depth_ok(c, depth + 1))
                return 0;
    }
    return 1;
}

static int decode_json(const uint8_t *buf, size_t len, struct request *req, struct fval *fv,
                       struct request_error *err)
{
    json_error_t jerr;
    json_t *root = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!root)
        return fail(err, ERR_BAD_MESSAGE, NULL, "invalid JSON: %s", jerr.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return fail(err, ERR_BAD_MESSAGE, NULL, "a message must be one JSON object");
    }
    if (!json_depth_ok(root, 1)) {
        json_decref(root);
        return fail(err, ERR_BAD_MESSAGE, NULL, "nested deeper than %d levels", REQUEST_DEPTH_MAX);
    }
    req->json = root;
    for (int f = 0; f < F_COUNT; f++) {
        json_t *v = json_object_get(root, field_names[f]);
        if (!v)
            continue;
        if (json_is_string(v))
            fv[f] = (struct fval){FV_STR, json_string_value(v), json_string_length(v), 0};
        else if (json_is_integer(v))
            fv[f] = (struct fval){FV_INT, NULL, 0, json_integer_value(v)};
        else
            fv[f] = (struct fval){FV_OTHER, NULL, 0, 0};
    }
    return 0;
}

#define BIT(f) (1u << (f))
_Static_assert(F_COUNT <= 32, "a request's fields are bits of a uint32_t");

static const struct {
    const char *name;
    enum req_type type;
    uint32_t needs;    /* bit per field_id that the request requires */
    uint32_t optional; /* fields it reads when present */
} req_types[] = {
    {"auth", REQ_AUTH, BIT(F_TOKEN), 0},
    {"ping", REQ_PING, 0, 0},
    {"join", REQ_JOIN, BIT(F_ROOM), 0},
    {"leave", REQ_LEAVE, BIT(F_ROOM), 0},
    {"notice", REQ_NOTICE, BIT(F_ROOM) | BIT(F_TEXT), 0},
    {"history", REQ_HISTORY, BIT(F_ROOM) | BIT(F_AFTER_SEQ), 0},
    {"catalog", REQ_CATALOG, 0, 0},
    {"gift", REQ_GIFT, BIT(F_ROOM) | BIT(F_GIFT), BIT(F_CNT) | BIT(F_COMBO) | BIT(F_COUPON)},
    {"tip", REQ_TIP, BIT(F_ROOM) | BIT(F_AMOUNT), BIT(F_TEXT)},
    {"balance", REQ_BALANCE, 0, 0},
    {"credit", REQ_CREDIT, BIT(F_USER) | BIT(F_AMOUNT), BIT(F_TEXT)},
    {"leaderboard", REQ_LEADERBOARD, BIT(F_ROOM), 0},
    {"earnings", REQ_EARNINGS, 0, BIT(F_USER)},
    {"goal", REQ_GOAL, BIT(F_ROOM) | BIT(F_AMOUNT), BIT(F_GIFT) | BIT(F_DEADLINE) | BIT(F_TEXT)},
    {"goal_clear", REQ_GOAL_CLEAR, BIT(F_ROOM), 0},
    {"unpin", REQ_UNPIN, BIT(F_ROOM) | BIT(F_ORDER), 0},
    {"moderator_add", REQ_MODERATOR_ADD, BIT(F_ROOM) | BIT(F_USER), 0},
    {"moderator_remove", REQ_MODERATOR_REMOVE, BIT(F_ROOM) | BIT(F_USER), 0},
    {"moderators", REQ_MODERATORS, BIT(F_ROOM), 0},
    {"global_board", REQ_GLOBAL_BOARD, 0, BIT(F_PERIOD)},
    {"pledge", REQ_PLEDGE, BIT(F_CAMPAIGN) | BIT(F_AMOUNT), BIT(F_TIER)},
};

_Static_assert(sizeof req_types / sizeof req_types[0] == REQ_COUNT, "every request type has a row");

static int need_str(const struct fval *fv, int f, struct request_error *err)
{
    if (fv[f].kind == FV_ABSENT)
        return fail(err, ERR_BAD_FIELD, field_names[f], "'%s' is required", field_names[f]);
    if (fv[f].kind != FV_STR)
        return fail(err, ERR_BAD_FIELD, field_names[f], "'%s' must be a string", field_names[f]);
    return 0;
}

static int check_fields(const struct fval *fv, struct request *req, struct request_error *err)
{
    /* The id first, so that every later error can name it. */
    if (need_str(fv, F_ID, err) < 0)
        return -1;
    if (fv[F_ID].len < 1 || fv[F_ID].len > REPLY_ID_MAX ||
        !utf8_valid((const uint8_t *)fv[F_ID].s, fv[F_ID].len) ||
        memchr(fv[F_ID].s, '\0', fv[F_ID].len))
        return fail(err, ERR_BAD_FIELD, "id", "'id' must be 1..%d bytes of UTF-8 text", REPLY_ID_MAX);
    memcpy(req->id, fv[F_ID].s, fv[F_ID].len);
    req->id[fv[F_ID].len] = '\0';
    memcpy(err->id, req->id, fv[F_ID].len + 1);

    if (need_str(fv, F_TYPE, err) < 0)
        return -1;
    size_t t;
    for (t = 0; t < sizeof req_types / sizeof req_types[0]; t++)
        if (strlen(req_types[t].name) == fv[F_TYPE].len &&
            memcmp(req_types[t].name, fv[F_TYPE].s, fv[F_TYPE].len) == 0)
            break;
    if (t == sizeof req_types / sizeof req_types[0])
        return fail(err, ERR_UNKNOWN_TYPE, "type", "unknown message type");
    req->type = req_types[t].type;
    err->type = (int)req->type;
    uint32_t needs = req_types[t].needs, optional = req_types[t].optional;
    /* Whether field f is to be checked: required, or optional and given. */
#define WANTS(f) ((needs & BIT(f)) || ((optional & BIT(f)) && fv[f].kind != FV_ABSENT))

    if (WANTS(F_ROOM)) {
        if (need_str(fv, F_ROOM, err) < 0)
            return -1;
        if (!id_valid(fv[F_ROOM].s, fv[F_ROOM].len))
            return fail(err, ERR_BAD_FIELD, "room", "'room' must be 1..%d bytes of [A-Za-z0-9_.-]", ID_MAX);
        memcpy(req->room, fv[F_ROOM].s, fv[F_ROOM].len);
        req->room[fv[F_ROOM].len] = '\0';
    }
    if (WANTS(F_USER)) {
        if (need_str(fv, F_USER, err) < 0)
            return -1;
        if (!id_valid(fv[F_USER].s, fv[F_USER].len))
            return fail(err, ERR_BAD_FIELD, "user", "'user' must be 1..%d bytes of [A-Za-z0-9_.-]", ID_MAX);
        memcpy(req->user, fv[F_USER].s, fv[F_USER].len);
        req->user[fv[F_USER].len] = '\0';
    }
    if (WANTS(F_TEXT)) {
        /* A notice says something; a tip's or credit's message may be empty. */
        size_t min = req->type == REQ_NOTICE ? 1 : 0;
        size_t max = req->type == REQ_NOTICE ? REQUEST_NOTICE_MAX
                     : req->type == REQ_GOAL ? REQUEST_GOAL_TITLE_MAX
                                             : WALLET_TIP_TEXT_MAX;
        if (need_str(fv, F_TEXT, err) < 0)
            return -1;
        if (fv[F_TEXT].len < min || fv[F_TEXT].len > max ||
            !utf8_valid((const uint8_t *)fv[F_TEXT].s, fv[F_TEXT].len))
            return fail(err, ERR_BAD_FIELD, "text", "'text' must be %zu..%zu bytes of UTF-8 text", min, max);
        req->text = fv[F_TEXT].s;
        req->text_len = fv[F_TEXT].len;
    }
    if (WANTS(F_TOKEN)) {
        if (need_str(fv, F_TOKEN, err) < 0)
            return -1;
        req->token = fv[F_TOKEN].s;
        req->token_len = fv[F_TOKEN].len;
    }
    if (WANTS(F_AFTER_SEQ)) {
        if (fv[F_AFTER_SEQ].kind != FV_INT || fv[F_AFTER_SEQ].i < 0)
            return fail(err, ERR_BAD_FIELD, "after_seq", "'after_seq' must be an integer >= 0");
        req->after_seq = fv[F_AFTER_SEQ].i;
    }
    if (WANTS(F_GIFT)) {
        if (fv[F_GIFT].kind != FV_INT || fv[F_GIFT].i < 1 || fv[F_GIFT].i > INT32_MAX)
            return fail(err, ERR_BAD_FIELD, "gift", "'gift' must be a gift id (a positive integer)");
        req->gift = fv[F_GIFT].i;
    }
    if (WANTS(F_ORDER)) {
        if (need_str(fv, F_ORDER, err) < 0)
            return -1;
        if (!id_valid(fv[F_ORDER].s, fv[F_ORDER].len))
            return fail(err, ERR_BAD_FIELD, "order", "'order' must be an order id");
        memcpy(req->order, fv[F_ORDER].s, fv[F_ORDER].len);
        req->order[fv[F_ORDER].len] = '\0';
    }
    if (WANTS(F_DEADLINE)) {
        /* Whether it is still ahead is the goal's check, against the clock. */
        if (fv[F_DEADLINE].kind != FV_INT || fv[F_DEADLINE].i < 1 || fv[F_DEADLINE].i > REQUEST_DEADLINE_MAX)
            return fail(err, ERR_BAD_FIELD, "deadline", "'deadline' must be a time in ms since the epoch");
        req->deadline = fv[F_DEADLINE].i;
    }
    req->count = 1;
    if (WANTS(F_CNT)) {
        /* The upper bound is a setting, checked by the wallet. */
        if (fv[F_CNT].kind != FV_INT || fv[F_CNT].i < 1)
            return fail(err, ERR_BAD_FIELD, "count", "'count' must be an integer >= 1");
        req->count = fv[F_CNT].i;
    }
    if (WANTS(F_AMOUNT)) {
        if (fv[F_AMOUNT].kind != FV_INT || fv[F_AMOUNT].i < 1 || fv[F_AMOUNT].i > COINS_MAX)
            return fail(err, ERR_BAD_FIELD, "amount", "'amount' must be an integer of coins, 1..%lld",
                        (long long)COINS_MAX);
        req->amount = fv[F_AMOUNT].i;
    }
    if (WANTS(F_COMBO)) {
        if (need_str(fv, F_COMBO, err) < 0)
            return -1;
        if (fv[F_COMBO].len > WALLET_COMBO_MAX || !id_valid(fv[F_COMBO].s, fv[F_COMBO].len))
            return fail(err, ERR_BAD_FIELD, "combo", "'combo' must be 1..%d bytes of [A-Za-z0-9_.-]",
                        WALLET_COMBO_MAX);
        memcpy(req->combo, fv[F_COMBO].s, fv[F_COMBO].len);
        req->combo[fv[F_COMBO].len] = '\0';
    }
    if (WANTS(F_COUPON)) {
        if (need_str(fv, F_COUPON, err) < 0)
            return -1;
        if (!id_valid(fv[F_COUPON].s, fv[F_COUPON].len))
            return fail(err, ERR_BAD_FIELD, "coupon", "'coupon' must be 1..%d bytes of [A-Za-z0-9_.-]", ID_MAX);
        memcpy(req->coupon, fv[F_COUPON].s, fv[F_COUPON].len);
        req->coupon[fv[F_COUPON].len] = '\0';
    }
    req->period = GBOARD_DAY;
    if (WANTS(F_PERIOD)) {
        if (need_str(fv, F_PERIOD, err) < 0)
            return -1;
        int per = gboard_period_parse(fv[F_PERIOD].s, fv[F_PERIOD].len);
        if (per < 0)
            return fail(err, ERR_BAD_FIELD, "period", "'period' must be day, week or month");
        req->period = per;
    }
    if (WANTS(F_CAMPAIGN)) {
        if (fv[F_CAMPAIGN].kind != FV_INT || fv[F_CAMPAIGN].i < 1 || fv[F_CAMPAIGN].i > INT64_C(999999999999999999))
            return fail(err, ERR_BAD_FIELD, "campaign", "'campaign' must be a campaign id (a positive integer)");
        req->campaign = fv[F_CAMPAIGN].i;
    }
    if (WANTS(F_TIER)) {
        if (fv[F_TIER].kind != FV_INT || fv[F_TIER].i < 1 || fv[F_TIER].i > 999999999)
            return fail(err, ERR_BAD_FIELD, "tier", "'tier' must be a tier number (a positive integer)");
        req->tier = fv[F_TIER].i;
    }
#undef WANTS
    return 0;
}

int request_decode(enum fmt fmt, const uint8_t *buf, size_t len, struct request *req,
                 struct request_error *err)
{
    struct fval fv[F_COUNT];
    memset(fv, 0, sizeof fv);
    memset(req, 0, sizeof *req);
    err->type = -1;
    err->code = ERR_BAD_MESSAGE;
    err->field = NULL;
    err->id[0] = '\0';
    err->message[0] = '\0';

    int rc = fmt == FMT_MSGPACK ? decode_msgpack(buf, len, fv, err) : decode_json(buf, len, req, fv, err);
    if (rc == 0)
        rc = check_fields(fv, req, err);
    if (rc < 0)
        request_release(req);
    return rc;
}

const char *request_type_name(enum req_type t)
{
    for (size_t i = 0; i < sizeof req_types / sizeof req_types[0]; i++)
        if (req_types[i].type == t)
            return req_types[i].name;
    return "?";
}

void request_release(struct request *req)
{
    if (req->json)
        json_decref(req->json);
    req->json = NULL;
}
