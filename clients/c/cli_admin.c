/* cli_admin.c - `tipcast admin ...`: the admin API (docs/admin-api.md) over
 * plain blocking HTTP/1.1 on one socket per call. The admin API listens on
 * loopback (or a private network) without TLS, so nothing more is needed. */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define MAX_ANSWER (64 * 1024 * 1024) /* a CSV export can be big; past this, stop */

struct buf {
    char *p;
    size_t len, cap;
};

static int buf_put(struct buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* http://HOST[:PORT][/BASE] */
static int parse_base(const char *url, char *host, size_t hn, char *port, size_t pn, const char **base)
{
    if (strncmp(url, "http://", 7) != 0)
        return -1;
    const char *p = url + 7, *slash = strchr(p, '/');
    size_t len = slash ? (size_t)(slash - p) : strlen(p);
    const char *colon = NULL;
    if (*p == '[') {
        const char *rb = memchr(p, ']', len);
        if (!rb || (size_t)(rb - p - 1) >= hn)
            return -1;
        snprintf(host, hn, "%.*s", (int)(rb - p - 1), p + 1);
        colon = rb + 1 < p + len && rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = memchr(p, ':', len);
        size_t h = colon ? (size_t)(colon - p) : len;
        if (!h || h >= hn)
            return -1;
        snprintf(host, hn, "%.*s", (int)h, p);
    }
    if (colon) {
        size_t l = (size_t)(p + len - colon - 1);
        if (!l || l >= pn)
            return -1;
        snprintf(port, pn, "%.*s", (int)l, colon + 1);
    } else {
        snprintf(port, pn, "80");
    }
    *base = slash ? slash : "";
    return 0;
}

/* Chunked transfer coding, decoded in place; -1 when malformed. */
static long dechunk(char *body, size_t len)
{
    size_t in = 0, out = 0;
    for (;;) {
        char *end;
        if (in >= len)
            return -1;
        unsigned long n = strtoul(body + in, &end, 16);
        char *crlf = strstr(body + in, "\r\n");
        if (!crlf || end == body + in)
            return -1;
        in = (size_t)(crlf - body) + 2;
        if (n == 0)
            return (long)out;
        if (in + n + 2 > len)
            return -1;
        memmove(body + out, body + in, n);
        out += n;
        in += n + 2;
    }
}

/* One call: returns the HTTP status (and the body in *body), or an exit code
 * as a negative number. */
static int http_call(struct cli *o, const char *method, const char *path, const char *json, struct buf *body)
{
    char host[256], port[16];
    const char *base;
    if (parse_base(o->admin, host, sizeof host, port, sizeof port, &base) < 0) {
        fprintf(stderr, "tipcast: bad --admin %s (http://HOST:PORT)\n", o->admin);
        return -EXIT_USAGE;
    }
    double timeout = o->timeout_s > 0 ? o->timeout_s : 10.0, deadline = mono_s() + timeout;
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &ai) != 0 || !ai) {
        cli_err(o, "unreachable", "cannot resolve %s", host);
        return -EXIT_UNREACHABLE;
    }
    int fd = -1;
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) < 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (fd < 0) {
        cli_err(o, "unreachable", "cannot connect to %s: %s", o->admin, strerror(errno));
        return -EXIT_UNREACHABLE;
    }
    /* The path: under /api/v1 unless it names /api/ itself. */
    char full[2048];
    const char *sep = path[0] == '/' ? "" : "/";
    if (!strncmp(path, "/api/", 5))
        snprintf(full, sizeof full, "%s%s", base, path);
    else
        snprintf(full, sizeof full, "%s/api/v1%s%s", base, sep, path);
    struct buf req = {0};
    char head[4096];
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: %s:%s\r\nAuthorization: Bearer %s\r\nAccept: application/json\r\n"
                     "User-Agent: tipcast-cli\r\nConnection: close\r\n",
                     method, full, host, port, o->token);
    if (n < 0 || (size_t)n >= sizeof head) {
        close(fd);
        cli_err(o, "usage", "the path or token is too long");
        return -EXIT_USAGE;
    }
    buf_put(&req, head, (size_t)n);
    if (json) {
        n = snprintf(head, sizeof head, "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n", strlen(json));
        buf_put(&req, head, (size_t)n);
        buf_put(&req, json, strlen(json));
    } else {
        buf_put(&req, "\r\n", 2);
    }
    int rc = 0;
    size_t off = 0;
    while (off < req.len) {
        ssize_t w = send(fd, req.p + off, req.len - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            rc = -EXIT_UNREACHABLE;
            break;
        }
        off += (size_t)w;
    }
    free(req.p);
    struct buf in = {0};
    while (!rc) {
        double left = deadline - mono_s();
        if (left <= 0) {
            rc = -EXIT_TIMEOUT;
            break;
        }
        struct pollfd pfd = {fd, POLLIN, 0};
        int pr = poll(&pfd, 1, (int)(left * 1000) + 1);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr == 0)
            continue;
        char chunk[16384];
        ssize_t r = recv(fd, chunk, sizeof chunk, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -EXIT_UNREACHABLE;
            break;
        }
        if (r == 0)
            break;
        if (in.len + (size_t)r > MAX_ANSWER || buf_put(&in, chunk, (size_t)r) < 0) {
            rc = -EXIT_UNREACHABLE;
            break;
        }
    }
    close(fd);
    if (rc) {
        free(in.p);
        if (rc == -EXIT_TIMEOUT)
            cli_err(o, "timeout", "no answer from %s in time", o->admin);
        else
            cli_err(o, "unreachable", "the connection to %s failed", o->admin);
        return rc;
    }
    int status = 0;
    char *hend = in.p ? strstr(in.p, "\r\n\r\n") : NULL;
    if (!hend || sscanf(in.p, "HTTP/1.%*d %d", &status) != 1) {
        free(in.p);
        cli_err(o, "unreachable", "not an HTTP answer from %s", o->admin);
        return -EXIT_UNREACHABLE;
    }
    *hend = '\0';
    char *b = hend + 4;
    size_t blen = in.len - (size_t)(b - in.p);
    int chunked = 0;
    for (char *h = strstr(in.p, "\r\n"); h; h = strstr(h + 2, "\r\n"))
        if (!strncasecmp(h + 2, "transfer-encoding:", 18) && strstr(h + 20, "chunked"))
            chunked = 1;
    if (chunked) {
        long d = dechunk(b, blen);
        if (d < 0) {
            free(in.p);
            cli_err(o, "unreachable", "a malformed chunked answer from %s", o->admin);
            return -EXIT_UNREACHABLE;
        }
        blen = (size_t)d;
    }
    buf_put(body, b, blen);
    free(in.p);
    return status;
}

/* The code of an admin API error body {"error":{"code":"..."}}, or "http_<status>". */
static void error_code(const char *body, int status, char *out, size_t n)
{
    const char *e = body ? strstr(body, "\"error\"") : NULL;
    const char *k = e ? strstr(e, "\"code\"") : NULL;
    if (k) {
        const char *q = strchr(k + 6, '"');
        const char *q2 = q ? strchr(q + 1, '"') : NULL;
        if (q && q2 && (size_t)(q2 - q - 1) < n) {
            snprintf(out, n, "%.*s", (int)(q2 - q - 1), q + 1);
            return;
        }
    }
    snprintf(out, n, "http_%d", status);
}

static void fresh_id(const char *prefix, char *out, size_t n)
{
    unsigned long long v = 0;
    if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v)
        v = (unsigned long long)time(NULL) ^ (unsigned long long)getpid() << 32;
    snprintf(out, n, "%s-%016llx", prefix, v);
}

static int need(struct cli *o, int n, const char *what)
{
    if (o->pos_n - 2 != n) {
        fprintf(stderr, "tipcast: admin %s: %s\n(tipcast admin --help for usage)\n", o->pos[1], what);
        return -1;
    }
    return 0;
}

/* Appends ,"key":"value" (JSON-escaped) to a body being built. */
static void add_str(struct buf *b, const char *key, const char *v)
{
    char *q = cli_json_str(v);
    buf_put(b, b->len > 1 ? "," : "", b->len > 1 ? 1 : 0);
    buf_put(b, "\"", 1);
    buf_put(b, key, strlen(key));
    buf_put(b, "\":", 2);
    if (q)
        buf_put(b, q, strlen(q));
    free(q);
}

static void add_int(struct buf *b, const char *key, long long v)
{
    char t[96];
    snprintf(t, sizeof t, "%s\"%s\":%lld", b->len > 1 ? "," : "", key, v);
    buf_put(b, t, strlen(t));
}

/* A path segment from the command line: ids are [A-Za-z0-9_.:-] (docs/admin-api.md),
 * so anything else is refused here rather than escaped. */
static int seg_ok(const char *s)
{
    if (!*s || strlen(s) > 128)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || strchr("_.:-", *s)))
            return 0;
    return 1;
}

int cli_admin(struct cli *o)
{
    const char *sub = o->pos[1];
    const char *method = "GET", *json = NULL;
    char path[1024];
    struct buf body = {0};
    buf_put(&body, "{", 1);
    const char *arg = o->pos_n > 2 ? o->pos[2] : "";
    int usage = 0;
    if (!strcmp(sub, "get") || !strcmp(sub, "post") || !strcmp(sub, "put")) {
        method = !strcmp(sub, "get") ? "GET" : !strcmp(sub, "post") ? "POST" : "PUT";
        if (o->pos_n < 3 || (!strcmp(sub, "get") && o->pos_n != 3) || (!strcmp(sub, "put") && o->pos_n != 4)) {
            fprintf(stderr, "tipcast: admin %s: wrong number of arguments\n(tipcast admin --help for usage)\n", sub);
            free(body.p);
            return EXIT_USAGE;
        }
        snprintf(path, sizeof path, "%s", arg);
        if (strcmp(sub, "get"))
            json = o->pos_n > 3 ? o->pos[3] : "{}";
    } else if (o->pos_n > 3) {
        usage = 1;
    } else if (!strcmp(sub, "me")) {
        usage = need(o, 0, "takes no argument");
        snprintf(path, sizeof path, "/me");
    } else if (!strcmp(sub, "order") || !strcmp(sub, "balance") || !strcmp(sub, "transactions")) {
        usage = need(o, 1, "names one id") || !seg_ok(arg);
        snprintf(path, sizeof path, !strcmp(sub, "order") ? "/orders/%s" : !strcmp(sub, "balance") ? "/creators/%s/balance"
                                                                                                    : "/users/%s/transactions",
                 arg);
    } else if (!strcmp(sub, "refund")) {
        usage = need(o, 1, "names the order") || !seg_ok(arg) || !o->reason;
        char id[64];
        if (!o->id)
            fresh_id("rf", id, sizeof id);
        add_str(&body, "refund_id", o->id ? o->id : id);
        if (o->amount > 0)
            add_int(&body, "amount", o->amount);
        if (o->reason)
            add_str(&body, "reason", o->reason);
        method = "POST";
        snprintf(path, sizeof path, "/orders/%s/refund", arg);
    } else if (!strcmp(sub, "withdrawals")) {
        usage = need(o, 0, "takes no argument (--state, --creator)");
        char q[256] = "";
        if (o->state && seg_ok(o->state))
            snprintf(q + strlen(q), sizeof q - strlen(q), "%sstate=%s", q[0] ? "&" : "?", o->state);
        if (o->creator && seg_ok(o->creator))
            snprintf(q + strlen(q), sizeof q - strlen(q), "%screator=%s", q[0] ? "&" : "?", o->creator);
        if ((o->state && !seg_ok(o->state)) || (o->creator && !seg_ok(o->creator)))
            usage = 1;
        snprintf(path, sizeof path, "/withdrawals%s", q);
    } else if (!strcmp(sub, "approve") || !strcmp(sub, "reject") || !strcmp(sub, "pay")) {
        usage = need(o, 1, "names the withdrawal") || !seg_ok(arg);
        if (!strcmp(sub, "reject")) {
            usage |= !o->reason;
            if (o->reason)
                add_str(&body, "reason", o->reason);
        }
        if (!strcmp(sub, "pay")) {
            usage |= !o->reference;
            if (o->reference)
                add_str(&body, "payout_reference", o->reference);
        }
        method = "POST";
        snprintf(path, sizeof path, "/withdrawals/%s/%s", arg, sub);
    } else if (!strcmp(sub, "freeze") || !strcmp(sub, "unfreeze")) {
        usage = need(o, 1, "names the account") || !seg_ok(arg) || (!strcmp(sub, "freeze") && !o->reason);
        if (o->reason)
            add_str(&body, "reason", o->reason);
        method = "POST";
        snprintf(path, sizeof path, "/accounts/%s/%s", arg, sub);
    } else if (!strcmp(sub, "overlay-token")) {
        usage = need(o, 1, "names the creator") || !seg_ok(arg);
        if (o->ttl >= 0)
            add_int(&body, "ttl_s", o->ttl);
        method = "POST";
        snprintf(path, sizeof path, "/creators/%s/overlay-token", arg);
    } else {
        fprintf(stderr, "tipcast: admin: unknown subcommand %s\n(tipcast admin --help for usage)\n", sub);
        free(body.p);
        return EXIT_USAGE;
    }
    if (usage) {
        fprintf(stderr, "tipcast: admin %s: bad arguments (tipcast admin --help for usage)\n", sub);
        free(body.p);
        return EXIT_USAGE;
    }
    buf_put(&body, "}", 1);
    if (!json && strcmp(method, "GET"))
        json = body.p;
    struct buf answer = {0};
    int status = http_call(o, method, path, json, &answer);
    free(body.p);
    if (status < 0) {
        free(answer.p);
        return -status;
    }
    const char *text = answer.p ? answer.p : "";
    int rc = EXIT_OK;
    if (status >= 200 && status < 300) {
        fputs(text, stdout);
        if (answer.len && text[answer.len - 1] != '\n')
            fputc('\n', stdout);
    } else {
        char code[64];
        error_code(text, status, code, sizeof code);
        fprintf(stderr, "tipcast: %s: HTTP %d %s\n", code, status, text);
        if (o->json) {
            fputs(text[0] == '{' ? text : "{}", stdout);
            fputc('\n', stdout);
        }
        rc = status == 401 ? EXIT_AUTH : status == 503 ? EXIT_UNREACHABLE : EXIT_REFUSED;
    }
    free(answer.p);
    return rc;
}
