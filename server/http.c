/* http.c - the plain HTTP side of tipcastd's port: /healthz, /readyz,
 * /metrics (to the addresses of metrics-allow), the web page's files and
 * /demo/token, the checks every WebSocket upgrade passes (path, Origin,
 * subprotocol; handshake.h) while its headers are at hand, and the count of
 * client sockets against max-http-connections. */
#include "server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "clock.h"
#include "handshake.h"
#include "prom.h"

/* Largest short reply (a demo token fits with room to spare), and the chunk
 * of a page file written per WRITEABLE callback. */
#define HTTP_BODY_MAX 4096

struct http_session {
    int len;
    unsigned char body[LWS_PRE + HTTP_BODY_MAX];
    /* A body sent in chunks: a page file (owned by web.c) or `owned`. */
    const unsigned char *data;   /* NULL when none */
    size_t data_len;
    size_t sent;                 /* bytes of it already written */
    unsigned char *owned;        /* the metrics page being sent, freed once sent */
};

static void http_release(struct http_session *hs)
{
    free(hs->owned);
    hs->owned = NULL;
    hs->data = NULL;
}

static int header_copy(struct lws *wsi, enum lws_token_indexes tok, char *buf, int size);

int http_security_headers(const struct config *cfg, struct lws *wsi, int page, unsigned char **p,
                          unsigned char *end)
{
    char csp[3 * CONFIG_STR_MAX], host[CONFIG_STR_MAX], demo[CONFIG_STR_MAX + 16] = "";
    if (page) {
        /* The demo dashboard calls the admin API on another port of the
         * same host (the CORS rule of admin.c, handshake_cors_allowed). */
        if (cfg->demo && header_copy(wsi, WSI_TOKEN_HOST, host, sizeof host) == 1 && handshake_host_pinned(host)) {
            host[strcspn(host, host[0] == '[' ? "]" : ":") + (host[0] == '[')] = '\0';
            snprintf(demo, sizeof demo, " http://%s:*", host);
        }
        snprintf(csp, sizeof csp,
                 "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
                 "media-src 'self' data:; connect-src 'self' ws: wss:%s%s%s; frame-ancestors 'none'; "
                 "base-uri 'none'; form-action 'self'",
                 demo, cfg->web_connect_src[0] ? " " : "", cfg->web_connect_src);
    } else {
        snprintf(csp, sizeof csp, "default-src 'none'; frame-ancestors 'none'");
    }
#define HDR(n, v) lws_add_http_header_by_name(wsi, (const unsigned char *)(n), (const unsigned char *)(v), \
                                              (int)strlen(v), p, end)
    int bad = HDR("content-security-policy:", csp) || HDR("x-content-type-options:", "nosniff") ||
              HDR("x-frame-options:", "deny") || HDR("referrer-policy:", "no-referrer");
#undef HDR
    return bad;
}

static int http_reply(struct lws *wsi, struct http_session *hs, unsigned int status, const char *body)
{
    const struct config *cfg = &((struct server *)lws_context_user(lws_get_context(wsi)))->cfg;
    unsigned char hdr[LWS_PRE + 1024], *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof hdr - 1;
    hs->len = snprintf((char *)hs->body + LWS_PRE, sizeof hs->body - LWS_PRE, "%s", body);
    if (lws_add_http_common_headers(wsi, status, "application/json", (lws_filepos_t)hs->len, &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL, (const unsigned char *)"no-store", 8,
                                     &p, end) ||
        http_security_headers(cfg, wsi, 0, &p, end) || lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    lws_callback_on_writable(wsi);
    return 0;
}

/* Sends the headers of a body of len bytes; the body follows in WRITEABLE
 * chunks. `cache` is the Cache-Control value. */
static int http_chunked(struct lws *wsi, struct http_session *hs, const char *mime, const char *cache,
                        const unsigned char *data, size_t len, int page)
{
    const struct config *cfg = &((struct server *)lws_context_user(lws_get_context(wsi)))->cfg;
    unsigned char hdr[LWS_PRE + 2048], *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof hdr - 1;
    if (lws_add_http_common_headers(wsi, HTTP_STATUS_OK, mime, (lws_filepos_t)len, &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL, (const unsigned char *)cache,
                                     (int)strlen(cache), &p, end) ||
        http_security_headers(cfg, wsi, page, &p, end) || lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    hs->data = data;
    hs->data_len = len;
    hs->sent = 0;
    lws_callback_on_writable(wsi);
    return 0;
}

static int http_file(struct lws *wsi, struct http_session *hs, const struct web_file *f)
{
    return http_chunked(wsi, hs, f->mime, "no-cache", f->data, f->len, 1);
}

/* Writes the next chunk of the body, one lws_write per callback. */
static int http_chunk(struct lws *wsi, struct http_session *hs)
{
    size_t left = hs->data_len - hs->sent;
    size_t n = left < HTTP_BODY_MAX ? left : HTTP_BODY_MAX;
    int final = n == left;
    if (n > 0) {
        memcpy(hs->body + LWS_PRE, hs->data + hs->sent, n);
        if (lws_write(wsi, hs->body + LWS_PRE, n, final ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int)n)
            return -1;
        hs->sent += n;
    }
    if (!final) {
        lws_callback_on_writable(wsi);
        return 0;
    }
    http_release(hs);
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* 1 when the peer's address is in metrics-allow. */
static int metrics_allowed(const struct config *cfg, struct lws *wsi)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int fd = lws_get_socket_fd(wsi);
    if (fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &len) < 0)
        return 0;
    return cidr_match_sockaddr(cfg->metrics_allow.block, cfg->metrics_allow.n, (struct sockaddr *)&ss);
}

/* GET /metrics: the page is made whole (metrics.h) into a buffer of its
 * own, then sent in chunks like a file. */
static int http_metrics(struct server *s, struct lws *wsi, struct http_session *hs)
{
    if (s->cfg.metrics_allow.n == 0)
        return http_reply(wsi, hs, HTTP_STATUS_NOT_FOUND, "{\"error\":\"not found\"}\n");
    if (!metrics_allowed(&s->cfg, wsi))
        return http_reply(wsi, hs, HTTP_STATUS_FORBIDDEN,
                          "{\"error\":\"this address may not read the metrics (metrics-allow)\"}\n");
    hs->owned = malloc(METRICS_PAGE_MAX);
    long n = hs->owned ? metrics_write(s, (char *)hs->owned, METRICS_PAGE_MAX) : -1;
    if (n < 0) {
        log_msg(LOG_ERROR, "/metrics: %s", hs->owned ? "the page is larger than METRICS_PAGE_MAX" : "out of memory");
        http_release(hs);
        return http_reply(wsi, hs, HTTP_STATUS_INTERNAL_SERVER_ERROR, "{\"error\":\"cannot make the page\"}\n");
    }
    return http_chunked(wsi, hs, PROM_CONTENT_TYPE, "no-store", hs->owned, (size_t)n, 0);
}

json_t *server_readiness(struct server *s, unsigned *status)
{
    /* Redis counts once it has passed the money checks (wallet.h). */
    int redis = redis_ready(&s->redis) && s->wallet.checked, pg = pgcheck_ok(&s->pgcheck);
    *status = redis && pg && !s->stopping ? HTTP_STATUS_OK : HTTP_STATUS_SERVICE_UNAVAILABLE;
    return json_pack("{s:s, s:s, s:b}", "redis", redis ? "ok" : "down", "postgres", pg ? "ok" : "down", "stopping",
                     s->stopping);
}

/* GET /demo/token?user=NAME (only with the demo setting on). */
static int http_demo_token(struct server *s, struct lws *wsi, struct http_session *hs)
{
    char arg[96], role_arg[32], body[HTTP_BODY_MAX];
    const char *user = lws_get_urlarg_by_name(wsi, "user=", arg, sizeof arg);
    const char *role = lws_get_urlarg_by_name(wsi, "role=", role_arg, sizeof role_arg);
    if (role && strcmp(role, "overlay") != 0)
        return http_reply(wsi, hs, HTTP_STATUS_BAD_REQUEST, "{\"error\":\"role is overlay or absent\"}\n");
    int n = web_demo_token(&s->cfg, user, role != NULL, clock_wall_ms() / 1000, body, sizeof body);
    if (n < 0)
        return http_reply(wsi, hs, HTTP_STATUS_INTERNAL_SERVER_ERROR, "{\"error\":\"cannot sign a token\"}\n");
    if (n == 0)
        return http_reply(wsi, hs, HTTP_STATUS_NOT_FOUND,
                          role ? "{\"error\":\"an overlay token is for the demo creator alice\"}\n"
                               : "{\"error\":\"not a demo user (alice, bob, carol, dave, erin)\"}\n");
    return http_reply(wsi, hs, HTTP_STATUS_OK, body);
}

/* 1 when the request announces a body. No page here takes one, and lws
 * restarts its deadline (http-timeout-s) at every piece of a body, even one
 * it discards after the answer: a body sent a byte at a time would hold the
 * socket for ever. Such a request is refused and its connection closed. */
static int has_body(struct lws *wsi)
{
    char len[24];
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0)
        return 1;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0)
        return 0;
    return lws_hdr_copy(wsi, len, sizeof len, WSI_TOKEN_HTTP_CONTENT_LENGTH) < 0 || strspn(len, "0") != strlen(len);
}

/* ---- The WebSocket upgrade ---------------------------------------------------- */

/* Copies request header `tok` into buf. Returns 1, 0 when the request has
 * none, or -1 when it does not fit (then it is treated as unacceptable). */
static int header_copy(struct lws *wsi, enum lws_token_indexes tok, char *buf, int size)
{
    int n = lws_hdr_total_length(wsi, tok);
    if (n <= 0)
        return 0;
    if (n >= size || lws_hdr_copy(wsi, buf, size, tok) < 0)
        return -1;
    return 1;
}

/* Every WebSocket upgrade passes here first, while the request headers are
 * still at hand: the path, the Origin and the subprotocol are checked
 * (handshake.h), and a refusal is a plain HTTP answer that says why. */
static int confirm_upgrade(struct server *s, struct lws *wsi, const char *to)
{
    char path[64], origin[CONFIG_STR_MAX], host[CONFIG_STR_MAX], list[HANDSHAKE_LIST_MAX];
    if (!to || strcmp(to, "websocket") != 0) {
        lws_return_http_status(wsi, HTTP_STATUS_BAD_REQUEST, "only WebSocket upgrades are served");
        return 1;
    }
    if (header_copy(wsi, WSI_TOKEN_GET_URI, path, sizeof path) != 1 || !handshake_path_ok(path)) {
        lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, "the WebSocket endpoint is /ws");
        return 1;
    }
    /* An Origin too long to copy is no allowed one; a Host too long to copy
     * is as good as none: it cannot make an origin the page's own. */
    int has_origin = header_copy(wsi, WSI_TOKEN_ORIGIN, origin, sizeof origin);
    int has_host = header_copy(wsi, WSI_TOKEN_HOST, host, sizeof host);
    if (has_origin < 0 ||
        !handshake_origin_allowed(&s->cfg, has_origin ? origin : NULL, has_host > 0 ? host : NULL)) {
        lws_return_http_status(wsi, HTTP_STATUS_FORBIDDEN, "origin not allowed");
        return 1;
    }
    if (header_copy(wsi, WSI_TOKEN_PROTOCOL, list, sizeof list) != 1 || handshake_subprotocol(list) < 0) {
        lws_return_http_status(wsi, HTTP_STATUS_BAD_REQUEST,
                               "Sec-WebSocket-Protocol must be a plain comma-separated list naming "
                               "tipcast.v1.msgpack or tipcast.v1.json before any http");
        return 1;
    }
    return 0;
}

/* ---- Admission ----------------------------------------------------------- */

/* Every client socket lws accepts, from its listener or ours (listener.c),
 * comes here before a byte is read. One that would take the client sockets
 * past max-connections + max-http-connections is answered 503 and closed,
 * so that the open files stay below that whatever the peers do. Sockets
 * that are not (yet) WebSocket connections may use what the WebSocket side
 * leaves free: a reconnect storm has thousands of upgrades under way at
 * once. When the WebSocket side is full, max-http-connections are still
 * left for health checks and the rest. The socket is marked (its
 * opaque user data) so that only admitted sockets are counted down at
 * WSI_DESTROY: lws also destroys its listening socket there. */
static int http_admit(struct server *s, struct lws *wsi)
{
    if (lws_get_opaque_user_data(wsi) == &s->sockets)
        return 0; /* counted already */
    if (s->sockets >= s->cfg.max_connections + s->cfg.max_http_connections) {
        static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                   "Content-Length: 38\r\nConnection: close\r\n\r\n"
                                   "{\"error\":\"too many open connections\"}\n";
        int fd = lws_get_socket_fd(wsi);
        /* Best effort, in one send into the new socket's empty buffer; a TLS
         * peer would not understand plain bytes and is just closed. */
        if (fd >= 0 && !s->cfg.tls_cert[0] && send(fd, busy, sizeof busy - 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
            log_msg(LOG_DEBUG, "the 503 of a refused connection was not sent");
        s->http_refused++;
        log_msg(LOG_WARN, "max-connections + max-http-connections (%d) client sockets reached: a new "
                "connection is refused", s->cfg.max_connections + s->cfg.max_http_connections);
        return -1;
    }
    lws_set_opaque_user_data(wsi, &s->sockets);
    s->sockets++;
    return 0;
}

static void http_destroyed(struct server *s, struct lws *wsi)
{
    if (lws_get_opaque_user_data(wsi) != &s->sockets)
        return;
    lws_set_opaque_user_data(wsi, NULL);
    tc_assert(s->sockets > 0);
    s->sockets--;
}

/* ---- The protocol callback ---------------------------------------------------- */

int http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    struct server *s = lws_context_user(lws_get_context(wsi));
    struct http_session *hs = user;
    (void)len;
    switch (reason) {
    case LWS_CALLBACK_HTTP: {
        const char *path = in;
        http_release(hs); /* a keep-alive connection's previous request */
        if (has_body(wsi)) {
            lws_return_http_status(wsi, HTTP_STATUS_REQ_ENTITY_TOO_LARGE, "requests with a body are not served");
            return -1;
        }
        if (strcmp(path, "/healthz") == 0)
            return http_reply(wsi, hs, HTTP_STATUS_OK, "{\"status\":\"ok\"}\n");
        if (strcmp(path, "/readyz") == 0) {
            unsigned status;
            json_t *ready = server_readiness(s, &status);
            char *body = ready ? json_dumps(ready, JSON_COMPACT) : NULL, line[160];
            json_decref(ready);
            int made = body != NULL;
            snprintf(line, sizeof line, "%s\n", made ? body : "{}");
            free(body);
            return http_reply(wsi, hs, made ? status : HTTP_STATUS_INTERNAL_SERVER_ERROR, line);
        }
        if (strcmp(path, "/metrics") == 0)
            return http_metrics(s, wsi, hs);
        if (s->cfg.demo && strcmp(path, "/demo/token") == 0) {
            /* A page at a name rebound to this server (DNS rebinding) is of
             * the same origin to the browser: it could fetch tokens. */
            char host[CONFIG_STR_MAX];
            if (header_copy(wsi, WSI_TOKEN_HOST, host, sizeof host) != 1 || !handshake_host_pinned(host))
                return http_reply(wsi, hs, HTTP_STATUS_FORBIDDEN,
                                  "{\"error\":\"demo tokens are served to localhost or an IP address only\"}\n");
            return http_demo_token(s, wsi, hs);
        }
        const struct web_file *f = web_find(&s->web, path);
        if (f)
            return http_file(wsi, hs, f);
        return http_reply(wsi, hs, HTTP_STATUS_NOT_FOUND, "{\"error\":\"not found\"}\n");
    }
    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (hs->data)
            return http_chunk(wsi, hs);
        if (lws_write(wsi, hs->body + LWS_PRE, (size_t)hs->len, LWS_WRITE_HTTP_FINAL) != hs->len)
            return -1;
        return lws_http_transaction_completed(wsi) ? -1 : 0;
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        return confirm_upgrade(s, wsi, in);
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
    case LWS_CALLBACK_ESTABLISHED:
        /* A WebSocket bound to this protocol would be outside every limit
         * (no auth deadline, no idle timeout, not in max-connections).
         * confirm_upgrade refuses the lists that lead here; this is in case
         * lws ever reads one otherwise. */
        log_msg(LOG_WARN, "a WebSocket upgrade bound to the http protocol is closed");
        return -1;
    case LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED:
        return http_admit(s, wsi);
    case LWS_CALLBACK_WSI_DESTROY:
        if (s)
            http_destroyed(s, wsi);
        return 0;
    case LWS_CALLBACK_CLOSED_HTTP:
        if (hs)
            http_release(hs);
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

size_t http_session_size(void) { return sizeof(struct http_session); }
