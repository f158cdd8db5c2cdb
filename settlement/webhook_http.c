/* webhook_http.c - the webhook sender's pure parts (see webhook_http.h). */
#include "webhook_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sign.h"

static void set_err(char *err, size_t errlen, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '.' || c == '-' || c == '_';
}

static int is_ipv6_char(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' || c == '.';
}

int webhook_url_parse(const char *url, struct webhook_url *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (strncmp(url, "https://", 8) == 0) {
        set_err(err, errlen, "https is not spoken: point it at a TLS-terminating proxy on this host (http://)");
        return -1;
    }
    if (strncmp(url, "http://", 7) != 0) {
        set_err(err, errlen, "must start with http://");
        return -1;
    }
    size_t n = strlen(url);
    if (n >= WEBHOOK_URL_MAX) {
        set_err(err, errlen, "too long");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)url[i];
        if (c <= 0x20 || c >= 0x7f || c == '#') {
            set_err(err, errlen, "blanks, control bytes, non-ASCII bytes and '#' are not allowed");
            return -1;
        }
    }
    const char *p = url + 7, *q, *host = p;
    size_t host_len;
    if (*p == '[') {
        const char *end = strchr(p, ']');
        if (!end || end == p + 1) {
            set_err(err, errlen, "bad [IPv6] host");
            return -1;
        }
        for (q = p + 1; q < end; q++) {
            if (!is_ipv6_char(*q)) {
                set_err(err, errlen, "bad [IPv6] host");
                return -1;
            }
        }
        memcpy(out->host, p + 1, (size_t)(end - p - 1));
        q = end + 1;
    } else {
        for (q = p; *q && *q != ':' && *q != '/' && *q != '?'; q++) {
            if (!is_name_char(*q)) {
                set_err(err, errlen, *q == '@' ? "a user part is not allowed" : "bad host name");
                return -1;
            }
        }
        if (q == p) {
            set_err(err, errlen, "no host");
            return -1;
        }
        memcpy(out->host, p, (size_t)(q - p));
    }
    host_len = (size_t)(q - host);
    out->port = 80;
    if (*q == ':') {
        long port = 0;
        int digits = 0;
        for (q++; is_digit(*q) && digits < 6; q++, digits++)
            port = port * 10 + (*q - '0');
        if (digits == 0 || port < 1 || port > 65535) {
            set_err(err, errlen, "bad port");
            return -1;
        }
        out->port = (int)port;
    }
    if (*q != '\0' && *q != '/' && *q != '?') {
        set_err(err, errlen, "bad port");
        return -1;
    }
    /* A bare query gets the root path in front: "?a=1" is no request target. */
    snprintf(out->path, sizeof out->path, "%s%s", *q == '/' ? "" : "/", q);
    if (out->port == 80)
        snprintf(out->host_header, sizeof out->host_header, "%.*s", (int)host_len, host);
    else
        snprintf(out->host_header, sizeof out->host_header, "%.*s:%d", (int)host_len, host, out->port);
    return 0;
}

/* A header value we write as it is: printable ASCII without blanks, which
 * event names and idempotency keys are (anything else would let a value
 * break the request's lines). */
static int header_value_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= WEBHOOK_URL_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f)
            return 0;
    }
    return 1;
}

/* The fixed text of the headers, and the variable parts' bounds: path,
 * host, event, key (each < WEBHOOK_URL_MAX), signature and numbers. */
#define WEBHOOK_HEAD_MAX (512 + 4 * WEBHOOK_URL_MAX + SIGN_HEADER_MAX)

char *webhook_request_build(const struct webhook_url *u, const char *secret, size_t secret_len,
                            const struct webhook_request *r, size_t *len)
{
    if (!header_value_ok(r->event) || !header_value_ok(r->key))
        return NULL;
    char sig[SIGN_HEADER_MAX];
    if (sign_make(secret, secret_len, r->ts, r->body, r->body_len, sig) < 0)
        return NULL;
    char head[WEBHOOK_HEAD_MAX];
    int n = snprintf(head, sizeof head,
                     "POST %s HTTP/1.1\r\n"
                     "Host: %s\r\n"
                     "User-Agent: tipcastd-webhook\r\n"
                     "Content-Type: application/json\r\n"
                     "Content-Length: %zu\r\n"
                     "Connection: close\r\n"
                     "Idempotency-Key: %s\r\n"
                     "X-Tipcast-Event: %s\r\n"
                     "X-Tipcast-Timestamp: %lld\r\n"
                     "X-Tipcast-Attempt: %d\r\n"
                     "X-Tipcast-Signature: %s\r\n"
                     "\r\n",
                     u->path, u->host_header, r->body_len, r->key, r->event, (long long)r->ts, r->attempt, sig);
    if (n < 0 || (size_t)n >= sizeof head)
        return NULL;
    char *req = malloc((size_t)n + r->body_len);
    if (!req)
        return NULL;
    memcpy(req, head, (size_t)n);
    if (r->body_len)
        memcpy(req + n, r->body, r->body_len);
    *len = (size_t)n + r->body_len;
    return req;
}

int webhook_status_parse(const char *buf, size_t len, int *status)
{
    static const char prefix[] = "HTTP/1.";
    size_t pos = 0;
    for (;;) {
        const char *line = buf + pos;
        size_t left = len - pos;
        /* What has come so far must begin like a status line: a peer that
         * is no HTTP server is told apart without waiting for a newline. */
        if (memcmp(line, prefix, left < 7 ? left : 7) != 0)
            return -1;
        const char *nl = memchr(line, '\n', left);
        if (!nl)
            return 0;
        size_t ll = (size_t)(nl - line);
        if (ll > 0 && line[ll - 1] == '\r')
            ll--;
        /* "HTTP/1.x SSS" then nothing, or a blank and the reason. */
        if (ll < 12 || !is_digit(line[7]) || line[8] != ' ' || !is_digit(line[9]) || !is_digit(line[10]) ||
            !is_digit(line[11]) || (ll > 12 && line[12] != ' '))
            return -1;
        int st = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
        if (st < 100 || st > 599)
            return -1;
        if (st >= 200) {
            *status = st;
            return 1;
        }
        /* An interim answer: its headers end with an empty line, and the
         * final answer follows. */
        size_t p = (size_t)(nl - buf) + 1;
        for (;;) {
            const char *e = memchr(buf + p, '\n', len - p);
            if (!e)
                return 0;
            size_t l = (size_t)(e - (buf + p));
            p = (size_t)(e - buf) + 1;
            if (l == 0 || (l == 1 && e[-1] == '\r'))
                break;
        }
        pos = p;
    }
}

int64_t webhook_backoff_ms(int attempts, int base_ms, uint32_t rnd)
{
    int64_t d = base_ms > 0 ? base_ms : 1;
    for (int i = 1; i < attempts && d < WEBHOOK_BACKOFF_MAX_MS; i++)
        d *= 2;
    if (d > WEBHOOK_BACKOFF_MAX_MS)
        d = WEBHOOK_BACKOFF_MAX_MS;
    return d - (int64_t)((uint64_t)d * (rnd % 1001) / 5000);
}
