/* errors.c - the table of protocol error codes (see errors.h). */
#include "errors.h"

#include <string.h>

#include "log.h"

static const struct {
    const char *code;
    const char *extra; /* integer key carried, or NULL */
    int field;         /* carries "field" */
} errors[ERR_COUNT] = {
    [ERR_BAD_MESSAGE] = {"bad_message", NULL, 0},
    [ERR_WRONG_FRAME_TYPE] = {"wrong_frame_type", NULL, 0},
    [ERR_BAD_FIELD] = {"bad_field", NULL, 1},
    [ERR_UNKNOWN_TYPE] = {"unknown_type", NULL, 1},
    [ERR_AUTH_REQUIRED] = {"auth_required", NULL, 0},
    [ERR_AUTH_EXPIRED] = {"auth_expired", NULL, 0},
    [ERR_AUTH_INVALID] = {"auth_invalid", NULL, 0},
    [ERR_ALREADY_AUTHENTICATED] = {"already_authenticated", NULL, 0},
    [ERR_FORBIDDEN] = {"forbidden", NULL, 0},
    [ERR_NOT_MEMBER] = {"not_member", NULL, 0},
    [ERR_TOO_MANY_ROOMS] = {"too_many_rooms", NULL, 0},
    [ERR_ROOM_FULL] = {"room_full", NULL, 0},
    [ERR_RATE_LIMITED] = {"rate_limited", "retry_after_ms", 0},
    [ERR_HISTORY_GONE] = {"history_gone", "oldest_seq", 0},
    [ERR_INSUFFICIENT_BALANCE] = {"insufficient_balance", "balance", 0},
    [ERR_UNKNOWN_GIFT] = {"unknown_gift", NULL, 1},
    [ERR_ROOM_NOT_LIVE] = {"room_not_live", NULL, 0},
    [ERR_IDEMPOTENCY_CONFLICT] = {"idempotency_conflict", NULL, 0},
    [ERR_BACKLOGGED] = {"backlogged", "retry_after_ms", 0},
    [ERR_UNAVAILABLE] = {"unavailable", "retry_after_ms", 0},
    [ERR_INTERNAL] = {"internal", NULL, 0},
    [ERR_ACCOUNT_FROZEN] = {"account_frozen", NULL, 0},
    [ERR_RISK_RATE_LIMITED] = {"risk_rate_limited", "retry_after_ms", 0},
    [ERR_SPEND_CAP_EXCEEDED] = {"spend_cap_exceeded", "remaining", 0},
    [ERR_COUPON_INVALID] = {"coupon_invalid", NULL, 1},
    [ERR_COUPON_USED] = {"coupon_used", NULL, 1},
    [ERR_CAMPAIGN_NOT_FOUND] = {"campaign_not_found", NULL, 1},
    [ERR_CAMPAIGN_CLOSED] = {"campaign_closed", NULL, 0},
    [ERR_TIER_SOLD_OUT] = {"tier_sold_out", NULL, 1},
    [ERR_BELOW_TIER_MINIMUM] = {"below_tier_minimum", "minimum", 1},
};

const char *err_code(enum err e)
{
    tc_assert(e >= 0 && e < ERR_COUNT);
    return errors[e].code;
}

const char *err_extra_key(enum err e)
{
    tc_assert(e >= 0 && e < ERR_COUNT);
    return errors[e].extra;
}

int err_has_field(enum err e)
{
    tc_assert(e >= 0 && e < ERR_COUNT);
    return errors[e].field;
}

int err_lookup(const char *code)
{
    for (int e = 0; e < ERR_COUNT; e++)
        if (strcmp(errors[e].code, code) == 0)
            return e;
    return -1;
}
