/* server.c - tipcastd's wiring: the modules on one loop, the lws context
 * and its protocols, the periodic sweep, and the orderly start and stop
 * (see server.h). */
#include "server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#ifdef TIPCAST_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

#include "clock.h"
#include "log.h"

static int cb_ws(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    struct conn *c = user;
    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED: {
        struct server *s = lws_context_user(lws_get_context(wsi));
        return conn_opened(&s->conns, c, wsi, (enum fmt)lws_get_protocol(wsi)->id);
    }
    case LWS_CALLBACK_RECEIVE:
        return conn_receive(c, in, len);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        return conn_peer_closed(c, in, len);
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
 * clients send most (a gift is about 100 bytes), not for the largest
 * allowed (max-frame-bytes), since a bigger message just arrives in pieces
 * (conn_receive joins them). At 100,000 idle connections every byte here
 * is 100 kB. WS_TX_BYTES lets one write carry a whole batch of events: lws
 * would otherwise cut writes at the receive buffer's size. */
#define WS_RX_BYTES (256 - LWS_PRE - 4)
#define WS_TX_BYTES (256 * 1024)

static struct lws_protocols protocols[] = {
    {"http", http_callback, 0, 0, 0, NULL, 0},
    {"tipcast.v1.msgpack", cb_ws, sizeof(struct conn), WS_RX_BYTES, FMT_MSGPACK, NULL, WS_TX_BYTES},
    {"tipcast.v1.json", cb_ws, sizeof(struct conn), WS_RX_BYTES, FMT_JSON, NULL, WS_TX_BYTES},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void lws_log(int level, const char *line)
{
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    /* By text, not through log_msg's one format: lws's warnings are told
     * apart for the repeat limit by what they say. */
    char text[LOG_LINE_MAX];
    int k = snprintf(text, sizeof text, "lws: %.*s", (int)n, line);
    if (k < 0)
        return;
    if ((size_t)k >= sizeof text)
        k = sizeof text - 1;
    log_text(level == LLL_ERR ? LOG_ERROR : level == LLL_WARN ? LOG_WARN : LOG_DEBUG, text, (size_t)k);
}

#ifdef TIPCAST_JEMALLOC
/* jemalloc hands freed pages back to the system (madvise) once they have
 * lain unused for dirty_decay_ms (main.c), but only while it is being
 * called. A busy loop's reads free and refill the same pages, and each
 * handing back is an madvise whose TLB shootdown waits on the other cores,
 * then page faults to take them again: with a decay of one second that was
 * about 500 madvise a second at 5,000 gifts/s (docs/benchmarks.md). So a
 * busy loop keeps them for the decay's ten seconds, and a quiet one (less
 * than SERVER_QUIET_BYTES allocated since the last sweep) gives them all
 * back at once: an idle node holds what its connections hold, not what a
 * burst (thousands of handshakes) left behind. */
static void memory_sweep(struct server *s)
{
    uint64_t allocated = 0;
    size_t len = sizeof allocated;
    if (mallctl("thread.allocated", &allocated, &len, NULL, 0) != 0)
        allocated = s->sweep_allocated; /* no statistics in this jemalloc: always quiet */
    int quiet = allocated - s->sweep_allocated < SERVER_QUIET_BYTES;
    s->sweep_allocated = allocated;
    char name[32];
    snprintf(name, sizeof name, "arena.%d.%s", MALLCTL_ARENAS_ALL, quiet ? "purge" : "decay");
    mallctl(name, NULL, NULL, NULL, 0);
}
#else
static void memory_sweep(struct server *s) { (void)s; }
#endif

static void on_sweep(uv_timer_t *t)
{
    struct server *s = t->data;
    int64_t now = clock_mono_ms();
    conns_sweep(&s->conns, now);
    rooms_sweep(&s->rooms, now);
    /* The outbox figures wait for the Redis checks: before them this
     * node's shards may not be the Redis's. */
    if (s->wallet.checked)
        backlog_tick(&s->backlog, now);
    memory_sweep(s);
}

/* The campaign job's room events (settlement/campaign.h): published like
 * a notice, with the room's next seq; a lost one (Redis down) is not
 * retried: the next change of the campaign tells the room again. */
static void on_campaign_published(void *ctx, int64_t seq)
{
    (void)ctx;
    if (seq < 0)
        log_msg(LOG_WARN, "campaigns: a room event could not be published");
}

static void campaign_publish(void *ctx, const char *room, const uint8_t *body, size_t len)
{
    struct server *s = ctx;
    if (!id_valid(room, strlen(room)) ||
        roomstore_publish(&s->store, room, EVENT_OTHER, body, len, on_campaign_published, NULL) < 0)
        log_msg(LOG_WARN, "campaigns: a room event could not be published");
}

static void on_signal(uv_signal_t *h, int signum)
{
    log_msg(LOG_INFO, "signal %d: stopping", signum);
    server_stop(h->data);
}

/* The consumer groups read and write the outbox streams, whose shards are
 * those of the wallet: they start once a Redis has passed the checks, so
 * that a node with another wallet-shards never touches them. */
static void start_consumers(struct server *s)
{
    if (s->consumers_started || s->stopping)
        return;
    s->consumers_started = 1;
    if (roomfeed_start(&s->feed) < 0 || ledger_start(&s->ledger) < 0) {
        log_msg(LOG_ERROR, "cannot start the consumer groups: out of memory");
        exit(1);
    }
}

static void on_redis_ready(void *ctx);

static void on_redis_recheck(uv_timer_t *t) { on_redis_ready(t->data); }

/* Redis never came up within redis-start-timeout-s of the start: a node
 * that cannot move money says so and ends, as it does when PostgreSQL is
 * not there, rather than wait forever looking alive. */
static void on_redis_start_timeout(uv_timer_t *t)
{
    struct server *s = t->data;
    if (s->stopping)
        return;
    log_msg(LOG_ERROR, "redis: %s did not accept a connection within %d s (redis-start-timeout-s); stopping",
            s->redis.where, s->cfg.redis_start_timeout_s);
    s->exit_code = 1;
    server_stop(s);
}

static void on_redis_checked(void *ctx, enum redis_check result)
{
    struct server *s = ctx;
    if (s->stopping)
        return;
    switch (result) {
    case REDIS_CHECK_REFUSED:
        s->exit_code = 1;
        server_stop(s);
        return;
    case REDIS_CHECK_RETRY:
        uv_timer_start(&s->redis_recheck, on_redis_recheck, WALLET_RECHECK_MS, 0);
        return;
    case REDIS_CHECK_PASSED:
        start_consumers(s);
        return;
    }
}

/* Every time the command connection comes up: the Redis behind it may be
 * a new one, so it is checked again before money moves. */
static void on_redis_ready(void *ctx)
{
    struct server *s = ctx;
    uv_timer_stop(&s->redis_start);
    uv_timer_stop(&s->redis_recheck);
    if (wallet_check_redis(&s->wallet, on_redis_checked, s) < 0)
        log_msg(LOG_WARN, "redis: cannot check persistence yet");
}

/* A stalled connection drains again: its rooms serve it again. */
static void on_conn_resume(void *ctx, struct conn *c)
{
    struct server *s = ctx;
    rooms_resume(&s->rooms, c);
}

int server_init(struct server *s, uv_loop_t *loop)
{
    const struct config *cfg = &s->cfg;
    s->loop = loop;
    s->metrics.started_wall_ms = clock_wall_ms();
    const struct rlink_hooks redis_hooks = {
        .on_cmd_ready = on_redis_ready,
        .cmd_ctx = s,
        .on_message = rooms_on_message,
        .on_subscribed = rooms_on_subscribed,
        .on_unsubscribed = rooms_on_unsubscribed,
        .on_sub_ready = rooms_on_sub_ready,
        .on_sub_lost = rooms_on_sub_lost,
        .on_sub_error = rooms_on_sub_error,
        .sub_ctx = &s->rooms,
    };
    char err[160];
    if (redis_init(&s->redis, loop, cfg->redis_host, cfg->redis_port, cfg->redis_cluster, &redis_hooks, err,
                   sizeof err) < 0) {
        log_msg(LOG_ERROR, "redis-cluster: %s", err);
        return -1;
    }
    redis_set_wait(&s->redis, cfg->redis_wait_replicas, cfg->redis_wait_timeout_ms);
    outbox_init(&s->outbox, &s->redis, cfg->wallet_shards, s->node_id);
    wallet_init(&s->wallet, &s->outbox, &s->catalog, cfg);
    backlog_init(&s->backlog, &s->outbox);
    board_init(&s->board, &s->redis);
    roomstore_init(&s->store, &s->redis, s->node_id, cfg->history_len);
    roomfeed_init(&s->feed, &s->outbox, loop, cfg);
    ledger_init(&s->ledger, &s->outbox, loop, cfg);
    s->ledger.webhooks = config_webhooks_on(&s->cfg);
    const struct conn_hooks conn_hooks = {
        .ctx = s, .on_open = session_open, .on_message = session_message, .on_leave_all = session_leave_all,
        .on_closed = session_closed, .on_resume = on_conn_resume};
    if (conns_init(&s->conns, cfg, &conn_hooks) < 0)
        return -1;
    uint32_t seed = 0;
    if (getrandom(&seed, sizeof seed, 0) != (ssize_t)sizeof seed)
        seed = (uint32_t)clock_mono_us();
    if (tally_init(&s->conns_by_user, (uint32_t)cfg->max_connections, seed) < 0 ||
        tally_init(&s->conns_by_addr, (uint32_t)cfg->max_connections, seed * 2654435761u + 1) < 0 ||
        rooms_init(&s->rooms, loop, cfg, &s->redis, &s->store, &s->board, &s->conns, &s->catalog) < 0) {
        tally_free(&s->conns_by_user);
        tally_free(&s->conns_by_addr);
        conns_free(&s->conns);
        return -1;
    }
    pk_init(&s->pk, cfg, s->node_id, loop, &s->redis, &s->outbox, &s->rooms);
    return 0;
}

static void on_catalog(void *ctx)
{
    struct server *s = ctx;
    rooms_catalog_changed(&s->rooms);
}

static struct lws_protocols admin_protocols[] = {
    {"tipcast-admin", admin_callback, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* The admin listener (admin-listen): a vhost of its own, fed by our own
 * listening socket (shared with the other processes under reuse-port, like
 * the public one). Returns 0 (also when there is none), or -1 logged. */
static int start_admin(struct server *s, const struct lws_context_creation_info *base)
{
    const struct config *cfg = &s->cfg;
    char addr[CONFIG_STR_MAX];
    int port;
    if (!cfg->admin_listen[0])
        return 0;
    if (listener_parse(cfg->admin_listen, addr, sizeof addr, &port) < 0) {
        log_msg(LOG_ERROR, "admin-listen %s is not ADDR:PORT", cfg->admin_listen);
        return -1;
    }
    admin_protocols[0].per_session_data_size = admin_session_size();
    struct lws_context_creation_info info = *base;
    info.vhost_name = "admin";
    info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
    info.protocols = admin_protocols;
    info.ssl_cert_filepath = info.ssl_private_key_filepath = NULL;
    info.options &= ~(uint64_t)LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    struct lws_vhost *vh = lws_create_vhost(s->lws, &info);
    if (!vh) {
        log_msg(LOG_ERROR, "cannot create the admin listener's vhost");
        return -1;
    }
    if (listener_start(&s->admin_listener, s->loop, vh, addr, port, cfg->reuse_port) < 0)
        return -1;
    log_msg(LOG_INFO, "admin API on http://%s/api/v1/", cfg->admin_listen);
    return 0;
}

/* Creates the lws context (and our own listener with reuse-port). Returns
 * 0, or -1 with the reason logged and nothing left open. */
static int start_lws(struct server *s)
{
    const struct config *cfg = &s->cfg;
    lws_set_log_level(getenv("TIPCAST_LWS_DEBUG") ? 0xffff : LLL_ERR | LLL_WARN, lws_log);
    protocols[0].per_session_data_size = http_session_size();
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    void *loops[1] = {s->loop};
    info.foreign_loops = loops;
    info.user = s;
    /* With reuse-port we listen ourselves (listener.h); lws only serves. */
    info.port = cfg->reuse_port ? CONTEXT_PORT_NO_LISTEN_SERVER : cfg->port;
    info.iface = cfg->listen_addr;
    info.protocols = protocols;
    /* The deadlines of plain HTTP connections (http-timeout-s): for the
     * request headers (the "ah idle" timeout, from the first byte until
     * the headers end), for the answer to be taken (lws's timeout_secs, set
     * once a request is dispatched), and between two requests on a
     * keep-alive. lws's own defaults (10 s for the headers, 5 s for the
     * rest) would otherwise apply, out of the operator's reach. */
    info.timeout_secs = (unsigned int)cfg->http_timeout_s;
    info.timeout_secs_ah_idle = (unsigned int)cfg->http_timeout_s;
    info.keepalive_timeout = cfg->http_timeout_s;
    /* lws's own keepalive ("validity") is off: the sweep pings and times out
     * idle connections itself (conns_sweep). lws keeps every connection's
     * validity timer in one list sorted by due time, so each connection
     * opened and each pong answered walked the whole list: quadratic in the
     * connections, which stalled a node holding 16,000 for seconds. */
    static const lws_retry_bo_t no_validity;
    info.retry_and_idle_policy = &no_validity;
    /* No LWS_SERVER_OPTION_HTTP_HEADERS_SECURITY_BEST_PRACTICES_ENFORCE:
     * its fixed Content-Security-Policy (connect-src 'self' ws: wss:) keeps
     * the dashboard from calling the admin API on its own port; the
     * answers carry our own policy instead (http_security_headers). */
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_VALIDATE_UTF8 |
                   LWS_SERVER_OPTION_FAIL_UPON_UNABLE_TO_BIND;
    /* lws 4.1 built with IPv6 opens an AF_INET6 socket and does not take an
     * IPv4 address in iface: it would listen on every interface. */
    if (!strchr(cfg->listen_addr, ':'))
        info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    if (cfg->tls_cert[0]) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = cfg->tls_cert;
        info.ssl_private_key_filepath = cfg->tls_key;
    }
    s->lws = lws_create_context(&info);
    /* lws 4.1 can hand back a context whose listening vhost failed to bind. */
    if (s->lws && !lws_get_vhost_by_name(s->lws, "default")) {
        lws_context_destroy(s->lws);
        s->lws = NULL;
    }
    if (!s->lws) {
        log_msg(LOG_ERROR, "cannot listen on %s:%d%s", cfg->listen_addr, cfg->port,
                cfg->tls_cert[0] ? " with the configured certificate" : "");
        return -1;
    }
    if ((cfg->reuse_port && listener_start(&s->listener, s->loop, lws_get_vhost_by_name(s->lws, "default"),
                                           cfg->listen_addr, cfg->port, 1) < 0) ||
        start_admin(s, &info) < 0) {
        listener_stop(&s->listener);
        lws_context_destroy(s->lws);
        s->lws = NULL;
        return -1;
    }
    return 0;
}

int server_start(struct server *s)
{
    const struct config *cfg = &s->cfg;
    /* Up to the listening socket, a failure leaves nothing on the loop but
     * what server_free releases. */
    if (web_load(&s->web, cfg->web_root, cfg->web_sdk_root) < 0 || start_lws(s) < 0)
        return -1;

    /* From here on everything is stopped by server_stop(). The backends
     * fail to start only when out of memory, and then the process ends. */
    uv_signal_init(s->loop, &s->sig_int);
    uv_signal_init(s->loop, &s->sig_term);
    s->sig_int.data = s->sig_term.data = s;
    uv_signal_start(&s->sig_int, on_signal, SIGINT);
    uv_signal_start(&s->sig_term, on_signal, SIGTERM);
    uv_timer_init(s->loop, &s->redis_recheck);
    s->redis_recheck.data = s;
    uv_timer_init(s->loop, &s->redis_start);
    s->redis_start.data = s;
    uv_timer_start(&s->redis_start, on_redis_start_timeout, (uint64_t)cfg->redis_start_timeout_s * 1000, 0);
    redis_start(&s->redis);
    if (pgcheck_start(&s->pgcheck, s->loop, cfg->pg_conninfo, &s->catalog, &s->risk, on_catalog, s) < 0 ||
        earnings_start(&s->earnings, s->loop, cfg->pg_conninfo) < 0 ||
        promo_start(&s->promo, s->loop, cfg->pg_conninfo, &s->wallet) < 0 || pk_start(&s->pk) < 0 ||
        !(s->admin_pool = pgpool_open(s->loop, "admin: postgres", cfg->pg_conninfo, cfg->admin_pg_connections))) {
        log_msg(LOG_ERROR, "cannot start the backends: out of memory");
        exit(1);
    }
    jobs_start(&s->jobs, s->loop, s->admin_pool, &s->wallet, cfg);
    campaign_start(&s->campaigns, s->loop, s->admin_pool, &s->wallet, cfg, campaign_publish, s);
    recon_job_start(&s->recon, cfg, s->node_id);
    risk_scan_start(&s->risk_scan, s->loop, s->admin_pool, cfg);
    /* Webhooks, when webhook-url is set: their rows are in PostgreSQL. */
    if (webhook_start(&s->webhook, s->loop, cfg) < 0) {
        log_msg(LOG_ERROR, "cannot start the webhooks");
        exit(1);
    }
    uv_timer_init(s->loop, &s->sweep);
    s->sweep.data = s;
    uv_timer_start(&s->sweep, on_sweep, SERVER_SWEEP_MS, SERVER_SWEEP_MS);
    log_msg(LOG_INFO, "tipcastd node %s listening on %s://%s:%d/ws", s->node_id, cfg->tls_cert[0] ? "wss" : "ws",
            cfg->listen_addr, cfg->port);
    return 0;
}

static void finish_shutdown(struct server *s)
{
    /* After this the loop ends; a further signal gets the default action. */
    uv_close((uv_handle_t *)&s->sig_int, NULL);
    uv_close((uv_handle_t *)&s->sig_term, NULL);
    uv_timer_stop(&s->drain);
    uv_close((uv_handle_t *)&s->drain, NULL);
    uv_timer_stop(&s->sweep);
    uv_close((uv_handle_t *)&s->sweep, NULL);
    uv_timer_stop(&s->redis_recheck);
    uv_close((uv_handle_t *)&s->redis_recheck, NULL);
    uv_timer_stop(&s->redis_start);
    uv_close((uv_handle_t *)&s->redis_start, NULL);
    listener_stop(&s->listener);
    listener_stop(&s->admin_listener);
    /* Connections still open are closed by lws here (their CLOSED callback
     * leaves their rooms); then nothing refers to a room any more. */
    lws_context_destroy(s->lws);
    s->lws = NULL;
    pk_stop(&s->pk); /* before rooms_free: its pushes find rooms */
    rooms_free(&s->rooms);
    roomfeed_stop(&s->feed);
    ledger_stop(&s->ledger); /* before redis_stop: it gives up its leases */
    redis_stop(&s->redis);
    pgcheck_stop(&s->pgcheck);
    earnings_stop(&s->earnings);
    promo_stop(&s->promo);
    webhook_stop(&s->webhook); /* deliveries in flight are sent again after their lease */
    jobs_stop(&s->jobs);
    campaign_stop(&s->campaigns);
    recon_job_stop(&s->recon);
    risk_scan_stop(&s->risk_scan);
    pgpool_close(s->admin_pool);
    s->admin_pool = NULL;
    log_msg(LOG_INFO, "tipcastd stopped");
}

static void on_drain(uv_timer_t *t)
{
    struct server *s = t->data;
    if (s->conns.count == 0 || clock_mono_ms() - s->drain_started_ms >= SERVER_DRAIN_MS)
        finish_shutdown(s);
}

void server_stop(struct server *s)
{
    if (s->stopping)
        return;
    s->stopping = 1;
    log_msg(LOG_INFO, "shutting down: closing %d connections", s->conns.count);
    listener_stop(&s->listener);
    listener_stop(&s->admin_listener);
    conns_close_all(&s->conns);
    s->drain_started_ms = clock_mono_ms();
    uv_timer_init(s->loop, &s->drain);
    s->drain.data = s;
    uv_timer_start(&s->drain, on_drain, 20, 20);
}

void server_free(struct server *s)
{
    if (s->rooms.handles)
        rooms_free(&s->rooms);
    roomfeed_free(&s->feed);
    conns_free(&s->conns);
    tally_free(&s->conns_by_user);
    tally_free(&s->conns_by_addr);
    web_free(&s->web);
    catalog_free(&s->catalog);
    risk_free(&s->risk);
    redis_free(&s->redis);
}
