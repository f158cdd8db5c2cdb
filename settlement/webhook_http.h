/* webhook_http.h - the pure parts of the webhook sender (settlement/webhook.h):
 * the webhook-url, the HTTP/1.1 request with its signature, the status line
 * of the answer, and the wait before the next attempt. No I/O, no clock:
 * tests/unit_webhook.c tests them directly.
 *
 * Only http:// is spoken. An https endpoint is reached through a
 * TLS-terminating proxy or sidecar on the same host (docs/settlement.md,
 * "Webhooks"). */
#ifndef TIPCAST_WEBHOOK_HTTP_H
#define TIPCAST_WEBHOOK_HTTP_H

#include <stddef.h>
#include <stdint.h>

/* Parts of a URL, bounded by the setting's own bound (CONFIG_STR_MAX). */
#define WEBHOOK_URL_MAX 256
/* The longest wait between two attempts, whatever the attempts. */
#define WEBHOOK_BACKOFF_MAX_MS (3600 * 1000)

struct webhook_url {
    char host[WEBHOOK_URL_MAX];      /* a name, or an address (IPv6 without its brackets) */
    char host_header[WEBHOOK_URL_MAX]; /* the Host header: host as written, ":port" unless 80 */
    char path[WEBHOOK_URL_MAX];      /* from the first '/' or '?' on; "/" when none */
    int port;                        /* 80 when none */
};

/* Parses http://HOST[:PORT][/PATH][?QUERY] (HOST a name of letters, digits,
 * '.', '-' and '_', an IPv4 address or [IPv6]). No user part, no fragment,
 * no byte <= 0x20 or >= 0x7f. Returns 0, or -1 with the reason in err. */
int webhook_url_parse(const char *url, struct webhook_url *out, char *err, size_t errlen);


/* One delivery's fields. */
struct webhook_request {
    const char *event, *key; /* X-Tipcast-Event, Idempotency-Key */
    const char *body;        /* the payload, sent as is and signed */
    size_t body_len;
    int64_t ts;              /* X-Tipcast-Timestamp, Unix seconds */
    int attempt;             /* X-Tipcast-Attempt, 1 for the first */
};

/* The whole POST (headers and body) into a new buffer (malloc; the caller
 * frees it) and its length into *len. NULL when the event or the key is
 * empty, longer than WEBHOOK_URL_MAX or holds a byte that a header cannot
 * carry (a control byte, a non-ASCII byte), when signing fails, or when out
 * of memory. */
char *webhook_request_build(const struct webhook_url *u, const char *secret, size_t secret_len,
                            const struct webhook_request *r, size_t *len);

/* The final status of an HTTP/1.x answer whose first `len` bytes are buf:
 * interim 1xx answers (their status line and headers) are skipped. Returns
 * 1 with *status set (100..599 never 1xx), 0 when more bytes are needed, -1
 * when the bytes are not an HTTP/1.x answer. Lines may end in CRLF or LF. */
int webhook_status_parse(const char *buf, size_t len, int *status);

/* The wait before attempt `attempts` + 1, after `attempts` (>= 1) have
 * failed: base_ms * 2^(attempts - 1), at most WEBHOOK_BACKOFF_MAX_MS, less a
 * jitter of up to a fifth of it chosen by `rnd` (any 32 random bits), so
 * that deliveries that failed together do not come back together, and the
 * waits still grow (each is at least 4/5 of twice the one before). */
int64_t webhook_backoff_ms(int attempts, int base_ms, uint32_t rnd);

#endif
