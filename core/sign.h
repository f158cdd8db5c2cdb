/* sign.h - signed HTTP bodies, both ways: the payment provider's callbacks
 * that tipcastd checks, and the webhooks it sends.
 *
 * The scheme: X-Tipcast-Timestamp carries the Unix time in seconds, and
 * X-Tipcast-Signature "sha256=" and the lower-case hex of HMAC-SHA256 under
 * the shared secret over "<timestamp>.<body>". The timestamp is signed so
 * that a captured request cannot be replayed after the window. */
#ifndef TIPCAST_SIGN_H
#define TIPCAST_SIGN_H

#include <stddef.h>
#include <stdint.h>

/* "sha256=" and 64 hex digits, and a NUL. */
#define SIGN_HEADER_MAX 72
/* How far the timestamp may be from our clock, either way. */
#define SIGN_WINDOW_S 300

enum sign_result {
    SIGN_OK,
    SIGN_BAD,   /* missing, malformed, or not the signature of this body */
    SIGN_STALE, /* well signed, but the timestamp is outside the window */
};

/* Writes the X-Tipcast-Signature value of (ts, body) into out
 * (SIGN_HEADER_MAX). Returns 0, or -1 when OpenSSL fails. */
int sign_make(const char *secret, size_t secret_len, int64_t ts, const char *body, size_t len, char *out);

/* Checks the two header values (NULL when absent) against body at time
 * now_s. The signature is compared in constant time, and is checked before
 * the timestamp, so that an unsigned request learns nothing about the
 * window. */
enum sign_result sign_check(const char *secret, size_t secret_len, const char *ts_header, const char *sig_header,
                            const char *body, size_t len, int64_t now_s);

#endif
