/* server.c - the lws context on the libuv loop, its protocols, the HTTP
 * endpoints, the periodic sweep and the orderly shutdown (see server.h). */
#include "server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#ifdef TIPCAST_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

#include "board.h"
#include "conn.h"
#include "listener.h"
#include "log.h"
#include "pgcheck.h"
#include "rlink.h"
#include "room.h"
#include "ledger.h"
#include "roomfeed.h"
#include "web.h"
#include "wallet.h"

struct server srv;

/* The sweep runs this often: auth deadlines, pings, idle, rooms. */
#define SWEEP_MS 250
/* How long the shutdown waits for close frames to go out. */
#define SHUTDOWN_DRAIN_MS 2000

static uv_timer_t sweep_timer;
static uv_signal_t sig_int, sig_term;
static uv_timer_t drain_timer;
static int64_t drain_started_ms;

int64_t now_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t now_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int confirm_upgrade(struct lws *wsi, const char *to);

/* ---- HTTP: /healthz, /readyz, the web page and /demo/token -------------- */

/* Largest short reply (a demo token fits with room to spare), and the chunk
 * of a page file written per WRITEABLE callback. */
#define HTTP_BODY_MAX 4096

struct http_session {
    int len;
    unsigned char body[LWS_PRE + HTTP_BODY_MAX];
    const struct web_file *file; /* page file being sent (owned by web.c), or NULL */
    size_t sent;                 /* bytes of file already written */
};

static int http_reply(struct lws *wsi, struct http_session *hs, unsigned int status, const char *body)
{
    unsigned char hdr[LWS_PRE + 512], *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof hdr - 1;
    hs->len = snprintf((char *)hs->body + LWS_PRE, sizeof hs->body - LWS_PRE, "%s", body);
    if (lws_add_http_common_headers(wsi, status, "application/json", (lws_filepos_t)hs->len, &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL, (const unsigned char *)"no-store", 8,
                                     &p, end) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    lws_callback_on_writable(wsi);
    return 0;
}

/* Sends the headers of a page file; its body follows in WRITEABLE chunks. */
static int http_file(struct lws *wsi, struct http_session *hs, const struct web_file *f)
{
    unsigned char hdr[LWS_PRE + 512], *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof hdr - 1;
    if (lws_add_http_common_headers(wsi, HTTP_STATUS_OK, f->mime, (lws_filepos_t)f->len, &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL, (const unsigned char *)"no-cache", 8,
                                     &p, end) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    hs->file = f;
    hs->sent = 0;
    lws_callback_on_writable(wsi);
    return 0;
}

/* Writes the next chunk of the page file, one lws_write per callback. */
static int http_file_chunk(struct lws *wsi, struct http_session *hs)
{
    const struct web_file *f = hs->file;
    size_t left = f->len - hs->sent;
    size_t n = left < HTTP_BODY_MAX ? left : HTTP_BODY_MAX;
    int final = n == left;
    if (n > 0) {
        memcpy(hs->body + LWS_PRE, f->data + hs->sent, n);
        if (lws_write(wsi, hs->body + LWS_PRE, n, final ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int)n)
            return -1;
        hs->sent += n;
    }
    if (!final) {
        lws_callback_on_writable(wsi);
        return 0;
    }
    hs->file = NULL;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* GET /demo/token?user=NAME (only with the demo setting on). */
static int http_demo_token(struct lws *wsi, struct http_session *hs)
{
    char arg[96], body[HTTP_BODY_MAX];
    const char *user = lws_get_urlarg_by_name(wsi, "user=", arg, sizeof arg);
    int n = web_demo_token(&srv.cfg, user, now_wall_ms() / 1000, body, sizeof body);
    if (n < 0)
        return http_reply(wsi, hs, HTTP_STATUS_INTERNAL_SERVER_ERROR, "{\"error\":\"cannot sign a token\"}\n");
    if (n == 0)
        return http_reply(wsi, hs, HTTP_STATUS_NOT_FOUND,
                          "{\"error\":\"not a demo user (alice, bob, carol, dave, erin)\"}\n");
    return http_reply(wsi, hs, HTTP_STATUS_OK, body);
}

static int cb_http(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    struct http_session *hs = user;
    (void)len;
    switch (reason) {
    case LWS_CALLBACK_HTTP: {
        const char *path = in;
        hs->file = NULL;
        if (strcmp(path, "/healthz") == 0)
            return http_reply(wsi, hs, HTTP_STATUS_OK, "{\"status\":\"ok\"}\n");
        if (strcmp(path, "/readyz") == 0) {
            int redis = rlink_ready(), pg = pgcheck_ok();
            char body[128];
            snprintf(body, sizeof body, "{\"redis\":\"%s\",\"postgres\":\"%s\",\"stopping\":%s}\n",
                     redis ? "ok" : "down", pg ? "ok" : "down", srv.stopping ? "true" : "false");
            int ready = redis && pg && !srv.stopping;
            return http_reply(wsi, hs, ready ? HTTP_STATUS_OK : HTTP_STATUS_SERVICE_UNAVAILABLE, body);
        }
        if (srv.cfg.demo && strcmp(path, "/demo/token") == 0)
            return http_demo_token(wsi, hs);
        const struct web_file *f = web_find(path);
        if (f)
            return http_file(wsi, hs, f);
        return http_reply(wsi, hs, HTTP_STATUS_NOT_FOUND, "{\"error\":\"not found\"}\n");
    }
    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (hs->file)
            return http_file_chunk(wsi, hs);
        if (lws_write(wsi, hs->body + LWS_PRE, (size_t)hs->len, LWS_WRITE_HTTP_FINAL) != hs->len)
            return -1;
        return lws_http_transaction_completed(wsi) ? -1 : 0;
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        return confirm_upgrade(wsi, in);
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

/* ---- WebSocket ------------------------------------------------------------- */

/* 1 when `origin` is http(s)://HOST with HOST this request's Host header:
 * the page that opens the WebSocket came from this very server. */
static int origin_is_own(struct lws *wsi, const char *origin)
{
    char host[CONFIG_STR_MAX];
    const char *rest;
    if (lws_hdr_copy(wsi, host, sizeof host, WSI_TOKEN_HOST) <= 0)
        return 0;
    if (strncmp(origin, "http://", 7) == 0)
        rest = origin + 7;
    else if (strncmp(origin, "https://", 8) == 0)
        rest = origin + 8;
    else
        return 0;
    return strcasecmp(rest, host) == 0;
}

static int origin_allowed(struct lws *wsi)
{
    const struct config *cfg = &srv.cfg;
    char origin[CONFIG_STR_MAX];
    int n = lws_hdr_total_length(wsi, WSI_TOKEN_ORIGIN);
    if (n <= 0)
        return 1; /* not a browser: the allowlist is about browsers */
    if (cfg->origins_any)
        return 1;
    if (n >= (int)sizeof origin || lws_hdr_copy(wsi, origin, sizeof origin, WSI_TOKEN_ORIGIN) < 0)
        return 0;
    /* The demo page is served by tipcastd itself, from whatever address
     * the visitor used: its origin cannot be listed in advance. */
    if (cfg->demo && origin_is_own(wsi, origin))
        return 1;
    for (int i = 0; i < cfg->origins_count; i++)
        if (strcmp(origin, cfg->origins[i]) == 0)
            return 1;
    return 0;
}

/* 1 when the Sec-WebSocket-Protocol list names one of ours. */
static int subprotocol_known(struct lws *wsi)
{
    char list[256];
    int n = lws_hdr_total_length(wsi, WSI_TOKEN_PROTOCOL);
    if (n <= 0 || n >= (int)sizeof list || lws_hdr_copy(wsi, list, sizeof list, WSI_TOKEN_PROTOCOL) < 0)
        return 0;
    char *save = NULL;
    for (char *tok = strtok_r(list, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save))
        if (strcmp(tok, "tipcast.v1.msgpack") == 0 || strcmp(tok, "tipcast.v1.json") == 0)
            return 1;
    return 0;
}

/* Every WebSocket upgrade passes here first, while the request headers are
 * still at hand: the path, the Origin and the subprotocol are checked, and a
 * refusal is a plain HTTP answer that says why. */
static int confirm_upgrade(struct lws *wsi, const char *to)
{
    char path[64];
    if (!to || strcmp(to, "websocket") != 0) {
        lws_return_http_status(wsi, HTTP_STATUS_BAD_REQUEST, "only WebSocket upgrades are served");
        return 1;
    }
    if (lws_hdr_copy(wsi, path, sizeof path, WSI_TOKEN_GET_URI) < 0 || strcmp(path, "/ws") != 0) {
        lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, "the WebSocket endpoint is /ws");
        return 1;
    }
    if (!origin_allowed(wsi)) {
        lws_return_http_status(wsi, HTTP_STATUS_FORBIDDEN, "origin not allowed");
        return 1;
    }
    if (!subprotocol_known(wsi)) {
        lws_return_http_status(wsi, HTTP_STATUS_BAD_REQUEST,
                               "Sec-WebSocket-Protocol must name tipcast.v1.msgpack or tipcast.v1.json");
        return 1;
    }
    return 0;
}

static int cb_ws(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    struct conn *c = user;
    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED:
        return conn_opened(c, wsi, (enum fmt)lws_get_protocol(wsi)->id);
    case LWS_CALLBACK_RECEIVE:
        return conn_receive(c, in, len);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        return conn_peer_closed(c);
    case LWS_CALLBACK_RECEIVE_PONG:
        conn_pong(c);
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return conn_writeable(c);
    case LWS_CALLBACK_CLOSED:
        conn_closed(c);
        return 0;
    default:
        return 0;
    }
}

/* Each connection has an lws receive buffer of WS_RX_BYTES + LWS_PRE + 4
 * bytes for its life (one 256-byte allocation): sized for the requests
 * clients send most (a gift is about 100 bytes), not for the largest allowed
 * (max-frame-bytes), since a bigger
 * message just arrives in pieces (conn_receive joins them). At 100,000 idle
 * connections every byte here is 100 kB. WS_TX_BYTES lets one write carry a
 * whole batch of events: lws would otherwise cut writes at the receive
 * buffer's size. */
#define WS_RX_BYTES (256 - LWS_PRE - 4)
#define WS_TX_BYTES (256 * 1024)

static const struct lws_protocols protocols[] = {
    {"http", cb_http, sizeof(struct http_session), 0, 0, NULL, 0},
    {"tipcast.v1.msgpack", cb_ws, sizeof(struct conn), WS_RX_BYTES, FMT_MSGPACK, NULL, WS_TX_BYTES},
    {"tipcast.v1.json", cb_ws, sizeof(struct conn), WS_RX_BYTES, FMT_JSON, NULL, WS_TX_BYTES},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* ---- Lifecycle --------------------------------------------------------------- */

static void lws_log(int level, const char *line)
{
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    log_msg(level == LLL_ERR ? LOG_ERROR : level == LLL_WARN ? LOG_WARN : LOG_DEBUG, "lws: %.*s", (int)n, line);
}

#ifdef TIPCAST_JEMALLOC
/* jemalloc hands freed pages back to the system (dirty_decay_ms, main.c)
 * only while it is being called: a node that goes quiet after a burst, like
 * thousands of handshakes, would keep them. This lets the decay run on time. */
static void memory_decay(void)
{
    char name[32];
    snprintf(name, sizeof name, "arena.%d.decay", MALLCTL_ARENAS_ALL);
    mallctl(name, NULL, NULL, NULL, 0);
}
#else
static void memory_decay(void) {}
#endif

static void on_sweep(uv_timer_t *t)
{
    (void)t;
    int64_t now = now_mono_ms();
    conn_sweep(now);
    room_sweep(now);
    memory_decay();
}

static void on_signal(uv_signal_t *h, int signum)
{
    (void)h;
    log_msg(LOG_INFO, "signal %d: stopping", signum);
    server_stop();
}

static void on_redis_checked(int safe)
{
    if (!safe) {
        srv.exit_code = 1;
        server_stop();
    }
}

/* Every time the command connection comes up: the Redis behind it may be
 * a new one, so its persistence is checked again. */
static void on_redis_ready(void)
{
    if (wallet_check_redis(on_redis_checked) < 0)
        log_msg(LOG_WARN, "redis: cannot check persistence yet");
}

int server_start(uv_loop_t *loop)
{
    const struct config *cfg = &srv.cfg;
    srv.loop = loop;

    /* Up to the listening socket, a failure leaves nothing on the loop:
     * what was made is undone here and the caller just exits. */
    if (conn_table_init(cfg->max_connections) < 0 || room_registry_init() < 0) {
        log_msg(LOG_ERROR, "out of memory");
        room_registry_free();
        return -1;
    }

    lws_set_log_level(getenv("TIPCAST_LWS_DEBUG") ? 0xffff : LLL_ERR | LLL_WARN, lws_log);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    void *loops[1] = {loop};
    info.foreign_loops = loops;
    /* With reuse-port we listen ourselves (listener.h); lws only serves. */
    info.port = cfg->reuse_port ? CONTEXT_PORT_NO_LISTEN_SERVER : cfg->port;
    info.iface = cfg->listen_addr;
    info.protocols = protocols;
    /* lws's own keepalive ("validity") is off: the sweep pings and times out
     * idle connections itself (conn_sweep). lws keeps every connection's
     * validity timer in one list sorted by due time, so each connection
     * opened and each pong answered walked the whole list: quadratic in the
     * connections, which stalled a node holding 16,000 for seconds. */
    static const lws_retry_bo_t no_validity;
    info.retry_and_idle_policy = &no_validity;
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_VALIDATE_UTF8 | LWS_SERVER_OPTION_FAIL_UPON_UNABLE_TO_BIND |
                   LWS_SERVER_OPTION_HTTP_HEADERS_SECURITY_BEST_PRACTICES_ENFORCE;
    /* lws 4.1 built with IPv6 opens an AF_INET6 socket and does not take an
     * IPv4 address in iface: it would listen on every interface. */
    if (!strchr(cfg->listen_addr, ':'))
        info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    if (cfg->tls_cert[0]) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = cfg->tls_cert;
        info.ssl_private_key_filepath = cfg->tls_key;
    }
    if (web_load(cfg->web_root) < 0) {
        room_registry_free();
        return -1;
    }
    srv.lws = lws_create_context(&info);
    /* lws 4.1 can hand back a context whose listening vhost failed to bind. */
    if (srv.lws && !lws_get_vhost_by_name(srv.lws, "default")) {
        lws_context_destroy(srv.lws);
        srv.lws = NULL;
    }
    if (!srv.lws) {
        log_msg(LOG_ERROR, "cannot listen on %s:%d%s", cfg->listen_addr, cfg->port,
                cfg->tls_cert[0] ? " with the configured certificate" : "");
        web_free();
        room_registry_free();
        return -1;
    }

    if (cfg->reuse_port &&
        listener_start(loop, lws_get_vhost_by_name(srv.lws, "default"), cfg->listen_addr, cfg->port) < 0) {
        lws_context_destroy(srv.lws);
        srv.lws = NULL;
        web_free();
        room_registry_free();
        return -1;
    }

    /* From here on everything is stopped by server_stop(). The backends
     * fail to start only when out of memory, and then the process ends. */
    uv_signal_init(loop, &sig_int);
    uv_signal_init(loop, &sig_term);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    uv_signal_start(&sig_term, on_signal, SIGTERM);

    static const struct rlink_hooks hooks = {
        .on_cmd_ready = on_redis_ready,
        .on_message = room_on_message,
        .on_subscribed = room_on_subscribed,
        .on_unsubscribed = room_on_unsubscribed,
        .on_sub_ready = room_on_sub_ready,
        .on_sub_lost = room_on_sub_lost,
    };
    if (rlink_start(loop, cfg->redis_host, cfg->redis_port, &hooks) < 0 ||
        pgcheck_start(loop, cfg->pg_conninfo) < 0 || roomfeed_start() < 0 || ledger_start(loop) < 0) {
        log_msg(LOG_ERROR, "cannot start the backends: out of memory");
        exit(1);
    }
    board_start();
    uv_timer_init(loop, &sweep_timer);
    uv_timer_start(&sweep_timer, on_sweep, SWEEP_MS, SWEEP_MS);
    log_msg(LOG_INFO, "tipcastd node %s listening on %s://%s:%d/ws", srv.node_id,
            cfg->tls_cert[0] ? "wss" : "ws", cfg->listen_addr, cfg->port);
    return 0;
}

static void finish_shutdown(void)
{
    /* After this the loop ends; a further signal gets the default action. */
    uv_close((uv_handle_t *)&sig_int, NULL);
    uv_close((uv_handle_t *)&sig_term, NULL);
    uv_timer_stop(&drain_timer);
    uv_close((uv_handle_t *)&drain_timer, NULL);
    uv_timer_stop(&sweep_timer);
    uv_close((uv_handle_t *)&sweep_timer, NULL);
    listener_stop();
    /* Connections still open are closed by lws here (their CLOSED callback
     * leaves their rooms); then nothing refers to a room any more. */
    lws_context_destroy(srv.lws);
    srv.lws = NULL;
    web_free();
    room_registry_free();
    roomfeed_stop();
    ledger_stop(); /* before rlink_stop: it gives up its leases */
    board_stop();
    rlink_stop();
    pgcheck_stop();
    log_msg(LOG_INFO, "tipcastd stopped");
}

static void on_drain(uv_timer_t *t)
{
    (void)t;
    if (conn_count() == 0 || now_mono_ms() - drain_started_ms >= SHUTDOWN_DRAIN_MS)
        finish_shutdown();
}

void server_stop(void)
{
    if (srv.stopping)
        return;
    srv.stopping = 1;
    log_msg(LOG_INFO, "shutting down: closing %d connections", conn_count());
    listener_stop();
    conn_close_all();
    drain_started_ms = now_mono_ms();
    uv_timer_init(srv.loop, &drain_timer);
    uv_timer_start(&drain_timer, on_drain, 20, 20);
}
