/* unit_webhook.c - tests of settlement/webhook_http.c: the webhook-url, the
 * request and its signature, the status line of the answer, the backoff. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sign.h"
#include "unit.h"
#include "webhook_http.h"

static void test_url(void)
{
    struct webhook_url u;
    char err[128];

    CHECK_INT(webhook_url_parse("http://hooks.example.com/tipcast", &u, err, sizeof err), 0);
    CHECK_STR(u.host, "hooks.example.com");
    CHECK_INT(u.port, 80);
    CHECK_STR(u.path, "/tipcast");
    CHECK_STR(u.host_header, "hooks.example.com");

    CHECK_INT(webhook_url_parse("http://127.0.0.1:8443", &u, err, sizeof err), 0);
    CHECK_STR(u.host, "127.0.0.1");
    CHECK_INT(u.port, 8443);
    CHECK_STR(u.path, "/");
    CHECK_STR(u.host_header, "127.0.0.1:8443");

    CHECK_INT(webhook_url_parse("http://[::1]:9000/a/b?x=1&y=2", &u, err, sizeof err), 0);
    CHECK_STR(u.host, "::1");
    CHECK_INT(u.port, 9000);
    CHECK_STR(u.path, "/a/b?x=1&y=2");
    CHECK_STR(u.host_header, "[::1]:9000");

    CHECK_INT(webhook_url_parse("http://sidecar?k=v", &u, err, sizeof err), 0);
    CHECK_STR(u.path, "/?k=v");
    CHECK_STR(u.host_header, "sidecar");

    CHECK_INT(webhook_url_parse("https://hooks.example.com/", &u, err, sizeof err), -1);
    CHECK_CONTAINS(err, "TLS-terminating proxy");
    const char *bad[] = {
        "hooks.example.com/x", "ftp://h/x", "http://", "http:///x", "http://h:/x", "http://h:0/x",
        "http://h:65536/x", "http://h:123456/x", "http://h:80x/", "http://user@h/x", "http://h/a b",
        "http://h/x#frag", "http://h/\x01", "http://[::1/x", "http://[]/x", "http://[g::1]/x", "http://h\xc3\xa9/x",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = webhook_url_parse(bad[i], &u, err, sizeof err);
        CHECK_INT(rc, -1);
        if (rc != -1)
            fprintf(stderr, "  accepted: %s\n", bad[i]);
    }
    char longurl[400];
    snprintf(longurl, sizeof longurl, "http://h/%0300d", 0);
    CHECK_INT(webhook_url_parse(longurl, &u, err, sizeof err), -1);
}

static void test_sign(void)
{
    char sig[SIGN_HEADER_MAX];
    /* Made with Python's hmac, independently of this code. */
    CHECK_INT(sign_make("0123456789abcdef", 16, 1700000000, "{\"a\":1}", 7, sig), 0);
    CHECK_STR(sig, "sha256=9eb18f493f8ec135d9eb2dad817c369bb4e9cbfa818657897a7437c1cd8c3a23");
    CHECK_INT(sign_make("0123456789abcdef", 16, 1700000000, "", 0, sig), 0);
    CHECK_STR(sig, "sha256=3e0153239c488f9cbe8103099169ba4aa1fb4c71fee92bb6f1fc768e7ebdcfe0");
}

static void test_request(void)
{
    struct webhook_url u;
    CHECK_INT(webhook_url_parse("http://127.0.0.1:9000/hook?s=1", &u, NULL, 0), 0);
    const char *body = "{\"a\":1}";
    struct webhook_request r = {.event = "order.succeeded", .key = "k-1", .body = body, .body_len = strlen(body),
                                .ts = 1700000000, .attempt = 3};
    size_t len = 0;
    char *req = webhook_request_build(&u, "0123456789abcdef", 16, &r, &len);
    CHECK(req != NULL);
    if (!req)
        return;
    const char *want = "POST /hook?s=1 HTTP/1.1\r\n"
                       "Host: 127.0.0.1:9000\r\n"
                       "User-Agent: tipcastd-webhook\r\n"
                       "Content-Type: application/json\r\n"
                       "Content-Length: 7\r\n"
                       "Connection: close\r\n"
                       "Idempotency-Key: k-1\r\n"
                       "X-Tipcast-Event: order.succeeded\r\n"
                       "X-Tipcast-Timestamp: 1700000000\r\n"
                       "X-Tipcast-Attempt: 3\r\n"
                       "X-Tipcast-Signature: "
                       "sha256=9eb18f493f8ec135d9eb2dad817c369bb4e9cbfa818657897a7437c1cd8c3a23\r\n"
                       "\r\n"
                       "{\"a\":1}";
    CHECK_INT(len, strlen(want));
    CHECK(len == strlen(want) && memcmp(req, want, len) == 0);
    free(req);

    /* Values that would break the header lines are refused. */
    const char *bad[] = {"", "a\r\nX-Evil: 1", "a b", "caf\xc3\xa9", "tab\t"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct webhook_request b = r;
        b.key = bad[i];
        CHECK(webhook_request_build(&u, "0123456789abcdef", 16, &b, &len) == NULL);
        b = r;
        b.event = bad[i];
        CHECK(webhook_request_build(&u, "0123456789abcdef", 16, &b, &len) == NULL);
    }
}

static int status_of(const char *s)
{
    int st = -7;
    int r = webhook_status_parse(s, strlen(s), &st);
    return r == 1 ? st : r == 0 ? 0 : -1;
}

static void test_status(void)
{
    CHECK_INT(status_of("HTTP/1.1 200 OK\r\n"), 200);
    CHECK_INT(status_of("HTTP/1.0 204\r\n"), 204);
    CHECK_INT(status_of("HTTP/1.1 500 Internal Server Error\nContent-Length: 0\n\n"), 500);
    CHECK_INT(status_of("HTTP/1.1 302 Found\r\nLocation: /x\r\n\r\n"), 302);
    /* Not yet a whole line: more is needed. */
    CHECK_INT(status_of(""), 0);
    CHECK_INT(status_of("HTT"), 0);
    CHECK_INT(status_of("HTTP/1.1 200 OK"), 0);
    /* Interim answers are skipped, the final one counts. */
    CHECK_INT(status_of("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\n"), 201);
    CHECK_INT(status_of("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 202 Accepted\r\n"), 202);
    CHECK_INT(status_of("HTTP/1.1 100 Continue\r\n\r\n"), 0);
    CHECK_INT(status_of("HTTP/1.1 100 Continue\r\nX: y\r\n"), 0);
    /* Not HTTP/1.x, or a malformed status line. */
    CHECK_INT(status_of("SSH-2.0-OpenSSH\r\n"), -1);
    CHECK_INT(status_of("X"), -1);
    CHECK_INT(status_of("HTTP/2 200\r\n"), -1);
    CHECK_INT(status_of("HTTP/1.1 20 OK\r\n"), -1);
    CHECK_INT(status_of("HTTP/1.1 2000 OK\r\n"), -1);
    CHECK_INT(status_of("HTTP/1.1 099 Low\r\n"), -1);
    CHECK_INT(status_of("HTTP/1.1 600 High\r\n"), -1);
    CHECK_INT(status_of("HTTP/1.1  200 OK\r\n"), -1);
    CHECK_INT(status_of("HTTP/1.1 abc OK\r\n"), -1);
}

static void test_backoff(void)
{
    /* Without jitter (rnd 0): base * 2^(attempts - 1), capped at an hour. */
    CHECK_INT(webhook_backoff_ms(1, 1000, 0), 1000);
    CHECK_INT(webhook_backoff_ms(2, 1000, 0), 2000);
    CHECK_INT(webhook_backoff_ms(5, 1000, 0), 16000);
    CHECK_INT(webhook_backoff_ms(12, 1000, 0), 2048000);
    CHECK_INT(webhook_backoff_ms(13, 1000, 0), WEBHOOK_BACKOFF_MAX_MS);
    CHECK_INT(webhook_backoff_ms(1000000, 1000, 0), WEBHOOK_BACKOFF_MAX_MS);
    CHECK_INT(webhook_backoff_ms(3, 3600000, 0), WEBHOOK_BACKOFF_MAX_MS);
    CHECK_INT(webhook_backoff_ms(0, 1000, 0), 1000);
    /* The most jitter takes a fifth off. */
    CHECK_INT(webhook_backoff_ms(1, 1000, 1000), 800);
    CHECK_INT(webhook_backoff_ms(13, 1000, 1000), WEBHOOK_BACKOFF_MAX_MS / 5 * 4);
    /* With any jitter the waits stay within [4/5, 1] of the plain one and
     * grow from one attempt to the next. */
    uint32_t x = 12345;
    for (int i = 0; i < 2000; i++) {
        x = x * 1103515245u + 12345u;
        int a = 1 + i % 14;
        int64_t d = webhook_backoff_ms(a, 100, x);
        int64_t plain = webhook_backoff_ms(a, 100, 0);
        CHECK(d <= plain && d * 5 >= plain * 4);
        if (plain < WEBHOOK_BACKOFF_MAX_MS)
            CHECK(webhook_backoff_ms(a + 1, 100, x >> 3) > plain);
    }
}

int main(void)
{
    test_url();
    test_sign();
    test_request();
    test_status();
    test_backoff();
    return unit_finish("unit_webhook");
}
