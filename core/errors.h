/* errors.h - the protocol's error codes: the one table of every code a
 * client can be answered, with the extra key each one carries. The codes
 * are stable (clients branch on them); docs/protocol.md's error table
 * mirrors this one, and a unit test holds the two together. */
#ifndef TIPCAST_ERRORS_H
#define TIPCAST_ERRORS_H

enum err {
    ERR_BAD_MESSAGE,
    ERR_WRONG_FRAME_TYPE,
    ERR_BAD_FIELD,
    ERR_UNKNOWN_TYPE,
    ERR_AUTH_REQUIRED,
    ERR_AUTH_EXPIRED,
    ERR_AUTH_INVALID,
    ERR_ALREADY_AUTHENTICATED,
    ERR_FORBIDDEN,
    ERR_NOT_MEMBER,
    ERR_TOO_MANY_ROOMS,
    ERR_ROOM_FULL,
    ERR_RATE_LIMITED,
    ERR_HISTORY_GONE,
    ERR_INSUFFICIENT_BALANCE,
    ERR_UNKNOWN_GIFT,
    ERR_ROOM_NOT_LIVE,
    ERR_IDEMPOTENCY_CONFLICT,
    ERR_BACKLOGGED,
    ERR_UNAVAILABLE,
    ERR_INTERNAL,
    ERR_ACCOUNT_FROZEN,
    ERR_RISK_RATE_LIMITED,
    ERR_SPEND_CAP_EXCEEDED,
    /* Promotions (issue 14, B14). */
    ERR_COUPON_INVALID,
    ERR_COUPON_USED,
    ERR_CAMPAIGN_NOT_FOUND,
    ERR_CAMPAIGN_CLOSED,
    ERR_TIER_SOLD_OUT,
    ERR_BELOW_TIER_MINIMUM,
    ERR_COUNT
};

/* An error's stable code, e.g. "bad_field". */
const char *err_code(enum err e);

/* The integer key an error of this code carries ("retry_after_ms",
 * "oldest_seq", "balance", "remaining"), or NULL when it carries none. */
const char *err_extra_key(enum err e);

/* 1 when an error of this code names the offending field ("field"). */
int err_has_field(enum err e);

/* The code named `code`, or -1. */
int err_lookup(const char *code);

#endif
