/* jwt.h - JSON Web Tokens (RFC 7519) signed with HS256, checked with OpenSSL.
 *
 * The platform's own backend mints the token; tipcastd only verifies it.
 * Claims used: "sub" (user id, string), "role" ("viewer", "creator",
 * "admin", or a staff role of the admin API: "finance", "operations",
 * "support", "auditor"), "exp" (seconds since the epoch, required), "nbf" (optional).
 * The header must say {"alg":"HS256"}; "kid", when present, selects the
 * secret. Signatures are compared in constant time.
 */
#ifndef TIPCAST_JWT_H
#define TIPCAST_JWT_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* A user id or room id: 1..64 bytes of [A-Za-z0-9_.-]. */
#define ID_MAX 64
/* The longest token accepted; longer is refused as malformed. */
#define JWT_MAX_BYTES 4096
/* Clock skew tolerated on exp and nbf. */
#define JWT_LEEWAY_S 30
/* Longest device id (claim "dev"). */
#define JWT_DEV_MAX 64

enum role {
    ROLE_VIEWER = 0,
    ROLE_CREATOR = 1,
    ROLE_ADMIN = 2,
    /* Staff roles: the admin API only (docs/admin-api.md); the WebSocket
     * side refuses them. */
    ROLE_FINANCE = 3,
    ROLE_OPERATIONS = 4,
    ROLE_SUPPORT = 5,
    ROLE_AUDITOR = 6,
    /* An OBS overlay's read-only token: its subject is the one room it may
     * read (join, history, leaderboard); it moves no money. The token also
     * carries the claim "room", equal to "sub", so that its scope is
     * written in it. */
    ROLE_OVERLAY = 7,
};
#define ROLE_COUNT 8

enum jwt_result {
    JWT_OK = 0,
    JWT_MALFORMED,     /* not three base64url parts, bad JSON, alg not HS256 */
    JWT_UNKNOWN_KID,   /* the kid names no configured secret */
    JWT_BAD_SIGNATURE, /* signature does not match */
    JWT_BAD_CLAIMS,    /* sub, role or exp missing or of the wrong form */
    JWT_EXPIRED,       /* exp (plus leeway) is in the past */
    JWT_NOT_YET_VALID, /* nbf (minus leeway) is in the future */
};

struct jwt_claims {
    char sub[ID_MAX + 1];
    enum role role;
    int64_t exp;
    /* The "dev" claim (device id), NULL when the token has none. It points
     * into storage of jwt_verify that its next call on the same thread
     * reuses: copy it to keep it (a connection keeps its own copy, and only
     * when there is one: most tokens have none). */
    const char *dev;
};

/* Verifies `token` (len bytes, need not be NUL-terminated) against the
 * secrets in `cfg` at time `now_s`. On JWT_OK fills `out`; on any other
 * result `out` is left zeroed. Allocates nothing that outlives the call. */
enum jwt_result jwt_verify(const struct config *cfg, const char *token, size_t len,
                           int64_t now_s, struct jwt_claims *out);

/* Mints a token for tests and the demo: header {"alg":"HS256","typ":"JWT"}
 * plus "kid" when kid is not NULL. Writes a NUL-terminated token to `out`.
 * Returns its length, or -1 when `outlen` is too small or an id is invalid. */
int jwt_sign(const char *key, size_t key_len, const char *kid, const char *sub,
             enum role role, int64_t exp, char *out, size_t outlen);

/* Returns 1 when s[0..len) is a valid user or room id, else 0. */
int id_valid(const char *s, size_t len);

/* "viewer", "creator", "admin", "finance", "operations", "support",
 * "auditor", "overlay". */
const char *role_name(enum role role);

/* 1 for the staff roles of the admin API (finance, operations, support,
 * auditor), which the WebSocket refuses. */
int role_staff(enum role role);

/* The role named s[0..len), or -1. */
int role_parse(const char *s, size_t len);

/* A stable, short, lower-case string for a result ("expired", ...). */
const char *jwt_result_name(enum jwt_result r);

#endif
